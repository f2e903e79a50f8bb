"""sorex transaction-cost analysis.

Read executions (the sorex journal, or a fills CSV for executions done elsewhere), measure each
parent order against the market around it, and report (JSON, CSV, terminal, offline HTML).
One sign convention everywhere: ``cost_bps = side * (price - benchmark) / benchmark * 1e4``,
side +1 buy / -1 sell, positive = cost. Formulas: docs/tca.md.

    from tca import run_report
    paths = run_report("run/journal.sqlite", "run/tca")   # {"html": ..., "json": ..., "csv": [...]}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from marketdata.errors import DataError
from tca.loaders import load_fills_csv, load_journal, load_market
from tca.metrics import DEFAULT_HORIZON_S, MARKOUT_HORIZONS_S, ParentAnalysis, analyze
from tca.model import Execution, MarketSeries

log = logging.getLogger(__name__)

__all__ = [
    "Execution",
    "MarketSeries",
    "ParentAnalysis",
    "analyze",
    "analyze_all",
    "load_fills_csv",
    "load_journal",
    "load_market",
    "run_report",
]


def analyze_all(executions: Sequence[Execution], market: dict[str, MarketSeries] | None = None, *,
                horizon_s: int = DEFAULT_HORIZON_S,
                markout_horizons_s: Sequence[int] = MARKOUT_HORIZONS_S,
                auto_market: bool = True) -> list[ParentAnalysis]:
    """Analyse each execution against the market series of its symbol. Without ``market``, and
    with ``auto_market``, the market data named by a journal's run_started record is loaded when
    that path exists."""
    cache: dict[str, dict[str, MarketSeries]] = {}
    out = []
    for ex in executions:
        mk = market
        if mk is None and auto_market and ex.market_source:
            srcs = [ex.market_source] if isinstance(ex.market_source, str) else list(ex.market_source)
            key = "\n".join(srcs)
            if key not in cache:
                try:
                    usable = srcs == ["default"] or all(Path(x).exists() for x in srcs)
                    cache[key] = load_market(srcs) if usable else {}
                except DataError as exc:
                    log.warning("market data %s named by %s could not be loaded: %s", key, ex.source, exc)
                    cache[key] = {}
            mk = cache[key]
        series = mk.get(ex.parent.symbol) if mk else None
        out.append(analyze(ex, series, horizon_s=horizon_s, markout_horizons_s=markout_horizons_s))
    return out


def run_report(journal_path: str | Path, out_dir: str | Path, *,
               market: str | Path | Iterable[str | Path] | dict[str, MarketSeries] | None = None,
               ) -> dict[str, Any]:
    """Write the TCA of every parent in a journal to ``out_dir``: ``tca.html``, ``tca.json`` and
    CSVs under ``out_dir/csv``. Returns ``{"html": Path, "json": Path, "csv": [Path, ...]}``.

    ``market``: series by symbol, or a spec for :func:`tca.loaders.load_market`; by default the
    market data named in the journal's run_started record (when it exists on disk)."""
    from tca.report import write_csv, write_html, write_json

    execs = load_journal(journal_path)
    series = market if isinstance(market, dict) else (load_market(market) if market is not None else None)
    analyses = analyze_all(execs, series)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"html": write_html(analyses, out / "tca.html", title=f"sorex TCA: {Path(journal_path).name}"),
            "json": write_json(analyses, out / "tca.json"),
            "csv": write_csv(analyses, out / "csv")}
