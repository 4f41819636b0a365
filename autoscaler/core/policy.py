"""The typed policy model: what a team's ``ScalingPolicy`` file means once it has been validated.

These are frozen, slotted values. They live with the core because the core decides on them; the
loader (:mod:`autoscaler.policy.loader`, a layer above) is the only place that turns YAML into them,
so the core only ever sees these types, never raw dicts, and imports nothing from
:mod:`autoscaler.policy`. Field names are the Python spelling of the YAML ones, with units in the name
where the YAML has ``...Seconds``.

Defaults follow the Kubernetes HPA ``autoscaling/v2`` API as the API server fills them in when
``spec.behavior`` is set (see ``pkg/apis/autoscaling/v2/defaults.go``):

* scale up:   no stabilization window, ``selectPolicy: Max``, policies ``[Pods 4 per 15 s, Percent 100 per 15 s]``
* scale down: a 300 s stabilization window, ``selectPolicy: Max``, policies ``[Percent 100 per 15 s]``
* tolerance 0.1 in both directions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "DEFAULT_TOLERANCE",
    "PAUSE_ANNOTATIONS",
    "SLO_INPUT_TARGET",
    "Behavior",
    "ColdStart",
    "Fallback",
    "FallbackBehavior",
    "MetricSource",
    "MetricSpec",
    "MetricTarget",
    "Mode",
    "Pause",
    "PauseAnnotationError",
    "Placeholder",
    "Predictive",
    "RuleType",
    "ScalingPolicy",
    "ScalingRule",
    "ScalingRules",
    "SelectPolicy",
    "Slo",
    "SloObjective",
    "TargetRef",
    "TargetType",
    "Wake",
    "WarmPool",
    "parse_pause",
]

API_GROUP = "inference-autoscaler.io"
API_VERSION = f"{API_GROUP}/v1alpha1"

DEFAULT_TOLERANCE = 0.1
DEFAULT_SCALE_DOWN_WINDOW_S = 300


class Mode(str, Enum):
    """How the service acts on a decision."""

    PATCH = "patch"  # write the target's scale subresource
    EXTERNAL = "external"  # publish through external.metrics.k8s.io; an HPA acts
    SHADOW = "shadow"  # decide and report only


class TargetType(str, Enum):
    """How a metric's value is compared with its target (HPA ``MetricTarget.type``)."""

    AVERAGE_VALUE = "AverageValue"  # value is a total over the pods; target is per replica
    VALUE = "Value"  # value is compared as a whole; the ratio multiplies the ready replicas
    UTILIZATION = "Utilization"  # value is an average percentage over the target's GPUs


class SelectPolicy(str, Enum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class RuleType(str, Enum):
    PODS = "Pods"
    PERCENT = "Percent"


class FallbackBehavior(str, Enum):
    """What to do once signals have failed ``failureThreshold`` ticks in a row (KEDA's names)."""

    HOLD = "hold"  # keep the current replica count
    STATIC = "static"  # go to ``replicas``
    CURRENT_REPLICAS_IF_HIGHER = "currentReplicasIfHigher"  # max(current, replicas)
    CURRENT_REPLICAS_IF_LOWER = "currentReplicasIfLower"  # min(current, replicas)


@dataclass(frozen=True, slots=True)
class TargetRef:
    """The scaled object: anything with a scale subresource."""

    api_version: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class MetricSource:
    """Where a metric's value comes from: a named preset or a PromQL template, plus label matchers."""

    preset: str | None = None
    query: str | None = None
    match_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MetricTarget:
    """The metric's target, kept both as written and as the HPA reads it (milli-units, rounded up)."""

    type: TargetType
    milli: int
    text: str  # the value as written, for messages


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    source: MetricSource
    target: MetricTarget


@dataclass(frozen=True, slots=True)
class ScalingRule:
    """One HPA ``HPAScalingPolicy``: at most ``value`` pods (or percent) per ``period_s``."""

    type: RuleType
    value: int
    period_s: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """One direction of the HPA ``behavior`` block, with every default filled in."""

    stabilization_window_s: int
    select_policy: SelectPolicy
    policies: tuple[ScalingRule, ...]
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def longest_period_s(self) -> int:
        return max((rule.period_s for rule in self.policies), default=0)


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_s=0,
    select_policy=SelectPolicy.MAX,
    policies=(ScalingRule(RuleType.PODS, 4, 15), ScalingRule(RuleType.PERCENT, 100, 15)),
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_s=DEFAULT_SCALE_DOWN_WINDOW_S,
    select_policy=SelectPolicy.MAX,
    policies=(ScalingRule(RuleType.PERCENT, 100, 15),),
)


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True, slots=True)
class Fallback:
    """KEDA-style fallback; ``failure_threshold`` failing ticks are tolerated, the next one falls back."""

    failure_threshold: int = 3
    behavior: FallbackBehavior = FallbackBehavior.HOLD
    replicas: int | None = None


@dataclass(frozen=True, slots=True)
class ColdStart:
    """How long a new replica takes to be useful. Measured from pods unless overridden here."""

    load_time_s: float | None = None  # pod creation -> Ready; None: measured
    scheduling_delay_s: float = 0.0  # added to an overridden load time (a measured one includes it)
    load_time_quantile: float = 0.9  # the high quantile of measured load times that sets the horizon


@dataclass(frozen=True, slots=True)
class Predictive:
    """Forecast ``metric`` (a demand signal with an AverageValue target: the per-replica capacity) one
    horizon ahead and keep enough replicas for its ``quantile``."""

    metric: str
    quantile: float = 0.95
    seasonality_s: tuple[float, ...] = (86400.0, 604800.0)
    history_days: float = 7.0


@dataclass(frozen=True, slots=True)
class Placeholder:
    """A Deployment of low-priority pause pods that holds GPU nodes for the warm pool (balloon pattern)."""

    name: str
    pods_per_replica: int = 1


@dataclass(frozen=True, slots=True)
class WarmPool:
    """Spare replicas: ``min_spare`` always on top of the forecast; predictive headroom above the
    reactive proposal is capped at ``max_spare``; a placeholder reserves nodes up to ``max_spare``."""

    min_spare: int = 0
    max_spare: int = 0
    placeholder: Placeholder | None = None


PAUSED_ANNOTATION = "inference-autoscaler.io/paused"
PAUSED_REPLICAS_ANNOTATION = "inference-autoscaler.io/paused-replicas"
KEDA_PAUSE_ANNOTATIONS = {  # KEDA's names, accepted as they are
    "autoscaling.keda.sh/paused": PAUSED_ANNOTATION,
    "autoscaling.keda.sh/paused-replicas": PAUSED_REPLICAS_ANNOTATION,
}
PAUSE_ANNOTATIONS = frozenset({PAUSED_ANNOTATION, PAUSED_REPLICAS_ANNOTATION, *KEDA_PAUSE_ANNOTATIONS})
"""Every annotation :func:`parse_pause` reads (what a policy object or a cached target keeps)."""


@dataclass(frozen=True, slots=True)
class Pause:
    """Writes frozen by the policy's annotations: at the current count, or set once to ``replicas``.
    The core still decides (reported as what it would do); the service writes nothing else."""

    replicas: int | None = None


class PauseAnnotationError(ValueError):
    """A pause annotation whose value means nothing: ``key`` and ``value`` as written."""

    def __init__(self, key: str, value: str, message: str) -> None:
        super().__init__(f"annotation {key} = {value!r}: {message}")
        self.key, self.value, self.message = key, value, message


def parse_pause(annotations: Mapping[str, str]) -> Pause | None:
    """The pause that ``annotations`` ask for (ours or KEDA's names), on a policy or on a target:
    ``paused: "true"`` freezes writes, ``paused-replicas: "N"`` sets the target to N once and freezes it
    there; None when neither asks for a pause. A value that means nothing raises
    :class:`PauseAnnotationError` (the loader reports it; on a target the service holds, see the controller)."""
    given = {KEDA_PAUSE_ANNOTATIONS.get(key, key): (key, value) for key, value in annotations.items()}
    paused, count = given.get(PAUSED_ANNOTATION), given.get(PAUSED_REPLICAS_ANNOTATION)
    if paused is not None and paused[1].strip().lower() not in ("true", "false"):
        raise PauseAnnotationError(paused[0], paused[1], 'must be "true" or "false"')
    replicas = None
    if count is not None:
        text = count[1].strip()
        if not text.isdigit() or int(text) > 2**31 - 1:
            raise PauseAnnotationError(count[0], count[1], "must be a replica count (0..2^31-1)")
        replicas = int(text)
    if replicas is None and (paused is None or paused[1].strip().lower() != "true"):
        return None
    return Pause(replicas)


@dataclass(frozen=True, slots=True)
class Wake:
    """Scale to zero: the metric that exists at zero replicas (e.g. a gateway's queue) wakes the target."""

    metric: str


class SloObjective(str, Enum):
    """What latency the team's objective bounds."""

    TTFT = "ttft"  # time to first token
    E2E = "e2e"  # end-to-end request latency
    QUEUE = "queue"  # time spent waiting for a batch slot


SLO_INPUT_TARGET = MetricTarget(TargetType.VALUE, 0, "n/a")
"""The target of an SLO input: none. Inputs are read like metrics but propose nothing themselves."""


@dataclass(frozen=True, slots=True)
class Slo:
    """A latency objective (``percentile`` of ``objective`` <= ``bound_s``) and how to size for it.

    The core learns each target's per-replica capacity (requests in flight one replica serves while
    the objective holds) from ``running``, ``waiting`` and ``latency``, forecasts the in-flight demand
    over the load-time horizon, and sizes from demand, not from the backlog (:mod:`autoscaler.core.slo`).
    """

    objective: SloObjective
    percentile: float  # e.g. 95.0
    bound_s: float
    running: MetricSpec  # requests being served, summed over the target's pods
    waiting: MetricSpec  # requests queued for a slot, summed over the target's pods
    latency: MetricSpec  # the objective's signal (a histogram quantile)
    completions: MetricSpec  # completed requests/s: the mean time in service, by Little's law
    concurrency_prior: float | None = None
    """Requests in flight one replica serves within the objective, if the team knows it; learned anyway."""
    forecast_quantile: float = 0.9
    seasonality_s: tuple[float, ...] = (86400.0, 604800.0)
    history_days: float = 7.0

    @property
    def inputs(self) -> tuple[MetricSpec, ...]:
        return (self.running, self.waiting, self.latency, self.completions)

    def describe(self) -> str:
        return f"{self.objective.value} p{self.percentile:g} <= {self.bound_s:g}s"


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """A validated team policy. ``source`` is ``path:line`` of its document, for messages."""

    name: str
    namespace: str
    target: TargetRef
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    mode: Mode = Mode.PATCH
    interval_s: int = 15
    behavior: Behavior = Behavior()
    fallback: Fallback = Fallback()
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    cold_start: ColdStart = ColdStart()
    predictive: Predictive | None = None
    warm_pool: WarmPool | None = None
    wake: Wake | None = None
    slo: Slo | None = None
    pause: Pause | None = None
    generation: int | None = field(default=None, compare=False)
    """The API object's ``metadata.generation`` (for ``status.observedGeneration``); None for a file.
    Not compared: a generation bump with the same spec is the same policy (no retarget)."""

    @property
    def signals(self) -> tuple[MetricSpec, ...]:
        """Every signal read for this policy each tick: its metrics, then the SLO's inputs."""
        return self.metrics + (self.slo.inputs if self.slo is not None else ())

    @property
    def key(self) -> str:
        """``namespace/name``: how the service, the metrics API and reports name a policy."""
        return f"{self.namespace}/{self.name}"

    def metric(self, name: str) -> MetricSpec:
        for spec in self.signals:
            if spec.name == name:
                return spec
        raise KeyError(name)
