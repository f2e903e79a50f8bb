"""Unit tests of the simulated venue's matching, queue, money, limits and latency rules on small
hand-made books (the real-data scenarios are in test_sim_venue_realdata.py)."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.clock import NS_PER_MS, NS_PER_SECOND, SimClock
from marketdata.errors import ConfigError, InvariantError, UnknownOrderError
from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    Instrument,
    InstrumentKind,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    QuoteTick,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
    TradeTick,
    VenueId,
)
from venues.base import FeeSchedule, FeeTier, run_now
from venues.latency import LatencyModel
from venues.sim import QueueModel, SimulatedVenue, SimVenueConfig
from venues.sim_driver import SimulationDriver

V = VenueId("sim-a")
S = Symbol("BTC-USDT")
T0 = 1_000 * NS_PER_SECOND
INST = Instrument(venue=V, symbol=S, venue_symbol="BTCUSDT", base="BTC", quote="USDT",
                  tick_size=Decimal("0.1"), lot_size=Decimal("0.001"), min_quantity=Decimal("0.001"),
                  min_notional=Decimal("0.05"))


def make(seed: int = 1, **kw: object) -> tuple[SimulatedVenue, SimClock, list[OrderEvent]]:
    clock = SimClock(T0)
    kw.setdefault("balances", {"USDT": Decimal("1000000"), "BTC": Decimal("100")})
    cfg = SimVenueConfig(venue=V, instruments=[INST],
                         fees=FeeSchedule((FeeTier(maker_bps=Decimal("-1"), taker_bps=Decimal("5")),)),
                         seed=seed, **kw)  # type: ignore[arg-type]
    venue = SimulatedVenue(cfg, clock)
    events: list[OrderEvent] = []
    venue.set_event_handler(events.append)
    return venue, clock, events


def snap(venue: SimulatedVenue, clock: SimClock, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
    venue.on_market_event(BookDeltas(V, S, bids, asks, clock.now_ns(), clock.now_ns(), is_snapshot=True))


def delta(venue: SimulatedVenue, clock: SimClock, bids: list[tuple[int, int]],
          asks: list[tuple[int, int]]) -> None:
    venue.on_market_event(BookDeltas(V, S, bids, asks, clock.now_ns(), clock.now_ns()))
    clock.advance_to(clock.now_ns())  # deliver the events it caused (zero ack latency)


def trade(venue: SimulatedVenue, clock: SimClock, px: int, lots: int, aggressor: Side) -> None:
    venue.on_market_event(TradeTick(V, S, px, lots, aggressor, TradeId("x"), clock.now_ns(), clock.now_ns()))
    clock.advance_to(clock.now_ns())


_n = [0]


def order(side: Side, lots: int, px: int | None, tif: TimeInForce = TimeInForce.GTC,
          expire_ts: int | None = None) -> Order:
    _n[0] += 1
    return Order(ClientOrderId(f"o{_n[0]}"), V, S, side, OrderType.LIMIT if px is not None else OrderType.MARKET,
                 lots, px, tif, expire_ts=expire_ts)


def send(venue: SimulatedVenue, clock: SimClock, o: Order) -> None:
    run_now(venue.submit(o))
    clock.advance_to(clock.now_ns())


def kinds(events: list[OrderEvent], o: Order) -> list[OrderEventKind]:
    return [e.kind for e in events if e.client_order_id == o.client_order_id]


def fills(events: list[OrderEvent], o: Order) -> list[tuple[int, int, Liquidity]]:
    return [(e.fill.price_ticks, e.fill.lots, e.fill.liquidity) for e in events
            if e.client_order_id == o.client_order_id and e.fill is not None]


BOOK_B = [(1000, 5), (999, 10)]
BOOK_A = [(1001, 4), (1002, 6), (1003, 100)]


def test_taking_walks_levels_and_consumed_liquidity_is_not_reused() -> None:
    v, c, ev = make()
    snap(v, c, BOOK_B, BOOK_A)
    a, b = order(Side.BUY, 7, 1002), order(Side.BUY, 5, 1002, TimeInForce.IOC)
    send(v, c, a)
    send(v, c, b)
    assert fills(ev, a) == [(1001, 4, Liquidity.TAKER), (1002, 3, Liquidity.TAKER)]
    # b sees only what a left: 3 lots at 1002, the rest expires
    assert fills(ev, b) == [(1002, 3, Liquidity.TAKER)]
    assert kinds(ev, b)[-1] is OrderEventKind.EXPIRED
    assert v.consumed_lots(S, Side.SELL, 1002) == 6
    # the feed updates 1002 (someone else's change): consumed resets, 1001 stays consumed
    delta(v, c, [], [(1002, 2)])
    assert v.consumed_lots(S, Side.SELL, 1002) == 0 and v.consumed_lots(S, Side.SELL, 1001) == 4
    d = order(Side.BUY, 10, 1002, TimeInForce.IOC)
    send(v, c, d)
    assert fills(ev, d) == [(1002, 2, Liquidity.TAKER)]


def test_snapshot_resets_consumed() -> None:
    v, c, _ev = make()
    snap(v, c, BOOK_B, BOOK_A)
    send(v, c, order(Side.BUY, 4, None, TimeInForce.IOC))
    assert v.consumed_lots(S, Side.SELL, 1001) == 4
    snap(v, c, BOOK_B, BOOK_A)
    assert v.consumed_lots(S, Side.SELL, 1001) == 0


def test_resting_order_fills_only_after_queue_ahead_trades() -> None:
    v, c, ev = make()
    snap(v, c, BOOK_B, BOOK_A)
    o = order(Side.BUY, 3, 1000)
    send(v, c, o)
    assert v.queue_ahead(o.client_order_id) == 5
    trade(v, c, 1000, 4, Side.SELL)
    assert fills(ev, o) == [] and v.queue_ahead(o.client_order_id) == 1
    trade(v, c, 1000, 3, Side.SELL)  # 1 ahead, 2 for us
    assert fills(ev, o) == [(1000, 2, Liquidity.MAKER)]
    # the depth update reflecting those 7 traded lots must not move the queue again
    delta(v, c, [(1000, 1)], [])
    assert v.queue_ahead(o.client_order_id) == 0
    trade(v, c, 1000, 5, Side.SELL)
    assert fills(ev, o)[-1] == (1000, 1, Liquidity.MAKER)
    assert kinds(ev, o)[-1] is OrderEventKind.FILLED
    # buy-aggressor trades never touch resting bids
    o2 = order(Side.BUY, 1, 999)
    send(v, c, o2)
    trade(v, c, 999, 50, Side.BUY)
    assert fills(ev, o2) == []


def test_trade_through_and_book_through_fill_at_our_price() -> None:
    v, c, ev = make()
    snap(v, c, BOOK_B, BOOK_A)
    o = order(Side.BUY, 3, 999)
    send(v, c, o)
    trade(v, c, 998, 1, Side.SELL)  # printed below our bid: we were hit
    assert fills(ev, o) == [(999, 3, Liquidity.MAKER)]
    s = order(Side.SELL, 2, 1002)
    send(v, c, s)
    # the bid side moves to 1002: a buyer at 1002 would have met our ask
    delta(v, c, [(1002, 1)], [(1001, 0)])
    assert fills(ev, s) == [(1002, 1, Liquidity.MAKER)]
    assert v.consumed_lots(S, Side.BUY, 1002) == 1


def test_queue_model_power_expectation_and_stochastic_determinism() -> None:
    qm = QueueModel("power", 2.0)
    rng = random.Random(0)
    # front 10, back 0: every cancel must be ahead of us
    assert qm.front_after_cancel(10, 10, 6, 4, rng) == 6
    # front 0: nothing ahead to cancel
    assert qm.front_after_cancel(0, 10, 6, 4, rng) == 0
    # equal front/back: half the cancel ahead, hftbacktest's formula
    assert qm.front_after_cancel(5, 10, 6, 4, rng) == 3
    assert QueueModel("risk_averse").front_after_cancel(5, 10, 6, 4, rng) == 5
    assert QueueModel("log").front_after_cancel(5, 10, 6, 4, rng) == 3
    st = QueueModel("power", 2.0, stochastic=True)
    a = [st.front_after_cancel(5, 10, 6, 4, random.Random(s)) for s in range(20)]
    b = [st.front_after_cancel(5, 10, 6, 4, random.Random(s)) for s in range(20)]
    assert a == b and set(a) == {1, 5}


def test_level_shrink_moves_queue_by_model() -> None:
    v, c, _ev = make(queue_model=QueueModel("power", 2.0))
    snap(v, c, [(1000, 10)], BOOK_A)
    o = order(Side.BUY, 1, 1000)
    send(v, c, o)
    delta(v, c, [(1000, 14)], [])        # growth joins behind us
    assert v.queue_ahead(o.client_order_id) == 10
    delta(v, c, [(1000, 10)], [])        # 4 cancelled, front=10, back=4 -> mostly behind
    q = v.queue_ahead(o.client_order_id)
    assert 6 <= q < 10
    delta(v, c, [(1000, 0)], [])         # level gone: nobody ahead
    assert v.queue_ahead(o.client_order_id) == 0


def test_post_only_fok_ioc_gtd() -> None:
    v, c, ev = make()
    snap(v, c, BOOK_B, BOOK_A)
    po = order(Side.BUY, 1, 1001, TimeInForce.POST_ONLY)
    send(v, c, po)
    rej = [e for e in ev if e.client_order_id == po.client_order_id]
    assert [e.kind for e in rej] == [OrderEventKind.REJECTED]
    assert rej[0].reason == "Order would immediately match and take." and rej[0].code == "-2010"
    po2 = order(Side.BUY, 1, 1000, TimeInForce.POST_ONLY)
    send(v, c, po2)
    assert kinds(ev, po2) == [OrderEventKind.ACCEPTED]
    fok = order(Side.BUY, 11, 1002, TimeInForce.FOK)   # 4 + 6 = 10 < 11 visible
    send(v, c, fok)
    assert kinds(ev, fok) == [OrderEventKind.ACCEPTED, OrderEventKind.EXPIRED] and not fills(ev, fok)
    fok2 = order(Side.BUY, 10, 1002, TimeInForce.FOK)
    send(v, c, fok2)
    assert sum(f[1] for f in fills(ev, fok2)) == 10 and kinds(ev, fok2)[-1] is OrderEventKind.FILLED
    gtd = order(Side.SELL, 1, 1010, TimeInForce.GTD, expire_ts=T0 + 5 * NS_PER_SECOND)
    send(v, c, gtd)
    c.advance_to(T0 + 4 * NS_PER_SECOND)
    assert kinds(ev, gtd) == [OrderEventKind.ACCEPTED]
    c.advance_to(T0 + 5 * NS_PER_SECOND)
    assert kinds(ev, gtd) == [OrderEventKind.ACCEPTED, OrderEventKind.EXPIRED]
    assert run_now(v.order_status(gtd.client_order_id)).status is OrderStatus.EXPIRED
    past = order(Side.SELL, 1, 1010, TimeInForce.GTD, expire_ts=T0)
    send(v, c, past)
    assert kinds(ev, past) == [OrderEventKind.REJECTED]


def test_fees_balances_and_locks() -> None:
    v, c, ev = make(balances={"USDT": Decimal("300"), "BTC": Decimal("0")})
    snap(v, c, BOOK_B, BOOK_A)
    big = order(Side.BUY, 3000, 1000)   # 3 BTC at 100.0 = 300 USDT + fee buffer > 300
    send(v, c, big)
    rej = [e for e in ev if e.client_order_id == big.client_order_id]
    assert rej[-1].kind is OrderEventKind.REJECTED and rej[-1].code == "-2010"
    assert rej[-1].reason == "Account has insufficient balance for requested action."
    sell = order(Side.SELL, 1, 1001)
    send(v, c, sell)
    assert kinds(ev, sell) == [OrderEventKind.REJECTED]          # no BTC to sell
    b = order(Side.BUY, 1000, 1000)      # 1 BTC at 100.0 locks 100 * (1 + 5bps)
    send(v, c, b)
    bal = run_now(v.balances())
    assert bal["USDT"].locked == Decimal("100.0") * Decimal("1.0005")
    trade(v, c, 999, 1, Side.SELL)       # through our price: filled as maker with a rebate
    bal = run_now(v.balances())
    f = next(e.fill for e in ev if e.client_order_id == b.client_order_id and e.fill)
    assert f.fee == Decimal("-0.01") and f.liquidity is Liquidity.MAKER
    assert bal["USDT"].locked == 0 and bal["USDT"].free == Decimal("300") - Decimal("100.0") + Decimal("0.01")
    assert bal["BTC"].free == Decimal("1.000")
    pos = run_now(v.positions())
    assert pos[0].quantity == Decimal("1.000") and pos[0].average_price == Decimal("100.0")


def test_filter_failures() -> None:
    v, c, ev = make()
    snap(v, c, BOOK_B, BOOK_A)
    cases = [(order(Side.BUY, 0, 1000), "Filter failure: LOT_SIZE"),
             (order(Side.BUY, 1, 0), "Filter failure: PRICE_FILTER"),
             (order(Side.BUY, 1, 10), "Filter failure: MIN_NOTIONAL")]
    for o, text in cases:
        send(v, c, o)
        e = [x for x in ev if x.client_order_id == o.client_order_id]
        assert [x.kind for x in e] == [OrderEventKind.REJECTED] and e[0].reason == text and e[0].code == "-1013"


def test_venue_rate_limit() -> None:
    v, c, ev = make(rate_limit_orders=3, rate_limit_window_ns=NS_PER_SECOND)
    snap(v, c, BOOK_B, BOOK_A)
    os_ = [order(Side.BUY, 1, 990) for _ in range(4)]
    for o in os_:
        send(v, c, o)
    last = [e for e in ev if e.client_order_id == os_[3].client_order_id]
    assert last[0].kind is OrderEventKind.REJECTED and last[0].code == "-1015"
    assert last[0].reason == "Too many new orders; current limit is 3 orders per 1 SECOND."
    c.advance_to(T0 + NS_PER_SECOND)
    o5 = order(Side.BUY, 1, 990)
    send(v, c, o5)
    assert kinds(ev, o5) == [OrderEventKind.ACCEPTED]


def test_replace_native_priority_rules() -> None:
    v, c, ev = make(native_modify=True)
    snap(v, c, BOOK_B, BOOK_A)
    o = order(Side.BUY, 5, 1000)
    send(v, c, o)
    trade(v, c, 1000, 3, Side.SELL)
    assert v.queue_ahead(o.client_order_id) == 2
    run_now(v.replace(o.client_order_id, lots=4))            # smaller, same price: keeps its place
    c.advance_to(c.now_ns())
    assert kinds(ev, o)[-1] is OrderEventKind.REPLACED and v.queue_ahead(o.client_order_id) == 2
    run_now(v.replace(o.client_order_id, lots=6))            # larger: back of the queue
    c.advance_to(c.now_ns())
    assert v.queue_ahead(o.client_order_id) == 5
    run_now(v.replace(o.client_order_id, price_ticks=1002))  # crosses: takes 4 at 1001, 2 at 1002
    c.advance_to(c.now_ns())
    assert fills(ev, o) == [(1001, 4, Liquidity.TAKER), (1002, 2, Liquidity.TAKER)]
    run_now(v.replace(ClientOrderId("nope"), lots=1))
    c.advance_to(c.now_ns())
    assert [e.kind for e in ev if e.client_order_id == "nope"] == [OrderEventKind.CANCEL_REJECTED]


def test_replace_without_native_modify_is_cancel_then_new() -> None:
    v, c, ev = make(native_modify=False, ack_latency=LatencyModel.constant(NS_PER_MS),
                    order_entry_latency=LatencyModel.constant(NS_PER_MS))
    assert not v.info.capabilities.native_modify
    snap(v, c, BOOK_B, BOOK_A)
    o = order(Side.BUY, 5, 1000)
    run_now(v.submit(o))
    c.advance_to(T0 + 10 * NS_PER_MS)
    run_now(v.replace(o.client_order_id, lots=3, price_ticks=999))
    c.advance_to(T0 + 20 * NS_PER_MS)
    assert kinds(ev, o) == [OrderEventKind.ACCEPTED, OrderEventKind.CANCELED]
    new = [e for e in ev if e.client_order_id.startswith(f"{o.client_order_id}~r")]
    assert [e.kind for e in new] == [OrderEventKind.ACCEPTED]
    rep = run_now(v.order_status(new[0].client_order_id))
    assert rep.lots == 3 and rep.price_ticks == 999


def test_latencies_time_requests_and_events() -> None:
    v, c, ev = make(order_entry_latency=LatencyModel.constant(2 * NS_PER_MS),
                    ack_latency=LatencyModel.constant(3 * NS_PER_MS))
    snap(v, c, BOOK_B, BOOK_A)
    o = order(Side.BUY, 1, 990)
    run_now(v.submit(o))
    c.advance_to(T0 + 2 * NS_PER_MS - 1)
    with pytest.raises(UnknownOrderError):
        run_now(v.order_status(o.client_order_id))      # not at the engine yet
    c.advance_to(T0 + 2 * NS_PER_MS)
    assert run_now(v.order_status(o.client_order_id)).status is OrderStatus.NEW
    assert ev == []                                      # ack still travelling
    c.advance_to(T0 + 5 * NS_PER_MS)
    assert [(e.kind, e.ts_event, e.ts_init) for e in ev] == [
        (OrderEventKind.ACCEPTED, T0 + 2 * NS_PER_MS, T0 + 5 * NS_PER_MS)]


def test_latency_models() -> None:
    rng = random.Random(3)
    ln = LatencyModel.lognormal(1_000_000, 0.5)
    xs = sorted(ln.sample(rng) for _ in range(2001))
    assert 900_000 < xs[1000] < 1_100_000 and xs[-1] > 2_000_000
    emp = LatencyModel.empirical([5, 7, 9])
    assert {emp.sample(rng) for _ in range(100)} == {5, 7, 9}
    assert LatencyModel.constant(4).sample(rng) == 4
    with pytest.raises(ConfigError):
        LatencyModel.empirical([])


def test_driver_orders_time_and_applies_market_data_latency() -> None:
    clock = SimClock(T0)
    v, _, _ev = make(market_data_latency=LatencyModel.constant(10 * NS_PER_MS))
    v.clock = clock
    seen: list[tuple[int, str]] = []
    events = [
        BookDeltas(V, S, BOOK_B, BOOK_A, T0 + NS_PER_MS, 0, is_snapshot=True),
        TradeTick(V, S, 1001, 1, Side.BUY, TradeId("t1"), T0 + 2 * NS_PER_MS, 0),
        QuoteTick(V, S, 1000, 5, 1001, 3, T0 + 3 * NS_PER_MS, 0),
        TradeTick(VenueId("other"), S, 5, 1, Side.BUY, TradeId("t2"), T0 + 4 * NS_PER_MS, 0),
    ]
    drv = SimulationDriver(clock, events)
    drv.add_venue(v)
    drv.subscribe(lambda e: seen.append((clock.now_ns(), type(e).__name__)))
    stats = drv.run(until_ns=T0 + 50 * NS_PER_MS)
    assert stats.events == 4 and drv.exhausted
    assert seen == [(T0 + 4 * NS_PER_MS, "TradeTick"), (T0 + 11 * NS_PER_MS, "BookDeltas"),
                    (T0 + 12 * NS_PER_MS, "TradeTick"), (T0 + 13 * NS_PER_MS, "QuoteTick")]
    assert clock.now_ns() == T0 + 50 * NS_PER_MS
    assert v.book(S).best_ask_ticks == 1001
    bad = SimulationDriver(clock, [TradeTick(V, S, 1, 1, Side.BUY, TradeId("z"), T0, 0)])
    with pytest.raises(InvariantError):
        bad.run()


def test_driver_max_events_and_stop() -> None:
    clock = SimClock(T0)
    evs = [TradeTick(V, S, 1000, 1, Side.BUY, TradeId(str(i)), T0 + i, 0) for i in range(10)]
    ticks = iter([0.0, 0.5, 1.0, 1.5, 2.0, 4.0])
    drv = SimulationDriver(clock, evs, wall_timer=lambda: next(ticks))
    got: list[int] = []

    def cb(e: object) -> None:
        got.append(1)
        if len(got) == 5:
            drv.stop()
    drv.subscribe(cb, delayed=False)
    first = drv.run(max_events=3)
    assert first.events == 3 and first.events_per_second == 6.0
    st = drv.run()
    assert st.stopped and st.events == 2
    assert drv.run().events == 5 and drv.events_total == 10


def test_unknown_order_and_ignored_events() -> None:
    v, c, ev = make()
    with pytest.raises(UnknownOrderError):
        run_now(v.order_status(ClientOrderId("zzz")))
    v.on_market_event(TradeTick(VenueId("elsewhere"), S, 1, 1, Side.BUY, TradeId("q"), T0, T0))
    assert v.statistics()["ignored_events"] == 1
    dup = order(Side.BUY, 1, 990)
    snap(v, c, BOOK_B, BOOK_A)
    send(v, c, dup)
    send(v, c, dup)
    assert kinds(ev, dup) == [OrderEventKind.ACCEPTED, OrderEventKind.REJECTED]
    assert run_now(v.order_status(dup.client_order_id)).status is OrderStatus.NEW


def test_unsupported_order_types_rejected() -> None:
    v, c, ev = make()
    snap(v, c, BOOK_B, BOOK_A)
    stop = Order(ClientOrderId("stop1"), V, S, Side.BUY, OrderType.STOP, 1, None, stop_ticks=1100)
    ice = Order(ClientOrderId("ice1"), V, S, Side.BUY, OrderType.LIMIT, 10, 990, display_lots=2)
    bad_sym = Order(ClientOrderId("sym1"), V, Symbol("ETH-USDT"), Side.BUY, OrderType.LIMIT, 10, 990)
    for o in (stop, ice, bad_sym):
        send(v, c, o)
        assert kinds(ev, o) == [OrderEventKind.REJECTED]
    assert [e.code for e in ev] == ["-1116", "-1116", "-1121"]


PERP = Instrument(venue=V, symbol=S, venue_symbol="BTCUSDT", base="BTC", quote="USDT",
                  tick_size=Decimal("0.1"), lot_size=Decimal("0.001"), kind=InstrumentKind.PERPETUAL)
DEEP_B, DEEP_A = [(1000, 50_000)], [(1001, 50_000)]


def make_perp(usdt: str, leverage: str = "2", **kw: object) -> tuple[SimulatedVenue, SimClock, list[OrderEvent]]:
    clock = SimClock(T0)
    cfg = SimVenueConfig(venue=V, instruments=[PERP], balances={"USDT": Decimal(usdt)}, leverage=Decimal(leverage),
                         fees=FeeSchedule((FeeTier(maker_bps=Decimal("2"), taker_bps=Decimal("5")),)),
                         **kw)  # type: ignore[arg-type]
    venue = SimulatedVenue(cfg, clock)
    events: list[OrderEvent] = []
    venue.set_event_handler(events.append)
    snap(venue, clock, DEEP_B, DEEP_A)
    return venue, clock, events


def usdt(v: SimulatedVenue) -> tuple[Decimal, Decimal]:
    b = run_now(v.balances())["USDT"]
    return b.free, b.locked


def test_perpetual_is_margined_in_the_quote_and_a_short_needs_no_base() -> None:
    v, c, ev = make_perp("1000")
    short = order(Side.SELL, 10_000, 1000, TimeInForce.IOC)   # 10 BTC at 100.0: 1000 notional, 500 margin
    send(v, c, short)
    assert fills(ev, short) == [(1000, 10_000, Liquidity.TAKER)]
    assert usdt(v) == (Decimal("1000") - 500 - Decimal("0.5"), Decimal(500))   # fee 5 bps of 1000
    assert "BTC" not in run_now(v.balances())
    (pos,) = run_now(v.positions())
    assert pos.quantity == Decimal("-10.000") and pos.average_price == Decimal("100.0")
    more = order(Side.SELL, 10_000, 1000, TimeInForce.IOC)     # 500.25 margin > 499.5 free
    send(v, c, more)
    assert kinds(ev, more) == [OrderEventKind.REJECTED]
    # closing at 100.1 realises -1.0 and frees the position margin; the fee comes from USDT
    close = order(Side.BUY, 10_000, 1001, TimeInForce.IOC)
    send(v, c, close)
    assert fills(ev, close) == [(1001, 10_000, Liquidity.TAKER)]
    free = Decimal("1000") - Decimal("0.5") - 1 - Decimal("0.5005")
    assert usdt(v) == (free, Decimal(0))
    assert run_now(v.positions())[0].quantity == 0
    mkt_sell = order(Side.SELL, 1_000, None)   # a market short: margin from walking the bids
    send(v, c, mkt_sell)
    assert fills(ev, mkt_sell) == [(1000, 1_000, Liquidity.TAKER)]
    assert usdt(v) == (free - 50 - Decimal("0.05"), Decimal(50))


def test_reducing_lots_need_no_margin_and_a_flip_margins_only_the_new_side() -> None:
    v, c, ev = make_perp("500.5")
    send(v, c, order(Side.SELL, 10_000, 1000, TimeInForce.IOC))   # 500.25 locked then 500 margin + 0.5 fee
    assert usdt(v) == (Decimal(0), Decimal(500))
    half = order(Side.BUY, 5_000, 1001, TimeInForce.IOC)          # reduces: accepted with nothing free
    send(v, c, half)
    assert fills(ev, half) == [(1001, 5_000, Liquidity.TAKER)]
    free = Decimal(250) - Decimal("0.5") - Decimal("0.25025")     # half the margin, PnL -0.5, fee
    assert usdt(v) == (free, Decimal(250))
    too_big = order(Side.BUY, 15_000, 1001, TimeInForce.IOC)      # 5 close + 10 open: 500.75 > free
    send(v, c, too_big)
    assert kinds(ev, too_big) == [OrderEventKind.REJECTED]
    flip = order(Side.BUY, 7_000, 1001, TimeInForce.IOC)          # 5 close + 2 open: 100.15 margin
    send(v, c, flip)
    assert fills(ev, flip) == [(1001, 7_000, Liquidity.TAKER)]
    free += 250 - Decimal("0.5") - Decimal("100.1") - Decimal("0.35035")
    assert usdt(v) == (free, Decimal("100.1"))
    (pos,) = run_now(v.positions())
    assert pos.quantity == Decimal("2.000") and pos.average_price == Decimal("100.1")


def test_reducing_lots_of_open_orders_are_not_counted_twice() -> None:
    v, c, ev = make_perp("1000")
    send(v, c, order(Side.SELL, 10_000, 1000, TimeInForce.IOC))   # short 10, free 499.5
    first = order(Side.BUY, 10_000, 990)                           # rests, reduces the short: no margin
    send(v, c, first)
    assert kinds(ev, first) == [OrderEventKind.ACCEPTED] and usdt(v) == (Decimal("499.5"), Decimal(500))
    second = order(Side.BUY, 10_000, 990)                          # the short is already covered: opens
    send(v, c, second)
    assert kinds(ev, second) == [OrderEventKind.ACCEPTED]
    need = Decimal("99.0") * 10 / 2 * Decimal("1.0005")
    assert usdt(v) == (Decimal("499.5") - need, Decimal(500) + need)
    run_now(v.cancel(second.client_order_id))
    c.advance_to(c.now_ns())
    assert usdt(v) == (Decimal("499.5"), Decimal(500))
    with pytest.raises(ConfigError, match="leverage"):
        SimVenueConfig(venue=V, instruments=[PERP], leverage=Decimal("0.5"))


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 4_000),
                                st.integers(-3, 3), st.booleans()), min_size=1, max_size=14),
       leverage=st.sampled_from(["1", "3", "20"]), start=st.sampled_from(["1000000", "150"]))
def test_perpetual_ledger_invariants(steps: list[tuple[Side, int, int, bool]], leverage: str, start: str) -> None:
    """Random orders on a perpetual (IOC or resting, around the touch, public trades through the
    resting ones): the locked quote is always the open orders' locks plus the position margin,
    the position is the sum of signed fills, and once flat with nothing open nothing is locked and
    the account is the start plus sells minus buys minus fees (the realised PnL of the round trips).
    ``start`` 150 USDT: most orders are refused for margin, and the free balance never goes below
    zero (a marketable sell locks at the best bid it may fill at, not at its lower limit)."""
    v, c, ev = make_perp(start, leverage)
    for side, lots, off, ioc in steps:
        px = (1001 if side is Side.BUY else 1000) + off
        send(v, c, order(side, lots, px, TimeInForce.IOC if ioc else TimeInForce.GTC))
        if not ioc:   # a public trade through the level fills what rests there
            trade(v, c, px - 1 if side is Side.BUY else px + 1, 100_000, Side.SELL if side is Side.BUY else Side.BUY)
        free, locked = usdt(v)
        open_locks = sum((so.locked for so in v._orders.values() if not so.status.is_terminal), Decimal(0))
        assert locked == open_locks + v._pos_margin.get(S, Decimal(0))
        fl = [e.fill for e in ev if e.fill is not None]
        assert v.position_lots(S) == sum(f.lots if f.side is Side.BUY else -f.lots for f in fl)
        assert free >= 0 and locked >= 0
    for so in list(v._orders.values()):   # flatten: cancel what rests, close the position
        if not so.status.is_terminal:
            run_now(v.cancel(so.order.client_order_id))
    c.advance_to(c.now_ns())
    pos = v.position_lots(S)
    if pos:   # reducing only: accepted with any free balance
        snap(v, c, DEEP_B, DEEP_A)
        send(v, c, order(Side.SELL if pos > 0 else Side.BUY, abs(pos), None))
    assert v.position_lots(S) == 0
    fl = [e.fill for e in ev if e.fill is not None]
    cash = sum((PERP.notional(f.price_ticks, f.lots) * (1 if f.side is Side.SELL else -1) - f.fee for f in fl),
               Decimal(0))
    free, locked = usdt(v)
    assert locked == 0
    # exact but for the 1e-8 rounding of each realised PnL (average entry prices are not exact)
    assert abs(free - (Decimal(start) + cash)) <= Decimal("1e-8") * len(fl), (free, cash)


def test_a_marketable_perpetual_sell_is_margined_at_the_bid_it_fills_at() -> None:
    """A sell limit below the bid fills at the bid: its margin is locked at that price, so an order
    the account can margin only at its (lower) limit is refused instead of overdrawing."""
    v, c, ev = make_perp("150", "1")
    low = order(Side.SELL, 1_503, 997, TimeInForce.IOC)   # 1.503 BTC: 149.8 at 99.7, 150.4 at 100.0
    send(v, c, low)
    assert kinds(ev, low) == [OrderEventKind.REJECTED]
    ok = order(Side.SELL, 1_490, 997, TimeInForce.IOC)    # 149.07 at the bid, with the fee buffer
    send(v, c, ok)
    assert fills(ev, ok) == [(1000, 1_490, Liquidity.TAKER)]
    free, locked = usdt(v)
    assert locked == Decimal("149.000") and free == Decimal(150) - Decimal("149.000") - Decimal("0.0745")


def test_perpetual_orders_in_transit_count_their_margin() -> None:
    """Sent, not yet at the matching engine: a perpetual order counts the margin it may lock (a
    marketable sell at the bid), so the engine's capacity check does not spend it twice."""
    v, c, _ev = make_perp("1000", "4", order_entry_latency=LatencyModel.constant(5 * NS_PER_MS))
    run_now(v.submit(order(Side.SELL, 2_000, 997, TimeInForce.IOC)))   # 2 BTC, limit 99.7, bid 100.0
    run_now(v.submit(order(Side.BUY, 1_000, 990)))                      # 1 BTC at 99.0
    assert v.in_transit("USDT") == (Decimal(200) + Decimal(99)) / 4 * Decimal("1.0005")
    c.advance_to(c.now_ns() + 10 * NS_PER_MS)
    assert v.in_transit("USDT") == 0
