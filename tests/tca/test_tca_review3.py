"""Third TCA review: regression tests. Each failed before the fix it guards; the docstring says
what was wrong and works the expected answer out by hand."""

from __future__ import annotations

import copy
import csv
import json
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from tca_helpers import T0, S, synthetic_journal_records, synthetic_market, write_journal

from tca import analyze, analyze_all, load_journal
from tca.report import report_dict, write_csv

Records = list[tuple[int, str, dict[str, Any]]]


def _second_run(t0: int, run_id: str) -> Records:
    recs = copy.deepcopy(synthetic_journal_records(t0=t0))
    recs[0][2]["run_id"] = run_id
    return recs


def test_journal_with_two_runs_keeps_each_runs_parent_fills_and_children(tmp_path: Path) -> None:
    """Failed before. A journal may hold several runs (``[engine] journal`` is appended to: a
    restarted live run writes a second ``run_started``), and config parent ids repeat across runs.
    The loader keyed everything by parent id and kept one run id: two runs of parent P1 (run-1
    at t0, run-2 at t0+100 s, each buy 1.0 with fills 0.4 @ 102.5 and 0.4 @ 102.9) gave two
    identical executions, both the second run's parent with the four fills of both runs
    (filled 1.6 of 1.0), both labelled run-2, and the children of run 1 overwritten by run 2's
    (same client order ids). Expected: two executions, one per run, each with its own start,
    run id, label, two fills (0.8 filled), three children and two routing decisions."""
    j = write_journal(tmp_path / "j.sqlite", synthetic_journal_records() + _second_run(T0 + 100 * S, "run-2"))
    first, second = load_journal(j)
    assert (first.run_id, second.run_id) == ("run-1", "run-2")
    assert (first.parent.start_ts_ns, second.parent.start_ts_ns) == (T0, T0 + 100 * S)
    assert (first.parent.end_ts_ns, second.parent.end_ts_ns) == (T0 + 50 * S, T0 + 150 * S)
    assert [f.ts_ns for f in first.fills] == [T0 + 20 * S, T0 + 38 * S]
    assert [f.ts_ns for f in second.fills] == [T0 + 120 * S, T0 + 138 * S]
    for ex, t0 in ((first, T0), (second, T0 + 100 * S)):
        assert sorted(c.submit_ts_ns - t0 for c in ex.children) == [15 * S, 38 * S, 45 * S]
        assert sorted(c.filled for c in ex.children) == [D(0), D("0.4"), D("0.4")]
        assert [d.ts_ns - t0 for d in ex.decisions] == [15 * S, 38 * S]
    assert first.label == "j.sqlite:run-1:P1" and second.label == "j.sqlite:run-2:P1"
    m1 = analyze(first, synthetic_market()).metrics
    assert m1["filled_quantity"] == D("0.8") and m1["run_id"] == "run-1"


def test_two_runs_with_the_same_run_id_are_labelled_by_ordinal(tmp_path: Path) -> None:
    """Failed before (same cause). Two simulations with the same seed have the same run id
    (``r<seed>``): the executions are still two, labelled ``run 1`` and ``run 2``."""
    j = write_journal(tmp_path / "j.sqlite", synthetic_journal_records() + _second_run(T0 + 100 * S, "run-1"))
    first, second = load_journal(j)
    assert (first.label, second.label) == ("j.sqlite:run 1:P1", "j.sqlite:run 2:P1")
    assert len(first.fills) == len(second.fills) == 2


def test_shadow_fills_are_not_executions(tmp_path: Path) -> None:
    """Failed before. In a shadow run every order row carries ``"shadow": true``: the order was
    journaled and never sent (docs/contracts.md), so a fill row so marked is no execution. The
    loader counted both fills of the synthetic parent (0.8 filled at 102.7, fees 0.02029).
    Expected: no fills, filled quantity 0, no average price, child orders unfilled, and a
    warning naming the 2 shadow fills left out."""
    recs = synthetic_journal_records()
    for _, kind, payload in recs:
        if kind in ("order_command", "order_event", "fill"):
            payload["shadow"] = True
    [ex] = load_journal(write_journal(tmp_path / "j.sqlite", recs))
    assert ex.fills == []
    assert all(c.filled == 0 for c in ex.children)
    m = analyze(ex, synthetic_market()).metrics
    assert m["filled_quantity"] == 0 and m["average_price"] is None and m["fees"] == 0
    assert any("2 shadow fill(s)" in w for w in m["warnings"])


def test_parents_csv_carries_the_json_scalars(tmp_path: Path) -> None:
    """Failed before. docs/tca.md: the CSV holds "the same numbers, flattened", but parents.csv
    had no ``source``, ``unfilled_quantity``, ``decision_ts_ns`` or IS paper value, so two
    journals' rows could not be told apart and the paper value behind every IS bps was missing.
    Synthetic parent: unfilled 1.0 - 0.8 = 0.2, decision time t0 - 20 s, paper value
    1.0 x 99 (mid at the decision time) = 99; each CSV cell equals the JSON value."""
    j = write_journal(tmp_path / "j.sqlite", synthetic_journal_records())
    a = analyze_all(load_journal(j), {"BTC-USDT": synthetic_market()})
    write_csv(a, tmp_path / "csv")
    with (tmp_path / "csv" / "parents.csv").open(newline="") as fh:
        [row] = list(csv.DictReader(fh))
    doc = report_dict(a)["parents"][0]
    assert row["source"] == doc["source"] == str(j)
    assert float(row["unfilled_quantity"]) == doc["unfilled_quantity"] == 0.2
    assert int(row["decision_ts_ns"]) == doc["decision_ts_ns"] == T0 - 20 * S
    assert float(row["is_paper_value"]) == doc["is"]["paper_value"] == 99
    for key, value in doc.items():   # every scalar of the JSON is a column with the same value
        if not isinstance(value, dict | list):
            assert key in row, key
            assert row[key] == ("" if value is None else str(value)), key


def test_same_parent_in_two_run_directories_gets_distinct_labels(tmp_path: Path, capsys: Any) -> None:
    """Failed before. Every ``sorex run`` writes ``<out>/journal.sqlite``; comparing two runs of
    the same example (``sorex tca a/journal.sqlite b/journal.sqlite``) labelled both parents
    ``journal.sqlite:P1``: the HTML summary had two identical columns and the CSV rows (keyed by
    label and parent id) could not be told apart. Expected labels ``a/journal.sqlite:P1`` and
    ``b/journal.sqlite:P1``; the same file given twice gets ``#1`` / ``#2``."""
    from router.cli import main

    paths = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        paths.append(write_journal(tmp_path / name / "journal.sqlite", synthetic_journal_records()))
    assert main(["tca", *map(str, paths), str(paths[0]), "--json"]) == 0
    labels = [p["label"] for p in json.loads(capsys.readouterr().out)["parents"]]
    assert labels == ["a/journal.sqlite:P1 #1", "b/journal.sqlite:P1", "a/journal.sqlite:P1 #2"]


def test_a_shadow_runs_parents_say_their_orders_were_never_sent(tmp_path: Path) -> None:
    """Failed before (flagged by the TCA review): a shadow run's child orders were listed by venue
    with their sent quantities like a live run's, with nothing saying they never left. Every
    parent of a run whose ``run_started`` says ``mode = "shadow"`` now carries that warning; a
    simulated run's parents do not."""
    recs = synthetic_journal_records()
    for _, kind, payload in recs:
        if kind == "run_started":
            payload["mode"] = "shadow"
    [ex] = load_journal(write_journal(tmp_path / "shadow.sqlite", recs))
    assert any("shadow run" in w for w in analyze(ex, synthetic_market()).metrics["warnings"])
    [plain] = load_journal(write_journal(tmp_path / "plain.sqlite", synthetic_journal_records()))
    assert not any("shadow run" in w for w in analyze(plain, synthetic_market()).metrics["warnings"])
