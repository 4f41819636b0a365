"""A bounded property test of the policy loader (issue 16, item 6): whatever a file holds, loading it
returns policies and problems, never raises; every problem names its file and says what is wrong on one
line; and nothing invalid is accepted (int32 replicas, every number in its bound, one policy per
target: the invariants of ``scripts/fuzz_policies.py``, which runs the same checks on 6,000 cases
under memory and time limits: ``make fuzz``).

Inputs: the shipped policies mutated as text (tokens, control characters), as values (any YAML value
at any field) and as raw bytes; seeded with the crash classes found by hand, each an ``@example`` that
must also be refused. Derandomized (the same examples on every run) and bounded to a few seconds.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoscaler.policy import load_policies

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("fuzz_policies", REPO / "scripts" / "fuzz_policies.py")
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("fuzz_policies", fuzz)
_spec.loader.exec_module(fuzz)

SEEDS = sorted(
    path.read_text()
    for root in (REPO / "policies", REPO / "tests" / "fixtures" / "policies")
    for path in root.rglob("*.yaml")
    if "kind: ScalingPolicy" in path.read_text()
)
CHAT = (REPO / "tests" / "fixtures" / "policies" / "team-a" / "chat.yaml").read_text()


def _laughs() -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**31 - 2, max_value=2**31 + 1)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(fuzz.INTERESTING[:60])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(fuzz.KEYS), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def value_mutations(draw: Any) -> bytes:
    docs = list(yaml.safe_load_all(draw(st.sampled_from(SEEDS))))
    for _ in range(draw(st.integers(1, 3))):
        doc = docs[0]
        paths = [p for p in fuzz._paths(doc) if p]
        path = paths[draw(st.integers(0, len(paths) - 1))]
        parent = fuzz._get(doc, path[:-1])
        if draw(st.booleans()) and isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=draw(st.sampled_from([None, False, True])))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def text_mutations(draw: Any) -> bytes:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        inserted = draw(st.sampled_from(fuzz.TOKENS) | st.text(max_size=6))
        cut = draw(st.integers(0, 3))
        text = text[:at] + inserted + text[at + cut :]
    return text.encode("utf-8", "surrogatepass")


@settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(content=st.one_of(value_mutations(), text_mutations(), st.binary(max_size=400)), must_fail=st.just(False))
# The crash classes of issue 16: each raised, hung or exhausted memory, or was accepted.
@example(CHAT.replace("minReplicas: 1", "minReplicas: 1\x00").encode(), True)  # NUL
@example(CHAT.replace("spec:", "spec:\x0c").encode(), True)  # form feed
@example(CHAT.replace("maxReplicas: 40", "maxReplicas: " + "9" * 5000).encode(), True)  # 5000 digits
@example(CHAT.replace("averageValue: 5", 'averageValue: "1e1000000"').encode(), True)
@example(CHAT.replace("averageValue: 5", "averageValue: 1e1000000").encode(), True)
@example(CHAT.replace("target: {type: AverageValue, averageValue: 5}", "target:\n        type: AverageValue\n"
                      "        averageValue:").encode(), True)  # fmt: skip
@example(CHAT.replace("kind: ScalingPolicy", "kind: {a: 1}").encode(), True)  # kind as a mapping
@example(("a: " + "[" * 1000 + "]" * 1000 + "\n").encode(), True)  # deep flow nesting
@example(("".join("  " * i + f"k{i}:\n" for i in range(1000)) + "  " * 1000 + "v\n").encode(), True)  # deep block
@example(b"a: &a [*a]\n", True)  # recursive anchor
@example(CHAT.replace("spec:\n", "spec: &s\n  self: *s\n", 1).encode(), True)
@example(_laughs().encode(), True)  # billion laughs: 676 bytes, 10^9 values expanded
@example((CHAT + '  behavior: {scaleDown: {tolerance: "1e999999"}}\n').encode(), True)
@example(CHAT.replace("maxReplicas: 40", "maxReplicas: 1000000000000000000000000000000").encode(), True)
@example(CHAT.replace("maxReplicas: 40", "maxReplicas: 2147483648").encode(), True)
@example(CHAT.replace("averageValue: 5", "averageValue: 100000000000000000000").encode(), True)  # threshold 1e20
@example(CHAT.replace("averageUtilization: 70", "averageUtilization: 1000000000000000000000000000000").encode(), True)
@example((CHAT + "  fallback: {behavior: static, replicas: 100000000000000000000}\n").encode(), True)
@example((CHAT.replace("maxReplicas: 40", "maxReplicas: 40\n  slo: {objective: ttft, percentile: 95, seconds: 2}")
          + "  warmPool: {minSpare: 100000000000000000000}\n").encode(), True)  # fmt: skip
@example(b"--- ~\n" * 1001, True)  # documents
@example(CHAT.encode().replace(b"chat-llm", b"chat-\xff"), True)  # not UTF-8
@example(b"a: !!python/object/apply:os.system [echo]\n", True)
@example(CHAT.replace("  name: chat\n", "  name: 2001-13-45\n").encode(), True)  # a timestamp that is no date
def test_loader_never_raises_and_accepts_nothing_invalid(content: bytes, must_fail: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.yaml"
        path.write_bytes(content)
        result = load_policies([folder])
    for problem in result.errors:
        text = str(problem)
        assert problem.file and problem.message and "\n" not in text, text
        assert problem.line is None or problem.line >= 1, text
        assert "internal error" not in problem.message, text
    assert fuzz.report_problems(result.errors) == []
    assert fuzz.violations(result) == []
    if must_fail:
        assert result.errors and not result.policies


def test_the_seeds_are_valid() -> None:
    """The mutations start from valid policies (else the test would only ever see broken ones)."""
    result = load_policies([REPO / "policies"])
    assert result.errors == [] and fuzz.violations(result) == []
