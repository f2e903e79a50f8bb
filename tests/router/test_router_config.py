"""Strict TOML loading of the routing policy and venues, extension sections, examples."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D
from pathlib import Path

import pytest

from marketdata.errors import ConfigError
from router.config import Table, load_config, load_config_text, register_section

REPO = Path(__file__).resolve().parents[2]
BASE = """
[routing]
strategy = "smart"
[venues.binance-spot]
"""


def test_minimal_defaults() -> None:
    cfg = load_config_text(BASE)
    assert cfg.routing.strategy == "smart" and cfg.routing.symbol == "BTC-USDT"
    assert cfg.routing.haircut_enabled
    v = cfg.venues["binance-spot"]
    assert v.enabled and v.fee_tier.taker_bps == 0 and v.max_quantity is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.enabled = False  # type: ignore[misc]


def test_full_venue_and_fee_tiers() -> None:
    cfg = load_config_text("""
[routing]
strategy = "lowest_cost"
max_slippage_bps = "12.5"
[venues.x]
max_quantity = 2.5
[venues.x.fees]
maker_bps = -0.5
taker_bps = 4.5
volume_30d = "2000000"
[[venues.x.fees.tiers]]
min_30d_volume = 1000000
maker_bps = -1
taker_bps = 4.0
[[venues.x.fees.tiers]]
min_30d_volume = 5000000
maker_bps = -2
taker_bps = 3.0
[venues.x.credentials]
api_key_env = "X_KEY"
[venues.x.balances]
USDT = "1000.5"
""", file="t.toml")
    assert cfg.routing.max_slippage_bps == D("12.5")
    v = cfg.venues["x"]
    assert v.max_quantity == D("2.5")
    assert v.fee_tier.taker_bps == D("4.0") and v.fee_tier.maker_bps == D(-1)
    assert v.api_key_env == "X_KEY" and v.api_secret_env is None
    assert v.balances == {"USDT": D("1000.5")}


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ('[routing]\nstrategy = "cheapest"\n[venues.a]\n', "routing.strategy", "best_price, lowest_cost, fastest, smart"),
    ('[routing]\nstrategy = "smart"\nmax_latency_ms = -1\n[venues.a]\n', "routing.max_latency_ms", "> 0"),
    ('[routing]\nstrategy = "smart"\ndefault_urgency = 1.5\n[venues.a]\n', "routing.default_urgency", "0 <= x <= 1"),
    ('[routing]\nstrategy = "smart"\nfoo = 1\n[venues.a]\n', "routing.foo", "allowed"),
    ('[routing]\nstrategy = "smart"\n[venues.a]\nenabled = "yes"\n', "venues.a.enabled", "true, false"),
    ('[routing]\nstrategy = "smart"\n[venues.a.fees]\ntaker_bps = "x"\n', "venues.a.fees.taker_bps", "not a number"),
    ('[routing]\nstrategy = "smart"\n[venues.a.fees]\ntaker_bps = 0.00001\n', "venues.a.fees.taker_bps",
     "multiples of 0.0001"),
    ('[routing]\nstrategy = "smart"\n[venues.a.latency]\nrtt = 3\n', "venues.a.latency.rtt", "order_rtt_ms"),
    ('[routing]\nstrategy = "smart"\n[venues.a]\n[risk]\nx = 1\n', "risk", "routing, venues"),
    ('[routing]\nstrategy = "smart"\n', "venues", "at least one"),
    ('[venues.a]\n', "routing", "required"),
])
def test_errors_name_file_key_and_allowed(text: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config_text(text, file="policy.toml")
    msg = str(ei.value)
    assert "policy.toml" in msg and f"key '{key}'" in msg and fragment in msg, msg
    assert ei.value.key == key


def test_literal_secrets_rejected_and_not_echoed() -> None:
    secret = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    with pytest.raises(ConfigError) as ei:
        load_config_text(BASE + f'[venues.binance-spot.credentials]\napi_key_env = "{secret}"\n', file="c.toml")
    assert "literal secret" in str(ei.value) and secret not in str(ei.value)
    with pytest.raises(ConfigError, match="literal credentials"):
        load_config_text(BASE + f'api_secret = "{secret}"\n')
    with pytest.raises(ConfigError, match="environment-variable NAME"):
        load_config_text(BASE + '[venues.binance-spot.credentials]\napi_secret = "x"\n')


def test_extra_sections_via_registry_and_argument() -> None:
    def parse_engine(t: Table) -> dict[str, object]:
        out = {"mode": t.string("mode", allowed=("simulate", "shadow", "live")),
               "speed": t.number("speed", 1.0, min=0, min_exclusive=True)}
        t.finish()
        return out

    def parse_parents(ts: list[Table]) -> list[str]:
        out = []
        for t in ts:
            out.append(t.string("algo"))
            t.finish()
        return out

    text = BASE + '[engine]\nmode = "simulate"\n[[parents]]\nalgo = "twap"\n[[parents]]\nalgo = "pov"\n'
    cfg = load_config_text(text, sections={"engine": parse_engine, "parents": parse_parents})
    assert cfg.sections["engine"] == {"mode": "simulate", "speed": 1.0}
    assert cfg.sections["parents"] == ["twap", "pov"]
    with pytest.raises(ConfigError, match=r"key 'engine.mode'.*allowed: simulate, shadow, live"):
        load_config_text(BASE + '[engine]\nmode = "paper"\n', sections={"engine": parse_engine})
    with pytest.raises(ConfigError, match=r"key 'parents\[1\].speed'"):
        load_config_text(BASE + '[[parents]]\nalgo = "a"\n[[parents]]\nalgo = "b"\nspeed = 1\n',
                         sections={"parents": parse_parents})
    register_section("test_router_extra", lambda t: t.data)
    assert load_config_text(BASE + "[test_router_extra]\na = 1\n").sections["test_router_extra"] == {"a": 1}
    with pytest.raises(ValueError):
        register_section("routing", parse_engine)


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[routing\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("strategy", ["best_price", "lowest_cost", "fastest", "smart"])
def test_examples_load(strategy: str) -> None:
    cfg = load_config(REPO / "examples" / f"routing_{strategy}.toml")
    assert cfg.routing.strategy == strategy
    assert set(cfg.venues) == {"binance-spot", "binance-usdm"}
    assert cfg.routing.symbol == "BTC-USDT"
