"""Replay-input benchmarks: parsing raw Binance capture lines into normalized events, against
loading the bundled ``.npz`` (same events), measured in the same run.

* ``raw-usdm``        read + parse ``usdm_btcusdt_20240808.gz`` (93,954 lines, 443,521 level updates)
                      into BookDeltas/TradeTick/QuoteTick (gunzip, json.loads, exact integer parsing,
                      snapshot buffering)
* ``raw-all``         the same for all four captures (the bundle's source, 291,803 lines)
* ``bundle-load``     ``read_bundle`` of marketdata/data/*.npz (decompress + columns -> lists)
* ``bundle-events``   ``read_bundle`` plus materialising every event (the fair comparison to raw-all)

Run: ``python -m pytest bench/test_bench_parse.py --benchmark-enable -q``
Figures: bench/results/replay.md
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from marketdata.replay import DEFAULT_BUNDLE, read_binance_raw, read_bundle
from marketdata.replay.convert import build_dataset

REPO = Path(__file__).resolve().parents[1]
RAW = Path(os.environ.get("SOREX_SHARED", REPO.parent / "shared")) / "data" / "binance-btc"
USDM = RAW / "usdm_btcusdt_20240808.gz"

pytestmark = pytest.mark.skipif(not USDM.is_file(), reason=f"raw captures not found in {RAW}")


def test_raw_usdm(benchmark) -> None:  # type: ignore[no-untyped-def]
    ds = benchmark.pedantic(read_binance_raw, args=([USDM],), rounds=5, iterations=1)
    book = ds.report.books["binance-usdm:BTCUSDT"]
    benchmark.extra_info["lines"] = ds.report.lines
    benchmark.extra_info["level_updates"] = book["level_updates"]
    if benchmark.stats:
        med = benchmark.stats.stats.median
        benchmark.extra_info["lines_per_s"] = round(ds.report.lines / med)
        benchmark.extra_info["level_updates_per_s"] = round(book["level_updates"] / med)
        print(f"\nraw-usdm: median {med:.3f}s, {ds.report.lines / med:,.0f} lines/s, "
              f"{book['level_updates'] / med:,.0f} level updates/s")


def test_raw_all(benchmark) -> None:  # type: ignore[no-untyped-def]
    ds = benchmark.pedantic(build_dataset, args=(RAW,), rounds=3, iterations=1)
    assert len(ds.books) == 3


def test_bundle_load(benchmark) -> None:  # type: ignore[no-untyped-def]
    ds = benchmark.pedantic(read_bundle, args=(DEFAULT_BUNDLE,), rounds=10, iterations=1)
    assert len(ds.books) == 3


def test_bundle_events(benchmark) -> None:  # type: ignore[no-untyped-def]
    def load_all() -> int:
        ds = read_bundle(DEFAULT_BUNDLE)
        return sum(1 for _ in ds.events())

    n = benchmark.pedantic(load_all, rounds=5, iterations=1)
    assert n > 240_000
