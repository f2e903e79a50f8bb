"""Review tests of the simulated venue's liquidity consumption and queue position between two
replayed depth updates (docs/venues-sim.md, "Taking" and "Resting and queue position").

The review suspected that "the simulator's queue position ignores our own consumption at a level
until the next depth update". Taking itself was right (pinned here); the queue was not: a resting
order queued behind lots we had already taken, our own taker at our resting price did not move
our queue, and the queue model counted the lots we took as still waiting behind us. Each of those
tests failed before the fix. Every scenario runs with the lazy book (depth coalesced while nobody
reads the book) and with the book handed out (every message applied as it comes): both must
agree."""

from __future__ import annotations

from fractions import Fraction

import pytest
from test_sim_venue import (
    BookDeltas,
    Liquidity,
    OrderEventKind,
    QueueModel,
    S,
    Side,
    SimClock,
    SimulatedVenue,
    SimulationDriver,
    TimeInForce,
    TradeId,
    TradeTick,
    V,
    delta,
    fills,
    kinds,
    make,
    order,
    send,
    snap,
    trade,
)

from marketdata.model import OrderEvent

ASKS = [(1001, 4), (1002, 6), (1003, 100)]
BIDS = [(1000, 5), (999, 10)]


def venue(mode: str, bids: list[tuple[int, int]] = BIDS, asks: list[tuple[int, int]] = ASKS,
          queue_model: QueueModel | None = None) -> tuple[SimulatedVenue, SimClock, list[OrderEvent]]:
    """A venue on a snapshot. ``mode``: "lazy" (book never read), "lazy-resting" (the same with a
    far resting bid, so depth goes through the resting-order path) or "eager" (book handed out)."""
    v, c, ev = make(queue_model=queue_model) if queue_model is not None else make()
    snap(v, c, bids, asks)
    if mode == "eager":
        v.book(S)
    elif mode == "lazy-resting":
        send(v, c, order(Side.BUY, 1, 900))
    return v, c, ev


MODES = ["lazy", "lazy-resting", "eager"]


# ---------------------------------------------------------------- (a) taking: pinned, it was right
@pytest.mark.parametrize("mode", MODES)
def test_a_second_taker_before_the_next_update_does_not_retake_consumed_lots(mode: str) -> None:
    v, c, ev = venue(mode)
    a = order(Side.BUY, 6, 1002, TimeInForce.IOC)
    send(v, c, a)
    assert fills(ev, a) == [(1001, 4, Liquidity.TAKER), (1002, 2, Liquidity.TAKER)]
    # depth elsewhere (other prices, both sides) changes nothing at the levels we took from
    delta(v, c, [(999, 11)], [(1003, 90)])
    b = order(Side.BUY, 10, 1002, TimeInForce.IOC)
    send(v, c, b)
    assert fills(ev, b) == [(1002, 4, Liquidity.TAKER)]
    assert kinds(ev, b)[-1] is OrderEventKind.EXPIRED
    m = order(Side.BUY, 3, None, TimeInForce.IOC)   # a market order walks past the emptied levels
    send(v, c, m)
    assert fills(ev, m) == [(1003, 3, Liquidity.TAKER)]
    assert v.consumed_lots(S, Side.SELL, 1001) == 4 and v.consumed_lots(S, Side.SELL, 1002) == 6
    # an all-or-nothing order and a post-only order see the same: nothing left at 1001..1002
    f = order(Side.BUY, 1, 1002, TimeInForce.FOK)
    send(v, c, f)
    assert fills(ev, f) == [] and kinds(ev, f)[-1] is OrderEventKind.EXPIRED
    p = order(Side.BUY, 1, 1002, TimeInForce.POST_ONLY)
    send(v, c, p)
    assert kinds(ev, p) == [OrderEventKind.ACCEPTED]
    # the displayed book is the replay's (it never had our trades)
    assert v.book(S).ask_lots_at(1001) == 4 and v.book(S).ask_lots_at(1002) == 6


@pytest.mark.parametrize("mode", MODES)
def test_the_next_update_of_a_consumed_level_is_the_markets_truth(mode: str) -> None:
    """The replayed update still shows the market without our trade; the documented model takes
    it as the level's new truth (our consumed count there is reset), for that price only."""
    v, c, ev = venue(mode)
    send(v, c, order(Side.BUY, 6, 1002, TimeInForce.IOC))   # 4 at 1001, 2 at 1002
    delta(v, c, [], [(1002, 6)])      # the replay names 1002 again, unchanged by our trade
    delta(v, c, [], [(1003, 100)])    # a later message that does not name 1002
    assert v.consumed_lots(S, Side.SELL, 1002) == 0 and v.consumed_lots(S, Side.SELL, 1001) == 4
    b = order(Side.BUY, 10, 1002, TimeInForce.IOC)
    send(v, c, b)
    assert fills(ev, b) == [(1002, 6, Liquidity.TAKER)]
    snap(v, c, BIDS, ASKS)            # a snapshot resets every level
    assert v.consumed_lots(S, Side.SELL, 1001) == 0 and v.consumed_lots(S, Side.SELL, 1002) == 0


def test_the_strategys_feed_carries_only_the_replay() -> None:
    """(c) What the router sees: its books are built from the venue's feed, which is the replay;
    our fills never appear in it (no own prints, no depleted level) until the replay changes."""
    c = SimClock(0)
    v, _, ev = make()
    v.clock = c
    seen: list[object] = []
    t1 = 1_000_000
    events = [BookDeltas(V, S, BIDS, ASKS, 0, 0, is_snapshot=True),
              TradeTick(V, S, 1001, 1, Side.BUY, TradeId("t1"), 2 * t1, 0)]
    drv = SimulationDriver(c, iter(events))
    drv.add_venue(v)
    drv.subscribe(seen.append, delayed=False)
    drv.run(until_ns=t1)
    o = order(Side.BUY, 4, 1001, TimeInForce.IOC)
    send(v, c, o)
    drv.run()
    assert fills(ev, o) == [(1001, 4, Liquidity.TAKER)]
    assert seen == events
    assert v.book(S).ask_lots_at(1001) == 4 and v.consumed_lots(S, Side.SELL, 1001) == 4


# ---------------------------------------------------------------- (b) queue position: defects
@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_an_order_resting_where_we_took_queues_behind_what_is_left(mode: str) -> None:
    """Failed before the fix: the sell rested behind the displayed 10 lots, 4 of which we had just
    bought (queue ahead 10, not 6), and kept that error until trades or cancels ate it: a print of
    7 lots then left it 3 lots from the front instead of filling it for 1."""
    v, c, ev = venue(mode, asks=[(1001, 10), (1002, 6)])
    send(v, c, order(Side.BUY, 4, 1001, TimeInForce.IOC))
    s = order(Side.SELL, 2, 1001)
    send(v, c, s)
    assert v.queue_ahead(s.client_order_id) == 6
    trade(v, c, 1001, 7, Side.BUY)
    assert fills(ev, s) == [(1001, 1, Liquidity.MAKER)]
    assert v.queue_ahead(s.client_order_id) == 0


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_replayed_trades_and_their_depth_after_our_take_move_the_queue_once(mode: str) -> None:
    """Failed before the fix (queue ahead 10, then 7). After our take the replay's own trades
    still come off the queue ahead, and the depth message that shows them (and not our take:
    10 -> 7) is explained by them, so it moves nothing."""
    v, c, ev = venue(mode, asks=[(1001, 10), (1002, 6)], queue_model=QueueModel("risk_averse"))
    send(v, c, order(Side.BUY, 4, 1001, TimeInForce.IOC))
    s = order(Side.SELL, 2, 1001)
    send(v, c, s)
    trade(v, c, 1001, 3, Side.BUY)
    assert fills(ev, s) == [] and v.queue_ahead(s.client_order_id) == 3
    delta(v, c, [], [(1001, 7)])
    assert v.queue_ahead(s.client_order_id) == 3
    assert v.consumed_lots(S, Side.SELL, 1001) == 0
    trade(v, c, 1001, 4, Side.BUY)
    assert fills(ev, s) == [(1001, 1, Liquidity.MAKER)]


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_a_level_the_replay_updated_since_our_take_is_queued_as_displayed(mode: str) -> None:
    """Pinned: once the replay names the level again it is the truth, so a new order queues
    behind its displayed size (consumption at that price is reset)."""
    v, c, _ev = venue(mode, asks=[(1001, 10), (1002, 6)])
    send(v, c, order(Side.BUY, 4, 1001, TimeInForce.IOC))
    delta(v, c, [], [(1001, 9)])
    s = order(Side.SELL, 2, 1001)
    send(v, c, s)
    assert v.queue_ahead(s.client_order_id) == 9


@pytest.mark.parametrize("mode", ["lazy", "eager"])
@pytest.mark.parametrize("resting_side", [Side.SELL, Side.BUY])
def test_our_taker_at_our_resting_price_moves_our_queue(mode: str, resting_side: Side) -> None:
    """Failed before the fix: the lots our taker took at the price of our resting order came off
    the queue ahead of it (FIFO), but the queue ahead stayed as it was."""
    v, c, ev = venue(mode, bids=[(1000, 5), (999, 6)], asks=[(1001, 4), (1002, 6)])
    if resting_side is Side.SELL:
        rest, px, taker = order(Side.SELL, 2, 1002), 1002, order(Side.BUY, 7, 1002, TimeInForce.IOC)
    else:
        rest, px, taker = order(Side.BUY, 2, 999), 999, order(Side.SELL, 8, 999, TimeInForce.IOC)
    send(v, c, rest)
    assert v.queue_ahead(rest.client_order_id) == 6
    send(v, c, taker)
    assert sum(lots for p, lots, _ in fills(ev, taker) if p == px) == 3
    assert fills(ev, rest) == []       # our orders never match each other
    assert v.queue_ahead(rest.client_order_id) == 3
    trade(v, c, px, 4, Side.BUY if resting_side is Side.SELL else Side.SELL)
    assert fills(ev, rest) == [(px, 1, Liquidity.MAKER)]


@pytest.mark.parametrize("mode", ["lazy", "eager"])
@pytest.mark.parametrize(("model", "expected", "exact"),
                         [(QueueModel("risk_averse"), 3, Fraction(3)), (QueueModel("power", 2.0), 2, Fraction(45, 29))])
def test_a_cancel_after_our_take_is_split_over_the_queue_that_is_left(mode: str, model: QueueModel,
                                                                      expected: int, exact: Fraction) -> None:
    """Failed before the fix. Our sell rests at 1001 behind 8 lots; 2 more join behind it; we buy 3
    at 1001 (they were ahead of us: 5 ahead, 2 behind, 7 left). The replay then shows the level
    10 -> 6: 4 lots cancelled. Only 2 lots are behind us, so at least 2 of the 4 were ahead:
    risk-averse gives 3 ahead (it gave 6). The power model with front 5, back 2 has
    ``p = 2**2 / (2**2 + 5**2) = 4/29`` of the cancel behind us, ``min(back - p*4, 0) = 0``, so
    ``5 - (25/29) * 4 = 45/29 = 1.552`` lots ahead, kept exactly (it was truncated to 1 before the
    exact queue); ``queue_ahead`` is the nearest whole lot, 2 (the displayed 10 counted our 3 as
    behind us: back 5).

    A print of 2 lots then reaches us by ``2 - 45/29 = 13/29`` lot, which fills nothing (under
    truncation it filled 1); we are at the front and a 1-lot print fills us."""
    v, c, ev = venue(mode, asks=[(1001, 8), (1002, 6)], queue_model=model)
    s = order(Side.SELL, 1, 1001)
    send(v, c, s)
    delta(v, c, [], [(1001, 10)])
    assert v.queue_ahead(s.client_order_id) == 8
    send(v, c, order(Side.BUY, 3, 1001, TimeInForce.IOC))
    assert v.queue_ahead(s.client_order_id) == 5
    delta(v, c, [], [(1001, 6)])
    assert v.queue_ahead(s.client_order_id) == expected
    assert abs(v.queue_ahead_exact(s.client_order_id) - exact) <= Fraction(1, 2**32)
    if model.kind == "power":
        trade(v, c, 1001, 2, Side.BUY)
        assert fills(ev, s) == [] and v.queue_ahead_exact(s.client_order_id) == 0
        trade(v, c, 1001, 1, Side.BUY)
        assert fills(ev, s) == [(1001, 1, Liquidity.MAKER)]


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_two_updates_after_our_take_use_our_consumption_once(mode: str) -> None:
    """The first update after our take resets the consumption at the price; the second sees the
    displayed level only (lazy: the first is still pending when the second comes)."""
    v, c, _ev = venue(mode, asks=[(1001, 8), (1002, 6)], queue_model=QueueModel("risk_averse"))
    s = order(Side.SELL, 1, 1001)
    send(v, c, s)
    delta(v, c, [], [(1001, 10)])
    send(v, c, order(Side.BUY, 3, 1001, TimeInForce.IOC))   # front 5, back 2, 7 left
    delta(v, c, [], [(1001, 9)])    # 1 cancelled: behind us (risk averse), back 1
    assert v.queue_ahead(s.client_order_id) == 5
    delta(v, c, [], [(1001, 5)])    # 4 cancelled out of 9 displayed: front 5, back 4 -> all behind
    assert v.queue_ahead(s.client_order_id) == 5
