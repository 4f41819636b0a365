"""An in-repo Kubernetes API stand-in with real semantics, served over real HTTP by aiohttp.

No kube-apiserver can be installed here, so tests talk to this instead, through real clients (the
official ``kubernetes`` client, our own async client). It keeps the semantics our code relies on:

* objects keyed by (group, version, plural, namespace, name); ``metadata.resourceVersion`` bumped
  from one global counter on every write; ``uid``, ``creationTimestamp``, ``generation``;
* create (409 AlreadyExists), get/list (404 NotFound, ``labelSelector``), update/PUT (409 Conflict on
  a stale ``resourceVersion``; an empty one is an unconditional update), merge and strategic-merge
  PATCH (treated as JSON merge patch; a ``resourceVersion`` in the patch is a precondition), JSON
  patch, delete;
* the ``scale`` subresource (``autoscaling/v1`` ``Scale``) for Deployments, StatefulSets and custom
  resources registered with their replica paths, with ``status.selector``;
* discovery (``/api``, ``/apis``, ``/apis/<group>/<version>``) so clients can map kinds to resources;
* Leases, Events (core and events.k8s.io), Pods, ConfigMaps, HPAs; SubjectAccessReview and
  TokenReview answered by rules the test sets;
* ``metav1.Status`` bodies for every error (404, 409, 422, 429 with ``Retry-After``, 500), and scripted
  faults (``fail_next``); every request is logged for assertions (what was written, by whom).

``reconcile_workloads`` plays the Deployment/StatefulSet controllers: status follows spec and pods are
created Ready (or deleted), when the test says so.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

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
]


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
    def __init__(self, code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.headers = code, reason, message, headers or {}


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
        self._rv = itertools.count(1000)
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

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> KubeStandIn:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

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
        """Seed or overwrite an object directly (no HTTP), bumping its resourceVersion."""
        rtype = self.resources[(group, version, plural)]
        meta = obj.setdefault("metadata", {})
        key = (group, version, plural, meta.get("namespace", "") if rtype.namespaced else "", meta["name"])
        old = self.objects.get(key)
        meta.setdefault("uid", old["metadata"]["uid"] if old else str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", old["metadata"]["creationTimestamp"] if old else now_rfc3339())
        meta["resourceVersion"] = str(next(self._rv))
        obj.setdefault("apiVersion", f"{group}/{version}" if group else version)
        obj.setdefault("kind", rtype.kind)
        self.objects[key] = obj
        return obj

    def get_object(self, group: str, version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((group, version, plural, namespace, name))

    def list_objects(self, group: str, version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            o
            for (g, v, p, ns, _), o in sorted(self.objects.items())
            if (g, v, p) == (group, version, plural) and (namespace is None or ns == namespace)
        ]

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
        obj = {
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
        """Play the workload controllers: status.replicas = spec.replicas; pods follow (Ready)."""
        for (g, v, p, ns, name), obj in list(self.objects.items()):
            if (g, v, p) not in {("apps", "v1", "deployments"), ("apps", "v1", "statefulsets")}:
                continue
            want = int(obj["spec"].get("replicas", 1))
            labels = obj["spec"]["selector"]["matchLabels"]
            pods = [o for o in self.list_objects("", "v1", "pods", ns) if o["metadata"].get("labels") == labels]
            while len(pods) > want:
                victim = pods.pop()
                del self.objects[("", "v1", "pods", ns, victim["metadata"]["name"])]
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
                        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
                    },
                )
                pods.append(self.objects[("", "v1", "pods", ns, pod_name)])
            for i, pod in enumerate(pods):
                pod["status"]["conditions"] = [{"type": "Ready", "status": "True" if i < n_ready else "False"}]
            if obj.get("status", {}).get("replicas") != want or obj["status"].get("readyReplicas") != n_ready:
                obj.setdefault("status", {}).update({"replicas": want, "readyReplicas": n_ready})
                obj["metadata"]["resourceVersion"] = str(next(self._rv))

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
        try:
            code, payload = self._dispatch(
                request.method, path, dict(request.query), body, request.headers.get("Content-Type", "")
            )
        except ApiError as err:
            return self._error(request, err, body)
        self.requests.append(RequestRecord(request.method, path, dict(request.query), body, code, user))
        for hook in list(self.after_request):
            hook(request.method, path)
        return web.json_response(payload, status=code)

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
        return web.json_response(status_body(err.code, err.reason, err.message), status=err.code, headers=err.headers)

    def _discovery(self, path: str) -> dict[str, Any] | None:
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if (
            path in ("/api/v1", "/apis")
            or re.fullmatch(r"/apis/[^/]+/[^/]+", path)
            or re.fullmatch(r"/apis/[^/]+", path)
        ):
            if path == "/apis":
                groups: dict[str, list[str]] = {}
                for g, v, _ in self.resources:
                    if g:
                        groups.setdefault(g, [])
                        if v not in groups[g]:
                            groups[g].append(v)
                return {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": g,
                            "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                            "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                        }
                        for g, vs in groups.items()
                    ],
                }
            parts = path.strip("/").split("/")
            if path == "/api/v1":
                group, version = "", "v1"
            elif len(parts) == 2:
                return None
            else:
                group, version = parts[1], parts[2]
            resources = []
            for (g, v, p), r in self.resources.items():
                if (g, v) == (group, version):
                    resources.append(
                        {
                            "name": p,
                            "singularName": "",
                            "namespaced": r.namespaced,
                            "kind": r.kind,
                            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                        }
                    )
                    if r.scale_spec:
                        resources.append(
                            {
                                "name": f"{p}/scale",
                                "singularName": "",
                                "namespaced": True,
                                "group": "autoscaling",
                                "version": "v1",
                                "kind": "Scale",
                                "verbs": ["get", "patch", "update"],
                            }
                        )
            if not resources:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            }
        return None

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: Any, content_type: str) -> tuple[int, Any]:
        if method == "GET":
            found = self._discovery(path)
            if found is not None:
                return 200, found
        m = re.fullmatch(
            r"/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
            r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?",
            path,
        )
        if not m:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group = m["g"] or ""
        version = m["cv"] or m["v"]
        rtype = self.resources.get((group, version, m["plural"]))
        if rtype is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({m['plural']})")
        namespace = m["ns"] or ""
        name, sub = m["name"], m["sub"]
        if rtype.plural in ("subjectaccessreviews", "tokenreviews"):
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "only create is allowed")
            return 201, self._review(rtype, body)
        if name is None:
            if method == "GET":
                return 200, self._list(rtype, namespace, query)
            if method == "POST":
                return 201, self._create(rtype, namespace, body)
            raise ApiError(405, "MethodNotAllowed", f"{method} not allowed on a collection")
        key = (group, version, rtype.plural, namespace, name)
        if sub == "scale":
            if not rtype.scale_spec:
                raise ApiError(404, "NotFound", f"{rtype.plural} has no scale subresource")
            return 200, self._scale(rtype, key, method, body, content_type)
        if sub is not None and sub != "status":
            raise ApiError(404, "NotFound", f"unknown subresource {sub}")
        if method == "GET":
            return 200, copy.deepcopy(self._existing(rtype, key))
        if method == "PUT":
            return 200, self._update(rtype, key, body, status_only=sub == "status")
        if method == "PATCH":
            return 200, self._patch(rtype, key, body, content_type)
        if method == "DELETE":
            obj = self._existing(rtype, key)
            del self.objects[key]
            return 200, obj
        raise ApiError(405, "MethodNotAllowed", method)

    def _existing(self, rtype: ResourceType, key: Key) -> dict[str, Any]:
        obj = self.objects.get(key)
        if obj is None:
            group = f"{rtype.plural}.{rtype.group}" if rtype.group else rtype.plural
            raise ApiError(404, "NotFound", f'{group} "{key[4]}" not found')
        return obj

    def _list(self, rtype: ResourceType, namespace: str, query: dict[str, str]) -> dict[str, Any]:
        reqs = parse_selector(query.get("labelSelector", ""))
        items = [
            copy.deepcopy(o)
            for o in self.list_objects(
                rtype.group, rtype.version, rtype.plural, namespace if rtype.namespaced and namespace else None
            )
            if selector_matches(reqs, o["metadata"].get("labels") or {})
        ]
        field_selector = query.get("fieldSelector", "")
        if field_selector.startswith("metadata.name="):
            items = [o for o in items if o["metadata"]["name"] == field_selector.split("=", 1)[1]]
        return {
            "kind": f"{rtype.kind}List",
            "apiVersion": f"{rtype.group}/{rtype.version}" if rtype.group else "v1",
            "metadata": {"resourceVersion": str(next(self._rv) - 1)},
            "items": items,
        }

    def _validate(self, rtype: ResourceType, obj: Any) -> None:
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise ApiError(422, "Invalid", f"{rtype.kind} is invalid: metadata: Required value")
        name = obj["metadata"].get("name") or ""
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
            raise ApiError(422, "Invalid", f'{rtype.kind} "{name}" is invalid: metadata.name: Invalid value')
        if rtype.scale_spec:
            replicas = _get_path(obj, rtype.scale_spec)
            if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
                raise ApiError(
                    422,
                    "Invalid",
                    f'{rtype.kind} "{name}" is invalid: {rtype.scale_spec}: '
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )

    def _create(self, rtype: ResourceType, namespace: str, body: Any) -> dict[str, Any]:
        self._validate(rtype, body)
        meta = body["metadata"]
        if rtype.namespaced:
            meta["namespace"] = namespace
        key = (rtype.group, rtype.version, rtype.plural, namespace if rtype.namespaced else "", meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{rtype.plural} "{meta["name"]}" already exists')
        meta.pop("resourceVersion", None)
        meta["generation"] = 1
        obj = self.put_object(rtype.group, rtype.version, rtype.plural, body)
        self._notify("create", key, obj)
        return copy.deepcopy(obj)

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
        if new.get("spec") != old.get("spec"):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        meta["resourceVersion"] = str(next(self._rv))
        new.setdefault("apiVersion", old.get("apiVersion"))
        new.setdefault("kind", old.get("kind"))
        self.objects[key] = new
        self._notify("update", key, new)
        return copy.deepcopy(new)

    def _update(self, rtype: ResourceType, key: Key, body: Any, *, status_only: bool = False) -> dict[str, Any]:
        old = self._existing(rtype, key)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "body must be an object")
        self._check_rv(old, body.get("metadata", {}).get("resourceVersion"))
        new = copy.deepcopy(old) if status_only else copy.deepcopy(body)
        if status_only:
            new["status"] = copy.deepcopy(body.get("status"))
        elif "status" in old:
            new["status"] = copy.deepcopy(old["status"])  # PUT of the main resource ignores status
        return self._store(rtype, key, new, old)

    def _patch(self, rtype: ResourceType, key: Key, body: Any, content_type: str) -> dict[str, Any]:
        old = self._existing(rtype, key)
        if "json-patch" in content_type:
            new = json_patch(old, body)
        else:
            if isinstance(body, dict):
                self._check_rv(old, (body.get("metadata") or {}).get("resourceVersion"))
            new = merge_patch(old, body)
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
