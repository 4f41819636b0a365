"""The per-tick fleet reader: every policy's metrics from a bounded number of queries.

Per tick it issues ONE query per preset in use (per rate window) for all targets together
(:func:`~autoscaler.signals.promql.fleet_query`), runs them concurrently, indexes the answer by
namespace and pod, and aggregates per target in Python with the pure functions of
:mod:`autoscaler.signals.aggregate`. The number of preset queries depends on the presets in use,
never on the number of targets. Custom ``query:`` metrics cannot be batched (each is its own PromQL):
they cost one query each, run with bounded concurrency.

Failures are per query: a failed preset query makes that preset's metrics ``error`` for every policy
that uses it (the message names the preset and the error); other presets are unaffected. Nothing is
ever read as zero because it is missing. Every unavailable reading is counted by reason
(:attr:`FleetSignals.unavailable`, and cumulatively in :attr:`FleetReader.unavailable_total`).

Isolation: :meth:`FleetReader.read` never raises for bad data. A query error, a malformed answer
(``data: null``), a sum that overflows (one pod at 1e308), a policy whose labels cannot be rendered, or
a defect in the aggregation of one target makes *that* metric unavailable for the policies that use
it, with the reason; every other policy's readings are unaffected. (A read that raised would fail
every policy in the tick, and push policies that never touched the broken query to their fallback.)

Coverage: each preset reading is judged by :mod:`autoscaler.signals.coverage` ("partial is
unavailable"): against the pods seen in the answer here, and, once the caller knows the target's
Ready pods, against those (:func:`autoscaler.signals.coverage.covered`).

Histograms (:attr:`SignalSettings.histogram_owner_sums`, on by default) are read with their buckets summed
per owner inside Prometheus (:func:`~autoscaler.signals.promql.owner_query`, judged by
:mod:`autoscaler.signals.owners`): the answer then grows with targets, not with pods x buckets. A target for
which the owner sums are not exactly its reporting pods' (a stale or broken pod in its group, a pod of
another target sharing the group) is read again in the same tick one series per pod and bucket, with a
``pod=~`` selector naming only its pods (:data:`FALLBACK_POD_CHARS` of names per query at most).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from autoscaler.core.model import MetricReading, Unavailable
from autoscaler.core.policy import MetricSpec, ScalingPolicy
from autoscaler.presets import PRESETS, Preset, SignalKind
from autoscaler.prometheus.client import InstantResult
from autoscaler.prometheus.errors import PrometheusError
from autoscaler.signals.aggregate import MAX_VALUE, Part, PodSample
from autoscaler.signals.coverage import PodReport, PolicyReadings, TargetSeries, assess
from autoscaler.signals.owners import index_owner_answer, owner_series
from autoscaler.signals.promql import (
    FIELD_LABEL,
    OWNER_LABEL,
    PromQLTemplateError,
    fleet_query,
    owner_query,
    render_custom,
)
from autoscaler.signals.targets import labels_match, pod_belongs

__all__ = ["FALLBACK_POD_CHARS", "FleetReader", "FleetSignals", "QueryClient", "SignalSettings"]

log = logging.getLogger("autoscaler.signals")
_Parsed = TypeVar("_Parsed")

_LABEL_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")

FALLBACK_POD_CHARS = 16_000
"""The most characters of pod names one bounded per-pod read names (a longer list is split into queries)."""


class QueryClient(Protocol):
    """The seam to Prometheus: :class:`autoscaler.prometheus.PrometheusClient` satisfies it."""

    async def query(self, expr: str, *, time_s: float | None = None, context: str = "") -> InstantResult: ...


@dataclass(frozen=True, slots=True)
class SignalSettings:
    """How signals are read."""

    scrape_interval_s: float = 15.0
    """The scrape interval of the exporters (Prometheus's global default is 1 m; 15 s is common)."""
    staleness_s: float | None = None
    """Samples older than this are stale; default 3 x ``scrape_interval_s``."""
    window: str = "1m"
    """The rate window of counter and histogram presets (>= 4 x the scrape interval is the usual advice)."""
    custom_concurrency: int = 8
    """Custom ``query:`` metrics in flight at once."""
    histogram_owner_sums: bool = True
    """Sum histogram buckets per owner inside Prometheus (see the module doc); False reads one series per pod
    and bucket for every target, as before."""

    @property
    def staleness_bound_s(self) -> float:
        return self.staleness_s if self.staleness_s is not None else 3 * self.scrape_interval_s


@dataclass(frozen=True, slots=True)
class FleetSignals:
    """One tick's readings: ``readings[policy.key][metric name]``, plus what it cost."""

    readings: Mapping[str, Mapping[str, MetricReading]]
    queries: tuple[str, ...]
    """Every PromQL query issued this tick (preset queries first; bounded per-pod re-reads last)."""
    unavailable: Mapping[Unavailable, int] = field(default_factory=dict)
    duration_s: float = 0.0
    series: Mapping[str, Mapping[str, TargetSeries]] = field(default_factory=dict)
    """``series[policy.key][metric name]``: the per-pod answers the preset readings came from (for histograms
    summed per owner, the per-pod facts and the summed buckets)."""

    def for_policy(self, policy: ScalingPolicy) -> Mapping[str, MetricReading]:
        """The policy's readings, judged against the pods seen in Prometheus's answer. Pass them to
        :func:`autoscaler.signals.coverage.covered` with the target's Ready pods to judge them against
        those (the mapping carries what that needs)."""
        return PolicyReadings(self.readings.get(policy.key, {}), self.series.get(policy.key, {}))


@dataclass(slots=True)
class _Pod:
    """What the fleet query said about one pod."""

    samples: list[PodSample] = field(default_factory=list)
    labels: list[Mapping[str, str]] = field(default_factory=list)  # per sample, for match_labels
    newest_s: float | None = None


def _index(result: InstantResult, kind: SignalKind) -> dict[str, dict[str, _Pod]]:
    """namespace -> pod -> samples and newest raw timestamp."""
    pods: dict[str, dict[str, _Pod]] = defaultdict(dict)
    for sample in result.samples:
        labels = sample.labels
        namespace, pod_name = labels.get("namespace", ""), labels.get("pod", "")
        pod = pods[namespace].get(pod_name)
        if pod is None:
            pod = pods[namespace][pod_name] = _Pod()
        field_ = labels.get(FIELD_LABEL)
        if field_ == "ts":
            pod.newest_s = sample.value if pod.newest_s is None else max(pod.newest_s, sample.value)
            continue
        le: float | None = None
        if kind is SignalKind.HISTOGRAM:
            try:
                le = float(labels.get("le", ""))
            except ValueError:
                continue  # Prometheus's histogram_quantile skips unparsable bounds too
        part = Part.DENOMINATOR if field_ == "den" else Part.VALUE
        pod.samples.append(PodSample(pod_name, sample.value, le, part))
        pod.labels.append(labels)
    return pods


class FleetReader:
    """Reads every policy's signals each tick. ``clock`` gives the evaluation time (wall clock by default)."""

    def __init__(
        self,
        client: QueryClient,
        settings: SignalSettings = SignalSettings(),
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.settings = settings
        self._clock = clock
        self.unavailable_total: Counter[tuple[str, Unavailable]] = Counter()
        """Cumulative unavailable readings by (preset or "query", reason)."""

    async def read(self, policies: Sequence[ScalingPolicy], *, now_s: float | None = None) -> FleetSignals:
        started = time.perf_counter()
        now = self._clock() if now_s is None else now_s
        uses: dict[str, list[tuple[ScalingPolicy, MetricSpec]]] = defaultdict(list)
        custom: list[tuple[ScalingPolicy, MetricSpec]] = []
        for policy in policies:
            for spec in policy.signals:
                if spec.source.preset is not None:
                    uses[spec.source.preset].append((policy, spec))
                else:
                    custom.append((policy, spec))

        readings: dict[str, dict[str, MetricReading]] = {policy.key: {} for policy in policies}
        series: dict[str, dict[str, TargetSeries]] = {policy.key: {} for policy in policies}
        queries: list[str] = []
        jobs = []
        for name, all_users in sorted(uses.items()):
            preset = PRESETS.get(name)
            if preset is None:  # the loader rejects these; guard against hand-built policies
                for policy, spec in all_users:
                    readings[policy.key][spec.name] = MetricReading.missing(Unavailable.ERROR, f"unknown preset {name}")
                continue
            users = []
            for policy, spec in all_users:  # one policy's bad label name must not break the shared query
                bad = [key for key in spec.source.match_labels if not _label_name(key)]
                if bad:
                    readings[policy.key][spec.name] = MetricReading.missing(
                        Unavailable.ERROR, f"policy {policy.key} metric {spec.name}: {bad[0]!r} is not a label name"
                    )
                else:
                    users.append((policy, spec))
            if not users:
                continue
            labels = {key for _, spec in users for key in spec.source.match_labels}
            by_owner = self._by_owner(preset, labels)
            try:
                build = owner_query if by_owner else fleet_query
                expr = build(
                    preset, namespaces={p.namespace for p, _ in users}, window=self.settings.window, group_labels=labels
                )
            except Exception as error:  # a defect: this preset's metrics fail, the others are read
                log.exception("fleet query for preset %s could not be built", name)
                _fail(users, readings, f"preset {name}: query not built: {type(error).__name__}: {error}")
                continue
            queries.append(expr)
            if by_owner:
                jobs.append(self._read_owners(preset, expr, users, now, readings, series, queries))
            else:
                jobs.append(self._read_preset(preset, expr, users, now, readings, series))
        semaphore = asyncio.Semaphore(max(1, self.settings.custom_concurrency))
        for policy, spec in custom:
            jobs.append(self._read_custom(policy, spec, now, readings, queries, semaphore))
        for outcome in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(outcome, Exception):  # each job guards itself; "not read" below covers the rest
                log.error("signal read job failed: %s: %s", type(outcome).__name__, outcome)

        counts: Counter[Unavailable] = Counter()
        for policy in policies:
            for spec in policy.signals:
                reading = readings[policy.key].setdefault(
                    spec.name, MetricReading.missing(Unavailable.ERROR, "not read")
                )
                if reading.unavailable is not None:
                    counts[reading.unavailable] += 1
                    self.unavailable_total[(spec.source.preset or "query", reading.unavailable)] += 1
        return FleetSignals(readings, tuple(queries), dict(counts), time.perf_counter() - started, series)

    def _by_owner(self, preset: Preset, labels: Iterable[str]) -> bool:
        """Whether ``preset`` is read with its buckets summed per owner (labels: the users' matchLabels keys)."""
        return (
            self.settings.histogram_owner_sums
            and preset.kind is SignalKind.HISTOGRAM
            and not {OWNER_LABEL, FIELD_LABEL} & set(labels)
        )

    async def _query(
        self,
        preset: Preset,
        expr: str,
        users: Sequence[tuple[ScalingPolicy, MetricSpec]],
        now: float,
        readings: dict[str, dict[str, MetricReading]],
        parse: Callable[[InstantResult], _Parsed],
    ) -> _Parsed | None:
        """One preset's query and its answer parsed; on any failure (the query, or an answer nobody
        foresaw) its users' readings say why and None is returned: only this query's metrics are lost."""
        context = f"preset {preset.name} (used by {_names(users)})"
        try:
            return parse(await self._client.query(expr, time_s=now, context=context))
        except PrometheusError as error:
            _fail(users, readings, str(error))
        except Exception as error:  # an answer nobody foresaw, or a defect: this query's metrics only
            log.exception("reading %s failed", context)
            _fail(users, readings, f"{context}: {type(error).__name__}: {error}")
        return None

    async def _read_owners(
        self,
        preset: Preset,
        expr: str,
        users: Sequence[tuple[ScalingPolicy, MetricSpec]],
        now: float,
        readings: dict[str, dict[str, MetricReading]],
        series: dict[str, dict[str, TargetSeries]],
        queries: list[str],
    ) -> None:
        """A histogram preset from its owner sums; the targets they do not fit are re-read per pod."""
        answer = await self._query(preset, expr, users, now, readings, index_owner_answer)
        if answer is None:
            return
        owners = {namespace: _owner_index(pods) for namespace, pods in answer.pods.items()}
        staleness = self.settings.staleness_bound_s
        again: list[tuple[ScalingPolicy, MetricSpec, list[str]]] = []
        for policy, spec in users:
            try:
                names = list(_candidates(policy, answer.pods.get(policy.namespace, {}), owners.get(policy.namespace)))
                target = owner_series(preset, policy, spec, answer, names, now_s=now, staleness_s=staleness)
                if target is None:
                    again.append((policy, spec, [name for name in names if pod_belongs(policy.target, name)]))
                    continue
                series[policy.key][spec.name] = target
                readings[policy.key][spec.name] = assess(target, policy=policy, spec=spec)
            except Exception as error:  # one target's defect never fails the others
                log.exception("aggregating %s for %s failed", preset.name, policy.key)
                readings[policy.key][spec.name] = MetricReading.missing(
                    Unavailable.ERROR, f"policy {policy.key} metric {spec.name}: {type(error).__name__}: {error}"
                )
        await self._read_again(preset, again, now, readings, series, queries)

    async def _read_again(
        self,
        preset: Preset,
        again: Sequence[tuple[ScalingPolicy, MetricSpec, list[str]]],
        now: float,
        readings: dict[str, dict[str, MetricReading]],
        series: dict[str, dict[str, TargetSeries]],
        queries: list[str],
    ) -> None:
        """The per-pod read of ``again``'s targets, naming only their pods, a few thousand names per query."""
        jobs = []
        for chunk in _chunks(again, FALLBACK_POD_CHARS):
            users = [(policy, spec) for policy, spec, _ in chunk]
            try:
                expr = fleet_query(
                    preset, namespaces={p.namespace for p, _ in users}, window=self.settings.window,
                    group_labels={key for _, spec in users for key in spec.source.match_labels},
                    pods={name for *_, names in chunk for name in names},
                )
            except Exception as error:  # a defect: these targets' metrics fail, the others are read
                log.exception("per-pod query for preset %s could not be built", preset.name)
                _fail(users, readings, f"preset {preset.name}: query not built: {type(error).__name__}: {error}")
                continue
            queries.append(expr)
            jobs.append(self._read_preset(preset, expr, users, now, readings, series))
        await asyncio.gather(*jobs)

    async def _read_preset(
        self,
        preset: Preset,
        expr: str,
        users: Sequence[tuple[ScalingPolicy, MetricSpec]],
        now: float,
        readings: dict[str, dict[str, MetricReading]],
        series: dict[str, dict[str, TargetSeries]],
    ) -> None:
        index = await self._query(preset, expr, users, now, readings, lambda result: _index(result, preset.kind))
        if index is None:
            return
        owners = {namespace: _owner_index(pods) for namespace, pods in index.items()}
        staleness = self.settings.staleness_bound_s
        for policy, spec in users:
            try:
                target = _target_series(preset, policy, spec, index, owners, now=now, staleness_s=staleness)
                series[policy.key][spec.name] = target
                readings[policy.key][spec.name] = assess(target, policy=policy, spec=spec)
            except Exception as error:  # one target's defect never fails the others
                log.exception("aggregating %s for %s failed", preset.name, policy.key)
                readings[policy.key][spec.name] = MetricReading.missing(
                    Unavailable.ERROR, f"policy {policy.key} metric {spec.name}: {type(error).__name__}: {error}"
                )

    async def _read_custom(
        self,
        policy: ScalingPolicy,
        spec: MetricSpec,
        now: float,
        readings: dict[str, dict[str, MetricReading]],
        queries: list[str],
        semaphore: asyncio.Semaphore,
    ) -> None:
        context = f"policy {policy.key} metric {spec.name}"
        try:
            expr = render_custom(spec.source.query or "", policy=policy, match_labels=spec.source.match_labels)
        except PromQLTemplateError as error:
            readings[policy.key][spec.name] = MetricReading.missing(Unavailable.ERROR, f"{context}: {error}")
            return
        except Exception as error:  # a defect: this metric only
            log.exception("rendering %s failed", context)
            readings[policy.key][spec.name] = MetricReading.missing(
                Unavailable.ERROR, f"{context}: {type(error).__name__}: {error}"
            )
            return
        queries.append(expr)
        async with semaphore:
            try:
                result = await self._client.query(expr, time_s=now, context=context)
                reading = _single_value(result)
            except PrometheusError as error:
                reading = MetricReading.missing(Unavailable.ERROR, str(error))
            except Exception as error:  # an answer nobody foresaw, or a defect: this metric only
                log.exception("reading %s failed", context)
                reading = MetricReading.missing(Unavailable.ERROR, f"{context}: {type(error).__name__}: {error}")
        readings[policy.key][spec.name] = reading


_BY_OWNER_NAME = frozenset({"Deployment", "Rollout", "StatefulSet", "LeaderWorkerSet"})
_LONG_POD_NAME = 63  # generated names are cut to 58 characters + 5 random ones


def _owner_index(pods: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Pods by the owner names their shape implies (``<owner>-<hash>-<x>``, ``<owner>-<n>``), and the long ones.

    A lookup then costs O(pods of the target) instead of O(pods of the namespace): with 1000 targets
    this is what keeps a tick's Python side in milliseconds. Every candidate is still checked exactly.
    """
    by_owner: dict[str, list[str]] = defaultdict(list)
    long_names = []
    for name in pods:
        for owner in {name.rsplit("-", 1)[0], name.rsplit("-", 2)[0]}:
            by_owner[owner].append(name)
        if len(name) == _LONG_POD_NAME:
            long_names.append(name)
    return by_owner, long_names


def _candidates(
    policy: ScalingPolicy, pods: Mapping[str, object], owners: tuple[dict[str, list[str]], list[str]] | None
) -> Iterable[str]:
    if owners is None or policy.target.kind not in _BY_OWNER_NAME:
        return pods.keys()  # KServe and unknown kinds: scan the namespace
    by_owner, long_names = owners
    return dict.fromkeys([*by_owner.get(policy.target.name, ()), *long_names]).keys()


def _chunks(
    again: Sequence[tuple[ScalingPolicy, MetricSpec, list[str]]], limit: int
) -> list[list[tuple[ScalingPolicy, MetricSpec, list[str]]]]:
    """``again`` cut into runs whose pod names total at most ``limit`` characters (a target is never split)."""
    chunks: list[list[tuple[ScalingPolicy, MetricSpec, list[str]]]] = []
    size = limit
    for item in again:
        length = sum(len(name) + 1 for name in item[2])
        if size + length > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += length
    return chunks


def _label_name(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and all(c in _LABEL_NAME_CHARS for c in name)


def _fail(
    users: Iterable[tuple[ScalingPolicy, MetricSpec]], readings: dict[str, dict[str, MetricReading]], why: str
) -> None:
    for policy, spec in users:
        readings[policy.key][spec.name] = MetricReading.missing(Unavailable.ERROR, why)


def _target_series(
    preset: Preset,
    policy: ScalingPolicy,
    spec: MetricSpec,
    index: Mapping[str, Mapping[str, _Pod]],
    owners: Mapping[str, tuple[dict[str, list[str]], list[str]]],
    *,
    now: float,
    staleness_s: float,
) -> TargetSeries:
    """The pods of ``policy``'s target in the answer, with the samples that match ``spec``'s labels."""
    in_namespace = index.get(policy.namespace, {})
    wanted = spec.source.match_labels
    pods: dict[str, PodReport] = {}
    for pod_name in _candidates(policy, in_namespace, owners.get(policy.namespace)):
        pod = in_namespace[pod_name]
        if not pod_belongs(policy.target, pod_name):
            continue
        if wanted:
            pairs = zip(pod.samples, pod.labels, strict=True)
            kept = tuple(sample for sample, labels in pairs if labels_match(labels, wanted))
        else:
            kept = tuple(pod.samples)  # no matchers: every sample (the common, hot case)
        pods[pod_name] = PodReport(kept, bool(pod.samples), pod.newest_s)
    return TargetSeries(preset, pods, now, staleness_s)


def _single_value(result: InstantResult) -> MetricReading:
    """A custom query must give a scalar or at most one series; empty is missing, never 0; a negative,
    NaN or infinite value is broken data, never load."""
    if not result.samples:
        return MetricReading.missing(Unavailable.MISSING, "the query returned no series")
    if len(result.samples) > 1:
        return MetricReading.missing(
            Unavailable.ERROR, f"the query returned {len(result.samples)} series; aggregate it to one (e.g. sum(...))"
        )
    value = result.samples[0].value
    if not math.isfinite(value):
        return MetricReading.missing(Unavailable.NAN, f"the query returned {value}")
    if value < 0:
        return MetricReading.missing(
            Unavailable.NAN, f"the query returned {value}: a negative value is broken data, never load"
        )
    if value > MAX_VALUE:
        return MetricReading.missing(
            Unavailable.NAN, f"the query returned {value:g}, beyond what can be read as load (max {MAX_VALUE:g})"
        )
    return MetricReading.of(value)


def _names(users: Iterable[tuple[ScalingPolicy, MetricSpec]], limit: int = 3) -> str:
    keys = sorted({f"{p.key}/{s.name}" for p, s in users})
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
