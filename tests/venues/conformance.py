"""The venue conformance suite: behaviour every :class:`venues.base.Venue` adapter must show.

It is parametrised by a *harness*: something that builds a connected venue and can set that
venue's market and move time. For the simulated venue the harness pushes a snapshot into the
matching engine and advances the SimClock; a live adapter's harness drives a loopback server that
speaks the venue's protocol. Use it like this::

    from conformance import CASES, ConformanceHarness

    @pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
    def test_conformance(case):
        case(make_my_harness())

Each case is a plain function ``case(harness) -> None`` that raises ``AssertionError`` on a
violation. Commands go through :func:`venues.base.run_now` when the harness says the venue never
suspends, else through ``harness.run`` (an event-loop runner the harness provides).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from marketdata.errors import UnknownOrderError, VenueError
from marketdata.model import (
    ClientOrderId,
    Instrument,
    Liquidity,
    Order,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from venues.base import Venue

T = TypeVar("T")

TERMINAL_KINDS = frozenset({OrderEventKind.REJECTED, OrderEventKind.FILLED, OrderEventKind.CANCELED,
                            OrderEventKind.EXPIRED})


class ConformanceHarness(Protocol):
    """What the suite needs from an adapter's test rig.

    ``venue`` is connected, its event handler appends to ``events``; ``instrument`` is the one
    instrument traded; the account starts with ``quote_funds`` of the quote asset and
    ``base_funds`` of the base asset."""

    venue: Venue
    instrument: Instrument
    events: list[OrderEvent]
    quote_funds: Decimal
    base_funds: Decimal

    def set_book(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        """Make the venue's visible book exactly these (price, quantity) levels, best first."""

    def settle(self) -> None:
        """Let every request in flight reach the venue and every resulting event reach us."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one venue coroutine to completion."""


HarnessFactory = Callable[[], ConformanceHarness]

_counter = [0]


def _cid(prefix: str) -> ClientOrderId:
    _counter[0] += 1
    return ClientOrderId(f"conf-{prefix}-{_counter[0]}")


def _order(h: ConformanceHarness, prefix: str, side: Side, qty: str, price: str | None,
           order_type: OrderType = OrderType.LIMIT, tif: TimeInForce = TimeInForce.GTC) -> Order:
    inst = h.instrument
    return Order(client_order_id=_cid(prefix), venue=inst.venue, symbol=inst.symbol, side=side,
                 order_type=order_type, lots=inst.qty_to_lots(qty),
                 price_ticks=None if price is None else inst.price_to_ticks(price), time_in_force=tif)


def _events_of(h: ConformanceHarness, cid: ClientOrderId) -> list[OrderEvent]:
    return [e for e in h.events if e.client_order_id == cid]


def _kinds(h: ConformanceHarness, cid: ClientOrderId) -> list[OrderEventKind]:
    return [e.kind for e in _events_of(h, cid)]


def _standard_book(h: ConformanceHarness) -> None:
    h.set_book(bids=[("100.0", "1.000"), ("99.9", "2.000"), ("99.8", "3.000")],
               asks=[("100.1", "1.000"), ("100.2", "2.000"), ("100.3", "3.000")])


def _assert_valid_sequence(h: ConformanceHarness, cid: ClientOrderId) -> None:
    evs = _events_of(h, cid)
    assert evs, f"{cid}: no events"
    assert evs[0].kind in (OrderEventKind.ACCEPTED, OrderEventKind.REJECTED), \
        f"{cid}: first event {evs[0].kind} is neither ACCEPTED nor REJECTED"
    seen_terminal = False
    filled = 0
    for e in evs:
        assert not seen_terminal, f"{cid}: event {e.kind} after a terminal event"
        if e.kind in (OrderEventKind.PARTIALLY_FILLED, OrderEventKind.FILLED):
            assert e.fill is not None, f"{cid}: {e.kind} without a fill"
            filled += e.fill.lots
        if e.kind in TERMINAL_KINDS:
            seen_terminal = True
    times = [e.ts_init for e in evs]
    assert times == sorted(times), f"{cid}: events delivered out of time order {times}"


# ---------------------------------------------------------------------------------------------- cases
def case_capabilities_declared(h: ConformanceHarness) -> None:
    caps = h.venue.info.capabilities
    assert OrderType.LIMIT in caps.order_types and OrderType.MARKET in caps.order_types
    assert TimeInForce.GTC in caps.time_in_force and TimeInForce.IOC in caps.time_in_force
    assert isinstance(caps.native_modify, bool)
    assert h.venue.venue_id == h.instrument.venue
    assert h.venue.info.instruments.get(h.instrument.symbol) == h.instrument


def case_submit_accepted(h: ConformanceHarness) -> None:
    _standard_book(h)
    o = _order(h, "acc", Side.BUY, "1.000", "99.0")
    h.run(h.venue.submit(o))
    h.settle()
    assert _kinds(h, o.client_order_id) == [OrderEventKind.ACCEPTED]
    ev = _events_of(h, o.client_order_id)[0]
    assert ev.venue_order_id, "ACCEPTED must carry the venue order id"
    rep = h.run(h.venue.order_status(o.client_order_id))
    assert rep.status is OrderStatus.NEW and rep.filled_lots == 0 and rep.lots == o.lots
    assert rep.venue_order_id == ev.venue_order_id
    opens = h.run(h.venue.open_orders())
    assert [r.client_order_id for r in opens] == [o.client_order_id]
    bal = h.run(h.venue.balances())
    assert bal[h.instrument.quote].locked > 0, "a resting buy locks quote funds"


def case_invalid_orders_rejected(h: ConformanceHarness) -> None:
    _standard_book(h)
    inst = h.instrument
    zero_qty = Order(client_order_id=_cid("badqty"), venue=inst.venue, symbol=inst.symbol, side=Side.BUY,
                     order_type=OrderType.LIMIT, lots=0, price_ticks=inst.price_to_ticks("99.0"))
    zero_px = Order(client_order_id=_cid("badpx"), venue=inst.venue, symbol=inst.symbol, side=Side.BUY,
                    order_type=OrderType.LIMIT, lots=inst.qty_to_lots("1"), price_ticks=0)
    tiny = _order(h, "notional", Side.BUY, str(inst.min_quantity or inst.lot_size), "1.0")
    for o in (zero_qty, zero_px, tiny):
        h.run(h.venue.submit(o))
    h.settle()
    for o, word in ((zero_qty, "LOT_SIZE"), (zero_px, "PRICE"), (tiny, "NOTIONAL")):
        evs = _events_of(h, o.client_order_id)
        assert [e.kind for e in evs] == [OrderEventKind.REJECTED], f"{o.client_order_id}: {evs}"
        assert evs[0].reason and word in evs[0].reason, f"reason {evs[0].reason!r} should name {word}"
        assert evs[0].code, "a rejection carries the venue's code"
        assert h.run(h.venue.order_status(o.client_order_id)).status is OrderStatus.REJECTED
    assert h.run(h.venue.open_orders()) == []


def case_cancel(h: ConformanceHarness) -> None:
    _standard_book(h)
    before = h.run(h.venue.balances())
    o = _order(h, "cxl", Side.BUY, "1.000", "99.0")
    h.run(h.venue.submit(o))
    h.settle()
    h.run(h.venue.cancel(o.client_order_id))
    h.settle()
    assert _kinds(h, o.client_order_id) == [OrderEventKind.ACCEPTED, OrderEventKind.CANCELED]
    assert h.run(h.venue.order_status(o.client_order_id)).status is OrderStatus.CANCELED
    assert h.run(h.venue.open_orders()) == []
    after = h.run(h.venue.balances())
    q = h.instrument.quote
    assert after[q].free == before[q].free and after[q].locked == before[q].locked


def case_cancel_unknown(h: ConformanceHarness) -> None:
    _standard_book(h)
    cid = ClientOrderId("conf-never-sent")
    try:
        h.run(h.venue.cancel(cid))
    except (UnknownOrderError, VenueError):
        return
    h.settle()
    evs = _events_of(h, cid)
    assert [e.kind for e in evs] == [OrderEventKind.CANCEL_REJECTED], evs
    assert evs[0].reason


def case_ioc_without_liquidity(h: ConformanceHarness) -> None:
    _standard_book(h)
    o = _order(h, "ioc", Side.BUY, "1.000", "99.5", tif=TimeInForce.IOC)
    h.run(h.venue.submit(o))
    h.settle()
    kinds = _kinds(h, o.client_order_id)
    assert kinds[0] is OrderEventKind.ACCEPTED and kinds[-1] in (OrderEventKind.CANCELED, OrderEventKind.EXPIRED)
    assert not any(e.fill for e in _events_of(h, o.client_order_id))
    rep = h.run(h.venue.order_status(o.client_order_id))
    assert rep.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) and rep.filled_lots == 0
    _assert_valid_sequence(h, o.client_order_id)


def case_marketable_fills(h: ConformanceHarness) -> None:
    _standard_book(h)
    inst = h.instrument
    before = h.run(h.venue.balances())
    o = _order(h, "take", Side.BUY, "1.500", None, order_type=OrderType.MARKET, tif=TimeInForce.IOC)
    h.run(h.venue.submit(o))
    h.settle()
    _assert_valid_sequence(h, o.client_order_id)
    evs = _events_of(h, o.client_order_id)
    fills = [e.fill for e in evs if e.fill is not None]
    assert evs[-1].kind is OrderEventKind.FILLED
    assert sum(f.lots for f in fills) == o.lots
    assert [(f.price_ticks, f.lots) for f in fills] == [
        (inst.price_to_ticks("100.1"), inst.qty_to_lots("1.000")),
        (inst.price_to_ticks("100.2"), inst.qty_to_lots("0.500"))], "walks the book level by level"
    assert len({f.trade_id for f in fills}) == len(fills) and all(f.trade_id for f in fills)
    taker = h.venue.info.fees.taker_bps
    fee_total = Decimal(0)
    notional_total = Decimal(0)
    for f in fills:
        assert f.liquidity is Liquidity.TAKER and f.fee_currency == inst.quote
        notional = inst.notional(f.price_ticks, f.lots)
        assert abs(f.fee - notional * taker / Decimal(10_000)) <= Decimal("0.00000001")
        fee_total += f.fee
        notional_total += notional
    rep = h.run(h.venue.order_status(o.client_order_id))
    assert rep.status is OrderStatus.FILLED and rep.filled_lots == o.lots
    assert rep.average_price_ticks is not None
    assert h.run(h.venue.open_orders()) == []
    after = h.run(h.venue.balances())
    assert after[inst.base].total - before[inst.base].total == inst.lots_to_qty(o.lots)
    assert before[inst.quote].total - after[inst.quote].total == notional_total + fee_total
    assert after[inst.quote].locked == before[inst.quote].locked


def case_events_in_valid_order(h: ConformanceHarness) -> None:
    _standard_book(h)
    orders = [
        _order(h, "seq1", Side.SELL, "0.500", "100.0", tif=TimeInForce.IOC),
        _order(h, "seq2", Side.BUY, "0.700", "100.1"),
        _order(h, "seq3", Side.SELL, "1.000", "101.0"),
    ]
    for o in orders:
        h.run(h.venue.submit(o))
    h.settle()
    h.run(h.venue.cancel(orders[2].client_order_id))
    h.settle()
    for o in orders:
        _assert_valid_sequence(h, o.client_order_id)
        rep = h.run(h.venue.order_status(o.client_order_id))
        fills = [e.fill.lots for e in _events_of(h, o.client_order_id) if e.fill is not None]
        assert rep.filled_lots == sum(fills)
    assert _kinds(h, orders[2].client_order_id)[-1] is OrderEventKind.CANCELED


CASES: list[Callable[[ConformanceHarness], None]] = [
    case_capabilities_declared,
    case_submit_accepted,
    case_invalid_orders_rejected,
    case_cancel,
    case_cancel_unknown,
    case_ioc_without_liquidity,
    case_marketable_fills,
    case_events_in_valid_order,
]
"""Every conformance case, in a stable order (use as a pytest parameter list)."""
