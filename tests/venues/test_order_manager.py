"""OrderManager: state machine, UNKNOWN resolution, fills, overfill, accounting, garbled input."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.clock import SimClock
from marketdata.errors import InvariantError, OrderRejected, OverfillError, RateLimited, RiskRejected, VenueTimeout
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
    VenueOrderId,
)
from venues.base import OrderStatusReport
from venues.journal import Journal
from venues.order_manager import ManagedOrder, OrderManager, check_transition, make_client_order_id

SPOT = Instrument(VenueId("binance-spot"), "BTC-USDT", "BTCUSDT", "BTC", "USDT",  # type: ignore[arg-type]
                  Decimal("0.01"), Decimal("0.00001"))
USDM = Instrument(VenueId("binance-usdm"), "BTC-USDT", "BTCUSDT", "BTC", "USDT",  # type: ignore[arg-type]
                  Decimal("0.1"), Decimal("0.001"), kind=InstrumentKind.PERPETUAL)
K = OrderEventKind
S = OrderStatus


def _om(journal: Journal | None = None, **kw: object) -> tuple[OrderManager, SimClock]:
    clock = SimClock(start_ns=1_700_000_000_000_000_000)
    return OrderManager(clock, [SPOT, USDM], journal=journal, run_id="r1", **kw), clock  # type: ignore[arg-type]


def ev(kind: OrderEventKind, cid: str, venue: str = "binance-spot", **kw: object) -> OrderEvent:
    return OrderEvent(kind=kind, client_order_id=ClientOrderId(cid), venue=VenueId(venue), ts_event=1,
                      ts_init=1, **kw)  # type: ignore[arg-type]


def fill_ev(cid: str, trade: str, lots: int, *, venue: str = "binance-spot", kind: OrderEventKind = K.PARTIALLY_FILLED,
            price: int = 6_180_020) -> OrderEvent:
    f = Fill(client_order_id=ClientOrderId(cid), venue=VenueId(venue), symbol="BTC-USDT",  # type: ignore[arg-type]
             side=Side.BUY, trade_id=TradeId(trade), price_ticks=price, lots=lots, fee=Decimal("0.01"),
             fee_currency="USDT", liquidity=Liquidity.TAKER, ts_event=2, ts_init=2)
    return ev(kind, cid, venue, fill=f)


def submit(om: OrderManager, lots: int = 100, parent: str = "P1", **kw: object) -> str:
    return om.submit(venue="binance-spot", symbol="BTC-USDT", side=Side.BUY, lots=lots, price_ticks=6_180_020,
                     parent_id=parent, **kw).client_order_id  # type: ignore[arg-type]


# ------------------------------------------------------------------ state machine
def test_transition_table_legal_and_illegal() -> None:
    check_transition(S.PENDING_NEW, S.NEW)
    check_transition(S.PENDING_NEW, S.UNKNOWN)
    check_transition(S.UNKNOWN, S.FILLED)
    check_transition(S.PENDING_CANCEL, S.PARTIALLY_FILLED)
    check_transition(S.NEW, S.NEW)
    for frm, to in [(S.FILLED, S.NEW), (S.CANCELED, S.PARTIALLY_FILLED), (S.NEW, S.REJECTED),
                    (S.NEW, S.PENDING_NEW), (S.REJECTED, S.FILLED), (S.PARTIALLY_FILLED, S.NEW)]:
        with pytest.raises(InvariantError, match=f"illegal transition {frm.value} -> {to.value}"):
            check_transition(frm, to)


def test_happy_path_ack_partial_fill() -> None:
    om, _ = _om()
    cid = submit(om)
    assert om.order(cid).status is S.PENDING_NEW
    om.on_event(ev(K.ACCEPTED, cid, venue_order_id=VenueOrderId("v1")))
    assert om.order(cid).status is S.NEW and om.order(cid).venue_order_id == "v1"
    om.on_event(fill_ev(cid, "t1", 40))
    assert om.order(cid).status is S.PARTIALLY_FILLED
    om.on_event(fill_ev(cid, "t2", 60, kind=K.FILLED))
    mo = om.order(cid)
    assert mo.status is S.FILLED and mo.filled_lots == 100 and [f.trade_id for f in mo.fills] == ["t1", "t2"]


def test_fill_before_ack_then_late_ack_is_harmless() -> None:
    om, _ = _om()
    cid = submit(om)
    om.on_event(fill_ev(cid, "t1", 30))
    assert om.order(cid).status is S.PARTIALLY_FILLED
    om.on_event(ev(K.ACCEPTED, cid))
    assert om.order(cid).status is S.PARTIALLY_FILLED
    om.on_event(fill_ev(cid, "t2", 70, kind=K.FILLED))
    om.on_event(ev(K.ACCEPTED, cid))  # stale ack after FILLED: ignored
    assert om.order(cid).status is S.FILLED
    assert om.stats["stale_events"] == 1


def test_duplicate_fills_dropped_by_venue_and_trade_id() -> None:
    om, _ = _om()
    cid = submit(om)
    om.on_event(fill_ev(cid, "t1", 30))
    om.on_event(fill_ev(cid, "t1", 30))
    assert om.order(cid).filled_lots == 30 and om.stats["duplicate_fills"] == 1
    assert om.parent_accounting("P1").filled == 30


def test_overfill_is_detected_and_reported() -> None:
    seen: list[tuple[ManagedOrder, OverfillError]] = []
    om, _ = _om(on_overfill=lambda mo, e: seen.append((mo, e)))
    cid = submit(om, lots=50)
    om.on_event(fill_ev(cid, "t1", 40))
    om.on_event(fill_ev(cid, "t2", 30))
    mo = om.order(cid)
    assert mo.status is S.FILLED and mo.filled_lots == 70 and mo.overfilled
    assert len(seen) == 1 and "filled 70 lots > ordered 50" in str(seen[0][1])
    assert any(isinstance(e, OverfillError) for e in om.errors)
    assert om.parent_accounting("P1").filled == 70  # never silently absorbed


def test_cancel_flow_and_cancel_reject() -> None:
    om, _ = _om()
    cid = submit(om)
    om.on_event(ev(K.ACCEPTED, cid))
    om.cancel(cid)
    assert om.order(cid).status is S.PENDING_CANCEL
    om.on_event(ev(K.CANCEL_REJECTED, cid, reason="too late"))
    assert om.order(cid).status is S.NEW
    om.cancel(cid)
    om.on_event(fill_ev(cid, "t1", 10))  # fill while cancel pending
    assert om.order(cid).status is S.PENDING_CANCEL
    om.on_event(ev(K.CANCELED, cid))
    assert om.order(cid).status is S.CANCELED
    om.on_event(fill_ev(cid, "t2", 5))  # late fill after the cancel: still counted
    assert om.order(cid).filled_lots == 15 and om.order(cid).status is S.CANCELED
    with pytest.raises(InvariantError, match="already canceled"):
        om.cancel(cid)


def test_illegal_venue_transition_is_recorded_not_applied(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    om, _ = _om(j)
    cid = submit(om)
    om.on_event(fill_ev(cid, "t1", 10))
    om.on_event(ev(K.REJECTED, cid, reason="?"))  # rejected after a fill: impossible
    assert om.order(cid).status is S.PARTIALLY_FILLED
    assert any(isinstance(e, InvariantError) for e in om.errors)
    assert [r.kind for r in j.read(kinds=["garbled_event"])] == ["garbled_event"]


# ------------------------------------------------------------------ UNKNOWN
def _unknown(om: OrderManager, parent: str = "P1") -> str:
    before = om.parent_accounting(parent).unknown
    cid = submit(om, parent=parent)
    status = om.on_send_failed(cid, VenueTimeout("no answer", venue="binance-spot", client_order_id=cid))
    assert status is S.UNKNOWN
    assert om.parent_accounting(parent).unknown == before + 100
    return cid


def test_unknown_resolved_by_status_query() -> None:
    om, _ = _om()
    cid = _unknown(om)
    rep = OrderStatusReport(ClientOrderId(cid), VenueId("binance-spot"), "BTC-USDT", Side.BUY, S.PARTIALLY_FILLED,
                            100, 25, venue_order_id=VenueOrderId("v9"))
    assert om.on_status_report(rep)
    mo = om.order(cid)
    assert mo.status is S.PARTIALLY_FILLED and mo.executed_lots == 25 and mo.venue_order_id == "v9"
    acc = om.parent_accounting("P1")
    assert (acc.filled, acc.working, acc.unknown) == (25, 75, 0)
    # the fills arrive later from the stream: no double counting
    om.on_event(fill_ev(cid, "t1", 25))
    assert om.parent_accounting("P1").filled == 25


def test_unknown_resolved_by_user_stream() -> None:
    om, _ = _om()
    cid = _unknown(om)
    om.on_event(ev(K.ACCEPTED, cid))
    assert om.order(cid).status is S.NEW


def test_unknown_resolved_by_reconcile() -> None:
    om, _ = _om()
    a = _unknown(om)
    b = _unknown(om)
    c = submit(om, parent="P2")
    om.on_event(ev(K.ACCEPTED, c))
    rep = OrderStatusReport(ClientOrderId(a), VenueId("binance-spot"), "BTC-USDT", Side.BUY, S.FILLED, 100, 100)
    foreign = OrderStatusReport(ClientOrderId("other-1"), VenueId("binance-spot"), "BTC-USDT", Side.BUY,
                                S.NEW, 5, 0)
    res = om.reconcile([rep, foreign])
    assert res.settled == [a] and [r.client_order_id for r in res.foreign] == ["other-1"]
    assert set(res.unresolved) == {b, c}
    assert om.order(a).status is S.FILLED and om.order(b).status is S.UNKNOWN
    res = om.reconcile([], absent_means_gone=True, venues=["binance-spot"])
    assert om.order(b).status is S.REJECTED and om.order(c).status is S.CANCELED
    assert set(res.settled) == {b, c}


def test_send_failures_rate_limited_and_final_are_rejections() -> None:
    om, _ = _om()
    a = submit(om)
    assert om.on_send_failed(a, RateLimited("429", retry_after_ns=5)) is S.REJECTED
    b = submit(om)
    assert om.on_send_failed(b, OrderRejected("bad price", code=-1013)) is S.REJECTED
    assert om.order(b).reason is not None and "bad price" in om.order(b).reason  # type: ignore[operator]
    c = submit(om)
    om.on_event(ev(K.ACCEPTED, c))
    om.cancel(c)
    assert om.on_send_failed(c, RateLimited("429")) is S.NEW


def test_retry_reuses_id_and_duplicate_reject_means_live() -> None:
    om, _ = _om()
    cid = _unknown(om)
    again = om.retry_submit(cid)
    assert again.client_order_id == cid and om.order(cid).status is S.PENDING_NEW
    om.on_event(ev(K.REJECTED, cid, reason="Duplicate order sent.", code="-2010"))
    assert om.order(cid).status is S.NEW
    assert len(om.orders()) == 1


# ------------------------------------------------------------------ ids
def test_client_order_ids_deterministic_and_within_venue_rules() -> None:
    pat = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
    assert make_client_order_id("r1", "P1", 3) == "sx-r1-P1-3"
    long_id = make_client_order_id("a-very-long-run-identifier", "parent/with spaces and more than 12", 10**11 - 1)
    assert pat.match(long_id) and len(long_id) <= 36
    assert long_id == make_client_order_id("a-very-long-run-identifier", "parent/with spaces and more than 12",
                                           10**11 - 1)
    assert make_client_order_id("r1", "p-1", 1) != make_client_order_id("r1", "p_1", 1)
    om, _ = _om()
    ids = [submit(om, parent="P1") for _ in range(3)] + [submit(om, parent="P2")]
    assert ids == ["sx-r1-P1-1", "sx-r1-P1-2", "sx-r1-P1-3", "sx-r1-P2-1"]


# ------------------------------------------------------------------ garbled
def test_garbled_input_is_journaled_and_changes_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    om, _ = _om(j)
    cid = submit(om)
    om.on_event(ev(K.ACCEPTED, "sx-nobody-1"))
    om.on_event(fill_ev(cid, "t1", -5))
    om.on_event(ev(K.FILLED, cid))  # fill event without its fill
    om.on_event(ev(K.ACCEPTED, cid, venue="binance-usdm"))
    om.on_event("not even an event")  # type: ignore[arg-type]
    om.on_garbled("binance-spot", '{"e":"executionReport","X":"NEW","signature":"abc"}', "no client id")
    assert om.order(cid).status is S.PENDING_NEW and om.order(cid).filled_lots == 0
    recs = list(j.read(kinds=["garbled_event"]))
    assert len(recs) == 6 and om.stats["garbled"] == 6
    assert "unknown client_order_id" in recs[0].payload["error"]
    assert "abc" not in recs[-1].payload["raw"]


# ------------------------------------------------------------------ accounting
def test_parent_accounting_buckets_and_can_send() -> None:
    om, _ = _om()
    a = submit(om, lots=100)                 # in flight
    b = submit(om, lots=200)
    om.on_event(ev(K.ACCEPTED, b))           # working
    om.on_event(fill_ev(b, "t1", 50))        # 50 filled, 150 working
    c = submit(om, lots=300)
    om.on_send_failed(c, VenueTimeout("t"))  # unknown
    acc = om.parent_accounting("P1")
    assert (acc.filled, acc.working, acc.in_flight, acc.unknown) == (50, 150, 100, 300)
    assert om.parent_exposure("P1") == 600
    assert om.can_send("P1", 400, 1000) and not om.can_send("P1", 401, 1000)
    with pytest.raises(RiskRejected, match="parent_exposure"):
        submit(om, lots=401, parent_total=1000)
    del a


def test_parent_units_across_venues() -> None:
    om, _ = _om()
    om.submit(venue="binance-usdm", symbol="BTC-USDT", side=Side.BUY, lots=2, price_ticks=618_000, parent_id="P")
    submit(om, lots=50, parent="P")
    # usdm lot 0.001 = 100 common lots of 0.00001
    assert om.parent_exposure("P") == 250


def test_replace_native_and_cancel_then_new() -> None:
    om, _ = _om()
    cid = submit(om, lots=100)
    om.on_event(ev(K.ACCEPTED, cid))
    om.replace(cid, lots=150, price_ticks=6_180_000, parent_total=1000)
    assert om.parent_exposure("P1") == 150  # larger of old and new while pending
    om.on_event(ev(K.REPLACED, cid, new_lots=150, new_price_ticks=6_180_000))
    mo = om.order(cid)
    assert mo.order.lots == 150 and mo.order.price_ticks == 6_180_000 and mo.pending_replace is None
    om.on_event(fill_ev(cid, "t1", 50))
    new = om.replace(cid, lots=120, native=False)
    assert new.client_order_id != cid and new.lots == 70
    assert om.order(cid).replaced_by == new.client_order_id
    assert om.order(new.client_order_id).replaces == cid
    assert om.order(cid).status is S.PENDING_CANCEL
    assert om.parent_exposure("P1") == 50 + 100 + 70  # both count until the cancel is confirmed
    om.on_event(ev(K.CANCELED, cid))
    assert om.parent_exposure("P1") == 50 + 70
    with pytest.raises(InvariantError, match="not above"):
        om.replace(new.client_order_id, lots=0)


# ------------------------------------------------------------------ property test
ACTIONS = st.lists(st.tuples(st.sampled_from(["submit", "ack", "fill", "cancel", "canceled", "reject",
                                              "timeout", "report", "replace", "replaced", "dupfill"]),
                             st.integers(0, 10), st.integers(1, 120)), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(ACTIONS, st.integers(50, 400))
def test_random_sequences_never_let_exposure_exceed_parent(actions: list[tuple[str, int, int]], total: int) -> None:
    om, _ = _om()
    cids: list[str] = []
    trade = 0
    for action, pick, qty in actions:
        mo = om.order(cids[pick % len(cids)]) if cids else None
        if action == "submit":
            if om.can_send("P1", qty, total):
                cids.append(submit(om, lots=qty))
            else:
                with pytest.raises(RiskRejected):
                    submit(om, lots=qty, parent_total=total)
        elif mo is None:
            continue
        elif action == "ack":
            om.on_event(ev(K.ACCEPTED, mo.client_order_id))
        elif action in ("fill", "dupfill"):
            room = mo.order.lots - mo.executed_lots
            if room > 0 and mo.status not in (S.REJECTED, S.CANCELED, S.EXPIRED):
                trade += action == "fill"
                om.on_event(fill_ev(mo.client_order_id, f"t{trade}", min(qty, room)))
        elif action == "cancel" and not mo.status.is_terminal:
            om.cancel(mo.client_order_id)
        elif action == "canceled":
            om.on_event(ev(K.CANCELED, mo.client_order_id))
        elif action == "reject" and mo.status in (S.PENDING_NEW, S.UNKNOWN) and not mo.executed_lots:
            om.on_event(ev(K.REJECTED, mo.client_order_id))
        elif action == "timeout" and mo.status is S.PENDING_NEW:
            om.on_send_failed(mo.client_order_id, VenueTimeout("t"))
        elif action == "report" and mo.status is S.UNKNOWN:
            om.on_status_report(OrderStatusReport(mo.client_order_id, mo.order.venue, "BTC-USDT", Side.BUY,
                                                  S.NEW, mo.order.lots, mo.executed_lots))
        elif action == "replace" and mo.status in (S.NEW, S.PARTIALLY_FILLED) and qty > mo.executed_lots:
            if mo.pending_replace is not None:   # one replace at a time
                with pytest.raises(InvariantError, match="in flight"):
                    om.replace(mo.client_order_id, lots=qty, parent_total=total, native=pick % 2 == 0)
            else:
                try:
                    om.replace(mo.client_order_id, lots=qty, parent_total=total, native=pick % 2 == 0)
                    if pick % 2:
                        cids.append(om.orders()[-1].client_order_id)
                except RiskRejected:
                    pass
        elif action == "replaced" and mo.pending_replace is not None:
            om.on_event(ev(K.REPLACED, mo.client_order_id))
        acc = om.parent_accounting("P1")
        assert acc.exposure <= total
        assert acc.filled <= total
        assert min(acc.filled, acc.working, acc.in_flight, acc.unknown) >= 0
    assert not any(isinstance(e, OverfillError) for e in om.errors)


def test_cancel_overtaking_an_unacked_order_keeps_the_later_rejection() -> None:
    """A cancel sent before the ack can reach the venue first ("Unknown order sent."); the order is
    then still pending, and the venue's later rejection (post-only would take) must be applied, not
    dropped as an illegal transition (found replaying a POV on the bundled data)."""
    from decimal import Decimal

    from marketdata.clock import SimClock
    from marketdata.model import (
        Instrument,
        OrderEvent,
        OrderEventKind,
        OrderStatus,
        OrderType,
        Side,
        Symbol,
        TimeInForce,
        VenueId,
    )
    from venues.order_manager import OrderManager

    clock = SimClock(1_000)
    inst = Instrument(VenueId("v"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"))
    om = OrderManager(clock, [inst], journal=None, run_id="t")
    o = om.submit(venue="v", symbol="BTC-USDT", side=Side.BUY, lots=36, order_type=OrderType.LIMIT,
                  price_ticks=6168771, time_in_force=TimeInForce.POST_ONLY, parent_id="p")
    om.cancel(o.client_order_id)
    assert om.order(o.client_order_id).status is OrderStatus.PENDING_CANCEL
    om.on_event(OrderEvent(OrderEventKind.CANCEL_REJECTED, o.client_order_id, VenueId("v"), 2_000, 2_000,
                           reason="Unknown order sent.", code="-2011"))
    assert om.order(o.client_order_id).status is OrderStatus.PENDING_NEW
    om.cancel(o.client_order_id)
    om.on_event(OrderEvent(OrderEventKind.REJECTED, o.client_order_id, VenueId("v"), 3_000, 3_000,
                           reason="Order would immediately match and take.", code="-2010"))
    assert om.order(o.client_order_id).status is OrderStatus.REJECTED
