"""Configuration of the Bybit v5 spot trading adapter (TOML table ``[venues.bybit-spot]`` or a mapping).

Example::

    [venues.bybit-spot]
    rest_url = "https://api.bybit.com"
    ws_private_url = "wss://stream.bybit.com/v5/private"
    api_key_env = "BYBIT_API_KEY"            # names of environment variables, never the keys
    api_secret_env = "BYBIT_API_SECRET"
    recv_window_ms = 5000
    request_timeout_s = 10
    maker_bps = "10"
    taker_bps = "10"
    [[venues.bybit-spot.instruments]]
    symbol = "BTC-USDT"
    venue_symbol = "BTCUSDT"
    base = "BTC"
    quote = "USDT"
    tick_size = "0.01"                       # priceFilter.tickSize
    lot_size = "0.000001"                    # lotSizeFilter.basePrecision
    min_quantity = "0.000048"                # lotSizeFilter.minOrderQty
    min_notional = "1"                       # lotSizeFilter.minOrderAmt

The instruments can also be read from the venue (GET /v5/market/instruments-info,
:func:`venues.bybit.parsers.parse_instruments`, :meth:`BybitSpotVenue.load_instruments`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marketdata.errors import ConfigError
from marketdata.model import Instrument, VenueId
from venues.config_common import (
    ApiCredentials,
    check_instruments,
    config_decimal,
    config_decimals,
    reject_unknown_keys,
    spot_instruments_from_mapping,
)

__all__ = ["BybitCredentials", "BybitSpotConfig"]

_KEYS = {"venue", "rest_url", "ws_private_url", "api_key_env", "api_secret_env", "recv_window_ms",
         "request_timeout_s", "maker_bps", "taker_bps", "instruments", "resolve_delays_s",
         "ws_reconnect_max_s", "ping_interval_s", "rate_limits", "sync_time", "account_type",
         "check_filters", "ws_auth_expires_s", "ip_ban_s"}
_ACCOUNT_TYPES = ("UNIFIED",)


@dataclass(frozen=True)
class BybitSpotConfig:
    """Everything the adapter needs except the secrets (those come from the environment)."""

    instruments: tuple[Instrument, ...]
    venue: VenueId = VenueId("bybit-spot")  # noqa: RUF009 (NewType: a plain str)
    rest_url: str = "https://api.bybit.com"
    ws_private_url: str = "wss://stream.bybit.com/v5/private"
    api_key_env: str = "BYBIT_API_KEY"
    api_secret_env: str = "BYBIT_API_SECRET"
    recv_window_ms: int = 5000
    request_timeout_s: Decimal = Decimal(10)
    maker_bps: Decimal = Decimal(10)
    taker_bps: Decimal = Decimal(10)
    resolve_delays_s: tuple[Decimal, ...] = (Decimal("0.5"), Decimal(1), Decimal(2), Decimal(4))
    """Waits before each order query that resolves an UNKNOWN order (after a timeout or a dropped
    connection); the last query is made no earlier than ``recv_window_ms`` + 1 s after the request,
    and an order the venue still does not know then is REJECTED."""
    ws_reconnect_max_s: Decimal = Decimal(30)
    ping_interval_s: Decimal = Decimal(20)
    """``{"op": "ping"}`` on the private stream every this many seconds (Bybit: 20 s)."""
    ws_auth_expires_s: Decimal = Decimal(10)
    """The private stream's ``auth`` signature is valid until now + this."""
    sync_time: bool = True
    """Query GET /v5/market/time at connect (and after a 10002) and sign with the venue's clock offset."""
    ip_ban_s: Decimal = Decimal(600)
    """How long an HTTP 403 (IP rate limit, "access too frequent") blocks every request. Bybit's
    rate-limit page: terminate the HTTP sessions and wait at least 10 minutes (older pages: the ban
    usually lasts 30 minutes); retrying sooner keeps the IP banned."""
    account_type: str = "UNIFIED"
    check_filters: bool = True
    """Refuse before sending what the instrument's rules forbid (quantity below ``min_quantity``,
    a non-positive price, notional below ``min_notional``): REJECTED with the filter's name."""
    rate_limits: Mapping[str, Any] = field(default_factory=dict)
    """Overrides for the ``bybit`` limiter preset: {bucket: [limit, window_s]}."""

    def __post_init__(self) -> None:
        where = f"venues.{self.venue}"
        check_instruments(self.instruments, self.venue, where)
        if not 0 < self.recv_window_ms <= 60_000:
            raise ConfigError(f"recv_window_ms {self.recv_window_ms} must be in 1..60000", file=where,
                              key="recv_window_ms")
        for key in ("request_timeout_s", "ping_interval_s", "ws_auth_expires_s", "ws_reconnect_max_s", "ip_ban_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0", file=where, key=key)
        if not self.resolve_delays_s or any(d < 0 for d in self.resolve_delays_s):
            raise ConfigError("resolve_delays_s needs at least one delay, none negative", file=where,
                              key="resolve_delays_s")
        if self.account_type not in _ACCOUNT_TYPES:
            raise ConfigError(f"unknown account_type {self.account_type!r}", file=where, key="account_type",
                              allowed=", ".join(_ACCOUNT_TYPES))

    @property
    def timeout_s(self) -> float:
        """The per-request timeout as a float for the transport (config stays Decimal)."""
        return float(self.request_timeout_s)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, venue: str = "bybit-spot",
                     where: str | None = None) -> BybitSpotConfig:
        """Build from a parsed TOML table; names the key of any bad value."""
        where = where or f"venues.{venue}"
        reject_unknown_keys(data, _KEYS, where)
        vid = VenueId(str(data.get("venue", venue)))
        kw: dict[str, Any] = {"instruments": spot_instruments_from_mapping(data.get("instruments", []), vid, where),
                              "venue": vid}
        for key in ("rest_url", "ws_private_url", "api_key_env", "api_secret_env", "account_type"):
            if key in data:
                kw[key] = str(data[key])
        for key in ("request_timeout_s", "maker_bps", "taker_bps", "ws_reconnect_max_s", "ping_interval_s",
                    "ws_auth_expires_s", "ip_ban_s"):
            if key in data:
                kw[key] = config_decimal(data[key], where, key)
        if "recv_window_ms" in data:
            v = data["recv_window_ms"]
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"recv_window_ms {v!r} must be an integer", file=where, key="recv_window_ms")
            kw["recv_window_ms"] = v
        for key in ("sync_time", "check_filters"):
            if key in data:
                if not isinstance(data[key], bool):
                    raise ConfigError(f"{key} must be true or false, got {data[key]!r}", file=where, key=key)
                kw[key] = data[key]
        if "resolve_delays_s" in data:
            kw["resolve_delays_s"] = config_decimals(data["resolve_delays_s"], where, "resolve_delays_s")
        if "rate_limits" in data:
            kw["rate_limits"] = dict(data["rate_limits"])
        return cls(**kw)


@dataclass(frozen=True, repr=False)
class BybitCredentials(ApiCredentials):
    """API key and secret; both wrapped in :class:`~venues.signing.Secret` (never printed)."""
