"""Regression tests of the TCA review: each test is a small scenario with its answer worked out by
hand in the docstring, and each failed before the fix it guards."""

from __future__ import annotations

import gzip
import json
import re
from decimal import Decimal as D
from fractions import Fraction as Fr
from pathlib import Path
from typing import Any

import pytest
from tca_helpers import T0, synthetic_journal_records, write_journal

from marketdata.errors import DataError
from marketdata.model import Side
from tca import analyze, load_fills_csv, load_journal
from tca.loaders import fee_in_quote, parse_time_ns, read_binance_capture
from tca.metrics import ParentAnalysis
from tca.model import Execution, FillRecord, ParentOrder
from tca.report import render_html

S = 1_000_000_000
BP = 10_000


def _fill(ts: int, price: str, qty: str, venue: str = "A", fee: str = "0") -> FillRecord:
    return FillRecord(parent_id="P", venue=venue, ts_ns=ts, price=D(price), quantity=D(qty), fee=D(fee),
                      fee_currency="USDT", fee_quote=D(fee))


def test_completion_time_is_last_fill_time_even_if_fills_unsorted() -> None:
    """``analyze`` is public API and takes an :class:`Execution` as given. A buy of 2 starting at
    t0 with fills at t0+15s (1 @ 101) and t0+3s (1 @ 100), listed in that order: the last fill
    is at t0+15s, so completion_time_s = (t0+15s - t0)/1e9 = 15, not 3 (the time of the fill
    that happens to be listed last)."""
    par = ParentOrder("P", "BTC-USDT", Side.BUY, D(2), T0, T0, end_ts_ns=T0 + 20 * S)
    ex = Execution(par, [_fill(T0 + 15 * S, "101", "1"), _fill(T0 + 3 * S, "100", "1")])
    m = analyze(ex).metrics
    assert m["completion_time_s"] == 15
    assert m["average_price"] == Fr("100.5")


def test_iso_time_keeps_nanoseconds() -> None:
    """The fills CSV takes ISO 8601 times; sorex times are integer nanoseconds.
    2024-08-08T23:55:40.123456789Z = 1723161340 s + 123456789 ns = 1723161340123456789 ns
    (datetime alone keeps only microseconds: ...123456000). Fewer digits are a plain fraction
    (.5 = 500000000 ns), an offset still applies (+02:00 two hours earlier in UTC)."""
    assert parse_time_ns("2024-08-08T23:55:40.123456789Z", "x") == 1_723_161_340_123_456_789
    assert parse_time_ns("2024-08-09T01:55:40.000000001+02:00", "x") == 1_723_161_340_000_000_001
    assert parse_time_ns("2024-08-08T23:55:40.5Z", "x") == 1_723_161_340_500_000_000
    assert parse_time_ns("2024-08-08T23:55:40Z", "x") == 1_723_161_340_000_000_000
    assert parse_time_ns("1969-12-31T23:59:59.25Z", "x") == -750_000_000
    with pytest.raises(DataError, match="no UTC offset"):
        parse_time_ns("2024-08-08T23:55:40.123456789", "x")


def test_fills_csv_iso_nanosecond_fill_time(tmp_path: Path) -> None:
    """Through the CSV: parent at 23:55:40Z, one fill at 23:55:40.000000250Z: the fill time is
    start + 250 ns, so completion_time_s = 250/1e9 (not 0)."""
    p = tmp_path / "f.csv"
    p.write_text("record,parent_id,symbol,side,quantity,time,venue,price\n"
                 "parent,P,BTC-USDT,buy,1,2024-08-08T23:55:40Z,,\n"
                 "fill,P,,,1,2024-08-08T23:55:40.000000250Z,A,100\n")
    [ex] = load_fills_csv(p)
    assert ex.fills[0].ts_ns - ex.parent.start_ts_ns == 250
    assert analyze(ex).metrics["completion_time_s"] == Fr(250, S)


def _capture(path: Path, lines: list[tuple[int, dict[str, object]]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for local, msg in lines:
            fh.write(f"{local} {json.dumps(msg)}\n")
    return path


def test_raw_reader_stamps_futures_quotes_at_transaction_time(tmp_path: Path) -> None:
    """Futures bookTicker messages carry T (transaction time, the matching engine's clock, the
    same clock as trade T) and E (push time, here 11 ms later). marketdata.replay stamps them at
    T; the built-in reader must too, or mids lag trades. Quotes: 100/102 at T=1000 ms (E=1011),
    104/106 at T=1005 ms (E=1011, same push). A trade at T=1006 ms. Expected with T: mid at
    1000 ms = 101, at 1005 ms = 105, at 1003 ms = 101. With E both quotes land at 1011 ms and the
    mids at 1000-1006 ms are missing."""
    f = _capture(tmp_path / "coinm_btcusd_perp_test.gz", [
        (5_000, {"stream": "btcusd_perp@bookTicker", "data": {
            "u": 1, "e": "bookTicker", "s": "BTCUSD_PERP", "ps": "BTCUSD", "b": "100", "B": "1", "a": "102",
            "A": "1", "T": 1000, "E": 1011}}),
        (5_001, {"stream": "btcusd_perp@bookTicker", "data": {
            "u": 2, "e": "bookTicker", "s": "BTCUSD_PERP", "ps": "BTCUSD", "b": "104", "B": "1", "a": "106",
            "A": "1", "T": 1005, "E": 1011}}),
        (5_002, {"stream": "btcusd_perp@trade", "data": {
            "e": "trade", "E": 1012, "T": 1006, "s": "BTCUSD_PERP", "t": 7, "p": "105", "q": "21", "X": "MARKET",
            "m": False}}),
    ])
    s = read_binance_capture(f)["BTC-USD"]
    ms = 1_000_000
    assert s.mid_at(1000 * ms) == 101
    assert s.mid_at(1003 * ms) == 101
    assert s.mid_at(1005 * ms) == 105
    assert s.trade_ts == [1006 * ms] and s.trade_qty == [D(20)]   # 21 contracts x 100 USD / 105


def test_raw_reader_spot_quotes_without_times_use_offset(tmp_path: Path) -> None:
    """Spot bookTicker has neither T nor E: local receive time minus the offset measured on the
    last message with E (a trade received at local 2_000_000_000 ns with E=1500 ms: offset
    500 ms). A quote received at local 2_100_000_000 ns is stamped 1_600_000_000 ns."""
    f = _capture(tmp_path / "spot_btcusdt_test.gz", [
        (2_000_000_000, {"stream": "btcusdt@trade", "data": {
            "e": "trade", "E": 1500, "T": 1499, "s": "BTCUSDT", "t": 1, "p": "100", "q": "1", "m": True}}),
        (2_100_000_000, {"stream": "btcusdt@bookTicker", "data": {
            "u": 3, "s": "BTCUSDT", "b": "99", "B": "1", "a": "101", "A": "1"}}),
    ])
    s = read_binance_capture(f)["BTC-USDT"]
    assert s.mid_ts == [1_600_000_000] and s.mid_px == [D(100)]


@pytest.mark.parametrize(("column", "value"), [("decision_price", "0"), ("arrival_price", "-1"),
                                               ("end_price", "0")])
def test_fills_csv_rejects_non_positive_prices(tmp_path: Path, column: str, value: str) -> None:
    """A decision price of 0 makes the paper value S*Pd = 0 and every IS bps a division by zero
    (analyze raised ZeroDivisionError, the CLI a traceback instead of exit 2). A non-positive
    given price is a bad number: DataError naming the file and line 2."""
    cols = {"decision_price": "", "arrival_price": "", "end_price": ""}
    cols[column] = value
    p = tmp_path / "f.csv"
    p.write_text("record,parent_id,symbol,side,quantity,time,venue,price,decision_price,arrival_price,end_price\n"
                 f"parent,P,BTC-USDT,buy,1,1000,,,{cols['decision_price']},{cols['arrival_price']},"
                 f"{cols['end_price']}\n"
                 "fill,P,,,0.5,1001,A,100,,,\n")
    with pytest.raises(DataError, match=re.escape(f"f.csv:2: {column}")):
        load_fills_csv(p)


def test_journal_rejects_non_positive_prices(tmp_path: Path) -> None:
    """Same for a journal parent_submitted with arrival_price "0" (decision = arrival = 0 without
    market data: paper value 0): DataError naming the journal seq 2."""
    recs = synthetic_journal_records()
    recs[1][2]["arrival_price"] = "0"
    with pytest.raises(DataError, match=r"j.sqlite seq 2: .*arrival_price"):
        load_journal(write_journal(tmp_path / "j.sqlite", recs))


def test_fills_csv_with_utf8_bom(tmp_path: Path) -> None:
    """"Save as CSV UTF-8" (Excel) writes a byte-order mark before the header; the file is still
    the documented UTF-8 CSV. Expected: one parent P with one fill 1 @ 100 (it raised
    "missing column 'record'" because the first column was read as '\\ufeffrecord')."""
    p = tmp_path / "f.csv"
    p.write_bytes(b"\xef\xbb\xbfrecord,parent_id,symbol,side,quantity,time,venue,price\n"
                  b"parent,P,BTC-USDT,sell,2,1000,,\nfill,P,,,1,1001,A,100\n")
    [ex] = load_fills_csv(p)
    assert ex.parent.side is Side.SELL and [f.price for f in ex.fills] == [D(100)]


def test_average_price_and_fees_are_exact_beyond_28_digits() -> None:
    """Money is exact Decimal/Fraction (docs/tca.md: "computed exactly"). One fill of
    q = 0.1234567890123456 at p = 61800.1234567891: p*q has 32 significant digits, so with the
    default 28-digit context the notional was rounded and the average price was not p.
    Expected: average_price == p exactly, arrival slippage == (p - 61800)/61800*1e4 exactly,
    and a base-currency fee of 0.0000123456789012 BTC converts to exactly fee * p."""
    p, q = D("61800.1234567891"), D("0.1234567890123456")
    par = ParentOrder("P", "BTC-USDT", Side.BUY, q, 0, 0, decision_price=D(61800), arrival_price=D(61800))
    fee = D("0.0000123456789012")
    conv = fee_in_quote(fee, "BTC", "BTC-USDT", p)
    assert conv is not None and Fr(conv) == Fr(fee) * Fr(p)
    ex = Execution(par, [FillRecord("P", "A", 5, p, q, fee, "BTC", conv)])
    m = analyze(ex).metrics
    assert m["average_price"] == Fr(p)
    assert m["venues"][0]["average_price"] == Fr(p)
    assert m["arrival_slippage_bps"] == (Fr(p) - 61800) / 61800 * BP
    assert Fr(m["fees"]) == Fr(fee) * Fr(p)


def _small_analysis() -> ParentAnalysis:
    """A buy of 0.00005 BTC filled 0.00004 @ 61800 with fee 0.000012 USDT (no market data)."""
    par = ParentOrder("P", "BTC-USDT", Side.BUY, D("0.00005"), T0, T0, decision_price=D(61800),
                      arrival_price=D(61800), end_price=D(61800), end_ts_ns=T0 + S)
    return analyze(Execution(par, [_fill(T0 + S // 2, "61800", "0.00004", fee="0.000012")]))


def test_html_summary_uses_each_rows_decimals() -> None:
    """The summary table declares 6 decimals for quantities and fees (Binance lots are 0.00001
    BTC) but rendered every row with 4, so this parent showed quantity 0.0001, filled quantity
    0.0000 and fees 0.0000. Expected cells: 0.000050, 0.000040, 0.000012; fill rate (4 decimals)
    0.8000."""
    html = render_html([_small_analysis()])
    summary = html.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
    rows = dict(re.findall(r"<tr><td class=\"l\">([^<]+)</td><td[^>]*>([^<]*)</td></tr>", summary))
    assert rows["quantity"] == "0.000050"
    assert rows["filled quantity"] == "0.000040"
    assert rows["fees (quote)"] == "0.000012"
    assert rows["fill rate"] == "0.8000"


def test_html_reversion_not_labelled_cost_convention() -> None:
    """docs/tca.md: positive is a cost for every metric *except* price_improvement_bps and
    reversion_bps (positive = the price moved back after the end). The markout/reversion chart
    titled both "cost convention"; its title must not call reversion a cost."""
    html = render_html([_small_analysis()])
    [title] = re.findall(r'aria-label="(Markouts[^"]*)"', html)
    assert "reversion" in title
    assert "cost convention)" not in title
    assert "moved back" in title


def _replace_records(native: bool, outcome: str) -> list[tuple[int, str, dict[str, Any]]]:
    """The synthetic journal plus a replace of c1 (B, GTC 0.5 @ 102.5) to 0.6 @ 102.6 at +16 s,
    then ``outcome``: the venue's ``replaced`` or ``rejected`` event (native), or nothing more
    (cancel-then-new: the new order c1r is filled 0.1 at +17 s)."""
    recs = synthetic_journal_records()
    pid = "P1"
    replace = {"action": "replace", "client_order_id": f"{pid}-c1", "venue": "B", "symbol": "BTC-USDT",
               "side": "buy", "order_type": "limit", "time_in_force": "GTC", "quantity": "0.6",
               "price": "102.6", "parent_id": pid, "decision_id": f"{pid}-d1", "native": native}
    extra: list[tuple[int, str, dict[str, Any]]] = []
    if native:
        replace_event = {"kind": outcome, "client_order_id": f"{pid}-c1", "venue": "B", "venue_order_id": "3",
                         "reason": "replace refused" if outcome == "rejected" else None, "code": None}
        if outcome == "replaced":
            replace_event.update(new_quantity="0.6", new_price="102.6")
        extra = [(T0 + 16 * S + 1, "order_event", replace_event)]
    else:
        replace["quantity"] = "0.2"        # the new order is for what remains: 0.6 - 0.4 filled
        replace["new_client_order_id"] = f"{pid}-c1r"
        extra = [(T0 + 17 * S, "fill", {
            "client_order_id": f"{pid}-c1r", "parent_id": pid, "venue": "B", "symbol": "BTC-USDT", "side": "buy",
            "trade_id": "B8", "price": "102.6", "quantity": "0.1", "fee": "0", "fee_currency": "USDT",
            "liquidity": "maker", "ts_event": T0 + 17 * S})]
    i = next(k for k, r in enumerate(recs) if r[0] > T0 + 16 * S)
    return [*recs[:i], (T0 + 16 * S, "order_command", replace), *extra, *recs[i:]]


@pytest.mark.parametrize(("native", "outcome", "c1_qty", "c1_price", "c1_final"), [
    (True, "replaced", D("0.6"), D("102.6"), "canceled"),
    (True, "rejected", D("0.5"), D("102.5"), "canceled"),
    (False, "", D("0.5"), D("102.5"), "canceled"),
])
def test_journal_replace_changes_the_child_only_as_the_venue_did(
        tmp_path: Path, native: bool, outcome: str, c1_qty: D, c1_price: D, c1_final: str) -> None:
    """A native replace applies once the venue says ``replaced``; a refused one (``rejected``
    while the order works) leaves the child as it was and does not make it a rejected order;
    a cancel-then-new replace starts a new child (``new_client_order_id``) with its own fills.
    The loader used to apply the journaled size and price to the old child at once, always."""
    [ex] = load_journal(write_journal(tmp_path / "j.sqlite", _replace_records(native, outcome)))
    kids = {c.client_order_id: c for c in ex.children}
    c1 = kids["P1-c1"]
    assert (c1.quantity, c1.price, c1.replaces, c1.final_status) == (c1_qty, c1_price, 1, c1_final)
    assert c1.reject_reason is None
    if not native:
        new = kids["P1-c1r"]
        assert (new.quantity, new.price, new.venue, new.decision_id, new.filled) == (
            D("0.2"), D("102.6"), "B", "P1-d1", D("0.1"))
        assert new.submit_ts_ns == T0 + 16 * S


@pytest.mark.parametrize(("field", "value", "message"), [
    ("quantity", D(0), "quantity 0 must be positive"),
    ("arrival_price", D(-1), "arrival_price -1 must be positive"),
])
def test_analyze_refuses_a_parent_without_a_positive_quantity_or_price(field: str, value: D, message: str) -> None:
    """Through the Python API (the loaders refuse these with the file and line): a clear
    ValueError naming the parent, not a ZeroDivisionError from inside the metrics."""
    kw: dict[str, Any] = {"parent_id": "P9", "symbol": "BTC-USDT", "side": Side.BUY, "quantity": D(1),
                          "start_ts_ns": T0, "decision_ts_ns": T0, field: value}
    with pytest.raises(ValueError, match=f"parent P9: {message}"):
        analyze(Execution(parent=ParentOrder(**kw), fills=[]))
