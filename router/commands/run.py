"""``sorex run CONFIG.toml [--json] [--out DIR] [--quiet] [--no-tca]``

Runs the parent orders of the config's ``[[parents]]`` sections against the configured venues (with
no ``[venues.*]`` sections: the embedded default, simulated binance-spot and binance-usdm replaying
the bundled real data). Progress goes to stderr while it runs; at the end the journal (SQLite) and
the TCA report are written under ``--out`` (default ``./sorex-run``) and their paths printed.
``--json`` prints one summary object on stdout. Reference: docs/engine.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from marketdata.errors import ConfigError, DataError, RiskRejected
from router.engine import Engine
from router.engine_config import load_engine_config

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``run`` sub-command."""
    p = subparsers.add_parser(
        "run", help="run the parent orders of a config (simulation on recorded data by default)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="CONFIG.toml", help="sorex config with [[parents]] (docs/engine.md)")
    p.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    p.add_argument("--out", metavar="DIR", default="sorex-run",
                   help="directory for journal.sqlite and the TCA report (default ./sorex-run)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--no-tca", action="store_true", help="skip the TCA report")
    p.set_defaults(func=run)


def _fmt_ns(ns: int) -> str:
    s, rem = divmod(ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.gmtime(s)) + f".{rem // 1_000_000:03d}"


def _or_dash(x: Any) -> str:
    return "-" if x is None else str(x)


class _Progress:
    """Throttled progress lines on stderr: on virtual-time ticks, at most every 0.5 s of wall time."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last_wall = 0.0

    def __call__(self, engine: Engine, *, force: bool = False) -> None:
        if self.quiet:
            return
        wall = time.monotonic()
        if not force and wall - self.last_wall < 0.5:
            return
        self.last_wall = wall
        parts = []
        for h in engine.handles():
            pct = (h.filled / h.quantity * 100) if h.quantity else 0
            avg = h.average_price
            slip = h.slippage_bps
            venues = engine._runs[h.id].by_venue
            lot = engine.grid.lot_size
            split = " ".join(f"{v}={q.quantize(lot)}" for v, q in sorted(venues.items())) or "-"
            parts.append(f"{h.id} {h.status} {pct:5.1f}% avg {avg if avg is not None else '-'} "
                         f"slip {f'{slip:+.2f}bps' if slip is not None else '-'} [{split}]")
        waiting = engine._scheduled   # parents whose submit_at is still ahead
        if waiting:
            parts.append(f"{waiting} parent{'s' if waiting > 1 else ''} waiting for submit_at")
        sys.stderr.write(f"[{_fmt_ns(engine.clock.now_ns())}] " + (" | ".join(parts) or "no parents") + "\n")


def run(args: argparse.Namespace) -> int:
    config = load_engine_config(args.config)
    if not config.parents:
        raise ConfigError("no [[parents]] section: nothing to run", file=config.path, key="parents")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError("cannot create output directory: it exists and is not a directory", file=str(out),
                          key="--out")
    journal_path = out / "journal.sqlite"
    tca_dir = out / "tca"
    if journal_path.is_dir():
        raise ConfigError("is a directory: it cannot be replaced by the run's journal", file=str(journal_path),
                          key="--out")
    if not args.no_tca and tca_dir.exists() and not tca_dir.is_dir():
        raise ConfigError("exists and is not a directory: it cannot hold the TCA report", file=str(tca_dir),
                          key="--out")
    # build the engine once without a journal first: every error the engine raises while it is
    # built (parents, venues, simulation settings) is reported before the output directory is
    # created and before the journal of an earlier run there is removed
    try:
        probe = Engine(dataclasses.replace(config, engine=dataclasses.replace(config.engine, journal=None)))
    except RiskRejected as exc:   # a parent submitted at once refused by a parent-level [risk] rule
        key = f"risk.{exc.rule}" if exc.rule in ("blacklist", "max_parent_notional") else "risk"
        raise ConfigError(f"a [[parents]] entry is refused by pre-trade risk before it starts: {exc}",
                          file=config.path, key=key) from None
    dataset = probe.dataset
    probe.close()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory: {exc.strerror}", file=str(out), key="--out") from None
    for suffix in ("", "-wal", "-shm"):
        old = Path(str(journal_path) + suffix)
        try:
            old.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot replace the journal of an earlier run: {exc.strerror}", file=str(old),
                              key="--out") from None
    progress = _Progress(args.quiet)
    engine = Engine(config, dataset=dataset, journal=journal_path, on_progress=progress)
    try:
        engine.run()
        progress(engine, force=True)
        summary = engine.summary()
    finally:
        engine.close()
    tca_paths: dict[str, Any] | None = None
    if not args.no_tca:
        from tca import run_report
        try:
            tca_paths = run_report(journal_path, tca_dir)
        except (DataError, OSError) as exc:
            sys.stderr.write(f"sorex run: TCA report failed: {exc}\n")
    summary["journal"] = str(journal_path)
    summary["tca"] = None if tca_paths is None else {k: (str(v) if not isinstance(v, list) else [str(x) for x in v])
                                                     for k, v in tca_paths.items()}
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        for p in summary["parents"]:
            sys.stdout.write(
                f"{p['id']}: {p['side']} {p['quantity']} {p['symbol']} ({p['algo']}) {p['status']}: "
                f"filled {p['filled']} "
                f"avg {_or_dash(p['average_price'])} arrival {_or_dash(p['arrival_price'])} slippage "
                f"{'-' if p['slippage_bps'] is None else format(p['slippage_bps'], '+.2f') + ' bps'}, "
                f"{p['children']} child orders, venues "
                f"{', '.join(f'{v} {q}' for v, q in p['venues'].items()) or '-'}"
                + (f"\n    reason: {p['reason']}" if p["reason"] else "") + "\n")
        for venue, acc in summary["accounts"].items():
            bals = ", ".join(f"{a} {b['free']}" + (f" (+{b['locked']} locked)" if b["locked"] != "0" else "")
                             for a, b in acc["balances"].items())
            pos = "" if acc["position"] is None else f"; position {acc['position']} {summary['symbol']}"
            sys.stdout.write(f"account {venue}: {bals or '-'}{pos}\n")
        sys.stdout.write(f"journal: {journal_path}\n")
        if tca_paths is not None:
            sys.stdout.write(f"tca: {tca_paths.get('html')} ({tca_paths.get('json')})\n")
    return 0
