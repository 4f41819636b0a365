"""Forecast accuracy at the real horizon, and the cost of one ``forecast_demand`` call.

Accuracy: a rolling-origin backtest on the full public traces, read from ``../shared/traces`` beside the
checkout (the files, their sources and licences: ``simulations/traces/README.md``; the repository bundles
only slices). A trace that is not there is skipped with a message saying where to put it:

* ``servegen``  the 14-day ServeGen language/m-large set; the per-client ``rate`` of each 600 s window
  summed into one fleet demand series (req/s); horizons of one and three windows (600 s, 1800 s).
* ``azure-code`` and ``mooncake`` (one hour each): arrivals binned into 15 s request rates (req/s);
  horizons of 180 s and 600 s, i.e. typical model-load times.

At each origin every forecaster sees only the series up to that origin and forecasts the value ``h``
later. Scored origins start after two days (ServeGen) or 15 minutes (hourly traces); every method is
scored on the same origins. Columns:

* ``pinball``  mean pinball loss at q = 0.95 of the method's upper forecast, as % of the mean demand
  over the scored targets (lower is better). Baselines give a point forecast only, and that point is
  what a user of them scales on, so it is scored as their q-forecast ("as used").
* ``+conf``    the same baseline wrapped in *our* conformal band (its own recent relative errors, the
  same calibration ``forecast_demand`` uses): isolates what the point model contributes.
* ``cover``    share of targets at or below the upper forecast (goal: about q).
* ``MAPE``     of the median / point forecast (targets > 0).

Memory (issue #17): bytes per target of 8 days at 15 s, measured with tracemalloc (arrays and object
overhead), for the single float64 array the history used to be and for the two-tier history (the last
27 h at 15 s, 5-minute means before), built at once (a warm start) and after 9 days of ticks.

Downsampling accuracy: ``servegen at 15 s`` spreads the 14-day ServeGen fleet rate over 15 s bins
(Poisson arrivals at the 600 s window's rate, seeded), the only long series at a step fine enough to
fold. Two histories are fed tick by tick, the two-tier one and one kept at full resolution
(``full_span_s=math.inf``), and both forecast from the same origins of days 9-14 (every 15 minutes).

Fitted forecast (issue #17): the controller refits every 5 minutes (staggered per target) and applies
the fit to the newest points in between (``autoscaler/forecast/fit.py``). ``ours: fitted, per tick``
rows feed the history tick by tick and keep the fit as the controller does; ``fitted vs full`` runs
both on the 15 s ServeGen series from origins 15 min + 1 tick apart (so the fit's age at the origin
cycles through the whole window). The cost section prints the per-tick cost of both paths at 8 days
of 15 s history and their ratio.

Baselines, implemented from their published descriptions (no statsmodels/pmdarima here):

* ``last value`` - what a reactive scaler uses; identical to Dynamo's ``constant`` predictor.
* ``dynamo arima`` - Dynamo fits ``pmdarima.auto_arima`` once and then ``update``s it with new points,
  falling back to log1p space when the order collapses to (0, d, 0). Here: ARIMA(p, d, 0) with p <= 5 and
  d in {0, 1} chosen by AIC on the warm-up data (OLS fit), coefficients re-estimated as points arrive,
  h-step forecast by iterating the recursion; log1p when p = 0 (MA terms are not searched).
* ``dynamo kalman`` - Dynamo's local-linear-trend Kalman filter with its defaults (q_level 1.0,
  q_trend 0.1, r 10.0, P0 = 1000 I) on the raw series; forecast level + h * trend (Dynamo itself only
  predicts one adjustment interval ahead).
* ``phpa holt-winters`` - additive Holt-Winters as PHPA runs it (statsmodels ExponentialSmoothing with
  fixed smoothing parameters; season = 1 day here), with PHPA's documented example parameters
  alpha = beta = gamma = 0.9, and ``hw tuned``: the same with (alpha, beta, gamma) grid-searched on the
  warm-up days (what PHPA's docs ask users to do). Needs two seasons, so n/a on the hourly traces.
"""

from __future__ import annotations

import glob
import json
import math
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from autoscaler.forecast import (
    REFIT_EVERY_S,
    DemandHistory,
    Forecast,
    ForecastFit,
    forecast_demand,
    forecast_from_fit,
    refit_phase_s,
    refresh_fit,
)
from autoscaler.forecast.select import FLOOR_FRACTION

FloatArray = npt.NDArray[np.float64]
TRACES = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"
Q = 0.95
REFIT_S = REFIT_EVERY_S
DAY_S = 86400.0


# -- traces -----------------------------------------------------------------------------------------


def servegen_fleet() -> tuple[float, FloatArray]:
    files = sorted(glob.glob(str(TRACES / "servegen" / "language-m-large" / "chunk-*-trace.csv")))
    total = np.zeros(0)
    for path in files:
        rate = np.loadtxt(path, delimiter=",", usecols=(1,), dtype=np.float64)
        total = rate if total.size == 0 else total + rate
    return 600.0, total


def _binned(arrival_s: FloatArray, step_s: float) -> FloatArray:
    arrival_s = np.sort(arrival_s - arrival_s.min())
    n = int(arrival_s[-1] // step_s)  # drop the last partial bin
    counts = np.bincount((arrival_s // step_s).astype(np.int64), minlength=n + 1)[:n]
    return np.asarray(counts / step_s, dtype=np.float64)


def azure_code(step_s: float = 15.0) -> tuple[float, FloatArray]:
    stamps = []
    with open(TRACES / "azure2023_AzureLLMInferenceTrace_code.csv") as fh:
        next(fh)
        for line in fh:
            text = line.split(",", 1)[0]
            head, _, frac = text.partition(".")
            t = datetime.strptime(head, "%Y-%m-%d %H:%M:%S").timestamp()
            stamps.append(t + float("0." + frac) if frac else t)
    return step_s, _binned(np.asarray(stamps), step_s)


def mooncake(step_s: float = 15.0) -> tuple[float, FloatArray]:
    with open(TRACES / "mooncake_fast25_conversation_trace.jsonl") as fh:
        stamps = [json.loads(line)["timestamp"] / 1000.0 for line in fh if line.strip()]
    return step_s, _binned(np.asarray(stamps), step_s)


# -- baselines (point forecasts; out[i] forecasts y[i + h] from y[: i + 1]) -------------------------------


def last_value(y: FloatArray, h: int) -> FloatArray:
    return y.copy()


def kalman_dynamo(y: FloatArray, h: int, q_level: float = 1.0, q_trend: float = 0.1, r: float = 10.0) -> FloatArray:
    out = np.empty(y.size)
    lvl, tr = float(y[0]), 0.0
    p00, p01, p11 = 1000.0, 0.0, 1000.0
    out[0] = lvl
    for i in range(1, y.size):
        # predict: F = [[1, 1], [0, 1]], Q = diag(q_level, q_trend)
        lvl, tr = lvl + tr, tr
        p00, p01, p11 = p00 + 2 * p01 + p11 + q_level, p01 + p11, p11 + q_trend
        # update with z = y[i], H = [1, 0]
        s = p00 + r
        k0, k1 = p00 / s, p01 / s
        innov = float(y[i]) - lvl
        lvl, tr = lvl + k0 * innov, tr + k1 * innov
        p00, p01, p11 = (1 - k0) * p00, (1 - k0) * p01, p11 - k1 * p01
        out[i] = max(0.0, lvl + h * tr)
    return out


def _ar_design(z: FloatArray, p: int) -> tuple[FloatArray, FloatArray]:
    rows = z.size - p
    x = np.ones((rows, p + 1))
    for j in range(p):
        x[:, j + 1] = z[p - 1 - j : z.size - 1 - j]
    return x, z[p:]


def _ar_fit(z: FloatArray, p: int) -> tuple[FloatArray, float]:
    x, target = _ar_design(z, p)
    coef, *_ = np.linalg.lstsq(x, target, rcond=None)
    resid = target - x @ coef
    sigma2 = max(float(np.mean(resid**2)), 1e-12)
    return coef, sigma2


def arima_dynamo(y: FloatArray, h: int, warmup: int, refit_every: int = 1) -> FloatArray:
    """ARIMA(p, d, 0) chosen by AIC on y[:warmup], re-estimated every ``refit_every`` points."""
    best: tuple[float, int, int] = (math.inf, 0, 0)
    for d in (0, 1):
        z = np.diff(y[:warmup], n=d)
        for p in range(0, 6):
            if z.size - p < 10:
                continue
            _, s2 = _ar_fit(z, p)
            aic = (z.size - p) * math.log(s2) + 2 * (p + 1)
            best = min(best, (aic, p, d))
    _, p, d = best
    log_space = p == 0  # Dynamo's fallback when the order collapses to (0, d, 0)
    if log_space:
        p = max(p, 1)
    series = np.log1p(np.maximum(y, 0.0)) if log_space else y
    out = np.empty(y.size)
    coef = np.zeros(p + 1)
    for i in range(y.size):
        hist = series[: i + 1]
        z = np.diff(hist, n=d)
        if z.size >= p + 10 and (i % refit_every == 0 or not coef.any()):
            coef, _ = _ar_fit(z, p)
        if z.size < p + 1 or not coef.any():
            out[i] = hist[-1]
            continue
        lags = list(z[-p:][::-1]) if p else []
        level = float(hist[-1])
        for _ in range(h):
            nxt = coef[0] + sum(c * v for c, v in zip(coef[1:], lags, strict=False))
            lags = [nxt, *lags[:-1]] if p else []
            level = level + nxt if d == 1 else nxt
        out[i] = level
    if log_space:
        out = np.expm1(out)
    return np.asarray(np.maximum(out, 0.0), dtype=np.float64)


def holt_winters(y: FloatArray, h: int, season: int, alpha: float, beta: float, gamma: float) -> FloatArray:
    """Additive Holt-Winters, heuristic initialisation from the first two seasons; NaN before them."""
    out = np.full(y.size, np.nan)
    if y.size < 2 * season:
        return out
    first, second = y[:season], y[season : 2 * season]
    lvl = float(first.mean())
    tr = float(second.mean() - first.mean()) / season
    seas = list(first - lvl)
    for i in range(season, y.size):
        s_i = seas[i - season]
        prev_l = lvl
        lvl = alpha * (y[i] - s_i) + (1 - alpha) * (lvl + tr)
        tr = beta * (lvl - prev_l) + (1 - beta) * tr
        seas.append(gamma * (y[i] - lvl) + (1 - gamma) * s_i)
        # forecast y[i + h]: its seasonal index is i + h - season * k for the smallest k making it <= i
        k = (h - 1) // season + 1
        out[i] = max(0.0, lvl + h * tr + seas[i + h - season * k])
    return out


def hw_tuned(y: FloatArray, h: int, season: int, warmup: int) -> FloatArray:
    grid = (0.05, 0.2, 0.5, 0.9)
    best = (math.inf, (0.5, 0.1, 0.5))
    for a in grid:
        for b in (0.0, 0.01, 0.1, 0.5):
            for g in grid:
                f = holt_winters(y[:warmup], h, season, a, b, g)
                ok = np.isfinite(f[: warmup - h])
                if not ok.any():
                    continue
                err = float(np.mean(np.abs(y[h:warmup][ok] - f[: warmup - h][ok])))
                best = min(best, (err, (a, b, g)))
    return holt_winters(y, h, season, *best[1])


# -- scoring -------------------------------------------------------------------------------------------


def pinball(actual: FloatArray, upper: FloatArray, q: float) -> float:
    d = actual - upper
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def conformal_upper(f: FloatArray, y: FloatArray, h: int, span: int, q: float) -> FloatArray:
    """Upper at origin i: f[i] + the conformal q-quantile of relative errors of origins j <= i - h."""
    out = np.full(f.size, np.nan)
    errs: FloatArray = np.full(f.size, np.nan)
    valid = np.isfinite(f[: f.size - h])
    # the floor of forecast_demand: a share of the mean level over the span before each origin
    cum = np.concatenate(([0.0], np.cumsum(y)))
    idx = np.arange(f.size)
    level = (cum[idx + 1] - cum[np.maximum(idx + 1 - span, 0)]) / np.minimum(idx + 1, span)
    floors = FLOOR_FRACTION * level + 1e-9
    head = f[: f.size - h]
    errs[: f.size - h][valid] = (y[h:][valid] - head[valid]) / (
        np.maximum(head[valid], 0) + floors[: f.size - h][valid]
    )
    for i in range(f.size):
        lo = max(0, i - h - span + 1)
        window = errs[lo : max(0, i - h + 1)]
        window = np.sort(window[np.isfinite(window)])
        if window.size < 12 or not math.isfinite(f[i]):
            continue
        k = min(window.size, math.ceil((window.size + 1) * q))
        out[i] = f[i] + window[k - 1] * (max(f[i], 0) + floors[i])
    return out


def ours(y: FloatArray, step_s: float, h: int) -> tuple[FloatArray, FloatArray, list[str]]:
    point = np.full(y.size, np.nan)
    upper = np.full(y.size, np.nan)
    chosen: list[str] = []
    for i in range(y.size - h):
        hist = DemandHistory(0.0, step_s, y[: i + 1])
        f = forecast_demand(hist, now_s=i * step_s, horizon_s=h * step_s, quantile=Q)
        if f is not None:
            point[i], upper[i] = f.point, f.upper
            chosen.append(f.model)
    return point, upper, chosen


def ours_fitted(y: FloatArray, step_s: float, h: int) -> tuple[FloatArray, FloatArray, list[str]]:
    """The controller's path: the history fed tick by tick, the fit refreshed every tick (it refits
    only when due), the forecast from the fit."""
    point = np.full(y.size, np.nan)
    upper = np.full(y.size, np.nan)
    chosen: list[str] = []
    hist = DemandHistory.empty(start_s=0.0, step_s=step_s)
    fit: ForecastFit | None = None
    phase = refit_phase_s("bench/forecast")
    for i in range(y.size - h):
        now = i * step_s
        hist = hist.append(now, float(y[i]))
        fit = refresh_fit(fit, hist, now_s=now, horizon_s=h * step_s, quantile=Q, phase_s=phase)
        f = forecast_from_fit(fit, hist, now_s=now, horizon_s=h * step_s, quantile=Q)
        if f is not None:
            point[i], upper[i] = f.point, f.upper
            chosen.append(f.model)
    return point, upper, chosen


def evaluate(name: str, step_s: float, y: FloatArray, h: int, start: int, *, seasonal: bool) -> None:
    n = y.size
    origins = np.arange(start, n - h)
    actual = y[origins + h]
    mean = float(actual.mean())
    span = max(12, round(DAY_S / step_s))
    rows: list[tuple[str, float, float, float, float, float]] = []

    def score(label: str, point: FloatArray, upper: FloatArray | None) -> None:
        p = point[origins]
        pos = actual > 0
        mape = float(np.mean(np.abs(actual[pos] - p[pos]) / actual[pos])) * 100
        raw = pinball(actual, p, Q) / mean * 100
        if upper is None:
            up = conformal_upper(point, y, h, span, Q)[origins]
            up = np.where(np.isfinite(up), up, p)
            conf = pinball(actual, up, Q) / mean * 100
            cover = float(np.mean(actual <= up)) * 100
            rows.append((label, raw, conf, cover, mape, float(np.mean(actual <= p)) * 100))
        else:
            u = upper[origins]
            sc = pinball(actual, u, Q) / mean * 100
            rows.append((label, sc, sc, float(np.mean(actual <= u)) * 100, mape, math.nan))

    warm = start
    score("last value (= dynamo constant)", last_value(y, h), None)
    score("dynamo arima (numpy)", arima_dynamo(y, h, warm, refit_every=max(1, n // 400)), None)
    score("dynamo kalman (defaults)", kalman_dynamo(y, h), None)
    if seasonal:
        season = round(DAY_S / step_s)
        score("phpa holt-winters (0.9/0.9/0.9)", np.nan_to_num(holt_winters(y, h, season, 0.9, 0.9, 0.9)), None)
        score("holt-winters tuned", np.nan_to_num(hw_tuned(y, h, season, warm)), None)
    started = time.perf_counter()
    point, upper, chosen = ours(y, step_s, h)
    per_call_ms = (time.perf_counter() - started) / max(1, n - h) * 1000
    score("ours: forecast_demand", point, upper)
    fitted_point, fitted_upper, _ = ours_fitted(y, step_s, h)
    score("ours: fitted, per tick", fitted_point, fitted_upper)

    best_base = min(r[1] for r in rows[:-2])
    best_conf = min(r[2] for r in rows[:-2])
    mine = rows[-2][1]
    picked = {m: chosen[start:].count(m) for m in sorted(set(chosen[start:]))}
    print(
        f"\n{name}: {n} points at {step_s:g} s, horizon {h * step_s:g} s, "
        f"{origins.size} scored origins, mean {mean:.3g}"
    )
    print(f"  {'method':34s} {'pinball%':>9s} {'+conf%':>8s} {'cover%':>7s} {'MAPE%':>7s}")
    for label, raw, conf, cover, mape, _ in rows:
        conf_s = "-" if label.startswith("ours") else f"{conf:8.2f}"
        print(f"  {label:34s} {raw:9.2f} {conf_s:>8s} {cover:7.1f} {mape:7.1f}")
    print(
        f"  ours vs best baseline as used: {100 * (1 - mine / best_base):+.1f}% lower pinball; "
        f"vs best conformal-wrapped baseline: {100 * (1 - mine / best_conf):+.1f}%"
    )
    print(f"  models chosen: {picked}; {per_call_ms:.2f} ms per call (incl. history copy)")


def cost() -> None:
    rng = np.random.default_rng(7)
    step = 15.0
    n = int(8 * DAY_S / step)
    t = np.arange(n) * step
    y = rng.poisson((100 + 60 * np.sin(2 * np.pi * t / DAY_S)) * step) / step
    y[rng.random(n) < 0.01] = np.nan
    hist = DemandHistory(0.0, step, y)
    now = hist.end_s

    def timed(fn: Callable[[], object], k: int) -> list[float]:
        out = []
        for _ in range(k):
            s = time.perf_counter_ns()
            fn()
            out.append((time.perf_counter_ns() - s) / 1e6)
        return out

    base = timed(lambda: np.sort(hist.dense()[1]), 50)
    print(
        f"per call, 8 days of 15 s history ({n} points, 1% gaps); "
        f"baseline np.sort of it: {statistics.median(base):.2f} ms"
    )
    for horizon in (60.0, 180.0, 600.0):
        ts = timed(lambda horizon=horizon: forecast_demand(hist, now_s=now, horizon_s=horizon), 60)
        ts.sort()
        med = statistics.median(ts)
        print(
            f"  horizon {horizon:4.0f} s: median {med:.2f} ms, p90 {ts[int(0.9 * len(ts))]:.2f} ms, min {ts[0]:.2f} ms "
            f"({med / statistics.median(base):.1f}x the sort)"
        )
    per_tick(y, step)
    retry = timed(lambda: hist.append(now + 15.0, 100.0), 50)
    print(
        f"  DemandHistory.append to a value already appended to (a retry: copies): "
        f"median {statistics.median(retry) * 1000:.0f} us"
    )
    ticks = DemandHistory.empty(start_s=0.0, step_s=step)
    started = time.perf_counter()
    for i in range(n):
        ticks = ticks.append(i * step, float(y[i]))
    mean_us = (time.perf_counter() - started) / n * 1e6
    print(f"  DemandHistory.append tick by tick over 8 days (the controller's path): {mean_us:.1f} us mean")


def per_tick(y: FloatArray, step: float, ticks: int = 480, horizon_s: float = 195.0) -> None:
    """The controller's per-tick forecast cost at 8 days of history: every tick appends the new value,
    then either the full forecast or the fitted path (refresh the fit, evaluate it). ``ticks`` spans
    whole refit windows, so the refits' cost is amortised as in the controller."""
    n = int(8 * DAY_S / step)
    extra = np.resize(y, n + ticks)  # the same series continued
    base = DemandHistory.empty(start_s=0.0, step_s=step)
    for i in range(n):
        base = base.append(i * step, float(extra[i]))

    def run(fitted: bool) -> tuple[float, int, float]:
        hist, fit, refits, worst = base, None, 0, 0.0
        phase = refit_phase_s("bench/cost")
        started = time.perf_counter()
        for i in range(n, n + ticks):
            tick = time.perf_counter()
            hist = hist.append(i * step, float(extra[i]))
            if fitted:
                new = refresh_fit(fit, hist, now_s=i * step, horizon_s=horizon_s, phase_s=phase)
                refits += new is not fit
                fit = new
                forecast_from_fit(fit, hist, now_s=i * step, horizon_s=horizon_s)
            else:
                forecast_demand(hist, now_s=i * step, horizon_s=horizon_s)
            worst = max(worst, time.perf_counter() - tick)
        return (time.perf_counter() - started) / ticks * 1000, refits, worst * 1000

    full_ms, _, full_worst = run(False)
    fit_ms, refits, fit_worst = run(True)
    print(
        f"  per tick and target, {ticks} ticks at 8 days of history, horizon {horizon_s:g} s (append + forecast):\n"
        f"    full forecast every tick:        {full_ms:.3f} ms mean, worst tick {full_worst:.2f} ms\n"
        f"    fitted (refit every {REFIT_S:g} s): {fit_ms:.3f} ms mean, worst tick {fit_worst:.2f} ms "
        f"({refits} refits); cost ratio full/fitted {full_ms / fit_ms:.1f}x"
    )


def fitted_vs_full(y: FloatArray, step_s: float) -> None:
    """The fitted path against the full forecast from the same origins, the history fed tick by tick."""
    per_day = round(DAY_S / step_s)
    horizons = (180.0, 600.0, 1800.0)
    stride = round(900 / step_s) + 1  # not a multiple of the refit window: the fit's age varies
    origins = np.arange(9 * per_day, y.size - round(max(horizons) / step_s), stride)
    wanted = set(origins.tolist())
    full: dict[float, list[Forecast]] = {hz: [] for hz in horizons}
    fitted: dict[float, list[Forecast]] = {hz: [] for hz in horizons}
    fits: dict[float, ForecastFit | None] = dict.fromkeys(horizons)
    ages: list[float] = []
    hist = DemandHistory.empty(start_s=0.0, step_s=step_s)
    phase = refit_phase_s("bench/fitted")
    start_fitting = origins[0] - round(REFIT_S / step_s)
    for i in range(origins[-1] + 1):
        now = i * step_s
        hist = hist.append(now, float(y[i]))
        if i < start_fitting:
            continue
        for hz in horizons:
            fits[hz] = refresh_fit(fits[hz], hist, now_s=now, horizon_s=hz, quantile=Q, phase_s=phase)
        if i not in wanted:
            continue
        for hz in horizons:
            fit = fits[hz]
            f = forecast_from_fit(fit, hist, now_s=now, horizon_s=hz, quantile=Q)
            g = forecast_demand(hist, now_s=now, horizon_s=hz, quantile=Q)
            assert f is not None and g is not None and fit is not None
            fitted[hz].append(f)
            full[hz].append(g)
            ages.append(now - fit.now_s)
    print(
        f"\nfitted vs full, servegen at 15 s: {origins.size} origins from day 9, every 15 min + 1 tick "
        f"(fit age at the origin {min(ages):.0f}-{max(ages):.0f} s, mean {statistics.mean(ages):.0f} s)"
    )
    print(f"  {'path':26s} {'horizon':>7s} {'pinball%':>9s} {'cover%':>7s} {'MAPE%':>7s} {'upper vs full':>13s}")
    for hz in horizons:
        actual = y[origins + round(hz / step_s)]
        mean = float(actual.mean())
        ref = np.array([f.upper for f in full[hz]])
        for label, got in (("full forecast every tick", full[hz]), ("fitted (level per tick)", fitted[hz])):
            upper = np.array([f.upper for f in got])
            point = np.array([f.point for f in got])
            pos = actual > 0
            mape = float(np.mean(np.abs(actual[pos] - point[pos]) / actual[pos])) * 100
            diff = float(np.mean(np.abs(upper - ref) / np.maximum(ref, 1e-9))) * 100
            print(
                f"  {label:26s} {hz:6.0f}s {pinball(actual, upper, Q) / mean * 100:9.2f} "
                f"{float(np.mean(actual <= upper)) * 100:7.1f} {mape:7.1f} {diff:12.2f}%"
            )


def retained_bytes(build: Callable[[], object]) -> tuple[int, object]:
    """Bytes still allocated after ``build()`` returned (its garbage freed), and what it built."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        value = build()
        return tracemalloc.get_traced_memory()[0] - before, value
    finally:
        tracemalloc.stop()


def memory() -> None:
    step = 15.0
    n = int(8 * DAY_S / step)
    rng = np.random.default_rng(8)
    t = np.arange(n + DAY_S / step) * step
    y = rng.poisson((100 + 60 * np.sin(2 * np.pi * t / DAY_S)) * step) / step
    old, _ = retained_bytes(lambda: np.array(y[:n], dtype=np.float64))  # what the old value held
    at_once, hist = retained_bytes(lambda: DemandHistory(0.0, step, y[:n]))

    def ticked() -> DemandHistory:
        h = DemandHistory.empty(start_s=0.0, step_s=step)
        for i, v in enumerate(y):
            h = h.append(i * step, float(v))
        return h

    after, ticks = retained_bytes(ticked)
    assert isinstance(hist, DemandHistory) and isinstance(ticks, DemandHistory)
    print(f"memory per target, 8 days at 15 s ({n} points), tracemalloc:")
    print(f"  single float64 array (the layout before): {old:8,d} B")
    print(f"  two tiers, built at once (warm start):    {at_once:8,d} B ({old / at_once:.1f}x smaller; {hist!r})")
    print(f"  two tiers, after 9 days of ticks:         {after:8,d} B ({old / after:.1f}x smaller; {ticks!r})")


def servegen_at_15s() -> tuple[float, FloatArray]:
    step, rate = servegen_fleet()
    fine = 15.0
    per = round(step / fine)
    lam = np.repeat(rate, per)  # req/s of the 600 s window, for each 15 s bin in it
    rng = np.random.default_rng(17)
    return fine, np.asarray(rng.poisson(lam * fine) / fine, dtype=np.float64)


def downsampling(y: FloatArray, step_s: float) -> None:
    """Forecast from the same origins with the two-tier history and one kept at full resolution."""
    per_day = round(DAY_S / step_s)
    horizons = (180.0, 600.0, 1800.0)
    origins = np.arange(9 * per_day, y.size - round(max(horizons) / step_s), round(900 / step_s))
    layouts = {"two tiers (27 h at 15 s, then 5 min)": None, "full resolution (float32, no folding)": math.inf}
    results: dict[tuple[str, float], list[Forecast]] = {(name, hz): [] for name in layouts for hz in horizons}
    sizes: dict[str, int] = {}
    seconds: dict[str, float] = dict.fromkeys(layouts, 0.0)
    for name, span in layouts.items():
        hist = DemandHistory.empty(start_s=0.0, step_s=step_s, full_span_s=span)
        wanted = set(origins.tolist())
        for i in range(origins[-1] + 1):
            hist = hist.append(i * step_s, float(y[i]))
            if i not in wanted:
                continue
            for hz in horizons:
                started = time.perf_counter()
                f = forecast_demand(hist, now_s=i * step_s, horizon_s=hz, quantile=Q)
                seconds[name] += time.perf_counter() - started
                assert f is not None
                results[(name, hz)].append(f)
        sizes[name] = hist.nbytes
    print(
        f"\nservegen at 15 s (Poisson arrivals at the 600 s fleet rate): {y.size} points, "
        f"{origins.size} origins from day 9, every 15 min; histories fed tick by tick"
    )
    print(f"  {'history':38s} {'horizon':>7s} {'pinball%':>9s} {'cover%':>7s} {'MAPE%':>7s} {'upper vs full':>13s}")
    for hz in horizons:
        h = round(hz / step_s)
        actual = y[origins + h]
        mean = float(actual.mean())
        full = np.array([f.upper for f in results[("full resolution (float32, no folding)", hz)]])
        for name in layouts:
            upper = np.array([f.upper for f in results[(name, hz)]])
            point = np.array([f.point for f in results[(name, hz)]])
            pos = actual > 0
            mape = float(np.mean(np.abs(actual[pos] - point[pos]) / actual[pos])) * 100
            diff = float(np.mean(np.abs(upper - full) / np.maximum(full, 1e-9))) * 100
            print(
                f"  {name:38s} {hz:6.0f}s {pinball(actual, upper, Q) / mean * 100:9.2f} "
                f"{float(np.mean(actual <= upper)) * 100:7.1f} {mape:7.1f} {diff:12.2f}%"
            )
    calls = origins.size * len(horizons)
    for name in layouts:
        print(f"  {name}: {sizes[name]:,d} B of arrays at the end, {seconds[name] / calls * 1000:.2f} ms per forecast")


def present(label: str, pattern: str) -> bool:
    """Whether a full trace is there; if not, say where to put it (a benchmark skips, it does not fail)."""
    if any(TRACES.glob(pattern)):
        return True
    print(
        f"\n{label}: skipped: no {TRACES / pattern}. Put the public traces in {TRACES} "
        "(beside the checkout; files and sources: simulations/traces/README.md) to run this case."
    )
    return False


def main() -> None:
    cost()
    memory()
    if present("servegen language m-large (14 days)", "servegen/language-m-large/chunk-*-trace.csv"):
        step, y = servegen_fleet()
        evaluate("servegen language m-large (14 days)", step, y, 1, 2 * 144, seasonal=True)
        evaluate("servegen language m-large (14 days)", step, y, 3, 2 * 144, seasonal=True)
        fine_step, fine_y = servegen_at_15s()
        downsampling(fine_y, fine_step)
        fitted_vs_full(fine_y, fine_step)
    hourly = (
        ("azure code (1 h)", "azure2023_AzureLLMInferenceTrace_code.csv", azure_code),
        ("mooncake conversation (1 h)", "mooncake_fast25_conversation_trace.jsonl", mooncake),
    )
    for label, relpath, load in hourly:
        if not present(label, relpath):
            continue
        step, y = load()
        for horizon in (180.0, 600.0):
            evaluate(label, step, y, round(horizon / step), round(900 / step), seasonal=False)


if __name__ == "__main__":
    main()
