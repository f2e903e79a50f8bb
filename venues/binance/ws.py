"""Binance spot WebSocket clients on the venue's ``aiohttp`` session: the user-data stream
(listen key) and the market-data combined stream. Both reconnect with capped exponential backoff;
each runs as one task owned by its client and stopped by :meth:`close`.

Messages are handed to a synchronous callback on the loop as they arrive (the decision core is
synchronous); there is no queue in between, so nothing can overflow. A message that cannot be
parsed is logged with its raw text by the callback's owner and dropped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

import aiohttp

from marketdata.clock import Clock
from marketdata.errors import VenueError
from marketdata.model import Instrument, MarketEvent
from venues.binance.parsers import parse_book_ticker, parse_depth_diff, parse_trade

__all__ = ["BinanceMarketDataStream", "ReconnectingWebSocket"]

log = logging.getLogger(__name__)

MessageCallback = Callable[[str], None]
UrlFactory = Callable[[], Awaitable[str]]
Hook = Callable[[], Awaitable[object]]


class ReconnectingWebSocket:
    """One WebSocket kept open: ``url_factory`` gives the URL for each (re)connection (a fresh listen
    key for the user stream), ``on_message`` gets every text frame, ``on_connect`` runs after each
    successful (re)connection (the adapter reconciles its open orders there), ``on_disconnect``
    when an established connection ends other than by :meth:`close` (messages are being lost from
    then on); ``scrub`` cleans error texts before they are logged (they may contain the URL, i.e.
    the listen key)."""

    def __init__(self, name: str, session_getter: Callable[[], aiohttp.ClientSession], url_factory: UrlFactory,
                 on_message: MessageCallback, *, on_connect: Hook | None = None,
                 on_disconnect: Callable[[], None] | None = None,
                 reconnect_max_s: Decimal = Decimal(30), connect_timeout_s: float = 10.0,
                 scrub: Callable[[str], str] | None = None) -> None:
        self.name = name
        self._scrub = scrub or (lambda s: s)
        self._session_getter = session_getter
        self._url_factory = url_factory
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._reconnect_max_s = float(reconnect_max_s)
        self._connect_timeout_s = connect_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self.messages = 0
        self.connections = 0

    def __repr__(self) -> str:
        return f"ReconnectingWebSocket({self.name!r}, connections={self.connections})"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, *, wait: bool = True) -> None:
        """Start the task; with ``wait`` return once the first connection is up (or raise
        :class:`VenueError` after the connect timeout)."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ws:{self.name}")
        if wait:
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    await self._connected.wait()
            except TimeoutError:
                raise VenueError(f"{self.name}: WebSocket not connected after {self._connect_timeout_s} s") from None

    async def reconnect(self) -> None:
        """Drop the current connection: the task connects again (a fresh URL from
        ``url_factory``, then ``on_connect``), as after a drop by the venue."""
        ws = self._ws
        if ws is not None and not ws.closed:
            await ws.close()

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._connected.clear()

    async def _run(self) -> None:
        backoff = 0.1
        while not self._closing:
            up = False   # this round's connection was established (its end loses messages)
            try:
                url = await self._url_factory()
                async with self._session_getter().ws_connect(url, heartbeat=30.0, autoping=True) as ws:
                    self._ws = ws
                    up = True
                    self.connections += 1
                    backoff = 0.1
                    log.info("%s: connected (%d)", self.name, self.connections)
                    if self._on_connect is not None and self.connections > 1:
                        await self._on_connect()
                    self._connected.set()
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self.messages += 1
                            self._on_message(msg.data)
                        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
                self._connected.clear()
                self._ws = None
                if not self._closing:
                    self._disconnected()
                    log.warning("%s: connection closed by the venue; reconnecting in %.1f s", self.name, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._reconnect_max_s)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the task must survive any transport or callback failure
                self._connected.clear()
                self._ws = None
                if self._closing:
                    return
                if up:
                    self._disconnected()
                log.warning("%s: %s: %s; reconnecting in %.1f s", self.name, type(e).__name__,
                            self._scrub(str(e)), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._reconnect_max_s)

    def _disconnected(self) -> None:
        if self._on_disconnect is not None:
            try:
                self._on_disconnect()
            except Exception:  # the task must survive its owner's failure
                log.exception("%s: disconnect hook failed", self.name)


class BinanceMarketDataStream:
    """Combined market-data stream (``/stream?streams=btcusdt@depth@100ms/btcusdt@trade/...``)
    parsed to :class:`BookDeltas` / :class:`TradeTick` / :class:`QuoteTick` and handed to
    ``handler`` on the loop.

    Depth diffs are checked against Binance spot's chain (``U == previous u + 1``); a break, a
    dropped connection and the reconnection after it (both lose messages, even of a symbol that
    sent no diff yet) call ``on_gap(venue_symbol)`` for the symbols concerned. The diffs keep being
    delivered: the book's own sequence rule refuses them until the owner has re-seeded it from a
    REST snapshot (GET /api/v3/depth, :func:`~venues.binance.parsers.parse_depth_snapshot`). This
    client does not fetch that snapshot itself."""

    def __init__(self, session_getter: Callable[[], aiohttp.ClientSession], ws_url: str,
                 instruments: list[Instrument], handler: Callable[[MarketEvent], None], clock: Clock, *,
                 channels: tuple[str, ...] = ("depth@100ms", "trade", "bookTicker"),
                 on_gap: Callable[[str], None] | None = None, reconnect_max_s: Decimal = Decimal(30)) -> None:
        self._insts = {i.venue_symbol.lower(): i for i in instruments}
        self._handler = handler
        self._clock = clock
        self._on_gap = on_gap
        self._last_u: dict[str, int] = {}
        streams = "/".join(f"{s}@{c}" for s in self._insts for c in channels)
        self.url = f"{ws_url}/stream?streams={streams}"
        self.stats = {"messages": 0, "garbled": 0, "gaps": 0}
        self._ws = ReconnectingWebSocket(f"md:{','.join(self._insts)}", session_getter, self._url,
                                         self.on_message, on_connect=self._reconnected,
                                         on_disconnect=self._dropped, reconnect_max_s=reconnect_max_s)

    async def _url(self) -> str:
        return self.url

    async def _reconnected(self) -> None:
        # every symbol, not only those a diff was seen for: diffs of a quiet book may have been
        # lost while the socket was down, and the book would otherwise keep its old snapshot
        for sym in self._insts:
            self._gap(sym, "reconnected")
        self._last_u.clear()

    def _dropped(self) -> None:
        # the connection ended: diffs are being lost from now on, every book is out of sync
        for sym in self._insts:
            self._gap(sym, "disconnected")
        self._last_u.clear()

    def _gap(self, venue_symbol: str, why: str) -> None:
        self.stats["gaps"] += 1
        log.warning("market data %s: depth chain broken (%s); the book needs a snapshot", venue_symbol, why)
        if self._on_gap is not None:
            self._on_gap(venue_symbol.upper())

    @property
    def socket(self) -> ReconnectingWebSocket:
        return self._ws

    async def start(self, *, wait: bool = True) -> None:
        await self._ws.start(wait=wait)

    async def close(self) -> None:
        await self._ws.close()

    def on_message(self, raw: str) -> None:
        """One combined-stream frame ``{"stream": "<symbol>@<channel>", "data": {...}}``; never raises."""
        try:
            msg = json.loads(raw)
            stream = msg["stream"]
            data = msg["data"]
            sym, _, channel = stream.partition("@")
            inst = self._insts[sym]
            now = self._clock.now_ns()
            event: MarketEvent
            if channel.startswith("depth"):
                d = parse_depth_diff(data, inst, now)
                last = self._last_u.get(sym)
                if last is not None and d.first_update_id != last + 1:
                    self._gap(sym, f"U={d.first_update_id} after u={last}")
                self._last_u[sym] = d.last_update_id
                event = d
            elif channel == "trade":
                event = parse_trade(data, inst, now)
            elif channel == "bookTicker":
                event = parse_book_ticker(data, inst, now)
            else:
                log.debug("market data: stream %s ignored", stream)
                return
        except Exception as e:  # a bad message must never stop the stream
            self.stats["garbled"] += 1
            log.warning("market data: garbled message (%s: %s): %s", type(e).__name__, e, raw[:2000])
            return
        self.stats["messages"] += 1
        self._handler(event)
