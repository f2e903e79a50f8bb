"""A common integer grid for one instrument traded on several venues.

Venues list the same instrument with different tick and lot sizes (Binance spot BTCUSDT: 0.01 /
0.00001; USD-M: 0.1 / 0.001). Anything that compares or merges across venues (consolidated book,
router) converts each venue's ticks and lots to the finest common grid: the greatest common divisor
of the tick sizes and of the lot sizes. Every venue tick is then an exact integer number of common
ticks, so no rounding ever happens on the way in; converting back to a venue rounds side-aware.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from math import gcd

from marketdata.errors import InstrumentError
from marketdata.model import Instrument, InstrumentKind, Side


def _decimal_gcd(values: list[Decimal]) -> Decimal:
    exp = max(max(0, -int(v.normalize().as_tuple().exponent)) for v in values)
    ints = [int(v.scaleb(exp)) for v in values]
    g = 0
    for i in ints:
        g = gcd(g, i)
    return Decimal(g).scaleb(-exp)


@dataclass(frozen=True)
class CommonGrid:
    """Common tick/lot for instruments of one unified symbol, with per-venue integer factors.

    ``price_factor[venue]`` common ticks per venue tick; ``lot_factor[venue]`` common lots per
    venue lot."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal
    price_factor: dict[str, int]
    lot_factor: dict[str, int]

    @classmethod
    def from_instruments(cls, instruments: list[Instrument]) -> CommonGrid:
        if not instruments:
            raise InstrumentError("CommonGrid needs at least one instrument")
        symbols = {i.symbol for i in instruments}
        if len(symbols) != 1:
            raise InstrumentError(f"CommonGrid instruments must share one symbol, got {sorted(symbols)}")
        for i in instruments:
            if i.kind is InstrumentKind.INVERSE_PERPETUAL:
                raise InstrumentError(
                    f"{i.key}: inverse contracts are quoted in contracts, not base units; "
                    "they cannot share a lot grid with linear instruments")
        tick = _decimal_gcd([i.tick_size for i in instruments])
        lot = _decimal_gcd([i.lot_size * i.contract_size for i in instruments])
        return cls(
            symbol=instruments[0].symbol, tick_size=tick, lot_size=lot,
            price_factor={i.venue: int(i.tick_size / tick) for i in instruments},
            lot_factor={i.venue: int(i.lot_size * i.contract_size / lot) for i in instruments},
        )

    def to_common_price(self, venue: str, ticks: int) -> int:
        return ticks * self.price_factor[venue]

    def to_common_lots(self, venue: str, lots: int) -> int:
        return lots * self.lot_factor[venue]

    def to_venue_price(self, venue: str, common_ticks: int, side: Side) -> int:
        """Round a common price to the venue tick on the passive side (buy down, sell up)."""
        f = self.price_factor[venue]
        return common_ticks // f if side is Side.BUY else -((-common_ticks) // f)

    def to_venue_lots(self, venue: str, common_lots: int) -> int:
        """Round down to the venue's lot."""
        return common_lots // self.lot_factor[venue]

    def price(self, common_ticks: int | float) -> Decimal:
        return Decimal(str(common_ticks)) * self.tick_size

    def quantity(self, common_lots: int) -> Decimal:
        return (self.lot_size * common_lots).normalize()
