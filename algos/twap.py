"""TWAP: even slices over [start, end], randomised in size and timing, passive first.

The window up to the final sweep (``end - sweep_lead``) is cut into ``slices`` equal intervals.
Each slice's start is moved by a uniform random offset of up to ``time_jitter`` of an interval
(kept inside its own interval, so the order of slices never changes) and its size is weighted by
``1 + U(-size_jitter, +size_jitter)``; cumulative targets are then split exactly in integer lots
(:func:`~algos.schedule.split_exact`), so the slices add up to the parent. The random stream is
``random.Random(seed)``: the same seed and inputs give the same schedule and the same children.

Behaviour (see :class:`~algos.schedule.ScheduleAlgo`): post the slice at the near touch; take
the lag when behind the previous slice's target by more than ``catchup_tolerance`` of the
parent; final sweep takes the remainder so the order completes by ``end`` unless the limit
price forbids it.
"""

from __future__ import annotations

from algos.params import CommonParams
from algos.schedule import ScheduleAlgo, SliceStyle, split_exact
from marketdata.errors import ConfigError

__all__ = ["TwapAlgo"]


class TwapAlgo(ScheduleAlgo):
    """Time-weighted slicing. ``slices`` default: one per 30 s of window, between 1 and 500."""

    name = "twap"

    def __init__(self, params: CommonParams, *, slices: int | None = None, size_jitter: float = 0.2,
                 time_jitter: float = 0.2, catchup_tolerance: float = 0.05,
                 sweep_lead_ns: int | None = None, retry_ns: int | None = None,
                 final_sweep: bool = True, slice_style: SliceStyle = "post") -> None:
        super().__init__(params, catchup_tolerance=catchup_tolerance, sweep_lead_ns=sweep_lead_ns,
                         retry_ns=retry_ns, final_sweep=final_sweep, slice_style=slice_style)
        if slices is not None and slices < 1:
            raise ConfigError(f"{slices}", key="slices", allowed=">= 1")
        for key, v in (("size_jitter", size_jitter), ("time_jitter", time_jitter)):
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"{v}", key=key, allowed="[0, 1)")
        span = (self.sweep_ns if final_sweep else params.end_ns) - params.start_ns
        self.slices = slices or max(1, min(500, span // 30_000_000_000))
        self.size_jitter = size_jitter
        self.time_jitter = time_jitter

    def _plan(self) -> None:
        p = self.params
        end = self.sweep_ns if self.final_sweep else p.end_ns
        n = self.slices
        span = end - p.start_ns
        interval = span // n
        times: list[int] = []
        weights: list[float] = []
        for k in range(n):
            base = p.start_ns + k * interval
            offset = 0
            if self.time_jitter and k > 0 and interval > 1:
                # keep inside [base, base + interval): slice order and window are preserved
                offset = int(self.rng.uniform(0.0, self.time_jitter) * interval)
            times.append(base + offset)
            weights.append(1.0 + self.rng.uniform(-self.size_jitter, self.size_jitter))
        self.slice_ns = times
        self.cum_targets = split_exact(self.parent_lots, weights)
