"""The market-data stream client on real Binance spot messages (the recorded capture) served by the
loopback fake: parsing, the depth chain check, gap reporting, garbled frames."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from binance_harness import make_fake

from marketdata.book import L2Book
from marketdata.clock import LiveClock
from marketdata.model import BookDeltas, Instrument, InstrumentKind, MarketEvent, QuoteTick, Symbol, TradeTick, VenueId
from venues.binance.ws import BinanceMarketDataStream

REPO = Path(__file__).resolve().parents[2]
CAPTURE = Path(os.environ.get("SOREX_SHARED", REPO / ".." / "shared")) / "data" / "binance-btc" / \
    "spot_btcusdt_20240808.gz"


def _inst() -> Instrument:
    return Instrument(venue=VenueId("binance-spot"), symbol=Symbol("BTC-USDT"), venue_symbol="BTCUSDT", base="BTC",
                      quote="USDT", tick_size=Decimal("0.01"), lot_size=Decimal("0.00001"), kind=InstrumentKind.SPOT)


@pytest.fixture(scope="module")
def capture_lines() -> list[str]:
    if not CAPTURE.is_file():
        pytest.skip(f"capture not found at {CAPTURE} (set SOREX_SHARED)")
    with gzip.open(CAPTURE, "rt") as fh:
        lines = [ln.split(" ", 1)[1].rstrip("\n") for ln in itertools.islice(fh, 400)]
    return [ln for ln in lines if ln.startswith('{"stream"')]


async def _run(messages: list[str], expect: int) -> tuple[list[MarketEvent], list[str], BinanceMarketDataStream]:
    inst = _inst()
    fake = make_fake(inst, Decimal(1), Decimal(1))
    fake.market_messages = messages
    await fake.start()
    events: list[MarketEvent] = []
    gaps: list[str] = []
    async with aiohttp.ClientSession() as session:
        md = BinanceMarketDataStream(lambda: session, fake.ws_url, [inst], events.append, LiveClock(),
                                     on_gap=gaps.append)
        await md.start()
        try:
            async with asyncio.timeout(5):
                while md.socket.messages < expect:  # noqa: ASYNC110 (waiting for a counter)
                    await asyncio.sleep(0.01)
        finally:
            await md.close()
            await fake.stop()
    assert fake.market_streams == ["btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker"]
    return events, gaps, md


async def test_real_capture_parses_and_chains(capture_lines: list[str]) -> None:
    events, gaps, md = await _run(capture_lines, len(capture_lines))
    assert len(events) == len(capture_lines) and md.stats["garbled"] == 0 and gaps == []
    kinds = {type(e) for e in events}
    assert kinds == {BookDeltas, TradeTick, QuoteTick}
    depth = [e for e in events if isinstance(e, BookDeltas)]
    assert all(b.first_update_id == a.last_update_id + 1 for a, b in itertools.pairwise(depth))
    # the parsed diffs drive a book under Binance's contiguous rule without a gap
    book = L2Book("binance-spot", "BTC-USDT", sequence_rule="contiguous")
    first = depth[0]
    assert book.apply(BookDeltas(first.venue, first.symbol, first.bids, first.asks, first.ts_event,
                                 first.ts_init, is_snapshot=True, last_update_id=first.last_update_id))
    assert all(book.apply(d) for d in depth[1:])
    assert book.last_update_id == depth[-1].last_update_id


async def test_a_missing_diff_is_reported_as_a_gap_and_garbage_is_skipped(capture_lines: list[str]) -> None:
    depth_idx = [i for i, ln in enumerate(capture_lines) if "@depth" in ln]
    msgs = list(capture_lines)
    del msgs[depth_idx[3]]
    msgs.insert(5, '{"stream": "btcusdt@trade", "data": {"e": "trade"}}')
    msgs.insert(6, "not json")
    events, gaps, md = await _run(msgs, len(msgs))
    assert gaps == ["BTCUSDT"] and md.stats["gaps"] == 1
    assert md.stats["garbled"] == 2 and len(events) == len(msgs) - 2
