"""Native icebergs through the engine. When some venue takes a display quantity (simulated
binance-spot by default, as Binance spot has ``icebergQty``; USD-M has none), the iceberg algo
sends its remainder with a display and the router chooses the venue as for any post: on spot the
order carries the display (one venue order), on USD-M only the display is placed, a plain order,
and the rest comes back to the algo (a synthetic iceberg there). The journal keeps the display, a
restore rebuilds it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from binance_fake import FakeBinance
from test_engine_live import _toml, _until

from marketdata.clock import SimClock
from router.engine import Engine, Iceberg, ParentOrder
from router.engine_config import DEFAULT_VENUES_TOML
from venues.journal import Journal
from venues.order_manager import OrderManager

ICEBERG = """
[engine]
seed = 7
{extra}
[[parents]]
id = "ice"
symbol = "BTC-USDT"
side = "{side}"
quantity = "2"
limit_price = "{limit}"
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


def _run(tmp_path: Path, extra: str = "", params: str = "", side: str = "buy") -> tuple[Engine, Path]:
    jpath = tmp_path / "j.sqlite"
    limit = "61900" if side == "buy" else "61700"
    engine = Engine.from_toml_text(ICEBERG.format(extra=extra, params=params, side=side, limit=limit),
                                   file="ice.toml", journal=jpath)
    engine.run()
    engine.close()
    return engine, jpath


SPOT_ONLY = DEFAULT_VENUES_TOML.split("[venues.binance-usdm]")[0]   # the default spot venue alone


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_native_iceberg_where_the_router_chooses_spot(tmp_path: Path, side: str) -> None:
    """Spot alone: the router posts there, spot takes icebergs, so each child is one venue order
    with the display instead of one per display."""
    engine, jpath = _run(tmp_path, SPOT_ONLY, side=side)
    (h,) = engine.handles()
    assert h.status == "filled" and h.filled == Decimal("2"), h.reason
    subs = _submits(jpath)
    natives = [s for s in subs if s.get("display") is not None]
    assert natives, subs
    for s in natives:
        assert s["venue"] == "binance-spot"
        assert Decimal("0.2") <= Decimal(s["display"]) <= Decimal("0.3") < Decimal(s["quantity"])
        assert (Decimal(s["price"]) <= Decimal("61900")) if side == "buy" else (Decimal(s["price"]) >= Decimal("61700"))
    assert len(subs) < 7, len(subs)   # the synthetic iceberg needs at least 2 / 0.3 -> 7
    # a restore from the journal rebuilds the orders with their display
    with Journal(jpath) as j:
        om = OrderManager.restore(j, SimClock(start_ns=0), list(engine.instruments.values()), run_id=engine.run_id)
        assert not om.errors
        restored = {o.order.client_order_id: o.order.display_lots for o in om.orders()}
    for s in natives:
        inst = engine.instruments[s["venue"]]
        assert restored[s["client_order_id"]] == inst.qty_to_lots(s["display"])


def test_iceberg_where_the_router_chooses_a_venue_without_icebergs(tmp_path: Path) -> None:
    """The default venues: the router posts on USD-M (maker 2 bps against spot's 10), which has no
    icebergs, so only the display is placed each time (plain orders, never more than 0.3 shown)."""
    engine, jpath = _run(tmp_path)
    (h,) = engine.handles()
    assert h.status == "filled" and h.filled == Decimal("2"), h.reason
    subs = _submits(jpath)
    usdm = [s for s in subs if s["venue"] == "binance-usdm"]
    assert usdm and all(s.get("display") is None and Decimal(s["quantity"]) <= Decimal("0.3") for s in usdm)
    assert all(s.get("display") is not None or Decimal(s["quantity"]) <= Decimal("0.3") for s in subs)


@pytest.mark.parametrize(("extra", "params"), [
    ("[simulation.binance-spot]\nnative_iceberg = false", ""),    # no venue takes a display
    ("", "native = false"),                                      # the algo asked for a synthetic one
])
def test_synthetic_iceberg_when_native_is_off(tmp_path: Path, extra: str, params: str) -> None:
    engine, jpath = _run(tmp_path, SPOT_ONLY + extra, params)
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


def test_native_iceberg_stays_within_the_venues_iceberg_parts(tmp_path: Path) -> None:
    """Showing 0.01 of 2 BTC would be 200 slices; Binance (and the simulator, iceberg_parts 100)
    refuses more than 100 with -1013 "Filter failure: ICEBERG_PARTS", which failed child after
    child. The engine sends at most display x 100 per order; the rest comes with later children."""
    params = 'display_min = "0.01"\ndisplay_max = "0.01"'
    text = ICEBERG.replace('display_min = "0.2"\ndisplay_max = "0.3"\n', "")
    jpath = tmp_path / "j.sqlite"
    engine = Engine.from_toml_text(text.format(extra=SPOT_ONLY, params=params, side="sell", limit="61700"),
                                   file="ice.toml", journal=jpath)
    engine.run()
    engine.close()
    natives = [s for s in _submits(jpath) if s.get("display") is not None]
    assert natives and all(Decimal(s["quantity"]) <= 100 * Decimal(s["display"]) for s in natives), natives
    with Journal(jpath) as j:
        rejects = [r.payload for r in j.read(kinds=["order_event"]) if r.payload["kind"] == "rejected"]
    assert not rejects, rejects
    (h,) = engine.handles()
    assert h.filled > Decimal("1"), h.reason   # more than one order's worth got done


def test_native_iceberg_refused_by_a_per_order_risk_limit_goes_on_synthetically(tmp_path: Path) -> None:
    """Failed before (found by the native-iceberg review): spot alone, `max_order_notional` 50,000
    USDT, a 2 BTC iceberg showing 0.2-0.3 BTC. The native child is the whole remainder (~124,000
    USDT), refused by risk each time: after 5 refusals the iceberg finished with nothing filled,
    where the synthetic one fills it all. Refused with `native` automatic, it now goes on with
    display-sized children, each checked on its own; with `native = true` it still fails."""
    extra = SPOT_ONLY + "\n[risk]\nmax_order_notional = 50000\n"
    engine, jpath = _run(tmp_path, extra)
    (h,) = engine.handles()
    assert h.status == "filled" and h.filled == Decimal("2"), h.reason
    subs = _submits(jpath)
    assert subs and all(s.get("display") is None and Decimal(s["quantity"]) <= Decimal("0.3") for s in subs)
    with Journal(jpath) as j:
        refused = [r.payload for r in j.read(kinds=["risk_refused"])]
    assert len(refused) == 1 and refused[0]["rule"] == "max_order_notional", refused
    (tmp_path / "forced").mkdir()
    forced, _ = _run(tmp_path / "forced", extra, params="native = true")
    (f,) = forced.handles()
    assert f.filled == 0 and "consecutive children ended unfilled" in (f.reason or ""), f.reason
