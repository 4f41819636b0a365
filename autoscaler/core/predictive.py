"""The predictive step of the core: forecast the demand signal one horizon ahead and turn it into a
replica floor, a warm pool and a placeholder size. Pure: the forecast is computed here, from the
history the driver hands over in the observation (``Observation.demand_history``).

* horizon = a high quantile of the measured load time (pod creation -> Ready, which includes
  scheduling), or the policy's ``coldStart.loadTimeSeconds`` + ``schedulingDelaySeconds``, plus one
  interval; without either, :data:`DEFAULT_LOAD_TIME_S` is assumed (and said so).
* floor = ceil(forecast_q(t + horizon) / capacity) + ``warmPool.minSpare``, where capacity is the
  predictive metric's AverageValue target; capped at reactive + ``warmPool.maxSpare`` when a warm pool
  is configured (a forecast never runs away with the fleet).
* placeholder pods = podsPerReplica x clamp(uncapped floor + (maxSpare - minSpare) - desired, 0, maxSpare):
  nodes are held for predicted need that is not running yet, at most ``maxSpare`` replicas' worth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autoscaler.core.model import Observation
from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.quantity import to_milli

if TYPE_CHECKING:
    from collections.abc import Iterable

    from autoscaler.forecast import DemandHistory, Forecast, ForecastFit

__all__ = [
    "DEFAULT_LOAD_TIME_S",
    "PredictivePlan",
    "horizon",
    "load_time_quantile",
    "placeholder_pods",
    "plan_predictive",
    "record_demand",
    "refresh_forecast",
]

DEFAULT_LOAD_TIME_S = 180.0
SHORT_HISTORY = "short-history"  # the forecaster's model name before it has scored enough forecasts


@dataclass(frozen=True, slots=True)
class PredictivePlan:
    floor: int  # the replica floor the forecast asks for (capped)
    uncapped: int  # before the maxSpare cap
    forecast: Forecast
    horizon_s: float
    note: str


def horizon(policy: ScalingPolicy, observation: Observation) -> tuple[float, str]:
    """The forecast horizon in seconds, and where its load time came from."""
    cold = policy.cold_start
    if cold.load_time_s is not None:
        load, origin = cold.load_time_s + cold.scheduling_delay_s, "policy"
    elif observation.load_time_s is not None:
        load, origin = observation.load_time_s, f"measured p{round(cold.load_time_quantile * 100)}"
    else:
        load, origin = DEFAULT_LOAD_TIME_S, "assumed"
    return load + policy.interval_s, f"load {load:.0f}s ({origin}) + interval {policy.interval_s}s"


def plan_predictive(
    policy: ScalingPolicy, observation: Observation, *, reactive: int, now: float
) -> PredictivePlan | None:
    """The predictive floor for this tick, or None (no predictive spec, no history, no forecast)."""
    spec = policy.predictive
    if spec is None or observation.demand_history is None:
        return None
    from autoscaler.forecast import forecast_from_fit  # numpy: only for predictive policies

    horizon_s, horizon_note = horizon(policy, observation)
    forecast = forecast_from_fit(
        observation.forecast_fit,
        observation.demand_history,
        now_s=now,
        horizon_s=horizon_s,
        quantile=spec.quantile,
        seasonality_s=spec.seasonality_s,
    )
    if forecast is None or forecast.model == SHORT_HISTORY:
        # Not calibrated yet (too few scored forecasts at this horizon): its band is the recent max,
        # and one glitch sample would pin the fleet high. The reactive proposal decides until then.
        return None
    capacity_milli = policy.metric(spec.metric).target.milli
    needed = math.ceil(to_milli(max(forecast.upper, 0.0)) / capacity_milli)
    pool = policy.warm_pool
    uncapped = needed + (pool.min_spare if pool else 0)
    floor = min(uncapped, reactive + pool.max_spare) if pool else uncapped
    floor = min(floor, policy.max_replicas)
    note = f"{spec.metric} {forecast.explain()} ({horizon_note}) -> {needed} replicas"
    if pool:
        note += f" + {pool.min_spare} spare"
        if floor < uncapped:
            note += f", capped at reactive {reactive} + maxSpare {pool.max_spare}"
    return PredictivePlan(floor=floor, uncapped=uncapped, forecast=forecast, horizon_s=horizon_s, note=note)


def placeholder_pods(policy: ScalingPolicy, plan: PredictivePlan | None, desired: int) -> int | None:
    pool = policy.warm_pool
    if pool is None or pool.placeholder is None or plan is None:
        return None  # no forecast this tick (e.g. a signal outage): leave the placeholder as it is
    want = plan.uncapped + (pool.max_spare - pool.min_spare) - desired
    return pool.placeholder.pods_per_replica * max(0, min(want, pool.max_spare))


def record_demand(
    history: DemandHistory | None, policy: ScalingPolicy, value: float | None, now: float
) -> DemandHistory | None:
    """The demand history (the predictive metric's, or an SLO policy's requests in flight) with this
    tick's value appended (NaN when unavailable), on the policy's grid and bound (``historyDays``).
    Only :func:`autoscaler.core.step.observe` calls it.

    O(1) amortised per tick: the new value shares the old one's buffer (see
    :mod:`autoscaler.forecast.history`); slots older than a day and a few hours are kept as 5-minute
    means, so a target holds about 40 KB for 8 days at 15 s instead of 368 KB."""
    if policy.predictive is not None:
        history_days = policy.predictive.history_days
    elif policy.slo is not None:
        history_days = policy.slo.history_days
    else:
        return None
    from autoscaler.forecast import DemandHistory

    if history is None or history.step_s != policy.interval_s:
        points = int(history_days * 86400 / policy.interval_s) + 1
        history = DemandHistory.empty(start_s=now, step_s=policy.interval_s, max_points=points)
    return history.append(now, math.nan if value is None else value)


def refresh_forecast(
    fit: ForecastFit | None, policy: ScalingPolicy, observation: Observation, now: float
) -> ForecastFit | None:
    """The forecast fit to carry to the next tick and to plan with now: ``fit`` while it serves this
    tick, else a new one (:func:`autoscaler.forecast.refresh_fit`). Refits come once per
    ``REFIT_EVERY_S`` window, at a point of it fixed by the policy key, so that a fleet's refits spread
    out; the ticks between apply the fit to the newest points only. Same horizon and arguments as
    :func:`plan_predictive` and ``plan_slo`` forecast with. Only :func:`autoscaler.core.step.observe`
    calls it."""
    history = observation.demand_history
    if history is None:
        return None
    if policy.predictive is not None:
        quantile, seasonality_s = policy.predictive.quantile, policy.predictive.seasonality_s
    elif policy.slo is not None:
        quantile, seasonality_s = policy.slo.forecast_quantile, policy.slo.seasonality_s
    else:
        return None
    from autoscaler.forecast import refit_phase_s, refresh_fit

    horizon_s, _ = horizon(policy, observation)
    return refresh_fit(
        fit, history, now_s=now, horizon_s=horizon_s, quantile=quantile, seasonality_s=seasonality_s,
        phase_s=refit_phase_s(policy.key),
    )  # fmt: skip


def load_time_quantile(samples: Iterable[float], quantile: float) -> float | None:
    """The ``quantile`` of measured load times (nearest rank), None before any replica became ready."""
    ordered = sorted(samples)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]
