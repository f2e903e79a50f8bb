"""Configuration of the Binance spot adapter (TOML table ``[venues.binance-spot]`` or a mapping).

Example::

    [venues.binance-spot]
    rest_url = "https://api.binance.com"
    ws_url = "wss://stream.binance.com:9443"
    api_key_env = "BINANCE_API_KEY"          # names of environment variables, never the keys
    api_secret_env = "BINANCE_API_SECRET"
    recv_window_ms = 5000
    request_timeout_s = 10
    order_resp_type = "RESULT"               # ACK | RESULT | FULL
    maker_bps = "10"
    taker_bps = "10"
    [[venues.binance-spot.instruments]]
    symbol = "BTC-USDT"
    venue_symbol = "BTCUSDT"
    base = "BTC"
    quote = "USDT"
    tick_size = "0.01"
    lot_size = "0.00001"
    min_quantity = "0.00001"
    min_notional = "5"
    iceberg_parts = 100                      # optional: the symbol's ICEBERG_PARTS limit
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

__all__ = ["BinanceCredentials", "BinanceSpotConfig"]

_RESP_TYPES = ("ACK", "RESULT", "FULL")
_KEYS = {"venue", "rest_url", "ws_url", "api_key_env", "api_secret_env", "recv_window_ms",
         "request_timeout_s", "order_resp_type", "maker_bps", "taker_bps", "instruments",
         "resolve_delays_s", "user_stream", "listen_key_keepalive_s", "ws_reconnect_max_s",
         "rate_limits", "sync_time", "poll_interval_s"}


@dataclass(frozen=True)
class BinanceSpotConfig:
    """Everything the adapter needs except the secrets (those come from the environment)."""

    instruments: tuple[Instrument, ...]
    venue: VenueId = VenueId("binance-spot")  # noqa: RUF009 (NewType: a plain str)
    rest_url: str = "https://api.binance.com"
    ws_url: str = "wss://stream.binance.com:9443"
    api_key_env: str = "BINANCE_API_KEY"
    api_secret_env: str = "BINANCE_API_SECRET"
    recv_window_ms: int = 5000
    request_timeout_s: Decimal = Decimal(10)
    order_resp_type: str = "RESULT"
    maker_bps: Decimal = Decimal(10)
    taker_bps: Decimal = Decimal(10)
    resolve_delays_s: tuple[Decimal, ...] = (Decimal("0.5"), Decimal(1), Decimal(2), Decimal(4))
    """Waits before each order-status query that resolves an UNKNOWN order (after a timeout or a
    dropped connection); after the last one an order the venue still does not know is REJECTED."""
    user_stream: bool = True
    poll_interval_s: Decimal = Decimal(2)
    """With ``user_stream = false``: every this many seconds, poll the venue over REST (open
    orders per instrument with live orders, a status and trades query for each order whose fills
    grew or that is no longer open, then the account); ``0`` disables (REST answers only)."""
    listen_key_keepalive_s: Decimal = Decimal(1800)
    ws_reconnect_max_s: Decimal = Decimal(30)
    sync_time: bool = True
    """Query GET /api/v3/time at connect (and after a -1021) and sign with the venue's clock offset."""
    rate_limits: Mapping[str, Any] = field(default_factory=dict)
    """Overrides for the ``binance-spot`` limiter preset: {bucket: [limit, window_s]}."""
    iceberg_parts: Mapping[str, int] = field(default_factory=dict)
    """Per sorex symbol, the symbol's ``ICEBERG_PARTS`` filter ``limit`` (exchangeInfo): an iceberg
    with more than that many parts, ``ceil(quantity / icebergQty)``, is refused before sending. A
    symbol not listed is left to the venue (-1013 "Filter failure: ICEBERG_PARTS")."""

    def __post_init__(self) -> None:
        where = f"venues.{self.venue}"
        check_instruments(self.instruments, self.venue, where)
        if self.order_resp_type not in _RESP_TYPES:
            raise ConfigError(f"unknown order_resp_type {self.order_resp_type!r}", file=where,
                              key="order_resp_type", allowed=", ".join(_RESP_TYPES))
        if not 0 < self.recv_window_ms <= 60_000:
            raise ConfigError(f"recv_window_ms {self.recv_window_ms} must be in 1..60000 (Binance's maximum)",
                              file=where, key="recv_window_ms")
        if self.request_timeout_s <= 0:
            raise ConfigError("request_timeout_s must be > 0", file=where, key="request_timeout_s")
        if self.poll_interval_s < 0:
            raise ConfigError(f"poll_interval_s {self.poll_interval_s} must be >= 0 (0 disables polling)",
                              file=where, key="poll_interval_s")
        if not self.resolve_delays_s:
            raise ConfigError("resolve_delays_s needs at least one delay", file=where, key="resolve_delays_s")
        symbols = {i.symbol for i in self.instruments}
        for sym, parts in self.iceberg_parts.items():
            if sym not in symbols or isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
                raise ConfigError(f"iceberg_parts of {sym!r} must be an integer >= 1 for a configured instrument, "
                                  f"got {parts!r}", file=where, key="instruments.iceberg_parts")

    @property
    def timeout_s(self) -> float:
        """The per-request timeout as a float for the transport (config stays Decimal)."""
        return float(self.request_timeout_s)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, venue: str = "binance-spot",
                     where: str | None = None) -> BinanceSpotConfig:
        """Build from a parsed TOML table; names the key of any bad value."""
        where = where or f"venues.{venue}"
        reject_unknown_keys(data, _KEYS, where)
        vid = VenueId(str(data.get("venue", venue)))
        rows = list(data.get("instruments", []))
        insts = spot_instruments_from_mapping(rows, vid, where)
        iceberg_parts: dict[str, int] = {raw["symbol"]: raw["iceberg_parts"] for raw in rows if "iceberg_parts" in raw}
        kw: dict[str, Any] = {"instruments": insts, "venue": vid, "iceberg_parts": iceberg_parts}
        for key in ("rest_url", "ws_url", "api_key_env", "api_secret_env", "order_resp_type"):
            if key in data:
                kw[key] = str(data[key])
        for key in ("request_timeout_s", "maker_bps", "taker_bps", "listen_key_keepalive_s",
                    "ws_reconnect_max_s", "poll_interval_s"):
            if key in data:
                kw[key] = config_decimal(data[key], where, key)
        if "recv_window_ms" in data:
            kw["recv_window_ms"] = int(data["recv_window_ms"])
        for key in ("user_stream", "sync_time"):
            if key in data:
                kw[key] = bool(data[key])
        if "resolve_delays_s" in data:
            kw["resolve_delays_s"] = config_decimals(data["resolve_delays_s"], where, "resolve_delays_s")
        if "rate_limits" in data:
            kw["rate_limits"] = dict(data["rate_limits"])
        return cls(**kw)


@dataclass(frozen=True, repr=False)
class BinanceCredentials(ApiCredentials):
    """API key and secret; both wrapped in :class:`~venues.signing.Secret` (never printed)."""
