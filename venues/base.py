"""The venue interface: one async API for the simulated venue and every live adapter.

Commands are async (a live adapter does I/O); events flow back synchronously into the core through
the handler given to :meth:`Venue.set_event_handler`. ``submit``/``cancel``/``replace`` return once
the venue has *received* the request (live: the HTTP response or WS ack; simulated: the request is
scheduled to arrive after the order-entry latency). What happened to the order is reported as
:class:`~marketdata.model.OrderEvent` s. A request that times out raises
:class:`~marketdata.errors.VenueTimeout` and the order is UNKNOWN, never assumed rejected.

:func:`run_now` drives a coroutine that never suspends (every simulated-venue method) to completion
synchronously, so the discrete-event simulation runs without an event loop.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from marketdata.model import (
    ClientOrderId,
    Instrument,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    VenueId,
    VenueOrderId,
)

T = TypeVar("T")

EventHandler = Callable[[OrderEvent], None]


@dataclass(frozen=True, slots=True)
class VenueCapabilities:
    """What a venue supports natively."""

    order_types: frozenset[OrderType] = frozenset({OrderType.MARKET, OrderType.LIMIT})
    time_in_force: frozenset[TimeInForce] = frozenset(
        {TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY})
    native_modify: bool = False
    native_iceberg: bool = False

    @property
    def post_only(self) -> bool:
        return TimeInForce.POST_ONLY in self.time_in_force


ICEBERG_PARTS = 100
"""Binance's ICEBERG_PARTS limit for every symbol since 2026-03-12: the default where a venue's own is not known."""

ICEBERG_TIME_IN_FORCE = frozenset({TimeInForce.GTC, TimeInForce.POST_ONLY})
"""The time in force a native iceberg may have (Binance spot: LIMIT with GTC, or LIMIT_MAKER)."""


def iceberg_parts(lots: int, display_lots: int) -> int:
    """The slices of an iceberg of ``lots`` showing ``display_lots`` at a time (what Binance's
    ICEBERG_PARTS filter caps: ``ceil(quantity / icebergQty)``)."""
    return -(-lots // display_lots)


def carried_display(display_lots: int | None, lots: int) -> int | None:
    """An iceberg's display carried over to an order of ``lots`` (a replace or its re-sent
    order): kept while below it, else ``None`` (all of the order would show: a plain order)."""
    return display_lots if display_lots is not None and display_lots < lots else None


@dataclass(frozen=True, slots=True)
class FeeTier:
    """Fees in basis points of notional; negative means a rebate."""

    maker_bps: Decimal = Decimal(0)
    taker_bps: Decimal = Decimal(0)
    min_30d_volume: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Fee tiers ordered by ``min_30d_volume``; ``tier_for`` picks the applicable one."""

    tiers: tuple[FeeTier, ...] = (FeeTier(),)

    def tier_for(self, volume_30d: Decimal = Decimal(0)) -> FeeTier:
        best = self.tiers[0]
        for t in self.tiers:
            if volume_30d >= t.min_30d_volume:
                best = t
        return best

    @property
    def maker_bps(self) -> Decimal:
        return self.tiers[0].maker_bps

    @property
    def taker_bps(self) -> Decimal:
        return self.tiers[0].taker_bps


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    quantity: Decimal
    average_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderStatusReport:
    """What the venue says about one order (status query, open orders, reconciliation)."""

    client_order_id: ClientOrderId
    venue: VenueId
    symbol: str
    side: Side
    status: OrderStatus
    lots: int
    filled_lots: int
    price_ticks: int | None = None
    venue_order_id: VenueOrderId | None = None
    average_price_ticks: float | None = None
    ts_event: int = 0


@dataclass
class VenueInfo:
    """Static description: id, instruments, capabilities, fees."""

    venue: VenueId
    instruments: dict[str, Instrument] = field(default_factory=dict)
    capabilities: VenueCapabilities = field(default_factory=VenueCapabilities)
    fees: FeeSchedule = field(default_factory=FeeSchedule)


class Venue(abc.ABC):
    """The interface every venue (simulated or live) implements."""

    info: VenueInfo

    @property
    def venue_id(self) -> VenueId:
        return self.info.venue

    @abc.abstractmethod
    def set_event_handler(self, handler: EventHandler) -> None:
        """Where order events (acks, rejects, fills, cancels, expiries) are delivered."""

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def submit(self, order: Order) -> None:
        """Send a new order. Invalid orders are reported as REJECTED events, not raised, unless the
        request itself could not be formed (then :class:`~marketdata.errors.OrderRejected`)."""

    @abc.abstractmethod
    async def cancel(self, client_order_id: ClientOrderId) -> None: ...

    @abc.abstractmethod
    async def replace(self, client_order_id: ClientOrderId, *, lots: int | None = None,
                      price_ticks: int | None = None) -> None:
        """Modify quantity and/or price: natively where the venue can, otherwise cancel (confirmed)
        then new with a derived client order id."""

    @abc.abstractmethod
    async def order_status(self, client_order_id: ClientOrderId) -> OrderStatusReport: ...

    @abc.abstractmethod
    async def open_orders(self, symbol: str | None = None) -> list[OrderStatusReport]: ...

    @abc.abstractmethod
    async def balances(self) -> dict[str, Balance]: ...

    @abc.abstractmethod
    async def positions(self) -> list[Position]: ...


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that completes without suspending (simulated venues) synchronously.

    Raises ``RuntimeError`` if it tries to suspend: that coroutine needs a real event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("coroutine suspended; run_now only drives non-suspending (simulated) calls")
