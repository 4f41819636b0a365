"""``forecast_demand``: pick the model with the lowest recent error at the real horizon, and give a
conformal upper quantile.

One call does, in order:

1. **Prepare** the history up to ``now_s`` (``DemandHistory.dense()``: the full-resolution part, and
   before it the coarse tier's 5-minute means repeated over their slots): non-finite and negative
   values (gaps, counter resets read as negative rates) become gaps; values are capped far above the
   series' own 99th percentile, so a corrupt sample cannot overflow anything; the series is averaged
   onto a *working grid* of about a minute (never coarser than the horizon) - a 15 s history of 8 days
   becomes ~11.5k points.
2. **Backtest** every candidate of ``models.py`` on the last day's origins (or as many as the history
   allows): each forecast uses data up to its origin only and is compared with what happened ``h``
   later, ``h`` being the horizon plus the age of the newest sample.
3. **Select** the candidate with the lowest recent pinball loss at ``quantile`` after calibration
   (each candidate's forecasts shifted by its own error quantile), over the origins where all of them
   have an answer.
4. **Calibrate** (split-conformal style): the errors of the chosen model, relative to its forecast
   plus a small floor so that they scale with the level, give the median (``point``) and the
   ``quantile`` (``upper``) as offsets from the current forecast. Unsure recent forecasts therefore
   widen the band.

The result is never NaN or negative, and ``upper >= point``. With too little history for a backtest
(fewer than ``MIN_ERRORS`` scored origins) the answer is the recent median and the recent
``quantile`` of values (model ``short-history``); below ``min_points`` finite samples it is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from autoscaler.forecast import models
from autoscaler.forecast.history import DemandHistory

__all__ = ["MIN_ERRORS", "Forecast", "forecast_demand"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MIN_ERRORS = 12  # scored origins needed before a backtest-based choice and band are trusted
WORKING_STEP_S = 60.0  # the grid the models run on (at most; never finer than the history's step)
EVAL_SPAN_S = 86400.0  # how far back errors are measured: a day covers every hour's regime
MAX_EVAL_ORIGINS = 1440  # at most this many backtest origins (strided evenly over EVAL_SPAN_S)
LEVEL_WINDOW_S = 3600.0  # the "recent level" that rescales the seasonal profile
MEDIAN_WINDOW_S = 300.0  # the robust fallback's window
SMOOTH_RADIUS_S = 600.0  # half-width of the smoothing of past periods
VALUE_CAP = 1e15  # no demand signal is this large; keeps sums finite
SPIKE_FACTOR = 10.0  # values above this multiple of the 99th percentile are treated as corrupt
FLOOR_FRACTION = 1.0  # errors are relative to (forecast + this share of the recent mean level)


@dataclass(frozen=True, slots=True)
class Forecast:
    """A demand forecast at ``now + horizon_s`` with its upper quantile and how it was chosen."""

    point: float
    """Median forecast (>= 0)."""
    upper: float
    """The ``quantile`` forecast (>= point)."""
    quantile: float
    """The quantile ``upper`` stands for, e.g. 0.95."""
    horizon_s: float
    """Seconds after ``now`` the forecast is for (as asked)."""
    model: str
    """Name of the chosen model: ``seasonal-daily``, ``seasonal-weekly``, their ``+level`` blends (mean
    with the recent median), ``trend``, ``recent-median`` or ``short-history``."""
    errors: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """Each candidate's recent out-of-sample pinball loss at ``quantile`` (lower is better)."""
    samples: int = 0
    """How many recent forecast errors the band was calibrated on."""

    def explain(self) -> str:
        """One line for decision messages."""
        q = f"p{round(self.quantile * 100):d}"
        ranked = sorted(self.errors.items(), key=lambda kv: (kv[1], kv[0]))
        scores = ", ".join(f"{name} {loss:.3g}" for name, loss in ranked)
        basis = f"; recent {q} loss {scores} over {self.samples} forecasts" if scores else ""
        return f"forecast {self.point:.4g} ({q} {self.upper:.4g}) at +{self.horizon_s:g}s by {self.model}{basis}"


@dataclass(frozen=True, slots=True)
class Prepared:
    """The history cleaned onto the working grid (what the models read)."""

    raw: FloatArray  # working grid, NaN gaps
    filled: FloatArray  # working grid, gaps forward-filled
    native: FloatArray  # the history's own value at the end of each working slot (what is scored)
    step_s: float  # working step
    h: int  # horizon in working steps from the last slot
    factor: int  # history steps per working step (working slots end at the history's last slot)
    cap: float  # values above this are clipped (SPIKE_FACTOR x the 99th percentile; <= 0: none)


def clean(values: FloatArray) -> FloatArray:
    """Capped at VALUE_CAP; negatives (counter resets) and non-finite values become NaN gaps."""
    values = np.minimum(values, VALUE_CAP)  # NaN stays NaN
    return np.where(values >= 0.0, values, np.nan)


def working_means(block: FloatArray) -> FloatArray:
    """Mean of the finite values of each row of ``block`` (NaN for none): the working grid's slots."""
    sums = np.zeros(block.shape[0])
    counts = np.zeros(block.shape[0])
    for col in range(block.shape[1]):  # a few strided adds beat a reduction over a short axis
        column = block[:, col]
        ok = np.isfinite(column)
        sums += np.where(ok, column, 0.0)
        counts += ok
    raw = np.full(block.shape[0], np.nan)
    np.divide(sums, counts, out=raw, where=counts > 0)
    return raw


def working_factor(step_s: float, horizon_s: float) -> int:
    """History steps per working step: about a minute, never coarser than the horizon."""
    return max(1, min(int(WORKING_STEP_S // step_s), int(horizon_s // step_s)))


def _prepare(values: FloatArray, step_s: float, end_s: float, now_s: float, horizon_s: float) -> Prepared | None:
    """``values`` on the history's grid (``DemandHistory.dense()``) ending at ``end_s``, cut at ``now_s``."""
    values = clean(values)
    if values.size == 0:
        return None
    factor = working_factor(step_s, horizon_s)
    usable = values.size - values.size % factor
    if usable == 0:
        factor, usable = 1, values.size
    block = values[values.size - usable :].reshape(-1, factor)
    raw = working_means(block)
    finite = raw[np.isfinite(raw)]
    if finite.size == 0:
        return None
    cap = float(np.percentile(finite, 99)) * SPIKE_FACTOR
    native = np.array(block[:, -1])
    if cap > 0:
        raw = np.where(raw > cap, cap, raw)
        native = np.where(native > cap, cap, native)
    work_s = step_s * factor
    # the last working slot ends at end_s, and targets are native slots at the ends of working slots
    h = max(1, round((now_s + horizon_s - end_s) / work_s))
    return Prepared(raw, forward_fill(raw), native, work_s, h, factor, cap)


def forward_fill(raw: FloatArray) -> FloatArray:
    """Each gap takes the last value before it (leading gaps the first value)."""
    ok = np.isfinite(raw)
    idx = np.where(ok, np.arange(raw.size), 0)
    np.maximum.accumulate(idx, out=idx)
    first = int(np.argmax(ok))
    out = raw[idx]
    out[:first] = raw[first]
    return np.asarray(out, dtype=np.float64)


def _steps(seconds: float, step_s: float) -> int:
    return max(1, round(seconds / step_s))


@dataclass(frozen=True, slots=True)
class Windows:
    """The models' window sizes in working steps for one forecast (fixed by the step, the horizon and,
    while the history is short, the first backtest origin)."""

    median: int
    trend: int
    level: int
    radius: int  # half-width of the seasonal smoothing

    @staticmethod
    def of(prep: Prepared, first_origin: int) -> Windows:
        step, h = prep.step_s, prep.h
        limit = first_origin + 1  # no window may reach before the start of the series
        return Windows(
            median=min(_steps(MEDIAN_WINDOW_S, step), limit),
            trend=min(max(3, _steps(max(2 * h * step, 900.0), step)), limit),
            level=_steps(LEVEL_WINDOW_S, step),
            radius=max(0, round(SMOOTH_RADIUS_S / step)) if step < SMOOTH_RADIUS_S else 0,
        )


def seasons_of(period_s: float, step_s: float, n: int) -> tuple[str, int, int] | None:
    """(model name, period in working steps, seasons averaged) for a seasonality, None when the history
    is shorter than one period. Daily averages the past week of days; longer periods the last one only."""
    period = round(period_s / step_s)
    if period < 2 or n <= period:
        return None
    seasons = max(1, min(7, round(604800.0 / period_s))) if period_s < 604800.0 else 1
    return _season_name(period_s), period, seasons


def _candidates(
    prep: Prepared, origins: IntArray, seasonality_s: tuple[float, ...], floor: float, windows: Windows
) -> dict[str, FloatArray]:
    h, n = prep.h, prep.raw.size
    out: dict[str, FloatArray] = {}
    out["recent-median"] = models.recent_median(prep.filled, origins, window=windows.median)
    out["trend"] = models.trend(prep.filled, origins, window=windows.trend, h=h)
    for period_s in sorted(seasonality_s):
        season = seasons_of(period_s, prep.step_s, n)
        if season is None:
            continue
        name, period, seasons = season
        out[name] = models.seasonal(
            prep.raw, prep.filled, origins, period=period, seasons=seasons, h=h,
            level_window=windows.level, radius=windows.radius, floor=floor,
        )  # fmt: skip
    for name in [k for k in out if k.startswith("seasonal")]:
        # seasonal and recent level disagree most in bursts; their mean hedges between them
        out[f"{name}+level"] = 0.5 * (out[name] + out["recent-median"])
    return out


def _season_name(period_s: float) -> str:
    named = {86400.0: "seasonal-daily", 604800.0: "seasonal-weekly"}
    return named.get(float(period_s), f"seasonal-{period_s:g}s")


def _quantile(ordered: FloatArray, q: float) -> float:
    """The conformal quantile of sorted values: the ceil((n + 1) q)-th smallest (the largest if > n)."""
    n = ordered.size
    k = min(n, max(1, math.ceil((n + 1) * q)))
    return float(ordered[k - 1])


def _pinball(actual: FloatArray, forecast: FloatArray, q: float) -> float:
    diff = actual - forecast
    return float(np.mean(np.maximum(q * diff, (q - 1.0) * diff)))


def _samples(hist: DemandHistory) -> int:
    """Usable samples (finite, >= 0) behind the history, the coarse tier's counted once each."""
    fine = hist.values
    count = int(np.count_nonzero(np.isfinite(fine) & (fine >= 0)))
    coarse = hist.coarse
    if coarse is not None:
        count += int(np.sum(coarse.counts[np.isfinite(coarse.means) & (coarse.means >= 0)], dtype=np.int64))
    return count


def _short_history(usable: FloatArray, step_s: float, quantile: float, horizon_s: float) -> Forecast:
    """Too little history to backtest: the median and the ``quantile`` of the last hour's samples."""
    recent = np.sort(np.minimum(usable[-max(1, round(3600.0 / step_s)) :], VALUE_CAP))
    point = float(np.median(recent))
    upper = max(point, _quantile(recent, quantile))
    return Forecast(point, upper, quantile, horizon_s, "short-history", MappingProxyType({}), 0)


@dataclass(frozen=True, slots=True)
class Choice:
    """What a backtest-based forecast was made of: enough to apply the same model at a later origin
    (``fit.py``). Only the fitted forecast reads it."""

    prep: Prepared
    model: str
    lo: float  # the chosen model's median relative error (the point's offset)
    hi: float  # its ``quantile`` relative error (the upper's offset)
    floor: float  # errors are relative to (forecast + floor)
    windows: Windows


@dataclass(frozen=True, slots=True)
class Selection:
    """The forecast, and the choice behind it (None for ``short-history`` or no forecast)."""

    forecast: Forecast | None
    choice: Choice | None = None


def forecast_demand(
    history: DemandHistory,
    *,
    now_s: float,
    horizon_s: float,
    quantile: float = 0.95,
    seasonality_s: tuple[float, ...] = (86400.0, 604800.0),
    min_points: int = 8,
) -> Forecast | None:
    """Forecast demand at ``now_s + horizon_s`` from ``history`` (only slots at or before ``now_s``).

    Returns ``None`` when the history has fewer than ``min_points`` usable samples. ``quantile`` must be
    in [0.5, 1). Pure: no IO, no clock, no randomness; the history is not modified. The whole history
    is cleaned and backtested on every call (a few ms at 8 days of 15 s); a controller that forecasts
    every tick keeps a :class:`~autoscaler.forecast.fit.ForecastFit` instead (``fit.py``).
    """
    return select_model(
        history, now_s=now_s, horizon_s=horizon_s, quantile=quantile, seasonality_s=seasonality_s,
        min_points=min_points,
    ).forecast  # fmt: skip


def check_arguments(*, now_s: float, horizon_s: float, quantile: float) -> None:
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"quantile = {quantile}, must be in [0.5, 1)")
    if not (math.isfinite(horizon_s) and horizon_s >= 0):
        raise ValueError(f"horizon_s = {horizon_s}, must be a finite number >= 0")
    if not math.isfinite(now_s):
        raise ValueError(f"now_s = {now_s}, must be finite")


def select_model(
    history: DemandHistory,
    *,
    now_s: float,
    horizon_s: float,
    quantile: float,
    seasonality_s: tuple[float, ...],
    min_points: int,
) -> Selection:
    """:func:`forecast_demand`, keeping the choice behind the forecast."""
    check_arguments(now_s=now_s, horizon_s=horizon_s, quantile=quantile)
    hist = history.until(now_s)
    if _samples(hist) < max(1, min_points):
        return Selection(None)
    # the whole history on its grid (older parts as the coarse tier's means, repeated): a fresh array
    _, values = hist.dense()
    prep = _prepare(values, hist.step_s, hist.end_s, now_s, horizon_s)
    if prep is None:
        return Selection(None)

    def short() -> Selection:
        usable = values[np.isfinite(values) & (values >= 0)]
        return Selection(_short_history(usable, hist.step_s, quantile, horizon_s))

    n, h = prep.raw.size, prep.h
    step = prep.step_s
    eval_n = _steps(EVAL_SPAN_S, step)
    warm = min(n - 1, max(_steps(900.0, step), _steps(MEDIAN_WINDOW_S, step), 3))
    first = max(warm, n - 1 - h - eval_n + 1)
    last = n - 1 - h
    if last - first + 1 < MIN_ERRORS:
        return short()
    stride = max(1, math.ceil((last - first + 1) / MAX_EVAL_ORIGINS))  # bounds the cost at fine steps
    origins = np.arange(last, first - 1, -stride, dtype=np.int64)[::-1]
    # errors are scored on the history's own resolution, so the band covers what will be observed
    targets = prep.native[origins + h]
    recent = prep.filled[max(0, n - eval_n) :]
    floor = FLOOR_FRACTION * float(np.mean(recent)) + 1e-9
    all_origins = np.append(origins, n - 1)
    windows = Windows.of(prep, int(origins[0]))
    forecasts = _candidates(prep, all_origins, seasonality_s, floor, windows)

    scored = np.isfinite(targets)
    eligible: dict[str, FloatArray] = {}
    for name, f in forecasts.items():
        past, now_f = f[:-1], f[-1]
        if not math.isfinite(now_f) or np.count_nonzero(np.isfinite(past) & scored) < 0.8 * np.count_nonzero(scored):
            continue
        eligible[name] = f
    if not eligible:
        return short()
    common = scored.copy()
    for f in eligible.values():
        common &= np.isfinite(f[:-1])
    if np.count_nonzero(common) < MIN_ERRORS:
        return short()

    actual = targets[common]
    losses: dict[str, float] = {}
    offsets: dict[str, tuple[float, float]] = {}
    for name, f in eligible.items():
        past = np.maximum(f[:-1][common], 0.0)
        scale = past + floor
        rel = np.sort((actual - past) / scale)
        lo, hi = _quantile(rel, 0.5), _quantile(rel, quantile)
        offsets[name] = (lo, hi)
        losses[name] = _pinball(actual, past + hi * scale, quantile)
    best = min(losses, key=lambda name: (losses[name], name))
    lo, hi = offsets[best]
    point, upper = calibrated(float(eligible[best][-1]), lo, hi, floor)
    if not (math.isfinite(point) and math.isfinite(upper)):  # pragma: no cover - guarded above
        return short()
    errors = MappingProxyType(dict(sorted(losses.items())))
    forecast = Forecast(point, upper, quantile, horizon_s, best, errors, int(actual.size))
    return Selection(forecast, Choice(prep, best, lo, hi, floor, windows))


def calibrated(forecast: float, lo: float, hi: float, floor: float) -> tuple[float, float]:
    """(point, upper): the model's forecast shifted by its relative error quantiles, never negative."""
    now_f = max(forecast, 0.0)
    scale_now = now_f + floor
    point = max(0.0, now_f + lo * scale_now)
    upper = max(point, now_f + hi * scale_now)
    return point, upper
