"""The decide pipeline's named steps, each imported and exercised alone (issue 11, item 7).

``test_core_decide.py`` checks the composed pipeline; these pin what each step owns, so that a step
can be changed (or a new one added) with its own contract in view.
"""

from __future__ import annotations

from dataclasses import replace

from policy_builders import metric, obs, policy, rules

from autoscaler.core import Reason, ScalerState
from autoscaler.core.behavior import Stabilized, record_recommendation
from autoscaler.core.decide import (
    Carry,
    Failing,
    Floor,
    Verdict,
    availability_step,
    bounds_step,
    fallback_step,
    final_reason,
    metrics_step,
    predictive_step,
    propose,
    rate_limit_step,
    release_step,
    stabilize_step,
    wake_step,
)
from autoscaler.core.policy import Behavior, Fallback, FallbackBehavior

QUEUE = metric("queue", "AverageValue", 10)
UTIL = metric("util", "Value", 50)


def test_propose_makes_one_proposal_per_metric_and_names_the_missing() -> None:
    p = policy(QUEUE, UTIL)
    proposals = propose(obs(4, {"queue": 80, "util": None}), p, now=0)
    assert [(x.name, x.replicas) for x in proposals.items] == [("queue", 8), ("util", None)]
    assert proposals.unavailable == {"util": "missing"}
    assert proposals.valid == [8]


def test_bounds_step_passes_in_bounds_and_jumps_to_the_bound_outside() -> None:
    p = policy(QUEUE, min_replicas=2, max_replicas=5)
    state = ScalerState()
    assert bounds_step(3, state, p) is None
    above = bounds_step(9, state, p)
    below = bounds_step(1, state, p)
    zero = bounds_step(0, state, p)
    assert isinstance(above, Verdict) and (above.replicas, above.reason) == (5, Reason.TOO_MANY_REPLICAS)
    assert isinstance(below, Verdict) and (below.replicas, below.reason) == (2, Reason.TOO_FEW_REPLICAS)
    assert isinstance(zero, Verdict) and (zero.replicas, zero.reason) == (0, Reason.SCALING_DISABLED)


def test_wake_step_only_acts_at_zero_with_scale_to_zero() -> None:
    p = policy(QUEUE, min_replicas=1)
    proposals = propose(obs(0, {"queue": 50}), p, now=0)
    assert wake_step(proposals, obs(0, {"queue": 50}), ScalerState(), p, now=0) is None


def test_metrics_step_takes_the_max_of_the_valid_proposals() -> None:
    p = policy(QUEUE, UTIL)
    proposals = propose(obs(4, {"queue": 80, "util": 100}), p, now=0)
    trace = metrics_step(proposals, current=4)
    assert (trace.before, trace.after) == (4, 8)  # queue 80/10 = 8, util 100/50 on 4 ready = 8
    none = metrics_step(propose(obs(4, {"queue": None, "util": None}), p, now=0), current=4)
    assert none.after == 0


def test_availability_step_holds_a_partial_scale_down_but_lets_a_partial_scale_up_through() -> None:
    p = policy(QUEUE, UTIL, fallback=Fallback(failure_threshold=2, behavior=FallbackBehavior.HOLD))
    state = ScalerState(initialized=True)
    down = propose(obs(6, {"queue": 10, "util": None}), p, now=0)  # queue alone says 1
    held = availability_step(down, metrics_step(down, 6).after, 6, state, p)
    assert isinstance(held, Verdict) and held.replicas == 6 and held.reason is Reason.METRICS_UNAVAILABLE
    assert held.state.consecutive_failures == 1
    up = propose(obs(2, {"queue": 80, "util": None}), p, now=0)
    carried = availability_step(up, metrics_step(up, 2).after, 2, replace(state, consecutive_failures=5), p)
    assert isinstance(carried, Carry) and carried.desired == 8 and carried.state.consecutive_failures == 0


def test_availability_step_reports_failing_past_the_threshold_for_the_fallback_step() -> None:
    p = policy(QUEUE, fallback=Fallback(failure_threshold=2, behavior=FallbackBehavior.STATIC, replicas=3))
    proposals = propose(obs(6, {"queue": None}), p, now=0)
    state = ScalerState(initialized=True, consecutive_failures=2)
    failing = availability_step(proposals, 0, 6, state, p)
    assert isinstance(failing, Failing) and failing.failures == 3
    fallen = fallback_step(failing, proposals, 6, p)
    assert isinstance(fallen, Carry) and fallen.fallback and fallen.desired == 3
    hold = policy(QUEUE, fallback=Fallback(failure_threshold=2, behavior=FallbackBehavior.HOLD))
    held = fallback_step(failing, proposals, 6, hold)
    assert isinstance(held, Verdict) and held.replicas == 6 and held.reason is Reason.FALLBACK


def test_predictive_step_is_off_without_a_forecast_and_on_fallback() -> None:
    p = policy(QUEUE)
    carry = Carry(4, "lead", ScalerState(initialized=True), ())
    assert predictive_step(carry, obs(4, {"queue": 40}), p, now=0) == Floor(0, None)
    assert predictive_step(replace(carry, fallback=True), obs(4, {"queue": 40}), p, now=0) == Floor(0, None)


def test_stabilize_step_holds_a_scale_down_for_the_window_and_records_the_floor() -> None:
    behavior = Behavior(scale_down=rules(window=300, up=False))
    p = policy(QUEUE, behavior=behavior)
    state = record_recommendation(ScalerState(initialized=True), replicas=8, behavior=behavior, now=0)
    carry = Carry(3, "lead", state, ())
    stabilized, new_state, trace = stabilize_step(carry, Floor(5, None), 8, p, now=100)
    assert stabilized.replicas == 8 and stabilized.reason is Reason.SCALE_DOWN_STABILIZED
    assert (trace.before, trace.after) == (3, 8)
    assert [r.replicas for r in new_state.recommendations][-1] == 5  # the floor, not the raw 3
    later, _, _ = stabilize_step(replace(carry, state=new_state), Floor(0, None), 8, p, now=301)
    assert later.replicas == 5  # the recorded floor still holds the window


def test_release_step_needs_an_slo_plan_that_releases() -> None:
    carry = Carry(3, "lead", ScalerState(initialized=True), ())
    stabilized = Stabilized(8, Reason.SCALE_DOWN_STABILIZED, "held")
    assert release_step(stabilized, carry, None, 8, carry.state, now=0) == (stabilized, None)


def test_rate_limit_step_and_final_reason() -> None:
    behavior = Behavior(scale_up=rules(window=0, policies=[("Pods", 2, 60)], up=True))
    p = policy(QUEUE, behavior=behavior)
    state = ScalerState(initialized=True)
    stabilized = Stabilized(10, None, "")
    limited, trace = rate_limit_step(stabilized, 4, state, p, now=0)
    assert limited.replicas == 6 and (trace.before, trace.after) == (10, 6)
    carry = Carry(10, "lead", state, ())
    assert final_reason(carry, stabilized, limited, 4, by_forecast=False) is limited.reason
    assert final_reason(replace(carry, fallback=True), stabilized, limited, 4, by_forecast=False) is Reason.FALLBACK
    same = replace(limited, replicas=10)
    assert final_reason(carry, stabilized, same, 4, by_forecast=True) is Reason.PREDICTIVE
    assert final_reason(carry, stabilized, same, 4, by_forecast=False) is Reason.SCALE_UP
    assert final_reason(carry, Stabilized(2, None, ""), replace(limited, replicas=2), 4, by_forecast=False) is (
        Reason.SCALE_DOWN
    )
