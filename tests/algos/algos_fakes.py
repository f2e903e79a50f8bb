"""A fake engine (AlgoContext) for algo tests: a one-level market on a SimClock.

Events go back to the algo after ``latency_ns`` on the clock, never from inside ``send_child``
(the real engine's contract). Take children fill against ``ask``/``bid`` up to ``depth`` lots
if their limit allows (IOC); post children rest and fill when :meth:`FakeContext.trade` prints
through their price. A mixed child is split as the router's urgency split does: ``floor(urgency
x lots)`` is taken at once, the rest rests at the near touch as a post. ``unknown_ns`` keeps a
child unacknowledged (in flight / UNKNOWN) that long. Every request is checked against the
parent remainder as the fake sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from algos.base import ChildRequest, ExecutionAlgo
from marketdata.clock import SimClock
from marketdata.model import Liquidity, OrderStatus, Side, Symbol, TradeId, TradeTick, VenueId


@dataclass
class FakeChild:
    child_id: str
    request: ChildRequest
    sent_ns: int
    filled: int = 0
    done: bool = False
    acked: bool = False
    status: OrderStatus | None = None
    rest_px: int | None = None   # a mixed child's resting price (the near touch at its ack)

    @property
    def open(self) -> int:
        return 0 if self.done else self.request.lots - self.filled


@dataclass
class FakeContext:
    clock: SimClock
    side: Side = Side.BUY
    parent_lots: int = 1000
    parent_limit: int | None = None
    bid: int | None = 9_999
    ask: int | None = 10_001
    depth: int = 10**9
    latency_ns: int = 1_000_000
    unknown_ns: int = 0
    own_trades_in_feed: bool = True
    native_iceberg: bool = False
    parent_id: str = "P1"
    symbol: str = "BTC-USDT"
    tick_size: Decimal = Decimal("0.01")
    lot_size: Decimal = Decimal("0.001")
    algo: ExecutionAlgo | None = None
    children: dict[str, FakeChild] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    max_display_seen: int = 0
    _n: int = 0
    _trade_n: int = 0

    # ---------------------------------------------------------------- market view
    def best_bid_ticks(self) -> int | None:
        return self.bid

    def best_ask_ticks(self) -> int | None:
        return self.ask

    def last_trade_ticks(self) -> int | None:
        return None

    def supports_native_iceberg(self) -> bool:
        return self.native_iceberg

    def log_event(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))

    # ---------------------------------------------------------------- accounting
    def filled_lots(self) -> int:
        return sum(c.filled for c in self.children.values())

    def working_lots(self) -> int:
        return sum(c.open for c in self.children.values() if c.acked)

    def inflight_or_unknown_lots(self) -> int:
        return sum(c.open for c in self.children.values() if not c.acked)

    # ---------------------------------------------------------------- commands
    def send_child(self, request: ChildRequest) -> str:
        self.check_ledger()
        committed = self.filled_lots() + self.working_lots() + self.inflight_or_unknown_lots()
        if request.lots > self.parent_lots - committed:
            self.violations.append(f"child {request.lots} > remainder {self.parent_lots - committed}")
        if self.parent_limit is not None:
            lim = request.limit_ticks
            worse = lim is None or (lim > self.parent_limit if self.side is Side.BUY else lim < self.parent_limit)
            if worse:
                self.violations.append(f"child limit {lim} worse than parent {self.parent_limit}")
        if request.display_lots is not None:
            self.max_display_seen = max(self.max_display_seen, request.display_lots)
        elif request.style == "post":
            self.max_display_seen = max(self.max_display_seen, request.lots)
        self._n += 1
        cid = f"C{self._n}"
        child = FakeChild(cid, request, self.clock.now_ns())
        self.children[cid] = child
        ack_at = self.clock.now_ns() + self.latency_ns + self.unknown_ns
        self.clock.set_alert(ack_at, lambda ts, c=child: self._ack(c))
        return cid

    def check_ledger(self) -> None:
        """The algo's running open-lot sum equals a scan of its ledger and the fake's own view."""
        algo = self.algo
        if algo is None:
            return
        scan = sum(c.open_lots for c in algo.children.values())
        mine = sum(c.open for c in self.children.values())
        if not algo.open_lots() == scan == mine:
            self.violations.append(f"open lots: running {algo.open_lots()}, ledger scan {scan}, fake {mine}")

    def cancel_child(self, child_id: str) -> None:
        child = self.children[child_id]
        self.clock.set_alert(self.clock.now_ns() + self.latency_ns,
                             lambda ts, c=child: self._done(c, OrderStatus.CANCELED))

    # ---------------------------------------------------------------- simulation
    def _ack(self, c: FakeChild) -> None:
        if c.done:
            return
        c.acked = True
        if c.request.style == "mixed":
            far = self.ask if self.side is Side.BUY else self.bid
            near = self.bid if self.side is Side.BUY else self.ask
            lim = c.request.limit_ticks
            ok = far is not None and (lim is None or (far <= lim if self.side is Side.BUY else far >= lim))
            take = int(c.request.lots * c.request.urgency)
            if ok and far is not None and take:
                self._fill(c, min(take, self.depth), far, Liquidity.TAKER)
            c.rest_px = near if lim is None or near is None else (
                min(near, lim) if self.side is Side.BUY else max(near, lim))
            return
        if c.request.style == "take":
            far = self.ask if self.side is Side.BUY else self.bid
            lim = c.request.limit_ticks
            ok = far is not None and (lim is None or (far <= lim if self.side is Side.BUY else far >= lim))
            if ok and far is not None:
                lots = min(c.request.lots, self.depth)
                self._fill(c, lots, far, Liquidity.TAKER)
            if not c.done:
                self._done(c, OrderStatus.CANCELED)

    def _fill(self, c: FakeChild, lots: int, price: int, liq: Liquidity) -> None:
        if lots <= 0:
            return
        c.filled += lots
        assert self.algo is not None
        self.algo.on_child_fill(c.child_id, lots, price, liq)
        if self.own_trades_in_feed:
            self._trade_n += 1
            self.algo.on_trade(TradeTick(VenueId("fake"), Symbol(self.symbol), price, lots, self.side,
                                         TradeId(f"own{self._trade_n}"), self.clock.now_ns(), self.clock.now_ns()))
        if c.filled == c.request.lots:
            self._done(c, OrderStatus.FILLED)

    def _done(self, c: FakeChild, status: OrderStatus) -> None:
        if c.done:
            return
        c.done = True
        c.acked = True
        c.status = status
        assert self.algo is not None
        self.algo.on_child_done(c.child_id, status)

    def trade(self, price: int, lots: int, aggressor: Side | None = None) -> None:
        """A public trade by someone else; fills our resting posts it prints through."""
        assert self.algo is not None
        self._trade_n += 1
        agg = aggressor or self.side.opposite
        self.algo.on_trade(TradeTick(VenueId("fake"), Symbol(self.symbol), price, lots, agg,
                                     TradeId(f"t{self._trade_n}"), self.clock.now_ns(), self.clock.now_ns()))
        left = lots
        for c in list(self.children.values()):
            if left <= 0:
                break
            if c.done or not c.acked or c.request.style not in ("post", "mixed"):
                continue
            lim = c.request.limit_ticks if c.request.style == "post" else c.rest_px
            if lim is None:
                continue
            through = price <= lim if self.side is Side.BUY else price >= lim
            if through:
                n = min(left, c.open)
                left -= n
                self._fill(c, n, lim, Liquidity.MAKER)

    def start(self, algo: ExecutionAlgo) -> None:
        self.algo = algo
        algo.on_start(self)

    def run_to(self, ts_ns: int) -> None:
        self.clock.advance_to(ts_ns)
