"""The engine: parent orders in, algos + pre-trade risk + router + order manager + rate limiters +
venues wired together, journal and TCA out.

::

    from router.engine import Engine, ParentOrder, VWAP
    engine = Engine.from_toml("examples/vwap.toml")        # or Engine.default()
    handle = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="2",
                                       algo=VWAP(end="+4m", max_participation=0.1), limit_price="62000"))
    engine.run()                    # simulation: virtual time, as fast as the machine allows
    handle.status, handle.filled, handle.average_price, handle.children

Data flow (one thread, one :class:`~marketdata.clock.SimClock` in simulation)::

    replayed market data -> SimulationDriver -> simulated venues (matching engines, exchange time)
                                             -> (market-data latency) engine books -> router activity,
                                                consolidated book -> algos' on_book / on_trade
    algo.send_child(ChildRequest) -> PreTradeRisk.check  (refusal: risk_refused + on_child_done(REJECTED))
                                  -> Router.route        (routing_decision; residual = never sent)
                                  -> OrderManager.submit (client id, order_command)
                                  -> RateLimiter.acquire_at (a burst is paced on the clock, not refused)
                                  -> Venue.submit
    venue OrderEvent -> OrderManager.on_event (journal) -> algo.on_child_fill (common lots/ticks) and
                        exactly once algo.on_child_done per child; PreTradeRisk position

Live (``mode = "live"``, or shadow with ``[venues.<id>] adapter`` set) the same core runs on a
:class:`~marketdata.clock.LiveClock`; :mod:`router.engine_live` feeds ``_on_market`` from the
adapters' market-data streams (snapshot resync on gaps) and sends venue commands as owned asyncio
tasks with timeouts (``engine.run()`` blocking on uvloop, or ``await engine.run_live()``).

One algo child (a :class:`~algos.base.ChildRequest`) may become several venue orders (the router
splits it); the algo sees one child id and one ``on_child_done`` when every venue order of it is
terminal. A parent is terminal when its algo is and no venue order of it is still open; it ends
with a ``parent_finished`` journal record whose ``reason`` says why whenever it is not fully
filled. See docs/engine.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from algos.base import AlgoStatus, ChildRequest, ExecutionAlgo
from algos.params import parse_time
from algos.specs import IS, POV, TWAP, VWAP, Iceberg
from marketdata.book import L2Book
from marketdata.clock import AlertCallback, AlertHandle, Clock, LiveClock, SimClock
from marketdata.consolidated import ConsolidatedBook
from marketdata.errors import ConfigError, DataError, InstrumentError, RiskRejected, SorexError, VenueError
from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    Instrument,
    InstrumentKind,
    MarketEvent,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    QuoteTick,
    Side,
    TimeInForce,
    TradeId,
    TradeTick,
    VenueId,
)
from marketdata.replay import Dataset, default_dataset, open_dataset
from marketdata.units import CommonGrid
from router.engine_config import (
    LIVE_ADAPTERS,
    EngineConfig,
    ParentOrder,
    SimVenueSettings,
    default_balances,
    load_engine_config,
    load_engine_config_text,
    rekey,
)
from router.risk import PreTradeRisk
from router.routing import Allocation, Router, RouteRequest
from venues.base import ICEBERG_PARTS, run_now
from venues.journal import Journal
from venues.latency import LatencyModel
from venues.order_manager import OrderManager
from venues.ratelimit import PRESETS, RateLimiter
from venues.sim import QueueModel, SimulatedVenue, SimVenueConfig
from venues.sim_driver import SimulationDriver

__all__ = ["IS", "POV", "TWAP", "VWAP", "Engine", "Iceberg", "ParentHandle", "ParentOrder"]

log = logging.getLogger(__name__)
_PARENT_KEYS = frozenset({"id", "symbol", "side", "quantity", "limit_price", "algo", "submit_at"})
"""The keys of a ``[[parents]]`` table itself; any other key in its errors is an algo parameter."""

NS_PER_MS = 1_000_000

TERMINAL_STATUSES = frozenset({"filled", "finished", "cancelled", "killed", "data_ended", "rejected"})


class _ShadowJournal(Journal):
    """The journal of a shadow run: every order row (``order_command``, ``order_event``,
    ``fill``) carries ``"shadow": true``, so an order that was never sent is told from a sent one
    by its own row, not only by the run's ``run_started``."""

    _ORDER_KINDS = frozenset({"order_command", "order_event", "fill"})

    def append(self, kind: str, ts_ns: int, payload: Mapping[str, Any], *, venue: str | None = None,
               client_order_id: str | None = None, parent_id: str | None = None) -> int:
        if kind in self._ORDER_KINDS:
            payload = {**payload, "shadow": True}
        return super().append(kind, ts_ns, payload, venue=venue, client_order_id=client_order_id,
                              parent_id=parent_id)


# ============================================================================ market view books
def _plain(x: Decimal) -> str:
    """A Decimal as a plain string without trailing zeros or an exponent (``10000000``, ``0.5``)."""
    return format(x.normalize(), "f") if x else "0"


def _apply_depth(book: L2Book, msg: BookDeltas) -> None:
    """``book.apply(msg)`` with the level updates inlined (the engine's market view applies every
    depth message of the replay: ~750,000 level updates on the bundled data).

    The common case, a diff that continues the venue's update-id chain on an in-sync book, is done
    here: the same sequence rule decision as :meth:`L2Book.apply`, then each level exactly as
    :meth:`L2Book.update_bid` / :meth:`L2Book.update_ask` would set it (dict of levels, sorted
    price index with the best at the end, cached best), the same counters, ids, times and crossed
    check. Everything else (snapshots, a pending resync, the first diff after a snapshot, stale
    or gapped messages) goes through :meth:`L2Book.apply` itself. The result is the same book,
    message by message (``tests/router/test_engine_perf_paths.py`` checks it on the bundled data).
    It relies on L2Book's documented layout (marketdata/book.py module docstring)."""
    if msg.is_snapshot or book.needs_resync:
        book.apply(msg)
        return
    u = msg.last_update_id
    rule = book.sequence_rule
    if rule != "none" and u >= 0:
        last = book.last_update_id
        if book._first_after_snapshot or u <= last or not (
                msg.first_update_id == last + 1 if rule == "contiguous" else msg.prev_update_id == last):
            book.apply(msg)   # first after a snapshot, stale, or a gap: the book's own rules
            return
    bids, asks = msg.bids, msg.asks
    if bids:
        levels = book._bids
        px = book._bid_px
        best = book.best_bid_ticks
        for p, q in bids:
            if q:
                if p not in levels:
                    if best is None or p > best:
                        best = p
                        px.append(p)     # above every price: the end of the ascending index
                    else:
                        insort(px, p)
                levels[p] = q
            elif levels.pop(p, 0):
                if p == best:
                    px.pop()
                    best = px[-1] if px else None
                else:
                    del px[bisect_left(px, p)]
        book.best_bid_ticks = best
    if asks:
        levels = book._asks
        neg = book._ask_neg
        best = book.best_ask_ticks
        for p, q in asks:
            if q:
                if p not in levels:
                    if best is None or p < best:
                        best = p
                        neg.append(-p)   # below every ask: the end of the (negated) index
                    else:
                        insort(neg, -p)
                levels[p] = q
            elif levels.pop(p, 0):
                if p == best:
                    neg.pop()
                    best = -neg[-1] if neg else None
                else:
                    del neg[bisect_left(neg, -p)]
        book.best_ask_ticks = best
    book.stat_updates += len(bids) + len(asks)
    if u >= 0:
        book.last_update_id = u
    book.ts_event = msg.ts_event
    book.ts_init = msg.ts_init
    book.check_crossed()


# ============================================================================ bookkeeping records
class _VenueChild:
    """One venue order of a child group."""

    __slots__ = ("cancel_retries", "cancel_sent", "cid", "done", "group", "lots", "order", "sent", "sent_ns",
                 "style", "unsent_cancelled", "venue")

    def __init__(self, cid: ClientOrderId, group: _Group, order: Order, style: str) -> None:
        self.cid = cid
        self.group = group
        self.order = order
        self.venue = order.venue
        self.lots = order.lots
        self.style = style
        self.sent = False
        self.sent_ns = 0
        self.done = False
        self.cancel_sent = False
        self.cancel_retries = 0
        self.unsent_cancelled = False


class _Group:
    """One algo child (a ChildRequest) and the venue orders the router made of it."""

    __slots__ = ("balance_blocked", "cancel_wanted", "checked_lots", "checked_ref", "child_id", "decision_id", "done",
                 "filled", "open", "orders", "request", "returned", "run", "statuses")

    def __init__(self, child_id: str, run: _ParentRun, request: ChildRequest) -> None:
        self.child_id = child_id
        self.run = run
        self.request = request
        self.filled = 0              # common lots
        self.orders: list[_VenueChild] = []
        self.open = 0
        self.done = False
        self.returned = False
        self.cancel_wanted = False
        self.decision_id: str | None = None
        self.statuses: list[OrderStatus] = []
        self.balance_blocked = False   # nothing placed: every venue short of funds
        # what pre-trade risk accepted for this child (common lots after the dust trim, and the
        # price its notional was counted at): released, less the fills, when the child is done
        self.checked_lots = 0
        self.checked_ref: Decimal | None = None


class _ParentRun:
    """The engine's state of one parent (its algo's context is a :class:`_Ctx` over it)."""

    def __init__(self, engine: Engine, parent: ParentOrder, parent_id: str) -> None:
        self.engine = engine
        self.parent = parent
        self.id = parent_id
        self.side: Side = parent.side_
        self.quantity: Decimal = parent.quantity_
        self.limit_price: Decimal | None = parent.limit_price_
        self.algo: ExecutionAlgo | None = None
        self.status = "pending"
        self.reason: str | None = None
        self.arrival_price: Decimal | None = None
        self.start_ns: int | None = None
        self.end_ns: int | None = None
        self.filled_lots = 0                     # common lots
        self.notional = Decimal(0)
        self.fees: dict[str, Decimal] = {}
        self.by_venue: dict[str, Decimal] = {}
        self.groups: dict[str, _Group] = {}
        self.open_groups = 0
        self.children: list[_VenueChild] = []
        self.group_seq = itertools.count(1)
        self.empty_streak = 0
        # the engine's funds epoch and time when this parent's latest child found every venue short
        # of funds (None: not so); while no fill or finished order has changed any funds since, its
        # next children wait for funds without a routing decision (see _send_child)
        self.funds_blocked: tuple[int, int] | None = None
        self.last_residual: str | None = None    # why the latest child the router cut short was
        self.forced_reason: str | None = None
        self.forced_status: str | None = None
        # the order manager's (filled, working, in_flight, unknown) and the engine's _om_version it is for
        self.acct: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.acct_version = -1
        self._lots_of: tuple[Decimal, int] | None = None   # (quantity, its common lots): amend changes it

    # ------------------------------------------------------------------ what the algo context reads
    @property
    def clock(self) -> Clock:
        return self.engine._algo_clock

    @property
    def parent_id(self) -> str:
        return self.id

    @property
    def symbol(self) -> str:
        return self.parent.symbol

    @property
    def parent_lots(self) -> int:
        q = self.quantity
        memo = self._lots_of
        if memo is not None and memo[0] is q:
            return memo[1]
        lots = self.engine._to_common_lots(q)
        self._lots_of = (q, lots)
        return lots

    @property
    def tick_size(self) -> Decimal:
        return self.engine.grid.tick_size

    @property
    def lot_size(self) -> Decimal:
        return self.engine.grid.lot_size

    @property
    def own_trades_in_feed(self) -> bool:
        # replayed public trades never contain our simulated fills; a live venue's trade stream does
        return self.engine.mode == "live"

    def cancel_child(self, child_id: str) -> None:
        g = self.groups.get(child_id)
        if g is not None:
            self.engine._cancel_group(g)

    def working_lots(self) -> int:
        return self.engine._accounting(self)[1]

    def inflight_or_unknown_lots(self) -> int:
        acc = self.engine._accounting(self)
        return acc[2] + acc[3]

    def log_event(self, kind: str, **fields: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("parent=%s %s %s", self.id, kind, fields)
        if kind == "algo_finished":
            # an algo may finish on its own timer with no child open: no child event would then end
            # the parent (in a replay it would linger until the data ends, reported as data_ended)
            eng = self.engine
            eng.clock.set_alert(eng.clock.now_ns(), lambda _ts: eng._maybe_finish(self))

    # ------------------------------------------------------------------ derived figures
    @property
    def filled_quantity(self) -> Decimal:
        return self.engine.grid.lot_size * self.filled_lots

    @property
    def average_price(self) -> Decimal | None:
        q = self.filled_quantity
        if not q:
            return None
        tick = min((i.tick_size for i in self.engine.instruments.values()), default=Decimal("0.01"))
        return (self.notional / q).quantize(tick / 100)

    @property
    def slippage_bps(self) -> float | None:
        avg, arr = self.average_price, self.arrival_price
        if avg is None or arr is None or not arr:
            return None
        return round(float(int(self.side) * (avg - arr) / arr * 10_000), 3)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class _Ctx:
    """The :class:`algos.base.AlgoContext` given to one algo (a thin view of its parent run)."""

    __slots__ = ("_run", "clock", "lot_size", "own_trades_in_feed", "parent_id", "side", "symbol", "tick_size")

    def __init__(self, run: _ParentRun) -> None:
        self._run = run
        # fixed for the parent's life: plain attributes (read on every algo decision)
        self.clock = run.clock
        self.parent_id = run.id
        self.symbol = run.symbol
        self.side = run.side
        self.tick_size = run.tick_size
        self.lot_size = run.lot_size
        self.own_trades_in_feed = run.own_trades_in_feed

    parent_lots = property(lambda self: self._run.parent_lots)   # an amend changes it

    def best_bid_ticks(self) -> int | None:
        return self._run.engine._best_bid_common()

    def best_ask_ticks(self) -> int | None:
        return self._run.engine._best_ask_common()

    def last_trade_ticks(self) -> int | None:
        return self._run.engine._last_trade_common

    def send_child(self, request: ChildRequest) -> str:
        return self._run.engine._send_child(self._run, request)

    def cancel_child(self, child_id: str) -> None:
        self._run.cancel_child(child_id)

    def filled_lots(self) -> int:
        return self._run.filled_lots

    def working_lots(self) -> int:
        run = self._run
        return run.engine._accounting(run)[1]

    def inflight_or_unknown_lots(self) -> int:
        run = self._run
        acc = run.engine._accounting(run)
        return acc[2] + acc[3]

    def supports_native_iceberg(self) -> bool:
        return bool(self._run.engine._iceberg_set)

    def log_event(self, kind: str, **fields: Any) -> None:
        # only a debug log line and the algo_finished hook act on it (one per child otherwise)
        if kind == "algo_finished" or log.isEnabledFor(logging.DEBUG):
            self._run.log_event(kind, **fields)


class _ProbeClock:
    """Clock proxy for algos while the tick-to-child probe is on: an algo alert firing counts as
    the triggering event of the children it sends (measurement only)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._clock = engine.clock

    def now_ns(self) -> int:
        return self._clock.now_ns()

    def _wrap(self, callback: AlertCallback) -> AlertCallback:
        engine = self._engine

        def fire(ts: int) -> None:
            probe = engine._probe
            engine._tick_t0 = probe() if probe is not None else 0
            engine._tick_route_ns = engine._tick_venue_ns = 0
            engine._tick_trigger = "timer"
            try:
                callback(ts)
            finally:
                engine._tick_t0 = 0
        return fire

    def set_alert(self, at_ns: int, callback: AlertCallback) -> AlertHandle:
        return self._clock.set_alert(at_ns, self._wrap(callback))

    def set_timer(self, interval_ns: int, callback: AlertCallback, *, start_ns: int | None = None,
                  stop_ns: int | None = None) -> AlertHandle:
        return self._clock.set_timer(interval_ns, self._wrap(callback), start_ns=start_ns, stop_ns=stop_ns)


# ============================================================================ public handle
class ParentHandle:
    """What :meth:`Engine.submit` returns: live figures and controls of one parent order."""

    def __init__(self, engine: Engine, run: _ParentRun) -> None:
        self._engine = engine
        self._run = run

    @property
    def id(self) -> str:
        return self._run.id

    @property
    def status(self) -> str:
        """pending | working | paused | filled | finished | cancelled | killed | data_ended | rejected."""
        return self._run.status

    @property
    def reason(self) -> str | None:
        """Why the parent is not (yet) fully filled, once terminal."""
        return self._run.reason

    @property
    def quantity(self) -> Decimal:
        return self._run.quantity

    @property
    def filled(self) -> Decimal:
        """Filled quantity in base units."""
        return self._run.filled_quantity

    @property
    def average_price(self) -> Decimal | None:
        return self._run.average_price

    @property
    def arrival_price(self) -> Decimal | None:
        """Consolidated mid when the parent started."""
        return self._run.arrival_price

    @property
    def slippage_bps(self) -> float | None:
        """side * (average - arrival) / arrival * 1e4; positive is a cost."""
        return self._run.slippage_bps

    @property
    def children(self) -> list[dict[str, Any]]:
        """Every venue order of this parent: client id, venue, side, quantity, price, status, filled."""
        om = self._engine.om
        out = []
        for vc in self._run.children:
            inst = self._engine.instruments[vc.venue]
            mo = om.order(vc.cid)
            out.append({"client_order_id": vc.cid, "child_id": vc.group.child_id, "venue": vc.venue,
                        "style": vc.style, "side": "buy" if vc.order.side is Side.BUY else "sell",
                        "quantity": inst.lots_to_qty(mo.order.lots),
                        "price": None if mo.order.price_ticks is None else inst.ticks_to_price(mo.order.price_ticks),
                        "status": mo.status.value, "filled": inst.lots_to_qty(mo.executed_lots)})
        return out

    @property
    def is_terminal(self) -> bool:
        return self._run.is_terminal

    def cancel(self, reason: str = "cancelled by user") -> None:
        """Stop the algo and cancel every working child."""
        self._engine._cancel_parent(self._run, reason)

    def pause(self) -> None:
        """Cancel working children and send nothing until :meth:`resume` (a parent that has not
        started yet stays unstarted until then)."""
        run = self._run
        algo = run.algo
        if algo is None:
            if run.status == "pending":
                run.status = "paused"
            return
        if algo.status is AlgoStatus.RUNNING:
            algo.pause()
            run.status = "paused"

    def resume(self) -> None:
        run = self._run
        algo = run.algo
        if algo is None:
            if run.status == "paused":
                run.status = "pending"
                self._engine._start_pending()
            return
        if algo.status is AlgoStatus.PAUSED:
            run.status = "working"
            algo.resume()

    def amend(self, *, quantity: Decimal | str | None = None, limit_price: Decimal | str | None = None) -> None:
        """Change the parent's quantity (not below what is filled) and/or limit price."""
        self._engine._amend(self._run, quantity, limit_price)

    def wait(self) -> ParentHandle:
        """Run the engine until this parent is terminal (simulation: on virtual time; live: on
        its own event loop, which must not be running already: inside a loop ``await handle``)."""
        if not self.is_terminal:
            self._engine.run(stop_when=lambda: self._run.is_terminal)
        return self

    async def wait_live(self) -> ParentHandle:
        """Live: start the engine's transports if needed and wait until this parent is terminal
        (the transports keep running: ``await engine.stop_live()`` or ``run_live()`` end them)."""
        await self._engine.start_live()
        live = self._engine._live
        assert live is not None
        await live.wait_for(lambda: self._run.is_terminal)
        return self

    def __await__(self) -> Generator[Any, None, ParentHandle]:
        """``await handle``: live, :meth:`wait_live`; in simulation the same as :meth:`wait`
        (a simulation never suspends)."""
        if self._engine._live is not None:
            return self.wait_live().__await__()
        return self._wait_sim()

    def _wait_sim(self) -> Generator[Any, None, ParentHandle]:
        return self.wait()
        yield  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        return self._engine._parent_summary(self._run)

    def __repr__(self) -> str:
        return f"ParentHandle({self.id}, {self.status}, filled {self.filled}/{self.quantity})"


@dataclass
class RunStats:
    """Counters of the engine's run so far."""

    market_events: int = 0
    wall_seconds: float = 0.0
    sim_start_ns: int = 0
    sim_end_ns: int = 0
    data_ended: bool = False
    tick_to_child_ns: list[int] = field(default_factory=list)
    tick_to_child_route_ns: list[int] = field(default_factory=list)
    """For each ``tick_to_child_ns`` entry: the part of it spent in ``Router.route`` (every route
    made in the same callback up to that child)."""
    tick_to_child_venue_ns: list[int] = field(default_factory=list)
    """For each ``tick_to_child_ns`` entry: the part of it spent inside the venues' ``submit`` /
    ``cancel`` calls made earlier in the same callback (the simulated venue's own work: an earlier
    child's submit, the cancel of the child being replaced)."""
    tick_to_child_trigger: list[str] = field(default_factory=list)
    """For each ``tick_to_child_ns`` entry: ``market`` (a market event) or ``timer`` (an algo alert)."""
    tick_to_child_first: list[bool] = field(default_factory=list)
    """For each ``tick_to_child_ns`` entry: whether it is the first child out of its callback (the
    tick-to-trade figure proper; a later child's time includes the earlier children's work)."""


# ============================================================================ the engine
class Engine:
    """Runs parent orders (see the module docstring). Build it with :meth:`from_toml`,
    :meth:`default` or from an :class:`EngineConfig`.

    ``dataset``: replayed market data (default: ``[engine] data`` files, else the bundled data);
    ``journal``: path of the SQLite journal (default ``[engine] journal``; ``None`` = no journal);
    ``tick_probe``: a wall-clock function (e.g. ``time.perf_counter_ns``) to measure the
    in-process latency from an event (market event or algo timer) to a child order leaving the
    rate limiter, for benchmarks; ``on_progress(engine)`` is called every ``progress_interval`` of
    virtual time."""

    def __init__(self, config: EngineConfig, *, dataset: Dataset | None = None, journal: str | Path | None = None,
                 tick_probe: Callable[[], int] | None = None,
                 on_progress: Callable[[Engine], None] | None = None) -> None:
        self.config = config
        s = self.settings = config.engine
        sx = config.sorex
        self.mode = s.mode
        self.symbol = sx.routing.symbol
        unknown = [k for k in config.risk.max_position if k != self.symbol]
        if unknown:   # a typo here would silently switch the position limit off
            raise ConfigError(f"max_position for {unknown[0]!r}, a symbol this engine does not route",
                              file=config.path, key=f"risk.max_position.{unknown[0]}", allowed=self.symbol)
        self.venue_ids = [v for v in sx.enabled_venues]
        if not self.venue_ids:
            raise ConfigError("no enabled venue", file=config.path, key="venues")
        # live market data: mode live, or shadow with live adapters configured
        self.is_live = self.mode == "live" or (self.mode == "shadow" and bool(config.live))
        if self.is_live:
            missing = [v for v in self.venue_ids if v not in config.live]
            if missing:
                raise ConfigError(
                    f"venue {missing[0]!r} has no live adapter: live adapters are not available for it (mode "
                    f"{self.mode!r} on live market data needs `adapter` on every enabled venue; or use mode = "
                    "\"simulate\")", file=config.path,
                    key=f"venues.{missing[0]}.adapter", allowed=", ".join(LIVE_ADAPTERS))
            if dataset is not None:
                raise ConfigError("a dataset cannot be given in live mode", key="dataset")
        insts: dict[str, Instrument] = {}
        if self.is_live:
            from router.engine_live import live_instrument
            for v in self.venue_ids:
                insts[v] = live_instrument(config.live[v], self.symbol, config.path)
            self.dataset: Dataset | None = None
            start_ns = LiveClock().now_ns()
        else:
            custom_data = dataset is not None or bool(s.data)
            if dataset is None:
                try:
                    dataset = (open_dataset(list(s.data), s.data_format) if s.data else default_dataset())
                except DataError as exc:   # a missing or unreadable file: say which config named it
                    if not s.data:
                        raise
                    raise ConfigError(str(exc), file=config.path, key="engine.data",
                                      allowed="readable market-data files (docs/data.md)") from exc
            self.dataset = dataset
            start_ns = dataset.start_ns
            for v in self.venue_ids:
                inst = dataset.instruments.get(v)
                if inst is None or inst.symbol != self.symbol:
                    inst = dataset.instruments.get(f"{v}:{self.symbol}")
                if inst is None and config.default_venues and custom_data:
                    # the embedded default venues on other data: those the data has (e.g. spot
                    # files alone) run, the others are left out; configured venues stay an error
                    log.info("default venue %s has no %s market data in %s: left out", v, self.symbol,
                             dataset.source)
                    continue
                if inst is None:
                    raise ConfigError(f"venue {v!r} has no {self.symbol} market data in {dataset.source}",
                                      file=config.path, key=f"venues.{v}",
                                      allowed=", ".join(k for k, i in dataset.instruments.items()
                                                        if i.symbol == self.symbol))
                insts[v] = inst
            if not insts:
                raise ConfigError(f"none of the default venues ({', '.join(self.venue_ids)}) has {self.symbol} "
                                  f"market data in {dataset.source}", file=config.path, key="engine.data",
                                  allowed="data with a binance-spot or binance-usdm BTC-USDT book, or [venues.*]")
            self.venue_ids = list(insts)
        self._start_ns = start_ns
        self.instruments = insts
        self.grid = CommonGrid.from_instruments(list(insts.values()))
        self._pf = dict(self.grid.price_factor)
        self._lf = dict(self.grid.lot_factor)
        sim_clock: SimClock | None = None
        if self.is_live:
            self.clock: Clock = LiveClock()
        else:
            self.clock = sim_clock = SimClock(start_ns)
        self._probe = tick_probe
        self._tick_t0 = 0
        self._tick_route_ns = 0          # probe on: Router.route time inside the current callback
        self._tick_venue_ns = 0          # probe on: Venue.submit / cancel time inside the current callback
        self._tick_trigger = "market"
        self._tick_last_t0 = 0           # probe on: the callback start of the last child recorded
        self._algo_clock: Clock = _ProbeClock(self) if tick_probe is not None else self.clock
        self.books = {v: L2Book(v, self.symbol, sequence_rule=(
            "contiguous" if dataset is None else dataset.sequence_rule(v))) for v in insts}
        self._book_list = [(b, self._pf[v], v) for v, b in self.books.items()]
        self._ref_venue = self.venue_ids[0]
        self._ref_book = self.books[self._ref_venue]
        self._ref_f = self._pf[self._ref_venue]
        self._basis: dict[str, int] = dict.fromkeys(self.books, 0)
        self._basis_f: dict[str, float] = {}
        self.consolidated = ConsolidatedBook(
            self.grid, self.clock, books=self.books,
            taker_fees_bps={v: float(sx.venues[v].fee_tier.taker_bps) for v in insts})
        self.router = Router(sx.routing, {v: sx.venues[v] for v in insts}, insts, self.books, self.clock,
                             capacity=self)
        fine = min(self._lf.values())
        fine_venues = [v for v in insts if self._lf[v] == fine]
        self._fine_router: Router | None = None
        if len(fine_venues) < len(insts):
            self._fine_router = Router(sx.routing, {v: sx.venues[v] for v in fine_venues},
                                       {v: insts[v] for v in fine_venues}, {v: self.books[v] for v in fine_venues},
                                       self.clock, capacity=self, decision_prefix="RF-")
        self._fine_set = frozenset(fine_venues)
        self.risk = PreTradeRisk(config.risk)
        jpath = journal if journal is not None else s.journal
        journal_cls = _ShadowJournal if self.mode == "shadow" else Journal
        self.journal: Journal | None = journal_cls(jpath, synchronous=s.journal_sync) if jpath else None
        # simulation: r<seed> (reproducible); live: unique per start, so that a restarted run never
        # reuses the client order ids (sx-<run>-<parent>-<n>) of orders an earlier run left open
        self.run_id = f"r{s.seed}" if not self.is_live else "L" + _base36(self.clock.now_ns() // 1_000_000)[-7:]
        self.om = OrderManager(self.clock, list(insts.values()), journal=self.journal, run_id=self.run_id)
        for v in insts:   # the manager's lot factors, computed now rather than in the first child's path
            self.om.to_parent_units(v, self.symbol, 1)
        self.venues: dict[str, SimulatedVenue] = {}
        self._waiting_funds: dict[_Group, bool] = {}   # children parked for funds -> risk_checked
        self._funds_epoch = 0   # + 1 on every fill and every finished order (funds may have moved)
        self.limiters: dict[str, RateLimiter] = {}
        self._send_queues: dict[str, deque[_VenueChild]] = {}
        self._live: Any = None   # router.engine_live.LiveRuntime in live mode / shadow on live data
        self.driver: SimulationDriver | None = None
        if self.is_live:
            from router.engine_live import LiveRuntime
            live = {}
            for v in insts:
                st = config.live[v]
                vc = sx.venues[v]
                if not st.explicit_credentials and vc.api_key_env and vc.api_secret_env:
                    st = st.with_credential_names(vc.api_key_env, vc.api_secret_env)
                live[v] = st
            try:
                self._live = LiveRuntime(self, live, self.clock, send_orders=self.mode == "live")
            except BaseException:
                self.close()   # e.g. a missing credential variable: nothing was sent, nothing journaled
                raise
        for k, v in enumerate(insts):
            if dataset is None or sim_clock is None:
                break
            sim = config.simulation.get(v, SimVenueSettings())
            vc = sx.venues[v]
            half_rtt = vc.latency.order_rtt_ms / 2
            entry = sim.order_entry_latency_ms if sim.order_entry_latency_ms is not None else half_rtt
            ack = sim.ack_latency_ms if sim.ack_latency_ms is not None else half_rtt
            inst_kind = insts[v].kind
            if sim.leverage != 1 and inst_kind not in (InstrumentKind.PERPETUAL, InstrumentKind.INVERSE_PERPETUAL):
                raise ConfigError(f"leverage {sim.leverage} on {v}, whose {insts[v].symbol} is {inst_kind.value}",
                                  file=config.path, key=f"simulation.{v}.leverage",
                                  allowed="leverage on perpetual venues only (spot is 1)")
            venue = SimulatedVenue(SimVenueConfig(
                venue=VenueId(v), instruments=[insts[v]], fees=vc.fees,
                balances=dict(vc.balances) if vc.balances else default_balances(insts[v]),
                market_data_latency=LatencyModel.lognormal(int(sim.market_data_latency_ms * NS_PER_MS),
                                                           sim.latency_sigma),
                order_entry_latency=LatencyModel.lognormal(int(entry * NS_PER_MS), sim.latency_sigma),
                ack_latency=LatencyModel.lognormal(int(ack * NS_PER_MS), sim.latency_sigma),
                rate_limit_orders=sim.venue_rate_limit_orders or _venue_orders_per_10s(
                    sim.rate_limit_preset or v), queue_model=QueueModel(sim.queue_model),
                sequence_rule=dataset.sequence_rule(v), seed=s.seed * 1000 + k, leverage=sim.leverage,
                native_iceberg=(sim.native_iceberg if sim.native_iceberg is not None
                                else inst_kind is InstrumentKind.SPOT)),
                sim_clock)
            venue.set_event_handler(self._on_order_event)
            self.venues[v] = venue
            preset = sim.rate_limit_preset or (v if v in PRESETS else None)
            if preset is not None and preset != "none":
                if preset not in PRESETS:
                    raise ConfigError(f"unknown rate-limit preset {preset!r}", file=config.path,
                                      key=f"simulation.{v}.rate_limit_preset", allowed=", ".join(sorted(PRESETS)))
                self.limiters[v] = RateLimiter.from_preset_with_caps(
                    preset, self.clock, **dataclasses.asdict(vc.rate_limit))
        if dataset is not None and sim_clock is not None:
            self.driver = SimulationDriver(sim_clock, dataset.events(list(insts)))
            for venue in self.venues.values():
                self.driver.add_venue(venue)
            # the engine's view is built from depth and trades: bookTickers (most of the events) are
            # not even queued on the delayed feeds
            self.driver.subscribe(self._on_market, list(insts), delayed=True, types=(BookDeltas, TradeTick))
        # venues that take native icebergs (a display quantity): the simulated venues' or the live
        # adapters' capabilities (see _send_child for a child with a display)
        caps = {v: x.info.capabilities for v, x in self.venues.items()}
        if self._live is not None:
            caps.update({v: x.info.capabilities for v, x in self._live.venues.items()})
        self._iceberg_set = frozenset(v for v in insts if caps.get(v) is not None and caps[v].native_iceberg)
        self._on_progress = on_progress
        self._last_trade_common: int | None = None
        self._price_history: deque[tuple[int, Decimal]] = deque(maxlen=36_000)
        self._last_bucket = -1
        self._first_trade_ns = 0
        self._traded_lots = 0
        self._runs: dict[str, _ParentRun] = {}
        self._active: list[_ParentRun] = []
        self._pending: list[_ParentRun] = []
        self._vchildren: dict[str, _VenueChild] = {}
        self._om_version = 0
        self._min_lots_cache: dict[int | None, int] = {}
        self._mid_memo: dict[int, Decimal] = {}
        self._limit_ticks: dict[tuple[str, Decimal], int] = {}   # (venue, parent limit) -> limit in venue ticks
        self._parent_seq = itertools.count(1)
        self._started = False
        self._stop_when: Callable[[], bool] | None = None
        self._until_ns: int | None = None
        self._deferred: list[ParentOrder] = []   # live: parents with submit_at, scheduled at start
        self._scheduled = 0   # parents with a submit_at alert not yet fired: the run is not over
        if s.until is not None:
            if self.is_live:
                raise ConfigError("until is not supported in live mode", file=config.path, key="engine.until")
            self._until_ns = parse_time(s.until, now_ns=start_ns, key="engine.until")
            if self._until_ns <= start_ns:
                raise ConfigError(f"until {s.until!r} is not after the start of the data ({start_ns} ns): the run "
                                  "would end before anything happened", file=config.path, key="engine.until",
                                  allowed="a time after the data start, e.g. '+5m'")
        self.stats = RunStats(sim_start_ns=start_ns, sim_end_ns=start_ns)
        self.killed: str | None = None
        md = ({"source": "live", "format": ",".join(sorted({config.live[v].adapter for v in insts}))}
              if self.is_live else
              {"source": "default" if not s.data else list(s.data), "format": dataset.format if dataset else None})
        self._journal("run_started", {
            "run_id": self.run_id, "mode": self.mode, "market_data": md,
            "venues": list(insts), "config_path": config.path, "seed": s.seed})
        for i, p in enumerate(config.parents):
            self._schedule_toml_parent(p, i)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_toml(cls, path: str | Path, **kw: Any) -> Engine:
        """Engine from a sorex TOML file (``[routing]``, ``[venues.*]``, ``[engine]``, ``[risk]``,
        ``[simulation.*]``, ``[[parents]]``; without venues: the embedded default venues)."""
        return cls(load_engine_config(path), **kw)

    @classmethod
    def from_toml_text(cls, text: str, *, file: str = "<string>", **kw: Any) -> Engine:
        return cls(load_engine_config_text(text, file=file), **kw)

    @classmethod
    def default(cls, **kw: Any) -> Engine:
        """Engine on the embedded default: simulated binance-spot and binance-usdm (BTC-USDT)
        replaying the bundled real data, VIP0 fees, realistic latencies, ample balances."""
        return cls(load_engine_config_text("", file="<default>"), **kw)

    # ------------------------------------------------------------------ CapacityProvider (router)
    def available_balance(self, venue: str, asset: str) -> Decimal | None:
        """The simulated venue's free balance of ``asset``; live, the venue's balance less our
        orders it does not show yet (:meth:`LiveRuntime.available_balance`); ``None``: unknown.

        Called by the router for every venue of every child: the simulated venue's own ledger is
        read directly (``run_now(venue.balances())[asset].free`` builds every asset's ``Balance``
        first; same value, ~10 % of a child's engine time)."""
        v = self.venues.get(venue)
        if v is None or self.mode != "simulate":
            if self.mode == "live" and self._live is not None:
                return self._live.available_balance(venue, asset)   # type: ignore[no-any-return]
            return None
        free = v._free
        if asset in free:
            bal = free[asset]
            if v._transit:   # orders on their way to the venue will lock part of it
                bal = max(Decimal(0), bal - v.in_transit(asset))
            lev = v.config.leverage   # a perpetual's buying power: free margin x leverage
            return bal if lev == 1 else bal * lev
        return Decimal(0) if asset in v._locked else None

    def reducible_lots(self, venue: str, side: Side) -> int | None:
        """Lots of a ``side`` order on a simulated perpetual ``venue`` that would only reduce the
        open position, so need no margin: the opposite position less everything our open orders
        on that side there may still execute (conservative: the venue counts only their reducing
        share). ``None``: not a derivative venue, or not simulating."""
        v = self.venues.get(venue)
        if v is None or self.mode != "simulate":
            return None
        pos = v.position_lots(self.symbol)
        if pos is None:
            return None
        opposite = -pos if side is Side.BUY else pos
        if opposite <= 0:
            return 0
        for mo in self.om.open_orders():
            o = mo.order
            if o.venue == venue and o.side is side:
                opposite -= mo.open_lots
        return opposite if opposite > 0 else 0

    @property
    def waiting_for_funds(self) -> int:
        """How many child orders are parked because no venue had the funds for them (they retry
        on the next fill, finished order, cancel or, live, a rise of a venue's free balance; at
        the latest after ``balance_wait_s``)."""
        return len(self._waiting_funds)

    def order_headroom(self, venue: str) -> int | None:
        """How many new orders ``venue``'s rate limiter would let through now, less the orders
        already queued behind it (simulation: the engine's client-side limiter; live: the
        adapter's own); ``None`` without a limiter. The router excludes a venue at 0 rather than
        queue a child behind the limiter, where its price would go stale."""
        lim = self.limiters.get(venue)
        if lim is None:
            live = self._live
            v = None if live is None else live.venues.get(venue)
            lim = getattr(v, "limiter", None)
            if lim is None:
                return None
        h: int = lim.headroom("new_order", self.clock.now_ns())
        queue = self._send_queues.get(venue)
        if queue:
            h -= len(queue)
        return h if h > 0 else 0

    # ------------------------------------------------------------------ market view (hot)
    def _aligned_top(self) -> tuple[int | None, int | None]:
        """Best bid and ask across venues in common ticks, each venue shifted by its basis to the
        reference venue (the first configured): the algos' view. If the shifted books still cross
        (the basis moved faster than its estimate) the reference venue's own top is used. O(venues)."""
        bid: int | None = None
        ask: int | None = None
        basis = self._basis
        for book, f, v in self._book_list:
            b, a = book.best_bid_ticks, book.best_ask_ticks
            if b is not None:
                b = b * f - basis[v]
                if bid is None or b > bid:
                    bid = b
            if a is not None:
                a = a * f - basis[v]
                if ask is None or a < ask:
                    ask = a
        if bid is not None and ask is not None and bid >= ask:
            ref, f = self._ref_book, self._ref_f
            rb, ra = ref.best_bid_ticks, ref.best_ask_ticks
            return (None if rb is None else rb * f), (None if ra is None else ra * f)
        return bid, ask

    def _best_bid_common(self) -> int | None:
        return self._aligned_top()[0]

    def _best_ask_common(self) -> int | None:
        return self._aligned_top()[1]

    def _raw_best(self) -> tuple[int | None, int | None]:
        bid: int | None = None
        ask: int | None = None
        for book, f, _ in self._book_list:
            b, a = book.best_bid_ticks, book.best_ask_ticks
            if b is not None and (bid is None or b * f > bid):
                bid = b * f
            if a is not None and (ask is None or a * f < ask):
                ask = a * f
        return bid, ask

    def _update_basis(self, venue: str) -> None:
        """EWMA (weight 1/64 per update) of a venue's mid minus the reference venue's mid, in
        common ticks: spot and perpetuals of one symbol trade at a premium/discount to each other,
        and an algo comparing raw prices across them would see a permanently crossed book."""
        ref = self._ref_book
        rb, ra = ref.best_bid_ticks, ref.best_ask_ticks
        book = self.books[venue]
        b, a = book.best_bid_ticks, book.best_ask_ticks
        if rb is None or ra is None or b is None or a is None:
            return
        f = self._pf[venue]
        diff = ((b + a) * f - (rb + ra) * self._ref_f) / 2
        est = self._basis_f.get(venue)
        est = diff if est is None else est + (diff - est) / 64
        self._basis_f[venue] = est
        self._basis[venue] = round(est)

    def mid_price(self) -> Decimal | None:
        """Consolidated mid (quote per base) of the engine's view, or ``None``."""
        bb, ba = self._raw_best()
        return self._mid_of(bb, ba)

    def _mid_of(self, bb: int | None, ba: int | None) -> Decimal | None:
        """``tick_size * (bb + ba) / 2`` (common ticks), memoised per ``bb + ba``."""
        if bb is None or ba is None:
            return None
        s = bb + ba
        mid = self._mid_memo.get(s)
        if mid is None:
            if len(self._mid_memo) > 1024:
                self._mid_memo.clear()
            mid = self._mid_memo[s] = self.grid.tick_size * s / 2
        return mid

    def _to_common_lots(self, quantity: Decimal) -> int:
        n = quantity / self.grid.lot_size
        if n != n.to_integral_value():
            raise InstrumentError(f"{self.symbol}: quantity {quantity} is not a multiple of the common lot "
                                  f"{self.grid.lot_size}")
        return int(n)

    def _min_routable_lots(self, top: tuple[int | None, int | None] | None = None) -> int:
        """Smallest order (common lots) some venue accepts at the current mid: its min quantity
        and min notional, rounded up to its lot. Used to keep children and parent remainders
        above what can be routed (a remainder below it could never fill: "dust"). ``top``: the
        current ``_raw_best()`` when the caller has it already."""
        bb, ba = self._raw_best() if top is None else top
        key = None if bb is None or ba is None else (bb + ba) >> 12   # cached per price bucket
        cached = self._min_lots_cache.get(key)
        if cached is not None:
            return cached
        mid = None if key is None else self.grid.tick_size * (bb + ba) / 2  # type: ignore[operator]
        best: int | None = None
        for v, inst in self.instruments.items():
            lots = max(1, inst.qty_to_lots(inst.min_quantity))
            if inst.min_quantity % inst.lot_size:
                lots += 1
            if mid is not None and inst.min_notional:
                need = inst.min_notional / (mid * inst.lot_size * inst.contract_size)
                lots = max(lots, int(need.to_integral_value(rounding=ROUND_CEILING)) + 1)
            common = lots * self._lf[v]
            if best is None or common < best:
                best = common
        if len(self._min_lots_cache) > 4096:
            self._min_lots_cache.clear()
        self._min_lots_cache[key] = best or 1
        return best or 1

    def _on_market(self, ev: MarketEvent) -> None:
        t = type(ev)
        if t is QuoteTick:   # the engine's view is built from depth and trades: nothing to do
            return
        probe = self._probe
        if probe is not None:
            self._tick_t0 = probe()
            self._tick_route_ns = self._tick_venue_ns = 0
            self._tick_trigger = "market"
        if t is BookDeltas:
            _apply_depth(self.books[ev.venue], ev)  # type: ignore[arg-type]
            if ev.venue != self._ref_venue:
                self._update_basis(ev.venue)
            self.router.on_book(ev.venue)
            fr = self._fine_router
            if fr is not None and ev.venue in self._fine_set:
                fr.on_book(ev.venue)
            for run in self._active:
                algo = run.algo
                if algo is not None:
                    algo.on_book(ev)  # type: ignore[arg-type]
            if self._pending:
                self._start_pending()
        elif t is TradeTick:
            tr: TradeTick = ev  # type: ignore[assignment]
            pf = self._pf[tr.venue]
            px_common = tr.price_ticks * pf
            self._last_trade_common = px_common
            bucket = tr.ts_event // 100_000_000
            if bucket != self._last_bucket:   # one (ts, price) sample per 100 ms for model estimates
                self._last_bucket = bucket
                self._price_history.append((tr.ts_event, self.grid.tick_size * px_common))
                if not self._first_trade_ns:
                    self._first_trade_ns = tr.ts_event
            self._traded_lots += tr.lots * self._lf[tr.venue]
            if self._active:
                lf = self._lf[tr.venue]
                # the same values in common units (a venue on the common grid passes its own tick)
                ct = tr if pf == 1 and lf == 1 else TradeTick(
                    tr.venue, tr.symbol, tr.price_ticks * pf, tr.lots * lf, tr.aggressor, tr.trade_id,
                    tr.ts_event, tr.ts_init)
                for run in self._active:
                    algo = run.algo
                    if algo is not None:
                        algo.on_trade(ct)
        self._tick_t0 = 0

    # ------------------------------------------------------------------ journal
    def _journal(self, kind: str, payload: dict[str, Any], **kw: Any) -> None:
        if self.journal is not None:
            self.journal.append(kind, self.clock.now_ns(), payload, **kw)

    # ------------------------------------------------------------------ parents
    def _schedule_toml_parent(self, p: ParentOrder, index: int) -> None:
        """Submit (or schedule at ``submit_at``) the config's ``index``-th ``[[parents]]`` entry; a
        :class:`ConfigError` from its validation names the config file and ``parents[index].key``
        (``parents[index].params.key`` for an algo parameter)."""
        try:
            self._schedule_toml_parent_unchecked(p)
        except ConfigError as exc:
            if exc.file is not None and exc.key is not None and exc.key.startswith("parents["):
                raise
            key = exc.key
            where = (f"parents[{index}].{key if key in _PARENT_KEYS else 'params.' + key}" if key is not None
                     else f"parents[{index}]")
            raise rekey(exc, exc.file or self.config.path or "<config>", where) from None

    def _schedule_toml_parent_unchecked(self, p: ParentOrder) -> None:
        if p.submit_at is None:
            self.submit(p)
            return
        if self.is_live and (self._live is None or not self._live.started):
            self._validate_parent(p)
            self._deferred.append(p)   # anchored at the start of the live run
            return
        at = self._submit_time(p)
        self._validate_parent(p)

        def later(_ts: int) -> None:
            self._scheduled -= 1
            try:
                self._submit(p, record_refusal=True)
            except RiskRejected as exc:   # journaled (risk_refused), the parent rejected; the run goes on
                log.warning("scheduled parent %s refused at submit_at: %s", p.id, exc)
                if self._live is not None:
                    self._live.check_waiters()
                elif self._should_stop() and self.driver is not None:
                    self.driver.stop()
        self._scheduled += 1
        self.clock.set_alert(at, later)

    def _submit_time(self, p: ParentOrder) -> int:
        """The exchange time ``p.submit_at`` names (``"+10s"`` from the data start, ns, ISO),
        refused with a :class:`ConfigError` when it is after the end of the replayed data."""
        at = parse_time(p.submit_at, now_ns=self._start_ns, key="submit_at")
        ds = self.dataset
        if not self.is_live and ds is not None and at < ds.start_ns:
            early_s = (ds.start_ns - at) / 1e9
            raise ConfigError(f"parent {p.id!r}: submit_at {p.submit_at!r} is {early_s:.1f} s before the data starts",
                              file=self.config.path, key="submit_at",
                              allowed="a time within the data (e.g. '+10s' from its start)")
        until = self._until_ns
        if until is not None and at >= until:
            raise ConfigError(f"parent {p.id!r}: submit_at {p.submit_at!r} is not before [engine] until "
                              f"{self.settings.until!r}: it would never be submitted", file=self.config.path,
                              key="submit_at",
                              allowed="a time before [engine] until")
        if not self.is_live and ds is not None and at > ds.end_ns:
            late_s = (at - ds.end_ns) / 1e9
            span_s = (ds.end_ns - self._start_ns) // 1_000_000_000
            raise ConfigError(f"parent {p.id!r}: submit_at {p.submit_at!r} is {late_s:.1f} s after the data ends",
                              file=self.config.path, key="submit_at",
                              allowed=f"a time before the end of the data ({span_s} s after its start)")
        return at

    def _notional_excess(self, ref: Decimal | None, quantity: Decimal) -> str | None:
        """``"X > limit"`` when ``ref x quantity`` exceeds ``[risk] max_parent_notional``, else
        ``None`` (also without a limit or a price)."""
        lim = self.config.risk.max_parent_notional
        if lim is None or ref is None or ref * quantity <= lim:
            return None
        return f"{ref * quantity:.2f} > {lim}"

    def _refused(self, rule: str, why: str, parent_id: str, order: dict[str, Any], **extra: Any) -> None:
        """Journal a parent-level or order-manager ``risk_refused`` (the per-child checks of
        :class:`PreTradeRisk` count their own); every one counts in ``summary()["risk_refusals"]``."""
        self.risk.refusals += 1
        self._journal("risk_refused", {"rule": rule, "reason": why, "parent_id": parent_id, "order": order, **extra},
                      parent_id=parent_id)

    def _release_scheduled(self, run: _ParentRun) -> None:
        """A Python-submitted parent's ``submit_at`` came: it may start now (unless it was
        cancelled or killed meanwhile; a parent paused meanwhile waits for resume())."""
        if run.status in ("pending", "paused"):
            self._pending.append(run)
            self._start_pending()

    def _validate_parent(self, p: ParentOrder) -> None:
        if p.symbol != self.symbol:
            raise ConfigError(f"unknown symbol {p.symbol!r}: the engine routes {self.symbol} "
                              f"on {', '.join(self.venue_ids)}", file=self.config.path, key="symbol",
                              allowed=self.symbol)
        lots = self._to_common_lots_checked(p.quantity_)
        if lots <= 0:
            raise ConfigError(f"quantity {p.quantity} is below one lot ({self.grid.lot_size})", key="quantity")
        p.algo.common(now_ns=self.clock.now_ns(), side=p.side_, tick_size=self.grid.tick_size,
                      lot_size=self.grid.lot_size, limit_price=p.limit_price_)
        if p.id is not None and p.id in self._runs:
            raise ConfigError(f"parent id {p.id!r} already used", key="id")

    def _to_common_lots_checked(self, q: Decimal) -> int:
        try:
            return self._to_common_lots(q)
        except InstrumentError as exc:
            raise ConfigError(str(exc), key="quantity", allowed=f"multiples of {self.grid.lot_size}") from None

    def submit(self, parent: ParentOrder) -> ParentHandle:
        """Accept a parent order (validated now; nothing is sent before it passes). It starts at
        once when the market is two-sided, else as soon as it is (after ``[engine] warmup``);
        with a ``submit_at`` not reached yet, not before that time (its handle says ``pending``
        until then, and it can be paused or cancelled meanwhile). A parent-level risk refusal
        raises :class:`RiskRejected` (journaled as ``risk_refused``)."""
        return self._submit(parent)

    def _submit(self, parent: ParentOrder, *, record_refusal: bool = False) -> ParentHandle:
        self._validate_parent(parent)
        at: int | None = None
        if parent.submit_at is not None:
            if self.is_live and (self._live is None or not self._live.started):
                raise ConfigError(f"parent {parent.id or '(unnamed)'}: submit_at from Python in live mode "
                                  "needs the live run started (a relative time is anchored at its start)",
                                  key="submit_at", allowed="submit after engine.start_live(), or use [[parents]]")
            at = self._submit_time(parent)
        pid = parent.id or f"P{next(self._parent_seq)}"
        while pid in self._runs:
            pid = f"P{next(self._parent_seq)}"
        run = _ParentRun(self, parent, pid)
        # parent-level guardrails: refused before anything is sent
        lim = self.config.risk
        rule = None
        if self.killed is not None:
            rule, why = "kill_switch", f"kill switch is on ({self.killed})"
        elif parent.symbol in lim.blacklist:
            rule, why = "blacklist", f"{parent.symbol} is blacklisted"
        else:
            ref = parent.limit_price_ if parent.limit_price_ is not None else self.mid_price()
            excess = self._notional_excess(ref, parent.quantity_)
            if excess is not None:
                rule, why = "max_parent_notional", f"parent notional {excess}"
        if rule is not None:
            self._refused(rule, why, pid, self._parent_payload(run))
            if record_refusal:
                # a [[parents]] entry refused at its submit_at: the run goes on, and the parent is
                # reported (summary, --json, journal) as rejected with the rule, not dropped
                self._runs[pid] = run
                run.forced_status, run.forced_reason = "rejected", f"refused by pre-trade risk ({rule}): {why}"
                self._finish(run)
            raise RiskRejected(why, rule=rule)
        parent.algo.prepare()
        self.om.prepare_parent(pid)
        self._runs[pid] = run
        handle = ParentHandle(self, run)
        if at is not None and at > self.clock.now_ns():
            self.clock.set_alert(at, lambda _ts: self._release_scheduled(run))
            return handle
        self._pending.append(run)
        if self._market_ready():
            self._start_pending()
        return handle

    def _market_ready(self) -> bool:
        now = self.clock.now_ns()
        if self._best_bid_common() is None or self._best_ask_common() is None:
            return False
        if all(b.best_bid_ticks is not None and b.best_ask_ticks is not None for b, _, _ in self._book_list):
            return True
        return now >= self._start_ns + self.settings.warmup_ns

    def _start_pending(self) -> None:
        if not self._market_ready():
            return
        pending, self._pending = self._pending, []
        for run in pending:
            if run.status == "pending":
                self._start(run)
            elif run.status == "paused":   # paused before it started: it waits for resume()
                self._pending.append(run)

    def _start(self, run: _ParentRun) -> None:
        p = run.parent
        now = self.clock.now_ns()
        if run.limit_price is None:
            # a market parent submitted before there was a mid (e.g. before the replay began) could
            # not be checked at submit: it is checked now, before anything is sent
            excess = self._notional_excess(self.mid_price(), run.quantity)
            if excess is not None:
                why = f"parent notional {excess}"
                self._refused("max_parent_notional", why, run.id, self._parent_payload(run))
                run.forced_status, run.forced_reason = "rejected", f"refused by pre-trade risk: {why}"
                self._finish(run)
                return
        min_child = self.grid.lot_size * self._min_routable_lots()
        try:
            algo = p.algo.build(now_ns=now, side=run.side, tick_size=self.grid.tick_size,
                                lot_size=self.grid.lot_size, limit_price=run.limit_price,
                                defaults={"min_child_size": str(min_child)}, market=self._market_stats())
        except ConfigError as exc:
            # a parameter that only the market at the start makes invalid (e.g. an iceberg display
            # below the smallest order the venues accept at this price): the parent ends here,
            # nothing sent, instead of the error escaping from the market-data callback
            log.error("parent %s: algo %s could not start: %s", run.id, p.algo.name, exc)
            run.forced_status = "rejected"
            run.forced_reason = (f"algo could not start: {exc} (min_child_size defaults to the smallest order "
                                 f"the venues accept at the start, {min_child})")
            self._finish(run)
            return
        run.algo = algo
        cmid = self.consolidated.mid_ticks()   # merged books of the healthy venues
        run.arrival_price = (self.grid.tick_size * Decimal(repr(cmid)) if cmid is not None else self.mid_price())
        run.start_ns = now
        run.status = "working"
        if self.journal is not None:
            self._journal("parent_submitted", self._parent_payload(run), parent_id=run.id)
        self._active.append(run)
        try:
            algo.on_start(_Ctx(run))
        except SorexError as exc:
            # e.g. a model input that cannot be estimated from the market: the parent ends here
            log.error("parent %s: algo %s could not start: %s", run.id, p.algo.name, exc)
            algo.status = AlgoStatus.CANCELLED
            run.forced_status, run.forced_reason = "rejected", f"algo could not start: {exc}"
            for g in list(run.groups.values()):
                if not g.done:   # children it sent before it raised: cancelled, not left working
                    self._cancel_group(g)
            self._maybe_finish(run)
            return
        log.info("parent %s started: %s %s %s with %s (arrival %s)", run.id, p.side_.name.lower(), run.quantity,
                 p.symbol, p.algo, run.arrival_price)
        self._maybe_finish(run)

    def _accounting(self, run: _ParentRun) -> tuple[int, int, int, int]:
        """The order manager's accounting of ``run`` as ``(filled, working, in_flight, unknown)``
        (O(orders not yet terminal)), cached until the next order command or event: algos ask
        for it several times per decision."""
        if run.acct_version == self._om_version:
            return run.acct
        acc = run.acct = self.om.parent_accounting_values(run.id)
        run.acct_version = self._om_version
        return acc

    def _market_stats(self) -> dict[str, Any]:
        """What the engine observed so far, for algos that estimate model inputs (IS)."""
        span_s = (self.clock.now_ns() - self._first_trade_ns) / 1e9 if self._first_trade_ns else 0.0
        volume = self.grid.lot_size * self._traded_lots
        return {"price_history": list(self._price_history),
                "volume_per_second": (volume / Decimal(repr(span_s))) if span_s > 1 else None}

    def _parent_payload(self, run: _ParentRun) -> dict[str, Any]:
        p = run.parent
        return {"parent_id": run.id, "symbol": p.symbol, "side": "buy" if run.side is Side.BUY else "sell",
                "quantity": str(run.quantity), "algo": p.algo.name, "params": p.algo.to_dict(),
                "limit_price": None if run.limit_price is None else str(run.limit_price),
                "arrival_price": None if run.arrival_price is None else str(run.arrival_price),
                "decision_ts_ns": self.clock.now_ns()}

    def _cancel_parent(self, run: _ParentRun, reason: str, *, status: str = "cancelled") -> None:
        if run.is_terminal:
            return
        run.forced_status, run.forced_reason = status, reason
        if run.algo is None:
            if run in self._pending:
                self._pending.remove(run)
            self._finish(run)
            return
        run.algo.cancel(reason)
        for g in list(run.groups.values()):
            if not g.done:
                self._cancel_group(g)
        self._maybe_finish(run)

    def _amend(self, run: _ParentRun, quantity: Decimal | str | None, limit_price: Decimal | str | None) -> None:
        if run.is_terminal:
            raise ConfigError(f"parent {run.id} is {run.status}; it cannot be amended", key="amend")
        q = None if quantity is None else ParentOrder(run.parent.symbol, run.side, quantity, run.parent.algo).quantity_
        lp = None if limit_price is None else ParentOrder(run.parent.symbol, run.side, "1", run.parent.algo,
                                                          limit_price=limit_price).limit_price_
        if q is not None:
            new_lots = self._to_common_lots_checked(q)
            f, _w, i, u = self._accounting(run)
            if new_lots < f + i + u:
                # orders sent and not acknowledged yet (or UNKNOWN) may fill whatever the cancels
                # do (an IOC take in flight executes on arrival): below them the parent would be
                # overfilled, and end "filled" with more than its quantity
                floor = self.grid.lot_size * (f + i + u)
                raise ConfigError(f"parent {run.id}: new quantity {q} is below what is filled or on its way to "
                                  f"the venues ({floor}); amend again once those orders are acknowledged",
                                  key="quantity", allowed=f">= {floor}")
        new_q = q if q is not None else run.quantity
        new_lp = lp if lp is not None else run.limit_price
        mid = self.mid_price()
        ref = new_lp if new_lp is not None else mid
        old_ref = run.limit_price if run.limit_price is not None else mid
        excess = self._notional_excess(ref, new_q)
        if excess is not None and (old_ref is None or ref * new_q > old_ref * run.quantity):  # type: ignore[operator]
            # the parent-level guardrail of submit, applied to an amend that raises the notional
            why = f"amended parent notional {excess}"
            self._refused("max_parent_notional", why, run.id, self._parent_payload(run),
                          amend={"quantity": None if q is None else str(q),
                                 "limit_price": None if lp is None else str(lp)})
            raise RiskRejected(why, rule="max_parent_notional")
        if run.algo is None:
            run.quantity = q if q is not None else run.quantity
            run.limit_price = lp if lp is not None else run.limit_price
            return
        # the algo re-plans inside amend() and may send at once: the engine's remainder and limit
        # checks (_send_child, _place) must already see the new values; restored if it refuses
        old_q, old_lp = run.quantity, run.limit_price
        if q is not None:
            run.quantity = q
        if lp is not None:
            run.limit_price = lp
        try:
            run.algo.amend(quantity=q, limit_price=lp)
        except BaseException:
            run.quantity, run.limit_price = old_q, old_lp
            raise
        self._maybe_finish(run)

    def kill(self, reason: str) -> None:
        """Kill switch: refuse every new child, stop every parent and cancel every working order."""
        log.error("engine kill switch: %s", reason)
        self.killed = reason
        self.risk.trip_kill_switch(reason)
        for run in list(self._runs.values()):
            self._cancel_parent(run, f"killed: {reason}", status="killed")
        for mo in self.om.open_orders():
            vc = self._vchildren.get(mo.client_order_id)
            if vc is not None and not vc.done:
                self._cancel_venue_child(vc)

    # ------------------------------------------------------------------ children
    def _send_child(self, run: _ParentRun, req: ChildRequest) -> str:
        gid = f"{run.id}-c{next(run.group_seq)}"
        g = _Group(gid, run, req)
        run.groups[gid] = g
        run.open_groups += 1
        grid = self.grid
        side = run.side
        lots = req.lots
        # keep the parent's remainder routable: never leave less than the smallest order any
        # venue accepts (it could never be filled); the trimmed part returns to the algo unfilled
        top = self._raw_best()
        dust = self._min_routable_lots(top)
        f, w, i, u = self._accounting(run)
        after = run.parent_lots - (f + w + i + u) - lots
        if 0 < after < dust:
            lots -= dust - after
        if (lots < dust and after != 0) or lots <= 0:
            g.returned = True
            g.statuses.append(OrderStatus.EXPIRED)
            self._defer_done(g)
            return gid
        qty = grid.lot_size * lots
        limit_price = None if req.limit_ticks is None else grid.tick_size * req.limit_ticks
        mid = self._mid_of(*top)
        try:
            self.risk.check_order(self.symbol, side, qty, limit_price, run.id, mid)
        except RiskRejected as exc:
            self._journal("risk_refused", {
                "rule": exc.rule, "reason": str(exc), "parent_id": run.id,
                "order": {"child_id": gid, "symbol": self.symbol, "side": "buy" if side is Side.BUY else "sell",
                          "quantity": str(qty), "limit_price": None if limit_price is None else str(limit_price),
                          "style": req.style}}, parent_id=run.id)
            g.statuses.append(OrderStatus.REJECTED)
            g.returned = True
            self._defer_done(g, risk_checked=False)
            return gid
        g.checked_lots = lots
        g.checked_ref = limit_price if limit_price is not None else mid
        blocked = run.funds_blocked
        if blocked is not None and blocked[0] == self._funds_epoch \
                and self.clock.now_ns() - blocked[1] < self.settings.balance_wait_ns:
            # the parent's previous child found every venue short of funds and nothing has freed
            # any since: this one waits for funds too, without routing (an algo that cancels and
            # re-sends each retry journaled two empty decisions a second while the funds were out)
            g.returned = True
            g.balance_blocked = True
            self._defer_done(g)
            return gid
        request = RouteRequest(self.symbol, side, qty, limit_price, req.style, req.urgency, run.id)
        probe = self._probe
        t_route = probe() if probe is not None else 0
        display = req.display_lots if self._iceberg_set else None
        decision = self.router.route(request)
        # a child with a display (the iceberg algo's remainder, sent when some venue takes
        # icebergs): the router chooses the venues as for any post (see _iceberg_orders)
        orders = self._iceberg_orders(decision.allocations, display) if display is not None else None
        if orders is not None and not any(show for _, show in orders):
            # no venue order would carry the display (posted where no venue takes icebergs, or the
            # shares floored to nothing): the child is a synthetic iceberg's, the display alone,
            # routed as such (the remainder's venue may refuse the display share, below its lot or
            # minimum notional, child after child)
            if display is not None and display < lots:
                request = RouteRequest(self.symbol, side, grid.lot_size * display, limit_price, req.style,
                                       req.urgency, run.id)
                decision = self.router.route(request)
            orders = None
        if orders is None and decision.residual_lots and self._fine_router is not None:
            # the venues with the coarse lots could not take the odd part: try the whole child on
            # the fine-lot venues alone and keep whichever leaves less behind
            alt = self._fine_router.route(request)
            if alt.residual_lots < decision.residual_lots:
                decision = alt
        if probe is not None:
            self._tick_route_ns += probe() - t_route
        g.decision_id = decision.decision_id
        if decision.residual_lots:
            run.last_residual = decision.residual_reason
        if self.journal is not None:   # to_dict() is costly (~0.8 ms): only when it is written
            self._journal("routing_decision", decision.to_dict(), parent_id=run.id)
        allocs = decision.allocations
        if orders is None:
            orders = [(a.lots, None) for a in allocs]
        for alloc, (lots, show) in zip(allocs, orders, strict=True):
            if lots:
                self._place(g, alloc.venue, lots, alloc.price_ticks, alloc.order_type, alloc.time_in_force,
                            alloc.style, show)
        g.returned = True
        if g.open == 0:
            g.balance_blocked = decision.short_of_funds_only
            if g.balance_blocked:
                run.funds_blocked = (self._funds_epoch, self.clock.now_ns())
            self._defer_done(g)
        else:
            run.empty_streak = 0
            run.funds_blocked = None
        return gid

    def _iceberg_parts(self, venue: str) -> int:
        """The most slices a native iceberg may have on ``venue`` (Binance's ICEBERG_PARTS: the
        simulated venue's ``iceberg_parts``; live, the adapter's configured limit, else Binance's)."""
        sim = self.venues.get(venue)
        if sim is not None:
            return sim.config.iceberg_parts
        live = self._live.venues.get(venue) if self._live is not None else None
        if live is not None:
            return int(live.config.iceberg_parts.get(self.instruments[venue].symbol, ICEBERG_PARTS))
        return ICEBERG_PARTS

    def _iceberg_orders(self, allocs: list[Allocation], display: int) -> list[tuple[int, int | None]]:
        """Per allocation, ``(lots, display)`` of its venue order (venue lots) for a child showing
        ``display`` common lots. The display is split in proportion to the allocations, floored to
        each venue's lot, so the orders together never show more. An allocation no larger than
        its share goes whole, as a plain order; one whose share is below a venue lot is not placed
        (0 lots). Otherwise, on a venue that takes icebergs the order carries its share and is at
        most share x the venue's ICEBERG_PARTS (Binance refuses more; capped to the share itself, it
        is a plain order); on one that does not, only the share is placed, as a plain order. What
        is not placed returns to the algo unfilled and is sent again (a synthetic iceberg on a venue
        without icebergs). When no order carries a display, :meth:`_send_child` routes the display
        alone instead."""
        lf = self._lf
        total = sum(a.lots * lf[a.venue] for a in allocs)
        out: list[tuple[int, int | None]] = []
        for a in allocs:
            f = lf[a.venue]
            d = (display * a.lots * f // total if total else 0) // f
            if d >= a.lots:
                out.append((a.lots, None))
            elif a.venue in self._iceberg_set and d:
                lots = min(a.lots, d * self._iceberg_parts(a.venue))
                # capped to its display (ICEBERG_PARTS 1), the order shows all of itself: a plain one
                out.append((lots, d) if lots > d else (d, None))
            else:
                out.append((d, None))
        return out

    def _place(self, g: _Group, venue: str, lots: int, price_ticks: int | None, order_type: Any, tif: Any,
               style: str, display_lots: int | None = None) -> None:
        run = g.run
        inst = self.instruments[venue]
        # last line of defence: never send a child priced through the parent limit
        if run.limit_price is not None:
            key = (venue, run.limit_price)
            lim = self._limit_ticks.get(key)
            if lim is None:
                if len(self._limit_ticks) > 256:
                    self._limit_ticks.clear()
                lim = self._limit_ticks[key] = inst.price_to_ticks(run.limit_price, run.side)
            if price_ticks is None or (price_ticks - lim) * int(run.side) > 0:
                log.error("parent=%s %s: allocation at %s ticks crosses the limit %s; dropped", run.id, venue,
                          price_ticks, lim)
                return
        # the order manager's parent_exposure rule, on the cached accounting (the manager's own
        # check walks every child of the parent on each submit)
        units = lots * self._lf[venue]
        f, w, i, u = self._accounting(run)
        exposure = f + w + i + u
        if exposure + units > run.parent_lots:
            why = f"parent {run.id}: exposure {exposure} + {units} would exceed {run.parent_lots}"
            self._refused("parent_exposure", why, run.id, {"venue": venue, "lots": lots, "price_ticks": price_ticks})
            log.error("%s", why)
            return
        order = self.om.submit(venue=venue, symbol=self.symbol, side=run.side, lots=lots, order_type=order_type,
                               price_ticks=price_ticks, time_in_force=tif, parent_id=run.id,
                               decision_id=g.decision_id, display_lots=display_lots)
        # the new order is PENDING_NEW with all its lots open: the parent's accounting grows by
        # exactly that (in flight), so a current cached copy is updated instead of recomputed
        fresh = run.acct_version == self._om_version
        self._om_version += 1
        if fresh:   # (f, w, i, u) read above, at the version before this order
            run.acct = (f, w, i + self.om.to_parent_units(venue, self.symbol, lots), u)
            run.acct_version = self._om_version
        vc = _VenueChild(order.client_order_id, g, order, style)
        self._vchildren[vc.cid] = vc
        g.orders.append(vc)
        g.open += 1
        run.children.append(vc)
        if self.mode == "shadow":
            now = self.clock.now_ns()
            # journaled, never sent: a resting order is acknowledged locally and works until the
            # algo cancels it; an IOC/FOK expires locally (it would have had to fill at once)
            sim = self.venues.get(venue)
            if sim is not None:
                at = now + sim.config.order_entry_latency.sample(sim.rng) + sim.config.ack_latency.sample(sim.rng)
            else:   # shadow on live market data: the venue's configured round trip
                at = now + int(self.config.sorex.venues[venue].latency.order_rtt_ms * NS_PER_MS)
            if tif in (TimeInForce.IOC, TimeInForce.FOK):
                self.clock.set_alert(at, lambda _ts: self._local_event(vc, OrderEventKind.EXPIRED,
                                                                       "shadow mode: journaled, not sent"))
            else:
                self.clock.set_alert(at, lambda _ts: self._local_event(vc, OrderEventKind.ACCEPTED,
                                                                       "shadow mode: journaled, not sent"))
            vc.sent = True
            return
        self._enqueue_send(vc)

    def _enqueue_send(self, vc: _VenueChild) -> None:
        """Pace new orders through the venue's rate limiter, FIFO per venue. Capacity is taken only
        when an order actually leaves, so an order cancelled while it waits costs nothing (as a
        cancelled ``await limiter.acquire()`` live) and cannot push later orders further out."""
        lim = self.limiters.get(vc.venue)
        if lim is None:
            self._send_now(vc)
            return
        queue = self._send_queues.get(vc.venue)
        if queue is None:
            queue = self._send_queues[vc.venue] = deque()
        elif queue:
            queue.append(vc)
            return
        wait = lim.try_acquire("new_order", self.clock.now_ns())
        if wait == 0:
            self._send_now(vc)
            return
        queue.append(vc)
        self._arm_send_queue(vc.venue, wait)

    def _arm_send_queue(self, venue: str, wait_ns: int) -> None:
        self.clock.set_alert(self.clock.now_ns() + wait_ns, lambda _ts: self._drain_send_queue(venue))

    def _drain_send_queue(self, venue: str) -> None:
        queue = self._send_queues[venue]
        lim = self.limiters[venue]
        while queue:
            vc = queue[0]
            if vc.unsent_cancelled or vc.done:
                queue.popleft()
                continue
            wait = lim.try_acquire("new_order", self.clock.now_ns())
            if wait:
                self._arm_send_queue(venue, wait)
                return
            queue.popleft()
            self._send_now(vc)

    def _send_now(self, vc: _VenueChild) -> None:
        if vc.unsent_cancelled or vc.done:
            return
        probe = self._probe
        if probe is not None and self._tick_t0:
            st = self.stats
            st.tick_to_child_ns.append(probe() - self._tick_t0)
            st.tick_to_child_route_ns.append(self._tick_route_ns)
            st.tick_to_child_venue_ns.append(self._tick_venue_ns)
            st.tick_to_child_trigger.append(self._tick_trigger)
            st.tick_to_child_first.append(self._tick_t0 != self._tick_last_t0)
            self._tick_last_t0 = self._tick_t0
        vc.sent = True
        vc.sent_ns = self.clock.now_ns()
        live = self._live
        if live is not None:
            live.submit(vc)   # an owned task with a timeout; events come back via _on_order_event
            return
        t_venue = probe() if probe is not None and self._tick_t0 else 0
        try:
            run_now(self.venues[vc.venue].submit(vc.order))
        except VenueError as exc:
            self.om.on_send_failed(vc.cid, exc)
            self._after_event(vc)
        if t_venue:
            self._tick_venue_ns += probe() - t_venue  # type: ignore[misc]

    def _foreign_order_event(self, ev: OrderEvent) -> None:
        """An event for an order this run did not send (an earlier run's, or one placed by hand on
        the same account): journaled as ``foreign_order_event`` and logged; it changes nothing
        here (no parent, no accounting)."""
        f = ev.fill
        payload: dict[str, Any] = {"venue": ev.venue, "client_order_id": ev.client_order_id, "event": ev.kind.value}
        if ev.reason:
            payload["reason"] = ev.reason
        inst = self.instruments.get(str(ev.venue))
        if f is not None and inst is not None:
            payload.update(side="buy" if f.side is Side.BUY else "sell", quantity=str(inst.lots_to_qty(f.lots)),
                           price=str(inst.ticks_to_price(f.price_ticks)), trade_id=f.trade_id)
        log.info("%s: %s for %s, an order this run did not send: ignored", ev.venue, ev.kind.value,
                 ev.client_order_id)
        self._journal("foreign_order_event", payload, venue=str(ev.venue), client_order_id=ev.client_order_id)

    def _on_send_failed(self, vc: _VenueChild, exc: BaseException) -> None:
        """Live: a submit task failed (timeout / disconnect: UNKNOWN; refused: REJECTED)."""
        if not self.om.has_order(vc.cid):
            return
        self.om.on_send_failed(vc.cid, exc)
        self._om_version += 1
        self._after_event(vc)

    def _on_cancel_failed(self, vc: _VenueChild, exc: BaseException) -> None:
        """Live: a cancel task failed. A refusal puts the order back to working and the cancel is
        tried again after ``cancel_retry_ms`` while the child is still wanted cancelled; a cancel
        without an answer (timeout, dropped connection) leaves the order PENDING_CANCEL and is
        sent again after ``cancel_retry_ms`` (it may never have reached the venue: the order
        would keep working there, and its parent never end) until the venue reports the order."""
        if not self.om.has_order(vc.cid):
            return
        self.om.on_send_failed(vc.cid, exc)
        self._om_version += 1
        mo = self.om.order(vc.cid)
        if not mo.status.is_terminal and vc.cancel_retries < 20 and (
                mo.status is OrderStatus.PENDING_CANCEL or vc.group.cancel_wanted):
            vc.cancel_retries += 1
            self.clock.set_alert(self.clock.now_ns() + self.settings.cancel_retry_ns,
                                 lambda _ts: self._resend_cancel(vc))
        self._after_event(vc)

    def _resend_cancel(self, vc: _VenueChild) -> None:
        """A cancel retry: sent again as is while the order is still PENDING_CANCEL (the last one
        had no answer), else as a new cancel (:meth:`_cancel_venue_child`)."""
        if vc.done or self._live is None or not self.om.has_order(vc.cid):
            return
        if self.om.order(vc.cid).status is OrderStatus.PENDING_CANCEL:
            self.om.cancel(vc.cid)   # journaled again: the cancel leaves again
            self._om_version += 1
            self._live.cancel(vc)
            return
        self._cancel_venue_child(vc)

    def _local_event(self, vc: _VenueChild, kind: OrderEventKind, reason: str) -> None:
        now = self.clock.now_ns()
        self._on_order_event(OrderEvent(kind=kind, client_order_id=vc.cid, venue=VenueId(vc.venue), ts_event=now,
                                        ts_init=now, reason=reason))

    def _defer_done(self, g: _Group, *, risk_checked: bool = True) -> None:
        """Report a child that left nothing at any venue (refused or nothing routable) as done a
        little later (never from inside send_child), backing off while it keeps happening."""
        run = g.run
        run.empty_streak += 1
        delay = self.settings.local_reject_delay_ns * (1 << min(run.empty_streak - 1, 20))
        if g.balance_blocked:
            # every venue is short of funds: wait for something that may free them (a fill, a
            # finished order: _release_waiting) or for a cancel, at most balance_wait
            delay = min(delay, self.settings.balance_wait_ns)
            self._waiting_funds[g] = risk_checked
        else:
            delay = min(delay, 1_000_000_000)
        if not risk_checked:
            g.filled = 0
        self.clock.set_alert(self.clock.now_ns() + delay, lambda _ts: self._group_done(g, risk_checked))

    def _release_waiting(self, only: _Group | None = None) -> None:
        """End the wait of the children parked for funds (all, or ``only``): reported done now,
        through the clock (never from inside an event or a cancel call)."""
        waiting = self._waiting_funds
        if only is not None:
            if only not in waiting:
                return
            items = [(only, waiting.pop(only))]
        else:
            items = list(waiting.items())
            waiting.clear()
        now = self.clock.now_ns()
        for g, rc in items:
            self.clock.set_alert(now, functools.partial(self._group_done_at, g, rc))

    def _cancel_group(self, g: _Group) -> None:
        g.cancel_wanted = True
        if self._waiting_funds:
            self._release_waiting(g)
        for vc in list(g.orders):
            if not vc.done:
                self._cancel_venue_child(vc)

    def _cancel_venue_child(self, vc: _VenueChild) -> None:
        if vc.done:
            return
        if not vc.sent:
            vc.unsent_cancelled = True
            # Deferred through the clock: the algo must never be called back from inside cancel_child
            # (an algo that re-plans on on_child_done would otherwise recurse without bound).
            self.clock.set_alert(self.clock.now_ns(), lambda _ts: self._local_event(
                vc, OrderEventKind.CANCELED, "cancelled before leaving the rate limiter"))
            return
        st = self.om.order(vc.cid).status
        if st.is_terminal or st is OrderStatus.PENDING_CANCEL:
            return
        if self.mode == "shadow":
            self.om.cancel(vc.cid)
            self.clock.set_alert(self.clock.now_ns(), lambda _ts: self._local_event(
                vc, OrderEventKind.CANCELED, "shadow mode: cancelled locally"))
            return
        self.om.cancel(vc.cid)
        self._om_version += 1
        vc.cancel_sent = True
        if self._live is not None:
            self._live.cancel(vc)
            return
        lim = self.limiters.get(vc.venue)
        now = self.clock.now_ns()
        at = lim.acquire_at("cancel") if lim is not None else now
        venue = self.venues[vc.venue]
        if at <= now:
            probe = self._probe
            t_venue = probe() if probe is not None and self._tick_t0 else 0
            run_now(venue.cancel(vc.cid))
            if t_venue:
                self._tick_venue_ns += probe() - t_venue  # type: ignore[misc]
        else:
            self.clock.set_alert(at, lambda _ts: run_now(venue.cancel(vc.cid)))

    # ------------------------------------------------------------------ venue events
    def _on_order_event(self, ev: OrderEvent) -> None:
        self._om_version += 1
        om = self.om
        cid = ev.client_order_id
        vc = self._vchildren.get(cid)
        if vc is None or not om.has_order(cid):
            if isinstance(ev, OrderEvent) and cid and not om.has_order(cid):
                self._foreign_order_event(ev)
            else:
                om.on_event(ev)   # journals it as garbled
            return
        mo = om.order(cid)
        before = mo.filled_lots
        om.on_event(ev)
        delta = mo.filled_lots - before
        K = OrderEventKind
        kind = ev.kind
        if delta > 0 and ev.fill is not None:
            self._on_fill(vc, ev.fill.price_ticks, delta, ev.fill.fee, ev.fill.fee_currency, ev.fill.liquidity,
                          ev.fill.trade_id)
        elif kind is K.ACCEPTED:
            self.router.record_ack(vc.venue, self.clock.now_ns() - vc.sent_ns if vc.sent else None)
        elif kind is K.REJECTED and ev.reason and "cancelled before" not in ev.reason:
            self.router.record_reject(vc.venue)
            log.info("%s %s rejected: %s (%s)", vc.venue, cid, ev.reason, ev.code)
        elif kind is K.CANCEL_REJECTED and vc.group.cancel_wanted and not mo.status.is_terminal \
                and vc.cancel_retries < 20:
            # the cancel overtook the order on the way in (or crossed a fill): try again shortly
            vc.cancel_retries += 1
            self.clock.set_alert(self.clock.now_ns() + self.settings.cancel_retry_ns,
                                 lambda _ts: self._cancel_venue_child(vc))
        if (kind is K.ACCEPTED or delta > 0) and vc.group.cancel_wanted and vc.cancel_sent \
                and not mo.status.is_terminal and mo.status is not OrderStatus.PENDING_CANCEL:
            # the order reached the venue after every cancel of it was refused as unknown (a slow
            # order entry can outlast the retries): it is live now, so cancel it now, or it would
            # rest until the data ends and hold its parent open
            self._cancel_venue_child(vc)
        if delta > 0 or mo.status.is_terminal:
            self._funds_epoch += 1
            if self._waiting_funds:
                self._release_waiting()   # funds may have been freed: let the children waiting for them retry
        self._after_event(vc)

    def _after_event(self, vc: _VenueChild) -> None:
        mo = self.om.order(vc.cid)
        if mo.status.is_terminal and not vc.done:
            vc.done = True
            g = vc.group
            g.open -= 1
            g.statuses.append(mo.status)
            if vc.sent:
                self.router.record_outcome(vc.venue, "take" if vc.style == "take" else "post", vc.lots,
                                           mo.executed_lots)
            if g.open == 0 and g.returned:
                self._group_done(g, True)

    def _on_fill(self, vc: _VenueChild, price_ticks: int, lots: int, fee: Decimal, fee_ccy: str,
                 liquidity: Any, trade_id: TradeId) -> None:
        g = vc.group
        run = g.run
        inst = self.instruments[vc.venue]
        common_lots = lots * self._lf[vc.venue]
        common_px = price_ticks * self._pf[vc.venue]
        qty = inst.lots_to_qty(lots)
        px = inst.ticks_to_price(price_ticks)
        g.filled += common_lots
        run.filled_lots += common_lots
        run.notional += px * qty
        run.by_venue[vc.venue] = run.by_venue.get(vc.venue, Decimal(0)) + qty
        run.fees[fee_ccy] = run.fees.get(fee_ccy, Decimal(0)) + fee
        self.risk.on_fill(self.symbol, run.side, qty)
        if not g.done:
            self.risk.on_order_released(self.symbol, run.side, qty)
        elif g.checked_ref is not None:
            # the child's end released all it had not filled then, this fill included: it is not
            # pending any more, but its notional executed after all
            self.risk.count_parent_notional(run.id, g.checked_ref * qty)
        if run.limit_price is not None and (px - run.limit_price) * int(run.side) > 0:
            log.error("parent=%s %s %s: fill %s at %s is through the limit %s", run.id, vc.venue, vc.cid, trade_id,
                      px, run.limit_price)
        if g.done:
            log.warning("parent=%s child %s: fill after the child was reported done", run.id, g.child_id)
        elif run.algo is not None:
            run.algo.on_child_fill(g.child_id, common_lots, common_px, liquidity)

    def _group_done_at(self, g: _Group, risk_checked: bool, _ts: int) -> None:
        self._group_done(g, risk_checked)

    def _group_done(self, g: _Group, risk_checked: bool) -> None:
        if g.done:
            return
        g.done = True
        self._waiting_funds.pop(g, None)
        run = g.run
        run.open_groups -= 1
        req_lots = g.request.lots
        if risk_checked and g.checked_lots:
            # release exactly what the check counted (a trimmed child was checked for less than
            # it asked; a child returned before the check was never counted)
            unfilled = self.grid.lot_size * max(0, g.checked_lots - g.filled)
            if unfilled:
                self.risk.on_order_released(self.symbol, run.side, unfilled)
                ref = g.checked_ref
                if ref is not None:
                    self.risk.release_parent_notional(run.id, ref * unfilled)
        sts = g.statuses
        if g.filled >= req_lots:
            status = OrderStatus.FILLED
        elif sts and all(s is OrderStatus.REJECTED for s in sts):
            status = OrderStatus.REJECTED
        elif OrderStatus.EXPIRED in sts or not sts:
            status = OrderStatus.EXPIRED
        else:
            status = OrderStatus.CANCELED
        if run.algo is not None:
            run.algo.on_child_done(g.child_id, status)
        self._maybe_finish(run)

    # ------------------------------------------------------------------ parent completion
    def _maybe_finish(self, run: _ParentRun) -> None:
        if run.is_terminal or run.algo is None:
            return
        if not run.algo.status.is_terminal:
            if run.algo.status is AlgoStatus.PAUSED:
                run.status = "paused"
            return
        if run.open_groups > 0:
            return
        self._finish(run)

    def _finish(self, run: _ParentRun) -> None:
        algo = run.algo
        full = run.filled_lots >= run.parent_lots
        if full:
            run.status, run.reason = "filled", None
        elif run.forced_status is not None:
            run.status, run.reason = run.forced_status, run.forced_reason
        elif algo is not None and algo.status is AlgoStatus.FINISHED:
            run.status, run.reason = "finished", algo.finish_reason
        elif algo is not None and algo.status is AlgoStatus.CANCELLED:
            run.status, run.reason = "cancelled", algo.finish_reason
        else:
            run.status, run.reason = "finished", algo.finish_reason if algo is not None else "not started"
        if not full:
            why = run.reason or "stopped"
            if run.status == "finished" and run.last_residual and "limit price" not in why:
                # the router's word on why children were cut short (balances, caps, no venue)
                why += f"; the router could not place all of a child: {run.last_residual}"
            run.reason = f"{why}; filled {run.filled_quantity} of {run.quantity}"
        run.end_ns = self.clock.now_ns()
        if run in self._active:
            self._active.remove(run)
        if run.start_ns is None and self.journal is not None:
            # it never started (cancelled while pending, the data or its algo ended it first): its
            # parent_submitted row is written now, so that every parent_finished has one (the TCA
            # refused the journal: "parent_finished for unknown parent")
            self._journal("parent_submitted", {**self._parent_payload(run), "started": False}, parent_id=run.id)
        avg = run.average_price
        self._journal("parent_finished", {"parent_id": run.id, "status": run.status, "filled": str(run.filled_quantity),
                                          "average_price": None if avg is None else str(avg), "reason": run.reason},
                      parent_id=run.id)
        log.info("parent %s %s: filled %s/%s avg %s (%s)", run.id, run.status, run.filled_quantity, run.quantity,
                 avg, run.reason or "complete")
        if self._live is not None:
            self._live.check_waiters()
        elif self._should_stop() and self.driver is not None:
            self.driver.stop()

    def _should_stop(self) -> bool:
        if self._stop_when is not None:
            return self._stop_when()
        return self._all_terminal()

    def _all_terminal(self) -> bool:
        """Every parent is terminal and none is still scheduled (a ``submit_at`` not reached yet)."""
        return self._scheduled == 0 and all(r.is_terminal for r in self._runs.values())

    # ------------------------------------------------------------------ running
    def run(self, until_ns: int | None = None, *, stop_when: Callable[[], bool] | None = None) -> list[ParentHandle]:
        """Simulation: replay until every parent is terminal (or ``stop_when()`` is true), the
        data ends, or ``until_ns`` (exchange time). Parents still working when the data ends are
        stopped, their orders cancelled, and they finish as ``data_ended`` with a reason.
        Returns the handles of every parent."""
        if self._live is not None:
            if until_ns is not None:
                raise ConfigError("until_ns is not supported on live market data", key="until_ns")
            return self._run_live_blocking(stop_when)
        assert self.driver is not None
        self._stop_when = stop_when
        progress: AlertHandle | None = None
        if self._on_progress is not None:
            cb = self._on_progress
            progress = self.clock.set_timer(self.settings.progress_interval_ns, lambda _ts: cb(self))
        until = until_ns if until_ns is not None else self._until_ns
        try:
            if self._runs and self._should_stop():
                return self.handles()
            st = self.driver.run(until_ns=until)
            self.stats.market_events += st.events
            self.stats.wall_seconds += st.wall_seconds
            self.stats.sim_end_ns = self.clock.now_ns()
            if self.driver.exhausted or (until_ns is None and until is not None and self.clock.now_ns() >= until):
                self._end_of_data()   # the data (or the configured [engine] until) is over
        finally:
            if progress is not None:
                progress.cancel()
            self._stop_when = None
        return self.handles()

    # ------------------------------------------------------------------ running live
    def _run_live_blocking(self, stop_when: Callable[[], bool] | None) -> list[ParentHandle]:
        """``run()`` on live market data: its own event loop (uvloop when installed) until every
        parent is terminal or ``stop_when()``; Ctrl-C cancels working orders, then returns."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigError("engine.run() cannot be called from a running event loop in live mode: "
                              "use `await engine.run_live()`", key="engine.mode")
        from router.engine_live import new_event_loop_runner
        with new_event_loop_runner() as runner:
            try:
                runner.run(self.run_live(stop_when=stop_when))
            except KeyboardInterrupt:
                log.warning("interrupted: working orders were cancelled")
        return self.handles()

    async def start_live(self) -> None:
        """Live: connect the venues, open the market-data streams and seed the books; parents
        then start as soon as every book is two-sided. Idempotent."""
        live = self._live
        if live is None:
            raise ConfigError("start_live() needs mode = \"live\" (or shadow with live adapters)",
                              file=self.config.path, key="engine.mode")
        if live.started:
            return
        now = self.clock.now_ns()
        self._start_ns = now
        self.stats.sim_start_ns = self.stats.sim_end_ns = now
        if self._on_progress is not None:
            cb = self._on_progress
            self.clock.set_timer(self.settings.progress_interval_ns, lambda _ts: cb(self))
        await live.start()
        deferred, self._deferred = self._deferred, []
        for i, p in enumerate(deferred):
            self._schedule_toml_parent(p, i)

    async def stop_live(self, reason: str = "engine stopped") -> None:
        """Live: cancel every parent still working and every open venue order, wait for the
        acknowledgements (``[engine] shutdown_timeout_s``), then close streams and adapters.
        Orders still open after that wait are queried at the venue (at most another
        ``shutdown_timeout_s``, :meth:`LiveRuntime.resolve_unsettled`); those still unresolved are
        journaled (``order_event``, ``source: "unresolved"``) and named in their parent's ``reason``."""
        live = self._live
        if live is None or live.closed:
            return
        if live.started:
            for run in list(self._runs.values()):
                if not run.is_terminal:
                    self._cancel_parent(run, reason)
            for mo in self.om.open_orders():
                vc = self._vchildren.get(mo.client_order_id)
                if vc is not None and not vc.done:
                    self._cancel_venue_child(vc)
            if not await live.settle(self.settings.shutdown_timeout_s):
                log.error("shutdown: %d venue order(s) still open after %.1f s", len(self.om.open_orders()),
                          self.settings.shutdown_timeout_s)
                # ask the venues once more; what stays open is journaled and named in its parent's reason
                notes = await live.resolve_unsettled(self.settings.shutdown_timeout_s)
                for run in self._runs.values():
                    if run.id in notes and not run.is_terminal:
                        run.forced_status = run.forced_status or "cancelled"
                        run.forced_reason = f"{run.forced_reason or reason}; {notes[run.id]}"
        for run in list(self._runs.values()):
            if not run.is_terminal:
                if run.algo is not None and not run.algo.status.is_terminal:
                    run.algo.cancel(reason)
                if run.forced_status is None:
                    run.forced_status, run.forced_reason = "cancelled", reason
                self._finish(run)
        self.stats.sim_end_ns = self.clock.now_ns()
        self.stats.market_events = live.stats["market_events"]
        await live.close()

    async def run_live(self, *, stop_when: Callable[[], bool] | None = None) -> list[ParentHandle]:
        """Live (``mode = "live"``, or shadow on live market data): start the transports, run
        until every parent is terminal (or ``stop_when()``), then shut down (:meth:`stop_live`).
        If cancelled (Ctrl-C), working orders are cancelled before it returns."""
        live = self._live
        if live is None:
            raise ConfigError("run_live() needs mode = \"live\" (or shadow with live adapters)",
                              file=self.config.path, key="engine.mode")
        reason = "engine stopped"
        try:
            try:
                await self.start_live()
            except SorexError as exc:   # e.g. orders left open by an earlier run: nothing was sent
                reason = f"live start failed: {exc}"
                raise
            cond = stop_when or self._all_terminal
            await live.wait_for(cond)
        except asyncio.CancelledError:
            reason = "interrupted"
            raise
        finally:
            await self.stop_live(reason)
        return self.handles()

    def _end_of_data(self) -> None:
        if self.stats.data_ended:
            return
        self.stats.data_ended = True
        now = self.clock.now_ns()
        why = f"market data ended at {now} ns before the parent completed"
        for run in list(self._runs.values()):
            if not run.is_terminal:
                self._cancel_parent(run, why, status="data_ended")
        assert self.driver is not None
        self.driver.flush(self.settings.flush_ns)
        for run in list(self._runs.values()):
            if not run.is_terminal:
                if run.algo is not None and not run.algo.status.is_terminal:
                    run.algo.cancel(why)
                self._finish(run)
        self.stats.sim_end_ns = self.clock.now_ns()

    def handles(self) -> list[ParentHandle]:
        return [ParentHandle(self, r) for r in self._runs.values()]

    def parent(self, parent_id: str) -> ParentHandle:
        try:
            return ParentHandle(self, self._runs[parent_id])
        except KeyError:
            raise ConfigError(f"unknown parent {parent_id!r}", key="parent_id",
                              allowed=", ".join(self._runs)) from None

    # ------------------------------------------------------------------ reporting
    def _parent_summary(self, run: _ParentRun) -> dict[str, Any]:
        avg = run.average_price
        return {
            "id": run.id, "symbol": run.parent.symbol, "side": "buy" if run.side is Side.BUY else "sell",
            "algo": run.parent.algo.name, "status": run.status, "quantity": str(run.quantity),
            "filled": str(run.filled_quantity), "average_price": None if avg is None else str(avg),
            "arrival_price": None if run.arrival_price is None else str(run.arrival_price),
            "limit_price": None if run.limit_price is None else str(run.limit_price),
            "slippage_bps": run.slippage_bps, "children": len(run.children),
            "child_requests": len(run.groups),
            "venues": {v: str(q.quantize(self.grid.lot_size)) for v, q in sorted(run.by_venue.items())},
            "fees": {c: str(f) for c, f in sorted(run.fees.items())},
            "start_ns": run.start_ns, "end_ns": run.end_ns, "reason": run.reason,
        }

    def summary(self) -> dict[str, Any]:
        """The run's summary: mode, venues, market events, virtual span, and every parent."""
        return {"mode": self.mode, "venues": list(self.instruments), "symbol": self.symbol,
                "market_events": self.stats.market_events, "sim_start_ns": self.stats.sim_start_ns,
                "sim_end_ns": self.stats.sim_end_ns, "data_ended": self.stats.data_ended,
                "risk_refusals": self.risk.refusals, "killed": self.killed,
                "journal": None if self.journal is None else str(self.journal.path),
                "parents": [self._parent_summary(r) for r in self._runs.values()],
                "accounts": self._accounts()}

    def _accounts(self) -> dict[str, Any]:
        """Per simulated venue at this moment: each asset's free and locked balance (decimal
        strings; locked includes a perpetual's position margin) and the signed position of a
        perpetual (``None`` on spot). Live and shadow runs: ``{}`` (the venue is the record)."""
        out: dict[str, Any] = {}
        if self.mode != "simulate":
            return out   # shadow: nothing was sent, the simulated ledgers never moved
        for name, v in self.venues.items():
            bal = run_now(v.balances())
            pos = v.position_lots(self.symbol)
            inst = self.instruments[name]
            out[name] = {"balances": {a: {"free": _plain(b.free), "locked": _plain(b.locked)}
                                      for a, b in bal.items()},
                         "position": None if pos is None else str(inst.lots_to_qty(pos))}
        return out

    def close(self) -> None:
        """Close the journal. Live, after :meth:`stop_live` (``async with engine:`` does both); a
        close with the live transports still running cannot stop them (they need the loop) and
        says so in the log."""
        live = self._live
        if live is not None and live.started and not live.closed:
            log.error("Engine.close() while the live transports run: working orders stay at the venues; "
                      "await engine.stop_live() first, or use 'async with engine:'")
        if self.journal is not None:
            self.journal.close()
            self.journal = None
            self.om.journal = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: object) -> None:
        """Live: :meth:`stop_live` (every working parent and venue order cancelled, transports
        closed), also when the block ends by an exception; then :meth:`close`."""
        try:
            if self._live is not None:
                reason = "engine stopped" if exc is None else f"engine stopped: {type(exc).__name__}"
                await self.stop_live(reason)
        finally:
            self.close()


def _venue_orders_per_10s(preset: str) -> int:
    """The order limit per 10 s a venue publishes (its preset's order bucket with a 10 s window),
    which the simulated matching engine enforces; 50 when the preset has none."""
    p = PRESETS.get(preset)
    if p is not None:
        for name, spec in p.buckets.items():
            if "ORDER" in name.upper() and len(spec) >= 2 and spec[1] == 10:
                return int(spec[0])
    return 50


def _base36(n: int) -> str:
    """``n`` >= 0 in base 36 (digits and lower-case letters)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out
