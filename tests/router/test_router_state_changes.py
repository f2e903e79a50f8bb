"""Decisions never see stale state: a router that has routed many times decides exactly like a
fresh router fed the same inputs, whatever changed in between (book levels deep and at the top,
book timestamps, resyncs, health, fill estimates, measured round trips, the clock, and capacity
providers whose balances and headroom change between calls; the only state a decision writes is
a half-open breaker's probe, told to the others like an outcome); and a decision's lazily assembled
fields (factors, explanation, ids, Decimals) keep the values of the moment it was made.

Also the routing property test's reported over-budget buy (0.07694 BTC x 10000.30 x (1 + 7.5 bps)
> 770 USDT), pinned at the router level."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal as D
from typing import Any

import pytest

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.model import Instrument, InstrumentKind, Side, Symbol, VenueId
from router.config import load_config_text
from router.routing import Router, RouteRequest, RoutingDecision
from router.scoring import StaticCapacity, UnlimitedCapacity

T0 = 1_723_161_300_000_000_000
MS = 1_000_000
SPECS = [("a", "0.01", "0.00001", "5", InstrumentKind.SPOT), ("b", "0.1", "0.001", "100", InstrumentKind.PERPETUAL),
         ("c", "0.5", "0.001", "20", InstrumentKind.SPOT)]
INSTS = {n: Instrument(VenueId(n), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D(t), D(lot), D(lot), D(mn), k)
         for n, t, lot, mn, k in SPECS}


def _books(rng: random.Random) -> dict[str, L2Book]:
    out = {}
    for n, inst in INSTS.items():
        b = L2Book(n, "BTC-USDT")
        ask = inst.price_to_ticks(D("61800") + D(rng.randint(0, 30)) / 10, Side.SELL)
        step = max(1, inst.price_to_ticks(D("0.5"), Side.SELL))
        asks = [(ask + k * step * rng.randint(1, 2), inst.qty_to_lots(D(rng.randint(1, 60)) / 100)) for k in range(15)]
        bids = [(ask - (k + 1) * step, inst.qty_to_lots(D(rng.randint(1, 60)) / 100)) for k in range(15)]
        b.apply_snapshot(bids, dict(asks).items(), ts_event=T0)
        out[n] = b
    return out


def _payload(d: RoutingDecision) -> dict[str, Any]:
    p = d.to_dict()
    del p["decision_id"]
    return p


@pytest.mark.parametrize("seed", range(12))
def test_a_router_that_routed_before_decides_like_a_fresh_one(seed: int) -> None:
    rng = random.Random(seed)
    strategy = ["best_price", "lowest_cost", "fastest", "smart"][seed % 4]
    text = (f'[routing]\nstrategy = "{strategy}"\nmax_slippage_bps = 50\n'
            '[routing.breaker]\nfailures_to_open = 2\ncooldown_ms = 5\n'
            + "".join(f"[venues.{n}.fees]\ntaker_bps = {rng.choice(['0.5', '2', '4'])}\nmaker_bps = 0\n"
                      f"[venues.{n}.latency]\norder_rtt_ms = {rng.randint(2, 30)}\n" for n in INSTS))
    cfg = load_config_text(text)
    books = _books(rng)
    clock = SimClock(T0 + 3 * MS)
    balances: dict[str, dict[str, D]] = {"a": {"USDT": D("40000"), "BTC": D("0.7")}}
    static = StaticCapacity(balances, {"b": 4})
    unlimited = UnlimitedCapacity()
    steps = 40
    # one router routes at every step; each of the others is told everything as it happens but
    # routes only once, at its step, and must decide exactly as the veteran does
    veteran, *virgins = (Router(cfg.routing, cfg.venues, INSTS, books, clock, static) for _ in range(steps + 1))
    routers = [veteran, *virgins]

    def tell(f: Callable[[Router], None]) -> None:
        for r in routers:
            f(r)
    late: list[tuple[RoutingDecision, dict[str, Any]]] = []
    for step in range(steps):
        n = rng.choice(list(INSTS))
        book = books[n]
        act = rng.random()
        if act < 0.3:   # a level deep in the book or at the top, with or without on_book
            lv = book.asks(None) or [(INSTS[n].price_to_ticks(D("61801"), Side.SELL), 1)]
            px, _lots = lv[rng.randrange(len(lv))] if rng.random() < 0.5 else lv[0]
            book.update_ask(px, rng.choice([0, 1, 400, 30_000]))
            if book.best_ask_ticks is None:
                book.update_ask(px + 5, 100)
            if rng.random() < 0.7:
                for r in routers:
                    r.on_book(n)
        elif act < 0.4:
            book.ts_event = clock.now_ns() - rng.choice([0, 2, 3000]) * MS
        elif act < 0.45:
            book.request_resync() if rng.random() < 0.5 else book.apply_snapshot(
                book.bids(None), book.asks(None), ts_event=clock.now_ns())
        elif act < 0.6:
            kind = rng.choice(["reject", "timeout", "ack", "take", "post"])
            rtt = rng.choice([None, 1 * MS, 40 * MS])

            def learn(r: Router, n: str = n, kind: str = kind, rtt: int | None = rtt) -> None:
                if kind == "reject":
                    r.record_reject(n)
                elif kind == "timeout":
                    r.record_timeout(n)
                elif kind == "ack":
                    r.record_ack(n, rtt)
                else:
                    r.record_outcome(n, kind, 10, 3)  # type: ignore[arg-type]
            tell(learn)
        elif act < 0.8:  # the capacity provider changes under the router, no notification
            balances.setdefault(n, {})["USDT"] = D(rng.choice(["0", "150", "9000", "500000"]))
            balances[n]["BTC"] = D(rng.choice(["0", "0.01", "3"]))
            static.headroom[n] = rng.choice([0, 1, 50])
            if rng.random() < 0.3:
                static.headroom.pop(n, None)
                balances.pop(n, None)
        elif act < 0.9:  # another provider object altogether
            which: StaticCapacity | UnlimitedCapacity = unlimited if veteran.capacity is static else static
            for r in routers:
                r.capacity = which
        clock.advance_to(clock.now_ns() + rng.choice([0, 0, 1, 4]) * MS)
        side = rng.choice([Side.BUY, Side.SELL])
        limit = rng.choice([None, D("61801.5"), D("61799")])
        req = RouteRequest("BTC-USDT", side, D(rng.choice(["0.001", "0.3", "2", "7"])), limit,
                           rng.choice(["take", "take", "post", "mixed"]), rng.choice([0.0, 0.5, 1.0]))
        d = veteran.route(req)
        fresh = virgins[step].route(req)
        assert _payload(d) == _payload(fresh), f"step {step}"
        # the one state a decision writes: an order placed on a venue whose breaker is half-open
        # is its probe (router.scoring.VenueHealth.start_probe); the others are told, like outcomes
        for n in INSTS:
            sent = veteran.health(n).probe_sent_ns
            assert virgins[step].health(n).probe_sent_ns == sent
            for r in virgins[step + 1:]:
                r.health(n).probe_sent_ns = sent
        assert [(a.venue, a.lots, a.price_ticks) for a in d.allocations] == \
            [(a.venue, a.lots, a.price_ticks) for a in fresh.allocations]
        if step % 3 == 0:
            late.append((d, _payload(fresh)))   # read again after the state moved on
    for d, expected in late:
        assert _payload(d) == expected


def test_lazy_fields_are_those_of_the_decision_time() -> None:
    books = _books(random.Random(3))
    cfg = load_config_text('[routing]\nstrategy = "smart"\n' + "".join(f"[venues.{n}]\n" for n in INSTS))
    clock = SimClock(T0 + 3 * MS)
    r = Router(cfg.routing, cfg.venues, INSTS, books, clock, decision_prefix="X-")
    d = r.route(RouteRequest("BTC-USDT", Side.BUY, D("100"), None, "take"))
    r.decision_prefix = "Y-"
    for b in books.values():
        b.clear()
    r.record_reject("a")
    clock.advance_to(T0 + 10_000 * MS)
    assert d.decision_id == "X-000001"
    # a complete decision (nothing logged, so nothing formatted eagerly) keeps its prefix too
    full = Router(cfg.routing, cfg.venues, INSTS, _books(random.Random(3)), SimClock(T0 + 3 * MS),
                  decision_prefix="P-")
    full_d = full.route(RouteRequest("BTC-USDT", Side.BUY, D("0.01"), None, "take"))
    full.decision_prefix = "Q-"
    assert not full_d.residual_lots and full_d.allocations
    assert full_d.decision_id == "P-000001" and full_d.residual_quantity == 0
    assert d.residual_quantity > 0 and d.residual_reason and "take incomplete" in d.residual_reason
    assert d.explanation.startswith("take ")
    assert all(a.quantity == INSTS[a.venue].lots_to_qty(a.lots) for a in d.allocations)
    assert d.score("a").factors["health"]["rejects"] == 0
    assert d.allocated_quantity + d.residual_quantity == D("100")


def test_budget_holds_at_the_ioc_limit_price_for_the_reported_example() -> None:
    """The routing property test was reported to fail once with 0.07694 BTC bought at limit
    10000.30 on a 7.5 bps venue against 770 USDT (769.4231 x 1.00075 = 770.00015 > 770): the
    budget counted the cheaper first level at its own price (the walked average) while the venue
    checks every lot at the IOC limit, the worst level taken. Fixed in e4d3b73; pinned here at the
    router level (the kernel test is test_budget_values_every_lot_at_the_limit_price)."""
    spot = Instrument(VenueId("spot"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D("0.01"), D("0.00001"),
                      D("0.00001"), D("5"))
    book = L2Book("spot", "BTC-USDT")
    book.apply_snapshot([], [(1_000_000, 1000), (1_000_030, 10_000)], ts_event=T0)
    cfg = load_config_text('[routing]\nstrategy = "lowest_cost"\n[venues.spot.fees]\ntaker_bps = 7.5\nmaker_bps = 0\n')
    r = Router(cfg.routing, cfg.venues, {"spot": spot}, {"spot": book}, SimClock(T0 + MS),
               StaticCapacity({"spot": {"USDT": D("770")}}))
    want = D("0.07694")
    # the walked average would have afforded every lot asked for
    assert (D("0.01") * D("10000.00") + D("0.06694") * D("10000.30")) * (1 + D("7.5") / 10_000) <= 770
    d = r.route(RouteRequest("BTC-USDT", Side.BUY, want, None, "take"))
    (a,) = d.allocations
    assert a.price == D("10000.30")
    assert a.quantity * a.price * (1 + D("7.5") / 10_000) <= D("770")
    assert (a.quantity + spot.lot_size) * a.price * (1 + D("7.5") / 10_000) > D("770")  # no lot more
    assert d.residual_quantity == want - a.quantity and d.residual_reason is not None
    assert "not enough USDT (770 available)" in d.residual_reason
