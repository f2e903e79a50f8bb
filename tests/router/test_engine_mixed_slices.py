"""slice_style = "mixed" in the engine: each TWAP slice goes to the router as one mixed child, split
between taking now and posting by the router's mixed_split (urgency or Cont-Kukanov), on the
bundled data, with examples/twap_mixed.toml. Checked from the journal: the decisions, their
splits and the fills."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from router.engine import Engine

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "twap_mixed.toml"


def _run(tmp_path: Path, split: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Decimal]]:
    journal = tmp_path / f"{split}.sqlite"
    text = EXAMPLE.read_text().replace('mixed_split = "cont_kukanov"', f'mixed_split = "{split}"')
    assert f'mixed_split = "{split}"' in text
    engine = Engine.from_toml_text(text, journal=journal)
    engine.run()
    [parent] = engine.summary()["parents"]
    engine.close()
    con = sqlite3.connect(journal)
    decisions = [json.loads(p) for (p,) in con.execute("select payload from events where kind = 'routing_decision'")]
    liquidity: dict[str, Decimal] = {}
    for (p,) in con.execute("select payload from events where kind = 'fill'"):
        f = json.loads(p)
        liquidity[f["liquidity"]] = liquidity.get(f["liquidity"], Decimal(0)) + Decimal(f["quantity"])
    con.close()
    return parent, decisions, liquidity


def _taken(d: dict[str, Any]) -> Decimal:
    return sum((Decimal(a["quantity"]) for a in d["allocations"] if a["style"] == "take"), Decimal(0))


def test_mixed_slices_split_by_urgency(tmp_path: Path) -> None:
    parent, decisions, liquidity = _run(tmp_path, "urgency")
    assert parent["status"] == "filled" and Decimal(parent["filled"]) == 3
    mixed = [d for d in decisions if d["request"]["style"] == "mixed"]
    assert len(mixed) >= 8   # one per slice at least
    for d in mixed:
        # the router's urgency split: floor(0.3 x quantity) taken now, the rest posted
        assert _taken(d) <= Decimal(d["request"]["quantity"]) * Decimal("0.3")
        assert any(a["style"] == "post" for a in d["allocations"]), d["explanation"]
    assert Decimal("0.8") <= liquidity["taker"] <= Decimal("1.2"), liquidity


def test_mixed_slices_split_by_cont_kukanov(tmp_path: Path) -> None:
    parent, decisions, liquidity = _run(tmp_path, "cont_kukanov")
    assert parent["status"] == "filled" and Decimal(parent["filled"]) == 3
    mixed = [d for d in decisions if d["request"]["style"] == "mixed"]
    assert mixed and all(d["split"]["method"] == "cont_kukanov" for d in mixed), [d["split"] for d in mixed]
    for d in mixed:
        sp = d["split"]
        assert Decimal(sp["take"]) + Decimal(sp["post"]) == Decimal(d["request"]["quantity"])
        assert _taken(d) <= Decimal(sp["take"])
        assert set(sp["venues"]) <= {"binance-spot", "binance-usdm"}
    # the queues absorb most of each slice: less is taken than by the fixed 30 % urgency split
    assert liquidity["taker"] < Decimal("0.9"), liquidity


@pytest.mark.parametrize("algo", ["vwap", "is", "pov"])
def test_other_schedulers_take_slice_style(tmp_path: Path, algo: str) -> None:
    extra = {"vwap": "max_participation = 0.2", "is": "risk_aversion = 1e-6", "pov": "target_rate = 0.1"}[algo]
    engine = Engine.from_toml_text(f"""
[engine]
seed = 3
[[parents]]
id = "p"
symbol = "BTC-USDT"
side = "sell"
quantity = "1"
algo = "{algo}"
submit_at = "+30s"
[parents.params]
end = "+2m"
urgency = 0.5
slice_style = "mixed"
{extra}
""", journal=tmp_path / "j.sqlite")
    engine.run()
    [parent] = engine.summary()["parents"]
    engine.close()
    assert parent["status"] == "filled" and Decimal(parent["filled"]) == 1, parent
    con = sqlite3.connect(tmp_path / "j.sqlite")
    styles = {json.loads(p)["request"]["style"] for (p,) in
              con.execute("select payload from events where kind = 'routing_decision'")}
    con.close()
    assert "mixed" in styles, styles


def test_a_bad_slice_style_names_the_key_and_the_choices(tmp_path: Path) -> None:
    from marketdata.errors import ConfigError

    with pytest.raises(ConfigError) as ei:
        Engine.from_toml_text("""
[[parents]]
id = "p"
symbol = "BTC-USDT"
side = "buy"
quantity = "1"
algo = "twap"
[parents.params]
end = "+2m"
slice_style = "aggressive"
""", file="bad.toml")
    text = str(ei.value)
    assert "slice_style" in text and '"post", "mixed"' in text and "aggressive" in text, text
