"""Rebuild the bundled default dataset (marketdata/data/) from the raw Binance captures.

Run ``sorex data convert [--source DIR] [--output FILE]`` or ``python -m marketdata.replay.convert``.
The raw files are the hftbacktest example captures described in marketdata/data/README.md; the
bundle holds exactly the events that reading them with :func:`read_binance_raw` produces.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from marketdata.errors import DataError
from marketdata.replay.binance_raw import read_binance_raw
from marketdata.replay.bundle import write_bundle
from marketdata.replay.dataset import Dataset

log = logging.getLogger(__name__)

RAW_FILES = (
    "spot_btcusdt_20240808.gz",
    "spot_btcusdt_20240809.gz",
    "usdm_btcusdt_20240808.gz",
    "coinm_btcusd_perp_20240808.gz",
)
PROVENANCE = {
    "what": "Binance public market data (spot BTCUSDT, USD-M BTCUSDT, COIN-M BTCUSD_PERP), "
            "2024-08-08 23:54 - 2024-08-09 00:05 UTC",
    "recorded_by": "the examples of nkaz001/hftbacktest (MIT licence, commit 5f3ec40b)",
    "files": list(RAW_FILES),
}


def default_raw_dir() -> Path:
    """``$SOREX_SHARED/data/binance-btc`` (default ``<repo>/../shared``)."""
    repo = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("SOREX_SHARED", repo.parent / "shared"))
    return shared / "data" / "binance-btc"


def build_dataset(raw_dir: Path) -> Dataset:
    """Read the four raw captures into one dataset (spot files chained)."""
    missing = [f for f in RAW_FILES if not (raw_dir / f).is_file()]
    if missing:
        raise DataError(f"raw capture files missing: {', '.join(missing)}", source=str(raw_dir))
    spot = read_binance_raw([raw_dir / RAW_FILES[0], raw_dir / RAW_FILES[1]])
    usdm = read_binance_raw([raw_dir / RAW_FILES[2]])
    coinm = read_binance_raw([raw_dir / RAW_FILES[3]])
    return merge_datasets([spot, usdm, coinm])


def merge_datasets(parts: list[Dataset]) -> Dataset:
    """One dataset of the books of ``parts`` (distinct books each)."""
    books, rules, streams = {}, {}, {}
    report = parts[0].report
    for ds in parts:
        for key, inst in ds.books.items():
            if key in books:
                raise DataError(f"book {key} appears in two inputs")
            books[key] = inst
            rules[key] = ds.rule_of(*key)
            streams[key] = ds._streams[key]
        if ds is not parts[0]:
            report.lines += ds.report.lines
            report.malformed += ds.report.malformed
            report.malformed_samples.extend(ds.report.malformed_samples)
            report.books.update(ds.report.books)
            report.notes.extend(ds.report.notes)
    return Dataset(books=books, rules=rules, streams=streams,
                   start_ns=min(d.start_ns for d in parts), end_ns=max(d.end_ns for d in parts),
                   source=", ".join(d.source for d in parts), format=parts[0].format, report=report)


def convert(raw_dir: Path, output: Path) -> Dataset:
    """Read the raw captures in ``raw_dir`` and write the bundle to ``output``; returns the dataset."""
    ds = build_dataset(raw_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_bundle(ds, output, provenance=PROVENANCE)
    log.info("bundle written to %s (%d bytes)", output, output.stat().st_size)
    return ds


def main(argv: list[str] | None = None) -> int:
    from marketdata.replay import DEFAULT_BUNDLE

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", type=Path, default=default_raw_dir())
    ap.add_argument("--output", type=Path, default=DEFAULT_BUNDLE)
    args = ap.parse_args(argv)
    convert(args.source, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
