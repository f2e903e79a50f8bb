"""The shared venue conformance suite run against :class:`venues.sim.SimulatedVenue`."""

from __future__ import annotations

from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from conformance import CASES, ConformanceHarness

from marketdata.clock import NS_PER_MS, NS_PER_SECOND, SimClock
from marketdata.model import BookDeltas, Instrument, InstrumentKind, OrderEvent, Symbol, VenueId
from venues.base import FeeSchedule, FeeTier, run_now
from venues.latency import LatencyModel
from venues.sim import SimulatedVenue, SimVenueConfig

T = TypeVar("T")
START_NS = 1_723_161_600 * NS_PER_SECOND


class SimHarness:
    """Conformance harness for the simulated venue: the market is a snapshot pushed into the
    matching engine; time is the SimClock."""

    def __init__(self, seed: int = 7) -> None:
        self.instrument = Instrument(
            venue=VenueId("sim-x"), symbol=Symbol("BTC-USDT"), venue_symbol="BTCUSDT", base="BTC",
            quote="USDT", tick_size=Decimal("0.1"), lot_size=Decimal("0.001"),
            min_quantity=Decimal("0.001"), min_notional=Decimal("5"), kind=InstrumentKind.SPOT)
        self.quote_funds = Decimal("100000")
        self.base_funds = Decimal("10")
        self.clock = SimClock(START_NS)
        self.sim = SimulatedVenue(SimVenueConfig(
            venue=VenueId("sim-x"), instruments=[self.instrument],
            fees=FeeSchedule((FeeTier(maker_bps=Decimal("-0.5"), taker_bps=Decimal("4")),)),
            balances={"USDT": self.quote_funds, "BTC": self.base_funds},
            order_entry_latency=LatencyModel.lognormal(2 * NS_PER_MS, 0.3),
            ack_latency=LatencyModel.constant(3 * NS_PER_MS), seed=seed), self.clock)
        self.venue = self.sim
        self.events: list[OrderEvent] = []
        self.sim.set_event_handler(self.events.append)
        run_now(self.sim.connect())

    def set_book(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        inst = self.instrument
        now = self.clock.now_ns()
        self.sim.on_market_event(BookDeltas(
            inst.venue, inst.symbol,
            [(inst.price_to_ticks(p), inst.qty_to_lots(q)) for p, q in bids],
            [(inst.price_to_ticks(p), inst.qty_to_lots(q)) for p, q in asks], now, now, is_snapshot=True))

    def settle(self) -> None:
        self.clock.advance_to(self.clock.now_ns() + NS_PER_SECOND)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return run_now(coro)


def test_harness_satisfies_protocol() -> None:
    h: ConformanceHarness = SimHarness()
    assert h.venue.venue_id == "sim-x"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_sim_conformance(case: Any) -> None:
    case(SimHarness())


class _NoAckVenue(SimulatedVenue):
    """A deliberately broken venue: never reports ACCEPTED."""

    def _emit(self, so: Any, kind: Any, **kw: Any) -> None:
        from marketdata.model import OrderEventKind
        if kind is not OrderEventKind.ACCEPTED:
            super()._emit(so, kind, **kw)


class _FreeFeeVenue(SimulatedVenue):
    """A deliberately broken venue: charges no taker fee although its schedule says 4 bps."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._taker_bps = Decimal(0)


@pytest.mark.parametrize(("broken", "case_name"), [(_NoAckVenue, "case_submit_accepted"),
                                                   (_FreeFeeVenue, "case_marketable_fills")])
def test_suite_catches_broken_venues(broken: type[SimulatedVenue], case_name: str) -> None:
    h = SimHarness()
    h.sim = broken(h.sim.config, h.clock)
    h.venue = h.sim
    h.sim.set_event_handler(h.events.append)
    case = next(c for c in CASES if c.__name__ == case_name)
    with pytest.raises(AssertionError):
        case(h)
