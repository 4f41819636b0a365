"""Histogram buckets summed per owner inside Prometheus, used only where that equals the per-pod reading.

Why. A HISTOGRAM preset read per pod returns one series per pod and bucket (36k series, 4.6 MB at 1,000
targets of 2 vLLM pods). Summed per owner inside Prometheus (:func:`~autoscaler.signals.promql.owner_query`)
the answer is one series per owner and bucket plus two per pod, so it grows with targets, not with pods
x buckets. The catch is the coverage rule (:mod:`autoscaler.signals.coverage`): a target's quantile is
computed from the buckets of its *reporting* pods only (fresh, with values, none broken), and every pod that
should report must. A sum made in Prometheus must therefore be over exactly those pods, or not be used.

How the answer is judged, per (policy, metric), from what the owner query returns:

* per pod: its ``+Inf`` bucket rate (present exactly when the pod's buckets are in its owner's sums: the
  query joins the buckets to these pods) with its owner stem, and its newest ``_count`` timestamp;
* per (owner, ``matchLabels`` labels, ``le``): the bucket rates summed over that owner's pods.

The target's pods are found as before (:func:`~autoscaler.signals.targets.pod_belongs`). The sums are used
when, and only when, (1) none of its pods with buckets has a broken ``+Inf`` rate (NaN, infinite, negative),
(2) every pod in each owner group that its reporting pods fall in is one of its reporting pods (no stale
pod, no broken pod, no other target's pod in the sum: a name that merely looks like this target's pod, a
StatefulSet and a Deployment of one name, lands in a shared group, which is then not used), and (3) every
summed bucket it uses is finite and >= 0. Then the summed buckets are the per-pod buckets of exactly the
reporting pods, added in another order: the quantile is the per-pod path's, to the last bit for owners of
one or two pods (two-term sums do not depend on order) and to float rounding beyond. Otherwise
:func:`owner_series` returns None and the reader reads that target's pods one series per bucket again
(a bounded ``pod=~`` read), so every unusual case is judged exactly as before.

What is not the same. A pod is "with values" when its ``+Inf`` bucket has a rate (per pod path: any bucket).
A pod exposing buckets without ``+Inf`` (not a valid histogram) is therefore judged "no value yet" and its
buckets are in no sum: a Ready pod like that makes the reading unavailable (before: its buckets counted).
Broken values in a bucket below ``+Inf`` show through the sums as NaN/Inf (condition 3), except a negative
rate (only a counter that is itself negative can have one) hidden by other pods' positive rates for the
same bucket: that lowers the summed cumulative count, which can only raise the quantile compared to any
non-negative count in its place (a pointwise lower CDF has pointwise higher quantiles), i.e. towards more
replicas, never a scale-down. Per pod, that pod would have been "broken".

Pure: no IO; :class:`autoscaler.signals.fleet.FleetReader` issues the queries.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from autoscaler.core.policy import MetricSpec, ScalingPolicy
from autoscaler.presets import Preset
from autoscaler.prometheus.client import InstantResult
from autoscaler.signals.aggregate import PodSample
from autoscaler.signals.coverage import PodReport, TargetSeries, reporting_pods
from autoscaler.signals.promql import FIELD_LABEL, OWNER_LABEL
from autoscaler.signals.targets import labels_match, pod_belongs

__all__ = ["OwnerAnswer", "OwnerPod", "index_owner_answer", "owner_series"]


@dataclass(slots=True)
class OwnerPod:
    """What the owner query said about one pod."""

    owner: str | None = None
    inf_rate: float | None = None
    """The rate of the pod's ``+Inf`` bucket: present exactly when its buckets are in its owner's sums."""
    newest_s: float | None = None


@dataclass(frozen=True, slots=True)
class OwnerSum:
    """One summed bucket of one owner: its labels (for ``matchLabels``), bound and summed rate."""

    labels: Mapping[str, str]
    le: float
    value: float


@dataclass(slots=True)
class OwnerAnswer:
    """An owner query's answer, indexed."""

    pods: dict[str, dict[str, OwnerPod]] = field(default_factory=lambda: defaultdict(dict))
    """namespace -> pod -> what was said about it."""
    members: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    """(namespace, owner) -> the pods whose buckets are in that owner's sums."""
    sums: dict[tuple[str, str], list[OwnerSum]] = field(default_factory=lambda: defaultdict(list))
    """(namespace, owner) -> its summed buckets."""


def index_owner_answer(result: InstantResult) -> OwnerAnswer:
    """Sort an owner query's series into per-pod facts, group members and summed buckets."""
    answer = OwnerAnswer()
    for sample in result.samples:
        labels = sample.labels
        namespace = labels.get("namespace", "")
        kind = labels.get(FIELD_LABEL)
        if kind is None:
            try:
                le = float(labels.get("le", ""))
            except ValueError:
                continue  # histogram_quantile and the per-pod path skip unparsable bounds too
            owner = labels.get(OWNER_LABEL, "")
            answer.sums[(namespace, owner)].append(OwnerSum(labels, le, sample.value))
            continue
        name = labels.get("pod", "")
        pod = answer.pods[namespace].get(name)
        if pod is None:
            pod = answer.pods[namespace][name] = OwnerPod()
        if kind == "ts":
            pod.newest_s = sample.value if pod.newest_s is None else max(pod.newest_s, sample.value)
        elif kind == "pods":
            pod.owner, pod.inf_rate = labels.get(OWNER_LABEL, ""), sample.value
            answer.members[(namespace, pod.owner)].add(name)
    return answer


def _usable(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def owner_series(
    preset: Preset,
    policy: ScalingPolicy,
    spec: MetricSpec,
    answer: OwnerAnswer,
    candidates: Iterable[str],
    *,
    now_s: float,
    staleness_s: float,
) -> TargetSeries | None:
    """``policy``'s target read from the owner sums, or None when they are not exactly its reporting pods'.

    ``candidates``: pod names of the policy's namespace in the answer that may be the target's (a superset;
    each is checked with :func:`pod_belongs`).
    """
    in_namespace = answer.pods.get(policy.namespace, {})
    reports: dict[str, PodReport] = {}
    for name in candidates:
        pod = in_namespace[name]
        if not pod_belongs(policy.target, name):
            continue
        if pod.inf_rate is not None and not _usable(pod.inf_rate):
            return None  # a broken pod: the per-pod read names the bucket, as before
        reports[name] = PodReport((), pod.inf_rate is not None, pod.newest_s)
    draft = TargetSeries(preset, reports, now_s, staleness_s)
    reporting = set(reporting_pods(draft))
    owners = sorted({in_namespace[name].owner or "" for name in reporting})
    for owner in owners:
        if not answer.members.get((policy.namespace, owner), set()) <= reporting:
            return None  # a stale pod, or a pod that is not the target's, is in this owner's sums
    wanted = spec.source.match_labels
    summed = []
    for owner in owners:
        for bucket in answer.sums.get((policy.namespace, owner), ()):
            if wanted and not labels_match(bucket.labels, wanted):
                continue
            if not _usable(bucket.value):
                return None  # some pod's bucket is NaN or infinite: the per-pod read says whose
            summed.append(PodSample(f"{owner} (owner sum)", bucket.value, bucket.le))
    return TargetSeries(preset, reports, now_s, staleness_s, summed=tuple(summed))
