"""Scoring factors: Beta fill estimators, health/circuit breaker, activity, latency haircut."""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from marketdata.model import Side
from router.scoring import (
    BetaFill,
    BreakerState,
    MarketActivity,
    StaticCapacity,
    UnlimitedCapacity,
    VenueHealth,
    latency_haircut,
)

S = 1_000_000_000


def test_beta_fill_posterior_mean() -> None:
    b = BetaFill(1.0, 1.0)
    assert b.mean == 0.5
    b.record(10, 10)
    b.record(10, 0)
    b.record(4, 1)
    assert b.alpha == pytest.approx(2.25) and b.beta == pytest.approx(2.75)
    assert b.mean == pytest.approx(2.25 / 5)
    assert b.orders == 3
    with pytest.raises(ValueError):
        b.record(1, 2)
    with pytest.raises(ValueError):
        BetaFill(0, 1)


def test_breaker_opens_half_opens_and_closes() -> None:
    h = VenueHealth(failures_to_open=3, cooldown_ns=10 * S)
    h.record_reject(0)
    h.record_timeout(1)
    assert h.state(2) is BreakerState.CLOSED
    h.record_reject(2)
    assert h.state(3) is BreakerState.OPEN
    assert h.state(2 + 10 * S) is BreakerState.HALF_OPEN
    h.record_timeout(2 + 10 * S)  # a failed probe re-opens for a new cooldown
    assert h.state(3 + 10 * S) is BreakerState.OPEN
    assert h.state(2 + 20 * S) is BreakerState.HALF_OPEN
    h.record_success(2 + 20 * S)
    assert h.state(2 + 20 * S) is BreakerState.CLOSED and h.consecutive_failures == 0
    assert (h.rejects, h.timeouts, h.successes) == (2, 2, 1)


def test_activity_counts_depletions_per_side_and_decays() -> None:
    a = MarketActivity(tau_ns=1 * S)
    a.on_top(0, 100, 5, 101, 5)
    a.on_top(S // 10, 100, 5, 101, 3)   # ask shrank: buy-side depletion
    a.on_top(2 * S // 10, 100, 5, 102, 3)  # ask up: another
    a.on_top(3 * S // 10, 100, 9, 102, 3)  # bid grew: nothing
    now = 3 * S // 10
    r_buy = a.depletion_rate_hz(Side.BUY, now)
    assert r_buy == pytest.approx(math.exp(-0.2) + math.exp(-0.1), rel=1e-9)
    assert a.depletion_rate_hz(Side.SELL, now) == 0.0
    # mid moved 100.5 -> 101 once: variance 0.25 decayed
    assert a.volatility_ticks(now) == pytest.approx(math.sqrt(0.25 * math.exp(-0.1)), rel=1e-9)
    assert a.depletion_rate_hz(Side.BUY, now + 10 * S) < r_buy * 1e-4


def test_latency_haircut_formula() -> None:
    est = latency_haircut(book_age_ns=50_000_000, order_rtt_ns=50_000_000, depletion_rate_hz=5.0,
                          volatility_ticks=40.0, price_ticks=6_000_000.0)
    assert est.delay_s == pytest.approx(0.1)
    assert est.p_gone_top == pytest.approx(1 - math.exp(-0.5))
    assert est.move_ticks == pytest.approx(40 * math.sqrt(0.1))
    assert est.cost_bps == pytest.approx(est.p_gone_top * est.move_ticks / 6_000_000 * 1e4)
    assert est.keep_fraction(0) == pytest.approx(1 - est.p_gone_top)
    assert est.keep_fraction(0) < est.keep_fraction(10) < est.keep_fraction(100) <= 1.0
    fresh = latency_haircut(0, 0, 5.0, 40.0, 6e6)
    assert fresh.p_gone_top == 0.0 and fresh.keep_fraction(0) == 1.0
    older = latency_haircut(500_000_000, 50_000_000, 5.0, 40.0, 6e6)
    assert older.p_gone_top > est.p_gone_top


def test_capacity_providers() -> None:
    c = StaticCapacity({"a": {"USDT": D("100")}}, {"a": 3})
    assert c.available_balance("a", "USDT") == D("100")
    assert c.available_balance("a", "BTC") == D(0)
    assert c.available_balance("b", "USDT") is None
    assert c.order_headroom("a") == 3 and c.order_headroom("b") is None
    u = UnlimitedCapacity()
    assert u.available_balance("x", "y") is None and u.order_headroom("x") is None
