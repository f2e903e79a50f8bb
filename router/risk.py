"""Pre-trade risk: guardrails checked before any child order leaves for a venue.

Checks, in order (the first failure refuses the order; the refusal names the rule):

* ``kill_switch``      — once tripped, nothing is sent until :meth:`PreTradeRisk.reset_kill_switch`;
* ``quantity``         — the quantity must be positive;
* ``blacklist``        — symbols that may not be traded;
* ``price_collar``     — a limit price further than ``price_collar_bps`` through the consolidated mid
  (a buy above mid x (1 + collar), a sell below mid x (1 - collar)); market orders are checked at
  the mid itself and refused when there is no mid to check against;
* ``max_order_notional`` — notional of one child order (quote currency);
* ``max_parent_notional`` — notional of everything sent for one parent (filled + working + this);
* ``max_position``     — resulting absolute position per symbol (base units) in the worst case:
  this order and every pending order on its side fill, none on the other side does (pending buys
  and sells are not netted against each other).

An order whose notional cannot be known (a market order while there is no mid, e.g. a one-sided
book) is refused by ``max_order_notional`` / ``max_parent_notional`` when either is configured.

All amounts are Decimal at this edge: risk limits come from config and are compared once per child,
not per tick. The engine journals every refusal as a ``risk_refused`` event.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from marketdata.errors import RiskRejected
from marketdata.model import Side

log = logging.getLogger(__name__)

_BPS = Decimal(10_000)
_BUY = Side.BUY
_SELL = Side.SELL


@dataclass(frozen=True)
class RiskLimits:
    """Limits; ``None`` disables a check. Notional in quote currency, positions in base units."""

    max_order_notional: Decimal | None = None
    max_parent_notional: Decimal | None = None
    max_position: dict[str, Decimal] = field(default_factory=dict)
    blacklist: frozenset[str] = frozenset()
    price_collar_bps: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RiskCheck:
    """What the checker needs to know about one child order."""

    symbol: str
    side: Side
    quantity: Decimal
    limit_price: Decimal | None
    parent_id: str | None
    mid_price: Decimal | None


class PreTradeRisk:
    """Stateful checker: tracks per-parent notional sent and per-symbol positions."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self.killed: str | None = None
        self._parent_notional: dict[str, Decimal] = defaultdict(Decimal)
        self._position: dict[str, Decimal] = defaultdict(Decimal)
        # pending (checked, not yet filled or released) quantity per symbol and side, both >= 0
        self._pending_buy: dict[str, Decimal] = defaultdict(Decimal)
        self._pending_sell: dict[str, Decimal] = defaultdict(Decimal)
        self.refusals = 0

    # ---------------------------------------------------------------- state
    def trip_kill_switch(self, reason: str) -> None:
        log.error("kill switch tripped: %s", reason)
        self.killed = reason

    def reset_kill_switch(self) -> None:
        self.killed = None

    def on_fill(self, symbol: str, side: Side, quantity: Decimal) -> None:
        self._position[symbol] += quantity * int(side)

    def on_order_released(self, symbol: str, side: Side, quantity: Decimal) -> None:
        """Working quantity that will no longer fill (cancelled/rejected/expired or filled)."""
        pending = self._pending_buy if side is _BUY else self._pending_sell
        pending[symbol] -= quantity

    def release_parent_notional(self, parent_id: str, notional: Decimal) -> None:
        """Notional checked for ``parent_id`` that will not execute (an unfilled child ended):
        it no longer counts toward ``max_parent_notional``."""
        cur = self._parent_notional[parent_id] - notional
        self._parent_notional[parent_id] = cur if cur > 0 else Decimal(0)

    def count_parent_notional(self, parent_id: str, notional: Decimal) -> None:
        """Notional that executed for ``parent_id`` after it was released (a fill reported after
        its child ended): it counts toward ``max_parent_notional`` again."""
        self._parent_notional[parent_id] += notional

    def position(self, symbol: str) -> Decimal:
        return self._position[symbol]

    @property
    def _pending_position(self) -> dict[str, Decimal]:
        """Net pending quantity (buys - sells) per symbol."""
        return {s: self._pending_buy[s] - self._pending_sell[s] for s in {*self._pending_buy, *self._pending_sell}}

    # ---------------------------------------------------------------- the check
    def check(self, c: RiskCheck) -> None:
        """Raise :class:`RiskRejected` naming the rule, or record the order as accepted."""
        self.check_order(c.symbol, c.side, c.quantity, c.limit_price, c.parent_id, c.mid_price)

    def check_order(self, symbol: str, side: Side, quantity: Decimal, limit_price: Decimal | None,
                    parent_id: str | None, mid_price: Decimal | None) -> None:
        """:meth:`check` without building a :class:`RiskCheck` (the engine's per-child path):
        the same rules, messages and bookkeeping; the notional is computed once."""
        lim = self.limits
        if self.killed is not None:
            self.refusals += 1
            raise RiskRejected(f"kill switch is on ({self.killed})", rule="kill_switch")
        if quantity <= 0:
            self.refusals += 1
            raise RiskRejected(f"quantity {quantity} must be positive", rule="quantity")
        if lim.blacklist and symbol in lim.blacklist:
            self.refusals += 1
            raise RiskRejected(f"{symbol} is blacklisted", rule="blacklist")
        ref_price = limit_price if limit_price is not None else mid_price
        notional = None if ref_price is None else ref_price * quantity
        if lim.price_collar_bps is not None or lim.max_order_notional is not None \
                or lim.max_parent_notional is not None or lim.max_position:
            try:
                self._check_limits(symbol, side, quantity, limit_price, parent_id, mid_price, notional)
            except RiskRejected:
                self.refusals += 1
                raise
        if parent_id is not None and notional is not None:
            self._parent_notional[parent_id] += notional
        (self._pending_buy if side is _BUY else self._pending_sell)[symbol] += quantity

    def _check_limits(self, symbol: str, side: Side, quantity: Decimal, limit_price: Decimal | None,
                      parent_id: str | None, mid_price: Decimal | None, notional: Decimal | None) -> None:
        """The configured limits (collar, order and parent notional, position), in that order."""
        lim = self.limits
        if lim.price_collar_bps is not None:
            if mid_price is None:
                raise RiskRejected("no consolidated mid to check the price collar against", rule="price_collar")
            if limit_price is not None:
                band = mid_price * lim.price_collar_bps / _BPS
                if (side is _BUY and limit_price > mid_price + band) or (
                        side is _SELL and limit_price < mid_price - band):
                    raise RiskRejected(
                        f"{side.name.lower()} limit {limit_price} is more than {lim.price_collar_bps} bps "
                        f"through mid {mid_price}", rule="price_collar")
        if notional is None:
            # a market order without a mid to price it: its notional is unknown, so it could be any
            if lim.max_order_notional is not None:
                raise RiskRejected("no limit price or consolidated mid to check the order notional against",
                                   rule="max_order_notional")
            if lim.max_parent_notional is not None and parent_id is not None:
                raise RiskRejected(f"parent {parent_id}: no limit price or consolidated mid to check the parent "
                                   "notional against", rule="max_parent_notional")
        else:
            if lim.max_order_notional is not None and notional > lim.max_order_notional:
                raise RiskRejected(f"order notional {notional:.2f} > {lim.max_order_notional}",
                                   rule="max_order_notional")
            if lim.max_parent_notional is not None and parent_id is not None:
                total = self._parent_notional[parent_id] + notional
                if total > lim.max_parent_notional:
                    raise RiskRejected(f"parent {parent_id} notional {total:.2f} > {lim.max_parent_notional}",
                                       rule="max_parent_notional")
        max_pos = lim.max_position.get(symbol)
        if max_pos is not None:
            # the worst case in this order's direction: it and every pending order on its side fill
            # and none on the other side does (an order never adds to the other direction)
            if side is _BUY:
                worst = self._position[symbol] + self._pending_buy[symbol] + quantity
                over = worst > max_pos
            else:
                worst = self._position[symbol] - self._pending_sell[symbol] - quantity
                over = worst < -max_pos
            if over:
                raise RiskRejected(f"position in {symbol} could reach {worst} (limit {max_pos})",
                                   rule="max_position")
