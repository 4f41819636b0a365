"""The ``run`` command as a real process: kubeconfig to the stand-in, leader election, a scale write,
``/metrics`` (with the KEDA-path series), ``/healthz`` and ``/readyz``, JSON logs, and graceful
shutdown on SIGTERM (the tick finishes, the lease is released, exit 0).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from pathlib import Path

import aiohttp
from kube_standin import KubeStandIn, wait_until, write_kubeconfig
from service_harness import policy_text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_run_process_end_to_end(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    # Prometheus is unreachable here, so the policy's fallback drives the scale: the process still acts.
    (policies / "chat.yaml").write_text(
        policy_text(extra="fallback: {failureThreshold: 0, behavior: static, replicas: 3}\n").replace(
            "intervalSeconds: 15", "intervalSeconds: 1"
        )
    )
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 1)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, token="secret-token")
        port = free_port()
        exe = Path(sys.executable).parent / "inference-autoscaler"
        proc = await asyncio.create_subprocess_exec(
            str(exe),
            "run",
            "--policies",
            str(policies),
            "--prometheus",
            "http://127.0.0.1:9",
            "--timeout",
            "0.5",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            "ops",
            "--identity",
            "pod-a",
            "--listen",
            f"127.0.0.1:{port}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_until(
                lambda: kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")["spec"]["replicas"] == 3,
                timeout_s=20,
            )
            lease = kube.get_object("coordination.k8s.io", "v1", "leases", "ops", "inference-autoscaler")
            assert lease["spec"]["holderIdentity"] == "pod-a"
            assert all(r.user == "Bearer secret-token" for r in kube.requests)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                    text = await response.text()
                assert (
                    'inference_autoscaler_desired_replicas{namespace="team-a",policy="chat",target="chat-llm"} 3.0'
                    in text
                )
                assert "inference_autoscaler_leader 1.0" in text
                assert (
                    'inference_autoscaler_signal_unavailable_total{metric="queue",namespace="team-a",policy="chat",reason="error"}'
                    in text
                )
                for path in ("/healthz", "/readyz"):
                    async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                        assert response.status == 200 and await response.text() == "ok"
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), timeout=20)
            _, stderr = await proc.communicate()
        assert code == 0
        lease = kube.get_object("coordination.k8s.io", "v1", "leases", "ops", "inference-autoscaler")
        assert lease["spec"]["holderIdentity"] is None  # released on SIGTERM
        logs = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
        assert any(entry["message"] == "decision" and entry["policy"] == "team-a/chat" for entry in logs)
        assert logs[-1]["message"] == "stopped"
        state = kube.get_object("", "v1", "configmaps", "ops", "inference-autoscaler-state")
        assert "states.json.z" in state["binaryData"]


async def test_run_serves_policy_objects_without_files_and_writes_their_status(tmp_path: Path) -> None:
    """``run --policy-objects`` and no ``--policies``: a team's ScalingPolicy object is the only policy;
    the process scales its target (the fallback drives it: no Prometheus) from watched caches and writes
    the object's status. Neither option: a usage error naming both."""
    import yaml
    from kube_standin import crd_types

    from autoscaler.core.policy import API_GROUP
    from autoscaler.policy.crd import crd_documents

    exe = Path(sys.executable).parent / "inference-autoscaler"
    async with KubeStandIn() as kube:
        for crd in crd_documents().values():
            for rtype in crd_types(crd):
                kube.resources[(rtype.group, rtype.version, rtype.plural)] = rtype
        kube.add_deployment("team-a", "chat-llm", 1)
        doc = yaml.safe_load(policy_text(extra="fallback: {failureThreshold: 0, behavior: static, replicas: 3}\n")
                             .replace("intervalSeconds: 15", "intervalSeconds: 1"))
        doc["metadata"]["generation"] = 1  # as the API server sets it on create
        kube.put_object(API_GROUP, "v1alpha1", "scalingpolicies", doc)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        common = ["--prometheus", "http://127.0.0.1:9", "--timeout", "0.5", "--kubeconfig", str(kubeconfig),
                  "--namespace", "ops", "--identity", "pod-a", "--listen", f"127.0.0.1:{free_port()}"]
        refused = await asyncio.create_subprocess_exec(str(exe), "run", *common, stderr=asyncio.subprocess.PIPE)
        _, stderr = await refused.communicate()
        assert refused.returncode == 2 and b"--policies DIR, --policy-objects, or both" in stderr
        proc = await asyncio.create_subprocess_exec(
            str(exe), "run", "--policy-objects", *common, stderr=asyncio.subprocess.PIPE
        )
        try:
            await wait_until(
                lambda: kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")["spec"]["replicas"] == 3
                and bool((kube.get_object(API_GROUP, "v1alpha1", "scalingpolicies", "team-a", "chat") or {})
                         .get("status", {}).get("lastScaleTime")),
                timeout_s=20,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), timeout=20)
        status = kube.get_object(API_GROUP, "v1alpha1", "scalingpolicies", "team-a", "chat")["status"]
        watches = kube.watch_requests()
    assert code == 0
    assert status["desiredReplicas"] == 3 and status["observedGeneration"] == 1
    fallback = next(c for c in status["conditions"] if c["type"] == "Fallback")
    assert fallback["status"] == "True"
    assert {w.path for w in watches} >= {"/apis/inference-autoscaler.io/v1alpha1/scalingpolicies", "/api/v1/pods",
                                         "/apis/apps/v1/deployments"}
