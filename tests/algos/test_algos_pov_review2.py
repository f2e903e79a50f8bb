"""Second review of POV (re-pricing, would price) and the iceberg's native fallback: each test
marked "Failed before." failed before its fix in algos/pov.py or algos/iceberg.py."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
from algos_fakes import FakeContext
from hypothesis import given, settings
from hypothesis import strategies as st

from algos.base import AlgoStatus
from algos.iceberg import IcebergAlgo
from algos.params import CommonParams
from algos.pov import PovAlgo
from algos.twap import TwapAlgo
from marketdata.clock import SimClock
from marketdata.model import OrderStatus, Side

S = 1_000_000_000
MS = 1_000_000
T0 = 1_723_161_255_000_000_000


def test_pov_does_not_post_and_cancel_at_every_replan_while_the_would_price_is_active() -> None:
    """Failed before. While the far touch is at the would price, every re-plan posted the
    participation child and ``_check_would`` (at the end of the same re-plan) cancelled it at once
    and sent the would take: a thin book (the would take filling nothing) gave a post, a cancel and
    a take every round trip, 1,999 posts in 2 s. As the schedules do, the re-plan now only checks
    the would price while it is active: no participation post is sent to be cancelled."""
    ctx = FakeContext(SimClock(T0), parent_lots=10_000, parent_limit=10_010)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=10_010, would_ticks=10_001, min_child_lots=100),
                   target_rate=0.1)
    ctx.start(algo)
    ctx.depth = 0   # the would take finds nothing
    ctx.run_to(T0 + S // 2)
    ctx.trade(10_001, 1_000, aggressor=Side.BUY)
    ctx.run_to(T0 + 2 * S)
    kinds = Counter(c.request.reason for c in ctx.children.values())
    assert kinds["participate"] == 0 and kinds["catchup"] == 0, kinds
    assert kinds["would"] >= 1 and not ctx.violations
    # the far touch moves away from the would price: the order posts again at the next check
    ctx.ask = 10_005
    ctx.run_to(T0 + 3 * S + 5 * MS)
    assert algo.open_children("post") and not ctx.violations


def test_pov_journals_no_reprice_at_its_end() -> None:
    """Failed before. The end alert ran the re-pricing before the re-plan finished the order: a
    post left behind by the bid was cancelled "to be re-priced" and a ``pov_reprice`` event
    journaled, for a re-post that can never come (the order finishes in the same call). Re-pricing
    now acts only inside the window."""
    ctx = FakeContext(SimClock(T0), parent_lots=100_000)
    algo = PovAlgo(CommonParams(T0, T0 + 10 * S, min_child_lots=200), target_rate=0.1, min_rate=0.0,
                   catchup_threshold=1.0)
    ctx.start(algo)
    ctx.run_to(T0 + 9 * S + S // 2)
    ctx.bid, ctx.ask = 10_049, 10_051
    ctx.run_to(T0 + 11 * S)
    assert algo.status is AlgoStatus.FINISHED
    assert not [k for k, _ in ctx.events if k == "pov_reprice"]


def _rejecting_iceberg(native: bool | None, max_failures: int = 5) -> tuple[FakeContext, IcebergAlgo]:
    """An iceberg on an engine with native icebergs, where every child is rejected (a risk limit
    synthetic children hit too)."""
    ctx = FakeContext(SimClock(T0), parent_lots=500, parent_limit=10_000, native_iceberg=True)
    algo = IcebergAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=10_000), display_min_lots=20,
                       display_max_lots=40, native=native, max_failures=max_failures)
    ctx.start(algo)
    for i in range(1, 60):
        ctx.run_to(T0 + i * S // 4)
        for c in list(ctx.children.values()):
            if not c.done:
                ctx._done(c, OrderStatus.REJECTED)
    return ctx, algo


def test_iceberg_native_rejection_counts_towards_max_failures() -> None:
    """Failed before. A native child rejected (``native`` automatic) fell back to synthetic
    children without counting as a failure: when the synthetic children are rejected too, six
    consecutive children ended unfilled before the order finished saying "5 consecutive children
    ended unfilled". The rejection now counts: five children in all (one native, four synthetic,
    display-sized), and the reason is true."""
    ctx, algo = _rejecting_iceberg(None)
    assert algo.status is AlgoStatus.FINISHED and "5 consecutive" in (algo.finish_reason or "")
    kids = list(ctx.children.values())
    assert len(kids) == 5
    assert kids[0].request.display_lots is not None and kids[0].request.lots == 500
    assert all(c.request.display_lots is None and 20 <= c.request.lots <= 40 for c in kids[1:])
    assert [k for k, _ in ctx.events if k == "iceberg_native_refused"] == ["iceberg_native_refused"]
    assert not ctx.violations


def test_checked_not_a_bug_native_true_retries_native_then_gives_up() -> None:
    """Checked, not a bug: with ``native = True`` a rejection is a failure and the native child is
    re-sent after ``retry``: five native children, then the order finishes."""
    ctx, algo = _rejecting_iceberg(True)
    assert algo.status is AlgoStatus.FINISHED and "5 consecutive" in (algo.finish_reason or "")
    assert [c.request.lots for c in ctx.children.values()] == [500] * 5


def test_iceberg_fallback_with_one_allowed_failure_gives_up_at_once() -> None:
    """Failed before (it fell back and sent a synthetic child: two failures against a limit of
    one). ``max_failures = 1``: the native rejection is that one failure."""
    ctx, algo = _rejecting_iceberg(None, max_failures=1)
    assert algo.status is AlgoStatus.FINISHED and len(ctx.children) == 1


@settings(max_examples=40, deadline=None)
@given(lots=st.integers(1, 3000), lo=st.integers(1, 50), extra=st.integers(0, 50), seed=st.integers(0, 99))
def test_iceberg_fallback_children_stay_within_the_display_bounds(lots: int, lo: int, extra: int,
                                                                 seed: int) -> None:
    """Checked, not a bug: after the fallback every synthetic child is a display drawn from
    ``[display_min, display_max]`` (capped by the remainder), one at a time, and the parent is
    never exceeded."""
    ctx = FakeContext(SimClock(T0), parent_lots=lots, parent_limit=10_000, native_iceberg=True)
    algo = IcebergAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=10_000, seed=seed), display_min_lots=lo,
                       display_max_lots=lo + extra)
    ctx.start(algo)
    ctx.run_to(T0 + MS // 2)
    (native,) = ctx.children.values()
    ctx._done(native, OrderStatus.REJECTED)
    rng = random.Random(seed)
    t = T0
    while not algo.is_done and t < T0 + 600 * S:
        t += S
        ctx.run_to(t)
        ctx.trade(10_000, rng.randint(1, 80))
        assert sum(1 for c in ctx.children.values() if not c.done) <= 1
    for c in list(ctx.children.values())[1:]:
        assert c.request.display_lots is None
        assert c.request.lots <= lo + extra
    assert algo.filled_lots == ctx.filled_lots() <= lots and not ctx.violations


@pytest.mark.parametrize("algo_name", ["twap", "pov"])
def test_would_takes_that_find_nothing_wait_retry(algo_name: str) -> None:
    """Failed before (flagged by this review, fixed in algos/base.py): while the far touch sat at
    the would price with nothing behind it (the would take fills nothing), the next would take
    went right after the last came back: one IOC per round trip, ~2,000 in 2 s. Now, after a
    would take that did not fill completely, the next waits the algo's ``retry`` (1 s here), and
    goes once it has passed."""
    ctx = FakeContext(SimClock(T0), parent_lots=1_000)
    params = CommonParams(T0, T0 + 600 * S, limit_ticks=10_010, would_ticks=10_001)
    algo = (TwapAlgo(params, slices=10, size_jitter=0.0, time_jitter=0.0, retry_ns=S) if algo_name == "twap"
            else PovAlgo(params, target_rate=0.1, retry_ns=S))
    ctx.start(algo)
    ctx.depth = 0   # the would take finds nothing
    ctx.run_to(T0 + 2 * S + S // 2)
    woulds = [(c.sent_ns - T0) // 1_000_000 for c in ctx.children.values() if c.request.reason == "would"]
    assert 2 <= len(woulds) <= 4, woulds   # about one a second, not one per round trip
    assert all(b - a >= 1_000 for a, b in itertools.pairwise(woulds)), woulds
    assert not ctx.violations
