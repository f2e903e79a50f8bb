"""Config-parsing helpers shared by the live adapters' ``config.py`` (Binance, Bybit, IB).

Each helper raises :class:`~marketdata.errors.ConfigError` naming the file (``where``, e.g.
``venues.binance-spot``) and the key; what a venue accepts beyond these (its own keys, ranges and
how strictly it reads booleans and integers) stays in its own module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, Self

from marketdata.errors import ConfigError
from marketdata.model import Instrument, InstrumentKind, Symbol, VenueId
from venues.signing import Secret

__all__ = ["ApiCredentials", "KeyEnvConfig", "check_instruments", "config_decimal", "config_decimals",
           "instrument_from_mapping", "read_api_secrets", "reject_unknown_keys", "spot_instruments_from_mapping"]


def config_decimal(value: Any, where: str, key: str) -> Decimal:
    """``value`` (a TOML string, integer or float) as a finite :class:`Decimal`; a float is read
    from its shortest repr, so ``0.1`` is ``Decimal("0.1")``."""
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ConfigError(f"{value!r} is not a number", file=where, key=key) from None
    if not d.is_finite():
        raise ConfigError(f"{value!r} is not finite", file=where, key=key)
    return d


def config_decimals(values: Iterable[Any], where: str, key: str) -> tuple[Decimal, ...]:
    """A TOML array of numbers (e.g. ``resolve_delays_s``) as :func:`config_decimal` s."""
    return tuple(config_decimal(v, where, key) for v in values)


def reject_unknown_keys(data: Mapping[str, Any], keys: set[str], where: str, *, prefix: str = "") -> None:
    """Refuse a table holding a key outside ``keys``; the first unknown one (sorted) is named,
    after ``prefix`` (``"instruments[0]."`` for an entry of an array of tables)."""
    unknown = set(data) - keys
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}", file=where, key=prefix + sorted(unknown)[0],
                          allowed=", ".join(sorted(keys)))


def instrument_from_mapping(raw: Mapping[str, Any], venue: VenueId, where: str, key: str,
                            kind: InstrumentKind = InstrumentKind.SPOT) -> Instrument:
    """One ``[[venues.<id>.instruments]]`` entry (``key``: ``instruments[i]``). A missing
    required field raises ``KeyError`` for the caller to name (it may read more fields in the
    same breath); ``min_quantity`` and ``min_notional`` default to 0."""
    return Instrument(
        venue=venue, symbol=Symbol(raw["symbol"]), venue_symbol=raw["venue_symbol"],
        base=raw["base"], quote=raw["quote"],
        tick_size=config_decimal(raw["tick_size"], where, key + ".tick_size"),
        lot_size=config_decimal(raw["lot_size"], where, key + ".lot_size"),
        min_quantity=config_decimal(raw.get("min_quantity", "0"), where, key + ".min_quantity"),
        min_notional=config_decimal(raw.get("min_notional", "0"), where, key + ".min_notional"),
        kind=kind)


def spot_instruments_from_mapping(rows: Iterable[Mapping[str, Any]], venue: VenueId,
                                  where: str) -> tuple[Instrument, ...]:
    """Every instrument entry of a spot venue; a missing field is a :class:`ConfigError` naming
    the entry (``instruments[i]``) and the field."""
    insts = []
    for i, raw in enumerate(rows):
        k = f"instruments[{i}]"
        try:
            insts.append(instrument_from_mapping(raw, venue, where, k))
        except KeyError as e:
            raise ConfigError(f"missing {e.args[0]!r}", file=where, key=k) from None
    return tuple(insts)


def check_instruments(instruments: Iterable[Instrument], venue: VenueId, where: str) -> None:
    """At least one instrument, each of ``venue``."""
    insts = tuple(instruments)
    if not insts:
        raise ConfigError("at least one instrument is required", file=where, key="instruments")
    for inst in insts:
        if inst.venue != venue:
            raise ConfigError(f"instrument {inst.key} does not belong to venue {venue}", file=where,
                              key="instruments")


def read_api_secrets(venue: VenueId, key_env: str, secret_env: str,
                     environ: Mapping[str, str] | None = None) -> tuple[Secret, Secret]:
    """The API key and secret from the environment variables named ``key_env`` / ``secret_env``
    (``environ`` default :data:`os.environ`); a missing one is a :class:`ConfigError` naming the
    variable, never its value."""
    env = os.environ if environ is None else environ
    missing = [n for n in (key_env, secret_env) if not env.get(n)]
    if missing:
        raise ConfigError(f"environment variable(s) {', '.join(missing)} not set",
                          file=f"venues.{venue}", key="api_key_env/api_secret_env")
    return Secret(env[key_env]), Secret(env[secret_env])


class KeyEnvConfig(Protocol):
    """What :meth:`ApiCredentials.from_env` reads of a venue's config."""

    @property
    def venue(self) -> VenueId: ...
    @property
    def api_key_env(self) -> str: ...
    @property
    def api_secret_env(self) -> str: ...


@dataclass(frozen=True)
class ApiCredentials:
    """API key and secret; both wrapped in :class:`~venues.signing.Secret` (never printed)."""

    api_key: Secret
    api_secret: Secret

    @classmethod
    def from_env(cls, config: KeyEnvConfig, environ: Mapping[str, str] | None = None) -> Self:
        """Read the variables named by ``api_key_env``/``api_secret_env``; a missing one is a
        :class:`ConfigError` naming the variable (never its value)."""
        return cls(*read_api_secrets(config.venue, config.api_key_env, config.api_secret_env, environ))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_key=***, api_secret=***)"
