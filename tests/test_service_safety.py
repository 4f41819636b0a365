"""Safety of the service under faults and edits (regressions from a review):

* a write is never sent after leadership is lost, not even as a retry of a 503 (guarded attempts);
  the warm-pool placeholder follows the same rule;
* a failed HPA check blocks the write (not knowing is not "no HPA");
* a failed re-read after a 409 fails that policy's tick only; the others and the schedule go on;
* retargeting a policy starts fresh (the old target's windows say nothing about the new one);
* persisted state older than the policy's windows is dropped (a long outage is a restart);
* a new leader that could not read the persisted state retries and writes nothing until it has;
* a broken defaults edit keeps the last good version of the policies it covers;
* removed policies' series disappear from /metrics (a stale desired-replicas gauge would drive KEDA);
* liveness advances on ticks with nothing due; long range reads are chunked.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from kube_standin import KubeStandIn
from service_harness import Flag, ScriptedSignals, make_controller, policy_text

from autoscaler.core import ScalerState
from autoscaler.core.model import Recommendation
from autoscaler.prometheus.client import RangeResult, RangeSeries
from autoscaler.prometheus.ranges import MAX_POINTS_PER_QUERY, summed_range
from autoscaler.service.policies import PolicyDirectory
from autoscaler.service.state import encode_states

T0 = 1_800_000_000.0


def put_scales(kube: KubeStandIn, name: str = "chat-llm") -> list[int]:
    return [r.status for r in kube.requests if r.method == "PUT" and r.path.endswith(f"/{name}/scale")]


async def test_no_write_after_leadership_is_lost_even_on_retry(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        flag = Flag()
        controller, client = make_controller(kube.url, tmp_path, signals, leadership=flag)
        kube.fail_next("PUT", r"/chat-llm/scale$", 503)
        answer_error = kube._error

        def error_and_lose_the_lease(request, err, body):  # type: ignore[no-untyped-def]
            if request.method == "PUT" and request.path.endswith("/chat-llm/scale"):
                flag.leading = False  # the lease expires while the client backs off before its retry
            return answer_error(request, err, body)

        kube._error = error_and_lose_the_lease  # type: ignore[method-assign]
        (record,) = await controller.tick(T0)
        assert not record.wrote and "not sent" in record.error
        assert put_scales(kube) == [503]  # the retry was never sent
        assert kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")["spec"]["replicas"] == 2
        await client.close()


async def test_failed_hpa_check_blocks_the_write(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        kube.fail_next("GET", r"/horizontalpodautoscalers$", 403)
        (record,) = await controller.tick(T0)
        assert not record.wrote and "could not check for HPAs" in record.error and put_scales(kube) == []
        (record,) = await controller.tick(T0 + 15)  # the check works again: the write goes through
        assert record.wrote
        await client.close()


async def test_failed_reread_after_conflict_fails_only_that_policy(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_text())
    (tmp_path / "b.yaml").write_text(policy_text(name="embed", target="embedder"))
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    signals.set("team-a/embed", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        kube.add_deployment("team-a", "embedder", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        records = {r.policy: r for r in await controller.tick(T0)}
        assert records["team-a/embed"].wrote and records["team-a/chat"].wrote
        # now a 409 on chat-llm's write, and every re-read of chat-llm fails after it
        kube.fail_next("PUT", r"/chat-llm/scale$", 409)
        conflicted = []

        original = kube._error

        def arm(request, err, body):  # type: ignore[no-untyped-def]
            if err.code == 409 and not conflicted:
                conflicted.append(1)
                kube.fail_next("GET", r"/chat-llm/scale$", 500, times=50)
            return original(request, err, body)

        kube._error = arm  # type: ignore[method-assign]
        kube.reconcile_workloads()
        signals.set("team-a/chat", queue=100)
        signals.set("team-a/embed", queue=100)
        records = {r.policy: r for r in await controller.tick(T0 + 15)}
        assert "re-read after a conflict failed" in records["team-a/chat"].error
        assert records["team-a/embed"].wrote  # the other policy still acted
        assert all(e.next_due > T0 + 15 for e in controller.entries.values())  # the schedule advanced
        await client.close()


async def test_retargeting_a_policy_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "chat.yaml"
    path.write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=5)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        kube.add_deployment("team-a", "other", 20)
        controller, client = make_controller(kube.url, tmp_path, signals)
        for i in range(30):  # long enough for chat-llm's windows to be empty of high values
            await controller.tick(T0 + 15 * i)
        path.write_text(policy_text(target="other"))
        (record,) = await controller.tick(T0 + 15 * 30)
        # a fresh state records other's 20 replicas first: no drop to 1 inside its window
        assert record.decision is not None and record.decision.desired_replicas == 20
        await client.close()


async def test_persisted_state_older_than_the_windows_is_a_restart(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=5)
    old = ScalerState(initialized=True, recommendations=(Recommendation(T0 - 86400, 12),))
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 12)
        kube.put_object("", "v1", "configmaps", {"metadata": {"name": "ia-state", "namespace": "ops"},
                                                 "binaryData": {"states.json.z": encode_states({"team-a/chat": old})}})
        controller, client = make_controller(kube.url, tmp_path, signals)
        (record,) = await controller.tick(T0)
        assert record.decision is not None and record.decision.desired_replicas == 12  # held, not 12 -> 1
        await client.close()


async def test_new_leader_retries_the_state_read_and_writes_nothing_before(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=5)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        kube.fail_next("GET", r"/configmaps/ia-state$", 500, times=2)  # both attempts of the first read
        await controller.tick(T0)
        assert kube.writes("/configmaps") == []  # could not read: must not overwrite
        await controller.tick(T0 + 15)
        assert kube.writes("/configmaps")  # read (404: nothing yet), then persisted
        await client.close()


def test_broken_defaults_edit_keeps_the_last_good_policies(tmp_path: Path) -> None:
    defaults = tmp_path / "org.yaml"
    defaults.write_text(textwrap.dedent("""\
        apiVersion: inference-autoscaler.io/v1alpha1
        kind: PolicyDefaults
        metadata: {name: org}
        spec: {minReplicas: 1}
    """))
    (tmp_path / "chat.yaml").write_text(policy_text().replace("  minReplicas: 1\n", ""))
    source = PolicyDirectory(tmp_path)
    assert [p.key for p in source.reload().policies] == ["team-a/chat"]
    defaults.write_text(defaults.read_text().replace("minReplicas: 1", "minReplicas: 50"))  # > maxReplicas
    result = source.reload()
    assert [p.key for p in result.policies] == ["team-a/chat"] and result.errors
    assert result.policies[0].min_replicas == 1  # the last good version


async def test_removed_policy_series_disappear(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=5)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        await controller.tick(T0)
        assert b'inference_autoscaler_desired_replicas{namespace="team-a"' in controller.telemetry.exposition()
        (tmp_path / "a.yaml").unlink()
        await controller.tick(T0 + 15)
        assert b"inference_autoscaler_desired_replicas{" not in controller.telemetry.exposition()
        await client.close()


async def test_liveness_advances_when_nothing_is_due(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_text().replace("intervalSeconds: 15", "intervalSeconds: 600"))
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, ScriptedSignals())
        await controller.tick(T0)
        assert await controller.tick(T0 + 200) == [] and controller.last_tick_s == T0 + 200
        await client.close()


class _Chunks:
    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    async def query_range(self, expr: str, *, start_s: float, end_s: float, step_s: float, context: str = "") -> RangeResult:
        assert (end_s - start_s) / step_s < 11_000
        self.calls.append((start_s, end_s))
        points = []
        t = start_s
        while t <= end_s:
            points.append((t, 1.0))
            t += step_s
        return RangeResult((RangeSeries({"pod": "a"}, tuple(points)), RangeSeries({"pod": "b"}, tuple(points))), ())


async def test_long_range_reads_are_chunked_and_summed() -> None:
    fake = _Chunks()
    step = 15.0
    days = 3 * 86400.0
    totals = await summed_range(fake, "x", start_s=0.0, end_s=days, step_s=step)
    assert len(fake.calls) == -(-int(days / step + 1) // MAX_POINTS_PER_QUERY)
    assert len(totals) == int(days / step) + 1 and set(totals.values()) == {2.0}


async def test_event_correlation_memory_is_bounded() -> None:
    from autoscaler.core.policy import TargetRef
    from autoscaler.service.actuator import KubeActuator
    from autoscaler.service.kube import KubeClient, KubeConfig

    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        clock = {"t": T0}
        client = KubeClient(KubeConfig(host=kube.url))
        actuator = KubeActuator(client, clock=lambda: clock["t"])
        target = TargetRef("apps/v1", "Deployment", "chat-llm")
        for i in range(400):  # a scale change every minute for hours, each with its own message
            clock["t"] = T0 + 60 * i
            await actuator.record_event("team-a", target, type_="Normal", reason="ScaleUp", message=f"New size: {i}")
        assert len(actuator._events) <= 257
        await client.close()
