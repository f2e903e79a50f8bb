"""Whole-engine throughput and tick-to-child latency on the bundled real data.

Market events of binance-spot and binance-usdm (BTC-USDT, the whole bundled span, ~193,000 events)
are decoded once per session and replayed from memory, so parsing is not measured. Variants:

* ``bare_books``     reference: ``L2Book.apply`` of every BookDeltas into the two books, nothing else
* ``driver_books``   reference: SimulationDriver + the two simulated venues (matching engines fed at
  exchange time, market-data latency on the delayed feed) + a subscriber keeping its own two books:
  the bare driver+books replay every engine run pays
* ``driver_books_typed`` the same, the subscriber declaring ``types=(BookDeltas, TradeTick)`` (as the
  engine does): bookTickers are not queued on the delayed feeds
* ``engine_vwap``    the full engine: one VWAP parent (buy 3 BTC over 4 min, 10 % participation,
  final sweep) routed across both venues, risk checks, order manager, rate limiters, journal off;
  the run continues to the end of the data after the parent completes
* ``engine_vwap_probe`` the same with the tick-to-child probe on (``time.perf_counter_ns``): for every
  child order leaving the rate limiter inside a market-event or algo-timer callback, the wall time
  from the start of that callback to the order leaving the limiter (before ``Venue.submit``), split
  into the ``Router.route`` share, the simulated venues' submit/cancel calls made earlier in the
  same callback, and the rest; and by trigger (market event / algo timer)

* ``route_cold_warm`` POV run: each ``Router.route`` the engine makes is timed as made (cold: the
  replay ran in between), then the same request is routed 5 more times at once (warm, as in the
  router's own benchmark); measurement only (the extra decisions are discarded, but they advance
  the router's decision counter, so this run's children differ from the plain POV run)

* ``interleaved``     bare_books, driver_books and engine_vwap once per round, round-robin, each timed
  on its own: all three see the same machine load, so their ratios are the ones to trust on a busy
  shared machine

Every figure is a median over the rounds; ratios are to ``bare_books`` measured in the same run.
Run: ``python -m pytest bench/test_bench_engine.py --benchmark-enable -q -s``
Figures are printed at the end (``-s``) and recorded in bench/results/engine.md.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.model import BookDeltas, Instrument, MarketEvent, TradeTick
from marketdata.replay import Dataset, default_dataset
from router.engine import POV, VWAP, Engine, ParentOrder
from router.engine_config import load_engine_config_text
from venues.latency import LatencyModel
from venues.sim import SimulatedVenue, SimVenueConfig
from venues.sim_driver import SimulationDriver

VENUES = ["binance-spot", "binance-usdm"]
ROUNDS = 3
RESULTS: dict[str, float] = {}
EVENTS: dict[str, int] = {}
LATENCY: dict[str, list[int]] = {}
SPLIT: dict[str, list[tuple[int, int, int, str, bool]]] = {}   # per child: (total, route, venue ns, trigger, first)
INTERLEAVED: dict[str, list[float]] = {}
INTERLEAVED_EVENTS: list[int] = []


class _MemoryDataset:
    """A Dataset replaying pre-decoded events (same instruments and sequence rules)."""

    def __init__(self, ds: Dataset, events: list[MarketEvent]) -> None:
        self._ds = ds
        self._events = events
        self.instruments: dict[str, Instrument] = ds.instruments
        self.start_ns, self.end_ns = ds.start_ns, ds.end_ns
        self.source, self.format = ds.source, ds.format

    def sequence_rule(self, venue: str) -> Any:
        return self._ds.sequence_rule(venue)

    def events(self, venues: Iterable[str] | None = None) -> Iterator[MarketEvent]:
        return iter(self._events)


@pytest.fixture(scope="module")
def data() -> _MemoryDataset:
    ds = default_dataset()
    return _MemoryDataset(ds, list(ds.events(VENUES)))


def _engine(data: _MemoryDataset, probe: Any = None, algo: Any = None) -> Engine:
    cfg = load_engine_config_text('[engine]\nseed = 3\n', file="bench.toml")
    engine = Engine(cfg, dataset=data, tick_probe=probe)   # type: ignore[arg-type]
    engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="3",
                              algo=algo or VWAP(end="+4m", max_participation=0.1, final_sweep=True)))
    return engine


def _record(name: str, benchmark: Any, events: int) -> None:
    RESULTS[name] = benchmark.stats.stats.median
    EVENTS[name] = events


def test_bare_books(benchmark: Any, data: _MemoryDataset) -> None:
    evs = data._events

    def setup() -> tuple[tuple[dict[str, L2Book]], dict[str, Any]]:
        return ({v: L2Book(v, "BTC-USDT", sequence_rule=data.sequence_rule(v)) for v in VENUES},), {}

    def replay(books: dict[str, L2Book]) -> None:
        for ev in evs:
            if type(ev) is BookDeltas:
                books[ev.venue].apply(ev)

    benchmark.pedantic(replay, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    _record("bare_books", benchmark, len(evs))


def test_driver_books(benchmark: Any, data: _MemoryDataset) -> None:
    evs = data._events

    def setup() -> tuple[tuple[SimulationDriver], dict[str, Any]]:
        return (_driver_books(data),), {}

    benchmark.pedantic(lambda d: d.run(), setup=setup, rounds=ROUNDS, warmup_rounds=1)
    _record("driver_books", benchmark, len(evs))


def test_driver_books_typed(benchmark: Any, data: _MemoryDataset) -> None:
    evs = data._events

    def setup() -> tuple[tuple[SimulationDriver], dict[str, Any]]:
        return (_driver_books(data, typed=True),), {}

    benchmark.pedantic(lambda d: d.run(), setup=setup, rounds=ROUNDS, warmup_rounds=1)
    _record("driver_books_typed", benchmark, len(evs))


def _driver_books(data: _MemoryDataset, typed: bool = False) -> SimulationDriver:
    from router.engine_config import DEFAULT_BALANCES
    from venues.base import FeeSchedule, FeeTier

    clock = SimClock(data.start_ns)
    driver = SimulationDriver(clock, data._events)
    books = {v: L2Book(v, "BTC-USDT", sequence_rule=data.sequence_rule(v)) for v in VENUES}
    for k, v in enumerate(VENUES):
        driver.add_venue(SimulatedVenue(SimVenueConfig(
            venue=v, instruments=[data.instruments[v]],  # type: ignore[arg-type]
            fees=FeeSchedule((FeeTier(),)), balances=dict(DEFAULT_BALANCES),
            market_data_latency=LatencyModel.lognormal(3_000_000, 0.3),
            sequence_rule=data.sequence_rule(v), seed=k), clock))

    def on(ev: MarketEvent) -> None:
        if type(ev) is BookDeltas:
            books[ev.venue].apply(ev)
    driver.subscribe(on, VENUES, delayed=True, types=(BookDeltas, TradeTick) if typed else None)
    return driver


def test_engine_vwap(benchmark: Any, data: _MemoryDataset) -> None:
    done: list[Engine] = []

    def setup() -> tuple[tuple[Engine], dict[str, Any]]:
        return (_engine(data),), {}

    def run(engine: Engine) -> None:
        engine.run(stop_when=lambda: False)
        done.append(engine)

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    e = done[-1]
    p = e.summary()["parents"][0]
    assert p["status"] == "filled", p
    _record("engine_vwap", benchmark, e.stats.market_events)


def test_engine_vwap_probe(benchmark: Any, data: _MemoryDataset) -> None:
    done: list[Engine] = []

    def setup() -> tuple[tuple[Engine], dict[str, Any]]:
        return (_engine(data, time.perf_counter_ns),), {}

    def run(engine: Engine) -> None:
        engine.run(stop_when=lambda: False)
        done.append(engine)

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    LATENCY["vwap"] = [x for e in done for x in e.stats.tick_to_child_ns]
    SPLIT["vwap"] = _split(done)
    _record("engine_vwap_probe", benchmark, done[-1].stats.market_events)


def test_engine_pov_probe(benchmark: Any, data: _MemoryDataset) -> None:
    """POV reacts to every public trade: many children leave inside market-event callbacks."""
    done: list[Engine] = []

    def setup() -> tuple[tuple[Engine], dict[str, Any]]:
        return (_engine(data, time.perf_counter_ns, POV(end="+4m", target_rate=0.05)),), {}

    def run(engine: Engine) -> None:
        engine.run(stop_when=lambda: False)
        done.append(engine)

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=1)
    LATENCY["pov"] = [x for e in done for x in e.stats.tick_to_child_ns]
    SPLIT["pov"] = _split(done)
    _record("engine_pov_probe", benchmark, done[-1].stats.market_events)


def _split(done: list[Engine]) -> list[tuple[int, int, int, str, bool]]:
    return [x for e in done for x in zip(e.stats.tick_to_child_ns, e.stats.tick_to_child_route_ns,
                                         e.stats.tick_to_child_venue_ns, e.stats.tick_to_child_trigger,
                                         e.stats.tick_to_child_first, strict=True)]


def _q(xs: list[int]) -> str:
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    return f"n={len(xs)} median {statistics.median(xs) / 1e3:.1f} us, p99 {p99 / 1e3:.1f} us, max {xs[-1] / 1e3:.1f} us"


def test_route_cold_warm(benchmark: Any, data: _MemoryDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """Router.route inside the engine (cold) vs the same request repeated at once (warm)."""
    from router.routing import Router, RouteRequest, RoutingDecision
    cold: list[int] = []
    warm: list[float] = []
    orig = Router.route
    clock = time.perf_counter_ns

    def route(self: Router, request: RouteRequest) -> RoutingDecision:
        t0 = clock()
        decision = orig(self, request)
        t1 = clock()
        for _ in range(5):
            orig(self, request)
        cold.append(t1 - t0)
        warm.append((clock() - t1) / 5)
        return decision

    monkeypatch.setattr(Router, "route", route)

    def run() -> None:
        _engine(data, None, POV(end="+4m", target_rate=0.05)).run(stop_when=lambda: False)

    benchmark.pedantic(run, rounds=2, warmup_rounds=0)
    LATENCY["route cold (in the run)"] = cold
    LATENCY["route warm (repeated at once)"] = [int(x) for x in warm]


def test_interleaved(benchmark: Any, data: _MemoryDataset) -> None:
    """bare_books, driver_books and engine_vwap once per round, each timed on its own."""
    INTERLEAVED.clear()
    evs = data._events
    INTERLEAVED_EVENTS[:] = [len(evs)]

    def one_round() -> None:
        books = {v: L2Book(v, "BTC-USDT", sequence_rule=data.sequence_rule(v)) for v in VENUES}
        t0 = time.perf_counter()
        for ev in evs:
            if type(ev) is BookDeltas:
                books[ev.venue].apply(ev)
        INTERLEAVED.setdefault("bare_books", []).append(time.perf_counter() - t0)
        driver = _driver_books(data)
        t0 = time.perf_counter()
        driver.run()
        INTERLEAVED.setdefault("driver_books", []).append(time.perf_counter() - t0)
        engine = _engine(data)
        t0 = time.perf_counter()
        engine.run(stop_when=lambda: False)
        INTERLEAVED.setdefault("engine_vwap", []).append(time.perf_counter() - t0)
        assert engine.summary()["parents"][0]["status"] == "filled"

    benchmark.pedantic(one_round, rounds=ROUNDS + 2, warmup_rounds=1)


def teardown_module() -> None:
    if not RESULTS and not INTERLEAVED:
        return
    ref = RESULTS.get("bare_books")
    print("\nvariant              median s   events   events/s   x bare_books (time)")
    for name, med in RESULTS.items():
        n = EVENTS[name]
        ratio = f"{med / ref:.2f}" if ref else "-"
        print(f"{name:<20} {med:8.3f} {n:8d} {n / med:10,.0f}   {ratio}")
    if INTERLEAVED:
        n = INTERLEAVED_EVENTS[0] if INTERLEAVED_EVENTS else 0
        iref = statistics.median(INTERLEAVED["bare_books"])
        rounds = len(INTERLEAVED["bare_books"])
        print(f"interleaved round-robin, {rounds} rounds (median; same load for all three)")
        for name, xs in INTERLEAVED.items():
            med = statistics.median(xs)
            rate = f"{n / med:10,.0f}" if n else "         -"
            print(f"{name:<20} {med:8.3f} {rate} ev/s   x{med / iref:.2f} of bare_books")
    for name, lat in LATENCY.items():
        if not lat:
            continue
        xs = sorted(lat)
        p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
        label = name if name.startswith("route") else f"tick-to-child ({name})"
        print(f"{label}: n={len(xs)} median {statistics.median(xs) / 1e3:.1f} us, "
              f"p99 {p99 / 1e3:.1f} us, max {xs[-1] / 1e3:.1f} us")
    for name, rows in SPLIT.items():
        # the same children split: the Router.route share (every route of the callback up to the
        # child), the simulated venues' submit/cancel calls made earlier in the callback, and the
        # rest (algo, engine checks, risk, order manager, rate limiter)
        # "first": the first child out of each callback only (tick-to-trade proper: a later
        # child's time includes the earlier children's whole path)
        for trig in ("all", "first", "market", "timer"):
            sel = [r for r in rows if trig == "all" or r[3] == trig or (trig == "first" and r[4])]
            if not sel:
                continue
            print(f"  {name} [{trig}] total          {_q([r[0] for r in sel])}")
            print(f"  {name} [{trig}] route          {_q([r[1] for r in sel])}")
            print(f"  {name} [{trig}] venue calls    {_q([r[2] for r in sel])}")
            print(f"  {name} [{trig}] total - route  {_q([r[0] - r[1] for r in sel])}")
            print(f"  {name} [{trig}] rest (- venue) {_q([r[0] - r[1] - r[2] for r in sel])}")
