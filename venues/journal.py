"""The run journal: an append-only SQLite log of everything that happened in a run.

Format (docs/contracts.md, fixed)::

    events(seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, kind TEXT NOT NULL,
           venue TEXT, client_order_id TEXT, parent_id TEXT, payload TEXT NOT NULL)

``payload`` is JSON; numbers that are prices, quantities or fees are decimal *strings*
(``"61800.20"``), times integer nanoseconds. :class:`~decimal.Decimal` values become strings, enums
their value; floats are written as their shortest decimal string (never a binary float on disk).

Durability: the database runs in WAL mode and :meth:`Journal.append` commits before it returns, so
the caller acts (sends an order, updates state) only after the record is on disk. The default
``synchronous=FULL`` fsyncs the WAL at every commit: a record that ``append`` returned survives a
process kill *and* a power cut or kernel crash. ``synchronous=NORMAL`` survives a process kill
(SIGKILL) but may lose the last commits on power loss; it is a fine choice for simulations, where
no real order depends on the record. The cost of both is measured in bench/results/oms.md.

Secrets: every payload goes through :func:`scrub` first. Keys that look secret (``api_key``,
``secret``, ``signature``, ``passphrase``, ``password``, ``token``, ...) are removed (or, with
``on_secret="refuse"``, the append is refused), and ``key=value`` / ``"key": "value"`` fragments
inside strings (a raw venue message, a signed query string) are redacted.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from marketdata.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["KINDS", "Journal", "JournalRecord", "SecretInPayload", "scrub"]

KINDS = frozenset({"run_started", "parent_submitted", "parent_finished", "routing_decision",
                   "order_command", "order_event", "fill", "risk_refused", "garbled_event",
                   "open_orders_at_start", "foreign_order_event"})
"""The record kinds of docs/contracts.md."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    venue TEXT,
    client_order_id TEXT,
    parent_id TEXT,
    payload TEXT NOT NULL
)"""

_SECRET_WORDS = ("api_key", "apikey", "secret", "signature", "passphrase", "password", "token",
                 "private_key", "mbx_apikey", "access_key", "auth", "listenkey")
_REDACTED = "<redacted>"
_SECRET_ALT = "|".join(re.escape(w) for w in sorted(_SECRET_WORDS, key=len, reverse=True))
# key=value (query strings, headers) and "key": "value" (JSON text) with a secret-looking key
_QS_RE = re.compile(rf"(?i)([A-Za-z0-9_\-]*(?:{_SECRET_ALT})[A-Za-z0-9_\-]*=)[^&\s\"',;]+")
_JSON_RE = re.compile(rf"(?i)(\"[A-Za-z0-9_\-]*(?:{_SECRET_ALT})[A-Za-z0-9_\-]*\"\s*:\s*)\"[^\"]*\"")


class SecretInPayload(ValueError):
    """A payload carried a secret-looking key and the journal was told to refuse such payloads."""


def _is_secret_key(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return any(w in k for w in _SECRET_WORDS)


def scrub(value: Any, *, on_secret: Literal["remove", "refuse"] = "remove", path: str = "payload") -> Any:
    """A copy of ``value`` with secret-looking keys removed and secrets inside strings redacted.

    With ``on_secret="refuse"`` a secret-looking key raises :class:`SecretInPayload` naming its path
    instead of being removed."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            ks = str(k)
            if _is_secret_key(ks):
                if on_secret == "refuse":
                    raise SecretInPayload(f"{path}.{ks} looks like a secret; the journal never stores secrets")
                log.warning("journal: dropped secret-looking key %s.%s", path, ks)
                continue
            out[ks] = scrub(v, on_secret=on_secret, path=f"{path}.{ks}")
        return out
    if isinstance(value, (list, tuple)):
        return [scrub(v, on_secret=on_secret, path=f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):
        if _QS_RE.search(value) or _JSON_RE.search(value):
            if on_secret == "refuse":
                raise SecretInPayload(f"{path} contains a secret-looking key=value")
            value = _JSON_RE.sub(lambda m: m.group(1) + '"' + _REDACTED + '"', value)
            value = _QS_RE.sub(lambda m: m.group(1) + _REDACTED, value)
        return value
    return value


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    raise TypeError(f"journal payload value {obj!r} of type {type(obj).__name__} is not serialisable")


def _floats_to_str(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        return {k: _floats_to_str(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_floats_to_str(v) for v in value]
    return value


def encode_payload(payload: Mapping[str, Any], *, on_secret: Literal["remove", "refuse"] = "remove") -> str:
    """JSON text of a scrubbed payload (Decimals and floats as strings, enums as values)."""
    return json.dumps(_floats_to_str(scrub(payload, on_secret=on_secret)), default=_default,
                      separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One row of the journal; ``payload`` is the decoded JSON object."""

    seq: int
    ts_ns: int
    kind: str
    venue: str | None
    client_order_id: str | None
    parent_id: str | None
    payload: dict[str, Any]


class Journal:
    """Append-only SQLite journal (see the module docstring for format and durability).

    Not thread-safe: one writer (the engine thread). Readers in other processes may open the same
    file concurrently (WAL)."""

    def __init__(self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL",
                 on_secret: Literal["remove", "refuse"] = "remove", strict_kinds: bool = True) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"journal synchronous={synchronous!r}: allowed FULL, NORMAL")
        self.path = Path(path)
        self._on_secret: Literal["remove", "refuse"] = on_secret
        self._strict_kinds = strict_kinds
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so append() is one transaction
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:   # sqlite's own text names no file ("unable to open database file")
            why = "its directory does not exist" if not self.path.parent.is_dir() else str(e)
            raise DataError(f"journal {self.path}: cannot open it: {why}") from e
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise DataError(f"journal {self.path}: could not enable WAL (got {mode})")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(_SCHEMA)
            self._db.execute("CREATE INDEX IF NOT EXISTS events_parent ON events(parent_id)")
            self._db.execute("CREATE INDEX IF NOT EXISTS events_kind ON events(kind)")
        except sqlite3.Error as e:   # not a database, read-only, locked...
            self._db.close()
            raise DataError(f"journal {self.path}: cannot use it: {type(e).__name__}: {e}") from e
        except DataError:
            self._db.close()
            raise
        self.appended = 0

    def append(self, kind: str, ts_ns: int, payload: Mapping[str, Any], *, venue: str | None = None,
               client_order_id: str | None = None, parent_id: str | None = None) -> int:
        """Write one record and commit it; returns its ``seq``. The record is durable (per the
        ``synchronous`` setting) when this returns."""
        if self._strict_kinds and kind not in KINDS:
            raise ValueError(f"journal kind {kind!r} unknown (allowed: {', '.join(sorted(KINDS))})")
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
            raise TypeError(f"journal ts_ns must be integer nanoseconds, got {ts_ns!r}")
        text = encode_payload(payload, on_secret=self._on_secret)
        cur = self._db.execute(
            "INSERT INTO events(ts_ns, kind, venue, client_order_id, parent_id, payload) VALUES (?,?,?,?,?,?)",
            (ts_ns, kind, venue, client_order_id, parent_id, text))
        # autocommit mode: the INSERT is its own committed transaction once execute() returns
        self.appended += 1
        seq = cur.lastrowid
        assert seq is not None
        return seq

    def read(self, kinds: Iterable[str] | None = None, parent_id: str | None = None) -> Iterator[JournalRecord]:
        """Records in ``seq`` order, optionally only of ``kinds`` and/or one ``parent_id``."""
        sql = "SELECT seq, ts_ns, kind, venue, client_order_id, parent_id, payload FROM events"
        where: list[str] = []
        args: list[Any] = []
        if kinds is not None:
            ks = list(kinds)
            where.append(f"kind IN ({','.join('?' * len(ks))})" if ks else "0")
            args.extend(ks)
        if parent_id is not None:
            where.append("parent_id = ?")
            args.append(parent_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        for seq, ts, kind, venue, coid, pid, text in self._db.execute(sql, args).fetchall():
            try:
                payload = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path}: record seq={seq} has a malformed payload: {e}") from None
            yield JournalRecord(seq, ts, kind, venue, coid, pid, payload)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
