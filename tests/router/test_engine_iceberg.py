"""Native icebergs through the engine: the iceberg algo's display child goes to the venues that take
a display quantity (simulated binance-spot by default, as Binance spot has ``icebergQty``; USD-M
has none), as one venue order with that display; the journal keeps it, a restore rebuilds it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from binance_fake import FakeBinance
from test_engine_live import _toml, _until

from marketdata.clock import SimClock
from router.engine import Engine, Iceberg, ParentOrder
from venues.journal import Journal
from venues.order_manager import OrderManager

ICEBERG = """
[engine]
seed = 7
{extra}
[[parents]]
id = "ice"
symbol = "BTC-USDT"
side = "buy"
quantity = "2"
limit_price = "61900"
algo = "iceberg"
submit_at = "+10s"
[parents.params]
end = "+5m"
display_min = "0.2"
display_max = "0.3"
{params}
"""


def _submits(jpath: Path) -> list[dict]:
    with Journal(jpath) as j:
        return [dict(r.payload) for r in j.read(kinds=["order_command"]) if r.payload["action"] == "submit"]


def _run(tmp_path: Path, extra: str = "", params: str = "") -> tuple[Engine, Path]:
    jpath = tmp_path / "j.sqlite"
    engine = Engine.from_toml_text(ICEBERG.format(extra=extra, params=params), file="ice.toml", journal=jpath)
    engine.run()
    engine.close()
    return engine, jpath


def test_native_iceberg_on_the_default_venues(tmp_path: Path) -> None:
    engine, jpath = _run(tmp_path)
    (h,) = engine.handles()
    assert h.status == "filled" and h.filled == Decimal("2"), h.reason
    subs = _submits(jpath)
    natives = [s for s in subs if s.get("display") is not None]
    assert natives, subs
    for s in natives:
        # one venue order per child on the venue with icebergs, showing 0.2-0.3 of a larger quantity
        assert s["venue"] == "binance-spot"
        assert Decimal("0.2") <= Decimal(s["display"]) <= Decimal("0.3") < Decimal(s["quantity"])
        assert Decimal(s["price"]) <= Decimal("61900")
    # far fewer orders than the synthetic iceberg's one per display (2 / 0.3 -> at least 7)
    assert len(subs) < 7, len(subs)
    # a restore from the journal rebuilds the orders with their display
    with Journal(jpath) as j:
        om = OrderManager.restore(j, SimClock(start_ns=0), list(engine.instruments.values()), run_id=engine.run_id)
        assert not om.errors
        restored = {o.order.client_order_id: o.order.display_lots for o in om.orders()}
    for s in natives:
        inst = engine.instruments[s["venue"]]
        assert restored[s["client_order_id"]] == inst.qty_to_lots(s["display"])


@pytest.mark.parametrize(("extra", "params"), [
    ("[simulation.binance-spot]\nnative_iceberg = false", ""),    # no venue takes a display
    ("", "native = false"),                                      # the algo asked for a synthetic one
])
def test_synthetic_iceberg_when_native_is_off(tmp_path: Path, extra: str, params: str) -> None:
    engine, jpath = _run(tmp_path, extra, params)
    (h,) = engine.handles()
    assert h.status == "filled" and h.filled == Decimal("2"), h.reason
    subs = _submits(jpath)
    assert all(s.get("display") is None for s in subs)
    assert all(Decimal(s["quantity"]) <= Decimal("0.3") for s in subs)   # never shows more than display_max
    assert len(subs) >= 7


def test_native_iceberg_asked_where_no_venue_has_one_is_refused(tmp_path: Path) -> None:
    engine, _ = _run(tmp_path, "[simulation.binance-spot]\nnative_iceberg = false", "native = true")
    (h,) = engine.handles()
    assert h.status == "rejected" and h.filled == 0
    assert h.reason is not None and "native iceberg requested" in h.reason


async def test_live_native_iceberg_sends_iceberg_qty(env: None, fake: FakeBinance) -> None:
    """Live on the loopback fake Binance: the adapter takes icebergs, so the iceberg's remainder
    leaves as one LIMIT_MAKER order with ``icebergQty`` = the display, inside the signed query."""
    engine = Engine.from_toml_text(_toml(fake))
    h = engine.submit(ParentOrder(symbol="BTC-USDT", side="buy", quantity="1", limit_price="59990",
                                  algo=Iceberg(end="+60s", display="0.1")))
    async with asyncio.timeout(15):
        await engine.start_live()
        await _until(lambda: any(fo.status == "NEW" for fo in fake.orders.values()))
        [order] = [fo.view() for fo in fake.orders.values()]
        assert (order["origQty"], order["icebergQty"]) == ("1.00000000", "0.10000000"), order
        engine.kill("test done")
        await _until(lambda: h.is_terminal)
        await engine.stop_live()
    engine.close()
    assert h.status == "killed"
