"""Property tests of the decision core (hypothesis), in closed loop: each tick's ``spec.replicas`` is
the previous decision, as when the decision is applied.

Properties: bounds always hold; scale-ups never exceed the Pods policy within its period; no
scale-down inside the stabilization window below a recent recommendation; determinism; purity (the
input state is not changed, the result does not depend on object identity); state JSON round trip.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from policy_builders import metric, obs, policy, rules

from autoscaler.core import ScalerState, decide
from autoscaler.core.policy import Behavior, Fallback, FallbackBehavior

KINDS = ("AverageValue", "Value", "Utilization")


@st.composite
def policies(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 3))
    metrics = [
        metric(f"m{i}", draw(st.sampled_from(KINDS)), draw(st.sampled_from([0.5, 1, 5, 8, 70]))) for i in range(n)
    ]
    lo = draw(st.integers(1, 5))
    hi = draw(st.integers(lo, 30))
    up_pods = draw(st.integers(1, 6))
    up_period = draw(st.sampled_from([15, 30, 60, 120]))
    behavior = Behavior(
        scale_up=rules(window=draw(st.sampled_from([0, 30, 60])), policies=[("Pods", up_pods, up_period)], up=True),
        scale_down=rules(
            window=draw(st.sampled_from([0, 60, 300])),
            select=draw(st.sampled_from(["Max", "Min"])),
            policies=[
                ("Percent", draw(st.integers(10, 100)), draw(st.sampled_from([15, 60]))),
                ("Pods", draw(st.integers(1, 5)), 30),
            ],
            tolerance=draw(st.sampled_from([0.0, 0.1, 0.2])),
            up=False,
        ),
    )
    fb = draw(st.sampled_from([Fallback(2, FallbackBehavior.HOLD), Fallback(1, FallbackBehavior.STATIC, lo)]))
    return policy(*metrics, min_replicas=lo, max_replicas=hi, behavior=behavior, fallback=fb), (up_pods, up_period)


values = st.one_of(st.none(), st.floats(0, 500, allow_nan=False), st.sampled_from([0.0, 5.0, 70.0, 77.0]))


@st.composite
def runs(draw: st.DrawFn):  # type: ignore[no-untyped-def]
    p, up = draw(policies())
    ticks = draw(
        st.lists(
            st.tuples(
                st.sampled_from([15.0, 15.0, 30.0, 1.0]),
                st.lists(values, min_size=len(p.metrics), max_size=len(p.metrics)),
                st.floats(0, 1),
            ),
            min_size=1,
            max_size=40,
        )
    )
    start = draw(st.integers(p.min_replicas, p.max_replicas))
    return p, up, start, ticks


def closed_loop(p, start, ticks):  # type: ignore[no-untyped-def]
    state, current, t = ScalerState(), start, 0.0
    history = []
    for dt, vals, ready_frac in ticks:
        t += dt
        o = obs(current, {m.name: v for m, v in zip(p.metrics, vals, strict=True)}, ready=int(current * ready_frac))
        before = state
        d, state = decide(o, state, p, t)
        history.append((t, current, d, before))
        current = d.desired_replicas
    return history, state


@settings(max_examples=250, deadline=None)
@given(runs())
def test_bounds_always_hold(run) -> None:  # type: ignore[no-untyped-def]
    p, _, start, ticks = run
    history, _ = closed_loop(p, start, ticks)
    for _, _, d, _ in history:
        assert p.min_replicas <= d.desired_replicas <= p.max_replicas


@settings(max_examples=250, deadline=None)
@given(runs())
def test_scale_up_never_exceeds_the_pods_policy_within_its_period(run) -> None:  # type: ignore[no-untyped-def]
    p, (pods, period), start, ticks = run
    history, _ = closed_loop(p, start, ticks)
    changes = [(t, d.desired_replicas - current) for t, current, d, _ in history]
    for t_end, change in changes:
        if change <= 0:
            continue
        # at the moment of each scale-up, over the period ending then:
        window = [c for t, c in changes if t_end - period < t <= t_end]
        ups = sum(c for c in window if c > 0)
        downs = -sum(c for c in window if c < 0)
        # start of the period = current - ups + downs; the limit allows `pods` on top of that
        assert ups <= pods + downs


@settings(max_examples=250, deadline=None)
@given(runs())
def test_no_scale_down_below_a_recommendation_inside_the_window(run) -> None:  # type: ignore[no-untyped-def]
    p, _, start, ticks = run
    window = p.behavior.scale_down.stabilization_window_s
    history, _ = closed_loop(p, start, ticks)
    recommended = []  # (time, un-stabilized recommendation) as recorded by the core
    for t, current, d, _ in history:
        stab = next((s for s in d.steps if s.step == "stabilize"), None)
        if d.desired_replicas < current:
            floor = max((r for ts, r in recommended if ts > t - window), default=0)
            assert d.desired_replicas >= min(floor, current), (t, d, recommended)
        if stab is not None:
            recommended.append((t, stab.before))


@settings(max_examples=100, deadline=None)
@given(runs())
def test_deterministic_and_pure(run) -> None:  # type: ignore[no-untyped-def]
    p, _, start, ticks = run
    first, end1 = closed_loop(p, start, ticks)
    second, end2 = closed_loop(p, start, ticks)
    assert [h[2] for h in first] == [h[2] for h in second] and end1 == end2
    for t, current, _, before in first:
        snapshot = before.to_json()
        decide(obs(current, {}), before, p, t)
        assert before.to_json() == snapshot  # the input state is never changed
    assert ScalerState.from_json(end1.to_json()) == end1
