"""The engine's live transports: venue adapters, market-data streams and the asyncio plumbing
around the (synchronous) decision core of :mod:`router.engine`.

The engine itself stays synchronous: books, router, algos, risk and the order manager are called
exactly as in simulation. This module only

* builds each venue's adapter and market-data stream through a small per-adapter wiring object
  (:data:`WIRINGS`, keyed by ``[venues.<id>] adapter``), which also owns how that venue's book is
  (re)seeded:

  - ``binance-spot`` (:class:`venues.binance.ws.BinanceMarketDataStream`, depth diffs and trades):
    Binance spot's local-book procedure: buffer the diffs, fetch ``GET /api/v3/depth``, apply the
    snapshot, replay the buffered diffs (the book's ``contiguous`` rule drops the stale ones and
    checks that the first one straddles the snapshot), and start over on any gap (chain break,
    reconnection, snapshot older than the buffer) with a backoff. The buffer is bounded
    (``depth_buffer``); on overflow it is dropped and the resync starts over;
  - ``bybit-spot`` (:class:`venues.bybit.ws_md.BybitMarketDataStream`, ``orderbook.{depth}`` and
    ``publicTrade``): the stream's snapshot message seeds the book; a gap (seen by the stream or by
    the book) re-subscribes the orderbook topic, which makes Bybit push a fresh snapshot in band,
    and a reconnection subscribes again (a snapshot each). No REST snapshot, no buffer: the deltas
    before the snapshot are refused by the book's sequence rule;
* feeds the engine's ``_on_market`` from those streams;
* sends venue commands (submit, cancel) as owned asyncio tasks (a tracked set) with a timeout
  (``[engine] command_timeout_s``); a submit that times out leaves the order UNKNOWN and the
  adapter's resolver settles it by status queries; events come back through the adapter's event
  handler, the engine's ``_on_order_event``, as in simulation;
* runs until a condition holds (every parent terminal), then shuts down: cancels what is still
  working, waits for the acknowledgements (``shutdown_timeout_s``), queries the venue for what is
  still open and journals what stays unresolved (:meth:`LiveRuntime.resolve_unsettled`), closes
  streams and adapters.

Rate limits: each adapter paces its own requests on its ``RateLimiter`` (with the venue's
used-weight headers and 429 feedback); the engine's own client-side FIFO is not used for live
venues, so no request is charged twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import aiohttp

from marketdata.errors import (
    ConfigError,
    FinalVenueError,
    RateLimited,
    RetryableVenueError,
    VenueDisconnected,
    VenueError,
    VenueTimeout,
)
from marketdata.model import (
    BookDeltas,
    ClientOrderId,
    Instrument,
    MarketEvent,
    OrderEvent,
    OrderEventKind,
    OrderStatus,
    Side,
    TradeTick,
)
from router.engine_config import LiveVenueSettings, rekey
from venues.binance import BinanceSpotVenue
from venues.binance.parsers import parse_depth_snapshot
from venues.binance.ws import BinanceMarketDataStream
from venues.bybit import BybitSpotVenue
from venues.bybit.ws_md import BybitMarketDataStream
from venues.ratelimit import ClockSleeper, RateLimiter
from venues.tasks import OwnedTasks

if TYPE_CHECKING:
    from marketdata.clock import Clock
    from router.engine import Engine, _VenueChild
    from venues.order_manager import ManagedOrder

__all__ = ["WIRINGS", "AdapterWiring", "LiveRuntime", "live_instrument", "new_event_loop_runner"]

log = logging.getLogger(__name__)

LiveVenue = BinanceSpotVenue | BybitSpotVenue
MarketDataStream = BinanceMarketDataStream | BybitMarketDataStream


def live_instrument(settings: LiveVenueSettings, symbol: str, file: str) -> Instrument:
    """The instrument of ``symbol`` in a live venue's config (:class:`ConfigError` if absent)."""
    for inst in settings.instruments:
        if inst.symbol == symbol:
            return inst
    raise ConfigError(f"venue {settings.venue!r} has no {symbol} instrument", file=file,
                      key=f"venues.{settings.venue}.instruments",
                      allowed=", ".join(i.symbol for i in settings.instruments) or "none configured")


class AdapterWiring(ABC):
    """What differs between live adapters, in one place: building the trading adapter (with its
    rate limiter), opening the public market-data stream, and (re)seeding the venue's book. One
    instance per ``[venues.<id>] adapter`` value in :data:`WIRINGS`; stateless (the state lives
    in :class:`LiveRuntime`)."""

    preset = ""
    """The :data:`venues.ratelimit.PRESETS` entry of the adapter's limiter."""

    @abstractmethod
    def make_venue(self, st: LiveVenueSettings, clock: Clock, limiter: RateLimiter) -> LiveVenue:
        """The trading adapter of ``st``, its requests paced by ``limiter``."""

    @abstractmethod
    def open_stream(self, rt: LiveRuntime, v: str, st: LiveVenueSettings) -> MarketDataStream:
        """The venue's market-data stream, its events going to ``rt._on_md`` (not started)."""

    @abstractmethod
    def seed(self, rt: LiveRuntime, v: str) -> None:
        """After the stream started: get the book its first snapshot."""

    @abstractmethod
    def resync(self, rt: LiveRuntime, v: str) -> None:
        """The book was marked out of sync (and emptied): get it a fresh snapshot (idempotent)."""


class _BinanceWiring(AdapterWiring):
    """Binance spot: depth diffs buffered while ``GET /api/v3/depth`` is fetched, then replayed
    (:meth:`LiveRuntime._resync`)."""

    preset = "binance-spot"

    def make_venue(self, st: LiveVenueSettings, clock: Clock, limiter: RateLimiter) -> LiveVenue:
        return BinanceSpotVenue(st.binance, clock, limiter=limiter)

    def open_stream(self, rt: LiveRuntime, v: str, st: LiveVenueSettings) -> MarketDataStream:
        rt._buffers[v] = []      # buffer from the first message on; the snapshot comes next
        return BinanceMarketDataStream(
            rt._md_session, st.binance.ws_url, [rt.instruments[v]],
            lambda ev: rt._on_md(v, ev), rt.clock,
            channels=("depth@100ms", "trade"), on_gap=lambda _sym: rt.request_resync(v),
            reconnect_max_s=st.binance.ws_reconnect_max_s)

    def seed(self, rt: LiveRuntime, v: str) -> None:
        rt.request_resync(v)

    def resync(self, rt: LiveRuntime, v: str) -> None:
        if rt._buffers.get(v) is None:
            rt._buffers[v] = []
        if v not in rt._resyncing:
            rt._resyncing.add(v)
            rt.stats["resyncs"] += 1
            rt.spawn(rt._resync(v), f"resync:{v}")


class _BybitWiring(AdapterWiring):
    """Bybit v5 spot: the ``orderbook.{depth}`` topic's snapshot message seeds the book; a resync
    re-subscribes the topic (Bybit then pushes a new snapshot in band). The engine's ids are mapped
    to valid ``orderLinkId`` s by the adapter (``map_client_ids``: a ``.`` of a parent id)."""

    preset = "bybit"

    def make_venue(self, st: LiveVenueSettings, clock: Clock, limiter: RateLimiter) -> LiveVenue:
        return BybitSpotVenue(st.bybit, clock, limiter=limiter, map_client_ids=True)

    def open_stream(self, rt: LiveRuntime, v: str, st: LiveVenueSettings) -> MarketDataStream:
        cfg = st.bybit
        # on_gap: the stream saw a chain break or lost its connection (it re-subscribes itself)
        return BybitMarketDataStream(
            rt._md_session, st.md_ws_url, [rt.instruments[v]], lambda ev: rt._on_md(v, ev), rt.clock,
            channels=(f"orderbook.{st.orderbook_depth}", "publicTrade"), on_gap=lambda _sym: rt.request_resync(v),
            reconnect_max_s=cfg.ws_reconnect_max_s, ping_interval_s=float(cfg.ping_interval_s),
            ack_timeout_s=cfg.timeout_s, connect_timeout_s=cfg.timeout_s)

    def seed(self, rt: LiveRuntime, v: str) -> None:
        pass   # the subscription's first message is the snapshot

    def resync(self, rt: LiveRuntime, v: str) -> None:
        stream = rt.streams.get(v)
        if isinstance(stream, BybitMarketDataStream):
            rt.stats["resyncs"] += 1
            stream.request_snapshot(rt.instruments[v].venue_symbol)


WIRINGS: dict[str, AdapterWiring] = {"binance-spot": _BinanceWiring(), "bybit-spot": _BybitWiring()}
"""Per ``[venues.<id>] adapter``: how the engine builds and feeds that venue (the keys are
:data:`router.engine_config.LIVE_ADAPTERS`)."""


def new_event_loop_runner() -> asyncio.Runner:
    """``asyncio.Runner`` on uvloop when it is installed (else the default loop)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is installed here
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


class LiveRuntime:
    """Live transports of one :class:`~router.engine.Engine` (see the module docstring).

    ``send_orders`` False (shadow mode on live market data): no adapter is built or connected,
    so no credentials are needed and no order request ever leaves; only public market data
    (WebSocket + depth snapshots) is used."""

    def __init__(self, engine: Engine, settings: dict[str, LiveVenueSettings], clock: Clock, *,
                 send_orders: bool) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self._sleeper = ClockSleeper(clock)   # waits on the injected clock (no wall-clock reads here)
        self.send_orders = send_orders
        self.instruments = {v: engine.instruments[v] for v in settings}
        self.wirings = {v: WIRINGS[st.adapter] for v, st in settings.items()}
        self.venues: dict[str, LiveVenue] = {}
        if send_orders:
            for v, st in settings.items():
                wiring = self.wirings[v]
                caps = dataclasses.asdict(engine.config.sorex.venues[v].rate_limit)   # [venues.<id>.rate_limit]
                try:
                    limiter = RateLimiter.from_preset_with_caps(wiring.preset, clock,
                                                                overrides=st.adapter_config.rate_limits, **caps)
                except ConfigError as exc:   # a bad bucket value names the bucket alone: it is under rate_limits
                    bucket = exc.key or ""
                    where = bucket if bucket.startswith("rate_limits") else f"rate_limits.{bucket}".rstrip(".")
                    raise rekey(exc, engine.config.path, f"venues.{v}.{where}") from None
                try:
                    # reads the env vars now: a missing one is a ConfigError before anything runs
                    self.venues[v] = wiring.make_venue(st, clock, limiter)
                except ConfigError as exc:   # name the file and the venue's key
                    key = exc.key if exc.key and not exc.key.startswith("venues.") else None
                    raise rekey(exc, engine.config.path, f"venues.{v}.{key}" if key else f"venues.{v}") from None
        self.streams: dict[str, MarketDataStream] = {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks = OwnedTasks(log, "live")
        self._buffers: dict[str, list[BookDeltas] | None] = {}
        self._overflowed: set[str] = set()
        self._resyncing: set[str] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        # our orders per venue whose balance effect the venue's balances may not show yet:
        # cid -> venue times of the order's first and latest events (None: sent, nothing heard back)
        self._unsettled: dict[str, dict[ClientOrderId, tuple[int | None, int | None]]] = {v: {} for v in settings}
        self.started = False
        self.closed = False
        self.stats = {"market_events": 0, "snapshots": 0, "resyncs": 0, "buffer_overflows": 0,
                      "snapshot_failures": 0, "commands": 0, "command_timeouts": 0, "command_errors": 0}

    # ------------------------------------------------------------------ tasks
    def spawn(self, coro: Awaitable[Any], what: str) -> asyncio.Task[Any]:
        """Run ``coro`` as an owned task (kept until done; a failure is logged, never lost)."""
        return self._tasks.spawn(coro, what)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect the adapters (REST session, clock sync, user stream), open the market-data
        streams and seed every book from a snapshot."""
        if self.started:
            return
        self.started = True
        eng = self.engine
        self._session = aiohttp.ClientSession()
        for v, venue in self.venues.items():
            venue.set_event_handler(lambda ev, v=v: self._on_order_event(v, ev))   # type: ignore[misc]
            venue.set_garbled_handler(eng.om.on_garbled)
            venue.set_balance_handler(lambda assets, v=v: self._on_balance_up(v, assets))   # type: ignore[misc]
            await venue.connect()
            log.info("live venue %s (%s) connected (%s)", v, self.settings[v].adapter, venue.config.rest_url)
            await self._open_orders_at_start(v, venue)
        for v, st in self.settings.items():
            book = eng.books[v]
            book.on_gap = lambda _b, v=v: self.request_resync(v)
            wiring = self.wirings[v]
            stream = wiring.open_stream(self, v, st)
            self.streams[v] = stream
            await stream.start()
            wiring.seed(self, v)

    async def _open_orders_at_start(self, v: str, venue: LiveVenue) -> None:
        """Orders already open on ``v`` before anything is sent. Orders with sorex client ids
        (``sx-...``: an earlier run that crashed or was killed) are handled by the venue's
        ``open_orders_at_start``: ``refuse`` raises (nothing sent), ``cancel`` cancels them and
        waits until the venue lists none of them, ``keep`` leaves them working. Other orders on
        the account (placed by hand or by another program) are never touched; they are logged.
        Everything found and done is journaled as ``open_orders_at_start``."""
        policy = self.settings[v].open_orders_at_start
        if policy == "keep":
            return
        eng = self.engine
        inst = self.instruments[v]
        try:
            reports = await venue.open_orders(str(inst.symbol))
        except VenueError as exc:
            raise VenueError(f"{v}: could not list the orders already open on the venue before starting: {exc}",
                             venue=v) from exc
        own = [r for r in reports if str(r.client_order_id).startswith("sx-")]
        foreign = [r for r in reports if not str(r.client_order_id).startswith("sx-")]
        if not reports:
            return

        def row(r: Any) -> dict[str, Any]:
            return {"client_order_id": r.client_order_id, "side": "buy" if r.side is Side.BUY else "sell",
                    "quantity": str(inst.lots_to_qty(r.lots)), "filled": str(inst.lots_to_qty(r.filled_lots)),
                    "price": None if r.price_ticks is None else str(inst.ticks_to_price(r.price_ticks)),
                    "status": r.status.value}

        def listing(rs: list[Any]) -> str:
            return ", ".join(f"{x['client_order_id']} {x['side']} {x['quantity']} @ {x['price']}"
                             for x in map(row, rs[:5])) + (f" and {len(rs) - 5} more" if len(rs) > 5 else "")

        if foreign:
            log.warning("%s: %d order(s) not sent by sorex are open on %s (left alone; they hold balance): %s",
                        v, len(foreign), inst.symbol, listing(foreign))
        action = "refused" if own and policy == "refuse" else "cancelled" if own else "none"
        eng._journal("open_orders_at_start", {"venue": v, "policy": policy, "action": action,
                                              "sorex": [row(r) for r in own], "other": [row(r) for r in foreign]},
                     venue=v)
        if not own:
            return
        if policy == "refuse":
            raise VenueError(
                f"{v}: {len(own)} order(s) left open by an earlier sorex run are working on {inst.symbol}: "
                f"{listing(own)}. Cancel them, or set venues.{v}.open_orders_at_start = \"cancel\" to have "
                f"sorex cancel them at start (\"keep\" leaves them working, untracked)", venue=v)
        log.warning("%s: cancelling %d order(s) left open by an earlier sorex run: %s", v, len(own), listing(own))
        timeout = self.engine.settings.command_timeout_s
        left = {r.client_order_id for r in own}
        deadline = self.clock.now_ns() + int(timeout * 1e9)
        for r in own:
            venue.adopt(r)
        for cid in sorted(left):
            try:
                async with asyncio.timeout(timeout):
                    await venue.cancel(cid)
            except (TimeoutError, VenueError) as exc:
                log.warning("%s: cancel of %s at start failed: %s", v, cid, exc)
        while True:   # confirmed by the venue's own list, not by the cancel answers
            try:
                still = [r for r in await venue.open_orders(str(inst.symbol)) if r.client_order_id in left]
            except VenueError as exc:
                still, why = list(own), str(exc)
            else:
                why = "still open"
            if not still:
                break
            if self.clock.now_ns() >= deadline:
                raise VenueError(f"{v}: could not cancel the orders left open by an earlier sorex run within "
                                 f"{timeout} s ({why}): {listing(still)}; nothing was sent", venue=v)
            await self._sleep(0.05)
        eng._journal("open_orders_at_start", {"venue": v, "policy": policy, "action": "cancel_confirmed",
                                              "sorex": [row(r) for r in own], "other": []}, venue=v)
        log.info("%s: %d order(s) of an earlier run cancelled before starting", v, len(own))

    def _md_session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def close(self) -> None:
        """Close streams, adapters and the session; cancel any task still running."""
        if self.closed:
            return
        self.closed = True
        for stream in self.streams.values():
            await stream.close()
        await self._tasks.cancel_all()
        for venue in self.venues.values():
            await venue.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ waiting
    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` is true (checked whenever a parent finishes)."""
        if condition():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, fut))
        try:
            await fut
        finally:
            self._waiters = [(c, f) for c, f in self._waiters if f is not fut]

    def check_waiters(self) -> None:
        """Called by the engine when a parent finishes."""
        for cond, fut in list(self._waiters):
            if not fut.done() and cond():
                fut.set_result(None)

    # ------------------------------------------------------------------ market data
    def _on_md(self, venue: str, ev: MarketEvent) -> None:
        if isinstance(ev, BookDeltas):
            buf = self._buffers.get(venue)
            if buf is not None:
                if len(buf) >= self.settings[venue].depth_buffer:
                    # bounded: drop what we have and start the resync over with fresh diffs
                    self.stats["buffer_overflows"] += 1
                    log.warning("market data %s: %d diffs buffered while waiting for a snapshot; dropped, "
                                "resync starts over", venue, len(buf))
                    buf.clear()
                    self._overflowed.add(venue)
                buf.append(ev)
                return
            if ev.is_snapshot:   # in band (Bybit): the stream's snapshot message
                self.stats["snapshots"] += 1
        elif not isinstance(ev, TradeTick):
            return
        self.stats["market_events"] += 1
        self.engine._on_market(ev)

    def request_resync(self, venue: str) -> None:
        """(Re)seed ``venue``'s book the adapter's way (:meth:`AdapterWiring.resync`: Binance
        buffers the diffs and fetches a REST snapshot, Bybit re-subscribes for an in-band
        snapshot). The book is marked out of sync and emptied at once (a gap seen by the stream,
        or a dropped connection, would otherwise leave its old levels offered to the router as in
        sync)."""
        if self.closed:
            return
        book = self.engine.books.get(venue)
        if book is not None and not book.needs_resync:
            book.request_resync()   # calls back here through book.on_gap, now needs_resync: no loop
            if book.on_gap is not None:
                return              # that call did the rest
        self.wirings[venue].resync(self, venue)

    async def _fetch_snapshot(self, venue: str) -> BookDeltas:
        st = self.settings[venue]
        inst = self.instruments[venue]
        url = f"{st.binance.rest_url}/api/v3/depth"
        params = {"symbol": inst.venue_symbol, "limit": str(st.depth_snapshot_limit)}
        async with asyncio.timeout(st.binance.timeout_s):
            async with self._md_session().get(url, params=params) as resp:
                if resp.status != 200:
                    raise VenueError(f"GET /api/v3/depth answered HTTP {resp.status}", venue=venue)
                data = await resp.json(content_type=None)
        now = self.clock.now_ns()
        return parse_depth_snapshot(data, inst, now, now)

    async def _resync(self, venue: str) -> None:
        book = self.engine.books[venue]
        attempt = 0
        try:
            while not self.closed:
                if attempt:
                    await self._sleep(min(0.05 * (1 << min(attempt, 7)), 5.0))
                attempt += 1
                stream = self.streams.get(venue)
                while stream is not None and not stream.socket.connected and not self.closed:
                    await self._sleep(0.05)   # a snapshot is only joined by diffs of a live connection
                self._overflowed.discard(venue)
                try:
                    snap = await self._fetch_snapshot(venue)
                except Exception as exc:   # any bad answer (e.g. JSON that is no snapshot): try again
                    self.stats["snapshot_failures"] += 1
                    log.warning("market data %s: depth snapshot failed (%s: %s); retrying", venue,
                                type(exc).__name__, exc)
                    continue
                if venue in self._overflowed:
                    continue
                buf = self._buffers.get(venue) or []
                self._buffers[venue] = None
                self.stats["snapshots"] += 1
                self.stats["market_events"] += 1
                self.engine._on_market(snap)
                for d in buf:
                    if book.needs_resync:
                        break
                    self.stats["market_events"] += 1
                    self.engine._on_market(d)
                if not book.needs_resync:
                    log.info("market data %s: book seeded from snapshot %d (+%d buffered diffs)", venue,
                             snap.last_update_id, len(buf))
                    return
                log.warning("market data %s: snapshot %d does not join the diff stream; again", venue,
                            snap.last_update_id)
                if self._buffers.get(venue) is None:
                    self._buffers[venue] = []
        finally:
            self._resyncing.discard(venue)

    # ------------------------------------------------------------------ balances (router capacity)
    def _on_order_event(self, venue: str, ev: OrderEvent) -> None:
        table = self._unsettled[venue]
        seen = table.get(ev.client_order_id)
        # Only orders we sent and still track (not one placed by hand, nor one already settled).
        # A refused cancel says nothing of the order at the venue (it may not have arrived yet, and
        # the adapter stamps the refusal with the local clock): it is neither the order's first
        # sign at the venue nor its latest, which never moves back.
        if seen is not None and ev.kind not in (OrderEventKind.CANCEL_REJECTED, OrderEventKind.SUBMITTED):
            first = seen[0] if seen[0] is not None else ev.ts_event
            last = ev.ts_event if seen[1] is None else max(seen[1], ev.ts_event)
            table[ev.client_order_id] = (first, last)
        self.engine._on_order_event(ev)

    def _on_balance_up(self, venue: str, assets: list[str]) -> None:
        """The venue reports more free ``assets`` than before (a deposit or transfer, or funds
        our orders released): children parked for want of funds retry now instead of waiting
        out ``balance_wait_s``."""
        eng = self.engine
        eng._funds_epoch += 1
        if eng.waiting_for_funds:
            log.info("%s: free %s went up: %d child order(s) waiting for funds retry now", venue,
                     ", ".join(assets), eng.waiting_for_funds)
            eng._release_waiting()

    def available_balance(self, venue: str, asset: str) -> Decimal | None:
        """What the router may still spend of ``asset`` on ``venue``: the venue's free balance
        as last read or pushed (:meth:`BinanceSpotVenue.cached_balance`, as of the venue's
        account time T), corrected by what our orders did after T that the figure cannot show
        yet. An order's effect on the free balance at a time t: a buy, its fills' notional up to
        t plus its open quantity at its limit price; a sell, its filled plus open quantity; zero
        once terminal only for what never filled. The correction is effect(now) - effect(T), with
        effect(T) = 0 for an order the venue had not acknowledged by T (or not heard back from):
        an order sent is a debit at once; a cancel the venue confirmed is a credit before the
        balance update that follows it arrives. ``None`` (unknown, no capacity limit) when the
        venue sends no orders or its account was never read."""
        v = self.venues.get(venue)
        if v is None:
            return None
        bal = v.cached_balance(asset)
        if bal is None:
            return None
        unsettled = self._unsettled.get(venue)
        if not unsettled:
            return bal.free
        inst = self.instruments[venue]
        if asset == inst.quote:
            buy = True
        elif asset == inst.base:
            buy = False
        else:
            return bal.free
        as_of = v.balance_as_of_ns(asset) or 0
        om = self.engine.om
        delta = Decimal(0)
        for cid, (first, last) in list(unsettled.items()):
            if not om.has_order(cid):
                continue
            mo = om.order(cid)
            o = mo.order
            if last is not None and last <= as_of:
                # terminal and shown by the balance it draws on (buy: quote, sell: base; its
                # proceeds are never counted): it cannot change a figure again (the account
                # times only move forward)
                if mo.status.is_terminal and \
                        last <= (v.balance_as_of_ns(inst.quote if o.side is Side.BUY else inst.base) or 0):
                    del unsettled[cid]
                continue
            if mo.status.is_terminal and not mo.fills and (first is None or first > as_of):
                del unsettled[cid]   # refused or expired unfilled before any balance showed it: no effect
                continue
            if (o.side is Side.BUY) is not buy:
                continue
            delta += self._effect(inst, mo, None)
            if first is not None and first <= as_of:
                delta -= self._effect(inst, mo, as_of)
        return max(Decimal(0), bal.free - delta)

    @staticmethod
    def _effect(inst: Instrument, mo: ManagedOrder, at_ns: int | None) -> Decimal:
        """The order's reduction of the free balance it draws on (buy: quote, sell: base) at
        ``at_ns`` (``None``: now; a given time is before the order's terminal event)."""
        o = mo.order
        fills = mo.fills if at_ns is None else [f for f in mo.fills if f.ts_event <= at_ns]
        filled = sum(f.lots for f in fills)
        if at_ns is None:
            open_lots = mo.open_lots
        else:
            open_lots = max(0, o.lots - filled)
        if o.side is Side.SELL:
            return inst.lots_to_qty(filled + open_lots)
        spent = sum((inst.notional(f.price_ticks, f.lots) for f in fills), Decimal(0))
        return spent + (inst.notional(o.price_ticks, open_lots) if o.price_ticks is not None else Decimal(0))

    # ------------------------------------------------------------------ commands
    def submit(self, vc: _VenueChild) -> None:
        """Send a new order as an owned task (the engine's ``_send_now`` in live mode)."""
        self.stats["commands"] += 1
        self._unsettled[vc.venue][vc.cid] = (None, None)
        self.spawn(self._submit(vc), f"submit:{vc.cid}")

    async def _submit(self, vc: _VenueChild) -> None:
        venue = self.venues[vc.venue]
        timeout = self.engine.settings.command_timeout_s
        sent_ns = self.clock.now_ns()
        try:
            async with asyncio.timeout(timeout):
                await venue.submit(vc.order)
        except TimeoutError:
            # the adapter's own request timeout did not fire first (e.g. a long limiter wait):
            # the order may or may not be at the venue; the adapter's resolver finds out
            self.stats["command_timeouts"] += 1
            log.warning("%s %s: submit not done after %.1f s; order UNKNOWN until the venue says", vc.venue,
                        vc.cid, timeout)
            self._record_send_failure(vc, None)
            self.engine._on_send_failed(vc, VenueTimeout(f"submit not done after {timeout} s", venue=vc.venue,
                                                         client_order_id=vc.cid))
            venue.resolve_unknown(vc.cid, sent_ns)
        except VenueError as exc:
            self.stats["command_errors"] += 1
            log.warning("%s %s: submit failed: %s", vc.venue, vc.cid, exc)
            self._record_send_failure(vc, exc)
            self.engine._on_send_failed(vc, exc)
            # the adapter resolves what it raises as a timeout or a lost connection; any other
            # error that leaves the order UNKNOWN (e.g. an answer that is not JSON) must be
            # resolved too, or the order and its parent would wait for ever
            if not isinstance(exc, (VenueTimeout, VenueDisconnected)) and self._is_unknown(vc):
                venue.resolve_unknown(vc.cid, sent_ns)
        except Exception as exc:   # the adapter failed on the answer (garbled): the order may be at the venue
            self.stats["command_errors"] += 1
            log.error("%s %s: submit answer not understood (%s: %s); order UNKNOWN until the venue says",
                      vc.venue, vc.cid, type(exc).__name__, exc)
            self.engine._on_send_failed(vc, VenueError(f"submit answer not understood: {type(exc).__name__}: {exc}",
                                                       venue=vc.venue, client_order_id=vc.cid))
            if self._is_unknown(vc):
                venue.resolve_unknown(vc.cid, sent_ns)

    def _is_unknown(self, vc: _VenueChild) -> bool:
        om = self.engine.om
        return om.has_order(vc.cid) and om.order(vc.cid).status is OrderStatus.UNKNOWN

    def _record_send_failure(self, vc: _VenueChild, exc: VenueError | None) -> None:
        """A submit that raised counts against the venue's circuit breaker (the adapter turns the
        venue's own refusals into REJECTED events, which the engine records itself): no answer
        (``None``: our command timeout; a venue timeout or a dropped connection) is a timeout, a
        final error a reject; a rate-limit refusal is pacing, not venue health. So a half-open
        breaker's probe that fails this way re-opens it instead of waiting out its probe slot."""
        router = self.engine.router
        if exc is None or (isinstance(exc, RetryableVenueError) and not isinstance(exc, RateLimited)):
            router.record_timeout(vc.venue)
        elif isinstance(exc, FinalVenueError):
            router.record_reject(vc.venue)

    def cancel(self, vc: _VenueChild) -> None:
        """Send a cancel as an owned task."""
        self.stats["commands"] += 1
        self.spawn(self._cancel(vc), f"cancel:{vc.cid}")

    async def _cancel(self, vc: _VenueChild) -> None:
        venue = self.venues[vc.venue]
        timeout = self.engine.settings.command_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await venue.cancel(vc.cid)
        except TimeoutError:
            self.stats["command_timeouts"] += 1
            log.warning("%s %s: cancel not done after %.1f s", vc.venue, vc.cid, timeout)
            self.engine._on_cancel_failed(vc, VenueTimeout(f"cancel not done after {timeout} s", venue=vc.venue,
                                                           client_order_id=vc.cid))
        except VenueError as exc:
            self.stats["command_errors"] += 1
            log.warning("%s %s: cancel failed: %s", vc.venue, vc.cid, exc)
            self.engine._on_cancel_failed(vc, exc)

    async def settle(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until no venue order is open and no command task runs.
        True if everything settled."""
        om = self.engine.om
        deadline = self.clock.now_ns() + int(timeout_s * 1e9)
        while self.clock.now_ns() < deadline:
            busy = [t for t in self._tasks if t.get_name().startswith(("submit:", "cancel:"))]
            if not busy and not om.open_orders():
                return True
            await self._sleep(0.01)
        return False

    async def resolve_unsettled(self, timeout_s: float) -> dict[str, str]:
        """After :meth:`settle` timed out at shutdown: settle what is still open by asking the
        venues, then record what is still unknown. Returns a note per parent id with child orders
        left unresolved ("N child order(s) ... unresolved at the venue and must be checked: ...").

        1. The submits still waiting for their answer are abandoned (their tasks cancelled, so no
           request still queued in an adapter's rate limiter leaves after this); each such order
           is UNKNOWN, as after a submit timeout.
        2. Every order still open on a live venue is queried over REST by the adapter's UNKNOWN
           resolver (``BinanceSpotVenue.resolve_unknown`` with the order's send time: an order
           found is applied with its fills, one the venue still has no trace of ``recvWindow``
           after it was sent is REJECTED), waiting at most ``timeout_s`` for the answers.
        3. What is still open then is journaled (an ``order_event`` with ``source: "unresolved"``,
           :meth:`OrderManager.mark_unresolved`: a submit without any answer is UNKNOWN, an
           acknowledged order whose cancel is not confirmed keeps its status) and logged at ERROR.
        """
        eng = self.engine
        om = eng.om
        submits = [t for t in self._tasks if t.get_name().startswith("submit:") and not t.done()]
        for t in submits:
            t.cancel()
        if submits:
            await asyncio.gather(*submits, return_exceptions=True)
        abandoned: set[str] = set()
        for t in submits:
            vc = eng._vchildren.get(t.get_name().removeprefix("submit:"))
            if vc is None or not om.has_order(vc.cid):
                continue
            abandoned.add(vc.cid)
            log.warning("%s %s: shutdown: no answer to the submit after the settle timeout; abandoned, "
                        "order UNKNOWN until the venue says", vc.venue, vc.cid)
            self.stats["command_timeouts"] += 1
            self._record_send_failure(vc, None)
            if om.order(vc.cid).status is OrderStatus.PENDING_NEW:
                eng._on_send_failed(vc, VenueTimeout("no answer to the submit before the shutdown settle timeout",
                                                     venue=vc.venue, client_order_id=vc.cid))
        queries: list[asyncio.Task[Any]] = []
        for mo in om.open_orders():
            venue = self.venues.get(mo.order.venue)
            if venue is None:
                continue
            vc = eng._vchildren.get(mo.client_order_id)
            sent_ns = vc.sent_ns if vc is not None and vc.sent else self.clock.now_ns()
            queries.append(venue.resolve_unknown(mo.client_order_id, sent_ns))
        if queries:
            log.warning("shutdown: querying the venues for %d order(s) still open after the settle timeout "
                        "(at most %.1f s)", len(queries), timeout_s)
            _done, pending = await asyncio.wait(queries, timeout=timeout_s)
            for t in pending:   # no answer in time: nothing they learn later would be recorded
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        left: dict[str, list[str]] = {}
        for mo in om.open_orders():
            if mo.order.venue not in self.venues:
                continue
            if not mo.acked and not mo.executed_lots:
                what = ("its submit got no answer" if mo.client_order_id in abandoned
                        else "the venue never acknowledged it")
                why = (f"{what}, and a status query at the venue did not settle it ({timeout_s:g} s allowed "
                       "after the settle timeout): it may be working there")
            else:
                why = ("the venue has it and its cancel was not confirmed, nor settled by a status query "
                       f"({timeout_s:g} s allowed after the settle timeout): it may still be working")
            status = om.mark_unresolved(mo.client_order_id, f"unresolved at shutdown: {why}")
            left.setdefault(str(mo.order.parent_id), []).append(f"{mo.client_order_id} ({status.value}: {why})")
        notes: dict[str, str] = {}
        for pid, items in left.items():
            n = len(items)
            notes[pid] = (f"{n} child order{'s are' if n > 1 else ' is'} unresolved at the venue and must be "
                          f"checked: {'; '.join(items)}")
        if left:
            log.error("shutdown: %d venue order(s) unresolved, to be checked at the venue: %s",
                      sum(len(v) for v in left.values()), "; ".join(i for v in left.values() for i in v))
        return notes

    async def _sleep(self, seconds: float) -> None:
        await self._sleeper.sleep_until(self.clock.now_ns() + int(seconds * 1e9))
