"""``convert keda``: ScaledObjects from KEDA's documentation become valid ScalingPolicies, and every field
that does not carry over is named with what to do instead (issue 14, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoscaler.cli import main
from autoscaler.policy import load_policies

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "keda" / "scaledobjects.yaml"


def test_documented_scaled_objects_convert_to_valid_policies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["convert", "keda", str(FIXTURE)]) == 0
    out, err = capsys.readouterr()
    first, second = list(yaml.safe_load_all(out))
    assert first["metadata"] == {"name": "prometheus-scaledobject", "namespace": "default"}
    assert first["spec"]["target"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "my-deployment"}
    assert (first["spec"]["minReplicas"], first["spec"]["maxReplicas"], first["spec"]["intervalSeconds"]) == (0, 100, 30)
    [metric] = first["spec"]["metrics"]
    assert metric == {"name": "http_requests_total",
                      "source": {"query": 'sum(rate(http_requests_total{deployment="my-deployment"}[2m]))'},
                      "target": {"type": "AverageValue", "averageValue": 100}}
    assert first["spec"]["wake"] == {"metric": "http_requests_total"}  # KEDA's min 0 activates on the query
    assert second["spec"]["fallback"] == {"failureThreshold": 3, "behavior": "static", "replicas": 6}
    assert second["spec"]["behavior"]["scaleDown"]["policies"] == [{"type": "Percent", "value": 100, "periodSeconds": 15}]
    assert [m["name"] for m in second["spec"]["metrics"]] == ["queue"]
    for said in ("spec.triggers[0].metadata.activationThreshold: not mapped",
                 "spec.triggers[0].metadata.serverAddress: not mapped (the service reads the one Prometheus",
                 "spec.triggers[1]: type cpu is not mapped", "spec.cooldownPeriod: not mapped",
                 "minReplicaCount 0: wakes on http_requests_total"):
        assert said in err, said
    # the printed policies load like any file (and the loader, not this test, is the judge)
    (tmp_path / "p.yaml").write_text(out)
    result = load_policies([tmp_path / "p.yaml"])
    assert not result.errors and len(result.policies) == 2


def test_written_to_a_folder_per_namespace(tmp_path: Path) -> None:
    assert main(["convert", "keda", str(FIXTURE), "--out", str(tmp_path)]) == 0
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.yaml")) == [
        "default/prometheus-scaledobject.yaml", "team-a/vllm-queue.yaml"]


@pytest.mark.parametrize(("text", "message"), [
    ("kind: ConfigMap\n", "no ScaledObject in it"),
    ("apiVersion: keda.sh/v1\nkind: ScaledObject\n", "apiVersion keda.sh/v1: expected keda.sh/v1alpha1"),
    ("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {scaleTargetRef: {name: d}, "
     "triggers: [{type: kafka, metadata: {}}]}\n", "has no prometheus trigger to convert"),
    ("apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec: {scaleTargetRef: {name: d}, "
     "triggers: [{type: prometheus, metadata: {query: up, threshold: lots}}]}\n", "threshold = 'lots': not a number"),
])
def test_what_cannot_be_converted_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(text)
    assert main(["convert", "keda", str(path)]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("spec", "message"), [
    ("{scaleTargetRef: {name: d}, fallback: 4, triggers: [{type: prometheus, metadata: {query: up, threshold: '1'}}]}",
     "spec.fallback must be a mapping, not int"),
    ("{scaleTargetRef: {name: d}, triggers: {type: prometheus}}", "spec.triggers must be a list"),
    ("{scaleTargetRef: {name: d}, minReplicaCount: two, triggers: [{type: prometheus, metadata: {query: up, "
     "threshold: '1'}}]}", "spec: minReplicaCount = 'two': must be a whole number"),
    ("{scaleTargetRef: {name: d}, minReplicaCount: 5, maxReplicaCount: 2, triggers: [{type: prometheus, "
     "metadata: {query: up, threshold: '1'}}]}", "the converted policy's spec.maxReplicas = 2: must be >="),
])
def test_malformed_scaled_objects_are_one_line_errors_naming_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    path = tmp_path / "so.yaml"
    path.write_text(f"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {{name: x}}\nspec: {spec}\n")
    assert main(["convert", "keda", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: document 1: " in err and message in err and "Traceback" not in err and "/tmp/tmp" not in err


def test_kubectl_list_output_and_clashing_trigger_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("""apiVersion: v1
kind: List
items:
- apiVersion: keda.sh/v1alpha1
  kind: ScaledObject
  metadata: {name: x, namespace: team-a}
  spec:
    scaleTargetRef: {name: d}
    minReplicaCount: 1
    triggers:
    - {type: prometheus, name: Queue Depth, metadata: {query: sum(a), threshold: '1'}}
    - {type: prometheus, name: queue-depth, metadata: {query: sum(b), threshold: '2'}}
""")
    assert main(["convert", "keda", str(path)]) == 0
    [policy] = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [m["name"] for m in policy["spec"]["metrics"]] == ["queue-depth", "queue-depth-1"]
