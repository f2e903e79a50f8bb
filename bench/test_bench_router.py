"""Routing decision latency: 5 venues x 20 levels each, fee- and latency-adjusted (smart).

Measurements in one run (pure Python, single core):
* ``route_smart_take`` — a whole :meth:`Router.route` decision: health/staleness checks, latency,
  fill-probability and capacity factors for 5 venues, the lazy-heap sweep, min-notional checks, the
  allocations; the explain record's numbers are captured, its nested dict is built on first read;
* ``route_smart_take_moving`` — the same decision with one book update + ``on_book`` and a 1 µs clock
  step before each one (nothing repeats between decisions);
* ``route_smart_take_to_dict`` — the same plus ``to_dict()`` (the journal payload the engine writes
  for every decision: builds the factor dicts and the decimal strings);
* ``route_smart_post_balances`` / ``route_smart_take_balances`` — the decisions the engine makes:
  every venue's balances known (``StaticCapacity``: 2 BTC and 150,000 USDT each, read as Decimal
  for every venue of every decision, as the engine's simulated ledgers are), a passive order of
  0.5 BTC (ranked by maker economics, queue and fill rate; posted on one venue) and the 5 BTC take;
* ``sweep_router_kernel`` — the allocation kernel as the router runs it: each venue's best level
  read from its live book by the kernel, per-venue constants prepared once, fee/latency-adjusted lazy heap
  merge (:func:`router.allocation.sweep_levels`; deeper levels pulled from the book on demand);
* ``sweep_lazy_heap`` — the generic kernel API (:func:`router.allocation.sweep`) on the same
  ladders given as ``Ladder`` objects over ``L2Book.iter_levels`` (the previous kernel measurement);
* ``sweep_naive_sort`` — the reference: materialise all 100 levels, sort, walk;
* ``sweep_minimal_heapq`` — the issue's own reference: a bare ``heapq`` merge over the same ladders
  built beforehand, keyed by price x fee, with none of the router's other work (7.4 us where the
  target was set);
* ``route_smart_mixed[urgency/cont_kukanov]`` — a 5 BTC mixed order split by urgency (the
  reference) or by the Cont-Kukanov optimum across the 5 posting venues without overbooking
  (each venue's empirical outflow over 200 windows, ``router.cont_kukanov.no_overbooking_split``);
* ``route_smart_take_cold[0/16/64 MB]`` — ``route_smart_take`` one decision per round, with 0, 16
  or 64 MB of other memory written between rounds (not timed): what the decision costs when the
  caches hold other work, as in the engine, where a child follows thousands of market events
  (this machine: 32 MB L3, 1 MB L2 per core).

Run: python -m pytest bench/test_bench_router.py --benchmark-enable -q
"""

from __future__ import annotations

import heapq
import random
from decimal import Decimal as D
from typing import Any

import numpy as np
import pytest

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.model import Instrument, InstrumentKind, Side, Symbol, VenueId
from router.allocation import FEE_SCALE, Ladder, SweepResult, VenueParams, naive_sweep, sweep, sweep_levels
from router.config import load_config_text
from router.routing import Router, RouteRequest
from router.scoring import CapacityProvider, StaticCapacity

T0 = 1_723_161_300_000_000_000
MS = 1_000_000
VENUES = [("v0", "0.01", "0.00001", "1"), ("v1", "0.1", "0.001", "2.5"), ("v2", "0.01", "0.0001", "1.5"),
          ("v3", "0.5", "0.001", "2"), ("v4", "0.1", "0.00001", "0.5")]
FEE_E8 = {name: int(D(fee) * 10_000) for name, _t, _l, fee in VENUES}
QTY = D("5")


def _setup(capacity: CapacityProvider | None = None,
           router_cls: type[Router] = Router, routing_extra: str = "") -> tuple[Router, dict[str, L2Book],
                                                                             dict[str, Instrument]]:
    """The benchmark's router and books (``router_cls``: another version's Router, for A/B;
    ``routing_extra``: more ``[routing]`` keys)."""
    rng = random.Random(7)
    insts: dict[str, Instrument] = {}
    books: dict[str, L2Book] = {}
    text = ['[routing]\nstrategy = "smart"\nmax_slippage_bps = 100\n' + routing_extra]
    for name, tick, lot, fee in VENUES:
        inst = Instrument(VenueId(name), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D(tick), D(lot),
                          D(lot), D("5"), InstrumentKind.SPOT)
        insts[name] = inst
        best = inst.price_to_ticks(D("61800") + D(rng.randint(0, 40)) / 10, Side.SELL)
        book = L2Book(name, "BTC-USDT")
        step = inst.price_to_ticks(D("0.5"), Side.SELL)  # levels about 0.5-1.5 USDT apart on every venue
        asks, px = [], best
        for _ in range(20):
            asks.append((px, inst.qty_to_lots(D(rng.randint(5, 80)) / 100)))
            px += step * rng.randint(1, 3)
        bids = [(best - 1 - i, inst.qty_to_lots(D("0.5"))) for i in range(20)]
        book.apply_snapshot(bids, dict(asks).items(), ts_event=T0)
        books[name] = book
        text.append(f'[venues.{name}.fees]\ntaker_bps = {fee}\nmaker_bps = 1\n'
                    f'[venues.{name}.latency]\norder_rtt_ms = {rng.randint(5, 40)}\n')
    cfg = load_config_text("".join(text))
    clock = SimClock(T0 - 2000 * MS)
    router = router_cls(cfg.routing, cfg.venues, insts, books, clock, capacity)
    # give every venue some activity so the latency haircut is non-trivial
    for k in range(200):
        for name, book in books.items():
            ba = book.best_ask_ticks
            assert ba is not None
            book.update_ask(ba, book.ask_lots_at(ba) - 1 if k % 2 else book.ask_lots_at(ba) + 1)
            router.on_book(name, T0 - 2000 * MS + k * 10 * MS)
    clock.advance_to(T0 + 20 * MS)
    return router, books, insts


@pytest.fixture(scope="module")
def env() -> tuple[Router, dict[str, L2Book], dict[str, Instrument]]:
    return _setup()


def _ladders(router: Router, books: dict[str, L2Book]) -> list[Ladder]:
    g = router.grid
    out = []
    for name, _t, _l, _fee in VENUES:
        fee_e8 = FEE_E8[name]
        out.append(Ladder(books[name].iter_levels(Side.BUY), g.price_factor[name], g.lot_factor[name],
                          FEE_SCALE + fee_e8 + 3_000, FEE_SCALE + fee_e8, p_gone_top=0.2, move_ticks=30.0))
    return out


def _p99(benchmark: Any) -> None:
    """Record the 99th percentile of the per-round times (µs) in the benchmark's extra_info."""
    stats = getattr(benchmark, "stats", None)
    data = sorted(getattr(getattr(stats, "stats", None), "data", []) or [])
    if data:
        benchmark.extra_info["p99_us"] = round(data[min(len(data) - 1, int(0.99 * len(data)))] * 1e6, 2)
        benchmark.extra_info["median_us"] = round(data[len(data) // 2] * 1e6, 2)


def _want(router: Router) -> int:
    return int(QTY / router.grid.lot_size)


def test_route_smart_take(benchmark: Any, env: tuple[Router, dict[str, L2Book], dict[str, Instrument]]) -> None:
    router, _books, _ = env
    req = RouteRequest("BTC-USDT", Side.BUY, QTY, None, "take")
    d = benchmark(router.route, req)
    _p99(benchmark)
    assert len(d.venues) == 5 and all(v.excluded_reason is None for v in d.venues)
    assert d.allocated_quantity + d.residual_quantity == QTY and d.allocations


def test_route_smart_take_moving(benchmark: Any) -> None:
    """The same decision while the world moves: before each decision one venue's best ask changes
    size (``on_book`` told) and the clock advances 1 µs, so nothing can be reused from the previous
    decision (the timing includes that book update and ``on_book``)."""
    router, books, _ = _setup()
    clock = router.clock
    assert isinstance(clock, SimClock)
    names = [name for name, *_ in VENUES]
    req = RouteRequest("BTC-USDT", Side.BUY, QTY, None, "take")
    step = [0]

    def moving() -> Any:
        k = step[0] = step[0] + 1
        name = names[k % len(names)]
        book = books[name]
        ba = book.best_ask_ticks
        assert ba is not None
        book.update_ask(ba, book.ask_lots_at(ba) + (1 if k % 2 else -1))
        router.on_book(name, clock.now_ns())
        clock.advance_to(clock.now_ns() + 1_000)
        return router.route(req)

    d = benchmark(moving)
    _p99(benchmark)
    assert all(v.excluded_reason is None for v in d.venues) and d.allocations


def test_route_smart_take_to_dict(benchmark: Any,
                                  env: tuple[Router, dict[str, L2Book], dict[str, Instrument]]) -> None:
    router, _books, _ = env
    req = RouteRequest("BTC-USDT", Side.BUY, QTY, None, "take")
    payload = benchmark(lambda: router.route(req).to_dict())
    _p99(benchmark)
    assert len(payload["venues"]) == 5 and payload["allocations"]


def _balances() -> StaticCapacity:
    return StaticCapacity({name: {"BTC": D("2"), "USDT": D("150000")} for name, *_ in VENUES})


def test_route_smart_post_balances(benchmark: Any) -> None:
    router, _books, _ = _setup(_balances())
    req = RouteRequest("BTC-USDT", Side.BUY, D("0.5"), None, "post")
    d = benchmark(router.route, req)
    _p99(benchmark)
    assert len(d.venues) == 5 and all(v.excluded_reason is None for v in d.venues)
    assert d.allocations and d.allocations[0].style == "post" and d.residual_lots == 0


def test_route_smart_take_balances(benchmark: Any) -> None:
    router, _books, _ = _setup(_balances())
    req = RouteRequest("BTC-USDT", Side.BUY, QTY, None, "take")
    d = benchmark(router.route, req)
    _p99(benchmark)
    assert all(v.excluded_reason is None for v in d.venues)
    assert d.allocated_quantity + d.residual_quantity == QTY and d.allocations


def _kernel_inputs(router: Router, books: dict[str, L2Book]) -> tuple[list[L2Book], list[VenueParams]]:
    """Per-venue constants, prepared once (as the router does at configuration time)."""
    g = router.grid
    bl = [books[name] for name, *_ in VENUES]
    params: list[VenueParams] = [(g.price_factor[name], g.lot_factor[name], FEE_SCALE + FEE_E8[name] + 3_000,
                                  FEE_SCALE + FEE_E8[name], -1, -1, 0, 0.2, 30.0) for name, *_ in VENUES]
    return bl, params


def _router_kernel(bl: list[L2Book], params: list[VenueParams], want: int) -> SweepResult:
    # as the router calls it: the kernel reads each venue's best level from the live book
    return sweep_levels(Side.BUY, None, None, bl, params, want)


def test_sweep_router_kernel(benchmark: Any, env: tuple[Router, dict[str, L2Book], dict[str, Instrument]]) -> None:
    router, books, _ = env
    want = _want(router)
    bl, params = _kernel_inputs(router, books)
    res = benchmark(_router_kernel, bl, params, want)
    _p99(benchmark)
    ref = naive_sweep(Side.BUY, _ladders(router, books), want)
    assert (res.filled_common_lots, res.cost, res.lots) == (ref.filled_common_lots, ref.cost, ref.lots)


def test_sweep_lazy_heap(benchmark: Any, env: tuple[Router, dict[str, L2Book], dict[str, Instrument]]) -> None:
    router, books, _ = env
    want = _want(router)
    res = benchmark(lambda: sweep(Side.BUY, _ladders(router, books), want))
    _p99(benchmark)
    ref = naive_sweep(Side.BUY, _ladders(router, books), want)
    assert (res.filled_common_lots, res.cost) == (ref.filled_common_lots, ref.cost)
    assert sum(t.levels for t in res.takes) > 5  # several levels consumed across venues


def _minimal_heap_merge(ladders: list[list[tuple[int, int]]], mults: list[int], want: int) -> list[int]:
    """The bare lazy heap merge the issue's 7.4 us was measured on: per venue a pre-built list of
    ``(common ticks, common lots)``, keyed by price x an integer fee multiplier; no latency
    haircut, limit, lot size, cap, budget, minimums or explain. Lots taken per venue."""
    heap = [(lad[0][0] * mults[i], i, 0) for i, lad in enumerate(ladders) if lad]
    heapq.heapify(heap)
    out = [0] * len(ladders)
    left = want
    while left > 0 and heap:
        _key, i, j = heap[0]
        lad = ladders[i]
        lots = lad[j][1]
        take = lots if lots < left else left
        out[i] += take
        left -= take
        j += 1
        if j < len(lad):
            heapq.heapreplace(heap, (lad[j][0] * mults[i], i, j))
        else:
            heapq.heappop(heap)
    return out


def test_sweep_minimal_heapq(benchmark: Any, env: tuple[Router, dict[str, L2Book], dict[str, Instrument]]) -> None:
    """Reference for the issue's target: the bare heap merge over the same 5 x 20 ladders, built
    beforehand (what a decision costs with none of the router's work). Checked against sorting all
    100 levels by the same key."""
    router, books, _ = env
    g = router.grid
    names = [name for name, *_ in VENUES]
    ladders = [[(p * g.price_factor[n], q * g.lot_factor[n]) for p, q in books[n].iter_levels(Side.BUY)]
               for n in names]
    mults = [FEE_SCALE + FEE_E8[n] for n in names]
    want = _want(router)
    res = benchmark(_minimal_heap_merge, ladders, mults, want)
    _p99(benchmark)
    levels = sorted((p * mults[i], i, k, q) for i, lad in enumerate(ladders) for k, (p, q) in enumerate(lad))
    ref, left = [0] * len(ladders), want
    for _key, i, _k, q in levels:
        take = min(q, left)
        ref[i] += take
        left -= take
        if not left:
            break
    assert res == ref and sum(res) == want


def test_sweep_naive_sort(benchmark: Any, env: tuple[Router, dict[str, L2Book], dict[str, Instrument]]) -> None:
    router, books, _ = env
    want = _want(router)
    res = benchmark(lambda: naive_sweep(Side.BUY, _ladders(router, books), want))
    _p99(benchmark)
    assert res.filled_common_lots == want


@pytest.mark.parametrize("flush_mb", [0, 16, 64])
def test_route_smart_take_cold(benchmark: Any, env: tuple[Router, dict[str, L2Book], dict[str, Instrument]],
                               flush_mb: int) -> None:
    router, _books, _ = env
    req = RouteRequest("BTC-USDT", Side.BUY, QTY, None, "take")
    buf = np.zeros(flush_mb * 1024 * 1024 // 8 or 1)

    def flush() -> None:
        if flush_mb:
            np.add(buf, 1.0, out=buf)   # writes every cache line of the buffer, evicting the router's working set

    for _ in range(200):
        router.route(req)   # warm the memos as the plain benchmark does
    d = benchmark.pedantic(router.route, args=(req,), setup=flush, rounds=400, iterations=1)
    _p99(benchmark)
    assert d.allocated_quantity == QTY and len(d.venues) == 5


CK_ROUTING = ('mixed_split = "cont_kukanov"\n[routing.cont_kukanov]\nhorizon_ms = 10\nmin_samples = 20\n'
              'keep_windows = 200\n')


@pytest.mark.parametrize("split", ["urgency", "cont_kukanov"])
def test_route_smart_mixed(benchmark: Any, split: str) -> None:
    """A 5 BTC mixed order, urgency 0.5: split by urgency (reference) or by Cont-Kukanov across
    the posting venues' outflow windows (200 windows of 10 ms each, from the setup's book activity)."""
    router, _books, _ = _setup(routing_extra=CK_ROUTING if split == "cont_kukanov" else "")
    req = RouteRequest("BTC-USDT", Side.BUY, QTY, None, "mixed", 0.5)
    router.route(req)   # the first cont_kukanov decision imports router.cont_kukanov (numpy, scipy)
    d = benchmark(router.route, req)
    _p99(benchmark)
    assert d.allocated_quantity + d.residual_quantity == QTY
    if split == "cont_kukanov":
        assert d.split is not None and d.split["method"] == "cont_kukanov", d.split
