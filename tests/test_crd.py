"""The ScalingPolicy and PolicyDefaults CRDs, generated from the loader's schema.

Case matrix:
  generation   both CRDs: group, version served+storage, Namespaced, names (short names, categories),
               status subresource on ScalingPolicy only, printer columns (each path exists in the schema)
  structural   the generated schemas pass the structural checker; the checker refuses each rule it
               checks when broken (so it can fail); kubernetes-validate strict (1.30, 1.33) accepts them
  agreement    every shipped file under policies/, wrapped as an API object (server metadata, no
               status), is accepted by the CRD's openAPIV3Schema (jsonschema, Draft 4 = OpenAPI 3.0);
               objects the loader refuses for type, bound, enum or pattern are refused by the CRD too;
               a fractional quantity must be a string in an object; a built status is accepted
  drift        the shipped CRD files equal the generated ones (the message names the command);
               `inference-autoscaler schema --crd` prints the same documents
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from autoscaler.policy.crd import (
    CONDITION_TYPES,
    CRD_FILES,
    crd_documents,
    crd_yaml,
    policy_defaults_crd,
    scaling_policy_crd,
    structural_problems,
)

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT / "deploy" / "helm" / "inference-autoscaler" / "crds"


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def wrap(doc: dict[str, Any], namespace: str = "team-a") -> dict[str, Any]:
    """A file document as the API returns the object: server metadata added, the namespace set."""
    obj = copy.deepcopy(doc)
    meta = obj["metadata"]
    meta.setdefault("namespace", namespace)
    meta.update({"uid": "0b7c3d1e-1111-2222-3333-444455556666", "resourceVersion": "4711", "generation": 3,
                 "creationTimestamp": "2026-12-01T10:00:00Z",
                 "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1"}]})
    return obj


def shipped_documents() -> list[dict[str, Any]]:
    return [d for f in sorted((ROOT / "policies").rglob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def validator(kind: str) -> jsonschema.Draft4Validator:
    crd = scaling_policy_crd() if kind == "ScalingPolicy" else policy_defaults_crd()
    return jsonschema.Draft4Validator(schema_of(crd))


# ---------------------------------------------------------------------------------------- generation


def test_both_crds_are_namespaced_v1alpha1_with_names_and_categories() -> None:
    policy, defaults = scaling_policy_crd(), policy_defaults_crd()
    assert policy["metadata"]["name"] == "scalingpolicies.inference-autoscaler.io"
    assert defaults["metadata"]["name"] == "policydefaults.inference-autoscaler.io"
    for crd, kind, short in [(policy, "ScalingPolicy", "sp"), (defaults, "PolicyDefaults", "pdef")]:
        spec = crd["spec"]
        assert spec["group"] == "inference-autoscaler.io" and spec["scope"] == "Namespaced"
        assert spec["names"]["kind"] == kind and short in spec["names"]["shortNames"]
        assert spec["names"]["categories"] == ["inference-autoscaler"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert policy["spec"]["versions"][0]["subresources"] == {"status": {}}
    assert "subresources" not in defaults["spec"]["versions"][0]


def test_printer_columns_read_fields_the_schema_has() -> None:
    crd = scaling_policy_crd()
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    shown = [name for name, c in columns.items() if not c.get("priority")]
    assert shown == ["Target", "Min", "Max", "Desired", "Current", "Mode", "Last Scale", "Reason", "Age"]
    assert columns["Last Scale"]["type"] == columns["Age"]["type"] == "date"
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Active")].reason'
    schema = schema_of(crd)
    for column in columns.values():
        path = column["jsonPath"].split("[")[0].lstrip(".").split(".")
        if path[0] == "metadata":
            continue
        node = schema
        for part in path:
            node = node["properties"][part]  # KeyError: a column reading a field that does not exist
        assert column["type"] in ("string", "date") or node["type"] == column["type"], column
    status = schema["properties"]["status"]["properties"]
    assert status["conditions"]["items"]["properties"]["type"]["enum"] == list(CONDITION_TYPES)
    assert {"observedGeneration", "desiredReplicas", "currentReplicas", "readyReplicas", "mode", "lastScaleTime",
            "lastDecision", "capacity", "forecast"} <= set(status)


def test_descriptions_bounds_and_enums_come_from_the_loader_schema() -> None:
    spec = schema_of(scaling_policy_crd())["properties"]["spec"]["properties"]
    assert spec["slo"]["properties"]["seconds"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                                                    "maximum": 3600, "description": "The bound on that percentile."}
    assert spec["mode"]["enum"] == ["patch", "external", "shadow"]
    assert spec["minReplicas"]["maximum"] == 2**31 - 1
    quantity = spec["metrics"]["items"]["properties"]["target"]["properties"]["averageValue"]
    assert quantity["x-kubernetes-int-or-string"] is True
    assert quantity["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert "additionalProperties" not in spec["target"]  # pruned by the API server, not refused


# ---------------------------------------------------------------------------------------- structural


@pytest.mark.parametrize("plural", list(CRD_FILES))
def test_generated_schemas_are_structural(plural: str) -> None:
    assert structural_problems(schema_of(crd_documents()[plural])) == []


@pytest.mark.parametrize("version", ["1.30.0", "1.33.0"])
@pytest.mark.parametrize("plural", list(CRD_FILES))
def test_kubernetes_validate_accepts_the_crds(plural: str, version: str) -> None:
    kubernetes_validate.validate(crd_documents()[plural], version, strict=True)


def test_kubernetes_validate_catches_a_broken_crd() -> None:
    crd = scaling_policy_crd()
    crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonpath"] = ".spec.x"  # a typo of jsonPath
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(crd, "1.30.0", strict=True)


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda s: s["properties"]["spec"]["properties"]["mode"].pop("type"), "mode: no type"),
        (lambda s: s["properties"]["spec"].update(additionalProperties=False), "additionalProperties: false"),
        (lambda s: s["properties"]["spec"]["properties"]["slo"]["properties"]["seconds"].update(exclusiveMinimum=0),
         "exclusiveMinimum must be a boolean"),
        (lambda s: s["properties"]["spec"]["properties"]["behavior"]["properties"]["scaleUp"]["properties"][
            "tolerance"].update(anyOf=[{"type": "number"}, {"type": "string"}]), "int-or-string with an anyOf"),
        (lambda s: s["properties"]["spec"]["properties"]["target"].update(
            anyOf=[{"type": "object", "description": "x"}]), "type inside a junctor"),
        (lambda s: s["properties"]["metadata"].update(properties={"labels": {"type": "object"}}),
         "only name and generateName"),
        (lambda s: s["properties"]["status"]["properties"]["conditions"].update(
            {"x-kubernetes-list-map-keys": ["name"]}), "list-map keys"),
        (lambda s: s["properties"]["spec"]["properties"]["mode"].update(const="patch"), "unknown keys"),
    ],
)
def test_the_structural_checker_can_fail(break_it: Any, expected: str) -> None:
    schema = copy.deepcopy(schema_of(scaling_policy_crd()))
    break_it(schema)
    problems = structural_problems(schema)
    assert any(expected in p for p in problems), problems


# ---------------------------------------------------------------------------------------- agreement


def test_every_shipped_file_wrapped_as_an_object_is_accepted() -> None:
    docs = shipped_documents()
    assert {d["kind"] for d in docs} == {"ScalingPolicy", "PolicyDefaults"} and len(docs) >= 6
    for doc in docs:
        obj = wrap(doc)
        errors = [e.message for e in validator(doc["kind"]).iter_errors(obj)]
        assert errors == [], (doc["metadata"], errors)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "minReplicas"), -1),
        (("spec", "maxReplicas"), 2**31),
        (("spec", "mode"), "patched"),
        (("spec", "intervalSeconds"), "15"),
        (("spec", "target", "kind"), "apps/v1 Deployment"),
        (("spec", "target", "name"), "Chat_LLM"),
        (("spec", "slo", "seconds"), 0),
        (("spec", "metrics"), []),
        (("spec", "fallback", "behavior"), "Hold"),
        (("spec", "behavior", "scaleUp", "tolerance"), "-0.1"),
        (("spec", "behavior", "scaleUp", "tolerance"), 0.1),  # a fractional quantity is a string in an object
    ],
)
def test_the_crd_refuses_what_the_loader_refuses(path: tuple[str, ...], value: Any) -> None:
    from autoscaler.policy.loader import load_policy_objects

    doc = yaml.safe_load((ROOT / "policies" / "team-a" / "chat.yaml").read_text())
    doc["spec"]["metrics"] = [{"name": "q", "source": {"preset": "vllm.queue_depth"},
                               "target": {"type": "AverageValue", "averageValue": 5}}]
    obj = wrap(doc)
    assert not list(validator("ScalingPolicy").iter_errors(obj))
    node = obj
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    assert list(validator("ScalingPolicy").iter_errors(obj)), f"the CRD accepted {path} = {value!r}"
    if value != 0.1:  # the one the file format accepts: a bare fractional number
        result = load_policy_objects([obj])
        assert result.policies == [] and result.errors, f"the loader accepted {path} = {value!r}"


def test_a_quantity_string_is_accepted_by_both() -> None:
    from autoscaler.policy.loader import load_policy_objects

    doc = yaml.safe_load((ROOT / "policies" / "team-b" / "batch.yaml").read_text())
    doc["spec"]["metrics"][1]["target"]["averageValue"] = "500m"
    doc["spec"]["behavior"]["scaleDown"]["tolerance"] = "0.05"
    obj = wrap(doc, "team-b")
    assert not list(validator("ScalingPolicy").iter_errors(obj))
    (policy,) = load_policy_objects([obj]).policies
    assert policy.metrics[1].target.milli == 500 and policy.behavior.scale_down.tolerance == 0.05


def test_a_built_status_is_accepted_by_the_status_schema() -> None:
    from autoscaler.core.model import Decision, Reason
    from autoscaler.policy.loader import load_policy_objects
    from autoscaler.service.status import policy_status

    doc = yaml.safe_load((ROOT / "policies" / "team-b" / "batch.yaml").read_text())
    (policy,) = load_policy_objects([wrap(doc, "team-b")]).policies
    decision = Decision(4, 3, Reason.SCALE_UP, "gpu 95% of 80% -> 4")
    obj = wrap(doc, "team-b")
    obj["status"] = policy_status(policy=policy, decision=decision, outcome="written", now_s=1.8e9, last_scale_s=1.8e9,
                                  ready_replicas=3)
    assert not [e.message for e in validator("ScalingPolicy").iter_errors(obj)]
    obj["status"]["conditions"][0]["status"] = "Yes"
    assert list(validator("ScalingPolicy").iter_errors(obj))


# ---------------------------------------------------------------------------------------- drift


def test_shipped_crds_equal_the_generated_ones() -> None:
    for plural, crd in crd_documents().items():
        path = CRDS / CRD_FILES[plural]
        assert path.exists() and path.read_text() == crd_yaml(crd), (
            f"{path.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/render_manifests.py"
        )


def test_schema_crd_prints_them(capsys: pytest.CaptureFixture[str]) -> None:
    from autoscaler.cli import main

    assert main(["schema", "--crd"]) == 0
    printed = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert printed == list(crd_documents().values())
