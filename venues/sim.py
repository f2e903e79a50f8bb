"""A simulated exchange on virtual time, fed with replayed market data.

:class:`SimulatedVenue` implements the :class:`~venues.base.Venue` interface. Every async method
completes without suspending, so :func:`venues.base.run_now` drives it inside the discrete-event
simulation; requests and events travel on the :class:`~marketdata.clock.SimClock` as alerts.

Time line of one order (all latencies sampled from the venue's seeded ``random.Random``)::

    submit() at t0 --order-entry latency--> matching engine at t1 --ack latency--> handler at t2

The matching engine keeps its own :class:`~marketdata.book.L2Book` per instrument, built from the
feed the driver pushes in with :meth:`SimulatedVenue.on_market_event` at exchange time.

Matching rules (documented in docs/venues-sim.md):

* **Taking.** A marketable order walks the visible opposite side level by level, at those prices.
  Liquidity we took stays taken: per level the venue keeps the lots *consumed* by us, and the size
  available to our next order is ``displayed - consumed``. The consumed count of a level is reset
  when the feed sends an update for that level (a delta naming that price, or a snapshot), because
  from then on the displayed size is the market's own new truth. So two of our orders never consume
  the same displayed size. :meth:`SimulatedVenue.book` is the replayed book, never net of that.
* **Resting.** A resting order joins the queue behind the displayed size at its price less what we
  consumed there (``front`` = lots ahead of it); lots our own takers take at its price come off the
  queue ahead of it (never matching it), and the queue model splits a cancel over the lots left
  (not counting consumed lots as behind us). Trades printing at its price advance it (trade
  volume beyond the queue ahead fills it); a shrinking level advances it according to the
  :class:`QueueModel` (hftbacktest's probabilistic queue models: a cancel of ``chg`` lots happens
  ahead of us with probability ``1 - f(back) / (f(back) + f(front))``, ``f(x) = x**n`` "power" or
  ``log(1 + x)`` "log"; the deterministic model's expected share is kept exactly, to 2**-32 lot,
  and a print's reach beyond it is rounded to the nearest whole lot); level growth never advances
  it. A trade printing *through* its price, or available opposite liquidity at or through its
  price (the book moved through it), fills it at its own price as maker. Our own orders never match each other.
* Order types MARKET and LIMIT; time in force GTC, IOC, FOK (all-or-nothing against visible
  available liquidity), POST_ONLY (rejected if it would take), GTD (expires at ``expire_ts``).
  Remainders of IOC and MARKET orders, and FOK orders that cannot fill, end EXPIRED (Binance).
* Fees from the :class:`~venues.base.FeeSchedule` in bps of notional, in the quote currency, on
  every fill; negative is a rebate.
* Balances (base and quote, ``Decimal``) with funds locked by open orders; an order the account
  cannot pay for is REJECTED (``-2010`` "Account has insufficient balance for requested action.").
* Instrument rules and venue-side rate limits reject with Binance's codes and texts.
* Native icebergs (``SimVenueConfig.native_iceberg``, Binance spot's ``icebergQty``): a resting
  order with ``display_lots`` queues only a visible slice; a print at its price fills at most what
  is left of the slice, and a filled slice re-joins the back of the queue with a new one.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from fractions import Fraction
from typing import Literal

from marketdata.book import L2Book, SequenceRule
from marketdata.clock import NS_PER_SECOND, AlertHandle, SimClock
from marketdata.errors import ConfigError, InvariantError, UnknownOrderError
from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    Fill,
    Instrument,
    InstrumentKind,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    QuoteTick,
    Side,
    TimeInForce,
    TradeId,
    TradeTick,
    VenueId,
    VenueOrderId,
)
from venues.base import (
    ICEBERG_PARTS,
    ICEBERG_TIME_IN_FORCE,
    Balance,
    EventHandler,
    FeeSchedule,
    OrderStatusReport,
    Position,
    Venue,
    VenueCapabilities,
    VenueInfo,
    carried_display,
    iceberg_parts,
)
from venues.latency import LatencyModel

log = logging.getLogger(__name__)

__all__ = [
    "CODE_DUPLICATE",
    "CODE_FILTER",
    "CODE_INSUFFICIENT_BALANCE",
    "CODE_RATE_LIMIT",
    "CODE_UNKNOWN_ORDER",
    "LatencyModel",
    "QueueModel",
    "SimVenueConfig",
    "SimulatedVenue",
]

# Binance error codes and texts used by the simulated venue.
CODE_FILTER = "-1013"
CODE_RATE_LIMIT = "-1015"
CODE_INSUFFICIENT_BALANCE = "-2010"
CODE_DUPLICATE = "-2010"
CODE_UNKNOWN_ORDER = "-2011"
CODE_BAD_SYMBOL = "-1121"
CODE_UNSUPPORTED = "-1116"
CODE_GTD = "-1106"
CODE_ORDER_COMPOSITION = "-1014"
CODE_NEW_ORDER_REJECTED = "-2010"
TEXT_INSUFFICIENT = "Account has insufficient balance for requested action."
TEXT_POST_ONLY = "Order would immediately match and take."
TEXT_UNKNOWN_ORDER = "Unknown order sent."
TEXT_DUPLICATE = "Duplicate order sent."
TEXT_ICEBERG_COMBINATION = "Unsupported order combination."
TEXT_ICEBERG_QTY = "IcebergQty exceeds QTY."
TEXT_ICEBERG_PARTS = "Filter failure: ICEBERG_PARTS"

_FEE_QUANT = Decimal("0.00000001")
_NO_PRICE_LO = -(1 << 62)   # below any price in ticks
_NO_PRICE_HI = 1 << 62      # above any price in ticks
_BPS = Decimal(10_000)
# The queue ahead of a resting order is ``front + front_frac / _QUEUE_ONE`` lots: whole lots plus
# the fraction of a lot the deterministic queue model's expected shares leave (integer units of
# 2**-32 lot: exact under the whole-lot moves of trades and our takes, deterministic).
_QUEUE_ONE = 1 << 32
_QUEUE_HALF = 1 << 31
_QUEUE_INV = 1.0 / _QUEUE_ONE


@dataclass(frozen=True, slots=True)
class QueueModel:
    """How a shrinking price level moves our resting order forward (hftbacktest's ProbQueueModel).

    When a level at our price shrinks by ``chg`` lots that trades did not explain, with ``front``
    lots ahead of us and ``back = previous_level - front`` behind, the share of the cancel that
    happened *behind* us is ``p = f(back) / (f(back) + f(front))`` with ``f(x) = x**power``
    ("power") or ``log(1 + x)`` ("log"); "risk_averse" assumes every cancel was behind us
    (the queue ahead only shrinks when the level falls below it).

    ``stochastic=False`` moves ``front`` by the expectation (hftbacktest's rule:
    ``front - (1-p)*chg + min(back - p*chg, 0)``), not rounded: the venue keeps the queue ahead
    of each order to ``2**-32`` of a lot (``_SimOrder.front_frac``), so the expected shares of
    many cancels add up instead of each losing its fraction of a lot. ``stochastic=True`` draws,
    with the venue's seeded RNG, whether the whole cancel was ahead of us (probability ``1 - p``).
    Both are deterministic for a seed."""

    kind: Literal["power", "log", "risk_averse"] = "power"
    power: float = 2.0
    stochastic: bool = False

    def prob_behind(self, front: float, back: float) -> float:
        return self._split(front, back)[0]

    def _split(self, front: float, back: float) -> tuple[float, float]:
        """``(p, 1 - p)``, the second computed as ``f(front) / total`` (no ``1 - p`` rounding)."""
        if self.kind == "risk_averse":
            return 1.0, 0.0
        if self.kind == "log":
            fb, ff = math.log1p(back), math.log1p(front)
        else:
            fb, ff = float(back) ** self.power, float(front) ** self.power
        total = fb + ff
        return (fb / total, ff / total) if total > 0 else (1.0, 0.0)

    def front_after_cancel(self, front: float, prev_level: int, new_level: int, chg: int,
                           rng: random.Random) -> float:
        """Lots ahead of us (exact, possibly a fraction of a lot) after the level went
        ``prev_level -> new_level`` by ``chg`` cancelled lots; ``front`` may be fractional too.
        The result is in ``[0, new_level]``."""
        back = prev_level - front
        if back < 0:
            back = 0
        p, q = self._split(front, back)
        if self.stochastic:
            if rng.random() < 1.0 - p:
                est = front - chg
            else:
                est = front - max(0, chg - back)
        else:
            est = front - q * chg + min(back - p * chg, 0.0)
        return max(0.0, min(est, new_level))


@dataclass
class SimVenueConfig:
    """Everything that makes one simulated venue.

    ``balances`` are the starting free balances by asset. ``rate_limit_orders`` new orders (submits
    and replaces) per ``rate_limit_window_ns`` are enforced at the matching engine (``None``
    disables). ``market_data_latency`` is what the driver applies between the exchange and our
    strategy; ``order_entry_latency`` between ``submit()`` and the matching engine;
    ``ack_latency`` between the matching engine and our event handler."""

    venue: VenueId
    instruments: list[Instrument]
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    balances: dict[str, Decimal] = field(default_factory=dict)
    market_data_latency: LatencyModel = field(default_factory=lambda: LatencyModel.constant(0))
    order_entry_latency: LatencyModel = field(default_factory=lambda: LatencyModel.constant(0))
    ack_latency: LatencyModel = field(default_factory=lambda: LatencyModel.constant(0))
    rate_limit_orders: int | None = 50
    rate_limit_window_ns: int = 10 * NS_PER_SECOND
    native_modify: bool = True
    queue_model: QueueModel = field(default_factory=QueueModel)
    sequence_rule: SequenceRule = "none"
    seed: int = 0
    leverage: Decimal = Decimal(1)
    """Initial-margin leverage of the derivative (perpetual) instruments: an opening lot locks
    ``notional / leverage`` of the quote currency as position margin (spot ignores it)."""
    native_iceberg: bool = False
    """Accept orders with ``display_lots`` as native icebergs (Binance spot); when False they are
    rejected (``-1116``)."""
    iceberg_parts: int = ICEBERG_PARTS
    """Binance's ``ICEBERG_PARTS`` filter: at most ``ceil(lots / display_lots)`` parts."""

    def __post_init__(self) -> None:
        if not self.instruments:
            raise ConfigError(f"simulated venue {self.venue}: needs at least one instrument", key="instruments")
        for inst in self.instruments:
            if inst.venue != self.venue:
                raise ConfigError(f"instrument {inst.key} does not belong to venue {self.venue}",
                                  key="instruments")
        if self.rate_limit_orders is not None and self.rate_limit_orders <= 0:
            raise ConfigError(f"rate_limit_orders {self.rate_limit_orders} must be > 0 or None",
                              key="rate_limit_orders")
        if self.rate_limit_window_ns <= 0:
            raise ConfigError("rate_limit_window_ns must be > 0", key="rate_limit_window_ns")
        if not isinstance(self.iceberg_parts, int) or isinstance(self.iceberg_parts, bool) or self.iceberg_parts < 1:
            raise ConfigError(f"iceberg_parts {self.iceberg_parts!r} must be an int >= 1", key="iceberg_parts")
        if not isinstance(self.leverage, Decimal) or not Decimal(1) <= self.leverage <= Decimal(125):
            raise ConfigError(f"leverage {self.leverage!r} must be a Decimal in [1, 125]", key="leverage",
                              allowed="1 to 125")
        for asset, amount in self.balances.items():
            if not isinstance(amount, Decimal) or amount < 0:
                raise ConfigError(f"balance of {asset} must be a Decimal >= 0, got {amount!r}", key="balances")


class _SimOrder:
    """Matching-engine state of one of our orders."""

    __slots__ = ("display", "expire_handle", "filled", "front", "front_frac", "inst", "lock_asset", "locked", "lots",
                 "notional_ticks", "open_lots", "order", "price_ticks", "side", "status", "traded_since",
                 "ts_event", "venue_order_id", "visible")

    def __init__(self, order: Order, inst: Instrument, venue_order_id: VenueOrderId) -> None:
        self.order = order
        self.inst = inst
        self.venue_order_id = venue_order_id
        self.side = order.side
        self.lots = order.lots
        self.price_ticks = order.price_ticks
        self.filled = 0
        self.notional_ticks = 0
        self.status = OrderStatus.NEW
        self.front = 0        # whole lots ahead of it in its price queue
        self.front_frac = 0   # and the fraction of a lot beyond them, in 1/_QUEUE_ONE lot (< _QUEUE_ONE)
        self.traded_since = 0
        self.lock_asset = ""
        self.locked = Decimal(0)
        self.open_lots = 0   # derivatives: the lots ``locked`` pays margin for (the rest reduce a position)
        self.expire_handle: AlertHandle | None = None
        self.ts_event = 0
        self.display = order.display_lots or 0   # iceberg: lots of each visible slice (0: not one)
        self.visible = 0   # a resting iceberg: lots left of its visible slice (always >= 1); else 0

    @property
    def remaining(self) -> int:
        return self.lots - self.filled


def _pending_in(pend: dict[int, int], lo: int, hi: int) -> list[int]:
    """The pending prices in ``[lo, hi]``: found by probing each tick (ascending) or by one pass
    over the pending levels (their order), whichever is shorter, so the deep levels that only
    accumulate are not walked for a narrow range."""
    if hi - lo < len(pend):
        return list(filter(pend.__contains__, range(lo, hi + 1)))
    return [p for p in pend if lo <= p <= hi]


class _Market:
    """Per-instrument engine state: the book, consumed lots, our resting orders.

    Depth is applied lazily. Nobody reads the matching book between our order arrivals (a resting
    order needs only the level at its own price and whether the opposite side reaches it), so
    depth messages that continue the venue's update-id chain are not applied one by one: their
    levels are coalesced (the last write per price wins, as applying them in order would give) and
    applied as one message, with the same sequence check, when the book is next needed (an order,
    replace or post-only check arriving, the opposite side reaching one of our resting prices,
    :meth:`SimulatedVenue.book`). The consumed counts of the prices the pending messages named
    are reset at that flush (applying them one by one would have reset them on the way). The book
    is then exactly what applying every message would have made, and the venue sees, message by
    message, the level at each of our resting prices (:meth:`SimulatedVenue._on_deltas_lazy`).
    A message that does not continue the chain (gap, stale, snapshot, first delta after a
    snapshot) is applied on its own after the pending ones. Once the book object has been handed
    out by :meth:`SimulatedVenue.book` it is kept current on every message."""

    __slots__ = ("ask_orders", "bid_orders", "book", "chain_last", "consumed_ask", "consumed_bid", "idle", "inst",
                 "msg_hi_bid", "msg_lo_ask", "our_best_ask", "our_best_bid", "pend_asks", "pend_bids",
                 "pend_first", "pend_hi_bid", "pend_last", "pend_levels", "pend_lo_ask",
                 "rule", "shared", "steady")

    def __init__(self, inst: Instrument, rule: SequenceRule) -> None:
        self.inst = inst
        self.book = L2Book(inst.venue, inst.symbol, sequence_rule=rule)
        self.consumed_bid: dict[int, int] = {}
        self.consumed_ask: dict[int, int] = {}
        self.bid_orders: dict[int, list[_SimOrder]] = {}
        self.ask_orders: dict[int, list[_SimOrder]] = {}
        self.our_best_bid: int | None = None
        self.our_best_ask: int | None = None
        self.idle = True
        """No resting orders and nothing consumed: a depth message needs only ``L2Book.apply``."""
        self.rule = rule
        self.steady = False        # the book is in sync and past its first delta after a snapshot
        self.shared = False        # the book was handed out: apply every message at once
        self.chain_last = -1       # last update id the book has or will have after the pending apply
        self.pend_bids: dict[int, int] = {}
        self.pend_asks: dict[int, int] = {}
        self.pend_hi_bid = _NO_PRICE_LO   # >= every pending bid price
        self.pend_lo_ask = _NO_PRICE_HI   # <= every pending ask price
        self.msg_hi_bid = _NO_PRICE_LO    # highest bid / lowest ask price of the last coalesced message
        self.msg_lo_ask = _NO_PRICE_HI
        self.pend_first: BookDeltas | None = None
        self.pend_last: BookDeltas | None = None
        self.pend_levels = 0

    def continues(self, msg: BookDeltas) -> bool:
        """Whether ``msg`` may be coalesced: the book is steady and not handed out, and ``msg`` is a
        delta continuing the update-id chain (so applying it cannot fail or be stale)."""
        if not self.steady or msg.is_snapshot or self.shared:
            return False
        rule = self.rule
        if rule == "none":
            return True
        u = msg.last_update_id
        last = self.chain_last
        return u > last and (msg.prev_update_id == last if rule == "prev" else msg.first_update_id == last + 1)

    def pend(self, msg: BookDeltas) -> None:
        """Coalesce ``msg`` (which :meth:`continues` the chain) into the pending levels."""
        bids, asks = msg.bids, msg.asks
        if bids:
            self.pend_bids.update(bids)
            self.msg_hi_bid = hi = max(bids)[0]   # C-level over the message's levels
            if hi > self.pend_hi_bid:
                self.pend_hi_bid = hi
        else:
            self.msg_hi_bid = _NO_PRICE_LO
        if asks:
            self.pend_asks.update(asks)
            self.msg_lo_ask = lo = min(asks)[0]
            if lo < self.pend_lo_ask:
                self.pend_lo_ask = lo
        else:
            self.msg_lo_ask = _NO_PRICE_HI
        self.pend_levels += len(bids) + len(asks)
        if self.pend_first is None:
            self.pend_first = msg
        self.pend_last = msg
        u = msg.last_update_id
        if u >= 0:
            self.chain_last = u

    def apply_now(self, msg: BookDeltas) -> bool:
        """Apply one message at once (after any pending ones); returns ``L2Book.apply``'s result."""
        if self.pend_first is not None:
            self.flush()
        book = self.book
        before = book.last_update_id
        ok = book.apply(msg)
        if self.rule == "none":
            self.steady = not book.needs_resync
        elif msg.is_snapshot or not ok or book.needs_resync:
            self.steady = False
        elif book.last_update_id != before:   # a diff was applied: past the snapshot's first delta
            self.steady = True
        self.chain_last = book.last_update_id
        return ok

    def flush(self) -> None:
        """Apply the coalesced pending messages as one (same sequence check as each of them) and
        reset the consumed counts of the prices they named."""
        first, last = self.pend_first, self.pend_last
        if first is None or last is None:
            return
        pend_bids, pend_asks = self.pend_bids, self.pend_asks
        levels = self.pend_levels
        self.pend_bids = {}
        self.pend_asks = {}
        self.pend_hi_bid, self.pend_lo_ask = _NO_PRICE_LO, _NO_PRICE_HI
        self.pend_first = self.pend_last = None
        self.pend_levels = 0
        book = self.book
        merged = BookDeltas(first.venue, first.symbol, list(pend_bids.items()), list(pend_asks.items()),
                            last.ts_event, last.ts_init, False, first.first_update_id, self.chain_last,
                            first.prev_update_id)
        if not book.apply(merged):   # cannot happen: every message continued the chain
            raise InvariantError(f"{book.venue}:{book.symbol}: coalesced depth messages "
                                 f"{first.first_update_id}..{self.chain_last} did not apply")
        book.stat_updates += levels - len(pend_bids) - len(pend_asks)   # count the levels as sent
        for consumed, named in ((self.consumed_bid, pend_bids), (self.consumed_ask, pend_asks)):
            if consumed:
                for p in [p for p in consumed if p in named]:
                    del consumed[p]

    def refresh_best(self) -> None:
        self.our_best_bid = max(self.bid_orders) if self.bid_orders else None
        self.our_best_ask = min(self.ask_orders) if self.ask_orders else None
        self.refresh_idle()

    def refresh_idle(self) -> None:
        self.idle = not (self.bid_orders or self.ask_orders or self.consumed_bid or self.consumed_ask)

    def settle(self, book_side: Side, bound: int | None) -> None:
        """Apply now the pending levels of ``book_side`` (BUY = bids) at or better than ``bound``
        (all of that side when ``None``) and reset their consumed counts: from then on the book is
        exact at and beyond ``bound`` on that side (a taker walking there sees what applying every
        message would show). The rest stays pending for :meth:`flush`. Cost: the pending prices
        are found by probing each tick between ``bound`` and the most extreme pending price (kept
        per message with a C-level ``max``/``min``), or by one pass over the pending levels when
        that is shorter, so the deep levels that only accumulate are never walked."""
        if book_side is Side.BUY:
            pend, update, consumed = self.pend_bids, self.book.update_bid, self.consumed_bid
            if not pend:
                return
            hi = self.pend_hi_bid
            if bound is None:
                take = list(pend)
                self.pend_hi_bid = _NO_PRICE_LO
            elif hi < bound:
                return
            else:
                take = _pending_in(pend, bound, hi)
                self.pend_hi_bid = bound - 1
        else:
            pend, update, consumed = self.pend_asks, self.book.update_ask, self.consumed_ask
            if not pend:
                return
            lo = self.pend_lo_ask
            if bound is None:
                take = list(pend)
                self.pend_lo_ask = _NO_PRICE_HI
            elif lo > bound:
                return
            else:
                take = _pending_in(pend, lo, bound)
                self.pend_lo_ask = bound + 1
        pop = pend.pop
        for p in take:
            update(p, pop(p))
            if consumed:
                consumed.pop(p, None)

    def ready(self, taker: Side, limit_ticks: int | None, lots: int | None = None) -> None:
        """Make the book exact where a ``taker`` walks: the opposite side up to ``limit_ticks``
        or, without a limit, far enough to hold ``lots`` available lots (the whole side when
        ``lots`` is ``None``), applying only the pending levels there (:meth:`settle`)."""
        if taker is Side.BUY:
            book_side, pend, sign = Side.SELL, self.pend_asks, 1
        else:
            book_side, pend, sign = Side.BUY, self.pend_bids, -1
        if not pend:
            return
        if limit_ticks is not None:
            self.settle(book_side, limit_ticks)
            return
        book = self.book
        top = book.best_ask_ticks if sign > 0 else book.best_bid_ticks
        if lots is None or top is None:
            self.settle(book_side, None)
            return
        # Pending prices beyond the book's (stale) touch: the book has no level there, so their
        # pending lots are what is available; settle only as far as the walk needs.
        if sign > 0:
            lo = self.pend_lo_ask
            beyond = sorted(_pending_in(pend, lo, top - 1)) if lo < top else []
        else:
            hi = self.pend_hi_bid
            beyond = sorted(_pending_in(pend, top + 1, hi), reverse=True) if hi > top else []
        if beyond:
            seen = 0
            for p in beyond:   # best first
                seen += pend[p]
                if seen >= lots:
                    self.settle(book_side, p)
                    return
            self.settle(book_side, top - sign)
        step = 16
        while step <= 16 ** 3:   # widen the exact region until it holds ``lots``
            bound = top + sign * step
            self.settle(book_side, bound)
            seen = 0
            for _, avail in self._available(taker, bound):
                seen += avail
                if seen >= lots:
                    return
            step *= 16
        self.settle(book_side, None)

    def crosses(self, taker: Side, limit_ticks: int) -> bool:
        """Whether any available liquidity is at or through ``limit_ticks`` on the side a ``taker``
        takes from (as applying every message would leave it; only the pending levels there are
        applied)."""
        self.ready(taker, limit_ticks)
        return next(iter(self._available(taker, limit_ticks)), None) is not None

    def queue_at(self, side: Side, price_ticks: int) -> int:
        """Lots a new order at ``price_ticks`` on book side ``side`` queues behind: the displayed
        level as of the last message (pending ones included, no flush) less what we consumed there.
        A pending message naming the price has reset that consumption (its value is the truth)."""
        if side is Side.BUY:
            pend, levels, consumed = self.pend_bids, self.book._bids, self.consumed_bid
        else:
            pend, levels, consumed = self.pend_asks, self.book._asks, self.consumed_ask
        lots = pend.get(price_ticks)
        if lots is not None:
            return lots
        return max(0, levels.get(price_ticks, 0) - consumed.get(price_ticks, 0))

    def available(self, taker: Side, limit_ticks: int | None, lots: int | None = None) -> Iterable[tuple[int, int]]:
        """(price, available lots) on the side a ``taker`` takes from, best first, up to ``limit``;
        exact for a walk that stops within ``limit_ticks`` or after ``lots`` lots (:meth:`ready`)."""
        self.ready(taker, limit_ticks, lots)
        return self._available(taker, limit_ticks)

    def _available(self, taker: Side, limit_ticks: int | None) -> Iterator[tuple[int, int]]:
        """:meth:`available` on the book as it is. Reads the L2Book's documented layout (dict of
        levels + sorted price index) directly: this is the matching hot path."""
        book = self.book
        if taker is Side.BUY:
            levels, consumed = book._asks, self.consumed_ask
            for neg in reversed(book._ask_neg):
                p = -neg
                if limit_ticks is not None and p > limit_ticks:
                    return
                avail = levels[p] - consumed.get(p, 0)
                if avail > 0:
                    yield p, avail
        else:
            levels, consumed = book._bids, self.consumed_bid
            for p in reversed(book._bid_px):
                if limit_ticks is not None and p < limit_ticks:
                    return
                avail = levels[p] - consumed.get(p, 0)
                if avail > 0:
                    yield p, avail


class SimulatedVenue(Venue):
    """A simulated exchange for one or more instruments (see the module docstring for the rules).

    Construct with a :class:`SimVenueConfig` and the simulation's :class:`SimClock`; push market
    data with :meth:`on_market_event` (normally via :class:`venues.sim_driver.SimulationDriver`)."""

    def __init__(self, config: SimVenueConfig, clock: SimClock) -> None:
        self.config = config
        self.clock = clock
        tifs = frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.POST_ONLY,
                          TimeInForce.GTD})
        self.info = VenueInfo(
            venue=config.venue,
            instruments={i.symbol: i for i in config.instruments},
            capabilities=VenueCapabilities(order_types=frozenset({OrderType.MARKET, OrderType.LIMIT}),
                                           time_in_force=tifs, native_modify=config.native_modify,
                                           native_iceberg=config.native_iceberg),
            fees=config.fees,
        )
        self.rng = random.Random(config.seed)
        self._markets: dict[str, _Market] = {i.symbol: _Market(i, config.sequence_rule)
                                             for i in config.instruments}
        self._orders: dict[ClientOrderId, _SimOrder] = {}
        self._free: dict[str, Decimal] = {a: Decimal(v) for a, v in config.balances.items()}
        self._locked: dict[str, Decimal] = {a: Decimal(0) for a in config.balances}
        # orders sent and not yet at the matching engine: cid -> (asset, what it will lock), so a
        # router reading the balances in between does not spend the same funds twice
        self._transit: dict[ClientOrderId, tuple[str, Decimal]] = {}
        self._positions: dict[str, tuple[Decimal, Decimal]] = {}   # symbol -> (qty, cost in quote)
        # derivatives (perpetuals): margined in the quote currency; per symbol the signed position
        # in lots and the position margin it holds (part of ``_locked[quote]``)
        self._derivative = {i.symbol for i in config.instruments
                            if i.kind in (InstrumentKind.PERPETUAL, InstrumentKind.INVERSE_PERPETUAL)}
        self._leverage = config.leverage
        self._pos_lots: dict[str, int] = {}
        self._pos_margin: dict[str, Decimal] = {}
        self._live_derivative: dict[ClientOrderId, _SimOrder] = {}   # pruned lazily of finished orders
        self._handler: EventHandler | None = None
        self._order_ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._replace_ids = itertools.count(1)
        self._venue_id = config.venue
        self._rate_window: deque[int] = deque()
        self._last_delivery_ns = 0
        self._last_feed_ns = 0
        # market-data latency: its own seeded stream, drawn in vectorised blocks (one per market
        # event would otherwise be the feed's largest cost); order latencies use self.rng
        self._md_next = config.market_data_latency.stream(config.seed).__next__
        self._maker_bps = config.fees.maker_bps
        self._taker_bps = config.fees.taker_bps
        # the fee held with an order's funds: an order that can rest may pay either fee; an IOC, FOK
        # or market order only takes (the taker fee), a post-only order only makes (the maker fee)
        self._lock_buffer = 1 + max(self._maker_bps, self._taker_bps, Decimal(0)) / _BPS
        self._take_buffer = 1 + max(self._taker_bps, Decimal(0)) / _BPS
        self._make_buffer = 1 + max(self._maker_bps, Decimal(0)) / _BPS
        self.connected = False
        self.stat_market_events = 0
        self.stat_orders = 0
        self.stat_fills = 0
        self.stat_rejects = 0
        self.stat_ignored_events = 0

    # ------------------------------------------------------------------ market data (hot path)
    def book(self, symbol: str) -> L2Book:
        """The matching engine's book of ``symbol`` (exchange-time truth, no latency). From this
        call on, the book is kept current on every market event (no coalescing while idle)."""
        mkt = self._market(symbol)
        mkt.flush()
        mkt.shared = True
        return mkt.book

    def on_market_event(self, event: BookDeltas | TradeTick | QuoteTick) -> None:
        """Feed one market event (exchange time) to the matching engine.

        Cost when we have no orders and consumed nothing on that instrument: one ``L2Book.apply``
        plus a few attribute loads."""
        self.stat_market_events += 1
        tp = type(event)
        if tp is QuoteTick:
            # the engine's book comes from depth; quotes carry no extra information for matching
            return
        mkt = self._markets.get(event.symbol)
        if mkt is None or event.venue != self._venue_id:
            self.stat_ignored_events += 1
            return
        if tp is BookDeltas:
            if mkt.continues(event):  # type: ignore[arg-type]
                if mkt.bid_orders or mkt.ask_orders:
                    self._on_deltas_lazy(mkt, event)  # type: ignore[arg-type]
                else:
                    mkt.pend(event)  # type: ignore[arg-type]
            elif mkt.idle:
                mkt.apply_now(event)  # type: ignore[arg-type]
            else:
                self._on_deltas(mkt, event)  # type: ignore[arg-type]
        elif tp is TradeTick:
            # only a print at or through one of our prices concerns us
            if event.aggressor is Side.SELL:  # type: ignore[union-attr]
                ours = mkt.our_best_bid
                if ours is not None and event.price_ticks <= ours:  # type: ignore[union-attr]
                    self._on_trade(mkt, event, Side.BUY)  # type: ignore[arg-type]
            else:
                ours = mkt.our_best_ask
                if ours is not None and event.price_ticks >= ours:  # type: ignore[union-attr]
                    self._on_trade(mkt, event, Side.SELL)  # type: ignore[arg-type]

    def _on_deltas(self, mkt: _Market, msg: BookDeltas) -> None:
        if mkt.pend_first is not None:
            mkt.flush()
        book = mkt.book
        cb, ca = mkt.consumed_bid, mkt.consumed_ask
        # (level, lots of it we consumed) at each of our prices before the message
        prev_bid = {p: (book._bids.get(p, 0), cb.get(p, 0)) for p in mkt.bid_orders}
        prev_ask = {p: (book._asks.get(p, 0), ca.get(p, 0)) for p in mkt.ask_orders}
        if not mkt.apply_now(msg):
            return
        if msg.is_snapshot:
            cb.clear()
            ca.clear()
        else:
            if cb:
                for p, _ in msg.bids:
                    if p in cb:
                        del cb[p]
            if ca:
                for p, _ in msg.asks:
                    if p in ca:
                        del ca[p]
        for orders_by_px, prev, levels in ((mkt.bid_orders, prev_bid, book._bids),
                                           (mkt.ask_orders, prev_ask, book._asks)):
            for p, orders in orders_by_px.items():
                (before, ours), after = prev[p], levels.get(p, 0)
                if after != before:
                    self._level_changed(orders, before, after, ours)
        self._match_through(mkt)
        mkt.refresh_idle()

    def _on_deltas_lazy(self, mkt: _Market, msg: BookDeltas) -> None:
        """A depth message continuing the chain while our orders rest: coalesce it (as
        :class:`_Market` explains), follow the level at each of our resting prices as applying the
        message would change it, and apply everything at once only if the message brings opposite
        liquidity at or through one of our prices (the book moving through us).

        Same results as :meth:`_on_deltas` on every message: the queue model sees the same level
        changes in the same order, and the move-through check needs only the incoming levels
        (after the previous message no available level was at or through our prices)."""
        pend_bids, pend_asks = mkt.pend_bids, mkt.pend_asks
        bid_orders, ask_orders = mkt.bid_orders, mkt.ask_orders
        # the level at each of our prices before the message: pending value, else the book's
        # (None: not pending, so the message is its first write since the last flush)
        was_bid = [(p, pend_bids.get(p)) for p in bid_orders] if bid_orders else None
        was_ask = [(p, pend_asks.get(p)) for p in ask_orders] if ask_orders else None
        mkt.pend(msg)
        if was_bid is not None:
            self._follow_levels(was_bid, pend_bids, mkt.book._bids, mkt.consumed_bid, bid_orders)
        if was_ask is not None:
            self._follow_levels(was_ask, pend_asks, mkt.book._asks, mkt.consumed_ask, ask_orders)
        # C-level min/max over the message's levels; only a new level (not a deletion) at or
        # through one of our prices can bring available liquidity there
        ours = mkt.our_best_bid
        if ours is not None and mkt.msg_lo_ask <= ours and any(pend_asks[p] for p, _ in msg.asks if p <= ours):
            self._settle_through(mkt)
            return
        ours = mkt.our_best_ask
        if ours is not None and mkt.msg_hi_bid >= ours and any(pend_bids[p] for p, _ in msg.bids if p >= ours):
            self._settle_through(mkt)

    def _follow_levels(self, was: list[tuple[int, int | None]], pend: dict[int, int], levels: dict[int, int],
                       consumed: dict[int, int], orders_by_px: dict[int, list[_SimOrder]]) -> None:
        """Queue updates of one side after a coalesced message: ``was`` holds (our price, its
        pending level before the message or ``None``), ``pend`` the pending levels after it."""
        for p, before in was:
            after = pend.get(p)
            if after is None or after == before:
                continue
            if before is None:   # first write since the last flush: the book has the level before,
                before = levels.get(p, 0)   # and our consumption there still counts
                if after == before:
                    continue
                self._level_changed(orders_by_px[p], before, after, consumed.get(p, 0))
            else:                # an earlier pending message named the price: consumption reset
                self._level_changed(orders_by_px[p], before, after, 0)

    def _settle_through(self, mkt: _Market) -> None:
        """The opposite side may now reach our resting prices: make the book exact there (asks at
        or below our best bid, bids at or above our best ask) and match as :meth:`_on_deltas`."""
        if mkt.our_best_bid is not None:
            mkt.settle(Side.SELL, mkt.our_best_bid)
        if mkt.our_best_ask is not None:
            mkt.settle(Side.BUY, mkt.our_best_ask)
        self._match_through(mkt)

    def _level_changed(self, orders: list[_SimOrder], before: int, after: int, ours: int) -> None:
        """The displayed level at the price of ``orders`` (ours, FIFO) went ``before -> after``;
        ``ours`` of the ``before`` lots had been consumed by us. The change is the market's own
        (the replay never saw our trades), but the queue it is split over is what is left: our
        consumed lots were ahead of our orders and are gone, so they are not "behind" us.

        The queue model moves each order on its own, but the lots ahead of one of ours are never
        fewer than those ahead of our earlier order there (it is ahead of it in the same queue):
        each ``front`` is kept at least the previous one's, or a later order could fill from a
        print that has not reached the earlier one."""
        floor = 0   # the exact queue ahead of our previous order there, in 1/_QUEUE_ONE lot
        for so in orders:
            traded, so.traded_since = so.traded_since, 0
            chg = before - after - traded
            if chg <= 0:   # growth, or a shrink the trades explain: only the level caps the queue
                if so.front >= after:
                    so.front, so.front_frac = after, 0
            else:
                # the expected share is kept exactly (to 2**-32 lot), never truncated to a lot
                front = self.config.queue_model.front_after_cancel(so.front + so.front_frac * _QUEUE_INV,
                                                                   before - ours, after, chg, self.rng)
                units = round(front * _QUEUE_ONE)
                so.front, so.front_frac = divmod(units if units >= floor else floor, _QUEUE_ONE)
            floor = so.front * _QUEUE_ONE + so.front_frac

    def _on_trade(self, mkt: _Market, trade: TradeTick, resting_side: Side) -> None:
        """A public trade hit ``resting_side`` at ``trade.price_ticks``: advance and fill our queue."""
        px = trade.price_ticks
        if resting_side is Side.BUY:
            book_orders = mkt.bid_orders
            ours = mkt.our_best_bid
            if ours is None or px > ours:
                return   # printed above all our bids: none at its price or through
            through = [p for p in book_orders if p > px] if px < ours else None
        else:
            book_orders = mkt.ask_orders
            ours = mkt.our_best_ask
            if ours is None or px < ours:
                return
            through = [p for p in book_orders if p < px] if px > ours else None
        if through:
            for p in sorted(through, reverse=resting_side is Side.BUY):
                for so in list(book_orders.get(p, ())):
                    qty = so.remaining
                    if so.visible:
                        # an iceberg: the aggressor that printed beyond our price met our visible
                        # slice, and our refreshed slices at most with the volume it printed beyond
                        # (the recorded aggressor had no hidden quantity of ours in its way)
                        qty = min(qty, so.visible + trade.lots)
                    self._fill(mkt, so, p, qty, Liquidity.MAKER)
        orders = book_orders.get(px)
        if not orders:
            return
        # Each of our orders at the price sees the whole print go by (the displayed level shrinks by
        # all of it); the part beyond its queue ahead fills it, minus what our earlier orders there
        # already took from this print.
        volume, used = trade.lots, 0
        for so in list(orders):
            front = so.front
            so.traded_since += volume
            if front >= volume:   # the print ends in the queue ahead (a fraction of a lot stays)
                so.front = front - volume
                continue
            so.front = 0
            frac = so.front_frac
            if frac:
                # the print reaches us ``volume - front - frac`` lots: fill that to the nearest
                # whole lot (ties to even), so the fraction biases neither way
                so.front_frac = 0
                if frac > _QUEUE_HALF or (frac == _QUEUE_HALF and front & 1):
                    front += 1
            excess = volume - front - used
            if excess > 0:
                # an iceberg gets at most what is left of its visible slice; a filled slice goes to
                # the back of the queue (_fill) and the rest of this print does not reach it
                qty = min(excess, so.visible or so.remaining)
                self._fill(mkt, so, px, qty, Liquidity.MAKER)
                used += qty

    def _match_through(self, mkt: _Market) -> None:
        """Fill resting orders that the visible opposite side now reaches (book moved through)."""
        book = mkt.book
        while mkt.our_best_bid is not None and book.best_ask_ticks is not None \
                and book.best_ask_ticks <= mkt.our_best_bid:
            if not self._cross_resting(mkt, Side.BUY, mkt.our_best_bid):
                break
        while mkt.our_best_ask is not None and book.best_bid_ticks is not None \
                and book.best_bid_ticks >= mkt.our_best_ask:
            if not self._cross_resting(mkt, Side.SELL, mkt.our_best_ask):
                break

    def _cross_resting(self, mkt: _Market, side: Side, px: int) -> bool:
        """Resting orders at ``px`` on ``side`` meet available opposite liquidity at or through
        ``px``: they fill at ``px`` as makers, FIFO, and the liquidity counts as consumed.
        Returns whether anything filled."""
        orders = (mkt.bid_orders if side is Side.BUY else mkt.ask_orders).get(px)
        if not orders:
            return False
        if side is Side.BUY:
            consumed, resting = mkt.consumed_ask, mkt.ask_orders
        else:
            consumed, resting = mkt.consumed_bid, mkt.bid_orders
        any_fill = False
        for level_px, avail in list(mkt.available(side, px)):
            for so in list(orders):
                if avail <= 0:
                    break
                qty = min(avail, so.remaining)
                _consume(mkt, consumed, resting, level_px, qty)
                avail -= qty
                self._fill(mkt, so, px, qty, Liquidity.MAKER)
                any_fill = True
            if not orders:
                break
        return any_fill

    # ------------------------------------------------------------------ Venue API
    def set_event_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    async def connect(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def submit(self, order: Order) -> None:
        """Schedule ``order`` to reach the matching engine after the order-entry latency."""
        at = self.clock.now_ns() + self.config.order_entry_latency.sample(self.rng)
        self._note_transit(order)
        self.clock.set_alert(at, lambda _ts: self._arrive_new(order))

    def _note_transit(self, order: Order) -> None:
        """Count what ``order``, sent and not yet at the matching engine, will lock (:meth:`in_transit`)."""
        mkt = self._markets.get(order.symbol)
        cid = order.client_order_id
        if mkt is not None and order.lots > 0 and cid not in self._transit:
            inst = mkt.inst
            if inst.symbol in self._derivative:   # at most this much margin (reducing lots need none)
                if order.price_ticks is not None:
                    ref = order.price_ticks
                    if order.side is Side.SELL:   # as _lock_margin: a marketable sell at the bid it may fill at
                        bid = mkt.book.best_bid_ticks
                        if bid is not None and bid > ref:
                            ref = bid
                    self._transit[cid] = (inst.quote, inst.notional(ref, order.lots) / self._leverage
                                          * self._hold_buffer(order))
            elif order.side is Side.SELL:
                self._transit[cid] = (inst.base, inst.lots_to_qty(order.lots))
            elif order.price_ticks is not None:   # (a market buy's cost is known only on arrival)
                self._transit[cid] = (inst.quote, inst.notional(order.price_ticks, order.lots)
                                      * self._hold_buffer(order))

    def in_transit(self, asset: str) -> Decimal:
        """What the orders sent and not yet at the matching engine will lock of ``asset`` (a market
        buy counts nothing: its cost is known only when it arrives)."""
        return sum((need for a, need in self._transit.values() if a == asset), Decimal(0))

    async def cancel(self, client_order_id: ClientOrderId) -> None:
        at = self.clock.now_ns() + self.config.order_entry_latency.sample(self.rng)
        self.clock.set_alert(at, lambda _ts: self._arrive_cancel(client_order_id))

    async def replace(self, client_order_id: ClientOrderId, *, lots: int | None = None,
                      price_ticks: int | None = None) -> None:
        """Modify an open order. Native modify (``config.native_modify``): keeps queue priority only
        when the price is unchanged and the quantity reduced; otherwise the order goes to the back
        of the queue at its (new) price, and if the new price crosses it takes liquidity first.
        Without native modify: cancel, then a new order with client id ``<id>~r<n>`` sent after the
        cancel confirmation (ack latency + order-entry latency)."""
        at = self.clock.now_ns() + self.config.order_entry_latency.sample(self.rng)
        self.clock.set_alert(at, lambda _ts: self._arrive_replace(client_order_id, lots, price_ticks))

    async def order_status(self, client_order_id: ClientOrderId) -> OrderStatusReport:
        so = self._orders.get(client_order_id)
        if so is None:
            raise UnknownOrderError(f"{self.config.venue}: unknown client order id {client_order_id!r}")
        return self._report(so)

    async def open_orders(self, symbol: str | None = None) -> list[OrderStatusReport]:
        return [self._report(so) for so in self._orders.values()
                if not so.status.is_terminal and (symbol is None or so.order.symbol == symbol)]

    async def balances(self) -> dict[str, Balance]:
        assets = sorted(set(self._free) | set(self._locked))
        return {a: Balance(a, self._free.get(a, Decimal(0)), self._locked.get(a, Decimal(0))) for a in assets}

    async def positions(self) -> list[Position]:
        out = []
        for sym, (qty, cost) in sorted(self._positions.items()):
            avg = (cost / qty).quantize(self._markets[sym].inst.tick_size) if qty else None
            out.append(Position(sym, qty, avg))
        return out

    def position_lots(self, symbol: str) -> int | None:
        """The signed position of a derivative ``symbol`` in lots (exchange-time truth); ``None``
        for a spot instrument (no positions, only balances)."""
        if symbol not in self._derivative:
            return None
        return self._pos_lots.get(symbol, 0)

    def feed_clock(self) -> tuple[Callable[[], int], int]:
        """``(next_latency, last_arrival_ns)`` of this venue's market-data feed, for a driver that
        computes arrivals itself (as :meth:`feed_arrival_ns` does) from then on."""
        return self._md_next, self._last_feed_ns

    def feed_arrival_ns(self, ts_event: int) -> int:
        """When a market event stamped ``ts_event`` reaches us over this venue's feed: the exchange
        time plus a sampled market-data latency, never earlier than the previous event's arrival
        (one ordered stream). For code feeding the venue without a driver; a
        :class:`~venues.sim_driver.SimulationDriver` takes the feed clock over (:meth:`feed_clock`)
        and computes the same thing inline."""
        at = ts_event + self._md_next()
        if at < self._last_feed_ns:
            at = self._last_feed_ns
        self._last_feed_ns = at
        return at

    # ------------------------------------------------------------------ engine: requests
    def _market(self, symbol: str) -> _Market:
        try:
            return self._markets[symbol]
        except KeyError:
            raise UnknownOrderError(f"{self.config.venue}: no instrument {symbol!r}") from None

    def _arrive_new(self, order: Order, *, count_rate: bool = True) -> None:
        now = self.clock.now_ns()
        self.stat_orders += 1
        cid = order.client_order_id
        if self._transit:
            self._transit.pop(cid, None)
        if cid in self._orders:
            # The original order keeps its state; the duplicate is refused.
            self._emit_raw(OrderEventKind.REJECTED, cid, None, TEXT_DUPLICATE, CODE_DUPLICATE)
            return
        mkt = self._markets.get(order.symbol)
        inst = mkt.inst if mkt is not None else None
        so = _SimOrder(order, inst if inst is not None else self.config.instruments[0],
                       VenueOrderId(str(next(self._order_ids))))
        so.ts_event = now
        self._orders[cid] = so
        if mkt is None or order.venue != self.config.venue:
            return self._reject(so, f"Invalid symbol {order.symbol!r} on {self.config.venue}.", CODE_BAD_SYMBOL)
        if order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
            return self._reject(so, f"Unsupported order type {order.order_type.value}.", CODE_UNSUPPORTED)
        if order.display_lots is not None and not self.config.native_iceberg:
            return self._reject(so, "Iceberg orders are not supported.", CODE_UNSUPPORTED)
        if count_rate and not self._rate_ok(now):
            limit, window = self.config.rate_limit_orders, self.config.rate_limit_window_ns
            return self._reject(so, f"Too many new orders; current limit is {limit} orders per "
                                    f"{window // NS_PER_SECOND} SECOND.", CODE_RATE_LIMIT)
        reason = self._filter_failure(mkt, order)
        if reason is not None:
            return self._reject(so, reason, CODE_FILTER)
        if order.display_lots is not None:
            failure = self._iceberg_failure(mkt.inst, order)
            if failure is not None:
                return self._reject(so, *failure)
        tif = order.time_in_force
        if order.order_type is OrderType.MARKET and tif in (TimeInForce.POST_ONLY, TimeInForce.GTD):
            return self._reject(so, f"Market orders cannot be {tif.value}.", CODE_UNSUPPORTED)
        if tif is TimeInForce.GTD and (order.expire_ts is None or order.expire_ts <= now):
            return self._reject(so, "Good-till-date expire_ts must be in the future.", CODE_GTD)
        limit_px = order.price_ticks if order.order_type is OrderType.LIMIT else None
        if tif is TimeInForce.POST_ONLY and limit_px is not None and mkt.crosses(order.side, limit_px):
            return self._reject(so, TEXT_POST_ONLY, CODE_INSUFFICIENT_BALANCE)
        if not self._lock_funds(mkt, so):
            return self._reject(so, TEXT_INSUFFICIENT, CODE_INSUFFICIENT_BALANCE)
        self._emit(so, OrderEventKind.ACCEPTED)
        self._execute(mkt, so)

    def _execute(self, mkt: _Market, so: _SimOrder) -> None:
        """Take what the order can, then rest, expire or finish it."""
        order = so.order
        tif = order.time_in_force
        limit_px = so.price_ticks if order.order_type is OrderType.LIMIT else None
        if tif is TimeInForce.FOK:
            avail = 0
            for _, a in mkt.available(so.side, limit_px, so.remaining):
                avail += a
                if avail >= so.remaining:
                    break
            if avail < so.remaining:
                return self._finish(so, OrderStatus.EXPIRED, OrderEventKind.EXPIRED,
                                    "FOK order could not be filled completely.")
        if tif is not TimeInForce.POST_ONLY:
            self._take(mkt, so, limit_px)
        if so.status.is_terminal:
            return
        if order.order_type is OrderType.MARKET or tif in (TimeInForce.IOC, TimeInForce.FOK):
            return self._finish(so, OrderStatus.EXPIRED, OrderEventKind.EXPIRED,
                                "Remaining quantity expired (no more liquidity).")
        self._rest(mkt, so)
        if tif is TimeInForce.GTD and order.expire_ts is not None and so.expire_handle is None:
            cid = order.client_order_id
            so.expire_handle = self.clock.set_alert(order.expire_ts, lambda _ts: self._expire(cid))

    def _take(self, mkt: _Market, so: _SimOrder, limit_px: int | None) -> None:
        if limit_px is not None and not mkt.crosses(so.side, limit_px):
            return   # nothing to take (and no need to apply the pending depth)
        if so.side is Side.BUY:
            consumed, resting = mkt.consumed_ask, mkt.ask_orders
        else:
            consumed, resting = mkt.consumed_bid, mkt.bid_orders
        # lazily: a market order must not materialise the whole opposite side
        for px, avail in mkt.available(so.side, limit_px, so.remaining):
            qty = min(avail, so.remaining)
            _consume(mkt, consumed, resting, px, qty)
            self._fill(mkt, so, px, qty, Liquidity.TAKER)
            if so.remaining <= 0:
                break

    def _rest(self, mkt: _Market, so: _SimOrder) -> None:
        px = so.price_ticks
        assert px is not None
        book_orders = mkt.bid_orders if so.side is Side.BUY else mkt.ask_orders
        if so.display:
            so.visible = min(so.display, so.remaining)
        _join_back(mkt, so, px, book_orders.setdefault(px, []))
        mkt.refresh_best()

    def _eat_slices(self, mkt: _Market, so: _SimOrder, lots: int, visible: int) -> None:
        """A resting iceberg with ``visible`` lots left of its slice filled ``lots`` (already
        counted in ``so.filled``). Lots beyond the slice (a print through our price, the book moving
        through us) ate refreshed slices at our price. Once a slice is used up and quantity
        remains, the next one, ``min(display, remaining)`` less what ate into it, joins the back of
        the queue at our price exactly as a new order arriving now would."""
        if lots < visible:
            so.visible = visible - lots
            return
        left = so.remaining
        if left <= 0:
            return   # filled: _fill takes it off the book
        so.visible = min(so.display - (lots - visible) % so.display, left)
        px = so.price_ticks
        assert px is not None
        orders = (mkt.bid_orders if so.side is Side.BUY else mkt.ask_orders)[px]
        orders.remove(so)
        _join_back(mkt, so, px, orders)

    def _unrest(self, mkt: _Market, so: _SimOrder) -> None:
        so.visible = 0
        px = so.price_ticks
        book_orders = mkt.bid_orders if so.side is Side.BUY else mkt.ask_orders
        lst = book_orders.get(px) if px is not None else None
        if lst and so in lst:
            lst.remove(so)
            if not lst:
                del book_orders[px]  # type: ignore[arg-type]
            mkt.refresh_best()

    def _arrive_cancel(self, cid: ClientOrderId) -> None:
        so = self._orders.get(cid)
        if so is None or so.status.is_terminal:
            self._emit_raw(OrderEventKind.CANCEL_REJECTED, cid, so.venue_order_id if so else None,
                           TEXT_UNKNOWN_ORDER, CODE_UNKNOWN_ORDER)
            return
        self._finish(so, OrderStatus.CANCELED, OrderEventKind.CANCELED, None)

    def _arrive_replace(self, cid: ClientOrderId, lots: int | None, price_ticks: int | None) -> None:
        now = self.clock.now_ns()
        so = self._orders.get(cid)
        if so is None or so.status.is_terminal:
            self._emit_raw(OrderEventKind.CANCEL_REJECTED, cid, so.venue_order_id if so else None,
                           TEXT_UNKNOWN_ORDER, CODE_UNKNOWN_ORDER)
            return
        mkt = self._markets[so.order.symbol]
        mkt.flush()
        new_lots = so.lots if lots is None else lots
        new_px = so.price_ticks if price_ticks is None else price_ticks
        if so.order.order_type is not OrderType.LIMIT or new_px is None:
            self._emit_raw(OrderEventKind.CANCEL_REJECTED, cid, so.venue_order_id,
                           "Only resting limit orders can be modified.", CODE_UNSUPPORTED)
            return
        if new_lots <= so.filled:   # either way: the new total must exceed what has filled
            self._emit_raw(OrderEventKind.CANCEL_REJECTED, cid, so.venue_order_id,
                           _filter_text(f"new quantity {new_lots} lots is not above the filled {so.filled} lots"),
                           CODE_FILTER)
            return
        if not self.config.native_modify:
            self._finish(so, OrderStatus.CANCELED, OrderEventKind.CANCELED, "canceled for replace")
            # the client sends the new order when the CANCELED reaches it (the delivery time just
            # drawn for that event): it reaches the engine one order-entry latency after that
            sent = self._last_delivery_ns
            # an iceberg is re-sent with its display (as a plain order if all of it would show)
            display = carried_display(so.display or None, new_lots - so.filled)
            new_order = Order(
                client_order_id=ClientOrderId(f"{cid}~r{next(self._replace_ids)}"), venue=so.order.venue,
                symbol=so.order.symbol, side=so.side, order_type=OrderType.LIMIT,
                lots=new_lots - so.filled, price_ticks=new_px, time_in_force=so.order.time_in_force,
                expire_ts=so.order.expire_ts, display_lots=display, parent_id=so.order.parent_id,
                decision_id=so.order.decision_id, ts_init=sent)
            self._note_transit(new_order)   # its funds, released by the cancel, are spoken for
            self.clock.set_alert(sent + self.config.order_entry_latency.sample(self.rng),
                                 lambda _ts: self._arrive_new(new_order))
            return
        if not self._rate_ok(now):
            self._emit_raw(OrderEventKind.CANCEL_REJECTED, cid, so.venue_order_id,
                           f"Too many new orders; current limit is {self.config.rate_limit_orders} "
                           f"orders per {self.config.rate_limit_window_ns // NS_PER_SECOND} SECOND.",
                           CODE_RATE_LIMIT)
            return
        reason = mkt.inst.check_order(new_px, new_lots)
        if reason is None and so.display and not self._iceberg_parts_ok(new_lots, so.display):
            reason = TEXT_ICEBERG_PARTS
        if reason is not None:
            self._emit_raw(OrderEventKind.CANCEL_REJECTED, cid, so.venue_order_id,
                           _filter_text(reason), CODE_FILTER)
            return
        keeps_priority = new_px == so.price_ticks and new_lots <= so.lots
        if so.order.time_in_force is TimeInForce.POST_ONLY and new_px != so.price_ticks \
                and next(iter(mkt.available(so.side, new_px)), None):
            self._emit_raw(OrderEventKind.CANCEL_REJECTED, cid, so.venue_order_id, TEXT_POST_ONLY,
                           CODE_INSUFFICIENT_BALANCE)
            return
        # re-lock funds for the new terms
        old_locked, old_open = so.locked, so.open_lots
        self._release(so)
        old_px, old_lots = so.price_ticks, so.lots
        so.price_ticks, so.lots = new_px, new_lots
        if not self._lock_funds(mkt, so):
            so.price_ticks, so.lots = old_px, old_lots
            so.locked, so.open_lots = old_locked, old_open
            self._free[so.lock_asset] -= old_locked
            self._locked[so.lock_asset] = self._locked.get(so.lock_asset, Decimal(0)) + old_locked
            self._emit_raw(OrderEventKind.CANCEL_REJECTED, cid, so.venue_order_id, TEXT_INSUFFICIENT,
                           CODE_INSUFFICIENT_BALANCE)
            return
        if keeps_priority:
            if so.visible:   # an iceberg's slice shrinks only below what is left of it (Binance)
                so.visible = min(so.visible, so.remaining)
            self._emit(so, OrderEventKind.REPLACED, new_lots=new_lots, new_price_ticks=new_px)
            return
        so.price_ticks = old_px
        self._unrest(mkt, so)
        so.price_ticks = new_px
        self._emit(so, OrderEventKind.REPLACED, new_lots=new_lots, new_price_ticks=new_px)
        if so.order.time_in_force is not TimeInForce.POST_ONLY:
            self._take(mkt, so, new_px)
        if not so.status.is_terminal:
            self._rest(mkt, so)

    def _expire(self, cid: ClientOrderId) -> None:
        so = self._orders.get(cid)
        if so is not None and not so.status.is_terminal:
            so.expire_handle = None
            self._finish(so, OrderStatus.EXPIRED, OrderEventKind.EXPIRED, "Good-till-date reached.")

    def _rate_ok(self, now: int) -> bool:
        limit = self.config.rate_limit_orders
        if limit is None:
            return True
        window = self._rate_window
        horizon = now - self.config.rate_limit_window_ns
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True

    def _filter_failure(self, mkt: _Market, order: Order) -> str | None:
        inst = mkt.inst
        if order.lots <= 0 or (inst.min_quantity and inst.lots_to_qty(order.lots) < inst.min_quantity):
            return "Filter failure: LOT_SIZE"
        if order.order_type is OrderType.LIMIT:
            if order.price_ticks is None or order.price_ticks <= 0:
                return "Filter failure: PRICE_FILTER"
            ref_px: int | None = order.price_ticks
        else:
            mkt.ready(order.side, None, order.lots)   # the best opposite price is exact
            book = mkt.book
            ref_px = book.best_ask_ticks if order.side is Side.BUY else book.best_bid_ticks
        if ref_px is not None and inst.min_notional and inst.notional(ref_px, order.lots) < inst.min_notional:
            return "Filter failure: MIN_NOTIONAL"
        return None

    def _iceberg_failure(self, inst: Instrument, order: Order) -> tuple[str, str] | None:
        """(reason, code) if ``order`` (with ``display_lots``, native icebergs on) breaks Binance
        spot's iceberg rules: only LIMIT GTC or LIMIT_MAKER (POST_ONLY), the display passes
        LOT_SIZE and is below the quantity, and ``ceil(lots / display)`` parts at most."""
        display = order.display_lots
        assert display is not None
        if order.order_type is not OrderType.LIMIT or order.time_in_force not in ICEBERG_TIME_IN_FORCE:
            return TEXT_ICEBERG_COMBINATION, CODE_ORDER_COMPOSITION
        if display <= 0 or (inst.min_quantity and inst.lots_to_qty(display) < inst.min_quantity):
            return "Filter failure: LOT_SIZE", CODE_FILTER
        if display >= order.lots:
            return TEXT_ICEBERG_QTY, CODE_NEW_ORDER_REJECTED
        if not self._iceberg_parts_ok(order.lots, display):
            return TEXT_ICEBERG_PARTS, CODE_FILTER
        return None

    def _hold_buffer(self, order: Order) -> Decimal:
        """1 + the fee rate held with ``order``'s funds: the taker fee for an order that cannot rest
        (IOC, FOK, market), the maker fee for a post-only order, the larger of the two otherwise
        (rebates held as 0)."""
        if order.order_type is OrderType.MARKET or order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            return self._take_buffer
        if order.time_in_force is TimeInForce.POST_ONLY:
            return self._make_buffer
        return self._lock_buffer

    def _iceberg_parts_ok(self, lots: int, display: int) -> bool:
        return iceberg_parts(lots, display) <= self.config.iceberg_parts

    # ------------------------------------------------------------------ engine: money
    def _lock_funds(self, mkt: _Market, so: _SimOrder) -> bool:
        inst = mkt.inst
        remaining = so.remaining
        if inst.symbol in self._derivative:
            return self._lock_margin(mkt, so)
        if so.side is Side.SELL:
            asset, need = inst.base, inst.lots_to_qty(remaining)
        else:
            asset = inst.quote
            if so.price_ticks is not None:
                need = inst.notional(so.price_ticks, remaining)
            else:  # market buy: what walking the visible available book would cost
                tick_lots = _walk_tick_lots(mkt, Side.BUY, remaining)
                need = inst.tick_size * inst.lot_size * tick_lots * inst.contract_size
            need *= self._hold_buffer(so.order)
        free = self._free.get(asset, Decimal(0))
        if need > free:
            return False
        self._free[asset] = free - need
        self._locked[asset] = self._locked.get(asset, Decimal(0)) + need
        so.lock_asset, so.locked = asset, need
        return True

    def _lock_margin(self, mkt: _Market, so: _SimOrder) -> bool:
        """Derivatives: lock initial margin in the quote currency for the lots that would open or
        grow a position. Lots that reduce the opposite position (less what other open orders on the
        same side already reduce) need none."""
        inst = mkt.inst
        remaining = so.remaining
        pos = self._pos_lots.get(inst.symbol, 0)
        opposite = -pos if so.side is Side.BUY else pos
        live = self._live_derivative
        if opposite > 0:
            for cid, other in list(live.items()):
                if other.status.is_terminal:
                    del live[cid]
                elif other is not so and other.side is so.side and other.order.symbol == inst.symbol:
                    reducing = other.remaining - other.open_lots
                    if reducing > 0:
                        opposite -= reducing
        opening = remaining - min(remaining, max(0, opposite))
        need = Decimal(0)
        if opening:
            if so.price_ticks is not None:
                ref = so.price_ticks
                if so.side is Side.SELL:   # a marketable sell fills up to the best bid, above its limit
                    best = next(iter(mkt.available(Side.SELL, ref, 1)), None)
                    if best is not None and best[0] > ref:
                        ref = best[0]
                need = inst.notional(ref, opening)
            elif inst.kind is InstrumentKind.INVERSE_PERPETUAL:   # notional does not depend on price
                need = inst.notional(1, opening)
            else:   # market order: what walking the visible available book would cost for the
                # opening lots, which fill after the reducing ones (those take the best levels)
                tick_lots = _walk_tick_lots(mkt, so.side, opening, remaining - opening)
                need = inst.tick_size * inst.lot_size * tick_lots * inst.contract_size
            # to the 1e-8 (up), as every margin amount, so the ledger adds up exactly
            need = (need / self._leverage * self._hold_buffer(so.order)).quantize(_FEE_QUANT, rounding=ROUND_CEILING)
        asset = inst.quote
        free = self._free.get(asset, Decimal(0))
        if need > free:
            return False
        self._free[asset] = free - need
        self._locked[asset] = self._locked.get(asset, Decimal(0)) + need
        so.lock_asset, so.locked, so.open_lots = asset, need, opening
        live[so.order.client_order_id] = so
        return True

    def _settle_derivative(self, inst: Instrument, so: _SimOrder, px: int, lots: int, fee: Decimal,
                           pos_qty: Decimal, pos_cost: Decimal, closed_cost: Decimal) -> None:
        """A derivative fill: lots against the opposite position close it (its margin is released
        with the realised PnL), the rest open or grow it (margin moves from the order's lock to the
        position). Only the quote currency moves; the fee is paid from it. ``pos_qty`` and
        ``pos_cost`` are the position before the fill, ``closed_cost`` the share of its cost basis
        the closing lots take (:meth:`_fill`)."""
        sym, quote = inst.symbol, inst.quote
        pos = self._pos_lots.get(sym, 0)
        signed = lots if so.side is Side.BUY else -lots
        closing = min(lots, abs(pos)) if pos and (pos > 0) != (signed > 0) else 0
        opening = lots - closing
        locked, free = self._locked, self._free
        # the order's lock: the share of its reserved opening lots these opening lots use
        unlock = Decimal(0)
        if so.open_lots:
            used = min(opening, so.open_lots)
            unlock = so.locked if used >= so.open_lots else (so.locked * used / so.open_lots).quantize(_FEE_QUANT)
            so.open_lots -= used
            so.locked -= unlock
        margin = self._pos_margin.get(sym, Decimal(0))
        released = pnl = Decimal(0)
        if closing:
            released = margin if closing == abs(pos) else (margin * closing / abs(pos)).quantize(_FEE_QUANT)
            price = inst.ticks_to_price(px)
            if inst.kind is InstrumentKind.INVERSE_PERPETUAL:   # USD value of the coin PnL, at px
                avg = pos_cost / pos_qty   # average entry price
                pnl = (inst.notional(px, closing) * (price - avg) / avg).quantize(_FEE_QUANT)
                if pos < 0:
                    pnl = -pnl
            else:   # the closed quantity's value at px less its cost basis (exact: no drift)
                closed_qty = inst.lots_to_qty(closing)
                pnl = ((price * closed_qty if pos > 0 else -price * closed_qty) - closed_cost) * inst.contract_size
        new_margin = (inst.notional(px, opening) / self._leverage).quantize(_FEE_QUANT) if opening else Decimal(0)
        self._pos_margin[sym] = margin - released + new_margin
        self._pos_lots[sym] = pos + signed
        locked[quote] = locked.get(quote, Decimal(0)) - unlock - released + new_margin
        free[quote] = free.get(quote, Decimal(0)) + unlock + released + pnl - fee - new_margin

    def _release(self, so: _SimOrder) -> None:
        if so.locked:
            self._locked[so.lock_asset] -= so.locked
            self._free[so.lock_asset] = self._free.get(so.lock_asset, Decimal(0)) + so.locked
            so.locked = Decimal(0)
        so.open_lots = 0

    def _fill(self, mkt: _Market, so: _SimOrder, px: int, lots: int, liq: Liquidity) -> None:
        if lots <= 0:
            return
        inst = mkt.inst
        now = self.clock.now_ns()
        before = so.remaining
        notional = inst.notional(px, lots)
        bps = self._maker_bps if liq is Liquidity.MAKER else self._taker_bps
        fee = (notional * bps / _BPS).quantize(_FEE_QUANT)
        qty = inst.lots_to_qty(lots)
        base, quote = inst.base, inst.quote
        # the position (net quantity, cost basis): a reducing fill takes its share of the cost
        # basis (to 1e-8; the whole of it when it closes the position), so the realised PnL of a
        # round trip is exactly what it sold for less what it paid
        price = inst.ticks_to_price(px)
        pq, pc = self._positions.get(inst.symbol, (Decimal(0), Decimal(0)))
        signed = qty if so.side is Side.BUY else -qty
        closed_cost = Decimal(0)
        if pq == 0 or (pq > 0) == (signed > 0):
            pq_new, pc_new = pq + signed, pc + signed * price
        else:  # reducing (or flipping): what is left keeps its cost basis
            pq_new = pq + signed
            closed_cost = pc if abs(signed) >= abs(pq) else (pc * -signed / pq).quantize(_FEE_QUANT)
            pc_new = pc - closed_cost if (pq_new > 0) == (pq > 0) else pq_new * price
        if inst.symbol in self._derivative:
            self._settle_derivative(inst, so, px, lots, fee, pq, pc, closed_cost)
        else:
            # pro rata, to the 1e-8 (an inexact quotient, e.g. of a market buy's walked cost, would
            # otherwise leave 28-digit dust in the account's locked total); the last fill or the
            # cancel releases the rest
            release = so.locked if lots >= before else (so.locked * lots / before).quantize(_FEE_QUANT)
            so.locked -= release
            self._locked[so.lock_asset] -= release
            free = self._free
            if so.side is Side.BUY:
                free[quote] = free.get(quote, Decimal(0)) + release - notional - fee
                free[base] = free.get(base, Decimal(0)) + qty
            else:
                free[base] = free.get(base, Decimal(0)) + release - qty
                free[quote] = free.get(quote, Decimal(0)) + notional - fee
        self._positions[inst.symbol] = (pq_new, pc_new)
        so.filled += lots
        so.notional_ticks += px * lots
        visible = so.visible
        if visible:   # a resting iceberg
            self._eat_slices(mkt, so, lots, visible)
        self.stat_fills += 1
        fill = Fill(
            client_order_id=so.order.client_order_id, venue=self.config.venue, symbol=inst.symbol,
            side=so.side, trade_id=TradeId(f"{self.config.venue}-{next(self._trade_ids)}"),
            price_ticks=px, lots=lots, fee=fee, fee_currency=quote, liquidity=liq, ts_event=now,
            ts_init=now, venue_order_id=so.venue_order_id)
        if so.remaining <= 0:
            so.status = OrderStatus.FILLED
            self._unrest(mkt, so)
            self._release(so)
            self._cancel_expiry(so)
            self._emit(so, OrderEventKind.FILLED, fill=fill)
        else:
            so.status = OrderStatus.PARTIALLY_FILLED
            self._emit(so, OrderEventKind.PARTIALLY_FILLED, fill=fill)

    def _finish(self, so: _SimOrder, status: OrderStatus, kind: OrderEventKind, reason: str | None) -> None:
        mkt = self._markets.get(so.order.symbol)
        if mkt is not None:
            self._unrest(mkt, so)
        so.status = status
        self._release(so)
        self._cancel_expiry(so)
        self._emit(so, kind, reason=reason)

    def _cancel_expiry(self, so: _SimOrder) -> None:
        handle = so.expire_handle
        if handle is not None:
            handle.cancel()
            so.expire_handle = None

    def _reject(self, so: _SimOrder, reason: str, code: str) -> None:
        self.stat_rejects += 1
        so.status = OrderStatus.REJECTED
        log.info("%s %s rejected: %s (%s)", self.config.venue, so.order.client_order_id, reason, code)
        self._emit(so, OrderEventKind.REJECTED, reason=reason, code=code)

    # ------------------------------------------------------------------ events
    def _emit(self, so: _SimOrder, kind: OrderEventKind, *, fill: Fill | None = None,
              reason: str | None = None, code: str | None = None, new_lots: int | None = None,
              new_price_ticks: int | None = None) -> None:
        now = self.clock.now_ns()
        at = self._delivery_ns(now)
        ev = OrderEvent(kind=kind, client_order_id=so.order.client_order_id, venue=self.config.venue,
                        ts_event=now, ts_init=at, venue_order_id=so.venue_order_id, fill=fill,
                        reason=reason, code=code, new_lots=new_lots, new_price_ticks=new_price_ticks)
        self._deliver_at(at, ev)

    def _emit_raw(self, kind: OrderEventKind, cid: ClientOrderId, venue_order_id: VenueOrderId | None,
                  reason: str, code: str) -> None:
        now = self.clock.now_ns()
        at = self._delivery_ns(now)
        ev = OrderEvent(kind=kind, client_order_id=cid, venue=self.config.venue, ts_event=now,
                        ts_init=at, venue_order_id=venue_order_id, reason=reason, code=code)
        self._deliver_at(at, ev)

    def _delivery_ns(self, now: int) -> int:
        # One ordered user stream: an event never overtakes an earlier one.
        at = now + self.config.ack_latency.sample(self.rng)
        if at < self._last_delivery_ns:
            at = self._last_delivery_ns
        self._last_delivery_ns = at
        return at

    def _deliver_at(self, at: int, ev: OrderEvent) -> None:
        self.clock.set_alert(at, lambda _ts: self._deliver(ev))

    def _deliver(self, ev: OrderEvent) -> None:
        if self._handler is not None:
            self._handler(ev)

    def _report(self, so: _SimOrder) -> OrderStatusReport:
        return OrderStatusReport(
            client_order_id=so.order.client_order_id, venue=self.config.venue, symbol=so.order.symbol,
            side=so.side, status=so.status, lots=so.lots, filled_lots=so.filled, price_ticks=so.price_ticks,
            venue_order_id=so.venue_order_id,
            average_price_ticks=so.notional_ticks / so.filled if so.filled else None, ts_event=so.ts_event)

    # ------------------------------------------------------------------ introspection for tests
    def queue_ahead(self, client_order_id: ClientOrderId) -> int:
        """Whole lots the engine believes are ahead of a resting order in its price queue: the
        exact queue ahead (:meth:`queue_ahead_exact`) to the nearest lot, ties to even, as a print
        at its price is measured against it."""
        so = self._resting_state(client_order_id)
        frac = so.front_frac
        return so.front + (frac > _QUEUE_HALF or (frac == _QUEUE_HALF and so.front & 1))

    def queue_ahead_exact(self, client_order_id: ClientOrderId) -> Fraction:
        """Lots ahead of a resting order as the queue model keeps them: whole lots plus the
        fraction of a lot the expected shares of cancels leave (a multiple of ``2**-32`` lot)."""
        so = self._resting_state(client_order_id)
        return Fraction(so.front * _QUEUE_ONE + so.front_frac, _QUEUE_ONE)

    def _resting_state(self, client_order_id: ClientOrderId) -> _SimOrder:
        so = self._orders.get(client_order_id)
        if so is None:
            raise UnknownOrderError(f"{self.config.venue}: unknown client order id {client_order_id!r}")
        return so

    def consumed_lots(self, symbol: str, side: Side, price_ticks: int) -> int:
        """Lots of the displayed level at ``price_ticks`` on book side ``side`` already taken by us."""
        mkt = self._market(symbol)
        mkt.flush()
        return (mkt.consumed_bid if side is Side.BUY else mkt.consumed_ask).get(price_ticks, 0)

    def statistics(self) -> dict[str, int]:
        return {"market_events": self.stat_market_events, "orders": self.stat_orders,
                "fills": self.stat_fills, "rejects": self.stat_rejects,
                "ignored_events": self.stat_ignored_events,
                "open_orders": sum(1 for so in self._orders.values() if not so.status.is_terminal)}


def _consume(mkt: _Market, consumed: dict[int, int], resting: dict[int, list[_SimOrder]], px: int,
             qty: int) -> None:
    """We took ``qty`` lots of the displayed level at ``px``: they count as consumed until the
    feed names the price again, and they were ahead of our own orders resting at ``px`` on that
    side (a taker takes the queue front first; ours are skipped, never matched), so those move up.
    Not a traded volume: the replay's next depth message never reflects it."""
    consumed[px] = consumed.get(px, 0) + qty
    mkt.idle = False
    orders = resting.get(px)
    if orders:
        for so in orders:
            front = so.front - qty
            if front >= 0:
                so.front = front   # a fraction of a lot ahead stays
            else:
                so.front = so.front_frac = 0


def _join_back(mkt: _Market, so: _SimOrder, px: int, orders: list[_SimOrder]) -> None:
    """``so`` joins the back of the queue at ``px`` (``orders``: ours there, FIFO) as a new order
    arriving now: behind the displayed level less what we consumed (the pending depth included,
    no flush needed), with no trade seen yet."""
    so.front = mkt.queue_at(so.side, px)
    so.front_frac = 0
    so.traded_since = 0
    orders.append(so)


def _walk_tick_lots(mkt: _Market, taker: Side, lots: int, skip: int = 0) -> int:
    """Sum of price x lots of taking ``lots`` from the visible available opposite side after the
    first ``skip`` available lots (taken before them by the same walk)."""
    left, tick_lots = lots, 0
    for px, avail in mkt.available(taker, None, lots + skip):
        if skip:
            passed = min(avail, skip)
            skip -= passed
            avail -= passed
            if not avail:
                continue
        take = min(avail, left)
        tick_lots += take * px
        left -= take
        if not left:
            break
    return tick_lots


def _filter_text(reason: str) -> str:
    if "notional" in reason:
        return "Filter failure: MIN_NOTIONAL"
    if "price" in reason:
        return "Filter failure: PRICE_FILTER"
    if "quantity" in reason:
        return "Filter failure: LOT_SIZE"
    return reason
