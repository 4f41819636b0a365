"""Per-pod samples -> one target's :class:`MetricReading`: the step the simulator shares with the live service.

:func:`to_reading` is the one seam. It turns the simulated per-pod arrays into the
:class:`autoscaler.signals.aggregate.PodSample` values the live service builds from Prometheus
results, and calls :func:`autoscaler.signals.aggregate.aggregate`, the same pure function the
controller uses: sums, averages and Prometheus's ``histogram_quantile`` over the summed buckets.
Values are in the exporters' raw units (ratios 0-1 where the exporter exports ratios); the preset's
``scale`` is applied by the shared aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autoscaler.core import MetricReading, Unavailable
from autoscaler.presets import PRESETS
from autoscaler.signals.aggregate import PodSample, aggregate

__all__ = ["PodSamples", "to_reading"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class PodSamples:
    """One signal's per-pod values at a tick: ``values[i]`` for pod ``pods[i]``, or bucket rates.

    ``bucket_rates`` is pods x buckets, *non-cumulative*, the last column the +Inf bucket; ``bounds``
    are the finite upper bounds (``le``).
    """

    pods: IntArray
    values: FloatArray | None = None
    bucket_rates: FloatArray | None = None
    bounds: Sequence[float] = ()
    detail: str = ""


def to_reading(preset: str, samples: PodSamples) -> MetricReading:
    """THE seam: simulated per-pod samples -> the target's reading, through the live aggregation."""
    names = [f"pod-{int(p)}" for p in samples.pods]
    if samples.bucket_rates is not None:
        les = [*samples.bounds, math.inf]
        cumulative = np.cumsum(samples.bucket_rates, axis=1).tolist()
        pod_samples = [
            PodSample(name, value, le=le)
            for name, row in zip(names, cumulative, strict=True)
            for le, value in zip(les, row, strict=True)
        ]
    elif samples.values is not None:
        pod_samples = [PodSample(name, value) for name, value in zip(names, samples.values.tolist(), strict=True)]
    else:
        pod_samples = []
    if not pod_samples:
        return MetricReading.missing(Unavailable.MISSING, samples.detail or "no series")
    return aggregate(PRESETS[preset], pod_samples)
