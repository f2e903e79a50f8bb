"""``sorex data``: check recorded market data and rebuild the bundled dataset (docs/data.md).

    sorex data check [FILE ...] [--format F] [--json] [--bundled]
    sorex data convert [--source DIR] [--output FILE.npz]
    sorex data info [FILE ...] [--format F]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from marketdata.errors import DataError


def register(subparsers: Any) -> None:
    """Add the ``data`` sub-command and its ``check`` / ``convert`` / ``info`` actions."""
    from marketdata.replay import FORMATS

    p = subparsers.add_parser("data", help="check recorded market data, rebuild the bundled dataset",
                              description="Replay recorded market data through the L2 book with every "
                                          "integrity check on, or rebuild the bundled dataset.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    c = sub.add_parser("check", help="replay files (or the bundled data) with all integrity checks",
                       description="Replay through L2Book: sequence gaps and resyncs, crossed books, "
                                   "book invariants, and bookTicker top of book vs the rebuilt book. "
                                   "Exit 1 on an unresolved gap, a crossed book, a top-of-book mismatch "
                                   "or a broken invariant; 2 on unreadable input.")
    c.add_argument("files", nargs="*", metavar="FILE",
                   help="data files or directories (several raw captures of one market chain); "
                        "none = the bundled data")
    c.add_argument("--format", choices=FORMATS, help="input format (default: detected from the file)")
    c.add_argument("--bundled", action="store_true", help="check the bundled default dataset")
    c.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    c.set_defaults(func=run_check)
    v = sub.add_parser("convert", help="rebuild the bundled dataset from the raw Binance captures")
    v.add_argument("--source", type=Path, default=None,
                   help="directory of the raw captures (default $SOREX_SHARED/data/binance-btc)")
    v.add_argument("--output", type=Path, default=None, help="bundle to write (default: the bundled one)")
    v.set_defaults(func=run_convert)
    i = sub.add_parser("info", help="summary of a dataset (instruments, span, counts)")
    i.add_argument("files", nargs="*", metavar="FILE")
    i.add_argument("--format", choices=FORMATS)
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _open(files: list[str], fmt: str | None, bundled: bool) -> Any:
    from marketdata.replay import FORMATS, default_dataset, open_dataset

    if bundled or not files:
        if files:
            raise DataError("give FILEs or --bundled, not both")
        return default_dataset()
    for f in files:
        if not Path(f).exists():
            raise DataError(f"no such file (formats: {', '.join(FORMATS)})", source=f)
    return open_dataset(files, fmt)


def run_check(args: argparse.Namespace) -> int:
    from marketdata.replay.check import check_dataset

    t0 = time.perf_counter()
    ds = _open(args.files, args.format, args.bundled)
    t1 = time.perf_counter()
    res = check_dataset(ds)
    t2 = time.perf_counter()
    rep = ds.report
    out: dict[str, Any] = {
        "source": ds.source, "format": ds.format, **res.to_dict(),
        "malformed": rep.malformed, "malformed_lines": [m.to_dict() for m in rep.malformed_samples],
        "ignored": rep.ignored, "notes": rep.notes, "readers": rep.books,
        "start_ns": ds.start_ns, "end_ns": ds.end_ns,
        "instruments": {k: {"venue": i.venue, "symbol": i.symbol, "venue_symbol": i.venue_symbol,
                            "tick_size": str(i.tick_size), "lot_size": str(i.lot_size)}
                        for k, i in ds.instruments.items()},
        "seconds": {"read": round(t1 - t0, 3), "replay": round(t2 - t1, 3)},
    }
    w = sys.stdout.write
    if args.json:
        w(json.dumps(out, default=list) + "\n")
    else:
        w(f"{ds.format}: {ds.source}\n")
        w(f"  read {t1 - t0:.2f}s, replay {t2 - t1:.2f}s; {res.events} events: {res.book_updates} book "
          f"updates ({res.level_updates} levels), {res.snapshots} snapshots, {res.trades} trades, "
          f"{res.quotes} quotes\n")
        for key, b in res.books.items():
            w(f"  {key} [{b['sequence_rule']}]: {b['messages']} updates, gaps {b['gaps']}, "
              f"resyncs {b['resyncs']}, crossed {b['crossed']}, top-of-book checks {b['tob_checks']} "
              f"mismatches {b['tob_mismatches']}, levels {b['bid_levels']}/{b['ask_levels']}\n")
        w(f"  gaps {res.gaps} (unresolved {res.unresolved_gaps}), resyncs {res.resyncs}, crossed "
          f"{res.crossed}, tob checks {res.tob_checks}, tob mismatches {res.tob_mismatches}, invariant "
          f"errors {res.invariant_errors}, malformed lines {rep.malformed}\n")
        for m in rep.malformed_samples:
            w(f"  malformed {m.source}:{m.line}: {m.reason}\n")
        for note in rep.notes:
            w(f"  note: {note}\n")
        for prob in res.samples:
            w(f"  problem: {prob}\n")
        w("  OK\n" if res.ok else "  FAILED\n")
    return 0 if res.ok else 1


def run_convert(args: argparse.Namespace) -> int:
    from marketdata.replay import DEFAULT_BUNDLE
    from marketdata.replay.convert import convert, default_raw_dir

    src = args.source or default_raw_dir()
    dest = args.output or DEFAULT_BUNDLE
    t0 = time.perf_counter()
    ds = convert(src, dest)
    sys.stdout.write(f"wrote {dest} ({dest.stat().st_size / 1e6:.2f} MB) from {src} in "
                     f"{time.perf_counter() - t0:.1f}s: books {', '.join(f'{v}:{s}' for v, s in ds.books)}\n")
    return 0


def run_info(args: argparse.Namespace) -> int:
    ds = _open(args.files, args.format, False)
    w = sys.stdout.write
    w(f"{ds.format}: {ds.source}\n  span {ds.start_ns} .. {ds.end_ns} ns "
      f"({(ds.end_ns - ds.start_ns) / 1e9:.1f} s exchange time)\n")
    for (venue, vsym), inst in ds.books.items():
        w(f"  {venue} {vsym} -> {inst.symbol} tick {inst.tick_size} lot {inst.lot_size} "
          f"rule {ds.rule_of(venue, vsym)}\n")
    if ds.provenance:
        w(f"  provenance: {json.dumps(ds.provenance)}\n")
    return 0
