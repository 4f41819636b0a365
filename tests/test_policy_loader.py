"""Policy loading and validation.

Cases:
* the shipped example tree is valid; every policy there gets org and team defaults;
* a matrix of bad documents, each giving one precise ``file:line: path = value: message`` line;
* "did you mean" hints for unknown fields, enum values and presets;
* one bad file or document never prevents loading the good ones; broken defaults block their scope;
* layering: org root -> team folder -> policy, lists replaced, mappings merged, namespace scoping;
* duplicates (keys in YAML, policies across files), YAML syntax errors, non-mapping documents;
* HPA behavior defaults filled per field.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from autoscaler.core.policy import FallbackBehavior, Mode, RuleType, SelectPolicy, TargetType
from autoscaler.policy import load_policies, load_policy_file, policy_to_document

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  minReplicas: 1
  maxReplicas: 40
  metrics:
    - name: queue
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 5}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(*paths: Path) -> list[str]:
    return [str(e) for e in load_policies(list(paths)).errors]


def test_example_tree_is_valid_and_layers_defaults() -> None:
    result = load_policies([REPO / "policies"])
    assert result.errors == []
    by_key = {p.key: p for p in result.policies}
    assert {"team-a/chat", "team-a/assistant", "team-b/embed-batch", "my-team/my-model"} <= set(by_key)
    chat = by_key["team-a/chat"]
    # org default (scale down 50% per 60 s) and team default (scale up 4 pods / 100% per 60 s) both apply
    assert [(r.type, r.value, r.period_s) for r in chat.behavior.scale_down.policies] == [(RuleType.PERCENT, 50, 60)]
    assert [(r.type, r.value, r.period_s) for r in chat.behavior.scale_up.policies] == [
        (RuleType.PODS, 4, 60),
        (RuleType.PERCENT, 100, 60),
    ]
    # team-b has no team defaults: its own scale-down policy replaces the org list, the org window stays
    batch = by_key["team-b/embed-batch"]
    assert batch.behavior.scale_down.stabilization_window_s == 120
    assert batch.behavior.scale_up.policies[0].period_s == 15  # HPA default, team-a's defaults don't leak
    assert batch.mode is Mode.SHADOW


# (case id, document text replacing GOOD's pieces, expected error line fragment)
BAD_CASES = [
    (
        "max-below-min",
        GOOD.replace("maxReplicas: 40", "maxReplicas: 0").replace("minReplicas: 1", "minReplicas: 1"),
        "chat.yaml:7: spec.maxReplicas = 0: must be >= 1",
    ),
    (
        "max-lt-min",
        GOOD.replace("minReplicas: 1", "minReplicas: 5").replace("maxReplicas: 40", "maxReplicas: 3"),
        "chat.yaml:7: spec.maxReplicas = 3: must be >= spec.minReplicas (5)",
    ),
    (
        "unknown-field",
        GOOD.replace("  minReplicas: 1\n", "  minReplica: 1\n"),
        "chat.yaml:6: spec.minReplica = 1: unknown field (did you mean 'minReplicas'?)",
    ),
    (
        "bad-mode",
        GOOD + "  mode: pach\n",
        "chat.yaml:12: spec.mode = pach: must be one of patch, external, shadow (did you mean 'patch'?)",
    ),
    (
        "unknown-preset",
        GOOD.replace("vllm.queue_depth", "vllm.queue_dept"),
        "chat.yaml:10: spec.metrics[0].source.preset = vllm.queue_dept: unknown preset (did you mean 'vllm.queue_depth'?)",
    ),
    (
        "string-replicas",
        GOOD.replace("maxReplicas: 40", "maxReplicas: ten"),
        "chat.yaml:7: spec.maxReplicas = ten: must be an integer, not a string",
    ),
    (
        "missing-target",
        GOOD.replace("  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}\n", ""),
        "spec.target: is required",
    ),
    (
        "target-namespace",
        GOOD.replace("name: chat-llm}", "name: chat-llm, namespace: team-b}"),
        "chat.yaml:5: spec.target.namespace = team-b: a policy can only target objects in its own metadata.namespace",
    ),
    (
        "missing-namespace",
        GOOD.replace("metadata: {name: chat, namespace: team-a}", "metadata: {name: chat}"),
        "metadata.namespace: is required",
    ),
    (
        "bad-namespace",
        GOOD.replace("namespace: team-a", "namespace: Team_A"),
        "chat.yaml:3: metadata.namespace = Team_A: must be a DNS label",
    ),
    (
        "wrong-target-field",
        GOOD.replace("averageValue: 5", "value: 5"),
        "spec.metrics[0].target.value = 5: is not used with type AverageValue",
    ),
    (
        "bad-quantity",
        GOOD.replace("averageValue: 5", "averageValue: 5 requests"),
        "chat.yaml:11: spec.metrics[0].target.averageValue = 5 requests: must be a number or a quantity string",
    ),
    (
        "zero-target",
        GOOD.replace("averageValue: 5", "averageValue: 0"),
        "spec.metrics[0].target.averageValue = 0: must be > 0",
    ),
    (
        "average-with-avg-preset",
        GOOD.replace("vllm.queue_depth", "dcgm.gpu_util"),
        "spec.metrics[0].target.type = AverageValue: preset dcgm.gpu_util is an average (percent), not a total",
    ),
    (
        "utilization-non-percent",
        GOOD.replace("{type: AverageValue, averageValue: 5}", "{type: Utilization, averageUtilization: 70}"),
        "spec.metrics[0].target.type = Utilization: preset vllm.queue_depth is in requests, not percent",
    ),
    (
        "preset-and-query",
        GOOD.replace("{preset: vllm.queue_depth}", "{preset: vllm.queue_depth, query: 'sum(x)'}"),
        "spec.metrics[0].source = ",
    ),
    ("no-metrics", GOOD.split("  metrics:")[0] + "  metrics: []\n", "spec.metrics = []: must have at least 1 item(s)"),
    (
        "dup-metric",
        GOOD
        + "    - name: queue\n      source: {preset: vllm.running}\n      target: {type: AverageValue, averageValue: 8}\n",
        "chat.yaml:12: spec.metrics[1].name = queue: duplicate metric name (also spec.metrics[0])",
    ),
    (
        "bad-window",
        GOOD + "  behavior: {scaleDown: {stabilizationWindowSeconds: 7200}}\n",
        "spec.behavior.scaleDown.stabilizationWindowSeconds = 7200: must be <= 3600",
    ),
    (
        "bad-select",
        GOOD + "  behavior: {scaleUp: {selectPolicy: max}}\n",
        "spec.behavior.scaleUp.selectPolicy = max: must be one of Max, Min, Disabled (did you mean 'Max'?)",
    ),
    (
        "empty-policies",
        GOOD + "  behavior: {scaleUp: {policies: []}}\n",
        "spec.behavior.scaleUp.policies = []: must have at least 1",
    ),
    (
        "bad-period",
        GOOD + "  behavior: {scaleUp: {policies: [{type: Pods, value: 4, periodSeconds: 0}]}}\n",
        "spec.behavior.scaleUp.policies[0].periodSeconds = 0: must be >= 1",
    ),
    (
        "negative-tolerance",
        GOOD + "  behavior: {scaleUp: {tolerance: '-0.1'}}\n",
        "spec.behavior.scaleUp.tolerance = -0.1: must be >= 0",
    ),
    (
        "static-without-replicas",
        GOOD + "  fallback: {behavior: static}\n",
        "chat.yaml:12: spec.fallback.replicas: is required with behavior static",
    ),
    (
        "fallback-out-of-range",
        GOOD + "  fallback: {behavior: static, replicas: 99}\n",
        "spec.fallback.replicas = 99: must be within [spec.minReplicas, spec.maxReplicas] = [1, 40]",
    ),
    (
        "scale-to-zero",
        GOOD.replace("minReplicas: 1", "minReplicas: 0"),
        "spec.minReplicas = 0: scale to zero needs spec.wake.metric",
    ),
    (
        "wake-on-pod-preset",
        GOOD.replace("minReplicas: 1", "minReplicas: 0") + "  wake: {metric: queue}\n",
        "spec.wake.metric = queue: must exist at zero replicas, but preset vllm.queue_depth is read from the target's own pods",
    ),
    (
        "zero-external",
        GOOD.replace("minReplicas: 1", "minReplicas: 0") + "  mode: external\n  wake: {metric: queue}\n",
        "spec.mode = external: minReplicas 0 needs mode patch",
    ),
    (
        "predictive-unknown-metric",
        GOOD + "  predictive: {metric: tokens}\n",
        "spec.predictive.metric = tokens: no such metric in spec.metrics (has: queue)",
    ),
    (
        "predictive-not-average",
        GOOD.replace("{type: AverageValue, averageValue: 5}", "{type: Value, value: 5}")
        + "  predictive: {metric: queue}\n",
        "spec.predictive.metric = queue: must have an AverageValue target",
    ),
    (
        "predictive-bad-quantile",
        GOOD + "  predictive: {metric: queue, quantile: 1.5}\n",
        "spec.predictive.quantile = 1.5: must be <= 0.999",
    ),
    (
        "predictive-bad-season",
        GOOD + "  predictive: {metric: queue, seasonality: [hourly]}\n",
        "spec.predictive.seasonality[0] = hourly: must be one of daily, weekly",
    ),
    (
        "warm-pool-needs-predictive",
        GOOD + "  warmPool: {minSpare: 1}\n",
        "spec.warmPool = {minSpare: 1}: needs spec.predictive",
    ),
    (
        "warm-pool-spares",
        GOOD + "  predictive: {metric: queue}\n  warmPool: {minSpare: 3, maxSpare: 1}\n",
        "spec.warmPool.maxSpare = 1: must be >= spec.warmPool.minSpare (3)",
    ),
    (
        "enabled-not-bool",
        GOOD + "  predictive: {metric: queue, enabled: 'yes'}\n",
        "spec.predictive.enabled = yes: must be true or false",
    ),
    (
        "bad-api-version",
        GOOD.replace("v1alpha1", "v1"),
        "chat.yaml:1: apiVersion = inference-autoscaler.io/v1: must be inference-autoscaler.io/v1alpha1",
    ),
    (
        "bad-kind",
        GOOD.replace("kind: ScalingPolicy", "kind: ScalingPolicie"),
        "chat.yaml:2: kind = ScalingPolicie: must be one of ScalingPolicy, PolicyDefaults (did you mean 'ScalingPolicy'?)",
    ),
    (
        "duplicate-key",
        GOOD.replace("  minReplicas: 1\n", "  minReplicas: 1\n  minReplicas: 2\n"),
        "chat.yaml:7: spec.minReplicas: duplicate key",
    ),
    ("yaml-syntax", GOOD.replace("maxReplicas: 40", "maxReplicas: [40"), "invalid YAML"),
    ("not-a-mapping", "- just\n- a list\n", "a document must be a mapping"),
    (
        "labels-not-strings",
        GOOD.replace("namespace: team-a}", "namespace: team-a, labels: {tier: 1}}"),
        "metadata.labels.tier = 1: must be a string, not a number (quote it)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_document_gives_one_precise_error(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, "team-a/chat.yaml", text)
    result = load_policies([path])
    assert result.policies == []
    lines = [str(e) for e in result.errors]
    assert any(expected in line for line in lines), lines
    assert all(line.startswith(str(path)) or line.startswith("team-a/chat.yaml") for line in lines), lines


def test_one_bad_file_never_blocks_the_good_ones(tmp_path: Path) -> None:
    write(tmp_path, "team-a/good.yaml", GOOD)
    write(
        tmp_path,
        "team-a/bad.yaml",
        GOOD.replace("name: chat,", "name: other,").replace("maxReplicas: 40", "maxReplicas: -1"),
    )
    write(tmp_path, "team-a/broken.yaml", "a: [1,\n")
    result = load_policies([tmp_path])
    assert [p.key for p in result.policies] == ["team-a/chat"]
    assert len(result.errors) == 2
    assert {e.file.rsplit("/", 1)[-1] for e in result.errors} == {"bad.yaml", "broken.yaml"}


def test_one_bad_document_does_not_block_its_siblings(tmp_path: Path) -> None:
    second = GOOD.replace("name: chat,", "name: chat2,").replace("maxReplicas: 40", "maxReplicas: 0")
    third = GOOD.replace("name: chat,", "name: chat3,").replace("name: chat-llm", "name: chat3-llm")
    path = write(tmp_path, "multi.yaml", GOOD + "---\n" + second + "---\n" + third)
    result = load_policies([path])
    assert sorted(p.name for p in result.policies) == ["chat", "chat3"]
    (error,) = result.errors
    assert error.line == 19 and error.path == "spec.maxReplicas"


def test_duplicate_policy_across_files_is_reported_with_the_first_location(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    result = load_policies([tmp_path])
    assert len(result.policies) == 1
    (error,) = result.errors
    assert "duplicate policy team-a/chat (first defined at" in str(error) and "a.yaml:1" in str(error)


DEFAULTS = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: PolicyDefaults
metadata: {{name: {name}{ns}}}
spec:
{spec}
"""


def defaults(name: str, spec: str, namespace: str | None = None) -> str:
    ns = f", namespace: {namespace}" if namespace else ""
    return DEFAULTS.format(name=name, ns=ns, spec=textwrap.indent(textwrap.dedent(spec), "  "))


def test_layering_org_then_team_then_policy(tmp_path: Path) -> None:
    write(
        tmp_path,
        "org.yaml",
        defaults(
            "org",
            """\
        intervalSeconds: 30
        maxReplicas: 10
        behavior: {scaleDown: {stabilizationWindowSeconds: 600, selectPolicy: Min}}
        fallback: {failureThreshold: 5, behavior: static, replicas: 2}
    """,
        ),
    )
    write(
        tmp_path,
        "team-a/team.yaml",
        defaults(
            "team-a",
            """\
        intervalSeconds: 20
        behavior: {scaleDown: {stabilizationWindowSeconds: 120}}
    """,
            namespace="team-a",
        ),
    )
    policy_text = GOOD.replace("  maxReplicas: 40\n", "")  # maxReplicas comes from the org defaults
    write(tmp_path, "team-a/chat.yaml", policy_text)
    write(tmp_path, "team-b/other.yaml", GOOD.replace("team-a", "team-b"))
    result = load_policies([tmp_path])
    assert result.errors == []
    chat = next(p for p in result.policies if p.namespace == "team-a")
    assert chat.interval_s == 20  # team over org
    assert chat.max_replicas == 10  # org, as the policy says nothing
    assert chat.behavior.scale_down.stabilization_window_s == 120  # team over org
    assert chat.behavior.scale_down.select_policy is SelectPolicy.MIN  # org, merged key by key
    assert chat.fallback.behavior is FallbackBehavior.STATIC and chat.fallback.replicas == 2
    other = next(p for p in result.policies if p.namespace == "team-b")
    assert other.interval_s == 30 and other.max_replicas == 40


def test_namespaced_defaults_in_a_flat_folder_apply_only_to_their_namespace(tmp_path: Path) -> None:
    # A ConfigMap mount is flat: team defaults are told apart by metadata.namespace.
    write(tmp_path, "defaults-team-a.yaml", defaults("team-a", "intervalSeconds: 60", namespace="team-a"))
    write(tmp_path, "chat.yaml", GOOD)
    write(tmp_path, "other.yaml", GOOD.replace("team-a", "team-b"))
    result = load_policies([tmp_path])
    assert {p.key: p.interval_s for p in result.policies} == {"team-a/chat": 60, "team-b/chat": 15}


def test_broken_defaults_block_the_policies_they_cover_and_say_why(tmp_path: Path) -> None:
    write(tmp_path, "team-a/team.yaml", defaults("team-a", "intervalSecnds: 60"))
    write(tmp_path, "team-a/chat.yaml", GOOD)
    write(tmp_path, "team-b/chat.yaml", GOOD.replace("team-a", "team-b"))
    result = load_policies([tmp_path])
    assert [p.key for p in result.policies] == ["team-b/chat"]
    text = "\n".join(str(e) for e in result.errors)
    assert "spec.intervalSecnds = 60: unknown field (did you mean 'intervalSeconds'?)" in text
    assert "chat.yaml:1: not loaded: its defaults" in text and "team.yaml:1 are invalid" in text


def test_error_in_a_defaulted_value_points_at_the_defaults_file(tmp_path: Path) -> None:
    write(tmp_path, "org.yaml", defaults("org", "minReplicas: 50"))
    write(tmp_path, "team-a/chat.yaml", GOOD.replace("  minReplicas: 1\n", ""))
    (error,) = load_policies([tmp_path]).errors
    assert str(error).startswith(str(tmp_path / "team-a/chat.yaml")) or "chat.yaml" in error.file
    assert "spec.maxReplicas = 40: must be >= spec.minReplicas (50)" in str(error)


def test_single_file_with_root_gets_the_same_defaults_as_the_tree() -> None:
    alone = load_policy_file(REPO / "policies/team-a/chat.yaml", root=REPO / "policies")
    tree = next(p for p in load_policies([REPO / "policies"]).policies if p.key == "team-a/chat")
    assert policy_to_document(alone) == policy_to_document(tree)


def test_behavior_defaults_are_filled_per_field_like_the_api_server(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        GOOD + "  behavior: {scaleUp: {stabilizationWindowSeconds: 60}, scaleDown: {selectPolicy: Min}}\n",
    )
    policy = load_policy_file(path)
    up, down = policy.behavior.scale_up, policy.behavior.scale_down
    assert up.stabilization_window_s == 60 and up.select_policy is SelectPolicy.MAX
    assert [(r.type, r.value, r.period_s) for r in up.policies] == [(RuleType.PODS, 4, 15), (RuleType.PERCENT, 100, 15)]
    assert down.stabilization_window_s == 300 and down.select_policy is SelectPolicy.MIN
    assert [(r.type, r.value, r.period_s) for r in down.policies] == [(RuleType.PERCENT, 100, 15)]
    assert up.tolerance == down.tolerance == 0.1


def test_targets_are_read_as_the_hpa_reads_quantities(tmp_path: Path) -> None:
    text = GOOD.replace("averageValue: 5", "averageValue: 1500m") + (
        "    - name: p95\n      source: {preset: vllm.e2e_latency_p95}\n      target: {type: Value, value: '0.5'}\n"
        "    - name: gpu\n      source: {preset: dcgm.gpu_util}\n      target: {type: Utilization, averageUtilization: 70}\n"
    )
    policy = load_policy_file(write(tmp_path, "p.yaml", text))
    assert [(m.target.type, m.target.milli) for m in policy.metrics] == [
        (TargetType.AVERAGE_VALUE, 1500),
        (TargetType.VALUE, 500),
        (TargetType.UTILIZATION, 70000),
    ]


def test_load_policy_file_names_the_choices(tmp_path: Path) -> None:
    second = GOOD.replace("name: chat,", "name: chat2,").replace("name: chat-llm", "name: chat2-llm")
    path = write(tmp_path, "two.yaml", GOOD + "---\n" + second)
    with pytest.raises(ValueError, match=r"expected exactly one ScalingPolicy, found 2 \(chat, chat2\)"):
        load_policy_file(path)
    with pytest.raises(ValueError, match=r"no policy named 'nope' \(found: chat, chat2\)"):
        load_policy_file(path, "nope")
    assert load_policy_file(path, "chat2").name == "chat2"


def test_configmap_mount_layout_skips_hidden_entries(tmp_path: Path) -> None:
    # kubelet mounts a ConfigMap as ..data -> ..<timestamp>/ with top-level symlinks into ..data
    stamp = tmp_path / "..2026_11_28_10_00_00.1"
    stamp.mkdir()
    (stamp / "chat.yaml").write_text(GOOD)
    (tmp_path / "..data").symlink_to(stamp.name)
    (tmp_path / "chat.yaml").symlink_to("..data/chat.yaml")
    result = load_policies([tmp_path])
    assert result.errors == [] and [p.key for p in result.policies] == ["team-a/chat"]


def test_missing_path_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (error,) = load_policies([tmp_path / "nope"]).errors
    assert "no such file or directory" in str(error)


# ------------------------------------------------------------------ one owner per target (issue 16, item 3)


def test_two_policies_on_one_target_name_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autoscaler.cli import main

    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", "# the copy\n" + GOOD.replace("name: chat,", "name: chat-copy,"))
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "already has a policy" in line]
    assert line.startswith(f"{tmp_path / 'b.yaml'}:6: spec.target: Deployment team-a/chat-llm (apps/v1) ")
    assert f"team-a/chat at {tmp_path / 'a.yaml'}:5" in line
    result = load_policies([tmp_path])
    assert [p.key for p in result.policies] == ["team-a/chat"]  # the earlier one keeps loading
    assert [(c.policy.key, c.owner.key) for c in result.conflicts] == [("team-a/chat-copy", "team-a/chat")]


def test_the_later_claim_by_path_is_refused_whatever_the_argument_order(tmp_path: Path) -> None:
    a = write(tmp_path, "team-a/a.yaml", GOOD)
    b = write(tmp_path, "b.yaml", GOOD.replace("name: chat,", "name: other,"))
    for paths in ([a, b], [b, a]):
        result = load_policies(paths, root=tmp_path)
        assert [p.key for p in result.policies] == ["team-a/other"]  # b.yaml < team-a/a.yaml, folder by folder
        assert [c.policy.key for c in result.conflicts] == ["team-a/chat"]


def test_the_later_document_of_one_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "two.yaml", GOOD + "---\n" + GOOD.replace("name: chat,", "name: chat2,"))
    result = load_policies([path])
    assert [p.key for p in result.policies] == ["team-a/chat"]
    (error,) = result.errors
    assert str(error).startswith(f"{path}:17: spec.target: ") and f"{path}:5;" in str(error)


@pytest.mark.parametrize(
    ("change", "same"),
    [
        (("apiVersion: apps/v1,", "apiVersion: apps/v1beta2,"), True),  # the version does not matter
        (("kind: Deployment", "kind: deployment"), True),  # nor the kind's case
        (("kind: Deployment", "kind: StatefulSet"), False),
        (("apiVersion: apps/v1,", "apiVersion: example.com/v1,"), False),  # another group's Deployment
        (("namespace: team-a", "namespace: team-b"), False),
        (("name: chat-llm", "name: chat-llm-2"), False),
    ],
)
def test_what_counts_as_one_target(tmp_path: Path, change: tuple[str, str], same: bool) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD.replace("name: chat,", "name: chat-b,").replace(*change))
    result = load_policies([tmp_path])
    assert len(result.policies) == (1 if same else 2) and len(result.conflicts) == (1 if same else 0)


def test_a_kind_with_its_group_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", GOOD.replace("kind: Deployment", "kind: apps/v1 Deployment"))
    (error,) = load_policies([path]).errors
    assert "spec.target.kind = apps/v1 Deployment: must be a kind such as Deployment" in str(error)


def test_owners_keep_their_target_over_file_order(tmp_path: Path) -> None:
    from autoscaler.policy.loader import target_identity

    write(tmp_path, "a.yaml", GOOD.replace("name: chat,", "name: newcomer,"))
    write(tmp_path, "z.yaml", GOOD)
    plain = load_policies([tmp_path])
    assert [p.key for p in plain.policies] == ["team-a/newcomer"]
    owners = {target_identity(plain.policies[0]): "team-a/chat"}
    result = load_policies([tmp_path], owners=owners)
    assert [p.key for p in result.policies] == ["team-a/chat"]
    assert [c.policy.key for c in result.conflicts] == ["team-a/newcomer"]


def test_a_metric_may_not_take_the_slo_proposals_name(tmp_path: Path) -> None:
    """Every decision names an SLO policy's own proposal "slo"; a metric of that name would collide."""
    path = tmp_path / "p.yaml"
    path.write_text("""apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: p, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: d}
  maxReplicas: 4
  metrics:
    - name: slo
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 5}
""")
    result = load_policies([path])
    assert [str(e).split(": ", 1)[1] for e in result.errors] == [
        "spec.metrics[0].name = slo: is reserved: a decision names the SLO's own proposal so; choose another name"]


def test_keda_habits_are_understood_or_pointed_to_our_names(tmp_path: Path) -> None:
    """Issue 14: a KEDA user's fallback means what it means in KEDA; KEDA's field names get a pointer."""
    head = """apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: p, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: d}
  maxReplicas: 10
  metrics:
    - name: queue
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 5}
"""
    path = tmp_path / "p.yaml"
    path.write_text(head + "  fallback: {failureThreshold: 3, replicas: 6}\n")
    [policy] = load_policies([path]).policies
    assert (policy.fallback.behavior.value, policy.fallback.replicas) == ("static", 6)  # KEDA's default behavior
    path.write_text(head + "  fallback: {behavior: currentReplicas}\n")
    [policy] = load_policies([path]).policies
    assert policy.fallback.behavior.value == "hold"
    path.write_text(head + "  pollingInterval: 15\n  cooldownPeriod: 300\n  minReplicaCount: 1\n")
    errors = [str(e) for e in load_policies([path]).errors]
    assert any("spec.pollingInterval = 15: KEDA's pollingInterval is spec.intervalSeconds here" in e for e in errors)
    assert any("spec.cooldownPeriod = 300: KEDA's cooldownPeriod" in e for e in errors)
    assert any("spec.minReplicaCount = 1: KEDA's minReplicaCount is spec.minReplicas here" in e for e in errors)
