"""Review of urgency, slice_style and the POV catch-up: each test failed before its fix."""

from __future__ import annotations

from decimal import Decimal

import pytest
from algos_fakes import FakeChild, FakeContext

from algos.params import CommonParams
from algos.pov import PovAlgo
from algos.shortfall import ShortfallAlgo
from marketdata.clock import SimClock
from marketdata.errors import ConfigError
from marketdata.model import Liquidity, Side

S = 1_000_000_000
T0 = 1_723_161_255_000_000_000


def test_pov_catchup_below_the_minimum_child_keeps_the_post() -> None:
    """Behind (filled below the floor) by a shortfall smaller than min_child_size: the catch-up
    take cannot be sent (too small), so the post must stay in the book. It used to cancel the
    post and send nothing, leaving the order out of the market until the shortfall reached the
    minimum child."""
    ctx = FakeContext(SimClock(T0), parent_lots=100_000)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S, min_child_lots=100), target_rate=0.1, catchup_threshold=1.0)
    ctx.start(algo)
    ctx.run_to(T0 + S // 2)
    assert [(c.request.style, c.request.lots) for c in algo.open_children()] == [("post", 100)]
    ctx.trade(ctx.ask, 600, aggressor=Side.BUY)   # type: ignore[arg-type]  # V 600: target 60, floor 30
    for i in range(1, 4):
        ctx.run_to(T0 + i * S + 10_000_000)
        assert sum(c.open_lots for c in algo.open_children("post")) >= 100, (i, ctx.children)
    assert not [c for c in ctx.children.values() if c.request.style == "take"]
    ctx.trade(ctx.ask, 600, aggressor=Side.BUY)   # type: ignore[arg-type]  # V 1200: shortfall 120
    ctx.run_to(T0 + 5 * S + 10_000_000)
    takes = [c.request.lots for c in ctx.children.values() if c.request.reason == "catchup"]
    assert takes == [120] and not ctx.violations


def test_shortfall_urgency_share_of_the_replanned_slice_when_ahead() -> None:
    """IS ahead of its plan (a would-price take filled 300 lots in slice 0, due 100): slice 1 is
    re-planned from the 350 filled (72 lots). Urgency 0.5 must take floor(0.5 x 72) = 36 and post
    the rest; it took the whole 72 (the share of 322, the re-planned target minus the old target
    of slice 0, capped at the slice) and posted nothing."""
    ctx = FakeContext(SimClock(T0), parent_lots=1000)
    algo = ShortfallAlgo(CommonParams(T0, T0 + 1000 * S, urgency=0.5, would_ticks=10_000), risk_aversion=0,
                         periods=10, sigma=1.0, eta=1.0, gamma=0.0, epsilon=0.0, sweep_lead_ns=50 * S,
                         catchup_tolerance=1.0)
    ctx.start(algo)
    ctx.run_to(T0 + 10 * S)
    ctx.ask, ctx.depth = 10_000, 300   # the far touch reaches the would price for one take
    fill = ctx._fill

    def once(c: FakeChild, lots: int, price: int, liq: Liquidity) -> None:
        fill(c, lots, price, liq)
        if c.request.reason == "would":
            ctx.ask, ctx.depth = 10_001, 10**9

    ctx._fill = once  # type: ignore[method-assign]
    algo.on_book()
    ctx.run_to(T0 + 20 * S)
    assert algo.filled_lots == 350
    n = len(ctx.children)
    ctx.run_to(T0 + 96 * S)   # slice 1 starts at 95 s
    assert algo.cum_targets[1] - 350 == 72   # the re-planned slice 1
    new = [(c.request.reason, c.request.style, c.request.lots) for c in list(ctx.children.values())[n:]]
    assert new == [("urgency", "take", 36), ("slice", "post", 36)], new
    assert not ctx.violations


@pytest.mark.parametrize("value", [True, "abc", [0.5]])
def test_urgency_type_errors_name_the_range_that_is_allowed(value: object) -> None:
    """urgency is in [0, 1] (0 is the default); a value that is not a number said (0, 1]."""
    with pytest.raises(ConfigError, match=r"urgency.*allowed: \[0, 1\]"):
        CommonParams.from_mapping({"end": "+1m", "urgency": value}, now_ns=T0, side=Side.BUY,
                                  tick_size=Decimal("0.01"), lot_size=Decimal("0.001"))


def test_schedule_catchup_below_the_minimum_child_keeps_the_posts() -> None:
    """TWAP behind its schedule by more than the tolerance but by less than min_child_size: the
    catch-up take cannot be sent, so the resting post must stay. It used to be cancelled at the
    slice start (losing its queue place) and re-posted at once, nothing taken."""
    from algos.twap import TwapAlgo

    ctx = FakeContext(SimClock(T0), parent_lots=1000)
    cancels: list[int] = []
    cancel = ctx.cancel_child

    def record(child_id: str) -> None:
        cancels.append(ctx.clock.now_ns())
        cancel(child_id)

    ctx.cancel_child = record  # type: ignore[method-assign]
    algo = TwapAlgo(CommonParams(T0, T0 + 100 * S, min_child_lots=120, seed=1), slices=10, size_jitter=0.0,
                    time_jitter=0.0, catchup_tolerance=0.05, sweep_lead_ns=5 * S)
    ctx.start(algo)
    ctx.run_to(T0 + 12 * S)
    first = list(ctx.children.values())
    assert [(c.request.style, c.request.lots) for c in first] == [("post", 200)]
    ctx.trade(ctx.bid, 120, aggressor=Side.SELL)   # type: ignore[arg-type]  # fills 120 of the post
    ctx.run_to(T0 + 25 * S)   # slice 2 (19 s): due 300, filled 120, behind 80: above 50, below 120
    assert algo.filled_lots == 120 and not cancels, cancels
    assert [c.open_lots for c in algo.open_children("post")] == [80]
    ctx.run_to(T0 + 30 * S)   # slice 3 (28.5 s): behind 180, the catch-up goes
    assert [c.request.lots for c in ctx.children.values() if c.request.reason == "catchup"] == [180]
    assert not ctx.violations
