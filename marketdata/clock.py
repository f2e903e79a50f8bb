"""The one clock every component reads.

* :class:`SimClock` is virtual time: it only moves when the simulation driver calls
  :meth:`SimClock.advance_to`, which fires due alerts and timers in time order (ties in the order
  they were set), setting ``now`` to each one's due time before calling it. It refuses to move
  backwards. Modelled on trio's ``MockClock`` and NautilusTrader's ``TestClock``.
* :class:`LiveClock` is wall time on an asyncio loop; alerts are ``loop.call_at`` handles.

The decision core (books, router, algos, order manager, simulated venue) receives a clock and never
reads wall time itself: ``tests/test_clock_discipline.py`` fails if one does.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

from marketdata.errors import InvariantError

AlertCallback = Callable[[int], None]
"""Called with the due time in nanoseconds."""

NS_PER_SECOND = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_US = 1_000
_AFTER_EVERY_SEQ = 1 << 62
"""A tie-break number larger than any the clock hands out: ``advance_to`` fires everything due."""


class AlertHandle:
    """Returned by ``set_alert``/``set_timer``; ``cancel()`` stops it firing."""

    __slots__ = ("_live_handle", "cancelled", "interval_ns", "stop_ns")

    def __init__(self, interval_ns: int = 0, stop_ns: int | None = None) -> None:
        self.cancelled = False
        self.interval_ns = interval_ns
        self.stop_ns = stop_ns
        self._live_handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self._live_handle is not None:
            self._live_handle.cancel()

    def __lt__(self, other: AlertHandle) -> bool:
        """Handles never order SimClock alerts: two heap entries with the same (due, tie-break)
        (a delivery handed back with :meth:`SimClock.set_alert_seq` after its earlier, cancelled
        entry is still in the heap) compare equal here instead of raising ``TypeError``."""
        return False


class Clock(Protocol):
    """What the core may ask of time."""

    def now_ns(self) -> int:
        """Current time, integer nanoseconds since the Unix epoch."""
        ...

    def set_alert(self, at_ns: int, callback: AlertCallback) -> AlertHandle:
        """Call ``callback(at_ns)`` once at ``at_ns`` (immediately-due if in the past)."""
        ...

    def set_timer(self, interval_ns: int, callback: AlertCallback, *, start_ns: int | None = None,
                  stop_ns: int | None = None) -> AlertHandle:
        """Call ``callback`` every ``interval_ns`` from ``start_ns`` (default now + interval). A
        ``start_ns`` in the past fires once now and the period runs from now; nothing after ``stop_ns``."""
        ...


class SimClock:
    """Virtual time for simulation and tests. Deterministic; never goes backwards."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._heap: list[tuple[int, int, AlertHandle, AlertCallback]] = []
        self._seq = itertools.count()

    def now_ns(self) -> int:
        return self._now

    def set_alert(self, at_ns: int, callback: AlertCallback) -> AlertHandle:
        handle = AlertHandle()
        heapq.heappush(self._heap, (max(at_ns, self._now), next(self._seq), handle, callback))
        return handle

    def set_timer(self, interval_ns: int, callback: AlertCallback, *, start_ns: int | None = None,
                  stop_ns: int | None = None) -> AlertHandle:
        if interval_ns <= 0:
            raise ValueError(f"timer interval must be positive, got {interval_ns} ns")
        handle = AlertHandle(interval_ns, stop_ns)
        first = max(self._now + interval_ns if start_ns is None else start_ns, self._now)
        if stop_ns is None or first <= stop_ns:  # a timer never fires after its stop_ns
            heapq.heappush(self._heap, (first, next(self._seq), handle, callback))
        return handle

    # ------------------------------------------------------------------ merged external queues
    # A scheduler that keeps its own time-ordered queue (the simulation driver's delayed market-data
    # feeds) can merge it with the clock's alerts without one heap entry per item: it reserves the
    # tie-break number an alert set now would get (reserve_seq), fires the clock's alerts ordered
    # before its own item (advance_before), or hands the item back to the clock with that number
    # (set_alert_seq). The firing order is exactly what set_alert at the reservation would give.

    def reserve_seq(self) -> int:
        """Take the tie-break number an alert set at this moment would get (alerts due at the
        same time fire in the order of these numbers)."""
        return next(self._seq)

    def set_alert_seq(self, at_ns: int, seq: int, callback: AlertCallback) -> AlertHandle:
        """``set_alert`` with a tie-break number taken earlier with :meth:`reserve_seq`: the alert
        fires where an alert set at the time of the reservation would have."""
        handle = AlertHandle()
        heapq.heappush(self._heap, (max(at_ns, self._now), seq, handle, callback))
        return handle

    def advance_before(self, ts_ns: int, seq: int) -> int:
        """Fire every alert ordered before ``(ts_ns, seq)`` (due earlier, or due at ``ts_ns`` with
        a smaller tie-break number), then set now to ``ts_ns``. Returns the callbacks fired.
        Raises :class:`InvariantError` if ``ts_ns`` is earlier than now."""
        return self._fire_due(ts_ns, seq)

    def next_due_ns(self) -> int | None:
        """Due time of the earliest pending alert, or ``None``."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def advance_to(self, ts_ns: int) -> int:
        """Fire every alert due at or before ``ts_ns`` in time order, then set now to ``ts_ns``.

        Returns the number of callbacks fired. Raises :class:`InvariantError` if ``ts_ns`` is
        earlier than now."""
        return self._fire_due(ts_ns, _AFTER_EVERY_SEQ)

    def _fire_due(self, ts_ns: int, seq: int) -> int:
        if ts_ns < self._now:
            raise InvariantError(f"SimClock cannot go backwards: now={self._now} ns, asked {ts_ns} ns")
        fired = 0
        heap = self._heap
        while heap and (heap[0][0] < ts_ns or (heap[0][0] == ts_ns and heap[0][1] < seq)):
            due, _, handle, cb = heapq.heappop(heap)
            if handle.cancelled:
                continue
            self._now = due
            if handle.interval_ns:
                nxt = due + handle.interval_ns
                if handle.stop_ns is None or nxt <= handle.stop_ns:
                    heapq.heappush(heap, (nxt, next(self._seq), handle, cb))
            cb(due)
            fired += 1
        self._now = ts_ns
        return fired

    def run_until_idle(self, limit_ns: int | None = None) -> int:
        """Fire alerts one after another (jumping time) until none are left or ``limit_ns``."""
        fired = 0
        while True:
            due = self.next_due_ns()
            if due is None or (limit_ns is not None and due > limit_ns):
                break
            fired += self.advance_to(due)
        return fired


class LiveClock:
    """Wall-clock time; alerts run on the asyncio loop given (or the running one)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop or asyncio.get_running_loop()

    def now_ns(self) -> int:
        return time.time_ns()

    def _schedule(self, handle: AlertHandle, at_ns: int, callback: AlertCallback) -> AlertHandle:
        delay = max(0.0, (at_ns - time.time_ns()) / NS_PER_SECOND)
        handle._live_handle = self._get_loop().call_later(delay, self._fire, handle, at_ns, callback)
        return handle

    def set_alert(self, at_ns: int, callback: AlertCallback) -> AlertHandle:
        return self._schedule(AlertHandle(), at_ns, callback)

    def _fire(self, handle: AlertHandle, at_ns: int, callback: AlertCallback) -> None:
        if handle.cancelled:
            return
        if handle.interval_ns:
            nxt = at_ns + handle.interval_ns
            if handle.stop_ns is None or nxt <= handle.stop_ns:
                self._schedule(handle, nxt, callback)
        callback(at_ns)

    def set_timer(self, interval_ns: int, callback: AlertCallback, *, start_ns: int | None = None,
                  stop_ns: int | None = None) -> AlertHandle:
        if interval_ns <= 0:
            raise ValueError(f"timer interval must be positive, got {interval_ns} ns")
        now = time.time_ns()
        # as SimClock: a start in the past fires once now and the period runs from there (no burst
        # of every missed period, and a timer whose window is already over never fires)
        first = max(now + interval_ns if start_ns is None else start_ns, now)
        handle = AlertHandle(interval_ns, stop_ns)
        if stop_ns is not None and first > stop_ns:  # a timer never fires after its stop_ns
            return handle
        return self._schedule(handle, first, callback)
