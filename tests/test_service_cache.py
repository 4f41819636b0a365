"""The service reads the cluster from watched caches (issue 17, item 1), against the stand-in (real HTTP,
real watches): in steady state a tick sends no read to the API; writes still carry the resourceVersion
they were decided from; after a 409 the re-read goes to the API, not to the cache that lost; a cache
whose watch is down past ``max_stale_s`` is not trusted (reads go to the API again)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from kube_standin import KubeStandIn, RequestRecord, wait_until
from service_harness import ScriptedSignals, make_controller, policy_text

from autoscaler.core.policy import TargetRef
from autoscaler.service.cluster import WatchedCluster, format_selector
from autoscaler.service.controller import WriteOutcome
from autoscaler.service.kube import KubeClient, KubeConfig

T0 = 1_800_000_000.0


@contextlib.asynccontextmanager
async def watched(client: KubeClient, **kwargs: float) -> AsyncIterator[WatchedCluster]:
    cluster = WatchedCluster(client, **kwargs)
    cluster.watch_kind("deployments")
    stop = asyncio.Event()
    task = asyncio.create_task(cluster.run(stop))
    try:
        assert await cluster.wait_synced(5.0)
        yield cluster
    finally:
        stop.set()
        await asyncio.wait_for(task, 5.0)


def reads(kube: KubeStandIn, since: int = 0) -> list[RequestRecord]:
    """GETs that are not watches (what a tick would send if it polled)."""
    return [r for r in kube.requests[since:] if r.method == "GET" and r.query.get("watch") not in ("1", "true")]


def replicas(kube: KubeStandIn, name: str = "chat-llm") -> int:
    return int(kube.get_object("apps", "v1", "deployments", "team-a", name)["spec"]["replicas"])


def test_selector_formatted_as_the_scale_subresource_formats_it() -> None:
    selector = {
        "matchLabels": {"app": "chat", "tier": "gpu"},
        "matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["b", "a"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "model", "operator": "Exists"},
            {"key": "env", "operator": "NotIn", "values": ["dev"]},
        ],
    }
    assert format_selector(selector) == "app=chat,!canary,env notin (dev),model,tier=gpu,zone in (a,b)"
    assert format_selector({"matchExpressions": [{"key": "x", "operator": "Gt", "values": ["1"]}]}) is None
    assert format_selector("app=chat") is None


async def test_steady_state_ticks_read_memory_only(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"p{i}.yaml").write_text(policy_text(name=f"p{i}", target=f"llm-{i}"))
    signals = ScriptedSignals()
    async with KubeStandIn() as kube:
        for i in range(3):
            kube.add_deployment("team-a", f"llm-{i}", 2)
            signals.set(f"team-a/p{i}", queue=10)  # 10 / 5 per replica = 2: no change
        client = KubeClient(KubeConfig(host=kube.url, retries=1, backoff_base_s=0.01))
        async with watched(client) as cluster:
            controller, _ = make_controller(kube.url, tmp_path, signals, cache=cluster, client=client)
            before = len(kube.requests)
            for tick in range(4):
                records = await controller.tick(T0 + 15 * tick)
                assert all(r.decision is not None and r.decision.desired_replicas == 2 for r in records)
            polled = [r.path for r in reads(kube, before) if "/configmaps" not in r.path]  # state store aside
            assert polled == []
            signals.set("team-a/p1", queue=40)  # a change: one write, still no read
            records = await controller.tick(T0 + 60)
            await client.close()
    assert [r.outcome for r in records if r.policy == "team-a/p1"] == [WriteOutcome.WRITTEN]
    assert [r.path for r in reads(kube, before) if "/configmaps" not in r.path] == []
    assert replicas(kube, "llm-1") == 6


async def test_a_stale_cache_costs_one_conflict_then_the_reread_goes_to_the_api(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        client = KubeClient(KubeConfig(host=kube.url, retries=0, backoff_base_s=0.01))
        async with watched(client) as cluster:
            (informer,) = cluster.workloads["deployments"].values()
            await wait_until(lambda: kube.open_watches == 3)
            cached_rv = informer.get("team-a", "chat-llm")["metadata"]["resourceVersion"]  # type: ignore[index]
            # The watch goes down and cannot come back (500s), so the cache keeps what it had; meanwhile
            # another writer scales the Deployment to 3.
            kube.fail_next("GET", r"/deployments$", 500, times=1000)
            kube.close_watches()
            obj = kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")
            assert obj is not None
            obj["spec"]["replicas"] = 3
            kube.put_object("apps", "v1", "deployments", obj)
            assert informer.get("team-a", "chat-llm")["metadata"]["resourceVersion"] == cached_rv  # type: ignore[index]
            controller, _ = make_controller(kube.url, tmp_path, signals, cache=cluster, client=client)
            before = len(kube.requests)
            (record,) = await controller.tick(T0)
            await client.close()
    puts = [r for r in kube.requests[before:] if r.method == "PUT" and r.path.endswith("/scale")]
    assert [r.status for r in puts] == [409, 200]
    assert puts[0].body["metadata"]["resourceVersion"] == cached_rv  # decided from the cache: precondition kept
    assert any(r.path.endswith("/chat-llm/scale") for r in reads(kube, before))  # the re-read: from the API
    # re-decided from the API's 3: max(3 + 4, 3 x 2) = 7 (the HPA's default scale-up rate), not from 2
    assert record.outcome is WriteOutcome.WRITTEN and record.conflicts == 1 and replicas(kube) == 7


async def test_a_cache_down_past_max_stale_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=10)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        client = KubeClient(KubeConfig(host=kube.url, retries=0, backoff_base_s=0.01))
        async with watched(client, max_stale_s=0.2) as cluster:
            controller, _ = make_controller(kube.url, tmp_path, signals, cache=cluster, client=client)
            (informer,) = cluster.workloads["deployments"].values()
            await wait_until(lambda: informer.counters()["watches"] == 1)
            kube.fail_next("GET", r"/deployments$", 500, times=1000)
            kube.close_watches()
            (informer,) = cluster.workloads["deployments"].values()
            await wait_until(lambda: not informer.fresh(0.2), 5.0)
            before = len(kube.requests)
            await controller.tick(T0)
            await client.close()
    assert any(r.path.endswith("/deployments/chat-llm/scale") for r in reads(kube, before))


async def test_target_pause_annotation_is_read_from_the_cache(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        obj = kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")
        assert obj is not None
        obj["metadata"]["annotations"] = {"inference-autoscaler.io/paused": "true", "unrelated": "x" * 1000}
        kube.put_object("apps", "v1", "deployments", obj)
        client = KubeClient(KubeConfig(host=kube.url, retries=1, backoff_base_s=0.01))
        async with watched(client) as cluster:
            controller, _ = make_controller(kube.url, tmp_path, signals, cache=cluster, client=client)
            before = len(kube.requests)
            (record,) = await controller.tick(T0)
            assert cluster.annotations("team-a", TargetRef("apps/v1", "Deployment", "chat-llm")) == {
                "inference-autoscaler.io/paused": "true"  # only what the service reads is kept
            }
            await client.close()
    assert record.outcome is WriteOutcome.PAUSED and replicas(kube) == 2
    assert [r.path for r in reads(kube, before) if "/configmaps" not in r.path] == []
