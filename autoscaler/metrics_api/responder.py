"""The pure responder of the external-metrics API: (method, path, query) + the decision cache -> Reply.

No sockets, no aiohttp, no clock of its own: :class:`Responder` reads the controller's
``published`` mapping and an injected clock, and returns a :class:`Reply` (status, content type,
body bytes). The aiohttp handlers in :mod:`autoscaler.metrics_api.server` only authenticate,
authorize (with :meth:`Responder.attributes` / :meth:`Responder.forbidden`) and copy the reply out.

What is served, per namespace (the policy's own):

* ``<policy>-<metric>``: the value the core used for that metric, as the HPA reads it
  (``format_milli(to_milli(v))``). Labels: ``policy``, ``target``, ``kind`` (the target's kind),
  ``metric``, plus the policy's ``metadata.labels`` (ours win on a clash).
* ``<policy>-desired-replicas``: the whole decision, for ``target: {type: AverageValue,
  averageValue: "1"}``. Labels as above with ``metric=desired-replicas`` and ``reason`` (the
  decision's machine reason).

A name is resolved by trying each ``-`` as the policy/metric boundary, shortest policy first.
Unavailable or stale data is a 404 ``NotFound`` naming why (the HPA then holds); it is never a 0.
A decision that is holding because metrics are unavailable is the same 404; once the policy's
fallback threshold is passed the decision carries the fallback value, which is served.

The wire format is what a ``k8s.io/apiserver`` aggregated API server writes (golden answers in
``tests/golden/metrics_api/``): compact JSON as Go's ``encoding/json`` writes it (``<``, ``>``, ``&``
escaped, a trailing newline), ``Status`` keys in Go's order, second-precision RFC 3339 UTC timestamps.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from autoscaler.core import Published, Reason
from autoscaler.core.quantity import format_milli, to_milli
from autoscaler.metrics_api.selector import Selector, SelectorError, parse_selector

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "DESIRED_REPLICAS",
    "GROUP_VERSION",
    "KEDA_PREFIX",
    "Attributes",
    "Reply",
    "Responder",
    "ResponderSettings",
    "Series",
    "encode",
    "status_reply",
]

API_GROUP = "external.metrics.k8s.io"
API_VERSION = "v1beta1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
DESIRED_REPLICAS = "desired-replicas"
KEDA_PREFIX = "/keda/v1/namespaces/"
PLACEHOLDER_RESOURCE = "externalmetrics"  # KEDA's: discovery must never list zero resources
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})

_VERSION_REF = {"groupVersion": GROUP_VERSION, "version": API_VERSION}
_GROUP = {"name": API_GROUP, "versions": [_VERSION_REF], "preferredVersion": _VERSION_REF}
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def encode(obj: Any) -> bytes:
    """JSON as Go's ``json.Encoder`` writes it: compact, HTML characters escaped, trailing newline."""
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False).translate(_GO_ESCAPES) + "\n").encode()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Attributes:
    """What authorization sees: a resource request (``resource`` set) or a non-resource ``path``."""

    verb: str
    path: str
    namespace: str = ""
    resource: str = ""
    group: str = API_GROUP
    version: str = API_VERSION

    @property
    def resource_request(self) -> bool:
        return bool(self.resource)


def status_reply(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> Reply:
    """A ``metav1.Status`` failure; keys in Go's order, empty ``reason``/``details`` omitted."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    body["message"] = message
    if reason:
        body["reason"] = reason
    if details is not None:
        body["details"] = dict(details)
    body["code"] = code
    return Reply(code, encode(body))


def rfc3339(time_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(time_s // 1)))


@dataclass(frozen=True, slots=True)
class ResponderSettings:
    stale_after_intervals: float = 3.0
    """A published decision older than this many policy intervals is stale (the loop has stopped)."""


@dataclass(frozen=True, slots=True)
class Series:
    """One resolved metric: its labels, value in milli-units (or why there is none) and time."""

    name: str
    labels: Mapping[str, str]
    milli: int | None
    time_s: float
    why_unavailable: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    source: Published | None = None


class Responder:
    def __init__(
        self,
        published: Callable[[], Mapping[str, Published]],
        *,
        clock: Callable[[], float] = time.time,
        ready: Callable[[], bool] = lambda: True,
        settings: ResponderSettings = ResponderSettings(),
    ) -> None:
        self.published = published
        self.clock = clock
        self.ready = ready
        self.settings = settings
        # Rendered value replies, reused while the policy's Published object is the same and fresh
        # (the HPA asks the same question every 15 s; the answer changes once per policy interval).
        self._rendered: dict[tuple[str, str, str], tuple[Published, float, Reply]] = {}

    # ------------------------------------------------------------------ authorization helpers

    @staticmethod
    def attributes(method: str, path: str) -> Attributes:
        """The request's authorization attributes (``list`` on the metric for a value call)."""
        verb = method.lower()
        parts = path.strip("/").split("/")
        if len(parts) == 6 and parts[:4] == ["apis", API_GROUP, API_VERSION, "namespaces"] and verb == "get":
            return Attributes("list", path, namespace=parts[4], resource=parts[5])
        if path.startswith(KEDA_PREFIX) and len(parts) == 6 and parts[4] == "policies":
            return Attributes(verb, path, namespace=parts[3], resource=f"{parts[5]}-{DESIRED_REPLICAS}")
        return Attributes(verb, path)

    @staticmethod
    def unauthorized() -> Reply:
        return status_reply(401, "Unauthorized", "Unauthorized")

    @staticmethod
    def forbidden(attrs: Attributes, user: str, reason: str = "") -> Reply:
        """``responsewriters.Forbidden``: the authorizer's reason, if any, follows the message."""
        if attrs.resource_request:
            what = (
                f"User {json.dumps(user)} cannot {attrs.verb} resource {json.dumps(attrs.resource)} "
                f"in API group {json.dumps(attrs.group)} in the namespace {json.dumps(attrs.namespace)}"
            )
            message = f"{attrs.resource}.{attrs.group} is forbidden: {what}"
            details: dict[str, str] = {"group": attrs.group, "kind": attrs.resource}
        else:
            what = f"User {json.dumps(user)} cannot {attrs.verb} path {json.dumps(attrs.path)}"
            message = f"forbidden: {what}"
            details = {}
        if reason:
            message += f": {reason}"
        return status_reply(403, "Forbidden", message, details)

    @staticmethod
    def internal_error(detail: str) -> Reply:
        return status_reply(
            500, "InternalError", f"Internal error occurred: {detail}", {"causes": [{"message": detail}]}
        )

    # ------------------------------------------------------------------ routing

    def respond(self, method: str, path: str, query: Mapping[str, str]) -> Reply:
        if path in HEALTH_PATHS:
            if path == "/readyz" and not self.ready():
                return Reply(503, b"not ready", TEXT)
            return Reply(200, b"ok", TEXT)
        if method not in ("GET", "HEAD"):
            return status_reply(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        parts = path.strip("/").split("/") if path.strip("/") else []
        if parts[:1] == ["apis"]:
            if len(parts) == 1:
                return Reply(200, encode({"kind": "APIGroupList", "apiVersion": "v1", "groups": [_GROUP]}))
            if parts[1] == API_GROUP:
                if len(parts) == 2:
                    return Reply(200, encode({"kind": "APIGroup", "apiVersion": "v1", **_GROUP}))
                if parts[2] == API_VERSION:
                    if len(parts) == 3:
                        return self._resources()
                    if len(parts) == 6 and parts[3] == "namespaces":
                        return self._values(parts[4], parts[5], query.get("labelSelector", ""))
        elif path.startswith(KEDA_PREFIX) and len(parts) == 6 and parts[4] == "policies":
            return self._keda(parts[3], parts[5])
        return status_reply(404, "NotFound", "the server could not find the requested resource")

    # ------------------------------------------------------------------ discovery

    def _resources(self) -> Reply:
        names: set[str] = set()
        for published in self.published().values():
            policy = published.policy
            names.add(f"{policy.name}-{DESIRED_REPLICAS}")
            names.update(f"{policy.name}-{spec.name}" for spec in policy.metrics)
        resources = [
            {"name": name, "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList", "verbs": ["get"]}
            for name in sorted(names or {PLACEHOLDER_RESOURCE})
        ]
        body = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION, "resources": resources}
        return Reply(200, encode(body))

    # ------------------------------------------------------------------ values

    def _candidates(self, namespace: str, name: str) -> Iterator[tuple[Published, str]]:
        published = self.published()
        for index, char in enumerate(name):
            if char == "-":
                entry = published.get(f"{namespace}/{name[:index]}")
                if entry is not None:
                    yield entry, name[index + 1 :]

    def resolve(self, namespace: str, name: str) -> Series | None:
        """The series named ``name`` in ``namespace``, or None when no policy publishes it."""
        for published, suffix in self._candidates(namespace, name):
            policy, decision = published.policy, published.decision
            base = {**policy.labels, "policy": policy.name, "target": policy.target.name, "kind": policy.target.kind}
            age_s = self.clock() - published.time_s
            stale = age_s > self.settings.stale_after_intervals * policy.interval_s
            stale_why = (
                f"the latest decision of policy {policy.name} is {age_s:.0f} s old "
                f"(more than {self.settings.stale_after_intervals:g} intervals of {policy.interval_s} s)"
            )
            if suffix == DESIRED_REPLICAS:
                labels = {**base, "metric": DESIRED_REPLICAS, "reason": decision.reason.value}
                why = stale_why if stale else ""
                if not why and decision.reason is Reason.METRICS_UNAVAILABLE:
                    why = decision.message
                milli = None if why else decision.desired_replicas * 1000
                return Series(name, labels, milli, published.time_s, why, {"decision": decision}, published)
            if any(spec.name == suffix for spec in policy.metrics):
                labels = {**base, "metric": suffix}
                reading = published.readings.get(suffix)
                if stale:
                    return Series(name, labels, None, published.time_s, stale_why)
                if reading is None or reading.value is None:
                    kind = reading.unavailable.value if reading is not None and reading.unavailable else "missing"
                    detail = f": {reading.detail}" if reading is not None and reading.detail else ""
                    return Series(name, labels, None, published.time_s, f"{suffix} is unavailable ({kind}{detail})")
                return Series(name, labels, to_milli(reading.value), published.time_s, source=published)
        return None

    def _values(self, namespace: str, name: str, selector_text: str) -> Reply:
        key = (namespace, name, selector_text)
        cached = self._rendered.get(key)
        if cached is not None:
            entry, fresh_until, reply = cached
            if self.published().get(entry.policy.key) is entry and self.clock() <= fresh_until:
                return reply
        reply, source = self._render_values(namespace, name, selector_text)
        if source is not None:
            if len(self._rendered) > 10_000:
                self._rendered.clear()
            fresh_until = source.time_s + self.settings.stale_after_intervals * source.policy.interval_s
            self._rendered[key] = (source, fresh_until, reply)
        return reply

    def _render_values(self, namespace: str, name: str, selector_text: str) -> tuple[Reply, Published | None]:
        try:
            selector = _parse_cached(selector_text)
        except SelectorError as exc:
            return status_reply(400, "BadRequest", str(exc)), None
        not_found = f"the server could not find the metric {name} for namespaces"
        series = self.resolve(namespace, name)
        if series is None:
            return status_reply(404, "NotFound", not_found), None
        if series.milli is None:
            return status_reply(404, "NotFound", f"{not_found}: {series.why_unavailable}"), None
        if not selector.matches(series.labels):
            return status_reply(404, "NotFound", f"{not_found} with selector {selector}"), series.source
        return Reply(200, encode(_value_list(series))), series.source

    # ------------------------------------------------------------------ KEDA metrics-api

    def _keda(self, namespace: str, policy_name: str) -> Reply:
        """A KEDA ``metrics-api`` trigger reads ``desiredReplicas`` (or ``metrics.<name>``) from here."""
        entry = self.published().get(f"{namespace}/{policy_name}")
        name = f"{policy_name}-{DESIRED_REPLICAS}"
        series = self.resolve(namespace, name) if entry is not None else None
        if entry is None or series is None:
            return status_reply(404, "NotFound", f"the server could not find the policy {policy_name} in {namespace}")
        if series.milli is None:
            return status_reply(
                404, "NotFound", f"the server could not find the metric {name} for namespaces: {series.why_unavailable}"
            )
        decision = entry.decision
        metrics: dict[str, float | None] = {}
        for spec in entry.policy.metrics:
            reading = entry.readings.get(spec.name)
            metrics[spec.name] = None if reading is None or reading.value is None else to_milli(reading.value) / 1000
        return Reply(
            200,
            encode(
                {
                    "namespace": namespace,
                    "policy": policy_name,
                    "target": entry.policy.target.name,
                    "desiredReplicas": decision.desired_replicas,
                    "currentReplicas": decision.current_replicas,
                    "reason": decision.reason.value,
                    "message": decision.message,
                    "timestamp": rfc3339(entry.time_s),
                    "metrics": metrics,
                }
            ),
        )


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Selector:
    return parse_selector(text)


def _value_list(series: Series) -> dict[str, Any]:
    assert series.milli is not None
    item = {
        "metricName": series.name,
        "metricLabels": dict(sorted(series.labels.items())),
        "timestamp": rfc3339(series.time_s),
        "value": format_milli(series.milli),
    }
    return {"kind": "ExternalMetricValueList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": [item]}
