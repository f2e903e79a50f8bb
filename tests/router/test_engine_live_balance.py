"""The live capacity rule (:meth:`router.engine_live.LiveRuntime.available_balance`) on exact cases:
the venue's cached balance as of its account time T, corrected by effect(now) - effect(T) of each of
our orders touched after T. Stubs stand in for the adapter's cache and the order manager; the
orders, fills and the rule are the real ones (the loopback end-to-end test is in
``test_engine_live.py``)."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from binance_harness import make_instrument

from marketdata.model import (
    ClientOrderId,
    Fill,
    Liquidity,
    Order,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TradeId,
    VenueId,
)
from router.engine_live import LiveRuntime
from venues.base import Balance
from venues.order_manager import ManagedOrder

V = "binance-spot"
INST = make_instrument()
T = 1_000_000_000   # the venue's account time of the cached balances


class _Venue:
    def __init__(self, usdt: str, btc: str) -> None:
        self.bal = {"USDT": Balance("USDT", Decimal(usdt)), "BTC": Balance("BTC", Decimal(btc))}

    def cached_balance(self, asset: str) -> Balance | None:
        return self.bal.get(asset, Balance(asset, Decimal(0)))

    def balance_as_of_ns(self, asset: str) -> int | None:
        return T


class _OM:
    def __init__(self) -> None:
        self.orders: dict[str, ManagedOrder] = {}

    def has_order(self, cid: str) -> bool:
        return cid in self.orders

    def order(self, cid: str) -> ManagedOrder:
        return self.orders[cid]


def _runtime() -> tuple[Any, _OM]:
    rt: Any = object.__new__(LiveRuntime)
    om = _OM()
    rt.venues = {V: _Venue("10000", "1")}
    rt.instruments = {V: INST}
    rt.engine = SimpleNamespace(om=om)
    rt._unsettled = {V: {}}
    return rt, om


def _order(rt: Any, om: _OM, cid: str, side: Side, qty: str, price: str, status: OrderStatus,
           seen: tuple[int | None, int | None], fills: tuple[tuple[str, str, int], ...] = ()) -> ManagedOrder:
    o = Order(client_order_id=ClientOrderId(cid), venue=VenueId(V), symbol=Symbol("BTC-USDT"), side=side,
              order_type=OrderType.LIMIT, lots=INST.qty_to_lots(qty), price_ticks=INST.price_to_ticks(price))
    mo = ManagedOrder(order=o, status=status)
    for k, (fq, fp, ts) in enumerate(fills):
        f = Fill(ClientOrderId(cid), VenueId(V), Symbol("BTC-USDT"), side, TradeId(f"{cid}-{k}"),
                 INST.price_to_ticks(fp), INST.qty_to_lots(fq), Decimal(0), "USDT", Liquidity.MAKER, ts, ts)
        mo.fills.append(f)
        mo.filled_lots += f.lots
    om.orders[cid] = mo
    rt._unsettled[V][ClientOrderId(cid)] = seen
    return mo


def test_nothing_of_ours_after_the_balance_is_the_balance() -> None:
    rt, om = _runtime()
    assert rt.available_balance(V, "USDT") == 10_000 and rt.available_balance(V, "BTC") == 1
    _order(rt, om, "shown", Side.BUY, "0.1", "60000", OrderStatus.NEW, (T - 5, T - 5))   # acked before T
    assert rt.available_balance(V, "USDT") == 10_000
    assert rt.available_balance("other-venue", "USDT") is None


def test_sent_and_not_heard_back_is_a_debit_at_once() -> None:
    rt, om = _runtime()
    _order(rt, om, "b1", Side.BUY, "0.1", "60000", OrderStatus.PENDING_NEW, (None, None))
    _order(rt, om, "s1", Side.SELL, "0.25", "61000", OrderStatus.PENDING_NEW, (None, None))
    assert rt.available_balance(V, "USDT") == Decimal(4_000)         # 10,000 - 0.1 x 60,000
    assert rt.available_balance(V, "BTC") == Decimal("0.75")         # the sell holds its quantity
    _order(rt, om, "b2", Side.BUY, "0.2", "60000", OrderStatus.UNKNOWN, (None, None))
    assert rt.available_balance(V, "USDT") == 0                       # never below zero


def test_a_confirmed_cancel_frees_its_funds_before_the_balance_update() -> None:
    rt, om = _runtime()
    # resting before T (its lock is in the venue's figure), cancelled after T
    _order(rt, om, "c1", Side.BUY, "0.1", "60000", OrderStatus.CANCELED, (T - 5, T + 5))
    assert rt.available_balance(V, "USDT") == Decimal(16_000)


def test_a_fill_after_the_balance_counts_only_what_changed() -> None:
    rt, om = _runtime()
    # resting before T; 0.04 filled after T at a better price: the lock released 2,400, 2,399.6 spent
    _order(rt, om, "p1", Side.BUY, "0.1", "60000", OrderStatus.PARTIALLY_FILLED, (T - 5, T + 5),
           fills=(("0.04", "59990", T + 5),))
    assert rt.available_balance(V, "USDT") == Decimal("10000.4")
    # sent after T and filled at once: its whole cost
    _order(rt, om, "t1", Side.BUY, "0.05", "60010", OrderStatus.FILLED, (T + 7, T + 7),
           fills=(("0.05", "60000", T + 7),))
    assert rt.available_balance(V, "USDT") == Decimal("10000.4") - Decimal(3_000)


def test_refused_orders_leave_no_trace() -> None:
    rt, om = _runtime()
    _order(rt, om, "r1", Side.BUY, "0.1", "60000", OrderStatus.REJECTED, (T + 5, T + 5))
    assert rt.available_balance(V, "USDT") == 10_000
    assert "r1" not in rt._unsettled[V]
