"""SLO sizing (autoscaler/core/slo.py) and its place in the step.

Case matrix:
* Erlang C against closed forms (c = 1: C = rho; c = 2) and the staffing search against a brute force;
* capacity learning: the batch limit is measured from saturated ticks (prior or lower bound before),
  exploration only while the objective holds with room and the replicas are in use, a latency
  violation without a queue shrinks the usable share at once, one at <= 1 request per replica is
  reported as unreachable and does not shrink it; broken readings teach nothing;
* convergence on a simulated fleet whose batch limit is known (the simulator's maxConcurrency);
* properties (hypothesis): a backlog never counts for more than itself (no runaway), a scale-down
  never goes below what the objective needs now, unavailable or broken in-flight counts never scale
  down, decisions are deterministic;
* policy files: spec.slo validation errors name the field; the effective document round-trips;
* the learned capacity persists in the target state (and garbage in it is refused).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.core import MetricReading
from autoscaler.core.decide import SLO, _slo_plan
from autoscaler.core.model import Observation
from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.slo import (
    DEFAULT_SLOTS,
    CapacityEstimate,
    _service_time,
    demand,
    erlang_c,
    initial_capacity,
    learn_capacity,
    slots_for_wait,
)
from autoscaler.core.step import TargetReading, TargetState, observe, step
from autoscaler.policy import load_policy_file
from autoscaler.policy.loader import load_policies, policy_to_document

POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: chat, namespace: team-a}}
spec:
  target: {{apiVersion: apps/v1, kind: Deployment, name: chat-llm}}
  minReplicas: 1
  maxReplicas: 100
  slo: {{objective: {objective}, percentile: 95, seconds: {seconds}{extra}}}
"""


def slo_policy(tmp_path: Path, objective: str = "ttft", seconds: float = 2, extra: str = "") -> ScalingPolicy:
    path = tmp_path / "chat.yaml"
    path.write_text(POLICY.format(objective=objective, seconds=seconds, extra=extra))
    return load_policy_file(path)


def reading(policy: ScalingPolicy, *, spec: int, ready: int, running: float | None, waiting: float | None,
            latency: float | None = 0.5, completions: float | None = None) -> TargetReading:
    assert policy.slo is not None
    slo = policy.slo

    def r(value: float | None) -> MetricReading:
        return MetricReading.missing() if value is None else MetricReading.of(value)

    return TargetReading(spec_replicas=spec, ready_replicas=ready, metrics={
        slo.running.name: r(running), slo.waiting.name: r(waiting), slo.latency.name: r(latency),
        slo.completions.name: r(completions),
    })


# ----------------------------------------------------------------------------------------- queueing


def test_erlang_c_closed_forms() -> None:
    assert erlang_c(1, 0.6) == pytest.approx(0.6)  # M/M/1: P(wait) = rho
    a = 1.2  # M/M/2: C = a^2 / (a^2 + (2 - a)(1 + a))... via P0
    p0 = 1 / (1 + a + a * a / (2 * (1 - a / 2)))
    assert erlang_c(2, a) == pytest.approx(a * a / (2 * (1 - a / 2)) * p0)
    assert erlang_c(5, 0) == 0 and erlang_c(5, 5) == 1


@given(load=st.floats(0.1, 300), service=st.floats(0.05, 60), wait=st.floats(0.01, 30),
       pct=st.sampled_from([50.0, 90.0, 95.0, 99.0, 99.9]))
@settings(max_examples=150, deadline=None, derandomize=True)
def test_staffing_is_the_fewest_slots_that_meet_the_tail(load: float, service: float, wait: float, pct: float) -> None:
    c = slots_for_wait(load, service_s=service, wait_s=wait, percentile=pct, dispersion=1.0)
    miss = 1 - pct / 100

    def tail(servers: int) -> float:
        return erlang_c(servers, load) * math.exp(-(servers - load) * wait / service)

    assert c > load and tail(c) <= miss + 1e-12
    if c - 1 > load:
        assert tail(c - 1) > miss


def test_staffing_of_a_huge_load_is_fast_and_finite() -> None:
    c = slots_for_wait(2e5, service_s=10, wait_s=1, percentile=99.9, dispersion=25)
    assert 2e5 < c < 2.1e5


# ----------------------------------------------------------------------------------------- learning


def test_capacity_is_measured_from_saturated_ticks(tmp_path: Path) -> None:
    slo = slo_policy(tmp_path).slo
    assert slo is not None
    cap = initial_capacity(slo)
    assert (cap.slots, cap.origin) == (DEFAULT_SLOTS, "default")  # a continuous-batching engine's floor
    cap = learn_capacity(cap, slo, running=18, waiting=0, latency_s=1.2, ready=3, now=0)
    assert cap.slots == DEFAULT_SLOTS and cap.origin == "default"
    cap = learn_capacity(cap, slo, running=30, waiting=0, latency_s=1.2, ready=3, now=15)
    assert cap.slots == 10 and cap.origin == "default"  # the most seen running: a lower bound
    for i in range(40):  # saturated: 12 running per replica, a queue
        cap = learn_capacity(cap, slo, running=36 + (i % 3) - 1, waiting=10, latency_s=3.0, ready=3, now=15 * i)
    assert cap.origin == "observed" and cap.slots == pytest.approx(12, rel=0.03)
    assert cap.factor == 1.0  # latency during saturation is queueing, not a slow batch
    assert "batch limit from 40 saturated ticks" in cap.explain()


def test_exploration_only_with_room_and_real_use(tmp_path: Path) -> None:
    slo = slo_policy(tmp_path).slo
    assert slo is not None
    cap = CapacityEstimate(slots=8.0, ticks=100)
    idle = learn_capacity(cap, slo, running=4, waiting=0, latency_s=0.2, ready=4, now=0)
    assert idle.slots == 8.0  # 1 per replica of 8: no evidence either way
    busy = learn_capacity(replace(cap, max_seen=7.0), slo, running=16, waiting=0, latency_s=0.2, ready=4, now=0)
    assert busy.slots == pytest.approx(8.08)
    capped = learn_capacity(cap, slo, running=16, waiting=0, latency_s=0.2, ready=4, now=0)
    assert capped.slots == 8.0  # never more than 25 % over the most ever seen running (4 per replica here)
    tight = learn_capacity(cap, slo, running=16, waiting=0, latency_s=1.5, ready=4, now=0)
    assert tight.slots == 8.0  # latency near the bound: no bet
    observed = replace(cap, origin="observed", saturated_ticks=3, last_saturated_s=-1000)
    assert learn_capacity(observed, slo, running=16, waiting=0, latency_s=0.2, ready=4, now=0).slots == 8.0


def test_violation_without_queue_shrinks_at_once_and_recovers_slowly(tmp_path: Path) -> None:
    slo = slo_policy(tmp_path, objective="e2e", seconds=10).slo
    assert slo is not None
    cap = CapacityEstimate(slots=16.0, origin="observed", saturated_ticks=5, last_saturated_s=-1e9)
    short = learn_capacity(cap, slo, running=40, waiting=0, latency_s=14.0, ready=4, now=0, completions=40)
    assert short.factor == 1.0 and short.violations == 1  # S = 1 s: the tail is waiting or long requests
    ttft = slo_policy(tmp_path, objective="ttft", seconds=2).slo
    assert ttft is not None
    assert learn_capacity(cap, ttft, running=40, waiting=0, latency_s=3.0, ready=4, now=0, completions=4).factor == 1
    for i in range(4):  # a minute of violations at 10 per replica, S = 10 s
        cap = learn_capacity(cap, slo, running=40, waiting=0, latency_s=14.0, ready=4, now=15 * i, completions=4)
        assert (cap.per_replica < 10) == (i == 3)  # one bad tick is not evidence; a minute is
    assert cap.violations == 4 and cap.shrunk_at == 10
    shrunk = cap.per_replica
    for i in range(20):
        cap = learn_capacity(cap, slo, running=4 * cap.per_replica, waiting=0, latency_s=5.0, ready=4, now=15 * i,
                             completions=4)
    assert shrunk < cap.per_replica < shrunk * 1.2  # slowly back
    unreachable = learn_capacity(cap, slo, running=3, waiting=0, latency_s=30.0, ready=4, now=1000)
    assert unreachable.factor == cap.factor and unreachable.unreachable_s == 1000
    # a shrink that does not help (still failing at half the load) is undone: not a capacity problem
    undone = learn_capacity(cap, slo, running=4 * 0.5 * 10, waiting=0, latency_s=14.0, ready=4, now=2000,
                            completions=2)
    assert undone.factor == 1.0 and undone.unreachable_s == 2000 and undone.shrunk_at is None


@pytest.mark.parametrize("bad", [None, math.nan, -5.0, math.inf])
def test_broken_readings_teach_nothing(tmp_path: Path, bad: float | None) -> None:
    slo = slo_policy(tmp_path).slo
    assert slo is not None
    cap = CapacityEstimate(slots=8.0)
    assert learn_capacity(cap, slo, running=bad, waiting=3, latency_s=1, ready=2, now=0) == cap
    assert learn_capacity(cap, slo, running=10, waiting=bad, latency_s=1, ready=2, now=0) == cap
    assert learn_capacity(cap, slo, running=10, waiting=3, latency_s=1, ready=0, now=0) == cap


def test_capacity_converges_on_a_simulated_fleet_with_a_known_batch_limit(tmp_path: Path) -> None:
    """The simulator's replicas run at most 12 requests; nobody tells the policy."""
    from autoscaler.sim.controllers import PolicyController
    from autoscaler.sim.fleet import FleetConfig, LoadTime
    from autoscaler.sim.pipeline import PipelineConfig
    from autoscaler.sim.run import Slo, simulate
    from autoscaler.sim.trace import TokenDistribution, flash_crowd

    policy = slo_policy(tmp_path)
    trace = flash_crowd(rate_per_s=1.5, multiplier=3, start_s=3600, minutes=10, duration_s=3 * 3600,
                        tokens_in=TokenDistribution(median=500, p95=2000),
                        tokens_out=TokenDistribution(median=150, p95=500), rng=np.random.default_rng(5))
    fleet = FleetConfig(max_concurrency=12, per_token_s=(0.04,) * 13, load_time=LoadTime(90, 120),
                        initial_replicas=1)
    controller = PolicyController(policy)
    simulate(trace, controller, fleet_config=fleet, pipeline_config=PipelineConfig(), slo=Slo(2.0, "ttft"),
             rng=np.random.default_rng(1), progress=None)
    cap = controller.state.capacity
    assert cap is not None and cap.origin == "observed", cap
    assert cap.slots == pytest.approx(12, rel=0.1)


# ----------------------------------------------------------------------------------------- properties

counts = st.one_of(st.none(), st.floats(-10, 5000), st.sampled_from([math.nan, math.inf, -math.inf, -1.0]))


loads = st.one_of(st.just(0.0), st.floats(0.01, 3000))  # no subnormal counts: they are not requests


@given(running=loads, waiting=loads, completions=st.one_of(st.none(), st.just(0.0), st.floats(0.01, 500)),
       slots=st.floats(1, 64))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_a_backlog_never_counts_for_more_than_itself(running: float, waiting: float, completions: float | None,
                                                     slots: float) -> None:
    policy = _POLICY
    assert policy.slo is not None
    load = demand(policy.slo, running=running, waiting=waiting, completions=completions, interval_s=15)
    assert load is not None
    assert running <= load[0] <= running + waiting + 1e-9
    obs = Observation(spec_replicas=1, ready_replicas=1, metrics=reading(  # at 1: no scale-down dead band
        policy, spec=1, ready=1, running=running, waiting=waiting, completions=completions).metrics,
        capacity=CapacityEstimate(slots=slots))
    plan = _slo_plan(policy, obs, 1000.0)
    assert plan is not None
    everything = obs.metrics[policy.slo.running.name].value + obs.metrics[policy.slo.waiting.name].value  # type: ignore[operator]
    same_service = completions if _service_time(running, completions) is not None else None  # same knowledge
    worst = Observation(spec_replicas=1, ready_replicas=1, metrics=reading(
        policy, spec=1, ready=1, running=everything, waiting=0, completions=same_service).metrics,
        capacity=CapacityEstimate(slots=slots))
    bound = _slo_plan(policy, worst, 1000.0)
    assert bound is not None and plan.replicas <= bound.replicas  # draining never needs more than serving all


def _policy_for_properties() -> ScalingPolicy:
    import tempfile

    return slo_policy(Path(tempfile.mkdtemp()))


_POLICY = _policy_for_properties()


@given(ticks=st.lists(st.tuples(counts, counts, st.one_of(st.none(), st.floats(0, 100)),
                                st.integers(0, 40)), min_size=1, max_size=40))
@settings(max_examples=120, deadline=None, derandomize=True)
def test_no_scale_down_below_the_need_now_nor_from_broken_counts(
    ticks: list[tuple[float | None, float | None, float | None, int]],
) -> None:
    policy = _POLICY
    assert policy.slo is not None
    state = TargetState()
    current = 10
    for i, (running, waiting, completions, ready) in enumerate(ticks):
        now = 15.0 * i
        ready = min(ready, current)
        tick = reading(policy, spec=current, ready=ready, running=running, waiting=waiting, completions=completions)
        observation, observed = observe(tick, state, policy, now)
        decision, new_state = step(tick, state, policy, now)
        again, _ = step(tick, state, policy, now)
        assert again == decision  # deterministic, and the input state is untouched
        if decision.desired_replicas < current:
            broken = any(v is None or not math.isfinite(v) or v < 0 for v in (running, waiting))
            assert not broken, f"scaled down from broken counts: {decision.message}"
            plan = _slo_plan(policy, observation, now)
            assert plan is not None and decision.desired_replicas >= min(plan.need_now, current)
            assert SLO in decision.proposals
        state, current = new_state, decision.desired_replicas
        assert observed.capacity == new_state.capacity


# ----------------------------------------------------------------------------------------- policy files


def test_slo_policy_file_errors_name_the_field(tmp_path: Path) -> None:
    base = POLICY.format(objective="ttft", seconds=2, extra="")
    cases = {
        "pct.yaml": (base.replace("percentile: 95", "percentile: 99"), "spec.slo.percentile = 99: the signal vllm.ttft_p95 is a p95"),
        "pred.yaml": (base + "  predictive: {metric: x}\n", "spec.predictive"),
        "none.yaml": (base.replace("  slo: {objective: ttft, percentile: 95, seconds: 2}\n", ""), "spec.metrics"),
        "obj.yaml": (base.replace("objective: ttft", "objective: ttf"), "spec.slo.objective = ttf"),
        "pool.yaml": (base + "  warmPool: {minSpare: 1, maxSpare: 3}\n", "with spec.slo only minSpare is used"),
    }
    for name, (text, _) in cases.items():
        (tmp_path / name).write_text(text.replace("name: chat", f"name: {name[:-5]}"))
    result = load_policies([tmp_path])
    messages = "\n".join(str(e) for e in result.errors)
    for name, (_, expected) in cases.items():
        assert any(name in str(e) and expected in str(e) for e in result.errors), (name, messages)
    assert result.policies == []


def test_effective_document_round_trips(tmp_path: Path) -> None:
    policy = slo_policy(tmp_path, extra=", concurrencyPerReplica: 12, engine: sglang")
    assert policy.slo is not None and policy.slo.running.source.preset == "sglang.running"
    import yaml

    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "p.yaml").write_text(yaml.safe_dump(policy_to_document(policy)))
    again = load_policy_file(tmp_path / "again" / "p.yaml")
    assert again.slo == policy.slo


def test_learned_capacity_persists_and_garbage_is_refused(tmp_path: Path) -> None:
    cap = CapacityEstimate(slots=12.5, factor=0.8, origin="observed", ticks=900, saturated_ticks=30,
                           last_saturated_s=1234.0, violations=2, held_at=7.5, shrunk_at=9.0)
    state = TargetState(capacity=cap)
    assert TargetState.from_json(state.to_json()).capacity == cap
    data = state.to_json()
    data["cap"] = {**data["cap"], "slots": -1}
    with pytest.raises(ValueError, match="capacity out of range"):
        TargetState.from_json(data)
