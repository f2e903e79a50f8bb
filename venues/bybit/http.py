"""The Bybit v5 REST client: one long-lived ``aiohttp.ClientSession`` per venue, with request
signing, pacing through the venue's :class:`~venues.ratelimit.RateLimiter`, a timeout on every
round trip and Bybit's answers mapped to the sorex error tree (:mod:`venues.bybit.errors`). This
module is the only place a Bybit request or stream login is signed.

Signed requests (v5 "Integration guidance", HMAC-SHA256): headers ``X-BAPI-API-KEY``,
``X-BAPI-TIMESTAMP`` (ms), ``X-BAPI-RECV-WINDOW`` and ``X-BAPI-SIGN`` = hex HMAC-SHA256 of
``timestamp + api_key + recv_window + payload``, where the payload is the query string of a GET
exactly as sent, or the JSON body of a POST exactly as sent (so the bytes signed are the bytes sent).
The private stream logs in with ``{"op": "auth", "args": [api_key, expires, signature]}``,
signature = hex HMAC-SHA256 of ``"GET/realtime" + expires`` (:func:`sign_ws_auth`).

Bybit answers HTTP 200 for nearly everything; ``retCode`` 0 is success and the ``result`` object is
returned. Every answer's ``X-Bapi-Limit`` / ``X-Bapi-Limit-Status`` (the endpoint's limit and what
is left of it) tighten the limiter's bucket for the request type; a ``10006`` or an HTTP 403/429
blocks the limiter until ``X-Bapi-Limit-Reset-Timestamp`` (or for its doubling back-off); an HTTP
403 (the IP is banned) blocks it for ``ip_ban_s``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from yarl import URL

from marketdata.clock import NS_PER_MS, Clock
from marketdata.errors import ConfigError, RateLimited, VenueError
from venues.bybit.config import BybitCredentials, BybitSpotConfig
from venues.bybit.errors import map_error
from venues.ratelimit import RateLimiter
from venues.rest_common import RestClient, wire_value
from venues.signing import Secret, hmac_sha256_hex

__all__ = ["BUCKET_OF_REQUEST_TYPE", "BybitHttpClient", "sign_rest", "sign_ws_auth"]

log = logging.getLogger(__name__)

BUCKET_OF_REQUEST_TYPE = {"new_order": "CREATE", "cancel": "CANCEL", "replace": "AMEND", "query_order": "QUERY",
                          "open_orders": "QUERY", "account": "QUERY"}
"""The ``bybit`` limiter bucket the per-endpoint ``X-Bapi-Limit-Status`` of each request type feeds."""


def sign_rest(api_key: Secret | str, secret: Secret | str, timestamp_ms: int | str, recv_window_ms: int | str,
              payload: str) -> str:
    """``X-BAPI-SIGN``: hex HMAC-SHA256 of ``timestamp + api_key + recv_window + payload``."""
    key = api_key.reveal() if isinstance(api_key, Secret) else api_key
    return hmac_sha256_hex(secret, f"{timestamp_ms}{key}{recv_window_ms}{payload}")


def sign_ws_auth(secret: Secret | str, expires_ms: int) -> str:
    """The private stream's ``auth`` signature: hex HMAC-SHA256 of ``"GET/realtime" + expires``."""
    return hmac_sha256_hex(secret, f"GET/realtime{expires_ms}")


def _wire(v: Any) -> str:
    return wire_value(v, "Bybit")


class BybitHttpClient(RestClient[BybitSpotConfig]):
    """Signed and public REST calls with pacing, timeouts and error mapping (the session,
    timestamp, secret scrubbing and transport errors: :class:`venues.rest_common.RestClient`).

    ``time_offset_ms`` (venue time minus our clock) is added to every timestamp; :meth:`sync_time`
    sets it from GET /v5/market/time."""

    _log = log

    def __init__(self, config: BybitSpotConfig, credentials: BybitCredentials, clock: Clock,
                 limiter: RateLimiter) -> None:
        super().__init__(config, credentials, clock, limiter)
        self.last_time_ms: int | None = None
        """The venue's ``time`` (epoch ms) of the last successful answer: what a REST reading is
        as of, on the clock of the stream pushes' ``creationTime``."""

    def ws_auth_args(self) -> list[Any]:
        """``args`` of the private stream's ``auth`` op: [api_key, expires ms, signature]."""
        expires = self.timestamp_ms() + int(self._config.ws_auth_expires_s * 1000)
        return [self._cred.api_key.reveal(), expires, sign_ws_auth(self._cred.api_secret, expires)]

    async def sync_time(self) -> int:
        """Measure the venue clock offset with GET /v5/market/time (midpoint of the round trip)."""
        t0 = self._clock.now_ns() // NS_PER_MS
        data = await self.request("GET", "/v5/market/time", request_type="query_order", signed=False)
        t1 = self._clock.now_ns() // NS_PER_MS
        venue_ms = int(data["timeNano"]) // NS_PER_MS if "timeNano" in data else int(data["timeSecond"]) * 1000
        return self._set_time_offset(venue_ms, t0, t1)

    async def request(self, method: str, path: str, params: Mapping[str, Any] | None = None, *,
                      request_type: str, signed: bool = True, client_order_id: str | None = None) -> Any:
        """One paced, timed round trip; returns the answer's ``result`` (``retCode`` 0).

        Raises :class:`VenueTimeout` (no answer in time, or Bybit said the outcome is unknown),
        :class:`VenueDisconnected` (the connection dropped), :class:`RateLimited` (10006/10018 or
        HTTP 403/429, fed back into the limiter) or the mapped final error."""
        venue = self._config.venue
        await self.limiter.acquire(request_type)
        p = {k: _wire(v) for k, v in (params or {}).items()}
        body: str | None = None
        if method == "GET":
            payload = urlencode(list(p.items()))
            url = URL(f"{self._config.rest_url}{path}" + (f"?{payload}" if payload else ""), encoded=True)
        else:
            body = payload = json.dumps(p, separators=(",", ":"))
            url = URL(f"{self._config.rest_url}{path}", encoded=True)
        headers: dict[str, str] = {"Content-Type": "application/json"} if body is not None else {}
        if signed:
            ts = self.timestamp_ms()
            rw = self._config.recv_window_ms
            headers.update({"X-BAPI-API-KEY": self._cred.api_key.reveal(), "X-BAPI-TIMESTAMP": str(ts),
                            "X-BAPI-RECV-WINDOW": str(rw), "X-BAPI-SIGN-TYPE": "2",
                            "X-BAPI-SIGN": sign_rest(self._cred.api_key, self._cred.api_secret, ts, rw, payload)})
        status, rheaders, text = await self._round_trip(method, url, path, client_order_id, data=body,
                                                        headers=headers)
        now = self._clock.now_ns()
        self._feed_headers(request_type, rheaders, now)
        code: int | None = None
        msg = self.scrub(text[:500])
        data: Any = None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and "retCode" in data:
            try:
                code = int(data["retCode"])
            except (TypeError, ValueError):
                code = None
            msg = self.scrub(str(data.get("retMsg", "")))
            if status == 200 and code == 0:
                self.limiter.on_success()
                t = data.get("time")
                self.last_time_ms = t if isinstance(t, int) and not isinstance(t, bool) else None
                result = data.get("result")
                return result if result is not None else {}
        elif status == 200:
            raise VenueError(f"{method} {path}: HTTP 200 with a body that is not Bybit's JSON", venue=venue,
                             client_order_id=client_order_id, venue_text=msg[:200])
        retry_ns = self._retry_after_ns(rheaders)
        if status == 403:   # the IP is banned for minutes: retrying sooner keeps it banned
            retry_ns = max(retry_ns or 0, int(self._config.ip_ban_s * 1_000_000_000))
        err = map_error(status, code, msg, venue=venue, client_order_id=client_order_id, retry_after_ns=retry_ns)
        if isinstance(err, RateLimited):
            self.limiter.on_rate_limited(err.retry_after_ns, now)
            bucket = BUCKET_OF_REQUEST_TYPE.get(request_type)
            if err.retry_after_ns is None and bucket is not None and status == 200:
                self._limit_reached(bucket, now)
        log.info("%s: %s %s -> HTTP %d retCode=%s retMsg=%r (cid=%s)", venue, method, path, status, code, msg,
                 client_order_id)
        raise err

    def _retry_after_ns(self, headers: Mapping[str, str]) -> int | None:
        """Until ``X-Bapi-Limit-Reset-Timestamp`` (venue epoch ms), from now in venue time."""
        v = headers.get("X-Bapi-Limit-Reset-Timestamp")
        if v is None:
            return None
        try:
            reset_ms = int(v)
        except ValueError:
            log.warning("%s: bad X-Bapi-Limit-Reset-Timestamp %r", self._config.venue, v)
            return None
        return max(0, reset_ms - self.timestamp_ms()) * NS_PER_MS

    def _limit_reached(self, bucket: str, now: int) -> None:
        try:
            self.limiter.on_limit_reached(bucket, now)
        except ConfigError:   # a limiter configured without that bucket: the back-off is all
            log.warning("%s: limiter has no bucket %s", self._config.venue, bucket)

    def _feed_headers(self, request_type: str, headers: Mapping[str, str], now: int) -> None:
        status, limit = headers.get("X-Bapi-Limit-Status"), headers.get("X-Bapi-Limit")
        bucket = BUCKET_OF_REQUEST_TYPE.get(request_type)
        if status is None or bucket is None:
            return
        try:
            left = int(status)
            used = int(limit) - left if limit is not None else None
        except ValueError:
            log.warning("%s: bad X-Bapi-Limit headers %r / %r", self._config.venue, limit, status)
            return
        try:
            if left <= 0:
                self.limiter.on_limit_reached(bucket, now)
            elif used is not None and used > 0:
                self.limiter.on_used_weight(bucket, used, now)
        except ConfigError:
            log.warning("%s: limiter has no bucket %s", self._config.venue, bucket)
