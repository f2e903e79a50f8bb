"""POV re-prices a post the near touch has moved away from (algos/pov.py ``_reprice_posts``).

Before: a post stayed at its first price for the order's whole life; once the bid rose past it,
it sat out of the market until the order fell behind its floor and the catch-up paid the spread.
"""

from __future__ import annotations

from algos_fakes import FakeContext

from algos.params import CommonParams
from algos.pov import PovAlgo
from marketdata.clock import SimClock
from marketdata.model import Side

S = 1_000_000_000
MS = 1_000_000
T0 = 1_723_161_255_000_000_000


def _posted(side: Side = Side.BUY, limit: int | None = None) -> tuple[FakeContext, PovAlgo]:
    ctx = FakeContext(SimClock(T0), side=side, parent_lots=100_000, parent_limit=limit)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S, min_child_lots=200, limit_ticks=limit), target_rate=0.1,
                   min_rate=0.0, catchup_threshold=1.0)
    ctx.start(algo)
    ctx.run_to(T0 + S // 2)
    assert [(c.request.style, c.request.limit_ticks) for c in algo.open_children()] == [
        ("post", 9_999 if side is Side.BUY else 10_001)]
    return ctx, algo


def _posts(algo: PovAlgo) -> list[tuple[int | None, int]]:
    return [(c.request.limit_ticks, c.request.lots) for c in algo.open_children("post")]


def test_pov_reprices_a_post_left_behind_by_a_rising_bid() -> None:
    """Failed before (the post stayed at 9,999). The bid moves up 50 ticks: at the next check the
    post is cancelled, and once the cancel lands it is re-posted, same size, at the new bid, where
    the sellers' prints fill it."""
    ctx, algo = _posted()
    ctx.bid, ctx.ask = 10_049, 10_051
    ctx.run_to(T0 + S)   # the check
    assert [c.cancel_requested for c in algo.open_children("post")] == [True]
    assert not [c for c in ctx.children.values() if c.request.limit_ticks == 10_049]   # not before the cancel
    ctx.run_to(T0 + S + 5 * MS)
    assert _posts(algo) == [(10_049, 200)]
    assert [k for k, _ in ctx.events if k == "pov_reprice"] == ["pov_reprice"]
    ctx.trade(10_049, 200)
    assert algo.filled_lots == 200 and not ctx.violations


def test_pov_reprices_a_sell_post_left_behind_by_a_falling_ask() -> None:
    ctx, algo = _posted(Side.SELL)
    ctx.bid, ctx.ask = 9_940, 9_950
    ctx.run_to(T0 + S + 5 * MS)
    assert _posts(algo) == [(9_950, 200)] and not ctx.violations


def test_pov_keeps_a_post_at_or_ahead_of_the_touch() -> None:
    """A post at the touch, or ahead of it (the bid dropped below it: it is the best bid), keeps
    its queue place: no cancel at any check."""
    ctx, algo = _posted()
    ctx.run_to(T0 + 3 * S)
    ctx.bid = 9_990
    ctx.run_to(T0 + 6 * S)
    assert len(ctx.children) == 1 and not [c for c in ctx.children.values() if c.status is not None]
    assert _posts(algo) == [(9_999, 200)]


def test_pov_reprices_up_to_the_limit_and_no_further() -> None:
    """A buy limited at 10,000: the bid rises to 10,100, so the post moves from 9,999 to the limit
    (the passive price clamped), and then stays there at every check."""
    ctx, algo = _posted(limit=10_000)
    ctx.bid, ctx.ask = 10_100, 10_101
    ctx.run_to(T0 + S + 5 * MS)
    assert _posts(algo) == [(10_000, 200)]
    ctx.run_to(T0 + 10 * S)
    assert _posts(algo) == [(10_000, 200)]
    assert len(ctx.children) == 2 and not ctx.violations
