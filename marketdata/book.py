"""L2 order book for one instrument on one venue, in integer ticks and lots.

Layout: per side a ``dict`` price_ticks -> lots (the truth) and a plain ascending ``list`` index
of the prices present, kept sorted with ``bisect``. Asks are indexed negated, so on both sides the
best price is the last element and top-of-book churn moves almost nothing. The best bid/ask are
cached in the public attributes ``best_bid_ticks`` / ``best_ask_ticks``. Changing an existing
level is one dict store; adding or removing a level is a bisect plus a list insert/delete; reading
the best price is an attribute load, O(1).

Sequencing: :meth:`L2Book.apply` checks each message's venue update ids under one of two rules
(``contiguous``: each message starts at the previous last id + 1, Binance spot; ``prev``: each
message names the previous message's last id, Binance futures ``pu``). A break counts a gap, marks
the book as needing a resync, clears it, calls ``on_gap(book)`` so that the feed fetches a new
snapshot of this one book, and drops deltas until :meth:`L2Book.apply_snapshot`.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from marketdata.errors import DataError, InvariantError
from marketdata.model import BookDeltas, Side

log = logging.getLogger(__name__)

SequenceRule = Literal["contiguous", "prev", "none"]


@dataclass(frozen=True, slots=True)
class FillEstimate:
    """What taking ``requested_lots`` from the book would cost, level by level.

    ``notional_tick_lots`` is the exact sum of price_ticks x lots over the levels walked."""

    requested_lots: int
    filled_lots: int
    notional_tick_lots: int
    worst_price_ticks: int | None
    levels: int
    taker_side: Side | None = None

    @property
    def average_price_ticks(self) -> float | None:
        return self.notional_tick_lots / self.filled_lots if self.filled_lots else None

    @property
    def complete(self) -> bool:
        """``True`` when the whole ``requested_lots`` could be filled."""
        return self.filled_lots == self.requested_lots

    def cost_with_fee(self, fee_bps: float) -> float:
        """Notional plus a fee of ``fee_bps`` on it, in tick-lots: ``notional * (1 + fee)``.

        For a buy this is what is paid. For a sell it is NOT the proceeds (the fee is subtracted
        from what is received); use :meth:`net_notional` for a side-aware figure."""
        return self.notional_tick_lots * (1.0 + fee_bps / 1e4)

    def net_notional(self, fee_bps: float) -> float:
        """Side-aware fee-inclusive notional in tick-lots: a buy pays ``notional * (1 + fee)``,
        a sell receives ``notional * (1 - fee)``. Needs ``taker_side`` (set by
        :meth:`L2Book.estimate_fill`)."""
        if self.taker_side is None:
            raise ValueError("net_notional needs taker_side; build the estimate with L2Book.estimate_fill")
        return self.notional_tick_lots * (1.0 + int(self.taker_side) * fee_bps / 1e4)


class L2Book:
    """Aggregated price-level book. Not thread-safe; owned by one event loop / core."""

    __slots__ = (
        "_ask_neg", "_asks", "_bid_px", "_bids", "_first_after_snapshot", "best_ask_ticks",
        "best_bid_ticks", "crossed", "last_update_id", "needs_resync", "on_gap", "sequence_rule",
        "stat_crossed", "stat_dropped", "stat_gaps", "stat_resyncs", "stat_snapshots", "stat_stale",
        "stat_updates", "symbol", "ts_event", "ts_init", "venue",
    )

    def __init__(self, venue: str = "", symbol: str = "", *, sequence_rule: SequenceRule = "none",
                 on_gap: Callable[[L2Book], None] | None = None) -> None:
        self.venue = venue
        self.symbol = symbol
        self.sequence_rule: SequenceRule = sequence_rule
        self.on_gap = on_gap
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._bid_px: list[int] = []
        self._ask_neg: list[int] = []
        self.best_bid_ticks: int | None = None
        self.best_ask_ticks: int | None = None
        self.last_update_id = -1
        self.ts_event = 0
        self.ts_init = 0
        self.needs_resync = sequence_rule != "none"
        self._first_after_snapshot = False
        self.crossed = False
        self.stat_updates = 0
        self.stat_gaps = 0
        self.stat_resyncs = 0
        self.stat_snapshots = 0
        self.stat_crossed = 0
        self.stat_dropped = 0
        self.stat_stale = 0

    # ------------------------------------------------------------------ level updates (hot path)
    def update_bid(self, price_ticks: int, lots: int) -> None:
        """Set the bid level at ``price_ticks`` to ``lots`` (0 deletes). O(1) for an existing
        level; adding or removing one is a bisect plus a list insert/delete near the list's end
        (the best price sits at the end of the index, so top-of-book churn moves little)."""
        levels = self._bids
        if lots:
            if price_ticks not in levels:
                insort(self._bid_px, price_ticks)
                best = self.best_bid_ticks
                if best is None or price_ticks > best:
                    self.best_bid_ticks = price_ticks
            levels[price_ticks] = lots
        elif levels.pop(price_ticks, 0):  # one lookup; deleting an absent level is a no-op
            px = self._bid_px
            if price_ticks == self.best_bid_ticks:
                px.pop()
                self.best_bid_ticks = px[-1] if px else None
            else:
                del px[bisect_left(px, price_ticks)]

    def update_ask(self, price_ticks: int, lots: int) -> None:
        """Set the ask level at ``price_ticks`` to ``lots`` (0 deletes). The ask index holds
        negated prices, ascending, so the best ask is also at the end."""
        levels = self._asks
        if lots:
            if price_ticks not in levels:
                insort(self._ask_neg, -price_ticks)
                best = self.best_ask_ticks
                if best is None or price_ticks < best:
                    self.best_ask_ticks = price_ticks
            levels[price_ticks] = lots
        elif levels.pop(price_ticks, 0):
            px = self._ask_neg
            if price_ticks == self.best_ask_ticks:
                px.pop()
                self.best_ask_ticks = -px[-1] if px else None
            else:
                del px[bisect_left(px, -price_ticks)]

    def update(self, side: Side, price_ticks: int, lots: int) -> None:
        if side is Side.BUY:
            self.update_bid(price_ticks, lots)
        else:
            self.update_ask(price_ticks, lots)

    # ------------------------------------------------------------------ messages
    def clear(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._bid_px.clear()
        self._ask_neg.clear()
        self.best_bid_ticks = None
        self.best_ask_ticks = None
        self.crossed = False

    def apply_snapshot(self, bids: Iterable[tuple[int, int]], asks: Iterable[tuple[int, int]],
                       update_id: int = -1, ts_event: int = 0, ts_init: int = 0) -> None:
        """Replace the whole book. Ends a pending resync. A snapshot with negative lots raises
        :class:`DataError` and leaves the book as it was."""
        bid_map = {p: q for p, q in bids if q}
        ask_map = {p: q for p, q in asks if q}
        for name, side_map in (("bid", bid_map), ("ask", ask_map)):
            bad = [(p, q) for p, q in side_map.items() if q < 0]
            if bad:
                raise DataError(f"book {self.venue}:{self.symbol} snapshot {update_id}: negative lots "
                                f"at {name} level(s) {bad[:3]} (price_ticks, lots)")
        self.clear()  # only once the snapshot is known good
        self._bids.update(bid_map)
        self._asks.update(ask_map)
        self._bid_px.extend(sorted(bid_map))
        self._ask_neg.extend(sorted(-p for p in ask_map))
        self.best_bid_ticks = self._bid_px[-1] if self._bid_px else None
        self.best_ask_ticks = -self._ask_neg[-1] if self._ask_neg else None
        if self.needs_resync and self.stat_snapshots:
            self.stat_resyncs += 1
        self.stat_snapshots += 1
        self.needs_resync = False
        # The first delta after a snapshot is checked with the looser "straddles the snapshot" rule;
        # after a snapshot without an id (update_id < 0) it anchors the chain unchecked.
        self._first_after_snapshot = True
        self.last_update_id = update_id
        self.ts_event = ts_event
        self.ts_init = ts_init
        self._check_crossed()

    def apply(self, msg: BookDeltas) -> bool:
        """Apply one venue message (snapshot or deltas) with sequence checking.

        Returns ``True`` if the book is in sync afterwards (the message was applied or was stale
        and ignored), ``False`` if it was dropped because of a gap or a pending resync."""
        if msg.is_snapshot:
            self.apply_snapshot(msg.bids, msg.asks, msg.last_update_id, msg.ts_event, msg.ts_init)
            return True
        if self.needs_resync:
            self.stat_dropped += 1
            return False
        rule = self.sequence_rule
        if rule != "none" and msg.last_update_id >= 0:
            last = self.last_update_id
            if msg.last_update_id <= last:
                self.stat_stale += 1
                return True
            if self._first_after_snapshot:
                if last < 0:
                    ok = True
                elif rule == "contiguous":
                    ok = msg.first_update_id <= last + 1 <= msg.last_update_id
                else:
                    ok = msg.first_update_id <= last or msg.prev_update_id == last
            elif rule == "contiguous":
                ok = msg.first_update_id == last + 1
            else:
                ok = msg.prev_update_id == last
            if not ok:
                self._gap(msg)
                return False
            self._first_after_snapshot = False
        ub, ua = self.update_bid, self.update_ask
        for p, q in msg.bids:
            ub(p, q)
        for p, q in msg.asks:
            ua(p, q)
        self.stat_updates += len(msg.bids) + len(msg.asks)
        if msg.last_update_id >= 0:
            self.last_update_id = msg.last_update_id
        self.ts_event = msg.ts_event
        self.ts_init = msg.ts_init
        self._check_crossed()
        return True

    def _gap(self, msg: BookDeltas) -> None:
        self.stat_gaps += 1
        log.warning("book %s:%s sequence gap: last_update_id=%d, message U=%d u=%d pu=%d; resync needed",
                    self.venue, self.symbol, self.last_update_id, msg.first_update_id,
                    msg.last_update_id, msg.prev_update_id)
        self.request_resync()

    def request_resync(self) -> None:
        """Mark this book out of sync, clear it, and ask the feed (``on_gap``) for a snapshot."""
        self.needs_resync = True
        self.clear()
        if self.on_gap is not None:
            self.on_gap(self)

    def check_crossed(self) -> bool:
        """Re-evaluate (and return) the ``crossed`` flag.

        :meth:`apply` and :meth:`apply_snapshot` do this at the end of every message, because a
        venue message may cross the book transiently between its first and last level. Callers
        that drive :meth:`update_bid`/:meth:`update_ask` directly call this at their own message
        boundary. Counts a new crossed episode in ``statistics()["crossed"]``."""
        self._check_crossed()
        return self.crossed

    def _check_crossed(self) -> None:
        bb, ba = self.best_bid_ticks, self.best_ask_ticks
        crossed = bb is not None and ba is not None and bb >= ba
        if crossed and not self.crossed:
            self.stat_crossed += 1
            log.warning("book %s:%s crossed: bid %s >= ask %s", self.venue, self.symbol, bb, ba)
        self.crossed = crossed

    # ------------------------------------------------------------------ reads
    def best_bid(self) -> tuple[int, int] | None:
        b = self.best_bid_ticks
        return None if b is None else (b, self._bids[b])

    def best_ask(self) -> tuple[int, int] | None:
        a = self.best_ask_ticks
        return None if a is None else (a, self._asks[a])

    def bid_lots_at(self, price_ticks: int) -> int:
        return self._bids.get(price_ticks, 0)

    def ask_lots_at(self, price_ticks: int) -> int:
        return self._asks.get(price_ticks, 0)

    def mid_ticks(self) -> float | None:
        bb, ba = self.best_bid_ticks, self.best_ask_ticks
        return None if bb is None or ba is None else (bb + ba) / 2

    def spread_ticks(self) -> int | None:
        bb, ba = self.best_bid_ticks, self.best_ask_ticks
        return None if bb is None or ba is None else ba - bb

    def bids(self, n: int | None = None) -> list[tuple[int, int]]:
        """Top ``n`` bid levels, best first (all when ``n`` is None). O(n)."""
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0 or None, got {n}")
        px = self._bid_px
        sel = px[::-1] if n is None else px[: -n - 1 if n < len(px) else None: -1]
        levels = self._bids
        return [(p, levels[p]) for p in sel]

    def asks(self, n: int | None = None) -> list[tuple[int, int]]:
        """Top ``n`` ask levels, best first (all when ``n`` is None). O(n)."""
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0 or None, got {n}")
        neg = self._ask_neg
        sel = neg[::-1] if n is None else neg[: -n - 1 if n < len(neg) else None: -1]
        levels = self._asks
        return [(-p, levels[-p]) for p in sel]

    def iter_bids(self) -> Iterator[tuple[int, int]]:
        """Lazy ``(price_ticks, lots)`` over the bids, best first. O(1) per level taken; the book
        must not change while iterating."""
        levels = self._bids
        for p in reversed(self._bid_px):
            yield p, levels[p]

    def iter_asks(self) -> Iterator[tuple[int, int]]:
        """Lazy ``(price_ticks, lots)`` over the asks, best first (see :meth:`iter_bids`)."""
        levels = self._asks
        for neg in reversed(self._ask_neg):
            yield -neg, levels[-neg]

    def depth(self, side: Side, n: int | None = None) -> list[tuple[int, int]]:
        """Resting levels on ``side`` (BUY = bids), best first."""
        return self.bids(n) if side is Side.BUY else self.asks(n)

    def iter_levels(self, taker_side: Side) -> Iterator[tuple[int, int]]:
        """Lazily yield the levels a taker on ``taker_side`` would hit, best first, as
        ``(price_ticks, lots)``: asks for a buy, bids for a sell. O(1) per level pulled; the book
        must not change while the iterator is in use (the router's lazy heap merge reads only the
        levels it needs)."""
        if taker_side is Side.BUY:
            asks = self._asks
            return ((-p, asks[-p]) for p in reversed(self._ask_neg))
        bids = self._bids
        return ((p, bids[p]) for p in reversed(self._bid_px))

    def level_count(self) -> tuple[int, int]:
        return len(self._bids), len(self._asks)

    def lots_available(self, taker_side: Side, limit_ticks: int | None = None) -> int:
        """Lots a taker on ``taker_side`` could take at or better than ``limit_ticks``."""
        if taker_side is Side.BUY:
            neg = self._ask_neg
            sel = neg if limit_ticks is None else neg[bisect_left(neg, -limit_ticks):]
            return sum(self._asks[-p] for p in sel)
        px = self._bid_px
        sel = px if limit_ticks is None else px[bisect_left(px, limit_ticks):]
        bids = self._bids
        return sum(bids[p] for p in sel)

    def estimate_fill(self, taker_side: Side, lots: int, limit_ticks: int | None = None) -> FillEstimate:
        """Walk the opposite side for ``lots`` (up to ``limit_ticks``): exact notional, worst price."""
        if lots < 0:
            raise ValueError(f"lots must be >= 0, got {lots}")
        px_iter: Iterable[int]
        if taker_side is Side.BUY:
            levels, px_iter = self._asks, (-p for p in reversed(self._ask_neg))
        else:
            levels, px_iter = self._bids, reversed(self._bid_px)
        sign = int(taker_side)
        remaining, notional, worst, n = lots, 0, None, 0
        for p in px_iter:
            if remaining <= 0 or (limit_ticks is not None and sign * (p - limit_ticks) > 0):
                break
            take = min(remaining, levels[p])
            remaining -= take
            notional += take * p
            worst = p
            n += 1
        return FillEstimate(lots, lots - remaining, notional, worst, n, taker_side)

    # ------------------------------------------------------------------ self-checks
    def statistics(self) -> dict[str, int]:
        """Counters since creation."""
        return {
            "updates": self.stat_updates, "gaps": self.stat_gaps, "resyncs": self.stat_resyncs,
            "snapshots": self.stat_snapshots, "crossed": self.stat_crossed,
            "dropped": self.stat_dropped, "stale": self.stat_stale,
            "bid_levels": len(self._bids), "ask_levels": len(self._asks),
        }

    def _check(self) -> None:
        """Verify every internal invariant; raise :class:`InvariantError` on the first broken one."""
        asks_index = [-p for p in reversed(self._ask_neg)]
        for name, levels, px in (("bid", self._bids, self._bid_px), ("ask", self._asks, asks_index)):
            if px != sorted(levels):
                raise InvariantError(f"{self.venue}:{self.symbol} {name} price index out of sync with levels")
            if any(q <= 0 for q in levels.values()):
                raise InvariantError(f"{self.venue}:{self.symbol} {name} has a non-positive level")
            if len(set(px)) != len(px):
                raise InvariantError(f"{self.venue}:{self.symbol} {name} price index has duplicates")
        exp_bb = self._bid_px[-1] if self._bid_px else None
        exp_ba = asks_index[0] if asks_index else None
        if self.best_bid_ticks != exp_bb or self.best_ask_ticks != exp_ba:
            raise InvariantError(
                f"{self.venue}:{self.symbol} cached top ({self.best_bid_ticks}, {self.best_ask_ticks}) "
                f"!= actual ({exp_bb}, {exp_ba})")
        crossed = exp_bb is not None and exp_ba is not None and exp_bb >= exp_ba
        if crossed != self.crossed:
            raise InvariantError(f"{self.venue}:{self.symbol} crossed flag {self.crossed} != {crossed}")
