"""Kubernetes ``resource.Quantity`` parsing and canonical formatting, in milli-units.

The HPA reads every metric and target as ``Quantity.MilliValue()``, which rounds *up* to a whole
milli-unit. The core does its arithmetic on those integers so that our proposals are the HPA's,
bit for bit; the external-metrics server formats with :func:`format_milli` so that what the HPA
reads back is exactly the integer the core used.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

__all__ = ["QuantityError", "format_milli", "parse_quantity", "parse_quantity_milli", "to_milli"]

_DECIMAL_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_BINARY_SUFFIXES = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")
_CANONICAL_SUFFIX = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(text: str | int | float) -> Decimal:
    """Parse a quantity (``"500m"``, ``"2k"``, ``"1.5"``, ``"1e3"``, ``"1Gi"``, or a number) exactly."""
    if isinstance(text, bool):
        raise QuantityError(f"{text!r} is not a quantity")
    if isinstance(text, int):
        return Decimal(text)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(f"{text!r} is not a finite quantity")
        return Decimal(repr(text))
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise QuantityError(f"{text!r} is not a quantity (expected e.g. 5, 0.5, 500m, 2k, 1e3)")
    number, exponent, suffix = match.groups()
    try:
        value = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guarantees a number
        raise QuantityError(f"{text!r} is not a quantity") from exc
    if exponent:
        return value.scaleb(int(exponent[1:]))
    suffix = suffix or ""
    return value * (_BINARY_SUFFIXES.get(suffix) or _DECIMAL_SUFFIXES[suffix])


def parse_quantity_milli(text: str | int | float) -> int:
    """``Quantity.MilliValue()``: the quantity in milli-units, rounded up."""
    return int((parse_quantity(text) * 1000).to_integral_value(rounding=ROUND_CEILING))


def to_milli(value: float) -> int:
    """A measured float in milli-units, rounded up as the HPA's ``MilliValue()`` does.

    Rounding to 1e-6 milli first removes binary noise (``0.1 + 0.2``) so that a value that is
    "really" 0.3 does not become 301m.
    """
    return math.ceil(round(value * 1000.0, 6))


def format_milli(milli: int) -> str:
    """Canonical DecimalSI form of an integer number of milli-units (``1500`` -> ``"1500m"``).

    Same output as apimachinery's ``CanonicalizeBytes``: an integer mantissa with the largest
    suffix (a power of 1000) that keeps it whole.
    """
    if milli == 0:
        return "0"
    sign = "-" if milli < 0 else ""
    mantissa, exponent = abs(milli), -3
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    remainder = exponent % 3
    mantissa *= 10**remainder
    exponent -= remainder
    if exponent > 18:
        mantissa *= 10 ** (exponent - 18)
        exponent = 18
    return f"{sign}{mantissa}{_CANONICAL_SUFFIX[exponent]}"
