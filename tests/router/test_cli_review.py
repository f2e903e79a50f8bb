"""Second review of the ``sorex`` command line and its TOML on bad input (run in-process through
``router.cli.main``). Every test here failed before its fix; each docstring says what was wrong.
The rule: a refusal is exit status 2 with one error line naming the file / key / allowed values,
no traceback, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketdata.errors import ConfigError
from router.cli import main
from router.engine_config import load_engine_config_text

ROOT = Path(__file__).resolve().parents[2]
SMART = ROOT / "examples" / "routing_smart.toml"
FILLS = ROOT / "examples" / "tca_fills_example.csv"

PARENT = """
[[parents]]
id = "a"
symbol = "BTC-USDT"
side = "SIDE"
quantity = "QTY"
algo = "twap"
LIMIT
[parents.params]
end = "+10s"
"""


def _parent(qty: str = "0.01", side: str = "buy", limit: str | None = None) -> str:
    return (PARENT.replace("QTY", qty).replace("SIDE", side)
            .replace("LIMIT", "" if limit is None else f'limit_price = "{limit}"'))


def _write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _run(tmp_path: Path, cfg: Path, *extra: str) -> int:
    return main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--no-tca", *extra])


ROUTING = '[routing]\nstrategy = "smart"\n'


# --------------------------------------------------------------------------- sorex run / engine TOML
@pytest.mark.parametrize(("text", "key"), [
    ("[[engine]]\nseed = 1\n", "engine"),
    ("engine = []\n", "engine"),
    ("[[risk]]\nmax_order_notional = 5\n", "risk"),
    ("[[simulation]]\nx = 1\n", "simulation"),
])
def test_engine_sections_written_as_arrays_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       text: str, key: str) -> None:
    """Failed before: `[[engine]]` (or `engine = []`, `[[risk]]`, `[[simulation]]`) crashed with
    `AttributeError: 'list' object has no attribute 'data'` (exit 1, a traceback). Now exit 2
    naming the file and the section, and saying to write `[engine]`."""
    cfg = _write(tmp_path, text + _parent())
    rc = _run(tmp_path, cfg)
    err = capsys.readouterr().err
    assert rc == 2
    assert str(cfg) in err and f"key '{key}'" in err and f"[{key}]" in err
    assert not (tmp_path / "out").exists()


def test_parents_as_a_scalar_says_write_parents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `parents = 5` said "must be a table or an array of tables", but a `[parents]`
    table is refused too; now it says to write `[[parents]]`."""
    cfg = _write(tmp_path, "parents = 5\n")
    rc = _run(tmp_path, cfg)
    err = capsys.readouterr().err
    assert rc == 2 and "key 'parents'" in err and "[[parents]]" in err


@pytest.mark.parametrize(("qty", "side", "limit", "key"), [
    ("1e400", "buy", None, "parents[0].quantity"),      # OverflowError: int too large to convert to float
    ("0.01", "sell", "1e400", "parents[0].limit_price"),  # OverflowError in the router's post scoring
    ("0.01", "sell", "1e30", "parents[0].limit_price"),   # decimal.InvalidOperation quantizing the price
])
def test_absurdly_large_quantity_or_limit_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     qty: str, side: str, limit: str | None, key: str) -> None:
    """Failed before: `quantity = "1e400"` or `limit_price = "1e30"` passed validation (finite and
    positive) and crashed deep in the algos / router with a traceback once the run started. Now
    exit 2 at load naming the key and the bound (1e15), nothing written."""
    cfg = _write(tmp_path, _parent(qty, side, limit))
    rc = _run(tmp_path, cfg)
    err = capsys.readouterr().err
    assert rc == 2
    assert str(cfg) in err and key in err and "too large" in err and "1e15" in err
    assert not (tmp_path / "out").exists()


def test_boolean_quantity_is_shown_in_toml_spelling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `quantity = true` said "True is not a number" (Python's spelling) with no
    allowed values."""
    cfg = _write(tmp_path, _parent().replace('quantity = "0.01"', "quantity = true"))
    rc = _run(tmp_path, cfg)
    err = capsys.readouterr().err
    assert rc == 2 and "parents[0].quantity" in err and "true is not a number" in err and "allowed" in err


@pytest.mark.parametrize("command", ["run", "route"])
def test_config_that_is_not_utf8_text(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """Failed before: a binary file given as the config (`sorex run data.npz`) crashed with a
    UnicodeDecodeError traceback; now exit 2 naming the file: not a TOML file."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_bytes(b"\xff\xfe[engine]\n\x00\x01")
    argv = (["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--no-tca"] if command == "run"
            else ["route", str(cfg), "--side", "buy", "--qty", "1"])
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and str(cfg) in err and "not a TOML file" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("rule", ["blacklist", "max_parent_notional"])
def test_parent_refused_by_risk_at_submit_names_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            rule: str) -> None:
    """Failed before: a parent submitted at once and refused by `[risk] blacklist` (or by
    `max_parent_notional` on its limit price) stopped the run with "sorex run: error: blacklist:
    BTC-USDT is blacklisted": neither the file nor the key. Now both are named."""
    risk = ('[risk]\nblacklist = ["BTC-USDT"]\n' if rule == "blacklist"
            else "[risk]\nmax_parent_notional = 100\n")
    cfg = _write(tmp_path, risk + _parent(limit="62000"))
    rc = _run(tmp_path, cfg)
    err = capsys.readouterr().err
    assert rc == 2 and str(cfg) in err and f"risk.{rule}" in err and "pre-trade risk" in err
    assert not (tmp_path / "out").exists()


def test_out_whose_journal_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `--out DIR` where DIR/journal.sqlite is a directory crashed with
    IsADirectoryError after the engine was built; now exit 2 naming the path and --out."""
    (tmp_path / "out" / "journal.sqlite").mkdir(parents=True)
    cfg = _write(tmp_path, _parent())
    rc = _run(tmp_path, cfg)
    err = capsys.readouterr().err
    assert rc == 2 and "journal.sqlite" in err and "--out" in err


def test_out_whose_tca_is_a_file_is_refused_before_the_run(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `--out DIR` where DIR/tca is a file ran the whole parent, wrote the journal
    and then crashed in the TCA report with FileExistsError (exit 1). Now exit 2 before anything
    runs, naming DIR/tca; nothing written."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "tca").write_text("not a directory", encoding="utf-8")
    cfg = _write(tmp_path, _parent())
    rc = main(["run", str(cfg), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and str(out / "tca") in err and "--out" in err
    assert sorted(p.name for p in out.iterdir()) == ["tca"]


@pytest.mark.parametrize(("key", "value"), [("user_stream", '"false"'), ("sync_time", "0"),
                                            ("recv_window_ms", '"abc"'), ("recv_window_ms", "1.9")])
def test_live_adapter_keys_are_typed(key: str, value: str) -> None:
    """Failed before: the live adapter's keys were coerced, so `user_stream = "false"` was
    `bool("false")`, i.e. true (silently the opposite), `recv_window_ms = 1.9` was 1 and
    `recv_window_ms = "abc"` said only "bad live adapter settings: invalid literal for int()" on
    `venues.binance-spot`. Now a ConfigError naming `venues.binance-spot.<key>`."""
    text = f"""
[engine]
mode = "shadow"
[venues.binance-spot]
adapter = "binance-spot"
{key} = {value}
[[venues.binance-spot.instruments]]
symbol = "BTC-USDT"
venue_symbol = "BTCUSDT"
base = "BTC"
quote = "USDT"
tick_size = "0.01"
lot_size = "0.00001"
"""
    with pytest.raises(ConfigError) as ei:
        load_engine_config_text(text, file="live.toml")
    assert ei.value.key == f"venues.binance-spot.{key}" and ei.value.file == "live.toml"


# --------------------------------------------------------------------------- routing TOML
def test_balance_asset_in_lower_case_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `[venues.binance-spot.balances] usdt = 100` was accepted and never matched
    the instrument's `USDT`, so the venue was excluded for "no available USDT balance" (exit 0).
    Now exit 2 naming the key."""
    cfg = _write(tmp_path, ROUTING + "[venues.binance-spot.balances]\nusdt = 100\n")
    rc = main(["route", str(cfg), "--side", "buy", "--qty", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "venues.binance-spot.balances.usdt" in err and "USDT" in err


@pytest.mark.parametrize(("tiers", "key", "fragment"), [
    ("[[venues.binance-spot.fees.tiers]]\nmaker_bps = 0.5\n", "tiers[0].min_30d_volume", "is required"),
    ("[[venues.binance-spot.fees.tiers]]\nmin_30d_volume = 0\ntaker_bps = 9\n", "tiers[0].min_30d_volume",
     "> 0"),
    ("[[venues.binance-spot.fees.tiers]]\nmin_30d_volume = 100\n"
     "[[venues.binance-spot.fees.tiers]]\nmin_30d_volume = 100\n", "tiers[1].min_30d_volume", "tiers[0]"),
])
def test_fee_tier_thresholds(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiers: str, key: str,
                             fragment: str) -> None:
    """Failed before: a `[[fees.tiers]]` entry without `min_30d_volume` (or with 0) silently
    replaced the base `[fees]` rates (both at volume 0, the later one won: `maker_bps = 1` became
    0.5), and two tiers with one threshold were accepted with the first silently unused."""
    cfg = _write(tmp_path, ROUTING + "[venues.binance-spot.fees]\nmaker_bps = 1\n" + tiers)
    rc = main(["route", str(cfg), "--side", "buy", "--qty", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and f"venues.binance-spot.fees.{key}" in err and fragment in err


# --------------------------------------------------------------------------- sorex route
def test_route_empty_at_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `--at ""` (e.g. an unset shell variable) was silently replaced by the
    default +60s (exit 0); now exit 2 on --at."""
    rc = main(["route", str(SMART), "--side", "buy", "--qty", "1", "--at", ""])
    err = capsys.readouterr().err
    assert rc == 2 and "--at" in err and "cannot parse time ''" in err


@pytest.mark.parametrize("flag", ["--qty", "--limit"])
def test_route_absurdly_large_number_is_refused(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    """Failed before: `sorex route ... --side sell --style post --limit 1e400` crashed with
    `OverflowError: integer division result too large for a float` in the router; now argparse
    refuses it (exit 2, the bound named)."""
    argv = ["route", str(SMART), "--side", "sell", "--style", "post", "--qty", "1", "--limit", "62000"]
    argv[argv.index(flag) + 1] = "1e400"
    with pytest.raises(SystemExit) as ei:
        main(argv)
    err = capsys.readouterr().err
    assert ei.value.code == 2 and flag in err and "too large" in err and "1e15" in err


def test_route_quantity_off_the_lot_names_qty(capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `--qty 0.0000001` said "BTC-USDT: quantity 1E-7 is not a multiple of the
    common lot 0.00001" without naming the flag or the allowed values."""
    rc = main(["route", str(SMART), "--side", "buy", "--qty", "0.0000001"])
    err = capsys.readouterr().err
    assert rc == 2 and "key '--qty'" in err and "multiples of 0.00001" in err


@pytest.mark.parametrize(("venues", "symbol"), [("[venues.foo]\n", "BTC-USDT"),
                                                ("[venues.binance-spot]\n", "ETH-USDT")])
def test_route_without_data_for_the_symbol_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          venues: str, symbol: str) -> None:
    """Failed before: a routing file whose venues have no data for `routing.symbol` said "key
    'routing.symbol': no instrument for symbol ... on any configured venue" without the file (and
    with an empty allowed list for an unknown venue). Now the file, the key and the data's
    venues/symbols are named."""
    cfg = _write(tmp_path, ROUTING + f'symbol = "{symbol}"\n' + venues)
    rc = main(["route", str(cfg), "--side", "buy", "--qty", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and str(cfg) in err and "routing.symbol" in err and "binance-spot BTC-USDT" in err


def test_route_post_table_shows_the_passive_score(capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: the `--style post` table showed the take score (and the taker-fee-adjusted
    far touch) in `score_bps`, not the passive score that ranked the venues. Now it shows the
    posting price and the passive score, equal to the JSON decision's `passive.score`."""
    argv = ["route", str(SMART), "--side", "buy", "--qty", "5", "--style", "post"]
    assert main([*argv, "--json"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[1].split()
    assert "post_score_bps" in header and "take_score_bps" not in header
    for v in decision["venues"]:
        row = next(line.split() for line in lines if line.startswith(v["venue"] + " "))
        assert float(row[header.index("post_score_bps")]) == pytest.approx(
            float(v["factors"]["passive"]["score"]), rel=1e-2)
        assert row[header.index("post_price")] == v["factors"]["passive"]["price"]


# --------------------------------------------------------------------------- sorex tca
@pytest.mark.parametrize("flag", ["--html", "--csv"])
def test_tca_unusable_output_path(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    """Failed before: `sorex tca --fills F --csv FILE` (an existing file) crashed with
    FileExistsError, `--html DIR` with IsADirectoryError (exit 1, tracebacks). Now exit 2 naming
    the path and the flag, before anything is written."""
    if flag == "--html":
        target = tmp_path / "report"
        target.mkdir()
    else:
        target = tmp_path / "csv"
        target.write_text("x", encoding="utf-8")
    html = tmp_path / "ok.html"
    rc = main(["tca", "--fills", str(FILLS), flag, str(target),
               *(["--html", str(html)] if flag == "--csv" else [])])
    err = capsys.readouterr().err
    assert rc == 2 and str(target) in err and flag in err
    assert not html.exists()


# ----------------------------------------------------- flagged by the CLI review, fixed in the engine
def test_until_at_or_before_the_data_start_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `[engine] until = "now"` (the data start) was accepted; the run ended at
    once, the parent `data_ended`, exit 0, and the TCA report failed on the journal."""
    cfg = _write(tmp_path, '[engine]\nuntil = "now"\n' + _parent())
    assert _run(tmp_path, cfg) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "engine.until" in err and "not after the start of the data" in err


def test_submit_at_after_until_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: a parent with `submit_at = "+40s"` and `[engine] until = "+30s"` was never
    submitted, was missing from the summary and from --json, and the run exited 0."""
    cfg = _write(tmp_path, '[engine]\nuntil = "+30s"\n' + _parent().replace('algo = "twap"',
                                                                         'algo = "twap"\nsubmit_at = "+40s"'))
    assert _run(tmp_path, cfg) == 2
    err = capsys.readouterr().err
    assert "parents[0].submit_at" in err and "not before [engine] until" in err


def test_parent_refused_by_risk_at_its_submit_at_is_reported_rejected(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: a [[parents]] entry with a submit_at, refused by `[risk] blacklist` when that
    time came, was only logged and journaled: missing from the summary and --json, exit 0. It is
    now a parent with status `rejected` and the rule in its reason, and the TCA report has it."""
    text = '[risk]\nblacklist = ["BTC-USDT"]\n' + _parent().replace('algo = "twap"', 'algo = "twap"\nsubmit_at = "+5s"')
    cfg = _write(tmp_path, text)
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    [p] = out["parents"]
    assert p["id"] == "a" and p["status"] == "rejected" and "blacklist" in p["reason"], p
    assert out["tca"] is not None


def test_parent_that_never_started_still_has_its_submitted_row(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: a parent the data ended before it started (`until` 2 ms after the start)
    had a `parent_finished` journal row without its `parent_submitted`, and `sorex tca` refused the
    journal ("parent_finished for unknown parent"). The submitted row is written when it ends."""
    cfg = _write(tmp_path, '[engine]\nuntil = "+2ms"\n' + _parent())
    rc = main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["parents"][0]["status"] == "data_ended"
    assert out["tca"] is not None, "the TCA report failed"


def test_pov_rates_that_contradict_each_other_are_refused_at_load(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `target_rate = 0.05` with `max_rate = 0.01` passed the config load; the
    parent ended `rejected` when it started, exit 0. Refused at load, naming the key."""
    text = _parent().replace('algo = "twap"', 'algo = "pov"') + "target_rate = 0.05\nmax_rate = 0.01\n"
    cfg = _write(tmp_path, text)
    assert _run(tmp_path, cfg) == 2
    err = capsys.readouterr().err
    assert "parents[0].params.max_rate" in err and "min_rate <= target_rate <= max_rate" in err


def test_missing_data_file_names_the_config_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Failed before: `[engine] data = ["/missing/x.gz"]` said only "/missing/x.gz: cannot read",
    naming neither the config file nor `engine.data`."""
    cfg = _write(tmp_path, f'[engine]\ndata = ["{tmp_path / "missing.gz"}"]\n' + _parent())
    assert _run(tmp_path, cfg) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "engine.data" in err and "missing.gz" in err
