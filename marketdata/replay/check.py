"""Integrity replay of a :class:`Dataset`: every book rebuilt through :class:`L2Book` with all checks
on, and the venue's own top of book (Binance bookTicker) used as an oracle.

Checks: sequence gaps (and whether a later snapshot resynced them), crossed books after any message,
``L2Book._check()`` every ``check_every`` messages and at the end, books that never got a snapshot,
and top-of-book agreement: a bookTicker whose update id equals the book's last applied update id must
show exactly the rebuilt best bid/ask price and quantity. A ticker can arrive before the depth event
that reaches its id (the streams are separate), so tickers ahead of the book wait, keyed by update id,
until the book reaches their id (compared) or passes it (skipped: the id fell inside one diff).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from marketdata.book import L2Book
from marketdata.errors import InvariantError
from marketdata.model import BookDeltas, QuoteTick, TradeTick
from marketdata.replay.dataset import Dataset


@dataclass
class _BookCheck:
    book: L2Book
    venue_symbol: str
    pending: list[tuple[int, int, QuoteTick]] = field(default_factory=list)
    messages: int = 0
    snapshots: int = 0
    trades: int = 0
    quotes: int = 0
    tob_checks: int = 0
    tob_mismatches: int = 0
    tob_skipped: int = 0
    invariant_errors: int = 0


@dataclass
class CheckResult:
    """Counters of one integrity replay; :attr:`ok` is False on an unresolved gap, a crossed book,
    a top-of-book mismatch, a broken invariant or a book that never got a snapshot."""

    events: int = 0
    book_updates: int = 0
    level_updates: int = 0
    snapshots: int = 0
    trades: int = 0
    quotes: int = 0
    gaps: int = 0
    unresolved_gaps: int = 0
    resyncs: int = 0
    crossed: int = 0
    tob_checks: int = 0
    tob_mismatches: int = 0
    invariant_errors: int = 0
    never_synced: int = 0
    samples: list[str] = field(default_factory=list)
    books: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.unresolved_gaps or self.crossed or self.tob_mismatches or self.invariant_errors
                    or self.never_synced)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "events": self.events, "book_updates": self.book_updates,
            "level_updates": self.level_updates, "snapshots": self.snapshots, "trades": self.trades,
            "quotes": self.quotes, "gaps": self.gaps, "unresolved_gaps": self.unresolved_gaps,
            "resyncs": self.resyncs, "crossed": self.crossed, "tob_checks": self.tob_checks,
            "tob_mismatches": self.tob_mismatches, "invariant_errors": self.invariant_errors,
            "never_synced_books": self.never_synced, "problems": list(self.samples), "books": self.books,
        }


def check_dataset(ds: Dataset, *, check_every: int = 2000, max_samples: int = 20) -> CheckResult:
    """Replay ``ds`` through one :class:`L2Book` per book and count every integrity problem.
    ``check_every``: run the full ``L2Book._check()`` every that many book messages per book."""
    res = CheckResult()
    checks: dict[tuple[str, str], _BookCheck] = {}
    for (venue, vsym), inst in ds.books.items():
        book = L2Book(venue, str(inst.symbol), sequence_rule=ds.rule_of(venue, vsym))
        checks[(venue, str(inst.symbol))] = _BookCheck(book, vsym)

    def note(text: str) -> None:
        if len(res.samples) < max_samples:
            res.samples.append(text)

    def compare(c: _BookCheck, q: QuoteTick) -> None:
        b = c.book
        bb, ba = b.best_bid(), b.best_ask()
        c.tob_checks += 1
        if bb != (q.bid_ticks, q.bid_lots) or ba != (q.ask_ticks, q.ask_lots):
            c.tob_mismatches += 1
            note(f"{b.venue}:{b.symbol} top of book at update id {q.update_id}: book bid {bb} ask {ba}, "
                 f"bookTicker bid {(q.bid_ticks, q.bid_lots)} ask {(q.ask_ticks, q.ask_lots)}")

    def invariant(c: _BookCheck) -> None:
        try:
            c.book._check()
        except InvariantError as exc:
            c.invariant_errors += 1
            note(f"invariant: {exc}")

    seq = 0
    n = 0
    for ev in ds.events():
        n += 1
        c = checks[(ev.venue, ev.symbol)]
        book = c.book
        if type(ev) is BookDeltas:
            was_gaps = book.stat_gaps
            book.apply(ev)
            if ev.is_snapshot:
                c.snapshots += 1
            else:
                c.messages += 1
            if book.stat_gaps != was_gaps:
                note(f"{book.venue}:{book.symbol} gap before update ids U={ev.first_update_id} "
                     f"u={ev.last_update_id} pu={ev.prev_update_id}")
            pend = c.pending
            if pend and not book.needs_resync:
                last = book.last_update_id
                while pend and pend[0][0] <= last:
                    uid, _, q = heapq.heappop(pend)
                    if uid == last:
                        compare(c, q)
                    else:
                        c.tob_skipped += 1
            if c.messages % check_every == 0:
                invariant(c)
        elif type(ev) is QuoteTick:
            c.quotes += 1
            uid = ev.update_id
            if uid < 0 or book.sequence_rule == "none":
                continue
            last = book.last_update_id
            if not book.needs_resync and uid == last:
                compare(c, ev)
            elif uid > last or book.needs_resync:
                seq += 1
                heapq.heappush(c.pending, (uid, seq, ev))
            else:
                c.tob_skipped += 1
        elif type(ev) is TradeTick:
            c.trades += 1
    res.events = n
    for c in checks.values():
        b = c.book
        invariant(c)
        st = b.statistics()
        res.book_updates += c.messages
        res.level_updates += b.stat_updates
        res.snapshots += c.snapshots
        res.trades += c.trades
        res.quotes += c.quotes
        res.gaps += b.stat_gaps
        res.resyncs += b.stat_resyncs
        res.crossed += b.stat_crossed
        res.tob_checks += c.tob_checks
        res.tob_mismatches += c.tob_mismatches
        res.invariant_errors += c.invariant_errors
        unresolved = 1 if (b.needs_resync and b.stat_gaps) else 0
        res.unresolved_gaps += unresolved
        rb = ds.report.books.get(f"{b.venue}:{c.venue_symbol}", {})
        if c.snapshots == 0 and (c.messages or rb.get("never_synced_depth") or rb.get("depth_events")):
            res.never_synced += 1
            note(f"{b.venue}:{b.symbol} never received a snapshot")
        bb, ba = b.best_bid(), b.best_ask()
        res.books[f"{b.venue}:{b.symbol}"] = {
            **st, "sequence_rule": b.sequence_rule, "messages": c.messages, "trades": c.trades,
            "quotes": c.quotes, "tob_checks": c.tob_checks, "tob_mismatches": c.tob_mismatches,
            "tob_not_comparable": c.tob_skipped + len(c.pending), "unresolved_gap": bool(unresolved),
            "last_update_id": b.last_update_id, "best_bid": bb, "best_ask": ba,
        }
    return res
