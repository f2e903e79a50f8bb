"""The ``mixed_split = "cont_kukanov"`` split of mixed orders: the queue-outflow estimator, the
router's use of the single-venue closed form, its fallback, its config and the real data."""

from __future__ import annotations

import json
import math
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.errors import ConfigError
from marketdata.model import Instrument, Side, Symbol, VenueId
from marketdata.replay import Dataset
from router.cli import main
from router.commands.route import build_router_at
from router.config import load_config_text
from router.cont_kukanov import ExponentialOutflow
from router.routing import Router, RouteRequest
from router.scoring import QueueOutflow, StaticCapacity

T0 = 1_700_000_000_000_000_000   # a whole second: the outflow windows start on it
MS = 1_000_000
S_NS = 1_000_000_000
INST = Instrument(VenueId("solo"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D("0.01"), D("0.001"),
                  D("0.001"), D("0"))
BID, ASK = 10_000, 10_002          # 100.00 / 100.02: a 2-tick spread


# ---------------------------------------------------------------------- the estimator
def test_outflow_counts_shrinks_and_vanished_levels_not_growth_or_better_prices() -> None:
    q = QueueOutflow(S_NS, keep=10)
    q.on_top(T0, 100, 50, 102, 40)
    q.on_top(T0 + 1, 100, 45, 102, 40)        # bid queue -5
    q.on_top(T0 + 2, 100, 60, 102, 30)        # bid grew (new orders behind): 0; ask -10
    q.on_top(T0 + 3, 101, 7, 102, 30)         # better bid: a new queue, nothing counted
    q.on_top(T0 + 4, 100, 60, 103, 9)         # bid 101 gone (7); ask 102 traded through (30)
    q.on_top(T0 + 5, None, 0, 103, 2)         # bid side emptied (60); ask -7
    q.on_top(T0 + S_NS, 100, 10, 103, 2)      # next window: the first one is complete
    assert q.samples(Side.BUY) == [5 + 7 + 60] and q.samples(Side.SELL) == [10 + 30 + 7]


def test_outflow_windows_roll_with_zeros_for_quiet_ones_and_keep_the_last() -> None:
    q = QueueOutflow(S_NS, keep=4)
    q.on_top(T0, 100, 10, 102, 10)
    q.on_top(T0 + 1, 100, 7, 102, 10)                 # window 0: bid 3
    q.on_top(T0 + 3 * S_NS + 5, 100, 6, 102, 10)      # windows 1, 2 quiet; window 3: bid 1
    assert q.samples(Side.BUY) == [3, 0, 0]
    assert q.samples(Side.BUY, T0 + 4 * S_NS) == [3, 0, 0, 1]     # window 3 ended by now
    assert q.samples(Side.BUY, T0 + 9 * S_NS) == [0, 0, 0, 0]     # only the last 4 are kept
    with pytest.raises(ValueError, match="horizon_ns > 0"):
        QueueOutflow(0)


# ---------------------------------------------------------------------- the router's split
def _config(extra: str = "", maker: str = "0", taker: str = "0") -> str:
    return f"""
[routing]
strategy = "lowest_cost"
miss_cost_bps = 5
mixed_split = "cont_kukanov"
[routing.cont_kukanov]
horizon_ms = 1000
min_samples = 30
keep_windows = 50
{extra}
[venues.solo.fees]
maker_bps = {maker}
taker_bps = {taker}
"""


def _router(text: str, *, queue: int, windows: int = 30) -> Router:
    """One venue, bid 100.00 / ask 100.02 (20 lots each side); in window k (1 s each) the best
    bid queue loses k + 1 lots and is refilled, so the outflow samples are 1..windows; then the
    bid queue is set to ``queue`` lots."""
    book = L2Book("solo", "BTC-USDT")
    book.apply_snapshot([(BID, 20)], [(ASK, 20)], ts_event=T0)
    cfg = load_config_text(text)
    clock = SimClock(T0)
    r = Router(cfg.routing, cfg.venues, {"solo": INST}, {"solo": book}, clock)
    r.on_book("solo", T0)
    for k in range(windows):
        for ts, lots in ((T0 + k * S_NS + 100 * MS, 20 - (k + 1)), (T0 + k * S_NS + 200 * MS, 20)):
            book.update_bid(BID, lots)
            book.ts_event = ts
            r.on_book("solo", ts)
    ts = T0 + (windows - 1) * S_NS + 300 * MS
    book.update_bid(BID, queue)
    book.ts_event = ts
    r.on_book("solo", ts)     # grows the queue: no outflow
    clock.advance_to(T0 + windows * S_NS + MS)
    return r


def _mixed(qty: str, urgency: float = 0.5) -> RouteRequest:
    return RouteRequest("BTC-USDT", Side.BUY, D(qty), None, "mixed", urgency)


def _expected_post(queue: int, want: int, samples: list[int], miss: float = 5.0, maker: float = 0.0,
                   taker: float = 0.0) -> int:
    """The paper's single-venue optimum worked by hand, in bps of the ask: h = half the spread,
    lambda_u = miss + h + f, c = (2h + f + r) / (lambda_u + h + r), L = clip(F^-1(c) - Q, 0, S)."""
    h = (ASK - BID) / 2 / ASK * 1e4
    f, r = taker, -maker
    c = (2 * h + f + r) / (miss + h + f + h + r)
    if c <= 0:
        return 0
    xs = sorted(samples)
    quantile = xs[max(0, math.ceil(c * len(xs)) - 1)]
    return min(max(quantile - queue, 0), want)


@pytest.mark.parametrize(("queue", "qty"), [(5, "0.010"), (1, "0.015"), (2, "0.004"), (29, "0.010"),
                                            (40, "0.010")])
def test_split_is_the_single_venue_optimum_on_the_observed_outflow(queue: int, qty: str) -> None:
    r = _router(_config(), queue=queue)
    d = r.route(_mixed(qty))
    want = int(D(qty) / INST.lot_size)
    post = _expected_post(queue, want, list(range(1, 31)))
    assert d.split is not None and d.split["method"] == "cont_kukanov"
    v = d.split["venues"]["solo"]
    assert v["samples"] == 30 and v["queue_ahead"] == D(queue) * INST.lot_size
    assert v["post"] == D(post) * INST.lot_size
    taken = sum(a.lots for a in d.allocations if a.style == "take")
    posted = sum(a.lots for a in d.allocations if a.style == "post")
    assert (taken, posted) == (want - post, post), (d.split, d.explanation)
    assert "mixed: cont_kukanov on solo (30 windows of 1000 ms" in d.explanation
    payload = d.to_dict()
    assert payload["split"]["method"] == "cont_kukanov" and payload["split"]["take"] == str(d.split["take"])


def test_a_long_queue_takes_everything_a_short_one_posts_everything() -> None:
    long_q = _router(_config(), queue=40).route(_mixed("0.010"))
    assert [a.style for a in long_q.allocations] == ["take"] and long_q.allocations[0].lots == 10
    short_q = _router(_config(), queue=1).route(_mixed("0.002"))
    assert [a.style for a in short_q.allocations] == ["post"] and short_q.allocations[0].lots == 2


def test_a_maker_fee_above_twice_the_half_spread_plus_taker_fee_takes_everything() -> None:
    # h ~ 1 bps, f = 0: a 3 bps maker fee makes every filled limit share dearer than a market one
    d = _router(_config(maker="3"), queue=1).route(_mixed("0.005"))
    assert d.split is not None and d.split["venues"]["solo"]["quantile_level"] < 0
    assert [a.style for a in d.allocations] == ["take"] and d.allocations[0].lots == 5


def test_too_few_windows_fall_back_to_the_urgency_split_and_say_so() -> None:
    r = _router(_config(), queue=5, windows=12)
    d = r.route(_mixed("0.010", urgency=0.3))
    assert d.split == {"method": "urgency", "urgency": 0.3,
                       "fallback": "12 of 30 outflow windows seen on solo"}
    assert sum(a.lots for a in d.allocations if a.style == "take") == 3
    assert "mixed: urgency 0.3 (cont_kukanov not used: 12 of 30 outflow windows seen on solo)" in d.explanation


def test_other_styles_and_the_default_split_are_unchanged() -> None:
    r = _router(_config(), queue=5)
    assert r.route(RouteRequest("BTC-USDT", Side.BUY, D("0.010"), None, "take")).split is None
    plain = _router(_config().replace('mixed_split = "cont_kukanov"', ""), queue=5)
    d = plain.route(_mixed("0.010", urgency=0.3))
    assert d.split is None and "split" not in d.to_dict()
    assert plain._state("solo").outflow is None       # nothing is estimated unless asked for
    assert sum(a.lots for a in d.allocations if a.style == "take") == 3


# ---------------------------------------------------------------------- several venues
def _config2() -> str:
    """Two venues a and b with the one-venue config's routing, both zero fees."""
    head = _config()
    head = head[:head.index("[venues.solo.fees]")]
    return head + "".join(f"[venues.{n}.fees]\nmaker_bps = 0\ntaker_bps = 0\n" for n in ("a", "b"))


def _inst(name: str, lot: str = "0.001") -> Instrument:
    return Instrument(VenueId(name), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D("0.01"), D(lot), D(lot), D("0"))


def _router2(text: str, *, queues: tuple[int, int], windows: tuple[int, int] = (30, 30),
             step: tuple[int, int] = (1, 2), asks: int = 20, lots: tuple[str, str] = ("0.001", "0.001"),
             capacity: StaticCapacity | None = None) -> Router:
    """Venues a and b, both bid 100.00 / ask 100.02 with ``asks`` lots on the ask; in window k
    venue v's bid queue loses step[v] * (k + 1) lots (so a's outflows are 1..30, b's 2..60), for
    windows[v] windows; then the bid queues are set to ``queues``."""
    insts = {"a": _inst("a", lots[0]), "b": _inst("b", lots[1])}
    books = {n: L2Book(n, "BTC-USDT") for n in insts}
    for b in books.values():
        b.apply_snapshot([(BID, 200)], [(ASK, asks)], ts_event=T0)
    cfg = load_config_text(text)
    clock = SimClock(T0)
    r = Router(cfg.routing, cfg.venues, insts, books, clock, capacity)
    last = max(windows)
    for (n, b), w, dk in zip(books.items(), windows, step, strict=True):
        first = last - w   # the venue's book is seen from this window on
        r.on_book(n, T0 + first * S_NS)
        for k in range(w):
            for ts, size in ((T0 + (first + k) * S_NS + 100 * MS, 200 - dk * (k + 1)),
                             (T0 + (first + k) * S_NS + 200 * MS, 200)):
                b.update_bid(BID, size)
                b.ts_event = ts
                r.on_book(n, ts)
    for (n, b), q in zip(books.items(), queues, strict=True):
        ts = T0 + (last - 1) * S_NS + 300 * MS
        b.update_bid(BID, q)
        b.ts_event = ts
        r.on_book(n, ts)
    clock.advance_to(T0 + last * S_NS + MS)
    return r


def _posts(d: object) -> dict[str, int]:
    return {a.venue: a.lots for a in d.allocations if a.style == "post"}   # type: ignore[attr-defined]


def test_two_venues_each_post_their_own_quantile_when_the_order_is_large() -> None:
    """c = 2h / (lambda_u + h) ~ 0.2857 on both venues: a posts F_a^-1(c) - Q_a = 9 - 2 = 7 lots,
    b posts 18 - 5 = 13, and the rest of the 50 lots is taken now."""
    d = _router2(_config2(), queues=(2, 5)).route(_mixed("0.050"))
    sp = d.split
    assert sp is not None and sp["method"] == "cont_kukanov" and sp["order_binds"] is False
    assert _expected_post(2, 50, list(range(1, 31))) == 7
    assert _expected_post(5, 50, list(range(2, 61, 2))) == 13
    assert _posts(d) == {"a": 7, "b": 13}
    assert sum(a.lots for a in d.allocations if a.style == "take") == 30
    assert {n: v["post"] for n, v in sp["venues"].items()} == {"a": D("0.007"), "b": D("0.013")}
    assert sp["take"] == D("0.030") and sp["post"] == D("0.020")
    assert d.explanation.startswith("mixed: cont_kukanov on a (30 windows of 1000 ms")
    assert "b (30 windows of 1000 ms: outflow quantile 0.018 at level 0.2857 against 0.005 ahead; post 0.013)" \
        in d.explanation
    # more queue ahead on b: b posts less, a is unchanged
    assert _posts(_router2(_config2(), queues=(2, 10)).route(_mixed("0.050"))) == {"a": 7, "b": 8}


def test_a_small_order_is_shared_by_marginal_cost_and_never_overbooks() -> None:
    """Both venues would post 20 lots between them; an order of 8 lots posts all 8, split where
    the sample-average cost is least (checked against every integer split)."""
    from router.cont_kukanov import PlacementProblem, VenueParams, expected_cost

    d = _router2(_config2(), queues=(2, 5)).route(_mixed("0.008"))
    sp = d.split
    assert sp is not None and sp["order_binds"] is True and sp["take"] == 0
    posts = _posts(d)
    assert sum(posts.values()) == 8 and not [a for a in d.allocations if a.style == "take"]
    h = (ASK - BID) / 2 / ASK * 1e4
    problem = PlacementProblem(8.0, h, 0.0, 5 + h, 5 + h, (
        VenueParams("a", 2.0, ExponentialOutflow(1.0)), VenueParams("b", 5.0, ExponentialOutflow(1.0))))
    xi = np.column_stack([np.arange(1.0, 31.0), np.arange(2.0, 61.0, 2.0)])
    costs = {la: expected_cost(problem, 0.0, [float(la), float(8 - la)], xi) for la in range(9)}
    assert costs[posts.get("a", 0)] == pytest.approx(min(costs.values()))


def test_a_venue_with_too_few_windows_is_left_out_and_named() -> None:
    d = _router2(_config2(), queues=(2, 5), windows=(30, 12), asks=50).route(_mixed("0.050"))
    sp = d.split
    assert sp is not None and sp["method"] == "cont_kukanov" and set(sp["venues"]) == {"a"}
    assert sp["skipped"] == {"b": "12 of 30 outflow windows seen on b"}
    assert _posts(d) == {"a": 7}
    assert "(left out: 12 of 30 outflow windows seen on b)" in d.explanation
    both = _router2(_config2(), queues=(2, 5), windows=(10, 12)).route(_mixed("0.050", urgency=0.4))
    assert both.split == {"method": "urgency", "urgency": 0.4, "fallback": "10 of 30 outflow windows seen on a; "
                          "12 of 30 outflow windows seen on b"}


def test_what_the_take_cannot_fill_and_lot_rounding_are_posted_one_order_per_venue() -> None:
    # asks of 10 lots per venue: a take of 30 fills 20, the other 10 are posted after the targets
    d = _router2(_config2(), queues=(2, 5), asks=10).route(_mixed("0.050"))
    posts = _posts(d)
    assert sum(a.lots for a in d.allocations if a.style == "take") == 20
    assert sum(posts.values()) == 30 and posts["a"] >= 7 and posts["b"] >= 13
    assert len([a for a in d.allocations if a.style == "post"]) == len(posts)
    assert d.residual_lots == 0 and d.allocated_quantity == D("0.050")
    # b trades in 0.002 lots: a 10-lot order that binds gives b 7 common lots, rounded to 6 (whole
    # b lots), and the one left is posted on a after its target of 3: everything posted, nothing taken
    coarse = _router2(_config2(), queues=(2, 5), lots=("0.001", "0.002")).route(_mixed("0.010"))
    sp = coarse.split
    assert sp is not None and sp["take"] == 0 and sp["post"] == D("0.010")
    assert {n: v["post"] for n, v in sp["venues"].items()} == {"a": D("0.003"), "b": D("0.006")}
    cp = {a.venue: a.quantity for a in coarse.allocations if a.style == "post"}
    assert cp == {"a": D("0.004"), "b": D("0.006")} and not [a for a in coarse.allocations if a.style == "take"]


@settings(max_examples=60, deadline=None)
@given(qa=st.integers(0, 30), qb=st.integers(0, 30), sa=st.integers(1, 3), sb=st.integers(1, 3),
       asks=st.integers(0, 60), lot_b=st.sampled_from(["0.001", "0.002", "0.005"]), want=st.integers(1, 90),
       cap_a=st.sampled_from([None, "0.004", "0.02"]), usdt_b=st.sampled_from([None, "0.5", "2", "1000"]))
def test_split_allocations_keep_the_router_contract(qa: int, qb: int, sa: int, sb: int, asks: int, lot_b: str,
                                                   want: int, cap_a: str | None, usdt_b: str | None) -> None:
    """Random queues, outflows, book depth, lot sizes, a venue cap and a balance: whatever the
    split, allocated + residual is the order, one post order per venue, no venue above its cap
    or funds, the posts never more than the order, and the take never more than the split's."""
    text = _config2() + (f'[venues.a]\nmax_quantity = "{cap_a}"\n' if cap_a else "")
    cap = None if usdt_b is None else StaticCapacity({"b": {"USDT": D(usdt_b), "BTC": D(0)}})
    r = _router2(text, queues=(qa, qb), step=(sa, sb), asks=asks, lots=("0.001", lot_b), capacity=cap)
    qty = D(want) * D("0.001")
    d = r.route(_mixed(str(qty)))
    assert d.allocated_quantity + d.residual_quantity == qty
    posts = [a for a in d.allocations if a.style == "post"]
    takes = [a for a in d.allocations if a.style == "take"]
    assert len({a.venue for a in posts}) == len(posts)
    assert sum((a.quantity for a in posts), D(0)) <= qty
    sp = d.split
    if sp is None:   # no venue eligible at all (an empty ask side): nothing placed, all residual
        assert not d.allocations and d.residual_quantity == qty and d.residual_reason
        return
    if sp["method"] == "cont_kukanov":
        assert sum((a.quantity for a in takes), D(0)) <= sp["take"]
        assert sp["take"] + sp["post"] == qty
    if cap_a:
        assert sum((a.quantity for a in d.allocations if a.venue == "a"), D(0)) <= D(cap_a)
    if usdt_b is not None:
        spent = sum((a.quantity * (a.price or 0) for a in d.allocations if a.venue == "b"), D(0))
        assert spent <= D(usdt_b)


@pytest.mark.parametrize(("extra", "key", "allowed"), [
    ('mixed_split = "optimal"', "routing.mixed_split", "urgency, cont_kukanov"),
    ("[routing.cont_kukanov]\nhorizon_ms = 0", "routing.cont_kukanov.horizon_ms", "1 <= x <= 3600000"),
    ("[routing.cont_kukanov]\nmin_samples = 500", "routing.cont_kukanov.min_samples", "keep_windows (200)"),
    ("[routing.cont_kukanov]\nwindow = 3", "routing.cont_kukanov.window", "horizon_ms"),
])
def test_config_errors_name_the_key_and_the_allowed_values(extra: str, key: str, allowed: str) -> None:
    text = f"[routing]\nstrategy = \"smart\"\n{extra}\n[venues.solo]\n"
    with pytest.raises(ConfigError) as ei:
        load_config_text(text)
    assert key in str(ei.value) and allowed in str(ei.value)


# ---------------------------------------------------------------------- the real data (fixture ds: conftest)
def test_on_the_bundled_data_the_split_reads_the_recorded_queues(ds: Dataset) -> None:
    text = """
[routing]
strategy = "smart"
mixed_split = "cont_kukanov"
[routing.cont_kukanov]
horizon_ms = 2000
min_samples = 20
[venues.binance-spot.fees]
maker_bps = 0
taker_bps = 2
[venues.binance-usdm.fees]
maker_bps = 0
taker_bps = 2
"""
    r = build_router_at(load_config_text(text), ds, ds.start_ns + 120 * S_NS)
    for qty in ("0.5", "2", "5", "20"):
        d = r.route(RouteRequest("BTC-USDT", Side.BUY, D(qty), None, "mixed", 0.5))
        sp = d.split
        assert sp is not None and sp["method"] == "cont_kukanov", sp
        assert set(sp["venues"]) == {"binance-spot", "binance-usdm"}, sp
        assert all(v["samples"] >= 59 and v["outflow_mean"] > 0 for v in sp["venues"].values())
        assert sp["take"] + sp["post"] == D(qty)
        assert d.allocated_quantity + d.residual_quantity == D(qty)
        taken = sum((a.quantity for a in d.allocations if a.style == "take"), D(0))
        assert taken <= sp["take"]
    # the larger the order, the larger the share taken now (what the queue can absorb is fixed)
    fractions = []
    for q in ("0.5", "2", "5", "20"):
        sp = r.route(RouteRequest("BTC-USDT", Side.BUY, D(q), None, "mixed", 0.5)).split
        assert sp is not None
        fractions.append(float(sp["take"]) / float(q))
    assert fractions == sorted(fractions) and fractions[-1] > fractions[0]


def test_the_example_config_routes_a_mixed_order_from_the_cli(ds: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "routing_mixed_cont_kukanov.toml"
    assert main(["route", str(example), "--side", "buy", "--qty", "5", "--at", "+120s", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["request"]["style"] == "mixed"    # the config's default_style
    split = out["split"]
    assert split["method"] == "cont_kukanov" and D(split["take"]) + D(split["post"]) == 5
    styles = {a["style"] for a in out["allocations"]}
    assert styles == {"take", "post"}, out["allocations"]
    assert out["explanation"].startswith("mixed: cont_kukanov on ")


# ---------------------------------------------------------------------- review: a limit behind the best
def test_a_limit_behind_the_best_counts_the_better_levels_in_the_queue_ahead() -> None:
    """A buy limited to 99.98 rests behind the 40 lots bid at 100.00: those are ahead of it, and
    the outflow (counted from the best) must clear them first. The split used to see only the
    size at 99.98 (none), so 0 ahead, and set a post target of F^-1(c) = 9 lots."""
    r = _router(_config(), queue=40)
    d = r.route(RouteRequest("BTC-USDT", Side.BUY, D("0.010"), D("99.98"), "mixed", 0.5))
    sp = d.split
    assert sp is not None and sp["method"] == "cont_kukanov"
    v = sp["venues"]["solo"]
    assert v["queue_ahead"] == D("0.040") and v["post"] == 0 and sp["post"] == 0
    assert v["fill_probability"] == 0.0
    # the take cannot fill below the ask: the order is posted at the limit, whole, and said so
    posts = [a for a in d.allocations if a.style == "post"]
    assert [(a.lots, a.price) for a in posts] == [(10, D("99.98"))] and d.residual_lots == 0
    # at the best quote nothing changes: the size there is all that is ahead
    at_best = r.route(RouteRequest("BTC-USDT", Side.BUY, D("0.010"), D("100.00"), "mixed", 0.5)).split
    assert at_best is not None and at_best["venues"]["solo"]["queue_ahead"] == D("0.040")
