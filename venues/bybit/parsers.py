"""Bybit v5 spot trading messages -> sorex types (REST answers and private-stream pushes).

Numbers are parsed from their strings (ticks/lots through :class:`~marketdata.model.Instrument`,
money through ``Decimal``), never through float. Every parser raises
``ValueError``/``KeyError``/``TypeError`` on a malformed message; the callers log the raw text and
carry on. Public market data is in :mod:`venues.bybit.marketdata`.

Things the recorded payloads show (``/work/shared/data/venues/bybit``) and the parsers handle:

* ``orderId`` and ``execId`` are opaque strings (UUIDs on derivatives, digits on spot, and one
  recorded ``execId`` is not even valid hex): never parsed as numbers;
* ``avgPrice`` may be ``null`` or ``""`` and ``orderIv`` / ``blockTradeId`` ``null``;
* an order can be ``Rejected`` *after* it traded (``cumExecQty`` > 0): the report keeps its fills;
* the private stream pushes every category on ``order``/``execution`` (the fixtures are mostly
  ``linear``): :func:`category_of` lets the adapter keep only ``spot``;
* ``execution.fast`` carries no fee, and older ``execution`` pushes no ``feeCurrency``: the fee
  currency then follows Bybit spot's rule (a buy pays its fee in the base coin, a sell in the quote
  coin);
* wallet coins: ``availableToWithdraw`` is deprecated on unified accounts (``"0"`` or ``""``); the
  spot balance is ``walletBalance`` of which ``locked`` is held by open orders (the wallet push may
  omit ``locked``: then ``totalOrderIM``), a ``locked`` above ``walletBalance`` is clipped to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from marketdata.model import (
    ClientOrderId,
    Fill,
    Instrument,
    InstrumentKind,
    Liquidity,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    TradeId,
    VenueId,
    VenueOrderId,
)
from venues.base import Balance, OrderStatusReport

__all__ = [
    "BybitExecution",
    "BybitOrder",
    "category_of",
    "parse_execution",
    "parse_instruments",
    "parse_order",
    "parse_order_status",
    "parse_side",
    "parse_wallet_balance",
    "parse_wallet_coins",
    "parse_ws_wallet",
    "unwrap_push",
]

NS_PER_MS = 1_000_000

_STATUS = {
    "Created": OrderStatus.PENDING_NEW,
    "New": OrderStatus.NEW,
    "Untriggered": OrderStatus.NEW,
    "Triggered": OrderStatus.NEW,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELED,
    "PartiallyFilledCanceled": OrderStatus.CANCELED,
    "Deactivated": OrderStatus.CANCELED,
    "Rejected": OrderStatus.REJECTED,
}
_TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK, "PostOnly": TimeInForce.POST_ONLY}


def parse_order_status(text: str) -> OrderStatus:
    """Bybit ``orderStatus`` (``"New"``, ``"PartiallyFilledCanceled"``, ...) -> :class:`OrderStatus`."""
    try:
        return _STATUS[text]
    except KeyError:
        raise ValueError(f"unknown Bybit order status {text!r}") from None


def parse_side(text: str) -> Side:
    if text == "Buy":
        return Side.BUY
    if text == "Sell":
        return Side.SELL
    raise ValueError(f"unknown Bybit side {text!r}")


def _dec(text: Any, what: str) -> Decimal:
    if isinstance(text, float) or text is None:
        raise TypeError(f"{what} is {text!r}, not a decimal string")
    d = Decimal(str(text))
    if not d.is_finite():
        raise ValueError(f"{what} {text!r} is not finite")
    return d


def _ms(text: Any, what: str) -> int:
    s = str(text)
    if not s.isdigit():
        raise ValueError(f"{what} {text!r} is not epoch milliseconds")
    return int(s) * NS_PER_MS


def category_of(item: Mapping[str, Any]) -> str:
    """The ``category`` of one pushed order/execution (``"spot"`` when absent: the spot-only
    topics ``order.spot``/``execution.spot`` leave it out)."""
    return str(item.get("category") or "spot")


def unwrap_push(msg: Any) -> tuple[str, list[Mapping[str, Any]], int]:
    """A private-stream push -> (topic, data items, ``creationTime`` ns). Sample::

        {"id": "5923240c6880ab-c59f-420b-9adb-3639adc9dd90", "topic": "order",
         "creationTime": 1672364262474, "data": [{...}]}
    """
    if not isinstance(msg, Mapping):
        raise TypeError(f"push is a {type(msg).__name__}, not an object")
    topic = msg["topic"]
    data = msg["data"]
    if not isinstance(topic, str) or not isinstance(data, list):
        raise TypeError("push without a string topic and a data list")
    for item in data:
        if not isinstance(item, Mapping):
            raise TypeError(f"{topic} item is a {type(item).__name__}, not an object")
    created = msg.get("creationTime")
    return topic, data, (int(created) * NS_PER_MS if isinstance(created, int) else 0)


def parse_instruments(result: Mapping[str, Any], *, venue: VenueId,
                      symbols: Mapping[str, str] | None = None) -> list[Instrument]:
    """GET /v5/market/instruments-info?category=spot ``result`` (or the whole answer) -> instruments.

    Tick ``priceFilter.tickSize``, lot ``lotSizeFilter.basePrecision``, minimum quantity
    ``minOrderQty``, minimum notional ``minOrderAmt`` (quote). ``symbols`` maps venue symbols to
    sorex symbols (default ``BASE-QUOTE``); with it, only those symbols are returned. Symbols whose
    ``status`` is not ``Trading`` are left out. Sample (one entry of ``list``)::

        {"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "innovation": "0", "status": "Trading",
         "marginTrading": "utaOnly",
         "lotSizeFilter": {"basePrecision": "0.0001", "quotePrecision": "0.01", "minOrderQty": "0.001",
                           "maxOrderQty": "100.0", "minOrderAmt": "10", "maxOrderAmt": "1000000"},
         "priceFilter": {"tickSize": "0.1"}}
    """
    res = result.get("result", result)
    out: list[Instrument] = []
    for row in res["list"]:
        vsym = str(row["symbol"])
        if symbols is not None and vsym not in symbols:
            continue
        if row.get("status", "Trading") != "Trading":
            continue
        lot, price = row["lotSizeFilter"], row["priceFilter"]
        sym = symbols[vsym] if symbols is not None else f"{row['baseCoin']}-{row['quoteCoin']}"
        out.append(Instrument(
            venue=venue, symbol=Symbol(sym), venue_symbol=vsym, base=str(row["baseCoin"]),
            quote=str(row["quoteCoin"]), tick_size=_dec(price["tickSize"], "tickSize"),
            lot_size=_dec(lot["basePrecision"], "basePrecision"),
            min_quantity=_dec(lot.get("minOrderQty") or "0", "minOrderQty"),
            min_notional=_dec(lot.get("minOrderAmt") or "0", "minOrderAmt"), kind=InstrumentKind.SPOT))
    return out


def parse_wallet_coins(coins: list[Mapping[str, Any]]) -> dict[str, Balance]:
    """The ``coin`` list of a unified account -> balances: total ``walletBalance``, of which
    ``locked`` (spot open orders; the push may omit it, then ``totalOrderIM``) is held."""
    out: dict[str, Balance] = {}
    for c in coins:
        asset = str(c["coin"])
        total = _dec(c["walletBalance"], f"walletBalance of {asset}")
        raw_locked = c.get("locked")
        if raw_locked in (None, ""):
            raw_locked = c.get("totalOrderIM") or "0"
        locked = _dec(raw_locked, f"locked of {asset}")
        if total < 0 or locked < 0:
            raise ValueError(f"balance of {asset!r} is negative: walletBalance={c['walletBalance']!r} "
                             f"locked={raw_locked!r}")
        locked = min(locked, total)
        out[asset] = Balance(asset, total - locked, locked)
    return out


def parse_wallet_balance(result: Mapping[str, Any]) -> dict[str, Balance]:
    """GET /v5/account/wallet-balance?accountType=UNIFIED ``result`` -> balances by coin. Sample
    (one ``coin`` entry, trimmed)::

        {"list": [{"accountType": "UNIFIED", "totalEquity": "3.31216591",
                   "coin": [{"coin": "USDT", "equity": "1000.50", "walletBalance": "1000.50",
                             "locked": "0", "availableToWithdraw": "1000.50", "spotBorrow": "0"}]}]}
    """
    res = result.get("result", result)
    out: dict[str, Balance] = {}
    for acct in res["list"]:
        out.update(parse_wallet_coins(acct["coin"]))
    return out


def parse_ws_wallet(msg: Mapping[str, Any]) -> tuple[int, dict[str, Balance]]:
    """A ``wallet`` push -> (``creationTime`` ns, balances of the coins it carries). Sample::

        {"id": "592324d2bce751-ad38-48eb-8f42-4671d1fb4d4e", "topic": "wallet", "creationTime": 1700034722104,
         "data": [{"accountType": "UNIFIED", "coin": [{"coin": "BTC", "walletBalance": "0.00102964",
                   "locked": "0.0001", "availableToWithdraw": "0.00092964", ...}]}]}
    """
    topic, data, ts = unwrap_push(msg)
    if topic != "wallet":
        raise ValueError(f"not a wallet push: topic={topic!r}")
    out: dict[str, Balance] = {}
    for acct in data:
        if acct.get("accountType", "UNIFIED") != "UNIFIED":
            continue
        out.update(parse_wallet_coins(acct["coin"]))
    return ts, out


@dataclass(frozen=True, slots=True)
class BybitOrder:
    """One parsed Bybit order object: the status report plus what the adapter needs besides."""

    report: OrderStatusReport
    order_type: OrderType
    time_in_force: TimeInForce
    venue_status: str
    cancel_type: str
    reject_reason: str
    cum_fee: Decimal


def parse_order(o: Mapping[str, Any], inst: Instrument, *, venue: VenueId | None = None) -> BybitOrder:
    """An order object (GET /v5/order/realtime and /v5/order/history ``list`` entries, ``order``
    pushes) -> :class:`BybitOrder`. Sample (an ``order`` push item, trimmed)::

        {"category": "spot", "symbol": "BTCUSDT", "orderId": "1829301", "orderLinkId": "sx-1",
         "side": "Buy", "orderType": "Limit", "price": "30000", "qty": "0.010", "timeInForce": "GTC",
         "orderStatus": "PartiallyFilled", "cancelType": "UNKNOWN", "rejectReason": "EC_NoError",
         "leavesQty": "0.005", "cumExecQty": "0.005", "cumExecValue": "150", "cumExecFee": "0.000005",
         "avgPrice": "30000", "createdTime": "1672364262444", "updatedTime": "1672364262457"}
    """
    cid = ClientOrderId(str(o["orderLinkId"]))
    if not cid:
        raise ValueError("order without an orderLinkId")
    if str(o["symbol"]) != inst.venue_symbol:
        raise ValueError(f"order of {o['symbol']!r} parsed as {inst.venue_symbol}")
    status_text = str(o["orderStatus"])
    status = parse_order_status(status_text)
    lots = inst.parse_qty_lots(str(o["qty"]))
    filled = inst.parse_qty_lots(str(o["cumExecQty"]))
    if filled > lots and o.get("orderType") != "Market":
        raise ValueError(f"cumExecQty {o['cumExecQty']!r} above qty {o['qty']!r}")
    otype = OrderType.MARKET if o.get("orderType") == "Market" else OrderType.LIMIT
    price = o.get("price")
    price_ticks = (inst.parse_price_ticks(str(price)) if otype is OrderType.LIMIT and price not in (None, "")
                   and Decimal(str(price)) > 0 else None)
    avg: float | None = None
    value = o.get("cumExecValue")
    if filled > 0 and value not in (None, ""):
        # the report's field is a float of ticks by contract (an average is not on the grid)
        avg = float(_dec(value, "cumExecValue") / inst.lots_to_qty(filled) / inst.tick_size)
    ts = o.get("updatedTime") or o.get("createdTime") or "0"
    fee = o.get("cumExecFee")
    rep = OrderStatusReport(
        client_order_id=cid, venue=venue or inst.venue, symbol=inst.symbol, side=parse_side(str(o["side"])),
        status=status, lots=max(lots, filled), filled_lots=filled, price_ticks=price_ticks,
        venue_order_id=VenueOrderId(str(o["orderId"])), average_price_ticks=avg, ts_event=_ms(ts, "updatedTime"))
    return BybitOrder(rep, otype, _TIF.get(str(o.get("timeInForce")), TimeInForce.GTC), status_text,
                      str(o.get("cancelType") or ""), str(o.get("rejectReason") or ""),
                      _dec(fee, "cumExecFee") if fee not in (None, "") else Decimal(0))


@dataclass(frozen=True, slots=True)
class BybitExecution:
    """One parsed execution: the fill (``None`` for an ``execType`` that is not a trade) and ids."""

    client_order_id: ClientOrderId
    exec_id: str
    exec_type: str
    venue_order_id: VenueOrderId
    fill: Fill | None


def parse_execution(e: Mapping[str, Any], inst: Instrument, ts_init: int) -> BybitExecution:
    """One ``execution`` push item or GET /v5/execution/list entry -> :class:`BybitExecution`.
    ``execId`` is the fill's trade id (it is what Bybit repeats when it re-sends an execution);
    ``isMaker`` the liquidity; ``execFee`` in ``feeCurrency`` (when absent: the base coin for a buy,
    the quote coin for a sell, Bybit spot's rule). Only ``execType`` ``Trade`` is a fill. Sample::

        {"category": "spot", "symbol": "BTCUSDT", "execFee": "0.00001", "execId": "2100000000007764263",
         "execPrice": "30000", "execQty": "0.01", "execType": "Trade", "execValue": "300",
         "feeRate": "0.001", "feeCurrency": "BTC", "leavesQty": "0", "orderId": "1829301",
         "orderLinkId": "sx-1", "orderPrice": "30000", "orderQty": "0.01", "orderType": "Limit",
         "side": "Buy", "execTime": "1672364262457", "isMaker": true, "seq": 4688002127}
    """
    cid = ClientOrderId(str(e["orderLinkId"]))
    if not cid:
        raise ValueError("execution without an orderLinkId")
    if str(e["symbol"]) != inst.venue_symbol:
        raise ValueError(f"execution of {e['symbol']!r} parsed as {inst.venue_symbol}")
    exec_id = str(e["execId"])
    if not exec_id:
        raise ValueError("execution without an execId")
    exec_type = str(e.get("execType") or "Trade")
    voi = VenueOrderId(str(e["orderId"]))
    if exec_type != "Trade":
        return BybitExecution(cid, exec_id, exec_type, voi, None)
    side = parse_side(str(e["side"]))
    lots = inst.parse_qty_lots(str(e["execQty"]))
    if lots <= 0:
        raise ValueError(f"execution {exec_id} with quantity {e['execQty']!r}")
    is_maker = e["isMaker"]
    if not isinstance(is_maker, bool):
        raise TypeError(f"isMaker {is_maker!r} is not a boolean")
    fee_ccy = str(e.get("feeCurrency") or (inst.base if side is Side.BUY else inst.quote))
    fee_raw = e.get("execFee")
    fill = Fill(client_order_id=cid, venue=inst.venue, symbol=inst.symbol, side=side, trade_id=TradeId(exec_id),
                price_ticks=inst.parse_price_ticks(str(e["execPrice"])), lots=lots,
                fee=_dec(fee_raw, "execFee") if fee_raw not in (None, "") else Decimal(0), fee_currency=fee_ccy,
                liquidity=Liquidity.MAKER if is_maker else Liquidity.TAKER,
                ts_event=_ms(e["execTime"], "execTime"), ts_init=ts_init, venue_order_id=voi)
    return BybitExecution(cid, exec_id, exec_type, voi, fill)
