"""TCA outputs: JSON, CSV, a compact terminal summary and a self-contained offline HTML report
(inline SVG charts, a few lines of inline JS, no network resources), for one or several parents
side by side. All of them carry the same numbers (JSON/CSV rounded to 8 decimal places)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from html import escape
from pathlib import Path
from typing import Any

from tca.metrics import SIGN_CONVENTION, ParentAnalysis
from tca.svg import PALETTE, Line, Marker, bar_chart, line_chart

__all__ = ["render_html", "report_dict", "terminal_summary", "to_jsonable", "write_csv", "write_html",
           "write_json"]

DECIMALS = 8


def to_jsonable(obj: Any) -> Any:
    """Decimal/Fraction -> float rounded to 8 decimal places; containers recursively."""
    if isinstance(obj, Decimal | Fraction):
        return round(float(obj), DECIMALS)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj


def report_dict(analyses: Sequence[ParentAnalysis]) -> dict[str, Any]:
    """The JSON document: ``{"sign_convention": ..., "parents": [metrics, ...]}``."""
    return {"sign_convention": SIGN_CONVENTION, "units": {
        "bps": "basis points of the benchmark (IS: of the paper value quantity*decision_price)",
        "money": "quote currency", "time": "ns since epoch (ts_ns) or seconds (_s)"},
        "parents": [to_jsonable(a.metrics) for a in analyses]}


def write_json(analyses: Sequence[ParentAnalysis], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(report_dict(analyses), indent=2) + "\n", encoding="utf-8")
    return p


# ====================================================================== CSV
def _flat_parent(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("label", "parent_id", "source", "run_id", "symbol", "side", "algo", "status", "quantity",
            "filled_quantity", "unfilled_quantity", "average_price", "decision_price", "arrival_price",
            "end_price", "decision_ts_ns", "start_ts_ns", "end_ts_ns", "fees", "arrival_slippage_bps", "is_bps",
            "vwap", "vwap_slippage_bps", "twap", "twap_slippage_bps", "market_volume", "participation",
            "fill_rate", "completion_time_s", "duration_s", "horizon_s", "effective_spread_bps",
            "realized_spread_bps", "price_impact_bps")
    row = {k: m.get(k) for k in keys}
    is_ = m.get("is") or {}
    row["is_paper_value"] = is_.get("paper_value")
    for dec in ("perold", "wagner"):
        for part, v in (is_.get(dec) or {}).items():
            row[f"is_{dec}_{part}"] = v
        for part, v in (is_.get(f"{dec}_bps") or {}).items():
            row[f"is_{dec}_{part}_bps"] = v
    for h, v in (m.get("markouts_bps") or {}).items():
        row[f"markout_{h}_bps"] = v
    for h, v in (m.get("reversion_bps") or {}).items():
        row[f"reversion_{h}_bps"] = v
    return row


def _csv_value(v: Any) -> Any:
    j = to_jsonable(v)
    if j is None:
        return ""
    if isinstance(j, dict | list):
        return json.dumps(j)
    return j


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols or ["empty"])
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(v) for k, v in r.items()})
    return path


def write_csv(analyses: Sequence[ParentAnalysis], out_dir: str | Path) -> list[Path]:
    """parents.csv (one row of scalar metrics per parent), venues.csv, children.csv, fills.csv,
    decisions.csv; empty cells are missing values."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    parents: list[dict[str, Any]] = []
    venues: list[dict[str, Any]] = []
    children: list[dict[str, Any]] = []
    fills: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    for a in analyses:
        m = a.metrics
        key = {"label": m["label"], "parent_id": m["parent_id"]}
        parents.append(_flat_parent(m))
        for v in m["venues"]:
            row = {**key, **{k: x for k, x in v.items() if k != "markouts_bps"}}
            for h, x in v["markouts_bps"].items():
                row[f"markout_{h}_bps"] = x
            venues.append(row)
        children.extend({**key, **c} for c in m["children"]["orders"])
        for f in m["fills"]:
            row = {**key, **{k: x for k, x in f.items() if k != "markouts_bps"}}
            for h, x in f["markouts_bps"].items():
                row[f"markout_{h}_bps"] = x
            fills.append(row)
        decisions.extend({**key, **dd} for dd in m["routing_decisions"])
    return [_write_rows(d / "parents.csv", parents), _write_rows(d / "venues.csv", venues),
            _write_rows(d / "children.csv", children), _write_rows(d / "fills.csv", fills),
            _write_rows(d / "decisions.csv", decisions)]


# ====================================================================== terminal
def _f(v: Any, nd: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, Decimal | Fraction | float | int):
        return f"{float(v):,.{nd}f}"
    return str(v)


def terminal_summary(analyses: Sequence[ParentAnalysis]) -> str:
    """A compact fixed-width table, one column per parent."""
    rows: list[tuple[str, list[str]]] = [
        ("parent", [a.metrics["label"] for a in analyses]),
        ("side/algo", [f"{a.metrics['side']} {a.metrics['algo'] or ''}".strip() for a in analyses]),
        ("filled/qty", [f"{_f(a.metrics['filled_quantity'], 4)}/{_f(a.metrics['quantity'], 4)}" for a in analyses]),
        ("avg price", [_f(a.metrics["average_price"], 4) for a in analyses]),
        ("arrival slip bps", [_f(a.metrics["arrival_slippage_bps"]) for a in analyses]),
        ("IS bps", [_f(a.metrics["is_bps"]) for a in analyses]),
        ("VWAP slip bps", [_f(a.metrics["vwap_slippage_bps"]) for a in analyses]),
        ("TWAP slip bps", [_f(a.metrics["twap_slippage_bps"]) for a in analyses]),
        ("participation %", [_f(None if a.metrics["participation"] is None else a.metrics["participation"] * 100)
                             for a in analyses]),
        ("fill rate %", [_f(a.metrics["fill_rate"] * 100) for a in analyses]),
        ("eff/real/impact", ["/".join(_f(a.metrics[k]) for k in (
            "effective_spread_bps", "realized_spread_bps", "price_impact_bps")) for a in analyses]),
        ("markout 1/5/30/60s", ["/".join(_f(v, 1) for v in a.metrics["markouts_bps"].values())
                                for a in analyses]),
        ("venues", [",".join(v["venue"] for v in a.metrics["venues"]) or "-" for a in analyses]),
    ]
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(r[1][i]) for r in rows) for i in range(len(analyses))]
    lines = [f"sorex TCA  ({SIGN_CONVENTION})"]
    for name, vals in rows:
        lines.append(name.ljust(w0) + "  " + "  ".join(v.rjust(w) for v, w in zip(vals, widths, strict=True)))
    return "\n".join(lines)


# ====================================================================== HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;
max-width:1500px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 16px 0;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.na{color:#999}.charts{display:flex;flex-wrap:wrap;gap:12px}
.note{color:#555;font-size:12px}.warn{color:#a33;font-size:12px}
"""

_SUMMARY_ROWS: tuple[tuple[str, str, int], ...] = (
    ("side", "side", 0), ("algo", "algo", 0), ("quantity", "quantity", 6),
    ("filled quantity", "filled_quantity", 6), ("fill rate", "fill_rate", 4),
    ("average price", "average_price", 4), ("decision price", "decision_price", 4),
    ("arrival price", "arrival_price", 4), ("end price", "end_price", 4),
    ("arrival slippage (bps)", "arrival_slippage_bps", 3), ("implementation shortfall (bps)", "is_bps", 3),
    ("VWAP", "vwap", 4), ("VWAP slippage (bps)", "vwap_slippage_bps", 3), ("TWAP", "twap", 4),
    ("TWAP slippage (bps)", "twap_slippage_bps", 3), ("market volume", "market_volume", 6),
    ("participation", "participation", 4), ("completion time (s)", "completion_time_s", 3),
    ("duration (s)", "duration_s", 3), ("fees (quote)", "fees", 6),
    ("effective spread (bps)", "effective_spread_bps", 3), ("realized spread (bps)", "realized_spread_bps", 3),
    ("price impact (bps)", "price_impact_bps", 3),
)


def _cell(v: Any, nd: int = 4) -> str:
    if v is None:
        return '<td class="na">n/a</td>'
    if isinstance(v, Decimal | Fraction | float):
        return f"<td>{float(v):,.{nd}f}</td>"
    return f'<td class="l">{escape(str(v))}</td>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], nd: int = 4, cls: str = "",
           row_nd: Sequence[int] | None = None) -> str:
    """``nd`` decimals for every cell, or ``row_nd[i]`` for the cells of row ``i`` when given."""
    head = "".join(f'<th class="l">{escape(h)}</th>' if i == 0 else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(headers))
    nds = [row_nd[i] if row_nd is not None and i < len(row_nd) else nd for i in range(len(rows))]
    body = "".join("<tr>" + "".join(_cell(v, n) for v in r) + "</tr>" for r, n in zip(rows, nds, strict=True))
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fl(v: Any) -> float | None:
    return None if v is None else float(v)


def _venue_colors(analyses: Sequence[ParentAnalysis]) -> dict[str, str]:
    names = sorted({v["venue"] for a in analyses for v in a.metrics["venues"]})
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def _parent_section(idx: int, a: ParentAnalysis, vcolor: dict[str, str]) -> str:
    m, s = a.metrics, a.series
    out = [f'<section class="parent" id="p{idx}"><h2>{escape(m["label"])}</h2>']
    out.extend(f'<p class="warn">{escape(w)}</p>' for w in m["warnings"])
    # IS decomposition table
    is_ = m.get("is")
    if is_ and is_.get("paper_value") is not None:
        rows = [["Perold", *(is_["perold"].get(k) for k in ("execution",)), None, None,
                 is_["perold"]["opportunity"], is_["perold"]["fees"], is_["perold"]["total"],
                 is_["perold_bps"]["total"]],
                ["Wagner/Kissell", None, is_["wagner"]["delay"], is_["wagner"]["trading"],
                 is_["wagner"]["opportunity"], is_["wagner"]["fees"], is_["wagner"]["total"],
                 is_["wagner_bps"]["total"]]]
        out.append("<h3>Implementation shortfall (quote currency; bps of paper value "
                   f"{float(is_['paper_value']):,.2f})</h3>")
        out.append(_table(["decomposition", "execution", "delay", "trading", "opportunity", "fees", "total",
                           "total bps"], rows, 4))
    charts = []
    # price path
    fills = s["fills"]
    lines = [Line("consolidated mid", s["mid"], "#555", step=True)]
    markers = [Marker(t, p, vcolor.get(v, "#000"), f"{v} {q:g} @ {p:,.4f} (t={t:.3f}s)",
                      r=3 + min(5.0, 2 * (q / max(s["quantity"], 1e-12)) ** 0.5 * 4))
               for t, p, v, q in fills]
    legend = [("mid", "#555")] + [(v, c) for v, c in vcolor.items() if any(f[2] == v for f in fills)]
    charts.append(line_chart("Price path and our fills by venue", lines, markers, xlabel="seconds from arrival",
                             ylabel="price", vlines=[(0.0, "arrival"), (float(m["duration_s"]), "end")],
                             legend=legend))
    charts.append(line_chart("Schedule vs actual cumulative quantity", [
        Line("ideal linear schedule", s["schedule"], "#999", dashed=True),
        Line("released to venues", s["cum_sent"], "#ff7f0e", step=True),
        Line("filled", s["cum_fill"], "#1f77b4", step=True)], xlabel="seconds from arrival", ylabel="quantity"))
    part = [(t, p * 100) for t, p in s["participation"] if p is not None]
    charts.append(line_chart("Participation over time", [Line("participation %", part, "#2ca02c", step=True)],
                             xlabel="seconds from arrival", ylabel="% of market volume"))
    cats = ["arrival", "IS", "VWAP", "TWAP", "eff. spread", "real. spread", "impact"]
    vals = [_fl(m[k]) for k in ("arrival_slippage_bps", "is_bps", "vwap_slippage_bps", "twap_slippage_bps",
                                "effective_spread_bps", "realized_spread_bps", "price_impact_bps")]
    charts.append(bar_chart("Slippage vs benchmarks (bps, + = cost)", cats, [("bps", vals)], ylabel="bps"))
    hs = list(m["markouts_bps"].keys())
    charts.append(bar_chart("Markouts after fills (bps, + = cost) and reversion after end "
                            "(bps, + = price moved back)", hs,
                            [("markout", [_fl(v) for v in m["markouts_bps"].values()]),
                             ("reversion", [_fl(v) for v in m["reversion_bps"].values()])], ylabel="bps"))
    out.append('<div class="charts">' + "".join(charts) + "</div>")
    # venues
    vrows = [[v["venue"], v["fills"], v["filled_quantity"], v["fill_share"], v["passive_share"], v["fees"],
              v["orders"], v["fill_rate"], v["ioc_orders"], v["ioc_hit_ratio"],
              *(v["markouts_bps"].get(h) for h in hs), v["price_improvement_bps"]] for v in m["venues"]]
    out.append("<h3>Venues</h3>" + _table(
        ["venue", "fills", "filled qty", "fill share", "passive share", "fees", "orders", "fill rate",
         "IOC orders", "IOC hit ratio", *(f"markout {h}" for h in hs), "price impr. bps"],
        [[r[0], *(r[1:])] for r in vrows]).replace("<td>", "<td>"))
    ch = m["children"]
    out.append("<h3>Child orders</h3>" + _table(
        ["count", "total size", "min", "mean", "max", "fully filled", "ttf mean s", "ttf median s", "ttf max s",
         "cancel requests", "canceled/expired", "rejected"],
        [[str(ch["count"]), ch["size_total"], ch["size_min"], ch["size_mean"], ch["size_max"],
          str(ch["filled_count"]), ch["time_to_fill_s_mean"], ch["time_to_fill_s_median"],
          ch["time_to_fill_s_max"], str(ch["cancel_requests"]), str(ch["canceled"]), str(ch["rejected"])]]))
    if ch["orders"]:
        out.append("<details><summary>all child orders</summary>" + _table(
            ["client order id", "venue", "t (s)", "qty", "price", "type", "tif", "decision", "filled",
             "time to fill s", "cancels", "status"],
            [[c["client_order_id"], c["venue"], (c["submit_ts_ns"] - m["start_ts_ns"]) / 1e9, c["quantity"],
              c["price"], c["order_type"], c["time_in_force"], c["decision_id"], c["filled"], c["time_to_fill_s"],
              str(c["cancel_requests"]), c["status"]] for c in ch["orders"]]) + "</details>")
    decs = m["routing_decisions"]
    out.append(f"<h3>Routing decisions ({len(decs)})</h3>")
    if decs:
        out.append(_table(["decision", "t (s)", "strategy", "allocations", "excluded", "residual"], [
            [d["decision_id"], (d["ts_ns"] - m["start_ts_ns"]) / 1e9, d["strategy"],
             "; ".join(f"{x.get('venue')} {x.get('quantity')} @ {x.get('price')} {x.get('style', '')}"
                       for x in d["allocations"] if isinstance(x, dict)),
             "; ".join(f"{x['venue']}: {x['reason']}" for x in d["excluded"]),
             json.dumps(d["residual"]) if d["residual"] else ""] for d in decs[:500]]))
    else:
        out.append('<p class="note">no routing decisions recorded</p>')
    out.append("</section>")
    return "".join(out)


def render_html(analyses: Sequence[ParentAnalysis], title: str = "sorex TCA report") -> str:
    """A self-contained HTML document (opens offline: inline CSS, SVG and a tiny script)."""
    vcolor = _venue_colors(analyses)
    labels = [a.metrics["label"] for a in analyses]
    summary = _table(["metric", *labels], [
        [name, *(a.metrics[key] for a in analyses)] for name, key, _ in _SUMMARY_ROWS
    ] + [[f"markout {h} (bps)", *(a.metrics["markouts_bps"].get(h) for a in analyses)]
         for h in (analyses[0].metrics["markouts_bps"] if analyses else {})], 4, "summary",
        row_nd=[nd for _, _, nd in _SUMMARY_ROWS])
    cmp_keys = [("arrival", "arrival_slippage_bps"), ("IS", "is_bps"), ("VWAP", "vwap_slippage_bps"),
                ("TWAP", "twap_slippage_bps"), ("eff. spread", "effective_spread_bps")]
    compare = bar_chart("Side by side: slippage (bps, + = cost)", [c for c, _ in cmp_keys],
                        [(lab, [_fl(a.metrics[k]) for _, k in cmp_keys]) for lab, a in zip(labels, analyses,
                                                                                          strict=True)],
                        ylabel="bps", width=900)
    body = "".join(_parent_section(i, a, vcolor) for i, a in enumerate(analyses))
    script = ("<script>(function(){var n=document.querySelectorAll('svg.chart').length;"
              "var t=document.querySelectorAll('table').length;document.body.dataset.svgCount=String(n);"
              "document.body.dataset.tableCount=String(t);document.body.dataset.ok='1';})();</script>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f'<body><h1>{escape(title)}</h1><p class="note">Sign convention: {escape(SIGN_CONVENTION)}. '
            f'n/a = missing (no data), never zero.</p><h2>Summary</h2>{summary}{compare}{body}{script}'
            "</body></html>")


def write_html(analyses: Sequence[ParentAnalysis], path: str | Path, title: str = "sorex TCA report") -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(analyses, title), encoding="utf-8")
    return p
