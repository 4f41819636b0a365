"""``step``: one target, one tick. What the drivers read -> (decision, new per-target state). Pure.

Every driver (the live service, the metrics-API publisher, ``replay``, ``backtest`` and the
simulator's policy controller) does only three things: read a :class:`TargetReading`, call
:func:`step`, act on the decision. Everything a target remembers between ticks lives in one frozen
:class:`TargetState`: the core's :class:`~autoscaler.core.ScalerState` (windows, scale events,
failure count), the predictive metric's demand history with its forecast fit, and the measured
load-time samples. Building
the :class:`~autoscaler.core.Observation` from a reading and keeping that memory happen here and
nowhere else, so "what you simulate is what runs" holds by construction.

A driver that writes for real (and may fail to) calls ``step(..., assume_applied=False)`` and, once
its write succeeded, :func:`acknowledge`. A driver that only watches a target change (``backtest``)
records the change with :func:`note_scale_change`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from autoscaler.core.behavior import record_scale_event
from autoscaler.core.decide import decide
from autoscaler.core.model import Decision, MetricReading, Observation, ScalerState
from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.predictive import load_time_quantile, record_demand, refresh_forecast
from autoscaler.core.slo import CapacityEstimate, initial_capacity, learn_capacity
from autoscaler.core.slo import demand as slo_demand

if TYPE_CHECKING:
    from autoscaler.forecast import DemandHistory, ForecastFit

__all__ = [
    "MAX_LOAD_SAMPLES",
    "TargetReading",
    "TargetState",
    "acknowledge",
    "expired",
    "note_scale_change",
    "observe",
    "retarget",
    "step",
    "warm_start",
]

CLOCK_SKEW_S = 60.0
"""Persisted timestamps later than now by more than this make the memory untrusted (start fresh)."""
MAX_LOAD_SAMPLES = 64
"""Load-time samples kept per target (the newest; a quantile of 64 is stable and cheap)."""


@dataclass(frozen=True, slots=True)
class TargetReading:
    """What a driver read for one target this tick: the scale subresource, the ready pods, the metric
    readings, and the load times of the pods it saw (pod id -> seconds from creation to Ready).

    ``status_replicas`` is the scale subresource's ``status.replicas`` (None: the driver has no such
    count, and ``spec_replicas`` stands in, as it does for a ReplicaSet that created its pods).
    """

    spec_replicas: int
    ready_replicas: int
    metrics: Mapping[str, MetricReading]
    status_replicas: int | None = None
    load_times_s: Mapping[str, float] = field(default_factory=dict)

    def reading(self, name: str) -> MetricReading:
        return self.metrics.get(name) or MetricReading.missing(detail="not observed")


@dataclass(frozen=True, slots=True)
class TargetState:
    """Everything one target remembers between ticks. Frozen: ``step`` returns a new one."""

    scaler: ScalerState = field(default_factory=ScalerState)
    demand: DemandHistory | None = None
    """The predictive metric's history on the policy's grid (None: not predictive, or not started): the
    last ~27 h at the step, 5-minute means before (``autoscaler.forecast.history``)."""
    load_times: tuple[tuple[str, float], ...] = ()
    """Measured load times, oldest first, at most :data:`MAX_LOAD_SAMPLES` pods."""
    capacity: CapacityEstimate | None = None
    """An SLO policy's learned per-replica capacity (None: not an SLO policy, or not started)."""
    forecast_fit: ForecastFit | None = None
    """What the last full forecast of :attr:`demand` learned (model, calibration, seasonal profile),
    refitted every few minutes and applied to the newest points in between (``autoscaler.forecast.fit``).
    A value like the history: a retried ``step`` from the same state refits exactly when the first
    attempt did. Not persisted (rebuilt from the warm-started history at the first tick)."""

    def load_time_s(self, policy: ScalingPolicy) -> float | None:
        """The policy's high quantile of the measured load times (None before any pod was seen)."""
        return load_time_quantile((s for _, s in self.load_times), policy.cold_start.load_time_quantile)

    # -- persistence: the scaler state and the load times; the demand history is warm-started from
    # -- Prometheus instead (it is large, and Prometheus already keeps it).

    def to_json(self) -> dict[str, Any]:
        data = self.scaler.to_json()
        data["v"] = 2
        if self.load_times:
            data["load"] = [[pod, round(s, 3)] for pod, s in self.load_times]
        if self.capacity is not None:
            data["cap"] = self.capacity.to_json()
        return data

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> TargetState:
        """Read a persisted state; version 1 (a bare ``ScalerState``) is still accepted."""
        version = data.get("v")
        if version == 1:
            return TargetState(scaler=ScalerState.from_json(data))
        if version != 2:
            raise ValueError(f"unknown persisted state version {version!r}")
        scaler = ScalerState.from_json({**data, "v": 1})
        load = tuple((str(pod), float(s)) for pod, s in data.get("load", ()))
        if any(not (math.isfinite(s) and s >= 0) for _, s in load):
            raise ValueError("persisted load times must be finite and >= 0")
        capacity = CapacityEstimate.from_json(data["cap"]) if "cap" in data else None
        return TargetState(scaler=scaler, load_times=load[-MAX_LOAD_SAMPLES:], capacity=capacity)


def _merge_load_times(
    known: tuple[tuple[str, float], ...], seen: Mapping[str, float]
) -> tuple[tuple[str, float], ...]:
    if not seen:
        return known
    merged = dict(known)
    for pod, seconds in seen.items():
        if math.isfinite(seconds) and seconds >= 0 and pod not in merged:
            merged[pod] = float(seconds)  # a pod's load time does not change once it was Ready
    items = tuple(merged.items())
    return items[-MAX_LOAD_SAMPLES:]


def _from_the_future(scaler: ScalerState, now: float) -> bool:
    stamps = [r.timestamp_s for r in scaler.recommendations]
    stamps += [e.timestamp_s for e in (*scaler.scale_up_events, *scaler.scale_down_events)]
    return any(t > now + CLOCK_SKEW_S for t in stamps)


def observe(
    reading: TargetReading, state: TargetState, policy: ScalingPolicy, now: float
) -> tuple[Observation, TargetState]:
    """This tick's memory update and the core's observation. The only place either is built."""
    if _from_the_future(state.scaler, now):
        # The clock went back (or memory was edited): windows and rate limits counted from stamps ahead
        # of now would hold the target for that long. Start as the HPA does after a restart.
        state = replace(state, scaler=ScalerState())
    load_times = _merge_load_times(state.load_times, reading.load_times_s)
    demand, capacity = state.demand, state.capacity
    if policy.predictive is not None:
        demand = record_demand(demand, policy, reading.reading(policy.predictive.metric).value, now)
    elif policy.slo is not None:
        slo = policy.slo
        running, waiting = reading.reading(slo.running.name).value, reading.reading(slo.waiting.name).value
        capacity = learn_capacity(
            capacity or initial_capacity(slo),
            slo,
            running=running,
            waiting=waiting,
            latency_s=reading.reading(slo.latency.name).value,
            ready=reading.ready_replicas,
            now=now,
            completions=reading.reading(slo.completions.name).value,
        )
        now_demand = slo_demand(
            slo, running=running, waiting=waiting, completions=reading.reading(slo.completions.name).value,
            interval_s=policy.interval_s,
        )
        demand = record_demand(demand, policy, None if now_demand is None else now_demand[0], now)
    new_state = replace(state, demand=demand, load_times=load_times, capacity=capacity)
    observation = Observation(
        spec_replicas=reading.spec_replicas,
        ready_replicas=reading.ready_replicas,
        metrics=dict(reading.metrics),
        status_replicas=reading.status_replicas,
        demand_history=demand,
        load_time_s=new_state.load_time_s(policy),
        capacity=capacity,
    )
    # the forecast's horizon needs the load time just measured, hence after the observation
    fit = refresh_forecast(state.forecast_fit, policy, observation, now)
    if fit is not None or state.forecast_fit is not None:
        observation = replace(observation, forecast_fit=fit)
        new_state = replace(new_state, forecast_fit=fit)
    return observation, new_state


def step(
    reading: TargetReading,
    state: TargetState,
    policy: ScalingPolicy,
    now: float,
    *,
    assume_applied: bool = True,
) -> tuple[Decision, TargetState]:
    """Decide one target at ``now`` from what was read, carrying its memory as a value.

    With ``assume_applied`` (simulations, replays) the decision's scale change is recorded at
    ``now``; a driver that writes for real passes False and calls :func:`acknowledge` after the write
    succeeded. Calling ``step`` again from the same input state (a re-read after a 409) is safe: the
    memory of the first call is simply not kept.
    """
    observation, state = observe(reading, state, policy, now)
    decision, scaler = decide(observation, state.scaler, policy, now, assume_applied=assume_applied)
    return decision, replace(state, scaler=scaler)


def acknowledge(state: TargetState, *, decision: Decision, policy: ScalingPolicy, now: float) -> TargetState:
    """Record that ``decision`` was written to the target at ``now`` (the HPA's ``storeScaleEvent``)."""
    return note_scale_change(
        state, previous=decision.current_replicas, new=decision.desired_replicas, policy=policy, now=now
    )


def note_scale_change(
    state: TargetState, *, previous: int, new: int, policy: ScalingPolicy, now: float
) -> TargetState:
    """Record a scale change of the target (ours, or one observed in history) for the rate limits."""
    if previous == new:
        return state
    scaler = record_scale_event(state.scaler, previous=previous, new=new, behavior=policy.behavior, now=now)
    return replace(state, scaler=scaler)


def warm_start(state: TargetState, policy: ScalingPolicy, history: DemandHistory | None) -> TargetState:
    """Seed the demand history from recorded history (read before the first tick), when it fits the
    policy's grid; the ticks then extend it as usual. ``DemandHistory.from_samples`` has already
    folded its older part into the coarse tier, so a warm start costs no more memory than the ticks.
    The history takes the policy's ``historyDays`` as its bound (the ticks keep whatever bound the
    history has, so a warm start read without it would keep the default 8 days for good)."""
    if policy.predictive is not None:
        days = policy.predictive.history_days
    elif policy.slo is not None:
        days = policy.slo.history_days
    else:
        return state
    if history is None or history.step_s != policy.interval_s:
        return state
    from autoscaler.forecast.history import history_points

    return replace(state, demand=history.bounded(history_points(days, policy.interval_s)), forecast_fit=None)


def retarget(state: TargetState, old: ScalingPolicy, new: ScalingPolicy) -> TargetState:
    """The state to carry over when a policy is edited. Editing is not a restart, except that another
    target starts fresh (its windows and events say nothing about the new object; the HPA too starts a
    new target from its current count), and another demand series drops the history."""
    if old.target != new.target:
        return TargetState()
    old_metric = old.predictive.metric if old.predictive else ("slo:in-flight" if old.slo else None)
    new_metric = new.predictive.metric if new.predictive else ("slo:in-flight" if new.slo else None)
    if old_metric != new_metric or old.interval_s != new.interval_s:
        state = replace(state, demand=None, forecast_fit=None)
    old_engine = old.slo.running.source.preset if old.slo else None
    new_engine = new.slo.running.source.preset if new.slo else None
    if old_engine != new_engine:
        state = replace(state, capacity=None)  # another server: what was learned says nothing about it
    elif new.slo is not None and state.capacity is not None and state.capacity.origin == "prior":
        prior = new.slo.concurrency_prior
        if prior is not None and (old.slo is None or old.slo.concurrency_prior != prior):
            state = replace(state, capacity=initial_capacity(new.slo))  # a new prior replaces the old one
    return state


def expired(state: TargetState, policy: ScalingPolicy, now: float) -> bool:
    """True when persisted memory is older than the policy's windows (a long outage): restoring it
    would allow an immediate scale-down, so the caller starts fresh, as the HPA does after a restart."""
    if _from_the_future(state.scaler, now):
        return True  # memory from the future (a clock that ran ahead, an edited ConfigMap): not trusted
    newest = max((r.timestamp_s for r in state.scaler.recommendations), default=-math.inf)
    behavior = policy.behavior
    horizon = max(
        behavior.scale_down.stabilization_window_s, behavior.scale_up.stabilization_window_s, 2 * policy.interval_s
    )
    return newest < now - horizon
