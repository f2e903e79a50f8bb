"""Regression tests for correctness bugs found in the market-data review (one scenario each)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.errors import DataError, InstrumentError
from marketdata.model import BookDeltas, Instrument, Side, Symbol, TradeTick, VenueId
from marketdata.replay import open_dataset


def _spot() -> Instrument:
    return Instrument(VenueId("binance-spot"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT",
                      Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal("5"))


def test_long_price_rounds_to_the_passive_side_and_exact_check_is_exact() -> None:
    """A limit with more significant digits than Decimal's 28-digit context: the division
    p / tick used to be rounded first, so a sell limit just above a tick rounded DOWN (aggressive)
    and an off-tick price passed the exact check."""
    i = _spot()
    big = "100000000000000000000000000.001"  # 1e26 + 0.001: just above the tick 1e28 (in ticks)
    assert i.price_to_ticks(big, Side.SELL) == 10**28 + 1
    assert i.price_to_ticks(big, Side.BUY) == 10**28
    with pytest.raises(InstrumentError, match="not a multiple of tick"):
        i.price_to_ticks("1.0000000000000000000000000000001")


def test_long_quantity_rounds_down_and_exact_rejects_off_lot() -> None:
    """Quantities with more than 28 significant digits: 0.99999...9 used to round UP to a whole
    1.00000 (one lot more than asked), and exact=True accepted a quantity off the lot grid."""
    i = _spot()
    assert i.qty_to_lots("0.99999999999999999999999999999999") == 99999
    with pytest.raises(InstrumentError, match="not a multiple of lot"):
        i.qty_to_lots("1.000000000000000000000000000001", exact=True)
    assert i.qty_to_lots("1.00000", exact=True) == 100000


def test_rejected_snapshot_leaves_the_in_sync_book_untouched() -> None:
    """An in-sync spot book receives a snapshot with a negative level: apply raises DataError.
    The book used to be cleared BEFORE the check, so it stayed 'in sync' (needs_resync False,
    last_update_id unchanged) but empty, and the next diff of the chain was applied onto an empty
    book: a silently wrong book."""
    b = L2Book("binance-spot", "BTC-USDT", sequence_rule="contiguous")
    b.apply(BookDeltas(VenueId("binance-spot"), Symbol("BTC-USDT"), [(100, 5), (99, 2)], [(101, 5)], 1, 1,
                       True, 10, 10))
    assert b.apply(BookDeltas(VenueId("binance-spot"), Symbol("BTC-USDT"), [(99, 3)], [], 2, 2, False, 11, 11))
    with pytest.raises(DataError, match="negative lots"):
        b.apply(BookDeltas(VenueId("binance-spot"), Symbol("BTC-USDT"), [(100, -1)], [(101, 5)], 3, 3,
                           True, 20, 20))
    assert b.best_bid() == (100, 5) and b.best_ask() == (101, 5) and b.bids() == [(100, 5), (99, 3)]
    assert b.apply(BookDeltas(VenueId("binance-spot"), Symbol("BTC-USDT"), [(98, 1)], [], 4, 4, False, 12, 12))
    assert b.bids() == [(100, 5), (99, 3), (98, 1)] and b.asks() == [(101, 5)]
    b._check()


def test_timer_whose_first_due_time_is_past_its_stop_never_fires() -> None:
    """set_timer(interval, stop_ns) fires at every due time <= stop_ns (10, 20, 30 for stop 35);
    the FIRST due time was never checked, so a timer starting after its stop fired once anyway
    (an algo schedule whose window already ended still sent a child)."""
    clock = SimClock(0)
    fired: list[int] = []
    clock.set_timer(10, fired.append, stop_ns=5)                  # first due 10 > stop 5
    clock.set_timer(10, fired.append, start_ns=50, stop_ns=40)    # first due 50 > stop 40
    clock.advance_to(30)
    clock.set_timer(10, fired.append, start_ns=0, stop_ns=20)     # due now (30) > stop 20
    clock.set_timer(10, fired.append, start_ns=60, stop_ns=60)    # exactly at stop: fires once
    clock.advance_to(200)
    assert fired == [60]


_BOOK_HEADER = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
_TRADE_HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"


def test_tardis_files_given_out_of_time_order_replay_in_time_order(tmp_path: Path) -> None:
    """Two daily Tardis book files (each starting with its snapshot) given day 2 first: the book's
    messages used to follow the argument order, so events() went backwards in time and the replayed
    book ended on day 1's state instead of day 2's."""
    day1 = tmp_path / "day1.csv"
    day2 = tmp_path / "day2.csv"
    day1.write_text(_BOOK_HEADER
                    + "binance-futures,BTCUSDT,1000000,999000,true,bid,61800.2,1.000\n"
                    + "binance-futures,BTCUSDT,1000000,999000,true,ask,61800.3,1.000\n"
                    + "binance-futures,BTCUSDT,2000000,1999000,false,bid,61800.2,2.000\n")
    day2.write_text(_BOOK_HEADER
                    + "binance-futures,BTCUSDT,5000000,4999000,true,bid,61900.2,1.000\n"
                    + "binance-futures,BTCUSDT,5000000,4999000,true,ask,61900.3,1.000\n"
                    + "binance-futures,BTCUSDT,6000000,5999000,false,bid,61900.2,3.000\n")
    ds = open_dataset([day2, day1])
    evs = list(ds.events())
    ts = [e.ts_event for e in evs]
    assert ts == sorted(ts) == [1_000_000_000, 2_000_000_000, 5_000_000_000, 6_000_000_000]
    b = L2Book()
    for e in evs:
        assert isinstance(e, BookDeltas)
        b.apply(e)
    assert b.best_bid() == (619002, 3000) and b.best_ask() == (619003, 1000)


def test_tardis_tick_test_carries_over_from_one_trades_file_to_the_next(tmp_path: Path) -> None:
    """Trade side 'unknown' is classified with the tick test against the previous trade. The
    previous trade was forgotten at each file boundary, so the first unknown trade of day 2 (below
    day 1's last price: a down-tick, SELL) was classified BUY."""
    day1 = tmp_path / "trades1.csv"
    day2 = tmp_path / "trades2.csv"
    day1.write_text(_TRADE_HEADER + "binance-futures,BTCUSDT,1000000,999000,t1,sell,61800.2,0.001\n")
    day2.write_text(_TRADE_HEADER + "binance-futures,BTCUSDT,2000000,1999000,t2,unknown,61700.2,0.001\n")
    ds = open_dataset([day1, day2])
    trades = [e for e in ds.events() if isinstance(e, TradeTick)]
    assert [t.trade_id for t in trades] == ["t1", "t2"]
    assert trades[1].aggressor is Side.SELL
