"""Iceberg: show only a small, randomised display quantity at a limit price.

Synthetic (default): one post child of ``display`` lots at the limit at a time; when it is
completely filled the next one is posted with a fresh display drawn uniformly (seeded) from
``[display_min_lots, display_max_lots]``, capped by the remainder. A child that ends without
filling (cancelled by the venue, expired, rejected) is re-posted after ``retry_ns``; after
``max_failures`` consecutive failures the order finishes with the reason.

Native: when ``ctx.supports_native_iceberg()`` (and ``native`` is not False) the whole remainder
goes as one child with ``display_lots`` set, and the venue refills it. When that child is rejected
(for example by a per-order risk limit on the whole remainder) and ``native`` was left automatic,
the algo goes on synthetically at once; the rejection counts towards ``max_failures`` either way
(with ``native = True`` the native child is re-sent after ``retry_ns``).

Guarantee: no child shows more than ``display_max_lots`` (synthetic: child size; native:
``display_lots``). The limit price is required. At ``end`` the order finishes with the remainder.
"""

from __future__ import annotations

from algos.base import AlgoStatus, ChildRecord, ExecutionAlgo
from algos.params import CommonParams
from marketdata.errors import ConfigError
from marketdata.model import OrderStatus, TradeTick

__all__ = ["IcebergAlgo"]


class IcebergAlgo(ExecutionAlgo):
    """Display-limited resting order (see module doc)."""

    name = "iceberg"

    def __init__(self, params: CommonParams, *, display_min_lots: int, display_max_lots: int | None = None,
                 native: bool | None = None, retry_ns: int = 1_000_000_000, max_failures: int = 5) -> None:
        super().__init__(params)
        if params.limit_ticks is None:
            raise ConfigError("an iceberg needs a limit price", key="limit_price", allowed="a price > 0")
        hi = display_min_lots if display_max_lots is None else display_max_lots
        if display_min_lots < 1:
            raise ConfigError(f"{display_min_lots} lots", key="display_min", allowed=">= 1 lot")
        if hi < display_min_lots:
            raise ConfigError(f"display_max {hi} < display_min {display_min_lots} lots", key="display_max",
                              allowed=">= display_min")
        if display_min_lots < params.min_child_lots:
            # a display below the minimum child is refused by _send, and nothing would re-trigger
            # the iceberg (no child, no timer): it would show nothing until the end
            raise ConfigError(f"display_min {display_min_lots} lots < min_child_size {params.min_child_lots} lots",
                              key="display_min", allowed=">= min_child_size")
        if retry_ns <= 0 or max_failures < 1:
            raise ConfigError("retry must be > 0 and max_failures >= 1", key="retry")
        self.display_min_lots = display_min_lots
        self.display_max_lots = hi
        self.native = native
        self.retry_ns = retry_ns
        self.max_failures = max_failures
        self._failures = 0
        self._using_native = False

    def _draw_display(self) -> int:
        return self.rng.randint(self.display_min_lots, self.display_max_lots)

    def _begin(self) -> None:
        self._using_native = self.native is not False and self.ctx.supports_native_iceberg()
        if self.native is True and not self._using_native:
            raise ConfigError("native iceberg requested but the engine says no venue supports it",
                              key="native", allowed="false, or leave unset for automatic")
        self._at(self.params.start_ns)
        self._at(self.params.end_ns)

    def _reconcile(self, now_ns: int) -> None:
        if self.status is not AlgoStatus.RUNNING:
            return
        if now_ns >= self.params.end_ns:
            rem = self.remaining_lots()
            self._finish(AlgoStatus.FINISHED if rem else AlgoStatus.COMPLETED,
                         self.end_reason(rem) if rem else "filled")
            return
        if now_ns < self.params.start_ns or self.open_children():
            return
        avail = self.available_lots()
        if avail <= 0:
            return
        display = self._draw_display()
        if self._using_native:
            self._send(avail, style="post", limit_ticks=self.limit_ticks, reason="native_iceberg",
                       display_lots=min(display, avail))
        else:
            self._send(min(display, avail), style="post", limit_ticks=self.limit_ticks, reason="refill")

    def _on_trade(self, trade: TradeTick) -> None:
        return

    def _on_book(self) -> None:
        return

    def _on_child_done(self, rec: ChildRecord) -> None:
        now = self.ctx.clock.now_ns()
        if rec.status is OrderStatus.FILLED or rec.filled_lots > 0:
            self._failures = 0
            self._reconcile(now)
            return
        if rec.cancel_requested:   # our own cancel (pause, amend), not a venue failure
            self._reconcile(now)
            return
        self._failures += 1   # the native refusal too: max_failures counts every unfilled child
        if self._failures >= self.max_failures:
            self._finish(AlgoStatus.FINISHED, f"{self._failures} consecutive children ended unfilled "
                                              f"(last: {rec.status.value if rec.status else 'unknown'})")
            return
        if self._using_native and self.native is None and rec.request.display_lots is not None \
                and rec.status is OrderStatus.REJECTED:
            # the whole remainder as one order was refused (a per-order risk limit, a venue's
            # iceberg rules): chosen automatically, so go on synthetically, display-sized children
            # (each a fresh check) at once, rather than fail the same way max_failures times
            self._using_native = False
            self.ctx.log_event("iceberg_native_refused", algo=self.name, child_id=rec.child_id,
                               lots=rec.request.lots)
            self._reconcile(now)
            return
        self._at(now + self.retry_ns)
