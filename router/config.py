"""Routing policy and venue configuration from TOML, loaded strictly into frozen dataclasses.

The file format is documented in ``docs/routing.md``; one example per strategy lives in
``examples/routing_*.toml``. Two layers:

* :class:`Table` is a small reusable strict-schema reader over one TOML table. Each typed getter
  (``string``, ``boolean``, ``integer``, ``decimal``, ``number``, ``table``, ...) validates one key
  and remembers it was read; :meth:`Table.finish` then rejects every key nobody asked for. All
  errors are :class:`~marketdata.errors.ConfigError` naming the file, the dotted key path and the
  allowed values.
* :func:`load_config` reads a whole file: the ``[routing]`` and ``[venues.<id>]`` sections owned
  here, plus any extra top-level sections (``[[parents]]``, ``[risk]``, ``[engine]``, ``[data]``)
  parsed by functions registered with :func:`register_section` or passed as ``sections=``. An
  extra section parser receives a :class:`Table` (or, for an array of tables, a list of them) and
  returns any value; it appears in :attr:`SorexConfig.sections`. Unregistered top-level keys are
  errors, so a typo never silently disables a section.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

from marketdata.errors import ConfigError
from venues.base import FeeSchedule, FeeTier

__all__ = [
    "STRATEGIES",
    "BreakerConfig",
    "FillPrior",
    "LatencyModel",
    "RateLimitOverride",
    "RoutingPolicy",
    "SectionParser",
    "SmartWeights",
    "SorexConfig",
    "Table",
    "VenueConfig",
    "load_config",
    "load_config_text",
    "parse_config",
    "register_section",
]

Strategy = Literal["best_price", "lowest_cost", "fastest", "smart"]
Style = Literal["take", "post", "mixed"]
STRATEGIES: Final = ("best_price", "lowest_cost", "fastest", "smart")
STYLES: Final = ("take", "post", "mixed")
MixedSplit = Literal["urgency", "cont_kukanov"]
MIXED_SPLITS: Final = ("urgency", "cont_kukanov")

_MISSING: Final = object()

_ASSET = re.compile(r"^[A-Z0-9]{1,32}$")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
_LITERAL_CREDENTIAL_KEYS = frozenset(
    {"api_key", "api_secret", "secret", "secret_key", "password", "passphrase", "private_key", "token"})


class Table:
    """Strict reader over one TOML table (see the module docstring).

    ``file`` names the source in errors; ``path`` is this table's dotted key path."""

    def __init__(self, data: Mapping[str, Any], *, file: str, path: str = "") -> None:
        self.data = data
        self.file = file
        self.path = path
        self._used: set[str] = set()

    # ----------------------------------------------------------------- basics
    def key(self, name: str) -> str:
        """Dotted path of ``name`` in this table."""
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str | None, message: str, allowed: str | None = None) -> ConfigError:
        """A :class:`ConfigError` about key ``name`` of this table (or the table itself)."""
        return ConfigError(message, file=self.file, key=self.key(name) if name else (self.path or None),
                           allowed=allowed)

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.data))

    def _raw(self, name: str, default: Any) -> Any:
        self._used.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise self.error(name, "is required")
            return default
        return self.data[name]

    def finish(self) -> None:
        """Reject every key of this table that no getter read."""
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise self.error(unknown[0], "unknown key", allowed=", ".join(sorted(self._used)) or "none")

    # ----------------------------------------------------------------- typed getters
    def string(self, name: str, default: Any = _MISSING, *, allowed: Collection[str] | None = None,
               pattern: re.Pattern[str] | None = None, pattern_text: str | None = None) -> Any:
        """A string; with ``allowed`` one of those values, with ``pattern`` a full match."""
        v = self._raw(name, default)
        if v is default and name not in self.data:
            return v
        if not isinstance(v, str):
            raise self.error(name, f"must be a string, got {type(v).__name__} {v!r}",
                             allowed=", ".join(allowed) if allowed else None)
        if allowed is not None and v not in allowed:
            raise self.error(name, f"invalid value {v!r}", allowed=", ".join(allowed))
        if pattern is not None and not pattern.fullmatch(v):
            raise self.error(name, f"invalid value {v!r}", allowed=pattern_text or pattern.pattern)
        return v

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        v = self._raw(name, default)
        if v is default and name not in self.data:
            return v
        if not isinstance(v, bool):
            raise self.error(name, f"must be a boolean, got {v!r}", allowed="true, false")
        return v

    def integer(self, name: str, default: Any = _MISSING, *, min: int | None = None,
                max: int | None = None) -> Any:
        v = self._raw(name, default)
        if v is default and name not in self.data:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(name, f"must be an integer, got {v!r}", allowed=_range_text(min, max))
        if (min is not None and v < min) or (max is not None and v > max):
            raise self.error(name, f"{v} is out of range", allowed=_range_text(min, max))
        return v

    def decimal(self, name: str, default: Any = _MISSING, *, min: Decimal | int | None = None,
                max: Decimal | int | None = None, min_exclusive: bool = False,
                quantum: Decimal | None = None) -> Any:
        """A number given as a TOML integer, float or decimal string, returned as ``Decimal``
        (floats go through their shortest repr, never binary expansion). With ``quantum`` the
        value must be a multiple of it."""
        v = self._raw(name, default)
        if v is default and name not in self.data:
            return v
        allowed = _range_text(min, max, min_exclusive)
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise self.error(name, f"must be a number or decimal string, got {v!r}", allowed=allowed)
        try:
            d = Decimal(str(v).strip())
        except InvalidOperation:
            raise self.error(name, f"{v!r} is not a number", allowed=allowed) from None
        if not d.is_finite():
            raise self.error(name, f"{v!r} is not finite", allowed=allowed)
        if min is not None and (d < min or (min_exclusive and d == min)):
            raise self.error(name, f"{v} is out of range", allowed=allowed)
        if max is not None and d > max:
            raise self.error(name, f"{v} is out of range", allowed=allowed)
        if quantum is not None and d % quantum != 0:
            raise self.error(name, f"{v} has too many decimals", allowed=f"multiples of {quantum}")
        return d

    def number(self, name: str, default: Any = _MISSING, *, min: float | None = None,
               max: float | None = None, min_exclusive: bool = False) -> Any:
        """A model parameter (not a wire number) as ``float``."""
        v = self._raw(name, default)
        if v is default and name not in self.data:
            return v
        allowed = _range_text(min, max, min_exclusive)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.error(name, f"must be a number, got {v!r}", allowed=allowed)
        f = float(v)
        if not math.isfinite(f) or (min is not None and (f < min or (min_exclusive and f == min))) \
                or (max is not None and f > max):
            raise self.error(name, f"{v} is out of range", allowed=allowed)
        return f

    def table(self, name: str, *, required: bool = False) -> Table:
        """A sub-table (an empty one when absent and not required)."""
        v = self._raw(name, _MISSING if required else {})
        if not isinstance(v, dict):
            raise self.error(name, f"must be a table, got {type(v).__name__}")
        return Table(v, file=self.file, path=self.key(name))

    def tables(self, name: str) -> dict[str, Table]:
        """A table of tables (``[name.<id>]``), by id, in file order."""
        outer = self.table(name)
        out: dict[str, Table] = {}
        for k, v in outer.data.items():
            outer._used.add(k)
            if not isinstance(v, dict):
                raise outer.error(k, f"must be a table, got {type(v).__name__}")
            out[k] = Table(v, file=self.file, path=outer.key(k))
        return out

    def array_of_tables(self, name: str) -> list[Table]:
        """An array of tables (``[[name]]``); empty when absent."""
        v = self._raw(name, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise self.error(name, "must be an array of tables ([[...]])")
        return [Table(x, file=self.file, path=f"{self.key(name)}[{i}]") for i, x in enumerate(v)]

    def string_list(self, name: str, default: Any = _MISSING) -> Any:
        v = self._raw(name, default)
        if v is default and name not in self.data:
            return v
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self.error(name, f"must be a list of strings, got {v!r}")
        return tuple(v)

    def env_name(self, name: str, default: Any = _MISSING) -> Any:
        """The NAME of an environment variable holding a credential, never the credential."""
        v = self._raw(name, default)
        if v is default and name not in self.data:
            return v
        if not isinstance(v, str) or not _ENV_NAME.fullmatch(v):
            # any string may be the secret itself, however short: never echo it
            shown = f"<redacted, {len(v)} characters>" if isinstance(v, str) and v else repr(v)
            raise self.error(
                name, f"{shown} looks like a literal secret or is not an environment-variable name; "
                "give the NAME of the variable that holds the secret",
                allowed="an upper-case name such as BINANCE_API_KEY")
        return v


def _range_text(lo: object, hi: object, lo_exclusive: bool = False) -> str | None:
    if lo is None and hi is None:
        return None
    if hi is None:
        return f"{'>' if lo_exclusive else '>='} {lo}"
    if lo is None:
        return f"<= {hi}"
    return f"{lo} {'<' if lo_exclusive else '<='} x <= {hi}"


# ===================================================================== the typed configuration
@dataclass(frozen=True, slots=True)
class SmartWeights:
    """Weights of the ``smart`` strategy's penalty terms (bps added to the fee-adjusted price)."""

    latency: float = 1.0
    fill: float = 1.0
    queue: float = 1.0


@dataclass(frozen=True, slots=True)
class FillPrior:
    """Beta(alpha, beta) priors of the online fill-probability estimators."""

    take_alpha: float = 9.0
    take_beta: float = 1.0
    post_alpha: float = 1.0
    post_beta: float = 1.0


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Circuit breaker: open after ``failures_to_open`` consecutive rejects/timeouts; after
    ``cooldown_ms`` half-open (one probe allowed); a success closes it."""

    failures_to_open: int = 5
    cooldown_ms: float = 30_000.0


@dataclass(frozen=True, slots=True)
class ContKukanovConfig:
    """``[routing.cont_kukanov]``: the inputs of the ``mixed_split = "cont_kukanov"`` split
    (docs/cont-kukanov.md): the horizon ``T`` of the queue-outflow windows, how many windows are
    kept and needed before the split is used, and the overfill penalty (bps of the price)."""

    horizon_ms: float = 5_000.0
    keep_windows: int = 200
    min_samples: int = 30
    overfill_cost_bps: float = 5.0


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """The ``[routing]`` section: strategy and its tunables (see docs/routing.md)."""

    strategy: Strategy = "smart"
    symbol: str = "BTC-USDT"
    max_slippage_bps: Decimal | None = None
    max_latency_ms: float | None = None
    max_book_age_ms: float = 2_000.0
    default_style: Style = "take"
    default_urgency: float = 0.5
    miss_cost_bps: float = 5.0
    latency_haircut: bool | None = None
    activity_half_life_ms: float = 5_000.0
    weights: SmartWeights = field(default_factory=SmartWeights)
    fill_prior: FillPrior = field(default_factory=FillPrior)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    mixed_split: MixedSplit = "urgency"
    cont_kukanov: ContKukanovConfig = field(default_factory=ContKukanovConfig)

    @property
    def haircut_enabled(self) -> bool:
        """Whether displayed liquidity is haircut for latency (default: ``fastest`` and ``smart``)."""
        if self.latency_haircut is not None:
            return self.latency_haircut
        return self.strategy in ("fastest", "smart")


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """Order round trip in ms (measured or configured) plus jitter; used until measurements arrive."""

    order_rtt_ms: float = 20.0
    jitter_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class RateLimitOverride:
    """Overrides handed to the venue's rate limiter (``None`` keeps the venue default)."""

    orders_per_second: int | None = None
    orders_per_minute: int | None = None
    request_weight_per_minute: int | None = None
    cancel_headroom: int | None = None


@dataclass(frozen=True, slots=True)
class VenueConfig:
    """One ``[venues.<id>]`` section."""

    name: str
    enabled: bool = True
    fees: FeeSchedule = field(default_factory=FeeSchedule)
    volume_30d: Decimal = Decimal(0)
    latency: LatencyModel = field(default_factory=LatencyModel)
    rate_limit: RateLimitOverride = field(default_factory=RateLimitOverride)
    api_key_env: str | None = None
    api_secret_env: str | None = None
    max_quantity: Decimal | None = None
    post_only: bool = True
    balances: Mapping[str, Decimal] = field(default_factory=dict)

    @property
    def fee_tier(self) -> FeeTier:
        """The fee tier that applies at ``volume_30d``."""
        return self.fees.tier_for(self.volume_30d)


SectionParser = Callable[[Any], Any]
"""Parses one extra top-level section: receives a :class:`Table` (``[name]``) or a list of
:class:`Table` (``[[name]]``) and returns the typed value (and should call ``finish()``)."""

_SECTION_PARSERS: dict[str, SectionParser] = {}


def register_section(name: str, parser: SectionParser) -> None:
    """Teach :func:`load_config` a new top-level section (``[name]`` or ``[[name]]``)."""
    if name in ("routing", "venues"):
        raise ValueError(f"section {name!r} is owned by router.config")
    _SECTION_PARSERS[name] = parser


@dataclass(frozen=True, slots=True)
class SorexConfig:
    """A loaded file: routing policy, venues by id, extra sections by name."""

    path: str
    routing: RoutingPolicy
    venues: Mapping[str, VenueConfig]
    sections: Mapping[str, Any] = field(default_factory=dict)

    @property
    def enabled_venues(self) -> list[str]:
        return [v for v, c in self.venues.items() if c.enabled]


# ===================================================================== parsers
_BPS_QUANTUM = Decimal("0.0001")


def _parse_routing(t: Table) -> RoutingPolicy:
    w = t.table("weights")
    weights = SmartWeights(latency=w.number("latency", 1.0, min=0), fill=w.number("fill", 1.0, min=0),
                           queue=w.number("queue", 1.0, min=0))
    w.finish()
    fp = t.table("fill_prior")
    prior = FillPrior(
        take_alpha=fp.number("take_alpha", 9.0, min=0, min_exclusive=True),
        take_beta=fp.number("take_beta", 1.0, min=0, min_exclusive=True),
        post_alpha=fp.number("post_alpha", 1.0, min=0, min_exclusive=True),
        post_beta=fp.number("post_beta", 1.0, min=0, min_exclusive=True))
    fp.finish()
    br = t.table("breaker")
    breaker = BreakerConfig(failures_to_open=br.integer("failures_to_open", 5, min=1, max=1000),
                            cooldown_ms=br.number("cooldown_ms", 30_000.0, min=0))
    br.finish()
    ck_t = t.table("cont_kukanov")
    ck = ContKukanovConfig(
        horizon_ms=ck_t.number("horizon_ms", 5_000.0, min=1, max=3_600_000),
        keep_windows=ck_t.integer("keep_windows", 200, min=2, max=100_000),
        min_samples=ck_t.integer("min_samples", 30, min=1, max=100_000),
        overfill_cost_bps=ck_t.number("overfill_cost_bps", 5.0, min=0, max=10_000, min_exclusive=True))
    if ck.min_samples > ck.keep_windows:
        raise ck_t.error("min_samples", f"min_samples {ck.min_samples} exceeds keep_windows {ck.keep_windows}",
                         allowed=f"1 <= min_samples <= keep_windows ({ck.keep_windows})")
    ck_t.finish()
    policy = RoutingPolicy(
        strategy=t.string("strategy", allowed=STRATEGIES),
        symbol=t.string("symbol", "BTC-USDT"),
        max_slippage_bps=t.decimal("max_slippage_bps", None, min=0, max=10_000, min_exclusive=True),
        max_latency_ms=t.number("max_latency_ms", None, min=0, min_exclusive=True),
        max_book_age_ms=t.number("max_book_age_ms", 2_000.0, min=0, min_exclusive=True),
        default_style=t.string("default_style", "take", allowed=STYLES),
        default_urgency=t.number("default_urgency", 0.5, min=0, max=1),
        miss_cost_bps=t.number("miss_cost_bps", 5.0, min=0, max=10_000),
        latency_haircut=t.boolean("latency_haircut", None),
        activity_half_life_ms=t.number("activity_half_life_ms", 5_000.0, min=0, min_exclusive=True),
        weights=weights, fill_prior=prior, breaker=breaker,
        mixed_split=t.string("mixed_split", "urgency", allowed=MIXED_SPLITS), cont_kukanov=ck)
    t.finish()
    return policy


def _parse_fee_tier(t: Table, with_volume: bool) -> FeeTier:
    tier = FeeTier(
        maker_bps=t.decimal("maker_bps", Decimal(0), min=-100, max=1000, quantum=_BPS_QUANTUM),
        taker_bps=t.decimal("taker_bps", Decimal(0), min=-100, max=1000, quantum=_BPS_QUANTUM),
        # a tier's threshold is required and above 0: the base tier (the [fees] keys) is the 0 one
        min_30d_volume=t.decimal("min_30d_volume", min=0, min_exclusive=True) if with_volume else Decimal(0))
    return tier


def _parse_venue(name: str, t: Table) -> VenueConfig:
    for k in t:
        if k.lower() in _LITERAL_CREDENTIAL_KEYS:
            raise t.error(k, "literal credentials are not accepted in the config file",
                          allowed=f"{k}_env = \"<ENV_VAR_NAME>\"")
    f = t.table("fees")
    base = _parse_fee_tier(f, with_volume=False)
    tiers = [base]
    for tt in f.array_of_tables("tiers"):
        tier = _parse_fee_tier(tt, with_volume=True)
        same = [i for i, x in enumerate(tiers[1:]) if x.min_30d_volume == tier.min_30d_volume]
        if same:
            raise tt.error("min_30d_volume", f"{tier.min_30d_volume} is also the threshold of {f.key('tiers')}"
                           f"[{same[0]}]", allowed="one tier per threshold")
        tiers.append(tier)
        tt.finish()
    volume = f.decimal("volume_30d", Decimal(0), min=0)
    f.finish()
    tiers.sort(key=lambda x: x.min_30d_volume)
    lat = t.table("latency")
    latency = LatencyModel(order_rtt_ms=lat.number("order_rtt_ms", 20.0, min=0, max=60_000),
                           jitter_ms=lat.number("jitter_ms", 0.0, min=0, max=60_000))
    lat.finish()
    rl = t.table("rate_limit")
    rate = RateLimitOverride(
        orders_per_second=rl.integer("orders_per_second", None, min=1, max=100_000),
        orders_per_minute=rl.integer("orders_per_minute", None, min=1, max=10_000_000),
        request_weight_per_minute=rl.integer("request_weight_per_minute", None, min=1, max=10_000_000),
        cancel_headroom=rl.integer("cancel_headroom", None, min=0, max=100_000))
    rl.finish()
    cred = t.table("credentials")
    api_key_env = cred.env_name("api_key_env", None)
    api_secret_env = cred.env_name("api_secret_env", None)
    for k in cred:
        if k not in ("api_key_env", "api_secret_env"):
            raise cred.error(k, "unknown key; credentials are given by environment-variable NAME",
                             allowed="api_key_env, api_secret_env")
    cred.finish()
    bal = t.table("balances")
    for asset in bal:
        if not _ASSET.fullmatch(asset):   # a lower-case "usdt" would be silently a zero USDT balance
            raise bal.error(asset, f"invalid asset name {asset!r}", allowed="upper-case letters and digits, e.g. USDT")
    balances = {asset: bal.decimal(asset, min=0) for asset in bal}
    bal.finish()
    cfg = VenueConfig(
        name=name, enabled=t.boolean("enabled", True), fees=FeeSchedule(tuple(tiers)), volume_30d=volume,
        latency=latency, rate_limit=rate, api_key_env=api_key_env, api_secret_env=api_secret_env,
        max_quantity=t.decimal("max_quantity", None, min=0, min_exclusive=True),
        post_only=t.boolean("post_only", True), balances=MappingProxyType(balances))
    t.finish()
    return cfg


_VENUE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def parse_config(data: Mapping[str, Any], *, file: str = "<config>",
                 sections: Mapping[str, SectionParser] | None = None) -> SorexConfig:
    """Validate an already-parsed TOML document (see :func:`load_config`)."""
    parsers = {**_SECTION_PARSERS, **(sections or {})}
    top = Table(data, file=file)
    routing = _parse_routing(top.table("routing", required=True))
    venues: dict[str, VenueConfig] = {}
    for name, vt in top.tables("venues").items():
        if not _VENUE_ID.fullmatch(name):
            raise vt.error(None, f"invalid venue id {name!r}", allowed="lower-case letters, digits, '-', '_'")
        venues[name] = _parse_venue(name, vt)
    if not venues:
        raise top.error("venues", "at least one [venues.<id>] section is required")
    extra: dict[str, Any] = {}
    for name, parser in parsers.items():
        if name not in top:
            continue
        raw = top._raw(name, _MISSING)
        if isinstance(raw, list):
            extra[name] = parser(top.array_of_tables(name))
        elif isinstance(raw, dict):
            extra[name] = parser(top.table(name))
        else:
            raise top.error(name, "must be a table or an array of tables")
    allowed_top = ["routing", "venues", *sorted(parsers)]
    for k in top:
        if k not in allowed_top:
            raise top.error(k, "unknown section", allowed=", ".join(allowed_top))
    return SorexConfig(path=file, routing=routing, venues=MappingProxyType(venues),
                       sections=MappingProxyType(extra))


def load_config_text(text: str, *, file: str = "<string>",
                     sections: Mapping[str, SectionParser] | None = None) -> SorexConfig:
    """Parse TOML text (see :func:`load_config`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=file) from None
    return parse_config(data, file=file, sections=sections)


def load_config(path: str | Path, *, sections: Mapping[str, SectionParser] | None = None) -> SorexConfig:
    """Load a sorex TOML file strictly.

    ``sections`` adds parsers for extra top-level sections for this call (on top of those
    registered with :func:`register_section`). Raises :class:`ConfigError` naming the file, the
    dotted key and the allowed values on any unknown key, wrong type or out-of-range value."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", file=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a TOML file: not UTF-8 text (byte {exc.start})", file=str(p)) from None
    return load_config_text(text, file=str(p), sections=sections)
