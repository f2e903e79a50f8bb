"""Review of two router health rules (router/routing.py, router/scoring.py):

1. Book age is measured on the router's own clock. A live book's ``ts_event`` is the venue's
   event time (Binance ``E``/``T``), on the venue's clock; only ``ts_init`` (the local receive
   time) is on ours. A venue clock behind ours must not make a freshly received book stale, and
   one ahead must not hide a book that was received long ago. In simulation the clock runs on
   exchange time and a replay's ``ts_init`` is the recording collector's clock (1.27 s behind
   ``E`` on the bundled Binance files), so ages stay ``now - ts_event`` there.
2. A half-open circuit breaker lets exactly one probe order through: other decisions (and the
   passive part of the same mixed decision) leave the venue out until the probe's outcome is
   known, and a probe that never gets an answer frees its slot after another cooldown.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from marketdata.book import L2Book
from marketdata.clock import LiveClock, SimClock
from marketdata.model import Instrument, InstrumentKind, Side, Symbol, VenueId
from router.config import load_config_text
from router.engine import Engine
from router.routing import Router, RouteRequest, RoutingDecision
from router.scoring import BreakerState, VenueHealth

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "venues"))

from binance_fake import FakeBinance
from binance_harness import make_instrument
from test_engine_live import ASKS, BIDS, _toml, _until

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
S = 1_000 * MS
SPOT = Instrument(VenueId("spot"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D("0.01"), D("0.00001"),
                  D("0.00001"), D("5"))
PERP = Instrument(VenueId("perp"), Symbol("BTC-USDT"), "BTCUSDT", "BTC", "USDT", D("0.1"), D("0.001"),
                  D("0.001"), D("100"), InstrumentKind.PERPETUAL)
INSTS = {"spot": SPOT, "perp": PERP}
HUGE_AGE = "max_book_age_ms = 1000000000\n"


def _config(extra: str = "", strategy: str = "lowest_cost") -> Any:
    return load_config_text(f"""
[routing]
strategy = "{strategy}"
{extra}
[venues.spot.fees]
maker_bps = 0.1
taker_bps = 1
[venues.perp.fees]
maker_bps = 0.5
taker_bps = 1
""")


def _books(ts_event: int, ts_init: int | None = None) -> dict[str, L2Book]:
    """spot: the best ask (61800.00 x 1) and the best bid for posting; perp: 61800.1 x 5 behind it,
    and the best bid to sell into (61795.0 x 5 against spot's 61790.00)."""
    out = {}
    for name, ask, bid in (("spot", "61800.00", "61790.00"), ("perp", "61800.1", "61795.0")):
        inst = INSTS[name]
        b = L2Book(name, "BTC-USDT")
        b.apply_snapshot([(inst.price_to_ticks(D(bid)), inst.qty_to_lots(D("5")))],
                         [(inst.price_to_ticks(D(ask)), inst.qty_to_lots(D("1" if name == "spot" else "5")))],
                         ts_event=ts_event, ts_init=ts_event if ts_init is None else ts_init)
        out[name] = b
    return out


def _buy(qty: str = "0.5", style: str = "take", urgency: float = 0.5) -> RouteRequest:
    return RouteRequest("BTC-USDT", Side.BUY, D(qty), None, style, urgency)  # type: ignore[arg-type]


def _venues(d: RoutingDecision) -> list[str]:
    return [a.venue for a in d.allocations]


# ============================================================================ 1. book age
def _live_router(books: dict[str, L2Book], extra: str = "max_book_age_ms = 2000\n") -> Router:
    cfg = _config(extra)
    return Router(cfg.routing, cfg.venues, INSTS, books, LiveClock())


def test_live_book_freshly_received_is_not_stale_when_the_venue_clock_is_behind() -> None:
    """The venue's clock runs 10 s behind ours: its event times are 10 s old the moment a diff
    arrives, yet the book was received just now and is fresh (and its haircut age is ~0)."""
    now = LiveClock().now_ns()
    books = _books(ts_event=now - 10 * S, ts_init=now)
    router = _live_router(books)
    d = router.route(_buy())
    spot = d.score("spot")
    assert spot.excluded_reason is None, spot.excluded_reason
    assert _venues(d) == ["spot"]
    assert 0 <= spot.factors["health"]["book_age_ms"] < 1_000
    assert 0 <= spot.factors["latency"]["book_age_ms"] < 1_000   # the latency haircut's age is local too
    assert router.book_age_from == "ts_init"    # chosen by the LiveClock


def test_live_book_received_long_ago_is_stale_even_when_the_venue_clock_is_ahead() -> None:
    """The venue's clock runs 10 s ahead: ``now - ts_event`` is negative, which used to make
    a book last received 10 s ago look fresh; its local age is 10 s > max_book_age_ms."""
    now = LiveClock().now_ns()
    books = _books(ts_event=now + 10 * S, ts_init=now - 10 * S)
    books["perp"].ts_init = now          # perp received just now: still routable
    d = _live_router(books).route(_buy())
    reason = d.score("spot").excluded_reason
    assert reason is not None and reason.startswith("book stale: last update"), reason
    assert "max_book_age_ms 2000" in reason
    assert _venues(d) == ["perp"]


def test_receive_time_ages_are_exact_and_feed_staleness_and_the_haircut() -> None:
    """``book_age_from="ts_init"`` on a simulated clock: the ages are exactly now - ts_init, for
    the stale check and for the latency factor, whatever ts_event says."""
    clock = SimClock(T0)
    books = _books(ts_event=T0 - 7 * S, ts_init=T0 - 1500 * MS)
    books["perp"].ts_init = T0 - 2500 * MS
    cfg = _config("max_book_age_ms = 2000\n")
    router = Router(cfg.routing, cfg.venues, INSTS, books, clock, book_age_from="ts_init")
    d = router.route(_buy())
    spot = d.score("spot")
    assert spot.excluded_reason is None
    assert spot.factors["health"]["book_age_ms"] == 1500.0
    assert spot.factors["latency"]["book_age_ms"] == pytest.approx(1500.0)
    assert d.score("perp").excluded_reason == "book stale: last update 2500 ms ago > max_book_age_ms 2000"
    with pytest.raises(ValueError, match="book_age_from"):
        Router(cfg.routing, cfg.venues, INSTS, books, clock, book_age_from="local")  # type: ignore[arg-type]


def test_receive_time_drives_the_activity_model_too() -> None:
    """``on_book`` stamps the activity model with the same clock: a book whose event times are
    10 s behind (venue skew) decays exactly like one without skew (a 10 s gap would have decayed
    the depletion rate by exp(-10 s / tau))."""
    def rate(skew_ns: int) -> float:
        clock = SimClock(T0)
        books = _books(ts_event=T0 - skew_ns, ts_init=T0)
        cfg = _config(HUGE_AGE, strategy="smart")
        router = Router(cfg.routing, cfg.venues, INSTS, books, clock, book_age_from="ts_init")
        spot = books["spot"]
        ask = spot.best_ask_ticks
        assert ask is not None
        for k in range(5):
            clock.advance_to(T0 + (k + 1) * 10 * MS)
            spot.update_ask(ask, spot.ask_lots_at(ask) - 1)   # depletions of the ask
            spot.ts_init = clock.now_ns()
            spot.ts_event = clock.now_ns() - skew_ns
            router.on_book("spot")
        rate_hz: float = router.route(_buy()).score("spot").factors["latency"]["depletion_rate_hz"]
        return rate_hz

    assert rate(10 * S) == rate(0) > 0


def test_simulation_keeps_exchange_time_ages() -> None:
    """Simulated clock (default): the clock is exchange time and a replay's ts_init is the
    collector's clock (here 1.27 s behind, as on the bundled data): ages stay now - ts_event,
    so replays and their digests are unchanged."""
    books = _books(ts_event=T0, ts_init=T0 - 1270 * MS)
    cfg = _config("max_book_age_ms = 1000\n")
    router = Router(cfg.routing, cfg.venues, INSTS, books, SimClock(T0 + 5 * MS))
    d = router.route(_buy())
    assert d.score("spot").excluded_reason is None
    assert d.score("spot").factors["health"]["book_age_ms"] == 5.0
    assert d.score("spot").factors["latency"]["book_age_ms"] == pytest.approx(5.0)


# ------------------------------------------------------------------ live engine, loopback fake
V = "binance-spot"


async def _shadow_engine(fake: FakeBinance, max_age_ms: int) -> Engine:
    text = _toml(fake, mode="shadow").replace("max_book_age_ms = 60000", f"max_book_age_ms = {max_age_ms}")
    assert f"max_book_age_ms = {max_age_ms}" in text
    engine = Engine.from_toml_text(text)
    await engine.start_live()
    book = engine.books[V]
    await _until(lambda: book.best_bid_ticks is not None and not book.needs_resync)
    return engine


def _live_route(engine: Engine) -> RoutingDecision:
    return engine.router.route(RouteRequest("BTC-USDT", Side.BUY, D("0.1"), D("60010"), "take"))


async def test_live_engine_with_a_venue_clock_behind_routes_a_fresh_diff(fake: FakeBinance) -> None:
    """Binance's clock 5 s behind ours: a depth diff just received carries E 5 s in our past.
    The live router must not call that book stale (max_book_age_ms 2000)."""
    async with asyncio.timeout(15):
        engine = await _shadow_engine(fake, 2000)
        book = engine.books[V]
        fake.time_skew_ms = -5000
        await fake.publish_book("BTCUSDT", BIDS, [("60000.2", "5.000"), *ASKS[1:]])
        await _until(lambda: book.best_ask_ticks == make_instrument().price_to_ticks("60000.2"))
        assert book.ts_init - book.ts_event > 4 * S    # the diff's venue time is on the skewed clock
        d = _live_route(engine)
        await engine.stop_live()
    engine.close()
    assert d.score(V).excluded_reason is None, d.score(V).excluded_reason
    assert d.allocations and d.allocations[0].venue == V


async def test_live_engine_with_a_venue_clock_ahead_still_sees_a_quiet_book_go_stale(fake: FakeBinance) -> None:
    """Binance's clock 5 s ahead: the last diff's E is in our future. Once nothing has been
    received for longer than max_book_age_ms (300 ms) the book is stale."""
    async with asyncio.timeout(15):
        engine = await _shadow_engine(fake, 300)
        book = engine.books[V]
        fake.time_skew_ms = 5000
        await fake.publish_book("BTCUSDT", BIDS, [("60000.2", "5.000"), *ASKS[1:]])
        await _until(lambda: book.best_ask_ticks == make_instrument().price_to_ticks("60000.2"))
        await asyncio.sleep(0.6)
        d = _live_route(engine)
        await engine.stop_live()
    engine.close()
    reason = d.score(V).excluded_reason
    assert reason is not None and reason.startswith("book stale"), reason
    assert not d.allocations


# ============================================================================ 2. half-open probes
BREAKER = "[routing.breaker]\nfailures_to_open = 1\ncooldown_ms = 1000\n"


def _breaker_router(strategy: str = "lowest_cost") -> tuple[Router, SimClock]:
    clock = SimClock(T0)
    cfg = _config(HUGE_AGE + BREAKER, strategy)
    return Router(cfg.routing, cfg.venues, INSTS, _books(T0), clock), clock


def _half_open(router: Router, clock: SimClock) -> None:
    router.record_reject("spot")
    d = router.route(_buy())
    assert d.score("spot").excluded_reason == "circuit breaker open (1 consecutive failures)"
    clock.advance_to(clock.now_ns() + 1000 * MS)
    assert router.health("spot").state(clock.now_ns()) is BreakerState.HALF_OPEN


def test_half_open_breaker_lets_one_probe_through_until_its_outcome() -> None:
    router, clock = _breaker_router()
    _half_open(router, clock)
    probe = router.route(_buy())
    assert _venues(probe) == ["spot"]            # the probe: spot is the best price
    assert probe.score("spot").factors["health"]["breaker"] == "half_open"
    for _ in range(3):                           # no answer yet: nothing else goes to spot
        clock.advance_to(clock.now_ns() + 100 * MS)
        d = router.route(_buy())
        assert d.score("spot").excluded_reason == "circuit breaker half-open: probe in flight"
        assert _venues(d) == ["perp"]
    assert "circuit breaker half-open: this order is the probe" in probe.score("spot").factors["notes"]
    router.record_ack("spot")                    # the probe was acknowledged: closed
    assert router.health("spot").state(clock.now_ns()) is BreakerState.CLOSED
    for _ in range(2):
        d = router.route(_buy())
        assert _venues(d) == ["spot"] and d.score("spot").factors["health"]["breaker"] == "closed"


@pytest.mark.parametrize("failure", ["reject", "timeout"])
def test_a_failed_probe_reopens_the_breaker_for_another_cooldown(failure: str) -> None:
    router, clock = _breaker_router()
    _half_open(router, clock)
    assert _venues(router.route(_buy())) == ["spot"]
    clock.advance_to(clock.now_ns() + 200 * MS)
    (router.record_reject if failure == "reject" else router.record_timeout)("spot")
    d = router.route(_buy())
    assert d.score("spot").excluded_reason == "circuit breaker open (2 consecutive failures)"
    clock.advance_to(clock.now_ns() + 999 * MS)
    assert router.route(_buy()).score("spot").excluded_reason == "circuit breaker open (2 consecutive failures)"
    clock.advance_to(clock.now_ns() + 1 * MS)    # a new cooldown later: one new probe
    assert _venues(router.route(_buy())) == ["spot"]
    assert router.route(_buy()).score("spot").excluded_reason == "circuit breaker half-open: probe in flight"


def test_a_mixed_decision_sends_a_half_open_venue_one_order_only() -> None:
    """Take part and post part would both go to spot (best ask, best posting score): while its
    breaker is half-open the take is the probe and the post goes elsewhere."""
    router, clock = _breaker_router()
    closed = router.route(_buy("1", "mixed", 0.5))
    assert _venues(closed) == ["spot", "spot"]   # closed breaker: both parts on spot
    _half_open(router, clock)
    d = router.route(_buy("1", "mixed", 0.5))
    assert _venues(d).count("spot") == 1, d.allocations
    assert [(a.venue, a.style) for a in d.allocations] == [("spot", "take"), ("perp", "post")]
    assert d.residual_lots == 0
    assert router.route(_buy("1", "mixed", 0.5)).score("spot").excluded_reason == \
        "circuit breaker half-open: probe in flight"


def test_a_half_open_venue_not_used_by_a_decision_sends_no_probe() -> None:
    router, clock = _breaker_router()
    _half_open(router, clock)
    sell = router.route(RouteRequest("BTC-USDT", Side.SELL, D("0.5"), None, "take"))
    assert _venues(sell) == ["perp"]             # perp's bid is better: spot got nothing
    assert sell.score("spot").excluded_reason is None
    assert _venues(router.route(_buy())) == ["spot"]   # so the next decision may still probe: the probe
    assert router.route(_buy()).score("spot").excluded_reason == "circuit breaker half-open: probe in flight"


def test_an_unanswered_probe_frees_its_slot_after_another_cooldown() -> None:
    """The probe's order is lost (or the decision was never sent): the venue is not wedged, it is
    probed again one cooldown after the probe."""
    router, clock = _breaker_router()
    _half_open(router, clock)
    t_probe = clock.now_ns()
    assert _venues(router.route(_buy())) == ["spot"]
    clock.advance_to(t_probe + 999 * MS)
    assert router.route(_buy()).score("spot").excluded_reason == "circuit breaker half-open: probe in flight"
    clock.advance_to(t_probe + 1000 * MS)
    assert _venues(router.route(_buy())) == ["spot"]   # the second probe
    assert router.route(_buy()).score("spot").excluded_reason == "circuit breaker half-open: probe in flight"


def test_venue_health_probe_slot() -> None:
    h = VenueHealth(failures_to_open=1, cooldown_ns=10 * S)
    h.record_reject(0)
    assert h.state(10 * S) is BreakerState.HALF_OPEN and not h.probe_in_flight(10 * S)
    h.start_probe(10 * S)
    assert h.probe_in_flight(10 * S) and h.probe_in_flight(20 * S - 1) and not h.probe_in_flight(20 * S)
    h.record_timeout(12 * S)                     # the probe failed: open again, slot freed
    assert h.state(12 * S) is BreakerState.OPEN and h.probe_sent_ns is None
    assert h.state(22 * S) is BreakerState.HALF_OPEN and not h.probe_in_flight(22 * S)
    h.start_probe(22 * S)
    h.record_success(23 * S)
    assert h.state(23 * S) is BreakerState.CLOSED and not h.probe_in_flight(23 * S)
