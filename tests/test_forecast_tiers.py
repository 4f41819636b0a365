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
* Warm start: a Prometheus-built 8-day history lands in the tiers, and the ticks extend it;
  ``warm_start`` gives a history read under another bound the policy's ``historyDays``.
* One layout per series (review 2, findings 1-2): when a fold happens follows from the length alone,
  so appending to a value gives the same history whether that value was appended to before (a
  retry after a 409), pickled (the tuner) or rebuilt from its values; lineages never drift apart.
* Folding cleans as the forecaster does (finding 3): a counter reset (a negative rate) is not averaged
  into a coarse mean, and a corrupt spike counts at most SPIKE_FACTOR x the fine part's 99th
  percentile, so neither poisons 5 minutes of means nor moves the forecast off the full-resolution one.
* Bounds (finding 5): the span stays within ``capacity`` rounded up to a coarse slot between folds;
  counts of a very fine step do not overflow.
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
from autoscaler.forecast.history import COARSE_STEP_S, FULL_SPAN_S, history_points
from autoscaler.forecast.select import SPIKE_FACTOR

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
    # a bound of 200 slots: the fold is due at 200 (40 at full resolution + 160 to fold)
    h = DemandHistory(0.0, STEP, y, 200, full_span_s=600.0)
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
    # when a fold happens follows from the length alone: both hold exactly the same tiers
    assert ticks.end_s == at_once.end_s == 50.0 + 2999 * STEP
    assert ticks.coarse is not None and at_once.coarse is not None
    assert (ticks.start_s, len(ticks), ticks.coarse.start_s) == (at_once.start_s, len(at_once), at_once.coarse.start_s)
    assert (ticks.coarse.start_s - 50.0) % COARSE_STEP_S == 0 and len(ticks.coarse) > 50
    np.testing.assert_array_equal(ticks.coarse.means, at_once.coarse.means)
    np.testing.assert_array_equal(ticks.coarse.counts, at_once.coarse.counts)
    np.testing.assert_array_equal(ticks.values, at_once.values)
    np.testing.assert_array_equal(at_once.values, y[-len(at_once) :])
    for h in (at_once, ticks):  # bounded to max_points, rounded up to a whole coarse slot
        assert 2000 <= (h.end_s - h.first_s) / STEP + 1 < 2000 + 20


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
    assert h.coarse is not None and len(h.coarse) == 12  # one fold of an hour (240 slots) was due
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
    # the covered span is the 8 days asked for, rounded up to a whole coarse slot, not more
    assert 8 * DAY - STEP <= h.end_s - h.first_s < 8 * DAY - STEP + COARSE_STEP_S
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
    bound = history_points(7.0, step)  # historyDays 7, as the service reads it
    recorded = DemandHistory.from_samples(
        times, np.full(times.size, 50.0), step, start_s=now - 7 * DAY, max_points=bound
    )
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


# -- one layout per series (review 2, findings 1 and 2) ----------------------------------------------------


def _tiers(h: DemandHistory) -> tuple[Any, ...]:
    coarse = h.coarse
    tiers = None if coarse is None else (coarse.start_s, coarse.means.tobytes(), coarse.counts.tobytes())
    return (h.start_s, len(h), h.values.tobytes(), tiers, h.max_points)


def _diurnal(t: float, rng: np.random.Generator) -> float:
    return float(
        100 + 60 * math.sin(2 * math.pi * t / DAY) + 25 * math.sin(2 * math.pi * t * 7 / 3600) + rng.normal(0, 8)
    )


def test_a_retry_appends_exactly_what_the_first_attempt_appended_across_a_fold() -> None:
    rng = np.random.default_rng(2)
    bound = history_points(8.0, STEP)
    state = DemandHistory.empty(start_s=0.0, step_s=STEP, max_points=bound)
    t = 0.0
    for _ in range(6480 + 20 * 240):  # 47 h: several folds done, the next one 240 ticks away at most
        state, t = state.append(t, _diurnal(t, rng)), t + STEP
    folds = 0
    for _ in range(300):  # a whole fold cycle and more: the controller's step, then its retry after a 409
        v = _diurnal(t, rng)
        first = state.append(t, v)
        retry = state.append(t, v)  # the same input state: no longer the newest value on its buffer
        assert _tiers(retry) == _tiers(first)
        np.testing.assert_array_equal(retry.dense()[1], first.dense()[1])
        if first.coarse is not None and state.coarse is not None and first.coarse.end_s != state.coarse.end_s:
            folds += 1
            fa, fb = forecast_demand(first, now_s=t, horizon_s=600.0), forecast_demand(retry, now_s=t, horizon_s=600.0)
            assert (
                fa is not None and fb is not None and (fa.point, fa.upper, fa.model) == (fb.point, fb.upper, fb.model)
            )
        state, t = first, t + STEP
    assert folds >= 1
    # and the two lineages, fed the same ticks from then on, stay identical
    a, b = state.append(t, 1.0), state.append(t, 1.0)
    for _ in range(600):
        t += STEP
        v = _diurnal(t, rng)
        a, b = a.append(t, v), b.append(t, v)
    assert _tiers(a) == _tiers(b)


@pytest.mark.parametrize("ticks", [3300, 6479, 6480, 6719, 6720 + 100, 6480 + 20 * 240 + 239])
def test_appending_gives_one_history_whether_retried_pickled_or_rebuilt(ticks: int) -> None:
    rng = np.random.default_rng(ticks)
    h = DemandHistory.empty(start_s=0.0, step_s=STEP, max_points=history_points(8.0, STEP))
    t = 0.0
    for _ in range(ticks):
        h, t = h.append(t, _diurnal(t, rng)), t + STEP
    twins = {
        "retried": (h.append(t, 0.5), h)[1],  # an append from h already happened
        "pickled": pickle.loads(pickle.dumps(h)),
        "pickled twice": pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(h)))),
    }
    if h.coarse is None:
        twins["rebuilt"] = DemandHistory(h.start_s, h.step_s, h.values, h.max_points)
    lineage = {"original": h, **twins}
    for _ in range(6720 - min(ticks, 6480) + 250):  # past the next fold, and past a 6600-slot buffer's end
        v = _diurnal(t, rng)
        lineage = {name: x.append(t, v) for name, x in lineage.items()}
        t += STEP
        want = _tiers(lineage["original"])
        for name in twins:
            assert _tiers(lineage[name]) == want, (name, repr(lineage[name]), repr(lineage["original"]))


# -- folding cleans as the forecaster does (finding 3) ----------------------------------------------------


def test_a_counter_reset_is_not_averaged_into_a_coarse_mean() -> None:
    rng = np.random.default_rng(7)
    y = np.round(100 + 10 * rng.random(3 * 5760))
    resets = np.arange(37, y.size, 240)
    y[resets] = -900.0  # a counter reset read as a negative rate, hourly
    h = DemandHistory(0.0, STEP, y)
    coarse = h.coarse
    assert coarse is not None
    groups = y[: len(coarse) * 20].reshape(-1, 20)
    clean = np.where(groups >= 0, groups, np.nan)
    np.testing.assert_allclose(coarse.means, np.nanmean(clean, axis=1), rtol=1e-6)
    assert coarse.counts.tolist() == np.count_nonzero(groups >= 0, axis=1).tolist()
    assert coarse.counts.min() == 19 and float(coarse.means.min()) >= 100.0


def test_a_corrupt_spike_counts_at_most_the_forecasters_cap() -> None:
    y = np.full(3 * 5760, 100.0)
    y[np.arange(0, y.size, 7)] = 120.0  # some spread: the 99th percentile is 120
    y[2000] = 1e9  # one corrupt sample, in a slot that gets folded
    h = DemandHistory(0.0, STEP, y)
    coarse = h.coarse
    assert coarse is not None and len(coarse) > 100
    group = y[2000 - 2000 % 20 : 2000 - 2000 % 20 + 20].copy()
    group[2000 % 20] = 120.0 * SPIKE_FACTOR  # what the forecaster clips the spike to
    assert coarse.means[2000 // 20] == pytest.approx(float(np.mean(group)))
    assert coarse.counts[2000 // 20] == 20


def test_bad_samples_in_the_coarse_tier_leave_the_forecast_where_full_resolution_has_it() -> None:
    t = np.arange(0, 9 * DAY, STEP)
    rng = np.random.default_rng(7)
    base = 100 + 50 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 3, t.size)
    resets, spikes = base.copy(), base.copy()
    resets[np.arange(37, t.size, 240)] = -900.0  # hourly counter resets
    spikes[np.arange(2000, t.size, 5760)] = 1e9  # one corrupt sample a day
    for y in (resets, spikes):
        tiered = DemandHistory(0.0, STEP, y)
        full = DemandHistory(0.0, STEP, y, full_span_s=math.inf)
        for horizon in (600.0, 1800.0):
            a = forecast_demand(tiered, now_s=t[-1], horizon_s=horizon)
            b = forecast_demand(full, now_s=t[-1], horizon_s=horizon)
            assert a is not None and b is not None
            assert a.model.startswith("seasonal"), (a.model, dict(a.errors))  # not the fallbacks
            assert abs(a.upper - b.upper) / b.upper < 0.01, (a.upper, b.upper)
            assert a.errors["seasonal-daily"] <= 1.1 * b.errors["seasonal-daily"]


# -- bounds (finding 5) -------------------------------------------------------------------------------------


def test_the_span_stays_within_the_capacity_between_folds() -> None:
    bound = history_points(7.0, STEP)
    h = DemandHistory.empty(start_s=0.0, step_s=STEP, max_points=bound)
    spans = set()
    for i in range(int(7.5 * 5760)):
        h = h.append(i * STEP, 1.0)
        if i > 7 * 5760:
            spans.add(round((h.end_s - h.first_s) / STEP) + 1)
    assert min(spans) >= bound and max(spans) < bound + 20, (min(spans), max(spans))


def test_counts_of_a_very_fine_step_do_not_overflow() -> None:
    h = DemandHistory(0.0, 0.004, np.ones(200_000), max_points=200_000, full_span_s=0.4)
    coarse = h.coarse
    assert coarse is not None and coarse.step_s == pytest.approx(300.0)
    assert coarse.counts.tolist() == [75_000] * len(coarse) and coarse.means.tolist() == [1.0] * len(coarse)


def test_warm_start_bounds_the_history_by_history_days() -> None:
    from dataclasses import replace

    base = policy(metric("tokens", "AverageValue", 1000.0), min_replicas=1, max_replicas=10)
    times = np.arange(0.0, 3 * DAY, STEP)
    unbounded = DemandHistory.from_samples(times, np.full(times.size, 50.0), STEP, start_s=0.0)  # 8 days
    for days in (2.0, 14.0):
        p = replace(
            base, predictive=Predictive(metric="tokens", quantile=0.95, seasonality_s=(DAY,), history_days=days)
        )
        state = warm_start(TargetState(), p, unbounded)
        history = state.demand
        assert history is not None and history.capacity == history_points(days, STEP) == history.max_points
        history = record_demand(history, p, 50.0, 3 * DAY)
        assert history is not None and history.capacity == history_points(days, STEP)
        span = round((history.end_s - history.first_s) / STEP) + 1
        if days == 14.0:  # everything read is kept, and room for 11 more days
            assert span == times.size + 1
        else:  # 2 days, rounded up to a whole coarse slot
            assert history_points(days, STEP) <= span < history_points(days, STEP) + 20
