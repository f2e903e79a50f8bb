"""The compact bundle format: a dataset's normalized events as integer numpy columns in one ``.npz``.

Layout (``np.savez_compressed``), per book ``k`` in ``meta["books"]`` order:

``b{k}_kind``      int8, one per event in the book's replay order: 0 snapshot, 1 deltas, 2 trade, 3 quote
``b{k}_dts_event`` / ``b{k}_dts_init``  int64 first differences of ``ts_event`` / ``ts_init`` (ns)
``b{k}_U``, ``b{k}_u``, ``b{k}_pu``      update ids of each book message (first / last / previous)
``b{k}_nb``, ``b{k}_na``                 bid / ask level count of each book message
``b{k}_px``, ``b{k}_lots``               the levels: each message's bids then asks, ticks and lots
``b{k}_tpx``, ``b{k}_tlots``, ``b{k}_tside``, ``b{k}_tid``   trades (side +1 buy / -1 sell aggressor)
``b{k}_qbid``, ``b{k}_qbidl``, ``b{k}_qask``, ``b{k}_qaskl``, ``b{k}_quid``   quotes (bookTicker)
``meta``           uint8 JSON: format version, instruments, sequence rules, span, provenance, reader report

Integers only, on each instrument's own grid, so a bundle replays to exactly the books its source
produced; columns use the narrowest integer type that holds them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from marketdata.book import SequenceRule
from marketdata.errors import DataError
from marketdata.model import (
    BookDeltas,
    Instrument,
    InstrumentKind,
    MarketEvent,
    QuoteTick,
    Side,
    Symbol,
    TradeId,
    TradeTick,
    VenueId,
)
from marketdata.replay.dataset import BookKey, Dataset, Malformed, ReadReport

BUNDLE_VERSION = 1
K_SNAPSHOT, K_DELTAS, K_TRADE, K_QUOTE = 0, 1, 2, 3


def _narrow(values: list[int]) -> npt.NDArray[Any]:
    arr = np.asarray(values, dtype=np.int64)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        for dt in (np.int8, np.int16, np.int32):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                return arr.astype(dt)
    return arr


def _inst_to_dict(inst: Instrument) -> dict[str, str]:
    return {
        "venue": inst.venue, "symbol": inst.symbol, "venue_symbol": inst.venue_symbol, "base": inst.base,
        "quote": inst.quote, "tick_size": str(inst.tick_size), "lot_size": str(inst.lot_size),
        "min_quantity": str(inst.min_quantity), "min_notional": str(inst.min_notional),
        "kind": inst.kind.value, "contract_size": str(inst.contract_size),
    }


def _inst_from_dict(d: dict[str, str]) -> Instrument:
    return Instrument(
        venue=VenueId(d["venue"]), symbol=Symbol(d["symbol"]), venue_symbol=d["venue_symbol"],
        base=d["base"], quote=d["quote"], tick_size=Decimal(d["tick_size"]), lot_size=Decimal(d["lot_size"]),
        min_quantity=Decimal(d["min_quantity"]), min_notional=Decimal(d["min_notional"]),
        kind=InstrumentKind(d["kind"]), contract_size=Decimal(d["contract_size"]))


def write_bundle(ds: Dataset, dest: str | Path | IO[bytes], *, provenance: dict[str, Any] | None = None) -> None:
    """Write every book of ``ds`` to ``dest`` in the bundle format (see the module docstring)."""
    arrays: dict[str, npt.NDArray[Any]] = {}
    meta_books = []
    for k, (key, inst) in enumerate(ds.books.items()):
        kind: list[int] = []
        ts_e: list[int] = []
        ts_i: list[int] = []
        uU: list[int] = []
        uu: list[int] = []
        upu: list[int] = []
        nb: list[int] = []
        na: list[int] = []
        px: list[int] = []
        lots: list[int] = []
        tpx: list[int] = []
        tl: list[int] = []
        ts_side: list[int] = []
        tid: list[str] = []
        q: list[list[int]] = [[], [], [], [], []]
        for ev in ds._streams[key]():
            ts_e.append(ev.ts_event)
            ts_i.append(ev.ts_init)
            if isinstance(ev, BookDeltas):
                kind.append(K_SNAPSHOT if ev.is_snapshot else K_DELTAS)
                uU.append(ev.first_update_id)
                uu.append(ev.last_update_id)
                upu.append(ev.prev_update_id)
                nb.append(len(ev.bids))
                na.append(len(ev.asks))
                for price, n in ev.bids:
                    px.append(price)
                    lots.append(n)
                for price, n in ev.asks:
                    px.append(price)
                    lots.append(n)
            elif isinstance(ev, TradeTick):
                kind.append(K_TRADE)
                tpx.append(ev.price_ticks)
                tl.append(ev.lots)
                ts_side.append(int(ev.aggressor))
                tid.append(ev.trade_id)
            else:
                kind.append(K_QUOTE)
                for col, v in zip(q, (ev.bid_ticks, ev.bid_lots, ev.ask_ticks, ev.ask_lots, ev.update_id),
                                  strict=True):
                    col.append(v)
        p = f"b{k}_"
        arrays[p + "kind"] = np.asarray(kind, dtype=np.int8)
        arrays[p + "dts_event"] = _narrow(list(np.diff(np.asarray(ts_e, dtype=np.int64), prepend=0)))
        arrays[p + "dts_init"] = _narrow(list(np.diff(np.asarray(ts_i, dtype=np.int64), prepend=0)))
        for name, col in (("U", uU), ("u", uu), ("pu", upu), ("nb", nb), ("na", na), ("px", px),
                          ("lots", lots), ("tpx", tpx), ("tlots", tl), ("tside", ts_side),
                          ("qbid", q[0]), ("qbidl", q[1]), ("qask", q[2]), ("qaskl", q[3]), ("quid", q[4])):
            arrays[p + name] = _narrow(col)
        # as integers only when that round-trips ("007" would come back as "7")
        if all(t.isascii() and t.isdigit() and len(t) < 19 and (t[0] != "0" or t == "0") for t in tid):
            arrays[p + "tid"] = np.asarray([int(t) for t in tid], dtype=np.int64)
        else:
            arrays[p + "tid"] = np.asarray(tid, dtype=np.str_)
        meta_books.append({"venue": key[0], "venue_symbol": key[1], "rule": ds.rule_of(*key),
                           "instrument": _inst_to_dict(inst), "events": len(kind)})
    meta = {"version": BUNDLE_VERSION, "books": meta_books, "start_ns": ds.start_ns, "end_ns": ds.end_ns,
            "source": ds.source, "source_format": ds.format, "provenance": provenance or {},
            "report": ds.report.to_dict()}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    if isinstance(dest, str | Path):
        with open(dest, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    else:
        np.savez_compressed(dest, **arrays)  # type: ignore[arg-type]


def _book_stream(cols: dict[str, list[Any]], venue: str, symbol: str) -> Callable[[], Iterator[MarketEvent]]:
    def make() -> Iterator[MarketEvent]:
        vid, sym = VenueId(venue), Symbol(symbol)
        kinds = cols["kind"]
        te, ti = cols["ts_event"], cols["ts_init"]
        uU, uu, upu, nb, na = cols["U"], cols["u"], cols["pu"], cols["nb"], cols["na"]
        px, lots = cols["px"], cols["lots"]
        tpx, tl, tside, tid = cols["tpx"], cols["tlots"], cols["tside"], cols["tid"]
        qb, qbl, qa, qal, qu = cols["qbid"], cols["qbidl"], cols["qask"], cols["qaskl"], cols["quid"]
        buy, sell = Side.BUY, Side.SELL
        bi = ti_ = qi = lv = 0
        for i, kind in enumerate(kinds):
            if kind == K_QUOTE:
                yield QuoteTick(vid, sym, qb[qi], qbl[qi], qa[qi], qal[qi], te[i], ti[i], qu[qi])
                qi += 1
            elif kind == K_TRADE:
                yield TradeTick(vid, sym, tpx[ti_], tl[ti_], buy if tside[ti_] > 0 else sell,
                                TradeId(str(tid[ti_])), te[i], ti[i])
                ti_ += 1
            else:
                b_end = lv + nb[bi]
                a_end = b_end + na[bi]
                yield BookDeltas(vid, sym, list(zip(px[lv:b_end], lots[lv:b_end], strict=True)),
                                 list(zip(px[b_end:a_end], lots[b_end:a_end], strict=True)), te[i], ti[i],
                                 kind == K_SNAPSHOT, uU[bi], uu[bi], upu[bi])
                lv = a_end
                bi += 1

    return make


def read_bundle(src: str | Path | IO[bytes]) -> Dataset:
    """Load a bundle written by :func:`write_bundle`. Columns are decoded to Python lists once;
    events are built lazily on each :meth:`Dataset.events` call."""
    name = str(src) if isinstance(src, str | Path) else str(getattr(src, "name", "<stream>"))
    try:
        if isinstance(src, str | Path):
            with open(src, "rb") as fh:
                raw = fh.read()
        else:
            raw = src.read()
        npz = np.load(io.BytesIO(raw), allow_pickle=False)
        meta = json.loads(bytes(npz["meta"]).decode())
    except OSError as exc:
        raise DataError(f"cannot read bundle: {exc}", source=name) from None
    except (ValueError, KeyError) as exc:
        raise DataError(f"not a sorex bundle: {exc}", source=name) from None
    if meta.get("version") != BUNDLE_VERSION:
        raise DataError(f"bundle version {meta.get('version')} not supported (want {BUNDLE_VERSION})",
                        source=name)
    books: dict[BookKey, Instrument] = {}
    rules: dict[BookKey, SequenceRule] = {}
    streams: dict[BookKey, Callable[[], Iterator[MarketEvent]]] = {}
    names = ("kind", "U", "u", "pu", "nb", "na", "px", "lots", "tpx", "tlots", "tside", "tid",
             "qbid", "qbidl", "qask", "qaskl", "quid")
    for k, b in enumerate(meta["books"]):
        p = f"b{k}_"
        cols: dict[str, list[Any]] = {n: npz[p + n].tolist() for n in names}
        cols["ts_event"] = np.cumsum(npz[p + "dts_event"], dtype=np.int64).tolist()
        cols["ts_init"] = np.cumsum(npz[p + "dts_init"], dtype=np.int64).tolist()
        inst = _inst_from_dict(b["instrument"])
        key = (b["venue"], b["venue_symbol"])
        books[key] = inst
        rules[key] = b["rule"]
        streams[key] = _book_stream(cols, b["venue"], inst.symbol)
    report = ReadReport()
    r = meta.get("report", {})
    # the source reader's whole report: malformed lines stay counted and located (file, line, reason)
    report.lines = int(r.get("lines", 0))
    report.malformed = int(r.get("malformed", 0))
    report.malformed_samples = [Malformed(str(m["source"]), int(m["line"]), str(m["reason"]))
                                for m in r.get("malformed_lines", [])]
    report.ignored = {str(k): int(v) for k, v in r.get("ignored", {}).items()}
    report.notes = list(r.get("notes", []))
    report.books = dict(r.get("books", {}))
    ds = Dataset(books=books, rules=rules, streams=streams, start_ns=int(meta["start_ns"]),
                 end_ns=int(meta["end_ns"]), source=name, format="bundle", report=report)
    ds.provenance = dict(meta.get("provenance", {}))
    return ds
