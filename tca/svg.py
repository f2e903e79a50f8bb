"""Tiny inline-SVG chart builders for the offline TCA report (no external assets)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


@dataclass
class Line:
    """One polyline of a line chart."""

    name: str
    points: Sequence[tuple[float, float]]
    color: str
    dashed: bool = False
    step: bool = False


@dataclass
class Marker:
    """One point marker (a circle) with a hover title."""

    x: float
    y: float
    color: str
    title: str
    r: float = 4.0


@dataclass
class Axes:
    width: int = 720
    height: int = 260
    left: int = 70
    right: int = 20
    top: int = 30
    bottom: int = 40
    parts: list[str] = field(default_factory=list)


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.ceil(lo / step) * step
    out: list[float] = []
    v = first
    while v <= hi + 1e-12 * abs(hi) and len(out) < 20:
        out.append(round(v, 10))
        v += step
    return out


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def line_chart(title: str, lines: Sequence[Line], markers: Sequence[Marker] = (), *, xlabel: str = "",
               ylabel: str = "", vlines: Sequence[tuple[float, str]] = (), width: int = 720,
               height: int = 260, legend: Sequence[tuple[str, str]] | None = None) -> str:
    """An SVG line chart; empty data renders a chart with a 'no data' note."""
    ax = Axes(width=width, height=height)
    xs = [p[0] for ln in lines for p in ln.points] + [m.x for m in markers] + [v[0] for v in vlines]
    ys = [p[1] for ln in lines for p in ln.points] + [m.y for m in markers]
    return _frame(title, ax, xs, ys, xlabel, ylabel, lambda sx, sy: _draw_lines(lines, markers, vlines, sx, sy, ax),
                  legend if legend is not None else [(ln.name, ln.color) for ln in lines])


def _draw_lines(lines: Sequence[Line], markers: Sequence[Marker], vlines: Sequence[tuple[float, str]],
                sx: _Scale, sy: _Scale, ax: Axes) -> list[str]:
    out = []
    for x, label in vlines:
        X = sx(x)
        out.append(f'<line x1="{X:.1f}" y1="{ax.top}" x2="{X:.1f}" y2="{ax.height - ax.bottom}" '
                   f'stroke="#888" stroke-dasharray="3,3"/>'
                   f'<text x="{X:.1f}" y="{ax.top - 2}" text-anchor="middle" font-size="10" fill="#555">'
                   f'{escape(label)}</text>')
    for ln in lines:
        if not ln.points:
            continue
        pts = []
        prev_y = None
        for x, y in ln.points:
            if ln.step and prev_y is not None:
                pts.append(f"{sx(x):.1f},{sy(prev_y):.1f}")
            pts.append(f"{sx(x):.1f},{sy(y):.1f}")
            prev_y = y
        dash = ' stroke-dasharray="6,4"' if ln.dashed else ""
        out.append(f'<polyline fill="none" stroke="{ln.color}" stroke-width="1.5"{dash} '
                   f'points="{" ".join(pts)}"><title>{escape(ln.name)}</title></polyline>')
    for mk in markers:
        out.append(f'<circle cx="{sx(mk.x):.1f}" cy="{sy(mk.y):.1f}" r="{mk.r:.1f}" fill="{mk.color}" '
                   f'fill-opacity="0.8" stroke="#000" stroke-width="0.5"><title>{escape(mk.title)}</title></circle>')
    return out


class _Scale:
    def __init__(self, lo: float, hi: float, a: float, b: float) -> None:
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        self.lo, self.hi, self.a, self.b = lo, hi, a, b

    def __call__(self, v: float) -> float:
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)


def _frame(title: str, ax: Axes, xs: list[float], ys: list[float], xlabel: str, ylabel: str,
           body: object, legend: Sequence[tuple[str, str]], xticks: bool = True) -> str:
    w, h = ax.width, ax.height
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(title)}">'
            f'<rect width="{w}" height="{h}" fill="#fff"/>'
            f'<text x="{w / 2:.0f}" y="14" text-anchor="middle" font-size="13" font-weight="bold">'
            f'{escape(title)}</text>')
    if not xs or not ys:
        return head + (f'<text x="{w / 2:.0f}" y="{h / 2:.0f}" text-anchor="middle" fill="#888">'
                       'no data</text></svg>')
    xlo, xhi = min(xs), max(xs)
    ylo, yhi = min(ys), max(ys)
    if yhi == ylo:
        ylo, yhi = ylo - max(abs(ylo) * 1e-4, 1), yhi + max(abs(yhi) * 1e-4, 1)
    pad = (yhi - ylo) * 0.05
    ylo, yhi = ylo - pad, yhi + pad
    sx = _Scale(xlo, xhi, ax.left, w - ax.right)
    sy = _Scale(ylo, yhi, h - ax.bottom, ax.top)
    parts = [head]
    for t in _nice_ticks(ylo, yhi):
        Y = sy(t)
        parts.append(f'<line x1="{ax.left}" y1="{Y:.1f}" x2="{w - ax.right}" y2="{Y:.1f}" stroke="#eee"/>'
                     f'<text x="{ax.left - 4}" y="{Y + 3:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>')
    for t in (_nice_ticks(sx.lo, sx.hi, 8) if xticks else []):
        X = sx(t)
        parts.append(f'<line x1="{X:.1f}" y1="{h - ax.bottom}" x2="{X:.1f}" y2="{h - ax.bottom + 4}" '
                     f'stroke="#333"/><text x="{X:.1f}" y="{h - ax.bottom + 15}" text-anchor="middle" '
                     f'font-size="10">{_fmt(t)}</text>')
    parts.append(f'<rect x="{ax.left}" y="{ax.top}" width="{w - ax.left - ax.right}" '
                 f'height="{h - ax.top - ax.bottom}" fill="none" stroke="#333"/>')
    if ylo < 0 < yhi:
        parts.append(f'<line x1="{ax.left}" y1="{sy(0):.1f}" x2="{w - ax.right}" y2="{sy(0):.1f}" stroke="#999"/>')
    parts.extend(body(sx, sy))  # type: ignore[operator]
    parts.append(f'<text x="{(ax.left + w - ax.right) / 2:.0f}" y="{h - 5}" text-anchor="middle" '
                 f'font-size="11">{escape(xlabel)}</text>')
    parts.append(f'<text x="12" y="{(ax.top + h - ax.bottom) / 2:.0f}" text-anchor="middle" font-size="11" '
                 f'transform="rotate(-90 12 {(ax.top + h - ax.bottom) / 2:.0f})">{escape(ylabel)}</text>')
    lx = ax.left + 8
    for name, color in legend:
        parts.append(f'<rect x="{lx}" y="{ax.top + 6}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{lx + 14}" y="{ax.top + 15}" font-size="10">{escape(name)}</text>')
        lx += 26 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, categories: Sequence[str], groups: Sequence[tuple[str, Sequence[float | None]]],
              *, ylabel: str = "", width: int = 720, height: int = 260) -> str:
    """Grouped vertical bars; ``None`` values are drawn as 'n/a' (missing, not zero)."""
    ax = Axes(width=width, height=height)
    vals = [v for _, g in groups for v in g if v is not None]
    ys = [*vals, 0.0] if vals else []
    n_cat = max(len(categories), 1)
    xs = [0.0, float(n_cat)]
    colors = {name: PALETTE[i % len(PALETTE)] for i, (name, _) in enumerate(groups)}

    def body(sx: _Scale, sy: _Scale) -> list[str]:
        out = []
        slot = (sx(1) - sx(0))
        bw = slot * 0.8 / max(len(groups), 1)
        for ci, cat in enumerate(categories):
            x0 = sx(ci) + slot * 0.1
            out.append(f'<text x="{sx(ci) + slot / 2:.1f}" y="{ax.height - ax.bottom + 28}" '
                       f'text-anchor="middle" font-size="10">{escape(cat)}</text>')
            for gi, (name, g) in enumerate(groups):
                v = g[ci] if ci < len(g) else None
                X = x0 + gi * bw
                if v is None:
                    out.append(f'<text x="{X + bw / 2:.1f}" y="{sy(0) - 3:.1f}" text-anchor="middle" '
                               f'font-size="9" fill="#888">n/a</text>')
                    continue
                y0, y1 = sy(0), sy(v)
                out.append(f'<rect x="{X:.1f}" y="{min(y0, y1):.1f}" width="{bw * 0.95:.1f}" '
                           f'height="{abs(y1 - y0):.1f}" fill="{colors[name]}">'
                           f'<title>{escape(name)} {escape(cat)}: {v:.4f}</title></rect>')
        return out

    return _frame(title, ax, xs, ys, "", ylabel, body, [(n, colors[n]) for n, _ in groups], xticks=False)
