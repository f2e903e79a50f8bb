"""A Bybit venue's ``ws_url`` is the public spot stream host: ``/v5/public/spot`` is appended
unless the URL already ends with it. A URL naming another Bybit stream (linear, inverse, option,
the private stream) was accepted and turned into ``.../v5/public/linear/v5/public/spot``, which
fails only at start with a connection error that names no key; it is refused at load now,
naming the file and the key (the test failed before)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from test_engine_live_bybit import _toml

from marketdata.errors import ConfigError
from router.engine_config import load_engine_config_text

BASE = _toml(None)


@pytest.mark.parametrize("url", ["wss://stream.bybit.com/v5/public/linear", "wss://stream.bybit.com/v5/private",
                                 "wss://stream.bybit.com/v5/public/option/"])
def test_ws_url_of_another_stream_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_engine_config_text(BASE.replace('ws_url = "ws://127.0.0.1:1"', f'ws_url = "{url}"'), file="b.toml")
    assert ei.value.file == "b.toml" and ei.value.key == "venues.bybit-spot.ws_url", str(ei.value)
    assert "/v5/public/spot" in str(ei.value)


@pytest.mark.parametrize("url", ["wss://stream.bybit.com", "wss://stream.bybit.com/",
                                 "wss://stream-testnet.bybit.com/v5/public/spot", "ws://127.0.0.1:8080"])
def test_ws_url_of_the_spot_stream_is_taken(url: str) -> None:
    cfg = load_engine_config_text(BASE.replace('ws_url = "ws://127.0.0.1:1"', f'ws_url = "{url}"'))
    assert cfg.live["bybit-spot"].md_ws_url == url
