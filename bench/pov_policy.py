"""POV passive policies compared on the same scenarios (a script, not a pytest benchmark).

Scenarios over both bundled spot days, each run once per policy with the same seed:

* day 1, 2024-08-08 (the bundle, both default venues: spot and the USD-M perpetual), submitted
  10-220 s into the data;
* day 2, 2024-08-09 (the raw spot captures of ``../shared/data/binance-btc`` after midnight,
  spot alone: the default venues the data has), submitted 300-520 s into the data (00:00-00:03).
  The captures are read once with ``read_binance_raw`` and written to a temporary bundle, which
  replays exactly the same events (tests/marketdata/test_replay_bundle.py) and loads far faster.

Parameter sets drawn per scenario: side, 0.5-5 BTC, a 2/5/10 % target (default min and max
rates), a one- or two-minute window. Policies (``POLICIES``): the default (``catchup_threshold``
0.02 of the parent, a lead of one check interval's expected volume), the patient threshold 0.25,
posting ahead of need (``lead_intervals`` 2 and 3), a threshold scaled to the expected fills per
check interval (``catchup_intervals`` 2 and 4), and a combination.

Prints per policy and day: median and mean implementation shortfall (``is_bps``, fees included),
arrival slippage and slippage against the interval VWAP (bps, positive a cost), the median and
mean share of the quantity filled as maker, the median participation as a fraction of the target (read back
as fills / market volume), how many parents ended with a realised participation (TCA: fills /
(market volume + fills)) outside [min_rate, max_rate], the lowest fill rate, and the paired
difference in shortfall against the default (how many scenarios it lowered or raised).

Run: python bench/pov_policy.py [--jobs N] (about 12 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sqlite3
import statistics
import tempfile
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from scenario import run_parent

import algos.specs
from algos.pov import PovAlgo, pov_rates
from marketdata.replay.binance_raw import read_binance_raw
from marketdata.replay.bundle import write_bundle

log = logging.getLogger(__name__)

RAW = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance-btc"
DAY2_FILES = ("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz")
# policy -> (TOML keys, lead intervals, catch-up intervals or None)
POLICIES: dict[str, tuple[str, int, float | None]] = {
    "default": ("", 1, None),
    "threshold 0.25": ("catchup_threshold = 0.25", 1, None),
    "lead 2": ("", 2, None),
    "lead 3": ("", 3, None),
    "catchup_intervals 2": ("", 1, 2.0),
    "catchup_intervals 4": ("", 1, 4.0),
    "lead 2 + ci 4": ("", 2, 4.0),
}


class PolicyPov(PovAlgo):
    """PovAlgo with the two candidate policies, for this script only (not shipped: neither paid).

    * ``lead_k``: the posts carry ``lead_k`` check intervals of expected fills (target x the last
      interval's volume, ``lead_lots``) on top of the shortfall instead of one: posting ahead of
      need, so the queue time is spent before the order falls behind.
    * ``catchup_n``: once one interval's volume has been measured, the catch-up threshold is
      ``catchup_n`` intervals of expected fills instead of ``catchup_threshold`` x the parent.

    Both act through the two attributes ``PovAlgo._reconcile`` reads (``lead_lots`` and
    ``catchup_threshold``), so the rest of the algo runs unchanged."""

    lead_k = 1
    catchup_n: float | None = None
    _lead_raw = 0
    _lead_sets = 0
    _threshold = 0.02

    @property
    def lead_lots(self) -> int:
        return self._lead_raw * self.lead_k

    @lead_lots.setter
    def lead_lots(self, lots: int) -> None:
        self._lead_raw = lots
        self._lead_sets += 1   # the first set is the constructor's 0

    @property
    def catchup_threshold(self) -> float:
        if self.catchup_n is None or self._lead_sets < 2:
            return self._threshold
        return self.catchup_n * self._lead_raw / self.parent_lots

    @catchup_threshold.setter
    def catchup_threshold(self, share: float) -> None:
        self._threshold = share
CONFIG = """
[engine]
seed = {seed}
{data}
[[parents]]
id = "p"
symbol = "BTC-USDT"
side = "{side}"
quantity = "{qty}"
algo = "pov"
submit_at = "+{submit}s"
[parents.params]
end = "+{window}m"
target_rate = {target}
{extra}
"""

Scenario = tuple[str, int, str, str, int, float, int]   # day, seed, side, qty, submit s, target, window min


def scenarios(per_day: int) -> list[Scenario]:
    rng = random.Random(23)
    out: list[Scenario] = []
    for day, lo, hi in (("day1", 10, 220), ("day2", 300, 520)):
        for _ in range(per_day):
            out.append((day, len(out) + 1, rng.choice(["buy", "sell"]), rng.choice(["0.5", "1", "2", "3", "5"]),
                        rng.randint(lo, hi), rng.choice([0.02, 0.05, 0.1]), rng.choice([1, 2])))
    return out


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


def run_one(job: tuple[str, Scenario, str]) -> dict[str, Any]:
    policy, (day, seed, side, qty, submit, target, window), day2_data = job
    data = f'data = "{day2_data}"' if day == "day2" else ""
    text = CONFIG.format(seed=seed, data=data, side=side, qty=qty, submit=submit, window=window, target=target,
                         extra=POLICIES[policy][0])
    _, lead_k, catchup_n = POLICIES[policy]
    # the engine builds the algo through algos.specs (POV._make); swapped in for this run only
    algos.specs.__dict__["PovAlgo"] = type("PolicyPov", (PolicyPov,), {"lead_k": lead_k, "catchup_n": catchup_n})
    try:
        p, maker = run_parent(text, _maker_share)
    finally:
        algos.specs.__dict__["PovAlgo"] = PovAlgo
    part = float(p["participation"] or 0.0)
    lo, hi = pov_rates(target, None, None)
    return {"policy": policy, "day": day, "seed": seed,
            "ratio": part / (1 - part) / target if part < 1 else float("inf"),
            "in_band": lo <= part <= hi, "arrival": float(p["arrival_slippage_bps"]), "is": float(p["is_bps"]),
            "vwap": float(p["vwap_slippage_bps"]), "fill": float(p["fill_rate"]), "maker": float(maker)}


def _line(name: str, rows: list[dict[str, Any]], base: list[dict[str, Any]]) -> str:
    med, mean = statistics.median, statistics.mean
    d = [a["is"] - b["is"] for a, b in zip(rows, base, strict=True)]
    return (f"  {name:20s} IS med {med(r['is'] for r in rows):+6.2f} mean {mean(r['is'] for r in rows):+6.2f}  "
            f"arrival med {med(r['arrival'] for r in rows):+6.2f}  vwap med {med(r['vwap'] for r in rows):+6.2f} "
            f"mean {mean(r['vwap'] for r in rows):+6.2f}  maker med {med(r['maker'] for r in rows):.2f} "
            f"mean {mean(r['maker'] for r in rows):.2f}  "
            f"part/target {med(r['ratio'] for r in rows):.3f}  out of band {sum(not r['in_band'] for r in rows)}  "
            f"min fill {min(r['fill'] for r in rows):.3f}  dIS med {med(d):+.2f} mean {mean(d):+.2f} "
            f"lower {sum(x < -0.005 for x in d)} higher {sum(x > 0.005 for x in d)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--per-day", type=int, default=20)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    scen = scenarios(args.per_day)
    with tempfile.TemporaryDirectory() as d:
        day2 = Path(d) / "spot.npz"
        write_bundle(read_binance_raw([RAW / f for f in DAY2_FILES]), day2)
        jobs = [(pol, s, str(day2)) for pol in POLICIES for s in scen]
        with Pool(args.jobs) as pool:
            results = pool.map(run_one, jobs, chunksize=1)
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault((r["policy"], r["day"]), []).append(r)
        by.setdefault((r["policy"], "both"), []).append(r)
    for day in ("day1", "day2", "both"):
        n = len(by[("default", day)])
        print(f"{day} ({n} scenarios; bps, positive a cost; dIS = policy - default, paired)")
        for pol in POLICIES:
            print(_line(pol, by[(pol, day)], by[("default", day)]))


if __name__ == "__main__":
    main()
