"""The engine's and the driver's fast paths give exactly what the plain versions give.

* ``router.engine._apply_depth`` (the engine's market-view books, level updates inlined) leaves
  the book in the same state as ``L2Book.apply`` after every message: on the whole bundled data
  and on crafted sequences (gaps, stale messages, snapshots, crossing, rule ``none``);
* a driver subscriber that declares ``types`` gets exactly the events of those types, at the same
  virtual times and in the same order as a subscriber taking everything, and event types nobody
  needs are not queued on the delayed feed;
* the tick-to-child probe's per-child lists stay aligned and mark each callback's first child.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from marketdata.book import L2Book, SequenceRule
from marketdata.clock import SimClock
from marketdata.model import BookDeltas, MarketEvent, QuoteTick, TradeTick, VenueId
from marketdata.replay import default_dataset
from router.engine import VWAP, Engine, ParentOrder, _apply_depth
from router.engine_config import DEFAULT_BALANCES, load_engine_config_text
from venues.base import FeeSchedule, FeeTier
from venues.latency import LatencyModel
from venues.sim import SimulatedVenue, SimVenueConfig
from venues.sim_driver import SimulationDriver

VENUES = ["binance-spot", "binance-usdm"]


def _state(book: L2Book) -> tuple[Any, ...]:
    bb, ba = book.best_bid_ticks, book.best_ask_ticks
    return (bb, ba, None if bb is None else book.bid_lots_at(bb), None if ba is None else book.ask_lots_at(ba),
            book.last_update_id, book.ts_event, book.ts_init, book.crossed, book.needs_resync,
            tuple(sorted(book.statistics().items())))


def _same_books(a: L2Book, b: L2Book) -> None:
    assert a.bids() == b.bids() and a.asks() == b.asks()
    assert _state(a) == _state(b)
    b._check()


@pytest.fixture(scope="module")
def depth() -> tuple[Any, list[BookDeltas]]:
    try:
        ds = default_dataset()
    except Exception as exc:   # pragma: no cover - bundled data missing
        pytest.skip(f"bundled data not available: {exc}")
    return ds, [ev for ev in ds.events(VENUES) if type(ev) is BookDeltas]


def test_apply_depth_equals_l2book_apply_on_bundled_data(depth: tuple[Any, list[BookDeltas]]) -> None:
    ds, msgs = depth
    ref = {v: L2Book(v, "BTC-USDT", sequence_rule=ds.sequence_rule(v)) for v in VENUES}
    fast = {v: L2Book(v, "BTC-USDT", sequence_rule=ds.sequence_rule(v)) for v in VENUES}
    for k, msg in enumerate(msgs):
        ref[msg.venue].apply(msg)
        _apply_depth(fast[msg.venue], msg)
        assert _state(ref[msg.venue]) == _state(fast[msg.venue]), k
    for v in VENUES:
        _same_books(ref[v], fast[v])
        assert ref[v].statistics()["updates"] > 100_000


def _msg(bids: list[tuple[int, int]], asks: list[tuple[int, int]], u: int, *, first: int | None = None,
         prev: int = -1, snap: bool = False, ts: int = 0) -> BookDeltas:
    return BookDeltas(VenueId("x"), "S", bids, asks, ts, ts + 1, snap, u if first is None else first, u, prev)


@pytest.mark.parametrize("rule", ["contiguous", "prev", "none"])
def test_apply_depth_equals_l2book_apply_on_crafted_sequences(rule: SequenceRule) -> None:
    rng = random.Random(7)
    ref = L2Book("x", "S", sequence_rule=rule)
    fast = L2Book("x", "S", sequence_rule=rule)
    gaps: list[L2Book] = []
    fast.on_gap = gaps.append
    last = 100
    msgs = [_msg([(p, 5) for p in range(990, 1000)], [(p, 5) for p in range(1001, 1011)], last, snap=True)]
    for i in range(3000):
        n = rng.randint(0, 6)
        bids = [(rng.randint(980, 1003), rng.choice([0, 0, 1, 2, 7])) for _ in range(n)]
        asks = [(rng.randint(998, 1020), rng.choice([0, 0, 1, 3])) for _ in range(rng.randint(0, 6))]
        roll = rng.random()
        if roll < 0.02:       # snapshot (ends any resync)
            last += 5
            msgs.append(_msg([(p, 4) for p in range(985, 1000)], [(p, 4) for p in range(1000, 1012)], last,
                             snap=True, ts=i))
            continue
        if roll < 0.04:       # a gap
            first, u, prev = last + 3, last + 5, last + 2
        elif roll < 0.06:     # stale
            first, u, prev = last - 3, last - 1, last - 4
        elif roll < 0.08:     # straddles (valid only right after a snapshot)
            first, u, prev = last - 1, last + 2, last - 2
        elif roll < 0.09:     # no ids
            first = u = prev = -1
        else:
            first, u, prev = last + 1, last + rng.randint(1, 3), last
        msgs.append(_msg(bids, asks, u, first=first, prev=prev, ts=i))
        if u > last:
            last = u
    for k, m in enumerate(msgs):
        assert ref.apply(m) is not None
        _apply_depth(fast, m)
        assert _state(ref) == _state(fast), (k, m)
        fast._check()
    _same_books(ref, fast)
    if rule != "none":
        assert ref.stat_gaps > 0 and ref.stat_stale > 0 and len(gaps) == ref.stat_gaps


# ---------------------------------------------------------------------------- driver type filter
def _driver(events: list[MarketEvent]) -> SimulationDriver:
    ds = default_dataset()
    clock = SimClock(events[0].ts_event)
    driver = SimulationDriver(clock, events)
    for k, v in enumerate(VENUES):
        driver.add_venue(SimulatedVenue(SimVenueConfig(
            venue=VenueId(v), instruments=[ds.instruments[v]], fees=FeeSchedule((FeeTier(),)),
            balances=dict(DEFAULT_BALANCES), market_data_latency=LatencyModel.lognormal(3_000_000, 0.3),
            sequence_rule=ds.sequence_rule(v), seed=k), clock))
    return driver


def test_typed_subscriber_sees_the_same_events_at_the_same_times() -> None:
    try:
        ds = default_dataset()
    except Exception as exc:   # pragma: no cover
        pytest.skip(f"bundled data not available: {exc}")
    events = list(ds.events(VENUES))[:40_000]
    assert any(type(e) is QuoteTick for e in events)
    wanted = (BookDeltas, TradeTick)

    def record(driver: SimulationDriver, out: list[tuple[int, int]], only: bool) -> Any:
        clock = driver.clock

        def cb(ev: MarketEvent) -> None:
            if not only or type(ev) in wanted:
                out.append((clock.now_ns(), id(ev)))
            else:
                raise AssertionError(f"{type(ev).__name__} delivered to a typed subscriber")
        return cb

    everything: list[tuple[int, int]] = []
    d1 = _driver(events)
    d1.subscribe(record(d1, everything, False), VENUES, delayed=True)
    d1.run(max_events=25_000)
    d1.run()
    typed: list[tuple[int, int]] = []
    d2 = _driver(events)
    d2.subscribe(record(d2, typed, True), VENUES, delayed=True, types=wanted)
    d2.run(max_events=25_000)
    d2.run()
    by_id = {id(e): e for e in events}
    expected = [x for x in everything if type(by_id[x[1]]) in wanted]
    assert typed == expected and len(typed) > 5_000
    # nothing but the wanted types was ever queued on the typed driver's feeds
    assert d2.clock.now_ns() == d1.clock.now_ns()


def test_mixed_subscribers_each_get_their_types() -> None:
    try:
        ds = default_dataset()
    except Exception as exc:   # pragma: no cover
        pytest.skip(f"bundled data not available: {exc}")
    events = list(ds.events(VENUES))[:20_000]
    d = _driver(events)
    trades: list[MarketEvent] = []
    allev: list[MarketEvent] = []
    now: list[MarketEvent] = []
    d.subscribe(trades.append, VENUES, delayed=True, types=(TradeTick,))
    d.subscribe(allev.append, VENUES, delayed=True)
    d.subscribe(now.append, VENUES, delayed=False, types=(QuoteTick,))
    d.run()
    d.flush(1_000_000_000)
    assert trades == [e for e in allev if type(e) is TradeTick] and trades
    assert now == [e for e in events if type(e) is QuoteTick]
    # the untyped delayed subscriber gets everything (in feed-arrival order across the venues)
    assert sorted(map(id, allev)) == sorted(map(id, events))


# ---------------------------------------------------------------------------- engine capacity
def test_available_balance_reads_the_simulated_ledger() -> None:
    from router.engine import VWAP, Engine, ParentOrder
    from venues.base import run_now

    engine = Engine.default()
    engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="1",
                              algo=VWAP(end="+1m", max_participation=0.1)))
    engine.run(until_ns=engine.dataset.start_ns + 40_000_000_000)   # orders working and filled
    for v, venue in engine.venues.items():
        bals = run_now(venue.balances())
        assert bals
        for asset, b in bals.items():
            assert engine.available_balance(v, asset) == b.free
        assert engine.available_balance(v, "NOPE") is None
    assert engine.available_balance("no-such-venue", "USDT") is None


def test_tick_probe_records_one_aligned_entry_per_child_and_marks_each_callbacks_first() -> None:
    """With ``tick_probe`` set, every child out of the rate limiter inside a callback gets one entry
    in each ``tick_to_child_*`` list; ``tick_to_child_first`` marks the first of its callback: the
    later children of one callback share its start, so their totals and route shares only grow."""
    cfg = load_engine_config_text('[engine]\nseed = 3\n', file="probe.toml")
    engine = Engine(cfg, tick_probe=time.perf_counter_ns)
    engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="3",
                              algo=VWAP(end="+4m", max_participation=0.1, final_sweep=True)))
    engine.run()
    st = engine.stats
    n = len(st.tick_to_child_ns)
    assert n > 0
    assert (len(st.tick_to_child_route_ns), len(st.tick_to_child_venue_ns), len(st.tick_to_child_trigger),
            len(st.tick_to_child_first)) == (n, n, n, n)
    assert st.tick_to_child_first[0] and not all(st.tick_to_child_first)   # VWAP sends 2+ per slice
    assert set(st.tick_to_child_trigger) <= {"market", "timer"}
    for k in range(1, n):
        if not st.tick_to_child_first[k]:   # same callback as entry k-1
            assert st.tick_to_child_ns[k] > st.tick_to_child_ns[k - 1]
            assert st.tick_to_child_route_ns[k] >= st.tick_to_child_route_ns[k - 1]
            assert st.tick_to_child_trigger[k] == st.tick_to_child_trigger[k - 1]
    for t, r, v in zip(st.tick_to_child_ns, st.tick_to_child_route_ns, st.tick_to_child_venue_ns, strict=True):
        assert 0 <= r + v <= t
