"""Configuration of the Interactive Brokers adapter (TOML table ``[venues.ib]`` or a mapping).

Example::

    [venues.ib]
    host = "127.0.0.1"
    port = 7497                 # TWS paper 7497, TWS live 7496, IB Gateway paper 4002, live 4001
    client_id = 17              # one per connected program; orders belong to the client id
    account = "DU1234567"       # required when the login manages more than one account
    resting_tif = "DAY"         # the IB time in force of sorex GTC orders: DAY or GTC
    [[venues.ib.instruments]]
    symbol = "AAPL-USD"
    venue_symbol = "AAPL"
    sec_type = "STK"            # STK or CRYPTO
    exchange = "SMART"          # CRYPTO: PAXOS
    primary_exchange = "NASDAQ" # optional, disambiguates SMART-routed stocks
    currency = "USD"
    base = "AAPL"
    quote = "USD"
    tick_size = "0.01"
    lot_size = "1"

IB has no API key or secret: the TWS / IB Gateway login is the authentication. The account id is
not secret but is kept out of the journal (it appears in log lines only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from marketdata.errors import ConfigError
from marketdata.model import Instrument, InstrumentKind, VenueId
from venues.config_common import (
    check_instruments,
    config_decimal,
    config_decimals,
    instrument_from_mapping,
    reject_unknown_keys,
)
from venues.ib.codec import MAX_TEXT_SERVER_VERSION
from venues.ib.messages import MIN_SERVER_VERSION, IbContract

__all__ = ["IbConfig"]

_KEYS = {"venue", "host", "port", "client_id", "account", "min_server_version", "max_server_version",
         "connect_timeout_s", "request_timeout_s", "resting_tif", "outside_rth", "commission_wait_s",
         "reconnect_delays_s", "rate_limits", "maker_bps", "taker_bps", "instruments"}
_INST_KEYS = {"symbol", "venue_symbol", "sec_type", "exchange", "primary_exchange", "currency", "base", "quote",
              "tick_size", "lot_size", "min_quantity", "min_notional", "con_id", "local_symbol"}
_SEC_TYPES = ("STK", "CRYPTO")
_RESTING_TIF = ("DAY", "GTC")


def _int(value: Any, where: str, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{value!r} must be an integer in {lo}..{hi}", file=where, key=key)
    return value


@dataclass(frozen=True)
class IbConfig:
    """Everything the IB adapter needs (there are no secrets)."""

    instruments: tuple[Instrument, ...]
    contracts: Mapping[str, IbContract]
    """sorex symbol -> the IB contract sent in placeOrder."""
    venue: VenueId = VenueId("ib")  # noqa: RUF009 (NewType: a plain str)
    host: str = "127.0.0.1"
    port: int = 7497
    client_id: int = 0
    account: str = ""
    min_server_version: int = MIN_SERVER_VERSION
    max_server_version: int = MAX_TEXT_SERVER_VERSION
    connect_timeout_s: Decimal = Decimal(10)
    request_timeout_s: Decimal = Decimal(10)
    """How long :meth:`IbVenue.submit` waits for TWS's first word on a new order (openOrder,
    orderStatus or an error); then the order is UNKNOWN and resolved on the next reconciliation."""
    resting_tif: str = "DAY"
    outside_rth: bool = False
    commission_wait_s: Decimal = Decimal(2)
    """A fill is reported once its commissionReport arrived, or after this long with fee 0."""
    reconnect_delays_s: tuple[Decimal, ...] = (Decimal("0.5"), Decimal(1), Decimal(2), Decimal(5))
    rate_limits: Mapping[str, Any] = field(default_factory=dict)
    """Overrides for the ``ib`` limiter preset: {"MESSAGES": [limit, window_s]}."""
    maker_bps: Decimal = Decimal(0)
    taker_bps: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        where = f"venues.{self.venue}"
        check_instruments(self.instruments, self.venue, where)
        for inst in self.instruments:
            if inst.symbol not in self.contracts:
                raise ConfigError(f"instrument {inst.symbol} has no IB contract", file=where, key="instruments")
        if not MIN_SERVER_VERSION <= self.min_server_version <= self.max_server_version <= MAX_TEXT_SERVER_VERSION:
            raise ConfigError(f"server versions {self.min_server_version}..{self.max_server_version} must lie in "
                              f"{MIN_SERVER_VERSION}..{MAX_TEXT_SERVER_VERSION} (text protocol)", file=where,
                              key="min_server_version/max_server_version")
        if self.resting_tif not in _RESTING_TIF:
            raise ConfigError(f"unknown resting_tif {self.resting_tif!r}", file=where, key="resting_tif",
                              allowed=", ".join(_RESTING_TIF))
        for key in ("connect_timeout_s", "request_timeout_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0", file=where, key=key)
        if self.commission_wait_s < 0:
            raise ConfigError("commission_wait_s must be >= 0", file=where, key="commission_wait_s")
        if not self.reconnect_delays_s or any(d < 0 for d in self.reconnect_delays_s):
            raise ConfigError("reconnect_delays_s needs at least one delay, none negative", file=where,
                              key="reconnect_delays_s")

    @property
    def timeout_s(self) -> float:
        return float(self.request_timeout_s)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, venue: str = "ib", where: str | None = None) -> IbConfig:
        """Build from a parsed TOML table; names the key of any bad value."""
        where = where or f"venues.{venue}"
        reject_unknown_keys(data, _KEYS, where)
        vid = VenueId(str(data.get("venue", venue)))
        insts: list[Instrument] = []
        contracts: dict[str, IbContract] = {}
        for i, raw in enumerate(data.get("instruments", [])):
            k = f"instruments[{i}]"
            reject_unknown_keys(raw, _INST_KEYS, where, prefix=k + ".")
            try:
                sec_type = str(raw.get("sec_type", "STK"))
                if sec_type not in _SEC_TYPES:
                    raise ConfigError(f"unknown sec_type {sec_type!r}", file=where, key=f"{k}.sec_type",
                                      allowed=", ".join(_SEC_TYPES))
                insts.append(instrument_from_mapping(
                    raw, vid, where, k, InstrumentKind.STOCK if sec_type == "STK" else InstrumentKind.SPOT))
                contracts[raw["symbol"]] = IbContract(
                    symbol=str(raw["venue_symbol"]), sec_type=sec_type,
                    exchange=str(raw.get("exchange", "SMART" if sec_type == "STK" else "PAXOS")),
                    currency=str(raw.get("currency", raw["quote"])),
                    primary_exchange=str(raw.get("primary_exchange", "")),
                    local_symbol=str(raw.get("local_symbol", "")),
                    con_id=_int(raw.get("con_id", 0), where, k + ".con_id", 0, 2**31 - 1))
            except KeyError as e:
                raise ConfigError(f"missing {e.args[0]!r}", file=where, key=k) from None
        kw: dict[str, Any] = {"instruments": tuple(insts), "contracts": contracts, "venue": vid}
        for key in ("host", "account", "resting_tif"):
            if key in data:
                kw[key] = str(data[key])
        if "port" in data:
            kw["port"] = _int(data["port"], where, "port", 1, 65535)
        if "client_id" in data:
            kw["client_id"] = _int(data["client_id"], where, "client_id", 0, 2**31 - 1)
        for key in ("min_server_version", "max_server_version"):
            if key in data:
                kw[key] = _int(data[key], where, key, 1, 10_000)
        for key in ("connect_timeout_s", "request_timeout_s", "commission_wait_s", "maker_bps", "taker_bps"):
            if key in data:
                kw[key] = config_decimal(data[key], where, key)
        if "outside_rth" in data:
            if not isinstance(data["outside_rth"], bool):
                raise ConfigError(f"{data['outside_rth']!r} must be true or false", file=where, key="outside_rth")
            kw["outside_rth"] = data["outside_rth"]
        if "reconnect_delays_s" in data:
            kw["reconnect_delays_s"] = config_decimals(data["reconnect_delays_s"], where, "reconnect_delays_s")
        if "rate_limits" in data:
            kw["rate_limits"] = dict(data["rate_limits"])
        return cls(**kw)
