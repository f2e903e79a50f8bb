"""Review of the engine's core paths in simulation (child -> venue orders -> events -> parent
totals). Each test failed before its fix."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketdata.errors import ConfigError
from router.engine import TWAP, Engine, ParentOrder

_SLOW_ENTRY = """
[engine]
seed = 3
[simulation.binance-spot]
order_entry_latency_ms = 200
[simulation.binance-usdm]
order_entry_latency_ms = 200
"""


def test_an_amend_below_the_orders_in_flight_is_refused_not_overfilled() -> None:
    """Failed before. A 1 BTC TWAP (one slice, urgency 1) sends its take; while it is in flight
    (200 ms order entry) the parent is amended to 0.001 BTC. The amend was accepted, the in-flight
    IOC executed anyway and the parent ended ``filled`` with 1 BTC of a 0.001 quantity (overfilled,
    status and totals wrong). Now such an amend is refused (ConfigError naming the floor: filled +
    in flight + unknown) and changes nothing; the parent fills its 1 BTC."""
    with Engine.from_toml_text(_SLOW_ENTRY) as engine:
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="1",
                                      algo=TWAP(end="+60s", slices=1, urgency=1.0)))
        t = engine.dataset.start_ns
        while True:
            t += 1_000_000
            engine.run(until_ns=t)
            _f, _w, in_flight, _u = engine._accounting(h._run)
            if in_flight:
                break
        assert h.filled == 0
        with pytest.raises(ConfigError, match="on its way to the venues"):
            h.amend(quantity="0.001")
        assert h.quantity == Decimal("1")
        h.wait()
        assert h.filled <= h.quantity
        assert h.status == "filled" and h.filled == Decimal("1")


class _SendsThenFails(TWAP):
    """A TWAP whose algo posts one child in on_start and then raises (as an algo whose model
    estimation fails after it started working)."""

    def _make(self, cp: object, kw: dict[str, object]) -> object:
        from algos.twap import TwapAlgo

        class Algo(TwapAlgo):
            def _begin(self) -> None:
                self._send(self.parent_lots // 2, style="post", reason="slice")
                raise ConfigError("model input cannot be estimated", key="sigma")

        return Algo(cp, **kw)  # type: ignore[arg-type]


def test_children_sent_before_an_algo_failed_to_start_are_cancelled() -> None:
    """Failed before (flagged by the engine core review): an algo that raised in ``on_start``
    after sending a child left the parent ``rejected`` but the child's order resting at the venue,
    so the parent stayed open until the data ended. The child is now cancelled and the parent
    ends rejected at once, nothing left working."""
    with Engine.from_toml_text("[engine]\nseed = 3\n") as engine:
        h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="1", limit_price="50000",
                                      algo=_SendsThenFails(end="+2m", slices=4)))   # the post rests
        engine.run()
        assert h.filled == 0 and len(h.children) == 1
        assert h.status == "rejected" and "could not start" in (h.reason or ""), (h.status, h.reason)
        assert not engine.om.open_orders()
        assert not engine.stats.data_ended
