"""Binance spot wire messages -> sorex types. Numbers are parsed from their strings (ticks/lots
through :class:`~marketdata.model.Instrument`, money through ``Decimal``), never through float.

Every parser raises ``ValueError``/``KeyError``/``TypeError`` on a malformed message; the callers
log the raw text and carry on."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    Fill,
    Instrument,
    Liquidity,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    QuoteTick,
    Side,
    TimeInForce,
    TradeId,
    TradeTick,
    VenueId,
    VenueOrderId,
)
from venues.base import Balance, OrderStatusReport

__all__ = [
    "ExecutionReport",
    "parse_account_balances",
    "parse_account_position",
    "parse_book_ticker",
    "parse_depth_diff",
    "parse_execution_report",
    "parse_iceberg_parts",
    "parse_iceberg_qty",
    "parse_my_trade",
    "parse_order",
    "parse_order_status",
    "parse_trade",
    "unwrap_user_event",
]

NS_PER_MS = 1_000_000

_STATUS = {
    "NEW": OrderStatus.NEW,
    "PENDING_NEW": OrderStatus.PENDING_NEW,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.PENDING_CANCEL,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}

_TIF = {"GTC": TimeInForce.GTC, "IOC": TimeInForce.IOC, "FOK": TimeInForce.FOK}

_EXEC_KIND = {
    "NEW": OrderEventKind.ACCEPTED,
    "CANCELED": OrderEventKind.CANCELED,
    "REJECTED": OrderEventKind.REJECTED,
    "EXPIRED": OrderEventKind.EXPIRED,
    "TRADE_PREVENTION": OrderEventKind.EXPIRED,
    "REPLACED": OrderEventKind.REPLACED,
    "AMENDMENT": OrderEventKind.REPLACED,
}
_LIVE = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_NEW})
"""Order statuses of an order still working (``TRADE_PREVENTION`` then only decremented it)."""


def parse_order_status(text: str) -> OrderStatus:
    """Binance order status (``"NEW"``, ``"EXPIRED_IN_MATCH"``, ...) -> :class:`OrderStatus`."""
    try:
        return _STATUS[text]
    except KeyError:
        raise ValueError(f"unknown Binance order status {text!r}") from None


def parse_side(text: str) -> Side:
    if text == "BUY":
        return Side.BUY
    if text == "SELL":
        return Side.SELL
    raise ValueError(f"unknown Binance side {text!r}")


def unwrap_user_event(msg: Any) -> Mapping[str, Any]:
    """The user-data event inside ``msg``: accepts the bare event and the WebSocket-API wrapper.

    Sample (wrapped; the bare form is the inner ``event`` object)::

        {"subscriptionId": 0, "event": {"e": "executionReport", "E": 1499405658658, "s": "ETHBTC", ...}}
    """
    if not isinstance(msg, Mapping):
        raise TypeError(f"user-data message is a {type(msg).__name__}, not an object")
    inner = msg.get("event")
    if isinstance(inner, Mapping) and "e" in inner:
        return inner
    if "e" not in msg:
        raise KeyError("user-data message has no event type 'e'")
    return msg


class ExecutionReport:
    """One parsed ``executionReport``: the event plus the cumulative figures the adapter tracks."""

    __slots__ = ("cum_lots", "event", "iceberg_lots", "order_lots", "order_type", "price_ticks", "side", "status",
                 "symbol", "time_in_force", "venue_order_id")

    def __init__(self, event: OrderEvent, status: OrderStatus, cum_lots: int, order_lots: int,
                 symbol: str, venue_order_id: VenueOrderId, side: Side = Side.BUY,
                 price_ticks: int | None = None, order_type: OrderType = OrderType.LIMIT,
                 time_in_force: TimeInForce = TimeInForce.GTC, iceberg_lots: int | None = None) -> None:
        self.event = event
        self.status = status
        self.cum_lots = cum_lots
        self.order_lots = order_lots
        self.symbol = symbol
        self.venue_order_id = venue_order_id
        # the order itself (``S``, ``p``, ``o``, ``f``): to track an order this session did not send
        self.side = side
        self.price_ticks = price_ticks
        self.order_type = order_type
        self.time_in_force = time_in_force
        # ``F``, the iceberg quantity: the display of an iceberg (``None``: not an iceberg)
        self.iceberg_lots = iceberg_lots


def parse_iceberg_qty(text: Any, inst: Instrument) -> int | None:
    """An iceberg quantity (``icebergQty`` of an order object, ``F`` of an ``executionReport``)
    -> display lots; ``None`` when absent, null or zero (not an iceberg). Off the lot grid or
    negative raises ``ValueError`` like any other malformed quantity."""
    if text is None:
        return None
    lots = inst.parse_qty_lots(str(text))
    if lots < 0:
        raise ValueError(f"negative iceberg quantity {text!r}")
    return lots or None


def parse_iceberg_parts(exchange_info: Mapping[str, Any]) -> dict[str, int]:
    """GET /api/v3/exchangeInfo -> the ``ICEBERG_PARTS`` ``limit`` of each symbol that has the
    filter (``ceil(quantity / icebergQty)`` may not exceed it), by venue symbol; feeds the config's
    ``iceberg_parts``. A symbol with ``icebergAllowed`` false gets no entry. Filter sample::

        {"filterType": "ICEBERG_PARTS", "limit": 10}
    """
    out: dict[str, int] = {}
    for sym in exchange_info["symbols"]:
        if sym.get("icebergAllowed") is False:
            continue
        for f in sym.get("filters") or []:
            if f.get("filterType") == "ICEBERG_PARTS":
                limit = int(f["limit"])
                if limit < 1:
                    raise ValueError(f"ICEBERG_PARTS limit {f['limit']!r} of {sym['symbol']} is below 1")
                out[str(sym["symbol"])] = limit
    return out


def parse_execution_report(ev: Mapping[str, Any], inst: Instrument, ts_init: int) -> ExecutionReport:
    """An ``executionReport`` user-data event -> :class:`ExecutionReport`.

    For a cancel Binance puts the *cancel request's* id in ``c`` and the order's own id in ``C``;
    the order's id is used. ``F`` is the iceberg quantity (``"0.00000000"``: not an iceberg); an
    iceberg's fills are ordinary TRADE events. ``TRADE_PREVENTION`` (self-trade prevention) is an
    EXPIRED event when the order is gone (``X`` ``EXPIRED_IN_MATCH``), and a REPLACED to ``q - A``
    when it is still working (DECREMENT: ``A`` is the cumulative prevented quantity).
    Sample (a fill; ``m`` true = we were the maker)::

        {"e": "executionReport", "E": 1709654401000, "s": "ETHUSDT", "c": "x-TD67BGP9-T0000000000000",
         "S": "BUY", "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "2500.00000000", "P": "0.00000000",
         "x": "TRADE", "X": "FILLED", "r": "NONE", "i": 12345678, "l": "1.00000000", "z": "1.00000000",
         "L": "2500.00000000", "n": "0.00100000", "N": "ETH", "T": 1709654401000, "t": 98765432,
         "w": false, "m": true, "O": 1709654400000, "Z": "2500.00000000", "C": ""}
    """
    if ev.get("e") != "executionReport":
        raise ValueError(f"not an executionReport: e={ev.get('e')!r}")
    exec_type = ev["x"]
    status = parse_order_status(ev["X"])
    orig = ev.get("C") or ""
    cid = ClientOrderId(orig if exec_type == "CANCELED" and orig else ev["c"])
    voi = VenueOrderId(str(int(ev["i"])))
    ts_event = int(ev.get("T") or ev["E"]) * NS_PER_MS
    order_lots = inst.parse_qty_lots(ev["q"])
    cum_lots = inst.parse_qty_lots(ev["z"])
    side = parse_side(ev["S"])
    price = ev.get("p")
    price_ticks = inst.parse_price_ticks(price) if price and Decimal(price) > 0 else None
    otype = OrderType.MARKET if ev.get("o") == "MARKET" else OrderType.LIMIT
    tif = TimeInForce.POST_ONLY if ev.get("o") == "LIMIT_MAKER" else _TIF.get(str(ev.get("f")), TimeInForce.GTC)
    venue = inst.venue
    if exec_type == "TRADE":
        lots = inst.parse_qty_lots(ev["l"])
        if lots <= 0:
            raise ValueError(f"TRADE with last quantity {ev['l']!r}")
        trade_id = int(ev["t"])
        if trade_id < 0:
            raise ValueError(f"TRADE without a trade id (t={trade_id})")
        fill = Fill(client_order_id=cid, venue=venue, symbol=inst.symbol, side=side,
                    trade_id=TradeId(str(trade_id)), price_ticks=inst.parse_price_ticks(ev["L"]), lots=lots,
                    fee=Decimal(ev["n"]), fee_currency=str(ev.get("N") or ""),
                    liquidity=Liquidity.MAKER if ev["m"] else Liquidity.TAKER,
                    ts_event=ts_event, ts_init=ts_init, venue_order_id=voi)
        kind = OrderEventKind.FILLED if status is OrderStatus.FILLED else OrderEventKind.PARTIALLY_FILLED
        event = OrderEvent(kind=kind, client_order_id=cid, venue=venue, ts_event=ts_event, ts_init=ts_init,
                           venue_order_id=voi, fill=fill)
    else:
        try:
            kind = _EXEC_KIND[exec_type]
        except KeyError:
            raise ValueError(f"unknown execution type {exec_type!r}") from None
        reason = ev.get("r")
        new_lots = order_lots
        if exec_type == "TRADE_PREVENTION" and status in _LIVE:
            # STP DECREMENT: the prevented quantity ``A`` (cumulative) is taken off an order that stays
            # on the book; it trades on up to ``q - A`` (Binance's STP FAQ). Not an expiry.
            prevented = inst.parse_qty_lots(ev["A"])
            new_lots = order_lots - prevented
            if not cum_lots < new_lots <= order_lots:
                raise ValueError(f"TRADE_PREVENTION of a live order with prevented quantity A={ev['A']!r}")
            kind = OrderEventKind.REPLACED
        event = OrderEvent(kind=kind, client_order_id=cid, venue=venue, ts_event=ts_event, ts_init=ts_init,
                           venue_order_id=voi,
                           reason=None if reason in (None, "NONE") else str(reason),
                           new_lots=new_lots if kind is OrderEventKind.REPLACED else None)
    return ExecutionReport(event, status, cum_lots, order_lots, str(ev["s"]), voi, side=side,
                           price_ticks=price_ticks, order_type=otype, time_in_force=tif,
                           iceberg_lots=parse_iceberg_qty(ev.get("F"), inst))


def parse_order(o: Mapping[str, Any], inst: Instrument, *, venue: VenueId | None = None) -> OrderStatusReport:
    """An order object (GET /api/v3/order, openOrders, cancel and new-order RESULT/FULL
    responses) -> :class:`OrderStatusReport`. A cancel response's order id is
    ``origClientOrderId``. ``icebergQty`` (present when the order was sent with one; GET order
    shows ``"0.0"`` for a plain order) is checked like a quantity; the report has no field for it
    (:func:`parse_iceberg_qty` reads it). Sample (GET /api/v3/order)::

        {"symbol": "LTCBTC", "orderId": 1, "orderListId": -1, "clientOrderId": "myOrder1", "price": "0.1",
         "origQty": "1.0", "executedQty": "0.0", "cummulativeQuoteQty": "0.0", "status": "NEW",
         "timeInForce": "GTC", "type": "LIMIT", "side": "BUY", "stopPrice": "0.0", "icebergQty": "0.0",
         "time": 1499827319559, "updateTime": 1499827319559, "isWorking": true,
         "workingTime": 1499827319559, "origQuoteOrderQty": "0.000000", "selfTradePreventionMode": "NONE"}
    """
    cid = ClientOrderId(o.get("origClientOrderId") or o["clientOrderId"])
    filled = inst.parse_qty_lots(o["executedQty"])
    parse_iceberg_qty(o.get("icebergQty"), inst)   # a garbled one makes the message garbled
    price = o.get("price")
    price_ticks = inst.parse_price_ticks(price) if price and Decimal(price) > 0 else None
    avg: float | None = None
    quote = Decimal(o["cummulativeQuoteQty"]) if o.get("cummulativeQuoteQty") is not None else None
    if filled > 0 and quote is not None and quote >= 0:
        # the report's field is a float of ticks by contract (an average is not on the grid); Binance:
        # "For some historical orders cummulativeQuoteQty will be < 0" (not available): no average
        avg = float(quote / inst.lots_to_qty(filled) / inst.tick_size)
    ts_ms = o.get("updateTime") or o.get("transactTime") or o.get("time") or 0
    return OrderStatusReport(
        client_order_id=cid, venue=venue or inst.venue, symbol=inst.symbol, side=parse_side(o["side"]),
        status=parse_order_status(o["status"]), lots=inst.parse_qty_lots(o["origQty"]), filled_lots=filled,
        price_ticks=price_ticks, venue_order_id=VenueOrderId(str(int(o["orderId"]))),
        average_price_ticks=avg, ts_event=int(ts_ms) * NS_PER_MS)


def parse_full_fill(f: Mapping[str, Any], inst: Instrument, cid: ClientOrderId, side: Side,
                    voi: VenueOrderId, ts_event: int, ts_init: int) -> Fill:
    """One entry of a FULL new-order response's ``fills`` (always taker: it traded on arrival).
    Sample::

        {"price": "4000.00000000", "qty": "1.00000000", "commission": "4.00000000",
         "commissionAsset": "USDT", "tradeId": 56}
    """
    return Fill(client_order_id=cid, venue=inst.venue, symbol=inst.symbol, side=side,
                trade_id=TradeId(str(int(f["tradeId"]))), price_ticks=inst.parse_price_ticks(f["price"]),
                lots=inst.parse_qty_lots(f["qty"]), fee=Decimal(f["commission"]),
                fee_currency=str(f["commissionAsset"]), liquidity=Liquidity.TAKER, ts_event=ts_event,
                ts_init=ts_init, venue_order_id=voi)


def parse_my_trade(t: Mapping[str, Any], inst: Instrument, cid: ClientOrderId, ts_init: int) -> Fill:
    """One entry of GET /api/v3/myTrades (used to recover fills the user stream missed). Sample::

        {"symbol": "BNBBTC", "id": 28457, "orderId": 100234, "orderListId": -1, "price": "4.00000100",
         "qty": "12.00000000", "quoteQty": "48.000012", "commission": "10.10000000",
         "commissionAsset": "BNB", "time": 1499865549590, "isBuyer": true, "isMaker": false,
         "isBestMatch": true}
    """
    return Fill(client_order_id=cid, venue=inst.venue, symbol=inst.symbol,
                side=Side.BUY if t["isBuyer"] else Side.SELL, trade_id=TradeId(str(int(t["id"]))),
                price_ticks=inst.parse_price_ticks(t["price"]), lots=inst.parse_qty_lots(t["qty"]),
                fee=Decimal(t["commission"]), fee_currency=str(t["commissionAsset"]),
                liquidity=Liquidity.MAKER if t["isMaker"] else Liquidity.TAKER,
                ts_event=int(t["time"]) * NS_PER_MS, ts_init=ts_init,
                venue_order_id=VenueOrderId(str(int(t["orderId"]))))


def parse_account_balances(acc: Mapping[str, Any]) -> dict[str, Balance]:
    """GET /api/v3/account -> balances by asset. Sample (trimmed)::

        {"makerCommission": 15, "canTrade": true, "accountType": "SPOT",
         "balances": [{"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000"},
                      {"asset": "LTC", "free": "4763368.68006011", "locked": "0.00000000"}],
         "permissions": ["SPOT"], "uid": 354937868}
    """
    out: dict[str, Balance] = {}
    for b in acc["balances"]:
        out[str(b["asset"])] = Balance(str(b["asset"]), Decimal(b["free"]), Decimal(b["locked"]))
    return out


def parse_account_position(ev: Mapping[str, Any]) -> tuple[int, dict[str, Balance]]:
    """An ``outboundAccountPosition`` user-data event -> (time of last account update in ns,
    balances of the assets it carries). Binance sends one after every balance change, with only
    the assets that may have changed. Sample::

        {"e": "outboundAccountPosition", "E": 1709654400000, "u": 1709654400000,
         "B": [{"a": "USDT", "f": "10000.00000000", "l": "2500.00000000"}]}
    """
    if ev.get("e") != "outboundAccountPosition":
        raise ValueError(f"not an outboundAccountPosition: e={ev.get('e')!r}")
    out: dict[str, Balance] = {}
    for b in ev["B"]:
        free, locked = Decimal(b["f"]), Decimal(b["l"])
        if not (free.is_finite() and locked.is_finite()) or free < 0 or locked < 0:
            raise ValueError(f"balance of {b['a']!r} not a non-negative number: f={b['f']!r} l={b['l']!r}")
        out[str(b["a"])] = Balance(str(b["a"]), free, locked)
    return int(ev["u"]) * NS_PER_MS, out


def _levels(inst: Instrument, raw: list[list[str]]) -> list[tuple[int, int]]:
    return [(inst.parse_price_ticks(p), inst.parse_qty_lots(q)) for p, q in raw]


def parse_depth_diff(d: Mapping[str, Any], inst: Instrument, ts_init: int) -> BookDeltas:
    """A ``<symbol>@depth`` diff event -> :class:`BookDeltas` (``U``/``u`` as first/last update id;
    spot chains ``U == previous u + 1``). Sample::

        {"e": "depthUpdate", "E": 1672515782136, "s": "BNBBTC", "U": 157, "u": 160,
         "b": [["0.0024", "10"]], "a": [["0.0026", "100"]]}
    """
    if d.get("e") != "depthUpdate":
        raise ValueError(f"not a depthUpdate: e={d.get('e')!r}")
    return BookDeltas(inst.venue, inst.symbol, _levels(inst, d["b"]), _levels(inst, d["a"]),
                      int(d["E"]) * NS_PER_MS, ts_init, first_update_id=int(d["U"]),
                      last_update_id=int(d["u"]))


def parse_depth_snapshot(d: Mapping[str, Any], inst: Instrument, ts_event: int, ts_init: int) -> BookDeltas:
    """GET /api/v3/depth -> a snapshot :class:`BookDeltas`. Sample::

        {"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]],
         "asks": [["4.00000200", "12.00000000"]]}
    """
    return BookDeltas(inst.venue, inst.symbol, _levels(inst, d["bids"]), _levels(inst, d["asks"]), ts_event,
                      ts_init, is_snapshot=True, last_update_id=int(d["lastUpdateId"]))


def parse_trade(d: Mapping[str, Any], inst: Instrument, ts_init: int) -> TradeTick:
    """A ``<symbol>@trade`` event -> :class:`TradeTick` (``m`` true: the buyer was the maker, so the
    aggressor sold). Sample::

        {"e": "trade", "E": 1672515782136, "s": "BNBBTC", "t": 12345, "p": "0.001", "q": "100",
         "T": 1672515782136, "m": true, "M": true}
    """
    if d.get("e") != "trade":
        raise ValueError(f"not a trade: e={d.get('e')!r}")
    return TradeTick(inst.venue, inst.symbol, inst.parse_price_ticks(d["p"]), inst.parse_qty_lots(d["q"]),
                     Side.SELL if d["m"] else Side.BUY, TradeId(str(int(d["t"]))), int(d["T"]) * NS_PER_MS,
                     ts_init)


def parse_book_ticker(d: Mapping[str, Any], inst: Instrument, ts_init: int) -> QuoteTick:
    """A ``<symbol>@bookTicker`` event -> :class:`QuoteTick` (spot bookTicker has no event time, so
    ``ts_event`` is ``ts_init``). Sample::

        {"u": 400900217, "s": "BNBUSDT", "b": "25.35190000", "B": "31.21000000",
         "a": "25.36520000", "A": "40.66000000"}
    """
    ts = int(d["E"]) * NS_PER_MS if "E" in d else ts_init
    return QuoteTick(inst.venue, inst.symbol, inst.parse_price_ticks(d["b"]), inst.parse_qty_lots(d["B"]),
                     inst.parse_price_ticks(d["a"]), inst.parse_qty_lots(d["A"]), ts, ts_init,
                     update_id=int(d["u"]))
