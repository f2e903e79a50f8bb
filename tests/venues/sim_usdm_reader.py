"""Real Binance USD-M BTCUSDT events for the simulated-venue tests and benchmark.

Uses ``marketdata.replay.open_dataset`` when that module provides it; otherwise a minimal local
reader of the raw capture (``<recv_ns> <json>`` lines) that follows Binance's futures local-book
procedure: buffer diffs, apply the REST snapshot, drop diffs with ``u < lastUpdateId``, then chain on
``pu``. Data: ../shared/data/binance-btc/usdm_btcusdt_20240808.gz (Binance public market data, from
the MIT-licensed hftbacktest examples; see the LICENSE beside it).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
from decimal import Decimal
from pathlib import Path

from marketdata.model import (
    BookDeltas,
    Instrument,
    InstrumentKind,
    MarketEvent,
    QuoteTick,
    Side,
    Symbol,
    TradeId,
    TradeTick,
    VenueId,
)

VENUE = VenueId("binance-usdm")
SYMBOL = Symbol("BTC-USDT")
USDM_FILE = "usdm_btcusdt_20240808.gz"


def shared_dir() -> Path:
    env = os.environ.get("SOREX_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared"


def usdm_path() -> Path:
    return shared_dir() / "data" / "binance-btc" / USDM_FILE


def usdm_instrument(min_notional: str = "100") -> Instrument:
    """Binance USD-M BTCUSDT rules: tick 0.1, lot 0.001, min qty 0.001, min notional 100 USDT."""
    return Instrument(venue=VENUE, symbol=SYMBOL, venue_symbol="BTCUSDT", base="BTC", quote="USDT",
                      tick_size=Decimal("0.1"), lot_size=Decimal("0.001"), min_quantity=Decimal("0.001"),
                      min_notional=Decimal(min_notional), kind=InstrumentKind.PERPETUAL)


def _from_replay(path: Path) -> list[MarketEvent] | None:
    try:
        from marketdata.replay import open_dataset  # type: ignore[attr-defined]
    except ImportError:
        return None
    ds = open_dataset([path])
    events = list(ds.events())
    if not events or events[0].venue != VENUE:
        return None
    return events


@functools.lru_cache(maxsize=2)
def load_usdm_events(local_only: bool = False) -> tuple[MarketEvent, ...]:
    """All events of the USD-M capture in ts_event order (snapshot first), cached per process."""
    path = usdm_path()
    if not local_only:
        try:
            got = _from_replay(path)
        except Exception:  # the replay helper's reader is optional here; fall back to ours
            got = None
        if got is not None:
            return tuple(got)
    return tuple(_read_local(path))


def _read_local(path: Path) -> list[MarketEvent]:
    inst = usdm_instrument()
    px, qty = inst.parse_price_ticks, inst.parse_qty_lots
    buffered: list[tuple[int, dict[str, object]]] = []
    out: list[MarketEvent] = []
    last_u: int | None = None
    snap_ts = 0
    depth_ts = trade_ts = quote_ts = 0
    with gzip.open(path, "rt") as fh:
        for line in fh:
            recv_s, _, body = line.partition(" ")
            recv = int(recv_s)
            obj = json.loads(body)
            if "lastUpdateId" in obj:
                last_u = int(obj["lastUpdateId"])
                snap_ts = int(obj["E"]) * 1_000_000
                # the diff straddling the snapshot arrived before it: find the chain start
                pending = [(r, d) for r, d in buffered if int(d["u"]) >= last_u]  # type: ignore[call-overload]
                first_ts = min([int(d["E"]) * 1_000_000 for _, d in pending] or [snap_ts])  # type: ignore[call-overload]
                snap_ts = min(snap_ts, first_ts)
                depth_ts = snap_ts
                out.append(BookDeltas(VENUE, SYMBOL, [(px(p), qty(q)) for p, q in obj["bids"]],
                                      [(px(p), qty(q)) for p, q in obj["asks"]], snap_ts, recv,
                                      is_snapshot=True, last_update_id=last_u))
                for r, d in pending:
                    depth_ts, last_u = _diff(out, d, r, px, qty, depth_ts, last_u)
                buffered.clear()
                continue
            stream = obj["stream"]
            d = obj["data"]
            if stream.endswith("@depth@0ms"):
                if last_u is None:
                    buffered.append((recv, d))
                else:
                    depth_ts, last_u = _diff(out, d, recv, px, qty, depth_ts, last_u)
            elif last_u is None:
                continue
            elif stream.endswith("@trade"):
                trade_ts = max(trade_ts, int(d["T"]) * 1_000_000, snap_ts)
                if d.get("X", "MARKET") != "MARKET":
                    continue
                out.append(TradeTick(VENUE, SYMBOL, px(d["p"]), qty(d["q"]),
                                     Side.SELL if d["m"] else Side.BUY, TradeId(str(d["t"])), trade_ts, recv))
            elif stream.endswith("@bookTicker"):
                quote_ts = max(quote_ts, int(d["E"]) * 1_000_000, snap_ts)
                out.append(QuoteTick(VENUE, SYMBOL, px(d["b"]), qty(d["B"]), px(d["a"]), qty(d["A"]),
                                     quote_ts, recv, int(d["u"])))
    out.sort(key=lambda e: e.ts_event)  # stable: the chain order of equal-time diffs is kept
    return out


def _diff(out: list[MarketEvent], d: dict[str, object], recv: int, px: object, qty: object,
          depth_ts: int, last_u: int) -> tuple[int, int]:
    u = int(d["u"])  # type: ignore[call-overload]
    if u < last_u:
        return depth_ts, last_u
    ts = max(depth_ts, int(d["E"]) * 1_000_000)  # type: ignore[call-overload]
    out.append(BookDeltas(VENUE, SYMBOL, [(px(p), qty(q)) for p, q in d["b"]],  # type: ignore[operator,attr-defined]
                          [(px(p), qty(q)) for p, q in d["a"]], ts, recv,  # type: ignore[operator,attr-defined]
                          first_update_id=int(d["U"]), last_update_id=u,  # type: ignore[call-overload]
                          prev_update_id=int(d["pu"])))  # type: ignore[call-overload]
    return ts, u
