"""Parameters shared by every execution algo, and their validation.

Everything that arrives from a user (TOML, CLI, journal) is parsed here into integers: times in
nanoseconds since the Unix epoch, prices in common ticks, quantities in common lots. Each bad
value raises :class:`~marketdata.errors.ConfigError` naming the parameter (``key``) and the
allowed values, so ``sorex run`` can print exactly what to fix.

Time forms accepted by :func:`parse_time` (``now_ns`` anchors the relative ones):

* an ``int`` (or digit string) of nanoseconds since the epoch, e.g. ``1723161255342000000``;
* ``"now"``;
* a relative offset ``"+20m"``, ``"+90s"``, ``"+1h30m"``, ``"+250ms"``, ``"+2d"``;
* ISO-8601 with a zone, ``"2024-08-08T23:55:00Z"`` / ``"2024-08-09T01:55:00+02:00"``
  (a naive ISO time is refused: the zone must be explicit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from marketdata.errors import ConfigError
from marketdata.model import Side

__all__ = [
    "CommonParams",
    "parse_decimal",
    "parse_duration_ns",
    "parse_time",
    "price_to_ticks",
    "qty_to_lots",
    "rate_ratio",
]

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d)")


def parse_duration_ns(value: str | int, *, key: str) -> int:
    """``"1h30m"``, ``"90s"``, ``"250ms"`` or an int of nanoseconds -> nanoseconds (> 0)."""
    if isinstance(value, bool):
        raise ConfigError(f"{value!r} is not a duration", key=key, allowed="e.g. 30s, 20m, 1h30m, 500ms")
    if isinstance(value, int):
        ns = value
    else:
        text = str(value).strip().lower()
        if text.isdigit():
            ns = int(text)
        else:
            pos, total = 0, Decimal(0)
            for m in _DURATION_RE.finditer(text):
                if m.start() != pos:
                    break
                total += Decimal(m.group(1)) * _UNIT_NS[m.group(2)]
                pos = m.end()
            if pos != len(text) or not text:
                raise ConfigError(f"{value!r} is not a duration", key=key,
                                  allowed="<number><unit>... with units ns, us, ms, s, m, h, d (e.g. 1h30m)")
            ns = int(total)
    if ns <= 0:
        raise ConfigError(f"duration {value!r} must be positive", key=key, allowed="> 0")
    return ns


def parse_time(value: str | int | None, *, now_ns: int, key: str, default_ns: int | None = None) -> int:
    """Parse an absolute or relative time to integer ns since the epoch (see module doc)."""
    if value is None:
        if default_ns is None:
            raise ConfigError("a time is required", key=key, allowed="ns, 'now', '+20m', ISO-8601 with zone")
        return default_ns
    if isinstance(value, bool):
        raise ConfigError(f"{value!r} is not a time", key=key, allowed="ns, 'now', '+20m', ISO-8601 with zone")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"time {value} is negative", key=key, allowed="ns since the Unix epoch >= 0")
        return value
    text = str(value).strip()
    if text.lower() == "now":
        return now_ns
    if text.startswith("+"):
        return now_ns + parse_duration_ns(text[1:], key=key)
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{value!r} is not a time", key=key,
                          allowed="ns since epoch, 'now', '+20m', ISO-8601 with zone") from None
    if dt.tzinfo is None:
        raise ConfigError(f"ISO time {value!r} has no zone", key=key,
                          allowed="ISO-8601 with 'Z' or an offset, e.g. 2024-08-08T23:55:00Z")
    # exact integer ns: seconds since epoch from the aware datetime, microseconds separately
    whole = int(dt.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + dt.microsecond * 1_000


def format_ns(ns: int) -> str:
    """An epoch-ns time as ISO-8601 UTC with milliseconds (for messages)."""
    s, rem = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 1_000_000:03d}Z"


def parse_decimal(value: Any, *, key: str, positive: bool = False, allow_zero: bool = True) -> Decimal:
    """Parse a number from a string/int/Decimal (floats refused: they are not exact)."""
    if isinstance(value, (float, bool)):
        raise ConfigError(f"{value!r}: pass numbers as strings or Decimal, not float/bool", key=key)
    try:
        d = Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        raise ConfigError(f"{value!r} is not a number", key=key) from None
    if not d.is_finite():
        raise ConfigError(f"{value!r} is not finite", key=key)
    if positive and (d < 0 or (d == 0 and not allow_zero)):
        raise ConfigError(f"{value} must be {'> 0' if not allow_zero else '>= 0'}", key=key,
                          allowed="> 0" if not allow_zero else ">= 0")
    return d


def price_to_ticks(price: Decimal, tick_size: Decimal, side: Side, *, key: str) -> int:
    """Limit price -> common ticks, rounded to the passive side (buy down, sell up)."""
    if price <= 0:
        raise ConfigError(f"price {price} must be positive", key=key, allowed="> 0")
    q = price / tick_size
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    ticks = int(q.to_integral_value(rounding=rounding))
    if ticks <= 0:
        raise ConfigError(f"price {price} rounds to zero ticks of {tick_size}", key=key)
    return ticks


def qty_to_lots(quantity: Decimal, lot_size: Decimal, *, key: str, allow_zero: bool = False) -> int:
    """Quantity -> common lots, rounded down; zero (unless allowed) or negative is an error."""
    if quantity < 0 or (quantity == 0 and not allow_zero):
        raise ConfigError(f"quantity {quantity} must be {'>= 0' if allow_zero else '> 0'}", key=key,
                          allowed="> 0")
    lots = int((quantity / lot_size).to_integral_value(rounding=ROUND_FLOOR))
    if lots == 0 and not allow_zero:
        raise ConfigError(f"quantity {quantity} is less than one lot ({lot_size})", key=key,
                          allowed=f">= {lot_size}")
    return lots


def rate_ratio(rate: float) -> tuple[int, int]:
    """A rate (a float in [0, 1]) as the exact ratio ``(num, den)`` it stands for, so that
    ``vol * num // den`` is the exact floor of ``rate * vol``: ``int(0.29 * 100)`` is 28 in binary
    floating point, and the default POV ceiling ``0.3 * 1.5`` is 0.44999999999999996."""
    f = Fraction(rate).limit_denominator(1_000_000_000)
    return f.numerator, f.denominator


def _fraction(value: Any, *, key: str, low_open: bool = True) -> float:
    """A ratio in (0, 1] (or [0, 1] with ``low_open=False``); these are model inputs, not prices."""
    allowed = "(0, 1]" if low_open else "[0, 1]"
    if isinstance(value, bool):
        raise ConfigError(f"{value!r} is not a number", key=key, allowed=allowed)
    try:
        f = float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{value!r} is not a number", key=key, allowed=allowed) from None
    lo_ok = f > 0 if low_open else f >= 0
    if not (lo_ok and f <= 1):
        raise ConfigError(f"{value} is out of range", key=key, allowed=allowed)
    return f


@dataclass(frozen=True, slots=True)
class CommonParams:
    """Parameters every algo understands, already converted to integers.

    * ``start_ns``/``end_ns``: the execution window (ns since epoch), ``end_ns > start_ns``.
    * ``limit_ticks``: parent limit in common ticks, or ``None`` (no limit). No child is ever sent
      with a worse limit, and take children without their own limit carry this one.
    * ``would_ticks``: opportunistic price: while the far touch is at or better than it, the algo
      takes up to its whole remainder (never beyond the parent limit).
    * ``min_child_lots``: smallest child, except the final remainder (>= 1).
    * ``passive_only``: never send ``take`` children (catch-up and sweep become posts).
    * ``urgency``: 0..1, the share of each new slice (TWAP, VWAP, IS) or of POV's shortfall taken
      at once instead of posted; 0 (default) is passive-first. Passed to the router too.
    * ``seed``: seeds the randomisation of sizes, times and displays (same seed, same children).
    """

    start_ns: int
    end_ns: int
    limit_ticks: int | None = None
    would_ticks: int | None = None
    min_child_lots: int = 1
    passive_only: bool = False
    urgency: float = 0.0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.end_ns <= self.start_ns:
            raise ConfigError(f"end ({format_ns(self.end_ns)}) is not after start ({format_ns(self.start_ns)})",
                              key="end", allowed="a time after start")
        if self.min_child_lots < 1:
            raise ConfigError(f"{self.min_child_lots} lots", key="min_child_size", allowed=">= 1 lot")
        if not 0.0 <= self.urgency <= 1.0:
            raise ConfigError(f"{self.urgency}", key="urgency", allowed="[0, 1]")
        if self.limit_ticks is not None and self.limit_ticks <= 0:
            raise ConfigError(f"{self.limit_ticks} ticks", key="limit_price", allowed="> 0")
        if self.would_ticks is not None and self.would_ticks <= 0:
            raise ConfigError(f"{self.would_ticks} ticks", key="would_price", allowed="> 0")

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], *, now_ns: int, side: Side, tick_size: Decimal,
                     lot_size: Decimal, known: frozenset[str] = frozenset()) -> CommonParams:
        """Build from user input (TOML table / CLI). Keys: ``start`` (default now), ``end``
        (required), ``limit_price``, ``would_price``, ``min_child_size``, ``passive_only``,
        ``urgency``, ``seed``; algo-specific keys listed in ``known`` go to ``extra``; any other
        key is refused."""
        allowed = {"start", "end", "limit_price", "would_price", "min_child_size", "passive_only",
                   "urgency", "seed"} | set(known)
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}", key=unknown[0],
                              allowed=", ".join(sorted(allowed)))
        start = parse_time(raw.get("start"), now_ns=now_ns, key="start", default_ns=now_ns)
        end = parse_time(raw.get("end"), now_ns=now_ns, key="end")
        limit = raw.get("limit_price")
        would = raw.get("would_price")
        limit_ticks = None if limit is None else price_to_ticks(
            parse_decimal(limit, key="limit_price"), tick_size, side, key="limit_price")
        would_ticks = None if would is None else price_to_ticks(
            parse_decimal(would, key="would_price"), tick_size, side, key="would_price")
        if limit_ticks is not None and would_ticks is not None and side * (would_ticks - limit_ticks) > 0:
            raise ConfigError("would_price is worse than limit_price", key="would_price",
                              allowed="at or better than limit_price")
        mcs = raw.get("min_child_size")
        min_lots = 1 if mcs is None else qty_to_lots(parse_decimal(mcs, key="min_child_size"), lot_size,
                                                     key="min_child_size")
        passive = raw.get("passive_only", False)
        if not isinstance(passive, bool):
            raise ConfigError(f"{passive!r}", key="passive_only", allowed="true, false")
        urgency = _fraction(raw.get("urgency", "0"), key="urgency", low_open=False)
        seed = raw.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"{seed!r}", key="seed", allowed="an integer")
        return cls(start_ns=start, end_ns=end, limit_ticks=limit_ticks, would_ticks=would_ticks,
                   min_child_lots=min_lots, passive_only=passive, urgency=urgency, seed=seed,
                   extra={k: v for k, v in raw.items() if k in known})


def fraction(value: Any, *, key: str, low_open: bool = True) -> float:
    """Public wrapper of the ratio check: ``(0, 1]`` (or ``[0, 1]``), ConfigError otherwise."""
    return _fraction(value, key=key, low_open=low_open)
