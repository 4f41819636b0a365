"""The list+watch cache (``Informer``) against the API stand-in over real HTTP.

Cases:
* the first list of 1234 objects comes in pages of ``page_size`` (``limit``/``continue`` on the wire) and
  is stored whole; a ``continue`` that expires mid-list (compaction) falls back to one unpaged list that
  also holds a change made meanwhile;
* after sync, creations, updates and deletions are applied and handed to handlers in order, once each;
  the resourceVersion follows the API's;
* a watch closed by the server is resumed from the last resourceVersion: no relist (``lists`` stays 1),
  the change made while disconnected is seen exactly once, the second watch asks from the right version;
* bookmarks advance the resourceVersion during a quiet period, so a resume after compaction does not 410;
* compaction while disconnected: the watch gets 410 ``Expired``, the informer relists; an update, an
  addition and a deletion made while disconnected are all seen, the deletion as a synthetic DELETED to
  handlers (no ghost in ``get``, ``items`` or ``select``); an HTTP 410 on the watch relists too;
* reads: ``get``, ``items`` by namespace, ``select`` with every selector operator, only in its namespace;
  a bad selector raises; the informer's own label selector (server-side) drops an object that stops
  matching; ``transform`` (by default: managedFields dropped) is what is stored;
* failures: 500s on the list back off with jittered, capped, growing waits (injected ``sleep``), counted as
  errors; the backoff starts over after a success; garbage on the watch is an error, not a crash; a
  handler that raises does not stop the informer;
* ``stop`` ends ``run`` promptly, from an open watch and from a long backoff; ``fresh`` follows the
  connection on an injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kube_standin import KubeStandIn, wait_until

from autoscaler.labels import SelectorError
from autoscaler.service.informer import Informer
from autoscaler.service.kube import KubeClient, KubeConfig

PODS = "/api/v1/namespaces/team-a/pods"
ALL_PODS = "/api/v1/pods"


def pod(name: str, namespace: str = "team-a", **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai"}]},
            "status": {"phase": "Running"}}


def put_pod(kube: KubeStandIn, name: str, namespace: str = "team-a", **labels: str) -> dict[str, Any]:
    return kube.put_object("", "v1", "pods", pod(name, namespace, **labels))


def client_for(kube: KubeStandIn) -> KubeClient:
    return KubeClient(KubeConfig(host=kube.url, retries=0))


class Sleeps:
    """An injected sleep: records each wait and only yields to the loop."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


class Changes:
    """A handler recording (type, name, resourceVersion of the new or old object)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, kind: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        self.seen.append((kind, obj["metadata"]["name"]))


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def lists_of(kube: KubeStandIn, path: str) -> list[Any]:
    return [r for r in kube.requests if r.path == path and r.method == "GET" and "watch" not in r.query]


async def test_first_list_comes_in_pages_and_is_stored_whole() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        for i in range(1234):
            put_pod(kube, f"p{i:04d}", f"ns-{i % 3}", app="chat" if i % 2 else "embed")
        client = client_for(kube)
        informer = Informer(client, ALL_PODS, page_size=100, rng=random.Random(1))
        async with running(informer):
            assert len(informer) == 1234
            assert [len(informer.items(f"ns-{k}")) for k in range(3)] == [412, 411, 411]
            assert informer.get("ns-1", "p0001")["metadata"]["labels"] == {"app": "chat"}
            assert informer.get("ns-0", "p0001") is None
            assert informer.resource_version == str(kube.resource_version)
            await wait_until(lambda: informer.stats.watches == 1)
        pages = lists_of(kube, ALL_PODS)
        assert len(pages) == 13 == informer.stats.pages and informer.stats.lists == 1
        assert informer.counters() == {"lists": 1, "pages": 13, "relists": 0, "watches": 1, "events": 0,
                                       "bookmarks": 0, "errors": 0, "handler_errors": 0}
        assert all(r.query["limit"] == "100" for r in pages)
        assert "continue" not in pages[0].query and all(r.query.get("continue") for r in pages[1:])
        await client.close()


async def test_an_expired_continue_falls_back_to_one_full_list() -> None:
    async with KubeStandIn() as kube:
        for i in range(250):
            put_pod(kube, f"p{i:03d}")
        compacted: list[bool] = []

        def compact_after_first_page(method: str, path: str) -> None:
            if path == PODS and not compacted:  # between page 1 and page 2: the snapshot is gone
                compacted.append(True)
                kube.compact()
                kube.delete_object("", "v1", "pods", "team-a", "p249")
                put_pod(kube, "late")

        kube.after_request.append(compact_after_first_page)
        client = client_for(kube)
        informer = Informer(client, PODS, page_size=100, rng=random.Random(1))
        async with running(informer):
            assert len(informer) == 250 and informer.get("team-a", "late") is not None
            assert informer.get("team-a", "p249") is None
        pages = lists_of(kube, PODS)
        assert [(r.status, "limit" in r.query, "continue" in r.query) for r in pages] == [
            (200, True, False), (410, True, True), (200, False, False)]
        assert informer.stats.lists == 1 and informer.stats.relists == 0
        await client.close()


async def test_changes_after_sync_reach_the_store_and_handlers_once_in_order() -> None:
    async with KubeStandIn() as kube:
        put_pod(kube, "old")
        client = client_for(kube)
        changes = Changes()
        informer = Informer(client, PODS, rng=random.Random(1))
        informer.on_change(changes)
        async with running(informer):
            assert changes.seen == [("ADDED", "old")]
            created = await client.request("POST", PODS, body=pod("new", app="chat"))
            await client.request("PATCH", f"{PODS}/new", body={"metadata": {"labels": {"app": "embed"}}},
                                 content_type="application/merge-patch+json")
            await client.request("DELETE", f"{PODS}/old")
            await wait_until(lambda: informer.get("team-a", "old") is None)
            assert informer.get("team-a", "new")["metadata"]["labels"] == {"app": "embed"}
            assert informer.get("team-a", "new")["metadata"]["uid"] == created["metadata"]["uid"]
            assert informer.resource_version == str(kube.resource_version)
        assert changes.seen == [("ADDED", "old"), ("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "old")]
        assert informer.stats.events == 3 and informer.stats.lists == 1
        await client.close()


async def test_a_closed_watch_resumes_from_the_last_version_without_a_relist() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        client = client_for(kube)
        changes = Changes()
        informer = Informer(client, PODS, rng=random.Random(1), sleep=Sleeps())
        informer.on_change(changes)
        async with running(informer):
            put_pod(kube, "a")
            await wait_until(lambda: informer.get("team-a", "a") is not None)
            seen_at = informer.resource_version
            assert kube.close_watches() == 1
            put_pod(kube, "b")  # made while no watch is open
            put_pod(kube, "a", role="x")
            await wait_until(lambda: informer.get("team-a", "b") is not None)
            await wait_until(lambda: informer.get("team-a", "a")["metadata"]["labels"] == {"role": "x"})
        assert changes.seen == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a")]
        assert informer.stats.lists == 1 and informer.stats.relists == 0
        watches = kube.watch_requests(PODS)
        assert len(watches) == 2 == informer.stats.watches
        assert watches[1].query["resourceVersion"] == seen_at
        assert watches[0].query["allowWatchBookmarks"] == "true"
        assert 300 <= int(watches[0].query["timeoutSeconds"]) < 600
        await client.close()


async def test_bookmarks_carry_the_version_through_a_quiet_period() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 0.05
        put_pod(kube, "a")
        client = client_for(kube)
        informer = Informer(client, PODS, rng=random.Random(1), sleep=Sleeps())
        async with running(informer):
            synced_at = informer.resource_version
            await wait_until(lambda: kube.open_watches == 1)  # the changes below come after the watch opened
            for i in range(5):  # other collections move the global version; this one stays quiet
                kube.put_object("", "v1", "configmaps", {"metadata": {"name": f"c{i}", "namespace": "team-a"}})
            await wait_until(lambda: informer.resource_version == str(kube.resource_version))
            assert int(informer.resource_version) > int(synced_at) and informer.stats.bookmarks >= 1
            kube.compact()  # history before now is gone: only a resume from the bookmark's version works
            kube.close_watches()
            await wait_until(lambda: informer.stats.watches == 2 and kube.open_watches == 1)
            await wait_until(lambda: informer.stats.bookmarks >= 3)
        assert informer.stats.lists == 1 and informer.stats.relists == 0
        assert informer.stats.events == 0 and len(informer) == 1
        await client.close()


async def test_compaction_while_disconnected_relists_without_ghosts() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        for name in ("a", "b", "c"):
            put_pod(kube, name, app="chat")
        client = client_for(kube)
        changes = Changes()
        informer = Informer(client, PODS, rng=random.Random(1), sleep=Sleeps())
        informer.on_change(changes)
        async with running(informer):
            kube.close_watches()
            put_pod(kube, "a", app="chat", role="x")  # all while no watch is open
            kube.delete_object("", "v1", "pods", "team-a", "b")
            put_pod(kube, "d", app="chat")
            kube.compact()  # and then forgotten: the resume gets 410 Expired
            await wait_until(lambda: informer.stats.relists == 1)
            assert informer.get("team-a", "b") is None
            assert sorted(o["metadata"]["name"] for o in informer.items("team-a")) == ["a", "c", "d"]
            assert sorted(o["metadata"]["name"] for o in informer.select("team-a", "app=chat")) == ["a", "c", "d"]
            assert informer.get("team-a", "a")["metadata"]["labels"]["role"] == "x"
            put_pod(kube, "e")  # and the watch after the relist follows on
            await wait_until(lambda: informer.get("team-a", "e") is not None)
        assert changes.seen[:3] == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]
        assert sorted(changes.seen[3:6]) == [("ADDED", "d"), ("DELETED", "b"), ("MODIFIED", "a")]
        assert changes.seen[6:] == [("ADDED", "e")]
        assert informer.stats.lists == 2
        await client.close()


async def test_a_deletion_while_disconnected_is_not_left_as_a_ghost() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        put_pod(kube, "keep", app="chat")
        put_pod(kube, "gone", app="chat")
        client = client_for(kube)
        deleted: list[dict[str, Any]] = []
        informer = Informer(client, PODS, rng=random.Random(1), sleep=Sleeps())
        informer.on_change(lambda kind, old, new: deleted.append(old) if kind == "DELETED" and old else None)
        async with running(informer):
            kube.close_watches()
            kube.delete_object("", "v1", "pods", "team-a", "gone")
            kube.compact()  # the DELETED event itself is compacted away: only a relist can tell
            await wait_until(lambda: informer.stats.relists == 1)
            assert informer.get("team-a", "gone") is None
            assert [o["metadata"]["name"] for o in informer.select("team-a", "app=chat")] == ["keep"]
        assert [o["metadata"]["name"] for o in deleted] == ["gone"]  # the handler was told, with the old object
        await client.close()


async def test_an_http_410_on_the_watch_relists() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        put_pod(kube, "a")
        client = client_for(kube)
        informer = Informer(client, PODS, rng=random.Random(1), sleep=Sleeps())
        async with running(informer):
            kube.respond_next("GET", PODS + "$", 410, {"kind": "Status", "code": 410, "reason": "Gone"})
            kube.close_watches()
            await wait_until(lambda: informer.stats.relists == 1 and kube.open_watches == 1)
        assert informer.stats.lists == 2 and len(informer) == 1
        await client.close()


async def test_reads_by_namespace_and_selector() -> None:
    async with KubeStandIn() as kube:
        put_pod(kube, "p1", app="chat", tier="gold")
        put_pod(kube, "p2", app="chat", tier="silver", canary="1")
        put_pod(kube, "p3", app="chat", tier="bronze")
        put_pod(kube, "p4", app="other", tier="gold")
        put_pod(kube, "p5", "team-b", app="chat", tier="gold")
        client = client_for(kube)
        informer = Informer(client, ALL_PODS, rng=random.Random(1))
        async with running(informer):
            def names(namespace: str, selector: str) -> list[str]:
                return sorted(o["metadata"]["name"] for o in informer.select(namespace, selector))

            assert names("team-a", "app=chat") == ["p1", "p2", "p3"]
            assert names("team-a", "app=chat,tier in (gold,silver),!canary") == ["p1"]
            assert names("team-a", "app==chat,tier notin (gold),canary") == ["p2"]
            assert names("team-a", "app!=chat") == ["p4"]
            assert names("team-a", "") == ["p1", "p2", "p3", "p4"]
            assert names("team-b", "app=chat,tier=gold") == ["p5"]
            assert names("team-c", "app=chat") == []
            assert len(informer.items()) == 5 and len(informer.items("team-b")) == 1
            with pytest.raises(SelectorError, match="unable to parse"):
                informer.select("team-a", "app in (")
        await client.close()


async def test_server_side_selector_and_transform() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        chat = pod("p1", app="chat")
        chat["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
        kube.put_object("", "v1", "pods", chat)
        put_pod(kube, "p2", app="embed")
        client = client_for(kube)
        informer = Informer(client, PODS, label_selector="app=chat", rng=random.Random(1), sleep=Sleeps())
        slim = Informer(client, PODS, rng=random.Random(1), transform=lambda o: {"metadata": o["metadata"]})
        async with running(informer), running(slim):
            assert [o["metadata"]["name"] for o in informer.items()] == ["p1"]
            assert "managedFields" not in informer.get("team-a", "p1")["metadata"]  # the default transform
            assert set(slim.get("team-a", "p2")) == {"metadata"}
            put_pod(kube, "p1", app="embed")  # stops matching: the watch says DELETED
            await wait_until(lambda: informer.get("team-a", "p1") is None)
            put_pod(kube, "p3", app="chat")
            await wait_until(lambda: informer.get("team-a", "p3") is not None)
            assert set(slim.get("team-a", "p3")) == {"metadata"}
        assert lists_of(kube, PODS)[0].query["labelSelector"] == "app=chat"
        await client.close()


async def test_failures_back_off_jittered_capped_and_start_over_after_success() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        put_pod(kube, "a")
        kube.fail_next("GET", PODS + "$", 500, times=8)
        client = client_for(kube)
        sleeps = Sleeps()
        informer = Informer(client, PODS, backoff_base_s=1.0, backoff_max_s=8.0, rng=random.Random(7), sleep=sleeps)
        async with running(informer):
            ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]
            assert len(sleeps.waits) == 8 == informer.stats.errors
            assert all(c / 2 <= w <= c for w, c in zip(sleeps.waits, ceilings, strict=True)), sleeps.waits
            assert len({round(w, 9) for w in sleeps.waits[3:]}) == 5  # jittered, not all at the cap
            assert len(lists_of(kube, PODS)) == 9
            put_pod(kube, "b")
            await wait_until(lambda: informer.get("team-a", "b") is not None)
            kube.fail_next("GET", PODS + "$", 503, times=2)
            kube.close_watches()
            put_pod(kube, "c")
            await wait_until(lambda: informer.get("team-a", "c") is not None)
        assert len(sleeps.waits) == 10 and 0.5 <= sleeps.waits[8] <= 1.0 and 1.0 <= sleeps.waits[9] <= 2.0
        assert informer.stats.lists == 1  # the failed watches resumed from their version, no relist
        await client.close()


async def test_garbage_on_the_watch_and_failing_handlers_do_not_stop_it() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        put_pod(kube, "a")
        client = client_for(kube)
        sleeps = Sleeps()
        informer = Informer(client, PODS, rng=random.Random(1), sleep=sleeps)

        def broken(kind: str, old: Any, new: Any) -> None:
            raise RuntimeError("a consumer's bug")

        informer.on_change(broken)
        later = Changes()
        informer.on_change(later)
        async with running(informer):
            kube.respond_next("GET", PODS + "$", 200, raw=b'{"type": "ADDED", "object": {"metadata": {}}}\n')
            kube.respond_next("GET", PODS + "$", 200, raw=b"<html>bad gateway</html>\n")
            kube.close_watches()
            put_pod(kube, "b")
            await wait_until(lambda: informer.get("team-a", "b") is not None)
        assert informer.stats.errors >= 2 and informer.stats.lists == 1
        assert informer.stats.handler_errors == 2  # ADDED a (the list), ADDED b
        assert later.seen == [("ADDED", "a"), ("ADDED", "b")]
        await client.close()


async def test_stop_ends_run_promptly_from_a_watch_and_from_a_backoff() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        client = client_for(kube)
        informer = Informer(client, PODS)  # real sleep, a 5-10 minute watch
        stop = asyncio.Event()
        task = asyncio.create_task(informer.run(stop))
        await asyncio.wait_for(informer.synced.wait(), 5)
        await wait_until(lambda: kube.open_watches == 1)
        stop.set()
        await asyncio.wait_for(task, 1.0)
        await wait_until(lambda: kube.open_watches == 0)

        kube.fail_next("GET", PODS + "$", 500, times=100)
        stuck = Informer(client, PODS, backoff_base_s=600.0, backoff_max_s=600.0)  # real sleep, 5-10 minutes
        stop = asyncio.Event()
        task = asyncio.create_task(stuck.run(stop))
        await wait_until(lambda: stuck.stats.errors == 1)
        stop.set()
        await asyncio.wait_for(task, 1.0)
        assert not stuck.synced.is_set()
        await client.close()


async def test_fresh_follows_the_connection() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 0.05
        now = [100.0]
        client = client_for(kube)
        informer = Informer(client, PODS, rng=random.Random(1), clock=lambda: now[0])
        assert not informer.fresh(60)  # not synced
        async with running(informer):
            await wait_until(lambda: informer.stats.bookmarks >= 1)  # delivering: connected
            now[0] += 1000
            assert informer.fresh(0)  # connected: fresh however long ago it connected
        now[0] += 30  # stopped (disconnected) at 1100
        assert informer.fresh(60) and not informer.fresh(10)
        await client.close()


async def test_a_listed_cache_is_fresh_before_its_watch_opens_and_a_silent_watch_is_reopened() -> None:
    """Right after the list the store is as fresh as it gets; a watch that says nothing (not even the
    bookmarks the apiserver sends about every minute) for ``idle_timeout_s`` is presumed dead (a half-open
    connection) and opened again from the last resourceVersion: no relist, nothing lost."""
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600  # the server says nothing
        put_pod(kube, "a")
        now = [100.0]
        client = client_for(kube)
        informer = Informer(client, PODS, rng=random.Random(1), clock=lambda: now[0], idle_timeout_s=0.2,
                            idle_grace_s=0.0, backoff_base_s=0.01)
        informer.synced.set()  # as if listed long ago, never watched...
        assert not informer.fresh(60)
        informer.synced.clear()
        async with running(informer):
            await wait_until(lambda: informer.stats.lists == 1)
            assert informer.fresh(0)  # listed just now: fresh at once (watch open or not)
            await wait_until(lambda: informer.stats.watches >= 3, 5.0)  # silent watches reopened
            put_pod(kube, "b")
            await wait_until(lambda: informer.get("team-a", "b") is not None)
        await client.close()
    assert informer.stats.lists == 1 and informer.stats.relists == 0


async def test_a_watch_that_opens_then_fails_is_not_fresh_and_a_410_makes_the_store_stale() -> None:
    """Freshness comes from delivery, not from a watch opening: a stream that opens and then fails every
    time (an in-stream error, a proxy cutting after the headers) lets the store age; a 410 means events
    were missed, so the store is stale until the relist is stored (a relist failing meanwhile keeps it so)."""
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        put_pod(kube, "a")
        now = [100.0]
        client = client_for(kube)
        informer = Informer(client, PODS, rng=random.Random(1), clock=lambda: now[0], backoff_base_s=0.01,
                            backoff_max_s=0.02)
        error = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                             "code": 500, "reason": "InternalError", "message": "etcd timeout"}}
        async with running(informer):
            await wait_until(lambda: informer.stats.watches == 1)  # listed, watching (resumes, never relists)
            kube.respond_next("GET", r"/pods$", 200, raw=json.dumps(error).encode() + b"\n", times=10_000)
            kube.close_watches()
            await wait_until(lambda: informer.stats.errors >= 5)
            now[0] += 30
            assert not informer.fresh(10)  # watches opened, none delivered: the store is 30 s old
        kube.canned.clear()
        kube.bookmark_interval_s = 0.05
        async with running(informer):
            await wait_until(lambda: informer.fresh(0))  # delivering again
            kube.fail_next("GET", r"/pods$", 410)  # the watch: Gone
            kube.fail_next("GET", r"/pods$", 503, times=10_000)  # the relist after the 410 keeps failing
            kube.close_watches()
            await wait_until(lambda: informer.resource_version == "")
            assert not informer.fresh(3600)
        await client.close()


async def test_the_label_index_agrees_with_a_scan_through_changes() -> None:
    """``select`` narrows by a label index (a tick's thousands of selects must not scan the namespace):
    after adds, relabels and deletes it returns exactly what matching every object would."""
    from autoscaler.labels import parse_selector

    async with KubeStandIn() as kube:
        for i in range(30):
            put_pod(kube, f"p{i}", app=f"m{i % 3}", tier="gpu" if i % 2 else "cpu")
        client = client_for(kube)
        informer = Informer(client, PODS, rng=random.Random(1))
        async with running(informer):
            await wait_until(lambda: len(informer) == 30)
            for i in range(0, 30, 4):  # relabel some, delete others
                obj = kube.get_object("", "v1", "pods", "team-a", f"p{i}")
                assert obj is not None
                obj["metadata"]["labels"] = {"app": "m9", "tier": "gpu"}
                kube.put_object("", "v1", "pods", obj)
            for i in range(1, 30, 5):
                kube.delete_object("", "v1", "pods", "team-a", f"p{i}")
            await wait_until(lambda: len(informer) == 24 and informer.get("team-a", "p28") is not None
                             and informer.get("team-a", "p28")["metadata"]["labels"]["app"] == "m9")
            selectors = ["app=m0", "app=m9,tier=gpu", "app in (m1)", "tier=cpu,app!=m2", "app in (m0,m2)", "!tier",
                         ""]
            for text in selectors:
                wanted = parse_selector(text)
                scan = sorted(o["metadata"]["name"] for o in informer.items("team-a")
                              if wanted.matches(o["metadata"].get("labels") or {}))
                assert sorted(o["metadata"]["name"] for o in informer.select("team-a", text)) == scan, text
        await client.close()
