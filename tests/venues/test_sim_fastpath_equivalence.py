"""The simulation's fast paths give exactly what the straightforward versions give.

* the driver's merged delayed feeds (no clock alert per burst) deliver every market event at the
  same virtual time and in the same order relative to the clock's alerts as one clock alert per
  burst (the reference feed below), including exact ties with order acks (constant latencies);
* a simulated venue coalescing idle depth messages produces the same fills and order events as one
  whose book is applied message by message, and the same book;
* SimClock's merge primitives (reserve_seq / advance_before / set_alert_seq) order like set_alert;
* the market-data latency stream is deterministic per seed and has the model's median.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sim_usdm_reader import SYMBOL, VENUE, load_usdm_events, usdm_instrument, usdm_path

from marketdata.book import L2Book
from marketdata.clock import NS_PER_MS, SimClock
from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    MarketEvent,
    Order,
    OrderEvent,
    OrderType,
    Side,
    TimeInForce,
    VenueId,
)
from venues.base import run_now
from venues.latency import LatencyModel
from venues.sim import SimulatedVenue, SimVenueConfig
from venues.sim_driver import SimulationDriver

real_data = pytest.mark.skipif(not usdm_path().exists(), reason=f"real data not found at {usdm_path()}")
EVENTS = 30_000   # a prefix of the capture keeps the test quick


# ---------------------------------------------------------------------------- clock primitives
def test_reserved_seq_orders_like_set_alert() -> None:
    clock = SimClock(0)
    fired: list[str] = []
    clock.set_alert(100, lambda _t: fired.append("a"))
    seq = clock.reserve_seq()                       # "x" is set here, at 100
    clock.set_alert(100, lambda _t: fired.append("b"))
    clock.set_alert(50, lambda _t: fired.append("early"))
    assert clock.advance_before(100, seq) == 2      # early, a: ordered before (100, seq)
    assert fired == ["early", "a"] and clock.now_ns() == 100
    clock.set_alert_seq(100, seq, lambda _t: fired.append("x"))
    clock.advance_to(100)
    assert fired == ["early", "a", "x", "b"]


def test_advance_before_refuses_the_past() -> None:
    clock = SimClock(10)
    with pytest.raises(Exception, match="backwards"):
        clock.advance_before(5, clock.reserve_seq())


# ---------------------------------------------------------------------------- reference feed
class _ReferenceDriver:
    """The straightforward loop: clock.advance_to per event, one clock alert per delayed burst."""

    def __init__(self, clock: SimClock, venue: SimulatedVenue, events: Any, callback: Callable[[MarketEvent], None],
                 immediate: Callable[[MarketEvent], None] | None = None) -> None:
        self.clock, self.venue, self.events, self.cb, self.immediate = clock, venue, events, callback, immediate
        self.queue: deque[tuple[int, MarketEvent]] = deque()
        self.armed = False

    def _fire(self, due: int) -> None:
        while self.queue and self.queue[0][0] <= due:
            self.cb(self.queue.popleft()[1])
        if self.queue:
            self.clock.set_alert(self.queue[0][0], self._fire)
        else:
            self.armed = False

    def run(self) -> None:
        for ev in self.events:
            ts = ev.ts_event
            self.clock.advance_to(ts)
            self.venue.on_market_event(ev)
            if self.immediate is not None:
                self.immediate(ev)
            at = self.venue.feed_arrival_ns(ts)
            if at <= ts and not self.queue:
                self.cb(ev)
                continue
            self.queue.append((at, ev))
            if not self.armed:
                self.armed = True
                self.clock.set_alert(at, self._fire)


def _venue(clock: SimClock, md: LatencyModel, **kw: Any) -> SimulatedVenue:
    return SimulatedVenue(SimVenueConfig(
        venue=VENUE, instruments=[usdm_instrument()], rate_limit_orders=None, sequence_rule="prev",
        balances={"USDT": Decimal(100_000_000), "BTC": Decimal(10_000)}, market_data_latency=md,
        order_entry_latency=LatencyModel.constant(NS_PER_MS), ack_latency=LatencyModel.constant(NS_PER_MS),
        seed=5, **kw), clock)


def _strategy(venue: SimulatedVenue, clock: SimClock, log: list[tuple[Any, ...]],
              book: L2Book | None) -> Callable[[MarketEvent], None]:
    """Logs (virtual time, event) and trades: a bid at the best bid re-placed every 150 events, a
    market sell every 700. ``book``: the strategy's own view (None: read the venue's)."""
    state = {"n": 0, "live": ""}

    def on(ev: MarketEvent) -> None:
        log.append(("md", clock.now_ns(), type(ev).__name__, ev.ts_event))
        view = book
        if view is not None and type(ev) is BookDeltas:
            view.apply(ev)
        n = state["n"] = state["n"] + 1   # type: ignore[operator]
        if view is None or view.best_bid_ticks is None:
            return
        if n % 150 == 0:
            if state["live"]:
                run_now(venue.cancel(ClientOrderId(str(state["live"]))))
            cid = f"b{n}"
            run_now(venue.submit(Order(ClientOrderId(cid), VENUE, SYMBOL, Side.BUY, OrderType.LIMIT, 10,
                                       view.best_bid_ticks, TimeInForce.GTC)))
            state["live"] = cid
        if n % 700 == 0:
            run_now(venue.submit(Order(ClientOrderId(f"i{n}"), VENUE, SYMBOL, Side.SELL, OrderType.MARKET, 20,
                                       None, TimeInForce.IOC)))
    return on


def _record(log: list[tuple[Any, ...]], clock: SimClock) -> Callable[[OrderEvent], None]:
    def on(ev: OrderEvent) -> None:
        fill = ev.fill
        log.append(("oe", clock.now_ns(), ev.kind, ev.client_order_id, ev.ts_event,
                    None if fill is None else (fill.price_ticks, fill.lots, fill.trade_id)))
    return on


def _run(fast: bool, md: LatencyModel, *, chunks: int = 1) -> tuple[list[tuple[Any, ...]], SimulatedVenue]:
    events = load_usdm_events()[:EVENTS]
    clock = SimClock(events[0].ts_event)
    venue = _venue(clock, md)
    log: list[tuple[Any, ...]] = []
    venue.set_event_handler(_record(log, clock))
    cb = _strategy(venue, clock, log, L2Book(VENUE, SYMBOL, sequence_rule="prev"))
    if fast:
        driver = SimulationDriver(clock, events)
        driver.add_venue(venue)
        driver.subscribe(cb, delayed=True)
        per = EVENTS // chunks + 1
        for _ in range(chunks):
            driver.run(max_events=per)
            # outside run(): a pending delivery is a real clock alert, so advancing the clock
            # directly must deliver it as before
            clock.advance_to(clock.now_ns())
    else:
        _ReferenceDriver(clock, venue, events, cb).run()
    clock.advance_to(clock.now_ns() + 50 * NS_PER_MS)
    return log, venue


@real_data
@pytest.mark.parametrize("md", [LatencyModel.constant(NS_PER_MS), LatencyModel.constant(2 * NS_PER_MS),
                                LatencyModel.lognormal(2 * NS_PER_MS, 0.5)], ids=["1ms", "2ms", "lognormal"])
def test_merged_feed_matches_one_alert_per_burst(md: LatencyModel) -> None:
    ref, ref_venue = _run(False, md)
    fast, fast_venue = _run(True, md)
    assert len(ref) == len(fast)
    assert ref == fast
    assert sum(1 for r in ref if r[0] == "oe" and r[5] is not None) > 20    # fills happened
    assert ref_venue.statistics() == fast_venue.statistics()


@real_data
def test_driver_in_chunks_matches_one_run() -> None:
    md = LatencyModel.constant(2 * NS_PER_MS)
    assert _run(True, md, chunks=7)[0] == _run(False, md)[0]


class _ReferenceMulti:
    """The straightforward loop for several venues: one clock alert per burst per venue feed."""

    def __init__(self, clock: SimClock, venues: dict[str, SimulatedVenue], events: Any,
                 callback: Callable[[MarketEvent], None]) -> None:
        self.clock, self.events = clock, events
        self.feeds = {v: _ReferenceDriver(clock, venue, (), callback) for v, venue in venues.items()}

    def run(self) -> None:
        for ev in self.events:
            ts = ev.ts_event
            self.clock.advance_to(ts)
            f = self.feeds[ev.venue]
            f.venue.on_market_event(ev)
            at = f.venue.feed_arrival_ns(ts)
            if at <= ts and not f.queue:
                f.cb(ev)
                continue
            f.queue.append((at, ev))
            if not f.armed:
                f.armed = True
                self.clock.set_alert(at, f._fire)


def test_merged_feeds_of_two_venues_match_one_alert_per_burst() -> None:
    """Two venues' delayed feeds (bundled spot + USD-M data) interleave with each other and with
    order acks exactly as with one clock alert per burst per venue; constant latencies make ties."""
    from marketdata.replay import default_dataset
    ds = default_dataset()
    names = ["binance-spot", "binance-usdm"]
    events = list(ds.events(names))[:40_000]
    logs = []
    for fast in (False, True):
        clock = SimClock(events[0].ts_event)
        venues = {}
        for k, v in enumerate(names):
            venues[v] = SimulatedVenue(SimVenueConfig(
                venue=VenueId(v), instruments=[ds.instruments[v]], rate_limit_orders=None,
                sequence_rule=ds.sequence_rule(v), balances={"USDT": Decimal(10**9), "BTC": Decimal(10**4)},
                market_data_latency=LatencyModel.constant((k + 1) * NS_PER_MS),
                order_entry_latency=LatencyModel.constant(NS_PER_MS), ack_latency=LatencyModel.constant(NS_PER_MS),
                seed=k), clock)
        log: list[tuple[Any, ...]] = []
        for venue in venues.values():
            venue.set_event_handler(_record(log, clock))
        books = {v: L2Book(v, "BTC-USDT", sequence_rule=ds.sequence_rule(v)) for v in names}
        count = [0]

        def on(ev: MarketEvent, log: list[tuple[Any, ...]] = log, books: dict[str, L2Book] = books,
               venues: dict[str, SimulatedVenue] = venues, clock: SimClock = clock, count: list[int] = count) -> None:
            log.append(("md", clock.now_ns(), ev.venue, type(ev).__name__, ev.ts_event))
            if type(ev) is BookDeltas:
                books[ev.venue].apply(ev)   # type: ignore[arg-type]
            count[0] += 1
            book = books[ev.venue]
            if count[0] % 97 == 0 and book.best_bid_ticks is not None:
                run_now(venues[ev.venue].submit(Order(
                    ClientOrderId(f"o{count[0]}"), VenueId(ev.venue), "BTC-USDT", Side.SELL,  # type: ignore[arg-type]
                    OrderType.LIMIT, 2000 if ev.venue == "binance-spot" else 20, book.best_bid_ticks,
                    TimeInForce.IOC)))
        if fast:
            driver = SimulationDriver(clock, events)
            for venue in venues.values():
                driver.add_venue(venue)
            driver.subscribe(on, delayed=True)
            driver.run()
        else:
            _ReferenceMulti(clock, venues, events, on).run()
        clock.advance_to(clock.now_ns() + 50 * NS_PER_MS)
        logs.append(log)
    assert logs[0] == logs[1]
    assert sum(1 for r in logs[0] if r[0] == "oe" and r[5] is not None) > 20


# ---------------------------------------------------------------------------- coalesced idle book
@real_data
def test_coalesced_idle_book_gives_the_same_fills_and_book() -> None:
    """A venue that never hands out its book coalesces depth while idle; one whose book was handed
    out (``book()``) applies every message. Same orders -> same order events, same final book."""
    events = load_usdm_events()[:EVENTS]
    logs = []
    books = []
    for shared in (False, True):
        clock = SimClock(events[0].ts_event)
        venue = _venue(clock, LatencyModel.constant(0))
        if shared:
            venue.book(SYMBOL)
        log: list[tuple[Any, ...]] = []
        venue.set_event_handler(_record(log, clock))
        cb = _strategy(venue, clock, log, L2Book(VENUE, SYMBOL, sequence_rule="prev"))
        driver = SimulationDriver(clock, events)
        driver.add_venue(venue)
        driver.subscribe(cb, delayed=False)
        driver.run()
        driver.flush(50 * NS_PER_MS)
        logs.append(log)
        b = venue.book(SYMBOL)
        books.append((b.bids(50), b.asks(50), b.last_update_id, b.best_bid_ticks, b.best_ask_ticks,
                      b.statistics()["updates"], b.statistics()["gaps"]))
    assert logs[0] == logs[1]
    assert books[0] == books[1]
    ref = L2Book(VENUE, SYMBOL, sequence_rule="prev")
    for ev in events:
        if type(ev) is BookDeltas:
            ref.apply(ev)
    assert books[0][0] == ref.bids(50) and books[0][1] == ref.asks(50)
    assert books[0][5] == ref.statistics()["updates"]


def test_coalescing_stops_at_a_sequence_break() -> None:
    """A message that does not continue the chain is applied on its own, so the gap is detected
    exactly as without coalescing."""
    clock = SimClock(0)
    venue = SimulatedVenue(SimVenueConfig(venue=VENUE, instruments=[usdm_instrument()], sequence_rule="prev"),
                           clock)

    def msg(u: int, pu: int, bids: list[tuple[int, int]], snap: bool = False) -> BookDeltas:
        return BookDeltas(VENUE, SYMBOL, bids, [(700_000, 5)], u, u, snap, u, u, pu)

    venue.on_market_event(msg(10, -1, [(600_000, 1)], snap=True))
    venue.on_market_event(msg(11, 10, [(600_001, 1)]))       # first after the snapshot: applied
    venue.on_market_event(msg(12, 11, [(600_002, 1)]))       # coalesced
    venue.on_market_event(msg(13, 12, [(600_002, 0), (600_003, 4)]))
    venue.on_market_event(msg(20, 19, [(600_009, 1)]))       # gap: flushed, then refused
    book = venue.book(SYMBOL)
    assert book.statistics()["gaps"] == 1 and book.needs_resync
    venue.on_market_event(msg(30, -1, [(600_000, 2)], snap=True))
    assert book.bids(5) == [(600_000, 2)] and not book.needs_resync


# ---------------------------------------------------------------------------- latency stream
def test_latency_stream_is_seeded_and_lognormal() -> None:
    model = LatencyModel.lognormal(3 * NS_PER_MS, 0.3)
    a = model.stream(7)
    b = model.stream(7)
    xs = [next(a) for _ in range(10_000)]
    assert xs == [next(b) for _ in range(10_000)]
    assert xs != [next(model.stream(8)) for _ in range(1)] * 10_000
    assert all(isinstance(x, int) and x > 0 for x in xs)
    assert abs(statistics.median(xs) / (3 * NS_PER_MS) - 1) < 0.02
    assert next(LatencyModel.constant(5).stream(1)) == 5
    emp = LatencyModel.empirical([1, 2, 3]).stream(3)
    assert {next(emp) for _ in range(200)} == {1, 2, 3}
