"""Hot-path shortcuts of the router give exactly what the slow paths give."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.model import Instrument, InstrumentKind, Side, Symbol, VenueId
from router.routing import _order_thresholds
from router.scoring import MarketActivity

S = 1_000_000_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3 * S), st.one_of(st.none(), st.integers(100, 110)), st.integers(0, 9),
                          st.one_of(st.none(), st.integers(101, 112)), st.integers(0, 9)), max_size=30),
       st.integers(-S, 20 * S), st.sampled_from([Side.BUY, Side.SELL]))
def test_rate_and_volatility_equals_the_two_calls(updates: list[tuple[int, int | None, int, int | None, int]],
                                                  later: int, side: Side) -> None:
    act = MarketActivity(tau_ns=2 * S)
    t = 0
    for dt, bid, bl, ask, al in updates:
        t += dt
        act.on_top(t, bid, bl, ask, al)
    now = t + later
    assert act.rate_and_volatility(side, now) == (act.depletion_rate_hz(side, now), act.volatility_ticks(now))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["0.01", "0.1", "0.5", "1"]), st.sampled_from(["0.00001", "0.001", "1"]),
       st.sampled_from(["0", "0.00001", "0.001", "0.37"]), st.sampled_from(["0", "5", "100", "10.5"]),
       st.sampled_from(list(InstrumentKind)), st.integers(1, 10_000_000), st.integers(1, 2_000_000))
def test_order_thresholds_never_pass_an_order_check_order_rejects(tick: str, lot: str, min_qty: str,
                                                                   min_notional: str, kind: InstrumentKind,
                                                                   ticks: int, lots: int) -> None:
    inst = Instrument(VenueId("x"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D(tick), D(lot), D(min_qty),
                      D(min_notional), kind, contract_size=D("100") if kind is InstrumentKind.INVERSE_PERPETUAL
                      else D(1))
    ok_lots, ok_size, by_lots = _order_thresholds(inst)
    fast_ok = lots >= ok_lots and (lots if by_lots else ticks * lots) >= ok_size
    if fast_ok:
        assert inst.check_order(ticks, lots) is None
    # and the lot threshold is tight: two lots below it the exact check rejects the order
    if inst.min_quantity and ok_lots >= 3:
        assert inst.check_order(ticks, ok_lots - 2) is not None


def _bench_router(capacity: object = None) -> object:
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.test_bench_router import _setup

    return _setup(capacity)[0]  # type: ignore[arg-type]


def test_post_slices_at_and_below_the_minimums_get_the_exact_check() -> None:
    """The integer shortcut only skips Instrument.check_order well above the minimums: a post
    slice below min_notional is still skipped with the venue-style reason, one at it is placed."""
    from router.routing import Router, RouteRequest

    router = _bench_router()
    assert isinstance(router, Router)
    # every bench venue: min_notional 5 USDT, best bid ~61,800: 0.00001 BTC is ~0.62 USDT
    small = router.route(RouteRequest("BTC-USDT", Side.BUY, D("0.00001"), None, "post"))
    assert not small.allocations and small.residual_lots
    assert small.residual_reason is not None and "below min_notional 5" in small.residual_reason
    assert any("post slice skipped: notional" in n for v in small.venues for n in v.factors.get("notes", []))
    assert "post 0 of 0.00001 on no venue ranked by smart passive score" in small.explanation
    # the smallest quantity at or above 5 USDT on the best-ranked venue is placed, and agrees
    # with the exact check
    ok = router.route(RouteRequest("BTC-USDT", Side.BUY, D("0.0001"), None, "post"))
    assert ok.allocations and ok.residual_lots == 0
    a = ok.allocations[0]
    inst = router._venues[a.venue].instrument
    assert inst is not None and inst.check_order(a.price_ticks, a.lots) is None


def test_balance_limits_follow_the_balance_values() -> None:
    """The memoised balance conversion is keyed by the balance itself: a changed balance is
    seen at the next decision, with the same result as a router that never saw the old one."""
    from router.routing import Router, RouteRequest
    from router.scoring import StaticCapacity

    def fresh(bal: dict[str, dict[str, D]]) -> Router:
        r = _bench_router(StaticCapacity({v: dict(b) for v, b in bal.items()}))
        assert isinstance(r, Router)
        return r

    balances = {f"v{i}": {"BTC": D("2"), "USDT": D("150000")} for i in range(5)}
    cap = StaticCapacity(balances)
    router = _bench_router(cap)
    assert isinstance(router, Router)
    req = RouteRequest("BTC-USDT", Side.BUY, D("5"), None, "take")
    for usdt in ("150000", "0", "20000", "150000.00", "3"):
        for v in cap.balances.values():
            v["USDT"] = D(usdt)
        d = router.route(req)
        again = fresh(cap.balances).route(req)
        assert [(a.venue, a.lots, a.price_ticks) for a in d.allocations] == \
            [(a.venue, a.lots, a.price_ticks) for a in again.allocations]
        assert d.residual_lots == again.residual_lots and d.residual_reason == again.residual_reason
        if usdt == "0":
            assert all(v.excluded_reason == "no available USDT balance" for v in d.venues)


def test_a_garbled_balance_excludes_that_venue_with_the_reason() -> None:
    """A capacity provider answering NaN or Infinity for a balance: that venue is excluded with
    the reason, the others still take the order; an int balance is read like its Decimal."""
    from router.routing import Router, RouteRequest
    from router.scoring import StaticCapacity

    balances = {f"v{i}": {"BTC": D("2"), "USDT": D("150000")} for i in range(5)}
    balances["v0"]["USDT"] = D("NaN")
    balances["v2"]["USDT"] = D("Infinity")
    balances["v4"]["USDT"] = 150000  # type: ignore[assignment]
    router = _bench_router(StaticCapacity(balances))
    assert isinstance(router, Router)
    d = router.route(RouteRequest("BTC-USDT", Side.BUY, D("1"), None, "take"))
    reasons = {v.venue: v.excluded_reason for v in d.venues}
    assert reasons["v0"] == "available USDT balance NaN is not a finite number"
    assert reasons["v2"] == "available USDT balance Infinity is not a finite number"
    assert reasons["v1"] is None and reasons["v3"] is None and reasons["v4"] is None
    assert d.allocations and {a.venue for a in d.allocations} <= {"v1", "v3", "v4"}
    import json
    assert json.loads(json.dumps(d.to_dict(), allow_nan=False))["venues"]  # the journal payload still renders
