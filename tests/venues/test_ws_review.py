"""Review of the shared reconnecting WebSocket (venues/ws.py), its Bybit subclass and the Bybit
orderbook parser: one test per bug found, each failing before its fix. Loopback servers only."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web

from marketdata.clock import SimClock
from marketdata.errors import VenueError
from marketdata.model import BookDeltas, Instrument, InstrumentKind, MarketEvent, Symbol, VenueId
from venues.bybit.marketdata import new_book, parse_orderbook
from venues.bybit.ws_md import BybitMarketDataStream, BybitPublicWebSocket
from venues.ws import ReconnectingWebSocket


def _inst() -> Instrument:
    return Instrument(venue=VenueId("bybit-spot"), symbol=Symbol("BTC-USDT"), venue_symbol="BTCUSDT", base="BTC",
                      quote="USDT", tick_size=Decimal("0.01"), lot_size=Decimal("0.000001"),
                      kind=InstrumentKind.SPOT)


def _ob(kind: str, u: int, bids: list[list[str]], asks: list[list[str]]) -> str:
    return json.dumps({"topic": "orderbook.50.BTCUSDT", "type": kind, "ts": 1709891680000,
                       "data": {"s": "BTCUSDT", "b": bids, "a": asks, "u": u, "seq": 1000 + u}})


async def _wait_for(cond: Callable[[], bool], limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 (waiting for a condition the server drives)
            await asyncio.sleep(0.01)


class Loopback:
    """An aiohttp WebSocket server on 127.0.0.1. Plain mode sends ``frames`` on each connection and
    stays open; Bybit mode (``bybit=True``) acks every subscribe with its req_id and answers pings."""

    def __init__(self, frames: list[str] | None = None, *, bybit: bool = False) -> None:
        self.frames = frames or []
        self.bybit = bybit
        self.connections = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/ws"

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        for f in self.frames:
            await ws.send_str(f)
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT or not self.bybit:
                continue
            req = json.loads(msg.data)
            if req["op"] == "ping":
                await ws.send_str(json.dumps({"success": True, "ret_msg": "pong", "conn_id": "c",
                                              "req_id": req["req_id"], "op": "ping"}))
            else:
                await ws.send_str(json.dumps({"success": True, "ret_msg": "", "conn_id": "c",
                                              "req_id": req["req_id"], "op": req["op"]}))
        return ws


async def test_a_failing_message_callback_does_not_cost_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    """Failed before: an exception of ``on_message`` (e.g. BinanceMarketDataStream's handler, which
    it does not catch) escaped the read loop, so the connection was dropped and reopened, losing the
    frames behind it; a handler failing on every frame made a reconnect storm (a Binance connection
    is ready at the handshake, which resets the backoff to 0.1 s). Now it is logged and the
    connection keeps going."""
    server = Loopback(["a", "b", "c"])
    await server.start()
    seen: list[str] = []

    def on_message(text: str) -> None:
        seen.append(text)
        if text == "a":
            raise RuntimeError("handler bug")

    try:
        async with aiohttp.ClientSession() as session:
            ws = ReconnectingWebSocket("t", lambda: session, lambda: _const(server.url), on_message,
                                       reconnect_max_s=Decimal("0.1"))
            try:
                with caplog.at_level(logging.ERROR, logger="venues.ws"):
                    await ws.start()
                    await _wait_for(lambda: len(seen) >= 3)
            finally:
                await ws.close()
    finally:
        await server.stop()
    assert seen[:3] == ["a", "b", "c"] and ws.connections == 1 and server.connections == 1
    assert any("message handler failed" in r.getMessage() for r in caplog.records)


async def _const(url: str) -> str:
    return url


async def test_bybit_on_connect_failing_does_not_reset_the_backoff() -> None:
    """Failed before: Bybit's connection was marked ready (which resets the backoff to 0.1 s)
    *before* ``on_connect`` ran, so an ``on_connect`` that fails on every connection reconnected
    every 0.1 s forever (a reconnect storm). Now ``on_connect`` runs once the subscriptions are all
    answered and the connection is ready only after it succeeded, as for Binance: the backoff keeps
    doubling while it fails."""
    server = Loopback(bybit=True)
    await server.start()
    calls = 0
    sleeps: list[float] = []

    async def on_connect() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("owner hook failed")

    try:
        async with aiohttp.ClientSession() as session:
            ws = BybitPublicWebSocket("t", lambda: session, server.url, ["orderbook.50.BTCUSDT"],
                                      lambda raw, msg: None, on_connect=on_connect, reconnect_max_s=Decimal(30))

            async def record_backoff() -> None:   # the delay it would sleep, without sleeping
                sleeps.append(ws._backoff)
                ws._backoff = min(ws._backoff * 2, ws._reconnect_max_s)
                await asyncio.sleep(0)

            ws._sleep_backoff = record_backoff  # type: ignore[method-assign]
            try:
                await ws.start(wait=False)
                await _wait_for(lambda: len(sleeps) >= 4)
            finally:
                await ws.close()
    finally:
        await server.stop()
    assert calls >= 4 and not ws.connected
    assert sleeps[:4] == [0.1, 0.2, 0.4, 0.8]


def test_a_delta_with_u_1_is_a_fresh_snapshot() -> None:
    """Failed before: Bybit restarts ``u`` at 1 after a service restart and that message is a full
    book (docs: "u=1 ... is a snapshot data ... overwrite your local orderbook"). One typed
    ``delta`` was parsed as a delta: stale for the stream and the book (u <= last), as were all
    that followed until ``u`` passed the old chain, which the book then took as contiguous onto its
    old levels. Now ``u == 1`` always parses as a snapshot (no delta can carry u = 1: the first
    delta after a snapshot has u >= 2)."""
    inst = _inst()
    book = new_book(inst)
    events: list[MarketEvent] = []
    md = BybitMarketDataStream(lambda: None, "wss://stream.bybit.com", [inst], events.append,  # type: ignore[arg-type, return-value]
                               SimClock(1), channels=("orderbook.50",), auto_resync=False)

    def feed(raw: str) -> None:
        md.on_message(raw)
        ev = events[-1]
        assert isinstance(ev, BookDeltas)
        book.apply(ev)

    feed(_ob("snapshot", 500, [["100.00", "1"], ["99.00", "2"]], [["101.00", "1"]]))
    feed(_ob("delta", 501, [["99.00", "0"]], []))
    assert book.bids() == [(10000, 1_000_000)]
    feed(_ob("delta", 1, [["90.00", "5"]], [["91.00", "4"]]))     # the venue restarted
    restart = events[-1]
    assert isinstance(restart, BookDeltas) and restart.is_snapshot
    assert book.bids() == [(9000, 5_000_000)] and book.asks() == [(9100, 4_000_000)]
    feed(_ob("delta", 2, [["90.00", "0"], ["89.50", "1"]], []))
    assert book.bids() == [(8950, 1_000_000)] and book.last_update_id == 2
    assert md.stats["resets"] == 1 and md.stats["gaps"] == 0 and not book.needs_resync
    assert parse_orderbook(json.loads(_ob("delta", 1, [], [])), inst, 0).is_snapshot


async def test_a_start_that_times_out_leaves_no_task_reconnecting() -> None:
    """Failed before (flagged by this review): ``start(wait=True)`` raised after the connect
    timeout but left its task reconnecting in the background (against a server that never
    answers the upgrade here) until someone called ``close()``. The task is now stopped with the
    error: the caller owns nothing."""
    async def never_upgrades(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1.0)   # longer than the client's connect timeout
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/ws", never_upgrades)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            async def url() -> str:
                return f"http://127.0.0.1:{port}/ws"

            ws = ReconnectingWebSocket("t", lambda: session, url, lambda _m: None, connect_timeout_s=0.2)
            with pytest.raises(VenueError, match=r"not connected after 0\.2 s"):
                await ws.start()
            assert ws._task is None and not ws.connected
    finally:
        await runner.cleanup()
