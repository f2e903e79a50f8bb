"""Book benchmarks on the real Binance USD-M BTCUSDT stream (443,521 level updates).

The stream is decoded once per session to integers ``(is_bid, price_ticks, lots)`` so that parsing
is not measured: price strings have two decimals on the wire (tick 0.1), quantities three (lot
0.001); dropping the '.' gives exact integers. Each round starts from the REST snapshot (built in
the untimed setup) and applies every diff level in file order, reading the best bid and ask after
EVERY level. The same stream runs through:

* ``L2Book``            sorex's book (dict + bisect-maintained price index, cached top)
* ``naive-sorteddict``  a ``sortedcontainers.SortedDict`` per side with a cached top
* ``order-book``        the PyPI C extension ``order_book`` (re-sorts on read)

Run: ``python -m pytest bench/test_bench_book.py --benchmark-enable -q``
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.consolidated import ConsolidatedBook
from marketdata.model import Instrument, InstrumentKind, Side
from marketdata.units import CommonGrid

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SOREX_SHARED", REPO.parent / "shared"))
USDM = SHARED / "data" / "binance-btc" / "usdm_btcusdt_20240808.gz"

Stream = list[tuple[bool, int, int]]
Snapshot = tuple[list[tuple[int, int]], list[tuple[int, int]]]


def _price_ticks(text: str) -> int:
    # "61800.20" -> 6180020 hundredths -> 618002 ticks of 0.1 (USD-M prices always end in 0)
    return int(text.replace(".", "")) // 10


def _lots(text: str) -> int:
    return int(text.replace(".", ""))  # "2.507" -> 2507 lots of 0.001


def decode_usdm(path: Path) -> tuple[Snapshot, Stream]:
    """Snapshot levels and every depth-diff level of the capture, in file order, as integers."""
    snapshot: Snapshot | None = None
    stream: Stream = []
    append = stream.append
    with gzip.open(path, "rt") as fh:
        for line in fh:
            _, _, body = line.partition(" ")
            msg = json.loads(body)
            if "lastUpdateId" in msg:
                snapshot = ([(_price_ticks(p), _lots(q)) for p, q in msg["bids"]],
                            [(_price_ticks(p), _lots(q)) for p, q in msg["asks"]])
                continue
            data = msg.get("data", {})
            if data.get("e") != "depthUpdate":
                continue
            for p, q in data["b"]:
                append((True, _price_ticks(p), _lots(q)))
            for p, q in data["a"]:
                append((False, _price_ticks(p), _lots(q)))
    if snapshot is None:
        raise ValueError(f"{path}: no REST depth snapshot found")
    return snapshot, stream


@pytest.fixture(scope="session")
def usdm_stream() -> tuple[Snapshot, Stream]:
    if not USDM.is_file():
        pytest.skip(f"real data not found at {USDM} (set SOREX_SHARED)")
    return decode_usdm(USDM)


# ---------------------------------------------------------------------------- the three books
def run_l2book(book: L2Book, stream: Stream) -> int:
    ub, ua = book.update_bid, book.update_ask
    acc = 0
    for is_bid, p, q in stream:
        if is_bid:
            ub(p, q)
        else:
            ua(p, q)
        bb, ba = book.best_bid_ticks, book.best_ask_ticks
        if bb is not None and ba is not None:
            acc += ba - bb
    return acc


class NaiveSortedDictBook:
    """Reference: ``SortedDict`` per side, best bid/ask cached and refreshed when touched."""

    def __init__(self, snapshot: Snapshot) -> None:
        from sortedcontainers import SortedDict

        self.bids = SortedDict(dict(snapshot[0]))
        self.asks = SortedDict(dict(snapshot[1]))
        self.best_bid: int | None = self.bids.peekitem(-1)[0] if self.bids else None
        self.best_ask: int | None = self.asks.peekitem(0)[0] if self.asks else None

    def update_bid(self, p: int, q: int) -> None:
        bids = self.bids
        if q:
            bids[p] = q
            if self.best_bid is None or p > self.best_bid:
                self.best_bid = p
        elif p in bids:
            del bids[p]
            if p == self.best_bid:
                self.best_bid = bids.peekitem(-1)[0] if bids else None

    def update_ask(self, p: int, q: int) -> None:
        asks = self.asks
        if q:
            asks[p] = q
            if self.best_ask is None or p < self.best_ask:
                self.best_ask = p
        elif p in asks:
            del asks[p]
            if p == self.best_ask:
                self.best_ask = asks.peekitem(0)[0] if asks else None


def run_naive(book: NaiveSortedDictBook, stream: Stream) -> int:
    ub, ua = book.update_bid, book.update_ask
    acc = 0
    for is_bid, p, q in stream:
        if is_bid:
            ub(p, q)
        else:
            ua(p, q)
        bb, ba = book.best_bid, book.best_ask
        if bb is not None and ba is not None:
            acc += ba - bb
    return acc


def make_order_book(snapshot: Snapshot) -> Any:
    from order_book import OrderBook

    ob = OrderBook()
    for p, q in snapshot[0]:
        ob.bids[p] = q
    for p, q in snapshot[1]:
        ob.asks[p] = q
    return ob


def run_order_book(ob: Any, stream: Stream) -> int:
    bids, asks = ob.bids, ob.asks
    acc = 0
    for is_bid, p, q in stream:
        side = bids if is_bid else asks
        if q:
            side[p] = q
        elif p in side:
            del side[p]
        if bids and asks:  # index(0) re-sorts the side if it changed since the last read
            acc += asks.index(0)[0] - bids.index(0)[0]
    return acc


def _l2book_from(snapshot: Snapshot) -> L2Book:
    book = L2Book("binance-usdm", "BTC-USDT")
    book.apply_snapshot(snapshot[0], snapshot[1])
    return book


CASES: dict[str, tuple[Callable[[Snapshot], Any], Callable[[Any, Stream], int]]] = {
    "l2book": (_l2book_from, run_l2book),  # type: ignore[dict-item]
    "naive-sorteddict": (NaiveSortedDictBook, run_naive),  # type: ignore[dict-item]
    "order-book": (make_order_book, run_order_book),
}


# order-book re-sorts a side on every read after a change: ~45 s per pass over the stream here, so it
# gets a single round (the others 11); its figure is one pass, not a median.
ROUNDS = {"l2book": 11, "naive-sorteddict": 11, "order-book": 1}


def test_same_top_of_book_everywhere(usdm_stream: tuple[Snapshot, Stream]) -> None:
    """The three books agree on the summed spread (same work measured): whole stream for the two
    fast ones, the first 20,000 updates for order-book."""
    snapshot, stream = usdm_stream
    assert len(stream) == 443_521
    results = {name: run(make(snapshot), stream) for name, (make, run) in CASES.items() if name != "order-book"}
    assert len(set(results.values())) == 1, results
    prefix = stream[:20_000]
    results = {name: run(make(snapshot), prefix) for name, (make, run) in CASES.items()}
    assert len(set(results.values())) == 1, results


@pytest.mark.parametrize("name", list(CASES))
def test_bench_usdm_stream(benchmark: Any, usdm_stream: tuple[Snapshot, Stream], name: str) -> None:
    snapshot, stream = usdm_stream
    make, run = CASES[name]
    benchmark.group = "usdm-stream apply + best bid/ask read per update"
    benchmark.extra_info["updates"] = len(stream)
    benchmark.pedantic(run, setup=lambda: ((make(snapshot), stream), {}), rounds=ROUNDS[name], iterations=1)


# ---------------------------------------------------------------------------- consolidated reads
def _three_venue_consolidated() -> ConsolidatedBook:
    """Three BTC-USDT venues on different grids, 1,000 levels a side each, around 61,800."""
    insts = [
        Instrument("venue-a", "BTC-USDT", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001"),
        Instrument("venue-b", "BTC-USDT", "BTCUSDT", "BTC", "USDT", "0.1", "0.001",
                   kind=InstrumentKind.PERPETUAL),
        Instrument("venue-c", "BTC-USDT", "BTC-USDT", "BTC", "USDT", "0.5", "0.0001"),
    ]
    grid = CommonGrid.from_instruments(insts)
    clock = SimClock(1_000)
    cb = ConsolidatedBook(grid, clock)
    rng = random.Random(7)
    for inst, fee in zip(insts, (10.0, 5.0, 8.0), strict=True):
        f = grid.price_factor[inst.venue]
        mid = 6_180_000 // f
        book = L2Book(inst.venue, "BTC-USDT")
        book.apply_snapshot([(mid - 1 - i, rng.randint(1, 5000)) for i in range(1000)],
                            [(mid + 1 + i, rng.randint(1, 5000)) for i in range(1000)], ts_init=1_000)
        cb.add_venue(inst.venue, book, taker_fee_bps=fee)
    return cb


def naive_merged_top(cb: ConsolidatedBook, side: Side, n: int) -> list[tuple[int, list[tuple[str, int]]]]:
    """Reference: every level of every venue converted, one dict, sorted() in full on each read."""
    merged: dict[int, list[tuple[str, int]]] = {}
    grid = cb.grid
    for venue in sorted(cb.venues):
        book = cb.book(venue)
        for p, q in (book.bids() if side is Side.BUY else book.asks()):
            merged.setdefault(grid.to_common_price(venue, p), []).append((venue, grid.to_common_lots(venue, q)))
    return [(p, merged[p]) for p in sorted(merged, reverse=side is Side.BUY)[:n]]


def test_consolidated_matches_naive_merge() -> None:
    cb = _three_venue_consolidated()
    for side in (Side.BUY, Side.SELL):
        assert [(lv.price_ticks, lv.venues) for lv in cb.levels(side, 20)] == naive_merged_top(cb, side, 20)


def test_bench_consolidated_top20_naive(benchmark: Any) -> None:
    cb = _three_venue_consolidated()
    benchmark.group = "consolidated reads (3 venues)"

    def read() -> int:
        return len(naive_merged_top(cb, Side.BUY, 20)) + len(naive_merged_top(cb, Side.SELL, 20))

    assert benchmark(read) == 40


def test_bench_consolidated_top20(benchmark: Any) -> None:
    cb = _three_venue_consolidated()
    benchmark.group = "consolidated reads (3 venues)"

    def read() -> int:
        return len(cb.levels(Side.BUY, 20)) + len(cb.levels(Side.SELL, 20))

    assert benchmark(read) == 40


def test_bench_consolidated_top20_fee_adjusted(benchmark: Any) -> None:
    cb = _three_venue_consolidated()
    benchmark.group = "consolidated reads (3 venues)"

    def read() -> int:
        return len(cb.entries(Side.BUY, 20, fee_adjusted=True)) + len(cb.entries(Side.SELL, 20, fee_adjusted=True))

    assert benchmark(read) == 40


def test_bench_consolidated_best_and_crosses(benchmark: Any) -> None:
    cb = _three_venue_consolidated()
    benchmark.group = "consolidated reads (3 venues)"

    def read() -> int:
        bb, ba = cb.best_bid(), cb.best_ask()
        assert bb is not None and ba is not None
        return len(cb.crosses()) + (ba[0] - bb[0])

    assert benchmark(read) >= 0
