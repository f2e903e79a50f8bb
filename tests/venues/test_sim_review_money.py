"""Review tests of the simulated venue's ledger and driver: each pins a bug found in review (it
failed before the fix) or a conservation law around it."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from test_sim_venue import (
    INST,
    NS_PER_MS,
    T0,
    Liquidity,
    S,
    Side,
    SimClock,
    SimulationDriver,
    TimeInForce,
    TradeId,
    TradeTick,
    V,
    fills,
    kinds,
    make,
    make_perp,
    order,
    run_now,
    send,
    snap,
    trade,
    usdt,
)

from marketdata.model import OrderEvent, OrderEventKind
from venues.sim import SimulatedVenue


def _spot_totals(v: SimulatedVenue, start: dict[str, Decimal],
                 events: list[OrderEvent]) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(quote free+locked, expected quote, base free+locked, expected base) from the fills."""
    bal = run_now(v.balances())
    fl = [e.fill for e in events if e.fill is not None]
    quote = start["USDT"] - sum((INST.notional(f.price_ticks, f.lots) * (1 if f.side is Side.BUY else -1) + f.fee
                                 for f in fl), Decimal(0))
    base = start["BTC"] + sum((INST.lots_to_qty(f.lots) * (1 if f.side is Side.BUY else -1) for f in fl), Decimal(0))
    return bal["USDT"].total, quote, bal["BTC"].total, base


def test_market_buy_partial_fills_leave_no_dust_in_locked() -> None:
    """A resting buy locks 332.46625005 USDT. A market buy of 7 lots walks two one-lot asks (its
    lock is their cost, not 7 x a price) and expires: its pro-rata releases (lock x 1/7, then
    x 1/6) were inexact 28-digit quotients subtracted from the account's large locked total, so
    ``locked`` kept 1E-25 beyond the open order's lock and free + locked was no longer the start
    minus notional and fees."""
    start = {"USDT": Decimal("1000000.123456789"), "BTC": Decimal("0")}
    v, c, ev = make(balances=dict(start))
    snap(v, c, [(1000, 5)], [(1001, 1), (1002, 1)])
    rest = order(Side.BUY, 3333, 997)
    send(v, c, rest)
    m = order(Side.BUY, 7, None)
    send(v, c, m)
    assert fills(ev, m) and kinds(ev, m)[-1] is OrderEventKind.EXPIRED
    resting_lock = v._orders[rest.client_order_id].locked
    assert run_now(v.balances())["USDT"].locked == resting_lock
    q_total, q_expected, b_total, b_expected = _spot_totals(v, start, ev)
    assert q_total == q_expected and b_total == b_expected
    run_now(v.cancel(rest.client_order_id))
    c.advance_to(c.now_ns())
    bal = run_now(v.balances())
    assert bal["USDT"].locked == 0 and bal["USDT"].free == q_expected


@settings(max_examples=80, deadline=None)
@given(steps=st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 40),
                                st.sampled_from([None, -2, -1, 0, 1, 2]), st.sampled_from(["ioc", "gtc", "cancel"])),
                      min_size=1, max_size=12),
       usdt_start=st.sampled_from(["1000000.123456789", "777.77"]))
def test_spot_ledger_is_conserved_per_asset(steps: list[tuple[Side, int, int | None, str]], usdt_start: str) -> None:
    """Random spot orders (market, marketable and resting limits, public trades through the
    resting ones, cancels) on a thin book: per asset free + locked is always the start plus what
    the fills moved (quote net of fees), locked is exactly the open orders' locks, and once nothing
    is open nothing is locked."""
    start = {"USDT": Decimal(usdt_start), "BTC": Decimal("0.05")}
    v, c, ev = make(balances=dict(start))
    snap(v, c, [(1000, 3), (999, 2), (997, 5)], [(1001, 1), (1002, 2), (1004, 3)])
    for side, lots, off, mode in steps:
        px = None if off is None else (1001 if side is Side.BUY else 1000) + off
        o = order(side, lots, px, TimeInForce.IOC if mode == "ioc" else TimeInForce.GTC)
        send(v, c, o)
        if px is not None and mode != "ioc":
            trade(v, c, px - 1 if side is Side.BUY else px + 1, 7, Side.SELL if side is Side.BUY else Side.BUY)
            if mode == "cancel":
                run_now(v.cancel(o.client_order_id))
                c.advance_to(c.now_ns())
        q_total, q_expected, b_total, b_expected = _spot_totals(v, start, ev)
        assert q_total == q_expected and b_total == b_expected
        bal = run_now(v.balances())
        for asset in ("USDT", "BTC"):
            open_locks = sum((so.locked for so in v._orders.values()
                              if not so.status.is_terminal and so.lock_asset == asset), Decimal(0))
            assert bal[asset].locked == open_locks
            assert bal[asset].free >= 0
        snap(v, c, [(1000, 3), (999, 2), (997, 5)], [(1001, 1), (1002, 2), (1004, 3)])
    for so in list(v._orders.values()):
        if not so.status.is_terminal:
            run_now(v.cancel(so.order.client_order_id))
    c.advance_to(c.now_ns())
    bal = run_now(v.balances())
    assert bal["USDT"].locked == 0 and bal["BTC"].locked == 0


def test_perpetual_market_buy_margins_the_lots_it_opens_not_the_ones_it_closes() -> None:
    """Short 5 BTC at 100.0 (500 margin, 450 free). A market buy of 9 BTC closes the 5 at the best
    ask (100.1) and opens 4 at the next level, 1000.0: 4,000 of margin the account does not have.
    The margin was priced by walking the book from the touch for the 4 opening lots, i.e. at
    100.1 where the closing lots fill (400.6 with the fee buffer): the order was accepted and the
    fill drove the free balance to about -3,052. It must be priced at the levels the opening lots
    take (after the closing ones) and refused."""
    v, c, ev = make_perp("950.25", "1")
    snap(v, c, [(1000, 50_000)], [(1001, 5_000), (10_000, 50_000)])
    send(v, c, order(Side.SELL, 5_000, 1000, TimeInForce.IOC))
    assert usdt(v) == (Decimal("450.00000000"), Decimal("500.00000000"))
    m = order(Side.BUY, 9_000, None)
    send(v, c, m)
    assert kinds(ev, m) == [OrderEventKind.REJECTED]
    free, locked = usdt(v)
    assert free >= 0 and locked == 500
    # a market buy that only closes the short still needs no margin
    close = order(Side.BUY, 5_000, None)
    send(v, c, close)
    assert fills(ev, close) == [(1001, 5_000, Liquidity.TAKER)]
    assert v.position_lots(S) == 0 and usdt(v)[1] == 0


def test_perpetual_market_sell_closing_a_long_margins_its_opening_lots_at_their_levels() -> None:
    """Long 5 BTC (300 free). A market sell of 9 closes 5 at the best bid (100.0) and opens 4 at
    the next bid, 50.0: 200.1 of margin with the fee buffer, which the account has. Priced from the
    touch (4 lots at 100.0: 400.2) it was refused."""
    v, c, ev = make_perp("800.75025", "1")
    snap(v, c, [(1000, 5_000), (500, 50_000)], [(1001, 50_000)])
    send(v, c, order(Side.BUY, 5_000, 1001, TimeInForce.IOC))
    assert usdt(v) == (Decimal("300.00000000"), Decimal("500.50000000"))
    m = order(Side.SELL, 9_000, None)
    send(v, c, m)
    assert fills(ev, m) == [(1000, 5_000, Liquidity.TAKER), (500, 4_000, Liquidity.TAKER)]
    assert v.position_lots(S) == -4_000
    # 300 + 500.5 margin back - 0.5 PnL - 0.25 and 0.1 fees - 200 new margin
    assert usdt(v) == (Decimal("599.65"), Decimal("200.0"))


def test_driver_run_with_until_and_max_events_does_not_jump_past_the_pending_events() -> None:
    """``run(until_ns=X, max_events=3)`` on a stream whose events all lie before X: the run stops
    after 3 events, but it then advanced the clock to X (the drain meant for an exhausted stream
    or a pending event beyond X), so the next ``run`` raised InvariantError "market event out of
    time order" on the 4th event. The clock must stay at the last event processed."""
    clock = SimClock(T0)
    evs = [TradeTick(V, S, 1000, 1, Side.BUY, TradeId(str(i)), T0 + i * NS_PER_MS, 0) for i in range(10)]
    drv = SimulationDriver(clock, evs)
    got: list[int] = []
    drv.subscribe(lambda e: got.append(e.ts_event), delayed=False)
    first = drv.run(until_ns=T0 + 100 * NS_PER_MS, max_events=3)
    assert first.events == 3 and clock.now_ns() == T0 + 2 * NS_PER_MS
    second = drv.run(until_ns=T0 + 100 * NS_PER_MS)
    assert second.events == 7 and got == [e.ts_event for e in evs]
    assert clock.now_ns() == T0 + 100 * NS_PER_MS   # exhausted: the clock ends at until_ns
    # a pending event beyond until_ns: the clock still ends exactly at until_ns
    clock2 = SimClock(T0)
    drv2 = SimulationDriver(clock2, evs)
    drv2.run(until_ns=T0 + 4 * NS_PER_MS + 1, max_events=5)
    assert clock2.now_ns() == T0 + 4 * NS_PER_MS + 1



def test_cancel_replace_to_no_more_than_filled_is_refused_before_cancelling() -> None:
    """Without native modify, a replace of a 10-lot buy that has filled 6 down to 4 lots (not above
    what has filled): the venue cancelled the order and then sent ``<id>~r1`` for -2 lots, which
    came back REJECTED (LOT_SIZE) with a negative quantity. As with native modify, the replace is
    refused (CANCEL_REJECTED) and the order keeps resting with its lock."""
    v, c, ev = make(native_modify=False)
    snap(v, c, [(1000, 5)], [(1001, 6), (1003, 50)])
    o = order(Side.BUY, 10, 1001)
    send(v, c, o)
    assert sum(f[1] for f in fills(ev, o)) == 6
    locked = run_now(v.balances())["USDT"].locked
    run_now(v.replace(o.client_order_id, lots=4))
    c.advance_to(c.now_ns() + NS_PER_MS)
    assert kinds(ev, o)[-1] is OrderEventKind.CANCEL_REJECTED
    assert not [e for e in ev if e.client_order_id.startswith(f"{o.client_order_id}~r")]
    assert run_now(v.order_status(o.client_order_id)).status.value == "partially_filled"
    assert run_now(v.balances())["USDT"].locked == locked
    run_now(v.replace(o.client_order_id, lots=8, price_ticks=1000))   # 2 more lots at 100.0: fine
    c.advance_to(c.now_ns() + NS_PER_MS)
    new = [e for e in ev if e.client_order_id.startswith(f"{o.client_order_id}~r")]
    assert [e.kind for e in new] == [OrderEventKind.ACCEPTED]
    assert run_now(v.order_status(new[0].client_order_id)).lots == 2
