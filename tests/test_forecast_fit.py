"""Tests of the fitted forecast (issue #17: a cheap forecast per tick at 10,000 targets).

Case matrix:

* Exact at a refit: ``forecast_from_fit(fit_forecast(h, now), h, now)`` is ``forecast_demand(h, now)``,
  field for field, on 8-day tiered histories built tick by tick, a 2-hour history and a 20-minute one
  (short-history), at horizons of 60, 195 and 600 s.
* Same formulas: the per-tick evaluation of each model kind (recent median, trend, seasonal, seasonal
  + level) at the fit's own origin equals the full forecast's candidate, calibrated (to rounding).
* Between refits, only the level moves: on a diurnal series fed tick by tick the fitted forecast stays
  within 1.5% of the full one; after a step in demand right after a refit, it follows the step before
  the next refit (it is not the stale forecast of the fit).
* Fallbacks give the full forecast exactly: another horizon or quantile, a fit older than its
  lifetime, a gap over the whole recent window.
* Schedule: one refit per 5-minute window, at a point fixed by the key; a new horizon refits at once;
  10,000 keys spread their refits over the window (no 15 s tick takes more than 1.3x its share).
* Purity: refitting twice from the same inputs gives equal fits; a fit survives pickling.
* Core: ``step`` carries the fit in ``TargetState``, a retried step from the same state gives the same
  decision and fit, the decision at a refit tick is the one ``decide`` makes without a fit (the full
  forecast), ``warm_start`` and ``retarget`` drop the fit with the history.
"""

from __future__ import annotations

import math
import pickle
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from policy_builders import metric, policy

from autoscaler.core import MetricReading, decide
from autoscaler.core.policy import ColdStart, Predictive, ScalingPolicy
from autoscaler.core.step import TargetReading, TargetState, observe, retarget, step, warm_start
from autoscaler.forecast import (
    FIT_LIFETIME_S,
    REFIT_EVERY_S,
    DemandHistory,
    Forecast,
    ForecastFit,
    fit_forecast,
    forecast_demand,
    forecast_from_fit,
    models,
    refit_phase_s,
    refresh_fit,
)
from autoscaler.forecast import fit as fit_module
from autoscaler.forecast.select import calibrated, select_model

DAY = 86400.0
STEP = 15.0


def diurnal(n: int, seed: int = 3, gaps: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) * STEP
    y = rng.poisson((100 + 60 * np.sin(2 * np.pi * t / DAY)) * STEP) / STEP
    y[rng.random(n) < gaps] = np.nan
    return np.asarray(y, dtype=np.float64)


def ticked(y: np.ndarray, upto: int) -> DemandHistory:
    hist = DemandHistory.empty(start_s=0.0, step_s=STEP)
    for i in range(upto):
        hist = hist.append(i * STEP, float(y[i]))
    return hist


@pytest.fixture(scope="module")
def week() -> tuple[np.ndarray, DemandHistory]:
    y = diurnal(int(8.1 * DAY / STEP))
    start = int(8 * DAY / STEP)
    return y, ticked(y, start)


# -- exact at a refit -------------------------------------------------------------------------------


@pytest.mark.parametrize("horizon_s", [60.0, 195.0, 600.0])
def test_at_the_fit_tick_the_fitted_forecast_is_the_full_forecast(
    week: tuple[np.ndarray, DemandHistory], horizon_s: float
) -> None:
    y, hist = week
    histories = [hist, DemandHistory(0.0, STEP, y[: 2 * 240]), DemandHistory(0.0, STEP, y[:80])]
    models_seen = set()
    for h in histories:
        now = h.end_s
        fit = fit_forecast(h, now_s=now, horizon_s=horizon_s)
        full = forecast_demand(h, now_s=now, horizon_s=horizon_s)
        got = forecast_from_fit(fit, h, now_s=now, horizon_s=horizon_s)
        assert full is not None and got == full
        assert isinstance(got, Forecast) and got.errors == full.errors and got.samples == full.samples
        models_seen.add(full.model)
    assert "short-history" in models_seen and len(models_seen) >= 2


@pytest.mark.parametrize("kind", ["recent-median", "trend", "seasonal", "seasonal+level"])
def test_each_model_kind_evaluates_like_the_full_candidate(week: tuple[np.ndarray, DemandHistory], kind: str) -> None:
    _, hist = week
    now, horizon_s = hist.end_s, 195.0
    fit = fit_forecast(hist, now_s=now, horizon_s=horizon_s, seasonality_s=(DAY,))
    assert fit.applied is not None and fit.applied.profile is not None  # the diurnal series picks a seasonal model
    choice = select_model(
        hist, now_s=now, horizon_s=horizon_s, quantile=0.95, seasonality_s=(DAY,), min_points=8
    ).choice
    assert choice is not None
    prep, w, n = choice.prep, choice.windows, choice.prep.raw.size
    origin = np.array([n - 1])
    median = models.recent_median(prep.filled, origin, window=w.median)[0]
    seasonal = models.seasonal(
        prep.raw, prep.filled, origin, period=round(DAY / prep.step_s), seasons=7, h=prep.h,
        level_window=w.level, radius=w.radius, floor=choice.floor,
    )[0]  # fmt: skip
    expected_raw = {
        "recent-median": median,
        "trend": models.trend(prep.filled, origin, window=w.trend, h=prep.h)[0],
        "seasonal": seasonal,
        "seasonal+level": 0.5 * (seasonal + median),
    }[kind]
    forced = replace(fit, applied=replace(fit.applied, kind=kind))
    got = fit_module._evaluate(forced, hist, now_s=now)
    assert got is not None
    point, upper = calibrated(float(expected_raw), choice.lo, choice.hi, choice.floor)
    assert got.point == pytest.approx(point, rel=1e-9)
    assert got.upper == pytest.approx(upper, rel=1e-9)


# -- between refits -------------------------------------------------------------------------------


def test_between_refits_the_fitted_forecast_tracks_the_full_one(week: tuple[np.ndarray, DemandHistory]) -> None:
    y, hist = week
    start = int(8 * DAY / STEP)
    fit: ForecastFit | None = None
    rel, refits, incremental = [], 0, 0
    for i in range(start, start + 160):  # 40 minutes of ticks: eight refit windows
        hist = hist.append(i * STEP, float(y[i]))
        now = i * STEP
        new = refresh_fit(fit, hist, now_s=now, horizon_s=195.0, phase_s=refit_phase_s("ns/p"))
        refits += new is not fit
        fit = new
        got = forecast_from_fit(fit, hist, now_s=now, horizon_s=195.0)
        full = forecast_demand(hist, now_s=now, horizon_s=195.0)
        assert got is not None and full is not None
        if fit.now_s == now:
            assert got == full
        else:
            incremental += 1
            assert got != fit.forecast()  # the level moved
        rel.append(abs(got.upper - full.upper) / full.upper)
    assert 8 <= refits <= 9 and incremental >= 140
    assert max(rel) < 0.015 and float(np.mean(rel)) < 0.005


def test_a_step_in_demand_after_a_refit_moves_the_forecast_before_the_next_refit() -> None:
    n = 600  # 2.5 hours of a flat series: the recent median wins
    rng = np.random.default_rng(11)
    y = 100 + rng.normal(0, 2, n)
    hist = DemandHistory(0.0, STEP, y)
    now = hist.end_s
    fit = fit_forecast(hist, now_s=now, horizon_s=60.0)
    assert fit.applied is not None and fit.applied.kind == "recent-median"
    before = forecast_from_fit(fit, hist, now_s=now, horizon_s=60.0)
    for k in range(1, 21):  # demand doubles for 5 minutes (the median's window), within the fit's lifetime
        hist = hist.append(now + k * STEP, 200.0)
    later = now + 20 * STEP
    after = forecast_from_fit(fit, hist, now_s=later, horizon_s=60.0)
    full = forecast_demand(hist, now_s=later, horizon_s=60.0)
    assert before is not None and after is not None and full is not None
    assert before.point < 110 and after.point > 190
    assert after.model == fit.model and after.point == pytest.approx(full.point, rel=0.05)


# -- fallbacks ------------------------------------------------------------------------------------


def test_where_the_fit_does_not_apply_the_full_forecast_is_returned(week: tuple[np.ndarray, DemandHistory]) -> None:
    y, hist = week
    now = hist.end_s
    fit = fit_forecast(hist, now_s=now, horizon_s=195.0)
    later = hist
    for k in range(1, 5):
        later = later.append(now + k * STEP, float(y[int(now / STEP) + k]))
    t = later.end_s
    assert forecast_from_fit(fit, later, now_s=t, horizon_s=600.0) == forecast_demand(later, now_s=t, horizon_s=600.0)
    assert forecast_from_fit(fit, later, now_s=t, horizon_s=195.0, quantile=0.9) == forecast_demand(
        later, now_s=t, horizon_s=195.0, quantile=0.9
    )
    stale = later
    steps = int(FIT_LIFETIME_S / STEP) + 2
    for k in range(5, 5 + steps):
        stale = stale.append(now + k * STEP, float(y[int(now / STEP) + k]))
    t = stale.end_s
    assert forecast_from_fit(fit, stale, now_s=t, horizon_s=195.0) == forecast_demand(stale, now_s=t, horizon_s=195.0)
    # two hours of gaps: nothing recent to carry the level from
    gap = hist.append(now + 2 * 3600.0, math.nan)
    t = gap.end_s
    fresh = fit_forecast(gap.until(now + 3600.0 * 2 - 300.0), now_s=now + 2 * 3600.0 - 300.0, horizon_s=195.0)
    assert forecast_from_fit(fresh, gap, now_s=t, horizon_s=195.0) == forecast_demand(gap, now_s=t, horizon_s=195.0)


# -- schedule -------------------------------------------------------------------------------------


def test_one_refit_per_window_at_a_point_fixed_by_the_key(week: tuple[np.ndarray, DemandHistory]) -> None:
    y, hist = week
    start = int(8 * DAY / STEP)
    refit_at: dict[str, list[float]] = {}
    for key in ("team-a/chat", "team-b/code"):
        h, fit, times = hist, None, []
        for i in range(start, start + 80):
            h = h.append(i * STEP, float(y[i]))
            new = refresh_fit(fit, h, now_s=i * STEP, horizon_s=195.0, phase_s=refit_phase_s(key))
            if new is not fit:
                times.append(i * STEP)
            fit = new
        refit_at[key] = times
        phase = refit_phase_s(key)
        # after the first tick, every refit is the first tick at or after a window start
        for t in times[1:]:
            assert (t - phase) % REFIT_EVERY_S < STEP
    assert refit_at["team-a/chat"][1:] != refit_at["team-b/code"][1:]
    assert refit_phase_s("team-a/chat") == refit_phase_s("team-a/chat")  # stable: no salted hash


def test_a_new_horizon_refits_at_once(week: tuple[np.ndarray, DemandHistory]) -> None:
    _, hist = week
    now = hist.end_s
    fit = refresh_fit(None, hist, now_s=now, horizon_s=195.0)
    assert refresh_fit(fit, hist, now_s=now, horizon_s=195.0) is fit
    other = refresh_fit(fit, hist, now_s=now, horizon_s=255.0)
    assert other is not fit and other.horizon_s == 255.0


def test_ten_thousand_targets_spread_their_refits_over_the_window() -> None:
    keys = [f"team-{i % 97}/model-{i}" for i in range(10_000)]
    ticks = Counter(math.floor(refit_phase_s(k) / STEP) for k in keys)
    share = len(keys) / (REFIT_EVERY_S / STEP)
    assert len(ticks) == REFIT_EVERY_S / STEP
    assert max(ticks.values()) < 1.3 * share


# -- purity ---------------------------------------------------------------------------------------


def test_fits_are_values_and_survive_pickling(week: tuple[np.ndarray, DemandHistory]) -> None:
    y, hist = week
    now = hist.end_s
    a = fit_forecast(hist, now_s=now, horizon_s=195.0)
    b = fit_forecast(hist, now_s=now, horizon_s=195.0)
    assert a == b and a is not b
    copy = pickle.loads(pickle.dumps(a))
    assert copy == a
    later = hist.append(now + STEP, float(y[int(now / STEP) + 1]))
    assert forecast_from_fit(copy, later, now_s=now + STEP, horizon_s=195.0) == forecast_from_fit(
        a, later, now_s=now + STEP, horizon_s=195.0
    )


# -- through the core -----------------------------------------------------------------------------


def _predictive() -> ScalingPolicy:
    base = policy(metric("tokens", "AverageValue", 50.0), max_replicas=40)
    return replace(
        base,
        predictive=Predictive(metric="tokens", quantile=0.95, seasonality_s=(DAY,)),
        cold_start=ColdStart(load_time_s=180.0),
    )


def test_step_carries_the_fit_and_a_retry_repeats_it(week: tuple[np.ndarray, DemandHistory]) -> None:
    y, _ = week
    # 26 hours: within the full-resolution span, so a retry's copied history has the same layout
    start = int(26 * 3600 / STEP)
    hist = DemandHistory(0.0, STEP, y[:start])
    pol = _predictive()
    state = warm_start(TargetState(), pol, hist)
    fits: list[ForecastFit] = []
    for i in range(start, start + 30):
        reading = TargetReading(3, 3, {"tokens": MetricReading.of(float(y[i]) * 3)})
        decision, new = step(reading, state, pol, i * STEP)
        retried, again = step(reading, state, pol, i * STEP)  # a 409: the same input state
        assert retried == decision and again.forecast_fit == new.forecast_fit
        assert new.forecast_fit is not None
        fit = new.forecast_fit
        if not fits or fit is not fits[-1]:
            fits.append(fit)
            # at a refit the decision is the one decide makes with the full forecast
            observation, _ = observe(reading, state, pol, i * STEP)
            full, _ = decide(replace(observation, forecast_fit=None), state.scaler, pol, i * STEP)
            assert full == decision and decision.forecast is not None
        state = new
    assert 2 <= len(fits) <= 3  # 7.5 minutes: the first tick, then once per 5-minute window
    assert warm_start(state, pol, hist).forecast_fit is None
    moved = replace(pol, predictive=Predictive(metric="other", quantile=0.95, seasonality_s=(DAY,)))
    assert retarget(state, pol, moved).forecast_fit is None
