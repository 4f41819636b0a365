"""Small builders for policies and observations in core tests (no YAML involved)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autoscaler.core import MetricReading, Observation
from autoscaler.core.policy import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    Fallback,
    FallbackBehavior,
    MetricSource,
    MetricSpec,
    MetricTarget,
    RuleType,
    ScalingPolicy,
    ScalingRule,
    ScalingRules,
    SelectPolicy,
    TargetRef,
    TargetType,
)

TYPES = {"AverageValue": TargetType.AVERAGE_VALUE, "Value": TargetType.VALUE, "Utilization": TargetType.UTILIZATION}


def metric(name: str, kind: str, target: float) -> MetricSpec:
    return MetricSpec(
        name=name,
        source=MetricSource(query="x"),
        target=MetricTarget(TYPES[kind], round(target * 1000), str(target)),
    )


def rules(
    window: int | None = None,
    select: str = "Max",
    policies: Sequence[tuple[str, int, int]] | None = None,
    tolerance: float = 0.1,
    *,
    up: bool,
) -> ScalingRules:
    base = DEFAULT_SCALE_UP if up else DEFAULT_SCALE_DOWN
    return ScalingRules(
        stabilization_window_s=base.stabilization_window_s if window is None else window,
        select_policy=SelectPolicy(select),
        policies=base.policies if policies is None else tuple(ScalingRule(RuleType(t), v, p) for t, v, p in policies),
        tolerance=tolerance,
    )


def policy(
    *metrics: MetricSpec,
    min_replicas: int = 1,
    max_replicas: int = 100,
    behavior: Behavior | None = None,
    fallback: Fallback | None = None,
) -> ScalingPolicy:
    return ScalingPolicy(
        name="p",
        namespace="ns",
        target=TargetRef("apps/v1", "Deployment", "d"),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metrics=tuple(metrics),
        behavior=behavior or Behavior(),
        fallback=fallback or Fallback(failure_threshold=3, behavior=FallbackBehavior.HOLD),
    )


def obs(
    replicas: int, values: Mapping[str, float | None], *, ready: int | None = None, status: int | None = None
) -> Observation:
    readings = {k: (MetricReading.of(v) if v is not None else MetricReading.missing()) for k, v in values.items()}
    return Observation(
        spec_replicas=replicas,
        ready_replicas=replicas if ready is None else ready,
        metrics=readings,
        status_replicas=status,
    )
