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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from algos.params import parse_duration_ns
from marketdata.errors import ConfigError, DataError
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
        if self.bin_ns <= 0 or self.period_ns % self.bin_ns:
            raise ConfigError(f"bin of {self.bin_ns} ns does not divide the period {self.period_ns} ns",
                              key="bin", allowed="a divisor of 24h, e.g. 1m, 5m, 15m")
        if len(self.volumes) != self.period_ns // self.bin_ns:
            raise ConfigError(f"{len(self.volumes)} volumes for {self.period_ns // self.bin_ns} bins",
                              key="volumes")
        if any(v < 0 for v in self.volumes):
            raise ConfigError("negative volume in profile", key="volumes", allowed=">= 0")

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
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"not JSON: {exc}", source=source) from None
        if not isinstance(raw, dict) or raw.get("format") != PROFILE_FORMAT:
            raise DataError(f"not a {PROFILE_FORMAT} file", source=source)
        if raw.get("version") != 1:
            raise DataError(f"unsupported profile version {raw.get('version')!r} (supported: 1)", source=source)
        try:
            return cls(bin_ns=int(raw["bin_ns"]), period_ns=int(raw["period_ns"]),
                       volumes=tuple(Decimal(str(v)) for v in raw["volumes"]), source=str(raw.get("source", "")))
        except (KeyError, ValueError, ArithmeticError) as exc:
            raise DataError(f"bad profile field: {exc!r}", source=source) from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> VolumeProfile:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read volume profile: {exc.strerror}", file=str(p)) from None
        return cls.from_json(text, source=str(p))

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
