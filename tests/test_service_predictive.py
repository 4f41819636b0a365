"""The service's predictive edges: warm start of the forecast history from a real Prometheus (promtool
backfill, range queries), load times measured from pods (creation -> Ready), and the warm pool's
placeholder Deployment sized through its scale subresource.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from kube_standin import KubeStandIn
from service_harness import ScriptedSignals, make_controller

from autoscaler.prometheus import PrometheusClient, PrometheusConfig
from autoscaler.service.history import PrometheusHistory

pytest_plugins = ["prometheus_server"]
pytest.register_assert_rewrite("prometheus_server")

from prometheus_server import HISTORY_START_S, HISTORY_TOKENS_PER_S, HistoryPrometheus  # noqa: E402

PREDICTIVE = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  minReplicas: 1
  maxReplicas: 20
  metrics:
    - name: tokens
      source: {preset: vllm.generation_tokens_per_second}
      target: {type: AverageValue, averageValue: 100}
  predictive: {metric: tokens, quantile: 0.9, seasonality: [daily], historyDays: 1}
  coldStart: {loadTimeQuantile: 0.5}
  warmPool:
    minSpare: 1
    maxSpare: 2
    placeholder: {name: chat-balloon, podsPerReplica: 2}
"""


async def test_warm_start_measured_load_time_and_placeholder(
    tmp_path: Path, history_prometheus: HistoryPrometheus
) -> None:
    (tmp_path / "chat.yaml").write_text(PREDICTIVE)
    total = sum(HISTORY_TOKENS_PER_S)  # 200 tokens/s over the backfilled 2 h
    now = HISTORY_START_S + 7200.0
    signals = ScriptedSignals()
    signals.set("team-a/chat", tokens=total)
    async with KubeStandIn() as kube, PrometheusClient(PrometheusConfig(url=history_prometheus.url)) as prom:
        kube.add_deployment("team-a", "chat-llm", 2)
        kube.add_deployment("team-a", "chat-balloon", 0)
        for i, pod in enumerate(kube.list_objects("", "v1", "pods", "team-a")):
            pod["metadata"]["creationTimestamp"] = "2024-01-01T01:00:00Z"
            ready_at = f"2024-01-01T01:0{2 + 2 * i}:00Z"  # loaded in 120 s and 240 s
            pod["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}]
        controller, client = make_controller(kube.url, tmp_path, signals)
        controller.history = PrometheusHistory(prom, window="5m")
        (record,) = await controller.tick(now)
        await client.close()
    state, decision = record.state, record.decision
    assert state is not None and decision is not None
    history = state.demand
    assert history is not None
    recent = history.values[-200:]  # the backfilled 2 h at 15 s, read with range queries
    assert np.isfinite(recent).sum() >= 150
    assert np.nanmedian(recent) == pytest.approx(total, rel=0.02)
    load_time_s = state.load_time_s(controller.entries["team-a/chat"].policy)
    assert load_time_s in (120.0, 240.0)  # the policy's p50 of the two measured load times
    assert decision.horizon_s == load_time_s + 15
    assert decision.forecast is not None and decision.forecast.point == pytest.approx(total, rel=0.05)
    needed = math.ceil(decision.forecast.upper / 100)
    assert decision.predictive_replicas == needed + 1  # + minSpare
    expected_pods = 2 * max(0, min(2, needed + 1 + 1 - decision.desired_replicas))
    assert decision.placeholder_pods == expected_pods > 0
    balloon = kube.get_object("apps", "v1", "deployments", "team-a", "chat-balloon")
    assert balloon["spec"]["replicas"] == expected_pods
    exported = controller.telemetry.exposition().decode()
    assert f'inference_autoscaler_placeholder_pods{{namespace="team-a",policy="chat"}} {float(expected_pods)}' in exported
    assert f'inference_autoscaler_predictive_replicas{{namespace="team-a",policy="chat"}} {float(needed + 1)}' in exported
    assert 'inference_autoscaler_forecast_demand_upper{namespace="team-a",policy="chat"}' in exported
