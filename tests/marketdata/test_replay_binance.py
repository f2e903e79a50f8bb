"""Raw Binance capture reader on the real recorded files (../shared/data/binance-btc)."""

from __future__ import annotations

import gzip
import io
import statistics
from pathlib import Path

import pytest

from marketdata.book import L2Book
from marketdata.model import BookDeltas, QuoteTick, Side, TradeTick
from marketdata.replay import open_dataset
from marketdata.replay.check import check_dataset

SPOT = ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"]


@pytest.fixture(scope="module")
def spot(binance_btc_dir: Path):  # type: ignore[no-untyped-def]
    return open_dataset([binance_btc_dir / f for f in SPOT])


@pytest.fixture(scope="module")
def usdm(binance_btc_dir: Path):  # type: ignore[no-untyped-def]
    return open_dataset([binance_btc_dir / "usdm_btcusdt_20240808.gz"])


def test_spot_chain_matches_data_readme_counts(spot) -> None:  # type: ignore[no-untyped-def]
    rep = spot.report.books["binance-spot:BTCUSDT"]
    # Counts from ../shared/data/README.md: 3,451 + 3,044 depth events, 124,090 + 174,021 levels.
    assert rep["depth_events"] == 3451 + 3044
    assert rep["level_updates"] == 124090 + 174021
    assert rep["trades"] == 9757 + 10147
    assert rep["quotes"] == 28040 + 45134
    assert rep["snapshots"] == 1
    assert spot.report.malformed == 0
    assert spot.sequence_rule("binance-spot") == "contiguous"


def test_spot_two_files_replay_without_gap_and_files_order_does_not_matter(binance_btc_dir: Path) -> None:
    ds = open_dataset([binance_btc_dir / SPOT[1], binance_btc_dir / SPOT[0]])  # given in reverse
    book = L2Book("binance-spot", "BTC-USDT", sequence_rule="contiguous")
    first = True
    for ev in ds.events():
        if isinstance(ev, BookDeltas):
            if first:
                assert ev.is_snapshot and ev.last_update_id == 50093239218
                first = False
            assert book.apply(ev)
            assert not book.crossed
    book._check()
    assert book.stat_gaps == 0 and book.stat_crossed == 0
    assert book.stat_updates > 290_000


def test_usdm_check_has_tob_oracle_hits_and_no_problem(usdm) -> None:  # type: ignore[no-untyped-def]
    res = check_dataset(usdm)
    assert res.ok
    assert res.gaps == 0 and res.crossed == 0 and res.tob_mismatches == 0
    assert res.tob_checks > 100
    assert usdm.sequence_rule("binance-usdm") == "prev"
    # the snapshot is line 55; the straddling diff arrived before it and must have been kept
    assert usdm.report.books["binance-usdm:BTCUSDT"]["pre_snapshot_dropped"] >= 1


def test_reader_that_drops_lines_before_the_snapshot_breaks_the_chain(binance_btc_dir: Path) -> None:
    with gzip.open(binance_btc_dir / "usdm_btcusdt_20240808.gz", "rb") as fh:
        lines = fh.read().split(b"\n")
    assert b"lastUpdateId" in lines[54]
    truncated = io.BytesIO(b"\n".join(lines[54:]))
    res = check_dataset(open_dataset([truncated], "binance-raw"))
    assert res.gaps == 1 and res.unresolved_gaps == 1 and not res.ok


def test_continuation_file_alone_is_not_replayable(binance_btc_dir: Path) -> None:
    ds = open_dataset([binance_btc_dir / SPOT[1]])
    res = check_dataset(ds)
    assert not res.ok and res.never_synced == 1
    assert any("never met a snapshot" in n for n in ds.report.notes)


def test_times_are_exchange_time_and_collector_clock_lags(usdm) -> None:  # type: ignore[no-untyped-def]
    lags = [ev.ts_event - ev.ts_init for ev in usdm.events() if isinstance(ev, TradeTick)]
    assert 1.2e9 < statistics.median(lags) < 1.35e9  # collector ~1.27 s behind E/T
    ts = [ev.ts_event for ev in usdm.events()]
    assert ts[0] >= usdm.start_ns and ts[-1] <= usdm.end_ns


def test_trade_aggressor_from_buyer_is_maker(spot) -> None:  # type: ignore[no-untyped-def]
    # first spot trade: "t":3735683259,"p":"61837.63000000","q":"0.02000000","m":true -> aggressor SELL
    ds = spot
    trade = next(ev for ev in ds.events() if isinstance(ev, TradeTick))
    assert trade.trade_id == "3735683259" and trade.aggressor is Side.SELL
    assert trade.price_ticks == 6183763 and trade.lots == 2000
    quote = next(ev for ev in ds.events() if isinstance(ev, QuoteTick))
    assert quote.update_id == 50093239212 and quote.bid_ticks == 6183763 and quote.ask_ticks == 6183764


def test_coinm_inverse_contracts(binance_btc_dir: Path) -> None:
    ds = open_dataset([binance_btc_dir / "coinm_btcusd_perp_20240808.gz"])
    inst = ds.instruments["binance-coinm"]
    assert inst.symbol == "BTC-USD" and inst.contract_size == 100 and inst.lot_size == 1
    res = check_dataset(ds)
    assert res.ok and res.tob_checks > 100 and res.book_updates > 26_000


def test_unknown_symbol_gets_exact_inferred_grid(binance_btc_dir: Path) -> None:
    with gzip.open(binance_btc_dir / SPOT[0], "rb") as fh:
        lines = fh.read().split(b"\n")[:8000]
    data = b"\n".join(lines).replace(b"BTCUSDT", b"ETHUSDT").replace(b"btcusdt", b"ethusdt")
    ds = open_dataset([io.BytesIO(data)], "binance-raw")
    inst = ds.instruments["binance-spot"]
    assert inst.venue_symbol == "ETHUSDT" and inst.symbol == "ETH-USDT"
    assert str(inst.tick_size) == "0.01" and str(inst.lot_size) == "0.000001"  # residues like 25.426189
    assert ds.report.books["binance-spot:ETHUSDT"]["off_lot_quantities_floored"] == 0
    res = check_dataset(ds)
    assert res.ok and res.tob_checks > 0
