"""TWS API framing (text protocol, server versions up to 200).

The client opens with ``API\\0`` then one length-prefixed text ``v<min>..<max>`` (the server
versions it speaks). Every message after that, in both directions, is a 4-byte big-endian length
and a body of NUL-terminated text fields; the first field is the message id. The server's first
message is its version and connection time (``173\\0<time>\\0``). Server versions from 201 frame
differently (binary message ids, protobuf), so a text-protocol client advertises at most 200.

Two error kinds, both naming what was wrong:

* :class:`IbFramingError` (a :class:`~marketdata.errors.VenueDisconnected`): the stream itself is
  broken (a length of 0 or above :data:`MAX_FRAME_BYTES`, a handshake reply that is not a version);
  nothing after it can be trusted, so the connection is closed and re-opened.
* :class:`IbDecodeError`: one message of a well-framed stream is malformed (a non-numeric field, a
  missing field); it names the message, the field and the raw value, and the stream goes on.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence

from marketdata.errors import VenueDisconnected, VenueError

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_TEXT_SERVER_VERSION",
    "FrameBuffer",
    "IbDecodeError",
    "IbFramingError",
    "encode_frame",
    "encode_handshake",
    "parse_server_hello",
    "read_frame",
    "split_fields",
]

MAX_FRAME_BYTES = 0xFFFFFF
"""ibapi's ``MAX_MSG_LEN`` (16 MiB - 1): a length above it is a broken stream, not a message."""
MAX_TEXT_SERVER_VERSION = 200
"""Server versions above this frame messages as protobuf (MIN_SERVER_VER_PROTOBUF = 201)."""
_LEN = struct.Struct(">I")


class IbFramingError(VenueDisconnected):
    """The byte stream cannot be framed any more; the connection must be re-opened."""


class IbDecodeError(VenueError):
    """One message could not be decoded: ``message`` (its name), ``field`` (the field's name),
    ``index`` (0 = the message id) and ``raw`` (the field's text) say exactly what."""

    def __init__(self, message_name: str, field_name: str, index: int, raw: str | None, why: str, *,
                 venue: str | None = None) -> None:
        shown = "<missing>" if raw is None else repr(raw[:80])
        super().__init__(f"{message_name}: field {index} ({field_name}) {shown}: {why}", venue=venue)
        self.message_name = message_name
        self.field_name = field_name
        self.index = index
        self.raw = raw


def encode_handshake(min_version: int, max_version: int) -> bytes:
    """``API\\0`` + length + ``v<min>..<max>`` (what ibapi's ``EClient.connect`` sends)."""
    if not 0 < min_version <= max_version <= MAX_TEXT_SERVER_VERSION:
        raise ValueError(f"server versions {min_version}..{max_version} must satisfy "
                         f"0 < min <= max <= {MAX_TEXT_SERVER_VERSION} (text protocol)")
    text = f"v{min_version}..{max_version}".encode("ascii")
    return b"API\0" + _LEN.pack(len(text)) + text


def encode_frame(fields: Sequence[str]) -> bytes:
    """One message: length prefix + each field NUL-terminated. A field holding a NUL or a non
    printable-ASCII character is refused (``ValueError`` naming the field): it would break the
    framing, and ibapi refuses the same."""
    for i, f in enumerate(fields):
        if f and not (f.isascii() and f.isprintable()):
            raise ValueError(f"field {i} {f[:40]!r} is not printable ASCII")
    body = "".join(f + "\0" for f in fields).encode("ascii")
    return _LEN.pack(len(body)) + body


def _check_length(n: int, venue: str | None) -> None:
    if n == 0 or n > MAX_FRAME_BYTES:
        raise IbFramingError(f"bad frame length {n} (allowed 1..{MAX_FRAME_BYTES}): the stream is out of step",
                             venue=venue)


def split_fields(body: bytes, *, venue: str | None = None) -> list[str]:
    """The text fields of one message body. The body must end with the NUL of its last field
    (:class:`IbDecodeError` otherwise: the frame is complete, so the stream goes on)."""
    if not body.endswith(b"\0"):
        head = body[:40].decode("utf-8", errors="backslashreplace")
        raise IbDecodeError("message", "terminator", 0, head, "the body does not end with a NUL", venue=venue)
    return body[:-1].decode("utf-8", errors="backslashreplace").split("\0")


async def read_frame(reader: asyncio.StreamReader, *, venue: str | None = None) -> bytes:
    """Read one message body (raises ``asyncio.IncompleteReadError`` at EOF, :class:`IbFramingError`
    on a bad length)."""
    head = await reader.readexactly(4)
    (n,) = _LEN.unpack(head)
    _check_length(n, venue)
    return await reader.readexactly(n)


class FrameBuffer:
    """Incremental framing for bytes arriving in arbitrary chunks (``feed`` -> complete bodies)."""

    def __init__(self, venue: str | None = None) -> None:
        self._buf = bytearray()
        self._venue = venue

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 4:
            (n,) = _LEN.unpack_from(self._buf)
            _check_length(n, self._venue)
            if len(self._buf) < 4 + n:
                break
            out.append(bytes(self._buf[4:4 + n]))
            del self._buf[:4 + n]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def parse_server_hello(fields: Sequence[str], *, venue: str | None = None) -> tuple[int, str]:
    """The server's first message ``[version, connection time]`` -> ``(version, time)``."""
    raw = fields[0] if fields else None
    if raw is None or not raw.isdigit():
        raise IbFramingError(f"handshake reply field 0 (serverVersion) {raw!r} is not a version number",
                             venue=venue)
    return int(raw), fields[1] if len(fields) > 1 else ""
