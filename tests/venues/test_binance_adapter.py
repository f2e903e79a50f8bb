"""BinanceSpotVenue against the loopback fake: signing and auth failures, clock resync, UNKNOWN
resolution after timeouts and dropped connections, duplicate and garbled stream messages, rate-limit
feedback, cancel-replace, maker fills, stream reconnection, secrets kept out of logs and reprs."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from pathlib import Path

import pytest
from binance_harness import API_KEY, API_SECRET, binance_rig, credentials, make_config, make_fake, make_instrument

from marketdata.clock import NS_PER_SECOND, LiveClock
from marketdata.errors import ConfigError, InsufficientFunds, RateLimited, VenueDisconnected, VenueTimeout
from marketdata.model import (
    ClientOrderId,
    Liquidity,
    Order,
    OrderEventKind,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from venues.base import Balance
from venues.binance import BinanceSpotVenue
from venues.binance.errors import AuthenticationError
from venues.order_manager import OrderManager

BOOK = ([("100.0", "1.000"), ("99.9", "2.000")], [("100.1", "1.000"), ("100.2", "2.000")])


def _order(inst, cid: str, side: Side, qty: str, price: str | None, *, tif: TimeInForce = TimeInForce.GTC,
           otype: OrderType = OrderType.LIMIT) -> Order:
    return Order(client_order_id=ClientOrderId(cid), venue=inst.venue, symbol=inst.symbol, side=side,
                 order_type=otype, lots=inst.qty_to_lots(qty),
                 price_ticks=None if price is None else inst.price_to_ticks(price), time_in_force=tif)


def _kinds(events, cid: str) -> list[OrderEventKind]:
    return [e.kind for e in events if e.client_order_id == cid]


async def _wait_for(cond, limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 (polling a condition another task changes)
            await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------- auth
async def test_bad_secret_is_refused_with_binance_code() -> None:
    inst = make_instrument()
    fake = make_fake(inst, Decimal(1000), Decimal(1))
    await fake.start()
    venue = BinanceSpotVenue(make_config(fake, inst, user_stream=False), LiveClock(),
                             credentials=credentials(secret="not-the-secret"))
    try:
        await venue.connect()  # /api/v3/time is not signed
        with pytest.raises(AuthenticationError) as ei:
            await venue.balances()
        assert ei.value.code == -1022 and "Signature for this request is not valid." in str(ei.value)
    finally:
        await venue.close()
        await fake.stop()


async def test_every_signed_request_is_signed_last_with_timestamp_and_recv_window() -> None:
    async with binance_rig() as rig:
        await rig.venue.balances()
        method, path, query = rig.fake.requests[-1]
        assert (method, path) == ("GET", "/api/v3/account")
        keys = [kv.split("=")[0] for kv in query.split("&")]
        assert keys[-3:] == ["recvWindow", "timestamp", "signature"]


async def test_timestamp_outside_recv_window_resyncs_and_resends_once() -> None:
    async with binance_rig() as rig:
        rig.fake.time_skew_ms = 5_000  # the venue's clock jumps ahead: our timestamps are now too old
        bal = await rig.venue.balances()
        assert bal["USDT"].free == Decimal(100_000)
        times = [r for r in rig.fake.requests if r[1] == "/api/v3/time"]
        assert len(times) == 2 and 4_000 < rig.venue.http.time_offset_ms < 6_000


# ---------------------------------------------------------------------------------------------- rejects
async def test_post_only_that_would_take_and_insufficient_funds_are_rejected_events() -> None:
    async with binance_rig(quote=Decimal(50)) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "pm-1", Side.BUY, "0.100", "100.1", tif=TimeInForce.POST_ONLY))
        await rig.venue.submit(_order(inst, "nf-1", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        pm = [e for e in rig.events if e.client_order_id == "pm-1"]
        nf = [e for e in rig.events if e.client_order_id == "nf-1"]
        assert [e.kind for e in pm] == [OrderEventKind.REJECTED] and pm[0].code == "-2010"
        assert "immediately match" in (pm[0].reason or "")
        assert [e.kind for e in nf] == [OrderEventKind.REJECTED] and "insufficient balance" in (nf[0].reason or "")
        rep = await rig.venue.order_status(ClientOrderId("nf-1"))
        assert rep.status is OrderStatus.REJECTED
        # LIMIT_MAKER went out as Binance's type, not as a timeInForce
        q = next(r[2] for r in rig.fake.requests if "pm-1" in r[2])
        assert "type=LIMIT_MAKER" in q and "timeInForce" not in q


async def test_unsupported_order_is_raised_before_sending() -> None:
    async with binance_rig(user_stream=False) as rig:
        from marketdata.errors import OrderRejected
        with pytest.raises(OrderRejected):
            await rig.venue.submit(_order(rig.instrument, "gtd-1", Side.BUY, "1", "99.0", tif=TimeInForce.GTD))
        with pytest.raises(OrderRejected):
            await rig.venue.submit(_order(rig.instrument, "bad~id", Side.BUY, "1", "99.0"))
        # match the client id parameter, not a bare substring (the hex signature can contain "bad")
        assert not any("newClientOrderId=gtd-1" in r[2] or "newClientOrderId=bad" in r[2]
                       for r in rig.fake.requests)


# ---------------------------------------------------------------------------------------------- UNKNOWN
async def test_slow_submit_times_out_and_status_query_resolves_it() -> None:
    async with binance_rig(user_stream=False, request_timeout_s=Decimal("0.5")) as rig:
        reports = []
        rig.venue.set_status_report_handler(reports.append)
        await rig.fake.set_book("BTCUSDT", *BOOK)
        rig.fake.fault("POST", "/api/v3/order", "slow", 1.5)
        with pytest.raises(VenueTimeout):
            await rig.venue.submit(_order(rig.instrument, "slow-1", Side.BUY, "1.000", "99.0"))
        assert _kinds(rig.events, "slow-1") == []  # UNKNOWN: nothing assumed
        await _wait_for(lambda: reports)
        assert reports[0].status is OrderStatus.NEW
        assert _kinds(rig.events, "slow-1") == [OrderEventKind.ACCEPTED]
        assert rig.venue.stats["resolved"] == 1


async def test_dropped_connection_after_a_fill_recovers_the_fills_from_my_trades() -> None:
    async with binance_rig(user_stream=False) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        rig.fake.fault("POST", "/api/v3/order", "drop_after")
        o = _order(rig.instrument, "drop-1", Side.BUY, "1.500", None, otype=OrderType.MARKET, tif=TimeInForce.IOC)
        with pytest.raises(VenueDisconnected):
            await rig.venue.submit(o)
        await _wait_for(lambda: OrderEventKind.FILLED in _kinds(rig.events, "drop-1"))
        evs = [e for e in rig.events if e.client_order_id == "drop-1"]
        assert [e.kind for e in evs] == [OrderEventKind.ACCEPTED, OrderEventKind.PARTIALLY_FILLED,
                                         OrderEventKind.FILLED]
        assert sum(e.fill.lots for e in evs if e.fill) == o.lots
        assert rig.venue.stats["recovered_fills"] == 2


async def test_dropped_connection_before_the_venue_saw_it_ends_rejected_after_recv_window() -> None:
    async with binance_rig(user_stream=False, recv_window_ms=200) as rig:
        rig.fake.fault("POST", "/api/v3/order", "drop_before")
        with pytest.raises(VenueDisconnected):
            await rig.venue.submit(_order(rig.instrument, "lost-1", Side.BUY, "1.000", "99.0"))
        await _wait_for(lambda: _kinds(rig.events, "lost-1"))
        ev = next(e for e in rig.events if e.client_order_id == "lost-1")
        assert ev.kind is OrderEventKind.REJECTED and ev.code == "-2013"
        assert rig.venue.stats["unresolved"] == 1


# ---------------------------------------------------------------------------------------------- stream
async def test_duplicate_wrapped_reports_count_each_fill_once_through_the_order_manager() -> None:
    async with binance_rig(order_resp_type="ACK") as rig:
        rig.fake.duplicate_reports = True
        rig.fake.wrap_events = True
        inst = rig.instrument
        om = OrderManager(LiveClock(), [inst])
        om_events = []
        rig.venue.set_event_handler(lambda e: (om_events.append(e), om.on_event(e)))
        await rig.fake.set_book("BTCUSDT", *BOOK)
        o = om.submit(venue=inst.venue, symbol=inst.symbol, side=Side.BUY, lots=inst.qty_to_lots("1.500"),
                      order_type=OrderType.MARKET, time_in_force=TimeInForce.IOC)
        await rig.venue.submit(o)
        await rig.settle()
        fills = [e.fill for e in om_events if e.fill is not None]
        assert len(fills) == 2 and len({f.trade_id for f in fills}) == 2
        assert rig.venue.stats["duplicates"] >= 3
        mo = om.order(o.client_order_id)
        assert mo.status is OrderStatus.FILLED and mo.executed_lots == o.lots


async def test_resting_order_filled_as_maker_on_the_stream() -> None:
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "mk-1", Side.BUY, "0.500", "100.0"))
        await rig.settle()
        await rig.fake.trade("BTCUSDT", "100.0", "2.000", Side.SELL)
        await rig.settle()
        evs = [e for e in rig.events if e.client_order_id == "mk-1"]
        assert [e.kind for e in evs] == [OrderEventKind.ACCEPTED, OrderEventKind.FILLED]
        f = evs[1].fill
        assert f is not None and f.liquidity is Liquidity.MAKER and f.fee < 0 and f.fee_currency == "USDT"
        assert f.price_ticks == inst.price_to_ticks("100.0") and f.lots == inst.qty_to_lots("0.500")


async def test_garbled_messages_are_logged_raw_and_do_not_stop_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    async with binance_rig() as rig:
        garbled = []
        rig.venue.set_garbled_handler(lambda v, raw, err: garbled.append((v, raw, err)))
        caplog.set_level(logging.WARNING, logger="venues.binance")
        await rig.fake.push_raw("{not json")
        await rig.fake.push_raw('{"e": "executionReport", "s": "BTCUSDT", "x": "TRADE"}')
        await rig.fake.push_raw('{"subscriptionId": 0, "event": {"e": "outboundAccountPosition"}}')
        await rig.fake.push_raw('{"e": "outboundAccountPosition", "E": 1, "u": 1, '
                                '"B": [{"a": "BTC", "f": "-1", "l": "0"}]}')
        await rig.fake.push_raw('{"e": "balanceUpdate", "E": 1, "a": "BTC", "d": "1.0", "T": 1}')
        await rig.settle()
        assert rig.venue.stats["garbled"] == 4 and len(garbled) == 4
        assert "{not json" in caplog.text and '"x": "TRADE"' in caplog.text and "KeyError: 'B'" in caplog.text
        assert "'BTC' not a non-negative number" in caplog.text
        await rig.fake.set_book("BTCUSDT", *BOOK)
        await rig.venue.submit(_order(rig.instrument, "after-1", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        assert _kinds(rig.events, "after-1") == [OrderEventKind.ACCEPTED]
        assert rig.venue.user_stream is not None and rig.venue.user_stream.connections == 1


async def test_user_stream_reconnects_and_reconciles_missed_fills() -> None:
    async with binance_rig(ws_reconnect_max_s=Decimal("0.2")) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "gap-1", Side.BUY, "0.500", "100.0"))
        await rig.settle()
        ws = rig.venue.user_stream
        assert ws is not None
        await rig.fake.drop_user_streams()
        await _wait_for(lambda: not ws.connected)
        # fills while we are not listening: the reports go nowhere
        await rig.fake.trade("BTCUSDT", "100.0", "2.000", Side.SELL)
        await _wait_for(lambda: OrderEventKind.FILLED in _kinds(rig.events, "gap-1"))
        assert ws.connections == 2
        assert rig.venue.stats["recovered_fills"] == 1
        # the balance update of that fill was lost with the stream: the reconnect read the account
        ledger = rig.fake.sim._free["BTC"]
        assert ledger > 10
        await _wait_for(lambda: rig.venue.cached_balance("BTC") == Balance("BTC", ledger, Decimal(0)))


# ---------------------------------------------------------------------------------------------- replace
async def test_cancel_replace_cancels_first_then_places_the_new_order() -> None:
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.venue.submit(_order(inst, "rp-1", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        await rig.venue.replace(ClientOrderId("rp-1"), price_ticks=inst.price_to_ticks("99.5"))
        await rig.settle()
        new = rig.venue.replacements[ClientOrderId("rp-1")]
        assert new == "rp-1.r1"
        assert _kinds(rig.events, "rp-1") == [OrderEventKind.ACCEPTED, OrderEventKind.CANCELED]
        assert _kinds(rig.events, new) == [OrderEventKind.ACCEPTED]
        opens = await rig.venue.open_orders()
        assert [(r.client_order_id, r.price_ticks) for r in opens] == [(new, inst.price_to_ticks("99.5"))]
        assert rig.venue.info.capabilities.native_modify is False
        # replacing an order that is gone: the cancel fails, the new order is not attempted
        await rig.venue.cancel(ClientOrderId(new))
        await rig.settle()
        await rig.venue.replace(ClientOrderId(new), price_ticks=inst.price_to_ticks("99.4"))
        await rig.settle()
        assert _kinds(rig.events, new)[-1] is OrderEventKind.CANCEL_REJECTED
        newer = rig.venue.replacements[ClientOrderId(new)]
        ev = [e for e in rig.events if e.client_order_id == newer]
        assert [e.kind for e in ev] == [OrderEventKind.REJECTED] and "not attempted" in (ev[0].reason or "")


# ---------------------------------------------------------------------------------------------- limits
async def test_429_blocks_the_limiter_until_retry_after() -> None:
    async with binance_rig(user_stream=False, fake_kw={"weight_limit": 45, "retry_after_s": 1}) as rig:
        lim = rig.venue.limiter
        await rig.venue.balances()
        assert lim.used("REQUEST_WEIGHT", rig.venue.http.timestamp_ms() * 1_000_000) >= rig.fake.used_weight - 1
        with pytest.raises(RateLimited) as ei:
            for _ in range(5):
                await rig.venue.balances()
        assert ei.value.retry_after_ns == NS_PER_SECOND and ei.value.code == -1003
        clock = LiveClock()
        assert lim.blocked_until_ns - clock.now_ns() > 0.5 * NS_PER_SECOND
        rig.fake.weight_limit = 10_000
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await rig.venue.balances()  # paced: waits for the block to end
        assert loop.time() - t0 >= 0.5


async def test_order_count_header_feeds_the_orders_bucket() -> None:
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        rig.fake.use_orders(20)  # other clients of the same account used 20 of the 50 per 10 s
        await rig.venue.submit(_order(rig.instrument, "oc-1", Side.BUY, "1.000", "99.0"))
        assert rig.venue.limiter.used("ORDERS_10S", LiveClock().now_ns()) >= 21


# ---------------------------------------------------------------------------------------------- secrets
async def test_secrets_never_in_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with binance_rig(user_stream=True, request_timeout_s=Decimal("0.5")) as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        await rig.venue.submit(_order(rig.instrument, "s-1", Side.BUY, "1.000", "99.0"))
        await rig.venue.submit(_order(rig.instrument, "s-2", Side.BUY, "0.001", "1.0"))
        rig.fake.fault("POST", "/api/v3/order", "slow", 1.0)
        with pytest.raises(VenueTimeout):
            await rig.venue.submit(_order(rig.instrument, "s-3", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        texts = [caplog.text, repr(rig.venue), repr(rig.venue.http), repr(rig.venue.config),
                 repr(credentials()), str(credentials().api_secret), f"{credentials().api_key}"]
        signatures = [q.rpartition("signature=")[2] for _, _, q in rig.fake.requests if "signature=" in q]
        assert signatures
        for t in texts:
            assert API_SECRET not in t and API_KEY not in t
            assert not any(s in t for s in signatures)


def test_credentials_come_from_the_environment_variables_named_in_config() -> None:
    inst = make_instrument()
    fake = make_fake(inst, Decimal(1), Decimal(1))
    cfg = make_config(fake, inst, api_key_env="MY_KEY", api_secret_env="MY_SECRET")
    with pytest.raises(ConfigError) as ei:
        BinanceSpotVenue(cfg, LiveClock(), environ={"MY_KEY": API_KEY})
    assert "MY_SECRET" in str(ei.value) and API_KEY not in str(ei.value)
    v = BinanceSpotVenue(cfg, LiveClock(), environ={"MY_KEY": API_KEY, "MY_SECRET": API_SECRET})
    assert API_SECRET not in repr(v)


async def test_insufficient_funds_maps_to_its_error() -> None:
    from venues.binance.errors import map_error
    e = map_error(400, -2010, "Account has insufficient balance for requested action.", venue="binance-spot")
    assert isinstance(e, InsufficientFunds)


def _read_all(directory: Path) -> bytes:
    """The journal database and its WAL/SHM files, concatenated."""
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file())


async def test_secrets_never_reach_the_journal(tmp_path: Path) -> None:
    from venues.journal import Journal
    path = tmp_path / "j.sqlite"
    journal = Journal(path, synchronous="NORMAL")
    async with binance_rig() as rig:
        inst = rig.instrument
        om = OrderManager(LiveClock(), [inst], journal=journal)
        rig.venue.set_event_handler(om.on_event)
        rig.venue.set_garbled_handler(om.on_garbled)
        await rig.fake.set_book("BTCUSDT", *BOOK)
        o = om.submit(venue=inst.venue, symbol=inst.symbol, side=Side.BUY, lots=inst.qty_to_lots("1.2"),
                      order_type=OrderType.MARKET, time_in_force=TimeInForce.IOC)
        await rig.venue.submit(o)
        await rig.fake.push_raw("{garbled")
        await rig.settle()
        signatures = [q.rpartition("signature=")[2] for _, _, q in rig.fake.requests if "signature=" in q]
    kinds = [r.kind for r in journal.read()]
    journal.close()
    assert "fill" in kinds and "garbled_event" in kinds
    blob = _read_all(tmp_path)
    for s in [API_KEY, API_SECRET, *signatures]:
        assert s.encode() not in blob


async def test_balance_cache_seeded_from_the_account_and_kept_current_by_the_stream() -> None:
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        inst = rig.instrument
        await rig.settle()
        # connect reads the account once the user stream is up
        assert rig.venue.balances_seeded
        assert rig.venue.cached_balance("USDT") == Balance("USDT", Decimal(100_000), Decimal(0))
        assert rig.venue.cached_balance("XRP") == Balance("XRP", Decimal(0))   # not held: zero
        reads = sum(1 for r in rig.fake.requests if r[1] == "/api/v3/account")
        await rig.venue.submit(_order(inst, "rest-1", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        # the resting buy locked 99 USDT (and the fake venue's fee allowance): known from
        # outboundAccountPosition, no new request
        usdt = rig.venue.cached_balance("USDT")
        assert usdt is not None and usdt.total == 100_000 and Decimal(99) <= usdt.locked < Decimal("99.1")
        await rig.venue.submit(_order(inst, "take-1", Side.SELL, "0.500", "100.0", tif=TimeInForce.IOC))
        await rig.settle()
        btc = rig.venue.cached_balance("BTC")
        assert btc is not None and btc.free == Decimal("9.5")
        usdt = rig.venue.cached_balance("USDT")
        assert usdt is not None and Decimal("99900.9") < usdt.free < Decimal(99_901 + 50)   # +50 less the fee
        assert sum(1 for r in rig.fake.requests if r[1] == "/api/v3/account") == reads
        # a REST answer older than the stream's last update does not overwrite it; a newer one does,
        # and zeroes an asset the account no longer holds
        held_ts = rig.venue._balances["BTC"][0]
        rig.venue._update_balances(held_ts - 1, {"BTC": Balance("BTC", Decimal(7))}, complete=True)
        assert rig.venue.cached_balance("BTC") == btc and rig.venue.cached_balance("USDT") == usdt
        rig.venue._update_balances(held_ts + 1, {"BTC": Balance("BTC", Decimal(7))}, complete=True)
        assert rig.venue.cached_balance("BTC") == Balance("BTC", Decimal(7))
        assert rig.venue.cached_balance("USDT") == Balance("USDT", Decimal(0))


async def test_balance_handler_hears_only_rises_and_cannot_lose_the_balances(
        caplog: pytest.LogCaptureFixture) -> None:
    async with binance_rig() as rig:
        await rig.fake.set_book("BTCUSDT", *BOOK)
        await rig.settle()
        heard: list[list[str]] = []
        rig.venue.set_balance_handler(heard.append)
        await rig.venue.submit(_order(rig.instrument, "lock-1", Side.BUY, "1.000", "99.0"))
        await rig.settle()
        assert heard == []    # a resting buy only lowers the free USDT
        await rig.fake.deposit("BTC", Decimal("0.25"))   # balanceUpdate + outboundAccountPosition
        await rig.settle()
        assert heard == [["BTC"]] and rig.venue.cached_balance("BTC") == Balance("BTC", Decimal("10.25"))
        await rig.venue.cancel(ClientOrderId("lock-1"))
        await rig.settle()
        assert heard[-1] == ["USDT"]    # the cancel released the 99 USDT
        assert rig.venue.stats["garbled"] == 0    # balanceUpdate is a known event, ignored
        await rig.fake.deposit("ETH", Decimal(2))    # an asset the account did not hold (zero: omitted)
        await rig.settle()
        assert heard[-1] == ["ETH"] and rig.venue.cached_balance("ETH") == Balance("ETH", Decimal(2))

        def broken(_assets: list[str]) -> None:
            raise RuntimeError("handler bug")

        rig.venue.set_balance_handler(broken)
        caplog.set_level(logging.ERROR, logger="venues.binance")
        await rig.fake.deposit("BTC", Decimal("0.75"))
        await rig.settle()
        assert rig.venue.cached_balance("BTC") == Balance("BTC", Decimal(11))
        assert "balance handler failed for BTC" in caplog.text


async def test_balance_cache_unknown_until_the_account_is_read() -> None:
    inst = make_instrument()
    fake = make_fake(inst, Decimal(1000), Decimal(10))
    await fake.start()
    # the account read at connect is dropped: connect goes on, the balances stay unknown
    fake.fault("GET", "/api/v3/account", "slow", 1.0)   # answered after the 0.5 s timeout
    venue = BinanceSpotVenue(make_config(fake, inst, user_stream=False, poll_interval_s=Decimal(0),
                                         request_timeout_s=Decimal("0.5")), LiveClock(), credentials=credentials())
    try:
        await venue.connect()
        assert not venue.balances_seeded and venue.cached_balance("USDT") is None
        assert venue.balances_received_ns is None
        bal = await venue.balances()
        assert bal["BTC"].free == 10 and venue.cached_balance("BTC") == bal["BTC"]
        assert venue.balances_received_ns is not None
    finally:
        await venue.close()
        await fake.stop()


# ---------------------------------------------------------------------------------------------- REST poll
async def test_without_the_user_stream_a_poll_reports_resting_fills_and_balances() -> None:
    """user_stream = false: the poll loop finds a resting order's maker fills (openOrders shows
    the executed quantity grow, then the order gone) and keeps the account current."""
    async with binance_rig(user_stream=False, poll_interval_s=Decimal("0.05")) as rig:
        inst = rig.instrument
        assert rig.venue.cached_balance("USDT") == Balance("USDT", Decimal(100_000), Decimal(0)), \
            "the account is read at connect without a stream"
        await rig.fake.set_book("BTCUSDT", *BOOK)
        await rig.venue.submit(_order(inst, "rest-1", Side.BUY, "1.000", "99.9"))
        await rig.venue.submit(_order(inst, "idle-1", Side.BUY, "0.500", "99.0"))   # never fills
        assert _kinds(rig.events, "rest-1") == [OrderEventKind.ACCEPTED]   # the REST answer alone
        await _wait_for(lambda: rig.venue.cached_balance("USDT").locked > 0)
        await rig.fake.trade("BTCUSDT", "99.9", "2.400", Side.SELL)    # 2 BTC ahead of us, 0.4 fills us
        await _wait_for(lambda: OrderEventKind.PARTIALLY_FILLED in _kinds(rig.events, "rest-1"))
        await rig.fake.trade("BTCUSDT", "99.8", "1.000", Side.SELL)    # through our price: the rest
        await _wait_for(lambda: OrderEventKind.FILLED in _kinds(rig.events, "rest-1"))
        fills = [e.fill for e in rig.events if e.client_order_id == "rest-1" and e.fill]
        assert sum(f.lots for f in fills) == inst.qty_to_lots("1.000")
        assert len({f.trade_id for f in fills}) == len(fills), "each venue trade reported once"
        assert all(f.liquidity is Liquidity.MAKER for f in fills)
        await _wait_for(lambda: rig.venue.cached_balance("BTC") is not None
                        and rig.venue.cached_balance("BTC").free == Decimal(11))
        assert _kinds(rig.events, "idle-1") == [OrderEventKind.ACCEPTED]
        assert rig.venue.stats["polls"] >= 3
        # the order that never changed is never queried one by one: openOrders covers it
        assert not any(p == "/api/v3/order" and m == "GET" and "idle-1" in q for m, p, q in rig.fake.requests)


async def test_poll_interval_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="poll_interval_s"):
        make_config(make_fake(make_instrument(), Decimal(1), Decimal(1)), make_instrument(),
                    user_stream=False, poll_interval_s=Decimal(-1))
