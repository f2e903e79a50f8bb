"""Bybit v5 spot public market-data WebSocket client (``wss://stream.bybit.com/v5/public/spot``) on
the venue's ``aiohttp`` session.

:class:`BybitPublicWebSocket` is the transport: one connection kept open (the shared lifecycle of
:mod:`venues.ws`: one task owned by the client, stopped by :meth:`close`, capped exponential backoff
between attempts), the topics subscribed on every (re)connection with each request's ack checked
(a refused subscription retried with a capped exponential backoff, the connection recycled after
``max_refusals`` refusals in a row), ``{"op": "ping"}`` every 20 s (Bybit drops connections that
stay silent) with a missing pong taken as a dead connection.

:class:`BybitMarketDataStream` parses the pushes (:mod:`venues.bybit.marketdata`) to
:class:`~marketdata.model.BookDeltas` / :class:`~marketdata.model.TradeTick` and hands them to a
synchronous callback on the loop as they arrive; there is no queue in between, so nothing can
overflow. Its interface mirrors :class:`venues.binance.ws.BinanceMarketDataStream`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp

from marketdata.clock import Clock
from marketdata.errors import ConfigError, VenueError
from marketdata.model import Instrument, MarketEvent
from venues.bybit.marketdata import (
    SPOT_ORDERBOOK_DEPTHS,
    is_pong,
    orderbook_topic,
    parse_orderbook,
    parse_public_trades,
    parse_subscription_response,
    split_frame,
    split_topic,
    trade_topic,
)
from venues.ws import Hook, ReconnectingWebSocket

__all__ = ["SPOT_PUBLIC_PATH", "BybitMarketDataStream", "BybitPublicWebSocket"]

log = logging.getLogger(__name__)

SPOT_PUBLIC_PATH = "/v5/public/spot"
MAX_ARGS_PER_REQUEST = 10
"""Bybit spot accepts at most 10 topics in one subscribe request."""

TopicCallback = Callable[[str, Any], None]
"""``(raw_text, decoded)``; ``decoded`` is ``None`` when the frame is not a JSON object."""


class BybitPublicWebSocket(ReconnectingWebSocket):
    """One public WebSocket kept open with ``topics`` subscribed (the lifecycle of
    :class:`venues.ws.ReconnectingWebSocket`; aiohttp's own heartbeat off: Bybit wants its own
    ``{"op": "ping"}``, sent by a writer task per connection).

    Topic pushes (frames with a ``topic``) go to ``on_message(raw, decoded)``, and so do frames that
    are not JSON objects (``decoded`` ``None``); ``op`` answers (subscription acks, pongs) are handled
    here. The connection is ready once its subscriptions were all answered and ``on_connect`` (run
    then, after every connection) returned; ``on_disconnect`` when an established connection ends
    other than by :meth:`close` (messages are being lost from then on).

    A subscription Bybit refuses (``success: false``) is logged at WARNING with its ``ret_msg``, kept
    in :attr:`failed` and sent again (subscribe only) after a backoff per topic: ``retry_backoff_s``
    doubling up to ``reconnect_max_s``. The backoff of a topic survives reconnections and is reset by
    an accepted subscription or by :meth:`synced` (the stream calls it on each orderbook snapshot).
    The ``max_refusals``-th refusal in a row of one topic on a connection recycles the connection
    instead (the reconnection subscribes every topic). A subscription that is not answered within
    ``ack_timeout_s`` recycles the connection too. The retries are timers of the connection's writer
    task: they end with the connection and with :meth:`close`."""

    ready_text = "not connected and subscribed"

    def __init__(self, name: str, session_getter: Callable[[], aiohttp.ClientSession], url: str,
                 topics: list[str], on_message: TopicCallback, *, on_connect: Hook | None = None,
                 on_disconnect: Callable[[], None] | None = None, ping_interval_s: float = 20.0,
                 ack_timeout_s: float = 10.0, reconnect_max_s: Decimal = Decimal(30),
                 connect_timeout_s: float = 10.0, retry_backoff_s: float = 0.5, max_refusals: int = 3) -> None:
        if ping_interval_s <= 0 or ack_timeout_s <= 0 or retry_backoff_s <= 0:
            raise ValueError("ping_interval_s, ack_timeout_s and retry_backoff_s must be > 0")
        if max_refusals < 1:
            raise ValueError("max_refusals must be >= 1")
        super().__init__(name, session_getter, self._static_url, None, on_connect=on_connect,
                         on_disconnect=on_disconnect, reconnect_max_s=reconnect_max_s,
                         connect_timeout_s=connect_timeout_s, heartbeat_s=None, venue="bybit")
        self.url = url
        self.topics = list(topics)
        self._on_topic = on_message
        self._ping_interval_s = ping_interval_s
        self._ack_timeout_s = ack_timeout_s
        self._wakeup = asyncio.Event()     # the writer has resubscriptions to send
        self._resubscribe: list[str] = []
        self._pending: dict[str, list[str]] = {}   # req_id -> topics awaiting an ack
        self._req_ids = itertools.count(1)
        self._awaiting_pong = False
        self._writer_task: asyncio.Task[None] | None = None
        self._retry_backoff_s = retry_backoff_s
        self._max_refusals = max_refusals
        self._retry_at: dict[str, float] = {}     # topic -> loop time of its next subscribe (this connection)
        self._retry_delay: dict[str, float] = {}  # topic -> backoff before its next retry (across connections)
        self._refusals: dict[str, int] = {}       # topic -> refusals in a row on this connection
        self._recycle: list[str] = []             # topics refused max_refusals times: reconnect
        self.subscribed: set[str] = set()
        self.failed: dict[str, str] = {}
        """Topic -> Bybit's ``ret_msg`` for subscriptions refused on the current connection (and not
        accepted since)."""
        self.pings = 0
        self.pongs = 0
        self.refusals = 0
        """Subscriptions refused (one per topic and answer), over all connections."""
        self.recycles = 0
        """Connections recycled because a topic was refused ``max_refusals`` times in a row."""

    async def _static_url(self) -> str:
        return self.url

    async def start(self, *, wait: bool = True) -> None:
        """Start the task; with ``wait`` return once the first connection's subscriptions are all
        acknowledged. Raises :class:`VenueError` after the connect timeout, or when Bybit refused a
        subscription (the task keeps running for the topics it accepted)."""
        await super().start(wait=wait)
        if wait and self.failed:
            topic, text = next(iter(self.failed.items()))
            raise VenueError(f"{self.name}: subscription to {sorted(self.failed)} refused", venue="bybit",
                             venue_text=f"{topic}: {text}")

    def resubscribe(self, topics: list[str]) -> None:
        """Unsubscribe and subscribe ``topics`` again on the live connection, which makes Bybit push
        a fresh orderbook snapshot. Does nothing while disconnected (the next connection subscribes
        everything anyway). Safe to call from a synchronous callback."""
        if self._ws is None or self._ws.closed:
            return
        for t in topics:
            if t not in self._resubscribe:
                self._resubscribe.append(t)
        self._wakeup.set()

    @property
    def retrying(self) -> dict[str, float]:
        """Topic -> loop time of its scheduled subscribe retry (a copy)."""
        return dict(self._retry_at)

    def synced(self, topic: str) -> None:
        """``topic`` delivered a snapshot: its retries stop and its backoff starts again from
        ``retry_backoff_s``."""
        if topic in self._retry_delay or topic in self._retry_at or topic in self._refusals:
            self._retry_at.pop(topic, None)
            self._retry_delay.pop(topic, None)
            self._refusals.pop(topic, None)
            self.failed.pop(topic, None)

    async def close(self) -> None:
        """Stop the task; the writer (and with it any scheduled retry) is cancelled with the
        connection."""
        await super().close()
        self._retry_at.clear()
        self._retry_delay.clear()
        self._refusals.clear()
        self._recycle.clear()

    # ------------------------------------------------------------------ connection hooks
    async def _opened(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._reset_connection_state()
        await self._subscribe(ws, self.topics)
        self._writer_task = asyncio.get_running_loop().create_task(self._writer(ws), name=f"ws-writer:{self.name}")

    def _on_text(self, data: str) -> bool:
        answered = self._dispatch(data)
        return answered and not self._pending and not self._ready.is_set()

    async def _after_ready(self) -> None:
        log.info("%s: subscribed to %d topic(s)", self.name, len(self.subscribed))
        # on_connect before ready (as for Binance): if it fails, the connection is dropped without
        # resetting the backoff, so a hook that keeps failing does not reconnect every 0.1 s
        if self._on_connect is not None:
            await self._on_connect()
        self._set_ready()

    async def _closed(self) -> None:
        writer, self._writer_task = self._writer_task, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    def _reset_connection_state(self) -> None:
        self._pending.clear()
        self._resubscribe.clear()
        self._wakeup.clear()
        self.subscribed.clear()
        self.failed.clear()
        self._retry_at.clear()
        self._refusals.clear()
        self._recycle.clear()
        self._awaiting_pong = False

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, op: str, args: list[str] | None = None) -> str:
        req_id = f"{op}-{next(self._req_ids)}"
        body: dict[str, Any] = {"req_id": req_id, "op": op}
        if args is not None:
            body["args"] = args
        await ws.send_str(json.dumps(body))
        return req_id

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse, topics: list[str]) -> None:
        for i in range(0, len(topics), MAX_ARGS_PER_REQUEST):
            chunk = topics[i:i + MAX_ARGS_PER_REQUEST]
            # registered before the send: the ack may be read before send_str returns
            req_id = f"subscribe-{next(self._req_ids)}"
            self._pending[req_id] = chunk
            await ws.send_str(json.dumps({"req_id": req_id, "op": "subscribe", "args": chunk}))

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Pings every ``ping_interval_s`` (a ping still unanswered at the next one closes the
        connection), sends resubscriptions and the retries of refused subscriptions when due,
        recycles the connection when a topic was refused too often, and gives up on acks that never
        come."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self._ping_interval_s
        ack_deadline = loop.time() + self._ack_timeout_s
        while not ws.closed:
            next_retry = min(self._retry_at.values(), default=next_ping)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(next_ping, ack_deadline, next_retry) - loop.time())):
                    await self._wakeup.wait()
            if self._recycle:
                log.warning("%s: subscription to %s refused %d times in a row; reconnecting", self.name,
                            sorted(self._recycle), self._max_refusals)
                self.recycles += 1
                await ws.close()
                return
            if self._wakeup.is_set():
                self._wakeup.clear()
                topics, self._resubscribe = self._resubscribe, []
                if topics:
                    log.info("%s: resubscribing %s for a fresh snapshot", self.name, topics)
                    for t in topics:
                        self.subscribed.discard(t)
                        self._retry_at.pop(t, None)   # superseded by this subscription
                    await self._send(ws, "unsubscribe", topics)
                    await self._subscribe(ws, topics)
                    ack_deadline = loop.time() + self._ack_timeout_s
            now = loop.time()
            due = [t for t, at in self._retry_at.items() if at <= now]
            if due:
                for t in due:
                    del self._retry_at[t]
                log.info("%s: retrying the subscription to %s", self.name, due)
                await self._subscribe(ws, due)
                ack_deadline = loop.time() + self._ack_timeout_s
                now = loop.time()
            if self._pending and now >= ack_deadline:
                waiting = sorted(t for ts in self._pending.values() for t in ts)
                log.warning("%s: no subscription ack for %s after %.1f s; reconnecting", self.name, waiting,
                            self._ack_timeout_s)
                await ws.close()
                return
            if not self._pending:
                ack_deadline = now + 3600.0
            if now >= next_ping:
                if self._awaiting_pong:
                    log.warning("%s: no pong within %.1f s; reconnecting", self.name, self._ping_interval_s)
                    await ws.close()
                    return
                self._awaiting_pong = True
                self.pings += 1
                await self._send(ws, "ping")
                next_ping = now + self._ping_interval_s

    def _dispatch(self, raw: str) -> bool:
        """Handle one text frame; ``True`` if it was a subscription answer."""
        msg, push = split_frame(raw)
        if push or msg is None:
            self._deliver(raw, msg)
            return False
        if is_pong(msg):
            self.pongs += 1
            self._awaiting_pong = False
            return False
        if "op" in msg and "success" in msg:
            try:
                resp = parse_subscription_response(msg)
            except (KeyError, TypeError, ValueError):
                self._deliver(raw, None)
                return False
            return self._answered(resp.op, resp.success, resp.ret_msg, resp.req_id)
        log.debug("%s: frame ignored: %s", self.name, raw[:500])
        return False

    def _answered(self, op: str, success: bool, ret_msg: str, req_id: str) -> bool:
        if op == "unsubscribe":
            if not success:
                log.info("%s: unsubscribe refused (%s)", self.name, ret_msg)
            return False
        if op != "subscribe":
            log.debug("%s: answer to %s ignored", self.name, op)
            return False
        # Bybit omits req_id in some refusals: then the oldest pending request is the one answered
        key = req_id if req_id in self._pending else next(iter(self._pending), None)
        if key is None:
            log.warning("%s: subscription answer for no pending request (req_id=%r, %s)", self.name, req_id,
                        ret_msg)
            return False
        topics = self._pending.pop(key)
        if success:
            self.subscribed.update(topics)
            for t in topics:
                self.failed.pop(t, None)
                self._refusals.pop(t, None)
                self._retry_delay.pop(t, None)
        else:
            self._refused(topics, ret_msg)
        return True

    def _refused(self, topics: list[str], ret_msg: str) -> None:
        """Bybit refused a subscription: schedule its retry, or the recycling of the connection on
        the ``max_refusals``-th refusal in a row; the writer does either (woken here)."""
        now = asyncio.get_running_loop().time()
        cap = self._reconnect_max_s
        delays: list[float] = []
        for t in topics:
            self.failed[t] = ret_msg
            self.refusals += 1
            n = self._refusals[t] = self._refusals.get(t, 0) + 1
            if n >= self._max_refusals:
                self._retry_at.pop(t, None)
                if t not in self._recycle:
                    self._recycle.append(t)
                continue
            delay = min(self._retry_delay.get(t, self._retry_backoff_s), cap)
            self._retry_delay[t] = min(delay * 2, cap)
            self._retry_at[t] = now + delay
            delays.append(delay)
        if delays:
            log.warning("%s: subscription to %s refused (%s); retrying in %.1f s", self.name, topics, ret_msg,
                        min(delays))
        else:
            log.warning("%s: subscription to %s refused (%s)", self.name, topics, ret_msg)
        self._wakeup.set()

    def _deliver(self, raw: str, msg: Any) -> None:
        try:
            self._on_topic(raw, msg)
        except Exception:  # the owner's failure must not cost the connection
            log.exception("%s: message handler failed on: %s", self.name, raw[:2000])


def _parse_channels(channels: tuple[str, ...]) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for c in channels:
        kind, _, depth = c.partition(".")
        if kind == "publicTrade" and not depth:
            out.append(("publicTrade", None))
        elif kind == "orderbook" and depth.isdigit() and int(depth) in SPOT_ORDERBOOK_DEPTHS:
            out.append(("orderbook", int(depth)))
        else:
            raise ConfigError(f"unknown Bybit spot channel {c!r}", key="channels",
                              allowed=", ".join([*(f"orderbook.{d}" for d in SPOT_ORDERBOOK_DEPTHS), "publicTrade"]))
    if sum(1 for k, _ in out if k == "orderbook") > 1:
        raise ConfigError("one orderbook depth per stream (each depth is its own sequence)", key="channels")
    return out


class BybitMarketDataStream:
    """Public spot stream (``orderbook.{depth}.{symbol}``, ``publicTrade.{symbol}``) parsed to
    :class:`BookDeltas` / :class:`TradeTick` and handed to ``handler`` on the loop.

    Orderbook deltas are checked against Bybit's chain (``u == previous u + 1``). A break calls
    ``on_gap(venue_symbol)`` and, with ``auto_resync``, re-subscribes that symbol's book so Bybit
    pushes a fresh snapshot in band; the deltas keep being delivered, and the book's own sequence
    rule (:data:`~venues.bybit.marketdata.BYBIT_SEQUENCE_RULE`) refuses them until that snapshot.
    A re-subscription Bybit refuses is retried by the socket (``retry_backoff_s`` doubling up to
    ``reconnect_max_s``; the ``max_refusals``-th refusal in a row recycles the connection) until a
    snapshot of the topic arrives, which stops the retries.
    A dropped connection calls ``on_gap`` for every symbol with a book (messages are lost until the
    reconnection, whose subscriptions bring a new snapshot each). A snapshot arriving mid-stream is
    delivered like any other: it replaces the book; one whose ``u`` went backwards (Bybit restarted
    its service) is logged and counted in ``stats["resets"]``. A frame that cannot be parsed is
    logged with its raw text, counted in ``stats["garbled"]`` and skipped; the chain state is only
    updated by messages that parsed."""

    def __init__(self, session_getter: Callable[[], aiohttp.ClientSession], ws_url: str,
                 instruments: list[Instrument], handler: Callable[[MarketEvent], None], clock: Clock, *,
                 channels: tuple[str, ...] = ("orderbook.50", "publicTrade"),
                 on_gap: Callable[[str], None] | None = None, reconnect_max_s: Decimal = Decimal(30),
                 ping_interval_s: float = 20.0, ack_timeout_s: float = 10.0, auto_resync: bool = True,
                 connect_timeout_s: float = 10.0, retry_backoff_s: float = 0.5, max_refusals: int = 3) -> None:
        self._insts = {i.venue_symbol: i for i in instruments}
        self._handler = handler
        self._clock = clock
        self._on_gap = on_gap
        self._auto_resync = auto_resync
        chans = _parse_channels(channels)
        self._depth = next((d for k, d in chans if k == "orderbook"), None)
        self._last_u: dict[str, int] = {}
        topics: list[str] = []
        for sym in self._insts:
            for _kind, depth in chans:
                topics.append(orderbook_topic(depth, sym) if depth is not None else trade_topic(sym))
        base = ws_url.rstrip("/")
        self.url = base if base.endswith(SPOT_PUBLIC_PATH) else base + SPOT_PUBLIC_PATH
        self.stats = {"messages": 0, "garbled": 0, "gaps": 0, "snapshots": 0, "resets": 0}
        self._ws = BybitPublicWebSocket(f"bybit-md:{','.join(self._insts)}", session_getter, self.url, topics,
                                        self.on_message, on_disconnect=self._dropped,
                                        ping_interval_s=ping_interval_s, ack_timeout_s=ack_timeout_s,
                                        reconnect_max_s=reconnect_max_s, connect_timeout_s=connect_timeout_s,
                                        retry_backoff_s=retry_backoff_s, max_refusals=max_refusals)

    @property
    def socket(self) -> BybitPublicWebSocket:
        return self._ws

    async def start(self, *, wait: bool = True) -> None:
        await self._ws.start(wait=wait)

    async def close(self) -> None:
        await self._ws.close()

    def request_snapshot(self, venue_symbol: str) -> None:
        """Ask Bybit for a fresh snapshot of one book (re-subscription); for an owner whose book went
        out of sync on its own (e.g. ``L2Book.on_gap``). No-op without an orderbook channel."""
        if self._depth is not None and venue_symbol in self._insts:
            self._last_u.pop(venue_symbol, None)
            self._ws.resubscribe([orderbook_topic(self._depth, venue_symbol)])

    def _dropped(self) -> None:
        if self._depth is not None:
            for sym in self._insts:
                self._gap(sym, "disconnected")
        self._last_u.clear()

    def _gap(self, venue_symbol: str, why: str) -> None:
        self.stats["gaps"] += 1
        log.warning("bybit market data %s: orderbook chain broken (%s); the book needs a snapshot", venue_symbol, why)
        if self._on_gap is not None:
            self._on_gap(venue_symbol)

    def on_message(self, raw: str, msg: Any = None) -> None:
        """One topic push (decoded ``msg``, or ``raw`` is decoded here). A frame that does not parse
        never raises (it is logged and counted); exceptions of ``handler`` propagate to the caller
        (the socket logs them and keeps the connection)."""
        events: list[MarketEvent] = []
        try:
            if msg is None:
                msg = json.loads(raw)
            if not isinstance(msg, dict):
                raise TypeError(f"frame is a {type(msg).__name__}, not an object")
            topic = msg["topic"]
            channel, sym = split_topic(topic)
            inst = self._insts[sym]
            now = self._clock.now_ns()
            if channel.startswith("orderbook."):
                d = parse_orderbook(msg, inst, now)
                self._sequence(sym, d.is_snapshot, d.last_update_id)
                if d.is_snapshot:
                    self._ws.synced(topic)
                events.append(d)
            elif channel == "publicTrade":
                events.extend(parse_public_trades(msg, inst, now))
            else:
                log.debug("bybit market data: topic %s ignored", topic)
                return
        except Exception as e:  # a bad message must never stop the stream
            self.stats["garbled"] += 1
            log.warning("bybit market data: garbled message (%s: %s): %s", type(e).__name__, e, raw[:2000])
            return
        self.stats["messages"] += 1
        for ev in events:
            self._handler(ev)

    def _sequence(self, sym: str, snapshot: bool, u: int) -> None:
        """Track the chain of one book; only called once the message parsed."""
        last = self._last_u.get(sym)
        if snapshot:
            self.stats["snapshots"] += 1
            if last is not None and u < last:
                self.stats["resets"] += 1
                log.warning("bybit market data %s: snapshot with u=%d after u=%d (venue restart); book replaced",
                            sym, u, last)
            self._last_u[sym] = u
            return
        if last is None:
            return   # no snapshot yet on this subscription: the book is waiting for one
        if u == last + 1:
            self._last_u[sym] = u
        elif u > last + 1:
            del self._last_u[sym]
            self._gap(sym, f"u={u} after u={last}")
            if self._auto_resync and self._depth is not None:
                self._ws.resubscribe([orderbook_topic(self._depth, sym)])
        # u <= last: stale or duplicated; the book ignores it as stale too
