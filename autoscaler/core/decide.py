"""``decide``: observation + state + policy + now -> (decision, new state). Pure.

The pipeline is a short list of named steps. Each is a pure function of its own, importable and
testable alone, that either ends the tick with a :class:`Verdict` or hands a :class:`Carry` (the
recommendation so far, why, and the state) to the next:

    propose       one proposal per metric (HPA replica calculator), plus the SLO's
    wake_step     at zero replicas with scale to zero: only the wake signal and the forecast count
    bounds_step   current outside [min, max] -> straight to the bound (the HPA skips metrics then)
    metrics_step  the proposals combined by max
    availability_step  never scale down while a metric is unavailable; all unavailable -> hold
    fallback_step after ``failureThreshold`` failing ticks in a row -> the policy's fallback
    predictive_step    a floor one load time ahead, plus the warm pool
    stabilize_step     behavior stabilization windows
    release_step  on a falling edge with a calibrated forecast, only one horizon of the window holds
    rate_limit_step    behavior Pods/Percent policies, then the min/max clamp
    final_reason  the decision's reason from what the steps did

The predictive floor is applied between ``stabilize`` and ``rate_limit`` so that behavior's rate
limits apply to it like to any recommendation.

With the predictive and SLO steps off, the output equals the Kubernetes HPA's (autoscaling/v2 with
``spec.behavior`` set, kube-controller-manager 1.33+) tick for tick: see ``tests/test_hpa_differential.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from autoscaler.core.behavior import (
    RateLimit,
    Stabilized,
    limit_rate,
    record_recommendation,
    record_scale_event,
    stabilize,
)
from autoscaler.core.hpa import Tolerances, propose_average_value, propose_value
from autoscaler.core.model import Decision, Observation, Reason, ScalerState, StepTrace, Unavailable
from autoscaler.core.policy import FallbackBehavior, MetricSpec, ScalingPolicy, TargetType
from autoscaler.core.predictive import PredictivePlan, horizon, placeholder_pods, plan_predictive
from autoscaler.core.quantity import to_milli
from autoscaler.core.slo import SloPlan, initial_capacity, plan_slo

__all__ = [
    "SLO",
    "Carry",
    "Failing",
    "Floor",
    "MetricProposal",
    "Proposals",
    "Verdict",
    "availability_step",
    "bounds_step",
    "decide",
    "fallback_step",
    "final_reason",
    "metrics_step",
    "predictive_step",
    "propose",
    "propose_for_metric",
    "rate_limit_step",
    "record_applied",
    "release_step",
    "stabilize_step",
    "wake_step",
]

SLO = "slo"
"""The name of an SLO policy's own proposal, beside its metrics' proposals."""


@dataclass(frozen=True, slots=True)
class MetricProposal:
    name: str
    replicas: int | None  # None: the metric was unavailable
    explanation: str


@dataclass(frozen=True, slots=True)
class Proposals:
    """Every metric's own proposal this tick (and the SLO's), and why the missing ones are missing."""

    items: tuple[MetricProposal, ...]
    unavailable: Mapping[str, str]
    slo_plan: SloPlan | None = None

    @property
    def valid(self) -> list[int]:
        return [p.replicas for p in self.items if p.replicas is not None]

    @property
    def explained(self) -> str:
        return "; ".join(p.explanation for p in self.items)

    def get(self, name: str) -> int | None:
        """The proposal named ``name``; the last one wins (the SLO's, should a metric share its name)."""
        return next((p.replicas for p in reversed(self.items) if p.name == name), None)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A step that ends the tick: the replicas to set, why, and the state to keep."""

    replicas: int
    reason: Reason
    message: str
    state: ScalerState
    trace: tuple[StepTrace, ...]
    plan: PredictivePlan | None = None


@dataclass(frozen=True, slots=True)
class Carry:
    """What a step hands to the next: the recommendation so far, the message's lead, the state."""

    desired: int
    lead: str
    state: ScalerState
    trace: tuple[StepTrace, ...]
    fallback: bool = False  # the recommendation is the policy's fallback, not the metrics'


@dataclass(frozen=True, slots=True)
class Failing:
    """The availability step's answer when the failures went past ``failureThreshold``."""

    combined: int
    failures: int
    state: ScalerState
    trace: tuple[StepTrace, ...] = ()


@dataclass(frozen=True, slots=True)
class Floor:
    """The predictive step's floor (0 when there is none) and its plan."""

    replicas: int
    plan: PredictivePlan | None
    trace: tuple[StepTrace, ...] = ()


def _fmt(value: float) -> str:
    return f"{value:.6g}"


# --------------------------------------------------------------------------------------- proposals


def propose_for_metric(spec: MetricSpec, observation: Observation, tolerances: Tolerances) -> MetricProposal:
    """One metric's own proposal, exactly as the HPA's replica calculator would make it."""
    reading = observation.reading(spec.name)
    if reading.value is None:
        why = reading.unavailable.value if reading.unavailable else "missing"
        detail = f": {reading.detail}" if reading.detail else ""
        return MetricProposal(spec.name, None, f"{spec.name} unavailable ({why}{detail})")
    value_milli = to_milli(reading.value)
    target = spec.target
    if target.type is TargetType.AVERAGE_VALUE:
        replicas = propose_average_value(
            total_milli=value_milli,
            target_milli=target.milli,
            status_replicas=observation.current_status_replicas,
            tolerances=tolerances,
        )
        explanation = (
            f"{spec.name}={_fmt(reading.value)} over {observation.current_status_replicas} replicas "
            f"vs {target.text}/replica -> {replicas}"
        )
    else:
        replicas = propose_value(
            value_milli=value_milli,
            target_milli=target.milli,
            spec_replicas=observation.spec_replicas,
            ready_replicas=observation.ready_replicas,
            tolerances=tolerances,
        )
        unit = "%" if target.type is TargetType.UTILIZATION else ""
        explanation = (
            f"{spec.name}={_fmt(reading.value)}{unit} vs {target.text}{unit} "
            f"on {observation.ready_replicas} ready -> {replicas}"
        )
    return MetricProposal(spec.name, replicas, explanation)


def _slo_plan(policy: ScalingPolicy, observation: Observation, now: float) -> SloPlan | None:
    if policy.slo is None:
        return None
    horizon_s, horizon_note = horizon(policy, observation)
    capacity = observation.capacity or initial_capacity(policy.slo)
    return plan_slo(policy, observation, capacity, horizon_s=horizon_s, horizon_note=horizon_note, now=now)


def _slo_unavailable(policy: ScalingPolicy, observation: Observation) -> str:
    assert policy.slo is not None
    for spec in (policy.slo.running, policy.slo.waiting):
        reading = observation.reading(spec.name)
        if reading.value is None:
            return (reading.unavailable or Unavailable.MISSING).value
    return Unavailable.NAN.value  # broken (negative or non-finite) counts


def propose(observation: Observation, policy: ScalingPolicy, now: float) -> Proposals:
    """Every metric's proposal (the HPA's replica calculator) and, for an SLO policy, the SLO's."""
    behavior = policy.behavior
    tolerances = Tolerances(behavior.scale_up.tolerance, behavior.scale_down.tolerance)
    items = [propose_for_metric(spec, observation, tolerances) for spec in policy.metrics]
    unavailable = {
        spec.name: (observation.reading(spec.name).unavailable or Unavailable.MISSING).value
        for spec, proposal in zip(policy.metrics, items, strict=True)
        if proposal.replicas is None
    }
    slo_plan = _slo_plan(policy, observation, now)
    if policy.slo is not None:
        if slo_plan is not None:
            items.append(MetricProposal(SLO, slo_plan.replicas, slo_plan.note))
        else:
            why = _slo_unavailable(policy, observation)
            items.append(MetricProposal(SLO, None, f"{SLO} unavailable ({why}: requests in flight cannot be read)"))
            unavailable[SLO] = why
    return Proposals(tuple(items), unavailable, slo_plan)


# ------------------------------------------------------------------------------------------- steps


def wake_step(
    proposals: Proposals, observation: Observation, state: ScalerState, policy: ScalingPolicy, now: float
) -> Verdict | None:
    """At zero replicas with scale to zero, only the wake signal and the forecast count; else None."""
    current = observation.spec_replicas
    if not (current == 0 and policy.min_replicas == 0 and policy.wake is not None):
        return None
    behavior = policy.behavior
    wake = proposals.get(policy.wake.metric)
    plan = plan_predictive(policy, observation, reactive=wake or 0, now=now)
    explained = proposals.explained
    if wake is None and plan is None:
        trace = (StepTrace("wake", 0, 0, "wake signal unavailable"),)
        message = f"holding at 0: the wake signal is unavailable; {explained}"
        return Verdict(0, Reason.METRICS_UNAVAILABLE, message, state, trace)
    desired = max(wake or 0, plan.floor if plan else 0)
    woke = StepTrace("wake", 0, desired, plan.note if plan else f"{policy.wake.metric} -> {desired}")
    state = record_recommendation(state, replicas=desired, behavior=behavior, now=now)
    if desired == 0:
        return Verdict(0, Reason.WITHIN_TOLERANCE, f"idle at zero: {explained}", state, (woke,), plan)
    limited = limit_rate(
        desired=desired,
        current=0,
        min_replicas=0,
        max_replicas=policy.max_replicas,
        state=state,
        behavior=behavior,
        now=now,
    )
    woken = max(limited.replicas, 1)  # a Percent-only policy can never leave zero: one replica at least
    limit = StepTrace("rate_limit", desired, woken, limited.message)
    lead = plan.note if plan is not None and plan.floor >= (wake or 0) else f"wake signal: {explained}"
    return Verdict(woken, Reason.WAKE, f"wake from zero to {woken}: {lead}", state, (woke, limit), plan)


def bounds_step(current: int, state: ScalerState, policy: ScalingPolicy) -> Verdict | None:
    """The HPA does not look at metrics when the current count is out of bounds or 0; else None."""
    if current == 0 and policy.min_replicas > 0:
        message = "scaling is disabled since the replica count of the target is zero"
        trace = (StepTrace("bounds", 0, 0, "target scaled to zero by someone else"),)
        return Verdict(0, Reason.SCALING_DISABLED, message, state, trace)
    top, bottom = policy.max_replicas, policy.min_replicas
    if current > top:
        message = f"current replicas {current} above maxReplicas {top}: scale to {top}"
        return Verdict(
            top, Reason.TOO_MANY_REPLICAS, message, state, (StepTrace("bounds", current, top, "above maxReplicas"),)
        )
    if current < bottom:
        message = f"current replicas {current} below minReplicas {bottom}: scale to {bottom}"
        trace = (StepTrace("bounds", current, bottom, "below minReplicas"),)
        return Verdict(bottom, Reason.TOO_FEW_REPLICAS, message, state, trace)
    return None


def metrics_step(proposals: Proposals, current: int) -> StepTrace:
    """``computeReplicasForMetrics``: the max over the valid proposals (0 when none is valid)."""
    valid = proposals.valid
    return StepTrace("metrics", current, max(valid) if valid else 0, proposals.explained)


def availability_step(
    proposals: Proposals, combined: int, current: int, state: ScalerState, policy: ScalingPolicy
) -> Verdict | Carry | Failing:
    """Never scale down on partial data; hold when nothing is known, up to ``failureThreshold`` ticks."""
    valid = proposals.valid
    failing = not valid or (len(valid) < len(proposals.items) and combined < current)
    if not failing:
        return Carry(combined, proposals.explained, replace(state, consecutive_failures=0), ())
    failures = state.consecutive_failures + 1
    state = replace(state, consecutive_failures=failures)
    if failures > policy.fallback.failure_threshold:
        return Failing(combined, failures, state)
    what = "no metric is available" if not valid else "a metric is unavailable and the others propose a scale-down"
    message = (
        f"holding at {current}: {what} (failing tick {failures} of {policy.fallback.failure_threshold} "
        f"before fallback); {proposals.explained}"
    )
    return Verdict(
        current, Reason.METRICS_UNAVAILABLE, message, state, (StepTrace("availability", combined, current, what),)
    )


def _fallback_replicas(policy: ScalingPolicy, current: int) -> int:
    fallback = policy.fallback
    fixed = fallback.replicas if fallback.replicas is not None else current
    if fallback.behavior is FallbackBehavior.STATIC:
        return fixed
    if fallback.behavior is FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER:
        return max(current, fixed)
    if fallback.behavior is FallbackBehavior.CURRENT_REPLICAS_IF_LOWER:
        return min(current, fixed)
    return current


def fallback_step(failing: Failing, proposals: Proposals, current: int, policy: ScalingPolicy) -> Verdict | Carry:
    """The policy's fallback once signals failed past the threshold: hold ends the tick, the others
    carry on through behavior like any recommendation."""
    explained = proposals.explained
    if policy.fallback.behavior is FallbackBehavior.HOLD:
        message = f"fallback hold at {current}: signals failing for {failing.failures} ticks; {explained}"
        trace = (StepTrace("fallback", failing.combined, current, "hold"),)
        return Verdict(current, Reason.FALLBACK, message, failing.state, trace)
    desired = _fallback_replicas(policy, current)
    name = policy.fallback.behavior.value
    lead = f"fallback {name} to {desired}: signals failing for {failing.failures} ticks"
    return Carry(desired, lead, failing.state, (StepTrace("fallback", failing.combined, desired, name),), fallback=True)


def predictive_step(carry: Carry, observation: Observation, policy: ScalingPolicy, now: float) -> Floor:
    """The forecast's floor one load time ahead, plus the warm pool (only on a healthy tick)."""
    if carry.fallback or policy.predictive is None:
        return Floor(0, None)
    plan = plan_predictive(policy, observation, reactive=carry.desired, now=now)
    if plan is None:
        return Floor(0, None)
    return Floor(plan.floor, plan, (StepTrace("predictive", carry.desired, max(carry.desired, plan.floor), plan.note),))


def stabilize_step(
    carry: Carry, floor: Floor, current: int, policy: ScalingPolicy, now: float
) -> tuple[Stabilized, ScalerState, StepTrace]:
    """Behavior's stabilization windows, recording this tick's recommendation.

    The predictive floor is recorded (so the scale-down window holds predicted capacity) but bypasses
    the scale-up window: it already looks one load time ahead, and delaying it would defeat it.
    """
    behavior = policy.behavior
    stabilized = stabilize(desired=carry.desired, current=current, state=carry.state, behavior=behavior, now=now)
    state = record_recommendation(carry.state, replicas=max(carry.desired, floor.replicas), behavior=behavior, now=now)
    return stabilized, state, StepTrace("stabilize", carry.desired, stabilized.replicas, stabilized.message)


def release_step(
    stabilized: Stabilized, carry: Carry, slo_plan: SloPlan | None, current: int, state: ScalerState, now: float
) -> tuple[Stabilized, StepTrace | None]:
    """Release on a falling edge. A calibrated forecast already covers the next load time, so only the
    recommendations within one horizon matter (a replica needed again within a load time is cheaper
    kept than restarted), not the whole window; never below the need now."""
    desired = carry.desired
    if carry.fallback or slo_plan is None or not slo_plan.release or not desired < stabilized.replicas <= current:
        return stabilized, None
    recent = max(
        (r.replicas for r in state.recommendations if r.timestamp_s > now - slo_plan.horizon_s), default=desired
    )
    released = max(desired, recent, slo_plan.need_now)
    if released >= stabilized.replicas:
        return stabilized, None
    note = (
        f"released to {released}: the forecast covers the next {slo_plan.horizon_s:.0f}s, so only that "
        "much of the scale-down window holds"
    )
    trace = StepTrace("release", stabilized.replicas, released, note)
    return replace(stabilized, replicas=released, reason=None, message=note), trace


def apply_floor(stabilized: Stabilized, floor: Floor, current: int) -> tuple[Stabilized, bool]:
    """Up to the predictive floor; a scale-down stops at it too (going below what the forecast asks
    for one load time ahead would only come back up next tick). True when the forecast raised it."""
    if floor.replicas <= stabilized.replicas:
        return stabilized, False
    by_forecast = floor.replicas > current
    return replace(
        stabilized, replicas=floor.replicas, reason=Reason.PREDICTIVE if by_forecast else stabilized.reason
    ), by_forecast


def rate_limit_step(
    stabilized: Stabilized, current: int, state: ScalerState, policy: ScalingPolicy, now: float
) -> tuple[RateLimit, StepTrace]:
    """Behavior's Pods/Percent policies, then the min/max clamp."""
    limited = limit_rate(
        desired=stabilized.replicas,
        current=current,
        min_replicas=policy.min_replicas,
        max_replicas=policy.max_replicas,
        state=state,
        behavior=policy.behavior,
        now=now,
    )
    return limited, StepTrace("rate_limit", stabilized.replicas, limited.replicas, limited.message)


def final_reason(
    carry: Carry, stabilized: Stabilized, limited: RateLimit, current: int, *, by_forecast: bool
) -> Reason:
    """The decision's reason: the step that changed the recommendation last, else the direction."""
    final = limited.replicas
    if carry.fallback:
        return Reason.FALLBACK
    if limited.replicas != stabilized.replicas:
        return limited.reason
    if by_forecast:
        return Reason.PREDICTIVE
    if stabilized.reason is not None:
        return stabilized.reason
    if final > current:
        return Reason.SCALE_UP
    if final < current:
        return Reason.SCALE_DOWN
    return Reason.WITHIN_TOLERANCE


# ------------------------------------------------------------------------------------------ decide


def decide(
    observation: Observation,
    state: ScalerState,
    policy: ScalingPolicy,
    now: float,
    *,
    assume_applied: bool = True,
) -> tuple[Decision, ScalerState]:
    """Decide the desired replicas for one target at time ``now`` (seconds, any epoch).

    By default the returned state assumes the decision is applied: when it changes the scale, the
    scale event is recorded at ``now``, as the HPA records it after writing the scale. A caller that
    acts for real (and may fail to) passes ``assume_applied=False`` and, once its write succeeded,
    calls :func:`record_applied`.
    """
    current = observation.spec_replicas
    if not state.initialized:
        # recordInitialRecommendation: the current count is the first recommendation.
        state = record_recommendation(
            replace(state, initialized=True), replicas=current, behavior=policy.behavior, now=now
        )
    proposals = propose(observation, policy, now)
    verdict = wake_step(proposals, observation, state, policy, now) or bounds_step(current, state, policy)
    if verdict is None:
        verdict = _decide_in_bounds(proposals, observation, state, policy, now)

    slo_plan = proposals.slo_plan
    plan = verdict.plan
    decision = Decision(
        desired_replicas=verdict.replicas,
        current_replicas=current,
        reason=verdict.reason,
        message=verdict.message,
        proposals={p.name: p.replicas for p in proposals.items if p.replicas is not None},
        unavailable=proposals.unavailable,
        steps=verdict.trace,
        forecast=plan.forecast if plan else slo_plan.forecast if slo_plan else None,
        horizon_s=plan.horizon_s if plan else slo_plan.horizon_s if slo_plan else None,
        predictive_replicas=plan.uncapped if plan else slo_plan.replicas if slo_plan else None,
        placeholder_pods=placeholder_pods(policy, plan, verdict.replicas),
    )
    new_state = verdict.state
    if assume_applied:
        new_state = record_applied(new_state, decision=decision, policy=policy, now=now)
    return decision, new_state


def _decide_in_bounds(
    proposals: Proposals, observation: Observation, state: ScalerState, policy: ScalingPolicy, now: float
) -> Verdict:
    """The steps after ``bounds``, for a current count within [min, max]."""
    current = observation.spec_replicas
    metrics = metrics_step(proposals, current)
    checked = availability_step(proposals, metrics.after, current, state, policy)
    if isinstance(checked, Failing):
        checked = fallback_step(checked, proposals, current, policy)
    if isinstance(checked, Verdict):
        return replace(checked, trace=(metrics, *checked.trace))
    carry = checked
    floor = predictive_step(carry, observation, policy, now)
    lead = carry.lead
    if floor.plan is not None and floor.replicas > carry.desired:
        lead = f"{lead}; {floor.plan.note}"
    stabilized, state, stabilize_trace = stabilize_step(carry, floor, current, policy, now)
    stabilized, release_trace = release_step(stabilized, carry, proposals.slo_plan, current, state, now)
    stabilized, by_forecast = apply_floor(stabilized, floor, current)
    limited, limit_trace = rate_limit_step(stabilized, current, state, policy, now)
    trace = (
        metrics,
        *carry.trace,
        *floor.trace,
        stabilize_trace,
        *((release_trace,) if release_trace else ()),
        limit_trace,
    )
    final = limited.replicas
    verb = (
        f"keep {current}"
        if final == current
        else f"scale {'up' if final > current else 'down'} from {current} to {final}"
    )
    notes = [step.note for step in trace[-2:] if step.before != step.after and step.step != "predictive"]
    message = f"{verb}: {lead}" + "".join(f"; {note}" for note in notes)
    reason = final_reason(carry, stabilized, limited, current, by_forecast=by_forecast)
    return Verdict(final, reason, message, state, trace, floor.plan)


def record_applied(state: ScalerState, *, decision: Decision, policy: ScalingPolicy, now: float) -> ScalerState:
    """Record that ``decision`` was written to the target at ``now`` (``storeScaleEvent``)."""
    return record_scale_event(
        state,
        previous=decision.current_replicas,
        new=decision.desired_replicas,
        behavior=policy.behavior,
        now=now,
    )
