"""Allocation kernel: the lazy heap sweep against brute force and against the naive full sort."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.model import Side
from router.allocation import FEE_SCALE, NO_LIMIT, Ladder, naive_sweep, sweep

# A venue: (best price, price steps, level lots, fee in 1e-8, cap)
level_lists = st.lists(st.tuples(st.integers(1, 5), st.integers(1, 6)), min_size=0, max_size=4)
VenueSpec = tuple[int, list[tuple[int, int]], int, int]
venue_st = st.tuples(st.integers(90, 110), level_lists, st.integers(0, 200_000), st.integers(-1, 12))


def _levels(side: Side, best: int, steps: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, px = [], best
    for i, (gap, lots) in enumerate(steps):
        if i:
            px = px + gap if side is Side.BUY else px - gap
        out.append((px, lots))
    return out


def _ladders(side: Side, venues: list[tuple[int, list[tuple[int, int]], int, int]]) -> list[Ladder]:
    sgn = int(side)
    return [Ladder(iter(_levels(side, best, steps)), key_mult=FEE_SCALE + sgn * fee, cost_mult=FEE_SCALE + fee,
                   cap_lots=cap) for best, steps, fee, cap in venues]


def _brute(side: Side, venues: list[tuple[int, list[tuple[int, int]], int, int]], want: int,
           limit: int | None) -> tuple[int, int]:
    """Max fill, then min cost, over every per-venue lot count (any allocation, not only prefixes)."""
    sgn = int(side)
    per_venue: list[list[tuple[int, int]]] = []  # options (lots, cost) per venue
    for best, steps, fee, cap in venues:
        units: list[int] = []  # key of each single lot, best first
        for px, lots in _levels(side, best, steps):
            if limit is not None and (px > limit if side is Side.BUY else px < limit):
                break
            units += [sgn * px * (FEE_SCALE + sgn * fee)] * lots
        units.sort()  # any optimal allocation from one venue uses its cheapest lots
        maxn = len(units) if cap < 0 else min(cap, len(units))
        per_venue.append([(n, sum(units[:n])) for n in range(maxn + 1)])
    best_fill, best_cost = 0, 0
    for combo in itertools.product(*per_venue):
        n = sum(c[0] for c in combo)
        if n > want:
            continue
        cost = sum(c[1] for c in combo)
        if n > best_fill or (n == best_fill and cost < best_cost):
            best_fill, best_cost = n, cost
    return best_fill, best_cost


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([Side.BUY, Side.SELL]), st.lists(venue_st, min_size=1, max_size=3),
       st.integers(1, 30), st.one_of(st.none(), st.integers(85, 120)))
def test_sweep_equals_brute_force(side: Side, venues: list[VenueSpec], want: int, limit: int | None) -> None:
    res = sweep(side, _ladders(side, venues), want, limit)
    fill, cost = _brute(side, venues, want, limit)
    assert res.filled_common_lots == fill
    assert res.cost == cost
    assert res.filled_common_lots + res.remaining_common_lots == want


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([Side.BUY, Side.SELL]), st.lists(venue_st, min_size=1, max_size=5),
       st.integers(1, 60), st.one_of(st.none(), st.integers(85, 120)),
       st.lists(st.integers(1, 5), min_size=5, max_size=5), st.lists(st.integers(-1, 3000), min_size=5, max_size=5))
def test_sweep_invariants_and_naive_agreement(side: Side, venues: list[VenueSpec], want: int, limit: int | None,
                                               lot_factors: list[int], budgets: list[int]) -> None:
    """With mixed lot sizes and notional budgets: never past the limit, never above a cap or a
    budget, whole lots only, and the same fill and cost as the naive full sort."""
    def make() -> list[Ladder]:
        lads = _ladders(side, venues)
        for i, lad in enumerate(lads):
            lad.lot_factor = lot_factors[i]
            lad.budget = budgets[i] * FEE_SCALE if side is Side.BUY and budgets[i] >= 0 else NO_LIMIT
        return lads
    res = sweep(side, make(), want, limit)
    ref = naive_sweep(side, make(), want, limit)
    assert (res.filled_common_lots, res.cost) == (ref.filled_common_lots, ref.cost)
    assert [t.lots for t in res.takes] == [t.lots for t in ref.takes]
    total = 0
    for i, (t, v) in enumerate(zip(res.takes, venues, strict=True)):
        best, steps, fee, cap = v
        if t.lots:
            assert t.worst_ticks is not None
            if limit is not None:
                assert (t.worst_ticks <= limit) if side is Side.BUY else (t.worst_ticks >= limit)
            levels = dict(_levels(side, best, steps))
            assert t.worst_ticks in levels
        if cap >= 0:
            assert t.lots <= cap
        if side is Side.BUY and budgets[i] >= 0:
            assert t.notional * (FEE_SCALE + fee) <= budgets[i] * FEE_SCALE
        total += t.lots * lot_factors[i]
    assert total == res.filled_common_lots <= want


def test_fee_makes_worse_price_cheaper() -> None:
    # venue 0 shows 100 with a 50 bps fee (100.5 effective); venue 1 shows 100.3 with no fee
    def a() -> Ladder:
        return Ladder(iter([(1000, 5)]), key_mult=FEE_SCALE + 500_000)

    def b() -> Ladder:
        return Ladder(iter([(1003, 5)]), key_mult=FEE_SCALE)
    res = sweep(Side.BUY, [a(), b()], 3)
    assert [t.lots for t in res.takes] == [0, 3]
    raw = sweep(Side.BUY, [Ladder(iter([(1000, 5)])), b()], 3)
    assert [t.lots for t in raw.takes] == [3, 0]


def test_lazy_merge_pulls_only_needed_levels() -> None:
    pulled: list[int] = []

    def gen(prices: list[int]):  # type: ignore[no-untyped-def]
        for p in prices:
            pulled.append(p)
            yield (p, 1)
    res = sweep(Side.BUY, [Ladder(gen(list(range(100, 120)))), Ladder(gen(list(range(105, 125))))], 3)
    assert res.filled_common_lots == 3
    assert len(pulled) <= 5  # 3 taken + at most one look-ahead per venue, not 40


def test_stop_reasons() -> None:
    res = sweep(Side.BUY, [Ladder(iter([(100, 2), (101, 2)]), cap_lots=1), Ladder(iter([(100, 1), (200, 9)]))],
                10, 150)
    assert res.takes[0].stop == "venue cap/balance"
    assert res.takes[1].stop == "limit price"
    assert res.remaining_common_lots == 8
    lot = sweep(Side.SELL, [Ladder(iter([(100, 9)]), lot_factor=4)], 6)
    assert lot.takes[0].lots == 1 and lot.takes[0].stop == "lot size" and lot.remaining_common_lots == 2


def test_haircut_reduces_top_more_than_depth() -> None:
    res = sweep(Side.BUY, [Ladder(iter([(100, 100), (110, 100)]), p_gone_top=0.5, move_ticks=2.0)], 1000)
    # top keeps 50 %, a level 10 ticks behind keeps 1 - 0.5 * exp(-5) ~ 99.7 %
    assert res.takes[0].lots == 50 + 99


def test_budget_values_every_lot_at_the_limit_price() -> None:
    """A venue checks (and locks) quantity x limit price for a limit buy; the IOC limit is the worst
    level taken, so the budget must hold for all lots at that price, not at the walked average
    (found by the routing property test: 0.07694 BTC at limit 10000.30 with 7.5 bps fee against a
    770 USDT balance)."""
    from router.allocation import Ladder, sweep

    cm = 100_000_000 + 75_000          # 1e8 + 7.5 bps (in 1e-8)
    budget = 770 * 100 * 100_000 * 100_000_000  # 770 USDT in (0.01-tick x 0.00001-lot) x 1e8
    lad = Ladder(levels=iter([(1_000_015, 50), (1_000_030, 7644)]), price_factor=1, lot_factor=1,
                 key_mult=cm, cost_mult=cm, budget=budget)
    res = sweep(Side.BUY, [lad], 7694)
    lots, worst = res.lots[0], res.worst[0]
    assert worst == 1_000_030 and res.stops[0] == "balance"
    assert lots * worst * cm <= budget
    assert (lots + 1) * worst * cm > budget   # and no more than that could be afforded
