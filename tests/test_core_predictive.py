"""The predictive step of the core: the forecast floor, the warm pool, placeholder sizing, scale to zero
with a wake signal and predictive wake, and the horizon (measured, overridden, assumed).

Histories are synthetic and exact: a demand that repeats every day (a step up at the same time each
day) so that the seasonal forecast knows the step is coming one load time ahead.
"""

from __future__ import annotations

import math

import numpy as np
from policy_builders import metric, obs, policy, rules

from autoscaler.core import Reason, ScalerState, decide
from autoscaler.core.policy import (
    Behavior,
    ColdStart,
    MetricSource,
    MetricSpec,
    MetricTarget,
    Placeholder,
    Predictive,
    TargetType,
    Wake,
    WarmPool,
)
from autoscaler.core.predictive import DEFAULT_LOAD_TIME_S, horizon
from autoscaler.forecast import DemandHistory

DAY = 86400.0
STEP = 15.0
CAPACITY = 1000.0  # tokens/s per replica
STEP_AT = 12 * 3600.0  # every day at noon demand steps from 2000 to 8000 tokens/s for an hour


def daily_demand(t: np.ndarray) -> np.ndarray:
    tod = np.mod(t, DAY)
    return np.where((tod >= STEP_AT) & (tod < STEP_AT + 3600), 8000.0, 2000.0)


def history_until(now: float, days: int = 8) -> DemandHistory:
    t = np.arange(now - days * DAY, now + STEP / 2, STEP)
    return DemandHistory(float(t[0]), STEP, daily_demand(t))


def predictive_policy(**kw):  # type: ignore[no-untyped-def]
    tokens = metric("tokens", "AverageValue", CAPACITY)
    base = policy(tokens, min_replicas=kw.pop("min_replicas", 1), max_replicas=40, behavior=kw.pop("behavior", None))
    from dataclasses import replace

    return replace(
        base,
        predictive=Predictive(metric="tokens", quantile=0.95, seasonality_s=(DAY,)),
        cold_start=ColdStart(load_time_s=kw.pop("load_time_s", 300.0)),
        **kw,
    )


def test_forecast_floor_scales_up_one_load_time_before_the_daily_step() -> None:
    p = predictive_policy(behavior=Behavior(scale_up=rules(window=120, up=True)))
    now = 9 * DAY + STEP_AT - 240.0  # 4 minutes before noon; horizon = 300 s + 15 s interval
    o = obs(2, {"tokens": 2000.0})
    o = type(o)(o.spec_replicas, o.ready_replicas, o.metrics, None, history_until(now), None)
    d, _ = decide(o, ScalerState(), p, now)
    assert d.proposals == {"tokens": 2}  # reactive: 2000 / 1000 -> 2 (in tolerance)
    assert d.forecast is not None and d.forecast.upper > 4000  # the step is coming
    assert d.horizon_s == 315.0 and d.predictive_replicas == math.ceil(d.forecast.upper / CAPACITY)
    # the 120 s scale-up window would hold a reactive rise; the floor bypasses it; rate limit: 2 + 4 = 6
    assert d.desired_replicas == min(6, d.predictive_replicas)
    assert d.reason in (Reason.SCALE_UP_LIMIT, Reason.PREDICTIVE)
    assert "tokens forecast" in d.message and "load 300s (policy)" in d.message


def test_without_history_or_far_from_the_step_nothing_changes() -> None:
    p = predictive_policy()
    now = 9 * DAY + 3 * 3600.0  # 3 a.m.: the forecast says 2000
    base = obs(2, {"tokens": 2000.0})
    with_history = type(base)(2, 2, base.metrics, None, history_until(now), None)
    d1, _ = decide(with_history, ScalerState(), p, now)
    d2, _ = decide(base, ScalerState(), p, now)
    assert d1.desired_replicas == d2.desired_replicas == 2
    assert d1.predictive_replicas == 2 and d2.forecast is None
    assert d1.reason is Reason.WITHIN_TOLERANCE


def test_warm_pool_spares_and_cap_and_placeholder() -> None:
    pool = WarmPool(min_spare=1, max_spare=3, placeholder=Placeholder("chat-balloon", pods_per_replica=2))
    p = predictive_policy(warm_pool=pool)
    now = 9 * DAY + 3 * 3600.0
    o = obs(3, {"tokens": 2000.0})
    o = type(o)(3, 3, o.metrics, None, history_until(now), None)
    d, _ = decide(o, ScalerState(), p, now)
    # forecast 2000 -> 2 replicas + 1 spare = 3 = current
    assert d.predictive_replicas == 3 and d.desired_replicas == 3
    # placeholder: uncapped 3 + (3 - 1) - desired 3 = 2 replicas' worth -> 4 pods
    assert d.placeholder_pods == 4
    # before the step: >= 5 needed + 1 spare, capped at reactive 2 + maxSpare 3 = 5
    now = 9 * DAY + STEP_AT - 240.0
    o = type(o)(3, 3, o.metrics, None, history_until(now), None)
    d, _ = decide(o, ScalerState(), p, now)
    assert d.forecast is not None
    assert d.predictive_replicas == math.ceil(d.forecast.upper / CAPACITY) + 1 >= 6
    assert d.desired_replicas == 5 and d.reason is Reason.PREDICTIVE
    assert "capped at reactive 2 + maxSpare 3" in d.message
    # placeholder: uncapped + 2 - 5 replicas' worth, at most maxSpare 3, times 2 pods each
    assert d.placeholder_pods == 2 * min(3, d.predictive_replicas + 2 - 5)


def test_predicted_capacity_is_held_by_the_scale_down_window() -> None:
    p = predictive_policy()
    state = ScalerState()
    now = 9 * DAY + STEP_AT - 240.0
    o = obs(2, {"tokens": 2000.0})
    o = type(o)(2, 2, o.metrics, None, history_until(now), None)
    d, state = decide(o, state, p, now)
    high = d.desired_replicas
    assert high > 2
    # the forecast stops asking (no history): the recorded floor holds scale-down for the window
    later = obs(high, {"tokens": 2000.0})
    d, _ = decide(later, state, p, now + 60)
    assert d.desired_replicas == high and d.reason is Reason.SCALE_DOWN_STABILIZED


def test_horizon_sources() -> None:
    p = predictive_policy(load_time_s=200.0)
    assert horizon(p, obs(1, {}))[0] == 215.0
    from dataclasses import replace

    measured = replace(p, cold_start=ColdStart())
    o = obs(1, {})
    assert horizon(measured, type(o)(1, 1, {}, None, None, 95.0)) == (110.0, "load 95s (measured p90) + interval 15s")
    assert horizon(measured, o)[0] == DEFAULT_LOAD_TIME_S + 15
    overridden = replace(p, cold_start=ColdStart(load_time_s=100.0, scheduling_delay_s=20.0))
    assert horizon(overridden, o)[0] == 135.0


def _zero_policy(**kw):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    gateway = MetricSpec(
        "gateway",
        MetricSource(query='sum(gateway_queue{route="chat"})'),
        MetricTarget(TargetType.AVERAGE_VALUE, 4000, "4"),
    )
    p = predictive_policy(min_replicas=0, **kw)
    return replace(p, metrics=(*p.metrics, gateway), wake=Wake("gateway"))


def test_wake_from_zero_on_the_wake_signal() -> None:
    from dataclasses import replace

    p = replace(_zero_policy(), predictive=None)
    d, _ = decide(obs(0, {"gateway": 0.0}), ScalerState(), p, 0.0)
    assert d.desired_replicas == 0 and d.reason is Reason.WITHIN_TOLERANCE
    d, _ = decide(obs(0, {"gateway": 10.0}), ScalerState(), p, 0.0)
    assert d.desired_replicas == 3 and d.reason is Reason.WAKE  # ceil(10 / 4)
    d, _ = decide(obs(0, {"gateway": None}), ScalerState(), p, 0.0)
    assert d.desired_replicas == 0 and d.reason is Reason.METRICS_UNAVAILABLE


def test_predictive_wake_one_load_time_before_demand_returns() -> None:
    p = _zero_policy()
    now = 9 * DAY + STEP_AT - 240.0
    o = obs(0, {"gateway": 0.0})
    o = type(o)(0, 0, o.metrics, None, history_until(now), None)
    d, _ = decide(o, ScalerState(), p, now)
    assert d.desired_replicas == 4 and d.reason is Reason.WAKE  # >= 5 predicted, Pods 4 per 15 s from zero
    assert "tokens forecast" in d.message


def test_scale_down_to_zero_when_idle() -> None:
    from dataclasses import replace

    p = replace(_zero_policy(), predictive=None, behavior=Behavior(scale_down=rules(window=0, up=False)))
    d, _ = decide(obs(2, {"tokens": 0.0, "gateway": 0.0}), ScalerState(), p, 0.0)
    assert d.desired_replicas == 0


def test_an_uncalibrated_forecast_does_not_act() -> None:
    # 20 minutes of history with one glitch: the forecaster has not scored enough forecasts yet
    p = predictive_policy()
    now = 9 * DAY
    values = np.full(80, 2000.0)
    values[-3] = 1e6  # a glitch sample
    o = obs(2, {"tokens": 2000.0})
    o = type(o)(2, 2, o.metrics, None, DemandHistory(now - 79 * STEP, STEP, values), None)
    d, _ = decide(o, ScalerState(), p, now)
    assert d.forecast is None and d.predictive_replicas is None and d.desired_replicas == 2


def test_a_scale_down_stops_at_the_forecast_floor() -> None:
    p = predictive_policy(behavior=Behavior(scale_down=rules(window=0, up=False)))
    now = 9 * DAY + STEP_AT + 600.0  # inside the daily step: the forecast asks for about 8
    o = obs(12, {"tokens": 3000.0})  # reactive: 3 replicas
    o = type(o)(12, 12, o.metrics, None, history_until(now), None)
    d, _ = decide(o, ScalerState(initialized=True), p, now)
    assert d.forecast is not None and d.predictive_replicas is not None
    assert d.desired_replicas == d.predictive_replicas < 12  # down to the floor, not to 3


def test_placeholder_is_left_alone_without_a_forecast() -> None:
    pool = WarmPool(min_spare=1, max_spare=3, placeholder=Placeholder("balloon"))
    p = predictive_policy(warm_pool=pool)
    d, _ = decide(obs(3, {"tokens": None}), ScalerState(), p, 9 * DAY)  # signal outage, no history
    assert d.placeholder_pods is None
