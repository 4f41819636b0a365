"""The chart's RBAC grants exactly what the code calls.

Realistic scenarios run the real controller, lease elector, state store, actuator and metrics-API
review client against the Kubernetes stand-in (real HTTP); every logged request becomes an RBAC
attribute (apiGroup, resource[/subresource], verb, namespace, name) and must be allowed by the rules
the chart renders for our ServiceAccount (plus the built-in roles it binds). The other way round,
every (apiGroup, resource, verb) the chart grants must have been used, except the documented extras.

Case matrix:
  scenarios   patch mode: leader election (create, renew, release), scale reads and writes with a 409
              re-read, ready pods, HPA check, Events (create, then patch on repeat), state ConfigMap
              (create, update), a warm-pool placeholder Deployment, a custom resource found through
              discovery, a StatefulSet; metrics API: TokenReview, SubjectAccessReview, the
              extension-apiserver-authentication ConfigMap
  RBAC modes  cluster-wide (ClusterRole) | watchNamespaces (Roles in the listed namespaces only)
  negative    a request outside the grant (another namespace's lease, a Secret, a Deployment
              update) is refused by the same checker, so the checker can fail
  allowlist   EXTRAS: every grant the scenarios do not call, with its reason (issue 14's policy objects,
              status writes and watched caches among them); an entry the scenarios call fails the test
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from kube_standin import KubeStandIn, ResourceType, crd_types
from service_harness import ScriptedSignals, policy_text

from autoscaler.core.policy import API_GROUP
from autoscaler.forecast import DemandHistory
from autoscaler.policy.crd import crd_documents
from autoscaler.service.actuator import KubeActuator
from autoscaler.service.cluster import WatchedCluster
from autoscaler.service.controller import Controller, ControllerSettings
from autoscaler.service.kube import KubeClient, KubeConfig
from autoscaler.service.leader import LeaseElector, LeaseSettings
from autoscaler.service.policies import PolicyDirectory, PolicyObjects
from autoscaler.service.state import ConfigMapStateStore
from autoscaler.service.telemetry import Telemetry

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "inference-autoscaler"
RELEASE, OWN_NS, LEASE = "ia", "ops", "inference-autoscaler"
SA = ("ops", "ia-inference-autoscaler")
T0 = 1_800_000_000.0
CRD = ResourceType(
    "inference.example.com", "v1", "modelservers", "ModelServer", True, "spec.replicas", "status.replicas", "status.selector"
)

# Built-in roles the chart binds (kubernetes plugin/pkg/auth/authorizer/rbac/bootstrappolicy).
BUILTIN = {
    ("ClusterRole", "system:auth-delegator"): [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ],
    ("Role", "extension-apiserver-authentication-reader"): [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["extension-apiserver-authentication"],
            "verbs": ["get", "list", "watch"],
        }
    ],
}

# Granted although the scenarios never call them, and why.
EXTRAS = {
    ("", "pods", "get"): "conventional with list; kubectl auth can-i checks and future per-pod reads",
    ("autoscaling", "horizontalpodautoscalers", "get"): "conventional with list",
    ("apps", "deployments/scale", "patch"): "scale writes may become patches (kubectl scale does)",
    ("apps", "statefulsets/scale", "patch"): "same",
    ("serving.kserve.io", "inferenceservices/scale", "patch"): "same",
    ("serving.kserve.io", "inferenceservices/scale", "get"): "the scenarios scale a Deployment, a StatefulSet and a CRD",
    ("serving.kserve.io", "inferenceservices/scale", "update"): "same",
    ("inference.example.com", "modelservers/scale", "patch"): "same",
    # Issue 14: policies from API objects (the test below fails when an entry here is called, so the list
    # is kept honest).
    ("inference-autoscaler.io", "scalingpolicies", "get"): "conventional with list; a re-read before a status write",
    ("inference-autoscaler.io", "policydefaults", "get"): "conventional with list",
    ("inference-autoscaler.io", "scalingpolicies/status", "update"): "status writes may become updates (with a "
    "resourceVersion precondition)",
    ("serving.kserve.io", "inferenceservices", "get"): "its own pause annotations (the scenarios target no "
    "InferenceService)",
}


@dataclass(frozen=True)
class Attr:
    group: str
    resource: str  # with /subresource
    verb: str
    namespace: str
    name: str


DISCOVERY = re.compile(r"/api|/apis|/api/v1|/apis/[^/]+(/[^/]+)?")
RESOURCE = re.compile(
    r"/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?"
)


def attribute(method: str, path: str, query: dict[str, str]) -> Attr | None:
    """An API request as the RBAC authorizer sees it; None for discovery (non-resource) paths."""
    if DISCOVERY.fullmatch(path):
        return None
    m = RESOURCE.fullmatch(path)
    assert m, f"unparseable API path {path}"
    resource = m["res"] + (f"/{m['sub']}" if m["sub"] else "")
    if method == "GET":
        verb = "get" if m["name"] else ("watch" if query.get("watch") in ("1", "true") else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    return Attr(m["g"] or "", resource, verb, m["ns"] or "", m["name"] or "")


class Grants:
    """The rules bound to our ServiceAccount by the rendered objects, with their scope."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d["rules"] for d in docs
                 if d["kind"] in ("Role", "ClusterRole")}
        self.scoped: list[tuple[str | None, dict[str, Any]]] = []  # (namespace or None = cluster-wide, rule)
        self.authored: list[dict[str, Any]] = []  # the rules the chart writes (not the built-in roles')
        for d in docs:
            if d["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            if not any(s["kind"] == "ServiceAccount" and (s["namespace"], s["name"]) == SA for s in d["subjects"]):
                continue
            ref = d["roleRef"]
            ns = d["metadata"]["namespace"] if d["kind"] == "RoleBinding" else None
            role_ns = ns if ref["kind"] == "Role" else ""
            rules = roles.get((ref["kind"], role_ns or "", ref["name"]))
            if rules is not None:
                self.authored.extend(rules)
            else:
                rules = BUILTIN.get((ref["kind"], ref["name"]))
            assert rules is not None, f"{d['kind']} {d['metadata']['name']} refers to unknown {ref}"
            self.scoped.extend((ns, rule) for rule in rules)

    def allows(self, a: Attr) -> bool:
        for ns, rule in self.scoped:
            if ns is not None and ns != a.namespace:
                continue
            if (
                a.group in rule["apiGroups"] or "*" in rule["apiGroups"]
            ) and (a.resource in rule["resources"] or "*" in rule["resources"]) and (
                a.verb in rule["verbs"] or "*" in rule["verbs"]
            ) and (not rule.get("resourceNames") or a.name in rule["resourceNames"]):
                return True
        return False

    def triples(self) -> set[tuple[str, str, str]]:
        return {(g, r, v) for rule in self.authored for g in rule["apiGroups"] for r in rule["resources"]
                for v in rule["verbs"]}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    base = {
        "leaderElection": {"leaseName": LEASE},
        "targets": [
            {"apiGroup": "apps", "resources": ["deployments", "statefulsets"]},
            {"apiGroup": "serving.kserve.io", "resources": ["inferenceservices"]},
            {"apiGroup": CRD.group, "resources": [CRD.plural]},
        ],
        **values,
    }
    out = helm_python.Chart.load(str(CHART)).render(base, name=RELEASE, namespace=OWN_NS)
    return [d for text in out.values() for d in yaml.safe_load_all(text) if d]


PLACEHOLDER_POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: warm, namespace: team-b}
spec:
  target: {apiVersion: apps/v1, kind: StatefulSet, name: warm-llm}
  minReplicas: 1
  maxReplicas: 20
  intervalSeconds: 15
  metrics:
    - name: tokens
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 5}
  predictive: {metric: tokens}
  warmPool: {minSpare: 1, maxSpare: 3, placeholder: {name: warm-placeholder}}
"""

CRD_POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: custom, namespace: team-a}
spec:
  target: {apiVersion: inference.example.com/v1, kind: ModelServer, name: llama}
  minReplicas: 1
  maxReplicas: 20
  intervalSeconds: 15
  metrics:
    - name: queue
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 5}
"""


class SteadyHistory:
    """Two days of steady demand as the warm start: the forecast is calibrated, so the warm pool's
    placeholder is sized (and written) from the first tick."""

    async def demand_history(self, policy: Any, *, start_s: float, end_s: float, step_s: float) -> DemandHistory:
        import numpy as np

        points = int(2 * 86400 / step_s)
        return DemandHistory(end_s - (points - 1) * step_s, step_s, np.full(points, 12.0))


async def run_service_scenarios(kube: KubeStandIn, policy_dir: Path) -> None:
    """The controller in patch mode as leader, through a run of ticks that touches every API path."""
    (policy_dir / "chat.yaml").write_text(policy_text())
    (policy_dir / "warm.yaml").write_text(PLACEHOLDER_POLICY)
    (policy_dir / "custom.yaml").write_text(CRD_POLICY)
    kube.resources[(CRD.group, CRD.version, CRD.plural)] = CRD
    kube.add_deployment("team-a", "chat-llm", 2)
    kube.add_deployment("team-b", "warm-llm", 2, kind="statefulsets")
    kube.add_deployment("team-b", "warm-placeholder", 3)  # resized from 3 to what the forecast asks
    kube.put_object(CRD.group, CRD.version, CRD.plural, {
        "metadata": {"name": "llama", "namespace": "team-a"},
        "spec": {"replicas": 2},
        "status": {"replicas": 2, "selector": "app=llama"},
    })
    raced: list[str] = []

    def someone_else_scales(method: str, path: str) -> None:  # one 409 on the first scale write
        if method == "GET" and path.endswith("/chat-llm/scale") and not raced:
            raced.append(path)
            obj = kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")
            assert obj is not None
            obj["spec"]["replicas"] = 3
            kube.put_object("apps", "v1", "deployments", obj)

    kube.after_request.append(someone_else_scales)
    client = KubeClient(KubeConfig(host=kube.url, retries=1, backoff_base_s=0.01))
    mono = {"t": 0.0}
    elector = LeaseElector(client, LeaseSettings(namespace=OWN_NS, name=LEASE, identity="pod-a"),
                           monotonic=lambda: mono["t"])
    signals = ScriptedSignals()
    controller = Controller(
        policies=PolicyDirectory(policy_dir),
        signals=signals,  # type: ignore[arg-type]
        actuator=KubeActuator(client, clock=lambda: T0),
        telemetry=Telemetry(),
        store=ConfigMapStateStore(client, namespace=OWN_NS, name=f"{LEASE}-state"),
        leadership=elector,
        history=SteadyHistory(),
        settings=ControllerSettings(),
        clock=lambda: 0.0,
    )
    try:
        assert await elector.try_acquire_or_renew()  # create
        await controller.load_state()
        for i, (queue, tokens) in enumerate([(40, 40), (40, 60), (None, None), (None, None), (1, 80)]):
            mono["t"] = 2.0 * i
            assert await elector.try_acquire_or_renew()  # get + update
            signals.set("team-a/chat", queue=queue)
            signals.set("team-a/custom", queue=queue)
            signals.set("team-b/warm", tokens=tokens)
            await controller.tick(T0 + 15 * i)
            kube.reconcile_workloads()
        await elector.release()
    finally:
        await client.close()


async def run_watched_object_scenario(kube: KubeStandIn, policy_dir: Path) -> None:
    """The service as ``run`` builds it by default and with ``--policy-objects``: the watched caches
    (Deployments, StatefulSets, pods, HPAs) and a ScalingPolicy object, whose status the leader writes."""
    import asyncio

    for crd in crd_documents().values():
        for rtype in crd_types(crd):
            kube.resources[(rtype.group, rtype.version, rtype.plural)] = rtype
    kube.add_deployment("team-a", "obj-llm", 2)
    kube.add_deployment("team-b", "obj-sts", 2, kind="statefulsets")
    doc = yaml.safe_load(policy_text(name="obj", namespace="team-a", target="obj-llm"))
    kube.put_object(API_GROUP, "v1alpha1", "scalingpolicies", doc)
    sts = yaml.safe_load(policy_text(name="sts", namespace="team-b", target="obj-sts"))
    sts["spec"]["target"]["kind"] = "StatefulSet"
    kube.put_object(API_GROUP, "v1alpha1", "scalingpolicies", sts)
    client = KubeClient(KubeConfig(host=kube.url, retries=1, backoff_base_s=0.01))
    namespaces = ("team-a", "team-b")  # as with --namespaces: the Roles of the namespaced mode allow it too
    cluster = WatchedCluster(client, namespaces=namespaces)
    objects = PolicyObjects(client, namespaces=namespaces)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(cluster.run(stop)), asyncio.create_task(objects.run(stop))]
    signals = ScriptedSignals()
    controller = Controller(
        policies=PolicyDirectory(policy_dir, objects=objects),
        signals=signals,  # type: ignore[arg-type]
        actuator=KubeActuator(client, clock=lambda: T0, cache=cluster),
        telemetry=Telemetry(),
        clock=lambda: 0.0,
    )
    try:
        await controller.tick(T0)  # the first reads name the kinds to watch (Deployment, StatefulSet)
        assert await cluster.wait_synced(10)
        for i in range(1, 3):
            signals.set("team-a/obj", queue=40)
            await controller.tick(T0 + 15 * i)
        assert (kube.get_object(API_GROUP, "v1alpha1", "scalingpolicies", "team-a", "obj") or {}).get("status")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await client.close()


async def run_metrics_api_calls(kube: KubeStandIn) -> None:
    """What the metrics API server sends the API server: its delegated reviews and the auth ConfigMap."""
    from autoscaler.metrics_api.auth import KubeReviews
    from autoscaler.metrics_api.server import AUTH_CONFIGMAP_PATH

    kube.put_object("", "v1", "configmaps", {
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {"requestheader-allowed-names": '["front-proxy-client"]'},
    })
    client = KubeClient(KubeConfig(host=kube.url, retries=0))
    try:
        reviews = KubeReviews(client)
        await reviews.token_review("a-token")
        await reviews.access_review({"user": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                                     "resourceAttributes": {"namespace": "team-a", "verb": "list",
                                                            "group": "external.metrics.k8s.io",
                                                            "version": "v1beta1", "resource": "chat-queue"}})
        await client.request("GET", AUTH_CONFIGMAP_PATH)
    finally:
        await client.close()


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, dict[str, str], int]]:
    import asyncio

    async def scenarios() -> list[tuple[str, str, dict[str, str], int]]:
        async with KubeStandIn() as kube:
            await run_service_scenarios(kube, tmp_path_factory.mktemp("policies"))
            await run_watched_object_scenario(kube, tmp_path_factory.mktemp("watched"))
            await run_metrics_api_calls(kube)
            return [(r.method, r.path, r.query, r.status) for r in kube.requests]

    return asyncio.run(scenarios())


def used(logged: list[tuple[str, str, dict[str, str], int]]) -> list[Attr]:
    return [a for method, path, query, _ in logged if (a := attribute(method, path, query)) is not None]


def test_scenarios_cover_every_api_path_the_service_uses(logged: list[tuple[str, str, dict[str, str], int]]) -> None:
    """The scenarios are realistic only if they hit each kind of call; this guards them."""
    got = {(a.group, a.resource, a.verb) for a in used(logged)}
    for want in [
        ("coordination.k8s.io", "leases", "create"), ("coordination.k8s.io", "leases", "update"),
        ("", "configmaps", "create"), ("", "configmaps", "update"),
        ("apps", "deployments/scale", "update"), ("apps", "statefulsets/scale", "get"),
        ("inference.example.com", "modelservers/scale", "update"),
        ("", "pods", "list"), ("autoscaling", "horizontalpodautoscalers", "list"),
        ("", "events", "create"), ("", "events", "patch"),
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    ]:
        assert want in got, f"no scenario exercised {want}"
    assert any(a.resource == "deployments/scale" and a.name == "warm-placeholder" and a.verb == "update"
               for a in used(logged)), "the warm-pool placeholder was never resized"
    assert any(p == "/apis/inference.example.com/v1" for _, p, _, _ in logged), "no discovery of the CRD"
    assert any(s == 409 for _, p, _, s in logged if p.endswith("/scale")), "no conflict was raced"


@pytest.mark.parametrize("mode", ["cluster-wide", "watch-namespaces"])
def test_every_call_is_allowed_by_the_chart(logged: list[tuple[str, str, dict[str, str], int]], mode: str) -> None:
    values: dict[str, Any] = {"metricsApi": {"enabled": True, "apiService": {"insecureSkipTLSVerify": True}}}
    if mode == "watch-namespaces":
        values["watchNamespaces"] = ["team-a", "team-b"]
    grants = Grants(render(values))
    denied = sorted({a for a in used(logged) if not grants.allows(a)}, key=str)
    assert denied == []


def test_the_chart_grants_nothing_the_code_does_not_call(logged: list[tuple[str, str, dict[str, str], int]]) -> None:
    grants = Grants(render({"metricsApi": {"enabled": True, "apiService": {"insecureSkipTLSVerify": True}}}))
    called = {(a.group, a.resource, a.verb) for a in used(logged)}
    unused = {t for t in grants.triples() if t not in called and t not in EXTRAS}
    assert unused == set()
    assert not {t for t in EXTRAS if t not in grants.triples()}, "an EXTRAS entry the chart no longer grants"
    assert not {t for t in EXTRAS if t in called}, "an EXTRAS entry the scenarios call: remove it from EXTRAS"


def test_review_rights_only_with_the_metrics_api() -> None:
    grants = Grants(render({}))
    review = Attr("authentication.k8s.io", "tokenreviews", "create", "", "")
    assert not grants.allows(review)
    assert not grants.allows(Attr("", "configmaps", "get", "kube-system", "extension-apiserver-authentication"))
    on = Grants(render({"metricsApi": {"enabled": True, "apiService": {"insecureSkipTLSVerify": True}}}))
    assert on.allows(review)


def test_the_checker_refuses_what_is_not_granted() -> None:
    grants = Grants(render({"watchNamespaces": ["team-a"]}))
    assert grants.allows(Attr("apps", "deployments/scale", "update", "team-a", "chat-llm"))
    for attr in [
        Attr("apps", "deployments/scale", "update", "team-b", "chat-llm"),  # not a watched namespace
        Attr("apps", "deployments", "update", "team-a", "chat-llm"),  # the object, not its scale
        Attr("", "secrets", "get", "team-a", "x"),
        Attr("coordination.k8s.io", "leases", "update", OWN_NS, "someone-elses-lease"),
        Attr("coordination.k8s.io", "leases", "update", "team-a", LEASE),
        Attr("", "configmaps", "update", OWN_NS, "other-config"),
    ]:
        assert not grants.allows(attr), attr


def test_nothing_cluster_wide_when_namespaces_are_listed() -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    aggregated = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole" and any(
        label.startswith("rbac.authorization.k8s.io/aggregate-to-") for label in d["metadata"]["labels"])}
    assert len(aggregated) == 2  # rules for the built-in admin/edit/view roles, bound to nobody here
    assert not [d for d in docs if "Binding" in d["kind"] and d["roleRef"]["name"] in aggregated]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")
                and d["metadata"]["name"] not in aggregated]
    assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "RoleBinding") == ["ops", "team-a", "team-b"]


def test_hpa_reader_is_bound_to_the_hpa_controller_only() -> None:
    docs = render({"metricsApi": {"enabled": True, "apiService": {"insecureSkipTLSVerify": True}}})
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"].endswith("external-metrics-reader")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == binding["roleRef"]["name"]]
    assert role["rules"] == [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"], "verbs": ["get", "list"]}]
