"""Review: RateLimiter.headroom must agree with try_acquire also while reservations exist."""

from __future__ import annotations

from marketdata.clock import NS_PER_SECOND, SimClock
from venues.ratelimit import RateLimiter


def _grants(rl: RateLimiter, rt: str, now: int, most: int) -> int:
    n = 0
    while n < most and rl.try_acquire(rt, now) == 0:
        n += 1
    return n


def test_cancel_headroom_now_while_an_order_is_reserved_ahead() -> None:
    """IB, 50 messages/s (42 usable by ordinary requests, 8 kept for cancels). 42 orders go out at
    t0; the next order is reserved (acquire_at) a second later, which moves the limiter's head slot
    into the future. A cancel at t0 may still use the reserve: headroom("cancel", t0) must be the
    8 that try_acquire then grants, not the count of the (nearly empty) future window."""
    clock = SimClock(start_ns=10**18)
    rl = RateLimiter.from_preset("ib", clock)
    t0 = clock.now_ns()
    assert _grants(rl, "new_order", t0, 100) == 42
    at = rl.acquire_at("new_order")
    assert at > t0 + NS_PER_SECOND - NS_PER_SECOND // 50
    h = rl.headroom("cancel", t0)
    assert h == _grants(rl, "cancel", t0, 100) == 8


def test_headroom_while_used_weight_feedback_is_ahead_of_a_reservation() -> None:
    """The venue reports more used than its limit (a shared key), then an order is reserved in the
    future: at ``now`` nothing fits, so headroom must be 0 like try_acquire."""
    clock = SimClock(start_ns=10**18)
    rl = RateLimiter.from_preset("ib", clock)
    now = clock.now_ns()
    rl.on_used_weight("MESSAGES", 60, now)
    rl.acquire_at("query_order")
    assert rl.headroom("cancel", now) == _grants(rl, "cancel", now, 100) == 0
