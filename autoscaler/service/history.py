"""Warm start for forecasts: read ``historyDays`` of a policy's demand from Prometheus with range
queries, so that forecasts work right after a restart.

The demand is what the core records each tick (:func:`autoscaler.core.step.observe`): a predictive
policy's demand metric, or an SLO policy's requests in flight to serve (running plus the share of the
backlog to drain, :func:`autoscaler.core.slo.demand`, computed here from the recorded running, waiting
and completions, so that history teaches the forecast the same value the ticks do). Each signal is
read with the per-target PromQL the backtest uses too (:func:`autoscaler.signals.promql.target_expr`);
the series it returns are summed per timestamp into the target's total, like the live fleet
aggregation of a sum-type preset. Long windows are read in chunks (Prometheus caps a range query at
11,000 points).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from autoscaler.core.policy import MetricSpec, ScalingPolicy
from autoscaler.core.slo import demand as slo_demand
from autoscaler.prometheus.errors import PrometheusError
from autoscaler.prometheus.ranges import RangeClient, summed_range
from autoscaler.signals.promql import target_expr

__all__ = ["HistorySource", "PrometheusHistory", "demand_series", "demand_signals", "history_days"]

log = logging.getLogger("autoscaler.history")


class HistorySource(Protocol):
    async def demand_history(self, policy: ScalingPolicy, *, start_s: float, end_s: float, step_s: float) -> Any: ...


def demand_signals(policy: ScalingPolicy) -> tuple[MetricSpec, ...]:
    """The signals whose history makes up ``policy``'s demand: the predictive metric, or an SLO's
    running, waiting and completions; none for a policy that forecasts nothing."""
    if policy.predictive is not None:
        return (policy.metric(policy.predictive.metric),)
    if policy.slo is not None:
        return (policy.slo.running, policy.slo.waiting, policy.slo.completions)
    return ()


def history_days(policy: ScalingPolicy) -> float:
    """How many days of demand ``policy`` keeps (its ``historyDays``); 0 for one that forecasts nothing."""
    if policy.predictive is not None:
        return policy.predictive.history_days
    if policy.slo is not None:
        return policy.slo.history_days
    return 0.0


def demand_series(policy: ScalingPolicy, series: Mapping[str, Mapping[float, float]]) -> dict[float, float]:
    """``timestamp -> demand`` from the recorded series of :func:`demand_signals` (by signal name).

    An SLO policy's demand exists where running and waiting were both recorded; completions only
    shorten the backlog share (without them the whole backlog counts, as on a live tick)."""
    if policy.predictive is not None:
        return dict(series[policy.predictive.metric])
    slo = policy.slo
    if slo is None:
        return {}
    running, waiting, completions = (series[spec.name] for spec in (slo.running, slo.waiting, slo.completions))
    out: dict[float, float] = {}
    for t in sorted(running.keys() & waiting.keys()):
        now = slo_demand(
            slo, running=running[t], waiting=waiting[t], completions=completions.get(t), interval_s=policy.interval_s
        )
        if now is not None:
            out[t] = now[0]
    return out


class PrometheusHistory:
    def __init__(self, client: RangeClient, *, window: str = "1m") -> None:
        self.client = client
        self.window = window

    def queries(self, policy: ScalingPolicy) -> dict[str, str]:
        """The range queries of ``policy``'s demand signals, by signal name."""
        return {spec.name: target_expr(policy, spec, window=self.window) for spec in demand_signals(policy)}

    async def demand_history(self, policy: ScalingPolicy, *, start_s: float, end_s: float, step_s: float) -> Any:
        from autoscaler.forecast.history import DemandHistory, history_points

        queries = self.queries(policy)
        if not queries:
            return None
        series: dict[str, dict[float, float]] = {}
        try:
            for name, expr in queries.items():
                series[name] = await summed_range(
                    self.client,
                    expr,
                    start_s=start_s,
                    end_s=end_s,
                    step_s=step_s,
                    context=f"warm start of {policy.key} metric {name}",
                )
        except PrometheusError as exc:
            log.warning("warm start failed; forecasts start cold", extra={"policy": policy.key, "error": str(exc)})
            return None
        totals = demand_series(policy, series)
        if not totals:
            return None
        times = sorted(totals)
        bound = history_points(history_days(policy), step_s)  # the policy's historyDays, as the ticks keep
        return DemandHistory.from_samples(times, [totals[t] for t in times], step_s, start_s=start_s, max_points=bound)
