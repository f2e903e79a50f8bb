"""Bybit v5 spot public market data -> sorex types: pure, synchronous parsers.

Numbers are parsed from their strings (ticks/lots through :class:`~marketdata.model.Instrument`),
never through float. Every parser raises ``ValueError``/``KeyError``/``TypeError`` on a malformed
message; the stream logs the raw text and carries on, with its state untouched.

Sequencing of ``orderbook.{depth}.{symbol}`` (Bybit v5 docs, "Orderbook"):

* the first message after a subscription is a ``snapshot``; every later ``delta`` carries the
  update id ``u``, which increases by exactly one per message of that topic. A delta whose ``u`` is
  not the previous ``u`` + 1 means a message was lost: the book must be resynced;
* Bybit re-sends a ``snapshot`` whenever it sees fit (a problem on its side, a service restart, in
  which case ``u`` restarts at 1; level-1 books every 3 s without a change, with an unchanged ``u``).
  A snapshot always replaces the book, whatever its ``u``; a message with ``u == 1`` is parsed as a
  snapshot even if typed ``delta``;
* ``seq`` is the matching engine's cross sequence, comparable between depths of one symbol; it is
  not contiguous and plays no part in gap detection;
* ``ts`` is when the market-data service produced the message, ``cts`` when the matching engine
  produced the book state (it lines up with ``T`` of public trades). ``ts_event`` is ``cts`` when
  present, otherwise ``ts``.

A parsed message maps ``u`` to both ``first_update_id`` and ``last_update_id`` of
:class:`~marketdata.model.BookDeltas` (one Bybit message is one update id), so an
:class:`~marketdata.book.L2Book` follows the stream with its existing ``"contiguous"`` rule
(:data:`BYBIT_SEQUENCE_RULE`): the first delta after a snapshot must have ``u == snapshot u + 1``,
each later one ``u == previous u + 1``, a delta with ``u <= last`` is stale and ignored, and a
snapshot resets the chain to its own ``u`` (also when that goes backwards, e.g. to 1).

The REST snapshot (GET /v5/market/orderbook?category=spot) carries the ``u`` of the 200-level
WebSocket book: it can seed a book fed by ``orderbook.200.{symbol}`` only. Books of other depths are
resynced by re-subscribing, which makes Bybit send a fresh snapshot in band.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from marketdata.book import L2Book, SequenceRule
from marketdata.model import BookDeltas, Instrument, Side, TradeId, TradeTick

__all__ = [
    "BYBIT_SEQUENCE_RULE",
    "REST_SNAPSHOT_DEPTH",
    "SPOT_ORDERBOOK_DEPTHS",
    "SubscriptionResponse",
    "is_pong",
    "new_book",
    "orderbook_topic",
    "parse_orderbook",
    "parse_public_trades",
    "parse_rest_orderbook",
    "parse_subscription_response",
    "split_topic",
    "trade_topic",
]

NS_PER_MS: Final = 1_000_000

BYBIT_SEQUENCE_RULE: Final[SequenceRule] = "contiguous"
"""The :class:`~marketdata.book.L2Book` rule that follows ``orderbook.{depth}.{symbol}`` (see the
module docstring: ``u`` is mapped to first and last update id)."""

SPOT_ORDERBOOK_DEPTHS: Final = (1, 50, 200, 1000)
"""Depths Bybit v5 publishes for spot ``orderbook.{depth}.{symbol}``."""

REST_SNAPSHOT_DEPTH: Final = 200
"""The WebSocket depth whose ``u`` the spot REST snapshot's ``u`` corresponds to."""


def new_book(inst: Instrument, *, on_gap: Callable[[L2Book], None] | None = None) -> L2Book:
    """An empty :class:`L2Book` for ``inst`` under Bybit's sequence rule (needs a snapshot first)."""
    return L2Book(inst.venue, inst.symbol, sequence_rule=BYBIT_SEQUENCE_RULE, on_gap=on_gap)


def orderbook_topic(depth: int, venue_symbol: str) -> str:
    """``orderbook.{depth}.{symbol}``; ``depth`` must be one of :data:`SPOT_ORDERBOOK_DEPTHS`."""
    if depth not in SPOT_ORDERBOOK_DEPTHS:
        raise ValueError(f"Bybit spot orderbook depth {depth} is not one of {SPOT_ORDERBOOK_DEPTHS}")
    return f"orderbook.{depth}.{venue_symbol}"


def trade_topic(venue_symbol: str) -> str:
    """``publicTrade.{symbol}``."""
    return f"publicTrade.{venue_symbol}"


def split_topic(topic: str) -> tuple[str, str]:
    """``"orderbook.50.BTCUSDT"`` -> ``("orderbook.50", "BTCUSDT")``; ``"publicTrade.BTCUSDT"`` ->
    ``("publicTrade", "BTCUSDT")``."""
    channel, dot, symbol = topic.rpartition(".")
    if not dot or not channel or not symbol:
        raise ValueError(f"not a Bybit topic: {topic!r}")
    return channel, symbol


def _levels(inst: Instrument, raw: Any, side: str) -> list[tuple[int, int]]:
    if not isinstance(raw, list):
        raise TypeError(f"book side {side!r} is a {type(raw).__name__}, not a list")
    price, qty = inst.parse_price_ticks, inst.parse_qty_lots
    out = []
    for level in raw:
        p, q = level  # a level with more or fewer than two fields raises ValueError
        out.append((price(p), qty(q)))
    return out


def _ms(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"{what} is a {type(value).__name__}, not an integer of milliseconds")
    ms = int(value)
    if ms < 0:
        raise ValueError(f"{what} {value!r} is negative")
    return ms * NS_PER_MS


def _update_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"update id u={value!r} is not an integer")
    if value < 1:
        raise ValueError(f"update id u={value} is not positive")
    return value


def _check_symbol(data: Mapping[str, Any], inst: Instrument) -> None:
    sym = data["s"]
    if sym != inst.venue_symbol:
        raise ValueError(f"message for {sym!r} handed to the parser of {inst.venue_symbol!r}")


def parse_orderbook(msg: Mapping[str, Any], inst: Instrument, ts_init: int) -> BookDeltas:
    """An ``orderbook.{depth}.{symbol}`` push (``type`` ``snapshot`` or ``delta``) ->
    :class:`BookDeltas` with ``first_update_id == last_update_id == u`` and ``is_snapshot`` for a
    snapshot, and also for ``u == 1`` (a full book after a Bybit service restart; no delta can
    carry it, the first delta after a snapshot has ``u >= 2``). Size ``"0"`` in a delta deletes
    the level. ``seq`` is checked to be an integer but not carried (BookDeltas has no field for
    it). Sample (Bybit v5 docs)::

        {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1687940967466,
         "data": {"s": "BTCUSDT", "b": [["30247.20", "30.028"], ["30245.40", "0"]],
                  "a": [["30248.70", "0"]], "u": 177400507, "seq": 66544703342},
         "cts": 1687940967464}
    """
    topic = msg["topic"]
    if not isinstance(topic, str) or not topic.startswith("orderbook."):
        raise ValueError(f"not an orderbook topic: {topic!r}")
    kind = msg["type"]
    if kind == "snapshot":
        snapshot = True
    elif kind == "delta":
        snapshot = False
    else:
        raise ValueError(f"orderbook message type {kind!r} is neither snapshot nor delta")
    data = msg["data"]
    if not isinstance(data, Mapping):
        raise TypeError(f"orderbook data is a {type(data).__name__}, not an object")
    _check_symbol(data, inst)
    u = _update_id(data["u"])
    if u == 1:
        snapshot = True   # Bybit restarted its service: u = 1 is a full book whatever ``type`` says
    seq = data.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        raise TypeError(f"cross sequence seq={seq!r} is not an integer")
    cts = msg.get("cts")
    ts_event = _ms(cts, "cts") if cts is not None else _ms(msg["ts"], "ts")
    return BookDeltas(inst.venue, inst.symbol, _levels(inst, data["b"], "b"), _levels(inst, data["a"], "a"),
                      ts_event, ts_init, is_snapshot=snapshot, first_update_id=u, last_update_id=u)


_SIDES: Final = {"Buy": Side.BUY, "Sell": Side.SELL}


def parse_public_trades(msg: Mapping[str, Any], inst: Instrument, ts_init: int) -> list[TradeTick]:
    """A ``publicTrade.{symbol}`` push -> one :class:`TradeTick` per trade, in the venue's order
    (ascending match time). ``S`` is the taker's side, i.e. the aggressor; ``i`` the trade id (a
    string: numeric on spot, a UUID on derivatives); ``T`` the fill time in ms. The whole message is
    refused if any trade in it is malformed. Sample (Bybit v5 docs, spot)::

        {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1672304486868,
         "data": [{"T": 1672304486865, "s": "BTCUSDT", "S": "Buy", "v": "0.001", "p": "16578.50",
                   "L": "PlusTick", "i": "2290000000061666327", "BT": false, "RPI": false,
                   "seq": 1783284617}]}
    """
    data = msg["data"]
    if not isinstance(data, list):
        raise TypeError(f"publicTrade data is a {type(data).__name__}, not a list")
    out = []
    for t in data:
        _check_symbol(t, inst)
        try:
            aggressor = _SIDES[t["S"]]
        except KeyError:
            raise ValueError(f"trade side S={t.get('S')!r} is neither Buy nor Sell") from None
        trade_id = t["i"]
        if not isinstance(trade_id, str) or not trade_id:
            raise ValueError(f"trade id i={trade_id!r} is not a non-empty string")
        lots = inst.parse_qty_lots(t["v"])
        if lots <= 0:
            raise ValueError(f"trade {trade_id} has size {t['v']!r}")
        out.append(TradeTick(inst.venue, inst.symbol, inst.parse_price_ticks(t["p"]), lots, aggressor,
                             TradeId(trade_id), _ms(t["T"], "T"), ts_init))
    return out


def parse_rest_orderbook(body: Mapping[str, Any], inst: Instrument, ts_init: int) -> BookDeltas:
    """GET /v5/market/orderbook?category=spot (the whole response or its ``result``) -> a snapshot
    :class:`BookDeltas` with ``last_update_id = u`` (the ``u`` of the 200-level WebSocket book) and
    ``ts_event`` from ``cts`` (else ``ts``). A response with ``retCode`` other than 0 raises
    ``ValueError`` naming Bybit's code and text. Sample (Bybit v5 docs)::

        {"retCode": 0, "retMsg": "OK",
         "result": {"s": "BTCUSDT", "a": [["65557.7", "16.606555"]], "b": [["65485.47", "47.081829"]],
                    "ts": 1716863719031, "u": 230704, "seq": 1432604333, "cts": 1716863718905},
         "retExtInfo": {}, "time": 1716863719382}
    """
    if "retCode" in body:
        if body["retCode"] != 0:
            raise ValueError(f"Bybit orderbook request failed: retCode={body['retCode']} "
                             f"retMsg={body.get('retMsg')!r}")
        result = body["result"]
    else:
        result = body
    if not isinstance(result, Mapping):
        raise TypeError(f"orderbook result is a {type(result).__name__}, not an object")
    _check_symbol(result, inst)
    u = _update_id(result["u"])
    cts = result.get("cts")
    ts_event = _ms(cts, "cts") if cts is not None else _ms(result["ts"], "ts")
    return BookDeltas(inst.venue, inst.symbol, _levels(inst, result["b"], "b"), _levels(inst, result["a"], "a"),
                      ts_event, ts_init, is_snapshot=True, first_update_id=u, last_update_id=u)


@dataclass(frozen=True, slots=True)
class SubscriptionResponse:
    """Bybit's answer to an ``op`` request (subscribe, unsubscribe, ping)."""

    op: str
    success: bool
    ret_msg: str
    req_id: str
    conn_id: str


def parse_subscription_response(msg: Mapping[str, Any]) -> SubscriptionResponse:
    """An ``op`` answer -> :class:`SubscriptionResponse`. Samples (success, then failure)::

        {"success": true, "ret_msg": "", "conn_id": "cejreaspqfm9se7usbrg-2xh",
         "req_id": "sub-orderbook-1", "op": "subscribe"}
        {"success": false, "ret_msg": "Invalid topic: invalid.topic.BTCUSDT",
         "conn_id": "cejreaspqfm9se7usbrg-2xh", "op": "subscribe"}
    """
    op = msg["op"]
    success = msg["success"]
    if not isinstance(op, str) or not isinstance(success, bool):
        raise TypeError(f"op response with op={op!r} success={success!r}")
    return SubscriptionResponse(op, success, str(msg.get("ret_msg") or ""), str(msg.get("req_id") or ""),
                                str(msg.get("conn_id") or ""))


def split_frame(raw: str) -> tuple[dict[str, Any] | None, bool]:
    """One text frame of a Bybit v5 stream, public or private: ``(msg, push)``. ``push`` is true
    for what goes to the stream owner's push handler: a topic message, or a frame that is not a
    JSON object (``msg`` is then ``None``: the owner reports it garbled); false for a control
    frame (a pong, an op answer), returned parsed."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return None, True
    if not isinstance(msg, dict):
        return None, True
    return msg, "topic" in msg


def is_pong(msg: Mapping[str, Any]) -> bool:
    """Whether ``msg`` answers a ``{"op": "ping"}``. Public streams answer
    ``{"success": true, "ret_msg": "pong", "conn_id": "...", "req_id": "", "op": "ping"}``; the
    private stream ``{"op": "pong", "args": ["1675418560633"], ...}``: both are accepted."""
    op = msg.get("op")
    return op == "pong" or (op == "ping" and msg.get("ret_msg") == "pong")
