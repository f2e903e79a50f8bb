"""Routing review 3: router.routing / router.scoring, each test "Failed before." the fix it names.

Books and venues as in ``test_router_routing``: ``spot`` (tick 0.01, lot 0.00001, min notional 5,
maker 0.5 / taker 1 bps unless changed) and ``perp`` (a linear perpetual: tick 0.1, lot 0.001, min
notional 100, maker 0.2 / taker 1 bps); common grid: tick 0.01, lot 0.00001.
"""

from __future__ import annotations

import math
from decimal import Decimal as D

import pytest

from marketdata.errors import InstrumentError
from marketdata.model import Side
from router.routing import RouteRequest
from router.scoring import MarketActivity, StaticCapacity
from tests.router.test_router_routing import ASKS_P, ASKS_S, BIDS_P, BIDS_S, books, cfg_text, make_router

ONLY_SPOT = "[venues.perp]\nenabled = false\n[venues.perp.fees]"
ONLY_PERP = "[venues.spot]\nenabled = false\n[venues.spot.fees]"
S = 1_000_000_000


def _req(side: Side, qty: str, limit: str | None = None, style: str = "take") -> RouteRequest:
    return RouteRequest("BTC-USDT", side, D(qty), None if limit is None else D(limit), style)  # type: ignore[arg-type]


@pytest.mark.parametrize("taker", ["-2", "-0.5"])
def test_a_taker_rebate_does_not_stretch_the_quote_balance(taker: str) -> None:
    """Failed before. Spot alone with a taker *rebate* (negative taker fee) and 100 USDT, buying
    2 BTC at the ask 100.00: the venue holds the whole notional with the order (a rebate is paid
    after the fill, never lent up front; the simulator locks notional x (1 + max(maker, taker,
    0))), so at most 1 BTC = 100.00 USDT can go. The take budget divided the balance by
    (1 + taker fee) as a signed number: with -2 bps it sent 1.00020 BTC = 100.02 USDT against
    100 USDT available (the venue would refuse the IOC for insufficient funds). Fix:
    ``_VenueState.cost_mult`` = 1e8 + max(0, taker fee)."""
    text = cfg_text(spot_fee=taker).replace("[venues.perp.fees]", ONLY_SPOT)
    bks = books([("100.00", "10")], ASKS_P, BIDS_S, BIDS_P)
    r = make_router(text, bks, capacity=StaticCapacity({"spot": {"USDT": D(100)}}))
    d = r.route(_req(Side.BUY, "2"))
    assert [(a.venue, a.quantity, a.price) for a in d.allocations] == [("spot", D("1.00000"), D("100.00"))]
    assert sum((a.quantity * (a.price or 0) for a in d.allocations), D(0)) <= D(100)
    assert d.residual_quantity == D(1)
    assert d.residual_reason == "take incomplete (spot: not enough USDT (100 available))"


@pytest.mark.parametrize("style", ["post", "mixed"])
def test_a_post_left_short_by_the_lot_size_names_it(style: str) -> None:
    """Failed before. The perpetual alone (lot 0.001), posting a buy of 1.5005 BTC (a whole number
    of common lots of 0.00001): it posts 1.500 at its bid 99.9 and the 0.0005 left is below its
    lot. The residual reason said ``post incomplete (no venue with a valid posting price)``,
    though perp had a valid price and was used; it must say the lot size was the limit
    (``perp: below lot size``, as a take says ``perp: lot size``). In ``mixed`` the 0.75 take
    slice is below perp's 100 USDT min notional, dropped, and the whole order posted: same
    residual. Fix: ``Router._post`` names the venues whose lot left the remainder when no other
    reason was noted."""
    text = cfg_text().replace("[venues.spot.fees]", ONLY_PERP)
    d = make_router(text, books(ASKS_S, ASKS_P, BIDS_S, BIDS_P)).route(_req(Side.BUY, "1.5005", style=style))
    assert [(a.venue, a.style, a.quantity, a.price) for a in d.allocations] == [
        ("perp", "post", D("1.500"), D("99.9"))]
    assert d.residual_quantity == D("0.0005")
    assert d.residual_reason == "post incomplete (perp: below lot size)"
    assert d.allocated_quantity + d.residual_quantity == D("1.5005")


def test_smart_sell_with_a_penalty_above_100_percent_keeps_the_price_order() -> None:
    """Failed before. ``smart`` sell of 3 BTC, miss_cost_bps = 10000, weights.fill = 2 and an IOC
    hit-ratio prior of 1:99, so both venues' penalty is 2 x 0.99 x 10000 = 19800 bps: the sell
    key multiplier 1e8 - fee - penalty went negative, which reverses the price order (a lower
    bid got the lower, better key). The sweep sold all 3 BTC on perp at 99.5 although spot bids
    99.90 for 1. The multiplier is now floored at 1 (a sell's net proceeds cannot go below zero;
    such venues rank after all others, by raw price): spot 1 at 99.90 first, then perp's 99.5
    beats spot's 99.00 for the other 2."""
    extra = ("miss_cost_bps = 10000\n[routing.weights]\nfill = 2\n"
             "[routing.fill_prior]\ntake_alpha = 1\ntake_beta = 99\n")
    bks = books([("100.10", "1")], [("100.1", "1")], [("99.90", "1"), ("99.00", "1")], [("99.5", "3")])
    d = make_router(cfg_text("smart", extra=extra), bks).route(_req(Side.SELL, "3"))
    assert [(a.venue, a.quantity, a.price) for a in d.allocations] == [
        ("spot", D("1.00000"), D("99.90")), ("perp", D("2.000"), D("99.5"))]
    assert d.residual_lots == 0


@pytest.mark.parametrize(("side", "limit"), [(Side.BUY, "100.00999999999999999999999999999"),
                                             (Side.SELL, "99.990000000000000000000000000001")])
def test_a_limit_with_more_than_28_digits_is_not_rounded_through(side: Side, limit: str) -> None:
    """Failed before. A buy limited at 100.00999999999999999999999999999 (just below 100.01) must
    not take the 100.01 ask; a sell limited just above 99.99 must not hit the 99.99 bid. The
    limit was divided by the common tick in Decimal, which rounds to 28 significant digits:
    10000.999...9 became 10001 before the floor, so the buy took 1 BTC at 100.01, through its
    limit (the sell likewise at 99.99). Now an exact rational division, as
    ``Instrument.price_to_ticks`` does."""
    bks = books([("100.01", "1")], [("100.1", "1")], [("99.99", "1")], [("99.9", "3")])
    d = make_router(cfg_text(), bks).route(_req(side, "1", limit))
    assert not d.allocations, [(a.venue, a.price) for a in d.allocations]
    assert d.residual_quantity == D(1) and d.residual_reason is not None
    assert "limit price" in d.residual_reason


def test_an_off_lot_quantity_with_more_than_28_digits_raises() -> None:
    """Failed before. 1.000000000000000000000000000001 BTC is not a multiple of the 0.00001 common
    lot, so it must raise ``InstrumentError``; the 28-digit Decimal division made it exactly
    100000 lots: the router routed 1 BTC, allocated + residual (1.00000) != requested."""
    r = make_router(cfg_text(), books(ASKS_S, ASKS_P, BIDS_S, BIDS_P))
    with pytest.raises(InstrumentError, match="not a multiple of the common lot"):
        r.route(_req(Side.BUY, "1.000000000000000000000000000001"))


def test_a_request_that_raises_takes_no_decision_id() -> None:
    """Failed before. Decision ids are ``RD-000001``, ``RD-000002``, ... per router; a request the
    router refuses (a quantity off the common lot) is no decision, yet the counter was bumped
    before the check, so the next decision was ``RD-000002`` and the journal showed a gap."""
    r = make_router(cfg_text(), books(ASKS_S, ASKS_P, BIDS_S, BIDS_P))
    with pytest.raises(InstrumentError):
        r.route(_req(Side.BUY, "0.000001"))
    assert r.route(_req(Side.BUY, "1")).decision_id == "RD-000001"
    assert r.route(_req(Side.SELL, "1")).decision_id == "RD-000002"


def test_an_emptied_side_counts_as_a_depletion() -> None:
    """Failed before. ``MarketActivity`` counts a depletion of the side a taker would hit when its
    best price moves away or its size shrinks; when the whole side vanished (best ask gone:
    ``ask=None``) nothing was counted, so the latency haircut saw a quieter book than one whose
    best ask merely shrank. (``QueueOutflow`` already counts an emptied side.) Mirrored for bids."""
    a = MarketActivity(tau_ns=S)
    a.on_top(0, 100, 5, 101, 5)
    a.on_top(S // 10, None, 0, None, 0)   # both sides emptied
    assert a.depletion_rate_hz(Side.BUY, S // 10) == pytest.approx(1.0)
    assert a.depletion_rate_hz(Side.SELL, S // 10) == pytest.approx(1.0)
    a.on_top(2 * S // 10, 100, 5, 101, 5)   # liquidity back: no depletion
    assert a.depletion_rate_hz(Side.BUY, 2 * S // 10) == pytest.approx(math.exp(-0.1))


def test_fastest_breaks_a_delay_tie_by_price_not_by_config_order() -> None:
    """Failed before (7 of the 776 golden payloads re-pinned with the fix). ``fastest`` orders
    the sweep by expected delay,
    "then p * (1 + taker_fee)" (docs/routing.md), but each venue gets its own rank even when
    delays are equal, so a tie goes to the venue listed first: with both venues at 25 ms
    (default latency config, same book time) a 1 BTC buy takes spot's 100.50 instead of perp's
    100.0."""
    bks = books([("100.50", "2")], [("100.0", "2")], [("99.00", "1")], [("99.0", "3")])
    d = make_router(cfg_text("fastest"), bks).route(_req(Side.BUY, "1"))
    assert d.score("spot").factors["latency"]["delay_ms"] == d.score("perp").factors["latency"]["delay_ms"]
    assert [(a.venue, a.price) for a in d.allocations] == [("perp", D("100.0"))]


@pytest.mark.parametrize(("limit", "label"), [(None, "slippage bound"), ("101.00", "slippage bound"),
                                              ("100.05", "limit price")])
def test_a_take_stopped_by_the_slippage_bound_says_so(limit: str | None, label: str) -> None:
    """Failed before (flagged by the router review): the sweep has one bound, the tighter of the
    limit and `max_slippage_bps`, and a venue stopped by the slippage bound was reported as stopped
    by the `limit price` (the explanation named the bound, the residual reason did not). 10 bps
    from the best ask of 100.00 is 100.10: levels at 100.20 are out of it."""
    bks = books([("100.00", "1"), ("100.20", "5")], [("100.00", "1"), ("100.20", "5")])
    d = make_router(cfg_text("best_price", "max_slippage_bps = 10"), bks).route(_req(Side.BUY, "3", limit))
    assert d.residual_quantity == D("1") and d.residual_reason is not None
    assert label in d.residual_reason and ("limit price" in d.residual_reason) == (label == "limit price"), \
        d.residual_reason
    assert {d.score(v).factors["score"].get("take_stop") for v in ("spot", "perp")} == {label}
