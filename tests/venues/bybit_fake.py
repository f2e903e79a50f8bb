"""A loopback fake of Bybit's v5 spot REST API (aiohttp) and private stream (websockets), and the
rigs that connect :class:`venues.bybit.BybitSpotVenue` to it.

It behaves like Bybit's documented v5 API where the adapter depends on it:

* Signed requests need ``X-BAPI-API-KEY`` (else ``10003`` "API key is invalid."), a
  ``X-BAPI-TIMESTAMP`` with ``server - recv_window <= timestamp < server + 1000`` (else ``10002``
  "invalid request, please check your server timestamp or recv_window param") and
  ``X-BAPI-SIGN`` = HMAC-SHA256 of ``timestamp + key + recv_window + (query | body)`` (else
  ``10004`` "error sign! origin_string[...]", which, as on Bybit, echoes the string signed, API key
  included). Everything is HTTP 200 with ``{"retCode", "retMsg", "result", "retExtInfo", "time"}``.
* Every signed answer carries ``X-Bapi-Limit``, ``X-Bapi-Limit-Status`` and
  ``X-Bapi-Limit-Reset-Timestamp`` (per endpoint, fixed one-second windows, ``limits``); above the
  limit it answers ``10006`` "Too many visits!" with status 0 and the reset time.
* Orders (``category=spot``): ``Limit`` GTC / IOC / FOK / PostOnly and ``Market`` (``marketUnit``
  baseCoin). Order checks with Bybit's codes: ``170136`` quantity below ``minOrderQty``, ``170137``
  off the ``basePrecision`` grid, ``170134`` price off the tick, ``170133`` price not positive,
  ``170140`` value below ``minOrderAmt``, ``170131`` "Insufficient balance.", ``170141`` duplicate
  ``orderLinkId``; cancels of unknown or finished orders ``170213`` "Order does not exist.".
  The create/cancel answers are ``{"orderId", "orderLinkId"}`` only; what happened is pushed.
* Matching: a taker walks the visible book (``set_book``; levels it takes are consumed); IOC and
  Market remainders end ``Cancelled`` / ``PartiallyFilledCanceled`` (``rejectReason``
  ``EC_CancelForNoFullFill``), FOK without enough liquidity ``Cancelled`` without fills, a
  PostOnly that would take ``Cancelled`` with ``EC_PostOnlyWillTakeLiquidity``; GTC remainders
  rest and are filled as maker by ``trade(symbol, price, qty, aggressor)``. Fees: taker/maker bps
  of the value; a buy pays its fee in the base coin (Bybit spot's rule) unless
  ``buy_fee_in_base=False`` (then in the quote coin, as the shared conformance suite expects),
  a sell in the quote coin.
* The private stream (``/v5/private``): ``auth`` with ``[key, expires, HMAC("GET/realtime" +
  expires)]``, ``subscribe`` (only after auth: else "Request not authorized"), ``ping`` -> ``pong``;
  pushes ``order``, ``execution`` and ``wallet`` in Bybit's envelope. ``order_first`` pushes an
  order's status before its executions; ``duplicate_executions`` pushes each execution twice (in
  envelopes with different ids, as a resend would be); ``mute_pushes`` pushes nothing (a stream
  that lost the messages), ``realtime_shows_closed=False`` lists only open orders in
  /v5/order/realtime (closed ones are then only in /v5/order/history).

* The public spot stream (``/v5/public/spot``, no auth): ``subscribe`` / ``unsubscribe`` of
  ``orderbook.{depth}.{symbol}`` and ``publicTrade.{symbol}``, ``ping`` answered in the public form
  (``{"op": "ping", "ret_msg": "pong", "success": true}``). Subscribing an orderbook topic pushes a
  ``snapshot`` of the visible book with the symbol's current ``u``; every change of the visible book
  (``set_book``, a taker consuming levels) is pushed as a ``delta`` with ``u`` + 1 (levels gone sent
  with size ``"0"``); ``trade()`` pushes a ``publicTrade``. ``lose_next_delta`` drops the next delta
  (a gap on the chain); ``drop_public_streams()`` closes the public connections.

Fault injection (each consumed by the next matching request): ``fault(method, path, "slow", s)``
processes the request and answers ``s`` seconds late; ``"drop_after"`` processes it and closes the
connection without an answer; ``"drop_before"`` closes it without processing. ``fail(method, path,
http, code, msg, headers)`` answers with that status and ``retCode``/``retMsg`` (or ``msg`` as a raw
body when ``code`` is ``None``, as Bybit's 403 "access too frequent" page) without processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import websockets
from aiohttp import web
from websockets.asyncio.server import ServerConnection

from marketdata.clock import LiveClock
from marketdata.model import Instrument, InstrumentKind, OrderEvent, Side, Symbol, VenueId
from venues.bybit import BybitCredentials, BybitSpotConfig, BybitSpotVenue
from venues.signing import Secret

T = TypeVar("T")

API_KEY = "XXXXXXXXXXXXXXXXXX"
API_SECRET = "YYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY"
TAKER_BPS = Decimal(10)
MAKER_BPS = Decimal(2)
PARAMS = web.RequestKey("params", dict)
DEFAULT_LIMITS = {"/v5/order/create": 20, "/v5/order/cancel": 20, "/v5/order/realtime": 50,
                  "/v5/order/history": 50, "/v5/execution/list": 50, "/v5/account/wallet-balance": 50}


class BybitFail(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code, self.msg = code, msg


@dataclass
class FakeOrder:
    cid: str
    order_id: str
    inst: Instrument
    side: str
    type: str
    tif: str
    price: Decimal
    qty: Decimal
    cum_qty: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    cum_fee: Decimal = Decimal(0)
    status: str = "New"
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"
    created_ms: int = 0
    updated_ms: int = 0
    execs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def open(self) -> bool:
        return self.status in ("New", "PartiallyFilled")

    @property
    def leaves(self) -> Decimal:
        return self.qty - self.cum_qty if self.open else Decimal(0)

    def view(self) -> dict[str, Any]:
        inst = self.inst
        avg = (self.cum_value / self.cum_qty).quantize(inst.tick_size) if self.cum_qty else None
        return {"category": "spot", "symbol": inst.venue_symbol, "orderId": self.order_id, "orderLinkId": self.cid,
                "blockTradeId": "", "side": self.side, "orderType": self.type,
                "price": str(self.price) if self.type == "Limit" else "0", "qty": str(self.qty),
                "timeInForce": self.tif, "orderStatus": self.status, "cancelType": self.cancel_type,
                "rejectReason": self.reject_reason, "avgPrice": "" if avg is None else str(avg),
                "leavesQty": str(self.leaves), "leavesValue": str(self.leaves * self.price),
                "cumExecQty": str(self.cum_qty), "cumExecValue": str(self.cum_value),
                "cumExecFee": str(self.cum_fee), "orderIv": None, "triggerPrice": "0", "takeProfit": "0",
                "stopLoss": "0", "smpType": "None", "smpGroup": 0, "smpOrderId": "", "placeType": "",
                "feeCurrency": "", "isLeverage": "0", "positionIdx": 0,
                "createdTime": str(self.created_ms), "updatedTime": str(self.updated_ms)}


class FakeBybit:
    """The fake exchange; ``await start()`` then use ``rest_url``/``ws_url``; ``await stop()``."""

    def __init__(self, instruments: list[Instrument], api_key: str, api_secret: str, *,
                 balances: dict[str, Decimal] | None = None, maker_bps: Decimal = MAKER_BPS,
                 taker_bps: Decimal = TAKER_BPS, buy_fee_in_base: bool = True,
                 limits: dict[str, int] | None = None) -> None:
        self.instruments = {i.venue_symbol: i for i in instruments}
        self.api_key = api_key
        self._secret = api_secret.encode()
        self.maker = maker_bps / Decimal(10_000)
        self.taker = taker_bps / Decimal(10_000)
        self.buy_fee_in_base = buy_fee_in_base
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.totals: dict[str, Decimal] = dict(balances or {})
        self.books: dict[str, dict[str, list[list[Decimal]]]] = {s: {"bids": [], "asks": []} for s in self.instruments}
        self.orders: dict[str, FakeOrder] = {}
        self._order_ids = itertools.count(1_829_301)
        self._exec_ids = itertools.count(2_100_000_000_007_764_263)
        self._push_ids = itertools.count(1)
        self._windows: dict[str, tuple[int, int]] = {}   # path -> (second, used)
        self._faults: list[tuple[str, str, str, float]] = []
        self._fails: list[tuple[str, str, int, int | None, str, dict[str, str]]] = []
        self.time_skew_ms = 0
        self.order_first = False
        self.duplicate_executions = False
        self.realtime_shows_closed = True
        self.mute_pushes = False   # process orders but push nothing (a stream that lost them)
        self.requests: list[tuple[str, str, dict[str, str], str]] = []   # method, path, headers, body/query
        self.ws_frames_in: list[str] = []
        self.pushed = 0
        self.logins = 0
        self._conns: dict[ServerConnection, set[str]] = {}
        self._public: dict[ServerConnection, set[str]] = {}   # public stream connections -> topics
        self.public_frames_in: list[str] = []
        self.book_u: dict[str, int] = dict.fromkeys(self.instruments, 1000)
        self._shown: dict[str, dict[str, dict[Decimal, Decimal]]] = {
            s: {"b": {}, "a": {}} for s in self.instruments}   # the book as last pushed
        self.lose_next_delta = False
        self.public_trades = 0
        self._runner: web.AppRunner | None = None
        self._ws_server: Any = None
        self.port = 0
        self.ws_port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/v5/private"

    @property
    def ws_public_url(self) -> str:
        """The public stream's host (the client appends ``/v5/public/spot``)."""
        return f"ws://127.0.0.1:{self.ws_port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v5/market/time", self._time)
        app.router.add_get("/v5/market/instruments-info", self._instruments)
        app.router.add_post("/v5/order/create", self._create)
        app.router.add_post("/v5/order/cancel", self._cancel)
        app.router.add_get("/v5/order/realtime", self._realtime)
        app.router.add_get("/v5/order/history", self._history)
        app.router.add_get("/v5/execution/list", self._executions)
        app.router.add_get("/v5/account/wallet-balance", self._wallet)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ws_server = await websockets.serve(self._ws, "127.0.0.1", 0)
        self.ws_port = next(iter(self._ws_server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self._ws_server is not None:
            self._ws_server.close()
            with contextlib.suppress(Exception):
                await self._ws_server.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ test controls
    def fault(self, method: str, path: str, kind: str, seconds: float = 0.0) -> None:
        assert kind in ("slow", "drop_after", "drop_before")
        self._faults.append((method, path, kind, seconds))

    def fail(self, method: str, path: str, http: int, code: int | None, msg: str,
             headers: dict[str, str] | None = None) -> None:
        self._fails.append((method, path, http, code, msg, headers or {}))

    async def set_book(self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.books[symbol] = {"bids": [[Decimal(p), Decimal(q)] for p, q in bids],
                              "asks": [[Decimal(p), Decimal(q)] for p, q in asks]}
        await self._publish_book(symbol)

    async def trade(self, symbol: str, price: str, qty: str, aggressor: Side) -> None:
        """A public trade: fills our resting orders on the other side that it reaches (maker)."""
        px, left = Decimal(price), Decimal(qty)
        for fo in sorted((o for o in self.orders.values() if o.open and o.inst.venue_symbol == symbol),
                         key=lambda o: o.created_ms):
            if left <= 0:
                break
            if (aggressor is Side.SELL and fo.side == "Buy" and fo.price >= px) or \
               (aggressor is Side.BUY and fo.side == "Sell" and fo.price <= px):
                q = min(left, fo.qty - fo.cum_qty)
                left -= q
                execs = [self._execute(fo, fo.price, q, maker=True)]
                fo.status = "Filled" if fo.cum_qty == fo.qty else "PartiallyFilled"
                await self._publish(fo, execs)
        await self._publish_trade(symbol, price, qty, aggressor)

    async def drop_public_streams(self) -> None:
        for conn in list(self._public):
            await conn.close()

    def public_subscriptions(self) -> set[str]:
        return {t for topics in self._public.values() for t in topics}

    # ------------------------------------------------------------------ public stream
    def _levels_now(self, symbol: str) -> dict[str, dict[Decimal, Decimal]]:
        book = self.books[symbol]
        return {"b": {p: q for p, q in book["bids"] if q > 0}, "a": {p: q for p, q in book["asks"] if q > 0}}

    @staticmethod
    def _wire_levels(levels: dict[Decimal, Decimal], descending: bool) -> list[list[str]]:
        return [[str(p), str(q)] for p, q in sorted(levels.items(), reverse=descending)]

    def _book_frame(self, topic: str, symbol: str, kind: str, levels: dict[str, dict[Decimal, Decimal]]) -> str:
        ms = self._server_ms()
        return json.dumps({"topic": topic, "type": kind, "ts": ms, "cts": ms,
                           "data": {"s": symbol, "b": self._wire_levels(levels["b"], True),
                                    "a": self._wire_levels(levels["a"], False), "u": self.book_u[symbol],
                                    "seq": next(self._push_ids)}})

    async def _publish_book(self, symbol: str) -> None:
        """Push the change of the visible book since the last push as a delta (``u`` + 1)."""
        now, shown = self._levels_now(symbol), self._shown[symbol]
        diff: dict[str, dict[Decimal, Decimal]] = {}
        for side in ("b", "a"):
            d = {p: q for p, q in now[side].items() if shown[side].get(p) != q}
            d.update({p: Decimal(0) for p in shown[side] if p not in now[side]})
            diff[side] = d
        self._shown[symbol] = now
        if not diff["b"] and not diff["a"]:
            return
        self.book_u[symbol] += 1
        if self.lose_next_delta:
            self.lose_next_delta = False
            return
        for conn, topics in list(self._public.items()):
            for topic in topics:
                if topic.startswith("orderbook.") and topic.endswith(f".{symbol}"):
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await conn.send(self._book_frame(topic, symbol, "delta", diff))

    async def _publish_trade(self, symbol: str, price: str, qty: str, aggressor: Side) -> None:
        self.public_trades += 1
        ms = self._server_ms()
        frame = json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": ms, "data": [
            {"T": ms, "s": symbol, "S": "Buy" if aggressor is Side.BUY else "Sell", "v": qty, "p": price,
             "L": "PlusTick", "i": str(2_290_000_000_061_666_000 + self.public_trades), "BT": False}]})
        for conn, topics in list(self._public.items()):
            if f"publicTrade.{symbol}" in topics:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await conn.send(frame)

    async def _ws_public(self, conn: ServerConnection) -> None:
        self._public[conn] = set()
        conn_id = f"pub-{id(conn)}"
        try:
            async for raw in conn:
                text = raw if isinstance(raw, str) else raw.decode()
                self.public_frames_in.append(text)
                msg = json.loads(text)
                op, req_id, args = msg.get("op"), msg.get("req_id", ""), list(msg.get("args") or [])
                if op == "ping":
                    await conn.send(json.dumps({"success": True, "ret_msg": "pong", "conn_id": conn_id,
                                                "req_id": req_id, "op": "ping"}))
                elif op in ("subscribe", "unsubscribe"):
                    bad = [a for a in args if a.rpartition(".")[2] not in self.instruments]
                    if bad:
                        await conn.send(json.dumps({"success": False, "ret_msg": f"Invalid symbol :[{bad[0]}]",
                                                    "conn_id": conn_id, "req_id": req_id, "op": op}))
                        continue
                    if op == "unsubscribe":
                        self._public[conn].difference_update(args)
                    else:
                        self._public[conn].update(args)
                    await conn.send(json.dumps({"success": True, "ret_msg": "", "conn_id": conn_id,
                                                "req_id": req_id, "op": op}))
                    if op == "subscribe":
                        for topic in args:   # Bybit's first message on a book topic is its snapshot
                            if topic.startswith("orderbook."):
                                sym = topic.rpartition(".")[2]
                                await conn.send(self._book_frame(topic, sym, "snapshot", self._shown[sym]))
        except websockets.ConnectionClosed:
            pass
        finally:
            self._public.pop(conn, None)

    async def push_raw(self, text: str) -> None:
        for conn, topics in list(self._conns.items()):
            if topics:
                await self._send(conn, text)

    async def drop_streams(self) -> None:
        for conn in list(self._conns):
            await conn.close()

    def authed_connections(self) -> int:
        return sum(1 for t in self._conns.values() if t)

    def free(self, asset: str) -> Decimal:
        return self.totals.get(asset, Decimal(0)) - self.locked(asset)

    def locked(self, asset: str) -> Decimal:
        out = Decimal(0)
        for fo in self.orders.values():
            if not fo.open:
                continue
            if fo.side == "Buy" and fo.inst.quote == asset:
                out += fo.price * (fo.qty - fo.cum_qty)
            elif fo.side == "Sell" and fo.inst.base == asset:
                out += fo.qty - fo.cum_qty
        return out

    # ------------------------------------------------------------------ plumbing
    def _server_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.time_skew_ms

    def _body(self, result: Any, code: int = 0, msg: str = "OK", http: int = 200,
              headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(text=json.dumps({"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {},
                                             "time": self._server_ms()}),
                            status=http, content_type="application/json", headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path, method = request.path, request.method
        body = await request.text()
        raw_query = request.rel_url.raw_query_string
        self.requests.append((method, path, dict(request.headers), body if method == "POST" else raw_query))
        for i, (m, p, http, code, msg, hdrs) in enumerate(self._fails):
            if m == method and p == path:
                del self._fails[i]
                if code is None:
                    return web.Response(text=msg, status=http, headers=hdrs)
                return self._body({}, code, msg, http, hdrs)
        fault = next(((i, f) for i, f in enumerate(self._faults) if f[0] == method and f[1] == path), None)
        if fault is not None:
            del self._faults[fault[0]]
            if fault[1][2] == "drop_before":
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError
        signed = not path.startswith("/v5/market/")
        headers: dict[str, str] = {}
        if signed:
            try:
                self._check_signed(request, raw_query if method == "GET" else body)
            except BybitFail as e:
                return self._body({}, e.code, e.msg)
            limit = self.limits.get(path)
            if limit is not None:
                sec = self._server_ms() // 1000
                w, used = self._windows.get(path, (sec, 0))
                if w != sec:
                    w, used = sec, 0
                reset = str((w + 1) * 1000)
                if used >= limit:
                    return self._body({}, 10006, "Too many visits!", headers={
                        "X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": "0",
                        "X-Bapi-Limit-Reset-Timestamp": reset})
                used += 1
                self._windows[path] = (w, used)
                headers = {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(limit - used),
                           "X-Bapi-Limit-Reset-Timestamp": reset}
        request[PARAMS] = (json.loads(body) if method == "POST" and body else dict(parse_qsl(raw_query)))
        try:
            result = await handler(request)
            resp = self._body(result, headers=headers)
        except BybitFail as e:
            resp = self._body({}, e.code, e.msg, headers=headers)
        if fault is not None:
            kind, seconds = fault[1][2], fault[1][3]
            if kind == "slow":
                await asyncio.sleep(seconds)
            elif kind == "drop_after":
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError
        return resp

    def _check_signed(self, request: web.Request, payload: str) -> None:
        key = request.headers.get("X-BAPI-API-KEY")
        ts = request.headers.get("X-BAPI-TIMESTAMP")
        rw = request.headers.get("X-BAPI-RECV-WINDOW", "5000")
        sign = request.headers.get("X-BAPI-SIGN")
        if key != self.api_key:
            raise BybitFail(10003, "API key is invalid.")
        if ts is None or sign is None or not ts.isdigit() or not rw.isdigit():
            raise BybitFail(10001, "empty param of timestamp or sign")
        now = self._server_ms()
        if not (now - int(rw) <= int(ts) < now + 1000):
            raise BybitFail(10002, f"invalid request, please check your server timestamp or recv_window param. "
                                   f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{rw}]")
        origin = f"{ts}{key}{rw}{payload}"
        if not hmac.compare_digest(hmac.new(self._secret, origin.encode(), hashlib.sha256).hexdigest(), sign):
            raise BybitFail(10004, f"error sign! origin_string[{origin}]")

    # ------------------------------------------------------------------ pushes
    async def _send(self, conn: ServerConnection, text: str) -> None:
        try:
            await conn.send(text)
            self.pushed += 1
        except websockets.ConnectionClosed:
            pass

    async def _push(self, topic: str, data: list[dict[str, Any]]) -> None:
        if self.mute_pushes:
            return
        for conn, topics in list(self._conns.items()):
            if topic in topics:
                await self._send(conn, json.dumps({"id": f"{topic}-{next(self._push_ids)}", "topic": topic,
                                                   "creationTime": self._server_ms(), "data": data}))

    async def _publish(self, fo: FakeOrder, execs: list[dict[str, Any]]) -> None:
        fo.updated_ms = self._server_ms()
        order_push = [fo.view()]
        if self.order_first:
            await self._push("order", order_push)
        for e in execs:
            await self._push("execution", [e])
            if self.duplicate_executions:
                await self._push("execution", [e])
        if not self.order_first:
            await self._push("order", order_push)
        await self._push("wallet", [{"accountType": "UNIFIED", "coin": self._coins(
            [fo.inst.base, fo.inst.quote])}])

    def _coins(self, assets: list[str]) -> list[dict[str, Any]]:
        return [{"coin": a, "walletBalance": str(self.totals.get(a, Decimal(0))), "locked": str(self.locked(a)),
                 "equity": str(self.totals.get(a, Decimal(0))), "availableToWithdraw": "", "spotBorrow": "0",
                 "totalOrderIM": "0", "borrowAmount": "0"} for a in assets]

    # ------------------------------------------------------------------ matching
    def _execute(self, fo: FakeOrder, price: Decimal, qty: Decimal, *, maker: bool) -> dict[str, Any]:
        inst = fo.inst
        value = price * qty
        rate = self.maker if maker else self.taker
        if fo.side == "Buy":
            fee_ccy = inst.base if self.buy_fee_in_base else inst.quote
            fee = (qty if self.buy_fee_in_base else value) * rate
            self.totals[inst.base] = self.totals.get(inst.base, Decimal(0)) + qty
            self.totals[inst.quote] = self.totals.get(inst.quote, Decimal(0)) - value
        else:
            fee_ccy, fee = inst.quote, value * rate
            self.totals[inst.base] = self.totals.get(inst.base, Decimal(0)) - qty
            self.totals[inst.quote] = self.totals.get(inst.quote, Decimal(0)) + value
        self.totals[fee_ccy] -= fee
        fo.cum_qty += qty
        fo.cum_value += value
        fo.cum_fee += fee
        e = {"category": "spot", "symbol": inst.venue_symbol, "execFee": str(fee), "execId": str(next(self._exec_ids)),
             "execPrice": str(price), "execQty": str(qty), "execType": "Trade", "execValue": str(value),
             "feeRate": str(rate), "feeCurrency": fee_ccy, "leavesQty": str(fo.qty - fo.cum_qty),
             "orderId": fo.order_id, "orderLinkId": fo.cid, "orderPrice": str(fo.price), "orderQty": str(fo.qty),
             "orderType": fo.type, "side": fo.side, "execTime": str(self._server_ms()), "isMaker": maker,
             "seq": next(self._push_ids)}
        fo.execs.append(e)
        return e

    def _crosses(self, fo: FakeOrder, level_px: Decimal) -> bool:
        if fo.type == "Market":
            return True
        return level_px <= fo.price if fo.side == "Buy" else level_px >= fo.price

    def _available(self, fo: FakeOrder) -> Decimal:
        levels = self.books[fo.inst.venue_symbol]["asks" if fo.side == "Buy" else "bids"]
        return sum((q for p, q in levels if self._crosses(fo, p)), Decimal(0))

    def _take(self, fo: FakeOrder) -> list[dict[str, Any]]:
        levels = self.books[fo.inst.venue_symbol]["asks" if fo.side == "Buy" else "bids"]
        execs = []
        while levels and fo.cum_qty < fo.qty and self._crosses(fo, levels[0][0]):
            px, q = levels[0]
            take = min(q, fo.qty - fo.cum_qty)
            if fo.side == "Buy" and fo.type == "Market" and self.free(fo.inst.quote) < px * take:
                break
            execs.append(self._execute(fo, px, take, maker=False))
            levels[0][1] -= take
            if levels[0][1] <= 0:
                levels.pop(0)
        return execs

    def _dec(self, p: dict[str, Any], key: str) -> Decimal:
        try:
            d = Decimal(str(p[key]))
        except (KeyError, InvalidOperation):
            raise BybitFail(10001, f"params error: {key} invalid") from None
        if not d.is_finite():
            raise BybitFail(10001, f"params error: {key} invalid")
        return d

    # ------------------------------------------------------------------ endpoints
    async def _time(self, request: web.Request) -> Any:
        ns = time.time_ns() + self.time_skew_ms * 1_000_000
        return {"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)}

    async def _instruments(self, request: web.Request) -> Any:
        p = dict(request.query)
        rows = [{"symbol": i.venue_symbol, "baseCoin": i.base, "quoteCoin": i.quote, "innovation": "0",
                 "status": "Trading", "marginTrading": "utaOnly",
                 "lotSizeFilter": {"basePrecision": str(i.lot_size), "quotePrecision": "0.01",
                                   "minOrderQty": str(i.min_quantity), "maxOrderQty": "1000000",
                                   "minOrderAmt": str(i.min_notional), "maxOrderAmt": "10000000"},
                 "priceFilter": {"tickSize": str(i.tick_size)}}
                for i in self.instruments.values() if "symbol" not in p or p["symbol"] == i.venue_symbol]
        return {"category": "spot", "list": rows, "nextPageCursor": ""}

    def _inst(self, p: dict[str, Any]) -> Instrument:
        if p.get("category") != "spot":
            raise BybitFail(10001, "params error: category only support spot here")
        inst = self.instruments.get(str(p.get("symbol")))
        if inst is None:
            raise BybitFail(170121, "Invalid symbol.")
        return inst

    async def _create(self, request: web.Request) -> Any:
        p = request[PARAMS]
        inst = self._inst(p)
        cid = str(p.get("orderLinkId") or "")
        if cid in self.orders:
            raise BybitFail(170141, "Duplicate clientOrderId.")
        side, otype = p.get("side"), p.get("orderType")
        if side not in ("Buy", "Sell") or otype not in ("Limit", "Market"):
            raise BybitFail(10001, "params error: side or orderType invalid")
        qty = self._dec(p, "qty")
        if (qty / inst.lot_size) % 1 != 0:
            raise BybitFail(170137, "Order volume decimal too long.")
        if qty < inst.min_quantity or qty <= 0:
            raise BybitFail(170136, "Order quantity lower than the minimum.")
        tif = "IOC" if otype == "Market" else str(p.get("timeInForce", "GTC"))
        if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise BybitFail(10001, "params error: timeInForce invalid")
        price = Decimal(0)
        if otype == "Limit":
            price = self._dec(p, "price")
            if price <= 0:
                raise BybitFail(170133, "Order price lower than the minimum.")
            if (price / inst.tick_size) % 1 != 0:
                raise BybitFail(170134, "Order price decimal too long.")
            if price * qty < inst.min_notional:
                raise BybitFail(170140, "Order value exceeded lower limit.")
        elif p.get("marketUnit") != "baseCoin":
            raise BybitFail(10001, "this fake only takes spot market orders with marketUnit=baseCoin")
        now = self._server_ms()
        fo = FakeOrder(cid, str(next(self._order_ids)), inst, side, otype, tif, price, qty, created_ms=now,
                       updated_ms=now)
        if side == "Buy":
            need = price * qty if otype == "Limit" else Decimal(0)
            if otype == "Market":
                asks = self.books[inst.venue_symbol]["asks"]
                left = qty
                for px, q in asks:
                    t = min(q, left)
                    need += px * t
                    left -= t
                    if left <= 0:
                        break
            if self.free(inst.quote) < need:
                raise BybitFail(170131, "Insufficient balance.")
        elif self.free(inst.base) < qty:
            raise BybitFail(170131, "Insufficient balance.")
        if not cid:
            cid = fo.cid = f"auto-{fo.order_id}"
        self.orders[cid] = fo
        execs: list[dict[str, Any]] = []
        if tif == "PostOnly" and self._available(fo) > 0:
            fo.status, fo.reject_reason = "Cancelled", "EC_PostOnlyWillTakeLiquidity"
        elif tif == "FOK" and self._available(fo) < qty:
            fo.status, fo.reject_reason = "Cancelled", "EC_CancelForNoFullFill"
        else:
            execs = self._take(fo)
            if execs:
                await self._publish_book(inst.venue_symbol)
            if fo.cum_qty == fo.qty:
                fo.status = "Filled"
            elif tif in ("IOC", "FOK"):
                fo.status = "PartiallyFilledCanceled" if fo.cum_qty else "Cancelled"
                fo.reject_reason = "EC_CancelForNoFullFill"
            else:
                fo.status = "PartiallyFilled" if fo.cum_qty else "New"
        await self._publish(fo, execs)
        return {"orderId": fo.order_id, "orderLinkId": fo.cid}

    async def _cancel(self, request: web.Request) -> Any:
        p = request[PARAMS]
        self._inst(p)
        fo = self.orders.get(str(p.get("orderLinkId")))
        if fo is None or not fo.open:
            raise BybitFail(170213, "Order does not exist.")
        fo.status = "PartiallyFilledCanceled" if fo.cum_qty else "Cancelled"
        fo.cancel_type = "CancelByUser"
        await self._publish(fo, [])
        return {"orderId": fo.order_id, "orderLinkId": fo.cid}

    def _select(self, p: dict[str, Any], *, closed: bool, open_: bool) -> list[FakeOrder]:
        inst = self._inst(p)
        out = [o for o in self.orders.values() if o.inst is inst and ((o.open and open_) or (not o.open and closed))]
        if "orderLinkId" in p:
            out = [o for o in out if o.cid == p["orderLinkId"]]
        if "orderId" in p:
            out = [o for o in out if o.order_id == p["orderId"]]
        return out

    async def _realtime(self, request: web.Request) -> Any:
        p = request[PARAMS]
        by_id = "orderLinkId" in p or "orderId" in p
        rows = self._select(p, closed=by_id and self.realtime_shows_closed, open_=True)
        return {"category": "spot", "list": [o.view() for o in rows], "nextPageCursor": ""}

    async def _history(self, request: web.Request) -> Any:
        rows = self._select(request[PARAMS], closed=True, open_=True)
        return {"category": "spot", "list": [o.view() for o in rows], "nextPageCursor": ""}

    async def _executions(self, request: web.Request) -> Any:
        p = request[PARAMS]
        self._inst(p)
        rows = [e for o in self.orders.values() for e in o.execs
                if ("orderId" not in p or o.order_id == p["orderId"])]
        limit = int(p.get("limit", 50))
        start = int(p.get("cursor") or 0)
        page = rows[start:start + limit]
        nxt = str(start + limit) if start + limit < len(rows) else ""
        return {"category": "spot", "list": page, "nextPageCursor": nxt}

    async def _wallet(self, request: web.Request) -> Any:
        if request[PARAMS].get("accountType") != "UNIFIED":
            raise BybitFail(10001, "accountType only support UNIFIED.")
        assets = sorted(a for a, v in self.totals.items() if v)
        return {"list": [{"accountType": "UNIFIED", "totalEquity": "0", "coin": self._coins(assets)}]}

    # ------------------------------------------------------------------ private stream
    async def _ws(self, conn: ServerConnection) -> None:
        if conn.request is not None and conn.request.path == "/v5/public/spot":
            await self._ws_public(conn)
            return
        if conn.request is None or conn.request.path != "/v5/private":
            await conn.close()
            return
        self._conns[conn] = set()
        authed = False
        conn_id = f"conn-{id(conn)}"
        try:
            async for raw in conn:
                text = raw if isinstance(raw, str) else raw.decode()
                self.ws_frames_in.append(text)
                msg = json.loads(text)
                op, req_id = msg.get("op"), msg.get("req_id", "")
                if op == "auth":
                    key, expires, sig = (msg.get("args") or [None, 0, ""])[:3]
                    good = hmac.new(self._secret, f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
                    if key != self.api_key:
                        ans = {"success": False, "ret_msg": "Invalid apikey", "op": "auth", "conn_id": conn_id}
                    elif int(expires) <= self._server_ms():
                        ans = {"success": False, "ret_msg": "Params Error: expires is in the past", "op": "auth",
                               "conn_id": conn_id}
                    elif not hmac.compare_digest(good, str(sig)):
                        ans = {"success": False, "ret_msg": "Signature error", "op": "auth", "conn_id": conn_id}
                    else:
                        authed = True
                        self.logins += 1
                        ans = {"success": True, "ret_msg": "", "op": "auth", "conn_id": conn_id}
                    ans["req_id"] = req_id
                    await self._send(conn, json.dumps(ans))
                elif op == "subscribe":
                    if not authed:
                        await self._send(conn, json.dumps({"success": False, "ret_msg": "Request not authorized",
                                                           "op": "subscribe", "conn_id": conn_id, "req_id": req_id}))
                        continue
                    self._conns[conn].update(msg.get("args") or [])
                    await self._send(conn, json.dumps({"success": True, "ret_msg": "", "op": "subscribe",
                                                       "conn_id": conn_id, "req_id": req_id}))
                elif op == "ping":
                    await self._send(conn, json.dumps({"req_id": req_id, "op": "pong",
                                                       "args": [str(self._server_ms())], "conn_id": conn_id}))
        except websockets.ConnectionClosed:
            pass
        finally:
            self._conns.pop(conn, None)


# ---------------------------------------------------------------------------------------------- rigs
def make_instrument() -> Instrument:
    return Instrument(venue=VenueId("bybit-spot"), symbol=Symbol("BTC-USDT"), venue_symbol="BTCUSDT",
                      base="BTC", quote="USDT", tick_size=Decimal("0.1"), lot_size=Decimal("0.001"),
                      min_quantity=Decimal("0.001"), min_notional=Decimal("5"), kind=InstrumentKind.SPOT)


def make_config(fake: FakeBybit, inst: Instrument, **kw: Any) -> BybitSpotConfig:
    base: dict[str, Any] = {
        "instruments": (inst,), "rest_url": fake.rest_url, "ws_private_url": fake.ws_url,
        "request_timeout_s": Decimal(2), "maker_bps": MAKER_BPS, "taker_bps": TAKER_BPS,
        "resolve_delays_s": (Decimal("0.05"), Decimal("0.1")), "recv_window_ms": 1000}
    base.update(kw)
    return BybitSpotConfig(**base)


def make_fake(inst: Instrument, quote: Decimal, base: Decimal, **kw: Any) -> FakeBybit:
    return FakeBybit([inst], API_KEY, API_SECRET, balances={inst.quote: quote, inst.base: base}, **kw)


def credentials(secret: str = API_SECRET, key: str = API_KEY) -> BybitCredentials:
    return BybitCredentials(Secret(key), Secret(secret))


async def settle(fake: FakeBybit, venue: BybitSpotVenue, limit_s: float = 5.0) -> None:
    """Wait until the adapter has read every frame the fake sent, and its follow-ups ran."""
    async with asyncio.timeout(limit_s):
        while True:
            ws = venue.user_stream
            if ws is None or ws.messages >= fake.pushed:
                break
            await asyncio.sleep(0.002)
    for _ in range(3):
        await asyncio.sleep(0)


@dataclass
class Rig:
    fake: FakeBybit
    venue: BybitSpotVenue
    instrument: Instrument
    events: list[OrderEvent] = field(default_factory=list)

    async def settle(self) -> None:
        await settle(self.fake, self.venue)


@contextlib.asynccontextmanager
async def bybit_rig(*, fake_kw: dict[str, Any] | None = None, quote: Decimal = Decimal(100_000),
                    base: Decimal = Decimal(10), creds: BybitCredentials | None = None,
                    **config_kw: Any) -> AsyncIterator[Rig]:
    inst = make_instrument()
    fake = make_fake(inst, quote, base, **(fake_kw or {}))
    await fake.start()
    venue = BybitSpotVenue(make_config(fake, inst, **config_kw), LiveClock(), credentials=creds or credentials())
    rig = Rig(fake, venue, inst)
    venue.set_event_handler(rig.events.append)
    try:
        await venue.connect()
        yield rig
    finally:
        await venue.close()
        await fake.stop()


class BybitHarness:
    """Conformance harness: a connected adapter on a background loop talking to the fake."""

    def __init__(self, *, fake_kw: dict[str, Any] | None = None, **config_kw: Any) -> None:
        self.instrument = make_instrument()
        self.quote_funds = Decimal(100_000)
        self.base_funds = Decimal(10)
        self.events: list[OrderEvent] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bybit-harness", daemon=True)
        self._thread.start()
        self.fake = make_fake(self.instrument, self.quote_funds, self.base_funds, **(fake_kw or {}))
        self.run(self.fake.start())
        self.venue = BybitSpotVenue(make_config(self.fake, self.instrument, **config_kw), LiveClock(self.loop),
                                    credentials=credentials())
        self.venue.set_event_handler(self.events.append)
        self.run(self.venue.connect())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=20)

    def set_book(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.run(self.fake.set_book(self.instrument.venue_symbol, bids, asks))

    def settle(self) -> None:
        self.run(settle(self.fake, self.venue))

    def close(self) -> None:
        try:
            self.run(self.venue.close())
            self.run(self.fake.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            self.loop.close()
