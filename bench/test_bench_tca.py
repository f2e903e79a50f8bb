"""TCA benchmarks: journal reading, analysis against real market data, HTML rendering.
Run: python -m pytest bench/test_bench_tca.py --benchmark-enable -q  (figures in bench/results/tca.md).
Reference in the same run: json.dumps of the finished report (pure serialisation)."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "tca"))
from tca_helpers import S, write_journal  # noqa: E402

from tca import analyze_all, load_journal  # noqa: E402
from tca.loaders import read_binance_capture  # noqa: E402
from tca.report import render_html, report_dict  # noqa: E402

SHARED = Path(os.environ.get("SOREX_SHARED", REPO / ".." / "shared")).resolve()
T0 = 1_723_161_300 * S
N_FILLS = 1000


@pytest.fixture(scope="module")
def setup(tmp_path_factory):  # type: ignore[no-untyped-def]
    f = SHARED / "data" / "binance-btc" / "spot_btcusdt_20240808.gz"
    if not f.is_file():
        pytest.skip(f"real data not found at {f}")
    market = read_binance_capture(f)
    ser = market["BTC-USDT"]
    recs = [(T0, "parent_submitted", {"parent_id": "B1", "symbol": "BTC-USDT", "side": "buy", "quantity": "20",
                                      "algo": "twap", "params": {}, "limit_price": None, "arrival_price": None,
                                      "decision_ts_ns": T0})]
    for i in range(N_FILLS):
        t = T0 + i * 200_000_000
        touch = ser.touch_at("binance-spot", t)
        assert touch is not None
        recs.append((t, "order_command", {"action": "submit", "client_order_id": f"c{i}", "venue": "binance-spot",
                                          "symbol": "BTC-USDT", "side": "buy", "order_type": "limit",
                                          "time_in_force": "IOC", "quantity": "0.01", "price": str(touch[1]),
                                          "parent_id": "B1", "decision_id": None}))
        recs.append((t, "fill", {"client_order_id": f"c{i}", "parent_id": "B1", "venue": "binance-spot",
                                 "symbol": "BTC-USDT", "side": "buy", "trade_id": f"x{i}", "price": str(touch[1]),
                                 "quantity": "0.01", "fee": str(touch[1] * Decimal("0.000001")),
                                 "fee_currency": "USDT", "liquidity": "taker", "ts_event": t}))
    recs.append((T0 + N_FILLS * 200_000_000, "parent_finished", {"parent_id": "B1", "status": "canceled",
                                                                 "filled": "10", "average_price": None,
                                                                 "reason": None}))
    j = write_journal(tmp_path_factory.mktemp("bench") / "j.sqlite", recs)
    return j, market


def test_bench_load_journal(benchmark, setup) -> None:  # type: ignore[no-untyped-def]
    j, _ = setup
    [ex] = benchmark(load_journal, j)
    assert len(ex.fills) == N_FILLS


def test_bench_analyze(benchmark, setup) -> None:  # type: ignore[no-untyped-def]
    j, market = setup
    execs = load_journal(j)
    [a] = benchmark(analyze_all, execs, market)
    assert a.metrics["vwap"] is not None


def test_bench_render_html(benchmark, setup) -> None:  # type: ignore[no-untyped-def]
    j, market = setup
    analyses = analyze_all(load_journal(j), market)
    html = benchmark(render_html, analyses)
    assert "<svg" in html


def test_bench_reference_json_dumps(benchmark, setup) -> None:  # type: ignore[no-untyped-def]
    j, market = setup
    analyses = analyze_all(load_journal(j), market)
    out = benchmark(lambda: json.dumps(report_dict(analyses)))
    assert out
