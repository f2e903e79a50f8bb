"""The deterministic queue model keeps the queue ahead exactly (docs/venues-sim.md, "Resting and
queue position").

Before, each cancel's expected share was truncated to a whole lot, so the queue ahead of a resting
order lost up to a lot per cancel: over many cancels it ran far ahead of the model's own
expectation (the order looked nearer the front than the model says, an optimistic bias that
grows with the number of cancels). Each test here failed under truncation.

The oracles are closed forms of hftbacktest's expected-value rule
``front - (1-p)*chg + min(back - p*chg, 0)``, ``p = f(back) / (f(back) + f(front))``:

* ``f(x) = x`` (``QueueModel("power", 1.0)``, pro-rata): a cancel of ``chg`` out of a level ``L``
  takes ``front * chg / L`` from the queue ahead and ``back * chg / L`` from behind, so
  ``front / L`` never changes: ``front = front_0 * L / L_0`` after any sequence of cancels;
* ``f(x) = x**2`` with ``front == back``: ``p = 1/2``, the cancel is split evenly, front and back
  stay equal: ``front = front_0 - (cancelled lots) / 2``.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from test_sim_venue import (
    BOOK_A,
    QueueModel,
    S,
    Side,
    SimClock,
    SimulatedVenue,
    delta,
    make,
    order,
    send,
    snap,
)

from marketdata.model import ClientOrderId, OrderEvent

TOL = Fraction(1, 10**6)   # float p and 2**-32-lot units: far below a lot over hundreds of cancels


def resting_bid(model: QueueModel, front: int, level: int, mode: str,
                ) -> tuple[SimulatedVenue, SimClock, list[OrderEvent], ClientOrderId]:
    """Our 1-lot bid at 1000 with ``front`` lots ahead and ``level - front`` joined behind it."""
    v, c, ev = make(queue_model=model)
    snap(v, c, [(1000, front), (990, 50)], BOOK_A)
    if mode == "eager":
        v.book(S)
    o = order(Side.BUY, 1, 1000)
    send(v, c, o)
    delta(v, c, [(1000, level)], [])
    assert v.queue_ahead(o.client_order_id) == front
    return v, c, ev, o.client_order_id


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_pro_rata_cancels_keep_the_queue_ahead_proportional(mode: str) -> None:
    """300 of 1,000 lots ahead of us; 130 cancels of 1 to 11 lots take the level to 300 with no
    trade: the queue ahead is exactly ``300 * 300 / 1000 = 90`` lots, and on the way always
    ``300 * L / 1000``. Under truncation the first cancel already left 299 (not 299.7) and it
    ended at 58: 32 lots, a third of the queue, too near the front."""
    v, c, ev, oid = resting_bid(QueueModel("power", 1.0), 300, 1000, mode)
    level, step = 1000, 0
    while level > 300:
        chg = min(1 + step % 11, level - 300)
        level -= chg
        step += 1
        delta(v, c, [(1000, level)], [])
        expected = Fraction(300 * level, 1000)
        assert abs(v.queue_ahead_exact(oid) - expected) <= TOL, (step, level)
        # the nearest whole lot (an exact half may go either way by the float rounding of p)
        assert abs(v.queue_ahead(oid) - expected) <= Fraction(1, 2)
    assert v.queue_ahead(oid) == 90 and abs(v.queue_ahead_exact(oid) - 90) <= TOL
    assert ev[-1].fill is None   # no print, no fill


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_even_split_cancels_take_half_of_each_cancel_from_the_queue_ahead(mode: str) -> None:
    """Power 2 (the default), 40 ahead and 40 behind: each 1-lot cancel is half ahead, half
    behind, and front and back stay equal. After 55 cancels ``40 - 55/2 = 12.5`` lots are ahead
    (``queue_ahead`` 12: the nearest lot, ties to even). Truncation made the first cancel a whole
    lot ahead (39), and every later one too: it reached 0 after 40 cancels."""
    v, c, _ev, oid = resting_bid(QueueModel("power", 2.0), 40, 80, mode)
    for k in range(1, 56):
        delta(v, c, [(1000, 80 - k)], [])
        assert abs(v.queue_ahead_exact(oid) - (40 - Fraction(k, 2))) <= TOL, k
    assert v.queue_ahead(oid) == 12
    # the level then grows (new orders join behind us) and is cancelled again: still half each
    delta(v, c, [(1000, 25 + 12)], [])           # 12.5 ahead, 24.5 behind
    assert abs(v.queue_ahead_exact(oid) - Fraction(25, 2)) <= TOL


def test_the_exact_queue_is_deterministic_and_clamped_to_the_level() -> None:
    """Same input, same output (no RNG in the deterministic model); and a level that falls below
    the exact queue ahead caps it at the level, whole lots, no fraction left."""
    runs = []
    for _ in range(2):
        v, c, _ev, oid = resting_bid(QueueModel("power", 2.0), 7, 20, "lazy")
        for level in (19, 17, 16, 12, 11):
            delta(v, c, [(1000, level)], [])
        runs.append(v.queue_ahead_exact(oid))
        delta(v, c, [(1000, 1)], [])
        assert v.queue_ahead_exact(oid) == 1
    assert runs[0] == runs[1] and runs[0].denominator > 1
