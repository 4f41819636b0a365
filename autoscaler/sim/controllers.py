"""Controllers: what decides the replica count at each tick of a simulated run.

* :class:`PolicyController` runs a team's ``ScalingPolicy`` through :func:`autoscaler.core.decide`,
  the very function the live service calls; HPA and KEDA baselines are just policy files.
* The named algorithms that are *not* the HPA's are pure functions over frozen state values, each
  driven by a thin controller: Knative's KPA (:func:`kpa_decide`), Ray Serve's default policy
  (:func:`ray_serve_decide`, line for line Ray's ``replica_queue_length_autoscaling_policy``), a
  static fleet, and the no-wait schedule (:func:`no_wait_schedule`).

A controller sees a :class:`FleetView`: the replica counts the Kubernetes API would show, the
in-flight request count the KPA and Ray read from their own proxies, and the Prometheus-backed
signal reader a policy's metrics go through.

Steady-state start. A simulated run starts from the trace's steady state, not from an empty
system: :func:`steady_state` is the load the trace opens with (by Little's law, the requests in
flight at t = 0 had that load been running for a while), and a controller that keeps windows of
its own implements the :class:`WarmStart` hook: it fills its windows as if that level had been in
flight for as long as they reach back, and returns the replicas it holds at that load (the KPA and
Ray settle at ``ceil(in flight / target)``; static and no-wait at their own first value). Without
it, the KPA read "nothing in flight" at its first tick and halved a warm fleet within seconds. The
fleet itself starts with that many warm, empty replicas: requests already in service at t = 0 are
not modelled, so in-flight counts ramp up over the first service time (a second or two on the
shipped scenarios); the seeded windows carry the controllers over that ramp.

Caveats, on purpose:

* Ray's controller loop runs every 0.1 s (``CONTROL_LOOP_INTERVAL_S``); ours defaults to the
  same, and the up/downscale delays are counted in loop iterations exactly as Ray counts them.
* Ray's handle records the requests it has sent to each running replica every 0.5 s, and every
  ``metrics_interval_s`` pushes their look-back average plus the requests it queues at that
  instant. The view gives one in-flight count; as Ray's handle never sends a replica more than
  ``max_ongoing_requests``, the queued part is what exceeds the ready replicas' slots. Requests on
  a draining replica still count as running here (Ray drops a stopping replica's count).
* The no-wait schedule is what it says, not a cost floor: a policy that lets some requests wait
  (within the SLO) may well spend less. The cost floor is the work bound
  (:func:`autoscaler.sim.compare.gpu_hours_floor`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from autoscaler.core import Decision, MetricReading
from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.step import TargetReading, TargetState, step
from autoscaler.sim.fleet import FleetConfig
from autoscaler.sim.trace import Trace

__all__ = [
    "Controller",
    "FleetView",
    "KpaConfig",
    "KpaController",
    "KpaState",
    "NoWaitController",
    "OracleController",
    "PolicyController",
    "RayServeConfig",
    "RayServeController",
    "RayServeState",
    "StaticController",
    "SteadyState",
    "WarmStart",
    "kpa_decide",
    "no_wait_schedule",
    "offered_concurrency",
    "oracle_schedule",
    "ray_desired_replicas",
    "ray_serve_decide",
    "steady_state",
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



# ------------------------------------------------------------------------------------- steady-state start


@dataclass(frozen=True, slots=True)
class SteadyState:
    """The load a run starts into: what would be in flight at t = 0 had the opening load been running."""

    in_flight: float  # requests in service (none waiting): arrival rate x mean service time
    max_concurrency: int
    window_s: float  # the opening stretch of the trace it was measured over

    @property
    def replicas_needed(self) -> int:
        """Replicas whose slots hold that level: ``ceil(in flight / maxConcurrency)``."""
        return math.ceil(self.in_flight / self.max_concurrency)


def steady_state(trace: Trace, fleet: FleetConfig, *, window_s: float = 300.0) -> SteadyState:
    """Little's law over the trace's first ``window_s`` seconds: L = (arrivals / window) x mean service.

    The service time is the one at a full batch (as for the no-wait schedule and the static fleet),
    so with a batch-size profile the level is a little above what a fleet at its target would see.
    A trace shorter than the window is measured over its whole length, its rate as (n - 1) arrivals
    over the span from the first to the last.
    """
    service = fleet.service_s(trace)
    n, span = len(trace), trace.duration_s
    if span >= window_s:
        level = float(service[trace.arrival_s < window_s].sum()) / window_s
        span = window_s
    elif n > 1 and span > 0:
        level = float(service.mean()) * (n - 1) / span
    else:  # one request (or all at one instant): its work spread over the window
        level, span = float(service.sum()) / window_s, window_s
    return SteadyState(level, fleet.max_concurrency, span)


@runtime_checkable
class WarmStart(Protocol):
    """A controller with windows of its own: fill them as if ``steady`` had been in flight all along."""

    def warm_start(self, steady: SteadyState, floor: int) -> int:
        """Seed the windows; return the replicas this controller holds at that load, at least ``floor``
        (the scenario's ``initialReplicas``) and within the controller's own bounds."""
        ...


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
        self.samples: deque[tuple[float, float]] = deque()

    def warm_start(self, steady: SteadyState, floor: int) -> int:
        """One sample per tick over the stable window, all at the steady level, ending at t = 0."""
        ticks = max(1, math.ceil(self.config.stable_window_s / self.config.tick_s))
        self.samples = deque((-k * self.config.tick_s, steady.in_flight) for k in reversed(range(ticks)))
        own = math.ceil(steady.in_flight / self.config.target_concurrency)  # what kpa_decide settles at
        return min(max(own, floor, self.config.min_replicas), self.config.max_replicas)

    def tick(self, view: FleetView) -> tuple[int, str]:
        now = view.now_s
        self.samples.append((now, float(view.in_flight)))
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
#
# Ray Serve's default policy, as python/ray/serve/autoscaling_policy.py has it
# (``_calculate_desired_num_replicas`` and ``replica_queue_length_autoscaling_policy``; later
# releases split the same arithmetic into ``_apply_scaling_factors``/``_apply_bounds``/
# ``_apply_delay_logic``), with the metrics of serve/_private/router.py (the handle's
# ``RouterMetricsManager``) and serve/_private/metrics_utils.py (``window_average``).


@dataclass(frozen=True, slots=True)
class RayServeConfig:
    """Ray Serve ``AutoscalingConfig`` defaults (target_ongoing_requests 2 since Ray 2.32) and constants."""

    target_ongoing_requests: float = 2.0
    min_replicas: int = 1  # Ray allows 0
    max_replicas: int = 100
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: float | None = None  # None: downscale_delay_s also for 1 -> 0
    upscaling_factor: float = 1.0
    downscaling_factor: float = 1.0
    metrics_interval_s: float = 10.0  # how often the handle pushes to the controller
    look_back_period_s: float = 30.0
    record_interval_s: float = 0.5  # RAY_SERVE_HANDLE_AUTOSCALING_METRIC_RECORD_INTERVAL_S
    control_loop_s: float = 0.1  # CONTROL_LOOP_INTERVAL_S: one policy call per loop
    max_ongoing_requests: int = 5  # per replica; the handle queues the rest


@dataclass(frozen=True, slots=True)
class RayServeState:
    decision_counter: int = 0  # > 0: consecutive upscale decisions, < 0: consecutive downscale ones


def ray_desired_replicas(config: RayServeConfig, *, total_requests: float, running: int) -> int:
    """``_calculate_desired_num_replicas``: the smoothed error ratio, bounded by min and max replicas."""
    if running == 0:
        raise ValueError("Number of replicas cannot be zero")
    error_ratio = total_requests / (config.target_ongoing_requests * running)
    factor = config.upscaling_factor if error_ratio >= 1 else config.downscaling_factor
    smoothed = 1 + (error_ratio - 1) * factor
    desired = math.ceil(running * smoothed)
    # Only when the unsmoothed count is below the running one, and the smoothing factor alone keeps
    # the smoothed count there, does Ray step one down: under target but ceil(running x ratio) ==
    # running holds.
    if math.ceil(running * error_ratio) < running and desired == running:
        desired -= 1
    return max(config.min_replicas, min(config.max_replicas, desired))


def ray_serve_decide(config: RayServeConfig, state: RayServeState, *, total_requests: float, running: int,
                     current_target: int) -> tuple[int, RayServeState, str]:
    """One control-loop call of ``replica_queue_length_autoscaling_policy``, then the controller's bounds.

    ``running`` is Ray's ``current_num_replicas`` (replicas RUNNING, not starting), ``current_target``
    its ``target_num_replicas``. A move waits until it has been decided ``int(delay / loop)`` loop
    iterations in a row, counted exactly as Ray counts them (so a 30 s delay at 0.1 s is 300 calls
    and the move comes on the 301st).
    """
    if running == 0:
        # The cold-start path: with requests queued and nothing running, scale at once.
        if total_requests > 0:
            decision = max(math.ceil(1 * config.upscaling_factor), current_target)
            return _ray_bounds(config, decision), state, "cold start"
        return _ray_bounds(config, current_target), state, "no running replica"
    desired = ray_desired_replicas(config, total_requests=total_requests, running=running)
    counter = state.decision_counter
    decision, reason = current_target, "hold"
    if desired > current_target:
        counter = max(counter, 0) + 1  # a downscale streak is reset, then counted
        if counter > int(config.upscale_delay_s / config.control_loop_s):
            counter, decision, reason = 0, desired, "upscale"
        else:
            reason = "upscale pending"
    elif desired < current_target:
        counter = min(counter, 0) - 1
        if current_target == 1:  # downscaling to zero is only ever 1 -> 0
            delay_s = (config.downscale_to_zero_delay_s if config.downscale_to_zero_delay_s is not None
                       else config.downscale_delay_s)
        else:
            delay_s = config.downscale_delay_s
            desired = max(1, desired)  # never N -> 0 in one move
        if counter < -int(delay_s / config.control_loop_s):
            counter, decision, reason = 0, desired, "downscale"
        else:
            reason = "downscale pending"
    else:
        counter = 0
    return _ray_bounds(config, decision), replace(state, decision_counter=counter), reason


def _ray_bounds(config: RayServeConfig, replicas: int) -> int:
    """``DeploymentAutoscalingState.apply_bounds``: the controller clips every decision to [min, max]."""
    return max(config.min_replicas, min(config.max_replicas, replicas))


class RayServeController:
    """The handle's metrics and the controller's loop around :func:`ray_serve_decide`.

    Every ``record_interval_s`` the handle records the requests running on the replicas; every
    ``metrics_interval_s`` it pushes the average of the records within the look-back period (Ray's
    ``window_average``, or the current count when that is 0 or empty) plus the requests queued at
    that moment. The controller decides on the last push, except that with no running replica a
    queued request is pushed at once (Ray's scaled-to-zero push).
    """

    def __init__(self, name: str, config: RayServeConfig) -> None:
        self.name = name
        self.config = config
        self.interval_s = config.control_loop_s
        self.state = RayServeState()
        self.records: deque[tuple[float, float]] = deque()
        self.last_record_s = -math.inf
        self.last_push_s = -math.inf
        self.pushed_total = 0.0

    def warm_start(self, steady: SteadyState, floor: int) -> int:
        """Records over the look-back period at the steady level, and a push of it, at t = 0."""
        config = self.config
        own = math.ceil(steady.in_flight / config.target_ongoing_requests)  # where ray_serve_decide settles
        replicas = min(max(own, floor, config.min_replicas), config.max_replicas)
        running = min(steady.in_flight, replicas * config.max_ongoing_requests)
        count = max(1, math.ceil(config.look_back_period_s / config.record_interval_s))
        self.records = deque((-k * config.record_interval_s, running) for k in reversed(range(count)))
        self.last_record_s = self.last_push_s = 0.0
        self.pushed_total = steady.in_flight
        return replicas

    def _due(self, now: float, last: float, every: float) -> bool:
        return now - last >= every - 1e-9  # tick times are rounded to the microsecond

    def tick(self, view: FleetView) -> tuple[int, str]:
        config, now = self.config, view.now_s
        running = min(float(view.in_flight), float(view.ready_replicas * config.max_ongoing_requests))
        queued = view.in_flight - running
        if self._due(now, self.last_record_s, config.record_interval_s):
            self.records.append((now, running))
            self.last_record_s = now
        while self.records and self.records[0][0] <= now - config.look_back_period_s:
            self.records.popleft()
        if self._due(now, self.last_push_s, config.metrics_interval_s):
            average = sum(v for _, v in self.records) / len(self.records) if self.records else 0.0
            self.pushed_total = (average or running) + queued
            self.last_push_s = now
        total = self.pushed_total
        if view.ready_replicas == 0 and view.in_flight > 0:
            total = float(view.in_flight)
        desired, self.state, reason = ray_serve_decide(
            config, self.state, total_requests=total, running=view.ready_replicas, current_target=view.spec_replicas,
        )
        return desired, reason


# ------------------------------------------------------------------------------------------ static, no-wait


class StaticController:
    def __init__(self, name: str, replicas: int, interval_s: float = 60.0) -> None:
        self.name = name
        self.replicas = replicas
        self.interval_s = interval_s
        self.initial_replicas = replicas

    def warm_start(self, steady: SteadyState, floor: int) -> int:
        return self.replicas  # a static fleet is its own steady state

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


def no_wait_schedule(need: IntArray, *, bin_s: float, lookahead_s: float) -> IntArray:
    """Replicas to hold in each bin so that no request ever waits, knowing the future.

    ``need`` is the peak offered concurrency per bin over ``maxConcurrency``. A replica must be
    started ``lookahead_s`` (scheduling + load time) before it is needed, and one that will be needed
    again within that time is kept rather than restarted, so the schedule is the running maximum of
    the need over ``[t, t + lookahead]``. This is *not* a cost lower bound: it pays for every burst's
    peak and for the load time ahead of it, where a policy may let requests wait within the SLO.
    """
    k = math.ceil(lookahead_s / bin_s) + 1
    padded = np.concatenate([need, np.full(k, need[-1] if len(need) else 0)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, k)[: len(need)]
    result: IntArray = windows.max(axis=1).astype(np.int64)
    return result


oracle_schedule = no_wait_schedule  # the old name, kept for callers


class NoWaitController:
    """Follows :func:`no_wait_schedule` bin by bin (named ``oracle`` before: it is no cost bound)."""

    def __init__(self, name: str, schedule: IntArray, bin_s: float, *, min_replicas: int = 1) -> None:
        self.name = name
        self.schedule = schedule
        self.bin_s = bin_s
        self.interval_s = bin_s
        self.min_replicas = min_replicas
        self.initial_replicas = max(min_replicas, int(schedule[0])) if len(schedule) else min_replicas

    def warm_start(self, steady: SteadyState, floor: int) -> int:
        # The schedule already holds, from t = 0, what the opening load needs ahead of the load time.
        return self.initial_replicas

    def tick(self, view: FleetView) -> tuple[int, str]:
        i = min(int(view.now_s // self.bin_s), len(self.schedule) - 1)
        return max(self.min_replicas, int(self.schedule[i])), "no-wait"


OracleController = NoWaitController  # the old name, kept for callers
