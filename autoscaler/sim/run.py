"""The simulation driver: one trace, one fleet, one controller -> one :class:`RunResult`.

Only the clock and the edges differ from the live service: time steps over the union of the
scrape, DCGM-collect and controller tick grids; at each step the fleet advances to that time, the
exporters are collected or scraped, and the controller decides and its decision is written to the
fleet (the scale subresource). Runs are deterministic: the only randomness is the Generator given.

Every run starts from the trace's steady state (``warm_start``, the default): the fleet begins with
the replicas the controller holds at the trace's opening load, all warm, and a controller with
windows of its own (:class:`autoscaler.sim.controllers.WarmStart`) has them filled as if that load
had been in flight all along. The size is the controller's own (KPA and Ray: ``ceil(in flight /
target)``; static and no-wait: their first value), else, for a policy, the replicas whose slots
hold the opening in-flight level; never below the scenario's ``initialReplicas`` or the
controller's minimum (static and no-wait excepted: their size is their definition). With
``warm_start=False`` the fleet starts at ``initialReplicas`` with every window empty, as before.
What is not seeded: the requests already in service at t = 0 (the fleet starts empty, so in-flight
counts ramp up over the first service time), Prometheus's windows in the metrics pipeline, and a
policy's own memory in the core (its stabilization history); a policy's first decisions read the
warm fleet as it fills.

An empty trace is an error (:class:`autoscaler.sim.trace.TraceError`): there is nothing to attain.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from autoscaler.sim.controllers import Controller, FleetView, SteadyState, WarmStart, steady_state
from autoscaler.sim.fleet import Fleet, FleetConfig
from autoscaler.sim.pipeline import MetricsPipeline, PipelineConfig
from autoscaler.sim.trace import Trace, TraceError

__all__ = ["RunResult", "Slo", "initial_replicas", "simulate"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Slo:
    latency_s: float = 10.0
    metric: str = "e2e"  # or "ttft"


@dataclass(frozen=True, slots=True, eq=False)
class RunResult:
    """One policy's outcome: the report's numbers and the series for the plots."""

    name: str
    summary: dict[str, Any]  # report.json fields, in the order
    times_s: FloatArray  # series sampled at every scrape
    spec_replicas: FloatArray
    ready_replicas: FloatArray
    latency_minute_s: FloatArray  # minute starts (by arrival)
    latency_p95_s: FloatArray  # p95 latency of requests arriving in that minute (NaN: none served)
    wall_s: float


def _grid(start: float, step: float, horizon: float) -> FloatArray:
    return np.arange(start, horizon + 1e-9, step)


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, total: float, stream: TextIO | None) -> None:
        self.stream = stream if stream is not None and stream.isatty() else None
        self.label, self.total, self.last = label, total, 0.0

    def update(self, done: float) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and done < self.total:
            return
        self.last = now
        frac = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(30 * frac)
        self.stream.write(f"\r{self.label:<24} [{bar:<30}] {100 * frac:5.1f}%")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def simulate(
    trace: Trace,
    controller: Controller,
    *,
    fleet_config: FleetConfig,
    pipeline_config: PipelineConfig,
    slo: Slo,
    rng: np.random.Generator,
    drain_s: float = 600.0,
    progress: TextIO | None = sys.stderr,
    warm_start: bool = True,
    warm_window_s: float = 300.0,
    measure_from_s: float | None = None,
    measure_to_s: float | None = None,
) -> RunResult:
    """Run ``controller`` over ``trace``; requests not started ``drain_s`` after the last arrival are dropped.

    ``warm_start`` starts from the trace's steady state over its first ``warm_window_s`` seconds
    (see the module docstring); ``False`` starts ``fleet_config.initial_replicas`` cold-windowed.
    ``measure_from_s`` (and ``measure_to_s``) add ``summary["window"]``: GPU-hours, SLO attainment and
    cold starts between those times (e.g. the days after a first day of history; a tuning fold's part,
    without the empty drain after its last request).
    """
    if len(trace) == 0:
        raise TraceError(f"{trace.source or 'trace'}: no requests to simulate (an empty trace has no SLO to meet)")
    started = time.perf_counter()
    steady = steady_state(trace, fleet_config, window_s=warm_window_s) if warm_start else None
    fleet_config = replace(fleet_config, initial_replicas=initial_replicas(controller, fleet_config, steady))
    fleet = Fleet(fleet_config, trace, rng)
    pipeline = MetricsPipeline(pipeline_config, fleet)
    horizon = trace.duration_s + drain_s
    scrape_t = _grid(pipeline_config.offset_s, pipeline_config.scrape_interval_s, horizon)
    collect_t = _grid(0.0, pipeline_config.dcgm_collect_s, horizon)
    tick_t = _grid(controller.interval_s, controller.interval_s, horizon)
    steps = np.unique(np.round(np.concatenate([scrape_t, collect_t, tick_t, [horizon]]), 6))
    is_scrape = np.isin(steps, np.round(scrape_t, 6))
    is_collect = np.isin(steps, np.round(collect_t, 6))
    is_tick = np.isin(steps, np.round(tick_t, 6))

    series_t: list[float] = []
    series_spec: list[int] = []
    series_ready: list[int] = []
    scale_events = 0
    max_replicas = fleet.spec_replicas
    bar = _Progress(controller.name, float(len(steps)), progress)
    needs_load_times = getattr(controller, "policy", None) is not None  # the service lists pods each tick
    for k, t in enumerate(steps.tolist()):
        fleet.advance(t)
        if is_collect[k]:
            pipeline.collect_dcgm(t)
        if is_scrape[k]:
            pipeline.scrape(t)
            series_t.append(t)
            series_spec.append(fleet.spec_replicas)
            series_ready.append(fleet.ready_replicas)
        if is_tick[k]:
            view = FleetView(
                now_s=t,
                spec_replicas=fleet.spec_replicas,
                ready_replicas=fleet.ready_replicas,
                in_flight=fleet.in_flight(t),
                read=lambda preset, t=t: pipeline.read(preset, t),  # type: ignore[misc]
                load_times_s=fleet.load_times(t) if needs_load_times else {},
                status_replicas=fleet.spec_replicas,  # the ReplicaSet creates its pods at once
            )
            desired, _ = controller.tick(view)
            if desired != view.spec_replicas:
                scale_events += 1
                fleet.scale_to(desired, t)
                max_replicas = max(max_replicas, fleet.spec_replicas)
        if k % 256 == 0:
            bar.update(k)
    bar.update(len(steps))
    return _result(controller.name, trace, fleet, slo, horizon, scale_events, max_replicas, measure_from_s,
                   measure_to_s, series_t, series_spec, series_ready, time.perf_counter() - started)


def initial_replicas(controller: Controller, fleet: FleetConfig, steady: SteadyState | None) -> int:
    """The warm replicas at t = 0; seeds the controller's windows when it has a :class:`WarmStart` hook."""
    if steady is None:
        own = getattr(controller, "initial_replicas", None)  # static and no-wait start at their own size
        return own if isinstance(own, int) else fleet.initial_replicas
    if isinstance(controller, WarmStart):
        return controller.warm_start(steady, fleet.initial_replicas)
    # A policy: the replicas the opening level needs, within the policy's bounds.
    policy = getattr(controller, "policy", None)
    low = int(getattr(policy, "min_replicas", 0))
    high = int(getattr(policy, "max_replicas", max(fleet.initial_replicas, steady.replicas_needed)))
    return min(max(steady.replicas_needed, fleet.initial_replicas, low), high)


def _result(name: str, trace: Trace, fleet: Fleet, slo: Slo, horizon: float, scale_events: int, max_replicas: int,
            measure_from_s: float | None, measure_to_s: float | None,
            series_t: list[float], series_spec: list[int], series_ready: list[int], wall_s: float) -> RunResult:
    served = ~np.isnan(fleet.start)
    n = len(trace)
    latency = fleet.end[served] - trace.arrival_s[served]
    wait = fleet.start[served] - trace.arrival_s[served]
    ttft = wait + fleet.prefill_s[served]
    measured = ttft if slo.metric == "ttft" else latency
    within = int(np.count_nonzero(measured <= slo.latency_s))
    n_rep = fleet.replica_count
    created_later = fleet.created_at[:n_rep] > 0
    held_gpu = fleet.started_at[:n_rep] < np.minimum(fleet.gone_at[:n_rep], horizon)
    cold_starts = int(np.count_nonzero(created_later & held_gpu))

    def stat(values: FloatArray, fn: str, q: float = 0.0) -> float | None:
        if len(values) == 0:
            return None
        value = float(np.mean(values)) if fn == "mean" else float(np.quantile(values, q))
        return round(value, 4)

    summary: dict[str, Any] = {
        "name": name,
        "gpuHours": round(fleet.gpu_seconds(horizon) / 3600.0, 4),
        "sloAttainment": round(within / n, 6),  # n > 0: simulate refuses an empty trace
        "latencyMean": stat(latency, "mean"),
        "latencyP50": stat(latency, "q", 0.50),
        "latencyP95": stat(latency, "q", 0.95),
        "latencyP99": stat(latency, "q", 0.99),
        "waitMean": stat(wait, "mean"),
        "coldStarts": cold_starts,
        "scaleEvents": scale_events,
        "maxReplicas": max_replicas,
        "requests": n,
        "dropped": int(n - np.count_nonzero(served)),
    }
    if measure_from_s is not None or measure_to_s is not None:
        start = measure_from_s or 0.0
        stop = horizon if measure_to_s is None else min(measure_to_s, horizon)
        later = (trace.arrival_s >= start) & (trace.arrival_s < stop)
        ok = np.zeros(n, dtype=bool)
        ok[np.flatnonzero(served)] = measured <= slo.latency_s
        created = fleet.created_at[:n_rep]
        summary["window"] = {
            "from": start,
            "to": stop,
            "gpuHours": round(fleet.gpu_seconds(stop, since_s=start) / 3600.0, 4),
            "sloAttainment": round(float(ok[later].mean()), 6) if later.any() else None,
            "coldStarts": int(np.count_nonzero(created_later & held_gpu & (created >= start) & (created < stop))),
            "requests": int(later.sum()),
        }
    minutes = np.floor(trace.arrival_s[served] / 60.0).astype(np.int64)
    span = math.ceil(trace.duration_s / 60.0) + 1
    p95 = np.full(span, np.nan)
    if len(minutes):
        order = np.argsort(minutes, kind="stable")
        sorted_min, sorted_lat = minutes[order], measured[order]
        bounds = np.searchsorted(sorted_min, np.arange(span + 1))
        for m in range(span):
            chunk = sorted_lat[bounds[m]:bounds[m + 1]]
            if len(chunk):
                p95[m] = np.quantile(chunk, 0.95)
    return RunResult(
        name=name,
        summary=summary,
        times_s=np.asarray(series_t),
        spec_replicas=np.asarray(series_spec, dtype=np.float64),
        ready_replicas=np.asarray(series_ready, dtype=np.float64),
        latency_minute_s=np.arange(span, dtype=np.float64) * 60.0,
        latency_p95_s=p95,
        wall_s=wall_s,
    )
