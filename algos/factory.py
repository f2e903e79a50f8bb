"""Build an algo from user input (a TOML table or CLI options), with full validation.

``build_algo("twap", {"end": "+20m", "slices": 10, "limit_price": "61800"}, now_ns=..., side=...,
tick_size=..., lot_size=...)`` returns a ready :class:`~algos.base.ExecutionAlgo`; the engine
then calls ``on_start(ctx)``. Every key is checked: unknown keys and bad values raise
:class:`~marketdata.errors.ConfigError` naming the key and the allowed values (``file`` is put
in the message when given).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from algos.base import ExecutionAlgo
from algos.iceberg import IcebergAlgo
from algos.params import CommonParams, fraction, parse_decimal, parse_duration_ns, qty_to_lots
from algos.pov import PovAlgo
from algos.profile import VolumeProfile
from algos.schedule import parse_final_sweep, parse_slice_style
from algos.shortfall import ShortfallAlgo
from algos.twap import TwapAlgo
from algos.vwap import VwapAlgo
from marketdata.errors import ConfigError
from marketdata.model import Side

__all__ = ["ALGO_KEYS", "build_algo"]

ALGO_KEYS: dict[str, frozenset[str]] = {
    "twap": frozenset({"slices", "size_jitter", "time_jitter", "catchup_tolerance", "sweep_lead",
                       "final_sweep", "slice_style"}),
    "vwap": frozenset({"profile", "max_participation", "catchup_tolerance", "sweep_lead", "final_sweep",
                       "max_slice", "slice_style"}),
    "pov": frozenset({"target_rate", "min_rate", "max_rate", "catchup_threshold", "check_interval",
                      "slice_style"}),
    "iceberg": frozenset({"display_min", "display_max", "native"}),
    "shortfall": frozenset({"risk_aversion", "periods", "sigma", "eta", "gamma", "epsilon",
                            "volume_per_time_unit", "time_unit", "catchup_tolerance", "sweep_lead",
                            "slice_style"}),
}


def _float(raw: dict[str, Any], key: str, default: float | None = None, *, minimum: float = 0.0) -> float | None:
    if key not in raw:
        return default
    r = raw[key]
    # model inputs (rates, impact coefficients), not wire numbers: TOML floats are fine here
    v = float(r) if isinstance(r, float) else float(parse_decimal(r, key=key))
    if v != v or v in (float("inf"), float("-inf")):
        raise ConfigError(f"{r!r} is not finite", key=key)
    if v < minimum:
        raise ConfigError(f"{v}", key=key, allowed=f">= {minimum}")
    return v


def _int(raw: dict[str, Any], key: str) -> int | None:
    v = raw.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ConfigError(f"{v!r}", key=key, allowed="an integer >= 1")
    return v


def _bool(raw: dict[str, Any], key: str, default: bool | None) -> bool | None:
    v = raw.get(key, default)
    if v is not None and not isinstance(v, bool):
        raise ConfigError(f"{v!r}", key=key, allowed="true, false")
    return v


def _dur(raw: dict[str, Any], key: str) -> int | None:
    return None if raw.get(key) is None else parse_duration_ns(raw[key], key=key)


def build_algo(name: str, raw: dict[str, Any], *, now_ns: int, side: Side, tick_size: Decimal,
               lot_size: Decimal, file: str | None = None) -> ExecutionAlgo:
    """Parse ``raw`` for algo ``name`` (twap, vwap, pov, iceberg, shortfall) and build it."""
    try:
        return _build(name, raw, now_ns=now_ns, side=side, tick_size=tick_size, lot_size=lot_size)
    except ConfigError as exc:
        if file and not exc.file:
            raise ConfigError(str(exc), file=file) from None
        raise


def _build(name: str, raw: dict[str, Any], *, now_ns: int, side: Side, tick_size: Decimal,
           lot_size: Decimal) -> ExecutionAlgo:
    key = name.strip().lower()
    if key not in ALGO_KEYS:
        raise ConfigError(f"unknown algo {name!r}", key="algo", allowed=", ".join(sorted(ALGO_KEYS)))
    p = CommonParams.from_mapping(raw, now_ns=now_ns, side=side, tick_size=tick_size, lot_size=lot_size,
                                  known=ALGO_KEYS[key])
    x = p.extra
    if key == "twap":
        return TwapAlgo(p, slices=_int(x, "slices"), size_jitter=_float(x, "size_jitter", 0.2) or 0.0,
                        time_jitter=_float(x, "time_jitter", 0.2) or 0.0,
                        catchup_tolerance=_float(x, "catchup_tolerance", 0.05) or 0.0,
                        sweep_lead_ns=_dur(x, "sweep_lead"), final_sweep=bool(_bool(x, "final_sweep", True)),
                        slice_style=parse_slice_style(x.get("slice_style", "post")))
    if key == "vwap":
        profile = VolumeProfile.load(x["profile"]) if x.get("profile") else None
        cap = fraction(x["max_participation"], key="max_participation") if "max_participation" in x else 0.25
        return VwapAlgo(p, profile=profile, max_participation=cap,
                        catchup_tolerance=_float(x, "catchup_tolerance", 0.05) or 0.0,
                        sweep_lead_ns=_dur(x, "sweep_lead"),
                        final_sweep=parse_final_sweep(x.get("final_sweep", "capped")),
                        max_slice_ns=_dur(x, "max_slice"),
                        slice_style=parse_slice_style(x.get("slice_style", "post")))
    if key == "pov":
        if "target_rate" not in x:
            raise ConfigError("required", key="target_rate", allowed="(0, 1]")
        target = fraction(x["target_rate"], key="target_rate")
        lo = fraction(x["min_rate"], key="min_rate", low_open=False) if "min_rate" in x else None
        hi = fraction(x["max_rate"], key="max_rate") if "max_rate" in x else None
        return PovAlgo(p, target_rate=target, min_rate=lo, max_rate=hi,
                       catchup_threshold=_float(x, "catchup_threshold", 0.02) or 0.0,
                       check_ns=_dur(x, "check_interval") or 1_000_000_000,
                       slice_style=parse_slice_style(x.get("slice_style", "post")))
    if key == "iceberg":
        if "display_min" not in x:
            raise ConfigError("required", key="display_min", allowed="a quantity >= one lot")
        lo_lots = qty_to_lots(parse_decimal(x["display_min"], key="display_min"), lot_size, key="display_min")
        hi_lots = (qty_to_lots(parse_decimal(x["display_max"], key="display_max"), lot_size, key="display_max")
                   if "display_max" in x else None)
        return IcebergAlgo(p, display_min_lots=lo_lots, display_max_lots=hi_lots, native=_bool(x, "native", None))
    if "risk_aversion" not in x:
        raise ConfigError("required", key="risk_aversion", allowed=">= 0 (1/quote currency)")
    return ShortfallAlgo(p, risk_aversion=_float(x, "risk_aversion") or 0.0, periods=_int(x, "periods") or 10,
                         sigma=_float(x, "sigma"), eta=_float(x, "eta"), gamma=_float(x, "gamma"),
                         epsilon=_float(x, "epsilon"), volume_per_time_unit=_float(x, "volume_per_time_unit"),
                         time_unit_ns=_dur(x, "time_unit"),
                         catchup_tolerance=_float(x, "catchup_tolerance", 0.05) or 0.0,
                         sweep_lead_ns=_dur(x, "sweep_lead"),
                         slice_style=parse_slice_style(x.get("slice_style", "post")))
