"""Review of the Binance spot adapter: each test reproduces one correctness bug against the
loopback fake (the scenario and the venue behaviour it relies on are in its docstring)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from binance_harness import Rig, binance_rig, credentials, make_config

from marketdata.clock import LiveClock
from marketdata.errors import VenueDisconnected
from marketdata.model import ClientOrderId, Instrument, Order, OrderEvent, OrderEventKind, OrderType, Side, TimeInForce
from venues.binance import BinanceSpotVenue

BOOK = ([("100.0", "1.000"), ("99.9", "2.000")], [("100.1", "1.000"), ("100.2", "2.000")])


def _order(inst: Instrument, cid: str, side: Side, qty: str, price: str) -> Order:
    return Order(client_order_id=ClientOrderId(cid), venue=inst.venue, symbol=inst.symbol, side=side,
                 order_type=OrderType.LIMIT, lots=inst.qty_to_lots(qty), price_ticks=inst.price_to_ticks(price),
                 time_in_force=TimeInForce.GTC)


def _kinds(events: list[OrderEvent], cid: str) -> list[OrderEventKind]:
    return [e.kind for e in events if e.client_order_id == cid]


async def _wait_for(cond: Callable[[], bool], limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 (polling a condition another task changes)
            await asyncio.sleep(0.01)


@asynccontextmanager
async def _second_session(rig: Rig, **kw: Any) -> AsyncIterator[tuple[BinanceSpotVenue, list[OrderEvent]]]:
    """Another adapter on the same account (a later run of the process): it hears, on its own user
    stream, the events of orders it did not send."""
    venue = BinanceSpotVenue(make_config(rig.fake, rig.instrument, **kw), LiveClock(), credentials=credentials())
    events: list[OrderEvent] = []
    venue.set_event_handler(events.append)
    await venue.connect()
    try:
        yield venue, events
    finally:
        await venue.close()


# ---------------------------------------------------------------------------------------------- UNKNOWN
async def test_unknown_order_is_not_rejected_when_its_status_queries_failed() -> None:
    """The submit's connection drops after Binance took the order (it rests), and the status
    queries that should settle it fail too (connections dropped: no answer at all). Binance never
    said "Order does not exist." (-2013), so the order is still UNKNOWN; it must not be reported
    REJECTED (docs/venues-binance.md: REJECTED "only if the last query still finds no order").
    Once a query gets through it is ACCEPTED."""
    async with binance_rig(user_stream=False, recv_window_ms=200) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        rig.fake.fault("POST", "/api/v3/order", "drop_after")
        for _ in range(4):   # every configured resolve query (and a transport retry) is dropped
            rig.fake.fault("GET", "/api/v3/order", "drop_before")
        with pytest.raises(VenueDisconnected):
            await rig.venue.submit(_order(rig.instrument, "uq-1", Side.SELL, "1.000", "101.0"))
        assert "uq-1" in rig.fake.orders, "the venue took the order"
        await _wait_for(lambda: bool(_kinds(rig.events, "uq-1")), limit_s=8)
        assert _kinds(rig.events, "uq-1") == [OrderEventKind.ACCEPTED]
        assert rig.venue.stats["unresolved"] == 0


# ---------------------------------------------------------------------------------------------- other sessions
async def test_order_of_an_earlier_run_keeps_its_side_and_price_when_replaced() -> None:
    """A SELL limit order placed by an earlier run is first seen on this session's stream as its
    executionReport NEW (``S`` = "SELL", ``p`` = its price: fixture user_data_executionReport.json
    carries both). Replacing its quantity must send a SELL at the same price; the adapter tracked it
    as a BUY with no price, so the replace failed ("a LIMIT order needs a price") or, with a price,
    would have bought."""
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        async with _second_session(rig) as (later, events):
            await rig.venue.submit(_order(inst, "old-1", Side.SELL, "0.500", "100.5"))
            await _wait_for(lambda: OrderEventKind.ACCEPTED in _kinds(events, "old-1"))
            await later.replace(ClientOrderId("old-1"), lots=inst.qty_to_lots("0.300"))
            new = later.replacements[ClientOrderId("old-1")]
            fo = rig.fake.orders[new]
            assert (fo.side, fo.price, fo.orig_qty) == ("SELL", Decimal("100.5"), Decimal("0.300"))
            await _wait_for(lambda: OrderEventKind.CANCELED in _kinds(events, "old-1"))


async def test_order_of_an_earlier_run_first_seen_mid_fill_ends_filled() -> None:
    """An earlier run's SELL of 0.300 was partly filled (0.100) before this session started. The
    next executionReport is a TRADE with ``l`` = 0.200 (this fill) and ``z`` = 0.300 (cumulative),
    ``X`` = FILLED. The order is done: the fill must be reported as FILLED, counting the earlier
    0.100 from ``z``; counting only ``l`` left it PARTIALLY_FILLED for ever."""
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "old-2", Side.SELL, "0.300", "100.5"))
        await rig.settle()
        await rig.fake.trade("BTCUSDT", "100.5", "0.100", Side.BUY)
        await rig.settle()
        async with _second_session(rig) as (_later, events):
            await rig.fake.trade("BTCUSDT", "100.5", "0.200", Side.BUY)
            await _wait_for(lambda: len(_kinds(events, "old-2")) >= 2)
            evs = [e for e in events if e.client_order_id == "old-2"]
            assert [e.kind for e in evs] == [OrderEventKind.ACCEPTED, OrderEventKind.FILLED]
            fill = evs[1].fill
            assert fill is not None and fill.lots == inst.qty_to_lots("0.200") and fill.side is Side.SELL


# ---------------------------------------------------------------------------------------------- listen key
async def test_expired_listen_key_event_makes_the_adapter_reconnect_and_reconcile() -> None:
    """Binance's user-data stream: "listenKeyExpired: This event is sent when the listen key
    expires. No more events will be sent after this until a new listenKey is created." The socket
    is not closed. The adapter ignored the event and sat on a silent stream, so a fill made after
    the expiry never arrived; it must take a fresh key, reconnect and reconcile."""
    async with binance_rig(ws_reconnect_max_s=Decimal("0.2")) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "lk-1", Side.BUY, "0.500", "100.0"))
        await rig.settle()
        ws = rig.venue.user_stream
        assert ws is not None and ws.connections == 1
        await rig.fake.expire_listen_keys()
        await rig.settle()
        await rig.fake.trade("BTCUSDT", "100.0", "2.000", Side.SELL)
        await _wait_for(lambda: OrderEventKind.FILLED in _kinds(rig.events, "lk-1"))
        assert ws.connections == 2


async def test_keepalive_refused_for_an_unknown_listen_key_makes_the_adapter_reconnect() -> None:
    """The listen key expired without the event reaching us (e.g. it was lost with a network
    blip). The keepalive ``PUT /api/v3/userDataStream`` then answers -1125 "This listenKey does not
    exist." and the stream stays silent: the adapter must create a new key and reconnect instead
    of only logging the failed keepalive every 30 minutes."""
    async with binance_rig(ws_reconnect_max_s=Decimal("0.2"), listen_key_keepalive_s=Decimal("0.1")) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "lk-2", Side.SELL, "0.500", "100.1"))
        await rig.settle()
        ws = rig.venue.user_stream
        assert ws is not None
        await rig.fake.expire_listen_keys(notify=False)
        await _wait_for(lambda: ws.connections == 2)
        await rig.fake.trade("BTCUSDT", "100.1", "2.000", Side.BUY)
        await _wait_for(lambda: OrderEventKind.FILLED in _kinds(rig.events, "lk-2"))


async def test_adopted_order_fills_missed_while_disconnected_are_not_counted_twice() -> None:
    """An earlier run's SELL of 0.300 has 0.100 filled; this session adopts it from
    ``open_orders()`` (``adopt``: "with its fills so far already counted"). The user stream drops
    and the remaining 0.200 fills meanwhile. The reconnect's reconciliation reads
    ``GET /api/v3/myTrades``, which lists *both* trades of the order; only the 0.200 one is new.
    Re-reporting the 0.100 one counted 0.400 of a 0.300 order (and a fill after FILLED)."""
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "old-3", Side.SELL, "0.300", "100.5"))
        await rig.settle()
        await rig.fake.trade("BTCUSDT", "100.5", "0.100", Side.BUY)
        await rig.settle()
        async with _second_session(rig, ws_reconnect_max_s=Decimal("0.2")) as (later, events):
            (rep,) = [r for r in await later.open_orders() if r.client_order_id == "old-3"]
            assert rep.filled_lots == inst.qty_to_lots("0.100")
            later.adopt(rep)
            ws = later.user_stream
            assert ws is not None
            await rig.fake.drop_user_streams()
            await _wait_for(lambda: not ws.connected)
            await rig.fake.trade("BTCUSDT", "100.5", "0.200", Side.BUY)   # while we are not listening
            await _wait_for(lambda: OrderEventKind.FILLED in _kinds(events, "old-3"))
            await _wait_for(lambda: ws.connected)
            evs = [e for e in events if e.client_order_id == "old-3"]
            assert [e.kind for e in evs] == [OrderEventKind.FILLED]
            assert evs[0].fill is not None and evs[0].fill.lots == inst.qty_to_lots("0.200")
