"""``decide``: observation + state + policy + now -> (decision, new state). Pure.

The pipeline is a short list of named steps, each a pure function with a trace entry:

    bounds       current outside [min, max] -> straight to the bound (the HPA skips metrics then)
    metrics      one proposal per metric (HPA replica calculator), combined by max
    availability never scale down while a metric is unavailable; all unavailable -> hold
    fallback     after ``failureThreshold`` failing ticks in a row -> the policy's fallback
    stabilize    behavior stabilization windows
    rate_limit   behavior Pods/Percent policies, then the min/max clamp

Later steps (a predictive floor, a warm pool) slot in between ``fallback`` and ``stabilize`` so that
behavior applies to them like to any recommendation.

With those extra steps off, the output equals the Kubernetes HPA's (autoscaling/v2 with
``spec.behavior`` set, kube-controller-manager 1.33+) tick for tick: see ``tests/test_hpa_differential.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autoscaler.core.behavior import limit_rate, record_recommendation, record_scale_event, stabilize
from autoscaler.core.hpa import Tolerances, propose_average_value, propose_value
from autoscaler.core.model import Decision, Observation, Reason, ScalerState, StepTrace, Unavailable
from autoscaler.core.policy import FallbackBehavior, MetricSpec, ScalingPolicy, TargetType
from autoscaler.core.predictive import PredictivePlan, horizon, placeholder_pods, plan_predictive
from autoscaler.core.quantity import to_milli
from autoscaler.core.slo import SloPlan, initial_capacity, plan_slo

__all__ = ["MetricProposal", "decide", "propose_for_metric", "record_applied"]


@dataclass(frozen=True, slots=True)
class MetricProposal:
    name: str
    replicas: int | None  # None: the metric was unavailable
    explanation: str


def _fmt(value: float) -> str:
    return f"{value:.6g}"


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
    behavior = policy.behavior
    steps: list[StepTrace] = []
    if not state.initialized:
        # recordInitialRecommendation: the current count is the first recommendation.
        state = record_recommendation(replace(state, initialized=True), replicas=current, behavior=behavior, now=now)

    tolerances = Tolerances(behavior.scale_up.tolerance, behavior.scale_down.tolerance)
    metric_proposals = [propose_for_metric(spec, observation, tolerances) for spec in policy.metrics]
    unavailable_text = {
        spec.name: (observation.reading(spec.name).unavailable or Unavailable.MISSING).value
        for spec, proposal in zip(policy.metrics, metric_proposals, strict=True)
        if proposal.replicas is None
    }
    slo_plan = _slo_plan(policy, observation, now)
    if policy.slo is not None:
        metric_proposals.append(_slo_proposal(policy, observation, slo_plan))
        if slo_plan is None:
            unavailable_text[SLO] = _slo_unavailable(policy, observation)
    proposals = {p.name: p.replicas for p in metric_proposals}
    explained = "; ".join(p.explanation for p in metric_proposals)

    plan: PredictivePlan | None = None

    def finish(desired: int, reason: Reason, message: str, new_state: ScalerState) -> tuple[Decision, ScalerState]:
        decision = Decision(
            desired_replicas=desired,
            current_replicas=current,
            reason=reason,
            message=message,
            proposals={p.name: p.replicas for p in metric_proposals if p.replicas is not None},
            unavailable=unavailable_text,
            steps=tuple(steps),
            forecast=plan.forecast if plan else slo_plan.forecast if slo_plan else None,
            horizon_s=plan.horizon_s if plan else slo_plan.horizon_s if slo_plan else None,
            predictive_replicas=plan.uncapped if plan else slo_plan.replicas if slo_plan else None,
            placeholder_pods=placeholder_pods(policy, plan, desired),
        )
        if assume_applied:
            new_state = record_applied(new_state, decision=decision, policy=policy, now=now)
        return decision, new_state

    # Step: wake. At zero replicas (scale to zero), only the wake signal and the forecast count.
    if current == 0 and policy.min_replicas == 0 and policy.wake is not None:
        wake = proposals.get(policy.wake.metric)
        plan = plan_predictive(policy, observation, reactive=wake or 0, now=now)
        if wake is None and plan is None:
            steps.append(StepTrace("wake", 0, 0, "wake signal unavailable"))
            return finish(
                0, Reason.METRICS_UNAVAILABLE, f"holding at 0: the wake signal is unavailable; {explained}", state
            )
        desired = max(wake or 0, plan.floor if plan else 0)
        steps.append(StepTrace("wake", 0, desired, plan.note if plan else f"{policy.wake.metric} -> {desired}"))
        state = record_recommendation(state, replicas=desired, behavior=behavior, now=now)
        if desired == 0:
            return finish(0, Reason.WITHIN_TOLERANCE, f"idle at zero: {explained}", state)
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
        steps.append(StepTrace("rate_limit", desired, woken, limited.message))
        lead = plan.note if plan is not None and plan.floor >= (wake or 0) else f"wake signal: {explained}"
        return finish(woken, Reason.WAKE, f"wake from zero to {woken}: {lead}", state)

    # Step: bounds. The HPA does not look at metrics when the current count is out of bounds or 0.
    if current == 0 and policy.min_replicas > 0:
        steps.append(StepTrace("bounds", 0, 0, "target scaled to zero by someone else"))
        return finish(
            0, Reason.SCALING_DISABLED, "scaling is disabled since the replica count of the target is zero", state
        )
    if current > policy.max_replicas:
        steps.append(StepTrace("bounds", current, policy.max_replicas, "above maxReplicas"))
        return finish(
            policy.max_replicas,
            Reason.TOO_MANY_REPLICAS,
            f"current replicas {current} above maxReplicas {policy.max_replicas}: scale to {policy.max_replicas}",
            state,
        )
    if current < policy.min_replicas:
        steps.append(StepTrace("bounds", current, policy.min_replicas, "below minReplicas"))
        return finish(
            policy.min_replicas,
            Reason.TOO_FEW_REPLICAS,
            f"current replicas {current} below minReplicas {policy.min_replicas}: scale to {policy.min_replicas}",
            state,
        )

    # Step: metrics (computeReplicasForMetrics): max over the valid proposals.
    valid = [p.replicas for p in metric_proposals if p.replicas is not None]
    combined = max(valid) if valid else 0
    steps.append(StepTrace("metrics", current, combined, explained))

    # Step: availability. Never scale down on partial data; hold when nothing is known.
    failing = not valid or (len(valid) < len(metric_proposals) and combined < current)
    if failing:
        failures = state.consecutive_failures + 1
        state = replace(state, consecutive_failures=failures)
        what = "no metric is available" if not valid else "a metric is unavailable and the others propose a scale-down"
        if failures <= policy.fallback.failure_threshold:
            steps.append(StepTrace("availability", combined, current, what))
            return finish(
                current,
                Reason.METRICS_UNAVAILABLE,
                f"holding at {current}: {what} (failing tick {failures} of {policy.fallback.failure_threshold} "
                f"before fallback); {explained}",
                state,
            )
        # Step: fallback.
        if policy.fallback.behavior is FallbackBehavior.HOLD:
            steps.append(StepTrace("fallback", combined, current, "hold"))
            return finish(
                current,
                Reason.FALLBACK,
                f"fallback hold at {current}: signals failing for {failures} ticks; {explained}",
                state,
            )
        desired = _fallback_replicas(policy, current)
        steps.append(StepTrace("fallback", combined, desired, policy.fallback.behavior.value))
        lead = f"fallback {policy.fallback.behavior.value} to {desired}: signals failing for {failures} ticks"
        fallback_reason: Reason | None = Reason.FALLBACK
    else:
        state = replace(state, consecutive_failures=0)
        desired = combined
        lead = explained
        fallback_reason = None

    # Step: predictive (only on a healthy tick): a floor one load time ahead, plus the warm pool.
    floor = 0
    if fallback_reason is None and policy.predictive is not None:
        plan = plan_predictive(policy, observation, reactive=desired, now=now)
        if plan is not None:
            floor = plan.floor
            steps.append(StepTrace("predictive", desired, max(desired, floor), plan.note))
            if floor > desired:
                lead = f"{lead}; {plan.note}"

    # Step: stabilize (behavior windows), recording the un-stabilized recommendation. The predictive
    # floor is recorded (so the scale-down window holds predicted capacity) but bypasses the scale-up
    # window: it already looks one load time ahead, and delaying it would defeat it.
    stabilized = stabilize(desired=desired, current=current, state=state, behavior=behavior, now=now)
    state = record_recommendation(state, replicas=max(desired, floor), behavior=behavior, now=now)
    steps.append(StepTrace("stabilize", desired, stabilized.replicas, stabilized.message))
    if (
        fallback_reason is None
        and slo_plan is not None
        and slo_plan.release
        and desired < stabilized.replicas <= current
    ):
        # Step: release on a falling edge. A calibrated forecast already covers the next load time, so
        # only the recommendations within one horizon matter (a replica needed again within a load time
        # is cheaper kept than restarted), not the whole window; never below the need now.
        recent = max(
            (r.replicas for r in state.recommendations if r.timestamp_s > now - slo_plan.horizon_s), default=desired
        )
        released = max(desired, recent, slo_plan.need_now)
        if released < stabilized.replicas:
            note = (
                f"released to {released}: the forecast covers the next {slo_plan.horizon_s:.0f}s, so only that "
                "much of the scale-down window holds"
            )
            steps.append(StepTrace("release", stabilized.replicas, released, note))
            stabilized = replace(stabilized, replicas=released, reason=None, message=note)
    by_forecast = floor > stabilized.replicas and floor > current
    if floor > stabilized.replicas:
        # Up to the floor; and a scale-down stops at it (going below what the forecast asks for one
        # load time ahead would only come back up next tick).
        stabilized = replace(stabilized, replicas=floor, reason=Reason.PREDICTIVE if by_forecast else stabilized.reason)

    # Step: rate_limit (behavior policies), then the min/max clamp.
    limited = limit_rate(
        desired=stabilized.replicas,
        current=current,
        min_replicas=policy.min_replicas,
        max_replicas=policy.max_replicas,
        state=state,
        behavior=behavior,
        now=now,
    )
    steps.append(StepTrace("rate_limit", stabilized.replicas, limited.replicas, limited.message))

    final = limited.replicas
    if fallback_reason is not None:
        reason = fallback_reason
    elif limited.replicas != stabilized.replicas:
        reason = limited.reason
    elif by_forecast:
        reason = Reason.PREDICTIVE
    elif stabilized.reason is not None:
        reason = stabilized.reason
    elif final > current:
        reason = Reason.SCALE_UP
    elif final < current:
        reason = Reason.SCALE_DOWN
    else:
        reason = Reason.WITHIN_TOLERANCE
    if final == current:
        verb = f"keep {current}"
    else:
        verb = f"scale {'up' if final > current else 'down'} from {current} to {final}"
    notes = [step.note for step in steps[-2:] if step.before != step.after and step.step != "predictive"]
    message = f"{verb}: {lead}" + "".join(f"; {note}" for note in notes)
    return finish(final, reason, message, state)


SLO = "slo"
"""The name of an SLO policy's own proposal, beside its metrics' proposals."""


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


def _slo_proposal(policy: ScalingPolicy, observation: Observation, plan: SloPlan | None) -> MetricProposal:
    if plan is not None:
        return MetricProposal(SLO, plan.replicas, plan.note)
    assert policy.slo is not None
    why = _slo_unavailable(policy, observation)
    return MetricProposal(SLO, None, f"{SLO} unavailable ({why}: requests in flight cannot be read)")


def record_applied(state: ScalerState, *, decision: Decision, policy: ScalingPolicy, now: float) -> ScalerState:
    """Record that ``decision`` was written to the target at ``now`` (``storeScaleEvent``)."""
    return record_scale_event(
        state,
        previous=decision.current_replicas,
        new=decision.desired_replicas,
        behavior=policy.behavior,
        now=now,
    )
