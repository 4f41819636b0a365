"""Pause (issue 14, item 2): a policy's annotations freeze its writes, optionally at a given count, with
KEDA's annotation names accepted; the decision is still made and reported (a Normal Paused Event and
``inference_autoscaler_paused``), and removing the annotation resumes scaling."""

from __future__ import annotations

from pathlib import Path

import pytest
from kube_standin import KubeStandIn
from service_harness import ScriptedSignals, make_controller, policy_text

from autoscaler.policy import load_policies
from autoscaler.service.controller import WriteOutcome

T0 = 1_800_000_000.0


def annotated(annotations: dict[str, str]) -> str:
    pairs = ", ".join(f'"{k}": "{v}"' for k, v in annotations.items())
    return policy_text().replace("namespace: team-a}", f"namespace: team-a, annotations: {{{pairs}}}}}", 1)


def replicas(kube: KubeStandIn) -> int:
    return int(kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")["spec"]["replicas"])


def events(kube: KubeStandIn) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in kube.list_objects("", "v1", "events", "team-a")]


@pytest.mark.parametrize("key", ["inference-autoscaler.io/paused", "autoscaling.keda.sh/paused"])
async def test_paused_freezes_writes_and_resuming_scales(tmp_path: Path, key: str) -> None:
    (tmp_path / "chat.yaml").write_text(annotated({key: "true"}))
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)  # 40 / 5 per replica: 8, at most 6 from 2 (HPA's default rate)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        (record,) = await controller.tick(T0)
        assert record.outcome is WriteOutcome.PAUSED and not record.wrote and replicas(kube) == 2
        assert record.decision is not None and record.decision.desired_replicas == 6  # still decided
        assert record.error == "paused by annotation at 2: writes are frozen"  # stable: one Event, counted
        assert events(kube) == [("Normal", "Paused")]
        paused = controller.telemetry.registry.get_sample_value(
            "inference_autoscaler_paused", {"namespace": "team-a", "policy": "chat"})
        assert paused == 1.0
        signals.set("team-a/chat", queue=60)  # another decision, the same pause: one Event, counted
        await controller.tick(T0 + 5)
        assert events(kube) == [("Normal", "Paused")]
        (tmp_path / "chat.yaml").write_text(policy_text())  # the annotation removed: scaling resumes
        (record,) = await controller.tick(T0 + 15)
        await client.close()
        assert record.outcome is WriteOutcome.WRITTEN and replicas(kube) == 6


async def test_paused_replicas_sets_the_count_once_then_holds_it(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(annotated({"autoscaling.keda.sh/paused-replicas": "5"}))
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        (first,) = await controller.tick(T0)
        (second,) = await controller.tick(T0 + 15)
        await client.close()
        puts = [r for r in kube.requests if r.method == "PUT" and r.path.endswith("/scale")]
    assert first.outcome is WriteOutcome.WRITTEN and replicas(kube) == 5 and len(puts) == 1
    assert first.decision is not None and first.decision.reason.value == "Paused"
    assert second.outcome is WriteOutcome.PAUSED and second.decision is not None
    assert second.decision.desired_replicas == 8  # what the policy would do, reported, not written


def test_pause_annotations_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(annotated({"inference-autoscaler.io/paused": "yes"}))
    said = [str(e).split(": ", 1)[1] for e in load_policies([path]).errors]
    assert said == ['metadata.annotations.inference-autoscaler.io/paused = yes: must be "true" or "false"']
    path.write_text(annotated({"inference-autoscaler.io/paused-replicas": "-1"}))
    assert "must be a replica count" in str(load_policies([path]).errors[0])
    path.write_text(annotated({"inference-autoscaler.io/paused-replicas": "0"}))  # min is 1
    assert "must be within minReplicas (1) and maxReplicas (20)" in str(load_policies([path]).errors[0])
    path.write_text(annotated({"inference-autoscaler.io/paused": "true"}).replace("mode: patch", "mode: external"))
    assert "pause freezes writes: mode external writes nothing" in str(load_policies([path]).errors[0])
    path.write_text(annotated({"inference-autoscaler.io/paused": "false"}))
    [policy] = load_policies([path]).policies
    assert policy.pause is None


def annotate_target(kube: KubeStandIn, annotations: dict[str, str]) -> None:
    obj = kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")
    assert obj is not None
    obj["metadata"]["annotations"] = dict(annotations)
    kube.put_object("apps", "v1", "deployments", obj)


async def test_the_targets_own_annotation_pauses_without_touching_the_policy(tmp_path: Path) -> None:
    """``kubectl annotate deploy/chat-llm autoscaling.keda.sh/paused-replicas=3`` in an incident: the
    count is set once and held; removing the annotation resumes scaling."""
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        annotate_target(kube, {"autoscaling.keda.sh/paused-replicas": "3"})
        controller, client = make_controller(kube.url, tmp_path, signals)
        (first,) = await controller.tick(T0)
        assert first.outcome is WriteOutcome.WRITTEN and replicas(kube) == 3
        assert first.decision is not None and "by annotation on Deployment/chat-llm" in first.decision.message
        (second,) = await controller.tick(T0 + 15)
        assert second.outcome is WriteOutcome.PAUSED and replicas(kube) == 3
        assert second.error == "paused by annotation on Deployment/chat-llm at 3: writes are frozen"
        annotate_target(kube, {})
        (third,) = await controller.tick(T0 + 30)
        await client.close()
    assert third.outcome is WriteOutcome.WRITTEN and replicas(kube) > 3


async def test_a_target_annotation_that_means_nothing_freezes_and_an_unreadable_one_blocks(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        annotate_target(kube, {"inference-autoscaler.io/paused": "yes please"})
        controller, client = make_controller(kube.url, tmp_path, signals)
        (record,) = await controller.tick(T0)
        assert record.outcome is WriteOutcome.PAUSED and replicas(kube) == 2
        assert "must be \"true\" or \"false\"" in record.error and "frozen at the current count" in record.error
        annotate_target(kube, {})
        kube.fail_next("GET", r"/deployments/chat-llm$", 403, times=10)  # the object itself, not its scale
        (blocked,) = await controller.tick(T0 + 15)
        await client.close()
    assert blocked.outcome is WriteOutcome.PAUSE_CHECK_FAILED and replicas(kube) == 2
    assert "could not read the target's annotations" in blocked.error
