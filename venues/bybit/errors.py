"""Bybit v5 error codes -> the sorex error tree (:mod:`marketdata.errors`).

Sources: https://bybit-exchange.github.io/docs/v5/error (HTTP and ``retCode`` tables) and
https://bybit-exchange.github.io/docs/v5/rate-limit. Bybit answers almost everything with HTTP 200
and a JSON body ``{"retCode", "retMsg", "result", "retExtInfo", "time"}``; ``retCode`` 0 is success.
The rules that matter for order state:

* ``10006`` "Too many visits!" (per-UID limit, usually HTTP 200) and HTTP ``429``/``403`` (IP limit,
  "access too frequent") are :class:`RateLimited`: the venue did not take the request. The
  ``X-Bapi-Limit-Reset-Timestamp`` header (epoch ms) says when the UID limit resets; the HTTP
  client turns it into ``retry_after_ns`` and feeds the limiter (``10018`` "exceeded the IP rate
  limit" alike).
* HTTP 5xx, ``10000`` (server timeout), ``10016`` (server error), ``170007`` (timeout waiting for
  the back end), ``170146``/``170147`` (order creation/cancellation timeout) mean *execution status
  unknown*: :class:`VenueTimeout`, the order is UNKNOWN and must be resolved by a query.
* ``10002`` (timestamp outside recv_window): :class:`TimestampRejected`, the request was not
  executed (the adapter resyncs its clock offset and resends once).
* ``10003``/``10004``/``10005``/``10007``/``10009``/``10010``/``33004`` and HTTP 401:
  :class:`AuthenticationError`. ``10004``'s text echoes the string signed (which holds the API key):
  the HTTP client redacts the key before it logs or raises.
* ``170131`` "Insufficient balance." (and UTA's ``110007``/``170033``): :class:`InsufficientFunds`.
* ``170213`` / ``110001`` "Order does not exist." and ``170142``/``170139`` (already cancelled /
  filled) on a cancel: :class:`OrderNotFound` / :class:`CancelRejected`.
* ``170141`` / ``110072`` duplicate ``orderLinkId``: :class:`DuplicateOrder` (the order is already
  at the venue: find out what it is doing).
* Every other ``retCode`` is final: :class:`OrderRejected` (``10001`` parameter errors, the
  ``170xxx`` spot order checks). :data:`FILTER_OF_CODE` names the instrument rule a ``170xxx``
  order check is about (``LOT_SIZE``, ``PRICE``, ``NOTIONAL``), as the adapter's own pre-trade
  checks do.
"""

from __future__ import annotations

from marketdata.errors import (
    FinalVenueError,
    InsufficientFunds,
    OrderRejected,
    RateLimited,
    VenueError,
    VenueTimeout,
)

__all__ = [
    "FILTER_OF_CODE",
    "RATE_LIMIT_CODES",
    "AuthenticationError",
    "CancelRejected",
    "DuplicateOrder",
    "OrderNotFound",
    "TimestampRejected",
    "map_error",
]


class AuthenticationError(FinalVenueError):
    """Bad API key, signature, permissions or IP whitelist (10003, 10004, 10005, 10007, 10009,
    10010, 33004, HTTP 401)."""


class TimestampRejected(FinalVenueError):
    """10002: the request's timestamp is outside recv_window (resync the clock offset and resend)."""


class CancelRejected(FinalVenueError):
    """The venue refused the cancel: the order is already filled or cancelled (170139, 170142)."""


class OrderNotFound(FinalVenueError):
    """170213 / 110001: the venue has no such order."""


class DuplicateOrder(OrderRejected):
    """170141 / 110072: an order with this ``orderLinkId`` already exists at the venue."""


RATE_LIMIT_CODES = frozenset({10006, 10018})
"""10006 "Too many visits!" (per UID and endpoint), 10018 "Exceeded the IP rate limit"."""
_UNKNOWN_STATUS = frozenset({10000, 10016, 170007, 170146, 170147})
_AUTH = frozenset({10003, 10004, 10005, 10007, 10009, 10010, 33004})
_NOT_FOUND = frozenset({170213, 110001})
_DONE = frozenset({170139, 170142})
_DUPLICATE = frozenset({170141, 110072})
_INSUFFICIENT = frozenset({170131, 110007, 170033})

FILTER_OF_CODE: dict[int, str] = {
    170135: "LOT_SIZE",   # Order quantity too large.
    170136: "LOT_SIZE",   # Order quantity lower than the minimum.
    170137: "LOT_SIZE",   # Order volume decimal too long.
    170132: "PRICE",      # Order price too high.
    170133: "PRICE",      # Order price lower than the minimum.
    170134: "PRICE",      # Order price decimal too long.
    170140: "NOTIONAL",   # Order value exceeded lower limit.
    170124: "NOTIONAL",   # Order amount too large.
}
"""The instrument rule (in the names the adapter's own checks use) each ``170xxx`` order check is about."""


def map_error(status: int, code: int | None, msg: str, *, venue: str, client_order_id: str | None = None,
              retry_after_ns: int | None = None) -> VenueError:
    """The sorex error for one Bybit error answer.

    ``status`` is the HTTP status, ``code``/``msg`` the body's ``retCode``/``retMsg`` (``None``/raw
    text when the body was not Bybit's JSON), ``retry_after_ns`` what the rate-limit headers said."""
    kw: dict[str, object] = {"venue": venue, "client_order_id": client_order_id,
                             "code": code if code is not None else status, "venue_text": msg}
    if code in RATE_LIMIT_CODES or status in (403, 429):
        what = "IP rate limit (HTTP 403)" if status == 403 else "rate limited"
        return RateLimited(what, retry_after_ns=retry_after_ns, **kw)
    if status >= 500 or code in _UNKNOWN_STATUS:
        return VenueTimeout("execution status unknown", **kw)  # type: ignore[arg-type]
    if code == 10002:
        return TimestampRejected("timestamp outside recv_window", **kw)  # type: ignore[arg-type]
    if code in _AUTH or status == 401:
        return AuthenticationError("authentication refused", **kw)  # type: ignore[arg-type]
    if code in _NOT_FOUND:
        return OrderNotFound("order does not exist", **kw)  # type: ignore[arg-type]
    if code in _DONE:
        return CancelRejected("order already finished", **kw)  # type: ignore[arg-type]
    if code in _DUPLICATE:
        return DuplicateOrder("duplicate orderLinkId", **kw)  # type: ignore[arg-type]
    if code in _INSUFFICIENT:
        return InsufficientFunds("insufficient balance", **kw)  # type: ignore[arg-type]
    if code is not None:
        if code in FILTER_OF_CODE:
            return OrderRejected(f"order rejected ({FILTER_OF_CODE[code]})", **kw)  # type: ignore[arg-type]
        return OrderRejected("order rejected", **kw)  # type: ignore[arg-type]
    if status == 200:
        return VenueError("HTTP 200 without a retCode", **kw)  # type: ignore[arg-type]
    return FinalVenueError(f"HTTP {status}", **kw)  # type: ignore[arg-type]

