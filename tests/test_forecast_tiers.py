"""Tests of the two-tier demand history (issue #17: bounded memory per predictive target).

Case matrix:

* Downsampling: slots older than the full-resolution span become 5-minute means over the finite
  samples, with their counts; an all-gap group stays a gap (NaN, count 0); ``dense()`` repeats each
  mean over its slots; building from an array and appending tick by tick give the same tiers.
* Seasonal lookups: the value days back (one day + the backtest's span, two, three, seven), read through ``dense()`` at a coarse tier, is the mean of
  the 5-minute slot that holds that time; ``until`` into the coarse tier keeps only whole slots.
* Memory and cost: 30 days of 15 s ticks keep the bytes bounded (< 48 KB against 368 KB for one
  float64 array of 8 days); the buffer is replaced only once per fold (O(1) amortised appends).
* Purity: older values never change when newer ones are appended; appending twice to the same value
  (a retry) gives two independent values; a value survives pickling (the tuner's worker processes).
* Same forecasts: while the history is within the full-resolution span, ``forecast_demand`` gives
  exactly the forecasts of the old single-array layout (golden values recorded from commit ad5c4b9 on
  float32-exact inputs), whether the history was built at once or tick by tick.
* Close forecasts beyond it: on 8 days of a diurnal 15 s series, the tiered history's forecasts
  match the full-resolution layout's within a few percent.
* Warm start: a Prometheus-built 8-day history lands in the tiers, and the ticks extend it.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from policy_builders import metric, policy

from autoscaler.core.policy import ColdStart, Predictive
from autoscaler.core.predictive import record_demand
from autoscaler.core.step import TargetState, warm_start
from autoscaler.forecast import DemandHistory, forecast_demand
from autoscaler.forecast.history import COARSE_STEP_S, FULL_SPAN_S

DAY = 86400.0
STEP = 15.0
GOLDEN = Path(__file__).resolve().parent / "golden" / "forecast_full_resolution.json"
OLD_BYTES_8_DAYS = 8 * 5760 * 8  # one float64 array of 8 days at 15 s, as the history was before


def golden_series(n: int, step_s: float) -> np.ndarray:
    """The series the golden forecasts were recorded on: integers (exact in float32), gaps, a spike."""
    i = np.arange(n)
    t = i * step_s
    y = np.round(100 + 60 * np.sin(2 * np.pi * t / DAY) + 25 * np.sin(2 * np.pi * t / 7200.0) + (i * 7919) % 23 - 11)
    y[i % 97 == 0] = np.nan
    y[(i > n // 3) & (i < n // 3 + 40)] = np.nan
    y[n // 2] = 5000.0
    return np.asarray(y, dtype=np.float64)


def appended(start_s: float, step_s: float, y: np.ndarray, **kw: object) -> DemandHistory:
    h = DemandHistory.empty(start_s=start_s, step_s=step_s, **kw)  # type: ignore[arg-type]
    for i, v in enumerate(y):
        h = h.append(start_s + i * step_s, float(v))
    return h


# -- downsampling --------------------------------------------------------------------------------------


def test_old_slots_become_means_with_counts_and_gaps_stay_gaps() -> None:
    y = np.arange(200, dtype=np.float64)  # 50 min at 15 s; full resolution for the last 10 min
    y[3] = np.nan  # group 0 (slots 0..19): 19 samples
    y[20:40] = np.nan  # group 1: a gap
    h = DemandHistory(0.0, STEP, y, full_span_s=600.0)
    coarse = h.coarse
    assert coarse is not None and coarse.step_s == COARSE_STEP_S and coarse.start_s == 0.0
    # 200 - 40 = 160 slots beyond the span: 8 whole groups of 20 fold, 40 stay at 15 s
    assert len(coarse) == 8 and len(h) == 40 and h.start_s == 160 * STEP and h.end_s == 199 * STEP
    assert coarse.counts.tolist() == [19, 0] + [20] * 6
    assert coarse.means[0] == pytest.approx((sum(range(20)) - 3) / 19)
    assert math.isnan(coarse.means[1])
    np.testing.assert_allclose(coarse.means[2:], [np.mean(y[20 * k : 20 * k + 20]) for k in range(2, 8)])
    np.testing.assert_array_equal(h.values, y[160:])
    start, dense = h.dense()
    assert start == 0.0 and dense.size == 200
    assert np.isnan(dense[20:40]).all() and (dense[40:60] == np.mean(y[40:60])).all()


def test_appending_tick_by_tick_builds_the_same_tiers_as_building_at_once() -> None:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 500, 3000).astype(np.float64)
    y[rng.random(y.size) < 0.05] = np.nan
    at_once = DemandHistory(50.0, STEP, y, 2000, full_span_s=3600.0)
    ticks = appended(50.0, STEP, y, max_points=2000, full_span_s=3600.0)
    # appends fold only when the buffer is full (an hour at a time): compare where both hold a tier
    assert ticks.end_s == at_once.end_s == 50.0 + 2999 * STEP
    assert ticks.coarse is not None and at_once.coarse is not None
    shift = round((at_once.coarse.start_s - ticks.coarse.start_s) / COARSE_STEP_S)
    both = min(len(ticks.coarse) - shift, len(at_once.coarse))
    assert both > 50 and (ticks.coarse.start_s - 50.0) % COARSE_STEP_S == 0  # the same 5-minute grid
    np.testing.assert_array_equal(ticks.coarse.means[shift : shift + both], at_once.coarse.means[:both])
    np.testing.assert_array_equal(ticks.coarse.counts[shift : shift + both], at_once.coarse.counts[:both])
    fine = min(len(ticks), len(at_once))
    np.testing.assert_array_equal(ticks.values[-fine:], at_once.values[-fine:])
    np.testing.assert_array_equal(at_once.values, y[-len(at_once) :])
    for h in (at_once, ticks):  # bounded to max_points, plus at most the hour that waits to be folded
        assert 2000 - 20 <= (h.end_s - h.first_s) / STEP + 1 <= 2000 + 240


def test_full_span_infinite_keeps_the_single_array_layout() -> None:
    y = np.arange(8 * 5760, dtype=np.float64)
    h = DemandHistory(0.0, STEP, y, full_span_s=math.inf)
    assert h.coarse is None and len(h) == y.size
    np.testing.assert_array_equal(h.values, y)


# -- seasonal lookups at the coarse tier ---------------------------------------------------------------


def test_value_days_back_is_the_mean_of_its_five_minute_slot() -> None:
    t = np.arange(8 * 5760) * STEP
    y = np.floor(np.mod(t, DAY) / 60.0)  # minute of the day: each 5-minute slot has its own mean
    h = DemandHistory(0.0, STEP, y)
    assert h.coarse is not None and len(h) < 7000  # the last ~27 h at 15 s, the rest as 5-minute means
    start, dense = h.dense()
    for back_s in (DAY + 3 * 3600.0 + 7.5 * 60, 2 * DAY + 30.0, 3 * DAY + 3600.0, 7 * DAY - 45.0):
        when = h.end_s - back_s
        assert when < h.start_s  # in the coarse tier
        slot = math.floor((when - h.coarse.start_s) / COARSE_STEP_S)
        lo = h.coarse.start_s + slot * COARSE_STEP_S
        expected = float(np.mean(y[(t >= lo) & (t < lo + COARSE_STEP_S)]))
        assert dense[round((when - start) / STEP)] == pytest.approx(expected)
        assert h.coarse.means[slot] == pytest.approx(expected)


def test_until_in_the_coarse_tier_keeps_whole_slots_only() -> None:
    y = np.ones(400)
    h = DemandHistory(0.0, STEP, y, full_span_s=600.0)
    assert h.coarse is not None and len(h.coarse) == 18
    cut = h.until(5 * COARSE_STEP_S - STEP - 1.0)  # before the 5th slot's last sample: 4 were whole
    assert cut.coarse is not None and len(cut.coarse) == 4 and len(cut) == 0
    assert cut.end_s == 4 * COARSE_STEP_S - STEP and cut.dense()[1].size == 80
    whole = h.until(5 * COARSE_STEP_S - STEP)  # at the 5th slot's last sample
    assert whole.coarse is not None and len(whole.coarse) == 5


# -- memory and cost -----------------------------------------------------------------------------------


def test_bytes_stay_bounded_over_thirty_days_of_ticks() -> None:
    h = DemandHistory.empty(start_s=0.0, step_s=STEP)
    buffers = 0
    peak = 0
    ring = None
    for i in range(30 * 5760):
        h = h.append(i * STEP, float(i % 977))
        if h._ring is not ring:  # counting buffer replacements is the point
            buffers, ring = buffers + 1, h._ring
        if i % 500 == 0:
            peak = max(peak, h.nbytes)
    assert peak <= 48 * 1024 < OLD_BYTES_8_DAYS / 7
    # the covered span is the 8 days asked for, not more
    assert 8 * DAY - COARSE_STEP_S <= h.end_s - h.first_s <= 8 * DAY + FULL_SPAN_S / 20
    # a new buffer per fold (an hour of ticks) plus the doublings at the start: no copy per tick
    assert buffers <= 30 * 24 + 20, buffers


def test_a_prometheus_sized_history_stays_small_after_building() -> None:
    y = np.full(8 * 5760, 100.0)
    h = DemandHistory.from_samples((np.arange(y.size) * STEP).astype(np.float64), y, STEP)
    assert h.coarse is not None and h.nbytes <= 40 * 1024
    assert abs((h.end_s - h.first_s) - (8 * DAY - STEP)) < COARSE_STEP_S


# -- purity --------------------------------------------------------------------------------------------


def test_older_values_never_change_and_retries_are_independent() -> None:
    h = DemandHistory(0.0, STEP, np.arange(500, dtype=np.float64), full_span_s=1800.0)
    before = (h.values.copy(), h.dense()[1].copy())
    newer = h
    for i in range(500, 2000):
        newer = newer.append(i * STEP, -1.0)  # many folds and new buffers later
    np.testing.assert_array_equal(h.values, before[0])
    np.testing.assert_array_equal(h.dense()[1], before[1])
    first, second = h.append(500 * STEP, 7.0), h.append(500 * STEP, 8.0)  # the same input state twice
    assert first.values[-1] == 7.0 and second.values[-1] == 8.0
    cut = first.until(400 * STEP)
    assert cut.append(401 * STEP, 9.0).values[-1] == 9.0 and first.values[401 - 500 - 1] == 401.0
    with pytest.raises(AttributeError):
        h.start_s = 1.0


def test_a_history_survives_pickling() -> None:
    h = DemandHistory(0.0, STEP, np.arange(3000, dtype=np.float64), full_span_s=3600.0)
    back = pickle.loads(pickle.dumps(h))
    assert back.start_s == h.start_s and back.coarse is not None and h.coarse is not None
    np.testing.assert_array_equal(back.dense()[1], h.dense()[1])
    np.testing.assert_array_equal(back.append(h.end_s + STEP, 1.0).values[:-1], h.values)


# -- forecasts -----------------------------------------------------------------------------------------


def _golden() -> list[dict[str, Any]]:
    data = json.loads(GOLDEN.read_text())
    cases: list[dict[str, Any]] = data["cases"]
    return cases


@pytest.mark.parametrize("built", ["at once", "tick by tick"])
def test_forecasts_within_the_full_span_are_those_of_the_single_array_layout(built: str) -> None:
    cases = _golden()
    assert len(cases) == 15
    histories: dict[tuple[float, int], DemandHistory] = {}
    for case in cases:
        step, n = float(case["step_s"]), int(case["points"])
        key = (step, n)
        if key not in histories:
            y = golden_series(n, step)
            histories[key] = DemandHistory(1000.0, step, y) if built == "at once" else appended(1000.0, step, y)
        hist = histories[key]
        assert hist.coarse is None  # within the span: nothing was folded
        f = forecast_demand(
            hist, now_s=float(case["now_s"]), horizon_s=float(case["horizon_s"]),
            quantile=float(case["quantile"]), seasonality_s=(7200.0, DAY),
        )  # fmt: skip
        assert f is not None
        assert (f.point, f.upper, f.model, f.samples) == (case["point"], case["upper"], case["model"], case["samples"])
        assert dict(f.errors) == case["errors"]


def test_forecasts_beyond_the_full_span_match_the_full_resolution_layout_closely() -> None:
    rng = np.random.default_rng(21)
    t = np.arange(9 * 5760) * STEP
    rate = 100.0 * (1.0 + 0.6 * np.sin(2 * np.pi * t / DAY)) * (1.0 + 0.3 * (np.mod(t, 7 * DAY) < DAY))
    y = rng.poisson(rate * STEP) / STEP
    y[rng.random(y.size) < 0.01] = np.nan
    gaps = np.zeros(0)
    uppers: list[tuple[float, float]] = []
    for end in range(8 * 5760 + 100, 9 * 5760, 240):  # every hour of the ninth day
        tiered = DemandHistory(0.0, STEP, y[:end])
        full = DemandHistory(0.0, STEP, y[:end], full_span_s=math.inf)
        assert tiered.coarse is not None and full.coarse is None
        ft = forecast_demand(tiered, now_s=tiered.end_s, horizon_s=600.0)
        ff = forecast_demand(full, now_s=full.end_s, horizon_s=600.0)
        assert ft is not None and ff is not None
        uppers.append((ft.upper, ff.upper))
        gaps = np.append(gaps, abs(ft.upper - ff.upper) / ff.upper)
    assert len(uppers) == 24
    assert float(np.mean(gaps)) < 0.02 and float(np.max(gaps)) < 0.08, uppers


# -- warm start ----------------------------------------------------------------------------------------


def test_warm_start_fills_the_tiers_and_ticks_extend_them() -> None:
    p = policy(metric("tokens", "AverageValue", 1000.0), min_replicas=1, max_replicas=10)
    from dataclasses import replace

    p = replace(
        p,
        predictive=Predictive(metric="tokens", quantile=0.95, seasonality_s=(DAY,)),
        cold_start=ColdStart(load_time_s=300.0),
    )
    step = p.interval_s
    now = 10 * DAY
    times = np.arange(now - 7 * DAY, now - step / 2, step)
    recorded = DemandHistory.from_samples(times, np.full(times.size, 50.0), step, start_s=now - 7 * DAY)
    state = warm_start(TargetState(), p, recorded)
    assert state.demand is recorded
    assert step == 15  # the default interval: 7 days at 15 s, of which the oldest ~5.9 days are folded
    assert recorded.coarse is not None and len(recorded.coarse) == math.ceil((7 * DAY - FULL_SPAN_S) / 300)
    assert recorded.coarse.means[0] == 50.0 and recorded.coarse.counts[0] == 20
    history: DemandHistory | None = state.demand
    for k in range(3000):
        history = record_demand(history, p, 60.0, now + k * step)
        assert history is not None
    assert history is not None
    assert history.values[-1] == 60.0 and history.first_s <= now - 6 * DAY
    assert history.nbytes <= 48 * 1024
