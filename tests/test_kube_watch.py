"""``KubeClient.watch``: one streaming GET, events line by line, garbage refused, against the stand-in over HTTP.

Cases:
* a real watch from a resourceVersion yields the changes made after it, in order, with ``watch=true``
  and the caller's parameters on the wire; leaving the block closes the stream (the stand-in sees it go);
* a stream cut into odd chunks is still split into whole lines; blank keep-alive lines are skipped; a
  last line without its newline is read;
* a line that is not JSON, JSON that is not ``{type, object}``, an unknown type: ``KubeInvalidResponse``
  (after the good events before it);
* a line longer than ``max_line_bytes``: ``KubeInvalidResponse``, also when the line never ends;
* an ``ERROR`` event with code 410 and an HTTP 410 both raise ``KubeGone``; another ``ERROR`` code
  raises that status's class (500: ``KubeUnavailable``);
* opening shares ``request``'s path: a 500 is retried with the client's backoff, a 401 drops the cached
  credential and retries once with a fresh one;
* 40 open watches do not take the connections requests need (a request still answers at once);
* a silent stream raises ``KubeUnavailable`` (``WatchIdle``) after the read-idle timeout, not never.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from kube_standin import KubeStandIn

from autoscaler.service.kube import (
    KubeClient,
    KubeConfig,
    KubeGone,
    KubeInvalidResponse,
    KubeUnavailable,
    WatchEvent,
)

PODS = "/api/v1/namespaces/team-a/pods"


def pod(name: str, rv: str = "7", **labels: str) -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": "team-a", "resourceVersion": rv, "labels": labels}}


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


async def collect(client: KubeClient, path: str = PODS, **kwargs: Any) -> tuple[list[WatchEvent], Exception | None]:
    events: list[WatchEvent] = []
    try:
        async with client.watch(path, **kwargs) as stream:
            async for event in stream:
                events.append(event)
    except Exception as exc:
        return events, exc
    return events, None


async def test_a_real_watch_yields_changes_after_its_resource_version() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        kube.put_object("", "v1", "pods", pod("before"))
        start = str(kube.resource_version)
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        seen: list[tuple[str, str]] = []
        async with client.watch(PODS, params={"resourceVersion": start, "timeoutSeconds": "30"}) as stream:
            kube.put_object("", "v1", "pods", pod("a"))
            kube.put_object("", "v1", "pods", pod("a", role="x"))
            kube.delete_object("", "v1", "pods", "team-a", "a")
            async for event in stream:
                seen.append((event["type"], event["object"]["metadata"]["name"]))
                if len(seen) == 3:
                    break
            assert kube.open_watches == 1
        assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]  # not "before": older than start
        opened = kube.watch_requests(PODS)
        assert len(opened) == 1 and opened[0].query["resourceVersion"] == start
        assert opened[0].query["watch"] == "true" and opened[0].query["timeoutSeconds"] == "30"
        await asyncio.wait_for(_until(lambda: kube.open_watches == 0), 5)  # leaving the block closed it
        await client.close()


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


async def test_lines_are_split_whatever_the_chunks() -> None:
    async with KubeStandIn() as kube:
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        body = line("ADDED", pod("a")) + b"\n  \n" + line("MODIFIED", pod("a", "8")) + line("DELETED", pod("a", "9"))
        kube.respond_next("GET", PODS + "$", 200, raw=body.rstrip(b"\n"))  # the last line lacks its newline
        events, error = await collect(client)
        assert error is None
        assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [
            ("ADDED", "7"), ("MODIFIED", "8"), ("DELETED", "9")]
        await client.close()


@pytest.mark.parametrize(("garbage", "why"), [
    (b"<html>proxy error</html>\n", "not JSON"),
    (b"[1, 2]\n", "not an event"),
    (b'{"type": "ADDED", "object": []}\n', "not an event"),
    (b'{"type": "RESYNC", "object": {}}\n', "not an event"),
    (b'{"object": {}}\n', "not an event"),
])
async def test_garbage_lines_raise_invalid_response(garbage: bytes, why: str) -> None:
    async with KubeStandIn() as kube:
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        kube.respond_next("GET", PODS + "$", 200, raw=line("ADDED", pod("a")) + garbage + line("ADDED", pod("b")))
        events, error = await collect(client)
        assert [e["object"]["metadata"]["name"] for e in events] == ["a"]  # what came before the garbage
        assert isinstance(error, KubeInvalidResponse) and why in error.message
        await client.close()


@pytest.mark.parametrize("ends", [True, False])
async def test_a_huge_line_is_an_error_not_memory(ends: bool) -> None:
    async with KubeStandIn() as kube:
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        huge = json.dumps({"type": "ADDED", "object": pod("big", role="x" * 200_000)}).encode()
        kube.respond_next("GET", PODS + "$", 200, raw=line("ADDED", pod("a")) + huge + (b"\n" if ends else b""))
        events, error = await collect(client, max_line_bytes=64 * 1024)
        assert len(events) == 1
        assert isinstance(error, KubeInvalidResponse) and "longer than 65536 bytes" in error.message
        # the same stream with room for the line reads it whole
        kube.respond_next("GET", PODS + "$", 200, raw=huge + b"\n")
        events, error = await collect(client, max_line_bytes=1024 * 1024)
        assert error is None and events[0]["object"]["metadata"]["labels"]["role"] == "x" * 200_000
        await client.close()


async def test_gone_as_an_event_or_as_http_raises_kube_gone() -> None:
    async with KubeStandIn() as kube:
        client = KubeClient(KubeConfig(host=kube.url, retries=2, backoff_base_s=0.0))
        expired = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
                   "message": "too old resource version: 5 (1000)"}
        kube.respond_next("GET", PODS + "$", 200, raw=line("ADDED", pod("a")) + line("ERROR", expired))
        events, error = await collect(client)
        assert len(events) == 1 and isinstance(error, KubeGone) and error.reason == "Expired"
        kube.respond_next("GET", PODS + "$", 410, expired)
        events, error = await collect(client)
        assert events == [] and isinstance(error, KubeGone) and "too old" in error.message
        assert len([r for r in kube.requests if r.path == PODS]) == 2  # a 410 is not retried
        broken = {**expired, "code": 500, "reason": "InternalError", "message": "etcd is down"}
        kube.respond_next("GET", PODS + "$", 200, raw=line("ERROR", broken))
        events, error = await collect(client)
        assert isinstance(error, KubeUnavailable) and error.status == 500 and "etcd is down" in error.message
        await client.close()


async def test_opening_shares_the_request_path_retries_and_401_refresh() -> None:
    async with KubeStandIn() as kube:
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        tokens = iter(["old", "new", "newer"])
        current = {"token": next(tokens)}
        invalidated: list[bool] = []

        def invalidate() -> None:
            invalidated.append(True)
            current["token"] = next(tokens)

        config = KubeConfig(host=kube.url, token_refresh=lambda: current["token"], token_invalidate=invalidate,
                            retries=2, backoff_base_s=0.5, backoff_max_s=1.0)
        client = KubeClient(config, sleep=sleep)
        kube.respond_next("GET", PODS + "$", 500, {"kind": "Status", "code": 500, "reason": "InternalError"})
        kube.respond_next("GET", PODS + "$", 401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
        kube.respond_next("GET", PODS + "$", 200, raw=line("ADDED", pod("a")))
        events, error = await collect(client)
        assert error is None and [e["type"] for e in events] == ["ADDED"]
        assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5  # the 500: one backoff; the 401: none
        assert invalidated == [True]
        users = [r.user for r in kube.requests if r.path == PODS]
        assert users == ["Bearer old", "Bearer old", "Bearer new"]
        await client.close()


async def test_a_silent_stream_ends_with_watch_idle() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600  # nothing at all will come
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        started = asyncio.get_running_loop().time()
        events, error = await collect(
            client, params={"resourceVersion": str(kube.resource_version)}, idle_timeout_s=0.3)
        waited = asyncio.get_running_loop().time() - started
        assert events == [] and isinstance(error, KubeUnavailable) and error.reason == "WatchIdle"
        assert 0.3 <= waited < 3
        await client.close()


async def test_open_watches_leave_connections_for_requests() -> None:
    async with KubeStandIn() as kube:
        kube.bookmark_interval_s = 3600
        client = KubeClient(KubeConfig(host=kube.url, retries=0, timeout_s=2.0))

        async def forty_watches_and_a_request() -> None:
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(40):  # more than the request pool's 32 connections
                    await stack.enter_async_context(client.watch(PODS, params={"resourceVersion": "1000"}))
                await _until(lambda: kube.open_watches == 40)
                answer = await client.request("GET", PODS)
                assert answer["kind"] == "PodList"

        await asyncio.wait_for(forty_watches_and_a_request(), 10)  # in one shared pool: stuck at watch 33
        await _until(lambda: kube.open_watches == 0)
        await client.close()
