"""``sorex route CONFIG.toml --side buy --qty 5 [--limit P] [--style take|post|mixed] [--urgency U] [--at T]
[--data FILE ...] [--json]``

Routes one order against the configured venues' books at one moment of recorded data (default:
the bundled dataset, :func:`marketdata.replay.default_dataset`) and prints each venue's factors
and the allocation. Nothing is sent anywhere.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from algos.params import format_ns
from marketdata.book import L2Book
from marketdata.clock import SimClock
from marketdata.errors import ConfigError
from marketdata.model import BookDeltas, Side
from marketdata.replay import Dataset, default_dataset, open_dataset
from router.config import STYLES, SorexConfig, load_config
from router.engine_config import MAX_DECIMAL, MAX_DECIMAL_TEXT, rekey
from router.routing import Router, RouteRequest, RoutingDecision
from router.scoring import CapacityProvider, StaticCapacity

__all__ = ["build_router_at", "parse_at", "register", "render_table"]

_OFFSET = re.compile(r"^\+(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
            "h": 3_600_000_000_000}
DEFAULT_OFFSET = "+60s"


def parse_at(text: str, start_ns: int, end_ns: int | None = None) -> int:
    """``--at``: ISO-8601 UTC (``2024-08-08T23:58:00Z``; a naive time is taken as UTC), integer
    ns since the epoch, or ``+<n><unit>`` from the data start (units ns, us, ms, s, m, h)."""
    t = text.strip()
    m = _OFFSET.match(t)
    if m:
        ns = start_ns + int(Decimal(m.group(1)) * _UNIT_NS[m.group(2)])
    elif t.isdigit():
        ns = int(t)
    else:
        try:
            dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"cannot parse time {text!r}", key="--at",
                              allowed="ISO-8601 UTC, integer ns, or +<n>{ns,us,ms,s,m,h} from the data start") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ns = int(Decimal(int(dt.timestamp())) * 1_000_000_000) + dt.microsecond * 1_000
    if ns < start_ns or (end_ns is not None and ns > end_ns):
        span = "" if end_ns is None else f" .. {format_ns(end_ns)} (+{(end_ns - start_ns) // 1_000_000_000}s)"
        try:
            shown = format_ns(ns)
        except (OverflowError, OSError, ValueError):   # beyond any calendar the platform can show
            shown = f"{ns} ns"
        raise ConfigError(f"time {text!r} ({shown}) is outside the data", key="--at",
                          allowed=f"{format_ns(start_ns)}{span}")
    return ns


def build_router_at(config: SorexConfig, dataset: Dataset, at_ns: int, *,
                    freeze_ns: Mapping[str, int] | None = None,
                    capacity: CapacityProvider | None = None) -> Router:
    """Replay ``dataset``'s books of the configured venues up to ``at_ns`` (exchange time) into a
    :class:`Router` on a :class:`SimClock` set to ``at_ns``. ``freeze_ns`` stops applying a
    venue's updates after the given time (a feed that stopped), for what-if checks."""
    symbol = config.routing.symbol
    instruments = {v: i for v, i in dataset.instruments.items() if v in config.venues and i.symbol == symbol}
    books = {v: L2Book(v, symbol, sequence_rule=dataset.sequence_rule(v)) for v in instruments}
    clock = SimClock(dataset.start_ns)
    if capacity is None and any(c.balances for c in config.venues.values()):
        capacity = StaticCapacity({v: c.balances for v, c in config.venues.items() if c.balances})
    router = Router(config.routing, config.venues, instruments, books, clock, capacity)
    freeze = dict(freeze_ns or {})
    if books:
        for ev in dataset.events(list(books)):
            if ev.ts_event > at_ns:
                break
            if type(ev) is BookDeltas:
                stop = freeze.get(ev.venue)
                if stop is not None and ev.ts_event > stop:
                    continue
                books[ev.venue].apply(ev)
                router.on_book(ev.venue)
    clock.advance_to(at_ns)
    return router


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


def render_table(decision: RoutingDecision) -> str:
    """Human-readable per-venue factor table plus allocations and residual."""
    # the columns of the style's own ranking: a post is ranked by its passive score at its posting
    # price and maker fee (not the take's fee-adjusted far touch); mixed shows both
    style = decision.request.style
    take_cols = ["taker_bps", "fee_adj_best", "haircut", "take_score_bps"] if style != "post" else []
    post_cols = ["maker_bps", "post_price", "queue_ahead", "post_score_bps"] if style != "take" else []
    cols = ["venue", "best", *take_cols, *post_cols, "delay_ms", "fill_p", "allocated", "status"]
    rows: list[list[str]] = []
    for v in decision.venues:
        f = v.factors
        price = f.get("price", {})
        lat = f.get("latency", {})
        fp = f.get("fill_probability", {})
        sc = f.get("score", {})
        pa = f.get("passive", {})
        take = [_fmt(price.get("taker_fee_bps")), _fmt(price.get("fee_adjusted_best")), _fmt(lat.get("haircut_top")),
                _fmt(sc.get("take_score_bps"))] if take_cols else []
        post = [_fmt(price.get("maker_fee_bps")), _fmt(pa.get("price")), _fmt(pa.get("queue_ahead")),
                _fmt(pa.get("score"))] if post_cols else []
        status = "excluded: " + v.excluded_reason if v.excluded_reason else "ok"
        rows.append([v.venue, _fmt(price.get("best")), *take, *post, _fmt(lat.get("delay_ms")), _fmt(fp.get("used")),
                     _fmt(f.get("allocated_quantity")), status])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    out = [f"decision {decision.decision_id} at {decision.ts_ns} ns, strategy {decision.strategy}, "
           f"{'buy' if decision.request.side is Side.BUY else 'sell'} {decision.request.quantity} "
           f"{decision.request.symbol} style {decision.request.style}"
           + (f" limit {decision.request.limit_price}" if decision.request.limit_price is not None else ""),
           "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append("allocations:")
    for a in decision.allocations:
        out.append(f"  {a.venue:<16} {a.style:<5} {a.quantity} @ {a.price} {a.order_type.value} "
                   f"{a.time_in_force.value}")
    if not decision.allocations:
        out.append("  (none)")
    if decision.residual_lots:
        out.append(f"residual: {decision.residual_quantity} ({decision.residual_reason})")
    if decision.explanation:
        out.append(f"explanation: {decision.explanation}")
    return "\n".join(out)


def _decimal_arg(text: str) -> Decimal:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number") from None
    if not d.is_finite() or d <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    if d > MAX_DECIMAL:
        raise argparse.ArgumentTypeError(f"{text!r} is too large (at most {MAX_DECIMAL_TEXT})")
    return d


def _urgency_arg(text: str) -> float:
    try:
        u = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= u <= 1.0:
        raise argparse.ArgumentTypeError(f"urgency {text} must be in [0, 1]")
    return u


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    dataset = open_dataset(args.data) if args.data else default_dataset()
    at_ns = parse_at(DEFAULT_OFFSET if args.at is None else args.at, dataset.start_ns, dataset.end_ns)
    symbol = config.routing.symbol
    if not any(i.symbol == symbol and v in config.venues for v, i in dataset.instruments.items()):
        have = sorted(f"{v} {i.symbol}" for v, i in dataset.instruments.items())
        raise ConfigError(f"no configured venue ({', '.join(config.venues)}) has {symbol} market data in "
                          f"{dataset.source}", file=config.path, key="routing.symbol",
                          allowed=", ".join(have) or "none")
    try:
        router = build_router_at(config, dataset, at_ns)
    except ConfigError as exc:
        raise (exc if exc.file else rekey(exc, config.path, exc.key)) from None
    lot = router.grid.lot_size
    if args.qty % lot:
        raise ConfigError(f"{args.qty} is not a multiple of the common lot {lot} of {symbol}", key="--qty",
                          allowed=f"multiples of {lot}")
    style = args.style or config.routing.default_style
    urgency = config.routing.default_urgency if args.urgency is None else args.urgency
    request = RouteRequest(config.routing.symbol, Side.parse(args.side), args.qty, args.limit, style, urgency)
    decision = router.route(request)
    if args.json:
        sys.stdout.write(json.dumps(decision.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(render_table(decision) + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sorex route``."""
    p = subparsers.add_parser(
        "route", help="route one order against recorded books and explain the decision (sends nothing)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="routing policy TOML (see examples/routing_*.toml)")
    p.add_argument("--side", required=True, choices=("buy", "sell"))
    p.add_argument("--qty", required=True, type=_decimal_arg, help="quantity in base units, e.g. 5")
    p.add_argument("--limit", type=_decimal_arg, default=None, help="limit price (raw, before fees)")
    p.add_argument("--style", choices=STYLES, default=None, help="default: routing.default_style")
    p.add_argument("--urgency", type=_urgency_arg, default=None, help="mixed split in [0,1]")
    p.add_argument("--at", default=None,
                   help="ISO-8601 (UTC when no zone is given), integer ns since the epoch, or "
                        f"+<n>{{ns,us,ms,s,m,h}} from the data start; within the data (default {DEFAULT_OFFSET})")
    p.add_argument("--data", nargs="+", default=None, help="market data files (default: bundled dataset)")
    p.add_argument("--json", action="store_true", help="machine-readable decision (journal payload)")
    p.set_defaults(func=_run)
