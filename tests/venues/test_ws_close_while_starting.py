"""``ReconnectingWebSocket.close()`` while ``start(wait=True)`` waits for the first connection: start
is woken at once and raises ("closed while starting") instead of waiting out its connect timeout,
and nothing of the client is left running. Loopback servers only."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from marketdata.errors import VenueError
from venues.ws import ReconnectingWebSocket

CONNECT_TIMEOUT_S = 30.0
PROMPT_S = 5.0   # generous: a woken start returns in milliseconds; before the fix it took 30 s


def _ws_tasks() -> list[asyncio.Task[object]]:
    """The client's own tasks still alive (the run task ``ws:*`` and start's helper ``ws-start:*``)."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("ws") and not t.done()]


async def _close_while_starting(url: str, started: asyncio.Event) -> tuple[BaseException | None, float]:
    """Start against ``url``, close once ``started`` is set; the error start raised and its delay."""
    async with aiohttp.ClientSession() as session:
        async def url_factory() -> str:
            return url

        ws = ReconnectingWebSocket("t", lambda: session, url_factory, lambda _m: None,
                                   connect_timeout_s=CONNECT_TIMEOUT_S)
        starting = asyncio.get_running_loop().create_task(ws.start())
        try:
            async with asyncio.timeout(PROMPT_S):
                await started.wait()
            assert not starting.done()
            t0 = time.monotonic()
            await ws.close()
            async with asyncio.timeout(PROMPT_S):
                error = await asyncio.gather(starting, return_exceptions=True)
            elapsed = time.monotonic() - t0
        finally:
            if not starting.done():   # only on failure: do not leave the waiting start behind
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                await ws.close()
        assert ws._task is None and not ws.connected
        assert _ws_tasks() == []
        return error[0], elapsed


async def test_close_wakes_a_start_waiting_on_a_server_that_never_upgrades() -> None:
    """Failed before: start kept waiting for the ready event, which close() clears and never sets,
    so it returned only when its 30 s timeout ran out (the test's 5 s bound raised TimeoutError)."""
    got_request = asyncio.Event()

    async def never_upgrades(request: web.Request) -> web.StreamResponse:
        got_request.set()
        await asyncio.sleep(3600)   # the handshake never completes
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/ws", never_upgrades)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        error, elapsed = await _close_while_starting(f"http://127.0.0.1:{port}/ws", got_request)
    finally:
        await runner.cleanup()
    assert isinstance(error, VenueError) and "closed while starting" in str(error), error
    assert elapsed < PROMPT_S


async def test_close_wakes_a_start_retrying_an_unreachable_server() -> None:
    """Failed before, as above: nothing listens on the port, so the task sits in its reconnect
    backoff; close() cancelled it but start still waited its full timeout."""
    with socket.socket() as s:   # a port that was free a moment ago: connecting is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    attempted = asyncio.Event()
    loop = asyncio.get_running_loop()
    # let the client fail a first connection attempt before closing (it is in its backoff then)
    loop.call_later(0.3, attempted.set)
    error, elapsed = await _close_while_starting(f"http://127.0.0.1:{port}/ws", attempted)
    assert isinstance(error, VenueError) and "closed while starting" in str(error), error
    assert elapsed < PROMPT_S


async def test_start_still_succeeds_and_times_out_as_before() -> None:
    """The ordinary paths of start are unchanged: ready returns None with the task running; a
    server that never upgrades still gives the timeout error (not "closed while starting")."""
    async def upgrades(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    async def never_upgrades(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/ws", upgrades)
    app.router.add_get("/slow", never_upgrades)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            async def good() -> str:
                return f"http://127.0.0.1:{port}/ws"

            async def slow() -> str:
                return f"http://127.0.0.1:{port}/slow"

            ws = ReconnectingWebSocket("t", lambda: session, good, lambda _m: None, connect_timeout_s=5.0)
            try:
                await ws.start()
                assert ws.connected and ws._task is not None and not ws._task.done()
                assert [t.get_name() for t in _ws_tasks()] == ["ws:t"]   # start's helper is gone
            finally:
                await ws.close()
            timing_out = ReconnectingWebSocket("t", lambda: session, slow, lambda _m: None, connect_timeout_s=0.2)
            with pytest.raises(VenueError, match=r"not connected after 0\.2 s"):
                await timing_out.start()
            assert timing_out._task is None and _ws_tasks() == []
    finally:
        await runner.cleanup()
