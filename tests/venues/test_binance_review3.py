"""Third review of the Binance spot adapter against Binance's documented behaviour: each test
failed before its fix (the scenario and the venue behaviour it relies on are in its docstring).
Loopback fake only (``binance_fake.py``)."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import pytest
from binance_harness import Rig, binance_rig, make_instrument

from marketdata.errors import RateLimited
from marketdata.model import ClientOrderId, Instrument, Order, OrderEventKind, OrderType, Side, TimeInForce
from venues.binance.parsers import parse_execution_report, parse_order
from venues.journal import scrub

BOOK = ([("100.0", "1.000"), ("99.9", "2.000")], [("100.1", "1.000"), ("100.2", "2.000")])


def _order(inst: Instrument, cid: str, side: Side, qty: str, price: str) -> Order:
    return Order(client_order_id=ClientOrderId(cid), venue=inst.venue, symbol=inst.symbol, side=side,
                 order_type=OrderType.LIMIT, lots=inst.qty_to_lots(qty), price_ticks=inst.price_to_ticks(price),
                 time_in_force=TimeInForce.GTC)


def _report(rig: Rig, cid: str, **fields: Any) -> str:
    """An executionReport of our resting order ``cid`` as Binance sends it (user-data-stream.md,
    "Order Update"), with ``fields`` overriding the defaults of a NEW event."""
    fo = rig.fake.orders[cid]
    ev: dict[str, Any] = {
        "e": "executionReport", "E": fo.time_ms + 5, "s": fo.symbol, "c": cid, "S": fo.side, "o": fo.type,
        "f": fo.tif, "q": f"{fo.orig_qty:.8f}", "p": f"{fo.price:.8f}", "P": "0.00000000", "F": "0.00000000",
        "g": -1, "C": "", "x": "NEW", "X": "NEW", "r": "NONE", "i": fo.order_id, "l": "0.00000000",
        "z": "0.00000000", "L": "0.00000000", "n": "0", "N": None, "T": fo.time_ms + 5, "t": -1, "I": 1,
        "w": True, "m": False, "M": False, "O": fo.time_ms, "Z": "0.00000000", "Y": "0.00000000",
        "Q": "0.00000000", "W": fo.time_ms, "V": "DECREMENT"}
    ev.update(fields)
    return json.dumps(ev)


async def test_trade_prevention_decrement_of_a_live_order_is_not_an_expiry() -> None:
    """Failed before. Binance's STP FAQ, DECREMENT mode: "increases the prevented quantity of both
    orders by the amount of the prevented match. The smaller of the two orders will expire" -- the
    larger one stays on the book (status NEW in the FAQ's Scenario G), with ``A`` (prevented
    quantity) in its ``TRADE_PREVENTION`` executionReport. The parser mapped every
    ``x=TRADE_PREVENTION`` to EXPIRED whatever ``X`` said, so a live order was reported EXPIRED
    (terminal) and its later fills arrived "after its terminal event", with no FILLED. Now a
    TRADE_PREVENTION whose order status is still live is a REPLACED with the new total
    ``q - A``, and the fill of the rest completes the order."""
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "stp-1", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        rig.venue.on_user_message(_report(rig, "stp-1", x="TRADE_PREVENTION", X="NEW", A="0.40000000",
                                          B="0.40000000", v=7, U=99, u=-1, pl="0.40000000", pL="99.00000000",
                                          pY="39.60000000"))
        kinds = [e.kind for e in rig.events if e.client_order_id == "stp-1"]
        assert OrderEventKind.EXPIRED not in kinds, kinds
        replaced = [e for e in rig.events if e.kind is OrderEventKind.REPLACED]
        assert [e.new_lots for e in replaced] == [inst.qty_to_lots("0.600")]
        # the remaining 0.6 fills: the order is complete
        rig.venue.on_user_message(_report(rig, "stp-1", x="TRADE", X="FILLED", l="0.60000000", z="0.60000000",
                                          L="99.00000000", n="0.00024000", N="BTC", t=777, m=True, A="0.40000000"))
        kinds = [e.kind for e in rig.events if e.client_order_id == "stp-1"]
        assert kinds[-1] is OrderEventKind.FILLED, kinds
        # an expiry through STP (X=EXPIRED_IN_MATCH) is still terminal
        await rig.venue.submit(_order(inst, "stp-2", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        rig.venue.on_user_message(_report(rig, "stp-2", x="TRADE_PREVENTION", X="EXPIRED_IN_MATCH",
                                          A="1.00000000", B="1.00000000", w=False))
        assert [e.kind for e in rig.events if e.client_order_id == "stp-2"][-1] is OrderEventKind.EXPIRED


async def test_an_amended_order_fills_to_its_new_quantity_and_is_filled() -> None:
    """Failed before. ``PUT /api/v3/order/amend/keepPriority`` (order_amend_keep_priority.md) lowers an
    order's quantity in place; the stream reports it as ``x=AMENDMENT`` with the new ``q``. The
    adapter passed the REPLACED on but kept the old size in its own record, so when the new, smaller
    quantity had all traded (``X=FILLED``) the fill was reported PARTIALLY_FILLED and the order never
    got its FILLED: it stayed live forever. Now the record takes the new size."""
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "am-1", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        rig.venue.on_user_message(_report(rig, "am-1", x="AMENDMENT", X="NEW", q="0.50000000"))
        rig.venue.on_user_message(_report(rig, "am-1", x="TRADE", X="FILLED", q="0.50000000", l="0.50000000",
                                          z="0.50000000", L="99.00000000", n="0.00020000", N="BTC", t=778, m=True))
        kinds = [e.kind for e in rig.events if e.client_order_id == "am-1"]
        assert kinds == [OrderEventKind.ACCEPTED, OrderEventKind.REPLACED, OrderEventKind.FILLED], kinds


def test_historical_order_without_quote_quantity_has_no_average_price() -> None:
    """Failed before. GET /api/v3/order (rest-api.md, "Query order"): "For some historical orders
    ``cummulativeQuoteQty`` will be < 0, meaning the data is not available at this time." The parser
    divided it anyway and reported a negative average fill price. Now the average is unknown
    (``None``) and the rest of the report is read as usual."""
    inst = make_instrument()
    o = {"symbol": "BTCUSDT", "orderId": 1, "orderListId": -1, "clientOrderId": "old-1", "price": "100.00000000",
         "origQty": "1.00000000", "executedQty": "1.00000000", "cummulativeQuoteQty": "-1.00000000",
         "status": "FILLED", "timeInForce": "GTC", "type": "LIMIT", "side": "BUY", "stopPrice": "0.00000000",
         "icebergQty": "0.00000000", "time": 1499827319559, "updateTime": 1499827319559, "isWorking": True,
         "workingTime": 1499827319559, "origQuoteOrderQty": "0.000000", "selfTradePreventionMode": "NONE"}
    rep = parse_order(o, inst)
    assert rep.average_price_ticks is None
    assert rep.filled_lots == inst.qty_to_lots("1") and rep.price_ticks == inst.price_to_ticks("100")


def test_trade_prevention_parser_fixture_expired_in_match() -> None:
    """Not a regression (passed before): the TRADE_PREVENTION report of an order STP expired
    (``X=EXPIRED_IN_MATCH``, ``t=-1``, a non-zero ``l`` that is no fill) stays an EXPIRED event."""
    inst = make_instrument()
    ev = {"e": "executionReport", "E": 1759347763167, "s": "BTCUSDT", "c": "O-1", "S": "BUY", "o": "LIMIT",
          "f": "GTC", "q": "1.00000000", "p": "100.00000000", "P": "0.00000000", "F": "0.00000000", "g": -1,
          "C": "", "x": "TRADE_PREVENTION", "X": "EXPIRED_IN_MATCH", "r": "NONE", "i": 1, "l": "0.50000000",
          "z": "0.00000000", "L": "100.00000000", "n": "0", "N": None, "T": 1759347763167, "t": -1,
          "w": False, "m": False, "M": False, "O": 1759347763100, "Z": "0.00000000", "A": "1.00000000",
          "B": "1.00000000", "V": "EXPIRE_MAKER"}
    rep = parse_execution_report(ev, inst, 0)
    assert rep.event.kind is OrderEventKind.EXPIRED and rep.event.fill is None
    assert rep.cum_lots == 0 and Decimal(ev["q"]) == inst.lots_to_qty(rep.order_lots)


async def test_a_rate_limited_cancel_replace_leaves_no_replacement_behind() -> None:
    """Failed before (flagged by the adapter review): a cancel-replace refused with HTTP 429
    (nothing cancelled, nothing placed) raised RateLimited but left the new order's record and
    ``replacements[old]`` behind, naming an order that was never sent (a reconcile would then ask
    the venue for it). Now both are dropped; the old order is untouched and still working."""
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "rl-1", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        rig.fake.fail("POST", "/api/v3/order/cancelReplace", 429, -1003, "Too many requests.",
                      headers={"Retry-After": "1"})
        with pytest.raises(RateLimited):
            await rig.venue.replace(ClientOrderId("rl-1"), price_ticks=inst.price_to_ticks("99.5"))
        assert ClientOrderId("rl-1") not in rig.venue.replacements
        assert ClientOrderId("rl-1.r1") not in rig.venue._tracks
        assert rig.fake.orders["rl-1"].status == "NEW"


async def test_a_listen_key_in_a_user_data_message_is_never_logged_or_journaled(
        caplog: pytest.LogCaptureFixture) -> None:
    """Failed before (flagged by the adapter review): a repeated ``listenKeyExpired`` message (it
    carries the key) was logged raw, and a garbled one was logged and handed to the journal raw.
    Log lines now go through ``redact`` (any ``"listenKey": "..."`` value, not only the current
    key), and the journal's scrub knows the field."""
    key = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
    expired = json.dumps({"e": "listenKeyExpired", "E": 1576653824250, "listenKey": key})
    async with binance_rig() as rig:
        with caplog.at_level(logging.INFO):
            rig.venue.on_user_message(expired)
            rig.venue.on_user_message(expired)             # the duplicate is logged
            rig.venue.on_user_message(expired[:-1] + ',')   # garbled
        await rig.settle()
    assert key not in caplog.text and "listenKey" in caplog.text
    assert key not in json.dumps(scrub({"raw": expired, "nested": {"listenKey": key}}))
