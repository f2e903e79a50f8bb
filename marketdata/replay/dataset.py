"""The :class:`Dataset`: normalized market events of one or several books, merged in exchange time.

A dataset is what every replay consumer (``sorex route``, the engine, TCA, ``sorex data check``)
reads. It is built by one of the readers (raw Binance captures, Tardis CSV, the bundled ``.npz``)
and always has the same guarantees:

* per book, a snapshot :class:`~marketdata.model.BookDeltas` (``is_snapshot=True``) comes before
  any diff, and diffs follow in the venue's chain order, so :meth:`L2Book.apply` with
  :meth:`Dataset.sequence_rule` rebuilds the venue's book;
* :meth:`Dataset.events` merges all books by ``ts_event`` (exchange time, ns); ties keep the
  order of the venues as listed in ``instruments``; within one book the chain order always wins;
* ``ts_init`` is the collector's receive time (ns), when the source has one.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from marketdata.book import SequenceRule
from marketdata.model import Instrument, MarketEvent

_ts_event = attrgetter("ts_event")


@dataclass
class Malformed:
    """One skipped input line: where and why."""

    source: str
    line: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "reason": self.reason}


@dataclass
class ReadReport:
    """What a reader saw: line counts, malformed lines (first ``max_samples`` kept with line
    numbers), ignored message kinds, per-book counters and free-text notes."""

    max_samples: int = 20
    lines: int = 0
    malformed: int = 0
    malformed_samples: list[Malformed] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    books: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def bad_line(self, source: str, line: int, reason: str) -> None:
        """Count one malformed line; keep its location while fewer than ``max_samples`` are kept."""
        self.malformed += 1
        if len(self.malformed_samples) < self.max_samples:
            self.malformed_samples.append(Malformed(source, line, reason))

    def ignore(self, what: str) -> None:
        self.ignored[what] = self.ignored.get(what, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines, "malformed": self.malformed,
            "malformed_lines": [m.to_dict() for m in self.malformed_samples],
            "ignored": dict(self.ignored), "books": self.books, "notes": list(self.notes),
        }


BookKey = tuple[str, str]
"""(venue id, venue symbol)."""


class Dataset:
    """Normalized, replayable market data of one or more books.

    ``instruments`` maps venue id -> :class:`Instrument` (the first book of that venue; when a
    source holds several symbols of one venue the others are keyed ``"<venue>:<unified symbol>"``);
    ``books`` maps (venue, venue symbol) -> :class:`Instrument` for all of them.
    """

    def __init__(self, *, books: dict[BookKey, Instrument], rules: dict[BookKey, SequenceRule],
                 streams: dict[BookKey, Callable[[], Iterator[MarketEvent]]], start_ns: int, end_ns: int,
                 source: str, format: str, report: ReadReport | None = None) -> None:
        self.books = dict(books)
        self._rules = dict(rules)
        self._streams = dict(streams)
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.source = source
        self.format = format
        self.report = report if report is not None else ReadReport()
        self.provenance: dict[str, Any] = {}
        self.instruments: dict[str, Instrument] = {}
        for (venue, _), inst in self.books.items():
            key = venue if venue not in self.instruments else f"{venue}:{inst.symbol}"
            self.instruments[key] = inst

    @property
    def venues(self) -> list[str]:
        """Venue ids present, in source order (duplicates removed)."""
        return list(dict.fromkeys(v for v, _ in self.books))

    def sequence_rule(self, venue: str) -> SequenceRule:
        """The :class:`L2Book` sequence rule for ``venue``'s books: ``contiguous`` (Binance spot),
        ``prev`` (Binance futures, ``pu``) or ``none`` (sources without update ids)."""
        for (v, _), rule in self._rules.items():
            if v == venue:
                return rule
        raise KeyError(f"venue {venue!r} not in dataset (venues: {', '.join(self.venues)})")

    def rule_of(self, venue: str, venue_symbol: str) -> SequenceRule:
        """Sequence rule of one book."""
        return self._rules[(venue, venue_symbol)]

    def events(self, venues: Iterable[str] | None = None) -> Iterator[MarketEvent]:
        """All events of the chosen venues (all when ``None``) merged by ``ts_event``. O(n log k)
        for k books; each call starts a fresh replay."""
        chosen = None if venues is None else set(venues)
        if chosen is not None:
            unknown = chosen - set(self.venues)
            if unknown:
                raise KeyError(f"venues {sorted(unknown)} not in dataset (venues: {', '.join(self.venues)})")
        iters = [make() for key, make in self._streams.items() if chosen is None or key[0] in chosen]
        if len(iters) == 1:
            return iters[0]
        return heapq.merge(*iters, key=_ts_event)

    def __repr__(self) -> str:
        return (f"Dataset(format={self.format!r}, source={self.source!r}, books={list(self.books)}, "
                f"start_ns={self.start_ns}, end_ns={self.end_ns})")
