"""The bundled dataset: API of docs/contracts.md, provenance, and equality with the raw captures."""

from __future__ import annotations

import io
from itertools import zip_longest
from pathlib import Path

import pytest

from marketdata.book import L2Book
from marketdata.model import BookDeltas, QuoteTick, TradeTick
from marketdata.replay import DEFAULT_BUNDLE, default_dataset, open_dataset, read_bundle, write_bundle
from marketdata.replay.check import check_dataset
from marketdata.replay.convert import build_dataset

DATA = DEFAULT_BUNDLE.parent


def test_default_dataset_api() -> None:
    ds = default_dataset()
    assert set(ds.instruments) == {"binance-spot", "binance-usdm", "binance-coinm"}
    assert ds.instruments["binance-spot"].symbol == "BTC-USDT"
    assert ds.instruments["binance-usdm"].symbol == "BTC-USDT"
    assert ds.instruments["binance-coinm"].symbol == "BTC-USD"
    assert [ds.sequence_rule(v) for v in ("binance-spot", "binance-usdm", "binance-coinm")] == [
        "contiguous", "prev", "prev"]
    # spans from ../shared/data/README.md (exchange time is ~1.27 s ahead of the collector's clock)
    assert 1723161254_000_000_000 < ds.start_ns < 1723161257_000_000_000
    assert 1723161905_000_000_000 < ds.end_ns < 1723161907_000_000_000
    last = 0
    first_book: dict[str, bool] = {}
    venues = set()
    for ev in ds.events(["binance-usdm", "binance-coinm"]):
        venues.add(ev.venue)
        assert ev.ts_event >= last  # merged in exchange-time order
        last = ev.ts_event
        if isinstance(ev, BookDeltas) and ev.venue not in first_book:
            first_book[ev.venue] = ev.is_snapshot
    assert venues == {"binance-usdm", "binance-coinm"}
    assert first_book == {"binance-usdm": True, "binance-coinm": True}
    with pytest.raises(KeyError):
        list(ds.events(["nope"]))
    with pytest.raises(KeyError):
        ds.sequence_rule("nope")


def test_bundle_is_compact_and_attributed() -> None:
    assert DEFAULT_BUNDLE.stat().st_size < 12_000_000
    lic = (DATA / "LICENSE.hftbacktest").read_text()
    assert "MIT License" in lic and "nkaz001" in lic
    readme = (DATA / "README.md").read_text()
    assert "5f3ec40b" in readme and "hftbacktest" in readme and "Binance" in readme
    assert "hftbacktest" in default_dataset().provenance["recorded_by"]


def test_bundled_data_passes_every_integrity_check() -> None:
    res = check_dataset(default_dataset())
    assert res.ok and res.gaps == 0 and res.crossed == 0 and res.tob_mismatches == 0
    for key in ("binance-spot:BTC-USDT", "binance-usdm:BTC-USDT", "binance-coinm:BTC-USD"):
        assert res.books[key]["tob_checks"] > 100


def test_bundle_replays_to_the_same_events_and_books_as_the_raw_files(binance_btc_dir: Path) -> None:
    raw = build_dataset(binance_btc_dir)
    bundled = default_dataset()
    assert raw.books == bundled.books
    for venue in bundled.venues:
        rule = bundled.sequence_rule(venue)
        b_raw = L2Book(venue, sequence_rule=rule)
        b_bun = L2Book(venue, sequence_rule=rule)
        n = 0
        for ev_raw, ev_bun in zip_longest(raw.events([venue]), bundled.events([venue])):
            assert ev_raw == ev_bun
            if isinstance(ev_raw, BookDeltas):
                assert isinstance(ev_bun, BookDeltas)
                b_raw.apply(ev_raw)
                b_bun.apply(ev_bun)
                n += 1
                if n % 250 == 0:
                    assert b_raw.bids(20) == b_bun.bids(20) and b_raw.asks(20) == b_bun.asks(20)
                    assert b_bun.best_bid_ticks is not None
        assert b_raw.bids() == b_bun.bids() and b_raw.asks() == b_bun.asks()
        assert b_bun.stat_gaps == 0 and n > 6000


def test_round_trip_of_other_sources_with_string_trade_ids(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                 "deribit,BTC-PERPETUAL,1000,900,x-1,buy,61000.5,10\n"
                 "deribit,BTC-PERPETUAL,2000,1900,x-2,sell,61000,20\n")
    ds = open_dataset([f])
    buf = io.BytesIO()
    write_bundle(ds, buf)
    buf.seek(0)
    back = read_bundle(buf)
    assert list(back.events()) == list(ds.events())
    assert back.instruments["deribit"].symbol == "BTC-PERPETUAL"
    p = tmp_path / "b.npz"
    p.write_bytes(buf.getvalue())
    again = open_dataset([p])
    assert again.format == "bundle"
    evs = list(again.events())
    assert all(isinstance(e, TradeTick) for e in evs) and [e.trade_id for e in evs] == ["x-1", "x-2"]
    assert not any(isinstance(e, QuoteTick) for e in evs)
