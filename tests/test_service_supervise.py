"""A dead loop does not keep the Lease (issue 16, item 5): ``run`` stops everything when any of its
loops ends on its own, releases the Lease so a standby takes over, and exits 1; a hung TokenReview or
SubjectAccessReview fails its request within a bound instead of holding it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kube_standin import KubeStandIn, wait_until

from autoscaler.commands.common import Exit
from autoscaler.commands.run import supervise
from autoscaler.metrics_api.auth import KubeReviews
from autoscaler.service.kube import KubeClient, KubeConfig
from autoscaler.service.leader import LeaseElector, LeaseSettings


async def _until(stop: asyncio.Event) -> None:
    await stop.wait()


async def _dies_after(seconds: float) -> None:
    await asyncio.sleep(seconds)
    raise RuntimeError("state decode blew up")


async def test_a_dying_loop_stops_the_others_and_the_lease_is_released() -> None:
    async with KubeStandIn() as kube:
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        try:
            elector = LeaseElector(client, LeaseSettings(namespace="ops", identity="pod-a"))
            stop = asyncio.Event()
            lease = asyncio.create_task(elector.run(stop), name="lease loop")
            await wait_until(elector.is_leader, timeout_s=10)
            control = asyncio.create_task(_dies_after(0.2), name="control loop")
            started = time.monotonic()
            code = await asyncio.wait_for(supervise(stop, [control, lease]), timeout=20)
            assert code == Exit.INVALID and stop.is_set() and lease.done()
            assert time.monotonic() - started < 10
            await elector.release()  # what run's finally does
        finally:
            await client.close()
        spec = kube.get_object("coordination.k8s.io", "v1", "leases", "ops", "inference-autoscaler")["spec"]
        assert not spec.get("holderIdentity")  # a standby acquires it at once


async def test_a_requested_stop_lets_the_loops_finish_and_exits_zero() -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_until(stop)), asyncio.create_task(_until(stop))]
    asyncio.get_running_loop().call_later(0.1, stop.set)
    assert await asyncio.wait_for(supervise(stop, tasks), timeout=5) == Exit.OK


class _HangingApi:
    """A Kubernetes client whose every call hangs (a TokenReview the API server never answers)."""

    async def request(self, method: str, path: str, **_: Any) -> Any:
        await asyncio.sleep(3600)


async def test_a_hung_review_fails_within_its_bound() -> None:
    reviews = KubeReviews(_HangingApi(), timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"TokenReview took longer than 0\.2 s"):
        await reviews.token_review("t")
    with pytest.raises(TimeoutError, match=r"SubjectAccessReview took longer than 0\.2 s"):
        await reviews.access_review({"user": "u"})
    assert time.monotonic() - started < 2
