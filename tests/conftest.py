"""Shared test fixtures: where the real reference data lives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from marketdata.replay import Dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SOREX_SHARED", REPO.parent / "shared"))
BINANCE_BTC = SHARED / "data" / "binance-btc"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"reference data not found at {SHARED} (set SOREX_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def binance_btc_dir(shared_dir: Path) -> Path:
    d = shared_dir / "data" / "binance-btc"
    if not d.is_dir():
        pytest.skip(f"{d} missing")
    return d


@pytest.fixture(scope="module")
def ds() -> Dataset:
    """The bundled dataset (the embedded default's real Binance data)."""
    from marketdata.replay import default_dataset
    try:
        return default_dataset()
    except Exception as exc:  # pragma: no cover - only when the bundle is missing
        pytest.skip(f"bundled dataset unavailable: {exc}")
