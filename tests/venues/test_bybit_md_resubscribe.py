"""A Bybit book resync whose re-subscription Bybit refuses (``success: false``) must not leave the
book out of sync until the next reconnection: the refused subscription is retried with a capped
exponential backoff, logged at WARNING with Bybit's ``ret_msg``; the ``max_refusals``-th refusal in
a row recycles the connection; a snapshot ends the retries; ``close()`` during a backoff returns at
once with no task left. Against the loopback Bybit of ``test_bybit_marketdata`` (which refuses the
subscribe requests ``refuse_nth`` picks). Each test failed before the retries existed (the first two
timed out waiting for the book, the third waiting for the first retry)."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import aiohttp
import pytest
from test_bybit_marketdata import FakeBybitPublic, Script, _d, _inst, _ob, _wait_for

from marketdata.book import L2Book
from marketdata.clock import LiveClock
from marketdata.model import BookDeltas, MarketEvent
from venues.bybit.marketdata import new_book
from venues.bybit.ws_md import BybitMarketDataStream

TOPIC = "orderbook.1.BTCUSDT"


def _script(conn: int, topic: str, nth: int) -> list[str]:
    """First accepted subscription: a snapshot, its delta, then a lost delta (u 102 never sent),
    which makes the client re-subscribe. The next accepted one: a new snapshot and its delta."""
    if nth == 1:
        return [_d(_ob("snapshot", 100, [["27400.0", "1"]], [["27401.0", "1"]])),
                _d(_ob("delta", 101, [["27400.0", "2"]], [])),
                _d(_ob("delta", 103, [["27400.0", "0"]], [["27402.0", "1"]]))]
    return [_d(_ob("snapshot", 200, [["27500.0", "1.5"], ["27499.0", "2"]], [["27501.0", "0.3"]])),
            _d(_ob("delta", 201, [["27499.0", "0"], ["27498.5", "0.0001"]], [["27501.5", "4"]]))]


async def _run_resync(fake: FakeBybitPublic, **kw: object) -> tuple[BybitMarketDataStream, L2Book, list[str]]:
    await fake.start()
    book = new_book(_inst())
    gaps: list[str] = []

    def handler(ev: MarketEvent) -> None:
        if isinstance(ev, BookDeltas):
            book.apply(ev)

    def on_gap(sym: str) -> None:
        gaps.append(sym)
        book.request_resync()

    async with aiohttp.ClientSession() as session:
        md = BybitMarketDataStream(lambda: session, fake.url, [_inst()], handler, LiveClock(),
                                   channels=("orderbook.1",), on_gap=on_gap, **kw)  # type: ignore[arg-type]
        try:
            await md.start()
            await _wait_for(lambda: book.last_update_id == 201)
        finally:
            await md.close()
            await fake.stop()
    return md, book, gaps


def _assert_in_sync_with_the_servers_book(book: L2Book) -> None:
    assert book.bids() == [(275000, 15000), (274985, 1)]
    assert book.asks() == [(275010, 3000), (275015, 40000)]
    assert not book.needs_resync and not book.crossed
    book._check()


async def test_refused_resubscriptions_are_retried_until_the_book_is_in_sync(
        caplog: pytest.LogCaptureFixture) -> None:
    """Bybit refuses the 2nd and 3rd subscribe of the topic (the resync and its first retry): the
    client retries after 0.1 s, then 0.2 s, on the same connection, and the book ends exactly on the
    snapshot of the accepted subscription plus its delta."""
    fake = FakeBybitPublic(_script, refuse_nth=lambda topic, n: n in (2, 3))
    with caplog.at_level(logging.WARNING, logger="venues.bybit.ws_md"):
        md, book, gaps = await _run_resync(fake, retry_backoff_s=0.1, reconnect_max_s=Decimal(1))
    _assert_in_sync_with_the_servers_book(book)
    assert gaps == ["BTCUSDT"]
    subs = [(c, op, a) for c, op, a in fake.requests if op != "ping"]
    assert subs == [(0, "subscribe", [TOPIC]), (0, "unsubscribe", [TOPIC]), (0, "subscribe", [TOPIC]),
                    (0, "subscribe", [TOPIC]), (0, "subscribe", [TOPIC])]
    assert md.socket.connections == 1 and md.socket.refusals == 2 and md.socket.recycles == 0
    refused = [r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING and "refused (Invalid topic: orderbook.1.BTCUSDT)" in r.getMessage()]
    assert len(refused) == 2
    assert "retrying in 0.1 s" in refused[0] and "retrying in 0.2 s" in refused[1]
    assert md.socket.failed == {} and md.socket.retrying == {}


async def test_the_connection_is_recycled_after_max_refusals() -> None:
    """Refused 3 times (max_refusals 2): the second refusal on the first connection recycles it; the
    new connection's subscription is refused once more and retried (the backoff carried on), and
    the accepted one brings the book back in sync."""
    fake = FakeBybitPublic(_script, refuse_nth=lambda topic, n: n in (2, 3, 4))
    md, book, gaps = await _run_resync(fake, retry_backoff_s=0.05, reconnect_max_s=Decimal("0.4"), max_refusals=2)
    _assert_in_sync_with_the_servers_book(book)
    assert gaps == ["BTCUSDT", "BTCUSDT"]   # the lost delta, then the recycled connection
    subs = [(c, op) for c, op, a in fake.requests if op != "ping"]
    assert subs == [(0, "subscribe"), (0, "unsubscribe"), (0, "subscribe"), (0, "subscribe"),
                    (1, "subscribe"), (1, "subscribe")]
    assert md.socket.connections == 2 and md.socket.recycles == 1 and md.socket.refusals == 3


async def test_close_during_the_retry_backoff_returns_at_once_and_leaves_no_task() -> None:
    never: Script = lambda conn, topic, nth: _script(conn, topic, nth) if nth == 1 else []  # noqa: E731
    fake = FakeBybitPublic(never, refuse_nth=lambda topic, n: n >= 2)   # the resync is always refused
    await fake.start()
    try:
        async with aiohttp.ClientSession() as session:
            md = BybitMarketDataStream(lambda: session, fake.url, [_inst()], lambda ev: None, LiveClock(),
                                       channels=("orderbook.1",), retry_backoff_s=0.2, reconnect_max_s=Decimal(30),
                                       max_refusals=10)
            try:
                await md.start()
                # the resync and its first retry refused: the client now waits 0.4 s for the next one
                await _wait_for(lambda: fake.sub_requests.get(TOPIC, 0) >= 3 and bool(md.socket.retrying))
            finally:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                await md.close()
                elapsed = loop.time() - t0
            left = [t for t in asyncio.all_tasks() if t.get_name().startswith("ws")]
            sent = fake.sub_requests[TOPIC]
            await asyncio.sleep(0.6)   # past the retry that was due
    finally:
        await fake.stop()
    assert elapsed < 0.2
    assert left == [] and md.socket._writer_task is None and md.socket.retrying == {}
    assert fake.sub_requests[TOPIC] == sent == 3 and fake.connections == 1
