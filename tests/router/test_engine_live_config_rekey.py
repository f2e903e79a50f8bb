"""Errors of a live venue's ``rate_limits`` overrides name the file and the dotted TOML key
(``venues.<id>.rate_limits.<bucket>``), for both adapters. Before the fix a bad bucket value was
reported at ``venues.<id>.<bucket>``, a key that does not exist in the file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from test_engine_live_bybit import KEY_ENV, SECRET_ENV, _toml

from marketdata.errors import ConfigError
from router.engine import Engine


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k")
    monkeypatch.setenv(SECRET_ENV, "s")


def _with(extra: str, adapter: str = "bybit-spot") -> str:
    text = _toml(None).replace("orderbook_depth = 50", extra)
    if adapter == "binance-spot":
        text = text.replace('adapter = "bybit-spot"', 'adapter = "binance-spot"').replace(
            'ws_private_url = "ws://127.0.0.1:1/v5/private"\n', "")
    return text


@pytest.mark.parametrize(("adapter", "bucket"), [("bybit-spot", "CREATE"), ("binance-spot", "ORDERS_10S")])
@pytest.mark.parametrize("value", ["[0, 1]", '["a", 1]', "5"])
def test_bad_rate_limit_override_names_its_key(creds: None, adapter: str, bucket: str, value: str) -> None:
    text = _with(f"rate_limits = {{ {bucket} = {value} }}", adapter)
    with pytest.raises(ConfigError) as ei:
        Engine.from_toml_text(text, file="live.toml")
    assert ei.value.file == "live.toml"
    assert ei.value.key == f"venues.bybit-spot.rate_limits.{bucket}", str(ei.value)


def test_unknown_rate_limit_bucket_names_its_key(creds: None) -> None:
    with pytest.raises(ConfigError) as ei:
        Engine.from_toml_text(_with("rate_limits = { NOPE = [5, 1] }"), file="live.toml")
    assert ei.value.key == "venues.bybit-spot.rate_limits.NOPE" and "CREATE" in str(ei.value)
