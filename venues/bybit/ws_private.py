"""The Bybit v5 private WebSocket (``wss://stream.bybit.com/v5/private``) on the venue's ``aiohttp``
session: log in, subscribe, keep alive, hand every push to the adapter.

The connection lifecycle is :class:`venues.ws.ReconnectingWebSocket`'s (one task owned by the
client, stopped by :meth:`close`, capped exponential backoff between attempts). On each connection a
writer task of that connection:

1. sends ``{"op": "auth", "args": [api_key, expires, signature]}`` (signed by the HTTP client,
   :func:`venues.bybit.http.sign_ws_auth`) and waits for the answer;
2. subscribes the topics (``order``, ``execution``, ``wallet``) in one request and waits for its ack;
3. runs ``on_connect`` after a *re*connection (the adapter reconciles: pushes sent while the stream
   was down are lost), then marks the connection ready;
4. sends ``{"op": "ping"}`` every ``ping_interval_s`` (Bybit drops a private connection silent for
   long; its docs ask for a ping every 20 s); a ping still unanswered at the next one closes the
   connection, and so does an auth or subscribe answer that does not come within ``ack_timeout_s``.

A refused login or subscription on the *first* connection stops the client and makes :meth:`start`
raise :class:`~venues.bybit.errors.AuthenticationError` / :class:`VenueError` with Bybit's text (a
bad key does not get better by retrying); on a later connection it is logged and retried with the
backoff. Topic pushes, and frames that are not JSON objects, go to ``on_push(raw, decoded)``
(``decoded`` is ``None`` for the latter); the API key never appears in a log line of this module.
"""

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

from marketdata.errors import VenueError
from venues.bybit.errors import AuthenticationError
from venues.bybit.marketdata import is_pong, split_frame
from venues.ws import Hook, ReconnectingWebSocket

__all__ = ["PRIVATE_TOPICS", "BybitPrivateWebSocket"]

log = logging.getLogger(__name__)

PRIVATE_TOPICS = ("order", "execution", "wallet")
PushCallback = Callable[[str, Any], None]


class BybitPrivateWebSocket(ReconnectingWebSocket):
    """The authenticated private stream (see the module docstring)."""

    ready_text = "not logged in and subscribed"

    def __init__(self, name: str, session_getter: Callable[[], aiohttp.ClientSession], url: str,
                 auth_args: Callable[[], list[Any]], on_push: PushCallback, *,
                 topics: tuple[str, ...] = PRIVATE_TOPICS, on_connect: Hook | None = None,
                 on_disconnect: Callable[[], None] | None = None, ping_interval_s: float = 20.0,
                 ack_timeout_s: float = 10.0, reconnect_max_s: Decimal = Decimal(30),
                 connect_timeout_s: float = 10.0, scrub: Callable[[str], str] | None = None,
                 venue: str = "bybit") -> None:
        if ping_interval_s <= 0 or ack_timeout_s <= 0:
            raise ValueError("ping_interval_s and ack_timeout_s must be > 0")
        super().__init__(name, session_getter, self._static_url, None, on_connect=on_connect,
                         on_disconnect=on_disconnect, reconnect_max_s=reconnect_max_s,
                         connect_timeout_s=connect_timeout_s, scrub=scrub, heartbeat_s=None, venue=venue)
        self.url = url
        self.topics = list(topics)
        self._auth_args = auth_args
        self._on_push = on_push
        self._ping_interval_s = ping_interval_s
        self._ack_timeout_s = ack_timeout_s
        self._req_ids = itertools.count(1)
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}   # op -> answer of this connection
        self._awaiting_pong = False
        self._writer_task: asyncio.Task[None] | None = None
        self._ever_ready = False
        self.refused: VenueError | None = None
        """Why the first connection was refused (login or subscription), if it was."""
        self.pings = 0
        self.pongs = 0

    async def _static_url(self) -> str:
        return self.url

    async def start(self, *, wait: bool = True) -> None:
        """Start the task; with ``wait`` return once the first connection is logged in and
        subscribed. Raises :class:`AuthenticationError` if Bybit refused the login,
        :class:`VenueError` if it refused a subscription or nothing was ready in time."""
        try:
            await super().start(wait=wait)
        except VenueError:
            if self.refused is not None:
                raise self.refused from None
            raise

    # ------------------------------------------------------------------ connection hooks
    async def _opened(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._answers.clear()
        self._awaiting_pong = False
        loop = asyncio.get_running_loop()
        for op in ("auth", "subscribe"):   # registered before sending: an answer may be read first
            self._answers[op] = loop.create_future()
        self._writer_task = loop.create_task(self._writer(ws), name=f"ws-writer:{self.name}")

    async def _closed(self) -> None:
        writer, self._writer_task = self._writer_task, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        for fut in self._answers.values():
            if not fut.done():
                fut.cancel()

    def _on_text(self, data: str) -> bool:
        msg, push = split_frame(data)
        if push or msg is None:
            self._deliver(data, msg)
            return False
        op = msg.get("op")
        if is_pong(msg):
            self.pongs += 1
            self._awaiting_pong = False
            return False
        fut = self._answers.get(str(op))
        if fut is not None and not fut.done():
            fut.set_result(msg)
            return False
        log.debug("%s: frame ignored: %s", self.name, self._scrub(data[:500]))
        return False

    def _deliver(self, raw: str, msg: Any) -> None:
        try:
            self._on_push(raw, msg)
        except Exception:  # the owner's failure must not cost the connection
            log.exception("%s: push handler failed on: %s", self.name, self._scrub(raw[:2000]))

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, op: str, args: list[Any] | None = None) -> None:
        body: dict[str, Any] = {"req_id": f"{op}-{next(self._req_ids)}", "op": op}
        if args is not None:
            body["args"] = args
        await ws.send_str(json.dumps(body))

    async def _answer(self, ws: aiohttp.ClientWebSocketResponse, op: str) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(self._ack_timeout_s):
                return await self._answers[op]
        except TimeoutError:
            log.warning("%s: no %s answer within %.1f s; reconnecting", self.name, op, self._ack_timeout_s)
            await ws.close()
            return None

    def _refuse(self, ws_op: str, msg: dict[str, Any]) -> VenueError:
        text = self._scrub(str(msg.get("ret_msg") or msg.get("retMsg") or ""))
        code = msg.get("retCode")
        if ws_op == "auth":
            return AuthenticationError("private stream login refused", venue=self._venue, code=code,
                                       venue_text=text)
        return VenueError(f"private stream subscription to {self.topics} refused", venue=self._venue, code=code,
                          venue_text=text)

    async def _refused(self, ws: aiohttp.ClientWebSocketResponse, err: VenueError) -> None:
        log.error("%s: %s", self.name, err)
        if not self._ever_ready:
            # the first connection: stop (start() raises it); a bad key does not get better by retrying
            self.refused = err
            self._closing = True
        await ws.close()

    @staticmethod
    def _ok(msg: dict[str, Any]) -> bool:
        if "success" in msg:
            return msg["success"] is True
        return msg.get("retCode") == 0

    async def _writer(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await self._send(ws, "auth", self._auth_args())
        msg = await self._answer(ws, "auth")
        if msg is None:
            return
        if not self._ok(msg):
            await self._refused(ws, self._refuse("auth", msg))
            return
        await self._send(ws, "subscribe", self.topics)
        msg = await self._answer(ws, "subscribe")
        if msg is None:
            return
        if not self._ok(msg):
            await self._refused(ws, self._refuse("subscribe", msg))
            return
        log.info("%s: logged in, subscribed to %s", self.name, ", ".join(self.topics))
        if self._on_connect is not None and self._ever_ready:
            try:
                await self._on_connect()
            except Exception:
                # not ready: the connection is dropped without resetting the backoff
                log.exception("%s: reconnect hook failed; reconnecting", self.name)
                await ws.close()
                return
        self._ever_ready = True
        self._set_ready()
        while not ws.closed:
            await asyncio.sleep(self._ping_interval_s)
            if self._awaiting_pong:
                log.warning("%s: no pong within %.1f s; reconnecting", self.name, self._ping_interval_s)
                await ws.close()
                return
            self._awaiting_pong = True
            self.pings += 1
            await self._send(ws, "ping")
