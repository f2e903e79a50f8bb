"""Cont & Kukanov (2017) optimal market/limit split: the numerical optimum against the paper's
single-venue closed form, its corner cases, the sensitivities it states, multi-venue optimality
against simple policies on the same samples, the exact no-overbooking split against brute force,
determinism and rounding to lots."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.cont_kukanov import (
    EmpiricalOutflow,
    ExponentialOutflow,
    LognormalOutflow,
    OutflowModel,
    PlacementProblem,
    Split,
    VenueParams,
    cost_samples,
    empirical_ppf,
    expected_cost,
    filled_quantity,
    no_overbooking_split,
    optimal_split,
    round_to_lots,
    sample_gradient,
    sample_outflows,
    single_venue_closed_form,
    single_venue_threshold,
)

H, F = 0.005, 0.003  # half-spread and taker fee, price units per share


def one_venue(q: float, model: OutflowModel, *, r: float = 0.002, lu: float = 0.05,
              lo: float = 0.05, s: float = 10.0, h: float = H, f: float = F) -> PlacementProblem:
    return PlacementProblem(s, h, f, lu, lo, (VenueParams("x", q, model, r),))


def three_venues(*, q_a: float = 2.0, r_a: float = 0.002, lu: float = 0.02) -> PlacementProblem:
    return PlacementProblem(10.0, H, F, lu, 0.05, (
        VenueParams("a", q_a, ExponentialOutflow(10.0), r_a),
        VenueParams("b", 4.0, LognormalOutflow.from_mean_cv(12.0, 1.0), 0.003),
        VenueParams("c", 1.0, ExponentialOutflow(6.0), -0.001),
    ))


def _brute_force_no_overbooking(p: PlacementProblem, xi: np.ndarray) -> float:
    """The least sample-average cost over every integer (M, L_1..L_K) with M + sum L <= S."""
    s = int(p.target)
    best = np.inf
    for lims in itertools.product(range(s + 1), repeat=len(p.venues)):
        for m in range(s - sum(lims) + 1):
            best = min(best, expected_cost(p, float(m), [float(x) for x in lims], xi))
    return float(best)


# --------------------------------------------------------------------------- the objective
def test_cost_matches_hand_computed_scenarios() -> None:
    p = one_venue(3.0, ExponentialOutflow(10.0), r=0.002, lu=0.05, lo=0.07)
    xi = np.array([[0.0], [5.0], [20.0]])
    # X = (M=4, L=6): fills 0, 2, 6 -> A = 4, 6, 10
    v = cost_samples(p, 4.0, [6.0], xi)
    expected = [(H + F) * 4 + 0.05 * 6,
                (H + F) * 4 - (H + 0.002) * 2 + 0.05 * 4,
                (H + F) * 4 - (H + 0.002) * 6]
    assert v.tolist() == pytest.approx(expected)
    assert filled_quantity(p, 4.0, [6.0], xi).tolist() == [4.0, 6.0, 10.0]
    # overfill: X = (8, 6) with xi = 20 -> A = 14
    assert cost_samples(p, 8.0, [6.0], np.array([[20.0]]))[0] == pytest.approx(
        (H + F) * 8 - (H + 0.002) * 6 + 0.07 * 4)


def test_sample_gradient_matches_finite_differences() -> None:
    p = three_venues()
    xi = sample_outflows(p, 50_000, 11)
    x = np.array([3.0, 2.5, 4.0, 1.5])
    g = sample_gradient(p, float(x[0]), x[1:].tolist(), xi)
    eps = 1e-3
    for i in range(4):
        up, dn = x.copy(), x.copy()
        up[i] += eps
        dn[i] -= eps
        fd = (expected_cost(p, float(up[0]), up[1:].tolist(), xi)
              - expected_cost(p, float(dn[0]), dn[1:].tolist(), xi)) / (2 * eps)
        assert g[i] == pytest.approx(fd, abs=2e-3), i


# --------------------------------------------------------------------------- single venue
INTERIOR = [
    one_venue(2.0, ExponentialOutflow(10.0), lu=0.02),
    one_venue(1.0, ExponentialOutflow(8.0), lu=0.03, r=0.0),
    one_venue(3.0, LognormalOutflow.from_mean_cv(12.0, 0.8), lu=0.025, r=0.001),
    one_venue(0.5, ExponentialOutflow(20.0), lu=0.06, r=0.003, lo=0.1),
]


@pytest.mark.parametrize("p", INTERIOR)
def test_interior_closed_form_is_strictly_mixed_and_numeric_optimum_agrees(p: PlacementProblem) -> None:
    m_cf, l_cf = single_venue_closed_form(p)
    assert 0.5 < l_cf < p.target - 0.5, "parameter set meant to have both order types"
    assert m_cf + l_cf == pytest.approx(p.target)
    split = optimal_split(p, n_samples=20_000, seed=7)
    assert split.market_qty == pytest.approx(m_cf, abs=0.03 * p.target)
    assert split.limits[0] == pytest.approx(l_cf, abs=0.03 * p.target)
    # on fresh samples the two are equally good (up to Monte Carlo error)
    xi = sample_outflows(p, 200_000, 12345)
    v_cf = expected_cost(p, m_cf, [l_cf], xi)
    v_num = expected_cost(p, split.market_qty, list(split.limits), xi)
    assert abs(v_num - v_cf) <= 2e-3 * abs(v_cf) + 1e-4


@pytest.mark.parametrize("p", INTERIOR)
def test_closed_form_beats_every_point_of_a_grid(p: PlacementProblem) -> None:
    """Optimizer-free check: no (M, L) on a grid of the box does better than the formula."""
    xi = sample_outflows(p, 100_000, 3)
    m_cf, l_cf = single_venue_closed_form(p)
    v_cf = expected_cost(p, m_cf, [l_cf], xi)
    grid = np.linspace(0.0, p.target, 21)
    best = min(expected_cost(p, float(m), [float(lim)], xi) for m in grid for lim in grid)
    assert v_cf <= best + 1e-4


@pytest.mark.parametrize("p", INTERIOR)
def test_closed_form_satisfies_the_first_order_condition(p: PlacementProblem) -> None:
    """At an interior optimum moving a share from market to limit is neutral: dV/dL - dV/dM = 0,
    and the fill probability of the limit order equals (lambda_u - h - f)/(lambda_u + h + r)."""
    m_cf, l_cf = single_venue_closed_form(p)
    xi = sample_outflows(p, 400_000, 5)
    g = sample_gradient(p, m_cf, [l_cf], xi)
    assert g[1] - g[0] == pytest.approx(0.0, abs=3e-3 * (p.lambda_under + H + F))
    p_fill = float((xi[:, 0] > p.venues[0].queue_ahead + l_cf).mean())
    assert p_fill == pytest.approx(1 - single_venue_threshold(p), abs=5e-3)


def test_corner_all_market_when_underfill_penalty_is_high() -> None:
    p = one_venue(5.0, ExponentialOutflow(10.0), lu=0.2)
    assert p.venues[0].outflow.cdf(5.0) >= single_venue_threshold(p)
    assert single_venue_closed_form(p) == (p.target, 0.0)
    split = optimal_split(p, n_samples=20_000, seed=1)
    assert split.market_qty == pytest.approx(p.target, abs=0.02)
    assert split.limits[0] == pytest.approx(0.0, abs=0.02)


def test_corner_all_market_when_queue_is_long() -> None:
    p = one_venue(25.0, ExponentialOutflow(10.0), lu=0.03)
    assert single_venue_closed_form(p) == (p.target, 0.0)
    split = optimal_split(p, n_samples=20_000, seed=2)
    assert split.market_qty == pytest.approx(p.target, abs=0.02)


def test_corner_no_market_order_when_rebate_is_attractive() -> None:
    # F(Q + S) <= c: short queue, big outflow, a rebate worth more than crossing
    p = one_venue(1.0, ExponentialOutflow(40.0), r=0.02, lu=0.05, lo=0.1)
    assert p.venues[0].outflow.cdf(1.0 + p.target) <= single_venue_threshold(p)
    assert single_venue_closed_form(p) == (0.0, p.target)
    split = optimal_split(p, n_samples=20_000, seed=3)
    assert split.market_qty == pytest.approx(0.0, abs=0.02)
    assert split.limits[0] == pytest.approx(p.target, abs=0.02)


def test_corner_all_market_when_the_maker_fee_exceeds_2h_plus_f() -> None:
    # r = -(2h + f) - 0.002: c < 0; a short queue and a large outflow would otherwise favour posting
    p = one_venue(1.0, ExponentialOutflow(40.0), r=-(2 * H + F) - 0.002, lu=0.05, lo=0.1)
    assert single_venue_threshold(p) < 0
    assert single_venue_closed_form(p) == (p.target, 0.0)
    split = optimal_split(p, n_samples=20_000, seed=5)
    assert split.market_qty == pytest.approx(p.target, abs=0.02)
    assert split.limits[0] == pytest.approx(0.0, abs=0.02)


def test_corner_no_market_order_when_underfill_is_cheaper_than_crossing() -> None:
    p = one_venue(5.0, ExponentialOutflow(10.0), lu=H + F - 0.001)
    assert single_venue_closed_form(p) == (0.0, p.target)
    split = optimal_split(p, n_samples=20_000, seed=4)
    assert split.market_qty == pytest.approx(0.0, abs=0.02)
    assert split.limits[0] == pytest.approx(p.target, abs=0.05)


def test_empirical_outflow_closed_form_agrees_with_numeric() -> None:
    rng = np.random.default_rng(42)
    hist = tuple(float(x) for x in rng.gamma(2.0, 5.0, 3_000))
    p = one_venue(2.0, EmpiricalOutflow(hist), lu=0.02)
    _m_cf, l_cf = single_venue_closed_form(p)
    assert 0.5 < l_cf < 9.5
    split = optimal_split(p, n_samples=20_000, seed=9)
    assert split.limits[0] == pytest.approx(l_cf, abs=0.3)


def test_closed_form_monotonicity() -> None:
    """Sensitivities of the single-venue formula (the directions of the paper's sensitivity
    analysis): a longer queue or a smaller rebate means a smaller limit order; a higher underfill
    penalty a larger market order."""
    def lim(**kw: float) -> float:
        base: dict[str, float] = {"q": 2.0, "r": 0.002, "lu": 0.02}
        base.update(kw)
        return single_venue_closed_form(one_venue(base["q"], ExponentialOutflow(10.0), r=base["r"],
                                                  lu=base["lu"]))[1]
    by_q = [lim(q=q) for q in (0.0, 1.0, 2.0, 4.0, 8.0)]
    assert all(a > b for a, b in itertools.pairwise(by_q))
    by_r = [lim(r=r) for r in (-0.002, 0.0, 0.002, 0.004)]
    assert all(a < b for a, b in itertools.pairwise(by_r))
    by_lu = [lim(lu=lu) for lu in (0.015, 0.02, 0.03, 0.05)]
    assert all(a > b for a, b in itertools.pairwise(by_lu))


# --------------------------------------------------------------------------- several venues
def test_multi_venue_beats_single_venue_and_naive_splits_on_the_same_samples() -> None:
    p = three_venues()
    xi = sample_outflows(p, 20_000, 3)
    split = optimal_split(p, samples=xi)
    v_opt = expected_cost(p, split.market_qty, list(split.limits), xi)
    assert v_opt == pytest.approx(split.expected_cost)
    rivals: dict[str, float] = {}
    for i, venue in enumerate(p.venues):
        sub = PlacementProblem(p.target, H, F, p.lambda_under, p.lambda_over, (venue,))
        m, lim = single_venue_closed_form(sub)
        limits = [0.0] * 3
        limits[i] = lim
        rivals[f"single {venue.name}"] = expected_cost(p, m, limits, xi)
    rivals["equal limits"] = expected_cost(p, 0.0, [p.target / 3] * 3, xi)
    rivals["half market, equal limits"] = expected_cost(p, p.target / 2, [p.target / 6] * 3, xi)
    rivals["all market"] = expected_cost(p, p.target, [0.0] * 3, xi)
    for name, v in rivals.items():
        assert v_opt <= v, name
    # and strictly better than the best single venue (diversifying execution risk pays here)
    assert v_opt < min(v for k, v in rivals.items() if k.startswith("single")) - 1e-3
    # out of sample the advantage persists
    fresh = sample_outflows(p, 100_000, 77)
    v_fresh = expected_cost(p, split.market_qty, list(split.limits), fresh)
    assert v_fresh <= expected_cost(p, 0.0, [p.target / 3] * 3, fresh)
    # the optimum lies in the paper's set: M + L_k <= S, M + sum L >= S
    assert all(split.market_qty + lim <= p.target + 1e-9 for lim in split.limits)
    assert split.total_posted >= p.target - 0.05


def test_stochastic_approximation_alone_is_near_the_polished_optimum() -> None:
    p = three_venues()
    xi = sample_outflows(p, 20_000, 5)
    sa = optimal_split(p, samples=xi, polish=False)
    full = optimal_split(p, samples=xi)
    assert full.expected_cost <= sa.expected_cost
    assert sa.expected_cost <= full.expected_cost + 0.05 * abs(full.expected_cost) + 1e-3


def test_multi_venue_monotonicity_in_queue_and_rebate() -> None:
    """Common random numbers: the outflow samples do not depend on queues or rebates."""
    l_by_q = [optimal_split(three_venues(q_a=q), n_samples=20_000, seed=8).limit_qty_by_venue["a"]
              for q in (0.0, 3.0, 8.0)]
    assert l_by_q[0] > l_by_q[1] > l_by_q[2]
    l_by_r = [optimal_split(three_venues(r_a=r), n_samples=20_000, seed=8).limit_qty_by_venue["a"]
              for r in (-0.003, 0.002, 0.008)]
    assert l_by_r[0] < l_by_r[1] < l_by_r[2]
    m_by_lu = [optimal_split(three_venues(lu=lu), n_samples=20_000, seed=8).market_qty
               for lu in (0.03, 0.05, 0.1)]
    assert m_by_lu[0] + 0.5 < m_by_lu[1] < m_by_lu[2] - 0.5


def test_deterministic_for_a_seed() -> None:
    p = three_venues()
    a = optimal_split(p, n_samples=5_000, seed=21)
    b = optimal_split(p, n_samples=5_000, seed=21)
    c = optimal_split(p, n_samples=5_000, seed=22)
    assert a == b
    assert (a.market_qty, a.limits) != (c.market_qty, c.limits)
    assert np.array_equal(sample_outflows(p, 100, 1), sample_outflows(p, 100, 1))


def test_joint_samples_keep_correlation_and_shape_is_checked() -> None:
    p = three_venues()
    rng = np.random.default_rng(0)
    common = rng.exponential(8.0, 10_000)
    xi = np.column_stack([common, common * 1.2, common * 0.6])  # perfectly correlated venues
    split = optimal_split(p, samples=xi)
    assert split.diagnostics["n_samples"] == 10_000 and split.diagnostics["seed"] is None
    with pytest.raises(ValueError, match="shape"):
        optimal_split(p, samples=xi[:, :2])


def test_invalid_problems_are_rejected() -> None:
    v = VenueParams("x", 1.0, ExponentialOutflow(5.0), 0.01)
    with pytest.raises(ValueError, match="lambda_over"):
        PlacementProblem(10.0, H, F, 0.05, 0.01, (v,))
    with pytest.raises(ValueError, match="target"):
        PlacementProblem(0.0, H, F, 0.05, 0.1, (v,))
    with pytest.raises(ValueError, match="duplicate"):
        PlacementProblem(10.0, H, F, 0.05, 0.1, (v, v))
    with pytest.raises(ValueError, match="queue_ahead"):
        VenueParams("y", -1.0, ExponentialOutflow(5.0))
    with pytest.raises(ValueError, match="mean"):
        ExponentialOutflow(0.0)
    with pytest.raises(ValueError, match="exactly one venue"):
        single_venue_closed_form(three_venues())


def test_outflow_models_cdf_and_ppf_are_inverse() -> None:
    for model in (ExponentialOutflow(7.0), LognormalOutflow.from_mean_cv(10.0, 0.7)):
        for q in (0.1, 0.5, 0.9):
            assert model.cdf(model.ppf(q)) == pytest.approx(q)
        draws = model.sample(np.random.default_rng(1), 200_000)
        assert float(draws.mean()) == pytest.approx(7.0 if isinstance(model, ExponentialOutflow) else 10.0,
                                                    rel=0.02)
    emp = EmpiricalOutflow((1.0, 2.0, 3.0, 4.0))
    assert emp.cdf(2.0) == 0.5 and emp.ppf(0.5) == 2.0 and emp.ppf(0.51) == 3.0
    assert ExponentialOutflow.from_rate(2.0, 5.0).mean == 10.0


# --------------------------------------------------------------------------- rounding to lots
def _split(m: float, limits: dict[str, float]) -> Split:
    return Split(m, limits, 0.0, {})


def test_round_to_lots_examples() -> None:
    s = _split(3.004, {"a": 4.996, "b": 7.0})
    r = round_to_lots(s, target_lots=1000, lot_size=0.01)
    assert r.market_lots == 300 and r.limit_lots_by_venue == {"a": 500, "b": 700}
    r = round_to_lots(s, target_lots=1000, lot_size=0.01, venue_lot_multiple={"b": 300})
    assert r.limit_lots_by_venue["b"] == 600  # nearest multiple of 300 within 700 = 1000 - 300
    e = round_to_lots(s, target_lots=1000, lot_size=0.01, exact_total=True)
    assert e.total_lots == 1000 and e.market_lots == 300
    assert e.limit_lots_by_venue["a"] < e.limit_lots_by_venue["b"]


@settings(max_examples=200, deadline=None)
@given(m=st.floats(0, 12), la=st.floats(0, 12), lb=st.floats(0, 12),
       target=st.integers(1, 2000), ma=st.integers(1, 7), mb=st.integers(1, 7), mm=st.integers(1, 5),
       exact=st.booleans())
def test_round_to_lots_invariants(m: float, la: float, lb: float, target: int, ma: int, mb: int,
                                  mm: int, exact: bool) -> None:
    lot = 10.0 / target  # the target is 10 units
    r = round_to_lots(_split(m, {"a": la, "b": lb}), target_lots=target, lot_size=lot,
                      venue_lot_multiple={"a": ma, "b": mb}, market_lot_multiple=mm, exact_total=exact)
    assert 0 <= r.market_lots <= target and r.market_lots % mm == 0
    for name, mult in (("a", ma), ("b", mb)):
        q = r.limit_lots_by_venue[name]
        assert q >= 0 and q % mult == 0 and r.market_lots + q <= target
    if exact:
        assert r.total_lots <= target
        slack = target - r.total_lots
        assert slack < mm  # what lot granularity leaves over is offered to the market order
        if la + lb > 0:
            assert slack < max(ma, mb)
        if ma == mb == mm == 1:
            assert r.total_lots == target
    else:
        cap = target - target % mm
        if m / lot <= cap:
            assert abs(r.market_lots * lot - m) <= mm * lot / 2 + 1e-9
        else:
            assert r.market_lots == cap


def test_round_to_lots_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown venue"):
        round_to_lots(_split(1.0, {"a": 1.0}), target_lots=10, lot_size=1.0, venue_lot_multiple={"z": 1})
    with pytest.raises(ValueError, match="target_lots"):
        round_to_lots(_split(1.0, {"a": 1.0}), target_lots=0, lot_size=1.0)
    with pytest.raises(ValueError, match="lot_size"):
        round_to_lots(_split(1.0, {"a": 1.0}), target_lots=10, lot_size=0.0)


# --------------------------------------------------------------------------- several venues, no overbooking
@settings(max_examples=150, deadline=None)
@given(k=st.integers(1, 3), target=st.integers(1, 6), data=st.data(),
       h=st.floats(0, 2), f=st.floats(0, 2), lu=st.floats(0, 10))
def test_no_overbooking_split_equals_brute_force(k: int, target: int, data: st.DataObject, h: float, f: float,
                                                 lu: float) -> None:
    """Integer samples and queues: the SAA is piecewise linear with integer kinks, so the best
    integer point of {M + sum L <= S} is the optimum; the split must cost no more, and its
    ``expected_cost`` must be the SAA of :func:`expected_cost` on the same samples."""
    n = data.draw(st.integers(1, 8))
    rebates = [data.draw(st.floats(-1.5, 1.0)) for _ in range(k)]
    queues = [float(data.draw(st.integers(0, 5))) for _ in range(k)]
    xi = np.array([[data.draw(st.integers(0, 9)) for _ in range(k)] for _ in range(n)], dtype=np.float64)
    p = PlacementProblem(float(target), h, f, lu, h + max(rebates) + 1.0, tuple(
        VenueParams(f"v{i}", queues[i], ExponentialOutflow(1.0), rebates[i]) for i in range(k)))
    split = no_overbooking_split(p, samples=xi)
    got = expected_cost(p, split.market_qty, list(split.limits), xi)
    assert got == pytest.approx(split.expected_cost, abs=1e-9)
    assert split.market_qty >= 0 and all(x >= 0 for x in split.limits)
    assert split.total_posted <= target + 1e-9
    assert got <= _brute_force_no_overbooking(p, xi) + 1e-9


def test_no_overbooking_split_with_one_venue_is_the_closed_form() -> None:
    for q, r, lu in ((0.0, 0.002, 0.05), (5.0, 0.0, 0.02), (12.0, 0.003, 0.1), (2.0, -0.009, 0.05)):
        samples = tuple(float(x) for x in np.random.default_rng(int(q)).integers(0, 40, 200))
        p = one_venue(q, EmpiricalOutflow(samples), r=r, lu=lu, s=25.0)
        m, lim = single_venue_closed_form(p)
        split = no_overbooking_split(p)
        assert split.market_qty == pytest.approx(m) and split.limits == pytest.approx((lim,)), (q, r, lu)
        assert split.diagnostics["n_samples"] == {"x": 200}


def test_no_overbooking_split_posts_each_venue_its_own_quantile_until_the_order_is_used_up() -> None:
    """Two venues with empirical outflows 1..20 and 1..40, queues 2 and 5, no rebate: alone, each
    posts F^-1(c) - Q. A large order gets both (the market order takes the rest); a small one is
    shared by slope, cheapest segments first, and never overbooks."""
    a, b = tuple(float(x) for x in range(1, 21)), tuple(float(x) for x in range(1, 41))
    venues = (VenueParams("a", 2.0, EmpiricalOutflow(a), 0.0), VenueParams("b", 5.0, EmpiricalOutflow(b), 0.0))
    big = PlacementProblem(100.0, H, F, 0.05, 0.05, venues)
    c = single_venue_threshold(PlacementProblem(100.0, H, F, 0.05, 0.05, venues[:1]))
    own = [EmpiricalOutflow(a).ppf(c) - 2.0, EmpiricalOutflow(b).ppf(c) - 5.0]
    split = no_overbooking_split(big)
    assert list(split.limits) == pytest.approx(own) and split.market_qty == pytest.approx(100.0 - sum(own))
    assert not split.diagnostics["order_binds"]
    small = no_overbooking_split(PlacementProblem(3.0, H, F, 0.05, 0.05, venues))
    assert small.market_qty == 0.0 and sum(small.limits) == pytest.approx(3.0)
    assert small.diagnostics["order_binds"]
    # it beats posting on either venue alone (on joint samples with the same marginals), and the
    # stochastic approximation, which may overbook, does not find a cheaper point here
    xi = np.column_stack([np.resize(np.array(a), 40), np.array(b)])
    assert expected_cost(big, split.market_qty, list(split.limits), xi) == pytest.approx(split.expected_cost)
    assert split.expected_cost <= optimal_split(big, samples=xi).expected_cost
    for i, venue in enumerate(venues):
        m, lim = single_venue_closed_form(PlacementProblem(100.0, H, F, 0.05, 0.05, (venue,)))
        limits = [0.0, 0.0]
        limits[i] = lim
        assert split.expected_cost < expected_cost(big, m, limits, xi)


def test_no_overbooking_split_samples_parametric_models_deterministically() -> None:
    p = three_venues()
    one, two = no_overbooking_split(p, seed=4), no_overbooking_split(p, seed=4)
    assert one == two and one.total_posted <= p.target + 1e-9
    xi = sample_outflows(p, 20_000, 4)
    assert no_overbooking_split(p, samples=xi).limits == pytest.approx(one.limits)
    assert expected_cost(p, one.market_qty, list(one.limits), xi) == pytest.approx(one.expected_cost)


# --------------------------------------------------------------------------- review: edge inputs
@pytest.mark.parametrize("samples", [(3.0, math.nan, 1.0), (math.nan, 2.0), (1.0, math.nan), (0.0, math.inf),
                                     (-1.0, 2.0)])
def test_empirical_outflow_rejects_a_nan_or_infinite_or_negative_sample_anywhere(
        samples: tuple[float, ...]) -> None:
    # a NaN does not sort: (3, nan, 1) stays unsorted with finite ends, which the check used to pass
    with pytest.raises(ValueError, match="finite and >= 0"):
        EmpiricalOutflow(samples)


@settings(max_examples=200, deadline=None)
@given(xs=st.lists(st.integers(0, 60), min_size=1, max_size=80))
def test_empirical_ppf_is_the_left_continuous_inverse_of_the_cdf(xs: list[int]) -> None:
    """``ppf(cdf(x)) = x`` for every sample, and ``ppf(q)`` is the least sample with ``cdf >= q``
    (``ceil(q n)`` overshot when ``q n`` rounded up past a whole number: 7/25 * 25 = 7.000000000000001)."""
    emp = EmpiricalOutflow(tuple(float(x) for x in xs))
    for x in emp.sorted_samples:
        assert emp.ppf(emp.cdf(x)) == x
    for j in range(1, len(xs) + 1):
        q = j / len(xs)
        assert emp.ppf(q) == min(x for x in emp.sorted_samples if emp.cdf(x) >= q)


def test_empirical_ppf_at_a_level_whose_product_rounds_up() -> None:
    xs = [float(x) for x in range(1, 26)]
    assert 0.28 * 25 > 7 and EmpiricalOutflow(tuple(xs)).cdf(7.0) == 0.28
    assert empirical_ppf(xs, 0.28) == 7.0
    assert empirical_ppf(xs, 0.2800001) == 8.0 and empirical_ppf(xs, 1.0) == 25.0 and empirical_ppf(xs, 0.0) == 0.0
    # every level j / n of every n up to 120 (1 in 8 of them used to give the next sample)
    for n in range(1, 121):
        ys = [float(x) for x in range(n)]
        assert [empirical_ppf(ys, j / n) for j in range(1, n + 1)] == ys, n
