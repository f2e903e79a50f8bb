"""Review of native icebergs in the engine (docs/engine.md "Native icebergs"): the iceberg algo's
remainder sent with a display, where the router posts it on a venue without icebergs, and the
venue order built for a venue that takes them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from test_engine_iceberg import ICEBERG, SPOT_ONLY, _submits

from router.engine import Engine
from venues.journal import Journal
from venues.sim import SimulatedVenue


def _run_display(tmp_path: Path, display: str, *, quantity: str = "0.05", extra: str = "",
                 params: str = "") -> tuple[Engine, Path]:
    text = ICEBERG.replace('display_min = "0.2"\ndisplay_max = "0.3"\n', f'display = "{display}"\n')
    text = text.replace('quantity = "2"', f'quantity = "{quantity}"')
    jpath = tmp_path / "j.sqlite"
    engine = Engine.from_toml_text(text.format(extra=extra, params=params, side="buy", limit="61900"),
                                   file="ice.toml", journal=jpath)
    engine.run()
    engine.close()
    return engine, jpath


def _rejects(jpath: Path) -> list[dict]:
    with Journal(jpath) as j:
        return [dict(r.payload) for r in j.read(kinds=["order_event"]) if r.payload["kind"] == "rejected"]


@pytest.mark.parametrize("display", ["0.001", "0.0005"])
def test_a_display_the_venue_without_icebergs_cannot_take_goes_where_a_synthetic_child_would(
        tmp_path: Path, display: str) -> None:
    """Failed before. The default venues: the router posts the whole remainder (0.05 BTC) on USD-M,
    which has no icebergs, and the engine placed only the display there, a plain order: 0.001 BTC
    (~62 USDT) is below USD-M's 100 USDT minimum notional (rejected child after child) and 0.0005 is
    below its 0.001 lot (floored to nothing, nothing placed). After 5 such children the iceberg
    finished with nothing filled, where the synthetic iceberg (``native = false``) fills it all on
    spot. Now, when the router posts the child only on venues without icebergs, the display alone
    is routed, as a synthetic iceberg's child is."""
    engine, jpath = _run_display(tmp_path, display)
    (h,) = engine.handles()
    # as the synthetic iceberg: filled, or nearly when the market's end-of-window fills run out
    assert h.filled >= Decimal("0.04") and "consecutive children ended unfilled" not in (h.reason or ""), h.reason
    assert not [r for r in _rejects(jpath) if "NOTIONAL" in str(r.get("reason"))]
    subs = _submits(jpath)
    assert subs and all(Decimal(s["quantity"]) <= Decimal(display) for s in subs)   # never shows more


def test_checked_not_a_bug_a_display_usdm_takes_is_still_placed_there(tmp_path: Path) -> None:
    """Checked, not a bug (and unchanged by the fix above): a display USD-M can take (0.3 BTC) is
    still posted there, a plain order per display."""
    engine, jpath = _run_display(tmp_path, "0.3", quantity="2")
    (h,) = engine.handles()
    assert h.status == "filled", h.reason
    usdm = [s for s in _submits(jpath) if s["venue"] == "binance-usdm"]
    assert usdm and all(s.get("display") is None and Decimal(s["quantity"]) <= Decimal("0.3") for s in usdm)


def test_iceberg_parts_of_one_sends_a_plain_display_instead_of_crashing(tmp_path: Path) -> None:
    """Failed before. With ICEBERG_PARTS 1 on the venue (a live symbol's configured limit can be 1)
    ``_iceberg_orders`` capped the order at display x 1 = the display and still gave it that
    display: the order manager refused the order (display not below its lots) with an
    InstrumentError out of the engine's run. An order capped to its display is a plain order."""
    text = ICEBERG.format(extra=SPOT_ONLY, params="", side="buy", limit="61900")
    engine = Engine.from_toml_text(text, file="ice.toml", journal=tmp_path / "j.sqlite")
    spot = engine.venues["binance-spot"]
    assert isinstance(spot, SimulatedVenue)
    spot.config.iceberg_parts = 1
    engine.run()
    engine.close()
    (h,) = engine.handles()
    assert h.filled > 0, h.reason
    subs = _submits(tmp_path / "j.sqlite")
    assert subs and all(s.get("display") is None and Decimal(s["quantity"]) <= Decimal("0.3") for s in subs)
