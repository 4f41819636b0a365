"""The HPA's per-metric arithmetic, to the letter of ``replica_calculator.go``.

All values are integers in milli-units (``Quantity.MilliValue()``); ratios are float64, computed as
``float64(a) / float64(b)`` exactly like the Go code, so tolerance edges fall on the same side.
Go's float division by zero gives +Inf or NaN rather than raising; :func:`_div` reproduces that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MAX_INT32", "Tolerances", "propose_average_value", "propose_value"]

MAX_INT32 = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Per-direction tolerances (KEP-4951); ``within`` is inclusive on both sides like ``isWithin``."""

    scale_up: float = 0.1
    scale_down: float = 0.1

    def within(self, ratio: float) -> bool:
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


def _div(numerator: float, denominator: float) -> float:
    """IEEE-754 division as Go does it: x/0 is +-Inf, 0/0 is NaN."""
    if denominator == 0:
        if numerator == 0 or math.isnan(numerator):
            return math.nan
        return math.copysign(math.inf, numerator)
    return numerator / denominator


def _ceil_to_int32(value: float) -> int:
    """``min(int32(math.Ceil(v)), MaxInt32)``; NaN and negatives never reach here in practice."""
    if math.isnan(value):
        return 0
    if value >= MAX_INT32:
        return MAX_INT32
    return max(math.ceil(value), -MAX_INT32 - 1)


def propose_average_value(*, total_milli: int, target_milli: int, status_replicas: int, tolerances: Tolerances) -> int:
    """External metric, ``AverageValue`` target (``GetExternalPerPodMetricReplicas``).

    The ratio is taken against ``status.replicas`` and, inside tolerance, the proposal *is*
    ``status.replicas`` (not ``spec.replicas``). Outside it: ``ceil(total / target)``.
    """
    ratio = _div(float(total_milli), float(target_milli) * float(status_replicas))
    if tolerances.within(ratio):
        return status_replicas
    return _ceil_to_int32(_div(float(total_milli), float(target_milli)))


def propose_value(
    *, value_milli: int, target_milli: int, spec_replicas: int, ready_replicas: int, tolerances: Tolerances
) -> int:
    """External metric, ``Value`` target (``GetExternalMetricReplicas`` + ``getUsageRatioReplicaCount``).

    The ratio multiplies the *ready* pods, and inside tolerance the proposal is ``spec.replicas``.
    At zero current replicas (only reachable with scale-to-zero) it is ``ceil(ratio)``.
    """
    ratio = _div(float(value_milli), float(target_milli))
    if spec_replicas == 0:
        return _ceil_to_int32(ratio)
    if tolerances.within(ratio):
        return spec_replicas
    return _ceil_to_int32(ratio * float(ready_replicas))
