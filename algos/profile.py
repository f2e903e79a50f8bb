"""Intraday volume profiles for VWAP: built from trades, saved/loaded as JSON, or parametric.

A :class:`VolumeProfile` is the traded volume per time-of-day bin: the day (``period_ns``,
default 24 h, origin UTC midnight) is cut into bins of ``bin_ns``; bin ``i`` covers
``[i * bin_ns, (i + 1) * bin_ns)`` of every day. Volumes are exact ``Decimal`` base-asset
quantities summed over all the days seen (only their proportions matter to VWAP).

Build one from history with :func:`build_profile` (trade events, ``(ts_ns, quantity)`` pairs, or
files: anything :func:`marketdata.replay.open_dataset` reads, else raw Binance captures of
``<recv_ns> <json>`` lines whose ``@trade`` messages are used), or from the command line::

    python -m algos.profile --bin 60s --out profile.json /path/spot_btcusdt_20240808.gz ...

JSON format (``format`` and ``version`` are checked on load)::

    {"format": "sorex.volume_profile", "version": 1, "period_ns": 86400000000000,
     "bin_ns": 60000000000, "volumes": ["0", "12.345", ...], "source": "..."}

:meth:`VolumeProfile.u_shape` is the parametric default when no history is given: a U over a
session (``1 + (edge_ratio - 1) * (2u - 1)^2`` for ``u`` the position in the session, zero
outside it).
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from algos.params import parse_duration_ns
from marketdata.errors import ConfigError, DataError, SorexError
from marketdata.model import TradeTick

__all__ = ["PROFILE_FORMAT", "VolumeProfile", "build_profile", "main", "read_trade_quantities"]

log = logging.getLogger(__name__)

PROFILE_FORMAT = "sorex.volume_profile"
DAY_NS = 86_400_000_000_000


@dataclass(frozen=True)
class VolumeProfile:
    """Volume per time-of-day bin (see module doc)."""

    bin_ns: int
    volumes: tuple[Decimal, ...]
    period_ns: int = DAY_NS
    source: str = ""

    def __post_init__(self) -> None:
        _check_fields(self.bin_ns, self.period_ns, self.volumes, _config_error(None), bin_key="bin")

    @property
    def n_bins(self) -> int:
        return len(self.volumes)

    @property
    def total(self) -> Decimal:
        return sum(self.volumes, Decimal(0))

    def segments(self, start_ns: int, end_ns: int) -> list[tuple[int, int, Fraction]]:
        """Cut ``[start_ns, end_ns)`` at bin edges: ``(seg_start, seg_end, weight)`` with weight
        the bin's volume times the covered fraction of the bin (exact). Wraps across midnight."""
        out: list[tuple[int, int, Fraction]] = []
        t = start_ns
        while t < end_ns:
            idx = (t % self.period_ns) // self.bin_ns
            bin_start = t - (t % self.period_ns) % self.bin_ns
            seg_end = min(end_ns, bin_start + self.bin_ns)
            vol = Fraction(self.volumes[idx])
            out.append((t, seg_end, vol * Fraction(seg_end - t, self.bin_ns)))
            t = seg_end
        return out

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> str:
        return json.dumps({"format": PROFILE_FORMAT, "version": 1, "period_ns": self.period_ns,
                           "bin_ns": self.bin_ns, "volumes": [str(v) for v in self.volumes],
                           "source": self.source}, indent=1)

    @classmethod
    def from_json(cls, text: str, *, source: str = "<string>") -> VolumeProfile:
        """Parse the JSON format; a bad document raises :class:`DataError` naming ``source`` and
        the field (:meth:`load` raises :class:`ConfigError` instead: the file is user input)."""
        def bad(key: str, message: str, allowed: str | None) -> SorexError:
            return DataError(f"key '{key}': {message}" + (f" (allowed: {allowed})" if allowed else ""),
                             source=source)
        return cls._parse(text, bad)

    @classmethod
    def _parse(cls, text: str, bad: _Bad) -> VolumeProfile:
        """The profile in ``text``; every problem is raised as ``bad(key, message, allowed)``, the
        key being the JSON field at fault (``profile`` when the text is not a JSON object)."""
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise bad("profile", f"not JSON: {exc}", None) from None
        if not isinstance(raw, dict) or raw.get("format") != PROFILE_FORMAT:
            raise bad("format", f"not a {PROFILE_FORMAT} file", f'"format": "{PROFILE_FORMAT}"')
        if raw.get("version") != 1:
            raise bad("version", f"unsupported profile version {raw.get('version')!r}", "1")
        ints: dict[str, int] = {}
        for key in ("bin_ns", "period_ns"):
            v = raw.get(key)
            if isinstance(v, bool) or not isinstance(v, int):
                raise bad(key, "missing" if key not in raw else f"{v!r} is not an integer", "integer nanoseconds > 0")
            ints[key] = v
        vols = raw.get("volumes")
        if not isinstance(vols, list):
            raise bad("volumes", "missing" if "volumes" not in raw else f"{type(vols).__name__} is not a list",
                      "a list of decimal strings, one per bin")
        volumes: list[Decimal] = []
        for i, v in enumerate(vols):
            d: Decimal | None = None
            if isinstance(v, str | int | float) and not isinstance(v, bool):
                try:
                    d = Decimal(str(v))
                except ArithmeticError:
                    d = None
            if d is None:
                raise bad("volumes", f"volume {i} ({v!r}) is not a number", "decimal strings >= 0")
            volumes.append(d)
        _check_fields(ints["bin_ns"], ints["period_ns"], volumes, bad, bin_key="bin_ns")
        return cls(bin_ns=ints["bin_ns"], period_ns=ints["period_ns"], volumes=tuple(volumes),
                   source=str(raw.get("source", "")))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> VolumeProfile:
        """Read a profile file. Any problem with it (unreadable, not JSON, a bad field) raises
        :class:`ConfigError` naming the file and the field at fault (the ``key``)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise ConfigError(f"cannot read volume profile: {why}", file=str(p), key="profile") from None
        return cls._parse(text, _config_error(str(p)))

    # ------------------------------------------------------------------ parametric
    @classmethod
    def u_shape(cls, bin_ns: int = 300_000_000_000, *, session_start_ns: int = 0,
                session_end_ns: int = DAY_NS, edge_ratio: Decimal | int = 3,
                period_ns: int = DAY_NS) -> VolumeProfile:
        """A U-shaped profile over one session of the day: the first and last bins weigh
        ``edge_ratio`` times the middle one; bins outside the session weigh zero."""
        ratio = Decimal(edge_ratio)
        if ratio < 1:
            raise ConfigError(f"{edge_ratio}", key="edge_ratio", allowed=">= 1")
        if not 0 <= session_start_ns < session_end_ns <= period_ns:
            raise ConfigError("session must satisfy 0 <= start < end <= period", key="session")
        n = period_ns // bin_ns
        length = Decimal(session_end_ns - session_start_ns)
        vols = []
        for i in range(n):
            mid = i * bin_ns + bin_ns // 2
            if session_start_ns <= mid < session_end_ns:
                u = Decimal(mid - session_start_ns) / length
                vols.append((1 + (ratio - 1) * (2 * u - 1) ** 2).quantize(Decimal("0.000001")))
            else:
                vols.append(Decimal(0))
        return cls(bin_ns=bin_ns, volumes=tuple(vols), period_ns=period_ns, source=f"u_shape({ratio})")


_Bad = Callable[[str, str, str | None], SorexError]
"""Makes the error for a bad profile field: ``(key, message, allowed)``."""


def _config_error(file: str | None) -> _Bad:
    def bad(key: str, message: str, allowed: str | None) -> SorexError:
        return ConfigError(message, file=file, key=key, allowed=allowed)
    return bad


def _check_fields(bin_ns: int, period_ns: int, volumes: Sequence[Decimal], bad: _Bad, *, bin_key: str) -> None:
    """The profile invariants: a positive period, a bin dividing it, one finite volume >= 0 per bin."""
    if period_ns <= 0:
        raise bad("period_ns", f"period of {period_ns} ns", "> 0, e.g. 86400000000000 (24h)")
    if bin_ns <= 0 or period_ns % bin_ns:
        raise bad(bin_key, f"bin of {bin_ns} ns does not divide the period {period_ns} ns",
                  "a divisor of 24h, e.g. 1m, 5m, 15m")
    if len(volumes) != period_ns // bin_ns:
        raise bad("volumes", f"{len(volumes)} volumes for {period_ns // bin_ns} bins", None)
    for i, v in enumerate(volumes):
        if not v.is_finite() or v < 0:   # NaN compares with an exception, Infinity broke segments()
            raise bad("volumes", f"volume {i} is {v}" if v.is_finite() else f"volume {i} is {v}, not finite",
                      "finite, >= 0")


# ---------------------------------------------------------------------- building
TradeLike = TradeTick | tuple[int, Decimal]


def build_profile(trades: Iterable[TradeLike] | Sequence[str | Path], *, bin_ns: int = 300_000_000_000,
                  period_ns: int = DAY_NS, lot_size: Decimal | None = None,
                  source: str = "") -> VolumeProfile:
    """Sum traded quantity per time-of-day bin.

    ``trades``: :class:`TradeTick` events (their ``lots`` times ``lot_size``, or raw lots when
    ``lot_size`` is None: do not mix venues with different lots then), ``(ts_ns, quantity)``
    pairs, or file paths (see :func:`read_trade_quantities`). Times are exchange time."""
    if bin_ns <= 0 or period_ns % bin_ns:
        raise ConfigError(f"bin of {bin_ns} ns does not divide the period", key="bin",
                          allowed="a divisor of 24h, e.g. 1m, 5m, 15m")
    items = list(trades) if not isinstance(trades, (str, Path)) else [trades]
    if items and all(isinstance(x, (str, Path)) for x in items):
        paths = [Path(str(x)) for x in items]
        source = source or ",".join(p.name for p in paths)
        stream: Iterable[TradeLike] = read_trade_quantities(paths)
    else:
        stream = items  # type: ignore[assignment]
    vols = [Decimal(0)] * (period_ns // bin_ns)
    count = 0
    for t in stream:
        if isinstance(t, TradeTick):
            ts, qty = t.ts_event, (Decimal(t.lots) * lot_size if lot_size is not None else Decimal(t.lots))
        else:
            ts, qty = t
        vols[(ts % period_ns) // bin_ns] += qty
        count += 1
    if count == 0:
        raise DataError("no trades to build a volume profile from", source=source or None)
    log.info("volume profile from %d trades (%s), %d bins of %d ns", count, source, len(vols), bin_ns)
    return VolumeProfile(bin_ns=bin_ns, volumes=tuple(vols), period_ns=period_ns, source=source)


def read_trade_quantities(paths: Sequence[Path]) -> Iterator[tuple[int, Decimal]]:
    """``(exchange ts_ns, base quantity)`` of every trade in the files.

    Uses :func:`marketdata.replay.open_dataset` when that module exists; otherwise reads raw
    Binance captures (``<recv_ns> <json>`` lines, gzip or plain) and takes each ``@trade``
    message's trade time ``T`` (ms) and quantity ``q`` (parsed from its string)."""
    try:
        replay = importlib.import_module("marketdata.replay")
    except ImportError:
        replay = None
    if replay is not None:
        ds = replay.open_dataset(list(paths))
        insts = ds.instruments
        for ev in ds.events():
            if isinstance(ev, TradeTick):
                inst = insts.get(ev.venue)
                qty = inst.lots_to_qty(ev.lots) * inst.contract_size if inst is not None else Decimal(ev.lots)
                yield ev.ts_event, qty
        return
    for path in paths:
        yield from _binance_trades(path)


def _binance_trades(path: Path) -> Iterator[tuple[int, Decimal]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        fh = opener(path, "rt", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot open: {exc}", source=str(path)) from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            if "@trade" not in line:
                continue
            _, _, body = line.partition(" ")
            try:
                data = json.loads(body)["data"]
                yield int(data["T"]) * 1_000_000, Decimal(data["q"])
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                raise DataError(f"bad trade message: {exc!r}", source=str(path), line=lineno) from None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m algos.profile [--bin 5m] --out FILE TRADE_FILES...``: build and save."""
    ap = argparse.ArgumentParser(prog="python -m algos.profile",
                                 description="Build an intraday volume profile (JSON) from trade files.")
    ap.add_argument("files", nargs="+", help="trade data files (raw Binance capture, or any replay format)")
    ap.add_argument("--bin", default="5m", help="bin width, a divisor of 24h (default 5m)")
    ap.add_argument("--out", required=True, help="output JSON path")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    prof = build_profile([Path(f) for f in args.files], bin_ns=parse_duration_ns(args.bin, key="bin"))
    prof.save(args.out)
    nonzero = sum(1 for v in prof.volumes if v)
    log.info("wrote %s: %d bins (%d non-empty), total volume %s", args.out, prof.n_bins, nonzero, prof.total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
