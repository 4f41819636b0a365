"""Backtest: replay the recorded history of a policy's signals through the core and compare what it
would have decided with what the target actually did.

Open loop: history cannot tell what would have happened had the target been scaled differently, so
each tick's observation carries the replicas the target *really* had, and the scale events recorded
in the state are the target's real changes (the behavior limits then reflect what really happened).
The decisions come from the same :func:`autoscaler.core.decide` as the live service, on the same
per-target PromQL as the forecast warm start (:func:`autoscaler.signals.promql.target_expr`), and
the same history keeping for predictive policies.

Replica history comes from kube-state-metrics (``kube_deployment_spec_replicas`` and
``..._status_replicas_ready``, or the StatefulSet series), else from our own
``inference_autoscaler_current_replicas``, else from ``--replicas-query``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from autoscaler.core import MetricReading, Unavailable
from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.step import TargetReading, TargetState, note_scale_change, step
from autoscaler.errors import InputError
from autoscaler.presets import PRESETS, SignalKind
from autoscaler.signals.promql import quote, target_expr

__all__ = ["BacktestError", "BacktestTick", "RangeReader", "Series", "backtest", "replica_queries", "summarize"]

Series = Mapping[float, float]  # timestamp -> value


class BacktestError(InputError):
    """Not enough history to backtest (the message says what is missing)."""


class RangeReader(Protocol):
    async def series(self, expr: str, *, start_s: float, end_s: float, step_s: float) -> Series: ...


@dataclass(frozen=True, slots=True)
class BacktestTick:
    time_s: float
    actual: int
    ready: int
    desired: int
    reason: str
    message: str
    metrics: Mapping[str, float | None] = field(default_factory=dict)


def replica_queries(policy: ScalingPolicy) -> list[tuple[str, str]]:
    """Candidate (spec, ready) replica queries for the target, best first."""
    ns, name, kind = quote(policy.namespace), quote(policy.target.name), policy.target.kind
    out = []
    if kind == "Deployment":
        sel = f"{{namespace={ns},deployment={name}}}"
        out.append((f"max(kube_deployment_spec_replicas{sel})", f"max(kube_deployment_status_replicas_ready{sel})"))
    elif kind == "StatefulSet":
        sel = f"{{namespace={ns},statefulset={name}}}"
        out.append((f"max(kube_statefulset_replicas{sel})", f"max(kube_statefulset_status_replicas_ready{sel})"))
    ours = f"{{namespace={ns},policy={quote(policy.name)}}}"
    out.append((f"max(inference_autoscaler_current_replicas{ours})", f"max(inference_autoscaler_ready_replicas{ours})"))
    return out


def _reading(policy: ScalingPolicy, name: str, value: float | None) -> MetricReading:
    if value is None:
        return MetricReading.missing(Unavailable.MISSING, "no sample at this step")
    if math.isnan(value):
        preset = PRESETS.get(policy.metric(name).source.preset or "")
        if preset is not None and preset.kind in (SignalKind.HISTOGRAM, SignalKind.RATIO):
            return MetricReading.of(0.0)  # no request in the window: idle, as the live aggregation reads it
        return MetricReading.missing(Unavailable.NAN, "NaN in history")
    return MetricReading.of(value)


async def backtest(
    reader: RangeReader,
    policy: ScalingPolicy,
    *,
    start_s: float,
    end_s: float,
    step_s: float | None = None,
    window: str = "1m",
    replicas_query: str | None = None,
    ready_query: str | None = None,
) -> list[BacktestTick]:
    interval = float(step_s or policy.interval_s)
    if end_s <= start_s:
        raise BacktestError(f"--to ({end_s}) must be after --from ({start_s})")
    values: dict[str, Series] = {}
    for spec in policy.signals:
        expr = target_expr(policy, spec, window=window)
        values[spec.name] = await reader.series(expr, start_s=start_s, end_s=end_s, step_s=interval)
    candidates = [(replicas_query, ready_query or replicas_query)] if replicas_query else replica_queries(policy)
    actual: Series = {}
    ready: Series = {}
    tried = []
    for spec_q, ready_q in candidates:
        assert spec_q is not None and ready_q is not None
        tried.append(spec_q)
        actual = await reader.series(spec_q, start_s=start_s, end_s=end_s, step_s=interval)
        if actual:
            ready = await reader.series(ready_q, start_s=start_s, end_s=end_s, step_s=interval)
            break
    if not actual:
        raise BacktestError(
            f"no replica history for {policy.target.kind}/{policy.target.name} between the two times "
            f"(tried: {'; '.join(tried)}); pass --replicas-query"
        )
    state = TargetState()
    previous: int | None = None
    ticks: list[BacktestTick] = []
    for t in sorted(actual):
        spec_replicas = round(actual[t])
        if previous is not None:
            # the target really changed since the last tick: the behavior limits count that change
            state = note_scale_change(state, previous=previous, new=spec_replicas, policy=policy, now=t)
        previous = spec_replicas
        raw = {name: series.get(t) for name, series in values.items()}
        ready_now = ready.get(t)
        reading = TargetReading(
            spec_replicas=spec_replicas,
            ready_replicas=spec_replicas if ready_now is None or math.isnan(ready_now) else round(ready_now),
            metrics={name: _reading(policy, name, v) for name, v in raw.items()},
            status_replicas=None,  # history has no status.replicas series; spec stands in (TargetReading)
        )
        decision, state = step(reading, state, policy, t, assume_applied=False)
        ticks.append(
            BacktestTick(
                t,
                spec_replicas,
                reading.ready_replicas,
                decision.desired_replicas,
                decision.reason.value,
                decision.message,
                raw,
            )
        )
    return ticks


def summarize(ticks: Sequence[BacktestTick], step_s: float) -> dict[str, Any]:
    if not ticks:
        return {"ticks": 0}
    diffs = [t.desired - t.actual for t in ticks]
    reasons: dict[str, int] = {}
    for tick in ticks:
        reasons[tick.reason] = reasons.get(tick.reason, 0) + 1
    return {
        "ticks": len(ticks),
        "from": ticks[0].time_s,
        "to": ticks[-1].time_s,
        "agreement": round(sum(d == 0 for d in diffs) / len(diffs), 4),
        "ticksAbove": sum(d > 0 for d in diffs),
        "ticksBelow": sum(d < 0 for d in diffs),
        "meanAbsDifference": round(sum(abs(d) for d in diffs) / len(diffs), 4),
        "maxAbove": max(max(diffs), 0),
        "maxBelow": max(-min(diffs), 0),
        "replicaHoursActual": round(sum(t.actual for t in ticks) * step_s / 3600, 3),
        "replicaHoursRecommended": round(sum(t.desired for t in ticks) * step_s / 3600, 3),
        "reasons": dict(sorted(reasons.items())),
    }
