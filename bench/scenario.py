"""Run one engine scenario (TOML text) on the bundled data and read its TCA parent row; shared by
the execution-quality scripts in bench/ (compare_slice_styles.py, pov_reprice.py)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tca
from router.engine import Engine


def run_parent(text: str, journal_probe: Callable[[Path], Any] | None = None) -> tuple[dict[str, Any], Any]:
    """Run the config ``text`` in a temporary directory; returns the TCA report's first parent and
    what ``journal_probe`` (given the journal's path, before the directory goes) returned."""
    with tempfile.TemporaryDirectory() as d:
        journal = Path(d) / "j.sqlite"
        engine = Engine.from_toml_text(text, journal=journal)
        engine.run()
        engine.close()
        out = tca.run_report(journal, Path(d) / "tca")
        parent: dict[str, Any] = json.loads(Path(out["json"]).read_text())["parents"][0]
        return parent, journal_probe(journal) if journal_probe is not None else None
