"""Interactive Brokers (TWS / IB Gateway socket API, text protocol). See docs/venues-ib.md."""

from venues.ib.adapter import IbVenue
from venues.ib.config import IbConfig

__all__ = ["IbConfig", "IbVenue"]
