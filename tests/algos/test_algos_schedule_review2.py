"""Second review of the schedules (TWAP, VWAP, IS) and the volume profiles: each test failed before
its fix, and its docstring says what was wrong."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from algos_fakes import FakeContext

from algos.base import AlgoStatus
from algos.params import CommonParams
from algos.profile import VolumeProfile
from algos.specs import VWAP
from algos.twap import TwapAlgo
from algos.vwap import VwapAlgo
from marketdata.clock import SimClock
from marketdata.errors import ConfigError
from marketdata.model import Side

S = 1_000_000_000
MIN = 60 * S
T0 = 1_723_161_255_000_000_000
MIDNIGHT = 1_723_161_600_000_000_000
_TICK, _LOT = Decimal("0.01"), Decimal("0.001")


# ---------------------------------------------------------------------------- catch-up vs the limit
@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_catchup_keeps_the_posts_while_the_far_touch_is_beyond_the_limit(side: Side) -> None:
    """Failed before. A limited TWAP behind schedule while the far touch is beyond its limit: the
    catch-up take cannot fill, yet ``_catchup_can_go`` let it go, so every ``retry`` (1 s) the algo
    cancelled its posts at the touch (the only children that can fill at the limit), sent an IOC
    that came back empty and re-posted behind the queue (the 10-minute order of
    ``test_limit_is_never_crossed_and_remainder_reported`` sent 502 such takes and 1,013 posts).
    The posts now keep working, and the catch-up goes once the market is back within the limit."""
    ctx = FakeContext(SimClock(T0), side=side, parent_lots=1_000, parent_limit=10_000)   # bid 9_999, ask 10_001
    algo = TwapAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=10_000, seed=8), slices=10, size_jitter=0.0,
                    time_jitter=0.0)
    ctx.start(algo)
    ctx.run_to(algo.slice_ns[5] - S)   # five slices, behind by 40 % of the order, no take can fill
    reasons = [c.request.reason for c in ctx.children.values()]
    assert "catchup" not in reasons, reasons.count("catchup")
    assert len(ctx.children) == 5, len(ctx.children)      # one post per slice, none cancelled for a take
    assert sum(c.open for c in ctx.children.values()) == algo.cum_targets[4]
    if side is Side.BUY:                                  # the market comes back to the limit
        ctx.ask = 10_000
    else:
        ctx.bid = 10_000
    ctx.run_to(algo.slice_ns[5] + 50_000_000)
    takes = [c for c in ctx.children.values() if c.request.reason == "catchup"]
    assert takes and takes[0].filled == algo.cum_targets[4], [(c.request.lots, c.filled) for c in takes]
    assert not ctx.violations


# ---------------------------------------------------------------------------- short-window sweep
@pytest.mark.parametrize("window_s", [10, 20, 40])
def test_short_window_sweep_is_retried_before_the_end(window_s: int) -> None:
    """Failed before. A TWAP of under a minute has one slice, so the default ``retry`` (a tenth of
    the slice, at most 1 s) was as long as the sweep lead (5 % of the window) or longer: a sweep
    take cut short by the depth it met (300 of 1,000 lots) was never retried before the end, and
    the order finished with 700 lots unfilled although liquidity was there. The default retry is
    now also at most a fifth of the sweep lead."""
    ctx = FakeContext(SimClock(T0), parent_lots=1_000, depth=300)
    algo = TwapAlgo(CommonParams(T0, T0 + window_s * S, seed=8))
    ctx.start(algo)
    ctx.run_to(T0 + window_s * S + S)
    sweeps = [c for c in ctx.children.values() if c.request.reason == "sweep"]
    assert algo.status is AlgoStatus.COMPLETED, (algo.finish_reason, [(c.request.lots, c.filled) for c in sweeps])
    assert len(sweeps) >= 4 and not ctx.violations


def test_short_window_vwap_capped_sweep_is_retried() -> None:
    """Failed before. The same with VWAP's default capped sweep, a 10-second window in one slice
    (``max_slice`` 10 s): the sweep met 300 lots of depth and had no second attempt."""
    ctx = FakeContext(SimClock(MIDNIGHT), parent_lots=1_000, depth=300)
    algo = VwapAlgo(CommonParams(MIDNIGHT, MIDNIGHT + 10 * S), max_participation=None, max_slice_ns=10 * S)
    ctx.start(algo)
    assert len(algo.slice_ns) == 1
    ctx.run_to(MIDNIGHT + 11 * S)
    assert algo.status is AlgoStatus.COMPLETED, algo.finish_reason
    assert not ctx.violations


def test_passive_only_capped_sweep_keeps_its_posts_as_the_cap_opens() -> None:
    """Failed before. A passive-only VWAP in its capped sweep posts what the cap allows. Each time
    the trades opened 5 % more room the sweep cancelled its own resting "final" post and re-posted
    a larger one behind the queue (six times in this order). The posts it already has now stay,
    and the new room is posted beside them."""
    ctx = FakeContext(SimClock(MIDNIGHT), parent_lots=1_000)
    algo = VwapAlgo(CommonParams(MIDNIGHT, MIDNIGHT + 10 * MIN, passive_only=True),
                    profile=VolumeProfile.u_shape(MIN), max_participation=0.1, sweep_lead_ns=5 * MIN)
    ctx.start(algo)
    t = MIDNIGHT
    while t < MIDNIGHT + 10 * MIN:
        t += S
        ctx.run_to(t)
        ctx.trade(ctx.ask, 10)  # type: ignore[arg-type]  # others' volume, never through our bid
    final = [c for c in ctx.children.values() if c.request.reason == "final"]
    assert final and not [c for c in final if c.done], [(c.request.lots, c.status) for c in final]
    assert sum(c.request.lots for c in final) + sum(c.filled for c in ctx.children.values()) <= 600
    assert not ctx.violations


# ---------------------------------------------------------------------------- late timers
def test_a_late_timer_does_not_start_a_slice_twice() -> None:
    """Failed before. A live clock calls an alert back with the time it was set for, which is in
    the past when the alert fires late. ``_reconcile`` used that time: a retry alert due before
    slice 3 but delivered after it stepped the schedule back to slice 2, and the next event
    "started" slice 3 again: its urgency share was taken twice (100 of a 100-lot slice instead of
    50), and IS re-planned the slice again."""
    ctx = FakeContext(SimClock(T0), parent_lots=1_000)
    algo = TwapAlgo(CommonParams(T0, T0 + 600 * S, seed=8, urgency=0.5), slices=10, size_jitter=0.0,
                    time_jitter=0.0, catchup_tolerance=1.0)
    ctx.start(algo)
    ctx.run_to(algo.slice_ns[3] + 2 * S)
    ctx.bid = 9_998                                 # the book moved: the posts are re-priced
    algo.on_timer(algo.slice_ns[2] + 5 * S)         # an alert of slice 2 delivered late
    ctx.run_to(algo.slice_ns[3] + 3 * S)
    urgent = [c.request.lots for c in ctx.children.values()
              if c.request.reason == "urgency" and c.sent_ns >= algo.slice_ns[3]]
    assert urgent == [50], urgent
    assert algo.current_slice(ctx.clock.now_ns()) == 3 and not ctx.violations


# ---------------------------------------------------------------------------- profile files
_GOOD = json.loads(VolumeProfile.u_shape().to_json())


@pytest.mark.parametrize(("text", "key"), [
    ("{", "profile"),
    (json.dumps({"format": "x"}), "format"),
    (json.dumps({**_GOOD, "version": 2}), "version"),
    (json.dumps({k: v for k, v in _GOOD.items() if k != "bin_ns"}), "bin_ns"),
    (json.dumps({**_GOOD, "bin_ns": None}), "bin_ns"),
    (json.dumps({**_GOOD, "bin_ns": 300_000_000_000.5}), "bin_ns"),
    (json.dumps({**_GOOD, "bin_ns": 7_000_000_000}), "bin_ns"),
    (json.dumps({**_GOOD, "period_ns": 0}), "period_ns"),
    (json.dumps({**_GOOD, "volumes": 5}), "volumes"),
    (json.dumps({**_GOOD, "volumes": ["1"] * 3}), "volumes"),
    (json.dumps({**_GOOD, "volumes": ["x"] * 288}), "volumes"),
    (json.dumps({**_GOOD, "volumes": [None] * 288}), "volumes"),
    (json.dumps({**_GOOD, "volumes": ["-1"] * 288}), "volumes"),
    (json.dumps({**_GOOD, "volumes": ["Infinity"] * 288}), "volumes"),
    (json.dumps({**_GOOD, "volumes": ["NaN"] * 288}), "volumes"),
])
def test_bad_profile_file_is_a_config_error_naming_the_file_and_the_key(tmp_path: Path, text: str,
                                                                         key: str) -> None:
    """Failed before. A bad ``profile`` file raised, depending on the fault, a DataError (not
    JSON, wrong format, a missing field), a ConfigError that named neither the file nor the JSON
    field (three volumes for 288 bins: "key 'volumes'" only), a bare TypeError (``"bin_ns": null``,
    ``"volumes": 5``), or nothing at all: ``"bin_ns": 300000000000.5`` was truncated, and
    ``"Infinity"`` volumes loaded and crashed the VWAP at its start (OverflowError in
    ``segments``). Every fault is now a ConfigError with the file and the field."""
    path = tmp_path / "profile.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        VWAP(end="+10m", profile=str(path)).build(now_ns=MIDNIGHT, side=Side.BUY, tick_size=_TICK,
                                                  lot_size=_LOT, limit_price=None)
    assert info.value.file == str(path) and info.value.key == key, str(info.value)
    assert str(path) in str(info.value) and f"key '{key}'" in str(info.value)


def test_unreadable_profile_file_names_the_file(tmp_path: Path) -> None:
    """Failed before. A profile file that is not UTF-8 text raised a bare UnicodeDecodeError."""
    path = tmp_path / "profile.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as info:
        VolumeProfile.load(path)
    assert info.value.file == str(path) and info.value.key == "profile"



# ---------------------------------------------------------------------------- the limit at slice starts and the sweep
def test_urgency_take_waits_while_the_far_touch_is_beyond_the_limit() -> None:
    """Failed before (flagged by the second review). An urgent TWAP (urgency 0.5) limited at
    10,000 with the ask at 10,001: each slice start sent an IOC for half the slice that could not
    fill. Now the share is posted with the rest of the slice; once the ask is at the limit the
    next slice's urgency take goes."""
    ctx = FakeContext(SimClock(T0), parent_lots=1_000, parent_limit=10_000)
    algo = TwapAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=10_000, urgency=0.5, seed=8), slices=10,
                    size_jitter=0.0, time_jitter=0.0)
    ctx.start(algo)
    for k in range(3):
        ctx.run_to(algo.slice_ns[k] + S)
        ctx.trade(9_999, 1_000)   # sellers hit our bid: the slice's posts fill (on schedule, no catch-up)
    ctx.run_to(algo.slice_ns[3] - S)
    assert not [c for c in ctx.children.values() if c.request.style == "take"]
    assert algo.filled_lots == algo.cum_targets[2]
    ctx.ask = 10_000
    ctx.run_to(algo.slice_ns[3] + 5_000_000)
    assert [c.request.reason for c in ctx.children.values() if c.request.style == "take"] == ["urgency"]
    assert not ctx.violations


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_sweep_rests_at_the_limit_while_the_far_touch_is_beyond_it(side: Side) -> None:
    """Failed before. At the sweep, with the far touch beyond the limit, the plain sweep cancelled
    the posts (the only children that could fill at the limit) and sent an IOC every ``retry`` that
    came back empty: the order was out of the book for the last 5 % of its window. Now the
    remainder rests at the limit itself (inside the spread here), re-checked every ``retry``; once
    the market is within the limit the sweep takes it."""
    limit = 10_000
    ctx = FakeContext(SimClock(T0), side=side, parent_lots=1_000, parent_limit=limit, bid=9_990, ask=10_005)
    algo = TwapAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=limit, seed=8), slices=10, size_jitter=0.0,
                    time_jitter=0.0)
    ctx.start(algo)
    ctx.run_to(algo.sweep_ns + 10 * S)
    assert not [c for c in ctx.children.values() if c.request.style == "take"]
    posts = algo.open_children("post")
    assert [(c.request.limit_ticks, c.request.lots, c.request.reason) for c in posts] == [(limit, 1_000, "sweep")]
    if side is Side.BUY:
        ctx.ask = limit
    else:
        ctx.bid = limit
    ctx.run_to(algo.sweep_ns + 12 * S)
    assert algo.filled_lots == 1_000 and algo.status is AlgoStatus.COMPLETED, algo.finish_reason
    assert not ctx.violations


def test_vwap_refuses_a_max_slice_that_makes_millions_of_slices() -> None:
    """Failed before (flagged by the second review): ``max_slice = "1ms"`` on an hour planned 3.6
    million slices, one clock alert each, with no bound (TWAP caps its slices at 500). Refused now,
    naming the key and the smallest value allowed; at the bound it is accepted."""
    params = CommonParams(MIDNIGHT, MIDNIGHT + 3_600 * S)
    with pytest.raises(ConfigError, match=r"key 'max_slice'.*more than 10000 slices.*allowed: >= window / 10000"):
        VwapAlgo(params, max_slice_ns=1_000_000)
    VwapAlgo(params, max_slice_ns=3_600 * S // 10_000)


def test_a_finished_algo_cannot_be_amended() -> None:
    """Failed before (flagged by the second review): the engine lets a parent be amended while its
    children are still open, after its algo has finished; an amend of a FINISHED (or CANCELLED) algo
    to the quantity filled turned it into COMPLETED "filled". Refused now, the status kept."""
    ctx = FakeContext(SimClock(T0), parent_lots=1_000, parent_limit=10_000, ask=10_005)
    algo = TwapAlgo(CommonParams(T0, T0 + 60 * S, limit_ticks=10_000, seed=8), slices=2)
    ctx.start(algo)
    ctx.run_to(T0 + S)
    ctx.trade(9_999, 300)    # sellers fill 300 lots of the first post; the ask stays beyond the limit
    ctx.run_to(T0 + 61 * S)
    assert algo.status is AlgoStatus.FINISHED and algo.filled_lots == 300
    with pytest.raises(ConfigError, match=r"key 'amend'.*twap algo is finished"):
        algo.amend(quantity="0.3")
    assert algo.status is AlgoStatus.FINISHED
