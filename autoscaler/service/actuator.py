"""The Kubernetes actuator: read and write a target's ``scale`` subresource, count its ready pods, find
HPAs that already manage it, and record Events on it.

Any kind with a scale subresource works (Deployment, StatefulSet, KServe InferenceService, other
custom resources): the kind is mapped to its resource through API discovery, cached. Writes are
``PUT .../scale`` carrying the ``resourceVersion`` that was read (optimistic concurrency: a 409
means someone else wrote first, and the caller re-reads and re-decides).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from autoscaler.policy.model import TargetRef
from autoscaler.service.kube import KubeClient, KubeError, KubeNotFound

EVENT_WINDOW_S = 600.0  # repeats of an Event within this window bump its count

__all__ = ["KubeActuator", "PodSummary", "ScaleView", "TargetNotScalable"]

# Kinds that need no discovery round trip.
_KNOWN = {
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("apps", "ReplicaSet"): "replicasets",
    ("serving.kserve.io", "InferenceService"): "inferenceservices",
}


class TargetNotScalable(KubeError):
    """The target's kind is unknown to the API server or has no scale subresource."""


@dataclass(frozen=True, slots=True)
class ScaleView:
    """What ``GET .../scale`` said."""

    spec_replicas: int
    status_replicas: int
    selector: str
    resource_version: str
    uid: str = ""


@dataclass(frozen=True, slots=True)
class PodSummary:
    ready: int
    load_times: dict[str, float]  # pod uid -> seconds from creation to Ready


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _split(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def _now_rfc3339(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeActuator:
    def __init__(
        self, client: KubeClient, *, component: str = "inference-autoscaler", clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.component = component
        self._clock = clock
        self._plurals: dict[tuple[str, str, str], str] = {}
        self._events: dict[tuple[str, str, str, str], tuple[str, int, float]] = {}

    # ------------------------------------------------------------------ mapping

    async def _plural(self, target: TargetRef) -> str:
        group, version = _split(target.api_version)
        key = (group, version, target.kind)
        if key in self._plurals:
            return self._plurals[key]
        if (group, target.kind) in _KNOWN:
            plural = _KNOWN[(group, target.kind)]
        else:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            try:
                listing = await self.client.request("GET", path)
            except KubeNotFound as exc:
                raise TargetNotScalable(404, "NotFound", f"API {target.api_version} is not served") from exc
            names = [
                r["name"] for r in listing.get("resources", []) if r.get("kind") == target.kind and "/" not in r["name"]
            ]
            if not names:
                raise TargetNotScalable(404, "NotFound", f"kind {target.kind} is not served by {target.api_version}")
            plural = names[0]
            if f"{plural}/scale" not in {r["name"] for r in listing.get("resources", [])}:
                raise TargetNotScalable(422, "NoScale", f"{target.kind} has no scale subresource")
        self._plurals[key] = plural
        return plural

    async def scale_path(self, namespace: str, target: TargetRef) -> str:
        group, version = _split(target.api_version)
        plural = await self._plural(target)
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        return f"{base}/namespaces/{namespace}/{plural}/{target.name}/scale"

    # ------------------------------------------------------------------ reads

    async def read_scale(self, namespace: str, target: TargetRef) -> ScaleView:
        body = await self.client.request("GET", await self.scale_path(namespace, target))
        meta, spec, status = body.get("metadata", {}), body.get("spec", {}), body.get("status", {})
        return ScaleView(
            spec_replicas=int(spec.get("replicas") or 0),
            status_replicas=int(status.get("replicas") or 0),
            selector=str(status.get("selector") or ""),
            resource_version=str(meta.get("resourceVersion", "")),
            uid=str(meta.get("uid", "")),
        )

    async def pod_summary(self, namespace: str, selector: str) -> PodSummary:
        """The target's pods: how many are Running, Ready and not being deleted (the HPA's ready count),
        and, for the Ready ones, how long each took from creation to Ready (its load time)."""
        if not selector:
            return PodSummary(0, {})
        body = await self.client.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        ready = 0
        load_times: dict[str, float] = {}
        for pod in body.get("items", []):
            meta = pod.get("metadata", {})
            if meta.get("deletionTimestamp"):
                continue
            status = pod.get("status", {})
            condition = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
            if status.get("phase") != "Running" or condition is None or condition.get("status") != "True":
                continue
            ready += 1
            if any(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []):
                continue  # its Ready time is a restart's, not the load time
            created, became_ready = (
                _parse_time(meta.get("creationTimestamp")),
                _parse_time(condition.get("lastTransitionTime")),
            )
            if created is not None and became_ready is not None and became_ready >= created:
                load_times[str(meta.get("uid") or meta.get("name"))] = became_ready - created
        return PodSummary(ready, load_times)

    async def count_ready_pods(self, namespace: str, selector: str) -> int:
        return (await self.pod_summary(namespace, selector)).ready

    async def scale_deployment(
        self, namespace: str, name: str, replicas: int, *, guard: Callable[[], bool] | None = None
    ) -> bool:
        """Set a Deployment's replicas through its scale subresource (the warm pool's placeholder).
        Returns False when it is already there."""
        target = TargetRef("apps/v1", "Deployment", name)
        view = await self.read_scale(namespace, target)
        if view.spec_replicas == replicas:
            return False
        await self.write_scale(namespace, target, view, replicas, guard=guard)
        return True

    async def managing_hpas(self, namespace: str, target: TargetRef) -> list[str]:
        """Names of HPAs in the namespace whose scaleTargetRef is this target."""
        body = await self.client.request("GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers")
        group = _split(target.api_version)[0]
        names = []
        for hpa in body.get("items", []):
            ref = hpa.get("spec", {}).get("scaleTargetRef", {})
            if (
                ref.get("kind") == target.kind
                and ref.get("name") == target.name
                and _split(ref.get("apiVersion", ""))[0] == group
            ):
                names.append(hpa["metadata"]["name"])
        return names

    # ------------------------------------------------------------------ writes

    async def write_scale(
        self,
        namespace: str,
        target: TargetRef,
        view: ScaleView,
        replicas: int,
        *,
        guard: Callable[[], bool] | None = None,
    ) -> ScaleView:
        """``PUT .../scale`` with the resourceVersion read in ``view``: raises KubeConflict when stale."""
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": target.name, "namespace": namespace, "resourceVersion": view.resource_version},
            "spec": {"replicas": replicas},
        }
        done = await self.client.request("PUT", await self.scale_path(namespace, target), body=body, guard=guard)
        return ScaleView(
            spec_replicas=int(done.get("spec", {}).get("replicas") or 0),
            status_replicas=int(done.get("status", {}).get("replicas") or 0),
            selector=str(done.get("status", {}).get("selector") or view.selector),
            resource_version=str(done.get("metadata", {}).get("resourceVersion", "")),
            uid=view.uid,
        )

    async def record_event(
        self, namespace: str, target: TargetRef, *, type_: str, reason: str, message: str, uid: str = ""
    ) -> None:
        """A core/v1 Event on the target. A repeat within 10 minutes bumps the count (and the message) of
        the existing Event instead of creating a new one, like client-go's correlator: same reason and
        message for Normal events; same reason for Warnings, whose messages vary tick by tick."""
        now = self._clock()
        stamp = _now_rfc3339(self._clock)
        message = message[:1024]
        key = (namespace, target.name, reason, "" if type_ == "Warning" else message)
        seen = self._events.get(key)
        if seen is not None and now - seen[2] < EVENT_WINDOW_S:
            name, count, first = seen
            patch = {"count": count + 1, "lastTimestamp": stamp, "message": message}
            try:
                await self.client.request(
                    "PATCH",
                    f"/api/v1/namespaces/{namespace}/events/{name}",
                    body=patch,
                    content_type="application/merge-patch+json",
                )
                self._events[key] = (name, count + 1, first)
                return
            except KubeNotFound:
                pass  # expired or deleted: create a new one
        name = f"{target.name}.{uuid.uuid4().hex[:16]}"
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": target.api_version,
                "kind": target.kind,
                "name": target.name,
                "namespace": namespace,
                **({"uid": uid} if uid else {}),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": self.component},
            "reportingComponent": self.component,
        }
        await self.client.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event)
        self._events[key] = (name, 1, now)
        if len(self._events) > 256:  # forget series older than the correlation window (bounded memory)
            self._events = {k: v for k, v in self._events.items() if now - v[2] < EVENT_WINDOW_S}
