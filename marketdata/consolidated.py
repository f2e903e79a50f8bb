"""Consolidated view of one unified symbol across venues, on a common integer grid.

A :class:`ConsolidatedBook` reads per-venue :class:`~marketdata.book.L2Book` objects (it never
writes them: whoever owns a book, a feed or the replay driver, updates it) and answers, in COMMON
ticks and lots of a :class:`~marketdata.units.CommonGrid`:

* per-venue alignment: an optional ``basis_ticks`` per venue (common ticks by which that venue's
  prices sit above the reference, e.g. a perpetual's premium to spot) is subtracted from that
  venue's prices in every consolidated read, so instruments that are not identical (spot and a
  linear perpetual) can be compared; default 0 = raw prices;
* merged ladders per side that keep which venue each quantity rests on
  (:meth:`ConsolidatedBook.levels`: ``(price, [(venue, lots), ...])``; :meth:`entries`: flat
  ``(price, venue, lots, effective_price)``), best first, top-N;
* a fee-adjusted view: each venue's taker fee applied to its prices (a taker buying from asks pays
  ``p * (1 + fee)``, a taker selling into bids receives ``p * (1 - fee)``); effective prices are
  floats, raw prices stay integers;
* venue health: a venue is excluded when it is marked unhealthy, its book needs a resync, its
  book is crossed on its own, or its last update was received more than ``max_staleness_ns`` ago
  (staleness = ``clock.now_ns() - book.ts_init``); :meth:`excluded` says why;
* crosses BETWEEN included venues (one venue's best bid >= another's best ask, in common ticks,
  optionally after fees), reported by :meth:`crosses` and counted in :meth:`statistics`.

Crossed liquidity is SHOWN, not merged away: the ladders list every included venue's levels as they
are, so while two venues cross, ``best_bid() >= best_ask()`` and :attr:`is_crossed` is true. A
consumer that routes must look at :meth:`crosses` (a cross is usually stale data on one side or a
fleeting arbitrage, not liquidity that can be taken at both prices at once).

Cost: every read converts the top levels of each included venue (``n`` per venue for top-N reads)
and sorts them: O(V * n log(V * n)) for V venues. Health is re-evaluated on each read (O(V)).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from marketdata.book import L2Book
from marketdata.clock import Clock
from marketdata.errors import InstrumentError
from marketdata.model import Side
from marketdata.units import CommonGrid

log = logging.getLogger(__name__)

REASON_UNHEALTHY = "unhealthy"
REASON_RESYNC = "needs resync"
REASON_CROSSED = "crossed book"
REASON_STALE = "stale"


@dataclass(frozen=True, slots=True)
class LadderEntry:
    """Liquidity of one venue at one price, on the common grid.

    ``price_ticks`` is the consolidated (common-grid, basis-aligned) price; ``venue_price_ticks``
    the venue's own price in its own ticks (what an order there would carry). ``effective_price``
    is ``price_ticks`` adjusted by the venue's taker fee for a taker hitting this side (asks:
    ``p * (1 + fee)``, bids: ``p * (1 - fee)``), in common ticks."""

    price_ticks: int
    venue: str
    lots: int
    effective_price: float
    venue_price_ticks: int


@dataclass(frozen=True, slots=True)
class ConsolidatedLevel:
    """One common price with the lots of each venue resting there (venue order: by name)."""

    price_ticks: int
    venues: list[tuple[str, int]]

    @property
    def lots(self) -> int:
        return sum(q for _, q in self.venues)


@dataclass(frozen=True, slots=True)
class VenueCross:
    """``bid_venue``'s best bid is at or above ``ask_venue``'s best ask (common ticks).

    ``lots`` is the quantity that could be matched between the two books (bids walked down, asks
    walked up, while bid >= ask, after fees when ``fee_adjusted``), in common lots. ``edge`` is
    ``bid - ask`` of the two best prices (effective prices when ``fee_adjusted``)."""

    bid_venue: str
    ask_venue: str
    bid_price_ticks: int
    ask_price_ticks: int
    lots: int
    edge: float
    fee_adjusted: bool


class _Venue:
    __slots__ = ("basis", "book", "fee", "lot_f", "name", "price_f", "unhealthy_reason")

    def __init__(self, name: str, book: L2Book, fee_bps: float, price_f: int, lot_f: int, basis: int) -> None:
        self.basis = basis
        self.name = name
        self.book = book
        self.fee = fee_bps / 1e4
        self.price_f = price_f
        self.lot_f = lot_f
        self.unhealthy_reason: str | None = None


class ConsolidatedBook:
    """Merged, venue-attributed view of one symbol's books on a :class:`CommonGrid`.

    Not thread-safe; read from the same core that owns the books. All prices in and out are common
    ticks, all quantities common lots, unless a name says otherwise."""

    def __init__(self, grid: CommonGrid, clock: Clock, *, max_staleness_ns: int | None = None,
                 books: Mapping[str, L2Book] | None = None,
                 taker_fees_bps: Mapping[str, float] | None = None) -> None:
        if max_staleness_ns is not None and max_staleness_ns <= 0:
            raise ValueError(f"max_staleness_ns must be positive or None, got {max_staleness_ns}")
        self.grid = grid
        self.clock = clock
        self.max_staleness_ns = max_staleness_ns
        self._venues: dict[str, _Venue] = {}
        self._last_excluded: dict[str, str] = {}
        self._crossed_pairs: set[tuple[str, str, bool]] = set()
        self.stat_reads = 0
        self.stat_cross_checks = 0
        self.stat_crosses = 0
        self.stat_fee_crosses = 0
        self.stat_exclusions = 0
        fees = taker_fees_bps or {}
        for venue, book in (books or {}).items():
            self.add_venue(venue, book, taker_fee_bps=fees.get(venue, 0.0))

    # ------------------------------------------------------------------ venues
    def add_venue(self, venue: str, book: L2Book, *, taker_fee_bps: float = 0.0, basis_ticks: int = 0) -> None:
        """Attach ``venue``'s book (venue ticks/lots). The venue must be on the grid.

        ``taker_fee_bps``: the venue's taker fee, used by the fee-adjusted views. ``basis_ticks``:
        common ticks by which this venue's prices sit above the reference (see :meth:`set_basis_ticks`)."""
        if venue not in self.grid.price_factor:
            raise InstrumentError(
                f"consolidated {self.grid.symbol}: venue {venue!r} is not on the common grid "
                f"(grid venues: {', '.join(sorted(self.grid.price_factor))})")
        if venue in self._venues:
            raise ValueError(f"consolidated {self.grid.symbol}: venue {venue!r} added twice")
        self._venues[venue] = _Venue(venue, book, taker_fee_bps, self.grid.price_factor[venue],
                                     self.grid.lot_factor[venue], int(basis_ticks))

    def _venue(self, venue: str) -> _Venue:
        try:
            return self._venues[venue]
        except KeyError:
            raise InstrumentError(f"consolidated {self.grid.symbol}: unknown venue {venue!r} "
                                  f"(known: {', '.join(sorted(self._venues))})") from None

    @property
    def venues(self) -> list[str]:
        """All attached venues, in the order added."""
        return list(self._venues)

    def book(self, venue: str) -> L2Book:
        return self._venue(venue).book

    def set_taker_fee(self, venue: str, fee_bps: float) -> None:
        self._venue(venue).fee = fee_bps / 1e4

    def taker_fee_bps(self, venue: str) -> float:
        return self._venue(venue).fee * 1e4

    def set_basis_ticks(self, venue: str, basis_ticks: int) -> None:
        """Align ``venue`` to the reference: its prices are read as ``common_price - basis_ticks``.

        For a perpetual quoted 22.50 USDT above spot on a 0.01 grid, ``basis_ticks = 2250``. The
        caller owns the estimate (e.g. an average of :meth:`mid_basis_ticks`); 0 means raw."""
        self._venue(venue).basis = int(basis_ticks)

    def basis_ticks(self, venue: str) -> int:
        return self._venue(venue).basis

    def mid_basis_ticks(self, venue: str, reference: str) -> float | None:
        """Raw mid of ``venue`` minus raw mid of ``reference`` in common ticks, from their books
        (health is not consulted; None when a side is missing). A basis sample, not an estimate."""
        a, b = self._venue(venue), self._venue(reference)
        ma, mb = a.book.mid_ticks(), b.book.mid_ticks()
        if ma is None or mb is None:
            return None
        return ma * a.price_f - mb * b.price_f

    def mark_unhealthy(self, venue: str, reason: str) -> None:
        """Exclude ``venue`` until :meth:`mark_healthy` (e.g. feed disconnected, venue halted)."""
        v = self._venue(venue)
        if v.unhealthy_reason is None:
            log.warning("consolidated %s: venue %s marked unhealthy: %s", self.grid.symbol, venue, reason)
        v.unhealthy_reason = reason

    def mark_healthy(self, venue: str) -> None:
        self._venue(venue).unhealthy_reason = None

    def staleness_ns(self, venue: str) -> int:
        """Time since ``venue``'s book last received an update: ``clock.now_ns() - book.ts_init``.

        A book that never received anything has ``ts_init == 0`` and so counts as stale under any
        ``max_staleness_ns`` (it is usually also excluded as needing its first snapshot)."""
        return self.clock.now_ns() - self._venue(venue).book.ts_init

    def _exclusion_reason(self, v: _Venue, now: int) -> str | None:
        if v.unhealthy_reason is not None:
            return f"{REASON_UNHEALTHY}: {v.unhealthy_reason}"
        book = v.book
        if book.needs_resync:
            return REASON_RESYNC
        if book.crossed:
            return f"{REASON_CROSSED}: bid {book.best_bid_ticks} >= ask {book.best_ask_ticks} (venue ticks)"
        limit = self.max_staleness_ns
        if limit is not None and now - book.ts_init > limit:
            return f"{REASON_STALE}: last update {(now - book.ts_init) / 1e6:.1f} ms ago > {limit / 1e6:.1f} ms"
        return None

    def excluded(self) -> dict[str, str]:
        """Venues left out of every consolidated read right now, with the reason."""
        return self._evaluate()[1]

    def included(self) -> list[str]:
        """Venues every consolidated read uses right now."""
        return [v.name for v in self._evaluate()[0]]

    def _evaluate(self) -> tuple[list[_Venue], dict[str, str]]:
        now = self.clock.now_ns()
        inc: list[_Venue] = []
        exc: dict[str, str] = {}
        for v in self._venues.values():
            reason = self._exclusion_reason(v, now)
            if reason is None:
                inc.append(v)
            else:
                exc[v.name] = reason
        last = self._last_excluded
        if exc.keys() != last.keys():
            for name in exc.keys() - last.keys():
                self.stat_exclusions += 1
                log.warning("consolidated %s: venue %s excluded: %s", self.grid.symbol, name, exc[name])
            for name in last.keys() - exc.keys():
                log.info("consolidated %s: venue %s included again", self.grid.symbol, name)
            self._last_excluded = exc
        return inc, exc

    # ------------------------------------------------------------------ ladders
    def _collect(self, is_bid: bool, n: int | None) -> list[tuple[int, str, int, int, float]]:
        """(sort key, venue, common lots, venue price ticks, fee multiplier) of the top ``n`` venue
        levels of every included venue, sorted best first by raw price then venue. The sort key is
        the consolidated price, negated for bids, so a plain tuple sort orders them."""
        if n is not None and n < 0:
            raise ValueError(f"n must be >= 0 or None, got {n}")
        self.stat_reads += 1
        out: list[tuple[int, str, int, int, float]] = []
        for v in self._evaluate()[0]:
            pf, lf, basis, name = v.price_f, v.lot_f, v.basis, v.name
            if is_bid:
                mult = 1.0 - v.fee
                out += [(basis - p * pf, name, q * lf, p, mult) for p, q in v.book.bids(n)]
            else:
                mult = 1.0 + v.fee
                out += [(p * pf - basis, name, q * lf, p, mult) for p, q in v.book.asks(n)]
        out.sort()
        return out

    def entries(self, side: Side, n: int | None = None, *, fee_adjusted: bool = False) -> list[LadderEntry]:
        """Flat merged ladder of resting ``side`` (BUY = bids), best first, venue-attributed.

        Raw view (default): ordered by common price, best first; ties by venue name; ``n`` counts
        distinct prices (all entries at those prices are returned). Fee-adjusted view: ordered by
        effective price (what a taker would pay/receive after that venue's fee), ties by raw
        price then venue; ``n`` counts entries. O(V * n log(V * n)) for V venues."""
        is_bid = side is Side.BUY
        sign = -1 if is_bid else 1
        raw = self._collect(is_bid, n)
        if fee_adjusted:
            # k * mult is the effective price, negated for bids: best first under a plain sort
            by_eff = sorted([(k * mult, k, venue, lots, vp) for k, venue, lots, vp, mult in raw])
            if n is not None:
                by_eff = by_eff[:n]
            return [LadderEntry(k * sign, venue, lots, ek * sign, vp) for ek, k, venue, lots, vp in by_eff]
        out = [LadderEntry(k * sign, venue, lots, k * sign * mult, vp) for k, venue, lots, vp, mult in raw]
        if n is None:
            return out
        # keep the entries of the first n distinct prices
        distinct, cut = 0, len(out)
        last_p: int | None = None
        for i, e in enumerate(out):
            if e.price_ticks != last_p:
                distinct += 1
                if distinct > n:
                    cut = i
                    break
                last_p = e.price_ticks
        return out[:cut]

    def levels(self, side: Side, n: int | None = None) -> list[ConsolidatedLevel]:
        """Merged price levels of resting ``side`` (BUY = bids), best first, top ``n`` prices,
        each with the lots per venue (venues by name). Raw prices (no fees). O(V * n log(V * n))."""
        is_bid = side is Side.BUY
        result: list[ConsolidatedLevel] = []
        last_k: int | None = None
        cur: list[tuple[str, int]] = []
        for k, venue, lots, _, _ in self._collect(is_bid, n):
            if k != last_k:
                if n is not None and len(result) == n:
                    break
                cur = [(venue, lots)]
                result.append(ConsolidatedLevel(-k if is_bid else k, cur))
                last_k = k
            else:
                cur.append((venue, lots))
        return result

    # ------------------------------------------------------------------ top of book
    def _best(self, side: Side) -> tuple[int, int] | None:
        self.stat_reads += 1
        best: int | None = None
        lots = 0
        is_bid = side is Side.BUY
        for v in self._evaluate()[0]:
            top = v.book.best_bid() if is_bid else v.book.best_ask()
            if top is None:
                continue
            p, q = top[0] * v.price_f - v.basis, top[1] * v.lot_f
            if best is None or (p > best if is_bid else p < best):
                best, lots = p, q
            elif p == best:
                lots += q
        return None if best is None else (best, lots)

    def best_bid(self) -> tuple[int, int] | None:
        """Highest bid across included venues: (common ticks, total common lots there)."""
        return self._best(Side.BUY)

    def best_ask(self) -> tuple[int, int] | None:
        """Lowest ask across included venues: (common ticks, total common lots there)."""
        return self._best(Side.SELL)

    def mid_ticks(self) -> float | None:
        """Consolidated mid in common ticks (None when a side is empty). Computed from the merged
        best prices even while venues cross (then it lies between the crossing prices)."""
        bb, ba = self.best_bid(), self.best_ask()
        return None if bb is None or ba is None else (bb[0] + ba[0]) / 2

    def lots_available_by_venue(self, taker_side: Side, limit_ticks: int | None = None) -> dict[str, int]:
        """Common lots a taker on ``taker_side`` could take per included venue at or better than
        ``limit_ticks`` (consolidated common ticks; converted per venue, basis added back: a buy
        limit rounds down to the venue tick, a sell limit up, so no venue level beyond the limit
        counts)."""
        out: dict[str, int] = {}
        for v in self._evaluate()[0]:
            lim = (None if limit_ticks is None
                   else self.grid.to_venue_price(v.name, limit_ticks + v.basis, taker_side))
            out[v.name] = v.book.lots_available(taker_side, lim) * v.lot_f
        return out

    def lots_available(self, taker_side: Side, limit_ticks: int | None = None) -> int:
        """Total common lots takeable on ``taker_side`` up to ``limit_ticks`` across included venues."""
        return sum(self.lots_available_by_venue(taker_side, limit_ticks).values())

    # ------------------------------------------------------------------ crosses
    @property
    def is_crossed(self) -> bool:
        """Whether two included venues cross (raw, basis-aligned prices) right now. Runs
        :meth:`crosses`, so it updates the cross counters like any other check."""
        return bool(self.crosses())

    def crosses(self, *, fee_adjusted: bool = False) -> list[VenueCross]:
        """Every ordered pair (bid venue, ask venue) of included venues whose best bid >= best ask
        (after fees when ``fee_adjusted``: ``bid * (1 - fee_b) >= ask * (1 + fee_a)``).

        A pair that starts crossing counts once in ``statistics()["crosses"]`` (or
        ``["fee_crosses"]``) until it stops crossing. Sorted by edge, largest first."""
        self.stat_cross_checks += 1
        inc = self._evaluate()[0]
        tops = []
        for v in inc:
            bb, ba = v.book.best_bid_ticks, v.book.best_ask_ticks
            tops.append((v, None if bb is None else bb * v.price_f - v.basis,
                         None if ba is None else ba * v.price_f - v.basis))
        found: list[VenueCross] = []
        for vb, bid, _ in tops:
            if bid is None:
                continue
            for va, _, ask in tops:
                if va is vb or ask is None:
                    continue
                if fee_adjusted:
                    eb, ea = bid * (1.0 - vb.fee), ask * (1.0 + va.fee)
                else:
                    eb, ea = float(bid), float(ask)
                if eb >= ea:
                    found.append(VenueCross(vb.name, va.name, bid, ask,
                                            self._matchable_lots(vb, va, fee_adjusted), eb - ea, fee_adjusted))
        now_pairs = {(c.bid_venue, c.ask_venue, fee_adjusted) for c in found}
        old_pairs = {p for p in self._crossed_pairs if p[2] == fee_adjusted}
        for pair in now_pairs - old_pairs:
            if fee_adjusted:
                self.stat_fee_crosses += 1
            else:
                self.stat_crosses += 1
            log.info("consolidated %s: %s bid crosses %s ask%s", self.grid.symbol, pair[0], pair[1],
                        " after fees" if fee_adjusted else "")
        self._crossed_pairs = (self._crossed_pairs - old_pairs) | now_pairs
        found.sort(key=lambda c: -c.edge)
        return found

    def _matchable_lots(self, vb: _Venue, va: _Venue, fee_adjusted: bool) -> int:
        """Lots matchable between vb's bids (walked down) and va's asks (walked up) while they
        cross. Lazy: only the crossing levels (plus one per side) are read."""
        bids, asks = vb.book.iter_bids(), va.book.iter_asks()
        fb = (1.0 - vb.fee) if fee_adjusted else 1.0
        fa = (1.0 + va.fee) if fee_adjusted else 1.0
        bpf, bbasis, blf = vb.price_f, vb.basis, vb.lot_f
        apf, abasis, alf = va.price_f, va.basis, va.lot_f
        matched = 0
        bid = next(bids, None)
        ask = next(asks, None)
        if bid is None or ask is None:
            return 0
        bp, bq = bid[0] * bpf - bbasis, bid[1] * blf
        ap, aq = ask[0] * apf - abasis, ask[1] * alf
        while bp * fb >= ap * fa:
            take = min(bq, aq)
            matched += take
            bq -= take
            aq -= take
            if not bq:
                bid = next(bids, None)
                if bid is None:
                    break
                bp, bq = bid[0] * bpf - bbasis, bid[1] * blf
            if not aq:
                ask = next(asks, None)
                if ask is None:
                    break
                ap, aq = ask[0] * apf - abasis, ask[1] * alf
        return matched

    # ------------------------------------------------------------------ statistics
    def statistics(self) -> dict[str, int]:
        """Counters since creation: reads, cross checks, crosses/fee_crosses (episodes per venue
        pair), exclusions (a venue entering the excluded set), and the current venue counts."""
        inc, exc = self._evaluate()
        return {
            "venues": len(self._venues), "included": len(inc), "excluded": len(exc),
            "reads": self.stat_reads, "cross_checks": self.stat_cross_checks,
            "crosses": self.stat_crosses, "fee_crosses": self.stat_fee_crosses,
            "exclusions": self.stat_exclusions,
        }


__all__ = ["ConsolidatedBook", "ConsolidatedLevel", "LadderEntry", "VenueCross"]
