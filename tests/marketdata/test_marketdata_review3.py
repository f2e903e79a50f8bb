"""Market-data review 3: one regression test per bug, each failed before its fix."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from marketdata.book import L2Book
from marketdata.clock import LiveClock
from marketdata.model import BookDeltas, Instrument
from marketdata.replay import open_dataset, read_bundle, write_bundle
from marketdata.replay.check import check_dataset
from marketdata.replay.numparse import price_parser, qty_parser

T0 = 1723161255000  # ms


def _write(path: Path, items: list[Any]) -> Path:
    lines = []
    for i, it in enumerate(items):
        ts_local = (T0 - 1270 + i) * 1_000_000
        lines.append(it if isinstance(it, str) else f"{ts_local} {json.dumps(it, separators=(',', ':'))}")
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def _depth(ts: int, U: int, u: int, bids: list[list[str]], asks: list[list[str]],
           sym: str = "ETHUSDT") -> dict[str, Any]:
    return {"stream": f"{sym.lower()}@depth@100ms",
            "data": {"e": "depthUpdate", "E": ts, "s": sym, "U": U, "u": u, "b": bids, "a": asks}}


def _snap(lid: int, bids: list[list[str]], asks: list[list[str]]) -> dict[str, Any]:
    return {"lastUpdateId": lid, "bids": bids, "asks": asks}


def _replay(ds: Any, venue: str) -> L2Book:
    book = L2Book(venue, sequence_rule=ds.sequence_rule(venue))
    for ev in ds.events([venue]):
        if isinstance(ev, BookDeltas):
            book.apply(ev)
    return book


# ---------------------------------------------------------------- binance-raw: resync snapshot
def test_resync_snapshot_after_a_real_usdm_gap_replays_the_diffs_that_arrived_before_it(
        binance_btc_dir: Path, tmp_path: Path) -> None:
    """Failed before. The real USD-M capture with one diff removed (a gap) and a second REST
    snapshot (the rebuilt book at diff k) inserted three diffs later, as a real resync arrives: the
    REST answer comes after the WS diffs that straddle it (like the file's own first snapshot). The
    reader put the synced book's later snapshot AFTER those diffs, so the first diff following it did
    not chain on lastUpdateId: a second gap, never resynced (``sorex data check`` failed although
    Binance's procedure recovers the book exactly)."""
    src = binance_btc_dir / "usdm_btcusdt_20240808.gz"
    lines = gzip.decompress(src.read_bytes()).decode().split("\n")
    if not lines[-1]:
        lines.pop()
    ref = open_dataset([src])
    ref_book = _replay(ref, "binance-usdm")
    depth_at = [i for i, line in enumerate(lines) if "@depth" in line[:80]]
    gap_line, k = depth_at[3000], 3050
    # the book after diff k, from the untouched chain
    u_k = json.loads(lines[depth_at[k]].split(" ", 1)[1])["data"]["u"]
    inst = ref.instruments["binance-usdm"]
    book = L2Book("binance-usdm", sequence_rule="prev")
    for ev in ref.events(["binance-usdm"]):
        if isinstance(ev, BookDeltas):
            book.apply(ev)
            if ev.last_update_id == u_k:
                break
    snap = {"lastUpdateId": u_k, "E": 0, "T": 0,
            "bids": [[str(inst.ticks_to_price(p)), str(inst.lots_to_qty(q))] for p, q in book.bids()],
            "asks": [[str(inst.ticks_to_price(p)), str(inst.lots_to_qty(q))] for p, q in book.asks()]}
    after = depth_at[k + 3]
    recv = lines[after].split(" ", 1)[0]
    snap["E"] = snap["T"] = json.loads(lines[after].split(" ", 1)[1])["data"]["E"]
    edited = [*lines[:after + 1], f"{recv} {json.dumps(snap)}", *lines[after + 1:]]
    del edited[gap_line]
    path = tmp_path / "usdm_btcusdt_resync.gz"
    path.write_bytes(gzip.compress(("\n".join(edited) + "\n").encode()))

    ds = open_dataset([path])
    res = check_dataset(ds)
    assert res.gaps == 1 and res.resyncs == 1 and res.unresolved_gaps == 0, res.samples
    assert res.ok and res.tob_mismatches == 0 and res.tob_checks > 300
    got = _replay(ds, "binance-usdm")
    assert got.bids() == ref_book.bids() and got.asks() == ref_book.asks()
    assert got.last_update_id == ref_book.last_update_id


# ---------------------------------------------------------------- wire numbers
SPOT = Instrument(venue="binance-spot", symbol="BTC-USDT", venue_symbol="BTCUSDT",  # type: ignore[arg-type]
                  base="BTC", quote="USDT", tick_size="0.01", lot_size="0.00001")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["61_800.10", " 61800.10", "+61800.10", " 1e3"])
def test_garbled_price_strings_are_rejected_not_parsed(text: str) -> None:
    """Failed before. The fast parsers built the integer with ``int()``, which also takes
    underscores between digits, surrounding spaces and a sign (and ``Decimal`` does for the exponent
    path): ``"61_800.10"`` or ``" 61800.10"`` became a valid price instead of a malformed line."""
    with pytest.raises(ValueError):
        price_parser(SPOT)(text)
    with pytest.raises(ValueError):
        SPOT.parse_price_ticks(text)


@pytest.mark.parametrize("text", ["0.1_5", "1_000", " 1.5", "+1.5", "-0.000001", "-0.0"])
def test_garbled_or_negative_quantity_strings_are_rejected(text: str) -> None:
    """Failed before. ``"0.1_5"`` parsed as 0.015 BTC, ``"1_000"`` as 1000, and ``"-0.000001"``
    (negative, finer than the lot) was floored to 0 lots: a silent DELETE of the level."""
    with pytest.raises(ValueError):
        qty_parser(SPOT, [0])(text)
    with pytest.raises(ValueError):
        SPOT.parse_qty_lots(text)


def test_exponent_notation_is_exact_not_rounded_to_28_digits() -> None:
    """Failed before. The exponent fallback divided Decimals (28 significant digits), so a price
    just off the tick looked on-tick and a quantity just above a lot was not counted as floored."""
    with pytest.raises(ValueError, match="off the grid"):
        price_parser(SPOT)("61800.10000000000000000000000000001e0")
    counter = [0]
    assert qty_parser(SPOT, counter)("1.000000000000000000000000000001e0") == 100000
    assert counter == [1]
    assert price_parser(SPOT)("6.18001e4") == 6180010 and qty_parser(SPOT, [0])("1e-05") == 1


# ---------------------------------------------------------------- binance-raw: garbled fields
def test_string_times_and_ids_are_malformed_lines_not_a_crash(tmp_path: Path) -> None:
    """Failed before. A depth event whose ``E`` was the string ``"1723161255300"`` became a
    ts_event of that string repeated a million times (13 MB); the merge by ts_event then raised a
    bare TypeError out of ``events()`` instead of the line being reported. A trade with a string
    ``T`` did the same; an update id ``"106"`` or ``106.7`` was taken by ``int()``."""
    bad_depth = _depth(T0 + 300, 106, 112, [["100.20", "0"]], [])
    bad_depth["data"]["E"] = str(T0 + 300)
    bad_trade = {"stream": "ethusdt@trade", "data": {"e": "trade", "E": T0 + 310, "s": "ETHUSDT", "t": 9,
                                                     "p": "100.50", "q": "0.5", "T": str(T0 + 310), "m": True}}
    float_id = _depth(T0 + 320, 106.7, 112, [["100.20", "0"]], [])  # type: ignore[arg-type]
    items: list[Any] = [
        _snap(100, [["100.00", "3.0"]], [["100.60", "4.0"]]),
        _depth(T0 + 200, 100, 105, [["100.20", "1.0"]], []),
        bad_depth, bad_trade, float_id,
        _depth(T0 + 400, 106, 112, [["100.20", "0"]], []),
    ]
    ds = open_dataset([_write(tmp_path / "spot_ethusdt.gz", items)])
    assert ds.report.malformed == 3
    assert [m.line for m in ds.report.malformed_samples] == [3, 4, 5]
    assert all(m.source.endswith("spot_ethusdt.gz") for m in ds.report.malformed_samples)
    evs = list(ds.events())
    assert all(type(e.ts_event) is int for e in evs)
    res = check_dataset(ds)
    assert res.ok and res.gaps == 0


def test_depth_stream_message_without_its_event_type_is_malformed_not_ignored(tmp_path: Path) -> None:
    """Failed before. A message on a ``@depth@100ms`` stream that lost its ``"e"`` field (or a
    bookTicker without ``"B"``) was counted under ``ignored`` like a partial-depth stream the reader
    does not decode: the garbled line was not in ``malformed`` and its line number was lost."""
    no_e = _depth(T0 + 300, 106, 112, [["100.20", "0"]], [])
    del no_e["data"]["e"]
    ticker = {"stream": "ethusdt@bookTicker", "data": {"u": 105, "s": "ETHUSDT", "b": "100.20",
                                                       "a": "100.50", "A": "1.0"}}
    items: list[Any] = [_snap(100, [["100.00", "3.0"]], [["100.60", "4.0"]]),
                        _depth(T0 + 200, 100, 105, [["100.20", "1.0"]], []), no_e, ticker,
                        {"stream": "ethusdt@depth5@100ms", "data": {"lastUpdateId": 1, "bids": [], "asks": []}}]
    ds = open_dataset([_write(tmp_path / "spot_ethusdt.gz", items)])
    assert [m.line for m in ds.report.malformed_samples] == [3, 4]
    assert ds.report.ignored == {"depth5@100ms": 1}


# ---------------------------------------------------------------- bundle keeps the reader's report
def test_bundle_keeps_the_malformed_lines_of_its_source(tmp_path: Path) -> None:
    """Failed before. ``write_bundle`` stores the reader's report, but ``read_bundle`` restored
    only its notes and per-book counters: ``sorex data check`` of a bundle said ``malformed 0`` and
    listed no lines although its source had garbled lines."""
    items: list[Any] = [_snap(100, [["100.00", "3.0"]], [["100.60", "4.0"]]),
                        "garbage line", _depth(T0 + 200, 100, 105, [["100.20", "1.0"]], []),
                        "1723161255000000000 {not json"]
    ds = open_dataset([_write(tmp_path / "spot_ethusdt.gz", items)])
    assert ds.report.malformed == 2
    buf = io.BytesIO()
    write_bundle(ds, buf)
    buf.seek(0)
    back = read_bundle(buf)
    assert back.report.malformed == 2
    assert [m.to_dict() for m in back.report.malformed_samples] == [m.to_dict() for m in ds.report.malformed_samples]
    assert back.report.lines == ds.report.lines and back.report.ignored == ds.report.ignored


def test_bundle_keeps_trade_ids_with_leading_zeros(tmp_path: Path) -> None:
    """Failed before. All-digit trade ids were stored as integers, so a Tardis id ``"007"`` came
    back from the bundle as ``"7"``: the bundle no longer replayed to exactly its source's events."""
    path = tmp_path / "trades.csv"
    path.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                    "binance,ETHUSDT,1723161256322000,1723161255088176,007,buy,100.5,0.5\n"
                    "binance,ETHUSDT,1723161256323000,1723161255088177,8,sell,100.4,0.5\n")
    ds = open_dataset([path])
    buf = io.BytesIO()
    write_bundle(ds, buf)
    buf.seek(0)
    assert [t.trade_id for t in read_bundle(buf).events()] == [t.trade_id for t in ds.events()] == ["007", "8"]  # type: ignore[union-attr]


# ---------------------------------------------------------------- Tardis
def test_tardis_back_to_back_snapshots_do_not_merge(tmp_path: Path) -> None:
    """Failed before. Two snapshots of one symbol with no delta between them (a reconnect) were
    read as ONE snapshot holding the levels of both: the level 100.1 that the second snapshot no
    longer has stayed in the book (and here crossed it)."""
    path = tmp_path / "book.csv"
    path.write_text(
        "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
        "binance,ETHUSDT,1723161256000000,1723161255000000,true,bid,100.1,2\n"
        "binance,ETHUSDT,1723161256000000,1723161255000000,true,ask,100.3,1\n"
        "binance,ETHUSDT,1723161257000000,1723161256000000,true,bid,99.9,1\n"
        "binance,ETHUSDT,1723161257000000,1723161256000000,true,ask,100.0,3\n")
    ds = open_dataset([path])
    snaps = [e for e in ds.events() if isinstance(e, BookDeltas)]
    assert [s.is_snapshot for s in snaps] == [True, True]
    book = _replay(ds, "binance-spot")
    assert book.bids() == [(999, 1)] and book.asks() == [(1000, 3)] and not book.crossed
    assert check_dataset(ds).ok


# ---------------------------------------------------------------- LiveClock
def test_live_timer_started_in_the_past_does_not_burst_missed_periods() -> None:
    """Failed before. ``LiveClock.set_timer(10 ms, start_ns=now - 1 s)`` fired all 100 missed
    periods at once (each rescheduling the next with delay 0; a POV algo with a past start sent a
    child per call), and with a ``stop_ns`` already past it still fired. SimClock fires once, now,
    and runs the period from there (and never after stop_ns): the two clocks now agree."""
    async def main() -> tuple[list[int], list[int], int]:
        clock = LiveClock()
        now = clock.now_ns()
        got: list[int] = []
        h = clock.set_timer(10_000_000, got.append, start_ns=now - 1_000_000_000)
        late: list[int] = []
        clock.set_timer(10_000_000, late.append, start_ns=now - 1_000_000_000, stop_ns=now - 500_000_000)
        await asyncio.sleep(0.005)
        h.cancel()
        return got, late, now

    got, late, now = asyncio.run(main())
    assert len(got) == 1 and got[0] >= now
    assert late == []
