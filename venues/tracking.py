"""The per-order merge shared by the live adapters (Binance, Bybit, IB), and the balance cache of
the REST venues (Binance, Bybit).

A live venue reports one order through several sources (REST answers, stream pushes, status
queries, reconciliation) that may repeat or overtake each other. :class:`TrackingVenue` turns them
into :class:`~marketdata.model.OrderEvent` s so that each state is reported once, in a valid order:

* ACCEPTED (or REJECTED) first; a fill or a terminal status implies ACCEPTED;
* each fill once, by its trade id (:attr:`TrackedOrder.trade_ids`);
* one terminal event, after the last fill: a venue-reported terminal status whose cumulative
  quantity is ahead of the fills seen so far (or a FILLED status, whose FILLED event comes with
  the last fill) is held in :attr:`TrackedOrder.pending` until the fills arrive;
* a fill after the terminal event is still reported (a fill is a fact) and logged.

What differs per venue is a hook, not a branch: :meth:`TrackingVenue._set_terminal` (Bybit wakes a
waiting replace), :meth:`TrackingVenue._on_terminal_held` (Bybit schedules the read of the missing
executions), :meth:`TrackingVenue._held_terminal_ts` (IB reports a held terminal at the time it is
released, as all of its event times are local), and ``_FILL_NOUN`` in the log lines.

:func:`query_schedule` is the timing of the status queries that settle an UNKNOWN order (Binance,
Bybit): the configured delays, the last query no earlier than the venue's receive window after
the request, then on at the last delay until the venue answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar, Generic, TypeVar

from marketdata.clock import Clock
from marketdata.errors import UnknownOrderError
from marketdata.model import (
    ClientOrderId,
    Fill,
    Instrument,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    VenueOrderId,
)
from venues.base import Balance, EventHandler, OrderStatusReport, Venue, VenueInfo
from venues.tasks import OwnedTasks

__all__ = ["BalanceCache", "BalanceHandler", "GarbledHandler", "ReportHandler", "TrackedOrder", "TrackingVenue",
           "next_replacement_id", "query_schedule"]

_log = logging.getLogger(__name__)

GarbledHandler = Callable[[str, Any, str], None]
ReportHandler = Callable[[OrderStatusReport], None]
BalanceHandler = Callable[[list[str]], None]   # assets whose free balance went up


@dataclass
class TrackedOrder:
    """What an adapter knows about one of its orders (to merge the venue's reports)."""

    order: Order
    inst: Instrument
    venue_order_id: VenueOrderId | None = None
    accepted: bool = False
    terminal: OrderEventKind | None = None
    filled_lots: int = 0
    trade_ids: set[str] = field(default_factory=set)
    pending: tuple[OrderEventKind, int, int, str | None] | None = None  # kind, venue cum lots, ts, reason
    rejected: tuple[str | None, str | None] | None = None  # reason, code
    replaces: int = 0
    uncounted_lots: int = 0   # of filled_lots: fills made before this session tracked it (no trade ids)
    venue_cum_lots: int = 0   # the most the venue said is filled


_T = TypeVar("_T", bound=TrackedOrder)


class TrackingVenue(Venue, Generic[_T]):
    """A :class:`~venues.base.Venue` with the per-order merge (see the module docstring), the
    event, garbled and status-report handlers, and owned background tasks.

    The adapter sets ``info``, ``_clock``, ``stats`` (with at least ``events`` and
    ``duplicates``) and calls :meth:`_init_tracking` in its ``__init__``."""

    _FILL_NOUN: ClassVar[str] = "fill"   # what the venue calls a fill, in the log lines
    _log: ClassVar[logging.Logger] = _log   # the adapter's module logger: its lines keep their logger name
    _clock: Clock
    stats: dict[str, int]
    _tracks: dict[ClientOrderId, _T]

    def _init_tracking(self, instruments: Sequence[Instrument]) -> None:
        self._instruments = tuple(instruments)   # as configured, in order
        self._handler: EventHandler | None = None
        self._garbled: GarbledHandler | None = None
        self._report_handler: ReportHandler | None = None
        self._tracks = {}
        self._tasks = OwnedTasks(self._log, str(self.venue_id))

    # ------------------------------------------------------------------ wiring
    def set_event_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    def set_garbled_handler(self, handler: GarbledHandler) -> None:
        """``handler(venue, raw, error)`` for inbound messages that cannot be parsed
        (``OrderManager.on_garbled`` fits)."""
        self._garbled = handler

    def set_status_report_handler(self, handler: ReportHandler) -> None:
        """``handler(report)`` for every status report the adapter fetched on its own (UNKNOWN
        resolution, reconnect reconciliation); ``OrderManager.on_status_report`` fits."""
        self._report_handler = handler

    def _report_garbled(self, raw: Any, error: str) -> None:
        """Hand an inbound message that could not be parsed or applied to the garbled handler."""
        if self._garbled is not None:
            try:
                self._garbled(self.venue_id, raw, error)
            except Exception:
                self._log.exception("%s: garbled handler raised", self.venue_id)

    def _symbol_for(self, cid: ClientOrderId) -> Instrument:
        """The instrument of order ``cid``: its track's, else the only configured one."""
        tr = self._tracks.get(cid)
        if tr is not None:
            return tr.inst
        if len(self._instruments) == 1:
            return self._instruments[0]
        raise UnknownOrderError(f"{self.venue_id}: order {cid} is not known here and the symbol is ambiguous")

    # ------------------------------------------------------------------ owned tasks
    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)

    async def _cancel_tasks(self) -> None:
        await self._tasks.cancel_all()

    # ------------------------------------------------------------------ events
    def _emit(self, ev: OrderEvent) -> None:
        self.stats["events"] += 1
        if self._handler is None:
            self._log.warning("%s: no event handler; dropped %s %s", self.venue_id, ev.kind.value, ev.client_order_id)
            return
        try:
            self._handler(ev)
        except Exception:
            self._log.exception("%s: event handler raised on %s %s", self.venue_id, ev.kind.value, ev.client_order_id)

    def _event(self, tr: _T, kind: OrderEventKind, ts_event: int, *, reason: str | None = None,
               code: str | None = None, fill: Fill | None = None) -> None:
        self._emit(OrderEvent(kind=kind, client_order_id=tr.order.client_order_id, venue=self.venue_id,
                              ts_event=ts_event, ts_init=self._clock.now_ns(), venue_order_id=tr.venue_order_id,
                              fill=fill, reason=reason, code=code))

    # ------------------------------------------------------------------ the per-order merge
    def _on_accepted(self, tr: _T, voi: VenueOrderId | None, ts_event: int) -> None:
        if voi is not None:
            tr.venue_order_id = voi
        if tr.accepted or tr.terminal is not None:
            return
        tr.accepted = True
        self._event(tr, OrderEventKind.ACCEPTED, ts_event)

    def _on_fill(self, tr: _T, fill: Fill) -> None:
        """A fill from any source: dropped if its trade id was seen, else counted (:meth:`_count_fill`)."""
        if fill.trade_id in tr.trade_ids:
            self.stats["duplicates"] += 1
            self._log.info("%s: duplicate %s %s of %s dropped", self.venue_id, self._FILL_NOUN, fill.trade_id,
                     fill.client_order_id)
            return
        self._on_accepted(tr, fill.venue_order_id, fill.ts_event)
        tr.trade_ids.add(fill.trade_id)
        self._count_fill(tr, fill)

    def _count_fill(self, tr: _T, fill: Fill) -> None:
        """Report a fill known to be new (its trade id already recorded): PARTIALLY_FILLED, or
        FILLED once the order's lots are all filled; then a held terminal status it completes."""
        self._on_accepted(tr, fill.venue_order_id, fill.ts_event)
        tr.filled_lots += fill.lots
        if tr.terminal is not None:
            self._log.warning("%s: fill %s of %s after its terminal event %s (reported: a fill is a fact)",
                        self.venue_id, fill.trade_id, fill.client_order_id, tr.terminal.value)
        done = tr.filled_lots >= tr.order.lots
        kind = OrderEventKind.FILLED if done else OrderEventKind.PARTIALLY_FILLED
        if done and tr.terminal is None:
            self._set_terminal(tr, OrderEventKind.FILLED)
            tr.pending = None
        self._event(tr, kind, fill.ts_event, fill=fill)
        self._flush_pending(tr)

    def _set_terminal(self, tr: _T, kind: OrderEventKind) -> None:
        """Hook: the order's terminal state is decided (its event follows)."""
        tr.terminal = kind

    def _on_terminal_held(self, tr: _T) -> None:
        """Hook: a terminal status was held back (:attr:`TrackedOrder.pending`) for missing fills."""

    def _held_terminal_ts(self, ts_held: int) -> int:
        """Hook: ``ts_event`` of a held terminal status when its fills are in (default: the venue's)."""
        return ts_held

    def _on_terminal(self, tr: _T, kind: OrderEventKind, venue_cum_lots: int, ts_event: int,
                     reason: str | None = None, code: str | None = None) -> None:
        if tr.terminal is not None:
            return
        if kind is OrderEventKind.REJECTED:
            self._set_terminal(tr, kind)
            tr.rejected = (reason, code)
            self._event(tr, kind, ts_event, reason=reason, code=code)
            return
        self._on_accepted(tr, None, ts_event)
        if kind is OrderEventKind.FILLED or venue_cum_lots > tr.filled_lots:
            # the fills are still on their way (stream) or must be fetched (REST)
            tr.pending = (kind, venue_cum_lots, ts_event, reason)
            self._on_terminal_held(tr)
            return
        self._set_terminal(tr, kind)
        self._event(tr, kind, ts_event, reason=reason, code=code)

    def _flush_pending(self, tr: _T) -> None:
        if tr.pending is None or tr.terminal is not None:
            return
        kind, cum, ts, reason = tr.pending
        if tr.filled_lots >= cum and kind is not OrderEventKind.FILLED:
            tr.pending = None
            self._set_terminal(tr, kind)
            self._event(tr, kind, self._held_terminal_ts(ts), reason=reason)

    # ------------------------------------------------------------------ UNKNOWN orders
    def _reject_unresolved(self, cid: ClientOrderId, code: str) -> None:
        """The venue still has no such order after the UNKNOWN queries: REJECTED (if nothing
        else settled it meanwhile); ``code``: the venue's "no such order" code."""
        tr = self._tracks.get(cid)
        if tr is not None and not tr.accepted and tr.terminal is None:
            self.stats["unresolved"] += 1
            self._on_terminal(tr, OrderEventKind.REJECTED, 0, self._clock.now_ns(),
                              reason="the venue has no such order after the request timed out", code=code)

    def _rejected_report(self, cid: ClientOrderId, inst: Instrument) -> OrderStatusReport | None:
        """REJECTED from our own record for an order the venue refused on entry (venues keep no
        record of those), else ``None``."""
        tr = self._tracks.get(cid)
        if tr is None or tr.rejected is None:
            return None
        return OrderStatusReport(client_order_id=cid, venue=self.venue_id, symbol=inst.symbol, side=tr.order.side,
                                 status=OrderStatus.REJECTED, lots=tr.order.lots, filled_lots=0,
                                 price_ticks=tr.order.price_ticks, venue_order_id=tr.venue_order_id,
                                 ts_event=self._clock.now_ns())


async def query_schedule(delays_s: Sequence[Decimal], horizon_ns: int,
                         clock: Clock) -> AsyncIterator[tuple[int, bool]]:
    """Sleep before each status query of an UNKNOWN order, then yield its index from 0 and whether
    it is the last configured one: after ``delays_s[i]`` for each i, the last one stretched to reach ``horizon_ns``
    (after which "no such order" is final); then on at the last delay, forever (a query that got
    no answer proves nothing)."""
    delays = [float(d) for d in delays_s]
    i = -1
    while True:
        i += 1
        last = i >= len(delays) - 1
        delay = delays[min(i, len(delays) - 1)]
        if last:
            delay = max(delay, (horizon_ns - clock.now_ns()) / 1e9)
        await asyncio.sleep(delay)
        yield i, last


def next_replacement_id(client_order_id: ClientOrderId, tr: TrackedOrder | None, sep: str) -> ClientOrderId:
    """``<id><sep>r<n>`` for the n-th replacement of ``tr`` (counted on it); ``r-`` and a 16-byte
    blake2b hex digest of that when it is over 36 characters (both venues' client id limit)."""
    n = 1
    if tr is not None:
        tr.replaces += 1
        n = tr.replaces
    new = f"{client_order_id}{sep}r{n}"
    if len(new) > 36:
        new = "r-" + hashlib.blake2b(new.encode(), digest_size=16).hexdigest()[:34]
    return ClientOrderId(new)


class BalanceCache:
    """The balances as last read (REST) or pushed (stream), per asset with the venue's time of the
    reading; a reading replaces an asset only if it is not older than the one held."""

    _log: ClassVar[logging.Logger] = _log
    _clock: Clock
    info: VenueInfo

    def _init_balances(self) -> None:
        self._balance_handler: BalanceHandler | None = None
        # asset -> (venue's account time ns, Balance)
        self._balances: dict[str, tuple[int, Balance]] = {}
        self._balances_seeded = False
        self.balances_received_ns: int | None = None   # local clock, last time the cache changed

    def set_balance_handler(self, handler: BalanceHandler) -> None:
        """``handler(assets)`` whenever a balance reading (pushed or polled) raises the free
        balance of some assets: a deposit, a transfer, funds an order released. Called after
        the cache holds the new figures; an exception in it is logged, never raised here."""
        self._balance_handler = handler

    def _update_balances(self, ts_ns: int, bal: Mapping[str, Balance], *, complete: bool) -> None:
        """Apply balances as of the venue's account time ``ts_ns``: an asset is replaced only by a
        reading at least as new as the one held (a REST answer can arrive after a newer stream
        event). ``complete``: the whole account (zero balances omitted), so a held asset missing
        from it is now zero."""
        cache = self._balances
        changed = False
        up: list[str] = []
        for asset, b in bal.items():
            held = cache.get(asset)
            if held is None or held[0] <= ts_ns:
                # a rise, or an asset the (seeded) account did not hold arriving with a free amount
                was = held[1].free if held is not None else (Decimal(0) if self._balances_seeded else None)
                if was is not None and b.free > was:
                    up.append(asset)
                cache[asset] = (ts_ns, b)
                changed = True
        if complete:
            for asset, (held_ts, _b) in list(cache.items()):
                if asset not in bal and held_ts <= ts_ns:
                    cache[asset] = (ts_ns, Balance(asset, Decimal(0)))
                    changed = True
            self._balances_seeded = True
        if changed:
            self.balances_received_ns = self._clock.now_ns()
        if up and self._balance_handler is not None:
            try:
                self._balance_handler(up)
            except Exception:  # the handler's failure must not lose the balances (already cached)
                self._log.exception("%s: balance handler failed for %s", self.info.venue, ", ".join(up))

    @property
    def balances_seeded(self) -> bool:
        """True once the whole account was read (``balances()``): from then on the cache is the
        venue's view, kept current by the stream."""
        return self._balances_seeded

    def balance_as_of_ns(self, asset: str) -> int | None:
        """The venue's account time of :meth:`cached_balance` (``None``: never read)."""
        held = self._balances.get(asset)
        return held[0] if held is not None else None

    def cached_balance(self, asset: str) -> Balance | None:
        """The latest known balance of ``asset`` (no request): ``None`` until the account was
        read once; an asset the account does not hold is a zero balance."""
        held = self._balances.get(asset)
        if held is not None:
            return held[1]
        return Balance(asset, Decimal(0)) if self._balances_seeded else None
