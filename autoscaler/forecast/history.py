"""A demand series on a regular time grid: the input of every forecaster.

``DemandHistory`` is a frozen value: ``values[i]`` is the demand (tokens/s, requests/s, ...) sampled at
``start_s + i * step_s``; NaN marks a gap (no sample, a failed query, a stale series). Building one from
irregular samples and appending a tick both return a *new* value; the array inside is read-only, so
a history can be shared between the controller, the simulator and tests without copies or surprises.

Caveats:

* The history stores what it is given (non-finite values become NaN). Cleaning - negative rates from
  counter resets, absurd spikes - is the forecaster's job, so that the raw series stays inspectable.
* Length is bounded (``capacity``, by default 8 days at the step): appending drops the oldest slots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_HISTORY_S", "DemandHistory"]

FloatArray = npt.NDArray[np.float64]

DEFAULT_HISTORY_S = 8 * 86400.0  # a week for weekly seasonality plus a day to measure errors on


def _readonly(values: npt.ArrayLike) -> FloatArray:
    out = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    out[~np.isfinite(out)] = np.nan
    out.setflags(write=False)
    return out


@dataclass(frozen=True, slots=True, eq=False)
class DemandHistory:
    """Demand on a regular grid; ``values[i]`` is at ``start_s + i * step_s``; NaN is a gap."""

    start_s: float
    """Time of ``values[0]`` (seconds, any epoch shared with ``now_s``)."""
    step_s: float
    """Grid spacing in seconds (> 0)."""
    values: FloatArray
    """Demand per slot, float64, read-only; NaN = no usable sample."""
    max_points: int | None = None
    """Bound on ``len(values)`` kept by :meth:`append`; ``None`` = 8 days at the step."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise ValueError(f"step_s = {self.step_s}, must be a finite number > 0")
        if not math.isfinite(self.start_s):
            raise ValueError(f"start_s = {self.start_s}, must be finite")
        if self.max_points is not None and self.max_points < 1:
            raise ValueError(f"max_points = {self.max_points}, must be >= 1")
        object.__setattr__(self, "values", _readonly(self.values))

    # -- construction ---------------------------------------------------------------------------------

    @staticmethod
    def empty(*, start_s: float, step_s: float, max_points: int | None = None) -> DemandHistory:
        """A history with no slots yet; the first :meth:`append` at ``start_s`` fills slot 0."""
        return DemandHistory(start_s, step_s, np.zeros(0), max_points)

    @staticmethod
    def from_samples(
        times_s: Sequence[float] | FloatArray,
        values: Sequence[float] | FloatArray,
        step_s: float,
        *,
        start_s: float | None = None,
        max_points: int | None = None,
    ) -> DemandHistory:
        """Resample irregular samples onto the grid: each sample goes to its nearest slot, slots with
        several samples take their mean, slots with none (or only non-finite ones) stay NaN.

        ``start_s`` defaults to the earliest sample time. Samples before ``start_s`` are dropped; only
        the newest ``capacity`` slots are kept.
        """
        t = np.asarray(times_s, dtype=np.float64).reshape(-1)
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if t.shape != v.shape:
            raise ValueError(f"times_s has {t.size} samples but values has {v.size}")
        keep = np.isfinite(t)
        t, v = t[keep], v[keep]
        if start_s is None:
            if t.size == 0:
                raise ValueError("from_samples needs start_s when there are no samples")
            start_s = float(t.min())
        probe = DemandHistory.empty(start_s=start_s, step_s=step_s, max_points=max_points)
        if t.size == 0:
            return probe
        slot = np.rint((t - start_s) / step_s).astype(np.int64)
        inside = slot >= 0
        slot, v = slot[inside], v[inside]
        if slot.size == 0:
            return probe
        n = int(slot.max()) + 1
        ok = np.isfinite(v)
        sums = np.bincount(slot[ok], weights=v[ok], minlength=n)
        counts = np.bincount(slot[ok], minlength=n)
        grid = np.full(n, np.nan)
        has = counts > 0
        grid[has] = sums[has] / counts[has]
        drop = max(0, n - probe.capacity)
        return DemandHistory(start_s + drop * step_s, step_s, grid[drop:], max_points)

    # -- reading --------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many slots :meth:`append` keeps."""
        if self.max_points is not None:
            return self.max_points
        return max(1, math.ceil(DEFAULT_HISTORY_S / self.step_s))

    @property
    def end_s(self) -> float:
        """Time of the last slot (``start_s - step_s`` when empty)."""
        return self.start_s + (len(self.values) - 1) * self.step_s

    def __len__(self) -> int:
        return len(self.values)

    def times_s(self) -> FloatArray:
        """The time of each slot."""
        return self.start_s + self.step_s * np.arange(len(self.values), dtype=np.float64)

    # -- updating -------------------------------------------------------------------------------------

    def append(self, time_s: float, value: float) -> DemandHistory:
        """A new history with ``value`` in the slot nearest ``time_s``.

        Later slots than the current end are created (the skipped ones as NaN gaps); a sample for an
        existing slot replaces it (the newest reading wins); a sample before ``start_s`` is ignored.
        The oldest slots are dropped beyond ``capacity``.
        """
        if not math.isfinite(time_s):
            return self
        v = float(value) if math.isfinite(value) else math.nan
        slot = round((time_s - self.start_s) / self.step_s)
        n = len(self.values)
        cap = self.capacity
        if slot < 0:
            return self
        if slot < n:
            out = self.values.copy()
            out[slot] = v
            return DemandHistory(self.start_s, self.step_s, out, self.max_points)
        new_n = slot + 1
        drop = max(0, new_n - cap)
        out = np.full(new_n - drop, np.nan)
        kept = self.values[drop:] if drop < n else self.values[:0]
        out[: kept.size] = kept
        out[-1] = v
        return DemandHistory(self.start_s + drop * self.step_s, self.step_s, out, self.max_points)

    def until(self, time_s: float) -> DemandHistory:
        """The slots at or before ``time_s`` (what was known then)."""
        n = math.floor((time_s - self.start_s) / self.step_s + 1e-9) + 1
        n = min(len(self.values), max(0, n))
        if n == len(self.values):
            return self
        return DemandHistory(self.start_s, self.step_s, self.values[:n], self.max_points)
