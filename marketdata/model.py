"""Core value types shared by every layer: sides, order types, typed ids, instruments, events.

Inside the engine prices are integer *ticks* and quantities integer *lots* of one instrument on one
venue; strings and :class:`~decimal.Decimal` exist only at the edges (wire messages, config,
reports). :class:`Instrument` owns every conversion, with side-aware rounding:
buy limits round down to the tick, sell limits round up, quantities round down to the lot.

All timestamps are integer nanoseconds since the Unix epoch: ``ts_event`` is when the thing
happened at its source (exchange time for market data), ``ts_init`` when sorex created the object.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Context, Decimal, Inexact, InvalidOperation
from fractions import Fraction
from typing import NewType

from marketdata.errors import InstrumentError

# ---------------------------------------------------------------- typed ids
VenueId = NewType("VenueId", str)
"""A configured venue's name, e.g. ``binance-spot``."""
Symbol = NewType("Symbol", str)
"""A unified symbol, e.g. ``BTC-USDT``."""
ClientOrderId = NewType("ClientOrderId", str)
VenueOrderId = NewType("VenueOrderId", str)
TradeId = NewType("TradeId", str)
ParentOrderId = NewType("ParentOrderId", str)
DecisionId = NewType("DecisionId", str)


class Side(enum.IntEnum):
    """Order side; the integer value is the TCA sign (+1 buy, -1 sell)."""

    BUY = 1
    SELL = -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @classmethod
    def parse(cls, value: str | Side) -> Side:
        if isinstance(value, Side):
            return value
        v = str(value).strip().lower()
        if v in ("buy", "b", "bid"):
            return cls.BUY
        if v in ("sell", "s", "ask", "offer"):
            return cls.SELL
        raise ValueError(f"side {value!r} is not one of: buy, sell")


class OrderType(enum.Enum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(enum.Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    GTD = "GTD"
    POST_ONLY = "POST_ONLY"
    """Good till cancelled, rejected by the venue if it would take liquidity on arrival."""


class Liquidity(enum.Enum):
    MAKER = "maker"
    TAKER = "taker"


class OrderStatus(enum.Enum):
    """Order life cycle. ``UNKNOWN``: a request timed out or its connection dropped; the venue may
    or may not have the order until a status query, the user stream or reconciliation says."""

    PENDING_NEW = "pending_new"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    is_terminal: bool
    """FILLED, CANCELED, REJECTED or EXPIRED: nothing more can happen to the order. A plain
    attribute of each member (set below), not a property: the order manager reads it per event."""


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})
for _status in OrderStatus:
    _status.is_terminal = _status in _TERMINAL
del _status


class InstrumentKind(enum.Enum):
    SPOT = "spot"
    PERPETUAL = "perpetual"
    INVERSE_PERPETUAL = "inverse_perpetual"
    STOCK = "stock"


_EXACT = Context(prec=100, rounding=ROUND_FLOOR, traps=[])


def exact_ratio(x: Decimal, unit: Decimal) -> Fraction:
    """``x / unit`` exactly, for conversions to ticks and lots (a Decimal division rounds at 28
    significant digits: an off-grid value could look exact, a limit round to the wrong side). A
    100-digit division flagged exact is taken as it is (~1 us); otherwise the Fraction division
    (~4 us) decides."""
    ctx = _EXACT
    ctx.clear_flags()
    n = ctx.divide(x, unit)
    if not ctx.flags[Inexact] and n.is_finite():
        return Fraction(int(n)) if n == n.to_integral_value() else Fraction(n)
    return Fraction(x) / Fraction(unit)


def _decimal(value: str | int | Decimal, what: str) -> Decimal:
    if isinstance(value, float):
        raise InstrumentError(f"{what}: floats are not accepted at the edge, pass a string or Decimal")
    try:
        d = Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        raise InstrumentError(f"{what}: {value!r} is not a number") from None
    if not d.is_finite():
        raise InstrumentError(f"{what}: {value!r} is not a finite number")
    return d


def _decimals_of(step: Decimal) -> int:
    exp = step.normalize().as_tuple().exponent
    assert isinstance(exp, int)
    return max(0, -exp)


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable instrument on one venue, with its trading rules.

    ``tick_size`` and ``lot_size`` are the venue's price and quantity increments; ``min_quantity``
    and ``min_notional`` its minimums (notional in the quote currency). For inverse contracts
    (COIN-M) a lot is ``contract_size`` units of the quote currency, not of the base.
    """

    venue: VenueId
    symbol: Symbol
    venue_symbol: str
    base: str
    quote: str
    tick_size: Decimal
    lot_size: Decimal
    min_quantity: Decimal = Decimal(0)
    min_notional: Decimal = Decimal(0)
    kind: InstrumentKind = InstrumentKind.SPOT
    contract_size: Decimal = Decimal(1)
    # derived, fixed at construction
    _price_dec: int = field(init=False, repr=False, compare=False)
    _qty_dec: int = field(init=False, repr=False, compare=False)
    _tick_scaled: int = field(init=False, repr=False, compare=False)
    _lot_scaled: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("tick_size", "lot_size", "min_quantity", "min_notional", "contract_size"):
            val = getattr(self, name)
            if not isinstance(val, Decimal):
                object.__setattr__(self, name, _decimal(val, f"{self.symbol} {name}"))
        if self.tick_size <= 0 or self.lot_size <= 0:
            raise InstrumentError(f"{self.venue}:{self.symbol}: tick_size and lot_size must be > 0")
        if self.min_quantity < 0 or self.min_notional < 0:
            raise InstrumentError(f"{self.venue}:{self.symbol}: minimums must be >= 0")
        pd, qd = _decimals_of(self.tick_size), _decimals_of(self.lot_size)
        object.__setattr__(self, "_price_dec", pd)
        object.__setattr__(self, "_qty_dec", qd)
        object.__setattr__(self, "_tick_scaled", int(self.tick_size.scaleb(pd)))
        object.__setattr__(self, "_lot_scaled", int(self.lot_size.scaleb(qd)))

    @property
    def key(self) -> str:
        return f"{self.venue}:{self.symbol}"

    # ---------------------------------------------------------- edge conversions (Decimal)
    def price_to_ticks(self, price: str | Decimal | int, side: Side | None = None) -> int:
        """Price -> ticks. With ``side`` an off-tick limit is rounded to the passive side
        (buy down, sell up); without it an off-tick price is an error."""
        p = _decimal(price, f"{self.key} price")
        if p <= 0:
            raise InstrumentError(f"{self.key}: price {price} must be positive")
        q = exact_ratio(p, self.tick_size)
        if side is None:
            if q.denominator != 1:
                raise InstrumentError(f"{self.key}: price {price} is not a multiple of tick {self.tick_size}")
            return int(q)
        return math.floor(q) if side is Side.BUY else math.ceil(q)

    def ticks_to_price(self, ticks: int) -> Decimal:
        return (self.tick_size * ticks).quantize(self.tick_size)

    def qty_to_lots(self, quantity: str | Decimal | int, *, exact: bool = False) -> int:
        """Quantity -> lots, rounded down to the lot (or an error if ``exact`` and off-lot)."""
        q = _decimal(quantity, f"{self.key} quantity")
        if q < 0:
            raise InstrumentError(f"{self.key}: quantity {quantity} must not be negative")
        n = exact_ratio(q, self.lot_size)
        if exact and n.denominator != 1:
            raise InstrumentError(f"{self.key}: quantity {quantity} is not a multiple of lot {self.lot_size}")
        return math.floor(n)

    def lots_to_qty(self, lots: int) -> Decimal:
        return (self.lot_size * lots).quantize(self.lot_size)

    def notional(self, price_ticks: int, lots: int) -> Decimal:
        """Notional in the quote currency (for inverse contracts: contracts x contract_size)."""
        if self.kind is InstrumentKind.INVERSE_PERPETUAL:
            return self.lots_to_qty(lots) * self.contract_size
        return self.ticks_to_price(price_ticks) * self.lots_to_qty(lots) * self.contract_size

    def check_order(self, price_ticks: int | None, lots: int) -> str | None:
        """The venue-style reason this order breaks the instrument's rules, or ``None``."""
        if lots <= 0:
            return "quantity must be positive"
        if self.min_quantity and self.lots_to_qty(lots) < self.min_quantity:
            return f"quantity {self.lots_to_qty(lots)} below min_quantity {self.min_quantity}"
        if price_ticks is not None:
            if price_ticks <= 0:
                return "price must be positive"
            if self.min_notional and self.notional(price_ticks, lots) < self.min_notional:
                return f"notional {self.notional(price_ticks, lots)} below min_notional {self.min_notional}"
        return None

    # ---------------------------------------------------------- fast wire parsing (no Decimal)
    def parse_price_ticks(self, text: str) -> int:
        """Parse a wire price string (e.g. ``"61800.20"``) to ticks without floats or Decimal.

        Raises ``ValueError`` when the text is not a plain decimal or is off the tick grid."""
        scaled = _scaled_int(text, self._price_dec)
        ticks, rem = divmod(scaled, self._tick_scaled)
        if rem:
            raise ValueError(f"price {text!r} is off the tick grid {self.tick_size}")
        return ticks

    def parse_qty_lots(self, text: str) -> int:
        """Parse a wire quantity string to lots (exact; off-lot raises ``ValueError``)."""
        scaled = _scaled_int(text, self._qty_dec)
        lots, rem = divmod(scaled, self._lot_scaled)
        if rem:
            raise ValueError(f"quantity {text!r} is off the lot grid {self.lot_size}")
        return lots


def _scaled_int(text: str, decimals: int) -> int:
    """``"123.4500"`` with ``decimals=2`` -> 12345. Extra fractional digits must be zeros."""
    whole, _, frac = text.partition(".")
    digits = whole + frac
    if not (digits.isdigit() and digits.isascii()):  # int() would take "_", spaces and signs
        raise ValueError(f"{text!r} is not a plain non-negative decimal number")
    if len(frac) > decimals:
        extra = frac[decimals:]
        if extra.strip("0"):
            raise ValueError(f"{text!r} has more precision than {decimals} decimals")
        frac = frac[:decimals]
    return int(whole + frac + "0" * (decimals - len(frac)))


class InstrumentRegistry:
    """Instruments by venue, and the mapping unified symbol <-> each venue's own symbol."""

    def __init__(self, instruments: list[Instrument] | None = None) -> None:
        self._by_key: dict[tuple[str, str], Instrument] = {}
        self._by_venue_symbol: dict[tuple[str, str], Instrument] = {}
        for inst in instruments or []:
            self.add(inst)

    def add(self, inst: Instrument) -> None:
        self._by_key[(inst.venue, inst.symbol)] = inst
        self._by_venue_symbol[(inst.venue, inst.venue_symbol)] = inst

    def get(self, venue: str, symbol: str) -> Instrument:
        try:
            return self._by_key[(venue, symbol)]
        except KeyError:
            known = sorted(s for v, s in self._by_key if v == venue)
            raise InstrumentError(
                f"unknown instrument {symbol!r} on venue {venue!r} "
                f"(known there: {', '.join(known) or 'none'})") from None

    def by_venue_symbol(self, venue: str, venue_symbol: str) -> Instrument:
        try:
            return self._by_venue_symbol[(venue, venue_symbol)]
        except KeyError:
            raise InstrumentError(f"unknown venue symbol {venue_symbol!r} on venue {venue!r}") from None

    def venues_for(self, symbol: str) -> list[Instrument]:
        return [i for (v, s), i in self._by_key.items() if s == symbol]

    def to_venue_symbol(self, venue: str, symbol: str) -> str:
        return self.get(venue, symbol).venue_symbol

    def to_unified(self, venue: str, venue_symbol: str) -> str:
        return self.by_venue_symbol(venue, venue_symbol).symbol

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


# ---------------------------------------------------------------- market-data events
@dataclass(frozen=True, slots=True)
class BookDeltas:
    """One venue message's worth of L2 changes (or a full snapshot) for one book.

    ``bids``/``asks`` are ``(price_ticks, lots)`` pairs; ``lots == 0`` deletes the level.
    ``first_update_id``/``last_update_id``/``prev_update_id`` carry the venue's sequence numbers
    (``-1`` where the venue gives none)."""

    venue: VenueId
    symbol: Symbol
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    ts_event: int
    ts_init: int
    is_snapshot: bool = False
    first_update_id: int = -1
    last_update_id: int = -1
    prev_update_id: int = -1


@dataclass(frozen=True, slots=True)
class TradeTick:
    """A public trade. ``aggressor`` is the taker's side (buy = a buyer lifted the ask)."""

    venue: VenueId
    symbol: Symbol
    price_ticks: int
    lots: int
    aggressor: Side
    trade_id: TradeId
    ts_event: int
    ts_init: int


@dataclass(frozen=True, slots=True)
class QuoteTick:
    """The venue's own top of book (e.g. Binance bookTicker); ``update_id`` -1 when absent."""

    venue: VenueId
    symbol: Symbol
    bid_ticks: int
    bid_lots: int
    ask_ticks: int
    ask_lots: int
    ts_event: int
    ts_init: int
    update_id: int = -1


MarketEvent = BookDeltas | TradeTick | QuoteTick


# ---------------------------------------------------------------- orders, fills, events
@dataclass(frozen=True, slots=True)
class Order:
    """A child order as sent to one venue (integers inside)."""

    client_order_id: ClientOrderId
    venue: VenueId
    symbol: Symbol
    side: Side
    order_type: OrderType
    lots: int
    price_ticks: int | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    stop_ticks: int | None = None
    expire_ts: int | None = None
    display_lots: int | None = None
    parent_id: ParentOrderId | None = None
    decision_id: DecisionId | None = None
    ts_init: int = 0


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of our orders."""

    client_order_id: ClientOrderId
    venue: VenueId
    symbol: Symbol
    side: Side
    trade_id: TradeId
    price_ticks: int
    lots: int
    fee: Decimal
    fee_currency: str
    liquidity: Liquidity
    ts_event: int
    ts_init: int
    venue_order_id: VenueOrderId | None = None


class OrderEventKind(enum.Enum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    CANCEL_REJECTED = "cancel_rejected"


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """A state change of one order reported by a venue. Fill events carry the :class:`Fill`."""

    kind: OrderEventKind
    client_order_id: ClientOrderId
    venue: VenueId
    ts_event: int
    ts_init: int
    venue_order_id: VenueOrderId | None = None
    fill: Fill | None = None
    reason: str | None = None
    code: str | None = None
    new_lots: int | None = None
    new_price_ticks: int | None = None


def venue_map(mapping: Mapping[str, str]) -> dict[VenueId, str]:
    """Typed copy of a venue -> venue-symbol mapping (config helper)."""
    return {VenueId(k): v for k, v in mapping.items()}
