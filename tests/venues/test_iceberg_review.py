"""Review of the simulated venue's native icebergs (docs/venues-sim.md "Native icebergs"): paths
the existing tests do not walk, checked against the documented rules. Both book modes (lazy and
handed out) must agree."""

from __future__ import annotations

import pytest
from test_sim_iceberg import MODES, ice, status, venue
from test_sim_venue import Liquidity, OrderStatus, Side, delta, fills, order, run_now, trade


@pytest.mark.parametrize("mode", MODES)
def test_checked_not_a_bug_an_arriving_iceberg_takes_then_rests_one_slice(mode: str) -> None:
    """Checked, not a bug: taking is not limited by the display (the crossing part of 14 lots takes
    4 + 6), and what rests shows a slice of min(display, remaining) = 3 of the 4 left, at the
    front of its new level; a print there fills only that slice."""
    o = ice(Side.BUY, 14, 1002, 3)
    v, c, ev = venue(mode, o)
    assert fills(ev, o) == [(1001, 4, Liquidity.TAKER), (1002, 6, Liquidity.TAKER)]
    assert v.queue_ahead(o.client_order_id) == 0
    trade(v, c, 1002, 10, Side.SELL)
    assert fills(ev, o)[-1] == (1002, 3, Liquidity.MAKER)
    assert status(v, o) == (OrderStatus.PARTIALLY_FILLED, 14, 13)


@pytest.mark.parametrize("mode", MODES)
def test_checked_not_a_bug_a_native_replace_through_the_book_takes_then_shows_a_fresh_slice(mode: str) -> None:
    """Checked, not a bug: a native modify to a crossing price loses priority, takes what it crosses
    (4 at 1001, as taker) and rests the rest behind a fresh slice of the display."""
    o = ice(Side.BUY, 14, 1000, 3)
    v, c, ev = venue(mode, o, native_modify=True)
    run_now(v.replace(o.client_order_id, price_ticks=1001))
    c.advance_to(c.now_ns())
    assert fills(ev, o) == [(1001, 4, Liquidity.TAKER)]
    trade(v, c, 1001, 10, Side.SELL)
    assert fills(ev, o)[-1] == (1001, 3, Liquidity.MAKER)
    assert status(v, o) == (OrderStatus.PARTIALLY_FILLED, 14, 7)


@pytest.mark.parametrize("mode", MODES)
def test_checked_not_a_bug_the_book_moving_through_fills_an_iceberg_as_a_plain_order(mode: str) -> None:
    """Checked, not a bug (as documented): bids of 2 at 1003 and 2 at 1002 reach our asks at 1002;
    the iceberg at the front fills 4 at its price, as a plain order would, eating a refreshed slice,
    and the plain order behind it gets nothing."""
    o, p = ice(Side.SELL, 20, 1002, 3), order(Side.SELL, 5, 1002)
    v, c, ev = venue(mode, o, p)
    delta(v, c, [(1003, 2), (1002, 2)], [(1001, 0), (1002, 0), (1003, 0)])
    assert sum(lots for _, lots, _ in fills(ev, o)) == 4 and not fills(ev, p)
    assert status(v, o) == (OrderStatus.PARTIALLY_FILLED, 20, 4)
    trade(v, c, 1002, 10, Side.BUY)        # 1003 and 1002 ask levels are gone: 2 left of that slice
    assert fills(ev, o)[-1] == (1002, 2, Liquidity.MAKER)
