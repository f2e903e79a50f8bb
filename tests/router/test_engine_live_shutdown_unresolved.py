"""A live shutdown whose settle timeout passes with a submit still unanswered: the order is
settled by asking the venue, and what the venue cannot settle is journaled and named in its
parent's reason, never left PENDING_NEW with the parent saying nothing. Against the loopback
fake Binance (tests/venues/binance_fake.py), whose ``POST /api/v3/order`` is held here without an
answer past the settle timeout (before or after the fake processed it). Nothing leaves
127.0.0.1. Each test failed before (the order was left PENDING_NEW, no status query was made)."""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal as D
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from binance_fake import FakeBinance
from test_engine_live import _journal, _toml

from marketdata.model import OrderStatus
from router.engine import TWAP, Engine, ParentOrder


def _config(fake: FakeBinance, *, recv_window_ms: int = 1000, user_stream: bool = True) -> str:
    # settle 1 s; the adapter's own request timeout and the engine's command timeout (10 s) are
    # longer, so the held submit is still waiting for its answer when the settle times out (and
    # the adapter's resolver, started on a request timeout, has not run)
    text = _toml(fake, extra_venue="" if user_stream else "user_stream = false")
    text = text.replace("shutdown_timeout_s = 3", "shutdown_timeout_s = 1")
    text = text.replace("command_timeout_s = 5", "command_timeout_s = 10")
    text = text.replace("request_timeout_s = 2", "request_timeout_s = 10")
    return text.replace("recv_window_ms = 1000", f"recv_window_ms = {recv_window_ms}")


def _hold_submits(fake: FakeBinance, *, process_first: bool) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold every ``POST /api/v3/order`` until ``release`` is set: processed by the fake at once
    (``process_first``: the order is at the venue, its answer is what is held) or only once
    released. ``arrived`` is set when the first one reached the fake."""
    arrived, release = asyncio.Event(), asyncio.Event()
    real = fake._place

    async def held(p: dict[str, str]) -> Any:
        if process_first:
            out = await real(p)
            arrived.set()
            await release.wait()
            return out
        arrived.set()
        await release.wait()
        return await real(p)

    fake._place = held  # type: ignore[method-assign]
    return arrived, release


def _unresolved(jpath: Path) -> list[dict[str, Any]]:
    return [r for r in _journal(jpath, ["order_event"]) if r.get("source") == "unresolved"]


def _take(engine: Engine) -> Any:
    return engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.1", limit_price="60010",
                                     algo=TWAP(end="+4s", slices=1, urgency=1.0)))


async def test_a_held_submit_the_venue_filled_is_settled_with_its_fill(env: None, fake: FakeBinance,
                                                                       tmp_path: Path) -> None:
    """The venue took and filled the order, its answer never came, and no user stream tells
    (REST only). Before: the order stayed PENDING_NEW and the parent ended "cancelled", filled 0
    of 0.1, though 0.1 BTC had been bought. Now the status query after the settle timeout finds
    it FILLED, its trades are read, and the parent ends filled."""
    jpath = tmp_path / "filled.sqlite"
    engine = Engine.from_toml_text(_config(fake, user_stream=False), journal=jpath)
    arrived, release = _hold_submits(fake, process_first=True)
    h = _take(engine)
    try:
        async with asyncio.timeout(20):
            await engine.start_live()
            await asyncio.wait_for(arrived.wait(), 10)
            stopped_at = len(fake.requests)
            await engine.stop_live()
    finally:
        release.set()
        engine.close()
    cid = h.children[0]["client_order_id"]
    mo = engine.om.order(cid)
    assert mo.status is OrderStatus.FILLED, [s.value for _, s in mo.history]
    assert ("GET", "/api/v3/order") in {(m, p) for m, p, _ in fake.requests[stopped_at:]}
    assert h.status == "filled" and h.filled == D("0.1"), (h.status, h.reason)
    assert sum(D(f["quantity"]) for f in _journal(jpath, ["fill"])) == D("0.1")
    assert _unresolved(jpath) == []
    assert not engine.om.open_orders()


async def test_a_held_submit_the_venue_cannot_settle_is_journaled_unknown_and_named(env: None, fake: FakeBinance,
                                                                                   tmp_path: Path) -> None:
    """The submit is held before the venue processed it, and ``recvWindow`` (60 s) has not
    passed: the venue has no such order *yet* and may still take it. Before: the order stayed
    PENDING_NEW (in flight for the parent's accounting), nothing journaled, and the parent's
    reason said only "engine stopped; filled 0 of 0.1". Now it is UNKNOWN in memory and in the
    journal (an ``order_event`` with ``source: "unresolved"``, ``status: "unknown"``), and the
    parent's reason says a child order is unresolved at the venue and must be checked, naming it."""
    jpath = tmp_path / "unknown.sqlite"
    engine = Engine.from_toml_text(_config(fake, recv_window_ms=60_000), journal=jpath)
    arrived, release = _hold_submits(fake, process_first=False)
    h = _take(engine)
    try:
        async with asyncio.timeout(20):
            await engine.start_live()
            await asyncio.wait_for(arrived.wait(), 10)
            stopped_at = len(fake.requests)
            await engine.stop_live()
    finally:
        release.set()
        engine.close()
    cid = h.children[0]["client_order_id"]
    mo = engine.om.order(cid)
    assert mo.status is OrderStatus.UNKNOWN, [s.value for _, s in mo.history]
    assert ("GET", "/api/v3/order") in {(m, p) for m, p, _ in fake.requests[stopped_at:]}, "status query made"
    acct = engine.om.parent_accounting(h.id)
    assert acct.unknown == engine.om.to_parent_units("binance-spot", "BTC-USDT", mo.lots) and acct.in_flight == 0
    assert h.status == "cancelled"
    assert h.reason is not None and "1 child order is unresolved at the venue and must be checked" in h.reason
    assert cid in h.reason and "unknown" in h.reason and h.reason.endswith("; filled 0.000 of 0.1"), h.reason
    rows = _unresolved(jpath)
    assert [(r["client_order_id"], r["kind"], r["status"], r["acked"]) for r in rows] == [
        (cid, "submitted", "unknown", False)], rows
    assert "unresolved at shutdown" in rows[0]["reason"]
    assert rows[0]["previous"] in ("pending_new", "unknown", "pending_cancel") and rows[0]["parent_id"] == h.id
    finished = _journal(jpath, ["parent_finished"])
    assert [f["reason"] for f in finished] == [h.reason]
    assert engine.summary()["parents"][0]["reason"] == h.reason


async def test_a_held_submit_the_venue_never_got_within_recv_window_is_rejected(env: None, fake: FakeBinance,
                                                                               tmp_path: Path) -> None:
    """The submit is held before the venue processed it, and the shutdown's query comes more
    than ``recvWindow`` (1 s) + 1 s after it was sent: Binance refuses a request that reaches its
    matching engine later than that, so "no such order" is final. Before: PENDING_NEW for ever,
    no query. Now it is REJECTED (the adapter's resolver verdict), nothing left unresolved."""
    jpath = tmp_path / "rejected.sqlite"
    engine = Engine.from_toml_text(_config(fake), journal=jpath)
    arrived, release = _hold_submits(fake, process_first=False)
    h = _take(engine)
    try:
        async with asyncio.timeout(20):
            await engine.start_live()
            await asyncio.wait_for(arrived.wait(), 10)
            await asyncio.sleep(1.2)   # + the 1 s settle: past sent + recvWindow + 1 s at the query
            stopped_at = len(fake.requests)
            await engine.stop_live()
    finally:
        release.set()
        engine.close()
    cid = h.children[0]["client_order_id"]
    mo = engine.om.order(cid)
    assert mo.status is OrderStatus.REJECTED, [s.value for _, s in mo.history]
    assert ("GET", "/api/v3/order") in {(m, p) for m, p, _ in fake.requests[stopped_at:]}
    assert h.status == "cancelled" and h.reason is not None and "unresolved" not in h.reason, h.reason
    assert _unresolved(jpath) == []
    assert not engine.om.open_orders()


async def test_a_working_order_whose_cancel_is_held_is_named_with_its_status(env: None, fake: FakeBinance,
                                                                             tmp_path: Path) -> None:
    """The other half: an order the venue acknowledged (resting), whose cancel the fake holds
    past the settle timeout. The status query finds it still working, so it stays
    PENDING_CANCEL (the venue has it: not UNKNOWN), journaled unresolved and named in the
    parent's reason. Before: the parent's reason did not mention it."""
    jpath = tmp_path / "cancel.sqlite"
    engine = Engine.from_toml_text(_config(fake), journal=jpath)
    release = asyncio.Event()
    real = fake._cancel_one

    async def held_cancel(p: dict[str, str], inst: Any) -> Any:
        await release.wait()
        return await real(p, inst)

    fake._cancel_one = held_cancel  # type: ignore[method-assign]
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.1", limit_price="59990",
                                  algo=TWAP(end="+60s", slices=1, urgency=0.0)))
    try:
        async with asyncio.timeout(20):
            await engine.start_live()
            await asyncio.wait_for(_resting(engine), 10)
            await engine.stop_live()
    finally:
        release.set()
        engine.close()
    cid = h.children[0]["client_order_id"]
    mo = engine.om.order(cid)
    assert mo.status is OrderStatus.PENDING_CANCEL and mo.acked, [s.value for _, s in mo.history]
    assert h.reason is not None and "1 child order is unresolved at the venue and must be checked" in h.reason
    assert f"{cid} (pending_cancel: the venue has it" in h.reason, h.reason
    rows = _unresolved(jpath)
    assert [(r["client_order_id"], r["status"], r["previous"], r["acked"]) for r in rows] == [
        (cid, "pending_cancel", "pending_cancel", True)], rows


async def _resting(engine: Engine) -> None:
    while not any(mo.status is OrderStatus.NEW for mo in engine.om.open_orders()):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
