"""Per-venue rate limiter: weighted, linked buckets on the injected :class:`~marketdata.clock.Clock`.

A venue publishes several limits at once (Binance spot: ``REQUEST_WEIGHT`` 6,000 per minute,
``ORDERS`` 50 per 10 s and 160,000 per day). A *request type* (``new_order``, ``cancel``, ...)
draws on one or more *buckets* with a weight each; it is granted only if every bucket it touches
has room, and then it is charged to all of them at once (linked limits, as in Hummingbot's
``AsyncThrottler`` ``linked_limits``).

Bucket kinds
------------
``window``
    At most ``limit`` weight in *any* interval of ``window_s`` seconds. Implemented as a ring of
    ``slots_per_window`` sub-window counters with a running total: O(1) per grant, conservative
    (a grant is remembered until its whole slot has left the window, so pacing is late by at most
    one slot, 1 % of the window by default) and therefore also safe against a venue that counts in
    fixed, clock-aligned windows whatever the offset between our clock and theirs.
``decay``
    A counter that rises by the weight and decays continuously at ``limit / window_s`` per second,
    refusing above ``limit`` (Kraken's "API counter"). This is the leaky bucket / GCRA: one integer
    (the theoretical arrival time), O(1).

Cancels
-------
Request types listed in ``cancel_types`` get priority: ordinary requests may use only
``(1 - cancel_reserve)`` of each bucket, so the last share (15 % by default) is kept for cancels,
and in :meth:`RateLimiter.acquire` waiting cancels go before waiting ordinary requests.

Venue feedback
--------------
:meth:`RateLimiter.on_used_weight` (``X-MBX-USED-WEIGHT-1M``) tightens a bucket's count to what the
venue says (never loosens it); :meth:`RateLimiter.on_limit_reached` counts a bucket full for one
window (the venue said the limit is reached, not for how long). :meth:`RateLimiter.on_rate_limited`
(HTTP 429 with ``Retry-After``, 418 bans) blocks every request type until
``now + max(retry_after, backoff)``, the backoff doubling with each 429 since the last streak of
``success_streak`` successes (:meth:`RateLimiter.on_success`).

Three ways to ask
-----------------
* :meth:`RateLimiter.try_acquire` ``(request_type, now) -> 0`` if granted (and charged) now, else the
  nanoseconds to wait; nothing is charged on refusal. The hot path (< 2 µs, see bench/results/oms.md).
* :meth:`RateLimiter.acquire_at` (simulation): reserve the earliest time capacity exists and return
  it; later ordinary requests queue behind the reservation, cancels may still use their reserve now.
* :meth:`RateLimiter.acquire` (async): wait on the clock through an injected :class:`Sleeper`
  (:class:`ClockSleeper` for a live loop, :class:`SimSleeper` that jumps a ``SimClock``).

The limiter never reads wall time, so it behaves identically live and in simulation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation, localcontext
from typing import Any, Protocol

from marketdata.clock import NS_PER_SECOND, AlertHandle, Clock, SimClock
from marketdata.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "PRESETS",
    "BucketSpec",
    "ClockSleeper",
    "LimiterPreset",
    "RateLimiter",
    "SimSleeper",
    "Sleeper",
    "UnknownRequestType",
    "preset",
]


class UnknownRequestType(ConfigError):
    """A request type the limiter was not configured with."""


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """One published limit: ``limit`` weight per ``window_ns`` (``kind`` ``window`` or ``decay``)."""

    limit: int
    window_ns: int
    kind: str = "window"

    @classmethod
    def parse(cls, name: str, value: Any, *, where: str = "rate limits") -> BucketSpec:
        """Accept ``BucketSpec``, ``(limit, window_s)`` or ``(limit, window_s, kind)``.

        ``window_s`` may be an int, a decimal string or a Decimal (floats are accepted from TOML and
        converted through their shortest repr)."""
        if isinstance(value, BucketSpec):
            return value
        if not isinstance(value, (tuple, list)) or len(value) not in (2, 3):
            raise ConfigError(f"bucket {name!r} must be (limit, window_s) or (limit, window_s, kind), "
                              f"got {value!r}", file=where, key=name)
        limit, window_s = value[0], value[1]
        kind = value[2] if len(value) == 3 else "window"
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ConfigError(f"limit {limit!r} must be a positive integer", file=where, key=name)
        try:
            w = Decimal(repr(window_s)) if isinstance(window_s, float) else Decimal(window_s)
        except (InvalidOperation, TypeError, ValueError):
            raise ConfigError(f"window_s {window_s!r} is not a number", file=where, key=name) from None
        if not w.is_finite() or w <= 0:
            raise ConfigError(f"window_s {window_s!r} must be > 0", file=where, key=name)
        if kind not in ("window", "decay"):
            raise ConfigError(f"unknown bucket kind {kind!r}", file=where, key=name, allowed="window, decay")
        return cls(limit, int(w * NS_PER_SECOND), kind)


@dataclass(frozen=True)
class LimiterPreset:
    """A venue's published limits as data: buckets, request types (bucket -> weight), cancel types."""

    venue: str
    source: str
    buckets: Mapping[str, tuple[Any, ...]]
    request_types: Mapping[str, Mapping[str, int]]
    cancel_types: frozenset[str]


# Presets. Each cites the page its figures come from; check them against the venue before going live
# (venues change limits; Binance also returns its current ones in GET /api/v3/exchangeInfo).
PRESETS: dict[str, LimiterPreset] = {
    # https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits and
    # exchangeInfo "rateLimits": REQUEST_WEIGHT 6000/1m, ORDERS 50/10s, ORDERS 160000/1d,
    # RAW_REQUESTS 61000/5m. Weights from the endpoint pages: order 1, cancel 1, query order 4,
    # open orders (one symbol) 6, account 20, cancelReplace 1. Cancels do not count toward ORDERS.
    "binance-spot": LimiterPreset(
        venue="binance-spot",
        source="https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits",
        buckets={"REQUEST_WEIGHT": (6000, 60), "ORDERS_10S": (50, 10), "ORDERS_1D": (160_000, 86_400),
                 "RAW_REQUESTS": (61_000, 300)},
        request_types={
            "new_order": {"REQUEST_WEIGHT": 1, "ORDERS_10S": 1, "ORDERS_1D": 1, "RAW_REQUESTS": 1},
            "cancel": {"REQUEST_WEIGHT": 1, "RAW_REQUESTS": 1},
            "replace": {"REQUEST_WEIGHT": 1, "ORDERS_10S": 1, "ORDERS_1D": 1, "RAW_REQUESTS": 1},
            "query_order": {"REQUEST_WEIGHT": 4, "RAW_REQUESTS": 1},
            "open_orders": {"REQUEST_WEIGHT": 6, "RAW_REQUESTS": 1},
            "account": {"REQUEST_WEIGHT": 20, "RAW_REQUESTS": 1},
        },
        cancel_types=frozenset({"cancel"}),
    ),
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info (limits):
    # REQUEST_WEIGHT 2400/1m, ORDERS 300/10s and 1200/1m. Order 1 (0 weight on REQUEST_WEIGHT for
    # new order per docs is 0; we charge 1 to stay conservative), cancel 1, query 1, open orders 1.
    "binance-usdm": LimiterPreset(
        venue="binance-usdm",
        source="https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info",
        buckets={"REQUEST_WEIGHT": (2400, 60), "ORDERS_10S": (300, 10), "ORDERS_1M": (1200, 60)},
        request_types={
            "new_order": {"REQUEST_WEIGHT": 1, "ORDERS_10S": 1, "ORDERS_1M": 1},
            "cancel": {"REQUEST_WEIGHT": 1},
            "replace": {"REQUEST_WEIGHT": 1, "ORDERS_10S": 1, "ORDERS_1M": 1},
            "query_order": {"REQUEST_WEIGHT": 1},
            "open_orders": {"REQUEST_WEIGHT": 1},
            "account": {"REQUEST_WEIGHT": 5},
        },
        cancel_types=frozenset({"cancel"}),
    ),
    # TWS API: at most 50 messages per second from client to TWS
    # (https://interactivebrokers.github.io/tws-api/order_limitations.html, "pacing").
    "ib": LimiterPreset(
        venue="ib",
        source="https://interactivebrokers.github.io/tws-api/order_limitations.html",
        buckets={"MESSAGES": (50, 1)},
        request_types={"new_order": {"MESSAGES": 1}, "cancel": {"MESSAGES": 1}, "replace": {"MESSAGES": 1},
                       "query_order": {"MESSAGES": 1}, "open_orders": {"MESSAGES": 1},
                       "account": {"MESSAGES": 1}},
        cancel_types=frozenset({"cancel"}),
    ),
    # Coinbase Advanced Trade REST: private endpoints 30 requests/s per user, public 10/s per IP
    # (https://docs.cdp.coinbase.com/advanced-trade/docs/rest-api-rate-limits).
    "coinbase": LimiterPreset(
        venue="coinbase",
        source="https://docs.cdp.coinbase.com/advanced-trade/docs/rest-api-rate-limits",
        buckets={"PRIVATE": (30, 1)},
        request_types={"new_order": {"PRIVATE": 1}, "cancel": {"PRIVATE": 1}, "replace": {"PRIVATE": 1},
                       "query_order": {"PRIVATE": 1}, "open_orders": {"PRIVATE": 1},
                       "account": {"PRIVATE": 1}},
        cancel_types=frozenset({"cancel"}),
    ),
    # OKX v5: place order 60 requests / 2 s, cancel order 60 / 2 s, amend 60 / 2 s, order details
    # 60 / 2 s, pending orders 60 / 2 s, balance 10 / 2 s (per user id; trade endpoints also per
    # instrument). https://www.okx.com/docs-v5/en/#order-book-trading-trade-post-place-order
    "okx": LimiterPreset(
        venue="okx",
        source="https://www.okx.com/docs-v5/en/#order-book-trading-trade",
        buckets={"PLACE": (60, 2), "CANCEL": (60, 2), "AMEND": (60, 2), "QUERY": (60, 2),
                 "PENDING": (60, 2), "BALANCE": (10, 2)},
        request_types={"new_order": {"PLACE": 1}, "cancel": {"CANCEL": 1}, "replace": {"AMEND": 1},
                       "query_order": {"QUERY": 1}, "open_orders": {"PENDING": 1},
                       "account": {"BALANCE": 1}},
        cancel_types=frozenset({"cancel"}),
    ),
    # Kraken spot REST (Starter tier): API counter max 15, decays 0.33/s (15/0.33 = 45.45 s to
    # drain); trading counter per pair threshold 60, decays 1/s; add order +1, cancel of an order
    # younger than 5 s +8 (the worst case, charged always to stay safe), query/ledger +1 (+2 for
    # history). https://docs.kraken.com/api/docs/guides/spot-rest-ratelimits and
    # https://docs.kraken.com/api/docs/guides/spot-ratelimits
    "kraken": LimiterPreset(
        venue="kraken",
        source="https://docs.kraken.com/api/docs/guides/spot-rest-ratelimits",
        buckets={"API_COUNTER": (15, "45.45", "decay"), "TRADING_COUNTER": (60, 60, "decay")},
        request_types={"new_order": {"TRADING_COUNTER": 1}, "cancel": {"TRADING_COUNTER": 8},
                       "replace": {"TRADING_COUNTER": 1},
                       "query_order": {"API_COUNTER": 1}, "open_orders": {"API_COUNTER": 1},
                       "account": {"API_COUNTER": 1}},
        cancel_types=frozenset({"cancel"}),
    ),
    # Bybit v5 (spot): create/amend/cancel order 20 requests/s per UID, queries 50/s; IP limit
    # 600 requests per 5 s. https://bybit-exchange.github.io/docs/v5/rate-limit
    "bybit": LimiterPreset(
        venue="bybit",
        source="https://bybit-exchange.github.io/docs/v5/rate-limit",
        buckets={"IP": (600, 5), "CREATE": (20, 1), "AMEND": (20, 1), "CANCEL": (20, 1), "QUERY": (50, 1)},
        request_types={"new_order": {"IP": 1, "CREATE": 1}, "cancel": {"IP": 1, "CANCEL": 1},
                       "replace": {"IP": 1, "AMEND": 1}, "query_order": {"IP": 1, "QUERY": 1},
                       "open_orders": {"IP": 1, "QUERY": 1}, "account": {"IP": 1, "QUERY": 1}},
        cancel_types=frozenset({"cancel"}),
    ),
}


def preset(venue: str) -> LimiterPreset:
    """The preset for ``venue`` (raises :class:`ConfigError` naming the known ones)."""
    try:
        return PRESETS[venue]
    except KeyError:
        raise ConfigError(f"no rate-limit preset for venue {venue!r}", key="venue",
                          allowed=", ".join(sorted(PRESETS))) from None


class Sleeper(Protocol):
    """How :meth:`RateLimiter.acquire` waits: until the clock reads ``at_ns``."""

    async def sleep_until(self, at_ns: int) -> None: ...


class ClockSleeper:
    """Waits through ``clock.set_alert`` on the running asyncio loop (LiveClock, or a SimClock
    driven by someone else). No wall-clock reads of its own."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def sleep_until(self, at_ns: int) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def _wake(_: int) -> None:
            if not fut.done():
                fut.set_result(None)

        handle: AlertHandle = self._clock.set_alert(at_ns, _wake)
        try:
            await fut
        finally:
            handle.cancel()


class SimSleeper:
    """For simulations and tests: jumps a :class:`SimClock` forward (firing due alerts) and returns
    without suspending, so ``run_now(limiter.acquire(...))`` works without an event loop."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock

    async def sleep_until(self, at_ns: int) -> None:
        if at_ns > self._clock.now_ns():
            self._clock.advance_to(at_ns)


class _Bucket:
    __slots__ = ("cap_cancel", "cap_normal", "decay", "dropped", "head", "head_idx", "limit", "name",
                 "nslots", "ring", "ringlen", "slot_end", "slot_ns", "slot_start", "tat", "total",
                 "wait_cache", "window_ns")

    def __init__(self, name: str, spec: BucketSpec, cancel_reserve: Decimal, slots: int) -> None:
        self.name = name
        self.limit = spec.limit
        self.window_ns = spec.window_ns
        self.decay = spec.kind == "decay"
        # at least one unit kept whenever a reserve is asked for
        reserve = int((Decimal(spec.limit) * cancel_reserve).to_integral_value(rounding=ROUND_CEILING))
        if self.decay:
            # caps are in ns of "level": level * window/limit; cost per weight added per type
            self.cap_cancel = spec.window_ns
            self.cap_normal = spec.window_ns - spec.window_ns * reserve // spec.limit
        else:
            self.cap_cancel = spec.limit
            self.cap_normal = spec.limit - reserve
        self.nslots = max(1, min(slots, spec.window_ns))
        self.slot_ns = -(-spec.window_ns // self.nslots)
        # history kept: 4 windows, so a cancel can still be checked exactly at `now` while ordinary
        # requests are reserved up to 3 windows ahead (acquire_at)
        self.ringlen = 4 * self.nslots + 2
        self.ring = [0] * self.ringlen
        self.head = -(1 << 62)  # absolute slot index of the newest slot seen
        self.head_idx = 0       # head % ringlen
        self.slot_start = 1     # [slot_start, slot_end) is the head slot's time span (empty at first)
        self.slot_end = 0
        self.total = 0          # sum of the ring over slots [head - nslots, head]
        self.dropped = 0        # weight expired out of the window so far: total + dropped changes
                                # only when something is charged, so it keys the wait cache
        self.tat = 0            # decay: theoretical arrival time (ns)
        self.wait_cache: tuple[int, int, int, int] = (-1, 0, 0, 0)

    def advance(self, slot: int) -> None:
        """Make ``slot`` (> head) the head: the slots that leave the window are subtracted from
        the total, the new slots zeroed. Slices, not a Python loop per slot (a gap of a few
        seconds is tens of slots; the first use of a bucket is the whole ring)."""
        ring, n, rl = self.ring, self.nslots, self.ringlen
        head = self.head
        gap = slot - head
        if gap >= rl:
            ring[:] = [0] * rl
            self.dropped += self.total
            self.total = 0
        elif gap <= 8:   # a few slots: the plain loop is cheaper than building slices
            total = self.total
            for k in range(head + 1, slot + 1):
                total -= ring[(k - n - 1) % rl]
                ring[k % rl] = 0
            self.dropped += self.total - total
            self.total = total
        else:
            # leaving the window: slots head - n .. slot - n - 1; those after head were never
            # charged (nothing is charged beyond the head), so only head - n .. min(., head) count
            hi = min(slot - n - 1, head)
            if hi >= head - n:
                i = (head - n) % rl
                j = i + hi - (head - n) + 1
                left = sum(ring[i:j]) if j <= rl else sum(ring[i:]) + sum(ring[:j - rl])
                self.total -= left
                self.dropped += left
            i = (head + 1) % rl
            j = i + gap
            if j <= rl:
                ring[i:j] = [0] * gap
            else:
                ring[i:] = [0] * (rl - i)
                ring[:j - rl] = [0] * (j - rl)
        self.head = slot
        self.head_idx = slot % rl
        self.slot_start = slot * self.slot_ns
        self.slot_end = self.slot_start + self.slot_ns

    def window_wait(self, weight: int, cap: int, now: int) -> int:
        """ns until ``weight`` fits, judged from the head slot (denial path; O(nslots), cached)."""
        slot, total = self.head, self.total
        key = total + self.dropped
        c = self.wait_cache
        if c[0] == key and c[1] == weight and c[2] == cap and c[3] > now:
            return c[3] - now
        ring, n, rl = self.ring, self.nslots, self.ringlen
        remaining = total
        at = (slot + n + 1) * self.slot_ns  # unreachable fallback while weight <= cap
        for k in range(slot - n, slot + 1):
            remaining -= ring[k % rl]
            if remaining + weight <= cap:
                at = (k + n + 1) * self.slot_ns
                break
        self.wait_cache = (key, weight, cap, at)
        return at - now

    def fits_in_past(self, slot: int, weight: int, cap: int) -> bool:
        """Would ``weight`` at ``slot`` < head keep every window containing it within ``cap``?"""
        ring, n, rl = self.ring, self.nslots, self.ringlen
        s = 0
        for k in range(slot - n, slot + 1):
            s += ring[k % rl]
        if s + weight > cap:
            return False
        for e in range(slot + 1, min(self.head, slot + n) + 1):
            s += ring[e % rl] - ring[(e - n - 1) % rl]
            if s + weight > cap:
                return False
        return True

    def used_at(self, now: int) -> int:
        """The largest window total a grant at ``now`` would join (advances to ``now`` first):
        the head window's total, or, before the head (reservations ahead), the fullest of the
        windows containing ``now``'s slot, as :meth:`fits_in_past` checks them; a slot that has
        left the ring counts as full."""
        slot = now // self.slot_ns
        if slot > self.head:
            self.advance(slot)
        if slot == self.head:
            return self.total
        if slot < self.head + self.nslots + 1 - self.ringlen:
            return self.cap_cancel
        ring, n, rl = self.ring, self.nslots, self.ringlen
        s = 0
        for k in range(slot - n, slot + 1):
            s += ring[k % rl]
        worst = s
        for e in range(slot + 1, min(self.head, slot + n) + 1):
            s += ring[e % rl] - ring[(e - n - 1) % rl]
            if s > worst:
                worst = s
        return worst

    def charge_slow(self, weight: int, cap: int, now: int) -> bool:
        """Charge a window bucket when ``now`` is outside the head slot; False (nothing charged) if
        it does not fit."""
        slot = now // self.slot_ns
        if slot > self.head:
            self.advance(slot)
        if slot == self.head:
            if self.total + weight > cap:
                return False
            self.total += weight
            self.ring[self.head_idx] += weight
            return True
        # before the head: reservations exist in the future
        if slot < self.head + self.nslots + 1 - self.ringlen or not self.fits_in_past(slot, weight, cap):
            return False
        self.ring[slot % self.ringlen] += weight
        if slot >= self.head - self.nslots:
            self.total += weight
        return True

    def uncharge(self, weight: int, cost: int, now: int) -> None:
        if self.decay:
            self.tat -= cost
            return
        slot = now // self.slot_ns
        self.ring[slot % self.ringlen] -= weight
        if slot >= self.head - self.nslots:
            self.total -= weight

    def wait_for(self, weight: int, cost: int, cap: int, now: int) -> int:
        """ns until ``weight`` fits (0 if it fits now); charges nothing."""
        if self.decay:
            tat = self.tat if self.tat > now else now
            return max(0, tat + cost - now - cap)
        slot = now // self.slot_ns
        if slot > self.head:
            self.advance(slot)
        if slot == self.head:
            return 0 if self.total + weight <= cap else self.window_wait(weight, cap, now)
        if slot >= self.head + self.nslots + 1 - self.ringlen and self.fits_in_past(slot, weight, cap):
            return 0
        # queue behind the reservations (conservative)
        w = self.head * self.slot_ns - now
        if self.total + weight > cap:
            w = self.window_wait(weight, cap, now)
        return w


class RateLimiter:
    """Weighted, linked, cancel-prioritising limiter for one venue (see the module docstring).

    ``buckets``: name -> :class:`BucketSpec` or ``(limit, window_s[, kind])``; ``request_types``:
    type -> {bucket: weight}. Unknown buckets in a request type and weights above a bucket's usable
    capacity are configuration errors.
    """

    def __init__(self, clock: Clock, buckets: Mapping[str, Any], request_types: Mapping[str, Mapping[str, int]],
                 *, cancel_types: Iterable[str] = ("cancel",), cancel_reserve: str | Decimal = "0.15",
                 slots_per_window: int = 100, venue: str = "", sleeper: Sleeper | None = None,
                 backoff_base_ns: int = NS_PER_SECOND, backoff_max_ns: int = 300 * NS_PER_SECOND,
                 success_streak: int = 20, poll_ns: int = NS_PER_SECOND // 1000) -> None:
        where = f"rate limits of {venue or 'venue'}"
        reserve = Decimal(cancel_reserve)
        if not (Decimal(0) <= reserve < Decimal(1)):
            raise ConfigError(f"cancel_reserve {cancel_reserve} must be in [0, 1)", file=where,
                              key="cancel_reserve")
        self.venue = venue
        self._clock = clock
        self._sleeper: Sleeper = sleeper if sleeper is not None else ClockSleeper(clock)
        self._buckets: dict[str, _Bucket] = {
            name: _Bucket(name, BucketSpec.parse(name, spec, where=where), reserve, slots_per_window)
            for name, spec in buckets.items()}
        cancels = frozenset(cancel_types)
        self._types: dict[str, tuple[bool, tuple[tuple[_Bucket, int, int], ...]]] = {}
        for rt, weights in request_types.items():
            parts = []
            is_cancel = rt in cancels
            for bname, weight in weights.items():
                b = self._buckets.get(bname)
                if b is None:
                    raise ConfigError(f"request type {rt!r} uses unknown bucket {bname!r}", file=where,
                                      key=f"{rt}.{bname}", allowed=", ".join(sorted(self._buckets)))
                if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
                    raise ConfigError(f"weight {weight!r} must be a positive integer", file=where,
                                      key=f"{rt}.{bname}")
                cost = -(-weight * b.window_ns // b.limit)  # decay: ns of level per grant
                cap = b.cap_cancel if is_cancel else b.cap_normal
                if (cost if b.decay else weight) > cap:
                    raise ConfigError(f"request type {rt!r} weighs {weight} on {bname!r}, more than its "
                                      f"usable capacity", file=where, key=f"{rt}.{bname}")
                parts.append((b, weight, cost))
            self._types[rt] = (is_cancel, tuple(parts))
        for c in cancels:
            if c not in self._types:
                raise ConfigError(f"cancel type {c!r} is not a request type", file=where, key="cancel_types")
        self._blocked_until = 0
        self._strikes = 0
        self._successes = 0
        self._backoff_base_ns = backoff_base_ns
        self._backoff_max_ns = backoff_max_ns
        self._success_streak = success_streak
        self._poll_ns = poll_ns
        self._cancel_waiters = 0
        self._reserved_until = 0
        self.granted = 0
        self.refused = 0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, venue: str, clock: Clock, *, overrides: Mapping[str, Any] | None = None,
                    **kw: Any) -> RateLimiter:
        """Limiter from :data:`PRESETS` with ``overrides`` ({bucket: (limit, window_s[, kind])}) from
        config applied; overriding a bucket the preset does not have is an error."""
        return cls.from_preset_with_caps(venue, clock, overrides=overrides, **kw)

    @classmethod
    def from_preset_with_caps(cls, venue: str, clock: Clock, *, overrides: Mapping[str, Any] | None = None,
                              orders_per_second: int | None = None, orders_per_minute: int | None = None,
                              request_weight_per_minute: int | None = None, cancel_headroom: int | None = None,
                              **kw: Any) -> RateLimiter:
        """:meth:`from_preset` plus the caps a user sets on top of the venue's own limits (the
        ``[venues.<id>.rate_limit]`` table): ``orders_per_second`` / ``orders_per_minute`` add
        buckets charged by every new order and replace; ``request_weight_per_minute`` adds one
        charged by every request with its weight on the preset's ``REQUEST_WEIGHT`` bucket (1 on
        a venue without one); ``cancel_headroom`` keeps that many units of the tightest bucket
        cancels use for cancels (the limiter's cancel reserve, instead of its default 15 %)."""
        p = preset(venue)
        buckets: dict[str, Any] = dict(p.buckets)
        for name, spec in (overrides or {}).items():   # as from_preset
            if name not in buckets:
                raise ConfigError(f"venue {venue!r} has no rate-limit bucket {name!r}",
                                  key=f"rate_limits.{name}", allowed=", ".join(sorted(buckets)))
            buckets[name] = spec
        types = {rt: dict(w) for rt, w in p.request_types.items()}
        order_types = [rt for rt in ("new_order", "replace") if rt in types]
        for name, limit, window in (("CONFIG_ORDERS_1S", orders_per_second, 1),
                                    ("CONFIG_ORDERS_1M", orders_per_minute, 60)):
            if limit is not None:
                buckets[name] = (limit, window)
                for rt in order_types:
                    types[rt][name] = 1
        if request_weight_per_minute is not None:
            buckets["CONFIG_WEIGHT_1M"] = (request_weight_per_minute, 60)
            for w in types.values():
                w["CONFIG_WEIGHT_1M"] = min(w.get("REQUEST_WEIGHT", 1), request_weight_per_minute)
        if cancel_headroom is not None:
            cancel_limits = [BucketSpec.parse(b, buckets[b]).limit for rt in p.cancel_types for b in types[rt]]
            tightest = min(cancel_limits) if cancel_limits else 1
            # rounded down: each bucket reserves ceil(limit x share), and a share rounded up in its
            # last digit (8 / 30 = 0.2666...67) would reserve one unit more than asked (9 of 30)
            with localcontext() as ctx:
                ctx.rounding = ROUND_FLOOR
                share = Decimal(cancel_headroom) / tightest
            kw["cancel_reserve"] = min(share, Decimal("0.9"))
        return cls(clock, buckets, types, cancel_types=p.cancel_types, venue=venue, **kw)

    @property
    def request_types(self) -> list[str]:
        return sorted(self._types)

    def _unknown(self, request_type: str) -> UnknownRequestType:
        return UnknownRequestType(f"{self.venue or 'limiter'}: unknown request type {request_type!r}",
                                  key="request_type", allowed=", ".join(sorted(self._types)))

    # ------------------------------------------------------------------ hot path
    def try_acquire(self, request_type: str, now: int) -> int:
        """0 if ``request_type`` is granted at ``now`` (and charged to all its buckets), else the
        nanoseconds to wait before it could be; nothing is charged then.

        O(buckets of the type) when granted; a refusal costs O(slots) once per ring state (cached)."""
        spec = self._types.get(request_type)
        if spec is None:
            raise self._unknown(request_type)
        if now < self._blocked_until:
            self.refused += 1
            return self._blocked_until - now
        is_cancel, parts = spec
        if now < self._reserved_until and not is_cancel:
            self.refused += 1
            return self._reserved_until - now
        # one optimistic pass: charge as we go, undo on the first bucket that does not fit
        done = 0
        for b, weight, cost in parts:
            if b.decay:
                tat = b.tat if b.tat > now else now
                if tat + cost - now > (b.cap_cancel if is_cancel else b.cap_normal):
                    break
                b.tat = tat + cost
            elif b.slot_start <= now < b.slot_end:
                total = b.total + weight
                if total > (b.cap_cancel if is_cancel else b.cap_normal):
                    break
                b.total = total
                b.ring[b.head_idx] += weight
            elif not b.charge_slow(weight, b.cap_cancel if is_cancel else b.cap_normal, now):
                break
            done += 1
        else:
            self.granted += 1
            return 0
        for b, weight, cost in parts[:done]:
            b.uncharge(weight, cost, now)
        self.refused += 1
        wait = 0
        for b, weight, cost in parts:
            w = b.wait_for(weight, cost, b.cap_cancel if is_cancel else b.cap_normal, now)
            if w > wait:
                wait = w
        return wait if wait > 0 else 1

    def headroom(self, request_type: str, now: int) -> int:
        """How many ``request_type`` requests :meth:`try_acquire` would grant back to back at
        ``now`` (0 while blocked by a backoff or a cancel reservation); nothing is charged."""
        spec = self._types.get(request_type)
        if spec is None:
            raise self._unknown(request_type)
        if now < self._blocked_until:
            return 0
        is_cancel, parts = spec
        if now < self._reserved_until and not is_cancel:
            return 0
        n: int | None = None
        for b, weight, cost in parts:
            cap = b.cap_cancel if is_cancel else b.cap_normal
            if b.decay:
                level = b.tat - now if b.tat > now else 0
                k = (cap - level) // cost
            else:   # (cancels may have used the reserve: the total can exceed an ordinary cap)
                k = (cap - b.used_at(now)) // weight
            if n is None or k < n:
                n = k
        return max(0, n or 0)

    # ------------------------------------------------------------------ simulation
    def acquire_at(self, request_type: str) -> int:
        """Reserve ``request_type`` at the earliest time capacity exists (never before the clock's
        now) and return that time in ns. Ordinary requests reserved later queue behind it; cancels
        may still be granted earlier from their reserve."""
        spec = self._types.get(request_type)
        if spec is None:
            raise self._unknown(request_type)
        t = self._clock.now_ns()
        while True:
            w = self.try_acquire(request_type, t)
            if w == 0:
                break
            t += w
        if not spec[0] and t > self._reserved_until:
            self._reserved_until = t
        return t

    # ------------------------------------------------------------------ async
    async def acquire(self, request_type: str) -> int:
        """Wait (through the sleeper, on the clock) until ``request_type`` is granted; returns the
        grant time. Waiting cancels go before waiting ordinary requests."""
        spec = self._types.get(request_type)
        if spec is None:
            raise self._unknown(request_type)
        is_cancel = spec[0]
        clock = self._clock
        if is_cancel:
            self._cancel_waiters += 1
        try:
            while True:
                now = clock.now_ns()
                if is_cancel or self._cancel_waiters == 0:
                    wait = self.try_acquire(request_type, now)
                    if wait == 0:
                        return now
                else:
                    wait = self._poll_ns
                log.debug("%s: %s waits %d ns", self.venue, request_type, wait)
                await self._sleeper.sleep_until(now + wait)
        finally:
            if is_cancel:
                self._cancel_waiters -= 1

    # ------------------------------------------------------------------ venue feedback
    def on_used_weight(self, bucket: str, used: int, now: int) -> None:
        """The venue reports ``used`` weight in ``bucket``'s current window (e.g. the
        ``X-MBX-USED-WEIGHT-1M`` header): raise our count to it if it is higher."""
        b = self._buckets.get(bucket)
        if b is None:
            raise ConfigError(f"{self.venue}: unknown bucket {bucket!r} in used-weight feedback",
                              key="bucket", allowed=", ".join(sorted(self._buckets)))
        if used < 0:
            raise ValueError(f"{self.venue}: used weight {used} for {bucket} is negative")
        if b.decay:
            level_tat = now + used * b.window_ns // b.limit
            if level_tat > b.tat:
                b.tat = level_tat
            return
        slot = now // b.slot_ns
        if slot > b.head:
            b.advance(slot)
        if used > b.total:
            log.info("%s: venue reports %d used on %s, we counted %d; tightening",
                     self.venue, used, bucket, b.total)
            b.ring[b.head_idx] += used - b.total
            b.total = used

    def on_limit_reached(self, bucket: str, now: int) -> None:
        """The venue says ``bucket``'s limit is used up without saying for how long (Binance:
        ``-1015`` "Too many new orders; current limit is 50 orders per 10 SECOND", no
        ``Retry-After``). Counts a whole ``limit`` of weight in the current slot (never loosening):
        the request types that draw on ``bucket`` wait until it leaves the window, i.e. one full
        interval of that limit (conservative against a venue's clock-aligned windows, which reset
        sooner); the types that do not draw on it are not held."""
        b = self._buckets.get(bucket)
        if b is None:
            raise ConfigError(f"{self.venue}: unknown bucket {bucket!r} in limit-reached feedback",
                              key="bucket", allowed=", ".join(sorted(self._buckets)))
        if b.decay:
            if now + b.window_ns > b.tat:
                b.tat = now + b.window_ns
            return
        slot = now // b.slot_ns
        if slot > b.head:
            b.advance(slot)
        add = b.limit - b.ring[b.head_idx]
        if add > 0:
            b.ring[b.head_idx] += add
            b.total += add
        log.warning("%s: venue reports the %s limit reached; its requests wait %d ms", self.venue, bucket,
                    b.window_ns // 1_000_000)

    def on_rate_limited(self, retry_after_ns: int | None, now: int) -> int:
        """The venue refused for pacing (429 / 418 ban). Blocks every request type until
        ``now + max(retry_after_ns, backoff)``; the backoff doubles with each refusal since the
        last success streak. Returns the time the block ends."""
        self._strikes += 1
        self._successes = 0
        backoff = min(self._backoff_base_ns << min(self._strikes - 1, 40), self._backoff_max_ns)
        delay = max(retry_after_ns or 0, backoff)
        until = now + delay
        if until > self._blocked_until:
            self._blocked_until = until
        log.warning("%s: rate limited (strike %d), blocking all requests for %d ms",
                    self.venue, self._strikes, delay // 1_000_000)
        return self._blocked_until

    def on_success(self) -> None:
        """A request went through; after ``success_streak`` in a row the backoff resets."""
        self._successes += 1
        if self._strikes and self._successes >= self._success_streak:
            self.clear_backoff()

    def clear_backoff(self) -> None:
        """Forget past 429s (the next one starts again from the base backoff)."""
        self._strikes = 0
        self._successes = 0

    @property
    def blocked_until_ns(self) -> int:
        return self._blocked_until

    @property
    def strikes(self) -> int:
        return self._strikes

    def used(self, bucket: str, now: int) -> int:
        """Weight currently counted in ``bucket`` (decay buckets: the current level, rounded up)."""
        b = self._buckets[bucket]
        if b.decay:
            left = max(0, b.tat - now)
            return -(-left * b.limit // b.window_ns)
        slot = now // b.slot_ns
        if slot > b.head:
            b.advance(slot)
        return b.total
