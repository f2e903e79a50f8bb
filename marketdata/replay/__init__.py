"""Replay of recorded market data: readers, the :class:`Dataset` API and the bundled BTC data.

::

    from marketdata.replay import default_dataset, open_dataset
    ds = default_dataset()                      # bundled real Binance BTC data (marketdata/data/)
    ds = open_dataset(["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"])   # format detected
    for ev in ds.events(["binance-usdm"]):      # BookDeltas / TradeTick / QuoteTick in exchange time
        ...

Formats: ``binance-raw`` (``<receive_ns> <json>`` captures, gzip or plain), ``tardis-book``
(Tardis ``incremental_book_L2`` CSV), ``tardis-trades`` (Tardis ``trades`` CSV), ``bundle`` (the
compact ``.npz`` written by :func:`write_bundle`). See docs/data.md.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from marketdata.errors import DataError
from marketdata.replay.binance_raw import read_binance_raw
from marketdata.replay.bundle import read_bundle, write_bundle
from marketdata.replay.dataset import Dataset, Malformed, ReadReport
from marketdata.replay.tardis import read_tardis

FORMATS = ("binance-raw", "tardis-book", "tardis-trades", "bundle")
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_BUNDLE = DATA_DIR / "binance_btc_20240808.npz"

Source = str | Path | IO[bytes]


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its first bytes; raises :class:`DataError` naming the formats."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc} (formats: {', '.join(FORMATS)})",
                        source=str(path)) from None
    if head[:4] == b"PK\x03\x04":
        return "bundle"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(p, "rb") as gz:
                head = gz.read(4096)
        except (OSError, EOFError):
            head = b""
    first = head.split(b"\n", 1)[0].strip()
    if first.startswith(b"exchange,symbol,timestamp,local_timestamp,"):
        cols = first.decode("ascii", "replace").split(",")
        if "is_snapshot" in cols:
            return "tardis-book"
        if "id" in cols:
            return "tardis-trades"
    parts = first.split(b" ", 1)
    if len(parts) == 2 and parts[0].isdigit() and parts[1].lstrip().startswith(b"{"):
        return "binance-raw"
    raise DataError(f"unknown format (formats: {', '.join(FORMATS)})", source=str(path))


def open_dataset(paths: Sequence[Source], format: str | None = None,
                 *, max_malformed_samples: int = 20) -> Dataset:
    """Read ``paths`` into one :class:`Dataset`. ``format`` is one of :data:`FORMATS`, detected
    from the first file when ``None``. Several raw Binance files of one market chain (book state
    carries over); Tardis book and trade files of the same symbols may be given together. A directory
    stands for the data files in it."""
    paths = _expand(paths)
    if not paths:
        raise DataError("no input files given")
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown format {format!r} (formats: {', '.join(FORMATS)})")
    if format is None:
        fmts = {detect_format(p) if isinstance(p, str | Path) else "binance-raw" for p in paths}
        if fmts <= {"tardis-book", "tardis-trades"}:
            format = "tardis-book"
        elif len(fmts) == 1:
            format = fmts.pop()
        else:
            raise DataError(f"files of different formats given together: {sorted(fmts)}")
    if format == "binance-raw":
        return read_binance_raw(list(paths), max_malformed_samples=max_malformed_samples)
    if format in ("tardis-book", "tardis-trades"):
        return read_tardis(list(paths), max_malformed_samples=max_malformed_samples)
    if len(paths) != 1:
        raise DataError("a bundle is read on its own (give one .npz)")
    return read_bundle(paths[0])


def _expand(paths: Sequence[Source]) -> list[Source]:
    """Directories become their data files (sorted; files of no known format are skipped)."""
    out: list[Source] = []
    for p in paths:
        if isinstance(p, str | Path) and Path(p).is_dir():
            found = []
            for f in sorted(Path(p).iterdir()):
                if not f.is_file() or f.name.startswith("."):
                    continue
                try:
                    detect_format(f)
                except DataError:
                    continue
                found.append(f)
            if not found:
                raise DataError(f"no data files in directory (formats: {', '.join(FORMATS)})", source=str(p))
            out.extend(found)
        else:
            out.append(p)
    return out


@functools.lru_cache(maxsize=1)
def _default() -> Dataset:
    if not DEFAULT_BUNDLE.is_file():
        raise DataError("the bundled dataset is missing; rebuild it with `sorex data convert`",
                        source=str(DEFAULT_BUNDLE))
    return read_bundle(DEFAULT_BUNDLE)


def default_dataset() -> Dataset:
    """The bundled real data: Binance spot BTCUSDT (2024-08-08 23:54 - 08-09 00:05 UTC), USD-M
    BTCUSDT and COIN-M BTCUSD_PERP (08-08 23:54 - 24:00), see marketdata/data/README.md. Loaded
    once per process and shared (a :class:`Dataset` is read-only; each ``events()`` call starts a
    fresh replay)."""
    return _default()


__all__ = [
    "DEFAULT_BUNDLE", "FORMATS", "Dataset", "Malformed", "ReadReport", "default_dataset", "detect_format",
    "open_dataset", "read_binance_raw", "read_bundle", "read_tardis", "write_bundle",
]
