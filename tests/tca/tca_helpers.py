"""Helpers for the TCA tests: write journals of the docs/contracts.md schema directly with sqlite3,
and build a small synthetic market whose answers are worked out by hand in the tests."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from tca.model import MarketSeries

SCHEMA = ("CREATE TABLE events(seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, "
          "kind TEXT NOT NULL, venue TEXT, client_order_id TEXT, parent_id TEXT, payload TEXT NOT NULL)")
T0 = 1_723_161_300_000_000_000  # 2024-08-08 23:55:00 UTC, inside the real spot capture
S = 1_000_000_000


def write_journal(path: Path, records: list[tuple[int, str, dict[str, Any]]]) -> Path:
    """Write ``(ts_ns, kind, payload)`` rows into a fresh contract-schema journal."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(SCHEMA)
    for ts, kind, payload in records:
        con.execute("INSERT INTO events(ts_ns, kind, venue, client_order_id, parent_id, payload) "
                    "VALUES (?,?,?,?,?,?)",
                    (ts, kind, payload.get("venue"), payload.get("client_order_id"), payload.get("parent_id"),
                     json.dumps(payload)))
    con.commit()
    con.close()
    return path


def synthetic_market(t0: int = T0) -> MarketSeries:
    """One quoted venue 'A'. Mids: 99 from t0-30s, 100 from t0-10s, 102 from t0+10s, 104 from
    t0+40s, 103.5 from t0+70s; data to t0+200s. Trades: +5s 2@100, +15s 1@102, +30s 1@103 (id X1:
    it is OUR fill's trade on venue A, so VWAP excludes it), +100s 1@104."""
    m = MarketSeries("BTC-USDT")
    for dt, bid, ask in ((-30, "98", "100"), (-10, "99", "101"), (10, "101", "103"), (40, "103", "105"),
                         (70, "103", "104"), (200, "103", "104")):
        m.add_quote(t0 + dt * S, "A", Decimal(bid), Decimal(ask))
    for dt, px, q, tid in ((5, "100", "2", "T1"), (15, "102", "1", "T2"), (30, "103", "1", "X1"),
                           (100, "104", "1", "T4")):
        m.add_trade(t0 + dt * S, "A", Decimal(px), Decimal(q), tid)
    return m.build()


def synthetic_journal_records(t0: int = T0, parent_id: str = "P1", algo: str = "twap"
                              ) -> list[tuple[int, str, dict[str, Any]]]:
    """A buy of 1.0 decided at t0-20s, submitted at t0, finished (cancelled) at t0+50s, filled
    0.4 @ 102.5 on B (maker, fee 0.01 USDT) at +20s and 0.4 @ 102.9 on A (taker, fee 0.0001 BTC,
    trade X1) at +38s; children: c1 B GTC 0.5 (cancelled), c2 A IOC 0.4 (filled), c3 A IOC 0.1 (expired)."""
    pid = parent_id
    return [
        (t0 - 60 * S, "run_started", {"run_id": "run-1", "mode": "simulate",
                                      "market_data": {"source": "/nonexistent/data", "format": "binance-raw"},
                                      "venues": ["A", "B"], "config_path": None}),
        (t0, "parent_submitted", {"parent_id": pid, "symbol": "BTC-USDT", "side": "buy", "quantity": "1.0",
                                  "algo": algo, "params": {"duration_s": 50}, "limit_price": None,
                                  "arrival_price": None, "decision_ts_ns": t0 - 20 * S}),
        (t0 + 15 * S, "routing_decision", {
            "decision_id": f"{pid}-d1", "parent_id": pid, "request": {"quantity": "0.5"}, "strategy": "post",
            "venues": [{"venue": "B", "factors": {"fee": 0}, "excluded_reason": None},
                       {"venue": "A", "factors": {}, "excluded_reason": "stale book"}],
            "allocations": [{"venue": "B", "quantity": "0.5", "price": "102.5", "style": "post"}],
            "residual": None}),
        (t0 + 15 * S, "order_command", {
            "action": "submit", "client_order_id": f"{pid}-c1", "venue": "B", "symbol": "BTC-USDT", "side": "buy",
            "order_type": "limit", "time_in_force": "GTC", "quantity": "0.5", "price": "102.5",
            "parent_id": pid, "decision_id": f"{pid}-d1"}),
        (t0 + 20 * S, "fill", {
            "client_order_id": f"{pid}-c1", "parent_id": pid, "venue": "B", "symbol": "BTC-USDT", "side": "buy",
            "trade_id": "B7", "price": "102.5", "quantity": "0.4", "fee": "0.01", "fee_currency": "USDT",
            "liquidity": "maker", "ts_event": t0 + 20 * S}),
        (t0 + 38 * S, "routing_decision", {
            "decision_id": f"{pid}-d2", "parent_id": pid, "request": {"quantity": "0.5"}, "strategy": "take",
            "venues": [{"venue": "A", "factors": {}, "excluded_reason": None}],
            "allocations": [{"venue": "A", "quantity": "0.4", "price": "103", "style": "take"}],
            "residual": {"quantity": "0.1", "reason": "no liquidity"}}),
        (t0 + 38 * S, "order_command", {
            "action": "submit", "client_order_id": f"{pid}-c2", "venue": "A", "symbol": "BTC-USDT", "side": "buy",
            "order_type": "limit", "time_in_force": "IOC", "quantity": "0.4", "price": "103",
            "parent_id": pid, "decision_id": f"{pid}-d2"}),
        (t0 + 38 * S, "fill", {
            "client_order_id": f"{pid}-c2", "parent_id": pid, "venue": "A", "symbol": "BTC-USDT", "side": "buy",
            "trade_id": "X1", "price": "102.9", "quantity": "0.4", "fee": "0.0001", "fee_currency": "BTC",
            "liquidity": "taker", "ts_event": t0 + 38 * S}),
        (t0 + 38 * S, "order_event", {"kind": "filled", "client_order_id": f"{pid}-c2", "venue": "A",
                                      "venue_order_id": "9", "reason": None, "code": None}),
        (t0 + 45 * S, "order_command", {
            "action": "submit", "client_order_id": f"{pid}-c3", "venue": "A", "symbol": "BTC-USDT", "side": "buy",
            "order_type": "limit", "time_in_force": "IOC", "quantity": "0.1", "price": "103",
            "parent_id": pid, "decision_id": f"{pid}-d2"}),
        (t0 + 45 * S, "order_event", {"kind": "expired", "client_order_id": f"{pid}-c3", "venue": "A",
                                      "venue_order_id": "10", "reason": "IOC not filled", "code": None}),
        (t0 + 45 * S, "order_command", {
            "action": "cancel", "client_order_id": f"{pid}-c1", "venue": "B", "symbol": "BTC-USDT", "side": "buy",
            "order_type": "limit", "time_in_force": "GTC", "quantity": "0.5", "price": "102.5",
            "parent_id": pid, "decision_id": None}),
        (t0 + 46 * S, "order_event", {"kind": "canceled", "client_order_id": f"{pid}-c1", "venue": "B",
                                      "venue_order_id": "3", "reason": None, "code": None}),
        (t0 + 50 * S, "parent_finished", {"parent_id": pid, "status": "canceled", "filled": "0.8",
                                          "average_price": "102.7", "reason": "end of schedule"}),
    ]
