"""One candidate, one simulation: the unit of work every executor runs.

A :class:`SimContext` is everything a run shares (the trace, the fleet model, the metrics pipeline,
the SLO measured, the seed); it is shipped to each worker once per phase. A :class:`Task` is one
policy (or baseline) to run on it, with the time from which it is judged. :func:`evaluate` is the
same :func:`autoscaler.sim.run.simulate` as ``simulate`` and the benchmarks call, with a Generator
seeded from the context alone, so a task's outcome does not depend on where or in which order it
runs (local processes, Ray tasks, in process): the search is deterministic per seed on any executor.

The search phase is given a context whose trace is *cut before the held-out part*
(:meth:`SimContext.cut`); nothing after the cut ever reaches a worker of the search.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from autoscaler.core.policy import ScalingPolicy
from autoscaler.sim.fleet import FleetConfig
from autoscaler.sim.pipeline import PipelineConfig
from autoscaler.sim.run import Slo, simulate
from autoscaler.sim.scenario import Baseline, build_controller
from autoscaler.sim.trace import Trace

__all__ = ["Outcome", "SimContext", "Task", "evaluate"]


@dataclass(frozen=True, slots=True, eq=False)
class SimContext:
    """What every run of a phase shares."""

    trace: Trace
    fleet: FleetConfig
    pipeline: PipelineConfig
    slo: Slo
    seed: int
    drain_s: float = 600.0
    warm_start: bool = True
    warm_window_s: float = 300.0
    measure_to_s: float | None = None
    """Where the judged part ends (None: the trace's last arrival). The simulator runs on after it (the
    drain), and an empty fleet then must not count: fit and held-out parts end at their own end."""

    def cut(self, end_s: float) -> SimContext:
        """The same context on the requests that arrive before ``end_s`` only, judged up to ``end_s``."""
        return replace(self, trace=self.trace.window(end_s), measure_to_s=end_s)


@dataclass(frozen=True, slots=True)
class Task:
    """Run ``item`` on the context; judge it from ``measure_from_s`` on (None: the whole run)."""

    label: str
    item: ScalingPolicy | Baseline
    measure_from_s: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The judged part of one run."""

    label: str
    gpu_hours: float
    slo_attainment: float
    cold_starts: int
    requests: int
    scale_events: int
    max_replicas: int
    wall_s: float = field(compare=False)  # where and when it ran: not part of the outcome

    def as_dict(self) -> dict[str, Any]:
        return {"gpuHours": self.gpu_hours, "sloAttainment": self.slo_attainment, "coldStarts": self.cold_starts,
                "requests": self.requests, "scaleEvents": self.scale_events, "maxReplicas": self.max_replicas}


def evaluate(context: SimContext, task: Task) -> Outcome:
    """Simulate one task on the context (deterministic: the Generator is seeded from the context)."""
    started = time.perf_counter()
    controller = build_controller(task.item, context.trace, context.fleet, context.drain_s)
    result = simulate(
        context.trace, controller, fleet_config=context.fleet, pipeline_config=context.pipeline, slo=context.slo,
        rng=np.random.default_rng([context.seed, 1]), drain_s=context.drain_s, progress=None,
        warm_start=context.warm_start, warm_window_s=context.warm_window_s, measure_from_s=task.measure_from_s or 0.0,
        # up to the part's end; uncut, just past the last arrival (that request is in, the drain is not)
        measure_to_s=context.measure_to_s if context.measure_to_s is not None else math.nextafter(
            context.trace.duration_s, math.inf),
    )
    summary = result.summary
    judged = summary["window"]
    attainment = judged["sloAttainment"]
    return Outcome(
        label=task.label,
        gpu_hours=float(judged["gpuHours"]),
        slo_attainment=1.0 if attainment is None else float(attainment),  # no request in the window: none missed
        cold_starts=int(judged["coldStarts"]),
        requests=int(judged["requests"]),
        scale_events=int(summary["scaleEvents"]),
        max_replicas=int(summary["maxReplicas"]),
        wall_s=time.perf_counter() - started,
    )
