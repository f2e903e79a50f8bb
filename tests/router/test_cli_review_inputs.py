"""Review of the ``sorex`` command line on bad input: every refusal is exit status 2 with an error
naming the file / key / allowed values, no traceback, no secret echoed and nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMART = ROOT / "examples" / "routing_smart.toml"

PARENT = """
[[parents]]
id = "a"
symbol = "BTC-USDT"
side = "buy"
quantity = "QTY"
algo = "twap"
[parents.params]
end = "+10s"
"""


def _write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_refused_run_keeps_previous_journal_and_writes_nothing(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`sorex run bad.toml --out DIR` where the parent's quantity (1e-20) is off the lot grid, and
    DIR holds the journal of an earlier run: exit 2 naming parents[0].quantity, and the earlier
    journal is untouched (not deleted, not replaced by a half-written one)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "journal.sqlite").write_bytes(b"previous run")
    cfg = _write(tmp_path, PARENT.replace('"QTY"', '"1e-20"'))
    rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--no-tca"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "parents[0].quantity" in err and str(cfg) in err
    assert sorted(p.name for p in out.iterdir()) == ["journal.sqlite"]
    assert (out / "journal.sqlite").read_bytes() == b"previous run"


def test_refused_run_does_not_create_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sorex run` with `[simulation.binance-spot] rate_limit_preset = "nope"` (refused when the
    engine is built): exit 2 naming the key and the allowed presets, and no `--out` directory /
    journal is created."""
    out = tmp_path / "out"
    cfg = _write(tmp_path, '[simulation.binance-spot]\nrate_limit_preset = "nope"\n'
                 + PARENT.replace('"QTY"', '"1"'))
    rc = main(["run", str(cfg), "--out", str(out), "--quiet", "--no-tca"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "simulation.binance-spot.rate_limit_preset" in err and "binance-usdm" in err
    assert not out.exists()


@pytest.mark.parametrize("secret", ["hunter2", "xK9#pQ2z"])
def test_short_literal_secret_is_not_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            secret: str) -> None:
    """`[venues.binance-spot.credentials] api_secret_env = "hunter2"` (a literal secret where the
    NAME of a variable belongs): exit 2 naming the key, and the secret is not printed."""
    text = SMART.read_text(encoding="utf-8").replace(
        'api_secret_env = "BINANCE_SPOT_API_SECRET"', f'api_secret_env = "{secret}"')
    cfg = _write(tmp_path, text)
    rc = main(["route", str(cfg), "--side", "buy", "--qty", "1"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "venues.binance-spot.credentials.api_secret_env" in captured.err
    assert secret not in captured.err and secret not in captured.out


LIVE = """
[engine]
mode = "shadow"
[venues.binance-spot]
adapter = "binance-spot"
base_url = "https://api.binance.com"
api_key_env = "BINANCE_API_KEY"
api_secret_env = "SECRET"
[venues.binance-spot.fees]
maker_bps = 10
taker_bps = 10
[[venues.binance-spot.instruments]]
symbol = "BTC-USDT"
venue_symbol = "BTCUSDT"
base = "BTC"
quote = "USDT"
tick_size = "0.01"
lot_size = "0.00001"
min_quantity = "0.00001"
min_notional = "5"
"""


def test_live_literal_secret_is_not_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A live venue with `api_secret_env = "vD8sk2LmQpX7rT4nZa9Wc3Yb"` (the secret itself):
    exit 2 naming venues.binance-spot.api_secret_env, the secret never printed."""
    secret = "vD8sk2LmQpX7rT4nZa9Wc3Yb"
    cfg = _write(tmp_path, LIVE.replace('"SECRET"', f'"{secret}"') + PARENT.replace('"QTY"', '"1"'))
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--no-tca"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "venues.binance-spot.api_secret_env" in captured.err
    assert secret not in captured.err and secret not in captured.out


@pytest.mark.parametrize("at", ["9" * 26, "+99999999999999h"])
def test_route_at_far_outside_the_data(capsys: pytest.CaptureFixture[str], at: str) -> None:
    """`sorex route examples/routing_smart.toml --side buy --qty 1 --at 99999999999999999999999999`
    (a time no calendar can show): exit 2 "outside the data" on --at with the data span, not an
    OSError/OverflowError traceback."""
    rc = main(["route", str(SMART), "--side", "buy", "--qty", "1", "--at", at])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--at" in err and "outside the data" in err and "2024-08-08T23:54:15" in err


def test_progress_interval_bare_integer_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`[engine] progress_interval = 5` (meant as 5 s, read as 5 ns: the run would spin for
    minutes on progress callbacks): exit 2 naming engine.progress_interval and the minimum."""
    cfg = _write(tmp_path, "[engine]\nprogress_interval = 5\n" + PARENT.replace('"QTY"', '"1"'))
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--no-tca"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(cfg) in err and "engine.progress_interval" in err and "1ms" in err
    assert not (tmp_path / "out").exists()


def test_until_garbage_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`[engine] until = "garbage"`: exit 2, the error names the config file and engine.until."""
    cfg = _write(tmp_path, '[engine]\nuntil = "garbage"\n' + PARENT.replace('"QTY"', '"1"'))
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--no-tca"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(cfg) in err and "engine.until" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("data", ['""', '["", "x"]'])
def test_empty_data_path_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: str) -> None:
    """`[engine] data = ""`: exit 2 naming the file and engine.data (not ": no data files in directory")."""
    cfg = _write(tmp_path, f"[engine]\ndata = {data}\n" + PARENT.replace('"QTY"', '"1"'))
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--no-tca"])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(cfg) in err and "engine.data" in err


def test_out_is_a_file_names_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sorex run good.toml --out FILE` where FILE is a regular file: exit 2 naming --out and the path."""
    target = tmp_path / "a_file"
    target.write_text("x")
    cfg = _write(tmp_path, PARENT.replace('"QTY"', '"1"'))
    rc = main(["run", str(cfg), "--out", str(target), "--quiet", "--no-tca"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--out" in err and str(target) in err
    assert target.read_text() == "x"


def test_progress_names_parents_waiting_for_submit_at(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A parent with ``submit_at`` in the future: the first progress lines said "no parents"; they
    now say how many are waiting."""
    parent = PARENT.replace('"QTY"', '"0.01"').replace('algo = "twap"', 'algo = "twap"\nsubmit_at = "+30s"')
    cfg = _write(tmp_path, parent)
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--no-tca"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "1 parent waiting for submit_at" in err and "no parents" not in err
