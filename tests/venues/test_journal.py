"""Journal format, secret scrubbing, OrderManager restore, and a real SIGKILL crash test."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from marketdata.clock import SimClock
from marketdata.errors import DataError, VenueTimeout
from marketdata.model import OrderEventKind, OrderStatus, Side
from venues.base import OrderStatusReport
from venues.journal import Journal, SecretInPayload, scrub
from venues.order_manager import OrderManager

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_order_manager import SPOT, USDM, ev, fill_ev, submit  # noqa: E402

K = OrderEventKind
S = OrderStatus


def test_schema_wal_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    with Journal(path) as j:
        s1 = j.append("run_started", 1, {"run_id": "r1", "mode": "simulate", "venues": ["binance-spot"],
                                         "market_data": {"source": "x", "format": "bundle"}, "config_path": None})
        s2 = j.append("parent_submitted", 2, {"parent_id": "P1", "quantity": Decimal("0.50000"),
                                              "limit_price": Decimal("61800.20"), "side": Side.BUY.name.lower()},
                      parent_id="P1")
        s3 = j.append("order_command", 3, {"action": "submit", "client_order_id": "c1", "score": 0.25},
                      venue="binance-spot", client_order_id="c1", parent_id="P1")
        assert (s1, s2, s3) == (1, 2, 3)
        recs = list(j.read())
        assert [r.kind for r in recs] == ["run_started", "parent_submitted", "order_command"]
        assert recs[1].payload["quantity"] == "0.50000" and recs[1].payload["limit_price"] == "61800.20"
        assert recs[2].payload["score"] == "0.25"  # no binary floats on disk
        assert [r.seq for r in j.read(kinds=["order_command"])] == [3]
        assert [r.seq for r in j.read(parent_id="P1")] == [2, 3]
        assert list(j.read(kinds=[])) == []
        with pytest.raises(ValueError, match="journal kind 'order_commnd' unknown"):
            j.append("order_commnd", 4, {})
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [(r[1], r[2], r[3]) for r in db.execute("PRAGMA table_info(events)")]
    assert cols == [("seq", "INTEGER", 0), ("ts_ns", "INTEGER", 1), ("kind", "TEXT", 1), ("venue", "TEXT", 0),
                    ("client_order_id", "TEXT", 0), ("parent_id", "TEXT", 0), ("payload", "TEXT", 1)]
    assert "AUTOINCREMENT" in db.execute("SELECT sql FROM sqlite_master WHERE name='events'").fetchone()[0]


def test_secret_scrubbing(tmp_path: Path) -> None:
    payload = {"venue": "binance-spot", "api_key": "K", "nested": {"X-MBX-APIKEY": "K2", "Signature": "S",
               "ok": [{"passphrase": "p", "qty": "1"}]}, "password": "pw", "access_token": "t",
               "raw": "symbol=BTCUSDT&timestamp=1&signature=deadbeef", "json": '{"secret": "xyz", "a": 1}'}
    out = scrub(payload)
    text = json.dumps(out)
    for secret in ("K2", '"S"', "deadbeef", "xyz", "pw", '"t"', '"p"'):
        assert secret not in text
    assert out["nested"]["ok"] == [{"qty": "1"}] and "symbol=BTCUSDT" in out["raw"]
    with pytest.raises(SecretInPayload, match=r"payload\.nested\.Signature"):
        scrub({"nested": {"Signature": "S"}}, on_secret="refuse")
    with Journal(tmp_path / "j.db") as j:
        j.append("garbled_event", 1, {"venue": "v", "raw": {"apiKey": "K", "x": 1}, "error": "e"})
        assert next(j.read()).payload["raw"] == {"x": 1}
    db = sqlite3.connect(tmp_path / "j.db")
    assert "apiKey" not in db.execute("SELECT payload FROM events").fetchone()[0]
    with Journal(tmp_path / "k.db", on_secret="refuse") as j, pytest.raises(SecretInPayload):
        j.append("garbled_event", 1, {"venue": "v", "raw": "x", "secret": "s"})


def _scenario(om: OrderManager) -> dict[str, str]:
    ids = {}
    ids["filled"] = submit(om, lots=100)
    om.on_event(ev(K.ACCEPTED, ids["filled"], venue_order_id="v1"))  # type: ignore[arg-type]
    om.on_event(fill_ev(ids["filled"], "t1", 40))
    om.on_event(fill_ev(ids["filled"], "t2", 60, kind=K.FILLED))
    ids["working"] = submit(om, lots=200)
    om.on_event(fill_ev(ids["working"], "t3", 20))  # fill before ack
    ids["unknown"] = submit(om, lots=300)
    om.on_send_failed(ids["unknown"], VenueTimeout("t"))
    ids["inflight"] = submit(om, lots=50, parent="P2")
    ids["canceled"] = submit(om, lots=10, parent="P2")
    om.on_event(ev(K.ACCEPTED, ids["canceled"]))
    om.cancel(ids["canceled"])
    om.on_event(ev(K.CANCELED, ids["canceled"]))
    ids["replaced"] = submit(om, lots=70, parent="P2")
    om.on_event(ev(K.ACCEPTED, ids["replaced"]))
    om.replace(ids["replaced"], lots=80, price_ticks=6_180_000)
    om.on_event(ev(K.REPLACED, ids["replaced"], new_lots=80, new_price_ticks=6_180_000))
    new = om.replace(ids["replaced"], lots=90, native=False)
    ids["replacement"] = new.client_order_id
    ids["usdm"] = om.submit(venue="binance-usdm", symbol="BTC-USDT", side=Side.SELL, lots=3,
                            price_ticks=618_001, parent_id="P3").client_order_id
    om.on_status_report(OrderStatusReport(ids["usdm"], USDM.venue, "BTC-USDT", Side.SELL,  # type: ignore[arg-type]
                                          OrderStatus.PARTIALLY_FILLED, 3, 1))
    om.on_event(ev(K.ACCEPTED, "sx-unknown-9"))  # garbled
    return ids


def _snapshot(om: OrderManager) -> dict[str, object]:
    return {m.client_order_id: (m.status if m.status is not S.PENDING_NEW else S.UNKNOWN, m.order.lots,
                                m.order.price_ticks, m.filled_lots, m.executed_lots, m.venue_order_id,
                                [(f.trade_id, f.lots, f.price_ticks, f.fee) for f in m.fills],
                                m.replaces, m.replaced_by, m.pending_replace)
            for m in om.orders()}


def test_restore_rebuilds_orders_fills_accounting_and_ids(tmp_path: Path) -> None:
    clock = SimClock(start_ns=10**18)
    j = Journal(tmp_path / "run.db")
    om = OrderManager(clock, [SPOT, USDM], journal=j, run_id="r1")
    ids = _scenario(om)
    before = _snapshot(om)
    acct = {p: om.parent_accounting(p) for p in ("P1", "P2", "P3")}
    j.close()

    j2 = Journal(tmp_path / "run.db")
    om2 = OrderManager.restore(j2, clock, [SPOT, USDM], run_id="r1")
    assert _snapshot(om2) == before
    assert om2.order(ids["inflight"]).status is S.UNKNOWN  # journaled, never answered
    for p in ("P1", "P2", "P3"):
        a, b = acct[p], om2.parent_accounting(p)
        assert a.filled == b.filled and a.exposure == b.exposure
    assert om2.stats["garbled"] == 1
    # ids continue after the journaled ones, never reused
    nxt = submit(om2, lots=1, parent="P2")
    assert nxt not in before and nxt.endswith("-5")
    # duplicate fills are still recognised after the restart
    om2.on_event(fill_ev(ids["working"], "t3", 20))
    assert om2.order(ids["working"]).filled_lots == 20
    # reconcile settles what the restart left open
    res = om2.reconcile([OrderStatusReport(ids["unknown"], SPOT.venue, "BTC-USDT", Side.BUY,  # type: ignore[arg-type]
                                           OrderStatus.CANCELED, 300, 0)])
    assert ids["unknown"] in res.settled and om2.order(ids["unknown"]).status is S.CANCELED
    j2.close()
    # and the reconcile itself is journaled: a second restore agrees
    om3 = OrderManager.restore(Journal(tmp_path / "run.db"), clock, [SPOT, USDM], run_id="r1")
    assert om3.order(ids["unknown"]).status is S.CANCELED


CHILD = r"""
import sys
from decimal import Decimal
from marketdata.clock import SimClock
from marketdata.model import (Fill, Instrument, Liquidity, OrderEvent, OrderEventKind, Side, TradeId,
                              VenueId)
from venues.journal import Journal
from venues.order_manager import OrderManager

path = sys.argv[1]
spot = Instrument(VenueId("binance-spot"), "BTC-USDT", "BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"))
clock = SimClock(start_ns=10**18)
om = OrderManager(clock, [spot], journal=Journal(path, synchronous="NORMAL"), run_id="crash")
fills = 0
i = 0
while True:
    i += 1
    clock.advance_to(clock.now_ns() + 1000)
    o = om.submit(venue="binance-spot", symbol="BTC-USDT", side=Side.BUY, lots=10, price_ticks=6180020,
                  parent_id=f"P{i % 3}")
    om.on_event(OrderEvent(OrderEventKind.ACCEPTED, o.client_order_id, o.venue, 1, 1))
    for k in range(2):
        f = Fill(o.client_order_id, o.venue, o.symbol, Side.BUY, TradeId(f"T{i}-{k}"), 6180020, 5,
                 Decimal("0.001"), "USDT", Liquidity.MAKER, 2, 2)
        om.on_event(OrderEvent(OrderEventKind.PARTIALLY_FILLED if k == 0 else OrderEventKind.FILLED,
                               o.client_order_id, o.venue, 2, 2, fill=f))
        fills += 1
        # on_event returned: the fill is journaled (committed)
        sys.stdout.write(f"FILL {fills} {o.client_order_id} T{i}-{k}\n")
        sys.stdout.flush()
"""


def test_sigkill_mid_run_loses_nothing_journaled(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=str(REPO))
    reported: list[tuple[str, str]] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    try:
        while len(reported) < 300 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, _, cid, trade = line.split()
            reported.append((cid, trade))
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-run, while it keeps writing
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(reported) >= 300, "child did not get far enough before the deadline"

    clock = SimClock(start_ns=2 * 10**18)
    j = Journal(path)
    om = OrderManager.restore(j, clock, [SPOT], run_id="crash")
    journaled_fills = {(r.client_order_id, r.payload["trade_id"]) for r in j.read(kinds=["fill"])}
    journaled_orders = {r.client_order_id for r in j.read(kinds=["order_command"])}
    # everything the child reported before the kill is in the journal and in the restored state
    assert set(reported) <= journaled_fills
    restored_fills = {(m.client_order_id, f.trade_id) for m in om.orders() for f in m.fills}
    assert restored_fills == journaled_fills
    assert {m.client_order_id for m in om.orders()} == journaled_orders
    assert not om.errors
    for m in om.orders():
        n = len(m.fills)
        assert m.status is {0: S.NEW, 1: S.PARTIALLY_FILLED, 2: S.FILLED}[n] or (
            n == 0 and m.status is S.UNKNOWN)
    # accounting adds up per parent and new ids do not collide with the dead process's
    total_filled = sum(om.parent_accounting(p).filled for p in ("P0", "P1", "P2"))
    assert total_filled == 5 * len(journaled_fills)
    new = om.submit(venue="binance-spot", symbol="BTC-USDT", side=Side.BUY, lots=1, price_ticks=1, parent_id="P1")
    assert new.client_order_id not in journaled_orders
    j.close()


def test_journal_that_cannot_be_opened_names_its_path(tmp_path: Path) -> None:
    """Failed before: sqlite's own "unable to open database file" (no file named) or "file is not
    a database" escaped as sqlite3 errors. Now a DataError naming the journal and the reason."""
    missing = tmp_path / "no-such-dir" / "j.sqlite"
    with pytest.raises(DataError, match=r"journal .*no-such-dir.*its directory does not exist"):
        Journal(missing)
    garbage = tmp_path / "not-a-db.sqlite"
    garbage.write_bytes(b"this is not an SQLite file, just text " * 100)
    with pytest.raises(DataError, match=r"journal .*not-a-db\.sqlite: cannot use it: DatabaseError"):
        Journal(garbage)
    assert garbage.read_bytes().startswith(b"this is not")   # left as it was
