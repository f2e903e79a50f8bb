"""Bybit v5 spot public market data: the parsers on Bybit's own payloads (the recorded fixtures in
../shared/data/venues/bybit, from NautilusTrader's adapter test data, LGPL-3.0), an L2Book driven
by them under Bybit's sequence rule, and BybitMarketDataStream against a loopback ``websockets``
server that speaks Bybit's public protocol (acks, ping/pong, snapshot then deltas, a dropped
connection, a garbled frame, a lost delta). No test reaches the internet."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from marketdata.book import L2Book
from marketdata.clock import LiveClock, SimClock
from marketdata.errors import ConfigError, VenueError
from marketdata.model import BookDeltas, Instrument, InstrumentKind, MarketEvent, Side, Symbol, TradeTick, VenueId
from venues.bybit.marketdata import (
    BYBIT_SEQUENCE_RULE,
    is_pong,
    new_book,
    orderbook_topic,
    parse_orderbook,
    parse_public_trades,
    parse_rest_orderbook,
    parse_subscription_response,
    split_topic,
)
from venues.bybit.ws_md import BybitMarketDataStream

REPO = Path(__file__).resolve().parents[2]
BYBIT = Path(os.environ.get("SOREX_SHARED", REPO / ".." / "shared")) / "data" / "venues" / "bybit"
MS = 1_000_000


def _load(name: str) -> Any:
    path = BYBIT / name
    if not path.is_file():
        pytest.skip(f"fixture not found at {path} (set SOREX_SHARED)")
    return json.loads(path.read_text())


def _inst(symbol: str = "BTCUSDT") -> Instrument:
    """The instrument as GET /v5/market/instruments-info?category=spot describes it: tick from
    ``priceFilter.tickSize``, lot from ``lotSizeFilter.basePrecision``."""
    body = _load("http_get_instruments_spot.json")
    info = next(i for i in body["result"]["list"] if i["symbol"] == symbol)
    lot = info["lotSizeFilter"]
    return Instrument(venue=VenueId("bybit-spot"), symbol=Symbol(f"{info['baseCoin']}-{info['quoteCoin']}"),
                      venue_symbol=symbol, base=info["baseCoin"], quote=info["quoteCoin"],
                      tick_size=Decimal(info["priceFilter"]["tickSize"]), lot_size=Decimal(lot["basePrecision"]),
                      min_quantity=Decimal(lot["minOrderQty"]), min_notional=Decimal(lot["minOrderAmt"]),
                      kind=InstrumentKind.SPOT)


def _ob(kind: str, u: int, bids: list[list[str]], asks: list[list[str]], *, ts: int = 1709891680000,
        topic: str = "orderbook.1.BTCUSDT") -> dict[str, Any]:
    """A Bybit orderbook push shaped like the fixtures (new ids and levels)."""
    msg = copy.deepcopy(_load("ws_orderbook_snapshot.json"))
    msg.update(topic=topic, type=kind, ts=ts)
    msg["data"].update(b=bids, a=asks, u=u, seq=msg["data"]["seq"] + u)
    assert isinstance(msg, dict)
    return msg


# ---------------------------------------------------------------- parsers on the real payloads
def test_instrument_from_the_instruments_fixture() -> None:
    inst = _inst()
    assert (inst.tick_size, inst.lot_size) == (Decimal("0.1"), Decimal("0.0001"))
    assert inst.parse_price_ticks("27449.50") == 274495 and inst.parse_qty_lots("0.750") == 7500


def test_snapshot_and_delta_fixtures_parse_and_drive_a_book() -> None:
    inst = _inst()
    snap = parse_orderbook(_load("ws_orderbook_snapshot.json"), inst, ts_init=7)
    assert snap.is_snapshot and (snap.first_update_id, snap.last_update_id) == (123456789, 123456789)
    assert snap.bids == [(274500, 5000), (274495, 10000)] and snap.asks == [(274510, 7500), (274515, 9000)]
    assert (snap.ts_event, snap.ts_init) == (1709891679000 * MS, 7)   # no cts in the fixture: ts
    assert (snap.venue, snap.symbol) == ("bybit-spot", "BTC-USDT")
    delta = parse_orderbook(_load("ws_orderbook_delta.json"), inst, ts_init=8)
    assert not delta.is_snapshot and (delta.first_update_id, delta.last_update_id) == (123456790, 123456790)
    assert delta.bids == [(274500, 4000)] and delta.asks == [(274510, 0)]

    gaps: list[L2Book] = []
    book = new_book(inst, on_gap=gaps.append)
    assert book.sequence_rule == BYBIT_SEQUENCE_RULE == "contiguous" and book.needs_resync
    assert not book.apply(delta)            # no snapshot yet: dropped
    assert book.apply(snap) and book.apply(delta)
    assert book.bids() == [(274500, 4000), (274495, 10000)]
    assert book.asks() == [(274515, 9000)]   # "0" deleted the 27451.00 ask
    assert book.last_update_id == 123456790 and book.ts_event == 1709891679500 * MS
    assert gaps == [] and book.statistics()["dropped"] == 1
    book._check()


def test_a_lost_delta_is_a_gap_and_the_next_snapshot_resyncs() -> None:
    inst = _inst()
    gaps: list[L2Book] = []
    book = new_book(inst, on_gap=gaps.append)
    book.apply(parse_orderbook(_load("ws_orderbook_snapshot.json"), inst, 0))
    book.apply(parse_orderbook(_load("ws_orderbook_delta.json"), inst, 0))      # u = 123456790
    lost = parse_orderbook(_ob("delta", 123456792, [["27450.00", "9"]], []), inst, 0)
    assert not book.apply(lost)
    assert gaps == [book] and book.needs_resync and book.bids() == [] and book.statistics()["gaps"] == 1
    # deltas are refused until a snapshot; the snapshot ends the resync
    assert not book.apply(parse_orderbook(_ob("delta", 123456793, [], []), inst, 0))
    assert book.apply(parse_orderbook(_ob("snapshot", 123456800, [["27440.0", "1"]], [["27460.0", "2"]]), inst, 0))
    assert not book.needs_resync and book.statistics()["resyncs"] == 1
    assert book.bids() == [(274400, 10000)] and book.asks() == [(274600, 20000)]
    # the first delta after a snapshot must be exactly snapshot u + 1
    assert not book.apply(parse_orderbook(_ob("delta", 123456802, [], []), inst, 0))
    assert book.statistics()["gaps"] == 2


def test_a_mid_stream_snapshot_with_u_1_replaces_the_book() -> None:
    """Bybit docs: "Occasionally, you'll receive u=1, which is a snapshot data due to the restart of
    the service. So please overwrite your local orderbook"."""
    inst = _inst()
    book = new_book(inst)
    book.apply(parse_orderbook(_load("ws_orderbook_snapshot.json"), inst, 0))
    book.apply(parse_orderbook(_load("ws_orderbook_delta.json"), inst, 0))
    restart = parse_orderbook(_ob("snapshot", 1, [["27300.0", "0.5"]], [["27310.0", "0.25"]]), inst, 0)
    assert book.apply(restart) and book.last_update_id == 1
    assert book.bids() == [(273000, 5000)] and book.asks() == [(273100, 2500)]
    assert book.apply(parse_orderbook(_ob("delta", 2, [["27300.0", "0"], ["27299.9", "1.2"]], []), inst, 0))
    assert book.bids() == [(272999, 12000)] and book.last_update_id == 2
    # a repeated (stale) delta is ignored, not applied again and not a gap
    assert book.apply(parse_orderbook(_ob("delta", 2, [["27299.9", "5"]], []), inst, 0))
    assert book.bids() == [(272999, 12000)]
    s = book.statistics()
    assert (s["gaps"], s["stale"], s["snapshots"]) == (0, 1, 2)


def test_cts_is_the_event_time_when_present() -> None:
    msg = _ob("delta", 5, [], [])
    msg["cts"] = 1709891679998
    assert parse_orderbook(msg, _inst(), 0).ts_event == 1709891679998 * MS


def test_public_trade_fixture() -> None:
    msg = _load("ws_public_trade.json")   # its topic is hand-edited; the fields are v5 publicTrade
    [t] = parse_public_trades(msg, _inst(), ts_init=3)
    assert t == TradeTick(VenueId("bybit-spot"), Symbol("BTC-USDT"), 274510, 100, Side.BUY,
                          t.trade_id, 1709891679000 * MS, 3)
    assert t.trade_id == "9dc75fca-4bdd-4773-9f78-6f5d7ab2a110"
    sell = copy.deepcopy(msg)
    sell["data"][0].update(S="Sell", i="2290000000061666327", v="0.0001")
    sell["data"].append(dict(sell["data"][0], i="2290000000061666328", p="27451.1"))
    ticks = parse_public_trades(sell, _inst(), 0)
    assert [(x.aggressor, x.trade_id, x.price_ticks, x.lots) for x in ticks] == [
        (Side.SELL, "2290000000061666327", 274510, 1), (Side.SELL, "2290000000061666328", 274511, 1)]


def test_rest_orderbook_fixture_is_a_snapshot() -> None:
    inst = _inst()
    body = _load("http_get_orderbook.json")
    snap = parse_rest_orderbook(body, inst, ts_init=9)
    assert snap.is_snapshot and snap.last_update_id == 1234567 and snap.ts_event == 1709891679000 * MS
    assert snap.bids == [(274505, 15000), (274500, 20000), (274495, 7500)]
    assert snap.asks == [(274510, 12000), (274515, 30000), (274520, 5000)]
    assert parse_rest_orderbook(body["result"], inst, 9) == snap
    book = new_book(inst)
    assert book.apply(snap) and book.best_bid() == (274505, 15000) and book.best_ask() == (274510, 12000)
    with pytest.raises(ValueError, match="10001"):
        parse_rest_orderbook({"retCode": 10001, "retMsg": "params error", "result": {}}, inst, 0)


def test_subscription_answers_and_pong() -> None:
    ok = parse_subscription_response(_load("ws_subscription_ack.json"))
    assert (ok.op, ok.success, ok.req_id, ok.conn_id) == ("subscribe", True, "sub-orderbook-1",
                                                           "cejreaspqfm9se7usbrg-2xh")
    bad = parse_subscription_response(_load("ws_subscription_failure.json"))
    assert not bad.success and bad.req_id == "" and bad.ret_msg == "Invalid topic: invalid.topic.BTCUSDT"
    assert is_pong({"success": True, "ret_msg": "pong", "conn_id": "x", "req_id": "", "op": "ping"})
    assert is_pong({"req_id": "", "op": "pong", "args": ["1675418560633"], "conn_id": "x"})
    assert not is_pong(_load("ws_subscription_ack.json"))


@pytest.mark.parametrize("mutate", [
    lambda m: m["data"].update(b=[["27450.05", "1"]]),     # off the 0.1 tick
    lambda m: m["data"].update(a=[["27451.0", "0.00001"]]),  # off the 0.0001 lot
    lambda m: m["data"].pop("u"),
    lambda m: m["data"].update(u="123"),
    lambda m: m.update(type="partial"),
    lambda m: m["data"].update(s="ETHUSDT"),
    lambda m: m["data"].update(b=[["27450.0"]]),
    lambda m: m.update(data=[]),
])
def test_malformed_orderbook_messages_raise(mutate: Callable[[dict[str, Any]], object]) -> None:
    msg = copy.deepcopy(_load("ws_orderbook_snapshot.json"))
    mutate(msg)
    with pytest.raises((ValueError, KeyError, TypeError)):
        parse_orderbook(msg, _inst(), 0)


def test_topics() -> None:
    assert orderbook_topic(50, "BTCUSDT") == "orderbook.50.BTCUSDT"
    assert split_topic("orderbook.50.BTCUSDT") == ("orderbook.50", "BTCUSDT")
    assert split_topic("publicTrade.BTCUSDT") == ("publicTrade", "BTCUSDT")
    with pytest.raises(ValueError):
        orderbook_topic(25, "BTCUSDT")
    with pytest.raises(ConfigError):
        BybitMarketDataStream(lambda: None, "ws://x", [_inst()], lambda e: None, LiveClock(),  # type: ignore[arg-type, return-value]
                              channels=("orderbook.25",))


def test_stream_chain_state_without_a_connection() -> None:
    """``on_message`` alone (no socket): deltas before a snapshot are passed on unchecked, a stale
    delta is not a gap, a frame that does not parse leaves the chain where it was."""
    events: list[MarketEvent] = []
    gaps: list[str] = []
    md = BybitMarketDataStream(lambda: None, "wss://stream.bybit.com", [_inst()], events.append,  # type: ignore[arg-type, return-value]
                               SimClock(42), channels=("orderbook.1", "publicTrade"), on_gap=gaps.append,
                               auto_resync=False)
    assert md.url == "wss://stream.bybit.com/v5/public/spot"
    md.on_message(_d(_ob("delta", 7, [], [])))                  # before any snapshot: no chain yet
    md.on_message(_d(_load("ws_orderbook_snapshot.json")))       # u = 123456789
    md.on_message(_d(_ob("delta", 123456789, [], [])))          # stale
    bad = _ob("delta", 123456790, [["27450.05", "1"]], [])       # off tick: garbled, chain unchanged
    md.on_message(_d(bad))
    md.on_message("[1, 2]")
    md.on_message(_d(_ob("delta", 123456790, [], [], topic="orderbook.1.XRPUSDT")))   # unknown symbol
    md.on_message(_d(_load("ws_orderbook_delta.json")))          # u = 123456790 chains
    assert gaps == [] and md.stats["garbled"] == 3 and len(events) == 4
    md.on_message(_d(_ob("delta", 123456792, [], [])))
    assert gaps == ["BTCUSDT"] and md.stats["gaps"] == 1
    md.on_message(_d(_ob("delta", 123456793, [], [])))          # no new gap until a snapshot
    assert md.stats["gaps"] == 1 and len(events) == 6
    md.on_message(_d({"topic": "tickers.BTCUSDT", "type": "snapshot", "ts": 1, "data": {}}))
    assert len(events) == 6 and md.stats["garbled"] == 3
    assert {e.ts_init for e in events} == {42}   # ts_init from the injected clock


# ---------------------------------------------------------------- loopback Bybit
Script = Callable[[int, str, int], list[str]]
"""(connection number, subscribed orderbook topic, subscriptions of it so far) -> frames to send
after the ack; the frame ``DROP`` aborts the TCP connection."""


class FakeBybitPublic:
    """A loopback server with Bybit's public spot protocol: acks subscribe/unsubscribe with the
    request's req_id (or refuses topics in ``refuse`` like the failure fixture, without req_id; and
    a subscribe request for which ``refuse_nth(topic, n)`` is true, ``n`` counting that topic's
    subscribe requests from 1 over all connections),
    answers ``{"op": "ping"}`` with the public pong, and after an orderbook subscription sends the
    frames ``script`` gives."""

    def __init__(self, script: Script, *, refuse: frozenset[str] = frozenset(), answer_pings: bool = True,
                 wait_ping_before_drop: bool = True,
                 refuse_nth: Callable[[str, int], bool] | None = None) -> None:
        self.script = script
        self.refuse = refuse
        self.refuse_nth = refuse_nth
        self.sub_requests: dict[str, int] = {}
        self.answer_pings = answer_pings
        self.wait_ping_before_drop = wait_ping_before_drop
        self.mute_acks = False
        self.requests: list[tuple[int, str, list[str]]] = []
        self.pings = 0
        self.connections = 0
        self._subs: dict[str, int] = {}
        self._server: Any = None
        self.url = ""

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        conn = self.connections
        self.connections += 1
        pinged = asyncio.Event()
        players: set[asyncio.Task[None]] = set()
        try:
            await self._serve(ws, conn, pinged, players)
        except ConnectionClosed:
            pass   # the drop the script asked for
        finally:
            for task in list(players):
                task.cancel()

    async def _serve(self, ws: ServerConnection, conn: int, pinged: asyncio.Event,
                     players: set[asyncio.Task[None]]) -> None:
        conn_id = f"fake-{conn}"
        async for raw in ws:
            msg = json.loads(raw)
            op, req_id, args = msg.get("op"), msg.get("req_id", ""), msg.get("args", [])
            self.requests.append((conn, op, args))
            if op == "ping":
                self.pings += 1
                pinged.set()
                if self.answer_pings:
                    await ws.send(json.dumps({"success": True, "ret_msg": "pong", "conn_id": conn_id,
                                              "req_id": req_id, "op": "ping"}))
                continue
            if op == "unsubscribe":
                await ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": conn_id, "req_id": req_id,
                                          "op": "unsubscribe"}))
                continue
            assert op == "subscribe", msg
            if self.mute_acks:
                continue
            for a in args:
                self.sub_requests[a] = self.sub_requests.get(a, 0) + 1
            bad = [a for a in args if a in self.refuse
                   or (self.refuse_nth is not None and self.refuse_nth(a, self.sub_requests[a]))]
            if bad:
                fail = dict(_load("ws_subscription_failure.json"), conn_id=conn_id)
                fail["ret_msg"] = f"Invalid topic: {bad[0]}"
                await ws.send(json.dumps(fail))
                continue
            await ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": conn_id, "req_id": req_id,
                                      "op": "subscribe"}))
            for topic in args:
                if topic.startswith("orderbook."):
                    self._subs[topic] = self._subs.get(topic, 0) + 1
                    # played beside this reader, which must keep answering pings meanwhile
                    task = asyncio.get_running_loop().create_task(
                        self._play(ws, self.script(conn, topic, self._subs[topic]), pinged))
                    players.add(task)
                    task.add_done_callback(players.discard)

    async def _play(self, ws: ServerConnection, frames: list[str], pinged: asyncio.Event) -> None:
        for frame in frames:
            if frame == "DROP":
                if self.wait_ping_before_drop:
                    await asyncio.wait_for(pinged.wait(), 5)
                ws.transport.abort()
                return
            await ws.send(frame)


async def _wait_for(cond: Callable[[], bool], limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 (waiting for a condition the server drives)
            await asyncio.sleep(0.01)


def _d(msg: dict[str, Any]) -> str:
    return json.dumps(msg)


async def test_stream_against_a_loopback_bybit() -> None:
    trade = _load("ws_public_trade.json")
    trade["topic"] = "publicTrade.BTCUSDT"
    garbled = '{"topic": "orderbook.1.BTCUSDT", "type": "delta", "data": {"s": "BTCUSDT", "b": [["27'

    def script(conn: int, topic: str, nth: int) -> list[str]:
        if conn == 0:   # the fixtures, a garbled frame, a trade, a venue restart (u=1), then a drop
            return [_d(_load("ws_orderbook_snapshot.json")), _d(_load("ws_orderbook_delta.json")), garbled,
                    _d(trade), _d(_ob("snapshot", 1, [["27400.0", "1"]], [["27401.0", "1"]])),
                    _d(_ob("delta", 2, [["27400.0", "2"]], [])), "DROP"]
        if nth == 2:    # first subscription on the new connection: a delta is lost (u 502 never sent)
            return [_d(_ob("snapshot", 500, [["27500.0", "1"], ["27499.9", "3"]], [["27500.1", "2"]])),
                    _d(_ob("delta", 501, [["27500.0", "0.5"]], [])),
                    _d(_ob("delta", 503, [["27499.9", "0"]], [["27500.1", "9"]]))]
        # the client's resubscription after the gap: a fresh snapshot and the chain from it
        return [_d(_ob("snapshot", 600, [["27600.0", "1.5"], ["27599.0", "2"]], [["27601.0", "0.3"]])),
                _d(_ob("delta", 601, [["27599.0", "0"], ["27598.5", "0.0001"]], [["27601.5", "4"]]))]

    fake = FakeBybitPublic(script)
    await fake.start()
    inst = _inst()
    events: list[MarketEvent] = []
    stream_gaps: list[str] = []
    book_gaps: list[L2Book] = []
    book = new_book(inst, on_gap=book_gaps.append)

    def handler(ev: MarketEvent) -> None:
        events.append(ev)
        if isinstance(ev, BookDeltas):
            book.apply(ev)

    def on_gap(sym: str) -> None:
        stream_gaps.append(sym)
        book.request_resync()

    async with aiohttp.ClientSession() as session:
        md = BybitMarketDataStream(lambda: session, fake.url, [inst], handler, LiveClock(),
                                   channels=("orderbook.1", "publicTrade"), on_gap=on_gap, ping_interval_s=0.25,
                                   reconnect_max_s=Decimal("0.2"))
        assert md.url == fake.url + "/v5/public/spot"
        try:
            await md.start()
            await _wait_for(lambda: book.last_update_id == 601)
        finally:
            await md.close()
            await fake.stop()

    # the book: exactly the resubscription's snapshot plus its delta
    assert book.bids() == [(276000, 15000), (275985, 1)]
    assert book.asks() == [(276010, 3000), (276015, 40000)]
    assert not book.needs_resync and not book.crossed
    book._check()
    bs = book.statistics()
    assert bs["snapshots"] == 4 and bs["gaps"] == 0 and bs["dropped"] == 1   # delta 503 refused
    # the stream: one disconnect and one lost delta reported, one garbled frame skipped, one restart
    assert stream_gaps == ["BTCUSDT", "BTCUSDT"] and book_gaps == [book, book]
    assert md.stats == {"messages": 10, "garbled": 1, "gaps": 2, "snapshots": 4, "resets": 1}
    assert [e.trade_id for e in events if isinstance(e, TradeTick)] == ["9dc75fca-4bdd-4773-9f78-6f5d7ab2a110"]
    assert [e.last_update_id for e in events if isinstance(e, BookDeltas)] == [
        123456789, 123456790, 1, 2, 500, 501, 503, 600, 601]
    # the wire: subscribe on each connection, unsubscribe + subscribe for the resync, pings answered
    subs = [(c, op, a) for c, op, a in fake.requests if op != "ping"]
    both = ["orderbook.1.BTCUSDT", "publicTrade.BTCUSDT"]
    assert subs == [(0, "subscribe", both), (1, "subscribe", both), (1, "unsubscribe", ["orderbook.1.BTCUSDT"]),
                    (1, "subscribe", ["orderbook.1.BTCUSDT"])]
    assert md.socket.connections == 2 and md.socket.pings >= 1 and md.socket.pongs >= 1
    assert fake.pings >= md.socket.pongs


async def test_a_refused_subscription_fails_start() -> None:
    fake = FakeBybitPublic(lambda c, t, n: [], refuse=frozenset({"orderbook.50.ETHUSDT"}))
    await fake.start()
    insts = [_inst(), _inst("ETHUSDT")]
    try:
        async with aiohttp.ClientSession() as session:
            md = BybitMarketDataStream(lambda: session, fake.url + "/v5/public/spot", insts, lambda e: None,
                                       LiveClock(), channels=("orderbook.50",))
            try:
                with pytest.raises(VenueError, match=r"Invalid topic: orderbook\.50\.ETHUSDT"):
                    await md.start()
                assert md.socket.failed == {"orderbook.50.BTCUSDT": "Invalid topic: orderbook.50.ETHUSDT",
                                            "orderbook.50.ETHUSDT": "Invalid topic: orderbook.50.ETHUSDT"}
            finally:
                await md.close()
    finally:
        await fake.stop()


async def test_no_subscription_ack_fails_start() -> None:
    """Bybit never answers the subscribe request: start() gives up after its timeout."""
    fake = FakeBybitPublic(lambda c, t, n: [])
    fake.mute_acks = True
    await fake.start()
    try:
        async with aiohttp.ClientSession() as session:
            md = BybitMarketDataStream(lambda: session, fake.url, [_inst()], lambda e: None, LiveClock(),
                                       channels=("orderbook.1",), connect_timeout_s=0.3)
            try:
                with pytest.raises(VenueError, match="not connected and subscribed"):
                    await md.start()
            finally:
                await md.close()
    finally:
        await fake.stop()


async def test_a_lost_ack_on_a_running_stream_reconnects() -> None:
    fake = FakeBybitPublic(lambda c, t, n: [])
    fake.mute_acks = True
    await fake.start()
    try:
        async with aiohttp.ClientSession() as session:
            md = BybitMarketDataStream(lambda: session, fake.url, [_inst()], lambda e: None, LiveClock(),
                                       channels=("orderbook.1",), ack_timeout_s=0.1, reconnect_max_s=Decimal("0.1"))
            try:
                await md.start(wait=False)
                # the second connection's subscribe, not only its handshake: the server counts the
                # connection before the client has sent anything on it (closing then raced it)
                await _wait_for(lambda: fake.connections >= 2
                                and len([1 for _, op, _ in fake.requests if op == "subscribe"]) >= 2)
            finally:
                await md.close()
    finally:
        await fake.stop()
    assert [c for c, op, _ in fake.requests if op == "subscribe"][:2] == [0, 1]


async def test_a_silent_connection_is_dropped_and_reopened() -> None:
    """No pong to a ping within one ping interval: the client reconnects and subscribes again."""
    snap = _d(_load("ws_orderbook_snapshot.json"))
    fake = FakeBybitPublic(lambda c, t, n: [snap], answer_pings=False)
    await fake.start()
    gaps: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            md = BybitMarketDataStream(lambda: session, fake.url, [_inst()], lambda e: None, LiveClock(),
                                       channels=("orderbook.1",), on_gap=gaps.append, ping_interval_s=0.05,
                                       reconnect_max_s=Decimal("0.1"))
            try:
                await md.start()
                await _wait_for(lambda: fake.connections >= 2 and md.socket.connected)
            finally:
                await md.close()
    finally:
        await fake.stop()
    assert md.socket.pongs == 0 and gaps[:1] == ["BTCUSDT"]
    assert [(c, op) for c, op, _ in fake.requests if op == "subscribe"][:2] == [(0, "subscribe"), (1, "subscribe")]
