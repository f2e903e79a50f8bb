"""Rigs for testing :class:`venues.binance.BinanceSpotVenue` against :mod:`binance_fake`.

* :class:`BinanceHarness`: the conformance harness (sync API). The fake server and the adapter live
  on an event loop in a background thread; ``run`` submits coroutines to it.
* :func:`binance_rig`: an async context manager for ``async def`` tests on pytest's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from binance_fake import FakeBinance

from marketdata.clock import LiveClock
from marketdata.model import Instrument, InstrumentKind, OrderEvent, Symbol, VenueId
from venues.binance import BinanceCredentials, BinanceSpotConfig, BinanceSpotVenue
from venues.signing import Secret

T = TypeVar("T")

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
TAKER_BPS = Decimal(4)
MAKER_BPS = Decimal("-0.5")


def make_instrument() -> Instrument:
    return Instrument(venue=VenueId("binance-spot"), symbol=Symbol("BTC-USDT"), venue_symbol="BTCUSDT",
                      base="BTC", quote="USDT", tick_size=Decimal("0.1"), lot_size=Decimal("0.001"),
                      min_quantity=Decimal("0.001"), min_notional=Decimal("5"), kind=InstrumentKind.SPOT)


def make_config(fake: FakeBinance, inst: Instrument, **kw: Any) -> BinanceSpotConfig:
    base: dict[str, Any] = {
        "instruments": (inst,), "rest_url": fake.rest_url, "ws_url": fake.ws_url, "request_timeout_s": Decimal(2),
        "maker_bps": MAKER_BPS, "taker_bps": TAKER_BPS, "resolve_delays_s": (Decimal("0.05"), Decimal("0.1")),
        "recv_window_ms": 1000, "order_resp_type": "RESULT"}
    base.update(kw)
    return BinanceSpotConfig(**base)


def make_fake(inst: Instrument, quote: Decimal, base: Decimal, **kw: Any) -> FakeBinance:
    return FakeBinance([inst], API_KEY, API_SECRET, balances={inst.quote: quote, inst.base: base},
                       maker_bps=MAKER_BPS, taker_bps=TAKER_BPS, **kw)


def credentials(secret: str = API_SECRET) -> BinanceCredentials:
    return BinanceCredentials(Secret(API_KEY), Secret(secret))


async def settle(fake: FakeBinance, venue: BinanceSpotVenue, limit_s: float = 5.0) -> None:
    """Wait until the adapter has read every message the fake pushed, and its follow-ups ran."""
    async with asyncio.timeout(limit_s):
        while True:
            ws = venue.user_stream
            if ws is None or ws.messages >= fake.pushed:
                break
            await asyncio.sleep(0.002)
    for _ in range(3):
        await asyncio.sleep(0)


@dataclass
class Rig:
    fake: FakeBinance
    venue: BinanceSpotVenue
    instrument: Instrument
    events: list[OrderEvent] = field(default_factory=list)

    async def settle(self) -> None:
        await settle(self.fake, self.venue)


@contextlib.asynccontextmanager
async def binance_rig(*, fake_kw: dict[str, Any] | None = None, quote: Decimal = Decimal(100_000),
                      base: Decimal = Decimal(10), **config_kw: Any) -> AsyncIterator[Rig]:
    inst = make_instrument()
    fake = make_fake(inst, quote, base, **(fake_kw or {}))
    await fake.start()
    venue = BinanceSpotVenue(make_config(fake, inst, **config_kw), LiveClock(), credentials=credentials())
    rig = Rig(fake, venue, inst)
    venue.set_event_handler(rig.events.append)
    try:
        await venue.connect()
        yield rig
    finally:
        await venue.close()
        await fake.stop()


class BinanceHarness:
    """Conformance harness: a connected adapter on a background loop talking to the fake."""

    def __init__(self, **config_kw: Any) -> None:
        self.instrument = make_instrument()
        self.quote_funds = Decimal(100_000)
        self.base_funds = Decimal(10)
        self.events: list[OrderEvent] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="binance-harness", daemon=True)
        self._thread.start()
        self.fake = make_fake(self.instrument, self.quote_funds, self.base_funds)
        self.run(self.fake.start())
        self.venue = BinanceSpotVenue(make_config(self.fake, self.instrument, **config_kw), LiveClock(self.loop),
                                      credentials=credentials())
        self.venue.set_event_handler(self.events.append)
        self.run(self.venue.connect())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=20)

    def set_book(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.run(self.fake.set_book(self.instrument.venue_symbol, bids, asks))

    def settle(self) -> None:
        self.run(settle(self.fake, self.venue))

    def close(self) -> None:
        try:
            self.run(self.venue.close())
            self.run(self.fake.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            self.loop.close()
