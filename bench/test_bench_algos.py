"""Algo benchmarks: the cost of the decision core per event, and of exact schedule splitting.

* ``twap-run``: a whole 10-minute TWAP (20 slices) of 100,000 lots on the fake engine of
  ``tests/algos/algos_fakes.py`` with 1,200 public trades (one every 0.5 s at the bid), timers,
  fills and cancels all on a SimClock. Reference in the same run: ``fake-market-only``, the same
  trades and clock with an algo that does nothing, so the difference is the algo's own cost.
* ``split_exact`` (exact rational cumulative split of 500 weights) against a float reference
  (``round`` of cumulative float shares), which is faster but not guaranteed to sum exactly.

Run: ``python -m pytest bench/test_bench_algos.py --benchmark-enable -q``
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "algos"))

from algos_fakes import FakeContext

from algos.base import ExecutionAlgo
from algos.params import CommonParams
from algos.schedule import split_exact
from algos.twap import TwapAlgo
from marketdata.clock import SimClock

S = 1_000_000_000
T0 = 1_723_161_255_000_000_000


class _Idle(ExecutionAlgo):
    name = "idle"

    def _begin(self) -> None:
        return

    def _reconcile(self, now_ns: int) -> None:
        return


def _run(make: Any) -> int:
    ctx = FakeContext(SimClock(T0), parent_lots=100_000)
    algo = make()
    ctx.start(algo)
    rng = random.Random(1)
    for i in range(1200):
        ctx.run_to(T0 + (i + 1) * S // 2)
        ctx.trade(ctx.bid, rng.randint(1, 100))  # type: ignore[arg-type]
    ctx.run_to(T0 + 601 * S)
    return len(ctx.children)


def test_bench_twap_run(benchmark: Any) -> None:
    n = benchmark(_run, lambda: TwapAlgo(CommonParams(T0, T0 + 600 * S, seed=1), slices=20))
    assert n > 20


def test_bench_fake_market_only(benchmark: Any) -> None:
    benchmark(_run, lambda: _Idle(CommonParams(T0, T0 + 600 * S)))


WEIGHTS = [random.Random(2).uniform(0.8, 1.2) for _ in range(500)]


def _float_split(total: int, weights: list[float]) -> list[int]:
    s, acc, out = sum(weights), 0.0, []
    for w in weights:
        acc += w
        out.append(round(total * acc / s))
    return out


def test_bench_split_exact(benchmark: Any) -> None:
    assert benchmark(split_exact, 10**9, WEIGHTS)[-1] == 10**9


def test_bench_split_float_reference(benchmark: Any) -> None:
    benchmark(_float_split, 10**9, WEIGHTS)
