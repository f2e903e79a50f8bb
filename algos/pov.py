"""POV (percentage of volume): trade a target share of the market volume as it happens.

Market volume is the sum of public trades of the symbol seen by ``on_trade`` since ``start``,
minus this order's own fills when the feed carries them (``ctx.own_trades_in_feed``): our own
prints never raise our own target, so there is no feedback loop. With ``V`` that volume and ``F``
our filled lots:

* target ``target_rate * V``; floor ``min_rate * V``; ceiling ``max_rate * V``;
* ahead (``F > max_rate * V``): cancel the posts and send nothing (paused) until volume catches up;
* behind (``F < min_rate * V`` or target minus ``F`` above ``catchup_threshold`` of the parent):
  cancel posts and, once the cancels have landed, take the shortfall (within the limit), one
  take at a time; after a take that did not fill completely the next waits ``retry_ns`` (the
  posts keep working meanwhile), after one that filled it need not (a burst right after it is
  caught up at once); no take (catch-up or urgency) while the far touch is beyond the limit;
* at each check, posts left behind by the near touch (buy: below the best bid) are re-priced:
  cancelled, and re-posted at the touch once the cancels land;
* otherwise post the shortfall at the near touch, at least ``min_child_lots`` (so that the
  order is present in the book before volume arrives), never committing more than the ceiling
  plus that one child; with ``urgency`` u > 0, u x the shortfall is taken at once instead (when
  no take is open) and the rest posted; with ``slice_style = "mixed"`` the child goes as one
  ``mixed`` child instead, split by the router (its urgency split or Cont-Kukanov).

It re-evaluates every ``check_ns`` (default 1 s), and at once on a trade that leaves it below its
floor (filled plus open below ``min_rate * V``) or above its ceiling; it does not sweep: at ``end``
the remainder is reported.
"""

from __future__ import annotations

from algos.base import ChildRecord, ChildStyle, ExecutionAlgo
from algos.params import CommonParams, rate_ratio
from algos.schedule import SliceStyle, parse_slice_style
from marketdata.errors import ConfigError
from marketdata.model import TradeTick

__all__ = ["PovAlgo", "pov_rates"]


def pov_rates(target_rate: float, min_rate: float | None, max_rate: float | None) -> tuple[float, float]:
    """The (min, max) rates with their defaults (target/2, min(1, 1.5 x target)), checked:
    each in range and ``min_rate <= target_rate <= max_rate``; ConfigError naming the key."""
    lo = target_rate / 2 if min_rate is None else min_rate
    hi = min(1.0, target_rate * 1.5) if max_rate is None else max_rate
    for key, v, low_open in (("target_rate", target_rate, True), ("min_rate", lo, False),
                             ("max_rate", hi, True)):
        if not ((v > 0 if low_open else v >= 0) and v <= 1):
            raise ConfigError(f"{v}", key=key, allowed="(0, 1]" if low_open else "[0, 1]")
    if not lo <= target_rate <= hi:
        key = "max_rate" if target_rate > hi else "min_rate"
        raise ConfigError(f"min {lo} <= target {target_rate} <= max {hi} does not hold",
                          key=key, allowed="min_rate <= target_rate <= max_rate")
    return lo, hi


class PovAlgo(ExecutionAlgo):
    """Participation algo; rates are fractions in (0, 1]."""

    name = "pov"

    def __init__(self, params: CommonParams, *, target_rate: float, min_rate: float | None = None,
                 max_rate: float | None = None, catchup_threshold: float = 0.02,
                 check_ns: int = 1_000_000_000, retry_ns: int = 1_000_000_000,
                 slice_style: SliceStyle = "post") -> None:
        super().__init__(params)
        self.slice_style = parse_slice_style(slice_style)
        lo, hi = pov_rates(target_rate, min_rate, max_rate)
        if not 0 <= catchup_threshold <= 1:
            raise ConfigError(f"{catchup_threshold}", key="catchup_threshold", allowed="[0, 1]")
        for key, ns in (("check_interval", check_ns), ("retry", retry_ns)):
            if ns <= 0:
                raise ConfigError(f"{ns} ns", key=key, allowed="> 0")
        self.target_rate, self.min_rate, self.max_rate = target_rate, lo, hi
        # exact ratios: ``vol * num // den`` is the exact floor of rate x volume
        self._target_q, self._min_q, self._max_q = rate_ratio(target_rate), rate_ratio(lo), rate_ratio(hi)
        self._urgency_q = rate_ratio(params.urgency) if params.urgency else (0, 1)
        self.catchup_threshold = catchup_threshold
        self.check_ns = check_ns
        self.retry_ns = retry_ns
        self._market_lots = 0
        self._last_take_ns: int | None = None
        self._last_take_filled = False
        self._retry_at: int | None = None
        self.paused_ahead = False
        # volume at the last lead update (time, V) and the lead: target x the volume expected over
        # the next check interval, posted on top of the shortfall (see _reconcile)
        self._vol_mark: tuple[int, int] | None = None
        self.lead_lots = 0

    def market_volume_ex_own(self) -> int:
        own = self.filled_lots if self.ctx.own_trades_in_feed else 0
        return max(0, self._market_lots - own)

    def _begin(self) -> None:
        p = self.params
        self._track(p.end_ns, self.ctx.clock.set_timer(self.check_ns, self._fire, start_ns=p.start_ns,
                                                       stop_ns=p.end_ns))
        self._at(p.end_ns)

    def _count_trade(self, trade: TradeTick) -> None:
        now = self.ctx.clock.now_ns()
        if self.params.start_ns <= now < self.params.end_ns:
            self._market_lots += trade.lots

    def _on_trade(self, trade: TradeTick) -> None:
        now = self.ctx.clock.now_ns()
        if self.params.start_ns <= now < self.params.end_ns:
            # Re-plan at once only when the order fell below its floor (a catch-up is due) or went
            # above its ceiling (posts must come down); otherwise the check timer re-posts, so the
            # order is not re-sized on every print (thousands of tiny children on a busy tape).
            vol = self.market_volume_ex_own()
            committed = self.filled_lots + self.open_lots()
            if (committed < vol * self._min_q[0] // self._min_q[1]
                    or self.filled_lots > vol * self._max_q[0] // self._max_q[1]):
                self._reconcile(now)

    def _on_book(self) -> None:
        self._check_would()

    def _on_time(self, ts_ns: int) -> None:
        # at a check (and the retry/end alerts): posts the near touch has moved away from are
        # re-priced before the re-plan (cancelled here, re-posted at the touch once the cancels
        # land), so a post left behind a rising bid does not sit out of the market until the
        # order falls behind and the catch-up takes
        # a live clock calls back with the time the alert was set for (in the past when it fires
        # late): follow the clock, never an earlier time (as the schedules do)
        now = max(ts_ns, self.ctx.clock.now_ns())
        if self.params.start_ns <= now < self.params.end_ns:
            # (at the end alert the re-plan finishes the order: no re-post would follow a cancel)
            self._reprice_posts()
        self._reconcile(now)

    def _reprice_posts(self) -> None:
        """Cancel open posts strictly behind the passive price (buy: below the near touch,
        clamped to the limit). A post at the touch, or ahead of it (buy: above the best bid: it
        is the best bid), keeps its queue place; a post at the limit while the touch is beyond it
        stays too (the passive price is the limit)."""
        if self.paused_ahead:
            return
        target = self.passive_price()
        if target is None:
            return
        behind = [c for c in self._ledger.open.values()
                  if c.request.style == "post" and not c.done and not c.cancel_requested
                  and c.request.limit_ticks is not None and c.request.limit_ticks != target
                  and self.better_or_equal(c.request.limit_ticks, target)]
        if behind:
            self.ctx.log_event("pov_reprice", algo=self.name, children=[c.child_id for c in behind],
                               from_ticks=[c.request.limit_ticks for c in behind], to_ticks=target)
            for c in behind:
                self._cancel(c.child_id)

    def _on_child_done(self, rec: ChildRecord) -> None:
        if rec.request.style == "take":
            # a catch-up that filled completely found the liquidity: the next one need not wait
            # retry_ns (a burst of volume right after it is caught up at once)
            self._last_take_filled = rec.filled_lots >= rec.request.lots
        self._reconcile(self.ctx.clock.now_ns())

    def take_retry_ns(self) -> int:
        return self.retry_ns

    def _take_rested(self, now_ns: int) -> bool:
        """A take may go now: none yet, the last one filled completely, or ``retry_ns`` passed."""
        last = self._last_take_ns
        return last is None or self._last_take_filled or now_ns - last >= self.retry_ns

    def _reconcile(self, now_ns: int) -> None:
        if not self._in_window(now_ns):
            return
        if self.would_active():
            # the would take holds the remainder (as in the schedules): a participation post sent
            # here was cancelled by _check_would in the same re-plan (post, cancel and take at
            # every re-plan while the would take found a thin book)
            self._check_would()
            return
        p = self.params
        vol = self.market_volume_ex_own()
        filled = self.filled_lots
        target = vol * self._target_q[0] // self._target_q[1]
        ceiling = vol * self._max_q[0] // self._max_q[1]
        if filled > ceiling:
            if not self.paused_ahead:
                self.paused_ahead = True
                self.ctx.log_event("pov_ahead", algo=self.name, filled_lots=filled, ceiling_lots=ceiling)
            self._cancel_open(styles=("post", "mixed"))
            return
        self.paused_ahead = False
        mark = self._vol_mark
        if mark is None:
            self._vol_mark = (now_ns, vol)
        elif now_ns - mark[0] >= self.check_ns:
            # the volume of the last interval, per check interval, at the target rate
            rate = (vol - mark[1]) * self.check_ns // (now_ns - mark[0])
            self.lead_lots = max(0, rate * self._target_q[0] // self._target_q[1])
            self._vol_mark = (now_ns, vol)
        shortfall = target - filled
        floor = vol * self._min_q[0] // self._min_q[1]
        behind = filled < floor or shortfall > self.catchup_threshold * self.parent_lots
        open_takes = open_posts = 0   # open lots of takes, and of resting children (posts, mixed)
        resting = cancelling = False   # a resting child is open / is being cancelled
        for c in self._ledger.open.values():   # one pass
            if c.done:
                continue
            if c.request.style == "take":
                open_takes += c.open_lots
            else:
                resting = True
                open_posts += c.open_lots
                cancelling = cancelling or c.cancel_requested
        rested = self._take_rested(now_ns)
        # no take while the far touch is beyond the limit (or absent): it cannot fill, and a
        # catch-up for it cancelled the posts, resting at the limit, every retry_ns
        takeable = not p.passive_only and not open_takes and self.limit_allows_take()
        may_take = takeable and rested
        # a catch-up below the minimum child (unless it is the remainder) cannot be sent: keep the
        # posts rather than cancel them for nothing (the order would leave the book)
        sendable = shortfall >= p.min_child_lots or shortfall >= self.parent_lots - filled
        if behind and shortfall > 0 and sendable and takeable and not rested:
            # the catch-up waits out retry_ns: re-plan when it has passed (one alert), not at the
            # first check after it (the take leaves once the posts' cancels land, so counted from
            # its send, retry_ns ran out just after a check and the catch-up lost a whole interval)
            assert self._last_take_ns is not None
            due = self._last_take_ns + self.retry_ns
            if self._retry_at != due:
                self._retry_at = due
                self._at(due)
        if behind and shortfall > 0 and may_take and sendable:
            if resting:
                # take once the cancels land (child done -> reconcile), sized then: until they
                # land the posts can still fill (a take sent now on top of them overshot the
                # target and the ceiling) and the venue still holds their funds (the take is cut
                # short when the balance is the limit), as in the schedules
                self._cancel_open(styles=("post", "mixed"))
                return
            if self._send(shortfall, style="take", reason="catchup") is not None:
                self._last_take_ns = now_ns
            return
        # behind with a take in flight or sent less than retry_ns ago: the posts keep working
        # meanwhile (sized net of the take still open)
        # posts sized to the shortfall alone fill only after the volume has printed, so the order
        # ran 15-30 % below its target; the lead (target x the last interval's volume) keeps it
        # level, and the ceiling still caps everything committed
        want = max(shortfall + self.lead_lots, p.min_child_lots) - open_posts - open_takes
        want = min(want, ceiling + p.min_child_lots - filled - self.open_lots())
        if want > 0 and not cancelling:
            if p.urgency and may_take and shortfall > 0 and self.slice_style == "post":
                # urgency: that share of the shortfall is taken at once (never the lead: volume
                # that has not printed yet), the rest posted
                num, den = self._urgency_q
                urgent = min(want, shortfall * num // den)
                if urgent > 0 and self._send(urgent, style="take", reason="urgency") is not None:
                    self._last_take_ns = now_ns
                    want -= urgent
            if want > 0:
                # a mixed child: the router splits it between taking now and posting
                style: ChildStyle = "mixed" if self.slice_style == "mixed" and not p.passive_only else "post"
                self._send(want, style=style, reason="participate")
        self._check_would()
