"""ConsolidatedBook on crafted books: grids, merged ladders, fees, health, crosses, statistics."""

from __future__ import annotations

import random

import pytest

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.consolidated import ConsolidatedBook, ConsolidatedLevel, LadderEntry
from marketdata.errors import InstrumentError
from marketdata.model import BookDeltas, Instrument, InstrumentKind, Side
from marketdata.units import CommonGrid

# venue "fine": tick 0.01, lot 0.00001; venue "coarse": tick 0.1, lot 0.001 -> common 0.01 / 0.00001
FINE = Instrument("fine", "BTC-USDT", "BTCUSDT", "BTC", "USDT", "0.01", "0.00001")
COARSE = Instrument("coarse", "BTC-USDT", "BTCUSDT", "BTC", "USDT", "0.1", "0.001", kind=InstrumentKind.PERPETUAL)
GRID = CommonGrid.from_instruments([FINE, COARSE])
MS = 1_000_000


def make(fine_bids: list[tuple[int, int]], fine_asks: list[tuple[int, int]],
         coarse_bids: list[tuple[int, int]], coarse_asks: list[tuple[int, int]], *,
         max_staleness_ns: int | None = None, fees: tuple[float, float] = (0.0, 0.0),
         now: int = 10 * MS) -> tuple[ConsolidatedBook, L2Book, L2Book, SimClock]:
    clock = SimClock(now)
    fine, coarse = L2Book("fine", "BTC-USDT"), L2Book("coarse", "BTC-USDT")
    fine.apply_snapshot(fine_bids, fine_asks, ts_init=now)
    coarse.apply_snapshot(coarse_bids, coarse_asks, ts_init=now)
    cb = ConsolidatedBook(GRID, clock, max_staleness_ns=max_staleness_ns,
                          books={"fine": fine, "coarse": coarse},
                          taker_fees_bps={"fine": fees[0], "coarse": fees[1]})
    return cb, fine, coarse, clock


@pytest.fixture
def cb() -> ConsolidatedBook:
    # fine: bids 6180000 (100 lots), 6179990 (5); asks 6180010 (7), 6180030 (9)        (common units)
    # coarse: bids 618000 -> 6180000 (2 lots -> 200), 617998 -> 6179980 (1 -> 100);
    #         asks 618002 -> 6180020 (3 -> 300), 618003 -> 6180030 (1 -> 100)
    return make([(6_180_000, 100), (6_179_990, 5)], [(6_180_010, 7), (6_180_030, 9)],
                [(618_000, 2), (617_998, 1)], [(618_002, 3), (618_003, 1)])[0]


def test_grid_factors() -> None:
    assert GRID.price_factor == {"fine": 1, "coarse": 10}
    assert GRID.lot_factor == {"fine": 1, "coarse": 100}


def test_merged_levels_keep_venue_attribution(cb: ConsolidatedBook) -> None:
    assert cb.levels(Side.BUY) == [
        ConsolidatedLevel(6_180_000, [("coarse", 200), ("fine", 100)]),
        ConsolidatedLevel(6_179_990, [("fine", 5)]),
        ConsolidatedLevel(6_179_980, [("coarse", 100)]),
    ]
    asks = cb.levels(Side.SELL, 2)
    assert asks == [ConsolidatedLevel(6_180_010, [("fine", 7)]), ConsolidatedLevel(6_180_020, [("coarse", 300)])]
    assert [lv.lots for lv in cb.levels(Side.SELL)] == [7, 300, 109]
    assert cb.levels(Side.BUY, 1)[0].lots == 300
    assert cb.levels(Side.BUY, 0) == []


def test_flat_entries(cb: ConsolidatedBook) -> None:
    e = cb.entries(Side.SELL)
    assert [(x.price_ticks, x.venue, x.lots) for x in e] == [
        (6_180_010, "fine", 7), (6_180_020, "coarse", 300), (6_180_030, "coarse", 100), (6_180_030, "fine", 9)]
    assert all(x.effective_price == x.price_ticks for x in e)  # no fees configured
    # top-N counts distinct prices: both entries at the shared price come back
    assert len(cb.entries(Side.BUY, 1)) == 2
    with pytest.raises(ValueError):
        cb.entries(Side.BUY, -1)


def test_fee_adjusted_view_reorders() -> None:
    # fine asks 6180010 with 10 bps fee -> 6186190.01; coarse 6180020 with 1 bps -> 6180638.002
    cb = make([(6_180_000, 1)], [(6_180_010, 7)], [(618_000, 1)], [(618_002, 3)], fees=(10.0, 1.0))[0]
    e = cb.entries(Side.SELL, fee_adjusted=True)
    assert [x.venue for x in e] == ["coarse", "fine"]  # raw order was fine first
    assert e[0] == LadderEntry(6_180_020, "coarse", 300, 6_180_020 * 1.0001, 618_002)
    assert e[1].effective_price == pytest.approx(6_180_010 * 1.001)
    bids = cb.entries(Side.BUY, fee_adjusted=True)
    # same raw bid price on both: a seller receives more on the 1 bps venue
    assert [x.venue for x in bids] == ["coarse", "fine"]
    assert bids[0].effective_price == pytest.approx(6_180_000 * 0.9999)
    assert cb.taker_fee_bps("fine") == pytest.approx(10.0)
    cb.set_taker_fee("fine", 0.0)
    assert cb.entries(Side.SELL, 1, fee_adjusted=True)[0].venue == "fine"


def test_best_mid_and_lots_available(cb: ConsolidatedBook) -> None:
    assert cb.best_bid() == (6_180_000, 300)
    assert cb.best_ask() == (6_180_010, 7)
    assert cb.mid_ticks() == 6_180_005
    assert cb.lots_available(Side.BUY) == 7 + 9 + 300 + 100
    assert cb.lots_available_by_venue(Side.BUY, 6_180_020) == {"fine": 7, "coarse": 300}
    # a limit between coarse ticks: 6180029 -> coarse 618002 (down), so 6180030 is not included
    assert cb.lots_available(Side.BUY, 6_180_029) == 7 + 300
    assert cb.lots_available(Side.SELL, 6_179_985) == 100 + 5 + 200  # coarse 617998.5 -> 617999 up
    assert cb.lots_available(Side.SELL, 6_179_980) == 405
    assert cb.lots_available(Side.SELL, 6_180_001) == 0


def test_unknown_venue_rejected() -> None:
    cb = ConsolidatedBook(GRID, SimClock())
    with pytest.raises(InstrumentError, match="not on the common grid"):
        cb.add_venue("other", L2Book())
    cb.add_venue("fine", L2Book())
    with pytest.raises(ValueError, match="twice"):
        cb.add_venue("fine", L2Book())
    with pytest.raises(InstrumentError, match="unknown venue"):
        cb.mark_unhealthy("coarse", "x")
    with pytest.raises(ValueError):
        ConsolidatedBook(GRID, SimClock(), max_staleness_ns=0)


def test_inverse_instruments_are_not_merged() -> None:
    coinm = Instrument("coinm", "BTC-USDT", "BTCUSD_PERP", "BTC", "USD", "0.1", "1",
                       kind=InstrumentKind.INVERSE_PERPETUAL, contract_size="100")
    with pytest.raises(InstrumentError, match="inverse"):
        CommonGrid.from_instruments([FINE, coinm])


# ---------------------------------------------------------------------------- health
def test_staleness_excludes_and_readmits() -> None:
    cb, fine, coarse, clock = make([(6_180_000, 1)], [(6_180_010, 1)], [(618_000, 1)], [(618_002, 1)],
                                   max_staleness_ns=500 * MS)
    assert cb.staleness_ns("fine") == 0
    clock.advance_to(10 * MS + 400 * MS)
    coarse.apply(BookDeltas("coarse", "BTC-USDT", [(617_999, 1)], [], 0, clock.now_ns()))
    clock.advance_to(10 * MS + 600 * MS)
    assert cb.staleness_ns("fine") == 600 * MS and cb.staleness_ns("coarse") == 200 * MS
    exc = cb.excluded()
    assert list(exc) == ["fine"] and exc["fine"].startswith("stale") and "600.0 ms" in exc["fine"]
    assert cb.included() == ["coarse"]
    assert cb.best_ask() == (6_180_020, 100)  # only coarse
    fine.apply(BookDeltas("fine", "BTC-USDT", [], [(6_180_011, 1)], 0, clock.now_ns()))
    assert cb.excluded() == {} and cb.best_ask() == (6_180_010, 1)
    assert cb.statistics()["exclusions"] == 1


def test_unhealthy_resync_and_self_crossed_excluded_with_reasons() -> None:
    cb, fine, coarse, _ = make([(6_180_000, 1)], [(6_180_010, 1)], [(618_000, 1)], [(618_002, 1)])
    cb.mark_unhealthy("fine", "websocket disconnected")
    assert cb.excluded() == {"fine": "unhealthy: websocket disconnected"}
    cb.mark_healthy("fine")
    assert cb.excluded() == {}
    fine.request_resync()
    assert cb.excluded() == {"fine": "needs resync"}
    fine.apply_snapshot([(6_180_000, 1)], [(6_180_010, 1)])
    coarse.apply(BookDeltas("coarse", "BTC-USDT", [(618_005, 1)], [], 0, 0))  # coarse crosses itself
    assert coarse.crossed
    assert cb.excluded()["coarse"].startswith("crossed book")
    assert cb.levels(Side.BUY) == [ConsolidatedLevel(6_180_000, [("fine", 1)])]
    s = cb.statistics()
    assert (s["venues"], s["included"], s["excluded"], s["exclusions"]) == (2, 1, 1, 3)


# ---------------------------------------------------------------------------- crosses
def test_cross_between_venues_reported_not_merged() -> None:
    # coarse bid 618002 -> 6180020 (2 lots = 200) >= fine ask 6180010 (50) and 6180015 (500)
    cb, fine, coarse, _ = make([(6_180_000, 1)], [(6_180_010, 50), (6_180_015, 500)],
                               [(618_002, 2), (618_001, 1)], [(618_003, 1)])
    assert not fine.crossed and not coarse.crossed
    crosses = cb.crosses()
    assert len(crosses) == 1
    c = crosses[0]
    assert (c.bid_venue, c.ask_venue, c.bid_price_ticks, c.ask_price_ticks) == ("coarse", "fine", 6_180_020, 6_180_010)
    # matchable: coarse bids 200 @ 6180020 against fine asks 50 @ 6180010 + 150 @ 6180015;
    # then coarse 100 @ 6180010 vs the remaining fine 350 @ 6180015: not crossing
    assert c.lots == 200 and c.edge == 10 and not c.fee_adjusted
    assert cb.is_crossed
    # shown, not hidden: the merged ladders keep both sides as they are
    assert cb.best_bid() == (6_180_020, 200) and cb.best_ask() == (6_180_010, 50)
    assert cb.statistics()["crosses"] == 1  # one episode, however often it is read
    cb.crosses()
    assert cb.statistics()["crosses"] == 1
    coarse.apply(BookDeltas("coarse", "BTC-USDT", [(618_002, 0), (618_001, 0)], [], 0, 0))
    assert cb.crosses() == [] and not cb.is_crossed
    coarse.apply(BookDeltas("coarse", "BTC-USDT", [(618_001, 4)], [], 0, 0))
    assert len(cb.crosses()) == 1 and cb.statistics()["crosses"] == 2


def test_locked_counts_as_cross_and_fees_can_remove_it() -> None:
    cb = make([(6_180_000, 1)], [(6_180_020, 3)], [(618_002, 1)], [(618_004, 1)], fees=(5.0, 5.0))[0]
    raw = cb.crosses()
    assert [(c.bid_venue, c.ask_venue, c.lots, c.edge) for c in raw] == [("coarse", "fine", 3, 0.0)]
    assert cb.crosses(fee_adjusted=True) == []  # 10 bps of fees eat a zero edge
    s = cb.statistics()
    assert (s["crosses"], s["fee_crosses"]) == (1, 0)


def test_fee_adjusted_cross() -> None:
    # coarse bid 6185000 at 2 bps vs fine ask 6180000 at 1 bps: a raw edge of ~8 bps beats 3 bps of fees
    cb = make([(6_170_000, 1)], [(6_180_000, 3)], [(618_500, 1)], [(618_600, 1)], fees=(1.0, 2.0))[0]
    [c] = cb.crosses(fee_adjusted=True)
    assert c.fee_adjusted and c.lots == 3
    assert c.edge == pytest.approx(6_185_000 * 0.9998 - 6_180_000 * 1.0001)
    assert cb.statistics()["fee_crosses"] == 1
    # a ~1.6 bps raw edge does not survive the same fees
    cb = make([(6_170_000, 1)], [(6_180_000, 3)], [(618_100, 1)], [(618_200, 1)], fees=(1.0, 2.0))[0]
    assert len(cb.crosses()) == 1 and cb.crosses(fee_adjusted=True) == []
    assert cb.statistics()["fee_crosses"] == 0


def test_excluded_venue_cannot_cross() -> None:
    cb = make([(6_180_000, 1)], [(6_180_010, 50)], [(618_002, 2)], [(618_003, 1)])[0]
    assert cb.crosses()
    cb.mark_unhealthy("coarse", "maintenance")
    assert cb.crosses() == [] and cb.best_bid() == (6_180_000, 1)


# ---------------------------------------------------------------------------- randomised against naive
def test_random_books_match_naive_merge() -> None:
    rng = random.Random(11)
    for _ in range(200):
        fb = [(rng.randint(6_179_000, 6_180_000), rng.randint(1, 9)) for _ in range(rng.randint(0, 20))]
        fa = [(rng.randint(6_180_001, 6_181_000), rng.randint(1, 9)) for _ in range(rng.randint(0, 20))]
        kb = [(rng.randint(617_900, 618_000), rng.randint(1, 9)) for _ in range(rng.randint(0, 20))]
        ka = [(rng.randint(618_001, 618_100), rng.randint(1, 9)) for _ in range(rng.randint(0, 20))]
        cb, fine, coarse, _ = make(fb, fa, kb, ka)
        naive: dict[tuple[bool, int], dict[str, int]] = {}
        for is_bid, book, venue in ((True, fine, "fine"), (False, fine, "fine"),
                                    (True, coarse, "coarse"), (False, coarse, "coarse")):
            for p, q in (book.bids() if is_bid else book.asks()):
                naive.setdefault((is_bid, p * GRID.price_factor[venue]), {})[venue] = q * GRID.lot_factor[venue]
        n = rng.randint(0, 15)
        for is_bid, side in ((True, Side.BUY), (False, Side.SELL)):
            prices = sorted((p for b, p in naive if b == is_bid), reverse=is_bid)[:n]
            expect = [ConsolidatedLevel(p, sorted(naive[(is_bid, p)].items())) for p in prices]
            assert cb.levels(side, n) == expect
        limit = rng.randint(6_179_000, 6_181_000)
        expect_buy = sum(q for (b, p), vs in naive.items() if not b and p <= limit for q in vs.values())
        expect_sell = sum(q for (b, p), vs in naive.items() if b and p >= limit for q in vs.values())
        assert cb.lots_available(Side.BUY, limit) == expect_buy
        assert cb.lots_available(Side.SELL, limit) == expect_sell


# ---------------------------------------------------------------------------- basis alignment
def test_basis_aligns_a_premium_venue() -> None:
    # coarse trades 25.00 (2500 common ticks) above fine: raw merge crosses, aligned it does not
    cb = make([(6_180_000, 10)], [(6_180_010, 10)], [(618_249, 1)], [(618_252, 1)])[0]
    assert cb.mid_basis_ticks("coarse", "fine") == 6_182_505 - 6_180_005
    assert [(c.bid_venue, c.ask_venue) for c in cb.crosses()] == [("coarse", "fine")]
    cb.set_basis_ticks("coarse", 2_500)
    assert cb.basis_ticks("coarse") == 2_500
    assert cb.crosses() == []
    assert cb.best_bid() == (6_180_000, 10)  # coarse aligned: 6182490 - 2500 = 6179990
    e = cb.entries(Side.BUY)
    assert [(x.price_ticks, x.venue, x.venue_price_ticks) for x in e] == [
        (6_180_000, "fine", 6_180_000), (6_179_990, "coarse", 618_249)]
    assert cb.best_ask() == (6_180_010, 10)
    asks = cb.levels(Side.SELL)
    assert asks == [ConsolidatedLevel(6_180_010, [("fine", 10)]), ConsolidatedLevel(6_180_020, [("coarse", 100)])]
    # an aligned buy limit of 6180020 reaches coarse's real 618252 (= 6180020 + 2500) but not beyond
    assert cb.lots_available_by_venue(Side.BUY, 6_180_020) == {"fine": 10, "coarse": 100}
    assert cb.lots_available_by_venue(Side.BUY, 6_180_019) == {"fine": 10, "coarse": 0}


def test_cross_size_equals_call_auction_volume() -> None:
    """The matchable size of a cross is the call-auction volume max_x min(bids >= x, asks <= x)."""
    rng = random.Random(5)
    seen = 0
    for _ in range(300):
        fb = [(rng.randint(6_179_900, 6_180_100), rng.randint(1, 9)) for _ in range(rng.randint(1, 15))]
        fa = [(rng.randint(6_180_101, 6_180_400), rng.randint(1, 9)) for _ in range(rng.randint(1, 15))]
        kb = [(rng.randint(618_000, 618_040), rng.randint(1, 3)) for _ in range(rng.randint(1, 15))]
        ka = [(rng.randint(618_041, 618_080), rng.randint(1, 3)) for _ in range(rng.randint(1, 15))]
        cb, fine, coarse, _ = make(fb, fa, kb, ka)
        for c in cb.crosses():
            bids = (coarse if c.bid_venue == "coarse" else fine).bids()
            asks = (fine if c.ask_venue == "fine" else coarse).asks()
            bf = GRID.price_factor[c.bid_venue]
            af = GRID.price_factor[c.ask_venue]
            blf, alf = GRID.lot_factor[c.bid_venue], GRID.lot_factor[c.ask_venue]
            xs = {p * bf for p, _ in bids} | {p * af for p, _ in asks}
            volume = max(min(sum(q * blf for p, q in bids if p * bf >= x), sum(q * alf for p, q in asks if p * af <= x))
                         for x in xs)
            assert c.lots == volume
            seen += 1
    assert seen > 50
