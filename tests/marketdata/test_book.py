"""Unit tests of L2Book: every read/write method, sequencing rules, gaps/resync, crossed detection."""

from __future__ import annotations

import pytest

from marketdata.book import FillEstimate, L2Book
from marketdata.errors import DataError, InvariantError
from marketdata.model import BookDeltas, Side


def deltas(bids: list[tuple[int, int]] | None = None, asks: list[tuple[int, int]] | None = None, *,
           first: int = -1, last: int = -1, prev: int = -1, snapshot: bool = False,
           ts_event: int = 0, ts_init: int = 0) -> BookDeltas:
    return BookDeltas("binance-spot", "BTC-USDT", bids or [], asks or [], ts_event, ts_init,
                      is_snapshot=snapshot, first_update_id=first, last_update_id=last, prev_update_id=prev)


@pytest.fixture
def book() -> L2Book:
    b = L2Book("v", "S")
    b.apply_snapshot([(100, 5), (99, 7), (97, 1)], [(101, 2), (102, 4), (105, 9)], update_id=10,
                     ts_event=1, ts_init=2)
    return b


# ---------------------------------------------------------------------------- snapshot and levels
def test_snapshot_replaces_everything(book: L2Book) -> None:
    assert book.bids() == [(100, 5), (99, 7), (97, 1)]
    assert book.asks() == [(101, 2), (102, 4), (105, 9)]
    assert (book.best_bid_ticks, book.best_ask_ticks) == (100, 101)
    assert (book.last_update_id, book.ts_event, book.ts_init) == (10, 1, 2)
    book.apply_snapshot([(50, 1), (60, 0)], [(70, 3)], update_id=20)
    assert book.bids() == [(50, 1)]  # zero-lot snapshot levels are dropped
    assert book.asks() == [(70, 3)]
    assert book.level_count() == (1, 1)
    book._check()


def test_snapshot_rejects_negative_lots() -> None:
    b = L2Book("v", "S")
    with pytest.raises(DataError, match="negative lots"):
        b.apply_snapshot([(100, -1)], [])


def test_empty_book_reads() -> None:
    b = L2Book()
    assert b.best_bid() is None and b.best_ask() is None
    assert b.mid_ticks() is None and b.spread_ticks() is None
    assert b.bids() == [] and b.asks(3) == []
    assert b.lots_available(Side.BUY) == 0
    est = b.estimate_fill(Side.SELL, 5)
    assert est == FillEstimate(5, 0, 0, None, 0, Side.SELL)
    assert est.average_price_ticks is None and not est.complete
    b._check()


def test_update_add_change_delete(book: L2Book) -> None:
    book.update_bid(98, 3)  # new inner level
    assert book.bids(3) == [(100, 5), (99, 7), (98, 3)]
    book.update_bid(99, 1)  # change existing
    assert book.bid_lots_at(99) == 1
    book.update_bid(100, 0)  # delete best
    assert book.best_bid_ticks == 99
    book.update_ask(100, 8)  # new best ask
    assert book.best_ask() == (100, 8)
    book.update_ask(102, 0)  # delete inner
    assert book.asks() == [(100, 8), (101, 2), (105, 9)]
    book.update(Side.BUY, 99, 4)
    book.update(Side.SELL, 105, 1)
    assert book.bid_lots_at(99) == 4 and book.ask_lots_at(105) == 1
    book._check()


def test_delete_of_absent_level_is_a_noop(book: L2Book) -> None:
    before = (book.bids(), book.asks(), book.best_bid_ticks, book.best_ask_ticks)
    book.update_bid(98, 0)
    book.update_ask(103, 0)
    book.update_bid(500, 0)  # above the best bid: must not touch the cached top
    book.update_ask(1, 0)
    assert (book.bids(), book.asks(), book.best_bid_ticks, book.best_ask_ticks) == before
    book._check()


def test_delete_last_levels_empties_side(book: L2Book) -> None:
    for p, _ in book.bids():
        book.update_bid(p, 0)
    assert book.best_bid_ticks is None and book.bids() == []
    for p, _ in book.asks():
        book.update_ask(p, 0)
    assert book.best_ask_ticks is None
    book._check()


def test_bids_asks_n(book: L2Book) -> None:
    assert book.bids(0) == [] and book.asks(0) == []
    assert book.bids(1) == [(100, 5)]
    assert book.asks(2) == [(101, 2), (102, 4)]
    assert book.bids(3) == book.bids() == book.bids(99)
    assert book.depth(Side.BUY, 2) == [(100, 5), (99, 7)]
    assert book.depth(Side.SELL) == book.asks()
    assert list(book.iter_bids()) == book.bids() and list(book.iter_asks()) == book.asks()
    it = book.iter_asks()
    assert next(it) == (101, 2)
    assert list(book.iter_levels(Side.BUY)) == book.asks()  # a buyer walks the asks
    assert list(book.iter_levels(Side.SELL)) == book.bids()
    with pytest.raises(ValueError):
        book.bids(-1)
    with pytest.raises(ValueError):
        book.asks(-2)


def test_best_mid_spread(book: L2Book) -> None:
    assert book.best_bid() == (100, 5)
    assert book.best_ask() == (101, 2)
    assert book.mid_ticks() == 100.5
    assert book.spread_ticks() == 1


def test_lots_available(book: L2Book) -> None:
    assert book.lots_available(Side.BUY) == 2 + 4 + 9
    assert book.lots_available(Side.SELL) == 5 + 7 + 1
    assert book.lots_available(Side.BUY, 101) == 2
    assert book.lots_available(Side.BUY, 104) == 6  # between levels
    assert book.lots_available(Side.BUY, 100) == 0
    assert book.lots_available(Side.BUY, 1_000) == 15
    assert book.lots_available(Side.SELL, 99) == 12
    assert book.lots_available(Side.SELL, 98) == 12
    assert book.lots_available(Side.SELL, 101) == 0
    assert book.lots_available(Side.SELL, 0) == 13


def test_estimate_fill_exact(book: L2Book) -> None:
    est = book.estimate_fill(Side.BUY, 7)
    # 2 @ 101 + 4 @ 102 + 1 @ 105
    assert est == FillEstimate(7, 7, 2 * 101 + 4 * 102 + 105, 105, 3, Side.BUY)
    assert est.average_price_ticks == pytest.approx((2 * 101 + 4 * 102 + 105) / 7)
    assert est.complete
    est = book.estimate_fill(Side.SELL, 6)
    assert est == FillEstimate(6, 6, 5 * 100 + 1 * 99, 99, 2, Side.SELL)


def test_estimate_fill_limit_and_partial(book: L2Book) -> None:
    est = book.estimate_fill(Side.BUY, 10, limit_ticks=102)
    assert (est.filled_lots, est.notional_tick_lots, est.worst_price_ticks, est.levels) == (6, 610, 102, 2)
    assert not est.complete
    est = book.estimate_fill(Side.BUY, 100)  # more than the book holds
    assert (est.filled_lots, est.worst_price_ticks, est.levels) == (15, 105, 3)
    est = book.estimate_fill(Side.SELL, 20, limit_ticks=99)
    assert (est.filled_lots, est.notional_tick_lots, est.worst_price_ticks) == (12, 500 + 693, 99)
    est = book.estimate_fill(Side.SELL, 3, limit_ticks=101)  # limit better than the book
    assert (est.filled_lots, est.worst_price_ticks, est.levels) == (0, None, 0)
    assert book.estimate_fill(Side.BUY, 0).filled_lots == 0
    with pytest.raises(ValueError):
        book.estimate_fill(Side.BUY, -1)


def test_cost_with_fee_and_net_notional(book: L2Book) -> None:
    buy = book.estimate_fill(Side.BUY, 2)  # 2 @ 101 = 202
    assert buy.cost_with_fee(10.0) == pytest.approx(202 * 1.001)
    assert buy.net_notional(10.0) == pytest.approx(202 * 1.001)
    sell = book.estimate_fill(Side.SELL, 5)  # 5 @ 100 = 500
    assert sell.cost_with_fee(10.0) == pytest.approx(500 * 1.001)
    assert sell.net_notional(10.0) == pytest.approx(500 * 0.999)  # a seller receives less
    with pytest.raises(ValueError):
        FillEstimate(1, 1, 1, 1, 1).net_notional(1.0)


def test_statistics_counters(book: L2Book) -> None:
    b = L2Book("v", "S", sequence_rule="contiguous")
    b.apply(deltas([(10, 1)], [(12, 1)], last=100, snapshot=True))
    b.apply(deltas([(11, 1)], [(13, 1), (14, 2)], first=100, last=101))  # 3 levels
    b.apply(deltas([(11, 2)], first=90, last=95))  # stale
    b.apply(deltas([(11, 2)], first=105, last=106))  # gap
    b.apply(deltas([(11, 2)], first=107, last=108))  # dropped
    b.apply(deltas([(10, 1)], [(12, 1)], last=200, snapshot=True))
    assert b.statistics() == {"updates": 3, "gaps": 1, "resyncs": 1, "snapshots": 2, "crossed": 0,
                              "dropped": 1, "stale": 1, "bid_levels": 1, "ask_levels": 1}


def test_clear(book: L2Book) -> None:
    book.clear()
    assert book.bids() == [] and book.asks() == [] and book.best_bid_ticks is None
    book._check()


def test_check_detects_corruption(book: L2Book) -> None:
    book._bids[98] = 1  # level without index entry
    with pytest.raises(InvariantError, match="index"):
        book._check()
    del book._bids[98]
    book.best_ask_ticks = 102
    with pytest.raises(InvariantError, match="cached top"):
        book._check()
    book.best_ask_ticks = 101
    book._bids[100] = 0
    with pytest.raises(InvariantError, match="non-positive"):
        book._check()


# ---------------------------------------------------------------------------- sequencing: contiguous
def spot_book(last: int = 100) -> tuple[L2Book, list[L2Book]]:
    gaps: list[L2Book] = []
    b = L2Book("binance-spot", "BTC-USDT", sequence_rule="contiguous", on_gap=gaps.append)
    assert b.needs_resync  # a sequenced book starts out waiting for a snapshot
    assert not b.apply(deltas([(1, 1)], first=1, last=2))
    assert b.statistics()["dropped"] == 1
    b.apply(deltas([(90, 1)], [(110, 1)], last=last, snapshot=True, ts_init=5))
    return b, gaps


def test_contiguous_first_event_must_straddle_snapshot() -> None:
    # Binance spot: drop u <= lastUpdateId; first applied has U <= lastUpdateId+1 <= u
    b, gaps = spot_book(100)
    assert b.apply(deltas([(91, 1)], first=95, last=100))  # u <= lastUpdateId: stale
    assert b.bid_lots_at(91) == 0 and b.stat_stale == 1
    assert b.apply(deltas([(92, 1)], first=98, last=103))  # straddles: applied
    assert b.bid_lots_at(92) == 1 and b.last_update_id == 103
    assert b.apply(deltas([(93, 1)], first=104, last=104))  # then U == prev u + 1
    assert b.last_update_id == 104 and not gaps


@pytest.mark.parametrize("first", [101, 100, 50])
def test_contiguous_first_event_exactly_at_boundary_accepted(first: int) -> None:
    b, gaps = spot_book(100)
    assert b.apply(deltas([(92, 1)], first=first, last=101))
    assert b.last_update_id == 101 and not gaps


def test_contiguous_first_event_after_gap_is_a_gap() -> None:
    b, gaps = spot_book(100)
    assert not b.apply(deltas([(92, 1)], first=102, last=105))  # U > lastUpdateId + 1
    assert gaps == [b] and b.needs_resync and b.stat_gaps == 1


def test_contiguous_later_event_must_be_u_plus_one() -> None:
    b, gaps = spot_book(100)
    assert b.apply(deltas([(92, 1)], first=101, last=110))
    # after the first event the straddle rule no longer applies: U must be exactly prev u + 1
    assert not b.apply(deltas([(93, 1)], first=105, last=115))
    assert len(gaps) == 1


def test_gap_clears_calls_on_gap_once_and_drops_until_snapshot() -> None:
    b, gaps = spot_book(100)
    b.apply(deltas([(92, 1)], first=101, last=101))
    assert not b.apply(deltas([(93, 1)], first=103, last=104))  # 102 missing
    assert gaps == [b]
    assert b.needs_resync and b.bids() == [] and b.asks() == [] and b.best_bid_ticks is None
    for i in range(3):
        assert not b.apply(deltas([(94, 1)], first=105 + i, last=105 + i))
    assert gaps == [b]  # on_gap once per gap, not per dropped message
    s = b.statistics()
    assert (s["gaps"], s["dropped"], s["resyncs"]) == (1, 4, 0)  # 1 dropped before the first snapshot
    b.apply(deltas([(95, 2)], [(96, 3)], last=200, snapshot=True))
    assert not b.needs_resync and b.statistics()["resyncs"] == 1
    assert b.apply(deltas([(94, 1)], first=199, last=201))  # straddle rule applies again
    assert b.bids() == [(95, 2), (94, 1)]
    b._check()


def test_request_resync_by_feed() -> None:
    b, gaps = spot_book(100)
    b.request_resync()
    assert gaps == [b] and b.needs_resync and b.stat_gaps == 0


def test_snapshot_without_id_anchors_the_chain() -> None:
    b = L2Book("v", "S", sequence_rule="contiguous")
    b.apply(deltas([(90, 1)], [(110, 1)], snapshot=True))  # no update id
    assert b.apply(deltas([(91, 1)], first=500, last=510))
    assert b.apply(deltas([(92, 1)], first=511, last=511))
    assert not b.apply(deltas([(93, 1)], first=513, last=513))


def test_messages_without_ids_skip_sequence_checks() -> None:
    b, gaps = spot_book(100)
    assert b.apply(deltas([(91, 1)]))  # last_update_id == -1
    assert b.bid_lots_at(91) == 1 and b.last_update_id == 100 and not gaps


def test_rule_none_applies_everything() -> None:
    b = L2Book()
    assert not b.needs_resync
    assert b.apply(deltas([(10, 1)], first=5, last=6))
    assert b.apply(deltas([(11, 1)], first=50, last=60))
    assert b.apply(deltas([(12, 1)], first=1, last=2))  # even going backwards
    assert b.bids() == [(12, 1), (11, 1), (10, 1)] and b.stat_gaps == 0


# ---------------------------------------------------------------------------- sequencing: prev (futures)
def futures_book(last: int = 1000) -> tuple[L2Book, list[L2Book]]:
    gaps: list[L2Book] = []
    b = L2Book("binance-usdm", "BTC-USDT", sequence_rule="prev", on_gap=gaps.append)
    b.apply(deltas([(90, 1)], [(110, 1)], last=last, snapshot=True))
    return b, gaps


def test_prev_first_event_straddles_then_pu_chains() -> None:
    # Binance futures: drop u < lastUpdateId; first has U <= lastUpdateId <= u; then pu == prev u
    b, gaps = futures_book(1000)
    assert b.apply(deltas([(91, 1)], first=900, last=990, prev=899))  # stale
    assert b.bid_lots_at(91) == 0
    assert b.apply(deltas([(92, 1)], first=995, last=1005, prev=994))  # straddles
    assert b.apply(deltas([(93, 1)], first=1010, last=1020, prev=1005))  # pu == prev u (ids may jump)
    assert b.last_update_id == 1020 and b.bids(3) == [(93, 1), (92, 1), (90, 1)] and not gaps


def test_prev_first_event_with_pu_equal_snapshot_id_accepted() -> None:
    b, gaps = futures_book(1000)
    assert b.apply(deltas([(92, 1)], first=1003, last=1005, prev=1000))
    assert not gaps


def test_prev_first_event_not_straddling_is_a_gap() -> None:
    b, gaps = futures_book(1000)
    assert not b.apply(deltas([(92, 1)], first=1003, last=1005, prev=1002))
    assert gaps == [b]


def test_prev_chain_break_is_a_gap_and_resync_recovers() -> None:
    b, gaps = futures_book(1000)
    assert b.apply(deltas([(92, 1)], first=999, last=1005, prev=998))
    assert not b.apply(deltas([(93, 1)], first=1010, last=1020, prev=1007))
    assert gaps == [b] and b.stat_gaps == 1 and b.bids() == []
    assert not b.apply(deltas([(93, 1)], first=1021, last=1030, prev=1020))
    b.apply(deltas([(80, 1)], [(120, 1)], last=2000, snapshot=True))
    assert b.stat_resyncs == 1
    assert b.apply(deltas([(81, 1)], first=1990, last=2010, prev=1989))
    assert b.bids() == [(81, 1), (80, 1)]


def test_prev_duplicate_message_is_stale() -> None:
    b, gaps = futures_book(1000)
    m = deltas([(92, 1)], first=999, last=1005, prev=998)
    assert b.apply(m)
    assert b.apply(m)
    assert b.stat_stale == 1 and not gaps


# ---------------------------------------------------------------------------- crossed detection
def test_crossed_detected_per_message_not_transiently() -> None:
    b = L2Book("v", "S")
    b.apply(deltas([(100, 1)], [(101, 1)], snapshot=True))
    # the bid moves above the old ask and the ask is lifted in the same message: never crossed
    assert b.apply(deltas([(102, 1)], [(101, 0), (103, 1)]))
    assert not b.crossed and b.stat_crossed == 0
    b.apply(deltas([(104, 1)]))
    assert b.crossed and b.stat_crossed == 1
    b.apply(deltas([(105, 1)]))  # still the same crossed episode
    assert b.stat_crossed == 1
    b.apply(deltas([(104, 0), (105, 0)]))
    assert not b.crossed
    b.apply(deltas([], [(102, 1)]))  # locked (bid == ask) counts as crossed
    assert b.crossed and b.stat_crossed == 2
    b._check()


def test_crossed_snapshot_and_raw_updates() -> None:
    b = L2Book("v", "S")
    b.apply_snapshot([(10, 1)], [(9, 1)])
    assert b.crossed and b.stat_crossed == 1
    b.update_ask(9, 0)
    assert b.crossed  # raw level writes leave the flag to the caller's message boundary
    assert b.check_crossed() is False
    b._check()
    b.update_bid(20, 1)
    b.update_ask(15, 1)
    assert b.check_crossed() is True and b.stat_crossed == 2
