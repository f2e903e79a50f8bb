"""Interleaved A/B of ``Router.route`` against the ``router/routing.py`` of an earlier commit.

Both routers run in one process on the same machine load: the old module is extracted with
``git show <commit>:router/routing.py`` into a temporary package (it imports the current
``router.allocation`` / ``router.scoring``, so use it only across commits that changed
``routing.py`` alone), both are built by ``bench/test_bench_router.py``'s ``_setup`` and timed
round-robin with ``time.process_time``. Each pair of decisions is checked to give the same
journal payload and explanation before anything is timed. The benchmark's reference, the naive
full sort of all 100 levels (``naive_sweep``), is timed in the same rounds, so the route / naive
ratio is taken under the same load.

Run from the repository root: ``python bench/ab_router.py 32bee59``
"""

from __future__ import annotations

import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.test_bench_router as tb  # noqa: E402
import router.routing as new  # noqa: E402
from marketdata.model import Side  # noqa: E402
from router.allocation import naive_sweep  # noqa: E402


def _old_module(commit: str, tmp: Path) -> ModuleType:
    pkg = tmp / "sorex_ab_old"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    src = subprocess.run(["git", "show", f"{commit}:router/routing.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    (pkg / "routing.py").write_text(src)
    sys.path.insert(0, str(tmp))
    return importlib.import_module("sorex_ab_old.routing")


def _router(mod: ModuleType, capacity: Any) -> Any:
    return tb._setup(capacity, mod.Router)[0]


CASES: dict[str, tuple[Callable[[], Any], tuple[Any, ...]]] = {
    "take, no capacity (bench)": (lambda: None, (Side.BUY, D("5"), None, "take")),
    "post, balances": (tb._balances, (Side.BUY, D("0.5"), None, "post")),
    "mixed, balances": (tb._balances, (Side.SELL, D("2"), None, "mixed", 0.5)),
    "take, balances": (tb._balances, (Side.BUY, D("5"), None, "take")),
}


def main(commit: str, rounds: int = 15, n: int = 1000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old = _old_module(commit, Path(tmp))
        print(f"Router.route, {commit} vs the work tree: median of {rounds} rounds x {n} decisions")
        for name, (cap, args) in CASES.items():
            ro, rn = _router(old, cap()), _router(new, cap())
            qo, qn = old.RouteRequest("BTC-USDT", *args), new.RouteRequest("BTC-USDT", *args)
            a, b = ro.route(qo), rn.route(qn)
            assert a.to_dict() == b.to_dict() and a.explanation == b.explanation, f"{name}: decisions differ"
            books = {v: rn._venues[v].book for v in rn.venue_names}
            want = int(D("5") / rn.grid.lot_size)
            times: tuple[list[float], list[float], list[float]] = ([], [], [])
            for _ in range(rounds):
                for r, q, acc in ((ro, qo, times[0]), (rn, qn, times[1])):
                    t = time.process_time()
                    for _ in range(n):
                        r.route(q)
                    acc.append((time.process_time() - t) / n * 1e6)
                t = time.process_time()
                for _ in range(n):
                    naive_sweep(Side.BUY, tb._ladders(rn, books), want)
                times[2].append((time.process_time() - t) / n * 1e6)
            mo, mn, nv = (statistics.median(x) for x in times)
            print(f"  {name:27s} {commit}: {mo:6.1f} us   now: {mn:6.1f} us   speed-up {mo / mn:.2f}x"
                  f"   naive sort {nv:6.1f} us (now / naive {mn / nv:.2f}x)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "HEAD")
