"""The journal payload (``RoutingDecision.to_dict()``) is pinned across the latency work.

``router_golden_payloads.json`` holds the SHA-256 of every scenario's payload as produced by the
router before the routing-latency optimisation (see ``router_golden_scenarios``); the optimised
router must reproduce each one byte for byte (values, key order, float formatting), including
payloads rendered after the router's books and learned state moved on."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

from marketdata.model import Side
from router.routing import RouteRequest
from tests.router.router_golden_scenarios import _setup_bench, digest, payloads

GOLDEN = Path(__file__).with_name("router_golden_payloads.json")


def test_payloads_identical_to_the_pinned_ones() -> None:
    expected: dict[str, str] = json.loads(GOLDEN.read_text())
    got = payloads()
    assert list(got) == list(expected)
    wrong = [name for name, p in got.items() if digest(p) != expected[name]]
    assert not wrong, (f"{len(wrong)} of {len(got)} payloads differ, first {wrong[0]}: "
                       f"{json.dumps(got[wrong[0]], indent=1)[:3000]}")


def test_payload_is_stable_across_repeated_to_dict_and_factor_reads() -> None:
    router, books = _setup_bench()
    from decimal import Decimal as D

    d = router.route(RouteRequest("BTC-USDT", Side.BUY, D("5"), None, "take"))
    first = d.to_dict()
    # reading the factors (as `sorex route` does) and the books moving on change nothing
    assert d.venues[0].factors["price"]["taker_fee_bps"] == 1.0
    for book in books.values():
        ba = book.best_ask_ticks
        assert ba is not None
        book.update_ask(ba, 0)
    router.record_reject("v0")
    router.record_outcome("v1", "take", 10, 1)
    assert d.to_dict() == first
    assert digest(d.to_dict()) == digest(first)
    # copies and pickles of a decision carry the same payload (factors become a plain dict)
    d2 = router.route(RouteRequest("BTC-USDT", Side.SELL, D("2"), None, "mixed"))
    for clone in (copy.deepcopy(d2), pickle.loads(pickle.dumps(d2))):
        assert digest(clone.to_dict()) == digest(d2.to_dict())
        assert isinstance(clone.venues[0].factors, dict)
