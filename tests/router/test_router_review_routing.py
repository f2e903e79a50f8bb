"""Routing review: residual reasons, the mixed split and the take/post invariants.

Books and venues as in ``test_router_routing``: ``spot`` (tick 0.01, lot 0.00001, min notional 5,
maker 0.5 / taker 1 bps) and ``perp`` (a linear perpetual: tick 0.1, lot 0.001, min notional 100,
maker 0.2 / taker 1 bps).

Three of these bugs (mixed over-allocation of a venue's cap and funds, a dropped slice reported as
a cap stop, a post cut by cap or funds reported as "no valid posting price") were pinned in the
journal payloads of ``test_router_payload_golden.py``; the golden digests were re-pinned with
their fixes.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketdata.book import L2Book
from marketdata.model import Side
from router.routing import RouteRequest
from router.scoring import StaticCapacity
from tests.router.test_router_routing import ASKS_P, ASKS_S, BIDS_P, BIDS_S, INSTS, T0, books, cfg_text, make_router

ONLY_SPOT = "[venues.perp]\nenabled = false\n[venues.perp.fees]"
ONLY_PERP = "[venues.spot]\nenabled = false\n[venues.spot.fees]"


def sell(qty: str, style: str = "take", urgency: float = 0.5) -> RouteRequest:
    return RouteRequest("BTC-USDT", Side.SELL, D(qty), None, style, urgency)  # type: ignore[arg-type]


def buy(qty: str, style: str = "take", urgency: float = 0.5) -> RouteRequest:
    return RouteRequest("BTC-USDT", Side.BUY, D(qty), None, style, urgency)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_quantity", [None, "5"])
def test_review_perp_sell_short_of_margin_names_the_funds(max_quantity: str | None) -> None:
    """Selling 3 BTC on the perpetual alone (bids 99.9 x 4, 99.8 x 3) with 150 USDT of margin:
    the margin caps the sell at the best bid, floor(150 / (99.9 x 1.0001) / 0.001) = 1501 lots =
    1.501 BTC at 99.9, residual 1.499. The residual reason must say the funds were the limit
    (``perp: not enough USDT (150 available)``), as for a spot buy's budget; it said
    ``perp: venue cap/balance``, or with ``max_quantity = 5`` (not binding)
    ``perp: venue cap max_quantity 5 reached``."""
    text = cfg_text().replace("[venues.spot.fees]", ONLY_PERP)
    if max_quantity:
        text = text.replace("[venues.perp.fees]", f'[venues.perp]\nmax_quantity = "{max_quantity}"\n'
                            "[venues.perp.fees]")
    cap = StaticCapacity({"perp": {"USDT": D("150")}})
    d = make_router(text, books(ASKS_S, ASKS_P, BIDS_S, BIDS_P), capacity=cap).route(sell("3"))
    assert [(a.venue, a.quantity, a.price) for a in d.allocations] == [("perp", D("1.501"), D("99.9"))]
    assert d.residual_quantity == D("1.499")
    assert d.residual_reason == "take incomplete (perp: not enough USDT (150 available))"


def test_review_perp_sell_with_no_affordable_lot_is_short_of_funds_only() -> None:
    """0.05 USDT of margin affords floor(0.05 / (99.9 x 1.0001) / 0.001) = 0 lots of the
    perpetual: nothing is placed, the whole 3 BTC is residual, and the only reason is funds, so
    ``short_of_funds_only`` must be true (as for a spot buy with too little quote); the reason
    was ``perp: venue cap/balance`` and ``short_of_funds_only`` false."""
    text = cfg_text().replace("[venues.spot.fees]", ONLY_PERP)
    cap = StaticCapacity({"perp": {"USDT": D("0.05")}})
    d = make_router(text, books(ASKS_S, ASKS_P, BIDS_S, BIDS_P), capacity=cap).route(sell("3"))
    assert not d.allocations and d.residual_quantity == D(3)
    assert d.residual_reason == "take incomplete (perp: not enough USDT (0.05 available))"
    assert d.short_of_funds_only


@pytest.mark.parametrize(("urgency", "take", "post"), [(0.29, "0.29", "0.71"), (0.57, "0.57", "0.43"),
                                                        (0.0, "0", "1"), (1.0, "1", "0")])
def test_review_mixed_urgency_is_floored_as_written(urgency: float, take: str, post: str) -> None:
    """A mixed buy of 1 BTC (100000 common lots of 0.00001) at urgency 0.29 takes
    floor(0.29 x 100000) = 29000 lots = 0.29 BTC now (spot ask 100.00 x 1) and posts 0.71. The
    float product 0.29 * 100000 is 28999.999999999996, so the router took 0.28999 and posted
    0.71001; likewise 0.57 gave 0.56999. Urgency 0 posts everything, 1 takes everything."""
    d = make_router(cfg_text(), books(ASKS_S, ASKS_P, BIDS_S, BIDS_P)).route(buy("1", "mixed", urgency))
    taken = sum((a.quantity for a in d.allocations if a.style == "take"), D(0))
    posted = sum((a.quantity for a in d.allocations if a.style == "post"), D(0))
    assert (taken, posted) == (D(take), D(post))
    assert d.residual_lots == 0
    assert f"urgency {urgency:g} -> take {D(take)} now, post {D(post)}" in d.explanation


@pytest.mark.parametrize("limit", ["cap", "balance"])
def test_review_mixed_take_and_post_share_the_venue_cap_and_funds(limit: str) -> None:
    """Spot alone (asks 100.00 x 1, bids 99.90 x 1), a mixed buy of 2 BTC at urgency 0.5: take
    1 BTC at 100.00 now, post the other 1 at 99.90.

    * ``max_quantity = 1`` on spot: the take uses the whole cap, so the post must place nothing
      (residual 1 BTC, ``venue cap max_quantity 1 reached``); the router posted 1 more BTC there,
      2 BTC on a venue capped at 1.
    * 150 USDT on spot: the take locks 1 x 100.00 x 1.0001 = 100.01, leaving 49.99, which
      affords floor(49.99 / (99.90 x 1.0001) / 0.00001) lots = 0.50035 BTC posted (funds for a
      post are counted at the larger of the maker and taker fees); the router posted 1 BTC
      (99.905 USDT) on top of the take: 199.9 USDT against 150."""
    text = cfg_text().replace("[venues.perp.fees]", ONLY_SPOT)
    cap = None
    if limit == "cap":
        text = text.replace("[venues.spot.fees]", '[venues.spot]\nmax_quantity = "1"\n[venues.spot.fees]')
    else:
        cap = StaticCapacity({"spot": {"USDT": D("150")}})
    d = make_router(text, books(ASKS_S, ASKS_P, BIDS_S, BIDS_P), capacity=cap).route(buy("2", "mixed", 0.5))
    on_spot = [(a.style, a.quantity) for a in d.allocations]
    if limit == "cap":
        assert on_spot == [("take", D("1.00000"))]
        assert d.residual_quantity == D(1)
    else:
        assert on_spot == [("take", D("1.00000")), ("post", D("0.50035"))]
        spent = sum(a.quantity * (a.price or 0) * (1 + D(1) / 10_000)
                    for a in d.allocations)
        assert spent <= D(150)


def test_review_dropped_slice_is_not_reported_as_the_venue_cap() -> None:
    """Buy 1 BTC: perp (ask 100.0 x 0.5, ``max_quantity = 3``) is cheapest, but 0.5 x 100.0 = 50
    USDT is below its 100 USDT min notional, so its slice is dropped and re-offered to spot (ask
    100.50 x 0.2): 0.2 BTC on spot, residual 0.8. The reason must not say perp's cap of 3 was
    reached (it took nothing); it said ``perp: venue cap max_quantity 3 reached``, because a
    dropped venue is re-swept with a zero cap and the cap stop is rendered as max_quantity."""
    text = cfg_text().replace("[venues.perp.fees]", '[venues.perp]\nmax_quantity = "3"\n[venues.perp.fees]')
    d = make_router(text, books([("100.50", "0.2")], [("100.0", "0.5")])).route(buy("1"))
    assert [(a.venue, a.quantity) for a in d.allocations] == [("spot", D("0.20000"))]
    assert d.residual_quantity == D("0.8")
    assert d.residual_reason is not None and "max_quantity" not in d.residual_reason


def test_review_post_cut_by_the_balance_says_so() -> None:
    """Post a 2 BTC buy on spot alone (bid 99.90) with 150 USDT: it affords floor(150 / (99.90 x
    1.0001) / 0.00001) lots = 1.50135 BTC (the larger of the two fees), posted; residual 0.49865.
    The reason must name the funds (``spot: not enough USDT (150 available)``); it said ``post
    incomplete (no venue with a valid posting price)``, though spot had a valid price and was used."""
    text = cfg_text().replace("[venues.perp.fees]", ONLY_SPOT)
    cap = StaticCapacity({"spot": {"USDT": D("150")}})
    d = make_router(text, books(ASKS_S, ASKS_P, BIDS_S, BIDS_P), capacity=cap).route(buy("2", "post"))
    assert [(a.venue, a.quantity, a.price) for a in d.allocations] == [("spot", D("1.50135"), D("99.90"))]
    assert d.residual_quantity == D("0.49865")
    assert d.residual_reason is not None and "not enough USDT (150 available)" in d.residual_reason


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from([Side.BUY, Side.SELL]), st.sampled_from(["best_price", "lowest_cost", "fastest", "smart"]),
       st.sampled_from(["take", "post"]),
       st.lists(st.tuples(st.integers(0, 40), st.integers(1, 300_000)), max_size=5),
       st.lists(st.tuples(st.integers(0, 40), st.integers(1, 3000)), max_size=5),
       st.lists(st.tuples(st.integers(1, 40), st.integers(1, 300_000)), max_size=3),
       st.lists(st.tuples(st.integers(1, 40), st.integers(1, 3000)), max_size=3),
       st.integers(1, 800_000), st.one_of(st.none(), st.integers(-30, 50)),
       st.one_of(st.none(), st.integers(0, 2000)), st.one_of(st.none(), st.integers(0, 3000)),
       st.one_of(st.none(), st.sampled_from(["1", "2.5"])), st.one_of(st.none(), st.sampled_from(["0.5", "3"])),
       st.one_of(st.none(), st.sampled_from(["1", "10"])))
def test_review_take_and_post_invariants_both_sides(
        side: Side, strategy: str, style: str, spot_lv: list[tuple[int, int]], perp_lv: list[tuple[int, int]],
        spot_own: list[tuple[int, int]], perp_own: list[tuple[int, int]], qty_lots: int, limit_off: int | None,
        spot_bal: int | None, perp_bal: int | None, spot_max: str | None, perp_max: str | None,
        slip: str | None) -> None:
    """Random two-sided books on two venues with different ticks and lots, buys and sells, with
    limits, slippage bounds, caps and balances: allocated + residual = requested (a residual has
    a reason); no excluded venue is allocated; every slice passes the venue's minimums; a take is
    within the limit and the slippage bound from the best eligible opposite price; a post is
    within the limit and never at or through its venue's opposite best; no venue beyond its
    max_quantity, a spot sell beyond its base balance, a buy beyond its quote balance."""
    sgn = int(side)
    opp_s = {1_000_000 + sgn * 2 * k: q for k, q in spot_lv}      # the side we would take
    opp_p = {100_000 + sgn * k: q for k, q in perp_lv}
    own_s = {1_000_000 - sgn * 3 * k: q for k, q in spot_own}     # our side, strictly behind
    own_p = {100_000 - sgn * k: q for k, q in perp_own}
    bs, bp = L2Book("spot", "BTC-USDT"), L2Book("perp", "BTC-USDT")
    for b, opp, own in ((bs, opp_s, own_s), (bp, opp_p, own_p)):
        if side is Side.BUY:
            b.apply_snapshot(own.items(), opp.items(), ts_event=T0)
        else:
            b.apply_snapshot(opp.items(), own.items(), ts_event=T0)
    balances: dict[str, dict[str, D]] = {}
    if spot_bal is not None:
        balances["spot"] = {"USDT": D(spot_bal) * 10, "BTC": D(spot_bal) / 100}
    if perp_bal is not None:
        balances["perp"] = {"USDT": D(perp_bal) * 10}
    text = cfg_text(strategy, extra=f"max_slippage_bps = {slip}" if slip else "", spot_fee="7.5", perp_fee="4.5")
    for v, mx in (("spot", spot_max), ("perp", perp_max)):
        if mx:
            text = text.replace(f"[venues.{v}.fees]", f'[venues.{v}]\nmax_quantity = "{mx}"\n[venues.{v}.fees]')
    r = make_router(text, {"spot": bs, "perp": bp}, capacity=StaticCapacity(balances))
    qty = D(qty_lots) * D("0.00001")
    limit = None if limit_off is None else D("10000.00") + sgn * D(limit_off) / 10
    d = r.route(RouteRequest("BTC-USDT", side, qty, limit, style, 0.5))  # type: ignore[arg-type]
    assert d.allocated_quantity + d.residual_quantity == qty
    assert not d.residual_lots or d.residual_reason
    opps = [INSTS[n].ticks_to_price(o) for n, b in (("spot", bs), ("perp", bp))
            if d.score(n).excluded_reason is None
            and (o := b.best_ask_ticks if side is Side.BUY else b.best_bid_ticks) is not None]
    per: dict[str, list[D]] = {}
    for a in d.allocations:
        inst = INSTS[a.venue]
        assert d.score(a.venue).excluded_reason is None
        assert a.lots > 0 and inst.check_order(a.price_ticks, a.lots) is None
        assert a.price is not None and a.price_ticks is not None
        if limit is not None:
            assert a.price <= limit if side is Side.BUY else a.price >= limit
        if a.style == "take":
            if slip and opps:
                bound = (min(opps) if side is Side.BUY else max(opps)) * (1 + sgn * D(slip) / 10_000)
                assert a.price <= bound if side is Side.BUY else a.price >= bound
        else:
            book = bs if a.venue == "spot" else bp
            o = book.best_ask_ticks if side is Side.BUY else book.best_bid_ticks
            if o is not None:
                assert a.price_ticks < o if side is Side.BUY else a.price_ticks > o
        fee = (D("7.5") if a.venue == "spot" else D("4.5")) if a.style == "take" else (
            D("0.5") if a.venue == "spot" else D("0.2"))
        per.setdefault(a.venue, []).append(a.quantity * (a.price * (1 + fee / 10_000) if side is Side.BUY else 1))
        per.setdefault(a.venue + "/qty", []).append(a.quantity)
    for v, mx in (("spot", spot_max), ("perp", perp_max)):
        total = sum(per.get(v + "/qty", []), D(0))
        if mx:
            assert total <= D(mx)
        bal = balances.get(v)
        if bal is not None:
            if side is Side.BUY:
                assert sum(per.get(v, []), D(0)) <= bal["USDT"]
            elif v == "spot":
                assert total <= bal["BTC"]


def test_review_mixed_take_and_post_share_the_rate_limit_headroom() -> None:
    """Spot alone with order headroom 1 (the rate limiter lets one more order through now): a mixed
    buy of 2 at urgency 0.5 takes 1 there and cannot also post on it (two orders); the post part
    is a residual saying why. With headroom 2 both go."""
    bks = books(ASKS_S, ASKS_P, BIDS_S, BIDS_P)
    one = make_router(cfg_text().replace("[venues.perp.fees]", ONLY_SPOT), bks,
                      capacity=StaticCapacity({}, headroom={"spot": 1}))
    d = one.route(buy("2", "mixed", 0.5))
    assert [(a.style, a.quantity) for a in d.allocations] == [("take", D("1.00000"))]
    assert d.residual_reason is not None and "no order headroom left after the take" in d.residual_reason
    two = make_router(cfg_text().replace("[venues.perp.fees]", ONLY_SPOT), bks,
                      capacity=StaticCapacity({}, headroom={"spot": 2}))
    assert [a.style for a in two.route(buy("2", "mixed", 0.5)).allocations] == ["take", "post"]
