"""The optimised sweep kernels against the pre-optimisation kernel, field by field.

``_sweep_v1`` is the lazy heap merge as it was before the routing-latency work (verbatim), kept as
the reference: the optimised :func:`router.allocation.sweep` (iterators) and
:func:`router.allocation.sweep_levels` (best level + live books, the router's path) must return the
same lots, worst prices, notionals, costs, level counts and stop reasons on random books, fees,
caps, budgets, priorities, limits and latency haircuts, both sides."""

from __future__ import annotations

import math
from collections.abc import Iterator
from heapq import heapify, heappop, heapreplace

from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.book import L2Book
from marketdata.model import Side
from router.allocation import _UNBOUNDED, FEE_SCALE, NO_LIMIT, Ladder, SweepResult, sweep, sweep_levels


def _sweep_v1(side: Side, ladders: list[Ladder], want_common_lots: int,
          limit_common_ticks: int | None = None) -> SweepResult:
    """Greedy lazy-heap sweep of ``want_common_lots`` across ``ladders`` (see module docstring).

    Never takes a level whose raw price is worse than ``limit_common_ticks`` (buy: above, sell:
    below), never more than a venue's ``cap_lots`` or (buys) ``budget``, always whole venue lots.
    ``takes[i].stop`` says why venue ``i`` stopped contributing when the order is not complete.

    Inside, prices are signed (``q = +price`` for a buy, ``-price`` for a sell) so that "worse" is
    always "larger" and one code path serves both sides."""
    sgn = 1 if side is Side.BUY else -1
    n = len(ladders)
    taken = [0] * n
    worst = [0] * n
    notional = [0] * n
    nlev = [0] * n
    stops: list[str | None] = [None] * n
    heap: list[tuple[int, int, int, int, int]] = []
    params: list[tuple[Iterator[tuple[int, int]], int, int, int, int, int, int, float, float, int]] = []
    lim = limit_common_ticks
    for i, lad in enumerate(ladders):
        pf = lad.price_factor
        kpf = pf * lad.key_mult
        prio = lad.priority
        # the limit in signed venue ticks: a level is allowed while q <= qlim
        if lim is None:
            qlim = _UNBOUNDED
        elif sgn > 0:
            qlim = lim // pf  # buy: price * pf <= lim  <=>  price <= floor(lim / pf)
        else:
            qlim = -((lim + pf - 1) // pf)  # sell: price >= ceil(lim / pf)
        params.append((lad.levels, kpf, lad.lot_factor, lad.cost_mult, lad.cap_lots,
                       lad.budget if sgn > 0 else NO_LIMIT, prio, lad.p_gone_top, -pf / lad.move_ticks, qlim))
        lvl = next(lad.levels, None)
        if lvl is None:
            stops[i] = "no liquidity"
            continue
        q = lvl[0] * sgn
        if q > qlim:
            stops[i] = "limit price"
            continue
        heap.append((prio + q * kpf, i, q, lvl[1], q))
    heapify(heap)
    remaining = want_common_lots
    exp = math.exp
    while heap:
        _key, i, q, lots, qbest = heap[0]
        levels, kpf, lf, cm, cap, budget, prio, p_gone, hk, qlim = params[i]
        if p_gone:
            lots = int(lots * (1.0 - p_gone * exp((q - qbest) * hk)))
        take = remaining // lf
        if lots < take:
            take = lots
        stop: str | None = None
        if cap >= 0 and cap - taken[i] <= take:
            take = cap - taken[i]
            stop = "venue cap/balance"
        if budget >= 0:
            # budget rule since the balance fix: every lot on the venue valued at the worst level
            # taken (the IOC limit), as the venue checks a limit buy
            afford = budget // (q * cm) - taken[i]
            if afford <= take:
                take = afford
                stop = "balance"
        if take > 0:
            taken[i] += take
            worst[i] = q
            notional[i] += take * q
            nlev[i] += 1
            remaining -= take * lf
            if remaining <= 0:
                break
        if stop is None and remaining < lf:
            stop = "lot size"
        if stop is not None:
            stops[i] = stop
            heappop(heap)
            continue
        nxt = next(levels, None)
        if nxt is None:
            stops[i] = "book depth"
            heappop(heap)
            continue
        nq = nxt[0] * sgn
        if nq > qlim:
            stops[i] = "limit price"
            heappop(heap)
            continue
        heapreplace(heap, (prio + nq * kpf, i, nq, nxt[1], qbest))
    # sum over takes of common lots x (key - priority) = lot_factor x price_factor x key_mult x signed notional
    costs = [p[2] * p[1] * v for p, v in zip(params, notional, strict=True)]
    worst_px: list[int | None] = [w * sgn if t else None for w, t in zip(worst, taken, strict=True)]
    if sgn < 0:
        notional = [-v for v in notional]
    return SweepResult(taken, worst_px, notional, costs, nlev, stops, want_common_lots - remaining, remaining,
                       sum(costs))



venue_st = st.tuples(
    st.integers(900, 1100),                                               # best price (venue ticks)
    st.lists(st.tuples(st.integers(1, 4), st.integers(1, 30)), min_size=0, max_size=12),  # (gap, lots)
    st.sampled_from([1, 2, 5]),                                           # price factor
    st.sampled_from([1, 10, 100]),                                        # lot factor
    st.integers(-5_000, 60_000),                                          # fee + penalty (1e-8)
    st.sampled_from([NO_LIMIT, 0, 3, 40]),                                # cap
    st.sampled_from([NO_LIMIT, 0, 10_000 * FEE_SCALE, 60_000 * FEE_SCALE]),  # budget
    st.sampled_from([0, 0, 1 << 96, 2 << 96]),                            # priority
    st.sampled_from([0.0, 0.0, 0.3, 0.9]), st.sampled_from([1.0, 2.5, 40.0]))  # haircut


def _book(side: Side, best: int, steps: list[tuple[int, int]]) -> L2Book:
    book = L2Book("x", "BTC-USDT")
    px = best
    for k, (gap, lots) in enumerate(steps):
        if k:
            px = px + gap if side is Side.BUY else px - gap
        if side is Side.BUY:
            book.update_ask(px, lots)
        else:
            book.update_bid(px, lots)
    return book


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([Side.BUY, Side.SELL]), st.lists(venue_st, min_size=1, max_size=5),
       st.integers(0, 3000), st.one_of(st.none(), st.integers(800, 6000)))
def test_optimised_kernels_match_the_previous_kernel(side: Side, venues: list, want: int,  # type: ignore[type-arg]
                                                       limit: int | None) -> None:
    sgn = int(side)
    books = [_book(side, v[0], v[1]) for v in venues]

    def ladders() -> list[Ladder]:
        out = []
        for b, (_best, _s, pf, lf, fee, cap, budget, prio, pg, mt) in zip(books, venues, strict=True):
            out.append(Ladder(b.iter_levels(side), pf, lf, FEE_SCALE + sgn * fee, FEE_SCALE + abs(fee), cap, budget,
                              prio, pg, mt))
        return out

    ref = _sweep_v1(side, ladders(), want, limit)
    fields = ("lots", "worst", "notional", "costs", "levels", "stops", "filled_common_lots",
              "remaining_common_lots", "cost")
    expect = [getattr(ref, f) for f in fields]
    got = sweep(side, ladders(), want, limit)
    assert [getattr(got, f) for f in fields] == expect
    lads = ladders()
    heads = []
    for b in books:
        p = b.best_ask_ticks if side is Side.BUY else b.best_bid_ticks
        heads.append(None if p is None else (p, b.ask_lots_at(p) if side is Side.BUY else b.bid_lots_at(p)))
    params = [(la.price_factor, la.lot_factor, la.key_mult, la.cost_mult, la.cap_lots, la.budget, la.priority,
               la.p_gone_top, la.move_ticks) for la in lads]
    got2 = sweep_levels(side, heads, [None] * len(books), books, params, want, limit)
    assert [getattr(got2, f) for f in fields] == expect
    # the router's path: best levels read from the books by the kernel itself
    got3 = sweep_levels(side, None, None, books, params, want, limit)
    assert [getattr(got3, f) for f in fields] == expect
