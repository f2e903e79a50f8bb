"""Router on synthetic books: styles, limits, balances, lots, minimums, exclusions, explain."""

from __future__ import annotations

import json
import math
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.errors import InstrumentError
from marketdata.model import Instrument, InstrumentKind, OrderType, Side, Symbol, TimeInForce, VenueId
from router.config import load_config_text
from router.routing import Router, RouteRequest
from router.scoring import StaticCapacity

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SPOT = Instrument(VenueId("spot"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D("0.01"), D("0.00001"),
                  D("0.00001"), D("5"))
PERP = Instrument(VenueId("perp"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D("0.1"), D("0.001"),
                  D("0.001"), D("100"), InstrumentKind.PERPETUAL)
INSTS = {"spot": SPOT, "perp": PERP}


def cfg_text(strategy: str = "lowest_cost", extra: str = "", spot_fee: str = "1", perp_fee: str = "1") -> str:
    return f"""
[routing]
strategy = "{strategy}"
{extra}
[venues.spot.fees]
maker_bps = 0.5
taker_bps = {spot_fee}
[venues.perp.fees]
maker_bps = 0.2
taker_bps = {perp_fee}
"""


def books(spot_asks: list[tuple[str, str]], perp_asks: list[tuple[str, str]],
          spot_bids: list[tuple[str, str]] | None = None, perp_bids: list[tuple[str, str]] | None = None,
          ts: int = T0) -> dict[str, L2Book]:
    out = {}
    for name, asks, bids in (("spot", spot_asks, spot_bids), ("perp", perp_asks, perp_bids)):
        inst = INSTS[name]
        b = L2Book(name, "BTC-USDT")
        b.apply_snapshot([(inst.price_to_ticks(p), inst.qty_to_lots(q, exact=True)) for p, q in bids or []],
                         [(inst.price_to_ticks(p), inst.qty_to_lots(q, exact=True)) for p, q in asks], ts_event=ts)
        out[name] = b
    return out


def make_router(text: str, bks: dict[str, L2Book], now: int = T0 + 5 * MS, capacity: StaticCapacity | None = None
                ) -> Router:
    cfg = load_config_text(text)
    return Router(cfg.routing, cfg.venues, INSTS, bks, SimClock(now), capacity)


ASKS_S = [("100.00", "1"), ("100.05", "2"), ("100.25", "5")]
ASKS_P = [("100.1", "1"), ("100.2", "3"), ("100.3", "5")]
BIDS_S = [("99.90", "1"), ("99.80", "2")]
BIDS_P = [("99.9", "4"), ("99.8", "3")]


def buy(qty: str, limit: str | None = None, style: str = "take", urgency: float = 0.5) -> RouteRequest:
    return RouteRequest("BTC-USDT", Side.BUY, D(qty), D(limit) if limit else None, style, urgency)  # type: ignore[arg-type]


def test_take_sweeps_across_venues_in_fee_adjusted_order() -> None:
    r = make_router(cfg_text(), books(ASKS_S, ASKS_P, BIDS_S, BIDS_P))
    d = r.route(buy("4.5"))
    alloc = {a.venue: a for a in d.allocations}
    # spot 1 @100.00, 2 @100.05, then perp 1 @100.1 and 0.5 @100.2 (equal fees; 100.20 on spot is worse)
    assert alloc["spot"].quantity == D("3.00000") and alloc["spot"].price == D("100.05")
    assert alloc["perp"].quantity == D("1.500") and alloc["perp"].price == D("100.2")
    assert alloc["spot"].lots == 300_000 and alloc["spot"].price_ticks == 10005
    assert all(a.order_type is OrderType.LIMIT and a.time_in_force is TimeInForce.IOC for a in d.allocations)
    assert d.residual_lots == 0 and d.residual_reason is None
    assert d.allocated_quantity == D("4.5")


def test_limit_price_is_never_exceeded_and_residual_is_explained() -> None:
    r = make_router(cfg_text(), books(ASKS_S, ASKS_P))
    d = r.route(buy("20", limit="100.1"))
    assert all(a.price is not None and a.price <= D("100.1") for a in d.allocations)
    assert d.allocated_quantity == D(4)
    assert d.residual_quantity == D(16) and d.residual_reason is not None
    assert "limit price" in d.residual_reason
    assert d.allocated_quantity + d.residual_quantity == D(20)


def test_fees_flip_the_choice_between_strategies() -> None:
    # perp shows a worse price (100.1 vs 100.0) but spot charges 20 bps more
    bk = books([("100.00", "2")], [("100.1", "2")])
    cheap = make_router(cfg_text("lowest_cost", spot_fee="25", perp_fee="5"), bk).route(buy("1.5"))
    raw = make_router(cfg_text("best_price", spot_fee="25", perp_fee="5"), bk).route(buy("1.5"))
    assert [a.venue for a in cheap.allocations] == ["perp"]
    assert [a.venue for a in raw.allocations] == ["spot"]


def test_stale_crossed_resync_disabled_and_breaker_are_excluded_with_reasons() -> None:
    bk = books(ASKS_S, ASKS_P, BIDS_S, BIDS_P)
    bk["perp"].ts_event = T0 - 10_000 * MS
    r = make_router(cfg_text(), bk)
    d = r.route(buy("1"))
    reason = d.score("perp").excluded_reason
    assert reason is not None and reason.startswith("book stale")
    assert [a.venue for a in d.allocations] == ["spot"]
    bk["perp"].ts_event = T0
    bk["perp"].request_resync()
    assert "resync" in (r.route(buy("1")).score("perp").excluded_reason or "")
    bk2 = books(ASKS_S, ASKS_P, [("100.50", "1")], BIDS_P)
    assert "crossed" in (make_router(cfg_text(), bk2).route(buy("1")).score("spot").excluded_reason or "")
    r3 = make_router(cfg_text().replace("[venues.spot.fees]", "[venues.spot]\nenabled = false\n[venues.spot.fees]"),
                     books(ASKS_S, ASKS_P))
    d3 = r3.route(buy("1"))
    assert d3.score("spot").excluded_reason == "disabled in config"
    r4 = make_router(cfg_text(extra="[routing.breaker]\nfailures_to_open = 2"), books(ASKS_S, ASKS_P))
    r4.record_reject("spot")
    r4.record_timeout("spot")
    assert "circuit breaker open" in (r4.route(buy("1")).score("spot").excluded_reason or "")
    r4.record_ack("spot")
    assert r4.route(buy("1")).score("spot").excluded_reason is None


def test_all_excluded_returns_everything_as_residual() -> None:
    bk = books(ASKS_S, ASKS_P)
    r = make_router(cfg_text(), bk, now=T0 + 60_000 * MS)
    d = r.route(buy("1"))
    assert not d.allocations and d.residual_quantity == D(1)
    assert d.residual_reason is not None and "no eligible venue" in d.residual_reason


def test_balance_and_cap_respected_and_rate_headroom_excludes() -> None:
    cap = StaticCapacity({"spot": {"USDT": D("150")}, "perp": {"USDT": D("1000000")}}, {"perp": 5})
    text = cfg_text().replace("[venues.perp.fees]", "[venues.perp]\nmax_quantity = \"2\"\n[venues.perp.fees]")
    d = make_router(text, books(ASKS_S, ASKS_P), capacity=cap).route(buy("5"))
    alloc = {a.venue: a for a in d.allocations}
    spot_cost = sum(D(p) * q for p, q in [("100.00", D(1)), ("100.05", alloc["spot"].quantity - 1)])
    assert spot_cost * (1 + D(1) / 10_000) <= D(150)
    assert alloc["perp"].quantity == D(2)
    assert d.residual_quantity > 0
    cap0 = StaticCapacity({}, {"spot": 0})
    d0 = make_router(cfg_text(), books(ASKS_S, ASKS_P), capacity=cap0).route(buy("1"))
    assert d0.score("spot").excluded_reason == "rate limit: no order headroom"


def test_slice_below_min_notional_is_dropped_and_reoffered() -> None:
    # perp is cheapest but only 0.5 is wanted there ... its min_notional is 100 USDT: 0.5*100.1 < 100
    bk = books([("100.50", "5")], [("100.0", "0.5")])
    d = make_router(cfg_text(), bk).route(buy("0.5"))
    assert [a.venue for a in d.allocations] == ["spot"] and d.residual_lots == 0
    assert "min_notional" in d.explanation
    assert any("dropped" in n for n in d.score("perp").factors["notes"])


def test_quantity_below_every_lot_is_residual() -> None:
    bk = books([("100.00", "1")], [("100.0", "1")])
    d = make_router(cfg_text(), bk).route(buy("1.00001"))
    assert d.allocated_quantity == D("1")
    assert d.residual_quantity == D("0.00001")
    with pytest.raises(InstrumentError, match="common lot"):
        make_router(cfg_text(), bk).route(buy("0.000001"))


def test_passive_uses_maker_economics_and_queue() -> None:
    r = make_router(cfg_text("lowest_cost"), books(ASKS_S, ASKS_P, BIDS_S, BIDS_P))
    d = r.route(buy("1.5", style="post"))
    (a,) = d.allocations
    # perp bid 99.9 with maker 0.2 bps beats spot bid 99.90 with maker 0.5 bps
    assert a.venue == "perp" and a.price == D("99.9") and a.style == "post"
    assert a.time_in_force is TimeInForce.POST_ONLY
    assert d.score("perp").factors["passive"]["queue_ahead"] == D("4.000")
    smart = make_router(cfg_text("smart"), books(ASKS_S, ASKS_P, BIDS_S, BIDS_P)).route(buy("1.5", style="post"))
    # smart penalises the long queue on perp (4 BTC ahead vs 1 BTC on spot)
    assert smart.allocations[0].venue == "spot"
    # a limit below the bids posts at the limit, never above it
    low = r.route(buy("1.5", limit="99.5", style="post"))
    assert low.allocations[0].price == D("99.5")


def test_mixed_splits_by_urgency_and_explains() -> None:
    r = make_router(cfg_text(), books(ASKS_S, ASKS_P, BIDS_S, BIDS_P))
    d = r.route(buy("2", style="mixed", urgency=0.25))
    take = sum((a.quantity for a in d.allocations if a.style == "take"), D(0))
    post = sum((a.quantity for a in d.allocations if a.style == "post"), D(0))
    assert take == D("0.5") and post == D("1.5")
    assert "urgency 0.25" in d.explanation


def test_decision_ids_are_deterministic_and_payload_is_journal_shaped() -> None:
    def run() -> list[dict[str, object]]:
        r = make_router(cfg_text("smart"), books(ASKS_S, ASKS_P, BIDS_S, BIDS_P))
        return [r.route(RouteRequest("BTC-USDT", Side.BUY, D("1.2"), None, "take", 0.5, "P1")).to_dict()
                for _ in range(2)]
    a, b = run(), run()
    assert a == b
    assert [x["decision_id"] for x in a] == ["RD-000001", "RD-000002"]
    p = a[0]
    assert set(p) >= {"decision_id", "parent_id", "request", "strategy", "venues", "allocations", "residual"}
    assert p["parent_id"] == "P1" and p["residual"] is None
    venues = p["venues"]
    assert isinstance(venues, list) and [v["venue"] for v in venues] == ["spot", "perp"]
    for v in venues:
        assert set(v) == {"venue", "factors", "excluded_reason"}
        assert {"price", "latency", "fill_probability", "health", "capacity", "score"} <= set(v["factors"])
    for al in p["allocations"]:  # type: ignore[attr-defined]
        assert set(al) >= {"venue", "quantity", "price", "style"} and isinstance(al["quantity"], str)
    json.dumps(p)  # serialisable as is


def test_fill_outcomes_feed_the_smart_score() -> None:
    r = make_router(cfg_text("smart"), books([("100.00", "5")], [("100.0", "5")]))
    assert r.route(buy("1")).allocations[0].venue == "spot"  # tie: first configured venue
    for _ in range(20):
        r.record_outcome("spot", "take", 10, 0)
    d = r.route(buy("1"))
    assert d.allocations[0].venue == "perp"
    assert d.score("spot").factors["fill_probability"]["take_hit_ratio"] < 0.5


def test_latency_haircut_and_max_latency() -> None:
    text = cfg_text("smart", extra="max_latency_ms = 30").replace(
        "[venues.perp.fees]", "[venues.perp.latency]\norder_rtt_ms = 50\n[venues.perp.fees]")
    r = make_router(text, books(ASKS_S, ASKS_P))
    assert "max_latency_ms" in (r.route(buy("1")).score("perp").excluded_reason or "")
    # a venue whose top keeps being depleted has its displayed size haircut
    bk = books([("100.00", "1")], [("100.0", "1")])
    r2 = make_router(cfg_text("smart"), bk, now=T0 + 50 * MS)
    for i in range(40):
        bk["spot"].update_ask(10000, 100_000 - i)  # shrinking top: depletions
        r2.on_book("spot", T0 + i * MS)
    d = r2.route(buy("1"))
    lat = d.score("spot").factors["latency"]
    # 40 depletions in 40 ms, decayed over tau = 5 s / ln 2: ~5.5 Hz; delay 50 ms age + 20 ms rtt
    assert lat["depletion_rate_hz"] == pytest.approx(5.5, rel=0.05)
    assert lat["haircut_top"] == pytest.approx(1 - math.exp(-lat["depletion_rate_hz"] * 0.07), rel=1e-6)
    assert d.score("perp").factors["latency"]["haircut_top"] == 0.0


@settings(max_examples=120, deadline=None)
@given(st.sampled_from([Side.BUY, Side.SELL]), st.sampled_from(["best_price", "lowest_cost", "fastest", "smart"]),
       st.lists(st.tuples(st.integers(0, 40), st.integers(1, 300_000)), min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(0, 40), st.integers(1, 3000)), min_size=1, max_size=8),
       st.integers(1, 800_000), st.one_of(st.none(), st.integers(-10, 50)),
       st.one_of(st.none(), st.integers(0, 2000)), st.one_of(st.none(), st.integers(0, 3000)))
def test_router_properties(side: Side, strategy: str, spot_lv: list[tuple[int, int]],
                           perp_lv: list[tuple[int, int]], qty_lots: int, limit_off: int | None,
                           spot_bal: int | None, perp_bal: int | None) -> None:
    """No allocation beyond the limit, no venue above its balance, venue lot sizes respected,
    allocated + residual == requested."""
    sgn = int(side)
    spot_levels = {1_000_000 + sgn * 2 * k: q for k, q in spot_lv}  # spot ticks (0.01)
    perp_levels = {100_000 + sgn * k: q for k, q in perp_lv}         # perp ticks (0.1)
    bs, bp = L2Book("spot", "BTC-USDT"), L2Book("perp", "BTC-USDT")
    if side is Side.BUY:
        bs.apply_snapshot([], spot_levels.items(), ts_event=T0)
        bp.apply_snapshot([], perp_levels.items(), ts_event=T0)
    else:
        bs.apply_snapshot(spot_levels.items(), [], ts_event=T0)
        bp.apply_snapshot(perp_levels.items(), [], ts_event=T0)
    balances: dict[str, dict[str, D]] = {}
    if spot_bal is not None:
        balances["spot"] = {"USDT": D(spot_bal) * 10, "BTC": D(spot_bal) / 100}
    if perp_bal is not None:
        balances["perp"] = {"USDT": D(perp_bal) * 10}
    r = make_router(cfg_text(strategy, spot_fee="7.5", perp_fee="4.5"), {"spot": bs, "perp": bp},
                    capacity=StaticCapacity(balances))
    qty = D(qty_lots) * D("0.00001")
    limit = None if limit_off is None else D("10000.00") + sgn * D(limit_off) / 10
    d = r.route(RouteRequest("BTC-USDT", side, qty, limit, "take", 0.5))
    assert d.allocated_quantity + d.residual_quantity == qty
    for a in d.allocations:
        inst = INSTS[a.venue]
        assert a.lots > 0 and a.quantity == inst.lots_to_qty(a.lots)  # whole venue lots
        assert a.price_ticks is not None and a.price == inst.ticks_to_price(a.price_ticks)
        if limit is not None:
            assert a.price is not None and (a.price <= limit if side is Side.BUY else a.price >= limit)
        assert inst.check_order(a.price_ticks, a.lots) is None  # venue minimums
        book = bs if a.venue == "spot" else bp
        assert a.price_ticks in dict(book.depth(side.opposite))  # an IOC limit at a real level
        fee = D("7.5") if a.venue == "spot" else D("4.5")
        bal = balances.get(a.venue)
        if bal is not None:
            if side is Side.SELL and a.venue == "spot":
                assert a.quantity <= bal["BTC"]
            else:
                assert a.quantity * a.price * (1 + fee / 10_000) <= bal["USDT"]


def test_fastest_sweeps_the_quickest_venue_first_even_if_pricier() -> None:
    text = cfg_text("fastest").replace("[venues.spot.fees]", "[venues.spot.latency]\norder_rtt_ms = 40\n"
                                       "[venues.spot.fees]").replace(
        "[venues.perp.fees]", "[venues.perp.latency]\norder_rtt_ms = 5\n[venues.perp.fees]")
    d = make_router(text, books(ASKS_S, ASKS_P)).route(buy("2"))
    assert [(a.venue, a.quantity) for a in d.allocations] == [("perp", D("2.000"))]  # perp is 0.1 worse
    lc = make_router(text.replace('"fastest"', '"lowest_cost"'), books(ASKS_S, ASKS_P)).route(buy("2"))
    assert [a.venue for a in lc.allocations] == ["spot"]
    assert d.score("perp").factors["score"]["delay_ms"] < d.score("spot").factors["score"]["delay_ms"]


class _PositionCapacity(StaticCapacity):
    """Balances plus an open derivative position whose reducing lots need no margin."""

    def __init__(self, balances: dict[str, dict[str, D]], reducible: dict[tuple[str, Side], int]) -> None:
        super().__init__(balances)
        self.reducible = reducible

    def reducible_lots(self, venue: str, side: Side) -> int | None:
        return self.reducible.get((venue, side), 0) if venue == "perp" else None


def test_reducing_a_derivative_position_needs_no_margin_and_adds_to_what_the_margin_affords() -> None:
    bks = books(ASKS_S, ASKS_P, BIDS_S, BIDS_P)
    # no free USDT on perp at all: excluded for a buy that would open, not for one that reduces
    flat = make_router(cfg_text(), bks, capacity=_PositionCapacity({"spot": {"USDT": D("0")}, "perp": {"USDT": D("0")}},
                                                                   {}))
    d = flat.route(buy("2"))
    assert d.score("perp").excluded_reason == "no available USDT balance" and not d.allocations
    short = make_router(cfg_text(), bks, capacity=_PositionCapacity(
        {"spot": {"USDT": D("0")}, "perp": {"USDT": D("0")}}, {("perp", Side.BUY): 1_500}))   # short 1.5 BTC
    d = short.route(buy("2"))
    (a,) = d.allocations
    assert (a.venue, a.quantity) == ("perp", D("1.500")), "the reducing lots, not one more"
    f = d.score("perp").factors
    assert f["capacity"]["reducible_lots"] == 1_500
    assert d.residual_quantity == D("0.5")
    # margin for a little more: the reducing lots plus what the margin affords beyond them, the
    # reducing lots valued at the best ask (100.1), so never more than the exact sum: 1 BTC at 100.1
    # and 0.797 at 100.2 against 1.5 + 30 / (100.2 x 1.0001) = 1.7994
    some = make_router(cfg_text(), bks, capacity=_PositionCapacity(
        {"spot": {"USDT": D("0")}, "perp": {"USDT": D("30")}}, {("perp", Side.BUY): 1_500}))
    d = some.route(buy("2"))
    (a,) = d.allocations
    assert (a.venue, a.quantity, a.price) == ("perp", D("1.797"), D("100.2")), d.explanation
    assert "1500 lots reduce the open position (no margin needed); the margin affords 299 more" in str(
        d.score("perp").factors["notes"])
    assert 1.797 * 100.2 * 1.0001 - 1.5 * 100.2 <= 30 + 0.1    # the opening lots' margin fits at the limit
    # margin that affords the whole order on its own: all of it
    rich = make_router(cfg_text(), bks, capacity=_PositionCapacity(
        {"spot": {"USDT": D("0")}, "perp": {"USDT": D("250")}}, {("perp", Side.BUY): 1_500}))
    (a,) = rich.route(buy("2")).allocations
    assert (a.venue, a.quantity) == ("perp", D("2.000"))
    # a sell that closes a 1.5 BTC long and opens a short: 1.5 + 30 / (99.9 x 1.0001) = 1.8002 -> 1.800
    long_ = make_router(cfg_text(), bks, capacity=_PositionCapacity(
        {"spot": {"BTC": D("0")}, "perp": {"USDT": D("30")}}, {("perp", Side.SELL): 1_500}))
    (a,) = long_.route(RouteRequest("BTC-USDT", Side.SELL, D("2"), None, "take")).allocations
    assert (a.venue, a.quantity, a.price) == ("perp", D("1.800"), D("99.9"))
