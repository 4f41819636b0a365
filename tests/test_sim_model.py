"""The fleet model, the metrics pipeline and the named baselines, step by step.

Case matrix:
  fleet      continuous batching up to maxConcurrency | FIFO order of starts | ready only after the load
             time | scale-down: loading first, then idle, then drain (gone when the last request ends)
             | per-token time from the batch size (profile) | GPU-seconds and cold starts
  pipeline   queue depth split over pods keeps the sum | rate over the window | p95 from the
             histogram | GPU util reads 100 with one sequence | no ready pod -> missing, never 0
  baselines  KPA panic holds and never scales down | Ray Serve waits upscale/downscale delays |
             oracle schedule leads the need by the load time | offered concurrency sweep
  decide     the simulator's decisions equal `decide` replayed over the same observations
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autoscaler.core import Observation, ScalerState, decide
from autoscaler.policy import load_policy_file
from autoscaler.sim import kernel
from autoscaler.sim.controllers import (
    FleetView,
    KpaConfig,
    KpaState,
    PolicyController,
    RayServeConfig,
    RayServeState,
    kpa_decide,
    offered_concurrency,
    oracle_schedule,
    ray_serve_decide,
)
from autoscaler.sim.fleet import Fleet, FleetConfig, LoadTime, decode_profile
from autoscaler.sim.pipeline import MetricsPipeline, PipelineConfig
from autoscaler.sim.run import Slo, simulate
from autoscaler.sim.trace import Trace

# SplitwiseSim's perf_model.csv rows for llama2-70b / a100-80gb / TP 4, unchanged (README and licence beside it)
PROFILE = str(Path(__file__).resolve().parent.parent / "simulations" / "profiles" / "splitwise-llama2-70b-a100-tp4.csv")


def _trace(arrivals: list[float], out_tokens: float = 10.0) -> Trace:
    n = len(arrivals)
    return Trace(np.asarray(arrivals, dtype=np.float64), np.zeros(n), np.full(n, out_tokens))


def _fleet(trace: Trace, **kw: object) -> Fleet:
    config = FleetConfig(**{"max_concurrency": 2, "per_token_s": (1.0,) * 3, "prefill_tokens_per_s": math.inf,
                            "load_time": LoadTime(100.0, 100.0), "scheduling_delay_s": 0.0,
                            "initial_replicas": 1, **kw})  # type: ignore[arg-type]
    return Fleet(config, trace, np.random.default_rng(0))


def test_continuous_batching_and_fifo() -> None:
    fleet = _fleet(_trace([0.0, 0.0, 0.0, 1.0]))  # one replica, 2 slots, 10 s each
    fleet.advance(100.0)
    assert fleet.start.tolist() == [0.0, 0.0, 10.0, 10.0]  # third waits for a slot; FIFO keeps order
    assert fleet.end.tolist() == [10.0, 10.0, 20.0, 20.0]


def test_new_replica_ready_only_after_load_time() -> None:
    fleet = _fleet(_trace([0.0, 0.0, 0.0, 0.0]), max_concurrency=1)
    fleet.advance(1.0)
    fleet.scale_to(2, 1.0)  # ready at 101
    fleet.advance(500.0)
    assert sorted(fleet.start.tolist()) == [0.0, 10.0, 20.0, 30.0]  # the new one never helped before 101
    fleet2 = _fleet(_trace([0.0] * 30), max_concurrency=1)
    fleet2.advance(1.0)
    fleet2.scale_to(2, 1.0)
    fleet2.advance(1000.0)
    assert np.count_nonzero(fleet2.start == 101.0) == 1


def test_scale_down_loading_then_idle_then_drain() -> None:
    fleet = _fleet(_trace([0.0]), initial_replicas=3)
    fleet.advance(1.0)  # the request runs on replica 0 (least loaded, lowest index)
    fleet.scale_to(4, 1.0)  # replica 3 loading
    fleet.scale_to(3, 2.0)
    assert fleet.rstate[3] == kernel.GONE
    fleet.scale_to(1, 2.0)  # two idle ready ones go; the busy one stays
    assert fleet.rstate[:3].tolist() == [kernel.READY, kernel.GONE, kernel.GONE]
    fleet.scale_to(0, 3.0)
    assert fleet.rstate[0] == kernel.DRAINING
    fleet.advance(50.0)
    assert fleet.rstate[0] == kernel.GONE and fleet.gone_at[0] == 10.0
    assert fleet.gpu_seconds(50.0) == pytest.approx(10.0 + 2.0 + 2.0 + 1.0)


def test_per_token_time_from_profile_batch_size() -> None:
    per_token = decode_profile(PROFILE, model="llama2-70b", hardware="a100-80gb", tensor_parallel=4,
                               max_concurrency=8)
    assert per_token[1] < per_token[8]  # bigger batches decode each token slower
    fleet = _fleet(_trace([0.0, 0.0]), max_concurrency=8, per_token_s=per_token)
    fleet.advance(100.0)
    assert fleet.per_token.tolist() == [per_token[1], per_token[2]]


def test_pipeline_signals() -> None:
    trace = _trace([0.0] * 5 + [float(t) for t in range(1, 60)])
    fleet = _fleet(trace, initial_replicas=2)
    pipe = MetricsPipeline(PipelineConfig(scrape_interval_s=15, rate_window_s=60, dcgm_collect_s=30), fleet)
    for t in np.arange(0, 121, 7.5).tolist():
        fleet.advance(t)
        if t % 30 == 0:
            pipe.collect_dcgm(t)
        if (t - 7.5) % 15 == 0:
            pipe.scrape(t)
        if t == 7.5:
            queue = pipe.read("vllm.queue_depth", t).value
            assert queue == fleet.waiting(7.5) and queue is not None and queue > 0
    gpu = pipe.read("dcgm.gpu_util", 120.0)
    assert gpu.value == 100.0  # both pods busy: DCGM reads 100 with any sequence running
    rate = pipe.read("vllm.generation_tokens_per_second", 120.0).value
    assert rate == pytest.approx(4.0, rel=0.15)  # 4 slots x 10 tokens per 10 s; credited at completion
    p95 = pipe.read("vllm.e2e_latency_p95", 120.0).value
    latencies = (fleet.end - trace.arrival_s)[(fleet.end > 52.5) & (fleet.end <= 112.5)]
    true_p95 = float(np.quantile(latencies, 0.95))
    assert 60 < true_p95 <= 120 and p95 is not None and 60 < p95 <= 120  # same vLLM bucket (60, 120]
    empty = _fleet(_trace([0.0]), initial_replicas=1)
    empty.scale_to(0, 0.0)
    pipe2 = MetricsPipeline(PipelineConfig(), empty)
    pipe2.scrape(1.0)
    assert pipe2.read("vllm.queue_depth", 1.0).value is None  # no pod: missing, never 0


def test_kpa_panic_never_scales_down() -> None:
    config = KpaConfig(target_concurrency=10, max_replicas=100)
    desired, state, reason = kpa_decide(config, KpaState(), stable_avg=20, panic_avg=100, ready=2, now=0)
    assert (desired, reason) == (10, "panic")
    desired, state, reason = kpa_decide(config, state, stable_avg=20, panic_avg=30, ready=10, now=10)
    assert (desired, reason) == (10, "panic")  # still inside the stable window after panic
    desired, _, reason = kpa_decide(config, state, stable_avg=20, panic_avg=30, ready=10, now=61)
    assert (desired, reason) == (5, "stable")  # max scale-down rate 2: 10 -> 5, not 2


def test_ray_serve_delays() -> None:
    config = RayServeConfig(target_ongoing_requests=2, upscale_delay_s=3, downscale_delay_s=5, control_loop_s=1)
    state = RayServeState()
    seen = []
    for _ in range(4):
        desired, state, _ = ray_serve_decide(config, state, total_requests=20, running=2, current_target=2)
        seen.append(desired)
    assert seen == [2, 2, 2, 10]
    seen = []
    for _ in range(6):
        desired, state, _ = ray_serve_decide(config, state, total_requests=0, running=10, current_target=10)
        seen.append(desired)
    assert seen == [10] * 5 + [1]


def test_offered_concurrency_and_oracle_schedule() -> None:
    peak = offered_concurrency(np.array([0.5, 1.5, 2.5]), np.array([10.0, 1.0, 0.1]), bin_s=1.0, horizon_s=12)
    assert peak[:4].tolist() == [1, 2, 2, 1] and peak[10] == 1 and peak[11] == 0
    need = np.array([0, 0, 0, 5, 0, 0, 0, 0], dtype=np.int64)
    assert oracle_schedule(need, bin_s=1.0, lookahead_s=2.0).tolist() == [0, 5, 5, 5, 0, 0, 0, 0]


def test_simulated_decisions_equal_decide_replayed() -> None:
    fixtures = Path(__file__).resolve().parent / "fixtures" / "policies"
    policy = load_policy_file(fixtures / "team-a" / "chat.yaml", root=fixtures)
    rng = np.random.default_rng(3)
    arrivals = np.sort(rng.uniform(0, 900, 4000))
    trace = Trace(arrivals, rng.integers(100, 2000, 4000).astype(float), rng.integers(10, 400, 4000).astype(float))
    recorded: list[tuple[Observation, float, int]] = []

    class Recording(PolicyController):
        def tick(self, view: FleetView) -> tuple[int, str]:
            readings = {m.name: view.read(m.source.preset or "") for m in policy.metrics}
            desired, reason = super().tick(view)
            obs = Observation(view.spec_replicas, view.ready_replicas, readings, view.spec_replicas)
            recorded.append((obs, view.now_s, desired))
            return desired, reason

    simulate(trace, Recording(policy), fleet_config=FleetConfig(max_concurrency=16), pipeline_config=PipelineConfig(),
             slo=Slo(), rng=np.random.default_rng(1), progress=None)
    state = ScalerState()
    assert len({d for _, _, d in recorded}) > 1  # the run did scale
    for obs, now, desired in recorded:  # the live path: decide over the same observations
        decision, state = decide(obs, state, policy, now)
        assert decision.desired_replicas == desired


def test_a_measured_window_ends_where_it_is_told_not_after_the_drain() -> None:
    """A tuning fold's part ends at its own end: the simulator's drain (empty replicas after the last
    request) must not count, or a short scale-down window looks cheaper than it is (review of tune)."""
    from autoscaler.sim.controllers import StaticController

    trace = Trace.of(np.arange(0.0, 3600.0, 1.0), np.full(3600, 100.0), np.full(3600, 10.0))
    config = FleetConfig(max_concurrency=16, per_token_s=(0.01,) * 17, prefill_tokens_per_s=math.inf)
    result = simulate(trace, StaticController("static", 3), fleet_config=config, pipeline_config=PipelineConfig(),
                      slo=Slo(), rng=np.random.default_rng(0), drain_s=600.0, progress=None, warm_start=False,
                      measure_from_s=1800.0, measure_to_s=3000.0)
    window = result.summary["window"]
    assert window["gpuHours"] == pytest.approx(3 * 1200 / 3600, rel=1e-3)  # 3 replicas x [1800, 3000)
    assert window["requests"] == 1200
    assert result.summary["gpuHours"] > 3 * 3600 / 3600  # the whole run holds them through the drain too
