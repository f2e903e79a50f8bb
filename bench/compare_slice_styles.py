"""Execution quality of TWAP's slice styles on the bundled data (a script, not a pytest benchmark).

12 random TWAP parents (1-3 BTC, buy or sell, 3-minute window, 6 slices), each run four ways:
post-style slices at urgency 0 and 0.3, and mixed slices split by the router's urgency split
(0.3) or by Cont-Kukanov. Prints, per variant, the lowest fill rate, the median slippage against
the interval VWAP, and the median and mean implementation shortfall, all in bps with positive as
a cost, from the TCA report.

Run: python bench/compare_slice_styles.py (about 2 minutes).
"""

from __future__ import annotations

import random
import statistics

from scenario import run_parent

VARIANTS = {"post u0": ("urgency", "post", 0.0), "post u0.3": ("urgency", "post", 0.3),
            "mixed urgency 0.3": ("urgency", "mixed", 0.3), "mixed cont_kukanov": ("cont_kukanov", "mixed", 0.3)}

CONFIG = """
[engine]
seed = {seed}
[routing]
strategy = "smart"
max_slippage_bps = 25
mixed_split = "{split}"
[routing.cont_kukanov]
horizon_ms = 2000
min_samples = 5
[[parents]]
id = "t"
symbol = "BTC-USDT"
side = "{side}"
quantity = "{qty}"
algo = "twap"
submit_at = "+{submit}s"
[parents.params]
end = "+3m"
slices = 6
urgency = {urgency}
slice_style = "{style}"
"""


def run_one(text: str) -> dict[str, float]:
    """One run's TCA figures: fill rate, VWAP slippage and implementation shortfall (bps)."""
    p, _ = run_parent(text)
    return {"fill": float(p["fill_rate"]), "vwap": float(p["vwap_slippage_bps"]), "is": float(p["is_bps"])}


def main() -> None:
    rng = random.Random(5)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for i in range(12):
        side, qty, submit = rng.choice(["buy", "sell"]), rng.choice(["1", "2", "3"]), rng.randint(10, 150)
        for name, (split, style, urgency) in VARIANTS.items():
            text = CONFIG.format(seed=i + 1, split=split, side=side, qty=qty, submit=submit, urgency=urgency,
                                 style=style)
            results[name].append(run_one(text))
    for name, rows in results.items():
        print(f"{name:20s} min fill {min(r['fill'] for r in rows):.3f}  "
              f"median VWAP slippage {statistics.median(r['vwap'] for r in rows):6.2f}  "
              f"median IS {statistics.median(r['is'] for r in rows):6.2f}  "
              f"mean IS {statistics.mean(r['is'] for r in rows):6.2f}")


if __name__ == "__main__":
    main()
