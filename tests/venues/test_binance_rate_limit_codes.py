"""Binance's rate-limit codes -1003 (TOO_MANY_REQUESTS) and -1015 (TOO_MANY_ORDERS) feed the
limiter whatever the HTTP status they come with, as a 429 does: ``Retry-After`` if present, else the
back-off plus the interval of the limit the text names. Against the loopback fake
(tests/venues/binance_fake.py) and on the limiter alone."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from binance_harness import binance_rig

from marketdata.clock import NS_PER_SECOND, LiveClock, SimClock
from marketdata.errors import RateLimited
from marketdata.model import ClientOrderId, Order, OrderType, Side, TimeInForce
from venues.binance.errors import NamedLimit, banned_until_ms, named_limit
from venues.ratelimit import RateLimiter

BOOK = ([("100.0", "1.000"), ("99.9", "2.000")], [("100.1", "1.000"), ("100.2", "2.000")])
ORDERS_TEXT = "Too many new orders; current limit is 50 orders per 10 SECOND."


def _order(inst, cid: str) -> Order:  # type: ignore[no-untyped-def]
    return Order(client_order_id=ClientOrderId(cid), venue=inst.venue, symbol=inst.symbol, side=Side.BUY,
                 order_type=OrderType.LIMIT, lots=inst.qty_to_lots("0.010"), price_ticks=inst.price_to_ticks("99.0"),
                 time_in_force=TimeInForce.GTC)


async def _not_sent_within(rig, coro, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """``coro`` is still waiting on the limiter after ``seconds`` and nothing reached the fake."""
    sent = len(rig.fake.requests)
    task = asyncio.get_running_loop().create_task(coro)
    try:
        await asyncio.sleep(seconds)
        assert not task.done(), "the request went out at once"
        assert len(rig.fake.requests) == sent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("http", [400, 429])
async def test_a_1015_holds_new_orders_for_the_limit_interval_but_not_cancels(http: int) -> None:
    """Failed before: only a 429/418/403 reached ``limiter.on_rate_limited``; a -1015 under HTTP 400
    (and, as Binance's limits page says of an order-count refusal, "without the Retry-After header")
    raised RateLimited but left the limiter open, so the next order went straight out into the
    same refusal. Under 429 without Retry-After it was blocked for the 1 s back-off only, and new
    orders resumed 9 s before the venue's 10 s count could have reset. Now every request waits out
    the back-off, and new orders the named interval (10 s) while cancels are free again after the
    back-off."""
    fake_kw = {"orders_10s_limit": 1, "orders_limit_http": http, "orders_limit_retry_after": False}
    async with binance_rig(user_stream=False, fake_kw=fake_kw) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        lim = rig.venue.limiter
        await rig.venue.submit(_order(rig.instrument, "rl-1"))
        with pytest.raises(RateLimited) as ei:
            await rig.venue.submit(_order(rig.instrument, "rl-2"))
        assert ei.value.code == -1015 and ei.value.retry_after_ns is None
        now = LiveClock().now_ns()
        assert lim.blocked_until_ns > now and lim.strikes == 1
        await _not_sent_within(rig, rig.venue.submit(_order(rig.instrument, "rl-3")), 0.3)
        # after the 1 s back-off: cancels (which do not count toward ORDERS) go, new orders still wait
        later = now + 2 * NS_PER_SECOND
        assert lim.headroom("cancel", later) > 0
        assert lim.headroom("new_order", later) == 0 and lim.headroom("replace", later) == 0
        assert lim.headroom("new_order", now + 11 * NS_PER_SECOND) > 0   # one 10 s interval, not more


async def test_a_400_with_1003_and_retry_after_blocks_every_request_until_then() -> None:
    """Failed before, as above, for -1003 with ``Retry-After`` under a status other than 429: the
    next request was sent at once. Now everything waits ``Retry-After`` (2 s)."""
    async with binance_rig(user_stream=False) as rig:
        lim = rig.venue.limiter
        rig.fake.fail("GET", "/api/v3/account", 400, -1003, "Too many requests queued.", {"Retry-After": "2"})
        with pytest.raises(RateLimited) as ei:
            await rig.venue.balances()
        assert ei.value.retry_after_ns == 2 * NS_PER_SECOND
        left = lim.blocked_until_ns - LiveClock().now_ns()
        assert 1.5 * NS_PER_SECOND < left <= 2 * NS_PER_SECOND
        await _not_sent_within(rig, rig.venue.balances(), 0.3)


async def test_a_cancel_replace_whose_new_order_got_1015_feeds_the_limiter() -> None:
    """Failed before: a cancelReplace answered 409 with the new order's half refused -1015 ("data"
    holds each half) returned the body to the adapter and never told the limiter."""
    async with binance_rig(user_stream=False) as rig:
        lim = rig.venue.limiter
        data = {"cancelResult": "SUCCESS", "newOrderResult": "FAILURE",
                "cancelResponse": {"symbol": "BTCUSDT", "origClientOrderId": "old", "status": "CANCELED"},
                "newOrderResponse": {"code": -1015, "msg": ORDERS_TEXT}}
        rig.fake.fail("POST", "/api/v3/order/cancelReplace", 409, -2021, "Order cancel-replace partially failed.",
                      data=data)
        body = await rig.venue.http.request("POST", "/api/v3/order/cancelReplace", {"symbol": "BTCUSDT"},
                                            request_type="replace", return_error_body=True)
        assert body["__http_status__"] == 409 and body["data"]["newOrderResponse"]["code"] == -1015
        now = LiveClock().now_ns()
        assert lim.blocked_until_ns > now
        assert lim.headroom("new_order", now + 2 * NS_PER_SECOND) == 0
        assert lim.headroom("cancel", now + 2 * NS_PER_SECOND) > 0


def test_the_texts_name_their_limit() -> None:
    """Binance's texts for these codes (errors page): "Too many new orders; current limit is %s
    orders per %s.", "Too much request weight used; current limit is %s request weight per %s.",
    "Way too much request weight used; IP banned until %s."."""
    assert named_limit(ORDERS_TEXT) == NamedLimit(50, True, 10, "SECOND")
    assert named_limit(ORDERS_TEXT).header == "X-MBX-ORDER-COUNT-10S"  # type: ignore[union-attr]
    day = named_limit("Too many new orders; current limit is 160000 orders per 1 DAY.")
    assert day is not None and day.header == "X-MBX-ORDER-COUNT-1D" and day.interval_s == 86_400
    weight = named_limit("Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                         "Please use WebSocket Streams for live updates to avoid polling the API.")
    assert weight == NamedLimit(6000, False, 1, "MINUTE") and weight.header == "X-MBX-USED-WEIGHT-1M"
    assert named_limit("Too many new orders.") is None and named_limit("Too many requests queued.") is None
    assert banned_until_ms("Way too much request weight used; IP banned until 1659146400000.") == 1659146400000
    assert banned_until_ms(ORDERS_TEXT) is None


def test_limit_reached_holds_the_types_of_that_bucket_for_one_window() -> None:
    """``on_limit_reached``: the bucket's users wait one window (conservatively, up to one slot
    more), the others are not held; whatever was counted before does not shorten it."""
    clock = SimClock(1_000 * NS_PER_SECOND)
    lim = RateLimiter(clock, {"W": (100, 60), "O": (5, 10), "D": (10, Decimal(10), "decay")},
                      {"order": {"W": 1, "O": 1}, "cancel": {"W": 1}, "query": {"D": 1}}, cancel_types=("cancel",))
    t0 = clock.now_ns()
    assert lim.try_acquire("order", t0) == 0 and lim.try_acquire("order", t0 + 5 * NS_PER_SECOND) == 0
    lim.on_limit_reached("O", t0 + 5 * NS_PER_SECOND)
    wait = lim.try_acquire("order", t0 + 5 * NS_PER_SECOND)
    assert 10 * NS_PER_SECOND <= wait <= 10 * NS_PER_SECOND + NS_PER_SECOND // 10
    assert lim.try_acquire("cancel", t0 + 5 * NS_PER_SECOND) == 0
    assert lim.try_acquire("order", t0 + 5 * NS_PER_SECOND + wait) == 0
    lim.on_limit_reached("D", t0)
    assert lim.try_acquire("query", t0) > 0 and lim.try_acquire("query", t0 + 10 * NS_PER_SECOND) == 0
    with pytest.raises(Exception, match="unknown bucket"):
        lim.on_limit_reached("NOPE", t0)
