"""Reader for raw Binance captures: one message a line, ``<local_receive_ns> <json>``, gzip or plain.

Sample lines (spot; USD-M/COIN-M depth carries ``pu`` and ``T`` too)::

    1723161253937085768 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,
        "s":"BTCUSDT","U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"]],"a":[...]}}
    1723161254087891268 {"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT",
        "b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}
    1723161254087896568 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",
        "t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}}
    1723161254206652067 {"lastUpdateId":50093239218,"bids":[["61837.63000000","3.78826000"],...],"asks":[...]}

Binance's local-book procedure is followed: diffs are buffered from the start of the stream; when
the REST snapshot line arrives (anywhere in the file) the buffered diffs that it already contains are
dropped (spot ``u <= lastUpdateId``, futures ``u < lastUpdateId``) and the snapshot is emitted as a
``BookDeltas(is_snapshot=True)`` followed by the remaining buffered diffs and every later diff. The
sequence checks themselves (first event straddles the snapshot, then ``U == prev u + 1`` on spot,
``pu == prev u`` on futures) are done by :meth:`L2Book.apply` with the dataset's sequence rule.
Several files of one market chain: book state carries over from one file to the next (files are
ordered by their first receive time), so a continuation file without a snapshot of its own works.

Times: ``ts_event`` is exchange time: ``T`` (transaction time) where Binance sends it (futures,
trades), else ``E``, ms -> ns. Spot bookTicker and the spot REST snapshot carry no exchange time; for
them ``ts_event`` is the receive time plus the file's clock offset, the median of ``E - receive``
over the file's first events (about +1.27 s on the bundled captures: the collector's clock runs that
much behind Binance's). ``ts_init`` is always the receive time.

Symbols: the known BTC contracts use their real tick/lot sizes; any other symbol gets an exact grid
inferred from the wire strings (a first pass finds the most decimals used), so nothing is rounded.
Lines that cannot be parsed are counted and skipped, with the first few line numbers kept.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import statistics
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from marketdata.book import SequenceRule
from marketdata.errors import DataError
from marketdata.model import BookDeltas, Instrument, MarketEvent, QuoteTick, Side, TradeId, TradeTick, VenueId
from marketdata.replay.dataset import BookKey, Dataset, ReadReport
from marketdata.replay.instruments import (
    COINM,
    SPOT,
    USDM,
    infer_instrument,
    known_instrument,
    significant_decimals,
)
from marketdata.replay.numparse import price_parser, qty_parser

log = logging.getLogger(__name__)

Source = str | Path | IO[bytes]

_PARTIAL_DEPTH = re.compile(r"@depth\d+")
_BOOK_STREAM = re.compile(r"depth(?:@\d+ms)?|trade|aggTrade|bookTicker")
_PEEK_LINES = 3000
# Wire strings repeat a lot (prices near the touch, "0.000"); parsed values are memoised per book.
_CACHE_MAX = 200_000


def read_lines(src: Source) -> tuple[str, list[str]]:
    """(name, lines) of a gzip or plain text source (path or binary file object)."""
    if isinstance(src, str | Path):
        name = str(src)
        try:
            with open(src, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise DataError(f"cannot read: {exc.strerror or exc}", source=name) from None
    else:
        name = str(getattr(src, "name", "<stream>"))
        raw = src.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            # A truncated gzip still yields what was written before the cut.
            log.warning("%s: gzip stream damaged (%s); reading what can be decompressed", name, exc)
            raw = _salvage_gzip(raw)
    lines = raw.decode("utf-8", "replace").split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return name, lines


def _salvage_gzip(raw: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        return d.decompress(raw)
    except zlib.error:
        return b""


def _split(line: str) -> tuple[int, Any]:
    sp = line.index(" ")
    return int(line[:sp]), json.loads(line[sp + 1:])


@dataclass
class _FileInfo:
    name: str
    lines: list[str]
    venue: str
    offset_ns: int
    first_ns: int
    symbols: list[str]


@dataclass
class _BookState:
    venue: str
    venue_symbol: str
    inst: Instrument
    rule: SequenceRule
    synced: bool = False
    buffer: list[BookDeltas] = field(default_factory=list)
    book: list[BookDeltas] = field(default_factory=list)
    trades: list[TradeTick] = field(default_factory=list)
    agg_trades: list[TradeTick] = field(default_factory=list)
    quotes: list[QuoteTick] = field(default_factory=list)
    snapshots: int = 0
    pre_snapshot_dropped: int = 0
    level_updates: int = 0
    depth_events: int = 0
    off_lot: list[int] = field(default_factory=lambda: [0])
    pcache: dict[str, int] = field(default_factory=dict)
    qcache: dict[str, int] = field(default_factory=dict)
    pp: Callable[[str], int] = field(init=False)
    pq: Callable[[str], int] = field(init=False)

    def __post_init__(self) -> None:
        self.pp = price_parser(self.inst)
        self.pq = qty_parser(self.inst, self.off_lot)


def _data_of(obj: Any) -> tuple[str, Any]:
    if isinstance(obj, dict):
        if "data" in obj and "stream" in obj:
            return str(obj["stream"]), obj["data"]
        return "", obj
    raise ValueError("line is not a JSON object")


def _kind(stream: str, d: Any) -> str:
    """depth | snapshot | trade | aggTrade | bookTicker | partial | other."""
    if not isinstance(d, dict):
        return "other"
    e = d.get("e")
    if e == "depthUpdate":
        return "partial" if _PARTIAL_DEPTH.search(stream) else "depth"
    if e == "trade" or e == "aggTrade" or e == "bookTicker":
        return str(e)
    if e is None:
        if "lastUpdateId" in d and "bids" in d:
            return "partial" if _PARTIAL_DEPTH.search(stream) else "snapshot"
        if "u" in d and "B" in d and "A" in d:
            return "bookTicker"
    return "other"


def _peek(name: str, lines: list[str]) -> _FileInfo:
    """Market, clock offset and symbols from the first lines of a file."""
    futures = coinm = False
    symbols: dict[str, None] = {}
    offsets: list[int] = []
    first_ns = 0
    for line in lines[:_PEEK_LINES]:
        try:
            ts, obj = _split(line)
            stream, d = _data_of(obj)
        except (ValueError, TypeError):
            continue
        if not first_ns:
            first_ns = ts
        kind = _kind(stream, d)
        if kind == "depth":
            symbols[str(d.get("s", ""))] = None
            if "pu" in d:
                futures = True
        if kind in ("depth", "trade", "aggTrade", "bookTicker") and isinstance(d.get("E"), int):
            offsets.append(d["E"] * 1_000_000 - ts)
        if kind == "snapshot" and ("E" in d or "T" in d):
            futures = True
        if kind == "trade" and "X" in d:
            futures = True
        if kind == "bookTicker" and "e" in d:
            futures = True
        sym = (d.get("s") or d.get("symbol")) if isinstance(d, dict) else None
        if isinstance(sym, str) and kind in ("depth", "trade", "aggTrade", "bookTicker"):
            symbols[sym] = None
        if isinstance(sym, str) and "_" in sym:
            coinm = True
        if isinstance(d, dict) and ("ps" in d or "pair" in d):
            coinm = True
    if not futures and not coinm:
        lower = Path(name).name.lower()
        if "coinm" in lower or "delivery" in lower:
            coinm = True
        elif "usdm" in lower or "futures" in lower:
            futures = True
    venue = COINM if coinm else USDM if futures else SPOT
    offset = int(statistics.median(offsets)) if offsets else 0
    return _FileInfo(name, lines, venue, offset, first_ns, [s for s in symbols if s])


def _scan_decimals(info: _FileInfo, want: set[str], out: dict[str, list[int]]) -> None:
    """Most significant decimals of prices ([0]) and quantities ([1]) per symbol in ``want``. Snapshot
    levels count for the file's depth symbols (the spot/USD-M snapshot body names no symbol)."""
    sd = significant_decimals
    only = info.symbols[0] if len(info.symbols) == 1 else None
    for line in info.lines:
        try:
            _, obj = _split(line)
            stream, d = _data_of(obj)
            kind = _kind(stream, d)
            if kind == "snapshot":
                sym = d.get("symbol") or only
                levels = list(d["bids"]) + list(d["asks"])
                pairs = [(p, q) for p, q in levels]
            else:
                sym = d.get("s")
                if kind == "depth":
                    pairs = [(p, q) for p, q in d["b"]] + [(p, q) for p, q in d["a"]]
                elif kind in ("trade", "aggTrade"):
                    pairs = [(d["p"], d["q"])]
                elif kind == "bookTicker":
                    pairs = [(d["b"], d["B"]), (d["a"], d["A"])]
                else:
                    continue
            if sym not in want:
                continue
            acc = out.setdefault(sym, [0, 0])
            for p, q in pairs:
                dp, dq = sd(p), sd(q)
                if dp > acc[0]:
                    acc[0] = dp
                if dq > acc[1]:
                    acc[1] = dq
        except (ValueError, TypeError, KeyError, AttributeError):
            continue


class BinanceRawReader:
    """Parse raw Binance capture files into a :class:`Dataset` (see the module docstring)."""

    def __init__(self, *, max_malformed_samples: int = 20) -> None:
        self.report = ReadReport(max_samples=max_malformed_samples)
        self._states: dict[BookKey, _BookState] = {}

    # ------------------------------------------------------------------ public
    def read(self, sources: Sequence[Source]) -> Dataset:
        """Read ``sources`` (paths or binary file objects), chaining files of the same market."""
        if not sources:
            raise DataError("no input files given")
        files = []
        for src in sources:
            name, lines = read_lines(src)
            files.append(_peek(name, lines))
        files.sort(key=lambda f: f.first_ns)
        self._instruments = self._resolve_instruments(files)
        for info in files:
            self._read_file(info)
        return self._finish(", ".join(f.name for f in files))

    # ------------------------------------------------------------------ instruments
    def _resolve_instruments(self, files: list[_FileInfo]) -> dict[BookKey, Instrument]:
        unknown: dict[str, set[str]] = {}
        for info in files:
            for sym in info.symbols:
                if known_instrument(info.venue, sym) is None:
                    unknown.setdefault(info.venue, set()).add(sym)
        resolved: dict[BookKey, Instrument] = {}
        for venue, syms in unknown.items():
            decimals: dict[str, list[int]] = {}
            for info in files:
                if info.venue == venue:
                    _scan_decimals(info, syms, decimals)
            for sym in sorted(syms):
                dp, dq = decimals.get(sym, [0, 0])
                inst = infer_instrument(venue, sym, dp, dq)
                resolved[(venue, sym)] = inst
                self.report.notes.append(
                    f"{venue} {sym}: not a known instrument; exact grid inferred from the wire strings: "
                    f"tick {inst.tick_size}, lot {inst.lot_size}")
        return resolved

    def _instrument(self, venue: str, sym: str) -> Instrument:
        inst = self._instruments.get((venue, sym)) or known_instrument(venue, sym)
        if inst is None:
            # A symbol that only shows up after the first lines: infer from this point on.
            info_files = [f for f in self._files_seen if f.venue == venue]
            decimals: dict[str, list[int]] = {}
            for info in info_files:
                _scan_decimals(info, {sym}, decimals)
            dp, dq = decimals.get(sym, [0, 0])
            inst = infer_instrument(venue, sym, dp, dq)
            self.report.notes.append(
                f"{venue} {sym}: not a known instrument; exact grid inferred: tick {inst.tick_size}, "
                f"lot {inst.lot_size}")
        self._instruments[(venue, sym)] = inst
        return inst

    def _state(self, venue: str, sym: str) -> _BookState:
        key = (venue, sym)
        st = self._states.get(key)
        if st is None:
            inst = self._instrument(venue, sym)
            st = _BookState(venue, sym, inst, "contiguous" if venue == SPOT else "prev")
            self._states[key] = st
        return st

    # ------------------------------------------------------------------ main pass
    def _read_file(self, info: _FileInfo) -> None:
        self._files_seen = getattr(self, "_files_seen", [])
        self._files_seen.append(info)
        report = self.report
        name, venue, offset = info.name, info.venue, info.offset_ns
        futures = venue != SPOT
        vid = VenueId(venue)
        loads = json.loads
        states = self._states
        report.lines += len(info.lines)
        partial = _PARTIAL_DEPTH.search
        for lineno, line in enumerate(info.lines, 1):
            if not line or line.isspace():
                continue
            try:
                sp = line.index(" ")
                ts_init = int(line[:sp])
                obj = loads(line[sp + 1:])
                if type(obj) is dict and "data" in obj:
                    stream = obj["stream"]
                    d = obj["data"]
                else:
                    stream, d = _data_of(obj)
                e = d.get("e")
                if e == "depthUpdate" and (not stream or partial(stream) is None):
                    sym = d["s"]
                    st = states.get((venue, sym)) or self._state(venue, sym)
                    inst = st.inst
                    pp, pq, pc, qc = st.pp, st.pq, st.pcache, st.qcache
                    if len(pc) > _CACHE_MAX:
                        pc.clear()
                    if len(qc) > _CACHE_MAX:
                        qc.clear()
                    bids = _levels(d["b"], pc, qc, pp, pq)
                    asks = _levels(d["a"], pc, qc, pp, pq)
                    t = d.get("T") if futures else None
                    ts = _ms(t if t is not None else d["E"])
                    msg = BookDeltas(vid, inst.symbol, bids, asks, ts, ts_init, False, _id(d, "U"),
                                     _id(d, "u"), _id(d, "pu") if futures else -1)
                    st.depth_events += 1
                    st.level_updates += len(bids) + len(asks)
                    if st.synced:
                        st.book.append(msg)
                    else:
                        st.buffer.append(msg)
                    continue
                kind = _kind(stream, d)
                if kind == "bookTicker":
                    sym = d["s"]
                    st = states.get((venue, sym)) or self._state(venue, sym)
                    inst = st.inst
                    pp, pq = st.pp, st.pq
                    t = d.get("T") or d.get("E")
                    ts = _ms(t) if t is not None else ts_init + offset
                    st.quotes.append(QuoteTick(vid, inst.symbol, pp(d["b"]), pq(d["B"]), pp(d["a"]),
                                               pq(d["A"]), ts, ts_init, _id(d, "u")))
                elif kind == "trade" or kind == "aggTrade":
                    sym = d["s"]
                    st = states.get((venue, sym)) or self._state(venue, sym)
                    inst = st.inst
                    m = d["m"]
                    if type(m) is not bool:
                        raise ValueError(f"trade field m={m!r} is not a boolean")
                    t = d.get("T") or d["E"]
                    tick = TradeTick(vid, inst.symbol, st.pp(d["p"]), st.pq(d["q"]), Side.SELL if m else Side.BUY,
                                     TradeId(str(d["t"] if kind == "trade" else d["a"])),
                                     _ms(t), ts_init)
                    (st.trades if kind == "trade" else st.agg_trades).append(tick)
                elif kind == "snapshot":
                    self._snapshot(info, d, ts_init)
                else:
                    sub = stream.partition("@")[2]
                    if _BOOK_STREAM.fullmatch(sub):
                        # a message of a stream this reader decodes that is not what that stream
                        # sends (event type or fields missing): garbled, not an ignored kind
                        raise ValueError(f"{stream} message is not a valid {sub.partition('@')[0]} event "
                                         f"(e={e!r}, fields {sorted(d)[:12]})")
                    report.ignore(sub or str(e or "unknown message"))
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                report.bad_line(name, lineno, _reason(exc))

    def _snapshot(self, info: _FileInfo, d: dict[str, Any], ts_init: int) -> None:
        venue = info.venue
        lid = _id(d, "lastUpdateId")
        sym = d.get("symbol") or self._snapshot_symbol(info, lid)
        st = self._state(venue, sym)
        inst = st.inst
        pp, pq = st.pp, st.pq
        bids = [(pp(p), pq(q)) for p, q in d["bids"]]
        asks = [(pp(p), pq(q)) for p, q in d["asks"]]
        t = d.get("T") or d.get("E")
        ts = _ms(t) if t is not None else ts_init + info.offset_ns
        futures = st.rule == "prev"
        sid = VenueId(venue)
        if st.synced:
            # A later snapshot (a resync): the diffs it does not contain that arrived before it (the
            # REST answer comes after the WS diffs that straddle it) must follow it, exactly as the
            # buffered diffs follow the first snapshot. They are already at the end of the book
            # stream, so the snapshot goes in front of them.
            book = st.book
            i = len(book)
            while i > 0 and not book[i - 1].is_snapshot and (
                    book[i - 1].last_update_id >= lid if futures else book[i - 1].last_update_id > lid):
                i -= 1
            if i < len(book):
                ts = min(ts, book[i].ts_event)
            if i > 0:
                ts = max(ts, book[i - 1].ts_event)  # the book stream stays in ts_event order
            book.insert(i, BookDeltas(sid, inst.symbol, bids, asks, ts, ts_init, True, lid, lid, -1))
        else:
            keep = [m for m in st.buffer if (m.last_update_id >= lid if futures else m.last_update_id > lid)]
            st.pre_snapshot_dropped += len(st.buffer) - len(keep)
            st.buffer.clear()
            st.synced = True
            if keep:
                ts = min(ts, keep[0].ts_event)
            st.book.append(BookDeltas(sid, inst.symbol, bids, asks, ts, ts_init, True, lid, lid, -1))
            st.book.extend(keep)
        st.snapshots += 1

    def _snapshot_symbol(self, info: _FileInfo, lid: int) -> str:
        cands = [st for (v, _), st in self._states.items() if v == info.venue]
        for st in cands:
            if any(m.first_update_id <= lid + 1 and m.last_update_id >= lid for m in st.buffer):
                return st.venue_symbol
        if len(info.symbols) == 1:
            return info.symbols[0]
        if len(cands) == 1:
            return cands[0].venue_symbol
        raise ValueError(f"depth snapshot (lastUpdateId={lid}) names no symbol and the file has "
                         f"{len(info.symbols)} depth symbols")

    # ------------------------------------------------------------------ result
    def _finish(self, source: str) -> Dataset:
        books: dict[BookKey, Instrument] = {}
        rules: dict[BookKey, SequenceRule] = {}
        streams: dict[BookKey, Callable[[], Iterator[MarketEvent]]] = {}
        start, end = None, None
        order = {SPOT: 0, USDM: 1, COINM: 2}
        for key in sorted(self._states, key=lambda k: (order.get(k[0], 9), k[1])):
            st = self._states[key]
            trades = st.trades if st.trades else st.agg_trades
            trades.sort(key=_ts_key)
            st.quotes.sort(key=_ts_key)
            if st.buffer:
                self.report.notes.append(
                    f"{st.venue} {st.venue_symbol}: {len(st.buffer)} depth events never met a snapshot; "
                    "not replayable")
            self.report.books[f"{st.venue}:{st.venue_symbol}"] = {
                "venue": st.venue, "symbol": str(st.inst.symbol), "venue_symbol": st.venue_symbol,
                "tick_size": str(st.inst.tick_size), "lot_size": str(st.inst.lot_size),
                "snapshots": st.snapshots, "depth_events": st.depth_events,
                "level_updates": st.level_updates, "trades": len(st.trades),
                "agg_trades": len(st.agg_trades), "quotes": len(st.quotes),
                "pre_snapshot_dropped": st.pre_snapshot_dropped,
                "off_lot_quantities_floored": st.off_lot[0], "never_synced_depth": len(st.buffer),
            }
            books[key] = st.inst
            rules[key] = st.rule
            lists: list[list[Any]] = [lst for lst in (st.book, trades, st.quotes) if lst]
            streams[key] = _merger(lists)
            for lst in lists:
                lo, hi = lst[0].ts_event, lst[-1].ts_event
                start = lo if start is None else min(start, lo)
                end = hi if end is None else max(end, hi)
        return Dataset(books=books, rules=rules, streams=streams, start_ns=start or 0, end_ns=end or 0,
                       source=source, format="binance-raw", report=self.report)


def _ts_key(ev: TradeTick | QuoteTick) -> int:
    return ev.ts_event


def _merger(lists: list[list[Any]]) -> Callable[[], Iterator[MarketEvent]]:
    import heapq

    def make() -> Iterator[MarketEvent]:
        if len(lists) == 1:
            return iter(lists[0])
        return heapq.merge(*lists, key=_ts_key)

    return make


def _ms(value: Any) -> int:
    """An exchange time in integer ms -> ns. A string or float (a garbled field) is a malformed line
    here, not a string timestamp a million characters long that breaks the merge much later."""
    if type(value) is not int:
        raise ValueError(f"time {value!r} is not an integer of milliseconds")
    return value * 1_000_000


def _id(d: dict[str, Any], key: str) -> int:
    """An update id field: a JSON integer (``int()`` would take ``"12"``, ``1.9`` or ``true``)."""
    value = d[key]
    if type(value) is not int:
        raise ValueError(f"update id {key}={value!r} is not an integer")
    return value


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}"


def read_binance_raw(sources: Sequence[Source], *, max_malformed_samples: int = 20) -> Dataset:
    """Read raw Binance capture files (paths or binary file objects) into a :class:`Dataset`."""
    return BinanceRawReader(max_malformed_samples=max_malformed_samples).read(sources)


__all__ = ["BinanceRawReader", "read_binance_raw", "read_lines"]


def _levels(rows: list[list[str]], pc: dict[str, int], qc: dict[str, int],
            pp: Callable[[str], int], pq: Callable[[str], int]) -> list[tuple[int, int]]:
    """Wire ``[[price, qty], ...]`` -> ``[(ticks, lots), ...]``, memoising the string parses
    (BTC books repeat the same price and size strings constantly)."""
    out = []
    for p, q in rows:
        px = pc.get(p)
        if px is None:
            px = pc[p] = pp(p)
        n = qc.get(q)
        if n is None:
            n = qc[q] = pq(q)
        out.append((px, n))
    return out
