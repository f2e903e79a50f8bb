"""Rate-limiter hot path and journal append cost.

Rate limiter: each round runs ``N`` ``try_acquire`` calls with the clock advancing ``STEP_NS`` per call
(so sub-window slots roll over as they would live), for two workloads:

* ``binance-new_order``: the Binance spot preset, ``new_order`` draws on 4 linked buckets
  (REQUEST_WEIGHT, ORDERS_10S, ORDERS_1D, RAW_REQUESTS), limits raised so every call is granted
  (the granted path is the one that runs before every order);
* ``ib-message``: one bucket, 50 per second, at 1,000 calls per second so most calls are *refused*
  (the refusal path computes the wait).

The reference in the same run is a naive sliding-window limiter: one ``collections.deque`` of
timestamps per bucket, expired from the left on every call (exact, the textbook approach).

Journal: one ``append`` (an ``order_command``-sized payload) per call, WAL mode, ``synchronous=FULL``
vs ``NORMAL``, on the file system of pytest's ``tmp_path``.

Divide the per-round figures by ``N`` for per-call costs.
Run: ``python -m pytest bench/test_bench_ratelimit.py --benchmark-enable -q``
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path

import pytest

from marketdata.clock import NS_PER_SECOND, SimClock
from venues.journal import Journal
from venues.ratelimit import PRESETS, BucketSpec, RateLimiter

N = 10_000


class NaiveDequeLimiter:
    """Reference: exact sliding window, one deque of timestamps per bucket (weight 1 per entry)."""

    def __init__(self, buckets: Mapping[str, tuple[int, int]], request_types: Mapping[str, Mapping[str, int]]):
        self.buckets = {name: (deque[int](), limit, int(window_s * NS_PER_SECOND))
                        for name, (limit, window_s) in buckets.items()}
        self.types = {rt: [(self.buckets[b], w) for b, w in ws.items()] for rt, ws in request_types.items()}

    def try_acquire(self, request_type: str, now: int) -> int:
        parts = self.types[request_type]
        wait = 0
        for (dq, limit, window), w in parts:
            cutoff = now - window
            while dq and dq[0] <= cutoff:
                dq.popleft()
            if len(dq) + w > limit:
                wait = max(wait, dq[len(dq) + w - limit - 1] + window - now)
        if wait:
            return wait
        for (dq, _, _), w in parts:
            for _ in range(w):
                dq.append(now)
        return 0


def _binance_big() -> tuple[dict[str, tuple[int, int]], dict[str, dict[str, int]]]:
    p = PRESETS["binance-spot"]
    buckets = {name: (10**9, BucketSpec.parse(name, spec).window_ns // NS_PER_SECOND)
               for name, spec in p.buckets.items()}
    return buckets, {k: dict(v) for k, v in p.request_types.items()}


STEP_NS = {"binance-new_order": 1_000, "ib-message": 1_000_000}  # 1 µs, 1 ms between calls


def _make(kind: str, workload: str, cancel_reserve: str = "0.15") -> Callable[[int], int]:
    if workload == "binance-new_order":
        buckets, types = _binance_big()
        rt = "new_order"
    else:
        buckets, types = {"MESSAGES": (50, 1)}, {"new_order": {"MESSAGES": 1}, "cancel": {"MESSAGES": 1}}
        rt = "new_order"
    lim: RateLimiter | NaiveDequeLimiter
    if kind == "sorex":
        lim = RateLimiter(SimClock(), buckets, types, cancel_types=("cancel",), cancel_reserve=cancel_reserve)
    else:
        lim = NaiveDequeLimiter(buckets, types)
    step = STEP_NS[workload]
    state = {"t": 0}
    try_acquire = lim.try_acquire

    def run(n: int) -> int:
        t = state["t"]
        granted = 0
        for _ in range(n):
            t += step
            if try_acquire(rt, t) == 0:
                granted += 1
        state["t"] = t
        return granted

    return run


@pytest.mark.parametrize("workload", ["binance-new_order", "ib-message"])
@pytest.mark.parametrize("kind", ["sorex", "naive-deque"])
def test_bench_try_acquire(benchmark, kind: str, workload: str) -> None:  # type: ignore[no-untyped-def]
    run = _make(kind, workload)
    run(N)  # warm up: fill windows
    granted = benchmark(run, N)
    benchmark.extra_info["calls_per_round"] = N
    benchmark.extra_info["granted_last_round"] = granted
    if workload == "binance-new_order":
        assert granted == N
    else:
        assert 0 < granted < N


def test_bench_limiters_agree_on_grants() -> None:
    """Not timed: without the cancel reserve, on the same paced workload both limiters grant about
    the same count (ours is conservative by at most one sub-window slot per window)."""
    ours, naive = _make("sorex", "ib-message", cancel_reserve="0"), _make("naive-deque", "ib-message")
    a, b = ours(20_000), naive(20_000)
    assert b * 0.98 <= a <= b


PAYLOAD = {"action": "submit", "client_order_id": "sx-r1-P1-1", "venue": "binance-spot", "symbol": "BTC-USDT",
           "side": "buy", "order_type": "limit", "time_in_force": "GTC", "quantity": Decimal("0.01000"),
           "price": Decimal("61800.20"), "parent_id": "P1", "decision_id": "d1"}


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_bench_journal_append(benchmark, tmp_path: Path, synchronous: str) -> None:  # type: ignore[no-untyped-def]
    j = Journal(tmp_path / f"bench-{synchronous}.db", synchronous=synchronous)  # type: ignore[arg-type]
    counter = {"ts": 0}

    def append() -> int:
        counter["ts"] += 1
        return j.append("order_command", counter["ts"], PAYLOAD, venue="binance-spot",
                        client_order_id="sx-r1-P1-1", parent_id="P1")

    benchmark(append)
    assert j.appended > 0
    j.close()
