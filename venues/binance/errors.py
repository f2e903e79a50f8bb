"""Binance spot error codes -> the sorex error tree (:mod:`marketdata.errors`).

Source: https://developers.binance.com/docs/binance-spot-api-docs/errors and the "General API
information" page (HTTP 4XX/5XX semantics). The rules that matter for order state:

* HTTP 5XX, ``-1006`` and ``-1007`` mean *execution status unknown*: :class:`VenueTimeout`, the
  order is UNKNOWN and must be resolved by a status query, never assumed rejected.
* HTTP 429 (``-1003``/``-1015``) and 418 (IP ban) are :class:`RateLimited` with the
  ``Retry-After`` header (seconds) as ``retry_after_ns``; the venue did not take the request. So is
  a ``-1003``/``-1015`` body under any other status (Binance documents these codes by body, e.g. a
  400 ``-1015`` for the order count), and the HTTP client feeds both to the rate limiter alike;
  :func:`named_limit` reads which limit the text names ("current limit is 50 orders per 10
  SECOND") for when there is no ``Retry-After``.
* Everything else with a JSON ``{"code", "msg"}`` body is final: the venue answered and refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from marketdata.clock import NS_PER_SECOND
from marketdata.errors import (
    FinalVenueError,
    InsufficientFunds,
    OrderRejected,
    RateLimited,
    VenueDisconnected,
    VenueError,
    VenueTimeout,
)

__all__ = [
    "RATE_LIMIT_CODES",
    "AuthenticationError",
    "CancelRejected",
    "ListenKeyNotFound",
    "NamedLimit",
    "OrderNotFound",
    "TimestampRejected",
    "banned_until_ms",
    "map_error",
    "named_limit",
]


class AuthenticationError(FinalVenueError):
    """Bad API key, signature or permissions (-1002, -1022, -2014, -2015, HTTP 401). HTTP 403 is a
    WAF refusal on Binance and maps to :class:`RateLimited` (see docs/venues-binance.md)."""


class TimestampRejected(FinalVenueError):
    """-1021: the request's timestamp is outside recvWindow (resync the clock offset and resend)."""


class CancelRejected(FinalVenueError):
    """-2011: the venue refused the cancel (unknown order, or already finished)."""


class ListenKeyNotFound(FinalVenueError):
    """-1125 "This listenKey does not exist.": the user-data stream's key expired or was closed
    (a keepalive or close of it); take a new one. Not an order rejection."""


class OrderNotFound(FinalVenueError):
    """-2013 / -2026: the venue has no such order (never placed, or archived)."""


RATE_LIMIT_CODES = frozenset({-1003, -1015})
"""-1003 TOO_MANY_REQUESTS (request weight, or too many queued) and -1015 TOO_MANY_ORDERS (order count)."""
_RATE = RATE_LIMIT_CODES
_LIMIT_TEXT = re.compile(r"current limit is (\d+) (request weight|orders) per (\d+) (SECOND|MINUTE|HOUR|DAY)",
                         re.IGNORECASE)
_BANNED = re.compile(r"banned until (\d+)", re.IGNORECASE)
_UNIT_S = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86_400}
_UNKNOWN_STATUS = {-1006, -1007}
_AUTH = {-1002, -1022, -2014, -2015}
_NOT_FOUND = {-2013, -2026}
_INSUFFICIENT = "insufficient balance"


@dataclass(frozen=True, slots=True)
class NamedLimit:
    """The limit a ``-1003``/``-1015`` text names: ``count`` per ``interval_num`` ``interval``
    (Binance's ``rateLimits`` terms), of request weight or (``orders``) of new orders."""

    count: int
    orders: bool
    interval_num: int
    interval: str

    @property
    def interval_s(self) -> int:
        return self.interval_num * _UNIT_S[self.interval]

    @property
    def header(self) -> str:
        """The response header that reports this limit's count, e.g. ``X-MBX-ORDER-COUNT-10S``."""
        prefix = "X-MBX-ORDER-COUNT" if self.orders else "X-MBX-USED-WEIGHT"
        return f"{prefix}-{self.interval_num}{self.interval[0]}"


def named_limit(msg: str) -> NamedLimit | None:
    """The limit named by Binance's rate-limit texts, or ``None`` (e.g. "Too many new orders.").

    >>> named_limit("Too many new orders; current limit is 50 orders per 10 SECOND.")
    NamedLimit(count=50, orders=True, interval_num=10, interval='SECOND')
    >>> named_limit("Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
    ...             "Please use WebSocket Streams for live updates to avoid polling the API.").header
    'X-MBX-USED-WEIGHT-1M'
    """
    m = _LIMIT_TEXT.search(msg)
    if m is None:
        return None
    return NamedLimit(int(m.group(1)), m.group(2).lower() == "orders", int(m.group(3)), m.group(4).upper())


def banned_until_ms(msg: str) -> int | None:
    """The end of an IP ban named by a ``-1003`` text ("Way too much request weight used; IP banned
    until 1659146400000."), in venue epoch ms, or ``None``."""
    m = _BANNED.search(msg)
    return int(m.group(1)) if m is not None else None


def map_error(status: int, code: int | None, msg: str, *, venue: str, client_order_id: str | None = None,
              retry_after_s: str | None = None) -> VenueError:
    """The sorex error for one Binance error response.

    ``status`` is the HTTP status, ``code``/``msg`` the JSON body's fields (``None``/raw text when
    the body was not Binance's JSON), ``retry_after_s`` the ``Retry-After`` header if any."""
    kw: dict[str, object] = {"venue": venue, "client_order_id": client_order_id,
                             "code": code if code is not None else status, "venue_text": msg}
    if status in (429, 418) or code in _RATE:
        retry_ns: int | None = None
        if retry_after_s is not None:
            try:
                retry_ns = int(retry_after_s.strip()) * NS_PER_SECOND
            except ValueError:
                retry_ns = None
        what = "IP banned (418)" if status == 418 else "rate limited"
        return RateLimited(what, retry_after_ns=retry_ns, **kw)
    if status >= 500 or code in _UNKNOWN_STATUS:
        return VenueTimeout("execution status unknown", **kw)  # type: ignore[arg-type]
    if code == -1001:
        return VenueDisconnected("venue internal disconnect", **kw)  # type: ignore[arg-type]
    if code == -1008:
        return RateLimited("server busy", retry_after_ns=None, **kw)
    if code == -1021:
        return TimestampRejected("timestamp outside recvWindow", **kw)  # type: ignore[arg-type]
    if status == 403:   # Binance: a WAF rule was violated (a rate-limit violation or a security block)
        return RateLimited("refused by the WAF (403)", retry_after_ns=None, **kw)
    if code in _AUTH or status == 401:
        return AuthenticationError("authentication refused", **kw)  # type: ignore[arg-type]
    if code == -1125:
        return ListenKeyNotFound("listen key does not exist", **kw)  # type: ignore[arg-type]
    if code == -2011:
        return CancelRejected("cancel rejected", **kw)  # type: ignore[arg-type]
    if code in _NOT_FOUND:
        return OrderNotFound("order does not exist", **kw)  # type: ignore[arg-type]
    if code == -2010 and _INSUFFICIENT in msg.lower():
        return InsufficientFunds("insufficient balance", **kw)  # type: ignore[arg-type]
    if code is not None:
        # -1013 filter failures, -2010 other new-order rejects, -11xx parameter errors, -1121 symbol
        return OrderRejected("order rejected", **kw)  # type: ignore[arg-type]
    return FinalVenueError(f"HTTP {status}", **kw)  # type: ignore[arg-type]
