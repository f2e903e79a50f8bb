"""The Binance spot REST client: one long-lived ``aiohttp.ClientSession`` per venue, with request
signing, pacing through the venue's :class:`~venues.ratelimit.RateLimiter`, a timeout on every
round trip and Binance's error codes mapped to the sorex error tree. This module is the only place
a Binance request is signed.

SIGNED endpoints: the parameters in the order given, then ``recvWindow`` and ``timestamp``,
URL-encoded into the query string; ``signature`` = hex HMAC-SHA256 of exactly that string, appended
last; the API key goes in the ``X-MBX-APIKEY`` header. Everything is sent in the query string (also
for POST/DELETE), so the bytes signed are the bytes sent."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from yarl import URL

from marketdata.clock import NS_PER_MS
from marketdata.errors import ConfigError, RateLimited, VenueError
from venues.binance.config import BinanceSpotConfig
from venues.binance.errors import RATE_LIMIT_CODES, banned_until_ms, map_error, named_limit
from venues.config_common import ApiCredentials
from venues.rest_common import RestClient, wire_value
from venues.signing import hmac_sha256_hex, redact

__all__ = ["BinanceHttpClient", "sign_query"]

log = logging.getLogger(__name__)

_USED_WEIGHT_HEADERS = (("X-MBX-USED-WEIGHT-1M", "REQUEST_WEIGHT"), ("X-MBX-ORDER-COUNT-10S", "ORDERS_10S"),
                        ("X-MBX-ORDER-COUNT-1D", "ORDERS_1D"))
_BUCKET_OF_HEADER = dict(_USED_WEIGHT_HEADERS)


def sign_query(params: Mapping[str, Any], credentials: ApiCredentials) -> str:
    """``params`` URL-encoded in order with ``&signature=<hex HMAC-SHA256>`` appended (the caller
    puts ``recvWindow`` and ``timestamp`` last in ``params``)."""
    query = urlencode([(k, _wire(v)) for k, v in params.items()])
    return f"{query}&signature={hmac_sha256_hex(credentials.api_secret, query)}"


def _wire(v: Any) -> str:
    return wire_value(v, "Binance")


class BinanceHttpClient(RestClient[BinanceSpotConfig]):
    """Signed and unsigned REST calls with pacing, timeouts and error mapping (the session,
    timestamp and transport errors: :class:`venues.rest_common.RestClient`).

    ``time_offset_ms`` (venue time minus our clock) is added to every timestamp; :meth:`sync_time`
    sets it from GET /api/v3/time."""

    _log = log

    def _session_headers(self) -> dict[str, str]:
        return {"X-MBX-APIKEY": self._cred.api_key.reveal()}

    async def sync_time(self) -> int:
        """Measure the venue clock offset with GET /api/v3/time (midpoint of the round trip)."""
        t0 = self._clock.now_ns() // NS_PER_MS
        data = await self.request("GET", "/api/v3/time", request_type="query_order", signed=False)
        t1 = self._clock.now_ns() // NS_PER_MS
        return self._set_time_offset(int(data["serverTime"]), t0, t1)

    async def request(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                      request_type: str, signed: bool = True, client_order_id: str | None = None,
                      return_error_body: bool = False) -> Any:
        """One paced, timed round trip; returns the decoded JSON body.

        Raises :class:`VenueTimeout` (no answer in time, or Binance said the status is unknown),
        :class:`VenueDisconnected` (the connection dropped), :class:`RateLimited` (429/418/403 or a
        -1003/-1015 body under any status, fed back into the limiter: see :meth:`_rate_limited`) or
        the mapped final error."""
        venue = self._config.venue
        await self.limiter.acquire(request_type)
        p = dict(params or {})
        if signed:
            p["recvWindow"] = self._config.recv_window_ms
            p["timestamp"] = self.timestamp_ms()
            query = sign_query(p, self._cred)
        else:
            query = urlencode([(k, _wire(v)) for k, v in p.items()])
        url = URL(f"{self._config.rest_url}{path}" + (f"?{query}" if query else ""), encoded=True)
        status, headers, text = await self._round_trip(method, url, path, client_order_id)
        now = self._clock.now_ns()
        self._feed_headers(headers, now)
        if status == 200:
            self.limiter.on_success()
            try:
                return json.loads(text)
            except ValueError:
                raise VenueError(f"{method} {path}: HTTP 200 with a body that is not JSON",
                                 venue=venue, client_order_id=client_order_id,
                                 venue_text=text[:200]) from None
        code: int | None = None
        msg = text[:500]
        try:
            body = json.loads(text)
            if isinstance(body, dict) and "code" in body:
                code = int(body["code"])
                msg = str(body.get("msg", ""))
                if return_error_body and status in (400, 409) and isinstance(body.get("data"), dict):
                    # cancelReplace: the outcome of each half is in "data"
                    log.info("%s: %s %s -> HTTP %d code=%s msg=%r (cid=%s)", venue, method, path, status,
                             code, msg, client_order_id)
                    for half in ("cancelResponse", "newOrderResponse"):   # e.g. the new order's -1015
                        part = body["data"].get(half)
                        if isinstance(part, dict) and part.get("code") in RATE_LIMIT_CODES:
                            retry = map_error(status, int(part["code"]), str(part.get("msg", "")), venue=venue,
                                              retry_after_s=headers.get("Retry-After"))
                            assert isinstance(retry, RateLimited)
                            self._rate_limited(retry, now)
                            break
                    return {"__http_status__": status, **body}
        except ValueError:
            pass
        err = map_error(status, code, msg, venue=venue, client_order_id=client_order_id,
                        retry_after_s=headers.get("Retry-After"))
        if isinstance(err, RateLimited) and (status in (429, 418, 403) or code in RATE_LIMIT_CODES):
            self._rate_limited(err, now)
        log.info("%s: %s %s -> HTTP %d code=%s msg=%r (cid=%s)", venue, method, path, status, code,
                 redact(msg, self._cred.api_key, self._cred.api_secret), client_order_id)
        raise err

    def _rate_limited(self, err: RateLimited, now: int) -> None:
        """Feed one pacing refusal to the limiter, whatever its HTTP status: a 429/418/403, or a
        -1003/-1015 body under any status. Every request type is blocked for ``Retry-After`` if
        given, else for the limiter's doubling back-off (as a 429 without it); then, without
        ``Retry-After``, the limit the refusal is about is counted full for its interval, so the
        requests that draw on it keep waiting: the bucket the text names ("per 10 SECOND" ->
        ``ORDERS_10S``, "per 1 DAY" -> ``ORDERS_1D``, "per 1 MINUTE" -> ``REQUEST_WEIGHT``), else
        ``ORDERS_10S`` for -1015 and ``REQUEST_WEIGHT`` for a -1003 about request weight; a -1003
        naming an IP ban's end blocks everything until then."""
        retry_ns = err.retry_after_ns
        code = err.code
        text = err.venue_text or ""
        if retry_ns is None and code == -1003:
            until_ms = banned_until_ms(text)
            if until_ms is not None:
                retry_ns = max(0, until_ms - self.timestamp_ms()) * NS_PER_MS
        self.limiter.on_rate_limited(retry_ns, now)
        if retry_ns is not None or code not in RATE_LIMIT_CODES:
            return
        named = named_limit(text)
        if named is not None:
            bucket = _BUCKET_OF_HEADER.get(named.header)
        elif code == -1015:
            bucket = "ORDERS_10S"
        else:
            bucket = "REQUEST_WEIGHT" if "weight" in text.lower() else None
        if bucket is None:
            return
        try:
            self.limiter.on_limit_reached(bucket, now)
        except ConfigError:   # a limiter configured without that limit: the back-off above is all
            log.warning("%s: code %s names limit %s, which the limiter does not have", self._config.venue,
                        code, bucket)

    def _feed_headers(self, headers: Mapping[str, str], now: int) -> None:
        for header, bucket in _USED_WEIGHT_HEADERS:
            v = headers.get(header)
            if v is not None:
                try:
                    self.limiter.on_used_weight(bucket, int(v), now)
                except ValueError:
                    log.warning("%s: bad %s header %r", self._config.venue, header, v)
