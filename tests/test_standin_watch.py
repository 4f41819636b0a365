"""Watch, history and paged lists in the Kubernetes API stand-in, checked over real HTTP (aiohttp as a raw
client, and the official ``kubernetes`` client's ``watch.Watch().stream``).

Case matrix:

* resume: a watch from a list's resourceVersion sees exactly the later changes (create, scale write,
  delete, reconcile), in order, none twice; unset/"0" starts with synthetic ADDED events, then follows;
* bookmarks: sent at ``bookmark_interval_s`` only with ``allowWatchBookmarks=true``, carrying only
  kind/apiVersion/resourceVersion; ``timeoutSeconds`` ends the stream cleanly;
* expiry: after ``compact()`` (or past ``history_limit``) a watch from an older version gets HTTP 200 and
  one ERROR event with a 410 Expired Status, and the stream ends; a stale continue token gets 410;
* selectors: an object relabelled out of a label selector arrives as DELETED (at the event's version),
  back in as ADDED; fieldSelector and namespace scoping filter; reconcile's pod deletions are DELETED;
* pagination: ``limit``/``continue`` pages from one snapshot (writes between pages are not mixed in),
  ``remainingItemCount``, the first page's resourceVersion on every page;
* lifecycle: ``close_watches()`` ends every open stream at once, ``open_watches`` counts them, a watch is
  logged once in ``requests`` when opened.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import kubernetes
from kube_standin import KubeStandIn, wait_until

PODS = "/api/v1/namespaces/team-a/pods"


async def read_watch(url: str, path: str, params: dict[str, str], *, count: int | None = None) -> list[dict[str, Any]]:
    """Events of one watch, until the server ends the stream (or ``count`` events have arrived)."""
    events: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.get(url + path, params={"watch": "1", **params}) as resp:
        assert resp.status == 200
        async for line in resp.content:
            if line.strip():
                events.append(json.loads(line))
            if count is not None and len(events) >= count:
                break
    return events


async def get_json(url: str, path: str, params: dict[str, str] | None = None) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url + path, params=params or {}) as resp:
        return resp.status, await resp.json()


async def send(url: str, method: str, path: str, body: Any, content_type: str = "application/json") -> Any:
    async with aiohttp.ClientSession() as session, session.request(
        method, url + path, data=json.dumps(body), headers={"Content-Type": content_type}
    ) as resp:
        return resp.status, await resp.json()


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


async def test_resume_from_a_lists_version_sees_exactly_the_later_changes() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat", 2)
        status, listed = await get_json(kube.url, "/apis/apps/v1/namespaces/team-a/deployments")
        assert status == 200
        rv = listed["metadata"]["resourceVersion"]
        assert int(rv) == kube.resource_version
        await send(kube.url, "POST", "/apis/apps/v1/namespaces/team-a/deployments", {
            "metadata": {"name": "code"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "code"}},
                     "template": {"metadata": {"labels": {"app": "code"}}, "spec": {"containers": []}}},
        })
        await send(kube.url, "PATCH", "/apis/apps/v1/namespaces/team-a/deployments/chat/scale",
                   {"spec": {"replicas": 4}}, "application/merge-patch+json")
        await send(kube.url, "DELETE", "/apis/apps/v1/namespaces/team-a/deployments/code", None)
        events = await read_watch(kube.url, "/apis/apps/v1/namespaces/team-a/deployments",
                                  {"resourceVersion": rv, "timeoutSeconds": "1"})
        assert summary(events) == [("ADDED", "code"), ("MODIFIED", "chat"), ("DELETED", "code")]
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions) and versions[0] > int(rv) and versions[-1] == kube.resource_version
        assert events[1]["object"]["spec"]["replicas"] == 4 and events[1]["object"]["kind"] == "Deployment"
        # resuming from the middle: only what came after
        tail = await read_watch(kube.url, "/apis/apps/v1/namespaces/team-a/deployments",
                                {"resourceVersion": str(versions[1]), "timeoutSeconds": "1"})
        assert summary(tail) == [("DELETED", "code")]


async def test_unset_version_starts_with_synthetic_added_then_follows() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat", 2)
        kube.add_deployment("team-b", "other", 1)

        async def later() -> None:
            await wait_until(lambda: kube.open_watches == 1)
            kube.get_object("apps", "v1", "deployments", "team-a", "chat")["spec"]["replicas"] = 3
            kube.reconcile_workloads()

        initial = {o["metadata"]["name"] for o in kube.list_objects("", "v1", "pods", "team-a")}
        task = asyncio.create_task(later())
        events = await read_watch(kube.url, PODS, {"resourceVersion": "0"}, count=3)
        await task
        assert [e["type"] for e in events] == ["ADDED"] * 3
        assert {e["object"]["metadata"]["name"] for e in events[:2]} == initial
        assert events[2]["object"]["metadata"]["name"] not in initial
        assert events[2]["object"]["metadata"]["namespace"] == "team-a"
        await wait_until(lambda: kube.open_watches == 0)


async def test_bookmarks_only_when_asked_and_timeout_ends_the_stream() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 0.05
        kube.add_deployment("team-a", "chat", 1)
        rv = str(kube.resource_version)
        loop = asyncio.get_running_loop()
        started = loop.time()
        events = await read_watch(kube.url, PODS, {"resourceVersion": rv, "allowWatchBookmarks": "true",
                                                   "timeoutSeconds": "1"})
        assert 0.9 <= loop.time() - started < 3.0
        assert len(events) >= 5 and {e["type"] for e in events} == {"BOOKMARK"}
        assert events[0]["object"] == {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}
        silent = await read_watch(kube.url, PODS, {"resourceVersion": rv, "timeoutSeconds": "1"})
        assert silent == []


async def test_a_version_older_than_the_history_gets_410_expired() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat", 2)
        old = kube.resource_version - 1
        kube.compact()
        events = await read_watch(kube.url, PODS, {"resourceVersion": str(old), "timeoutSeconds": "5"})
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
        assert status["message"] == f"too old resource version: {old} ({kube.resource_version})"
        # the current version is still fine; so is anything kept when the history is bounded
        assert await read_watch(kube.url, PODS, {"resourceVersion": str(kube.resource_version),
                                                 "timeoutSeconds": "1"}) == []
        kube.history_limit = 3
        first = kube.resource_version
        for i in range(5):
            kube.put_object("", "v1", "configmaps", {"metadata": {"name": f"c{i}", "namespace": "team-a"}})
        path = "/api/v1/namespaces/team-a/configmaps"
        expired = await read_watch(kube.url, path, {"resourceVersion": str(first), "timeoutSeconds": "1"})
        assert expired[0]["object"]["message"] == f"too old resource version: {first} ({first + 2})"
        kept = await read_watch(kube.url, path, {"resourceVersion": str(first + 2), "timeoutSeconds": "1"})
        assert summary(kept) == [("ADDED", "c2"), ("ADDED", "c3"), ("ADDED", "c4")]


async def test_relabelled_out_of_a_selector_is_deleted_and_reconcile_deletes_show() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat", 3)
        rv = kube.resource_version
        pod = kube.list_objects("", "v1", "pods", "team-a")[0]
        name = pod["metadata"]["name"]
        await send(kube.url, "PATCH", f"{PODS}/{name}", {"metadata": {"labels": {"app": "moved"}}},
                   "application/merge-patch+json")
        await send(kube.url, "PATCH", f"{PODS}/{name}", {"metadata": {"labels": {"app": "chat"}}},
                   "application/merge-patch+json")
        kube.get_object("apps", "v1", "deployments", "team-a", "chat")["spec"]["replicas"] = 1
        kube.reconcile_workloads()
        events = await read_watch(kube.url, PODS, {"resourceVersion": str(rv), "labelSelector": "app=chat",
                                                   "timeoutSeconds": "1"})
        assert [e["type"] for e in events] == ["DELETED", "ADDED", "DELETED", "DELETED"]
        unmatched = events[0]["object"]
        assert unmatched["metadata"]["name"] == name and unmatched["metadata"]["labels"] == {"app": "chat"}
        assert int(unmatched["metadata"]["resourceVersion"]) == rv + 1  # the event's version
        assert len(kube.list_objects("", "v1", "pods", "team-a")) == 1
        deleted = {e["object"]["metadata"]["name"] for e in events[2:]}
        left = {o["metadata"]["name"] for o in kube.list_objects("", "v1", "pods", "team-a")}
        assert len(deleted) == 2 and not deleted & left
        # fieldSelector and namespace scoping
        kube.add_deployment("team-b", "chat", 1)
        survivor = kube.list_objects("", "v1", "pods", "team-a")[0]["metadata"]["name"]
        one = await read_watch(kube.url, PODS, {"fieldSelector": f"metadata.name={survivor}", "timeoutSeconds": "1"})
        assert summary(one) == [("ADDED", survivor)]
        everywhere = await read_watch(kube.url, "/api/v1/pods", {"timeoutSeconds": "1"})
        assert {e["object"]["metadata"]["namespace"] for e in everywhere} == {"team-a", "team-b"}
        status, body = await get_json(kube.url, PODS, {"watch": "1", "fieldSelector": "spec.nodeName=x"})
        assert status == 400 and body["reason"] == "BadRequest"


async def test_paged_lists_come_from_one_snapshot() -> None:
    async with KubeStandIn() as kube:
        for i in range(1200):
            kube.put_object("", "v1", "configmaps", {"metadata": {"name": f"cm-{i:04d}", "namespace": "team-a"}})
        path = "/api/v1/namespaces/team-a/configmaps"
        status, first = await get_json(kube.url, path, {"limit": "500"})
        assert status == 200 and len(first["items"]) == 500 and first["metadata"]["remainingItemCount"] == 700
        rv = first["metadata"]["resourceVersion"]
        kube.put_object("", "v1", "configmaps", {"metadata": {"name": "cm-0000a", "namespace": "team-a"}})
        names = [o["metadata"]["name"] for o in first["items"]]
        token = first["metadata"]["continue"]
        remaining = []
        while token:
            status, page = await get_json(kube.url, path, {"limit": "500", "continue": token})
            assert status == 200 and page["metadata"]["resourceVersion"] == rv
            names += [o["metadata"]["name"] for o in page["items"]]
            remaining.append(page["metadata"].get("remainingItemCount"))
            token = page["metadata"].get("continue")
        assert remaining == [200, None]
        assert names == [f"cm-{i:04d}" for i in range(1200)]  # each once, the later write not mixed in
        # a watch from the list's version sees the write made while paging, and nothing else
        events = await read_watch(kube.url, path, {"resourceVersion": rv, "timeoutSeconds": "1"})
        assert summary(events) == [("ADDED", "cm-0000a")]
        status, again = await get_json(kube.url, path, {"limit": "1000"})
        kube.compact()
        status, stale = await get_json(kube.url, path, {"limit": "1000", "continue": again["metadata"]["continue"]})
        assert status == 410 and stale["reason"] == "Expired" and "continue parameter is too old" in stale["message"]


async def test_close_watches_ends_every_stream_and_watches_are_logged_once() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat", 1)
        streams = [asyncio.create_task(read_watch(kube.url, PODS, {})) for _ in range(3)]
        await wait_until(lambda: kube.open_watches == 3)
        assert kube.close_watches() == 3
        results = await asyncio.wait_for(asyncio.gather(*streams), 5)
        assert all(summary(r) == summary(results[0]) and len(r) == 1 for r in results)
        await wait_until(lambda: kube.open_watches == 0)
        assert len(kube.watch_requests(PODS)) == 3
        assert all(r.method == "GET" and r.status == 200 for r in kube.watch_requests())
        # a client that goes away is noticed without any event to send
        task = asyncio.create_task(read_watch(kube.url, PODS, {}))
        await wait_until(lambda: kube.open_watches == 1)
        task.cancel()
        await wait_until(lambda: kube.open_watches == 0)


async def test_the_official_clients_watch_stream() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat", 2)
        cfg = kubernetes.client.Configuration()
        cfg.host = kube.url
        core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(cfg))
        listed = await asyncio.to_thread(core.list_namespaced_pod, "team-a")
        rv = listed.metadata.resource_version
        kube.get_object("apps", "v1", "deployments", "team-a", "chat")["spec"]["replicas"] = 3
        kube.reconcile_workloads()
        kube.delete_object("", "v1", "pods", "team-a", listed.items[0].metadata.name)

        def stream() -> list[tuple[str, str, str]]:
            watcher = kubernetes.watch.Watch()
            return [
                (e["type"], e["object"].metadata.name, e["object"].metadata.resource_version)
                for e in watcher.stream(core.list_namespaced_pod, "team-a", resource_version=rv, timeout_seconds=1)
            ]

        seen = await asyncio.to_thread(stream)
        assert [t for t, _, _ in seen] == ["ADDED", "DELETED"]
        assert seen[1][1] == listed.items[0].metadata.name and int(seen[1][2]) == kube.resource_version
