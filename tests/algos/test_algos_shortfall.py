"""Almgren–Chriss (2000) against the paper, and the implementation-shortfall algo.

Oracle: R. Almgren and N. Chriss, "Optimal Execution of Portfolio Transactions", Journal of
Risk 3(2) 5-39, 2000 (December 2000 preprint). Table 1 (p. 25) lists the test case:
S0 = 50 $/share, X = 10^6 shares, T = 5 days, N = 5, sigma = 0.95 ($/share)/day^(1/2)
(30% annual volatility), alpha = 0.02 (10% annual growth, not used by the drift-free model),
epsilon = 0.0625 $/share (bid-ask spread 1/8), gamma = 2.5e-7 $/share^2 (daily volume 5 million
shares), eta = 2.5e-6 ($/share)/(share/day) (impact at 1% of market), lambda_u = 1e-6 /$.
The text (p. 24) states: "for the optimal strategy, kappa ~ 0.6/day, so kappa T ~ 3", and that
holding the position untraded has sigma sqrt(T) = 2.12 $/share, i.e. sqrt(V) = $2.12M.
E and V of the linear ("naive", eq. 9) strategy follow from the closed forms (10) and (11);
of the optimal one from (20); both must equal the direct sums (8) and (5).
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from algos_fakes import FakeContext

from algos.base import AlgoStatus
from algos.params import CommonParams
from algos.shortfall import ACModel, ShortfallAlgo, estimate_impact, estimate_sigma, trajectory
from marketdata.clock import SimClock
from marketdata.errors import ConfigError, DataError

PAPER = ACModel(X=1e6, T=5.0, N=5, sigma=0.95, eta=2.5e-6, gamma=2.5e-7, epsilon=0.0625, lam=1e-6)
S = 1_000_000_000
T0 = 1_723_161_255_000_000_000


def test_parameters_follow_the_papers_choice_rules() -> None:
    # sigma: 30% annual volatility of a $50 stock over 250 trading days -> 0.95 $/share/day^0.5
    assert round(0.30 * 50 / math.sqrt(250), 2) == 0.95
    # epsilon = spread/2; eta: 1% of daily volume costs one spread; gamma: 10% moves it one spread
    eps, eta, gamma = estimate_impact(spread=0.125, volume_per_time_unit=5e6)
    assert eps == pytest.approx(0.0625, rel=1e-12)
    assert eta == pytest.approx(2.5e-6, rel=1e-12)
    assert gamma == pytest.approx(2.5e-7, rel=1e-12)


def test_kappa_and_half_life_match_the_paper() -> None:
    assert PAPER.eta_tilde == pytest.approx(2.375e-6)
    assert round(PAPER.kappa, 1) == 0.6              # "kappa ~ 0.6/day"
    assert round(PAPER.kappa * PAPER.T) == 3          # "so kappa T ~ 3"
    assert PAPER.kappa == pytest.approx(0.607076, abs=1e-6)
    assert PAPER.half_life == pytest.approx(1.6472, abs=1e-4)   # theta = 1/kappa, days
    # cosh(kappa tau) = 1 + lambda sigma^2 tau^2 / (2 eta~)
    assert math.cosh(PAPER.kappa * PAPER.tau) == pytest.approx(1 + 1e-6 * 0.95**2 / (2 * 2.375e-6))
    # holding the position untraded: sigma sqrt(T) = 2.12 $/share, sqrt(V) = $2.12M
    assert round(PAPER.sigma * math.sqrt(PAPER.T), 2) == 2.12
    assert round(PAPER.sigma * math.sqrt(PAPER.T) * PAPER.X / 1e6, 2) == 2.12


def test_optimal_trajectory_solves_the_difference_equation() -> None:
    x = PAPER.holdings()
    assert x[0] == 1e6 and x[-1] == 0.0
    assert [round(v) for v in x] == [1_000_000, 541_956, 289_854, 147_897, 62_142, 0]
    # eq. (16): (x_{j-1} - 2 x_j + x_{j+1}) / tau^2 = kappa~^2 x_j
    for j in range(1, 5):
        assert (x[j - 1] - 2 * x[j] + x[j + 1]) == pytest.approx(PAPER.kappa_tilde_sq * x[j], rel=1e-9)
    # eq. (18) trade list written out
    n = PAPER.trades()
    for j in range(1, 6):
        n18 = (2 * math.sinh(PAPER.kappa / 2) / math.sinh(PAPER.kappa * 5)
               * math.cosh(PAPER.kappa * (5 - (j - 0.5))) * 1e6)
        assert n[j - 1] == pytest.approx(n18, rel=1e-12)


def test_expected_cost_and_variance_naive_and_optimal() -> None:
    # naive (linear) strategy, eq. (10) and (11)
    E_lin, V_lin = PAPER.linear_cost()
    assert E_lin == pytest.approx(125_000 + 62_500 + 475_000)   # gamma X^2/2 + eps X + eta~ X^2 / T
    assert E_lin == pytest.approx(662_500)
    assert V_lin == pytest.approx(0.95**2 * 1e12 * 5 / 3 * 0.8 * 0.9)
    assert V_lin == pytest.approx(1.083e12)
    lin = trajectory(1e6, 5.0, 5, 0.0)
    assert lin == pytest.approx([1e6, 8e5, 6e5, 4e5, 2e5, 0.0])
    assert PAPER.expected_cost(lin) == pytest.approx(E_lin, rel=1e-12)
    assert PAPER.variance(lin) == pytest.approx(V_lin, rel=1e-12)
    # optimal strategy, closed form (20) == direct sums (8)/(5)
    E_opt, V_opt = PAPER.optimal_cost()
    assert E_opt == pytest.approx(PAPER.expected_cost(), rel=1e-10)
    assert V_opt == pytest.approx(PAPER.variance(), rel=1e-10)
    assert E_opt == pytest.approx(911_227, abs=1)
    assert math.sqrt(V_opt) == pytest.approx(603_431, abs=1)
    # the optimal one pays more in expectation to cut variance, and wins on E + lambda V
    assert E_opt > E_lin and V_opt < V_lin
    assert E_opt + PAPER.lam * V_opt < E_lin + PAPER.lam * V_lin
    # and it minimises E + lambda V: any perturbation of the holdings is worse
    x = PAPER.holdings()
    base = PAPER.expected_cost(x) + PAPER.lam * PAPER.variance(x)
    for j in range(1, 5):
        for d in (-1000.0, 1000.0):
            y = list(x)
            y[j] += d
            assert PAPER.expected_cost(y) + PAPER.lam * PAPER.variance(y) > base


def test_lambda_zero_is_twap_and_large_lambda_is_front_loaded() -> None:
    lin = ACModel(X=1e6, T=5, N=5, sigma=0.95, eta=2.5e-6, gamma=2.5e-7, epsilon=0.0625, lam=0.0)
    assert lin.kappa == 0 and lin.holdings() == pytest.approx([1e6, 8e5, 6e5, 4e5, 2e5, 0])
    assert lin.optimal_cost() == pytest.approx(lin.linear_cost())
    big = ACModel(X=1e6, T=5, N=5, sigma=0.95, eta=2.5e-6, gamma=2.5e-7, epsilon=0.0625, lam=1.0)
    assert big.holdings()[1] < 10.0  # almost everything in the first period
    huge = ACModel(X=1e6, T=5, N=50, sigma=0.95, eta=2.5e-6, gamma=2.5e-7, epsilon=0.0625, lam=1e6)
    assert huge.kappa * huge.T > 300  # the overflow-free branch
    x = huge.holdings()
    assert x[0] == 1e6 and all(math.isfinite(v) for v in x)
    assert x[1] == pytest.approx(1e6 * math.exp(-huge.kappa * huge.tau), rel=1e-9)
    with pytest.raises(ConfigError, match="eta"):
        ACModel(X=1, T=1, N=1, sigma=1, eta=1e-9, gamma=1.0, epsilon=0, lam=0)


def test_sigma_estimate_from_trade_prices() -> None:
    import random
    rng = random.Random(1)
    px, trades = 100.0, []
    for i in range(20_000):  # one price step per second, sd 0.05 -> sigma = 0.05 per sqrt(s)
        px += rng.gauss(0, 0.05)
        trades.append((i * S, Decimal(str(round(px, 6)))))
    est = estimate_sigma(trades, interval_ns=10 * S, time_unit_ns=S)
    assert est == pytest.approx(0.05, rel=0.05)


def _ctx(lots: int) -> FakeContext:
    return FakeContext(SimClock(T0), parent_lots=lots, lot_size=Decimal("0.001"), tick_size=Decimal("0.01"))


def test_shortfall_algo_follows_the_ac_schedule_and_completes() -> None:
    ctx = _ctx(10_000)  # 10 BTC
    algo = ShortfallAlgo(CommonParams(T0, T0 + 500 * S, seed=1), risk_aversion=1e-3, periods=5,
                         sigma=0.5, eta=0.05, gamma=0.005, epsilon=0.01)
    ctx.start(algo)
    assert algo.model is not None
    assert algo.sweep_ns == T0 + 475 * S  # default sweep lead: 5% of the window
    assert sum(algo.slice_lots()) == 10_000
    expect = [10_000 * n / 10.0 for n in algo.model.trades()]
    assert algo.slice_lots() == pytest.approx(expect, abs=1)
    assert algo.slice_lots() == sorted(algo.slice_lots(), reverse=True)  # front-loaded
    ctx.run_to(T0 + 501 * S)
    assert algo.status is AlgoStatus.COMPLETED and algo.filled_lots == 10_000
    assert not ctx.violations


def test_shortfall_replans_from_what_is_left() -> None:
    ctx = _ctx(10_000)
    ctx.ask = None  # nothing to take, posts never fill: the algo falls behind
    algo = ShortfallAlgo(CommonParams(T0, T0 + 500 * S, passive_only=True), risk_aversion=1e-3, periods=5,
                         sigma=0.5, eta=0.05, gamma=0.005, epsilon=0.01, sweep_lead_ns=0)
    ctx.start(algo)
    first = list(algo.cum_targets)
    ctx.run_to(T0 + 101 * S)  # second period began with nothing filled
    assert algo.filled_lots == 0
    assert algo.cum_targets != first
    assert algo.cum_targets[-1] == 10_000
    assert algo.model is not None
    # the remaining 4 periods follow a fresh AC trajectory of the full 10,000 lots
    rest = trajectory(10_000.0, algo.model.T * 4 / 5, 4, algo.model.kappa)
    tail = [b - a for a, b in zip([0, *algo.cum_targets[1:-1]], algo.cum_targets[1:], strict=True)]
    assert tail == pytest.approx([rest[j] - rest[j + 1] for j in range(4)], abs=1)


def test_shortfall_estimates_missing_parameters() -> None:
    ctx = _ctx(1000)
    hist = [(T0 - (600 - i) * S, Decimal(100) + Decimal(i % 7) / 100) for i in range(600)]
    algo = ShortfallAlgo(CommonParams(T0, T0 + 300 * S), risk_aversion=1e-4, periods=3,
                         price_history=hist, volume_per_time_unit=2.0)
    ctx.start(algo)
    m = algo.model
    assert m is not None and m.sigma > 0
    spread = float((ctx.ask - ctx.bid) * ctx.tick_size)  # type: ignore[operator]
    assert (m.epsilon, m.eta, m.gamma) == pytest.approx(estimate_impact(spread, 2.0))
    # the same market volume given per second: converted to the time unit (one period = 100 s)
    per_s = ShortfallAlgo(CommonParams(T0, T0 + 300 * S), risk_aversion=1e-4, periods=3,
                          price_history=hist, volume_per_second=2.0 / 95)
    _ctx(1000).start(per_s)
    assert per_s.model is not None and per_s.model.eta == pytest.approx(m.eta)
    with pytest.raises(ConfigError, match="sigma"):
        _ctx(10).start(ShortfallAlgo(CommonParams(T0, T0 + 300 * S), risk_aversion=1e-4))


def test_shortfall_with_little_history_estimates_sigma_from_shorter_buckets(caplog: pytest.LogCaptureFixture) -> None:
    """A parent started 1 s after the data began (held-out run: IS over 240 s submitted at +1 s)
    has one second of trades, less than three of the default 2.28 s buckets: it refused to start
    ("need trades in at least 3 intervals"). It now estimates sigma from buckets of a tenth of the
    history it has, with a warning; the estimate is the same volatility per time unit."""
    import random
    rng = random.Random(3)
    px, hist = 100.0, []
    for i in range(1000):   # a trade every ms for 1 s: sd 0.01 per ms -> 0.01 * sqrt(1000) per s
        px += rng.gauss(0, 0.01)
        hist.append((T0 - (1000 - i) * 1_000_000, Decimal(str(round(px, 6)))))
    algo = ShortfallAlgo(CommonParams(T0, T0 + 240 * S), risk_aversion=1e-5, periods=10,
                         price_history=hist, eta=0.05, gamma=0.001, epsilon=0.01, time_unit_ns=S)
    with caplog.at_level("WARNING", logger="algos.shortfall"):
        _ctx(500).start(algo)
    assert algo.status is AlgoStatus.RUNNING and algo.model is not None
    assert algo.model.sigma == pytest.approx(0.01 * math.sqrt(1000), rel=0.5)
    assert any("less than 3 sigma buckets" in r.getMessage() for r in caplog.records)
    # one trade is still too little to say anything: refused with the reason
    with pytest.raises(DataError, match="at least 3 intervals"):
        _ctx(500).start(ShortfallAlgo(CommonParams(T0, T0 + 240 * S), risk_aversion=1e-5, periods=10,
                                      price_history=hist[:1], eta=0.05, gamma=0.001, epsilon=0.01))
