"""The shared per-order merge (venues/tracking.py), driven directly through a minimal venue, and the
shared helpers of venues/config_common.py and venues/rest_common.py."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from marketdata.clock import SimClock
from marketdata.errors import ConfigError, UnknownOrderError
from marketdata.model import (
    ClientOrderId,
    Fill,
    Instrument,
    InstrumentKind,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderType,
    Side,
    Symbol,
    TradeId,
    VenueId,
    VenueOrderId,
)
from venues.base import Balance, OrderStatusReport, Position, VenueInfo
from venues.config_common import ApiCredentials, reject_unknown_keys, spot_instruments_from_mapping
from venues.rest_common import wire_value
from venues.tracking import BalanceCache, TrackedOrder, TrackingVenue, next_replacement_id, query_schedule

K = OrderEventKind
VENUE = VenueId("t")


def _inst() -> Instrument:
    return Instrument(venue=VENUE, symbol=Symbol("BTC-USDT"), venue_symbol="BTCUSDT", base="BTC", quote="USDT",
                      tick_size=Decimal("0.1"), lot_size=Decimal("0.001"), kind=InstrumentKind.SPOT)


class _Venue(BalanceCache, TrackingVenue[TrackedOrder]):
    def __init__(self, clock: SimClock) -> None:
        self.info = VenueInfo(venue=VENUE)
        self._clock = clock
        self.stats = {"events": 0, "duplicates": 0, "unresolved": 0}
        self._init_tracking((_inst(),))
        self._init_balances()
        self.events: list[OrderEvent] = []
        self.set_event_handler(self.events.append)
        self.held: list[ClientOrderId] = []

    def _on_terminal_held(self, tr: TrackedOrder) -> None:
        self.held.append(tr.order.client_order_id)

    def track(self, cid: str, lots: int = 10) -> TrackedOrder:
        tr = TrackedOrder(Order(client_order_id=ClientOrderId(cid), venue=VENUE, symbol=Symbol("BTC-USDT"),
                                side=Side.BUY, order_type=OrderType.LIMIT, lots=lots, price_ticks=100), _inst())
        self._tracks[tr.order.client_order_id] = tr
        return tr

    def fill(self, tr: TrackedOrder, trade_id: str, lots: int, ts: int) -> Fill:
        return Fill(client_order_id=tr.order.client_order_id, venue=VENUE, symbol=Symbol("BTC-USDT"), side=Side.BUY,
                    trade_id=TradeId(trade_id), price_ticks=100, lots=lots, fee=Decimal(0), fee_currency="USDT",
                    liquidity=Liquidity.MAKER, ts_event=ts, ts_init=ts, venue_order_id=VenueOrderId("v1"))

    def kinds(self) -> list[OrderEventKind]:
        return [e.kind for e in self.events]

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def submit(self, order: Order) -> None: ...
    async def cancel(self, client_order_id: ClientOrderId) -> None: ...

    async def replace(self, client_order_id: ClientOrderId, *, lots: int | None = None,
                      price_ticks: int | None = None) -> None: ...

    async def order_status(self, client_order_id: ClientOrderId) -> OrderStatusReport:
        raise NotImplementedError

    async def open_orders(self, symbol: str | None = None) -> list[OrderStatusReport]:
        return []

    async def balances(self) -> dict[str, Balance]:
        return {}

    async def positions(self) -> list[Position]:
        return []


def test_a_terminal_status_ahead_of_the_fills_waits_for_them_and_duplicates_count_once() -> None:
    v = _Venue(SimClock(1_000))
    tr = v.track("a")
    v._on_terminal(tr, K.CANCELED, 4, 50, reason="by user")    # the venue says 4 lots filled, none seen yet
    assert v.kinds() == [K.ACCEPTED] and tr.terminal is None and v.held == ["a"]
    v._on_fill(tr, v.fill(tr, "t1", 3, 40))
    v._on_fill(tr, v.fill(tr, "t1", 3, 40))                    # the same trade again (stream + REST)
    assert v.kinds() == [K.ACCEPTED, K.PARTIALLY_FILLED] and v.stats["duplicates"] == 1
    v._on_fill(tr, v.fill(tr, "t2", 1, 45))
    assert v.kinds() == [K.ACCEPTED, K.PARTIALLY_FILLED, K.PARTIALLY_FILLED, K.CANCELED]
    assert v.events[-1].ts_event == 50 and v.events[-1].reason == "by user" and tr.filled_lots == 4
    assert v.events[0].venue_order_id is None and v.events[-1].venue_order_id == VenueOrderId("v1")  # from a fill


def test_filled_comes_with_the_last_fill_and_rejected_is_kept_for_status_answers() -> None:
    v = _Venue(SimClock(1_000))
    tr = v.track("f", lots=2)
    v._on_terminal(tr, K.FILLED, 2, 10)
    assert v.kinds() == [K.ACCEPTED]
    v._on_fill(tr, v.fill(tr, "x", 2, 11))
    assert v.kinds() == [K.ACCEPTED, K.FILLED] and tr.terminal is K.FILLED and tr.pending is None
    r = v.track("r")
    v._on_terminal(r, K.REJECTED, 0, 12, reason="LOT_SIZE", code="-1013")
    rep = v._rejected_report(r.order.client_order_id, r.inst)
    assert rep is not None and rep.status.value == "rejected"
    assert v._rejected_report(ClientOrderId("f"), tr.inst) is None


def test_unresolved_rejects_only_an_order_nothing_else_settled() -> None:
    v = _Venue(SimClock(1_000))
    v.track("u")
    done = v.track("d")
    done.accepted = True
    v._reject_unresolved(ClientOrderId("u"), "-2013")
    v._reject_unresolved(ClientOrderId("d"), "-2013")
    assert [(e.client_order_id, e.kind, e.code) for e in v.events] == [("u", K.REJECTED, "-2013")]
    assert v.stats["unresolved"] == 1


async def test_query_schedule_stretches_the_last_delay_to_the_horizon_then_repeats_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimClock(0)
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(d: float) -> None:
        slept.append(d)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    got = []
    async for i, last in query_schedule((Decimal("0.5"), Decimal(1)), 3_000_000_000, clock):
        got.append((i, last))
        if i == 2:
            break
    assert got == [(0, False), (1, True), (2, True)] and slept == [0.5, 3.0, 3.0]


def test_replacement_ids_count_per_order_and_stay_within_36_characters() -> None:
    tr = TrackedOrder(Order(client_order_id=ClientOrderId("o"), venue=VENUE, symbol=Symbol("BTC-USDT"), side=Side.BUY,
                            order_type=OrderType.MARKET, lots=1), _inst())
    assert [next_replacement_id(ClientOrderId("o"), tr, ".") for _ in range(2)] == ["o.r1", "o.r2"]
    long = next_replacement_id(ClientOrderId("x" * 35), None, "-")
    assert long.startswith("r-") and len(long) == 34   # "r-" and the 32 hex digits of a 16-byte digest


def test_balance_cache_keeps_the_newer_reading_and_hears_rises() -> None:
    v = _Venue(SimClock(5))
    heard: list[list[str]] = []
    v.set_balance_handler(heard.append)
    assert v.cached_balance("BTC") is None
    v._update_balances(10, {"BTC": Balance("BTC", Decimal(1))}, complete=True)
    v._update_balances(9, {"BTC": Balance("BTC", Decimal(5))}, complete=False)    # older: ignored
    v._update_balances(11, {"BTC": Balance("BTC", Decimal(2)), "ETH": Balance("ETH", Decimal(1))}, complete=False)
    assert v.cached_balance("BTC") == Balance("BTC", Decimal(2)) and v.balance_as_of_ns("BTC") == 11
    assert heard == [["BTC", "ETH"]] and v.cached_balance("XRP") == Balance("XRP", Decimal(0))


def test_config_helpers_name_the_entry_and_the_key() -> None:
    with pytest.raises(ConfigError) as e:
        spot_instruments_from_mapping([{"symbol": "A-B", "venue_symbol": "AB", "base": "A", "quote": "B",
                                        "tick_size": "0.1"}], VENUE, "venues.t")
    assert "lot_size" in str(e.value) and e.value.key == "instruments[0]"
    with pytest.raises(ConfigError) as e2:
        reject_unknown_keys({"a": 1, "zz": 2, "b": 3}, {"a"}, "venues.t", prefix="instruments[1].")
    assert e2.value.key == "instruments[1].b"
    with pytest.raises(ConfigError) as e3:
        ApiCredentials.from_env(_Keys(), {"K": "hunter2"})
    assert "S not set" in str(e3.value) and "hunter2" not in str(e3.value)
    assert repr(ApiCredentials.from_env(_Keys(), {"K": "k", "S": "s"})) == "ApiCredentials(api_key=***, api_secret=***)"


class _Keys:
    venue = VENUE
    api_key_env = "K"
    api_secret_env = "S"


@pytest.mark.parametrize(("value", "wire"), [(True, "true"), (Decimal("1E-7"), "0.0000001"), (5, "5")])
def test_wire_values(value: Any, wire: str) -> None:
    assert wire_value(value, "X") == wire


def test_wire_refuses_floats() -> None:
    with pytest.raises(TypeError, match="never sent to X"):
        wire_value(0.1, "X")


def test_symbol_of_an_untracked_order_is_the_only_instrument_and_garbled_handler_failures_are_contained() -> None:
    v = _Venue(SimClock(1))
    assert v._symbol_for(ClientOrderId("never-sent")) == _inst()
    v._instruments = (_inst(), _inst())
    with pytest.raises(UnknownOrderError):
        v._symbol_for(ClientOrderId("never-sent"))
    got: list[tuple[str, Any, str]] = []
    v.set_garbled_handler(lambda venue, raw, err: got.append((venue, raw, err)))
    v._report_garbled("{bad", "ValueError: x")

    def broken(venue: str, raw: Any, err: str) -> None:
        raise RuntimeError("handler bug")

    v.set_garbled_handler(broken)
    v._report_garbled("{bad", "ValueError: y")   # logged, not raised
    assert got == [("t", "{bad", "ValueError: x")]
