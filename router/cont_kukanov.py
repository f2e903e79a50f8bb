"""Cont and Kukanov optimal split between market and limit orders across venues.

Reference: R. Cont and A. Kukanov, "Optimal order placement in limit order markets",
Quantitative Finance 17(1), 21-39, 2017 (arXiv:1210.1625). The formulas are written out here in
full and re-derived in docs/cont-kukanov.md, so the code can be checked without the paper (whose
equation numbers differ between the arXiv and journal versions; we name results instead).

**Model (the paper's order placement problem).** A trader must buy (or sell) ``S`` shares within a short horizon ``T``.
At time 0 she sends a market order ``M`` (filled at once, paying the half-spread ``h`` and the
taker fee ``f`` per share) and limit orders ``L_1..L_K`` at the best quote of venues
``1..K``. On venue ``k`` a queue of ``Q_k`` shares is ahead of her limit order; ``xi_k`` is the
random *outflow* (market orders + cancellations ahead) of that queue over ``[0, T]``, so her order
fills ``min(L_k, (xi_k - Q_k)_+) = (xi_k - Q_k)_+ - (xi_k - Q_k - L_k)_+`` shares and earns
``h + r_k`` per filled share (``r_k`` = rebate; negative for a maker fee, and it may absorb an
adverse-selection cost). With ``X = (M, L_1..L_K)`` the filled quantity is

    A(X, xi) = M + sum_k min(L_k, (xi_k - Q_k)_+)

and the cost, relative to the mid price, per share units (price units), is

    v(X, xi) = (h + f) M - sum_k (h + r_k) min(L_k, (xi_k - Q_k)_+)
               + lambda_u (S - A(X, xi))_+ + lambda_o (A(X, xi) - S)_+ ,

``lambda_u`` (``lambda_o``) penalising each share under- (over-) filled at ``T`` (the cost of
completing with a later market order after an adverse move, resp. of unwinding). The problem is
``min_X V(X) = E[v(X, xi)]``; :func:`expected_cost` is this objective estimated by Monte Carlo.

**Single venue (the paper's explicit single-exchange solution).** With ``K = 1``, ``F`` the
distribution function of ``xi`` and ``lambda_u > h + f``, ``lambda_o > h + r``, the optimum fills
exactly the target when everything executes (``M* + L* = S``) and the limit part solves the
quantile condition ``P(xi > Q + L*) = (lambda_u - h - f) / (lambda_u + h + r)``, i.e.

    L* = clip(F^{-1}((2h + f + r) / (lambda_u + h + r)) - Q, 0, S),   M* = S - L*;

only market orders are optimal when ``F(Q) >= (2h+f+r)/(lambda_u+h+r)`` (the queue ahead is long
or the underfill penalty high), only limit orders when ``F(Q + S) <= (2h+f+r)/(lambda_u+h+r)``
(short queue, large rebate), and when the market order is not worth its cost
(``lambda_u <= h + f``) then ``M* = 0, L* = S``. See :func:`single_venue_closed_form`.

**Several venues (the paper's multi-exchange problem).** No closed form. The optimum lies in
``C = {0 <= M <= S, 0 <= L_k <= S - M}`` (a limit share beyond ``S - M`` can only fill when the
target is already met, so it costs ``lambda_o - h - r_k > 0``) and has ``M + sum L_k >= S`` (a
market share is cheaper than a certain underfill). The paper computes it by stochastic
approximation (Robbins-Monro / robust SA with iterate averaging): ``X_{n+1} = Pi(X_n - gamma
g(X_n, xi^n))`` with the sample gradient

    g_M   = h + f - lambda_u 1{A < S} + lambda_o 1{A > S}
    g_L_k = -(h + r_k + lambda_u 1{A < S} - lambda_o 1{A > S}) 1{xi_k > Q_k + L_k}.

:func:`optimal_split` runs that algorithm on ``N`` seeded Monte Carlo (or supplied historical)
outflow samples, then polishes the averaged iterate by minimising the sample-average
approximation (SAA) of ``V`` over the same samples with :func:`scipy.optimize.minimize`
(Nelder-Mead with bounds; the SAA is piecewise linear, so gradient methods do not apply).
Everything is deterministic for a seed.

Quantities here are floats (a continuous allocation); :func:`round_to_lots` turns a split into
whole lots for the router.
"""

from __future__ import annotations

import heapq
import logging
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

__all__ = [
    "EmpiricalOutflow",
    "ExponentialOutflow",
    "LognormalOutflow",
    "LotSplit",
    "OutflowModel",
    "PlacementProblem",
    "Split",
    "VenueParams",
    "cost_samples",
    "empirical_ppf",
    "expected_cost",
    "filled_quantity",
    "no_overbooking_limits",
    "no_overbooking_split",
    "optimal_split",
    "quantile_level",
    "round_to_lots",
    "sample_gradient",
    "sample_outflows",
    "single_venue_closed_form",
    "single_venue_threshold",
]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


# ---------------------------------------------------------------------- outflow distributions
class OutflowModel(Protocol):
    """Distribution of a venue's queue outflow ``xi`` over the horizon (shares, >= 0)."""

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` independent draws of ``xi``."""
        ...

    def cdf(self, x: float) -> float:
        """``F(x) = P(xi <= x)``."""
        ...

    def ppf(self, q: float) -> float:
        """Quantile ``F^{-1}(q)``, ``q`` in ``[0, 1]`` (left-continuous inverse)."""
        ...


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class ExponentialOutflow:
    """``xi ~ Exponential(mean)`` over the horizon (a memoryless benchmark; used in the tests)."""

    mean: float

    def __post_init__(self) -> None:
        _check_positive("ExponentialOutflow.mean", self.mean)

    @classmethod
    def from_rate(cls, rate_per_s: float, horizon_s: float) -> ExponentialOutflow:
        """Mean outflow = ``rate_per_s * horizon_s`` (shares per second times the horizon)."""
        _check_positive("rate_per_s", rate_per_s)
        _check_positive("horizon_s", horizon_s)
        return cls(rate_per_s * horizon_s)

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.exponential(self.mean, n)

    def cdf(self, x: float) -> float:
        return 0.0 if x <= 0 else -math.expm1(-x / self.mean)

    def ppf(self, q: float) -> float:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile level must be in [0, 1], got {q}")
        return math.inf if q >= 1.0 else -self.mean * math.log1p(-q)


@dataclass(frozen=True, slots=True)
class LognormalOutflow:
    """``log xi ~ Normal(mu, sigma^2)`` over the horizon (heavy right tail)."""

    mu: float
    sigma: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.mu):
            raise ValueError(f"LognormalOutflow.mu must be finite, got {self.mu!r}")
        _check_positive("LognormalOutflow.sigma", self.sigma)

    @classmethod
    def from_mean_cv(cls, mean: float, cv: float) -> LognormalOutflow:
        """Parametrise by the mean and the coefficient of variation of ``xi``."""
        _check_positive("mean", mean)
        _check_positive("cv", cv)
        s2 = math.log1p(cv * cv)
        return cls(math.log(mean) - s2 / 2, math.sqrt(s2))

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.lognormal(self.mu, self.sigma, n)

    def cdf(self, x: float) -> float:
        return 0.0 if x <= 0 else float(stats.norm.cdf((math.log(x) - self.mu) / self.sigma))

    def ppf(self, q: float) -> float:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile level must be in [0, 1], got {q}")
        if q <= 0.0:
            return 0.0
        if q >= 1.0:
            return math.inf
        return math.exp(self.mu + self.sigma * float(stats.norm.ppf(q)))


@dataclass(frozen=True, slots=True)
class EmpiricalOutflow:
    """Observed outflows (e.g. the queue depletion seen over past horizons), resampled with
    replacement; ``cdf``/``ppf`` are the empirical ones. Validation, ``cdf`` and ``ppf`` are plain
    Python (meant for a few hundred samples, where numpy's per-call overhead dominates; the
    router itself passes its sorted samples to :func:`no_overbooking_limits`); ``sample`` uses
    numpy."""

    samples: tuple[float, ...]
    _sorted: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            xs = sorted(map(float, self.samples))
        except (TypeError, ValueError):
            raise ValueError("EmpiricalOutflow.samples must be a non-empty sequence of numbers") from None
        if not xs:
            raise ValueError("EmpiricalOutflow.samples must be a non-empty sequence of numbers")
        # every sample is checked: a NaN does not sort, so it can sit anywhere in ``xs``
        if not all(0.0 <= x < math.inf for x in xs):
            raise ValueError("EmpiricalOutflow.samples must be finite and >= 0")
        object.__setattr__(self, "_sorted", tuple(xs))

    @property
    def sorted_samples(self) -> tuple[float, ...]:
        """The samples, ascending (as floats)."""
        return self._sorted

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        return rng.choice(np.asarray(self._sorted, dtype=np.float64), size=n, replace=True)

    def cdf(self, x: float) -> float:
        return bisect_right(self._sorted, x) / len(self._sorted)

    def ppf(self, q: float) -> float:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile level must be in [0, 1], got {q}")
        return empirical_ppf(self._sorted, q)


def empirical_ppf(xs: Sequence[float], q: float) -> float:
    """The left-continuous quantile ``F^{-1}(q)`` of the samples ``xs`` (sorted ascending,
    non-empty), ``q`` in ``[0, 1]``: 0 at ``q = 0``, else the smallest sample ``x`` with
    ``F(x) = (samples <= x) / n >= q`` (``F`` as :meth:`EmpiricalOutflow.cdf` computes it, so
    ``F^{-1}(F(x)) = x`` for every sample ``x``)."""
    if q <= 0.0:
        return 0.0
    n = len(xs)
    # ceil(q n) can overshoot by one when q n rounds up past a whole number (0.28 x 25 =
    # 7.000000000000001): step to the first count j with j / n >= q, as F compares it
    j = min(n, max(1, math.ceil(q * n)))
    while j > 1 and (j - 1) / n >= q:
        j -= 1
    while j < n and j / n < q:
        j += 1
    return xs[j - 1]


# ---------------------------------------------------------------------- problem and result
@dataclass(frozen=True, slots=True)
class VenueParams:
    """One venue's limit-order side: ``queue_ahead`` ``Q_k`` (shares at the best quote ahead of
    us), the ``outflow`` ``xi_k`` over the horizon, and ``rebate`` ``r_k`` in price units per
    share (positive = received; a maker fee is a negative rebate)."""

    name: str
    queue_ahead: float
    outflow: OutflowModel
    rebate: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("VenueParams.name must be non-empty")
        if not (math.isfinite(self.queue_ahead) and self.queue_ahead >= 0):
            raise ValueError(f"venue {self.name!r}: queue_ahead must be finite and >= 0, "
                             f"got {self.queue_ahead!r}")
        if not math.isfinite(self.rebate):
            raise ValueError(f"venue {self.name!r}: rebate must be finite, got {self.rebate!r}")


@dataclass(frozen=True, slots=True)
class PlacementProblem:
    """The paper's order placement problem: buy/sell ``target`` ``S`` shares within
    ``horizon_s`` (the horizon the outflow distributions refer to; informational), with half-spread
    ``half_spread`` ``h`` and market-order fee ``taker_fee`` ``f`` (price units per share), and
    penalties ``lambda_under``/``lambda_over`` per share short of / beyond ``S`` at the horizon.

    Validated assumptions: ``lambda_over > h + r_k`` for every venue (otherwise posting an
    unbounded amount pays and the problem has no solution) and ``lambda_under >= 0``."""

    target: float
    half_spread: float
    taker_fee: float
    lambda_under: float
    lambda_over: float
    venues: tuple[VenueParams, ...]
    horizon_s: float = 1.0

    def __post_init__(self) -> None:
        _check_positive("PlacementProblem.target", self.target)
        _check_positive("PlacementProblem.horizon_s", self.horizon_s)
        for name in ("half_spread", "taker_fee", "lambda_under", "lambda_over"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"PlacementProblem.{name} must be a finite number, got {v!r}")
        if self.half_spread < 0:
            raise ValueError(f"PlacementProblem.half_spread must be >= 0, got {self.half_spread}")
        if self.lambda_under < 0:
            raise ValueError(f"PlacementProblem.lambda_under must be >= 0, got {self.lambda_under}")
        if not self.venues:
            raise ValueError("PlacementProblem.venues must list at least one venue")
        names = [v.name for v in self.venues]
        if len(set(names)) != len(names):
            raise ValueError(f"PlacementProblem.venues: duplicate venue names in {names}")
        for v in self.venues:
            if self.lambda_over <= self.half_spread + v.rebate:
                raise ValueError(
                    f"PlacementProblem: lambda_over {self.lambda_over} must exceed h + r = "
                    f"{self.half_spread + v.rebate} for venue {v.name!r} (else overposting pays "
                    "without bound and no optimum exists)")

    @property
    def queues(self) -> FloatArray:
        """``Q_k`` as an array."""
        return np.array([v.queue_ahead for v in self.venues], dtype=np.float64)

    @property
    def rebates(self) -> FloatArray:
        """``r_k`` as an array."""
        return np.array([v.rebate for v in self.venues], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Split:
    """A market/limit split: ``market_qty`` ``M``, ``limit_qty_by_venue`` ``L_k``,
    ``expected_cost`` ``V(X)`` (Monte Carlo, price units times shares) and ``diagnostics``."""

    market_qty: float
    limit_qty_by_venue: Mapping[str, float]
    expected_cost: float
    diagnostics: Mapping[str, Any]

    @property
    def limits(self) -> tuple[float, ...]:
        """``L_k`` in venue order."""
        return tuple(self.limit_qty_by_venue.values())

    @property
    def total_posted(self) -> float:
        """``M + sum L_k`` (may exceed the target: the paper's 'overbooking' across venues)."""
        return self.market_qty + sum(self.limit_qty_by_venue.values())


# ---------------------------------------------------------------------- the objective
def sample_outflows(problem: PlacementProblem, n: int, seed: int) -> FloatArray:
    """``n`` x ``K`` outflow draws, venue ``k``'s column from its own model with a child stream of
    ``numpy.random.SeedSequence(seed)``; a venue's column depends only on the seed, its position
    and its model (common random numbers when queues, fees or penalties change)."""
    if n <= 0:
        raise ValueError(f"number of samples must be > 0, got {n}")
    children = np.random.SeedSequence(seed).spawn(len(problem.venues))
    cols = [v.outflow.sample(np.random.Generator(np.random.PCG64(c)), n)
            for v, c in zip(problem.venues, children, strict=True)]
    return np.column_stack(cols).astype(np.float64, copy=False)


def _check_samples(problem: PlacementProblem, xi: FloatArray) -> FloatArray:
    arr = np.asarray(xi, dtype=np.float64)
    if arr.ndim == 1 and len(problem.venues) == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != len(problem.venues) or arr.shape[0] == 0:
        raise ValueError(f"outflow samples must have shape (N, {len(problem.venues)}), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError("outflow samples must be finite and >= 0")
    return arr


def _limit_fills(problem: PlacementProblem, limits: FloatArray, xi: FloatArray) -> FloatArray:
    """``min(L_k, (xi_k - Q_k)_+)`` per sample and venue."""
    return np.minimum(limits[None, :], np.maximum(xi - problem.queues[None, :], 0.0))


def filled_quantity(problem: PlacementProblem, market: float, limits: Sequence[float],
                    xi: FloatArray) -> FloatArray:
    """``A(X, xi) = M + sum_k min(L_k, (xi_k - Q_k)_+)`` for each sample row of ``xi``."""
    lim = np.asarray(limits, dtype=np.float64)
    xi = _check_samples(problem, xi)
    out: FloatArray = market + _limit_fills(problem, lim, xi).sum(axis=1)
    return out


def cost_samples(problem: PlacementProblem, market: float, limits: Sequence[float],
                 xi: FloatArray) -> FloatArray:
    """The paper's cost ``v(X, xi)`` for each sample row of ``xi``."""
    lim = np.asarray(limits, dtype=np.float64)
    if lim.shape != (len(problem.venues),):
        raise ValueError(f"limits must have {len(problem.venues)} entries, got {lim.shape}")
    xi = _check_samples(problem, xi)
    h, s = problem.half_spread, problem.target
    fills = _limit_fills(problem, lim, xi)
    a = market + fills.sum(axis=1)
    earn = fills @ (h + problem.rebates)
    under = np.maximum(s - a, 0.0)
    over = np.maximum(a - s, 0.0)
    out: FloatArray = ((h + problem.taker_fee) * market - earn + problem.lambda_under * under
                       + problem.lambda_over * over)
    return out


def expected_cost(problem: PlacementProblem, market: float, limits: Sequence[float],
                  xi: FloatArray) -> float:
    """Monte Carlo estimate of ``V(X) = E[v(X, xi)]`` over the sample rows of ``xi``."""
    return float(cost_samples(problem, market, limits, xi).mean())


def sample_gradient(problem: PlacementProblem, market: float, limits: Sequence[float],
                    xi: FloatArray) -> FloatArray:
    """The (sub)gradient of ``v`` used by the paper's stochastic approximation, averaged over the rows of ``xi``:
    ``[g_M, g_L_1..g_L_K]`` with ``g_M = h + f - lambda_u 1{A<S} + lambda_o 1{A>S}`` and
    ``g_L_k = -(h + r_k + lambda_u 1{A<S} - lambda_o 1{A>S}) 1{xi_k > Q_k + L_k}``."""
    lim = np.asarray(limits, dtype=np.float64)
    xi = _check_samples(problem, xi)
    h = problem.half_spread
    a = market + _limit_fills(problem, lim, xi).sum(axis=1)
    pen = problem.lambda_under * (a < problem.target) - problem.lambda_over * (a > problem.target)
    g_m = h + problem.taker_fee - pen
    active = xi > (problem.queues + lim)[None, :]
    g_l = -((h + problem.rebates)[None, :] + pen[:, None]) * active
    return np.concatenate(([g_m.mean()], g_l.mean(axis=0)))


# ---------------------------------------------------------------------- single venue
def single_venue_threshold(problem: PlacementProblem) -> float:
    """The quantile level ``(2h + f + r) / (lambda_u + h + r)`` of the single-venue solution
    (the probability that the limit order is *not* completely filled at the optimum)."""
    if len(problem.venues) != 1:
        raise ValueError(f"single-venue formula needs exactly one venue, got {len(problem.venues)}")
    h, f, r = problem.half_spread, problem.taker_fee, problem.venues[0].rebate
    return (2 * h + f + r) / (problem.lambda_under + h + r)


def single_venue_closed_form(problem: PlacementProblem) -> tuple[float, float]:
    """Explicit optimum ``(M*, L*)`` on one venue (the paper's single-exchange solution;
    derivation in docs/cont-kukanov.md).

    * ``lambda_u <= h + f``: a market order costs more than the underfill it avoids:
      ``M* = 0, L* = S``.
    * otherwise ``M* + L* = S`` and ``L* = clip(F^{-1}(c) - Q, 0, S)`` with
      ``c = (2h + f + r)/(lambda_u + h + r)``: ``F(Q) >= c`` gives only a market order,
      ``F(Q + S) <= c`` (short queue, large outflow, large rebate) only a limit order, and
      ``c <= 0`` (a maker fee of at least ``2h + f``: ``r <= -(2h + f)``) only a market order.

    Requires ``lambda_o > h + r`` (checked by :class:`PlacementProblem`). For a distribution with
    atoms (an empirical one) the optimum may be an interval; this returns the left-continuous
    quantile's point of it.
    """
    if len(problem.venues) != 1:
        raise ValueError(f"single-venue formula needs exactly one venue, got {len(problem.venues)}")
    venue = problem.venues[0]
    h, f, s = problem.half_spread, problem.taker_fee, problem.target
    if problem.lambda_under <= h + f:
        return 0.0, s
    c = single_venue_threshold(problem)
    if c <= 0.0:
        # a maker fee of at least 2h + f: a filled limit share costs no less than a market share,
        # and an unfilled one adds the underfill penalty: V'(L) >= 0 everywhere, so no limit order
        limit = 0.0
    else:
        limit = min(max(venue.outflow.ppf(c) - venue.queue_ahead, 0.0), s)
    return s - limit, limit


# ---------------------------------------------------------------------- several venues
def _project(x: FloatArray, s: float) -> FloatArray:
    """Euclidean projection onto the box ``[0, S]^{K+1}`` (contains the paper's set C)."""
    return np.clip(x, 0.0, s)


def _gradient_bound(problem: PlacementProblem) -> float:
    h, f = problem.half_spread, problem.taker_fee
    lu, lo = problem.lambda_under, problem.lambda_over
    g2 = max(abs(h + f - lu), abs(h + f + lo)) ** 2
    for r in problem.rebates:
        g2 += max(abs(h + r + lu), abs(h + r - lo)) ** 2
    return math.sqrt(g2) or 1.0


def _stochastic_approximation(problem: PlacementProblem, xi: FloatArray,
                              x0: FloatArray) -> FloatArray:
    """Robust stochastic approximation (the paper's algorithm; robust SA in the sense of
    Nemirovski et al. 2009): one pass over the rows of ``xi`` with the
    constant step ``gamma = D / (G sqrt(N))`` (``D = S sqrt(K+1)`` the diameter of the box,
    ``G`` a bound of the gradient norm) and the average of the iterates as the output."""
    n, k = xi.shape
    s = problem.target
    h = problem.half_spread
    gamma = s * math.sqrt(k + 1) / (_gradient_bound(problem) * math.sqrt(n))
    base_m = h + problem.taker_fee
    base_l = [h + r for r in problem.rebates.tolist()]
    queues = problem.queues.tolist()
    lu, lo = problem.lambda_under, problem.lambda_over
    m = float(x0[0])
    lims = [float(v) for v in x0[1:]]
    acc = [0.0] * (k + 1)
    rows: list[list[float]] = xi.tolist()
    for row in rows:
        a = m
        for j in range(k):
            excess = row[j] - queues[j]
            if excess > 0:
                a += lims[j] if lims[j] < excess else excess
        pen = lu if a < s else (-lo if a > s else 0.0)
        m = min(max(m - gamma * (base_m - pen), 0.0), s)
        for j in range(k):
            if row[j] > queues[j] + lims[j]:
                lims[j] = min(max(lims[j] + gamma * (base_l[j] + pen), 0.0), s)
        acc[0] += m
        for j in range(k):
            acc[j + 1] += lims[j]
    avg: FloatArray = np.array(acc, dtype=np.float64) / n
    return avg


def optimal_split(problem: PlacementProblem, *, n_samples: int = 20_000, seed: int = 0,
                  samples: FloatArray | None = None, polish: bool = True) -> Split:
    """Optimal ``X = (M, L_1..L_K)`` for ``K >= 1`` venues (the paper's multi-exchange problem).

    Outflows: ``samples`` (an ``N x K`` matrix, e.g. joint historical outflows, which keeps their
    correlation) or ``n_samples`` draws of the venues' models from ``seed``
    (:func:`sample_outflows`). Method: the paper's stochastic approximation from the neutral start
    ``M = S/2, L_k = S/(2K)``, then (``polish``) Nelder-Mead on the sample-average objective over
    the same samples; the better of the two is returned. ``expected_cost`` is the sample average
    ``V`` at the result. Deterministic for a seed (or for given samples).
    """
    xi = sample_outflows(problem, n_samples, seed) if samples is None else _check_samples(problem, samples)
    n, k = xi.shape
    s = problem.target
    x0 = np.array([s / 2] + [s / (2 * k)] * k, dtype=np.float64)
    x_sa = _stochastic_approximation(problem, xi, x0)
    cost_sa = expected_cost(problem, float(x_sa[0]), x_sa[1:].tolist(), xi)
    best, best_cost = x_sa, cost_sa
    evals = 0
    if polish:
        def objective(x: FloatArray) -> float:
            y = _project(np.asarray(x, dtype=np.float64), s)
            return expected_cost(problem, float(y[0]), y[1:].tolist(), xi)

        bounds = [(0.0, s)] * (k + 1)
        start = best
        for _ in range(3):  # restarts: Nelder-Mead's simplex can collapse on a kink
            simplex = np.vstack([start] + [_project(start + np.eye(k + 1)[i] * (0.05 * s)
                                                    * (1 if start[i] < s / 2 else -1), s)
                                           for i in range(k + 1)])
            res = optimize.minimize(objective, start, method="Nelder-Mead", bounds=bounds,
                                    options={"initial_simplex": simplex, "xatol": 1e-6 * s,
                                             "fatol": 1e-10 * max(1.0, abs(best_cost)),
                                             "maxfev": 400 * (k + 1)})
            evals += int(res.nfev)
            cand = _project(np.asarray(res.x, dtype=np.float64), s)
            cand_cost = objective(cand)
            if cand_cost < best_cost - 1e-12 * max(1.0, abs(best_cost)):
                best, best_cost = cand, cand_cost
                start = cand
            else:
                break
    fills = _limit_fills(problem, best[1:], xi)
    a = best[0] + fills.sum(axis=1)
    fill_prob = (xi > (problem.queues + best[1:])[None, :]).mean(axis=0)
    diagnostics: dict[str, Any] = {
        "method": "stochastic_approximation+saa_nelder_mead" if polish else "stochastic_approximation",
        "n_samples": n,
        "seed": seed if samples is None else None,
        "sa_point": [float(v) for v in x_sa],
        "sa_cost": cost_sa,
        "saa_cost": best_cost,
        "objective_evaluations": evals,
        "expected_fill": float(a.mean()),
        "p_underfill": float((a < s).mean()),
        "p_overfill": float((a > s).mean()),
        "limit_fill_probability": {v.name: float(p) for v, p in zip(problem.venues, fill_prob, strict=True)},
        "expected_limit_fill": {v.name: float(x) for v, x in zip(problem.venues, fills.mean(axis=0),
                                                                  strict=True)},
    }
    log.debug("cont-kukanov split: M=%.6g L=%s cost=%.6g (sa %.6g)", best[0], best[1:].tolist(),
              best_cost, cost_sa)
    return Split(float(best[0]), {v.name: float(x) for v, x in zip(problem.venues, best[1:], strict=True)},
                 best_cost, diagnostics)


# ---------------------------------------------------------------------- several venues, no overbooking
def _venue_sample_sets(problem: PlacementProblem, samples: FloatArray | None, n_samples: int,
                       seed: int) -> list[list[float]]:
    """Each venue's sorted outflow samples: the columns of ``samples``, else the venues' own
    samples when every outflow is an :class:`EmpiricalOutflow` (exact, no resampling), else
    ``n_samples`` draws of the models from ``seed`` (:func:`sample_outflows`)."""
    if samples is not None:
        xi = _check_samples(problem, samples)
        return [sorted(col) for col in xi.T.tolist()]
    empirical = [v.outflow for v in problem.venues if isinstance(v.outflow, EmpiricalOutflow)]
    if len(empirical) == len(problem.venues):
        return [list(o.sorted_samples) for o in empirical]
    return [sorted(col) for col in sample_outflows(problem, n_samples, seed).T.tolist()]


def quantile_level(half_spread: float, taker_fee: float, rebate: float, lambda_under: float) -> float:
    """A venue's own quantile level ``c = (2h + f + r) / (lambda_u + h + r)``: NaN when
    ``lambda_u + h + r <= 0`` (posting there never pays, there is no quantile condition)."""
    den = lambda_under + half_spread + rebate
    return (2 * half_spread + taker_fee + rebate) / den if den > 0 else math.nan


def no_overbooking_limits(target: float, half_spread: float, taker_fee: float, lambda_under: float,
                          venues: Sequence[tuple[float, float, Sequence[float]]]
                          ) -> tuple[float, list[float], list[float], bool, float | None]:
    """The kernel of :func:`no_overbooking_split` without validation or diagnostics:
    ``venues`` = ``(queue_ahead, rebate, outflow samples sorted ascending)`` per venue. Returns
    ``(market, limits, each venue's own optimum, whether the order binds, last slope used)``."""
    h, f, s = half_spread, taker_fee, target
    lam = lambda_under
    market_ok = lam >= h + f   # else an underfill costs less than a market share: none is sent
    c0 = h + f if market_ok else lam
    # each venue alone: the segments of slope below c0, i.e. counts j (samples <= Q + L) below
    # the first j whose slope -e + (lam + e) j / n reaches c0; it posts up to that segment's end
    own: list[float] = []
    first: list[tuple[float, int]] = []   # per venue: the first segment's slope and count
    for qa, rebate, xs in venues:
        n = len(xs)
        e = h + rebate
        j0 = bisect_right(xs, qa)
        slope0 = -e + (lam + e) * j0 / n
        first.append((slope0, j0))
        if j0 >= n or lam + e <= 0 or slope0 >= c0:
            own.append(0.0)   # the first segment is already dearer than the market order
            continue
        jt = min(n, max(j0 + 1, math.ceil((c0 + e) / (lam + e) * n)))
        while jt > j0 + 1 and -e + (lam + e) * (jt - 1) / n >= c0:
            jt -= 1
        while jt < n and -e + (lam + e) * jt / n < c0:
            jt += 1
        own.append(xs[jt - 1] - qa)
    binds = sum(own) > s
    last_slope: float | None = None
    if not binds:
        limits = own
    else:
        # the order is too small for every venue's own optimum: give its shares to the cheapest
        # segments across venues (a K-way merge by slope, each venue's slopes increasing)
        limits = [0.0] * len(venues)
        heap = [(slope0, k, j0, 0.0) for k, (slope0, j0) in enumerate(first)]   # (slope, venue, count, start)
        heapq.heapify(heap)
        remaining = s
        while heap and remaining > 0:
            slope, k, j, start = heap[0]
            qa, rebate, xs = venues[k]
            n = len(xs)
            if slope >= c0 or j >= n:   # the last segment's slope is lambda_u >= c0
                break
            end = xs[j] - qa
            amount = min(end - start, remaining)
            limits[k] = start + amount
            remaining -= amount
            last_slope = slope
            nj = bisect_right(xs, xs[j], j)
            e = h + rebate
            heapq.heapreplace(heap, (-e + (lam + e) * nj / n, k, nj, end))
    market = max(0.0, s - sum(limits)) if market_ok else 0.0
    return market, limits, own, binds, last_slope


def no_overbooking_split(problem: PlacementProblem, *, samples: FloatArray | None = None,
                         n_samples: int = 20_000, seed: int = 0) -> Split:
    """Exact optimum of the K-venue problem under ``M + sum L_k <= S`` (no overbooking), the
    constraint of a router whose working orders never exceed the order.

    Under that constraint ``A <= S``, so the overfill term vanishes and, with ``M = S - sum L_k``
    (a market share is cheaper than a certain underfill when ``lambda_u > h + f``), the sample
    average objective separates by venue:

        V = (h + f) S + sum_k [phi_k(L_k) - (h + f) L_k],
        phi_k(L) = -(h + r_k) E min(L, Z_k) + lambda_u E (L - Z_k)_+,   Z_k = (xi_k - Q_k)_+ ,

    with ``phi_k`` convex, piecewise linear on the empirical distribution, of slope
    ``-(h + r_k) + (lambda_u + h + r_k) F_k(Q_k + L)``. The optimum gives the order's shares to the
    venues' cheapest segments while their slope is below the market order's ``h + f`` (alone,
    that is each venue's single-venue quantile ``F_k(Q_k + L_k) = c_k``,
    :func:`single_venue_threshold`), and while the order lasts: a K-way merge of the venues'
    segments by slope, O((number of segments used) log K). The result is exact for the sample
    distributions (no Monte Carlo error beyond the samples themselves); with ``K = 1`` and
    ``lambda_u > h + f`` it is :func:`single_venue_closed_form` on the empirical distribution
    (when ``lambda_u <= h + f`` the two differ in limit shares that can never fill, at the same
    cost).

    Samples: the columns of ``samples`` (``N x K``), else each :class:`EmpiricalOutflow`'s own
    samples (each venue may have its own number), else ``n_samples`` draws from ``seed``.
    ``expected_cost`` is ``V`` on those samples (price units times shares; equal to
    :func:`expected_cost` on a joint matrix). When ``lambda_u < h + f`` no market order is sent:
    the venues post while their slope is below ``lambda_u`` and the rest is left unplaced
    (``total_posted < S``: an underfill then costs less than crossing the spread).
    """
    sets = _venue_sample_sets(problem, samples, n_samples, seed)
    h, f, s = problem.half_spread, problem.taker_fee, problem.target
    lam = problem.lambda_under
    venues = problem.venues
    market, limits, own, binds, last_slope = no_overbooking_limits(
        s, h, f, lam, [(v.queue_ahead, v.rebate, xs) for v, xs in zip(venues, sets, strict=True)])
    unplaced = max(0.0, s - market - sum(limits))   # > 0 only when lambda_u < h + f
    cost = (h + f) * market + lam * unplaced
    fills: dict[str, float] = {}
    fill_prob: dict[str, float] = {}
    levels: dict[str, float] = {}
    for v, xs, lim in zip(venues, sets, limits, strict=True):
        n = len(xs)
        q = v.queue_ahead
        lo, hi = bisect_right(xs, q), bisect_right(xs, q + lim)   # xs sorted: Z in (0, L], Z > L
        filled = (sum(xs[lo:hi]) - q * (hi - lo) + lim * (n - hi)) / n      # E min(L, Z)
        cost += -(h + v.rebate) * filled + lam * (lim - filled)                # E (L - Z)_+ = L - E min(L, Z)
        fills[v.name] = filled
        fill_prob[v.name] = (n - hi) / n
        levels[v.name] = quantile_level(h, f, v.rebate, lam)
    diagnostics: dict[str, Any] = {
        "method": "separable_no_overbooking",
        "n_samples": {v.name: len(xs) for v, xs in zip(venues, sets, strict=True)},
        "quantile_level": levels,
        "own_optimum": {v.name: x for v, x in zip(venues, own, strict=True)},
        "order_binds": binds,   # the venues' own optima add up to more than S
        "marginal_slope": last_slope,
        "expected_fill": market + sum(fills.values()),
        "unplaced": unplaced,
        "limit_fill_probability": fill_prob,
        "expected_limit_fill": fills,
    }
    log.debug("cont-kukanov no-overbooking split: M=%.6g L=%s cost=%.6g", market, limits, cost)
    return Split(market, {v.name: lim for v, lim in zip(problem.venues, limits, strict=True)}, cost, diagnostics)


# ---------------------------------------------------------------------- to whole lots
@dataclass(frozen=True, slots=True)
class LotSplit:
    """A split in whole lots (integers of a common lot): ``market_lots`` and
    ``limit_lots_by_venue``; ``market_lots <= target`` and each ``limit + market <= target``."""

    market_lots: int
    limit_lots_by_venue: Mapping[str, int]

    @property
    def total_lots(self) -> int:
        """``M + sum L_k`` in lots."""
        return self.market_lots + sum(self.limit_lots_by_venue.values())


def round_to_lots(split: Split, *, target_lots: int, lot_size: float,
                  venue_lot_multiple: Mapping[str, int] | None = None, market_lot_multiple: int = 1,
                  exact_total: bool = False) -> LotSplit:
    """Round a continuous split to whole lots.

    ``lot_size`` is one common lot in the split's quantity unit; ``target_lots`` is ``S`` in
    common lots; a venue's orders must be multiples of ``venue_lot_multiple[name]`` common lots
    (default 1) and the market order of ``market_lot_multiple``. The market order is rounded to
    the nearest multiple, capped at the target; each limit order to the nearest multiple, capped
    at ``target - market`` (the paper's bound ``M + L_k <= S``).

    With ``exact_total`` (for a router whose allocations must add up to the order), the limit
    orders instead share ``target - market`` in proportion to the continuous ``L_k`` by largest
    remainder in their lot multiples; what lot granularity leaves over goes to the market order
    when its multiple allows, and otherwise stays unallocated (``total_lots < target_lots``).
    """
    if target_lots <= 0:
        raise ValueError(f"target_lots must be > 0, got {target_lots}")
    _check_positive("lot_size", lot_size)
    if market_lot_multiple <= 0:
        raise ValueError(f"market_lot_multiple must be > 0, got {market_lot_multiple}")
    mult = {name: 1 for name in split.limit_qty_by_venue}
    for name, m in (venue_lot_multiple or {}).items():
        if name not in mult:
            raise ValueError(f"venue_lot_multiple names unknown venue {name!r}")
        if m <= 0:
            raise ValueError(f"venue_lot_multiple[{name!r}] must be > 0, got {m}")
        mult[name] = m

    def nearest(q: float, step: int, cap: int) -> int:
        units = math.floor(q / lot_size / step + 0.5)
        return max(0, min(units * step, cap - cap % step))

    market = nearest(split.market_qty, market_lot_multiple, target_lots)
    rest = target_lots - market
    if not exact_total:
        return LotSplit(market, {name: nearest(q, mult[name], rest)
                                 for name, q in split.limit_qty_by_venue.items()})
    weights = {name: max(q, 0.0) for name, q in split.limit_qty_by_venue.items()}
    total_w = sum(weights.values())
    limits = dict.fromkeys(weights, 0)
    if rest and total_w > 0:
        shares = {name: rest * w / total_w for name, w in weights.items()}
        for name, sh in shares.items():
            limits[name] = math.floor(sh / mult[name]) * mult[name]
        left = rest - sum(limits.values())
        order = sorted(weights, key=lambda nm: (-(shares[nm] - limits[nm]), list(weights).index(nm)))
        progress = True
        while left > 0 and progress:
            progress = False
            for name in order:
                if mult[name] <= left and weights[name] > 0:
                    limits[name] += mult[name]
                    left -= mult[name]
                    progress = True
                    if left <= 0:
                        break
        rest = left
    if rest:
        extra = (rest // market_lot_multiple) * market_lot_multiple
        market += extra
    return LotSplit(market, limits)
