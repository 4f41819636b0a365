"""Golden cases for the decision core, each derived by hand from the HPA algorithm
(upstream ``pkg/controller/podautoscaler/horizontal.go`` and ``replica_calculator.go``). The
arithmetic is in the comment beside each expectation.

Cases: AverageValue and Value formulas; status vs spec vs ready replicas; tolerance edges (inclusive)
and per-direction tolerance; several metrics (max); partial and total unavailability; fallback after
the threshold; the initial recommendation; stabilization windows and their strict cutoffs; Pods and
Percent rate limits over rolling periods, Percent truncation, selectPolicy Min and Disabled; the
out-of-bounds and zero-replica branches; reasons and messages; state persistence round trip.
"""

from __future__ import annotations

from policy_builders import metric, obs, policy, rules

from autoscaler.core import Reason, ScalerState, decide
from autoscaler.core.policy import Behavior, Fallback, FallbackBehavior

Q = metric("q", "AverageValue", 5)


def run(p, steps, state=None):  # type: ignore[no-untyped-def]
    """Feed (time, observation) pairs; return the decisions."""
    state = state or ScalerState()
    out = []
    for t, o in steps:
        d, state = decide(o, state, p, t)
        out.append(d)
    return out, state


# --------------------------------------------------------------------------- per-metric arithmetic


def test_average_value_is_ceil_of_total_over_target() -> None:
    (d,), _ = run(policy(Q), [(0, obs(4, {"q": 40}))])
    # ratio 40 / (5 x 4) = 2 -> ceil(40 / 5) = 8; scale-up limit max(4 + 4, 4 x 2) = 8
    assert d.proposals == {"q": 8} and d.desired_replicas == 8 and d.reason is Reason.SCALE_UP


def test_average_value_tolerance_edges_are_inclusive() -> None:
    p = policy(Q)
    assert run(p, [(0, obs(4, {"q": 22}))])[0][0].desired_replicas == 4  # 22/20 = 1.1: within
    assert run(p, [(0, obs(4, {"q": 22.001}))])[0][0].desired_replicas == 5  # 1.10005: ceil(4.4002) = 5
    assert run(p, [(0, obs(4, {"q": 18}))])[0][0].proposals == {"q": 4}  # 0.9: within
    assert run(p, [(0, obs(4, {"q": 17.99}))])[0][0].proposals == {"q": 4}  # ceil(3.598) = 4 anyway
    assert run(p, [(0, obs(4, {"q": 14.9}))])[0][0].proposals == {"q": 3}  # ceil(2.98) = 3


def test_average_value_uses_status_replicas_and_returns_them_inside_tolerance() -> None:
    # spec 4, status 5: ratio 25 / (5 x 5) = 1 -> the proposal is status.replicas = 5, a scale-up
    (d,), _ = run(policy(Q), [(0, obs(4, {"q": 25}, status=5))])
    assert d.proposals == {"q": 5} and d.desired_replicas == 5


def test_value_multiplies_ready_pods_not_spec_replicas() -> None:
    p = policy(metric("lat", "Value", 8))
    # ratio 16 / 8 = 2; 2 ready of 4 -> ceil(2 x 2) = 4 = current
    assert run(p, [(0, obs(4, {"lat": 16}, ready=2))])[0][0].desired_replicas == 4
    # 3 ready -> ceil(2 x 3) = 6
    assert run(p, [(0, obs(4, {"lat": 16}, ready=3))])[0][0].desired_replicas == 6
    # inside tolerance the proposal is spec.replicas, whatever is ready
    assert run(p, [(0, obs(4, {"lat": 8.5}, ready=1))])[0][0].proposals == {"lat": 4}


def test_value_with_no_ready_pods_proposes_zero_and_is_held_by_the_down_window() -> None:
    # ratio 0.5 x 0 ready = 0, then the initial recommendation (4) holds it for the window
    (d,), _ = run(policy(metric("lat", "Value", 8)), [(0, obs(4, {"lat": 4}, ready=0))])
    assert d.proposals == {"lat": 0} and d.desired_replicas == 4 and d.reason is Reason.SCALE_DOWN_STABILIZED


def test_utilization_is_value_on_the_average_percentage() -> None:
    # 91% / 70% = 1.3 -> ceil(1.3 x 4) = ceil(5.2) = 6
    (d,), _ = run(policy(metric("gpu", "Utilization", 70)), [(0, obs(4, {"gpu": 91}))])
    assert d.proposals == {"gpu": 6} and d.desired_replicas == 6


def test_per_direction_tolerance() -> None:
    b = Behavior(scale_up=rules(tolerance=0.05, up=True), scale_down=rules(tolerance=0.5, up=False))
    p = policy(Q, behavior=b)
    assert run(p, [(0, obs(4, {"q": 21.5}))])[0][0].proposals == {"q": 5}  # 1.075 > 1.05: ceil(4.3)
    assert run(p, [(0, obs(4, {"q": 10.5}))])[0][0].proposals == {"q": 4}  # 0.525 >= 0.5: within
    assert run(p, [(0, obs(4, {"q": 9.5}))])[0][0].proposals == {"q": 2}  # 0.475: ceil(1.9)


def test_several_metrics_take_the_max() -> None:
    p = policy(Q, metric("gpu", "Utilization", 70), metric("lat", "Value", 8))
    (d,), _ = run(p, [(0, obs(4, {"q": 10, "gpu": 140, "lat": 12}))])
    # q: ceil(10/5) = 2; gpu: ceil(2 x 4) = 8; lat: ceil(1.5 x 4) = 6 -> 8
    assert d.proposals == {"q": 2, "gpu": 8, "lat": 6} and d.desired_replicas == 8


# ----------------------------------------------------------------------------------- availability


def test_partial_data_may_scale_up_but_never_down() -> None:
    p = policy(Q, metric("gpu", "Utilization", 70))
    (up,), _ = run(p, [(0, obs(4, {"q": 40, "gpu": None}))])
    assert up.desired_replicas == 8 and up.unavailable == {"gpu": "missing"}
    (down,), state = run(p, [(0, obs(4, {"q": 5, "gpu": None}))])
    assert down.desired_replicas == 4 and down.reason is Reason.METRICS_UNAVAILABLE
    assert state.consecutive_failures == 1
    # no recommendation was recorded for the failed tick (only the initial one)
    assert [r.replicas for r in state.recommendations] == [4]


def test_all_unavailable_holds_then_falls_back_after_threshold() -> None:
    fb = Fallback(failure_threshold=2, behavior=FallbackBehavior.STATIC, replicas=10)
    p = policy(Q, fallback=fb)
    steps = [(t * 15.0, obs(4, {"q": None})) for t in range(3)]
    decisions, state = run(p, steps)
    assert [d.desired_replicas for d in decisions] == [4, 4, 8]  # 3rd failing tick: 10, limited to 4 + 4
    assert [d.reason for d in decisions] == [Reason.METRICS_UNAVAILABLE] * 2 + [Reason.FALLBACK]
    assert state.consecutive_failures == 3
    # a good tick resets the count
    (d,), state = run(p, [(45.0, obs(8, {"q": 40}))], state)
    assert d.reason is not Reason.FALLBACK and state.consecutive_failures == 0


def test_fallback_hold_and_current_if_higher() -> None:
    hold = policy(Q, fallback=Fallback(failure_threshold=0, behavior=FallbackBehavior.HOLD))
    (d,), _ = run(hold, [(0, obs(4, {"q": None}))])
    assert d.desired_replicas == 4 and d.reason is Reason.FALLBACK
    higher = policy(Q, fallback=Fallback(0, FallbackBehavior.CURRENT_REPLICAS_IF_HIGHER, 6))
    assert run(higher, [(0, obs(4, {"q": None}))])[0][0].desired_replicas == 6
    assert run(higher, [(0, obs(7, {"q": None}))])[0][0].desired_replicas == 7
    lower = policy(Q, fallback=Fallback(0, FallbackBehavior.CURRENT_REPLICAS_IF_LOWER, 6))
    # min(7, 6) = 6, but the down window holds the initial recommendation 7
    assert run(lower, [(0, obs(7, {"q": None}))])[0][0].desired_replicas == 7


def test_nan_values_are_unavailable_never_zero() -> None:
    (d,), _ = run(policy(Q), [(0, obs(4, {"q": float("nan")}))])
    assert d.desired_replicas == 4 and d.unavailable == {"q": "nan"}


# ---------------------------------------------------------------------------------- stabilization


def test_scale_down_window_cutoff_is_strict() -> None:
    p = policy(Q)  # default scale-down window 300 s, 100% per 15 s
    steps = [(0.0, obs(10, {"q": 50}))] + [(t, obs(10, {"q": 5})) for t in range(15, 300, 15)]
    decisions, state = run(p, steps)
    # the initial recommendation (10 at t=0) holds every tick up to 285 (0 > 285 - 300)
    assert all(d.desired_replicas == 10 for d in decisions)
    assert decisions[-1].reason is Reason.SCALE_DOWN_STABILIZED
    # at t=300 it falls out (0 > 0 is false): down to ceil(5/5) = 1
    (d,), _ = run(p, [(300.0, obs(10, {"q": 5}))], state)
    assert d.desired_replicas == 1 and d.reason is Reason.SCALE_DOWN


def test_scale_up_window_takes_the_lowest_recent_recommendation() -> None:
    p = policy(Q, behavior=Behavior(scale_up=rules(window=60, up=True)))
    decisions, _ = run(
        p, [(0.0, obs(2, {"q": 10})), (15.0, obs(2, {"q": 40})), (45.0, obs(2, {"q": 40})), (60.0, obs(2, {"q": 40}))]
    )
    # t=0 records 2 (initial) and 2; t=15: min(8, recs after -45 = {2, 2}) = 2; t=45: recs after -15
    # include the t=0 ones -> 2; t=60: recs after 0 (strict) = {8, 8} -> 8, limited to max(2+4, 2x2) = 6
    assert [d.desired_replicas for d in decisions] == [2, 2, 2, 6]
    assert decisions[1].reason is Reason.SCALE_UP_STABILIZED
    assert decisions[3].reason is Reason.SCALE_UP_LIMIT


def test_initial_recommendation_blocks_scale_down_after_a_restart_without_state() -> None:
    # A fresh state (say, after a restart with nothing persisted) records the current count first.
    (d,), state = run(policy(Q), [(1000.0, obs(10, {"q": 5}))])
    assert d.desired_replicas == 10 and state.initialized


# ------------------------------------------------------------------------------------ rate limits


def test_scale_up_pods_policy_over_a_rolling_period() -> None:
    b = Behavior(scale_up=rules(policies=[("Pods", 2, 60)], up=True))
    p = policy(Q, behavior=b)
    decisions, _ = run(
        p, [(0.0, obs(2, {"q": 50})), (15.0, obs(4, {"q": 50})), (45.0, obs(4, {"q": 50})), (60.0, obs(4, {"q": 50}))]
    )
    # t=0: 2 + 2 = 4 (event +2 at 0); t=15,45: period start 4 - 2 = 2 -> limit 4; t=60: 0 > 0 false -> 6
    assert [d.desired_replicas for d in decisions] == [4, 4, 4, 6]
    assert decisions[1].reason is Reason.SCALE_UP_LIMIT


def test_scale_down_percent_truncates() -> None:
    b = Behavior(scale_down=rules(window=0, policies=[("Percent", 50, 60)], up=False))
    (d,), _ = run(policy(Q, behavior=b), [(0.0, obs(5, {"q": 1}))])
    # int(5 x 0.5) = 2 -> at least 2
    assert d.desired_replicas == 2 and d.reason is Reason.SCALE_DOWN_LIMIT


def test_select_policy_min_and_disabled() -> None:
    both = [("Pods", 1, 15), ("Percent", 100, 15)]
    p_min = policy(Q, behavior=Behavior(scale_up=rules(select="Min", policies=both, up=True)))
    assert run(p_min, [(0.0, obs(4, {"q": 100}))])[0][0].desired_replicas == 5  # min(4 + 1, 8)
    p_max = policy(Q, behavior=Behavior(scale_up=rules(select="Max", policies=both, up=True)))
    assert run(p_max, [(0.0, obs(4, {"q": 100}))])[0][0].desired_replicas == 8
    p_off = policy(Q, behavior=Behavior(scale_down=rules(window=0, select="Disabled", up=False)))
    assert run(p_off, [(0.0, obs(4, {"q": 1}))])[0][0].desired_replicas == 4


def test_max_replicas_clamp_reason() -> None:
    (d,), _ = run(policy(Q, max_replicas=6), [(0.0, obs(4, {"q": 100}))])
    assert d.desired_replicas == 6 and d.reason is Reason.TOO_MANY_REPLICAS


# --------------------------------------------------------------------------------------- branches


def test_out_of_bounds_and_zero_branches_skip_metrics() -> None:
    p = policy(Q, min_replicas=2, max_replicas=6)
    assert run(p, [(0.0, obs(9, {"q": None}))])[0][0].desired_replicas == 6
    assert run(p, [(0.0, obs(1, {"q": None}))])[0][0].desired_replicas == 2
    (zero,), _ = run(p, [(0.0, obs(0, {"q": 100}))])
    assert zero.desired_replicas == 0 and zero.reason is Reason.SCALING_DISABLED


def test_out_of_bounds_rescale_is_recorded_as_a_scale_event() -> None:
    b = Behavior(scale_up=rules(policies=[("Pods", 1, 60)], up=True))
    p = policy(Q, min_replicas=3, behavior=b)
    decisions, state = run(p, [(0.0, obs(1, {"q": 100})), (15.0, obs(3, {"q": 100}))])
    # t=0: below min -> 3 (event +2). t=15: start 3 - 2 = 1 -> limit 2 < current -> current: stay 3
    assert [d.desired_replicas for d in decisions] == [3, 3]
    assert [e.change for e in state.scale_up_events] == [2]


def test_decision_explains_itself() -> None:
    (d,), _ = run(policy(Q, metric("gpu", "Utilization", 70)), [(0.0, obs(4, {"q": 40, "gpu": None}))])
    assert d.message.startswith("scale up from 4 to 8")
    assert "q=40 over 4 replicas vs 5/replica -> 8" in d.message and "gpu unavailable (missing" in d.message
    assert [s.step for s in d.steps] == ["metrics", "stabilize", "rate_limit"]


def test_state_round_trips_through_json() -> None:
    b = Behavior(scale_up=rules(policies=[("Pods", 2, 60)], up=True))
    _, state = run(policy(Q, behavior=b), [(0.0, obs(2, {"q": 50})), (15.0, obs(4, {"q": None}))])
    assert ScalerState.from_json(state.to_json()) == state
