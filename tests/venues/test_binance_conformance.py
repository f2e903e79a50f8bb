"""The shared venue conformance suite run against BinanceSpotVenue + the loopback fake Binance."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from binance_harness import BinanceHarness, credentials
from conformance import CASES, ConformanceHarness

from marketdata.clock import LiveClock
from marketdata.model import OrderEvent, OrderEventKind
from venues.binance import BinanceSpotVenue


@pytest.fixture(params=["ACK", "RESULT", "FULL"])
def harness(request: pytest.FixtureRequest) -> Iterator[BinanceHarness]:
    h = BinanceHarness(order_resp_type=request.param)
    try:
        yield h
    finally:
        h.close()


def test_harness_satisfies_protocol(harness: BinanceHarness) -> None:
    h: ConformanceHarness = harness
    assert h.venue.venue_id == "binance-spot"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_binance_conformance(case: Any, harness: BinanceHarness) -> None:
    case(harness)


class _NoAckBinance(BinanceSpotVenue):
    """Deliberately broken: never reports ACCEPTED."""

    def _emit(self, ev: OrderEvent) -> None:
        if ev.kind is not OrderEventKind.ACCEPTED:
            super()._emit(ev)


class _LostFillsBinance(BinanceSpotVenue):
    """Deliberately broken: ignores the user stream and never asks for missing fills."""

    def on_user_message(self, raw: str) -> None:
        return None

    async def _recover_fills(self, tr: Any) -> None:
        return None


@pytest.mark.parametrize(("broken", "case_name"), [(_NoAckBinance, "case_submit_accepted"),
                                                   (_LostFillsBinance, "case_marketable_fills")])
def test_suite_catches_broken_adapters(broken: type[BinanceSpotVenue], case_name: str) -> None:
    h = BinanceHarness(order_resp_type="RESULT")
    try:
        old = h.venue
        h.run(old.close())
        h.venue = broken(old.config, LiveClock(h.loop), credentials=credentials())
        h.venue.set_event_handler(h.events.append)
        h.run(h.venue.connect())
        case = next(c for c in CASES if c.__name__ == case_name)
        with pytest.raises(AssertionError):
            case(h)
    finally:
        h.close()
