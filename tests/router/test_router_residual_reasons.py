"""Residual reasons and the take budget: each test "Failed before." the fix it names, or says
what it guards.

Books and venues as in ``test_router_routing``: ``spot`` (tick 0.01, lot 0.00001, min notional 5,
maker 0.5 / taker 1 bps unless changed) and ``perp`` (a linear perpetual: tick 0.1, lot 0.001, min
notional 100, maker 0.2 / taker 1 bps); common grid: tick 0.01, lot 0.00001. The last tests route
against a :class:`~venues.sim.SimulatedVenue` and send the allocation to it.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    Instrument,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    VenueId,
)
from router.config import load_config_text
from router.routing import Router, RouteRequest, RoutingDecision
from router.scoring import StaticCapacity
from tests.router.test_router_routing import books, cfg_text, make_router
from venues.base import FeeSchedule, FeeTier, run_now
from venues.sim import SimulatedVenue, SimVenueConfig

ONLY_SPOT = "[venues.perp]\nenabled = false\n[venues.perp.fees]"


def _req(side: Side, qty: str, limit: str | None = None, style: str = "take", urgency: float = 0.5
         ) -> RouteRequest:
    return RouteRequest("BTC-USDT", side, D(qty), None if limit is None else D(limit), style,  # type: ignore[arg-type]
                        urgency)


# ---------------------------------------------------------------- 1. the slippage bound, named

@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_a_take_stopped_by_max_slippage_bps_names_the_bound_the_key_and_the_reference(side: Side) -> None:
    """Failed before. 10 bps from the best ask 100.00 is 100.10 (from the best bid 100.00:
    99.90), so the levels at 100.20 / 99.80 are out of the bound. The residual reason said only
    ``spot: slippage bound`` (before commit 6c99619 ``limit price``): not which bound, nor that
    it is ``max_slippage_bps`` and not the order's own limit. It now reads
    ``spot: slippage bound 100.10 (max_slippage_bps 10 from the best ask 100.00)``; the factors'
    ``take_stop`` keeps the short label, distinct from ``limit price``."""
    if side is Side.BUY:
        bks = books([("100.00", "1"), ("100.20", "5")], [("100.0", "1"), ("100.2", "5")])
        bound, best = "100.10", "best ask 100.00"
    else:
        bks = books([("101.00", "1")], [("101.0", "1")], [("100.00", "1"), ("99.80", "5")],
                    [("100.0", "1"), ("99.8", "5")])
        bound, best = "99.90", "best bid 100.00"
    d = make_router(cfg_text("best_price", "max_slippage_bps = 10"), bks).route(_req(side, "3", None))
    assert d.residual_quantity == D(1)
    label = f"slippage bound {bound} (max_slippage_bps 10 from the {best})"
    assert d.residual_reason == f"take incomplete (spot: {label}; perp: {label})"
    assert {d.score(v).factors["score"].get("take_stop") for v in ("spot", "perp")} == {"slippage bound"}
    # the explanation's wording of the bound is unchanged
    assert f"slippage bound {bound} (10 bps from best 100.00)" in d.explanation


def test_a_take_stopped_by_its_own_tighter_limit_still_says_limit_price() -> None:
    """The order's limit 100.05 is tighter than the slippage bound 100.10: the stop is the
    limit's, and the reason does not mention max_slippage_bps (guards the fix above)."""
    bks = books([("100.00", "1"), ("100.20", "5")], [("100.0", "1"), ("100.2", "5")])
    d = make_router(cfg_text("best_price", "max_slippage_bps = 10"), bks).route(_req(Side.BUY, "3", "100.05"))
    assert d.residual_reason == "take incomplete (spot: limit price; perp: limit price)"


# ---------------------------------------------------------------- 2. mixed, both parts short

def test_a_mixed_child_short_on_both_parts_reports_both_reasons() -> None:
    """Failed before. Spot alone, 150 USDT, a mixed buy of 3 BTC at urgency 1 with limit 100.00:
    the take gets the 1 BTC ask at 100.00 (the 100.20 level is above the limit), the post of the
    other 2 BTC at the bid is cut short by the funds the take left. The reason named only the
    post (``post incomplete (spot: not enough USDT (150 available))``); the take's own stop (the
    limit price) was lost."""
    text = cfg_text().replace("[venues.perp.fees]", ONLY_SPOT)
    bks = books([("100.00", "1"), ("100.20", "5")], [("100.0", "1")], [("99.90", "1")], [("99.9", "1")])
    r = make_router(text, bks, capacity=StaticCapacity({"spot": {"USDT": D(150)}}))
    d = r.route(_req(Side.BUY, "3", "100.00", "mixed", 1.0))
    # 100.01 USDT with the fee for the take, the 49.99 left post 0.50035 at 99.90 (fee 1 bps)
    assert [(a.style, a.quantity, a.price) for a in d.allocations] == [
        ("take", D("1.00000"), D("100.00")), ("post", D("0.50035"), D("99.90"))]
    assert d.residual_quantity == D("1.49965")
    assert d.residual_reason == ("take incomplete (spot: limit price); "
                                 "post incomplete (spot: not enough USDT (150 available))")
    assert not d.short_of_funds_only   # something was placed


def _decision(reason: str, placed: bool = False) -> RoutingDecision:
    """A bare decision with a residual ``reason`` (the public constructor, as a journal reader has)."""
    d = make_router(cfg_text(), books([("100.00", "1")], [("100.0", "1")])).route(_req(Side.BUY, "1"))
    return RoutingDecision(d.decision_id, d.ts_ns, d.request, d.strategy, [],
                           list(d.allocations) if placed else [], 100000, reason)


@pytest.mark.parametrize(("reason", "funds_only"), [
    # the post was offered everything (the take's shortfall too): its reasons decide
    ("take incomplete (spot: limit price); post incomplete (spot: not enough USDT (0.5 available))", True),
    ("take incomplete (spot: not enough USDT (0.5 available)); "
     "post incomplete (spot: not enough USDT (0.5 available); perp: no available USDT balance)", True),
    ("take incomplete (spot: not enough USDT (0.5 available)); post incomplete (spot: below lot size)", False),
    # unchanged: single-part reasons
    ("take incomplete (spot: not enough USDT (0.5 available); perp: no available USDT balance)", True),
    ("take incomplete (spot: not enough USDT (0.5 available); perp: book depth)", False),
    ("post incomplete (spot: not enough USDT (0.5 available))", True),
])
def test_short_of_funds_only_reads_the_post_part_of_a_two_part_reason(reason: str, funds_only: bool) -> None:
    """``short_of_funds_only`` (the engine waits for funds before routing the parent's next child
    when it is true) must judge a two-part mixed reason as it judged the post's reason alone
    before: a take stopped by its limit whose post found no funds is still waiting for funds."""
    assert _decision(reason).short_of_funds_only is funds_only
    assert not _decision(reason, placed=True).short_of_funds_only


def test_a_mixed_child_with_nothing_placed_for_lack_of_funds_is_still_short_of_funds_only() -> None:
    """Spot alone with 0.5 USDT, a mixed buy of 1 BTC at urgency 0.5 limited to 99.95: the take
    stops at the limit (best ask 100.00) and the post at the bid 99.90 affords 500 lots, below the
    minimum notional. Both parts are named now, and the decision still counts as short of funds
    only (the post's reason alone decided it before; the engine then waits for funds)."""
    text = cfg_text().replace("[venues.perp.fees]", ONLY_SPOT)
    bks = books([("100.00", "1")], [("100.0", "1")], [("99.90", "1")], [("99.9", "1")])
    r = make_router(text, bks, capacity=StaticCapacity({"spot": {"USDT": D("0.5")}}))
    d = r.route(_req(Side.BUY, "1", "99.95", "mixed", 0.5))
    assert not d.allocations
    assert d.residual_reason == ("take incomplete (spot: limit price); "
                                 "post incomplete (spot: not enough USDT (0.5 available): affords 500 lots, "
                                 "notional 0.4995000 below min_notional 5)")
    assert d.short_of_funds_only


def test_a_mixed_take_dropped_for_a_minimum_leaves_the_post_reason_alone() -> None:
    """A take whose only shortfall is its slice dropped for a venue minimum was posted whole: the
    residual reason stays the post's (as ``test_router_review3`` pins for the lot-size case), and
    the engine's funds wait is unchanged: 0.5 USDT, the take's slice below min notional 5."""
    text = cfg_text().replace("[venues.perp.fees]", ONLY_SPOT)
    bks = books([("100.00", "1")], [("100.0", "1")], [("99.90", "1")], [("99.9", "1")])
    r = make_router(text, bks, capacity=StaticCapacity({"spot": {"USDT": D("0.5")}}))
    d = r.route(_req(Side.BUY, "1", None, "mixed", 0.5))
    assert not d.allocations
    assert d.residual_reason == ("post incomplete (spot: not enough USDT (0.5 available): affords 500 lots, "
                                 "notional 0.4995000 below min_notional 5)")
    assert d.short_of_funds_only


# ---------------------------------------------------------------- 3. the take budget vs the simulator's hold

SIM = VenueId("sim")
SYM = Symbol("BTC-USDT")
T0 = 1_000_000_000_000
SIM_INST = Instrument(SIM, SYM, "BTCUSDT", "BTC", "USDT", D("0.1"), D("0.001"), D("0.001"), D("5"))
ASK_TICKS, ASK_LOTS = 1001, 50000   # 100.1 x 50 BTC


def _sim_and_router(maker: str, taker: str, usdt: D) -> tuple[SimulatedVenue, SimClock, list[OrderEvent], Router]:
    clock = SimClock(T0)
    venue = SimulatedVenue(SimVenueConfig(
        venue=SIM, instruments=[SIM_INST], balances={"USDT": usdt, "BTC": D(0)},
        fees=FeeSchedule((FeeTier(maker_bps=D(maker), taker_bps=D(taker)),))), clock)
    events: list[OrderEvent] = []
    venue.set_event_handler(events.append)
    venue.on_market_event(BookDeltas(SIM, SYM, [(1000, 50000)], [(ASK_TICKS, ASK_LOTS)], T0, T0, is_snapshot=True))
    book = L2Book("sim", "BTC-USDT")
    book.apply_snapshot([(1000, 50000)], [(ASK_TICKS, ASK_LOTS)], ts_event=T0)
    cfg = load_config_text(f'[routing]\nstrategy = "lowest_cost"\n[venues.sim.fees]\nmaker_bps = {maker}\n'
                           f"taker_bps = {taker}\n")
    free = run_now(venue.balances())["USDT"].free
    router = Router(cfg.routing, cfg.venues, {"sim": SIM_INST}, {"sim": book}, clock,
                    StaticCapacity({"sim": {"USDT": free}}))
    return venue, clock, events, router


def _send(venue: SimulatedVenue, clock: SimClock, d: RoutingDecision) -> None:
    a = d.allocations[0]
    run_now(venue.submit(Order(ClientOrderId("c1"), SIM, SYM, Side.BUY, a.order_type, a.lots, a.price_ticks,
                               a.time_in_force)))
    clock.advance_to(clock.now_ns())


@pytest.mark.parametrize(("maker", "taker"), [("10", "2"), ("2.5", "0"), ("4", "-1"), ("0.5", "-2")])
def test_the_take_budget_is_the_taker_fee_floored_at_zero_whatever_the_maker_fee(maker: str, taker: str) -> None:
    """The router's side of the contract (docs/routing.md): a buy's IOC may spend the quote
    balance including the taker fee (a rebate counted as 0), never the maker fee, which an IOC
    cannot pay. A balance of exactly 20 BTC at 100.1 with that fee takes exactly 20 BTC; 1e-8 USDT
    less takes one lot less."""
    usdt = SIM_INST.notional(ASK_TICKS, 20000) * (1 + max(D(taker), D(0)) / 10_000)
    for bal, lots in ((usdt, 20000), (usdt - D("0.00000001"), 19999)):
        _venue, _clock, _events, router = _sim_and_router(maker, taker, bal)
        d = router.route(RouteRequest("BTC-USDT", Side.BUY, D("40"), None, "take"))
        assert [(a.venue, a.lots, a.price_ticks) for a in d.allocations] == [("sim", lots, ASK_TICKS)]
        assert d.residual_reason is not None and "not enough USDT" in d.residual_reason


@pytest.mark.parametrize(("maker", "taker"), [("10", "2"), ("2.5", "0"), ("4", "-1"), ("0.5", "-2")])
def test_the_simulator_accepts_a_take_sized_to_the_balance_when_maker_exceeds_taker(maker: str, taker: str) -> None:
    """Failed before the simulator held only the taker fee with an IOC: with maker 10 / taker 2
    bps and exactly enough USDT for 20 BTC at 100.1 plus the taker fee (2002 x 1.0002 =
    2002.4004), the router sends an IOC for 20.000 BTC and the simulator rejected it for
    insufficient balance: it held 2002 x 1.001 = 2004.002 with the IOC, as if it could rest and
    pay the maker fee. (With 2004.002 USDT the
    router sends 20.015 BTC, refused the same way.) The existing pinned case is the same:
    ``test_router_review3``'s taker rebate of -2 bps with maker 0.5, its 1 BTC for 100 USDT."""
    usdt = SIM_INST.notional(ASK_TICKS, 20000) * (1 + max(D(taker), D(0)) / 10_000)
    venue, clock, events, router = _sim_and_router(maker, taker, usdt)
    d = router.route(RouteRequest("BTC-USDT", Side.BUY, D("40"), None, "take"))
    assert [a.lots for a in d.allocations] == [20000]
    _send(venue, clock, d)
    assert OrderEventKind.REJECTED not in [e.kind for e in events]
    assert sum(e.fill.lots for e in events if e.fill is not None) == 20000


def test_with_the_maker_fee_at_or_below_the_taker_fee_the_simulator_accepts_the_take() -> None:
    """Maker 1 / taker 2 bps, exactly the hold of 20 BTC: the router takes exactly 20 BTC, and the
    simulator accepts and fills it (the router's budget and the simulator's hold agree)."""
    usdt = SIM_INST.notional(ASK_TICKS, 20000) * D("1.0002")
    venue, clock, events, router = _sim_and_router("1", "2", usdt)
    d = router.route(RouteRequest("BTC-USDT", Side.BUY, D("40"), None, "take"))
    assert [a.lots for a in d.allocations] == [20000]
    _send(venue, clock, d)
    assert OrderEventKind.REJECTED not in [e.kind for e in events]
    assert sum(e.fill.lots for e in events if e.fill is not None) == 20000


@pytest.mark.parametrize(("maker", "taker", "tif", "fee_bps"), [
    ("10", "2", TimeInForce.IOC, "2"), ("10", "2", TimeInForce.FOK, "2"), ("10", "2", TimeInForce.POST_ONLY, "10"),
    ("10", "2", TimeInForce.GTC, "10"), ("1", "5", TimeInForce.POST_ONLY, "1"), ("1", "5", TimeInForce.GTC, "5"),
    ("-1", "5", TimeInForce.POST_ONLY, "0")])
def test_the_simulator_holds_the_fee_the_order_can_pay(maker: str, taker: str, tif: TimeInForce, fee_bps: str) -> None:
    """A buy of 1 BTC at 99.0 holds 99 x (1 + fee): the taker
    fee for IOC/FOK (they cannot rest: checked while in transit, before they reach the book), the
    maker fee for post-only, the larger of the two for GTC, which may take or rest. Before the
    fix every order held the larger fee (IOC, FOK and the cheaper post-only cases failed); a
    maker rebate is held as 0."""
    venue, clock, _events, _router = _sim_and_router(maker, taker, D("1000"))
    run_now(venue.submit(Order(ClientOrderId("h1"), SIM, SYM, Side.BUY, OrderType.LIMIT, 1000, 990, tif)))
    want = D("99.0") * (1 + D(fee_bps) / 10_000)
    assert venue.in_transit("USDT") == want
    if tif in (TimeInForce.POST_ONLY, TimeInForce.GTC):   # rests below the ask: the hold stays locked
        clock.advance_to(clock.now_ns() + 10**9)
        bal = run_now(venue.balances())["USDT"]
        assert bal.locked == want and bal.free == D("1000") - want
