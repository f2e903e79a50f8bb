"""Readers, integrity check and CLI on small crafted files: malformed lines, gaps, resyncs, crossed
books, top-of-book oracle, Tardis CSV."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketdata.errors import DataError
from marketdata.model import BookDeltas, Side, TradeTick
from marketdata.replay import detect_format, open_dataset
from marketdata.replay.check import check_dataset
from router.cli import main

T0 = 1723161255000  # ms


def _depth(ts: int, U: int, u: int, bids: list[list[str]], asks: list[list[str]], sym: str = "ETHUSDT",
           pu: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"e": "depthUpdate", "E": ts, "s": sym, "U": U, "u": u, "b": bids, "a": asks}
    if pu is not None:
        d["pu"] = pu
        d["T"] = ts
    return {"stream": f"{sym.lower()}@depth@{'0ms' if pu is not None else '100ms'}", "data": d}


def _ticker(u: int, b: str, bq: str, a: str, aq: str, sym: str = "ETHUSDT") -> dict[str, Any]:
    return {"stream": f"{sym.lower()}@bookTicker", "data": {"u": u, "s": sym, "b": b, "B": bq, "a": a, "A": aq}}


def _trade(ts: int, tid: int, p: str, q: str, m: bool, sym: str = "ETHUSDT") -> dict[str, Any]:
    return {"stream": f"{sym.lower()}@trade",
            "data": {"e": "trade", "E": ts, "s": sym, "t": tid, "p": p, "q": q, "T": ts, "m": m}}


def _snap(lid: int, bids: list[list[str]], asks: list[list[str]]) -> dict[str, Any]:
    return {"lastUpdateId": lid, "bids": bids, "asks": asks}


def _write(path: Path, items: list[Any], gz: bool = False) -> Path:
    lines = []
    for i, it in enumerate(items):
        ts_local = (T0 - 1270 + i) * 1_000_000
        lines.append(it if isinstance(it, str) else f"{ts_local} {json.dumps(it, separators=(',', ':'))}")
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _spot_file(tmp_path: Path, *, gap: bool = False, resnap: bool = False, extra: list[Any] | None = None,
               gz: bool = True) -> Path:
    items: list[Any] = [
        _depth(T0, 95, 99, [["100.00", "1.0"]], []),                           # stale: u <= 100
        _depth(T0 + 100, 100, 103, [["100.10", "2.5"]], [["100.50", "1.0"]]),  # straddles lid 100
        _ticker(105, "100.20", "1.00000", "100.50", "1.00000"),  # ahead of the book: must wait
        _snap(100, [["100.00", "3.0"], ["99.90", "1.0"]], [["100.60", "4.0"]]),
        _depth(T0 + 200, 104, 105, [["100.20", "1.0"]], []),
        _trade(T0 + 210, 7, "100.50", "0.5", True),
        _trade(T0 + 220, 8, "100.50", "0.25", False),
        _ticker(105, "100.20", "1.00000", "100.50", "1.00000"),  # equals the book's last id now
    ]
    if gap:
        items.append(_depth(T0 + 300, 110, 112, [["100.20", "0"]], []))  # 106..109 missing
    else:
        items.append(_depth(T0 + 300, 106, 112, [["100.20", "0"]], []))
    if resnap:
        items.append(_snap(120, [["100.00", "2.0"]], [["100.40", "1.0"]]))
        items.append(_depth(T0 + 400, 118, 121, [["100.10", "1.0"]], []))
    items.extend(extra or [])
    return _write(tmp_path / "spot_ethusdt.gz", items, gz=gz)


def test_crafted_spot_book_is_rebuilt_and_ticker_waiting_for_its_id_is_checked(tmp_path: Path) -> None:
    ds = open_dataset([_spot_file(tmp_path)])
    evs = list(ds.events())
    books = [e for e in evs if isinstance(e, BookDeltas)]
    assert books[0].is_snapshot and books[0].last_update_id == 100
    assert [b.last_update_id for b in books[1:]] == [103, 105, 112]  # stale u=99 dropped
    trades = [e for e in evs if isinstance(e, TradeTick)]
    assert [t.aggressor for t in trades] == [Side.SELL, Side.BUY]
    res = check_dataset(ds)
    assert res.ok, res.samples
    assert res.tob_checks == 2 and res.tob_mismatches == 0  # the early ticker and the on-time one


def test_gap_without_resync_fails_and_resync_recovers(tmp_path: Path) -> None:
    res = check_dataset(open_dataset([_spot_file(tmp_path, gap=True)]))
    assert res.gaps == 1 and res.unresolved_gaps == 1 and not res.ok
    res = check_dataset(open_dataset([_spot_file(tmp_path, gap=True, resnap=True)]))
    assert res.gaps == 1 and res.resyncs == 1 and res.unresolved_gaps == 0 and res.ok


def test_tob_mismatch_and_crossed_book_fail(tmp_path: Path) -> None:
    bad_ticker = [_ticker(112, "100.10", "2.50000", "100.50", "9.00000")]  # ask qty wrong
    res = check_dataset(open_dataset([_spot_file(tmp_path, extra=bad_ticker)]))
    assert res.tob_mismatches == 1 and not res.ok
    crossing = [_depth(T0 + 500, 113, 113, [["100.70", "1.0"]], [])]  # bid above best ask 100.50
    res = check_dataset(open_dataset([_spot_file(tmp_path, extra=crossing)]))
    assert res.crossed == 1 and not res.ok


def test_malformed_lines_are_counted_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    extra = [
        "garbage line",                                                    # line 10
        f"{T0 * 1_000_000} {{not json",                                    # line 11
        f"{T0 * 1_000_000} " + json.dumps(_trade(T0, 9, "1O0.5", "1", False)),   # not a number, 12
        f"{T0 * 1_000_000} " + json.dumps({"stream": "ethusdt@trade", "data": {"e": "trade"}}),  # 13
        f"{T0 * 1_000_000} " + json.dumps(_trade(T0 + 600, 10, "100.50", "1", False)),  # fine
    ]
    ds = open_dataset([_spot_file(tmp_path, extra=extra)])
    assert ds.report.malformed == 4
    assert [m.line for m in ds.report.malformed_samples] == [10, 11, 12, 13]
    assert "1O0.5" in ds.report.malformed_samples[2].reason
    assert "missing field" in ds.report.malformed_samples[3].reason
    assert sum(isinstance(e, TradeTick) for e in ds.events()) == 3
    assert check_dataset(ds).ok


def test_known_instrument_rejects_off_tick_price(tmp_path: Path) -> None:
    sym = "BTCUSDT"
    items: list[Any] = [
        _snap(10, [["61800.00000000", "1.00000000"]], [["61800.01000000", "1.00000000"]]),
        _depth(T0, 11, 11, [["61800.00000000", "2.00000000"]], [], sym),
        _trade(T0, 1, "61800.005", "0.001", False, sym),
        _trade(T0, 2, "61800.01000000", "0.00100000", False, sym),
    ]
    ds = open_dataset([_write(tmp_path / "spot.txt", items)])
    assert ds.instruments["binance-spot"].tick_size == Decimal("0.01")
    assert ds.report.malformed == 1 and ds.report.malformed_samples[0].line == 3
    assert "off the tick grid" in ds.report.malformed_samples[0].reason
    assert check_dataset(ds).ok


def test_futures_prev_rule_and_first_event_straddling(tmp_path: Path) -> None:
    sym = "SOLUSDT"
    items: list[Any] = [
        _depth(T0, 90, 95, [["150.10", "1"]], [], sym, pu=89),
        _depth(T0 + 1, 96, 102, [["150.20", "2"]], [["150.30", "1"]], sym, pu=95),  # straddles 100
        {"lastUpdateId": 100, "E": T0 + 2, "T": T0 + 2, "bids": [["150.00", "5"]], "asks": [["150.40", "5"]]},
        _depth(T0 + 3, 103, 110, [], [["150.30", "0"]], sym, pu=102),
        _depth(T0 + 4, 111, 115, [], [["150.35", "3"]], sym, pu=999),  # broken pu chain
    ]
    ds = open_dataset([_write(tmp_path / "usdm.txt", items)])
    assert ds.sequence_rule("binance-usdm") == "prev"
    assert str(ds.instruments["binance-usdm"].tick_size) == "0.01"
    res = check_dataset(ds)
    assert res.gaps == 1 and res.unresolved_gaps == 1


BOOK_CSV = """exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
binance-futures,ETHUSDT,1000000,999000,true,bid,2500.10,1.5
binance-futures,ETHUSDT,1000000,999000,true,bid,2500.00,2
binance-futures,ETHUSDT,1000000,999000,true,ask,2500.20,0.75
binance-futures,ETHUSDT,1000100,1000050,false,bid,2500.10,0
binance-futures,ETHUSDT,1000100,1000050,false,ask,2500.15,1e-3
binance-futures,ETHUSDT,1000200,1000150,false,ask,2500.15,0
binance-futures,ETHUSDT,1000250,1000200,maybe,ask,2500.15,0
binance-futures,ETHUSDT,1000300,1000250,true,bid,2499.00,1
binance-futures,ETHUSDT,1000300,1000250,true,ask,2501.00,1
"""
TRADES_CSV = """exchange,symbol,timestamp,local_timestamp,id,side,price,amount
binance-futures,ETHUSDT,1000050,1000000,a1,buy,2500.20,0.5
binance-futures,ETHUSDT,1000150,1000100,a2,unknown,2500.10,0.25
binance-futures,ETHUSDT,1000160,1000110,a3,sell,2500.10
"""


def test_tardis_book_and_trades(tmp_path: Path) -> None:
    book = tmp_path / "book.csv.gz"
    book.write_bytes(gzip.compress(BOOK_CSV.encode()))
    trades = tmp_path / "trades.csv"
    trades.write_text(TRADES_CSV)
    assert detect_format(book) == "tardis-book" and detect_format(trades) == "tardis-trades"
    ds = open_dataset([book, trades])
    assert ds.sequence_rule("binance-usdm") == "none"
    inst = ds.instruments["binance-usdm"]
    assert str(inst.tick_size) == "0.01" and str(inst.lot_size) == "0.001"  # inferred, 1e-3 included
    evs = list(ds.events())
    msgs = [e for e in evs if isinstance(e, BookDeltas)]
    assert [m.is_snapshot for m in msgs] == [True, False, False, True]
    assert msgs[0].bids == [(250010, 1500), (250000, 2000)] and msgs[0].asks == [(250020, 750)]
    assert msgs[1].bids == [(250010, 0)] and msgs[1].asks == [(250015, 1)]
    assert msgs[1].ts_event == 1_000_100_000 and msgs[1].ts_init == 1_000_050_000
    tr = [e for e in evs if isinstance(e, TradeTick)]
    assert [t.trade_id for t in tr] == ["a1", "a2"]
    assert tr[1].aggressor is Side.SELL  # tick test: below the previous trade
    assert ds.report.malformed == 2
    assert {m.line for m in ds.report.malformed_samples} == {8, 4}
    res = check_dataset(ds)
    assert res.ok and res.snapshots == 2 and res.book_updates == 2
    b = res.books["binance-usdm:ETH-USDT"]
    assert b["best_bid"] == (249900, 1000) and b["best_ask"] == (250100, 1000)  # second snapshot reset


def test_tardis_bad_header_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("exchange,symbol,timestamp,local_timestamp,foo,side,price,amount\n")
    with pytest.raises(DataError, match="unexpected CSV header"):
        open_dataset([f], "tardis-book")


def test_cli_check_json_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _spot_file(tmp_path)
    assert main(["data", "check", "--json", str(good)]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("events", "book_updates", "trades", "gaps", "crossed", "tob_checks", "tob_mismatches",
                "malformed", "malformed_lines", "resyncs", "books"):
        assert key in out
    assert out["tob_checks"] == 2 and out["gaps"] == 0
    gap = _spot_file(tmp_path, gap=True, gz=False)
    assert main(["data", "check", str(gap), "--format", "binance-raw"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "missing.gz")]) == 2
    err = capsys.readouterr().err
    assert "missing.gz" in err and "tardis-book" in err and len(err.strip().splitlines()) == 1
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01hello")
    assert main(["data", "check", str(junk)]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_stream_variants_partial_depth_agg_trades_and_blank_lines(tmp_path: Path) -> None:
    d1 = _depth(T0, 11, 12, [["10.5", "1"]], [])
    d1["stream"] = "xyzusdt@depth"  # 1000 ms diff stream
    d1["data"]["s"] = "XYZUSDT"
    partial = {"stream": "xyzusdt@depth5@100ms",
               "data": {"lastUpdateId": 50, "bids": [["10.0", "1"]], "asks": [["11.0", "1"]]}}
    agg = {"stream": "xyzusdt@aggTrade", "data": {"e": "aggTrade", "E": T0, "s": "XYZUSDT", "a": 77,
                                                  "p": "10.6", "q": "2", "f": 1, "l": 3, "T": T0, "m": False}}
    items: list[Any] = [_snap(10, [["10.4", "3"]], [["10.7", "3"]]), d1, partial, "", agg, "   "]
    ds = open_dataset([_write(tmp_path / "x.txt", items)])
    assert ds.report.malformed == 0 and ds.report.ignored == {"depth5@100ms": 1}
    evs = list(ds.events())
    assert [type(e).__name__ for e in evs] == ["BookDeltas", "BookDeltas", "TradeTick"]
    trade = evs[2]
    assert isinstance(trade, TradeTick) and trade.trade_id == "77" and trade.aggressor is Side.BUY
    assert check_dataset(ds).ok


def test_directory_expands_to_its_data_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "captures"
    d.mkdir()
    _spot_file(d)
    (d / "LICENSE").write_text("MIT License\n")
    ds = open_dataset([d])
    assert ds.report.books["binance-spot:ETHUSDT"]["depth_events"] == 4
    assert main(["data", "check", "--json", str(d)]) == 0
    assert json.loads(capsys.readouterr().out)["tob_checks"] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no data files"):
        open_dataset([empty])
