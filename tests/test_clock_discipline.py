"""The decision core must take time from the injected Clock only (see marketdata/clock.py)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = ["router", "algos", "tca", "venues/sim.py", "venues/sim_driver.py", "venues/order_manager.py",
        "venues/ratelimit.py", "marketdata/book.py", "marketdata/consolidated.py"]
FORBIDDEN = {("time", "time"), ("time", "time_ns"), ("time", "monotonic"), ("time", "monotonic_ns"),
             ("time", "perf_counter"), ("time", "sleep"), ("datetime", "now"), ("datetime", "utcnow"),
             ("datetime", "today"), ("date", "today"), ("asyncio", "sleep")}
# The CLI measures wall time for progress display only; live transports are allowed asyncio.sleep.
ALLOWED_FILES = {"router/cli.py"}


def _core_files() -> list[Path]:
    out: list[Path] = []
    for entry in CORE:
        p = REPO / entry
        if p.is_dir():
            out.extend(sorted(p.rglob("*.py")))
        elif p.exists():
            out.append(p)
    return [p for p in out if str(p.relative_to(REPO)) not in ALLOWED_FILES
            and "commands" not in p.parts]


def wall_clock_reads(source: str) -> list[tuple[int, str]]:
    hits = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in FORBIDDEN):
                hits.append((node.lineno, f"{node.value.id}.{node.attr}"))
        if isinstance(node, ast.ImportFrom) and node.module in ("time", "datetime", "asyncio"):
            for alias in node.names:
                if (node.module, alias.name) in FORBIDDEN:
                    hits.append((node.lineno, f"from {node.module} import {alias.name}"))
    return hits


def test_detector_catches_wall_clock() -> None:
    assert wall_clock_reads("import time\nx = time.time()\n") == [(2, "time.time")]
    assert wall_clock_reads("from datetime import datetime\nd = datetime.now()\n") == [(2, "datetime.now")]
    assert wall_clock_reads("import asyncio\nasync def f():\n    await asyncio.sleep(1)\n")


def test_decision_core_never_reads_wall_clock() -> None:
    files = _core_files()
    assert files, "no core files found"
    offenders = {str(p.relative_to(REPO)): wall_clock_reads(p.read_text()) for p in files}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"wall-clock reads in the decision core (use the injected Clock): {offenders}"
