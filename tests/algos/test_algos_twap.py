"""TWAP and the schedule machinery: exact slicing, seeds, catch-up, sweep, limits, remainder."""

from __future__ import annotations

import random

import pytest
from algos_fakes import FakeContext
from hypothesis import given, settings
from hypothesis import strategies as st

from algos.base import AlgoStatus, ChildRequest
from algos.params import CommonParams
from algos.schedule import split_exact
from algos.twap import TwapAlgo
from marketdata.clock import SimClock
from marketdata.errors import ConfigError
from marketdata.model import Side

S = 1_000_000_000
T0 = 1_723_161_255_000_000_000


@given(st.integers(0, 10**7), st.lists(st.integers(0, 1000), min_size=1, max_size=60))
def test_split_exact_sums_exactly(total: int, weights: list[int]) -> None:
    cum = split_exact(total, weights)
    assert cum[-1] == total
    slices = [b - a for a, b in zip([0, *cum[:-1]], cum, strict=True)]
    assert all(s >= 0 for s in slices)
    assert sum(slices) == total
    if sum(weights):
        # every slice is within one lot of its exact proportional share
        for w, s in zip(weights, slices, strict=True):
            assert abs(s - total * w / sum(weights)) < 1 + 1e-9


def _twap(seed: int = 1, *, lots: int = 1000, slices: int = 10, limit: int | None = None, urgency: float = 0.0,
          **kw: object) -> tuple[FakeContext, TwapAlgo]:
    clock = SimClock(T0)
    ctx = FakeContext(clock, parent_lots=lots, parent_limit=limit)
    algo = TwapAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=limit, seed=seed, urgency=urgency), slices=slices,
                    **kw)  # type: ignore[arg-type]
    ctx.start(algo)
    return ctx, algo


def test_schedule_sums_to_parent_and_is_seeded() -> None:
    _, a = _twap(seed=42, lots=1237, slices=9)
    assert sum(a.slice_lots()) == 1237 and a.cum_targets[-1] == 1237
    assert len(a.slice_ns) == 9 and a.slice_ns == sorted(a.slice_ns)
    assert all(T0 <= t < a.sweep_ns for t in a.slice_ns)
    assert len(set(a.slice_lots())) > 1  # randomised sizes
    _, b = _twap(seed=42, lots=1237, slices=9)
    _, c = _twap(seed=43, lots=1237, slices=9)
    assert (a.slice_ns, a.cum_targets) == (b.slice_ns, b.cum_targets)
    assert (a.slice_ns, a.cum_targets) != (c.slice_ns, c.cum_targets)


def _run_with_market(ctx: FakeContext, algo: TwapAlgo, seed: int, trade_every_ns: int = 5 * S) -> None:
    rng = random.Random(seed)
    t = T0
    while t < T0 + 600 * S and not algo.is_done:
        t += trade_every_ns
        ctx.run_to(t)
        if rng.random() < 0.5:
            ctx.trade(ctx.bid if rng.random() < 0.5 else ctx.bid - 1, rng.randint(1, 40))  # type: ignore[operator]
    ctx.run_to(T0 + 601 * S)


def test_same_seed_same_children() -> None:
    runs = []
    for _ in range(2):
        ctx, algo = _twap(seed=5)
        _run_with_market(ctx, algo, seed=99)
        runs.append([(c.sent_ns, c.request) for c in ctx.children.values()])
    assert runs[0] == runs[1] and len(runs[0]) > 10


def test_completes_by_end_with_final_sweep_when_posts_never_fill() -> None:
    ctx, algo = _twap(seed=3)
    ctx.run_to(T0 + 601 * S)  # no public trades: posts never fill, catch-up and sweep take
    assert algo.status is AlgoStatus.COMPLETED
    assert algo.filled_lots == 1000 == ctx.filled_lots()
    last_fill_ns = max(c.sent_ns for c in ctx.children.values())
    assert last_fill_ns < T0 + 600 * S
    reasons = {c.request.reason for c in ctx.children.values()}
    assert {"slice", "catchup"} <= reasons
    assert not ctx.violations


def test_passive_first_then_catchup_only_when_behind() -> None:
    ctx, algo = _twap(seed=3, catchup_tolerance=0.5)
    ctx.run_to(T0 + 200 * S)
    assert all(c.request.style == "post" for c in ctx.children.values())
    ctx.run_to(T0 + 601 * S)
    styles = [c.request.style for c in ctx.children.values()]
    assert "take" in styles and algo.status is AlgoStatus.COMPLETED


@pytest.mark.parametrize("urgency", [0.3, 0.5, 1.0])
def test_urgency_takes_that_share_of_each_slice_at_once(urgency: float) -> None:
    """Each slice's share ``floor(urgency x slice)`` is taken when the slice starts, the rest is
    posted; urgency 0 (the default) takes nothing until the order falls behind."""
    ctx, algo = _twap(seed=3, catchup_tolerance=0.5, urgency=urgency)
    slices = algo.slice_lots()
    ctx.run_to(T0 + 200 * S)
    started = [k for k, t in enumerate(algo.slice_ns) if t <= T0 + 200 * S]
    takes = [c.request.lots for c in ctx.children.values() if c.request.reason == "urgency"]
    num = round(urgency * 10)
    assert takes == [slices[k] * num // 10 for k in started], (takes, slices)
    assert all(c.request.style == "take" for c in ctx.children.values() if c.request.reason == "urgency")
    posted = sum(c.request.lots for c in ctx.children.values() if c.request.reason == "slice")
    assert posted == sum(slices[k] for k in started) - sum(takes)
    ctx.run_to(T0 + 601 * S)
    assert algo.status is AlgoStatus.COMPLETED and algo.filled_lots == 1000 and not ctx.violations
    _, plain = _twap(seed=3, catchup_tolerance=0.5)
    assert plain.params.urgency == 0.0


def test_mixed_slices_go_as_one_child_each_and_the_algo_takes_nothing_itself() -> None:
    """slice_style = "mixed": each slice is one mixed child (the router splits it; here the fake
    takes urgency x lots and rests the rest), the algo sends no urgency takes of its own, and the
    order completes with the usual catch-up and sweep."""
    ctx, algo = _twap(seed=3, catchup_tolerance=0.5, urgency=0.5, slice_style="mixed")
    slices = algo.slice_lots()
    ctx.run_to(T0 + 200 * S)
    started = [k for k, t in enumerate(algo.slice_ns) if t <= T0 + 200 * S]
    mixed = [c.request for c in ctx.children.values() if c.request.style == "mixed"]
    assert [r.lots for r in mixed][:1] == [slices[0]] and len(mixed) >= len(started)
    assert all(r.reason == "slice" and r.urgency == 0.5 for r in mixed)
    assert not [c for c in ctx.children.values() if c.request.reason == "urgency"]
    assert algo.filled_lots >= sum(slices[k] // 2 for k in started) - len(started)
    ctx.run_to(T0 + 601 * S)
    assert algo.status is AlgoStatus.COMPLETED and algo.filled_lots == 1000 and not ctx.violations


def test_mixed_slices_are_re_sent_when_the_touch_moves() -> None:
    ctx, algo = _twap(seed=3, catchup_tolerance=1.0, slice_style="mixed")
    ctx.run_to(T0 + 1)
    [first] = [c for c in ctx.children.values() if c.request.style == "mixed"]
    ctx.bid, ctx.ask = 10_009, 10_011          # the market moves up before the next slice
    ctx.run_to(algo.slice_ns[1] + 10_000_000)
    assert ctx.children[first.child_id].done    # cancelled at the slice boundary
    later = [c for c in ctx.children.values() if c.request.style == "mixed" and c.child_id != first.child_id]
    assert later and later[-1].rest_px == 10_009 and not ctx.violations


def test_slice_style_is_validated() -> None:
    with pytest.raises(ConfigError, match="slice_style"):
        _twap(slice_style="aggressive")


def test_limit_is_never_crossed_and_remainder_reported() -> None:
    # ask 10_001 above a buy limit of 10_000: takes cannot fill, sweep cannot complete
    ctx, algo = _twap(seed=8, limit=10_000)
    ctx.run_to(T0 + 601 * S)
    assert algo.status is AlgoStatus.FINISHED
    assert "unfilled" in (algo.finish_reason or "")
    assert algo.filled_lots == 0
    assert all(c.request.limit_ticks is not None and c.request.limit_ticks <= 10_000
               for c in ctx.children.values())
    assert not ctx.violations


def test_would_price_takes_the_remainder() -> None:
    clock = SimClock(T0)
    ctx = FakeContext(clock, parent_lots=500, ask=10_050)
    algo = TwapAlgo(CommonParams(T0, T0 + 600 * S, would_ticks=10_010), slices=10)
    ctx.start(algo)
    ctx.run_to(T0 + 30 * S)
    assert algo.filled_lots < 500
    ctx.ask = 10_005
    algo.on_book()
    ctx.run_to(T0 + 31 * S)
    assert algo.filled_lots == 500 and algo.status is AlgoStatus.COMPLETED
    assert any(c.request.reason == "would" and c.request.limit_ticks == 10_010 for c in ctx.children.values())


def test_passive_only_never_takes() -> None:
    clock = SimClock(T0)
    ctx = FakeContext(clock, parent_lots=300)
    algo = TwapAlgo(CommonParams(T0, T0 + 600 * S, passive_only=True), slices=6)
    ctx.start(algo)
    _run_with_market(ctx, algo, seed=4)
    assert ctx.children and all(c.request.style == "post" for c in ctx.children.values())


def test_pause_resume_cancel_amend() -> None:
    ctx, algo = _twap(seed=2)
    ctx.run_to(T0 + 70 * S)
    algo.pause()
    ctx.run_to(T0 + 71 * S)
    assert algo.status is AlgoStatus.PAUSED and not any(c.open for c in ctx.children.values())
    n = len(ctx.children)
    ctx.run_to(T0 + 200 * S)
    assert len(ctx.children) == n  # nothing sent while paused
    algo.resume()
    with pytest.raises(ConfigError, match=r"below the quantity already filled, \d+\.\d{3} \(allowed: >= "):
        algo.amend(quantity="0.001")   # below what is filled by now: refused, nothing changed
    assert algo.parent_lots == 1000
    algo.amend(quantity="0.5")  # 500 lots of 0.001
    assert algo.parent_lots == 500 and algo.cum_targets[-1] == 500
    ctx.run_to(T0 + 601 * S)
    assert algo.filled_lots == 500 and algo.status is AlgoStatus.COMPLETED
    assert ctx.filled_lots() == 500
    ctx2, algo2 = _twap(seed=2)
    ctx2.run_to(T0 + 100 * S)
    algo2.cancel()
    ctx2.run_to(T0 + 101 * S)
    assert algo2.status is AlgoStatus.CANCELLED and not any(c.open for c in ctx2.children.values())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), lots=st.integers(1, 5000), slices=st.integers(1, 30),
       unknown_s=st.sampled_from([0, 2, 40]), depth=st.integers(1, 400),
       limit=st.sampled_from([None, 10_000, 10_001, 10_002]), side=st.sampled_from([Side.BUY, Side.SELL]))
def test_invariants_under_random_markets(seed: int, lots: int, slices: int, unknown_s: int, depth: int,
                                         limit: int | None, side: Side) -> None:
    """Children never exceed the remainder, in-flight/unknown counted; limits never crossed; the
    ledger matches the fake engine; never overfilled."""
    clock = SimClock(T0)
    if side is Side.SELL and limit is not None:
        limit = 20_000 - limit  # mirror: sell limits at 9_998..10_000
    ctx = FakeContext(clock, side=side, parent_lots=lots, parent_limit=limit, depth=depth,
                      unknown_ns=unknown_s * S)
    algo = TwapAlgo(CommonParams(T0, T0 + 600 * S, limit_ticks=limit, seed=seed), slices=slices)
    ctx.start(algo)
    rng = random.Random(seed)
    t = T0
    while t < T0 + 620 * S:
        t += rng.randint(1, 20) * S
        ctx.run_to(t)
        if rng.random() < 0.6:
            px = (ctx.bid if side is Side.BUY else ctx.ask)
            assert px is not None
            ctx.trade(px - int(side) * rng.randint(0, 1), rng.randint(1, 200))
        assert algo.filled_lots <= lots
        assert algo.committed_lots() <= lots
    assert not ctx.violations, ctx.violations[:3]
    assert algo.filled_lots == ctx.filled_lots()
    assert algo.is_done
    if limit is None and unknown_s == 0 and depth >= lots:
        # without a limit and with liquidity the sweep always completes
        assert algo.status is AlgoStatus.COMPLETED
    if algo.status is AlgoStatus.FINISHED:
        assert algo.filled_lots < lots and "unfilled" in (algo.finish_reason or "")


def test_catchup_take_waits_for_the_posts_it_cancels() -> None:
    """Behind schedule with posts resting: the posts are cancelled first and the catch-up take goes
    out once the venue confirmed them, never beside a post still open (it would be cut short by
    the funds the post still holds, and the post re-sent: churn when the balance is the limit)."""
    ctx, algo = _twap(seed=3)
    beside: list[str] = []
    send = ctx.send_child

    def checked(request: ChildRequest) -> str:
        if request.reason == "catchup":
            beside.extend(c.child_id for c in ctx.children.values() if c.request.style == "post" and not c.done)
        return send(request)

    ctx.send_child = checked  # type: ignore[method-assign]
    ctx.run_to(T0 + 601 * S)   # no public trades: posts never fill, so the algo falls behind
    assert any(c.request.reason == "catchup" for c in ctx.children.values())
    assert beside == [], f"catch-up takes sent while posts {beside} were open"
    assert algo.status is AlgoStatus.COMPLETED and not ctx.violations
