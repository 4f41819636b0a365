"""Warm start for forecasts: read ``historyDays`` of a policy's demand signal from Prometheus with range
queries, so that forecasts work right after a restart (the issue's item 6).

The per-target PromQL is the same one the signals edge uses for a single target
(:func:`autoscaler.signals.promql.target_query`, or the policy's own ``query:`` template); the series it
returns are summed per timestamp into the target's total, like the live fleet aggregation of a
sum-type preset. Long windows are read in chunks (Prometheus caps a range query at 11,000 points).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from autoscaler.policy.model import ScalingPolicy
from autoscaler.presets import PRESETS
from autoscaler.prometheus.client import PrometheusClient
from autoscaler.prometheus.errors import PrometheusError
from autoscaler.prometheus.ranges import summed_range
from autoscaler.signals.promql import render_custom, target_query

__all__ = ["HistorySource", "PrometheusHistory"]

log = logging.getLogger("autoscaler.history")


class HistorySource(Protocol):
    async def demand_history(self, policy: ScalingPolicy, *, start_s: float, end_s: float, step_s: float) -> Any: ...


class PrometheusHistory:
    def __init__(self, client: PrometheusClient, *, window: str = "1m") -> None:
        self.client = client
        self.window = window

    def query_for(self, policy: ScalingPolicy) -> str:
        assert policy.predictive is not None
        spec = policy.metric(policy.predictive.metric)
        if spec.source.preset is not None:
            return target_query(PRESETS[spec.source.preset], policy=policy, spec=spec, window=self.window)
        assert spec.source.query is not None
        return render_custom(spec.source.query, policy=policy, match_labels=spec.source.match_labels)

    async def demand_history(self, policy: ScalingPolicy, *, start_s: float, end_s: float, step_s: float) -> Any:
        from autoscaler.forecast import DemandHistory

        if policy.predictive is None:
            return None
        expr = self.query_for(policy)
        try:
            totals = await summed_range(
                self.client, expr, start_s=start_s, end_s=end_s, step_s=step_s, context=f"warm start of {policy.key}"
            )
        except PrometheusError as exc:
            log.warning("warm start failed; forecasts start cold", extra={"policy": policy.key, "error": str(exc)})
            return None
        if not totals:
            return None
        times = sorted(totals)
        return DemandHistory.from_samples(times, [totals[t] for t in times], step_s, start_s=start_s)
