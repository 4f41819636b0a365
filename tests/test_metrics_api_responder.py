"""The pure responder, without sockets: every kind of reply against golden JSON, plus the value rules.

Cases:
* discovery: /apis (also with the aggregated-discovery v2 Accept, which the responder never sees
  as different), the group, the version with one resource per served metric, the placeholder
  resource when nothing is published (never an empty list);
* values: a metric (canonical Quantity of the ceil-milli value), desired replicas, a fallback
  decision (served), labels and labelSelector filtering (every operator), second-precision UTC;
* errors: unknown metric, unavailable metric, stale decision, holding decision, selector matching
  nothing (404 NotFound, never a 0 and never ``items: []``), bad selector (400 with the parser's
  message), 401, 403 (resource and non-resource, with and without the authorizer's reason), 405,
  500, unknown path, /openapi/v2 and /openapi/v3 (404);
* health: /healthz /livez /readyz text "ok" (and /readyz 503 before the controller started);
* KEDA metrics-api: the decision JSON, and 404 when unknown or unavailable;
* authorization attributes: ``list`` on the metric for a value call, non-resource otherwise.

Run with ``UPDATE_GOLDEN=1`` to rewrite the golden files after a deliberate change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from policy_builders import metric

from autoscaler.core import Decision, MetricReading, Reason, Unavailable
from autoscaler.core.policy import Fallback, FallbackBehavior, ScalingPolicy, TargetRef
from autoscaler.metrics_api import Attributes, Reply, Responder
from autoscaler.service.controller import Published

GOLDEN = Path(__file__).parent / "golden" / "metrics_api"
T0 = 1_800_000_000.75  # 2027-01-15T08:00:00.75Z: the timestamp must drop the fraction


def policy(name: str = "chat", namespace: str = "team-a", **extra: object) -> ScalingPolicy:
    return ScalingPolicy(
        name=name,
        namespace=namespace,
        target=TargetRef("apps/v1", "Deployment", f"{name}-llm"),
        min_replicas=1,
        max_replicas=20,
        metrics=(metric("queue", "AverageValue", 5), metric("kv-cache", "Utilization", 70)),
        labels={"team": "a"},
        **extra,  # type: ignore[arg-type]
    )


def decision(desired: int, reason: Reason = Reason.SCALE_UP, current: int = 2, message: str = "") -> Decision:
    return Decision(desired, current, reason, message or f"scale up from {current} to {desired}: queue=12.5")


def published_set() -> dict[str, Published]:
    chat = policy()
    items = {
        chat.key: Published(
            chat,
            decision(6),
            {"queue": MetricReading.of(12.3456), "kv-cache": MetricReading.missing(Unavailable.STALE, "sample 70 s old")},
            T0 - 5,
        ),
        "team-a/hold": Published(
            policy("hold"),
            decision(3, Reason.METRICS_UNAVAILABLE, 3, "holding at 3: no metric is available"),
            {"queue": MetricReading.missing()},
            T0 - 5,
        ),
        "team-a/fb": Published(
            policy("fb", fallback=Fallback(1, FallbackBehavior.STATIC, 7)),
            decision(7, Reason.FALLBACK, 3, "fallback static to 7: signals failing for 2 ticks"),
            {"queue": MetricReading.missing()},
            T0 - 5,
        ),
        "team-a/old": Published(policy("old"), decision(4), {"queue": MetricReading.of(2)}, T0 - 46),
        "team-b/chat": Published(policy(namespace="team-b"), decision(2, Reason.SCALE_DOWN, 5), {}, T0),
    }
    return items


@pytest.fixture
def responder() -> Responder:
    items = published_set()
    return Responder(lambda: items, clock=lambda: T0)


def golden(name: str, reply: Reply) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(reply.body)
    assert reply.body == path.read_bytes(), f"{name}: {reply.body.decode()}"
    if reply.content_type != "text/plain; charset=utf-8":
        assert reply.content_type == "application/json"
        json.loads(reply.body)


V = "/apis/external.metrics.k8s.io/v1beta1"
GET_CASES = [
    # (golden name, path, labelSelector or None, status)
    ("apis", "/apis", None, 200),
    ("group", "/apis/external.metrics.k8s.io", None, 200),
    ("resources", V, None, 200),
    ("value_metric", f"{V}/namespaces/team-a/chat-queue", None, 200),
    ("value_desired_replicas", f"{V}/namespaces/team-a/chat-desired-replicas", None, 200),
    ("value_fallback", f"{V}/namespaces/team-a/fb-desired-replicas", None, 200),
    ("value_selected", f"{V}/namespaces/team-a/chat-queue", "policy=chat,target in (chat-llm),!canary", 200),
    ("not_found_unknown", f"{V}/namespaces/team-a/nope-queue", None, 404),
    ("not_found_other_namespace", f"{V}/namespaces/team-c/chat-queue", None, 404),
    ("not_found_unavailable", f"{V}/namespaces/team-a/chat-kv-cache", None, 404),
    ("not_found_holding", f"{V}/namespaces/team-a/hold-desired-replicas", None, 404),
    ("not_found_stale", f"{V}/namespaces/team-a/old-queue", None, 404),
    ("not_found_selector", f"{V}/namespaces/team-a/chat-queue", "policy=other", 404),
    ("bad_selector", f"{V}/namespaces/team-a/chat-queue", "policy chat", 400),
    ("bad_selector_key", f"{V}/namespaces/team-a/chat-queue", "x_=1", 400),
    ("not_found_path", "/api/v1/pods", None, 404),
    ("openapi_v2", "/openapi/v2", None, 404),
    ("openapi_v3", "/openapi/v3", None, 404),
    ("keda", "/keda/v1/namespaces/team-a/policies/chat", None, 200),
    ("keda_not_found", "/keda/v1/namespaces/team-a/policies/nope", None, 404),
    ("keda_holding", "/keda/v1/namespaces/team-a/policies/hold", None, 404),
    ("healthz", "/healthz", None, 200),
]


@pytest.mark.parametrize(("name", "path", "selector", "status"), GET_CASES, ids=[c[0] for c in GET_CASES])
def test_get_replies_match_golden(responder: Responder, name: str, path: str, selector: str | None, status: int) -> None:
    query = {} if selector is None else {"labelSelector": selector}
    reply = responder.respond("GET", path, query)
    assert reply.status == status
    golden(name, reply)


def test_status_bodies_keep_go_key_order_and_code_equals_http_status(responder: Responder) -> None:
    for _, path, selector, status in GET_CASES:
        reply = responder.respond("GET", path, {} if selector is None else {"labelSelector": selector})
        if reply.status >= 400:
            body = reply.json()
            assert list(body)[:4] == ["kind", "apiVersion", "metadata", "status"]
            assert list(body)[-1] == "code" and body["code"] == reply.status == status
            assert [k for k in body if k in ("message", "reason", "details")] == [
                k for k in ("message", "reason", "details") if k in body
            ]


def test_auth_replies_match_golden(responder: Responder) -> None:
    golden("unauthorized", responder.unauthorized())
    attrs = responder.attributes("GET", f"{V}/namespaces/team-a/chat-queue")
    assert attrs == Attributes("list", f"{V}/namespaces/team-a/chat-queue", namespace="team-a", resource="chat-queue")
    forbidden = responder.forbidden(attrs, "system:serviceaccount:team-a:nobody")
    assert forbidden.status == 403
    golden("forbidden", forbidden)
    golden("forbidden_with_reason", responder.forbidden(attrs, "bob", "denied by policy"))
    path_attrs = responder.attributes("GET", "/apis")
    assert not path_attrs.resource_request
    golden("forbidden_path", responder.forbidden(path_attrs, "bob"))
    golden("internal_error", responder.internal_error("authorization failed: connection refused"))
    keda = responder.attributes("GET", "/keda/v1/namespaces/team-a/policies/chat")
    assert (keda.verb, keda.namespace, keda.resource) == ("get", "team-a", "chat-desired-replicas")


def test_method_not_allowed(responder: Responder) -> None:
    reply = responder.respond("POST", f"{V}/namespaces/team-a/chat-queue", {})
    assert reply.status == 405
    golden("method_not_allowed", reply)


def test_discovery_never_empty() -> None:
    reply = Responder(dict, clock=lambda: T0).respond("GET", V, {})
    assert reply.status == 200
    golden("resources_placeholder", reply)
    assert [r["name"] for r in reply.json()["resources"]] == ["externalmetrics"]


def test_values_are_what_the_hpa_reads(responder: Responder) -> None:
    item = responder.respond("GET", f"{V}/namespaces/team-a/chat-queue", {}).json()["items"][0]
    assert item["value"] == "12346m"  # ceil(12.3456 * 1000): the milli the core used
    assert item["timestamp"] == "2027-01-15T07:59:55Z"  # published at T0 - 5 s, fraction dropped
    assert item["metricLabels"] == {
        "kind": "Deployment", "metric": "queue", "policy": "chat", "target": "chat-llm", "team": "a"
    }
    desired = responder.respond("GET", f"{V}/namespaces/team-a/chat-desired-replicas", {}).json()["items"][0]
    assert desired["value"] == "6" and desired["metricLabels"]["reason"] == "ScaleUp"
    fallback = responder.respond("GET", f"{V}/namespaces/team-a/fb-desired-replicas", {}).json()["items"][0]
    assert fallback["value"] == "7" and fallback["metricLabels"]["reason"] == "Fallback"
    # each namespace serves only its own policies
    other = responder.respond("GET", f"{V}/namespaces/team-b/chat-desired-replicas", {}).json()["items"][0]
    assert other["value"] == "2"


@pytest.mark.parametrize(
    ("selector", "found"),
    [
        ("", True),
        ("policy=chat", True),
        ("policy==chat", True),
        ("policy!=chat", False),
        ("policy in (chat,other)", True),
        ("policy notin (chat)", False),
        ("team", True),
        ("!team", False),
        ("canary", False),
        ("!canary", True),
        ("metric=queue,target=chat-llm,kind=Deployment", True),
        ("team=b", False),
    ],
)
def test_label_selector_filters_the_series(responder: Responder, selector: str, found: bool) -> None:
    reply = responder.respond("GET", f"{V}/namespaces/team-a/chat-queue", {"labelSelector": selector})
    assert reply.status == (200 if found else 404)
    if found:
        assert len(reply.json()["items"]) == 1


def test_unavailable_is_never_zero(responder: Responder) -> None:
    for name in ("chat-kv-cache", "hold-desired-replicas", "hold-queue", "old-queue", "old-desired-replicas"):
        reply = responder.respond("GET", f"{V}/namespaces/team-a/{name}", {})
        assert reply.status == 404, name
        assert reply.json()["message"].startswith(f"the server could not find the metric {name} for namespaces: ")
    message = responder.respond("GET", f"{V}/namespaces/team-a/chat-kv-cache", {}).json()["message"]
    assert "kv-cache is unavailable (stale: sample 70 s old)" in message


def test_health_and_readiness() -> None:
    started = False
    responder = Responder(dict, clock=lambda: T0, ready=lambda: started)
    for path in ("/healthz", "/livez"):
        reply = responder.respond("GET", path, {})
        assert (reply.status, reply.body, reply.content_type) == (200, b"ok", "text/plain; charset=utf-8")
    assert responder.respond("GET", "/readyz", {}).status == 503
    started = True
    assert responder.respond("GET", "/readyz", {}).body == b"ok"


def test_metric_names_with_dashes_resolve_to_the_shortest_policy() -> None:
    a = policy("a")
    ab = ScalingPolicy(
        name="a-b", namespace="team-a", target=TargetRef("apps/v1", "Deployment", "x"), min_replicas=1,
        max_replicas=3, metrics=(metric("c", "AverageValue", 1),),
    )
    items = {
        a.key: Published(a, decision(2), {"queue": MetricReading.of(1)}, T0),
        ab.key: Published(ab, decision(3), {"c": MetricReading.of(0.5)}, T0),
    }
    responder = Responder(lambda: items, clock=lambda: T0)
    assert responder.respond("GET", f"{V}/namespaces/team-a/a-b-c", {}).json()["items"][0]["value"] == "500m"
    assert responder.respond("GET", f"{V}/namespaces/team-a/a-queue", {}).json()["items"][0]["value"] == "1"
    assert responder.respond("GET", f"{V}/namespaces/team-a/a-b-desired-replicas", {}).json()["items"][0]["value"] == "3"


def test_rendered_replies_follow_new_decisions_and_staleness() -> None:
    chat = policy()
    now = [T0]
    items = {chat.key: Published(chat, decision(6), {"queue": MetricReading.of(1)}, T0)}
    responder = Responder(lambda: items, clock=lambda: now[0])
    path = f"{V}/namespaces/team-a/chat-desired-replicas"
    assert responder.respond("GET", path, {}).json()["items"][0]["value"] == "6"
    assert responder.respond("GET", path, {}).json()["items"][0]["value"] == "6"  # served from the cache
    items[chat.key] = Published(chat, decision(9), {"queue": MetricReading.of(1)}, T0 + 15)
    assert responder.respond("GET", path, {}).json()["items"][0]["value"] == "9"
    now[0] = T0 + 15 + 46  # more than 3 intervals of 15 s without a new decision
    assert responder.respond("GET", path, {}).status == 404
