"""Regression tests for engine bugs found in review (bundled data, simulated venues)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from test_engine_regressions import _TWO_PARENTS

from marketdata.errors import ConfigError, RiskRejected
from router.engine import TWAP, Engine, Iceberg, ParentOrder
from router.engine_config import load_engine_config_text
from venues.journal import Journal


def _journal(path: Path, kinds: list[str]) -> list[dict]:
    with Journal(path) as j:
        return [dict(r.payload, _ts=r.ts_ns) for r in j.read(kinds=kinds)]


def test_amend_up_lets_the_catch_up_child_out(tmp_path: Path) -> None:
    """A TWAP buying 0.1 BTC over 60 s is amended to 1 BTC after 20 s. The algo re-plans inside
    ``amend`` and sends a catch-up child sized for the new quantity at once; the engine must check
    that child against the new quantity, not refuse it (``parent_exposure``) against the old one."""
    jpath = tmp_path / "j.sqlite"
    with Engine.default(journal=jpath) as engine:
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.1",
                                      algo=TWAP(end="+60s", slices=4)))
        engine.run(until_ns=engine.dataset.start_ns + 20 * 10**9)
        assert h.status == "working" and Decimal(0) < h.filled < Decimal("0.1")
        h.amend(quantity="1")
        assert h.quantity == Decimal("1")
        h.wait()
    refused = _journal(jpath, ["risk_refused"])
    assert not [r for r in refused if r["rule"] == "parent_exposure"], refused
    assert h.status == "filled" and h.filled == Decimal("1")


def test_amend_refused_by_the_algo_leaves_the_parent_unchanged() -> None:
    """An amend below the filled quantity is refused (ConfigError) and changes nothing."""
    with Engine.default() as engine:
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.1",
                                      algo=TWAP(end="+60s", slices=4), limit_price="62500"))
        engine.run(until_ns=engine.dataset.start_ns + 20 * 10**9)
        assert h.filled > Decimal("0.00001")
        with pytest.raises(ConfigError):
            h.amend(quantity="0.00001", limit_price="62400")
        assert h.quantity == Decimal("0.1")
        assert h._run.limit_price == Decimal("62500")


def test_dust_trimmed_children_do_not_loosen_max_position() -> None:
    """max_position 0.001 BTC. Parent A buys 0.00015 BTC (15 lots, below two minimum orders): the
    TWAP keeps asking for 10-lot children that the dust rule returns unsent. Those children were
    never risk-checked, so they must not release pending position either; before the fix every
    one of them released 0.0001 BTC, and parent B (buy 0.004) was then let through up to 0.004 BTC,
    four times the limit."""
    cfg = load_engine_config_text('[risk.max_position]\n"BTC-USDT" = 0.001\n', file="risk.toml")
    with Engine(cfg) as engine:
        a = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.00015",
                                      algo=TWAP(end="+40s", slices=3)))
        engine.run(until_ns=engine.dataset.start_ns + 39 * 10**9)
        b = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.004",
                                      algo=TWAP(end="+60s", slices=4)))
        engine.run()
        assert a.is_terminal and b.is_terminal
        position = engine.risk.position("BTC-USDT")
        assert position == a.filled + b.filled
        assert position <= Decimal("0.001"), (a.filled, b.filled)
        assert b.reason and "filled" in b.reason


def test_risk_bookkeeping_returns_to_zero_after_trimmed_children() -> None:
    """A 0.00015 BTC TWAP (remainder below two minimum orders) runs to its
    end; when every parent is over, nothing is pending any more: the pending position the risk
    checker holds is exactly zero (each child released what it had been checked for)."""
    with Engine.default() as engine:
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.00015",
                                      algo=TWAP(end="+30s", slices=3)))
        engine.run()
        assert h.is_terminal
        assert engine.risk._pending_position["BTC-USDT"] == 0


def test_a_parent_paused_before_it_starts_sends_nothing_until_resumed(tmp_path: Path) -> None:
    """``pause()`` right after ``submit()``, before the replay has made the market two-sided (the
    parent is still pending): the parent must not start trading on its own when the market is
    ready. Before the fix the pause was silently ignored and the TWAP traded for 30 s. After
    ``resume()`` it starts and fills."""
    jpath = tmp_path / "j.sqlite"
    with Engine.default(journal=jpath) as engine:
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.05",
                                      algo=TWAP(end="+30s", slices=3)))
        assert h.status == "pending"
        h.pause()
        assert h.status == "paused"
        start = engine.dataset.start_ns
        engine.run(until_ns=start + 30 * 10**9)
        assert h.status == "paused" and h.filled == 0
        assert not _journal(jpath, ["order_command"])
        h.resume()
        assert h.status == "working"
        h.wait()
        assert h.status == "filled" and h.filled == Decimal("0.05")
        assert h.to_dict()["start_ns"] >= start + 30 * 10**9


def test_a_parent_paused_before_it_starts_can_be_cancelled() -> None:
    """A pending parent that was paused and is then cancelled ends at once, cancelled, with a reason."""
    with Engine.default() as engine:
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.05",
                                      algo=TWAP(end="+30s", slices=3)))
        h.pause()
        engine.run(until_ns=engine.dataset.start_ns + 5 * 10**9)
        h.cancel()
        assert h.status == "cancelled" and h.reason and "filled 0" in h.reason
        assert not engine._pending


def test_market_parent_submitted_before_the_first_mid_is_checked_at_start(tmp_path: Path) -> None:
    """max_parent_notional 100,000 USDT; a market (no limit) parent to buy 10 BTC (~618,000 USDT)
    is submitted before the replay began, so there is no mid yet to check it against at submit.
    It must be refused when it starts (risk_refused max_parent_notional, nothing sent, status
    rejected with that reason). Before the fix it started unchecked, every child was refused by
    the per-child rule, and it ended "end time reached with 10 unfilled" without the rule."""
    jpath = tmp_path / "j.sqlite"
    cfg = load_engine_config_text('[risk]\nmax_parent_notional = 100000\n', file="risk.toml")
    with Engine(cfg, journal=jpath) as engine:
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="10",
                                      algo=TWAP(end="+60s", slices=4)))
        assert engine.mid_price() is None and h.status == "pending"
        h.wait()
        summary = engine.summary()
    assert h.status == "rejected", (h.status, h.reason)
    assert h.reason and "parent notional" in h.reason
    assert "filled 0" in h.reason
    refused = _journal(jpath, ["risk_refused"])
    assert [r["rule"] for r in refused] == ["max_parent_notional"]
    assert not _journal(jpath, ["order_command"])
    assert summary["risk_refusals"] == 1
    assert [p["status"] for p in summary["parents"]] == ["rejected"]


def test_summary_counts_every_journaled_risk_refusal(tmp_path: Path) -> None:
    """The kill switch trips at 10 s; parent B's submit_at (60 s) comes after it and B is refused
    (journaled risk_refused, kill_switch). ``summary()["risk_refusals"]`` (``sorex run --json``)
    must count that refusal: before the fix it counted only per-child checks and said 0."""
    jpath = tmp_path / "j.sqlite"
    with Engine.from_toml_text(_TWO_PARENTS, journal=jpath) as engine:
        engine.run(until_ns=engine.dataset.start_ns + 10 * 10**9)
        engine.kill("test")
        engine.run()
        summary = engine.summary()
    refused = _journal(jpath, ["risk_refused"])
    assert refused and summary["risk_refusals"] == len(refused)


def test_a_python_parent_with_submit_at_waits_for_it() -> None:
    """``ParentOrder(..., submit_at="+60s")`` submitted from Python: it stays ``pending`` (nothing
    sent) until the replay reaches 60 s after the data start, then starts; ``submit_at`` used to
    be ignored outside TOML and the parent started at once."""
    with Engine.default() as engine:
        start = engine.dataset.start_ns
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.2",
                                      algo=TWAP(end="+30s", slices=3), submit_at="+60s"))
        engine.run(until_ns=start + 59 * 10**9)
        assert h.status == "pending" and h.children == [] and h.filled == 0
        h.wait()
        assert h.status == "filled" and h.filled == Decimal("0.2")
        assert h._run.start_ns is not None and h._run.start_ns >= start + 60 * 10**9


def test_a_scheduled_python_parent_can_be_cancelled_or_refused_before_it_starts() -> None:
    with Engine.default() as engine:
        start = engine.dataset.start_ns
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.2",
                                      algo=TWAP(end="+30s", slices=3), submit_at="+60s"))
        engine.run(until_ns=start + 10 * 10**9)
        h.cancel("changed my mind")
        engine.run()
        assert h.status == "cancelled" and h.children == []
        # a time after the end of the data: refused at submit, nothing registered
        before = len(engine.handles())
        with pytest.raises(ConfigError, match="after the data ends") as ei:
            engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.2",
                                      algo=TWAP(end="+30s"), submit_at="+3h"))
        assert ei.value.key == "submit_at" and len(engine.handles()) == before


def test_an_amend_that_raises_the_notional_past_max_parent_notional_is_refused(tmp_path: Path) -> None:
    """max_parent_notional 20,000 USDT; a 0.2 BTC TWAP at ~61,800 (12,360) is accepted; amending it
    to 1 BTC (~61,800) is refused like the same submit would be: RiskRejected, journaled
    risk_refused, nothing changed. An amend that lowers it is accepted."""
    cfg = load_engine_config_text("[risk]\nmax_parent_notional = 20000\n", file="risk.toml")
    jpath = tmp_path / "j.sqlite"
    with Engine(cfg, journal=jpath) as engine:
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.2",
                                      algo=TWAP(end="+60s", slices=4)))
        engine.run(until_ns=engine.dataset.start_ns + 15 * 10**9)
        with pytest.raises(RiskRejected, match="amended parent notional"):
            h.amend(quantity="1")
        assert h.quantity == Decimal("0.2")
        h.amend(quantity="0.15")
        h.wait()
    assert h.status == "filled" and h.filled == Decimal("0.15")
    refused = _journal(jpath, ["risk_refused"])
    assert [r["rule"] for r in refused] == ["max_parent_notional"] and refused[0]["amend"]["quantity"] == "1"


def test_an_iceberg_display_below_the_venues_minimum_ends_the_parent_at_start_not_the_run(tmp_path: Path) -> None:
    """An iceberg showing 0.00005 BTC: below the smallest order the venues accept at ~61,800
    (min notional 5 USDT on spot, 100 on USD-M -> 0.00009 BTC), which the engine only knows once
    the market is there. The parent ends ``rejected`` at its start with the reason, nothing sent,
    and the rest of the run goes on (the ConfigError used to escape from the market-data callback
    and abort the whole run)."""
    jpath = tmp_path / "j.sqlite"
    with Engine.default(journal=jpath) as engine:
        ice = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.01", limit_price="61000",
                                        algo=Iceberg(end="+60s", display="0.00005")))
        other = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.01",
                                          algo=TWAP(end="+30s", slices=2)))
        engine.run()
    assert ice.status == "rejected" and ice.reason is not None
    assert "display_min" in ice.reason and "min_child_size defaults to the smallest order" in ice.reason
    assert ice.children == []
    assert other.status == "filled"
    assert not [c for c in _journal(jpath, ["order_command"]) if c.get("parent_id") == ice.id]


def test_max_position_for_a_symbol_the_engine_does_not_route_is_refused() -> None:
    """``[risk.max_position] BTCUSDT = 1`` (the venue's spelling, not the unified BTC-USDT): the
    limit would never apply; it is a ConfigError naming the key and the symbol routed."""
    cfg = load_engine_config_text('[risk.max_position]\nBTCUSDT = 1\n', file="risk.toml")
    with pytest.raises(ConfigError) as ei:
        Engine(cfg)
    assert ei.value.key == "risk.max_position.BTCUSDT" and "BTC-USDT" in str(ei.value)
    assert ei.value.file == "risk.toml"


def test_submit_at_before_the_data_starts_is_refused() -> None:
    """An absolute submit_at years before the replayed data (a typo of the date) used to start the
    parent at once; it is a ConfigError on submit_at, nothing registered."""
    with Engine.default() as engine:
        with pytest.raises(ConfigError, match="before the data starts") as ei:
            engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="0.2", algo=TWAP(end="+30s"),
                                      submit_at="2020-01-01T00:00:00Z"))
        assert ei.value.key == "submit_at" and engine.handles() == []
