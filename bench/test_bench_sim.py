"""Simulated-venue throughput on the real Binance USD-M BTCUSDT capture (~94,000 market events:
~6,550 depth messages carrying 443,000 level updates, ~21,300 trades, ~66,000 bookTickers).

Events are decoded once per session (``marketdata.replay`` when available, else the tests' local
reader) and kept in memory, so parsing is not measured. Each round replays every event from the
snapshot on a fresh clock/venue (built in the untimed setup):

* ``bare_l2book``       reference: ``L2Book.apply`` on every BookDeltas, nothing else (sequence
  rule ``prev`` checked, as in every variant)
* ``sim_direct``        ``SimulatedVenue.on_market_event`` on every event, no orders, no driver: the
  venue is idle and nobody reads its book, so depth messages are coalesced (applied as one when
  the book is next needed; here once, at the end)
* ``sim_direct_eager``  the same with the venue's book handed out first (``venue.book()``), so
  every depth message is applied as it comes: the per-message cost of the venue's book
* ``sim_driver``        ``SimulationDriver`` (SimClock + dispatch) with the venue, no orders
* ``sim_driver_orders`` the same plus a strategy called on every event at exchange time (1-3 ms
  order entry, 1 ms acks): a resting 0.01 BTC bid at the best bid re-placed (cancel + new) every
  200 events and a 0.02 BTC IOC market sell every 1,000 events (562 orders, ~455 fills). The
  strategy keeps the best bid from the bookTickers it is called with, as a real client reads its
  own feed, so the venue's matching book stays lazy (docs/venues-sim.md)
* ``sim_orders_md_latency`` the same strategy on the delayed feed (2 ms market-data latency)
* ``sim_driver_orders_venue_book`` / ``sim_orders_md_latency_venue_book``: the previous workload,
  the same order stream but the best bid read from the venue's own matching book
  (``venue.book()``, which no real client can read): a handed-out book is applied on every
  depth message, so this measures the eager venue (562 orders, ~378 fills)

One untimed warm-up round precedes the timed ones.
Run: ``python -m pytest bench/test_bench_sim.py --benchmark-enable -q -s``
Median (and min) times and events/s, with the ratio to ``bare_l2book`` measured in the same run, are printed
at the end (``-s``) and recorded in bench/results/sim.md.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "venues"))

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
    QuoteTick,
    Side,
    TimeInForce,
)
from venues.base import run_now
from venues.latency import LatencyModel
from venues.sim import SimulatedVenue, SimVenueConfig
from venues.sim_driver import SimulationDriver

pytestmark = pytest.mark.skipif(not usdm_path().exists(), reason=f"real data not found at {usdm_path()}")

ROUNDS = 9
RESULTS: dict[str, tuple[float, float]] = {}   # name -> (median s, min s)
INTERLEAVED: dict[str, list[float]] = {}
INTERLEAVED_CPU: dict[str, list[float]] = {}


@pytest.fixture(scope="module")
def events() -> tuple[MarketEvent, ...]:
    return load_usdm_events()


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    if "bare_l2book" not in RESULTS:
        return
    ref_med, ref_min = RESULTS["bare_l2book"]
    n = len(load_usdm_events())
    if INTERLEAVED:
        ref = statistics.median(INTERLEAVED["bare_l2book"])
        rounds = len(INTERLEAVED["bare_l2book"])
        print(f"\ninterleaved round-robin, {n} events, {rounds} rounds (median; robust to load swings)")
        cpu_ref = statistics.median(INTERLEAVED_CPU["bare_l2book"])
        for name, times in INTERLEAVED.items():
            med = statistics.median(times)
            cpu = statistics.median(INTERLEAVED_CPU[name])
            print(f"  {name:32s} {med * 1e3:7.1f} ms {n / med:>10,.0f} ev/s  x{med / ref:.2f} of bare L2Book"
                  f"  | CPU {cpu * 1e3:7.1f} ms {n / cpu:>10,.0f} ev/s x{cpu / cpu_ref:.2f}")
    print(f"\nsimulated venue throughput, {n} events, {ROUNDS} rounds (median | min)")
    for name, (med, low) in RESULTS.items():
        print(f"  {name:32s} {med * 1e3:7.1f} ms {n / med:>10,.0f} ev/s x{med / ref_med:.2f}"
              f"  | {low * 1e3:7.1f} ms {n / low:>10,.0f} ev/s x{low / ref_min:.2f}  (time vs bare L2Book)")


def _record(benchmark: Any, name: str) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        RESULTS[name] = (stats.stats.median, stats.stats.min)


def _venue(clock: SimClock, **kw: Any) -> SimulatedVenue:
    return SimulatedVenue(SimVenueConfig(
        venue=VENUE, instruments=[usdm_instrument()], rate_limit_orders=None, sequence_rule="prev",
        balances={"USDT": Decimal(100_000_000), "BTC": Decimal(10_000)}, **kw), clock)


def test_bare_l2book(benchmark: Any, events: tuple[MarketEvent, ...]) -> None:
    def setup() -> tuple[tuple[L2Book], dict[str, Any]]:
        return (L2Book(VENUE, SYMBOL, sequence_rule="prev"),), {}

    def run(book: L2Book) -> L2Book:
        apply = book.apply
        for e in events:
            if type(e) is BookDeltas:
                apply(e)
        return book

    book = benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert book.statistics()["gaps"] == 0
    _record(benchmark, "bare_l2book")


def test_sim_direct(benchmark: Any, events: tuple[MarketEvent, ...]) -> None:
    def setup() -> tuple[tuple[SimulatedVenue], dict[str, Any]]:
        return (_venue(SimClock(events[0].ts_event)),), {}

    def run(venue: SimulatedVenue) -> SimulatedVenue:
        on_event = venue.on_market_event
        for e in events:
            on_event(e)
        return venue

    venue = benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert venue.stat_market_events == len(events)
    ref = L2Book(VENUE, SYMBOL)
    for e in events:
        if type(e) is BookDeltas:
            ref.apply(e)
    assert venue.book(SYMBOL).bids(20) == ref.bids(20) and venue.book(SYMBOL).asks(20) == ref.asks(20)
    _record(benchmark, "sim_direct")


def test_sim_direct_eager(benchmark: Any, events: tuple[MarketEvent, ...]) -> None:
    def setup() -> tuple[tuple[SimulatedVenue], dict[str, Any]]:
        venue = _venue(SimClock(events[0].ts_event))
        venue.book(SYMBOL)   # handed out: kept current on every message
        return (venue,), {}

    def run(venue: SimulatedVenue) -> SimulatedVenue:
        on_event = venue.on_market_event
        for e in events:
            on_event(e)
        return venue

    venue = benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert venue.stat_market_events == len(events)
    _record(benchmark, "sim_direct_eager")


def test_sim_driver(benchmark: Any, events: tuple[MarketEvent, ...]) -> None:
    def setup() -> tuple[tuple[SimulationDriver], dict[str, Any]]:
        clock = SimClock(events[0].ts_event)
        driver = SimulationDriver(clock, events)
        driver.add_venue(_venue(clock))
        return (driver,), {}

    def run(driver: SimulationDriver) -> int:
        return driver.run().events

    assert benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1) == len(events)
    _record(benchmark, "sim_driver")


def _strategy_setup(events: tuple[MarketEvent, ...], replace_every: int = 200, ioc_every: int = 1_000,
                    delayed: bool = True, venue_book: bool = False,
                    ) -> tuple[SimulationDriver, SimulatedVenue, list[OrderEvent]]:
    """The bench strategy: a resting 0.01 BTC bid at the best bid re-placed (cancel + new) every
    ``replace_every`` events, a 0.02 BTC IOC market sell every ``ioc_every``.

    The best bid is the one of the last bookTicker the strategy was called with (its own feed, as
    a real client sees it), or with ``venue_book=True`` the matching engine's own book
    (``venue.book()``; the previous workload, which no real client can read and which makes the
    venue apply every depth message as it comes)."""
    clock = SimClock(events[0].ts_event)
    venue = _venue(clock, market_data_latency=LatencyModel.constant(2 * NS_PER_MS),
                   order_entry_latency=LatencyModel.empirical([NS_PER_MS, 2 * NS_PER_MS, 3 * NS_PER_MS]),
                   ack_latency=LatencyModel.constant(NS_PER_MS), seed=11)
    out: list[OrderEvent] = []
    venue.set_event_handler(out.append)
    driver = SimulationDriver(clock, events)
    driver.add_venue(venue)
    book = venue.book(SYMBOL) if venue_book else None
    n = 0
    live = ""
    best_bid: int | None = None
    submit, cancel = venue.submit, venue.cancel

    step = math.gcd(replace_every, ioc_every)

    def strategy(e: MarketEvent) -> None:
        nonlocal n, live, best_bid
        if type(e) is QuoteTick:
            best_bid = e.bid_ticks
        n += 1
        if n % step:
            return
        if n % replace_every == 0:
            bid = best_bid if book is None else book.best_bid_ticks
            if bid is not None:
                if live:
                    run_now(cancel(ClientOrderId(live)))
                live = f"b{n}"
                run_now(submit(Order(ClientOrderId(live), VENUE, SYMBOL, Side.BUY, OrderType.LIMIT, 10,
                                     bid, TimeInForce.GTC)))
        if n % ioc_every == 0:
            run_now(submit(Order(ClientOrderId(f"i{n}"), VENUE, SYMBOL, Side.SELL, OrderType.MARKET, 20,
                                 None, TimeInForce.IOC)))

    driver.subscribe(strategy, delayed=delayed)
    return driver, venue, out


def _bench_orders(benchmark: Any, events: tuple[MarketEvent, ...], name: str, delayed: bool,
                  venue_book: bool = False) -> None:
    last: list[SimulatedVenue] = []

    def setup() -> tuple[tuple[SimulationDriver], dict[str, Any]]:
        driver, venue, _ = _strategy_setup(events, delayed=delayed, venue_book=venue_book)
        last[:] = [venue]
        return (driver,), {}

    def run(driver: SimulationDriver) -> int:
        return driver.run().events

    assert benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1) == len(events)
    stats = last[0].statistics()
    assert stats["orders"] > 500 and stats["fills"] > 50, stats
    _record(benchmark, name)


def test_sim_driver_orders(benchmark: Any, events: tuple[MarketEvent, ...]) -> None:
    """Strategy called at exchange time (no market-data latency): the matching engine's cost."""
    _bench_orders(benchmark, events, "sim_driver_orders", delayed=False)


def test_sim_driver_orders_md_latency(benchmark: Any, events: tuple[MarketEvent, ...]) -> None:
    """Strategy on the delayed feed (2 ms): adds the per-event latency bookkeeping."""
    _bench_orders(benchmark, events, "sim_orders_md_latency", delayed=True)


def test_sim_driver_orders_venue_book(benchmark: Any, events: tuple[MarketEvent, ...]) -> None:
    """The previous workload: the strategy reads the venue's matching book (applied eagerly)."""
    _bench_orders(benchmark, events, "sim_driver_orders_venue_book", delayed=False, venue_book=True)


def test_sim_driver_orders_md_latency_venue_book(benchmark: Any, events: tuple[MarketEvent, ...]) -> None:
    _bench_orders(benchmark, events, "sim_orders_md_latency_venue_book", delayed=True, venue_book=True)


def test_interleaved_ratios(benchmark: Any, events: tuple[MarketEvent, ...]) -> None:
    """All variants once per round, round-robin, each timed on its own (``time.perf_counter`` and
    the process CPU time ``time.process_time``): every variant sees the same machine load, so the
    ratios hold even on a busy shared machine."""
    INTERLEAVED.clear()
    INTERLEAVED_CPU.clear()

    def _lap(name: str, t0: float, c0: float) -> None:
        INTERLEAVED.setdefault(name, []).append(time.perf_counter() - t0)
        INTERLEAVED_CPU.setdefault(name, []).append(time.process_time() - c0)

    def bare() -> None:
        book = L2Book(VENUE, SYMBOL, sequence_rule="prev")
        apply = book.apply
        t0, c0 = time.perf_counter(), time.process_time()
        for e in events:
            if type(e) is BookDeltas:
                apply(e)
        _lap("bare_l2book", t0, c0)

    def direct() -> None:
        on_event = _venue(SimClock(events[0].ts_event)).on_market_event
        t0, c0 = time.perf_counter(), time.process_time()
        for e in events:
            on_event(e)
        _lap("sim_direct", t0, c0)
        eager = _venue(SimClock(events[0].ts_event))
        eager.book(SYMBOL)
        on_event = eager.on_market_event
        t0, c0 = time.perf_counter(), time.process_time()
        for e in events:
            on_event(e)
        _lap("sim_direct_eager", t0, c0)

    def driven(name: str, driver: SimulationDriver) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        driver.run()
        _lap(name, t0, c0)

    def one_round() -> None:
        bare()
        direct()
        clock = SimClock(events[0].ts_event)
        plain = SimulationDriver(clock, events)
        plain.add_venue(_venue(clock))
        driven("sim_driver", plain)
        driven("sim_driver_orders", _strategy_setup(events, delayed=False)[0])
        driven("sim_orders_md_latency", _strategy_setup(events, delayed=True)[0])
        driven("sim_driver_orders_venue_book", _strategy_setup(events, delayed=False, venue_book=True)[0])
        driven("sim_orders_md_latency_venue_book", _strategy_setup(events, delayed=True, venue_book=True)[0])

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    assert len(INTERLEAVED["bare_l2book"]) >= 1 and len(INTERLEAVED) == 8
