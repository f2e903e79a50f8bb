"""Follow-up review of the Binance spot adapter's fill recovery and error mapping: each test
reproduces one robustness gap against the loopback fake (the scenario and the venue behaviour it
relies on are in its docstring)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

import pytest
from binance_harness import binance_rig

from marketdata.clock import LiveClock
from marketdata.errors import OrderRejected, RateLimited, VenueDisconnected
from marketdata.model import ClientOrderId, Instrument, Order, OrderEvent, OrderEventKind, OrderType, Side, TimeInForce
from venues.base import run_now
from venues.binance.errors import AuthenticationError, ListenKeyNotFound, map_error

BOOK = ([("100.0", "1.000"), ("99.9", "2.000")], [("100.1", "1.000"), ("100.2", "2.000")])
TRADES = "/api/v3/myTrades"


def _order(inst: Instrument, cid: str, side: Side, qty: str, price: str) -> Order:
    return Order(client_order_id=ClientOrderId(cid), venue=inst.venue, symbol=inst.symbol, side=side,
                 order_type=OrderType.LIMIT, lots=inst.qty_to_lots(qty), price_ticks=inst.price_to_ticks(price),
                 time_in_force=TimeInForce.GTC)


def _kinds(events: list[OrderEvent], cid: str) -> list[OrderEventKind]:
    return [e.kind for e in events if e.client_order_id == cid]


def _filled(events: list[OrderEvent], cid: str) -> int:
    return sum(e.fill.lots for e in events if e.client_order_id == cid and e.fill is not None)


async def _wait_for(cond: Callable[[], bool], limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 (polling a condition another task changes)
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------- 1: failed reads
async def test_unknown_order_fills_are_recovered_after_a_rate_limited_trades_read() -> None:
    """The submit's connection drops after Binance filled the order (a BUY crossing the ask) and
    there is no user stream. The resolver's status query says FILLED, so the fills must come from
    ``GET /api/v3/myTrades``; that first read is refused with 429 -1003 and ``Retry-After: 1``
    (Binance: the request was not processed; back off, then try again). The read must be retried
    after the back-off: the uncaught RateLimited killed the resolver task, so the order never
    got its fills nor its FILLED event. (Polling is off: a poll round would query the order
    again and hide the lost resolver.)"""
    async with binance_rig(user_stream=False, poll_interval_s=Decimal(0)) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        rig.fake.fault("POST", "/api/v3/order", "drop_after")
        rig.fake.fail("GET", TRADES, 429, -1003, "Too much request weight used.", {"Retry-After": "1"})
        order = _order(rig.instrument, "rt-1", Side.BUY, "1.500", "100.2")
        with pytest.raises(VenueDisconnected):
            await rig.venue.submit(order)
        await _wait_for(lambda: OrderEventKind.FILLED in _kinds(rig.events, "rt-1"), limit_s=8)
        assert _filled(rig.events, "rt-1") == order.lots
        assert sum(1 for m, p, _q in rig.fake.requests if (m, p) == ("GET", TRADES)) == 2


async def test_reconcile_survives_a_failed_trades_read_and_still_covers_the_other_orders_and_balances() -> None:
    """Two resting orders fill while the user stream is silent (its listen key expired unnoticed:
    Binance sends nothing more on that socket), so their executionReports and balance updates are
    lost; ``reconcile()`` (what runs after each reconnect) queries both and reads their trades. The
    first ``myTrades`` read is refused (429 -1003, ``Retry-After: 1``). The RateLimited escaped
    ``reconcile()``: the second order was never queried and the account never re-read. Expected:
    the failure is logged, the second order and the balance refresh still happen, and the first
    order's fills arrive once the read is retried after the back-off."""
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "rc-1", Side.BUY, "0.500", "100.0"))
        await rig.venue.submit(_order(inst, "rc-2", Side.SELL, "0.500", "100.1"))
        await rig.settle()
        await rig.fake.expire_listen_keys(notify=False)
        await rig.fake.trade("BTCUSDT", "100.0", "2.000", Side.SELL)
        await rig.fake.trade("BTCUSDT", "100.1", "2.000", Side.BUY)
        assert _kinds(rig.events, "rc-1") == _kinds(rig.events, "rc-2") == [OrderEventKind.ACCEPTED]
        rig.fake.fail("GET", TRADES, 429, -1003, "Too much request weight used.", {"Retry-After": "1"})
        reports = await rig.venue.reconcile()
        assert {r.client_order_id for r in reports} == {"rc-1", "rc-2"}
        assert OrderEventKind.FILLED in _kinds(rig.events, "rc-2")
        assert rig.venue.cached_balance("BTC") == run_now(rig.fake.sim.balances())["BTC"]
        await _wait_for(lambda: OrderEventKind.FILLED in _kinds(rig.events, "rc-1"), limit_s=8)
        assert _filled(rig.events, "rc-1") == inst.qty_to_lots("0.500")


# ---------------------------------------------------------------------------------------------- 2: -1021
async def test_trades_read_refused_for_its_timestamp_resyncs_and_resends_at_once() -> None:
    """Binance answers -1021 "Timestamp for this request is outside of the recvWindow." when the
    request's timestamp is too old or ahead of its clock; the request was not executed. Every
    other signed call then resyncs the clock offset (``GET /api/v3/time``) and resends once; the
    ``myTrades`` read went straight to ``http.request`` and did neither."""
    async with binance_rig(user_stream=False, poll_interval_s=Decimal(0)) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        rig.fake.fault("POST", "/api/v3/order", "drop_after")
        rig.fake.fail("GET", TRADES, 400, -1021, "Timestamp for this request is outside of the recvWindow.")
        order = _order(rig.instrument, "ts-1", Side.BUY, "1.500", "100.2")
        with pytest.raises(VenueDisconnected):
            await rig.venue.submit(order)
        await _wait_for(lambda: OrderEventKind.FILLED in _kinds(rig.events, "ts-1"))
        after = [p for _m, p, _q in rig.fake.requests if p in (TRADES, "/api/v3/time")]
        assert after[-3:] == [TRADES, "/api/v3/time", TRADES]


# ---------------------------------------------------------------------------------------------- 3: paging
async def test_an_order_with_more_trades_than_one_page_recovers_every_fill() -> None:
    """A resting BUY of 1.050 is filled by 1,050 public prints of 0.001 while nothing listens (no
    user stream, no polling). ``GET /api/v3/myTrades`` returns at most ``limit`` trades (default
    500, max 1000); reading it once with the default recovered 500 of the 1,050 fills and held the
    FILLED for ever. The adapter must page (``orderId`` + ``fromId``, ``limit=1000``) until the
    order's trades are all read."""
    async with binance_rig(user_stream=False, poll_interval_s=Decimal(0)) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        order = _order(inst, "pg-1", Side.BUY, "1.050", "99.5")
        await rig.venue.submit(order)
        for _ in range(order.lots):
            await rig.fake.trade("BTCUSDT", "99.5", "0.001", Side.SELL)
        assert rig.fake.orders["pg-1"].status == "FILLED" and len(rig.fake.orders["pg-1"].trades) == order.lots
        await rig.venue.reconcile()
        assert _filled(rig.events, "pg-1") == order.lots
        assert _kinds(rig.events, "pg-1")[-1] is OrderEventKind.FILLED
        reads = [q for m, p, q in rig.fake.requests if (m, p) == ("GET", TRADES)]
        assert len(reads) == 2 and all("limit=1000" in q and "fromId=" in q for q in reads)


# ---------------------------------------------------------------------------------------------- 4: error mapping
def test_unknown_listen_key_is_not_an_order_rejection() -> None:
    """-1125 "This listenKey does not exist." (Binance error codes, INVALID_LISTEN_KEY) answers a
    listen-key call (keepalive, close), never an order; it was mapped to OrderRejected by the
    -11xx parameter rule."""
    err = map_error(400, -1125, "This listenKey does not exist.", venue="binance-spot")
    assert isinstance(err, ListenKeyNotFound) and not isinstance(err, OrderRejected)
    assert err.code == -1125


async def test_waf_403_is_not_an_authentication_failure_and_backs_off() -> None:
    """Binance's HTTP return codes: "HTTP 403 return code is used when a WAF (Web Application
    Firewall) rule has been violated. This can indicate a rate limit violation or a security
    block." It is not a bad key (those are 401 -2014/-2015 and 400 -1022), and the request was not
    executed. It was raised as AuthenticationError; it is a refusal to back off from
    (RateLimited, fed to the limiter like a 429)."""
    async with binance_rig(user_stream=False) as rig:
        rig.fake.fail("GET", "/api/v3/account", 403, None, "<html><body>403 Forbidden</body></html>")
        with pytest.raises(RateLimited) as ei:
            await rig.venue.balances()
        assert not isinstance(ei.value, AuthenticationError) and ei.value.code == 403
        assert rig.venue.limiter.blocked_until_ns > LiveClock().now_ns()
