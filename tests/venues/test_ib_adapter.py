"""IbVenue against the fake TWS (tests/venues/ib_fake.py) on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from ib_fake import FakeTws

from marketdata.clock import LiveClock
from marketdata.errors import ConfigError, OrderRejected, RateLimited, VenueDisconnected, VenueTimeout
from marketdata.model import (
    ClientOrderId,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderType,
    Side,
    TimeInForce,
    VenueId,
)
from venues.base import OrderStatusReport
from venues.ib import IbConfig, IbVenue
from venues.ib.codec import encode_frame

K = OrderEventKind


def make_config(port: int, **kw: Any) -> IbConfig:
    table: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "client_id": 100, "account": "DU1234567",
        "request_timeout_s": "2", "connect_timeout_s": "2", "commission_wait_s": "0.5",
        "reconnect_delays_s": ["0.05", "0.1"],
        "instruments": [{"symbol": "AAPL-USD", "venue_symbol": "AAPL", "sec_type": "STK", "exchange": "SMART",
                         "currency": "USD", "base": "AAPL", "quote": "USD", "tick_size": "0.01", "lot_size": "1"}]}
    table.update(kw)
    return IbConfig.from_mapping(table)


class Rig:
    def __init__(self, fake: FakeTws, venue: IbVenue) -> None:
        self.fake = fake
        self.venue = venue
        self.events: list[OrderEvent] = []
        self.garbled: list[tuple[str, Any, str]] = []
        self.reports: list[OrderStatusReport] = []
        venue.set_event_handler(self.events.append)
        venue.set_garbled_handler(lambda v, raw, err: self.garbled.append((v, raw, err)))
        venue.set_status_report_handler(self.reports.append)

    def kinds(self, cid: str) -> list[OrderEventKind]:
        return [e.kind for e in self.events if e.client_order_id == cid]

    def fills(self, cid: str) -> list[OrderEvent]:
        return [e for e in self.events if e.client_order_id == cid and e.fill is not None]

    async def until(self, cond: Callable[[], bool], within_s: float = 3.0) -> None:
        deadline = asyncio.get_running_loop().time() + within_s
        while not cond():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; events: {[(e.client_order_id, e.kind.value) for e in self.events]}")
            await asyncio.sleep(0.01)


def order(cid: str, lots: int = 100, price: str | None = "201.50", side: Side = Side.BUY,
          tif: TimeInForce = TimeInForce.GTC) -> Order:
    ticks = None if price is None else int(Decimal(price) * 100)
    return Order(client_order_id=ClientOrderId(cid), venue=VenueId("ib"), symbol="AAPL-USD", side=side,  # type: ignore[arg-type]
                 order_type=OrderType.LIMIT if price is not None else OrderType.MARKET, lots=lots,
                 price_ticks=ticks, time_in_force=tif)


async def start(fake: FakeTws | None = None, **kw: Any) -> Rig:
    fake = fake or FakeTws()
    port = await fake.start()
    venue = IbVenue(make_config(port, **kw), LiveClock(asyncio.get_running_loop()))
    rig = Rig(fake, venue)
    await venue.connect()
    return rig


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    r = await start()
    yield r
    await r.venue.close()
    await r.fake.stop()


async def test_handshake_negotiates_and_reads_startup(rig: Rig) -> None:
    assert rig.fake.handshakes == ["v151..200"]
    assert rig.venue.server_version == 176
    assert rig.venue.accounts == ("DU1234567",)
    assert rig.venue.connected
    # startApi, then the reconciliation's reqOpenOrders and reqExecutions (client id 100)
    assert [f[0] for f in rig.fake.received] == ["71", "5", "7"]
    assert rig.fake.received[0] == ["71", "2", "100", ""]
    assert rig.fake.received[2][3] == "100"


@pytest.mark.parametrize("sv", [151, 164, 173, 200])
async def test_limit_order_life_cycle_at_each_server_version(sv: int) -> None:
    r = await start(FakeTws(server_version=sv))
    try:
        await r.venue.submit(order("c1"))
        assert r.kinds("c1") == [K.ACCEPTED]
        placed = r.fake.received[-1]
        assert placed[0] == "3" and placed[26] == "c1" and placed[19] == "201.5" and placed[21] == "DAY"
        r.fake.fill(1, "40", "201.50", liquidity=1)
        await r.until(lambda: len(r.fills("c1")) == 1)
        r.fake.fill(1, "60", "201.49")
        await r.until(lambda: r.kinds("c1")[-1] is K.FILLED)
        assert r.kinds("c1") == [K.ACCEPTED, K.PARTIALLY_FILLED, K.FILLED]
        f1, f2 = (e.fill for e in r.fills("c1"))
        assert f1 is not None and f2 is not None
        assert (f1.lots, f1.price_ticks, f1.fee, f1.fee_currency, f1.liquidity) == (40, 20150, Decimal("1.0"), "USD",
                                                                                   Liquidity.MAKER)
        assert (f2.lots, f2.price_ticks, f2.liquidity) == (60, 20149, Liquidity.TAKER)
    finally:
        await r.venue.close()
        await r.fake.stop()


async def test_repeated_exec_and_commission_counted_once(rig: Rig) -> None:
    await rig.venue.submit(order("c1"))
    rig.fake.fill(1, "30", "201.50", repeat=True)
    await rig.until(lambda: len(rig.fills("c1")) == 1)
    rig.fake.fill(1, "70", "201.50", repeat=True)
    await rig.until(lambda: rig.kinds("c1")[-1] is K.FILLED)
    await asyncio.sleep(0.1)
    fills = rig.fills("c1")
    assert [f.fill.lots for f in fills if f.fill] == [30, 70]
    assert sum(f.fill.fee for f in fills if f.fill) == Decimal("2.0")
    assert rig.venue.stats["duplicates"] == 4   # two execDetails, two commissionReports
    # a reconciliation re-reads every execution and commission: nothing new is reported
    n = len(rig.events)
    await rig.venue.reconcile()
    assert len(rig.events) == n
    assert rig.kinds("c1").count(K.FILLED) == 1


async def test_fill_waits_for_its_commission_then_goes_without(rig: Rig) -> None:
    await rig.venue.submit(order("c1"))
    e = rig.fake.fill(1, "10", "201.50", send=False)
    rig.fake.send(rig.fake.exec_fields(e, -1, 176))
    await asyncio.sleep(0.1)
    assert rig.fills("c1") == []                    # held for its commission
    await rig.until(lambda: len(rig.fills("c1")) == 1, within_s=2)
    f = rig.fills("c1")[0].fill
    assert f is not None and f.fee == Decimal(0)     # commission_wait_s passed
    rig.fake.send(rig.fake.commission_fields(e))
    await rig.until(lambda: rig.venue.stats["late_commissions"] == 1)
    assert len(rig.fills("c1")) == 1


async def test_cancel(rig: Rig) -> None:
    await rig.venue.submit(order("c1"))
    rig.fake.fill(1, "25", "201.50")
    await rig.until(lambda: len(rig.fills("c1")) == 1)
    await rig.venue.cancel(ClientOrderId("c1"))
    await rig.until(lambda: rig.kinds("c1")[-1] is K.CANCELED)
    assert rig.kinds("c1") == [K.ACCEPTED, K.PARTIALLY_FILLED, K.CANCELED]
    assert rig.fake.received[-1][:3] == ["4", "1", "1"]
    # a second cancel is refused by TWS (161) -> CANCEL_REJECTED; the adapter knows it is done anyway
    await rig.venue.cancel(ClientOrderId("c1"))
    assert rig.kinds("c1")[-1] is K.CANCEL_REJECTED


async def test_cancel_refused_by_tws(rig: Rig) -> None:
    await rig.venue.submit(order("c1", lots=10))
    rig.fake.orders[(100, 1)].status = "Filled"     # filled at TWS, the news not out yet
    await rig.venue.cancel(ClientOrderId("c1"))
    await rig.until(lambda: K.CANCEL_REJECTED in rig.kinds("c1"))
    ev = next(e for e in rig.events if e.kind is K.CANCEL_REJECTED)
    assert ev.code == "161" and "not in a cancellable state" in (ev.reason or "")


async def test_reject_201_with_its_text(rig: Rig) -> None:
    rig.fake.reject_prices[Decimal("150.00")] = "Insufficient buying power"
    await rig.venue.submit(order("c1", price="150.00"))
    assert rig.kinds("c1") == [K.REJECTED]
    ev = rig.events[-1]
    assert ev.code == "201" and ev.reason == "Order rejected - reason:Insufficient buying power"
    await asyncio.sleep(0.05)   # the orderStatus Inactive that follows changes nothing
    assert rig.kinds("c1") == [K.REJECTED]


async def test_tws_refusals_name_their_error(rig: Rig) -> None:
    # TWS refuses a price off its min tick (110) even when sorex's grid is finer
    r2 = await start(FakeTws(contracts={"AAPL": (265598, Decimal("0.05"))}))
    try:
        await r2.venue.submit(order("c1", price="201.52"))
        ev = r2.events[-1]
        assert (ev.kind, ev.code) == (K.REJECTED, "110")
        assert "minimum price variation" in (ev.reason or "")
    finally:
        await r2.venue.close()
        await r2.fake.stop()


async def test_orders_refused_before_sending(rig: Rig) -> None:
    with pytest.raises(OrderRejected, match="time in force FOK"):
        await rig.venue.submit(order("c1", tif=TimeInForce.FOK))
    with pytest.raises(OrderRejected, match="printable ASCII"):
        await rig.venue.submit(order("c\u00e9"))
    with pytest.raises(OrderRejected, match="quantity must be positive"):
        await rig.venue.submit(order("c2", lots=0))
    assert [f[0] for f in rig.fake.received].count("3") == 0


async def test_market_ioc_order_fields(rig: Rig) -> None:
    await rig.venue.submit(order("m1", lots=5, price=None, tif=TimeInForce.IOC, side=Side.SELL))
    f = rig.fake.received[-1]
    assert (f[16], f[17], f[18], f[19], f[21], f[23]) == ("SELL", "5", "MKT", "", "IOC", "DU1234567")


async def test_duplicate_order_id_103_rejects_and_refreshes_ids(rig: Rig) -> None:
    rig.fake.next_order_id = 500          # another session used ids up to 499
    await rig.venue.submit(order("c1"))
    ev = rig.events[-1]
    assert (ev.kind, ev.code) == (K.REJECTED, "103")
    await rig.until(lambda: rig.venue._next_id == 500)
    await rig.venue.submit(order("c2"))
    assert rig.kinds("c2") == [K.ACCEPTED]
    assert rig.fake.received[-1][1] == "500"


async def test_disconnect_mid_order_unknown_then_resolved_on_reconnect(rig: Rig) -> None:
    """TWS takes the order and the socket drops before any answer: UNKNOWN; after the reconnect
    reqOpenOrders lists it (ACCEPTED) and reqExecutions brings the fill made meanwhile."""
    rig.fake.drop_on_place = True
    with pytest.raises(VenueDisconnected):
        await rig.venue.submit(order("c1"))
    assert rig.kinds("c1") == []
    rig.fake.fill(1, "40", "201.50", client_id=100, send=False)   # while we are away
    await rig.until(lambda: rig.venue.stats["reconnects"] == 1 and len(rig.fills("c1")) == 1)
    assert rig.kinds("c1") == [K.ACCEPTED, K.PARTIALLY_FILLED]
    assert rig.venue.stats["resolved"] == 1
    rep = next(r for r in rig.reports if r.client_order_id == "c1")
    assert rep.filled_lots == 40 and rep.status.value == "partially_filled"
    # and the order keeps working on the new connection
    rig.fake.fill(1, "60", "201.50")
    await rig.until(lambda: rig.kinds("c1")[-1] is K.FILLED)
    assert sum(e.fill.lots for e in rig.fills("c1") if e.fill) == 100


async def test_submit_timeout_is_unknown_then_resolved() -> None:
    """No word from TWS within request_timeout_s: VenueTimeout (not a rejection); the adapter then
    reconciles and TWS's open-order list settles it."""
    fake = FakeTws()
    fake.silent_place = True
    r = await start(fake, request_timeout_s="0.3")
    try:
        with pytest.raises(VenueTimeout):
            await r.venue.submit(order("c1"))
        await r.until(lambda: r.kinds("c1") == [K.ACCEPTED])
        assert r.venue.stats["resolved"] == 1
    finally:
        await r.venue.close()
        await fake.stop()


async def test_disconnect_before_tws_took_it_is_rejected_after_reconnect(rig: Rig) -> None:
    rig.fake.lose_on_place = True
    with pytest.raises(VenueDisconnected):
        await rig.venue.submit(order("c1"))
    await rig.until(lambda: rig.kinds("c1") == [K.REJECTED])
    assert rig.events[-1].code == "not_found"
    assert rig.venue.stats["unresolved"] == 1


async def test_filled_while_away_is_filled_after_reconnect(rig: Rig) -> None:
    await rig.venue.submit(order("c1"))
    rig.fake.drop_connections()
    await rig.until(lambda: not rig.venue.connected)
    rig.fake.fill(1, "100", "201.50", client_id=100, send=False)
    await rig.until(lambda: rig.kinds("c1")[-1:] == [K.FILLED])
    assert rig.kinds("c1") == [K.ACCEPTED, K.FILLED]
    assert rig.fills("c1")[0].fill.fee == Decimal("1.0")  # type: ignore[union-attr]


async def test_resubmit_of_a_tracked_id_sends_nothing(rig: Rig) -> None:
    await rig.venue.submit(order("c1"))
    n = [f[0] for f in rig.fake.received].count("3")
    await rig.venue.submit(order("c1"))
    assert [f[0] for f in rig.fake.received].count("3") == n
    assert rig.kinds("c1") == [K.ACCEPTED]


async def test_pacing_error_100_feeds_the_limiter() -> None:
    """With the adapter's own limit set above TWS's, a burst draws error 100: the order is not
    taken (RateLimited) and the limiter blocks every request for at least a second."""
    fake = FakeTws(max_rate=5)
    r = await start(fake, rate_limits={"MESSAGES": [1000, 1]})
    try:
        results = await asyncio.gather(*(r.venue.submit(order(f"c{i}", lots=1)) for i in range(8)),
                                       return_exceptions=True)
        limited = [x for x in results if isinstance(x, RateLimited)]
        assert limited and all(x.code == 100 for x in limited)
        assert r.venue.stats["rate_limited"] == len(limited)
        now = r.venue._clock.now_ns()
        assert r.venue.limiter.blocked_until_ns > now + 500_000_000
        # one burst is one strike: the 100s for messages sent before the block do not double it
        assert len(limited) >= 2 and r.venue.limiter.strikes == 1
        # the next request waits out the block (1 s) instead of drawing another 100
        t0 = asyncio.get_running_loop().time()
        await r.venue.submit(order("late", lots=1))
        assert 0.5 < asyncio.get_running_loop().time() - t0 < 3
        assert r.kinds("late") == [K.ACCEPTED]
    finally:
        await r.venue.close()
        await fake.stop()


async def test_order_worked_despite_error_100_is_cancelled() -> None:
    """Should TWS work an order it answered 100 to (sorex counts it REJECTED), the adapter cancels it."""
    fake = FakeTws(max_rate=3)
    fake.take_paced_orders = True
    r = await start(fake, rate_limits={"MESSAGES": [1000, 1]})
    try:
        with pytest.raises(RateLimited):
            await r.venue.submit(order("ghost", lots=1))
        await r.until(lambda: fake.orders[(100, 1)].status == "Cancelled", within_s=3)
        assert r.kinds("ghost") == []   # nothing reported on top of the local REJECTED
    finally:
        await r.venue.close()
        await fake.stop()


async def test_garbled_field_is_named_and_the_stream_goes_on(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    await rig.venue.submit(order("c1"))
    caplog.set_level(logging.WARNING, logger="venues.ib.adapter")
    rig.fake.send(["3", "1", "Submitted", "4O", "60", "0", "1", "0", "0", "100", "", "0"])
    e = rig.fake.fill(1, "100", "201.50")
    await rig.until(lambda: rig.kinds("c1")[-1] is K.FILLED)
    assert len(rig.garbled) == 1
    assert "orderStatus: field 3 (filled) '4O': not a number" in rig.garbled[0][2]
    assert "orderStatus: field 3 (filled)" in caplog.text
    assert rig.venue.connected and rig.venue.stats["reconnects"] == 0
    assert [f.fill.trade_id for f in rig.fills("c1") if f.fill] == [e.exec_id]


async def test_bad_frame_length_closes_cleanly_and_loses_nothing(rig: Rig) -> None:
    await rig.venue.submit(order("c1"))
    # a fill goes out in the same write as a broken length prefix: the fill is read, then the
    # stream is out of step; the connection is closed, re-opened and reconciled
    e = rig.fake.fill(1, "40", "201.50", send=False)
    rig.fake.send_raw(encode_frame(rig.fake.exec_fields(e, -1, 176)) + b"\xff\xff\xff\xff garbage")
    await rig.until(lambda: rig.venue.stats["reconnects"] == 1)
    assert rig.venue.stats["framing_errors"] == 1
    assert any("bad frame length 4294967295" in g[2] for g in rig.garbled)
    await rig.until(lambda: len(rig.fills("c1")) == 1)
    f = rig.fills("c1")[0].fill
    assert f is not None and f.trade_id == e.exec_id and f.fee == Decimal("1.0")   # commission from reqExecutions
    rig.fake.fill(1, "60", "201.50")
    await rig.until(lambda: rig.kinds("c1")[-1] is K.FILLED)
    assert rig.kinds("c1") == [K.ACCEPTED, K.PARTIALLY_FILLED, K.FILLED]


async def test_connectivity_1100_then_1102_reconciles(rig: Rig) -> None:
    await rig.venue.submit(order("c1"))
    rig.fake.error(rig.fake.client, -1, 1100, "Connectivity between IB and Trader Workstation has been lost.")
    await rig.until(lambda: not rig.venue.ib_connected)
    rig.fake.fill(1, "100", "201.50", client_id=100, send=False)   # the news of it lost with the link
    n = [f[0] for f in rig.fake.received].count("5")
    rig.fake.error(rig.fake.client, -1, 1102, "Connectivity between IB and Trader Workstation has been restored - "
                                              "data maintained.")
    await rig.until(lambda: rig.kinds("c1")[-1:] == [K.FILLED])
    assert rig.venue.ib_connected
    assert [f[0] for f in rig.fake.received].count("5") == n + 1
    assert rig.venue.stats["reconnects"] == 0   # the socket to TWS stayed up


async def test_adopts_open_order_of_an_earlier_session() -> None:
    fake = FakeTws()
    r = await start(fake)
    await r.venue.submit(order("old-1"))
    await r.venue.close()
    r2 = Rig(fake, IbVenue(make_config(fake.port), LiveClock(asyncio.get_running_loop())))
    try:
        await r2.venue.connect()
        assert ClientOrderId("old-1") in r2.venue._tracks
        fake.fill(1, "100", "201.50")
        await r2.until(lambda: r2.kinds("old-1")[-1:] == [K.FILLED])
    finally:
        await r2.venue.close()
        await fake.stop()


async def test_unknown_account_is_a_config_error() -> None:
    fake = FakeTws()
    port = await fake.start()
    v = IbVenue(make_config(port, account="U999"), LiveClock(asyncio.get_running_loop()))
    try:
        with pytest.raises(ConfigError, match="account 'U999' is not one of"):
            await v.connect()
    finally:
        await v.close()
        await fake.stop()


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown keys"):
        make_config(1, api_secret="x")
    with pytest.raises(ConfigError, match="resting_tif"):
        make_config(1, resting_tif="GTD")
    with pytest.raises(ConfigError, match="text protocol"):
        make_config(1, max_server_version=201)
    with pytest.raises(ConfigError, match="port"):
        make_config(0)
