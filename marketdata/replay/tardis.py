"""Reader for Tardis.dev CSV exports (plain or ``.gz``): ``incremental_book_L2`` and ``trades``.

``incremental_book_L2``::

    exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
    binance-futures,BTCUSDT,1723161256493000,1723161255319702,true,bid,61800.2,2.909
    binance-futures,BTCUSDT,1723161256510000,1723161255330100,false,ask,61800.3,0

``trades``::

    exchange,symbol,timestamp,local_timestamp,id,side,price,amount
    binance-futures,BTCUSDT,1723161256322000,1723161255088176,5266583935,buy,61800.3,0.006

Timestamps are microseconds (exchange time, receive time). ``amount`` 0 deletes a level. Consecutive
``is_snapshot=true`` rows of one symbol with the same ``timestamp`` form one snapshot ``BookDeltas``;
a snapshot after deltas (or after a snapshot of another timestamp) resets the book. Delta rows of
one symbol with the same ``timestamp`` are grouped into one ``BookDeltas``. Tardis carries no venue
sequence numbers, so the sequence rule is ``none``; book rows that come before the first snapshot of
their symbol cannot be placed and are dropped (counted).
Trade ``side`` is the aggressor; ``unknown`` is classified with the tick test (above the previous
trade price: buy, below: sell, equal: the previous trade's side) and counted.

Exchanges ``binance``, ``binance-futures``, ``binance-delivery`` map to the venues ``binance-spot``,
``binance-usdm``, ``binance-coinm``; other exchange names are used as venue ids as they are.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from marketdata.book import SequenceRule
from marketdata.errors import DataError
from marketdata.model import BookDeltas, Instrument, MarketEvent, Side, TradeId, TradeTick, VenueId
from marketdata.replay.binance_raw import read_lines
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

EXCHANGE_VENUES = {"binance": SPOT, "binance-futures": USDM, "binance-delivery": COINM}
BOOK_COLUMNS = ("exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price", "amount")
TRADE_COLUMNS = ("exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount")

Source = str | Path | IO[bytes]


@dataclass
class _Book:
    venue: str
    venue_symbol: str
    inst: Instrument
    off_lot: list[int] = field(default_factory=lambda: [0])
    msgs: list[BookDeltas] = field(default_factory=list)
    trades: list[TradeTick] = field(default_factory=list)
    # the group being filled: [is_snapshot, ts_event, ts_init, bids, asks]
    cur: list[Any] | None = None
    seen_snapshot: bool = False
    unplaced_rows: int = 0
    unknown_side: int = 0
    snapshots: int = 0
    rows: int = 0
    pp: Callable[[str], int] = field(init=False)
    pq: Callable[[str], int] = field(init=False)

    def __post_init__(self) -> None:
        self.pp = price_parser(self.inst)
        self.pq = qty_parser(self.inst, self.off_lot)

    def flush(self) -> None:
        cur = self.cur
        if cur is None:
            return
        snap, te, ti, bids, asks = cur
        self.msgs.append(BookDeltas(VenueId(self.venue), self.inst.symbol, bids, asks, te, ti, snap))
        self.cur = None


def _venue(exchange: str) -> str:
    return EXCHANGE_VENUES.get(exchange, exchange)


class TardisReader:
    """Parse Tardis CSV files into a :class:`Dataset` (see the module docstring)."""

    def __init__(self, *, max_malformed_samples: int = 20) -> None:
        self.report = ReadReport(max_samples=max_malformed_samples)
        self._books: dict[BookKey, _Book] = {}
        # last trade (price, side) per book for the tick test; carries over from file to file
        self._last_trade: dict[BookKey, tuple[int, Side]] = {}

    def read(self, sources: Sequence[Source]) -> Dataset:
        if not sources:
            raise DataError("no input files given")
        files: list[tuple[str, str, list[list[str]], list[int]]] = []
        for src in sources:
            name, raw = read_lines(src)
            if not raw:
                raise DataError("empty file (want a Tardis CSV header)", source=name)
            header = raw[0].strip().split(",")
            if tuple(header) == BOOK_COLUMNS:
                kind = "book"
            elif tuple(header) == TRADE_COLUMNS:
                kind = "trades"
            else:
                raise DataError(f"unexpected CSV header {','.join(header)!r}; want "
                                f"{','.join(BOOK_COLUMNS)!r} or {','.join(TRADE_COLUMNS)!r}", source=name)
            rows: list[list[str]] = []
            linenos: list[int] = []
            for i, line in enumerate(raw[1:], 2):
                text = line.strip()
                if not text:
                    continue
                cols = text.split(",")
                if len(cols) != 8:
                    self.report.bad_line(name, i, f"{len(cols)} columns, want 8")
                    continue
                rows.append(cols)
                linenos.append(i)
            self.report.lines += len(raw)
            files.append((name, kind, rows, linenos))
        # Files are read in time order (of their first row), whatever order they were given in:
        # a book's messages and the trade tick test follow the file order.
        files.sort(key=lambda f: _first_timestamp(f[2]))
        self._resolve_instruments(files)
        for name, kind, rows, linenos in files:
            if kind == "book":
                self._read_book(name, rows, linenos)
            else:
                self._read_trades(name, rows, linenos)
        return self._finish(", ".join(f[0] for f in files))

    def _resolve_instruments(self, files: list[tuple[str, str, list[list[str]], list[int]]]) -> None:
        decimals: dict[BookKey, list[int]] = {}
        sd = significant_decimals
        for _, _, rows, _ in files:
            for cols in rows:
                key = (_venue(cols[0]), cols[1])
                if known_instrument(*key) is not None:
                    continue
                acc = decimals.setdefault(key, [0, 0])
                try:
                    dp, dq = sd(cols[6]), sd(cols[7])
                except (ValueError, ArithmeticError):
                    continue
                acc[0] = max(acc[0], dp)
                acc[1] = max(acc[1], dq)
        self._insts: dict[BookKey, Instrument] = {}
        for key, (dp, dq) in decimals.items():
            inst = infer_instrument(key[0], key[1], dp, dq)
            self._insts[key] = inst
            self.report.notes.append(f"{key[0]} {key[1]}: not a known instrument; exact grid inferred "
                                     f"from the CSV: tick {inst.tick_size}, lot {inst.lot_size}")

    def _book(self, exchange: str, symbol: str) -> _Book:
        venue = _venue(exchange)
        key = (venue, symbol)
        b = self._books.get(key)
        if b is None:
            inst = self._insts.get(key) or known_instrument(venue, symbol)
            assert inst is not None
            b = self._books[key] = _Book(venue, symbol, inst)
        return b

    def _read_book(self, name: str, rows: list[list[str]], linenos: list[int]) -> None:
        bad = self.report.bad_line
        books = self._books
        for cols, lineno in zip(rows, linenos, strict=True):
            try:
                exchange, symbol, ts, lts, snap_s, side, price, amount = cols
                b = books.get((_venue(exchange), symbol)) or self._book(exchange, symbol)
                if snap_s == "true":
                    snap = True
                elif snap_s == "false":
                    snap = False
                else:
                    raise ValueError(f"is_snapshot {snap_s!r} is not true/false")
                if side == "bid":
                    is_bid = True
                elif side == "ask":
                    is_bid = False
                else:
                    raise ValueError(f"side {side!r} is not bid/ask")
                te, ti = int(ts) * 1000, int(lts) * 1000
                level = (b.pp(price), b.pq(amount))
            except (ValueError, TypeError) as exc:
                bad(name, lineno, str(exc)[:200])
                continue
            b.rows += 1
            cur = b.cur
            if snap:
                # a snapshot is one venue message, one timestamp: snapshot rows straight after a
                # snapshot but at another timestamp are the NEXT snapshot (a reconnect with no
                # deltas in between), not more levels of the first (its stale levels would stay)
                if cur is None or not cur[0] or cur[1] != te:
                    b.flush()
                    cur = b.cur = [True, te, ti, [], []]
                    b.seen_snapshot = True
                    b.snapshots += 1
            else:
                if not b.seen_snapshot:
                    b.unplaced_rows += 1
                    continue
                if cur is None or cur[0] or cur[1] != te:
                    b.flush()
                    cur = b.cur = [False, te, ti, [], []]
            assert cur is not None
            (cur[3] if is_bid else cur[4]).append(level)

    def _read_trades(self, name: str, rows: list[list[str]], linenos: list[int]) -> None:
        bad = self.report.bad_line
        books = self._books
        last = self._last_trade
        for cols, lineno in zip(rows, linenos, strict=True):
            try:
                exchange, symbol, ts, lts, tid, side_s, price, amount = cols
                b = books.get((_venue(exchange), symbol)) or self._book(exchange, symbol)
                px, lots = b.pp(price), b.pq(amount)
                te, ti = int(ts) * 1000, int(lts) * 1000
                key = (b.venue, symbol)
                if side_s == "buy":
                    side = Side.BUY
                elif side_s == "sell":
                    side = Side.SELL
                elif side_s == "unknown":
                    prev = last.get(key)
                    if prev is None or px == prev[0]:
                        side = prev[1] if prev else Side.BUY
                    else:
                        side = Side.BUY if px > prev[0] else Side.SELL
                    b.unknown_side += 1
                else:
                    raise ValueError(f"side {side_s!r} is not buy/sell/unknown")
            except (ValueError, TypeError) as exc:
                bad(name, lineno, str(exc)[:200])
                continue
            last[key] = (px, side)
            b.trades.append(TradeTick(VenueId(b.venue), b.inst.symbol, px, lots, side, TradeId(tid), te, ti))

    def _finish(self, source: str) -> Dataset:
        books: dict[BookKey, Instrument] = {}
        rules: dict[BookKey, SequenceRule] = {}
        streams: dict[BookKey, Callable[[], Iterator[MarketEvent]]] = {}
        start: int | None = None
        end: int | None = None
        for key, b in self._books.items():
            b.flush()
            b.trades.sort(key=lambda t: t.ts_event)
            if b.unplaced_rows:
                self.report.notes.append(f"{b.venue} {b.venue_symbol}: {b.unplaced_rows} book rows before "
                                         "the first snapshot dropped")
            self.report.books[f"{b.venue}:{b.venue_symbol}"] = {
                "venue": b.venue, "symbol": str(b.inst.symbol), "venue_symbol": b.venue_symbol,
                "tick_size": str(b.inst.tick_size), "lot_size": str(b.inst.lot_size),
                "snapshots": b.snapshots, "depth_events": len(b.msgs) - b.snapshots, "book_rows": b.rows,
                "trades": len(b.trades), "unknown_side_trades": b.unknown_side,
                "rows_before_first_snapshot": b.unplaced_rows, "off_lot_quantities_floored": b.off_lot[0],
            }
            books[key] = b.inst
            rules[key] = "none"
            lists: list[list[Any]] = [lst for lst in (b.msgs, b.trades) if lst]
            streams[key] = _merger(lists)
            for lst in lists:
                lo, hi = lst[0].ts_event, lst[-1].ts_event
                start = lo if start is None else min(start, lo)
                end = hi if end is None else max(end, hi)
        return Dataset(books=books, rules=rules, streams=streams, start_ns=start or 0, end_ns=end or 0,
                       source=source, format="tardis", report=self.report)


def _first_timestamp(rows: list[list[str]]) -> int:
    """``timestamp`` of the first row that has a valid one (files without any sort last)."""
    for cols in rows:
        try:
            return int(cols[2])
        except ValueError:
            continue
    return 1 << 62


def _ts(ev: Any) -> int:
    return int(ev.ts_event)


def _merger(lists: list[list[Any]]) -> Callable[[], Iterator[MarketEvent]]:
    def make() -> Iterator[MarketEvent]:
        return iter(lists[0]) if len(lists) == 1 else heapq.merge(*lists, key=_ts)

    return make


def read_tardis(sources: Sequence[Source], *, max_malformed_samples: int = 20) -> Dataset:
    """Read Tardis ``incremental_book_L2`` and/or ``trades`` CSV files into a :class:`Dataset`."""
    return TardisReader(max_malformed_samples=max_malformed_samples).read(sources)
