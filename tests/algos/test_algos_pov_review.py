"""Review of POV (algos/pov.py): each test marked "failed before" failed before its fix."""

from __future__ import annotations

from algos_fakes import FakeContext

from algos.params import CommonParams
from algos.pov import PovAlgo
from marketdata.clock import SimClock
from marketdata.model import Side

S = 1_000_000_000
MS = 1_000_000
T0 = 1_723_161_255_000_000_000


def _behind_with_a_resting_post(parent_lots: int = 100_000) -> tuple[FakeContext, PovAlgo]:
    """A 200-lot minimum child rests from the start; others trade 2,000 lots at the ask (never our
    bid): V 2,000, filled 0, below the floor of 100 but committed 200, so no re-plan on the trade;
    the 1 s check finds the order behind by a shortfall of 200 (the minimum child)."""
    ctx = FakeContext(SimClock(T0), parent_lots=parent_lots)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S, min_child_lots=200), target_rate=0.1, min_rate=0.05,
                   max_rate=0.15, catchup_threshold=1.0)
    ctx.start(algo)
    ctx.run_to(T0 + S // 2)
    assert [(c.request.style, c.request.lots) for c in algo.open_children()] == [("post", 200)]
    assert ctx.ask is not None
    ctx.trade(ctx.ask, 2_000, aggressor=Side.BUY)
    return ctx, algo


def test_pov_catchup_waits_for_its_cancels_and_never_overshoots_max_rate() -> None:
    """Failed before. The catch-up cancelled the post and sent the whole shortfall as a take in
    the same step: the post (still open until its cancel landed) filled meanwhile, and the take
    filled too, 400 lots against a ceiling of 15 % x 2,200 = 330. It now waits for the cancel to
    land (as the schedules do: the venue also holds the post's funds until then) and takes the
    shortfall left after whatever the post filled."""
    ctx, algo = _behind_with_a_resting_post()
    ctx.run_to(T0 + S)   # the check: behind
    assert not [c for c in ctx.children.values() if c.request.style == "take"], "take sent before the cancel"
    assert all(c.cancel_requested for c in algo.open_children("post"))
    ctx.run_to(T0 + S + MS // 2)
    assert ctx.bid is not None
    ctx.trade(ctx.bid, 200)   # others sell 200 at our bid before the cancel lands: the post fills
    ctx.run_to(T0 + S + 5 * MS)
    vol = algo.market_volume_ex_own()
    assert vol == 2_200 and algo.filled_lots == 200
    assert algo.filled_lots <= vol * 15 // 100
    assert not [c for c in ctx.children.values() if c.request.style == "take"]   # no longer behind
    assert not ctx.violations


def test_pov_catchup_takes_once_the_cancel_lands() -> None:
    """Failed before (the take went with the cancel). The cancel lands (the post unfilled): the
    shortfall is then taken at once, in one take, and the order is back in the book."""
    ctx, algo = _behind_with_a_resting_post()
    ctx.run_to(T0 + S)
    ctx.run_to(T0 + S + MS)    # the cancel lands -> the take is sent
    takes = [c for c in ctx.children.values() if c.request.style == "take"]
    assert [(c.request.lots, c.request.reason, (c.sent_ns - T0) // MS) for c in takes] == [(200, "catchup", 1001)]
    ctx.run_to(T0 + S + 3 * MS)
    assert algo.filled_lots == 200
    assert algo.open_children("post")   # re-posted after the take
    assert not ctx.violations


def test_pov_catchup_never_exceeds_the_parent_with_posts_open() -> None:
    """The base's accounting: a catch-up (before or after the fix) never commits more than the
    parent minus filled minus every open child, so even when the post fills before its cancel
    lands the parent is never exceeded."""
    ctx, algo = _behind_with_a_resting_post(parent_lots=300)
    ctx.run_to(T0 + S)
    ctx.run_to(T0 + S + MS // 2)
    assert ctx.bid is not None
    ctx.trade(ctx.bid, 200)
    for i in range(2, 30):
        ctx.run_to(T0 + i * S)
        ctx.trade(ctx.ask, 2_000, aggressor=Side.BUY)   # type: ignore[arg-type]
    assert algo.filled_lots == ctx.filled_lots() <= 300
    assert all(c.request.lots <= 300 for c in ctx.children.values())
    assert not ctx.violations


def test_pov_catchup_retries_when_retry_ns_has_passed_not_at_the_next_check() -> None:
    """Failed before. A catch-up take that found no liquidity: the next one waits retry_ns
    (1.5 s), and then goes; it went only at the first check after that (3 s, with check_ns 1 s),
    and with the take now leaving once the cancels land, a retry_ns equal to check_ns lost a
    whole interval the same way."""
    ctx = FakeContext(SimClock(T0), parent_lots=100_000)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S), target_rate=0.1, catchup_threshold=0.0, retry_ns=3 * S // 2)
    ctx.start(algo)
    ctx.depth = 0
    ctx.run_to(T0 + S)
    assert ctx.ask is not None
    ctx.trade(ctx.ask, 5_000, aggressor=Side.BUY)
    ctx.run_to(T0 + S + 100 * MS)
    sent = [(c.sent_ns - T0) // MS for c in ctx.children.values() if c.request.style == "take"]
    assert len(sent) == 1
    ctx.run_to(T0 + sent[0] * MS + 3 * S // 2 - 1)
    assert len([c for c in ctx.children.values() if c.request.style == "take"]) == 1   # not before retry_ns
    ctx.run_to(T0 + sent[0] * MS + 3 * S // 2 + 5 * MS)
    again = [(c.sent_ns - T0) // MS for c in ctx.children.values() if c.request.style == "take"]
    assert len(again) == 2 and again[1] - sent[0] <= 1_502, again
    assert not ctx.violations


def test_pov_keeps_its_posts_while_the_market_is_beyond_the_limit() -> None:
    """Failed before. A buy limited at 10,000 with the ask at 10,001: others trade at the ask, the
    order falls behind, and every catch-up cancelled the post resting at the limit (its queue
    place lost) for an IOC take that could not fill: 12 cancels in 10 s. No take goes while the
    far touch is beyond the limit; the post stays. Once the ask comes within the limit the
    catch-up goes."""
    ctx = FakeContext(SimClock(T0), parent_lots=100_000, parent_limit=10_000)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=10_000), target_rate=0.1)
    ctx.start(algo)
    for i in range(1, 11):
        ctx.run_to(T0 + i * S - S // 2)
        ctx.trade(10_001, 1_000, aggressor=Side.BUY)
    ctx.run_to(T0 + 11 * S)
    assert not [c for c in ctx.children.values() if c.request.style == "take"]
    assert not [c for c in ctx.children.values() if c.status is not None], "a post was cancelled"
    assert algo.open_children("post")
    ctx.ask = 10_000
    ctx.run_to(T0 + 12 * S + 5 * MS)
    assert [c.request.reason for c in ctx.children.values() if c.request.style == "take"] == ["catchup"]
    assert algo.filled_lots >= 1_000 * 10 // 20 and not ctx.violations


def test_pov_urgency_take_is_net_of_the_open_posts() -> None:
    """Checked, not a bug: the urgency take is u x the shortfall capped at what is not yet
    committed (shortfall + lead - open posts - open takes), so the posts and the take never hold
    the same lots twice: after each check the order commits exactly its target plus the lead, and
    nothing passes the ceiling plus one minimum child."""
    ctx = FakeContext(SimClock(T0), parent_lots=100_000)
    algo = PovAlgo(CommonParams(T0, T0 + 600 * S, urgency=0.4), target_rate=0.1, min_rate=0.0, max_rate=0.3,
                   catchup_threshold=1.0)
    ctx.start(algo)
    assert ctx.ask is not None
    for sec in range(1, 6):
        for i in range(10):
            ctx.run_to(T0 + (sec - 1) * S + 10 * MS + i * S // 11)
            ctx.trade(ctx.ask, 100, aggressor=Side.BUY)
        ctx.run_to(T0 + sec * S + 5 * MS)   # the check, the urgency take filled
        vol = algo.market_volume_ex_own()
        posted = sum(c.open_lots for c in algo.open_children("post"))
        assert algo.filled_lots + posted == vol // 10 + algo.lead_lots, sec
        assert algo.filled_lots + algo.open_lots() <= vol * 3 // 10 + 1
    assert not ctx.violations


def test_pov_retry_interval_error_names_retry() -> None:
    """A non-positive retry_ns said ``check_interval`` (the other interval)."""
    import pytest

    from marketdata.errors import ConfigError

    with pytest.raises(ConfigError, match="retry"):
        PovAlgo(CommonParams(T0, T0 + 600 * S), target_rate=0.1, retry_ns=0)
    with pytest.raises(ConfigError, match="check_interval"):
        PovAlgo(CommonParams(T0, T0 + 600 * S), target_rate=0.1, check_ns=0)
