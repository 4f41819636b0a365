"""Partial is unavailable: a target's value counts only when every pod that should report did.

Why. A total (or an average) over the pods that happen to report is not the target's total. When 2 of
3 Ready pods stop exposing their queue, the sum over the third reads as a third of the load, and an
``AverageValue`` target scales down by two thirds within a tick. The core's promise is "never scale
down while a metric is unavailable", so a partial total has to *be* unavailable: the core then holds.

The rule, per (policy, metric), applied to the per-pod answer of the fleet query (:class:`TargetSeries`):

* a pod **reports** when its newest raw sample is fresh (within the staleness bound), it has at least
  one value, and every value is finite and >= 0 (:func:`~autoscaler.signals.aggregate.broken_sample`:
  a negative, NaN or infinite sample is broken data, never load);
* the pods that **must** report are the target's Ready pods, from the Kubernetes pods list (the HPA's
  own pod set), passed in by :func:`covered`. Only Ready pods whose names the target's controller
  could have generated count (:func:`~autoscaler.signals.targets.pod_belongs`): the signals can never
  match any other pod. When the Ready pods are not known (:meth:`FleetSignals.for_policy` alone, e.g.
  the ``signals`` command), every pod of the target that appears in the answer at all must report:
  a stale pod, a pod with no value yet or a pod with broken values then makes the reading partial;
* all of them report: the aggregate over the reporting pods (a reporting pod that is not Ready, e.g.
  one starting up, still counts, as before);
* some do not: **unavailable**, with the reason ``nan`` when one of them sends broken values, ``stale``
  when they are all stale, ``missing`` otherwise, and e.g. "1 of 3 ready pods report (no series:
  chat-x, chat-y)" in the detail, which the core puts in the decision.

Hold, not fill. The HPA's missing-pods rule (``calcPlainMetricReplicas``) fills missing pods at the
target when the others ask for a scale-down and at 0 when they ask for a scale-up. We take the
scale-down half further, to its safe limit: we **hold** (unavailable) rather than fill at the target,
because filling still scales down on what the reporting pods say (1 of 6 pods idle reads 6 -> 5), and
a pod that stopped reporting is more often an overloaded or broken pod than an idle one.

The scale-up half is kept, when the Ready pods are known: for a total (a ``sum`` preset: a queue, a
running count, a token rate), the sum over the reporting pods is a lower bound of the true total
(missing pods at 0; every value is >= 0). When that lower bound *alone* makes the core propose more
replicas than the target has (the core's own replica calculator decides, tolerance included), it is
passed on, marked "lower bound" in its detail: the target needs at least that many, so scaling up to
it is safe, and a scale-down from it is impossible. Averages, quantiles and ratios of a subset are no
bound either way: they always hold.

Nothing here raises: :func:`covered` turns any unexpected failure into an ``error`` reading for that
metric only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum

from autoscaler.core.hpa import Tolerances, propose_average_value, propose_value
from autoscaler.core.model import MetricReading, Unavailable
from autoscaler.core.policy import MetricSpec, ScalingPolicy, TargetType
from autoscaler.core.quantity import to_milli
from autoscaler.presets import Aggregation, Preset, SignalKind
from autoscaler.signals.aggregate import PodSample, aggregate, broken_sample
from autoscaler.signals.targets import pod_belongs

__all__ = ["PodReport", "PolicyReadings", "TargetSeries", "assess", "covered", "reporting_pods"]

log = logging.getLogger("autoscaler.signals")

_NAMES_SHOWN = 3


@dataclass(frozen=True, slots=True)
class PodReport:
    """What the fleet query said about one pod of a target, for one metric."""

    samples: tuple[PodSample, ...]
    """The pod's samples that match the metric's ``matchLabels`` (all of them when it has none)."""
    has_values: bool
    """Whether the pod has any sample of the preset at all (before label matching): False for a pod that
    only has the raw series' timestamp, e.g. a counter with a single sample in the rate window."""
    newest_s: float | None
    """The newest raw-sample timestamp of the pod (None: unknown, counted as fresh)."""


@dataclass(frozen=True, slots=True)
class TargetSeries:
    """One (policy, metric)'s per-pod answer, kept so the reading can be re-judged against the Ready pods."""

    preset: Preset
    pods: Mapping[str, PodReport]
    now_s: float
    staleness_s: float
    summed: tuple[PodSample, ...] | None = None
    """When set: the samples of exactly the reporting pods (:func:`reporting_pods`), already summed (histogram
    buckets summed per owner inside Prometheus, :mod:`autoscaler.signals.owners`); the pods' own reports then
    carry no samples and serve to judge coverage only. The reporting pods do not depend on the Ready pods,
    so re-judging against those (:func:`covered`) aggregates the same samples."""


class _Pod(str, Enum):
    OK = "ok"
    STALE = "stale"
    BROKEN = "broken"
    NO_VALUE = "no value yet"
    ABSENT = "no series"


def _judge(report: PodReport, *, now_s: float, staleness_s: float) -> tuple[_Pod, str]:
    if report.newest_s is not None and not now_s - report.newest_s <= staleness_s:
        return _Pod.STALE, f"{now_s - report.newest_s:.0f} s old"
    for sample in report.samples:
        why = broken_sample(sample)
        if why is not None:
            return _Pod.BROKEN, why
    if not report.has_values:
        return _Pod.NO_VALUE, ""
    return _Pod.OK, ""


def reporting_pods(series: TargetSeries) -> list[str]:
    """The pods of ``series`` that report (fresh, with values, none broken): whose samples are aggregated."""
    now, bound = series.now_s, series.staleness_s
    return [pod for pod, report in series.pods.items() if _judge(report, now_s=now, staleness_s=bound)[0] is _Pod.OK]


def _describe(problems: Mapping[str, tuple[_Pod, str]], staleness_s: float) -> str:
    groups: dict[_Pod, list[str]] = {}
    for pod, (kind, note) in sorted(problems.items()):
        groups.setdefault(kind, []).append(note if kind is _Pod.BROKEN else f"{pod} {note}" if note else pod)
    parts = []
    for kind in (_Pod.ABSENT, _Pod.STALE, _Pod.BROKEN, _Pod.NO_VALUE):
        names = groups.get(kind)
        if not names:
            continue
        shown = "; ".join(names[:_NAMES_SHOWN]) if kind is _Pod.BROKEN else ", ".join(names[:_NAMES_SHOWN])
        more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
        bound = f" (bound {staleness_s:g} s)" if kind is _Pod.STALE else ""
        parts.append(f"{kind.value}{bound}: {shown}{more}")
    return "; ".join(parts)


def _reason(problems: Mapping[str, tuple[_Pod, str]]) -> Unavailable:
    kinds = {kind for kind, _ in problems.values()}
    if _Pod.BROKEN in kinds:
        return Unavailable.NAN
    if kinds == {_Pod.STALE}:
        return Unavailable.STALE
    return Unavailable.MISSING


def _lower_bound(
    value: float,
    spec: MetricSpec,
    policy: ScalingPolicy,
    *,
    ready_count: int,
    spec_replicas: int,
    status_replicas: int | None,
) -> bool:
    """Whether ``value`` (a lower bound of the target's total) alone makes the core propose a scale-up."""
    if spec_replicas <= 0 or not math.isfinite(value) or value < 0:
        return False  # at zero, the wake step decides; it has no Ready pods to miss anyway
    status = spec_replicas if status_replicas is None else status_replicas
    tolerances = Tolerances(policy.behavior.scale_up.tolerance, policy.behavior.scale_down.tolerance)
    milli = to_milli(value)
    if spec.target.type is TargetType.AVERAGE_VALUE:
        proposal = propose_average_value(
            total_milli=milli, target_milli=spec.target.milli, status_replicas=status, tolerances=tolerances
        )
    else:
        proposal = propose_value(
            value_milli=milli,
            target_milli=spec.target.milli,
            spec_replicas=spec_replicas,
            ready_replicas=ready_count,
            tolerances=tolerances,
        )
    return proposal > max(spec_replicas, status)


def assess(
    series: TargetSeries,
    *,
    policy: ScalingPolicy,
    spec: MetricSpec,
    ready: Collection[str] | None = None,
    spec_replicas: int | None = None,
    status_replicas: int | None = None,
) -> MetricReading:
    """The metric's reading under the coverage rule (see the module doc).

    ``ready``: the target's Ready pod names from Kubernetes (None: unknown; then every pod seen in the
    answer must report). ``spec_replicas``/``status_replicas``: the scale subresource, needed only for
    the lower-bound scale-up exception (without them a partial reading is always unavailable).
    """
    now, bound = series.now_s, series.staleness_s
    judged = {pod: _judge(report, now_s=now, staleness_s=bound) for pod, report in series.pods.items()}
    reporting = [pod for pod, (kind, _) in judged.items() if kind is _Pod.OK]
    if ready is None:
        if not judged:
            return MetricReading.missing(Unavailable.MISSING, "no series for the target's pods")
        expected = set(judged)
        if not reporting and all(kind is _Pod.STALE for kind, _ in judged.values()):
            ages = (now - stamp for pod in judged if (stamp := series.pods[pod].newest_s) is not None)
            oldest = min(ages, default=math.inf)
            return MetricReading.missing(
                Unavailable.STALE,
                f"newest sample is {oldest:.0f} s old (bound {bound:g} s) on all {len(judged)} pods",
            )
        if not reporting and all(kind is _Pod.NO_VALUE for kind, _ in judged.values()):
            return MetricReading.missing(
                Unavailable.MISSING, "pods report but no value yet (a rate needs two samples in the window)"
            )
        who = "pods"
    else:
        expected = {pod for pod in ready if pod_belongs(policy.target, pod)}
        who = "ready pods"
    absent = (_Pod.ABSENT, "")
    problems = {pod: judged.get(pod, absent) for pod in expected if judged.get(pod, absent)[0] is not _Pod.OK}
    if series.summed is not None:
        samples = list(series.summed)
    else:
        samples = [sample for pod in reporting for sample in series.pods[pod].samples]
    if not problems:
        if not reporting:
            return MetricReading.missing(Unavailable.MISSING, "no fresh series for the target's pods")
        return aggregate(series.preset, samples)
    present = len(expected) - len(problems)
    detail = f"{present} of {len(expected)} {who} report ({_describe(problems, bound)})"
    preset = series.preset
    if (
        ready is not None
        and spec_replicas is not None
        and spec in policy.metrics  # an SLO input proposes nothing itself: no "lower bound" exception
        and preset.aggregation is Aggregation.SUM
        and preset.kind in (SignalKind.GAUGE, SignalKind.RATE)
        and samples
    ):
        partial = aggregate(preset, samples)
        if partial.value is not None and _lower_bound(
            partial.value,
            spec,
            policy,
            ready_count=len(ready),
            spec_replicas=spec_replicas,
            status_replicas=status_replicas,
        ):
            return MetricReading(
                partial.value, None, f"lower bound, missing pods counted as 0 (scale-up only): {detail}"
            )
    if present:
        detail = f"{detail}: a partial total is unavailable, so no scale-down from it"
    return MetricReading.missing(_reason(problems), detail)


class PolicyReadings(Mapping[str, MetricReading]):
    """One policy's readings (a plain mapping for every caller), carrying the per-pod answers they came
    from so that :func:`covered` can re-judge them against the target's Ready pods."""

    __slots__ = ("_readings", "series")

    def __init__(self, readings: Mapping[str, MetricReading], series: Mapping[str, TargetSeries]) -> None:
        self._readings = readings
        self.series = series

    def __getitem__(self, name: str) -> MetricReading:
        return self._readings[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._readings)

    def __len__(self) -> int:
        return len(self._readings)

    def __repr__(self) -> str:
        return f"PolicyReadings({dict(self._readings)!r})"


def covered(
    policy: ScalingPolicy,
    readings: Mapping[str, MetricReading],
    *,
    ready_pods: Collection[str] | None,
    spec_replicas: int,
    status_replicas: int | None = None,
) -> dict[str, MetricReading]:
    """``readings`` re-judged against the target's Ready pods (names, from the Kubernetes pods list).

    Readings that do not come from :meth:`FleetSignals.for_policy` (custom queries, scripted sources)
    and any call with ``ready_pods=None`` (not known) are returned as they are: those are already judged
    conservatively, against the pods seen in the answer. Never raises.
    """
    out = dict(readings)
    if ready_pods is None or not isinstance(readings, PolicyReadings):
        return out
    for spec in policy.signals:
        series = readings.series.get(spec.name)
        if series is None:
            continue
        try:
            out[spec.name] = assess(
                series,
                policy=policy,
                spec=spec,
                ready=ready_pods,
                spec_replicas=spec_replicas,
                status_replicas=status_replicas,
            )
        except Exception as exc:  # never let one metric's defect fail the target's tick
            log.exception("coverage check failed", extra={"policy": policy.key, "metric": spec.name})
            out[spec.name] = MetricReading.missing(
                Unavailable.ERROR, f"coverage check failed: {type(exc).__name__}: {exc}"
            )
    return out
