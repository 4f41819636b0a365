"""Candidate point forecasters, vectorised over forecast origins.

Every function here takes a cleaned series on the working grid and an array of *origins* (indices
``t``) and returns, for each origin, the forecast of ``y[t + h]`` made with data up to ``t`` only. The
selector (``select.py``) calls them once per :func:`forecast_demand` call on the last day's origins
(to measure each model's recent out-of-sample error at the real horizon) plus the current origin, so
their cost is a handful of numpy passes over the series, never a Python loop per point.

Inputs: ``filled`` has no NaN (gaps forward-filled, see ``select._prepare``); ``raw`` keeps NaN gaps
and is what the seasonal profile averages, so a gap a day ago does not masquerade as a flat day.
A forecast is NaN where the model has no answer (a seasonal lag before the history starts).

Models:

* ``recent-median`` - median of the last few minutes. The robust fallback: a spike or a single bad
  sample moves it little, and it never extrapolates.
* ``trend`` - least-squares line through the last ``window`` points, extrapolated ``h`` steps. The
  short-horizon model for ramps (a rollout, a flash crowd building up).
* ``seasonal-daily`` / ``seasonal-weekly`` - seasonal naive blended with the recent level: the
  smoothed value one (or more) periods before the target, scaled by how today's last hour compares
  with the same hour in those periods. Daily averages up to seven past days; weekly uses the same
  time last week. The ratio is clipped so that one odd hour cannot multiply the profile wildly.
  The selector also offers each seasonal forecast averaged with the recent median (``+level``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["profile_lead", "recent_median", "rescale", "seasonal", "seasonal_profile", "trend"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

RATIO_BOUNDS = (0.25, 4.0)  # how far the recent level may rescale the seasonal profile


def _windows(filled: FloatArray, origins: IntArray, width: int) -> FloatArray:
    """Rows ``filled[t - width + 1 : t + 1]`` for each origin (origins must be >= width - 1)."""
    return sliding_window_view(filled, width)[origins - (width - 1)]


def recent_median(filled: FloatArray, origins: IntArray, *, window: int) -> FloatArray:
    """Median of the last ``window`` points at each origin (the same value for every horizon)."""
    return np.asarray(np.median(_windows(filled, origins, window), axis=1), dtype=np.float64)


def trend(filled: FloatArray, origins: IntArray, *, window: int, h: int) -> FloatArray:
    """Least-squares line through the last ``window`` points, evaluated ``h`` steps after the origin."""
    rows = _windows(filled, origins, window)
    mean = rows.mean(axis=1)
    if window < 2:
        return np.asarray(mean, dtype=np.float64)
    x = np.arange(window, dtype=np.float64) - (window - 1) / 2.0
    slope = (rows @ x) / float(x @ x)
    return np.asarray(mean + slope * ((window - 1) / 2.0 + h), dtype=np.float64)


def _cumsum0(values: FloatArray) -> FloatArray:
    """Cumulative sum with a leading zero: ``c[j] - c[i]`` is the sum of ``values[i:j]``."""
    out = np.empty(values.size + 1)
    out[0] = 0.0
    np.cumsum(values, out=out[1:])
    return out


def _trailing_sum(cum: FloatArray, at: IntArray, width: int) -> FloatArray:
    """Sum of the ``width`` values ending at each index of ``at`` (fewer near the start)."""
    return np.asarray(cum[at + 1] - cum[np.maximum(at + 1 - width, 0)], dtype=np.float64)


def _smoothed(raw: FloatArray, radius: int) -> FloatArray:
    """Centred moving average over ``2 * radius + 1`` points ignoring NaN; NaN where nothing is seen."""
    if radius == 0:
        return raw
    ok = np.isfinite(raw)
    pad = np.zeros(radius)
    sums = _cumsum0(np.concatenate((pad, np.where(ok, raw, 0.0), pad)))
    counts = _cumsum0(np.concatenate((pad, ok.astype(np.float64), pad)))
    n, width = raw.size, 2 * radius + 1
    cnt = counts[width:] - counts[: n + 1][:n]
    out = np.full(n, np.nan)
    np.divide(sums[width:] - sums[:n], cnt, out=out, where=cnt > 0)
    return out


def seasonal_profile(
    raw: FloatArray, lo: int, hi: int, *, period: int, seasons: int, h: int, radius: int
) -> FloatArray:
    """The seasonal profile at indices ``lo .. hi - 1`` (``hi`` may lie beyond the series).

    ``profile[i]`` averages the smoothed series at ``i - k * period`` for the ``seasons`` smallest ``k``
    whose smoothing window ends at or before the origin (``k * period >= h + radius``), so no value
    after the origin is used. It depends on ``i`` and ``h`` only, not on the origin: the fitted forecast
    (``fit.py``) keeps a slice of it around the current origin and reads it for a few minutes.
    """
    k0 = max(1, math.ceil((h + radius) / period))
    need_from = max(0, lo - (k0 + seasons - 1) * period - radius)
    smooth = _smoothed(raw[need_from:], radius)
    idx = np.arange(lo, hi)
    sums = np.zeros(idx.size)
    counts = np.zeros(idx.size)
    for k in range(k0, k0 + seasons):
        src = idx - k * period - need_from
        valid = (src >= 0) & (src < smooth.size)
        if not valid.any():
            break
        vals = np.where(valid, smooth[np.clip(src, 0, smooth.size - 1)], np.nan)
        ok = np.isfinite(vals)
        sums += np.where(ok, vals, 0.0)
        counts += ok
    profile = np.full(idx.size, np.nan)
    np.divide(sums, counts, out=profile, where=counts > 0)
    return profile


def profile_lead(period: int, h: int, radius: int) -> int:
    """How many steps past the origin a profile computed at it stays the same as one computed later:
    the newest smoothed value it reads ends ``k0 * period - h - radius`` steps before the target."""
    k0 = max(1, math.ceil((h + radius) / period))
    return k0 * period - h - radius


def rescale(profile_at_target: float, profile_window: FloatArray, level: float, *, floor: float) -> float:
    """One origin of :func:`seasonal`: the profile at the target times the clipped ratio of the recent
    level (the mean of the last ``level_window`` points) to the profile over the same points."""
    ok = np.isfinite(profile_window)
    count = int(np.count_nonzero(ok))
    if count < max(1.0, 0.5 * profile_window.size):
        return math.nan
    base = float(np.sum(profile_window[ok])) / count
    ratio = min(max((level + floor) / (base + floor), RATIO_BOUNDS[0]), RATIO_BOUNDS[1])
    return profile_at_target * ratio


def seasonal(
    raw: FloatArray,
    filled: FloatArray,
    origins: IntArray,
    *,
    period: int,
    seasons: int,
    h: int,
    level_window: int,
    radius: int,
    floor: float,
) -> FloatArray:
    """Seasonal naive over up to ``seasons`` past periods, rescaled by the recent level.

    The profile is :func:`seasonal_profile`. The forecast is ``profile[t + h] * ratio`` with ``ratio`` =
    (mean of the last ``level_window`` points + floor) / (mean of the profile over the same points + floor).
    """
    n = raw.size
    # the profile is needed at the targets (origins + h) and over each origin's level window only
    lo = max(0, int(origins.min()) - level_window + 1)
    profile = seasonal_profile(raw, lo, n + h, period=period, seasons=seasons, h=h, radius=radius)

    at = origins - lo  # positions in ``profile``
    ok = np.isfinite(profile)
    p_sum = _trailing_sum(_cumsum0(np.where(ok, profile, 0.0)), at, level_window)
    p_cnt = _trailing_sum(_cumsum0(ok.astype(np.float64)), at, level_window)
    y_sum = _trailing_sum(_cumsum0(filled[lo:]), at, level_window)
    level = y_sum / np.minimum(at + 1, level_window)
    base = np.full(at.size, np.nan)
    # the profile must cover most of the level window for the comparison to mean anything
    enough = p_cnt >= max(1.0, 0.5 * level_window)
    np.divide(p_sum, p_cnt, out=base, where=enough)
    ratio = np.clip((level + floor) / (base + floor), *RATIO_BOUNDS)
    return np.asarray(profile[at + h] * ratio, dtype=np.float64)
