"""A loopback fake of Binance's spot REST API and user-data stream, for the adapter's tests.

It behaves like Binance's documented API where the adapter depends on it:

* SIGNED endpoints need ``X-MBX-APIKEY`` (else 401 ``-2014``/``-2015``), a valid HMAC-SHA256
  ``signature`` of the query string (+ body) placed last (else 400 ``-1022`` "Signature for this
  request is not valid."), and a ``timestamp`` inside ``recvWindow`` of the server clock (else 400
  ``-1021``); ``recvWindow`` above 60000 is ``-1131``.
* Filters with Binance's texts: ``-1013`` "Filter failure: PRICE_FILTER" / "LOT_SIZE" / "NOTIONAL"
  (and for ``icebergQty``: "LOT_SIZE" / "ICEBERG_PARTS", then ``-2010`` "IcebergQty exceeds QTY." /
  "Unsupported order combination" for a timeInForce other than GTC; see ``_check_iceberg``: an
  iceberg matches as a plain order of its whole quantity, there is no hidden part nor refill);
  duplicate ids and unaffordable orders ``-2010``; unknown cancels ``-2011`` "Unknown order sent.";
  unknown orders ``-2013`` "Order does not exist.".
* Every answer carries ``X-MBX-USED-WEIGHT-1M`` (fixed one-minute windows, endpoint weights from
  the docs) and order endpoints ``X-MBX-ORDER-COUNT-10S``/``-1D``; above ``weight_limit`` it answers
  429 ``-1003`` with ``Retry-After``; above ``orders_10s_limit`` new orders get ``-1015`` "Too many
  new orders; current limit is N orders per 10 SECOND." with HTTP ``orders_limit_http`` (429) and
  ``Retry-After`` unless ``orders_limit_retry_after=False``.
* New-order answers are ACK/RESULT/FULL shaped like the fixtures; every order change is pushed on
  the user-data WebSocket (``/ws/<listenKey>``) as an ``executionReport`` (bare, or wrapped as
  ``{"subscriptionId": 0, "event": ...}`` with ``wrap_events``), optionally twice
  (``duplicate_reports``).

Matching is :class:`venues.sim.SimulatedVenue` with zero latency on a SimClock kept at wall time:
``set_book`` seeds its book, ``trade`` prints a public trade (fills resting orders).

Fault injection (each consumed by the next matching request): ``fault("POST", "/api/v3/order",
"slow", seconds)`` processes the request and answers late; ``"drop_after"`` processes it and closes
the connection without an answer; ``"drop_before"`` closes it without processing. ``fail(method,
path, http, code, msg, headers)`` answers the next matching request with that HTTP status and
Binance's ``{"code", "msg"}`` body (or ``msg`` as a raw body when ``code`` is ``None``, as a WAF's
HTML 403 page) *without processing it*, as Binance does for a request it refuses before execution:
429 ``-1003`` with ``Retry-After``, 400 ``-1021`` "Timestamp for this request is outside of the
recvWindow." (the request was not executed), 403 from the WAF.

``GET /api/v3/myTrades`` follows Binance's "Account trade list" page: ``limit`` defaults to 500
and may be at most 1000 (anything else: 400 ``-1130`` "Data sent for parameter 'limit' is not
valid."); with ``fromId`` it returns the trades with ``id >= fromId``, oldest first, up to
``limit``; without it, the *most recent* ``limit`` trades (in ascending order); ``orderId``
narrows to that order's trades (the supported combinations used here: ``symbol``, ``symbol +
orderId``, ``symbol + fromId``, ``symbol + orderId + fromId``). Trade ids come from one counter
shared with the executionReports' ``I`` ids, so they are increasing but not contiguous.

Listen keys expire as on Binance (``expire_listen_keys``): the key is no longer known (a keepalive
``PUT`` or a new connection gets ``-1125`` "This listenKey does not exist."), the open socket on
it receives one ``listenKeyExpired`` event (unless ``notify=False``) and then nothing more, but it
is *not* closed. Binance's user-data stream docs: "listenKeyExpired: This event is sent when the
listen key expires. No more events will be sent after this until a new listenKey is created."
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from marketdata.clock import NS_PER_MS, SimClock
from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    Instrument,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderType,
    Side,
    TimeInForce,
    TradeId,
    TradeTick,
)
from venues.base import FeeSchedule, FeeTier, run_now
from venues.sim import SimulatedVenue, SimVenueConfig

SIGNED_WEIGHTS = {("POST", "/api/v3/order"): 1, ("DELETE", "/api/v3/order"): 1, ("GET", "/api/v3/order"): 4,
                  ("GET", "/api/v3/openOrders"): 6, ("GET", "/api/v3/account"): 20,
                  ("GET", "/api/v3/myTrades"): 20, ("POST", "/api/v3/order/cancelReplace"): 1}
ORDER_ENDPOINTS = {("POST", "/api/v3/order"), ("POST", "/api/v3/order/cancelReplace")}


def _f8(d: Decimal) -> str:
    return f"{d:.8f}"


@dataclass
class _FakeOrder:
    cid: str
    order_id: int
    symbol: str
    inst: Instrument
    side: str
    type: str
    tif: str
    price: Decimal
    orig_qty: Decimal
    executed_lots: int = 0
    cum_quote: Decimal = Decimal(0)
    status: str = "NEW"
    time_ms: int = 0
    update_ms: int = 0
    trades: list[dict[str, Any]] = field(default_factory=list)
    iceberg_qty: Decimal | None = None   # the icebergQty sent (None: a plain order)

    def view(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "orderId": self.order_id, "orderListId": -1, "clientOrderId": self.cid,
                "price": _f8(self.price), "origQty": _f8(self.orig_qty),
                "executedQty": _f8(self.inst.lots_to_qty(self.executed_lots)),
                "cummulativeQuoteQty": _f8(self.cum_quote), "status": self.status, "timeInForce": self.tif,
                "type": self.type, "side": self.side, "stopPrice": "0.00000000",
                "icebergQty": _f8(self.iceberg_qty or Decimal(0)),
                "time": self.time_ms, "updateTime": self.update_ms, "isWorking": True,
                "workingTime": self.time_ms, "origQuoteOrderQty": "0.00000000",
                "selfTradePreventionMode": "NONE"}


class BinanceError(Exception):
    def __init__(self, http: int, code: int, msg: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.http, self.code, self.msg, self.headers = http, code, msg, headers or {}


class FakeBinance:
    """The fake exchange; ``await start()`` then use ``rest_url``/``ws_url``; ``await stop()``."""

    def __init__(self, instruments: list[Instrument], api_key: str, api_secret: str, *,
                 balances: dict[str, Decimal] | None = None, maker_bps: Decimal = Decimal("-0.5"),
                 taker_bps: Decimal = Decimal(4), weight_limit: int = 6000, retry_after_s: int = 1,
                 orders_10s_limit: int | None = None, iceberg_parts: int = 100,
                 iceberg_allowed: bool = True, orders_limit_http: int = 429,
                 orders_limit_retry_after: bool = True) -> None:
        self.instruments = {i.venue_symbol: i for i in instruments}
        self.api_key = api_key
        self._secret = api_secret.encode()
        venue = instruments[0].venue
        self.clock = SimClock(time.time_ns())
        self.sim = SimulatedVenue(SimVenueConfig(
            venue=venue, instruments=instruments,
            fees=FeeSchedule((FeeTier(maker_bps=maker_bps, taker_bps=taker_bps),)),
            balances=dict(balances or {}), rate_limit_orders=None, native_modify=False), self.clock)
        self._captured: list[OrderEvent] = []
        self.sim.set_event_handler(self._captured.append)
        self.orders: dict[str, _FakeOrder] = {}
        self._order_ids = itertools.count(1000)
        self._trade_ids = itertools.count(5000)
        self._trade_map: dict[TradeId, int] = {}
        # knobs
        self.weight_limit = weight_limit
        self.retry_after_s = retry_after_s
        self.orders_10s_limit = orders_10s_limit
        # the -1015 answer above orders_10s_limit: its HTTP status, and whether it has Retry-After
        # (Binance's limits page: an order-count refusal comes "without the Retry-After header")
        self.orders_limit_http = orders_limit_http
        self.orders_limit_retry_after = orders_limit_retry_after
        self.iceberg_parts = iceberg_parts       # every symbol's ICEBERG_PARTS limit (Binance: 100 since 2026-03-12)
        self.iceberg_allowed = iceberg_allowed   # every symbol's icebergAllowed
        self.time_skew_ms = 0
        self.wrap_events = False
        self.duplicate_reports = False
        self._faults: list[tuple[str, str, str, float]] = []
        self._failures: list[tuple[str, str, int, int | None, str, dict[str, str], dict[str, Any] | None]] = []
        # accounting
        self._weight_window = -1
        self.used_weight = 0
        self._orders_window = -1
        self.orders_10s = 0
        self.orders_1d = 0
        self.requests: list[tuple[str, str, str]] = []  # method, path, raw query (for tests)
        self.pushed = 0
        self.account_positions = True    # push outboundAccountPosition after balance changes
        self._listen_keys: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_keys: dict[int, str] = {}   # id(socket) -> the listen key it was opened on
        self.market_messages: list[str] = []
        """Sent, in order, to each market-data connection (``/stream?streams=...``) when it opens."""
        self.market_streams: list[str] = []
        self._market_sockets: list[web.WebSocketResponse] = []
        self._public_books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
        self._depth_ids: dict[str, int] = {}
        self._public_trade_ids = itertools.count(9_000_000)
        self.market_pushed = 0
        self._refuse_market = 0   # market-data connection attempts still to refuse (drop_market_streams)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_route("*", "/api/v3/userDataStream", self._listen_key)
        app.router.add_post("/api/v3/order", self._new_order)
        app.router.add_delete("/api/v3/order", self._cancel)
        app.router.add_get("/api/v3/order", self._query)
        app.router.add_get("/api/v3/openOrders", self._open_orders)
        app.router.add_get("/api/v3/account", self._account)
        app.router.add_get("/api/v3/myTrades", self._my_trades)
        app.router.add_post("/api/v3/order/cancelReplace", self._cancel_replace)
        app.router.add_get("/ws/{key}", self._ws)
        app.router.add_get("/stream", self._market_ws)
        app.router.add_get("/api/v3/depth", self._depth)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for ws in list(self._market_sockets):
            await ws.close()
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ test controls
    def fault(self, method: str, path: str, kind: str, seconds: float = 0.0) -> None:
        """Inject ``slow`` / ``drop_after`` / ``drop_before`` into the next ``method path`` request."""
        assert kind in ("slow", "drop_after", "drop_before"), kind
        self._faults.append((method, path, kind, seconds))

    def fail(self, method: str, path: str, http: int, code: int | None, msg: str,
             headers: dict[str, str] | None = None, data: dict[str, Any] | None = None) -> None:
        """Refuse the next ``method path`` request, unprocessed, with HTTP ``http`` and
        ``{"code": code, "msg": msg}`` (``code=None``: ``msg`` is the raw body, e.g. a WAF page),
        plus ``"data": data`` when given (cancelReplace's per-half outcome)."""
        self._failures.append((method, path, http, code, msg, dict(headers or {}), data))

    async def deposit(self, asset: str, amount: Decimal) -> None:
        """Credit ``amount`` of ``asset`` from outside any order (a deposit or an internal
        transfer). Binance pushes a ``balanceUpdate`` with the delta, then an
        ``outboundAccountPosition`` with the new free and locked figures."""
        self.sim._free[asset] = self.sim._free.get(asset, Decimal(0)) + amount
        ms = self._server_ms()
        bal = run_now(self.sim.balances())[asset]
        await self._publish([{"e": "balanceUpdate", "E": ms, "a": asset, "d": _f8(amount), "T": ms},
                             {"e": "outboundAccountPosition", "E": ms, "u": ms,
                              "B": [{"a": asset, "f": _f8(bal.free), "l": _f8(bal.locked)}]}])

    async def set_book(self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        inst = self.instruments[symbol]
        now = self._now()
        self.sim.on_market_event(BookDeltas(
            inst.venue, inst.symbol, [(inst.price_to_ticks(p), inst.qty_to_lots(q)) for p, q in bids],
            [(inst.price_to_ticks(p), inst.qty_to_lots(q)) for p, q in asks], now, now, is_snapshot=True))
        await self._flush()

    async def trade(self, symbol: str, price: str, qty: str, aggressor: Side) -> None:
        """A public trade printing at ``price`` (fills our resting orders it reaches)."""
        inst = self.instruments[symbol]
        now = self._now()
        self.sim.on_market_event(TradeTick(inst.venue, inst.symbol, inst.price_to_ticks(price),
                                           inst.qty_to_lots(qty), aggressor, TradeId(f"pub-{now}"), now, now))
        await self._flush()

    # ------------------------------------------------------------------ live public market data
    async def publish_book(self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], *,
                           match: bool = True) -> None:
        """Make ``bids``/``asks`` the public book of ``symbol``: push one ``depthUpdate`` diff (the
        changed levels, removed ones with quantity 0, ``U``/``u`` continuing the update-id chain) on
        every market-data socket, serve it as ``GET /api/v3/depth``, and (``match``) seed the
        matching engine with it as :meth:`set_book` does."""
        old_b, old_a = self._public_books.get(symbol, ({}, {}))
        new_b = {str(Decimal(p)): q for p, q in bids}
        new_a = {str(Decimal(p)): q for p, q in asks}

        def diff(old: dict[str, str], new: dict[str, str]) -> list[list[str]]:
            out = [[p, q] for p, q in new.items() if old.get(p) != q]
            out += [[p, "0"] for p in old if p not in new]
            return out

        self._public_books[symbol] = (new_b, new_a)
        first = self._depth_ids.get(symbol, 100) + 1
        self._depth_ids[symbol] = first
        ms = self._server_ms()
        msg = {"e": "depthUpdate", "E": ms, "s": symbol, "U": first, "u": first,
               "b": diff(old_b, new_b), "a": diff(old_a, new_a)}
        if match:
            await self.set_book(symbol, bids, asks)
        await self.push_market(f"{symbol.lower()}@depth@100ms", msg)

    async def publish_trade(self, symbol: str, price: str, qty: str, aggressor: Side, *, match: bool = False) -> None:
        """Push a public ``trade`` message; with ``match`` it also prints in the matching engine
        (:meth:`trade`, filling our resting orders it reaches)."""
        ms = self._server_ms()
        msg = {"e": "trade", "E": ms, "s": symbol, "t": next(self._public_trade_ids), "p": price, "q": qty,
               "T": ms, "m": aggressor is Side.SELL, "M": True}
        if match:
            await self.trade(symbol, price, qty, aggressor)
        await self.push_market(f"{symbol.lower()}@trade", msg)

    async def push_market(self, stream: str, data: Any) -> None:
        """Send one combined-stream frame ``{"stream", "data"}`` on every open market-data socket."""
        text = json.dumps({"stream": stream, "data": data})
        for ws in list(self._market_sockets):
            if not ws.closed:
                await ws.send_str(text)
                self.market_pushed += 1

    def skip_depth_ids(self, symbol: str, n: int) -> None:
        """Lose ``n`` update ids of ``symbol``'s chain (the next diff shows a gap)."""
        self._depth_ids[symbol] = self._depth_ids.get(symbol, 100) + n

    @property
    def market_sockets(self) -> int:
        """Open market-data connections."""
        return sum(1 for ws in self._market_sockets if not ws.closed)

    def use_orders(self, n: int) -> None:
        """Pretend other clients of the account placed ``n`` orders in the current 10 s window."""
        self._orders_window = self._server_ms() // 10_000
        self.orders_10s = n

    async def push_raw(self, text: str) -> None:
        """Send any text on every user-data socket (garbled-message tests)."""
        for ws in list(self._sockets):
            await ws.send_str(text)
            self.pushed += 1

    async def expire_listen_keys(self, *, notify: bool = True) -> None:
        """Every listen key expires (as after 60 minutes without a keepalive): each user-data
        socket gets a ``listenKeyExpired`` event (``notify``) and then no more events, but stays
        open; the keys are unknown from now on (-1125)."""
        ms = self._server_ms()
        for ws in list(self._sockets):
            key = self._socket_keys.get(id(ws))
            if notify and self._live(ws) and key is not None:
                await ws.send_str(json.dumps({"e": "listenKeyExpired", "E": ms, "listenKey": key}))
                self.pushed += 1
        self._listen_keys.clear()

    async def drop_market_streams(self, *, refuse: int = 0) -> None:
        """Close every public market-data socket (as the venue does on a network blip or its
        24-hour limit) and refuse the next ``refuse`` connection attempts to ``/stream`` with
        HTTP 503, so that the client stays disconnected for a few backoff rounds. Messages pushed
        meanwhile reach nobody (they are lost, as on the real venue)."""
        self._refuse_market = refuse
        for ws in list(self._market_sockets):
            await ws.close()

    async def drop_user_streams(self) -> None:
        for ws in list(self._sockets):
            await ws.close()

    # ------------------------------------------------------------------ plumbing
    def _now(self) -> int:
        now = max(time.time_ns(), self.clock.now_ns())
        self.clock.advance_to(now)
        return now

    def _server_ms(self) -> int:
        return time.time_ns() // NS_PER_MS + self.time_skew_ms

    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(text=json.dumps(body), status=status, content_type="application/json",
                            headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        key = (request.method, request.path)
        raw_query = request.rel_url.raw_query_string
        self.requests.append((request.method, request.path, raw_query))
        failure = next((f for f in self._failures if f[0] == request.method and f[1] == request.path), None)
        if failure is not None:
            self._failures.remove(failure)
            _m, _p, http, code, msg, fheaders, fdata = failure
            if code is None:
                return web.Response(text=msg, status=http, content_type="text/html", headers=fheaders)
            return self._json({"code": code, "msg": msg} | ({"data": fdata} if fdata is not None else {}), http,
                              fheaders)
        fault = next((f for f in self._faults if f[0] == request.method and f[1] == request.path), None)
        if fault is not None:
            self._faults.remove(fault)
            if fault[2] == "drop_before":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
        headers: dict[str, str] = {}
        try:
            if key in SIGNED_WEIGHTS:
                body = await request.text()
                self._check_signed(request, raw_query, body)
                self._charge(SIGNED_WEIGHTS[key], key in ORDER_ENDPOINTS, headers)
            elif request.path.startswith("/api/"):
                self._charge(2 if "userDataStream" in request.path else 1, False, headers)
            resp = await handler(request)
        except BinanceError as e:
            headers.update(e.headers)
            resp = self._json({"code": e.code, "msg": e.msg}, e.http, headers)
        else:
            resp.headers.update(headers)
        if fault is not None and fault[2] == "slow":
            await asyncio.sleep(fault[3])
        elif fault is not None and fault[2] == "drop_after":
            assert request.transport is not None
            request.transport.close()
        return resp

    def _check_signed(self, request: web.Request, raw_query: str, body: str) -> None:
        api_key = request.headers.get("X-MBX-APIKEY")
        if not api_key:
            raise BinanceError(401, -2014, "API-key format invalid.")
        if api_key != self.api_key:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        payload, sep, sig = raw_query.rpartition("&signature=")
        if not sep or "&" in sig:
            raise BinanceError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, "
                                           "or malformed.")
        expected = hmac.new(self._secret, (payload + body).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig):
            raise BinanceError(400, -1022, "Signature for this request is not valid.")
        params = dict(parse_qsl(payload))
        if "timestamp" not in params:
            raise BinanceError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, "
                                           "or malformed.")
        ts = int(params["timestamp"])
        recv = int(params.get("recvWindow", "5000"))
        if recv > 60000:
            raise BinanceError(400, -1131, "recvWindow must be less than 60000")
        server = self._server_ms()
        if ts > server + 1000 or server - ts > recv:
            raise BinanceError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    def _charge(self, weight: int, is_order: bool, headers: dict[str, str]) -> None:
        now_ms = self._server_ms()
        window = now_ms // 60_000
        if window != self._weight_window:
            self._weight_window, self.used_weight = window, 0
        self.used_weight += weight
        headers["X-MBX-USED-WEIGHT-1M"] = str(self.used_weight)
        if self.used_weight > self.weight_limit:
            raise BinanceError(429, -1003, f"Too much request weight used; current limit is {self.weight_limit} "
                                           "request weight per 1 MINUTE. Please use WebSocket Streams for live "
                                           "updates to avoid polling the API.",
                               {"Retry-After": str(self.retry_after_s),
                                "X-MBX-USED-WEIGHT-1M": str(self.used_weight)})
        if is_order:
            w10 = now_ms // 10_000
            if w10 != self._orders_window:
                self._orders_window, self.orders_10s = w10, 0
            self.orders_10s += 1
            self.orders_1d += 1
            headers["X-MBX-ORDER-COUNT-10S"] = str(self.orders_10s)
            headers["X-MBX-ORDER-COUNT-1D"] = str(self.orders_1d)
            if self.orders_10s_limit is not None and self.orders_10s > self.orders_10s_limit:
                retry = {"Retry-After": str(self.retry_after_s)} if self.orders_limit_retry_after else {}
                raise BinanceError(self.orders_limit_http, -1015, "Too many new orders; current limit is "
                                   f"{self.orders_10s_limit} orders per 10 SECOND.", retry | headers)

    @staticmethod
    def _params(request: web.Request) -> dict[str, str]:
        return dict(parse_qsl(request.rel_url.raw_query_string.rpartition("&signature=")[0]))

    def _inst(self, p: dict[str, str]) -> Instrument:
        sym = p.get("symbol")
        if sym is None:
            raise BinanceError(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        inst = self.instruments.get(sym)
        if inst is None:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return inst

    def _find(self, p: dict[str, str]) -> _FakeOrder | None:
        if "origClientOrderId" in p:
            return self.orders.get(p["origClientOrderId"])
        if "orderId" in p:
            oid = int(p["orderId"])
            return next((o for o in self.orders.values() if o.order_id == oid), None)
        raise BinanceError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                                       "empty/null!")

    # ------------------------------------------------------------------ matching via the simulator
    def _validate(self, p: dict[str, str], inst: Instrument) -> tuple[Order, _FakeOrder]:
        cid = p.get("newClientOrderId") or f"web_{next(self._order_ids)}"
        typ = p.get("type", "")
        side = p.get("side", "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        if typ not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        try:
            qty = Decimal(p["quantity"])
            price = Decimal(p.get("price", "0"))
        except (KeyError, InvalidOperation):
            raise BinanceError(400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or "
                                           "malformed.") from None
        existing = self.orders.get(cid)
        if existing is not None and existing.status in ("NEW", "PARTIALLY_FILLED"):
            raise BinanceError(400, -2010, "Duplicate order sent.")
        if typ != "MARKET" and (price < inst.tick_size or price % inst.tick_size != 0):
            raise BinanceError(400, -1013, "Filter failure: PRICE_FILTER")
        if qty < max(inst.min_quantity, inst.lot_size) or (qty - inst.min_quantity) % inst.lot_size != 0:
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        side_e = Side.BUY if side == "BUY" else Side.SELL
        ref = price
        if typ == "MARKET":
            book = self.sim.book(inst.symbol)
            best = book.best_ask_ticks if side_e is Side.BUY else book.best_bid_ticks
            ref = inst.ticks_to_price(best) if best else Decimal(0)
        if inst.min_notional and ref * qty < inst.min_notional:
            raise BinanceError(400, -1013, "Filter failure: NOTIONAL")
        tif_s = p.get("timeInForce", "GTC")
        if typ == "LIMIT":
            if tif_s not in ("GTC", "IOC", "FOK"):
                raise BinanceError(400, -1115, "Invalid timeInForce.")
            tif = TimeInForce(tif_s)
        elif typ == "LIMIT_MAKER":
            tif, tif_s = TimeInForce.POST_ONLY, "GTC"
        else:
            tif, tif_s = TimeInForce.IOC, "GTC"
        iceberg = self._check_iceberg(p, inst, typ, tif_s, qty)
        order = Order(client_order_id=ClientOrderId(cid), venue=inst.venue, symbol=inst.symbol, side=side_e,
                      order_type=OrderType.MARKET if typ == "MARKET" else OrderType.LIMIT,
                      lots=inst.qty_to_lots(qty), price_ticks=None if typ == "MARKET" else inst.price_to_ticks(price),
                      time_in_force=tif)
        now_ms = self._server_ms()
        fo = _FakeOrder(cid, next(self._order_ids), inst.venue_symbol, inst, side, typ, tif_s, price, qty,
                        time_ms=now_ms, update_ms=now_ms, iceberg_qty=iceberg)
        return order, fo

    def _check_iceberg(self, p: dict[str, str], inst: Instrument, typ: str, tif_s: str,
                       qty: Decimal) -> Decimal | None:
        """``icebergQty`` as Binance checks it (after the order's own filters), or ``None``.

        * MARKET: -1106 "Parameter 'icebergQty' sent when not required." (errors.md, -1106);
        * LOT_SIZE applies to icebergQty as to quantity (filters.md), then ICEBERG_PARTS:
          ``ceil(quantity / icebergQty) <= limit``; both -1013 "Filter failure: ...";
        * the matching engine (-2010, errors.md "Messages for ... -2010 NEW_ORDER_REJECTED"):
          "Iceberg orders are not supported for this symbol." (icebergAllowed false),
          "IcebergQty exceeds QTY." (icebergQty must be less than quantity), and "Unsupported
          order combination" for a LIMIT whose timeInForce is not GTC ("Any order with an
          icebergQty MUST have timeInForce set to GTC", rest-api.md, new order).

        The order then matches as a plain order of its whole quantity (no hidden part, no
        refills): a trade through its price can fill it all at once."""
        raw = p.get("icebergQty")
        if raw is None:
            return None
        if typ == "MARKET":
            raise BinanceError(400, -1106, "Parameter 'icebergQty' sent when not required.")
        try:
            ice = Decimal(raw)
        except InvalidOperation:
            raise BinanceError(400, -1100, "Illegal characters found in a parameter.") from None
        if ice < max(inst.min_quantity, inst.lot_size) or (ice - inst.min_quantity) % inst.lot_size != 0:
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        if -(-inst.qty_to_lots(qty) // inst.qty_to_lots(ice)) > self.iceberg_parts:   # ceil, in lots
            raise BinanceError(400, -1013, "Filter failure: ICEBERG_PARTS")
        if not self.iceberg_allowed:
            raise BinanceError(400, -2010, "Iceberg orders are not supported for this symbol.")
        if ice >= qty:
            raise BinanceError(400, -2010, "IcebergQty exceeds QTY.")
        if typ == "LIMIT" and tif_s != "GTC":
            raise BinanceError(400, -2010, "Unsupported order combination")
        return ice

    def _drain(self) -> list[OrderEvent]:
        self._now()
        out = list(self._captured)
        self._captured.clear()
        return out

    def _report(self, fo: _FakeOrder, ev: OrderEvent, cancel_cid: str | None = None) -> dict[str, Any] | None:
        inst = fo.inst
        k = ev.kind
        base: dict[str, Any] = {
            "e": "executionReport", "E": ev.ts_event // NS_PER_MS, "s": fo.symbol, "c": fo.cid, "S": fo.side,
            "o": fo.type, "f": fo.tif, "q": _f8(fo.orig_qty), "p": _f8(fo.price), "P": "0.00000000",
            "F": _f8(fo.iceberg_qty or Decimal(0)), "g": -1, "C": "", "x": "NEW", "X": "NEW", "r": "NONE",
            "i": fo.order_id,
            "l": "0.00000000", "z": _f8(inst.lots_to_qty(fo.executed_lots)), "L": "0.00000000", "n": "0",
            "N": None, "T": ev.ts_event // NS_PER_MS, "t": -1, "v": 3, "I": next(self._trade_ids), "w": True,
            "m": False, "M": False, "O": fo.time_ms, "Z": _f8(fo.cum_quote), "Y": "0.00000000",
            "Q": "0.00000000", "W": fo.time_ms, "V": "NONE"}
        if k is OrderEventKind.ACCEPTED:
            return base
        if ev.fill is not None:
            f = ev.fill
            tid = self._trade_map.setdefault(f.trade_id, next(self._trade_ids))
            price = inst.ticks_to_price(f.price_ticks)
            qty = inst.lots_to_qty(f.lots)
            fo.executed_lots += f.lots
            fo.cum_quote += price * qty
            fo.status = "FILLED" if fo.executed_lots >= inst.qty_to_lots(fo.orig_qty) else "PARTIALLY_FILLED"
            maker = f.liquidity is Liquidity.MAKER
            fo.trades.append({"symbol": fo.symbol, "id": tid, "orderId": fo.order_id, "orderListId": -1,
                              "price": _f8(price), "qty": _f8(qty), "quoteQty": _f8(price * qty),
                              "commission": _f8(f.fee), "commissionAsset": f.fee_currency,
                              "time": f.ts_event // NS_PER_MS, "isBuyer": fo.side == "BUY", "isMaker": maker,
                              "isBestMatch": True})
            base.update({"x": "TRADE", "X": fo.status, "l": _f8(qty), "L": _f8(price), "n": _f8(f.fee),
                         "N": f.fee_currency, "t": tid, "m": maker, "w": fo.status != "FILLED",
                         "z": _f8(inst.lots_to_qty(fo.executed_lots)), "Z": _f8(fo.cum_quote),
                         "Y": _f8(price * qty)})
            return base
        if k is OrderEventKind.CANCELED:
            fo.status = "CANCELED"
            base.update({"x": "CANCELED", "X": "CANCELED", "c": cancel_cid or f"cxl-{fo.order_id}", "C": fo.cid,
                         "w": False})
            return base
        if k is OrderEventKind.EXPIRED:
            fo.status = "EXPIRED"
            base.update({"x": "EXPIRED", "X": "EXPIRED", "w": False})
            return base
        return None

    def _live(self, ws: web.WebSocketResponse) -> bool:
        """Open, and its listen key not expired (an expired key's socket stays open, silent)."""
        return not ws.closed and self._socket_keys.get(id(ws)) in self._listen_keys

    async def _publish(self, reports: list[dict[str, Any]]) -> None:
        for r in reports:
            text = json.dumps({"subscriptionId": 0, "event": r} if self.wrap_events else r)
            for _ in range(2 if self.duplicate_reports else 1):
                for ws in list(self._sockets):
                    if self._live(ws):
                        await ws.send_str(text)
                        self.pushed += 1

    async def _flush(self, cancel_cids: dict[str, str] | None = None) -> list[OrderEvent]:
        """Turn the simulator's events into executionReports, update our order views, push them."""
        events = self._drain()
        reports = []
        for ev in events:
            fo = self.orders.get(ev.client_order_id)
            if fo is None:
                continue
            fo.update_ms = ev.ts_event // NS_PER_MS
            r = self._report(fo, ev, (cancel_cids or {}).get(fo.cid))
            if r is not None:
                reports.append(r)
        if reports and self.account_positions:
            # Binance follows a balance-changing executionReport with an outboundAccountPosition
            # carrying the assets the event may have changed
            insts = [self.instruments[r["s"]] for r in reports]
            assets = sorted({a for inst in insts for a in (inst.base, inst.quote)})
            bal = run_now(self.sim.balances())
            ms = self._server_ms()
            reports.append({"e": "outboundAccountPosition", "E": ms, "u": ms, "B": [
                {"a": a, "f": _f8(bal[a].free if a in bal else Decimal(0)),
                 "l": _f8(bal[a].locked if a in bal else Decimal(0))} for a in assets]})
        await self._publish(reports)
        return events

    async def _place(self, p: dict[str, str]) -> tuple[_FakeOrder, list[OrderEvent]]:
        inst = self._inst(p)
        order, fo = self._validate(p, inst)
        self._now()
        run_now(self.sim.submit(order))
        events = self._drain()
        rej = next((e for e in events if e.client_order_id == fo.cid and e.kind is OrderEventKind.REJECTED), None)
        if rej is not None:
            raise BinanceError(400, int(rej.code or -2010), rej.reason or "Order rejected.")
        self.orders[fo.cid] = fo
        self._captured[:0] = events
        await self._flush()
        return fo, events

    def _order_response(self, fo: _FakeOrder, resp_type: str, events: list[OrderEvent]) -> dict[str, Any]:
        ack = {"symbol": fo.symbol, "orderId": fo.order_id, "orderListId": -1, "clientOrderId": fo.cid,
               "transactTime": fo.time_ms}
        if resp_type == "ACK":
            return ack
        v = fo.view()
        result = ack | {k: v[k] for k in ("price", "origQty", "executedQty", "origQuoteOrderQty",
                                          "cummulativeQuoteQty", "status", "timeInForce", "type", "side")}
        result |= {"workingTime": fo.time_ms, "selfTradePreventionMode": "NONE"}
        if fo.iceberg_qty is not None:   # a conditional field: only when icebergQty was sent
            result["icebergQty"] = v["icebergQty"]
        if resp_type == "FULL":
            ids = {t["id"] for t in fo.trades}
            fills = []
            for e in events:
                if e.fill is not None and self._trade_map.get(e.fill.trade_id) in ids:
                    t = next(t for t in fo.trades if t["id"] == self._trade_map[e.fill.trade_id])
                    fills.append({"price": t["price"], "qty": t["qty"], "commission": t["commission"],
                                  "commissionAsset": t["commissionAsset"], "tradeId": t["id"]})
            result["fills"] = fills
        return result

    # ------------------------------------------------------------------ endpoints
    async def _time(self, request: web.Request) -> web.Response:
        return self._json({"serverTime": self._server_ms()})

    async def _listen_key(self, request: web.Request) -> web.Response:
        if request.headers.get("X-MBX-APIKEY") != self.api_key:
            raise BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if request.method == "POST":
            key = hashlib.sha256(f"{time.time_ns()}-{len(self._listen_keys)}".encode()).hexdigest()
            self._listen_keys.add(key)
            return self._json({"listenKey": key})
        key = request.rel_url.query.get("listenKey", "")
        if key not in self._listen_keys:
            raise BinanceError(400, -1125, "This listenKey does not exist.")
        if request.method == "DELETE":
            self._listen_keys.discard(key)
        return self._json({})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["key"] not in self._listen_keys:
            raise BinanceError(400, -1125, "This listenKey does not exist.")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self._sockets.append(ws)
        self._socket_keys[id(ws)] = request.match_info["key"]
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._sockets.remove(ws)
            self._socket_keys.pop(id(ws), None)
        return ws

    async def _market_ws(self, request: web.Request) -> web.StreamResponse:
        if self._refuse_market > 0:   # drop_market_streams(refuse=n)
            self._refuse_market -= 1
            return web.Response(status=503, text="market data unavailable")
        self.market_streams.append(request.rel_url.query.get("streams", ""))
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        for text in self.market_messages:
            await ws.send_str(text)
        self._market_sockets.append(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._market_sockets.remove(ws)
        return ws

    async def _depth(self, request: web.Request) -> web.Response:
        """GET /api/v3/depth: the public book published with :meth:`publish_book`."""
        p = dict(parse_qsl(request.rel_url.raw_query_string))
        inst = self._inst(p)
        bids, asks = self._public_books.get(inst.venue_symbol, ({}, {}))
        limit = int(p.get("limit", "100"))
        return self._json({
            "lastUpdateId": self._depth_ids.get(inst.venue_symbol, 100),
            "bids": [[k, bids[k]] for k in sorted(bids, key=Decimal, reverse=True)[:limit]],
            "asks": [[k, asks[k]] for k in sorted(asks, key=Decimal)[:limit]]})

    async def _new_order(self, request: web.Request) -> web.Response:
        p = self._params(request)
        fo, events = await self._place(p)
        return self._json(self._order_response(fo, p.get("newOrderRespType", "FULL"), events))

    async def _cancel_one(self, p: dict[str, str], inst: Instrument) -> dict[str, Any]:
        fo = self._find(p)
        if fo is None or fo.symbol != inst.venue_symbol or fo.status not in ("NEW", "PARTIALLY_FILLED"):
            raise BinanceError(400, -2011, "Unknown order sent.")
        cancel_cid = p.get("newClientOrderId") or f"cxl-{next(self._order_ids)}"
        self._now()
        run_now(self.sim.cancel(ClientOrderId(fo.cid)))
        await self._flush({fo.cid: cancel_cid})
        v = fo.view()
        keys = ["price", "origQty", "executedQty", "origQuoteOrderQty", "cummulativeQuoteQty", "status", "timeInForce",
                "type", "side", "selfTradePreventionMode"] + (["icebergQty"] if fo.iceberg_qty is not None else [])
        return {"symbol": fo.symbol, "origClientOrderId": fo.cid, "orderId": fo.order_id, "orderListId": -1,
                "clientOrderId": cancel_cid, "transactTime": self._server_ms(), **{k: v[k] for k in keys}}

    async def _cancel(self, request: web.Request) -> web.Response:
        p = self._params(request)
        return self._json(await self._cancel_one(p, self._inst(p)))

    async def _query(self, request: web.Request) -> web.Response:
        p = self._params(request)
        self._inst(p)
        fo = self._find(p)
        if fo is None:
            raise BinanceError(400, -2013, "Order does not exist.")
        return self._json(fo.view())

    async def _open_orders(self, request: web.Request) -> web.Response:
        p = self._params(request)
        inst = self._inst(p)
        return self._json([o.view() for o in self.orders.values()
                           if o.symbol == inst.venue_symbol and o.status in ("NEW", "PARTIALLY_FILLED")])

    async def _account(self, request: web.Request) -> web.Response:
        bal = run_now(self.sim.balances())
        p = self._params(request)
        omit = p.get("omitZeroBalances") == "true"
        return self._json({"makerCommission": 0, "takerCommission": 0, "canTrade": True, "accountType": "SPOT",
                           "updateTime": self._server_ms(),
                           "balances": [{"asset": a, "free": _f8(b.free), "locked": _f8(b.locked)}
                                        for a, b in sorted(bal.items()) if not (omit and not b.free and not b.locked)],
                           "permissions": ["SPOT"], "uid": 1})

    async def _my_trades(self, request: web.Request) -> web.Response:
        p = self._params(request)
        inst = self._inst(p)
        oid = int(p["orderId"]) if "orderId" in p else None
        try:
            limit = int(p.get("limit", "500"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            raise BinanceError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        trades = sorted((t for o in self.orders.values() if o.symbol == inst.venue_symbol
                         and (oid is None or o.order_id == oid) for t in o.trades), key=lambda t: int(t["id"]))
        if "fromId" in p:
            from_id = int(p["fromId"])
            return self._json([t for t in trades if int(t["id"]) >= from_id][:limit])
        return self._json(trades[-limit:])   # no fromId: the most recent trades

    async def _cancel_replace(self, request: web.Request) -> web.Response:
        p = self._params(request)
        inst = self._inst(p)
        if p.get("cancelReplaceMode") not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise BinanceError(400, -1102, "Mandatory parameter 'cancelReplaceMode' was not sent, was "
                                           "empty/null, or malformed.")
        cp = {"origClientOrderId": p["cancelOrigClientOrderId"]} if "cancelOrigClientOrderId" in p \
            else {"orderId": p.get("cancelOrderId", "")}
        try:
            cancel_resp: dict[str, Any] = await self._cancel_one(cp, inst)
        except BinanceError as e:
            return self._json({"code": -2022, "msg": "Order cancel-replace failed.", "data": {
                "cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": {"code": e.code, "msg": e.msg}, "newOrderResponse": None}}, 400)
        try:
            fo, events = await self._place(p)
        except BinanceError as e:
            return self._json({"code": -2021, "msg": "Order cancel-replace partially failed.", "data": {
                "cancelResult": "SUCCESS", "newOrderResult": "FAILURE", "cancelResponse": cancel_resp,
                "newOrderResponse": {"code": e.code, "msg": e.msg}}}, 409)
        return self._json({"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS", "cancelResponse": cancel_resp,
                           "newOrderResponse": self._order_response(fo, p.get("newOrderRespType", "FULL"), events)})
