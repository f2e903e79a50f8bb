"""Review of the live capacity rule (:meth:`router.engine_live.LiveRuntime.available_balance`) and
of the bookkeeping of our orders behind it (``LiveRuntime._on_order_event``): which events say the
venue's balance shows an order, and that settled or foreign orders are forgotten. The stubs of
``test_engine_live_balance.py`` stand in for the adapter's cache and the order manager; the
orders, events and the rule are the real ones."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from test_engine_live_balance import INST, T, V, _order, _runtime, _Venue

from marketdata.model import ClientOrderId, OrderEvent, OrderEventKind, OrderStatus, Side, VenueId


class _NoBaseVenue(_Venue):
    """An account that holds none of the base asset: ``GET /api/v3/account`` with
    ``omitZeroBalances=true`` never lists it, so it has no account time."""

    def balance_as_of_ns(self, asset: str) -> int | None:
        return None if asset == INST.base else T


def _event(cid: str, kind: OrderEventKind, ts: int) -> OrderEvent:
    return OrderEvent(kind=kind, client_order_id=ClientOrderId(cid), venue=VenueId(V), ts_event=ts, ts_init=ts)


def _with_engine(rt: Any, om: Any) -> None:
    rt.engine = SimpleNamespace(om=om, _on_order_event=lambda ev: None)


def test_settled_buys_are_forgotten_when_the_base_asset_has_no_account_time() -> None:
    """A buy-only run on an account without any BTC: each buy was cancelled unfilled and the
    USDT balance at T already shows it. The entry must be dropped (the order can never change a
    figure again); it was kept as long as BTC had no account time newer than the order, i.e.
    forever here: one entry per order ever sent, scanned on every capacity check."""
    rt, om = _runtime()
    rt.venues = {V: _NoBaseVenue("10000", "0")}
    for k in range(50):
        _order(rt, om, f"b{k}", Side.BUY, "0.1", "60000", OrderStatus.CANCELED, (T - 100 + k, T - 50 + k))
    assert rt.available_balance(V, "USDT") == 10_000
    assert rt._unsettled[V] == {}


def test_events_of_orders_this_run_did_not_send_leave_no_entry() -> None:
    """A hand-placed order on the same account fills and is cancelled (``foreign_order_event``):
    it is not ours, never counted, so it must not be kept in the unsettled set for ever."""
    rt, om = _runtime()
    _with_engine(rt, om)
    rt._on_order_event(V, _event("web_123", OrderEventKind.ACCEPTED, T + 5))
    rt._on_order_event(V, _event("web_123", OrderEventKind.CANCELED, T + 6))
    assert rt.available_balance(V, "USDT") == 10_000
    assert ClientOrderId("web_123") not in rt._unsettled[V]


def test_a_refused_cancel_before_the_ack_does_not_count_as_shown_by_the_balance() -> None:
    """A buy of 0.1 at 60,000 is sent; its cancel reaches the venue first and is refused
    (unknown order: CANCEL_REJECTED, stamped before the balance's account time T); the order is
    then acknowledged after T. The venue's figure at T does not hold the 6,000 lock, so the
    router may spend 4,000 throughout; the refusal was taken as the order's first sign of life
    at the venue (before T): no debit at all, 10,000 offered."""
    rt, om = _runtime()
    _with_engine(rt, om)
    mo = _order(rt, om, "b1", Side.BUY, "0.1", "60000", OrderStatus.PENDING_NEW, (None, None))
    assert rt.available_balance(V, "USDT") == Decimal(4_000)
    rt._on_order_event(V, _event("b1", OrderEventKind.CANCEL_REJECTED, T - 10))
    assert rt.available_balance(V, "USDT") == Decimal(4_000)
    mo.status = OrderStatus.NEW
    rt._on_order_event(V, _event("b1", OrderEventKind.ACCEPTED, T + 5))
    assert rt.available_balance(V, "USDT") == Decimal(4_000)


def test_a_later_event_with_an_earlier_stamp_does_not_hide_the_order() -> None:
    """Acknowledged after T (venue time), then an event stamped earlier arrives (the adapter
    stamps what it makes itself, e.g. a status-query report without a venue time, with the local
    clock, which may be behind the venue's): the order's latest venue event is still after T, so
    its lock is still a debit (the latest time must never move back)."""
    rt, om = _runtime()
    _with_engine(rt, om)
    mo = _order(rt, om, "b1", Side.BUY, "0.1", "60000", OrderStatus.PENDING_NEW, (None, None))
    mo.status = OrderStatus.NEW
    rt._on_order_event(V, _event("b1", OrderEventKind.ACCEPTED, T + 5))
    rt._on_order_event(V, _event("b1", OrderEventKind.ACCEPTED, T - 20))
    assert rt.available_balance(V, "USDT") == Decimal(4_000)
