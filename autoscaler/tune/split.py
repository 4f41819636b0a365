"""Fit and held-out parts of a trace: the search is judged only on what it never saw.

A :class:`Fold` fits on ``[0, origin)`` and reports on ``[origin, end)``. With one fold the held-out
part is the trace's last ``holdout_s``. With ``n`` folds the origin rolls forward (a rolling origin,
as time-series forecasts are evaluated): fold ``k`` holds out the ``k``-th of the last ``n`` stretches
of ``holdout_s``, fits on everything before it, and the last fold's tuned policy is the one proposed;
the earlier folds show how well a tuning done at one time holds at the next.

By default (``folds=None``) the origin rolls when the history is long enough: as many folds as leave
at least two held-out lengths to fit the first one on, at most three. The default held-out length is
one day for traces of three days or more (whole days: the traffic's own season), else a quarter of
the trace.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from autoscaler.tune.space import TuningError

__all__ = ["DAY_S", "Fold", "parse_duration", "plan_folds"]

DAY_S = 86400.0
MAX_AUTO_FOLDS = 3
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY_S}


@dataclass(frozen=True, slots=True)
class Fold:
    index: int  # 1-based
    origin_s: float  # the fit part is [0, origin), the held-out part [origin, end)
    end_s: float
    last: bool

    @property
    def fit_span(self) -> str:
        return f"[0, {_human(self.origin_s)})"

    @property
    def held_out_span(self) -> str:
        return f"[{_human(self.origin_s)}, {_human(self.end_s)})"

    def describe(self) -> str:
        return f"fit {self.fit_span}, held out {self.held_out_span}"


def _human(seconds: float) -> str:
    if seconds >= DAY_S and (seconds / DAY_S) % 0.25 == 0:
        return f"{seconds / DAY_S:g}d"
    if seconds >= 3600 and (seconds / 3600) % 0.5 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 60:.0f}m" if seconds >= 60 else f"{seconds:.0f}s"


def parse_duration(text: str, *, total_s: float, where: str = "--holdout") -> float:
    """``1d``, ``6h``, ``30m``, ``90s``, or a fraction of ``total_s`` (``0.25``)."""
    text = text.strip()
    match = _DURATION.match(text)
    if match:
        return float(match.group(1)) * _UNIT[match.group(2)]
    try:
        fraction = float(text)
    except ValueError:
        raise TuningError(f"{where} = {text!r}: must be a duration (1d, 6h, 30m, 90s) or a fraction (0.25)") from None
    if not 0 < fraction < 1:
        raise TuningError(f"{where} = {text!r}: a fraction of the trace must be between 0 and 1")
    return fraction * total_s


def default_holdout_s(duration_s: float) -> float:
    if duration_s >= 3 * DAY_S:
        return DAY_S
    return max(60.0, round(duration_s / 4 / 60.0) * 60.0)


def plan_folds(duration_s: float, *, holdout_s: float | None = None, folds: int | None = None) -> list[Fold]:
    """The folds for a trace whose last request arrives at ``duration_s`` (rounded up to a whole minute,
    so that a day-long trace is one day, not one day less the last gap)."""
    if not duration_s > 0:
        raise TuningError(f"the trace spans {duration_s:g} s: nothing to fit on and hold out")
    duration_s = math.ceil(duration_s / 60.0) * 60.0
    holdout = default_holdout_s(duration_s) if holdout_s is None else holdout_s
    if not 0 < holdout < duration_s:
        raise TuningError(f"--holdout = {holdout:g} s: must be shorter than the trace ({duration_s:g} s), "
                          "so that something is left to fit on")
    if folds is None:
        folds = max(1, min(MAX_AUTO_FOLDS, math.floor(duration_s / holdout + 1e-9) - 2))
    if folds < 1:
        raise TuningError(f"--folds = {folds}: must be at least 1")
    first_origin = duration_s - folds * holdout
    if first_origin < min(holdout, duration_s / 4) - 1e-9:
        raise TuningError(f"--folds {folds} x --holdout {_human(holdout)} leaves {_human(max(first_origin, 0.0))} "
                          f"of the {_human(duration_s)} trace to fit the first fold on: use fewer folds or a "
                          "shorter held-out part")
    return [
        Fold(k + 1, first_origin + k * holdout, first_origin + (k + 1) * holdout, last=k == folds - 1)
        for k in range(folds)
    ]
