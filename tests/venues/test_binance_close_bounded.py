"""Closing the Binance adapter is bounded: the listen key's DELETE goes through the rate limiter,
and during an IP ban (418 / Retry-After of minutes) it would wait the ban out, holding the engine's
shutdown well past ``shutdown_timeout_s``. The key expires by itself within 60 minutes, so close()
gives the DELETE at most ``request_timeout_s`` and goes on."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from binance_harness import binance_rig

from marketdata.clock import NS_PER_SECOND, LiveClock


async def test_close_during_an_ip_ban_returns_within_the_request_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """Failed before: close() waited for the limiter (here a 600 s ban; the test gave up after
    6 s). Now it returns within request_timeout_s (2 s), logs that the key was left to expire,
    and the listen key's value is not in the log."""
    async with binance_rig(user_stream=True) as rig:
        venue = rig.venue
        key = venue._listen_key
        assert key is not None
        venue.limiter.on_rate_limited(600 * NS_PER_SECOND, LiveClock().now_ns())
        caplog.set_level(logging.INFO, logger="venues")
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(6):
                await venue.close()
        finally:
            venue.limiter._blocked_until = 0   # lift the ban: the rig's own close() must not hang
        assert time.monotonic() - t0 < 5
        assert venue._listen_key is None
        assert not any(m == "DELETE" for m, _p, _q in rig.fake.requests)
        assert "left to expire" in caplog.text and key not in caplog.text
