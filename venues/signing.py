"""Venue-neutral request signing helpers (HMAC). The one place sorex computes a request signature.

Secrets are held by :class:`Secret`, whose ``repr``/``str`` never show the value; the raw value is
read only through :meth:`Secret.reveal` at the moment a signature is computed."""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["Secret", "hmac_sha256_hex", "redact"]


class Secret:
    """A string that never shows up in ``repr``, ``str``, f-strings or log lines."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: use it only to sign or to put it in a request header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values are not picklable")


def hmac_sha256_hex(secret: Secret | str, payload: str | bytes) -> str:
    """Lower-case hex HMAC-SHA256 of ``payload`` keyed by ``secret`` (UTF-8)."""
    key = secret.reveal() if isinstance(secret, Secret) else secret
    data = payload.encode() if isinstance(payload, str) else payload
    return hmac.new(key.encode(), data, hashlib.sha256).hexdigest()


# values scrubbed wherever they appear: a request signature and Binance's user-stream listen key
# (whoever has it can read the account's stream), as query values and as a JSON field
_SECRET_QUERY = re.compile(r"(signature=|listenKey=)[^&\"' ,)\]}]*")
_LISTEN_KEY_JSON = re.compile(r'("listenKey"\s*:\s*")[^"]*(")')


def redact(text: str, *secrets: Secret | str | None) -> str:
    """``text`` with every occurrence of the given secrets (and any ``signature=...`` or
    ``listenKey=...`` query value, or ``"listenKey": "..."`` JSON value) replaced by ``***``: for
    log lines and error messages that might echo a request."""
    out = text
    for s in secrets:
        v = s.reveal() if isinstance(s, Secret) else s
        if v:
            out = out.replace(v, "***")
    out = _LISTEN_KEY_JSON.sub(r"\1***\2", out)
    return _SECRET_QUERY.sub(r"\1***", out)
