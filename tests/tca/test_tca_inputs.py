"""Inputs and the CLI: journal reading, fills CSV errors (file and line), `sorex tca` options,
run_report, and real Binance trades as market data."""

from __future__ import annotations

import gzip
import json
import os
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from tca_helpers import T0, synthetic_journal_records, write_journal

from marketdata.errors import DataError
from router.cli import main
from tca import analyze_all, load_fills_csv, load_journal, run_report
from tca.loaders import load_market, read_binance_capture

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SOREX_SHARED", REPO / ".." / "shared")).resolve()
HEADER = "record,parent_id,symbol,side,quantity,time,venue,price,fee,liquidity,decision_price,arrival_price,end_price\n"


def _csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    p = tmp_path / "fills.csv"
    p.write_text(header + body)
    return p


@pytest.mark.parametrize(("body", "header", "message"), [
    ("parent,P,X-USD,buy,10,1000,,,,,,,\nfill,Q,,,1,1001,V,1.0,0,,,,\n", HEADER,
     "fills.csv:3: fill of unknown parent id 'Q'"),
    ("parent,P,X-USD,buy,ten,1000,,,,,,,\n", HEADER, "fills.csv:2: quantity 'ten' is not a decimal number"),
    ("parent,P,X-USD,buy,10,1000,,,,,,,\nfill,P,,,1,1001,V,abc,0,,,,\n", HEADER, "fills.csv:3: price 'abc'"),
    ("parent,P,X-USD,hold,10,1000,,,,,,,\n", HEADER, "fills.csv:2: side 'hold'"),
    ("parent,P,X-USD,buy,10,yesterday,,,,,,,\n", HEADER, "fills.csv:2: time 'yesterday'"),
    ("parent,P,X-USD,buy,10,2024-01-01T00:00:00,,,,,,,\n", HEADER, "has no UTC offset"),
    ("trade,P,X-USD,buy,10,1000,,,,,,,\n", HEADER, "fills.csv:2: record 'trade'"),
    ("parent,P,X-USD,buy,10,1000\n", "record,parent_id,symbol,side,quantity,time\nfill,P,1,1001\n",
     "missing column 'venue'"),
    ("P,X-USD\n", "parent_id,symbol\n", "fills.csv:1: missing column 'record'"),
    ("parent,P,X-USD,buy,10,1000,,,,,,,\nparent,P,X-USD,buy,10,1000,,,,,,,\n", HEADER, "fills.csv:3: duplicate parent"),
])
def test_fills_csv_errors_name_file_and_line(tmp_path: Path, body: str, header: str, message: str) -> None:
    p = _csv(tmp_path, body, header)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_fills_csv(p)


def test_cli_reports_bad_csv_cleanly(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    p = _csv(tmp_path, "parent,P,X-USD,buy,10,1000,,,,,,,\nfill,Q,,,1,1001,V,1.0,0,,,,\n")
    assert main(["tca", "--fills", str(p)]) == 2
    assert f"{p}:3: fill of unknown parent id 'Q'" in capsys.readouterr().err


def test_csv_prices_override_market(tmp_path: Path) -> None:
    p = _csv(tmp_path, f"parent,P,BTC-USDT,buy,1,{T0},,,,,100,100.5,\n"
             f"fill,P,,,1,{T0 + 20 * 10**9},A,101,0.1,maker,,,\n")
    from tca_helpers import synthetic_market
    [a] = analyze_all(load_fills_csv(p), {"BTC-USDT": synthetic_market()})
    m = a.metrics
    assert m["decision_price"] == Decimal(100) and m["arrival_price"] == Decimal("100.5")
    assert m["end_price"] == Decimal(102)     # not given: mid at the last fill (t0+20s)
    assert m["is"]["wagner"]["delay"] == Decimal("0.5")
    assert m["effective_spread_bps"] == 2 * Fraction(-1, 102) * 10_000   # full spread: 2 x (p - m0)/m0


def test_journal_and_cli_json(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    j1 = write_journal(tmp_path / "twap.sqlite", synthetic_journal_records(algo="twap"))
    j2 = write_journal(tmp_path / "vwap.sqlite", synthetic_journal_records(parent_id="P2", algo="vwap"))
    assert main(["tca", str(j1), str(j2), "--json", "--csv", str(tmp_path / "csv"),
                 "--html", str(tmp_path / "r.html")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["parent_id"] for p in doc["parents"]] == ["P1", "P2"]
    p = doc["parents"][0]
    for key in ("arrival_slippage_bps", "is_bps", "vwap_slippage_bps", "twap_slippage_bps", "participation",
                "fill_rate", "markouts_bps", "venues"):
        assert key in p
    assert set(p["is"]) >= {"perold", "wagner", "perold_bps", "wagner_bps"}
    assert p["fill_rate"] == 0.8 and p["vwap_slippage_bps"] is None   # no market data: missing
    assert sorted(x.name for x in (tmp_path / "csv").iterdir()) == [
        "children.csv", "decisions.csv", "fills.csv", "parents.csv", "venues.csv"]
    rows = (tmp_path / "csv" / "parents.csv").read_text().splitlines()
    assert len(rows) == 3 and "is_wagner_delay" in rows[0]
    html = (tmp_path / "r.html").read_text()
    assert html.count("<svg") >= 10 and "P2" in html and "http" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")


def test_cli_unknown_parent_and_missing_journal(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    j = write_journal(tmp_path / "j.sqlite", synthetic_journal_records())
    assert main(["tca", str(j), "--parent", "NOPE"]) == 2
    assert "unknown parent id(s) NOPE" in capsys.readouterr().err
    assert main(["tca", str(tmp_path / "missing.sqlite")]) == 2
    assert "journal file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not sqlite")
    assert main(["tca", str(bad)]) == 2
    assert "bad.sqlite" in capsys.readouterr().err


def test_journal_bad_payload_names_seq(tmp_path: Path) -> None:
    recs = synthetic_journal_records()
    del recs[1][2]["quantity"]
    j = write_journal(tmp_path / "j.sqlite", recs)
    with pytest.raises(DataError, match=r"j.sqlite seq 2: parent_submitted payload lacks field 'quantity'"):
        load_journal(j)


def test_run_report_writes_files(tmp_path: Path) -> None:
    j = write_journal(tmp_path / "j.sqlite", synthetic_journal_records())
    from tca_helpers import synthetic_market
    paths = run_report(j, tmp_path / "out", market={"BTC-USDT": synthetic_market()})
    assert paths["html"].is_file() and paths["json"].is_file() and len(paths["csv"]) == 5
    doc = json.loads(paths["json"].read_text())
    assert doc["parents"][0]["is"]["perold"]["execution"] == 2.96


# ---------------------------------------------------------------- real data
def _spot_file() -> Path:
    f = SHARED / "data" / "binance-btc" / "spot_btcusdt_20240808.gz"
    if not f.is_file():
        pytest.skip(f"real data not found at {f} (set SOREX_SHARED)")
    return f


def _independent_trades(path: Path) -> list[tuple[int, Decimal, Decimal, str]]:
    """A minimal reader written here, independent of tca.loaders: (T ns, price, qty, id) of trades."""
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            _, _, text = line.partition(" ")
            if '"e":"trade"' not in text:
                continue
            d = json.loads(text)["data"]
            out.append((d["T"] * 1_000_000, Decimal(d["p"]), Decimal(d["q"]), str(d["t"])))
    return out


def test_real_binance_trades_vwap_and_participation(tmp_path: Path) -> None:
    f = _spot_file()
    trades = _independent_trades(f)
    start, end = T0, T0 + 60 * 10**9           # 23:55:00-23:56:00 UTC
    window = [t for t in trades if start <= t[0] <= end]
    own = window[10]                            # pretend this public trade was our fill
    recs = [
        (start, "parent_submitted", {"parent_id": "R1", "symbol": "BTC-USDT", "side": "buy", "quantity": "0.5",
                                     "algo": "twap", "params": {}, "limit_price": None, "arrival_price": None,
                                     "decision_ts_ns": start}),
        (own[0], "fill", {"client_order_id": "c1", "parent_id": "R1", "venue": "binance-spot",
                          "symbol": "BTC-USDT", "side": "buy", "trade_id": own[3], "price": str(own[1]),
                          "quantity": str(own[2]), "fee": "0", "fee_currency": "USDT", "liquidity": "taker",
                          "ts_event": own[0]}),
        (end, "parent_finished", {"parent_id": "R1", "status": "canceled", "filled": str(own[2]),
                                  "average_price": str(own[1]), "reason": None}),
    ]
    j = write_journal(tmp_path / "real.sqlite", recs)
    market = read_binance_capture(f)
    [a] = analyze_all(load_journal(j), market)
    m = a.metrics
    others = [t for t in window if t[3] != own[3]]
    vol = sum((t[2] for t in others), Decimal(0))
    vwap = Fraction(sum((t[1] * t[2] for t in others), Decimal(0))) / Fraction(vol)
    assert m["vwap"] == vwap
    assert m["market_volume"] == vol
    assert m["participation"] == Fraction(own[2]) / Fraction(vol + own[2])
    assert m["arrival_price"] is not None and m["twap"] is not None
    assert m["effective_spread_bps"] == m["realized_spread_bps"] + m["price_impact_bps"]
    assert all(v is not None for v in m["markouts_bps"].values())
    # the replay dataset (when present) gives the same trades and mids
    try:
        from marketdata import replay  # noqa: F401
    except ImportError:
        return
    [b] = analyze_all(load_journal(j), load_market([f]))
    assert b.metrics["vwap"] == vwap and b.metrics["arrival_price"] == m["arrival_price"]


def test_journal_written_by_venues_journal(tmp_path: Path) -> None:
    """The oms helper's writer (when present) and this reader agree; reading works while the
    writer still has the WAL database open."""
    try:
        from venues.journal import Journal
    except ImportError:
        pytest.skip("venues.journal not available yet")
    from tca_helpers import synthetic_market
    j = Journal(tmp_path / "oms.sqlite")
    for ts, kind, payload in synthetic_journal_records():
        j.append(kind, ts, payload, venue=payload.get("venue"), client_order_id=payload.get("client_order_id"),
                 parent_id=payload.get("parent_id"))
    try:
        [ex] = load_journal(tmp_path / "oms.sqlite")
    finally:
        j.close()
    ref = write_journal(tmp_path / "ref.sqlite", synthetic_journal_records())
    [ex_ref] = load_journal(ref)
    a, b = analyze_all([ex], {"BTC-USDT": synthetic_market()}), analyze_all([ex_ref],
                                                                            {"BTC-USDT": synthetic_market()})
    for key in ("is_bps", "vwap", "twap", "participation", "markouts_bps", "effective_spread_bps"):
        assert a[0].metrics[key] == b[0].metrics[key], key
    assert len(ex.children) == 3 and len(ex.decisions) == 2
