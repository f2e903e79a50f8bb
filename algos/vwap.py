"""VWAP: follow an intraday volume profile, capped by a maximum participation rate.

The window (``start`` to ``end``, or to the sweep when ``final_sweep``) is cut at the profile's
bin edges; each segment's target is the profile volume it covers, split exactly in lots
(:func:`~algos.schedule.split_exact`; if the profile has no volume in the window the targets
are even, with a warning). The algo then follows the schedule like TWAP (post first, take when
behind by more than ``catchup_tolerance``), except that everything it commits, filled plus open,
is kept at or below ``max_participation`` x the market volume observed on the trade feed since
``start``, excluding its own fills. With the cap binding the order can finish behind schedule:
By default (``final_sweep="capped"``) it sweeps the remainder ``sweep_lead`` before ``end`` within the
cap (retried as the market trades), so the order completes unless the cap or the limit forbids it;
``final_sweep=True`` completes regardless of the cap, ``False`` reports the remainder at ``end``.
"""

from __future__ import annotations

import logging
from functools import cache

from algos.params import CommonParams
from algos.profile import VolumeProfile
from algos.schedule import FinalSweep, ScheduleAlgo, SliceStyle, split_exact
from marketdata.errors import ConfigError

MAX_SLICES = 10_000
"""At most this many slices per window (``max_slice`` is refused below window / MAX_SLICES)."""

__all__ = ["MAX_SLICES", "VwapAlgo", "default_profile"]

log = logging.getLogger(__name__)


@cache
def default_profile() -> VolumeProfile:
    """:meth:`VolumeProfile.u_shape` with its defaults, built once per process (~1 ms of Decimal
    arithmetic; the profile is immutable, so every VWAP shares it). The engine calls it when a
    parent is submitted, so a parent's start (inside a market-data callback) does not pay for it."""
    return VolumeProfile.u_shape()


class VwapAlgo(ScheduleAlgo):
    """Profile-following slicing. ``profile`` default: :meth:`VolumeProfile.u_shape` (5-min
    bins over the whole day); ``max_participation`` default 0.25 (``None`` disables the cap);
    ``max_slice_ns`` default a tenth of the window (bins longer than that are cut, their volume
    spread in proportion to time)."""

    name = "vwap"

    def __init__(self, params: CommonParams, *, profile: VolumeProfile | None = None,
                 max_participation: float | None = 0.25, catchup_tolerance: float = 0.05,
                 sweep_lead_ns: int | None = None, retry_ns: int | None = None,
                 final_sweep: FinalSweep = "capped", max_slice_ns: int | None = None,
                 slice_style: SliceStyle = "post") -> None:
        super().__init__(params, catchup_tolerance=catchup_tolerance, sweep_lead_ns=sweep_lead_ns,
                         retry_ns=retry_ns, final_sweep=final_sweep, max_participation=max_participation,
                         slice_style=slice_style)
        if max_slice_ns is not None and max_slice_ns <= 0:
            raise ConfigError(f"{max_slice_ns} ns", key="max_slice", allowed="> 0")
        if max_slice_ns is not None and params.duration_ns // max_slice_ns > MAX_SLICES:
            # one clock alert per slice: a 1 ms max_slice on an hour is 3.6 million of them
            raise ConfigError(f"{max_slice_ns} ns cuts the {params.duration_ns / 1e9:g} s window into more than "
                              f"{MAX_SLICES} slices", key="max_slice",
                              allowed=f">= window / {MAX_SLICES} ({-(-params.duration_ns // MAX_SLICES)} ns)")
        self.profile = profile or default_profile()
        self.max_slice_ns = max_slice_ns

    def _plan(self) -> None:
        p = self.params
        end = self.sweep_ns if self.final_sweep else p.end_ns
        segs = self.profile.segments(p.start_ns, end)
        # cut long bins so that the schedule accrues through each bin (the profile is flat inside
        # a bin) and re-posting happens often enough; default: a tenth of the window, so a window
        # inside one profile bin is still ten slices, not everything due at its start
        max_slice = self.max_slice_ns if self.max_slice_ns is not None else max(1, (end - p.start_ns) // 10)
        if max_slice:
            fine = []
            for a, b, w in segs:
                n = -(-(b - a) // max_slice)
                for i in range(n):
                    sa, sb = a + (b - a) * i // n, a + (b - a) * (i + 1) // n
                    fine.append((sa, sb, w * (sb - sa) / (b - a)))
            segs = fine
        weights = [w for _, _, w in segs]
        if sum(weights) == 0:
            log.warning("vwap parent=%s: profile %s has no volume in the window; using even slices",
                        self.ctx.parent_id, self.profile.source)
        self.slice_ns = [a for a, _, _ in segs]
        self.cum_targets = split_exact(self.parent_lots, weights)
