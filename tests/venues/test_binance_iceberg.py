"""Native iceberg orders on the Binance spot adapter (``icebergQty``), against the loopback fake:
what is signed and sent, venue and local refusals (Binance's codes and texts), fills, replace, and
the parsers on the shared payload fixtures (``icebergQty`` of order objects, ``F`` of an
``executionReport``)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import pytest
from binance_harness import API_SECRET, Rig, binance_rig
from test_binance_wire import SHARED, _inst, _load

from marketdata.errors import ConfigError, OrderRejected
from marketdata.model import (
    ClientOrderId,
    Instrument,
    InstrumentKind,
    Order,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    VenueId,
)
from venues.binance import BinanceSpotConfig
from venues.binance.parsers import (
    parse_execution_report,
    parse_iceberg_parts,
    parse_iceberg_qty,
    parse_order,
    unwrap_user_event,
)

BOOK = ([("100.0", "1.000"), ("99.9", "2.000")], [("100.1", "1.000"), ("100.2", "2.000")])


def _spot(rel: str) -> Any:
    """A Binance spot payload fixture (NautilusTrader's test data in the shared data)."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set SOREX_SHARED)")
    return _load(SHARED, "venues/binance/spot/" + rel)


def _ice(inst: Instrument, cid: str, qty: str, display: str | None, price: str | None = "99.0", *,
         side: Side = Side.BUY, tif: TimeInForce = TimeInForce.GTC, otype: OrderType = OrderType.LIMIT) -> Order:
    return Order(client_order_id=ClientOrderId(cid), venue=inst.venue, symbol=inst.symbol, side=side,
                 order_type=otype, lots=inst.qty_to_lots(qty),
                 price_ticks=None if price is None else inst.price_to_ticks(price), time_in_force=tif,
                 display_lots=None if display is None else inst.qty_to_lots(display))


def _sent(rig: Rig, path: str, cid: str, key: str = "newClientOrderId") -> tuple[dict[str, str], str, str]:
    """The last signed request to ``path`` for ``cid``: its parameters, signed payload, signature."""
    for method, p, raw in reversed(rig.fake.requests):
        payload, _, sig = raw.rpartition("&signature=")
        params = dict(parse_qsl(payload))
        if p == path and method == "POST" and params.get(key) == cid:
            return params, payload, sig
    raise AssertionError(f"no POST {path} for {cid}")


def _kinds(rig: Rig, cid: str) -> list[OrderEventKind]:
    return [e.kind for e in rig.events if e.client_order_id == cid]


def _posted(rig: Rig, cid: str) -> bool:
    return any(f"newClientOrderId={cid}&" in raw for _m, _p, raw in rig.fake.requests)


# ---------------------------------------------------------------------------------------------- submit
async def test_capabilities_report_native_icebergs() -> None:
    async with binance_rig(user_stream=False) as rig:
        assert rig.venue.info.capabilities.native_iceberg is True


async def test_iceberg_submit_sends_signed_iceberg_qty_and_fills() -> None:
    async with binance_rig() as rig:
        pushed: list[dict[str, Any]] = []
        publish = rig.fake._publish

        async def record(reports: list[dict[str, Any]]) -> None:
            pushed.extend(reports)
            await publish(reports)

        rig.fake._publish = record  # type: ignore[method-assign]
        await rig.fake.set_book("BTCUSDT", *BOOK)
        await rig.venue.submit(_ice(rig.instrument, "ice-1", "1.000", "0.100"))
        params, payload, sig = _sent(rig, "/api/v3/order", "ice-1")
        assert (params["type"], params["timeInForce"], params["quantity"], params["icebergQty"]) == \
            ("LIMIT", "GTC", "1.000", "0.100")
        # icebergQty is inside the signed payload, and the signature is over all of it
        assert "&icebergQty=0.100&" in f"&{payload}&"
        assert sig == hmac.new(API_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        assert rig.fake.orders["ice-1"].iceberg_qty == Decimal("0.100")
        assert rig.fake.orders["ice-1"].view()["icebergQty"] == "0.10000000"
        assert _kinds(rig, "ice-1") == [OrderEventKind.ACCEPTED]
        await rig.fake.trade("BTCUSDT", "98.9", "5.000", Side.SELL)
        await rig.settle()
        assert _kinds(rig, "ice-1") == [OrderEventKind.ACCEPTED, OrderEventKind.FILLED]
        fills = [e.fill for e in rig.events if e.client_order_id == "ice-1" and e.fill is not None]
        assert sum(f.lots for f in fills) == rig.instrument.qty_to_lots("1.000")
        # the fake echoes the iceberg quantity as F in every executionReport of the order, as Binance does
        reports = [r for r in pushed if r.get("e") == "executionReport" and r["c"] == "ice-1"]
        assert reports and all(r["F"] == "0.10000000" for r in reports)
        assert (await rig.venue.order_status(ClientOrderId("ice-1"))).status is OrderStatus.FILLED


async def test_post_only_iceberg_is_a_limit_maker_without_time_in_force(caplog: pytest.LogCaptureFixture) -> None:
    async with binance_rig(user_stream=False, order_resp_type="RESULT") as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        await rig.venue.submit(_ice(rig.instrument, "ice-pm", "0.500", "0.050", tif=TimeInForce.POST_ONLY,
                                    side=Side.SELL, price="100.5"))
        params, _, _ = _sent(rig, "/api/v3/order", "ice-pm")
        assert params["type"] == "LIMIT_MAKER" and "timeInForce" not in params and params["icebergQty"] == "0.050"
        assert _kinds(rig, "ice-pm") == [OrderEventKind.ACCEPTED]
        assert "is not the display sent" not in caplog.text   # the RESULT echoed icebergQty = what was sent


async def test_replace_keeps_the_display_unless_the_remainder_fits_in_it() -> None:
    async with binance_rig(user_stream=False) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_ice(inst, "ice-r", "1.000", "0.200"))
        await rig.venue.replace(ClientOrderId("ice-r"), price_ticks=inst.price_to_ticks("98.0"))
        new = rig.venue.replacements[ClientOrderId("ice-r")]
        params, _, _ = _sent(rig, "/api/v3/order/cancelReplace", new)
        assert params["icebergQty"] == "0.200" and params["quantity"] == "1.000"
        assert _kinds(rig, new) == [OrderEventKind.ACCEPTED]
        await rig.venue.replace(new, lots=inst.qty_to_lots("0.150"))   # 0.150 left: no smaller than the display
        newer = rig.venue.replacements[new]
        params, _, _ = _sent(rig, "/api/v3/order/cancelReplace", newer)
        assert "icebergQty" not in params and params["quantity"] == "0.150"


# ---------------------------------------------------------------------------------------------- refused here
@pytest.mark.parametrize(("qty", "display", "tif", "otype", "why"), [
    ("1.000", "0.100", TimeInForce.IOC, OrderType.LIMIT, "not limit ioc"),
    ("1.000", "0.100", TimeInForce.FOK, OrderType.LIMIT, "not limit fok"),
    ("1.000", "0.100", TimeInForce.IOC, OrderType.MARKET, "not market ioc"),
    ("1.000", "1.000", TimeInForce.GTC, OrderType.LIMIT, "IcebergQty exceeds QTY."),
    ("1.000", "2.000", TimeInForce.GTC, OrderType.LIMIT, "IcebergQty exceeds QTY."),
    ("1.000", "0", TimeInForce.GTC, OrderType.LIMIT, "above 0"),
])
async def test_bad_iceberg_is_refused_before_anything_is_sent(qty: str, display: str, tif: TimeInForce,
                                                              otype: OrderType, why: str) -> None:
    async with binance_rig(user_stream=False) as rig:
        order = _ice(rig.instrument, "bad-ice", qty, display, None if otype is OrderType.MARKET else "99.0",
                     tif=tif, otype=otype)
        with pytest.raises(OrderRejected, match="iceberg refused before sending") as ei:
            await rig.venue.submit(order)
        assert why in str(ei.value).lower() or why in str(ei.value)
        assert not _posted(rig, "bad-ice") and _kinds(rig, "bad-ice") == []
        # nothing half-done: the same id goes through once fixed
        await rig.venue.submit(_ice(rig.instrument, "bad-ice", "1.000", "0.100"))
        assert _kinds(rig, "bad-ice") == [OrderEventKind.ACCEPTED]


async def test_configured_iceberg_parts_limit_is_checked_locally() -> None:
    async with binance_rig(user_stream=False, iceberg_parts={"BTC-USDT": 10}) as rig:
        with pytest.raises(OrderRejected, match=r"11 parts .* ICEBERG_PARTS limit 10"):
            await rig.venue.submit(_ice(rig.instrument, "parts-11", "1.001", "0.100"))
        assert not _posted(rig, "parts-11")
        await rig.venue.submit(_ice(rig.instrument, "parts-10", "1.000", "0.100"))   # exactly 10 parts
        assert _kinds(rig, "parts-10") == [OrderEventKind.ACCEPTED]


def test_iceberg_parts_config_is_validated() -> None:
    inst = Instrument(venue=VenueId("binance-spot"), symbol=Symbol("BTC-USDT"), venue_symbol="BTCUSDT", base="BTC",
                      quote="USDT", tick_size=Decimal("0.01"), lot_size=Decimal("0.00001"), kind=InstrumentKind.SPOT)
    raw = {"instruments": [{"symbol": "BTC-USDT", "venue_symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                            "tick_size": "0.01", "lot_size": "0.00001", "iceberg_parts": 100}]}
    assert BinanceSpotConfig.from_mapping(raw).iceberg_parts == {"BTC-USDT": 100}
    for bad in ({"BTC-USDT": 0}, {"ETH-USDT": 10}, {"BTC-USDT": "10"}):
        with pytest.raises(ConfigError, match="iceberg_parts"):
            BinanceSpotConfig(instruments=(inst,), iceberg_parts=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- refused by the venue
async def test_too_many_parts_is_a_venue_reject_with_binance_code_and_text() -> None:
    async with binance_rig(user_stream=False, fake_kw={"iceberg_parts": 10}) as rig:
        await rig.venue.submit(_ice(rig.instrument, "parts-v", "1.000", "0.010"))   # 100 parts; not configured here
        params, _, _ = _sent(rig, "/api/v3/order", "parts-v")
        assert params["icebergQty"] == "0.010"
        assert _kinds(rig, "parts-v") == [OrderEventKind.REJECTED]
        ev = rig.events[-1]
        assert (ev.code, ev.reason) == ("-1013", "Filter failure: ICEBERG_PARTS")
        assert "parts-v" not in rig.fake.orders   # Binance keeps no such order
        assert (await rig.venue.order_status(ClientOrderId("parts-v"))).status is OrderStatus.REJECTED
        await rig.venue.submit(_ice(rig.instrument, "parts-v", "1.000", "0.100"))   # the id is free again
        assert _kinds(rig, "parts-v")[-1] is OrderEventKind.ACCEPTED


async def test_symbol_without_icebergs_is_a_venue_reject() -> None:
    async with binance_rig(user_stream=False, fake_kw={"iceberg_allowed": False}) as rig:
        await rig.venue.submit(_ice(rig.instrument, "no-ice", "1.000", "0.100"))
        ev = rig.events[-1]
        assert ev.kind is OrderEventKind.REJECTED and ev.code == "-2010"
        assert ev.reason == "Iceberg orders are not supported for this symbol."


@pytest.mark.parametrize(("extra", "code", "msg"), [
    ({"type": "LIMIT", "timeInForce": "IOC", "price": "99.0", "icebergQty": "0.100"}, -2010,
     "Unsupported order combination"),
    ({"type": "LIMIT", "timeInForce": "FOK", "price": "99.0", "icebergQty": "0.100"}, -2010,
     "Unsupported order combination"),
    ({"type": "LIMIT", "timeInForce": "GTC", "price": "99.0", "icebergQty": "1.000"}, -2010,
     "IcebergQty exceeds QTY."),
    ({"type": "LIMIT", "timeInForce": "GTC", "price": "99.0", "icebergQty": "0.0005"}, -1013,
     "Filter failure: LOT_SIZE"),
    ({"type": "MARKET", "icebergQty": "0.100"}, -1106, "Parameter 'icebergQty' sent when not required."),
])
async def test_fake_refuses_bad_icebergs_like_binance(extra: dict[str, str], code: int, msg: str) -> None:
    """What the adapter never sends, sent raw (signed) to the fake: Binance's code and text."""
    async with binance_rig(user_stream=False) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        params = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "1.000", "newClientOrderId": "raw-ice", **extra}
        with pytest.raises(OrderRejected) as ei:
            await rig.venue.http.request("POST", "/api/v3/order", params, request_type="new_order",
                                         client_order_id="raw-ice")
        assert (ei.value.code, ei.value.venue_text) == (code, msg)
        assert "raw-ice" not in rig.fake.orders


# ---------------------------------------------------------------------------------------------- parsers
def test_execution_report_f_field() -> None:
    inst = _inst("ETHBTC")
    raw = _spot("user_data_json/execution_report_wrapped.json")
    plain = parse_execution_report(unwrap_user_event(raw), inst, 0)
    assert plain.iceberg_lots is None and plain.event.kind is OrderEventKind.ACCEPTED   # F "0.00000000"
    ice = copy.deepcopy(raw)
    ice["event"]["F"] = "0.25000000"   # the same report for an iceberg showing 0.25 of its 1.0
    rep = parse_execution_report(unwrap_user_event(ice), inst, 0)
    assert rep.iceberg_lots == inst.qty_to_lots("0.25") and rep.order_lots == inst.qty_to_lots("1")
    bad = copy.deepcopy(raw)
    bad["event"]["F"] = "0.000000001"   # below the lot: garbled, like any off-grid quantity
    with pytest.raises(ValueError):
        parse_execution_report(unwrap_user_event(bad), inst, 0)
    # the fixtures without F (older payloads) still parse
    trade = _spot("user_data_json/execution_report_trade.json")
    r = parse_execution_report(trade, _inst("ETHUSDT"), 0)
    assert r.iceberg_lots is None and r.event.fill is not None


def test_order_objects_with_iceberg_qty() -> None:
    o = _spot("http_json/order_response.json")   # "icebergQty": "0.0": a plain order
    assert parse_iceberg_qty(o["icebergQty"], _inst("LTCBTC", tick="0.1", lot="0.1")) is None
    assert parse_order(o, _inst("LTCBTC", tick="0.1", lot="0.1")).status is OrderStatus.NEW
    lists = _spot("http_json/cancel_open_orders_response.json")
    legs = lists[2]["orderReports"]   # an OCO's legs, each an iceberg ("0.017083", "0.639962")
    inst = _inst("BTCUSDT", tick="0.000001", lot="0.000001")
    assert [parse_iceberg_qty(x["icebergQty"], inst) for x in legs] == [17083, 639962]
    assert [parse_order(x, inst).status for x in legs] == [OrderStatus.CANCELED, OrderStatus.CANCELED]
    assert parse_iceberg_qty(None, inst) is None
    with pytest.raises(ValueError):   # off this instrument's grid
        parse_order(legs[0], _inst("BTCUSDT", tick="0.000001", lot="0.001"))


def test_exchange_info_iceberg_parts() -> None:
    info = _spot("http_json/exchange_info_response.json")
    assert parse_iceberg_parts(info) == {}   # the fixture's symbol lists no filters
    info["symbols"][0]["filters"] = [{"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "100",
                                      "stepSize": "0.001"}, {"filterType": "ICEBERG_PARTS", "limit": 10}]
    assert parse_iceberg_parts(info) == {"ETHBTC": 10}
    info["symbols"][0]["icebergAllowed"] = False
    assert parse_iceberg_parts(info) == {}


async def test_untracked_iceberg_from_the_stream_keeps_its_display() -> None:
    """An executionReport of an order of an earlier run: its F becomes the tracked display, so a
    replace keeps it an iceberg."""
    async with binance_rig(user_stream=False) as rig:
        ev = _spot("user_data_json/execution_report_new.json")
        ev |= {"s": "BTCUSDT", "c": "old-ice", "q": "1.00000000", "p": "99.00000000", "F": "0.10000000"}
        rig.venue.on_user_message(json.dumps(ev))
        assert rig.venue.stats["garbled"] == 0 and _kinds(rig, "old-ice") == [OrderEventKind.ACCEPTED]
        assert rig.venue._tracks[ClientOrderId("old-ice")].order.display_lots == rig.instrument.qty_to_lots("0.1")
