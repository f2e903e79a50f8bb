"""The smart order router: score every venue, allocate one order across them, explain it.

:class:`Router` is synchronous and sends nothing. :meth:`Router.route` reads the per-venue
:class:`~marketdata.book.L2Book` s, the injected :class:`~marketdata.clock.Clock`, the venues'
learned state (fill ratios, health, activity) and a :class:`~router.scoring.CapacityProvider`,
and returns a :class:`RoutingDecision`: each venue's factors (or the reason it was excluded), the
child allocations in venue ticks and lots, and the residual that could not be placed with its
reason. Decision ids are counter based (``<prefix>000001``...), so a replay reproduces them.

Styles (``RouteRequest.style``):

* ``take`` — marketable: a lazy heap merge over the venues' ladders ordered by the strategy's key
  (:mod:`router.allocation`), never above the limit price (raw price) or the slippage bound,
  whole venue lots, per-venue caps, balances and rate-limit headroom; a venue slice below the
  venue's min quantity / min notional is dropped and re-offered to the other venues.
* ``post`` — passive: venues ranked by maker economics, queue ahead and fill probability; the
  quantity goes to the best venue, the overflow (caps, balances) to the next.
* ``mixed`` — ``urgency`` x quantity (rounded down to the common lot) is taken now, the rest and
  whatever the take could not fill is posted; the split is stated in ``explanation``.

Strategies order the marketable sweep (see docs/routing.md for the formulas):
``best_price`` raw displayed price; ``lowest_cost`` taker-fee-adjusted price; ``fastest``
expected arrival delay first, then fee-adjusted price; ``smart`` fee-adjusted price plus weighted
latency cost and miss cost ``(1 - fill probability)``, on latency-haircut liquidity.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

from marketdata.book import L2Book
from marketdata.clock import Clock, LiveClock
from marketdata.errors import ConfigError, InstrumentError
from marketdata.model import Instrument, InstrumentKind, OrderType, Side, TimeInForce, exact_ratio
from marketdata.units import CommonGrid
from router.allocation import FEE_SCALE, NO_LIMIT, SweepResult, VenueParams, sweep_levels
from router.config import STYLES, RoutingPolicy, VenueConfig
from router.scoring import (
    BetaFill,
    BreakerState,
    CapacityProvider,
    MarketActivity,
    QueueOutflow,
    UnlimitedCapacity,
    VenueHealth,
)

__all__ = ["Allocation", "RouteRequest", "Router", "RoutingDecision", "VenueScore"]

log = logging.getLogger(__name__)

Style = Literal["take", "post", "mixed"]
NS_PER_MS = 1_000_000
_PRIORITY_STEP = 1 << 96  # larger than any key: fastest's venue rank dominates the price key
NS_PER_S = 1_000_000_000
_MEMO_MAX = 4096
_exp = math.exp
_LIMIT = OrderType.LIMIT
_CLOSED, _HALF_OPEN, _OPEN = BreakerState.CLOSED.value, BreakerState.HALF_OPEN.value, BreakerState.OPEN.value
_IOC = TimeInForce.IOC
_sqrt = math.sqrt


def _order_thresholds(inst: Instrument) -> tuple[int, int, bool]:
    """Integer thresholds above which :meth:`Instrument.check_order` surely passes, so the hot
    path only calls it (for the exact verdict and message) near or below a minimum.

    ``(ok_lots, ok_size, size_by_lots)``: a positive order with ``lots >= ok_lots`` and
    ``price_ticks * lots >= ok_size`` (``lots >= ok_size`` for inverse contracts, whose notional does
    not depend on the price) has quantity and notional at least ``1 + 1e-20`` times the minimums in
    exact arithmetic, far more than the Decimal context's rounding (28 digits) could take away."""
    margin = 1 + Fraction(1, 10**20)
    lot = Fraction(inst.lot_size)
    ok_lots = math.ceil(Fraction(inst.min_quantity) * margin / lot) if inst.min_quantity else 0
    inverse = inst.kind is InstrumentKind.INVERSE_PERPETUAL
    unit = lot * Fraction(inst.contract_size) * (1 if inverse else Fraction(inst.tick_size))
    ok_size = math.ceil(Fraction(inst.min_notional) * margin / unit) if inst.min_notional and unit else 0
    return max(1, ok_lots), ok_size, inverse


def _balance_limit(inst: Instrument, asset: str, bal: Decimal) -> tuple[int, int]:
    """What an available balance allows on one venue: ``(0, 0)`` nothing (not positive),
    ``(1, lots)`` at most that many lots (the base asset: a spot sell), ``(2, budget)`` a notional
    budget in tick-lots x 1e8 (the quote asset); ``(3, 0)`` not a finite number (a provider's
    garbled answer: the venue is excluded with that reason instead of failing the decision)."""
    if isinstance(bal, int | float) and not isinstance(bal, bool):
        bal = Decimal(bal)
    if not isinstance(bal, Decimal) or not bal.is_finite():
        return 3, 0
    if bal <= 0:
        return 0, 0
    if asset == inst.base:
        return 1, inst.qty_to_lots(bal / inst.contract_size)
    unit = inst.tick_size * inst.lot_size * inst.contract_size
    return 2, int((bal * FEE_SCALE / unit).to_integral_value(rounding=ROUND_FLOOR))


def _order_problem(st: _VenueState, price_ticks: int | None, lots: int) -> str | None:
    """:meth:`Instrument.check_order`'s verdict on ``lots`` at ``price_ticks`` on this venue,
    without calling it where the integer thresholds (:func:`_order_thresholds`) show the order
    surely passes: only orders near or below a minimum pay for the exact Decimal check."""
    if (price_ticks is not None and price_ticks > 0 and lots >= st.ok_lots
            and (lots if st.size_by_lots else price_ticks * lots) >= st.ok_size):
        return None
    assert st.instrument is not None
    return st.instrument.check_order(price_ticks, lots)



def _stop_text(e: _Eval, stop: str, *, sweep: bool = False) -> str:
    """A kernel stop as the residual reason shows it: a balance stop names the asset and what was
    available (``not enough USDT (59.97 available)``). ``sweep``: a stop of the take sweep, whose
    cap includes a perpetual sell's margin turned into lots at the best bid."""
    bal = e.bal
    if stop == "balance" and bal is not None:
        return f"not enough {e.asset} ({format(bal.normalize(), 'f')} available)"
    if stop == "venue cap/balance":
        st = e.st
        inst = st.instrument
        cap_q = st.cfg.max_quantity
        if bal is not None and inst is not None:
            kind, n = _balance_limit(inst, e.asset, bal)
            funds = n if kind == 1 else None
            if sweep and kind == 2 and e.budget >= 0 and e.params[5] < 0 and e.opp:
                # a sell's quote margin (perpetuals), turned into a cap at the best bid by _evaluate
                funds = e.budget // (e.opp * st.cost_mult)
            if funds is not None and (st.max_lots < 0 or funds < st.max_lots):
                return f"not enough {e.asset} ({format(bal.normalize(), 'f')} available)"
        if cap_q is not None:
            return f"venue cap max_quantity {cap_q} reached"
    return stop


def _urgency_lots(want: int, urgency: float) -> int:
    """``floor(urgency x want)`` of the urgency as written (``0.29``, not the binary float just
    below it, whose product with 100000 lots floors to 28999)."""
    return int(_urgency_fraction(urgency) * want)


@lru_cache(maxsize=256)
def _urgency_fraction(urgency: float) -> Fraction:
    return Fraction(repr(urgency))


def _memo(table: dict[Any, Any], key: Any, value: Any) -> None:
    """Store in a bounded memo table (cleared when full; entries are pure functions of keys)."""
    if len(table) >= _MEMO_MAX:
        table.clear()
    table[key] = value


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One order to route. ``quantity`` in base units, ``limit_price`` in quote per base (raw,
    before fees); ``urgency`` in [0, 1] splits a ``mixed`` order (1 = take everything now)."""

    symbol: str
    side: Side
    quantity: Decimal
    limit_price: Decimal | None = None
    style: Style = "take"
    urgency: float = 0.5
    parent_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.quantity, Decimal) or not self.quantity.is_finite() or self.quantity <= 0:
            raise InstrumentError(f"route request quantity must be a positive Decimal, got {self.quantity!r}")
        if self.limit_price is not None and (not isinstance(self.limit_price, Decimal)
                                             or not self.limit_price.is_finite() or self.limit_price <= 0):
            raise InstrumentError(f"route request limit_price must be a positive Decimal, got {self.limit_price!r}")
        if self.style not in STYLES:
            raise ValueError(f"route request style {self.style!r} is not one of {', '.join(STYLES)}")
        if not 0.0 <= self.urgency <= 1.0:
            raise ValueError(f"route request urgency must be in [0, 1], got {self.urgency}")

    def to_dict(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "side": "buy" if self.side is Side.BUY else "sell",
                "quantity": str(self.quantity),
                "limit_price": None if self.limit_price is None else str(self.limit_price),
                "style": self.style, "urgency": _num(self.urgency), "parent_id": self.parent_id}


class Allocation:
    """One child order: ``lots`` of the venue's lot, ``price_ticks`` of its tick (the IOC limit =
    worst level taken, or the posting price). ``quantity``/``price`` are the same as Decimals.

    Immutable (read-only properties). The router passes the venue's ``instrument`` instead of the
    Decimals, which are then computed on first read (the engine only reads lots and ticks)."""

    __slots__ = ("_inst", "_lots", "_order_type", "_price", "_price_ticks", "_quantity", "_style", "_tif",
                 "_venue")

    def __init__(self, venue: str, lots: int, price_ticks: int | None, style: Literal["take", "post"],
                 order_type: OrderType, time_in_force: TimeInForce, quantity: Decimal | None = None,
                 price: Decimal | None = None, *, instrument: Instrument | None = None) -> None:
        if instrument is None and (quantity is None or (price is None and price_ticks is not None)):
            raise TypeError("Allocation needs quantity and price, or the instrument to derive them")
        self._venue = venue
        self._lots = lots
        self._price_ticks = price_ticks
        self._style = style
        self._order_type = order_type
        self._tif = time_in_force
        self._quantity = quantity
        self._price = price
        self._inst = instrument

    @property
    def venue(self) -> str:
        return self._venue

    @property
    def lots(self) -> int:
        return self._lots

    @property
    def price_ticks(self) -> int | None:
        return self._price_ticks

    @property
    def style(self) -> Literal["take", "post"]:
        return self._style

    @property
    def order_type(self) -> OrderType:
        return self._order_type

    @property
    def time_in_force(self) -> TimeInForce:
        return self._tif

    @property
    def quantity(self) -> Decimal:
        q = self._quantity
        if q is None:
            assert self._inst is not None
            q = self._quantity = self._inst.lots_to_qty(self._lots)
        return q

    @property
    def price(self) -> Decimal | None:
        p = self._price
        if p is None and self._price_ticks is not None:
            assert self._inst is not None
            p = self._price = self._inst.ticks_to_price(self._price_ticks)
        return p

    def _fields(self) -> tuple[Any, ...]:
        return (self._venue, self._lots, self._price_ticks, self._style, self._order_type, self._tif,
                self.quantity, self.price)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Allocation)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return ("Allocation(venue={!r}, lots={!r}, price_ticks={!r}, style={!r}, order_type={!r}, "
                "time_in_force={!r}, quantity={!r}, price={!r})".format(*self._fields()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Allocation, self._fields())

    def to_dict(self) -> dict[str, Any]:
        price = self.price
        return {"venue": self._venue, "quantity": str(self.quantity),
                "price": None if price is None else str(price), "style": self._style,
                "order_type": self._order_type.value, "time_in_force": self._tif.value}


@dataclass(frozen=True, slots=True)
class VenueScore:
    """One venue's factors for one decision (nested dict: price, latency, fill_probability, health,
    capacity, score) and, if it took no part, why."""

    venue: str
    factors: Mapping[str, Any]
    excluded_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"venue": self.venue, "factors": _jsonable(self.factors), "excluded_reason": self.excluded_reason}


_Explain = list[Any]
"""Explanation parts: strings, or ``(router, filled, want, venues, strategy)`` of the take summary
(formatted when read)."""
_ZERO = Decimal(0)
_TAKE_STOPS = "take incomplete ("   # a take reason naming the venues' stops
_POST_PART = "; post incomplete"   # where a mixed decision's post reason follows its take reason


class RoutingDecision:
    """The explained result of :meth:`Router.route`. ``residual_lots`` are common-grid lots.

    Immutable (read-only properties). When the router builds it, ``decision_id``, ``venues``
    (the :class:`VenueScore` s), ``residual_quantity`` and ``explanation`` are assembled on first
    read from what the decision captured; they are the same whenever they are read."""

    __slots__ = ("_allocations", "_evals", "_explain", "_grid", "_id", "_id_n", "_policy", "_prefix", "_reason",
                 "_ref", "_request", "_residual", "_residual_qty", "_split", "_strategy", "_ts", "_venues")
    # set only by _captured (the lazy fields are then built from them)
    _grid: CommonGrid
    _prefix: str
    _id_n: int
    _policy: RoutingPolicy
    _evals: list[_Eval]
    _ref: int | None

    def __init__(self, decision_id: str, ts_ns: int, request: RouteRequest, strategy: str,
                 venues: list[VenueScore], allocations: list[Allocation], residual_lots: int,
                 residual_reason: str | None, residual_quantity: Decimal = Decimal(0),
                 explanation: str = "", split: dict[str, Any] | None = None) -> None:
        self._id: str | None = decision_id
        self._ts = ts_ns
        self._request = request
        self._strategy = strategy
        self._venues: list[VenueScore] | None = venues
        self._allocations = allocations
        self._residual = residual_lots
        self._reason = residual_reason
        self._residual_qty: Decimal | None = residual_quantity
        self._explain: _Explain | str = explanation
        self._split = split

    @classmethod
    def _captured(cls, router: Router, n: int, ts_ns: int, request: RouteRequest, evals: list[_Eval],
                  allocations: list[Allocation], residual_lots: int, residual_reason: str | None,
                  explain: _Explain, ref: int | None) -> RoutingDecision:
        d = cls.__new__(cls)
        d._grid = router.grid
        d._prefix = router.decision_prefix  # the id is formatted when read, with this prefix
        d._id = None
        d._id_n = n
        d._ts = ts_ns
        d._request = request
        policy = d._policy = router.policy
        d._strategy = policy.strategy
        d._venues = None
        d._evals = evals
        d._allocations = allocations
        d._residual = residual_lots
        d._reason = residual_reason
        d._residual_qty = None if residual_lots else _ZERO
        d._explain = explain
        d._ref = ref
        d._split = None
        return d

    @property
    def decision_id(self) -> str:
        i = self._id
        if i is None:
            i = self._id = f"{self._prefix}{self._id_n:06d}"
        return i

    @property
    def ts_ns(self) -> int:
        return self._ts

    @property
    def request(self) -> RouteRequest:
        return self._request

    @property
    def strategy(self) -> str:
        return self._strategy

    @property
    def venues(self) -> list[VenueScore]:
        v = self._venues
        if v is None:
            ctx = _Ctx(self._policy, self._grid, self._request.side, tuple(self._allocations), self._ref)
            v = []
            for e in self._evals:
                e.ctx = ctx
                v.append(VenueScore(e.name, _Factors(e), e.excluded))
            self._venues = v
            self._evals = []
        return v

    @property
    def allocations(self) -> list[Allocation]:
        return self._allocations

    @property
    def residual_lots(self) -> int:
        return self._residual

    @property
    def residual_reason(self) -> str | None:
        return self._reason

    @property
    def short_of_funds_only(self) -> bool:
        """Nothing placed, and every venue's reason is funds: ``not enough <asset> (...)`` (a
        budget stop, also when what it affords is below a minimum) or ``no available <asset>
        balance`` (an exclusion); these are the phrases this module writes. Of a ``mixed``
        reason with both parts (``take incomplete (...); post incomplete (...)``) only the post's
        counts: the post was offered the take's shortfall too, so funds alone stopped the child
        when they stopped the post."""
        reason = self._reason
        if self._allocations or not reason:
            return False
        if reason.startswith(_TAKE_STOPS):
            # a mixed child short on both parts: the post was offered all of it (the take's
            # shortfall too), so its reasons alone say whether funds are what is missing
            at = reason.find(_POST_PART)
            if at >= 0:
                reason = reason[at + 2:]
        return all("not enough " in part or "no available " in part for part in reason.split("; "))

    @property
    def residual_quantity(self) -> Decimal:
        q = self._residual_qty
        if q is None:
            q = self._residual_qty = self._grid.quantity(self._residual)
        return q

    @property
    def explanation(self) -> str:
        x = self._explain
        if not isinstance(x, str):
            x = self._explain = "; ".join(p if isinstance(p, str) else p[0](*p[1:]) for p in x)
        return x

    @property
    def allocated_quantity(self) -> Decimal:
        return sum((a.quantity for a in self._allocations), Decimal(0))

    def score(self, venue: str) -> VenueScore:
        for v in self.venues:
            if v.venue == venue:
                return v
        raise KeyError(venue)

    @property
    def split(self) -> dict[str, Any] | None:
        """How a ``mixed`` order was split between taking now and posting, when the policy's
        ``mixed_split`` is ``cont_kukanov`` (its inputs and result, or why it fell back to the
        urgency split); ``None`` otherwise."""
        return self._split

    def _fields(self) -> tuple[Any, ...]:
        return (self.decision_id, self._ts, self._request, self._strategy, self.venues, self._allocations,
                self._residual, self._reason, self.residual_quantity, self.explanation, self._split)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, RoutingDecision)
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # holds lists, like the frozen dataclass it replaces

    def __repr__(self) -> str:
        return ("RoutingDecision(decision_id={!r}, ts_ns={!r}, request={!r}, strategy={!r}, venues={!r}, "
                "allocations={!r}, residual_lots={!r}, residual_reason={!r}, residual_quantity={!r}, "
                "explanation={!r}, split={!r})".format(*self._fields()))

    def __reduce__(self) -> tuple[Any, ...]:
        # copies and pickles hold the assembled values (not the router)
        return (RoutingDecision, self._fields())

    def to_dict(self) -> dict[str, Any]:
        """The journal's ``routing_decision`` payload (docs/contracts.md); numbers as decimal strings."""
        request = self._request
        d = {
            "decision_id": self.decision_id, "parent_id": request.parent_id,
            "ts_ns": self._ts, "request": request.to_dict(), "strategy": self._strategy,
            "venues": [v.to_dict() for v in self.venues],
            "allocations": [a.to_dict() for a in self._allocations],
            "residual": None if not self._residual else {
                "quantity": str(self.residual_quantity), "reason": self._reason},
            "explanation": self.explanation,
        }
        if self._split is not None:
            d["split"] = _jsonable(self._split)
        return d


# Explanation lines rendered when read: a decision stores (function, *arguments)
def _take_summary(router: Router, filled: int, want: int, venues: int, strategy: str) -> str:
    return (f"take {router._quantity(filled)} of {router._quantity(want)} "
            f"across {venues} venue(s) by {strategy}")


def _post_summary(router: Router, posted: int, want: int, venues: list[str], strategy: str) -> str:
    return (f"post {router._quantity(posted)} of {router._quantity(want)} on "
            f"{', '.join(venues) or 'no venue'} ranked by {strategy} passive score")


def _mixed_summary(router: Router, urgency: float, take_want: int, post_want: int, unfilled: int,
                   split: dict[str, Any] | None = None) -> str:
    if split is None:
        how = f"urgency {urgency:g}"
    elif split["method"] == "cont_kukanov":
        parts = []
        for name, v in split["venues"].items():
            level = "n/a" if v["quantile_level"] is None else f"{v['quantile_level']:.4g}"
            parts.append(f"{name} ({v['samples']} windows of {split['horizon_ms']:g} ms: outflow quantile "
                         f"{v['outflow_quantile']} at level {level} against {v['queue_ahead']} ahead; "
                         f"post {v['post']})")
        how = "cont_kukanov on " + ", ".join(parts)
        if split.get("skipped"):
            how += " (left out: " + "; ".join(split["skipped"].values()) + ")"
    else:
        how = f"urgency {urgency:g} (cont_kukanov not used: {split['fallback']})"
    return (f"mixed: {how} -> take {router._quantity(take_want)} now, post "
            f"{router._quantity(post_want)} (incl. {router._quantity(unfilled)} the take could not fill)")


def _num(x: Any) -> Any:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, float):
        return format(x, ".6g")
    if isinstance(x, int | Decimal):
        return str(x)
    return str(x)


def _jsonable(obj: Any) -> Any:
    """Numbers as decimal strings (floats to 6 significant digits), containers recursively."""
    # exact-type fast paths first (the payload is plain dicts of floats, ints, Decimals, strings),
    # leaves of a dict converted in place: isinstance against the Mapping ABC and a call per
    # leaf cost far more than the conversions themselves
    t = type(obj)
    if t is _Factors:
        obj = obj._dict()
        t = dict
    if t is dict:
        out = {}
        for k, v in obj.items():
            tv = type(v)
            if tv is float:
                out[k] = format(v, ".6g")
            elif tv is str or tv is bool or v is None:
                out[k] = v
            elif tv is int or tv is Decimal:
                out[k] = str(v)
            else:
                out[k] = _jsonable(v)
        return out
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return _num(obj)


@dataclass
class _VenueState:
    cfg: VenueConfig
    instrument: Instrument | None
    book: L2Book | None
    activity: MarketActivity
    health: VenueHealth
    take_fill: BetaFill
    post_fill: BetaFill
    fee_taker_e8: int
    fee_maker_e8: int
    rtt_ns: int
    measured_rtt_ns: float | None = None
    # per-venue constants, precomputed at configuration time
    price_factor: int = 1
    lot_factor: int = 1
    taker_bps: float = 0.0
    maker_bps: float = 0.0
    max_lots: int = NO_LIMIT
    # instrument minimums as integer thresholds: lots >= ok_lots and (ticks x lots, or lots for
    # inverse contracts) >= ok_size guarantee Instrument.check_order passes (see _order_thresholds)
    ok_lots: int = 0
    ok_size: int = 0
    size_by_lots: bool = False
    max_age_ns: float = 0.0  # policy.max_book_age_ms in ns
    spot: bool = False       # a spot instrument (a sell is capped by the base balance)
    key_buy: int = FEE_SCALE   # sweep key multiplier of the non-smart strategies, buy / sell
    key_sell: int = FEE_SCALE
    cost_mult: int = FEE_SCALE  # 1e8 + taker fee (a rebate: 0, the venue holds the whole notional): budgets
    outflow: QueueOutflow | None = None   # best-queue outflow windows (mixed_split = cont_kukanov only)


class _Eval:
    """Working record of one venue during one decision: the cheap numbers, captured eagerly (the
    router's state moves on after the decision). The nested factor dict of the explain record /
    journal payload is built from them only when read (:class:`_Factors`).

    No ``__slots__``: the class attributes are the defaults, so a decision only stores what
    differs (fewer stores per venue on the hot path)."""

    # set as the evaluation proceeds (see ``stage``); read only when that stage was reached
    age_ns: int
    health: tuple[str, int, int, int]
    book_flags: tuple[bool, bool, int]
    lat: tuple[float, float, float, float, float, float, float, float]
    fill: tuple[float, float, int, int, float]
    headroom: int | None
    asset: str
    bal: Decimal | None
    opp: int | None  # best opposite price (venue ticks) at decision time
    pc: int | None   # the same in common ticks
    take_notional: int
    params: VenueParams  # sweep parameters (take and mixed styles)
    ctx: _Ctx
    excluded: str | None = None
    probe = False   # the venue's breaker is half-open and this decision may send its one probe
    stage = 0  # how far the evaluation got: 0 health, 1 book, 2 latency, 3 headroom, 4 capacity
    cap_lots = NO_LIMIT
    budget = NO_LIMIT
    reducible: int | None = None   # derivatives: lots that would only reduce the position (no margin)
    delay_s = 0.0
    take_lots = 0
    take_worst: int | None = None   # venue ticks of the worst level taken (the IOC limit), when take_lots
    take_stop: str | None = None
    # (price ticks, maker bps, lots ahead, queue fraction, fill probability, vs reference bps, score)
    passive: tuple[int, float, int, float, float, float, float] | None = None
    notes: tuple[str, ...] | list[str] = ()

    name: str
    st: _VenueState

    def note(self, text: str) -> None:
        notes = self.notes
        if isinstance(notes, list):
            notes.append(text)
        else:
            self.notes = [text]


class _Factors(Mapping[str, Any]):
    """``VenueScore.factors`` of one venue, built on first read from the numbers the decision
    captured (see :meth:`Router._build_factors`); the same dict, key order and values as building
    it eagerly."""

    __slots__ = ("_d", "_e")

    def __init__(self, e: _Eval) -> None:
        self._e: _Eval | None = e
        self._d: dict[str, Any] | None = None

    def _dict(self) -> dict[str, Any]:
        d = self._d
        if d is None:
            e = self._e
            assert e is not None
            d = self._d = _build_factors(e)
            self._e = None
        return d

    def __getitem__(self, key: str) -> Any:
        return self._dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return repr(self._dict())

    def __reduce__(self) -> tuple[Any, ...]:
        # copy / deepcopy / pickle give the plain dict (as before the factors were built lazily)
        return (dict, (self._dict(),))


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What the factor builder needs from the decision (all immutable)."""

    policy: RoutingPolicy
    grid: CommonGrid
    side: Side
    allocations: tuple[Allocation, ...]
    ref: int | None  # best raw opposite price across the eligible venues (common ticks)


def _venue_score(e: _Eval, policy: RoutingPolicy, sgn: int, ref: int | None) -> tuple[float, float, float, float]:
    """``(vs_reference_bps, miss_penalty_bps, penalty_bps, take_score_bps)`` of an eligible venue
    (lower score is better); ``penalty_bps`` is the smart strategy's latency + miss penalty, which
    the sweep key also uses (same float operations there)."""
    pc = e.pc
    rel = sgn * (pc - ref) / ref * 1e4 if pc is not None and ref else 0.0
    miss = (1.0 - e.fill[0]) * policy.miss_cost_bps
    s = policy.strategy
    if s == "smart":
        w = policy.weights
        penalty = w.latency * e.lat[7] + w.fill * miss
        return rel, miss, penalty, rel + e.st.taker_bps + penalty
    return rel, miss, 0.0, rel if s == "best_price" else rel + e.st.taker_bps


def _build_factors(e: _Eval) -> dict[str, Any]:
    """The nested factor dict of one venue (health, latency, fill_probability, capacity, price,
    score, passive, allocated_quantity, notes), in the order the decision computed them."""
    ctx: _Ctx = e.ctx
    policy = ctx.policy
    st = e.st
    f: dict[str, Any] = {}
    breaker, rejects, timeouts, consecutive = e.health
    health: dict[str, Any] = {"breaker": breaker, "rejects": rejects, "timeouts": timeouts,
                              "consecutive_failures": consecutive}
    f["health"] = health
    stage = e.stage
    if stage >= 1:
        needs_resync, crossed, gaps = e.book_flags
        health.update(book_age_ms=e.age_ns / NS_PER_MS, needs_resync=needs_resync, crossed=crossed, gaps=gaps)
    if stage >= 2:
        age_s, rtt_s, delay_s, rate, vol, move, p_gone, cost = e.lat
        f["latency"] = {"book_age_ms": age_s * 1e3, "order_rtt_ms": rtt_s * 1e3,
                        "delay_ms": delay_s * 1e3, "depletion_rate_hz": rate,
                        "volatility_ticks_per_sqrt_s": vol, "expected_move_ticks": move,
                        "haircut_top": p_gone if policy.haircut_enabled else 0.0,
                        "cost_bps": cost}
    if stage >= 3:
        take_mean, post_mean, take_orders, post_orders, used = e.fill
        f["fill_probability"] = {"take_hit_ratio": take_mean, "post_fill_rate": post_mean,
                                 "take_orders": take_orders, "post_orders": post_orders, "used": used}
        cap: dict[str, Any] = {"order_headroom": e.headroom}
        f["capacity"] = cap
        if stage >= 4:
            if st.cfg.max_quantity is not None:
                cap["max_quantity"] = st.cfg.max_quantity
            cap["balance_asset"] = e.asset
            cap["balance"] = e.bal
            if e.reducible is not None:
                cap["reducible_lots"] = e.reducible
    if e.excluded is None:  # eligible: priced and scored
        sgn = int(ctx.side)
        rel, miss, _penalty, score_bps = _venue_score(e, policy, sgn, ctx.ref)
        tick = ctx.grid.tick_size
        price: dict[str, Any] = {"taker_fee_bps": st.taker_bps, "maker_fee_bps": st.maker_bps}
        f["price"] = price
        pc = e.pc
        if pc is not None:
            price["best"] = Decimal(pc) * tick
            price["fee_adjusted_best"] = (Decimal(pc * (FEE_SCALE + sgn * st.fee_taker_e8))
                                          * (tick / FEE_SCALE)).quantize(tick / 100)
            price["vs_reference_bps"] = rel
        s = policy.strategy
        w = policy.weights
        lat_cost = e.lat[7]
        score: dict[str, Any] = {"strategy": s, "take_score_bps": score_bps,
                                 "latency_penalty_bps": w.latency * lat_cost if s == "smart" else 0.0,
                                 "miss_penalty_bps": w.fill * miss if s == "smart" else 0.0,
                                 "delay_ms": e.delay_s * 1e3}
        f["score"] = score
        lots = e.take_lots
        if lots:
            inst = st.instrument
            assert inst is not None
            # exact ratios, rounded to 1/100 tick for display
            q = inst.tick_size / 100
            notional = e.take_notional
            price["vwap_taken"] = (Decimal(notional) / lots * inst.tick_size).quantize(q)
            price["fee_adjusted_vwap_taken"] = (
                Decimal(notional * (FEE_SCALE + sgn * st.fee_taker_e8))
                / (lots * FEE_SCALE) * inst.tick_size).quantize(q)
        if e.take_stop:
            score["take_stop"] = e.take_stop
    if e.passive is not None:
        px, maker_bps, ahead, queue_frac, p_fill, rel_post, post_score = e.passive
        pinst = st.instrument
        assert pinst is not None
        f["passive"] = {"price": pinst.ticks_to_price(px), "maker_fee_bps": maker_bps,
                        "queue_ahead": pinst.lots_to_qty(ahead), "queue_fraction": queue_frac,
                        "fill_probability": p_fill, "vs_reference_bps": rel_post, "score": post_score}
    f["allocated_quantity"] = sum((a.quantity for a in ctx.allocations if a.venue == e.name), Decimal(0))
    if e.notes:
        f["notes"] = list(e.notes)
    return f


class Router:
    """Routes orders for one unified symbol across the configured venues (see module docstring).

    ``books`` maps venue id to that venue's live :class:`L2Book` (read at decision time, never
    copied); ``instruments`` maps venue id to its :class:`Instrument` for ``policy.symbol``.
    Venues configured but missing a book or instrument are reported as excluded. Call
    :meth:`on_book` after each book update (it feeds the latency model), and the ``record_*``
    methods with order outcomes (fill probability, health).

    ``book_age_from`` names the book timestamp that is on ``clock``: the age of a book (staleness
    against ``max_book_age_ms``, the latency haircut, the activity model's times) is ``clock now``
    minus it. ``"ts_init"``, the local receive time, for live books: their ``ts_event`` is the
    venue's clock (Binance ``E``/``T``), off ours by its skew, so a venue clock behind ours would
    make fresh books look stale and one ahead would hide stale ones. ``"ts_event"`` in
    simulation, where the clock is advanced along exchange time and a replay's ``ts_init`` is the
    recording collector's clock (about 1.27 s behind ``E`` on the bundled Binance files).
    Default: ``"ts_init"`` with a :class:`~marketdata.clock.LiveClock`, else ``"ts_event"``."""

    def __init__(self, policy: RoutingPolicy, venues: Mapping[str, VenueConfig],
                 instruments: Mapping[str, Instrument], books: Mapping[str, L2Book], clock: Clock,
                 capacity: CapacityProvider | None = None, *, decision_prefix: str = "RD-",
                 book_age_from: Literal["ts_event", "ts_init"] | None = None) -> None:
        self.policy = policy
        self.clock = clock
        if book_age_from is None:
            book_age_from = "ts_init" if isinstance(clock, LiveClock) else "ts_event"
        elif book_age_from not in ("ts_event", "ts_init"):
            raise ValueError(f"book_age_from must be 'ts_event' or 'ts_init', got {book_age_from!r}")
        self._book_age_from: Literal["ts_event", "ts_init"] = book_age_from
        self._age_from_init = book_age_from == "ts_init"
        self._probe_evals: list[_Eval] = []   # this decision's venues whose half-open breaker may be probed
        self.capacity: CapacityProvider = capacity or UnlimitedCapacity()
        self.decision_prefix = decision_prefix
        self._counter = 0
        grid_insts = [i for v, i in instruments.items() if v in venues and i.symbol == policy.symbol]
        if not grid_insts:
            raise ConfigError(f"no instrument for symbol {policy.symbol!r} on any configured venue",
                              key="routing.symbol", allowed=", ".join(sorted({i.symbol for i in instruments.values()})))
        self.grid = CommonGrid.from_instruments(grid_insts)
        tau = int(policy.activity_half_life_ms * NS_PER_MS / 0.6931471805599453)
        self._venues: dict[str, _VenueState] = {}
        for name, cfg in venues.items():
            inst = instruments.get(name)
            if inst is not None and inst.symbol != policy.symbol:
                inst = None
            tier = cfg.fee_tier
            fp = policy.fill_prior
            self._venues[name] = _VenueState(
                cfg=cfg, instrument=inst, book=books.get(name), activity=MarketActivity(tau),
                health=VenueHealth(policy.breaker.failures_to_open, int(policy.breaker.cooldown_ms * NS_PER_MS)),
                take_fill=BetaFill(fp.take_alpha, fp.take_beta), post_fill=BetaFill(fp.post_alpha, fp.post_beta),
                fee_taker_e8=int(tier.taker_bps * 10_000), fee_maker_e8=int(tier.maker_bps * 10_000),
                rtt_ns=int((cfg.latency.order_rtt_ms + cfg.latency.jitter_ms) * NS_PER_MS),
                price_factor=self.grid.price_factor.get(name, 1), lot_factor=self.grid.lot_factor.get(name, 1),
                taker_bps=int(tier.taker_bps * 10_000) / 10_000, maker_bps=int(tier.maker_bps * 10_000) / 10_000,
                max_lots=inst.qty_to_lots(cfg.max_quantity) if inst is not None and cfg.max_quantity is not None
                else NO_LIMIT)
            st = self._venues[name]
            st.max_age_ns = policy.max_book_age_ms * NS_PER_MS
            st.cost_mult = FEE_SCALE + max(0, st.fee_taker_e8)
            if policy.strategy != "best_price":
                st.key_buy, st.key_sell = FEE_SCALE + st.fee_taker_e8, FEE_SCALE - st.fee_taker_e8
            if inst is not None:
                st.spot = inst.kind is InstrumentKind.SPOT
                st.ok_lots, st.ok_size, st.size_by_lots = _order_thresholds(inst)
            if policy.mixed_split == "cont_kukanov":
                ck = policy.cont_kukanov
                st.outflow = QueueOutflow(int(ck.horizon_ms * NS_PER_MS), ck.keep_windows)
        # small memo tables of pure functions of immutable inputs (bounded, see _memo)
        self._want_memo: dict[Decimal, int] = {}
        self._limit_memo: dict[tuple[Decimal, Side], int] = {}
        # (ref, side) -> (bound, explanation line, the residual reason's stop text at the bound)
        self._slip_memo: dict[tuple[int, Side], tuple[int, str, str]] = {}
        bps = Fraction(policy.max_slippage_bps) if policy.max_slippage_bps is not None else Fraction(0)
        self._slip_mult = {sd: 1 + bps / 10_000 * int(sd) for sd in (Side.BUY, Side.SELL)}
        self._qty_memo: dict[int, Decimal] = {}
        self._bal_memo: dict[tuple[str, str, Decimal], tuple[int, int]] = {}
        # policy constants of the hot path (the policy is fixed for the router's life)
        self._smart = policy.strategy == "smart"
        self._haircut = policy.haircut_enabled
        self._w_latency, self._w_fill = policy.weights.latency, policy.weights.fill
        self._ck = policy.mixed_split == "cont_kukanov"

    # ------------------------------------------------------------------ learning inputs
    @property
    def book_age_from(self) -> Literal["ts_event", "ts_init"]:
        """The book timestamp book ages are measured from (see the class docstring)."""
        return self._book_age_from

    @property
    def venue_names(self) -> list[str]:
        return list(self._venues)

    def _state(self, venue: str) -> _VenueState:
        try:
            return self._venues[venue]
        except KeyError:
            raise ConfigError(f"venue {venue!r} is not configured", key="venues",
                              allowed=", ".join(self._venues)) from None

    def set_book(self, venue: str, book: L2Book) -> None:
        """Attach (or replace, after a resync) the book of ``venue``."""
        self._state(venue).book = book

    def on_book(self, venue: str, ts_ns: int | None = None) -> None:
        """Feed the venue's current top of book to its activity model (call after each update),
        at ``ts_ns`` (default: the book's ``book_age_from`` timestamp, on the router's clock)."""
        st = self._state(venue)
        book = st.book
        if book is None:
            return
        f = st.price_factor
        bb, ba = book.best_bid_ticks, book.best_ask_ticks
        ts = (book.ts_init if self._age_from_init else book.ts_event) if ts_ns is None else ts_ns
        bl = 0 if bb is None else book.bid_lots_at(bb)
        al = 0 if ba is None else book.ask_lots_at(ba)
        pb = None if bb is None else bb * f
        pa = None if ba is None else ba * f
        st.activity.on_top(ts, pb, bl, pa, al)
        q = st.outflow
        if q is not None:   # in common lots, as the split's quantities
            lf = st.lot_factor
            q.on_top(ts, pb, bl * lf, pa, al * lf)

    def record_outcome(self, venue: str, style: Literal["take", "post"], sent_lots: int, filled_lots: int) -> None:
        """A child order finished: ``filled_lots`` of ``sent_lots`` (an IOC's hit ratio for
        ``take``; a passive order's fill rate for ``post``). Updates the Beta estimators."""
        st = self._state(venue)
        (st.take_fill if style == "take" else st.post_fill).record(sent_lots, filled_lots)

    def record_reject(self, venue: str) -> None:
        self._state(venue).health.record_reject(self.clock.now_ns())

    def record_timeout(self, venue: str) -> None:
        self._state(venue).health.record_timeout(self.clock.now_ns())

    def record_ack(self, venue: str, rtt_ns: int | None = None) -> None:
        """An order was acknowledged: closes the breaker; ``rtt_ns`` (measured round trip) updates
        the venue's latency estimate (EWMA, weight 0.2), replacing the configured one."""
        st = self._state(venue)
        st.health.record_success(self.clock.now_ns())
        if rtt_ns is not None and rtt_ns >= 0:
            m = st.measured_rtt_ns
            st.measured_rtt_ns = float(rtt_ns) if m is None else 0.8 * m + 0.2 * rtt_ns

    def health(self, venue: str) -> VenueHealth:
        return self._state(venue).health

    def fill_estimators(self, venue: str) -> tuple[BetaFill, BetaFill]:
        st = self._state(venue)
        return st.take_fill, st.post_fill

    # ------------------------------------------------------------------ the decision
    def route(self, request: RouteRequest) -> RoutingDecision:
        """Score the venues and allocate ``request``; sends nothing. O(V + L log V) for the sweep.

        The per-venue factor record (``VenueScore.factors``) is captured as plain numbers here and
        assembled into its nested dict when first read (``to_dict()``, the CLI table)."""
        policy = self.policy
        if request.symbol != policy.symbol:
            raise InstrumentError(f"router for {policy.symbol!r} cannot route {request.symbol!r}")
        now = self.clock.now_ns()
        grid = self.grid
        side = request.side
        want = self._want_memo.get(request.quantity)
        if want is None:
            # exact rational division (Decimal division rounds to 28 digits: an off-lot quantity
            # could look whole, a limit could round through itself); memoised, off the hot path
            want_exact = exact_ratio(request.quantity, grid.lot_size)
            if want_exact.denominator != 1:
                raise InstrumentError(f"{request.symbol}: quantity {request.quantity} is not a multiple of the "
                                      f"common lot {grid.lot_size}")
            want = int(want_exact)
            _memo(self._want_memo, request.quantity, want)
        limit_common: int | None = None
        if request.limit_price is not None:
            lkey = (request.limit_price, side)
            limit_common = self._limit_memo.get(lkey)
            if limit_common is None:
                q = exact_ratio(request.limit_price, grid.tick_size)
                limit_common = math.floor(q) if side is Side.BUY else math.ceil(q)
                _memo(self._limit_memo, lkey, limit_common)

        style = request.style
        # UnlimitedCapacity always answers None: its two calls per venue are skipped (exact type
        # only, a subclass may override them)
        capacity = None if type(self.capacity) is UnlimitedCapacity else self.capacity
        evaluate = self._evaluate
        probes = self._probe_evals
        if probes:   # left over by a decision that raised
            probes.clear()
        evals = [evaluate(name, st, side, now, style, capacity) for name, st in self._venues.items()]
        live = [e for e in evals if e.excluded is None]
        explanation: _Explain = []
        split: dict[str, Any] | None = None
        allocations: list[Allocation] = []
        residual = want
        reason: str | None = None
        ref: int | None = None
        if not live:
            reason = "no eligible venue: " + "; ".join(f"{e.name}: {e.excluded}" for e in evals)
        else:
            # best raw opposite price across the eligible venues, in common ticks
            pcs = [e.pc for e in live if e.pc is not None]
            ref = (min(pcs) if side is Side.BUY else max(pcs)) if pcs else None
            bound = limit_common
            slip_stop: str | None = None
            if policy.max_slippage_bps is not None and ref is not None and style != "post":
                skey = (ref, side)
                memo = self._slip_memo.get(skey)
                if memo is None:
                    b = ref * self._slip_mult[side]   # exact: 1 +/- bps / 10,000 as a Fraction
                    slip = math.floor(b) if side is Side.BUY else math.ceil(b)
                    best = "best ask" if side is Side.BUY else "best bid"
                    memo = (slip, f"slippage bound {grid.price(slip)} ({policy.max_slippage_bps} bps from "
                                  f"best {grid.price(ref)})",
                            f"slippage bound {grid.price(slip)} (max_slippage_bps {policy.max_slippage_bps} "
                            f"from the {best} {grid.price(ref)})")
                    _memo(self._slip_memo, skey, memo)
                slip, text, slip_stop = memo
                bound = slip if bound is None else (min(bound, slip) if side is Side.BUY else max(bound, slip))
                explanation.append(text)
            targets: dict[str, int] | None = None
            if style == "mixed" and self._ck:
                take_want, split, targets = self._ck_split(live, side, want, limit_common, ref, request.urgency,
                                                           now)
            else:
                take_want = want if style == "take" else (
                    0 if style == "post" else _urgency_lots(want, request.urgency))
            take_reason: str | None = None
            if take_want:
                # a stop at the bound is the slippage bound's when it is tighter than the limit (the
                # residual reason then names the bound, the key and the reference: slip_stop)
                if bound is not None and bound != limit_common:
                    at_bound = "slippage bound"
                else:
                    at_bound, slip_stop = "limit price", None
                take_allocs, taken, take_reason = self._take(live, side, take_want, bound, explanation, at_bound,
                                                             slip_stop)
                allocations.extend(take_allocs)
                residual -= taken
            post_want = want - take_want if style == "mixed" else (want if style == "post" else 0)
            if style == "mixed":
                post_want = residual
                explanation.insert(0, (_mixed_summary, self, request.urgency, take_want, post_want,
                                       post_want - (want - take_want), split))
            post_reason: str | None = None
            if post_want:
                post_allocs, posted, post_reason = self._post(live, side, post_want, limit_common, ref, explanation,
                                                              targets)
                allocations.extend(post_allocs)
                residual -= posted
            if residual:
                reason = post_reason if post_want else take_reason
                if post_want and take_reason and post_reason and take_reason.startswith(_TAKE_STOPS):
                    # mixed, both parts short: the take's shortfall went to the post, which left the
                    # residual; both say why ("take incomplete (...); post incomplete (...)"). A take
                    # whose only shortfall is slices dropped for venue minimums was posted whole:
                    # the post's reason alone is the residual's, as before
                    reason = f"{take_reason}; {post_reason}"
                reason = reason or take_reason or "unplaced"
        if probes:
            # half-open breakers: an order placed on such a venue is its one probe (the others
            # decide without it until the probe's outcome, or until it expires)
            placed = {a.venue for a in allocations}
            for e in probes:
                if e.name in placed:
                    e.st.health.start_probe(now)
                    e.note("circuit breaker half-open: this order is the probe")
            probes.clear()
        # the id is taken only by a decision made: a request that raised leaves no gap in the ids
        self._counter += 1
        d = RoutingDecision._captured(self, self._counter, now, request, evals, allocations, residual,
                                      reason if residual else None, explanation, ref)
        if split is not None:
            d._split = split
        if residual:
            log.info("decision %s %s %s: residual %s (%s)", d.decision_id, request.symbol, side.name,
                     d.residual_quantity, reason)
        return d

    def _quantity(self, common_lots: int) -> Decimal:
        """``grid.quantity`` memoised (it formats a Decimal)."""
        q = self._qty_memo.get(common_lots)
        if q is None:
            q = self.grid.quantity(common_lots)
            _memo(self._qty_memo, common_lots, q)
        return q

    # ------------------------------------------------------------------ per-venue factors
    def _evaluate(self, name: str, st: _VenueState, side: Side, now: int, style: str,
                  capacity: CapacityProvider | None) -> _Eval:
        e = _Eval()  # no __init__: the attributes are set here (a Python-level __init__ costs a call)
        e.name = name
        e.st = st
        cfg = st.cfg
        book = st.book
        inst = st.instrument
        hs = st.health
        opened = hs.opened_at_ns
        breaker_open = False
        half_open = False
        if opened is None:
            state = _CLOSED
        elif now - opened >= hs.cooldown_ns:
            state = _HALF_OPEN
            half_open = True
        else:
            state = _OPEN
            breaker_open = True
        e.health = (state, hs.rejects, hs.timeouts, hs.consecutive_failures)
        if not cfg.enabled:
            e.excluded = "disabled in config"
            return e
        if inst is None:
            e.excluded = f"no {self.policy.symbol} instrument on this venue"
            return e
        if book is None:
            e.excluded = "no order book"
            return e
        policy = self.policy
        # book age on the router's own clock: the local receive time for live books (the venue's
        # event time is on the venue's clock, skewed), exchange time in simulation (see __init__)
        age_ns = now - (book.ts_init if self._age_from_init else book.ts_event)
        e.stage = 1
        e.age_ns = age_ns
        needs_resync = book.needs_resync
        crossed = book.crossed
        e.book_flags = (needs_resync, crossed, book.stat_gaps)
        if needs_resync:
            e.excluded = "book resyncing after a sequence gap"
        elif crossed:
            e.excluded = f"book crossed (bid {book.best_bid_ticks} >= ask {book.best_ask_ticks} ticks)"
        elif age_ns > st.max_age_ns:
            e.excluded = (f"book stale: last update {age_ns / NS_PER_MS:.0f} ms ago "
                          f"> max_book_age_ms {policy.max_book_age_ms:g}")
        elif breaker_open:
            e.excluded = f"circuit breaker open ({hs.consecutive_failures} consecutive failures)"
        elif half_open:
            if hs.probe_in_flight(now):
                e.excluded = "circuit breaker half-open: probe in flight"
            else:
                # may carry the probe: route() marks it sent if the decision places an order here,
                # and _post() keeps a mixed decision to one order on this venue
                e.probe = True
                self._probe_evals.append(e)
        if e.excluded:
            return e
        # latency (scoring.latency_haircut, inlined: same float operations, no object)
        m = st.measured_rtt_ns
        rtt = int(m) if m is not None else st.rtt_ns
        if side is Side.BUY:
            opp, same = book.best_ask_ticks, book.best_bid_ticks
        else:
            opp, same = book.best_bid_ticks, book.best_ask_ticks
        e.opp = opp
        if opp is not None:
            pc = e.pc = opp * st.price_factor
            ref_px = pc
        else:
            e.pc = None
            ref_px = (same or 0) * st.price_factor
        rate, vol = st.activity.rate_and_volatility(side, now)
        age_s = (age_ns if age_ns > 0 else 0) / NS_PER_S
        rtt_s = (rtt if rtt > 0 else 0) / NS_PER_S
        delay = age_s + rtt_s
        p_gone = 1.0 - _exp(-rate * delay)
        move = vol * _sqrt(delay)
        cost = p_gone * move / ref_px * 1e4 if ref_px > 0 else 0.0
        e.lat = (age_s, rtt_s, delay, rate, vol, move, p_gone, cost)
        e.delay_s = delay
        e.stage = 2
        max_latency_ms = policy.max_latency_ms
        if max_latency_ms is not None and delay * 1e3 > max_latency_ms:
            e.excluded = f"expected delay {delay * 1e3:.1f} ms > max_latency_ms {policy.max_latency_ms:g}"
            return e
        tf, pf_ = st.take_fill, st.post_fill
        take_mean = tf.alpha / (tf.alpha + tf.beta)  # BetaFill.mean, inlined
        post_mean = pf_.alpha / (pf_.alpha + pf_.beta)
        e.fill = (take_mean, post_mean, tf.orders, pf_.orders, take_mean if style == "take" else post_mean)
        e.cap_lots = st.max_lots
        if side is Side.SELL and st.spot:
            asset = inst.base
        else:
            asset = inst.quote
        e.asset = asset
        if capacity is None:
            e.headroom = e.bal = None
            e.stage = 4
        else:
            headroom = capacity.order_headroom(name)
            e.headroom = headroom
            e.stage = 3
            if headroom is not None and headroom <= 0:
                e.excluded = "rate limit: no order headroom"
                return e
            bal = capacity.available_balance(name, asset)
            e.bal = bal
            e.stage = 4
            if bal is not None:
                # the balance in lots (base asset) or as a budget in tick-lots x 1e8 (quote asset):
                # Decimal arithmetic, memoised per (venue, asset, balance) as balances change only
                # on fills and transfers
                bkey = (name, asset, bal)
                conv = self._bal_memo.get(bkey)
                if conv is None:
                    conv = _balance_limit(inst, asset, bal)
                    _memo(self._bal_memo, bkey, conv)
                kind, n = conv
                if kind == 3:
                    e.excluded = f"available {asset} balance {bal!s} is not a finite number"
                    log.warning("venue %s: capacity provider answered %r for the %s balance; venue excluded",
                                name, bal, asset)
                    return e
                # a derivative position: lots that only reduce it need no margin (the provider's
                # optional reducible_lots); the venue gets whichever is larger, those lots alone
                # or what the margin affords at the best opposite price
                reducible = 0
                if not st.spot:
                    red = getattr(capacity, "reducible_lots", None)
                    if red is not None:
                        reducible = red(name, side) or 0
                        e.reducible = reducible
                if kind == 0 and not reducible:
                    e.excluded = f"no available {asset} balance"
                    return e
                if kind == 1:
                    e.cap_lots = n if e.cap_lots < 0 else min(e.cap_lots, n)
                elif reducible:
                    if kind == 0 or opp is None:
                        e.cap_lots = reducible if e.cap_lots < 0 else min(e.cap_lots, reducible)
                        e.note(f"{reducible} lots reduce the open position: capped at them, no margin needed")
                    else:
                        # the reducing lots need no margin, the rest opens a position on the margin:
                        # the budget is raised by the reducing lots' cost at the best opposite price
                        # (a buy's deeper levels cost more, so this never affords more than the sum)
                        e.budget = n + reducible * opp * st.cost_mult
                        e.note(f"{reducible} lots reduce the open position (no margin needed); the margin "
                               f"affords {n // (opp * st.cost_mult)} more at the best price")
                else:
                    e.budget = n
        if opp is None and (style == "take" or same is None):
            e.excluded = f"no liquidity on the {'ask' if side is Side.BUY else 'bid'} side"
        elif style != "post":
            # the venue's sweep parameters, while the numbers are at hand (fastest's venue rank and
            # the caps of dropped slices are applied by _sweep_inputs)
            buy = side is Side.BUY
            if self._smart:
                # the smart penalty, as _venue_score computes it
                adj = st.fee_taker_e8 + int((self._w_latency * cost + self._w_fill * ((1.0 - take_mean)
                                                                                     * policy.miss_cost_bps))
                                            * 10_000)
                # a sell's net proceeds multiplier stays positive: at a penalty of 100 % or more a
                # negative one would reverse the price order (lowest bids first); at 1 such venues
                # rank after those whose multiplier stays positive, among themselves by raw price
                km = FEE_SCALE + adj if buy else max(1, FEE_SCALE - adj)
            else:
                km = st.key_buy if buy else st.key_sell
            cap = e.cap_lots
            budget = e.budget
            if not buy and budget >= 0 and opp:
                # sell with a quote-currency margin budget (perpetuals): cap lots at the best bid,
                # conservative because deeper bids are lower
                lots_cap = budget // (opp * st.cost_mult)
                cap = lots_cap if cap < 0 else min(cap, lots_cap)
            e.params = (st.price_factor, st.lot_factor, km, st.cost_mult, cap, budget if buy else NO_LIMIT, 0,
                        p_gone if self._haircut else 0.0, move if move > 1.0 else 1.0)
        return e

    # ------------------------------------------------------------------ marketable
    def _sweep_inputs(self, live: list[_Eval], dropped: set[str]) -> tuple[list[L2Book], list[VenueParams]]:
        """Each venue's book and fee/latency-adjusted sweep parameters (prepared by _evaluate), with
        fastest's venue rank and no lots for the venues whose slice was dropped."""
        books: list[L2Book] = []
        params: list[VenueParams] = []
        for e in live:
            assert e.st.book is not None
            books.append(e.st.book)
            params.append(e.params)
        fastest = self.policy.strategy == "fastest"
        if dropped or fastest:
            # venues with the same expected delay share a rank: the price key decides between them
            # ("delay first, then price"; a tie went to the venue configured first)
            tiers = {d: i for i, d in enumerate(sorted({e.delay_s for e in live}))} if fastest else {}
            rank = {e.name: tiers[e.delay_s] for e in live} if fastest else {}
            for j, e in enumerate(live):
                pf, lf, km, cm, cap, budget, _prio, pg, mt = params[j]
                params[j] = (pf, lf, km, cm, 0 if e.name in dropped else cap, budget,
                             rank[e.name] * _PRIORITY_STEP if fastest else 0, pg, mt)
        return books, params

    def _take(self, live: list[_Eval], side: Side, want: int, bound: int | None,
              explanation: _Explain, at_bound: str = "limit price",
              bound_text: str | None = None) -> tuple[list[Allocation], int, str | None]:
        """Sweep ``want`` common lots within ``bound``. ``at_bound`` is the venues' ``take_stop``
        label of a stop at the bound (``limit price`` or ``slippage bound``), ``bound_text`` the
        residual reason's wording of it when it is not the order's own limit (the slippage bound
        with its price, ``max_slippage_bps`` and the reference price)."""
        dropped: set[str] = set()
        while True:
            books, params = self._sweep_inputs(live, dropped)
            res: SweepResult = sweep_levels(side, None, None, books, params, want, bound)
            bad = None
            for e, lots, worst in zip(live, res.lots, res.worst, strict=True):
                if lots:
                    why = _order_problem(e.st, worst, lots)
                    if why:
                        bad = (e, why)
                        break
            if bad is None:
                break
            e, why = bad
            dropped.add(e.name)
            e.note(f"take slice dropped and re-offered: {why}")
            explanation.append(f"{e.name}: slice dropped ({why}), re-offered to the other venues")
        allocs: list[Allocation] = []
        for e, lots, worst, notional, stop in zip(live, res.lots, res.worst, res.notional, res.stops, strict=True):
            if lots:
                allocs.append(Allocation(e.name, lots, worst, "take", _LIMIT, _IOC, instrument=e.st.instrument))
                e.take_lots = lots
                e.take_worst = worst
                e.take_notional = notional
            if stop == "limit price":
                stop = at_bound   # the kernel has one bound: the limit, or the slippage bound if tighter
            if stop and stop != "lot size":
                e.take_stop = stop
        reason = None
        filled = res.filled_common_lots
        if res.remaining_common_lots:
            # a dropped venue's zero cap is not a cap or balance stop: it is named after, as dropped
            at_text = bound_text or at_bound
            stops = [f"{e.name}: {_stop_text(e, at_text if t == 'limit price' else t, sweep=True)}"
                     for e, t in zip(live, res.stops, strict=True) if t and e.name not in dropped]
            reason = "take incomplete (" + "; ".join(stops) + ")" if stops else "take incomplete"
            if dropped:
                reason += "; slices below venue minimums dropped: " + ", ".join(sorted(dropped))
        explanation.append((_take_summary, self, filled, want, len(allocs), self.policy.strategy))
        return allocs, filled, reason

    # ------------------------------------------------------------------ mixed
    def _ck_split(self, live: list[_Eval], side: Side, want: int, limit_common: int | None, ref: int | None,
                  urgency: float, now: int) -> tuple[int, dict[str, Any], dict[str, int] | None]:
        """``(common lots to take now, split record, common lots to post per venue)`` of a
        ``mixed`` order by Cont and Kukanov's optimum across every venue the passive part could
        rest on, without overbooking (:func:`router.cont_kukanov.no_overbooking_split`: the
        router's posts never add up to more than the order), in bps of the reference price:
        half-spread ``h`` of the consolidated book, taker fee ``f`` of the best-priced venue,
        per venue the rebate ``r_k`` = minus its maker fee, queue ahead ``Q_k`` = its displayed
        size at our price and better and the outflow distribution = the empirical one of its best queue over
        the last windows of ``horizon_ms`` (:class:`QueueOutflow`; a venue whose best price is
        behind the others' shows it there, in fewer fills); ``lambda_u = miss_cost_bps + h + f``,
        ``lambda_o = overfill_cost_bps + h``. A venue with fewer than ``min_samples``
        windows is left out (said so in ``skipped``). Falls back to ``floor(urgency x
        quantity)`` (saying why) when no venue is left, or when no venue can post."""
        from router.cont_kukanov import empirical_ppf, no_overbooking_limits, quantile_level

        ck = self.policy.cont_kukanov

        def fallback(why: str) -> tuple[int, dict[str, Any], None]:
            return _urgency_lots(want, urgency), {"method": "urgency", "urgency": urgency, "fallback": why}, None

        cands = self._post_candidates(live, side, want, limit_common, ref)
        if not cands or ref is None:
            return fallback("no venue to post on" if ref is not None else "no opposite price to take")
        sgn = int(side)
        same: list[int] = []   # each venue's best price on our side, in common ticks
        for x in live:
            b = x.st.book
            bp = None if b is None else (b.best_bid_ticks if side is Side.BUY else b.best_ask_ticks)
            if bp is not None:
                same.append(bp * x.st.price_factor)
        h = 0.0
        if same:   # half the consolidated spread
            h = max(0.0, sgn * (ref - (max(same) if side is Side.BUY else min(same))) / 2 / ref * 1e4)
        f = min(x.st.taker_bps for x in live if x.pc == ref)
        lam_u = self.policy.miss_cost_bps + h + f
        lam_o = ck.overfill_cost_bps + h
        inputs: list[tuple[float, float, list[int]]] = []   # (Q_k, r_k, sorted outflow samples) per venue
        used: list[_Eval] = []
        skipped: dict[str, str] = {}
        for _score, _i, e, _px in cands:
            outflow = e.st.outflow
            assert outflow is not None and e.passive is not None
            samples = outflow.samples(side, now)
            if len(samples) < ck.min_samples:
                skipped[e.name] = f"{len(samples)} of {ck.min_samples} outflow windows seen on {e.name}"
                continue
            r = -e.st.maker_bps
            if lam_o <= h + r:
                # the paper's condition for an optimum (it would overbook without bound); the
                # router's split never overbooks, but a rebate that large says the fees are wrong
                skipped[e.name] = (f"{e.name}: rebate {r:.4g} bps + h {h:.4g} reaches lambda_o {lam_o:.4g} "
                                   "(raise cont_kukanov.overfill_cost_bps)")
                continue
            samples.sort()
            # Q_k: everything resting at our price and better (more than passive.queue_ahead when a
            # limit keeps the post behind the venue's best quote: the outflow counts from the best)
            book = e.st.book
            assert book is not None
            ahead = book.lots_available(Side.SELL if side is Side.BUY else Side.BUY, e.passive[0])
            inputs.append((ahead * e.st.lot_factor, r, samples))
            used.append(e)
        if not inputs:
            return fallback("; ".join(skipped.values()))
        _market, limits, _own, binds, _slope = no_overbooking_limits(float(want), h, f, lam_u, inputs)
        grid = self.grid
        targets: dict[str, int] = {}
        per_venue: dict[str, dict[str, Any]] = {}
        for e, (q_ahead, r, xs), lim in zip(used, inputs, limits, strict=True):
            lf = e.st.lot_factor
            lots = int(lim) // lf * lf   # whole venue lots, in common lots
            if lots:
                targets[e.name] = lots
            n = len(xs)
            c = quantile_level(h, f, r, lam_u)
            quantile = empirical_ppf(xs, min(max(c, 0.0), 1.0)) if c == c else None
            per_venue[e.name] = {
                "samples": n, "queue_ahead": grid.quantity(int(q_ahead)), "rebate_bps": r,
                "quantile_level": c if c == c else None,
                "outflow_quantile": None if quantile is None else grid.quantity(int(quantile)),
                "outflow_mean": grid.quantity(sum(xs) // n),
                "fill_probability": (n - bisect_right(xs, q_ahead + lim)) / n,
                "post": self._quantity(lots)}
        # the split's own total is posted: what the venues' lot sizes round off their targets is
        # posted by passive score after them (``_post``), not taken
        post = min(want, round(sum(limits)))
        take = want - post
        record: dict[str, Any] = {
            "method": "cont_kukanov", "horizon_ms": ck.horizon_ms, "half_spread_bps": h, "taker_fee_bps": f,
            "lambda_under_bps": lam_u, "lambda_over_bps": lam_o, "venues": per_venue,
            "order_binds": binds, "take": self._quantity(take), "post": self._quantity(post),
            "market_fraction": take / want}
        if skipped:
            record["skipped"] = skipped
        return take, record, targets

    # ------------------------------------------------------------------ passive
    def _post_candidates(self, live: list[_Eval], side: Side, want: int, limit_common: int | None,
                         ref: int | None) -> list[tuple[float, int, _Eval, int]]:
        """The venues a passive order of ``want`` common lots could rest on, best passive score
        first: ``(score, venue index, record, posting price in venue ticks)``; each record's
        ``passive`` factor numbers are set."""
        policy = self.policy
        w = policy.weights
        grid = self.grid
        sgn = int(side)
        cands: list[tuple[float, int, _Eval, int]] = []
        for idx, e in enumerate(live):
            st = e.st
            book = st.book
            inst = st.instrument
            assert book is not None and inst is not None
            pf = st.price_factor
            same = book.best_bid_ticks if side is Side.BUY else book.best_ask_ticks
            opp = book.best_ask_ticks if side is Side.BUY else book.best_bid_ticks
            if same is not None:
                px = same
            elif opp is not None:
                px = opp - sgn
            else:
                e.note("post: no reference price")
                continue
            if limit_common is not None:
                lim = grid.to_venue_price(e.name, limit_common, side)
                px = min(px, lim) if side is Side.BUY else max(px, lim)
            if opp is not None:
                px = min(px, opp - 1) if side is Side.BUY else max(px, opp + 1)
            if px <= 0:
                e.note("post: no valid price")
                continue
            ahead = book.bid_lots_at(px) if side is Side.BUY else book.ask_lots_at(px)
            ahead_c = ahead * grid.lot_factor[e.name]
            maker_bps = st.fee_maker_e8 / 10_000
            p_fill = st.post_fill.mean
            queue_frac = ahead_c / (ahead_c + want)
            rel = sgn * (px * pf - ref) / ref * 1e4 if ref else 0.0
            s = policy.strategy
            if s == "best_price":
                score = rel
            elif s == "lowest_cost":
                score = rel + maker_bps
            elif s == "fastest":
                score = e.delay_s * 1e3
            else:
                score = rel + maker_bps + (w.queue * queue_frac + w.fill * (1.0 - p_fill)) * policy.miss_cost_bps
            # the numbers only: the factor dict (Decimal price and queue) is built when read
            e.passive = (px, maker_bps, ahead, queue_frac, p_fill, rel, score)
            cands.append((score, idx, e, px))
        cands.sort()  # by score, then venue order (the indexes are unique: the records are never compared)
        return cands

    def _post(self, live: list[_Eval], side: Side, want: int, limit_common: int | None, ref: int | None,
              explanation: _Explain, targets: dict[str, int] | None = None) -> tuple[list[Allocation], int, str | None]:
        """Post ``want`` common lots on the venues best passive score first. With ``targets``
        (common lots per venue, the Cont-Kukanov split) each named venue first gets up to its
        target, and what is left (the take's shortfall, a target below a venue's minimum, lot
        rounding) then goes by passive score as without targets, one order per venue."""
        policy = self.policy
        grid = self.grid
        cands = self._post_candidates(live, side, want, limit_common, ref)
        allocs: list[Allocation] = []
        placed: dict[str, int] = {}   # venue -> index in allocs
        remaining = want
        notes: list[str] = []

        def note(text: str) -> None:
            if text not in notes:
                notes.append(text)

        for pass_targets in ((targets, None) if targets else (None,)):
            for _score, _i, e, px in cands:
                if remaining <= 0:
                    break
                if pass_targets is not None and e.name not in pass_targets:
                    continue
                if e.take_lots and e.probe:
                    # mixed: the take is the half-open breaker's one probe order on this venue
                    note(f"{e.name}: circuit breaker half-open: the take is its one probe order")
                    continue
                if e.take_lots and e.headroom is not None and e.headroom <= 1:
                    # mixed: the take on this venue used its last order the rate limiter lets through now
                    note(f"{e.name}: rate limit: no order headroom left after the take")
                    continue
                inst = e.st.instrument
                assert inst is not None
                lf = grid.lot_factor[e.name]
                at = placed.get(e.name)
                before = 0 if at is None else allocs[at].lots   # posted here by the targets' pass
                lots = remaining // lf
                stop = "below lot size"
                if pass_targets is not None and pass_targets[e.name] // lf < lots:
                    lots = pass_targets[e.name] // lf
                    stop = "target"
                cap, budget = e.cap_lots, e.budget
                taken = e.take_lots
                if taken:
                    # mixed: the take part already uses this venue's cap and funds (the venue locks the
                    # IOC's lots at its limit for a buy, at the best bid for a perpetual's sell margin)
                    if cap >= 0:
                        cap = max(0, cap - taken)
                    if budget >= 0:
                        price_at = (e.take_worst if side is Side.BUY else e.opp) or 0
                        budget = max(0, budget - taken * price_at * e.st.cost_mult)
                if cap >= 0 and cap - before < lots:
                    lots = max(0, cap - before)
                    stop = "venue cap/balance"
                if budget >= 0:
                    # funds for the post at the larger of the two fees: a limit order that crosses on
                    # arrival pays the taker fee, and venues that hold the fee with the order (the
                    # simulator: max(maker, taker)) refuse a post sized at the maker fee alone
                    afford = budget // (px * (FEE_SCALE + max(0, e.st.fee_maker_e8, e.st.fee_taker_e8))) - before
                    if afford < lots:
                        lots = max(0, afford)
                        stop = "balance"
                if lots <= 0:
                    if stop != "target":
                        note(f"{e.name}: {_stop_text(e, stop)}")
                    continue
                why = _order_problem(e.st, px, before + lots)
                if why:
                    if stop == "balance":   # what the funds afford is below the venue's minimum
                        why = f"{_stop_text(e, stop)}: affords {before + lots} lots, {why}"
                    note(f"{e.name}: {why}")
                    e.note(f"post slice skipped: {why}")
                    continue
                if at is None:
                    tif = TimeInForce.POST_ONLY if e.st.cfg.post_only else TimeInForce.GTC
                    placed[e.name] = len(allocs)
                    allocs.append(Allocation(e.name, lots, px, "post", _LIMIT, tif, instrument=inst))
                else:   # the targets' pass posted here already: one order with both parts
                    a = allocs[at]
                    allocs[at] = Allocation(e.name, before + lots, px, "post", _LIMIT, a.time_in_force,
                                            instrument=inst)
                remaining -= lots * lf
                if stop not in ("below lot size", "target") and remaining > 0:   # cut short by its cap or funds
                    note(f"{e.name}: {_stop_text(e, stop)}")
        explanation.append((_post_summary, self, want - remaining, want, [a.venue for a in allocs], policy.strategy))
        reason = None
        if remaining:
            if not notes:
                # every venue that could post did, and what is left is below each one's lot
                notes = [f"{a.venue}: below lot size" for a in allocs]
            reason = "post incomplete" + (" (" + "; ".join(notes) + ")" if notes else
                                          " (no venue with a valid posting price)")
        return allocs, want - remaining, reason
