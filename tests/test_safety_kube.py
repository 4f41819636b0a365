"""Nothing is written from garbage: the Kubernetes edge against the in-repo API stand-in over real HTTP.

Cases (each failed on the code before the safety change; the finding it proves is named):
* finding 5: a scale read without a resourceVersion, or with impossible replicas (negative, > 2^31-1,
  a string, a float, a bool), or a 2xx that is not a JSON object raises ``KubeInvalidResponse``;
  the controller then holds and reports, and never sends the ``PUT replicas=min, resourceVersion: ""``
  the old code sent on every tick;
* ``write_scale`` refuses (before sending) a write without its resourceVersion precondition, or with
  an impossible replica count;
* ``Retry-After`` values that are negative, NaN, fractional or absurd never become the wait; every wait
  is within ``[0, backoff_max_s]``; an HTTP-date is honoured (capped);
* a token with a newline is an error of the request, not a crash;
* unreadable Leases (``spec: null``, a string duration, a negative duration, a number as holder) are
  reported and replaced by a fresh acquire only after the record stayed unchanged for a full lease
  duration on our clock, with the resourceVersion as precondition; one that keeps changing is never
  taken; one without a resourceVersion is never overwritten.
"""

from __future__ import annotations

import logging
import math
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from kube_standin import KubeStandIn
from service_harness import ScriptedSignals, make_controller, policy_text

from autoscaler.core.policy import TargetRef
from autoscaler.service.actuator import KubeActuator, ScaleView
from autoscaler.service.kube import KubeClient, KubeConfig, KubeError, KubeInvalidResponse, KubeUnsafeWrite
from autoscaler.service.leader import LeaseElector, LeaseSettings

T0 = 1_800_000_000.0
CHAT = TargetRef("apps/v1", "Deployment", "chat-llm")
SCALE = r"/deployments/chat-llm/scale$"


def scale_body(replicas: Any = 6, status: Any = 6, rv: Any = "1234") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "chat-llm", "namespace": "team-a", "uid": "u-1"}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
            "spec": {"replicas": replicas}, "status": {"replicas": status, "selector": "app=chat-llm"}}


def scale_puts(kube: KubeStandIn) -> list[Any]:
    return [r.body for r in kube.requests if r.method in ("PUT", "PATCH") and r.path.endswith("/chat-llm/scale")]


def client_for(kube: KubeStandIn) -> KubeClient:
    return KubeClient(KubeConfig(host=kube.url, retries=0))


@pytest.mark.parametrize(("body", "why"), [
    (scale_body(replicas=-5, rv=None), "no resourceVersion"),  # the finding, as seen
    (scale_body(rv=""), "no resourceVersion"),
    (scale_body(replicas=-5), "spec.replicas is -5"),
    (scale_body(status=-1), "status.replicas is -1"),
    (scale_body(replicas=2**31), "outside"),
    (scale_body(replicas="3"), "not an integer"),
    (scale_body(replicas=2.5), "not an integer"),
    (scale_body(replicas=True), "not an integer"),
    ([], "not an object"),
    (None, "not an object"),
])
async def test_garbage_scale_reads_raise_invalid_response(body: Any, why: str) -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 6)
        client = client_for(kube)
        kube.respond_next("GET", SCALE, 200, body)
        with pytest.raises(KubeInvalidResponse, match=why) as caught:
            await KubeActuator(client).read_scale("team-a", CHAT)
        assert isinstance(caught.value, KubeError)  # the controller's "hold and report" path
        view = await KubeActuator(client).read_scale("team-a", CHAT)  # a sane answer still reads
        assert (view.spec_replicas, view.resource_version != "") == (6, True)
        await client.close()


async def test_html_200_is_invalid_not_an_empty_scale() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 6)
        client = client_for(kube)
        kube.respond_next("GET", SCALE, 200, raw=b"<html>proxy login</html>", headers={"Content-Type": "text/html"})
        with pytest.raises(KubeInvalidResponse, match="not JSON"):
            await KubeActuator(client).read_scale("team-a", CHAT)
        await client.close()


async def test_controller_never_writes_from_a_garbage_scale_read(tmp_path: Path) -> None:
    """Finding 5: ``replicas: -5`` without a resourceVersion used to become ``PUT replicas=<min>`` with
    ``resourceVersion: ""`` (no precondition) on every tick."""
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=30)  # 30 / 5 per replica = 6: the target is right where it is
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 6)
        controller, client = make_controller(kube.url, tmp_path, signals)
        kube.respond_next("GET", SCALE, 200, scale_body(replicas=-5, rv=None), times=5)
        for i in range(5):
            (record,) = await controller.tick(T0 + 2 * i)
            assert not record.wrote and "resourceVersion" in record.error, record
            for entry in controller.entries.values():
                entry.next_due = 0  # due again at once: 5 ticks in 10 s, as in the finding
        assert scale_puts(kube) == []
        assert kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")["spec"]["replicas"] == 6
        await client.close()


@pytest.mark.parametrize(("rv", "replicas", "why"), [
    ("", 2, "without the resourceVersion"),
    ("1001", -1, "replicas=-1"),
    ("1001", 2**31, "replicas=2147483648"),
    ("1001", 2.0, "replicas=2.0"),
])
async def test_write_scale_is_refused_before_sending(rv: str, replicas: Any, why: str) -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 6)
        client = client_for(kube)
        view = ScaleView(6, 6, "app=chat-llm", rv, "u-1")
        with pytest.raises(KubeUnsafeWrite, match=why):
            await KubeActuator(client).write_scale("team-a", CHAT, view, replicas)
        assert scale_puts(kube) == []  # nothing was sent
        await client.close()


async def test_write_scale_carries_the_precondition() -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 6)
        client = client_for(kube)
        actuator = KubeActuator(client)
        view = await actuator.read_scale("team-a", CHAT)
        written = await actuator.write_scale("team-a", CHAT, view, 4)
        assert scale_puts(kube)[-1]["metadata"]["resourceVersion"] == view.resource_version != ""
        assert written.spec_replicas == 4 and written.resource_version not in ("", view.resource_version)
        await client.close()


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.mark.parametrize(("header", "expected"), [
    ("-5", None),  # invalid: our own jittered backoff, never an immediate retry loop
    ("nan", None),
    ("1.5", None),
    ("inf", None),
    ("99999999999999999999", 2.0),  # absurdly long: capped
    ("7", 2.0),  # valid, capped
    ("1", 1.0),
    ("0", 0.0),
    (formatdate(T0 + 3600, usegmt=True), 2.0),  # an HTTP-date: capped (the stand-in's clock is real time)
])
async def test_retry_after_is_validated_and_capped(header: str, expected: float | None) -> None:
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 6)
        sleeps = Sleeps()
        client = KubeClient(
            KubeConfig(host=kube.url, retries=1, backoff_base_s=0.5, backoff_max_s=2.0), sleep=sleeps
        )
        kube.respond_next("GET", SCALE, 429, {"kind": "Status", "code": 429}, headers={"Retry-After": header})
        view = await KubeActuator(client).read_scale("team-a", CHAT)
        assert view.spec_replicas == 6
        (wait,) = sleeps.calls
        assert math.isfinite(wait) and 0.0 <= wait <= 2.0
        if expected is None:
            assert wait <= 0.5  # the jittered backoff of attempt 0 (base 0.5 s), not the header
        else:
            assert wait == pytest.approx(expected)
        await client.close()


async def test_a_token_with_a_newline_is_a_request_error() -> None:
    async with KubeStandIn() as kube:
        client = KubeClient(KubeConfig(host=kube.url, token="abc\r\nX-Injected: 1", retries=0))
        with pytest.raises(KubeError, match="control characters"):
            await client.request("GET", "/api/v1/namespaces/team-a/pods")
        await client.close()


# --- leases -----------------------------------------------------------------------------------------

LEASES = ("coordination.k8s.io", "v1", "leases")


def seed_lease(kube: KubeStandIn, spec: Any) -> dict[str, Any]:
    return kube.put_object(*LEASES, {"metadata": {"name": "inference-autoscaler", "namespace": "ops"}, "spec": spec})


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("spec", [
    None,
    {"holderIdentity": "other", "leaseDurationSeconds": "abc", "renewTime": "2026-01-01T00:00:00.000000Z"},
    {"holderIdentity": "other", "leaseDurationSeconds": -5, "renewTime": "2026-01-01T00:00:00.000000Z"},
    {"holderIdentity": 5, "leaseDurationSeconds": 15},
    {"holderIdentity": "other", "leaseDurationSeconds": 15, "leaseTransitions": "many"},
])
async def test_unreadable_lease_is_reported_then_replaced_after_a_full_duration(
    spec: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with KubeStandIn() as kube:
        seed_lease(kube, spec)
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        clock = Clock()
        elector = LeaseElector(client, LeaseSettings(namespace="ops", identity="me"), monotonic=clock)
        with caplog.at_level(logging.ERROR, logger="autoscaler.leader"):
            assert await elector.try_acquire_or_renew() is False  # never at once: someone may hold it
        assert "unreadable" in caplog.text
        clock.t += 14.9
        assert await elector.try_acquire_or_renew() is False and not elector.is_leader()
        puts = [r for r in kube.requests if r.method == "PUT"]
        assert puts == []
        clock.t += 0.2  # a full lease duration (15 s) since the unreadable record last changed
        assert await elector.try_acquire_or_renew() is True and elector.is_leader()
        (put,) = [r for r in kube.requests if r.method == "PUT"]
        assert put.body["metadata"]["resourceVersion"]  # replaced under its precondition, never blindly
        lease = kube.get_object(*LEASES, "ops", "inference-autoscaler")
        assert lease["spec"]["holderIdentity"] == "me" and lease["spec"]["leaseDurationSeconds"] == 15
        clock.t += 2
        assert await elector.try_acquire_or_renew() is True  # and it renews normally from then on
        await client.close()


async def test_unreadable_lease_that_keeps_changing_is_never_taken() -> None:
    async with KubeStandIn() as kube:
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        clock = Clock()
        elector = LeaseElector(client, LeaseSettings(namespace="ops", identity="me"), monotonic=clock)
        for i in range(20):  # someone keeps writing it (a live holder with a broken client, say)
            seed_lease(kube, {"holderIdentity": "other", "leaseDurationSeconds": f"bad-{i}"})
            assert await elector.try_acquire_or_renew() is False
            clock.t += 2
        assert [r for r in kube.requests if r.method == "PUT"] == []
        await client.close()


async def test_lease_without_resource_version_is_never_overwritten() -> None:
    async with KubeStandIn() as kube:
        seed_lease(kube, {"holderIdentity": "other", "leaseDurationSeconds": 15})
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        clock = Clock()
        elector = LeaseElector(client, LeaseSettings(namespace="ops", identity="me"), monotonic=clock)
        lease = {"metadata": {"name": "inference-autoscaler", "namespace": "ops"},
                 "spec": {"holderIdentity": "other", "leaseDurationSeconds": 15}}
        kube.respond_next("GET", r"/leases/inference-autoscaler$", 200, lease, times=10)
        for _ in range(10):
            assert await elector.try_acquire_or_renew() is False
            clock.t += 5
        assert [r for r in kube.requests if r.method == "PUT"] == []  # an unconditional PUT could clobber a holder
        await client.close()


async def test_held_lease_with_a_negative_duration_is_not_stolen_at_once() -> None:
    """The old code trusted ``leaseDurationSeconds: -5`` and took a live holder's lease on sight."""
    async with KubeStandIn() as kube:
        seed_lease(kube, {"holderIdentity": "other", "leaseDurationSeconds": -5,
                          "renewTime": "2026-01-01T00:00:00.000000Z"})
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        elector = LeaseElector(client, LeaseSettings(namespace="ops", identity="me"), monotonic=Clock())
        assert await elector.try_acquire_or_renew() is False
        assert kube.get_object(*LEASES, "ops", "inference-autoscaler")["spec"]["holderIdentity"] == "other"
        await client.close()
