"""POV with and without re-pricing of the posts the touch moved away from (a script, not a
pytest benchmark).

24 random one-minute POV parents on the bundled data (0.5-5 BTC, buy or sell, 2-10 % target,
submitted 10-200 s into the data), each run twice in the same process, with the default
``catchup_threshold`` (0.02) and with a patient 0.25: as shipped, and with
``PovAlgo._reprice_posts`` disabled (the behaviour before 2026-12-08). Prints per variant the
median participation as a fraction of the target (read back as fills / market volume, the rate
the algo targets), the median life (start to last fill), the median arrival slippage and
implementation shortfall (bps, positive a cost), the lowest fill rate, the median share of the
parent filled as maker, and the paired difference in shortfall per scenario.

Run: python bench/pov_reprice.py (about 3 minutes).
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
from collections.abc import Callable
from pathlib import Path

from scenario import run_parent

from algos.pov import PovAlgo

THRESHOLDS = (0.02, 0.25)   # the default, and a patient POV that takes mostly below its floor
CONFIG = """
[engine]
seed = {seed}
[[parents]]
id = "p"
symbol = "BTC-USDT"
side = "{side}"
quantity = "{qty}"
algo = "pov"
submit_at = "+{submit}s"
[parents.params]
end = "+1m"
target_rate = {target}
catchup_threshold = {threshold}
"""


def _maker_share(journal: Path) -> float:
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT payload FROM events WHERE kind = 'fill'").fetchall()
    maker = total = 0.0
    for (payload,) in rows:
        f = json.loads(payload)
        q = float(f.get("quantity", 0))
        total += q
        maker += q if f.get("liquidity") == "maker" else 0.0
    return maker / total if total else 0.0


def run_one(text: str, target: float) -> dict[str, float]:
    p, maker = run_parent(text, _maker_share)
    part = float(p["participation"] or 0.0)
    return {"ratio": part / (1 - part) / target if part < 1 else float("inf"),
            "life": float(p["duration_s"] or 0.0), "arrival": float(p["arrival_slippage_bps"]),
            "is": float(p["is_bps"]), "fill": float(p["fill_rate"]), "maker": float(maker)}


def main() -> None:
    rng = random.Random(11)
    scenarios = [(i + 1, rng.choice(["buy", "sell"]), rng.choice(["0.5", "1", "2", "3", "5"]),
                  rng.randint(10, 200), rng.choice([0.02, 0.05, 0.1])) for i in range(24)]
    shipped = PovAlgo._reprice_posts
    off: Callable[[PovAlgo], None] = lambda self: None  # noqa: E731
    reprices = 0

    def counting(self: PovAlgo) -> None:
        nonlocal reprices
        before = sum(c.cancel_requested for c in self.open_children("post"))
        shipped(self)
        reprices += sum(c.cancel_requested for c in self.open_children("post")) - before
    for threshold in THRESHOLDS:
        results: dict[str, list[dict[str, float]]] = {"reprice": [], "no reprice": []}
        reprices = 0
        for seed, side, qty, submit, target in scenarios:
            text = CONFIG.format(seed=seed, side=side, qty=qty, submit=submit, target=target, threshold=threshold)
            for name, fn in (("reprice", counting), ("no reprice", off)):
                PovAlgo._reprice_posts = fn  # type: ignore[method-assign]
                try:
                    results[name].append(run_one(text, target))
                finally:
                    PovAlgo._reprice_posts = shipped  # type: ignore[method-assign]
        print(f"catchup_threshold {threshold}: posts re-priced {reprices} in {len(scenarios)} parents")
        _print(results)


def _print(results: dict[str, list[dict[str, float]]]) -> None:
    for name, rows in results.items():
        print(f"  {name:11s} participation/target median {statistics.median(r['ratio'] for r in rows):.3f}  "
              f"life median {statistics.median(r['life'] for r in rows):.0f} s  "
              f"arrival {statistics.median(r['arrival'] for r in rows):+.2f} bps  "
              f"IS {statistics.median(r['is'] for r in rows):+.2f} bps "
              f"(mean {statistics.mean(r['is'] for r in rows):+.2f})  "
              f"min fill {min(r['fill'] for r in rows):.3f}  maker {statistics.median(r['maker'] for r in rows):.2f}")
    d = [a["is"] - b["is"] for a, b in zip(results["reprice"], results["no reprice"], strict=True)]
    print(f"  paired IS, reprice - no reprice: median {statistics.median(d):+.2f} bps, mean {statistics.mean(d):+.2f}; "
          f"lower in {sum(x < -0.005 for x in d)}, higher in {sum(x > 0.005 for x in d)}, "
          f"equal in {sum(abs(x) <= 0.005 for x in d)}")


if __name__ == "__main__":
    main()
