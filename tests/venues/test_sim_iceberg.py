"""Native iceberg orders on the simulated venue (``SimVenueConfig.native_iceberg``, Binance spot's
``icebergQty``; docs/venues-sim.md "Native icebergs"): validation texts and codes, the visible
slice and its re-queue at the back of the level, fills through our price, money, cancel, replace
and determinism. Every hand-made scenario runs with the lazy book (depth coalesced, the
``_on_deltas_lazy`` / ``_follow_levels`` path) and with the book handed out (every message applied,
the ``_on_deltas`` path): both must agree."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from sim_usdm_reader import SYMBOL, load_usdm_events, usdm_path
from test_sim_venue import (
    INST,
    ClientOrderId,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    QueueModel,
    S,
    Side,
    SimClock,
    SimulatedVenue,
    TimeInForce,
    V,
    delta,
    fills,
    kinds,
    make,
    order,
    send,
    snap,
    trade,
)
from test_sim_venue_realdata import mkorder, setup

from marketdata.clock import NS_PER_MS, NS_PER_SECOND
from marketdata.errors import ConfigError
from marketdata.model import MarketEvent
from venues.base import run_now
from venues.latency import LatencyModel
from venues.sim import SimVenueConfig

BIDS = [(1000, 10), (999, 10)]
ASKS = [(1001, 4), (1002, 6), (1003, 100)]
MODES = ["lazy", "eager"]

_n = [0]


def ice(side: Side, lots: int, px: int | None, display: int | None,
        tif: TimeInForce = TimeInForce.GTC, expire_ts: int | None = None) -> Order:
    _n[0] += 1
    return Order(ClientOrderId(f"ice{_n[0]}"), V, S, side, OrderType.LIMIT if px is not None else OrderType.MARKET,
                 lots, px, tif, expire_ts=expire_ts, display_lots=display)


def venue(mode: str = "lazy", *orders: Order, **kw: object) -> tuple[SimulatedVenue, SimClock, list[OrderEvent]]:
    """A venue with native icebergs on a snapshot of BIDS / ASKS, ``orders`` sent in turn. ``mode``:
    "lazy" (book never read) or "eager" (book handed out)."""
    kw.setdefault("native_iceberg", True)
    v, c, ev = make(**kw)
    snap(v, c, BIDS, ASKS)
    if mode == "eager":
        v.book(S)
    for o in orders:
        send(v, c, o)
    return v, c, ev


def rejects(ev: list[OrderEvent], o: Order) -> list[tuple[OrderEventKind, str | None, str | None]]:
    return [(e.kind, e.reason, e.code) for e in ev if e.client_order_id == o.client_order_id]


def status(v: SimulatedVenue, o: Order) -> tuple[OrderStatus, int, int]:
    r = run_now(v.order_status(o.client_order_id))
    return r.status, r.lots, r.filled_lots


# ---------------------------------------------------------------- switch and validation
def test_rejected_when_native_iceberg_is_off_and_capability_follows_the_switch() -> None:
    v, c, ev = make()
    assert v.config.native_iceberg is False and v.info.capabilities.native_iceberg is False
    snap(v, c, BIDS, ASKS)
    o = ice(Side.BUY, 6, 1000, 2)
    send(v, c, o)
    assert rejects(ev, o) == [(OrderEventKind.REJECTED, "Iceberg orders are not supported.", "-1116")]
    on, _, _ = make(native_iceberg=True)
    assert on.info.capabilities.native_iceberg is True


@pytest.mark.parametrize("parts", [0, -3])
def test_iceberg_parts_must_be_at_least_one(parts: int) -> None:
    with pytest.raises(ConfigError):
        SimVenueConfig(venue=V, instruments=[INST], iceberg_parts=parts)
    assert SimVenueConfig(venue=V, instruments=[INST]).iceberg_parts == 100


@pytest.mark.parametrize(("o", "reason", "code"), [
    (ice(Side.BUY, 6, 1000, 6), "IcebergQty exceeds QTY.", "-2010"),
    (ice(Side.BUY, 6, 1000, 7), "IcebergQty exceeds QTY.", "-2010"),
    (ice(Side.BUY, 6, 1000, 0), "Filter failure: LOT_SIZE", "-1013"),
    (ice(Side.BUY, 6, 1000, -1), "Filter failure: LOT_SIZE", "-1013"),
    (ice(Side.BUY, 11, 1000, 2), "Filter failure: ICEBERG_PARTS", "-1013"),   # ceil(11/2) = 6 > 5
    (ice(Side.BUY, 6, 1000, 2, TimeInForce.IOC), "Unsupported order combination.", "-1014"),
    (ice(Side.BUY, 6, 1000, 2, TimeInForce.FOK), "Unsupported order combination.", "-1014"),
    (ice(Side.BUY, 6, 1000, 2, TimeInForce.GTD, expire_ts=10**18), "Unsupported order combination.", "-1014"),
    (ice(Side.BUY, 6, None, 2), "Unsupported order combination.", "-1014"),
    (ice(Side.BUY, 6, None, 2, TimeInForce.IOC), "Unsupported order combination.", "-1014"),
    # the existing rules keep their texts and codes
    (ice(Side.BUY, 0, 1000, 2), "Filter failure: LOT_SIZE", "-1013"),
    (ice(Side.BUY, 6, 0, 2), "Filter failure: PRICE_FILTER", "-1013"),
    (ice(Side.BUY, 3, 1001, 1, TimeInForce.POST_ONLY), "Order would immediately match and take.", "-2010"),
    (ice(Side.BUY, 10**9, 1000, 3 * 10**8), "Account has insufficient balance for requested action.", "-2010"),
])
def test_validation_rejects_with_binance_texts_and_codes(o: Order, reason: str, code: str) -> None:
    v, _c, ev = venue("lazy", o, iceberg_parts=5)
    assert rejects(ev, o) == [(OrderEventKind.REJECTED, reason, code)]
    assert run_now(v.balances())["USDT"].locked == 0 and not run_now(v.open_orders())


@pytest.mark.parametrize("o", [ice(Side.BUY, 10, 1000, 2), ice(Side.BUY, 6, 1000, 5),
                               ice(Side.SELL, 9, 1010, 2, TimeInForce.POST_ONLY)])
def test_valid_icebergs_are_accepted(o: Order) -> None:
    v, _c, ev = venue("lazy", o, iceberg_parts=5)
    assert kinds(ev, o) == [OrderEventKind.ACCEPTED]
    assert status(v, o) == (OrderStatus.NEW, o.lots, 0)


# ---------------------------------------------------------------- the visible slice
@pytest.mark.parametrize("mode", MODES)
def test_a_print_fills_only_the_visible_slice_then_the_slice_requeues_behind_the_level(mode: str) -> None:
    o = ice(Side.BUY, 6, 1000, 2)
    v, c, ev = venue(mode, o)
    cid = o.client_order_id
    assert v.queue_ahead(cid) == 10
    trade(v, c, 1000, 15, Side.SELL)       # 10 ahead, 5 beyond: only the slice of 2 fills
    assert fills(ev, o) == [(1000, 2, Liquidity.MAKER)]
    assert v.queue_ahead(cid) == 10        # the new slice queues as a new order would: behind the level
    trade(v, c, 1000, 3, Side.SELL)        # the rest of that print did not fill it, nor does a small one
    assert fills(ev, o) == [(1000, 2, Liquidity.MAKER)] and v.queue_ahead(cid) == 7
    delta(v, c, [(1000, 4)], [])           # the replay's level after the prints: we are at its back
    assert v.queue_ahead(cid) == 4
    trade(v, c, 1000, 3, Side.SELL)        # smaller than the level ahead: no fill
    assert len(fills(ev, o)) == 1 and v.queue_ahead(cid) == 1
    trade(v, c, 1000, 4, Side.SELL)        # larger: 1 ahead, then the second slice
    assert fills(ev, o) == [(1000, 2, Liquidity.MAKER)] * 2
    assert v.queue_ahead(cid) == 4 and status(v, o) == (OrderStatus.PARTIALLY_FILLED, 6, 4)
    delta(v, c, [(1000, 1)], [])
    trade(v, c, 1000, 9, Side.SELL)        # the last slice
    assert fills(ev, o) == [(1000, 2, Liquidity.MAKER)] * 3
    assert kinds(ev, o) == [OrderEventKind.ACCEPTED] + [OrderEventKind.PARTIALLY_FILLED] * 2 + [
        OrderEventKind.FILLED]
    assert status(v, o) == (OrderStatus.FILLED, 6, 6) and not run_now(v.open_orders())


@pytest.mark.parametrize("mode", MODES)
def test_a_plain_order_in_the_same_place_takes_the_whole_excess(mode: str) -> None:
    """The control for the test above: without a display the same print fills 5."""
    o = order(Side.BUY, 6, 1000)
    v, c, ev = venue(mode, o)
    trade(v, c, 1000, 15, Side.SELL)
    assert fills(ev, o) == [(1000, 5, Liquidity.MAKER)]


@pytest.mark.parametrize("mode", MODES)
def test_the_rest_of_the_print_goes_to_our_order_behind_the_slice(mode: str) -> None:
    """FIFO among our orders at the price: the iceberg's slice, then the plain order behind it
    gets what the slice left; the iceberg's next slice is then behind both."""
    a, b = ice(Side.BUY, 6, 1000, 2), order(Side.BUY, 3, 1000)
    v, c, ev = venue(mode, a, b)
    trade(v, c, 1000, 14, Side.SELL)       # 10 ahead of both; 2 to a's slice, 2 of 3 to b
    assert fills(ev, a) == [(1000, 2, Liquidity.MAKER)] and fills(ev, b) == [(1000, 2, Liquidity.MAKER)]
    assert v.queue_ahead(b.client_order_id) == 0 and v.queue_ahead(a.client_order_id) == 10
    trade(v, c, 1000, 5, Side.SELL)        # b's last lot; a is still 5 behind
    assert fills(ev, b)[-1] == (1000, 1, Liquidity.MAKER) and kinds(ev, b)[-1] is OrderEventKind.FILLED
    assert len(fills(ev, a)) == 1 and v.queue_ahead(a.client_order_id) == 5


@pytest.mark.parametrize("mode", MODES)
def test_the_slice_is_capped_by_what_remains(mode: str) -> None:
    o = ice(Side.SELL, 5, 1001, 2)         # slices 2, 2, 1
    v, c, ev = venue(mode, o)
    assert v.queue_ahead(o.client_order_id) == 4
    for _ in range(3):
        trade(v, c, 1001, 20, Side.BUY)
        delta(v, c, [], [(1001, 0)])       # the level is gone: the next print finds us at the front
    assert fills(ev, o) == [(1001, 2, Liquidity.MAKER), (1001, 2, Liquidity.MAKER), (1001, 1, Liquidity.MAKER)]
    assert kinds(ev, o)[-1] is OrderEventKind.FILLED


# ---------------------------------------------------------------- through our price
@pytest.mark.parametrize("mode", MODES)
def test_a_print_through_our_price_fills_the_slice_and_at_most_its_volume_more(mode: str) -> None:
    """A print below our bid: the aggressor met our visible slice, and our refreshed slices at most
    with the volume it printed below us (it traded no more than that in the recorded market; a
    plain order's remainder fills whole, an iceberg's hidden size would be an unbounded gift)."""
    o = ice(Side.BUY, 6, 1000, 2)
    v, c, ev = venue(mode, o)
    trade(v, c, 1000, 12, Side.SELL)
    assert fills(ev, o) == [(1000, 2, Liquidity.MAKER)]
    trade(v, c, 999, 1, Side.SELL)         # the slice (2) + the 1 lot printed below us
    assert fills(ev, o) == [(1000, 2, Liquidity.MAKER), (1000, 3, Liquidity.MAKER)]
    assert status(v, o) == (OrderStatus.PARTIALLY_FILLED, 6, 5)
    trade(v, c, 998, 5, Side.SELL)         # the last lot
    assert fills(ev, o)[-1] == (1000, 1, Liquidity.MAKER)
    assert status(v, o) == (OrderStatus.FILLED, 6, 6)


@pytest.mark.parametrize("mode", MODES)
def test_the_book_moving_through_us_eats_refreshed_slices(mode: str) -> None:
    o = ice(Side.SELL, 6, 1002, 2)
    v, c, ev = venue(mode, o)
    cid = o.client_order_id
    delta(v, c, [(1002, 3)], [(1001, 0), (1002, 0)])   # a bid of 3 at our ask: slice 2 + 1 of the next
    assert fills(ev, o) == [(1002, 3, Liquidity.MAKER)]
    assert v.consumed_lots(S, Side.BUY, 1002) == 3
    assert status(v, o) == (OrderStatus.PARTIALLY_FILLED, 6, 3)
    assert v.queue_ahead(cid) == 0         # the ask level at 1002 is gone
    trade(v, c, 1002, 5, Side.BUY)         # what is left of the refreshed slice: 1
    assert fills(ev, o)[-1] == (1002, 1, Liquidity.MAKER)
    trade(v, c, 1002, 5, Side.BUY)         # then a full slice of 2 (2 remain)
    assert fills(ev, o)[-1] == (1002, 2, Liquidity.MAKER) and kinds(ev, o)[-1] is OrderEventKind.FILLED


# ---------------------------------------------------------------- money, cancel, replace
@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_funds_lock_and_release_exactly_as_a_plain_limit_order(side: Side) -> None:
    px = 1000 if side is Side.BUY else 1001
    p, o = order(side, 600, px), ice(side, 600, px, 200)
    plain_v, plain_c, plain_ev = venue("lazy", p)
    v, c, ev = venue("lazy", o)
    assert run_now(v.balances()) == run_now(plain_v.balances())
    aggressor = side.opposite
    # the same fills for both: a plain order at the front takes 200, then the iceberg's slice does
    for venue_, clock in ((plain_v, plain_c), (v, c)):
        trade(venue_, clock, px, 10 if side is Side.BUY else 4, aggressor)   # the queue ahead trades
        trade(venue_, clock, px, 200, aggressor)
    assert fills(ev, o) == fills(plain_ev, p) == [(px, 200, Liquidity.MAKER)]
    assert run_now(v.balances()) == run_now(plain_v.balances())
    lock = run_now(v.balances())["USDT" if side is Side.BUY else "BTC"].locked
    assert lock == (Decimal("0.4") * Decimal(px) / 10 * Decimal("1.0005") if side is Side.BUY else Decimal("0.4"))
    run_now(v.cancel(o.client_order_id))
    run_now(plain_v.cancel(p.client_order_id))
    c.advance_to(c.now_ns())
    plain_c.advance_to(plain_c.now_ns())
    assert run_now(v.balances()) == run_now(plain_v.balances())
    assert all(b.locked == 0 for b in run_now(v.balances()).values())


@pytest.mark.parametrize("mode", MODES)
def test_cancel_of_a_partly_filled_iceberg(mode: str) -> None:
    o = ice(Side.BUY, 6, 1000, 2)
    v, c, ev = venue(mode, o)
    trade(v, c, 1000, 12, Side.SELL)
    run_now(v.cancel(o.client_order_id))
    c.advance_to(c.now_ns())
    assert kinds(ev, o) == [OrderEventKind.ACCEPTED, OrderEventKind.PARTIALLY_FILLED, OrderEventKind.CANCELED]
    assert status(v, o) == (OrderStatus.CANCELED, 6, 2) and not run_now(v.open_orders())
    bal = run_now(v.balances())
    assert bal["USDT"].locked == 0 and bal["BTC"].free == Decimal("100.002")
    trade(v, c, 1000, 50, Side.SELL)
    trade(v, c, 999, 50, Side.SELL)
    assert len(fills(ev, o)) == 1


@pytest.mark.parametrize("mode", MODES)
def test_native_replace_keeps_the_display(mode: str) -> None:
    o = ice(Side.BUY, 8, 1000, 3)
    v, c, ev = venue(mode, o, native_modify=True, iceberg_parts=10)
    cid = o.client_order_id
    trade(v, c, 1000, 11, Side.SELL)       # slice 1 of 3 fills 1 (10 ahead)
    assert fills(ev, o) == [(1000, 1, Liquidity.MAKER)]
    run_now(v.replace(cid, lots=3))        # 2 remain < what is left of the slice: it shrinks to 2
    c.advance_to(c.now_ns())
    assert kinds(ev, o)[-1] is OrderEventKind.REPLACED and v.queue_ahead(cid) == 0
    run_now(v.replace(cid, lots=28))       # more lots: back of the queue with a fresh slice of 3
    c.advance_to(c.now_ns())
    assert kinds(ev, o)[-1] is OrderEventKind.REPLACED and v.queue_ahead(cid) == 10
    trade(v, c, 1000, 20, Side.SELL)
    assert fills(ev, o)[-1] == (1000, 3, Liquidity.MAKER)
    run_now(v.replace(cid, lots=40))       # ceil(40 / 3) = 14 parts > 10
    c.advance_to(c.now_ns())
    assert rejects(ev, o)[-1] == (OrderEventKind.CANCEL_REJECTED, "Filter failure: ICEBERG_PARTS", "-1013")
    assert status(v, o) == (OrderStatus.PARTIALLY_FILLED, 28, 4)


def test_native_replace_shrinking_below_the_slice() -> None:
    o = ice(Side.BUY, 8, 1000, 3)
    v, c, ev = venue("lazy", o, native_modify=True)
    trade(v, c, 1000, 11, Side.SELL)       # 1 of the slice of 3 filled: 2 left of it
    run_now(v.replace(o.client_order_id, lots=2))   # 1 remains: the slice is 1
    c.advance_to(c.now_ns())
    trade(v, c, 1000, 40, Side.SELL)
    assert fills(ev, o) == [(1000, 1, Liquidity.MAKER)] * 2 and kinds(ev, o)[-1] is OrderEventKind.FILLED


def test_replace_without_native_modify_resends_the_display() -> None:
    o = ice(Side.BUY, 8, 1000, 2)
    v, c, ev = venue("lazy", o, native_modify=False)
    run_now(v.replace(o.client_order_id, lots=6, price_ticks=999))
    c.advance_to(c.now_ns())
    new = [e for e in ev if e.client_order_id.startswith(f"{o.client_order_id}~r")]
    assert [e.kind for e in new] == [OrderEventKind.ACCEPTED]
    rid = new[0].client_order_id
    assert run_now(v.order_status(rid)).lots == 6
    trade(v, c, 999, 30, Side.SELL)        # 10 ahead: the resent order shows 2 at a time
    assert [(e.fill.lots) for e in ev if e.client_order_id == rid and e.fill] == [2]
    # all of what is left would show: resent as a plain order
    run_now(v.replace(rid, lots=3))
    c.advance_to(c.now_ns())
    last = [e for e in ev if e.client_order_id.startswith(f"{rid}~r")]
    assert [e.kind for e in last] == [OrderEventKind.ACCEPTED]


# ---------------------------------------------------------------- real data: slices and determinism
needs_real_data = pytest.mark.skipif(not usdm_path().exists(), reason=f"real data not found at {usdm_path()}")


def iceberg_session(seed: int, display: int | None) -> list[tuple[str, int, int, int]]:
    """On the real USD-M capture, with random latencies and a stochastic queue model: every 20 s
    an iceberg buy of 40 lots showing ``display`` (or a plain order) at the best bid, cancelled
    20 s later. Returns every fill (client id, price, lots, delivery time)."""
    events = load_usdm_events()
    v, _clock, driver, out = setup(events, seed=seed, native_iceberg=True,
                                   queue_model=QueueModel("power", 2.0, stochastic=True),
                                   market_data_latency=LatencyModel.lognormal(2 * NS_PER_MS, 0.5))
    v.config.order_entry_latency = LatencyModel.lognormal(3 * NS_PER_MS, 0.6)
    t0 = events[0].ts_event
    live: list[str] = []
    n = [0]

    def strategy(e: MarketEvent) -> None:
        if e.ts_event < t0 + (n[0] + 1) * 20 * NS_PER_SECOND:
            return
        n[0] += 1
        for cid in live:
            run_now(v.cancel(ClientOrderId(cid)))
        live.clear()
        bid = v.book(SYMBOL).best_bid_ticks
        if bid is not None:
            o = dataclasses.replace(mkorder(f"i{n[0]}", Side.BUY, 40, bid), display_lots=display)
            run_now(v.submit(o))
            live.append(o.client_order_id)

    driver.subscribe(strategy)
    driver.run(until_ns=t0 + 240 * NS_PER_SECOND)
    return [(e.client_order_id, e.fill.price_ticks, e.fill.lots, e.ts_init) for e in out if e.fill]


@needs_real_data
def test_real_data_same_seed_same_fills_and_slices_bound_at_price_fills() -> None:
    a = iceberg_session(7, 3)
    assert a, "the icebergs never filled on the capture"
    assert iceberg_session(7, 3) == a
    plain = iceberg_session(7, None)
    # at-price fills of a slice are at most the display; only a fill through our price (the slice
    # and at most the volume printed beyond it) may be larger
    big = [f for f in a if f[2] > 3]
    assert all(sum(g[2] for g in a if g[0] == f[0]) == 40 for f in big)
    assert a != plain
    assert max(f[2] for f in plain) > 3, "the control should show fills larger than a slice"
