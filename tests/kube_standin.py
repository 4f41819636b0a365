"""An in-repo Kubernetes API stand-in with real semantics, served over real HTTP by aiohttp.

No kube-apiserver can be installed here, so tests talk to this instead, through real clients (the
official ``kubernetes`` client, kubectl, our own async client). It keeps the semantics our code relies on:

* objects keyed by (group, version, plural, namespace, name); ``metadata.resourceVersion`` bumped
  from one global counter on every write; ``uid``, ``creationTimestamp``, ``generation``;
* create (409 AlreadyExists), get/list (404 NotFound, ``labelSelector``, ``fieldSelector`` on
  ``metadata.name``/``metadata.namespace``, ``limit``/``continue`` pages served from one snapshot),
  update/PUT (409 Conflict on a stale ``resourceVersion``; an empty one is an unconditional update), merge
  and strategic-merge PATCH (treated as JSON merge patch; a ``resourceVersion`` in the patch is a
  precondition), JSON patch, delete;
* watch (``?watch=1``): newline-delimited events over a chunked response, from a ``resourceVersion``
  (or synthetic ADDED events first), with bookmarks, ``timeoutSeconds``, selectors (an object that stops
  matching is sent as DELETED, as the apiserver's watch cache does) and 410 Expired for a version older
  than the kept history. Every mutation goes through ``_commit``, which bumps the counter and records the
  event, so nothing changes unseen;
* the ``scale`` subresource (``autoscaling/v1`` ``Scale``) for Deployments, StatefulSets and custom
  resources registered with their replica paths, with ``status.selector``;
* CustomResourceDefinitions (``apiextensions.k8s.io/v1``): creating one serves its resource per version,
  validated and pruned by its schema (``standin_crd``), with status and scale subresources and Table
  output from its printer columns; OpenAPI v3 documents enough for kubectl's server-side field validation;
* discovery (``/api``, ``/apis``, ``/apis/<group>/<version>``) so clients can map kinds to resources;
* Leases, Events (core and events.k8s.io), Pods, ConfigMaps, HPAs; SubjectAccessReview and
  TokenReview answered by rules the test sets;
* ``metav1.Status`` bodies for every error (404, 409, 422, 429 with ``Retry-After``, 500), and scripted
  faults (``fail_next``); every request is logged for assertions (what was written, by whom), a watch
  once, when it is opened.

``reconcile_workloads`` plays the Deployment/StatefulSet controllers: status follows spec and pods are
created Ready (or deleted), when the test says so.

Not modelled: admission, RBAC on ordinary requests, finalizers and graceful deletion, conversion webhooks
(every served version of a custom resource shares one stored object), server-side apply.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import standin_crd
from aiohttp import web
from multidict import CIMultiDict

Key = tuple[str, str, str, str, str]  # group, version, plural, namespace, name


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    # scale subresource: dotted paths of spec and status replicas, and of the label selector
    scale_spec: str | None = None
    scale_status: str | None = None
    selector_path: str | None = None
    # custom resources (set when a CRD serves this type)
    crd: str = ""  # the serving CRD's name; "" for built-in types
    storage_version: str = ""  # the version objects are stored under (every served version shares them)
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)  # openAPIV3Schema
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def stored_as(self) -> tuple[str, str, str]:
        """(group, version, plural) of the keys its objects are stored under."""
        return self.group, self.storage_version or self.version, self.plural

    @property
    def group_resource(self) -> str:
        """``plural.group`` as error messages name it (``deployments.apps``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = [
    ResourceType("", "v1", "pods", "Pod"),
    ResourceType("", "v1", "configmaps", "ConfigMap"),
    ResourceType("", "v1", "events", "Event"),
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False),
    ResourceType("apps", "v1", "deployments", "Deployment", True, "spec.replicas", "status.replicas", "spec.selector"),
    ResourceType(
        "apps", "v1", "statefulsets", "StatefulSet", True, "spec.replicas", "status.replicas", "spec.selector"
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
    ResourceType("events.k8s.io", "v1", "events", "Event"),
    ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ResourceType(
        "serving.kserve.io",
        "v1beta1",
        "inferenceservices",
        "InferenceService",
        True,
        "spec.predictor.minReplicas",
        "status.components.predictor.replicas",
        "status.selector",
    ),
    ResourceType("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False),
    ResourceType("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False),
    ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
]
CRD_KEY = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")


EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of the "
    "results. Continuing with the provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show up in the list."
)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CRD serves: one per served version, all stored under the storage version."""
    spec, name = crd["spec"], crd["metadata"]["name"]
    names = spec["names"]
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    out = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale") or {}

        def dotted(path: str | None) -> str | None:
            return path.lstrip(".") if path else None

        out.append(
            ResourceType(
                spec["group"],
                version["name"],
                names["plural"],
                names["kind"],
                spec.get("scope", "Namespaced") == "Namespaced",
                dotted(scale.get("specReplicasPath")),
                dotted(scale.get("statusReplicasPath")),
                dotted(scale.get("labelSelectorPath")),
                crd=name,
                storage_version=storage,
                singular=names.get("singular") or names["kind"].lower(),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in subresources,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return out


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.headers = code, reason, message, headers or {}
        self.details = details


def _get_path(obj: dict[str, Any], dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _set_path(obj: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent = doc
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last = parts[-1]
        kind = op["op"]
        if kind in ("add", "replace"):
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                else:
                    parent[index] = op["value"]
            else:
                if kind == "replace" and last not in parent:
                    raise ApiError(
                        422, "Invalid", f"replace operation does not apply: doc is missing path: {op['path']}"
                    )
                parent[last] = op["value"]
        elif kind == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif kind == "test":
            value = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if value != op["value"]:
                raise ApiError(422, "Invalid", f"testing value {op['path']} failed")
        else:
            raise ApiError(400, "BadRequest", f"unsupported json patch op {kind}")
    return doc


_REQUIREMENT = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def parse_selector(text: str) -> list[tuple[str, str, list[str]]]:
    """A label selector string -> requirements (key, op, values). Raises ApiError 400 when bad."""
    out: list[tuple[str, str, list[str]]] = []
    if not text.strip():
        return out
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for part in parts:
        m = _REQUIREMENT.match(part)
        if not m:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
        neg, key, eq, value, setop, values = m.groups()
        if eq:
            out.append((key, "!=" if eq == "!=" else "=", [value]))
        elif setop:
            out.append((key, setop, [v.strip() for v in values.split(",") if v.strip()]))
        else:
            out.append((key, "!exists" if neg else "exists", []))
    return out


def selector_matches(reqs: list[tuple[str, str, list[str]]], labels: dict[str, str]) -> bool:
    for key, op, values in reqs:
        has, value = key in labels, labels.get(key)
        ok = {
            "=": has and value == values[0],
            "!=": value != values[0],
            "in": has and value in values,
            "notin": value not in values,
            "exists": has,
            "!exists": not has,
        }[op]
        if not ok:
            return False
    return True


def selector_string(selector: dict[str, Any] | None) -> str:
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr["operator"], expr["key"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


_FIELDS = {"metadata.name": ("name",), "metadata.namespace": ("namespace",)}


def parse_field_selector(text: str) -> list[tuple[str, bool, str]]:
    """``metadata.name=x,metadata.namespace!=y`` -> (field, equal, value); 400 for any other field, as the
    apiserver answers for a field it cannot select on."""
    out: list[tuple[str, bool, str]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid field selector: {part!r}")
        if m[1] not in _FIELDS:
            raise ApiError(400, "BadRequest", f'"{m[1]}" is not a known field selector: only "metadata.name", '
                           '"metadata.namespace"')
        out.append((m[1], m[2] != "!=", m[3]))
    return out


def fields_match(reqs: list[tuple[str, bool, str]], obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    return all((meta.get(_FIELDS[f][0]) or "") == value if equal else (meta.get(_FIELDS[f][0]) or "") != value
               for f, equal, value in reqs)


def encode_continue(snapshot_id: int, rv: int, offset: int) -> str:
    """An opaque continue token (the apiserver's is base64 JSON too; clients must not read it)."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "id": snapshot_id, "start": offset})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, int, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["id"]), int(data["rv"]), int(data["start"])
    except (ValueError, KeyError, TypeError) as err:
        raise ApiError(400, "BadRequest", f"continue key is not valid: {err}") from err


@dataclass(frozen=True)
class WatchEvent:
    """One recorded change: the object as committed (for DELETED: as it was, with the deletion's
    resourceVersion) and as it was before (for selector transitions)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    key: Key
    obj: dict[str, Any]
    prev: dict[str, Any] | None


@dataclass
class Watcher:
    """An open watch stream: what it selects and the queue of events still to send (None ends it)."""

    rtype: ResourceType
    namespace: str | None
    labels: list[tuple[str, str, list[str]]]
    fields: list[tuple[str, bool, str]]
    queue: asyncio.Queue[WatchEvent | None]
    request: web.Request

    def selects(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return selector_matches(self.labels, meta.get("labels") or {}) and fields_match(self.fields, obj)

    def view(self, event: WatchEvent) -> dict[str, Any] | None:
        """The event as this watcher sees it (cacher's convertToWatchEvent), or None when it sees nothing."""
        if self.namespace is not None and event.key[3] != self.namespace:
            return None
        now = event.type != "DELETED" and self.selects(event.obj)
        before = event.prev is not None and self.selects(event.prev)
        if now:
            kind = "MODIFIED" if before else "ADDED"
            return {"type": kind, "object": present(self.rtype, event.obj)}
        if before and event.prev is not None:
            gone = present(self.rtype, event.prev)
            gone["metadata"]["resourceVersion"] = str(event.rv)
            return {"type": "DELETED", "object": gone}
        return None


def present(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored object as served under ``rtype`` (a custom resource's other served versions
    share the stored object; only ``apiVersion`` differs, as with conversion strategy None)."""
    out = copy.deepcopy(obj)
    if rtype.crd:
        out["apiVersion"] = rtype.api_version
    return out


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    code: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = ""


@dataclass
class Canned:
    """A scripted answer (``respond_next``): any status, body and headers, even ones the API never sends."""

    method: str
    path: re.Pattern[str]
    status: int
    body: Any
    headers: dict[str, str]
    times: int
    raw: bytes | None = None


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    user: str


class KubeStandIn:
    """The stand-in's state and handlers. Use ``async with KubeStandIn() as kube: kube.url``."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.resources = {(r.group, r.version, r.plural): r for r in RESOURCES}
        self._rv_now = 999  # the last resourceVersion handed out; the first write gets 1000
        self.requests: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.canned: list[Canned] = []
        self.pod_names: dict[tuple[str, str], list[str]] = {}  # (namespace, workload) -> names its pods take
        self.access_rule: Callable[[dict[str, Any]], bool] = lambda spec: True
        self.tokens: dict[str, dict[str, Any]] = {}  # bearer token -> user info (TokenReview)
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.on_write: list[Callable[[str, Key, dict[str, Any]], None]] = []
        # Called after each request is served, with (method, path): lets a test act "between" a
        # client's read and its write (e.g. another writer racing the autoscaler).
        self.after_request: list[Callable[[str, str], None]] = []
        # watch: the kept history (oldest first), the open streams, and what the tests may tune
        self.history: list[WatchEvent] = []
        self.history_limit = 10_000
        self.bookmark_interval_s = 1.0
        self._horizon = self._rv_now  # a watch from an older resourceVersion gets 410 Expired
        self._committed: dict[Key, dict[str, Any]] = {}  # each object as last committed (watch "prev")
        self._watchers: list[Watcher] = []
        self._snapshots: dict[int, tuple[int, list[dict[str, Any]]]] = {}  # list pages: id -> (rv, items)
        self._snapshot_ids = 0
        self._warnings: list[str] = []  # Warning headers for the request being served

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> KubeStandIn:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a watch whose client went away ends at once (open_watches stays true)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ the one write path

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion (what a list made now reports)."""
        return self._rv_now

    def _commit(self, key: Key, obj: dict[str, Any] | None) -> WatchEvent | None:
        """Store ``obj`` under ``key`` (None: delete it) with the next resourceVersion, and record the
        event for watchers. Every mutation of ``objects`` goes through here."""
        existed = key in self.objects
        if obj is None and not existed:
            return None
        if key[:3] == CRD_KEY:
            self._crd_committing(key, obj)
        self._rv_now += 1
        prev = self._committed.get(key)
        if obj is None:
            gone = self.objects.pop(key)
            snapshot = copy.deepcopy(gone)
            snapshot["metadata"]["resourceVersion"] = str(self._rv_now)
            self._committed.pop(key, None)
            event = WatchEvent(self._rv_now, "DELETED", key, snapshot, prev or copy.deepcopy(gone))
        else:
            obj["metadata"]["resourceVersion"] = str(self._rv_now)
            self.objects[key] = obj
            snapshot = copy.deepcopy(obj)
            self._committed[key] = snapshot
            event = WatchEvent(self._rv_now, "MODIFIED" if existed else "ADDED", key, snapshot, prev)
        self.history.append(event)
        if len(self.history) > self.history_limit:
            del self.history[: len(self.history) - self.history_limit]
            self._horizon = self.history[0].rv - 1
        for watcher in self._watchers:
            if watcher.rtype.stored_as == key[:3]:
                watcher.queue.put_nowait(event)
        if key[:3] == CRD_KEY:
            self._crd_committed(key, obj)
        return event

    def compact(self) -> None:
        """Forget all history (as etcd compaction and a watch-cache restart do): a watch or a list page
        from any older resourceVersion now gets 410 Expired."""
        self.history.clear()
        self._horizon = self._rv_now
        self._snapshots.clear()

    def close_watches(self, *, abort: bool = False) -> int:
        """End every open watch stream at once, as an apiserver restart does: cleanly (the chunked body
        ends), or with ``abort`` by dropping the connection. Returns how many were open."""
        count = len(self._watchers)
        for watcher in list(self._watchers):
            if abort and watcher.request.transport is not None:
                watcher.request.transport.abort()
            watcher.queue.put_nowait(None)
        return count

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def watch_requests(self, path_part: str = "") -> list[RequestRecord]:
        """The watches opened so far (logged when opened), optionally only those whose path has ``path_part``."""
        return [r for r in self.requests if r.query.get("watch") in ("1", "true") and path_part in r.path]

    # ------------------------------------------------------------------ test helpers

    def fail_next(
        self,
        method: str,
        path_regex: str,
        code: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        reason: str = "",
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.faults.append(Fault(method.upper(), re.compile(path_regex), code, times, headers, reason))

    def respond_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
        raw: bytes | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with exactly this (garbage included): ``body`` as
        JSON, or ``raw`` bytes as they are. The request is logged with ``status`` and not applied."""
        self.canned.append(Canned(method.upper(), re.compile(path_regex), status, body, headers or {}, times, raw))

    def put_object(self, group: str, version: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Seed or overwrite an object directly (no HTTP, no validation), bumping its resourceVersion and
        recording an ADDED or MODIFIED event."""
        rtype = self.resources[(group, version, plural)]
        meta = obj.setdefault("metadata", {})
        key = self._key(rtype, meta.get("namespace", ""), meta["name"])
        old = self.objects.get(key)
        meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", old["metadata"]["creationTimestamp"] if old else now_rfc3339())
        if rtype.crd:  # stored as the storage version
            obj["apiVersion"] = f"{rtype.group}/{rtype.stored_as[1]}"
        obj.setdefault("apiVersion", rtype.api_version)
        obj.setdefault("kind", rtype.kind)
        self._commit(key, obj)
        return obj

    def delete_object(self, group: str, version: str, plural: str, namespace: str, name: str) -> bool:
        """Delete an object directly (no HTTP), recording a DELETED event; False when there was none."""
        return self._commit(self._key(self.resources[(group, version, plural)], namespace, name), None) is not None

    def get_object(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        rtype = self.resources.get((group, version, plural))
        if rtype is None:
            return self.objects.get((group, version, plural, namespace, name))
        return self.objects.get(self._key(rtype, namespace, name))

    def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        rtype = self.resources.get((group, version, plural))
        stored = rtype.stored_as if rtype else (group, version, plural)
        return [
            o
            for (g, v, p, ns, _), o in sorted(self.objects.items())
            if (g, v, p) == stored and (namespace is None or ns == namespace)
        ]

    def _key(self, rtype: ResourceType, namespace: str, name: str) -> Key:
        group, version, plural = rtype.stored_as
        return group, version, plural, namespace if rtype.namespaced else "", name

    def writes(self, path_part: str = "") -> list[RequestRecord]:
        return [
            r
            for r in self.requests
            if r.method in ("POST", "PUT", "PATCH", "DELETE") and path_part in r.path and r.status < 400
        ]

    def add_deployment(
        self,
        namespace: str,
        name: str,
        replicas: int,
        *,
        ready: int | None = None,
        kind: str = "deployments",
        pod_names: list[str] | None = None,
    ) -> dict[str, Any]:
        """``pod_names``: the names its pods take, in order (e.g. the ones an exporter reports), instead of
        random ones; pods beyond the list get random names."""
        if pod_names is not None:
            self.pod_names[(namespace, name)] = list(pod_names)
        labels = {"app": name}
        obj: dict[str, Any] = {
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai"}]},
                },
            },
            "status": {"replicas": replicas, "readyReplicas": replicas if ready is None else ready},
        }
        if kind == "statefulsets":
            obj["spec"]["serviceName"] = name
        self.put_object("apps", "v1", kind, obj)
        self.reconcile_workloads(ready=ready)
        return obj

    def reconcile_workloads(self, *, ready: int | None = None) -> None:
        """Play the workload controllers: status.replicas = spec.replicas; pods follow (Ready). Every change
        is a commit (pods ADDED/MODIFIED/DELETED, workloads MODIFIED), as the real controllers' writes are."""
        for (g, v, p, ns, name), obj in list(self.objects.items()):
            if (g, v, p) not in {("apps", "v1", "deployments"), ("apps", "v1", "statefulsets")}:
                continue
            want = int(obj["spec"].get("replicas", 1))
            labels = obj["spec"]["selector"]["matchLabels"]
            pods = [o for o in self.list_objects("", "v1", "pods", ns) if o["metadata"].get("labels") == labels]
            while len(pods) > want:
                victim = pods.pop()
                self._commit(("", "v1", "pods", ns, victim["metadata"]["name"]), None)
            n_ready = want if ready is None else min(ready, want)
            for index in range(len(pods), want):
                pod_name = f"{name}-{index}" if p == "statefulsets" else f"{name}-7d9f8b6c5-{uuid.uuid4().hex[:5]}"
                taken = {o["metadata"]["name"] for o in pods}
                pod_name = next((n for n in self.pod_names.get((ns, name), []) if n not in taken), pod_name)
                self.put_object(
                    "",
                    "v1",
                    "pods",
                    {
                        "metadata": {"name": pod_name, "namespace": ns, "labels": dict(labels)},
                        "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai"}]},
                        "status": {
                            "phase": "Running",
                            "conditions": [{"type": "Ready", "status": "True" if index < n_ready else "False"}],
                        },
                    },
                )
                pods.append(self.objects[("", "v1", "pods", ns, pod_name)])
            for i, pod in enumerate(pods):
                conditions = [{"type": "Ready", "status": "True" if i < n_ready else "False"}]
                if pod["status"].get("conditions") != conditions:
                    pod["status"]["conditions"] = conditions
                    self._commit(("", "v1", "pods", ns, pod["metadata"]["name"]), pod)
            if obj.get("status", {}).get("replicas") != want or obj["status"].get("readyReplicas") != n_ready:
                obj.setdefault("status", {}).update({"replicas": want, "readyReplicas": n_ready})
                self._commit((g, v, p, ns, name), obj)

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                return self._error(request, ApiError(400, "BadRequest", "the request body is not valid JSON"), None)
        user = request.headers.get("Authorization", "")
        for canned in self.canned:
            if canned.times > 0 and canned.method in (request.method, "*") and canned.path.search(path):
                canned.times -= 1
                self.requests.append(RequestRecord(request.method, path, dict(request.query), body, canned.status, user))
                payload = canned.raw if canned.raw is not None else json.dumps(canned.body).encode()
                return web.Response(body=payload, status=canned.status, headers=canned.headers)
        for fault in self.faults:
            if fault.times > 0 and fault.method in (request.method, "*") and fault.path.search(path):
                fault.times -= 1
                reasons = {
                    404: "NotFound",
                    409: "Conflict",
                    410: "Expired",
                    422: "Invalid",
                    429: "TooManyRequests",
                    500: "InternalError",
                    503: "ServiceUnavailable",
                    403: "Forbidden",
                    401: "Unauthorized",
                }
                err = ApiError(
                    fault.code,
                    fault.reason or reasons.get(fault.code, ""),
                    f"injected fault {fault.code}",
                    fault.headers,
                )
                return self._error(request, err, body)
        query = dict(request.query)
        self._warnings = []
        try:
            if request.method == "GET" and query.get("watch") in ("1", "true"):
                return await self._serve_watch(request, path, query)
            code, payload = self._dispatch(
                request.method,
                path,
                query,
                body,
                request.headers.get("Content-Type", ""),
                request.headers.get("Accept", ""),
            )
        except ApiError as err:
            return self._error(request, err, body)
        self.requests.append(RequestRecord(request.method, path, query, body, code, user))
        for hook in list(self.after_request):
            hook(request.method, path)
        # one Warning header per warning, as the apiserver sends them
        headers = CIMultiDict(("Warning", f'299 - "{_escape(w)}"') for w in self._warnings)
        return web.json_response(payload, status=code, headers=headers)

    def _error(self, request: web.Request, err: ApiError, body: Any) -> web.Response:
        self.requests.append(
            RequestRecord(
                request.method,
                request.path,
                dict(request.query),
                body,
                err.code,
                request.headers.get("Authorization", ""),
            )
        )
        payload = status_body(err.code, err.reason, err.message, err.details)
        return web.json_response(payload, status=err.code, headers=err.headers)

    # ------------------------------------------------------------------ watch

    async def _serve_watch(self, request: web.Request, path: str, query: dict[str, str]) -> web.StreamResponse:
        """A watch: the backlog (synthetic ADDED events, or the kept events after ``resourceVersion``) and
        then every new event, as newline-delimited JSON over one chunked response."""
        rtype, namespace, name, _ = self._route(path)
        if name is not None:
            raise ApiError(405, "MethodNotAllowed", "watch a single object with fieldSelector=metadata.name=")
        watcher = Watcher(
            rtype,
            namespace if rtype.namespaced and namespace else None,
            parse_selector(query.get("labelSelector", "")),
            parse_field_selector(query.get("fieldSelector", "")),
            asyncio.Queue(),
            request,
        )
        since = query.get("resourceVersion", "")
        if since not in ("", "0") and not since.isdigit():
            raise ApiError(400, "BadRequest", f"resourceVersion: Invalid value: {since!r}: must be an integer")
        timeout_s = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        backlog: list[dict[str, Any]] = []
        expired: dict[str, Any] | None = None
        # No await from here to registration: the backlog and the live queue meet without a gap or overlap.
        if since in ("", "0"):
            for obj in self.list_objects(*rtype.stored_as, watcher.namespace):
                if watcher.selects(obj):
                    backlog.append({"type": "ADDED", "object": present(rtype, obj)})
        elif int(since) < self._horizon:
            message = f"too old resource version: {since} ({self._horizon})"
            expired = {"type": "ERROR", "object": status_body(410, "Expired", message)}
        else:
            backlog = [
                view
                for event in self.history
                if event.rv > int(since) and event.key[:3] == rtype.stored_as
                if (view := watcher.view(event)) is not None
            ]
        self.requests.append(
            RequestRecord("GET", path, query, None, 200, request.headers.get("Authorization", ""))
        )
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        if expired is not None:
            await response.prepare(request)
            await response.write(json.dumps(expired).encode() + b"\n")
            await response.write_eof()
            return response
        self._watchers.append(watcher)
        try:
            await response.prepare(request)
            for hook in list(self.after_request):
                hook("GET", path)
            for event in backlog:
                await response.write(json.dumps(event).encode() + b"\n")
            await self._follow(watcher, response, timeout_s, bookmarks)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away (or close_watches aborted it)
        finally:
            self._watchers.remove(watcher)
        return response

    async def _follow(
        self, watcher: Watcher, response: web.StreamResponse, timeout_s: float | None, bookmarks: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s if timeout_s else None
        next_bookmark = loop.time() + self.bookmark_interval_s if bookmarks else None
        while True:
            wakes = [t for t in (deadline, next_bookmark) if t is not None]
            wait_s = max(0.0, min(wakes) - loop.time()) if wakes else None
            try:
                event = await asyncio.wait_for(watcher.queue.get(), wait_s)
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    return
                # The queue is empty: every event up to the current version has been sent (or filtered).
                bookmark = {
                    "kind": watcher.rtype.kind,
                    "apiVersion": watcher.rtype.api_version,
                    "metadata": {"resourceVersion": str(self._rv_now)},
                }
                await response.write(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
                next_bookmark = loop.time() + self.bookmark_interval_s
                continue
            if event is None:
                return
            view = watcher.view(event)
            if view is not None:
                await response.write(json.dumps(view).encode() + b"\n")

    # ------------------------------------------------------------------ discovery and OpenAPI

    def _group_versions(self) -> dict[str, list[str]]:
        """Each group's served versions, the preferred first (CRDs: by Kubernetes version priority)."""
        groups: dict[str, list[str]] = {}
        for g, v, _ in self.resources:
            if g and v not in groups.setdefault(g, []):
                groups[g].append(v)
        return {g: sorted(vs, key=standin_crd.version_priority) for g, vs in groups.items()}

    def _discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/version":
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-standin", "platform": "linux/amd64"}
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in self._group_versions().items()
                ],
            }
        if re.fullmatch(r"/apis/[^/]+", path):
            name = path.split("/")[2]
            vs = self._group_versions().get(name)
            if vs is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": name,
                "versions": [{"groupVersion": f"{name}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{name}/{vs[0]}", "version": vs[0]},
            }
        if path == "/api/v1" or re.fullmatch(r"/apis/[^/]+/[^/]+", path):
            parts = path.strip("/").split("/")
            group, version = ("", "v1") if path == "/api/v1" else (parts[1], parts[2])
            resources = [
                entry
                for (g, v, _), r in self.resources.items()
                if (g, v) == (group, version)
                for entry in standin_crd.discovery_entries(r)
            ]
            if not resources:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            }
        if path == "/openapi/v3":
            gvs = sorted({(g, v) for g, v, _ in self.resources})
            return standin_crd.openapi_root((gv, self._openapi(*gv)) for gv in gvs)
        m = re.fullmatch(r"/openapi/v3/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))", path)
        if m:
            return self._openapi(m["g"] or "", m["cv"] or m["v"])
        return None  # no /openapi/v2: kubectl reads v3, and a 404 sends it there

    def _openapi(self, group: str, version: str) -> dict[str, Any]:
        types = [r for (g, v, _), r in self.resources.items() if (g, v) == (group, version)]
        if not types:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return standin_crd.openapi_document(types)

    # ------------------------------------------------------------------ resources

    def _route(self, path: str) -> tuple[ResourceType, str, str | None, str | None]:
        """A resource path -> (type, namespace, name, subresource); 404 when nothing serves it."""
        m = re.fullmatch(
            r"/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
            r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?",
            path,
        )
        if not m:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rtype = self.resources.get((m["g"] or "", m["cv"] or m["v"], m["plural"]))
        if rtype is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({m['plural']})")
        return rtype, m["ns"] or "", m["name"], m["sub"]

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], body: Any, content_type: str, accept: str = ""
    ) -> tuple[int, Any]:
        if method == "GET":
            found = self._discovery(path)
            if found is not None:
                return 200, found
        rtype, namespace, name, sub = self._route(path)
        if rtype.plural in ("subjectaccessreviews", "tokenreviews"):
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "only create is allowed")
            return 201, self._review(rtype, body)
        table = method == "GET" and "as=Table" in accept
        if name is None:
            if method == "GET":
                listed = self._list(rtype, namespace, query)
                return 200, self._table(rtype, listed["items"], listed["metadata"], query) if table else listed
            if method == "POST":
                return 201, self._create(rtype, namespace, body, query)
            raise ApiError(405, "MethodNotAllowed", f"{method} not allowed on a collection")
        key = self._key(rtype, namespace, name)
        if sub == "scale":
            if not rtype.scale_spec:
                raise ApiError(404, "NotFound", f"{rtype.plural} has no scale subresource")
            return 200, self._scale(rtype, key, method, body, content_type)
        if sub is not None and (sub != "status" or (rtype.crd and not rtype.status_subresource)):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        status_only = sub == "status"
        if method == "GET":
            obj = present(rtype, self._existing(rtype, key))
            if table:
                return 200, self._table(rtype, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, query)
            return 200, obj
        if method == "PUT":
            return 200, self._update(rtype, key, body, query, status_only=status_only)
        if method == "PATCH":
            return 200, self._patch(rtype, key, body, content_type, query, status_only=status_only)
        if method == "DELETE":
            obj = self._existing(rtype, key)
            event = self._commit(key, None)
            assert event is not None
            self._notify("delete", key, event.obj)
            return 200, present(rtype, event.obj)
        raise ApiError(405, "MethodNotAllowed", method)

    def _existing(self, rtype: ResourceType, key: Key) -> dict[str, Any]:
        obj = self.objects.get(key)
        if obj is None:
            raise ApiError(404, "NotFound", f'{rtype.group_resource} "{key[4]}" not found')
        return obj

    def _list(self, rtype: ResourceType, namespace: str, query: dict[str, str]) -> dict[str, Any]:
        """A list, or one page of it: the first page snapshots the whole result, later pages (``continue``)
        are cut from that snapshot, so a paged list is consistent at the first page's resourceVersion."""
        token = query.get("continue", "")
        if token:
            snapshot_id, rv, offset = decode_continue(token)
            if rv < self._horizon or snapshot_id not in self._snapshots:
                raise ApiError(410, "Expired", EXPIRED_CONTINUE)
            items = self._snapshots[snapshot_id][1]
        else:
            labels = parse_selector(query.get("labelSelector", ""))
            fields = parse_field_selector(query.get("fieldSelector", ""))
            scope = namespace if rtype.namespaced and namespace else None
            items = [
                present(rtype, o)
                for o in self.list_objects(*rtype.stored_as, scope)
                if selector_matches(labels, o["metadata"].get("labels") or {}) and fields_match(fields, o)
            ]
            rv, offset, snapshot_id = self._rv_now, 0, 0
        limit = int(query.get("limit") or 0)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        page = items[offset:]
        if limit > 0 and len(page) > limit:
            if not snapshot_id:
                self._snapshot_ids += 1
                snapshot_id = self._snapshot_ids
                self._snapshots[snapshot_id] = (rv, items)
                while len(self._snapshots) > 256:
                    del self._snapshots[min(self._snapshots)]
            page = page[:limit]
            meta["continue"] = encode_continue(snapshot_id, rv, offset + limit)
            if not query.get("labelSelector") and not query.get("fieldSelector"):
                meta["remainingItemCount"] = len(items) - offset - limit
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": rtype.api_version,
            "metadata": meta,
            "items": page,
        }

    def _table(
        self, rtype: ResourceType, objs: list[dict[str, Any]], meta: dict[str, Any], query: dict[str, str]
    ) -> dict[str, Any]:
        columns = list(rtype.printer_columns) or [standin_crd.AGE_COLUMN]
        return standin_crd.table(columns, objs, meta, query.get("includeObject", "Metadata"))

    def _validate(self, rtype: ResourceType, obj: Any) -> None:
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise ApiError(422, "Invalid", f"{rtype.kind} is invalid: metadata: Required value")
        name = obj["metadata"].get("name") or ""
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
            raise ApiError(422, "Invalid", f'{rtype.kind} "{name}" is invalid: metadata.name: Invalid value')
        if rtype.scale_spec and not rtype.crd:
            replicas = _get_path(obj, rtype.scale_spec)
            if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
                raise ApiError(
                    422,
                    "Invalid",
                    f'{rtype.kind} "{name}" is invalid: {rtype.scale_spec}: '
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )
        if rtype.crd:
            self._validate_custom(rtype, obj)
        elif (rtype.group, rtype.plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._raise_invalid(rtype, name, standin_crd.check_crd(obj))

    def _validate_custom(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        """A custom resource against its version's schema: 422 Invalid listing every failing field."""
        for key, want in (("apiVersion", rtype.api_version), ("kind", rtype.kind)):
            if obj.get(key) not in (None, want):
                raise ApiError(
                    400, "BadRequest", f"the {key} in the data ({obj[key]}) does not match the expected {key} ({want})"
                )
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        if rtype.schema is not None:
            self._raise_invalid(rtype, obj["metadata"]["name"], standin_crd.schema_errors(obj, rtype.schema))

    def _raise_invalid(self, rtype: ResourceType, name: str, errors: list[standin_crd.FieldError]) -> None:
        if not errors:
            return
        qualified = f"{rtype.kind}.{rtype.group}" if rtype.group else rtype.kind
        text = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
        details = {
            "name": name,
            "group": rtype.group,
            "kind": rtype.kind,
            "causes": [{"reason": e.reason, "message": e.body, "field": e.field} for e in errors],
        }
        raise ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}', details=details)

    def _prune(self, rtype: ResourceType, obj: Any, query: dict[str, str], *, patch: bool) -> None:
        """Structural pruning of a custom resource: unknown fields are dropped, and with
        ``fieldValidation=Strict`` refused (400, the decoder's strict error), with ``Warn`` (the default) a
        Warning header is sent per field."""
        if not rtype.crd or rtype.schema is None or not isinstance(obj, dict):
            return
        unknown = standin_crd.prune(obj, rtype.schema)
        directive = query.get("fieldValidation", "Warn")
        if directive not in ("Strict", "Warn", "Ignore"):
            raise ApiError(
                400, "BadRequest", f'fieldValidation: Unsupported value: "{directive}": supported values: '
                '"Ignore", "Strict", "Warn"'
            )
        if not unknown:
            return
        messages = [f'unknown field "{path}"' for path in unknown]
        if directive == "Strict":
            strict = "strict decoding error: " + ", ".join(messages)
            if patch:
                raise ApiError(400, "BadRequest", strict)
            raise ApiError(
                400, "BadRequest", f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                f"{strict}"
            )
        if directive == "Warn":
            self._warnings.extend(messages)

    def _create(self, rtype: ResourceType, namespace: str, body: Any, query: dict[str, str]) -> dict[str, Any]:
        self._prune(rtype, body, query, patch=False)
        self._validate(rtype, body)
        meta = body["metadata"]
        if rtype.namespaced:
            meta["namespace"] = namespace
        key = self._key(rtype, namespace, meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{rtype.group_resource} "{meta["name"]}" already exists')
        meta.pop("resourceVersion", None)
        meta["generation"] = 1
        if rtype.status_subresource:
            body.pop("status", None)  # a create through the main resource sets no status
        meta.pop("uid", None)
        meta.pop("creationTimestamp", None)
        obj = self.put_object(rtype.group, rtype.version, rtype.plural, body)
        self._notify("create", key, obj)
        return present(rtype, obj)

    def _check_rv(self, current: dict[str, Any], wanted: Any) -> None:
        if wanted not in (None, "") and str(wanted) != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f"Operation cannot be fulfilled on {current.get('kind', 'object')} "
                f'"{current["metadata"]["name"]}": the object has been modified; '
                "please apply your changes to the latest version and try again",
            )

    def _store(self, rtype: ResourceType, key: Key, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        self._validate(rtype, new)
        meta = new["metadata"]
        for fixed in ("uid", "creationTimestamp", "name", "namespace"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
        meta["generation"] = int(old["metadata"].get("generation", 1)) + (1 if self._spec_changed(rtype, new, old) else 0)
        new.setdefault("apiVersion", old.get("apiVersion"))
        new.setdefault("kind", old.get("kind"))
        if rtype.crd:  # stored as the storage version, whichever version served the write
            new["apiVersion"] = old.get("apiVersion")
        self._commit(key, new)
        self._notify("update", key, new)
        return present(rtype, new)

    @staticmethod
    def _spec_changed(rtype: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> bool:
        """Built-in types bump generation on a spec change; custom resources on any change but metadata
        (and status, when status is a subresource)."""
        if not rtype.crd:
            return bool(new.get("spec") != old.get("spec"))
        ignored = {"metadata", "apiVersion", "kind"} | ({"status"} if rtype.status_subresource else set())
        return {k: v for k, v in new.items() if k not in ignored} != {
            k: v for k, v in old.items() if k not in ignored
        }

    def _with_status_rules(
        self, rtype: ResourceType, new: dict[str, Any], old: dict[str, Any], *, status_only: bool
    ) -> dict[str, Any]:
        """A write to /status changes only status; a write to the main resource leaves status alone when
        status is a subresource (built-in types: always)."""
        if status_only:
            out = copy.deepcopy(old)
            if "status" in new:
                out["status"] = copy.deepcopy(new["status"])
            else:
                out.pop("status", None)
            return out
        if rtype.status_subresource or (not rtype.crd and "status" in old):
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return new

    def _update(
        self, rtype: ResourceType, key: Key, body: Any, query: dict[str, str], *, status_only: bool = False
    ) -> dict[str, Any]:
        old = self._existing(rtype, key)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "body must be an object")
        self._prune(rtype, body, query, patch=False)
        self._check_rv(old, body.get("metadata", {}).get("resourceVersion"))
        new = self._with_status_rules(rtype, copy.deepcopy(body), old, status_only=status_only)
        return self._store(rtype, key, new, old)

    def _patch(
        self,
        rtype: ResourceType,
        key: Key,
        body: Any,
        content_type: str,
        query: dict[str, str],
        *,
        status_only: bool = False,
    ) -> dict[str, Any]:
        old = self._existing(rtype, key)
        if "json-patch" in content_type:
            patched = json_patch(old, body)
        else:
            if isinstance(body, dict):
                self._check_rv(old, (body.get("metadata") or {}).get("resourceVersion"))
            patched = merge_patch(old, body)
        self._prune(rtype, patched, query, patch=True)
        new = self._with_status_rules(rtype, patched, old, status_only=status_only)
        return self._store(rtype, key, new, old)

    def _scale_view(self, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        assert rtype.scale_spec and rtype.scale_status
        selector = _get_path(obj, rtype.selector_path or "")
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": int(_get_path(obj, rtype.scale_spec) or 0)},
            "status": {
                "replicas": int(_get_path(obj, rtype.scale_status) or 0),
                "selector": selector if isinstance(selector, str) else selector_string(selector),
            },
        }

    def _scale(self, rtype: ResourceType, key: Key, method: str, body: Any, content_type: str) -> dict[str, Any]:
        obj = self._existing(rtype, key)
        if method == "GET":
            return self._scale_view(rtype, obj)
        if method == "PUT":
            if not isinstance(body, dict) or body.get("kind") not in (None, "Scale"):
                raise ApiError(400, "BadRequest", "the body of a scale update must be a Scale")
            self._check_rv(obj, (body.get("metadata") or {}).get("resourceVersion"))
            replicas = (body.get("spec") or {}).get("replicas")
        elif method == "PATCH":
            view = self._scale_view(rtype, obj)
            patched = json_patch(view, body) if "json-patch" in content_type else merge_patch(view, body)
            if "json-patch" not in content_type and isinstance(body, dict):
                self._check_rv(obj, (body.get("metadata") or {}).get("resourceVersion"))
            replicas = patched["spec"].get("replicas")
        else:
            raise ApiError(405, "MethodNotAllowed", method)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale "{key[4]}" is invalid: spec.replicas: Invalid value: {replicas!r}: '
                "must be greater than or equal to 0",
            )
        new = copy.deepcopy(obj)
        _set_path(new, rtype.scale_spec or "", replicas)
        stored = self._store(rtype, key, new, obj)
        return self._scale_view(rtype, stored)

    def _review(self, rtype: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or "spec" not in body:
            raise ApiError(400, "BadRequest", "spec is required")
        out = copy.deepcopy(body)
        if rtype.plural == "subjectaccessreviews":
            allowed = bool(self.access_rule(body["spec"]))
            out["status"] = {"allowed": allowed, **({} if allowed else {"reason": "denied by the test's rule"})}
        else:
            user = self.tokens.get(body["spec"].get("token", ""))
            out["status"] = {"authenticated": True, "user": user} if user else {"authenticated": False}
        return out

    def _crd_committing(self, key: Key, obj: dict[str, Any] | None) -> None:
        """Before a CRD is stored: the status its naming and establishing controllers would write."""
        if obj is not None:
            obj["status"] = standin_crd.crd_status(obj)

    def _crd_committed(self, key: Key, obj: dict[str, Any] | None) -> None:
        """After a CRD is stored or deleted: serve exactly its current versions; on deletion remove its
        objects (each a DELETED event) and end the watches on it."""
        name = key[4]
        old = {k: r for k, r in self.resources.items() if r.crd == name}
        new = {(r.group, r.version, r.plural): r for r in crd_types(obj)} if obj is not None else {}
        for gone in old.keys() - new.keys():
            del self.resources[gone]
        self.resources.update(new)
        if obj is None and old:
            stored = next(iter(old.values())).stored_as
            for object_key in [k for k in self.objects if k[:3] == stored]:
                self._commit(object_key, None)
            for watcher in self._watchers:
                if watcher.rtype.crd == name:
                    watcher.queue.put_nowait(None)

    def _notify(self, verb: str, key: Key, obj: dict[str, Any]) -> None:
        for hook in self.on_write:
            hook(verb, key, obj)


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll a condition (for tests driving background tasks); raise on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


def write_kubeconfig(path: Path, server: str, token: str = "t") -> Path:
    """A kubeconfig with one context: ``server`` (the stand-in's URL, or any) and a bearer ``token``."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": server}}],
        "users": [{"name": "me", "user": {"token": token}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "me"}}],
    }))
    return path
