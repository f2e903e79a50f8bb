"""Inputs of TCA: the sorex journal (SQLite, schema in docs/contracts.md), a fills CSV for executions
done elsewhere (format in docs/tca.md), and market data (``marketdata.replay`` datasets, or raw
Binance captures read by a small built-in reader when the replay module is not available).

Every error names the file and, where there is one, the line (CSV) or journal ``seq``.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import json
import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import IO, Any

from marketdata.errors import DataError
from marketdata.model import Side
from tca.model import ChildOrder, Execution, FillRecord, MarketSeries, ParentOrder, RoutingDecisionRecord

log = logging.getLogger(__name__)

__all__ = [
    "FILLS_CSV_COLUMNS",
    "load_fills_csv",
    "load_journal",
    "load_market",
    "read_binance_capture",
]


# ====================================================================== helpers
def _dec(value: Any, what: str, where: str) -> Decimal:
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise DataError(f"{what}: {value!r} is not a decimal number", source=where) from None
    if not d.is_finite():
        raise DataError(f"{what}: {value!r} is not a finite number", source=where)
    return d


def _opt_dec(value: Any, what: str, where: str) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return _dec(value, what, where)


def _split_symbol(symbol: str) -> tuple[str, str]:
    for sep in ("-", "/", "_"):
        if sep in symbol:
            base, _, quote = symbol.partition(sep)
            return base.upper(), quote.upper()
    return symbol.upper(), ""


def fee_in_quote(fee: Decimal, fee_currency: str, symbol: str, price: Decimal) -> Decimal | None:
    """A fee converted to the quote currency of ``symbol``: quote-currency fees as they are,
    base-currency fees times the fill price; other currencies cannot be converted (``None``)."""
    base, quote = _split_symbol(symbol)
    cur = (fee_currency or "").upper()
    if not cur or cur == quote or (quote == "USDT" and cur == "USD"):
        return fee
    if cur == base:
        with localcontext() as ctx:  # exact, not rounded to the default 28 digits
            ctx.prec = 120
            return fee * price
    return None


# ====================================================================== journal
_JOURNAL_KINDS = ("run_started", "parent_submitted", "parent_finished", "routing_decision",
                  "order_command", "order_event", "fill")


def load_journal(path: str | Path) -> list[Execution]:
    """Read a sorex journal (SQLite ``events`` table of docs/contracts.md) into one
    :class:`Execution` per parent order, in order of submission.

    Fills are tied to a parent by their ``parent_id`` (payload, else row), else through the
    ``order_command`` that submitted their ``client_order_id``. Child orders come from
    ``order_command`` submits; cancels/replaces and ``order_event`` states update them.

    A journal may hold several runs (each ``run_started`` begins one, e.g. a restarted live run
    with ``[engine] journal``): parents, child orders, fills and decisions belong to the run whose
    rows they follow, so the same parent id in two runs gives two executions, each with its own
    run id. Fill rows marked ``"shadow": true`` (never sent) are not executions: they are left
    out and named in the parent's warnings."""
    p = Path(path)
    src = str(p)
    if not p.is_file():
        raise DataError("journal file not found", source=src)
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(f"cannot open journal: {exc}", source=src) from None
    try:
        try:
            rows = con.execute(
                "SELECT seq, ts_ns, kind, venue, client_order_id, parent_id, payload FROM events "
                "ORDER BY seq").fetchall()
        except sqlite3.DatabaseError as exc:
            raise DataError(f"not a sorex journal (events table unreadable: {exc})", source=src) from None
    finally:
        con.close()

    runs = [_Run()]   # rows before any run_started belong to an anonymous first run
    order: list[tuple[int, str]] = []   # (run index, parent id) in order of submission
    pending_fills: list[tuple[int, int, dict[str, Any], str | None]] = []

    for seq, ts_ns, kind, _venue, row_coid, row_parent, payload_text in rows:
        where = f"{src} seq {seq}"
        if kind not in _JOURNAL_KINDS:
            continue
        try:
            payload = json.loads(payload_text)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{kind} payload is not JSON: {exc}", source=where) from None
        if not isinstance(payload, dict):
            raise DataError(f"{kind} payload is not a JSON object", source=where)
        run = runs[-1]
        parents, children, pending_replace = run.parents, run.children, run.pending_replace
        try:
            if kind == "run_started":
                if runs[-1].started or runs[-1].parents or runs[-1].children:
                    runs.append(_Run())
                run = runs[-1]
                run.started = True
                run.run_id = str(payload.get("run_id")) if payload.get("run_id") is not None else None
                run.shadow = payload.get("mode") == "shadow"
                md = payload.get("market_data") or {}
                if isinstance(md, dict) and md.get("source"):
                    src_val = md["source"]
                    run.market_source = ([str(x) for x in src_val] if isinstance(src_val, list)
                                         else str(src_val))
            elif kind == "parent_submitted":
                pid = str(payload["parent_id"])
                parents[pid] = ParentOrder(
                    parent_id=pid, symbol=str(payload["symbol"]), side=Side.parse(payload["side"]),
                    quantity=_dec(payload["quantity"], "quantity", where), start_ts_ns=int(ts_ns),
                    decision_ts_ns=int(payload.get("decision_ts_ns") or ts_ns),
                    algo=payload.get("algo"), params=dict(payload.get("params") or {}),
                    limit_price=_opt_dec(payload.get("limit_price"), "limit_price", where),
                    arrival_price=_opt_dec(payload.get("arrival_price"), "arrival_price", where),
                    decision_price=_opt_dec(payload.get("decision_price"), "decision_price", where))
                if parents[pid].quantity <= 0:
                    raise DataError("parent quantity must be positive", source=where)
                for name in ("arrival_price", "decision_price"):
                    given = getattr(parents[pid], name)
                    if given is not None and given <= 0:
                        raise DataError(f"{name} {given} must be positive", source=where)
                order.append((len(runs) - 1, pid))
                run.fills.setdefault(pid, [])
            elif kind == "parent_finished":
                pid = str(payload["parent_id"])
                if pid not in parents:
                    raise DataError(f"parent_finished for unknown parent {pid!r}", source=where)
                parents[pid].end_ts_ns = int(ts_ns)
                parents[pid].status = payload.get("status")
                parents[pid].reason = payload.get("reason")
            elif kind == "routing_decision":
                pid = payload.get("parent_id") or row_parent
                run.decisions.append(RoutingDecisionRecord(
                    decision_id=str(payload.get("decision_id")), parent_id=str(pid) if pid else None,
                    ts_ns=int(ts_ns), payload=payload))
            elif kind == "order_command":
                _apply_command(children, pending_replace, payload, int(ts_ns), row_parent, where)
            elif kind == "order_event":
                c = children.get(str(payload.get("client_order_id") or row_coid))
                if c is not None:
                    ek = str(payload.get("kind", "")).lower()
                    pend = pending_replace.pop(c.client_order_id, None) if ek in (
                        "replaced", "rejected", "cancel_rejected", "canceled", "expired", "filled") else None
                    if ek == "replaced":   # the venue confirmed the native replace: its new size and price
                        sent_qty, sent_px = pend if pend is not None else (None, None)
                        qty = _opt_dec(payload.get("new_quantity"), "new_quantity", where)
                        px = _opt_dec(payload.get("new_price"), "new_price", where)
                        qty = sent_qty if qty is None else qty
                        px = sent_px if px is None else px
                        if qty is not None:
                            c.quantity = qty
                        if px is not None:
                            c.price = px
                    elif ek == "rejected" and pend is not None:
                        pass   # the replace was refused: the order works on unchanged (as the order manager)
                    elif ek in ("canceled", "rejected", "expired", "filled"):
                        c.final_status = ek
                        if ek == "rejected":
                            c.reject_reason = payload.get("reason")
            elif kind == "fill":
                pending_fills.append((len(runs) - 1, int(ts_ns), payload, row_parent))
        except KeyError as exc:
            raise DataError(f"{kind} payload lacks field {exc.args[0]!r}", source=where) from None
        except ValueError as exc:
            raise DataError(f"{kind}: {exc}", source=where) from None

    for run_idx, ts_ns, payload, row_parent in pending_fills:
        where = f"{src} fill at ts {ts_ns}"
        run = runs[run_idx]
        parents, children = run.parents, run.children
        coid = str(payload.get("client_order_id") or "")
        child = children.get(coid)
        fill_pid = payload.get("parent_id") or row_parent or (child.parent_id if child else None)
        if fill_pid is None or str(fill_pid) not in parents:
            log.warning("%s: fill %s of order %s belongs to no known parent; ignored",
                        src, payload.get("trade_id"), coid)
            continue
        parent = parents[str(fill_pid)]
        if payload.get("shadow") is True:   # journaled by a shadow run: never sent, never executed
            run.shadow_fills[parent.parent_id] = run.shadow_fills.get(parent.parent_id, 0) + 1
            continue
        price = _dec(payload.get("price"), "fill price", where)
        qty = _dec(payload.get("quantity"), "fill quantity", where)
        fee = _dec(payload.get("fee", "0") or "0", "fee", where)
        cur = str(payload.get("fee_currency") or "")
        fill_ts = int(payload.get("ts_event") or ts_ns)
        f = FillRecord(parent_id=parent.parent_id, venue=str(payload.get("venue") or (child.venue if child else "")),
                       ts_ns=fill_ts, price=price, quantity=qty, fee=fee, fee_currency=cur,
                       fee_quote=fee_in_quote(fee, cur, parent.symbol, price),
                       liquidity=payload.get("liquidity"), client_order_id=coid or None,
                       trade_id=str(payload.get("trade_id")) if payload.get("trade_id") is not None else None)
        run.fills[parent.parent_id].append(f)
        if child is not None:
            child.filled += qty
            if str(payload.get("event_kind") or "").lower() == "filled" and child.final_status is None:
                # the order manager journals the fill that completes an order as a ``fill`` row
                # (event_kind filled), never as an order_event: it is the child's final status
                child.final_status = "filled"
            child.first_fill_ts_ns = fill_ts if child.first_fill_ts_ns is None else min(
                child.first_fill_ts_ns, fill_ts)
            child.last_fill_ts_ns = fill_ts if child.last_fill_ts_ns is None else max(
                child.last_fill_ts_ns, fill_ts)

    # a parent id submitted in more than one run is labelled with its run (id, else ordinal)
    runs_of: dict[str, list[int]] = {}
    for run_idx, pid in order:
        runs_of.setdefault(pid, []).append(run_idx)
    out: list[Execution] = []
    for run_idx, pid in order:
        run = runs[run_idx]
        parent = run.parents[pid]
        if parent.end_ts_ns is None:
            parent.end_ts_ns = max((f.ts_ns for f in run.fills[pid]), default=None)
        label = f"{p.name}:{pid}"
        if len(runs_of[pid]) > 1:
            ids = [runs[k].run_id for k in runs_of[pid]]
            distinct = None not in ids and len(set(ids)) == len(ids)
            label = f"{p.name}:{run.run_id if distinct else f'run {run_idx + 1}'}:{pid}"
        warnings: list[str] = []
        if run.shadow:
            # its child orders are listed (venues, sent quantities) as they were journaled
            warnings.append("shadow run: the child orders were journaled, never sent to a venue")
        if run.shadow_fills.get(pid):
            warnings.append(f"{run.shadow_fills[pid]} shadow fill(s) (journaled, never sent) left out")
        out.append(Execution(
            parent=parent, fills=sorted(run.fills[pid], key=lambda f: f.ts_ns),
            children=[c for c in run.children.values() if c.parent_id == pid],
            decisions=[d for d in run.decisions if d.parent_id == pid],
            run_id=run.run_id, source=src, label=label, market_source=run.market_source,
            warnings=warnings))
    return out


class _Run:
    """What one run of a journal (``run_started`` to the next one) holds while it is read."""

    __slots__ = ("children", "decisions", "fills", "market_source", "parents", "pending_replace", "run_id",
                 "shadow", "shadow_fills", "started")

    def __init__(self) -> None:
        self.started = False
        self.run_id: str | None = None
        self.market_source: str | list[str] | None = None
        self.parents: dict[str, ParentOrder] = {}
        self.fills: dict[str, list[FillRecord]] = {}
        self.children: dict[str, ChildOrder] = {}
        # native replaces sent and not yet confirmed: client order id -> (new quantity, new price)
        self.pending_replace: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self.decisions: list[RoutingDecisionRecord] = []
        self.shadow_fills: dict[str, int] = {}
        self.shadow = False   # run_started says mode = "shadow"


def _apply_command(children: dict[str, ChildOrder], pending_replace: dict[str, tuple[Decimal | None, Decimal | None]],
                   payload: dict[str, Any], ts_ns: int, row_parent: str | None, where: str) -> None:
    """One ``order_command``. A native replace changes the child only once the venue confirms it
    (``order_event`` ``replaced``; a ``rejected`` event meanwhile is the refusal of the replace);
    a cancel-then-new replace (``native`` false) starts a new child, ``new_client_order_id``, for
    the journaled quantity, and leaves the old one to its cancel."""
    action = str(payload.get("action", "")).lower()
    coid = str(payload["client_order_id"])
    if action == "submit":
        pid = payload.get("parent_id") or row_parent
        children[coid] = ChildOrder(
            client_order_id=coid, parent_id=str(pid) if pid else None, venue=str(payload.get("venue")),
            submit_ts_ns=ts_ns, quantity=_dec(payload["quantity"], "quantity", where),
            price=_opt_dec(payload.get("price"), "price", where), order_type=payload.get("order_type"),
            time_in_force=payload.get("time_in_force"), decision_id=payload.get("decision_id"))
    elif action == "cancel":
        if coid in children:
            children[coid].cancel_requests += 1
    elif action == "replace" and coid in children:
        c = children[coid]
        c.replaces += 1
        qty = _opt_dec(payload.get("quantity"), "quantity", where)
        px = _opt_dec(payload.get("price"), "price", where)
        new_id = payload.get("new_client_order_id")
        if payload.get("native", True) is False and new_id:
            children[str(new_id)] = ChildOrder(
                client_order_id=str(new_id), parent_id=c.parent_id, venue=c.venue, submit_ts_ns=ts_ns,
                quantity=qty if qty is not None else c.quantity, price=px if px is not None else c.price,
                order_type=c.order_type, time_in_force=c.time_in_force, decision_id=c.decision_id)
        else:
            pending_replace[coid] = (qty, px)


# ====================================================================== fills CSV
FILLS_CSV_COLUMNS = ("record", "parent_id", "symbol", "side", "quantity", "time", "venue", "price", "fee",
                     "liquidity", "decision_price", "arrival_price", "end_price", "end_time")
"""Columns of the fills CSV (one file, a ``record`` column says ``parent`` or ``fill``)."""

_REQUIRED = {"parent": ("parent_id", "symbol", "side", "quantity", "time"),
             "fill": ("parent_id", "time", "venue", "price", "quantity")}


_ISO_FRACTION = re.compile(r"^(.*\d{2}:\d{2}:\d{2})[.,](\d+)(.*)$")
"""An ISO 8601 time split around the fraction of a second: (date and hh:mm:ss, digits, offset)."""


def parse_time_ns(text: str, where: str) -> int:
    """Integer nanoseconds since the epoch, or an ISO 8601 time with a UTC offset (``Z`` allowed)."""
    t = text.strip()
    if t.lstrip("-").isdigit():
        return int(t)
    # datetime keeps only microseconds: take the fraction of a second (up to 9 digits) apart
    frac_ns = 0
    fm = _ISO_FRACTION.match(t)
    if fm is not None:
        frac_ns = int(fm.group(2)[:9].ljust(9, "0"))
        t = fm.group(1) + fm.group(3)
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"time {text!r} is neither integer nanoseconds nor ISO 8601", source=where) from None
    if dt.tzinfo is None:
        raise DataError(f"time {text!r} has no UTC offset (write e.g. 2024-08-08T23:55:00Z)", source=where)
    epoch = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
    delta = dt - epoch
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000 + frac_ns


def load_fills_csv(path: str | Path) -> list[Execution]:
    """Read the fills CSV documented in docs/tca.md into executions (one per parent row).

    Raises :class:`DataError` naming the file and line on missing columns, bad numbers, bad times,
    unknown sides, duplicate parents or fills of an unknown parent."""
    p = Path(path)
    src = str(p)
    if not p.is_file():
        raise DataError("fills CSV not found", source=src)
    with p.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a leading byte-order mark is not data
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        for col in ("record", "parent_id"):
            if col not in header:
                raise DataError(f"missing column {col!r} (header: {', '.join(header) or 'empty'})",
                                source=src, line=1)
        parents: dict[str, ParentOrder] = {}
        order: list[str] = []
        raw_fills: list[tuple[int, dict[str, str]]] = []
        for row in reader:
            line = reader.line_num
            where = f"{src}:{line}"
            r = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
            kind = r.get("record", "").lower()
            if kind not in _REQUIRED:
                raise DataError(f"record {r.get('record')!r} is not 'parent' or 'fill'", source=src, line=line)
            for col in _REQUIRED[kind]:
                if col not in header:
                    raise DataError(f"missing column {col!r} needed by {kind} rows", source=src, line=1)
            for col in _REQUIRED[kind]:
                if not r.get(col):
                    raise DataError(f"{kind} row has an empty {col!r}", source=src, line=line)
            if kind == "parent":
                pid = r["parent_id"]
                if pid in parents:
                    raise DataError(f"duplicate parent {pid!r}", source=src, line=line)
                try:
                    side = Side.parse(r["side"])
                except ValueError as exc:
                    raise DataError(str(exc), source=src, line=line) from None
                ts = parse_time_ns(r["time"], where)
                qty = _line_dec(r["quantity"], "quantity", src, line)
                if qty <= 0:
                    raise DataError(f"quantity {r['quantity']} must be positive", source=src, line=line)
                given = {name: _line_opt(r.get(name), name, src, line)
                         for name in ("decision_price", "arrival_price", "end_price")}
                for name, value in given.items():
                    if value is not None and value <= 0:
                        raise DataError(f"{name} {value} must be positive", source=src, line=line)
                parents[pid] = ParentOrder(
                    parent_id=pid, symbol=r["symbol"], side=side, quantity=qty, start_ts_ns=ts,
                    decision_ts_ns=ts, decision_price=given["decision_price"],
                    arrival_price=given["arrival_price"], end_price=given["end_price"],
                    end_ts_ns=parse_time_ns(r["end_time"], where) if r.get("end_time") else None)
                order.append(pid)
            else:
                raw_fills.append((line, r))
    fills: dict[str, list[FillRecord]] = {pid: [] for pid in order}
    for line, r in raw_fills:
        pid = r["parent_id"]
        if pid not in parents:
            raise DataError(f"fill of unknown parent id {pid!r} (parents: {', '.join(order) or 'none'})",
                            source=src, line=line)
        price = _line_dec(r["price"], "price", src, line)
        qty = _line_dec(r["quantity"], "quantity", src, line)
        if price <= 0 or qty <= 0:
            raise DataError("fill price and quantity must be positive", source=src, line=line)
        fee = _line_dec(r.get("fee") or "0", "fee", src, line)
        liq = (r.get("liquidity") or "").lower() or None
        if liq not in (None, "maker", "taker"):
            raise DataError(f"liquidity {liq!r} is not maker or taker", source=src, line=line)
        fills[pid].append(FillRecord(
            parent_id=pid, venue=r["venue"], ts_ns=parse_time_ns(r["time"], f"{src}:{line}"), price=price,
            quantity=qty, fee=fee, fee_currency="", fee_quote=fee, liquidity=liq))
    out = []
    for pid in order:
        par = parents[pid]
        pf = sorted(fills[pid], key=lambda f: f.ts_ns)
        if par.end_ts_ns is None and pf:
            par.end_ts_ns = pf[-1].ts_ns
        out.append(Execution(parent=par, fills=pf, source=src, label=f"{p.name}:{pid}"))
    return out


def _line_dec(text: str, what: str, src: str, line: int) -> Decimal:
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError):
        raise DataError(f"{what} {text!r} is not a decimal number", source=src, line=line) from None
    if not d.is_finite():
        raise DataError(f"{what} {text!r} is not finite", source=src, line=line)
    return d


def _line_opt(text: str | None, what: str, src: str, line: int) -> Decimal | None:
    return _line_dec(text, what, src, line) if text else None


# ====================================================================== market data
_CAPTURE_VENUES = {"spot": ("binance-spot", "BTC-USDT"), "usdm": ("binance-usdm", "BTC-USDT"),
                   "coinm": ("binance-coinm", "BTC-USD")}


def read_binance_capture(path: str | Path, series: dict[str, MarketSeries] | None = None
                         ) -> dict[str, MarketSeries]:
    """Minimal reader of a raw Binance capture (``<local_ns> <json>`` per line, gzip or plain):
    trades and bookTicker quotes only, in exchange time. The venue comes from the file name
    (``spot_``/``usdm_``/``coinm_``). bookTicker messages without an event time ``E`` (spot) get
    the local receive time minus the collector offset measured on the last message that had one.
    COIN-M trade quantities (contracts of 100 USD) are converted to BTC at the trade price."""
    p = Path(path)
    prefix = p.name.split("_", 1)[0].lower()
    if prefix not in _CAPTURE_VENUES:
        raise DataError("cannot tell the venue from the file name (expected spot_/usdm_/coinm_ prefix)",
                        source=str(p))
    venue, symbol = _CAPTURE_VENUES[prefix]
    out = series if series is not None else {}
    s = out.get(symbol) or out.setdefault(symbol, MarketSeries(symbol))
    offset: int | None = None
    with _open_text(p) as fh:
        for lineno, line in enumerate(fh, 1):
            local, _, text = line.partition(" ")
            if '"stream"' not in text:
                continue
            try:
                msg = json.loads(text)
                data = msg["data"]
                local_ns = int(local)
                if "E" in data:
                    offset = local_ns - int(data["E"]) * 1_000_000
                if data.get("e") == "trade":
                    px = Decimal(data["p"])
                    qty = Decimal(data["q"])
                    if prefix == "coinm":
                        qty = qty * 100 / px
                    s.add_trade(int(data["T"]) * 1_000_000, venue, px, qty, str(data["t"]))
                elif "@bookTicker" in str(msg.get("stream")) or data.get("e") == "bookTicker":
                    # transaction time T (futures; the clock of trade T, as marketdata.replay), else
                    # event time E, else (spot) the local time corrected by the measured offset
                    t_ms = data.get("T") or data.get("E")
                    ts = int(t_ms) * 1_000_000 if t_ms is not None else local_ns - (offset or 0)
                    bid, ask = Decimal(data["b"]), Decimal(data["a"])
                    if bid > 0 and ask > 0:
                        s.add_quote(ts, venue, bid, ask)
            except (KeyError, ValueError, InvalidOperation) as exc:
                raise DataError(f"unreadable message: {exc}", source=str(p), line=lineno) from None
    for ser in out.values():
        ser.build()
    return out


def _open_text(p: Path) -> IO[str]:
    return gzip.open(p, "rt", encoding="utf-8") if p.suffix == ".gz" else p.open(encoding="utf-8")


def _series_from_dataset(ds: Any) -> dict[str, MarketSeries]:
    return MarketSeries.from_events(ds.events(), ds.instruments)


def load_market(spec: str | Path | Iterable[str | Path] | None) -> dict[str, MarketSeries]:
    """Market data by unified symbol. ``spec``: ``"default"`` (the bundled dataset of
    ``marketdata.replay``), one path or several (files or directories). Uses
    ``marketdata.replay.open_dataset`` when that module exists, else the built-in raw Binance
    reader (``*.gz`` captures)."""
    if spec is None:
        return {}
    specs = [spec] if isinstance(spec, str | Path) else list(spec)
    replay: Any
    try:
        replay = importlib.import_module("marketdata.replay")
    except ImportError:
        replay = None
    if [str(s) for s in specs] == ["default"]:
        if replay is None:
            raise DataError("market data 'default' needs marketdata.replay, which is not installed")
        return _series_from_dataset(replay.default_dataset())
    paths: list[Path] = []
    for s in specs:
        sp = Path(s)
        if sp.is_dir():
            paths.extend(sorted(x for x in sp.iterdir() if x.is_file() and not x.name.startswith(
                ("LICENSE", "README"))))
        elif sp.is_file():
            paths.append(sp)
        else:
            raise DataError("market data not found", source=str(sp))
    if replay is not None:
        try:
            return _series_from_dataset(replay.open_dataset(paths))
        except Exception as exc:  # fall back to the raw reader on formats replay rejects
            log.info("marketdata.replay could not open %s (%s); trying the raw Binance reader", paths, exc)
    out: dict[str, MarketSeries] = {}
    for fp in paths:
        read_binance_capture(fp, out)
    return out


def iter_csv_header_help() -> Iterator[str]:
    """The fills CSV columns, for error messages and --help."""
    yield from FILLS_CSV_COLUMNS
