"""The HTML report seen in a real browser: headless Chromium loads it offline, the inline script
runs without error (it sets body[data-ok]), charts (svg) and tables are in the rendered DOM, and a
screenshot is taken. Skips only where chromium is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from tca_helpers import T0, synthetic_journal_records, synthetic_market, write_journal

from tca import analyze_all, load_journal
from tca.model import MarketSeries
from tca.report import write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--disable-default-apps", "--mute-audio"]


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture()
def report(tmp_path: Path) -> Path:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium); browser test skipped")
    market = synthetic_market()
    # a second quoted venue so fills by venue show in two colours
    m2 = MarketSeries("BTC-USDT")
    for ts, venue, bid, ask in market._quotes:
        m2.add_quote(ts, venue, bid, ask)
        m2.add_quote(ts + 1, "B", bid - Decimal("0.5"), ask + Decimal("0.5"))
    for i in range(len(market.trade_ts)):
        m2.add_trade(market.trade_ts[i], market.trade_venue[i], market.trade_px[i], market.trade_qty[i],
                     market.trade_id[i])
    j1 = write_journal(tmp_path / "twap.sqlite", synthetic_journal_records(algo="twap"))
    j2 = write_journal(tmp_path / "vwap.sqlite", synthetic_journal_records(T0, "P2", "vwap"))
    analyses = analyze_all(load_journal(j1) + load_journal(j2), {"BTC-USDT": m2.build()})
    return write_html(analyses, tmp_path / "report.html")


def test_report_renders_in_chromium_without_script_errors(report: Path, tmp_path: Path) -> None:
    r = _chromium(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000", "--dump-dom",
                   report.as_uri()], tmp_path)
    dom = r.stdout
    assert 'data-ok="1"' in dom, f"inline script did not run: {r.stderr[-2000:]}"
    svg_count = int(dom.split('data-svg-count="', 1)[1].split('"', 1)[0])
    table_count = int(dom.split('data-table-count="', 1)[1].split('"', 1)[0])
    assert svg_count >= 11            # comparison + 5 per parent x 2
    assert table_count >= 7
    assert dom.count("<circle") >= 4  # our fills marked on the price paths
    errors = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln and ("Error" in ln or "error" in ln)]
    assert not errors, errors


def test_report_screenshot(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    r = _chromium([f"--screenshot={shot}", "--window-size=1400,2600", "--hide-scrollbars",
                   report.as_uri()], tmp_path)
    assert shot.is_file() and shot.stat().st_size > 20_000, r.stderr[-2000:]
    keep = os.environ.get("SOREX_TCA_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
