from __future__ import annotations

from decimal import Decimal as D

import pytest

from marketdata.errors import RiskRejected
from marketdata.model import Side
from router.risk import PreTradeRisk, RiskCheck, RiskLimits


def chk(qty: str = "1", px: str | None = "100", side: Side = Side.BUY, mid: str | None = "100",
        parent: str | None = "p1", sym: str = "BTC-USDT") -> RiskCheck:
    return RiskCheck(sym, side, D(qty), D(px) if px else None, parent, D(mid) if mid else None)


def test_order_and_parent_notional() -> None:
    r = PreTradeRisk(RiskLimits(max_order_notional=D(500), max_parent_notional=D(800)))
    r.check(chk("4"))
    with pytest.raises(RiskRejected, match="max_order_notional"):
        r.check(chk("6"))
    r.check(chk("4"))
    with pytest.raises(RiskRejected, match="max_parent_notional"):
        r.check(chk("1"))
    assert r.refusals == 2
    r.check(chk("1", parent="p2"))


def test_price_collar_both_sides() -> None:
    r = PreTradeRisk(RiskLimits(price_collar_bps=D(50)))
    r.check(chk(px="100.5"))
    with pytest.raises(RiskRejected, match="price_collar"):
        r.check(chk(px="100.6"))
    r.check(chk(px="99.5", side=Side.SELL))
    with pytest.raises(RiskRejected, match="price_collar"):
        r.check(chk(px="99.4", side=Side.SELL))
    with pytest.raises(RiskRejected, match="no consolidated mid"):
        r.check(chk(mid=None))


def test_blacklist_position_kill_switch() -> None:
    r = PreTradeRisk(RiskLimits(blacklist=frozenset({"LUNA-USDT"}), max_position={"BTC-USDT": D(3)}))
    with pytest.raises(RiskRejected, match="blacklist"):
        r.check(chk(sym="LUNA-USDT"))
    r.check(chk("2"))
    with pytest.raises(RiskRejected, match="max_position"):
        r.check(chk("2"))
    r.on_fill("BTC-USDT", Side.BUY, D(2))
    r.on_order_released("BTC-USDT", Side.BUY, D(2))
    r.check(chk("1"))
    r.check(chk("5", side=Side.SELL))
    r.trip_kill_switch("operator")
    with pytest.raises(RiskRejected, match="kill_switch"):
        r.check(chk("0.1"))
    r.reset_kill_switch()
    with pytest.raises(RiskRejected, match="quantity"):
        r.check(chk("0"))
