"""OrderManager.parent_accounting folds terminal orders into a running sum: it must always equal the
brute-force sum over every order of the parent, whatever happens to them afterwards (late fills
after a cancel, status reports raising the filled lots, orders of other parents). The same for
the index behind open_orders()."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.clock import SimClock
from marketdata.model import (
    ClientOrderId,
    Fill,
    Instrument,
    InstrumentKind,
    Liquidity,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    Side,
    TradeId,
    VenueId,
)
from venues.base import OrderStatusReport
from venues.order_manager import OrderManager, ParentAccounting

SPOT = Instrument(VenueId("binance-spot"), "BTC-USDT", "BTCUSDT", "BTC", "USDT",  # type: ignore[arg-type]
                  Decimal("0.01"), Decimal("0.00001"))
USDM = Instrument(VenueId("binance-usdm"), "BTC-USDT", "BTCUSDT", "BTC", "USDT",  # type: ignore[arg-type]
                  Decimal("0.1"), Decimal("0.001"), kind=InstrumentKind.PERPETUAL)
K = OrderEventKind
S = OrderStatus


def _brute(om: OrderManager, pid: str) -> ParentAccounting:
    filled = working = in_flight = unknown = 0
    for mo in om.orders(pid):
        f = om.to_parent_units(mo.order.venue, mo.order.symbol, 1)
        filled += mo.executed_lots * f
        rem = mo.open_lots * f
        if mo.status is S.PENDING_NEW:
            in_flight += rem
        elif mo.status is S.UNKNOWN:
            unknown += rem
        else:
            working += rem
    return ParentAccounting(filled, working, in_flight, unknown)


ACTIONS = st.lists(st.tuples(st.sampled_from(["submit", "ack", "fill", "cancel", "canceled", "expired",
                                              "report", "account"]),
                             st.integers(0, 30), st.integers(1, 60), st.sampled_from(["P1", "P2"])),
                   min_size=1, max_size=80)


@settings(max_examples=150, deadline=None)
@given(ACTIONS)
def test_folded_accounting_equals_brute_force(actions: list[tuple[str, int, int, str]]) -> None:
    clock = SimClock(1_700_000_000_000_000_000)
    om = OrderManager(clock, [SPOT, USDM], run_id="r1")
    cids: list[tuple[str, str]] = []
    trade = 0
    for act, k, lots, pid in actions:
        if act == "submit" or not cids:
            venue = "binance-spot" if k % 2 else "binance-usdm"
            o = om.submit(venue=venue, symbol="BTC-USDT", side=Side.BUY, lots=lots * 10, price_ticks=6_000_000,
                          parent_id=pid)
            cids.append((o.client_order_id, venue))
            continue
        cid, venue = cids[k % len(cids)]
        mo = om.order(cid)
        ev_kw = {"client_order_id": ClientOrderId(cid), "venue": VenueId(venue), "ts_event": 1, "ts_init": 1}
        if act == "ack":
            om.on_event(OrderEvent(kind=K.ACCEPTED, **ev_kw))   # type: ignore[arg-type]
        elif act == "fill":   # also after the order is terminal: a late fill
            trade += 1
            f = Fill(client_order_id=ClientOrderId(cid), venue=VenueId(venue), symbol="BTC-USDT",  # type: ignore[arg-type]
                     side=Side.BUY, trade_id=TradeId(f"t{trade}"), price_ticks=6_000_000, lots=lots,
                     fee=Decimal(0), fee_currency="USDT", liquidity=Liquidity.TAKER, ts_event=2, ts_init=2)
            om.on_event(OrderEvent(kind=K.PARTIALLY_FILLED, fill=f, **ev_kw))   # type: ignore[arg-type]
        elif act == "cancel" and not mo.status.is_terminal:
            om.cancel(cid)
        elif act in ("canceled", "expired"):
            om.on_event(OrderEvent(kind=K.CANCELED if act == "canceled" else K.EXPIRED, **ev_kw))  # type: ignore[arg-type]
        elif act == "report":
            st_ = mo.status if mo.status is not S.PENDING_NEW else S.NEW
            om.on_status_report(OrderStatusReport(
                client_order_id=ClientOrderId(cid), venue=VenueId(venue), symbol="BTC-USDT", side=Side.BUY,
                status=st_, lots=mo.order.lots, filled_lots=mo.executed_lots + lots, price_ticks=6_000_000))
        for p in ("P1", "P2"):
            assert om.parent_accounting(p) == _brute(om, p)
        # the open-order index (kept on every status change, late fills reopening) = the scan
        assert {m.client_order_id for m in om.open_orders()} == {
            cid for cid, _v in cids if not om.order(cid).status.is_terminal}
    for p in ("P1", "P2"):
        assert om.parent_accounting(p) == _brute(om, p)
