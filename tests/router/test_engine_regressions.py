"""Regression tests for engine bugs found by the randomized system test (test_engine_fuzz.py)."""

from __future__ import annotations

from pathlib import Path

from marketdata.model import OrderStatus
from router.engine import Engine
from venues.journal import Journal

NS = 1_000_000_000

_TWO_PARENTS = """
[engine]
seed = 3
[[parents]]
id = "A"
symbol = "BTC-USDT"
side = "buy"
quantity = "0.01"
algo = "twap"
[parents.params]
end = "+20s"
[[parents]]
id = "B"
symbol = "BTC-USDT"
side = "sell"
quantity = "0.01"
algo = "twap"
submit_at = "+60s"
[parents.params]
end = "+20s"
"""


def test_scheduled_parent_runs_after_earlier_parents_finish(tmp_path: Path) -> None:
    # run() used to stop as soon as every *submitted* parent was terminal: a [[parents]] entry
    # with a later submit_at was silently never submitted
    with Engine.from_toml_text(_TWO_PARENTS, journal=tmp_path / "j.sqlite") as engine:
        engine.run()
        a, b = engine.parent("A"), engine.parent("B")
        assert a.is_terminal and a.to_dict()["end_ns"] < engine.dataset.start_ns + 60 * NS   # A done first
        assert b.is_terminal and b.filled > 0
        assert b.to_dict()["start_ns"] >= engine.dataset.start_ns + 60 * NS


def test_scheduled_parent_refused_after_kill_is_journaled_and_run_ends(tmp_path: Path) -> None:
    # a parent whose submit_at comes after the kill switch is refused (risk_refused, kill_switch),
    # without aborting the replay from inside a clock alert, and run() then returns
    jpath = tmp_path / "j.sqlite"
    with Engine.from_toml_text(_TWO_PARENTS, journal=jpath) as engine:
        engine.run(until_ns=engine.dataset.start_ns + 10 * NS)
        engine.kill("test")
        engine.run()
        # B is reported, rejected with the rule (it used to be missing from the summary)
        assert [h.id for h in engine.handles()] == ["A", "B"]
        b = engine.parent("B")
        assert b.status == "rejected" and "kill_switch" in (b.reason or ""), (b.status, b.reason)
        assert not engine.stats.data_ended   # stopped once nothing was left, not at the data's end
    with Journal(jpath) as j:
        refused = [r.payload for r in j.read(kinds=["risk_refused"])]
    assert [(r["rule"], r["parent_id"]) for r in refused] == [("kill_switch", "B")]


_SLOW_ENTRY = """
[engine]
seed = 3762
[simulation.binance-spot]
order_entry_latency_ms = 221.7
ack_latency_ms = 14.6
latency_sigma = 1.3
rate_limit_preset = "none"
venue_rate_limit_orders = 15
[simulation.binance-usdm]
order_entry_latency_ms = 19.4
ack_latency_ms = 113.7
latency_sigma = 0.7
rate_limit_preset = "none"
venue_rate_limit_orders = 5
[[parents]]
id = "T"
symbol = "BTC-USDT"
side = "sell"
quantity = "0.01204"
algo = "twap"
[parents.params]
end = "+98s"
slices = 79
passive_only = true
"""


def test_order_arriving_after_its_cancel_retries_is_cancelled(tmp_path: Path) -> None:
    # Very jittery order entry (lognormal sigma 1.3): a post the algo cancelled reaches the venue
    # only after its cancel was refused as unknown 20 times. The engine used to stop retrying and
    # leave it resting: the parent stayed open until the data ended (data_ended at ~650 s).
    with Engine.from_toml_text(_SLOW_ENTRY, journal=tmp_path / "j.sqlite") as engine:
        engine.run()
        h = engine.parent("T")
        start = engine.dataset.start_ns
        # the scenario happened: an order whose cancel was refused 20 times, then accepted
        late = [mo for mo in engine.om.orders()
                if [s for _, s in mo.history].count(OrderStatus.PENDING_CANCEL) > 20]
        assert late, "scenario lost: no order outlasted its cancel retries"
        assert all(mo.status is OrderStatus.CANCELED for mo in late)
        assert h.status == "finished" and h.reason and "end time reached" in h.reason
        assert h.to_dict()["end_ns"] < start + 110 * NS
        assert not engine.om.open_orders()


def test_submit_at_after_the_end_of_the_data_is_a_config_error() -> None:
    """A scheduled parent due after the replay ends would never run: refused up front, naming it."""
    import pytest

    from marketdata.errors import ConfigError

    text = _TWO_PARENTS.replace('submit_at = "+60s"', 'submit_at = "+20m"')
    with pytest.raises(ConfigError, match=r"parent 'B': submit_at '\+20m' is .* after the data ends"):
        Engine.from_toml_text(text)


def test_non_finite_algo_numbers_are_config_errors() -> None:
    """NaN passes every range comparison and a signaling NaN has no float: both (and inf) are
    refused as config errors naming the parameter, not accepted or raised as ValueError."""
    import pytest

    from marketdata.errors import ConfigError

    base = ('[[parents]]\nid = "P"\nsymbol = "BTC-USDT"\nside = "buy"\nquantity = "1"\nalgo = "{algo}"\n'
            '[parents.params]\nend = "+2m"\n{key} = "{value}"\n')
    for algo, key in (("is", "risk_aversion"), ("twap", "catchup_tolerance"), ("is", "eta")):
        for value in ("nan", "sNaN", "inf"):
            with pytest.raises(ConfigError, match=rf"parents\[0\]\.params\.{key}.*not a (finite )?number"):
                extra = "risk_aversion = 0.000001\n" if algo == "is" and key != "risk_aversion" else ""
                Engine.from_toml_text(base.format(algo=algo, key=key, value=value) + extra)
