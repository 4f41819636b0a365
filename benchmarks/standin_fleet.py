"""The Kubernetes API stand-in (``tests/kube_standin.py``) holding a fleet, in its own process: N
Deployments of 2 Ready pods each, named as ``bench_fleet``'s exporter names them, so that the service's
signals and pods line up. Prints its URL on stdout, then serves until killed. Used by ``bench_service``.

Usage: ``python benchmarks/standin_fleet.py N``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from bench_fleet import fleet  # noqa: E402
from kube_standin import KubeStandIn, now_rfc3339  # noqa: E402


def seed(kube: KubeStandIn, targets: int) -> None:
    """The objects put directly (no reconcile pass: it is quadratic in the fleet)."""
    kube.history_limit = 6 * targets + 1000
    stamp = now_rfc3339()
    for namespace, name, pods in fleet(targets):
        labels = {"app": name}
        kube.put_object("apps", "v1", "deployments", {
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "generation": 1},
            "spec": {"replicas": len(pods), "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "s"}]}}},
            "status": {"replicas": len(pods), "readyReplicas": len(pods)},
        })
        for pod in pods:
            kube.put_object("", "v1", "pods", {
                "metadata": {"name": pod, "namespace": namespace, "labels": dict(labels), "creationTimestamp": stamp},
                "spec": {"containers": [{"name": "s", "image": "vllm/vllm-openai"}]},
                "status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": stamp}]},
            })


async def main(targets: int) -> None:
    async with KubeStandIn() as kube:
        seed(kube, targets)
        print(kube.url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
