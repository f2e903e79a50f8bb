"""Schedule-following machinery shared by TWAP, VWAP and implementation shortfall.

A schedule is a list of slice start times and the *cumulative* lots due by the end of each slice;
the last cumulative target is exactly the parent quantity (:func:`split_exact` carries every
rounding remainder forward). :class:`ScheduleAlgo` follows it passive first: at each slice it
posts the lots due and not yet filled or open at the near touch; when the fills lag the schedule
of the previous slice by more than ``catchup_tolerance`` of the parent, it cancels its posts and
takes the lag once they are done; ``sweep_lead_ns`` before the end it cancels everything and takes the whole
remainder (within the parent limit), retrying every ``retry_ns`` until the end time.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from fractions import Fraction
from math import gcd
from typing import Literal

from algos.base import ChildRecord, ExecutionAlgo
from algos.params import CommonParams, rate_ratio
from marketdata.errors import ConfigError, InvariantError
from marketdata.model import TradeTick

__all__ = ["FinalSweep", "ScheduleAlgo", "parse_final_sweep", "split_exact"]

SliceStyle = Literal["post", "mixed"]
FinalSweep = bool | Literal["capped"]


def parse_final_sweep(value: object) -> FinalSweep:
    """A config's ``final_sweep``: ``true``, ``false`` or ``"capped"`` (else :class:`ConfigError`)."""
    if isinstance(value, bool):
        return value
    if value == "capped":
        return "capped"
    raise ConfigError(f"{value!r}", key="final_sweep", allowed='true, false, "capped"')


SLICE_STYLES: tuple[SliceStyle, ...] = ("post", "mixed")


def parse_slice_style(value: object) -> SliceStyle:
    """A config's ``slice_style``: ``"post"`` or ``"mixed"`` (else :class:`ConfigError`)."""
    for style in SLICE_STYLES:
        if value == style:
            return style
    raise ConfigError(f"{value!r}", key="slice_style", allowed='"post", "mixed"')


log = logging.getLogger(__name__)


def split_exact(total: int, weights: Sequence[float | int | Fraction]) -> list[int]:
    """Cumulative integer targets proportional to ``weights``: ``c[k] = floor(total * W_k / W)``
    in exact integer arithmetic (floats are first fixed to 1e-12, Fractions brought to a common
    denominator), so ``c[-1] == total`` and slices ``c[k] - c[k-1]`` are
    non-negative integers that add up to ``total`` exactly. Zero weights give empty slices;
    all-zero weights fall back to equal ones."""
    if total < 0:
        raise InvariantError(f"split_exact of negative total {total}")
    if not weights:
        raise InvariantError("split_exact needs at least one weight")
    ints: list[int]
    if all(isinstance(w, int) for w in weights):
        ints = [int(w) for w in weights]
    elif any(isinstance(w, Fraction) for w in weights):
        fr = [Fraction(w) for w in weights]
        den = 1
        for f in fr:
            den = den * f.denominator // gcd(den, f.denominator)
        ints = [int(f * den) for f in fr]
    else:
        # floats: fixed point with 1e-12 resolution; sums stay exact integers
        ints = [round(float(w) * 1_000_000_000_000) for w in weights]
    if any(w < 0 for w in ints):
        raise InvariantError("split_exact weights must be >= 0")
    whole = sum(ints)
    if whole == 0:
        ints = [1] * len(ints)
        whole = len(ints)
    out: list[int] = []
    acc = 0
    for w in ints:
        acc += w
        out.append(total * acc // whole)
    out[-1] = total
    return out


class ScheduleAlgo(ExecutionAlgo):
    """Follows ``self.slice_ns`` / ``self.cum_targets`` (set by ``_plan``); see module doc.

    Extra parameters: ``catchup_tolerance`` (fraction of parent, default 0.05),
    ``sweep_lead_ns`` (default 5% of the window), ``retry_ns`` (minimum gap between two takes,
    default 1 s, or a tenth of a slice or a fifth of the sweep lead if shorter), ``final_sweep``
    (default True; ``"capped"``: sweep only what ``max_participation`` allows, retried as the
    market trades),
    ``max_participation`` (fraction of market volume excluding our fills, default None = no cap),
    ``slice_style`` (``"post"``, default: each slice is posted passive-first, ``urgency`` x the
    slice taken at once; ``"mixed"``: each slice goes as one ``mixed`` child and the router
    splits it between taking now and posting, by urgency or by Cont-Kukanov per
    ``routing.mixed_split``).
    """

    name = "schedule"

    def __init__(self, params: CommonParams, *, catchup_tolerance: float = 0.05,
                 sweep_lead_ns: int | None = None, retry_ns: int | None = None,
                 final_sweep: FinalSweep = True, max_participation: float | None = None,
                 slice_style: SliceStyle = "post") -> None:
        super().__init__(params)
        slice_style = parse_slice_style(slice_style)
        if not 0.0 <= catchup_tolerance <= 1.0:
            raise ConfigError(f"{catchup_tolerance}", key="catchup_tolerance", allowed="[0, 1]")
        if max_participation is not None and not 0.0 < max_participation <= 1.0:
            raise ConfigError(f"{max_participation}", key="max_participation", allowed="(0, 1]")
        lead = sweep_lead_ns if sweep_lead_ns is not None else params.duration_ns // 20
        if not 0 <= lead < params.duration_ns:
            raise ConfigError(f"{lead} ns", key="sweep_lead", allowed="[0, end - start)")
        if retry_ns is not None and retry_ns <= 0:
            raise ConfigError(f"{retry_ns} ns", key="retry", allowed="> 0")
        if final_sweep not in (True, False, "capped"):
            raise ConfigError(f"{final_sweep!r}", key="final_sweep", allowed='true, false, "capped"')
        self.catchup_tolerance = catchup_tolerance
        self.sweep_ns = params.end_ns - lead
        self.final_sweep = final_sweep
        self.max_participation = max_participation
        self.slice_style: SliceStyle = slice_style
        # a mixed slice's resting part is priced by the router; the near touch when it was sent
        # tells _reprice when the market has moved away from it
        self._mixed_ref: dict[str, int | None] = {}
        self._cap_ratio = None if max_participation is None else rate_ratio(max_participation)
        self._retry_ns = retry_ns
        self.slice_ns: list[int] = []
        self.cum_targets: list[int] = []
        self._last_take_ns: int | None = None
        self._retry_at: int | None = None
        self._market_lots = 0
        self._last_slice = -1
        # lots the participation cap held back at the last reconcile: while > 0, trades that open
        # enough room reconcile again (else a cap binding with no child out waits for the next
        # slice boundary, and a window inside one profile bin never trades)
        self._cap_short = 0

    # ------------------------------------------------------------------ planning
    def _plan(self) -> None:
        """Fill ``slice_ns`` (ascending, within [start, sweep)) and ``cum_targets``."""
        raise NotImplementedError

    def _slice_started(self, k: int) -> None:
        """Hook: slice ``k`` just began (IS re-plans here)."""

    def _begin(self) -> None:
        self._plan()
        self._validate_plan()
        if self._retry_ns is None:
            slice_len = self.params.duration_ns // max(1, len(self.slice_ns))
            gaps = [1_000_000_000, slice_len // 10]
            lead = self.params.end_ns - self.sweep_ns
            if self.final_sweep and lead > 0:
                # at least five sweep takes fit before the end: with one or two slices a tenth of a
                # slice is as long as the sweep lead, and a sweep cut short by the depth it met was
                # never retried
                gaps.append(lead // 5)
            self._retry_ns = max(1, min(gaps))
        for t in sorted(set(self.slice_ns)):
            self._at(t)
        if self.final_sweep:
            self._at(self.sweep_ns)
        self._at(self.params.end_ns)
        self.ctx.log_event("algo_schedule", algo=self.name, slice_ns=self.slice_ns,
                           cum_targets=self.cum_targets)

    def _validate_plan(self) -> None:
        if len(self.slice_ns) != len(self.cum_targets) or not self.slice_ns:
            raise InvariantError(f"{self.name}: plan has {len(self.slice_ns)} times and "
                                 f"{len(self.cum_targets)} targets")
        if self.cum_targets[-1] != self.parent_lots:
            raise InvariantError(f"{self.name}: schedule sums to {self.cum_targets[-1]}, "
                                 f"parent is {self.parent_lots}")
        if any(b < a for a, b in zip(self.cum_targets, self.cum_targets[1:], strict=False)):
            raise InvariantError(f"{self.name}: cumulative targets decrease")
        if any(b < a for a, b in zip(self.slice_ns, self.slice_ns[1:], strict=False)):
            raise InvariantError(f"{self.name}: slice times decrease")

    def slice_lots(self) -> list[int]:
        """Per-slice lots (differences of the cumulative targets); they sum to the parent."""
        prev, out = 0, []
        for c in self.cum_targets:
            out.append(c - prev)
            prev = c
        return out

    def _replan(self) -> None:
        # after an amend: rescale the remaining cumulative targets to the new parent
        if not self.cum_targets:
            return
        k = max(0, self._last_slice)
        before = self.cum_targets[k - 1] if k > 0 else 0
        done = min(before, self.parent_lots)
        prev = [before, *self.cum_targets[k:-1]]
        weights = [b - a for a, b in zip(prev, self.cum_targets[k:], strict=True)]
        tail = split_exact(self.parent_lots - done, weights)
        self.cum_targets = [min(c, done) for c in self.cum_targets[:k]] + [done + t for t in tail]
        self._validate_plan()

    # ------------------------------------------------------------------ market volume
    def market_volume_ex_own(self) -> int:
        """Public volume traded in the window, minus our own fills when the feed carries them."""
        own = self.filled_lots if self.ctx.own_trades_in_feed else 0
        return max(0, self._market_lots - own)

    def _count_trade(self, trade: TradeTick) -> None:
        now = self.ctx.clock.now_ns()
        if self.params.start_ns <= now < self.params.end_ns:
            self._market_lots += trade.lots

    def _on_trade(self, trade: TradeTick) -> None:
        self._check_would()
        short = self._cap_short
        if short > 0:   # (called only while running)
            room = self.participation_room()
            # act in steps (5 % of the parent, at least the minimum child), not on every trade
            step = min(short, max(self.params.min_child_lots, self.parent_lots // 20))
            if room is not None and room >= step:
                self._reconcile(self.ctx.clock.now_ns())

    def end_reason(self, remaining_lots: int) -> str:
        """The base reason, plus the participation cap when it is what held the order back: it
        allows less than the remainder (a 2 % cap on a parent larger than 2 % of the volume)."""
        why = super().end_reason(remaining_lots)
        room = self.participation_room()
        if room is not None and room < remaining_lots and self.max_participation is not None:
            ctx = self.ctx
            why += (f"; held back by max_participation {self.max_participation:g} (market volume "
                    f"{ctx.lot_size * self.market_volume_ex_own()} since the start, of which "
                    f"{ctx.lot_size * (self.committed_lots() + room)} allowed)")
        return why

    def participation_room(self) -> int | None:
        """Lots that may still be committed under ``max_participation`` (None = no cap)."""
        if self._cap_ratio is None:
            return None
        num, den = self._cap_ratio
        cap = self.market_volume_ex_own() * num // den   # exact floor (0.29 x 100 is 29, not 28)
        return max(0, cap - self.committed_lots())

    # ------------------------------------------------------------------ following
    def _on_time(self, ts_ns: int) -> None:
        # a live clock calls back with the time the alert was set for, which is in the past when it
        # fires late (or when the window started before the order): the schedule follows the
        # clock, never an earlier time (a stale time stepped back to an earlier slice, and the next
        # event started the later slices again: their urgency takes and IS re-plans ran twice)
        self._reconcile(max(ts_ns, self.ctx.clock.now_ns()))

    def take_retry_ns(self) -> int:
        return self._retry_ns if self._retry_ns is not None else 1_000_000_000

    def current_slice(self, now_ns: int) -> int:
        """Index of the slice in force at ``now_ns`` (-1 before the first)."""
        return bisect.bisect_right(self.slice_ns, now_ns) - 1

    def _take_allowed(self, now_ns: int) -> bool:
        last = self._last_take_ns
        assert self._retry_ns is not None
        if last is not None and now_ns - last < self._retry_ns:
            due = last + self._retry_ns
            if self._retry_at != due:  # one pending retry alert, not one per call
                self._retry_at = due
                self._at(due)
            return False
        return not any(c.request.style == "take" for c in self.open_children())

    def _take(self, lots: int, now_ns: int, reason: str) -> None:
        if lots <= 0 or self.params.passive_only or not self._take_allowed(now_ns):
            return
        room = None if reason == "sweep" else self.participation_room()   # the sweep ignores the cap
        if room is not None and room < lots:
            self._cap_short = max(self._cap_short, lots - room)
            lots = room
        if lots > 0 and self._send(lots, style="take", reason=reason) is not None:
            self._last_take_ns = now_ns

    def _reconcile(self, now_ns: int) -> None:
        self._cap_short = 0
        if not self._in_window(now_ns):
            return
        if self.final_sweep and now_ns >= self.sweep_ns:
            # "capped": the same sweep within the participation cap (reason "final" is capped)
            reason = "final" if self.final_sweep == "capped" else "sweep"
            if self._sweep_at_limit(now_ns, reason):
                return
            for c in self._resting():
                # the slices' posts (and the sweep's own posts at the limit, now that it can take);
                # a passive-only sweep's own posts keep their place in the queue (they were
                # cancelled and re-posted, larger, each time the cap opened more room)
                if c.request.reason != reason or not self.params.passive_only:
                    self._cancel(c.child_id)
            self._take(self.parent_lots - self.filled_lots, now_ns, reason)
            if self.params.passive_only:  # no takes allowed: keep the remainder posted
                self._post_upto(self.parent_lots, reason=reason)
            return
        if self.would_active():
            self._check_would()
            return
        k = self.current_slice(now_ns)
        if k < 0:
            return
        started = k != self._last_slice
        if started:
            for j in range(self._last_slice + 1, k + 1):
                self._slice_started(j)
            self._last_slice = k
            self._reprice()
        due = self.cum_targets[k]
        behind_ref = self.cum_targets[k - 1] if k > 0 else 0
        lag = behind_ref - self.filled_lots
        if lag > self.catchup_tolerance * self.parent_lots and self._catchup_can_go(lag, now_ns):
            if self._resting():
                # take once the cancels land (child done -> reconcile): the posts still hold the
                # quantity and the venue still holds their funds, so a take sent now is cut short
                # and the post re-sent, over and over while the venue's balance is the limit
                self._cancel_open(styles=("post", "mixed"))
                return
            self._take(lag, now_ns, "catchup")
        elif started and self.params.urgency and not self.params.passive_only and self.slice_style == "post" \
                and self.limit_allows_take():
            # (not while the far touch is beyond the limit: the take could not fill; the share is
            # posted with the rest of the slice)
            # urgency: that share of the new slice is taken at once, the rest posted as usual
            # (not what the earlier slices' posts still hold: nothing is committed twice)
            num, den = rate_ratio(self.params.urgency)
            urgent = min((due - behind_ref) * num // den, due - self.filled_lots - self.open_lots())
            self._take(urgent, now_ns, "urgency")
        self._post_upto(due, reason="slice")

    def _sweep_at_limit(self, now_ns: int, reason: str) -> bool:
        """The sweep while the far touch is beyond the parent limit (a take cannot fill): rather
        than cancel the posts and send IOCs that come back empty, the remainder rests at the limit
        itself, the most a buyer pays (least a seller takes) without crossing; posts elsewhere are
        moved there. Re-checked every ``retry``: once the market is back within the limit the
        sweep takes as usual. False (nothing done) when takes can go, or with no limit or
        ``passive_only`` (those keep the plain sweep)."""
        limit = self.limit_ticks
        if limit is None or self.params.passive_only or self.limit_allows_take():
            return False
        if self.far_touch() is None:
            return False   # no book at all: the plain sweep (its takes find nothing either way)
        for c in self._resting():
            if c.request.style != "post" or c.request.limit_ticks != limit:
                self._cancel(c.child_id)
        want = self.parent_lots - self.filled_lots - self.open_lots()
        room = None if reason == "sweep" else self.participation_room()
        if room is not None and room < want:
            self._cap_short = max(self._cap_short, want - room)
            want = room
        if want > 0 and not any(c.cancel_requested for c in self._resting()):
            self._send(want, style="post", limit_ticks=limit, reason=reason)
        assert self._retry_ns is not None
        due = now_ns + self._retry_ns
        if self._retry_at is None or self._retry_at <= now_ns:
            self._retry_at = due
            self._at(due)
        return True

    def _catchup_can_go(self, lag: int, now_ns: int) -> bool:
        """Whether a catch-up take of ``lag`` lots could leave now, once the posts are cancelled:
        takes allowed (not passive-only, the far touch within the parent limit, ``retry_ns``
        passed, no take open), room under the participation cap, and not below the minimum child
        unless it is the whole remainder. Otherwise the posts keep working: cancelling them for a
        take that cannot go (or cannot fill) only re-posts them, and the order loses its place in
        the queues each time."""
        if self.params.passive_only or not self.limit_allows_take() or not self._take_allowed(now_ns):
            return False
        room = self.participation_room()
        lots = lag if room is None else min(lag, room)
        return lots > 0 and (lots >= self.params.min_child_lots or lots >= self.parent_lots - self.filled_lots)

    def _resting(self) -> list[ChildRecord]:
        """The open children that rest in a book: posts and mixed slices."""
        return [c for c in self.open_children() if c.request.style in ("post", "mixed")]

    def _post_upto(self, due: int, *, reason: str) -> None:
        want = due - self.filled_lots - self.open_lots()
        if want <= 0:
            return
        if any(c.cancel_requested for c in self._resting()):
            return  # wait for the cancels to land before re-posting
        room = None if reason == "sweep" else self.participation_room()   # the sweep ignores the cap
        if room is not None and room < want:
            self._cap_short = max(self._cap_short, want - room)
            want = room
        if want <= 0:
            return
        if self.slice_style == "mixed" and reason == "slice" and not self.params.passive_only:
            cid = self._send(want, style="mixed", reason=reason)
            if cid is not None:
                self._mixed_ref[cid] = self.passive_price()
        else:
            self._send(want, style="post", reason=reason)

    def _reprice(self) -> None:
        """Cancel resting posts that are no longer at the passive price, and mixed slices sent
        when the near touch was elsewhere (re-sent on done)."""
        target = self.passive_price()
        if target is None:
            return
        for c in self._resting():
            at = c.request.limit_ticks if c.request.style == "post" else self._mixed_ref.get(c.child_id)
            if at != target:
                self._cancel(c.child_id)

    def _on_child_done(self, rec: ChildRecord) -> None:
        self._mixed_ref.pop(rec.child_id, None)
        self._reconcile(self.ctx.clock.now_ns())
