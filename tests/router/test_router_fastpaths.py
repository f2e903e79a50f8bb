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
