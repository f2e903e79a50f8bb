"""``IbVenue``: Interactive Brokers through TWS / IB Gateway (socket API, text protocol).

One asyncio TCP connection per adapter (no ibapi reader thread): :func:`venues.ib.codec.read_frame`
on the event loop reads each message, :func:`venues.ib.messages.decode_message` decodes it
synchronously and the per-order merge (:mod:`venues.tracking`) turns it into :class:`~marketdata.model.OrderEvent` s,
each state once and in a valid order (ACCEPTED or REJECTED first, fills counted once by execId, one
terminal event after the last fill):

* ``openOrder`` / ``orderStatus``: ACCEPTED (PreSubmitted, Submitted), the cumulative filled
  quantity, terminal states (Filled, Cancelled/ApiCancelled, Inactive). A terminal status whose
  filled quantity is ahead of the executions seen is held until they arrive.
* ``execDetails`` + ``commissionReport``: one fill per execId, reported once its commission is
  known (or after ``commission_wait_s`` with fee 0); a repeated execDetails or commissionReport
  (reqExecutions after a reconnect, a duplicate) is counted once.
* ``error``: 201 (and other order errors before the order was accepted) REJECTED with TWS's text;
  202 CANCELED; 161/10147/10148 CANCEL_REJECTED; 103 duplicate order id REJECTED (and the next id
  is asked again); 100 (max message rate) feeds the rate limiter; 1100/1101/1102 connectivity;
  2104/2106/2158 and other 21xx notices are logged at debug level.

IB orders are keyed by an integer order id per client id; the sorex client order id travels as the
order's ``orderRef`` so orders of an earlier session are recognised. :meth:`IbVenue.submit` returns
once TWS said anything about the new order (openOrder, orderStatus or an error); no word within
``request_timeout_s``, or a dropped connection, raises :class:`VenueTimeout` /
:class:`VenueDisconnected` and the order is UNKNOWN. Every (re)connection ends with
:meth:`IbVenue.reconcile`: reqOpenOrders then reqExecutions (this client id); an UNKNOWN order
TWS lists becomes ACCEPTED with its fills, one it neither lists nor has executions for is REJECTED
("not at TWS"), an accepted one no longer open is CANCELED after its fills.

Every outbound message is paced by the ``ib`` limiter preset (50 messages per second, 15 % kept
for cancels). See docs/venues-ib.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from marketdata.clock import NS_PER_SECOND, Clock
from marketdata.errors import (
    ConfigError,
    FinalVenueError,
    OrderRejected,
    RateLimited,
    UnknownOrderError,
    VenueDisconnected,
    VenueError,
    VenueTimeout,
)
from marketdata.model import (
    ClientOrderId,
    Fill,
    Instrument,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TradeId,
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
from venues.ib.codec import (
    IbDecodeError,
    IbFramingError,
    encode_handshake,
    parse_server_hello,
    read_frame,
    split_fields,
)
from venues.ib.config import IbConfig
from venues.ib.messages import (
    CommissionReport,
    ErrorMessage,
    ExecDetails,
    ExecDetailsEnd,
    IbOrder,
    ManagedAccounts,
    NextValidId,
    OpenOrder,
    OpenOrderEnd,
    OrderStatusMessage,
    Unhandled,
    decode_message,
    encode_cancel_order,
    encode_place_order,
    encode_req_executions,
    encode_req_ids,
    encode_req_open_orders,
    encode_start_api,
)
from venues.ratelimit import RateLimiter
from venues.tracking import TrackedOrder, TrackingVenue

__all__ = ["IbVenue"]

log = logging.getLogger(__name__)

ERR_MAX_RATE = 100
ERR_DUPLICATE_ID = 103
ERR_REJECTED = 201
ERR_CANCELLED = 202
CANCEL_REFUSED = frozenset({161, 10147, 10148})
"""161 not in a cancellable state, 10147 order id to cancel not found, 10148 cannot be cancelled."""
CONNECT_ERRORS = frozenset({326, 502, 503})
"""326 client id already in use, 502 couldn't connect, 503 TWS out of date: the session cannot start."""
ERR_CONNECTIVITY_LOST, ERR_RESTORED_DATA_LOST, ERR_RESTORED_DATA_KEPT = 1100, 1101, 1102
_WARNINGS = frozenset({399, 2109, 2137})
_LIVE = frozenset({"PreSubmitted", "Submitted"})
_PENDING = frozenset({"PendingSubmit", "ApiPending", "PendingCancel"})
_CANCELLED = frozenset({"Cancelled", "ApiCancelled"})
_ORDER_REF_MAX = 64


@dataclass
class _Track(TrackedOrder):
    """What the adapter knows about one of its orders (``trade_ids``: the execIds reported)."""

    order_id: int = 0
    ack: asyncio.Future[None] | None = None
    unknown: bool = False
    paced_out: bool = False   # TWS answered error 100 to its placeOrder (submit raised RateLimited)
    cancel_pending: bool = False
    last_status: str = ""
    perm_id: int = 0
    sent_seq: int = 0

    def __post_init__(self) -> None:
        self.venue_order_id = VenueOrderId(str(self.order_id))   # what the events carry


@dataclass
class _Held:
    """A fill waiting for its commissionReport."""

    track: _Track
    exec: ExecDetails
    handle: asyncio.TimerHandle | None


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server_version: int
    ready: asyncio.Future[None]
    task: asyncio.Task[None] | None = None
    closed_why: str | None = None


class IbVenue(TrackingVenue[_Track]):
    """Interactive Brokers over the TWS socket API. See docs/venues-ib.md.

    The per-order merge and the handlers are :mod:`venues.tracking`'s; a held terminal status is
    reported at the time its executions are in (every IB event time is local)."""

    _log = log

    def __init__(self, config: IbConfig, clock: Clock, *, limiter: RateLimiter | None = None) -> None:
        self.config = config
        self._clock = clock
        self.info = VenueInfo(
            venue=config.venue, instruments={i.symbol: i for i in config.instruments},
            capabilities=VenueCapabilities(order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
                                           time_in_force=frozenset({TimeInForce.GTC, TimeInForce.IOC}),
                                           native_modify=False, native_iceberg=False),
            fees=FeeSchedule((FeeTier(maker_bps=config.maker_bps, taker_bps=config.taker_bps),)))
        self.limiter = limiter or RateLimiter.from_preset("ib", clock, overrides=config.rate_limits)
        self._init_tracking(config.instruments)
        self._by_order_id: dict[int, _Track] = {}   # every id sent, also of replaced records
        self._commissions: dict[str, CommissionReport] = {}
        self._held: dict[str, _Held] = {}
        self._conn: _Conn | None = None
        self._next_id = 0
        self._seq = 0
        self._req_id = 1 << 30   # reqExecutions ids, far above any order id (errors name either)
        self.accounts: tuple[str, ...] = ()
        self.server_version: int | None = None
        self.ib_connected = True   # TWS's own link to IB (1100 lost / 1101, 1102 restored)
        self._closing = False
        self._recon_lock = asyncio.Lock()
        self._open_seen: dict[int, OpenOrder] | None = None
        self._open_end: asyncio.Future[None] | None = None
        self._exec_end: dict[int, asyncio.Future[None]] = {}
        self.stats = {"events": 0, "duplicates": 0, "garbled": 0, "framing_errors": 0, "reconnects": 0,
                      "rate_limited": 0, "late_commissions": 0, "resolved": 0, "unresolved": 0}

    def __repr__(self) -> str:
        return f"IbVenue(venue={self.config.venue!r}, {self.config.host}:{self.config.port}, " \
               f"client_id={self.config.client_id})"

    # ------------------------------------------------------------------ wiring
    @property
    def connected(self) -> bool:
        c = self._conn
        return c is not None and c.closed_why is None and c.ready.done() and not c.ready.exception()

    async def connect(self) -> None:
        """Open the socket, handshake, startApi and wait for nextValidId; then reconcile."""
        self._closing = False
        await self._open()
        await self.reconcile()

    async def close(self) -> None:
        self._closing = True
        await self._cancel_tasks()
        if self._conn is not None:
            await self._drop(self._conn, "closed by the adapter")
            if self._conn.task is not None:
                self._conn.task.cancel()
                with contextlib.suppress(BaseException):
                    await self._conn.task
        for h in self._held.values():
            if h.handle is not None:
                h.handle.cancel()

    # ------------------------------------------------------------------ connection
    async def _open(self) -> None:
        cfg = self.config
        timeout = float(cfg.connect_timeout_s)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(cfg.host, cfg.port), timeout)
        except (OSError, TimeoutError) as e:
            raise VenueDisconnected(f"cannot connect to TWS at {cfg.host}:{cfg.port}: {e}", venue=self.venue_id) from e
        try:
            writer.write(encode_handshake(cfg.min_server_version, cfg.max_server_version))
            body = await asyncio.wait_for(read_frame(reader, venue=self.venue_id), timeout)
            sv, conn_time = parse_server_hello(split_fields(body, venue=self.venue_id), venue=self.venue_id)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, IbDecodeError, IbFramingError) as e:
            writer.close()
            raise VenueDisconnected(f"TWS handshake failed: {type(e).__name__}: {e}", venue=self.venue_id) from e
        if not cfg.min_server_version <= sv <= cfg.max_server_version:
            writer.close()
            raise VenueDisconnected(f"TWS chose server version {sv}, outside the {cfg.min_server_version}.."
                                    f"{cfg.max_server_version} this adapter speaks", venue=self.venue_id)
        loop = asyncio.get_running_loop()
        conn = _Conn(reader, writer, sv, loop.create_future())
        self._conn = conn
        self.server_version = sv
        log.info("%s: connected to %s:%d, server version %d (TWS time %s), client id %d", self.venue_id,
                 cfg.host, cfg.port, sv, conn_time, cfg.client_id)
        conn.task = asyncio.ensure_future(self._read_loop(conn))
        await self._send(encode_start_api(cfg.client_id), "account", conn=conn)
        try:
            await asyncio.wait_for(asyncio.shield(conn.ready), timeout)
        except TimeoutError:
            await self._drop(conn, "no nextValidId after startApi")
            raise VenueTimeout("TWS sent no nextValidId after startApi", venue=self.venue_id) from None
        except VenueError:
            await self._drop(conn, "startApi refused")
            raise
        if cfg.account and self.accounts and cfg.account not in self.accounts:
            await self._drop(conn, "account not managed")
            raise ConfigError(f"account {cfg.account!r} is not one of this login's accounts "
                              f"{', '.join(self.accounts)}", file=f"venues.{self.venue_id}", key="account")

    async def _send(self, data: bytes, request_type: str, *, conn: _Conn | None = None) -> None:
        """Pace (the ``ib`` limiter) and write one message; raises :class:`VenueDisconnected` when
        there is no connection (nothing was sent)."""
        await self.limiter.acquire(request_type)
        c = conn or self._conn
        if c is None or c.closed_why is not None:
            raise VenueDisconnected("not connected to TWS; nothing sent", venue=self.venue_id)
        c.writer.write(data)

    async def _read_loop(self, conn: _Conn) -> None:
        why = "connection closed by TWS"
        try:
            while True:
                body = await read_frame(conn.reader, venue=self.venue_id)
                self._on_frame(body, conn.server_version)
        except IbFramingError as e:
            self.stats["framing_errors"] += 1
            why = str(e)
            log.error("%s: %s; closing the connection (it is re-opened and reconciled)", self.venue_id, e)
            self._report_garbled(repr(conn.reader), str(e))
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            why = f"connection lost: {type(e).__name__}: {e}"
        except asyncio.CancelledError:
            why = conn.closed_why or "read loop cancelled"
            raise
        finally:
            await self._drop(conn, why)

    async def _drop(self, conn: _Conn, why: str) -> None:
        if conn.closed_why is not None:
            return
        conn.closed_why = why
        with contextlib.suppress(Exception):
            conn.writer.close()
        log.warning("%s: TWS connection down: %s", self.venue_id, why)
        if not conn.ready.done():
            conn.ready.set_exception(VenueDisconnected(why, venue=self.venue_id))
            conn.ready.exception()   # retrieved: no "never retrieved" warning when nobody waits
        exc = VenueDisconnected(f"TWS connection lost before an answer: {why}", venue=self.venue_id)
        for tr in self._tracks.values():
            if tr.ack is not None and not tr.ack.done():
                tr.unknown = True
                tr.ack.set_exception(exc)
        for fut in [self._open_end, *self._exec_end.values()]:
            if fut is not None and not fut.done():
                fut.set_exception(exc)
        if self._conn is conn and not self._closing:
            self._spawn(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delays = [float(d) for d in self.config.reconnect_delays_s]
        i = 0
        while not self._closing:
            await asyncio.sleep(delays[min(i, len(delays) - 1)])
            i += 1
            try:
                await self._open()
            except (VenueError, ConfigError) as e:
                log.warning("%s: reconnect %d failed: %s", self.venue_id, i, e)
                continue
            self.stats["reconnects"] += 1
            try:
                await self.reconcile()
            except VenueError as e:
                log.warning("%s: reconciliation after reconnect failed: %s", self.venue_id, e)
            return

    # ------------------------------------------------------------------ inbound
    def _on_frame(self, body: bytes, server_version: int) -> None:
        """One message body. Never raises: an undecodable message is logged (with the message and
        field named), counted and handed to the garbled handler; the stream goes on."""
        try:
            fields = split_fields(body, venue=self.venue_id)
            msg = decode_message(fields, server_version, venue=self.venue_id)
        except IbDecodeError as e:
            self.stats["garbled"] += 1
            raw = body.replace(b"\0", b"|").decode("utf-8", errors="backslashreplace")
            log.warning("%s: undecodable message (%s): %s", self.venue_id, e, raw[:500])
            self._report_garbled(raw, str(e))
            return
        try:
            self._dispatch(msg)
        except Exception as e:   # a message we cannot apply must not stop the stream
            self.stats["garbled"] += 1
            log.exception("%s: could not apply %s", self.venue_id, type(msg).__name__)
            self._report_garbled(body.replace(b"\0", b"|").decode("utf-8", errors="backslashreplace"),
                                 f"{type(e).__name__}: {e}")

    def _dispatch(self, msg: Any) -> None:
        if isinstance(msg, OrderStatusMessage):
            self._on_order_status(msg)
        elif isinstance(msg, OpenOrder):
            self._on_open_order(msg)
        elif isinstance(msg, ExecDetails):
            self._on_exec(msg)
        elif isinstance(msg, CommissionReport):
            self._on_commission(msg)
        elif isinstance(msg, ErrorMessage):
            self._on_error(msg)
        elif isinstance(msg, NextValidId):
            self._next_id = max(self._next_id, msg.order_id)
            c = self._conn
            if c is not None and not c.ready.done():
                c.ready.set_result(None)
        elif isinstance(msg, ManagedAccounts):
            self.accounts = msg.accounts
            log.info("%s: managed accounts %s", self.venue_id, ", ".join(msg.accounts))
        elif isinstance(msg, OpenOrderEnd):
            if self._open_end is not None and not self._open_end.done():
                self._open_end.set_result(None)
        elif isinstance(msg, ExecDetailsEnd):
            fut = self._exec_end.get(msg.req_id)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif isinstance(msg, Unhandled):
            log.debug("%s: message %d not read", self.venue_id, msg.msg_id)

    def _track_for(self, order_id: int, order_ref: str = "") -> _Track | None:
        tr = self._by_order_id.get(order_id)
        if tr is None and order_ref:
            tr = self._tracks.get(ClientOrderId(order_ref))
            if tr is not None and tr.order_id != order_id:
                return None
        return tr

    def _heard(self, tr: _Track) -> None:
        if tr.ack is not None and not tr.ack.done():
            tr.ack.set_result(None)
        if tr.unknown:
            tr.unknown = False
            self.stats["resolved"] += 1
            log.info("%s: UNKNOWN %s (order %d) resolved: TWS reports it", self.venue_id, tr.order.client_order_id,
                     tr.order_id)

    def _lots(self, tr: _Track, qty: Decimal, what: str) -> int:
        lots = tr.inst.qty_to_lots(qty)
        if tr.inst.lots_to_qty(lots) != qty:
            log.warning("%s: %s %s of %s is off the lot grid %s; counted as %d lots", self.venue_id, what, qty,
                        tr.order.client_order_id, tr.inst.lot_size, lots)
        return lots

    def _on_open_order(self, m: OpenOrder) -> None:
        if self._open_seen is not None:
            self._open_seen[m.order_id] = m
        tr = self._track_for(m.order_id, m.order_ref)
        if tr is None:
            tr = self._adopt(m)
            if tr is None:
                log.info("%s: openOrder %d (%s %s) is not one of ours; ignored", self.venue_id, m.order_id,
                         m.action, m.symbol)
                return
        tr.perm_id = m.perm_id or tr.perm_id
        self._apply_status(tr, m.status, None, m.warning_text or None)

    def _adopt(self, m: OpenOrder) -> _Track | None:
        """An open order of this client id from an earlier session, recognised by its orderRef (our
        client order id) and a configured contract: tracked from what TWS says."""
        if not m.order_ref or m.status in _CANCELLED or m.status == "Inactive":
            return None
        inst = next((i for i in self.config.instruments
                     if self.config.contracts[i.symbol].symbol == m.symbol
                     and self.config.contracts[i.symbol].sec_type == m.sec_type), None)
        if inst is None:
            return None
        cid = ClientOrderId(m.order_ref)
        if cid in self._tracks:
            return None
        lots = inst.qty_to_lots(m.total_quantity)
        price = inst.price_to_ticks(m.lmt_price, Side.BUY) if m.order_type == "LMT" and m.lmt_price else None
        order = Order(client_order_id=cid, venue=self.venue_id, symbol=inst.symbol,
                      side=Side.BUY if m.action == "BUY" else Side.SELL,
                      order_type=OrderType.LIMIT if price is not None else OrderType.MARKET, lots=lots,
                      price_ticks=price, time_in_force=TimeInForce.IOC if m.tif == "IOC" else TimeInForce.GTC)
        tr = _Track(order, inst, order_id=m.order_id)
        self._tracks[cid] = tr
        self._by_order_id[m.order_id] = tr
        log.info("%s: adopted order %d (%s) of an earlier session", self.venue_id, m.order_id, cid)
        return tr

    def _on_order_status(self, m: OrderStatusMessage) -> None:
        tr = self._track_for(m.order_id)
        if tr is None:
            log.debug("%s: orderStatus for order %d not ours", self.venue_id, m.order_id)
            return
        tr.perm_id = m.perm_id or tr.perm_id
        self._apply_status(tr, m.status, self._lots(tr, m.filled, "filled quantity"), m.why_held or None)

    def _apply_status(self, tr: _Track, status: str, cum_lots: int | None, why: str | None) -> None:
        self._heard(tr)
        if tr.paced_out and status in _LIVE:
            self._cancel_ghost(tr)
        tr.last_status = status
        now = self._clock.now_ns()
        if cum_lots is not None:
            tr.venue_cum_lots = max(tr.venue_cum_lots, cum_lots)
        if status in _LIVE:
            self._on_accepted(tr, None, now)
        elif status == "Filled":
            self._on_terminal(tr, OrderEventKind.FILLED, tr.venue_cum_lots, now)
        elif status in _CANCELLED:
            self._on_terminal(tr, OrderEventKind.CANCELED, tr.venue_cum_lots, now, reason=why)
        elif status == "Inactive":
            if tr.accepted or tr.venue_cum_lots:
                self._on_terminal(tr, OrderEventKind.CANCELED, tr.venue_cum_lots, now, reason=why or "Inactive")
            else:
                self._on_terminal(tr, OrderEventKind.REJECTED, 0, now, reason=why or "Inactive at TWS")
        elif status not in _PENDING:
            log.info("%s: %s status %r not understood", self.venue_id, tr.order.client_order_id, status)

    def _on_exec(self, m: ExecDetails) -> None:
        if m.client_id and m.client_id != self.config.client_id:
            log.debug("%s: execution %s of client %d ignored", self.venue_id, m.exec_id, m.client_id)
            return
        tr = self._track_for(m.order_id, m.order_ref)
        if tr is None:
            log.info("%s: execution %s of order %d is not one of ours; ignored", self.venue_id, m.exec_id,
                     m.order_id)
            return
        self._heard(tr)
        if m.exec_id in tr.trade_ids or m.exec_id in self._held:
            self.stats["duplicates"] += 1
            log.info("%s: duplicate execution %s of %s dropped", self.venue_id, m.exec_id, tr.order.client_order_id)
            return
        wait = float(self.config.commission_wait_s)
        if m.exec_id in self._commissions or wait <= 0:
            tr.trade_ids.add(m.exec_id)
            self._emit_fill(tr, m)
            return
        handle = asyncio.get_running_loop().call_later(wait, self._release, m.exec_id)
        self._held[m.exec_id] = _Held(tr, m, handle)

    def _on_commission(self, m: CommissionReport) -> None:
        if m.exec_id in self._commissions:
            self.stats["duplicates"] += 1
            log.debug("%s: duplicate commission report for %s dropped", self.venue_id, m.exec_id)
            return
        self._commissions[m.exec_id] = m
        if m.exec_id in self._held:
            self._release(m.exec_id)
        elif any(m.exec_id in tr.trade_ids for tr in self._tracks.values()):
            self.stats["late_commissions"] += 1
            log.warning("%s: commission %s %s for execution %s came after its fill was reported with fee 0",
                        self.venue_id, m.commission, m.currency, m.exec_id)

    def _release(self, exec_id: str) -> None:
        held = self._held.pop(exec_id, None)
        if held is None:
            return
        if held.handle is not None:
            held.handle.cancel()
        tr = held.track
        if exec_id in tr.trade_ids:
            return
        tr.trade_ids.add(exec_id)
        self._emit_fill(tr, held.exec)

    def _emit_fill(self, tr: _Track, m: ExecDetails) -> None:
        inst = tr.inst
        try:
            price_ticks = inst.price_to_ticks(m.price)
        except Exception:
            q = (m.price / inst.tick_size).to_integral_value(ROUND_HALF_EVEN)
            price_ticks = int(q)
            log.warning("%s: execution %s price %s of %s is off the tick %s; reported as %d ticks", self.venue_id,
                        m.exec_id, m.price, tr.order.client_order_id, inst.tick_size, price_ticks)
        lots = self._lots(tr, m.shares, "execution quantity")
        if lots <= 0 or price_ticks <= 0:
            raise ValueError(f"execution {m.exec_id}: quantity {m.shares} / price {m.price} gives {lots} lots at "
                             f"{price_ticks} ticks")
        c = self._commissions.get(m.exec_id)
        fee = c.commission if c is not None and c.commission is not None else Decimal(0)
        now = self._clock.now_ns()
        fill = Fill(client_order_id=tr.order.client_order_id, venue=self.venue_id, symbol=inst.symbol,
                    side=Side.BUY if m.side == "BOT" else Side.SELL, trade_id=TradeId(m.exec_id),
                    price_ticks=price_ticks, lots=lots, fee=fee,
                    fee_currency=c.currency if c is not None and c.currency else inst.quote,
                    liquidity=Liquidity.MAKER if m.last_liquidity == 1 else Liquidity.TAKER,
                    ts_event=now, ts_init=now, venue_order_id=tr.venue_order_id)
        self._count_fill(tr, fill)

    def _held_terminal_ts(self, ts_held: int) -> int:
        return self._clock.now_ns()

    def _on_error(self, m: ErrorMessage) -> None:
        code = m.code
        now = self._clock.now_ns()
        if code == ERR_MAX_RATE:
            self.stats["rate_limited"] += 1
            if now >= self.limiter.blocked_until_ns:
                # one strike per burst: the 100s for messages sent before this block began (they
                # arrive one after another) must not double the backoff again
                self.limiter.on_rate_limited(NS_PER_SECOND, now)
            log.warning("%s: TWS error 100 (%s) for request %d: pacing every message", self.venue_id, m.text,
                        m.req_id)
            tr = self._track_for(m.req_id)
            if tr is not None and tr.ack is not None and not tr.ack.done():
                # not placed (TWS drops what it answers with 100); set here, before the openOrder
                # that may follow in the same read: should TWS work it after all, it is cancelled
                tr.terminal = OrderEventKind.REJECTED
                tr.paced_out = True
                tr.ack.set_exception(RateLimited(m.text, retry_after_ns=NS_PER_SECOND, venue=self.venue_id,
                                                 client_order_id=tr.order.client_order_id, code=code,
                                                 venue_text=m.text))
            return
        if 2100 <= code < 2200 or code in (2104, 2106, 2158):
            log.debug("%s: TWS notice %d: %s", self.venue_id, code, m.text)
            return
        if code == ERR_CONNECTIVITY_LOST:
            self.ib_connected = False
            log.warning("%s: TWS lost its connection to IB (1100): %s", self.venue_id, m.text)
            return
        if code in (ERR_RESTORED_DATA_LOST, ERR_RESTORED_DATA_KEPT):
            self.ib_connected = True
            log.warning("%s: TWS connection to IB restored (%d); reconciling", self.venue_id, code)
            self._spawn(self.reconcile())
            return
        c = self._conn
        if code in CONNECT_ERRORS and c is not None and not c.ready.done():
            c.ready.set_exception(FinalVenueError(f"TWS refused the session: {m.text}", venue=self.venue_id,
                                                  code=code, venue_text=m.text))
            return
        tr = self._track_for(m.req_id) if m.req_id >= 0 else None
        if tr is None:
            log.warning("%s: TWS error %d (id %d): %s", self.venue_id, code, m.req_id, m.text)
            return
        cid = tr.order.client_order_id
        if code in _WARNINGS:
            log.info("%s: %s: TWS warning %d: %s", self.venue_id, cid, code, m.text)
            return
        if code == ERR_CANCELLED:
            self._heard(tr)
            self._on_terminal(tr, OrderEventKind.CANCELED, tr.venue_cum_lots, now, reason=m.text, code=str(code))
            return
        if code in CANCEL_REFUSED:
            tr.cancel_pending = False
            self._emit(OrderEvent(kind=OrderEventKind.CANCEL_REJECTED, client_order_id=cid, venue=self.venue_id,
                                  ts_event=now, ts_init=now, venue_order_id=VenueOrderId(str(tr.order_id)),
                                  reason=m.text, code=str(code)))
            return
        if not tr.accepted and tr.terminal is None:
            # 201 and the other order errors before TWS took the order: it was not placed
            self._heard(tr)
            log.warning("%s: %s (order %d) rejected by TWS, error %d: %s", self.venue_id, cid, tr.order_id, code,
                        m.text)
            self._on_terminal(tr, OrderEventKind.REJECTED, 0, now, reason=m.text, code=str(code))
            if code == ERR_DUPLICATE_ID:
                self._spawn(self._request_ids())
            return
        log.warning("%s: %s (order %d): TWS error %d: %s", self.venue_id, cid, tr.order_id, code, m.text)

    def _cancel_ghost(self, tr: _Track) -> None:
        """TWS works an order it had refused with error 100 (sorex has it REJECTED): cancel it, so
        no order lives at IB that the engine does not count. Its fills, if any, are still reported."""
        tr.paced_out = False
        log.error("%s: TWS works order %d (%s) although it answered error 100 to it; cancelling it",
                  self.venue_id, tr.order_id, tr.order.client_order_id)
        self._spawn(self._send_cancel(tr.order_id))

    async def _send_cancel(self, order_id: int) -> None:
        try:
            await self._send(encode_cancel_order(order_id, self.server_version or 0), "cancel")
        except VenueError as e:
            log.error("%s: cancel of order %d not sent: %s", self.venue_id, order_id, e)

    async def _request_ids(self) -> None:
        try:
            await self._send(encode_req_ids(-1), "query_order")
        except VenueError as e:
            log.warning("%s: reqIds not sent: %s", self.venue_id, e)

    # ------------------------------------------------------------------ commands
    def _inst(self, symbol: str) -> Instrument:
        inst = self.info.instruments.get(symbol)
        if inst is None:
            raise OrderRejected(f"unknown symbol {symbol!r}", venue=self.venue_id)
        return inst

    def _ib_order(self, order: Order, inst: Instrument) -> IbOrder:
        cid = order.client_order_id

        def refuse(why: str) -> OrderRejected:
            return OrderRejected(why, venue=self.venue_id, client_order_id=cid)

        if not (0 < len(cid) <= _ORDER_REF_MAX and cid.isascii() and cid.isprintable()):
            raise refuse(f"client order id {cid!r} must be 1-{_ORDER_REF_MAX} printable ASCII characters (orderRef)")
        if order.display_lots is not None:
            raise refuse("icebergs (display quantity) are not supported by the IB adapter")
        if order.time_in_force is TimeInForce.IOC:
            tif = "IOC"
        elif order.time_in_force is TimeInForce.GTC:
            tif = self.config.resting_tif
        else:
            raise refuse(f"time in force {order.time_in_force.value} is not offered by the IB adapter (GTC, IOC)")
        why = inst.check_order(order.price_ticks if order.order_type is OrderType.LIMIT else None, order.lots)
        if why is not None:
            raise refuse(why)
        if order.order_type is OrderType.LIMIT:
            if order.price_ticks is None:
                raise refuse("a LIMIT order needs a price")
            return IbOrder("BUY" if order.side is Side.BUY else "SELL", inst.lots_to_qty(order.lots), "LMT",
                           inst.ticks_to_price(order.price_ticks), tif=tif, account=self.config.account,
                           order_ref=cid, outside_rth=self.config.outside_rth)
        if order.order_type is OrderType.MARKET:
            return IbOrder("BUY" if order.side is Side.BUY else "SELL", inst.lots_to_qty(order.lots), "MKT",
                           None, tif=tif, account=self.config.account, order_ref=cid,
                           outside_rth=self.config.outside_rth)
        raise refuse(f"order type {order.order_type.value} is not supported by the IB adapter")

    async def submit(self, order: Order) -> None:
        """placeOrder under the next order id, ``orderRef`` = our client order id. Returns once TWS
        said something about it (ACCEPTED or REJECTED reported); raises :class:`VenueTimeout` /
        :class:`VenueDisconnected` (the order is UNKNOWN until the next reconciliation settles it) or
        :class:`RateLimited` (TWS answered error 100: it did not take the message). A second submit
        of an id still tracked sends nothing: it reconciles (IB has no client-id duplicate check)."""
        inst = self._inst(order.symbol)
        ib_order = self._ib_order(order, inst)
        cid = order.client_order_id
        old = self._tracks.get(cid)
        if old is not None and old.terminal is not OrderEventKind.REJECTED:
            log.info("%s: %s already sent as order %d; reconciling instead of sending it again", self.venue_id,
                     cid, old.order_id)
            await self.reconcile()
            return
        contract = self.config.contracts[inst.symbol]
        await self.limiter.acquire("new_order")
        conn = self._conn
        if conn is None or conn.closed_why is not None or self.server_version is None:
            raise VenueDisconnected("not connected to TWS; nothing sent", venue=self.venue_id, client_order_id=cid)
        # ids are taken right before the write (no await between): TWS wants them increasing
        order_id = self._next_id
        self._next_id += 1
        self._seq += 1
        tr = _Track(order, inst, order_id=order_id, sent_seq=self._seq)
        tr.ack = asyncio.get_running_loop().create_future()
        self._tracks[cid] = tr
        self._by_order_id[order_id] = tr
        data = encode_place_order(order_id, contract, ib_order, conn.server_version)
        conn.writer.write(data)
        log.info("%s: %s sent as order %d: %s %s %s %s", self.venue_id, cid, order_id, ib_order.action,
                 ib_order.total_quantity, contract.symbol, ib_order.lmt_price or "MKT")
        try:
            await asyncio.wait_for(asyncio.shield(tr.ack), self.config.timeout_s)
        except TimeoutError:
            tr.unknown = True
            tr.ack = None   # a later answer settles it through the events; nobody waits any more
            self._spawn(self._resolve_later(cid))
            raise VenueTimeout(f"no word from TWS on order {order_id} within {self.config.timeout_s:g} s",
                               venue=self.venue_id, client_order_id=cid) from None

    async def _resolve_later(self, cid: ClientOrderId) -> None:
        tr = self._tracks.get(cid)
        if tr is None or not tr.unknown or not self.connected:
            return   # a reconnection reconciles it
        try:
            await self.reconcile()
        except VenueError as e:
            log.warning("%s: reconciliation for UNKNOWN %s failed: %s", self.venue_id, cid, e)

    async def cancel(self, client_order_id: ClientOrderId) -> None:
        """cancelOrder; the outcome comes as CANCELED (orderStatus Cancelled / error 202) or
        CANCEL_REJECTED (error 161, 10147, 10148)."""
        tr = self._tracks.get(client_order_id)
        if tr is None:
            raise UnknownOrderError(f"{self.venue_id}: cannot cancel {client_order_id}: not sent in this session")
        if tr.terminal is not None:
            now = self._clock.now_ns()
            self._emit(OrderEvent(kind=OrderEventKind.CANCEL_REJECTED, client_order_id=client_order_id,
                                  venue=self.venue_id, ts_event=now, ts_init=now,
                                  venue_order_id=VenueOrderId(str(tr.order_id)),
                                  reason=f"order is already {tr.terminal.value}"))
            return
        await self.limiter.acquire("cancel")
        conn = self._conn
        if conn is None or conn.closed_why is not None:
            raise VenueDisconnected("not connected to TWS; cancel not sent", venue=self.venue_id,
                                    client_order_id=client_order_id)
        tr.cancel_pending = True
        conn.writer.write(encode_cancel_order(tr.order_id, conn.server_version))

    async def replace(self, client_order_id: ClientOrderId, *, lots: int | None = None,
                      price_ticks: int | None = None) -> None:
        """Not offered yet (``native_modify`` is False): cancel and submit a new order."""
        raise OrderRejected("replace is not supported by the IB adapter: cancel, then submit a new order",
                            venue=self.venue_id, client_order_id=client_order_id)

    # ------------------------------------------------------------------ reconciliation
    async def reconcile(self) -> list[OrderStatusReport]:
        """reqOpenOrders then reqExecutions (this client id) and settle every order this session
        still thinks live or UNKNOWN (see the module docstring); returns the reports of the orders
        it settled or confirmed."""
        async with self._recon_lock:
            seq = self._seq
            loop = asyncio.get_running_loop()
            self._open_seen = {}
            self._open_end = loop.create_future()
            try:
                await self._send(encode_req_open_orders(), "open_orders")
                await asyncio.wait_for(asyncio.shield(self._open_end), self.config.timeout_s)
                seen = self._open_seen
            except TimeoutError:
                raise VenueTimeout("no openOrderEnd after reqOpenOrders", venue=self.venue_id) from None
            finally:
                self._open_seen = None
            self._req_id += 1
            req_id = self._req_id
            fut = self._exec_end[req_id] = loop.create_future()
            try:
                sv = self.server_version or 0
                await self._send(encode_req_executions(req_id, sv, client_id=self.config.client_id), "query_order")
                await asyncio.wait_for(asyncio.shield(fut), self.config.timeout_s)
            except TimeoutError:
                raise VenueTimeout("no execDetailsEnd after reqExecutions", venue=self.venue_id) from None
            finally:
                self._exec_end.pop(req_id, None)
            reports = []
            for tr in list(self._tracks.values()):
                if tr.sent_seq > seq or (tr.ack is not None and not tr.ack.done()):
                    continue   # sent during this reconciliation: its answer is still on its way
                if tr.terminal is not None and tr.pending is None:
                    continue
                if tr.order_id not in seen and tr.terminal is None:
                    # a verdict on an order no longer open: its executions first, fee known or not
                    for exec_id in [x for x, h in self._held.items() if h.track is tr]:
                        self._release(exec_id)
                    if tr.terminal is not None:
                        continue   # filled by those executions
                    now = self._clock.now_ns()
                    if tr.pending is not None:
                        log.error("%s: %s: TWS says %s with %d lots, executions add up to %d", self.venue_id,
                                  tr.order.client_order_id, tr.pending[0].value, tr.pending[1], tr.filled_lots)
                        continue
                    if not tr.accepted and tr.filled_lots == 0:
                        self.stats["unresolved"] += 1
                        self._on_terminal(tr, OrderEventKind.REJECTED, 0, now,
                                          reason="not at TWS: not open and no executions", code="not_found")
                    else:
                        self._on_terminal(tr, OrderEventKind.CANCELED, tr.filled_lots, now,
                                          reason="no longer open at TWS (cancelled or expired meanwhile)")
                tr.unknown = False
                rep = self._report(tr)
                reports.append(rep)
                if self._report_handler is not None:
                    self._report_handler(rep)
            return reports

    def _report(self, tr: _Track) -> OrderStatusReport:
        t = tr.terminal
        if t is OrderEventKind.FILLED:
            st = OrderStatus.FILLED
        elif t is OrderEventKind.CANCELED:
            st = OrderStatus.CANCELED
        elif t is OrderEventKind.REJECTED:
            st = OrderStatus.REJECTED
        elif t is OrderEventKind.EXPIRED:
            st = OrderStatus.EXPIRED
        elif tr.unknown:
            st = OrderStatus.UNKNOWN
        elif not tr.accepted:
            st = OrderStatus.PENDING_NEW
        else:
            st = OrderStatus.PARTIALLY_FILLED if tr.filled_lots else OrderStatus.NEW
        return OrderStatusReport(client_order_id=tr.order.client_order_id, venue=self.venue_id,
                                 symbol=tr.inst.symbol, side=tr.order.side, status=st, lots=tr.order.lots,
                                 filled_lots=tr.filled_lots, price_ticks=tr.order.price_ticks,
                                 venue_order_id=VenueOrderId(str(tr.order_id)), ts_event=self._clock.now_ns())

    # ------------------------------------------------------------------ queries
    async def order_status(self, client_order_id: ClientOrderId) -> OrderStatusReport:
        """TWS has no per-order query: reconciles, then reports the order as now known."""
        tr = self._tracks.get(client_order_id)
        if tr is None:
            raise UnknownOrderError(f"{self.venue_id}: order {client_order_id} is not known here")
        await self.reconcile()
        return self._report(tr)

    async def open_orders(self, symbol: str | None = None) -> list[OrderStatusReport]:
        """This session's orders still working after a reconciliation (reqOpenOrders)."""
        await self.reconcile()
        return [self._report(tr) for tr in self._tracks.values()
                if tr.terminal is None and tr.accepted and (symbol is None or tr.inst.symbol == symbol)]

    async def balances(self) -> dict[str, Balance]:
        raise VenueError("balances are not implemented by the IB adapter (reqAccountSummary is missing)",
                         venue=self.venue_id)

    async def positions(self) -> list[Position]:
        raise VenueError("positions are not implemented by the IB adapter (reqPositions is missing)",
                         venue=self.venue_id)
