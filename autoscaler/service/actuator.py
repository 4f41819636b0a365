"""The Kubernetes actuator: read and write a target's ``scale`` subresource, count its ready pods, find
HPAs that already manage it, and record Events on it.

Any kind with a scale subresource works (Deployment, StatefulSet, KServe InferenceService, other
custom resources): the kind is mapped to its resource through API discovery, cached. Writes are
``PUT .../scale`` carrying the ``resourceVersion`` that was read (optimistic concurrency: a 409
means someone else wrote first, and the caller re-reads and re-decides).

Nothing is written from garbage. A scale read is validated before anyone decides from it: it must
carry a ``resourceVersion``, and ``spec.replicas``/``status.replicas`` must be integers in
``[0, 2^31-1]`` (an absent ``spec.replicas`` is 0, as ``omitempty`` encodes it); anything else raises
:class:`~autoscaler.service.kube.KubeInvalidResponse`, which the controller treats like any failed
read: hold and report. A write is refused before it is sent (:class:`~autoscaler.service.kube.KubeUnsafeWrite`)
unless it carries a non-empty ``resourceVersion`` precondition and a replica count in that range: an
unconditional ``PUT`` would overwrite whatever another writer decided since our read. Pod and HPA
lists that are not lists of objects are invalid answers too (the HPA check then fails, which blocks
the write).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from autoscaler.core.policy import TargetRef
from autoscaler.service.kube import KubeClient, KubeError, KubeInvalidResponse, KubeNotFound, KubeUnsafeWrite

EVENT_WINDOW_S = 600.0  # repeats of an Event within this window bump its count
MAX_REPLICAS = 2**31 - 1  # int32, the API's type for replica counts

__all__ = [
    "MAX_REPLICAS",
    "ClusterCache",
    "KubeActuator",
    "PodSummary",
    "ScaleView",
    "TargetNotScalable",
    "hpas_managing",
    "parse_scale",
    "summarize_pods",
]

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
    ready_pods: frozenset[str] | None = None
    """The names of the Ready pods (None: not known, e.g. the target has no selector). The signals judge
    coverage against them: every Ready pod must report (:func:`autoscaler.signals.coverage.covered`)."""


def _replicas(value: object, what: str, *, default: int | None = None) -> int:
    """A replica count from the API: an int (not a bool, not a float) in ``[0, MAX_REPLICAS]``."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} is {value!r}, not an integer")
    if not 0 <= value <= MAX_REPLICAS:
        raise ValueError(f"{what} is {value}, outside [0, {MAX_REPLICAS}]")
    return value


def parse_scale(body: object, *, where: str = "") -> ScaleView:
    """A ``Scale`` answer validated (see the module doc); raises :class:`KubeInvalidResponse`."""
    try:
        if not isinstance(body, dict):
            raise ValueError(f"the Scale is {type(body).__name__}, not an object")
        # A real Scale always has a spec object (Go's omitempty never drops a struct): a missing one is
        # garbage, not "0 replicas" (that would wake or shrink the target from nothing).
        meta, spec, status = body.get("metadata"), body.get("spec"), body.get("status") or {}
        if not isinstance(meta, dict) or not isinstance(spec, dict) or not isinstance(status, dict):
            raise ValueError("metadata, spec and status must be objects")
        version = meta.get("resourceVersion")
        if not isinstance(version, str) or not version:
            raise ValueError(f"no resourceVersion ({version!r}): a write from it would have no precondition")
        selector, uid = status.get("selector") or "", meta.get("uid") or ""
        if not isinstance(selector, str) or not isinstance(uid, str):
            raise ValueError("status.selector and metadata.uid must be strings")
        return ScaleView(
            spec_replicas=_replicas(spec.get("replicas"), "spec.replicas", default=0),  # omitempty: absent is 0
            status_replicas=_replicas(status.get("replicas"), "status.replicas", default=0),
            selector=selector,
            resource_version=version,
            uid=uid,
        )
    except ValueError as exc:
        raise KubeInvalidResponse(200, "InvalidScale", f"refusing to act on the scale of {where}: {exc}") from None


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def summarize_pods(items: object, *, where: str) -> PodSummary:
    """What :meth:`KubeActuator.pod_summary` reports, from a list of pods (an API answer's ``items`` or the
    watched cache's): Running, Ready and not being deleted; load times of pods that never restarted."""
    if not isinstance(items, list) or not all(isinstance(pod, dict) for pod in items):
        raise KubeInvalidResponse(200, "InvalidList", f"the pods of {where} are not a list")
    names: set[str] = set()
    load_times: dict[str, float] = {}
    for pod in items:
        meta, status = pod.get("metadata"), pod.get("status")
        if not isinstance(meta, dict) or not isinstance(status, dict) or meta.get("deletionTimestamp"):
            continue
        conditions = status.get("conditions")
        condition = next(
            (c for c in conditions if isinstance(c, dict) and c.get("type") == "Ready"),
            None,
        ) if isinstance(conditions, list) else None
        if status.get("phase") != "Running" or condition is None or condition.get("status") != "True":
            continue
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            continue
        names.add(name)
        containers = status.get("containerStatuses") or []
        if not isinstance(containers, list) or any(
            not isinstance(c, dict) or c.get("restartCount") not in (None, 0) for c in containers
        ):
            continue  # its Ready time is a restart's (or unknown), not the load time
        created, became_ready = (
            _parse_time(meta.get("creationTimestamp")),
            _parse_time(condition.get("lastTransitionTime")),
        )
        if created is not None and became_ready is not None and became_ready >= created:
            load_times[str(meta.get("uid") or name)] = became_ready - created
    return PodSummary(len(names), load_times, frozenset(names))


def hpas_managing(items: object, namespace: str, target: TargetRef) -> list[str]:
    """Names of the HPAs in ``items`` whose scaleTargetRef is ``target``; an unreadable list or HPA
    raises :class:`KubeInvalidResponse` (not knowing is not "none")."""
    if not isinstance(items, list):
        raise KubeInvalidResponse(200, "InvalidList", f"the HPAs of {namespace} are not a list")
    group = _split(target.api_version)[0]
    names = []
    for hpa in items:
        spec = hpa.get("spec") if isinstance(hpa, dict) else None
        ref = spec.get("scaleTargetRef") if isinstance(spec, dict) else None
        meta = hpa.get("metadata") if isinstance(hpa, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(ref, dict) or not isinstance(name, str):
            raise KubeInvalidResponse(200, "InvalidHPA", f"an HPA in {namespace} is unreadable: {str(hpa)[:200]}")
        api_version = ref.get("apiVersion")
        if (
            ref.get("kind") == target.kind
            and ref.get("name") == target.name
            and _split(api_version if isinstance(api_version, str) else "")[0] == group
        ):
            names.append(name)
    return names


class ClusterCache(Protocol):
    """A watched view of the cluster (:class:`autoscaler.service.cluster.WatchedCluster`). Each read
    returns None when the cache cannot answer (a kind not watched, not yet synced, or stale): the
    actuator then asks the API. Answers are raw API shapes and go through the same validation."""

    def scale(self, namespace: str, target: TargetRef) -> dict[str, Any] | None:
        """A ``Scale``-shaped view of the target (``metadata.resourceVersion`` is the object's)."""
        ...

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]] | None: ...

    def hpas(self, namespace: str) -> list[dict[str, Any]] | None: ...

    def annotations(self, namespace: str, target: TargetRef) -> dict[str, str] | None:
        """The target object's annotations (None: not known from the cache)."""
        ...


def _split(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def _now_rfc3339(clock: Callable[[], float]) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeActuator:
    def __init__(
        self,
        client: KubeClient,
        *,
        component: str = "inference-autoscaler",
        clock: Callable[[], float] = time.time,
        cache: ClusterCache | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
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
            resources = listing.get("resources")
            if not isinstance(resources, list):
                raise KubeInvalidResponse(200, "InvalidDiscovery", f"API {target.api_version} lists no resources")
            entries = [r for r in resources if isinstance(r, dict) and isinstance(r.get("name"), str)]
            names = [r["name"] for r in entries if r.get("kind") == target.kind and "/" not in r["name"]]
            if not names:
                raise TargetNotScalable(404, "NotFound", f"kind {target.kind} is not served by {target.api_version}")
            plural = names[0]
            if f"{plural}/scale" not in {r["name"] for r in entries}:
                raise TargetNotScalable(422, "NoScale", f"{target.kind} has no scale subresource")
        self._plurals[key] = plural
        return plural

    async def scale_path(self, namespace: str, target: TargetRef) -> str:
        group, version = _split(target.api_version)
        plural = await self._plural(target)
        base = f"/apis/{group}/{version}" if group else f"/api/{version}"
        return f"{base}/namespaces/{namespace}/{plural}/{target.name}/scale"

    # ------------------------------------------------------------------ reads

    async def read_scale(self, namespace: str, target: TargetRef, *, fresh: bool = False) -> ScaleView:
        """The target's scale, validated: raises :class:`KubeInvalidResponse` rather than return garbage.
        From the watched cache when it can answer, unless ``fresh`` (the re-read after a conflict): a
        stale cached view is harmless because every write carries its resourceVersion (a 409, then a
        fresh read), but a re-read that could return the same stale view would waste the retries."""
        where = f"{target.kind} {namespace}/{target.name}"
        cached = None if fresh or self.cache is None else self.cache.scale(namespace, target)
        if cached is not None:
            return parse_scale(cached, where=where)
        body = await self.client.request("GET", await self.scale_path(namespace, target))
        return parse_scale(body, where=where)

    async def target_annotations(self, namespace: str, target: TargetRef) -> dict[str, str]:
        """The target object's annotations (its own pause, for one): from the cache, else one GET."""
        cached = None if self.cache is None else self.cache.annotations(namespace, target)
        if cached is not None:
            return cached
        path = (await self.scale_path(namespace, target)).removesuffix("/scale")
        body = await self.client.request("GET", path)
        meta = body.get("metadata")
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        if annotations is None:
            return {}
        if not isinstance(annotations, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
        ):
            where = f"{target.kind} {namespace}/{target.name}"
            raise KubeInvalidResponse(200, "InvalidObject", f"the annotations of {where} are not strings")
        return annotations

    async def pod_summary(self, namespace: str, selector: str, *, fresh: bool = False) -> PodSummary:
        """The target's pods: how many are Running, Ready and not being deleted (the HPA's ready count),
        their names, and, for the Ready ones, how long each took from creation to Ready (its load time).
        From the watched cache when it is fresh (and ``fresh`` is not asked), else from the API."""
        if not selector:
            return PodSummary(0, {}, None)
        cached = None if fresh or self.cache is None else self.cache.pods(namespace, selector)
        if cached is not None:
            return summarize_pods(cached, where=f"{namespace} ({selector})")
        body = await self.client.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        return summarize_pods(body.get("items"), where=f"{namespace} ({selector})")

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

    async def managing_hpas(self, namespace: str, target: TargetRef, *, fresh: bool = False) -> list[str]:
        """Names of HPAs in the namespace whose scaleTargetRef is this target. An unreadable list or HPA
        raises :class:`KubeInvalidResponse`: not knowing is not "none"."""
        items = None if fresh or self.cache is None else self.cache.hpas(namespace)
        if items is None:
            body = await self.client.request(
                "GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
            )
            items = body.get("items")
        return hpas_managing(items, namespace, target)

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
        """``PUT .../scale`` with the resourceVersion read in ``view``: raises KubeConflict when stale.

        Refused before sending (:class:`KubeUnsafeWrite`) without a resourceVersion precondition, or for
        a replica count that is not an integer in ``[0, 2^31-1]``."""
        where = f"{target.kind} {namespace}/{target.name}"
        if not isinstance(view.resource_version, str) or not view.resource_version:
            raise KubeUnsafeWrite(
                0, "NoPrecondition", f"refusing to write the scale of {where} without the resourceVersion read"
            )
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS:
            raise KubeUnsafeWrite(0, "InvalidReplicas", f"refusing to write replicas={replicas!r} to {where}")
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": target.name, "namespace": namespace, "resourceVersion": view.resource_version},
            "spec": {"replicas": replicas},
        }
        done = await self.client.request("PUT", await self.scale_path(namespace, target), body=body, guard=guard)
        try:
            written = parse_scale(done, where=where)
        except KubeInvalidResponse:
            # The write was applied; only its echo is unreadable. An empty resourceVersion makes any write
            # from this view refused: the caller must read again.
            return ScaleView(replicas, view.status_replicas, view.selector, "", view.uid)
        return ScaleView(
            written.spec_replicas, written.status_replicas, written.selector or view.selector,
            written.resource_version, view.uid,
        )

    async def record_event(
        self,
        namespace: str,
        target: TargetRef,
        *,
        type_: str,
        reason: str,
        message: str,
        uid: str = "",
        guard: Callable[[], bool] | None = None,
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
                    guard=guard,  # checked before every attempt: a backoff can outlast the lease
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
        await self.client.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event, guard=guard)
        self._events[key] = (name, 1, now)
        if len(self._events) > 256:  # forget series older than the correlation window (bounded memory)
            self._events = {k: v for k, v in self._events.items() if now - v[2] < EVENT_WINDOW_S}
