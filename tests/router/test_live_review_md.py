"""Review of the live market-data path (router/engine_live.py, venues/binance/ws.py) against the
loopback fake Binance: a book whose depth chain is known to be broken (a gap seen by the stream,
a dropped or re-opened market-data connection) must not be offered to the router with its old
levels as if it were in sync, and a reconnection must always resync the book."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from binance_fake import FakeBinance
from binance_harness import make_instrument
from test_engine_live import ASKS, BIDS, _toml, _until

from router.engine import Engine

V = "binance-spot"
NEW_BIDS = [("60000.3", "1.000"), *BIDS]
NEW_ASKS = [("60000.4", "1.000"), ASKS[2]]


async def _seeded(fake: FakeBinance) -> Engine:
    engine = Engine.from_toml_text(_toml(fake, mode="shadow"))
    await engine.start_live()
    book = engine.books[V]
    await _until(lambda: book.best_bid_ticks is not None and not book.needs_resync)
    assert book.best_bid_ticks == make_instrument().price_to_ticks("60000.0")
    return engine


def _stale_in_sync(engine: Engine) -> bool:
    """The book claims to be in sync while it still holds the levels of before the break."""
    book = engine.books[V]
    return not book.needs_resync and book.best_bid_ticks == make_instrument().price_to_ticks("60000.0")


async def test_gap_seen_by_the_stream_empties_the_book_while_it_resyncs(fake: FakeBinance) -> None:
    """One diff continues the chain, then the stream sees a break in it (lost ids; the diff after
    the break is buffered, so the book itself never sees it) and the snapshot takes 1.5 s: while
    the book resyncs it must be out of sync (empty, no liquidity for the router), not keep
    offering the levels of before the gap as in sync; afterwards it shows the new book."""
    async with asyncio.timeout(15):
        engine = await _seeded(fake)
        book = engine.books[V]
        await fake.publish_book("BTCUSDT", BIDS, [("60000.2", "5.000"), *ASKS[1:]])   # the stream's chain starts
        await _until(lambda: book.best_ask_ticks == make_instrument().price_to_ticks("60000.2"))
        fake.fault("GET", "/api/v3/depth", "slow", 1.5)
        fake.skip_depth_ids("BTCUSDT", 5)
        await fake.publish_book("BTCUSDT", NEW_BIDS, NEW_ASKS)
        await _until(lambda: engine._live.streams[V].stats["gaps"] >= 1)
        await asyncio.sleep(0.2)    # the snapshot is still on its way
        assert not _stale_in_sync(engine), "book offered with its pre-gap levels while resyncing"
        assert book.needs_resync and book.best_bid_ticks is None
        await _until(lambda: not book.needs_resync)
        assert book.best_bid_ticks == make_instrument().price_to_ticks("60000.3")
        await engine.stop_live()


async def test_reconnect_without_any_diff_since_the_connect_still_resyncs(fake: FakeBinance) -> None:
    """The book was seeded from the snapshot and no diff arrived on that connection yet (a quiet
    book). The venue drops the market-data socket; a book change published meanwhile is lost.
    After the reconnection the book must be resynced from a snapshot (it shows the new levels),
    not stay on the old snapshot believing it is in sync."""
    async with asyncio.timeout(15):
        engine = await _seeded(fake)
        book = engine.books[V]
        stream = engine._live.streams[V]
        snaps = engine._live.stats["snapshots"]
        await fake.drop_market_streams()
        await fake.publish_book("BTCUSDT", NEW_BIDS, NEW_ASKS)   # nobody connected: lost
        await _until(lambda: stream.socket.connections >= 2 and stream.socket.connected)
        await _until(lambda: engine._live.stats["snapshots"] > snaps and not book.needs_resync, 5.0)
        assert book.best_bid_ticks == make_instrument().price_to_ticks("60000.3")
        assert book.best_ask_ticks == make_instrument().price_to_ticks("60000.4")
        await engine.stop_live()


async def test_book_is_out_of_sync_while_the_market_data_socket_is_down(fake: FakeBinance) -> None:
    """The market-data socket is dropped and the next 3 connection attempts are refused (about
    0.7 s of backoff): while no diff can arrive the book must not be offered as in sync with its
    old levels; once reconnected it is resynced from a snapshot taken after the reconnection."""
    async with asyncio.timeout(15):
        engine = await _seeded(fake)
        book = engine.books[V]
        stream = engine._live.streams[V]
        await fake.drop_market_streams(refuse=3)
        await _until(lambda: not stream.socket.connected)
        await fake.publish_book("BTCUSDT", NEW_BIDS, NEW_ASKS)   # lost
        await asyncio.sleep(0.15)
        assert not stream.socket.connected
        assert not _stale_in_sync(engine), "book offered as in sync while its stream is down"
        await _until(lambda: stream.socket.connected)
        await _until(lambda: not book.needs_resync, 5.0)
        assert book.best_bid_ticks == make_instrument().price_to_ticks("60000.3")
        await engine.stop_live()


async def test_a_garbled_snapshot_is_retried_not_the_end_of_the_book(fake: FakeBinance) -> None:
    """A gap makes the book resync; the first ``GET /api/v3/depth`` answers HTTP 200 with a body
    that is JSON but not a depth snapshot (``null``). That attempt must count as a failed snapshot
    and be retried; it killed the resync task instead, leaving the book out of sync for good
    (no resync running, and the book drops every diff without asking for another)."""
    async with asyncio.timeout(15):
        engine = await _seeded(fake)
        book = engine.books[V]
        fails = engine._live.stats["snapshot_failures"]
        fake.fail("GET", "/api/v3/depth", 200, None, "null")
        fake.skip_depth_ids("BTCUSDT", 5)
        await fake.publish_book("BTCUSDT", NEW_BIDS, NEW_ASKS)
        await _until(lambda: engine._live.stats["snapshot_failures"] > fails, 5.0)
        await _until(lambda: not book.needs_resync, 5.0)
        assert book.best_bid_ticks == make_instrument().price_to_ticks("60000.3")
        await engine.stop_live()
