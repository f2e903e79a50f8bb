"""Bybit v5: spot trading adapter (config, signing and HTTP client, private stream, parsers, error
table) and public market data (:mod:`venues.bybit.marketdata`, :mod:`venues.bybit.ws_md`).

See docs/venues-bybit.md. :class:`venues.bybit.adapter.BybitSpotVenue` implements
:class:`venues.base.Venue`."""

from venues.bybit.adapter import BybitSpotVenue
from venues.bybit.config import BybitCredentials, BybitSpotConfig

__all__ = ["BybitCredentials", "BybitSpotConfig", "BybitSpotVenue"]
