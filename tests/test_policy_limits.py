"""The loader cannot be crashed or exhausted (issue 16, item 4), one test per hostile case.

Every case is a file dropped next to a good one: the good policy still loads, the bad file gives clean
``file:line: message`` errors (``file: message`` when the file as a whole is refused), and nothing
raises. On the code before this change each case either raised (a traceback that stopped ``run`` at
start and froze hot reload for every team), blocked, ate memory, or was accepted although invalid.

Cases:
* text: NUL, form feed, escape characters; invalid UTF-8; a file name with a newline;
* numbers: a 5000-digit integer, a huge hex integer, ``"1e1000000"`` and ``1e1000000``,
  ``tolerance: "1e999999"``; an empty ``averageValue:``; ``kind:`` as a mapping;
* structure: ~1000-deep block and flow nesting, a recursive anchor, the "billion laughs", too many
  aliases, documents, or bytes; duplicate and undefined anchors; unsupported tags; a bad timestamp;
* files: a link to ``/dev/zero``, a FIFO, a link out of the policy root, too many files, too many bytes
  in total;
* ranges: every replica count is int32; thresholds, spares, tolerances, utilizations, rule values,
  failure thresholds and pods per replica are bounded;
* in the service: a hostile file dropped in at runtime leaves the other files loading and reloading.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from autoscaler.policy import load_policies, loader
from autoscaler.policy.reader import MAX_ALIASES, MAX_DEPTH, MAX_DOCUMENTS, MAX_FILE_BYTES, MAX_NODES
from autoscaler.policy.schema import INT32_MAX
from autoscaler.service.policies import PolicyDirectory

POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata:
  name: {name}
  namespace: team-a
spec:
  target: {{apiVersion: apps/v1, kind: Deployment, name: {name}-llm}}
  minReplicas: 1
  maxReplicas: 40
  metrics:
    - name: queue
      source: {{preset: vllm.queue_depth}}
      target:
        type: AverageValue
        averageValue: 5
"""
BAD = POLICY.format(name="bad")
GOOD = POLICY.format(name="good")
LINE = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+): \S")


def load_next_to_good(tmp_path: Path, content: str | bytes, name: str = "bad.yaml") -> list[str]:
    """Load a folder holding a good policy and ``content``; the good one must load. The bad file's
    errors, as printed."""
    (tmp_path / "good.yaml").write_text(GOOD)
    bad = tmp_path / name
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    started = time.monotonic()
    result = load_policies([tmp_path])
    assert time.monotonic() - started < 10
    assert [p.key for p in result.policies] == ["team-a/good"], result.errors
    assert result.errors and all(e.file != str(tmp_path / "good.yaml") for e in result.errors)
    assert all(e.message for e in result.errors)
    assert not any("internal error" in e.message for e in result.errors)
    return [str(e) for e in result.errors]


def one_error(tmp_path: Path, content: str | bytes, line: int | None, fragment: str) -> str:
    (error,) = load_next_to_good(tmp_path, content)
    if line is None:
        assert error.startswith(f"{tmp_path / 'bad.yaml'}: "), error
    else:
        match = LINE.match(error)
        assert match and match["file"] == str(tmp_path / "bad.yaml") and int(match["line"]) == line, error
    assert fragment in error, error
    return error


# ------------------------------------------------------------------ text


@pytest.mark.parametrize(
    ("char", "name"), [("\x00", "NUL"), ("\x0c", "form feed"), ("\x1b", "escape"), ("\x07", "a control character")]
)
def test_control_characters(tmp_path: Path, char: str, name: str) -> None:
    one_error(tmp_path, BAD.replace("minReplicas: 1", f"minReplicas: 1{char}"), 8, f"({name}) at column 17")


def test_invalid_utf8(tmp_path: Path) -> None:
    one_error(tmp_path, BAD.encode().replace(b"bad-llm", b"bad-\xff\xfe"), 7, "not UTF-8 text: byte 0xff")


def test_escaped_control_characters_in_values_are_printed_escaped(tmp_path: Path) -> None:
    error = one_error(tmp_path, BAD.replace("name: bad\n", 'name: "\\e[31mred\\0"\n'), 4, "must be a DNS subdomain")
    assert "\x1b" not in error and "\x00" not in error and "\\x1b[31mred\\x00" in error


def test_file_name_with_a_newline_is_printed_escaped(tmp_path: Path) -> None:
    (error,) = load_next_to_good(tmp_path, BAD.replace("maxReplicas: 40", "maxReplicas: 0"), "bad\nname.yaml")
    assert "\n" not in error and "bad\\nname.yaml:9: spec.maxReplicas = 0" in error


# ------------------------------------------------------------------ numbers


def test_five_thousand_digit_integer(tmp_path: Path) -> None:
    one_error(tmp_path, BAD.replace("maxReplicas: 40", "maxReplicas: " + "9" * 5000), 9, "too large for any field")


def test_huge_hex_integer(tmp_path: Path) -> None:
    one_error(tmp_path, BAD.replace("maxReplicas: 40", "maxReplicas: 0x" + "f" * 4000), 9, "too large for any field")


@pytest.mark.parametrize("value", ['"1e1000000"', "1e1000000", "1e999999", '"-1e1000000"', "1.0e+999999"])
def test_huge_exponents(tmp_path: Path, value: str) -> None:
    error = one_error(tmp_path, BAD.replace("averageValue: 5", f"averageValue: {value}"), 15, "spec.metrics[0]")
    assert re.search(r"must be (<= 1000000000000000|> 0|a number or a quantity string)", error), error


def test_tolerance_1e999999(tmp_path: Path) -> None:
    text = BAD + '  behavior: {scaleDown: {tolerance: "1e999999"}}\n'
    one_error(tmp_path, text, 16, 'spec.behavior.scaleDown.tolerance = 1e999999: must be <= 1')


def test_empty_average_value(tmp_path: Path) -> None:
    one_error(tmp_path, BAD.replace("averageValue: 5", "averageValue:"), 15, "averageValue = null: must be a number")


def test_kind_as_a_mapping(tmp_path: Path) -> None:
    one_error(tmp_path, BAD.replace("kind: ScalingPolicy", "kind: {a: 1}"), 2, "kind = {a: 1}: must be one of")


def test_metadata_and_target_of_the_wrong_type(tmp_path: Path) -> None:
    text = BAD.replace("metadata:\n  name: bad\n  namespace: team-a\n", "metadata: [1, 2]\n")
    assert any("metadata = [1, 2]: must be a mapping" in e for e in load_next_to_good(tmp_path, text))
    text = BAD.replace("kind: Deployment", "kind: {x: 1}")
    one_error(tmp_path, text, 7, "spec.target.kind = {x: 1}: must be a string, not a mapping")


# ------------------------------------------------------------------ structure


def test_deep_block_nesting(tmp_path: Path) -> None:
    deep = "".join("  " * i + f"k{i}:\n" for i in range(1000)) + "  " * 1000 + "v\n"
    text = BAD + "  extra:\n" + "\n".join("  " + line for line in deep.splitlines()) + "\n"
    # `extra:` is on line 16 and one level opens per line below it: the one past the limit is refused
    one_error(tmp_path, text, 16 + MAX_DEPTH, f"nested more than {MAX_DEPTH} levels deep")


def test_deep_flow_nesting(tmp_path: Path) -> None:
    (error,) = load_next_to_good(tmp_path, BAD + "  extra: " + "[" * 1000 + "]" * 1000 + "\n")
    assert LINE.match(error) and "nest" in error, error


def test_recursive_anchor(tmp_path: Path) -> None:
    one_error(tmp_path, BAD + "  extra: &a [*a]\n", 16, "recursive alias *a")


def test_recursive_anchor_in_a_mapping(tmp_path: Path) -> None:
    one_error(tmp_path, BAD + "  extra: &a {b: *a}\n", 16, "recursive alias *a")


def test_billion_laughs(tmp_path: Path) -> None:
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(9)
    )
    assert len(bomb) < 700
    started = time.monotonic()
    one_error(tmp_path, bomb, 6, f"more than {MAX_NODES} values with aliases expanded")
    assert time.monotonic() - started < 2


def test_too_many_aliases(tmp_path: Path) -> None:
    text = "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]\n"
    one_error(tmp_path, text, 2, f"more than {MAX_ALIASES} aliases")


def test_too_many_documents(tmp_path: Path) -> None:
    one_error(tmp_path, "--- ~\n" * (MAX_DOCUMENTS + 1), MAX_DOCUMENTS + 1, f"more than {MAX_DOCUMENTS} documents")


def test_file_over_1_mib(tmp_path: Path) -> None:
    one_error(tmp_path, BAD + "#" * MAX_FILE_BYTES + "\n", None, f"a policy file may have at most {MAX_FILE_BYTES}")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a: &x 1\nb: &x 2\n", 2, "duplicate anchor &x"),
        ("a: *nope\n", 1, "undefined alias *nope"),
        ("a: !!python/object/apply:os.system [ls]\n", 1, "unsupported tag"),
        ("a: !!binary aGVsbG8=\n", 1, "unsupported tag"),
        ("a: !!set {x}\n", 1, "unsupported tag"),
        ("a: !custom x\n", 1, "unsupported tag"),
        ("a: 2001-13-45\n", 1, "invalid timestamp"),
        ("? [a, b]\n: c\n", 1, "a mapping key must be a plain value"),
        ("a: 1\na: 2\n", 2, "a: duplicate key"),
        ("a: &m {x: 1}\nb: {<<: [*m, 1]}\n", 2, "a merge key (<<) takes a mapping"),
    ],
)
def test_other_yaml_hazards(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    one_error(tmp_path, text, line, fragment)


def test_merge_keys_still_work(tmp_path: Path) -> None:
    text = BAD.replace("spec:\n", "spec:\n  <<: {minReplicas: 2, maxReplicas: 9, intervalSeconds: 30}\n", 1)
    (tmp_path / "m.yaml").write_text(text)
    result = load_policies([tmp_path / "m.yaml"])
    assert result.errors == []
    (policy,) = result.policies
    assert (policy.min_replicas, policy.max_replicas, policy.interval_s) == (1, 40, 30)  # own keys win


def test_anchors_are_per_document(tmp_path: Path) -> None:
    text = "x: &d {minReplicas: 2}\n---\n" + BAD.replace("  minReplicas: 1\n", "  <<: *d\n")
    (tmp_path / "m.yaml").write_text(text)
    errors = [str(e) for e in load_policies([tmp_path / "m.yaml"]).errors]
    assert f"{tmp_path / 'm.yaml'}:10: undefined alias *d" in errors


# ------------------------------------------------------------------ files


def test_link_to_dev_zero_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    started = time.monotonic()
    result = load_policies([tmp_path])
    assert time.monotonic() - started < 2
    assert [p.key for p in result.policies] == ["team-a/good"]
    (error,) = result.errors
    assert str(error).startswith(f"{tmp_path / 'zero.yaml'}: not read: a link out of the policy root")


def test_dev_zero_given_directly_is_not_read(tmp_path: Path) -> None:
    (error,) = load_policies(["/dev/zero"]).errors
    assert "not a regular file (a character device)" in str(error)


def test_fifo_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "bad.yaml")  # opening it for reading would block until a writer came
    (tmp_path / "good.yaml").write_text(GOOD)
    result = load_policies([tmp_path])
    assert [p.key for p in result.policies] == ["team-a/good"]
    assert [str(e) for e in result.errors] == [f"{tmp_path / 'bad.yaml'}: cannot read file: not a regular file (a FIFO)"]


def test_link_out_of_the_root_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text(BAD)
    root = tmp_path / "root"
    root.mkdir()
    (root / "good.yaml").write_text(GOOD)
    (root / "bad.yaml").symlink_to(outside / "secret.yaml")
    result = load_policies([root])
    assert [p.key for p in result.policies] == ["team-a/good"]
    (error,) = result.errors
    assert "not read: a link out of the policy root" in str(error)


def test_link_inside_the_root_is_read(tmp_path: Path) -> None:
    (tmp_path / "..real").mkdir()  # as a ConfigMap's ..data
    (tmp_path / "..real" / "p.yaml").write_text(BAD)
    (tmp_path / "p.yaml").symlink_to("..real/p.yaml")
    result = load_policies([tmp_path])
    assert result.errors == [] and [p.key for p in result.policies] == ["team-a/bad"]


def test_too_many_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_FILES", 3)
    for i in range(5):
        (tmp_path / f"p{i}.yaml").write_text(POLICY.format(name=f"p{i}"))
    result = load_policies([tmp_path])
    assert [p.name for p in result.policies] == ["p0", "p1", "p2"]
    assert [(Path(e.file).name, e.message) for e in result.errors] == [
        (f"p{i}.yaml", "not read: more than 3 policy files in one load") for i in (3, 4)
    ]
    assert {"p3.yaml", "p4.yaml"} <= {Path(f).name for f in result.failed_files}


def test_too_many_bytes_in_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "MAX_TOTAL_BYTES", 2 * len(GOOD) + 10)
    for i in range(3):
        (tmp_path / f"p{i}.yaml").write_text(POLICY.format(name=f"p{i}"))
    result = load_policies([tmp_path])
    assert [p.name for p in result.policies] == ["p0", "p1"]
    (error,) = result.errors
    assert "p2.yaml: not read: the policy files of one load exceed" in str(error)


# ------------------------------------------------------------------ ranges


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (("maxReplicas: 40", f"maxReplicas: {INT32_MAX + 1}"), f"spec.maxReplicas = {INT32_MAX + 1}: must be <= {INT32_MAX}"),
        (("maxReplicas: 40", "maxReplicas: 1000000000000000000000000000000"), f"must be <= {INT32_MAX}"),
        (("minReplicas: 1", f"minReplicas: {INT32_MAX + 1}"), f"spec.minReplicas = {INT32_MAX + 1}: must be <= {INT32_MAX}"),
        (("averageValue: 5", "averageValue: 100000000000000000000"), "averageValue = 100000000000000000000: must be <= 1000000000000000"),
        (("averageValue: 5", "averageValue: 1e20"), "must be <= 1000000000000000"),
        (("averageValue: 5", 'averageValue: "2E"'), "must be <= 1000000000000000"),
        (("averageValue: 5", "averageValue: .inf"), "must be a number or a quantity string"),
        (("averageValue: 5", "averageValue: .nan"), "must be a number or a quantity string"),
        (("type: AverageValue\n        averageValue: 5", "type: Value\n        value: 1e30"), "value = 1e30: must be <= 1000000000000000"),
    ],
)  # fmt: skip
def test_ranges(tmp_path: Path, edit: tuple[str, str], fragment: str) -> None:
    errors = load_next_to_good(tmp_path, BAD.replace(*edit))
    assert any(fragment in e for e in errors), errors


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("behavior: {scaleUp: {tolerance: 1.5}}", "spec.behavior.scaleUp.tolerance = 1.5: must be <= 1"),
        ("behavior: {scaleUp: {tolerance: -0.1}}", "must be >= 0"),
        ("behavior: {scaleUp: {tolerance: .inf}}", "must be a number or a quantity string"),
        ("behavior: {scaleUp: {stabilizationWindowSeconds: 3601}}", "must be <= 3600"),
        ("behavior: {scaleUp: {policies: [{type: Pods, value: 100000000000000000000, periodSeconds: 15}]}}",
         f"value = 100000000000000000000: must be <= {INT32_MAX}"),
        ("behavior: {scaleUp: {policies: [{type: Pods, value: 4, periodSeconds: 1801}]}}", "must be <= 1800"),
        ("fallback: {failureThreshold: 100000000000000000000, behavior: hold}", "must be <= 10000"),
        ("fallback: {behavior: static, replicas: 100000000000000000000}", f"must be <= {INT32_MAX}"),
        ("intervalSeconds: 3601", "must be <= 3600"),
        ("slo: {objective: ttft, percentile: 95, seconds: 1.0e+30}", "must be <= 3600"),
        ("slo: {objective: ttft, percentile: 95, seconds: 2, concurrencyPerReplica: 1.0e+20}", "must be <= 100000"),
        ("slo: {objective: ttft, percentile: 95, seconds: 2, historyDays: 1.0e+10}", "must be <= 60"),
        ("slo: {objective: ttft, percentile: 95, seconds: 2}\n  warmPool: {minSpare: 100000000000000000000}",
         f"must be <= {INT32_MAX}"),
        ("slo: {objective: ttft, percentile: 95, seconds: 2}\n  warmPool: {minSpare: 1, maxSpare: 100000000000000000000}",
         f"must be <= {INT32_MAX}"),
        ("coldStart: {loadTimeSeconds: 1.0e+30}", "must be <= 7200"),
        ("predictive: {metric: queue, quantile: 2}", "must be <= 0.999"),
        ("predictive: {metric: queue}\n  warmPool: {placeholder: {name: pool, podsPerReplica: 100000000000}}",
         "must be <= 1000"),
        ("metrics:\n" + "".join(f"    - {{name: m{i}, source: {{preset: vllm.queue_depth}}, target: {{type: AverageValue, averageValue: 5}}}}\n" for i in range(65)),
         "must have at most 64 item(s)"),
    ],
)  # fmt: skip
def test_every_number_is_bounded(tmp_path: Path, extra: str, fragment: str) -> None:
    text = BAD + f"  {extra}\n"
    if extra.startswith("metrics:"):
        text = BAD.split("  metrics:\n")[0] + f"  {extra}"
    errors = load_next_to_good(tmp_path, text)
    assert any(fragment in e for e in errors), errors


def test_utilization_target_is_a_percentage(tmp_path: Path) -> None:
    text = BAD.replace("preset: vllm.queue_depth", "preset: dcgm.gpu_util").replace(
        "type: AverageValue\n        averageValue: 5", "type: Utilization\n        averageUtilization: 1000000000000000000000000000000"
    )
    one_error(tmp_path, text, 15, "averageUtilization = 1000000000000000000000000000000: must be <= 100")


def test_largest_valid_values_load(tmp_path: Path) -> None:
    text = BAD.replace("maxReplicas: 40", f"maxReplicas: {INT32_MAX}").replace("averageValue: 5", 'averageValue: "1P"')
    text += "  behavior: {scaleDown: {tolerance: 1}}\n  fallback: {behavior: static, replicas: 2147483647}\n"
    (tmp_path / "p.yaml").write_text(text)
    result = load_policies([tmp_path])
    assert result.errors == []
    (policy,) = result.policies
    assert policy.max_replicas == INT32_MAX and policy.metrics[0].target.milli == 10**18


# ------------------------------------------------------------------ in the service


HOSTILE = {
    "nul": BAD.replace("minReplicas: 1", "minReplicas: 1\x00"),
    "bigint": BAD.replace("maxReplicas: 40", "maxReplicas: " + "9" * 5000),
    "empty-average-value": BAD.replace("averageValue: 5", "averageValue:"),
    "kind-mapping": BAD.replace("kind: ScalingPolicy", "kind: {a: 1}"),
    "deep": "a: " + "[" * 1000 + "]" * 1000 + "\n",
    "recursive": "a: &a [*a]\n",
    "laughs": 'a: &a ["l","l","l","l","l","l","l","l","l"]\n'
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(9)),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_file_at_runtime_keeps_the_others_reloading(tmp_path: Path, case: str) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    source = PolicyDirectory(tmp_path)
    assert [p.key for p in source.reload().policies] == ["team-a/good"]
    (tmp_path / "bad.yaml").write_text(HOSTILE[case])
    result = source.reload()
    assert [p.key for p in result.policies] == ["team-a/good"] and result.errors
    (tmp_path / "good.yaml").write_text(GOOD.replace("maxReplicas: 40", "maxReplicas: 30"))
    result = source.reload()
    assert result.changed and [p.max_replicas for p in result.policies] == [30]  # another team's edit applies
