"""Review: a manager restored from the journal of a random session must equal the live one
(every order's status, filled lots, size, replace links, and each parent's accounting)."""

from __future__ import annotations

import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_order_manager import SPOT, USDM, K, S

from marketdata.clock import SimClock
from marketdata.errors import InvariantError, RateLimited, RiskRejected, VenueTimeout
from marketdata.model import (
    ClientOrderId,
    Fill,
    Liquidity,
    OrderEvent,
    OrderEventKind,
    Side,
    TradeId,
    VenueId,
)
from venues.base import OrderStatusReport
from venues.journal import Journal
from venues.order_manager import OrderManager

V = "binance-spot"


def _ev(kind: OrderEventKind, cid: str, **kw: object) -> OrderEvent:
    return OrderEvent(kind=kind, client_order_id=ClientOrderId(cid), venue=VenueId(V), ts_event=1,
                      ts_init=1, **kw)  # type: ignore[arg-type]


def _fill(cid: str, trade: str, lots: int, kind: OrderEventKind = K.PARTIALLY_FILLED) -> OrderEvent:
    f = Fill(client_order_id=ClientOrderId(cid), venue=VenueId(V), symbol="BTC-USDT",  # type: ignore[arg-type]
             side=Side.BUY, trade_id=TradeId(trade), price_ticks=6_180_020, lots=lots, fee=Decimal("0.01"),
             fee_currency="USDT", liquidity=Liquidity.TAKER, ts_event=2, ts_init=2)
    return _ev(kind, cid, fill=f)


def _snapshot(om: OrderManager) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for mo in om.orders():
        st_ = S.UNKNOWN if mo.status is S.PENDING_NEW else mo.status   # restore: unanswered -> UNKNOWN
        out[mo.client_order_id] = (st_, mo.filled_lots, mo.venue_filled_lots, mo.order.lots,
                                   mo.order.price_ticks, mo.pending_replace, mo.replaces, mo.replaced_by,
                                   sorted(f.trade_id for f in mo.fills), mo.open_lots, mo.acked,
                                   mo.overfilled)
    return out


def _acct(om: OrderManager, pid: str) -> tuple[int, int, int]:
    a = om.parent_accounting(pid)
    return a.filled, a.working, a.in_flight + a.unknown


ACTIONS = st.lists(st.tuples(st.sampled_from(["submit", "ack", "fill", "dupfill", "cancel", "canceled",
                                              "cancel_rejected", "reject", "timeout", "retry", "report",
                                              "replace", "replaced", "ratelimited", "expired",
                                              "reconcile_gone"]),
                             st.integers(0, 10), st.integers(1, 120), st.sampled_from(["P1", "P2"])),
                   min_size=1, max_size=50)


def _drive(om: OrderManager, actions: list[tuple[str, int, int, str]]) -> None:
    cids: list[str] = []
    trade = 0
    for action, pick, qty, pid in actions:
        mo = om.order(cids[pick % len(cids)]) if cids else None
        try:
            if action == "submit":
                cids.append(om.submit(venue=V, symbol="BTC-USDT", side=Side.BUY, lots=qty,
                                      price_ticks=6_180_020, parent_id=pid).client_order_id)
            elif mo is None:
                continue
            elif action == "ack":
                om.on_event(_ev(K.ACCEPTED, mo.client_order_id))
            elif action in ("fill", "dupfill"):
                room = mo.order.lots - mo.executed_lots
                if room > 0 and mo.status is not S.REJECTED:
                    trade += action == "fill"
                    om.on_event(_fill(mo.client_order_id, f"t{trade}", min(qty, room)))
            elif action == "cancel":
                om.cancel(mo.client_order_id)
            elif action == "canceled":
                om.on_event(_ev(K.CANCELED, mo.client_order_id))
            elif action == "expired":
                om.on_event(_ev(K.EXPIRED, mo.client_order_id))
            elif action == "cancel_rejected":
                om.on_event(_ev(K.CANCEL_REJECTED, mo.client_order_id, reason="unknown order"))
            elif action == "reject":
                om.on_event(_ev(K.REJECTED, mo.client_order_id, reason="duplicate" if qty % 3 == 0 else "x"))
            elif action == "timeout":
                om.on_send_failed(mo.client_order_id, VenueTimeout("t"))
            elif action == "ratelimited":
                om.on_send_failed(mo.client_order_id, RateLimited("429"))
            elif action == "retry":
                om.retry_submit(mo.client_order_id)
            elif action == "report":
                status = [S.NEW, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED][qty % 4]
                filled = min(mo.order.lots, mo.executed_lots + qty % 7)
                om.on_status_report(OrderStatusReport(mo.client_order_id, VenueId(V), "BTC-USDT", Side.BUY,
                                                      status, mo.order.lots, filled))
            elif action == "replace":
                new = om.replace(mo.client_order_id, lots=mo.executed_lots + qty, native=pick % 2 == 0,
                                 price_ticks=6_180_000 + pick)
                if new.client_order_id != mo.client_order_id:
                    cids.append(new.client_order_id)
            elif action == "replaced":
                om.on_event(_ev(K.REPLACED, mo.client_order_id))
            elif action == "reconcile_gone":
                om.reconcile([], absent_means_gone=True, venues=[V])
        except (InvariantError, RiskRejected):
            pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_restore_of_a_random_session_equals_the_live_state(actions: list[tuple[str, int, int, str]]) -> None:
    """Replay the journal of a random session (fills before/after cancels, rejects, timeouts and
    retries, status reports, both kinds of replace, reconcile) and compare with the live manager."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "j.db"
        clock = SimClock(start_ns=10**18)
        j = Journal(path, synchronous="NORMAL")
        om = OrderManager(clock, [SPOT, USDM], journal=j, run_id="r")
        _drive(om, actions)
        live = _snapshot(om)
        acct = {p: _acct(om, p) for p in ("P1", "P2")}
        j.close()
        j2 = Journal(path, synchronous="NORMAL")
        om2 = OrderManager.restore(j2, clock, [SPOT, USDM], run_id="r")
        try:
            assert not om2.errors or all("journal seq" not in str(e) for e in om2.errors)
            assert _snapshot(om2) == live
            assert {p: _acct(om2, p) for p in ("P1", "P2")} == acct
        finally:
            j2.close()
