"""Simulated-venue scenarios on the real Binance USD-M BTCUSDT capture (../shared/data).

Skipped with a message when the data directory is missing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sim_usdm_reader import SYMBOL, VENUE, load_usdm_events, usdm_instrument, usdm_path

from marketdata.book import L2Book
from marketdata.clock import NS_PER_MS, NS_PER_SECOND, SimClock
from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    Liquidity,
    MarketEvent,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderType,
    Side,
    TimeInForce,
    TradeTick,
)
from venues.base import FeeSchedule, FeeTier, run_now
from venues.latency import LatencyModel
from venues.sim import QueueModel, SimulatedVenue, SimVenueConfig
from venues.sim_driver import SimulationDriver

pytestmark = pytest.mark.skipif(not usdm_path().exists(),
                                reason=f"real data not found at {usdm_path()} (set SOREX_SHARED)")

INST = usdm_instrument()


@pytest.fixture(scope="module")
def events() -> tuple[MarketEvent, ...]:
    return load_usdm_events()


def setup(events: tuple[MarketEvent, ...], *, seed: int = 0, entry_ns: int = 5 * NS_PER_MS,
          queue_model: QueueModel | None = None, **kw: object
          ) -> tuple[SimulatedVenue, SimClock, SimulationDriver, list[OrderEvent]]:
    clock = SimClock(events[0].ts_event)
    cfg = SimVenueConfig(
        venue=VENUE, instruments=[INST], balances={"USDT": Decimal(10_000_000), "BTC": Decimal(1_000)},
        fees=FeeSchedule((FeeTier(maker_bps=Decimal("0.2"), taker_bps=Decimal("5")),)),
        order_entry_latency=LatencyModel.constant(entry_ns), ack_latency=LatencyModel.constant(NS_PER_MS),
        queue_model=queue_model or QueueModel(), seed=seed, rate_limit_orders=None, **kw)  # type: ignore[arg-type]
    venue = SimulatedVenue(cfg, clock)
    out: list[OrderEvent] = []
    venue.set_event_handler(out.append)
    driver = SimulationDriver(clock, events)
    driver.add_venue(venue)
    return venue, clock, driver, out


def book_before(events: tuple[MarketEvent, ...], ts_ns: int) -> L2Book:
    """Independent reference: the venue's book from every depth event strictly before ``ts_ns``."""
    book = L2Book(VENUE, SYMBOL)
    for e in events:
        if e.ts_event >= ts_ns:
            break
        if type(e) is BookDeltas:
            book.apply(e)
    return book


def walk(book: L2Book, side: Side, lots: int) -> list[tuple[int, int]]:
    out = []
    for px, avail in book.depth(side.opposite):
        take = min(avail, lots)
        out.append((px, take))
        lots -= take
        if not lots:
            break
    return out


def fills_of(out: list[OrderEvent], cid: str) -> list[tuple[int, int]]:
    return [(e.fill.price_ticks, e.fill.lots) for e in out if e.client_order_id == cid and e.fill]


def mkorder(cid: str, side: Side, lots: int, px: int | None, tif: TimeInForce = TimeInForce.GTC,
            expire_ts: int | None = None) -> Order:
    return Order(ClientOrderId(cid), VENUE, SYMBOL, side, OrderType.LIMIT if px is not None else OrderType.MARKET,
                 lots, px, tif, expire_ts=expire_ts)


def test_large_market_order_gets_level_by_level_prices_at_arrival(events: tuple[MarketEvent, ...]) -> None:
    venue, _clock, driver, out = setup(events)
    t_submit = events[0].ts_event + 40 * NS_PER_SECOND
    driver.run(until_ns=t_submit)
    asks_now = venue.book(SYMBOL).asks(5)
    lots = sum(q for _, q in asks_now[:4]) + 1     # several levels deep
    run_now(venue.submit(mkorder("big", Side.BUY, lots, None, TimeInForce.IOC)))
    driver.run(until_ns=t_submit + 50 * NS_PER_MS)
    expected = walk(book_before(events, t_submit + 5 * NS_PER_MS), Side.BUY, lots)
    got = fills_of(out, "big")
    assert len(expected) >= 3
    assert got == expected
    fills = [e.fill for e in out if e.client_order_id == "big" and e.fill]
    assert all(f.liquidity is Liquidity.TAKER and f.ts_event == t_submit + 5 * NS_PER_MS for f in fills)
    assert [e.kind for e in out if e.client_order_id == "big"][-1] is OrderEventKind.FILLED


def test_two_orders_never_consume_the_same_displayed_size(events: tuple[MarketEvent, ...]) -> None:
    venue, _clock, driver, out = setup(events)
    t_submit = events[0].ts_event + 100 * NS_PER_SECOND
    driver.run(until_ns=t_submit)
    top = venue.book(SYMBOL).bids(3)
    a_lots = top[0][1] + top[1][1] // 2           # first sell takes level 1 and half of level 2
    b_lots = top[1][1]
    run_now(venue.submit(mkorder("s1", Side.SELL, a_lots, None, TimeInForce.IOC)))
    run_now(venue.submit(mkorder("s2", Side.SELL, b_lots, None, TimeInForce.IOC)))
    driver.run(until_ns=t_submit + 50 * NS_PER_MS)
    ref = book_before(events, t_submit + 5 * NS_PER_MS)
    combined = walk(ref, Side.SELL, a_lots + b_lots)
    got = fills_of(out, "s1") + fills_of(out, "s2")
    per_level: dict[int, int] = {}
    for px, q in got:
        per_level[px] = per_level.get(px, 0) + q
    for px, q in per_level.items():
        assert q <= ref.bid_lots_at(px), f"took {q} lots at {px}, only {ref.bid_lots_at(px)} displayed"
    assert sorted(per_level.items(), reverse=True) == combined
    assert fills_of(out, "s2")[0][0] <= fills_of(out, "s1")[-1][0]


def test_resting_order_fills_only_after_queue_ahead_traded(events: tuple[MarketEvent, ...]) -> None:
    venue, clock, driver, out = setup(events, entry_ns=0, queue_model=QueueModel("risk_averse"))
    t_submit = events[0].ts_event + 30 * NS_PER_SECOND
    driver.run(until_ns=t_submit)
    px = venue.book(SYMBOL).best_bid_ticks
    assert px is not None
    run_now(venue.submit(mkorder("q", Side.BUY, 5, px)))
    clock.advance_to(clock.now_ns())
    front0 = venue.queue_ahead(ClientOrderId("q"))
    assert front0 > 100, "the scenario needs a long queue ahead"
    traded = [0]
    min_level = [front0]
    traded_at_fill: list[int] = []

    def watch(e: MarketEvent) -> None:
        # called right after the matching engine processed ``e``
        if traded_at_fill:
            return
        if type(e) is TradeTick and e.price_ticks == px and e.aggressor is Side.SELL:
            traded[0] += e.lots
        if run_now(venue.order_status(ClientOrderId("q"))).filled_lots:
            traded_at_fill.append(traded[0])
            driver.stop()
        elif type(e) is BookDeltas:
            min_level[0] = min(min_level[0], venue.book(SYMBOL).bid_lots_at(px))

    driver.subscribe(watch, delayed=False)
    driver.run(until_ns=t_submit + 120 * NS_PER_SECOND)
    assert traded_at_fill, "the resting order never filled in two minutes"
    # Risk-averse queue: only prints at our price (or the level itself falling below us) move us
    # forward, so at least min(front0, smallest level seen) must have traded when we first fill.
    assert traded_at_fill[0] > min(front0, min_level[0]) > 0
    driver.run(until_ns=clock.now_ns() + 10 * NS_PER_MS)
    f = [e.fill for e in out if e.client_order_id == "q" and e.fill]
    assert f and all(x.price_ticks == px and x.liquidity is Liquidity.MAKER for x in f)


def test_post_only_that_would_take_is_rejected_and_gtd_expires(events: tuple[MarketEvent, ...]) -> None:
    venue, _clock, driver, out = setup(events)
    t_submit = events[0].ts_event + 60 * NS_PER_SECOND
    driver.run(until_ns=t_submit)
    ref = book_before(events, t_submit + 5 * NS_PER_MS)
    ask = ref.best_ask_ticks
    assert ask is not None
    run_now(venue.submit(mkorder("po", Side.BUY, 5, ask, TimeInForce.POST_ONLY)))
    expire = t_submit + 2 * NS_PER_SECOND
    run_now(venue.submit(mkorder("gtd", Side.SELL, 5, ask + 50_000, TimeInForce.GTD, expire_ts=expire)))
    driver.run(until_ns=t_submit + 3 * NS_PER_SECOND)
    po = [e for e in out if e.client_order_id == "po"]
    assert [e.kind for e in po] == [OrderEventKind.REJECTED]
    assert po[0].reason == "Order would immediately match and take."
    gtd = [e for e in out if e.client_order_id == "gtd"]
    assert [e.kind for e in gtd] == [OrderEventKind.ACCEPTED, OrderEventKind.EXPIRED]
    assert gtd[-1].ts_event == expire and gtd[-1].ts_init == expire + NS_PER_MS


def session(events: tuple[MarketEvent, ...], seed: int) -> list[tuple[str, int, int, int]]:
    """A strategy on delayed data: re-places a bid every 400 events, an IOC every 1500; random
    latencies and a stochastic queue model. Returns every fill."""
    venue, _clock, driver, out = setup(
        events, seed=seed, queue_model=QueueModel("power", 2.0, stochastic=True),
        market_data_latency=LatencyModel.lognormal(2 * NS_PER_MS, 0.5))
    venue.config.order_entry_latency = LatencyModel.lognormal(3 * NS_PER_MS, 0.6)
    venue.config.ack_latency = LatencyModel.empirical([1 * NS_PER_MS, 2 * NS_PER_MS, 7 * NS_PER_MS])
    n = [0]
    live: list[str] = []

    def strategy(e: MarketEvent) -> None:
        n[0] += 1
        book = venue.book(SYMBOL)
        if n[0] % 400 == 0 and book.best_bid_ticks is not None:
            for cid in live:
                run_now(venue.cancel(ClientOrderId(cid)))
            live.clear()
            cid = f"bid{n[0]}"
            run_now(venue.submit(mkorder(cid, Side.BUY, 10, book.best_bid_ticks)))
            live.append(cid)
        if n[0] % 1500 == 0:
            run_now(venue.submit(mkorder(f"ioc{n[0]}", Side.SELL, 20, None, TimeInForce.IOC)))

    driver.subscribe(strategy)
    driver.run(until_ns=events[0].ts_event + 60 * NS_PER_SECOND)
    return [(e.client_order_id, e.fill.price_ticks, e.fill.lots, e.ts_init) for e in out if e.fill]


def test_our_orders_never_alter_the_engine_book(events: tuple[MarketEvent, ...]) -> None:
    venue, _clock, driver, out = setup(events)
    n = [0]

    def strategy(e: MarketEvent) -> None:
        n[0] += 1
        if n[0] % 700 == 0:
            run_now(venue.submit(mkorder(f"x{n[0]}", Side.BUY if n[0] % 1400 else Side.SELL, 30, None,
                                         TimeInForce.IOC)))

    driver.subscribe(strategy)
    end = events[0].ts_event + 90 * NS_PER_SECOND
    driver.run(until_ns=end)
    assert sum(1 for e in out if e.fill) > 20
    ref = book_before(events, end + 1)
    book = venue.book(SYMBOL)
    book._check()
    assert book.bids() == ref.bids() and book.asks() == ref.asks()


def test_same_seed_same_fills_different_seed_may_differ(events: tuple[MarketEvent, ...]) -> None:
    a = session(events, 1)
    b = session(events, 1)
    assert a and a == b
    others = [session(events, s) for s in (2, 3)]
    assert any(o != a for o in others)
