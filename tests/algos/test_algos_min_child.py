"""The base's minimum-child rule (``ExecutionAlgo._send``): a child below ``min_child_lots`` goes
only as the whole remainder, parent minus filled with no other child open, never merely because
it is all that is still available beside open children."""

from __future__ import annotations

import random

import pytest
from algos_fakes import FakeContext

from algos.base import ExecutionAlgo
from algos.iceberg import IcebergAlgo
from algos.params import CommonParams
from algos.pov import PovAlgo
from algos.twap import TwapAlgo
from algos.vwap import VwapAlgo
from marketdata.clock import SimClock

S = 1_000_000_000
T0 = 1_723_161_255_000_000_000
BID = 9_999


class _Manual(ExecutionAlgo):
    """Sends only what the test asks for, through ``_send``."""

    name = "manual"

    def _begin(self) -> None:
        pass

    def _reconcile(self, now_ns: int) -> None:
        pass


def _manual(parent_lots: int, min_child_lots: int) -> tuple[FakeContext, _Manual]:
    ctx = FakeContext(SimClock(T0), parent_lots=parent_lots)
    algo = _Manual(CommonParams(T0, T0 + 600 * S, min_child_lots=min_child_lots))
    ctx.start(algo)
    return ctx, algo


def test_a_small_child_beside_an_open_one_waits_until_it_is_the_whole_remainder() -> None:
    """Failed before: with 95 of 100 lots resting, a 20-lot request was cut to the 5 still
    available and sent (5 < min_child_lots 20) because it equalled ``available_lots()``, although
    the parent's remainder was 100. Now it is refused; once the 95 have filled, the 5 are the
    whole remainder and go."""
    ctx, algo = _manual(100, 20)
    assert algo._send(95, style="post", limit_ticks=BID) is not None
    ctx.run_to(T0 + S)   # acknowledged: resting
    assert algo.available_lots() == 5 and algo.remaining_lots() == 100
    assert algo._send(20, style="post", limit_ticks=BID) is None
    assert algo._send(5, style="take") is None
    assert [c.request.lots for c in algo.children.values()] == [95]
    ctx.trade(BID, 95)   # the resting child fills completely
    assert algo.remaining_lots() == algo.available_lots() == 5 and algo.open_lots() == 0
    sent = algo._send(20, style="post", limit_ticks=BID)
    assert sent is not None and algo.children[sent].request.lots == 5
    assert not ctx.violations


def test_lots_that_come_back_go_out_at_full_size() -> None:
    """The refused tail is not lost: when the open child is cancelled instead, the whole
    quantity is available again and goes as children of at least the minimum."""
    ctx, algo = _manual(100, 20)
    first = algo._send(95, style="post", limit_ticks=BID)
    assert first is not None
    ctx.run_to(T0 + S)
    ctx.trade(BID, 30)   # 30 of the 95 fill; 65 rest
    assert algo._send(20, style="post", limit_ticks=BID) is None   # 5 available, remainder 70
    algo._cancel(first)
    ctx.run_to(T0 + 2 * S)
    assert algo.open_lots() == 0 and algo.available_lots() == 70
    sent = algo._send(70, style="post", limit_ticks=BID)
    assert sent is not None and algo.children[sent].request.lots == 70


def test_an_in_flight_child_counts_as_open() -> None:
    """The same for a child not yet acknowledged (in flight, or UNKNOWN after a timeout): it may
    still come back rejected, so the tail beside it is not the whole remainder."""
    ctx = FakeContext(SimClock(T0), parent_lots=50, unknown_ns=10 * S)
    algo = _Manual(CommonParams(T0, T0 + 600 * S, min_child_lots=10))
    ctx.start(algo)
    assert algo._send(47, style="take") is not None
    assert ctx.inflight_or_unknown_lots() == 47 and algo.available_lots() == 3
    assert algo._send(10, style="take") is None
    ctx.run_to(T0 + 11 * S)   # acknowledged and filled at once (IOC, unlimited depth)
    assert algo.filled_lots == 47 and algo.open_lots() == 0
    sent = algo._send(10, style="take")
    assert sent is not None and algo.children[sent].request.lots == 3


def _make(kind: str, min_child_lots: int) -> ExecutionAlgo:
    p = CommonParams(T0, T0 + 300 * S, min_child_lots=min_child_lots)
    if kind == "pov":
        return PovAlgo(p, target_rate=0.1, catchup_threshold=0.01)
    if kind == "twap":
        return TwapAlgo(p, slices=12)
    if kind == "vwap":
        return VwapAlgo(p, max_participation=0.5, final_sweep=True)
    return IcebergAlgo(CommonParams(T0, T0 + 300 * S, limit_ticks=10_001, min_child_lots=min_child_lots),
                       display_min_lots=max(50, min_child_lots), display_max_lots=120)


@pytest.mark.parametrize("kind", ["pov", "twap", "vwap", "iceberg"])
def test_no_scheduler_sends_a_small_child_beside_open_ones(kind: str) -> None:
    """Seeded random markets (partial depth, slow and unknown acks): every child below
    ``min_child_lots`` was, when sent, the whole remainder with nothing else open. Failed before
    for POV (seeds 2 and 18 here): a participation post of 5 lots beside 8 open, of 10 beside 194,
    with a minimum of 20 and 45."""
    small: list[tuple[int, int, int, int]] = []
    orig = ExecutionAlgo._send

    def spy(self: ExecutionAlgo, lots: int, **kw):  # type: ignore[no-untyped-def]
        remaining, open_before = self.remaining_lots(), self.open_lots()
        cid = orig(self, lots, **kw)
        if cid is not None:
            sent = self.children[cid].request.lots
            if sent < self.params.min_child_lots and (sent != remaining or open_before):
                small.append((seed, sent, remaining, open_before))
        return cid

    sent_any = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ExecutionAlgo, "_send", spy)
        for seed in range(20):
            rng = random.Random(seed)
            ctx = FakeContext(SimClock(T0), parent_lots=rng.choice([505, 1003, 5000]),
                              depth=rng.choice([7, 40, 10**9]), latency_ns=rng.choice([1_000_000, 300_000_000]),
                              unknown_ns=rng.choice([0, 2 * S]))
            algo = _make(kind, rng.choice([20, 45, 100]))
            ctx.start(algo)
            for i in range(320):
                ctx.run_to(T0 + i * S + rng.randrange(S))
                ctx.trade(rng.choice([ctx.bid, ctx.ask, (ctx.bid or 0) - 1]), rng.randint(1, 90))  # type: ignore[arg-type]
            ctx.run_to(T0 + 400 * S)
            sent_any += len(algo.children)
            assert not ctx.violations, ctx.violations[:3]
    assert sent_any, "the scenarios sent nothing"
    assert small == []
