"""Binance spot live adapter: config, signing, HTTP and WebSocket clients, parsers, error table.

See docs/venues-binance.md. :class:`venues.binance.adapter.BinanceSpotVenue` implements
:class:`venues.base.Venue`."""

from venues.binance.adapter import BinanceSpotVenue
from venues.binance.config import BinanceCredentials, BinanceSpotConfig

__all__ = ["BinanceCredentials", "BinanceSpotConfig", "BinanceSpotVenue"]
