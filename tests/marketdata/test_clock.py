from __future__ import annotations

import asyncio

import pytest

from marketdata.clock import LiveClock, SimClock
from marketdata.errors import InvariantError


def test_sim_clock_fires_in_time_order_and_sets_now() -> None:
    clock = SimClock(1_000)
    seen: list[tuple[str, int, int]] = []
    clock.set_alert(5_000, lambda t: seen.append(("b", t, clock.now_ns())))
    clock.set_alert(3_000, lambda t: seen.append(("a", t, clock.now_ns())))
    clock.set_alert(5_000, lambda t: seen.append(("c", t, clock.now_ns())))
    assert clock.next_due_ns() == 3_000
    assert clock.advance_to(10_000) == 3
    assert seen == [("a", 3_000, 3_000), ("b", 5_000, 5_000), ("c", 5_000, 5_000)]
    assert clock.now_ns() == 10_000


def test_sim_clock_refuses_to_go_backwards() -> None:
    clock = SimClock(100)
    with pytest.raises(InvariantError, match="backwards"):
        clock.advance_to(99)


def test_sim_timer_repeats_until_stop_and_cancel() -> None:
    clock = SimClock(0)
    fired: list[int] = []
    h = clock.set_timer(10, fired.append, stop_ns=35)
    clock.advance_to(100)
    assert fired == [10, 20, 30]
    fired.clear()
    h2 = clock.set_timer(10, fired.append)
    clock.advance_to(125)
    h2.cancel()
    clock.advance_to(200)
    assert fired == [110, 120]
    assert h.cancelled is False


def test_alert_set_from_callback_in_same_advance() -> None:
    clock = SimClock(0)
    seen: list[int] = []

    def first(t: int) -> None:
        seen.append(t)
        clock.set_alert(t + 5, seen.append)

    clock.set_alert(10, first)
    clock.advance_to(20)
    assert seen == [10, 15]


def test_run_until_idle_jumps() -> None:
    clock = SimClock(0)
    seen: list[int] = []
    clock.set_alert(10**12, seen.append)
    clock.run_until_idle()
    assert seen == [10**12] and clock.now_ns() == 10**12


def test_live_clock_alert_runs_on_loop() -> None:
    async def main() -> list[int]:
        clock = LiveClock()
        got: list[int] = []
        at = clock.now_ns() + 2_000_000
        clock.set_alert(at, got.append)
        h = clock.set_timer(1_000_000, got.append, stop_ns=at + 10**9)
        await asyncio.sleep(0.02)
        h.cancel()
        assert got[0] in (at, got[0])
        return got

    got = asyncio.run(main())
    assert len(got) >= 2


def test_set_alert_seq_may_reuse_a_cancelled_entrys_tie_break() -> None:
    # the simulation driver hands a feed delivery back with the same (due, seq) after cancelling
    # its earlier entry (run(until_ns=...) called repeatedly); the heap then holds two entries
    # with equal keys and used to compare the AlertHandles: TypeError
    clock = SimClock(start_ns=0)
    fired: list[str] = []
    seq = clock.reserve_seq()
    old = clock.set_alert_seq(100, seq, lambda _ts: fired.append("old"))
    old.cancel()
    clock.set_alert_seq(100, seq, lambda _ts: fired.append("new"))
    clock.set_alert(100, lambda _ts: fired.append("later"))
    assert clock.advance_to(200) == 2
    assert fired == ["new", "later"]
