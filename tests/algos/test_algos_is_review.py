"""Review of the implementation-shortfall algo (``algos/shortfall.py``) and the algo ledger
(``algos/base.py``). Each test that pins a bug says "Failed before." and what was wrong; the
ledger state machine checks the base against a simple reference model under random interleavings
of sends, acks, fills, unknown states, cancels, amends, pause and resume."""

from __future__ import annotations

import itertools
import math
import random
from decimal import Decimal
from typing import Any

import pytest
from algos_fakes import FakeContext
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from algos.base import AlgoStatus, ChildRequest, ExecutionAlgo
from algos.params import CommonParams
from algos.shortfall import ACModel, ShortfallAlgo
from algos.twap import TwapAlgo
from marketdata.clock import SimClock
from marketdata.errors import ConfigError
from marketdata.model import OrderStatus, Side

S = 1_000_000_000
T0 = 1_723_161_255_000_000_000
PAPER: dict[str, Any] = dict(X=1e6, T=5.0, N=5, sigma=0.95, eta=2.5e-6, gamma=2.5e-7, epsilon=0.0625, lam=1e-6)


# ---------------------------------------------------------------------------- the model
@pytest.mark.parametrize("bad", [dict(sigma=math.inf), dict(lam=math.inf), dict(X=math.inf),
                                 dict(epsilon=math.inf), dict(eta=math.inf, gamma=math.inf),
                                 dict(sigma=math.nan), dict(gamma=math.nan)])
def test_acmodel_refuses_non_finite_inputs(bad: dict[str, float]) -> None:
    """Failed before. ``ACModel`` checked only the sign of its inputs: an infinite sigma, risk
    aversion or quantity was accepted and gave NaN holdings (``x_0 = inf * 0``), which then broke
    ``split_exact`` with a bare ``ValueError``; ``eta = gamma = inf`` gave a NaN ``eta~`` that
    passed the convexity check (``nan <= 0`` is false)."""
    with pytest.raises(ConfigError):
        ACModel(**{**PAPER, **bad})


def test_acmodel_huge_but_finite_volatility_does_not_overflow() -> None:
    """Failed before. ``kappa`` squared sigma (``sigma ** 2``): a volatility of 1e200 raised
    ``OverflowError`` from the model instead of giving the immediate-liquidation trajectory."""
    m = ACModel(**{**PAPER, "sigma": 1e200})
    x = m.holdings()
    assert x[0] == 1e6 and all(v == 0.0 for v in x[1:])
    assert math.isfinite(m.kappa)


@pytest.mark.parametrize("lam", [1e-10, 1e-13, 1e-15, 1e-17])
def test_kappa_is_exact_as_lambda_goes_to_zero(lam: float) -> None:
    """Failed before (for the smaller lambdas). ``acosh(1 + kappa~^2 tau^2 / 2)`` loses the
    digits of a small ``kappa~^2 tau^2`` to the ``1 +``: at lambda = 1e-17 kappa was off by 1e-5
    relative (and exactly 0 below about 1e-20, a linear plan with an infinite half-life).
    ``cosh(k tau) = 1 + 2 sinh^2(k tau / 2)``, so ``kappa = 2 asinh(kappa~ tau / 2) / tau``
    exactly; checked against the series ``kappa~ (1 - kappa~^2 tau^2 / 24)``."""
    m = ACModel(**{**PAPER, "lam": lam})
    kt = math.sqrt(m.kappa_tilde_sq)
    assert m.kappa == pytest.approx(kt * (1 - kt ** 2 * m.tau ** 2 / 24), rel=1e-12)
    # the plan tends to TWAP, within (kappa T)^2 (the curvature of sinh)
    assert m.holdings() == pytest.approx([1e6, 8e5, 6e5, 4e5, 2e5, 0.0], rel=(m.kappa * m.T) ** 2)


def test_optimal_cost_of_a_very_risk_averse_plan_does_not_overflow() -> None:
    """Failed before. The closed form (20) divides ``sinh`` of ``kappa T``, which overflows above
    about 710: ``optimal_cost()`` raised ``OverflowError``, and the IS algo, which logs it with
    its plan, refused to start a very risk-averse parent (the trajectory had an overflow-free
    branch, the cost did not). Beyond ``kappa T = 300`` it now uses the same forms written with
    decaying exponentials, equal to the direct sums (8) and (5)."""
    for lam, n in ((1e6, 50), (1e-2, 5), (30.0, 5), (1e6, 1)):
        m = ACModel(**{**PAPER, "lam": lam, "N": n})
        e_opt, v_opt = m.optimal_cost()
        assert e_opt == pytest.approx(m.expected_cost(), rel=1e-10)
        assert v_opt == pytest.approx(m.variance(), rel=1e-9, abs=1e-300)
    assert ACModel(**{**PAPER, "lam": 1e6, "N": 50}).kappa * 5 > 710
    ctx = FakeContext(SimClock(T0), parent_lots=10_000)
    algo = ShortfallAlgo(CommonParams(T0, T0 + 500 * S), risk_aversion=1e6, periods=50, sigma=0.5,
                         eta=0.05, gamma=0.005, epsilon=0.01)
    ctx.start(algo)
    assert algo.status is AlgoStatus.RUNNING and algo.slice_lots()[0] >= 9_999   # all but rounding at once


def test_paper_example_unchanged() -> None:
    m = ACModel(**PAPER)
    assert m.kappa == pytest.approx(0.607076, abs=1e-6)
    assert [round(v) for v in m.holdings()] == [1_000_000, 541_956, 289_854, 147_897, 62_142, 0]
    e_opt, v_opt = m.optimal_cost()
    assert e_opt == pytest.approx(m.expected_cost(), rel=1e-10)
    assert v_opt == pytest.approx(m.variance(), rel=1e-10)


# ---------------------------------------------------------------------------- estimation
def test_shortfall_estimates_impact_on_a_crossed_consolidated_book() -> None:
    """Failed before. The consolidated book of several venues can be crossed for a moment (bid above
    ask). The spread was then negative and the parent was refused at its start with "spread and
    volume must be positive to estimate impact"; a locked book (spread 0) already used one tick.
    Both now use one tick, the smallest spread there is."""
    ctx = FakeContext(SimClock(T0), parent_lots=1000, bid=10_002, ask=10_001)
    algo = ShortfallAlgo(CommonParams(T0, T0 + 300 * S), risk_aversion=1e-4, periods=3, sigma=0.5,
                         volume_per_time_unit=2.0)
    ctx.start(algo)
    assert algo.status is AlgoStatus.RUNNING and algo.model is not None
    assert algo.model.epsilon == pytest.approx(0.01 / 2)


@pytest.mark.parametrize("key", ["sigma", "eta", "gamma", "epsilon", "volume_per_time_unit",
                                 "volume_per_second", "risk_aversion"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_shortfall_refuses_bad_model_inputs_when_built(key: str, value: float) -> None:
    """Failed before (NaN and infinite values). The constructor checked only ``risk_aversion < 0``
    (false for NaN): NaN or infinite model inputs were accepted and failed only at the start, or
    not at all (an infinite volume gave eta = 0, refused at the start as "eta"; an infinite sigma
    gave NaN holdings)."""
    kw: dict[str, Any] = {"risk_aversion": 1e-4, key: value}
    with pytest.raises(ConfigError, match=key):
        ShortfallAlgo(CommonParams(T0, T0 + 300 * S), **kw)


# ---------------------------------------------------------------------------- amend atomicity
def test_refused_amend_changes_nothing() -> None:
    """Failed before. ``amend(quantity=..., limit_price="abc")`` set the new parent quantity and
    only then refused the limit: the caller got a ``ConfigError`` but the parent was 500 lots with
    a schedule still summing to 1000 (and the sweep would have stopped at 500)."""
    ctx = FakeContext(SimClock(T0), parent_lots=1000)
    algo = TwapAlgo(CommonParams(T0, T0 + 300 * S), slices=5)
    ctx.start(algo)
    with pytest.raises(ConfigError, match="limit_price"):
        algo.amend(quantity="0.5", limit_price="abc")
    assert algo.parent_lots == 1000 and algo.cum_targets[-1] == 1000 and algo.limit_ticks is None


# ---------------------------------------------------------------------------- IS re-plan
def test_is_replan_keeps_the_plan_exact_through_random_fills() -> None:
    """Re-plans at every period start from what is filled: the targets always end at the parent,
    never decrease, start at what is filled, and no child exceeds the remainder."""
    for seed in range(6):
        rng = random.Random(seed)
        ctx = FakeContext(SimClock(T0), parent_lots=7_919, depth=rng.choice([13, 400, 10**9]),
                          latency_ns=rng.choice([1_000_000, 700_000_000]), unknown_ns=rng.choice([0, 3 * S]))
        algo = ShortfallAlgo(CommonParams(T0, T0 + 200 * S, seed=seed, urgency=rng.choice([0.0, 0.4])),
                             risk_aversion=rng.choice([0.0, 1e-3, 1e-1]), periods=7, sigma=0.5, eta=0.05,
                             gamma=0.005, epsilon=0.01)
        ctx.start(algo)
        for i in range(210):
            ctx.run_to(T0 + i * S + rng.randrange(S))
            if rng.random() < 0.5:
                px = rng.choice([ctx.bid, ctx.ask, (ctx.bid or 0) - 1])
                ctx.trade(px, rng.randint(1, 300))  # type: ignore[arg-type]
            c = algo.cum_targets
            assert c[-1] == algo.parent_lots and all(b >= a for a, b in itertools.pairwise(c))
        if ctx.depth > 13:   # (13 lots a take is too thin to sweep the rest in the last 10 s)
            assert algo.status is AlgoStatus.COMPLETED and algo.filled_lots == 7_919
        assert not ctx.violations, ctx.violations[:3]


# ---------------------------------------------------------------------------- ledger state machine
class _Probe(ExecutionAlgo):
    """An algo that sends only what the state machine asks for."""

    name = "probe"

    def _begin(self) -> None:
        pass

    def _reconcile(self, now_ns: int) -> None:
        pass


class _Engine:
    """A minimal AlgoContext whose events the state machine delivers by hand."""

    def __init__(self, parent_lots: int, limit: int | None) -> None:
        self.clock = SimClock(T0 + S)
        self.parent_id = "P"
        self.symbol = "BTC-USDT"
        self.side = Side.BUY
        self.parent_lots = parent_lots
        self.tick_size = Decimal("0.01")
        self.lot_size = Decimal("0.001")
        self.own_trades_in_feed = False
        self.bid: int | None = 9_999
        self.ask: int | None = 10_001
        self.sent: dict[str, ChildRequest] = {}
        self.filled: dict[str, int] = {}
        self.acked: set[str] = set()
        self.done: set[str] = set()
        self.limit = limit
        self.notional = 0

    def best_bid_ticks(self) -> int | None:
        return self.bid

    def best_ask_ticks(self) -> int | None:
        return self.ask

    def last_trade_ticks(self) -> int | None:
        return None

    def send_child(self, request: ChildRequest) -> str:
        cid = f"C{len(self.sent) + 1}"
        self.sent[cid] = request
        self.filled[cid] = 0
        return cid

    def cancel_child(self, child_id: str) -> None:
        pass

    def open_of(self, cid: str) -> int:
        return 0 if cid in self.done else self.sent[cid].lots - self.filled[cid]

    def filled_lots(self) -> int:
        return sum(self.filled.values())

    def working_lots(self) -> int:
        return sum(self.open_of(c) for c in self.sent if c in self.acked)

    def inflight_or_unknown_lots(self) -> int:
        return sum(self.open_of(c) for c in self.sent if c not in self.acked)

    def supports_native_iceberg(self) -> bool:
        return False

    def log_event(self, kind: str, **fields: Any) -> None:
        pass


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.eng: _Engine | None = None
        self.algo: _Probe | None = None

    @precondition(lambda self: self.algo is None)
    @rule(parent=st.integers(1, 500), limit=st.sampled_from([None, 10_000, 10_001, 9_990]),
          min_child=st.integers(1, 20))
    def start(self, parent: int, limit: int | None, min_child: int) -> None:
        self.eng = _Engine(parent, limit)
        self.algo = _Probe(CommonParams(T0, T0 + 600 * S, limit_ticks=limit, min_child_lots=min_child))
        self.algo.on_start(self.eng)   # type: ignore[arg-type]

    def _open_ids(self) -> list[str]:
        assert self.eng is not None
        return [c for c in self.eng.sent if c not in self.eng.done]

    @precondition(lambda self: self.algo is not None)
    @rule(lots=st.integers(1, 600), style=st.sampled_from(["take", "post", "mixed"]),
          px=st.sampled_from([None, 9_980, 10_000, 10_001, 10_050]))
    def send(self, lots: int, style: str, px: int | None) -> None:
        assert self.algo is not None and self.eng is not None
        parent = self.algo.parent_lots
        ref_filled = self.eng.filled_lots()
        ref_open = sum(self.eng.open_of(c) for c in self.eng.sent)
        avail = max(0, parent - ref_filled - ref_open)
        running = self.algo.status is AlgoStatus.RUNNING
        cid = self.algo._send(lots, style=style, limit_ticks=px)  # type: ignore[arg-type]
        if cid is None:
            return
        req = self.eng.sent[cid]
        assert running
        assert req.lots <= avail and req.lots <= lots
        assert req.lots >= self.algo.params.min_child_lots or req.lots in (avail, parent - ref_filled)
        lim = self.algo.limit_ticks
        if lim is not None:
            assert req.limit_ticks is not None and req.limit_ticks <= lim

    @precondition(lambda self: self.algo is not None)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        assert self.eng is not None
        ids = [c for c in self._open_ids() if c not in self.eng.acked]
        if ids:
            self.eng.acked.add(data.draw(st.sampled_from(ids)))

    @precondition(lambda self: self.algo is not None)
    @rule(data=st.data(), price=st.sampled_from([9_990, 10_000, 10_001]))
    def fill(self, data: st.DataObject, price: int) -> None:
        assert self.eng is not None and self.algo is not None
        ids = [c for c in self._open_ids() if self.eng.open_of(c) > 0]
        if not ids:
            return
        cid = data.draw(st.sampled_from(ids))
        n = data.draw(st.integers(1, self.eng.open_of(cid)))
        self.eng.filled[cid] += n
        self.eng.notional += n * price
        self.algo.on_child_fill(cid, n, price)
        if self.eng.open_of(cid) == 0:
            self.eng.done.add(cid)
            self.algo.on_child_done(cid, OrderStatus.FILLED)

    @precondition(lambda self: self.algo is not None)
    @rule(data=st.data(), status=st.sampled_from([OrderStatus.CANCELED, OrderStatus.REJECTED,
                                                   OrderStatus.EXPIRED]))
    def done(self, data: st.DataObject, status: OrderStatus) -> None:
        assert self.eng is not None and self.algo is not None
        ids = self._open_ids()
        if ids:
            cid = data.draw(st.sampled_from(ids))
            self.eng.done.add(cid)
            self.eng.acked.add(cid)
            self.algo.on_child_done(cid, status)
            self.algo.on_child_done(cid, status)   # a duplicate report changes nothing

    @precondition(lambda self: self.algo is not None)
    @rule(extra=st.integers(-50, 300))
    def amend_quantity(self, extra: int) -> None:
        assert self.eng is not None and self.algo is not None
        lots = self.eng.filled_lots() + extra
        before = (self.algo.parent_lots, self.algo.limit_ticks, self.algo.status)
        try:
            self.algo.amend(quantity=str(self.eng.lot_size * lots))
        except ConfigError:
            assert (self.algo.parent_lots, self.algo.limit_ticks, self.algo.status) == before
            assert lots <= 0 or lots < self.eng.filled_lots() or self.algo.status.is_terminal
            return
        self.eng.parent_lots = lots

    @precondition(lambda self: self.algo is not None)
    @rule(px=st.sampled_from(["99.80", "100.00", "100.01", "100.5"]))
    def amend_limit(self, px: str) -> None:
        assert self.algo is not None
        try:
            self.algo.amend(limit_price=px)
        except ConfigError:
            assert self.algo.status.is_terminal

    @precondition(lambda self: self.algo is not None)
    @rule(what=st.sampled_from(["pause", "resume", "cancel"]))
    def control(self, what: str) -> None:
        assert self.algo is not None
        getattr(self.algo, what)()

    @invariant()
    def ledger_matches_the_reference(self) -> None:
        if self.algo is None or self.eng is None:
            return
        algo, eng = self.algo, self.eng
        ref_open = sum(eng.open_of(c) for c in eng.sent)
        assert algo.open_lots() == ref_open
        assert sum(c.open_lots for c in algo.children.values()) == ref_open
        assert algo.filled_lots == eng.filled_lots()
        assert algo.available_lots() == max(0, algo.parent_lots - eng.filled_lots() - ref_open)
        assert algo.remaining_lots() == max(0, algo.parent_lots - eng.filled_lots())
        if eng.filled_lots():
            assert algo.average_price_ticks == Decimal(eng.notional) / eng.filled_lots()
        if algo.filled_lots >= algo.parent_lots and algo.status is not AlgoStatus.CANCELLED:
            assert algo.status in (AlgoStatus.COMPLETED, AlgoStatus.FINISHED)


LedgerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_ledger_state_machine = LedgerMachine.TestCase


def test_engine_volume_rate_is_converted_to_the_algos_own_time_unit() -> None:
    """Failed before (flagged by this review, fixed in algos/specs.py): without ``time_unit`` the
    IS spec turned the engine's observed ``volume_per_second`` into a volume per *second*, while
    the algo's time unit is one period (σ per √period): a 240 s, 10-period parent (24 s periods)
    got η = 1.0 instead of 0.0439. The spec now passes the rate on and the algo converts it, so the
    estimate equals the one made from the same rate given directly."""
    from algos.specs import IS
    kw = {"now_ns": T0, "side": Side.BUY, "tick_size": Decimal("0.01"), "lot_size": Decimal("0.001")}
    market = {"volume_per_second": 2.0}
    spec = IS(end="+240s", risk_aversion=1e-6, periods=10, sigma=0.5)
    built = spec.build(limit_price=None, market=market, **kw)
    assert isinstance(built, ShortfallAlgo)
    direct = ShortfallAlgo(CommonParams(T0, T0 + 240 * S), risk_aversion=1e-6, periods=10, sigma=0.5,
                           volume_per_second=2.0)
    for algo in (built, direct):
        FakeContext(SimClock(T0), parent_lots=1_000).start(algo)
    assert built.model is not None and direct.model is not None
    assert built.model.eta == pytest.approx(direct.model.eta, rel=1e-12)
    assert built.model.gamma == pytest.approx(direct.model.gamma, rel=1e-12)
