"""The pure decision core: observations + state + policy + now -> decision + new state.

Nothing in this package does IO, reads a clock, uses global randomness or mutates its inputs. The
live service and the simulator call the very same functions.
"""

from autoscaler.core.decide import MetricProposal, decide, propose_for_metric, record_applied
from autoscaler.core.model import (
    Decision,
    MetricReading,
    Observation,
    Published,
    Reason,
    Recommendation,
    ScaleEvent,
    ScalerState,
    StepTrace,
    Unavailable,
)

__all__ = [
    "Decision",
    "MetricProposal",
    "MetricReading",
    "Observation",
    "Published",
    "Reason",
    "Recommendation",
    "ScaleEvent",
    "ScalerState",
    "StepTrace",
    "Unavailable",
    "decide",
    "propose_for_metric",
    "record_applied",
]
