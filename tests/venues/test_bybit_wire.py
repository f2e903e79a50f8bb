"""Bybit v5 signing against the published vectors, the error table, the config, and the trading
parsers on the recorded payloads of /work/shared/data/venues/bybit (NautilusTrader test data,
LGPL-3.0: read in place, not copied)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketdata.errors import ConfigError, InsufficientFunds, OrderRejected, RateLimited, VenueTimeout
from marketdata.model import Instrument, InstrumentKind, Liquidity, OrderStatus, Side, Symbol, VenueId
from venues.bybit.config import BybitCredentials, BybitSpotConfig
from venues.bybit.errors import (
    AuthenticationError,
    CancelRejected,
    DuplicateOrder,
    OrderNotFound,
    TimestampRejected,
    map_error,
)
from venues.bybit.http import sign_rest, sign_ws_auth
from venues.bybit.parsers import (
    category_of,
    parse_execution,
    parse_instruments,
    parse_order,
    parse_wallet_balance,
    parse_ws_wallet,
    unwrap_push,
)

DATA = Path("/work/shared/data")
BYBIT = DATA / "venues" / "bybit"
V = VenueId("bybit-spot")


def _load(name: str) -> Any:
    return json.loads((BYBIT / name).read_text())


def _inst(symbol: str = "BTCUSDT", tick: str = "0.1", lot: str = "0.001") -> Instrument:
    return Instrument(venue=V, symbol=Symbol(f"{symbol[:-4]}-USDT"), venue_symbol=symbol, base=symbol[:-4],
                      quote="USDT", tick_size=Decimal(tick), lot_size=Decimal(lot), kind=InstrumentKind.SPOT)


# ---------------------------------------------------------------------------------------------- signing
def test_rest_signature_matches_the_published_vectors() -> None:
    vectors = json.loads((DATA / "fixtures" / "signing_and_checksum_vectors.json").read_text())["bybit_v5_rest_sign"]
    assert len(vectors) == 2   # a GET query string and a POST JSON body
    for v in vectors:
        got = sign_rest(v["api_key"], v["secret"], v["timestamp"], v["recv_window"], v["payload"])
        assert got == v["expected"], v["payload"]


def test_ws_auth_signature_matches_the_published_vector() -> None:
    v = json.loads((DATA / "fixtures" / "signing_and_checksum_vectors.json").read_text())["bybit_v5_ws_auth"]
    assert f"GET/realtime{v['expires']}" == v["message"]
    assert sign_ws_auth(v["secret"], v["expires"]) == v["expected"]


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("status", "code", "cls"), [
    (200, 10006, RateLimited), (403, None, RateLimited), (429, None, RateLimited), (200, 10018, RateLimited),
    (200, 10002, TimestampRejected), (200, 10003, AuthenticationError), (200, 10004, AuthenticationError),
    (401, None, AuthenticationError), (200, 170131, InsufficientFunds), (200, 170213, OrderNotFound),
    (200, 110001, OrderNotFound), (200, 170142, CancelRejected), (200, 170141, DuplicateOrder),
    (200, 10001, OrderRejected), (200, 170136, OrderRejected), (502, None, VenueTimeout),
    (200, 10016, VenueTimeout), (200, 170146, VenueTimeout)])
def test_error_table(status: int, code: int | None, cls: type[Exception]) -> None:
    err = map_error(status, code, "text", venue="bybit-spot", client_order_id="c1")
    assert type(err) is cls
    assert err.code == (code if code is not None else status) and err.venue_text == "text"
    assert "client_order_id=c1" in str(err)


def test_order_check_codes_name_the_rule() -> None:
    assert "LOT_SIZE" in str(map_error(200, 170136, "Order quantity lower than the minimum.", venue="b"))
    assert "PRICE" in str(map_error(200, 170134, "Order price decimal too long.", venue="b"))
    assert "NOTIONAL" in str(map_error(200, 170140, "Order value exceeded lower limit.", venue="b"))


# ---------------------------------------------------------------------------------------------- config
def test_config_names_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown keys") as e:
        BybitSpotConfig.from_mapping({"instruments": [], "api_secret": "x"})
    assert e.value.key == "api_secret"
    raw = {"instruments": [{"symbol": "BTC-USDT", "venue_symbol": "BTCUSDT", "base": "BTC", "quote": "USDT",
                            "tick_size": "0.1", "lot_size": "0.001", "min_notional": "5"}]}
    cfg = BybitSpotConfig.from_mapping(raw)
    assert cfg.instruments[0].min_notional == Decimal(5) and cfg.api_key_env == "BYBIT_API_KEY"
    with pytest.raises(ConfigError) as e:
        BybitSpotConfig.from_mapping({**raw, "recv_window_ms": 90_000})
    assert e.value.key == "recv_window_ms"
    with pytest.raises(ConfigError) as e:
        BybitSpotConfig.from_mapping({**raw, "check_filters": "yes"})
    assert e.value.key == "check_filters"


def test_credentials_from_env_name_the_missing_variable_never_a_value() -> None:
    cfg = BybitSpotConfig(instruments=(_inst(),))
    with pytest.raises(ConfigError, match="BYBIT_API_SECRET"):
        BybitCredentials.from_env(cfg, {"BYBIT_API_KEY": "k-visible"})
    creds = BybitCredentials.from_env(cfg, {"BYBIT_API_KEY": "k-visible", "BYBIT_API_SECRET": "s-hidden"})
    assert "k-visible" not in repr(creds) and "s-hidden" not in repr(creds)


# ---------------------------------------------------------------------------------------------- parsers
def test_instruments_info_spot() -> None:
    insts = parse_instruments(_load("http_get_instruments_spot.json"), venue=V)
    btc = next(i for i in insts if i.venue_symbol == "BTCUSDT")
    assert (btc.symbol, btc.base, btc.quote) == ("BTC-USDT", "BTC", "USDT")
    assert btc.tick_size == Decimal("0.1") and btc.lot_size == Decimal("0.0001")   # basePrecision
    assert btc.min_quantity == Decimal("0.001") and btc.min_notional == Decimal(10)
    only = parse_instruments(_load("http_get_instruments_spot.json"), venue=V, symbols={"ETHUSDT": "ETH/USDT"})
    assert [(i.symbol, i.tick_size) for i in only] == [("ETH/USDT", Decimal("0.01"))]


def test_wallet_balance_rest() -> None:
    bal = parse_wallet_balance(_load("http_get_wallet_balance.json"))
    assert bal["USDT"].free == Decimal("1000.50") and bal["USDT"].locked == 0
    assert bal["ETH"].total == 0   # borrowed, nothing held


def test_wallet_push_locked_above_total_is_clipped() -> None:
    ts, bal = parse_ws_wallet(_load("ws_account_wallet_locked_exceeds_total.json"))
    assert ts == 1762960669000 * 1_000_000
    # no "locked" in the push: totalOrderIM (80) is what open orders hold, of walletBalance 100
    assert bal["USDT"].total == Decimal(100) and bal["USDT"].locked == Decimal(80)
    _ts, bal = parse_ws_wallet(_load("ws_account_wallet.json"))
    assert bal["BTC"].total == Decimal("0.00102964") and bal["BTC"].locked == Decimal("0.0001")


def test_wallet_coin_with_negative_balance_is_refused() -> None:
    msg = _load("ws_account_wallet.json")
    msg["data"][0]["coin"][0]["walletBalance"] = "-1"
    with pytest.raises(ValueError, match="negative"):
        parse_ws_wallet(msg)


def test_realtime_orders_with_null_fields() -> None:
    eth = _inst("ETHUSDT", "0.01", "0.001")
    rows = _load("http_get_orders_realtime.json")["result"]["list"]
    bos = [parse_order(r, eth) for r in rows]
    assert [b.report.client_order_id for b in bos] == ["client-open-1", "client-open-2"]
    r = bos[0].report
    assert r.status is OrderStatus.NEW and r.side is Side.BUY and r.lots == 10 and r.filled_lots == 0
    assert r.price_ticks == 393041 and r.venue_order_id == "open-order-1" and r.average_price_ticks is None
    assert bos[1].report.side is Side.SELL


def test_order_rejected_after_it_traded_keeps_its_fills() -> None:
    bo = parse_order(_load("http_get_order_partially_filled_rejected.json")["result"]["list"][0], _inst())
    assert bo.report.status is OrderStatus.REJECTED and bo.report.filled_lots == 5 and bo.report.lots == 10
    assert bo.reject_reason == "INSUFFICIENT_MARGIN" and bo.cum_fee == Decimal("0.0825")
    assert bo.report.average_price_ticks == pytest.approx(300000.0)


def test_order_push_fields() -> None:
    _topic, items, _ts = unwrap_push(_load("ws_account_order.json"))
    assert category_of(items[0]) == "linear"
    bo = parse_order(items[0], _inst())
    assert bo.report.status is OrderStatus.CANCELED and bo.cancel_type == "CancelByUser"
    assert bo.report.ts_event == 1700000005000 * 1_000_000
    _topic, items, _ts = unwrap_push(_load("ws_account_order_partially_filled_rejected.json"))
    assert category_of(items[0]) == "spot"
    apex = Instrument(venue=V, symbol=Symbol("APEX-USDT"), venue_symbol="APEXUSDT", base="APEX", quote="USDT",
                      tick_size=Decimal("0.001"), lot_size=Decimal("0.1"))
    bo = parse_order(items[0], apex)
    assert bo.report.status is OrderStatus.REJECTED and bo.report.filled_lots == 500


def test_order_of_another_symbol_or_over_filled_is_refused() -> None:
    row = _load("http_get_orders_realtime.json")["result"]["list"][0]
    with pytest.raises(ValueError, match="ETHUSDT"):
        parse_order(row, _inst())
    eth = _inst("ETHUSDT", "0.01", "0.001")
    with pytest.raises(ValueError, match="above qty"):
        parse_order({**row, "cumExecQty": "0.020"}, eth)
    with pytest.raises(ValueError, match="status"):
        parse_order({**row, "orderStatus": "Open"}, eth)


def test_execution_list_entries_with_opaque_exec_ids() -> None:
    rows = _load("http_get_executions.json")["result"]["list"]
    eth = _inst("ETHUSDT", "0.01", "0.001")
    ex = parse_execution(rows[1], eth, ts_init=7)
    assert ex.exec_id == "f1dce92e-1g29-6977-a526-dg420c6ecb4c"   # not hex: an opaque string
    f = ex.fill
    assert f is not None and f.trade_id == ex.exec_id and f.side is Side.SELL and f.lots == 500
    assert f.price_ticks == 300000 and f.fee == Decimal("0.9000") and f.fee_currency == "USDT"
    assert f.liquidity is Liquidity.TAKER and f.ts_event == 1672282822529 * 1_000_000 and f.ts_init == 7
    assert parse_execution(rows[0], _inst("BTCUSDT", "0.01"), 0).fill.liquidity is Liquidity.MAKER  # type: ignore[union-attr]


def test_execution_push_without_fee_currency_follows_the_spot_rule() -> None:
    _topic, items, _ts = unwrap_push(_load("ws_account_execution.json"))
    assert "feeCurrency" not in items[0]
    f = parse_execution(items[0], _inst(), 0).fill
    assert f is not None and f.side is Side.SELL and f.fee_currency == "USDT" and f.fee == Decimal("26.3725275")
    buy = parse_execution({**items[0], "side": "Buy"}, _inst(), 0).fill
    assert buy is not None and buy.fee_currency == "BTC"
    _topic, items, _ts = unwrap_push(_load("ws_account_execution_fast.json"))
    icp = _inst("ICPUSDT", "0.001", "1")
    fast = parse_execution(items[0], icp, 0).fill   # execution.fast: no execType, no fee
    assert fast is not None and fast.fee == 0 and fast.lots == 3000


def test_non_trade_executions_are_not_fills_and_bad_ones_raise() -> None:
    _topic, items, _ts = unwrap_push(_load("ws_account_execution.json"))
    assert parse_execution({**items[0], "execType": "Funding"}, _inst(), 0).fill is None
    with pytest.raises(ValueError):
        parse_execution({**items[0], "execQty": "0.0005"}, _inst(), 0)   # off the lot grid
    with pytest.raises(TypeError):
        parse_execution({**items[0], "isMaker": "false"}, _inst(), 0)
    with pytest.raises(ValueError, match="execId"):
        parse_execution({**items[0], "execId": ""}, _inst(), 0)


def test_push_envelope_checks() -> None:
    topic, items, ts = unwrap_push(_load("ws_account_execution_fast_envelope_id.json"))
    assert (topic, items, ts) == ("execution.fast", [], 1716800399338 * 1_000_000)
    with pytest.raises(TypeError):
        unwrap_push({"topic": "order", "data": "x"})
    with pytest.raises(KeyError):
        unwrap_push({"op": "pong"})

