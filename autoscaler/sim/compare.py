"""Run every policy of a scenario over the same trace, each on a fresh fleet with the same seed.

Beside the policies, each comparison reports a true cost floor, ``gpuHoursFloor``: the work bound,
the GPU-hours the trace's requests take if every slot of every replica were busy all the time
(:func:`gpu_hours_floor`). No schedule, whatever its SLO, can spend less. The ``no-wait`` baseline is
no such floor: it holds enough replicas that no request ever waits, and a policy that lets requests
wait within the SLO may spend less than it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any, Literal, TextIO

import numpy as np

from autoscaler.sim.controllers import offered_concurrency
from autoscaler.sim.fleet import FleetConfig
from autoscaler.sim.run import RunResult, simulate
from autoscaler.sim.scenario import Scenario, build_controller, load_policy_ref, load_trace
from autoscaler.sim.trace import Trace

__all__ = ["Comparison", "compare", "gpu_hours_floor"]


@dataclass(frozen=True, slots=True, eq=False)
class Comparison:
    scenario: Scenario
    results: tuple[RunResult, ...]
    demand_t: np.ndarray[Any, Any]  # minute starts
    demand_replicas: np.ndarray[Any, Any]  # peak offered concurrency per minute / maxConcurrency
    gpu_hours_floor: float = 0.0  # the work bound: no schedule spends less


def gpu_hours_floor(trace: Trace, fleet: FleetConfig) -> float:
    """The work bound: sum over requests of service time / maxConcurrency, in GPU-hours.

    A replica serves at most ``maxConcurrency`` sequences at once, so replica-seconds >= the slot-
    seconds of all requests / maxConcurrency. The service time is taken at the per-token time of the
    batch size with the highest throughput (``b / per_token_s[b]``), which for a fixed per-token time
    is the full batch; that keeps the bound valid when the decode time depends on the batch size.
    (The fleet model fixes a request's per-token time when it is admitted, so a request admitted to a
    small batch keeps its speed as the batch fills: a transient the bound does not grant.)
    """
    per_token = np.asarray(fleet.per_token_s[1: fleet.max_concurrency + 1], dtype=np.float64)
    batch = np.arange(1, len(per_token) + 1, dtype=np.float64)
    best = float(np.max(batch / per_token)) if len(per_token) else 0.0
    per_token_at_best = fleet.max_concurrency / best if best > 0 else fleet.full_batch_per_token_s
    work = float(fleet.service_s(trace, per_token_s=per_token_at_best).sum())
    return work / fleet.max_concurrency * fleet.gpus_per_replica / 3600.0


def _with_floor(result: RunResult, floor: float) -> RunResult:
    """The floor beside the run's own GPU-hours in its summary (the report's field order)."""
    summary: dict[str, Any] = {}
    for key, value in result.summary.items():
        summary[key] = value
        if key == "gpuHours":
            summary["gpuHoursFloor"] = round(floor, 4)
    return replace(result, summary=summary)


def compare(scenario: Scenario, *, progress: TextIO | Literal["stderr"] | None = "stderr") -> Comparison:
    """Load the trace once; run each policy with a Generator seeded identically (same load times).
    Progress and the trace's transformations go to ``progress`` (standard error as it is at the call)."""
    if progress == "stderr":
        progress = sys.stderr
    steps: list[str] = []
    trace = load_trace(scenario, steps)
    if progress is not None:
        for step in steps:
            print(f"trace: {step}", file=progress)
    items = [load_policy_ref(ref) for ref in scenario.policies]  # validate all before running any
    floor = gpu_hours_floor(trace, scenario.fleet)
    results = []
    for item in items:
        controller = build_controller(item, trace, scenario.fleet, scenario.drain_s)
        result = simulate(
            trace, controller, fleet_config=scenario.fleet, pipeline_config=scenario.pipeline, slo=scenario.slo,
            rng=np.random.default_rng([scenario.seed, 1]), drain_s=scenario.drain_s, progress=progress,
            warm_start=scenario.warm_start, warm_window_s=scenario.warm_window_s,
        )
        results.append(_with_floor(result, floor))
    horizon = trace.duration_s + scenario.drain_s
    peak = offered_concurrency(trace.arrival_s, scenario.fleet.service_s(trace), bin_s=60.0, horizon_s=horizon)
    return Comparison(scenario, tuple(results), np.arange(len(peak)) * 60.0, peak / scenario.fleet.max_concurrency,
                      floor)
