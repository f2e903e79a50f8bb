"""The decision types stay what callers used: read-only, comparable, printable, picklable, and
constructible from the public constructors, also now that the router builds their Decimal and
explain fields lazily."""

from __future__ import annotations

import copy
import pickle
from decimal import Decimal as D

import pytest

from marketdata.model import OrderType, Side, TimeInForce
from router.routing import Allocation, RouteRequest, RoutingDecision, VenueScore
from tests.router.test_router_state_changes import INSTS


def test_allocation_lazy_and_eager_forms_are_the_same_value() -> None:
    inst = INSTS["a"]
    lazy = Allocation("a", 1234, 6_180_012, "take", OrderType.LIMIT, TimeInForce.IOC, instrument=inst)
    eager = Allocation("a", 1234, 6_180_012, "take", OrderType.LIMIT, TimeInForce.IOC, D("0.01234"), D("61800.12"))
    assert lazy.quantity == D("0.01234") and lazy.price == D("61800.12")
    assert lazy == eager and hash(lazy) == hash(eager) and repr(lazy) == repr(eager)
    assert repr(eager) == ("Allocation(venue='a', lots=1234, price_ticks=6180012, style='take', "
                           "order_type=<OrderType.LIMIT: 'limit'>, time_in_force=<TimeInForce.IOC: 'IOC'>, "
                           "quantity=Decimal('0.01234'), price=Decimal('61800.12'))")
    assert lazy.to_dict() == eager.to_dict()
    for clone in (copy.deepcopy(lazy), pickle.loads(pickle.dumps(lazy))):
        assert clone == eager
    with pytest.raises(AttributeError):
        lazy.lots = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        Allocation("a", 1, 2, "take", OrderType.LIMIT, TimeInForce.IOC)  # neither Decimals nor instrument


def test_routing_decision_public_constructor_and_read_only_fields() -> None:
    req = RouteRequest("BTC-USDT", Side.BUY, D("1"))
    alloc = Allocation("a", 100_000, 6_180_000, "take", OrderType.LIMIT, TimeInForce.IOC, D("1"), D("61800"))
    d = RoutingDecision("RD-000007", 5, req, "smart", [VenueScore("a", {"x": 1})], [alloc], 0, None,
                        explanation="why")
    assert (d.decision_id, d.ts_ns, d.strategy, d.residual_lots, d.residual_reason, d.residual_quantity,
            d.explanation) == ("RD-000007", 5, "smart", 0, None, D(0), "why")
    assert d.allocated_quantity == D("1") and d.score("a").factors == {"x": 1}
    assert d == copy.deepcopy(d) == pickle.loads(pickle.dumps(d))
    assert d.to_dict()["allocations"] == [alloc.to_dict()]
    assert repr(d).startswith("RoutingDecision(decision_id='RD-000007', ts_ns=5, ")
    with pytest.raises(AttributeError):
        d.explanation = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(d)
