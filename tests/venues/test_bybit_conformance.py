"""The shared venue conformance suite run against BybitSpotVenue + the loopback fake Bybit.

The fake charges a buy's fee in the quote coin here (``buy_fee_in_base=False``): the suite's
``case_marketable_fills`` checks quote-coin fees (Binance's and the simulator's convention). Bybit
spot's own rule (a buy pays its fee in the base coin) is tested in test_bybit_adapter.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bybit_fake import BybitHarness, credentials
from conformance import CASES, ConformanceHarness

from marketdata.clock import LiveClock
from marketdata.model import OrderEvent, OrderEventKind
from venues.bybit import BybitSpotVenue


@pytest.fixture
def harness() -> Iterator[BybitHarness]:
    h = BybitHarness(fake_kw={"buy_fee_in_base": False})
    try:
        yield h
    finally:
        h.close()


def test_harness_satisfies_protocol(harness: BybitHarness) -> None:
    h: ConformanceHarness = harness
    assert h.venue.venue_id == "bybit-spot"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_bybit_conformance(case: Any, harness: BybitHarness) -> None:
    case(harness)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_bybit_conformance_venue_checks(case: Any) -> None:
    """The same cases with the adapter's own pre-trade checks off: the venue's 170xxx refusals
    must name the same rules."""
    h = BybitHarness(fake_kw={"buy_fee_in_base": False}, check_filters=False)
    try:
        case(h)
    finally:
        h.close()


class _NoAckBybit(BybitSpotVenue):
    """Deliberately broken: never reports ACCEPTED."""

    def _emit(self, ev: OrderEvent) -> None:
        if ev.kind is not OrderEventKind.ACCEPTED:
            super()._emit(ev)


class _LostFillsBybit(BybitSpotVenue):
    """Deliberately broken: ignores the private stream and never reads executions."""

    def on_push(self, raw: str, msg: Any = None) -> None:
        return None

    async def _read_executions(self, tr: Any) -> None:
        return None


@pytest.mark.parametrize(("broken", "case_name"), [(_NoAckBybit, "case_submit_accepted"),
                                                   (_LostFillsBybit, "case_marketable_fills")])
def test_suite_catches_broken_adapters(broken: type[BybitSpotVenue], case_name: str) -> None:
    h = BybitHarness(fake_kw={"buy_fee_in_base": False})
    try:
        old = h.venue
        h.run(old.close())
        h.fake.pushed = 0   # the frames the closed connection read are not the new one's
        h.venue = broken(old.config, LiveClock(h.loop), credentials=credentials())
        h.venue.set_event_handler(h.events.append)
        h.run(h.venue.connect())
        case = next(c for c in CASES if c.__name__ == case_name)
        with pytest.raises(AssertionError):
            case(h)
    finally:
        h.close()
