"""Real Binance USD-M BTCUSDT events for the simulated-venue tests and benchmark, read with
``marketdata.replay.open_dataset`` (Binance's futures local-book procedure). Data:
../shared/data/binance-btc/usdm_btcusdt_20240808.gz (Binance public market data, from the
MIT-licensed hftbacktest examples; see the LICENSE beside it).
"""

from __future__ import annotations

import functools
import os
from decimal import Decimal
from pathlib import Path

from marketdata.model import Instrument, InstrumentKind, MarketEvent, Symbol, VenueId
from marketdata.replay import open_dataset

VENUE = VenueId("binance-usdm")
SYMBOL = Symbol("BTC-USDT")
USDM_FILE = "usdm_btcusdt_20240808.gz"


def shared_dir() -> Path:
    env = os.environ.get("SOREX_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared"


def usdm_path() -> Path:
    return shared_dir() / "data" / "binance-btc" / USDM_FILE


def usdm_instrument(min_notional: str = "100") -> Instrument:
    """Binance USD-M BTCUSDT rules: tick 0.1, lot 0.001, min qty 0.001, min notional 100 USDT."""
    return Instrument(venue=VENUE, symbol=SYMBOL, venue_symbol="BTCUSDT", base="BTC", quote="USDT",
                      tick_size=Decimal("0.1"), lot_size=Decimal("0.001"), min_quantity=Decimal("0.001"),
                      min_notional=Decimal(min_notional), kind=InstrumentKind.PERPETUAL)


@functools.lru_cache(maxsize=1)
def load_usdm_events() -> tuple[MarketEvent, ...]:
    """All events of the USD-M capture in ts_event order (snapshot first), read with the project's
    own reader (``marketdata.replay``), cached per process."""
    events = tuple(open_dataset([usdm_path()]).events())
    assert events and events[0].venue == VENUE, "the USD-M capture should replay as binance-usdm"
    return events
