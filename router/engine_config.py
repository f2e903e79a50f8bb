"""Engine configuration: the ``[engine]``, ``[simulation.<venue>]``, ``[risk]`` and ``[[parents]]``
sections of a sorex TOML file, the :class:`ParentOrder` value, and the embedded default venues.

These sections sit beside ``[routing]`` and ``[venues.<id>]`` (owned by :mod:`router.config`) and
are parsed as strictly: every unknown key, wrong type or out-of-range value is a
:class:`~marketdata.errors.ConfigError` naming the file, the dotted key and the allowed values.
A file without ``[venues.*]`` gets the embedded default venues (simulated ``binance-spot`` and
``binance-usdm``, Binance VIP0 fees); without ``[routing]`` the default routing policy.
Full reference: docs/engine.md.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from algos.params import parse_duration_ns, parse_time
from algos.specs import AlgoSpec, algo_spec
from marketdata.errors import ConfigError
from marketdata.model import Instrument, InstrumentKind, Side
from router.config import SorexConfig, Table, parse_config
from router.risk import RiskLimits
from venues.binance.config import BinanceSpotConfig
from venues.bybit.config import BybitSpotConfig

__all__ = ["DEFAULT_CONFIG_TOML", "LIVE_ADAPTERS", "EngineConfig", "EngineSettings", "LiveVenueSettings",
           "ParentOrder", "SimVenueSettings", "default_balances",
           "load_engine_config", "load_engine_config_text", "parse_parent"]

Mode = Literal["simulate", "shadow", "live"]
MODES = ("simulate", "shadow", "live")

# Embedded defaults: Binance VIP0 published fees (spot 0.1 %/0.1 %; USD-M 0.02 %/0.05 %),
# round trips of a client in the same region as the matching engine (AWS Tokyo: ~10-15 ms REST).
DEFAULT_ROUTING_TOML = """
[routing]
strategy = "smart"
symbol = "BTC-USDT"
max_slippage_bps = 25
max_book_age_ms = 5000
default_style = "take"
"""

DEFAULT_VENUES_TOML = """
[venues.binance-spot]
post_only = true
[venues.binance-spot.fees]
maker_bps = 10
taker_bps = 10
[venues.binance-spot.latency]
order_rtt_ms = 14.0
jitter_ms = 4.0

[venues.binance-usdm]
post_only = true
[venues.binance-usdm.fees]
maker_bps = 2
taker_bps = 5
[venues.binance-usdm.latency]
order_rtt_ms = 10.0
jitter_ms = 3.0
"""

DEFAULT_CONFIG_TOML = DEFAULT_ROUTING_TOML + DEFAULT_VENUES_TOML
"""The embedded default configuration (routing + the two simulated Binance venues)."""

DEFAULT_BALANCES = {"USDT": Decimal("10000000"), "BTC": Decimal("1000"), "USD": Decimal("10000000")}
"""Ample starting balances by asset, for a simulated venue whose config gives none (see
:func:`default_balances`)."""


def default_balances(inst: Instrument) -> dict[str, Decimal]:
    """A simulated venue's starting balances when the config gives none, as such an account holds
    them: a spot account its base and quote (1,000 BTC, 10,000,000 USDT), a perpetual's only the
    margin currency, its quote (10,000,000 USDT or USD)."""
    assets = [inst.quote] if inst.kind is not InstrumentKind.SPOT else [inst.base, inst.quote]
    return {a: DEFAULT_BALANCES.get(a, Decimal("10000000")) for a in assets}


@dataclass(frozen=True)
class ParentOrder:
    """One parent order: ``quantity`` of ``symbol`` (base units, decimal string or Decimal) to
    ``side`` (buy/sell) with ``algo`` (a spec such as ``VWAP(end="+20m")``), optional
    ``limit_price`` (quote per base; no fill is ever worse) and an optional ``id``.

    Validated at construction: a bad side, a non-positive or non-numeric quantity or a limit
    price that is not a positive number raise :class:`ConfigError` before anything is sent."""

    symbol: str
    side: Side | str
    quantity: Decimal | str | int
    algo: AlgoSpec
    limit_price: Decimal | str | int | None = None
    id: str | None = None
    submit_at: str | int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ConfigError(f"symbol {self.symbol!r} must be a non-empty string", key="symbol")
        try:
            side = Side.parse(self.side)
        except ValueError as exc:
            raise ConfigError(str(exc), key="side", allowed="buy, sell") from None
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "quantity", _positive_decimal(self.quantity, "quantity"))
        if self.limit_price is not None:
            object.__setattr__(self, "limit_price", _positive_decimal(self.limit_price, "limit_price"))
        if not isinstance(self.algo, AlgoSpec):
            raise ConfigError(f"algo {self.algo!r} is not an algo spec", key="algo",
                              allowed="TWAP(...), VWAP(...), POV(...), Iceberg(...), IS(...)")
        if self.algo.needs_limit and self.limit_price is None:
            raise ConfigError(f"algo {self.algo.name} needs a limit_price on the parent", key="limit_price")
        if self.id is not None and (not isinstance(self.id, str) or not self.id
                                    or not all(c.isalnum() or c in "-_." for c in self.id)):
            raise ConfigError(f"parent id {self.id!r}", key="id", allowed="letters, digits, '-', '_', '.'")

    @property
    def side_(self) -> Side:
        s = self.side
        assert isinstance(s, Side)
        return s

    @property
    def quantity_(self) -> Decimal:
        q = self.quantity
        assert isinstance(q, Decimal)
        return q

    @property
    def limit_price_(self) -> Decimal | None:
        p = self.limit_price
        assert p is None or isinstance(p, Decimal)
        return p


MAX_DECIMAL_TEXT = "1e15"
MAX_DECIMAL = Decimal(MAX_DECIMAL_TEXT)
"""Largest parent ``quantity`` / ``limit_price`` (and ``sorex route --qty`` / ``--limit``): far above
any real order, and small enough that lot and tick counts stay exact in 28-digit decimals and
finite as floats (``1e400`` overflowed deep in the algos and the router)."""


def _positive_decimal(v: Any, key: str) -> Decimal:
    if isinstance(v, bool):
        raise ConfigError(f"{str(v).lower()} is not a number", key=key, allowed="a positive decimal")
    if isinstance(v, float):
        v = repr(v)
    try:
        d = Decimal(str(v).strip()) if not isinstance(v, Decimal) else v
    except InvalidOperation:
        raise ConfigError(f"{v!r} is not a number", key=key, allowed="a positive decimal") from None
    if not d.is_finite() or d <= 0:
        raise ConfigError(f"{v!r} must be a positive number", key=key, allowed="> 0")
    if d > MAX_DECIMAL:
        raise ConfigError(f"{v!r} is too large", key=key, allowed=f"0 < x <= {MAX_DECIMAL_TEXT}")
    return d


@dataclass(frozen=True, slots=True)
class SimVenueSettings:
    """One ``[simulation.<venue>]`` table (all optional). Latencies in ms; order entry and ack
    default to half of the venue's ``latency.order_rtt_ms`` each, with lognormal spread
    ``latency_sigma``."""

    market_data_latency_ms: float = 3.0
    order_entry_latency_ms: float | None = None
    ack_latency_ms: float | None = None
    latency_sigma: float = 0.3
    queue_model: Literal["power", "log", "risk_averse"] = "power"
    rate_limit_preset: str | None = None
    """Name of a :data:`venues.ratelimit.PRESETS` entry; default: the venue id when it is a preset,
    ``"none"`` disables the client-side limiter."""
    venue_rate_limit_orders: int | None = None
    """New orders per 10 s that the simulated matching engine enforces (Binance code -1015 beyond
    it); default: the venue preset's order limit per 10 s (spot 50, USD-M 300), else 50."""
    native_iceberg: bool | None = None
    """Whether the simulated venue accepts native iceberg orders (a display quantity, Binance's
    ``icebergQty``); default: true on a spot venue (Binance spot has them), false on a derivative
    venue (Binance futures do not)."""
    leverage: Decimal = Decimal(1)
    """Initial-margin leverage of a derivative (perpetual) venue: an opening lot locks
    ``notional / leverage`` of the quote currency; the router is told ``free x leverage`` as the
    buying power. Not allowed on a venue with spot instruments."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """The ``[engine]`` section."""

    mode: Mode = "simulate"
    seed: int = 1
    data: tuple[str, ...] = ()
    data_format: str | None = None
    until: str | None = None
    journal: str | None = None
    journal_sync: Literal["FULL", "NORMAL"] = "NORMAL"
    progress_interval_ns: int = 10_000_000_000
    warmup_ns: int = 2_000_000_000
    flush_ns: int = 2_000_000_000
    local_reject_delay_ns: int = 1_000_000
    balance_wait_ns: int = 30_000_000_000
    """The longest a child the router could not place for want of funds on every venue waits
    before its parent's algo is told (and may retry); any fill or finished order, which may free
    funds, or a cancel of the child, ends the wait at once."""
    cancel_retry_ns: int = 50_000_000
    command_timeout_s: float = 30.0
    """Live: the longest a venue command task (submit / cancel) may take before the engine gives
    up on it (a submit then is UNKNOWN and is resolved by a status query)."""
    shutdown_timeout_s: float = 10.0
    """Live: how long the shutdown waits for the cancels of working orders to be acknowledged."""


@dataclass(frozen=True)
class EngineConfig:
    """A whole engine configuration: routing + venues (:class:`SorexConfig`), engine settings,
    per-venue simulation settings, risk limits and the parent orders of ``[[parents]]``."""

    sorex: SorexConfig
    engine: EngineSettings = field(default_factory=EngineSettings)
    simulation: dict[str, SimVenueSettings] = field(default_factory=dict)
    risk: RiskLimits = field(default_factory=RiskLimits)
    parents: tuple[ParentOrder, ...] = ()
    default_venues: bool = False
    path: str = "<default>"
    live: dict[str, LiveVenueSettings] = field(default_factory=dict)
    """Venues with an ``adapter`` key: how to reach them live (``mode = "live"``, or ``shadow``
    on live market data)."""


LIVE_ADAPTERS = ("binance-spot", "bybit-spot")
"""Values of ``[venues.<id>] adapter``: the live adapters of this build."""

# keys of a [venues.<id>] table that belong to the live adapter (taken out before router.config
# parses the rest strictly); base_url is an alias of rest_url
_COMMON_LIVE_KEYS = ("adapter", "base_url", "rest_url", "ws_url", "api_key_env", "api_secret_env", "recv_window_ms",
                     "request_timeout_s", "resolve_delays_s", "ws_reconnect_max_s", "sync_time", "rate_limits",
                     "instruments", "open_orders_at_start")
_ADAPTER_KEYS: dict[str, tuple[str, ...]] = {
    "binance-spot": (*_COMMON_LIVE_KEYS, "order_resp_type", "user_stream", "listen_key_keepalive_s",
                     "poll_interval_s", "depth_snapshot_limit", "depth_buffer"),
    # ws_url: the public market-data stream; ws_private_url: the adapter's private stream
    "bybit-spot": (*_COMMON_LIVE_KEYS, "ws_private_url", "ping_interval_s", "ws_auth_expires_s", "ip_ban_s",
                   "check_filters", "account_type", "orderbook_depth"),
}
_LIVE_KEYS = tuple(dict.fromkeys(k for keys in _ADAPTER_KEYS.values() for k in keys))

OPEN_ORDERS_AT_START = ("refuse", "cancel", "keep")
"""Values of ``[venues.<id>] open_orders_at_start``: what a live start does with sorex orders an
earlier run left open on the venue (see docs/engine.md, "Orders left open by an earlier run")."""

BYBIT_ORDERBOOK_DEPTHS = (1, 50, 200, 1000)
"""Values of ``[venues.<id>] orderbook_depth`` (``adapter = "bybit-spot"``): the depths Bybit v5
publishes for spot ``orderbook.{depth}.{symbol}``."""

BYBIT_PUBLIC_WS_URL = "wss://stream.bybit.com"
"""Default ``ws_url`` of a ``bybit-spot`` venue: the public stream host (``/v5/public/spot`` is
appended)."""

AdapterConfig = BinanceSpotConfig | BybitSpotConfig


@dataclass(frozen=True)
class LiveVenueSettings:
    """The live part of one ``[venues.<id>]`` table (``adapter = "binance-spot"`` or
    ``"bybit-spot"`` and its keys).

    ``adapter_config`` is the adapter's own config (URLs, env-var names, timeouts, instruments):
    a :class:`BinanceSpotConfig` or a :class:`BybitSpotConfig` (``binance`` / ``bybit`` give it
    typed). Binance only: ``depth_snapshot_limit`` the ``limit`` of the ``GET /api/v3/depth``
    snapshot that (re)seeds the book; ``depth_buffer`` the most depth diffs kept while a snapshot
    is fetched (overflow: the buffer is dropped and the resync starts over). Bybit only:
    ``md_ws_url`` the public market-data stream (``ws_url`` in the TOML), ``orderbook_depth`` the
    depth of its ``orderbook.{depth}.{symbol}`` topic (the book is seeded and resynced by that
    topic's snapshots). ``open_orders_at_start`` what a live start does with sorex orders (client
    ids ``sx-...``) already open on the venue: ``refuse`` to start (the default), ``cancel`` them
    first, or ``keep`` them working (untracked)."""

    venue: str
    adapter: str
    adapter_config: AdapterConfig
    explicit_credentials: bool = False
    depth_snapshot_limit: int = 1000
    depth_buffer: int = 10_000
    open_orders_at_start: str = "refuse"
    md_ws_url: str = BYBIT_PUBLIC_WS_URL
    orderbook_depth: int = 50

    @property
    def binance(self) -> BinanceSpotConfig:
        """The Binance adapter's config (``adapter = "binance-spot"``)."""
        cfg = self.adapter_config
        if not isinstance(cfg, BinanceSpotConfig):
            raise TypeError(f"venue {self.venue!r} uses adapter {self.adapter!r}, not binance-spot")
        return cfg

    @property
    def bybit(self) -> BybitSpotConfig:
        """The Bybit adapter's config (``adapter = "bybit-spot"``)."""
        cfg = self.adapter_config
        if not isinstance(cfg, BybitSpotConfig):
            raise TypeError(f"venue {self.venue!r} uses adapter {self.adapter!r}, not bybit-spot")
        return cfg

    @property
    def instruments(self) -> tuple[Instrument, ...]:
        return self.adapter_config.instruments

    def with_credential_names(self, api_key_env: str, api_secret_env: str) -> LiveVenueSettings:
        """The same settings with the adapter reading its key and secret from these variables."""
        cfg = dataclasses.replace(self.adapter_config, api_key_env=api_key_env, api_secret_env=api_secret_env)
        return dataclasses.replace(self, adapter_config=cfg)


def _extract_live(data: dict[str, Any], file: str) -> dict[str, LiveVenueSettings]:
    """Take the live-adapter keys out of every ``[venues.<id>]`` table that has ``adapter``."""
    venues = data.get("venues")
    if not isinstance(venues, dict):
        return {}
    out: dict[str, LiveVenueSettings] = {}
    new_venues = dict(venues)
    for name, raw in venues.items():
        if not isinstance(raw, dict) or "adapter" not in raw:
            continue
        t = dict(raw)
        adapter = t["adapter"]
        if not isinstance(adapter, str) or adapter not in LIVE_ADAPTERS:
            raise ConfigError(f"unknown live adapter {adapter!r}", file=file, key=f"venues.{name}.adapter",
                              allowed=", ".join(LIVE_ADAPTERS))
        own = _ADAPTER_KEYS[adapter]
        for k in t:
            if k in _LIVE_KEYS and k not in own:
                users = " and ".join(a for a, keys in _ADAPTER_KEYS.items() if k in keys)
                raise ConfigError(f"{k!r} is a setting of the {users} adapter, not of {adapter}", file=file,
                                  key=f"venues.{name}.{k}", allowed=", ".join(sorted(own)))
        live = {k: t.pop(k) for k in own if k in t}
        new_venues[name] = t
        live.pop("adapter")
        snap = live.pop("depth_snapshot_limit", 1000)
        if isinstance(snap, bool) or snap not in (5, 10, 20, 50, 100, 500, 1000, 5000):
            raise ConfigError(f"invalid value {snap!r}", file=file, key=f"venues.{name}.depth_snapshot_limit",
                              allowed="5, 10, 20, 50, 100, 500, 1000, 5000")
        buf = live.pop("depth_buffer", 10_000)
        if isinstance(buf, bool) or not isinstance(buf, int) or not 1 <= buf <= 1_000_000:
            raise ConfigError(f"invalid value {buf!r}", file=file, key=f"venues.{name}.depth_buffer",
                              allowed="1..1000000")
        at_start = live.pop("open_orders_at_start", "refuse")
        if at_start not in OPEN_ORDERS_AT_START:
            raise ConfigError(f"invalid value {at_start!r}", file=file, key=f"venues.{name}.open_orders_at_start",
                              allowed=", ".join(OPEN_ORDERS_AT_START))
        if "base_url" in live:
            if "rest_url" in live:
                raise ConfigError("give base_url or rest_url, not both", file=file, key=f"venues.{name}.base_url")
            live["rest_url"] = live.pop("base_url")
        for k in ("rest_url", "ws_url"):
            v = live.get(k)
            if v is not None and (not isinstance(v, str) or not v.startswith(("http://", "https://", "ws://",
                                                                               "wss://"))):
                where = "base_url" if k == "rest_url" else k
                raise ConfigError(f"invalid URL {v!r}", file=file, key=f"venues.{name}.{where}",
                                  allowed="http(s)://... for base_url, ws(s)://... for ws_url")
        for k in ("api_key_env", "api_secret_env"):
            v = live.get(k)
            if v is not None and (not isinstance(v, str) or not v or not all(c.isupper() or c.isdigit() or c == "_"
                                                                               for c in v)):
                # the value may be the secret itself: never echo it
                shown = f"<redacted, {len(v)} characters>" if isinstance(v, str) and v else repr(v)
                raise ConfigError(f"invalid environment variable name {shown}; give the NAME of the variable "
                                  "that holds the secret", file=file, key=f"venues.{name}.{k}",
                                  allowed=f"an upper-case name such as {adapter.split('-')[0].upper()}_API_KEY")
        # the adapter's own parser coerces (bool("false") is true, int(1.9) is 1): check the types here
        for k in ("user_stream", "sync_time"):
            if k in live and not isinstance(live[k], bool):
                raise ConfigError(f"must be a boolean, got {live[k]!r}", file=file, key=f"venues.{name}.{k}",
                                  allowed="true, false")
        rw = live.get("recv_window_ms")
        if rw is not None and (isinstance(rw, bool) or not isinstance(rw, int)):
            raise ConfigError(f"must be an integer, got {rw!r}", file=file, key=f"venues.{name}.recv_window_ms",
                              allowed="1 <= x <= 60000")
        explicit = "api_key_env" in live or "api_secret_env" in live
        md_ws_url = BYBIT_PUBLIC_WS_URL
        depth = 50
        if adapter == "bybit-spot":
            md_ws_url = live.pop("ws_url", BYBIT_PUBLIC_WS_URL)
            if not str(md_ws_url).startswith(("ws://", "wss://")):
                raise ConfigError(f"invalid URL {md_ws_url!r}", file=file, key=f"venues.{name}.ws_url",
                                  allowed="ws(s)://... (the public stream; /v5/public/spot is appended)")
            path = urlsplit(str(md_ws_url)).path.rstrip("/")
            if "/v5/" in f"{path}/" and not path.endswith("/v5/public/spot"):
                # another Bybit stream (linear, option, private): /v5/public/spot would be appended to it
                raise ConfigError(f"{md_ws_url!r} is not Bybit's public spot stream", file=file,
                                  key=f"venues.{name}.ws_url",
                                  allowed="the stream host (wss://stream.bybit.com) or a URL ending in /v5/public/spot")
            depth = live.pop("orderbook_depth", 50)
            if isinstance(depth, bool) or depth not in BYBIT_ORDERBOOK_DEPTHS:
                raise ConfigError(f"invalid value {depth!r}", file=file, key=f"venues.{name}.orderbook_depth",
                                  allowed=", ".join(map(str, BYBIT_ORDERBOOK_DEPTHS)))
            for k in ("check_filters",):
                if k in live and not isinstance(live[k], bool):
                    raise ConfigError(f"must be a boolean, got {live[k]!r}", file=file, key=f"venues.{name}.{k}",
                                      allowed="true, false")
            v = live.get("ws_private_url")
            if v is not None and (not isinstance(v, str) or not v.startswith(("ws://", "wss://"))):
                raise ConfigError(f"invalid URL {v!r}", file=file, key=f"venues.{name}.ws_private_url",
                                  allowed="ws(s)://... (Bybit's /v5/private stream)")
        cls: type[BinanceSpotConfig] | type[BybitSpotConfig] = (
            BybitSpotConfig if adapter == "bybit-spot" else BinanceSpotConfig)
        try:
            cfg = cls.from_mapping(live, venue=name, where=file)
        except ConfigError as exc:
            raise rekey(exc, file, f"venues.{name}.{exc.key}" if exc.key else f"venues.{name}") from None
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise ConfigError(f"bad live adapter settings: {exc}", file=file, key=f"venues.{name}") from None
        out[name] = LiveVenueSettings(venue=name, adapter=adapter, adapter_config=cfg, explicit_credentials=explicit,
                                      depth_snapshot_limit=int(snap), depth_buffer=int(buf),
                                      open_orders_at_start=str(at_start), md_ws_url=str(md_ws_url),
                                      orderbook_depth=int(depth))
    data["venues"] = new_venues
    return out


# --------------------------------------------------------------------------- section parsers
_MIN_PROGRESS_NS = 1_000_000
"""Shortest ``progress_interval`` (1 ms): a progress alert every few ns of virtual time (a bare
integer is nanoseconds, so ``progress_interval = 5`` is 5 ns) would stall a run for minutes."""


def format_ns_duration(ns: int) -> str:
    """``1_000_000`` -> ``"1ms"`` (for messages)."""
    for unit, size in (("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000), ("ms", 1_000_000),
                       ("us", 1_000)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def _parse_engine(t: Table) -> EngineSettings:
    data = t.data.get("data")
    if isinstance(data, str):
        t._used.add("data")
        files: tuple[str, ...] = (data,)
    else:
        files = t.string_list("data", ())
    if any(not f.strip() for f in files):
        raise t.error("data", f"empty path in {data!r}", allowed="market data file or directory path(s)")
    progress = t.data.get("progress_interval", "10s")
    t._used.add("progress_interval")
    warm = t.data.get("warmup", "2s")
    t._used.add("warmup")

    def dur(v: Any, k: str, min_ns: int = 1) -> int:
        try:
            ns = parse_duration_ns(v, key=t.key(k))
        except ConfigError as exc:
            raise ConfigError(str(exc), file=t.file) from None
        if ns < min_ns:
            hint = " (a bare integer is nanoseconds)" if isinstance(v, int) else ""
            raise t.error(k, f"{v!r} is too short: {ns} ns{hint}",
                          allowed=f"a duration of at least {format_ns_duration(min_ns)}, e.g. \"10s\"")
        return ns

    until = t.string("until", None)
    if until is not None:
        try:   # the syntax now, with the file named; the time itself is resolved on the data
            parse_time(until, now_ns=0, key=t.key("until"))
        except ConfigError as exc:
            raise rekey(exc, t.file, t.key("until")) from None

    s = EngineSettings(
        mode=t.string("mode", "simulate", allowed=MODES),
        seed=t.integer("seed", 1, min=0),
        data=files,
        data_format=t.string("data_format", None, allowed=("binance-raw", "tardis-book", "tardis-trades", "bundle")),
        until=until,
        journal=t.string("journal", None),
        journal_sync=t.string("journal_sync", "NORMAL", allowed=("FULL", "NORMAL")),
        progress_interval_ns=dur(progress, "progress_interval", min_ns=_MIN_PROGRESS_NS),
        warmup_ns=dur(warm, "warmup"),
        local_reject_delay_ns=int(t.number("local_reject_delay_ms", 1.0, min=0, max=60_000) * 1_000_000),
        balance_wait_ns=int(t.number("balance_wait_s", 30.0, min=0, max=3600) * 1_000_000_000),
        cancel_retry_ns=int(t.number("cancel_retry_ms", 50.0, min=0, min_exclusive=True, max=60_000) * 1_000_000),
        command_timeout_s=t.number("command_timeout_s", 30.0, min=0, min_exclusive=True, max=3600),
        shutdown_timeout_s=t.number("shutdown_timeout_s", 10.0, min=0, min_exclusive=True, max=3600),
    )
    t.finish()
    return s


def _parse_simulation(t: Table) -> dict[str, SimVenueSettings]:
    out: dict[str, SimVenueSettings] = {}
    for venue in list(t):
        vt = t.table(venue)
        out[venue] = SimVenueSettings(
            market_data_latency_ms=vt.number("market_data_latency_ms", 3.0, min=0, max=60_000),
            order_entry_latency_ms=vt.number("order_entry_latency_ms", None, min=0, max=60_000),
            ack_latency_ms=vt.number("ack_latency_ms", None, min=0, max=60_000),
            latency_sigma=vt.number("latency_sigma", 0.3, min=0, max=3),
            queue_model=vt.string("queue_model", "power", allowed=("power", "log", "risk_averse")),
            rate_limit_preset=vt.string("rate_limit_preset", None),
            venue_rate_limit_orders=vt.integer("venue_rate_limit_orders", None, min=1, max=1_000_000),
            native_iceberg=vt.boolean("native_iceberg", None),
            leverage=vt.decimal("leverage", Decimal(1), min=1, max=125))
        vt.finish()
    t.finish()
    return out


def _parse_risk(t: Table) -> RiskLimits:
    mp = t.table("max_position")
    max_position = {sym: mp.decimal(sym, min=0) for sym in mp}
    mp.finish()
    limits = RiskLimits(
        max_order_notional=t.decimal("max_order_notional", None, min=0, min_exclusive=True),
        max_parent_notional=t.decimal("max_parent_notional", None, min=0, min_exclusive=True),
        max_position=max_position,
        blacklist=frozenset(t.string_list("blacklist", ())),
        price_collar_bps=t.decimal("price_collar_bps", None, min=0, min_exclusive=True, max=10_000))
    t.finish()
    return limits


_PARENT_KEYS = ("id", "symbol", "side", "quantity", "limit_price", "algo", "submit_at", "params")


def rekey(exc: ConfigError, file: str, key: str | None) -> ConfigError:
    """The same error, re-anchored at ``file`` / ``key`` (a dotted path in the TOML)."""
    parts = [p for p in (exc.file, f"key '{exc.key}'" if exc.key else None) if p]
    text = str(exc)
    prefix = ": ".join(parts)
    msg = text[len(prefix) + 2:] if prefix and text.startswith(prefix + ": ") else text
    if exc.allowed and msg.endswith(f" (allowed: {exc.allowed})"):
        msg = msg[: -len(f" (allowed: {exc.allowed})")]
    return ConfigError(msg, file=file, key=key, allowed=exc.allowed)


def parse_parent(t: Table) -> ParentOrder:
    """One ``[[parents]]`` table -> :class:`ParentOrder` (errors name the file and key)."""
    pt = t.table("params")
    algo_name = t.string("algo")
    try:
        spec = algo_spec(algo_name, dict(pt.data))
    except ConfigError as exc:
        where = t.key("algo") if exc.key in (None, "algo") else pt.key(exc.key or "")
        raise rekey(exc, t.file, where) from None
    submit_at = t.data.get("submit_at")
    t._used.update(("submit_at", "quantity", "limit_price"))
    if submit_at is not None and (isinstance(submit_at, bool) or not isinstance(submit_at, str | int)):
        raise t.error("submit_at", f"{submit_at!r}", allowed="'+10s' (from the data start), ns, ISO time")
    side = t.string("side", allowed=("buy", "sell"))
    symbol = t.string("symbol")
    ident = t.string("id", None)
    if "quantity" not in t.data:
        raise t.error("quantity", "is required")
    try:
        parent = ParentOrder(symbol=symbol, side=side, quantity=t.data["quantity"], algo=spec,
                             limit_price=t.data.get("limit_price"), id=ident, submit_at=submit_at)
    except ConfigError as exc:
        raise rekey(exc, t.file, t.key(exc.key) if exc.key else None) from None
    t.finish()
    return parent


def _parse_parents(ts: list[Table] | Table) -> tuple[ParentOrder, ...]:
    if isinstance(ts, Table):
        raise ts.error(None, "parents must be an array of tables: write [[parents]]")
    out = tuple(parse_parent(t) for t in ts)
    first: dict[str, int] = {}
    for i, p in enumerate(out):
        if p.id is None:
            continue
        if p.id in first:
            raise ts[i].error("id", f"duplicate parent id {p.id!r} (already the id of {ts[first[p.id]].path})")
        first[p.id] = i
    return out


SECTIONS = {"engine": _parse_engine, "simulation": _parse_simulation, "risk": _parse_risk,
            "parents": _parse_parents}


def load_engine_config_text(text: str, *, file: str = "<string>") -> EngineConfig:
    """Parse TOML text into an :class:`EngineConfig` (see module docstring)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None
    return parse_engine_config(data, file=file)


def parse_engine_config(data: dict[str, Any], *, file: str = "<config>") -> EngineConfig:
    """Validate a parsed TOML document; fills in the embedded default routing and venues."""
    data = dict(data)
    defaults = tomllib.loads(DEFAULT_CONFIG_TOML)
    default_venues = "venues" not in data
    if default_venues:
        data["venues"] = defaults["venues"]
    if "routing" not in data:
        data["routing"] = defaults["routing"]
    for name in ("engine", "simulation", "risk"):
        v = data.get(name)
        if name in data and not isinstance(v, dict):
            got = "an array of tables" if isinstance(v, list) else f"{type(v).__name__} {v!r}"
            raise ConfigError(f"must be a table (write [{name}]), got {got}", file=file, key=name)
    if "parents" in data and not isinstance(data["parents"], list | dict):
        raise ConfigError(f"must be an array of tables (write [[parents]]), got {type(data['parents']).__name__} "
                          f"{data['parents']!r}", file=file, key="parents")
    live = _extract_live(data, file)
    sorex = parse_config(data, file=file, sections=SECTIONS)
    sec = sorex.sections
    sim = sec.get("simulation", {})
    for v in sim:
        if v not in sorex.venues:
            raise ConfigError(f"simulation settings for unknown venue {v!r}", file=file, key=f"simulation.{v}",
                              allowed=", ".join(sorex.venues))
    return EngineConfig(sorex=sorex, engine=sec.get("engine", EngineSettings()), simulation=dict(sim),
                        risk=sec.get("risk", RiskLimits()), parents=tuple(sec.get("parents", ())),
                        default_venues=default_venues, path=file, live=live)


def load_engine_config(path: str | Path) -> EngineConfig:
    """Load a sorex TOML file for the engine (strict; :class:`ConfigError` names file and key)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", file=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a TOML file: not UTF-8 text (byte {exc.start})", file=str(p)) from None
    return load_engine_config_text(text, file=str(p))
