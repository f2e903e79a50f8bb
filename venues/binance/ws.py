"""Binance spot WebSocket clients on the venue's ``aiohttp`` session: the user-data stream
(listen key, a :class:`venues.ws.ReconnectingWebSocket` the adapter owns) and the market-data
combined stream. Both reconnect with capped exponential backoff (:mod:`venues.ws`); each runs as
one task owned by its client and stopped by :meth:`close`.

Messages are handed to a synchronous callback on the loop as they arrive (the decision core is
synchronous); there is no queue in between, so nothing can overflow. A message that cannot be
parsed is logged with its raw text by the callback's owner and dropped."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal

import aiohttp

from marketdata.clock import Clock
from marketdata.model import Instrument, MarketEvent
from venues.binance.parsers import parse_book_ticker, parse_depth_diff, parse_trade
from venues.ws import ReconnectingWebSocket

__all__ = ["BinanceMarketDataStream", "ReconnectingWebSocket"]

log = logging.getLogger(__name__)

class BinanceMarketDataStream:
    """Combined market-data stream (``/stream?streams=btcusdt@depth@100ms/btcusdt@trade/...``)
    parsed to :class:`BookDeltas` / :class:`TradeTick` / :class:`QuoteTick` and handed to
    ``handler`` on the loop.

    Depth diffs are checked against Binance spot's chain (``U == previous u + 1``); a break, a
    dropped connection and the reconnection after it (both lose messages, even of a symbol that
    sent no diff yet) call ``on_gap(venue_symbol)`` for the symbols concerned. The diffs keep being
    delivered: the book's own sequence rule refuses them until the owner has re-seeded it from a
    REST snapshot (GET /api/v3/depth, :func:`~venues.binance.parsers.parse_depth_snapshot`). This
    client does not fetch that snapshot itself."""

    def __init__(self, session_getter: Callable[[], aiohttp.ClientSession], ws_url: str,
                 instruments: list[Instrument], handler: Callable[[MarketEvent], None], clock: Clock, *,
                 channels: tuple[str, ...] = ("depth@100ms", "trade", "bookTicker"),
                 on_gap: Callable[[str], None] | None = None, reconnect_max_s: Decimal = Decimal(30)) -> None:
        self._insts = {i.venue_symbol.lower(): i for i in instruments}
        self._handler = handler
        self._clock = clock
        self._on_gap = on_gap
        self._last_u: dict[str, int] = {}
        streams = "/".join(f"{s}@{c}" for s in self._insts for c in channels)
        self.url = f"{ws_url}/stream?streams={streams}"
        self.stats = {"messages": 0, "garbled": 0, "gaps": 0}
        self._ws = ReconnectingWebSocket(f"md:{','.join(self._insts)}", session_getter, self._url,
                                         self.on_message, on_connect=self._reconnected,
                                         on_disconnect=self._dropped, reconnect_max_s=reconnect_max_s)

    async def _url(self) -> str:
        return self.url

    async def _reconnected(self) -> None:
        # every symbol, not only those a diff was seen for: diffs of a quiet book may have been
        # lost while the socket was down, and the book would otherwise keep its old snapshot
        for sym in self._insts:
            self._gap(sym, "reconnected")
        self._last_u.clear()

    def _dropped(self) -> None:
        # the connection ended: diffs are being lost from now on, every book is out of sync
        for sym in self._insts:
            self._gap(sym, "disconnected")
        self._last_u.clear()

    def _gap(self, venue_symbol: str, why: str) -> None:
        self.stats["gaps"] += 1
        log.warning("market data %s: depth chain broken (%s); the book needs a snapshot", venue_symbol, why)
        if self._on_gap is not None:
            self._on_gap(venue_symbol.upper())

    @property
    def socket(self) -> ReconnectingWebSocket:
        return self._ws

    async def start(self, *, wait: bool = True) -> None:
        await self._ws.start(wait=wait)

    async def close(self) -> None:
        await self._ws.close()

    def on_message(self, raw: str) -> None:
        """One combined-stream frame ``{"stream": "<symbol>@<channel>", "data": {...}}``; never raises."""
        try:
            msg = json.loads(raw)
            stream = msg["stream"]
            data = msg["data"]
            sym, _, channel = stream.partition("@")
            inst = self._insts[sym]
            now = self._clock.now_ns()
            event: MarketEvent
            if channel.startswith("depth"):
                d = parse_depth_diff(data, inst, now)
                last = self._last_u.get(sym)
                if last is not None and d.first_update_id != last + 1:
                    self._gap(sym, f"U={d.first_update_id} after u={last}")
                self._last_u[sym] = d.last_update_id
                event = d
            elif channel == "trade":
                event = parse_trade(data, inst, now)
            elif channel == "bookTicker":
                event = parse_book_ticker(data, inst, now)
            else:
                log.debug("market data: stream %s ignored", stream)
                return
        except Exception as e:  # a bad message must never stop the stream
            self.stats["garbled"] += 1
            log.warning("market data: garbled message (%s: %s): %s", type(e).__name__, e, raw[:2000])
            return
        self.stats["messages"] += 1
        self._handler(event)
