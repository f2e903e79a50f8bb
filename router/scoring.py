"""Per-venue scoring factors, each a small object with visible state and its own tests.

* :class:`BetaFill` — fill probability learned online with a Beta prior: the hit ratio of
  marketable IOCs (filled / sent quantity) and the fill rate of passive orders, per venue.
* :class:`VenueHealth` — rejects, timeouts and a circuit breaker driven by the injected clock.
* :class:`MarketActivity` — exponentially decayed top-of-book depletion rate per side and
  mid-price volatility of one venue's book, fed on every book update; the input of the latency
  haircut.
* :class:`QueueOutflow` — the outflow of the best bid and best ask queues (lots traded or
  cancelled away) over consecutive windows of a fixed horizon: the empirical distribution the
  ``cont_kukanov`` mixed split reads (router.cont_kukanov, docs/cont-kukanov.md).
* :func:`latency_haircut` — how much of the displayed liquidity is expected to be gone by the
  time an order arrives (book age + order round trip), given that rate and volatility.
* :class:`CapacityProvider` — the protocol the engine implements to plug in real balances and the
  ``venues.ratelimit`` limiter's headroom; :class:`StaticCapacity` is the config-driven one.

Nothing here reads wall time: every time is passed in (ns) by the router, which takes it from its
:class:`~marketdata.clock.Clock`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from marketdata.model import Side

__all__ = [
    "BetaFill",
    "BreakerState",
    "CapacityProvider",
    "LatencyEstimate",
    "MarketActivity",
    "QueueOutflow",
    "StaticCapacity",
    "UnlimitedCapacity",
    "VenueHealth",
    "latency_haircut",
]

NS_PER_S = 1_000_000_000


class BetaFill:
    """Beta(alpha, beta) estimate of a success ratio, updated with fractional outcomes.

    ``record(sent, filled)`` adds ``filled/sent`` to alpha and ``1 - filled/sent`` to beta, so an
    IOC half filled counts half a hit. ``mean`` is the posterior mean alpha / (alpha + beta)."""

    __slots__ = ("alpha", "beta", "orders")

    def __init__(self, alpha: float, beta: float) -> None:
        if alpha <= 0 or beta <= 0:
            raise ValueError(f"Beta prior parameters must be > 0, got alpha={alpha} beta={beta}")
        self.alpha = alpha
        self.beta = beta
        self.orders = 0

    def record(self, sent: int, filled: int) -> None:
        """One order's outcome: ``filled`` of ``sent`` units (any unit, ratios only)."""
        if sent <= 0 or filled < 0 or filled > sent:
            raise ValueError(f"invalid outcome: filled {filled} of sent {sent}")
        ratio = filled / sent
        self.alpha += ratio
        self.beta += 1.0 - ratio
        self.orders += 1

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class VenueHealth:
    """Reject/timeout counters and a circuit breaker for one venue.

    ``failures_to_open`` consecutive failures (reject or timeout) open the breaker; after
    ``cooldown_ns`` it is half-open: routable for exactly one probe order. The router calls
    :meth:`start_probe` when a decision sends an order there; until that probe's outcome is
    known (:meth:`probe_in_flight`) the venue takes no other order. A success closes the
    breaker, a failure while half-open opens it again for another cooldown. A probe that never
    gets an answer (lost, or the decision was not sent) frees its slot ``cooldown_ns`` after it
    was sent, so the venue is probed again rather than wedged."""

    __slots__ = ("consecutive_failures", "cooldown_ns", "failures_to_open", "opened_at_ns", "probe_sent_ns",
                 "rejects", "successes", "timeouts")

    def __init__(self, failures_to_open: int = 5, cooldown_ns: int = 30 * NS_PER_S) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown_ns = cooldown_ns
        self.rejects = 0
        self.timeouts = 0
        self.successes = 0
        self.consecutive_failures = 0
        self.opened_at_ns: int | None = None
        self.probe_sent_ns: int | None = None   # when the half-open breaker's probe order was sent

    def state(self, now_ns: int) -> BreakerState:
        if self.opened_at_ns is None:
            return BreakerState.CLOSED
        if now_ns - self.opened_at_ns >= self.cooldown_ns:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def probe_in_flight(self, now_ns: int) -> bool:
        """Half-open and the probe order sent less than ``cooldown_ns`` ago has no outcome yet."""
        sent = self.probe_sent_ns
        return sent is not None and now_ns - sent < self.cooldown_ns

    def start_probe(self, now_ns: int) -> None:
        """A decision sends the half-open breaker's probe order now."""
        self.probe_sent_ns = now_ns

    def _failure(self, now_ns: int) -> None:
        self.consecutive_failures += 1
        half_open = self.state(now_ns) is BreakerState.HALF_OPEN
        if half_open or (self.opened_at_ns is None and self.consecutive_failures >= self.failures_to_open):
            self.opened_at_ns = now_ns
            self.probe_sent_ns = None

    def record_reject(self, now_ns: int) -> None:
        self.rejects += 1
        self._failure(now_ns)

    def record_timeout(self, now_ns: int) -> None:
        self.timeouts += 1
        self._failure(now_ns)

    def record_success(self, now_ns: int) -> None:
        """An acknowledged order: resets the failure streak and closes the breaker."""
        self.successes += 1
        self.consecutive_failures = 0
        self.opened_at_ns = None
        self.probe_sent_ns = None


class MarketActivity:
    """Decayed statistics of one venue's top of book, in common ticks and seconds.

    On each book update it counts *depletions* per side (the best ask rose, its size shrank or
    the side emptied; the best bid likewise: events that take away liquidity a taker was looking at)
    and accumulates squared mid changes. Both are exponentially decayed sums with time constant
    ``tau_ns``; a decayed count divided by tau is a rate per second. O(1) per update (one exp)."""

    __slots__ = ("_ask", "_ask_lots", "_bid", "_bid_lots", "_depl_ask", "_depl_bid", "_last_ns", "_mid",
                 "_sq", "tau_ns", "updates")

    def __init__(self, tau_ns: int = 5 * NS_PER_S) -> None:
        self.tau_ns = tau_ns
        self._last_ns: int | None = None
        self._bid: int | None = None
        self._ask: int | None = None
        self._bid_lots = 0
        self._ask_lots = 0
        self._mid: float | None = None
        self._depl_bid = 0.0
        self._depl_ask = 0.0
        self._sq = 0.0
        self.updates = 0

    def on_top(self, ts_ns: int, bid: int | None, bid_lots: int, ask: int | None, ask_lots: int) -> None:
        """Feed the top of book (common ticks; lots in any fixed unit) at ``ts_ns``."""
        last = self._last_ns
        if last is not None and ts_ns > last:
            decay = math.exp(-(ts_ns - last) / self.tau_ns)
            self._depl_bid *= decay
            self._depl_ask *= decay
            self._sq *= decay
        if last is None or ts_ns > last:
            self._last_ns = ts_ns
        pb, pa = self._bid, self._ask
        # a side that emptied is depleted too (all of it is gone), as in QueueOutflow
        if pa is not None and (ask is None or ask > pa or (ask == pa and ask_lots < self._ask_lots)):
            self._depl_ask += 1.0
        if pb is not None and (bid is None or bid < pb or (bid == pb and bid_lots < self._bid_lots)):
            self._depl_bid += 1.0
        if bid is not None and ask is not None:
            mid = (bid + ask) / 2
            if self._mid is not None:
                d = mid - self._mid
                self._sq += d * d
            self._mid = mid
        self._bid, self._ask, self._bid_lots, self._ask_lots = bid, ask, bid_lots, ask_lots
        self.updates += 1

    def _decayed(self, value: float, now_ns: int) -> float:
        last = self._last_ns
        if last is None:
            return 0.0
        return value * math.exp(-max(0, now_ns - last) / self.tau_ns)

    def depletion_rate_hz(self, taker_side: Side, now_ns: int) -> float:
        """Depletions per second of the side a taker on ``taker_side`` would hit."""
        v = self._depl_ask if taker_side is Side.BUY else self._depl_bid
        return self._decayed(v, now_ns) * NS_PER_S / self.tau_ns

    def rate_and_volatility(self, taker_side: Side, now_ns: int) -> tuple[float, float]:
        """``(depletion_rate_hz(taker_side, now_ns), volatility_ticks(now_ns))`` with one decay
        factor: the same floats as the two calls, half the ``exp`` work (router hot path)."""
        last = self._last_ns
        if last is None:
            return 0.0, 0.0
        dt = now_ns - last
        decay = math.exp(-(dt if dt > 0 else 0) / self.tau_ns)
        v = self._depl_ask if taker_side is Side.BUY else self._depl_bid
        return v * decay * NS_PER_S / self.tau_ns, math.sqrt(self._sq * decay * NS_PER_S / self.tau_ns)

    def volatility_ticks(self, now_ns: int) -> float:
        """Mid-price volatility in common ticks per square-root second."""
        return math.sqrt(self._decayed(self._sq, now_ns) * NS_PER_S / self.tau_ns)


class QueueOutflow:
    """Outflow of one venue's best bid and best ask queues, per window of ``horizon_ns``.

    On each top-of-book update (lots in a fixed unit, e.g. common lots) the side's best queue
    loses ``previous - new`` lots when its price is unchanged and its size shrank, and all of its
    previous size when the price moved away (a bid that fell, an ask that rose: the level was
    traded through or cancelled). A better price starts a new queue and counts nothing. The sum
    over each window ``[k * horizon, (k + 1) * horizon)`` is one sample of the outflow ``xi`` a
    passive order joining that side's best queue would have seen over the horizon; windows with
    no update at all count 0. The last ``keep`` completed windows are kept per side.

    An approximation (docs/cont-kukanov.md): sizes leaving a level behind us count as outflow too
    (L2 data cannot tell a cancel ahead of us from one behind us), so the estimate leans to more
    fills than a FIFO queue would give. O(1) per update; a window roll is O(skipped windows),
    bounded by ``keep``."""

    __slots__ = ("_ask", "_ask_lots", "_bid", "_bid_lots", "_cur_ask", "_cur_bid", "_window", "asks", "bids",
                 "horizon_ns", "keep")

    def __init__(self, horizon_ns: int, keep: int = 200) -> None:
        if horizon_ns <= 0 or keep <= 0:
            raise ValueError(f"QueueOutflow needs horizon_ns > 0 and keep > 0, got {horizon_ns}, {keep}")
        self.horizon_ns = horizon_ns
        self.keep = keep
        self._window: int | None = None
        self._bid: int | None = None
        self._ask: int | None = None
        self._bid_lots = 0
        self._ask_lots = 0
        self._cur_bid = 0
        self._cur_ask = 0
        self.bids: list[int] = []   # completed windows' bid-queue outflow, oldest first
        self.asks: list[int] = []

    def _roll(self, window: int) -> None:
        last = self._window
        if last is None:
            self._window = window
            return
        if window <= last:
            return
        gap = min(window - last - 1, self.keep)   # whole windows with no update: zero outflow
        for side, cur in ((self.bids, self._cur_bid), (self.asks, self._cur_ask)):
            side.append(cur)
            side.extend([0] * gap)
            if len(side) > self.keep:
                del side[:len(side) - self.keep]
        self._cur_bid = self._cur_ask = 0
        self._window = window

    def on_top(self, ts_ns: int, bid: int | None, bid_lots: int, ask: int | None, ask_lots: int) -> None:
        """Feed the top of book (prices in any fixed tick unit, sizes in a fixed lot unit)."""
        w = ts_ns // self.horizon_ns
        if w != self._window:
            self._roll(w)
        pb, pa = self._bid, self._ask
        if pb is not None and bid is not None:
            if bid == pb:
                if bid_lots < self._bid_lots:
                    self._cur_bid += self._bid_lots - bid_lots
            elif bid < pb:
                self._cur_bid += self._bid_lots
        elif pb is not None:   # the bid side emptied
            self._cur_bid += self._bid_lots
        if pa is not None and ask is not None:
            if ask == pa:
                if ask_lots < self._ask_lots:
                    self._cur_ask += self._ask_lots - ask_lots
            elif ask > pa:
                self._cur_ask += self._ask_lots
        elif pa is not None:
            self._cur_ask += self._ask_lots
        self._bid, self._ask, self._bid_lots, self._ask_lots = bid, ask, bid_lots, ask_lots

    def samples(self, passive_side: Side, now_ns: int | None = None) -> list[int]:
        """The completed windows' outflows of the queue a passive order on ``passive_side`` joins
        (a buy: the bid queue), oldest first; with ``now_ns`` the windows that ended since the
        last update (zero outflow) are rolled in first."""
        if now_ns is not None and self._window is not None:
            w = now_ns // self.horizon_ns
            if w > self._window:
                self._roll(w)
        return list(self.bids if passive_side is Side.BUY else self.asks)


@dataclass(frozen=True, slots=True)
class LatencyEstimate:
    """The latency factor of one venue for one decision (all visible in the explain output).

    ``delay_s`` = book age + order round trip; ``p_gone_top`` = 1 - exp(-rate * delay), the chance
    the best level has been depleted on arrival; ``move_ticks`` = volatility * sqrt(delay), the
    typical price move meanwhile. A level ``k`` common ticks behind the venue's best keeps
    ``1 - p_gone_top * exp(-k / max(move_ticks, 1))`` of its displayed size. ``cost_bps`` is the
    expected adverse move ``p_gone_top * move_ticks`` expressed in bps of the price."""

    book_age_s: float
    order_rtt_s: float
    delay_s: float
    depletion_rate_hz: float
    volatility_ticks: float
    move_ticks: float
    p_gone_top: float
    cost_bps: float

    def keep_fraction(self, distance_ticks: int) -> float:
        return 1.0 - self.p_gone_top * math.exp(-distance_ticks / max(self.move_ticks, 1.0))


def latency_haircut(book_age_ns: int, order_rtt_ns: int, depletion_rate_hz: float,
                    volatility_ticks: float, price_ticks: float) -> LatencyEstimate:
    """Compute the :class:`LatencyEstimate` (``price_ticks``: reference price in common ticks)."""
    age_s = max(0, book_age_ns) / NS_PER_S
    rtt_s = max(0, order_rtt_ns) / NS_PER_S
    delay = age_s + rtt_s
    p_gone = 1.0 - math.exp(-depletion_rate_hz * delay)
    move = volatility_ticks * math.sqrt(delay)
    cost = p_gone * move / price_ticks * 1e4 if price_ticks > 0 else 0.0
    return LatencyEstimate(age_s, rtt_s, delay, depletion_rate_hz, volatility_ticks, move, p_gone, cost)


class CapacityProvider(Protocol):
    """What the router asks about money and pacing. The engine implements it over the account
    balances and ``venues.ratelimit``; ``None`` means unknown / unlimited.

    Optional: ``reducible_lots(venue, side) -> int | None``, the lots of a ``side`` order on a
    derivative venue that would only reduce an open position (they need no margin). A provider
    that has it lets the router close a position whose margin is locked."""

    def available_balance(self, venue: str, asset: str) -> Decimal | None:
        """Free balance of ``asset`` on ``venue``."""
        ...

    def order_headroom(self, venue: str) -> int | None:
        """How many new orders the venue's rate limiter would let through now (cancels excluded)."""
        ...


class UnlimitedCapacity:
    """No balance or pacing limits (research / what-if routing)."""

    def available_balance(self, venue: str, asset: str) -> Decimal | None:
        return None

    def order_headroom(self, venue: str) -> int | None:
        return None


class StaticCapacity:
    """Fixed balances per venue and asset, and optional fixed order headroom per venue."""

    def __init__(self, balances: Mapping[str, Mapping[str, Decimal]],
                 headroom: Mapping[str, int] | None = None) -> None:
        self.balances = {v: dict(b) for v, b in balances.items()}
        self.headroom = dict(headroom or {})

    def available_balance(self, venue: str, asset: str) -> Decimal | None:
        b = self.balances.get(venue)
        if b is None or not b:
            return None
        return b.get(asset, Decimal(0))

    def order_headroom(self, venue: str) -> int | None:
        return self.headroom.get(venue)
