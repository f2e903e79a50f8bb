"""Value types of transaction-cost analysis: what was intended (a parent order), what happened
(child orders, fills, routing decisions) and what the market did around it (:class:`MarketSeries`).

Money, prices and quantities are :class:`~decimal.Decimal` (exact for cents); ratios are computed
as :class:`~fractions.Fraction` in :mod:`tca.metrics` so that identities hold exactly. Times are
integer nanoseconds since the Unix epoch (exchange time when it comes from market data).

Sign convention (the only one used in sorex TCA)::

    cost_bps = side * (price - benchmark) / benchmark * 1e4,   side = +1 buy, -1 sell

positive is a cost, negative a gain.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marketdata.model import Instrument, QuoteTick, Side, TradeTick

__all__ = [
    "ChildOrder",
    "Execution",
    "FillRecord",
    "MarketSeries",
    "ParentOrder",
    "RoutingDecisionRecord",
]


@dataclass(slots=True)
class ParentOrder:
    """The intended trade. Prices left ``None`` are derived from market data where possible;
    prices given here (journal payload or fills CSV) override derived ones."""

    parent_id: str
    symbol: str
    side: Side
    quantity: Decimal
    start_ts_ns: int
    """Arrival time: when the parent reached the execution system (journal record time)."""
    decision_ts_ns: int
    algo: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    limit_price: Decimal | None = None
    decision_price: Decimal | None = None
    arrival_price: Decimal | None = None
    end_price: Decimal | None = None
    end_ts_ns: int | None = None
    status: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class FillRecord:
    """One execution of one child order. ``fee`` is in ``fee_currency``; ``fee_quote`` is the
    fee converted to the quote currency (``None`` when it could not be converted)."""

    parent_id: str
    venue: str
    ts_ns: int
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    fee_quote: Decimal | None
    liquidity: str | None = None
    """``maker``/``taker`` or ``None`` when unknown."""
    client_order_id: str | None = None
    trade_id: str | None = None


@dataclass(slots=True)
class ChildOrder:
    """A child order's life as seen in the journal."""

    client_order_id: str
    parent_id: str | None
    venue: str
    submit_ts_ns: int
    quantity: Decimal
    price: Decimal | None
    order_type: str | None
    time_in_force: str | None
    decision_id: str | None
    filled: Decimal = Decimal(0)
    first_fill_ts_ns: int | None = None
    last_fill_ts_ns: int | None = None
    cancel_requests: int = 0
    replaces: int = 0
    final_status: str | None = None
    reject_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingDecisionRecord:
    """A routing decision as journaled (``payload`` is the journal's routing_decision payload)."""

    decision_id: str
    parent_id: str | None
    ts_ns: int
    payload: dict[str, Any]


@dataclass(slots=True)
class Execution:
    """One parent order with everything that belongs to it, from one source (journal or CSV)."""

    parent: ParentOrder
    fills: list[FillRecord] = field(default_factory=list)
    children: list[ChildOrder] = field(default_factory=list)
    decisions: list[RoutingDecisionRecord] = field(default_factory=list)
    run_id: str | None = None
    source: str = ""
    label: str = ""
    market_source: str | list[str] | None = None
    """Market-data location(s) named by the journal's run_started record, if any."""
    warnings: list[str] = field(default_factory=list)
    """What the loader left out or could not read for this parent (shown with the metrics)."""


class MarketSeries:
    """Trades and top-of-book quotes of one unified symbol across venues, in exchange time.

    ``mid_at(t)`` is the consolidated mid: (highest latest bid over venues + lowest latest ask over
    venues) / 2, as of the last quote with ``ts <= t``; ``None`` before the first quote or after
    ``end_ns`` (the data's end). Lookups are ``O(log n)`` (bisect).
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._quotes: list[tuple[int, str, Decimal, Decimal]] = []
        self._trades: list[tuple[int, str, Decimal, Decimal, str]] = []
        self._built = False
        self.trade_ts: list[int] = []
        self.trade_px: list[Decimal] = []
        self.trade_qty: list[Decimal] = []
        self.trade_venue: list[str] = []
        self.trade_id: list[str] = []
        self.mid_ts: list[int] = []
        self.mid_px: list[Decimal] = []
        self._venue_quotes: dict[str, tuple[list[int], list[Decimal], list[Decimal]]] = {}
        self.start_ns: int | None = None
        self.end_ns: int | None = None

    # ------------------------------------------------------------------ building
    def add_quote(self, ts_ns: int, venue: str, bid: Decimal, ask: Decimal) -> None:
        """Add one top-of-book quote (prices in quote currency)."""
        self._quotes.append((ts_ns, venue, bid, ask))
        self._built = False

    def add_trade(self, ts_ns: int, venue: str, price: Decimal, quantity: Decimal, trade_id: str = "") -> None:
        """Add one public trade (quantity in base units)."""
        self._trades.append((ts_ns, venue, price, quantity, trade_id))
        self._built = False

    def build(self) -> MarketSeries:
        """Sort and index what was added; called lazily by the accessors."""
        if self._built:
            return self
        self._quotes.sort(key=lambda q: q[0])
        self._trades.sort(key=lambda t: t[0])
        self.trade_ts = [t[0] for t in self._trades]
        self.trade_venue = [t[1] for t in self._trades]
        self.trade_px = [t[2] for t in self._trades]
        self.trade_qty = [t[3] for t in self._trades]
        self.trade_id = [t[4] for t in self._trades]
        latest: dict[str, tuple[Decimal, Decimal]] = {}
        mid_ts: list[int] = []
        mid_px: list[Decimal] = []
        vq: dict[str, tuple[list[int], list[Decimal], list[Decimal]]] = {}
        for ts, venue, bid, ask in self._quotes:
            latest[venue] = (bid, ask)
            best_bid = max(b for b, _ in latest.values())
            best_ask = min(a for _, a in latest.values())
            mid = (best_bid + best_ask) / 2
            if mid_ts and mid_ts[-1] == ts:
                mid_px[-1] = mid
            else:
                mid_ts.append(ts)
                mid_px.append(mid)
            lists = vq.setdefault(venue, ([], [], []))
            lists[0].append(ts)
            lists[1].append(bid)
            lists[2].append(ask)
        self.mid_ts, self.mid_px, self._venue_quotes = mid_ts, mid_px, vq
        all_ts = [x for x in (mid_ts[:1] + self.trade_ts[:1]) if x is not None]
        last_ts = [x for x in (mid_ts[-1:] + self.trade_ts[-1:]) if x is not None]
        self.start_ns = min(all_ts) if all_ts else None
        self.end_ns = max(last_ts) if last_ts else None
        self._built = True
        return self

    @classmethod
    def from_events(cls, events: Iterable[object], instruments: Mapping[str, Instrument]
                    ) -> dict[str, MarketSeries]:
        """Build one series per unified symbol from :class:`TradeTick`/:class:`QuoteTick` events
        (other events are ignored). ``instruments`` maps venue id -> :class:`Instrument` and
        converts ticks and lots to prices and quantities (COIN-M lots are contracts: their
        quantity is converted to base units as contracts x contract_size / price)."""
        out: dict[str, MarketSeries] = {}
        for ev in events:
            if isinstance(ev, TradeTick):
                inst = instruments[ev.venue]
                px = inst.ticks_to_price(ev.price_ticks)
                qty = inst.lots_to_qty(ev.lots)
                if inst.kind.value == "inverse_perpetual":
                    qty = qty * inst.contract_size / px
                series = out.get(ev.symbol) or out.setdefault(ev.symbol, cls(ev.symbol))
                series.add_trade(ev.ts_event, ev.venue, px, qty, str(ev.trade_id))
            elif isinstance(ev, QuoteTick):
                inst = instruments[ev.venue]
                if ev.bid_ticks <= 0 or ev.ask_ticks <= 0:
                    continue
                series = out.get(ev.symbol) or out.setdefault(ev.symbol, cls(ev.symbol))
                series.add_quote(ev.ts_event, ev.venue, inst.ticks_to_price(ev.bid_ticks),
                                 inst.ticks_to_price(ev.ask_ticks))
        for s in out.values():
            s.build()
        return out

    # ------------------------------------------------------------------ queries
    def mid_at(self, ts_ns: int) -> Decimal | None:
        """Consolidated mid as of ``ts_ns`` (last quote at or before it), or ``None``."""
        self.build()
        if self.end_ns is not None and ts_ns > self.end_ns:
            return None
        i = bisect_right(self.mid_ts, ts_ns)
        return self.mid_px[i - 1] if i else None

    def touch_at(self, venue: str, ts_ns: int) -> tuple[Decimal, Decimal] | None:
        """The venue's own (bid, ask) as of ``ts_ns``, or ``None``."""
        self.build()
        vq = self._venue_quotes.get(venue)
        if vq is None:
            return None
        i = bisect_right(vq[0], ts_ns)
        return (vq[1][i - 1], vq[2][i - 1]) if i else None

    def trades_between(self, start_ns: int, end_ns: int) -> range:
        """Indices of trades with ``start_ns <= ts <= end_ns``."""
        self.build()
        lo = bisect_right(self.trade_ts, start_ns - 1)
        hi = bisect_right(self.trade_ts, end_ns)
        return range(lo, hi)

    def covers(self, start_ns: int, end_ns: int) -> bool:
        """True when the data spans the whole interval."""
        self.build()
        return (self.start_ns is not None and self.end_ns is not None
                and self.start_ns <= start_ns and end_ns <= self.end_ns)

    @property
    def has_quotes(self) -> bool:
        self.build()
        return bool(self.mid_ts)
