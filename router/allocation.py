"""Allocation kernels: the marketable sweep across venue ladders, and its naive reference.

Every venue's ladder arrives as an iterator of ``(venue_price_ticks, venue_lots)`` levels, best
first, together with that venue's integer conversion factors to the common grid
(:class:`~marketdata.units.CommonGrid`) and its fee-adjusted ordering key:

* buy: ``key = common_price * (1e8 + fee_e8 + penalty_e8)`` — the fee-adjusted price scaled by
  1e8 (fees and penalties in units of 1e-8 of notional = 1e-4 bps); lower is better;
* sell: ``key = -common_price * (1e8 - fee_e8 - penalty_e8)``; lower (= more proceeds) is better;
* plus a per-venue ``priority`` offset (``fastest``: venues in latency order first).

:func:`sweep` is a lazy heap merge: the heap holds one level per venue (its next best), the best
key is taken as far as the quantity left, the venue's lot size, its lot cap and its notional budget
allow, and only then is that venue's next level pulled. With ``V`` venues and ``L`` levels
consumed it costs O(V + L log V) and never materialises a whole ladder. All arithmetic is exact
integers, except the optional latency haircut (a float fraction of displayed lots, floored).

Optimality: with a common lot size of one venue lot everywhere and linear costs (no minimums),
the greedy order is optimal: within a venue any optimal allocation takes a best-first prefix (the
cheapest levels are also the cheapest per unit of budget), so caps and budgets only limit the
prefix length, and merging convex piecewise-linear costs greedily is optimal. The property test
``tests/router/test_router_allocation.py`` checks it against brute force. Venue minimums make the
problem non-convex; the router handles them by dropping a too-small slice and re-sweeping without
that venue (see :mod:`router.routing`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from heapq import heapify, heappop, heapreplace

from marketdata.book import L2Book
from marketdata.model import Side

__all__ = ["FEE_SCALE", "Ladder", "SweepResult", "VenueParams", "VenueTake", "naive_sweep", "sweep", "sweep_levels"]

FEE_SCALE = 100_000_000
"""Keys scale prices by 1e8: a fee of 1 bps is 10_000 in these units."""
NO_LIMIT = -1
_UNBOUNDED = 1 << 120
_CHUNKS = {1: 8, 8: 64}  # levels asked of a live book next, after having asked for this many; then all
_NO_LEVELS: list[tuple[int, int]] = []
_State = tuple[int, int, int, list[tuple[int, int]], int, int, int, int, int]
_Consts = tuple[int, int, float, int, float, int, int, int, int, int, bool]
_ZERO_STATE: _State = (0, 0, 0, _NO_LEVELS, 1, 0, 0, 0, 0)


@dataclass(slots=True)
class Ladder:
    """One venue's input to the sweep.

    ``levels``: iterator of (venue ticks, venue lots), best first. ``price_factor`` /
    ``lot_factor``: common ticks per venue tick / common lots per venue lot. ``key_mult``: 1e8 +
    fee + penalty for buys, 1e8 - fee - penalty for sells (in 1e-8; must be > 0, or a sell's
    keys would reverse the price order: the router floors it at 1). ``cost_mult``: 1e8 + fee
    (buy) used for the notional ``budget`` (in venue tick-lots x 1e8; ``-1`` none; buys only, a
    sell's budget must be turned into ``cap_lots`` by the caller). The budget is checked as the
    venue checks a limit buy: every lot taken on the venue valued at the worst level taken (the
    child's IOC limit price), not at the walked average. ``cap_lots``:
    most venue lots this venue may take (``-1`` none). ``priority``: added to every key
    (fastest-first ordering). ``p_gone_top``/``move_ticks``: latency haircut (0 disables)."""

    levels: Iterator[tuple[int, int]]
    price_factor: int = 1
    lot_factor: int = 1
    key_mult: int = FEE_SCALE
    cost_mult: int = FEE_SCALE
    cap_lots: int = NO_LIMIT
    budget: int = NO_LIMIT
    priority: int = 0
    p_gone_top: float = 0.0
    move_ticks: float = 1.0


@dataclass(slots=True)
class VenueTake:
    """What the sweep took from one venue: venue lots, worst (limit) venue price, exact notional
    in venue tick-lots, the ordering cost (sum of common lots x key), levels touched."""

    lots: int = 0
    worst_ticks: int | None = None
    notional: int = 0
    cost: int = 0
    levels: int = 0
    stop: str | None = None


class SweepResult:
    """Per-venue parallel lists (index = ladder index): ``lots`` (venue lots), ``worst`` (venue
    ticks of the worst level taken, ``None`` if nothing), ``notional`` (venue tick-lots),
    ``costs`` (common lots x key), ``levels`` touched and ``stops`` (why the venue stopped, or
    ``None``); totals ``filled_common_lots``, ``remaining_common_lots`` and ``cost``. Plain lists
    rather than one object per venue: building five small objects cost as much as the sweep.
    The kernel hands over its per-venue state and the lists are built on first read (a caller
    that reads only ``lots`` and ``worst`` does not pay for ``costs`` and ``levels``)."""

    __slots__ = ("_buy", "_cost", "_costs", "_levels", "_lots", "_notional", "_vp", "_vs", "_worst",
                 "filled_common_lots", "remaining_common_lots", "stops")
    _buy: bool  # the kernel's state, set by _from_state (the lists are then built from it)
    _vp: list[_Consts | None]
    _vs: list[_State]

    def __init__(self, lots: list[int], worst: list[int | None], notional: list[int], costs: list[int],
                 levels: list[int], stops: list[str | None], filled_common_lots: int,
                 remaining_common_lots: int, cost: int) -> None:
        self._lots: list[int] | None = lots
        self._worst: list[int | None] | None = worst
        self._notional: list[int] | None = notional
        self._costs: list[int] | None = costs
        self._levels: list[int] | None = levels
        self._cost: int | None = cost
        self.stops = stops
        self.filled_common_lots = filled_common_lots
        self.remaining_common_lots = remaining_common_lots

    @classmethod
    def _from_state(cls, buy: bool, vp: list[_Consts | None], vs: list[_State], stops: list[str | None],
                    filled_common_lots: int, remaining_common_lots: int) -> SweepResult:
        r = cls.__new__(cls)
        r._buy = buy
        r._vp = vp
        r._vs = vs
        r._lots = r._worst = r._notional = r._costs = r._levels = r._cost = None
        r.stops = stops
        r.filled_common_lots = filled_common_lots
        r.remaining_common_lots = remaining_common_lots
        return r

    @property
    def lots(self) -> list[int]:
        x = self._lots
        if x is None:
            x = self._lots = [v[5] for v in self._vs]
        return x

    @property
    def worst(self) -> list[int | None]:
        x = self._worst
        if x is None:
            buy = self._buy
            x = self._worst = [(v[8] if buy else -v[8]) if v[5] else None for v in self._vs]
        return x

    @property
    def notional(self) -> list[int]:
        x = self._notional
        if x is None:
            x = self._notional = [v[6] for v in self._vs] if self._buy else [-v[6] for v in self._vs]
        return x

    @property
    def costs(self) -> list[int]:
        # sum over takes of common lots x (key - priority) = lot_factor x price_factor x key_mult x signed notional
        x = self._costs
        if x is None:
            x = self._costs = [0 if c is None else c[0] * c[5] * v[6] for c, v in zip(self._vp, self._vs, strict=True)]
        return x

    @property
    def levels(self) -> list[int]:
        x = self._levels
        if x is None:
            x = self._levels = [v[7] for v in self._vs]
        return x

    @property
    def cost(self) -> int:
        x = self._cost
        if x is None:
            x = self._cost = sum(self.costs)
        return x

    @property
    def takes(self) -> list[VenueTake]:
        """The same per venue as :class:`VenueTake` objects (convenience, not for hot paths)."""
        return [VenueTake(*row) for row in zip(self.lots, self.worst, self.notional, self.costs, self.levels,
                                               self.stops, strict=True)]


def sweep(side: Side, ladders: list[Ladder], want_common_lots: int,
          limit_common_ticks: int | None = None) -> SweepResult:
    """Greedy lazy-heap sweep of ``want_common_lots`` across ``ladders`` (see module docstring).

    Never takes a level whose raw price is worse than ``limit_common_ticks`` (buy: above, sell:
    below), never more than a venue's ``cap_lots`` or (buys) ``budget``, always whole venue lots.
    ``stops[i]`` says why venue ``i`` stopped contributing when the order is not complete."""
    heads: list[tuple[int, int] | None] = []
    params: list[VenueParams] = []
    for lad in ladders:
        heads.append(next(lad.levels, None))
        params.append((lad.price_factor, lad.lot_factor, lad.key_mult, lad.cost_mult, lad.cap_lots, lad.budget,
                       lad.priority, lad.p_gone_top, lad.move_ticks))
    return sweep_levels(side, heads, [lad.levels for lad in ladders], None, params, want_common_lots,
                        limit_common_ticks)


VenueParams = tuple[int, int, int, int, int, int, int, float, float]
"""``(price_factor, lot_factor, key_mult, cost_mult, cap_lots, budget, priority, p_gone_top,
move_ticks)`` of one venue, as in :class:`Ladder`."""


def sweep_levels(side: Side, heads: list[tuple[int, int] | None] | None,
                 rests: list[Iterator[tuple[int, int]] | None] | None, books: list[L2Book] | None,
                 params: list[VenueParams], want_common_lots: int,
                 limit_common_ticks: int | None = None) -> SweepResult:
    """The kernel of :func:`sweep`, for callers that already hold each venue's best level.

    ``heads[i]``: venue ``i``'s best level ``(ticks, lots)`` or ``None`` (empty); ``heads=None``
    reads every venue's best level from ``books[i]`` (best price attribute and lots at it). Its deeper levels
    come from ``rests[i]`` (an iterator positioned after the head) or, when that (or ``rests``) is
    ``None``, from ``books[i]``, read in chunks of its top (8 levels, 64, then all) and only once the
    sweep gets past the head: most venues of a typical decision contribute at most their best
    level. Semantics as :func:`sweep`.

    Inside, prices are signed (``q = +price`` for a buy, ``-price`` for a sell) so that "worse" is
    always "larger" and one code path serves both sides. The heap holds ``(key, venue)``; the venue
    on top keeps taking its next levels without heap traffic while its key stays below the
    runner-up's, and a venue's constants and state are single tuples (one unpack per visit)."""
    buy = side is Side.BUY
    n = len(params)
    stops: list[str | None] = [None] * n
    # per venue in the heap: constants vp[i] = (lot_factor, priority, p_gone, signed best price,
    # haircut exponent factor, price_factor x key_mult, signed limit, cost_mult, cap, budget), and the
    # state vs[i] = (current signed price, its lots, index in chunk, chunk of book levels read so far,
    # levels asked of the book for it (-1: all), lots taken, signed notional, levels used, worst price)
    vp: list[_Consts | None] = [None] * n
    vs: list[_State] = [_ZERO_STATE] * n
    heap: list[tuple[int, int]] = []
    lim = limit_common_ticks
    its = rests
    for i in range(n):
        if heads is None:  # the best level straight from the live book
            assert books is not None
            b = books[i]
            hp = b.best_ask_ticks if buy else b.best_bid_ticks
            if hp is None:
                stops[i] = "no liquidity"
                continue
            hlots = b.ask_lots_at(hp) if buy else b.bid_lots_at(hp)
        else:
            lvl = heads[i]
            if lvl is None:
                stops[i] = "no liquidity"
                continue
            hp, hlots = lvl
        pf, lf, km, cm, cap, budget, prio, pg, mt = params[i]
        # the limit in signed venue ticks: a level is allowed while q <= qlim
        if lim is None:
            qlim = _UNBOUNDED
        elif buy:
            qlim = lim // pf  # buy: price * pf <= lim  <=>  price <= floor(lim / pf)
        else:
            qlim = -((lim + pf - 1) // pf)  # sell: price >= ceil(lim / pf)
        q = hp if buy else -hp
        if q > qlim:
            stops[i] = "limit price"
            continue
        kpf = pf * km
        budget = budget if buy else NO_LIMIT
        # lean: the common case (levels from a live book, no cap, no budget) has its own loop
        lean = (its is None or its[i] is None) and cap < 0 and budget < 0
        vp[i] = (lf, prio, pg, q, -pf / mt if pg else 0.0, kpf, qlim, cm, cap, budget, lean)
        vs[i] = (q, hlots, 0, _NO_LEVELS, 1, 0, 0, 0, 0)
        heap.append((prio + q * kpf, i))
    heapify(heap)
    remaining = want_common_lots
    exp = math.exp
    filled = False
    while heap:
        # venue i is the best; consume its levels while it stays the best (no heap traffic)
        i = heap[0][1]
        hl = len(heap)
        if hl > 2:
            sk, si = heap[1] if heap[1] < heap[2] else heap[2]
        elif hl == 2:
            sk, si = heap[1]
        else:
            sk, si = _UNBOUNDED * _UNBOUNDED, n
        c = vp[i]
        assert c is not None
        lf, prio, p_gone, qb, hk, kpf, qlim, cm, cap, budget, lean = c
        q, lots, k, lv, f, tk, nt, nl, wq = vs[i]
        if lean:
            nlv = len(lv)
            while True:
                if p_gone:  # exp(0.0) == 1.0 exactly, so the venue's best level needs no call
                    lots = int(lots * (1.0 - p_gone * exp((q - qb) * hk))) if q != qb else int(lots * (1.0 - p_gone))
                take = remaining // lf
                if lots < take:
                    take = lots
                if take > 0:
                    tk += take
                    wq = q
                    nt += take * q
                    nl += 1
                    remaining -= take * lf
                    if remaining < lf:  # done, or what is left is below this venue's lot
                        if remaining <= 0:
                            filled = True
                            break
                        stops[i] = "lot size"
                        heappop(heap)
                        break
                elif remaining < lf:
                    stops[i] = "lot size"
                    heappop(heap)
                    break
                k += 1
                if k >= nlv:
                    if k >= f > 0:  # read deeper: 8, 64, then all levels
                        assert books is not None
                        f = _CHUNKS.get(f, -1)
                        lv = (books[i].asks if buy else books[i].bids)(None if f < 0 else f)
                        nlv = len(lv)
                    if k >= nlv:
                        stops[i] = "book depth"
                        heappop(heap)
                        break
                p, lots = lv[k]
                q = p if buy else -p
                if q > qlim:
                    stops[i] = "limit price"
                    heappop(heap)
                    break
                key = prio + q * kpf
                if key > sk or (key == sk and i > si):
                    heapreplace(heap, (key, i))
                    break
        else:
            it = its[i] if its is not None else None
            while True:
                if p_gone:
                    lots = int(lots * (1.0 - p_gone * exp((q - qb) * hk)))
                take = remaining // lf
                if lots < take:
                    take = lots
                stop: str | None = None
                if cap >= 0 and cap - tk <= take:
                    take = cap - tk
                    stop = "venue cap/balance"
                if budget >= 0:
                    # the venue checks (and locks) quantity x limit price, and the IOC limit is the
                    # worst level taken: every lot on this venue is valued at this level's price
                    afford = budget // (q * cm) - tk
                    if afford <= take:
                        take = afford
                        stop = "balance"
                if take > 0:
                    tk += take
                    wq = q
                    nt += take * q
                    nl += 1
                    remaining -= take * lf
                    if remaining <= 0:
                        filled = True
                        break
                if stop is None and remaining < lf:
                    stop = "lot size"
                if stop is not None:
                    stops[i] = stop
                    heappop(heap)
                    break
                if it is not None:
                    nxt = next(it, None)
                else:
                    k += 1
                    if k >= len(lv) and k >= f > 0:
                        assert books is not None
                        f = _CHUNKS.get(f, -1)
                        lv = (books[i].asks if buy else books[i].bids)(None if f < 0 else f)
                    nxt = lv[k] if k < len(lv) else None
                if nxt is None:
                    stops[i] = "book depth"
                    heappop(heap)
                    break
                q = nxt[0] if buy else -nxt[0]
                lots = nxt[1]
                if q > qlim:
                    stops[i] = "limit price"
                    heappop(heap)
                    break
                key = prio + q * kpf
                if key > sk or (key == sk and i > si):
                    heapreplace(heap, (key, i))
                    break
        vs[i] = (q, lots, k, lv, f, tk, nt, nl, wq)
        if filled:
            break
    return SweepResult._from_state(buy, vp, vs, stops, want_common_lots - remaining, remaining)


def naive_sweep(side: Side, ladders: list[Ladder], want_common_lots: int,
                limit_common_ticks: int | None = None) -> SweepResult:
    """Reference implementation: materialise every level of every venue, sort all by key, walk.

    Same semantics as :func:`sweep` (used by tests and the benchmark's baseline)."""
    buy = side is Side.BUY
    rows: list[tuple[int, int, int, int, int]] = []
    for i, lad in enumerate(ladders):
        levels = list(lad.levels)
        best = levels[0][0] if levels else 0
        for px, lots in levels:
            pc = px * lad.price_factor
            if limit_common_ticks is not None and (pc > limit_common_ticks if buy else pc < limit_common_ticks):
                break
            if lad.p_gone_top:
                dist = (px - best if buy else best - px) * lad.price_factor
                lots = int(lots * (1.0 - lad.p_gone_top * math.exp(-dist / lad.move_ticks)))
            key = lad.priority + (pc * lad.key_mult if buy else -pc * lad.key_mult)
            rows.append((key, i, px, lots, pc))
    rows.sort()
    takes = [VenueTake() for _ in ladders]
    remaining = want_common_lots
    total = 0
    for key, i, px, lots, _pc in rows:
        if remaining <= 0:
            break
        lad = ladders[i]
        t = takes[i]
        take = min(lots, remaining // lad.lot_factor)
        if lad.cap_lots >= 0:
            take = min(take, lad.cap_lots - t.lots)
        if buy and lad.budget >= 0:
            take = min(take, lad.budget // (px * lad.cost_mult) - t.lots)
        if take <= 0:
            continue
        t.lots += take
        t.worst_ticks = px
        t.notional += take * px
        c = take * lad.lot_factor * (key - lad.priority)
        t.cost += c
        total += c
        t.levels += 1
        remaining -= take * lad.lot_factor
    return SweepResult([t.lots for t in takes], [t.worst_ticks for t in takes], [t.notional for t in takes],
                       [t.cost for t in takes], [t.levels for t in takes], [t.stop for t in takes],
                       want_common_lots - remaining, remaining, total)
