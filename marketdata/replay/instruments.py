"""Instruments of the replayable markets: the known Binance BTC contracts with their real trading
rules, and an exact integer grid inferred from the wire strings for any other symbol.

Venue ids: ``binance-spot``, ``binance-usdm`` (USD-M perpetuals), ``binance-coinm`` (COIN-M,
inverse). Unified symbols: ``BTC-USDT`` for spot and USD-M BTCUSDT, ``BTC-USD`` for BTCUSD_PERP.
"""

from __future__ import annotations

from decimal import Decimal

from marketdata.model import Instrument, InstrumentKind, Symbol, VenueId

SPOT = "binance-spot"
USDM = "binance-usdm"
COINM = "binance-coinm"

MARKET_VENUES = {"spot": SPOT, "usdm": USDM, "coinm": COINM}

KNOWN: dict[tuple[str, str], Instrument] = {
    (SPOT, "BTCUSDT"): Instrument(
        venue=VenueId(SPOT), symbol=Symbol("BTC-USDT"), venue_symbol="BTCUSDT", base="BTC", quote="USDT",
        tick_size=Decimal("0.01"), lot_size=Decimal("0.00001"), min_quantity=Decimal("0.00001"),
        min_notional=Decimal("5"), kind=InstrumentKind.SPOT),
    (USDM, "BTCUSDT"): Instrument(
        venue=VenueId(USDM), symbol=Symbol("BTC-USDT"), venue_symbol="BTCUSDT", base="BTC", quote="USDT",
        tick_size=Decimal("0.1"), lot_size=Decimal("0.001"), min_quantity=Decimal("0.001"),
        min_notional=Decimal("100"), kind=InstrumentKind.PERPETUAL),
    (COINM, "BTCUSD_PERP"): Instrument(
        venue=VenueId(COINM), symbol=Symbol("BTC-USD"), venue_symbol="BTCUSD_PERP", base="BTC", quote="USD",
        tick_size=Decimal("0.1"), lot_size=Decimal("1"), min_quantity=Decimal("1"),
        kind=InstrumentKind.INVERSE_PERPETUAL, contract_size=Decimal("100")),
}

# Longest first so that "FDUSD" wins over "USD"-like suffixes.
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY",
           "BRL", "GBP", "JPY", "USD")


def split_symbol(venue_symbol: str) -> tuple[str, str]:
    """``ETHUSDT`` -> (``ETH``, ``USDT``); ``ETHUSD_PERP`` -> (``ETH``, ``USD``); unknown -> (sym, "")."""
    s = venue_symbol.upper()
    if "_" in s:
        s = s.split("_", 1)[0]
    for q in _QUOTES:
        if s.endswith(q) and len(s) > len(q):
            return s[: -len(q)], q
    if "-" in s:
        b, _, q = s.partition("-")
        return b, q
    return s, ""


def significant_decimals(text: str) -> int:
    """Decimals of a plain decimal string once trailing zeros are dropped (``"1.2300"`` -> 2)."""
    if "e" in text or "E" in text:
        exp = Decimal(text).normalize().as_tuple().exponent
        return max(0, -int(exp)) if isinstance(exp, int) else 0
    _, dot, frac = text.partition(".")
    return len(frac.rstrip("0")) if dot else 0


def infer_instrument(venue: str, venue_symbol: str, price_decimals: int, qty_decimals: int) -> Instrument:
    """An instrument whose grid is exactly ``10**-price_decimals`` / ``10**-qty_decimals``, so every
    wire string seen parses to integers without rounding. COIN-M contracts are inverse with Binance's
    contract sizes (100 USD for BTC, 10 USD for the others)."""
    base, quote = split_symbol(venue_symbol)
    unified = f"{base}-{quote}" if quote else base
    kind = InstrumentKind.SPOT
    contract = Decimal(1)
    if venue == USDM:
        kind = InstrumentKind.PERPETUAL
    elif venue == COINM:
        kind = InstrumentKind.INVERSE_PERPETUAL
        contract = Decimal(100) if base == "BTC" else Decimal(10)
    return Instrument(
        venue=VenueId(venue), symbol=Symbol(unified), venue_symbol=venue_symbol, base=base, quote=quote,
        tick_size=Decimal(1).scaleb(-price_decimals), lot_size=Decimal(1).scaleb(-qty_decimals),
        kind=kind, contract_size=contract)


def known_instrument(venue: str, venue_symbol: str) -> Instrument | None:
    """The real instrument for a known (venue, venue symbol), else ``None``."""
    return KNOWN.get((venue, venue_symbol.upper()))
