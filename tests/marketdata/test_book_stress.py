"""Seeded random stress tests: L2Book against a naive reference (dict + sorted() on every read)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketdata.book import L2Book
from marketdata.model import BookDeltas, Side


class NaiveBook:
    """Obviously-correct reference: plain dicts, everything recomputed by sorting on each read."""

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def set(self, is_bid: bool, p: int, q: int) -> None:
        side = self.bids if is_bid else self.asks
        if q:
            side[p] = q
        else:
            side.pop(p, None)

    def top(self, is_bid: bool, n: int | None = None) -> list[tuple[int, int]]:
        side = self.bids if is_bid else self.asks
        out = sorted(side.items(), reverse=is_bid)
        return out if n is None else out[:n]

    def best(self, is_bid: bool) -> int | None:
        t = self.top(is_bid, 1)
        return t[0][0] if t else None

    def available(self, taker: Side, limit: int | None) -> int:
        levels = self.top(taker is Side.SELL)
        return sum(q for p, q in levels
                   if limit is None or (p <= limit if taker is Side.BUY else p >= limit))

    def estimate(self, taker: Side, lots: int, limit: int | None) -> tuple[int, int, int | None, int]:
        remaining, notional, worst, n = lots, 0, None, 0
        for p, q in self.top(taker is Side.SELL):
            if remaining <= 0:
                break
            if limit is not None and (p > limit if taker is Side.BUY else p < limit):
                break
            take = min(q, remaining)
            remaining -= take
            notional += take * p
            worst, n = p, n + 1
        return lots - remaining, notional, worst, n


def compare(book: L2Book, ref: NaiveBook, rng: random.Random, lo: int, hi: int) -> None:
    book._check()
    assert book.best_bid_ticks == ref.best(True)
    assert book.best_ask_ticks == ref.best(False)
    n = rng.randint(0, 12)
    assert book.bids(n) == ref.top(True, n)
    assert book.asks(n) == ref.top(False, n)
    assert book.level_count() == (len(ref.bids), len(ref.asks))
    if rng.random() < 0.05:
        assert list(book.iter_bids()) == ref.top(True) and list(book.iter_asks()) == ref.top(False)
    taker = Side.BUY if rng.random() < 0.5 else Side.SELL
    limit = None if rng.random() < 0.3 else rng.randint(lo, hi)
    assert book.lots_available(taker, limit) == ref.available(taker, limit)
    lots = rng.randint(0, 60)
    est = book.estimate_fill(taker, lots, limit)
    assert (est.filled_lots, est.notional_tick_lots, est.worst_price_ticks, est.levels) == \
        ref.estimate(taker, lots, limit)
    bb, ba = ref.best(True), ref.best(False)
    assert book.crossed == (bb is not None and ba is not None and bb >= ba)


def run_ops(seed: int, n_ops: int, *, full_compare_every: int = 1) -> L2Book:
    """Mix of raw level updates, multi-level messages, snapshots and deletes of absent levels on a
    narrow price band (so that levels collide, empty out and the top churns)."""
    rng = random.Random(seed)
    lo, hi = 1_000, 1_000 + rng.choice([5, 40, 400])
    book, ref = L2Book("v", "S"), NaiveBook()
    for i in range(n_ops):
        r = rng.random()
        if r < 0.01:
            bids = [(rng.randint(lo, hi), rng.randint(0, 9)) for _ in range(rng.randint(0, 30))]
            asks = [(rng.randint(lo, hi), rng.randint(0, 9)) for _ in range(rng.randint(0, 30))]
            book.apply(BookDeltas("v", "S", bids, asks, i, i, is_snapshot=True))
            # snapshot semantics: zero-lot entries are ignored (not deletes of an earlier duplicate)
            ref.bids = {p: q for p, q in bids if q}
            ref.asks = {p: q for p, q in asks if q}
        elif r < 0.2:
            bids = [(rng.randint(lo, hi), rng.choice([0, 0, rng.randint(1, 20)])) for _ in range(rng.randint(0, 5))]
            asks = [(rng.randint(lo, hi), rng.choice([0, 0, rng.randint(1, 20)])) for _ in range(rng.randint(0, 5))]
            book.apply(BookDeltas("v", "S", bids, asks, i, i))
            for p, q in bids:
                ref.set(True, p, q)
            for p, q in asks:
                ref.set(False, p, q)
        else:
            is_bid = rng.random() < 0.5
            # bias bids low and asks high so the book is mostly uncrossed, but not always
            mid = (lo + hi) // 2
            p = rng.randint(lo, mid + 2) if is_bid else rng.randint(mid - 2, hi)
            q = 0 if rng.random() < 0.45 else rng.randint(1, 50)
            (book.update_bid if is_bid else book.update_ask)(p, q)
            ref.set(is_bid, p, q)
            book.check_crossed()
        if i % full_compare_every == 0:
            compare(book, ref, rng, lo - 2, hi + 2)
    compare(book, ref, rng, lo - 2, hi + 2)
    return book


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_ops_match_naive_reference(seed: int) -> None:
    book = run_ops(seed, 12_000)
    assert book.statistics()["snapshots"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 20))
def test_random_ops_match_naive_reference_long(seed: int) -> None:
    run_ops(seed, 100_000, full_compare_every=3)


ops = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=0, max_value=30), st.integers(min_value=0, max_value=5)),
    max_size=300,
)


@settings(max_examples=200, deadline=None)
@given(ops=ops, n=st.integers(min_value=0, max_value=8), lots=st.integers(min_value=0, max_value=40),
       limit=st.one_of(st.none(), st.integers(min_value=-1, max_value=31)))
def test_hypothesis_ops_match_naive_reference(ops: list[tuple[bool, int, int]], n: int, lots: int,
                                              limit: int | None) -> None:
    book, ref = L2Book(), NaiveBook()
    for is_bid, p, q in ops:
        (book.update_bid if is_bid else book.update_ask)(p, q)
        ref.set(is_bid, p, q)
        book._check_crossed()
        book._check()
    assert book.bids(n) == ref.top(True, n) and book.asks(n) == ref.top(False, n)
    for taker in (Side.BUY, Side.SELL):
        assert book.lots_available(taker, limit) == ref.available(taker, limit)
        est = book.estimate_fill(taker, lots, limit)
        assert (est.filled_lots, est.notional_tick_lots, est.worst_price_ticks, est.levels) == \
            ref.estimate(taker, lots, limit)


@settings(max_examples=100, deadline=None)
@given(snap=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 5)), max_size=40),
       msgs=st.lists(st.lists(st.tuples(st.booleans(), st.integers(0, 50), st.integers(0, 5)), max_size=8),
                     max_size=40))
def test_hypothesis_messages_then_snapshot(snap: list[tuple[int, int]],
                                           msgs: list[list[tuple[bool, int, int]]]) -> None:
    """Messages via apply() keep the crossed flag right at every message boundary."""
    book, ref = L2Book(), NaiveBook()
    bids = [(p, q) for p, q in snap if p < 25]
    asks = [(p, q) for p, q in snap if p >= 25]
    book.apply_snapshot(bids, asks)
    ref.bids = {p: q for p, q in bids if q}  # snapshot: zero-lot entries are ignored
    ref.asks = {p: q for p, q in asks if q}
    for m in msgs:
        book.apply(BookDeltas("v", "S", [(p, q) for b, p, q in m if b], [(p, q) for b, p, q in m if not b], 0, 0))
        for b, p, q in m:
            ref.set(b, p, q)
        book._check()
        assert book.bids() == ref.top(True) and book.asks() == ref.top(False)
