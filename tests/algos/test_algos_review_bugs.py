"""Regression tests from the correctness review of ``algos/``: each one reproduces a scenario that
went wrong (the docstring says what happened before the fix)."""

from __future__ import annotations

import pytest
from algos_fakes import FakeContext

from algos.base import AlgoStatus
from algos.iceberg import IcebergAlgo
from algos.params import CommonParams
from algos.pov import PovAlgo
from algos.profile import VolumeProfile
from algos.twap import TwapAlgo
from algos.vwap import VwapAlgo
from marketdata.clock import SimClock
from marketdata.errors import ConfigError
from marketdata.model import Side

S = 1_000_000_000
MIN = 60 * S
T0 = 1_723_161_255_000_000_000
MIDNIGHT = 1_723_161_600_000_000_000


# ---------------------------------------------------------------------------- VWAP sweep and cap
@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_vwap_final_sweep_completes_regardless_of_the_participation_cap(side: Side) -> None:
    """docs/algos.md: VWAP ``final_sweep`` = "set true to complete regardless of the cap". With no
    public volume the cap is 0 lots; the sweep take was still capped by ``participation_room`` and
    sent nothing, so the order ended FINISHED with the whole parent unfilled."""
    ctx = FakeContext(SimClock(MIDNIGHT), side=side, parent_lots=1_000)
    algo = VwapAlgo(CommonParams(MIDNIGHT, MIDNIGHT + 10 * MIN, seed=1), profile=VolumeProfile.u_shape(MIN),
                    max_participation=0.1, final_sweep=True)
    ctx.start(algo)
    ctx.run_to(MIDNIGHT + 9 * MIN)
    assert algo.filled_lots == 0   # before the sweep the cap binds: nothing traded, nothing sent
    ctx.run_to(MIDNIGHT + 10 * MIN + S)
    assert algo.status is AlgoStatus.COMPLETED and algo.filled_lots == 1_000
    assert any(c.request.reason == "sweep" for c in ctx.children.values())
    assert not ctx.violations


def test_vwap_passive_only_sweep_posts_regardless_of_the_cap() -> None:
    """The passive-only form of the same sweep (the remainder is posted instead of taken) was
    capped the same way and posted nothing."""
    ctx = FakeContext(SimClock(MIDNIGHT), parent_lots=1_000)
    algo = VwapAlgo(CommonParams(MIDNIGHT, MIDNIGHT + 10 * MIN, passive_only=True),
                    profile=VolumeProfile.u_shape(MIN), max_participation=0.1, final_sweep=True)
    ctx.start(algo)
    ctx.run_to(MIDNIGHT + 9 * MIN + 45 * S)   # the sweep started at 9:30
    posts = [c for c in ctx.children.values() if c.request.reason == "sweep" and not c.done]
    assert sum(c.request.lots for c in posts) == 1_000
    assert all(c.request.style == "post" for c in ctx.children.values())


# ---------------------------------------------------------------------------- exact rate floors
def test_vwap_participation_cap_is_exact_not_float_rounded() -> None:
    """``int(0.29 * 100)`` is 28 in binary floating point: with 100 lots of others' volume a 29%
    cap allowed only 28 lots, one lot lost to rounding."""
    ctx = FakeContext(SimClock(MIDNIGHT), parent_lots=10_000)
    algo = VwapAlgo(CommonParams(MIDNIGHT, MIDNIGHT + 10 * MIN), profile=VolumeProfile.u_shape(MIN),
                    max_participation=0.29)
    ctx.start(algo)
    ctx.run_to(MIDNIGHT + S)
    assert ctx.ask is not None
    ctx.trade(ctx.ask, 100, aggressor=Side.BUY)   # others' volume that does not touch our bid
    assert algo.market_volume_ex_own() == 100
    assert algo.participation_room() == 29


def test_pov_at_exactly_max_rate_is_not_ahead() -> None:
    """POV is ahead only when F > max_rate * V. With F = 29 and V = 100 at max_rate 0.29 it is
    exactly at its ceiling, but the float floor ``int(0.29 * 100) = 28`` made it "ahead": it
    cancelled its posts and stopped participating."""
    ctx = FakeContext(SimClock(T0), parent_lots=100_000)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S, min_child_lots=29), target_rate=0.2, max_rate=0.29)
    ctx.start(algo)
    ctx.run_to(T0 + S)   # rests one minimum child of 29 lots
    (post,) = ctx.children.values()
    assert post.request.lots == 29
    assert ctx.bid is not None
    ctx.trade(ctx.bid, 100)   # others trade 100 through our bid and fill our 29
    assert algo.filled_lots == 29 and algo.market_volume_ex_own() == 100
    assert not algo.paused_ahead


def test_pov_default_max_rate_ceiling_is_exact() -> None:
    """The default ceiling 1.5 x target is 0.44999999999999996 for target 0.3, so at V = 100 the
    ceiling was 44 lots, not 45."""
    ctx = FakeContext(SimClock(T0), parent_lots=100_000)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S, min_child_lots=45), target_rate=0.3)
    ctx.start(algo)
    ctx.run_to(T0 + S)
    assert ctx.bid is not None
    ctx.trade(ctx.bid, 100)
    assert algo.filled_lots == 45 and algo.market_volume_ex_own() == 100
    assert not algo.paused_ahead


# ---------------------------------------------------------------------------- pause across the end
@pytest.mark.parametrize("kind", ["twap", "pov", "iceberg"])
def test_paused_algo_finishes_at_its_end_time(kind: str) -> None:
    """A paused algo dropped every timer, the end-time alert included: paused past ``end`` it
    stayed PAUSED for ever (the engine waits for the algo to be terminal), instead of finishing
    with its remainder at the end time."""
    ctx = FakeContext(SimClock(T0), parent_lots=1_000, parent_limit=10_000 if kind == "iceberg" else None)
    p = CommonParams(T0, T0 + 600 * S, limit_ticks=10_000 if kind == "iceberg" else None)
    algo = (TwapAlgo(p, slices=10) if kind == "twap" else PovAlgo(p, target_rate=0.1) if kind == "pov"
            else IcebergAlgo(p, display_min_lots=10))
    ctx.start(algo)
    ctx.run_to(T0 + 10 * S)
    algo.pause()
    ctx.run_to(T0 + 700 * S)
    assert algo.status is AlgoStatus.FINISHED and "unfilled" in (algo.finish_reason or "")
    assert not any(c.open for c in ctx.children.values())


# ---------------------------------------------------------------------------- iceberg
def test_iceberg_own_cancels_are_not_failures() -> None:
    """The iceberg counted a child it cancelled itself (pause, amend) as a venue failure: five
    pause/resume cycles, each resumed before the cancel was confirmed, finished the order with
    "5 consecutive children ended unfilled" although the venue never failed anything."""
    ctx = FakeContext(SimClock(T0), parent_lots=100, parent_limit=10_000)
    algo = IcebergAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=10_000), display_min_lots=10)
    ctx.start(algo)
    t = T0
    for _ in range(6):
        t += 3 * S
        ctx.run_to(t)
        assert any(not c.done for c in ctx.children.values()), "the iceberg shows nothing"
        algo.pause()
        algo.resume()   # before the venue confirmed the cancel
    ctx.run_to(t + 3 * S)
    assert algo.status is AlgoStatus.RUNNING
    assert any(not c.done for c in ctx.children.values())


def test_iceberg_display_below_min_child_size_is_refused() -> None:
    """A display drawn below ``min_child_size`` is refused by ``_send`` and nothing re-triggers the
    iceberg (no child, no timer): it silently showed nothing until the end. The combination is now
    a ConfigError naming ``display_min``."""
    with pytest.raises(ConfigError, match="display_min"):
        IcebergAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=10_000, min_child_lots=20),
                    display_min_lots=10, display_max_lots=30)


# ---------------------------------------------------------------------------- would price vs limit
@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_would_price_beyond_an_amended_limit_does_not_stop_the_schedule(side: Side) -> None:
    """Buy: would 10_010 with no limit, then the limit is amended to 10_000 and the ask is 10_005.
    The would check compared the ask with the would price only, so it held "active": it cancelled
    every post and sent takes clamped to 10_000 that cannot fill, and the schedule posted nothing.
    Mirrored for a sell."""
    sgn = int(side)
    # buy: bid 9_999, ask 10_050; sell: bid 9_950, ask 10_001 (the far touch beyond the would price)
    bid, ask = (9_999, 10_050) if side is Side.BUY else (9_950, 10_001)
    ctx = FakeContext(SimClock(T0), side=side, parent_lots=500, bid=bid, ask=ask)
    algo = TwapAlgo(CommonParams(T0, T0 + 600 * S, would_ticks=10_000 + sgn * 10), slices=10)
    ctx.start(algo)
    ctx.run_to(T0 + 30 * S)
    algo.amend(limit_price="100.00")   # 10_000 ticks: now tighter than the would price
    ctx.parent_limit = 10_000
    if side is Side.BUY:
        ctx.ask = 10_005    # at or better than the would price, beyond the limit
    else:
        ctx.bid = 9_995
    algo.on_book()
    ctx.run_to(T0 + 30 * S + 50_000_000)
    assert not any(c.request.reason == "would" for c in ctx.children.values())
    ctx.run_to(T0 + 130 * S)
    assert not any(c.request.reason == "would" for c in ctx.children.values())
    assert any(c.request.style == "post" and not c.done for c in ctx.children.values())
    assert not ctx.violations


# ---------------------------------------------------------------------------- volume while paused
def test_pov_own_fill_while_paused_does_not_reduce_others_volume() -> None:
    """A post filled while the algo is paused (before its cancel lands): the own fill was
    subtracted from the market volume, but its print (and the public trade) arrived while paused
    and was dropped, so V fell below the others' volume. V is the public volume since ``start``
    minus our own fills, so it must equal the others' volume."""
    ctx = FakeContext(SimClock(T0), parent_lots=100_000)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S, min_child_lots=10), target_rate=0.2)
    ctx.start(algo)
    others = 0
    ctx.run_to(T0 + S)
    assert ctx.bid is not None
    ctx.trade(ctx.bid, 100)
    others += 100
    ctx.run_to(T0 + 2 * S + 10_000_000)   # the check re-posts; the post is acknowledged
    assert any(c.acked and not c.done and c.request.style == "post" for c in ctx.children.values())
    filled = algo.filled_lots
    algo.pause()
    ctx.trade(ctx.bid, 100)   # fills the post before the venue confirms its cancel
    others += 100
    assert algo.filled_lots > filled
    assert algo.market_volume_ex_own() == others
    ctx.run_to(T0 + 3 * S)
    algo.resume()
    assert algo.market_volume_ex_own() == others
