"""A simulated venue applying depth lazily while our orders rest gives exactly what an eager one gives.

The lazy venue (the default: nobody has been handed its book) coalesces depth messages and
applies only the pending levels a walk needs (``_Market.settle``); the reference venue's book was
handed out (``SimulatedVenue.book``) before the run, so it applies every message as it comes.
Both replay the whole real USD-M capture with the same seeded stream of our orders, driven by a
strategy that reads its own (delayed) feed: resting bids and asks at the touch re-placed by cancel
+ new and by replace, orders inside the book that the market later trades or moves through,
post-only orders (some rejected), IOC / FOK / market orders on both sides, and cancels.

Checked: identical order events (fills, prices, fees, trade ids, timings); at every new order or
replace arriving at the engine
identical books (the best 20 levels a side, the pending depth overlaid without flushing), queue
positions of every resting order and consumed lots; at every cancel arriving, identical queue
positions; identical final book (every level).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from sim_usdm_reader import SYMBOL, VENUE, load_usdm_events, usdm_instrument, usdm_path

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
from venues.sim import QueueModel, SimulatedVenue, SimVenueConfig
from venues.sim_driver import SimulationDriver

pytestmark = pytest.mark.skipif(not usdm_path().exists(), reason=f"real data not found at {usdm_path()}")


def _venue(clock: SimClock, queue_model: QueueModel, native_modify: bool) -> SimulatedVenue:
    return SimulatedVenue(SimVenueConfig(
        venue=VENUE, instruments=[usdm_instrument()], rate_limit_orders=None, sequence_rule="prev",
        balances={"USDT": Decimal(100_000_000), "BTC": Decimal(10_000)},
        market_data_latency=LatencyModel.constant(NS_PER_MS),
        order_entry_latency=LatencyModel.empirical([NS_PER_MS, 2 * NS_PER_MS, 3 * NS_PER_MS]),
        ack_latency=LatencyModel.constant(NS_PER_MS), queue_model=queue_model,
        native_modify=native_modify, seed=5), clock)


def _strategy(venue: SimulatedVenue) -> Callable[[MarketEvent], None]:
    """Orders from the feed only (the same stream for both venues as long as they agree)."""
    n = 0
    best: list[int] = [0, 0]          # bid, ask from the last bookTicker
    live: dict[str, str] = {}          # role -> client order id
    deep: list[tuple[int, str]] = []   # (cancel at event n, client order id)

    def send(cid: str, side: Side, otype: OrderType, lots: int, px: int | None, tif: TimeInForce) -> None:
        run_now(venue.submit(Order(ClientOrderId(cid), VENUE, SYMBOL, side, otype, lots, px, tif)))

    def strategy(e: MarketEvent) -> None:
        nonlocal n
        n += 1
        if type(e) is QuoteTick:
            best[0], best[1] = e.bid_ticks, e.ask_ticks
        bid, ask = best
        if not bid:
            return
        if n % 150 == 0:                       # resting bid at the touch: cancel + new
            if "bid" in live:
                run_now(venue.cancel(ClientOrderId(live["bid"])))
            live["bid"] = f"b{n}"
            send(live["bid"], Side.BUY, OrderType.LIMIT, 10, bid, TimeInForce.GTC)
        if n % 170 == 0:                       # resting ask at the touch: replace (or new)
            if "ask" in live:
                run_now(venue.replace(ClientOrderId(live["ask"]), price_ticks=ask, lots=12))
            else:
                live["ask"] = f"a{n}"
                send(live["ask"], Side.SELL, OrderType.LIMIT, 12, ask, TimeInForce.GTC)
        if n % 410 == 0:                       # post-only at the opposite touch (rejected if it takes)
            send(f"p{n}", Side.BUY, OrderType.LIMIT, 5, ask if n % 820 else bid, TimeInForce.POST_ONLY)
        if n % 530 == 0:                       # IOC limit sell through the bid
            send(f"s{n}", Side.SELL, OrderType.LIMIT, 25, bid - 5, TimeInForce.IOC)
        if n % 670 == 0:                       # market buy / sell
            send(f"m{n}", Side.BUY if n % 1340 else Side.SELL, OrderType.MARKET, 15, None, TimeInForce.IOC)
        if n % 910 == 0:                       # marketable bid: takes, then rests above the touch
            send(f"x{n}", Side.BUY, OrderType.LIMIT, 40, ask + 2, TimeInForce.GTC)
        if n % 1130 == 0:                      # FOK sell
            send(f"f{n}", Side.SELL, OrderType.LIMIT, 30, bid - 10, TimeInForce.FOK)
        if n % 1270 == 0:                      # inside the book on both sides, cancelled later
            cid = f"d{n}"
            send(cid, Side.BUY, OrderType.LIMIT, 8, bid - 3, TimeInForce.GTC)
            send(cid + "s", Side.SELL, OrderType.LIMIT, 8, ask + 3, TimeInForce.GTC)
            deep.extend(((n + 3_000, cid), (n + 2_000, cid + "s")))
        for item in [d for d in deep if d[0] <= n]:
            deep.remove(item)
            run_now(venue.cancel(ClientOrderId(item[1])))

    return strategy


def _top(levels: dict[int, int], pend: dict[int, int], index: list[int], sign: int, n: int) -> list[tuple[int, int]]:
    """The best ``n`` levels (price, lots) of one side as applying the pending ones would leave it.
    ``index`` is the side's ascending price index (asks negated), ``sign`` 1 for bids, -1 for asks."""
    from_book = []
    for key in reversed(index):          # the book's best levels no pending message touched
        if len(from_book) == n:
            break
        p = sign * key
        if p not in pend:
            from_book.append((p, levels[p]))
    edge = sign * from_book[-1][0] if len(from_book) == n else None
    if edge is None:
        from_pend = [(p, q) for p, q in pend.items() if q]
    elif sign > 0:
        from_pend = [(p, q) for p, q in pend.items() if p >= edge and q]
    else:
        from_pend = [(p, q) for p, q in pend.items() if p <= -edge and q]
    both = from_book + from_pend
    return heapq.nlargest(n, both) if sign > 0 else heapq.nsmallest(n, both)


def _virtual_state(venue: SimulatedVenue) -> tuple[Any, ...]:
    """The matching state as applying every message would show it (best 20 levels a side,
    consumed lots, every resting order's queue position), read without flushing."""
    mkt = venue._markets[SYMBOL]
    book = mkt.book
    bids = _top(book._bids, mkt.pend_bids, book._bid_px, 1, 20)
    asks = _top(book._asks, mkt.pend_asks, book._ask_neg, -1, 20)
    consumed_bid = sorted((p, q) for p, q in mkt.consumed_bid.items() if p not in mkt.pend_bids)
    consumed_ask = sorted((p, q) for p, q in mkt.consumed_ask.items() if p not in mkt.pend_asks)
    return bids, asks, consumed_bid, consumed_ask, _queues(venue)


def _queues(venue: SimulatedVenue) -> list[tuple[Any, ...]]:
    mkt = venue._markets[SYMBOL]
    return sorted((so.order.client_order_id, so.price_ticks, so.front, so.filled, so.traded_since)
                  for orders in (*mkt.bid_orders.values(), *mkt.ask_orders.values()) for so in orders)


def _run(eager: bool, queue_model: QueueModel, native_modify: bool,
         ) -> tuple[list[OrderEvent], list[tuple[Any, ...]], tuple[Any, ...], SimulatedVenue]:
    events = load_usdm_events()
    clock = SimClock(events[0].ts_event)
    venue = _venue(clock, queue_model, native_modify)
    if eager:
        venue.book(SYMBOL)   # handed out: every depth message applied as it comes
    out: list[OrderEvent] = []
    venue.set_event_handler(out.append)
    states: list[tuple[Any, ...]] = []
    for name in ("_arrive_new", "_arrive_cancel", "_arrive_replace"):
        inner = getattr(venue, name)
        book_read = name != "_arrive_cancel"   # a cancel does not read the book: queues only

        def at_arrival(*args: Any, _inner: Any = inner, _full: bool = book_read, **kw: Any) -> None:
            state = _virtual_state(venue) if _full else _queues(venue)
            states.append((clock.now_ns(), state))
            _inner(*args, **kw)

        setattr(venue, name, at_arrival)
    driver = SimulationDriver(clock, events)
    driver.add_venue(venue)
    driver.subscribe(_strategy(venue))
    driver.run()
    driver.flush(50 * NS_PER_MS)
    book = venue.book(SYMBOL)
    stats = book.statistics()
    final = (book.bids(), book.asks(), book.last_update_id, book.best_bid_ticks, book.best_ask_ticks,
             stats["updates"], stats["gaps"], _virtual_state(venue), sorted(venue._orders))
    return out, states, final, venue


@pytest.mark.parametrize(("queue_model", "native_modify"), [
    (QueueModel(), True),
    (QueueModel("log", stochastic=True), False),
])
def test_lazy_venue_with_orders_matches_eager_venue(queue_model: QueueModel, native_modify: bool) -> None:
    logging.getLogger("marketdata.book").setLevel(logging.ERROR)
    lazy_events, lazy_states, lazy_final, lazy = _run(False, queue_model, native_modify)
    eager_events, eager_states, eager_final, _ = _run(True, queue_model, native_modify)
    assert len(lazy_states) == len(eager_states)
    for i, (a, b) in enumerate(zip(lazy_states, eager_states, strict=True)):
        assert a == b, f"state differs at order arrival {i} (t={a[0]})"
    assert lazy_events == eager_events
    assert lazy_final == eager_final
    # the workload exercises what it claims
    kinds = [e.kind.value for e in lazy_events]
    fills = [e.fill for e in lazy_events if e.fill is not None]
    reasons = {e.reason for e in lazy_events if e.reason}
    assert sum(1 for f in fills if f.liquidity.value == "maker") > 50
    assert sum(1 for f in fills if f.liquidity.value == "taker") > 50
    assert kinds.count("rejected") > 5 and kinds.count("canceled") > 100 and kinds.count("expired") > 20
    assert any("immediately match" in r for r in reasons)
    assert lazy.statistics()["orders"] > 1_000
    # and the lazy venue really was lazy: far fewer levels applied one by one than sent
    n_depth = sum(1 for e in load_usdm_events() if type(e) is BookDeltas)
    assert lazy_final[5] == eager_final[5] and n_depth > 6_000
