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
