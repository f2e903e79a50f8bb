"""The algo <-> engine contract, and the base every scheduler builds on.

An algo is synchronous and event driven (the NautilusTrader ``examples/algorithms/twap.py``
split): the engine calls ``on_start``, then feeds it market events (``on_trade``, ``on_book``)
and child-order events (``on_child_fill``, ``on_child_done``); the algo sets its own alerts on
the injected clock (``on_timer``) and acts only through :class:`AlgoContext`. Nothing here reads
wall time, sleeps or does I/O, so one algo runs unchanged live, in a simulated day and in a test.

Units inside: prices in **common ticks** and quantities in **common lots** of the symbol's
:class:`~marketdata.units.CommonGrid` (``ctx.tick_size`` / ``ctx.lot_size`` say what one is).

Accounting: the base keeps a ledger of every child it sent. A child's *open* lots (sent minus
filled) count against the parent's remainder from the moment ``send_child`` returns until the
engine reports it done, whether the venue has acknowledged it, it is working, or its state is
unknown after a timeout. The engine's own figures (``ctx.filled_lots()``,
``ctx.working_lots()``, ``ctx.inflight_or_unknown_lots()``) are read as well and the larger
commitment wins, so a disagreement can only make the algo send less, never overfill.
"""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

from algos.params import CommonParams, parse_decimal, price_to_ticks, qty_to_lots
from marketdata.clock import AlertHandle, Clock
from marketdata.errors import ConfigError, InvariantError
from marketdata.model import BookDeltas, Liquidity, OrderStatus, QuoteTick, Side, TimeInForce, TradeTick

__all__ = [
    "AlgoContext",
    "AlgoStatus",
    "ChildRecord",
    "ChildRequest",
    "ChildStyle",
    "ExecutionAlgo",
]

log = logging.getLogger(__name__)

ChildStyle = Literal["take", "post", "mixed"]


@dataclass(frozen=True, slots=True)
class ChildRequest:
    """One child order the algo asks the engine to route.

    * ``lots``: common lots (> 0). The engine converts to a ``RouteRequest`` with
      ``quantity = lots * ctx.lot_size``; the router may split it across venues.
    * ``limit_ticks``: common ticks, or ``None`` for an unpriced take (only possible when the
      parent has no limit). For a buy the router must not pay above it, for a sell not below.
    * ``style``: ``take`` (cross the spread now, IOC), ``post`` (rest passively, post-only where
      the venue supports it), ``mixed`` (router decides).
    * ``urgency``: 0..1, the parent's urgency, passed through to the router (which uses it to
      split a ``mixed`` child; the schedulers act on it themselves, see CommonParams).
    * ``time_in_force``: IOC for takes, GTC for posts by default.
    * ``display_lots``: for a native iceberg, the visible part (``<= lots``); ``None`` otherwise.
    * ``reason``: why the algo sent it (``slice``, ``catchup``, ``urgency``, ``sweep``, ``would``, ``refill``...),
      for the journal.
    """

    lots: int
    limit_ticks: int | None
    style: ChildStyle
    urgency: float = 0.5
    time_in_force: TimeInForce = TimeInForce.GTC
    display_lots: int | None = None
    reason: str = "slice"

    def __post_init__(self) -> None:
        if self.lots <= 0:
            raise InvariantError(f"child request for {self.lots} lots")
        if self.display_lots is not None and not 0 < self.display_lots <= self.lots:
            raise InvariantError(f"display {self.display_lots} lots outside (0, {self.lots}]")
        if self.style not in ("take", "post", "mixed"):
            raise InvariantError(f"child style {self.style!r}")


class AlgoContext(Protocol):
    """What the engine provides to one running algo (one parent order).

    Market view (consolidated book of ``symbol`` on the common grid): ``best_bid_ticks()`` /
    ``best_ask_ticks()`` (``None`` when that side is empty), ``last_trade_ticks()``.

    Commands: ``send_child`` routes a :class:`ChildRequest` through the router, risk checks and
    rate limiters and returns the child id at once (the child is *in flight* from then on; a
    refusal by risk is reported later as ``on_child_done(id, REJECTED)``, never as an
    exception). ``cancel_child`` requests a cancel; the child stays open until
    ``on_child_done``.

    The engine MUST afterwards call, for every child id it returned: ``algo.on_child_fill`` for
    each fill (common lots, common ticks) and exactly once ``algo.on_child_done`` when the child
    is terminal (filled, cancelled, rejected, expired; an UNKNOWN child is not done). It MUST
    call ``algo.on_trade`` for every public trade of the symbol on the venues it consolidates.
    ``own_trades_in_feed`` says whether those public trades include the prints of our own fills
    (true for live venues; the simulated venue says whether it publishes them).
    """

    @property
    def clock(self) -> Clock: ...
    @property
    def parent_id(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> Side: ...
    @property
    def parent_lots(self) -> int: ...
    @property
    def tick_size(self) -> Decimal: ...
    @property
    def lot_size(self) -> Decimal: ...
    @property
    def own_trades_in_feed(self) -> bool: ...

    def best_bid_ticks(self) -> int | None: ...
    def best_ask_ticks(self) -> int | None: ...
    def last_trade_ticks(self) -> int | None: ...

    def send_child(self, request: ChildRequest) -> str: ...
    def cancel_child(self, child_id: str) -> None: ...

    def filled_lots(self) -> int:
        """Lots of this parent filled so far (engine's books)."""
        ...

    def working_lots(self) -> int:
        """Open lots of children the venues acknowledged."""
        ...

    def inflight_or_unknown_lots(self) -> int:
        """Open lots of children sent but not acknowledged, or in UNKNOWN state."""
        ...

    def supports_native_iceberg(self) -> bool: ...

    def log_event(self, kind: str, **fields: Any) -> None:
        """Record an algo decision (journal/log); values are JSON-able."""
        ...


class AlgoStatus(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"      # the whole parent is filled
    FINISHED = "finished"        # end time reached with a remainder (limit, participation cap)
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (AlgoStatus.COMPLETED, AlgoStatus.FINISHED, AlgoStatus.CANCELLED)


@dataclass(slots=True)
class ChildRecord:
    """The base's ledger entry for one child."""

    child_id: str
    request: ChildRequest
    sent_ns: int
    filled_lots: int = 0
    done: bool = False
    status: OrderStatus | None = None
    cancel_requested: bool = False

    @property
    def open_lots(self) -> int:
        return 0 if self.done else max(0, self.request.lots - self.filled_lots)


@dataclass(slots=True)
class _Ledger:
    children: dict[str, ChildRecord] = field(default_factory=dict)
    open: dict[str, ChildRecord] = field(default_factory=dict)
    """The children not yet done (insertion order), so open-lot sums and cancels scan only them."""
    filled_lots: int = 0
    notional_tick_lots: int = 0
    open_lots: int = 0
    """Sum of ``open_lots`` over ``open``, kept up to date by send, fill and done (O(1) reads)."""


class ExecutionAlgo:
    """Base of every scheduler: ledger, remainder, limit discipline, timers, life cycle.

    Subclasses implement :meth:`_begin` (plan and schedule) and :meth:`_reconcile` (look at
    the state and send/cancel children); they send only through :meth:`_send`, which enforces
    the invariants: a child never exceeds the available remainder (parent minus filled minus
    every open child, in flight or unknown included), never carries a limit worse than the
    parent's, is never smaller than ``min_child_lots`` unless it is the whole remainder, and is
    never a take when ``passive_only``.

    *The whole remainder* is the parent minus everything filled, with no other child open: a
    child below ``min_child_lots`` goes only when it alone completes the parent. "All that is
    still available" (parent minus filled minus open) is not enough: open quantity is not final
    (posts are cancelled to reprice, takes fill in part, an UNKNOWN child may turn out rejected),
    and when it comes back, the small child sent beside it was not the last piece but a dust
    child (and each such round could send another). The small tail waits instead: once the open
    children have filled it is the whole remainder and goes; if they are cancelled, what comes
    back is sent at full size.
    """

    name = "base"

    def __init__(self, params: CommonParams) -> None:
        self.params = params
        self.rng = random.Random(params.seed)
        self.status = AlgoStatus.PENDING
        self.finish_reason: str | None = None
        self._ctx: AlgoContext | None = None
        self._ledger = _Ledger()
        self._timers: list[tuple[int, AlertHandle]] = []
        self._last_would: ChildRecord | None = None   # the last would take, and its retry alert
        self._would_retry_at: int | None = None
        self.parent_lots = 0
        self.limit_ticks = params.limit_ticks
        self.side = Side.BUY

    # ------------------------------------------------------------------ plumbing
    @property
    def ctx(self) -> AlgoContext:
        if self._ctx is None:
            raise InvariantError(f"{self.name}: algo used before on_start")
        return self._ctx

    @property
    def filled_lots(self) -> int:
        return self._ledger.filled_lots

    @property
    def children(self) -> dict[str, ChildRecord]:
        return self._ledger.children

    @property
    def average_price_ticks(self) -> Decimal | None:
        """Average fill price in common ticks (exact), or ``None`` before the first fill."""
        if not self._ledger.filled_lots:
            return None
        return Decimal(self._ledger.notional_tick_lots) / self._ledger.filled_lots

    def open_lots(self) -> int:
        """Open lots of children not yet done (acknowledged, in flight or unknown). O(1): the
        ledger keeps the sum as children are sent, filled and done."""
        return self._ledger.open_lots

    def committed_lots(self) -> int:
        """Filled plus open lots: the larger of the ledger's and the engine's figures."""
        own = self._ledger.filled_lots + self.open_lots()
        ctx = self.ctx
        engine = ctx.filled_lots() + ctx.working_lots() + ctx.inflight_or_unknown_lots()
        return max(own, engine)

    def available_lots(self) -> int:
        """Lots that may still be sent: parent minus everything filled or open."""
        return max(0, self.parent_lots - self.committed_lots())

    def remaining_lots(self) -> int:
        """Parent minus filled (open children included)."""
        return max(0, self.parent_lots - max(self._ledger.filled_lots, self.ctx.filled_lots()))

    def end_reason(self, remaining_lots: int) -> str:
        """Why the algo stops at its end time with ``remaining_lots`` unfilled, in the instrument's
        units, naming the parent limit when the market is beyond it (the usual cause)."""
        ctx = self.ctx
        why = f"end time reached with {ctx.lot_size * remaining_lots} unfilled"
        lim = self.limit_ticks
        far = self.far_touch()
        if lim is not None and far is not None and not self.better_or_equal(far, lim):
            side = "ask" if self.side is Side.BUY else "bid"
            why += (f": the market (best {side} {ctx.tick_size * far}) is beyond the limit price "
                    f"{ctx.tick_size * lim}")
        return why

    def _at(self, at_ns: int, what: str = "timer") -> None:
        """Set an alert that calls :meth:`on_timer`."""
        handle = self.ctx.clock.set_alert(at_ns, self._fire)
        self._track(at_ns, handle)

    def _track(self, last_due_ns: int, handle: AlertHandle) -> None:
        """Remember an alert (cancelled on finish); forget those that can no longer fire."""
        if len(self._timers) > 64:
            now = self.ctx.clock.now_ns()
            self._timers = [(d, h) for d, h in self._timers if d >= now and not h.cancelled]
        self._timers.append((last_due_ns, handle))

    def _fire(self, ts_ns: int) -> None:
        self.on_timer(ts_ns)

    def _cancel_timers(self) -> None:
        for _, h in self._timers:
            h.cancel()
        self._timers.clear()

    # ------------------------------------------------------------------ prices
    def better_or_equal(self, a: int, b: int) -> bool:
        """Is price ``a`` at least as good as ``b`` for our side (buy: lower)?"""
        return a <= b if self.side is Side.BUY else a >= b

    def clamp_to_limit(self, price: int | None) -> int | None:
        """The more conservative of ``price`` and the parent limit (``None`` = no price)."""
        lim = self.limit_ticks
        if lim is None:
            return price
        if price is None:
            return lim
        return min(price, lim) if self.side is Side.BUY else max(price, lim)

    def near_touch(self) -> int | None:
        """Our side's best price (buy: best bid), where a passive child joins."""
        ctx = self.ctx
        return ctx.best_bid_ticks() if self.side is Side.BUY else ctx.best_ask_ticks()

    def far_touch(self) -> int | None:
        """The opposite best (buy: best ask), what a take pays at least."""
        ctx = self.ctx
        return ctx.best_ask_ticks() if self.side is Side.BUY else ctx.best_bid_ticks()

    def passive_price(self) -> int | None:
        """Join the near touch, clamped to the limit; falls back to the limit or None."""
        p = self.near_touch()
        if p is None:
            far = self.far_touch()
            p = None if far is None else far - int(self.side)  # one tick inside the far side
        return self.clamp_to_limit(p)

    def limit_allows_take(self) -> bool:
        far = self.far_touch()
        if far is None:
            return False
        return self.limit_ticks is None or self.better_or_equal(far, self.limit_ticks)

    # ------------------------------------------------------------------ sending
    def _send(self, lots: int, *, style: ChildStyle, limit_ticks: int | None = None,
              reason: str = "slice", display_lots: int | None = None,
              time_in_force: TimeInForce | None = None) -> str | None:
        """Send one child after enforcing every invariant (see the class docstring); returns its
        id, or ``None`` when nothing may go: ``lots`` is cut to :meth:`available_lots`, and a child
        below ``min_child_lots`` is refused unless it is the whole remainder with nothing else open."""
        if self.status is not AlgoStatus.RUNNING:
            return None
        ctx = self.ctx
        avail = self.available_lots()
        lots = min(lots, avail)
        if lots <= 0:
            return None
        if lots < self.params.min_child_lots and lots != self.remaining_lots():
            # lots <= avail <= remaining: equal only when no child is open (in flight, working or
            # unknown, in the ledger's view and the engine's), so this child completes the parent
            return None
        if self.params.passive_only and style != "post":
            style = "post"
        if style == "post":
            limit = self.clamp_to_limit(limit_ticks if limit_ticks is not None else self.passive_price())
            if limit is None:
                return None  # nowhere to post: no book and no limit
        else:
            limit = self.clamp_to_limit(limit_ticks)
        if display_lots is not None:
            display_lots = min(display_lots, lots)
        tif = time_in_force or (TimeInForce.IOC if style == "take" else TimeInForce.GTC)
        req = ChildRequest(lots=lots, limit_ticks=limit, style=style, urgency=self.params.urgency,
                           time_in_force=tif, display_lots=display_lots, reason=reason)
        self._check_request(req, avail)   # nothing changed the ledger or the engine since avail
        child_id = ctx.send_child(req)
        rec = ChildRecord(child_id, req, ctx.clock.now_ns())
        ledger = self._ledger
        ledger.children[child_id] = rec
        ledger.open[child_id] = rec
        ledger.open_lots += lots
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s parent=%s child=%s %s %d lots @ %s (%s)", self.name, ctx.parent_id, child_id,
                      style, lots, limit, reason)
        ctx.log_event("algo_child", algo=self.name, child_id=child_id, lots=lots, limit_ticks=limit,
                      style=style, reason=reason, display_lots=display_lots)
        return child_id

    def _check_request(self, req: ChildRequest, available: int | None = None) -> None:
        avail = self.available_lots() if available is None else available
        if req.lots > avail:
            raise InvariantError(f"{self.name}: child of {req.lots} lots exceeds available {avail}")
        if self.limit_ticks is not None and (
                req.limit_ticks is None or not self.better_or_equal(req.limit_ticks, self.limit_ticks)):
            raise InvariantError(f"{self.name}: child limit {req.limit_ticks} worse than parent "
                                 f"limit {self.limit_ticks}")

    def _cancel(self, child_id: str) -> None:
        rec = self._ledger.children.get(child_id)
        if rec is None or rec.done or rec.cancel_requested:
            return
        rec.cancel_requested = True
        self.ctx.cancel_child(child_id)

    def _cancel_open(self, *, styles: tuple[str, ...] = ("post", "mixed", "take")) -> int:
        """Request cancel of every open child of the given styles; returns how many."""
        n = 0
        for rec in list(self._ledger.open.values()):
            if not rec.done and not rec.cancel_requested and rec.request.style in styles:
                self._cancel(rec.child_id)
                n += 1
        return n

    def open_children(self, style: str | None = None) -> list[ChildRecord]:
        return [c for c in self._ledger.open.values()
                if not c.done and (style is None or c.request.style == style)]

    # ------------------------------------------------------------------ life cycle (engine API)
    def on_start(self, ctx: AlgoContext) -> None:
        """Attach to the engine and begin (schedules its first alert at ``params.start_ns``)."""
        if self._ctx is not None:
            raise InvariantError(f"{self.name}: on_start called twice")
        self._ctx = ctx
        self.side = ctx.side
        if ctx.parent_lots <= 0:
            raise ConfigError(f"{ctx.parent_lots} lots", key="quantity", allowed="> 0")
        self.parent_lots = ctx.parent_lots
        self.status = AlgoStatus.RUNNING
        ctx.log_event("algo_started", algo=self.name, parent_lots=self.parent_lots,
                      start_ns=self.params.start_ns, end_ns=self.params.end_ns)
        self._begin()

    def on_timer(self, ts_ns: int) -> None:
        """A clock alert set by the algo fired. A paused algo still finishes at its end time."""
        if self.status is AlgoStatus.PAUSED and ts_ns >= self.params.end_ns:
            self._finish_at_end()
            return
        if self.status is not AlgoStatus.RUNNING:
            return
        self._on_time(ts_ns)

    def on_trade(self, trade: TradeTick) -> None:
        """A public trade of the symbol (any venue; ticks/lots on the common grid). Paused, the
        algo still counts the market volume (our own fills keep arriving until the cancels land,
        and they are subtracted from it), but does not act on it."""
        if self.status is AlgoStatus.RUNNING:
            self._count_trade(trade)
            self._on_trade(trade)
        elif self.status is AlgoStatus.PAUSED:
            self._count_trade(trade)

    def on_book(self, event: BookDeltas | QuoteTick | None = None) -> None:
        """The consolidated book changed (``event`` optional; the algo reads ``ctx``)."""
        if self.status is AlgoStatus.RUNNING:
            self._on_book()

    def on_child_fill(self, child_id: str, lots: int, price_ticks: int,
                      liquidity: Liquidity = Liquidity.TAKER) -> None:
        """A fill of one of our children (common lots and ticks)."""
        rec = self._ledger.children.get(child_id)
        if rec is None:
            raise InvariantError(f"{self.name}: fill for unknown child {child_id}")
        if lots <= 0:
            raise InvariantError(f"{self.name}: fill of {lots} lots on {child_id}")
        before = rec.open_lots
        rec.filled_lots += lots
        self._ledger.open_lots -= before - rec.open_lots
        if rec.filled_lots > rec.request.lots:
            raise InvariantError(f"{self.name}: child {child_id} overfilled "
                                 f"({rec.filled_lots} > {rec.request.lots})")
        self._ledger.filled_lots += lots
        self._ledger.notional_tick_lots += lots * price_ticks
        if self.limit_ticks is not None and not self.better_or_equal(price_ticks, self.limit_ticks):
            log.warning("%s parent=%s child=%s filled at %d, worse than limit %d", self.name,
                        self.ctx.parent_id, child_id, price_ticks, self.limit_ticks)
        self._on_fill(rec, lots, price_ticks, liquidity)
        if self._ledger.filled_lots >= self.parent_lots and self.status in (AlgoStatus.RUNNING,
                                                                              AlgoStatus.PAUSED):
            self._finish(AlgoStatus.COMPLETED, "filled")

    def on_child_done(self, child_id: str, status: OrderStatus) -> None:
        """A child reached a terminal state; its open lots are released."""
        rec = self._ledger.children.get(child_id)
        if rec is None:
            raise InvariantError(f"{self.name}: done for unknown child {child_id}")
        if rec.done:
            return
        self._ledger.open_lots -= rec.open_lots
        rec.done = True
        rec.status = status
        self._ledger.open.pop(child_id, None)
        if self.status is AlgoStatus.RUNNING:
            self._on_child_done(rec)

    def pause(self) -> None:
        """Stop sending and cancel open children; the schedule keeps running in the background
        (after ``resume`` the algo is behind and catches up)."""
        if self.status is AlgoStatus.RUNNING:
            self.status = AlgoStatus.PAUSED
            self._cancel_open()
            self.ctx.log_event("algo_paused", algo=self.name)

    def resume(self) -> None:
        if self.status is AlgoStatus.PAUSED:
            self.status = AlgoStatus.RUNNING
            self.ctx.log_event("algo_resumed", algo=self.name)
            self._reconcile(self.ctx.clock.now_ns())

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the parent: cancel every open child and stop."""
        if not self.status.is_terminal:
            self._cancel_open()
            self._finish(AlgoStatus.CANCELLED, reason)

    def amend(self, quantity: Decimal | str | None = None, limit_price: Decimal | str | None = None) -> None:
        """Change the parent quantity and/or limit. The new quantity may not be below what is
        already filled; open children beyond the new remainder, or priced worse than the new
        limit, are cancelled, and the schedule is re-planned. A finished algo cannot be amended
        (its children may still be open in the engine, but it sends nothing more)."""
        ctx = self.ctx
        if self.status.is_terminal:
            # (an amend to the filled quantity turned a FINISHED or CANCELLED algo into COMPLETED)
            raise ConfigError(f"the {self.name} algo is {self.status.value} ({self.finish_reason}); "
                              "it cannot be amended", key="amend")
        # both values are checked before either is applied: a bad limit refused the amend after the
        # new quantity was set (the parent changed under a schedule that still summed to the old one)
        lots: int | None = None
        limit: int | None = None
        if quantity is not None:
            q = parse_decimal(quantity, key="quantity", positive=True, allow_zero=False)
            lots = qty_to_lots(q, ctx.lot_size, key="quantity")
            if lots < self._ledger.filled_lots:
                raise ConfigError(f"new quantity {q} is below the quantity already filled, "
                                  f"{ctx.lot_size * self._ledger.filled_lots}",
                                  key="quantity", allowed=f">= {ctx.lot_size * self._ledger.filled_lots}")
        if limit_price is not None:
            p = parse_decimal(limit_price, key="limit_price", positive=True, allow_zero=False)
            limit = price_to_ticks(p, ctx.tick_size, self.side, key="limit_price")
        if lots is not None:
            self.parent_lots = lots
        if limit is not None:
            self.limit_ticks = limit
        for rec in self.open_children():
            lim = rec.request.limit_ticks
            if self.limit_ticks is not None and (lim is None or not self.better_or_equal(lim, self.limit_ticks)):
                self._cancel(rec.child_id)
        if self.committed_lots() > self.parent_lots:
            self._cancel_open()
        ctx.log_event("algo_amended", algo=self.name, parent_lots=self.parent_lots,
                      limit_ticks=self.limit_ticks)
        if self._ledger.filled_lots >= self.parent_lots:
            self._finish(AlgoStatus.COMPLETED, "filled")
            return
        self._replan()
        if self.status is AlgoStatus.RUNNING:
            self._reconcile(ctx.clock.now_ns())

    def _in_window(self, now_ns: int) -> bool:
        """Whether a re-plan at ``now_ns`` should act: running and inside [start, end). At or after
        the end the algo finishes (COMPLETED if nothing remains, else FINISHED with the remainder)."""
        if self.status is not AlgoStatus.RUNNING:
            return False
        if now_ns >= self.params.end_ns:
            self._finish_at_end()
            return False
        return now_ns >= self.params.start_ns

    def _finish_at_end(self) -> None:
        """The end time is reached: COMPLETED if nothing remains, else FINISHED with the remainder."""
        rem = self.remaining_lots()
        self._finish(AlgoStatus.FINISHED if rem else AlgoStatus.COMPLETED,
                     self.end_reason(rem) if rem else "filled")

    def _finish(self, status: AlgoStatus, reason: str) -> None:
        self.status = status
        self.finish_reason = reason
        self._cancel_timers()
        if status is not AlgoStatus.COMPLETED:
            self._cancel_open()
        ctx = self.ctx
        log.info("%s parent=%s %s: %s (filled %d/%d lots)", self.name, ctx.parent_id, status.value,
                 reason, self._ledger.filled_lots, self.parent_lots)
        ctx.log_event("algo_finished", algo=self.name, status=status.value, reason=reason,
                      filled_lots=self._ledger.filled_lots, parent_lots=self.parent_lots)

    @property
    def is_done(self) -> bool:
        return self.status.is_terminal

    # ------------------------------------------------------------------ hooks
    def _begin(self) -> None:
        raise NotImplementedError

    def _reconcile(self, now_ns: int) -> None:
        raise NotImplementedError

    def _replan(self) -> None:
        """Recompute targets after an amend (default: nothing to do)."""

    def _on_time(self, ts_ns: int) -> None:
        self._reconcile(ts_ns)

    def _count_trade(self, trade: TradeTick) -> None:
        """Hook: account a public trade (called while running or paused)."""

    def _on_trade(self, trade: TradeTick) -> None:
        """Default: opportunistic would-price check."""
        self._check_would()

    def _on_book(self) -> None:
        self._check_would()

    def _on_fill(self, rec: ChildRecord, lots: int, price_ticks: int, liquidity: Liquidity) -> None:
        """Hook for subclasses."""

    def _on_child_done(self, rec: ChildRecord) -> None:
        self._reconcile(self.ctx.clock.now_ns())

    def would_active(self) -> bool:
        """Is the far touch at or better than the would price and the parent limit (inside the
        window)? An amended limit may be tighter than the would price: a far touch between the
        two cannot be taken."""
        would = self.params.would_ticks
        if would is None or self.params.passive_only:
            return False
        would = self.clamp_to_limit(would)
        assert would is not None
        now = self.ctx.clock.now_ns()
        if not self.params.start_ns <= now < self.params.end_ns:
            return False
        far = self.far_touch()
        return far is not None and self.better_or_equal(far, would)

    def _check_would(self) -> None:
        """Take the whole available remainder while the far touch is at or better than the
        would price (and the limit allows)."""
        if not self.would_active():
            return
        would = self.params.would_ticks
        if any(c.request.reason == "would" for c in self.open_children()):
            return
        last = self._last_would
        if last is not None and last.done and last.filled_lots < last.request.lots:
            # the last would take found less than it asked: the next waits take_retry_ns() (one
            # IOC per round trip went out while the far touch sat at the would price with too
            # little behind it: ~2,000 empty takes in 2 s)
            due = last.sent_ns + self.take_retry_ns()
            if self.ctx.clock.now_ns() < due:
                if self._would_retry_at != due:
                    self._would_retry_at = due
                    self._at(due)
                return
        self._cancel_open(styles=("post", "mixed"))  # their lots are taken once the cancels land
        cid = self._send(self.available_lots(), style="take", limit_ticks=would, reason="would")
        if cid is not None:
            self._last_would = self._ledger.children[cid]

    def take_retry_ns(self) -> int:
        """The least time between two takes after one that did not fill completely (the
        schedules' and POV's ``retry``; 1 s by default)."""
        return 1_000_000_000
