"""Transaction-cost metrics of one parent order, from its fills and the market around it.

One sign convention everywhere (docs/tca.md gives every formula)::

    cost_bps = side * (price - benchmark) / benchmark * 1e4      side = +1 buy, -1 sell

positive = cost. Money is exact :class:`~decimal.Decimal`; ratios are exact
:class:`~fractions.Fraction` so that the identities (Perold total == Wagner total,
effective = realized + impact) hold exactly, not to rounding. A metric that needs market data
that is not there is ``None`` (missing), never zero.
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, Inexact, localcontext
from fractions import Fraction
from typing import Any

from tca.model import Execution, MarketSeries

__all__ = [
    "DEFAULT_HORIZON_S",
    "MARKOUT_HORIZONS_S",
    "SIGN_CONVENTION",
    "ISResult",
    "ParentAnalysis",
    "analyze",
    "cost_bps",
    "implementation_shortfall",
]

SIGN_CONVENTION = ("cost_bps = side * (price - benchmark) / benchmark * 1e4, side = +1 buy / -1 sell; "
                   "positive = cost")
MARKOUT_HORIZONS_S: tuple[int, ...] = (1, 5, 30, 60)
DEFAULT_HORIZON_S = 5
"""Horizon of the realized spread / price impact split."""
NS = 1_000_000_000
BP = Fraction(10_000)


def F(x: Decimal | int | Fraction) -> Fraction:
    """Exact Fraction of a Decimal/int."""
    return x if isinstance(x, Fraction) else Fraction(x)


def cost_bps(side: int, price: Decimal | Fraction, benchmark: Decimal | Fraction) -> Fraction:
    """``side * (price - benchmark) / benchmark * 1e4``, exact. Positive = cost."""
    b = F(benchmark)
    return side * (F(price) - b) / b * BP


# ====================================================================== implementation shortfall
@dataclass(frozen=True, slots=True)
class ISResult:
    """Implementation shortfall in quote currency (Decimal, exact) and in bps of the paper
    portfolio ``S * decision_price`` (Fraction, exact). ``opportunity`` is ``None`` when part of
    the order is unfilled and no end (cancel) price is known; then the totals are ``None`` too."""

    paper_value: Decimal
    execution: Decimal  # Perold: side * (sum p_j s_j - s * Pd)
    delay: Decimal | None  # Wagner: side * s * (P0 - Pd)
    trading: Decimal | None  # Wagner: side * (sum p_j s_j - s * P0)
    opportunity: Decimal | None  # side * (S - s) * (Pn - Pd)
    fees: Decimal
    perold_total: Decimal | None
    wagner_total: Decimal | None

    def bps(self, amount: Decimal | None) -> Fraction | None:
        return None if amount is None else F(amount) / F(self.paper_value) * BP

    @property
    def total(self) -> Decimal | None:
        return self.perold_total

    def to_dict(self) -> dict[str, Any]:
        perold = {"execution": self.execution, "opportunity": self.opportunity, "fees": self.fees,
                  "total": self.perold_total}
        wagner = {"delay": self.delay, "trading": self.trading, "opportunity": self.opportunity,
                  "fees": self.fees, "total": self.wagner_total}
        return {
            "paper_value": self.paper_value, "total": self.perold_total,
            "total_bps": self.bps(self.perold_total),
            "perold": perold, "perold_bps": {k: self.bps(v) for k, v in perold.items()},
            "wagner": wagner, "wagner_bps": {k: self.bps(v) for k, v in wagner.items()},
        }


def implementation_shortfall(side: int, intended_quantity: Decimal, decision_price: Decimal,
                             arrival_price: Decimal | None, end_price: Decimal | None,
                             fills: Sequence[tuple[Decimal, Decimal]], fees: Decimal) -> ISResult:
    """Implementation shortfall of one order of ``intended_quantity`` (S) decided at
    ``decision_price`` (Pd), arriving at ``arrival_price`` (P0), ending (cancelled/expired) at
    ``end_price`` (Pn), filled in ``fills`` = [(price p_j, quantity s_j)], with ``fees`` paid.

    Perold (1988): execution + opportunity + fees. Wagner / Kissell: delay + trading +
    opportunity + fees, with delay = side*s*(P0-Pd) on the executed quantity s and opportunity
    valued from the decision price: side*(S-s)*(Pn-Pd). The two totals are equal by algebra and,
    with Decimal arithmetic on decimal inputs, exactly (computed with 60 significant digits)."""
    with localcontext() as ctx:
        ctx.prec = 60
        return _is(side, intended_quantity, decision_price, arrival_price, end_price, fills, fees)


def _is(side: int, intended_quantity: Decimal, decision_price: Decimal, arrival_price: Decimal | None,
        end_price: Decimal | None, fills: Sequence[tuple[Decimal, Decimal]], fees: Decimal) -> ISResult:
    s = sum((q for _, q in fills), Decimal(0))
    notional = sum((p * q for p, q in fills), Decimal(0))
    unfilled = intended_quantity - s
    execution = side * (notional - s * decision_price)
    if unfilled == 0:
        opportunity: Decimal | None = Decimal(0)
    elif end_price is None:
        opportunity = None
    else:
        opportunity = side * unfilled * (end_price - decision_price)
    delay = trading = None
    if arrival_price is not None:
        delay = side * s * (arrival_price - decision_price)
        trading = side * (notional - s * arrival_price)
    perold = None if opportunity is None else execution + opportunity + fees
    wagner = None if (opportunity is None or delay is None or trading is None) else (
        delay + trading + opportunity + fees)
    return ISResult(paper_value=intended_quantity * decision_price, execution=execution, delay=delay,
                    trading=trading, opportunity=opportunity, fees=fees, perold_total=perold,
                    wagner_total=wagner)


# ====================================================================== market helpers
def _vwap(market: MarketSeries, start: int, end: int, own: set[tuple[str, str]]
          ) -> tuple[Fraction | None, Decimal]:
    notional = Decimal(0)
    volume = Decimal(0)
    for i in market.trades_between(start, end):
        if (market.trade_venue[i], market.trade_id[i]) in own:
            continue
        notional += market.trade_px[i] * market.trade_qty[i]
        volume += market.trade_qty[i]
    return (F(notional) / F(volume) if volume else None), volume


def _twap(market: MarketSeries, start: int, end: int) -> Fraction | None:
    """Time-weighted consolidated mid over [start, end] (step function, value as of start)."""
    m0 = market.mid_at(start)
    if m0 is None or market.mid_at(end) is None:
        return None
    if end <= start:
        return F(m0)
    i = bisect_right(market.mid_ts, start)
    t_prev, m_prev = start, m0
    with localcontext() as ctx:  # exact: decimal x integer sums, Inexact trapped
        ctx.prec = 120
        ctx.traps[Inexact] = True
        acc = Decimal(0)
        ts, px = market.mid_ts, market.mid_px
        while i < len(ts) and ts[i] <= end:
            acc += m_prev * (ts[i] - t_prev)
            t_prev, m_prev = ts[i], px[i]
            i += 1
        acc += m_prev * (end - t_prev)
    return Fraction(acc) / (end - start)


Term = tuple[Decimal, Decimal, Decimal]
"""(numerator, denominator, weight) of one weighted ratio term: value = numerator / denominator."""


def _wavg(terms: Sequence[Term]) -> Fraction | None:
    """Exact weighted average in bps: sum(w * num / den) / sum(w) * 1e4. Terms are grouped by
    denominator (Decimal sums, exact: Inexact is trapped) so that only one Fraction per distinct
    benchmark is formed; O(n) Decimal work plus O(distinct benchmarks) Fraction work."""
    if not terms:
        return None
    with localcontext() as ctx:
        ctx.prec = 120
        ctx.traps[Inexact] = True
        by_den: dict[Decimal, Decimal] = {}
        total_w = Decimal(0)
        for num, den, w in terms:
            by_den[den] = by_den.get(den, Decimal(0)) + num * w
            total_w += w
    if total_w == 0:
        return None
    acc = sum((Fraction(v) / Fraction(d) for d, v in by_den.items()), Fraction(0))
    return acc / Fraction(total_w) * BP


def _term_bps(t: Term | None) -> Fraction | None:
    return None if t is None else Fraction(t[0]) / Fraction(t[1]) * BP


# ====================================================================== analysis
@dataclass(slots=True)
class ParentAnalysis:
    """Metrics (``metrics``: JSON-shaped dict of Decimal/Fraction/None) and chart series."""

    execution: Execution
    metrics: dict[str, Any]
    series: dict[str, Any] = field(default_factory=dict)


def analyze(execution: Execution, market: MarketSeries | None = None, *,
            horizon_s: int = DEFAULT_HORIZON_S,
            markout_horizons_s: Sequence[int] = MARKOUT_HORIZONS_S) -> ParentAnalysis:
    """All metrics of one parent order. ``market`` is the series of the parent's symbol or
    ``None``; metrics needing it are then ``None``. Formulas: docs/tca.md."""
    with localcontext() as ctx:  # money sums (notional, fees) exact, not rounded to 28 digits
        ctx.prec = 120
        return _analyze(execution, market, horizon_s, markout_horizons_s)


def _analyze(execution: Execution, market: MarketSeries | None, horizon_s: int,
             markout_horizons_s: Sequence[int]) -> ParentAnalysis:
    par = execution.parent
    if not par.quantity > 0:   # the loaders refuse it with the file and line; the Python API here
        raise ValueError(f"parent {par.parent_id}: quantity {par.quantity} must be positive")
    for name in ("decision_price", "arrival_price", "end_price", "limit_price"):
        given = getattr(par, name)
        if given is not None and not given > 0:
            raise ValueError(f"parent {par.parent_id}: {name} {given} must be positive")
    side = int(par.side)
    fills = execution.fills
    warnings: list[str] = list(execution.warnings)
    mkt = market if (market is not None and (market.has_quotes or market.trade_ts)) else None
    if market is None:
        warnings.append("no market data: market-based metrics are missing")

    def mid(ts: int) -> Decimal | None:
        return mkt.mid_at(ts) if mkt is not None else None

    start = par.start_ts_ns
    end = par.end_ts_ns if par.end_ts_ns is not None else start
    filled = sum((f.quantity for f in fills), Decimal(0))
    notional = sum((f.price * f.quantity for f in fills), Decimal(0))
    avg_px = F(notional) / F(filled) if filled else None
    fees = Decimal(0)
    unconverted: list[str] = []
    for f in fills:
        if f.fee_quote is None:
            unconverted.append(f"{f.fee} {f.fee_currency}")
        else:
            fees += f.fee_quote
    if unconverted:
        warnings.append("fees not in quote/base currency left out of IS: " + ", ".join(unconverted))

    arrival = par.arrival_price if par.arrival_price is not None else mid(start)
    decision = par.decision_price if par.decision_price is not None else mid(par.decision_ts_ns)
    if decision is None:
        decision = arrival
    end_price = par.end_price if par.end_price is not None else mid(end)

    m: dict[str, Any] = {
        "parent_id": par.parent_id, "label": execution.label, "source": execution.source,
        "run_id": execution.run_id, "symbol": par.symbol, "side": "buy" if side > 0 else "sell",
        "algo": par.algo, "params": par.params, "status": par.status,
        "quantity": par.quantity, "filled_quantity": filled, "unfilled_quantity": par.quantity - filled,
        "average_price": avg_px, "decision_price": decision, "arrival_price": arrival,
        "end_price": end_price, "decision_ts_ns": par.decision_ts_ns, "start_ts_ns": start,
        "end_ts_ns": end, "fees": fees,
    }
    m["arrival_slippage_bps"] = cost_bps(side, avg_px, arrival) if (avg_px is not None and arrival) else None

    if decision is not None:
        isr = implementation_shortfall(side, par.quantity, decision, arrival, end_price,
                                       [(f.price, f.quantity) for f in fills], fees)
        m["is"] = isr.to_dict()
        m["is_bps"] = isr.bps(isr.perold_total)
    else:  # no decision/arrival price: same shape, every value missing
        m["is"] = {"paper_value": None, "total": None, "total_bps": None,
                   "perold": dict.fromkeys(("execution", "opportunity", "fees", "total")),
                   "perold_bps": dict.fromkeys(("execution", "opportunity", "fees", "total")),
                   "wagner": dict.fromkeys(("delay", "trading", "opportunity", "fees", "total")),
                   "wagner_bps": dict.fromkeys(("delay", "trading", "opportunity", "fees", "total"))}
        m["is_bps"] = None

    # ---------------- interval benchmarks
    own = {(f.venue, f.trade_id) for f in fills if f.trade_id}
    covered = mkt is not None and mkt.covers(start, end)
    if mkt is not None and not covered:
        warnings.append("market data does not cover the parent's interval: VWAP/TWAP/participation missing")
    vwap = twap = None
    market_volume: Decimal | None = None
    if covered and mkt is not None:
        vwap, market_volume = _vwap(mkt, start, end, own)
        twap = _twap(mkt, start, end)
    m["vwap"] = vwap
    m["twap"] = twap
    m["vwap_slippage_bps"] = cost_bps(side, avg_px, vwap) if (avg_px is not None and vwap) else None
    m["twap_slippage_bps"] = cost_bps(side, avg_px, twap) if (avg_px is not None and twap) else None
    m["market_volume"] = market_volume
    m["participation"] = (F(filled) / F(market_volume + filled)
                          if market_volume is not None and (market_volume + filled) > 0 else None)
    m["fill_rate"] = F(filled) / F(par.quantity)
    m["completion_time_s"] = Fraction(max(f.ts_ns for f in fills) - start, NS) if fills else None
    m["duration_s"] = Fraction(end - start, NS)

    # ---------------- per-fill spreads and markouts
    h_ns = horizon_s * NS
    eff: list[Term] = []
    real: list[Term] = []
    imp: list[Term] = []
    marks: dict[int, list[Term]] = {h: [] for h in markout_horizons_s}
    fill_marks: list[dict[int, Term | None]] = []
    for f in fills:
        m0 = mid(f.ts_ns)
        mh = mid(f.ts_ns + h_ns)
        if m0 is not None and mh is not None:
            # the full (not half) spreads of SEC Rule 605 / Kissell: 2 x the distance to the mid
            eff.append((2 * side * (f.price - m0), m0, f.quantity))
            real.append((2 * side * (f.price - mh), m0, f.quantity))
            imp.append((2 * side * (mh - m0), m0, f.quantity))
        fm: dict[int, Term | None] = {}
        for h in markout_horizons_s:
            mm = mid(f.ts_ns + h * NS)
            fm[h] = (side * (f.price - mm), mm, f.quantity) if mm is not None else None
            if mm is not None:
                marks[h].append((side * (f.price - mm), mm, f.quantity))
        fill_marks.append(fm)
    m["horizon_s"] = horizon_s
    # a fill-weighted average is only reported when every fill has its market value: an average
    # over the fills that happen to have data would be biased, so it is missing instead
    complete = len(eff) == len(fills)
    m["effective_spread_bps"] = _wavg(eff) if complete else None
    m["realized_spread_bps"] = _wavg(real) if complete else None
    m["price_impact_bps"] = _wavg(imp) if complete else None
    m["markouts_bps"] = {f"{h}s": _wavg(marks[h]) if len(marks[h]) == len(fills) else None
                         for h in markout_horizons_s}
    m_end = mid(end)
    rev: dict[str, Fraction | None] = {}
    for h in markout_horizons_s:
        mh = mid(end + h * NS)
        rev[f"{h}s"] = (side * (F(m_end) - F(mh)) / F(m_end) * BP) if (m_end and mh) else None
    m["reversion_bps"] = rev

    m["venues"] = _venues(execution, mkt, side, filled, fill_marks, markout_horizons_s)
    m["children"] = _children(execution)
    m["routing_decisions"] = [_decision_summary(d.payload, d.ts_ns) for d in execution.decisions]
    m["fills"] = [{"ts_ns": f.ts_ns, "venue": f.venue, "price": f.price, "quantity": f.quantity,
                   "fee": f.fee, "fee_currency": f.fee_currency, "fee_quote": f.fee_quote,
                   "liquidity": f.liquidity, "client_order_id": f.client_order_id,
                   "trade_id": f.trade_id,
                   "markouts_bps": {f"{h}s": _term_bps(fm[h]) for h in markout_horizons_s}}
                  for f, fm in zip(fills, fill_marks, strict=True)]
    m["warnings"] = warnings
    return ParentAnalysis(execution=execution, metrics=m,
                          series=_series(execution, mkt, start, end, filled))


def _venues(ex: Execution, mkt: MarketSeries | None, side: int, filled: Decimal,
            fill_marks: list[dict[int, Term | None]], horizons: Sequence[int]) -> list[dict[str, Any]]:
    names = sorted({f.venue for f in ex.fills} | {c.venue for c in ex.children})
    rows = []
    for v in names:
        vf = [(f, fm) for f, fm in zip(ex.fills, fill_marks, strict=True) if f.venue == v]
        vq = sum((f.quantity for f, _ in vf), Decimal(0))
        known_liq = [f for f, _ in vf if f.liquidity in ("maker", "taker")]
        maker_q = sum((f.quantity for f in known_liq if f.liquidity == "maker"), Decimal(0))
        known_q = sum((f.quantity for f in known_liq), Decimal(0))
        kids = [c for c in ex.children if c.venue == v]
        sent = sum((c.quantity for c in kids), Decimal(0))
        kid_filled = sum((c.filled for c in kids), Decimal(0))
        ioc = [c for c in kids if (c.time_in_force or "").upper() in ("IOC", "FOK")]
        pi: list[Term] = []
        if mkt is not None:
            for f, _ in vf:
                touch = mkt.touch_at(v, f.ts_ns)
                if touch is not None:
                    far = touch[1] if side > 0 else touch[0]
                    pi.append((-side * (f.price - far), far, f.quantity))
        notional = sum((f.price * f.quantity for f, _ in vf), Decimal(0))
        rows.append({
            "venue": v, "fills": len(vf), "filled_quantity": vq,
            "average_price": F(notional) / F(vq) if vq else None,
            "fill_share": F(vq) / F(filled) if filled else None,
            "passive_share": F(maker_q) / F(known_q) if known_q else None,
            "fees": sum((f.fee_quote for f, _ in vf if f.fee_quote is not None), Decimal(0)),
            "orders": len(kids), "sent_quantity": sent,
            "fill_rate": F(kid_filled) / F(sent) if sent else None,
            "ioc_orders": len(ioc),
            "ioc_hit_ratio": Fraction(sum(1 for c in ioc if c.filled > 0), len(ioc)) if ioc else None,
            "markouts_bps": {f"{h}s": (_wavg([t for _, fm in vf if (t := fm[h]) is not None])
                                       if all(fm[h] is not None for _, fm in vf) else None)
                             for h in horizons},
            "price_improvement_bps": _wavg(pi) if len(pi) == len(vf) else None,
        })
    return rows


def _children(ex: Execution) -> dict[str, Any]:
    kids = sorted(ex.children, key=lambda c: c.submit_ts_ns)
    sizes = [c.quantity for c in kids]
    ttf = [Fraction(c.last_fill_ts_ns - c.submit_ts_ns, NS) for c in kids
           if c.last_fill_ts_ns is not None and c.filled >= c.quantity]
    return {
        "count": len(kids),
        "size_total": sum(sizes, Decimal(0)),
        "size_min": min(sizes) if sizes else None,
        "size_max": max(sizes) if sizes else None,
        "size_mean": F(sum(sizes, Decimal(0))) / len(sizes) if sizes else None,
        "filled_count": sum(1 for c in kids if c.filled >= c.quantity > 0),
        "time_to_fill_s_mean": sum(ttf, Fraction(0)) / len(ttf) if ttf else None,
        "time_to_fill_s_median": statistics.median(ttf) if ttf else None,
        "time_to_fill_s_max": max(ttf) if ttf else None,
        "cancel_requests": sum(c.cancel_requests for c in kids),
        "canceled": sum(1 for c in kids if c.final_status in ("canceled", "expired")),
        "rejected": sum(1 for c in kids if c.final_status == "rejected"),
        "orders": [{"client_order_id": c.client_order_id, "venue": c.venue, "submit_ts_ns": c.submit_ts_ns,
                    "quantity": c.quantity, "price": c.price, "order_type": c.order_type,
                    "time_in_force": c.time_in_force, "decision_id": c.decision_id, "filled": c.filled,
                    "time_to_fill_s": (Fraction(c.last_fill_ts_ns - c.submit_ts_ns, NS)
                                       if c.last_fill_ts_ns is not None else None),
                    "cancel_requests": c.cancel_requests, "status": c.final_status,
                    "reject_reason": c.reject_reason} for c in kids],
    }


def _decision_summary(payload: dict[str, Any], ts_ns: int) -> dict[str, Any]:
    venues = payload.get("venues") or []
    return {
        "decision_id": payload.get("decision_id"), "ts_ns": ts_ns, "strategy": payload.get("strategy"),
        "request": payload.get("request"),
        "allocations": payload.get("allocations") or [],
        "excluded": [{"venue": v.get("venue"), "reason": v.get("excluded_reason")}
                     for v in venues if isinstance(v, dict) and v.get("excluded_reason")],
        "residual": payload.get("residual"),
    }


def _series(ex: Execution, mkt: MarketSeries | None, start: int, end: int, filled: Decimal
            ) -> dict[str, Any]:
    """Chart data (floats are fine here: pictures, not numbers anyone checks)."""
    t0 = start
    t1 = max(end, start + NS)
    pad = max((t1 - t0) // 10, NS)
    lo, hi = t0 - pad, t1 + pad
    mids: list[tuple[float, float]] = []
    if mkt is not None and mkt.has_quotes:
        i0 = bisect_right(mkt.mid_ts, lo)
        i1 = bisect_right(mkt.mid_ts, hi)
        step = max(1, (i1 - i0) // 800)
        for i in range(max(i0 - 1, 0), i1, step):
            mids.append(((max(mkt.mid_ts[i], lo) - t0) / NS, float(mkt.mid_px[i])))
        last = mkt.mid_at(hi)
        if mids and last is not None:
            mids.append(((hi - t0) / NS, float(last)))
    fills = [((f.ts_ns - t0) / NS, float(f.price), f.venue, float(f.quantity)) for f in ex.fills]
    cum_fill: list[tuple[float, float]] = [(0.0, 0.0)]
    acc = Decimal(0)
    for f in ex.fills:
        acc += f.quantity
        cum_fill.append(((f.ts_ns - t0) / NS, float(acc)))
    cum_sent: list[tuple[float, float]] = [(0.0, 0.0)]
    acc = Decimal(0)
    for c in sorted(ex.children, key=lambda c: c.submit_ts_ns):
        acc += c.quantity
        cum_sent.append(((c.submit_ts_ns - t0) / NS, float(acc)))
    q = float(ex.parent.quantity)
    schedule = [(0.0, 0.0), ((t1 - t0) / NS, q)]
    buckets: list[tuple[float, float | None]] = []
    if mkt is not None and mkt.covers(start, t1):
        n = 20
        width = (t1 - t0) / n
        for b in range(n):
            b0 = t0 + int(b * width)
            b1 = t0 + int((b + 1) * width)
            own_ids = {(f.venue, f.trade_id) for f in ex.fills if f.trade_id}
            mv = sum((mkt.trade_qty[i] for i in mkt.trades_between(b0, b1 - 1)
                      if (mkt.trade_venue[i], mkt.trade_id[i]) not in own_ids), Decimal(0))
            ours = sum((f.quantity for f in ex.fills if b0 <= f.ts_ns < b1), Decimal(0))
            tot = mv + ours
            buckets.append(((b0 - t0) / NS, float(ours / tot) if tot else None))
        if buckets and buckets[-1][1] is not None:
            buckets.append(((t1 - t0) / NS, buckets[-1][1]))
    return {"mid": mids, "fills": fills, "cum_fill": cum_fill, "cum_sent": cum_sent, "schedule": schedule,
            "participation": buckets, "span_s": ((lo - t0) / NS, (hi - t0) / NS), "quantity": q}
