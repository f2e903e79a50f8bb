"""Rate limiter on a SimClock: pacing, linked weights, cancel reserve, venue feedback, presets."""

from __future__ import annotations

import asyncio
import copy
import random

import pytest

from marketdata.clock import NS_PER_MS, NS_PER_SECOND, LiveClock, SimClock
from marketdata.errors import ConfigError
from venues.base import run_now
from venues.ratelimit import PRESETS, ClockSleeper, RateLimiter, SimSleeper, UnknownRequestType

S = NS_PER_SECOND


def _binance(clock: SimClock, **kw: object) -> RateLimiter:
    return RateLimiter.from_preset("binance-spot", clock, **kw)  # type: ignore[arg-type]


def _max_in_window(times: list[int], weights: list[int], window_ns: int) -> int:
    """Reference: the largest weight in any half-open interval (t - window, t]."""
    best = 0
    for i, t in enumerate(times):
        s = sum(w for u, w in zip(times, weights, strict=True) if t - window_ns < u <= t)
        best = max(best, s)
        del i
    return best


def test_burst_beyond_limit_is_paced_at_the_right_times() -> None:
    clock = SimClock(start_ns=0)
    lim = RateLimiter(clock, {"ORDERS": (10, 1)}, {"new_order": {"ORDERS": 1}, "cancel": {"ORDERS": 1}},
                      cancel_reserve="0.2")
    times = [lim.acquire_at("new_order") for _ in range(24)]
    # 8 usable (2 kept for cancels) per second; a grant is forgotten once its 10 ms slot has left
    # the 1 s window, so the next 8 go at 1.01 s, then 2.02 s.
    assert times[:8] == [0] * 8
    assert times[8:16] == [1_010 * NS_PER_MS] * 8
    assert times[16:24] == [2_020 * NS_PER_MS] * 8
    assert _max_in_window(times, [1] * 24, S) == 8


def test_refusal_charges_nothing_and_wait_is_exact() -> None:
    clock = SimClock()
    lim = RateLimiter(clock, {"B": (5, 1)}, {"x": {"B": 1}, "cancel": {"B": 1}}, cancel_reserve=0)
    for _ in range(5):
        assert lim.try_acquire("x", 0) == 0
    wait = lim.try_acquire("x", 300 * NS_PER_MS)
    assert wait == 1_010 * NS_PER_MS - 300 * NS_PER_MS
    assert lim.used("B", 300 * NS_PER_MS) == 5
    assert lim.try_acquire("x", 300 * NS_PER_MS + wait - 1) > 0
    assert lim.try_acquire("x", 300 * NS_PER_MS + wait) == 0


def test_linked_weights_block_across_buckets() -> None:
    clock = SimClock()
    lim = _binance(clock)
    # queries weigh 4 on REQUEST_WEIGHT only; 85% of 6000 = 5100 usable by non-cancels -> 1275 queries
    n = 0
    while lim.try_acquire("query_order", 0) == 0:
        n += 1
    assert n == 1275
    assert lim.used("REQUEST_WEIGHT", 0) == 5100
    # ORDERS_10S is empty, but the new order also needs 1 REQUEST_WEIGHT: refused, nothing charged
    assert lim.try_acquire("new_order", 0) > 0
    assert lim.used("ORDERS_10S", 0) == 0
    # cancels still pass from the reserved 15%
    assert lim.try_acquire("cancel", 0) == 0


def test_orders_bucket_blocks_orders_but_cancels_pass() -> None:
    clock = SimClock()
    lim = _binance(clock)
    granted = sum(1 for _ in range(60) if lim.try_acquire("new_order", 0) == 0)
    assert granted == 42  # 50 - ceil(0.15 * 50) = 42
    assert lim.try_acquire("new_order", 1) > 0
    for _ in range(100):
        assert lim.try_acquire("cancel", 1) == 0  # cancels do not touch ORDERS at all


def test_cancel_reserve_is_only_for_cancels() -> None:
    clock = SimClock()
    lim = RateLimiter(clock, {"M": (50, 1)}, {"new_order": {"M": 1}, "cancel": {"M": 1}})  # IB-like
    assert sum(lim.try_acquire("new_order", 0) == 0 for _ in range(50)) == 42
    assert sum(lim.try_acquire("cancel", 0) == 0 for _ in range(50)) == 8
    assert lim.try_acquire("cancel", 0) > 0


def test_unknown_request_type_is_a_clear_error() -> None:
    lim = _binance(SimClock())
    with pytest.raises(UnknownRequestType, match=r"unknown request type 'new_ordr'.*allowed: .*new_order"):
        lim.try_acquire("new_ordr", 0)
    with pytest.raises(UnknownRequestType):
        lim.acquire_at("nope")


def test_rate_limited_blocks_everything_with_exponential_backoff() -> None:
    clock = SimClock()
    lim = RateLimiter(clock, {"B": (100, 1)}, {"x": {"B": 1}, "cancel": {"B": 1}}, backoff_base_ns=S,
                      success_streak=3)
    assert lim.on_rate_limited(2 * S, 0) == 2 * S
    assert lim.try_acquire("cancel", S) == S
    assert lim.try_acquire("x", 2 * S) == 0
    # repeated 429s without Retry-After: backoff 2 s, then 4 s
    assert lim.on_rate_limited(None, 3 * S) == 5 * S
    assert lim.on_rate_limited(None, 5 * S) == 9 * S
    assert lim.strikes == 3
    for _ in range(3):
        lim.on_success()
    assert lim.strikes == 0
    assert lim.on_rate_limited(None, 10 * S) == 11 * S  # back to the base


def test_used_weight_header_tightens_never_loosens() -> None:
    clock = SimClock()
    lim = _binance(clock)
    assert lim.try_acquire("account", 0) == 0
    lim.on_used_weight("REQUEST_WEIGHT", 5090, 0)  # X-MBX-USED-WEIGHT-1M: 5090
    assert lim.used("REQUEST_WEIGHT", 0) == 5090
    assert lim.try_acquire("account", 0) > 0  # 5090 + 20 > 5100
    assert lim.try_acquire("new_order", 0) == 0
    lim.on_used_weight("REQUEST_WEIGHT", 3, 0)  # lower than ours: ignored
    assert lim.used("REQUEST_WEIGHT", 0) == 5091
    with pytest.raises(ConfigError, match="unknown bucket"):
        lim.on_used_weight("WEIGHT", 1, 0)


def test_decaying_counter_kraken() -> None:
    clock = SimClock()
    lim = RateLimiter.from_preset("kraken", clock)
    # API counter 15, decays 15 per 45.45 s (0.33/s); ceil(15% of 15) = 3 kept for cancels -> 12 usable
    n = sum(lim.try_acquire("query_order", 0) == 0 for _ in range(20))
    assert n == 12
    wait = lim.try_acquire("query_order", 0)
    per_unit = -(-45_450 * NS_PER_MS // 15)  # 3.03 s per unit of counter
    cap_normal = 45_450 * NS_PER_MS - 45_450 * NS_PER_MS * 3 // 15
    assert wait == 13 * per_unit - cap_normal
    assert lim.try_acquire("query_order", wait - 1) > 0
    assert lim.try_acquire("query_order", wait) == 0
    assert lim.used("API_COUNTER", wait) == 12  # one unit decayed, one added


def test_acquire_at_reservations_queue_but_cancels_use_reserve_now() -> None:
    clock = SimClock(start_ns=5 * S)
    lim = RateLimiter(clock, {"B": (10, 1)}, {"new_order": {"B": 1}, "cancel": {"B": 1}}, cancel_reserve="0.2")
    times = [lim.acquire_at("new_order") for _ in range(20)]
    assert times[-1] > 6 * S
    # ordinary requests at now queue behind the reservations
    assert lim.try_acquire("new_order", 5 * S) == times[-1] - 5 * S
    # a cancel now: the window ending now holds 8, the cancel cap is 10
    assert lim.try_acquire("cancel", 5 * S) == 0
    assert lim.try_acquire("cancel", 5 * S) == 0
    assert lim.try_acquire("cancel", 5 * S) > 0


def test_async_acquire_on_simclock_paces_and_prioritises_cancels() -> None:
    clock = SimClock()
    lim = RateLimiter(clock, {"B": (5, 1)}, {"new_order": {"B": 1}, "cancel": {"B": 1}},
                      sleeper=SimSleeper(clock), cancel_reserve="0.2")
    got = [run_now(lim.acquire("new_order")) for _ in range(8)]
    assert got == [0, 0, 0, 0, 1_010 * NS_PER_MS, 1_010 * NS_PER_MS, 1_010 * NS_PER_MS, 1_010 * NS_PER_MS]
    assert clock.now_ns() == 1_010 * NS_PER_MS
    assert run_now(lim.acquire("cancel")) == clock.now_ns()  # reserve: no wait


def test_async_acquire_cancels_first_when_both_wait() -> None:
    clock = SimClock()
    lim = RateLimiter(clock, {"B": (2, 1)}, {"new_order": {"B": 1}, "cancel": {"B": 1}}, cancel_reserve="0.5",
                      sleeper=ClockSleeper(clock), poll_ns=NS_PER_MS)
    order: list[str] = []

    async def main() -> None:
        assert lim.try_acquire("new_order", 0) == 0
        assert lim.try_acquire("cancel", 0) == 0

        async def one(rt: str) -> None:
            await lim.acquire(rt)
            order.append(rt)

        tasks = [asyncio.create_task(one("new_order")), asyncio.create_task(one("cancel"))]
        for _ in range(3000):
            await asyncio.sleep(0)
            nxt = clock.next_due_ns()
            if nxt is not None:
                clock.advance_to(nxt)
            if all(t.done() for t in tasks):
                break
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == ["cancel", "new_order"]


def test_clock_sleeper_on_live_clock_waits_real_time() -> None:
    async def main() -> tuple[int, int]:
        clock = LiveClock()
        lim = RateLimiter(clock, {"B": (1, "0.05")}, {"x": {"B": 1}, "cancel": {"B": 1}}, cancel_reserve=0,
                          slots_per_window=10)
        t0 = await lim.acquire("x")
        t1 = await lim.acquire("x")
        return t0, t1

    t0, t1 = asyncio.run(main())
    assert t1 - t0 >= 50 * NS_PER_MS


def test_seeded_random_never_exceeds_any_window() -> None:
    rng = random.Random(7)
    clock = SimClock()
    lim = RateLimiter(clock, {"W": (20, 2), "O": (7, 1)},
                      {"q": {"W": 3}, "new_order": {"W": 1, "O": 1}, "cancel": {"W": 1}}, slots_per_window=50)
    t = 0
    grants: dict[str, list[tuple[int, int]]] = {"W": [], "O": []}
    weights = {"q": {"W": 3}, "new_order": {"W": 1, "O": 1}, "cancel": {"W": 1}}
    refused = 0
    for _ in range(3000):
        t += rng.choice([0, 0, 1, 10, 50, 200]) * NS_PER_MS
        rt = rng.choice(["q", "new_order", "new_order", "cancel"])
        if lim.try_acquire(rt, t) == 0:
            for b, w in weights[rt].items():
                grants[b].append((t, w))
        else:
            refused += 1
    assert refused > 100  # the load really was above the limits
    for b, window, limit in (("W", 2 * S, 20), ("O", S, 7)):
        ts = [g[0] for g in grants[b]]
        ws = [g[1] for g in grants[b]]
        assert _max_in_window(ts, ws, window) <= limit


def test_presets_construct_and_overrides() -> None:
    clock = SimClock()
    for venue in PRESETS:
        lim = RateLimiter.from_preset(venue, clock)
        assert "new_order" in lim.request_types and "cancel" in lim.request_types
    lim = RateLimiter.from_preset("binance-spot", clock, overrides={"REQUEST_WEIGHT": (1200, 60)})
    assert sum(lim.try_acquire("account", 0) == 0 for _ in range(100)) == 51  # 1020 // 20
    with pytest.raises(ConfigError, match="no rate-limit bucket 'WEIGHTS'"):
        RateLimiter.from_preset("binance-spot", clock, overrides={"WEIGHTS": (1, 1)})
    with pytest.raises(ConfigError, match="no rate-limit preset"):
        RateLimiter.from_preset("nasdaq", clock)
    with pytest.raises(ConfigError, match="window_s"):
        RateLimiter(clock, {"B": (1, "x")}, {"a": {"B": 1}}, cancel_types=())
    with pytest.raises(ConfigError, match="unknown bucket"):
        RateLimiter(clock, {"B": (1, 1)}, {"a": {"C": 1}}, cancel_types=())
    with pytest.raises(ConfigError, match="usable capacity"):
        RateLimiter(clock, {"B": (10, 1)}, {"a": {"B": 10}}, cancel_types=())


def _advance_reference(b: object, slot: int) -> None:
    """The per-slot loop the sliced ``_Bucket.advance`` replaced (kept as the oracle)."""
    ring, n, rl = b.ring, b.nslots, b.ringlen  # type: ignore[attr-defined]
    if slot - b.head >= rl:  # type: ignore[attr-defined]
        for i in range(rl):
            ring[i] = 0
        b.dropped += b.total  # type: ignore[attr-defined]
        b.total = 0  # type: ignore[attr-defined]
    else:
        total = b.total  # type: ignore[attr-defined]
        for k in range(b.head + 1, slot + 1):  # type: ignore[attr-defined]
            total -= ring[(k - n - 1) % rl]
            ring[k % rl] = 0
        b.dropped += b.total - total  # type: ignore[attr-defined]
        b.total = total  # type: ignore[attr-defined]
    b.head = slot  # type: ignore[attr-defined]
    b.head_idx = slot % rl  # type: ignore[attr-defined]
    b.slot_start = slot * b.slot_ns  # type: ignore[attr-defined]
    b.slot_end = b.slot_start + b.slot_ns  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(6))
def test_sliced_advance_matches_the_per_slot_loop(seed: int) -> None:
    """Seeded random grants, reservations and time jumps (within a slot, a few slots, more than
    a window, more than the ring): the limiter with the sliced ``advance`` and one with the
    reference loop grant the same requests at the same times and keep identical rings."""
    from venues import ratelimit as rl_mod
    rng = random.Random(seed)
    buckets = {"A": (7, 1), "B": (20, 10), "C": (50, 60)}
    types = {"new_order": {"A": 1, "B": 2, "C": 1}, "cancel": {"A": 1, "C": 1}}
    clock_a, clock_b = SimClock(0), SimClock(0)
    fast = RateLimiter(clock_a, buckets, types, slots_per_window=10)
    slow = RateLimiter(clock_b, buckets, types, slots_per_window=10)
    orig = rl_mod._Bucket.advance
    now = 0
    for _ in range(3000):
        now += rng.choice([0, 1, 37 * NS_PER_MS, 120 * NS_PER_MS, NS_PER_SECOND, 7 * NS_PER_SECOND,
                           65 * NS_PER_SECOND, 400 * NS_PER_SECOND])
        clock_a.advance_to(now)
        clock_b.advance_to(now)
        rt = "cancel" if rng.random() < 0.3 else "new_order"
        if rng.random() < 0.1:
            got_a = fast.acquire_at(rt)
            rl_mod._Bucket.advance = _advance_reference  # type: ignore[assignment]
            try:
                got_b = slow.acquire_at(rt)
            finally:
                rl_mod._Bucket.advance = orig  # type: ignore[method-assign]
        else:
            got_a = fast.try_acquire(rt, now)
            rl_mod._Bucket.advance = _advance_reference  # type: ignore[assignment]
            try:
                got_b = slow.try_acquire(rt, now)
            finally:
                rl_mod._Bucket.advance = orig  # type: ignore[method-assign]
        assert got_a == got_b
        for name in buckets:
            ba, bb = fast._buckets[name], slow._buckets[name]
            assert (ba.head, ba.total, ba.dropped, ba.ring) == (bb.head, bb.total, bb.dropped, bb.ring)


@pytest.mark.parametrize("venue", sorted(PRESETS))
def test_headroom_is_exactly_what_try_acquire_grants(venue: str) -> None:
    """At random moments of random request streams (15 seeds), ``headroom(t, now)`` is the number
    of back-to-back ``try_acquire(t, now)`` that succeed: one more is refused. (Cancels may use the
    reserve, so a bucket's total can exceed what ordinary requests may use: headroom 0, not less.)"""
    clock = SimClock(1_000 * NS_PER_SECOND)
    for seed in range(15):
        rng = random.Random(seed)
        lim = RateLimiter.from_preset(venue, clock)
        types = lim.request_types
        now = clock.now_ns()
        for _ in range(60):
            now += rng.choice([0, NS_PER_MS, 50 * NS_PER_MS, NS_PER_SECOND, 7 * NS_PER_SECOND])
            for _ in range(rng.randint(0, 40)):
                lim.try_acquire(rng.choice(types), now)
            t = rng.choice(types)
            h = lim.headroom(t, now)
            probe = copy.deepcopy(lim)   # the same state, spent without touching the original
            granted = 0
            while granted <= h + 1 and probe.try_acquire(t, now) == 0:
                granted += 1
            assert granted == h, (venue, seed, t, h, granted)
    with pytest.raises(UnknownRequestType):
        lim.headroom("nope", now)


def test_config_caps_add_buckets_on_top_of_the_venue_limits() -> None:
    clock = SimClock(1_000 * NS_PER_SECOND)
    now = clock.now_ns()
    lim = RateLimiter.from_preset_with_caps("binance-spot", clock, orders_per_second=2, request_weight_per_minute=30)
    # 2 per second (less the 15 % cancel reserve, at least one unit: 1 usable)... the preset's
    # reserve applies to every bucket, so a 2-per-second cap leaves 1 ordinary grant per second
    assert lim.headroom("new_order", now) == 1
    assert lim.try_acquire("new_order", now) == 0 and lim.headroom("new_order", now) == 0
    assert lim.try_acquire("new_order", now) > 0
    assert lim.headroom("cancel", now) > 0, "cancels do not count toward the order caps"
    assert lim.headroom("new_order", now + 2 * NS_PER_SECOND) == 1
    # 30 weight a minute, 20 per account read, 25 usable: one read
    assert lim.headroom("account", now) == 1
    reserved = RateLimiter.from_preset_with_caps("binance-spot", clock, cancel_headroom=600)
    plain = RateLimiter.from_preset("binance-spot", clock)
    # 600 of the 6000 REQUEST_WEIGHT (the tightest bucket cancels use) kept for cancels: 10 %
    # instead of the default 15 % (900)
    assert reserved.headroom("query_order", now) == (6000 - 600) // 4
    assert plain.headroom("query_order", now) == (6000 - 900) // 4
    with pytest.raises(ConfigError, match="no rate-limit bucket"):
        RateLimiter.from_preset_with_caps("binance-spot", clock, overrides={"NOPE": (1, 1)})
