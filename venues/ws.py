"""A WebSocket kept open on a venue's ``aiohttp`` session: the connection lifecycle every venue
stream shares (Binance user data and market data, Bybit public market data).

One task owned by the client runs the loop: connect (a fresh URL from ``url_factory`` each time),
hand every text frame to a synchronous callback on the loop as it arrives (the decision core is
synchronous; there is no queue in between, so nothing can overflow), and when the connection ends
other than by :meth:`ReconnectingWebSocket.close`, report it (``on_disconnect``: messages are being
lost from then on) and connect again after a capped exponential backoff (0.1 s doubling, reset once
a connection is ready). No transport or callback failure ends the task, and an exception of the
message callback does not even cost the connection (it is logged).

Venue protocols hook in by subclassing: :meth:`~ReconnectingWebSocket._opened` (after each
connection: Binance reconciles there, Bybit subscribes), :meth:`~ReconnectingWebSocket._on_text`
(every text frame; return True when it made the connection ready),
:meth:`~ReconnectingWebSocket._after_ready` and :meth:`~ReconnectingWebSocket._closed` (each
connection's end, before the reconnect)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal

import aiohttp

from marketdata.errors import VenueError

__all__ = ["Hook", "MessageCallback", "ReconnectingWebSocket", "UrlFactory"]

log = logging.getLogger(__name__)

MessageCallback = Callable[[str], None]
UrlFactory = Callable[[], Awaitable[str]]
Hook = Callable[[], Awaitable[object]]


class ReconnectingWebSocket:
    """One WebSocket kept open: ``url_factory`` gives the URL for each (re)connection (a fresh listen
    key for Binance's user stream), ``on_message`` gets every text frame, ``on_connect`` runs after
    each successful reconnection (the Binance adapter reconciles its open orders there; not after
    the first connection), ``on_disconnect`` when an established connection ends other than by
    :meth:`close`; ``scrub`` cleans error texts before they are logged (they may contain the URL,
    i.e. the listen key). ``heartbeat_s``: aiohttp's ping interval (``None`` for venues that want
    their own application-level ping)."""

    ready_text = "WebSocket not connected"
    """What :meth:`start` says when the first connection is not ready in time."""

    def __init__(self, name: str, session_getter: Callable[[], aiohttp.ClientSession], url_factory: UrlFactory,
                 on_message: MessageCallback | None, *, on_connect: Hook | None = None,
                 on_disconnect: Callable[[], None] | None = None,
                 reconnect_max_s: Decimal = Decimal(30), connect_timeout_s: float = 10.0,
                 scrub: Callable[[str], str] | None = None, heartbeat_s: float | None = 30.0,
                 venue: str | None = None) -> None:
        self.name = name
        self._scrub = scrub or (lambda s: s)
        self._session_getter = session_getter
        self._url_factory = url_factory
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._reconnect_max_s = float(reconnect_max_s)
        self._connect_timeout_s = connect_timeout_s
        self._heartbeat_s = heartbeat_s
        self._venue = venue
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._backoff = 0.1
        self.messages = 0
        self.connections = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, connections={self.connections})"

    @property
    def connected(self) -> bool:
        """The current connection is ready (for Bybit: and every subscription answered)."""
        return self._ready.is_set()

    async def start(self, *, wait: bool = True) -> None:
        """Start the task; with ``wait`` return once the first connection is ready, or raise
        :class:`VenueError` after the connect timeout, the task stopped (as by :meth:`close`). A
        :meth:`close` while ``start`` waits wakes it at once: it raises :class:`VenueError`
        ("closed while starting") rather than waiting out the timeout."""
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ws:{self.name}")
        if not wait:
            return
        run = self._task
        # wait for whichever comes first: the ready event, or the end of the task (close() cancels
        # it); the helper waiting on the event is this call's own and never outlives it
        ready = asyncio.get_running_loop().create_task(self._ready.wait(), name=f"ws-start:{self.name}")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await asyncio.wait((ready, run), return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            # the caller gets an error and owns nothing: the task is stopped, not left
            # reconnecting in the background until someone calls close()
            await self.close()
            raise VenueError(f"{self.name}: {self.ready_text} after {self._connect_timeout_s} s",
                             venue=self._venue) from None
        finally:
            became_ready = ready.done() and not ready.cancelled()
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
        if not became_ready:
            # the task ended first: close() was called meanwhile (and owns the clean-up)
            raise VenueError(f"{self.name}: closed while starting ({self.ready_text})", venue=self._venue)

    async def reconnect(self) -> None:
        """Drop the current connection: the task connects again, as after a drop by the venue."""
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
        self._ready.clear()

    # ------------------------------------------------------------------ hooks
    async def _opened(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """A connection is up: run ``on_connect`` after a reconnection, then it is ready."""
        if self._on_connect is not None and self.connections > 1:
            await self._on_connect()
        self._set_ready()

    def _on_text(self, data: str) -> bool:
        """One text frame; True when it made the connection ready (then :meth:`_after_ready`).
        By default handed to ``on_message`` (a subclass that parses its frames passes ``None``); an
        exception of ``on_message`` is logged and does not cost the connection."""
        if self._on_message is not None:
            try:
                self._on_message(data)
            except Exception:  # the owner's failure must not drop the connection (and its frames)
                log.exception("%s: message handler failed on: %s", self.name, self._scrub(data[:2000]))
        return False

    async def _after_ready(self) -> None:
        """The connection became ready on a frame (see :meth:`_on_text`)."""

    async def _closed(self) -> None:
        """The current connection ended (any way); per-connection tasks stop here."""

    def _set_ready(self) -> None:
        self._backoff = 0.1
        self._ready.set()

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        self._backoff = 0.1
        while not self._closing:
            up = False   # this round's connection was established (its end loses messages)
            try:
                url = await self._url_factory()
                async with self._session_getter().ws_connect(url, heartbeat=self._heartbeat_s, autoping=True) as ws:
                    self._ws = ws
                    up = True
                    self.connections += 1
                    log.info("%s: connected (%d)", self.name, self.connections)
                    try:
                        await self._opened(ws)
                        async for msg in ws:
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                self.messages += 1
                                if self._on_text(msg.data):
                                    await self._after_ready()
                            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                                break
                    finally:
                        await self._closed()
                self._ready.clear()
                self._ws = None
                if not self._closing:
                    self._disconnected()
                    log.warning("%s: connection closed by the venue; reconnecting in %.1f s", self.name,
                                self._backoff)
                    await self._sleep_backoff()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the task must survive any transport or callback failure
                self._ready.clear()
                self._ws = None
                if self._closing:
                    return
                if up:
                    self._disconnected()
                log.warning("%s: %s: %s; reconnecting in %.1f s", self.name, type(e).__name__,
                            self._scrub(str(e)), self._backoff)
                await self._sleep_backoff()

    async def _sleep_backoff(self) -> None:
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, self._reconnect_max_s)

    def _disconnected(self) -> None:
        if self._on_disconnect is not None:
            try:
                self._on_disconnect()
            except Exception:  # the task must survive its owner's failure
                log.exception("%s: disconnect hook failed", self.name)
