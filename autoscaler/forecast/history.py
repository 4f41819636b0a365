"""A demand series on a regular time grid, kept at full resolution only where the forecasters need it.

``DemandHistory`` is the input of every forecaster: demand (tokens/s, requests/s, ...) on a grid of
``step_s``; NaN marks a gap (no sample, a failed query, a stale series). It is a *value*: building one
and appending a tick both return a new history, and nothing a caller can see ever changes, so the
controller, the simulator and tests share one without copies or surprises.

Why two tiers. Eight days at 15 s are 46,080 points (368 KB as float64) per target; at 10,000
predictive targets that is several GB. The forecasters do not need all of it at 15 s:

* the selector (``select.py``) backtests every model on the last day's origins (``EVAL_SPAN_S``),
  each reading its own window before the origin (up to 2 horizons for ``trend``, an hour for the
  seasonal level) and scored against the full-resolution value one horizon later. That is at most a
  day plus three hours for horizons up to an hour: :data:`FULL_SPAN_S`, kept at the step;
* the seasonal models read one day and one week back *smoothed over +-10 minutes*, so a 5-minute mean
  there (:data:`COARSE_STEP_S`) loses almost nothing.

Older slots are therefore folded into 5-minute means with a count of the samples behind each (count 0
and mean NaN: a gap stays a gap). 8 days at 15 s then take about 38 KB instead of 368 KB. A fold
averages what the forecaster would use of those slots (its cleaning runs on ``dense()``, after the
fold, so the fold has to clean the same way): finite values >= 0, each capped at ``SPIKE_FACTOR`` x the
99th percentile of the full-resolution part being folded. Otherwise one counter reset (a negative
rate) or one corrupt spike would poison a whole 5-minute mean.

Storage is float32 (24-bit mantissa, relative rounding < 6e-8): demand signals are counts and rates
whose own noise is orders of magnitude larger, and it halves the bytes. :attr:`values` hands out
float64, as before; a series that is exact in float32 (integers below 2**24, or values already rounded
to float32) is stored exactly.

Appending is O(1) amortised, not a copy per tick: successive values share one append-only buffer
(:class:`_Ring`). A value sees ``data[off : off + n]``; appending writes *after* that range, where no
older value looks, so older values stay intact. Appending to a value that is not the newest one on
its buffer (a retry from an earlier state, a history cut by :meth:`until`) copies instead.

When a fold happens is a rule on the full-resolution length alone (:meth:`_Layout.folds`): once it
reaches :data:`FULL_SPAN_S` plus an hour of whole 5-minute groups, that hour is folded into the coarse
tier (groups anchored at the coarse tier's start) and the rest is copied to a new buffer - a copy of
about a day of points every hour of ticks. The buffer's size never decides anything, so the tiers are
a function of the series: the hot path, a copy (the retry after a 409, which must give exactly what
the first attempt gave), the constructor and unpickling (the tuner) all fold at the same ticks, and a
history built at once holds what the same values appended one by one would.

Caveats:

* The full-resolution part stores what it is given (non-finite values become NaN; values beyond
  float32's range are clipped to it), so that the recent raw series stays inspectable; cleaning it is
  the forecaster's job. The coarse tier holds cleaned means (above), not raw ones.
* The total span is bounded by ``capacity`` (by default 8 days at the step) rounded up to a whole
  coarse slot: the oldest coarse slots drop as the full-resolution part grows, the oldest
  full-resolution ones when the history is not tiered.
* The coarse slot is the whole number of steps nearest 5 minutes (240 s at a 120 s step, 360 s at
  180 s); steps of 250 s and more are not tiered. Counts take the narrowest unsigned type that holds
  one slot's samples.
* The shared buffer assumes one writer at a time (the core is synchronous); values may be read from
  any thread.
* ``len(history)``, :attr:`values`, :attr:`start_s` and :meth:`times_s` describe the full-resolution
  part; :attr:`coarse` the downsampled part before it; :meth:`dense` both on the step's grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["COARSE_STEP_S", "DEFAULT_HISTORY_S", "FULL_SPAN_S", "CoarseTier", "DemandHistory", "history_points"]

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
CountArray = npt.NDArray[np.unsignedinteger[Any]]

DEFAULT_HISTORY_S = 8 * 86400.0  # a week for weekly seasonality plus a day to measure errors on
FULL_SPAN_S = 27 * 3600.0  # the backtested day + horizon + the models' windows (see the docstring)
COARSE_STEP_S = 300.0  # the seasonal lookups smooth over +-10 min; 5-minute means lose little there
FOLD_EVERY_S = 3600.0  # a full buffer folds this much at once (a copy of ~a day per hour of ticks)
_F32_MAX = float(np.finfo(np.float32).max)


def history_points(history_days: float, step_s: float) -> int:
    """``max_points`` for ``history_days`` of slots of ``step_s`` (a policy's ``historyDays``): the
    bound the ticks keep (:func:`autoscaler.core.predictive.record_demand` computes the same)."""
    return int(history_days * 86400 / step_s) + 1


def _as_float32(values: npt.ArrayLike) -> Float32Array:
    v = np.array(values, dtype=np.float64, copy=True).reshape(-1)
    v[~np.isfinite(v)] = np.nan
    np.clip(v, -_F32_MAX, _F32_MAX, out=v)
    return v.astype(np.float32)


def _readonly(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.setflags(write=False)
    return array


class _Ring:
    """An append-only float32 buffer shared by successive histories; ``filled`` slots are written."""

    __slots__ = ("data", "filled")

    def __init__(self, data: Float32Array, filled: int) -> None:
        self.data = data
        self.filled = filled


@dataclass(frozen=True, slots=True)
class CoarseTier:
    """The downsampled past: ``means[k]`` is the mean of the ``counts[k]`` finite samples in
    ``[start_s + k * step_s, start_s + (k + 1) * step_s)``; NaN (count 0) is a gap."""

    start_s: float
    """Time of the first fine slot folded into ``means[0]``."""
    step_s: float
    """Width of a coarse slot (a whole number of the history's steps)."""
    means: Float32Array
    """Mean per slot, float32, read-only."""
    counts: CountArray
    """Finite samples behind each mean (uint8, or uint16 at fine steps), read-only."""

    @property
    def end_s(self) -> float:
        """Where the next coarse slot (or the full-resolution part) begins."""
        return self.start_s + len(self.means) * self.step_s

    def __len__(self) -> int:
        return len(self.means)

    @property
    def nbytes(self) -> int:
        return int(self.means.nbytes + self.counts.nbytes)


def _count_dtype(factor: int) -> type[np.unsignedinteger[Any]]:
    """The narrowest unsigned type that holds a count of ``factor`` samples."""
    if factor <= np.iinfo(np.uint8).max:
        return np.uint8
    return np.uint16 if factor <= np.iinfo(np.uint16).max else np.uint32


def _spike_cap(window: FloatArray) -> float:
    """The forecaster's spike cap (``select.SPIKE_FACTOR`` x the 99th percentile of the usable values)
    for values folded out of ``window``: ``inf`` (no cap) when nothing in it is usable or the cap is 0."""
    from autoscaler.forecast.select import SPIKE_FACTOR  # select imports this module

    usable = window[np.isfinite(window) & (window >= 0.0)]
    if usable.size == 0:
        return math.inf
    cap = float(np.percentile(usable, 99)) * SPIKE_FACTOR
    return cap if cap > 0 else math.inf


def _fold(fine: FloatArray, factor: int, caps: FloatArray) -> tuple[Float32Array, CountArray]:
    """Means and counts of consecutive groups of ``factor`` slots (``fine.size`` is a multiple), over
    the values the forecaster would use: finite and >= 0 (a counter reset read as a negative rate is
    not averaged in), each capped at its group's entry of ``caps`` (a corrupt spike counts as the cap,
    as the forecaster clips it, instead of swamping 5 minutes of means)."""
    block = fine.reshape(-1, factor)
    ok = np.isfinite(block) & (block >= 0.0)
    counts = ok.sum(axis=1)
    sums = np.where(ok, np.minimum(block, caps[:, None]), 0.0).sum(axis=1)
    means = np.full(block.shape[0], np.nan)
    np.divide(sums, counts, out=means, where=counts > 0)
    return means.astype(np.float32), counts.astype(_count_dtype(factor))


def _fold_chunks(fine: FloatArray, layout: _Layout, chunks: int) -> tuple[Float32Array, CountArray]:
    """Fold the first ``chunks`` x ``fold_points`` slots of ``fine`` as that many successive folds
    would, one at a time: each chunk's spike cap is taken over the slots the fine part held when it
    was folded (the chunk and the ``full_points`` after it), so a history built at once and one fed
    tick by tick fold to the same means."""
    per_chunk = layout.fold_points // layout.factor
    caps = np.empty(chunks * per_chunk)
    for k in range(chunks):
        lo = k * layout.fold_points
        caps[k * per_chunk : (k + 1) * per_chunk] = _spike_cap(fine[lo : lo + layout.fold_at])
    return _fold(fine[: chunks * layout.fold_points], layout.factor, caps)


class DemandHistory:
    """Demand on a regular grid: ``values[i]`` is at ``start_s + i * step_s``; NaN is a gap. Older
    slots than ``start_s`` live in :attr:`coarse` as 5-minute means. Immutable."""

    __slots__ = ("_coarse", "_layout", "_n", "_off", "_ring", "full_span_s", "max_points", "start_s", "step_s")

    start_s: float
    """Time of ``values[0]``, the first full-resolution slot (seconds, any epoch shared with ``now_s``)."""
    step_s: float
    """Grid spacing in seconds (> 0)."""
    max_points: int | None
    """Bound on the total span in steps (both tiers); ``None`` = 8 days at the step."""
    full_span_s: float | None
    """How far back slots stay at full resolution; ``None`` = :data:`FULL_SPAN_S`, ``math.inf`` = all
    of it (no coarse tier: the layout before downsampling existed, for comparisons)."""
    _ring: _Ring  # the shared buffer; this value sees ``_ring.data[_off : _off + _n]``
    _off: int
    _n: int
    _coarse: CoarseTier | None
    _layout: _Layout

    def __init__(
        self,
        start_s: float,
        step_s: float,
        values: npt.ArrayLike,
        max_points: int | None = None,
        *,
        full_span_s: float | None = None,
    ) -> None:
        _check(start_s, step_s, max_points, full_span_s)
        fine = np.array(values, dtype=np.float64, copy=True).reshape(-1)
        fine[~np.isfinite(fine)] = np.nan
        self._become(DemandHistory._build(float(start_s), float(step_s), fine, None, max_points, full_span_s))

    def _become(self, other: DemandHistory) -> None:
        for name in DemandHistory.__slots__:
            object.__setattr__(self, name, object.__getattribute__(other, name))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"DemandHistory is immutable: cannot set {name}")

    @staticmethod
    def _raw(
        start_s: float,
        step_s: float,
        ring: _Ring,
        off: int,
        n: int,
        coarse: CoarseTier | None,
        max_points: int | None,
        full_span_s: float | None,
        layout: _Layout | None = None,
    ) -> DemandHistory:
        out = object.__new__(DemandHistory)
        setattr_ = object.__setattr__
        setattr_(out, "start_s", start_s)
        setattr_(out, "step_s", step_s)
        setattr_(out, "_ring", ring)
        setattr_(out, "_off", off)
        setattr_(out, "_n", n)
        setattr_(out, "_coarse", coarse)
        setattr_(out, "max_points", max_points)
        setattr_(out, "full_span_s", full_span_s)
        setattr_(out, "_layout", layout or _Layout.of(step_s, max_points, full_span_s))
        return out

    # -- construction ---------------------------------------------------------------------------------

    @staticmethod
    def empty(
        *, start_s: float, step_s: float, max_points: int | None = None, full_span_s: float | None = None
    ) -> DemandHistory:
        """A history with no slots yet; the first :meth:`append` at ``start_s`` fills slot 0."""
        return DemandHistory(start_s, step_s, np.zeros(0), max_points, full_span_s=full_span_s)

    @staticmethod
    def from_samples(
        times_s: Sequence[float] | FloatArray,
        values: Sequence[float] | FloatArray,
        step_s: float,
        *,
        start_s: float | None = None,
        max_points: int | None = None,
        full_span_s: float | None = None,
    ) -> DemandHistory:
        """Resample irregular samples onto the grid: each sample goes to its nearest slot, slots with
        several samples take their mean, slots with none (or only non-finite ones) stay NaN; slots
        older than the full-resolution span are then folded into the coarse tier.

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
        probe = DemandHistory.empty(start_s=start_s, step_s=step_s, max_points=max_points, full_span_s=full_span_s)
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
        return DemandHistory(start_s + drop * step_s, step_s, grid[drop:], max_points, full_span_s=full_span_s)

    @staticmethod
    def _build(
        start_s: float,
        step_s: float,
        fine: FloatArray,
        coarse: CoarseTier | None,
        max_points: int | None,
        full_span_s: float | None,
    ) -> DemandHistory:
        """A new value (on a new buffer) from a float64 full-resolution part and the coarse part before
        it: slots beyond the bound are dropped, whole groups beyond the full span folded."""
        layout = _Layout.of(step_s, max_points, full_span_s)
        if not layout.tiered:
            drop = max(0, fine.size - layout.capacity)
            start_s, fine, coarse = start_s + drop * step_s, fine[drop:], None
        else:
            chunks = layout.folds(fine.size)
            if chunks:
                cut = chunks * layout.fold_points
                means, counts = _fold_chunks(fine, layout, chunks)
                if coarse is None or len(coarse) == 0:
                    coarse = CoarseTier(start_s, layout.factor * step_s, means, counts)
                else:
                    coarse = CoarseTier(
                        coarse.start_s,
                        coarse.step_s,
                        np.concatenate((coarse.means, means)),
                        np.concatenate((coarse.counts, counts)),
                    )
                start_s, fine = start_s + cut * step_s, fine[cut:]
            coarse = _trimmed(coarse, layout.coarse_slots(fine.size), copy=True)
        size = layout.buffer_points(fine.size)
        data = np.full(size, np.nan, dtype=np.float32)
        data[: fine.size] = _as_float32(fine)
        return DemandHistory._raw(
            start_s, step_s, _Ring(data, fine.size), 0, fine.size, coarse, max_points, full_span_s, layout
        )

    # -- reading --------------------------------------------------------------------------------------

    @property
    def values(self) -> FloatArray:
        """The full-resolution slots as float64 (a fresh read-only array; NaN = no usable sample)."""
        return _readonly(self._ring.data[self._off : self._off + self._n].astype(np.float64))

    @property
    def coarse(self) -> CoarseTier | None:
        """The downsampled slots before :attr:`start_s` (None: nothing has been folded yet)."""
        return self._coarse

    @property
    def capacity(self) -> int:
        """How many slots (of ``step_s``) both tiers span at most."""
        return self._layout.capacity

    @property
    def full_points(self) -> int:
        """How many of the newest slots stay at full resolution (at least; folding is by whole groups)."""
        return self._layout.full_points

    @property
    def end_s(self) -> float:
        """Time of the last slot (``start_s - step_s`` when empty)."""
        return self.start_s + (self._n - 1) * self.step_s

    @property
    def first_s(self) -> float:
        """The oldest time covered, coarse tier included."""
        return self._coarse.start_s if self._coarse is not None and len(self._coarse) else self.start_s

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this value keeps alive (the whole shared buffer, spare room included)."""
        return int(self._ring.data.nbytes + (self._coarse.nbytes if self._coarse is not None else 0))

    def __len__(self) -> int:
        return self._n

    def tail(self, count: int) -> FloatArray:
        """The newest ``count`` full-resolution slots as float64 (fewer when there are fewer): what a
        fitted forecast reads each tick, O(count) rather than O(span) like :attr:`values`."""
        take = min(max(0, count), self._n)
        end = self._off + self._n
        return self._ring.data[end - take : end].astype(np.float64)

    def times_s(self) -> FloatArray:
        """The time of each full-resolution slot."""
        return self.start_s + self.step_s * np.arange(self._n, dtype=np.float64)

    def dense(self) -> tuple[float, FloatArray]:
        """The whole history on the step's grid, as ``(time of element 0, float64 values)``: each coarse
        mean repeated over the slots it stands for (NaN for a coarse gap), then the full-resolution
        slots. A fresh array, O(span): what the forecasters read."""
        fine = self._ring.data[self._off : self._off + self._n]
        coarse = self._coarse
        if coarse is None or len(coarse) == 0:
            return self.start_s, fine.astype(np.float64)
        factor = round(coarse.step_s / self.step_s)
        past = len(coarse) * factor
        out = np.empty(past + fine.size)
        out[:past].reshape(-1, factor)[:] = coarse.means[:, None]  # one pass, no temporaries
        out[past:] = fine
        return coarse.start_s, out

    # -- updating -------------------------------------------------------------------------------------

    def append(self, time_s: float, value: float) -> DemandHistory:
        """A new history with ``value`` in the slot nearest ``time_s``.

        Later slots than the current end are created (the skipped ones as NaN gaps); a sample for an
        existing full-resolution slot replaces it (the newest reading wins); a sample before
        ``start_s`` is ignored. The oldest slots are folded or dropped beyond the bounds.
        """
        if not math.isfinite(time_s):
            return self
        v = float(value) if math.isfinite(value) else math.nan
        slot = round((time_s - self.start_s) / self.step_s)
        if slot < 0:
            return self
        n, off, ring, layout = self._n, self._off, self._ring, self._layout
        end = off + n
        new = slot - n + 1  # slots to add
        if new > 0 and ring.filled == end and end + new <= ring.data.size and layout.grows_in_place(n, new):
            # the hot path: write after everything older values can see; no fold is due
            if new > 1:
                ring.data[end : end + new - 1] = np.nan
            ring.data[end + new - 1] = min(max(v, -_F32_MAX), _F32_MAX) if v == v else v  # NaN stays NaN
            ring.filled = end + new
            n += new
            start_s, coarse = self.start_s, self._coarse
            if not layout.tiered and n > layout.capacity:
                drop = n - layout.capacity
                off, n, start_s = off + drop, layout.capacity, start_s + drop * self.step_s
            elif coarse is not None:  # the oldest coarse slots drop as the fine part grows (a view)
                coarse = _trimmed(coarse, layout.coarse_slots(n), copy=False)
            return DemandHistory._raw(
                start_s, self.step_s, ring, off, n, coarse, self.max_points, self.full_span_s, layout
            )
        fine = ring.data[off:end].astype(np.float64)
        if new <= 0:
            fine[slot] = v  # a newer reading of a slot we have: rare (a tick that came early)
        elif new > layout.capacity:  # a jump past everything we keep: only gaps before the new sample
            skipped = slot + 1 - layout.capacity
            return DemandHistory._build(
                self.start_s + skipped * self.step_s, self.step_s,
                np.concatenate((np.full(layout.capacity - 1, np.nan), [v])),
                None, self.max_points, self.full_span_s,
            )  # fmt: skip
        else:
            fine = np.concatenate((fine, np.full(new - 1, np.nan), [v]))
        return DemandHistory._build(self.start_s, self.step_s, fine, self._coarse, self.max_points, self.full_span_s)

    def bounded(self, max_points: int | None) -> DemandHistory:
        """The same series under another bound (``max_points``, as in the constructor): the oldest
        slots drop to a smaller bound; a larger one keeps what there is and lets the ticks fill it."""
        if max_points == self.max_points:
            return self
        _check(self.start_s, self.step_s, max_points, self.full_span_s)
        fine = self._ring.data[self._off : self._off + self._n].astype(np.float64)
        return DemandHistory._build(self.start_s, self.step_s, fine, self._coarse, max_points, self.full_span_s)

    def until(self, time_s: float) -> DemandHistory:
        """The slots at or before ``time_s`` (what was known then; a coarse slot only when all of it was)."""
        n = math.floor((time_s - self.start_s) / self.step_s + 1e-9) + 1
        n = min(self._n, max(0, n))
        if n == self._n:
            return self
        coarse, start_s = self._coarse, self.start_s
        if n == 0 and coarse is not None and len(coarse):
            factor = round(coarse.step_s / self.step_s)
            last_fine = coarse.start_s + (np.arange(1, len(coarse) + 1) * factor - 1) * self.step_s
            keep = int(np.count_nonzero(last_fine <= time_s + 1e-9 * self.step_s))
            coarse = CoarseTier(coarse.start_s, coarse.step_s, coarse.means[:keep], coarse.counts[:keep])
            start_s = coarse.end_s
        return DemandHistory._raw(
            start_s, self.step_s, self._ring, self._off, n, coarse, self.max_points, self.full_span_s, self._layout
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # pickling (the tuner's worker processes) must not go through the refused __setattr__
        fine = self._ring.data[self._off : self._off + self._n].copy()
        return (_restore, (self.start_s, self.step_s, fine, self._coarse, self.max_points, self.full_span_s))

    def __repr__(self) -> str:
        coarse = f", coarse {len(self._coarse)} x {self._coarse.step_s:g}s" if self._coarse else ""
        return f"DemandHistory(start_s={self.start_s:g}, step_s={self.step_s:g}, {self._n} points{coarse})"


def _restore(
    start_s: float,
    step_s: float,
    fine: Float32Array,
    coarse: CoarseTier | None,
    max_points: int | None,
    full_span_s: float | None,
) -> DemandHistory:
    # the buffer's size does not matter: when a fold happens follows from the length alone
    layout = _Layout.of(step_s, max_points, full_span_s)
    data = np.full(layout.buffer_points(fine.size), np.nan, dtype=np.float32)
    data[: fine.size] = fine
    if coarse is not None:  # unpickled arrays come back writable
        coarse = CoarseTier(coarse.start_s, coarse.step_s, _readonly(coarse.means), _readonly(coarse.counts))
    return DemandHistory._raw(
        start_s, step_s, _Ring(data, fine.size), 0, fine.size, coarse, max_points, full_span_s, layout
    )


def _trimmed(coarse: CoarseTier | None, keep: int, *, copy: bool) -> CoarseTier | None:
    """``coarse`` without its oldest slots beyond ``keep``: views on the hot path (O(1)), fresh
    read-only arrays when building (so that a dropped past is not kept alive)."""
    if coarse is None:
        return None
    excess = len(coarse) - keep
    if excess <= 0 and not copy:
        return coarse
    excess = max(0, excess)
    means, counts = coarse.means[excess:], coarse.counts[excess:]
    if copy:
        means, counts = _readonly(means.copy()), _readonly(counts.copy())
    return CoarseTier(coarse.start_s + excess * coarse.step_s, coarse.step_s, means, counts)


def _check(start_s: float, step_s: float, max_points: int | None, full_span_s: float | None) -> None:
    if not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step_s = {step_s}, must be a finite number > 0")
    if not math.isfinite(start_s):
        raise ValueError(f"start_s = {start_s}, must be finite")
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points = {max_points}, must be >= 1")
    if full_span_s is not None and not full_span_s > 0:
        raise ValueError(f"full_span_s = {full_span_s}, must be > 0 (math.inf: no downsampling)")


@dataclass(frozen=True, slots=True)
class _Layout:
    """The sizes that follow from a history's step and bounds."""

    capacity: int  # total slots, both tiers
    full_points: int  # slots kept at full resolution (at least, when tiered)
    factor: int  # slots per coarse slot
    tiered: bool  # False: everything at full resolution, the oldest slots simply drop
    fold_points: int  # how much folds at once (whole groups, about an hour, never past the capacity)

    @staticmethod
    def of(step_s: float, max_points: int | None, full_span_s: float | None) -> _Layout:
        capacity = max_points if max_points is not None else max(1, math.ceil(DEFAULT_HISTORY_S / step_s))
        span = FULL_SPAN_S if full_span_s is None else full_span_s
        full = capacity if math.isinf(span) else min(capacity, max(1, math.ceil(span / step_s)))
        factor = max(1, round(COARSE_STEP_S / step_s))
        tiered = factor >= 2 and capacity > full + factor
        groups = max(2, round(FOLD_EVERY_S / (factor * step_s)))
        fold = factor * max(1, min(groups, (capacity - full) // factor))
        return _Layout(capacity, full, factor, tiered, fold)

    @property
    def fold_at(self) -> int:
        """The full-resolution length that triggers a fold (never reached by a stored value)."""
        return self.full_points + self.fold_points

    def folds(self, n: int) -> int:
        """How many chunks of ``fold_points`` a full-resolution part of ``n`` slots folds.

        The one rule for when folding happens, a function of the length alone: the hot path, a copy
        (a retry, a cut history), the constructor and unpickling all apply it, so the same series
        gives the same tiers whichever way it was built. Growing one slot at a time from ``full_points``
        it folds one chunk at ``fold_at`` and is back at ``full_points``; a longer part folds as that
        many successive folds would have."""
        return (n - self.full_points) // self.fold_points if self.tiered and n >= self.fold_at else 0

    def grows_in_place(self, n: int, new: int) -> bool:
        """Whether ``new`` slots after ``n`` leave the layout alone (no fold is due, nothing to drop
        past what the hot path drops)."""
        return n + new < self.fold_at if self.tiered else new <= self.capacity

    def coarse_slots(self, fine_points: int) -> int:
        """Coarse slots to keep beside ``fine_points`` full-resolution ones (a partial one counts, so
        the span is ``capacity`` rounded up to a whole coarse slot)."""
        return max(0, math.ceil((self.capacity - fine_points) / self.factor))

    def buffer_points(self, n: int) -> int:
        """Buffer size for a part of ``n`` slots: room to grow, doubling until the steady size."""
        steady = self.fold_at if self.tiered else self.capacity + max(16, self.capacity // 8)
        return max(n + 1, min(steady, max(64, 2 * n)))
