"""Volume profiles (build, JSON, U-shape) and the VWAP algo, including real Binance trades."""

from __future__ import annotations

import os
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from algos_fakes import FakeContext

from algos.base import AlgoStatus
from algos.params import CommonParams
from algos.profile import DAY_NS, VolumeProfile, build_profile, main
from algos.vwap import VwapAlgo
from marketdata.clock import SimClock
from marketdata.errors import ConfigError, DataError

S = 1_000_000_000
MIN = 60 * S
MIDNIGHT = 1_723_161_600_000_000_000  # 2024-08-09T00:00:00Z

SHARED = Path(os.environ.get("SOREX_SHARED", Path(__file__).resolve().parents[2] / ".." / "shared"))
SPOT = [SHARED / "data" / "binance-btc" / "spot_btcusdt_20240808.gz",
        SHARED / "data" / "binance-btc" / "spot_btcusdt_20240809.gz"]


def test_build_profile_bins_by_time_of_day_and_round_trips(tmp_path: Path) -> None:
    trades = [(MIDNIGHT - 30 * S, Decimal("1.5")), (MIDNIGHT - 10 * S, Decimal("0.5")),
              (MIDNIGHT + 5 * S, Decimal("3")), (MIDNIGHT + DAY_NS + 6 * S, Decimal("1"))]  # next day, same bin
    prof = build_profile(trades, bin_ns=MIN)
    assert prof.n_bins == 1440
    assert prof.volumes[-1] == Decimal("2.0") and prof.volumes[0] == Decimal("4")
    assert prof.total == Decimal("6.0")
    path = tmp_path / "p.json"
    prof.save(path)
    again = VolumeProfile.load(path)
    assert again == prof
    with pytest.raises(DataError, match=r"not a sorex\.volume_profile"):
        VolumeProfile.from_json('{"format": "x"}')
    with pytest.raises(ConfigError, match="bin"):
        build_profile(trades, bin_ns=7 * S)  # does not divide the day
    with pytest.raises(DataError, match="no trades"):
        build_profile([], bin_ns=MIN)


def test_segments_wrap_midnight_and_weight_partial_bins() -> None:
    prof = build_profile([(MIDNIGHT - 30 * S, Decimal(6)), (MIDNIGHT + 30 * S, Decimal(2))], bin_ns=MIN)
    segs = prof.segments(MIDNIGHT - 30 * S, MIDNIGHT + 30 * S)
    assert [(a - MIDNIGHT, b - MIDNIGHT) for a, b, _ in segs] == [(-30 * S, 0), (0, 30 * S)]
    assert [w for _, _, w in segs] == [Fraction(3), Fraction(1)]


def test_u_shape_is_high_at_the_edges() -> None:
    u = VolumeProfile.u_shape(30 * MIN, session_start_ns=9 * 60 * MIN, session_end_ns=17 * 60 * MIN,
                              edge_ratio=3)
    inside = [v for v in u.volumes if v]
    assert len(inside) == 16
    assert inside[0] == inside[-1] > inside[7] and inside[0] / inside[7] > Decimal("2.5")
    assert u.volumes[0] == 0  # outside the session


def _vwap(profile: VolumeProfile, lots: int, start: int, end: int, **kw: object) -> tuple[FakeContext, VwapAlgo]:
    ctx = FakeContext(SimClock(start), parent_lots=lots)
    algo = VwapAlgo(CommonParams(start, end, seed=1), profile=profile, **kw)  # type: ignore[arg-type]
    ctx.start(algo)
    return ctx, algo


def test_vwap_targets_follow_the_profile_exactly() -> None:
    vols = [Decimal(0)] * 1440
    vols[0], vols[1], vols[2] = Decimal(1), Decimal(3), Decimal(0)
    vols[3] = Decimal(4)
    prof = VolumeProfile(bin_ns=MIN, volumes=tuple(vols))
    _, algo = _vwap(prof, 800, MIDNIGHT, MIDNIGHT + 4 * MIN, max_participation=None, max_slice_ns=MIN,
                    final_sweep=False)
    assert algo.slice_ns == [MIDNIGHT + i * MIN for i in range(4)]
    assert algo.slice_lots() == [100, 300, 0, 400]


def test_vwap_participation_cap_excludes_own_fills() -> None:
    prof = VolumeProfile.u_shape(MIN)
    ctx, algo = _vwap(prof, 10_000, MIDNIGHT, MIDNIGHT + 10 * MIN, max_participation=0.1)
    t = MIDNIGHT
    for _ in range(120):  # 10 minutes, others trade 50 lots every 5 s at our bid
        t += 5 * S
        ctx.run_to(t)
        ctx.trade(ctx.bid, 50)  # type: ignore[arg-type]
    ctx.run_to(MIDNIGHT + 10 * MIN + S)
    others = 120 * 50
    assert algo.filled_lots <= int(0.1 * others)
    assert algo.filled_lots >= int(0.1 * others) - 100
    assert algo.status is AlgoStatus.FINISHED  # capped: cannot complete 10,000 lots
    # the reason names the cap and the volume it was applied to (the 119 prints before the end)
    want = "held back by max_participation 0.1 (market volume 5.950 since the start, of which 0.595"
    assert algo.finish_reason is not None and want in algo.finish_reason, algo.finish_reason
    assert not ctx.violations


def test_vwap_cap_binding_at_the_start_of_a_single_bin_still_trades() -> None:
    """A window inside one profile bin has one slice: its post at the start is cut to nothing by
    the participation cap (no market volume yet). The algo used to act again only at slice
    boundaries and child events, so it sent nothing at all until the end (held-out run: buy 0.5
    BTC over 2 min at 5 % sent no child). It now re-posts as the trade feed opens room."""
    prof = VolumeProfile.u_shape()          # 5-minute bins: 00:01-00:03 lies inside one
    start, end = MIDNIGHT + MIN, MIDNIGHT + 3 * MIN
    ctx, algo = _vwap(prof, 1_000, start, end, max_participation=0.1, max_slice_ns=3 * MIN)
    assert len(algo.slice_ns) == 1
    assert not ctx.children                  # no volume yet: the cap allows nothing
    t = start
    for _ in range(20):                      # others trade 200 lots every 5 s at our bid
        t += 5 * S
        ctx.run_to(t)
        ctx.trade(ctx.bid, 200)  # type: ignore[arg-type]
    others = 20 * 200
    assert ctx.children, "the cap opened room but nothing was posted"
    assert int(0.1 * others) - 100 <= algo.filled_lots <= int(0.1 * others)
    posts = len(ctx.children)
    assert posts <= 10 + 1_000 // (1_000 // 20), posts    # ten slices, re-posts in steps, not one per trade
    ctx.run_to(end + S)
    assert not ctx.violations


@pytest.mark.parametrize("final_sweep", ["capped", True, False])
def test_vwap_final_sweep_modes(final_sweep: bool | str) -> None:
    """Others trade 40 lots every 5 s at the ask, never through our bid posts, so only takes fill.
    ``"capped"`` (the default) sweeps at the end within the 10 % cap, ``True`` the whole remainder
    regardless of the cap, ``False`` not at all (catch-up takes only)."""
    prof = VolumeProfile.u_shape(MIN)
    start, end = MIDNIGHT, MIDNIGHT + 10 * MIN
    kw: dict[str, object] = {} if final_sweep == "capped" else {"final_sweep": final_sweep}
    ctx, algo = _vwap(prof, 1_000, start, end, max_participation=0.1, **kw)
    t = start
    while t < end:
        t += 5 * S
        ctx.run_to(t)
        ctx.trade(ctx.ask, 40)  # type: ignore[arg-type]
    ctx.run_to(end + S)
    others = (10 * MIN // (5 * S)) * 40
    sweeps = [c for c in ctx.children.values() if c.request.reason in ("sweep", "final")]
    assert not ctx.violations
    if final_sweep is True:
        assert algo.filled_lots == 1_000 and sweeps
    elif final_sweep == "capped":
        assert sweeps and all(c.request.reason == "final" for c in sweeps)
        assert algo.filled_lots <= others // 10, algo.filled_lots        # the sweep kept the cap
        assert algo.filled_lots >= others // 10 - 50, algo.filled_lots   # and used the room it had
    else:
        assert not sweeps and algo.filled_lots <= others // 10


def test_vwap_final_sweep_must_be_a_known_mode() -> None:
    with pytest.raises(ConfigError, match=r"final_sweep.*capped"):
        VwapAlgo(CommonParams(MIDNIGHT, MIDNIGHT + MIN, seed=1), final_sweep="maybe")  # type: ignore[arg-type]


@pytest.mark.skipif(not all(p.exists() for p in SPOT), reason=f"real data not found under {SHARED}/data")
def test_profile_from_real_binance_trades(tmp_path: Path) -> None:
    """Build a 1-minute profile from the recorded spot trades (23:54:15 - 00:05:04 UTC), then
    run VWAP across midnight on it: targets are proportional to the real per-minute volume."""
    out = tmp_path / "spot_profile.json"
    assert main([str(p) for p in SPOT] + ["--bin", "1m", "--out", str(out)]) == 0
    prof = VolumeProfile.load(out)
    nonzero = [i for i, v in enumerate(prof.volumes) if v]
    # 23:54..23:59 and 00:00..00:05: twelve non-empty minutes around midnight
    assert nonzero == [0, 1, 2, 3, 4, 5, 1434, 1435, 1436, 1437, 1438, 1439]
    assert Decimal(100) < prof.total < Decimal(10_000)  # BTC traded in those 11 minutes
    start, end = MIDNIGHT - 5 * MIN, MIDNIGHT + 5 * MIN
    _, algo = _vwap(prof, 100_000, start, end, max_participation=None, max_slice_ns=MIN, final_sweep=False)
    assert sum(algo.slice_lots()) == 100_000
    window = [prof.volumes[(1435 + i) % 1440] for i in range(10)]
    expect = [float(v / sum(window)) * 100_000 for v in window]
    assert algo.slice_lots() == pytest.approx(expect, abs=1)
