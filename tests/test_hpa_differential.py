"""Differential tests: ``autoscaler.core.decide`` against the Go-shaped reference model of the HPA.

The reference (``tests/hpa_reference.py``) is an independent, literal transliteration of upstream
``horizontal.go`` / ``replica_calculator.go`` (behavior always set, External metrics only, HPAScaleToZero
off, configurable tolerance on, one fake clock). Both are fed the same observation sequence; the desired
replica count must match at every tick.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pytest
from hpa_reference import (
    TARGET_AVERAGE_VALUE,
    TARGET_VALUE,
    ExternalMetricSpec,
    HorizontalPodAutoscalerBehavior,
    HPAScalingPolicy,
    HPAScalingRules,
    HPASpec,
    ReferenceHPA,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.core import MetricReading, Observation, ScalerState, decide
from autoscaler.core.policy import (
    Behavior,
    Fallback,
    MetricSource,
    MetricSpec,
    MetricTarget,
    RuleType,
    ScalingPolicy,
    ScalingRule,
    ScalingRules,
    SelectPolicy,
    TargetRef,
    TargetType,
)

AV, VAL, UTIL = TargetType.AVERAGE_VALUE, TargetType.VALUE, TargetType.UTILIZATION
T0 = 1_700_000_000.0  # a realistic epoch; every timestamp stays an exact integer-valued float

# --------------------------------------------------------------------------------------------------
# policy <-> reference spec
# --------------------------------------------------------------------------------------------------


def _ref_rules(rules: ScalingRules) -> HPAScalingRules:
    return HPAScalingRules(
        stabilization_window_seconds=rules.stabilization_window_s,
        select_policy=rules.select_policy.value,
        policies=[HPAScalingPolicy(p.type.value, p.value, p.period_s) for p in rules.policies],
        tolerance=rules.tolerance,
    )


def reference_for(policy: ScalingPolicy) -> ReferenceHPA:
    metrics = []
    for m in policy.metrics:
        # Utilization is an External Value target: value = average percent, target = U percent.
        kind = TARGET_AVERAGE_VALUE if m.target.type is TargetType.AVERAGE_VALUE else TARGET_VALUE
        metrics.append(ExternalMetricSpec(m.name, kind, m.target.milli))
    spec = HPASpec(
        min_replicas=policy.min_replicas,
        max_replicas=policy.max_replicas,
        metrics=metrics,
        behavior=HorizontalPodAutoscalerBehavior(
            scale_up=_ref_rules(policy.behavior.scale_up),
            scale_down=_ref_rules(policy.behavior.scale_down),
        ),
    )
    return ReferenceHPA(spec)


def make_policy(
    metrics: list[tuple[str, TargetType, int]],
    *,
    min_replicas: int = 1,
    max_replicas: int = 20,
    scale_up: ScalingRules | None = None,
    scale_down: ScalingRules | None = None,
) -> ScalingPolicy:
    behavior = Behavior()
    if scale_up is not None:
        behavior = Behavior(scale_up=scale_up, scale_down=behavior.scale_down)
    if scale_down is not None:
        behavior = Behavior(scale_up=behavior.scale_up, scale_down=scale_down)
    return ScalingPolicy(
        name="p",
        namespace="ns",
        target=TargetRef("apps/v1", "Deployment", "d"),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metrics=tuple(
            MetricSpec(name, MetricSource(query=f"q_{name}"), MetricTarget(t, milli, f"{milli}m"))
            for name, t, milli in metrics
        ),
        behavior=behavior,
        fallback=Fallback(failure_threshold=10**9),
    )


# --------------------------------------------------------------------------------------------------
# running both
# --------------------------------------------------------------------------------------------------


@dataclass
class Tick:
    now: float
    spec: int
    status: int
    ready: int
    values: dict[str, float | None]


def _observation(t: Tick) -> Observation:
    return Observation(
        spec_replicas=t.spec,
        ready_replicas=t.ready,
        metrics={name: (MetricReading.missing() if v is None else MetricReading.of(v)) for name, v in t.values.items()},
        status_replicas=t.status,
    )


def _fmt_history(policy: ScalingPolicy, rows: list[tuple[Tick, int, int, dict[str, object]]]) -> str:
    lines = [f"policy={policy!r}"]
    for i, (t, ours, theirs, trace) in enumerate(rows):
        lines.append(
            f"[{i:2d}] now=T0+{t.now - T0:g} spec={t.spec} status={t.status} ready={t.ready} "
            f"values={t.values} -> ours={ours} ref={theirs} ref_trace={trace}"
        )
    return "\n".join(lines)


class Pair:
    """Drives ``decide`` and ``ReferenceHPA`` in lock step and checks every tick."""

    def __init__(self, policy: ScalingPolicy) -> None:
        self.policy = policy
        self.state = ScalerState()
        self.ref = reference_for(policy)
        self.rows: list[tuple[Tick, int, int, dict[str, object]]] = []

    def step(self, t: Tick) -> int:
        decision, self.state = decide(_observation(t), self.state, self.policy, t.now)
        ours = decision.desired_replicas
        theirs = self.ref.reconcile(t.now, t.spec, t.status, t.ready, dict(t.values))
        i = len(self.rows)
        self.rows.append((t, ours, theirs, self.ref.last_trace))
        if ours != theirs:
            msg = (
                f"mismatch at tick {i}: ours={ours} reference={theirs}\n"
                f"our reason={decision.reason} message={decision.message!r} steps={decision.steps}\n"
                f"ref recs={self.ref.recommendations} up={self.ref.scale_up_events} "
                f"down={self.ref.scale_down_events}\n"
                f"our state={self.state}\n" + _fmt_history(self.policy, self.rows)
            )
            print(msg)
            raise AssertionError(msg)
        return ours


def run_both(policy: ScalingPolicy, ticks: list[Tick]) -> list[int]:
    pair = Pair(policy)
    return [pair.step(t) for t in ticks]


# --------------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------------

tolerances = st.one_of(
    st.sampled_from([0.0, 0.05, 0.1, 0.2, 0.3]),
    st.integers(0, 30).map(lambda k: k / 100),
)
windows = st.one_of(st.just(0), st.sampled_from([0, 15, 30, 45, 60, 120, 300, 600]), st.integers(0, 600))
periods = st.one_of(st.sampled_from([15, 30, 45, 60, 120, 300]), st.integers(15, 300))
select_policies = st.sampled_from([SelectPolicy.MAX] * 3 + [SelectPolicy.MIN] * 2 + [SelectPolicy.DISABLED])


def rule_lists(percent_max: int) -> st.SearchStrategy[tuple[ScalingRule, ...]]:
    rule = st.one_of(
        st.builds(ScalingRule, st.just(RuleType.PODS), st.integers(1, 10), periods),
        st.builds(ScalingRule, st.just(RuleType.PERCENT), st.integers(1, percent_max), periods),
    )
    return st.lists(rule, min_size=1, max_size=3).map(tuple)


def scaling_rules(percent_max: int) -> st.SearchStrategy[ScalingRules]:
    return st.builds(ScalingRules, windows, select_policies, rule_lists(percent_max), tolerances)


target_millis = st.one_of(
    st.integers(1, 200).map(lambda k: k * 1000),  # whole units
    st.integers(1, 100_000),  # arbitrary milli targets
    st.sampled_from([100, 250, 500, 1000, 10_000]),
)


@st.composite
def metric_specs(draw: st.DrawFn, name: str) -> tuple[str, TargetType, int]:
    t = draw(st.sampled_from([TargetType.AVERAGE_VALUE, TargetType.VALUE, TargetType.UTILIZATION]))
    milli = draw(st.integers(1, 100)) * 1000 if t is TargetType.UTILIZATION else draw(target_millis)
    return (name, t, milli)


@st.composite
def policies(draw: st.DrawFn) -> ScalingPolicy:
    n = draw(st.integers(1, 3))
    metrics = [draw(metric_specs(f"m{i}")) for i in range(n)]
    min_r = draw(st.integers(1, 5))
    max_r = min_r + draw(st.one_of(st.integers(0, 30), st.integers(0, 200)))
    return make_policy(
        metrics,
        min_replicas=min_r,
        max_replicas=max_r,
        scale_up=draw(scaling_rules(300)),
        scale_down=draw(scaling_rules(120)),
    )


# Per-tick "intents", integer-coded (cheap to generate, easy to shrink). They are resolved against the
# running sequence (previous decision, current spec / status / ready, the metric's target and the
# tolerances), so tolerance edges are hit exactly.
#
#   value intent (kind, a):
#     0 unavailable (None)            1/2/3 exactly at the up / down / 1.0 ratio edge, offset -1/0/+1 milli
#     4, 9 ratio a%4001/1000 (0..4)   5 ratio in {0, .5, 1, 1.5, 2, 3}
#     6 total = target*k/ready (k = a%41): float products that "should" be integers
#     7 raw value a/137 (many decimals: exercises MilliValue rounding)
#     8 huge value 1e6*(1+a) (int32 caps)
#    10 a "float trap" for the current target and ready count: a total whose ratio, multiplied by the
#       ready pods in float64, lands just above the exact integer (0.28 * 25 = 7.000000000000001, so
#       Go's ceil gives 8 where exact arithmetic gives 7). Falls back to _FLOAT_TRAPS.
_FLOAT_TRAPS = [0.07, 0.14, 0.28, 0.55, 0.56, 1.12, 2.2, 2.24, 4.36, 4.4, 4.44, 4.48]


@functools.cache
def _float_traps(milli_target: int, ready: int) -> tuple[int, ...]:
    """Totals (milli) with total*ready/target an exact integer n but fl(fl(total/target)*ready) > n."""
    out = []
    for n in range(1, 6 * ready + 1):
        total, rem = divmod(n * milli_target, ready)
        if rem == 0 and (total / milli_target) * ready > n:
            out.append(total)
    return tuple(out)


# Each intent is ONE integer, decoded with divmod (one draw per field would make generation, not the
# code under test, dominate the run time). Shrinking still works on the integer.
_VALUE_KINDS, _VALUE_ARG = 11, 10**6
value_intents = st.integers(0, _VALUE_KINDS * _VALUE_ARG - 1).map(lambda x: (x % _VALUE_KINDS, x // _VALUE_KINDS))


def _decode_tick(x: int) -> tuple[int, int, int, int]:
    x, dt = divmod(x, 60)  # spacing 1..60 s (ignored in fixed-15 s sequences)
    x, spec = divmod(x, 310)  # spec: < 250 follows the previous decision, else jumps to code-250 (0..59)
    ready, status = divmod(x, 6)  # status: spec, spec, previous spec (lag), spec-1, spec+1, zero (sometimes)
    return dt + 1, spec, status, ready  # ready = status - (0, 0, 0, 1, 2, all)


tick_intents = st.integers(0, 60 * 310 * 6 * 6 - 1).map(_decode_tick)

_STATUS = ["spec", "spec", "prev", "minus1", "plus1", "zero"]
_READY_MINUS = [0, 0, 0, 1, 2, 10**6]


def _resolve_value(
    intent: tuple[int, int],
    target: TargetType,
    milli_target: int,
    status: int,
    ready: int,
    tol_up: float,
    tol_down: float,
) -> float | None:
    kind, a = intent
    per_pod = target is TargetType.AVERAGE_VALUE
    base = milli_target * (status if per_pod else 1)
    if kind == 0:
        return None
    if kind in (1, 2, 3):
        factor = {1: 1 + tol_up, 2: 1 - tol_down, 3: 1.0}[kind]
        milli = max(0, round(base * factor) + [-1, 0, 0, 0, 1][a % 5])
        return milli / 1000
    if kind in (4, 9):
        return round(base * (a % 4001) / 1000) / 1000
    if kind == 5:
        return round(base * [0.0, 0.5, 1.0, 1.5, 2.0, 3.0][a % 6]) / 1000
    if kind == 6:
        denominator = ready if (not per_pod and ready > 0) else max(status, 1)
        return round(milli_target * (a % 41) / denominator) / 1000
    if kind == 7:
        return a / 137
    if kind == 8:
        return 1e6 * (1 + a)
    if kind == 10:
        traps = _float_traps(milli_target, ready) if ready > 0 else ()
        if traps:
            return traps[a % len(traps)] / 1000
        return round(base * _FLOAT_TRAPS[a % len(_FLOAT_TRAPS)]) / 1000
    raise AssertionError(intent)


@st.composite
def sequences(draw: st.DrawFn, policy: ScalingPolicy) -> tuple[int, bool, list]:
    first_spec = draw(
        st.one_of(
            st.integers(policy.min_replicas, policy.max_replicas),
            st.integers(0, policy.max_replicas + 3),
        )
    )
    fixed_15 = draw(st.booleans())
    n = draw(st.integers(20, 60))
    k = len(policy.metrics)
    intents = draw(
        st.lists(st.tuples(tick_intents, st.lists(value_intents, min_size=k, max_size=k)), min_size=n, max_size=n)
    )
    return first_spec, fixed_15, intents


def drive(policy: ScalingPolicy, first_spec: int, fixed_15: bool, intents: list) -> int:
    pair = Pair(policy)
    now = T0
    prev_desired = first_spec
    prev_spec = first_spec
    up = policy.behavior.scale_up.tolerance
    down = policy.behavior.scale_down.tolerance
    for i, ((dt, spec_code, status_code, ready_code), v_intents) in enumerate(intents):
        if i > 0:
            now += 15 if fixed_15 else dt
        if i == 0:
            spec = first_spec
        elif spec_code < 250 or spec_code - 250 > policy.max_replicas + 5:
            spec = prev_desired  # the decision was applied
        else:
            spec = spec_code - 250  # someone else scaled the target
        status = {
            "spec": spec,
            "prev": prev_spec,
            "minus1": max(0, spec - 1),
            "plus1": spec + 1,
            "zero": 0 if i % 7 == 0 else spec,
        }[_STATUS[status_code]]
        ready = max(0, status - _READY_MINUS[ready_code])
        values = {
            m.name: _resolve_value(vi, m.target.type, m.target.milli, status, ready, up, down)
            for m, vi in zip(policy.metrics, v_intents, strict=True)
        }
        prev_desired = pair.step(Tick(now, spec, status, ready, values))
        prev_spec = spec
    return len(intents)


EXAMPLES = {"count": 0, "ticks": 0}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_decide_matches_reference_hpa(data: st.DataObject) -> None:
    policy = data.draw(policies(), label="policy")
    first_spec, fixed_15, intents = data.draw(sequences(policy), label="sequence")
    EXAMPLES["ticks"] += drive(policy, first_spec, fixed_15, intents)
    EXAMPLES["count"] += 1


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_decide_matches_reference_hpa_single_metric_tight(data: st.DataObject) -> None:
    """Small replica ranges and one metric: more collisions with min/max, windows and rate limits."""
    metric = data.draw(metric_specs("m0"))
    min_r = data.draw(st.integers(1, 3))
    policy = make_policy(
        [metric],
        min_replicas=min_r,
        max_replicas=min_r + data.draw(st.integers(0, 8)),
        scale_up=data.draw(scaling_rules(200)),
        scale_down=data.draw(scaling_rules(100)),
    )
    first_spec, fixed_15, intents = data.draw(sequences(policy), label="sequence")
    EXAMPLES["ticks"] += drive(policy, first_spec, fixed_15, intents)
    EXAMPLES["count"] += 1


@settings(max_examples=300, deadline=None)
@given(
    metric=st.one_of(metric_specs("m0"), st.tuples(st.just("m0"), st.just(AV), target_millis)),
    spec=st.integers(1, 150),
    lag=st.sampled_from([0, 0, 0, 1, -1, 3, -3]),
    unready=st.sampled_from([0, 0, 1, 2, 5]),
    tol_up=tolerances,
    tol_down=tolerances,
    kind=st.sampled_from([1, 1, 1, 2, 2, 2, 3, 4, 5, 6, 7, 8, 10, 10]),
    a=st.integers(0, 10**6),
)
def test_single_tick_metric_proposal_matches_reference(
    metric: tuple[str, TargetType, int],
    spec: int,
    lag: int,
    unready: int,
    tol_up: float,
    tol_down: float,
    kind: int,
    a: int,
) -> None:
    """One tick, no stabilization and no effective rate limit: the raw metric proposal shows through.

    Concentrates on the float64 details of the replica calculator: tolerance edges (inclusive on both
    sides), ``usage / (target * statusReplicas)`` evaluated in that order, ``ceil(ratio * ready)`` with
    the float product, status vs spec vs ready replicas, the MaxInt32 caps and MilliValue rounding.
    """
    free_up = ScalingRules(0, SelectPolicy.MAX, (ScalingRule(RuleType.PODS, 10**6, 15),), tol_up)
    free_down = ScalingRules(0, SelectPolicy.MAX, (ScalingRule(RuleType.PERCENT, 100, 15),), tol_down)
    policy = make_policy([metric], min_replicas=1, max_replicas=10**6, scale_up=free_up, scale_down=free_down)
    status = max(0, spec + lag)
    ready = max(0, status - unready)
    value = _resolve_value((kind, a), metric[1], metric[2], status, ready, tol_up, tol_down)
    run_both(policy, [Tick(T0, spec, status, ready, {"m0": value})])
    EXAMPLES["ticks"] += 1


short_periods = st.sampled_from([15, 15, 30, 45])
long_periods = st.one_of(st.sampled_from([60, 120, 300]), st.integers(60, 300))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_decide_matches_reference_hpa_event_history(data: st.DataObject) -> None:
    """Short scale-up periods, long scale-down periods, small stabilization windows, oscillating load.

    This makes the cross-direction use of scale events observable: getReplicasChangePerPeriod sums the
    scale-UP events over the scale-DOWN policies' periods (and vice versa) ignoring the ``outdated`` flag,
    while storeScaleEvent marks and reuses slots by the longest period of the event's own direction only.
    """
    up_rules = st.builds(
        ScalingRules,
        st.sampled_from([0, 0, 15, 30]),
        select_policies,
        st.lists(
            st.one_of(
                st.builds(ScalingRule, st.just(RuleType.PODS), st.integers(1, 4), short_periods),
                st.builds(ScalingRule, st.just(RuleType.PERCENT), st.integers(10, 100), short_periods),
            ),
            min_size=1,
            max_size=2,
        ).map(tuple),
        tolerances,
    )
    down_rules = st.builds(
        ScalingRules,
        st.sampled_from([0, 0, 15, 30]),
        select_policies,
        st.lists(
            st.one_of(
                st.builds(ScalingRule, st.just(RuleType.PODS), st.integers(1, 4), long_periods),
                st.builds(ScalingRule, st.just(RuleType.PERCENT), st.integers(10, 100), long_periods),
            ),
            min_size=1,
            max_size=2,
        ).map(tuple),
        tolerances,
    )
    target = data.draw(target_millis)
    policy = make_policy(
        [("load", AV, target)],
        min_replicas=1,
        max_replicas=data.draw(st.integers(4, 30)),
        scale_up=data.draw(up_rules),
        scale_down=data.draw(down_rules),
    )
    # load per tick, as a multiple of the target: phases of high and low demand
    levels = data.draw(st.lists(st.integers(0, 30), min_size=20, max_size=60))
    spacing = data.draw(st.sampled_from([15, 15, 10, 20, 30]))
    pair = Pair(policy)
    spec = policy.min_replicas + 1
    for i, level in enumerate(levels):
        status = spec
        desired = pair.step(Tick(T0 + i * spacing, spec, status, status, {"load": level * target / 1000}))
        spec = desired
    EXAMPLES["ticks"] += len(levels)
    EXAMPLES["count"] += 1


# --------------------------------------------------------------------------------------------------
# hand-derived golden sequences
# --------------------------------------------------------------------------------------------------


def _rules(window: int, policies: tuple[ScalingRule, ...], select=SelectPolicy.MAX, tol=0.1) -> ScalingRules:
    return ScalingRules(window, select, policies, tol)


def _ticks(rows: list[tuple[float, int, int, int, dict[str, float | None]]]) -> list[Tick]:
    return [Tick(T0 + dt, spec, status, ready, values) for dt, spec, status, ready, values in rows]


def test_golden_tolerance_edge_exactly_1_1_stays() -> None:
    # Value target 100 (100000m), spec = ready = 4, default tolerances 0.1.
    # t+0:  value 110     -> ratio 110000/100000 = 1.1; isWithin: 1.1 <= 1.0+0.1 (== 1.1 in float64) -> 4.
    # t+15: value 90      -> ratio 0.9 >= 1.0-0.1 (== 0.9) -> within -> 4.
    # t+30: value 110.001 -> 110001m, ratio 1.10001 -> ceil(1.10001*4) = ceil(4.40004) = 5;
    #       stabilize: up window 0 -> upRec 5; downRec = max(5, recs 4) = 5 -> 5; up limit max(4+4, 8) -> 5.
    # t+45: spec 5, value 89.999 -> 89999m, ratio 0.89999 -> ceil(0.89999*5) = ceil(4.49995) = 5 -> 5 (= current).
    policy = make_policy([("q", VAL, 100_000)])
    ticks = _ticks(
        [
            (0, 4, 4, 4, {"q": 110.0}),
            (15, 4, 4, 4, {"q": 90.0}),
            (30, 4, 4, 4, {"q": 110.001}),
            (45, 5, 5, 5, {"q": 89.999}),
        ]
    )
    assert run_both(policy, ticks) == [4, 4, 5, 5]


def test_golden_average_value_in_tolerance_returns_status_replicas() -> None:
    # AverageValue target 10 (10000m), scale-down window 0.
    # spec = 5, status = 4 (rollout lag), value 40 -> 40000 / (10000 * 4) = 1.0 -> within tolerance
    #   -> proposal = statusReplicas = 4, not spec 5.
    # stabilize: both windows 0 -> upRec = downRec = 4 -> clamp(5, 4, 4) = 4.
    # rate: down limit Percent 100 -> int(5 * 0.0) = 0; min 1 -> 4 allowed. Desired 4 (a scale-down).
    # The same numbers on a Value target keep spec: 40000/40000 = 1.0 within -> currentReplicas = 5.
    down = _rules(0, (ScalingRule(RuleType.PERCENT, 100, 15),))
    policy = make_policy([("q", AV, 10_000)], scale_down=down)
    assert run_both(policy, _ticks([(0, 5, 4, 4, {"q": 40.0})])) == [4]
    policy_v = make_policy([("q", VAL, 40_000)], scale_down=down)
    assert run_both(policy_v, _ticks([(0, 5, 4, 4, {"q": 40.0})])) == [5]


def test_golden_value_multiplies_ready_pods() -> None:
    # Value target 100, spec 6 but only 3 ready pods.
    # t+0:  value 200 -> ratio 2.0 -> ceil(2.0 * 3 ready) = 6 (= current, not 12) -> 6.
    # t+15: value 300 -> ratio 3.0 -> ceil(3.0 * 3) = 9; up limit: max(Pods 6+4=10, Percent ceil(6*2)=12) = 12 -> 9.
    # t+30: spec 9, ready 0, value 300 -> ceil(3.0 * 0) = 0; stabilize: downRec = max(0, 6, 6, 9) over 300 s = 9
    #       -> clamp(9, 0, 9) = 9 -> 9.
    policy = make_policy([("q", VAL, 100_000)])
    ticks = _ticks(
        [
            (0, 6, 6, 3, {"q": 200.0}),
            (15, 6, 6, 3, {"q": 300.0}),
            (30, 9, 9, 0, {"q": 300.0}),
        ]
    )
    assert run_both(policy, ticks) == [6, 9, 9]


def test_golden_stabilization_window_is_strict() -> None:
    # AverageValue target 1 (1000m), status = spec; scale-down window 60 s; down rate Percent 100/15 s.
    # t+0:  value 10 -> 10000/(1000*10) = 1.0 within -> 10. recs: seed (10, t0), then (10, t0) appended.
    # t+30: value 2  -> 2000/(1000*10) = 0.2 -> ceil(2000/1000) = 2. downCutoff = t0-30: recs at t0 count
    #        -> downRec = 10 -> stays 10. recs += (2, t0+30).
    # t+60 (second run: t+59): downCutoff = t0 exactly; (10, t0) is not After(t0) -> excluded; (2, t0+30) counts
    #        -> downRec = 2 -> 2 (rate limit int(10*0) = 0, min 1). At t+59 the (10, t0) recs still count -> 10.
    down = _rules(60, (ScalingRule(RuleType.PERCENT, 100, 15),))
    policy = make_policy([("q", AV, 1000)], scale_down=down)
    rows = [(0, 10, 10, 10, {"q": 10.0}), (30, 10, 10, 10, {"q": 2.0})]
    assert run_both(policy, _ticks([*rows, (60, 10, 10, 10, {"q": 2.0})])) == [10, 10, 2]
    assert run_both(policy, _ticks([*rows, (59, 10, 10, 10, {"q": 2.0})])) == [10, 10, 10]


def test_golden_scale_down_percent_truncates() -> None:
    # Scale-down window 0, policy Percent 30 per 60 s. AverageValue target 1, value 1 -> proposal ceil(1) = 1.
    # t+0:   spec 7: limit = int32(7 * (1 - 0.3)) = int32(4.8999999999999995) = 4 (truncation; ceil would be 5)
    #        -> 4. down event (3, t0).
    # t+15:  spec 4: periodStart = 4 - 0 + 3 = 7 -> limit 4 -> 4 (= current, no change).
    # t+60:  event at t0 is not After(t0+60-60) -> periodStart 4 -> int32(2.8) = 2 -> 2. event (2, t0+60).
    # t+120: periodStart 2 -> int32(1.4) = 1 -> 1.
    down = _rules(0, (ScalingRule(RuleType.PERCENT, 30, 60),))
    policy = make_policy([("q", AV, 1000)], scale_down=down)
    ticks = _ticks(
        [
            (0, 7, 7, 7, {"q": 1.0}),
            (15, 4, 4, 4, {"q": 1.0}),
            (60, 4, 4, 4, {"q": 1.0}),
            (120, 2, 2, 2, {"q": 1.0}),
        ]
    )
    assert run_both(policy, ticks) == [4, 4, 2, 1]


def test_golden_scale_up_limited_by_pods_over_rolling_period() -> None:
    # Scale-up: Pods 2 per 60 s, window 0. AverageValue target 1, value 10 -> proposal ceil(10000/1000) = 10.
    # t+0:   spec 2 -> limit 2+2 = 4 -> 4, up event (2, t0).
    # t+15:  spec 4 -> periodStart = 4 - 2 = 2 -> limit 4 -> 4.
    # t+30:  same -> 4.
    # t+60:  (2, t0) not After(t0) -> periodStart 4 -> 6. up event (2, t0+60).
    # t+75:  periodStart 6 - 2 = 4 -> 6.
    # t+120: (2, t0+60) drops out -> periodStart 6 -> 8.
    up = _rules(0, (ScalingRule(RuleType.PODS, 2, 60),))
    policy = make_policy([("q", AV, 1000)], scale_up=up)
    ticks = _ticks(
        [
            (0, 2, 2, 2, {"q": 10.0}),
            (15, 4, 4, 4, {"q": 10.0}),
            (30, 4, 4, 4, {"q": 10.0}),
            (60, 4, 4, 4, {"q": 10.0}),
            (75, 6, 6, 6, {"q": 10.0}),
            (120, 6, 6, 6, {"q": 10.0}),
        ]
    )
    assert run_both(policy, ticks) == [4, 4, 4, 6, 6, 8]


def test_golden_failing_metric_blocks_scale_down_only() -> None:
    # Two AverageValue metrics (target 1), spec = status = 4, default behavior (down window 300).
    # t+0:  a = 1.0 (proposal 1), b missing -> 1 invalid and 1 < spec 4 -> -1 -> keep 4, nothing recorded.
    # t+15: a = 8.0 (proposal 8), b missing -> 8 >= 4 -> scale up: limit max(4+4, 8) = 8 -> 8.
    # t+30: both missing -> keep 8.
    # t+45: spec 0 -> ScalingDisabled -> 0. t+60: spec 30 > max 20 -> 20 (no metrics needed).
    policy = make_policy([("a", AV, 1000), ("b", AV, 1000)])
    ticks = _ticks(
        [
            (0, 4, 4, 4, {"a": 1.0, "b": None}),
            (15, 4, 4, 4, {"a": 8.0, "b": None}),
            (30, 8, 8, 8, {"a": None, "b": None}),
            (45, 0, 0, 0, {"a": 8.0, "b": 8.0}),
            (60, 30, 30, 30, {"a": None, "b": None}),
        ]
    )
    assert run_both(policy, ticks) == [4, 8, 8, 0, 20]


def test_golden_outdated_up_event_still_limits_scale_down() -> None:
    # scaleUp: Pods 2 per 15 s, window 0. scaleDown: Pods 1 per 300 s, window 0. AverageValue target 1.
    # t+0:  spec 2, value 3  -> ratio 1.5 -> 3; up limit 2+2 = 4 -> 3.      up events [(1, t0)]
    # t+15: spec 3, value 10 -> 10; (1, t0) is not After(t0) -> start 3 -> limit 5 -> 5.
    #       markScaleEventsOutdated(cutoff t0): t0 is not Before(t0) -> append. up [(1, t0), (2, t0+15)]
    # t+45: spec 5, value 6  -> ratio 1.2 -> 6; limit 7 -> 6. mark (cutoff t0+30): both outdated;
    #       the LAST outdated slot is reused -> up [(1, t0, outdated), (1, t0+45)]
    # t+60: spec 6, value 1  -> 1; down window 0 -> stabilized 1. Scale-down limit (Pods 1 per 300 s):
    #       added = every up event After(t0-240), outdated or not = 1 + 1 = 2; deleted 0
    #       -> periodStart = 6 - 2 = 4 -> limit 3 -> desired 3.
    #   (first outdated slot reused: added 1+2 = 3 -> 2; no reuse at all: 1+2+1 = 4 -> 1;
    #    dropping outdated/expired up events: 1 -> 4.)
    up = _rules(0, (ScalingRule(RuleType.PODS, 2, 15),))
    down = _rules(0, (ScalingRule(RuleType.PODS, 1, 300),))
    policy = make_policy([("q", AV, 1000)], scale_up=up, scale_down=down)
    ticks = _ticks(
        [
            (0, 2, 2, 2, {"q": 3.0}),
            (15, 3, 3, 3, {"q": 10.0}),
            (45, 5, 5, 5, {"q": 6.0}),
            (60, 6, 6, 6, {"q": 1.0}),
        ]
    )
    assert run_both(policy, ticks) == [3, 5, 6, 3]


def test_golden_average_value_ratio_is_usage_over_target_times_status() -> None:
    # AverageValue target 100m, spec = status = 3, scale-up tolerance 0.13, value 0.339 (339m).
    # Go: usageRatio = 339 / (100 * 3) = 339/300 = 1.13 (the float64 nearest 1.13, same as 1.0 + 0.13)
    #     -> isWithin -> proposal = statusReplicas = 3 -> no change.
    # (339 / 100 / 3 = 1.1300000000000001 would fall outside and propose ceil(3.39) = 4.)
    up = ScalingRules(0, SelectPolicy.MAX, (ScalingRule(RuleType.PODS, 4, 15),), 0.13)
    policy = make_policy([("q", AV, 100)], scale_up=up)
    assert run_both(policy, _ticks([(0, 3, 3, 3, {"q": 0.339})])) == [3]


def test_golden_value_float_product_rounds_like_go() -> None:
    # Value target 1 (1000m), spec = ready = 25, value 0.28 -> ratio 280/1000 = 0.28;
    # 0.28 * 25.0 = 7.000000000000001 in float64 -> ceil = 8 (exact arithmetic would say 7).
    # Scale-down (window 300 holds the seed 25) -> stays 25. So start below it instead:
    # spec = ready = 25 with scale-down window 0, default rate (Percent 100 / 15 s) -> 8.
    down = _rules(0, (ScalingRule(RuleType.PERCENT, 100, 15),))
    policy = make_policy([("q", VAL, 1000)], max_replicas=30, scale_down=down)
    assert run_both(policy, _ticks([(0, 25, 25, 25, {"q": 0.28})])) == [8]


@pytest.fixture(scope="module", autouse=True)
def _report_examples():
    yield
    if EXAMPLES["count"]:
        print(f"\ndifferential: {EXAMPLES['count']} sequences, {EXAMPLES['ticks']} ticks compared")


def test_reference_float_helpers() -> None:
    from hpa_reference import go_fdiv, go_int32_of_float, milli_value

    assert go_fdiv(1.0, 0.0) == math.inf
    assert math.isnan(go_fdiv(0.0, 0.0))
    assert go_int32_of_float(math.nan) == -(2**31)
    assert go_int32_of_float(-2.7) == -2
    assert milli_value(0.0011) == 2
    assert milli_value(110.0) == 110_000
