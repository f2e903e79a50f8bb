"""A fake TWS on 127.0.0.1: the socket API's handshake, order entry and answers in TWS's field layout.

It negotiates ``min(client max, server_version)`` like TWS, answers startApi with managedAccounts,
nextValidId and the farm notices (2104, 2106, 2158), and then:

* placeOrder: validates like TWS (103 duplicate order id, 200 unknown contract, 110 price off the
  minimum tick, 201 for ``reject_prices``) and otherwise answers openOrder (PreSubmitted, then
  Submitted) and orderStatus; the openOrder is the real TWS capture of
  rust_ibapi_tws_transcripts.json with this order's values put in (fields added/removed per server
  version as TWS does);
* :meth:`FakeTws.fill`: execDetails (reqId -1), orderStatus and commissionReport (optionally sent
  twice, to check dedup);
* cancelOrder: orderStatus Cancelled + error 202, or 10147 (unknown id) / 161 (not cancellable);
* reqOpenOrders, reqExecutions (this client id), reqIds;
* pacing: more than ``max_rate`` messages in any second -> error 100 for that message, dropped.

Test knobs: ``drop_on_place`` (take the order, then drop the connection before answering),
``lose_on_place`` (drop the connection without taking it), ``silent_place`` (take it, say nothing),
``send_raw`` (inject bytes, e.g. a garbled frame), ``drop_connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from venues.ib.codec import encode_frame, read_frame, split_fields

DATA = Path("/work/shared/data/ib")
_TEMPLATE = json.loads((DATA / "rust_ibapi_tws_transcripts.json").read_text())[
    "place_order_TSLA_MKT_BUY_100"]["inbound"][0].split("|")[:131]   # real fields of the 164 capture
UNSET_D = "1.7976931348623157E308"


@dataclass
class FakeOrder:
    order_id: int
    client_id: int
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    action: str
    qty: Decimal
    order_type: str
    lmt: Decimal | None
    tif: str
    account: str
    order_ref: str
    perm_id: int
    filled: Decimal = Decimal(0)
    status: str = "Submitted"
    last_price: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)


@dataclass
class FakeExec:
    exec_id: str
    order: FakeOrder
    shares: Decimal
    price: Decimal
    cum: Decimal
    avg: Decimal
    commission: Decimal
    liquidity: int


@dataclass
class _Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    sv: int = 0
    client_id: int = -1
    stamps: list[float] = field(default_factory=list)


class FakeTws:
    def __init__(self, *, server_version: int = 176, next_order_id: int = 1, account: str = "DU1234567",
                 contracts: dict[str, tuple[int, Decimal]] | None = None, max_rate: int = 50) -> None:
        self.server_version = server_version
        self.next_order_id = next_order_id
        self.account = account
        # IB symbol -> (conId, min tick)
        self.contracts = contracts or {"AAPL": (265598, Decimal("0.01")), "TSLA": (76792991, Decimal("0.01"))}
        self.max_rate = max_rate
        self.orders: dict[tuple[int, int], FakeOrder] = {}
        self.execs: list[FakeExec] = []
        self.received: list[list[str]] = []
        self.reject_prices: dict[Decimal, str] = {}
        self.drop_on_place = False
        self.take_paced_orders = False   # answer 100 to a placeOrder and still take it
        self.lose_on_place = False
        self.silent_place = False
        self.commission = Decimal("1.0")
        self.handshakes: list[str] = []
        self._clients: list[_Client] = []
        self._server: asyncio.Server | None = None
        self._perm = 1376327563
        self._exec_n = 0
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        self.drop_connections()
        await asyncio.sleep(0.01)   # let each connection's task see its EOF
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_connections(self) -> None:
        for c in list(self._clients):
            c.writer.close()
        self._clients.clear()

    @property
    def client(self) -> _Client:
        return self._clients[-1]

    def send_raw(self, data: bytes) -> None:
        self.client.writer.write(data)

    def send(self, fields: list[str], c: _Client | None = None) -> None:
        (c or self.client).writer.write(encode_frame(fields))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        c = _Client(reader, writer)
        try:
            if await reader.readexactly(4) != b"API\0":
                writer.close()
                return
            (n,) = struct.unpack(">I", await reader.readexactly(4))
            text = (await reader.readexactly(n)).decode()
            self.handshakes.append(text)
            lo, hi = (int(x) for x in text[1:].split(".."))
            sv = min(hi, self.server_version)
            if sv < lo:
                writer.close()
                return
            c.sv = sv
            self._clients.append(c)
            writer.write(encode_frame([str(sv), "20250415 19:38:30 British Summer Time"]))
            while True:
                body = await read_frame(reader)
                self._on_message(c, split_fields(body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if c in self._clients:
                self._clients.remove(c)
            with contextlib.suppress(Exception):
                writer.close()

    # ------------------------------------------------------------------ TWS layouts
    def error(self, c: _Client, req_id: int, code: int, text: str) -> None:
        if c.sv >= 194:
            self.send(["4", str(req_id), str(code), text, "", str(int(time.time() * 1000))], c)
        elif c.sv >= 166:
            self.send(["4", "2", str(req_id), str(code), text, ""], c)
        else:
            self.send(["4", "2", str(req_id), str(code), text], c)

    def open_order_fields(self, o: FakeOrder, sv: int) -> list[str]:
        f = list(_TEMPLATE)
        f[1], f[2], f[3], f[4] = str(o.order_id), str(o.con_id), o.symbol, o.sec_type
        f[9], f[10], f[11] = o.exchange, o.currency, o.symbol
        f[13], f[14], f[15] = o.action, _txt(o.qty), o.order_type
        f[16] = _txt(o.lmt) if o.lmt is not None else "0.0"
        f[18], f[20], f[23], f[24], f[25] = o.tif, o.account, o.order_ref, str(o.client_id), str(o.perm_id)
        f[30] = f"{o.perm_id}.0/{o.account}/100"
        f[94] = o.status
        if o.status == "Filled":
            f[104], f[107] = _txt(self.commission), "USD"
        head, tail = f[:109], f[109:]
        if sv >= 195:   # full order preview fields after commissionCurrency
            head[108:108] = [""] + [UNSET_D] * 9 + ["", "", "0"]
        if sv >= 177:   # faProfile no longer sent
            del head[34]
        if sv >= 170:
            tail += ["2147483647", "2147483647", UNSET_D, UNSET_D, UNSET_D]
        for v, extra in ((183, [""]), (184, ["0"]), (185, [""]), (189, ["0"]), (193, ["", "2147483647"]),
                         (198, [""]), (199, ["0"])):
            if sv >= v:
                tail += extra
        return head + tail

    def order_status_fields(self, o: FakeOrder) -> list[str]:
        avg = o.notional / o.filled if o.filled else Decimal(0)
        return ["3", str(o.order_id), o.status, _txt(o.filled), _txt(o.qty - o.filled), _txt(avg), str(o.perm_id),
                "0", _txt(o.last_price), str(o.client_id), "", "0"]

    def exec_fields(self, e: FakeExec, req_id: int, sv: int) -> list[str]:
        o = e.order
        f = ["11", str(req_id), str(o.order_id), str(o.con_id), o.symbol, o.sec_type, "", "0.0", "", "", o.exchange,
             o.currency, o.symbol, "NMS", e.exec_id, "20250415  19:38:31", o.account, "IEX",
             "BOT" if o.action == "BUY" else "SLD", _txt(e.shares), _txt(e.price), str(o.perm_id), str(o.client_id),
             "0", _txt(e.cum), _txt(e.avg), o.order_ref, "", "", "", str(e.liquidity)]
        if sv >= 178:
            f.append("0")
        if sv >= 198:
            f.append("")
        return f

    def commission_fields(self, e: FakeExec) -> list[str]:
        return ["59", "1", e.exec_id, _txt(e.commission), "USD", UNSET_D, UNSET_D, ""]

    # ------------------------------------------------------------------ requests
    def _paced(self, c: _Client) -> bool:
        now = time.monotonic()
        c.stamps = [t for t in c.stamps if now - t < 1.0]
        c.stamps.append(now)
        return len(c.stamps) > self.max_rate

    def _on_message(self, c: _Client, f: list[str]) -> None:
        self.received.append(f)
        msg = f[0]
        if self._paced(c):
            req = int(f[1]) if msg == "3" else -1
            self.error(c, req, 100, f"Max rate of messages per second has been exceeded:max={self.max_rate} "
                                    f"rec={len(c.stamps)} (1)")
            if not (self.take_paced_orders and msg == "3"):
                return
        if msg == "71":
            c.client_id = int(f[2])
            self.send(["15", "1", self.account], c)
            self.send(["9", "1", str(self.next_order_id)], c)
            for code, text in ((2104, "Market data farm connection is OK:usfarm"),
                               (2106, "HMDS data farm connection is OK:ushmds"),
                               (2158, "Sec-def data farm connection is OK:secdefil")):
                self.error(c, -1, code, text)
        elif msg == "8":
            self.send(["9", "1", str(self.next_order_id)], c)
        elif msg == "3":
            self._place(c, f)
        elif msg == "4":
            self._cancel(c, int(f[2] if c.sv < 192 else f[1]))
        elif msg == "5":
            for o in self.orders.values():
                if o.client_id == c.client_id and o.status in ("PreSubmitted", "Submitted"):
                    self.send(self.open_order_fields(o, c.sv), c)
                    self.send(self.order_status_fields(o), c)
            self.send(["53", "1"], c)
        elif msg == "7":
            req_id, client_filter = int(f[2]), int(f[3])
            for e in self.execs:
                if client_filter in (0, e.order.client_id):
                    self.send(self.exec_fields(e, req_id, c.sv), c)
                    self.send(self.commission_fields(e), c)
            self.send(["55", "1", str(req_id)], c)

    def _place(self, c: _Client, f: list[str]) -> None:
        order_id = int(f[1])
        symbol, sec_type, exchange, currency = f[3], f[4], f[9], f[11]
        action, qty_text, otype, lmt_text, tif, account, ref = f[16], f[17], f[18], f[19], f[21], f[23], f[26]
        if order_id < self.next_order_id or (c.client_id, order_id) in self.orders:
            self.error(c, order_id, 103, "Duplicate order id")
            return
        self.next_order_id = order_id + 1
        if symbol not in self.contracts:
            self.error(c, order_id, 200, "No security definition has been found for the request")
            return
        con_id, tick = self.contracts[symbol]
        lmt = Decimal(lmt_text) if lmt_text else None
        if otype == "LMT" and (lmt is None or lmt % tick):
            self.error(c, order_id, 110, "The price does not conform to the minimum price variation for this "
                                         "contract.")
            return
        if lmt is not None and lmt in self.reject_prices:
            self.error(c, order_id, 201, f"Order rejected - reason:{self.reject_prices[lmt]}")
            self.send(["3", str(order_id), "Inactive", "0", qty_text, "0", "0", "0", "0", str(c.client_id), "", "0"],
                      c)
            return
        if self.lose_on_place:
            self.lose_on_place = False
            c.writer.close()
            return
        self._perm += 1
        o = FakeOrder(order_id, c.client_id, con_id, symbol, sec_type, exchange, currency, action, Decimal(qty_text),
                      otype, lmt, tif, account or self.account, ref, self._perm)
        self.orders[(c.client_id, order_id)] = o
        if self.drop_on_place:
            self.drop_on_place = False
            c.writer.close()
            return
        if self.silent_place:
            return
        o.status = "PreSubmitted"
        self.send(self.open_order_fields(o, c.sv), c)
        self.send(self.order_status_fields(o), c)
        o.status = "Submitted"
        self.send(self.open_order_fields(o, c.sv), c)
        self.send(self.order_status_fields(o), c)

    def _cancel(self, c: _Client, order_id: int) -> None:
        o = self.orders.get((c.client_id, order_id))
        if o is None:
            self.error(c, order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.")
            return
        if o.status not in ("PreSubmitted", "Submitted"):
            self.error(c, order_id, 161, f"Cancel attempted when order is not in a cancellable state.  Order permId "
                                         f"={o.perm_id}")
            return
        o.status = "Cancelled"
        self.send(self.order_status_fields(o), c)
        self.error(c, order_id, 202, "Order Canceled - reason:")

    # ------------------------------------------------------------------ market
    def fill(self, order_id: int, qty: str, price: str, *, client_id: int | None = None, repeat: bool = False,
             liquidity: int = 2, send: bool = True) -> FakeExec:
        """Execute ``qty`` of the order at ``price``: execDetails, orderStatus (and openOrder when
        complete), commissionReport; ``repeat`` sends the execDetails and the commission twice."""
        cid = self.client.client_id if client_id is None else client_id
        o = self.orders[(cid, order_id)]
        q, p = Decimal(qty), Decimal(price)
        o.filled += q
        o.notional += q * p
        o.last_price = p
        self._exec_n += 1
        e = FakeExec(f"0000e0d5.67fe{self._exec_n:04x}.01.01", o, q, p, o.filled, o.notional / o.filled,
                     self.commission, liquidity)
        self.execs.append(e)
        if o.filled >= o.qty:
            o.status = "Filled"
        if not send or not self._clients:
            return e
        c = self.client
        for _ in range(2 if repeat else 1):
            self.send(self.exec_fields(e, -1, c.sv), c)
        if o.status == "Filled":
            self.send(self.open_order_fields(o, c.sv), c)
        self.send(self.order_status_fields(o), c)
        for _ in range(2 if repeat else 1):
            self.send(self.commission_fields(e), c)
        return e


def _txt(d: Decimal) -> str:
    return format(d.normalize(), "f")
