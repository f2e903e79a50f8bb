"""``BinanceSpotVenue``: the Binance spot adapter behind :class:`venues.base.Venue`.

Order events come from two sources that are merged per order so that each state is reported once,
in a valid order (ACCEPTED or REJECTED first, fills counted once by trade id, one terminal event
after the last fill):

* the REST answers (new order RESULT/FULL, cancel, cancel-replace, status queries), which arrive
  first for our own requests;
* the user-data stream's ``executionReport`` s, which also carry fills of resting orders.

A venue-reported terminal status whose cumulative quantity is ahead of the fills seen so far is held
back until the fills arrive (from the stream, a FULL response or GET /api/v3/myTrades).

A submit that times out or loses its connection raises :class:`VenueTimeout` /
:class:`VenueDisconnected` (the order is UNKNOWN) and starts a resolver task that queries the order
status after the configured delays and reports what the venue says; only once a query made more
than ``recvWindow`` after the request still finds no order (Binance refuses a request that reaches
its matching engine later than ``timestamp + recvWindow``) is the order reported REJECTED.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from marketdata.clock import NS_PER_MS, Clock
from marketdata.errors import (
    FinalVenueError,
    InsufficientFunds,
    OrderRejected,
    RateLimited,
    UnknownOrderError,
    VenueDisconnected,
    VenueError,
    VenueTimeout,
)
from marketdata.model import (
    ClientOrderId,
    Instrument,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    VenueOrderId,
)
from venues.base import (
    ICEBERG_TIME_IN_FORCE,
    Balance,
    FeeSchedule,
    FeeTier,
    OrderStatusReport,
    Position,
    VenueCapabilities,
    VenueInfo,
    carried_display,
    iceberg_parts,
)
from venues.binance.config import BinanceCredentials, BinanceSpotConfig
from venues.binance.errors import CancelRejected, OrderNotFound, TimestampRejected
from venues.binance.http import BinanceHttpClient
from venues.binance.parsers import (
    ExecutionReport,
    parse_account_balances,
    parse_account_position,
    parse_execution_report,
    parse_full_fill,
    parse_iceberg_qty,
    parse_my_trade,
    parse_order,
    parse_side,
    unwrap_user_event,
)
from venues.ratelimit import RateLimiter
from venues.signing import redact
from venues.tracking import BalanceCache, TrackedOrder, TrackingVenue, next_replacement_id, query_schedule
from venues.ws import ReconnectingWebSocket

__all__ = ["BinanceSpotVenue"]

log = logging.getLogger(__name__)

_CID_RE = re.compile(r"^[.A-Za-z0-9:/_-]{1,36}$")
_TERMINAL = {OrderStatus.FILLED: OrderEventKind.FILLED, OrderStatus.CANCELED: OrderEventKind.CANCELED,
             OrderStatus.EXPIRED: OrderEventKind.EXPIRED, OrderStatus.REJECTED: OrderEventKind.REJECTED}
_LISTEN_KEY_UNKNOWN = -1125   # "This listenKey does not exist."
_TRADES_PAGE = 1000   # GET /api/v3/myTrades: limit default 500, max 1000
_TIF = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}


@dataclass
class _Track(TrackedOrder):
    """What the adapter knows about one of its orders (to merge REST and stream reports)."""

    next_trade_id: int = 0    # myTrades fromId: every trade of the order below it has been read
    recovering: bool = False  # a retry of a failed myTrades read is under way


class BinanceSpotVenue(BalanceCache, TrackingVenue[_Track]):
    """Binance spot over REST + user-data WebSocket. See docs/venues-binance.md.

    The per-order merge, the handlers and the balance cache are :mod:`venues.tracking`'s."""

    _log = log

    def __init__(self, config: BinanceSpotConfig, clock: Clock, *, credentials: BinanceCredentials | None = None,
                 environ: dict[str, str] | None = None, limiter: RateLimiter | None = None) -> None:
        self.config = config
        self._clock = clock
        creds = credentials or BinanceCredentials.from_env(config, environ)
        self.info = VenueInfo(
            venue=config.venue, instruments={i.symbol: i for i in config.instruments},
            capabilities=VenueCapabilities(
                order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
                time_in_force=frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK,
                                         TimeInForce.POST_ONLY}),
                native_modify=False, native_iceberg=True),
            fees=FeeSchedule((FeeTier(maker_bps=config.maker_bps, taker_bps=config.taker_bps),)))
        self._by_venue_symbol = {i.venue_symbol: i for i in config.instruments}
        self.limiter = limiter or RateLimiter.from_preset("binance-spot", clock, overrides=config.rate_limits)
        self.http = BinanceHttpClient(config, creds, clock, self.limiter)
        self._init_tracking(config.instruments)
        self._seen_raw: OrderedDict[str, None] = OrderedDict()
        self._user_ws: ReconnectingWebSocket | None = None
        self._listen_key: str | None = None
        self.replacements: dict[ClientOrderId, ClientOrderId] = {}
        # balances as last read (GET /api/v3/account) or pushed (outboundAccountPosition)
        self._init_balances()
        self.stats = {"events": 0, "duplicates": 0, "garbled": 0, "resolved": 0, "unresolved": 0,
                      "recovered_fills": 0, "polls": 0}

    def __repr__(self) -> str:
        return f"BinanceSpotVenue(venue={self.config.venue!r}, rest_url={self.config.rest_url!r})"

    # ------------------------------------------------------------------ wiring
    @property
    def user_stream(self) -> ReconnectingWebSocket | None:
        return self._user_ws

    async def connect(self) -> None:
        await self.http.start()
        if self.config.sync_time:
            await self.http.sync_time()
        if self.config.user_stream:
            self._user_ws = ReconnectingWebSocket(
                f"{self.config.venue}:user", lambda: self.http.session, self._user_stream_url, self.on_user_message,
                on_connect=self.reconcile, reconnect_max_s=self.config.ws_reconnect_max_s,
                connect_timeout_s=self.config.timeout_s, scrub=self._scrub)
            await self._user_ws.start()
            self._spawn(self._keepalive_loop())
        # the balances: with the stream, read once it is up so no update falls between the two (the
        # stream keeps them current from here, cached_balance); without it, the poll loop does
        try:
            await self.balances()
        except VenueError as e:
            log.warning("%s: balances not read at connect (unknown until the next read): %s", self.venue_id, e)
        if not self.config.user_stream and self.config.poll_interval_s > 0:
            self._spawn(self._poll_loop(float(self.config.poll_interval_s)))

    async def close(self) -> None:
        await self._cancel_tasks()
        if self._user_ws is not None:
            await self._user_ws.close()
            self._user_ws = None
        if self._listen_key is not None:
            # bounded: the DELETE waits on the rate limiter, which during an IP ban would hold the
            # shutdown for the whole ban; an abandoned key expires by itself within 60 minutes
            try:
                async with asyncio.timeout(float(self.config.request_timeout_s)):
                    await self.http.request("DELETE", "/api/v3/userDataStream", {"listenKey": self._listen_key},
                                            request_type="query_order", signed=False)
            except (VenueError, TimeoutError) as e:
                log.info("%s: closing the listen key failed (left to expire): %s", self.venue_id,
                         self._scrub(str(e) or type(e).__name__))
            self._listen_key = None
        await self.http.close()

    async def _user_stream_url(self) -> str:
        data = await self.http.request("POST", "/api/v3/userDataStream", request_type="query_order", signed=False)
        self._listen_key = str(data["listenKey"])
        return f"{self.config.ws_url}/ws/{self._listen_key}"

    async def _poll_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll()
            except VenueError as e:   # a rate limit, a timeout: the next round tries again
                log.warning("%s: poll failed (next in %g s): %s", self.venue_id, interval_s, e)

    async def poll(self) -> list[OrderStatusReport]:
        """One REST round instead of the user stream: GET /api/v3/openOrders for each instrument
        with live orders (weight 6); each live order whose executed quantity grew, or that is
        no longer open, is queried (status, then its trades: the fills reported as after a
        reconnect); then GET /api/v3/account. Returns the status reports applied."""
        live = [tr for tr in self._tracks.values() if tr.terminal is None and tr.accepted]
        reports: list[OrderStatusReport] = []
        for inst in {tr.inst.symbol: tr.inst for tr in live}.values():
            rows = await self._signed("GET", "/api/v3/openOrders", {"symbol": inst.venue_symbol},
                                      request_type="open_orders", cid=None)
            open_now = {o.client_order_id: o for o in (parse_order(r, inst, venue=self.venue_id) for r in rows)}
            for tr in live:
                if tr.inst is not inst or tr.terminal is not None:
                    continue
                rep = open_now.get(tr.order.client_order_id)
                if rep is None:   # gone from the book: filled, cancelled or expired
                    rep = await self._query_and_apply(tr, "poll")
                elif rep.filled_lots > tr.filled_lots:   # open, with new fills
                    await self._apply_and_recover(tr, rep)
                else:
                    continue   # open, nothing new
                if rep is not None:
                    reports.append(rep)
        await self.balances()
        self.stats["polls"] += 1
        return reports

    async def _query_and_apply(self, tr: _Track, what: str) -> OrderStatusReport | None:
        """Query the order's status and apply it (:meth:`_apply_and_recover`); ``None`` if the
        query failed (logged)."""
        try:
            rep = await self.order_status(tr.order.client_order_id)
        except VenueError as e:
            log.warning("%s: %s of %s failed: %s", self.venue_id, what, tr.order.client_order_id, e)
            return None
        await self._apply_and_recover(tr, rep)
        return rep

    async def _apply_and_recover(self, tr: _Track, rep: OrderStatusReport) -> None:
        """Apply a REST status report; fetch the trades when it shows fills not seen yet."""
        if self._apply_report(tr, rep):
            await self._recover_fills(tr)
        if self._report_handler is not None:
            self._report_handler(rep)

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(float(self.config.listen_key_keepalive_s))
            if self._listen_key is not None:
                try:
                    await self.http.request("PUT", "/api/v3/userDataStream", {"listenKey": self._listen_key},
                                            request_type="query_order", signed=False)
                except VenueError as e:
                    log.warning("%s: listen key keepalive failed: %s", self.venue_id, self._scrub(str(e)))
                    if e.code == _LISTEN_KEY_UNKNOWN:
                        # the key expired: its stream is silent from now on; take a new one
                        await self._restart_user_stream("the keepalive found the listen key expired")

    async def _restart_user_stream(self, why: str) -> None:
        """Reconnect the user stream on a fresh listen key (it then reconciles, as after a drop)."""
        if self._user_ws is not None:
            log.warning("%s: %s; reconnecting the user stream with a new listen key", self.venue_id, why)
            await self._user_ws.reconnect()

    def _scrub(self, text: str) -> str:
        return redact(text, self._listen_key)

    # ------------------------------------------------------------------ helpers
    def _inst(self, symbol: str) -> Instrument:
        inst = self.info.instruments.get(symbol)
        if inst is None:
            raise OrderRejected(f"unknown symbol {symbol!r}", venue=self.venue_id, code=-1121)
        return inst

    # ------------------------------------------------------------------ the per-order merge
    def _apply_report(self, tr: _Track, rep: OrderStatusReport) -> bool:
        """Apply a REST view of the order; True if the venue has fills we have not seen."""
        ts = rep.ts_event or self._clock.now_ns()
        if rep.status is OrderStatus.REJECTED:
            self._on_terminal(tr, OrderEventKind.REJECTED, 0, ts, reason="rejected by the venue")
            return False
        if rep.status is OrderStatus.PENDING_NEW:
            return False
        self._on_accepted(tr, rep.venue_order_id, ts)
        tr.venue_cum_lots = max(tr.venue_cum_lots, rep.filled_lots)
        kind = _TERMINAL.get(rep.status)
        if kind is not None:
            self._on_terminal(tr, kind, rep.filled_lots, ts)
        return rep.filled_lots > tr.filled_lots

    def _apply_new_order_response(self, tr: _Track, resp: dict[str, Any]) -> bool:
        tr.venue_order_id = VenueOrderId(str(int(resp["orderId"])))
        if "icebergQty" in resp and parse_iceberg_qty(resp["icebergQty"], tr.inst) != tr.order.display_lots:
            log.warning("%s: %s: the venue's icebergQty %s is not the display sent (%s lots)", self.venue_id,
                        tr.order.client_order_id, resp["icebergQty"], tr.order.display_lots)
        ts = int(resp.get("transactTime") or 0) * NS_PER_MS or self._clock.now_ns()
        if "status" not in resp:  # ACK: the order is in the book (or already traded)
            self._on_accepted(tr, tr.venue_order_id, ts)
            return False
        self._on_accepted(tr, tr.venue_order_id, ts)
        side = parse_side(resp["side"])
        for f in resp.get("fills") or []:
            self._on_fill(tr, parse_full_fill(f, tr.inst, tr.order.client_order_id, side, tr.venue_order_id, ts,
                                              self._clock.now_ns()))
        return self._apply_report(tr, parse_order(resp, tr.inst, venue=self.venue_id))

    async def _recover_fills(self, tr: _Track) -> bool:
        """Fetch the order's trades (GET /api/v3/myTrades, every page) and report those not seen
        yet. A failed read (rate limit, timeout, -1021 again after the resync, ...) is logged and
        retried in the background (:meth:`_retry_recover_fills`), so the caller carries on with its
        other orders; returns False then. Never raises a :class:`VenueError`."""
        if tr.venue_order_id is None:
            return True
        try:
            await self._read_trades(tr)
        except VenueError as e:
            log.warning("%s: trades of %s not read (retrying after %s s): %s", self.venue_id,
                        tr.order.client_order_id, self.config.resolve_delays_s[0], e)
            if not tr.recovering:
                tr.recovering = True
                self._spawn(self._retry_recover_fills(tr))
            return False
        return True

    async def _retry_recover_fills(self, tr: _Track) -> None:
        """Read the order's trades again after each of ``resolve_delays_s`` (then at the last one)
        until a read succeeds or the missing fills arrived another way (the stream). Every read is
        paced by the limiter, which also holds the back-off of a 429/418."""
        delays = [float(d) for d in self.config.resolve_delays_s]
        try:
            attempt = 0
            while True:
                await asyncio.sleep(delays[min(attempt, len(delays) - 1)])
                attempt += 1
                cum = max(tr.venue_cum_lots, tr.pending[1] if tr.pending is not None else 0)
                if tr.filled_lots >= cum and tr.pending is None:
                    return   # nothing missing any more
                try:
                    await self._read_trades(tr)
                except VenueError as e:
                    log.warning("%s: trades of %s still not read (attempt %d): %s", self.venue_id,
                                tr.order.client_order_id, attempt + 1, e)
                    continue
                log.info("%s: trades of %s read on attempt %d", self.venue_id, tr.order.client_order_id,
                         attempt + 1)
                return
        finally:
            tr.recovering = False

    async def _read_trades(self, tr: _Track) -> None:
        """Page through GET /api/v3/myTrades (``orderId`` + ``fromId``, ``limit`` 1000, oldest
        first) from the first trade not read yet, reporting each page's new fills as it comes, until
        a page is not full. Raises the read's :class:`VenueError` (signed: -1021 resyncs and resends)."""
        assert tr.venue_order_id is not None
        while True:
            page = await self._signed("GET", "/api/v3/myTrades",
                                      {"symbol": tr.inst.venue_symbol, "orderId": tr.venue_order_id,
                                       "fromId": tr.next_trade_id, "limit": _TRADES_PAGE},
                                      request_type="account", cid=tr.order.client_order_id)
            self._apply_trades(tr, page)
            if page:
                tr.next_trade_id = max(tr.next_trade_id, max(int(t["id"]) for t in page) + 1)
            if len(page) < _TRADES_PAGE:
                break
        if tr.pending is not None and tr.pending[0] is OrderEventKind.FILLED and tr.terminal is None:
            log.error("%s: %s is FILLED at the venue but its trades add up to %d of %d lots", self.venue_id,
                      tr.order.client_order_id, tr.filled_lots, tr.order.lots)

    def _apply_trades(self, tr: _Track, trades: list[dict[str, Any]]) -> None:
        for t in sorted(trades, key=lambda t: int(t["id"])):
            f = parse_my_trade(t, tr.inst, tr.order.client_order_id, self._clock.now_ns())
            if f.trade_id not in tr.trade_ids and tr.uncounted_lots >= f.lots:
                # one of the order's first trades, made before this session tracked it: already
                # counted in filled_lots (adopt, or the first executionReport's z), not new
                tr.uncounted_lots -= f.lots
                tr.trade_ids.add(f.trade_id)
                continue
            if f.trade_id not in tr.trade_ids:
                self.stats["recovered_fills"] += 1
                self._on_fill(tr, f)

    # ------------------------------------------------------------------ user-data stream
    def on_user_message(self, raw: str) -> None:
        """One user-data stream frame (bare event or ``{"subscriptionId", "event"}`` wrapper).
        Never raises: garbled frames are logged with their raw text and counted."""
        try:
            if raw in self._seen_raw:
                self.stats["duplicates"] += 1
                log.info("%s: duplicate user-data message dropped: %s", self.venue_id, self._scrub(raw))
                return
            self._seen_raw[raw] = None
            if len(self._seen_raw) > 10_000:
                self._seen_raw.popitem(last=False)
            ev = unwrap_user_event(json.loads(raw))
            etype = ev.get("e")
            if etype == "outboundAccountPosition":
                ts, bal = parse_account_position(ev)
                self._update_balances(ts, bal, complete=False)
                return
            if etype == "listenKeyExpired":
                # Binance sends nothing more on this stream (it is not closed): a new key is needed
                self._spawn(self._restart_user_stream("the listen key expired"))
                return
            if etype != "executionReport":
                log.debug("%s: user-data %s ignored", self.venue_id, etype)
                return
            inst = self._by_venue_symbol.get(str(ev.get("s")))
            if inst is None:
                log.info("%s: executionReport for unconfigured symbol %s ignored", self.venue_id, ev.get("s"))
                return
            rep = parse_execution_report(ev, inst, self._clock.now_ns())
            self._apply_execution_report(rep, inst, raw)
        except Exception as e:  # a bad message must never stop the stream
            self.stats["garbled"] += 1
            log.warning("%s: garbled user-data message (%s: %s): %s", self.venue_id, type(e).__name__, e,
                        self._scrub(raw))
            self._report_garbled(raw, f"{type(e).__name__}: {e}")

    def _apply_execution_report(self, rep: ExecutionReport, inst: Instrument, raw: str) -> None:
        ev: OrderEvent = rep.event
        tr = self._tracks.get(ev.client_order_id)
        if tr is None:
            # an order of an earlier run (or another client): track it from what the venue says
            log.info("%s: executionReport for an order not sent in this session: %s", self.venue_id,
                     ev.client_order_id)
            # the order as the venue describes it (S, p, o, f), and its fills before this event
            # (z is cumulative, this event's own fill is l): they happened before we listened
            tr = _Track(Order(client_order_id=ev.client_order_id, venue=self.venue_id, symbol=inst.symbol,
                              side=rep.side, order_type=rep.order_type, lots=rep.order_lots,
                              price_ticks=rep.price_ticks, time_in_force=rep.time_in_force,
                              display_lots=rep.iceberg_lots), inst,
                        venue_order_id=rep.venue_order_id,
                        filled_lots=rep.cum_lots - (ev.fill.lots if ev.fill is not None else 0))
            tr.uncounted_lots = tr.filled_lots
            self._tracks[ev.client_order_id] = tr
        kind = ev.kind
        if ev.fill is not None:
            self._on_fill(tr, ev.fill)
        elif kind is OrderEventKind.ACCEPTED:
            self._on_accepted(tr, ev.venue_order_id, ev.ts_event)
        elif kind is OrderEventKind.REPLACED:
            # an amendment (AMENDMENT) or an STP decrement (TRADE_PREVENTION): the order works on at
            # its new size, which is what completes it (FILLED) from now on
            if ev.new_lots is not None and tr.terminal is None and ev.new_lots != tr.order.lots:
                tr.order = dataclasses.replace(tr.order, lots=ev.new_lots,
                                               display_lots=carried_display(tr.order.display_lots, ev.new_lots))
            self._emit(ev)
        else:
            if kind is OrderEventKind.REJECTED:
                tr.venue_order_id = ev.venue_order_id
            self._on_terminal(tr, kind, rep.cum_lots, ev.ts_event, reason=ev.reason)
            if tr.pending is not None and rep.cum_lots > tr.filled_lots:
                log.info("%s: %s %s with %d lots filled, %d seen: waiting for the fills", self.venue_id,
                         ev.client_order_id, kind.value, rep.cum_lots, tr.filled_lots)

    # ------------------------------------------------------------------ commands
    def _order_params(self, order: Order, inst: Instrument) -> dict[str, Any]:
        if not _CID_RE.match(order.client_order_id):
            raise OrderRejected(f"client order id {order.client_order_id!r} is not 1-36 of [.A-Za-z0-9:/_-]",
                                venue=self.venue_id, client_order_id=order.client_order_id)
        p: dict[str, Any] = {"symbol": inst.venue_symbol, "side": "BUY" if order.side is Side.BUY else "SELL"}
        if order.order_type is OrderType.MARKET:
            p["type"] = "MARKET"
        elif order.order_type is OrderType.LIMIT:
            if order.price_ticks is None:
                raise OrderRejected("a LIMIT order needs a price", venue=self.venue_id,
                                    client_order_id=order.client_order_id)
            if order.time_in_force is TimeInForce.POST_ONLY:
                p["type"] = "LIMIT_MAKER"
            elif order.time_in_force in _TIF:
                p["type"] = "LIMIT"
                p["timeInForce"] = _TIF[order.time_in_force]
            else:
                raise OrderRejected(f"time in force {order.time_in_force.value} is not offered by Binance spot",
                                    venue=self.venue_id, client_order_id=order.client_order_id)
        else:
            raise OrderRejected(f"order type {order.order_type.value} is not supported by this adapter",
                                venue=self.venue_id, client_order_id=order.client_order_id)
        p["quantity"] = inst.lots_to_qty(order.lots)
        if order.order_type is OrderType.LIMIT:
            assert order.price_ticks is not None
            p["price"] = inst.ticks_to_price(order.price_ticks)
        if order.display_lots is not None:
            p["icebergQty"] = self._iceberg_qty(order, inst)
        return p

    def _iceberg_qty(self, order: Order, inst: Instrument) -> Decimal:
        """``icebergQty`` for ``order.display_lots``, in the instrument's step like ``quantity``.
        Refuses (:class:`OrderRejected`, nothing sent) what Binance would refuse: another type or
        time in force than LIMIT + GTC or LIMIT_MAKER, a display not in (0, lots), below the
        LOT_SIZE minimum, or (when ``iceberg_parts`` is configured for the symbol) more parts
        ``ceil(lots / display)`` than the symbol's ICEBERG_PARTS limit."""
        display = order.display_lots
        assert display is not None
        cid = order.client_order_id

        def refuse(why: str) -> OrderRejected:
            return OrderRejected(f"iceberg refused before sending: {why}", venue=self.venue_id, client_order_id=cid)

        if order.order_type is not OrderType.LIMIT or order.time_in_force not in ICEBERG_TIME_IN_FORCE:
            raise refuse(f"Binance spot takes icebergQty only on LIMIT with time in force GTC or on LIMIT_MAKER "
                         f"(POST_ONLY), not {order.order_type.value} {order.time_in_force.value}")
        if not 0 < display < order.lots:
            raise refuse(f"display {display} lots must be above 0 and below the order's {order.lots} lots "
                         f'(Binance: "IcebergQty exceeds QTY.")')
        qty = inst.lots_to_qty(display)
        if qty < inst.min_quantity:
            raise refuse(f'display {qty} is below the minimum quantity {inst.min_quantity} '
                         f'(Binance: "Filter failure: LOT_SIZE")')
        limit = self.config.iceberg_parts.get(inst.symbol)
        parts = iceberg_parts(order.lots, display)
        if limit is not None and parts > limit:
            raise refuse(f"{parts} parts (ceil({order.lots} / {display}) lots) is above the symbol's ICEBERG_PARTS "
                         f'limit {limit} (Binance: "Filter failure: ICEBERG_PARTS")')
        return qty

    async def _signed(self, method: str, path: str, params: dict[str, Any], *, request_type: str,
                      cid: str | None, return_error_body: bool = False) -> Any:
        """A signed call; a -1021 (timestamp outside recvWindow: the request was not executed) makes
        one clock resync and one resend."""
        try:
            return await self.http.request(method, path, params, request_type=request_type, client_order_id=cid,
                                           return_error_body=return_error_body)
        except TimestampRejected:
            if not self.config.sync_time:
                raise
            log.warning("%s: -1021 on %s %s; resyncing the clock offset and resending once",
                        self.venue_id, method, path)
            await self.http.sync_time()
            return await self.http.request(method, path, params, request_type=request_type, client_order_id=cid,
                                           return_error_body=return_error_body)

    async def submit(self, order: Order) -> None:
        """POST /api/v3/order with ``newClientOrderId`` = our id. Venue rejections (filters,
        balance, LIMIT_MAKER that would take) become REJECTED events; a timeout or a dropped
        connection raises and leaves the order UNKNOWN until the resolver (or the stream) settles
        it; a 429/418 raises :class:`RateLimited` (the venue did not take it)."""
        inst = self._inst(order.symbol)
        params = self._order_params(order, inst)
        params["newClientOrderId"] = order.client_order_id
        params["newOrderRespType"] = self.config.order_resp_type
        cid = order.client_order_id
        tr = self._tracks.get(cid)
        if tr is None or tr.terminal is OrderEventKind.REJECTED:
            tr = _Track(order, inst)
            self._tracks[cid] = tr
        sent_ns = self._clock.now_ns()
        try:
            resp = await self._signed("POST", "/api/v3/order", params, request_type="new_order", cid=cid)
        except (VenueTimeout, VenueDisconnected):
            self._spawn(self._resolve_unknown(cid, sent_ns))
            raise
        except (OrderRejected, InsufficientFunds) as e:
            text = e.venue_text or e.message
            if "duplicate order" in text.lower():
                # our id is already at the venue (a resend): find out what it is doing
                log.info("%s: %s already at the venue; querying its status", self.venue_id, cid)
                self._spawn(self._resolve_unknown(cid, sent_ns))
                return
            self._on_terminal(tr, OrderEventKind.REJECTED, 0, self._clock.now_ns(), reason=text,
                              code=None if e.code is None else str(e.code))
            return
        if self._apply_new_order_response(tr, resp):
            self._spawn(self._settle_fills_later(cid))

    async def _settle_fills_later(self, cid: ClientOrderId) -> None:
        """The venue reported fills the stream has not delivered yet: give the stream a moment,
        then fetch what is still missing."""
        await asyncio.sleep(float(self.config.resolve_delays_s[0]))
        tr = self._tracks[cid]
        if tr.pending is not None and tr.terminal is None:
            await self._recover_fills(tr)

    async def cancel(self, client_order_id: ClientOrderId) -> None:
        """DELETE /api/v3/order by ``origClientOrderId``. A refusal (-2011 unknown or finished
        order) is a CANCEL_REJECTED event; transport failures raise."""
        inst = self._symbol_for(client_order_id)
        tr = self._tracks.get(client_order_id)
        try:
            resp = await self._signed("DELETE", "/api/v3/order",
                                      {"symbol": inst.venue_symbol, "origClientOrderId": client_order_id},
                                      request_type="cancel", cid=client_order_id)
        except (CancelRejected, OrderNotFound) as e:
            self._emit(OrderEvent(kind=OrderEventKind.CANCEL_REJECTED, client_order_id=client_order_id,
                                  venue=self.venue_id, ts_event=self._clock.now_ns(), ts_init=self._clock.now_ns(),
                                  venue_order_id=tr.venue_order_id if tr else None,
                                  reason=e.venue_text or e.message, code=None if e.code is None else str(e.code)))
            return
        if tr is None:
            tr = _Track(self._order_from_report(parse_order(resp, inst, venue=self.venue_id), inst), inst)
            self._tracks[client_order_id] = tr
        if self._apply_report(tr, parse_order(resp, inst, venue=self.venue_id)):
            self._spawn(self._settle_fills_later(client_order_id))

    def adopt(self, report: OrderStatusReport) -> None:
        """Track an order this session did not send (e.g. listed by :meth:`open_orders` at start)
        from the venue's report, with its fills so far already counted, so that it can be
        cancelled by client id on any configured symbol and its later events carry its side and
        size. Nothing is sent; an order already tracked is left as it is."""
        if report.client_order_id in self._tracks:
            return
        inst = self._inst(report.symbol)
        tr = _Track(self._order_from_report(report, inst), inst, venue_order_id=report.venue_order_id,
                    accepted=report.status is not OrderStatus.PENDING_NEW, filled_lots=report.filled_lots,
                    uncounted_lots=report.filled_lots)
        self._tracks[report.client_order_id] = tr

    def _order_from_report(self, rep: OrderStatusReport, inst: Instrument) -> Order:
        return Order(client_order_id=rep.client_order_id, venue=self.venue_id, symbol=inst.symbol, side=rep.side,
                     order_type=OrderType.LIMIT if rep.price_ticks else OrderType.MARKET, lots=rep.lots,
                     price_ticks=rep.price_ticks)

    def derive_replacement_id(self, client_order_id: ClientOrderId) -> ClientOrderId:
        """``<id>.r<n>`` (Binance allows no ``~``); a blake2b digest when that is over 36 chars."""
        return next_replacement_id(client_order_id, self._tracks.get(client_order_id), ".")

    async def replace(self, client_order_id: ClientOrderId, *, lots: int | None = None,
                      price_ticks: int | None = None) -> None:
        """Cancel-then-new (``native_modify`` is False): POST /api/v3/order/cancelReplace with
        ``cancelReplaceMode=STOP_ON_FAILURE``, so the new order (id from
        :meth:`derive_replacement_id`, for ``lots`` total minus what is filled) is only placed once
        the venue has cancelled the old one. ``replacements[old]`` is the new id."""
        tr = self._tracks.get(client_order_id)
        if tr is None:
            raise UnknownOrderError(f"{self.venue_id}: cannot replace {client_order_id}: not sent in this session")
        o = tr.order
        total = o.lots if lots is None else lots
        rem = total - tr.filled_lots
        if rem <= 0:
            raise OrderRejected(f"new quantity {total} lots is not above the {tr.filled_lots} filled",
                                venue=self.venue_id, client_order_id=client_order_id)
        # an iceberg stays one (same display) unless the remainder is no bigger than its display
        display = carried_display(o.display_lots, rem)
        new = Order(client_order_id=self.derive_replacement_id(client_order_id), venue=o.venue, symbol=o.symbol,
                    side=o.side, order_type=o.order_type, lots=rem,
                    price_ticks=o.price_ticks if price_ticks is None else price_ticks,
                    time_in_force=o.time_in_force, display_lots=display, parent_id=o.parent_id,
                    decision_id=o.decision_id, ts_init=self._clock.now_ns())
        await self.cancel_replace(client_order_id, new)

    async def cancel_replace(self, old_client_order_id: ClientOrderId, new: Order) -> None:
        """Cancel ``old_client_order_id`` and, only if that succeeded, place ``new`` (one request,
        POST /api/v3/order/cancelReplace, STOP_ON_FAILURE). The old order gets CANCELED or
        CANCEL_REJECTED, the new one ACCEPTED or REJECTED ("not attempted" when the cancel failed)."""
        inst = self._inst(new.symbol)
        old_tr = self._tracks.get(old_client_order_id)
        params = self._order_params(new, inst)
        params["cancelReplaceMode"] = "STOP_ON_FAILURE"
        params["cancelOrigClientOrderId"] = old_client_order_id
        params["newClientOrderId"] = new.client_order_id
        params["newOrderRespType"] = self.config.order_resp_type
        new_tr = _Track(new, inst)
        self._tracks[new.client_order_id] = new_tr
        self.replacements[old_client_order_id] = new.client_order_id
        sent_ns = self._clock.now_ns()
        try:
            resp = await self._signed("POST", "/api/v3/order/cancelReplace", params, request_type="replace",
                                      cid=old_client_order_id, return_error_body=True)
        except (VenueTimeout, VenueDisconnected):
            self._spawn(self._resolve_unknown(new.client_order_id, sent_ns))
            if old_tr is not None:
                self._spawn(self._resolve_unknown(old_client_order_id, sent_ns))
            raise
        except RateLimited:
            # 429/418: refused before the venue looked at it, nothing was cancelled or placed; the
            # new order's record and the replacement link must not outlive the request (they named
            # an order that was never sent)
            self._tracks.pop(new.client_order_id, None)
            if self.replacements.get(old_client_order_id) == new.client_order_id:
                del self.replacements[old_client_order_id]
            raise
        except FinalVenueError as e:  # refused as a whole (filters, -1021 twice, ...): nothing changed
            now = self._clock.now_ns()
            self._on_terminal(new_tr, OrderEventKind.REJECTED, 0, now, reason=e.venue_text or e.message,
                              code=None if e.code is None else str(e.code))
            self._emit(OrderEvent(kind=OrderEventKind.CANCEL_REJECTED, client_order_id=old_client_order_id,
                                  venue=self.venue_id, ts_event=now, ts_init=now,
                                  reason=f"cancel-replace refused: {e.venue_text or e.message}",
                                  code=None if e.code is None else str(e.code)))
            return
        data = resp.get("data", resp) if "__http_status__" in resp else resp
        now = self._clock.now_ns()
        cancel_resp = data.get("cancelResponse") or {}
        new_resp = data.get("newOrderResponse") or {}
        if data.get("cancelResult") == "SUCCESS":
            if old_tr is None:
                old_tr = _Track(self._order_from_report(parse_order(cancel_resp, inst, venue=self.venue_id), inst),
                                inst)
                self._tracks[old_client_order_id] = old_tr
            if self._apply_report(old_tr, parse_order(cancel_resp, inst, venue=self.venue_id)):
                self._spawn(self._settle_fills_later(old_client_order_id))
        else:
            self._emit(OrderEvent(kind=OrderEventKind.CANCEL_REJECTED, client_order_id=old_client_order_id,
                                  venue=self.venue_id, ts_event=now, ts_init=now,
                                  reason=str(cancel_resp.get("msg", "cancel failed")),
                                  code=str(cancel_resp.get("code", ""))))
        if data.get("newOrderResult") == "SUCCESS":
            if self._apply_new_order_response(new_tr, new_resp):
                self._spawn(self._settle_fills_later(new.client_order_id))
        else:
            reason = ("not attempted: the cancel failed" if data.get("newOrderResult") == "NOT_ATTEMPTED"
                      else str(new_resp.get("msg", "new order failed")))
            self._on_terminal(new_tr, OrderEventKind.REJECTED, 0, now, reason=reason,
                              code=str(new_resp.get("code", resp.get("code", ""))))

    # ------------------------------------------------------------------ UNKNOWN resolution
    def resolve_unknown(self, client_order_id: ClientOrderId, sent_ns: int | None = None) -> asyncio.Task[Any]:
        """Start (as an owned background task) the status queries that settle an order whose
        submit the caller abandoned (e.g. its own timeout cancelled :meth:`submit` mid-request);
        ``sent_ns``: when the request was signed (default now, which only delays the final
        "no such order" verdict). What the venue says is reported through the event handler."""
        return self._spawn(self._resolve_unknown(client_order_id,
                                                 self._clock.now_ns() if sent_ns is None else sent_ns))

    async def _resolve_unknown(self, cid: ClientOrderId, sent_ns: int) -> OrderStatusReport | None:
        """Query the order after each configured delay until the venue knows it; the last query is
        made no earlier than ``recvWindow`` after the request was sent, so "no such order" then is
        final (REJECTED). A query that got no answer (timeout, dropped connection, 5xx, rate limit)
        proves nothing: the queries go on at the last delay until the venue answers."""
        horizon_ns = sent_ns + (self.config.recv_window_ms + 1000) * NS_PER_MS
        async for i, last in query_schedule(self.config.resolve_delays_s, horizon_ns, self._clock):
            tr = self._tracks.get(cid)
            if tr is None:
                return None
            try:
                rep = await self.order_status(cid)
            except OrderNotFound:
                log.info("%s: %s not at the venue yet (query %d of %d)", self.venue_id, cid, i + 1,
                         len(self.config.resolve_delays_s))
                if last:
                    break   # asked after the horizon: "no such order" is final
                continue
            except VenueError as e:
                # no answer is not "no such order": the status stays UNKNOWN, keep asking
                # (at the last delay once the configured ones are used up)
                log.warning("%s: status query for UNKNOWN %s failed: %s", self.venue_id, cid, e)
                if last and tr.terminal is not None:
                    return None   # settled meanwhile by another source (the stream)
                continue
            self.stats["resolved"] += 1
            log.info("%s: UNKNOWN %s resolved: %s, %d lots filled", self.venue_id, cid, rep.status.value,
                     rep.filled_lots)
            if self._apply_report(tr, rep):
                await self._recover_fills(tr)
            if self._report_handler is not None:
                self._report_handler(rep)
            return rep
        self._reject_unresolved(cid, "-2013")
        return None

    async def reconcile(self) -> list[OrderStatusReport]:
        """Query every order this session still thinks is live and apply what the venue says
        (run after each user-stream reconnection, and callable at any time)."""
        reports = []
        for tr in list(self._tracks.values()):
            if tr.terminal is not None or not tr.accepted:
                continue
            rep = await self._query_and_apply(tr, "reconcile")
            if rep is not None:
                reports.append(rep)
        if self.config.user_stream:
            # balance events sent while the stream was down are lost: read the account again
            try:
                await self.balances()
            except VenueError as e:
                log.warning("%s: balances not refreshed after reconnect: %s", self.venue_id, e)
        return reports

    # ------------------------------------------------------------------ queries
    async def order_status(self, client_order_id: ClientOrderId) -> OrderStatusReport:
        """GET /api/v3/order by ``origClientOrderId``. An order the venue refused on entry is not
        kept by Binance (-2013); the adapter answers REJECTED for those from its own record."""
        inst = self._symbol_for(client_order_id)
        try:
            o = await self._signed("GET", "/api/v3/order",
                                   {"symbol": inst.venue_symbol, "origClientOrderId": client_order_id},
                                   request_type="query_order", cid=client_order_id)
        except OrderNotFound:
            rejected = self._rejected_report(client_order_id, inst)
            if rejected is not None:
                return rejected
            raise
        return parse_order(o, inst, venue=self.venue_id)

    async def open_orders(self, symbol: str | None = None) -> list[OrderStatusReport]:
        """GET /api/v3/openOrders for ``symbol`` or each configured instrument (weight 6 each)."""
        insts = [self._inst(symbol)] if symbol is not None else list(self.config.instruments)
        out: list[OrderStatusReport] = []
        for inst in insts:
            rows = await self._signed("GET", "/api/v3/openOrders", {"symbol": inst.venue_symbol},
                                      request_type="open_orders", cid=None)
            out.extend(parse_order(r, inst, venue=self.venue_id) for r in rows)
        return out

    async def balances(self) -> dict[str, Balance]:
        """GET /api/v3/account (``omitZeroBalances=true``); also refreshes :meth:`cached_balance`."""
        acc = await self._signed("GET", "/api/v3/account", {"omitZeroBalances": "true"}, request_type="account",
                                 cid=None)
        bal = parse_account_balances(acc)
        ts = int(acc["updateTime"]) * NS_PER_MS if "updateTime" in acc else self._clock.now_ns()
        self._update_balances(ts, bal, complete=True)
        return bal

    async def positions(self) -> list[Position]:
        """Spot has no positions; reported as the base-asset balance of each configured instrument."""
        bal = await self.balances()
        return [Position(str(i.symbol), bal[i.base].total if i.base in bal else Decimal(0))
                for i in self.config.instruments]
