"""L2Book on the real Binance captures (../shared/data/binance-btc), decoded by a tiny local reader.

Oracle: on USD-M every bookTicker whose update id equals the book's last applied update id matches
the rebuilt top of book exactly (see the data README). The chain must replay with zero gaps and
never cross.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from marketdata.book import L2Book, SequenceRule
from marketdata.model import BookDeltas, Instrument, InstrumentKind

# Spot lot: the wire carries 8 decimals and some aggregated levels are finer than the 0.00001 trading
# step (e.g. "25.42618900"), so the reader uses the wire grid 0.00000001 to stay exact.
SPOT = Instrument("binance-spot", "BTC-USDT", "BTCUSDT", "BTC", "USDT", "0.01", "0.00000001")
USDM = Instrument("binance-usdm", "BTC-USDT", "BTCUSDT", "BTC", "USDT", "0.1", "0.001",
                  kind=InstrumentKind.PERPETUAL)


@dataclass(frozen=True)
class Ticker:
    update_id: int
    bid_ticks: int
    bid_lots: int
    ask_ticks: int
    ask_lots: int
    ts_init: int


@dataclass
class Capture:
    instrument: Instrument
    rule: SequenceRule
    # Binance local-book order: the snapshot first, then every diff (buffered ones included) in file order
    messages: list[BookDeltas]
    tickers: dict[int, Ticker]  # bookTicker by its update id


@functools.lru_cache(maxsize=4)  # shared by test_consolidated_real within one session; read-only use
def decode_capture(path: Path, inst: Instrument) -> Capture:
    """Snapshot + depth diffs + bookTickers of one raw capture, as integers."""
    pt, ql = inst.parse_price_ticks, inst.parse_qty_lots
    rule: SequenceRule = "prev" if inst.kind is InstrumentKind.PERPETUAL else "contiguous"
    pending: list[BookDeltas] = []
    messages: list[BookDeltas] = []
    tickers: dict[int, Ticker] = {}
    snapshot_seen = False
    with gzip.open(path, "rt") as fh:
        for line in fh:
            ts_s, _, body = line.partition(" ")
            ts_init = int(ts_s)
            msg = json.loads(body)
            if "lastUpdateId" in msg:
                snap = BookDeltas(inst.venue, inst.symbol, [(pt(p), ql(q)) for p, q in msg["bids"]],
                                  [(pt(p), ql(q)) for p, q in msg["asks"]], msg.get("E", 0) * 1_000_000,
                                  ts_init, is_snapshot=True, last_update_id=msg["lastUpdateId"])
                messages.append(snap)
                messages.extend(pending)  # diffs buffered before the snapshot arrived
                pending = []
                snapshot_seen = True
                continue
            d = msg["data"]
            if d.get("e") == "depthUpdate":
                m = BookDeltas(inst.venue, inst.symbol, [(pt(p), ql(q)) for p, q in d["b"]],
                               [(pt(p), ql(q)) for p, q in d["a"]], d["E"] * 1_000_000, ts_init,
                               first_update_id=d["U"], last_update_id=d["u"], prev_update_id=d.get("pu", -1))
                (messages if snapshot_seen else pending).append(m)
            elif "bookTicker" in msg.get("stream", ""):
                tickers[d["u"]] = Ticker(d["u"], pt(d["b"]), ql(d["B"]), pt(d["a"]), ql(d["A"]), ts_init)
    if not snapshot_seen:
        raise ValueError(f"{path}: no REST snapshot")
    return Capture(inst, rule, messages, tickers)


@pytest.fixture(scope="module")
def usdm_capture(binance_btc_dir: Path) -> Capture:
    return decode_capture(binance_btc_dir / "usdm_btcusdt_20240808.gz", USDM)


@pytest.fixture(scope="module")
def spot_capture(binance_btc_dir: Path) -> Capture:
    return decode_capture(binance_btc_dir / "spot_btcusdt_20240808.gz", SPOT)


def test_usdm_replays_without_gaps_and_matches_every_book_ticker(usdm_capture: Capture) -> None:
    gaps: list[L2Book] = []
    book = L2Book(USDM.venue, USDM.symbol, sequence_rule="prev", on_gap=gaps.append)
    checked = 0
    tickers = usdm_capture.tickers
    for i, m in enumerate(usdm_capture.messages):
        assert book.apply(m)
        assert not book.crossed, f"crossed after message {i}"
        t = tickers.get(book.last_update_id)
        if t is not None and not m.is_snapshot:
            assert book.best_bid() == (t.bid_ticks, t.bid_lots), f"message {i}, ticker {t}"
            assert book.best_ask() == (t.ask_ticks, t.ask_lots), f"message {i}, ticker {t}"
            checked += 1
        if i % 500 == 0:
            book._check()
    book._check()
    s = book.statistics()
    assert not gaps and s["gaps"] == 0 and s["crossed"] == 0 and s["dropped"] == 0
    assert s["updates"] > 400_000  # the chain applies (nearly) all 443,521 level updates
    assert checked >= 600, checked  # the oracle really was consulted (629 tickers share an id)


def test_spot_replays_without_gaps(spot_capture: Capture) -> None:
    gaps: list[L2Book] = []
    book = L2Book(SPOT.venue, SPOT.symbol, sequence_rule="contiguous", on_gap=gaps.append)
    for m in spot_capture.messages:
        assert book.apply(m)
        assert not book.crossed
    book._check()
    s = book.statistics()
    assert not gaps and s["gaps"] == 0 and s["stale"] >= 1  # diffs that predate the snapshot are dropped
    assert s["updates"] > 100_000


def test_usdm_dropped_message_is_detected_as_gap(usdm_capture: Capture) -> None:
    """Removing one diff from the real chain must be caught, and a fresh snapshot must recover."""
    gaps: list[L2Book] = []
    book = L2Book(USDM.venue, USDM.symbol, sequence_rule="prev", on_gap=gaps.append)
    msgs = usdm_capture.messages
    for m in msgs[:200]:
        book.apply(m)
    assert not book.apply(msgs[201])  # msgs[200] skipped
    assert gaps == [book] and book.needs_resync and book.best_bid_ticks is None
    assert not book.apply(msgs[202])
    # resync: a snapshot equal to the true book after msgs[202], then the chain continues
    truth = L2Book(sequence_rule="prev")
    for m in msgs[:203]:
        truth.apply(m)
    book.apply(BookDeltas(USDM.venue, USDM.symbol, truth.bids(), truth.asks(), 0, 0, is_snapshot=True,
                          last_update_id=truth.last_update_id))
    for m in msgs[203:400]:
        assert book.apply(m)
        truth.apply(m)
    assert book.bids() == truth.bids() and book.asks() == truth.asks()
    assert book.statistics()["resyncs"] == 1
