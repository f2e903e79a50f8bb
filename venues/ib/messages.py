"""TWS API messages (text protocol): the few requests sorex sends and the events it reads.

Encoders return the framed bytes (:func:`venues.ib.codec.encode_frame`) for one negotiated
``server_version`` in ``[MIN_SERVER_VERSION, 200]``. The field layouts follow IB's own Python
client and are pinned byte for byte by tests/venues/test_ib_codec.py against the bytes ibapi
9.81.1 (server versions 151, 157) and ibapi 10.50.2 (164, 176, 200) send. Below server version 158
the order defaults are ibapi 9.81.1's (``strike`` sent as ``0.0``, the deprecated
``eTradeOnly``/``firmQuoteOnly`` as 1); from 158 they are ibapi 10's (empty strike, 0, 0), which
is also what current TWS accepts (TWS >= 10 refuses eTradeOnly orders, error 10268).

Decoders take the text fields of one message (field 0 = the message id) and return a frozen value
object; prices and quantities stay ``Decimal`` parsed from the wire strings (the adapter turns them
into ticks and lots). IB's "unset" markers (an empty field where ibapi reads SHOW_UNSET, the double
1.7976931348623157E308, the int 2147483647) become ``None``. Extra trailing fields are ignored
(TWS adds fields in newer versions; old captures carry a trailing empty field); a missing or
malformed field raises :class:`~venues.ib.codec.IbDecodeError` naming the message and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from venues.ib.codec import IbDecodeError, encode_frame

__all__ = [
    "MIN_SERVER_VERSION",
    "CommissionReport",
    "ErrorMessage",
    "ExecDetails",
    "ExecDetailsEnd",
    "IbContract",
    "IbOrder",
    "InboundMessage",
    "ManagedAccounts",
    "NextValidId",
    "OpenOrder",
    "OpenOrderEnd",
    "OrderStatusMessage",
    "ServerTime",
    "Unhandled",
    "decode_message",
    "encode_cancel_order",
    "encode_place_order",
    "encode_req_executions",
    "encode_req_ids",
    "encode_req_open_orders",
    "encode_start_api",
]

MIN_SERVER_VERSION = 151
"""The oldest server version these layouts are pinned for (MIN_SERVER_VER_PRICE_MGMT_ALGO)."""

# outbound message ids (ibapi message.OUT)
OUT_PLACE_ORDER = 3
OUT_CANCEL_ORDER = 4
OUT_REQ_OPEN_ORDERS = 5
OUT_REQ_EXECUTIONS = 7
OUT_REQ_IDS = 8
OUT_START_API = 71

# inbound message ids (ibapi message.IN)
IN_ORDER_STATUS = 3
IN_ERR_MSG = 4
IN_OPEN_ORDER = 5
IN_NEXT_VALID_ID = 9
IN_EXECUTION_DATA = 11
IN_MANAGED_ACCTS = 15
IN_CURRENT_TIME = 49
IN_OPEN_ORDER_END = 53
IN_EXECUTION_DATA_END = 55
IN_COMMISSION_REPORT = 59

# server versions that change the layouts used here (ibapi server_versions.py)
SV_DURATION = 158
SV_POST_TO_ATS = 160
SV_AUTO_CANCEL_PARENT = 162
SV_ADVANCED_ORDER_REJECT = 166
SV_MANUAL_ORDER_TIME = 169
SV_PEGBEST_PEGMID_OFFSETS = 170
SV_FA_PROFILE_DESUPPORT = 177
SV_PENDING_PRICE_REVISION = 178
SV_CUSTOMER_ACCOUNT = 183
SV_PROFESSIONAL_CUSTOMER = 184
SV_BOND_ACCRUED_INTEREST = 185
SV_RFQ_FIELDS = 187
SV_INCLUDE_OVERNIGHT = 189
SV_UNDO_RFQ_FIELDS = 190
SV_CME_TAGGING_FIELDS = 192
SV_CME_TAGGING_FIELDS_IN_OPEN_ORDER = 193
SV_ERROR_TIME = 194
SV_FULL_ORDER_PREVIEW_FIELDS = 195
SV_SUBMITTER = 198
SV_IMBALANCE_ONLY = 199
SV_PARAMETRIZED_DAYS_OF_EXECUTIONS = 200

UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE_TEXT = "1.7976931348623157e+308"   # str(sys.float_info.max), as ibapi writes it
_UNSET_DOUBLE = Decimal("1.7976931348623157E308")
_UNSET_INT_TEXT = str(UNSET_INTEGER)
_PEG_BENCH = frozenset({"PEG BENCH", "PEGBENCH"})
_PEG_BEST_MID = frozenset({"PEG BEST", "PEGBEST", "PEG MID", "PEGMID"})


def _dec_text(d: Decimal) -> str:
    """A Decimal as IB wants it: plain notation, no exponent, no trailing zeros (``201.5``)."""
    if not d.is_finite():
        raise ValueError(f"{d} is not a finite number")
    t = format(d.normalize(), "f")
    return t


def _flag(b: bool) -> str:
    return "1" if b else "0"


# ---------------------------------------------------------------------------------------- encoders
def encode_start_api(client_id: int, *, optional_capabilities: str = "") -> bytes:
    """startApi (``71|2|<clientId>|<optionalCapabilities>|``)."""
    return encode_frame([str(OUT_START_API), "2", str(client_id), optional_capabilities])


def encode_req_ids(num_ids: int = -1) -> bytes:
    """reqIds (``8|1|<numIds>|``): TWS answers with nextValidId."""
    return encode_frame([str(OUT_REQ_IDS), "1", str(num_ids)])


def encode_req_open_orders() -> bytes:
    """reqOpenOrders (``5|1|``): openOrder + orderStatus for each open order of this client id,
    then openOrderEnd."""
    return encode_frame([str(OUT_REQ_OPEN_ORDERS), "1"])


def encode_req_executions(req_id: int, server_version: int, *, client_id: int = 0, account: str = "",
                          time: str = "", symbol: str = "", sec_type: str = "", exchange: str = "",
                          side: str = "") -> bytes:
    """reqExecutions with an ExecutionFilter: execDetails (+ commissionReport) for each matching
    execution of the day, then execDetailsEnd. ``time`` is ``yyyymmdd-hh:mm:ss`` (executions after)."""
    f = [str(OUT_REQ_EXECUTIONS), "3", str(req_id), str(client_id), account, time, symbol, sec_type, exchange,
         side]
    if server_version >= SV_PARAMETRIZED_DAYS_OF_EXECUTIONS:
        f += [_UNSET_INT_TEXT, "0"]   # lastNDays unset, no specific dates
    return encode_frame(f)


def encode_cancel_order(order_id: int, server_version: int, *, manual_order_time: str = "") -> bytes:
    """cancelOrder: ``4|1|<id>|`` (before 169), ``4|1|<id>|<manualOrderTime>|`` (169..191),
    ``4|<id>|<manualOrderTime>|<extOperator>|<manualOrderIndicator>|`` (from 192)."""
    f = [str(OUT_CANCEL_ORDER)]
    if server_version < SV_CME_TAGGING_FIELDS:
        f.append("1")
    f.append(str(order_id))
    if server_version >= SV_MANUAL_ORDER_TIME:
        f.append(manual_order_time)
    if server_version >= SV_CME_TAGGING_FIELDS:
        f += ["", _UNSET_INT_TEXT]
    return encode_frame(f)


@dataclass(frozen=True, slots=True)
class IbContract:
    """The contract fields sorex sends (STK on SMART, CRYPTO on PAXOS, ...)."""

    symbol: str
    sec_type: str = "STK"
    exchange: str = "SMART"
    currency: str = "USD"
    primary_exchange: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    con_id: int = 0


@dataclass(frozen=True, slots=True)
class IbOrder:
    """The order fields sorex sends: LMT or MKT, TIF DAY/IOC/GTC. ``order_ref`` carries the sorex
    client order id (TWS echoes it in openOrder and execDetails)."""

    action: str                 # BUY | SELL
    total_quantity: Decimal
    order_type: str             # LMT | MKT
    lmt_price: Decimal | None = None
    tif: str = "DAY"
    account: str = ""
    order_ref: str = ""
    outside_rth: bool = False
    transmit: bool = True


def encode_place_order(order_id: int, contract: IbContract, order: IbOrder, server_version: int) -> bytes:
    """placeOrder for a plain (no combo, algo, condition, scale, hedge) order at ``server_version``."""
    if not MIN_SERVER_VERSION <= server_version <= 200:
        raise ValueError(f"server version {server_version} is outside {MIN_SERVER_VERSION}..200")
    if order.action not in ("BUY", "SELL"):
        raise ValueError(f"action {order.action!r} is not BUY or SELL")
    if order.order_type == "LMT" and order.lmt_price is None:
        raise ValueError("a LMT order needs lmt_price")
    legacy = server_version < SV_DURATION   # ibapi 9.81.1 defaults below 158
    lmt = "" if order.lmt_price is None else _dec_text(order.lmt_price)
    f = [str(OUT_PLACE_ORDER), str(order_id),
         # contract
         str(contract.con_id), contract.symbol, contract.sec_type, "", "0.0" if legacy else "", "", "",
         contract.exchange, contract.primary_exchange, contract.currency, contract.local_symbol,
         contract.trading_class, "", "",                       # secIdType, secId
         # main order fields
         order.action, _dec_text(order.total_quantity), order.order_type, lmt, "",   # auxPrice
         order.tif, "", order.account, "", "0", order.order_ref,   # ocaGroup, openClose, origin
         _flag(order.transmit), "0", "0", "0", "0", "0",           # parentId blockOrder sweepToFill displaySize trigger
         _flag(order.outside_rth), "0",                            # hidden
         "", "0", "", "", "", "", ""]                              # sharesAlloc discrAmt GAT GTD faGroup faMethod faPct
    if server_version < SV_FA_PROFILE_DESUPPORT:
        f.append("")                                              # faProfile
    f += ["",                                                     # modelCode
          "0", "", "-1",                                          # shortSaleSlot designatedLocation exemptCode
          "0", "", "", "0", "", "",                               # ocaType rule80A settlingFirm AON minQty pctOffset
          "1" if legacy else "0", "1" if legacy else "0",         # eTradeOnly firmQuoteOnly (deprecated)
          "", "0", "", "", "", "", "",                            # nbboCap auction startPx refPx delta rangeLo/Hi
          "0", "", "", "", "",                                    # overridePct vol volType dnOrderType dnAuxPx
          "0", "", "", "",                                        # continuousUpdate refPriceType trailStop trailingPct
          "", "", "",                                             # scaleInitLevelSize scaleSubsLevelSize scalePriceIncr
          "", "", "",                                             # scaleTable activeStartTime activeStopTime
          "", "0", "", "", "0", "0",                              # hedgeType optOut clearing x2 notHeld dnContract
          "", "", "0", "", "0", "0", "0",                         # algo algoId whatIf misc solicited randomize x2
          "0", "",                                                # conditions count, adjustedOrderType
          UNSET_DOUBLE_TEXT, UNSET_DOUBLE_TEXT, UNSET_DOUBLE_TEXT,  # triggerPrice lmtPriceOffset adjustedStopPrice
          UNSET_DOUBLE_TEXT, UNSET_DOUBLE_TEXT, "0",              # adjustedStopLimitPrice adjustedTrailingAmt unit
          "", "", "",                                             # extOperator softDollarTier name, value
          UNSET_DOUBLE_TEXT,                                      # cashQty
          "", "", "", "",                                         # mifid2 decision maker/algo, execution trader/algo
          "0", "0", "0", ""]                                      # noAutoHedgePx omsContainer dPeg priceMgmt
    if server_version >= SV_DURATION:
        f.append(_UNSET_INT_TEXT)                                 # duration
    if server_version >= SV_POST_TO_ATS:
        f.append(_UNSET_INT_TEXT)                                 # postToAts
    if server_version >= SV_AUTO_CANCEL_PARENT:
        f.append("0")                                             # autoCancelParent
    if server_version >= SV_ADVANCED_ORDER_REJECT:
        f.append("")                                              # advancedErrorOverride
    if server_version >= SV_MANUAL_ORDER_TIME:
        f.append("")                                              # manualOrderTime
    # (PEG BEST / PEG MID offsets, from 170, only for those order types: not sent here)
    if server_version >= SV_CUSTOMER_ACCOUNT:
        f.append("")                                              # customerAccount
    if server_version >= SV_PROFESSIONAL_CUSTOMER:
        f.append("0")                                             # professionalCustomer
    if SV_RFQ_FIELDS <= server_version < SV_UNDO_RFQ_FIELDS:
        f += ["", _UNSET_INT_TEXT]
    if server_version >= SV_INCLUDE_OVERNIGHT:
        f.append("0")                                             # includeOvernight
    if server_version >= SV_CME_TAGGING_FIELDS:
        f.append(_UNSET_INT_TEXT)                                 # manualOrderIndicator
    if server_version >= SV_IMBALANCE_ONLY:
        f.append("0")                                             # imbalanceOnly
    return encode_frame(f)


# ---------------------------------------------------------------------------------------- decoders
class _Fields:
    """A cursor over one message's fields that names the field in every error."""

    __slots__ = ("_f", "_i", "_msg", "_venue")

    def __init__(self, fields: Sequence[str], message_name: str, venue: str | None) -> None:
        self._f = fields
        self._i = 1
        self._msg = message_name
        self._venue = venue

    def _next(self, name: str) -> str:
        i = self._i
        if i >= len(self._f):
            raise IbDecodeError(self._msg, name, i, None, f"missing (the message has {len(self._f)} fields)",
                                venue=self._venue)
        self._i = i + 1
        return self._f[i]

    def error(self, name: str, raw: str, why: str) -> IbDecodeError:
        return IbDecodeError(self._msg, name, self._i - 1, raw, why, venue=self._venue)

    def text(self, name: str) -> str:
        return self._next(name)

    def integer(self, name: str) -> int:
        """ibapi ``decode(int)``: an empty field is 0."""
        raw = self._next(name)
        try:
            return int(raw) if raw else 0
        except ValueError:
            raise self.error(name, raw, "not an integer") from None

    def int_unset(self, name: str) -> int | None:
        """ibapi ``decode(int, SHOW_UNSET)``: empty or 2147483647 is ``None``."""
        raw = self._next(name)
        if not raw:
            return None
        try:
            v = int(raw)
        except ValueError:
            raise self.error(name, raw, "not an integer") from None
        return None if v == UNSET_INTEGER else v

    def flag(self, name: str) -> bool:
        return self.integer(name) != 0

    def dec(self, name: str) -> Decimal | None:
        """A decimal number; empty or IB's unset double is ``None``."""
        raw = self._next(name)
        if not raw:
            return None
        try:
            d = Decimal(raw)
        except InvalidOperation:
            raise self.error(name, raw, "not a number") from None
        if not d.is_finite():
            raise self.error(name, raw, "not a finite number")
        return None if d >= _UNSET_DOUBLE else d

    def dec0(self, name: str) -> Decimal:
        """As :meth:`dec`, empty read as 0 (ibapi ``decode(float)`` without SHOW_UNSET)."""
        d = self.dec(name)
        return Decimal(0) if d is None else d

    def skip(self, *names: str) -> None:
        for n in names:
            self._next(n)


@dataclass(frozen=True, slots=True)
class NextValidId:
    """``9|1|43|``: the next order id this client may use."""

    order_id: int


@dataclass(frozen=True, slots=True)
class ManagedAccounts:
    """``15|1|DU1234567|``: the accounts this login may trade (comma-separated on the wire)."""

    accounts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ServerTime:
    """``49|1|<epoch seconds>|`` (currentTime)."""

    epoch_s: int


@dataclass(frozen=True, slots=True)
class OrderStatusMessage:
    """``3|13|Filled|100|0|196.52|1376327563|0|196.52|100||0|``: cumulative state of one order.
    ``status``: PendingSubmit, PendingCancel, PreSubmitted, Submitted, ApiCancelled, Cancelled,
    Filled, Inactive."""

    order_id: int
    status: str
    filled: Decimal
    remaining: Decimal
    avg_fill_price: Decimal
    perm_id: int
    parent_id: int
    last_fill_price: Decimal
    client_id: int
    why_held: str
    mkt_cap_price: Decimal


@dataclass(frozen=True, slots=True)
class OpenOrder:
    """openOrder (``5|13|76792991|TSLA|STK||0|?||SMART|USD|TSLA|NMS|BUY|100|MKT|0.0|0.0|DAY||DU1234567|
    |0||100|1376327563|...|PreSubmitted|...``): the order as TWS holds it, with its state."""

    order_id: int
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    local_symbol: str
    action: str
    total_quantity: Decimal
    order_type: str
    lmt_price: Decimal | None
    aux_price: Decimal | None
    tif: str
    account: str
    order_ref: str
    client_id: int
    perm_id: int
    status: str
    commission: Decimal | None
    commission_currency: str
    warning_text: str


@dataclass(frozen=True, slots=True)
class OpenOrderEnd:
    """``53|1|``: the end of a reqOpenOrders answer."""


@dataclass(frozen=True, slots=True)
class ExecDetails:
    """execDetails (``11|-1|13|76792991|TSLA|STK||0.0|||ISLAND|USD|TSLA|NMS|00025b46.63f8f39c.01.01|
    20230224  12:04:56|DU1234567|ISLAND|BOT|100|196.52|1376327563|100|0|100|196.52|||||2|``): one
    execution. ``req_id`` is -1 for a live fill, the reqExecutions id for an answer to one;
    ``side`` is BOT or SLD; ``last_liquidity`` 1 added (maker), 2 removed (taker), 3 routed out."""

    req_id: int
    order_id: int
    con_id: int
    symbol: str
    sec_type: str
    currency: str
    local_symbol: str
    exec_id: str
    time: str
    account: str
    exchange: str
    side: str
    shares: Decimal
    price: Decimal
    perm_id: int
    client_id: int
    liquidation: int
    cum_qty: Decimal
    avg_price: Decimal
    order_ref: str
    last_liquidity: int


@dataclass(frozen=True, slots=True)
class ExecDetailsEnd:
    """``55|1|<reqId>|``: the end of a reqExecutions answer."""

    req_id: int


@dataclass(frozen=True, slots=True)
class CommissionReport:
    """``59|1|00025b46.63f8f39c.01.01|1.0|USD|1.7976931348623157E308|1.7976931348623157E308||``:
    the commission of one execution (sent after its execDetails, and again on reqExecutions)."""

    exec_id: str
    commission: Decimal | None
    currency: str
    realized_pnl: Decimal | None


@dataclass(frozen=True, slots=True)
class ErrorMessage:
    """error (``4|2|41|202|Order Canceled - reason:||``): ``req_id`` is the order id for order
    errors, -1 for connection notices; ``code`` e.g. 201 rejected, 202 cancelled, 103 duplicate id,
    100 max rate exceeded, 1100/1102 connectivity lost/restored, 2104/2106/2158 farm notices."""

    req_id: int
    code: int
    text: str
    advanced_json: str = ""
    error_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class Unhandled:
    """A message id the adapter does not read (logged at debug level)."""

    msg_id: int
    fields: tuple[str, ...]


InboundMessage = (NextValidId | ManagedAccounts | ServerTime | OrderStatusMessage | OpenOrder | OpenOrderEnd
                  | ExecDetails | ExecDetailsEnd | CommissionReport | ErrorMessage | Unhandled)

_NAMES = {IN_ORDER_STATUS: "orderStatus", IN_ERR_MSG: "error", IN_OPEN_ORDER: "openOrder",
          IN_NEXT_VALID_ID: "nextValidId", IN_EXECUTION_DATA: "execDetails", IN_MANAGED_ACCTS: "managedAccounts",
          IN_CURRENT_TIME: "currentTime", IN_OPEN_ORDER_END: "openOrderEnd",
          IN_EXECUTION_DATA_END: "execDetailsEnd", IN_COMMISSION_REPORT: "commissionReport"}


def message_name(msg_id: int) -> str:
    return _NAMES.get(msg_id, f"message {msg_id}")


def decode_message(fields: Sequence[str], server_version: int, *, venue: str | None = None) -> InboundMessage:
    """Decode one inbound message (its text fields, message id first) at ``server_version``."""
    if not fields or not fields[0]:
        raise IbDecodeError("message", "msgId", 0, fields[0] if fields else None, "no message id", venue=venue)
    raw_id = fields[0]
    try:
        msg_id = int(raw_id)
    except ValueError:
        raise IbDecodeError("message", "msgId", 0, raw_id, "not an integer", venue=venue) from None
    name = message_name(msg_id)
    r = _Fields(fields, name, venue)
    if msg_id == IN_NEXT_VALID_ID:
        r.skip("version")
        return NextValidId(r.integer("orderId"))
    if msg_id == IN_MANAGED_ACCTS:
        r.skip("version")
        return ManagedAccounts(tuple(a for a in r.text("accountsList").split(",") if a))
    if msg_id == IN_CURRENT_TIME:
        r.skip("version")
        return ServerTime(r.integer("time"))
    if msg_id == IN_ORDER_STATUS:
        return _order_status(r)
    if msg_id == IN_ERR_MSG:
        return _error(r, server_version)
    if msg_id == IN_OPEN_ORDER:
        return _open_order(r, server_version)
    if msg_id == IN_OPEN_ORDER_END:
        return OpenOrderEnd()
    if msg_id == IN_EXECUTION_DATA:
        return _exec_details(r, server_version)
    if msg_id == IN_EXECUTION_DATA_END:
        r.skip("version")
        return ExecDetailsEnd(r.integer("reqId"))
    if msg_id == IN_COMMISSION_REPORT:
        r.skip("version")
        return CommissionReport(exec_id=r.text("execId"), commission=r.dec("commission"), currency=r.text("currency"),
                                realized_pnl=r.dec("realizedPNL"))
    return Unhandled(msg_id, tuple(fields))


def _order_status(r: _Fields) -> OrderStatusMessage:
    # no version field from MIN_SERVER_VER_MARKET_CAP_PRICE (131); mktCapPrice last
    return OrderStatusMessage(order_id=r.integer("orderId"), status=r.text("status"), filled=r.dec0("filled"),
                              remaining=r.dec0("remaining"), avg_fill_price=r.dec0("avgFillPrice"),
                              perm_id=r.integer("permId"), parent_id=r.integer("parentId"),
                              last_fill_price=r.dec0("lastFillPrice"), client_id=r.integer("clientId"),
                              why_held=r.text("whyHeld"), mkt_cap_price=r.dec0("mktCapPrice"))


def _error(r: _Fields, sv: int) -> ErrorMessage:
    if sv < SV_ERROR_TIME:
        r.skip("version")
    req_id = r.integer("id")
    code = r.integer("errorCode")
    text = r.text("errorString")
    adv = r.text("advancedOrderRejectJson") if sv >= SV_ADVANCED_ORDER_REJECT else ""
    t = r.integer("errorTime") if sv >= SV_ERROR_TIME else 0
    return ErrorMessage(req_id, code, text, adv, t)


def _exec_details(r: _Fields, sv: int) -> ExecDetails:
    # no version field from MIN_SERVER_VER_LAST_LIQUIDITY (136)
    req_id = r.integer("reqId")
    order_id = r.integer("orderId")
    con_id = r.integer("conId")
    symbol = r.text("symbol")
    sec_type = r.text("secType")
    r.skip("lastTradeDateOrContractMonth", "strike", "right", "multiplier", "exchange")
    currency = r.text("currency")
    local_symbol = r.text("localSymbol")
    r.skip("tradingClass")
    exec_id = r.text("execId")
    time = r.text("time")
    account = r.text("acctNumber")
    exchange = r.text("exchange")
    side = r.text("side")
    shares = r.dec0("shares")
    price = r.dec0("price")
    perm_id = r.integer("permId")
    client_id = r.integer("clientId")
    liquidation = r.integer("liquidation")
    cum_qty = r.dec0("cumQty")
    avg_price = r.dec0("avgPrice")
    order_ref = r.text("orderRef")
    r.skip("evRule", "evMultiplier", "modelCode")
    last_liquidity = r.integer("lastLiquidity")
    if sv >= SV_PENDING_PRICE_REVISION:
        r.skip("pendingPriceRevision")
    if sv >= SV_SUBMITTER:
        r.skip("submitter")
    return ExecDetails(req_id=req_id, order_id=order_id, con_id=con_id, symbol=symbol, sec_type=sec_type,
                       currency=currency, local_symbol=local_symbol, exec_id=exec_id, time=time, account=account,
                       exchange=exchange, side=side, shares=shares, price=price, perm_id=perm_id,
                       client_id=client_id, liquidation=liquidation, cum_qty=cum_qty, avg_price=avg_price,
                       order_ref=order_ref, last_liquidity=last_liquidity)


def _open_order(r: _Fields, sv: int) -> OpenOrder:
    """The layout of ibapi's ``Decoder.processOpenOrder`` (no version field from
    MIN_SERVER_VER_ORDER_CONTAINER = 145, so every version-gated field is gated on ``sv``)."""
    order_id = r.integer("orderId")
    con_id = r.integer("conId")
    symbol = r.text("symbol")
    sec_type = r.text("secType")
    r.skip("lastTradeDateOrContractMonth", "strike", "right", "multiplier")
    exchange = r.text("exchange")
    currency = r.text("currency")
    local_symbol = r.text("localSymbol")
    r.skip("tradingClass")
    action = r.text("action")
    total_quantity = r.dec0("totalQuantity")
    order_type = r.text("orderType")
    lmt_price = r.dec("lmtPrice")
    aux_price = r.dec("auxPrice")
    tif = r.text("tif")
    r.skip("ocaGroup")
    account = r.text("account")
    r.skip("openClose", "origin")
    order_ref = r.text("orderRef")
    client_id = r.integer("clientId")
    perm_id = r.integer("permId")
    r.skip("outsideRth", "hidden", "discretionaryAmt", "goodAfterTime", "sharesAllocation",
           "faGroup", "faMethod", "faPercentage")
    if sv < SV_FA_PROFILE_DESUPPORT:
        r.skip("faProfile")
    r.skip("modelCode", "goodTillDate", "rule80A", "percentOffset", "settlingFirm",
           "shortSaleSlot", "designatedLocation", "exemptCode", "auctionStrategy",
           "startingPrice", "stockRefPrice", "delta", "stockRangeLower", "stockRangeUpper",
           "displaySize", "blockOrder", "sweepToFill", "allOrNone", "minQty", "ocaType",
           "eTradeOnly", "firmQuoteOnly", "nbboPriceCap", "parentId", "triggerMethod",
           "volatility", "volatilityType")
    dn_type = r.text("deltaNeutralOrderType")
    r.skip("deltaNeutralAuxPrice")
    if dn_type:
        r.skip("deltaNeutralConId", "deltaNeutralSettlingFirm", "deltaNeutralClearingAccount",
               "deltaNeutralClearingIntent", "deltaNeutralOpenClose", "deltaNeutralShortSale",
               "deltaNeutralShortSaleSlot", "deltaNeutralDesignatedLocation")
    r.skip("continuousUpdate", "referencePriceType", "trailStopPrice", "trailingPercent",
           "basisPoints", "basisPointsType", "comboLegsDescrip")
    for _ in range(_count(r, "comboLegsCount")):
        r.skip("comboLeg.conId", "comboLeg.ratio", "comboLeg.action", "comboLeg.exchange", "comboLeg.openClose",
               "comboLeg.shortSaleSlot", "comboLeg.designatedLocation", "comboLeg.exemptCode")
    for _ in range(_count(r, "orderComboLegsCount")):
        r.skip("orderComboLeg.price")
    for _ in range(_count(r, "smartComboRoutingParamsCount")):
        r.skip("smartComboRoutingParam.tag", "smartComboRoutingParam.value")
    r.skip("scaleInitLevelSize", "scaleSubsLevelSize")
    incr = r.dec("scalePriceIncrement")
    if incr is not None and incr > 0:
        r.skip("scalePriceAdjustValue", "scalePriceAdjustInterval", "scaleProfitOffset", "scaleAutoReset",
               "scaleInitPosition", "scaleInitFillQty", "scaleRandomPercent")
    if r.text("hedgeType"):
        r.skip("hedgeParam")
    r.skip("optOutSmartRouting", "clearingAccount", "clearingIntent", "notHeld")
    if r.flag("deltaNeutralContractPresent"):
        r.skip("deltaNeutralContract.conId", "deltaNeutralContract.delta", "deltaNeutralContract.price")
    if r.text("algoStrategy"):
        for _ in range(_count(r, "algoParamsCount")):
            r.skip("algoParam.tag", "algoParam.value")
    r.skip("solicited", "whatIf")
    status = r.text("status")
    r.skip("initMarginBefore", "maintMarginBefore", "equityWithLoanBefore", "initMarginChange",
           "maintMarginChange", "equityWithLoanChange", "initMarginAfter", "maintMarginAfter",
           "equityWithLoanAfter")
    commission = r.dec("commission")
    r.skip("minCommission", "maxCommission")
    commission_currency = r.text("commissionCurrency")
    if sv >= SV_FULL_ORDER_PREVIEW_FIELDS:
        r.skip("marginCurrency", "initMarginBeforeOutsideRTH", "maintMarginBeforeOutsideRTH",
               "equityWithLoanBeforeOutsideRTH", "initMarginChangeOutsideRTH", "maintMarginChangeOutsideRTH",
               "equityWithLoanChangeOutsideRTH", "initMarginAfterOutsideRTH", "maintMarginAfterOutsideRTH",
               "equityWithLoanAfterOutsideRTH", "suggestedSize", "rejectReason")
        for _ in range(_count(r, "orderAllocationsCount")):
            r.skip("allocation.account", "allocation.position", "allocation.positionDesired",
                   "allocation.positionAfter", "allocation.desiredAllocQty", "allocation.allowedAllocQty",
                   "allocation.isMonetary")
    warning_text = r.text("warningText")
    # the fields after the state (randomize flags, peg-to-benchmark, conditions, adjusted order,
    # soft dollar tier, cash qty, ... imbalanceOnly) are not read: nothing in them changes the
    # order's identity or state; extra fields are ignored like any trailing ones
    return OpenOrder(order_id=order_id, con_id=con_id, symbol=symbol, sec_type=sec_type, exchange=exchange,
                     currency=currency, local_symbol=local_symbol, action=action, total_quantity=total_quantity,
                     order_type=order_type, lmt_price=lmt_price, aux_price=aux_price, tif=tif, account=account,
                     order_ref=order_ref, client_id=client_id, perm_id=perm_id, status=status,
                     commission=commission, commission_currency=commission_currency, warning_text=warning_text)


def _count(r: _Fields, name: str) -> int:
    n = r.integer(name)
    if n < 0 or n > 10_000:
        raise r.error(name, str(n), "not a plausible count")
    return n
