"""Review of live / shadow mode, the kill switch and pre-trade risk: each test failed before the
fix it names. Live tests run against the loopback fake Binance (tests/venues/binance_fake.py);
nothing leaves 127.0.0.1."""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from binance_fake import FakeBinance
from test_engine_live import _journal, _order_requests, _toml, _until

from marketdata.errors import RiskRejected
from marketdata.model import (
    ClientOrderId,
    Fill,
    Liquidity,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    Side,
    TradeId,
    VenueId,
)
from router.engine import TWAP, Engine, Iceberg, ParentOrder
from router.risk import PreTradeRisk, RiskCheck, RiskLimits


async def _one_urgent_take(engine: Engine) -> tuple[Any, Any]:
    """Run one urgent 0.1 BTC buy to its end; its handle and first child order, checked to have
    gone through UNKNOWN."""
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.1", limit_price="60010",
                                  algo=TWAP(end="+4s", slices=1, urgency=1.0, sweep_lead="1s")))
    try:
        async with asyncio.timeout(15):
            await engine.start_live()
            await _until(lambda: h.is_terminal, 10)
    finally:
        await engine.stop_live()
        engine.close()
    first = engine.om.order(h.children[0]["client_order_id"])
    assert OrderStatus.UNKNOWN in [s for _, s in first.history]
    return h, first


async def test_a_garbled_submit_answer_is_resolved_not_left_unknown(env: None, fake: FakeBinance) -> None:
    """Failed before. An answer to ``POST /api/v3/order`` that the adapter cannot read (HTTP 200
    with a body that is not JSON: a proxy's error page) raised a plain ``VenueError``: the order
    manager made the order UNKNOWN, but only a timeout or a dropped connection started the
    adapter's status queries, so nothing ever settled it. The parent's exposure kept the UNKNOWN
    lots and it never ended (the run waited forever). Now every submit that ends UNKNOWN is
    resolved by status queries (here the venue never had the order: REJECTED after recvWindow),
    and the parent carries on and completes."""
    engine = Engine.from_toml_text(_toml(fake, extra_venue="user_stream = false"))
    fake.fail("POST", "/api/v3/order", 200, None, "<html>502 Bad Gateway</html>")
    h, first = await _one_urgent_take(engine)
    assert first.status is OrderStatus.REJECTED, first.status
    assert not engine.om.open_orders()
    assert h.status == "filled" and h.filled == D("0.1"), (h.status, h.reason)


async def test_a_submit_answer_the_adapter_chokes_on_is_resolved(env: None, fake: FakeBinance,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed before. A submit answer the adapter fails on with something other than a
    ``VenueError`` (here a JSON body without ``orderId``: ``KeyError``) escaped the submit task:
    it was logged as a failed task and the order stayed PENDING_NEW for ever, so the parent never
    ended. Now it is UNKNOWN and resolved by status queries like a timeout; the order the venue
    did take is found, and the parent completes with no order left open."""
    engine = Engine.from_toml_text(_toml(fake, extra_venue="user_stream = false"))
    venue = engine._live.venues["binance-spot"]
    real = venue._apply_new_order_response
    calls = {"n": 0}

    def garbled_once(tr: object, resp: dict[str, object]) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("orderId")
        return real(tr, resp)  # type: ignore[arg-type]

    monkeypatch.setattr(venue, "_apply_new_order_response", garbled_once)
    h, first = await _one_urgent_take(engine)
    assert first.status is OrderStatus.FILLED, first.status
    assert not engine.om.open_orders()
    assert h.status == "filled" and h.filled == D("0.1"), (h.status, h.reason)
    assert len([1 for m, _, _ in _order_requests(fake) if m == "POST"]) == 1, "the venue took it once"


async def test_kill_switch_with_a_lost_cancel_still_cancels_at_the_venue(env: None, fake: FakeBinance) -> None:
    """Failed before. The kill switch's cancel was lost on the way (the connection dropped before
    the venue read it): the order stayed PENDING_CANCEL locally, nothing sent the cancel again nor
    asked the venue, so the order kept working at the venue, the parent never ended ``killed``,
    and the shutdown left the order resting there. Now a cancel without an answer (timeout,
    dropped connection) is sent again after ``cancel_retry_ms``."""
    engine = Engine.from_toml_text(_toml(fake))
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="1", limit_price="59990",
                                  algo=Iceberg(end="+60s", display="0.1")))
    try:
        async with asyncio.timeout(15):
            await engine.start_live()
            await _until(lambda: any(fo.status == "NEW" for fo in fake.orders.values()))
            for _ in range(2):   # aiohttp resends an idempotent DELETE once on a dropped connection
                fake.fault("DELETE", "/api/v3/order", "drop_before")
            engine.kill("test kill")
            await _until(lambda: h.is_terminal, 8)
    finally:
        await engine.stop_live()
        engine.close()
    assert h.status == "killed", (h.status, h.reason)
    assert fake.orders and all(fo.status == "CANCELED" for fo in fake.orders.values())
    assert len([1 for m, _, _ in _order_requests(fake) if m == "DELETE"]) >= 3
    assert not engine.om.open_orders()


async def test_shadow_order_commands_carry_a_shadow_marker(fake: FakeBinance, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed before. A shadow run's ``order_command`` rows (submits and cancels) were the same as
    a live run's: a reader of the order rows (a TCA load, an audit query over ``order_command``,
    journals merged) could not tell an order that was never sent from one that was. Now every
    order command and order event of a shadow run carries ``"shadow": true``; a live run's none."""
    jpath = tmp_path / "shadow.sqlite"
    engine = Engine.from_toml_text(_toml(fake, mode="shadow"), journal=jpath)
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="1", limit_price="59990",
                                  algo=Iceberg(end="+60s", display="0.1")))
    try:
        async with asyncio.timeout(10):
            await engine.start_live()
            await _until(lambda: len(h.children) >= 1)
            h.cancel()
            await _until(lambda: h.is_terminal)
    finally:
        await engine.stop_live()
        engine.close()
    cmds = _journal(jpath, ["order_command"])
    assert {c["action"] for c in cmds} == {"submit", "cancel"}
    assert all(c.get("shadow") is True for c in cmds), cmds
    events = _journal(jpath, ["order_event"])
    assert events and all(e.get("shadow") is True for e in events), events
    assert _order_requests(fake) == []


async def test_live_order_commands_carry_no_shadow_marker(env: None, fake: FakeBinance, tmp_path: Path) -> None:
    """The other half of the shadow marker: a live run's rows have none (not failing before)."""
    jpath = tmp_path / "live.sqlite"
    engine = Engine.from_toml_text(_toml(fake), journal=jpath)
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.1", limit_price="60010",
                                  algo=TWAP(end="+2s", slices=1, urgency=1.0)))
    async with asyncio.timeout(15):
        await engine.run_live()
    engine.close()
    assert h.status == "filled"
    rows = _journal(jpath, ["order_command", "order_event", "fill"])
    assert rows and not any("shadow" in r for r in rows)


def _chk(qty: str, side: Side, px: str | None = "100", mid: str | None = "100", parent: str = "p1") -> RiskCheck:
    return RiskCheck("BTC-USDT", side, D(qty), None if px is None else D(px), parent,
                     None if mid is None else D(mid))


def test_max_position_is_not_loosened_by_pending_orders_on_the_other_side() -> None:
    """Failed before. ``max_position`` netted the pending buys against the pending sells: with a
    limit of 3, a buy parent's child of 3 and a sell parent's child of 3 working, a second buy of
    3 passed (net pending 0), although if the buys fill and the sells do not the position reaches
    6. The worst case is per direction: every pending order on the side of the new one fills and
    none on the other side does."""
    r = PreTradeRisk(RiskLimits(max_position={"BTC-USDT": D(3)}))
    r.check(_chk("3", Side.BUY, parent="buyer"))
    r.check(_chk("3", Side.SELL, parent="seller"))
    with pytest.raises(RiskRejected, match="max_position"):
        r.check(_chk("3", Side.BUY, parent="buyer"))
    with pytest.raises(RiskRejected, match="max_position"):
        r.check(_chk("1", Side.SELL, parent="seller"))
    # the sell ends unfilled, the first buy fills: position 3, nothing pending
    r.on_order_released("BTC-USDT", Side.SELL, D(3))
    r.on_fill("BTC-USDT", Side.BUY, D(3))
    r.on_order_released("BTC-USDT", Side.BUY, D(3))
    with pytest.raises(RiskRejected, match="max_position"):
        r.check(_chk("0.1", Side.BUY))
    r.check(_chk("6", Side.SELL))   # from +3 to -3 at worst: within the limit


def test_notional_limits_refuse_an_order_with_no_price_to_check_against() -> None:
    """Failed before. A market child (no limit) while the book is one-sided (no mid) had no
    notional, so ``max_order_notional`` and ``max_parent_notional`` were skipped and nothing was
    counted for its parent: any size went through (the price collar refuses it, but only when
    one is configured). Now a notional limit refuses an order whose notional cannot be known."""
    r = PreTradeRisk(RiskLimits(max_order_notional=D(500)))
    with pytest.raises(RiskRejected, match="max_order_notional") as ei:
        r.check(_chk("1000", Side.BUY, px=None, mid=None))
    assert ei.value.rule == "max_order_notional"
    r = PreTradeRisk(RiskLimits(max_parent_notional=D(500)))
    with pytest.raises(RiskRejected, match="max_parent_notional"):
        r.check(_chk("1000", Side.SELL, px=None, mid=None))
    # with a price, unchanged; without notional limits, a priceless order is not refused
    r.check(_chk("4", Side.BUY, px=None, mid="100"))
    PreTradeRisk(RiskLimits()).check(_chk("1000", Side.BUY, px=None, mid=None))


async def test_a_fill_after_its_child_was_done_is_not_released_twice(env: None, fake: FakeBinance) -> None:
    """Failed before. A fill the venue reports after the child's order ended (the adapter passes
    it on: "a fill is a fact"; e.g. an UNKNOWN submit reported REJECTED after recvWindow that then
    trades) was released from the pending position a second time: the child's end had already
    released all its unfilled quantity. Pending went negative by the fill, so ``max_position`` saw
    the new position cancelled out by it (a 0.1 BTC limit let another 0.1 through), and the fill's
    notional no longer counted toward ``max_parent_notional``."""
    text = _toml(fake).replace("[engine]", '[risk]\nmax_parent_notional = 10000\n[risk.max_position]\n'
                               '"BTC-USDT" = "0.1"\n\n[engine]')
    engine = Engine.from_toml_text(text)
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.1", limit_price="59990",
                                  algo=Iceberg(end="+60s", display="0.1", native=False)))
    try:
        async with asyncio.timeout(15):
            await engine.start_live()
            await _until(lambda: any(fo.status == "NEW" for fo in fake.orders.values()))
            h.cancel()
            await _until(lambda: h.is_terminal)
            cid = h.children[0]["client_order_id"]
            assert engine.om.order(cid).status is OrderStatus.CANCELED
            assert engine.risk._pending_position.get("BTC-USDT", 0) == 0
            now = engine.clock.now_ns()
            inst = engine.instruments["binance-spot"]
            fill = Fill(client_order_id=ClientOrderId(cid), venue=VenueId("binance-spot"), symbol=inst.symbol,
                        side=Side.BUY, trade_id=TradeId("late-1"), price_ticks=inst.price_to_ticks("59990"),
                        lots=inst.qty_to_lots(D("0.1")), fee=D(0), fee_currency="BTC", liquidity=Liquidity.MAKER,
                        ts_event=now, ts_init=now)
            engine._live._on_order_event("binance-spot", OrderEvent(
                kind=OrderEventKind.FILLED, client_order_id=ClientOrderId(cid), venue=VenueId("binance-spot"),
                ts_event=now, ts_init=now, fill=fill))
    finally:
        await engine.stop_live()
        engine.close()
    assert engine.risk.position("BTC-USDT") == D("0.1")
    assert engine.risk._pending_position.get("BTC-USDT", 0) == 0
    with pytest.raises(RiskRejected, match="max_position"):   # at the limit: no more buying
        engine.risk.check_order("BTC-USDT", Side.BUY, D("0.1"), D("59990"), "P9", D("60000"))
    assert engine.risk._parent_notional[h.id] == D("5999.0")
    with pytest.raises(RiskRejected, match="max_parent_notional"):
        engine.risk.check_order("BTC-USDT", Side.BUY, D("0.1"), D("59990"), h.id, D("60000"))


async def test_async_with_engine_cancels_at_the_venue_when_the_block_fails(env: None, fake: FakeBinance,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Failed before (flagged by the live review): ``with Engine(...)`` only closed the journal, so
    a block left by an exception after ``start_live()`` left the order working at the venue and the
    streams running. ``async with engine:`` now stops the live transports (working parents and
    venue orders cancelled) however the block ends; a plain ``close()`` while they run says so."""
    engine = Engine.from_toml_text(_toml(fake))
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="1", limit_price="59990",
                                  algo=Iceberg(end="+60s", display="0.1")))
    with pytest.raises(RuntimeError, match="user code failed"):
        async with asyncio.timeout(15):
            async with engine:
                await engine.start_live()
                await _until(lambda: any(fo.status == "NEW" for fo in fake.orders.values()))
                raise RuntimeError("user code failed")
    assert fake.orders and all(fo.status == "CANCELED" for fo in fake.orders.values())
    assert h.is_terminal and not engine.om.open_orders() and engine.journal is None
    other = Engine.from_toml_text(_toml(fake))
    try:
        async with asyncio.timeout(15):
            await other.start_live()
            other.close()
    finally:
        await other.stop_live()
    assert "while the live transports run" in caplog.text
