"""The discrete-event loop of a simulation: replayed market data merged with the SimClock.

:class:`SimulationDriver` takes market events already in ``ts_event`` order (e.g.
``marketdata.replay.Dataset.events()``) and, for each one:

1. ``clock.advance_to(event.ts_event)``: every alert due at or before that time fires first (order
   arrivals at the matching engine, order events reaching us, expiries, timers, delayed market data);
   an alert due exactly at the event's time fires *before* the event;
2. hands the event to the simulated venue of ``event.venue`` (the matching engine sees exchange time,
   no latency);
3. hands it to subscribers: ``delayed=True`` subscribers of a simulated venue see it when that
   venue's feed delivers it (``ts_event`` + the venue's market-data latency, in stream order),
   exactly where a clock alert set at that moment would fire among the clock's alerts;
   ``delayed=False`` subscribers and venues without a simulator see it at once. A subscriber that
   declares the event ``types`` it needs gets only those; an event type no subscriber of a venue's
   feed needs (e.g. bookTickers when everybody builds their view from depth and trades) is not
   queued on the delayed feed at all: its market-data latency is still drawn (the feed is one
   ordered stream, so it still holds back the events behind it), but nothing is delivered.

Inside :meth:`SimulationDriver.run` the delayed feeds are merged with the clock's alerts by the
loop itself (no heap entry or closure per burst, no ``advance_to`` call unless an alert is due);
outside it a pending delivery is a real clock alert with the same due time and tie-break number,
so advancing the clock directly (``flush``, tests) delivers it the same way.

Nothing here sleeps or reads wall time. To report its own throughput (events per wall second) the
driver reads a ``wall_timer`` the caller injects (e.g. ``time.perf_counter`` from the CLI or a
benchmark); without one the wall-time figures are 0.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from marketdata.clock import AlertHandle, SimClock
from marketdata.errors import ConfigError, InvariantError
from marketdata.model import MarketEvent
from venues.sim import SimulatedVenue

log = logging.getLogger(__name__)

MarketCallback = Callable[[MarketEvent], None]
_NEVER = 1 << 80   # later than any nanosecond timestamp


@dataclass(frozen=True, slots=True)
class DriverStats:
    """Counters of one :meth:`SimulationDriver.run`. ``wall_seconds`` is 0 unless the driver was
    given a ``wall_timer``."""

    events: int
    alerts_fired: int
    wall_seconds: float
    sim_start_ns: int
    sim_end_ns: int
    stopped: bool

    @property
    def events_per_second(self) -> float:
        """Market events processed per wall-clock second."""
        return self.events / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def speedup(self) -> float:
        """Simulated time / wall time."""
        return (self.sim_end_ns - self.sim_start_ns) / 1e9 / self.wall_seconds if self.wall_seconds > 0 else 0.0


class SimulationDriver:
    """Drive simulated venues and subscribers from one time-ordered market-event stream.

    ``events`` must be non-decreasing in ``ts_event`` (an event earlier than the clock raises
    :class:`InvariantError` naming it). ``run`` may be called repeatedly; it continues where the
    previous call stopped."""

    def __init__(self, clock: SimClock, events: Iterable[MarketEvent], *,
                 wall_timer: Callable[[], float] | None = None) -> None:
        self.clock = clock
        self._wall_timer = wall_timer
        self._events: Iterator[MarketEvent] = iter(events)
        self._venues: dict[str, SimulatedVenue] = {}
        # venue -> [(callback, types or None)]
        self._delayed: dict[str, list[tuple[MarketCallback, frozenset[type] | None]]] = {}
        self._immediate: dict[str, list[tuple[MarketCallback, frozenset[type] | None]]] = {}
        self._all_delayed: list[tuple[MarketCallback, frozenset[type] | None]] = []
        self._all_immediate: list[tuple[MarketCallback, frozenset[type] | None]] = []
        self._stop = False
        self._pending: MarketEvent | None = None
        self._feeds: dict[str, _DelayedFeed] = {}
        self._armed: list[_DelayedFeed] = []   # feeds with a pending delivery (inside run)
        self._fired = 0
        self.events_total = 0
        self.exhausted = False

    def add_venue(self, venue: SimulatedVenue) -> None:
        """Route events of ``venue.venue_id`` to this simulated venue's matching engine."""
        if venue.clock is not self.clock:
            raise ConfigError(f"simulated venue {venue.venue_id} runs on a different clock than the driver")
        if venue.venue_id in self._venues:
            raise ConfigError(f"simulated venue {venue.venue_id} added twice")
        self._venues[venue.venue_id] = venue

    def subscribe(self, callback: MarketCallback, venues: Iterable[str] | None = None, *,
                  delayed: bool = True, types: Collection[type] | None = None) -> None:
        """Call ``callback(event)`` for market events of ``venues`` (all when ``None``).

        ``delayed``: deliver when the venue's feed would (market-data latency of the simulated
        venue); events of venues without a simulator are always delivered at once.
        ``types``: the event classes the callback needs (e.g. ``(BookDeltas, TradeTick)``); others
        are not delivered to it, and a type no delayed subscriber of a venue needs is not queued
        on that venue's feed at all (its latency is still drawn: the arrival order and times of
        the other events do not change). ``None``: every event."""
        entry = (callback, None if types is None else frozenset(types))
        if venues is None:
            (self._all_delayed if delayed else self._all_immediate).append(entry)
            return
        target = self._delayed if delayed else self._immediate
        for v in venues:
            target.setdefault(v, []).append(entry)

    def stop(self) -> None:
        """Make :meth:`run` return after the event being processed (callable from callbacks)."""
        self._stop = True

    def run(self, until_ns: int | None = None, max_events: int | None = None) -> DriverStats:
        """Process events until the stream ends, ``until_ns`` (exchange time; then the clock is
        advanced to it so alerts due by then fire), ``max_events``, or :meth:`stop`."""
        self._stop = False
        clock = self.clock
        routes: dict[str, tuple[Callable[[MarketEvent], None] | None, list[MarketCallback],
                                 _DelayedFeed | None]] = {}
        start_ns = clock.now_ns()
        n = 0
        timer = self._wall_timer
        t0 = timer() if timer is not None else 0.0
        limit = max_events if max_events is not None else -1
        until = until_ns if until_ns is not None else _NEVER
        source: Iterator[MarketEvent] = self._events
        if self._pending is not None:
            source = itertools.chain((self._pending,), self._events)
            self._pending = None
        feeds = list(self._feeds.values())
        for f in feeds:
            f.virtualise()
        self._armed = sorted((f for f in feeds if f.armed), key=lambda f: (f.due, f.seq))
        self._fired = 0
        # Hot loop. The delayed feeds are merged here instead of through clock alerts: each armed
        # feed carries the (due, tie-break) its alert would have had, and ``feed_due`` is the
        # earliest of them. The clock's own heap is read directly (SimClock and this loop are
        # written together): when nothing is due by the event's time, now is set without a call.
        heap = clock._heap
        advance = clock.advance_to
        advance_before = clock.advance_before
        next_seq = clock._seq.__next__      # = clock.reserve_seq, without the call
        armed = self._armed
        feed_due = self._feed_due()
        fired = 0
        last_vid: str | None = None
        on_event: Callable[[MarketEvent], None] | None = None
        now_subs: list[MarketCallback] = []
        feed: _DelayedFeed | None = None
        try:
            for ev in source:
                if n == limit or self._stop:
                    self._pending = ev
                    break
                ts = ev.ts_event
                if ts > until:
                    self._pending = ev
                    break
                if ts < clock._now:
                    raise InvariantError(
                        f"market event out of time order: {type(ev).__name__} {ev.venue}:{ev.symbol} "
                        f"ts_event={ts} < clock now={clock._now}")
                if feed_due <= ts:
                    # deliver the delayed feeds due by ts, each at its (due, seq) among the alerts
                    while armed:
                        head = armed[0]            # armed is kept sorted by (due, seq)
                        due = head.due
                        if due > ts:
                            break
                        seq = head.seq
                        if heap and (heap[0][0] < due or (heap[0][0] == due and heap[0][1] < seq)):
                            fired += advance_before(due, seq)
                        else:
                            clock._now = due
                        fired += 1
                        queue = head.queue
                        cbs = head.callbacks
                        while queue and queue[0][0] <= due:
                            item = queue.popleft()[1]
                            for cb in cbs:
                                cb(item)
                        if queue:
                            head.due = nd = queue[0][0]
                            head.seq = next_seq()   # the largest yet: goes after every equal due
                            if len(armed) > 1 and armed[1].due <= nd:
                                del armed[0]
                                i = 1
                                while i < len(armed) and armed[i].due <= nd:
                                    i += 1
                                armed.insert(i, head)
                        else:
                            head.armed = False
                            del armed[0]
                    feed_due = armed[0].due if armed else _NEVER
                if heap and heap[0][0] <= ts:
                    fired += advance(ts)
                else:
                    clock._now = ts
                vid = ev.venue
                if vid != last_vid:   # most streams are one venue's: look the route up on a change
                    route = routes.get(vid)
                    if route is None:
                        route = routes[vid] = self._route(vid)
                    on_event, now_subs, feed = route
                    last_vid = vid
                if on_event is not None:
                    on_event(ev)
                if now_subs:
                    for cb in now_subs:
                        cb(ev)
                if feed is not None:
                    # = venue.feed_arrival_ns(ts), inlined: the venue's latency stream, clamped to
                    # the previous arrival (one ordered stream)
                    at = ts + feed.latency_next()
                    if at < feed.last_at:
                        at = feed.last_at
                    feed.last_at = at
                    wanted = feed.wanted
                    if wanted is not None and type(ev) not in wanted:
                        pass   # nobody on this feed needs it: its latency is drawn, nothing queued
                    elif feed.armed:
                        feed.queue.append((at, ev))
                    elif at <= ts:
                        for cb in feed.callbacks:
                            cb(ev)
                    else:
                        feed.queue.append((at, ev))
                        feed.armed = True
                        feed.due = at
                        feed.seq = next_seq()
                        i = 0
                        while i < len(armed) and armed[i].due <= at:
                            i += 1
                        armed.insert(i, feed)
                        feed_due = armed[0].due
                n += 1
            else:
                self.exhausted = True
            self._fired += fired
            # the clock ends at until_ns only when the stream has nothing left before it (a run
            # cut short by max_events keeps the time of its last event); alerts due at until_ns
            # fire even when the last event was at until_ns (e.g. zero-latency acks it caused)
            pending = self._pending
            if until_ns is not None and not self._stop and clock.now_ns() <= until_ns \
                    and (self.exhausted or (pending is not None and pending.ts_event > until_ns)):
                self._drain(until_ns)
        finally:
            for f in armed:
                f.materialise()
            self._armed = []
        fired = self._fired
        wall = timer() - t0 if timer is not None else 0.0
        self.events_total += n
        return DriverStats(n, fired, wall, start_ns, clock.now_ns(), self._stop)

    def _feed_due(self) -> int:
        armed = self._armed
        if not armed:
            return _NEVER
        if len(armed) == 1:
            return armed[0].due
        return min(f.due for f in armed)

    def _drain(self, ts: int) -> None:
        """Advance the clock to ``ts``, delivering the delayed feeds' events due by then in the
        order their clock alerts would have fired."""
        clock = self.clock
        armed = self._armed
        while armed:
            head = armed[0]
            if len(armed) > 1:
                for f in armed:
                    if f.due < head.due or (f.due == head.due and f.seq < head.seq):
                        head = f
            due = head.due
            if due > ts:
                break
            self._fired += clock.advance_before(due, head.seq) + 1
            if not head.deliver(due):
                armed.remove(head)
        self._fired += clock.advance_to(ts)

    def _route(self, vid: str) -> tuple[Callable[[MarketEvent], None] | None, list[MarketCallback],
                                         _DelayedFeed | None]:
        venue = self._venues.get(vid)
        now_entries = self._immediate.get(vid, []) + self._all_immediate
        later_entries = self._delayed.get(vid, []) + self._all_delayed
        if venue is None:   # no simulator: nothing to delay by
            now_entries, later_entries = now_entries + later_entries, []
        now_subs = [_filtered(cb, types) for cb, types in now_entries]
        feed: _DelayedFeed | None = None
        if later_entries and venue is not None:
            kinds = [types for _, types in later_entries]
            wanted: frozenset[type] | None = None
            if all(k is not None for k in kinds):
                wanted = frozenset().union(*kinds)   # type: ignore[arg-type]
            # a filter every subscriber shares is applied once, on the feed; others per callback
            shared = wanted is not None and all(k == wanted for k in kinds)
            later_subs = [cb if shared else _filtered(cb, types) for cb, types in later_entries]
            feed = self._feeds.get(vid)
            if feed is None:
                feed = self._feeds[vid] = _DelayedFeed(self.clock, later_subs, venue)
            else:   # subscriptions changed between runs
                feed.callbacks = later_subs
            feed.wanted = wanted
        return (venue.on_market_event if venue is not None else None, now_subs, feed)

    def flush(self, extra_ns: int) -> int:
        """Advance the clock ``extra_ns`` past now, firing what falls due (e.g. the last acks)."""
        return self.clock.advance_to(self.clock.now_ns() + extra_ns)


def _filtered(callback: MarketCallback, types: frozenset[type] | None) -> MarketCallback:
    """``callback`` restricted to events of ``types`` (itself when ``None``)."""
    if types is None:
        return callback

    def only(ev: MarketEvent) -> None:
        if type(ev) in types:
            callback(ev)
    return only


class _DelayedFeed:
    """One venue's market-data stream as seen by us: events queued with their (non-decreasing)
    arrival times, delivered in one go at the head's arrival, then re-armed for the next one.

    Inside :meth:`SimulationDriver.run` the feed is *virtual*: its pending delivery is the pair
    ``(due, seq)`` (the due time and the clock tie-break number its alert would have), merged with
    the clock's alerts by the driver, so no heap entry or closure is made per burst. Outside a run
    (e.g. :meth:`SimulationDriver.flush` or a caller advancing the clock itself) it is a real clock
    alert with the same ``(due, seq)``, so the firing order is the same either way."""

    __slots__ = ("armed", "callbacks", "clock", "due", "handle", "last_at", "latency_next", "queue", "seq",
                 "wanted")

    def __init__(self, clock: SimClock, callbacks: list[MarketCallback], venue: SimulatedVenue) -> None:
        self.clock = clock
        self.callbacks = callbacks
        self.latency_next, self.last_at = venue.feed_clock()
        self.queue: deque[tuple[int, MarketEvent]] = deque()
        self.armed = False
        self.due = 0
        self.seq = 0
        self.handle: AlertHandle | None = None
        self.wanted: frozenset[type] | None = None   # event types queued (None: all)

    def deliver(self, due: int) -> bool:
        """Deliver every queued event due by ``due``; re-arm (new tie-break number) for the next
        one. Returns whether the feed is still armed."""
        queue, cbs = self.queue, self.callbacks
        while queue and queue[0][0] <= due:
            ev = queue.popleft()[1]
            for cb in cbs:
                cb(ev)
        if queue:
            self.due = queue[0][0]
            self.seq = self.clock.reserve_seq()
            return True
        self.armed = False
        return False

    def materialise(self) -> None:
        """Hand the pending delivery to the clock as a real alert (leaving the driver's loop)."""
        if self.armed and self.handle is None:
            self.handle = self.clock.set_alert_seq(self.due, self.seq, self._fire)

    def virtualise(self) -> None:
        """Take a pending real alert back into the driver's loop (entering it)."""
        handle = self.handle
        if handle is not None:
            handle.cancel()
            self.handle = None

    def _fire(self, due: int) -> None:
        self.handle = None
        if self.deliver(due):
            self.materialise()


__all__ = ["DriverStats", "MarketCallback", "SimulationDriver"]
