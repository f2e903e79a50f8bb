"""``sorex tca``: transaction-cost analysis of journals or of a fills CSV (docs/tca.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from marketdata.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add the ``tca`` sub-command."""
    p = subparsers.add_parser(
        "tca", help="transaction-cost analysis of journals or a fills CSV",
        description="Measure parent orders against the market around them (arrival, implementation "
                    "shortfall with Perold and Wagner decompositions, VWAP/TWAP, participation, spreads, "
                    "markouts, venues, child orders, routing decisions). Sign convention: "
                    "cost_bps = side*(price-benchmark)/benchmark*1e4, positive = cost.")
    p.add_argument("journals", nargs="*", metavar="JOURNAL", help="sorex journal SQLite file(s)")
    p.add_argument("--fills", action="append", default=[], metavar="FILE.csv",
                   help="fills CSV of executions done elsewhere (format: docs/tca.md); repeatable")
    p.add_argument("--parent", action="append", default=[], metavar="ID",
                   help="only this parent id (repeatable)")
    p.add_argument("--market", action="append", default=[], metavar="DATA",
                   help="market data: 'default' (bundled), a file or a directory; repeatable. "
                        "Default: what the journal's run_started record names, when it exists")
    p.add_argument("--html", metavar="FILE", help="write the offline HTML report here")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("--csv", metavar="DIR", help="write parents/venues/children/fills/decisions CSVs here")
    p.add_argument("--horizon", type=int, default=5, metavar="SECONDS",
                   help="horizon of the realized spread / price impact split (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tca import analyze_all, load_fills_csv, load_journal, load_market
    from tca.report import report_dict, terminal_summary, write_csv, write_html

    if not args.journals and not args.fills:
        raise ConfigError("give at least one JOURNAL or --fills FILE.csv", key="tca")
    if args.horizon <= 0:
        raise ConfigError(f"--horizon {args.horizon} must be a positive number of seconds", key="--horizon")
    # refuse unusable output paths before anything is written
    if args.html and Path(args.html).is_dir():
        raise ConfigError("is a directory, not a file", file=args.html, key="--html")
    if args.csv and Path(args.csv).exists() and not Path(args.csv).is_dir():
        raise ConfigError("exists and is not a directory", file=args.csv, key="--csv")
    executions = []
    for j in args.journals:
        executions.extend(load_journal(j))
    for f in args.fills:
        executions.extend(load_fills_csv(f))
    if args.parent:
        wanted = set(args.parent)
        known = sorted({e.parent.parent_id for e in executions})
        missing = wanted - set(known)
        if missing:
            raise ConfigError(f"unknown parent id(s) {', '.join(sorted(missing))}", key="--parent",
                              allowed=", ".join(known) or "none")
        executions = [e for e in executions if e.parent.parent_id in wanted]
    market = load_market(args.market) if args.market else None
    analyses = analyze_all(executions, market, horizon_s=args.horizon)
    if args.html:
        try:
            path = write_html(analyses, args.html)
        except OSError as exc:
            raise ConfigError(f"cannot write the HTML report: {exc.strerror}", file=args.html, key="--html") from None
        sys.stderr.write(f"wrote {path}\n")
    if args.csv:
        try:
            paths = write_csv(analyses, args.csv)
        except OSError as exc:
            raise ConfigError(f"cannot write the CSVs: {exc.strerror}", file=args.csv, key="--csv") from None
        for path in paths:
            sys.stderr.write(f"wrote {path}\n")
    if args.json:
        sys.stdout.write(json.dumps(report_dict(analyses), indent=2) + "\n")
    else:
        sys.stdout.write(terminal_summary(analyses) + "\n")
    return 0
