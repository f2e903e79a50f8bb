"""Implementation shortfall: the Almgren–Chriss (2000) optimal trajectory, re-planned as it fills.

Model (R. Almgren, N. Chriss, "Optimal Execution of Portfolio Transactions", J. Risk 3(2),
2000; equation numbers of the December 2000 preprint). Sell (or buy) ``X`` units over ``T``
in ``N`` periods of ``tau = T/N``; arithmetic random-walk price with volatility ``sigma``
(price per sqrt(time unit)); linear permanent impact ``g(v) = gamma v``; temporary impact
``h(v) = epsilon sgn(v) + eta v``. With ``eta~ = eta - gamma tau / 2``:

* trajectory (17): ``x_k = sinh(kappa (T - t_k)) / sinh(kappa T) * X`` with ``kappa`` from
  ``(2 / tau^2)(cosh(kappa tau) - 1) = lambda sigma^2 / eta~``; ``lambda = 0`` is linear (9);
* expected cost (8): ``E = gamma X^2 / 2 + epsilon sum|n_k| + (eta~ / tau) sum n_k^2``;
  variance (5): ``V = sigma^2 tau sum_{k=1..N} x_k^2``; closed forms (10)/(11) for the linear
  trajectory and (20) for the optimal one;
* half-life ``theta = 1 / kappa`` (section 2.3).

Parameter estimation (section 3.4 of the paper, "choice of parameters"): ``epsilon`` is half the
bid-ask spread; ``eta`` makes trading 1% of the volume per time unit cost one spread
(``eta = spread / (0.01 V)``); ``gamma`` makes trading 10% of the volume move the price by one
spread (``gamma = spread / (0.1 V)``); ``sigma`` is estimated from trade prices
(:func:`estimate_sigma`).

:class:`ShortfallAlgo` turns the trajectory into a schedule of ``N`` slices over the window and,
at the start of every slice, re-plans the remaining trajectory from the quantity actually left
(the strategy is time-consistent, so on schedule the plan does not change; behind or ahead, the
rest is re-optimised rather than caught up linearly). Fills follow the passive-first rules of
:class:`~algos.schedule.ScheduleAlgo`, with the final sweep.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from algos.params import CommonParams
from algos.schedule import ScheduleAlgo, SliceStyle, split_exact
from marketdata.errors import ConfigError, DataError

__all__ = [
    "ACModel",
    "ShortfallAlgo",
    "estimate_impact",
    "estimate_sigma",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ACModel:
    """Almgren–Chriss inputs in one consistent set of units (see module doc).

    ``X`` units (shares, BTC), ``T`` time units, ``N`` periods, ``sigma`` price/sqrt(time),
    ``eta`` price/(units per time), ``gamma`` price/unit, ``epsilon`` price,
    ``lam`` (risk aversion) 1/price-currency."""

    X: float
    T: float
    N: int
    sigma: float
    eta: float
    gamma: float
    epsilon: float
    lam: float

    def __post_init__(self) -> None:
        for key, value in (("quantity", self.X), ("horizon", self.T), ("sigma", self.sigma), ("eta", self.eta),
                           ("gamma", self.gamma), ("epsilon", self.epsilon), ("risk_aversion", self.lam)):
            # (NaN passes no comparison below but inf passes them all: an infinite sigma, lambda or
            # X gave NaN holdings, and eta = gamma = inf a NaN eta~ that passed the convexity check)
            if not math.isfinite(value):
                raise ConfigError(f"{value}", key=key, allowed="a finite number")
        checks = (("quantity", self.X, self.X > 0, "> 0"), ("horizon", self.T, self.T > 0, "> 0"),
                  ("periods", self.N, self.N >= 1, ">= 1"), ("sigma", self.sigma, self.sigma >= 0, ">= 0"),
                  ("eta", self.eta, self.eta > 0, "> 0"), ("gamma", self.gamma, self.gamma >= 0, ">= 0"),
                  ("epsilon", self.epsilon, self.epsilon >= 0, ">= 0"),
                  ("risk_aversion", self.lam, self.lam >= 0, ">= 0"))
        for key, value, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"{value}", key=key, allowed=allowed)
        if not self.eta_tilde > 0:
            raise ConfigError(f"eta - gamma*tau/2 = {self.eta_tilde} <= 0 (the problem is not convex)",
                              key="eta", allowed="> gamma * tau / 2")

    @property
    def tau(self) -> float:
        return self.T / self.N

    @property
    def eta_tilde(self) -> float:
        return self.eta - 0.5 * self.gamma * self.tau

    @property
    def kappa_tilde_sq(self) -> float:
        return self.lam * self.sigma * self.sigma / self.eta_tilde

    @property
    def kappa(self) -> float:
        """Exact discrete ``kappa``: ``cosh(kappa tau) = 1 + kappa~^2 tau^2 / 2``.

        Evaluated as ``kappa tau = 2 asinh(kappa~ tau / 2)`` (``cosh(2a) = 1 + 2 sinh^2 a``): the
        same root, without losing a small ``kappa~^2 tau^2`` to the ``1 +`` of ``acosh`` (lambda
        -> 0) and without squaring a large ``sigma``."""
        kt = math.sqrt(self.lam / self.eta_tilde) * self.sigma
        return 2.0 * math.asinh(0.5 * kt * self.tau) / self.tau

    @property
    def half_life(self) -> float:
        k = self.kappa
        return math.inf if k == 0 else 1.0 / k

    def holdings(self) -> list[float]:
        """``x_0 = X, ..., x_N = 0`` (17); linear (9) when ``kappa = 0``."""
        return trajectory(self.X, self.T, self.N, self.kappa)

    def trades(self) -> list[float]:
        x = self.holdings()
        return [x[k] - x[k + 1] for k in range(self.N)]

    def expected_cost(self, holdings: Sequence[float] | None = None) -> float:
        """E of eq. (8) on ``holdings`` (default: the optimal trajectory)."""
        x = list(holdings) if holdings is not None else self.holdings()
        n = [x[k] - x[k + 1] for k in range(len(x) - 1)]
        return (0.5 * self.gamma * x[0] ** 2 + self.epsilon * sum(abs(v) for v in n)
                + self.eta_tilde / self.tau * sum(v * v for v in n))

    def variance(self, holdings: Sequence[float] | None = None) -> float:
        """V of eq. (5): ``sigma^2 tau sum_{k>=1} x_k^2``."""
        x = list(holdings) if holdings is not None else self.holdings()
        return self.sigma ** 2 * self.tau * sum(v * v for v in x[1:])

    def linear_cost(self) -> tuple[float, float]:
        """(E, V) of the naive linear trajectory, closed forms (10) and (11)."""
        X, T, N = self.X, self.T, self.N
        E = 0.5 * self.gamma * X ** 2 + self.epsilon * X + self.eta_tilde * X ** 2 / T
        V = self.sigma ** 2 * X ** 2 * T * (1 - 1 / N) * (1 - 1 / (2 * N)) / 3
        return E, V

    def optimal_cost(self) -> tuple[float, float]:
        """(E, V) of the optimal trajectory, closed form (20)."""
        k, tau, T, X = self.kappa, self.tau, self.T, self.X
        if k == 0:
            return self.linear_cost()
        if k * T >= 300:
            return self._optimal_cost_large(k)
        sh_T, sh_tau = math.sinh(k * T), math.sinh(k * tau)
        E = (0.5 * self.gamma * X ** 2 + self.epsilon * X
             + self.eta_tilde * X ** 2 * math.tanh(0.5 * k * tau)
             * (tau * math.sinh(2 * k * T) + 2 * T * sh_tau) / (2 * tau ** 2 * sh_T ** 2))
        V = (0.5 * self.sigma ** 2 * X ** 2
             * (tau * sh_T * math.cosh(k * (T - tau)) - T * sh_tau) / (sh_T ** 2 * sh_tau))
        return E, V

    def _optimal_cost_large(self, k: float) -> tuple[float, float]:
        """(20) for ``kappa T >= 300``, where ``sinh(kappa T)`` overflows: the same closed forms
        with every ratio of hyperbolic functions written with decaying exponentials."""
        tau, T, X = self.tau, self.T, self.X
        E = (0.5 * self.gamma * X ** 2 + self.epsilon * X
             + self.eta_tilde * X ** 2 * math.tanh(0.5 * k * tau)
             * (2 * tau / math.tanh(k * T) + 2 * T * _sinh_ratio(k * tau, k * T) * _csch(k * T))
             / (2 * tau ** 2))
        cosh_ratio = math.exp(k * (T - tau) - k * T) * (1 + math.exp(-2 * k * (T - tau))) / -math.expm1(-2 * k * T)
        V = 0.5 * self.sigma ** 2 * X ** 2 * (tau * cosh_ratio * _csch(k * tau) - T * _csch(k * T) ** 2)
        return E, max(0.0, V)


def _csch(x: float) -> float:
    """``1 / sinh(x)`` for ``x > 0``, without overflow."""
    return 2 * math.exp(-x) / -math.expm1(-2 * x)


def _sinh_ratio(a: float, b: float) -> float:
    """``sinh(a) / sinh(b)`` for ``0 <= a <= b``, ``b > 0``, without overflow."""
    if b < 300:
        return math.sinh(a) / math.sinh(b)
    return math.exp(a - b) * -math.expm1(-2 * a) / -math.expm1(-2 * b)


def trajectory(X: float, T: float, N: int, kappa: float) -> list[float]:
    """Holdings at ``t_k = k T / N``: ``sinh(kappa (T - t_k)) / sinh(kappa T) X``; linear for 0.

    Evaluated as a ratio of exponentials when ``kappa T`` is large, so it never overflows."""
    tau = T / N
    out = []
    for k in range(N + 1):
        r = T - k * tau
        frac = r / T if kappa == 0 else _sinh_ratio(kappa * r, kappa * T)
        out.append(X * frac)
    out[0] = X
    out[-1] = 0.0
    return out


def estimate_sigma(trades: Iterable[tuple[int, Decimal | float]], *, interval_ns: int,
                   time_unit_ns: int) -> float:
    """Volatility of the arithmetic price (price per sqrt(time unit)) from ``(ts_ns, price)``
    trades: last price in each ``interval_ns`` bucket, standard deviation of the bucket-to-bucket
    changes, scaled by ``sqrt(time_unit / interval)``. Needs at least three buckets."""
    if interval_ns <= 0 or time_unit_ns <= 0:
        raise ConfigError("interval and time unit must be positive", key="sigma_interval", allowed="> 0")
    last: dict[int, float] = {}
    for ts, px in trades:
        last[ts // interval_ns] = float(px)
    if len(last) < 3:
        raise DataError(f"need trades in at least 3 intervals of {interval_ns} ns to estimate sigma, "
                        f"got {len(last)}")
    keys = sorted(last)
    diffs = []
    for a, b in itertools.pairwise(keys):
        # a gap of several buckets is one change over a longer time: normalise to one bucket
        diffs.append((last[b] - last[a]) / math.sqrt(b - a))
    sd = statistics.pstdev(diffs)
    return sd * math.sqrt(time_unit_ns / interval_ns)


def estimate_impact(spread: float, volume_per_time_unit: float) -> tuple[float, float, float]:
    """``(epsilon, eta, gamma)`` from the bid-ask spread and the market volume per time unit,
    by the paper's rules: epsilon = spread / 2; trading 1% of volume per unit time costs one
    spread (eta); trading 10% of volume moves the price permanently by one spread (gamma)."""
    if spread <= 0 or volume_per_time_unit <= 0:
        raise ConfigError("spread and volume must be positive to estimate impact",
                          key="spread" if spread <= 0 else "volume_per_time_unit", allowed="> 0")
    return spread / 2, spread / (0.01 * volume_per_time_unit), spread / (0.1 * volume_per_time_unit)


class ShortfallAlgo(ScheduleAlgo):
    """Almgren–Chriss schedule over ``periods`` slices of the window (to the sweep).

    Units: time unit ``time_unit_ns`` (default: one period, so ``tau = 1`` as in the paper's
    example where a period is a day); ``sigma`` in quote currency per
    sqrt(time unit); ``eta`` quote/(base per time unit); ``gamma`` quote/base; ``epsilon``
    quote; ``risk_aversion`` (lambda) 1/quote. Missing ``sigma`` with ``price_history``
    (``(ts_ns, price)`` pairs) is estimated; missing ``eta``/``gamma``/``epsilon`` come from
    :func:`estimate_impact` with the current consolidated spread and ``volume_per_time_unit``
    (or ``volume_per_second``, converted to the time unit).
    """

    name = "shortfall"

    def __init__(self, params: CommonParams, *, risk_aversion: float, periods: int = 10,
                 sigma: float | None = None, eta: float | None = None, gamma: float | None = None,
                 epsilon: float | None = None, volume_per_time_unit: float | None = None,
                 price_history: Sequence[tuple[int, Decimal | float]] | None = None,
                 volume_per_second: float | None = None,
                 time_unit_ns: int | None = None, catchup_tolerance: float = 0.05,
                 sweep_lead_ns: int | None = None, retry_ns: int | None = None,
                 slice_style: SliceStyle = "post") -> None:
        super().__init__(params, catchup_tolerance=catchup_tolerance, sweep_lead_ns=sweep_lead_ns,
                         retry_ns=retry_ns, final_sweep=True, slice_style=slice_style)
        if periods < 1:
            raise ConfigError(f"{periods}", key="periods", allowed=">= 1")
        # (a NaN passes ``< 0``; NaN and infinite inputs were accepted and failed at the start, or
        # gave NaN holdings)
        for key, value, positive in (("risk_aversion", risk_aversion, False), ("sigma", sigma, False),
                                     ("eta", eta, True), ("gamma", gamma, False), ("epsilon", epsilon, False),
                                     ("volume_per_time_unit", volume_per_time_unit, True),
                                     ("volume_per_second", volume_per_second, True)):
            if value is not None and not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
                raise ConfigError(f"{value}", key=key, allowed="a finite number " + ("> 0" if positive else ">= 0"))
        if time_unit_ns is not None and time_unit_ns <= 0:
            raise ConfigError(f"{time_unit_ns}", key="time_unit", allowed="> 0")
        self.periods = periods
        self.risk_aversion = risk_aversion
        self._given = {"sigma": sigma, "eta": eta, "gamma": gamma, "epsilon": epsilon}
        if volume_per_time_unit is not None and volume_per_second is not None:
            raise ConfigError("give volume_per_time_unit or volume_per_second, not both",
                              key="volume_per_time_unit")
        self.volume_per_time_unit = volume_per_time_unit
        self.volume_per_second = volume_per_second
        self.price_history = price_history
        self.time_unit_ns = time_unit_ns
        self.model: ACModel | None = None

    def _estimate(self) -> ACModel:
        g = dict(self._given)
        ctx = self.ctx
        span_ns = self.sweep_ns - self.params.start_ns
        unit_ns = self.time_unit_ns or max(1, span_ns // self.periods)
        span_units = span_ns / unit_ns
        if g["sigma"] is None:
            if not self.price_history:
                raise ConfigError("sigma not given and no price_history to estimate it from", key="sigma",
                                  allowed="a volatility in quote per sqrt(time unit), or price history")
            interval = max(1, (self.sweep_ns - self.params.start_ns) // self.periods // 10)
            hist = self.price_history
            covered = hist[-1][0] - hist[0][0]
            if covered < 3 * interval:
                # a parent started soon after the data (or the feed) began: buckets of a tenth of
                # the history there is, rather than refusing (sqrt-time scaling, so the same
                # volatility per time unit; noisier, hence the warning)
                short = max(1, covered // 10)
                log.warning("is parent=%s: %.1f s of price history is less than 3 sigma buckets of %.2f s; "
                            "estimating sigma from buckets of %.3f s", self.ctx.parent_id, covered / 1e9,
                            interval / 1e9, short / 1e9)
                interval = short
            g["sigma"] = estimate_sigma(hist, interval_ns=interval, time_unit_ns=unit_ns)
        if g["eta"] is None or g["gamma"] is None or g["epsilon"] is None:
            bid, ask = ctx.best_bid_ticks(), ctx.best_ask_ticks()
            vol = self.volume_per_time_unit
            if vol is None and self.volume_per_second is not None:
                vol = self.volume_per_second * unit_ns / 1e9
            if bid is None or ask is None or vol is None:
                raise ConfigError("eta/gamma/epsilon not given and cannot be estimated (need a two-sided book "
                                  "and volume_per_time_unit or volume_per_second)", key="eta")
            # at least one tick: a consolidated book can be locked or crossed for a moment (bid at
            # or above ask); a crossed one refused the parent ("spread ... must be positive")
            spread = float(max(1, ask - bid) * ctx.tick_size)
            eps, eta, gam = estimate_impact(spread, vol)
            g["epsilon"] = eps if g["epsilon"] is None else g["epsilon"]
            g["eta"] = eta if g["eta"] is None else g["eta"]
            g["gamma"] = gam if g["gamma"] is None else g["gamma"]
        qty = float(self.parent_lots * ctx.lot_size)
        assert g["sigma"] is not None and g["eta"] is not None and g["gamma"] is not None
        assert g["epsilon"] is not None
        return ACModel(X=qty, T=span_units, N=self.periods, sigma=g["sigma"], eta=g["eta"],
                       gamma=g["gamma"], epsilon=g["epsilon"], lam=self.risk_aversion)

    def _plan(self) -> None:
        self.model = self._estimate()
        p = self.params
        span = self.sweep_ns - p.start_ns
        self.slice_ns = [p.start_ns + span * k // self.periods for k in range(self.periods)]
        self.cum_targets = split_exact(self.parent_lots, [max(0.0, v) for v in self.model.trades()])
        E, V = self.model.optimal_cost()
        self.ctx.log_event("algo_ac_plan", algo=self.name, kappa=self.model.kappa,
                           half_life_units=self.model.half_life, expected_cost=E, variance=V)

    def _slice_started(self, k: int) -> None:
        if k == 0 or self.model is None:
            return
        filled = self.filled_lots
        left = self.parent_lots - filled
        n_left = self.periods - k
        if left <= 0 or n_left <= 0:
            return
        # AC is time-consistent: re-plan the rest from what is actually left
        horizon = self.model.T * n_left / self.periods
        x = trajectory(float(left), horizon, n_left, self.model.kappa)
        weights = [max(0.0, x[j] - x[j + 1]) for j in range(n_left)]
        tail = split_exact(left, weights)
        # the re-plan starts from what is filled: slice k's target is measured from there (ahead of
        # the old plan, e.g. after a would-price take, the old target of slice k - 1 made slice k
        # look larger than its re-planned share, and urgency took more than its share of it)
        self.cum_targets = ([min(c, filled) for c in self.cum_targets[:k - 1]] + [filled]
                            + [filled + t for t in tail])
        self._validate_plan()
