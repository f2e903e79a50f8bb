"""User-facing algo specifications: ``TWAP(...)``, ``VWAP(...)``, ``POV(...)``, ``Iceberg(...)``,
``IS(...)``.

A spec is a small, validated description of *which* scheduler to run and with which parameters;
the engine turns it into a running :class:`~algos.base.ExecutionAlgo` when the parent starts
(relative times such as ``end="+20m"`` are anchored at that moment, prices and sizes are converted
to the symbol's common ticks and lots). The same keys are accepted in Python and in a TOML
``[parents.params]`` table::

    VWAP(end="+4m", max_participation=0.1)
    TWAP(end="+3m", slices=6)
    POV(end="+5m", target_rate=0.05)
    Iceberg(end="+4m", display="0.2")               # needs the parent's limit_price
    IS(end="+4m", risk_aversion=1e-6, periods=8)

Keys common to every algo (see :class:`algos.params.CommonParams`): ``start``, ``end``,
``would_price``, ``min_child_size``, ``passive_only``, ``urgency``, ``seed``. The parent's
``limit_price`` is given on the parent order, not here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from algos.base import ExecutionAlgo
from algos.iceberg import IcebergAlgo
from algos.params import CommonParams, fraction, parse_decimal, parse_duration_ns, qty_to_lots
from algos.pov import PovAlgo, pov_rates
from algos.profile import VolumeProfile
from algos.schedule import parse_final_sweep, parse_slice_style
from algos.shortfall import ShortfallAlgo
from algos.twap import TwapAlgo
from algos.vwap import VwapAlgo, default_profile
from marketdata.errors import ConfigError
from marketdata.model import Side

__all__ = ["ALGOS", "IS", "POV", "TWAP", "VWAP", "AlgoSpec", "Iceberg", "algo_spec"]

COMMON_KEYS = frozenset({"start", "end", "would_price", "min_child_size", "passive_only", "urgency", "seed"})


def _num(v: Any, key: str, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | str | Decimal):
        raise ConfigError(f"{v!r} is not a number", key=key)
    try:
        f = float(Decimal(str(v)))
    except (ArithmeticError, ValueError):   # ValueError: a signaling NaN has no float
        raise ConfigError(f"{v!r} is not a number", key=key) from None
    if not math.isfinite(f):   # NaN passes every range comparison; inf is no model input
        raise ConfigError(f"{v!r} is not a finite number", key=key)
    if (lo is not None and (f < lo or (lo_open and f == lo))) or (hi is not None and f > hi):
        rng = f"{'>' if lo_open else '>='} {lo}" if hi is None else f"[{lo}, {hi}]"
        raise ConfigError(f"{v} is out of range", key=key, allowed=rng)
    return f


def _int(v: Any, key: str, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{v!r}", key=key, allowed=f"an integer >= {lo}")
    return v


def _bool(v: Any, key: str) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{v!r}", key=key, allowed="true, false")
    return v


def _dur(v: Any, key: str) -> int:
    return parse_duration_ns(v, key=key)


class AlgoSpec:
    """Base of the algo specifications. ``params`` holds the raw keys; :meth:`validate` checks
    names and types without a market, :meth:`build` makes the running algo."""

    name: ClassVar[str] = "algo"
    known: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[frozenset[str]] = frozenset({"end"})
    needs_limit: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = dict(params)
        self.validate()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({inner})"

    def validate(self) -> None:
        allowed = COMMON_KEYS | self.known
        unknown = sorted(set(self.params) - allowed)
        if unknown:
            raise ConfigError(f"unknown parameter {unknown[0]!r} for algo {self.name}", key=unknown[0],
                              allowed=", ".join(sorted(allowed)))
        for k in sorted(self.required):
            if k not in self.params:
                raise ConfigError(f"algo {self.name} needs {k!r}", key=k)
        # type-check the algo-specific keys without a market (a dry conversion)
        self._extra(self.params, Decimal("0.00001"), dry=True)

    def common(self, *, now_ns: int, side: Side, tick_size: Decimal, lot_size: Decimal,
               limit_price: Decimal | None, defaults: Mapping[str, Any] | None = None) -> CommonParams:
        raw = {k: v for k, v in (defaults or {}).items() if k not in self.params}
        raw.update({k: v for k, v in self.params.items() if k in COMMON_KEYS})
        if limit_price is not None:
            raw["limit_price"] = str(limit_price)
        for k in ("would_price", "min_child_size"):
            if k in raw and isinstance(raw[k], float):
                raw[k] = repr(raw[k])
        return CommonParams.from_mapping(raw, now_ns=now_ns, side=side, tick_size=tick_size, lot_size=lot_size)

    def build(self, *, now_ns: int, side: Side, tick_size: Decimal, lot_size: Decimal,
              limit_price: Decimal | None, defaults: Mapping[str, Any] | None = None,
              market: Mapping[str, Any] | None = None) -> ExecutionAlgo:
        """The running algo for one parent (times anchored at ``now_ns``; common ticks/lots).
        ``defaults``: common keys used when the spec does not set them (e.g. ``min_child_size``)."""
        if self.needs_limit and limit_price is None:
            raise ConfigError(f"algo {self.name} needs the parent's limit_price", key="limit_price")
        cp = self.common(now_ns=now_ns, side=side, tick_size=tick_size, lot_size=lot_size,
                         limit_price=limit_price, defaults=defaults)
        kw = self._extra(self.params, lot_size, dry=False)
        self._from_market(kw, market or {})
        return self._make(cp, kw)

    def prepare(self) -> None:
        """Work that does not depend on the market or the start time, done when the parent is
        submitted rather than when it starts (a start runs inside a market-data callback)."""

    def _from_market(self, kw: dict[str, Any], market: Mapping[str, Any]) -> None:
        """Fill model inputs the user did not give from what the engine observed (IS only)."""

    def _extra(self, p: Mapping[str, Any], lot_size: Decimal, *, dry: bool) -> dict[str, Any]:
        return {}

    def _make(self, cp: CommonParams, kw: dict[str, Any]) -> ExecutionAlgo:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters for the journal (numbers as strings)."""
        return {k: (v if isinstance(v, str | bool | int) and not isinstance(v, float) else str(v))
                for k, v in self.params.items()}


def _share(v: Any, key: str) -> float:
    return _num(v, key, lo=0, hi=1)


def _style(v: Any, key: str) -> Any:
    return parse_slice_style(v)


# (TOML key, keyword of the algo's constructor, parser(value, key)) for the keys given
_Parsers = tuple[tuple[str, str, Callable[[Any, str], Any]], ...]
_SCHEDULE_PARSERS: _Parsers = (("catchup_tolerance", "catchup_tolerance", _share),
                               ("sweep_lead", "sweep_lead_ns", _dur), ("retry", "retry_ns", _dur),
                               ("slice_style", "slice_style", _style))
_POV_PARSERS: _Parsers = (("catchup_threshold", "catchup_threshold", _share),
                          ("check_interval", "check_ns", _dur), ("retry", "retry_ns", _dur),
                          ("slice_style", "slice_style", _style))


def _parsed(p: Mapping[str, Any], parsers: _Parsers) -> dict[str, Any]:
    return {name: parse(p[key], key) for key, name, parse in parsers if key in p}


def _schedule_extra(p: Mapping[str, Any]) -> dict[str, Any]:
    return _parsed(p, _SCHEDULE_PARSERS)


_SCHEDULE_KEYS = frozenset({"catchup_tolerance", "sweep_lead", "retry", "slice_style"})


class TWAP(AlgoSpec):
    """Time-weighted slices (``slices``, ``size_jitter``, ``time_jitter``, ``final_sweep`` and the
    schedule keys ``catchup_tolerance``, ``sweep_lead``, ``retry``, ``slice_style``)."""

    name = "twap"
    known = _SCHEDULE_KEYS | {"slices", "size_jitter", "time_jitter", "final_sweep"}

    def _extra(self, p: Mapping[str, Any], lot_size: Decimal, *, dry: bool) -> dict[str, Any]:
        kw = _schedule_extra(p)
        if "slices" in p:
            kw["slices"] = _int(p["slices"], "slices")
        for k in ("size_jitter", "time_jitter"):
            if k in p:
                kw[k] = _num(p[k], k, lo=0, hi=0.999)
        if "final_sweep" in p:
            kw["final_sweep"] = _bool(p["final_sweep"], "final_sweep")
        return kw

    def _make(self, cp: CommonParams, kw: dict[str, Any]) -> ExecutionAlgo:
        return TwapAlgo(cp, **kw)


class VWAP(AlgoSpec):
    """Volume-profile slices capped by ``max_participation`` (``profile`` = path of a saved
    :class:`~algos.profile.VolumeProfile` JSON, ``max_slice``, ``final_sweep``, schedule keys)."""

    name = "vwap"
    known = _SCHEDULE_KEYS | {"max_participation", "final_sweep", "max_slice", "profile"}

    def _extra(self, p: Mapping[str, Any], lot_size: Decimal, *, dry: bool) -> dict[str, Any]:
        kw = _schedule_extra(p)
        if "max_participation" in p:
            kw["max_participation"] = fraction(p["max_participation"], key="max_participation")
        if "final_sweep" in p:
            kw["final_sweep"] = parse_final_sweep(p["final_sweep"])
        if "max_slice" in p:
            kw["max_slice_ns"] = _dur(p["max_slice"], "max_slice")
        if "profile" in p:
            if not isinstance(p["profile"], str):
                raise ConfigError(f"{p['profile']!r}", key="profile", allowed="path of a profile JSON")
            if not dry:
                kw["profile"] = VolumeProfile.load(Path(p["profile"]))
            elif not Path(p["profile"]).is_file():
                raise ConfigError(f"profile file {p['profile']!r} not found", key="profile")
        return kw

    def prepare(self) -> None:
        if "profile" not in self.params:
            default_profile()   # the parametric U, cached for the process

    def _make(self, cp: CommonParams, kw: dict[str, Any]) -> ExecutionAlgo:
        return VwapAlgo(cp, **kw)


class POV(AlgoSpec):
    """Percentage of volume: ``target_rate`` (required), ``min_rate``, ``max_rate``,
    ``catchup_threshold``, ``check_interval``, ``retry``, ``slice_style``."""

    name = "pov"
    known = frozenset({"target_rate", "min_rate", "max_rate", "catchup_threshold", "check_interval", "retry",
                       "slice_style"})
    required = frozenset({"end", "target_rate"})

    def validate(self) -> None:
        super().validate()
        # the rates together, not only each alone: refused when the config is read, not when
        # the parent starts (it then ended rejected and the run exited 0)
        kw = self._extra(self.params, Decimal("0.00001"), dry=True)
        pov_rates(kw["target_rate"], kw.get("min_rate"), kw.get("max_rate"))

    def _extra(self, p: Mapping[str, Any], lot_size: Decimal, *, dry: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        for k in ("target_rate", "max_rate"):
            if k in p:
                kw[k] = fraction(p[k], key=k)
        if "min_rate" in p:
            kw["min_rate"] = fraction(p["min_rate"], key="min_rate", low_open=False)
        kw.update(_parsed(p, _POV_PARSERS))
        return kw

    def _make(self, cp: CommonParams, kw: dict[str, Any]) -> ExecutionAlgo:
        return PovAlgo(cp, **kw)


class Iceberg(AlgoSpec):
    """Display-limited resting order at the parent's limit: ``display`` (visible size) or
    ``display_min``/``display_max`` (randomised), ``native``, ``retry``, ``max_failures``."""

    name = "iceberg"
    known = frozenset({"display", "display_min", "display_max", "native", "retry", "max_failures"})
    needs_limit = True

    def validate(self) -> None:
        super().validate()
        if "display" not in self.params and "display_min" not in self.params:
            raise ConfigError("algo iceberg needs 'display' (or 'display_min')", key="display")

    def _extra(self, p: Mapping[str, Any], lot_size: Decimal, *, dry: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {}

        def lots(k: str) -> int:
            v = p[k]
            return qty_to_lots(parse_decimal(repr(v) if isinstance(v, float) else v, key=k, positive=True),
                               lot_size, key=k)

        if "display" in p:
            kw["display_min_lots"] = lots("display")
        if "display_min" in p:
            kw["display_min_lots"] = lots("display_min")
        if "display_max" in p:
            kw["display_max_lots"] = lots("display_max")
        if "native" in p:
            kw["native"] = _bool(p["native"], "native")
        if "retry" in p:
            kw["retry_ns"] = _dur(p["retry"], "retry")
        if "max_failures" in p:
            kw["max_failures"] = _int(p["max_failures"], "max_failures")
        return kw

    def _make(self, cp: CommonParams, kw: dict[str, Any]) -> ExecutionAlgo:
        return IcebergAlgo(cp, **kw)


class IS(AlgoSpec):
    """Implementation shortfall (Almgren–Chriss): ``risk_aversion`` (required), ``periods``,
    ``sigma``, ``eta``, ``gamma``, ``epsilon``, ``volume_per_time_unit``, ``time_unit``, schedule
    keys."""

    name = "is"
    known = _SCHEDULE_KEYS | {"risk_aversion", "periods", "sigma", "eta", "gamma", "epsilon",
                              "volume_per_time_unit", "time_unit"}
    required = frozenset({"end", "risk_aversion"})

    def _extra(self, p: Mapping[str, Any], lot_size: Decimal, *, dry: bool) -> dict[str, Any]:
        kw = _schedule_extra(p)
        kw["risk_aversion"] = _num(p["risk_aversion"], "risk_aversion", lo=0)
        if "periods" in p:
            kw["periods"] = _int(p["periods"], "periods")
        for k in ("sigma", "eta", "gamma", "epsilon", "volume_per_time_unit"):
            if k in p:
                kw[k] = _num(p[k], k, lo=0)
        if "time_unit" in p:
            kw["time_unit_ns"] = _dur(p["time_unit"], "time_unit")
        return kw

    def _from_market(self, kw: dict[str, Any], market: Mapping[str, Any]) -> None:
        # sigma from the trades seen so far, impact from the observed volume rate, unless given
        if "sigma" not in kw and market.get("price_history"):
            kw["price_history"] = market["price_history"]
        if "volume_per_time_unit" not in kw and market.get("volume_per_second"):
            # the algo converts it to its own time unit (one period unless time_unit is given; σ is
            # per √unit): converting here with 1 s put η off by a period in seconds
            kw["volume_per_second"] = float(market["volume_per_second"])

    def _make(self, cp: CommonParams, kw: dict[str, Any]) -> ExecutionAlgo:
        return ShortfallAlgo(cp, **kw)


ALGOS: dict[str, type[AlgoSpec]] = {
    "twap": TWAP, "vwap": VWAP, "pov": POV, "iceberg": Iceberg, "is": IS, "shortfall": IS,
}


def algo_spec(name: str, params: Mapping[str, Any]) -> AlgoSpec:
    """The spec for algo ``name`` (twap, vwap, pov, iceberg, is) with ``params``."""
    cls = ALGOS.get(str(name).lower())
    if cls is None:
        raise ConfigError(f"unknown algo {name!r}", key="algo", allowed=", ".join(sorted(ALGOS)))
    return cls(**dict(params))
