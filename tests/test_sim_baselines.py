"""The named baselines are faithful, every run starts warm, and the report has a true cost floor.

Case matrix:
  ray-serve   desired count: Ray's arithmetic by hand (smoothing factors, the "stuck" step only when
              ceil(running x ratio) < running, bounds) | delays counted in 0.1 s loop iterations as
              Ray's int(delay / loop) | counter resets on hold and on a change of direction | never
              N -> 0 in one move; 1 -> 0 after downscale_to_zero_delay_s | cold start | the handle's
              metric: 0.5 s records averaged over the look-back, plus the queue, pushed every 10 s
  warm start  steady_state by Little's law | KPA and Ray seeded: no collapse at the first tick, where
              unseeded the KPA halves the fleet | simulate sizes the fleet and seeds the windows; off:
              the old cold start | the initial size respects floor and bounds
  no-wait     the old `oracle` name is an alias; the shipped files name it no-wait
  floor       the work bound by hand (fixed and batch-dependent per-token time) | in the report beside
              every policy, below every policy's GPU-hours, explained in the table and report.json
  empty       an empty trace is an error naming the file (simulate and scenario), never 100% SLO
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autoscaler.core import MetricReading
from autoscaler.policy import load_policy_file
from autoscaler.sim.compare import compare, gpu_hours_floor
from autoscaler.sim.controllers import (
    FleetView,
    KpaConfig,
    KpaController,
    NoWaitController,
    PolicyController,
    RayServeConfig,
    RayServeController,
    RayServeState,
    SteadyState,
    ray_desired_replicas,
    ray_serve_decide,
    steady_state,
)
from autoscaler.sim.fleet import FleetConfig, LoadTime
from autoscaler.sim.pipeline import PipelineConfig
from autoscaler.sim.report import summary_table, write_report
from autoscaler.sim.run import Slo, initial_replicas, simulate
from autoscaler.sim.scenario import ScenarioError, build_controller, load_baseline, load_scenario, load_trace
from autoscaler.sim.trace import Trace, TraceError

BASELINES = Path("simulations/baselines").resolve()


def _no_read(preset: str) -> MetricReading:
    raise AssertionError(f"a baseline read {preset}: KPA and Ray read their proxies, not Prometheus")


def _view(now: float, in_flight: int, ready: int, spec: int | None = None) -> FleetView:
    return FleetView(now_s=now, spec_replicas=ready if spec is None else spec, ready_replicas=ready,
                     in_flight=in_flight, read=_no_read)


# ------------------------------------------------------------------------------------------------ Ray Serve


@pytest.mark.parametrize(
    ("running", "total", "kw", "expected"),
    [
        # ratio 7.5 / (2 x 4) = 0.9375: ceil(4 x 0.9375) = 4 is not < 4, so Ray holds (the old hack said 3)
        (4, 7.5, {}, 4),
        (4, 5.0, {}, 3),  # ratio 0.625: ceil(2.5) = 3
        # downscaling_factor 0.5: smoothed 1 + (0.625 - 1) x 0.5 = 0.8125, ceil(3.25) = 4 == running, and the
        # unsmoothed ceil(2.5) = 3 < 4: stuck by the factor alone, so one down
        (4, 5.0, {"downscaling_factor": 0.5}, 3),
        # smoothed 0.96875 -> ceil(3.875) = 4, unsmoothed ceil(3.75) = 4 is not < 4: hold
        (4, 7.5, {"downscaling_factor": 0.5}, 4),
        (2, 20.0, {}, 10),  # ratio 5
        (2, 20.0, {"upscaling_factor": 0.5}, 6),  # smoothed 1 + 4 x 0.5 = 3 -> ceil(6)
        (3, 0.0, {"min_replicas": 0}, 0),
        (3, 0.0, {}, 1),  # min_replicas 1
        (10, 1000.0, {"max_replicas": 40}, 40),
        (3, 6.0, {}, 3),  # exactly at target
    ],
)
def test_ray_desired_replicas_is_rays_arithmetic(running: int, total: float, kw: dict[str, float],
                                                 expected: int) -> None:
    config = RayServeConfig(target_ongoing_requests=2, **kw)  # type: ignore[arg-type]
    assert ray_desired_replicas(config, total_requests=total, running=running) == expected
    with pytest.raises(ValueError, match="cannot be zero"):
        ray_desired_replicas(config, total_requests=total, running=0)


def _calls(config: RayServeConfig, state: RayServeState, n: int, **kw: float) -> tuple[list[int], RayServeState]:
    seen = []
    for _ in range(n):
        desired, state, _ = ray_serve_decide(config, state, **kw)  # type: ignore[arg-type]
        seen.append(desired)
    return seen, state


def test_ray_delays_are_counted_in_loop_iterations() -> None:
    config = RayServeConfig(target_ongoing_requests=2)  # 30 s up, 600 s down, 0.1 s loop
    seen, state = _calls(config, RayServeState(), 301, total_requests=20, running=2, current_target=2)
    assert seen[:300] == [2] * 300 and seen[300] == 10  # int(30 / 0.1) = 300 in a row, the move on the 301st
    assert state.decision_counter == 0
    seen, _ = _calls(config, RayServeState(), 6001, total_requests=0, running=10, current_target=10)
    assert set(seen[:6000]) == {10} and seen[6000] == 1
    # Ray's own float quirk: int(0.3 / 0.1) == 2, so a 0.3 s delay moves on the 3rd call.
    quick = RayServeConfig(target_ongoing_requests=2, upscale_delay_s=0.3)
    assert _calls(quick, RayServeState(), 3, total_requests=20, running=2, current_target=2)[0] == [2, 2, 10]


def test_ray_counter_resets_on_hold_and_on_a_change_of_direction() -> None:
    config = RayServeConfig(target_ongoing_requests=2, upscale_delay_s=1.0, downscale_delay_s=1.0)  # 10 calls
    _, state = _calls(config, RayServeState(), 9, total_requests=20, running=2, current_target=2)
    assert state.decision_counter == 9
    _, state, reason = ray_serve_decide(config, state, total_requests=4, running=2, current_target=2)
    assert (state.decision_counter, reason) == (0, "hold")  # at target: reset
    _, state = _calls(config, state, 9, total_requests=20, running=2, current_target=2)
    _, state, _ = ray_serve_decide(config, state, total_requests=0, running=2, current_target=2)
    assert state.decision_counter == -1  # an upscale streak of 9 is dropped, the downscale one starts
    seen, _ = _calls(config, state, 11, total_requests=20, running=2, current_target=2)
    assert seen == [2] * 10 + [10]


def test_ray_scales_to_zero_only_from_one() -> None:
    config = RayServeConfig(target_ongoing_requests=2, min_replicas=0, downscale_delay_s=1.0,
                            downscale_to_zero_delay_s=3.0)
    seen, _ = _calls(config, RayServeState(), 11, total_requests=0, running=3, current_target=3)
    assert seen[-1] == 1 and set(seen[:-1]) == {3}  # desired 0, but N -> 0 goes to 1 first
    seen, _ = _calls(config, RayServeState(), 31, total_requests=0, running=1, current_target=1)
    assert seen[-1] == 0 and set(seen[:-1]) == {1}  # 1 -> 0 waits downscale_to_zero_delay_s (30 calls)
    default = RayServeConfig(target_ongoing_requests=2, min_replicas=0, downscale_delay_s=1.0)
    seen, _ = _calls(default, RayServeState(), 11, total_requests=0, running=1, current_target=1)
    assert seen[-1] == 0  # unset: the downscale delay


def test_ray_cold_start() -> None:
    config = RayServeConfig(target_ongoing_requests=2, min_replicas=0)
    assert ray_serve_decide(config, RayServeState(), total_requests=3, running=0, current_target=0)[0] == 1
    factor = RayServeConfig(target_ongoing_requests=2, min_replicas=0, upscaling_factor=2.5)
    assert ray_serve_decide(factor, RayServeState(), total_requests=3, running=0, current_target=0)[0] == 3
    assert ray_serve_decide(config, RayServeState(), total_requests=0, running=0, current_target=0)[0] == 0
    # replicas starting, none running: the target holds (no delay counted)
    desired, state, _ = ray_serve_decide(config, RayServeState(), total_requests=50, running=0, current_target=4)
    assert (desired, state.decision_counter) == (4, 0)


def test_ray_handle_metric_averages_running_and_adds_the_queue() -> None:
    """ready 2 x max_ongoing 4 = 8 slots. In flight 4 before t = 5, then 12 (8 running, 4 queued).
    The push at t = 10.1 averages the records at 0.1, 0.6, ... 10.1 (10 of 4 and 11 of 8) and adds 4."""
    controller = RayServeController("ray", RayServeConfig(target_ongoing_requests=2, max_ongoing_requests=4))
    pushes = []
    for k in range(1, 150):
        now = round(0.1 * k, 6)
        controller.tick(_view(now, 4 if now < 5 else 12, ready=2))
        if controller.last_push_s == now:
            pushes.append((now, controller.pushed_total))
    assert pushes[0] == (0.1, 4.0)  # the first tick pushes
    assert pushes[1][0] == pytest.approx(10.1) and pushes[1][1] == pytest.approx((10 * 4 + 11 * 8) / 21 + 4)
    assert len(pushes) == 2  # every metrics_interval_s only
    # No replica running and requests queued: pushed at once, and the cold start follows.
    cold = RayServeController("ray", RayServeConfig(target_ongoing_requests=2, min_replicas=0))
    assert cold.tick(_view(0.1, 0, ready=0, spec=0)) == (0, "no running replica")
    assert cold.tick(_view(0.2, 3, ready=0, spec=0)) == (1, "cold start")


# ----------------------------------------------------------------------------------------------- warm start


def _constant_trace(rate_per_s: float = 2.0, duration_s: float = 1000.0, out_tokens: float = 10.0) -> Trace:
    arrivals = np.arange(0.0, duration_s, 1.0 / rate_per_s)
    return Trace(arrivals, np.zeros(len(arrivals)), np.full(len(arrivals), out_tokens), "constant")


HEADER = "apiVersion: inference-autoscaler.io/v1alpha1\n"
FLEET = FleetConfig(max_concurrency=8, per_token_s=(1.0,) * 9, prefill_tokens_per_s=math.inf,
                    load_time=LoadTime(100.0, 100.0), scheduling_delay_s=0.0, initial_replicas=1)


def test_steady_state_is_littles_law() -> None:
    steady = steady_state(_constant_trace(), FLEET)  # 2/s x 10 s of service
    assert steady.in_flight == pytest.approx(20.0) and steady.replicas_needed == 3 and steady.window_s == 300.0
    short = steady_state(_constant_trace(duration_s=100.0), FLEET, window_s=300.0)  # the last arrival at 99.5 s
    assert short.in_flight == pytest.approx(20.0) and short.window_s == 99.5
    one = steady_state(_constant_trace(duration_s=0.5), FLEET, window_s=300.0)
    assert one.in_flight == pytest.approx(10.0 / 300.0)


def test_kpa_warm_start_holds_a_warm_fleet() -> None:
    config = KpaConfig(target_concurrency=5.0)
    steady = SteadyState(40.0, 8, 300.0)
    warm = KpaController("kpa", config)
    assert warm.warm_start(steady, floor=2) == 8  # ceil(40 / 5)
    assert len(warm.samples) == 30 and {v for _, v in warm.samples} == {40.0}
    assert warm.tick(_view(2.0, 40, ready=8)) == (8, "stable")
    # the first tick still sees the fleet's opening (few in flight yet): the seeded window carries it
    assert KpaController("kpa", config).warm_start(steady, floor=2) == 8
    seeded = KpaController("kpa", config)
    seeded.warm_start(steady, floor=2)
    assert seeded.tick(_view(2.0, 5, ready=8))[0] == 8  # (29 x 40 + 5) / 30 = 38.8 -> 8
    cold = KpaController("kpa", config)
    assert cold.tick(_view(2.0, 5, ready=8)) == (4, "stable")  # unseeded: halved at the first tick
    assert KpaController("kpa", config).warm_start(steady, floor=12) == 12
    assert KpaController("kpa", KpaConfig(target_concurrency=5.0, max_replicas=6)).warm_start(steady, floor=2) == 6


def test_ray_warm_start_holds_a_warm_fleet() -> None:
    controller = RayServeController("ray", RayServeConfig(target_ongoing_requests=5.0, max_ongoing_requests=8))
    assert controller.warm_start(SteadyState(40.0, 8, 300.0), floor=2) == 8
    assert controller.pushed_total == 40.0 and len(controller.records) == 60
    for k in range(1, 100):  # ten seconds of a quiet opening: no push yet, nothing moves
        assert controller.tick(_view(round(0.1 * k, 6), 3, ready=8))[0] == 8


class _FirstTicks(KpaController):
    """The KPA, recording what it saw and decided over the first two minutes."""

    def __init__(self) -> None:
        super().__init__("kpa", KpaConfig(target_concurrency=5.0))
        self.seen: list[tuple[float, int, int]] = []

    def tick(self, view: FleetView) -> tuple[int, str]:
        desired, reason = super().tick(view)
        if view.now_s <= 120:
            self.seen.append((view.now_s, view.spec_replicas, desired))
        return desired, reason


def _first_ticks(warm: bool) -> list[tuple[float, int, int]]:
    trace = _constant_trace(rate_per_s=2.0, duration_s=600.0)  # 20 in flight: the KPA at target 5 holds 4
    controller = _FirstTicks()
    simulate(trace, controller, fleet_config=replace(FLEET, initial_replicas=4), pipeline_config=PipelineConfig(),
             slo=Slo(), rng=np.random.default_rng(0), drain_s=60, progress=None, warm_start=warm)
    return controller.seen


def test_simulate_starts_from_the_steady_state() -> None:
    warm = _first_ticks(True)
    assert warm[0] == (2.0, 4, 4) and min(d for _, _, d in warm) == 4  # sized and seeded: nothing collapses
    cold = _first_ticks(False)
    assert cold[0] == (2.0, 4, 2)  # empty windows (the old start): 5 in flight at t = 2 s halves the fleet


def test_initial_size_floor_and_bounds() -> None:
    steady = steady_state(_constant_trace(rate_per_s=2.0, duration_s=300.0), FLEET)  # 20 in flight
    kpa = KpaController("kpa", KpaConfig(target_concurrency=5.0))
    assert initial_replicas(kpa, replace(FLEET, initial_replicas=6), steady) == 6  # never below initialReplicas
    assert initial_replicas(KpaController("kpa", KpaConfig(target_concurrency=5.0)), FLEET, steady) == 4
    assert initial_replicas(KpaController("kpa", KpaConfig(target_concurrency=5.0)), FLEET, None) == 1  # cold
    no_wait = NoWaitController("no-wait", np.array([3, 3, 3], dtype=np.int64), 5.0)
    assert initial_replicas(no_wait, replace(FLEET, initial_replicas=6), steady) == 3  # its schedule is its start
    assert initial_replicas(no_wait, FLEET, None) == 3
    policy = load_policy_file("policies/team-a/chat.yaml", root="policies")
    # a policy: the replicas whose slots hold the opening level (ceil(20 / 8) = 3), within its bounds
    assert initial_replicas(PolicyController(policy), FLEET, steady) == max(3, policy.min_replicas)


# ------------------------------------------------------------------------------------------ no-wait, floor


def test_no_wait_is_the_old_oracle(tmp_path: Path) -> None:
    shipped = load_baseline(BASELINES / "no-wait.yaml")
    old = load_baseline(BASELINES / "oracle.yaml")
    assert (shipped.name, shipped.algorithm) == (old.name, old.algorithm) == ("no-wait", "no-wait")
    path = tmp_path / "mine.yaml"
    path.write_text(HEADER + "kind: SimulationBaseline\nmetadata: {name: mine}\nspec: {algorithm: oracle}\n")
    assert load_baseline(path).algorithm == "no-wait"
    controller = build_controller(load_baseline(path), _constant_trace(), FLEET, 60.0)
    assert isinstance(controller, NoWaitController) and controller.tick(_view(0.0, 0, 1))[1] == "no-wait"
    path.write_text(HEADER + "kind: SimulationBaseline\nspec: {algorithm: kpa, minReplicas: 0}\n")
    with pytest.raises(ScenarioError, match="minReplicas = 0: must be >= 1"):
        load_baseline(path)
    path.write_text(HEADER + "kind: SimulationBaseline\nspec: {algorithm: ray-serve, minReplicas: 0}\n")
    assert load_baseline(path).min_replicas == 0  # Ray Serve scales to zero
    path.write_text(HEADER + "kind: SimulationBaseline\nspec: {algorithm: ray-serve, parameters: {controlLoopSeconds: 0}}\n")
    with pytest.raises(ScenarioError, match=r"spec\.parameters\.controlLoopSeconds = 0: must be > 0"):
        load_baseline(path)


def test_baseline_parameters_are_checked_per_algorithm(tmp_path: Path) -> None:
    """A typo in a baseline's parameter used to be ignored silently (the default ran instead)."""
    path = tmp_path / "b.yaml"
    path.write_text(HEADER + "kind: SimulationBaseline\nspec:\n  algorithm: kpa\n"
                    "  parameters: {stableWindowSecond: 30, upscaleDelaySeconds: 5}\n")
    with pytest.raises(ScenarioError) as info:
        load_baseline(path)
    text = str(info.value)
    assert "b.yaml:5: spec.parameters.stableWindowSecond = 30: unknown field (did you mean 'stableWindowSeconds'?)" in text
    assert "spec.parameters.upscaleDelaySeconds = 5: unknown field" in text  # a Ray Serve key on a KPA
    path.write_text(HEADER + "kind: SimulationBaseline\nspec: {algorithm: kpa, parameters: "
                    "{targetConcurrency: 10, targetUtilization: 0.5}}\n")
    with pytest.raises(ScenarioError, match="set targetConcurrency or targetUtilization, not both"):
        load_baseline(path)
    path.write_text("kind: SimulationBaseline\nspec: {algorithm: kpa}\n")
    with pytest.raises(ScenarioError, match=r"b\.yaml:1: apiVersion: is required"):
        load_baseline(path)
    # absent parameters take the simulator's own defaults: Knative's and Ray Serve's
    path.write_text(HEADER + "kind: SimulationBaseline\nspec: {algorithm: ray-serve}\n")
    ray = build_controller(load_baseline(path), _constant_trace(), FLEET, 60.0)
    assert isinstance(ray, RayServeController) and ray.config == RayServeConfig(max_ongoing_requests=FLEET.max_concurrency)
    path.write_text(HEADER + "kind: SimulationBaseline\nspec: {algorithm: kpa}\n")
    kpa = build_controller(load_baseline(path), _constant_trace(), FLEET, 60.0)
    assert isinstance(kpa, KpaController)
    assert kpa.config == KpaConfig(target_concurrency=FLEET.max_concurrency * 0.7)


def test_gpu_hours_floor_by_hand() -> None:
    trace = Trace(np.array([0.0, 1.0, 2.0]), np.full(3, 1000.0), np.array([10.0, 20.0, 30.0]))
    fixed = FleetConfig(max_concurrency=4, per_token_s=(0.5,) * 5, prefill_tokens_per_s=1000.0, gpus_per_replica=2)
    # service (1 + 5) + (1 + 10) + (1 + 15) = 33 slot-seconds, over 4 slots, x 2 GPUs
    assert gpu_hours_floor(trace, fixed) == pytest.approx(33 / 4 * 2 / 3600)
    # per-token 1, 1, 2, 4 s at batch 1..4: throughput b / t is best at b = 2 (2 tokens/s), so the bound
    # takes 4 / 2 = 2 s per token: (1 + 20) + (1 + 40) + (1 + 60) = 123
    profile = FleetConfig(max_concurrency=4, per_token_s=(1.0, 1.0, 1.0, 2.0, 4.0), prefill_tokens_per_s=1000.0)
    assert gpu_hours_floor(trace, profile) == pytest.approx(123 / 4 / 3600)


def _scenario(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text("apiVersion: inference-autoscaler.io/v1alpha1\nkind: Simulation\nmetadata: {name: t}\n" + body,
                    encoding="utf-8")
    return path


def test_report_has_the_floor_beside_every_policy(tmp_path: Path) -> None:
    path = _scenario(tmp_path, f"""spec:
  trace: {{synthetic: {{kind: flashCrowd, ratePerSecond: 4, multiplier: 4, startSeconds: 300, minutes: 5,
                      durationSeconds: 1200}}}}
  fleet: {{maxConcurrency: 16, decodeSecondsPerToken: 0.02, loadTimeSeconds: {{distribution: fixed, value: 60}}}}
  slo: {{latencySeconds: 30}}
  policies: [{BASELINES / 'knative-kpa.yaml'}, {BASELINES / 'ray-serve.yaml'}, {BASELINES / 'no-wait.yaml'},
             {BASELINES / 'static-peak.yaml'}]
""")
    comparison = compare(load_scenario(path), progress=None)
    floor = comparison.gpu_hours_floor
    assert floor > 0
    for result in comparison.results:
        keys = list(result.summary)
        assert keys[keys.index("gpuHours") + 1] == "gpuHoursFloor"
        assert result.summary["gpuHoursFloor"] == round(floor, 4) < result.summary["gpuHours"]
    table = summary_table(comparison.results)
    assert "x floor" in table and f"Cost floor: {floor:.2f} GPU-h" in table and "no request ever" in table
    write_report(tmp_path / "out", scenario="t", seed=1, slo=Slo(), results=comparison.results,
                 demand_t=comparison.demand_t, demand_replicas=comparison.demand_replicas, plots=False)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["bounds"]["gpuHoursFloor"] == round(floor, 4) and "work bound" in report["bounds"]["gpuHoursFloorIs"]


def test_warm_start_scenario_key(tmp_path: Path) -> None:
    body = "spec:\n  trace: {synthetic: {kind: poisson}}\n  policies: [x.yaml]\n"
    scenario = load_scenario(_scenario(tmp_path, body))
    assert (scenario.warm_start, scenario.warm_window_s) == (True, 300.0)
    assert not load_scenario(_scenario(tmp_path, body + "  warmStart: false\n")).warm_start
    scenario = load_scenario(_scenario(tmp_path, body + "  warmStart: {windowSeconds: 120}\n"))
    assert (scenario.warm_start, scenario.warm_window_s) == (True, 120.0)
    with pytest.raises(ScenarioError, match=r"s\.yaml:7: spec\.warmStart = yes: must be true, false or \{windowSeconds: N\}"):
        load_scenario(_scenario(tmp_path, body + "  warmStart: 'yes'\n"))


# -------------------------------------------------------------------------------------------------- empty


def test_empty_trace_is_an_error_naming_the_file(tmp_path: Path) -> None:
    empty = Trace(np.zeros(0), np.zeros(0), np.zeros(0), "nothing.csv")
    with pytest.raises(TraceError, match=r"nothing\.csv: no requests"):
        simulate(empty, KpaController("kpa", KpaConfig(target_concurrency=5.0)), fleet_config=FLEET,
                 pipeline_config=PipelineConfig(), slo=Slo(), rng=np.random.default_rng(0), progress=None)
    csv = tmp_path / "header-only.csv"
    csv.write_text("arrival_s,input_tokens,output_tokens\n", encoding="utf-8")
    path = _scenario(tmp_path, f"spec:\n  trace: {{path: {csv}, format: csv}}\n  policies: [x.yaml]\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml: spec\.trace: .*header-only\.csv: no requests"):
        load_trace(load_scenario(path))
    csv.write_text("arrival_s,input_tokens,output_tokens\n0.0,10,5\n1.0,10,5\n", encoding="utf-8")
    path = _scenario(tmp_path, f"spec:\n  trace: {{path: {csv}, format: csv}}\n  rateScale: 0.000001\n"
                               "  policies: [x.yaml]\n")
    with pytest.raises(ScenarioError, match="no requests after windowing and scaling"):
        load_trace(load_scenario(path))
