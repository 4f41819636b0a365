"""The Helm chart, rendered offline with helm-python-sdk, and the plain manifests rendered from it.

Case matrix:
  value sets   defaults | everything on (metrics API with cert-manager, ServiceMonitor, PrometheusRule,
               dashboard, NetworkPolicy with egress, PriorityClass, watchNamespaces, policies from
               values) | metrics API with an existing Secret and caBundle, one replica without leader
               election, an existing policies ConfigMap and ServiceAccount, Prometheus auth, digest,
               dry run | development (insecureSkipTLSVerify, no HPA reader)
  validation   every rendered object: kubernetes-validate strict for 1.30.0 and 1.33.0; CRD kinds
               (ServiceMonitor, PrometheusRule, Certificate, Issuer) checked structurally; helm lint
               --strict for each value set; the chart's own CRDs (crds/, never templated) loaded by
               Helm and validated strictly
  policies     ScalingPolicy/PolicyDefaults CRDs shipped in the chart and the manifests; the aggregated
               ClusterRoles (admin/edit write, view reads with status) bound to nobody, and optional
  Deployment   2 replicas, leader election, probes, resources, non-root, read-only root fs, seccomp,
               no privilege escalation, capabilities dropped, topology spread on its own pods; its
               args parse with the real CLI (so a renamed flag fails here)
  refusals     schema (unknown key, bad enum, replicaCount 0) and the chart's own `fail` checks
  sync         deploy/manifests, the chart's copies of the alerts and dashboard, and its CRDs are up to
               date; `kubectl kustomize deploy/` builds, with the CRDs and the aggregated roles
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "inference-autoscaler"
POLICY = (ROOT / "policies" / "team-a" / "chat.yaml").read_text()
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything": {
        "metricsApi": {"enabled": True, "tls": {"certManager": {"enabled": True}}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "egress": {"enabled": True, "prometheusTo": [{"namespaceSelector": {}}]},
        },
        "warmPool": {"priorityClass": {"create": True}},
        "watchNamespaces": ["team-a", "team-b"],
        "policies": {"files": {"chat.yaml": POLICY}},
    },
    "byo": {
        "replicaCount": 1,
        "leaderElection": {"enabled": False},
        "dryRun": True,
        "image": {"digest": "sha256:" + "a" * 64},
        "metricsApi": {
            "enabled": True,
            "tls": {"existingSecret": "ia-serving"},
            "apiService": {"caBundle": CA},
            "extraArgs": ["--requestheader-allowed-names=front-proxy-client"],
        },
        "policies": {"existingConfigMap": "my-policies"},
        "serviceAccount": {"create": False, "name": "platform-autoscaler"},
        "prometheus": {
            "url": "https://thanos-query.monitoring.svc:9091",
            "tenant": "team-a",
            "auth": {"existingSecret": "prom-auth", "bearerToken": True, "caBundle": True},
        },
        "targets": [{"apiGroup": "ray.io", "resources": ["rayservices"]}],
    },
    "development": {
        "metricsApi": {"enabled": True, "apiService": {"insecureSkipTLSVerify": True}, "hpaReader": False},
        "logLevel": "debug",
    },
}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "Certificate", "Issuer"}


def render(values: dict[str, Any], name: str = "ia", namespace: str = "ops") -> list[dict[str, Any]]:
    out = helm_python.Chart.load(str(CHART)).render(values, name=name, namespace=namespace)
    return [d for text in out.values() for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {key: render(values) for key, values in VALUE_SETS.items()}


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


# ---------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("version", ["1.30.0", "1.33.0"])
@pytest.mark.parametrize("key", list(VALUE_SETS))
def test_every_object_validates_strictly(rendered: dict[str, list[dict[str, Any]]], key: str, version: str) -> None:
    checked = 0
    for doc in rendered[key]:
        if doc["kind"] in CRD_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, version, strict=True)
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 9


def test_the_validator_catches_a_typo(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = copy.deepcopy(one(rendered["defaults"], "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)


def test_crd_objects_are_well_formed(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["everything"]
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rule = one(docs, "PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"InferenceAutoscalerSignalsUnavailable", "InferenceAutoscalerNoLeader", "InferenceAutoscalerStuckAtMax"} <= alerts
    cert, issuer = one(docs, "Certificate"), one(docs, "Issuer")
    assert cert["apiVersion"] == issuer["apiVersion"] == "cert-manager.io/v1"
    assert cert["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"] and "selfSigned" in issuer["spec"]
    assert f"{service['metadata']['name']}.ops.svc" in cert["spec"]["dnsNames"]
    deployment = one(docs, "Deployment")
    secrets = {v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    assert cert["spec"]["secretName"] in secrets
    api = one(docs, "APIService")
    assert api["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"ops/{cert['metadata']['name']}"


@pytest.mark.parametrize("key", list(VALUE_SETS))
def test_helm_lint_strict(key: str) -> None:
    report = helm_python.lint(str(CHART), VALUE_SETS[key], strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# ---------------------------------------------------------------------------------------- contents


def test_defaults_install_what_a_platform_team_expects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    assert kinds(docs) == sorted(
        ["ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment",
         "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"]
    )
    spec = one(docs, "Deployment")["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert "--no-leader-elect" not in container["args"] and "--lease-name=ia-inference-autoscaler" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp, "a read-only root filesystem needs a writable /tmp (the self-signed cert dir lives there)"
    spread = pod["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert all(c["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"] for c in spread)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"] == spec["selector"]
    assert one(docs, "ConfigMap")["data"] == {}


def test_deployment_args_parse_with_the_real_cli(rendered: dict[str, list[dict[str, Any]]]) -> None:
    from autoscaler.cli import build_parser

    parser = build_parser()
    for key, docs in rendered.items():
        (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        args = [a.replace("$(POD_NAMESPACE)", "ops").replace("$(POD_NAME)", "pod-0") for a in container["args"]]
        parsed = parser.parse_args(args)
        assert parsed.command == "run" and parsed.policies == "/etc/inference-autoscaler/policies", key
        assert parsed.namespace == "ops" and parsed.identity == "pod-0"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert parsed.listen.endswith(f":{ports['http-metrics']}")
        assert (parsed.secure_port is not None) == VALUE_SETS[key].get("metricsApi", {}).get("enabled", False)
        if parsed.secure_port is not None:
            assert ports["https"] == parsed.secure_port
        if parsed.tls_cert_file:
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert str(Path(parsed.tls_cert_file).parent) in mounts


def test_policies_from_values_are_mounted_verbatim(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["everything"]
    configmap = one([d for d in docs if d["kind"] == "ConfigMap" and "policies" in d["metadata"]["name"]], "ConfigMap")
    assert configmap["data"]["chat.yaml"].strip() == POLICY.strip()
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "policies", "configMap": {"name": configmap["metadata"]["name"]}} in volumes


def test_policies_with_set_file(tmp_path: Path) -> None:
    """`--set-file policies.files.chat\\.yaml=<path>` as helm parses it."""
    policy = tmp_path / "chat.yaml"
    policy.write_text(POLICY)
    values = helm_python.parse_set_file("policies.files.chat\\.yaml=" + str(policy))
    docs = render(values)
    configmap = one(docs, "ConfigMap")
    assert yaml.safe_load(configmap["data"]["chat.yaml"]) == yaml.safe_load(POLICY)


def test_byo_values(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["byo"]
    assert "ServiceAccount" not in kinds(docs) and "PodDisruptionBudget" not in kinds(docs)
    assert not [d for d in docs if d["kind"] == "ConfigMap"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "platform-autoscaler"
    assert container["image"].endswith("@sha256:" + "a" * 64)
    for flag in ["--no-leader-elect", "--dry-run", "--tenant=team-a", "--requestheader-allowed-names=front-proxy-client",
                 "--bearer-token-file=/etc/inference-autoscaler/prometheus/token",
                 "--ca-file=/etc/inference-autoscaler/prometheus/ca.crt",
                 "--tls-cert-file=/etc/inference-autoscaler/tls/tls.crt"]:
        assert flag in container["args"]
    assert {"name": "policies", "configMap": {"name": "my-policies"}} in pod["volumes"]
    api = one(docs, "APIService")
    assert api["spec"]["caBundle"] == CA and "insecureSkipTLSVerify" not in api["spec"]
    assert api["spec"]["service"] == {"name": "ia-inference-autoscaler", "namespace": "ops", "port": 443}
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "ia-inference-autoscaler"]
    assert {"apiGroups": ["ray.io"], "resources": ["rayservices/scale"], "verbs": ["get", "update", "patch"]} in role["rules"]
    for binding in [d for d in docs if "Binding" in d["kind"] and d["subjects"][0]["name"] != "horizontal-pod-autoscaler"]:
        assert binding["subjects"][0]["name"] == "platform-autoscaler"


def test_everything_on(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["everything"]
    priority = one(docs, "PriorityClass")
    assert priority["value"] < 0 and priority["preemptionPolicy"] == "Never" and priority["globalDefault"] is False
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["http-metrics", "https"]
    assert policy["spec"]["ingress"][1].get("from") is None  # the aggregator is not a pod
    dashboards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert json.loads(dashboards[0]["data"]["inference-autoscaler.json"])["uid"] == "inference-autoscaler"
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespaces=team-a,team-b" in args


def test_development_metrics_api(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["development"]
    api = one(docs, "APIService")
    assert api["spec"]["insecureSkipTLSVerify"] is True and "caBundle" not in api["spec"]
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--cert-dir=/tmp/inference-autoscaler/certs" in args  # self-signed, on the writable emptyDir
    assert not [d for d in docs if d["kind"] == "ClusterRole" and "external-metrics-reader" in d["metadata"]["name"]]


# ---------------------------------------------------------------------------------------- policy CRDs

POLICY_GROUP = "inference-autoscaler.io"


def test_the_chart_ships_the_policy_crds_outside_its_templates() -> None:
    chart = helm_python.Chart.load(str(CHART))
    crds = {c["name"]: yaml.safe_load(c["data"]) for c in chart.crds}
    assert set(crds) == {f"crds/scalingpolicies.{POLICY_GROUP}.yaml", f"crds/policydefaults.{POLICY_GROUP}.yaml"}
    for crd in crds.values():
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["group"] == POLICY_GROUP
        for version in ("1.30.0", "1.33.0"):
            kubernetes_validate.validate(crd, version, strict=True)
    # Helm applies crds/ verbatim: the PromQL placeholders in a description stay as written
    assert "{{namespace}}" in "".join(c["data"] for c in chart.crds)
    rendered = render({})
    assert not [d for d in rendered if d["kind"] == "CustomResourceDefinition"]


def aggregated(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    prefix = "rbac.authorization.k8s.io/aggregate-to-"
    return {label.removeprefix(prefix): d for d in docs if d["kind"] == "ClusterRole"
            for label in d["metadata"]["labels"] if label.startswith(prefix)}


def test_teams_get_policy_rights_through_the_builtin_roles(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for key in ("defaults", "everything"):  # with watchNamespaces too: these bind nobody
        roles = aggregated(rendered[key])
        assert set(roles) == {"admin", "edit", "view"}, key
        assert roles["admin"] is roles["edit"]
        (write,) = roles["edit"]["rules"]
        assert write["apiGroups"] == [POLICY_GROUP] and set(write["resources"]) == {"scalingpolicies", "policydefaults"}
        assert {"create", "update", "patch", "delete"} <= set(write["verbs"])
        (read,) = roles["view"]["rules"]
        assert set(read["resources"]) == {"scalingpolicies", "scalingpolicies/status", "policydefaults"}
        assert read["verbs"] == ["get", "list", "watch"]
        names = {d["metadata"]["name"] for d in roles.values()}
        assert not [b for b in rendered[key] if "Binding" in b["kind"] and b["roleRef"]["name"] in names]
    assert aggregated(render({"rbac": {"aggregateToBuiltinRoles": False}})) == {}


def test_the_service_reads_policies_and_writes_their_status(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (role,) = [d for d in rendered["defaults"] if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "ia-inference-autoscaler"]
    rules = role["rules"]
    assert {"apiGroups": [POLICY_GROUP], "resources": ["scalingpolicies", "policydefaults"], "verbs": ["get", "list", "watch"]} in rules
    assert {"apiGroups": [POLICY_GROUP], "resources": ["scalingpolicies/status"], "verbs": ["patch", "update"]} in rules
    assert {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get", "list", "watch"]} in rules
    # other kinds: only their own object (pause annotations), not a cache
    assert {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get"]} in rules
    for key in ("everything",):  # per watched namespace, the same rules in a Role
        roles = [d for d in rendered[key] if d["kind"] == "Role" and d["metadata"]["namespace"] in ("team-a", "team-b")]
        assert len(roles) == 2 and all({"apiGroups": [POLICY_GROUP], "resources": ["scalingpolicies/status"],
                                        "verbs": ["patch", "update"]} in r["rules"] for r in roles)


# ---------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 0}, "replicaCount"),
        ({"replicas": 2}, "replicas"),  # a typo of replicaCount: additional properties are refused
        ({"logLevel": "verbose"}, "logLevel"),
        ({"prometheus": {"url": "prometheus:9090"}}, "url"),
        ({"metricsApi": {"enabled": True}}, "needs a way to trust the serving certificate"),
        ({"metricsApi": {"enabled": True, "apiService": {"insecureSkipTLSVerify": True, "caBundle": CA}}}, "exclusive"),
        ({"leaderElection": {"enabled": False}}, "set replicaCount to 1"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    ],
)
def test_bad_values_are_refused_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message):
        render(values)


def test_values_yaml_and_schema_agree() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: dict[str, Any], props: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            assert key in props, f"values.yaml key {path}{key} is not in values.schema.json"
            sub = props[key]
            if isinstance(value, dict) and sub.get("properties"):
                walk(value, sub["properties"], f"{path}{key}.")

    walk(values, schema["properties"], "")
    documented = set(schema["properties"]) - {"global"}
    assert documented == set(values), "values.schema.json describes keys values.yaml does not have"


# ---------------------------------------------------------------------------------------- sync


def test_manifests_and_chart_copies_are_up_to_date() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("render_manifests", ROOT / "scripts" / "render_manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stale = [str(p.relative_to(ROOT)) for p, text in module.expected_files().items() if not p.exists() or p.read_text() != text]
    assert stale == [], "run: .venv/bin/python scripts/render_manifests.py"


def test_plain_manifests_validate_and_start_with_the_namespace() -> None:
    for path in sorted((ROOT / "deploy" / "manifests").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs[0]["kind"] == "Namespace", path.name
        crds = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition")
        assert crds == ["policydefaults.inference-autoscaler.io", "scalingpolicies.inference-autoscaler.io"], path.name
        for doc in docs:
            if doc["kind"] not in CRD_KINDS:
                kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_kubectl_kustomize_builds() -> None:
    done = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert {"Namespace", "Deployment", "ClusterRole", "Service", "CustomResourceDefinition"} <= {d["kind"] for d in docs}
    assert {"scalingpolicies.inference-autoscaler.io", "policydefaults.inference-autoscaler.io"} <= {
        d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert set(aggregated(docs)) == {"admin", "edit", "view"}
