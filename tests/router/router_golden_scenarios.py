"""Deterministic routing scenarios whose ``RoutingDecision.to_dict()`` payloads are pinned.

Used by ``tests/router/test_router_payload_golden.py``: ``tests/router/router_golden_payloads.json``
holds, per scenario, the SHA-256 of the payload's JSON text (key order kept) as produced by the
router BEFORE the latency work (commit 144a0f5's ``router/``), so any change of the journal payload
(values, key order, float formatting) fails the test. Regenerate it only when a payload change is
intended (``--full`` prints the payloads themselves, for diffing):

    python -m tests.router.router_golden_scenarios > tests/router/router_golden_payloads.json

Scenarios cover every strategy and style, both sides, limit prices, slippage bounds, balances
(quote budget, base cap, perpetual margin), max_quantity caps, rate-limit headroom, venue
minimums (slice dropped and re-offered), every exclusion reason, learned state (fills, rejects,
acks with measured round trips), book changes between decisions with and without ``on_book``,
and payloads rendered after the router's state has moved on.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.model import Instrument, InstrumentKind, Side, Symbol, VenueId
from router.config import load_config_text
from router.routing import Router, RouteRequest, RoutingDecision
from router.scoring import StaticCapacity

T0 = 1_723_161_300_000_000_000
MS = 1_000_000
STRATEGIES = ("best_price", "lowest_cost", "fastest", "smart")
# name, tick, lot, min_qty, min_notional, kind
VENUE_SPECS = [("v0", "0.01", "0.00001", "0.00001", "5", InstrumentKind.SPOT),
               ("v1", "0.1", "0.001", "0.001", "100", InstrumentKind.PERPETUAL),
               ("v2", "0.01", "0.0001", "0.0001", "5", InstrumentKind.SPOT),
               ("v3", "0.5", "0.001", "0.01", "20", InstrumentKind.SPOT),
               ("v4", "0.1", "0.00001", "0.00001", "5", InstrumentKind.PERPETUAL)]


def _instrument(name: str, tick: str, lot: str, min_qty: str, min_notional: str, kind: InstrumentKind) -> Instrument:
    return Instrument(VenueId(name), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D(tick), D(lot), D(min_qty),
                      D(min_notional), kind)


def _book(rng: random.Random, name: str, inst: Instrument, mid: D, nlev: int) -> L2Book:
    book = L2Book(name, "BTC-USDT")
    best_ask = inst.price_to_ticks(mid + D(rng.randint(0, 40)) / 10, Side.SELL)
    best_bid = inst.price_to_ticks(mid - D(rng.randint(1, 40)) / 10, Side.BUY)
    if best_bid >= best_ask:
        best_bid = best_ask - 1
    step = max(1, inst.price_to_ticks(D("0.5"), Side.SELL))
    asks, bids = [], []
    px = best_ask
    for _ in range(nlev):
        asks.append((px, max(1, inst.qty_to_lots(D(rng.randint(1, 80)) / 100))))
        px += step * rng.randint(1, 3)
    px = best_bid
    for _ in range(nlev):
        bids.append((px, max(1, inst.qty_to_lots(D(rng.randint(1, 80)) / 100))))
        px -= step * rng.randint(1, 3)
    book.apply_snapshot(bids, asks, ts_event=T0)
    return book


def _config(rng: random.Random, names: list[str], strategy: str) -> str:
    lines = [f'[routing]\nstrategy = "{strategy}"\n']
    if rng.random() < 0.6:
        lines.append(f"max_slippage_bps = {rng.choice(['2', '10', '100'])}\n")
    if rng.random() < 0.3:
        lines.append(f"max_latency_ms = {rng.choice([15, 30, 2500])}\n")
    if rng.random() < 0.3:
        lines.append(f"latency_haircut = {rng.choice(['true', 'false'])}\n")
    if rng.random() < 0.3:
        lines.append(f"miss_cost_bps = {rng.choice([0, 2.5, 20])}\n")
    if rng.random() < 0.3:
        lines.append(f"[routing.weights]\nlatency = {rng.choice([0, 0.5, 3])}\nfill = {rng.choice([0, 1, 2])}\n"
                     f"queue = {rng.choice([0, 1, 4])}\n")
    lines.append("[routing.breaker]\nfailures_to_open = 2\ncooldown_ms = 1000\n")
    for n in names:
        extra = ""
        if rng.random() < 0.08:
            extra += "enabled = false\n"
        if rng.random() < 0.15:
            extra += f'max_quantity = "{rng.choice(["0.3", "1", "2.5"])}"\n'
        if rng.random() < 0.2:
            extra += "post_only = false\n"
        lines.append(f"[venues.{n}]\n{extra}")
        lines.append(f"[venues.{n}.fees]\ntaker_bps = {rng.choice(['0', '0.5', '1', '2.5', '4', '-0.5'])}\n"
                     f"maker_bps = {rng.choice(['0', '1', '-0.2', '0.5'])}\n")
        lines.append(f"[venues.{n}.latency]\norder_rtt_ms = {rng.randint(2, 40)}\njitter_ms = {rng.choice([0, 3])}\n")
    return "".join(lines)


def _capacity(rng: random.Random, names: list[str]) -> StaticCapacity | None:
    if rng.random() < 0.5:
        return None
    balances: dict[str, dict[str, D]] = {}
    headroom: dict[str, int] = {}
    for n in names:
        r = rng.random()
        if r < 0.25:
            balances[n] = {"USDT": D(rng.choice(["100", "20000", "150000", "0"])),
                           "BTC": D(rng.choice(["0.5", "3", "0"]))}
        if rng.random() < 0.2:
            headroom[n] = rng.choice([0, 3])
    return StaticCapacity(balances, headroom)


def _request(rng: random.Random, lot: D) -> RouteRequest:
    side = rng.choice([Side.BUY, Side.SELL])
    qty = D(rng.choice(["0.001", "0.25", "1", "3.5", "5", "12", "0.00002"]))
    qty = max(lot, (qty / lot).to_integral_value() * lot)
    limit = None
    if rng.random() < 0.35:
        off = D(rng.randint(-20, 60)) / 10
        limit = D("61800") + off if side is Side.BUY else D("61800") - off
    style = rng.choice(["take", "take", "post", "mixed"])
    return RouteRequest("BTC-USDT", side, qty, limit, style, rng.choice([0.0, 0.3, 0.5, 1.0]),  # type: ignore[arg-type]
                        rng.choice([None, "P-1"]))


def _scenario(seed: int) -> Iterator[tuple[str, RoutingDecision]]:
    rng = random.Random(seed)
    nven = rng.randint(1, 5)
    specs = rng.sample(VENUE_SPECS, nven)
    insts = {s[0]: _instrument(*s) for s in specs}
    names = list(insts)
    strategy = STRATEGIES[seed % len(STRATEGIES)]
    books = {n: _book(rng, n, insts[n], D("61800"), rng.choice([1, 3, 20, 40])) for n in names}
    cfg = load_config_text(_config(rng, names, strategy))
    clock = SimClock(T0 - 2000 * MS)
    router = Router(cfg.routing, cfg.venues, insts, books, clock, _capacity(rng, names))
    # activity history (some venues), so the latency haircut and volatility are non-trivial
    for k in range(rng.choice([0, 5, 60])):
        for n, book in books.items():
            ba, bb = book.best_ask_ticks, book.best_bid_ticks
            if ba is not None and k % 3:
                book.update_ask(ba, book.ask_lots_at(ba) + (1 if k % 2 else -1) if book.ask_lots_at(ba) > 1 else 5)
            if bb is not None and k % 5 == 0:
                book.update_bid(bb, book.bid_lots_at(bb) + 1)
            router.on_book(n, T0 - 2000 * MS + k * 17 * MS)
    clock.advance_to(T0 + rng.choice([1, 20, 300]) * MS)
    pending: list[tuple[str, RoutingDecision]] = []
    for step in range(6):
        # learned state and book changes between decisions
        n = rng.choice(names)
        action = rng.random()
        if action < 0.15:
            router.record_outcome(n, rng.choice(["take", "post"]), 10, rng.randint(0, 10))  # type: ignore[arg-type]
        elif action < 0.25:
            router.record_reject(n)
        elif action < 0.3:
            router.record_timeout(n)
        elif action < 0.4:
            router.record_ack(n, rng.choice([None, 3 * MS, 45 * MS]))
        elif action < 0.7:
            book = books[n]
            side = rng.choice([Side.BUY, Side.SELL])
            best = book.best_ask_ticks if side is Side.SELL else book.best_bid_ticks
            if best is not None:
                px = best + rng.randint(-3, 3)
                lots = rng.choice([0, 1, 50, 3000])
                if side is Side.SELL and (book.best_bid_ticks is None or px > book.best_bid_ticks):
                    book.update_ask(px, lots)
                elif side is Side.BUY and (book.best_ask_ticks is None or px < book.best_ask_ticks):
                    book.update_bid(px, lots)
                book.ts_event = clock.now_ns() - rng.choice([0, 1, 5]) * MS
                if rng.random() < 0.8:  # sometimes the caller forgets on_book: the route must still see the book
                    router.on_book(n)
        elif action < 0.75:
            books[n].request_resync()
        elif action < 0.8:
            books[n].ts_event = clock.now_ns() - 5000 * MS
        clock.advance_to(clock.now_ns() + rng.choice([0, 1, 7]) * MS)
        d = router.route(_request(rng, router.grid.lot_size))
        if step % 2:
            pending.append((f"seed{seed}-step{step}-late", d))  # rendered after later state changes
        else:
            yield f"seed{seed}-step{step}", d
    yield from pending


def _minimum_drop() -> Iterator[tuple[str, RoutingDecision]]:
    """A slice below a venue minimum is dropped and re-offered to the others."""
    insts = {"a": _instrument("a", "0.01", "0.00001", "0.00001", "5", InstrumentKind.SPOT),
             "b": _instrument("b", "0.1", "0.001", "0.5", "100", InstrumentKind.PERPETUAL)}
    books = {}
    for n, asks in (("a", [("61800.00", "0.2"), ("61800.40", "3")]), ("b", [("61800.1", "0.2"), ("61800.2", "4")])):
        inst = insts[n]
        b = L2Book(n, "BTC-USDT")
        b.apply_snapshot([(inst.price_to_ticks(D("61790")), inst.qty_to_lots(D("1")))],
                         [(inst.price_to_ticks(D(p)), inst.qty_to_lots(D(q))) for p, q in asks], ts_event=T0)
        books[n] = b
    for strategy in STRATEGIES:
        cfg = load_config_text(f'[routing]\nstrategy = "{strategy}"\n[venues.a.fees]\ntaker_bps = 2\n'
                               "[venues.b.fees]\ntaker_bps = 1\n")
        router = Router(cfg.routing, cfg.venues, insts, books, SimClock(T0 + MS))
        for qty in ("0.3", "0.6", "4", "10"):
            for style in ("take", "mixed"):
                yield (f"mindrop-{strategy}-{qty}-{style}",
                       router.route(RouteRequest("BTC-USDT", Side.BUY, D(qty), None, style)))  # type: ignore[arg-type]


def _setup_bench() -> tuple[Router, dict[str, L2Book]]:
    """The benchmark's 5 x 20 router and books (bench/test_bench_router.py)."""
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.test_bench_router import _setup

    router, books, _ = _setup()
    return router, books


def _bench_like() -> Iterator[tuple[str, RoutingDecision]]:
    """The benchmark's 5 x 20 workload, buy and sell, before and after book updates."""
    router, books = _setup_bench()
    for i in range(4):
        for side in (Side.BUY, Side.SELL):
            for style in ("take", "mixed", "post"):
                yield (f"bench-{i}-{side.name}-{style}",
                       router.route(RouteRequest("BTC-USDT", side, D("5"), None, style)))  # type: ignore[arg-type]
        for n, book in books.items():
            ba = book.best_ask_ticks
            assert ba is not None
            book.update_ask(ba + i + 1, 777 + i)
            if i % 2:
                book.update_ask(ba, 0)
            router.on_book(n)


def scenarios() -> Iterator[tuple[str, RoutingDecision]]:
    for seed in range(120):
        yield from _scenario(seed)
    yield from _minimum_drop()
    yield from _bench_like()


def digest(payload: Any) -> str:
    """SHA-256 of the payload's JSON text with its key order (what the journal stores)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=False).encode()).hexdigest()


def payloads() -> dict[str, Any]:
    """name -> ``to_dict()`` payload, in scenario order (a later payload is rendered after its
    router has routed again and its state changed)."""
    decisions = list(scenarios())
    return {name: d.to_dict() for name, d in decisions}


if __name__ == "__main__":
    full = payloads()
    out = full if "--full" in sys.argv else {k: digest(v) for k, v in full.items()}
    json.dump(out, sys.stdout, indent=0 if "--full" in sys.argv else 1, sort_keys=False)
    sys.stdout.write("\n")
