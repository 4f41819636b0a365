"""Tests of the demand forecasters (``autoscaler.forecast``).

Case matrix:

* ``DemandHistory``: resampling irregular samples (mean per slot, gaps kept as NaN, non-finite dropped);
  ``append`` (extends with NaN gaps, newest reading wins, past samples ignored, bounded capacity);
  values are read-only and the caller's array is never changed; ``until``.
* ``forecast_demand`` edge cases: too little history -> None; short history -> ``short-history``;
  stale history (now far past the last sample); invalid quantile; ``explain()``.
* Properties (hypothesis): on series with gaps, spikes, zeros, counter resets (negative rates) and
  non-finite values the forecast is finite, >= 0, upper >= point; the same input gives the same
  output; the history is not modified.
* Accuracy: the seasonal model beats last value on a clearly diurnal series (held-back day); the
  trend model is chosen on a ramp; the band widens with noise.
* Calibration: the upper quantile covers about q of held-back outcomes on a synthetic diurnal +
  noise series and on the real 14-day ServeGen trace (the 3 busiest clients of language/m-large,
  bundled in ``simulations/traces/servegen-language``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.forecast import DemandHistory, Forecast, forecast_demand

DAY = 86400.0
SERVEGEN = Path(__file__).resolve().parent.parent / "simulations" / "traces" / "servegen-language"


def diurnal(days: float, step_s: float, *, seed: int, noise: float = 0.08, level: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(days * DAY / step_s)) * step_s
    shape = level * (1.0 + 0.6 * np.sin(2 * np.pi * t / DAY) + 0.2 * np.sin(4 * np.pi * t / DAY))
    return np.asarray(shape * (1.0 + noise * rng.standard_normal(t.size)), dtype=np.float64)


def rolling(
    y: np.ndarray, step_s: float, horizon_s: float, origins: range, **kw: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Forecast from each origin with the history up to it; returns points, uppers, actuals, models."""
    h = round(horizon_s / step_s)
    points, uppers, actual, chosen = [], [], [], []
    for i in origins:
        f = forecast_demand(DemandHistory(0.0, step_s, y[: i + 1]), now_s=i * step_s, horizon_s=horizon_s, **kw)  # type: ignore[arg-type]
        assert f is not None
        points.append(f.point)
        uppers.append(f.upper)
        actual.append(y[i + h])
        chosen.append(f.model)
    return np.array(points), np.array(uppers), np.array(actual), chosen


# -- DemandHistory ----------------------------------------------------------------------------------


def test_from_samples_resamples_onto_the_grid_keeping_gaps() -> None:
    h = DemandHistory.from_samples([0.0, 14.0, 16.0, 61.0, 75.0], [1.0, 3.0, 5.0, math.nan, 7.0], 15.0)
    assert h.start_s == 0.0 and h.step_s == 15.0
    # slot 0: 0.0 -> 1; slot 1: 14 and 16 -> mean 4; slot 2, 3: none; slot 4: 61 is NaN; slot 5: 75 -> 7
    np.testing.assert_array_equal(h.values, [1.0, 4.0, np.nan, np.nan, np.nan, 7.0])
    assert h.end_s == 75.0


def test_append_extends_with_gaps_overwrites_and_bounds_length() -> None:
    h = DemandHistory.empty(start_s=100.0, step_s=10.0, max_points=4)
    h1 = h.append(100.0, 1.0).append(110.0, 2.0)
    h2 = h1.append(141.0, 5.0)  # slot 4: slots 2 and 3 become gaps, the oldest slot drops out
    assert len(h1) == 2 and h1.end_s == 110.0
    np.testing.assert_array_equal(h2.values, [2.0, np.nan, np.nan, 5.0])
    assert h2.start_s == 110.0 and h2.end_s == 140.0
    assert h2.append(139.0, 6.0).values[-1] == 6.0  # the newest reading for a slot wins
    assert h2.append(50.0, 9.0) is h2  # before the start: ignored
    far = h2.append(10_000.0, 1.0)  # a jump past the capacity keeps only gaps before the new sample
    np.testing.assert_array_equal(far.values, [np.nan, np.nan, np.nan, 1.0])
    assert far.end_s == 10_000.0
    assert DemandHistory.empty(start_s=0.0, step_s=15.0).capacity == 8 * 5760


def test_history_is_immutable_and_does_not_alias_the_input() -> None:
    raw = np.array([1.0, 2.0, math.inf])
    h = DemandHistory(0.0, 60.0, raw)
    raw[0] = 99.0
    assert h.values[0] == 1.0 and math.isnan(h.values[2])
    with pytest.raises(ValueError):
        h.values[0] = 5.0
    before = h.values.copy()
    h.append(180.0, 4.0)
    np.testing.assert_array_equal(h.values, before)
    assert len(h.until(60.0)) == 2 and len(h.until(-1.0)) == 0


def test_invalid_grid_is_rejected() -> None:
    with pytest.raises(ValueError, match="step_s"):
        DemandHistory(0.0, 0.0, np.zeros(3))


# -- edge cases ---------------------------------------------------------------------------------------


def test_too_little_history_gives_none_and_short_history_gives_a_band() -> None:
    assert forecast_demand(DemandHistory(0.0, 15.0, [1.0, 2.0]), now_s=15.0, horizon_s=180.0) is None
    nan_only = DemandHistory(0.0, 15.0, np.full(50, np.nan))
    assert forecast_demand(nan_only, now_s=750.0, horizon_s=180.0) is None
    y = np.array([10.0, 12.0, 9.0, 11.0, 30.0, 10.0, 11.0, 12.0, 10.0, 9.0])
    f = forecast_demand(DemandHistory(0.0, 15.0, y), now_s=135.0, horizon_s=180.0)
    assert f is not None and f.model == "short-history"
    assert f.point == pytest.approx(10.5) and f.upper >= f.point


def test_stale_history_still_forecasts_and_invalid_arguments_raise() -> None:
    y = diurnal(2, 60.0, seed=1)
    hist = DemandHistory(0.0, 60.0, y)
    f = forecast_demand(hist, now_s=hist.end_s + 3 * 3600, horizon_s=600.0)
    assert f is not None and math.isfinite(f.upper) and f.point >= 0
    with pytest.raises(ValueError, match="quantile"):
        forecast_demand(hist, now_s=hist.end_s, horizon_s=60.0, quantile=1.0)
    with pytest.raises(ValueError, match="horizon_s"):
        forecast_demand(hist, now_s=hist.end_s, horizon_s=math.nan)


def test_explain_names_the_model_forecast_and_errors() -> None:
    y = diurnal(3, 60.0, seed=2)
    f = forecast_demand(DemandHistory(0.0, 60.0, y), now_s=(y.size - 1) * 60.0, horizon_s=600.0)
    assert f is not None and f.errors and f.samples >= 12
    line = f.explain()
    assert f.model in line and "p95" in line and "+600s" in line and "\n" not in line
    assert min(f.errors, key=lambda k: f.errors[k]) == f.model


# -- properties ---------------------------------------------------------------------------------------

SPECIAL = st.sampled_from([0.0, -50.0, math.nan, math.inf, -math.inf, 1e9, 1e-300])
VALUES = st.one_of(st.floats(0.0, 1000.0, allow_nan=False), SPECIAL)


@st.composite
def histories(draw: st.DrawFn) -> DemandHistory:
    n = draw(st.integers(1, 400))
    base = draw(st.floats(0.0, 500.0))
    values = np.full(n, base)
    for _ in range(draw(st.integers(0, 12))):  # gaps, spikes, zeros, resets, runs of them
        start = draw(st.integers(0, n - 1))
        length = draw(st.integers(1, 40))
        values[start : start + length] = draw(VALUES)
    noise = draw(st.floats(0.0, 0.5))
    values = values * (1.0 + noise * np.sin(np.arange(n) * 0.7))
    return DemandHistory(0.0, draw(st.sampled_from([15.0, 60.0])), values)


@settings(max_examples=120, deadline=None)
@given(
    hist=histories(),
    horizon_s=st.sampled_from([0.0, 45.0, 180.0, 600.0, 3600.0]),
    quantile=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
    seasonal=st.booleans(),
    late_s=st.sampled_from([0.0, 30.0, 1800.0]),
)
def test_forecast_is_finite_non_negative_ordered_and_deterministic(
    hist: DemandHistory, horizon_s: float, quantile: float, seasonal: bool, late_s: float
) -> None:
    before = hist.values.copy()
    seasons = (1800.0, 3600.0) if seasonal else ()
    args = {"now_s": hist.end_s + late_s, "horizon_s": horizon_s, "quantile": quantile, "seasonality_s": seasons}
    f = forecast_demand(hist, **args)  # type: ignore[arg-type]
    np.testing.assert_array_equal(hist.values, before)
    if f is None:
        assert np.count_nonzero(np.isfinite(before) & (before >= 0)) < 8
        return
    assert math.isfinite(f.point) and math.isfinite(f.upper)
    assert 0.0 <= f.point <= f.upper
    assert all(math.isfinite(v) for v in f.errors.values())
    assert forecast_demand(hist, **args) == f  # type: ignore[arg-type]


# -- accuracy and model choice ------------------------------------------------------------------------


def test_seasonal_model_beats_last_value_on_a_diurnal_series() -> None:
    step, horizon = 300.0, 3600.0
    y = diurnal(5, step, seed=3)
    h = round(horizon / step)
    origins = range(4 * 288, 5 * 288 - h, 3)
    points, _, actual, chosen = rolling(y, step, horizon, origins)
    last = y[np.array(origins)]
    ours_mae = float(np.mean(np.abs(points - actual)))
    last_mae = float(np.mean(np.abs(last - actual)))
    assert ours_mae < 0.7 * last_mae, (ours_mae, last_mae)
    assert sum(m.startswith("seasonal") for m in chosen) > 0.8 * len(chosen)


def test_trend_model_is_chosen_on_a_ramp() -> None:
    rng = np.random.default_rng(4)
    t = np.arange(6 * 60)  # 6 hours at 60 s, climbing from 10 to 370
    y = 10.0 + t * 1.0 + rng.normal(0.0, 1.0, t.size)
    f = forecast_demand(DemandHistory(0.0, 60.0, y), now_s=(t.size - 1) * 60.0, horizon_s=600.0)
    assert f is not None and f.model == "trend", f.explain()
    assert f.point == pytest.approx(y[-1] + 10, abs=3.0)


def test_band_widens_with_uncertainty() -> None:
    widths = []
    for noise in (0.02, 0.2):
        y = diurnal(3, 60.0, seed=5, noise=noise)
        f = forecast_demand(DemandHistory(0.0, 60.0, y), now_s=(y.size - 1) * 60.0, horizon_s=600.0)
        assert f is not None
        widths.append(f.upper - f.point)
    assert widths[1] > 3 * widths[0], widths


# -- calibration ---------------------------------------------------------------------------------------


def test_upper_quantile_covers_about_q_on_a_synthetic_diurnal_series() -> None:
    step, horizon = 300.0, 900.0
    y = diurnal(4, step, seed=6, noise=0.15)
    origins = range(3 * 288, 4 * 288 - 3)
    points, uppers, actual, _ = rolling(y, step, horizon, origins, quantile=0.9)
    coverage = float(np.mean(actual <= uppers))
    assert 0.84 <= coverage <= 0.96, coverage
    assert 0.35 <= float(np.mean(actual <= points)) <= 0.65


def test_upper_quantile_covers_about_q_on_the_servegen_trace() -> None:
    files = sorted(SERVEGEN.glob("chunk-*-trace.csv"))
    assert len(files) == 3, files
    total = np.zeros(0)
    for path in files:
        rate = np.loadtxt(path, delimiter=",", usecols=(1,))
        total = rate if total.size == 0 else total + rate
    assert total.size == 2016
    _, uppers, actual, _ = rolling(total, 600.0, 600.0, range(3 * 144, total.size - 1, 2))
    coverage = float(np.mean(actual <= uppers))
    assert 0.91 <= coverage <= 0.98, coverage


def test_forecast_value_is_frozen() -> None:
    f = Forecast(1.0, 2.0, 0.95, 60.0, "trend")
    with pytest.raises(AttributeError):
        f.point = 3.0  # type: ignore[misc]
