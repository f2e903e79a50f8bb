"""The one error tree of sorex.

Every error sorex raises on purpose derives from :class:`SorexError`::

    SorexError
    ├── ConfigError                 malformed TOML/CLI input: names the file, the key, the allowed values
    ├── InstrumentError             unknown symbol, price off tick, quantity off lot / below minimum
    ├── DataError                   malformed market data (names the source and line)
    │   └── SequenceGapError        a book missed updates and must be resynced
    ├── InvariantError              an internal invariant is broken (a bug, or corrupted input)
    │   └── OverfillError           more was filled than was ordered
    ├── RiskRejected                a pre-trade guardrail refused an order before it left
    ├── UnknownOrderError           an order id nobody knows
    └── VenueError                  anything a venue said or failed to say
        ├── RetryableVenueError     the request may or may not have reached the venue
        │   ├── VenueTimeout        no answer in time: the order state is UNKNOWN, not rejected
        │   ├── VenueDisconnected   the transport dropped
        │   └── RateLimited         the venue (or our limiter) refused for pacing; carries retry_after
        └── FinalVenueError         the venue answered and said no
            ├── OrderRejected       bad price, bad quantity, post-only would take, ...
            └── InsufficientFunds   the account cannot pay for it

Venue errors carry the venue, the client order id and the venue's own code and text, so a log line
or a journal row says exactly which request failed and how (modelled on httpx's ``_exceptions``).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "FinalVenueError",
    "InstrumentError",
    "InsufficientFunds",
    "InvariantError",
    "OrderRejected",
    "OverfillError",
    "RateLimited",
    "RetryableVenueError",
    "RiskRejected",
    "SequenceGapError",
    "SorexError",
    "UnknownOrderError",
    "VenueDisconnected",
    "VenueError",
    "VenueTimeout",
]


class SorexError(Exception):
    """Base of every error sorex raises on purpose."""


class ConfigError(SorexError):
    """Invalid configuration: ``file``, ``key`` and ``allowed`` say what was wrong and where."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 allowed: str | None = None) -> None:
        parts = []
        if file:
            parts.append(str(file))
        if key:
            parts.append(f"key '{key}'")
        prefix = ": ".join(parts)
        text = f"{prefix}: {message}" if prefix else message
        if allowed:
            text += f" (allowed: {allowed})"
        super().__init__(text)
        self.file = file
        self.key = key
        self.allowed = allowed


class InstrumentError(SorexError):
    """Unknown instrument, or a price/quantity that the instrument's rules do not allow."""


class DataError(SorexError):
    """Malformed market data. ``source`` and ``line`` locate it when known."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        loc = ""
        if source is not None:
            loc = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(loc + message)
        self.source = source
        self.line = line


class SequenceGapError(DataError):
    """A book saw an update that does not chain to the previous one."""


class InvariantError(SorexError):
    """An internal invariant does not hold."""


class OverfillError(InvariantError):
    """More quantity was filled than was ordered."""


class RiskRejected(SorexError):
    """A pre-trade risk check refused the order; ``rule`` names the check."""

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


class UnknownOrderError(SorexError):
    """No order with that id is known."""


class VenueError(SorexError):
    """An error from or about a venue."""

    def __init__(self, message: str, *, venue: str | None = None, client_order_id: str | None = None,
                 code: str | int | None = None, venue_text: str | None = None) -> None:
        ctx = []
        if venue:
            ctx.append(f"venue={venue}")
        if client_order_id:
            ctx.append(f"client_order_id={client_order_id}")
        if code is not None:
            ctx.append(f"code={code}")
        if venue_text:
            ctx.append(f"venue_text={venue_text!r}")
        super().__init__(message + (f" [{' '.join(ctx)}]" if ctx else ""))
        self.message = message
        self.venue = venue
        self.client_order_id = client_order_id
        self.code = code
        self.venue_text = venue_text


class RetryableVenueError(VenueError):
    """The request may or may not have taken effect; retrying (with the same client id) is safe."""


class VenueTimeout(RetryableVenueError):
    """No answer in time. An order in this situation is UNKNOWN until the venue says otherwise."""


class VenueDisconnected(RetryableVenueError):
    """The connection to the venue was lost."""


class RateLimited(RetryableVenueError):
    """Refused for pacing. ``retry_after_ns`` is when to try again, if the venue said."""

    def __init__(self, message: str, *, retry_after_ns: int | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after_ns = retry_after_ns


class FinalVenueError(VenueError):
    """The venue answered and refused; retrying the same request will not help."""


class OrderRejected(FinalVenueError):
    """The venue rejected the order (bad price, bad size, post-only would take, ...)."""


class InsufficientFunds(FinalVenueError):
    """The account cannot pay for the order."""
