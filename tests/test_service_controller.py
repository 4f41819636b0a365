"""The service's control loop against the Kubernetes stand-in (real HTTP), with an injected clock.

Scenarios: a load step scales a Deployment up and later down as the behavior allows (with Events);
a 409 race (another writer between our read and write: re-read, re-decide, write); signals down
(hold, then the fallback); a restart in the middle of a stabilization window (state persisted in a
ConfigMap: decisions identical to an uninterrupted run, no burst); two instances (only the leader
writes; a leader that cannot renew stops writing at once; the standby takes over after the lease
expires); a bad policy file hot-reloaded (its last good version keeps working, the others too);
shadow mode writes nothing; an HPA on the target makes patch mode refuse; dry run writes nothing;
the namespace allowlist; and the equivalence proof: the service's decisions equal the core's on
the same observation stream.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kube_standin import KubeStandIn
from service_harness import ScriptedSignals, make_controller, policy_text

from autoscaler.core.step import TargetState, step
from autoscaler.service.leader import LeaseElector, LeaseSettings

T0 = 1_800_000_000.0


def write_policy(directory: Path, text: str, name: str = "chat.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def spec_replicas(kube: KubeStandIn, name: str = "chat-llm", namespace: str = "team-a") -> int:
    return int(kube.get_object("apps", "v1", "deployments", namespace, name)["spec"]["replicas"])


def scale_writes(kube: KubeStandIn) -> list:  # type: ignore[type-arg]
    return [r for r in kube.writes("/scale") if r.method in ("PUT", "PATCH")]


async def test_load_step_scales_up_then_down_as_behavior_allows(tmp_path: Path) -> None:
    write_policy(tmp_path, policy_text())
    signals = ScriptedSignals()
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        seen = []
        signals.set("team-a/chat", queue=40)
        for i in range(3):
            (record,) = await controller.tick(T0 + 15 * i)
            kube.reconcile_workloads()
            seen.append(record.decision.desired_replicas)
        # 2 -> max(2 + 4, 2 x 2) = 6 -> ceil(40/5) = 8 -> 8
        assert seen == [6, 8, 8] and spec_replicas(kube) == 8
        signals.set("team-a/chat", queue=5)
        down = []
        for i in range(3, 30):
            (record,) = await controller.tick(T0 + 15 * i)
            kube.reconcile_workloads()
            down.append((15 * i, record.decision.desired_replicas))
        # the last recommendation of 8 was at t=30: the 300 s window holds until t=330, then 100%/15 s
        assert all(r == 8 for t, r in down if t < 330)
        assert [r for t, r in down if t == 330] == [1] and spec_replicas(kube) == 1
        reasons = [e["reason"] for e in kube.list_objects("", "v1", "events", "team-a")]
        assert reasons.count("ScaleUp") == 2 and reasons.count("ScaleDown") == 1
        assert kube.list_objects("", "v1", "events", "team-a")[0]["involvedObject"]["name"] == "chat-llm"
        await client.close()


async def test_conflict_race_rereads_and_redecides(tmp_path: Path) -> None:
    write_policy(tmp_path, policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        raced = []

        def someone_else_scales(method: str, path: str) -> None:
            if method == "GET" and path.endswith("/chat-llm/scale") and not raced:
                raced.append(path)  # between our read and our write, a person scales to 3
                obj = kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")
                obj["spec"]["replicas"] = 3
                kube.put_object("apps", "v1", "deployments", obj)

        kube.after_request.append(someone_else_scales)
        controller, client = make_controller(kube.url, tmp_path, signals)
        (record,) = await controller.tick(T0)
        assert record.conflicts == 1 and record.wrote
        # re-decided from 3: max(3 + 4, 6) = 7 (not 6, which the stale read of 2 would have given)
        assert record.decision.current_replicas == 3 and record.decision.desired_replicas == 7
        assert spec_replicas(kube) == 7
        assert [r.status for r in kube.requests if r.method == "PUT" and r.path.endswith("/scale")] == [409, 200]
        await client.close()


async def test_signals_down_hold_then_fallback(tmp_path: Path) -> None:
    write_policy(tmp_path, policy_text(extra="fallback: {failureThreshold: 2, behavior: static, replicas: 5}\n"))
    signals = ScriptedSignals()
    signals.fail = True
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 3)
        controller, client = make_controller(kube.url, tmp_path, signals)
        desired = []
        for i in range(4):
            (record,) = await controller.tick(T0 + 15 * i)
            kube.reconcile_workloads()
            desired.append((record.decision.desired_replicas, record.decision.reason.value))
        assert desired == [
            (3, "FailedGetExternalMetric"),
            (3, "FailedGetExternalMetric"),
            (5, "Fallback"),
            (5, "Fallback"),
        ]
        warnings = [e for e in kube.list_objects("", "v1", "events", "team-a") if e["type"] == "Warning"]
        assert {e["reason"] for e in warnings} == {"FailedGetExternalMetric", "Fallback"}
        # repeated identical warnings are one Event with a count, not a flood
        assert len(warnings) <= 3
        await client.close()


async def _run_ticks(controller, kube, signals, ticks):  # type: ignore[no-untyped-def]
    out = []
    for t, queue in ticks:
        signals.set("team-a/chat", queue=queue)
        (record,) = await controller.tick(t)
        kube.reconcile_workloads()
        out.append(record.decision.desired_replicas)
    return out


async def test_restart_mid_window_decides_as_if_uninterrupted(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        policy_text(
            extra="""\
        behavior:
          scaleUp: {policies: [{type: Pods, value: 2, periodSeconds: 60}]}
          scaleDown: {stabilizationWindowSeconds: 120}
    """
        ),
    )
    ticks = [(T0 + 15 * i, 60 if i < 4 else 4) for i in range(20)]
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        signals = ScriptedSignals()
        uninterrupted, c1 = make_controller(kube.url, tmp_path, signals)
        expected = await _run_ticks(uninterrupted, kube, signals, ticks)
        await c1.close()
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        signals = ScriptedSignals()
        first, c2 = make_controller(kube.url, tmp_path, signals)
        before = await _run_ticks(first, kube, signals, ticks[:6])
        assert kube.get_object("", "v1", "configmaps", "ops", "ia-state") is not None
        restarted, c3 = make_controller(kube.url, tmp_path, signals)  # a new process: nothing in memory
        after = await _run_ticks(restarted, kube, signals, ticks[6:])
        await c2.close()
        await c3.close()
    assert before + after == expected
    # and the window really mattered: load fell at tick 4, yet no scale-down before 120 s after the last high
    assert expected[4:11] == [expected[3]] * 7 and expected[-1] < expected[3]


async def test_without_persisted_state_a_restart_is_conservative_not_a_burst(tmp_path: Path) -> None:
    write_policy(tmp_path, policy_text())
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 8)
        signals = ScriptedSignals()
        signals.set("team-a/chat", queue=1)
        controller, client = make_controller(kube.url, tmp_path, signals, persist_namespace=None)
        first = [(await controller.tick(T0 + 15 * i))[0].decision.desired_replicas for i in range(20)]
        assert first == [8] * 20  # the initial recommendation holds for the whole 300 s window
        await client.close()


async def test_only_the_leader_writes_and_stops_at_once_when_it_cannot_renew(tmp_path: Path) -> None:
    write_policy(tmp_path, policy_text())
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        mono = {"a": 0.0, "b": 0.0}
        signals = ScriptedSignals()
        signals.set("team-a/chat", queue=40)
        ca, client_a = make_controller(kube.url, tmp_path, signals)
        cb, client_b = make_controller(kube.url, tmp_path, signals)
        ea = LeaseElector(client_a, LeaseSettings(namespace="ops", identity="a"), monotonic=lambda: mono["a"])
        eb = LeaseElector(client_b, LeaseSettings(namespace="ops", identity="b"), monotonic=lambda: mono["b"])
        ca.leadership, cb.leadership = ea, eb
        assert await ea.try_acquire_or_renew() is True
        assert await eb.try_acquire_or_renew() is False
        (ra,) = await ca.tick(T0)
        (rb,) = await cb.tick(T0)
        assert ra.wrote and not rb.wrote and len(scale_writes(kube)) == 1
        # a is partitioned: it cannot renew; 10 s (the renew deadline) later it must not write
        kube.reconcile_workloads()
        signals.set("team-a/chat", queue=100)
        mono["a"] = 10.0
        (ra,) = await ca.tick(T0 + 15)
        assert not ra.wrote and not ea.is_leader()
        # b may only take over once the lease has expired on b's own clock
        mono["b"] = 5.0
        assert await eb.try_acquire_or_renew() is False
        mono["b"] = 15.1
        assert await eb.try_acquire_or_renew() is True
        (rb,) = await cb.tick(T0 + 30)
        assert rb.wrote and len(scale_writes(kube)) == 2
        lease = kube.get_object("coordination.k8s.io", "v1", "leases", "ops", "inference-autoscaler")
        assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1
        await eb.release()
        lease = kube.get_object("coordination.k8s.io", "v1", "leases", "ops", "inference-autoscaler")
        assert lease["spec"]["holderIdentity"] is None and lease["spec"]["leaseDurationSeconds"] == 1
        assert await ea.try_acquire_or_renew() is True  # a released lease is free at once
        await client_a.close()
        await client_b.close()


async def test_bad_policy_file_hot_reload_keeps_last_good_and_others_work(tmp_path: Path) -> None:
    chat = write_policy(tmp_path, policy_text(), "chat.yaml")
    write_policy(tmp_path, policy_text(name="embed", target="embedder"), "embed.yaml")
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    signals.set("team-a/embed", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        kube.add_deployment("team-a", "embedder", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        assert len(await controller.tick(T0)) == 2
        chat.write_text(policy_text().replace("maxReplicas: 20", "maxReplicas: zero"))
        records = {r.policy: r for r in await controller.tick(T0 + 15)}
        assert set(records) == {"team-a/chat", "team-a/embed"}  # chat keeps its last good version
        assert any("maxReplicas" in str(e) for e in controller.policy_source.errors)
        assert controller.telemetry.policy_errors._value.get() == 1  # type: ignore[attr-defined]
        chat.write_text(policy_text().replace("maxReplicas: 20", "maxReplicas: 3"))
        records = {r.policy: r for r in await controller.tick(T0 + 30)}
        assert records["team-a/chat"].decision.desired_replicas == 3  # the fixed file applies
        assert controller.policy_source.errors == ()
        await client.close()


async def test_configmap_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    first = tmp_path / "..2026_01"
    first.mkdir()
    (first / "chat.yaml").write_text(policy_text())
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "chat.yaml").symlink_to("..data/chat.yaml")
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        assert (await controller.tick(T0))[0].decision.desired_replicas == 6
        second = tmp_path / "..2026_02"
        second.mkdir()
        (second / "chat.yaml").write_text(policy_text().replace("maxReplicas: 20", "maxReplicas: 4"))
        (tmp_path / "..data_tmp").symlink_to(second.name)
        (tmp_path / "..data_tmp").rename(tmp_path / "..data")  # kubelet's atomic swap
        kube.reconcile_workloads()
        (record,) = await controller.tick(T0 + 15)
        assert record.decision.desired_replicas == 4
        await client.close()


@pytest.mark.parametrize("how", ["shadow", "dry-run"])
async def test_shadow_and_dry_run_write_nothing(tmp_path: Path, how: str) -> None:
    write_policy(tmp_path, policy_text(mode="shadow" if how == "shadow" else "patch"))
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals, dry_run=how == "dry-run")
        for i in range(3):
            (record,) = await controller.tick(T0 + 15 * i)
            assert record.decision.desired_replicas == 6 and not record.wrote
        assert scale_writes(kube) == [] and spec_replicas(kube) == 2
        events = kube.list_objects("", "v1", "events", "team-a")
        if how == "shadow":
            assert {e["reason"] for e in events} == {"ShadowDecision"}
            assert "would scale to 6" in events[0]["message"]
            assert kube.writes("/configmaps")  # the leader still persists its state
        else:
            assert events == [] and kube.writes() == []
        await client.close()


async def test_refuses_to_fight_an_hpa(tmp_path: Path) -> None:
    write_policy(tmp_path, policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        kube.put_object(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            {
                "metadata": {"name": "chat-cpu", "namespace": "team-a"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat-llm"},
                    "minReplicas": 1,
                    "maxReplicas": 5,
                },
            },
        )
        controller, client = make_controller(kube.url, tmp_path, signals)
        (record,) = await controller.tick(T0)
        assert not record.wrote and "HPA chat-cpu manages it" in record.error
        assert scale_writes(kube) == []
        (event,) = kube.list_objects("", "v1", "events", "team-a")
        assert event["reason"] == "HPAConflict" and event["type"] == "Warning"
        await client.close()


async def test_namespace_allowlist(tmp_path: Path) -> None:
    write_policy(tmp_path, policy_text(), "a.yaml")
    write_policy(tmp_path, policy_text(namespace="team-b"), "b.yaml")
    signals = ScriptedSignals()
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals, namespaces=["team-a"])
        records = await controller.tick(T0)
        assert [r.policy for r in records] == ["team-a/chat"]
        assert any("allowlist" in str(e) for e in controller.policy_source.errors)
        await client.close()


async def test_missing_target_is_reported_and_others_continue(tmp_path: Path) -> None:
    write_policy(tmp_path, policy_text(), "a.yaml")
    write_policy(tmp_path, policy_text(name="ghost", target="ghost"), "b.yaml")
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        records = {r.policy: r for r in await controller.tick(T0)}
        assert "target not found" in records["team-a/ghost"].error
        assert records["team-a/chat"].wrote
        await client.close()


async def test_service_and_core_make_identical_decisions(tmp_path: Path) -> None:
    """Equivalence: the service (edges at the stand-ins) and the core fed the same observations."""
    write_policy(
        tmp_path,
        policy_text(
            extra="""\
        behavior:
          scaleUp: {stabilizationWindowSeconds: 30, policies: [{type: Percent, value: 50, periodSeconds: 30}]}
          scaleDown: {stabilizationWindowSeconds: 90, policies: [{type: Pods, value: 1, periodSeconds: 30}]}
    """
        ),
    )
    load = [3, 10, 40, 80, 80, None, 60, 30, 12, 12, 5, None, None, 2, 2, 1, 30, 90, 90, 4, 1, 1, 1, 1, 1, 1, 1, 1]
    signals = ScriptedSignals()
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        records = []
        for i, queue in enumerate(load):
            signals.set("team-a/chat", queue=queue)
            (record,) = await controller.tick(T0 + 15 * i)
            kube.reconcile_workloads(ready=max(1, spec_replicas(kube) - 1))  # one pod still loading
            records.append(record)
        await client.close()
    policy = controller.entries["team-a/chat"].policy
    state = TargetState()
    for record in records:
        decision, state = step(record.reading, state, policy, record.time_s)
        assert decision == record.decision
    assert len({r.decision.desired_replicas for r in records}) > 3  # the stream exercised scaling


async def test_an_event_is_not_sent_after_leadership_is_lost_during_its_backoff(tmp_path: Path) -> None:
    """Events are guarded like scale writes: the guard is checked before every attempt, so an Event whose
    retries outlast the lease is dropped (the new leader reports from then on)."""
    from service_harness import Flag

    from autoscaler.service.kube import KubeClient, KubeConfig

    write_policy(tmp_path, policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    flag = Flag()

    async def lose_the_lease_while_backing_off(seconds: float) -> None:
        flag.leading = False

    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        kube.fail_next("POST", r"/events$", 503, times=1)
        client = KubeClient(KubeConfig(host=kube.url, retries=3), sleep=lose_the_lease_while_backing_off)
        controller, _ = make_controller(kube.url, tmp_path, signals, leadership=flag, client=client,
                                        persist_namespace=None)
        (record,) = await controller.tick(T0)
        await client.close()
    assert record.wrote  # the scale write went out while leading
    posts = [r for r in kube.requests if r.method == "POST" and r.path.endswith("/events")]
    assert [r.status for r in posts] == [503]  # the retry was not sent
    assert kube.list_objects("", "v1", "events", "team-a") == []


async def test_a_former_leaders_late_state_write_is_read_then_replaced_not_left_forever(tmp_path: Path) -> None:
    """One leader at a time: a state ConfigMap written by someone else after our read is a former
    leader's late write, older than this leader's memory. The leader re-reads it (so that its save no
    longer overwrites anything unread) and persists its own state again; its memory is kept."""
    from autoscaler.service.state import KEY, decode_states

    write_policy(tmp_path, policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        await controller.tick(T0)
        kube.reconcile_workloads()
        ours = controller.entries["team-a/chat"].state.scaler
        cm = kube.get_object("", "v1", "configmaps", "ops", "ia-state")
        assert cm is not None
        late = dict(cm)
        late["binaryData"] = {KEY: cm["binaryData"][KEY][:-4] + "AAAA"}  # other content
        kube.put_object("", "v1", "configmaps", late)
        await controller.tick(T0 + 15)  # the save conflicts, sees other content: refused this time
        await controller.tick(T0 + 30)  # re-read, then saved
        await client.close()
        saved = decode_states(kube.get_object("", "v1", "configmaps", "ops", "ia-state")["binaryData"][KEY])
    assert saved["team-a/chat"].scaler == controller.entries["team-a/chat"].state.scaler
    assert set(ours.recommendations) <= set(saved["team-a/chat"].scaler.recommendations)  # memory kept
