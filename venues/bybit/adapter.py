"""``BybitSpotVenue``: the Bybit v5 spot adapter (``category=spot``) behind :class:`venues.base.Venue`.

Order events come from two sources merged per order so that each state is reported once, in a valid
order (ACCEPTED or REJECTED first, fills counted once by ``execId``, one terminal event after the
last fill):

* the REST answers: POST /v5/order/create answers ``{orderId, orderLinkId}`` only (ACCEPTED), the
  order queries (GET /v5/order/realtime, /v5/order/history) and GET /v5/execution/list;
* the private stream's ``order`` pushes (status changes) and ``execution`` pushes (fills), which
  arrive on separate topics in either order.

A terminal status whose ``cumExecQty`` is ahead of the fills seen so far is held back until the fills
arrive (from the stream, or GET /v5/execution/list after ``resolve_delays_s[0]``).

Bybit's end states map as follows. ``Filled`` -> FILLED. ``Cancelled`` / ``PartiallyFilledCanceled``
-> CANCELED when we asked for the cancel (``cancelType`` ``CancelByUser`` or a cancel sent by this
session), otherwise EXPIRED: the venue ended the order (an IOC or market remainder, a PostOnly
that would have taken liquidity, ``rejectReason`` ``EC_PostOnlyWillTakeLiquidity``), with Bybit's
``rejectReason`` as the reason. ``Rejected`` -> REJECTED only for an order never acknowledged and
never filled; after ACCEPTED (the create answer) or after fills it is EXPIRED with its reason, since
a rejection after acknowledgement is not a state the order manager allows.

A submit that times out or loses its connection raises :class:`VenueTimeout` /
:class:`VenueDisconnected` (the order is UNKNOWN) and starts a resolver task that queries the order
by ``orderLinkId`` after the configured delays; only a query made more than ``recv_window`` + 1 s
after the request that still finds no order (Bybit refuses a request that reaches it later than
``timestamp + recv_window``) makes it REJECTED.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from marketdata.clock import NS_PER_MS, Clock
from marketdata.errors import (
    InsufficientFunds,
    OrderRejected,
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
    Balance,
    FeeSchedule,
    FeeTier,
    OrderStatusReport,
    Position,
    VenueCapabilities,
    VenueInfo,
)
from venues.bybit.config import BybitCredentials, BybitSpotConfig
from venues.bybit.errors import FILTER_OF_CODE, CancelRejected, DuplicateOrder, OrderNotFound, TimestampRejected
from venues.bybit.http import BybitHttpClient
from venues.bybit.parsers import (
    BybitExecution,
    BybitOrder,
    category_of,
    parse_execution,
    parse_instruments,
    parse_order,
    parse_wallet_balance,
    parse_ws_wallet,
    unwrap_push,
)
from venues.bybit.ws_private import BybitPrivateWebSocket
from venues.ratelimit import RateLimiter
from venues.tracking import BalanceCache, TrackedOrder, TrackingVenue, next_replacement_id, query_schedule

__all__ = ["BybitSpotVenue", "wire_client_id"]

log = logging.getLogger(__name__)

_CID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")   # orderLinkId: <= 36 of letters, digits, "-" and "_"
_CID_HEAD = re.compile(r"^[A-Za-z0-9_]{1,8}-")       # a prefix such as "sx-" kept by wire_client_id


def wire_client_id(client_order_id: str) -> str:
    """The ``orderLinkId`` sent for ``client_order_id``: the id itself when Bybit takes it (1-36 of
    ``[A-Za-z0-9_-]``), else its leading ``<prefix>-`` (letters, digits, ``_``; e.g. ``sx-``, so an
    order left open by an earlier run is still recognised as sorex's) followed by a blake2b hex
    digest of the whole id, 36 characters in all. Deterministic: a resend of the same id maps to
    the same ``orderLinkId`` (Bybit's duplicate check still works across restarts)."""
    if _CID_RE.match(client_order_id):
        return client_order_id
    m = _CID_HEAD.match(client_order_id)
    head = m.group(0) if m else "x-"
    return head + hashlib.blake2b(client_order_id.encode(), digest_size=16).hexdigest()[:36 - len(head)]

_TIF = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK", TimeInForce.POST_ONLY: "PostOnly"}
_PAGE = 50   # order/realtime, order/history: limit max 50; execution/list: max 100
_EXEC_PAGE = 100
_NO_REASON = frozenset({"", "EC_NoError", "UNKNOWN"})
_P = TypeVar("_P")


@dataclass
class _Track(TrackedOrder):
    """What the adapter knows about one of its orders (to merge REST and stream reports)."""

    cancel_requested: bool = False
    settling: bool = False    # a delayed execution/list read is scheduled
    done: asyncio.Event = field(default_factory=asyncio.Event)   # set once terminal


class BybitSpotVenue(BalanceCache, TrackingVenue[_Track]):
    """Bybit v5 spot over REST + the private WebSocket. See docs/venues-bybit.md.

    ``map_client_ids``: a client order id Bybit cannot take as ``orderLinkId`` is sent as
    :func:`wire_client_id` of it, and every answer, push and report naming that ``orderLinkId`` is
    mapped back to our id (the engine asks for this: its ids may hold a ``.`` from a parent id).
    Without it (the default) such an id is refused before anything is sent.

    The per-order merge, the handlers and the balance cache are :mod:`venues.tracking`'s."""

    _log = log
    _FILL_NOUN = "execution"

    def __init__(self, config: BybitSpotConfig, clock: Clock, *, credentials: BybitCredentials | None = None,
                 environ: dict[str, str] | None = None, limiter: RateLimiter | None = None,
                 map_client_ids: bool = False) -> None:
        self.config = config
        self.map_client_ids = map_client_ids
        self._from_wire: dict[str, ClientOrderId] = {}   # orderLinkId -> our id, for the mapped ones
        self._clock = clock
        creds = credentials or BybitCredentials.from_env(config, environ)
        self.info = VenueInfo(
            venue=config.venue, instruments={i.symbol: i for i in config.instruments},
            capabilities=VenueCapabilities(
                order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
                time_in_force=frozenset(_TIF), native_modify=False, native_iceberg=False),
            fees=FeeSchedule((FeeTier(maker_bps=config.maker_bps, taker_bps=config.taker_bps),)))
        self._by_venue_symbol = {i.venue_symbol: i for i in config.instruments}
        self.limiter = limiter or RateLimiter.from_preset("bybit", clock, overrides=config.rate_limits)
        self.http = BybitHttpClient(config, creds, clock, self.limiter)
        self._init_tracking(config.instruments)
        self._seen_raw: OrderedDict[str, None] = OrderedDict()
        self._ws: BybitPrivateWebSocket | None = None
        self.replacements: dict[ClientOrderId, ClientOrderId] = {}
        self._init_balances()
        self.stats = {"events": 0, "duplicates": 0, "garbled": 0, "resolved": 0, "unresolved": 0,
                      "recovered_fills": 0, "other_category": 0}

    def __repr__(self) -> str:
        return f"BybitSpotVenue(venue={self.config.venue!r}, rest_url={self.config.rest_url!r})"

    # ------------------------------------------------------------------ wiring
    @property
    def user_stream(self) -> BybitPrivateWebSocket | None:
        return self._ws

    async def connect(self) -> None:
        """Open the session, measure the clock offset, log in to the private stream (raises
        :class:`~venues.bybit.errors.AuthenticationError` with Bybit's text if refused) and read
        the balances."""
        await self.http.start()
        if self.config.sync_time:
            await self.http.sync_time()
        self._ws = BybitPrivateWebSocket(
            f"{self.venue_id}:private", lambda: self.http.session, self.config.ws_private_url,
            self.http.ws_auth_args, self.on_push, on_connect=self.reconcile,
            ping_interval_s=float(self.config.ping_interval_s), ack_timeout_s=self.config.timeout_s,
            reconnect_max_s=self.config.ws_reconnect_max_s, connect_timeout_s=self.config.timeout_s,
            scrub=self.http.scrub, venue=self.venue_id)
        try:
            await self._ws.start()
        except VenueError:
            self._ws = None
            raise
        try:
            await self.balances()
        except VenueError as e:
            log.warning("%s: balances not read at connect (unknown until the next read): %s", self.venue_id, e)

    async def close(self) -> None:
        await self._cancel_tasks()
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        await self.http.close()

    async def fetch_instruments(self, symbols: Mapping[str, str] | None = None) -> list[Instrument]:
        """GET /v5/market/instruments-info?category=spot (public, every page) -> instruments with
        Bybit's tick, lot, minimum quantity and minimum notional. ``symbols``: venue symbol ->
        sorex symbol (default: the configured instruments' names)."""
        names = dict(symbols) if symbols is not None else {i.venue_symbol: str(i.symbol)
                                                          for i in self.config.instruments}
        out: list[Instrument] = []
        cursor = ""
        while True:
            params: dict[str, Any] = {"category": "spot"}
            if len(names) == 1:
                params["symbol"] = next(iter(names))
            if cursor:
                params["cursor"] = cursor
            res = await self.http.request("GET", "/v5/market/instruments-info", params,
                                          request_type="query_order", signed=False)
            out.extend(self._parsed("/v5/market/instruments-info", None, parse_instruments, res, venue=self.venue_id,
                                    symbols=names))
            cursor = str(res.get("nextPageCursor") or "")
            if not cursor:
                return out

    # ------------------------------------------------------------------ helpers
    def _parsed(self, path: str, cid: str | None, parser: Callable[..., _P], *args: Any, **kw: Any) -> _P:
        """``parser(*args, **kw)`` on a REST answer; a malformed answer is a :class:`VenueError`
        naming the endpoint and what was wrong (never a bare ``KeyError``)."""
        try:
            return parser(*args, **kw)
        except (KeyError, ValueError, TypeError, ArithmeticError) as e:
            raise VenueError(f"{path}: malformed answer ({type(e).__name__}: {e})", venue=self.venue_id,
                             client_order_id=cid) from e

    def _rows(self, path: str, cid: str | None, res: Any) -> list[Mapping[str, Any]]:
        rows = res.get("list") if isinstance(res, Mapping) else None
        if rows is None:
            rows = []
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
            raise VenueError(f"{path}: malformed answer (list is not a list of objects)", venue=self.venue_id,
                             client_order_id=cid)
        return rows

    def _inst(self, symbol: str) -> Instrument:
        inst = self.info.instruments.get(symbol)
        if inst is None:
            raise OrderRejected(f"unknown symbol {symbol!r}", venue=self.venue_id, code=10001)
        return inst

    def _wire(self, cid: ClientOrderId) -> str:
        """The ``orderLinkId`` of our ``cid`` (see ``map_client_ids``)."""
        if not self.map_client_ids or _CID_RE.match(cid):
            return cid
        link = wire_client_id(cid)
        self._from_wire[link] = cid
        return link

    def _local_order(self, bo: BybitOrder) -> BybitOrder:
        """``bo`` with our id in place of a mapped ``orderLinkId``."""
        cid = self._from_wire.get(bo.report.client_order_id)
        if cid is None:
            return bo
        return dataclasses.replace(bo, report=dataclasses.replace(bo.report, client_order_id=cid))

    def _local_exec(self, ex: BybitExecution) -> BybitExecution:
        cid = self._from_wire.get(ex.client_order_id)
        if cid is None:
            return ex
        fill = None if ex.fill is None else dataclasses.replace(ex.fill, client_order_id=cid)
        return dataclasses.replace(ex, client_order_id=cid, fill=fill)

    # ------------------------------------------------------------------ the per-order merge
    def _set_terminal(self, tr: _Track, kind: OrderEventKind) -> None:
        super()._set_terminal(tr, kind)
        tr.done.set()   # wakes a replace waiting for the cancel

    def _on_terminal_held(self, tr: _Track) -> None:
        # the fills are still on their way (execution topic) or must be fetched (execution/list)
        if not tr.settling:
            tr.settling = True
            self._spawn(self._settle_fills_later(tr))

    def _apply_order(self, tr: _Track, bo: BybitOrder) -> bool:
        """Apply one venue view of the order (a query answer or an ``order`` push); True if the
        venue counts fills we have not seen."""
        rep = bo.report
        ts = rep.ts_event or self._clock.now_ns()
        reason = bo.reject_reason if bo.reject_reason not in _NO_REASON else None
        if rep.status is OrderStatus.PENDING_NEW:
            return False
        if rep.status is OrderStatus.REJECTED and rep.filled_lots == 0 and not tr.accepted:
            self._on_terminal(tr, OrderEventKind.REJECTED, 0, ts, reason=reason or "rejected by the venue",
                              code=bo.reject_reason or None)
            return False
        self._on_accepted(tr, rep.venue_order_id, ts)
        tr.venue_cum_lots = max(tr.venue_cum_lots, rep.filled_lots)
        if rep.status is OrderStatus.FILLED:
            self._on_terminal(tr, OrderEventKind.FILLED, rep.filled_lots, ts)
        elif rep.status in (OrderStatus.CANCELED, OrderStatus.REJECTED):
            ours = rep.status is OrderStatus.CANCELED and (bo.cancel_type == "CancelByUser" or tr.cancel_requested)
            kind = OrderEventKind.CANCELED if ours else OrderEventKind.EXPIRED
            if not ours and reason is None:
                reason = f"ended by the venue ({bo.venue_status}, cancelType {bo.cancel_type or 'none'})"
            self._on_terminal(tr, kind, rep.filled_lots, ts, reason=reason)
        return rep.filled_lots > tr.filled_lots

    async def _settle_fills_later(self, tr: _Track) -> None:
        """The venue counts fills the stream has not delivered yet: give the stream a moment, then
        read the order's executions (again after each delay until they are all in)."""
        delays = [float(d) for d in self.config.resolve_delays_s]
        try:
            for i in range(len(delays) + 2):
                await asyncio.sleep(delays[min(i, len(delays) - 1)])
                if tr.terminal is not None or tr.pending is None:
                    return
                try:
                    await self._read_executions(tr)
                except VenueError as e:
                    log.warning("%s: executions of %s not read: %s", self.venue_id, tr.order.client_order_id, e)
            if tr.terminal is None:
                log.error("%s: %s: the venue counts %d lots filled, its executions add up to %d", self.venue_id,
                          tr.order.client_order_id, tr.venue_cum_lots, tr.filled_lots)
        finally:
            tr.settling = False

    async def _read_executions(self, tr: _Track) -> None:
        """GET /v5/execution/list for the order (every page); reports the fills not seen yet."""
        if tr.venue_order_id is None:
            return
        cursor = ""
        rows: list[Mapping[str, Any]] = []
        while True:
            params: dict[str, Any] = {"category": "spot", "symbol": tr.inst.venue_symbol,
                                      "orderId": tr.venue_order_id, "limit": _EXEC_PAGE}
            if cursor:
                params["cursor"] = cursor
            res = await self._signed("GET", "/v5/execution/list", params, request_type="account",
                                     cid=tr.order.client_order_id)
            rows.extend(self._rows("/v5/execution/list", tr.order.client_order_id, res))
            cursor = str(res.get("nextPageCursor") or "")
            if not cursor:
                break
        execs = [self._local_exec(self._parsed("/v5/execution/list", tr.order.client_order_id, parse_execution, r,
                                               tr.inst, self._clock.now_ns())) for r in rows]
        for ex in sorted(execs, key=lambda x: x.fill.ts_event if x.fill is not None else 0):
            f = ex.fill
            if f is None or f.trade_id in tr.trade_ids:
                continue
            if tr.uncounted_lots >= f.lots:
                # a fill made before this session tracked the order: already in filled_lots
                tr.uncounted_lots -= f.lots
                tr.trade_ids.add(f.trade_id)
                continue
            self.stats["recovered_fills"] += 1
            self._on_fill(tr, f)

    # ------------------------------------------------------------------ private stream
    def on_push(self, raw: str, msg: Any = None) -> None:
        """One private-stream push (``order``, ``execution``, ``wallet``; ``msg`` decoded, or
        ``None`` when the frame is not a JSON object). Never raises: garbled frames are logged with
        their raw text, counted and handed to the garbled handler; the other items of a push that
        parsed are still applied."""
        try:
            if raw in self._seen_raw:
                self.stats["duplicates"] += 1
                log.info("%s: duplicate push dropped: %s", self.venue_id, raw[:500])
                return
            self._seen_raw[raw] = None
            if len(self._seen_raw) > 10_000:
                self._seen_raw.popitem(last=False)
            if msg is None:
                raise TypeError("frame is not a JSON object")
            topic, items, _created = unwrap_push(msg)
            base = topic.split(".", 1)[0]
            if base == "wallet":
                ts, bal = parse_ws_wallet(msg)
                self._update_balances(ts or self.http.timestamp_ms() * NS_PER_MS, bal, complete=False)
                return
            if base not in ("order", "execution"):
                log.debug("%s: push on %s ignored", self.venue_id, topic)
                return
        except Exception as e:
            self._garble(raw, e)
            return
        for item in items:
            try:
                if category_of(item) != "spot":
                    self.stats["other_category"] += 1
                    log.debug("%s: %s push of category %s ignored", self.venue_id, base, category_of(item))
                    continue
                inst = self._by_venue_symbol.get(str(item["symbol"]))   # no symbol: garbled
                if inst is None:
                    log.info("%s: %s push for unconfigured symbol %s ignored", self.venue_id, base, item.get("symbol"))
                    continue
                if base == "order":
                    self._on_order_push(self._local_order(parse_order(item, inst, venue=self.venue_id)), inst)
                else:
                    self._on_execution(self._local_exec(parse_execution(item, inst, self._clock.now_ns())), inst,
                                       item)
            except Exception as e:  # a bad item must never stop the stream, nor its neighbours
                self._garble(json.dumps(item) if len(items) > 1 else raw, e)

    def _garble(self, raw: str, e: Exception) -> None:
        self.stats["garbled"] += 1
        log.warning("%s: garbled private-stream message (%s: %s): %s", self.venue_id, type(e).__name__, e,
                    self.http.scrub(raw[:2000]))
        self._report_garbled(raw, f"{type(e).__name__}: {e}")

    def _track_for(self, cid: ClientOrderId, inst: Instrument, side: Side, otype: OrderType, lots: int,
                   price_ticks: int | None, tif: TimeInForce, voi: VenueOrderId, prior_lots: int) -> _Track:
        tr = self._tracks.get(cid)
        if tr is None:
            log.info("%s: stream reports an order not sent in this session: %s", self.venue_id, cid)
            tr = _Track(Order(client_order_id=cid, venue=self.venue_id, symbol=inst.symbol, side=side,
                              order_type=otype, lots=lots, price_ticks=price_ticks, time_in_force=tif), inst,
                        venue_order_id=voi, filled_lots=prior_lots, uncounted_lots=prior_lots)
            self._tracks[cid] = tr
        return tr

    def _on_order_push(self, bo: BybitOrder, inst: Instrument) -> None:
        rep = bo.report
        tr = self._tracks.get(rep.client_order_id)
        if tr is None:
            # an order of an earlier run (or another client): its fills so far happened before we listened
            tr = self._track_for(rep.client_order_id, inst, rep.side, bo.order_type, rep.lots, rep.price_ticks,
                                 bo.time_in_force, rep.venue_order_id or VenueOrderId(""), rep.filled_lots)
        self._apply_order(tr, bo)

    def _on_execution(self, ex: BybitExecution, inst: Instrument, item: Mapping[str, Any]) -> None:
        if ex.fill is None:
            log.info("%s: execution %s of %s with execType %s ignored", self.venue_id, ex.exec_id,
                     ex.client_order_id, ex.exec_type)
            return
        tr = self._tracks.get(ex.client_order_id)
        if tr is None:
            price = item.get("orderPrice")
            otype = OrderType.MARKET if item.get("orderType") == "Market" else OrderType.LIMIT
            tr = self._track_for(ex.client_order_id, inst, ex.fill.side, otype,
                                 inst.parse_qty_lots(str(item.get("orderQty") or item["execQty"])),
                                 inst.parse_price_ticks(str(price)) if otype is OrderType.LIMIT and price
                                 and Decimal(str(price)) > 0 else None, TimeInForce.GTC, ex.venue_order_id, 0)
        self._on_fill(tr, ex.fill)

    # ------------------------------------------------------------------ commands
    def _check(self, order: Order, inst: Instrument) -> tuple[str, str] | None:
        """(filter, reason) for an order the instrument's rules forbid, else ``None``."""
        qty = inst.lots_to_qty(order.lots)
        if order.lots <= 0 or qty < inst.min_quantity:
            return "LOT_SIZE", f"quantity {qty} is below the minimum order quantity {inst.min_quantity}"
        if order.order_type is OrderType.LIMIT:
            assert order.price_ticks is not None
            if order.price_ticks <= 0:
                return "PRICE", f"price of {order.price_ticks} ticks is not positive"
            notional = inst.notional(order.price_ticks, order.lots)
            if notional < inst.min_notional:
                return "NOTIONAL", f"order value {notional} is below the minimum order value {inst.min_notional}"
        return None

    def _order_params(self, order: Order, inst: Instrument) -> dict[str, Any]:
        cid = order.client_order_id
        link = self._wire(cid)
        if not _CID_RE.match(link):
            raise OrderRejected(f"client order id {cid!r} is not 1-36 of [A-Za-z0-9_-] (Bybit's orderLinkId)",
                                venue=self.venue_id, client_order_id=cid)
        p: dict[str, Any] = {"category": "spot", "symbol": inst.venue_symbol,
                             "side": "Buy" if order.side is Side.BUY else "Sell"}
        if order.order_type is OrderType.MARKET:
            # spot market buys count qty in the quote coin unless told otherwise
            p.update({"orderType": "Market", "qty": inst.lots_to_qty(order.lots), "marketUnit": "baseCoin"})
        elif order.order_type is OrderType.LIMIT:
            if order.price_ticks is None:
                raise OrderRejected("a LIMIT order needs a price", venue=self.venue_id, client_order_id=cid)
            tif = _TIF.get(order.time_in_force)
            if tif is None:
                raise OrderRejected(f"time in force {order.time_in_force.value} is not offered by Bybit spot",
                                    venue=self.venue_id, client_order_id=cid)
            p.update({"orderType": "Limit", "qty": inst.lots_to_qty(order.lots),
                      "price": inst.ticks_to_price(order.price_ticks), "timeInForce": tif})
        else:
            raise OrderRejected(f"order type {order.order_type.value} is not supported by this adapter",
                                venue=self.venue_id, client_order_id=cid)
        if order.display_lots is not None:
            raise OrderRejected("Bybit spot has no native iceberg (display_lots)", venue=self.venue_id,
                                client_order_id=cid)
        p["orderLinkId"] = link
        return p

    async def _signed(self, method: str, path: str, params: dict[str, Any], *, request_type: str,
                      cid: str | None) -> Any:
        """A signed call; a 10002 (timestamp outside recv_window: not executed) makes one clock
        resync and one resend."""
        try:
            return await self.http.request(method, path, params, request_type=request_type, client_order_id=cid)
        except TimestampRejected:
            if not self.config.sync_time:
                raise
            log.warning("%s: 10002 on %s %s; resyncing the clock offset and resending once", self.venue_id,
                        method, path)
            await self.http.sync_time()
            return await self.http.request(method, path, params, request_type=request_type, client_order_id=cid)

    async def submit(self, order: Order) -> None:
        """POST /v5/order/create with ``orderLinkId`` = our id. Orders the instrument's rules
        forbid (``check_filters``) and venue refusals become REJECTED events naming the rule
        (``LOT_SIZE``, ``PRICE``, ``NOTIONAL``) or Bybit's text; a timeout or a dropped connection
        raises and leaves the order UNKNOWN until the resolver (or the stream) settles it; a rate
        limit raises :class:`~marketdata.errors.RateLimited` (the venue did not take it)."""
        inst = self._inst(order.symbol)
        cid = order.client_order_id
        params = self._order_params(order, inst)
        tr = self._tracks.get(cid)
        if tr is None or tr.terminal is OrderEventKind.REJECTED:
            tr = _Track(order, inst)
            self._tracks[cid] = tr
        now = self._clock.now_ns()
        if self.config.check_filters:
            bad = self._check(order, inst)
            if bad is not None:
                log.info("%s: %s refused before sending: %s", self.venue_id, cid, bad[1])
                self._on_terminal(tr, OrderEventKind.REJECTED, 0, now, reason=f"{bad[0]}: {bad[1]}", code=bad[0])
                return
        sent_ns = now
        try:
            res = await self._signed("POST", "/v5/order/create", params, request_type="new_order", cid=cid)
        except (VenueTimeout, VenueDisconnected):
            self._spawn(self._resolve_unknown(cid, sent_ns))
            raise
        except DuplicateOrder:
            log.info("%s: %s already at the venue; querying its status", self.venue_id, cid)
            self._spawn(self._resolve_unknown(cid, sent_ns))
            return
        except (OrderRejected, InsufficientFunds) as e:
            code = e.code if isinstance(e.code, int) else None
            text = e.venue_text or e.message
            filt = FILTER_OF_CODE.get(code) if code is not None else None
            self._on_terminal(tr, OrderEventKind.REJECTED, 0, self._clock.now_ns(),
                              reason=f"{filt}: {text}" if filt else text, code=None if e.code is None else str(e.code))
            return
        except VenueError:
            if not tr.accepted and tr.terminal is None and self._tracks.get(cid) is tr:
                del self._tracks[cid]   # refused before the venue took it (rate limit, auth): never sent
            raise
        voi = res.get("orderId")
        self._on_accepted(tr, VenueOrderId(str(voi)) if voi else None, self._clock.now_ns())

    async def cancel(self, client_order_id: ClientOrderId) -> None:
        """POST /v5/order/cancel by ``orderLinkId``. A refusal (170213 no such order, 170142/170139
        already finished) is a CANCEL_REJECTED event; transport failures raise. The CANCELED event
        comes from the stream's ``order`` push (the answer only says the cancel was taken)."""
        inst = self._symbol_for(client_order_id)
        tr = self._tracks.get(client_order_id)
        if tr is not None:
            tr.cancel_requested = True
        try:
            await self._signed("POST", "/v5/order/cancel",
                               {"category": "spot", "symbol": inst.venue_symbol,
                                "orderLinkId": self._wire(client_order_id)},
                               request_type="cancel", cid=client_order_id)
        except (CancelRejected, OrderNotFound) as e:
            now = self._clock.now_ns()
            self._emit(OrderEvent(kind=OrderEventKind.CANCEL_REJECTED, client_order_id=client_order_id,
                                  venue=self.venue_id, ts_event=now, ts_init=now,
                                  venue_order_id=tr.venue_order_id if tr else None,
                                  reason=e.venue_text or e.message, code=None if e.code is None else str(e.code)))

    def adopt(self, report: OrderStatusReport) -> None:
        """Track an order this session did not send (e.g. listed by :meth:`open_orders` at start)
        with its fills so far already counted; nothing is sent."""
        if report.client_order_id in self._tracks:
            return
        inst = self._inst(report.symbol)
        self._tracks[report.client_order_id] = _Track(
            Order(client_order_id=report.client_order_id, venue=self.venue_id, symbol=inst.symbol, side=report.side,
                  order_type=OrderType.LIMIT if report.price_ticks else OrderType.MARKET, lots=report.lots,
                  price_ticks=report.price_ticks), inst,
            venue_order_id=report.venue_order_id, accepted=report.status is not OrderStatus.PENDING_NEW,
            filled_lots=report.filled_lots, uncounted_lots=report.filled_lots)

    def derive_replacement_id(self, client_order_id: ClientOrderId) -> ClientOrderId:
        """``<id>-r<n>`` (orderLinkId allows letters, digits, ``-`` and ``_``); a blake2b digest
        when that is over 36 chars."""
        return next_replacement_id(client_order_id, self._tracks.get(client_order_id), "-")

    async def replace(self, client_order_id: ClientOrderId, *, lots: int | None = None,
                      price_ticks: int | None = None) -> None:
        """Cancel, then (once the venue confirmed the cancel, within ``request_timeout_s``) a new
        order for ``lots`` total minus what is filled, id from :meth:`derive_replacement_id`
        (``replacements[old]``). If the old order filled instead, or the cancel was refused, the new
        one is REJECTED "not sent"; if no confirmation comes in time, :class:`VenueTimeout` is
        raised and nothing new is sent."""
        tr = self._tracks.get(client_order_id)
        if tr is None:
            raise UnknownOrderError(f"{self.venue_id}: cannot replace {client_order_id}: not sent in this session")
        o = tr.order
        total = o.lots if lots is None else lots
        if total - tr.filled_lots <= 0:
            raise OrderRejected(f"new quantity {total} lots is not above the {tr.filled_lots} filled",
                                venue=self.venue_id, client_order_id=client_order_id)
        new_id = self.derive_replacement_id(client_order_id)
        self.replacements[client_order_id] = new_id
        await self.cancel(client_order_id)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                await tr.done.wait()
        except TimeoutError:
            del self.replacements[client_order_id]
            raise VenueTimeout(f"replace: the cancel of {client_order_id} was not confirmed in "
                               f"{self.config.timeout_s} s; no replacement sent", venue=self.venue_id,
                               client_order_id=client_order_id) from None
        rem = total - tr.filled_lots
        new = Order(client_order_id=new_id, venue=o.venue, symbol=o.symbol, side=o.side, order_type=o.order_type,
                    lots=max(rem, 0), price_ticks=o.price_ticks if price_ticks is None else price_ticks,
                    time_in_force=o.time_in_force, parent_id=o.parent_id, decision_id=o.decision_id,
                    ts_init=self._clock.now_ns())
        if tr.terminal is not OrderEventKind.CANCELED or rem <= 0:
            new_tr = _Track(new, tr.inst)
            self._tracks[new_id] = new_tr
            self._on_terminal(new_tr, OrderEventKind.REJECTED, 0, self._clock.now_ns(),
                              reason=f"not sent: {client_order_id} ended {tr.terminal.value if tr.terminal else '?'} "
                                     f"with {tr.filled_lots} of {o.lots} lots filled", code="replace")
            return
        await self.submit(new)

    # ------------------------------------------------------------------ UNKNOWN resolution
    def resolve_unknown(self, client_order_id: ClientOrderId, sent_ns: int | None = None) -> asyncio.Task[Any]:
        """Start (as an owned background task) the queries that settle an order whose submit the
        caller abandoned; ``sent_ns``: when the request was signed (default now). What the venue
        says is reported through the event handler."""
        return self._spawn(self._resolve_unknown(client_order_id,
                                                 self._clock.now_ns() if sent_ns is None else sent_ns))

    async def _resolve_unknown(self, cid: ClientOrderId, sent_ns: int) -> OrderStatusReport | None:
        """Query the order after each configured delay until the venue knows it; the last query is
        made no earlier than ``recv_window`` + 1 s after the request was sent, so "no such order"
        then is final (REJECTED). A query without an answer proves nothing: the queries go on at the
        last delay until the venue answers."""
        horizon_ns = sent_ns + (self.config.recv_window_ms + 1000) * NS_PER_MS
        async for i, last in query_schedule(self.config.resolve_delays_s, horizon_ns, self._clock):
            tr = self._tracks.get(cid)
            if tr is None:
                return None
            if tr.terminal is not None:
                return None   # settled meanwhile (the stream)
            try:
                bo = await self._query(cid, tr.inst)
            except VenueError as e:
                log.warning("%s: status query for UNKNOWN %s failed: %s", self.venue_id, cid, e)
                continue
            if bo is None:
                log.info("%s: %s not at the venue yet (query %d)", self.venue_id, cid, i + 1)
                if last:
                    break
                continue
            self.stats["resolved"] += 1
            rep = bo.report
            log.info("%s: UNKNOWN %s resolved: %s, %d lots filled", self.venue_id, cid, bo.venue_status,
                     rep.filled_lots)
            if self._apply_order(tr, bo):
                try:
                    await self._read_executions(tr)
                except VenueError as e:
                    log.warning("%s: executions of %s not read: %s", self.venue_id, cid, e)
            if self._report_handler is not None:
                self._report_handler(rep)
            return rep
        self._reject_unresolved(cid, "170213")
        return None

    async def reconcile(self) -> list[OrderStatusReport]:
        """Query every order this session still thinks is live and apply what the venue says (run
        after each private-stream reconnection: pushes sent while it was down are lost), then read
        the balances again."""
        reports = []
        for tr in list(self._tracks.values()):
            if tr.terminal is not None or not tr.accepted:
                continue
            try:
                bo = await self._query(tr.order.client_order_id, tr.inst)
            except VenueError as e:
                log.warning("%s: reconcile of %s failed: %s", self.venue_id, tr.order.client_order_id, e)
                continue
            if bo is None:
                log.warning("%s: reconcile: the venue no longer lists %s", self.venue_id, tr.order.client_order_id)
                continue
            if self._apply_order(tr, bo):
                try:
                    await self._read_executions(tr)
                except VenueError as e:
                    log.warning("%s: executions of %s not read: %s", self.venue_id, tr.order.client_order_id, e)
            if self._report_handler is not None:
                self._report_handler(bo.report)
            reports.append(bo.report)
        try:
            await self.balances()
        except VenueError as e:
            log.warning("%s: balances not refreshed after reconnect: %s", self.venue_id, e)
        return reports

    # ------------------------------------------------------------------ queries
    async def _query(self, cid: ClientOrderId, inst: Instrument) -> BybitOrder | None:
        """GET /v5/order/realtime by ``orderLinkId`` (open and recent closed orders), then
        /v5/order/history; ``None`` when neither knows it."""
        link = self._wire(cid)
        for path in ("/v5/order/realtime", "/v5/order/history"):
            res = await self._signed("GET", path, {"category": "spot", "symbol": inst.venue_symbol,
                                                   "orderLinkId": link}, request_type="query_order", cid=cid)
            for row in self._rows(path, cid, res):
                if str(row.get("orderLinkId")) == link:
                    return self._local_order(self._parsed(path, cid, parse_order, row, inst, venue=self.venue_id))
        return None

    async def order_status(self, client_order_id: ClientOrderId) -> OrderStatusReport:
        """The venue's view of one order (:meth:`_query`). An order refused on entry is not kept
        by Bybit; the adapter answers REJECTED for those from its own record, and raises
        :class:`~venues.bybit.errors.OrderNotFound` for an order nobody knows."""
        inst = self._symbol_for(client_order_id)
        bo = await self._query(client_order_id, inst)
        if bo is not None:
            return bo.report
        rejected = self._rejected_report(client_order_id, inst)
        if rejected is not None:
            return rejected
        raise OrderNotFound("order does not exist", venue=self.venue_id, client_order_id=client_order_id,
                            code=170213)

    async def open_orders(self, symbol: str | None = None) -> list[OrderStatusReport]:
        """GET /v5/order/realtime (open orders, every page) for ``symbol`` or each configured instrument."""
        insts = [self._inst(symbol)] if symbol is not None else list(self.config.instruments)
        out: list[OrderStatusReport] = []
        for inst in insts:
            cursor = ""
            while True:
                params: dict[str, Any] = {"category": "spot", "symbol": inst.venue_symbol, "openOnly": 0,
                                          "limit": _PAGE}
                if cursor:
                    params["cursor"] = cursor
                res = await self._signed("GET", "/v5/order/realtime", params, request_type="open_orders", cid=None)
                for row in self._rows("/v5/order/realtime", None, res):
                    rep = self._local_order(self._parsed("/v5/order/realtime", None, parse_order, row, inst,
                                                         venue=self.venue_id)).report
                    if not rep.status.is_terminal:
                        out.append(rep)
                cursor = str(res.get("nextPageCursor") or "")
                if not cursor:
                    break
        return out

    async def balances(self) -> dict[str, Balance]:
        """GET /v5/account/wallet-balance (``accountType`` UNIFIED); refreshes :meth:`cached_balance`
        (as of the answer's venue ``time``; a ``wallet`` push replaces a coin only if it is not older)."""
        res = await self._signed("GET", "/v5/account/wallet-balance", {"accountType": self.config.account_type},
                                 request_type="account", cid=None)
        bal = self._parsed("/v5/account/wallet-balance", None, parse_wallet_balance, res)
        # as of the venue's own answer time: the clock of the wallet pushes' creationTime (our
        # offset estimate can be ahead of it by half a round trip, and a later push look older)
        venue_ms = self.http.last_time_ms
        self._update_balances((venue_ms if venue_ms is not None else self.http.timestamp_ms()) * NS_PER_MS, bal,
                              complete=True)
        return bal

    async def positions(self) -> list[Position]:
        """Spot has no positions; reported as the base-asset balance of each configured instrument."""
        bal = await self.balances()
        return [Position(str(i.symbol), bal[i.base].total if i.base in bal else Decimal(0))
                for i in self.config.instruments]

