"""A harness for the service: the controller wired to the Kubernetes stand-in over real HTTP, a
scripted signal source (or the real Prometheus reader), an injected clock, and a policy directory."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoscaler.core import MetricReading
from autoscaler.core.policy import ScalingPolicy
from autoscaler.service.actuator import ClusterCache, KubeActuator
from autoscaler.service.controller import Controller, ControllerSettings, Leadership
from autoscaler.service.kube import KubeClient, KubeConfig
from autoscaler.service.policies import PolicyDirectory
from autoscaler.service.state import ConfigMapStateStore
from autoscaler.service.telemetry import Telemetry

POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  target: {{apiVersion: apps/v1, kind: Deployment, name: {target}}}
  minReplicas: 1
  maxReplicas: 20
  mode: {mode}
  intervalSeconds: 15
  metrics:
    - name: queue
      source: {{preset: vllm.queue_depth}}
      target: {{type: AverageValue, averageValue: 5}}
{extra}"""


def policy_text(
    name: str = "chat", namespace: str = "team-a", target: str = "chat-llm", mode: str = "patch", extra: str = ""
) -> str:
    return POLICY.format(
        name=name,
        namespace=namespace,
        target=target,
        mode=mode,
        extra=textwrap.indent(textwrap.dedent(extra), "  ") if extra else "",
    )


class Flag:
    """A leadership whose answer the test flips (e.g. from inside a request hook)."""

    def __init__(self) -> None:
        self.leading = True

    def is_leader(self) -> bool:
        return self.leading


@dataclass
class _Signals:
    values: Mapping[str, Mapping[str, MetricReading]]

    def for_policy(self, policy: ScalingPolicy) -> Mapping[str, MetricReading]:
        return self.values.get(policy.key, {})


@dataclass
class ScriptedSignals:
    """Values the test sets per policy key and metric (None: unavailable); counts reads."""

    values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    reads: int = 0
    fail: bool = False

    def set(self, key: str, **metrics: float | None) -> None:
        self.values.setdefault(key, {}).update(metrics)

    async def read(self, policies: Sequence[ScalingPolicy], *, now_s: float | None = None) -> _Signals:
        self.reads += 1
        if self.fail:
            raise RuntimeError("prometheus is down")
        out: dict[str, dict[str, MetricReading]] = {}
        for policy in policies:
            got = self.values.get(policy.key, {})
            out[policy.key] = {
                m.name: (MetricReading.of(got[m.name]) if got.get(m.name) is not None else MetricReading.missing())
                for m in policy.metrics
            }
        return _Signals(out)


def make_controller(
    url: str,
    policy_dir: Path,
    signals: object,
    *,
    leadership: Leadership | None = None,
    dry_run: bool = False,
    persist_namespace: str | None = "ops",
    namespaces: Sequence[str] = (),
    cache: ClusterCache | None = None,
    client: KubeClient | None = None,
) -> tuple[Controller, KubeClient]:
    client = client or KubeClient(KubeConfig(host=url, retries=1, backoff_base_s=0.01))
    store = ConfigMapStateStore(client, namespace=persist_namespace, name="ia-state") if persist_namespace else None
    controller = Controller(
        policies=PolicyDirectory(policy_dir, namespaces=namespaces),
        signals=signals,  # type: ignore[arg-type]
        actuator=KubeActuator(client, clock=lambda: 1_800_000_000.0, cache=cache),
        telemetry=Telemetry(),
        store=store,
        leadership=leadership,
        settings=ControllerSettings(dry_run=dry_run),
        clock=lambda: 0.0,
    )
    return controller, client
