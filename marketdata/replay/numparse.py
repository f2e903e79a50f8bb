"""Fast exact wire-number parsing to integer ticks/lots (no floats; Decimal only as a fallback for
exponent notation).

Prices must sit on the tick grid (an off-tick price is malformed input). Quantities finer than the
lot are rounded *down* to the lot and counted: Binance spot BTCUSDT's lot is 0.00001 but a few
resting levels carry residues of older, finer orders (e.g. ``"25.42618900"``); flooring them keeps
the book on the instrument's grid and loses less than one lot of displayed liquidity per level. The
counter lets ``sorex data check`` report how many such quantities were seen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from marketdata.model import Instrument, exact_ratio

# Exponent notation (Tardis writes tiny amounts as ``1e-05``): digits, an optional fraction, an exponent.
_EXP = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+")


def _decimals(step: Decimal) -> tuple[int, int]:
    exp = step.normalize().as_tuple().exponent
    assert isinstance(exp, int)
    dec = max(0, -exp)
    return dec, int(step.scaleb(dec))


def _slow(text: str, step: Decimal, floor: bool, what: str) -> tuple[int, bool]:
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"{what} {text!r} is not a decimal number") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{what} {text!r} is not a finite non-negative number")
    n = exact_ratio(d, step)
    whole = math.floor(n)
    if whole != n and not floor:
        raise ValueError(f"{what} {text!r} is off the grid {step}")
    return whole, whole != n


def price_parser(inst: Instrument) -> Callable[[str], int]:
    """A function ``text -> price ticks`` for ``inst``; raises ``ValueError`` off the tick grid."""
    dec, unit = _decimals(inst.tick_size)
    step = inst.tick_size
    pad = ["0" * k for k in range(dec + 1)]

    def parse(text: str) -> int:
        whole, _, frac = text.partition(".")
        digits = whole + frac
        if not (digits.isdigit() and digits.isascii()):  # int() would take "_", spaces, signs
            if _EXP.fullmatch(text):
                return _slow(text, step, False, "price")[0]
            raise ValueError(f"price {text!r} is not a plain decimal number")
        if len(frac) > dec:
            if frac[dec:].strip("0"):
                raise ValueError(f"price {text!r} is off the tick grid {step}")
            frac = frac[:dec]
        v = int(whole + frac + pad[dec - len(frac)])
        if v <= 0:
            raise ValueError(f"price {text!r} is not positive")
        if unit != 1:
            v, rem = divmod(v, unit)
            if rem:
                raise ValueError(f"price {text!r} is off the tick grid {step}")
        return v

    return parse


def qty_parser(inst: Instrument, counter: list[int]) -> Callable[[str], int]:
    """A function ``text -> lots`` for ``inst``: exact on the lot grid, floored (and counted in
    ``counter[0]``) when finer than the lot."""
    dec, unit = _decimals(inst.lot_size)
    step = inst.lot_size
    pad = ["0" * k for k in range(dec + 1)]

    def parse(text: str) -> int:
        whole, _, frac = text.partition(".")
        digits = whole + frac
        if not (digits.isdigit() and digits.isascii()):  # int() would take "_", spaces, signs
            if _EXP.fullmatch(text):
                lots, off = _slow(text, step, True, "quantity")
                counter[0] += off
                return lots
            raise ValueError(f"quantity {text!r} is not a plain non-negative decimal number")
        if len(frac) > dec:
            if frac[dec:].strip("0"):
                counter[0] += 1
            frac = frac[:dec]
        v = int(whole + frac + pad[dec - len(frac)])
        if unit != 1:
            v, rem = divmod(v, unit)
            if rem:
                counter[0] += 1
        return v

    return parse
