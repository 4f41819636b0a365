"""ScalingPolicy objects (issue 14, item 1), end to end against the stand-in with kubectl as the client:
the shipped CRDs are applied, a team applies its policy in its namespace, the service (watching the
objects) scales the target and writes the status, and ``kubectl get`` shows it change. Files and
objects together: one owner per target, the file first at start; an invalid new generation keeps the
last good one running and its status says why; a deleted object stops being served."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import yaml
from kube_standin import KubeStandIn, wait_until, write_kubeconfig
from service_harness import ScriptedSignals, policy_text

from autoscaler.policy.crd import CRD_FILES
from autoscaler.service.actuator import KubeActuator
from autoscaler.service.controller import Controller, WriteOutcome
from autoscaler.service.kube import KubeClient, KubeConfig
from autoscaler.service.policies import PolicyDirectory, PolicyObjects
from autoscaler.service.telemetry import Telemetry

T0 = 1_800_000_000.0
ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "deploy" / "helm" / "inference-autoscaler" / "crds"
GROUP = "inference-autoscaler.io"


def kubectl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(home / "kubeconfig")}
    return subprocess.run(
        ["kubectl", "--cache-dir", str(home / "cache"), *args], capture_output=True, text=True, timeout=60, env=env
    )


async def run_kubectl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = await asyncio.to_thread(kubectl, home, *args)
    return done


@contextlib.asynccontextmanager
async def service(kube: KubeStandIn, policy_dir: Path | None, signals: ScriptedSignals) -> AsyncIterator[Controller]:
    client = KubeClient(KubeConfig(host=kube.url, retries=1, backoff_base_s=0.01))
    objects = PolicyObjects(client)
    stop = asyncio.Event()
    task = asyncio.create_task(objects.run(stop))
    await wait_until(lambda: all(i.synced.is_set() for i in objects.informers()))
    controller = Controller(
        policies=PolicyDirectory(policy_dir, objects=objects),
        signals=signals,  # type: ignore[arg-type]
        actuator=KubeActuator(client, clock=lambda: T0),
        telemetry=Telemetry(),
        clock=lambda: T0,
    )
    try:
        yield controller
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await client.close()


def team_policy(**spec: object) -> dict[str, object]:
    doc = yaml.safe_load(policy_text())
    doc["spec"].update(spec)
    return doc  # type: ignore[no-any-return]


async def apply_crds(home: Path) -> None:
    for name in CRD_FILES.values():
        done = await run_kubectl(home, "apply", "-f", str(CRDS / name))
        assert done.returncode == 0, done.stderr


async def synced_status(kube: KubeStandIn, controller: Controller, predicate: object) -> None:
    """The service's cache has seen its own status write (the next tick compares with it)."""
    objects = controller.policy_source.objects
    assert objects is not None
    await wait_until(lambda: predicate(objects.get("team-a", "chat")))  # type: ignore[operator]


async def test_a_team_applies_a_policy_and_kubectl_shows_its_status_change(tmp_path: Path) -> None:
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=10)  # 10 / 5 per replica over 2 replicas: keep 2
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        await apply_crds(tmp_path)
        (tmp_path / "chat.yaml").write_text(yaml.safe_dump(team_policy()))
        done = await run_kubectl(tmp_path, "apply", "-f", str(tmp_path / "chat.yaml"))
        assert done.returncode == 0 and done.stdout.strip() == f"scalingpolicy.{GROUP}/chat created", done.stderr
        async with service(kube, None, signals) as controller:
            (record,) = await controller.tick(T0)
            assert record.decision is not None and record.decision.desired_replicas == 2
            await synced_status(kube, controller, lambda o: bool(o and o.get("status")))
            done = await run_kubectl(tmp_path, "get", "scalingpolicies", "-n", "team-a")
            assert done.returncode == 0, done.stderr
            header, row = done.stdout.splitlines()
            columns = dict(zip(header.split(), row.split(), strict=False))
            assert columns["NAME"] == "chat" and columns["TARGET"] == "chat-llm"
            assert (columns["DESIRED"], columns["CURRENT"], columns["MODE"]) == ("2", "2", "patch"), done.stdout
            signals.set("team-a/chat", queue=40)  # load: 2 -> 6 (the HPA's default scale-up rate)
            (record,) = await controller.tick(T0 + 15)
            assert record.outcome is WriteOutcome.WRITTEN
            await synced_status(kube, controller, lambda o: o["status"].get("desiredReplicas") == 6)
            done = await run_kubectl(
                tmp_path, "get", "sp", "chat", "-n", "team-a",
                "-o", "jsonpath={.status.desiredReplicas} {.status.lastScaleTime} "
                '{.status.conditions[?(@.type=="Ready")].status} {.status.observedGeneration}',
            )
            desired, scaled, ready, generation = done.stdout.split()
            assert (desired, ready, generation) == ("6", "True", "1") and scaled.startswith("2027-")
            status_writes = [r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/chat/status")]
            assert len(status_writes) == 2
            signals.set("team-a/chat", queue=30)  # 30 / 5 = 6: keep
            await controller.tick(T0 + 30)
            await synced_status(kube, controller, lambda o: o["status"]["lastDecision"]["reason"] != "ScaleUp")
            writes = len([r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/status")])
            (record,) = await controller.tick(T0 + 45)  # the same decision again: nothing new to say, no write
            assert record.decision is not None and record.decision.desired_replicas == 6
            assert len([r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/status")]) == writes


async def test_invalid_generation_keeps_the_last_good_one_and_deletion_stops_serving(tmp_path: Path) -> None:
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=10)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        await apply_crds(tmp_path)
        (tmp_path / "chat.yaml").write_text(yaml.safe_dump(team_policy(maxReplicas=20)))
        assert (await run_kubectl(tmp_path, "apply", "-f", str(tmp_path / "chat.yaml"))).returncode == 0
        async with service(kube, None, signals) as controller:
            await controller.tick(T0)
            # Valid for the CRD's schema, refused by the loader's cross-field rule: max < min.
            (tmp_path / "chat.yaml").write_text(yaml.safe_dump(team_policy(minReplicas=5, maxReplicas=3)))
            done = await run_kubectl(tmp_path, "apply", "-f", str(tmp_path / "chat.yaml"))
            assert done.returncode == 0, done.stderr
            objects = controller.policy_source.objects
            assert objects is not None
            await wait_until(lambda: objects.get("team-a", "chat")["metadata"]["generation"] == 2)  # type: ignore[index]
            (record,) = await controller.tick(T0 + 15)
            assert record.decision is not None and controller.entries["team-a/chat"].policy.max_replicas == 20
            await synced_status(kube, controller, lambda o: o["status"].get("observedGeneration") == 2)
            ready = next(c for c in objects.get("team-a", "chat")["status"]["conditions"]  # type: ignore[index]
                         if c["type"] == "Ready")
            assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
            assert "maxReplicas" in ready["message"] and "generation 1 keeps running" in ready["message"]
            done = await run_kubectl(tmp_path, "delete", "-f", str(tmp_path / "chat.yaml"))
            assert done.returncode == 0, done.stderr
            await wait_until(lambda: objects.get("team-a", "chat") is None)
            assert await controller.tick(T0 + 30) == [] and "team-a/chat" not in controller.entries


async def test_a_file_and_an_object_on_one_target_the_file_keeps_it(tmp_path: Path) -> None:
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=10)
    signals.set("team-a/chat-obj", queue=10)
    files = tmp_path / "policies"
    files.mkdir()
    (files / "chat.yaml").write_text(policy_text())
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        await apply_crds(tmp_path)
        doc = team_policy()
        doc["metadata"]["name"] = "chat-obj"  # type: ignore[index]
        (tmp_path / "obj.yaml").write_text(yaml.safe_dump(doc))
        assert (await run_kubectl(tmp_path, "apply", "-f", str(tmp_path / "obj.yaml"))).returncode == 0
        async with service(kube, files, signals) as controller:
            records = await controller.tick(T0)
            assert [r.policy for r in records if r.outcome is WriteOutcome.TARGET_OWNED] == ["team-a/chat-obj"]
            assert set(controller.entries) == {"team-a/chat"}
            objects = controller.policy_source.objects
            assert objects is not None
            await wait_until(lambda: bool((objects.get("team-a", "chat-obj") or {}).get("status")))
            ready = next(c for c in objects.get("team-a", "chat-obj")["status"]["conditions"]  # type: ignore[index]
                         if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "TargetConflict"
    assert "chat.yaml" in ready["message"]


async def test_no_status_write_storm_and_no_reload_after_our_own_status_write(tmp_path: Path) -> None:
    """The same decision with other per-tick figures (the queue at 10.1, 10.2, ...) writes no status
    until its wording is five minutes old; our own status writes change no policy, so they trigger no
    reload."""
    signals = ScriptedSignals()
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        await apply_crds(tmp_path)
        (tmp_path / "chat.yaml").write_text(yaml.safe_dump(team_policy()))
        assert (await run_kubectl(tmp_path, "apply", "-f", str(tmp_path / "chat.yaml"))).returncode == 0
        async with service(kube, None, signals) as controller:
            reloads = []
            reload = controller.policy_source.reload

            def counting(**kwargs):  # type: ignore[no-untyped-def]
                result = reload(**kwargs)
                reloads.append(result.changed)
                return result

            controller.policy_source.reload = counting  # type: ignore[method-assign]
            for i in range(10):
                signals.set("team-a/chat", queue=10 + i / 10)  # keep 2 throughout
                (record,) = await controller.tick(T0 + 15 * i)
                assert record.decision is not None and record.decision.desired_replicas == 2
                await asyncio.sleep(0.05)  # let the cache see our write
            patches = [r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/status")]
            assert len(patches) == 1 and reloads.count(True) == 1  # the first tick only
            signals.set("team-a/chat", queue=11)
            await controller.tick(T0 + 15 * 9 + 300)  # the wording is 5 minutes old: refreshed
            patches = [r for r in kube.requests if r.method == "PATCH" and r.path.endswith("/status")]
    assert len(patches) == 2


async def test_an_object_recreated_under_the_same_name_does_not_inherit_the_old_ones_last_good(
    tmp_path: Path,
) -> None:
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        await apply_crds(tmp_path)
        (tmp_path / "chat.yaml").write_text(yaml.safe_dump(team_policy()))
        assert (await run_kubectl(tmp_path, "apply", "-f", str(tmp_path / "chat.yaml"))).returncode == 0
        async with service(kube, None, signals) as controller:
            await controller.tick(T0)
            assert set(controller.entries) == {"team-a/chat"}
            objects = controller.policy_source.objects
            assert objects is not None
            first_uid = objects.get("team-a", "chat")["metadata"]["uid"]  # type: ignore[index]
            assert (await run_kubectl(tmp_path, "delete", "-f", str(tmp_path / "chat.yaml"))).returncode == 0
            (tmp_path / "chat.yaml").write_text(yaml.safe_dump(team_policy(minReplicas=5, maxReplicas=3)))
            assert (await run_kubectl(tmp_path, "apply", "-f", str(tmp_path / "chat.yaml"))).returncode == 0
            await wait_until(lambda: (objects.get("team-a", "chat") or {}).get("metadata", {}).get("uid")
                             not in (None, first_uid))
            before = len([r for r in kube.requests if r.path.endswith("/scale") and r.method == "PUT"])
            assert await controller.tick(T0 + 15) == [] and controller.entries == {}
            after = len([r for r in kube.requests if r.path.endswith("/scale") and r.method == "PUT"])
    assert after == before


async def test_a_pause_on_the_target_shows_in_the_objects_status(tmp_path: Path) -> None:
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=10)  # keep 2: nothing to write, still paused
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        await apply_crds(tmp_path)
        (tmp_path / "chat.yaml").write_text(yaml.safe_dump(team_policy()))
        assert (await run_kubectl(tmp_path, "apply", "-f", str(tmp_path / "chat.yaml"))).returncode == 0
        done = await run_kubectl(tmp_path, "annotate", "deployment", "chat-llm", "-n", "team-a",
                                 "inference-autoscaler.io/paused=true")
        assert done.returncode == 0, done.stderr
        async with service(kube, None, signals) as controller:
            (record,) = await controller.tick(T0)
            assert record.paused_by == "annotation on Deployment/chat-llm"
            await synced_status(kube, controller, lambda o: bool(o and o.get("status")))
            objects = controller.policy_source.objects
            assert objects is not None
            paused = next(c for c in objects.get("team-a", "chat")["status"]["conditions"]  # type: ignore[index]
                          if c["type"] == "Paused")
    assert paused["status"] == "True" and "Deployment/chat-llm" in paused["message"]
