"""The base's running open-lot sum (``ExecutionAlgo.open_lots``, O(1)) against a scan of its
ledger, through seeded random markets with partial fills, cancels, late acks and amends."""

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


def _make(kind: str) -> ExecutionAlgo:
    p = CommonParams(T0, T0 + 300 * S)
    if kind == "pov":
        return PovAlgo(p, target_rate=0.1, catchup_threshold=0.01)
    if kind == "twap":
        return TwapAlgo(p, slices=12)
    if kind == "vwap":
        return VwapAlgo(p, max_participation=0.5, final_sweep=True)
    return IcebergAlgo(CommonParams(T0, T0 + 300 * S, limit_ticks=10_001), display_min_lots=50,
                       display_max_lots=120)


@pytest.mark.parametrize("kind", ["pov", "twap", "vwap", "iceberg"])
@pytest.mark.parametrize("seed", range(4))
def test_running_open_lots_equal_a_ledger_scan(kind: str, seed: int) -> None:
    rng = random.Random(seed)
    ctx = FakeContext(SimClock(T0), parent_lots=5_000, depth=rng.choice([7, 40, 10**9]),
                      latency_ns=rng.choice([1_000_000, 300_000_000]), unknown_ns=rng.choice([0, 2 * S]))
    algo = _make(kind)
    ctx.start(algo)
    amended = False
    for i in range(320):
        ctx.run_to(T0 + i * S + rng.randrange(S))
        px = rng.choice([ctx.bid, ctx.ask, (ctx.bid or 0) - 1])
        ctx.trade(px, rng.randint(1, 90))  # type: ignore[arg-type]
        if not amended and i >= 150 and not algo.is_done and algo.filled_lots < 3_500:
            algo.amend(quantity=str(ctx.lot_size * 4_000))
            ctx.parent_lots = 4_000
            amended = True
        ctx.check_ledger()
        scan = sum(c.open_lots for c in algo.children.values())
        assert algo.open_lots() == scan, (i, algo.open_lots(), scan)
    assert algo.children, "the scenario sent nothing"
    assert not ctx.violations, ctx.violations[:3]
