"""Run every policy of a scenario over the same trace, each on a fresh fleet with the same seed."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from autoscaler.sim.controllers import offered_concurrency
from autoscaler.sim.run import RunResult, simulate
from autoscaler.sim.scenario import Scenario, build_controller, load_policy_ref, load_trace

__all__ = ["Comparison", "compare"]


@dataclass(frozen=True, slots=True, eq=False)
class Comparison:
    scenario: Scenario
    results: tuple[RunResult, ...]
    demand_t: np.ndarray[Any, Any]  # minute starts
    demand_replicas: np.ndarray[Any, Any]  # peak offered concurrency per minute / maxConcurrency


def compare(scenario: Scenario, *, progress: TextIO | None = sys.stderr) -> Comparison:
    """Load the trace once; run each policy with a Generator seeded identically (same load times)."""
    trace = load_trace(scenario)
    items = [load_policy_ref(ref) for ref in scenario.policies]  # validate all before running any
    results = []
    for item in items:
        controller = build_controller(item, trace, scenario.fleet, scenario.drain_s)
        results.append(simulate(
            trace, controller, fleet_config=scenario.fleet, pipeline_config=scenario.pipeline, slo=scenario.slo,
            rng=np.random.default_rng([scenario.seed, 1]), drain_s=scenario.drain_s, progress=progress,
        ))
    horizon = trace.duration_s + scenario.drain_s
    peak = offered_concurrency(trace.arrival_s, scenario.fleet.service_s(trace), bin_s=60.0, horizon_s=horizon)
    return Comparison(scenario, tuple(results), np.arange(len(peak)) * 60.0, peak / scenario.fleet.max_concurrency)
