"""Binance signing vectors, error-code table and parsers against real payloads (Binance's docs via
/work/shared/data/fixtures/binance and NautilusTrader's test data in /work/shared/data/venues)."""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketdata.errors import (
    FinalVenueError,
    InsufficientFunds,
    OrderRejected,
    RateLimited,
    VenueDisconnected,
    VenueTimeout,
)
from marketdata.model import (
    Instrument,
    InstrumentKind,
    Liquidity,
    OrderEventKind,
    OrderStatus,
    Side,
    Symbol,
    VenueId,
)
from venues.base import Balance
from venues.binance.config import BinanceCredentials, BinanceSpotConfig
from venues.binance.errors import AuthenticationError, CancelRejected, OrderNotFound, TimestampRejected, map_error
from venues.binance.http import sign_query
from venues.binance.parsers import (
    parse_account_balances,
    parse_account_position,
    parse_book_ticker,
    parse_depth_diff,
    parse_depth_snapshot,
    parse_execution_report,
    parse_full_fill,
    parse_my_trade,
    parse_order,
    parse_trade,
    unwrap_user_event,
)
from venues.signing import Secret, hmac_sha256_hex, redact

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SOREX_SHARED", REPO / ".." / "shared")) / "data"


@pytest.fixture(scope="module")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set SOREX_SHARED)")
    return SHARED


def _load(shared: Path, rel: str) -> Any:
    return json.loads((shared / rel).read_text())


def _inst(symbol: str, tick: str = "0.00000001", lot: str = "0.00000001") -> Instrument:
    return Instrument(venue=VenueId("binance-spot"), symbol=Symbol(symbol), venue_symbol=symbol, base="X",
                      quote="Y", tick_size=Decimal(tick), lot_size=Decimal(lot), kind=InstrumentKind.SPOT)


# ---------------------------------------------------------------------------------------------- signing
def test_binance_hmac_vectors(shared: Path) -> None:
    vectors = _load(shared, "fixtures/signing_and_checksum_vectors.json")["binance_hmac_sha256"]
    assert len(vectors) == 2
    for v in vectors:
        assert hmac_sha256_hex(Secret(v["secretKey"]), v["payload"]) == v["expected_signature_hex"]


def test_sign_query_builds_the_documented_payload(shared: Path) -> None:
    vectors = _load(shared, "fixtures/signing_and_checksum_vectors.json")["binance_hmac_sha256"]
    creds = BinanceCredentials(Secret(vectors[0]["apiKey"]), Secret(vectors[0]["secretKey"]))
    for v, symbol in zip(vectors, ["LTCBTC", "１２３４５６"], strict=True):
        params = {"symbol": symbol, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": Decimal(1),
                  "price": Decimal("0.1"), "recvWindow": 5000, "timestamp": 1499827319559}
        assert sign_query(params, creds) == f"{v['payload']}&signature={v['expected_signature_hex']}"


def test_floats_are_never_signed() -> None:
    with pytest.raises(TypeError):
        sign_query({"price": 0.1}, BinanceCredentials(Secret("k"), Secret("s")))


def test_secret_and_redact() -> None:
    s = Secret("topsecret")
    assert "topsecret" not in repr(s) + str(s) + f"{s}" + repr(BinanceCredentials(s, s))
    assert redact("a=1&signature=abcdef&b=2 key topsecret", s) == "a=1&signature=***&b=2 key ***"
    # the user stream's listenKey in a query (PUT/DELETE /api/v3/userDataStream) is scrubbed too
    # (failed before: only the API key, the secret and signatures were)
    key = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
    text = f"Cannot connect to host x:443 ssl:default [PUT /api/v3/userDataStream?listenKey={key}&x=1]"
    assert redact(text, s) == ("Cannot connect to host x:443 ssl:default "
                               "[PUT /api/v3/userDataStream?listenKey=***&x=1]")


def test_config_from_mapping_and_errors() -> None:
    cfg = BinanceSpotConfig.from_mapping({
        "api_key_env": "K", "order_resp_type": "FULL", "request_timeout_s": 3, "resolve_delays_s": [0.5, 1],
        "instruments": [{"symbol": "BTC-USDT", "venue_symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                         "tick_size": "0.01", "lot_size": "0.00001", "min_notional": "5"}]})
    assert cfg.instruments[0].tick_size == Decimal("0.01") and cfg.resolve_delays_s == (Decimal("0.5"), Decimal(1))
    with pytest.raises(Exception, match="order_resp_type"):
        BinanceSpotConfig.from_mapping({"order_resp_type": "BIG", "instruments": cfg_insts()})
    with pytest.raises(Exception, match="api_secret"):
        BinanceSpotConfig.from_mapping({"api_secret": "x", "instruments": cfg_insts()})
    with pytest.raises(Exception, match="tick_size"):
        BinanceSpotConfig.from_mapping({"instruments": [{"symbol": "A", "venue_symbol": "A", "base": "A",
                                                         "quote": "B", "lot_size": "1"}]})


def cfg_insts() -> list[dict[str, str]]:
    return [{"symbol": "BTC-USDT", "venue_symbol": "BTCUSDT", "base": "BTC", "quote": "USDT", "tick_size": "0.01",
             "lot_size": "0.00001"}]


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("status", "code", "msg", "retry", "cls", "retry_ns"), [
    (429, -1003, "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.", "7",
     RateLimited, 7_000_000_000),
    (418, -1003, "Way too much request weight used; IP banned until 1659146400000.", "120", RateLimited,
     120_000_000_000),
    (429, -1015, "Too many new orders; current limit is 50 orders per 10 SECOND.", None, RateLimited, None),
    (400, -1015, "Too many new orders.", None, RateLimited, None),
    (400, -2010, "Account has insufficient balance for requested action.", None, InsufficientFunds, None),
    (400, -2010, "Order would immediately match and take.", None, OrderRejected, None),
    (400, -2011, "Unknown order sent.", None, CancelRejected, None),
    (400, -2013, "Order does not exist.", None, OrderNotFound, None),
    (400, -1021, "Timestamp for this request is outside of the recvWindow.", None, TimestampRejected, None),
    (400, -1022, "Signature for this request is not valid.", None, AuthenticationError, None),
    (401, -2015, "Invalid API-key, IP, or permissions for action.", None, AuthenticationError, None),
    (400, -1013, "Filter failure: LOT_SIZE", None, OrderRejected, None),
    (400, -1013, "Filter failure: NOTIONAL", None, OrderRejected, None),
    (400, -1121, "Invalid symbol.", None, OrderRejected, None),
    (503, -1007, "Timeout waiting for response from backend server. Send status unknown; execution status "
     "unknown.", None, VenueTimeout, None),
    (502, None, "<html>Bad Gateway</html>", None, VenueTimeout, None),
    (400, -1001, "Internal error; unable to process your request. Please try again.", None, VenueDisconnected,
     None),
    (403, None, "WAF", None, RateLimited, None),   # Binance: a WAF rule violated, not a bad key
])
def test_error_table(status: int, code: int | None, msg: str, retry: str | None, cls: type,
                     retry_ns: int | None) -> None:
    e = map_error(status, code, msg, venue="binance-spot", client_order_id="c1", retry_after_s=retry)
    assert type(e) is cls
    assert e.venue == "binance-spot" and e.client_order_id == "c1" and e.venue_text == msg
    if isinstance(e, RateLimited):
        assert e.retry_after_ns == retry_ns
    final = isinstance(e, FinalVenueError)
    assert final != isinstance(e, (RateLimited, VenueTimeout, VenueDisconnected))


# ---------------------------------------------------------------------------------------------- parsers
def test_execution_report_wrapped_and_bare(shared: Path) -> None:
    inst = _inst("ETHBTC")
    wrapped = _load(shared, "fixtures/binance/user_data_executionReport.json")
    ev = unwrap_user_event(wrapped)
    bare = unwrap_user_event(ev)
    assert ev is bare
    rep = parse_execution_report(ev, inst, 7)
    assert rep.event.kind is OrderEventKind.ACCEPTED and rep.event.client_order_id == "mUvoqJxFIILMdfAW5iGSOW"
    assert rep.event.venue_order_id == "4293153" and rep.event.ts_event == 1499405658657 * 1_000_000
    assert rep.status is OrderStatus.NEW and rep.order_lots == inst.qty_to_lots("1") and rep.cum_lots == 0
    other = parse_execution_report(unwrap_user_event(
        _load(shared, "venues/binance/spot/user_data_json/execution_report_wrapped.json")), inst, 7)
    assert other.event == rep.event


def test_execution_report_trade(shared: Path) -> None:
    inst = _inst("ETHUSDT", tick="0.01", lot="0.0001")
    rep = parse_execution_report(_load(shared, "venues/binance/spot/user_data_json/execution_report_trade.json"),
                                 inst, 1)
    e = rep.event
    assert e.kind is OrderEventKind.FILLED and e.fill is not None
    f = e.fill
    assert (f.trade_id, f.price_ticks, f.lots) == ("98765432", 250_000, 10_000)
    assert f.fee == Decimal("0.00100000") and f.fee_currency == "ETH" and f.liquidity is Liquidity.MAKER
    assert f.side is Side.BUY and f.venue_order_id == "12345678"


@pytest.mark.parametrize(("name", "kind"), [("execution_report_canceled.json", OrderEventKind.CANCELED),
                                            ("execution_report_expired.json", OrderEventKind.EXPIRED),
                                            ("execution_report_new.json", OrderEventKind.ACCEPTED)])
def test_execution_report_kinds(shared: Path, name: str, kind: OrderEventKind) -> None:
    raw = _load(shared, f"venues/binance/spot/user_data_json/{name}")
    inst = _inst(raw["s"], tick="0.01", lot="0.00001")
    rep = parse_execution_report(raw, inst, 1)
    assert rep.event.kind is kind
    if kind is OrderEventKind.CANCELED and raw.get("C"):
        assert rep.event.client_order_id == raw["C"], "a cancel names the order's own id (C), not the cancel's (c)"


@pytest.mark.parametrize("bad", [
    {"e": "executionReport"},
    {"e": "balanceUpdate", "a": "BTC"},
    {"e": "executionReport", "s": "ETHUSDT", "c": "x", "S": "BUY", "q": "1", "z": "0", "x": "TRADE", "X": "FILLED",
     "i": 1, "l": "0", "L": "1", "n": "0", "N": "ETH", "t": 5, "m": True, "T": 1},
    {"e": "executionReport", "s": "ETHUSDT", "c": "x", "S": "BUY", "q": "1", "z": "0", "x": "WHAT", "X": "NEW",
     "i": 1, "T": 1},
    {"e": "executionReport", "s": "ETHUSDT", "c": "x", "S": "BUY", "q": "1.0000001", "z": "0", "x": "NEW",
     "X": "NEW", "i": 1, "T": 1},
])
def test_execution_report_garbled_raises(bad: dict[str, Any]) -> None:
    with pytest.raises((KeyError, ValueError, TypeError)):
        parse_execution_report(bad, _inst("ETHUSDT", tick="0.01", lot="0.0001"), 1)


def test_unwrap_rejects_non_events() -> None:
    for bad in ([], "x", {"subscriptionId": 0}, {"result": None, "id": 1}):
        with pytest.raises((KeyError, TypeError)):
            unwrap_user_event(bad)


def test_new_order_responses(shared: Path) -> None:
    inst = _inst("BTCUSDT")
    res = parse_order(_load(shared, "fixtures/binance/rest_new_order_response_RESULT.json"), inst)
    assert res.status is OrderStatus.FILLED and res.filled_lots == res.lots == inst.qty_to_lots("10")
    assert res.price_ticks is None and res.side is Side.SELL and res.average_price_ticks == 1e8
    full = _load(shared, "fixtures/binance/rest_new_order_response_FULL.json")
    fills = [parse_full_fill(f, inst, res.client_order_id, Side.SELL, res.venue_order_id or "", 0, 0)  # type: ignore[arg-type]
             for f in full["fills"]]
    assert [f.trade_id for f in fills] == ["56", "57", "58", "59", "60"]
    assert sum(f.lots for f in fills) == res.lots and fills[1].fee == Decimal("19.99500000")
    assert all(f.liquidity is Liquidity.TAKER for f in fills)
    assert sum(inst.notional(f.price_ticks, f.lots) for f in fills) == Decimal("39983")
    ack = _load(shared, "fixtures/binance/rest_new_order_response_ACK.json")
    assert ack["clientOrderId"] == res.client_order_id and "status" not in ack


def test_order_open_orders_cancel_and_account(shared: Path) -> None:
    inst = _inst("LTCBTC", tick="0.1", lot="0.1")
    d = "venues/binance/spot/http_json/"
    o = parse_order(_load(shared, d + "order_response.json"), inst)
    assert (o.client_order_id, o.status, o.price_ticks, o.lots, o.filled_lots) == ("myOrder1", OrderStatus.NEW, 1,
                                                                                   10, 0)
    opens = [parse_order(x, inst) for x in _load(shared, d + "open_orders_response.json")]
    assert [x.client_order_id for x in opens] == ["myOrder1"]
    inst8 = _inst("LTCBTC")
    c = parse_order(_load(shared, d + "cancel_order_response.json"), inst8)
    assert c.client_order_id == "myOrder1" and c.status is OrderStatus.CANCELED
    bal = parse_account_balances(_load(shared, d + "account_response.json"))
    assert bal["BTC"].free == Decimal("4723846.89208129") and bal["LTC"].locked == 0


def test_account_position_bare_and_wrapped(shared: Path) -> None:
    d = "venues/binance/spot/user_data_json/"
    ts, bal = parse_account_position(_load(shared, d + "account_position.json"))
    assert ts == 1709654400000 * 1_000_000
    assert bal["USDT"] == Balance("USDT", Decimal("10000"), Decimal("2500")) and bal["ETH"].free == 5
    ts, bal = parse_account_position(unwrap_user_event(_load(shared, d + "account_position_wrapped.json")))
    assert ts == 1564034571073 * 1_000_000 and list(bal) == ["ETH"] and bal["ETH"].free == 10000
    with pytest.raises(ValueError, match="not an outboundAccountPosition"):
        parse_account_position({"e": "executionReport"})
    for bad in ("-1", "NaN", "x"):
        with pytest.raises((ValueError, ArithmeticError)):
            parse_account_position({"e": "outboundAccountPosition", "u": 1, "B": [{"a": "BTC", "f": bad, "l": "0"}]})


def test_my_trades(shared: Path) -> None:
    rows = _load(shared, "venues/binance/spot/http_json/account_trades_response.json")
    inst = _inst(rows[0]["symbol"])
    f = parse_my_trade(rows[0], inst, "c1", 0)  # type: ignore[arg-type]
    assert f.trade_id == str(rows[0]["id"]) and f.fee == Decimal(rows[0]["commission"])
    assert f.liquidity is (Liquidity.MAKER if rows[0]["isMaker"] else Liquidity.TAKER)


def test_market_data_parsers(shared: Path) -> None:
    inst = _inst("BNBBTC", tick="0.0001", lot="1")
    dd = parse_depth_diff(_load(shared, "fixtures/binance/ws_diff_depth_event.json"), inst, 5)
    assert dd.bids == [(24, 10)] and dd.asks == [(26, 100)] and (dd.first_update_id, dd.last_update_id) == (157, 160)
    tr = parse_trade(_load(shared, "fixtures/binance/ws_trade_event.json"), _inst("BNBBTC", "0.001", "1"), 5)
    assert (tr.price_ticks, tr.lots, tr.aggressor, tr.trade_id) == (1, 100, Side.SELL, "12345")
    bt = parse_book_ticker(_load(shared, "fixtures/binance/ws_bookTicker_event.json"), _inst("BNBUSDT"), 5)
    assert bt.bid_ticks == 2535190000 and bt.ask_lots == 4066000000 and bt.ts_event == 5
    snap = parse_depth_snapshot(_load(shared, "fixtures/binance/rest_depth_snapshot_GET_api_v3_depth.json"),
                                _inst("BNBBTC"), 1, 1)
    assert snap.is_snapshot and snap.last_update_id > 0 and snap.bids
