"""Order manager: the state of every child order, its fills, and per-parent quantity accounting.

Synchronous and event driven (no asyncio): commands (:meth:`OrderManager.submit`, ``cancel``,
``replace``) are journaled *before* the caller sends them; venue input (:meth:`on_event`,
:meth:`on_status_report`, :meth:`reconcile`) is validated, de-duplicated, journaled, then applied.

State machine (``OrderStatus``)::

    PENDING_NEW ──ack──> NEW ──fill──> PARTIALLY_FILLED ──fill──> FILLED
        │  └─timeout/disconnect─> UNKNOWN ──(status query | user stream | reconcile)──> any
        ├─reject─> REJECTED            NEW/PARTIALLY_FILLED ──cancel──> PENDING_CANCEL ──> CANCELED
        └─fill (before ack) ──> PARTIALLY_FILLED / FILLED      (cancel rejected: back to NEW/PARTIALLY_FILLED)

A timed-out submit is UNKNOWN, never REJECTED: the venue may have the order. Out-of-order input is
expected (a fill before the ack, an ack after a cancel): a fill is a fact and always counts, stale
status events never move a terminal order back. An order the venue acknowledged (or filled) is never
REJECTED, whether an event or a status report says so: that input is refused (below), the order kept.
Fills are de-duplicated by (venue, order, trade id).
Filling more than ordered raises no exception into the venue's callback but is *recorded*: logged
at ERROR, an :class:`~marketdata.errors.OverfillError` appended to :attr:`OrderManager.errors`, and
``on_overfill`` called. Input that cannot be applied (unknown order id, negative or zero quantities,
missing fill, wrong venue, impossible transition) is logged with the raw message and journaled as
``garbled_event``; state is left untouched.

Client order ids are deterministic: ``sx-<run>-<parent>-<n>``, ``n`` counting per parent from 1,
at most 36 characters of ``[.A-Za-z0-9:/_-]`` (Binance's limit); long run or parent ids are replaced
by a short hash. After a restart :meth:`OrderManager.restore` rebuilds the counters from the journal
so new ids never collide, and a retried submit (:meth:`retry_submit`) reuses its id.

Per-parent accounting (in *parent units*: the common lot of the symbol across the venues in the
registry, see :class:`~marketdata.units.CommonGrid`): ``filled`` + ``working`` (acked, not done) +
``in_flight`` (sent, not acked) + ``unknown``. While a replace is pending the larger of the old and
new quantity counts; a cancel-then-new replace counts both orders until the cancel is confirmed.
:meth:`can_send` refuses anything that would take :meth:`parent_exposure` above the parent's total.

Replaces in flight: one at a time per order. A venue refuses a replace with CANCEL_REJECTED; while a
replace is pending that answers the replace (the order keeps its size and price, and a cancel sent
after it stays pending), otherwise the cancel. A replace that times out stays pending (the larger
size counts) until the venue's answer or a status report settles it: the new terms mean it was
applied, the old ones that it never took effect. A cancel-then-new's replacement stops counting
(REJECTED "not sent") when the old order's cancel is refused or it ends other than CANCELED.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marketdata.clock import Clock
from marketdata.errors import (
    FinalVenueError,
    InstrumentError,
    InvariantError,
    OverfillError,
    RateLimited,
    RiskRejected,
    SorexError,
    UnknownOrderError,
)
from marketdata.model import (
    ClientOrderId,
    DecisionId,
    Fill,
    Instrument,
    InstrumentKind,
    InstrumentRegistry,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    ParentOrderId,
    Side,
    TimeInForce,
    TradeId,
    VenueId,
    VenueOrderId,
)
from marketdata.units import CommonGrid
from venues.base import OrderStatusReport, carried_display
from venues.journal import Journal, JournalRecord

log = logging.getLogger(__name__)

__all__ = ["ManagedOrder", "OrderManager", "ParentAccounting", "ReconcileResult", "check_transition",
           "make_client_order_id"]

S = OrderStatus
_LEGAL: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_NEW: frozenset({S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELED, S.EXPIRED,
                              S.UNKNOWN, S.PENDING_CANCEL}),
    S.UNKNOWN: frozenset({S.PENDING_NEW, S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.REJECTED, S.CANCELED,
                          S.EXPIRED, S.PENDING_CANCEL}),
    S.NEW: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.FILLED, S.PENDING_CANCEL, S.CANCELED, S.EXPIRED}),
    # REJECTED / PENDING_NEW: a cancel sent before the venue acknowledged the order can overtake it
    # (the order is then rejected, or the cancel is refused as unknown and the order is still pending).
    # UNKNOWN: the same, for a cancel of an order whose submit had timed out.
    S.PENDING_CANCEL: frozenset({S.PENDING_NEW, S.UNKNOWN, S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED,
                                 S.EXPIRED, S.REJECTED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}
_WORKING = frozenset({S.NEW, S.PARTIALLY_FILLED, S.PENDING_CANCEL})
_PENDING_NEW, _UNKNOWN = S.PENDING_NEW, S.UNKNOWN
_INFO = logging.INFO


def check_transition(frm: OrderStatus, to: OrderStatus, *, client_order_id: str = "?") -> None:
    """Raise :class:`InvariantError` unless ``frm -> to`` is a legal order-status transition
    (staying in the same status is always legal)."""
    if frm is to or to in _LEGAL[frm]:
        return
    raise InvariantError(f"order {client_order_id}: illegal transition {frm.value} -> {to.value}")


_ID_OK = re.compile(r"[^.A-Za-z0-9:/_]")
MAX_ID_LEN = 36


def _tag(text: str, max_len: int) -> str:
    clean = _ID_OK.sub("_", text)
    if clean and len(clean) <= max_len and clean == text:
        return clean
    return hashlib.blake2b(text.encode(), digest_size=max_len // 2).hexdigest()


def make_client_order_id(run_id: str, parent_id: str | None, n: int, *, prefix: str = "sx") -> ClientOrderId:
    """``<prefix>-<run>-<parent>-<n>``: deterministic, <= 36 chars of ``[.A-Za-z0-9:/_-]``.

    A run id longer than 8 chars or a parent id longer than 12 (or using other characters) is
    replaced by a blake2b hash of the same length, so the id stays stable and short."""
    if n <= 0 or n >= 10**11:
        raise ValueError(f"client order sequence {n} out of range 1..10^11-1")
    cid = f"{_tag(prefix, 4)}-{_tag(run_id, 8)}-{_tag(parent_id or 'none', 12)}-{n}"
    assert len(cid) <= MAX_ID_LEN, cid
    return ClientOrderId(cid)




@dataclass(slots=True)
class ManagedOrder:
    """One child order as the manager knows it (mutable; read it, do not change it)."""

    order: Order
    status: OrderStatus = OrderStatus.PENDING_NEW
    filled_lots: int = 0
    venue_filled_lots: int = 0
    venue_order_id: VenueOrderId | None = None
    acked: bool = False
    retries: int = 0
    fills: list[Fill] = field(default_factory=list)
    pending_replace: tuple[int, int | None] | None = None
    # the pending replace's request timed out (or a restart lost its answer): only a status report
    # can settle it, and one with the old terms then means it never took effect
    replace_unknown: bool = False
    replaces: ClientOrderId | None = None
    replaced_by: ClientOrderId | None = None
    overfilled: bool = False
    reason: str | None = None
    history: list[tuple[int, OrderStatus]] = field(default_factory=list)

    @property
    def client_order_id(self) -> ClientOrderId:
        return self.order.client_order_id

    @property
    def lots(self) -> int:
        return self.order.lots

    @property
    def executed_lots(self) -> int:
        """Filled lots as best known: our fills or what the venue reported, whichever is more."""
        return self.filled_lots if self.filled_lots >= self.venue_filled_lots else self.venue_filled_lots

    @property
    def open_lots(self) -> int:
        """Lots that may still execute (0 once terminal); a pending replace counts its larger size."""
        if self.status.is_terminal:
            return 0
        target = self.order.lots
        if self.pending_replace is not None and self.pending_replace[0] > target:
            target = self.pending_replace[0]
        return max(0, target - self.executed_lots)


@dataclass(frozen=True, slots=True)
class ParentAccounting:
    """Quantities of one parent in parent units (common lots of its symbol)."""

    filled: int
    working: int
    in_flight: int
    unknown: int

    @property
    def exposure(self) -> int:
        return self.filled + self.working + self.in_flight + self.unknown


@dataclass
class ReconcileResult:
    """What :meth:`OrderManager.reconcile` did."""

    settled: list[ClientOrderId] = field(default_factory=list)
    unresolved: list[ClientOrderId] = field(default_factory=list)
    foreign: list[OrderStatusReport] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


_REPORT_KIND = {S.NEW: OrderEventKind.ACCEPTED, S.PARTIALLY_FILLED: OrderEventKind.PARTIALLY_FILLED,
                S.FILLED: OrderEventKind.FILLED, S.CANCELED: OrderEventKind.CANCELED,
                S.REJECTED: OrderEventKind.REJECTED, S.EXPIRED: OrderEventKind.EXPIRED,
                S.PENDING_NEW: OrderEventKind.SUBMITTED, S.PENDING_CANCEL: OrderEventKind.ACCEPTED,
                S.UNKNOWN: OrderEventKind.SUBMITTED}

OverfillCallback = Callable[[ManagedOrder, OverfillError], None]


class OrderManager:
    """Child-order state, fills and per-parent accounting, journaled (see the module docstring).

    ``instruments``: the registry (or an iterable of :class:`Instrument`) for every venue/symbol the
    manager will see; it converts lots/ticks to the journal's decimal strings and back."""

    def __init__(self, clock: Clock, instruments: InstrumentRegistry | Iterable[Instrument], *,
                 journal: Journal | None = None, run_id: str = "run", id_prefix: str = "sx",
                 on_overfill: OverfillCallback | None = None) -> None:
        self._clock = clock
        self.instruments = (instruments if isinstance(instruments, InstrumentRegistry)
                            else InstrumentRegistry(list(instruments)))
        self.journal = journal
        self.run_id = run_id
        self.id_prefix = id_prefix
        self.on_overfill = on_overfill
        self._orders: dict[ClientOrderId, ManagedOrder] = {}
        self._by_parent: dict[str | None, list[ManagedOrder]] = {}
        # (venue, client order id, trade id): venue trade ids are unique per symbol at best (Binance),
        # and a self-trade gives our buy and our sell the same one; a duplicate is the same order's
        self._trade_ids: set[tuple[str, str, str]] = set()
        self._next_seq: dict[str, int] = {}
        self._factor: dict[tuple[str, str], int] = {}
        self._id_base: dict[str | None, str] = {}
        # parent accounting, O(orders not yet seen terminal): terminal orders are folded into a
        # per-parent filled sum the first time parent_accounting meets them; a later change of their
        # executed lots (a late fill, a status report) or a move out of a terminal status corrects it
        self._acct_open: dict[str | None, list[ManagedOrder]] = {}
        # the orders not in a terminal status, in the order they were added: open_orders() is
        # O(open orders), not O(every order of the session)
        self._open: dict[ClientOrderId, ManagedOrder] = {}
        self._acct_closed: dict[str | None, int] = {}
        self._closed_contrib: dict[ClientOrderId, int] = {}
        self._replaying = False
        self.errors: list[SorexError] = []
        self.stats: dict[str, int] = {"events": 0, "fills": 0, "duplicate_fills": 0, "garbled": 0,
                                      "overfills": 0, "stale_events": 0, "reports": 0}

    # ================================================================ ids
    def prepare_parent(self, parent_id: str | None) -> None:
        """Build (and cache) the id prefix of ``parent_id``'s orders now, so that its first child
        does not pay for it (tags are checked with a regex, long ones hashed). Allocates no id."""
        self._id_prefix(parent_id)

    def _id_prefix(self, parent_id: str | None) -> str:
        base = self._id_base.get(parent_id)
        if base is None:
            base = self._id_base[parent_id] = make_client_order_id(
                self.run_id, parent_id, 1, prefix=self.id_prefix).rsplit("-", 1)[0]
        return base

    def next_client_order_id(self, parent_id: str | None) -> ClientOrderId:
        """Allocate the next deterministic id for ``parent_id`` (skipping any already in use)."""
        base = self._id_base.get(parent_id)
        if base is None:
            base = self._id_prefix(parent_id)
        n = self._next_seq.get(base, 1)
        while True:
            cid = ClientOrderId(f"{base}-{n}")
            n += 1
            if cid not in self._orders:
                break
        self._next_seq[base] = n
        return cid

    def _note_id(self, cid: str) -> None:
        base, _, tail = cid.rpartition("-")
        if base and tail.isdigit():
            n = int(tail) + 1
            if n > self._next_seq.get(base, 1):
                self._next_seq[base] = n

    # ================================================================ helpers
    def _instrument(self, venue: str, symbol: str) -> Instrument:
        return self.instruments.get(venue, symbol)

    def _parent_factor(self, venue: str, symbol: str) -> int:
        key = (venue, symbol)
        f = self._factor.get(key)
        if f is None:
            insts = [i for i in self.instruments.venues_for(symbol)
                     if i.kind is not InstrumentKind.INVERSE_PERPETUAL]
            if len(insts) > 1 and any(i.venue == venue for i in insts):
                f = CommonGrid.from_instruments(insts).lot_factor[venue]
            else:
                f = 1
            self._factor[key] = f
        return f

    def to_parent_units(self, venue: str, symbol: str, lots: int) -> int:
        """Venue lots -> parent units (common lots of ``symbol`` across the registry's venues)."""
        return lots * self._parent_factor(venue, symbol)

    def _journal(self, kind: str, payload: dict[str, Any], *, venue: str | None = None,
                 client_order_id: str | None = None, parent_id: str | None = None) -> None:
        if self.journal is not None and not self._replaying:
            self.journal.append(kind, self._clock.now_ns(), payload, venue=venue,
                                client_order_id=client_order_id, parent_id=parent_id)

    def _set_status(self, mo: ManagedOrder, to: OrderStatus) -> None:
        frm = mo.status
        if frm is to:
            return
        if to not in _LEGAL[frm]:
            check_transition(frm, to, client_order_id=mo.client_order_id)   # raises
        mo.status = to
        terminal = to.is_terminal
        if terminal:   # final: _LEGAL has no way out of a terminal status
            self._open.pop(mo.order.client_order_id, None)
        if not terminal and mo.order.client_order_id in self._closed_contrib:
            self._reopen(mo)
        mo.history.append((self._clock.now_ns(), to))
        if terminal:
            mo.pending_replace = None
            mo.replace_unknown = False
            if mo.replaced_by is not None and to is not S.CANCELED:
                self._drop_unsent_replacement(mo, f"{mo.client_order_id} ended {to.value}, not canceled")

    def _drop_unsent_replacement(self, mo: ManagedOrder, why: str) -> None:
        """``mo``'s cancel (of a cancel-then-new) was refused, or ``mo`` ended other than CANCELED:
        its replacement is never placed (Binance ``cancel_replace`` is STOP_ON_FAILURE; any other
        caller sends it only after CANCELED), so it stops counting: REJECTED, journaled."""
        nmo = self._orders.get(mo.replaced_by) if mo.replaced_by is not None else None
        if (self._replaying or nmo is None or nmo.status not in (S.PENDING_NEW, S.UNKNOWN) or nmo.acked
                or nmo.executed_lots):
            return   # (replaying: the journaled local REJECTED that follows settles it)
        self._event_local(nmo, OrderEventKind.REJECTED, f"not sent: {why}", None)

    def _command_payload(self, action: str, o: Order, *, lots: int | None = None,
                         price_ticks: int | None = None) -> dict[str, Any]:
        inst = self._instrument(o.venue, o.symbol)
        lots = o.lots if lots is None else lots
        price = o.price_ticks if price_ticks is None else price_ticks
        payload = {"action": action, "client_order_id": o.client_order_id, "venue": o.venue,
                   "symbol": o.symbol, "side": "buy" if o.side is Side.BUY else "sell",
                   "order_type": o.order_type.value, "time_in_force": o.time_in_force.value,
                   "quantity": str(inst.lots_to_qty(lots)),
                   "price": None if price is None else str(inst.ticks_to_price(price)),
                   "parent_id": o.parent_id, "decision_id": o.decision_id}
        if o.display_lots is not None:   # a native iceberg: the quantity shown at a time
            payload["display"] = str(inst.lots_to_qty(o.display_lots))
        return payload

    def _add(self, mo: ManagedOrder, *, note_id: bool = True) -> None:
        """Register a new order. ``note_id=False``: its id came from :meth:`next_client_order_id`,
        whose counter is already past it."""
        cid = mo.order.client_order_id
        pid = mo.order.parent_id
        self._orders[cid] = mo
        if not mo.status.is_terminal:
            self._open[cid] = mo
        lst = self._by_parent.get(pid)
        if lst is None:
            self._by_parent[pid] = [mo]
        else:
            lst.append(mo)
        lst = self._acct_open.get(pid)
        if lst is None:
            self._acct_open[pid] = [mo]
        else:
            lst.append(mo)
        if note_id:
            self._note_id(cid)
        mo.history.append((self._clock.now_ns(), mo.status))

    def _record_error(self, mo: ManagedOrder | None, err: SorexError) -> None:
        self.errors.append(err)
        log.error("%s", err)
        if isinstance(err, OverfillError) and mo is not None:
            mo.overfilled = True
            self.stats["overfills"] += 1
            if self.on_overfill is not None:
                self.on_overfill(mo, err)

    # ================================================================ queries
    def order(self, client_order_id: str) -> ManagedOrder:
        """The managed order with this id (raises :class:`UnknownOrderError`)."""
        try:
            return self._orders[ClientOrderId(client_order_id)]
        except KeyError:
            raise UnknownOrderError(f"unknown client order id {client_order_id!r}") from None

    def has_order(self, client_order_id: str) -> bool:
        return client_order_id in self._orders

    def orders(self, parent_id: str | None = None) -> list[ManagedOrder]:
        """All orders (or one parent's) in creation order."""
        if parent_id is None:
            return list(self._orders.values())
        return list(self._by_parent.get(parent_id, []))

    def open_orders(self) -> list[ManagedOrder]:
        """The orders not in a terminal status, oldest first. O(open orders)."""
        return list(self._open.values())

    def parent_accounting(self, parent_id: str) -> ParentAccounting:
        """Filled / working / in-flight / unknown of ``parent_id`` in parent units.
        O(orders of the parent not yet terminal when last asked)."""
        return ParentAccounting(*self.parent_accounting_values(parent_id))

    def parent_accounting_values(self, parent_id: str) -> tuple[int, int, int, int]:
        """:meth:`parent_accounting` as a plain ``(filled, working, in_flight, unknown)`` tuple
        (the engine's per-child path; no frozen dataclass built)."""
        filled = working = in_flight = unknown = 0
        orders = self._acct_open.get(parent_id)
        if orders:
            closed = 0
            keep: list[ManagedOrder] = []
            factors = self._factor
            for mo in orders:
                o = mo.order
                f = factors.get((o.venue, o.symbol))
                if f is None:
                    f = self._parent_factor(o.venue, o.symbol)
                # ManagedOrder.executed_lots / open_lots, inlined (this runs once per child routed)
                ex = mo.filled_lots
                if mo.venue_filled_lots > ex:
                    ex = mo.venue_filled_lots
                st = mo.status
                if st.is_terminal:
                    # open_lots is 0 from now on: fold it into the sum
                    c = ex * f
                    self._closed_contrib[o.client_order_id] = c
                    closed += c
                    continue
                keep.append(mo)
                filled += ex * f
                target = o.lots
                pr = mo.pending_replace
                if pr is not None and pr[0] > target:
                    target = pr[0]
                rem = (target - ex) * f if target > ex else 0
                if st is _PENDING_NEW:
                    in_flight += rem
                elif st is _UNKNOWN:
                    unknown += rem
                else:
                    working += rem
            if closed or len(keep) != len(orders):
                self._acct_open[parent_id] = keep
                self._acct_closed[parent_id] = self._acct_closed.get(parent_id, 0) + closed
        filled += self._acct_closed.get(parent_id, 0)
        return filled, working, in_flight, unknown

    def _recount(self, mo: ManagedOrder) -> None:
        """A folded (terminal) order's executed lots changed: correct its parent's filled sum."""
        cid = mo.client_order_id
        old = self._closed_contrib.get(cid)
        if old is not None:
            new = mo.executed_lots * self._parent_factor(mo.order.venue, mo.order.symbol)
            self._closed_contrib[cid] = new
            pid = mo.order.parent_id
            self._acct_closed[pid] = self._acct_closed.get(pid, 0) + new - old

    def _reopen(self, mo: ManagedOrder) -> None:
        """A folded order left its terminal status: count it among the open ones again."""
        pid = mo.order.parent_id
        self._acct_closed[pid] = self._acct_closed.get(pid, 0) - self._closed_contrib.pop(mo.client_order_id)
        self._acct_open.setdefault(pid, []).append(mo)

    def parent_exposure(self, parent_id: str) -> int:
        """filled + working + in-flight + unknown of ``parent_id``, in parent units."""
        return self.parent_accounting(parent_id).exposure

    def can_send(self, parent_id: str, lots: int, parent_total: int) -> bool:
        """Whether ``lots`` more parent units keep ``parent_id``'s exposure within ``parent_total``."""
        return lots >= 0 and self.parent_exposure(parent_id) + lots <= parent_total

    # ================================================================ commands
    def submit(self, *, venue: str, symbol: str, side: Side, lots: int,
               order_type: OrderType = OrderType.LIMIT, price_ticks: int | None = None,
               time_in_force: TimeInForce = TimeInForce.GTC, parent_id: str | None = None,
               decision_id: str | None = None, parent_total: int | None = None,
               client_order_id: str | None = None, display_lots: int | None = None) -> Order:
        """Create a child order, journal the ``submit`` command and return the :class:`Order` to
        send. With ``parent_total`` (parent units) refuses (:class:`RiskRejected`, rule
        ``parent_exposure``) an order that could overfill the parent. ``display_lots``: a native
        iceberg's visible quantity (0 < display < lots; journaled as ``display``)."""
        inst = self._instrument(venue, symbol)
        if lots <= 0:
            raise InstrumentError(f"{inst.key}: order quantity must be positive, got {lots} lots")
        if order_type is OrderType.LIMIT and price_ticks is None:
            raise InstrumentError(f"{inst.key}: a limit order needs a price")
        if display_lots is not None and not 0 < display_lots < lots:
            raise InstrumentError(f"{inst.key}: an iceberg's display must be above 0 and below its "
                                  f"{lots} lots, got {display_lots}")
        if parent_total is not None and parent_id is not None:
            units = self.to_parent_units(venue, symbol, lots)
            if not self.can_send(parent_id, units, parent_total):
                raise RiskRejected(f"parent {parent_id}: exposure {self.parent_exposure(parent_id)} + "
                                   f"{units} would exceed {parent_total}", rule="parent_exposure")
        if client_order_id is not None:
            if client_order_id in self._orders:
                raise InvariantError(f"client order id {client_order_id} already used")
            if len(client_order_id) > MAX_ID_LEN or _ID_OK.search(client_order_id.replace("-", "")):
                raise InstrumentError(f"client order id {client_order_id!r} breaks venue id rules")
            cid = ClientOrderId(client_order_id)
        else:
            cid = self.next_client_order_id(parent_id)
        order = Order(client_order_id=cid, venue=VenueId(venue), symbol=inst.symbol, side=side,
                      order_type=order_type, lots=lots, price_ticks=price_ticks, time_in_force=time_in_force,
                      display_lots=display_lots,
                      parent_id=ParentOrderId(parent_id) if parent_id is not None else None,
                      decision_id=DecisionId(decision_id) if decision_id is not None else None,
                      ts_init=self._clock.now_ns())
        if self.journal is not None and not self._replaying:   # the payload's decimals cost: only when written
            self._journal("order_command", self._command_payload("submit", order), venue=venue,
                          client_order_id=cid, parent_id=parent_id)
        self._add(ManagedOrder(order), note_id=client_order_id is not None)
        if log.isEnabledFor(_INFO):   # side.name is an enum property: not evaluated for nothing
            log.info("%s %s %s: submit %s %d lots @ %s", venue, symbol, cid, side.name, lots, price_ticks)
        return order

    def retry_submit(self, client_order_id: str) -> Order:
        """The same order again (same client id) after a timeout/disconnect: journals the retry and
        returns the order to re-send. The venue's duplicate-id check makes the retry safe."""
        mo = self.order(client_order_id)
        if mo.status not in (S.UNKNOWN, S.PENDING_NEW):
            raise InvariantError(f"order {client_order_id} is {mo.status.value}; only an UNKNOWN or "
                                 f"pending submit can be retried")
        payload = self._command_payload("submit", mo.order)
        payload["retry"] = True
        self._journal("order_command", payload, venue=mo.order.venue, client_order_id=mo.client_order_id,
                      parent_id=mo.order.parent_id)
        mo.retries += 1
        self._set_status(mo, S.PENDING_NEW)
        return mo.order

    def on_send_failed(self, client_order_id: str, error: BaseException) -> OrderStatus:
        """The transport failed to deliver the last command for this order. A retryable failure
        (timeout, disconnect) leaves a submit UNKNOWN and a replace pending (settled by the venue's
        answer or a status report); a rate-limit refusal or a final venue error means the venue did
        not take it (submit: REJECTED; cancel: back to working, a replace sent before it still
        pending; replace: dropped, the order unchanged)."""
        mo = self.order(client_order_id)
        not_taken = isinstance(error, (RateLimited, FinalVenueError))
        if mo.status is S.PENDING_NEW:
            if not_taken and mo.retries:
                # a refused *retry*: the original submit timed out and may still be at the venue
                log.warning("%s %s: retry not taken (%s); order state UNKNOWN until the venue says",
                            mo.order.venue, mo.client_order_id, error)
                self._set_status(mo, S.UNKNOWN)
            elif not_taken:
                self._event_local(mo, OrderEventKind.REJECTED, str(error), getattr(error, "code", None))
            else:
                log.warning("%s %s: submit failed (%s); order state UNKNOWN until the venue says",
                            mo.order.venue, mo.client_order_id, error)
                self._set_status(mo, S.UNKNOWN)
        elif not_taken and mo.status is S.PENDING_CANCEL:
            # the cancel was the last command (no replace can follow it): a replace sent before it
            # is still at the venue and keeps counting
            self._event_local(mo, OrderEventKind.CANCEL_REJECTED, str(error), getattr(error, "code", None),
                              refused="cancel")
        elif not_taken and mo.pending_replace is not None:
            self._event_local(mo, OrderEventKind.CANCEL_REJECTED, str(error), getattr(error, "code", None),
                              refused="replace")
        elif mo.pending_replace is not None and mo.status is not S.PENDING_CANCEL:
            # a replace that timed out may or may not have reached the venue: it keeps counting at
            # the larger size until a status report (or the venue's answer) settles it
            log.warning("%s %s: replace failed (%s); replace state unknown until the venue says",
                        mo.order.venue, mo.client_order_id, error)
            mo.replace_unknown = True
        return mo.status

    def _event_local(self, mo: ManagedOrder, kind: OrderEventKind, reason: str, code: Any, *,
                     refused: str | None = None) -> None:
        now = self._clock.now_ns()
        ev = OrderEvent(kind=kind, client_order_id=mo.client_order_id, venue=mo.order.venue, ts_event=now,
                        ts_init=now, reason=reason, code=None if code is None else str(code))
        self._journal_event(ev, mo, source="local", extra=None if refused is None else {"refused": refused})
        self._apply(ev, mo, refused=refused)

    def cancel(self, client_order_id: str) -> Order:
        """Journal a cancel command and mark the order PENDING_CANCEL; returns the order to cancel."""
        mo = self._orders.get(ClientOrderId(client_order_id))
        if mo is None:
            mo = self.order(client_order_id)   # raises UnknownOrderError
        if mo.status.is_terminal:
            raise InvariantError(f"order {client_order_id} is already {mo.status.value}; nothing to cancel")
        if self.journal is not None and not self._replaying:
            self._journal("order_command", self._command_payload("cancel", mo.order), venue=mo.order.venue,
                          client_order_id=mo.client_order_id, parent_id=mo.order.parent_id)
        self._set_status(mo, S.PENDING_CANCEL)
        return mo.order

    def mark_unresolved(self, client_order_id: str, reason: str) -> OrderStatus:
        """The caller stops waiting for the venue's word on this open order (a live shutdown after
        its settle timeout and one round of status queries): journals an ``order_event`` with
        ``source: "unresolved"`` (kind ``submitted``, ``status`` after, ``previous``, ``acked``,
        ``reason``) and returns the order's status. An order the venue
        never acknowledged nor filled (its submit got no answer) becomes UNKNOWN: it may or may not
        be at the venue, and its parent's accounting counts it as ``unknown``, no longer
        ``in_flight`` or working. An acknowledged order keeps its status (the venue has it; what is
        not confirmed is its cancel). A terminal order: nothing, nothing journaled."""
        mo = self.order(client_order_id)
        if mo.status.is_terminal:
            return mo.status
        before = mo.status
        self._mark_unresolved(mo, reason)
        if self.journal is not None and not self._replaying:
            # an order_event as a status report of an UNKNOWN order is journaled (kind "submitted",
            # "status"), with source "unresolved": restore replays it (_replay), TCA passes over it
            inst = self._instrument(mo.order.venue, mo.order.symbol)
            now = self._clock.now_ns()
            ev = OrderEvent(kind=OrderEventKind.SUBMITTED, client_order_id=mo.client_order_id, venue=mo.order.venue,
                            ts_event=now, ts_init=now, venue_order_id=mo.venue_order_id, reason=reason)
            self._journal_event(ev, mo, source="unresolved", extra={
                "status": mo.status.value, "previous": before.value, "acked": mo.acked,
                "parent_id": mo.order.parent_id, "quantity": str(inst.lots_to_qty(mo.order.lots)),
                "filled": str(inst.lots_to_qty(mo.executed_lots))})
        log.error("%s %s: unresolved at the venue (%s -> %s): %s", mo.order.venue, mo.client_order_id,
                  before.value, mo.status.value, reason)
        return mo.status

    def _mark_unresolved(self, mo: ManagedOrder, reason: str) -> None:
        mo.reason = reason
        if (not mo.acked and not mo.executed_lots
                and mo.status in (S.PENDING_NEW, S.UNKNOWN, S.PENDING_CANCEL)):
            self._set_status(mo, S.UNKNOWN)

    def replace(self, client_order_id: str, *, lots: int | None = None, price_ticks: int | None = None,
                native: bool = True, parent_total: int | None = None) -> Order:
        """Change quantity (new total lots, fills included) and/or price.

        ``native``: the venue modifies in place (only for a venue whose
        ``capabilities.native_modify``: a venue that cancels and re-sends under an id of its own
        would report the new order under an id the manager never issued); the order counts at the
        larger of old/new size until REPLACED, the replace is refused (CANCEL_REJECTED) or, after a
        timeout (:meth:`on_send_failed`), a status report settles it. One replace at a time: another
        while one is pending raises :class:`InvariantError`. Otherwise cancel-then-new: the old
        order goes PENDING_CANCEL and a new order (new id, ``replaces`` = old id) for the remaining
        ``lots - filled`` is created PENDING_NEW; both count until the cancel is confirmed. Send it
        atomically (Binance ``cancel_replace``, STOP_ON_FAILURE) or only once the old order is
        CANCELED: if the cancel is refused or the old order ends otherwise (filled), the new one is
        settled REJECTED "not sent". Returns the order to send (the same order with new fields, or
        the new one)."""
        mo = self.order(client_order_id)
        o = mo.order
        if mo.status.is_terminal or mo.status is S.PENDING_CANCEL:
            raise InvariantError(f"order {client_order_id} is {mo.status.value}; cannot replace")
        if mo.pending_replace is not None:
            # one at a time: the venue's answer to the first (REPLACED or a refusal) could not be
            # told from the second's, and settling the first would stop counting the second
            raise InvariantError(f"order {client_order_id}: a replace is already in flight; wait for "
                                 "its REPLACED or refusal (or, after a timeout, a status report)")
        new_lots = o.lots if lots is None else lots
        new_price = o.price_ticks if price_ticks is None else price_ticks
        if new_lots <= mo.executed_lots:
            raise InvariantError(f"order {client_order_id}: new quantity {new_lots} lots is not above "
                                 f"the {mo.executed_lots} already filled")
        pid = o.parent_id
        if native:
            extra = max(0, new_lots - o.lots)
        else:
            extra = new_lots - mo.executed_lots
        if parent_total is not None and pid is not None:
            units = self.to_parent_units(o.venue, o.symbol, extra)
            if not self.can_send(pid, units, parent_total):
                raise RiskRejected(f"parent {pid}: replace adds {units}, exposure "
                                   f"{self.parent_exposure(pid)} would exceed {parent_total}",
                                   rule="parent_exposure")
        if native:
            payload = self._command_payload("replace", o, lots=new_lots, price_ticks=new_price)
            payload["native"] = True
            self._journal("order_command", payload, venue=o.venue, client_order_id=o.client_order_id,
                          parent_id=pid)
            mo.pending_replace = (new_lots, new_price)
            return Order(client_order_id=o.client_order_id, venue=o.venue, symbol=o.symbol, side=o.side,
                         order_type=o.order_type, lots=new_lots, price_ticks=new_price,
                         time_in_force=o.time_in_force, display_lots=carried_display(o.display_lots, new_lots),
                         parent_id=pid, decision_id=o.decision_id, ts_init=self._clock.now_ns())
        new_cid = self.next_client_order_id(pid)
        rem = new_lots - mo.executed_lots
        payload = self._command_payload("replace", o, lots=rem, price_ticks=new_price)
        payload["native"] = False
        payload["new_client_order_id"] = new_cid
        self._journal("order_command", payload, venue=o.venue, client_order_id=o.client_order_id, parent_id=pid)
        return self._apply_cancel_then_new(mo, new_cid, rem, new_price)

    def _apply_cancel_then_new(self, mo: ManagedOrder, new_cid: ClientOrderId, lots: int,
                               price_ticks: int | None) -> Order:
        o = mo.order
        new = Order(client_order_id=new_cid, venue=o.venue, symbol=o.symbol, side=o.side,
                    order_type=o.order_type, lots=lots, price_ticks=price_ticks,
                    time_in_force=o.time_in_force, display_lots=carried_display(o.display_lots, lots),
                    parent_id=o.parent_id, decision_id=o.decision_id, ts_init=self._clock.now_ns())
        nmo = ManagedOrder(new, replaces=mo.client_order_id)
        mo.replaced_by = new_cid
        if not mo.status.is_terminal:
            self._set_status(mo, S.PENDING_CANCEL)
        self._add(nmo)
        return new

    # ================================================================ venue input
    def on_garbled(self, venue: str, raw: Any, error: str) -> None:
        """Venue input that could not be parsed or applied: log it with the raw message, journal a
        ``garbled_event``, change nothing."""
        self.stats["garbled"] += 1
        raw_out = raw if isinstance(raw, (str, dict)) else repr(raw)
        log.warning("%s: garbled venue input (%s): %r", venue, error, raw_out)
        self._journal("garbled_event", {"venue": venue, "raw": raw_out, "error": error}, venue=venue)

    def _validate(self, ev: Any) -> tuple[ManagedOrder | None, str | None]:
        if not isinstance(ev, OrderEvent) or not isinstance(ev.kind, OrderEventKind):
            return None, "not an OrderEvent"
        if not ev.client_order_id:
            return None, "missing client_order_id"
        mo = self._orders.get(ev.client_order_id)
        if mo is None:
            return None, f"event for unknown client_order_id {ev.client_order_id!r}"
        if ev.venue != mo.order.venue:
            return None, f"event venue {ev.venue!r} differs from the order's {mo.order.venue!r}"
        if ev.kind in (OrderEventKind.PARTIALLY_FILLED, OrderEventKind.FILLED):
            f = ev.fill
            if f is None:
                return None, f"{ev.kind.value} event without its fill"
            if not isinstance(f.lots, int) or f.lots <= 0:
                return None, f"fill quantity {f.lots!r} lots must be a positive integer"
            if not isinstance(f.price_ticks, int) or f.price_ticks <= 0:
                return None, f"fill price {f.price_ticks!r} ticks must be a positive integer"
            if not f.trade_id:
                return None, "fill without trade id"
            if f.client_order_id != ev.client_order_id or f.venue != ev.venue:
                return None, "fill belongs to another order or venue"
            if f.fee is None or not isinstance(f.fee, Decimal):
                return None, f"fill fee {f.fee!r} is not a Decimal"
        if ev.kind is OrderEventKind.REPLACED and (
                (ev.new_lots is not None and ev.new_lots <= 0)
                or (ev.new_price_ticks is not None and ev.new_price_ticks <= 0)):
            return None, f"replace to non-positive quantity/price ({ev.new_lots}, {ev.new_price_ticks})"
        return mo, None

    def on_event(self, ev: OrderEvent) -> None:
        """Apply one venue event (user stream or adapter): validate, drop duplicate fills, journal
        (``fill`` or ``order_event``), then update the order. Never raises for bad venue input."""
        mo, error = self._validate(ev)
        if mo is None:
            self.on_garbled(str(getattr(ev, "venue", "?")), ev, error or "invalid")
            return
        self.stats["events"] += 1
        if ev.fill is not None:
            key = (ev.venue, ev.client_order_id, str(ev.fill.trade_id))
            if key in self._trade_ids:
                self.stats["duplicate_fills"] += 1
                log.info("%s %s: duplicate fill trade_id=%s dropped", ev.venue, ev.client_order_id,
                         ev.fill.trade_id)
                return
        if ev.kind is OrderEventKind.CANCEL_REJECTED:
            refused = self._refused_command(mo)
            self._journal_event(ev, mo, extra={"refused": refused})
            self._apply(ev, mo, refused=refused)
            return
        self._journal_event(ev, mo)
        self._apply(ev, mo)

    @staticmethod
    def _refused_command(mo: ManagedOrder) -> str:
        """What a venue's CANCEL_REJECTED answers: ``"replace"`` while a replace is pending, else
        ``"cancel"``. A venue answers one order's requests in the order they were sent, and no
        replace can be sent while a cancel is pending, so a pending replace is answered first."""
        return "replace" if mo.pending_replace is not None else "cancel"

    def _journal_event(self, ev: OrderEvent, mo: ManagedOrder, *, source: str | None = None,
                       extra: Mapping[str, Any] | None = None) -> None:
        if self.journal is None or self._replaying:
            return
        o = mo.order
        if ev.fill is not None:
            f = ev.fill
            inst = self._instrument(o.venue, o.symbol)
            payload: dict[str, Any] = {
                "client_order_id": f.client_order_id, "parent_id": o.parent_id, "venue": f.venue,
                "symbol": o.symbol, "side": "buy" if o.side is Side.BUY else "sell", "trade_id": str(f.trade_id),
                "price": str(inst.ticks_to_price(f.price_ticks)), "quantity": str(inst.lots_to_qty(f.lots)),
                "fee": str(f.fee), "fee_currency": f.fee_currency, "liquidity": f.liquidity.value,
                "ts_event": f.ts_event, "event_kind": ev.kind.value, "venue_order_id": ev.venue_order_id}
            self._journal("fill", payload, venue=o.venue, client_order_id=o.client_order_id,
                          parent_id=o.parent_id)
            return
        payload = {"kind": ev.kind.value, "client_order_id": ev.client_order_id, "venue": ev.venue,
                   "venue_order_id": ev.venue_order_id, "reason": ev.reason, "code": ev.code,
                   "ts_event": ev.ts_event}
        if ev.kind is OrderEventKind.REPLACED:
            inst = self._instrument(o.venue, o.symbol)
            payload["new_quantity"] = None if ev.new_lots is None else str(inst.lots_to_qty(ev.new_lots))
            payload["new_price"] = (None if ev.new_price_ticks is None
                                    else str(inst.ticks_to_price(ev.new_price_ticks)))
        if source is not None:
            payload["source"] = source
        if extra:
            payload.update(extra)
        self._journal("order_event", payload, venue=o.venue, client_order_id=o.client_order_id,
                      parent_id=o.parent_id)

    def _status_after_fill(self, mo: ManagedOrder) -> OrderStatus:
        if mo.executed_lots >= mo.order.lots:
            return S.FILLED
        if mo.status is S.PENDING_CANCEL:
            return S.PENDING_CANCEL
        return S.PARTIALLY_FILLED if mo.executed_lots > 0 else S.NEW

    def _check_overfill(self, mo: ManagedOrder, what: str) -> None:
        if mo.executed_lots > mo.order.lots and not mo.overfilled:
            self._record_error(mo, OverfillError(
                f"{mo.order.venue} {mo.order.symbol} {mo.client_order_id}: {what}: filled "
                f"{mo.executed_lots} lots > ordered {mo.order.lots}"))

    def _apply(self, ev: OrderEvent, mo: ManagedOrder, *, refused: str | None = None) -> None:
        """Apply one event; ``refused`` (CANCEL_REJECTED only): ``"cancel"`` or ``"replace"``, the
        command it answers (default :meth:`_refused_command`)."""
        K = OrderEventKind
        if ev.venue_order_id and not mo.venue_order_id:
            mo.venue_order_id = ev.venue_order_id
        try:
            if ev.fill is not None:
                self._apply_fill(mo, ev.fill)
            elif ev.kind is K.SUBMITTED:
                if mo.status is S.UNKNOWN:
                    self._set_status(mo, S.NEW)
            elif ev.kind is K.ACCEPTED:
                mo.acked = True
                if mo.status.is_terminal:
                    self._stale(mo, ev)
                elif mo.status is not S.PENDING_CANCEL:
                    self._set_status(mo, self._status_after_fill(mo))
            elif ev.kind is K.REJECTED:
                dup = mo.retries > 0 and "duplicate" in (ev.reason or "").lower()
                if dup and not mo.status.is_terminal:
                    # the retry hit the venue's duplicate-id check: the original is live (acked);
                    # a cancel sent meanwhile is still pending, and an order the original's ack or
                    # fills already moved on keeps its status
                    mo.acked = True
                    if mo.status in (S.PENDING_NEW, S.UNKNOWN):
                        self._set_status(mo, self._status_after_fill(mo))
                elif mo.pending_replace is not None and mo.status in _WORKING:
                    mo.pending_replace = None
                    mo.replace_unknown = False
                    mo.reason = ev.reason
                elif mo.status.is_terminal:
                    self._stale(mo, ev)
                else:
                    if mo.executed_lots:
                        raise InvariantError(f"order {mo.client_order_id}: rejected after "
                                             f"{mo.executed_lots} lots filled")
                    if mo.acked:   # (PENDING_CANCEL -> REJECTED is legal only for a cancel that overtook the order)
                        raise InvariantError(f"order {mo.client_order_id}: rejected after the venue "
                                             "acknowledged it")
                    mo.reason = ev.reason
                    self._set_status(mo, S.REJECTED)
            elif ev.kind in (K.CANCELED, K.EXPIRED):
                if mo.status.is_terminal:
                    self._stale(mo, ev)
                else:
                    mo.reason = ev.reason
                    self._set_status(mo, S.CANCELED if ev.kind is K.CANCELED else S.EXPIRED)
            elif ev.kind is K.CANCEL_REJECTED:
                if (refused or self._refused_command(mo)) == "replace":
                    # the replace was refused: the order keeps its size and price, and a cancel
                    # sent after the replace is still on its way
                    if mo.pending_replace is not None:
                        mo.pending_replace = None
                        mo.replace_unknown = False
                        mo.reason = ev.reason
                else:
                    if mo.replaced_by is not None:
                        self._drop_unsent_replacement(mo, f"the cancel of {mo.client_order_id} was refused")
                    if mo.status is S.PENDING_CANCEL:
                        mo.reason = ev.reason
                        if mo.executed_lots:
                            self._set_status(mo, S.PARTIALLY_FILLED)
                        elif mo.acked:
                            self._set_status(mo, S.NEW)
                        else:
                            # not acknowledged yet: the cancel overtook the order, which is as it
                            # was before the cancel: still pending, or UNKNOWN after a timeout
                            self._set_status(mo, self._status_before_cancel(mo))
            elif ev.kind is K.REPLACED:
                self._apply_replaced(mo, ev)
            elif ev.kind in (K.PARTIALLY_FILLED, K.FILLED):  # pragma: no cover - validated away
                raise InvariantError(f"{ev.kind.value} without fill")
        except InvariantError as e:
            self._record_error(mo, e)
            self.on_garbled(mo.order.venue, ev, str(e))

    @staticmethod
    def _status_before_cancel(mo: ManagedOrder) -> OrderStatus:
        """The status an unacknowledged, unfilled order had before its pending cancel: UNKNOWN (its
        submit timed out), NEW (the venue said it has it) or PENDING_NEW."""
        for _, st in reversed(mo.history):
            if st is not S.PENDING_CANCEL:
                return st if st in (S.UNKNOWN, S.NEW) else S.PENDING_NEW
        return S.PENDING_NEW

    def _stale(self, mo: ManagedOrder, ev: OrderEvent) -> None:
        self.stats["stale_events"] += 1
        log.info("%s %s: %s after %s ignored (out of order)", mo.order.venue, mo.client_order_id,
                 ev.kind.value, mo.status.value)

    def _apply_fill(self, mo: ManagedOrder, f: Fill) -> None:
        self._trade_ids.add((f.venue, f.client_order_id, str(f.trade_id)))
        mo.fills.append(f)
        mo.filled_lots += f.lots
        if mo.client_order_id in self._closed_contrib:
            self._recount(mo)
        self.stats["fills"] += 1
        if mo.status is S.REJECTED:
            self._record_error(mo, InvariantError(f"order {mo.client_order_id}: fill {f.trade_id} on a "
                                                  "rejected order"))
        self._check_overfill(mo, f"fill {f.trade_id}")
        if not mo.status.is_terminal:
            mo.acked = True
            self._set_status(mo, self._status_after_fill(mo))
            if mo.status is S.FILLED:
                mo.pending_replace = None

    def _apply_replaced(self, mo: ManagedOrder, ev: OrderEvent) -> None:
        if mo.status.is_terminal:
            self._stale(mo, ev)
            return
        lots, price = mo.pending_replace if mo.pending_replace is not None else (mo.order.lots, None)
        if ev.new_lots is not None:
            lots = ev.new_lots
        if ev.new_price_ticks is not None:
            price = ev.new_price_ticks
        self._amend(mo, lots, price)
        if mo.status is not S.PENDING_CANCEL:
            self._set_status(mo, self._status_after_fill(mo))

    def _amend(self, mo: ManagedOrder, lots: int, price_ticks: int | None) -> None:
        """The venue has the order at ``lots`` / ``price_ticks`` (None: unchanged): the replace is done."""
        o = mo.order
        mo.order = Order(client_order_id=o.client_order_id, venue=o.venue, symbol=o.symbol, side=o.side,
                         order_type=o.order_type, lots=lots,
                         price_ticks=price_ticks if price_ticks is not None else o.price_ticks,
                         time_in_force=o.time_in_force, display_lots=carried_display(o.display_lots, lots),
                         parent_id=o.parent_id, decision_id=o.decision_id, ts_init=o.ts_init)
        mo.pending_replace = None
        mo.replace_unknown = False
        self._check_overfill(mo, "replace")

    @staticmethod
    def _report_settles_replace(mo: ManagedOrder, lots: int, price_ticks: int | None) -> str | None:
        """What a status report showing the order at ``lots`` / ``price_ticks`` says of its pending
        replace: ``"applied"`` (the venue has the new terms), ``"not_applied"`` (the old terms, and
        the replace can no longer be answered: it timed out or a restart lost its answer), or None
        (nothing settled: no replace pending, or its answer may still come)."""
        pr = mo.pending_replace
        if pr is None or lots <= 0:
            return None
        if lots == pr[0] and (pr[1] is None or price_ticks == pr[1]):
            return "applied"
        if mo.replace_unknown and lots == mo.order.lots and price_ticks == mo.order.price_ticks:
            return "not_applied"
        return None

    # ---------------------------------------------------------------- status reports
    def on_status_report(self, report: OrderStatusReport, *, source: str = "status_report") -> bool:
        """Apply what the venue says about one order (status query or reconciliation). Returns
        False (and journals ``garbled_event``) if the report is unusable or for an unknown order."""
        mo = self._orders.get(report.client_order_id) if isinstance(report, OrderStatusReport) else None
        err = None
        if mo is None:
            err = "status report for unknown client_order_id"
        elif report.venue != mo.order.venue:
            err = f"report venue {report.venue!r} differs from the order's {mo.order.venue!r}"
        elif (not isinstance(report.filled_lots, int) or report.filled_lots < 0
              or not isinstance(report.lots, int) or report.lots < 0):
            err = f"negative or missing quantities (lots={report.lots!r}, filled={report.filled_lots!r})"
        elif not isinstance(report.status, OrderStatus):
            err = f"status {report.status!r} is not an OrderStatus"
        if err is not None or mo is None:
            self.on_garbled(str(getattr(report, "venue", "?")), report, err or "invalid")
            return False
        self.stats["reports"] += 1
        settled = self._report_settles_replace(mo, report.lots, report.price_ticks)
        if self.journal is not None and not self._replaying:
            inst = self._instrument(mo.order.venue, mo.order.symbol)
            ev = OrderEvent(kind=_REPORT_KIND[report.status], client_order_id=mo.client_order_id,
                            venue=mo.order.venue, ts_event=report.ts_event, ts_init=self._clock.now_ns(),
                            venue_order_id=report.venue_order_id)
            extra: dict[str, Any] = {"status": report.status.value,
                                     "filled": str(inst.lots_to_qty(report.filled_lots))}
            if settled is not None:
                extra["replace"] = settled
                extra["quantity"] = str(inst.lots_to_qty(report.lots))
                extra["price"] = None if report.price_ticks is None else str(inst.ticks_to_price(report.price_ticks))
            self._journal_event(ev, mo, source=source, extra=extra)
        self._apply_report(mo, report.status, report.filled_lots, report.venue_order_id,
                           settle_replace=settled, lots=report.lots, price_ticks=report.price_ticks)
        return True

    def _apply_report(self, mo: ManagedOrder, status: OrderStatus, filled_lots: int,
                      venue_order_id: VenueOrderId | None, *, settle_replace: str | None = None,
                      lots: int = 0, price_ticks: int | None = None) -> None:
        if venue_order_id and not mo.venue_order_id:
            mo.venue_order_id = venue_order_id
        if settle_replace == "applied":
            self._amend(mo, lots, price_ticks)
        elif settle_replace == "not_applied":
            log.info("%s %s: status report shows the old terms: the replace did not take effect",
                     mo.order.venue, mo.client_order_id)
            mo.pending_replace = None
            mo.replace_unknown = False
        if filled_lots < mo.filled_lots:
            log.warning("%s %s: venue reports %d lots filled, we hold fills for %d", mo.order.venue,
                        mo.client_order_id, filled_lots, mo.filled_lots)
        if filled_lots > mo.venue_filled_lots:
            mo.venue_filled_lots = filled_lots
            if mo.client_order_id in self._closed_contrib:
                self._recount(mo)
        self._check_overfill(mo, "status report")
        if status is S.UNKNOWN or status is mo.status:
            return
        if mo.status.is_terminal:
            if status is not mo.status:
                log.warning("%s %s: venue says %s, we have %s", mo.order.venue, mo.client_order_id,
                            status.value, mo.status.value)
            return
        if status is S.PENDING_NEW:
            return
        if status is S.REJECTED and (mo.executed_lots or mo.acked):
            # as on the event path: PENDING_CANCEL -> REJECTED is legal only for a cancel that
            # overtook an order the venue never acknowledged. Binance's REJECTED is "not accepted
            # by the engine and not processed" (and such an order is not kept: -2013), so this
            # report contradicts what the venue already said: refused, the order kept (it counts)
            why = (f"rejected after {mo.executed_lots} lots filled" if mo.executed_lots
                   else "rejected after the venue acknowledged it")
            err = InvariantError(f"order {mo.client_order_id}: status report says {why}")
            self._record_error(mo, err)
            self.on_garbled(mo.order.venue, {"client_order_id": mo.client_order_id, "status": status.value,
                                             "filled_lots": filled_lots, "source": "status_report"}, str(err))
            return
        if status in (S.NEW, S.PARTIALLY_FILLED):
            mo.acked = True
            if mo.status is S.PENDING_CANCEL:
                return
            status = self._status_after_fill(mo)
        elif status is S.PENDING_CANCEL and mo.status not in (S.NEW, S.PARTIALLY_FILLED, S.PENDING_NEW,
                                                               S.UNKNOWN):
            return
        try:
            self._set_status(mo, status)
        except InvariantError as e:
            self._record_error(mo, e)

    def reconcile(self, reports: Iterable[OrderStatusReport], *, absent_means_gone: bool = False,
                  venues: Iterable[str] | None = None) -> ReconcileResult:
        """Settle orders against what the venues say (after a restart or a disconnect).

        Each report is applied as by :meth:`on_status_report`; reports for ids we never issued are
        returned in ``foreign``. Non-terminal orders of the reported ``venues`` (default: the venues
        that appear in ``reports``) that no report mentions stay as they are and are listed in
        ``unresolved`` - unless ``absent_means_gone`` (the reports are the venue's complete open and
        recent orders): then an UNKNOWN/pending submit becomes REJECTED (never arrived) and a working
        order CANCELED, each journaled."""
        res = ReconcileResult()
        seen: set[str] = set()
        rep_venues: set[str] = set()
        for r in reports:
            rep_venues.add(r.venue)
            if r.client_order_id not in self._orders:
                res.foreign.append(r)
                log.warning("%s: venue reports order %s we never issued", r.venue, r.client_order_id)
                continue
            mo = self._orders[r.client_order_id]
            before = mo.status
            if mo.executed_lots != r.filled_lots:
                res.mismatches.append(f"{r.client_order_id}: we have {mo.executed_lots} lots filled, "
                                      f"venue {r.filled_lots}")
            if self.on_status_report(r, source="reconcile"):
                seen.add(r.client_order_id)
                if mo.status is not S.UNKNOWN and (before is not mo.status
                                                   or before in (S.UNKNOWN, S.PENDING_NEW)):
                    res.settled.append(mo.client_order_id)
                elif mo.status is S.UNKNOWN:
                    res.unresolved.append(mo.client_order_id)
        scope = set(venues) if venues is not None else rep_venues
        for mo in list(self._orders.values()):
            if mo.status.is_terminal or mo.client_order_id in seen or mo.order.venue not in scope:
                continue
            if not absent_means_gone:
                res.unresolved.append(mo.client_order_id)
                continue
            kind = (OrderEventKind.REJECTED if mo.status in (S.UNKNOWN, S.PENDING_NEW)
                    and not mo.executed_lots else OrderEventKind.CANCELED)
            self._event_local(mo, kind, "absent at venue on reconcile", None)
            res.settled.append(mo.client_order_id)
        return res

    # ================================================================ restore
    @classmethod
    def restore(cls, journal: Journal, clock: Clock, instruments: InstrumentRegistry | Iterable[Instrument],
                **kw: Any) -> OrderManager:
        """A manager rebuilt from ``journal`` (all orders, fills, accounting and id counters), that
        keeps journaling into it. Submits with no venue answer come back UNKNOWN (they may or may
        not have left before the crash); call :meth:`reconcile` next."""
        om = cls(clock, instruments, journal=journal, **kw)
        om._replaying = True
        try:
            for rec in journal.read(kinds=("order_command", "order_event", "fill", "garbled_event",
                                           "run_started")):
                try:
                    om._replay(rec)
                except (KeyError, ValueError, TypeError, SorexError) as e:
                    log.error("journal %s seq=%d (%s) cannot be replayed: %s", journal.path, rec.seq,
                              rec.kind, e)
                    om.errors.append(InvariantError(f"journal seq={rec.seq}: {e}"))
        finally:
            om._replaying = False
        for mo in om._orders.values():
            if mo.status is S.PENDING_NEW:
                mo.status = S.UNKNOWN
                mo.history.append((clock.now_ns(), S.UNKNOWN))
            if mo.pending_replace is not None:
                # its answer may have come while we were down: a status report settles it
                mo.replace_unknown = True
        for mo in list(om._orders.values()):
            if mo.replaced_by is not None and mo.status not in (S.PENDING_CANCEL, S.CANCELED):
                # the cancel of a cancel-then-new was refused, or the old order ended otherwise,
                # and a kill came before the replacement's local REJECTED was journaled: it was
                # never sent (settled now, journaled; a no-op if the journal already settled it)
                om._drop_unsent_replacement(mo, f"{mo.client_order_id} is {mo.status.value}, not canceled")
        log.info("restored %d orders, %d fills from %s", len(om._orders), len(om._trade_ids), journal.path)
        return om

    def _replay(self, rec: JournalRecord) -> None:
        p = rec.payload
        if rec.kind == "run_started":
            return
        if rec.kind == "garbled_event":
            self.stats["garbled"] += 1
            return
        if rec.kind == "order_command":
            self._replay_command(p)
            return
        cid = ClientOrderId(p["client_order_id"])
        mo = self._orders.get(cid)
        if mo is None:
            raise UnknownOrderError(f"{rec.kind} for unknown order {cid}")
        inst = self._instrument(mo.order.venue, mo.order.symbol)
        if rec.kind == "fill":
            if (mo.order.venue, cid, str(p["trade_id"])) in self._trade_ids:
                return
            fill = Fill(client_order_id=cid, venue=VenueId(p["venue"]), symbol=mo.order.symbol,
                        side=mo.order.side, trade_id=TradeId(str(p["trade_id"])),
                        price_ticks=inst.price_to_ticks(p["price"]),
                        lots=inst.qty_to_lots(p["quantity"], exact=True), fee=Decimal(p["fee"]),
                        fee_currency=p["fee_currency"], liquidity=Liquidity(p["liquidity"]),
                        ts_event=int(p["ts_event"]), ts_init=rec.ts_ns,
                        venue_order_id=p.get("venue_order_id"))
            kind = OrderEventKind(p.get("event_kind", "partially_filled"))
            self._apply(OrderEvent(kind=kind, client_order_id=cid, venue=fill.venue, ts_event=fill.ts_event,
                                   ts_init=rec.ts_ns, venue_order_id=fill.venue_order_id, fill=fill), mo)
            return
        # order_event
        if p.get("source") == "unresolved":
            if not mo.status.is_terminal:
                self._mark_unresolved(mo, str(p.get("reason") or "unresolved"))
            return
        if p.get("source") in ("status_report", "reconcile"):
            settled = p.get("replace")
            self._apply_report(mo, OrderStatus(p["status"]), inst.qty_to_lots(p["filled"], exact=True),
                               p.get("venue_order_id"), settle_replace=settled,
                               lots=inst.qty_to_lots(p["quantity"], exact=True) if settled else 0,
                               price_ticks=None if p.get("price") is None else inst.price_to_ticks(p["price"]))
            return
        ev = OrderEvent(kind=OrderEventKind(p["kind"]), client_order_id=cid, venue=VenueId(p["venue"]),
                        ts_event=int(p.get("ts_event") or rec.ts_ns), ts_init=rec.ts_ns,
                        venue_order_id=p.get("venue_order_id"), reason=p.get("reason"), code=p.get("code"),
                        new_lots=(None if p.get("new_quantity") is None
                                  else inst.qty_to_lots(p["new_quantity"], exact=True)),
                        new_price_ticks=(None if p.get("new_price") is None
                                         else inst.price_to_ticks(p["new_price"])))
        self._apply(ev, mo, refused=p.get("refused"))

    def _replay_command(self, p: dict[str, Any]) -> None:
        cid = ClientOrderId(p["client_order_id"])
        action = p["action"]
        if action == "submit":
            if cid in self._orders:  # a retry of the same order
                mo = self._orders[cid]
                mo.retries += 1
                if mo.status is S.UNKNOWN:
                    self._set_status(mo, S.PENDING_NEW)
                return
            inst = self._instrument(p["venue"], p["symbol"])
            side = Side.parse(p["side"])
            order = Order(client_order_id=cid, venue=VenueId(p["venue"]), symbol=inst.symbol, side=side,
                          order_type=OrderType(p["order_type"]),
                          lots=inst.qty_to_lots(p["quantity"], exact=True),
                          price_ticks=None if p.get("price") is None else inst.price_to_ticks(p["price"]),
                          time_in_force=TimeInForce(p["time_in_force"]),
                          display_lots=None if p.get("display") is None
                          else inst.qty_to_lots(p["display"], exact=True),
                          parent_id=None if p.get("parent_id") is None else ParentOrderId(p["parent_id"]),
                          decision_id=None if p.get("decision_id") is None else DecisionId(p["decision_id"]))
            self._add(ManagedOrder(order))
            return
        found = self._orders.get(cid)
        if found is None:
            raise UnknownOrderError(f"{action} command for unknown order {cid}")
        mo = found
        inst = self._instrument(mo.order.venue, mo.order.symbol)
        if action == "cancel":
            if not mo.status.is_terminal:
                self._set_status(mo, S.PENDING_CANCEL)
        elif action == "replace":
            lots = inst.qty_to_lots(p["quantity"], exact=True)
            price = None if p.get("price") is None else inst.price_to_ticks(p["price"])
            if p.get("native", True):
                if not mo.status.is_terminal:
                    mo.pending_replace = (lots, price)
            else:
                self._apply_cancel_then_new(mo, ClientOrderId(p["new_client_order_id"]), lots, price)
        else:
            raise ValueError(f"unknown order_command action {action!r}")
