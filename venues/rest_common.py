"""What the REST clients of the live adapters (Binance, Bybit) share: the one long-lived
``aiohttp.ClientSession`` per venue, the signing timestamp with the venue's measured clock offset,
one timed round trip whose transport failures become :class:`~marketdata.errors.VenueTimeout` /
:class:`~marketdata.errors.VenueDisconnected`, and how parameter values are written on the wire.

Signing, the venue's answer format, its error codes and its rate-limit headers stay in each
venue's ``http.py``.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from marketdata.clock import NS_PER_MS, Clock
from marketdata.errors import VenueDisconnected, VenueTimeout
from marketdata.model import VenueId
from venues.config_common import ApiCredentials
from venues.ratelimit import RateLimiter
from venues.signing import redact

__all__ = ["RestClient", "RestConfig", "wire_value"]

_log = logging.getLogger(__name__)


def wire_value(v: Any, venue_name: str) -> str:
    """A parameter value as sent: booleans ``true``/``false``, Decimals in plain notation (never
    an exponent), others ``str``; a float is refused (``TypeError``): prices and quantities are
    never sent through a float."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        raise TypeError(f"floats are never sent to {venue_name}; pass a Decimal or string")
    return format(v, "f") if hasattr(v, "as_tuple") else str(v)


class RestConfig(Protocol):
    """What :class:`RestClient` reads of a venue's config."""

    @property
    def venue(self) -> VenueId: ...
    @property
    def rest_url(self) -> str: ...
    @property
    def request_timeout_s(self) -> Decimal: ...
    @property
    def timeout_s(self) -> float: ...


_C = TypeVar("_C", bound=RestConfig)


class RestClient(Generic[_C]):
    """The session, timestamp and transport part of a venue's REST client.

    A subclass sets ``_log`` (its module logger, so its lines keep their logger name) and may
    override :meth:`_session_headers` (headers on every request, e.g. Binance's API key)."""

    _log: ClassVar[logging.Logger] = _log

    def __init__(self, config: _C, credentials: ApiCredentials, clock: Clock, limiter: RateLimiter) -> None:
        self._config = config
        self._cred = credentials
        self._clock = clock
        self.limiter = limiter
        self._session: aiohttp.ClientSession | None = None
        self.time_offset_ms = 0
        self.requests = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(venue={self._config.venue!r}, rest_url={self._config.rest_url!r})"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            raise VenueDisconnected("HTTP session is not open (call connect())", venue=self._config.venue)
        return self._session

    def _session_headers(self) -> dict[str, str] | None:
        return None

    async def start(self) -> None:
        """Open the session (idempotent)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout_s),
                                                  headers=self._session_headers())

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def timestamp_ms(self) -> int:
        """The request timestamp: our clock plus the venue's measured offset, in ms."""
        return self._clock.now_ns() // NS_PER_MS + self.time_offset_ms

    def scrub(self, text: str) -> str:
        """``text`` without the API key or secret."""
        return redact(text, self._cred.api_key, self._cred.api_secret)

    def _set_time_offset(self, venue_ms: int, t0_ms: int, t1_ms: int) -> int:
        """The venue clock offset from its time ``venue_ms`` read between our ``t0_ms`` and
        ``t1_ms`` (taken at the midpoint of the round trip)."""
        self.time_offset_ms = venue_ms - (t0_ms + t1_ms) // 2
        self._log.info("%s: venue clock offset %d ms", self._config.venue, self.time_offset_ms)
        return self.time_offset_ms

    async def _round_trip(self, method: str, url: URL, path: str, client_order_id: str | None,
                          **kw: Any) -> tuple[int, CIMultiDictProxy[str], str]:
        """One request on the session (``kw``: ``data``, ``headers``): (status, headers, body text).
        No answer in time raises :class:`VenueTimeout`, a dropped connection
        :class:`VenueDisconnected` (logged without the secrets)."""
        venue = self._config.venue
        session = self.session
        self.requests += 1
        try:
            async with session.request(method, url, **kw) as resp:
                return resp.status, resp.headers, await resp.text()
        except TimeoutError:
            self._log.warning("%s: %s %s timed out after %s s (cid=%s)", venue, method, path,
                              self._config.request_timeout_s, client_order_id)
            raise VenueTimeout(f"{method} {path}: no answer in {self._config.request_timeout_s} s",
                               venue=venue, client_order_id=client_order_id) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError,
                ConnectionError) as e:
            self._log.warning("%s: %s %s connection lost: %s (cid=%s)", venue, method, path, self.scrub(str(e)),
                              client_order_id)
            raise VenueDisconnected(f"{method} {path}: {type(e).__name__}", venue=venue,
                                    client_order_id=client_order_id) from None
