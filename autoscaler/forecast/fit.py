"""The forecast split in two: an expensive *fit* refreshed every few minutes, a cheap per-tick *evaluate*.

Why. :func:`~autoscaler.forecast.forecast_demand` cleans the whole history (8 days: percentiles, a
forward fill over ~11.5k working slots), smooths it for the seasonal profiles and backtests every
model over the last day: a few ms per call. A controller forecasting 10,000 targets every 15 s cannot
pay that per tick. But almost nothing it computes changes within minutes: the cleaning cap (a 99th
percentile over 8 days), the chosen model and its calibrated error quantiles (measured over a day),
and the seasonal profile (a day or a week back, smoothed over +-10 minutes). Only the *level* moves
from tick to tick: the last few minutes of demand.

So a :class:`ForecastFit` keeps what a full forecast learned (the chosen model, its error offsets and
floor, the cleaning cap, the window sizes, and the chosen seasonal model's profile on the fit's working
grid from an hour before the origin to one horizon plus :data:`FIT_LIFETIME_S` after it), and
:func:`forecast_from_fit` applies it to the newest points only: it reads the last ~1.5 hours of the
history (:meth:`DemandHistory.tail`), cleans them with the fit's cap onto the working grid, and
evaluates the chosen model at the new origin (the recent median, the trend line, or the profile at
the target rescaled by the last hour's level), then the fit's calibration. O(window), not O(history).

Exactness. The fit also keeps the forecast it made: at the fit's own tick (same ``now_s``, same
history) :func:`forecast_from_fit` returns exactly what ``forecast_demand`` returns. Later it differs
only by the level update: the profile slice is read between working slots (linear interpolation when
the working grid, which ends at the newest sample, has moved by a fraction of a working step), and
the cap, the model, the floor and the error quantiles are those of the fit. Whenever the fit does not
apply (other horizon, quantile or seasonality, older than its lifetime, a gap over the whole recent
window, an answer the model cannot give) the full forecast is computed instead: never a guess.

Where the fit lives. It is a frozen value in the target's memory
(:attr:`autoscaler.core.step.TargetState.forecast_fit`), refreshed by ``core.step.observe`` with
:func:`refresh_fit` and handed to the planners in the observation. That keeps the core pure and
replayable: the fit is an input like the history, a retry after a 409 re-runs ``step`` from the same
input state and gets the same fit, and the tuner pickles it with the rest of the state (it holds a few
hundred floats). A fit memoised on the history value instead would be hidden state that a copy, a
pickle or a warm start silently drops or keeps.

When it is refreshed. Once per :data:`REFIT_EVERY_S` window of time, on the first tick in it, with the
windows shifted per target by :func:`refit_phase_s` (a stable hash of the policy key): 10,000 targets
created together refit together once, then spread evenly over the 5 minutes. Also whenever the fit does
not serve the tick (a new horizon after a load time was measured, an edited policy, no fit yet), and
every tick while the forecast is not a backtested model (``short-history``, None): those come from
short histories, whose full forecast is cheap, and they must switch to a model as soon as one qualifies.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from autoscaler.forecast import models
from autoscaler.forecast.history import DemandHistory
from autoscaler.forecast.select import (
    Choice,
    Forecast,
    calibrated,
    check_arguments,
    clean,
    forecast_demand,
    forward_fill,
    seasons_of,
    select_model,
)

__all__ = [
    "FIT_LIFETIME_S",
    "REFIT_EVERY_S",
    "ForecastFit",
    "fit_forecast",
    "forecast_from_fit",
    "refit_phase_s",
    "refresh_fit",
]

FloatArray = npt.NDArray[np.float64]

REFIT_EVERY_S = 300.0
"""A target refits once per this much time (20 ticks at 15 s): a day's statistics barely move in it."""
FIT_LIFETIME_S = 2 * REFIT_EVERY_S
"""A fit older than this is not applied (a stalled driver, a skipped window): the full forecast is."""
LOOKBACK = 30
"""Working slots read before the models' windows, so that a short gap at the start of the window is
forward-filled from a real value, as the full forecast does. A longer gap: the full forecast runs."""
DEFAULT_SEASONALITY_S = (86400.0, 604800.0)


@dataclass(frozen=True, slots=True, eq=False)
class _Model:
    """The chosen model, reduced to what evaluating it at a later origin needs. Equal when every field
    is (the profile element by element), so that states holding fits compare as values."""

    factor: int  # history steps per working step
    work_s: float  # working step
    h: int  # horizon in working steps
    cap: float  # cleaning cap of the fit (<= 0: none)
    lo: float  # calibration: median and quantile relative error, and the floor they are relative to
    hi: float
    floor: float
    median_w: int
    trend_w: int
    level_w: int
    kind: str  # "recent-median", "trend", "seasonal" or "seasonal+level"
    profile: FloatArray | None  # the seasonal profile at working positions ``profile_from`` ... (origin 0)
    profile_from: int
    valid_s: float  # how long after the fit the profile slice covers the target

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Model):
            return NotImplemented
        same = all(getattr(self, f.name) == getattr(other, f.name) for f in fields(self) if f.name != "profile")
        if self.profile is None or other.profile is None:
            return same and self.profile is other.profile
        return same and bool(np.array_equal(self.profile, other.profile, equal_nan=True))

    __hash__ = None  # type: ignore[assignment]  # equal by value, like the other frozen values with arrays

    @property
    def slots(self) -> int:
        """Working slots read each tick."""
        return max(self.median_w, self.trend_w, self.level_w) + LOOKBACK


@dataclass(frozen=True, slots=True)
class ForecastFit:
    """What one full forecast learned, to apply at the next ticks. Frozen, picklable, a few KB."""

    now_s: float
    """When it was fitted (the forecast's ``now_s``)."""
    horizon_s: float
    quantile: float
    seasonality_s: tuple[float, ...]
    min_points: int
    step_s: float
    """The history's step when fitted."""
    fingerprint: tuple[float, int, int, float]
    """The history it was fitted on: (end, full-resolution slots, coarse slots, last value)."""
    point: float | None
    """The forecast at ``now_s`` (None: no forecast)."""
    upper: float
    model: str
    errors: tuple[tuple[str, float], ...]
    samples: int
    applied: _Model | None
    """None: the fit serves ``now_s`` only (short history, no forecast, no model to carry)."""

    def forecast(self) -> Forecast | None:
        """The forecast made when fitting (exactly ``forecast_demand``'s)."""
        if self.point is None:
            return None
        return self._at(self.point, self.upper)

    def _at(self, point: float, upper: float) -> Forecast:
        errors = MappingProxyType(dict(self.errors))
        return Forecast(point, upper, self.quantile, self.horizon_s, self.model, errors, self.samples)

    def fits(self, *, horizon_s: float, quantile: float, seasonality_s: tuple[float, ...], min_points: int) -> bool:
        """Fitted for these arguments."""
        return (
            self.horizon_s == horizon_s
            and self.quantile == quantile
            and self.seasonality_s == tuple(seasonality_s)
            and self.min_points == min_points
        )

    def carries(self, history: DemandHistory, now_s: float) -> bool:
        """Applicable at ``now_s`` to ``history`` (a model to carry, not too old, the same grid)."""
        a = self.applied
        return (
            a is not None
            and history.step_s == self.step_s
            and self.now_s <= now_s <= self.now_s + min(a.valid_s, FIT_LIFETIME_S)
            and history.end_s >= self.fingerprint[0]
        )


def refit_phase_s(key: str) -> float:
    """Where in each :data:`REFIT_EVERY_S` window the target keyed ``key`` refits: a stable hash (the
    same in every process and run, unlike ``hash``), so that targets created together spread out."""
    return zlib.crc32(key.encode()) / 2**32 * REFIT_EVERY_S


def _window_index(time_s: float, phase_s: float) -> int:
    return math.floor((time_s - phase_s) / REFIT_EVERY_S)


def _fingerprint(history: DemandHistory) -> tuple[float, int, int, float]:
    last = history.tail(1)
    coarse = history.coarse
    return (
        history.end_s,
        len(history),
        0 if coarse is None else len(coarse),
        float(last[0]) if last.size else math.nan,
    )


def fit_forecast(
    history: DemandHistory,
    *,
    now_s: float,
    horizon_s: float,
    quantile: float = 0.95,
    seasonality_s: tuple[float, ...] = DEFAULT_SEASONALITY_S,
    min_points: int = 8,
) -> ForecastFit:
    """The full forecast at ``now_s`` (:func:`forecast_demand`), kept with what it learned."""
    selection = select_model(
        history, now_s=now_s, horizon_s=horizon_s, quantile=quantile, seasonality_s=seasonality_s,
        min_points=min_points,
    )  # fmt: skip
    hist = history.until(now_s)
    f = selection.forecast
    return ForecastFit(
        now_s=now_s,
        horizon_s=horizon_s,
        quantile=quantile,
        seasonality_s=tuple(seasonality_s),
        min_points=min_points,
        step_s=hist.step_s,
        fingerprint=_fingerprint(hist),
        point=None if f is None else f.point,
        upper=math.nan if f is None else f.upper,
        model="" if f is None else f.model,
        errors=() if f is None else tuple(f.errors.items()),
        samples=0 if f is None else f.samples,
        applied=None if selection.choice is None else _carried(selection.choice, seasonality_s),
    )


def _carried(choice: Choice, seasonality_s: tuple[float, ...]) -> _Model | None:
    """The chosen model as a :class:`_Model`, or None when it cannot be carried to the next ticks."""
    prep, w = choice.prep, choice.windows
    n, h, work_s = prep.raw.size, prep.h, prep.step_s
    slots = max(w.median, w.trend, w.level) + LOOKBACK
    if n < slots:
        return None  # a young history: its full forecast is cheap, and its windows still grow
    base = choice.model.removesuffix("+level")
    kind, profile, profile_from, valid_s = choice.model, None, 0, FIT_LIFETIME_S
    if base.startswith("seasonal"):
        kind = "seasonal+level" if choice.model.endswith("+level") else "seasonal"
        season = next((s for p in seasonality_s if (s := seasons_of(p, work_s, n)) is not None and s[0] == base), None)
        if season is None:  # pragma: no cover - the chosen model came from one of these
            return None
        _, period, seasons = season
        # positions -level-1 .. h + ahead + 1 around the origin; the profile there must not read data
        # after the origin for as long as the fit is used
        lead = models.profile_lead(period, h, w.radius)
        ahead = min(math.ceil(FIT_LIFETIME_S / work_s), lead)
        if ahead < 1:
            return None
        valid_s = min(FIT_LIFETIME_S, ahead * work_s)
        profile_from = -w.level - 1
        profile = models.seasonal_profile(
            prep.raw, n - 1 + profile_from, n + h + ahead + 1, period=period, seasons=seasons, h=h,
            radius=w.radius,
        )  # fmt: skip
        profile.setflags(write=False)
    return _Model(
        factor=prep.factor, work_s=work_s, h=h, cap=prep.cap, lo=choice.lo, hi=choice.hi, floor=choice.floor,
        median_w=w.median, trend_w=w.trend, level_w=w.level, kind=kind, profile=profile,
        profile_from=profile_from, valid_s=valid_s,
    )  # fmt: skip


def refresh_fit(
    fit: ForecastFit | None,
    history: DemandHistory,
    *,
    now_s: float,
    horizon_s: float,
    quantile: float = 0.95,
    seasonality_s: tuple[float, ...] = DEFAULT_SEASONALITY_S,
    min_points: int = 8,
    phase_s: float = 0.0,
) -> ForecastFit:
    """``fit`` while it still serves ``now_s`` in the same refit window, else a new fit at ``now_s``.

    ``phase_s`` (:func:`refit_phase_s` of the target's key) shifts the windows. Pure: the same
    arguments give the same fit, so a retried tick refits exactly when the first attempt did.
    """
    if (
        fit is not None
        and fit.fits(horizon_s=horizon_s, quantile=quantile, seasonality_s=seasonality_s, min_points=min_points)
        and fit.carries(history.until(now_s), now_s)
        and _window_index(now_s, phase_s) == _window_index(fit.now_s, phase_s)
    ):
        return fit
    return fit_forecast(
        history, now_s=now_s, horizon_s=horizon_s, quantile=quantile, seasonality_s=seasonality_s,
        min_points=min_points,
    )  # fmt: skip


def forecast_from_fit(
    fit: ForecastFit | None,
    history: DemandHistory,
    *,
    now_s: float,
    horizon_s: float,
    quantile: float = 0.95,
    seasonality_s: tuple[float, ...] = DEFAULT_SEASONALITY_S,
    min_points: int = 8,
) -> Forecast | None:
    """The forecast :func:`forecast_demand` would give, from ``fit`` where it applies.

    At the fit's own tick this *is* the fit's forecast; later, within the fit's lifetime, the fitted
    model applied to the newest points (see the module docstring); otherwise (no fit, other arguments,
    too old, no recent data) the full forecast.
    """
    check_arguments(now_s=now_s, horizon_s=horizon_s, quantile=quantile)
    if fit is not None and fit.fits(
        horizon_s=horizon_s, quantile=quantile, seasonality_s=seasonality_s, min_points=min_points
    ):
        hist = history.until(now_s)
        if fit.now_s == now_s and fit.step_s == hist.step_s and fit.fingerprint == _fingerprint(hist):
            return fit.forecast()
        if fit.carries(hist, now_s):
            updated = _evaluate(fit, hist, now_s=now_s)
            if updated is not None:
                return updated
    return forecast_demand(
        history, now_s=now_s, horizon_s=horizon_s, quantile=quantile, seasonality_s=seasonality_s,
        min_points=min_points,
    )  # fmt: skip


def _evaluate(fit: ForecastFit, hist: DemandHistory, *, now_s: float) -> Forecast | None:
    """The fitted model at the newest origin of ``hist``; None when it has no answer there."""
    a = fit.applied
    assert a is not None  # checked by carries()
    if max(1, round((now_s + fit.horizon_s - hist.end_s) / a.work_s)) != a.h:
        return None  # the newest sample is older than when fitted: another horizon in working steps
    count = a.slots * a.factor
    tail = hist.tail(count)
    if tail.size < count:
        return None
    raw = _working_tail(tail, a.factor, a.cap)
    ok = np.isfinite(raw)
    if ok[LOOKBACK:].all():
        filled = raw  # the usual case: nothing to fill in the windows
    elif ok[: LOOKBACK + 1].any():
        filled = forward_fill(raw)
    else:
        return None  # a gap over the start of the windows: forward-filling it needs older data
    f = _model_at(a, filled, shift=(hist.end_s - fit.fingerprint[0]) / a.work_s)
    if not math.isfinite(f):
        return None
    point, upper = calibrated(f, a.lo, a.hi, a.floor)
    if not (math.isfinite(point) and math.isfinite(upper)):  # pragma: no cover - f and the fit are finite
        return None
    return fit._at(point, upper)


def _working_tail(tail: FloatArray, factor: int, cap: float) -> FloatArray:
    """The newest working slots from ``tail`` (a whole number of slots, aligned to the end as in
    ``select._prepare``), cleaned and capped as the fit was: a few numpy passes over ~360 values."""
    block = clean(tail).reshape(-1, factor)
    if factor == 1:
        raw = block[:, 0]
    else:
        ok = np.isfinite(block)
        counts = ok.sum(axis=1)
        sums = np.where(ok, block, 0.0).sum(axis=1)
        raw = np.full(counts.size, np.nan)
        np.divide(sums, counts, out=raw, where=counts > 0)
    if cap > 0:
        raw = np.minimum(raw, cap)  # NaN stays NaN
    return raw


def _model_at(a: _Model, filled: FloatArray, *, shift: float) -> float:
    """The chosen model's forecast at the last slot of ``filled``, which is ``shift`` working slots
    after the fit's origin (the same formulas as ``models``, for one origin; small windows are cheaper
    in Python than through numpy's dispatch)."""
    recent: list[float] = sorted(filled[-a.median_w :].tolist())
    mid = len(recent) // 2
    median = recent[mid] if len(recent) % 2 else 0.5 * (recent[mid - 1] + recent[mid])
    if a.kind == "recent-median":
        return median
    if a.kind == "trend":
        rows = filled[-a.trend_w :]
        mean = float(rows.sum()) / a.trend_w
        if a.trend_w < 2:
            return mean
        x = np.arange(a.trend_w, dtype=np.float64) - (a.trend_w - 1) / 2.0
        return mean + float(rows @ x) / float(x @ x) * ((a.trend_w - 1) / 2.0 + a.h)
    assert a.profile is not None  # seasonal kinds carry one
    # every position moved by the same ``shift``: one interpolation weight for the whole slice
    whole = math.floor(shift)
    w = shift - whole
    start = whole - a.level_w + 1 - a.profile_from  # index of the level window's first position
    stop = start + a.level_w + a.h  # through the target
    left = a.profile[start:stop]
    cut = left if w == 0.0 else (1.0 - w) * left + w * a.profile[start + 1 : stop + 1]
    level = float(filled[-a.level_w :].sum()) / a.level_w
    seasonal = models.rescale(float(cut[-1]), cut[: a.level_w], level, floor=a.floor)
    return 0.5 * (seasonal + median) if a.kind == "seasonal+level" else seasonal
