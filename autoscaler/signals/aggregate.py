"""Pure aggregation of per-pod samples into one value per target, shared verbatim with the simulator.

No IO, no clock: the time is an argument. The controller feeds these functions what Prometheus
returned for a target's pods; the offline simulator feeds them the per-pod samples it simulates, so
what is simulated is what runs.

Input shape: a sequence of :class:`PodSample`, all for ONE target and ONE preset at one instant.

* GAUGE presets: one sample per pod (or per GPU / MIG instance for DCGM), ``value`` = the gauge;
* RATE presets: one sample per pod, ``value`` = the counter's per-second rate;
* HISTOGRAM presets: one sample per pod and bucket, ``le`` = the bucket's upper bound (``math.inf``
  for ``+Inf``), ``value`` = the bucket's rate (cumulative, as Prometheus buckets are);
* RATIO presets: per pod a sample with ``part=Part.VALUE`` (numerator rate) and one with
  ``part=Part.DENOMINATOR``.

Freshness is separate (:func:`fresh_pods`): pass each pod's newest raw-sample timestamp, and only
the samples of fresh pods are aggregated (a deleted pod's lingering series must not count).

Results are :class:`~autoscaler.core.model.MetricReading`: a value, or unavailable with a reason.
Nothing here ever turns "no data" into 0: an empty input is ``missing``; a NaN, infinite or negative
sample anywhere makes the target ``nan`` (silently dropping one pod would under-count its load). Every
preset measures a non-negative quantity (a queue, a rate, a fraction, a latency), so a negative value
is broken data, never load: summed in, a queue of -100 per pod would read as "idle" and scale down.
The arithmetic cannot raise: a total that overflows (two pods at 1e308) is ``nan`` with the reason,
never an ``OverflowError`` that would take the whole tick down; so is a value beyond what the HPA's
arithmetic can hold (:data:`MAX_VALUE`: int64 milli-units), which would overflow the core's ``to_milli``.

Whether the samples cover every pod that should report is decided one level up
(:mod:`autoscaler.signals.coverage`): these functions aggregate exactly what they are given. The one
defined zero of a per-request signal: when the target's fresh pods report their histograms (or
ratio counters) and *no request* finished in the window, latency and per-request time read 0 - an
idle target has no latency pressure, and "unavailable" would pin it at its size forever.

The quantile is Prometheus's ``histogram_quantile`` (``promql/quantile.go``, ``bucketQuantile`` as of
2.42: sort by bound, +Inf bucket required, equal bounds coalesced, counts forced monotonic, linear
interpolation, lowest bucket starting at 0, the second-highest bound when the rank falls in +Inf),
applied to the buckets summed over the target's pods, i.e. what
``histogram_quantile(q, sum by (le) (rate(x_bucket[w])))`` gives for the same pods.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from autoscaler.core.model import MetricReading, Unavailable
from autoscaler.presets import Aggregation, Preset, SignalKind

__all__ = [
    "MAX_VALUE",
    "Freshness",
    "Part",
    "PodSample",
    "aggregate",
    "broken_sample",
    "bucket_quantile",
    "fresh_pods",
    "read_target",
    "safe_sum",
    "sum_buckets",
]


MAX_VALUE = 9.2e15
"""The largest value read as load: the HPA reads values as int64 milli-units (< 9.22e18 milli)."""


class Part(str, Enum):
    VALUE = "value"
    DENOMINATOR = "den"


@dataclass(frozen=True, slots=True)
class PodSample:
    """One per-pod (per-GPU, per-bucket) value at one instant."""

    pod: str
    value: float
    le: float | None = None
    part: Part = Part.VALUE


@dataclass(frozen=True, slots=True)
class Freshness:
    """Which pods' newest samples are within the staleness bound, and the age of the stale ones."""

    fresh: frozenset[str]
    stale_age_s: Mapping[str, float]


def fresh_pods(newest_s: Mapping[str, float], *, now_s: float, staleness_s: float) -> Freshness:
    """Split pods by the age of their newest raw sample (``now_s - newest``) against ``staleness_s``."""
    fresh = frozenset(pod for pod, ts in newest_s.items() if now_s - ts <= staleness_s)
    stale = {pod: now_s - ts for pod, ts in newest_s.items() if pod not in fresh}
    return Freshness(fresh, stale)


def safe_sum(values: Iterable[float]) -> float | None:
    """``math.fsum`` that never raises: None when the exact sum overflows or is not finite."""
    try:
        total = math.fsum(values)
    except (OverflowError, ValueError):  # "intermediate overflow in fsum", or -inf + inf
        return None
    return total if math.isfinite(total) else None


def broken_sample(sample: PodSample) -> str | None:
    """Why ``sample`` is broken data (NaN, infinite or negative), or None when it is usable."""
    if math.isfinite(sample.value) and sample.value >= 0:
        return None
    where = f" (le={sample.le:g})" if sample.le is not None else ""
    kind = "a negative value is broken data, never load" if sample.value < 0 else "not a number"
    return f"pod {sample.pod} reports {sample.value}{where}: {kind}"


def sum_buckets(samples: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """``(le, count)`` pairs from several pods summed per ``le``, sorted by ``le`` (``sum by (le)``)."""
    totals: dict[float, float] = {}
    for le, count in samples:
        totals[le] = totals.get(le, 0.0) + count
    return sorted(totals.items())


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus's ``bucketQuantile`` over cumulative ``(upper_bound, count)`` buckets."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if not buckets:
        return math.nan
    ordered = sorted(buckets, key=lambda b: b[0])  # stable, like Go's sort for distinct bounds
    if not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return math.nan
    coalesced: list[list[float]] = []
    for bound, count in ordered:
        if coalesced and coalesced[-1][0] == bound:
            coalesced[-1][1] += count
        else:
            coalesced.append([bound, count])
    highest = -math.inf
    for bucket in coalesced:  # ensureMonotonic
        if bucket[1] > highest:
            highest = bucket[1]
        elif bucket[1] < highest:
            bucket[1] = highest
    if len(coalesced) < 2:
        return math.nan
    observations = coalesced[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    counts = [c for _, c in coalesced[:-1]]
    b = bisect_left(counts, rank)  # sort.Search(len-1, count >= rank) over a non-decreasing list
    if b == len(coalesced) - 1:
        return coalesced[-2][0]
    if b == 0 and coalesced[0][0] <= 0:
        return coalesced[0][0]
    bucket_start, bucket_end, count = 0.0, coalesced[b][0], coalesced[b][1]
    if b > 0:
        bucket_start = coalesced[b - 1][0]
        count -= coalesced[b - 1][1]
        rank -= coalesced[b - 1][1]
    return bucket_start + (bucket_end - bucket_start) * (rank / count) if count else bucket_start + math.nan


def aggregate(preset: Preset, samples: Sequence[PodSample]) -> MetricReading:
    """One value for the target from its pods' samples, per the preset's kind and aggregation."""
    if not samples:
        return MetricReading.missing(Unavailable.MISSING, "no series for the target's pods")
    for sample in samples:
        why = broken_sample(sample)
        if why is not None:
            return MetricReading.missing(Unavailable.NAN, why)
    overflow = MetricReading.missing(Unavailable.NAN, "the total over the target's pods overflows (not finite)")
    kind = preset.kind
    if kind is SignalKind.HISTOGRAM:
        buckets = sum_buckets((s.le, s.value) for s in samples if s.le is not None)
        if not buckets:
            return MetricReading.missing(Unavailable.MISSING, "no histogram buckets")
        if not all(math.isfinite(count) for _, count in buckets):
            return overflow
        value = bucket_quantile(preset.quantile if preset.quantile is not None else 0.95, buckets)
        if math.isnan(value):
            if buckets[-1][0] == math.inf and buckets[-1][1] == 0:
                # Fresh pods report, and no request finished in the window: idle, no latency pressure.
                # Reading it as unavailable would pin an idle target at its size ("never scale down
                # while a metric is unavailable"); reading it as 0 lets the other metrics decide.
                return MetricReading.of(0.0)
            return MetricReading.missing(Unavailable.NAN, "quantile undefined: no +Inf bucket")
    elif kind is SignalKind.RATIO:
        if not any(s.part is Part.DENOMINATOR for s in samples):
            return MetricReading.missing(Unavailable.MISSING, "no denominator series")
        numerator = safe_sum(s.value for s in samples if s.part is Part.VALUE)
        denominator = safe_sum(s.value for s in samples if s.part is Part.DENOMINATOR)
        if numerator is None or denominator is None:
            return overflow
        if denominator == 0:
            return MetricReading.of(0.0)  # idle: no request in the window, so no per-request pressure
        value = numerator / denominator
    else:
        total = safe_sum(s.value for s in samples)
        if total is None:
            return overflow
        value = total if preset.aggregation is Aggregation.SUM else total / len(samples)
    scaled = value * preset.scale
    if not math.isfinite(scaled) or abs(scaled) > MAX_VALUE:
        return MetricReading.missing(
            Unavailable.NAN, f"the value {scaled:g} is beyond what can be read as load (max {MAX_VALUE:g})"
        )
    return MetricReading.of(scaled)


def read_target(
    preset: Preset,
    samples: Sequence[PodSample],
    newest_s: Mapping[str, float],
    *,
    now_s: float,
    staleness_s: float,
) -> MetricReading:
    """:func:`aggregate` over the fresh pods only; stale when every reporting pod is stale.

    This is the pure "fresh subset" aggregate (the simulator's view, where every pod reports). The live
    reader judges coverage first (:func:`autoscaler.signals.coverage.assess`): when some pods that
    should report do not, a fresh subset is a partial total, and the reading is unavailable instead.

    ``newest_s`` maps each pod of the target that has the preset's raw series to its newest sample
    timestamp. A pod with samples but no timestamp is treated as fresh (the caller could not tell).
    """
    if not newest_s and not samples:
        return MetricReading.missing(Unavailable.MISSING, "no series for the target's pods")
    freshness = fresh_pods(newest_s, now_s=now_s, staleness_s=staleness_s)
    if newest_s and not freshness.fresh:
        oldest = min(freshness.stale_age_s.values())
        return MetricReading.missing(
            Unavailable.STALE,
            f"newest sample is {oldest:.0f} s old (bound {staleness_s:g} s) on all {len(newest_s)} pods",
        )
    kept = [s for s in samples if s.pod in freshness.fresh or s.pod not in newest_s]
    if not kept:
        return MetricReading.missing(
            Unavailable.MISSING, "pods report but no value yet (a rate needs two samples in the window)"
        )
    return aggregate(preset, kept)
