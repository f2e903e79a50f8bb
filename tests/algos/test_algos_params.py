"""Parameter parsing and validation: every bad input is a ConfigError naming the key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from algos.iceberg import IcebergAlgo
from algos.params import CommonParams, parse_duration_ns, parse_time
from algos.pov import PovAlgo
from algos.schedule import ScheduleAlgo
from algos.twap import TwapAlgo
from marketdata.clock import SimClock
from marketdata.errors import ConfigError
from marketdata.model import Side

S = 1_000_000_000
NOW = 1_723_161_255_342_000_000
TICK, LOT = Decimal("0.01"), Decimal("0.00001")


def test_time_forms() -> None:
    assert parse_time("+20m", now_ns=NOW, key="end") == NOW + 1200 * S
    assert parse_time("+1h30m", now_ns=NOW, key="end") == NOW + 5400 * S
    assert parse_time("+250ms", now_ns=NOW, key="end") == NOW + 250_000_000
    assert parse_time("now", now_ns=NOW, key="start") == NOW
    assert parse_time(NOW + 5, now_ns=0, key="start") == NOW + 5
    assert parse_time(str(NOW), now_ns=0, key="start") == NOW
    # 2024-08-08T23:54:15.342Z == 1723161255.342 s
    assert parse_time("2024-08-08T23:54:15.342Z", now_ns=0, key="start") == NOW
    assert parse_time("2024-08-09T01:54:15.342+02:00", now_ns=0, key="start") == NOW
    assert parse_duration_ns("1.5s", key="x") == 1_500_000_000


@pytest.mark.parametrize("bad", ["+20x", "tomorrow", "+", "2024-08-08T23:54:15", "+-5m", "+0s"])
def test_bad_times_name_the_key(bad: str) -> None:
    with pytest.raises(ConfigError, match="key 'end'"):
        parse_time(bad, now_ns=NOW, key="end")


def _mk(raw: dict[str, object]) -> CommonParams:
    return CommonParams.from_mapping(raw, now_ns=NOW, side=Side.BUY, tick_size=TICK, lot_size=LOT,
                                     known=frozenset({"slices"}))


def test_from_mapping_converts_to_integers() -> None:
    p = _mk({"end": "+10m", "limit_price": "61800.257", "would_price": "61700", "min_child_size": "0.001",
             "urgency": "0.8", "seed": 7, "slices": 4})
    assert p.start_ns == NOW and p.end_ns == NOW + 600 * S
    assert p.limit_ticks == 6_180_025  # buy limit rounds down
    assert p.would_ticks == 6_170_000
    assert p.min_child_lots == 100 and p.urgency == 0.8 and p.seed == 7
    assert p.extra == {"slices": 4}
    sell = CommonParams.from_mapping({"end": "+1m", "limit_price": "61800.251"}, now_ns=NOW, side=Side.SELL,
                                     tick_size=TICK, lot_size=LOT)
    assert sell.limit_ticks == 6_180_026  # sell limit rounds up


@pytest.mark.parametrize(("raw", "key"), [
    ({"end": "+10m", "start": "+20m"}, "end"),            # end before start
    ({}, "end"),                                          # missing end
    ({"end": "+1m", "limit_price": "-5"}, "limit_price"),
    ({"end": "+1m", "limit_price": "abc"}, "limit_price"),
    ({"end": "+1m", "min_child_size": "0"}, "min_child_size"),
    ({"end": "+1m", "urgency": "1.5"}, "urgency"),
    ({"end": "+1m", "passive_only": "yes"}, "passive_only"),
    ({"end": "+1m", "limit_price": "100", "would_price": "101"}, "would_price"),
    ({"end": "+1m", "bogus": 1}, "bogus"),
    ({"end": "+1m", "limit_price": 61800.5}, "limit_price"),  # floats refused
])
def test_config_errors_name_the_parameter(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as ei:
        _mk(raw)
    assert ei.value.key == key
    assert f"key '{key}'" in str(ei.value)


def test_algo_specific_validation() -> None:
    p = CommonParams(start_ns=0, end_ns=60 * S)
    with pytest.raises(ConfigError, match="target_rate"):
        PovAlgo(p, target_rate=0.0)
    with pytest.raises(ConfigError, match="target_rate"):
        PovAlgo(p, target_rate=1.5)
    with pytest.raises(ConfigError, match=r"allowed: \(0, 1\]"):
        ScheduleAlgo(p, max_participation=0.0)
    with pytest.raises(ConfigError, match="limit_price"):
        IcebergAlgo(p, display_min_lots=5)
    with pytest.raises(ConfigError, match="display_max"):
        IcebergAlgo(CommonParams(0, 60 * S, limit_ticks=100), display_min_lots=5, display_max_lots=3)
    with pytest.raises(ConfigError, match="slices"):
        TwapAlgo(p, slices=0)
    with pytest.raises(ConfigError, match="end"):
        CommonParams(start_ns=10, end_ns=10)


def test_zero_parent_quantity_is_refused() -> None:
    from algos_fakes import FakeContext
    ctx = FakeContext(SimClock(0), parent_lots=0)
    with pytest.raises(ConfigError, match="quantity"):
        ctx.start(TwapAlgo(CommonParams(0, 60 * S)))


def test_build_algo_from_toml_like_tables() -> None:
    from algos.factory import build_algo
    from algos.pov import PovAlgo as Pov
    from algos.shortfall import ShortfallAlgo
    kw = {"now_ns": NOW, "side": Side.SELL, "tick_size": TICK, "lot_size": LOT}
    twap = build_algo("TWAP", {"end": "+20m", "slices": 8, "size_jitter": 0.1, "limit_price": "61000"}, **kw)
    assert isinstance(twap, TwapAlgo) and twap.slices == 8 and twap.limit_ticks == 6_100_000
    pov = build_algo("pov", {"end": "+1h", "target_rate": 0.1, "max_rate": "0.2"}, **kw)
    assert isinstance(pov, Pov) and pov.max_rate == 0.2 and pov.min_rate == 0.05
    ice = build_algo("iceberg", {"end": "+1h", "limit_price": "61000", "display_min": "0.01",
                                 "display_max": "0.02"}, **kw)
    assert isinstance(ice, IcebergAlgo) and (ice.display_min_lots, ice.display_max_lots) == (1000, 2000)
    ist = build_algo("shortfall", {"end": "+1h", "risk_aversion": 1e-6, "sigma": 0.95, "periods": 5}, **kw)
    assert isinstance(ist, ShortfallAlgo) and ist.periods == 5
    with pytest.raises(ConfigError, match=r"key 'algo'.*allowed: iceberg, is, pov, shortfall, twap, vwap"):
        build_algo("vwapp", {"end": "+1h"}, **kw)
    with pytest.raises(ConfigError, match="key 'target_rate'"):
        build_algo("pov", {"end": "+1h", "target_rate": 1.2}, **kw)
    with pytest.raises(ConfigError, match="key 'max_participation'"):
        build_algo("vwap", {"end": "+1h", "max_participation": 0}, **kw)
    with pytest.raises(ConfigError, match=r"run\.toml.*key 'slices'"):
        build_algo("twap", {"end": "+1h", "slices": 0}, file="run.toml", **kw)
    with pytest.raises(ConfigError, match="key 'target_rate'"):
        build_algo("twap", {"end": "+1h", "target_rate": 0.1}, **kw)  # a POV key on TWAP


def test_build_algo_retry_and_intervals_from_toml() -> None:
    """``retry`` reaches every algo; a zero interval is refused naming its key, never defaulted."""
    from algos.factory import build_algo
    from algos.pov import PovAlgo as Pov
    from algos.schedule import ScheduleAlgo
    kw = {"now_ns": NOW, "side": Side.SELL, "tick_size": TICK, "lot_size": LOT}
    pov = build_algo("pov", {"end": "+1h", "target_rate": 0.1, "retry": "250ms", "check_interval": "2s"}, **kw)
    assert isinstance(pov, Pov) and (pov.retry_ns, pov.check_ns) == (250_000_000, 2 * S)
    default = build_algo("pov", {"end": "+1h", "target_rate": 0.1}, **kw)
    assert isinstance(default, Pov) and (default.retry_ns, default.check_ns) == (S, S)
    for name, extra in (("twap", {}), ("vwap", {}), ("shortfall", {"risk_aversion": 1e-6})):
        algo = build_algo(name, {"end": "+1h", "retry": "3s", **extra}, **kw)
        assert isinstance(algo, ScheduleAlgo) and algo._retry_ns == 3 * S
    ice = build_algo("iceberg", {"end": "+1h", "limit_price": "61000", "display_min": "0.01", "retry": "5s",
                                 "max_failures": 2}, **kw)
    assert isinstance(ice, IcebergAlgo) and (ice.retry_ns, ice.max_failures) == (5 * S, 2)
    for name, extra in (("pov", {"target_rate": 0.1}), ("twap", {}), ("iceberg", {"limit_price": "61000",
                                                                                 "display_min": "0.01"})):
        for key in ("retry", "check_interval") if name == "pov" else ("retry",):
            with pytest.raises(ConfigError, match=f"key '{key}'"):
                build_algo(name, {"end": "+1h", key: "0s", **extra}, **kw)
    with pytest.raises(ConfigError, match="key 'max_failures'"):
        build_algo("iceberg", {"end": "+1h", "limit_price": "61000", "display_min": "0.01", "max_failures": 0},
                   **kw)
