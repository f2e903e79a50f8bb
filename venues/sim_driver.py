"""The discrete-event loop of a simulation: replayed market data merged with the SimClock.

:class:`SimulationDriver` takes market events already in ``ts_event`` order (e.g.
``marketdata.replay.Dataset.events()``) and, for each one:

1. ``clock.advance_to(event.ts_event)``: every alert due at or before that time fires first (order
   arrivals at the matching engine, order events reaching us, expiries, timers, delayed market data);
   an alert due exactly at the event's time fires *before* the event;
2. hands the event to the simulated venue of ``event.venue`` (the matching engine sees exchange time,
   no latency);
3. hands it to subscribers: ``delayed=True`` subscribers of a simulated venue see it when that
   venue's feed delivers it (``ts_event`` + the venue's market-data latency, in stream order, as a
   clock alert); ``delayed=False`` subscribers and venues without a simulator see it at once.

Nothing here sleeps or reads wall time. To report its own throughput (events per wall second) the
driver reads a ``wall_timer`` the caller injects (e.g. ``time.perf_counter`` from the CLI or a
benchmark); without one the wall-time figures are 0.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from marketdata.clock import SimClock
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
        self._delayed: dict[str, list[MarketCallback]] = {}   # venue -> callbacks
        self._immediate: dict[str, list[MarketCallback]] = {}
        self._all_delayed: list[MarketCallback] = []
        self._all_immediate: list[MarketCallback] = []
        self._stop = False
        self._pending: MarketEvent | None = None
        self._feeds: dict[str, _DelayedFeed] = {}
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
                  delayed: bool = True) -> None:
        """Call ``callback(event)`` for market events of ``venues`` (all when ``None``).

        ``delayed``: deliver when the venue's feed would (market-data latency of the simulated
        venue); events of venues without a simulator are always delivered at once."""
        if venues is None:
            (self._all_delayed if delayed else self._all_immediate).append(callback)
            return
        target = self._delayed if delayed else self._immediate
        for v in venues:
            target.setdefault(v, []).append(callback)

    def stop(self) -> None:
        """Make :meth:`run` return after the event being processed (callable from callbacks)."""
        self._stop = True

    def run(self, until_ns: int | None = None, max_events: int | None = None) -> DriverStats:
        """Process events until the stream ends, ``until_ns`` (exchange time; then the clock is
        advanced to it so alerts due by then fire), ``max_events``, or :meth:`stop`."""
        self._stop = False
        clock = self.clock
        advance = clock.advance_to
        routes: dict[str, tuple[Callable[[MarketEvent], None] | None, list[MarketCallback],
                                 list[MarketCallback], SimulatedVenue | None]] = {}
        feeds = self._feeds
        start_ns = clock.now_ns()
        n = 0
        fired = 0
        timer = self._wall_timer
        t0 = timer() if timer is not None else 0.0
        limit = max_events if max_events is not None else -1
        until = until_ns if until_ns is not None else _NEVER
        source: Iterator[MarketEvent] = self._events
        if self._pending is not None:
            source = itertools.chain((self._pending,), self._events)
            self._pending = None
        for ev in source:
            if n == limit or self._stop:
                self._pending = ev
                break
            ts = ev.ts_event
            if ts > until:
                self._pending = ev
                break
            try:
                fired += advance(ts)
            except InvariantError as exc:
                raise InvariantError(
                    f"market event out of time order: {type(ev).__name__} {ev.venue}:{ev.symbol} "
                    f"ts_event={ts} < clock now={clock.now_ns()}") from exc
            vid = ev.venue
            route = routes.get(vid)
            if route is None:
                route = routes[vid] = self._route(vid)
            on_event, now_subs, later_subs, venue = route
            if on_event is not None:
                on_event(ev)
            for cb in now_subs:
                cb(ev)
            if later_subs:
                at = venue.feed_arrival_ns(ts) if venue is not None else ts
                feed = feeds[vid]
                if at <= ts and not feed.queue:
                    for cb in later_subs:
                        cb(ev)
                else:
                    feed.push(at, ev)
            n += 1
        else:
            self.exhausted = True
        if until_ns is not None and not self._stop and clock.now_ns() < until_ns \
                and (self._pending is not None or self.exhausted):
            fired += advance(until_ns)
        wall = timer() - t0 if timer is not None else 0.0
        self.events_total += n
        return DriverStats(n, fired, wall, start_ns, clock.now_ns(), self._stop)

    def _route(self, vid: str) -> tuple[Callable[[MarketEvent], None] | None, list[MarketCallback],
                                         list[MarketCallback], SimulatedVenue | None]:
        venue = self._venues.get(vid)
        now_subs = self._immediate.get(vid, []) + self._all_immediate
        later_subs = self._delayed.get(vid, []) + self._all_delayed
        if venue is None:   # no simulator: nothing to delay by
            now_subs, later_subs = now_subs + later_subs, []
        if later_subs:
            feed = self._feeds.get(vid)
            if feed is None:
                self._feeds[vid] = _DelayedFeed(self.clock, later_subs)
            else:   # subscriptions changed between runs
                feed.callbacks = later_subs
        return (venue.on_market_event if venue is not None else None, now_subs, later_subs, venue)

    def flush(self, extra_ns: int) -> int:
        """Advance the clock ``extra_ns`` past now, firing what falls due (e.g. the last acks)."""
        return self.clock.advance_to(self.clock.now_ns() + extra_ns)


class _DelayedFeed:
    """One venue's market-data stream as seen by us: events queued with their (non-decreasing)
    arrival times, delivered by a single clock alert at the head's arrival that re-arms itself for
    the next one. One alert per burst instead of one per event."""

    __slots__ = ("armed", "callbacks", "clock", "queue")

    def __init__(self, clock: SimClock, callbacks: list[MarketCallback]) -> None:
        self.clock = clock
        self.callbacks = callbacks
        self.queue: deque[tuple[int, MarketEvent]] = deque()
        self.armed = False

    def push(self, at: int, ev: MarketEvent) -> None:
        self.queue.append((at, ev))
        if not self.armed:
            self.armed = True
            self.clock.set_alert(at, self.fire)

    def fire(self, due: int) -> None:
        queue, cbs = self.queue, self.callbacks
        while queue and queue[0][0] <= due:
            ev = queue.popleft()[1]
            for cb in cbs:
                cb(ev)
        if queue:
            self.clock.set_alert(queue[0][0], self.fire)
        else:
            self.armed = False


__all__ = ["DriverStats", "MarketCallback", "SimulationDriver"]
