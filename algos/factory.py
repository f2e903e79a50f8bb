"""Build an algo from user input (a TOML table or CLI options), with full validation.

``build_algo("twap", {"end": "+20m", "slices": 10, "limit_price": "61800"}, now_ns=..., side=...,
tick_size=..., lot_size=...)`` returns a ready :class:`~algos.base.ExecutionAlgo`; the engine
then calls ``on_start(ctx)``. It is the algo specs of :mod:`algos.specs` (the ones the engine and
``[parents.params]`` use) with the limit price given in the same table: every key is checked the
same way, and unknown keys and bad values raise :class:`~marketdata.errors.ConfigError` naming the
key and the allowed values (``file`` is put in the message when given).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from algos.base import ExecutionAlgo
from algos.params import parse_decimal
from algos.specs import ALGOS, algo_spec
from marketdata.errors import ConfigError
from marketdata.model import Side

__all__ = ["ALGO_KEYS", "build_algo"]

#: the algo-specific keys each algo name accepts (besides the common keys and ``limit_price``)
ALGO_KEYS: dict[str, frozenset[str]] = {name: cls.known for name, cls in ALGOS.items()}


def build_algo(name: str, raw: dict[str, Any], *, now_ns: int, side: Side, tick_size: Decimal,
               lot_size: Decimal, file: str | None = None) -> ExecutionAlgo:
    """Parse ``raw`` for algo ``name`` (twap, vwap, pov, iceberg, is/shortfall) and build it."""
    try:
        params = dict(raw)
        limit = params.pop("limit_price", None)
        limit_price = None if limit is None else parse_decimal(limit, key="limit_price")
        return algo_spec(name, params).build(now_ns=now_ns, side=side, tick_size=tick_size, lot_size=lot_size,
                                             limit_price=limit_price)
    except ConfigError as exc:
        if file and not exc.file:
            raise ConfigError(str(exc), file=file) from None
        raise
