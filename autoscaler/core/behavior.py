"""HPA ``behavior``: stabilization windows and scaling-rate policies, as pure functions of the state.

Mirrors ``normalizeDesiredReplicasWithBehaviors`` in ``horizontal.go``:

1. :func:`stabilize` - the recommendation is bounded below by the *lowest* recommendation of the
   scale-up window and above by the *highest* of the scale-down window (cutoffs strictly after
   ``now - window``), starting from the current replica count.
2. :func:`limit_rate` - the stabilized value is limited by the Pods/Percent policies over their
   periods (counting the scale events recorded in those periods), then clamped to min/max.

The HPA keeps recommendations and events in controller maps and overwrites outdated slots. For
recommendations we drop entries that can no longer fall inside a window (observably the same); for
scale events we reuse slots exactly as the HPA does, because an outdated event of one direction can
still count inside the other direction's longer period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from autoscaler.core.model import Reason, Recommendation, ScaleEvent, ScalerState
from autoscaler.core.policy import Behavior, RuleType, ScalingRules, SelectPolicy

__all__ = [
    "RateLimit",
    "Stabilized",
    "limit_rate",
    "record_recommendation",
    "record_scale_event",
    "scale_down_limit",
    "scale_up_limit",
    "stabilize",
]


@dataclass(frozen=True, slots=True)
class Stabilized:
    replicas: int
    reason: Reason | None  # ScaleUpStabilized / ScaleDownStabilized, or None when nothing changed
    message: str


def stabilize(*, desired: int, current: int, state: ScalerState, behavior: Behavior, now: float) -> Stabilized:
    """``stabilizeRecommendationWithBehaviors``."""
    up_cutoff = now - behavior.scale_up.stabilization_window_s
    down_cutoff = now - behavior.scale_down.stabilization_window_s
    up_recommendation = desired
    down_recommendation = desired
    for rec in state.recommendations:  # hot loop: plain comparisons, no min()/max() calls
        replicas = rec.replicas
        if replicas < up_recommendation and rec.timestamp_s > up_cutoff:
            up_recommendation = replicas
        if replicas > down_recommendation and rec.timestamp_s > down_cutoff:
            down_recommendation = replicas
    recommendation = current
    if recommendation < up_recommendation:
        recommendation = up_recommendation
    if recommendation > down_recommendation:
        recommendation = down_recommendation
    if recommendation == desired:
        return Stabilized(recommendation, None, "recommended size matches current size")
    if recommendation < desired:
        return Stabilized(
            recommendation,
            Reason.SCALE_UP_STABILIZED,
            f"recent recommendations were lower than {desired} within the "
            f"{behavior.scale_up.stabilization_window_s}s scale-up stabilization window",
        )
    return Stabilized(
        recommendation,
        Reason.SCALE_DOWN_STABILIZED,
        f"recent recommendations were higher than {desired} within the "
        f"{behavior.scale_down.stabilization_window_s}s scale-down stabilization window",
    )


def _change_in_period(events: tuple[ScaleEvent, ...], period_s: int, now: float) -> int:
    """``getReplicasChangePerPeriod``: the changes recorded strictly after ``now - period``."""
    cutoff = now - period_s
    return sum(event.change for event in events if event.timestamp_s > cutoff)


def scale_up_limit(*, current: int, state: ScalerState, rules: ScalingRules, now: float) -> int:
    """``calculateScaleUpLimitWithScalingRules``."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    pick = max if rules.select_policy is SelectPolicy.MAX else min
    result: int | None = None
    for rule in rules.policies:
        start = (
            current
            - _change_in_period(state.scale_up_events, rule.period_s, now)
            + _change_in_period(state.scale_down_events, rule.period_s, now)
        )
        if rule.type is RuleType.PODS:
            proposed = start + rule.value
        else:
            proposed = math.ceil(float(start) * (1 + float(rule.value) / 100))
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


def scale_down_limit(*, current: int, state: ScalerState, rules: ScalingRules, now: float) -> int:
    """``calculateScaleDownLimitWithBehaviors``: selectPolicy Max means the *largest change* (the minimum)."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    pick = min if rules.select_policy is SelectPolicy.MAX else max
    result: int | None = None
    for rule in rules.policies:
        start = (
            current
            - _change_in_period(state.scale_up_events, rule.period_s, now)
            + _change_in_period(state.scale_down_events, rule.period_s, now)
        )
        if rule.type is RuleType.PODS:
            proposed = start - rule.value
        else:
            proposed = int(float(start) * (1 - float(rule.value) / 100))  # truncates toward zero
        result = proposed if result is None else pick(result, proposed)
    return current if result is None else result


@dataclass(frozen=True, slots=True)
class RateLimit:
    replicas: int
    reason: Reason
    message: str


def limit_rate(
    *,
    desired: int,
    current: int,
    min_replicas: int,
    max_replicas: int,
    state: ScalerState,
    behavior: Behavior,
    now: float,
) -> RateLimit:
    """``convertDesiredReplicasWithBehaviorRate``: the policies' limit, then the min/max clamp."""
    if desired > current:
        limit = max(scale_up_limit(current=current, state=state, rules=behavior.scale_up, now=now), current)
        if max_replicas > limit:
            allowed, reason = limit, Reason.SCALE_UP_LIMIT
            message = (
                f"the desired replica count is increasing faster than the maximum scale rate (at most {limit} now)"
            )
        else:
            allowed, reason = max_replicas, Reason.TOO_MANY_REPLICAS
            message = f"the desired replica count is more than the maximum replica count ({max_replicas})"
        if desired > allowed:
            return RateLimit(allowed, reason, message)
    elif desired < current:
        limit = min(scale_down_limit(current=current, state=state, rules=behavior.scale_down, now=now), current)
        if min_replicas < limit:
            allowed, reason = limit, Reason.SCALE_DOWN_LIMIT
            message = (
                f"the desired replica count is decreasing faster than the maximum scale rate (at least {limit} now)"
            )
        else:
            allowed, reason = min_replicas, Reason.TOO_FEW_REPLICAS
            message = f"the desired replica count is less than the minimum replica count ({min_replicas})"
        if desired < allowed:
            return RateLimit(allowed, reason, message)
    return RateLimit(desired, Reason.WITHIN_TOLERANCE, "the desired count is within the acceptable range")


def record_recommendation(state: ScalerState, *, replicas: int, behavior: Behavior, now: float) -> ScalerState:
    """Store an un-stabilized recommendation, dropping those outside both windows."""
    horizon = now - max(behavior.scale_up.stabilization_window_s, behavior.scale_down.stabilization_window_s)
    kept = state.recommendations
    if kept and kept[0].timestamp_s <= horizon:  # usually only the oldest few expire
        kept = tuple(rec for rec in kept if rec.timestamp_s > horizon)
    return replace(state, recommendations=(*kept, Recommendation(now, replicas)))


def _store_event(events: tuple[ScaleEvent, ...], event: ScaleEvent, longest_period_s: int) -> tuple[ScaleEvent, ...]:
    """``storeScaleEvent``'s slot reuse, kept exact: the *last* event strictly older than the longest
    period is overwritten, else the event is appended. Other outdated events stay (and still count
    for the other direction's longer periods, as in the HPA)."""
    cutoff = event.timestamp_s - longest_period_s
    outdated = [i for i, old in enumerate(events) if old.timestamp_s < cutoff]
    if outdated:
        slot = outdated[-1]
        return (*events[:slot], event, *events[slot + 1 :])
    return (*events, event)


def record_scale_event(state: ScalerState, *, previous: int, new: int, behavior: Behavior, now: float) -> ScalerState:
    """``storeScaleEvent``: the change goes to the up or down list."""
    if new == previous:
        return state
    if new > previous:
        events = _store_event(
            state.scale_up_events, ScaleEvent(now, new - previous), behavior.scale_up.longest_period_s
        )
        return replace(state, scale_up_events=events)
    events = _store_event(
        state.scale_down_events, ScaleEvent(now, previous - new), behavior.scale_down.longest_period_s
    )
    return replace(state, scale_down_events=events)
