"""A status report (REST order query, reconciliation) that says REJECTED for an order the venue
already acknowledged is refused the way the event path refuses the same REJECTED event: logged,
an InvariantError recorded, journaled as ``garbled_event``, the order kept as it was.

Why refused rather than mapped to another terminal status: Binance's order status REJECTED means
"The order was not accepted by the engine and not processed" (spot API, ENUM definitions), and a
refused order is not kept: ``GET /api/v3/order`` answers -2013 "Order does not exist." for it, so
the adapter itself answers REJECTED only from its own record of a refusal
(``BinanceSpotVenue.order_status``) and parses a REJECTED status one to one
(``venues/binance/parsers.py``: ``_STATUS``). A REJECTED for an acknowledged order is therefore a
contradiction (a report about another order, a stale record), never a disguised cancel or expiry:
mapping it to CANCELED or EXPIRED would drop a possibly working order from the parent's exposure.
The order stays in its state (it counts as working) until a consistent answer settles it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from test_order_manager import SPOT, K, S

from marketdata.clock import SimClock
from marketdata.model import (
    ClientOrderId,
    Fill,
    Liquidity,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    Side,
    TradeId,
    VenueId,
    VenueOrderId,
)
from venues.base import OrderStatusReport
from venues.journal import Journal
from venues.order_manager import OrderManager

V = VenueId("binance-spot")
T0 = 10**18


def _om(journal: Journal | None = None) -> OrderManager:
    return OrderManager(SimClock(start_ns=T0), [SPOT], run_id="r", journal=journal)


def _ev(kind: OrderEventKind, cid: str, **kw: object) -> OrderEvent:
    return OrderEvent(kind=kind, client_order_id=ClientOrderId(cid), venue=V, ts_event=1, ts_init=1,
                      **kw)  # type: ignore[arg-type]


def _report(cid: str, status: OrderStatus, filled: int = 0, lots: int = 10) -> OrderStatusReport:
    return OrderStatusReport(client_order_id=ClientOrderId(cid), venue=V, symbol=SPOT.symbol, side=Side.BUY,
                             status=status, lots=lots, filled_lots=filled, price_ticks=6_180_020,
                             venue_order_id=VenueOrderId("777"), ts_event=5)


def _acked_with_cancel_pending(om: OrderManager) -> str:
    cid = om.submit(venue=V, symbol=SPOT.symbol, side=Side.BUY, lots=10, price_ticks=6_180_020,
                    parent_id="P").client_order_id
    om.on_event(_ev(K.ACCEPTED, cid, venue_order_id=VenueOrderId("777")))
    om.cancel(cid)
    assert om.order(cid).status is S.PENDING_CANCEL and om.order(cid).acked
    return cid


@pytest.mark.parametrize("path", ["status_report", "reconcile"])
def test_rejected_report_for_an_acked_order_with_a_cancel_pending_is_refused(path: str, tmp_path: Path) -> None:
    """Failed before: the event path refused this REJECTED (test_oms_review3), the report path
    moved the acknowledged order PENDING_CANCEL -> REJECTED (legal in the table, for a cancel that
    overtook an order not yet acknowledged): an order the venue had taken was booked as never
    placed, and its 10 lots left the parent's exposure."""
    with Journal(tmp_path / "j.sqlite") as j:
        om = _om(j)
        cid = _acked_with_cancel_pending(om)
        assert om.parent_exposure("P") == 10
        if path == "status_report":
            assert om.on_status_report(_report(cid, S.REJECTED)) is True
        else:
            res = om.reconcile([_report(cid, S.REJECTED)])
            assert cid not in res.settled
        mo = om.order(cid)
        assert mo.status is S.PENDING_CANCEL, mo.status
        assert om.parent_exposure("P") == 10
        assert om.stats["garbled"] == 1
        assert any("acknowledged" in str(e) for e in om.errors), om.errors
        garbled = [dict(r.payload) for r in j.read(kinds=["garbled_event"])]
        assert len(garbled) == 1 and "acknowledged" in garbled[0]["error"]
        # a consistent answer still settles it
        om.on_status_report(_report(cid, S.CANCELED))
        assert om.order(cid).status is S.CANCELED
        # and a restart from the journal replays to the same state, without a new error
        back = OrderManager.restore(j, SimClock(start_ns=T0 + 1), [SPOT], run_id="r")
        assert back.order(cid).status is S.CANCELED


def test_rejected_report_for_a_partly_filled_order_with_a_cancel_pending_is_refused() -> None:
    """Failed before, the same way: an order with fills (a fill is a fact) cannot have been
    rejected; the event path refuses it, the report path took it."""
    om = _om()
    cid = _acked_with_cancel_pending(om)
    f = Fill(client_order_id=ClientOrderId(cid), venue=V, symbol=SPOT.symbol, side=Side.BUY,
             trade_id=TradeId("t1"), price_ticks=6_180_020, lots=4, fee=Decimal("0.01"), fee_currency="USDT",
             liquidity=Liquidity.MAKER, ts_event=2, ts_init=2)
    om.on_event(_ev(K.PARTIALLY_FILLED, cid, fill=f))
    assert om.order(cid).status is S.PENDING_CANCEL
    om.on_status_report(_report(cid, S.REJECTED, filled=4))
    assert om.order(cid).status is S.PENDING_CANCEL
    assert om.stats["garbled"] == 1 and om.errors


def test_rejected_report_for_an_order_never_acked_still_rejects_it() -> None:
    """The case the table's PENDING_CANCEL -> REJECTED is for (not failing before): a cancel that
    overtook an order the venue never acknowledged, and the venue says it refused the order."""
    om = _om()
    cid = om.submit(venue=V, symbol=SPOT.symbol, side=Side.BUY, lots=10, price_ticks=6_180_020,
                    parent_id="P").client_order_id
    om.cancel(cid)
    om.on_status_report(_report(cid, S.REJECTED))
    assert om.order(cid).status is S.REJECTED
    assert om.errors == [] and om.stats["garbled"] == 0
    assert om.parent_exposure("P") == 0


def test_mark_unresolved_is_journaled_and_restored(tmp_path: Path) -> None:
    """OrderManager.mark_unresolved (a live shutdown giving up on an order): a submit without any
    answer becomes UNKNOWN (counted as unknown, no longer in flight), an acknowledged order keeps
    its status; both journaled as order_event source "unresolved" and replayed so by restore."""
    with Journal(tmp_path / "u.sqlite") as j:
        om = _om(j)
        sent = om.submit(venue=V, symbol=SPOT.symbol, side=Side.BUY, lots=10, price_ticks=6_180_020,
                         parent_id="P").client_order_id
        om.cancel(sent)   # the shutdown's cancel of a submit never answered
        acked = _acked_with_cancel_pending(om)
        assert om.parent_accounting("P").unknown == 0
        assert om.mark_unresolved(sent, "no answer") is S.UNKNOWN
        assert om.mark_unresolved(acked, "cancel not confirmed") is S.PENDING_CANCEL
        a = om.parent_accounting("P")
        assert (a.unknown, a.in_flight, a.working) == (10, 0, 10)
        rows = [dict(r.payload) for r in j.read(kinds=["order_event"]) if r.payload.get("source") == "unresolved"]
        assert [(r["client_order_id"], r["kind"], r["status"], r["previous"]) for r in rows] == [
            (sent, "submitted", "unknown", "pending_cancel"), (acked, "submitted", "pending_cancel", "pending_cancel")]
        back = OrderManager.restore(j, SimClock(start_ns=T0 + 1), [SPOT], run_id="r")
        assert back.order(sent).status is S.UNKNOWN and back.order(sent).reason == "no answer"
        assert back.order(acked).status is S.PENDING_CANCEL
        assert back.errors == []
        # an order that ended meanwhile: nothing to record
        om.on_event(_ev(K.CANCELED, acked))
        assert om.mark_unresolved(acked, "late") is S.CANCELED
        assert len([r for r in j.read(kinds=["order_event"]) if r.payload.get("source") == "unresolved"]) == 2
