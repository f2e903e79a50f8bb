"""Fixtures shared by the live-engine tests: the loopback fake Binance and the API key in the
environment the engine config names (constants in test_engine_live)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from binance_fake import FakeBinance
from binance_harness import API_KEY, API_SECRET, MAKER_BPS, TAKER_BPS, make_instrument
from test_engine_live import ASKS, BIDS, KEY_ENV, SECRET_ENV


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    monkeypatch.setenv(SECRET_ENV, API_SECRET)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinance]:
    inst = make_instrument()
    f = FakeBinance([inst], API_KEY, API_SECRET, balances={"USDT": Decimal(10_000_000), "BTC": Decimal(100)},
                    maker_bps=MAKER_BPS, taker_bps=TAKER_BPS)
    await f.start()
    await f.publish_book("BTCUSDT", BIDS, ASKS)
    try:
        yield f
    finally:
        await f.stop()
