"""HTTP details both edges share (the Prometheus client and the Kubernetes client)."""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime

__all__ = ["retry_after_s"]

_DELAY_SECONDS_MAX_DIGITS = 10


def retry_after_s(value: str, *, now_s: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds to wait (>= 0), or None when it is not a valid header.

    RFC 9110: ``delay-seconds`` (digits only) or an ``HTTP-date``. Negative numbers, fractions, NaN,
    ``inf`` and junk are invalid (the caller then uses its own backoff); a date in the past is 0. The
    caller caps the result: a server never decides alone how long a tick waits.
    """
    text = value.strip()
    if text.isascii() and text.isdigit():  # delay-seconds; absurdly long ones are "very long", capped by the caller
        return float(int(text)) if len(text) <= _DELAY_SECONDS_MAX_DIGITS else math.inf
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    delay = when.timestamp() - (time.time() if now_s is None else now_s)
    return max(0.0, delay) if math.isfinite(delay) else None
