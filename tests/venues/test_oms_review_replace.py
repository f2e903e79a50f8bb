"""Review: the order manager's replace (amend) path under in-flight races.

Native replaces are driven through the simulated venue (``native_modify=True``, constant 1 ms
order-entry and ack latencies, so every race is placed exactly on virtual time); cancel-then-new
through the Binance adapter's ``cancel_replace`` against the loopback fake (STOP_ON_FAILURE: the
new order is placed only once the old one is cancelled)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from binance_harness import Rig as BinanceRig
from binance_harness import binance_rig
from test_sim_venue import INST, V

from marketdata.clock import NS_PER_MS, LiveClock, SimClock
from marketdata.errors import InvariantError, RateLimited, VenueTimeout
from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    Side,
    TimeInForce,
    TradeId,
    TradeTick,
)
from venues.base import OrderStatusReport, run_now
from venues.journal import Journal
from venues.latency import LatencyModel
from venues.order_manager import OrderManager, ParentAccounting
from venues.sim import TEXT_POST_ONLY, SimulatedVenue, SimVenueConfig

K = OrderEventKind
S = OrderStatus
SYM = INST.symbol
T0 = 1_000_000 * NS_PER_MS
PX = 1000   # our bid, alone at its level (queue ahead 0): a sell trade at PX fills it at once


class Rig:
    """A simulated venue whose events feed an OrderManager (``drop`` filters events out, as a
    lost answer would)."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.clock = SimClock(T0)
        cfg = SimVenueConfig(venue=V, instruments=[INST], seed=1, native_modify=True,
                             order_entry_latency=LatencyModel.constant(NS_PER_MS),
                             ack_latency=LatencyModel.constant(NS_PER_MS),
                             balances={"USDT": Decimal(1_000_000), "BTC": Decimal(100)})
        self.venue = SimulatedVenue(cfg, self.clock)
        self.om = OrderManager(self.clock, [INST], journal=journal, run_id="r")
        self.events: list[OrderEvent] = []
        self.drop: Callable[[OrderEvent], bool] = lambda _e: False
        self.venue.set_event_handler(self._on)
        self.venue.on_market_event(BookDeltas(V, SYM, [(990, 5)], [(1010, 5)], T0, T0, is_snapshot=True))

    def _on(self, ev: OrderEvent) -> None:
        self.events.append(ev)
        if not self.drop(ev):
            self.om.on_event(ev)

    def at(self, ms: float) -> None:
        """Run virtual time to ``ms`` after T0 (delivering what is due)."""
        self.clock.advance_to(T0 + int(ms * NS_PER_MS))

    def submit(self, lots: int, tif: TimeInForce = TimeInForce.GTC) -> str:
        o = self.om.submit(venue=V, symbol=SYM, side=Side.BUY, lots=lots, price_ticks=PX, time_in_force=tif,
                           parent_id="P")
        run_now(self.venue.submit(o))
        return o.client_order_id

    def replace(self, cid: str, **kw: int) -> None:
        o = self.om.replace(cid, **kw)
        run_now(self.venue.replace(ClientOrderId(cid), lots=o.lots, price_ticks=o.price_ticks))

    def sell_trade(self, lots: int) -> None:
        now = self.clock.now_ns()
        self.venue.on_market_event(TradeTick(V, SYM, PX, lots, Side.SELL, TradeId(f"m{now}"), now, now))

    def report(self, cid: str) -> OrderStatusReport:
        return run_now(self.venue.order_status(ClientOrderId(cid)))

    def exposure(self) -> int:
        return self.om.parent_exposure("P")


def _acked_order(rig: Rig, lots: int = 10, tif: TimeInForce = TimeInForce.GTC) -> str:
    cid = rig.submit(lots, tif)
    rig.at(2)   # arrives at 1 ms, ACCEPTED delivered at 2 ms
    assert rig.om.order(cid).status is S.NEW
    return cid


def _no_errors(rig: Rig) -> None:
    assert rig.om.errors == [] and rig.om.stats["garbled"] == 0 and rig.om.stats["overfills"] == 0


def _fills_to_the_end(rig: Rig, cid: str, lots: int) -> None:
    """Sell far more than is open at our price: the order must end FILLED at exactly ``lots``."""
    rig.sell_trade(50)
    rig.clock.advance_to(rig.clock.now_ns() + 10 * NS_PER_MS)
    mo = rig.om.order(cid)
    assert (mo.status, mo.executed_lots, rig.report(cid).filled_lots) == (S.FILLED, lots, lots)
    assert rig.exposure() == lots
    _no_errors(rig)


# ---------------------------------------------------------------- 1. fills while the replace is in flight
def test_fill_in_flight_leaves_new_size_at_or_below_filled_replace_refused_order_keeps_old_size() -> None:
    rig = Rig()
    cid = _acked_order(rig)
    rig.replace(cid, lots=4)           # sent at 2 ms, reaches the venue at 3 ms
    rig.at(2.5)
    rig.sell_trade(6)                  # 6 fill at 2.5 ms, before the replace arrives
    rig.at(10)
    mo = rig.om.order(cid)
    # the venue refused (new total 4 is not above the 6 filled): the order is still 10, 4 open
    assert [e.kind for e in rig.events if e.fill is None][-1] is K.CANCEL_REJECTED
    assert rig.report(cid).lots == 10
    assert (mo.status, mo.order.lots, mo.executed_lots, mo.pending_replace) == (S.PARTIALLY_FILLED, 10, 6, None)
    assert mo.reason == "Filter failure: LOT_SIZE"   # the venue's refusal, kept with the order
    assert rig.exposure() == 10
    _fills_to_the_end(rig, cid, 10)


def test_fill_in_flight_then_downsize_above_filled_applies_and_never_overfills() -> None:
    rig = Rig()
    cid = _acked_order(rig)
    rig.replace(cid, lots=8)
    assert rig.exposure() == 10        # the larger of old and new while in flight
    rig.at(2.5)
    rig.sell_trade(6)
    rig.at(10)
    mo = rig.om.order(cid)
    assert (mo.status, mo.order.lots, mo.executed_lots, mo.open_lots) == (S.PARTIALLY_FILLED, 8, 6, 2)
    assert rig.exposure() == 8
    _fills_to_the_end(rig, cid, 8)     # only 2 more can fill


def test_order_filled_completely_while_an_upsize_is_in_flight_is_done_not_resized() -> None:
    rig = Rig()
    cid = _acked_order(rig)
    rig.replace(cid, lots=15)
    assert rig.exposure() == 15
    rig.at(2.5)
    rig.sell_trade(10)
    rig.at(10)
    mo = rig.om.order(cid)
    assert (mo.status, mo.order.lots, mo.executed_lots, mo.pending_replace) == (S.FILLED, 10, 10, None)
    assert rig.exposure() == 10
    _no_errors(rig)



def test_venue_that_completes_an_order_amended_down_to_its_fills_ends_it_filled() -> None:
    """A venue may accept a new total equal to what has filled and so complete the order (the
    simulator refuses it instead): REPLACED to 6 with 6 filled is FILLED, with no overfill."""
    rig = Rig()
    cid = _acked_order(rig)
    rig.sell_trade(6)
    rig.at(4)
    rig.om.replace(cid, lots=7)
    rig.om.on_event(OrderEvent(kind=K.REPLACED, client_order_id=ClientOrderId(cid), venue=V,
                               ts_event=rig.clock.now_ns(), ts_init=rig.clock.now_ns(), new_lots=6))
    mo = rig.om.order(cid)
    assert (mo.status, mo.order.lots, mo.executed_lots, mo.pending_replace) == (S.FILLED, 6, 6, None)
    assert rig.exposure() == 6
    _no_errors(rig)

# ---------------------------------------------------------------- 2. refused replace
def test_refused_replace_keeps_size_price_and_working_status_and_the_journal_says_why(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", synchronous="NORMAL")
    rig = Rig(j)
    cid = _acked_order(rig, tif=TimeInForce.POST_ONLY)
    rig.replace(cid, lots=12, price_ticks=1010)    # would take the ask at 1010: post-only refuses
    rig.at(10)
    mo = rig.om.order(cid)
    assert (mo.status, mo.order.lots, mo.order.price_ticks, mo.pending_replace) == (S.NEW, 10, PX, None)
    assert mo.reason == TEXT_POST_ONLY
    assert rig.exposure() == 10
    rec = [r for r in j.read(kinds=("order_event",)) if r.payload["kind"] == "cancel_rejected"]
    assert len(rec) == 1
    assert rec[0].payload["reason"] == TEXT_POST_ONLY and rec[0].payload["refused"] == "replace"
    restored = OrderManager.restore(j, rig.clock, [INST], run_id="r")
    rmo = restored.order(cid)
    assert (rmo.status, rmo.order.lots, rmo.order.price_ticks, rmo.pending_replace) == (S.NEW, 10, PX, None)
    j.close()


# ---------------------------------------------------------------- 4. cancel / second replace in flight
def test_replace_refused_while_a_cancel_is_in_flight_keeps_the_cancel_pending(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", synchronous="NORMAL")
    rig = Rig(j)
    cid = _acked_order(rig, tif=TimeInForce.POST_ONLY)
    rig.replace(cid, price_ticks=1010)   # sent at 2 ms: refused at 3 ms, answer delivered at 4 ms
    rig.at(2.5)
    rig.om.cancel(cid)
    run_now(rig.venue.cancel(ClientOrderId(cid)))   # reaches the venue at 3.5 ms, CANCELED at 4.5 ms
    rig.at(4)
    mo = rig.om.order(cid)
    # the refusal answers the replace; the cancel sent after it is still on its way
    assert (mo.status, mo.order.price_ticks, mo.pending_replace) == (S.PENDING_CANCEL, PX, None)
    assert rig.exposure() == 10
    with pytest.raises(InvariantError):
        rig.om.replace(cid, lots=11)
    restored = OrderManager.restore(j, rig.clock, [INST], run_id="r")
    assert restored.order(cid).status is S.PENDING_CANCEL
    rig.at(10)
    assert mo.status is S.CANCELED and rig.exposure() == 0
    _no_errors(rig)
    j.close()


def test_cancel_not_taken_while_a_replace_is_in_flight_keeps_the_replace_counted() -> None:
    rig = Rig()
    cid = _acked_order(rig)
    o = rig.om.replace(cid, lots=20, parent_total=20)
    run_now(rig.venue.replace(ClientOrderId(cid), lots=o.lots))
    rig.om.cancel(cid)
    rig.om.on_send_failed(cid, RateLimited("429 on the cancel"))   # the cancel never left
    mo = rig.om.order(cid)
    assert mo.status is S.NEW and mo.pending_replace == (20, PX)
    assert rig.exposure() == 20 and not rig.om.can_send("P", 1, 20)
    rig.at(10)
    assert (mo.status, mo.order.lots, mo.pending_replace) == (S.NEW, 20, None)
    _no_errors(rig)


def test_second_replace_while_one_is_in_flight_is_refused_clearly() -> None:
    rig = Rig()
    cid = _acked_order(rig)
    rig.replace(cid, lots=20)
    with pytest.raises(InvariantError, match="in flight"):
        rig.om.replace(cid, lots=30, parent_total=30)
    with pytest.raises(InvariantError, match="in flight"):
        rig.om.replace(cid, lots=30, native=False)
    assert rig.exposure() == 20
    rig.at(10)
    mo = rig.om.order(cid)
    assert (mo.order.lots, mo.pending_replace) == (20, None)
    rig.replace(cid, lots=30)       # once answered, the next one is accepted
    rig.at(20)
    assert mo.order.lots == 30 and rig.exposure() == 30
    _no_errors(rig)


# ---------------------------------------------------------------- 3. replace timed out
def test_replace_timed_out_answer_lost_is_settled_by_a_status_query() -> None:
    rig = Rig()
    cid = _acked_order(rig)
    rig.drop = lambda e: e.kind is K.REPLACED   # the venue applied it, we never hear
    rig.replace(cid, lots=4)
    rig.om.on_send_failed(cid, VenueTimeout("replace timed out"))
    mo = rig.om.order(cid)
    assert mo.status is S.NEW and mo.pending_replace == (4, PX)    # not assumed either way
    assert rig.exposure() == 10
    rig.at(10)
    assert rig.om.on_status_report(rig.report(cid))
    assert (mo.status, mo.order.lots, mo.pending_replace) == (S.NEW, 4, None)
    assert rig.exposure() == 4
    _fills_to_the_end(rig, cid, 4)


def test_replace_timed_out_never_arrived_status_query_says_old_terms() -> None:
    rig = Rig()
    cid = _acked_order(rig)
    rig.om.replace(cid, lots=15)    # the request is lost: the venue never sees it
    rig.om.on_send_failed(cid, VenueTimeout("replace timed out"))
    assert rig.exposure() == 15
    rig.at(10)
    assert rig.om.on_status_report(rig.report(cid))
    mo = rig.om.order(cid)
    assert (mo.status, mo.order.lots, mo.pending_replace) == (S.NEW, 10, None)
    assert rig.exposure() == 10
    rig.replace(cid, lots=12)       # a new replace may be sent now
    rig.at(20)
    assert mo.order.lots == 12
    _no_errors(rig)


def test_status_report_with_old_terms_does_not_drop_a_replace_still_answerable() -> None:
    """Without a timeout the answer will come: a query that the venue answered before the replace
    arrived must not make the manager forget the larger size."""
    rig = Rig()
    cid = _acked_order(rig)
    rig.replace(cid, lots=15)
    rep = rig.report(cid)           # asked before the replace reaches the venue: still 10
    assert rep.lots == 10
    rig.om.on_status_report(rep)
    assert rig.om.order(cid).pending_replace == (15, PX) and rig.exposure() == 15
    rig.at(10)
    assert rig.om.order(cid).order.lots == 15


# ---------------------------------------------------------------- 6. restore with a replace in flight
def test_restore_with_a_native_replace_in_flight_then_reconcile_settles_it(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path, synchronous="NORMAL")
    rig = Rig(j)
    cid = _acked_order(rig)
    rig.sell_trade(2)
    rig.at(4)
    rig.replace(cid, lots=6)
    before = rig.om.parent_accounting("P")
    rig.drop = lambda _e: True      # we crash: the venue applies the replace while we are down
    rig.at(10)
    j2 = Journal(path, synchronous="NORMAL")
    om = OrderManager.restore(j2, rig.clock, [INST], run_id="r")
    mo = om.order(cid)
    assert (mo.status, mo.order.lots, mo.executed_lots, mo.pending_replace) == (S.PARTIALLY_FILLED, 10, 2, (6, PX))
    assert om.parent_accounting("P") == before
    res = om.reconcile([rig.report(cid)])
    assert res.unresolved == []
    assert (mo.status, mo.order.lots, mo.pending_replace) == (S.PARTIALLY_FILLED, 6, None)
    assert om.parent_exposure("P") == 6
    j2.close()
    # the settlement is journaled: a second restore comes to the same state
    j3 = Journal(path, synchronous="NORMAL")
    again = OrderManager.restore(j3, rig.clock, [INST], run_id="r")
    amo = again.order(cid)
    assert (amo.order.lots, amo.pending_replace, again.parent_exposure("P")) == (6, None, 6)
    j3.close()
    j.close()


def test_restore_with_a_cancel_then_new_in_flight_counts_both_until_settled(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    j = Journal(path, synchronous="NORMAL")
    rig = Rig(j)
    cid = _acked_order(rig)
    rig.sell_trade(3)
    rig.at(4)
    new = rig.om.replace(cid, lots=8, price_ticks=999, native=False)
    assert new.lots == 5
    before = rig.om.parent_accounting("P")
    assert before.exposure == 3 + 7 + 5
    j.close()
    j2 = Journal(path, synchronous="NORMAL")
    om = OrderManager.restore(j2, rig.clock, [INST], run_id="r")
    assert om.parent_accounting("P").exposure == before.exposure
    assert om.order(cid).status is S.PENDING_CANCEL and om.order(new.client_order_id).status is S.UNKNOWN
    assert om.order(cid).replaced_by == new.client_order_id
    # the venue: the old order cancelled with its 3 lots, the new one never arrived
    old_rep = OrderStatusReport(ClientOrderId(cid), V, SYM, Side.BUY, S.CANCELED, 10, 3, PX)
    om.reconcile([old_rep], absent_means_gone=True, venues=[V])
    assert om.order(new.client_order_id).status is S.REJECTED
    assert om.parent_exposure("P") == 3
    j2.close()



# ---------------------------------------------------------------- 5. cancel-then-new by hand (new sent on CANCELED)
def test_cancel_then_new_old_filled_before_its_cancel_arrives_new_is_never_counted_again(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", synchronous="NORMAL")
    rig = Rig(j)
    cid = _acked_order(rig)
    new = rig.om.replace(cid, price_ticks=999, native=False)
    run_now(rig.venue.cancel(ClientOrderId(cid)))   # the new order is to be sent once CANCELED comes
    assert rig.exposure() == 10 + 10
    rig.sell_trade(10)                               # fills before the cancel reaches the venue
    rig.at(10)
    mo, nmo = rig.om.order(cid), rig.om.order(new.client_order_id)
    assert mo.status is S.FILLED and [e.kind for e in rig.events][-1] is K.CANCEL_REJECTED
    assert nmo.status is S.REJECTED and (nmo.reason or "").startswith("not sent")
    assert rig.exposure() == 10 and rig.om.open_orders() == []
    restored = OrderManager.restore(j, rig.clock, [INST], run_id="r")
    assert restored.order(new.client_order_id).status is S.REJECTED and restored.parent_exposure("P") == 10
    _no_errors(rig)
    j.close()


def test_cancel_then_new_cancel_not_taken_old_keeps_working_new_never_counted() -> None:
    rig = Rig()
    cid = _acked_order(rig)
    rig.sell_trade(4)
    rig.at(4)
    new = rig.om.replace(cid, lots=8, native=False)
    assert new.lots == 4 and rig.exposure() == 4 + 6 + 4
    rig.om.on_send_failed(cid, RateLimited("429 on the cancel"))
    mo, nmo = rig.om.order(cid), rig.om.order(new.client_order_id)
    assert (mo.status, mo.order.lots) == (S.PARTIALLY_FILLED, 10)
    assert nmo.status is S.REJECTED
    assert rig.exposure() == 10
    _no_errors(rig)

# ---------------------------------------------------------------- 5. cancel-then-new (Binance cancelReplace)
BOOK = ([("100.0", "1.000"), ("99.9", "2.000")], [("100.1", "1.000"), ("100.2", "2.000")])


async def _binance_order(rig: BinanceRig, qty: str, price: str, *, settle: bool = True) -> tuple[OrderManager, Order]:
    """A manager fed by the adapter's events and status reports, and one resting BUY sent through it."""
    await rig.fake.set_book("BTCUSDT", *BOOK)
    inst = rig.instrument
    om = OrderManager(LiveClock(), [inst])
    rig.venue.set_event_handler(om.on_event)
    rig.venue.set_status_report_handler(om.on_status_report)
    o = om.submit(venue=inst.venue, symbol=inst.symbol, side=Side.BUY, lots=inst.qty_to_lots(qty),
                  price_ticks=inst.price_to_ticks(price), parent_id="P")
    await rig.venue.submit(o)
    if settle:
        await rig.settle()
    return om, o


async def test_cancel_then_new_success_moves_the_quantity_to_the_new_order() -> None:
    async with binance_rig() as rig:
        inst = rig.instrument
        om, o = await _binance_order(rig, "1.000", "99.0")
        new = om.replace(o.client_order_id, price_ticks=inst.price_to_ticks("99.5"), native=False)
        assert om.parent_exposure("P") == 2 * o.lots        # both count until the cancel is confirmed
        await rig.venue.cancel_replace(o.client_order_id, new)
        await rig.settle()
        assert om.order(o.client_order_id).status is S.CANCELED
        assert om.order(new.client_order_id).status is S.NEW
        assert om.parent_exposure("P") == o.lots
        assert om.errors == [] and om.stats["garbled"] == 0


async def test_cancel_then_new_old_filled_in_between_new_not_placed_nothing_double_counted() -> None:
    async with binance_rig() as rig:
        inst = rig.instrument
        om, o = await _binance_order(rig, "0.500", "100.0")
        new = om.replace(o.client_order_id, price_ticks=inst.price_to_ticks("99.5"), native=False)
        await rig.fake.trade("BTCUSDT", "100.0", "2.000", Side.SELL)   # the old order fills completely
        await rig.settle()
        nmo = om.order(new.client_order_id)
        assert om.order(o.client_order_id).status is S.FILLED
        # the cancel cannot succeed now, so the new order will never be placed: it stops counting
        assert nmo.status is S.REJECTED and (nmo.reason or "").startswith("not sent")
        assert om.parent_exposure("P") == o.lots
        # a caller that sends it anyway: STOP_ON_FAILURE does not place it (answer: "not attempted")
        await rig.venue.cancel_replace(o.client_order_id, new)
        await rig.settle()
        assert nmo.status is S.REJECTED
        assert om.parent_accounting("P") == ParentAccounting(o.lots, 0, 0, 0)
        assert [r.client_order_id for r in await rig.venue.open_orders()] == []
        assert om.errors == [] and om.stats["garbled"] == 0


async def test_cancel_then_new_cancel_refused_old_keeps_working_new_rejected() -> None:
    async with binance_rig() as rig:
        inst = rig.instrument
        om, o = await _binance_order(rig, "1.000", "99.0")
        new = om.replace(o.client_order_id, lots=inst.qty_to_lots("0.800"), native=False)
        rig.fake.fail("POST", "/api/v3/order/cancelReplace", 400, -2011, "Unknown order sent.")
        await rig.venue.cancel_replace(o.client_order_id, new)
        await rig.settle()
        mo, nmo = om.order(o.client_order_id), om.order(new.client_order_id)
        assert nmo.status is S.REJECTED
        assert (mo.status, mo.order.lots) == (S.NEW, o.lots)
        assert om.parent_exposure("P") == o.lots
        assert [r.client_order_id for r in await rig.venue.open_orders()] == [o.client_order_id]


async def test_cancel_then_new_old_partly_filled_in_between_every_lot_is_accounted() -> None:
    """STOP_ON_FAILURE places the new order for the quantity computed when the request was built:
    fills of the old order meanwhile are not taken off it (Binance has no "minus executed" option).
    The manager counts exactly what the venue has: the old order's fills plus the new order."""
    async with binance_rig() as rig:
        inst = rig.instrument
        om, o = await _binance_order(rig, "1.000", "100.0")
        new = om.replace(o.client_order_id, price_ticks=inst.price_to_ticks("99.5"), native=False)
        await rig.fake.trade("BTCUSDT", "100.0", "1.400", Side.SELL)   # 1.000 ahead of us, then 0.400
        await rig.settle()
        await rig.venue.cancel_replace(o.client_order_id, new)
        await rig.settle()
        mo, nmo = om.order(o.client_order_id), om.order(new.client_order_id)
        assert (mo.status, mo.executed_lots) == (S.CANCELED, inst.qty_to_lots("0.400"))
        assert (nmo.status, nmo.order.lots) == (S.NEW, o.lots)
        venue_open = sum(r.lots - r.filled_lots for r in await rig.venue.open_orders())
        acct = om.parent_accounting("P")
        assert (acct.filled, acct.working) == (mo.executed_lots, venue_open)
        assert om.errors == [] and om.stats["garbled"] == 0


async def test_cancel_then_new_timed_out_both_orders_settled_by_status_queries() -> None:
    async with binance_rig(user_stream=False, request_timeout_s=Decimal("0.5")) as rig:
        inst = rig.instrument
        om, o = await _binance_order(rig, "1.000", "99.0", settle=False)
        new = om.replace(o.client_order_id, price_ticks=inst.price_to_ticks("99.5"), native=False)
        rig.fake.fault("POST", "/api/v3/order/cancelReplace", "slow", 1.5)
        with pytest.raises(VenueTimeout):
            await rig.venue.cancel_replace(o.client_order_id, new)
        om.on_send_failed(new.client_order_id, VenueTimeout("cancelReplace timed out"))
        om.on_send_failed(o.client_order_id, VenueTimeout("cancelReplace timed out"))
        mo, nmo = om.order(o.client_order_id), om.order(new.client_order_id)
        assert (mo.status, nmo.status) == (S.PENDING_CANCEL, S.UNKNOWN)   # nothing assumed
        assert om.parent_exposure("P") == 2 * o.lots
        await _wait_for(lambda: mo.status is S.CANCELED and nmo.status is S.NEW)
        assert om.parent_exposure("P") == o.lots
        assert om.errors == [] and om.stats["garbled"] == 0


async def _wait_for(cond: Callable[[], bool], limit_s: float = 10.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 (polling a condition another task changes)
            await asyncio.sleep(0.01)
