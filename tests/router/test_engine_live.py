"""The engine in live mode (and shadow on live market data) against the loopback fake Binance:
market data from the fake's WebSocket (depth diffs + REST snapshot, trades), orders through the
real adapter, journal as in simulation, UNKNOWN after a submit timeout resolved by status query,
kill switch cancelling working orders at the venue. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from binance_fake import FakeBinance
from binance_harness import API_KEY, API_SECRET, MAKER_BPS, TAKER_BPS, make_instrument

from marketdata.errors import ConfigError, VenueError
from marketdata.model import OrderStatus, Side
from router.engine import TWAP, Engine, Iceberg, ParentOrder
from router.engine_config import load_engine_config_text
from venues.journal import Journal

KEY_ENV, SECRET_ENV = "SOREX_LIVE_TEST_KEY", "SOREX_LIVE_TEST_SECRET"
BIDS = [("60000.0", "5.000"), ("59999.9", "5.000"), ("59999.0", "10.000")]
ASKS = [("60000.1", "5.000"), ("60000.2", "5.000"), ("60001.0", "10.000")]
ORDER_PATHS = {"/api/v3/order", "/api/v3/order/cancelReplace"}


def _toml(fake: FakeBinance, mode: str = "live", extra_engine: str = "", extra_venue: str = "") -> str:
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
{extra_engine}

[venues.binance-spot]
adapter = "binance-spot"
base_url = "{fake.rest_url}"
ws_url = "{fake.ws_url}"
api_key_env = "{KEY_ENV}"
api_secret_env = "{SECRET_ENV}"
request_timeout_s = 2
recv_window_ms = 1000
resolve_delays_s = [0.05, 0.1]
{extra_venue}
[venues.binance-spot.fees]
maker_bps = "{MAKER_BPS}"
taker_bps = "{TAKER_BPS}"
[venues.binance-spot.latency]
order_rtt_ms = 5

[[venues.binance-spot.instruments]]
symbol = "BTC-USDT"
venue_symbol = "BTCUSDT"
base = "BTC"
quote = "USDT"
tick_size = "0.1"
lot_size = "0.001"
min_quantity = "0.001"
min_notional = "5"
"""


def _journal(path: Path, kinds: list[str]) -> list[dict[str, Any]]:
    with Journal(path) as j:
        return [dict(r.payload) for r in j.read(kinds=kinds)]


def _order_requests(fake: FakeBinance) -> list[tuple[str, str, str]]:
    return [r for r in fake.requests if r[1] in ORDER_PATHS]


async def _until(cond: Any, limit_s: float = 8.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 (polling the engine state; no event to wait on)
            await asyncio.sleep(0.01)


async def test_live_twap_fills_exactly_and_journals_like_simulation(env: None, fake: FakeBinance,
                                                                     tmp_path: Path) -> None:
    jpath = tmp_path / "live.sqlite"
    engine = Engine.from_toml_text(_toml(fake), journal=jpath)
    assert engine.is_live and engine.mode == "live"
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.3",
                                  algo=TWAP(end="+2s", slices=3, urgency=1.0), limit_price="60010"))
    async with asyncio.timeout(15):
        await engine.run_live()
    engine.close()
    assert h.status == "filled", (h.status, h.reason)
    assert h.filled == Decimal("0.3")
    assert h.average_price is not None and Decimal("60000.1") <= h.average_price <= Decimal("60010")
    # journal: the same kinds and shapes as a simulated run
    started = _journal(jpath, ["run_started"])[0]
    assert started["mode"] == "live" and started["venues"] == ["binance-spot"]
    assert started["market_data"]["source"] == "live"
    fills = _journal(jpath, ["fill"])
    assert sum(Decimal(f["quantity"]) for f in fills) == Decimal("0.3")
    assert all(f["parent_id"] == h.id and f["venue"] == "binance-spot" for f in fills)
    cmds = [c for c in _journal(jpath, ["order_command"]) if c["action"] == "submit"]
    assert cmds and len(cmds) == len(h.children)
    # every order the engine journaled reached the fake with the same client id, nothing else did
    sent = {q.split("newClientOrderId=")[1].split("&")[0] for m, p, q in _order_requests(fake) if m == "POST"}
    assert sent == {c["client_order_id"] for c in cmds}
    assert _journal(jpath, ["routing_decision"])
    finished = _journal(jpath, ["parent_finished"])
    assert [(f["parent_id"], f["status"], f["filled"]) for f in finished] == [(h.id, "filled", "0.300")]
    # the fake's ledger agrees: 0.3 BTC bought
    assert fake.sim._free["BTC"] + fake.sim._locked.get("BTC", Decimal(0)) == Decimal(100) + Decimal("0.3")


async def test_shadow_on_live_market_data_sends_nothing(fake: FakeBinance, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # no credentials in the environment: shadow mode needs none (nothing signed is ever sent)
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    jpath = tmp_path / "shadow.sqlite"
    engine = Engine.from_toml_text(_toml(fake, mode="shadow"), journal=jpath)
    assert engine.is_live and engine.mode == "shadow"
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.2",
                                  algo=TWAP(end="+1500ms", slices=2, urgency=1.0), limit_price="60010"))
    async with asyncio.timeout(15):
        await engine.start_live()
        # live market data moves while it works: a new top arrives as a depth diff
        await _until(lambda: engine.books["binance-spot"].best_ask_ticks is not None)
        await fake.publish_book("BTCUSDT", BIDS, [("60000.5", "5.000"), ASKS[2]])
        await fake.publish_trade("BTCUSDT", "60000.5", "0.010", Side.BUY)
        await h
        await engine.stop_live()
    engine.close()
    assert h.is_terminal and h.filled == 0
    cmds = _journal(jpath, ["order_command"])
    assert cmds, "shadow mode journals the orders it would send"
    assert _order_requests(fake) == [], "shadow mode must not send any order"
    assert not any(p.startswith("/api/v3/userDataStream") or p == "/api/v3/account" for _, p, _ in fake.requests)
    assert ("GET", "/api/v3/depth") in {(m, p) for m, p, _ in fake.requests}
    assert engine.books["binance-spot"].best_ask_ticks == make_instrument().price_to_ticks("60000.5")
    assert engine._last_trade_common is not None
    events = _journal(jpath, ["order_event"])
    assert events and all("shadow mode" in (e["reason"] or "") for e in events)


async def test_submit_timeout_is_unknown_then_resolved(env: None, fake: FakeBinance, tmp_path: Path) -> None:
    jpath = tmp_path / "timeout.sqlite"
    # REST answers only (no user stream), so nothing but the status query can tell what happened
    engine = Engine.from_toml_text(_toml(fake, extra_venue="user_stream = false"), journal=jpath)
    # the first order request is answered after 2.5 s: the adapter's 2 s timeout fires first
    fake.fault("POST", "/api/v3/order", "slow", 2.5)
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.1",
                                  algo=TWAP(end="+4s", slices=1, urgency=1.0, sweep_lead="1s"), limit_price="60010"))
    async with asyncio.timeout(15):
        await engine.run_live()
    engine.close()
    histories = {c["client_order_id"]: [s for _, s in engine.om.order(c["client_order_id"]).history]
                 for c in h.children}
    unknown = [cid for cid, st in histories.items() if OrderStatus.UNKNOWN in st]
    assert len(unknown) == 1, histories            # the slow request, and only it
    statuses = histories[unknown[0]]
    # resolved by the status query (or the user stream) into what the venue did with it
    assert statuses[-1].is_terminal and statuses[-1] is not OrderStatus.REJECTED, statuses
    assert engine.venues == {} and engine._live.venues["binance-spot"].stats["resolved"] >= 1
    assert h.status == "filled" and h.filled == Decimal("0.1"), (h.reason, histories)
    assert sum(Decimal(f["quantity"]) for f in _journal(jpath, ["fill"])) == Decimal("0.1")
    # the unanswered submit is a timeout for the venue's health (it used to be counted nowhere, so
    # a live half-open probe lost this way could only wait out its slot), later resolved and acked
    health = engine.router.health("binance-spot")
    assert health.timeouts == 1, (health.timeouts, health.rejects, health.successes)
    assert health.consecutive_failures == 0 and health.successes >= 1
    assert any(p == "/api/v3/order" and m == "GET" for m, p, _ in fake.requests), "status query made"


async def test_without_the_user_stream_resting_fills_arrive_by_polling(env: None, fake: FakeBinance,
                                                                        tmp_path: Path) -> None:
    """user_stream = false: a passive (synthetic) iceberg's slices rest at the venue; the public
    trades that fill them reach the engine only through the adapter's REST poll, and the parent
    completes."""
    jpath = tmp_path / "poll.sqlite"
    engine = Engine.from_toml_text(_toml(fake, extra_venue="user_stream = false\npoll_interval_s = 0.1"),
                                   journal=jpath)
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.2", limit_price="59990",
                                  algo=Iceberg(end="+60s", display="0.1", native=False)))
    async with asyncio.timeout(20):
        await engine.start_live()
        for _ in range(2):   # each slice: wait until it rests, then a trade through its price fills it
            await _until(lambda: any(fo.status == "NEW" for fo in fake.orders.values()))
            await fake.trade("BTCUSDT", "59989.0", "1.000", Side.SELL)
        await _until(lambda: h.is_terminal)
        await engine.stop_live()
    engine.close()
    assert h.status == "filled" and h.filled == Decimal("0.2"), (h.status, h.reason)
    assert h.average_price == Decimal("59990")
    live = engine._live.venues["binance-spot"]
    assert live.user_stream is None and live.stats["polls"] >= 1 and live.stats["recovered_fills"] >= 2
    assert sum(Decimal(f["quantity"]) for f in _journal(jpath, ["fill"])) == Decimal("0.2")
    assert not any(p.startswith("/api/v3/userDataStream") for _, p, _ in fake.requests)


async def test_kill_switch_cancels_working_orders_at_the_venue(env: None, fake: FakeBinance,
                                                               tmp_path: Path) -> None:
    jpath = tmp_path / "kill.sqlite"
    engine = Engine.from_toml_text(_toml(fake), journal=jpath)
    # a passive iceberg below the market: its slice rests at the venue
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="1", limit_price="59990",
                                  algo=Iceberg(end="+60s", display="0.1")))
    async with asyncio.timeout(15):
        await engine.start_live()
        await _until(lambda: any(fo.status == "NEW" for fo in fake.orders.values()))
        engine.kill("test kill")
        await _until(lambda: h.is_terminal)
        await _until(lambda: all(fo.status != "NEW" for fo in fake.orders.values()))
        await engine.stop_live()
    engine.close()
    assert h.status == "killed"
    assert fake.orders and all(fo.status == "CANCELED" for fo in fake.orders.values())
    assert any(m == "DELETE" for m, _, _ in _order_requests(fake))
    assert not engine.om.open_orders()
    with pytest.raises(Exception, match="kill switch"):
        engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.1", limit_price="59990",
                                  algo=Iceberg(end="+60s", display="0.1")))


async def test_gap_in_depth_chain_resyncs_from_snapshot(fake: FakeBinance, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine.from_toml_text(_toml(fake, mode="shadow"))
    async with asyncio.timeout(10):
        await engine.start_live()
        book = engine.books["binance-spot"]
        await _until(lambda: book.best_bid_ticks is not None)
        snaps = engine._live.stats["snapshots"]
        fake.skip_depth_ids("BTCUSDT", 5)    # lost diffs
        await fake.publish_book("BTCUSDT", [("60000.3", "1.000"), *BIDS], [("60000.4", "1.000"), ASKS[2]])
        await _until(lambda: engine._live.stats["snapshots"] > snaps and not book.needs_resync)
        inst = make_instrument()
        assert book.best_bid_ticks == inst.price_to_ticks("60000.3")
        assert book.best_ask_ticks == inst.price_to_ticks("60000.4")
        book._check()
        await engine.stop_live()


def test_live_config_errors(fake_urls: None = None) -> None:
    base = _toml_static()
    # a venue with no adapter in live mode
    with pytest.raises(ConfigError, match=r"venues\.binance-usdm\.adapter.*allowed: binance-spot"):
        Engine.from_toml_text(base + "\n[venues.binance-usdm]\n", file="live.toml")
    # an unknown adapter
    with pytest.raises(ConfigError, match=r"live\.toml.*venues\.binance-spot\.adapter.*allowed: binance-spot"):
        load_engine_config_text(base.replace('adapter = "binance-spot"', 'adapter = "ftx"'), file="live.toml")
    # missing credentials: the env var is named, no secret is shown
    with pytest.raises(ConfigError, match="SOREX_LIVE_TEST_KEY"):
        Engine.from_toml_text(base, file="live.toml")
    # literal credentials are refused
    with pytest.raises(ConfigError, match="literal credentials"):
        load_engine_config_text(base.replace("[venues.binance-spot.fees]", 'api_key = "x"\n[venues.binance-spot.fees]'))
    # a bad instrument key names where it is
    with pytest.raises(ConfigError, match=r"venues\.binance-spot\.instruments\[0\]"):
        load_engine_config_text(base.replace('tick_size = "0.1"', 'tick_size = "abc"'))
    # simulation is untouched by the adapter keys
    cfg = load_engine_config_text(base.replace('mode = "live"', 'mode = "simulate"'))
    assert cfg.live["binance-spot"].binance.rest_url == "http://127.0.0.1:1"


def _toml_static() -> str:
    class _F:
        rest_url = "http://127.0.0.1:1"
        ws_url = "ws://127.0.0.1:1"
    return _toml(_F())  # type: ignore[arg-type]


def test_run_blocking_refuses_inside_a_loop(env: None) -> None:
    engine = Engine.from_toml_text(_toml_static())

    async def inner() -> None:
        with pytest.raises(ConfigError, match="run_live"):
            engine.run()
    asyncio.run(inner())


async def test_cancelled_run_cancels_working_orders_first(env: None, fake: FakeBinance, tmp_path: Path) -> None:
    """What Ctrl-C does to `sorex run` (asyncio.Runner cancels the main task): working orders are
    cancelled at the venue and the parents journaled as finished before run_live() ends."""
    jpath = tmp_path / "cancelled.sqlite"
    engine = Engine.from_toml_text(_toml(fake), journal=jpath)
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="1", limit_price="59990",
                                  algo=Iceberg(end="+60s", display="0.1")))
    task = asyncio.ensure_future(engine.run_live())
    await _until(lambda: any(fo.status == "NEW" for fo in fake.orders.values()))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await task
    engine.close()
    assert fake.orders and all(fo.status == "CANCELED" for fo in fake.orders.values())
    assert h.status == "cancelled" and h.reason and "interrupted" in h.reason
    finished = _journal(jpath, ["parent_finished"])
    assert [f["status"] for f in finished] == ["cancelled"]


def test_sorex_run_cli_in_live_mode(env: None, tmp_path: Path) -> None:
    """`sorex run` on a live config: its own (uvloop) event loop, until every parent is terminal,
    journal + TCA report as in simulation. The fake runs on a loop in another thread."""
    import json
    import threading

    from router.cli import main

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    inst = make_instrument()
    f = FakeBinance([inst], API_KEY, API_SECRET, balances={"USDT": Decimal(10_000_000), "BTC": Decimal(100)},
                    maker_bps=MAKER_BPS, taker_bps=TAKER_BPS)

    def on_fake(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    try:
        on_fake(f.start())
        on_fake(f.publish_book("BTCUSDT", BIDS, ASKS))
        cfg = tmp_path / "live.toml"
        cfg.write_text(_toml(f) + """
[[parents]]
id = "live-twap"
symbol = "BTC-USDT"
side = "sell"
quantity = "0.2"
limit_price = "59990"
algo = "twap"
[parents.params]
end = "+1500ms"
slices = 2
urgency = 1.0
""")
        out = tmp_path / "out"
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(["run", str(cfg), "--json", "--quiet", "--out", str(out)])
        assert rc == 0
        summary = json.loads(buf.getvalue())
        assert summary["mode"] == "live"
        p = summary["parents"][0]
        assert p["status"] == "filled" and Decimal(p["filled"]) == Decimal("0.2")
        assert (out / "journal.sqlite").exists() and summary["tca"] and Path(summary["tca"]["json"]).exists()
        fills = _journal(out / "journal.sqlite", ["fill"])
        assert sum(Decimal(x["quantity"]) for x in fills) == Decimal("0.2")
    finally:
        on_fake(f.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


# ---------------------------------------------------------------- orders left open by an earlier run
LEFT_OVER = "sx-Lold0001-P1-3"      # a sorex id, as an earlier (crashed) run would have left it
BY_HAND = "web_manual_1"            # an order placed on the same account by someone else


async def _leave_orders_open(fake: FakeBinance) -> None:
    """Rest two buy orders below the market on the fake through a separate adapter session, then
    close that session (what a crashed run leaves behind)."""
    from binance_harness import credentials, make_config

    from marketdata.clock import LiveClock
    from marketdata.model import ClientOrderId, Order, OrderType, Symbol, VenueId
    from venues.binance import BinanceSpotVenue
    inst = make_instrument()
    old = BinanceSpotVenue(make_config(fake, inst), LiveClock(), credentials=credentials())
    old.set_event_handler(lambda _ev: None)
    await old.connect()
    try:
        for cid, px in ((LEFT_OVER, "59000.0"), (BY_HAND, "58000.0")):
            await old.submit(Order(ClientOrderId(cid), VenueId("binance-spot"), Symbol("BTC-USDT"), Side.BUY,
                                   OrderType.LIMIT, inst.qty_to_lots("0.05"), inst.price_to_ticks(px)))
        await _until(lambda: all(fake.orders.get(c) is not None and fake.orders[c].status == "NEW"
                                 for c in (LEFT_OVER, BY_HAND)))
    finally:
        await old.close()


async def _run_after_left_over(fake: FakeBinance, jpath: Path, policy: str, qty: str) -> tuple[Engine, Any]:
    """Leave the two orders open, then run a TWAP buying ``qty`` with ``open_orders_at_start = policy``."""
    await _leave_orders_open(fake)
    engine = Engine.from_toml_text(_toml(fake, extra_venue=f'open_orders_at_start = "{policy}"'), journal=jpath)
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity=qty,
                                  algo=TWAP(end="+2s", slices=2, urgency=1.0), limit_price="60010"))
    async with asyncio.timeout(15):
        await engine.run_live()
    engine.close()
    assert h.status == "filled" and h.filled == Decimal(qty)
    return engine, h


async def test_open_orders_of_an_earlier_run_refuse_the_start(env: None, fake: FakeBinance, tmp_path: Path) -> None:
    """Default policy: a live start that finds sorex orders already working refuses to run,
    names them, sends nothing and ends the parents with the reason; the orders stay as they were."""
    await _leave_orders_open(fake)
    before = len(_order_requests(fake))
    jpath = tmp_path / "refused.sqlite"
    engine = Engine.from_toml_text(_toml(fake), journal=jpath)
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.3",
                                  algo=TWAP(end="+2s", slices=3, urgency=1.0), limit_price="60010"))
    with pytest.raises(VenueError, match=rf"1 order\(s\) left open by an earlier sorex run.*{LEFT_OVER} buy 0\.050 "
                                         r"@ 59000\.0.*open_orders_at_start = \"cancel\""):
        async with asyncio.timeout(15):
            await engine.run_live()
    engine.close()
    assert len(_order_requests(fake)) == before           # not one order request from this engine
    assert fake.orders[LEFT_OVER].status == "NEW" and fake.orders[BY_HAND].status == "NEW"
    assert h.is_terminal and h.status == "cancelled" and "live start failed" in (h.reason or "")
    rows = _journal(jpath, ["open_orders_at_start"])
    assert [(r["policy"], r["action"]) for r in rows] == [("refuse", "refused")]
    assert [o["client_order_id"] for o in rows[0]["sorex"]] == [LEFT_OVER]
    assert [o["client_order_id"] for o in rows[0]["other"]] == [BY_HAND]
    assert rows[0]["sorex"][0] == {"client_order_id": LEFT_OVER, "side": "buy", "quantity": "0.050",
                                   "filled": "0.000", "price": "59000.0", "status": "new"}


async def test_open_orders_of_an_earlier_run_cancelled_then_run(env: None, fake: FakeBinance, tmp_path: Path) -> None:
    """``open_orders_at_start = "cancel"``: the earlier run's order is cancelled (and confirmed
    gone) before the first child; the order placed by hand is never touched; the run then fills
    exactly, its own client ids carry this run's unique id, and the cancel's event is journaled
    as a foreign order's, not as garbled input."""
    jpath = tmp_path / "cancelled_at_start.sqlite"
    engine, _h = await _run_after_left_over(fake, jpath, "cancel", "0.3")
    assert re.fullmatch(r"L[0-9a-z]{7}", engine.run_id) and engine.run_id != "Lold0001"
    assert fake.orders[LEFT_OVER].status == "CANCELED"
    assert fake.orders[BY_HAND].status == "NEW"
    reqs = _order_requests(fake)
    old = [i for i, (m, _p, q) in enumerate(reqs) if m == "DELETE" and f"origClientOrderId={LEFT_OVER}&" in q]
    assert len(old) == 1
    assert not any(BY_HAND in q for m, _p, q in reqs if m == "DELETE")
    # the earlier run's order was cancelled before this run's first new order went out
    first_post = next(i for i, (m, _p, q) in enumerate(reqs) if m == "POST" and f"sx-{engine.run_id}-" in q)
    assert old[0] < first_post
    rows = _journal(jpath, ["open_orders_at_start"])
    assert [(r["policy"], r["action"]) for r in rows] == [("cancel", "cancelled"), ("cancel", "cancel_confirmed")]
    foreign = _journal(jpath, ["foreign_order_event"])
    assert foreign and {f["client_order_id"] for f in foreign} == {LEFT_OVER}
    assert not _journal(jpath, ["garbled_event"])
    cmds = [c for c in _journal(jpath, ["order_command"]) if c["action"] == "submit"]
    assert cmds and all(c["client_order_id"].startswith(f"sx-{engine.run_id}-") for c in cmds)


def test_open_orders_at_start_config_error() -> None:
    with pytest.raises(ConfigError, match=r"live\.toml.*venues\.binance-spot\.open_orders_at_start.*"
                                          r"allowed: refuse, cancel, keep"):
        load_engine_config_text(_toml_static().replace('recv_window_ms = 1000',
                                                       'recv_window_ms = 1000\nopen_orders_at_start = "kill"'),
                                file="live.toml")
    cfg = load_engine_config_text(_toml_static())
    assert cfg.live["binance-spot"].open_orders_at_start == "refuse"


async def test_open_orders_of_an_earlier_run_kept(env: None, fake: FakeBinance, tmp_path: Path) -> None:
    """``keep``: the start does not look; the earlier order keeps working, untouched, and this run's
    own ids cannot collide with it (unique live run id)."""
    jpath = tmp_path / "kept.sqlite"
    await _run_after_left_over(fake, jpath, "keep", "0.2")
    assert fake.orders[LEFT_OVER].status == "NEW" and fake.orders[BY_HAND].status == "NEW"
    assert not _journal(jpath, ["open_orders_at_start"])
    assert not any(LEFT_OVER in q for m, _p, q in _order_requests(fake) if m == "DELETE")


@pytest.mark.parametrize(("slow_first_s", "transport"), [(None, "stream"), (1.0, "stream"), (None, "poll"),
                                                         (1.0, "poll")])
async def test_live_router_is_capped_by_the_venue_balance(env: None, tmp_path: Path,
                                                          slow_first_s: float | None, transport: str) -> None:
    """9 000 USDT buys at most ~0.149 BTC at 60 000: the router reads the venue's balance (read at
    connect, then pushed by the user stream after each fill, less what our open orders hold) and
    sends no order the venue would refuse for funds; the parent ends short, saying why.
    ``slow_first_s``: the first order's request takes that long, so the second slice is routed
    while the first is in flight and the venue's balance does not show it yet. ``transport``
    ``poll``: no user stream; the account and the resting orders are polled over REST."""
    f = FakeBinance([make_instrument()], API_KEY, API_SECRET, balances={"USDT": Decimal(9_000), "BTC": Decimal(1)},
                    maker_bps=MAKER_BPS, taker_bps=TAKER_BPS)
    await f.start()
    try:
        await f.publish_book("BTCUSDT", BIDS, ASKS)
        jpath = tmp_path / "balance.sqlite"
        extra = "user_stream = false\npoll_interval_s = 0.1" if transport == "poll" else ""
        engine = Engine.from_toml_text(_toml(f, extra_venue=extra), journal=jpath)
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.3",
                                      algo=TWAP(end="+2s", slices=3, urgency=1.0), limit_price="60010"))
        if slow_first_s is not None:
            f.fault("POST", "/api/v3/order", "slow", slow_first_s)
        async with asyncio.timeout(15):
            await engine.start_live()
            assert engine.available_balance("binance-spot", "USDT") == Decimal(9_000)
            assert engine.available_balance("binance-spot", "DOGE") == 0
            await h
            await engine.stop_live()
        engine.close()
        assert Decimal("0.1") < h.filled < Decimal("0.15"), (h.filled, h.reason)
        assert h.average_price is not None and h.filled * h.average_price <= Decimal(9_000)
        events = _journal(jpath, ["order_event"])
        assert not [e for e in events if e["kind"] == "rejected"], "no order the venue refused"
        # no churn once the balance is the limit: a cancel the venue confirmed frees its funds at
        # once (not only when the balance update after it arrives), so the catch-up take that
        # waited for it goes through instead of being cut short and the post re-sent
        submits = [c for c in _journal(jpath, ["order_command"]) if c["action"] == "submit"]
        assert len(submits) <= 8, [(c["quantity"], c["time_in_force"]) for c in submits]
        decisions = _journal(jpath, ["routing_decision"])
        assert any("USDT" in str(d) and "balance" in str(d) for d in decisions)
        # the adapter's view of the balance is the fake venue's own ledger
        live = engine._live.venues["binance-spot"]
        assert live.cached_balance("USDT").free == f.sim._free["USDT"]
        assert live.cached_balance("BTC").free == f.sim._free["BTC"]
    finally:
        await f.stop()


@pytest.mark.parametrize("transport", ["stream", "poll"])
async def test_a_deposit_wakes_the_child_waiting_for_funds(env: None, tmp_path: Path, transport: str) -> None:
    """10 USDT buys nothing at 60 000 (the venue's minimum is 0.001 BTC): the child waits for
    funds, here 20 s (its back-off, ``local_reject_delay_ms``, under ``balance_wait_s``). A
    deposit of 10 000 USDT the venue then reports (pushed on the user stream, or read by the next
    account poll) makes it retry at once, and the parent's order rests within seconds (and fills
    on the next trade). Without that wake-up it would wait the 20 s out."""
    f = FakeBinance([make_instrument()], API_KEY, API_SECRET, balances={"USDT": Decimal(10), "BTC": Decimal(0)},
                    maker_bps=MAKER_BPS, taker_bps=TAKER_BPS)
    await f.start()
    try:
        await f.publish_book("BTCUSDT", BIDS, ASKS)
        extra = "user_stream = false\npoll_interval_s = 0.1" if transport == "poll" else ""
        waits = "balance_wait_s = 60\nlocal_reject_delay_ms = 20000"
        engine = Engine.from_toml_text(_toml(f, extra_engine=waits, extra_venue=extra),
                                       journal=tmp_path / "deposit.sqlite")
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.01",
                                      algo=TWAP(end="+30s", slices=1, urgency=1.0), limit_price="60010"))
        async with asyncio.timeout(20):
            await engine.start_live()
            await _until(lambda: engine.waiting_for_funds == 1)
            assert h.filled == 0
            await f.deposit("USDT", Decimal(10_000))
            # the child retries at once: TWAP posts first, at the bid behind 5 BTC; a seller fills it
            await _until(lambda: any(m == "POST" for m, _p, _q in _order_requests(f)), limit_s=8.0)
            await asyncio.sleep(0.2)
            await f.publish_trade("BTCUSDT", "60000.0", "6.000", Side.SELL, match=True)   # 5 ahead of us
            await _until(lambda: h.filled == Decimal("0.01"), limit_s=8.0)
            await h
            await engine.stop_live()
        engine.close()
        assert h.status == "filled", h.reason
        assert engine.waiting_for_funds == 0
        assert f.sim._free["BTC"] == Decimal("0.01")
    finally:
        await f.stop()
