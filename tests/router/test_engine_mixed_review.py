"""Review of how the engine and the TCA handle a ``mixed`` child (the router splits it into IOC
takes and resting posts, possibly on several venues), on the bundled data with
examples/twap_mixed.toml (urgency split)."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from algos.base import ChildRecord
from marketdata.model import OrderStatus
from router.engine import Engine
from tca.loaders import load_journal

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "twap_mixed.toml"
FIRST_CHILD_NS = 1723161285342000000   # the first slice of twap_mixed.toml (submit_at = "+30s")


def _text(extra: str = "") -> str:
    text = EXAMPLE.read_text().replace('mixed_split = "cont_kukanov"', 'mixed_split = "urgency"')
    assert 'mixed_split = "urgency"' in text
    return text + extra


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, dict[str, Any], Path]:
    journal = tmp_path_factory.mktemp("mixed") / "j.sqlite"
    engine = Engine.from_toml_text(_text(), journal=journal)
    engine.run()
    summary = engine.summary()
    engine.close()
    return engine, summary, journal


def _rows(journal: Path, kind: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(journal)
    try:
        return [json.loads(p) for (p,) in con.execute("select payload from events where kind = ? order by seq",
                                                      (kind,))]
    finally:
        con.close()


def test_tca_children_of_a_mixed_run_carry_their_final_status(mixed_run: tuple[Engine, dict[str, Any], Path]
                                                               ) -> None:
    """The engine journals the fill that completes an order as a ``fill`` row (event_kind filled),
    never as an order_event: the TCA left every filled child (take and post) without a status."""
    _, _, journal = mixed_run
    [ex] = load_journal(journal)
    assert ex.children
    for c in ex.children:
        if c.filled == c.quantity:
            assert c.final_status == "filled", (c.client_order_id, c.time_in_force, c.final_status)
        else:
            assert c.final_status in ("canceled", "expired"), (c.client_order_id, c.final_status)


def test_mixed_fills_link_to_their_decision_with_the_right_liquidity(
        mixed_run: tuple[Engine, dict[str, Any], Path]) -> None:
    engine, _, journal = mixed_run
    [run] = engine._runs.values()
    [ex] = load_journal(journal)
    decisions = {d.decision_id: d.payload for d in ex.decisions}
    kids = {c.client_order_id: c for c in ex.children}
    # one decision per algo child, and every venue order of the child carries its id
    assert len(decisions) == len(run.groups)
    for g in run.groups.values():
        assert g.request.style == "mixed"
        assert g.decision_id in decisions
        styles = {vc.style for vc in g.orders}
        assert styles <= {"take", "post"} and "post" in styles
        assert {kids[vc.cid].decision_id for vc in g.orders} == {g.decision_id}
        d = decisions[g.decision_id]
        assert Decimal(d["request"]["quantity"]) * 100_000 == g.request.lots
        assert sorted((a["venue"], a["style"]) for a in d["allocations"]) == sorted(
            (vc.venue, vc.style) for vc in g.orders)
    # takes are IOC and fill as taker, posts rest (post-only) and fill as maker
    for f in ex.fills:
        c = kids[f.client_order_id or ""]
        want = "taker" if c.time_in_force == "IOC" else "maker"
        assert c.time_in_force in ("IOC", "POST_ONLY")
        assert f.liquidity == want, (f.client_order_id, c.time_in_force, f.liquidity)
    # the per-venue figures add up to the parent's, on both sides of the run
    total = sum((f.quantity for f in ex.fills), Decimal(0))
    assert total == run.filled_quantity == Decimal(3)
    for v, q in run.by_venue.items():
        assert sum((f.quantity for f in ex.fills if f.venue == v), Decimal(0)) == q


def test_json_summary_counts_venue_orders_and_child_requests_of_mixed_children(
        mixed_run: tuple[Engine, dict[str, Any], Path]) -> None:
    _, summary, journal = mixed_run
    [p] = summary["parents"]
    submits = [c for c in _rows(journal, "order_command") if c["action"] == "submit"]
    decisions = _rows(journal, "routing_decision")
    assert p["status"] == "filled"
    assert p["children"] == len(submits) > p["child_requests"] == len(decisions)
    assert sum(Decimal(q) for q in p["venues"].values()) == Decimal(p["filled"]) == 3
    fills_by_venue: dict[str, Decimal] = {}
    for f in _rows(journal, "fill"):
        fills_by_venue[f["venue"]] = fills_by_venue.get(f["venue"], Decimal(0)) + Decimal(f["quantity"])
    assert {v: Decimal(q) for v, q in p["venues"].items()} == fills_by_venue


def test_a_mixed_child_is_done_only_when_its_posts_are_and_a_cancel_reaches_every_venue_order() -> None:
    """The IOC part fills at once and the posts rest: the child stays open (no on_child_done) with
    the take's lots filled; cancelling it cancels every post, on every venue, and the algo gets one
    on_child_done (CANCELED) with exactly the filled lots."""
    engine = Engine.from_toml_text(_text())
    engine.run(until_ns=FIRST_CHILD_NS + 30_000_000)
    [run] = engine._runs.values()
    g = run.groups[f"{run.id}-c1"]
    takes = [vc for vc in g.orders if vc.style == "take"]
    posts = [vc for vc in g.orders if vc.style == "post"]
    assert takes and all(vc.done for vc in takes)
    assert posts and not any(vc.done for vc in posts) and len({vc.venue for vc in posts}) == 2
    assert not g.done and g.filled > 0
    assert run.algo is not None
    rec: ChildRecord = run.algo._ledger.children[g.child_id]
    assert not rec.done and rec.filled_lots == g.filled
    done: list[tuple[str, OrderStatus]] = []
    orig = run.algo.on_child_done

    def spy(child_id: str, status: OrderStatus) -> None:
        done.append((child_id, status))
        orig(child_id, status)

    run.algo.on_child_done = spy   # type: ignore[method-assign]
    run.cancel_child(g.child_id)
    engine.run(until_ns=FIRST_CHILD_NS + 2_000_000_000)
    assert g.done and all(vc.done for vc in g.orders)
    assert all(engine.om.order(vc.cid).status is OrderStatus.CANCELED for vc in posts
               if not engine.om.order(vc.cid).executed_lots)
    assert [s for c, s in done if c == g.child_id] == [OrderStatus.CANCELED]
    assert rec.done and rec.filled_lots == g.filled
    assert g.filled == sum(engine.om.order(vc.cid).executed_lots * engine._lf[vc.venue] for vc in g.orders)
    engine.close()


def test_max_order_notional_applies_to_the_whole_mixed_child(tmp_path: Path) -> None:
    """Each slice is ~0.375 BTC (~23,000 USDT): a limit of 15,000 is above its take part (~7,000)
    and each post, yet below the child: every mixed child is refused whole, nothing is sent."""
    journal = tmp_path / "j.sqlite"
    engine = Engine.from_toml_text(_text("\n[risk]\nmax_order_notional = 15000\n"), journal=journal)
    engine.run(until_ns=FIRST_CHILD_NS + 20_000_000_000)
    engine.close()
    refused = _rows(journal, "risk_refused")
    assert refused and {r["rule"] for r in refused} == {"max_order_notional"}
    assert {r["order"]["style"] for r in refused} == {"mixed"}
    assert not [c for c in _rows(journal, "order_command") if c["action"] == "submit"]
