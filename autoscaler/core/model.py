"""Values that flow through the decision core: observations in, state through, decisions out.

All are frozen and slotted. ``ScalerState`` is what the HPA keeps in controller memory
(recommendations and scale events per target) plus our failure counter, hoisted into a value so the
core stays a pure function and the service can persist it across restarts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoscaler.core.policy import ScalingPolicy
    from autoscaler.core.slo import CapacityEstimate
    from autoscaler.forecast import DemandHistory, Forecast, ForecastFit

__all__ = [
    "Decision",
    "MetricReading",
    "Observation",
    "Published",
    "Reason",
    "Recommendation",
    "ScaleEvent",
    "ScalerState",
    "StepTrace",
    "Unavailable",
]


class Unavailable(str, Enum):
    """Why a metric has no usable value this tick. None of these ever reads as zero load."""

    MISSING = "missing"  # no series / no sample
    NAN = "nan"  # NaN or +-Inf
    STALE = "stale"  # newest sample older than the staleness bound
    ERROR = "error"  # the query failed


@dataclass(frozen=True, slots=True)
class MetricReading:
    """One metric's value this tick, or why there is none."""

    value: float | None
    unavailable: Unavailable | None = None
    detail: str = ""

    @staticmethod
    def of(value: float) -> MetricReading:
        if not math.isfinite(value):
            return MetricReading(None, Unavailable.NAN, f"value is {value}")
        return MetricReading(float(value))

    @staticmethod
    def missing(reason: Unavailable = Unavailable.MISSING, detail: str = "") -> MetricReading:
        return MetricReading(None, reason, detail)

    @property
    def available(self) -> bool:
        return self.value is not None


@dataclass(frozen=True, slots=True)
class Observation:
    """What the edges saw for one target at one tick.

    ``spec_replicas`` is the scale subresource's ``spec.replicas`` (the HPA's "current"),
    ``status_replicas`` its ``status.replicas`` (used by AverageValue targets), and
    ``ready_replicas`` the pods that are Running and Ready (used by Value and Utilization targets).
    A metric absent from ``metrics`` is unavailable (missing).
    """

    spec_replicas: int
    ready_replicas: int
    metrics: Mapping[str, MetricReading]
    status_replicas: int | None = None
    demand_history: DemandHistory | None = None
    """The predictive metric's recent history (including this tick's reading), kept by the driver."""
    load_time_s: float | None = None
    """Measured high quantile of the target's pod creation -> Ready time, when known."""
    capacity: CapacityEstimate | None = None
    """An SLO policy's learned per-replica capacity, updated with this tick's readings."""
    forecast_fit: ForecastFit | None = None
    """The demand forecast's fit (``autoscaler.forecast.fit``), refreshed every few minutes by ``step``."""

    @property
    def current_status_replicas(self) -> int:
        return self.spec_replicas if self.status_replicas is None else self.status_replicas

    def reading(self, name: str) -> MetricReading:
        return self.metrics.get(name) or MetricReading.missing(detail="not observed")


@dataclass(frozen=True, slots=True)
class Recommendation:
    """An un-stabilized recommendation, as the HPA records one per sync."""

    timestamp_s: float
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A scale change that was written, kept for the behavior policies' rate limits."""

    timestamp_s: float
    change: int  # always positive; the direction is the list it is in


@dataclass(frozen=True, slots=True)
class ScalerState:
    """Everything the core remembers between ticks of one target.

    ``initialized`` is False only before the first tick: the HPA records the target's current replica
    count as its first recommendation (``recordInitialRecommendation``), which is what keeps a freshly
    started autoscaler from scaling down inside the first stabilization window.
    """

    initialized: bool = False
    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()
    consecutive_failures: int = 0

    def to_json(self) -> dict[str, Any]:
        """Compact JSON form, for persistence (an annotation or a ConfigMap key)."""
        return {
            "v": 1,
            "init": self.initialized,
            "recs": [[r.timestamp_s, r.replicas] for r in self.recommendations],
            "up": [[e.timestamp_s, e.change] for e in self.scale_up_events],
            "down": [[e.timestamp_s, e.change] for e in self.scale_down_events],
            "fail": self.consecutive_failures,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> ScalerState:
        if data.get("v") != 1:
            raise ValueError(f"unknown ScalerState version {data.get('v')!r}")
        return ScalerState(
            initialized=bool(data["init"]),
            recommendations=tuple(Recommendation(float(t), int(r)) for t, r in data["recs"]),
            scale_up_events=tuple(ScaleEvent(float(t), int(c)) for t, c in data["up"]),
            scale_down_events=tuple(ScaleEvent(float(t), int(c)) for t, c in data["down"]),
            consecutive_failures=int(data["fail"]),
        )


class Reason(str, Enum):
    """Machine reasons, named after the HPA's condition reasons where one exists."""

    SCALE_UP = "ScaleUp"
    SCALE_DOWN = "ScaleDown"
    WITHIN_TOLERANCE = "DesiredWithinRange"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"
    TOO_FEW_REPLICAS = "TooFewReplicas"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    PREDICTIVE = "PredictiveScaleUp"
    WAKE = "WakeFromZero"
    SCALING_DISABLED = "ScalingDisabled"
    METRICS_UNAVAILABLE = "FailedGetExternalMetric"
    FALLBACK = "Fallback"
    PAUSED = "Paused"  # set by the service, not the core: writes frozen by the policy's annotations


@dataclass(frozen=True, slots=True)
class StepTrace:
    """What one named step of the pipeline did: its input and output replica counts and why."""

    step: str
    before: int
    after: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The core's answer for one target at one tick.

    ``proposals`` maps every metric to its own proposal, or None when it was unavailable;
    ``unavailable`` maps the unavailable ones to their reason. ``steps`` is the pipeline trace.
    """

    desired_replicas: int
    current_replicas: int
    reason: Reason
    message: str
    proposals: Mapping[str, int | None] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)
    steps: tuple[StepTrace, ...] = ()
    forecast: Forecast | None = None
    horizon_s: float | None = None
    predictive_replicas: int | None = None
    """What the forecast alone asks for (its quantile over the capacity, plus spares), before behavior."""
    placeholder_pods: int | None = None
    """How many placeholder (balloon) pods should hold nodes, when the policy has a placeholder."""

    @property
    def changes_scale(self) -> bool:
        return self.desired_replicas != self.current_replicas


@dataclass(frozen=True, slots=True)
class Published:
    """A policy's latest decision with the readings it was made from: what the external-metrics API
    serves (and KEDA or an HPA then acts on)."""

    policy: ScalingPolicy
    decision: Decision
    readings: Mapping[str, MetricReading]
    time_s: float
