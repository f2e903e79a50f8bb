"""Scenario checks on the real bundled Binance data (spot + USD-M BTCUSDT) and the CLI."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from marketdata.model import Side
from marketdata.replay import Dataset
from router.cli import main
from router.commands.route import build_router_at, parse_at
from router.config import load_config_text
from router.routing import RouteRequest

REPO = Path(__file__).resolve().parents[2]
S = 1_000_000_000



def config(strategy: str, spot_fee: D, usdm_fee: D, extra: str = "") -> str:
    return f"""
[routing]
strategy = "{strategy}"
{extra}
[venues.binance-spot.fees]
taker_bps = "{spot_fee}"
[venues.binance-usdm.fees]
taker_bps = "{usdm_fee}"
"""


def test_fees_make_the_worse_displayed_price_cheaper(ds: Dataset) -> None:
    at = ds.start_ns + 120 * S
    probe = build_router_at(load_config_text(config("best_price", D(0), D(0))), ds, at)
    books = {v: probe._state(v).book for v in ("binance-spot", "binance-usdm")}
    inst = ds.instruments
    asks = {v: inst[v].ticks_to_price(b.best_ask_ticks) for v, b in books.items() if b and b.best_ask_ticks}
    better, worse = sorted(asks, key=lambda v: asks[v])
    assert asks[better] < asks[worse], asks
    gap_bps = (asks[worse] - asks[better]) / asks[better] * 10_000
    fee = (gap_bps + 2).quantize(D("0.0001"))  # the better-priced venue now costs more after fees
    fees = {better: fee, worse: D(0)}
    qty = D("0.01")
    for v, b in books.items():
        assert b is not None and b.best_ask() is not None
        assert inst[v].lots_to_qty(b.best_ask()[1]) >= qty  # type: ignore[index]
    dec = {}
    for strategy in ("lowest_cost", "best_price"):
        text = config(strategy, fees["binance-spot"], fees["binance-usdm"])
        r = build_router_at(load_config_text(text), ds, at)
        dec[strategy] = r.route(RouteRequest("BTC-USDT", Side.BUY, qty, None, "take"))
    assert [a.venue for a in dec["lowest_cost"].allocations] == [worse]
    assert [a.venue for a in dec["best_price"].allocations] == [better]
    lc = dec["lowest_cost"].score(worse).factors["price"]
    bp = dec["lowest_cost"].score(better).factors["price"]
    assert lc["fee_adjusted_best"] < bp["fee_adjusted_best"] and lc["best"] > bp["best"]


def test_venue_whose_book_stopped_updating_is_excluded(ds: Dataset) -> None:
    text = config("smart", D(1), D(5))
    at = ds.start_ns + 70 * S
    live = build_router_at(load_config_text(text), ds, at)
    req = RouteRequest("BTC-USDT", Side.SELL, D("2"), None, "take")
    d_live = live.route(req)
    assert all(v.excluded_reason is None for v in d_live.venues)
    frozen = build_router_at(load_config_text(text), ds, at, freeze_ns={"binance-usdm": ds.start_ns + 60 * S})
    d = frozen.route(req)
    reason = d.score("binance-usdm").excluded_reason
    assert reason is not None and reason.startswith("book stale") and "max_book_age_ms 2000" in reason
    assert d.score("binance-usdm").factors["health"]["book_age_ms"] >= 9_000
    assert {a.venue for a in d.allocations} == {"binance-spot"}
    assert d.allocated_quantity + d.residual_quantity == D(2)


def test_parse_at_forms() -> None:
    start = 1_723_161_255_342_000_000
    assert parse_at("+60s", start) == start + 60 * S
    assert parse_at("+1.5m", start) == start + 90 * S
    assert parse_at(str(start + 5), start) == start + 5
    assert parse_at("2024-08-08T23:55:00Z", start) == 1_723_161_300 * S
    assert parse_at("2024-08-08T23:55:00.250+00:00", start) == 1_723_161_300 * S + 250_000_000
    with pytest.raises(Exception, match="outside the data"):
        parse_at("+100s", start, start + 10 * S)
    with pytest.raises(Exception, match="cannot parse"):
        parse_at("yesterday", start)


def test_cli_route_json_has_one_entry_per_venue_with_factors(ds: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["route", str(REPO / "examples" / "routing_smart.toml"), "--side", "buy", "--qty", "5",
               "--at", "+90s", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    venues = out["venues"]
    assert sorted(v["venue"] for v in venues) == ["binance-spot", "binance-usdm"]
    for v in venues:
        assert {"price", "latency", "fill_probability", "health", "capacity", "score"} <= set(v["factors"])
        assert v["excluded_reason"] is None
    total = sum(D(a["quantity"]) for a in out["allocations"])
    residual = D(out["residual"]["quantity"]) if out["residual"] else D(0)
    assert total + residual == D(5)
    assert out["decision_id"] == "RD-000001" and out["request"]["side"] == "buy"


def test_cli_route_table_and_errors(ds: Dataset, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["route", str(REPO / "examples" / "routing_lowest_cost.toml"), "--side", "sell", "--qty", "1",
               "--limit", "61000", "--style", "mixed", "--urgency", "0.5"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "binance-spot" in text and "binance-usdm" in text and "allocations:" in text and "mixed" in text
    bad = tmp_path / "bad.toml"
    bad.write_text('[routing]\nstrategy = "cheap"\n[venues.binance-spot]\n')
    assert main(["route", str(bad), "--side", "buy", "--qty", "1"]) == 2
    assert "routing.strategy" in capsys.readouterr().err
