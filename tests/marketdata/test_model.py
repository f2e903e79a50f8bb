from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketdata.errors import InstrumentError
from marketdata.model import Instrument, InstrumentKind, InstrumentRegistry, Side, Symbol, VenueId
from marketdata.units import CommonGrid


def spot() -> Instrument:
    return Instrument(VenueId("binance-spot"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT",
                      Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal("5"))


def usdm() -> Instrument:
    return Instrument(VenueId("binance-usdm"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT",
                      Decimal("0.1"), Decimal("0.001"), Decimal("0.001"), Decimal("100"),
                      kind=InstrumentKind.PERPETUAL)


def test_side_sign_and_parse() -> None:
    assert int(Side.BUY) == 1 and int(Side.SELL) == -1
    assert Side.parse("Buy") is Side.BUY and Side.parse("ask") is Side.SELL
    assert Side.BUY.opposite is Side.SELL
    with pytest.raises(ValueError, match="not one of"):
        Side.parse("hold")


def test_side_aware_price_rounding() -> None:
    i = spot()
    assert i.price_to_ticks("61800.123", Side.BUY) == 6180012
    assert i.price_to_ticks("61800.123", Side.SELL) == 6180013
    assert i.price_to_ticks("61800.12") == 6180012
    with pytest.raises(InstrumentError, match="not a multiple of tick"):
        i.price_to_ticks("61800.123")
    with pytest.raises(InstrumentError, match="not a number"):
        i.price_to_ticks("abc", Side.BUY)
    with pytest.raises(InstrumentError, match="must be positive"):
        i.price_to_ticks("-1", Side.BUY)
    with pytest.raises(InstrumentError, match="floats"):
        i.price_to_ticks(1.5, Side.BUY)  # type: ignore[arg-type]
    assert i.ticks_to_price(6180012) == Decimal("61800.12")


def test_quantity_rounds_down_to_lot() -> None:
    i = spot()
    assert i.qty_to_lots("0.123456") == 12345
    assert i.lots_to_qty(12345) == Decimal("0.12345")
    with pytest.raises(InstrumentError, match="not a multiple of lot"):
        i.qty_to_lots("0.123456", exact=True)
    with pytest.raises(InstrumentError, match="negative"):
        i.qty_to_lots("-1")


def test_fast_wire_parse_matches_decimal() -> None:
    i = spot()
    assert i.parse_price_ticks("61837.63000000") == 6183763
    assert i.parse_qty_lots("1.54698000") == 154698
    assert i.parse_qty_lots("0.00000000") == 0
    with pytest.raises(ValueError, match="precision"):
        i.parse_price_ticks("61837.631")
    u = usdm()
    assert u.parse_price_ticks("61800.20") == 618002
    assert u.parse_qty_lots("12.111") == 12111


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=0, max_value=10**9))
def test_wire_parse_roundtrip(ticks: int, lots: int) -> None:
    i = spot()
    assert i.parse_price_ticks(str(i.ticks_to_price(ticks))) == ticks
    assert i.parse_qty_lots(str(i.lots_to_qty(lots))) == lots


def test_order_rules() -> None:
    i = usdm()
    assert i.check_order(618000, 0) == "quantity must be positive"
    assert "min_notional" in (i.check_order(618000, 1) or "")
    assert i.check_order(618000, 2) is None  # 0.002 BTC x 61800 = 123.6 >= 100


def test_registry_maps_symbols() -> None:
    reg = InstrumentRegistry([spot(), usdm()])
    assert reg.to_venue_symbol("binance-spot", "BTC-USDT") == "BTCUSDT"
    assert reg.to_unified("binance-usdm", "BTCUSDT") == "BTC-USDT"
    assert len(reg.venues_for("BTC-USDT")) == 2
    with pytest.raises(InstrumentError, match="unknown instrument 'ETH-USDT'"):
        reg.get("binance-spot", "ETH-USDT")


def test_common_grid() -> None:
    g = CommonGrid.from_instruments([spot(), usdm()])
    assert g.tick_size == Decimal("0.01") and g.lot_size == Decimal("0.00001")
    assert g.price_factor == {"binance-spot": 1, "binance-usdm": 10}
    assert g.lot_factor == {"binance-spot": 1, "binance-usdm": 100}
    assert g.to_common_price("binance-usdm", 618002) == 6180020
    assert g.to_venue_price("binance-usdm", 6180025, Side.BUY) == 618002
    assert g.to_venue_price("binance-usdm", 6180025, Side.SELL) == 618003
    assert g.to_venue_lots("binance-usdm", 250) == 2
