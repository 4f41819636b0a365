"""Policies from API objects (``load_policy_objects``), alone and together with files.

Case matrix:
  equivalence  every shipped ScalingPolicy, wrapped as an object, loads to the same typed policy as from
               its file (same defaults: org-wide and the namespace's file defaults)
  objects      status, managedFields, server metadata and unrelated annotations are ignored; the pause
               annotations are kept; metadata.namespace is authoritative (spec.target.namespace is
               refused); generation carried, not compared; wrong kind, apiVersion, missing namespace
  problems     a bad object's problem names the object and the field (no file, no line); a value from a
               defaults file says where it came from
  layering     org file defaults -> namespace file defaults -> namespace PolicyDefaults objects (by name)
               -> the object; another namespace's defaults do not apply; folder-only defaults do not
               apply; a broken PolicyDefaults object blocks its namespace's policies, naming it
  owners       file vs object on one target: at start the file wins; a running object keeps its
               target over a new file, and a running file over a new object; two objects: by
               namespace/name; a file and an object with one namespace/name: the file's
"""

from __future__ import annotations

import copy
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from autoscaler.policy.loader import LoadResult, load_policies, load_policy_objects, target_identity

ROOT = Path(__file__).resolve().parent.parent

POLICY: dict[str, Any] = {
    "apiVersion": "inference-autoscaler.io/v1alpha1",
    "kind": "ScalingPolicy",
    "metadata": {"name": "chat", "namespace": "team-a", "uid": "u-1", "resourceVersion": "10", "generation": 2},
    "spec": {
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat-llm"},
        "minReplicas": 1,
        "maxReplicas": 40,
        "metrics": [{"name": "queue", "source": {"preset": "vllm.queue_depth"},
                     "target": {"type": "AverageValue", "averageValue": 5}}],
    },
}

FILE_POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat-file, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  maxReplicas: 10
  metrics:
    - name: queue
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 5}
"""


def obj(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(POLICY)
    for dotted, value in changes.items():
        node = out
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def defaults(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "inference-autoscaler.io/v1alpha1", "kind": "PolicyDefaults",
            "metadata": {"name": name, "namespace": namespace, "generation": 1}, "spec": spec}


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# ---------------------------------------------------------------------------------------- equivalence


def test_every_shipped_policy_loads_the_same_from_an_object() -> None:
    from_files = load_policies([ROOT / "policies"])
    assert from_files.errors == []
    only_defaults = LoadResult(layers=from_files.layers)
    checked = 0
    for path in sorted((ROOT / "policies").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] != "ScalingPolicy":
                continue
            wrapped = copy.deepcopy(doc)
            wrapped["metadata"].update(generation=7, uid="x", resourceVersion="1", managedFields=[{"manager": "k"}])
            result = load_policy_objects([wrapped], files=only_defaults)
            assert result.errors == [], result.errors
            (policy,) = result.policies
            (expected,) = [p for p in from_files.policies if p.key == policy.key]
            assert policy.source == f"ScalingPolicy {policy.key}" and policy.generation == 7
            assert replace(policy, source=expected.source) == expected
            checked += 1
    assert checked >= 4


# ---------------------------------------------------------------------------------------- objects


def test_status_managed_fields_and_server_metadata_are_ignored() -> None:
    noisy = obj(status={"desiredReplicas": "garbage", "conditions": 3},
                metadata__managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                metadata__creationTimestamp="2026-01-01T00:00:00Z",
                metadata__annotations={"kubectl.kubernetes.io/last-applied-configuration": "x" * 50_000})
    result = load_policy_objects([noisy])
    assert result.errors == [] and [p.key for p in result.policies] == ["team-a/chat"]
    assert result.policies[0].pause is None


def test_the_pause_annotations_are_kept() -> None:
    (policy,) = load_policy_objects([obj(metadata__annotations={"autoscaling.keda.sh/paused-replicas": "3"})]).policies
    assert policy.pause is not None and policy.pause.replicas == 3


def test_generation_is_carried_but_not_compared() -> None:
    (first,) = load_policy_objects([obj()]).policies
    (bumped,) = load_policy_objects([obj(metadata__generation=9)]).policies
    assert (first.generation, bumped.generation) == (2, 9)
    assert first == bumped  # a generation bump alone must not retarget the running policy
    (edited,) = load_policy_objects([obj(spec__maxReplicas=41)]).policies
    assert edited != first


def test_metadata_namespace_is_authoritative() -> None:
    (policy,) = load_policy_objects([obj(metadata__namespace="team-b")]).policies
    assert policy.namespace == "team-b"
    result = load_policy_objects([obj(spec__target={**POLICY["spec"]["target"], "namespace": "team-b"})])
    (error,) = result.errors
    assert result.policies == []
    assert str(error).startswith("ScalingPolicy team-a/chat: spec.target.namespace = team-b: a policy can only target")


def test_wrong_kind_version_or_namespace_are_named() -> None:
    result = load_policy_objects([
        obj(kind="ScaledObject"),
        obj(apiVersion="inference-autoscaler.io/v1beta1"),
        obj(metadata={"name": "nons"}),
    ])
    assert result.policies == []
    assert sorted(str(e) for e in result.errors) == [
        "ScaledObject team-a/chat: kind = ScaledObject: must be one of ScalingPolicy, PolicyDefaults",
        "ScalingPolicy /nons: metadata.namespace: is required: both kinds are namespaced",
        "ScalingPolicy team-a/chat: apiVersion = inference-autoscaler.io/v1beta1: must be inference-autoscaler.io/v1alpha1",
    ]


# ---------------------------------------------------------------------------------------- problems


def test_a_bad_object_names_the_object_and_the_field() -> None:
    result = load_policy_objects([obj(spec__minReplicas=-1), obj(metadata__name="ok")])
    assert [p.key for p in result.policies] == ["team-a/ok"]
    (error,) = result.errors
    assert (error.file, error.line, error.path) == ("ScalingPolicy team-a/chat", None, "spec.minReplicas")
    assert str(error) == "ScalingPolicy team-a/chat: spec.minReplicas = -1: must be >= 0"


def test_a_cross_field_problem_names_the_object() -> None:
    (error,) = load_policy_objects([obj(spec__minReplicas=50)]).errors
    assert str(error) == "ScalingPolicy team-a/chat: spec.maxReplicas = 40: must be >= spec.minReplicas (50)"


def test_a_bad_value_from_a_defaults_file_is_the_objects_problem_and_says_where(tmp_path: Path) -> None:
    write(tmp_path, "team-a.yaml", """\
        apiVersion: inference-autoscaler.io/v1alpha1
        kind: PolicyDefaults
        metadata: {name: team-a, namespace: team-a}
        spec:
          minReplicas: 60
        """)
    files = load_policies([tmp_path])
    spec = {k: v for k, v in POLICY["spec"].items() if k != "minReplicas"}
    (error,) = load_policy_objects([obj(spec=spec)], files=files).errors
    assert error.file == "ScalingPolicy team-a/chat"
    assert "spec.maxReplicas = 40: must be >= spec.minReplicas (60)" in str(error)


# ---------------------------------------------------------------------------------------- layering


def test_layering_order_files_then_objects_then_the_policy(tmp_path: Path) -> None:
    write(tmp_path, "org.yaml", """\
        apiVersion: inference-autoscaler.io/v1alpha1
        kind: PolicyDefaults
        metadata: {name: org}
        spec: {intervalSeconds: 30, mode: shadow, fallback: {failureThreshold: 7}}
        """)
    write(tmp_path, "teams/a.yaml", """\
        apiVersion: inference-autoscaler.io/v1alpha1
        kind: PolicyDefaults
        metadata: {name: a, namespace: team-a}
        spec: {mode: external, intervalSeconds: 20}
        """)
    write(tmp_path, "teams/b.yaml", """\
        apiVersion: inference-autoscaler.io/v1alpha1
        kind: PolicyDefaults
        metadata: {name: b, namespace: team-b}
        spec: {fallback: {failureThreshold: 1}}
        """)
    write(tmp_path, "folder/only.yaml", """\
        apiVersion: inference-autoscaler.io/v1alpha1
        kind: PolicyDefaults
        metadata: {name: folder-only}
        spec: {maxReplicas: 3}
        """)
    files = load_policies([tmp_path])
    assert files.errors == [] and len(files.layers) == 4
    objects = [
        defaults("z-last", "team-a", {"behavior": {"scaleUp": {"stabilizationWindowSeconds": 30}}}),
        defaults("a-first", "team-a", {"mode": "patch", "behavior": {"scaleUp": {"stabilizationWindowSeconds": 10}}}),
        defaults("other", "team-b", {"intervalSeconds": 5}),
        obj(spec={**POLICY["spec"], "intervalSeconds": 45}),
    ]
    (policy,) = load_policy_objects(objects, files=files).policies
    assert policy.mode.value == "patch"  # the namespace's object defaults over its file defaults over org
    assert policy.interval_s == 45  # the policy over everything
    assert policy.fallback.failure_threshold == 7  # org; team-b's file defaults do not apply
    assert policy.behavior.scale_up.stabilization_window_s == 30  # object defaults by name: z-last last
    assert policy.max_replicas == 40  # defaults in a folder apply to that folder's files, not to objects
    (no_interval,) = load_policy_objects([*objects[:3], obj()], files=files).policies
    assert no_interval.interval_s == 20  # team-a's file defaults over org's; team-b's object does not apply


def test_a_broken_policy_defaults_object_blocks_its_namespace_only() -> None:
    broken = defaults("team-a", "team-a", {"maxReplicas": "lots"})
    result = load_policy_objects([broken, obj(), obj(metadata__namespace="team-b")])
    assert [p.key for p in result.policies] == ["team-b/chat"]
    messages = sorted(str(e) for e in result.errors)
    assert messages == [
        "PolicyDefaults team-a/team-a: spec.maxReplicas = lots: must be an integer, not a string",
        "ScalingPolicy team-a/chat: not loaded: its defaults PolicyDefaults team-a/team-a are invalid",
    ]


# ---------------------------------------------------------------------------------------- owners


def test_at_start_the_file_wins_over_an_object_on_one_target(tmp_path: Path) -> None:
    write(tmp_path, "chat.yaml", FILE_POLICY)
    files = load_policies([tmp_path])
    result = load_policy_objects([obj()], files=files)
    assert [p.key for p in result.policies] == ["team-a/chat-file"]
    (conflict,) = result.conflicts
    assert (conflict.policy.key, conflict.owner.key) == ("team-a/chat", "team-a/chat-file")
    text = str(conflict.problem)
    assert text.startswith("ScalingPolicy team-a/chat: spec.target: Deployment team-a/chat-llm (apps/v1) already has")
    assert f"team-a/chat-file at {tmp_path / 'chat.yaml'}:1" in text  # both sources named


def test_a_running_object_keeps_its_target_over_a_new_file(tmp_path: Path) -> None:
    (running,) = load_policy_objects([obj()]).policies
    owners = {target_identity(running): running.key}
    write(tmp_path, "chat.yaml", FILE_POLICY)
    files = load_policies([tmp_path], owners=owners)
    result = load_policy_objects([obj()], files=files, owners=owners)
    assert [p.key for p in result.policies] == ["team-a/chat"]
    (conflict,) = result.conflicts
    assert (conflict.policy.key, conflict.owner.key) == ("team-a/chat-file", "team-a/chat")
    assert conflict.problem.file == str(tmp_path / "chat.yaml")
    assert "already has a policy: team-a/chat at ScalingPolicy team-a/chat;" in str(conflict.problem)


def test_a_running_file_keeps_its_target_over_a_new_object(tmp_path: Path) -> None:
    write(tmp_path, "chat.yaml", FILE_POLICY)
    files = load_policies([tmp_path])
    owners = {target_identity(files.policies[0]): "team-a/chat-file"}
    result = load_policy_objects([obj()], files=files, owners=owners)
    assert [p.key for p in result.policies] == ["team-a/chat-file"]
    assert [c.policy.key for c in result.conflicts] == ["team-a/chat"]


def test_two_objects_on_one_target_by_namespace_and_name() -> None:
    result = load_policy_objects([obj(metadata__name="zed"), obj(metadata__name="alpha")])
    assert [p.key for p in result.policies] == ["team-a/alpha"]
    (conflict,) = result.conflicts
    assert str(conflict.problem).startswith("ScalingPolicy team-a/zed: spec.target: ")
    owners = {target_identity(result.policies[0]): "team-a/zed"}
    again = load_policy_objects([obj(metadata__name="zed"), obj(metadata__name="alpha")], owners=owners)
    assert [p.key for p in again.policies] == ["team-a/zed"]


def test_a_file_and_an_object_with_one_name_the_file_wins(tmp_path: Path) -> None:
    write(tmp_path, "chat.yaml", FILE_POLICY.replace("name: chat-file", "name: chat").replace("chat-llm", "other"))
    files = load_policies([tmp_path])
    result = load_policy_objects([obj()], files=files)
    assert [p.source for p in result.policies] == [f"{tmp_path / 'chat.yaml'}:1"]
    (error,) = [e for e in result.errors if e.file.startswith("ScalingPolicy")]
    assert str(error).startswith("ScalingPolicy team-a/chat: metadata.name = chat: team-a/chat is already defined by ")
