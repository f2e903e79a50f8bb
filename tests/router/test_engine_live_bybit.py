"""The engine in live mode (and shadow on live market data) with ``adapter = "bybit-spot"`` against
the loopback fake Bybit (tests/venues/bybit_fake.py): REST and the private stream for orders, the
public stream for the book (``orderbook.50`` snapshot + deltas) and trades; the book resynced by
re-subscription; the engine's client ids made valid ``orderLinkId`` s; TOML errors naming the file
and the key. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from bybit_fake import API_KEY, API_SECRET, MAKER_BPS, TAKER_BPS, FakeBybit, make_config, make_instrument

from marketdata.clock import LiveClock
from marketdata.errors import ConfigError, VenueError
from marketdata.model import ClientOrderId, Order, OrderEventKind, OrderType, Side, TimeInForce
from router.engine import POV, TWAP, Engine, ParentOrder
from router.engine_config import load_engine_config_text
from router.engine_live import WIRINGS
from venues.bybit import BybitSpotVenue
from venues.bybit.adapter import wire_client_id
from venues.bybit.config import BybitCredentials
from venues.journal import Journal
from venues.signing import Secret

KEY_ENV, SECRET_ENV = "SOREX_BYBIT_TEST_KEY", "SOREX_BYBIT_TEST_SECRET"
V = "bybit-spot"
BIDS = [("60000.0", "5.000"), ("59999.9", "5.000"), ("59999.0", "10.000")]
ASKS = [("60000.1", "5.000"), ("60000.2", "5.000"), ("60001.0", "10.000")]
LINK_OK = re.compile(r"^[A-Za-z0-9_-]{1,36}$")


def _toml(fake: FakeBybit | None, mode: str = "live", extra_venue: str = "", credentials: bool = True) -> str:
    rest = fake.rest_url if fake else "http://127.0.0.1:1"
    pub = fake.ws_public_url if fake else "ws://127.0.0.1:1"
    priv = fake.ws_url if fake else "ws://127.0.0.1:1/v5/private"
    creds = f'api_key_env = "{KEY_ENV}"\napi_secret_env = "{SECRET_ENV}"\n' if credentials else ""
    return f"""
[routing]
strategy = "smart"
symbol = "BTC-USDT"
max_slippage_bps = 50
max_book_age_ms = 60000

[engine]
mode = "{mode}"
warmup = "1s"
command_timeout_s = 5
shutdown_timeout_s = 3

[venues.{V}]
adapter = "bybit-spot"
base_url = "{rest}"
ws_url = "{pub}"
ws_private_url = "{priv}"
{creds}request_timeout_s = 2
recv_window_ms = 1000
resolve_delays_s = [0.05, 0.1]
orderbook_depth = 50
{extra_venue}
[venues.{V}.fees]
maker_bps = "{MAKER_BPS}"
taker_bps = "{TAKER_BPS}"
[venues.{V}.latency]
order_rtt_ms = 5

[[venues.{V}.instruments]]
symbol = "BTC-USDT"
venue_symbol = "BTCUSDT"
base = "BTC"
quote = "USDT"
tick_size = "0.1"
lot_size = "0.001"
min_quantity = "0.001"
min_notional = "5"
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    monkeypatch.setenv(SECRET_ENV, API_SECRET)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBybit]:
    f = FakeBybit([make_instrument()], API_KEY, API_SECRET,
                  balances={"USDT": Decimal(10_000_000), "BTC": Decimal(100)})
    await f.start()
    await f.set_book("BTCUSDT", BIDS, ASKS)
    try:
        yield f
    finally:
        await f.stop()


def _journal(path: Path, kinds: list[str]) -> list[dict[str, Any]]:
    with Journal(path) as j:
        return [dict(r.payload) for r in j.read(kinds=kinds)]


def _created(fake: FakeBybit) -> list[dict[str, Any]]:
    return [json.loads(body) for m, p, _h, body in fake.requests if m == "POST" and p == "/v5/order/create"]


async def _until(cond: Any, limit_s: float = 8.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 (polling the engine state; no event to wait on)
            await asyncio.sleep(0.01)


# ------------------------------------------------------------------------------------------ live runs
async def test_live_twap_on_bybit_fills_exactly_journals_and_logs_no_secret(
        env: None, fake: FakeBybit, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    jpath = tmp_path / "bybit.sqlite"
    engine = Engine.from_toml_text(_toml(fake), journal=jpath, file="live_bybit.toml")
    assert engine.is_live and isinstance(engine._live.venues[V], BybitSpotVenue)
    # a parent id with a '.': the engine's ids then hold one, which Bybit's orderLinkId refuses
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.3", id="bb.twap",
                                  algo=TWAP(end="+2s", slices=3, urgency=1.0), limit_price="60010"))
    async with asyncio.timeout(20):
        await engine.run_live()
    engine.close()
    assert h.status == "filled", (h.status, h.reason)
    assert h.filled == Decimal("0.3")
    assert h.average_price is not None and Decimal("60000.1") <= h.average_price <= Decimal("60010")
    started = _journal(jpath, ["run_started"])[0]
    assert started["mode"] == "live" and started["venues"] == [V]
    assert started["market_data"] == {"source": "live", "format": "bybit-spot"}
    fills = _journal(jpath, ["fill"])
    assert sum(Decimal(f["quantity"]) for f in fills) == Decimal("0.3")
    assert all(f["parent_id"] == "bb.twap" and f["venue"] == V for f in fills)
    cmds = [c for c in _journal(jpath, ["order_command"]) if c["action"] == "submit"]
    assert cmds and len(cmds) == len(h.children)
    ours = {c["client_order_id"] for c in cmds}
    assert all("." in cid for cid in ours)
    # every order reached the fake under the id's valid orderLinkId, nothing else was sent
    links = {b["orderLinkId"] for b in _created(fake)}
    assert all(LINK_OK.match(x) and x.startswith("sx-") for x in links), links
    assert links == {wire_client_id(c) for c in ours}
    assert sum((fo.cum_qty for fo in fake.orders.values()), Decimal(0)) == Decimal("0.3")
    assert _journal(jpath, ["parent_finished"])[0]["status"] == "filled"
    # the book came from the public stream: subscribed, seeded by its snapshot
    assert any('"orderbook.50.BTCUSDT"' in f for f in fake.public_frames_in)
    assert engine._live.stats["snapshots"] >= 1
    # no secret anywhere in the logs of a whole session at DEBUG
    assert caplog.text and API_SECRET not in caplog.text and API_KEY not in caplog.text


async def test_live_pov_on_bybit_follows_public_trades(env: None, fake: FakeBybit, tmp_path: Path) -> None:
    jpath = tmp_path / "pov.sqlite"
    engine = Engine.from_toml_text(_toml(fake), journal=jpath)
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.05", limit_price="60010",
                                  algo=POV(end="+30s", target_rate=0.5)))
    async with asyncio.timeout(30):
        await engine.start_live()
        await _until(lambda: engine.books[V].best_ask_ticks is not None)
        while not h.is_terminal:   # market volume on the public trade stream drives the algo
            await fake.trade("BTCUSDT", "60000.1", "0.040", Side.BUY)
            await asyncio.sleep(0.2)
        await engine.stop_live()
    engine.close()
    assert h.status == "filled" and h.filled == Decimal("0.05"), (h.status, h.reason)
    assert engine._last_trade_common is not None
    assert sum(Decimal(f["quantity"]) for f in _journal(jpath, ["fill"])) == Decimal("0.05")
    assert sum((fo.cum_qty for fo in fake.orders.values()), Decimal(0)) == Decimal("0.05")


async def test_shadow_on_bybit_market_data_sends_nothing(fake: FakeBybit, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # no credentials in the environment: shadow mode needs none (nothing signed is ever sent)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    jpath = tmp_path / "shadow.sqlite"
    engine = Engine.from_toml_text(_toml(fake, mode="shadow"), journal=jpath)
    assert engine.is_live and engine.mode == "shadow" and engine._live.venues == {}
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.2",
                                  algo=TWAP(end="+1500ms", slices=2, urgency=1.0), limit_price="60010"))
    inst = make_instrument()
    async with asyncio.timeout(15):
        await engine.start_live()
        await _until(lambda: engine.books[V].best_ask_ticks is not None)
        await fake.set_book("BTCUSDT", BIDS, [("60000.5", "5.000"), ASKS[2]])   # a delta: new top
        await fake.trade("BTCUSDT", "60000.5", "0.010", Side.BUY)
        await _until(lambda: engine.books[V].best_ask_ticks == inst.price_to_ticks("60000.5")
                     and engine._last_trade_common is not None)
        await h
        await engine.stop_live()
    engine.close()
    assert h.is_terminal and h.filled == 0
    assert _journal(jpath, ["order_command"]), "shadow mode journals the orders it would send"
    assert _created(fake) == [] and fake.logins == 0, "shadow mode must not send or sign anything"
    assert not any(p.startswith("/v5/order") or p.startswith("/v5/account") for _m, p, _h, _b in fake.requests)
    events = _journal(jpath, ["order_event"])
    assert events and all("shadow mode" in (e["reason"] or "") for e in events)


async def test_bybit_book_resyncs_by_resubscribing(fake: FakeBybit, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost delta (gap on ``u``) and a book that asks for a resync on its own both get a fresh
    snapshot by re-subscription, never a REST snapshot; the book ends exactly on the venue's."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    engine = Engine.from_toml_text(_toml(fake, mode="shadow"))
    inst = make_instrument()
    book = engine.books[V]
    async with asyncio.timeout(15):
        await engine.start_live()
        await _until(lambda: not book.needs_resync and book.best_bid_ticks == inst.price_to_ticks("60000.0"))
        stream = engine._live.streams[V]
        # 1. a delta lost on the way: the next one skips a u
        fake.lose_next_delta = True
        new_asks = [("60000.3", "1.000"), ASKS[2]]
        await fake.set_book("BTCUSDT", BIDS, new_asks)                             # lost
        await fake.set_book("BTCUSDT", [("60000.0", "7.000"), *BIDS[1:]], new_asks)   # u skips one
        await _until(lambda: stream.stats["gaps"] >= 1)
        await _until(lambda: not book.needs_resync and book.best_ask_ticks == inst.price_to_ticks("60000.3"))
        assert book.bids()[0] == (inst.price_to_ticks("60000.0"), inst.qty_to_lots("7.000"))
        assert book.asks() == [(inst.price_to_ticks(p), inst.qty_to_lots(q)) for p, q in new_asks]
        assert any('"op": "unsubscribe"' in f for f in fake.public_frames_in)
        # 2. the book itself asks (e.g. crossed): the adapter's path re-subscribes again
        unsubs = sum('"op": "unsubscribe"' in f for f in fake.public_frames_in)
        book.request_resync()
        assert book.needs_resync and book.best_bid_ticks is None
        await _until(lambda: not book.needs_resync)
        assert sum('"op": "unsubscribe"' in f for f in fake.public_frames_in) == unsubs + 1
        assert book.best_ask_ticks == inst.price_to_ticks("60000.3")
        # 3. the public connection drops: the reconnection's subscription brings a snapshot
        gaps = stream.stats["gaps"]
        await fake.drop_public_streams()
        await _until(lambda: stream.stats["gaps"] > gaps)
        await _until(lambda: not book.needs_resync, 10.0)
        assert book.best_ask_ticks == inst.price_to_ticks("60000.3")
        assert book.bids()[0] == (inst.price_to_ticks("60000.0"), inst.qty_to_lots("7.000"))
        book._check()
        await engine.stop_live()
    engine.close()
    assert not any(p == "/v5/market/orderbook" for _m, p, _h, _b in fake.requests)
    assert set(WIRINGS) == {"binance-spot", "bybit-spot"}


async def test_live_start_refuses_orders_an_earlier_run_left_with_mapped_ids(
        env: None, fake: FakeBybit, tmp_path: Path) -> None:
    """An earlier run's order whose id needed mapping is still recognised as sorex's at start."""
    inst = make_instrument()
    earlier = BybitSpotVenue(make_config(fake, inst), LiveClock(), map_client_ids=True,
                             credentials=BybitCredentials(Secret(API_KEY), Secret(API_SECRET)))
    await earlier.connect()
    cid = ClientOrderId("sx-Lold0001-bb.twap-1")
    await earlier.submit(Order(client_order_id=cid, venue=inst.venue, symbol=inst.symbol, side=Side.BUY,
                               order_type=OrderType.LIMIT, lots=inst.qty_to_lots("0.010"),
                               price_ticks=inst.price_to_ticks("59000.0"), time_in_force=TimeInForce.GTC))
    await earlier.close()
    assert wire_client_id(cid) in fake.orders
    engine = Engine.from_toml_text(_toml(fake), journal=tmp_path / "j.sqlite")
    with pytest.raises(VenueError, match="left open by an earlier sorex run"):
        async with asyncio.timeout(10):
            await engine.start_live()
    await engine.stop_live()
    engine.close()
    assert len(_created(fake)) == 1


# ------------------------------------------------------------------------------------------ client ids
def test_wire_client_id_is_valid_deterministic_and_keeps_the_prefix() -> None:
    assert wire_client_id("sx-L1abcde-P1-7") == "sx-L1abcde-P1-7"   # already valid: unchanged
    for cid in ("sx-L1abcde-bb.twap-1", "sx-r1-a.b:c/d-99999999999", "x" * 40, "a.b"):
        w = wire_client_id(cid)
        assert LINK_OK.match(w), (cid, w)
        assert w == wire_client_id(cid)
    assert wire_client_id("sx-L1abcde-bb.twap-1").startswith("sx-")
    assert wire_client_id("sx-L1abcde-bb.twap-1") != wire_client_id("sx-L1abcde-bb.twap-2")


async def test_mapped_ids_round_trip_through_the_adapter(fake: FakeBybit) -> None:
    inst = make_instrument()
    venue = BybitSpotVenue(make_config(fake, inst), LiveClock(), map_client_ids=True,
                           credentials=BybitCredentials(Secret(API_KEY), Secret(API_SECRET)))
    events: list[Any] = []
    venue.set_event_handler(events.append)
    await venue.connect()
    try:
        resting, taker = ClientOrderId("sx-L1-p.1-1"), ClientOrderId("sx-L1-p.1-2")
        await venue.submit(Order(client_order_id=resting, venue=inst.venue, symbol=inst.symbol, side=Side.BUY,
                                 order_type=OrderType.LIMIT, lots=inst.qty_to_lots("0.010"),
                                 price_ticks=inst.price_to_ticks("59000.0"), time_in_force=TimeInForce.GTC))
        await venue.submit(Order(client_order_id=taker, venue=inst.venue, symbol=inst.symbol, side=Side.BUY,
                                 order_type=OrderType.LIMIT, lots=inst.qty_to_lots("0.010"),
                                 price_ticks=inst.price_to_ticks("60000.1"), time_in_force=TimeInForce.IOC))
        assert [r.client_order_id for r in await venue.open_orders("BTC-USDT")] == [resting]
        status = await venue.order_status(taker)
        assert status.client_order_id == taker and status.filled_lots == inst.qty_to_lots("0.010")
        await venue.cancel(resting)
        await _until(lambda: any(e.kind is OrderEventKind.CANCELED for e in events))
        assert {e.client_order_id for e in events} == {resting, taker}
        fills = [e.fill for e in events if e.fill is not None]
        assert fills and all(f.client_order_id == taker for f in fills)
        assert {fo.cid for fo in fake.orders.values()} == {wire_client_id(resting), wire_client_id(taker)}
    finally:
        await venue.close()


# ------------------------------------------------------------------------------------------ TOML errors
def test_bybit_live_config_errors_name_file_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    base = _toml(None)
    cfg = load_engine_config_text(base, file="live_bybit.toml")
    st = cfg.live[V]
    assert st.adapter == "bybit-spot" and st.bybit.ws_private_url == "ws://127.0.0.1:1/v5/private"
    assert st.md_ws_url == "ws://127.0.0.1:1" and st.orderbook_depth == 50
    assert st.bybit.api_key_env == KEY_ENV and st.explicit_credentials
    with pytest.raises(TypeError):
        _ = st.binance
    # defaults: Bybit's own env-var names, the public host
    cfg = load_engine_config_text(_toml(None, credentials=False).replace('ws_url = "ws://127.0.0.1:1"\n', ""))
    assert (cfg.live[V].bybit.api_key_env, cfg.live[V].bybit.api_secret_env) == ("BYBIT_API_KEY", "BYBIT_API_SECRET")
    assert cfg.live[V].md_ws_url == "wss://stream.bybit.com"
    # an unknown adapter
    with pytest.raises(ConfigError, match=r"live_bybit\.toml.*venues\.bybit-spot\.adapter.*"
                                          r"allowed: binance-spot, bybit-spot"):
        load_engine_config_text(base.replace('adapter = "bybit-spot"', 'adapter = "bybit-perp"'),
                                file="live_bybit.toml")
    # the environment variable named is not set: the variable, the file and the key are named
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(SECRET_ENV, API_SECRET)
    with pytest.raises(ConfigError, match=rf"live_bybit\.toml.*venues\.bybit-spot\.api_key_env.*{KEY_ENV}") as ei:
        Engine.from_toml_text(base, file="live_bybit.toml")
    assert API_SECRET not in str(ei.value)
    # an env-var name that looks like the secret itself is not echoed
    with pytest.raises(ConfigError, match=r"venues\.bybit-spot\.api_secret_env.*redacted") as ei:
        load_engine_config_text(base.replace(f'api_secret_env = "{SECRET_ENV}"', f'api_secret_env = "{API_SECRET}x"'),
                                file="live_bybit.toml")
    assert API_SECRET not in str(ei.value)
    # literal credentials are refused
    with pytest.raises(ConfigError, match=r"venues\.bybit-spot\.api_secret.*literal credentials"):
        load_engine_config_text(base.replace("[venues.bybit-spot.fees]", 'api_secret = "x"\n[venues.bybit-spot.fees]'))
    # a Binance-only key on a Bybit venue, and the other way round
    with pytest.raises(ConfigError, match=r"live_bybit\.toml.*venues\.bybit-spot\.depth_snapshot_limit.*"
                                          r"binance-spot adapter.*allowed:.*orderbook_depth"):
        load_engine_config_text(base.replace("orderbook_depth = 50", "depth_snapshot_limit = 100"),
                                file="live_bybit.toml")
    # bad values of the Bybit keys
    with pytest.raises(ConfigError, match=r"venues\.bybit-spot\.orderbook_depth.*allowed: 1, 50, 200, 1000"):
        load_engine_config_text(base.replace("orderbook_depth = 50", "orderbook_depth = 25"))
    with pytest.raises(ConfigError, match=r"venues\.bybit-spot\.ws_url"):
        load_engine_config_text(base.replace('ws_url = "ws://127.0.0.1:1"', 'ws_url = "http://127.0.0.1:1"'))
    with pytest.raises(ConfigError, match=r"venues\.bybit-spot\.check_filters.*true, false"):
        load_engine_config_text(base.replace("orderbook_depth = 50", 'orderbook_depth = 50\ncheck_filters = "no"'))
    with pytest.raises(ConfigError, match=r"venues\.bybit-spot\.account_type.*UNIFIED"):
        load_engine_config_text(base.replace("orderbook_depth = 50", 'orderbook_depth = 50\naccount_type = "SPOT"'))
    with pytest.raises(ConfigError, match=r"venues\.bybit-spot\.instruments\[0\]\.tick_size"):
        load_engine_config_text(base.replace('tick_size = "0.1"', 'tick_size = "abc"'))
    # a typo is an unknown key of the venue table
    with pytest.raises(ConfigError, match=r"live_bybit\.toml.*venues\.bybit-spot\.ws_privat_url.*unknown key"):
        load_engine_config_text(base.replace("ws_private_url", "ws_privat_url"), file="live_bybit.toml")


def test_binance_keys_keep_working_beside_bybit() -> None:
    """A Binance live table still parses as before (the adapter-neutral field and the old name)."""
    text = _toml(None).replace('adapter = "bybit-spot"', 'adapter = "binance-spot"').replace(
        'ws_private_url = "ws://127.0.0.1:1/v5/private"\n', "").replace(
        "orderbook_depth = 50", "depth_snapshot_limit = 100\nuser_stream = false")
    st = load_engine_config_text(text).live[V]
    assert st.adapter == "binance-spot" and st.binance is st.adapter_config
    assert st.depth_snapshot_limit == 100 and st.binance.user_stream is False
    with pytest.raises(ConfigError, match=r"venues\.bybit-spot\.orderbook_depth.*bybit-spot adapter"):
        load_engine_config_text(text.replace("depth_snapshot_limit = 100", "orderbook_depth = 50"))


def test_example_live_bybit_toml_loads_and_names_env_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "live_bybit.toml"
    cfg = load_engine_config_text(path.read_text(), file=str(path))
    st = cfg.live[V]
    assert cfg.engine.mode == "live" and st.adapter == "bybit-spot"
    assert (st.bybit.api_key_env, st.bybit.api_secret_env) == ("BYBIT_API_KEY", "BYBIT_API_SECRET")
    assert [p.id for p in cfg.parents] == ["twap.bybit"]
    # without the variables the engine refuses to build, naming them and the file
    monkeypatch.delenv("BYBIT_API_KEY", raising=False)
    monkeypatch.delenv("BYBIT_API_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"live_bybit\.toml.*BYBIT_API_KEY"):
        Engine(cfg, journal=tmp_path / "j.sqlite")   # not the example's journal in the working directory
