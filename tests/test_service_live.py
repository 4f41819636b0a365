"""The whole loop on real parts: signals from a real Prometheus (live exporter, batched fleet queries),
the controller deciding with the core, the scale written through the Kubernetes stand-in over HTTP.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kube_standin import KubeStandIn
from service_harness import make_controller

from autoscaler.prometheus import PrometheusClient, PrometheusConfig
from autoscaler.signals import FleetReader, SignalSettings

pytest_plugins = ["prometheus_server"]

POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  minReplicas: 1
  maxReplicas: 10
  metrics:
    - name: queue
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 2}
    - name: gpu
      source: {preset: dcgm.gpu_util}
      target: {type: Utilization, averageUtilization: 50}
"""


async def test_service_scales_on_real_signals(live_prometheus: Any, tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(POLICY)
    async with KubeStandIn() as kube, PrometheusClient(PrometheusConfig(url=live_prometheus.url)) as prom:
        kube.add_deployment("team-a", "chat-llm", 2, pod_names=["chat-llm-7d9f8c6b5-x2x4z", "chat-llm-7d9f8c6b5-q9z7m"])
        reader = FleetReader(prom, SignalSettings(scrape_interval_s=1))
        controller, client = make_controller(kube.url, tmp_path, reader)
        (record,) = await controller.tick(time.time())
        await client.close()
    assert record.reading is not None and record.decision is not None
    metrics = record.reading.metrics
    assert metrics["queue"].value == 8.0  # 3 + 5 waiting on chat-llm's two pods (chat's 100 excluded)
    assert metrics["gpu"].value == pytest.approx(70.0)  # mean of the 3 GPUs: 60, 80, 70
    # queue: ceil(8 / 2) = 4; gpu: ceil(1.4 x 2) = 3; max 4, within 2 + 4
    assert record.decision.proposals == {"queue": 4, "gpu": 3}
    assert record.wrote and kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")["spec"]["replicas"] == 4
    assert controller.published["team-a/chat"].decision.desired_replicas == 4
