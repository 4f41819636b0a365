"""What you simulate is what runs: the simulator's driver and the live service's driver, run over the same
trace, make identical decisions tick by tick.

Both sides run inside the same :func:`autoscaler.sim.run.simulate` loop over the same seeded fleet; only
the controller differs:

* sim:     :class:`autoscaler.sim.controllers.PolicyController` (reads the fleet view, calls ``step``);
* service: the real :class:`autoscaler.service.controller.Controller` with its real Kubernetes edge
  (``KubeActuator`` over HTTP through the official request path) against the API stand-in, whose
  Deployment, scale subresource and pods (with creation and Ready timestamps) are set from the
  simulated fleet before each tick; its signals edge answers with the simulated metrics pipeline's
  readings (the in-process equivalent of a Prometheus scraping the fleet). The service's written
  ``spec.replicas`` is what the fleet is scaled to.

The service measures load times from pod timestamps and ready counts from pod conditions: if the two
drivers built the core's input differently (status vs spec replicas, load-time samples, ready count),
their decisions would part within a few ticks, and this test fails.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kube_standin import KubeStandIn
from service_harness import make_controller

from autoscaler.core import Decision, MetricReading
from autoscaler.core.policy import ScalingPolicy
from autoscaler.policy import load_policy_file
from autoscaler.sim.controllers import FleetView, PolicyController
from autoscaler.sim.fleet import FleetConfig, LoadTime
from autoscaler.sim.pipeline import PipelineConfig
from autoscaler.sim.run import Slo, simulate
from autoscaler.sim.trace import TokenDistribution, flash_crowd

POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  minReplicas: 1
  maxReplicas: 12
  metrics:
    - name: queue
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 3}
    - name: tokens
      source: {preset: vllm.generation_tokens_per_second}
      target: {type: AverageValue, averageValue: 150}
    - name: gpu
      source: {preset: dcgm.gpu_util}
      target: {type: Utilization, averageUtilization: 90}
  predictive: {metric: tokens, quantile: 0.9, seasonality: [daily], historyDays: 1}
  warmPool: {minSpare: 0, maxSpare: 2}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 60}
"""


SLO_POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  minReplicas: 1
  maxReplicas: 12
  slo: {objective: ttft, percentile: 95, seconds: 2}
"""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class Recording(PolicyController):
    def __init__(self, policy: ScalingPolicy) -> None:
        super().__init__(policy)
        self.decisions: list[tuple[float, Decision]] = []

    def tick(self, view: FleetView) -> tuple[int, str]:
        desired, reason = super().tick(view)
        assert self.last_decision is not None
        self.decisions.append((view.now_s, self.last_decision))
        return desired, reason


class _FleetSignals:
    """The signals edge: the simulated pipeline's readings for the tick being run."""

    def __init__(self) -> None:
        self.view: FleetView | None = None

    async def read(self, policies: Sequence[ScalingPolicy], *, now_s: float | None = None) -> _FleetSignals:
        return self

    def for_policy(self, policy: ScalingPolicy) -> Mapping[str, MetricReading]:
        assert self.view is not None
        return {spec.name: self.view.read(spec.source.preset or "") for spec in policy.signals}


class ServiceDriver:
    """The real service controller and the API stand-in, on an event loop of their own (the simulator's
    loop is synchronous); each simulated tick is one ``Controller.tick`` at the simulated time."""

    def __init__(self, policy_dir: Path, policy: ScalingPolicy, initial_replicas: int) -> None:
        self.policy = policy
        self.name = "service"
        self.interval_s = float(policy.interval_s)
        self.signals = _FleetSignals()
        self.decisions: list[tuple[float, Decision]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.kube = KubeStandIn()
        self._run(self.kube.__aenter__())
        self.kube.add_deployment("team-a", "chat-llm", initial_replicas)
        self.controller, self.client = make_controller(self.kube.url, policy_dir, self.signals)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self._run(self.client.close())
        self._run(self.kube.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def _sync(self, view: FleetView) -> None:
        """The cluster as the simulated fleet is now: the Deployment, its scale, its pods."""
        kube = self.kube
        deployment = kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")
        assert deployment is not None
        deployment["spec"]["replicas"] = view.spec_replicas
        deployment["status"].update(
            {"replicas": view.status_replicas or view.spec_replicas, "readyReplicas": view.ready_replicas}
        )
        kube.put_object("apps", "v1", "deployments", deployment)
        labels = deployment["spec"]["selector"]["matchLabels"]
        wanted: dict[str, dict[str, Any]] = {}
        for pod, seconds in view.load_times_s.items():  # Ready pods whose load was measured
            ready = {"type": "Ready", "status": "True", "lastTransitionTime": iso(1000.0 + seconds)}
            wanted[pod] = {"phase": "Running", "conditions": [ready], "created": iso(1000.0)}
        for i in range(view.ready_replicas - len(view.load_times_s)):  # the warm initial fleet
            wanted[f"warm-{i}"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        for i in range(view.spec_replicas - view.ready_replicas):  # loading
            wanted[f"loading-{i}"] = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
        for pod in kube.list_objects("", "v1", "pods", "team-a"):
            if pod["metadata"]["name"] not in wanted:
                del kube.objects[("", "v1", "pods", "team-a", pod["metadata"]["name"])]
        for name, spec in wanted.items():
            old = kube.get_object("", "v1", "pods", "team-a", name)
            meta: dict[str, Any] = {"name": name, "namespace": "team-a", "labels": dict(labels)}
            if old is not None:
                meta = old["metadata"]
            elif "created" in spec:
                meta["creationTimestamp"] = spec["created"]
            kube.put_object(
                "", "v1", "pods",
                {"metadata": meta, "status": {"phase": spec["phase"], "conditions": spec["conditions"]}},
            )  # fmt: skip

    def tick(self, view: FleetView) -> tuple[int, str]:
        self._sync(view)
        self.signals.view = view
        records = self._run(self.controller.tick(view.now_s))
        (record,) = records
        assert record.decision is not None, record.error
        self.decisions.append((view.now_s, record.decision))
        deployment = self.kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")
        assert deployment is not None
        return int(deployment["spec"]["replicas"]), record.decision.reason.value


def _run(controller: Any, fleet: FleetConfig) -> None:
    rng = np.random.default_rng(7)
    tokens_in, tokens_out = TokenDistribution(median=800, p95=2500), TokenDistribution(median=150, p95=600)
    trace = flash_crowd(rate_per_s=0.6, multiplier=5, start_s=900, minutes=8, duration_s=2400,
                        tokens_in=tokens_in, tokens_out=tokens_out, rng=np.random.default_rng(3))
    simulate(trace, controller, fleet_config=fleet, pipeline_config=PipelineConfig(), slo=Slo(), rng=rng,
             drain_s=120, progress=None)


@pytest.mark.parametrize("text", [POLICY, SLO_POLICY], ids=["ratios+predictive", "slo"])
def test_simulator_and_service_decide_identically(tmp_path: Path, text: str) -> None:
    (tmp_path / "chat.yaml").write_text(text)
    policy = load_policy_file(tmp_path / "chat.yaml")
    fleet = FleetConfig(max_concurrency=8, per_token_s=(0.04,) * 9, load_time=LoadTime(90.0, 90.0),
                        scheduling_delay_s=5.0, initial_replicas=2)
    sim = Recording(policy)
    _run(sim, fleet)
    service = ServiceDriver(tmp_path, policy, fleet.initial_replicas)
    try:
        _run(service, fleet)
    finally:
        service.close()

    assert len(sim.decisions) == len(service.decisions) > 150
    for (t_sim, ours), (t_svc, theirs) in zip(sim.decisions, service.decisions, strict=True):
        assert t_sim == t_svc
        assert (ours.desired_replicas, ours.reason, ours.message, dict(ours.proposals)) == (
            theirs.desired_replicas, theirs.reason, theirs.message, dict(theirs.proposals)
        ), f"t={t_sim}: the simulator and the service decided differently"
    # the run exercised what matters: scaling both ways, measured load times in the horizon
    desired = [d.desired_replicas for _, d in sim.decisions]
    assert max(desired) >= 5 and desired[-1] < max(desired)
    assert any("measured p90" in s.note for _, d in sim.decisions for s in d.steps) or all(
        d.forecast is None for _, d in sim.decisions
    )
    assert sim.state.load_times, "no load time was measured: the run did not scale up"
    if policy.slo is not None:  # the learned capacity is part of the memory both drivers keep
        assert sim.state.capacity is not None and sim.state.capacity.ticks > 150
        assert any(d.proposals.get("slo") for _, d in service.decisions)
