"""Controllers: what decides the replica count at each tick of a simulated run.

* :class:`PolicyController` runs a team's ``ScalingPolicy`` through :func:`autoscaler.core.decide`,
  the very function the live service calls; HPA and KEDA baselines are just policy files.
* The named algorithms that are *not* the HPA's are pure functions over frozen state values, each
  driven by a thin controller: Knative's KPA (:func:`kpa_decide`), Ray Serve's default policy
  (:func:`ray_serve_decide`), a static fleet, and the oracle (:func:`oracle_schedule`).

A controller sees a :class:`FleetView`: the replica counts the Kubernetes API would show, the
in-flight request count the KPA and Ray read from their own proxies, and the Prometheus-backed
signal reader a policy's metrics go through.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt

from autoscaler.core import Decision, MetricReading
from autoscaler.core.step import TargetReading, TargetState, step
from autoscaler.policy.model import ScalingPolicy

__all__ = [
    "Controller",
    "FleetView",
    "KpaConfig",
    "KpaController",
    "KpaState",
    "OracleController",
    "PolicyController",
    "RayServeConfig",
    "RayServeController",
    "RayServeState",
    "StaticController",
    "kpa_decide",
    "offered_concurrency",
    "oracle_schedule",
    "ray_serve_decide",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FleetView:
    """What a controller may look at, at one tick."""

    now_s: float
    spec_replicas: int
    ready_replicas: int
    in_flight: int  # running + waiting, as a proxy in front of the pods counts them
    read: Callable[[str], MetricReading]  # preset -> reading, through the metrics pipeline
    load_times_s: Mapping[str, float] = field(default_factory=dict)  # live Ready pod -> creation-to-Ready s
    status_replicas: int | None = None  # the scale subresource's status.replicas (pods not being deleted)


class Controller(Protocol):
    name: str
    interval_s: float

    def tick(self, view: FleetView) -> tuple[int, str]:
        """Desired replicas and a short reason."""
        ...


# ------------------------------------------------------------------------------------- the core's policies


class PolicyController:
    """A ``ScalingPolicy`` through :func:`autoscaler.core.step.step`, the function the live service calls:
    read, step, act. The per-target memory is a value carried from tick to tick."""

    def __init__(self, policy: ScalingPolicy, name: str | None = None) -> None:
        self.policy = policy
        self.name = name or policy.name
        self.interval_s = float(policy.interval_s)
        self.state = TargetState()
        self.last_decision: Decision | None = None

    def reading(self, view: FleetView) -> TargetReading:
        """What the service would read at this tick: the scale subresource, the pods, the signals."""
        return TargetReading(
            spec_replicas=view.spec_replicas,
            ready_replicas=view.ready_replicas,
            metrics={spec.name: view.read(spec.source.preset or "") for spec in self.policy.signals},
            status_replicas=view.status_replicas,
            load_times_s=view.load_times_s,
        )

    def tick(self, view: FleetView) -> tuple[int, str]:
        decision, self.state = step(self.reading(view), self.state, self.policy, view.now_s)
        self.last_decision = decision
        return decision.desired_replicas, decision.reason.value


# ---------------------------------------------------------------------------------------------- Knative KPA


@dataclass(frozen=True, slots=True)
class KpaConfig:
    """Knative's autoscaler ConfigMap defaults (``config-autoscaler``), concurrency metric."""

    target_concurrency: float  # per pod: containerConcurrency x target utilization (0.7)
    min_replicas: int = 1
    max_replicas: int = 100
    stable_window_s: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    tick_s: float = 2.0


@dataclass(frozen=True, slots=True)
class KpaState:
    panic_since_s: float | None = None
    max_panic_pods: int = 0


def kpa_decide(config: KpaConfig, state: KpaState, *, stable_avg: float, panic_avg: float, ready: int,
               now: float) -> tuple[int, KpaState, str]:
    """One tick of Knative's ``autoscaler.Scale`` (pkg/autoscaler/scaling/autoscaler.go), concurrency mode."""
    ready_count = max(1, ready)
    max_up = math.ceil(config.max_scale_up_rate * ready_count)
    max_down = math.floor(ready_count / config.max_scale_down_rate)
    stable_pods = min(max(math.ceil(stable_avg / config.target_concurrency), max_down), max_up)
    panic_pods = min(max(math.ceil(panic_avg / config.target_concurrency), max_down), max_up)
    over = panic_pods / ready_count >= config.panic_threshold_percentage / 100.0
    panic_since = state.panic_since_s
    if over:
        panic_since = now  # enter panic, or extend it
    elif panic_since is not None and now >= panic_since + config.stable_window_s:
        panic_since = None
    desired, reason = stable_pods, "stable"
    max_panic = 0
    if panic_since is not None:
        # In panic the KPA never scales down: it holds the highest panic count seen.
        max_panic = max(state.max_panic_pods, panic_pods)
        desired, reason = max_panic, "panic"
    desired = min(max(desired, config.min_replicas), config.max_replicas)
    return desired, KpaState(panic_since, max_panic), reason


class KpaController:
    def __init__(self, name: str, config: KpaConfig) -> None:
        self.name = name
        self.config = config
        self.interval_s = config.tick_s
        self.state = KpaState()
        self.samples: deque[tuple[float, int]] = deque()

    def tick(self, view: FleetView) -> tuple[int, str]:
        now = view.now_s
        self.samples.append((now, view.in_flight))
        while self.samples and self.samples[0][0] <= now - self.config.stable_window_s:
            self.samples.popleft()
        panic_window = self.config.stable_window_s * self.config.panic_window_percentage / 100.0
        stable = [v for _, v in self.samples]
        panic = [v for t, v in self.samples if t > now - panic_window] or stable[-1:]
        desired, self.state, reason = kpa_decide(
            self.config, self.state, stable_avg=sum(stable) / len(stable), panic_avg=sum(panic) / len(panic),
            ready=view.ready_replicas, now=now,
        )
        return desired, reason


# ------------------------------------------------------------------------------------------------ Ray Serve


@dataclass(frozen=True, slots=True)
class RayServeConfig:
    """Ray Serve ``AutoscalingConfig`` defaults (target_ongoing_requests 2 since Ray 2.32)."""

    target_ongoing_requests: float = 2.0
    min_replicas: int = 1
    max_replicas: int = 100
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    upscaling_factor: float = 1.0
    downscaling_factor: float = 1.0
    metrics_interval_s: float = 10.0
    look_back_period_s: float = 30.0
    control_loop_s: float = 1.0  # Ray's loop runs every 0.1 s; delays are counted in seconds either way


@dataclass(frozen=True, slots=True)
class RayServeState:
    decision_counter: int = 0


def ray_serve_decide(config: RayServeConfig, state: RayServeState, *, total_requests: float, running: int,
                     current_target: int) -> tuple[int, RayServeState, str]:
    """``replica_queue_length_autoscaling_policy`` (python/ray/serve/autoscaling_policy.py), one loop."""
    if running == 0:
        # Cold start: scale from zero as soon as there is traffic.
        if total_requests > 0 and current_target == 0:
            return max(1, config.min_replicas), state, "cold start"
        return current_target, state, "no running replica"
    error_ratio = (total_requests / running) / config.target_ongoing_requests
    factor = config.upscaling_factor if error_ratio >= 1 else config.downscaling_factor
    smoothed = 1 + (error_ratio - 1) * factor
    desired = math.ceil(running * smoothed)
    if error_ratio < 1 and desired == running:
        desired -= 1  # Ray always moves at least one replica down when under target
    desired = min(max(desired, config.min_replicas), config.max_replicas)
    counter = state.decision_counter
    decision = current_target
    reason = "hold"
    if desired > current_target:
        counter = max(counter, 0) + 1
        if counter > config.upscale_delay_s / config.control_loop_s:
            counter, decision, reason = 0, desired, "upscale"
    elif desired < current_target:
        counter = min(counter, 0) - 1
        if counter < -(config.downscale_delay_s / config.control_loop_s):
            counter, decision, reason = 0, desired, "downscale"
    else:
        counter = 0
    return decision, replace(state, decision_counter=counter), reason


class RayServeController:
    def __init__(self, name: str, config: RayServeConfig) -> None:
        self.name = name
        self.config = config
        self.interval_s = config.control_loop_s
        self.state = RayServeState()
        self.samples: deque[tuple[float, int]] = deque()
        self.last_sample_s = -math.inf

    def tick(self, view: FleetView) -> tuple[int, str]:
        now = view.now_s
        if now - self.last_sample_s >= self.config.metrics_interval_s:
            self.samples.append((now, view.in_flight))
            self.last_sample_s = now
        while self.samples and self.samples[0][0] <= now - self.config.look_back_period_s:
            self.samples.popleft()
        total = sum(v for _, v in self.samples) / len(self.samples) if self.samples else 0.0
        desired, self.state, reason = ray_serve_decide(
            self.config, self.state, total_requests=total, running=view.ready_replicas,
            current_target=view.spec_replicas,
        )
        return desired, reason


# ----------------------------------------------------------------------------------------- static, oracle


class StaticController:
    def __init__(self, name: str, replicas: int, interval_s: float = 60.0) -> None:
        self.name = name
        self.replicas = replicas
        self.interval_s = interval_s
        self.initial_replicas = replicas

    def tick(self, view: FleetView) -> tuple[int, str]:
        return self.replicas, "static"


def offered_concurrency(arrival_s: FloatArray, service_s: FloatArray, *, bin_s: float,
                        horizon_s: float) -> FloatArray:
    """The peak number of requests in service per ``bin_s`` bin if none ever waited (exact sweep)."""
    nbins = math.ceil(horizon_s / bin_s) + 1
    times = np.concatenate([arrival_s, arrival_s + service_s])
    deltas = np.concatenate([np.ones(len(arrival_s)), -np.ones(len(arrival_s))])
    order = np.lexsort((deltas, times))  # at equal times, departures first, as the fleet frees a slot
    level = np.cumsum(deltas[order])
    bins = np.minimum((times[order] // bin_s).astype(np.int64), nbins - 1)
    peak = np.zeros(nbins)
    np.maximum.at(peak, bins, level)
    # A bin with no event keeps the level the previous bin ended at.
    end_level = np.full(nbins, np.nan)
    end_level[bins] = level  # the last write per bin wins: the bin's closing level
    carried = np.zeros(nbins)
    filled = np.where(np.isnan(end_level), -np.inf, np.arange(nbins))
    last = np.maximum.accumulate(filled)
    valid = last >= 0
    carried[valid] = end_level[last[valid].astype(np.int64)]
    opening = np.concatenate([[0.0], carried[:-1]])
    result: FloatArray = np.maximum(peak, opening)
    return result


def oracle_schedule(need: IntArray, *, bin_s: float, lookahead_s: float) -> IntArray:
    """Replicas to hold in each bin: the most needed from now until a replica started now is ready.

    A replica must be started ``lookahead_s`` before it is needed; and one that will be needed again
    within ``lookahead_s`` is cheaper kept than restarted, so the schedule is the running maximum of
    the need over ``[t, t + lookahead]``: the cheapest schedule that never makes a request wait.
    """
    k = math.ceil(lookahead_s / bin_s) + 1
    padded = np.concatenate([need, np.full(k, need[-1] if len(need) else 0)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, k)[: len(need)]
    result: IntArray = windows.max(axis=1).astype(np.int64)
    return result


class OracleController:
    def __init__(self, name: str, schedule: IntArray, bin_s: float, *, min_replicas: int = 1) -> None:
        self.name = name
        self.schedule = schedule
        self.bin_s = bin_s
        self.interval_s = bin_s
        self.min_replicas = min_replicas
        self.initial_replicas = max(min_replicas, int(schedule[0])) if len(schedule) else min_replicas

    def tick(self, view: FleetView) -> tuple[int, str]:
        i = min(int(view.now_s // self.bin_s), len(self.schedule) - 1)
        return max(self.min_replicas, int(self.schedule[i])), "oracle"
