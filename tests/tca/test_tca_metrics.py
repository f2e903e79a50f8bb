"""TCA metrics on a synthetic journal + market whose answers are worked out by hand
(see tca_helpers for the scenario)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction as Fr
from pathlib import Path

import pytest
from tca_helpers import T0, synthetic_journal_records, synthetic_market, write_journal

from tca import analyze, analyze_all, load_journal

BP = 10_000


@pytest.fixture()
def analysis(tmp_path: Path):  # type: ignore[no-untyped-def]
    j = write_journal(tmp_path / "j.sqlite", synthetic_journal_records())
    [ex] = load_journal(j)
    return analyze(ex, synthetic_market())


def test_prices_and_implementation_shortfall(analysis) -> None:  # type: ignore[no-untyped-def]
    m = analysis.metrics
    assert m["decision_price"] == Decimal(99)   # mid at decision_ts (t0-20s)
    assert m["arrival_price"] == Decimal(100)   # mid at submission (t0)
    assert m["end_price"] == Decimal(104)       # mid at parent_finished (t0+50s)
    assert m["average_price"] == Fr("102.7")
    assert m["fees"] == Decimal("0.02029")      # 0.01 USDT + 0.0001 BTC * 102.9
    is_ = m["is"]
    assert is_["perold"] == {"execution": Decimal("2.96"), "opportunity": Decimal("1.0"),
                             "fees": Decimal("0.02029"), "total": Decimal("3.98029")}
    assert is_["wagner"] == {"delay": Decimal("0.8"), "trading": Decimal("2.16"), "opportunity": Decimal("1.0"),
                             "fees": Decimal("0.02029"), "total": Decimal("3.98029")}
    assert m["is_bps"] == Fr("3.98029") / 99 * BP
    assert is_["perold_bps"]["total"] == is_["wagner_bps"]["total"]
    assert m["arrival_slippage_bps"] == 270


def test_interval_benchmarks_exclude_own_fills(analysis) -> None:  # type: ignore[no-untyped-def]
    m = analysis.metrics
    # market trades in [t0, t0+50s]: 2@100, 1@102 and 1@103 which is our own fill (trade X1): excluded
    assert m["vwap"] == Fr(302, 3)
    assert m["market_volume"] == Decimal(3)
    assert m["vwap_slippage_bps"] == (Fr("102.7") - Fr(302, 3)) / Fr(302, 3) * BP
    # mid 100 for 10 s, 102 for 30 s, 104 for 10 s
    assert m["twap"] == 102
    assert m["twap_slippage_bps"] == Fr("0.7") / 102 * BP
    assert m["participation"] == Fr(4, 19)      # 0.8 / (3 + 0.8)
    assert m["fill_rate"] == Fr(4, 5)
    assert m["completion_time_s"] == 38
    assert m["duration_s"] == 50


def test_spreads_markouts_reversion(analysis) -> None:  # type: ignore[no-untyped-def]
    m = analysis.metrics
    # the full spreads (SEC Rule 605, Kissell): twice the signed distance to the mid
    assert m["effective_spread_bps"] == 2 * Fr("0.7") / 102 * BP
    assert m["realized_spread_bps"] == 2 * Fr("-0.3") / 102 * BP
    assert m["price_impact_bps"] == 2 * Fr(1) / 102 * BP
    assert m["effective_spread_bps"] == m["realized_spread_bps"] + m["price_impact_bps"]
    mk = m["markouts_bps"]
    assert mk["1s"] == Fr("0.7") / 102 * BP
    assert mk["5s"] == (Fr("0.5") / 102 + Fr("-1.1") / 104) / 2 * BP
    assert mk["30s"] == Fr("-1.3") / 104 * BP
    assert mk["60s"] == Fr("-0.8") / Fr("103.5") * BP
    assert m["reversion_bps"] == {"1s": 0, "5s": 0, "30s": Fr("0.5") / 104 * BP, "60s": Fr("0.5") / 104 * BP}


def test_venues_children_decisions(analysis) -> None:  # type: ignore[no-untyped-def]
    m = analysis.metrics
    a, b = m["venues"]
    assert (a["venue"], b["venue"]) == ("A", "B")
    assert a["filled_quantity"] == Decimal("0.4") and a["fill_share"] == Fr(1, 2)
    assert a["passive_share"] == 0 and b["passive_share"] == 1
    assert a["fees"] == Decimal("0.01029") and b["fees"] == Decimal("0.01")
    assert (a["orders"], a["sent_quantity"], a["fill_rate"]) == (2, Decimal("0.5"), Fr(4, 5))
    assert (a["ioc_orders"], a["ioc_hit_ratio"]) == (2, Fr(1, 2))
    assert (b["ioc_orders"], b["ioc_hit_ratio"]) == (0, None)
    assert a["price_improvement_bps"] == Fr("0.1") / 103 * BP   # bought at 102.9 with A's ask at 103
    assert b["price_improvement_bps"] is None                   # no quotes for B: missing, not zero
    assert a["markouts_bps"]["30s"] == Fr("-1.1") / 104 * BP
    ch = m["children"]
    assert ch["count"] == 3 and ch["size_total"] == Decimal("1.0")
    assert (ch["size_min"], ch["size_max"], ch["size_mean"]) == (Decimal("0.1"), Decimal("0.5"), Fr(1, 3))
    assert ch["filled_count"] == 1 and ch["time_to_fill_s_mean"] == 0
    assert (ch["cancel_requests"], ch["canceled"], ch["rejected"]) == (1, 2, 0)
    decs = m["routing_decisions"]
    assert [d["decision_id"] for d in decs] == ["P1-d1", "P1-d2"]
    assert decs[0]["excluded"] == [{"venue": "A", "reason": "stale book"}]
    assert decs[1]["residual"] == {"quantity": "0.1", "reason": "no liquidity"}


def test_no_market_data_means_missing_not_zero(tmp_path: Path) -> None:
    j = write_journal(tmp_path / "j.sqlite", synthetic_journal_records())
    [a] = analyze_all(load_journal(j))  # run_started names a path that does not exist
    m = a.metrics
    for key in ("arrival_price", "vwap", "twap", "vwap_slippage_bps", "twap_slippage_bps", "participation",
                "effective_spread_bps", "realized_spread_bps", "price_impact_bps", "arrival_slippage_bps",
                "is_bps", "market_volume"):
        assert m[key] is None, key
    assert set(m["markouts_bps"].values()) == {None}
    assert m["fill_rate"] == Fr(4, 5)           # needs no market data
    assert m["warnings"]


def test_sell_side_sign(tmp_path: Path) -> None:
    recs = synthetic_journal_records()
    for _, _, p in recs:
        if p.get("side") == "buy":
            p["side"] = "sell"
    [ex] = load_journal(write_journal(tmp_path / "s.sqlite", recs))
    m = analyze(ex, synthetic_market()).metrics
    # selling at 102.7 against an arrival mid of 100 is a gain: negative cost
    assert m["arrival_slippage_bps"] == -270
    assert m["is"]["perold"]["execution"] == Decimal("-2.96")
    assert m["is"]["perold"]["total"] == m["is"]["wagner"]["total"] == Decimal("-2.96") - 1 + Decimal("0.02029")


def test_journal_arrival_price_overrides_market(tmp_path: Path) -> None:
    recs = synthetic_journal_records()
    recs[1][2]["arrival_price"] = "101"
    [ex] = load_journal(write_journal(tmp_path / "j.sqlite", recs))
    m = analyze(ex, synthetic_market()).metrics
    assert m["arrival_price"] == Decimal(101)
    assert m["arrival_slippage_bps"] == Fr("1.7") / 101 * BP
    assert m["is"]["wagner"]["delay"] == Decimal("0.8") * 2


def test_markouts_missing_beyond_data(tmp_path: Path) -> None:
    market = synthetic_market()
    market.add_quote(T0 - 40 * 1_000_000_000, "A", Decimal(98), Decimal(100))
    recs = synthetic_journal_records(t0=T0 + 150 * 1_000_000_000 - 40 * 1_000_000_000)
    [ex] = load_journal(write_journal(tmp_path / "j.sqlite", recs))
    m = analyze(ex, market.build()).metrics
    # fills at t0'+20s and +38s = T0+130s/148s; data ends at T0+200s: the 60 s markout is missing
    assert m["markouts_bps"]["60s"] is None
    assert m["markouts_bps"]["1s"] is not None
