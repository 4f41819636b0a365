"""``decide`` per call for a 4-metric policy in steady state (goal: <= 50 us median on this machine).

Baseline, measured in the same run: ``json.loads`` of the observation line that carries the same
data (what replay pays just to read a tick). The state carries a realistic history: 20 minutes of
recommendations at 15 s ticks and recent scale events.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from autoscaler.core import MetricReading, Observation, ScalerState, decide
from autoscaler.policy import load_policy_file

REPO = Path(__file__).resolve().parent.parent
POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: bench, namespace: bench}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: llm}
  maxReplicas: 64
  metrics:
    - {name: queue, source: {preset: vllm.queue_depth}, target: {type: AverageValue, averageValue: 5}}
    - {name: gpu, source: {preset: dcgm.gpu_util}, target: {type: Utilization, averageUtilization: 70}}
    - {name: p95, source: {preset: vllm.e2e_latency_p95}, target: {type: Value, value: 8}}
    - name: tokens
      source: {preset: vllm.generation_tokens_per_second}
      target: {type: AverageValue, averageValue: 2k}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 1200}
"""


def _timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1000)
    return out


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(POLICY)
        policy = load_policy_file(path)
    state = ScalerState()
    t = 0.0
    values = {"queue": 40.0, "gpu": 77.0, "p95": 6.5, "tokens": 15000.0}
    # warm up a realistic state: 80 ticks of history with some scale changes
    current = 8
    for i in range(80):
        t += 15
        wobble = 1 + 0.3 * ((i % 7) - 3) / 3
        obs = Observation(current, current, {k: MetricReading.of(v * wobble) for k, v in values.items()})
        decision, state = decide(obs, state, policy, t)
        current = decision.desired_replicas
    obs = Observation(current, current, {k: MetricReading.of(v) for k, v in values.items()})
    line = json.dumps({"time": t + 15, "replicas": current, "readyReplicas": current, "metrics": values})
    n = 20_000
    decide_us = _timed(lambda: decide(obs, state, policy, t + 15), n)
    json_us = _timed(lambda: json.loads(line), n)
    median_decide = statistics.median(decide_us)
    median_json = statistics.median(json_us)
    p99 = statistics.quantiles(decide_us, n=100)[98]
    print(
        f"   decide, 4 metrics, {len(state.recommendations)} recommendations in state: "
        f"median {median_decide:.1f} us, p99 {p99:.1f} us over {n} calls (goal <= 50 us median)"
    )
    print(
        f"   baseline json.loads of the tick's line: median {median_json:.2f} us; "
        f"ratio decide/json.loads = {median_decide / median_json:.1f}x"
    )
