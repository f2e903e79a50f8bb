"""sorex transaction-cost analysis.

Read executions (the sorex journal, or a fills CSV for executions done elsewhere), measure each
parent order against the market around it, and report (JSON, CSV, terminal, offline HTML).
One sign convention everywhere: ``cost_bps = side * (price - benchmark) / benchmark * 1e4``,
side +1 buy / -1 sell, positive = cost. Formulas: docs/tca.md.

    from tca import run_report
    paths = run_report("run/journal.sqlite", "run/tca")   # {"html": ..., "json": ..., "csv": [...]}
"""

from __future__ import annotations

import dataclasses
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
    that path exists. Labels that two executions share (the same parent id in two journals of
    the same file name, e.g. two ``sorex run`` directories) are made unique with the journal's
    directories."""
    cache: dict[str, dict[str, MarketSeries]] = {}
    out = []
    for ex in _unique_labels(executions):
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


def _unique_labels(executions: Sequence[Execution]) -> list[Execution]:
    """The executions, those whose label is shared by another one relabelled: the journal's path
    with as many directories as tell the files apart (``a/journal.sqlite:P``), and ``#n`` after
    the labels that are still shared (the same file given twice)."""
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(executions):
        groups.setdefault(ex.label, []).append(i)
    out = list(executions)
    for label, idx in groups.items():
        if len(idx) < 2:
            continue
        paths = [Path(executions[i].source) for i in idx]
        new = [label] * len(idx)
        if all(label.startswith(pth.name + ":") for pth in paths):
            tail = label[len(paths[0].name) + 1:]
            distinct = len(set(paths))
            for k in range(2, max(len(pth.parts) for pth in paths) + 1):
                cand = [f"{'/'.join(pth.parts[-k:])}:{tail}" for pth in paths]
                if len(set(cand)) == distinct:
                    new = cand
                    break
        shared = {lab for lab in new if new.count(lab) > 1}
        seen: dict[str, int] = {}
        for i, lab in zip(idx, new, strict=True):
            if lab in shared:
                seen[lab] = seen.get(lab, 0) + 1
                lab = f"{lab} #{seen[lab]}"
            out[i] = dataclasses.replace(executions[i], label=lab)
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
