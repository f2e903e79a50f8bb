"""Review: order-manager event sequences that are legitimate venue behaviour but were mishandled."""

from __future__ import annotations

from decimal import Decimal

from test_order_manager import SPOT, K, S

from marketdata.clock import SimClock
from marketdata.errors import RateLimited, VenueTimeout
from marketdata.model import (
    ClientOrderId,
    Fill,
    Instrument,
    Liquidity,
    OrderEvent,
    OrderEventKind,
    Side,
    TradeId,
    VenueId,
)
from venues.order_manager import OrderManager

BTC = SPOT
ETH = Instrument(VenueId("binance-spot"), "ETH-USDT", "ETHUSDT", "ETH", "USDT",  # type: ignore[arg-type]
                 Decimal("0.01"), Decimal("0.0001"))
V = VenueId("binance-spot")


def _om() -> OrderManager:
    return OrderManager(SimClock(start_ns=10**18), [BTC, ETH], run_id="r")


def _ev(kind: OrderEventKind, cid: str, **kw: object) -> OrderEvent:
    return OrderEvent(kind=kind, client_order_id=ClientOrderId(cid), venue=V, ts_event=1, ts_init=1,
                      **kw)  # type: ignore[arg-type]


def _fill(cid: str, symbol: str, side: Side, trade: str, lots: int) -> OrderEvent:
    f = Fill(client_order_id=ClientOrderId(cid), venue=V, symbol=symbol,  # type: ignore[arg-type]
             side=side, trade_id=TradeId(trade), price_ticks=100_000, lots=lots, fee=Decimal("0"),
             fee_currency="USDT", liquidity=Liquidity.MAKER, ts_event=2, ts_init=2)
    return _ev(K.PARTIALLY_FILLED, cid, fill=f)


def _submit(om: OrderManager, symbol: str = "BTC-USDT", side: Side = Side.BUY, parent: str = "P1") -> str:
    return om.submit(venue=V, symbol=symbol, side=side, lots=100, price_ticks=100_000,
                     parent_id=parent).client_order_id


def _unknown_then_retried(om: OrderManager) -> str:
    cid = _submit(om)
    om.on_send_failed(cid, VenueTimeout("no answer"))
    assert om.order(cid).status is S.UNKNOWN
    om.retry_submit(cid)
    return cid


def test_retry_refused_by_429_leaves_the_order_unknown_not_rejected() -> None:
    """Submit times out (UNKNOWN: the venue may have it), the retry with the same id is refused with
    a 429. The 429 says the *retry* was not taken, nothing about the original: the order must stay
    UNKNOWN (and keep counting against the parent), not become REJECTED."""
    om = _om()
    cid = _unknown_then_retried(om)
    assert om.on_send_failed(cid, RateLimited("429", retry_after_ns=10**9)) is S.UNKNOWN
    assert om.parent_accounting("P1").unknown == 100
    # the venue still may report the original live
    om.on_event(_ev(K.ACCEPTED, cid))
    assert om.order(cid).status is S.NEW


def test_duplicate_reject_of_a_retry_while_a_cancel_is_pending_keeps_the_order_live() -> None:
    """UNKNOWN submit, retried, then cancelled before the retry's answer; the venue answers the
    retry with "Duplicate order sent." - the original is live, so the order is still PENDING_CANCEL
    (not REJECTED, which would drop it from the parent's exposure while it can still fill)."""
    om = _om()
    cid = _unknown_then_retried(om)
    om.cancel(cid)
    om.on_event(_ev(K.REJECTED, cid, reason="Duplicate order sent.", code="-2010"))
    assert om.order(cid).status is S.PENDING_CANCEL
    assert om.parent_accounting("P1").working == 100
    om.on_event(_ev(K.CANCELED, cid))
    assert om.order(cid).status is S.CANCELED


def test_duplicate_reject_means_acknowledged_so_a_cancel_reject_returns_to_new() -> None:
    """A retry's "Duplicate order sent." proves the venue holds the order (acked). A later cancel
    that is rejected must put it back to NEW, not PENDING_NEW (in flight, waiting for an ack that
    was already given)."""
    om = _om()
    cid = _unknown_then_retried(om)
    om.on_event(_ev(K.REJECTED, cid, reason="Duplicate order sent.", code="-2010"))
    assert om.order(cid).status is S.NEW
    om.cancel(cid)
    om.on_event(_ev(K.CANCEL_REJECTED, cid, reason="too late"))
    assert om.order(cid).status is S.NEW
    assert om.parent_accounting("P1").in_flight == 0


def test_same_trade_id_on_two_symbols_of_one_venue_both_count() -> None:
    """Binance trade ids are per symbol: BTCUSDT trade 7 and ETHUSDT trade 7 are different trades.
    Both fills are real and must count; only a repeat of the same order's trade is a duplicate."""
    om = _om()
    a = _submit(om, "BTC-USDT", parent="P1")
    b = _submit(om, "ETH-USDT", parent="P2")
    om.on_event(_fill(a, "BTC-USDT", Side.BUY, "7", 10))
    om.on_event(_fill(b, "ETH-USDT", Side.BUY, "7", 20))
    assert om.order(a).filled_lots == 10
    assert om.order(b).filled_lots == 20
    assert om.stats["duplicate_fills"] == 0
    om.on_event(_fill(b, "ETH-USDT", Side.BUY, "7", 20))   # a real duplicate
    assert om.order(b).filled_lots == 20 and om.stats["duplicate_fills"] == 1


def test_self_trade_fills_both_of_our_orders() -> None:
    """Our buy and our sell of two parents cross on the venue: one trade id, two fills (maker and
    taker side), one per order. Both must count."""
    om = _om()
    buy = _submit(om, side=Side.BUY, parent="B")
    sell = _submit(om, side=Side.SELL, parent="S")
    om.on_event(_fill(buy, "BTC-USDT", Side.BUY, "42", 30))
    om.on_event(_fill(sell, "BTC-USDT", Side.SELL, "42", 30))
    assert om.order(buy).filled_lots == 30 and om.order(sell).filled_lots == 30
    assert om.parent_accounting("S").filled == 30
