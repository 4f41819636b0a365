#!/usr/bin/env python3
"""Fuzz the policy loader the way `inference-autoscaler validate` runs it (`make fuzz`).

Generates cases (default 6000, deterministic from ``--seed``): mutations of the shipped policy trees
(``policies/``, ``tests/fixtures/policies/``) at the text, byte and value level, and the hostile
classes of issue 16 (control characters, huge numbers, deep nesting, alias bombs and recursive
anchors, too many documents or aliases, oversized files, devices, FIFOs and links out of the root,
out-of-range numbers, two policies on one target). Each case is a folder; worker processes (one per
core) run ``validate`` on each, in-process, under ``RLIMIT_AS`` = 1 GiB and a 10 s alarm per case, and
report before and after each case, so a crash, a hang or a memory blow-up is attributed to its case
even when it kills the worker (the parent then restarts one for the rest of the batch).

Counted per case:
* crash: an exception out of ``validate`` (a traceback), an exit status other than 0/1, a worker that
  died, or a problem reading "internal error" (the loader's last-resort guard fired: a defect);
* hang: more than 10 s;
* over 1 GiB: a MemoryError under the limit (or a worker killed by the kernel);
* invalid accepted: a hostile case (known invalid) that validates, or an accepted policy that breaks an
  invariant (:func:`violations`: int32 replicas, every number in its bounds, one policy per target...);
* bad report: a problem without a file or message, or printed on more than one line.

Exit status 0 only when all of these are 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

INT32_MAX = 2**31 - 1
CASE_TIMEOUT_S = 10.0
MEMORY_LIMIT = 1 << 30
STATUSES = ("ok", "crash", "hang", "memory", "invalid-accepted", "bad-report")

# ----------------------------------------------------------------------------------- invariants


def violations(result: Any) -> list[str]:
    """What no accepted policy may be: every count int32 and ordered, every number finite and in its
    schema bound, every name well formed, and no two accepted policies on one target."""
    from autoscaler.policy.loader import target_identity

    out: list[str] = []
    seen_keys: set[str] = set()
    seen_targets: dict[Any, str] = {}
    for policy in result.policies:
        out.extend(f"{policy.key}: {v}" for v in policy_violations(policy))
        if policy.key in seen_keys:
            out.append(f"{policy.key}: loaded twice")
        seen_keys.add(policy.key)
        identity = target_identity(policy)
        if identity in seen_targets:
            out.append(f"{policy.key}: same target as {seen_targets[identity]}")
        seen_targets[identity] = policy.key
    return out


def policy_violations(policy: Any) -> list[str]:
    out: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            out.append(what)

    def integer(value: Any, low: int, high: int, what: str) -> None:
        need(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high, f"{what} = {value!r}")

    def number(value: Any, low: float, high: float, what: str, *, open_low: bool = False) -> None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (low < value if open_low else low <= value) and value <= high
        need(ok, f"{what} = {value!r}")

    integer(policy.min_replicas, 0, INT32_MAX, "minReplicas")
    integer(policy.max_replicas, 1, INT32_MAX, "maxReplicas")
    need(policy.min_replicas <= policy.max_replicas, "minReplicas > maxReplicas")
    integer(policy.interval_s, 1, 3600, "intervalSeconds")
    for direction in (policy.behavior.scale_up, policy.behavior.scale_down):
        integer(direction.stabilization_window_s, 0, 3600, "stabilizationWindowSeconds")
        number(direction.tolerance, 0, 1, "tolerance")
        need(1 <= len(direction.policies) <= 16, "behavior policies")
        for rule in direction.policies:
            integer(rule.value, 1, INT32_MAX, "rule value")
            integer(rule.period_s, 1, 1800, "periodSeconds")
    integer(policy.fallback.failure_threshold, 0, 10000, "failureThreshold")
    if policy.fallback.replicas is not None:
        integer(policy.fallback.replicas, policy.min_replicas, policy.max_replicas, "fallback.replicas")
    need(len(policy.metrics) <= 64, "metrics count")
    for metric in policy.metrics:
        high = 100_000 if metric.target.type.value == "Utilization" else 10**18
        integer(metric.target.milli, 1, high, f"metric {metric.name} target")
    if policy.slo is not None:
        slo = policy.slo
        number(slo.percentile, 50, 99.9, "slo.percentile")
        number(slo.bound_s, 0, 3600, "slo.seconds", open_low=True)
        number(slo.forecast_quantile, 0.5, 0.999, "slo.forecastQuantile")
        number(slo.history_days, 0, 60, "slo.historyDays", open_low=True)
        if slo.concurrency_prior is not None:
            number(slo.concurrency_prior, 0, 100000, "slo.concurrencyPerReplica", open_low=True)
    cold = policy.cold_start
    if cold.load_time_s is not None:
        number(cold.load_time_s, 0, 7200, "coldStart.loadTimeSeconds", open_low=True)
    number(cold.scheduling_delay_s, 0, 3600, "coldStart.schedulingDelaySeconds")
    number(cold.load_time_quantile, 0, 1, "coldStart.loadTimeQuantile", open_low=True)
    if policy.predictive is not None:
        number(policy.predictive.quantile, 0.5, 0.999, "predictive.quantile")
        number(policy.predictive.history_days, 0, 60, "predictive.historyDays", open_low=True)
    if policy.warm_pool is not None:
        integer(policy.warm_pool.min_spare, 0, INT32_MAX, "warmPool.minSpare")
        integer(policy.warm_pool.max_spare, policy.warm_pool.min_spare, INT32_MAX, "warmPool.maxSpare")
        if policy.warm_pool.placeholder is not None:
            integer(policy.warm_pool.placeholder.pods_per_replica, 1, 1000, "placeholder.podsPerReplica")
    for text, what in ((policy.name, "name"), (policy.namespace, "namespace"), (policy.target.name, "target")):
        need(isinstance(text, str) and 0 < len(text) <= 253 and text.isprintable() and text == text.lower(), what)
    need(policy.target.kind.isalnum() or "-" in policy.target.kind, "target kind")
    return out


def report_problems(errors: Iterable[Any]) -> list[str]:
    """Problems that are not a clean ``file:line: message`` line."""
    out = []
    for error in errors:
        text = str(error)
        one_line = "\n" not in text and "\r" not in text
        line_ok = error.line is None or (isinstance(error.line, int) and error.line >= 1)
        if not (error.file and error.message and one_line and line_ok):
            out.append(repr(text[:200]))
    return out


# ----------------------------------------------------------------------------------- generation

INTERESTING: list[Any] = [
    0, -1, 1, 2, 15, 100, 3600, 3601, INT32_MAX, INT32_MAX + 1, -(2**31), 2**63, 10**20, 10**30, 10**100,
    0.5, 0.999, 1.5, 99.95, 1e308, -1e308, float("inf"), float("-inf"), float("nan"), -0.0, 5e-324,
    "", " ", "1e999999", "1e1000000", "-1e1000000", "1e-1000000", "9" * 5000, "500m", "2k", "1Ei", "8Ei",
    "0x1f", "1_000", "5 requests", "\x00", "\x1b[31m", "a\nb", "é", "🙂", "NaN", ".inf", "true", "null", "~",
    "ScalingPolicy", "PolicyDefaults", "apps/v1 Deployment", "Deployment", "deployment", "apps/v1beta2",
    "inference-autoscaler.io/v1alpha1", "x" * 300, "x" * 20000, "x" * 70000, "team-a", "chat-llm",
    None, True, False, [], {}, [1, 2], {"a": 1}, {"type": "Pods", "value": 1, "periodSeconds": 1},
    "Pods", "Percent", "Max", "Min", "Disabled", "hold", "static", "AverageValue", "Value", "Utilization",
    "vllm.queue_depth", "dcgm.gpu_util", "vllm.ttft_p95", "daily", "weekly", "patch", "shadow", "external",
]  # fmt: skip
KEYS = [
    "apiVersion", "kind", "metadata", "spec", "name", "namespace", "labels", "target", "minReplicas",
    "maxReplicas", "mode", "intervalSeconds", "metrics", "source", "preset", "query", "matchLabels", "type",
    "averageValue", "value", "averageUtilization", "behavior", "scaleUp", "scaleDown", "policies",
    "stabilizationWindowSeconds", "selectPolicy", "tolerance", "periodSeconds", "fallback",
    "failureThreshold", "replicas", "slo", "objective", "percentile", "seconds", "engine", "signal",
    "concurrencyPerReplica", "forecastQuantile", "seasonality", "historyDays", "coldStart",
    "loadTimeSeconds", "schedulingDelaySeconds", "loadTimeQuantile", "predictive", "enabled", "metric",
    "quantile", "warmPool", "minSpare", "maxSpare", "placeholder", "podsPerReplica", "wake", "<<", "unknownField",
]  # fmt: skip
TOKENS = [
    "&a ", "*a", "<<: *a\n", "!!python/object/apply:os.system ", "!!binary ", "!!set ", "!!omap ", "!custom ",
    "!!str ", "!!int ", "!!float ", "!!timestamp ", "? ", "--- ", "...\n", "{", "}", "[", "]", ",", ":", ": ",
    "- ", "\t", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "#", "'", '"', "|", ">", "\\", "\x00", "\x0c", "\x1b",
    "\x7f", "\x85", "\u2028", "\ufeff", "\ud800", "\r", "\r\n", "\n", "  ", "9" * 50, "1e999999", "&b [*a, *a]",
]  # fmt: skip
HOSTILE_MARK = "hostile"
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # for the trusted seeds only


@dataclass
class Case:
    index: int
    kind: str
    expect_invalid: bool = False


def _seeds() -> dict[str, dict[str, str]]:
    trees: dict[str, dict[str, str]] = {}
    for root in (REPO / "policies", REPO / "tests" / "fixtures" / "policies"):
        trees[root.relative_to(REPO).as_posix()] = {
            path.relative_to(root).as_posix(): path.read_text() for path in sorted(root.rglob("*.yaml"))
        }
    return trees


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.extend(_paths(item, (*prefix, index)))
    return out


def _get(value: Any, path: Sequence[Any]) -> Any:
    for part in path:
        value = value[part]
    return value


def _mutate_value(rng: random.Random, doc: Any) -> Any:
    paths = _paths(doc)
    path = rng.choice(paths)
    if not path:
        return rng.choice(INTERESTING) if rng.random() < 0.2 else doc
    parent = _get(doc, path[:-1])
    last = path[-1]
    op = rng.random()
    if op < 0.55:
        parent[last] = _interesting(rng)
    elif op < 0.65 and isinstance(parent, dict):
        del parent[last]
    elif op < 0.75 and isinstance(parent, dict):
        parent[rng.choice(KEYS)] = _interesting(rng)
    elif op < 0.82:
        parent[last] = [parent[last]] if rng.random() < 0.5 else {rng.choice(KEYS): parent[last]}
    elif op < 0.88:
        nested: Any = parent[last]
        for _ in range(rng.choice([5, 31, 33, 60])):
            nested = [nested] if rng.random() < 0.5 else {"k": nested}
        parent[last] = nested
    elif op < 0.94 and isinstance(parent, list):
        parent.extend([parent[last]] * rng.choice([1, 10, 70]))
    else:
        value = parent[last]
        if isinstance(value, int) and not isinstance(value, bool):
            parent[last] = value * rng.choice([-1, 10, 1000, 2**31, 10**30])
        elif isinstance(value, str):
            parent[last] = value + rng.choice(["0", "x", "\x00", "e999999", "Ei", " "]) * rng.choice([1, 5])
        else:
            parent[last] = _interesting(rng)
    return doc


def _interesting(rng: random.Random) -> Any:
    value = rng.choice(INTERESTING)
    return json.loads(json.dumps(value)) if isinstance(value, list | dict) else value


def _dump(rng: random.Random, docs: list[Any]) -> str:
    flow = rng.choice([None, False, True])
    try:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        return yaml.dump_all(
            docs, Dumper=dumper, sort_keys=False, default_flow_style=flow, allow_unicode=rng.random() < 0.5
        )
    except (yaml.YAMLError, RecursionError, ValueError):
        return "\n"


def _mutate_text(rng: random.Random, text: str) -> str:
    if not text:
        return rng.choice(TOKENS)
    pos = rng.randrange(len(text) + 1)
    op = rng.random()
    if op < 0.35:
        return text[:pos] + rng.choice(TOKENS) + text[pos:]
    if op < 0.5:
        return text[:pos] + text[pos + rng.randrange(1, 40) :]
    lines = text.splitlines(keepends=True)
    if op < 0.6 and lines:
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i] * rng.choice([1, 2, 50]))
        return "".join(lines)
    if op < 0.7 and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)
    if op < 0.8 and lines:
        i = rng.randrange(len(lines))
        lines[i] = " " * rng.choice([0, 1, 3, 7, 40]) + lines[i].lstrip(" ")
        return "".join(lines)
    if op < 0.88:
        return text[:pos]
    code = rng.choice([rng.randrange(0, 0x20), rng.randrange(0x7F, 0xA0), rng.randrange(0x100, 0x3000)])
    return text[:pos] + chr(code) + text[pos:]


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def _laughs(width: int, depth: int, *, mapping: bool = False, merge: bool = False) -> str:
    names = [f"l{i}" for i in range(depth + 1)]
    if mapping:
        lines = [f"{names[0]}: &{names[0]} " + "{" + ", ".join(f"k{i}: lol" for i in range(width)) + "}"]
    else:
        lines = [f"{names[0]}: &{names[0]} [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, depth + 1):
        if merge:
            merged = ", ".join([f"*{names[i - 1]}"] * width)
            lines.append(f"{names[i]}: &{names[i]} " + "{<<: [" + merged + "], own: 1}")
        else:
            lines.append(f"{names[i]}: &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * width) + "]")
    return "\n".join(lines) + "\n"


def hostile_texts(chat: str) -> list[tuple[str, str | bytes]]:
    """(name, content): the crash classes of issue 16 and their neighbours; all are invalid."""
    out: list[tuple[str, str | bytes]] = []
    for char in ("\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x9b", "\ufffe", "\ud800"):
        out.append((f"control-{ord(char):x}", chat.replace("minReplicas:", f"minReplicas:{char}", 1)))
    out += [
        ("5000-digit-int", chat.replace("maxReplicas: 40", "maxReplicas: " + "9" * 5000)),
        ("4301-digit-int", chat.replace("maxReplicas: 40", "maxReplicas: " + "9" * 4301)),
        ("hex-int", chat.replace("maxReplicas: 40", "maxReplicas: 0x" + "f" * 4000)),
        ("sexagesimal-int", chat.replace("maxReplicas: 40", "maxReplicas: " + ":".join(["59"] * 40))),
        ("quoted-1e1000000", chat.replace("averageValue: 5", 'averageValue: "1e1000000"')),
        ("plain-1e1000000", chat.replace("averageValue: 5", "averageValue: 1e1000000")),
        ("exponent-5000-digits", chat.replace("averageValue: 5", 'averageValue: "1e' + "9" * 5000 + '"')),
        ("float-1e999999", chat.replace("averageValue: 5", "averageValue: 1.0e+999999")),
        ("tolerance-1e999999", chat + '  behavior: {scaleDown: {tolerance: "1e999999"}}\n'),
        ("empty-average-value", chat.replace(  # block style: `averageValue:` with nothing after it
            "target: {type: AverageValue, averageValue: 5}", "target:\n        type: AverageValue\n"
            "        averageValue:")),
        ("kind-mapping", chat.replace("kind: ScalingPolicy", "kind: {a: 1}")),
        ("kind-list", chat.replace("kind: ScalingPolicy", "kind: [a]")),
        ("target-kind-mapping", chat.replace("kind: Deployment", "kind: {x: 1}")),
        ("deep-flow-1000", "a: " + "[" * 1000 + "]" * 1000 + "\n"),
        ("deep-flow-100000", "a: " + "[" * 100000 + "]" * 100000 + "\n"),
        ("deep-map-flow-1000", "a: " + "{a: " * 1000 + "1" + "}" * 1000 + "\n"),
        ("deep-block-1000", "".join("  " * i + f"k{i}:\n" for i in range(1000)) + "  " * 1000 + "v\n"),
        ("deep-seq-block-1000", "".join("  " * i + "-\n" for i in range(1000)) + "  " * 1000 + "x\n"),
        ("recursive-seq", "a: &a [*a]\n"),
        ("recursive-map", "a: &a {b: *a}\n"),
        ("recursive-merge", "a: &a {<<: *a}\n"),
        ("recursive-in-policy", chat.replace("spec:\n", "spec: &s\n  self: *s\n", 1)),
        ("laughs-9x9", _laughs(9, 9)),
        ("laughs-10x10", _laughs(10, 10)),
        ("laughs-mapping", _laughs(9, 9, mapping=True)),
        ("laughs-merge", _laughs(9, 9, merge=True)),
        ("laughs-in-spec", chat.replace("spec:\n", "spec:\n  x: &x0 [1,1,1,1,1,1,1,1,1]\n" + "".join(
            f"  x{i}: &x{i} [" + ",".join([f"*x{i - 1}"] * 9) + "]\n" for i in range(1, 9)), 1)),
        ("laughs-big-strings", "a: &a " + "x" * 60000 + "\nb: [" + ", ".join(["*a"] * 999) + "]\n"),
        ("many-aliases", "a: &a x\nb: [" + ", ".join(["*a"] * 1001) + "]\n"),
        ("many-documents", "--- ~\n" * 1001),
        ("many-policies", (chat + "---\n") * 1001),
        ("over-1mib", chat + "#" * (1 << 20) + "\n"),
        ("flow-list-500k", "a: [" + "1," * 500_000 + "1]\n"),
        ("long-scalar", "a: " + "x" * 70000 + "\n"),
        ("python-object", "a: !!python/object/apply:os.system [echo pwned]\n"),
        ("python-name", "a: !!python/name:os.system\n"),
        ("binary", chat.replace("name: chat-llm", "name: !!binary Y2hhdA==")),
        ("set", "a: !!set {x, y}\n"),
        ("omap", "a: !!omap [{x: 1}]\n"),
        ("custom-tag", chat.replace("minReplicas: 1", "minReplicas: !x 1")),
        ("bad-timestamp", chat.replace("  name: chat\n", "  name: 2001-13-45\n")),
        ("bad-timestamp-2", "a: 2001-02-30T25:61:61Z\n"),
        ("complex-key", "? [a, b]\n: c\n"),
        ("complex-key-map", "? {a: 1}\n: c\n"),
        ("duplicate-anchor", "a: &x 1\nb: &x 2\n"),
        ("undefined-alias", "a: *nope\n"),
        ("merge-of-scalar", "a: &a 1\nb: {<<: *a}\n"),
        ("duplicate-key", chat.replace("minReplicas: 1", "minReplicas: 1\n  minReplicas: 2")),
        ("invalid-utf8", chat.encode().replace(b"chat-llm", b"chat-\xff\xfe")),
        ("utf16", chat.encode("utf-16")),
        ("only-bom-binary", b"\xef\xbb\xbf\x00\x00"),
        ("max-replicas-int32+1", chat.replace("maxReplicas: 40", f"maxReplicas: {INT32_MAX + 1}")),
        ("max-replicas-1e30", chat.replace("maxReplicas: 40", "maxReplicas: 1000000000000000000000000000000")),
        ("fallback-replicas-1e20", chat + "  fallback: {behavior: static, replicas: 100000000000000000000}\n"),
        ("threshold-1e20", chat.replace("averageValue: 5", "averageValue: 100000000000000000000")),
        ("spares-1e20", chat.replace("maxReplicas: 40", "maxReplicas: 40\n  slo: {objective: ttft, percentile: 95, "
                                     "seconds: 2}\n  warmPool: {minSpare: 100000000000000000000}")),
        ("utilization-1e30", chat.replace("averageUtilization: 70}", "averageUtilization: " + "1" + "0" * 30 + "}")),
        ("tolerance-2", chat + "  behavior: {scaleUp: {tolerance: 2}}\n"),
        ("rule-value-1e20", chat + "  behavior: {scaleUp: {policies: [{type: Pods, value: 100000000000000000000, "
                                   "periodSeconds: 15}]}}\n"),
        ("window-3601", chat + "  behavior: {scaleDown: {stabilizationWindowSeconds: 3601}}\n"),
        ("failure-threshold-1e20", chat + "  fallback: {failureThreshold: 100000000000000000000, behavior: hold}\n"),
        ("slo-seconds-1e30", chat + "  slo: {objective: ttft, percentile: 95, seconds: 1.0e+30}\n"),
        ("kind-with-group", chat.replace("kind: Deployment", "kind: apps/v1 Deployment")),
        ("metrics-1000", chat.split("  metrics:\n")[0] + "  metrics:\n" + "".join(
            f"    - {{name: m{i}, source: {{preset: vllm.queue_depth}}, "
            "target: {type: AverageValue, averageValue: 5}}\n" for i in range(1000))),
        ("labels-10000", chat.replace("labels: {team: search}", "labels: {" + ", ".join(
            f"l{i}: v" for i in range(10000)) + "}")),
    ]  # fmt: skip
    return out


def _write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8", "surrogatepass"))


def generate(out: Path, count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    seeds = _seeds()
    chat = seeds["tests/fixtures/policies"]["team-a/chat.yaml"]
    single_files = [(tree, name, text) for tree, files in seeds.items() for name, text in files.items()]
    cases: list[Case] = []

    def new(kind: str, expect_invalid: bool = False) -> tuple[Case, Path]:
        case = Case(len(cases), kind, expect_invalid)
        cases.append(case)
        folder = out / f"{case.index:05d}"
        folder.mkdir(parents=True)
        return case, folder

    # The hostile classes, each once, then with a random mutation on top.
    hostile = hostile_texts(chat)
    for name, content in hostile:
        assert content != chat and content != chat.encode(), f"the hostile case {name} changed nothing"
        _, folder = new(f"{HOSTILE_MARK}:{name}", expect_invalid=True)
        _write(folder / "team-a" / "bad.yaml", content)
    # Special files.
    for name in ("link-dev-zero", "link-dev-urandom", "fifo", "link-outside", "dir-named-yaml", "broken-link",
                 "link-loop", "sparse-1gib", "socket"):  # fmt: skip
        _, folder = new(f"{HOSTILE_MARK}:{name}", expect_invalid=True)
        target = folder / "bad.yaml"
        if name == "link-dev-zero":
            target.symlink_to("/dev/zero")
        elif name == "link-dev-urandom":
            target.symlink_to("/dev/urandom")
        elif name == "fifo":
            os.mkfifo(target)
        elif name == "link-outside":
            outside = out / f"outside-{folder.name}.yaml"
            outside.write_text(chat)
            target.symlink_to(outside)
        elif name == "dir-named-yaml":
            target.mkdir()
            (target / "inner.yml").write_text("kind: {}\n")
        elif name == "broken-link":
            target.symlink_to(folder / "nowhere.yaml")
        elif name == "link-loop":
            target.symlink_to(folder / "loop.yaml")
            (folder / "loop.yaml").symlink_to(target)
        elif name == "sparse-1gib":
            with target.open("wb") as handle:
                handle.truncate(1 << 30)
        elif name == "socket":
            import socket

            sock = socket.socket(socket.AF_UNIX)
            try:
                sock.bind(str(target))
            except OSError:
                target.write_text("kind: {}\n")
            finally:
                sock.close()
    # Two policies on one target, spelled in various ways: the loader must accept only one.
    for variant in ("apps/v1|Deployment", "apps/v1beta2|Deployment", "apps/v1|deployment", "apps/v1|DEPLOYMENT"):
        api, kind = variant.split("|")
        _, folder = new("pair:" + variant)
        _write(folder / "a.yaml", chat)
        other = chat.replace("  name: chat\n", "  name: chat-two\n").replace("apiVersion: apps/v1, kind: Deployment",
                                                                       f"apiVersion: {api}, kind: {kind}")  # fmt: skip
        assert other.count("chat-two") == 1 and f"apiVersion: {api}, kind: {kind}" in other
        _write(folder / "b.yaml", other)
    while len(cases) < count:
        roll = rng.random()
        if roll < 0.12:  # a whole tree, a few files mutated (layering with broken defaults)
            tree = rng.choice(list(seeds))
            _, folder = new("tree:" + tree)
            names = list(seeds[tree])
            broken = set(rng.sample(names, k=min(len(names), rng.randint(1, 3))))
            for name, text in seeds[tree].items():
                if name in broken:
                    text = _mutate_text(rng, text) if rng.random() < 0.5 else _dump(
                        rng, [_mutate_value(rng, d) for d in yaml.load_all(text, Loader=_FAST_LOADER)])  # fmt: skip
                _write(folder / name, text)
            continue
        tree, name, text = rng.choice(single_files)
        if roll < 0.2:  # a hostile class with a mutation on top
            hname, content = rng.choice(hostile)
            _, folder = new(f"hostile+:{hname}")
            content = _mutate_bytes(rng, content) if isinstance(content, bytes) else _mutate_text(rng, content)
            _write(folder / "team-a" / "bad.yaml", content)
            continue
        if roll < 0.3:  # bytes
            _, folder = new(f"bytes:{tree}/{name}")
            _write(folder / "team-a" / Path(name).name, _mutate_bytes(rng, text.encode()))
            continue
        if roll < 0.6:  # text
            _, folder = new(f"text:{tree}/{name}")
            for _ in range(rng.choice([1, 1, 2, 3, 6])):
                text = _mutate_text(rng, text)
            _write(folder / "team-a" / Path(name).name, text)
            continue
        _, folder = new(f"value:{tree}/{name}")  # values, structure and types
        docs = list(yaml.load_all(text, Loader=_FAST_LOADER))
        for _ in range(rng.choice([1, 1, 2, 3, 5])):
            docs = [_mutate_value(rng, doc) for doc in docs]
        if rng.random() < 0.1:
            docs = docs * rng.choice([2, 3])
        _write(folder / "team-a" / Path(name).name, _dump(rng, docs))
    return cases


# ----------------------------------------------------------------------------------- the worker


class CaseTimeout(BaseException):
    """Raised by the alarm: a BaseException, so that no ``except Exception`` in the code under test
    swallows it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


def run_case(folder: Path, expect_invalid: bool) -> tuple[str, str]:
    """Validate one case as `inference-autoscaler validate` does; (status, detail)."""
    from autoscaler.cli import main
    from autoscaler.commands import validate

    loaded: list[Any] = []
    load_policies = getattr(validate, "load_policies")  # noqa: B009 - patched below, restored after

    def recorded(*args: Any, **kwargs: Any) -> Any:  # the result validate printed, to check it too
        loaded.append(load_policies(*args, **kwargs))
        return loaded[-1]

    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")  # a real stream: bad text raises
    err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    setattr(validate, "load_policies", recorded)  # noqa: B010
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", str(folder)])
            out.flush()
            err.flush()
    finally:
        setattr(validate, "load_policies", load_policies)  # noqa: B010
    (result,) = loaded
    internal = [str(e) for e in result.errors if "internal error" in e.message]
    if code not in (0, 1) or internal:
        return "crash", f"exit {code}; {internal[:1]}"
    bad = report_problems(result.errors)
    if bad:
        return "bad-report", bad[0]
    broken = violations(result)
    if broken:
        return "invalid-accepted", broken[0]
    if code == 0 and expect_invalid:
        return "invalid-accepted", "a known-invalid case validated"
    if (code == 0) != (not result.errors):
        return "crash", f"exit {code} with {len(result.errors)} errors"
    return "ok", ""


def worker(list_file: Path, start: int) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGALRM, _on_alarm)
    import autoscaler.cli
    import autoscaler.policy  # noqa: F401

    entries = [json.loads(line) for line in list_file.read_text().splitlines()]
    stdout = sys.__stdout__
    assert stdout is not None
    for index in range(start, len(entries)):
        folder, expect_invalid = Path(entries[index][0]), bool(entries[index][1])
        stdout.write(f"S {index}\n")
        stdout.flush()
        status, detail = "ok", ""
        fatal = False
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
        try:
            status, detail = run_case(folder, expect_invalid)
        except CaseTimeout:
            status, detail = "hang", f"over {CASE_TIMEOUT_S:g} s"
            fatal = True
        except MemoryError:
            status, detail, fatal = "memory", "MemoryError under RLIMIT_AS 1 GiB", True
        except BaseException:
            status, detail = "crash", traceback.format_exc(limit=-8)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - started
        if status == "ok" and elapsed > CASE_TIMEOUT_S:
            status, detail = "hang", f"{elapsed:.1f} s"
        stdout.write("R " + json.dumps([index, status, detail[-4000:], round(elapsed, 4)]) + "\n")
        stdout.flush()
        if fatal:
            return 3  # a fresh process for the rest: this one's state is suspect
    return 0


# ----------------------------------------------------------------------------------- the parent


@dataclass
class Outcome:
    index: int
    status: str
    detail: str
    seconds: float


def _lane(list_file: Path, total: int, on_result: Callable[[Outcome], None]) -> None:
    """Run the cases of one list file in a worker process, restarting it after a death or a hang."""
    start = 0
    log = list_file.with_suffix(".log").open("ab")  # a dying worker's last words
    while start < total:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(list_file), str(start)],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO,
        )
        assert proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        buffer = b""
        current: int | None = None
        current_started = time.monotonic()
        finished = False
        while True:
            deadline = (CASE_TIMEOUT_S + 20) if current is not None else 120
            ready = selector.select(timeout=max(0.1, deadline - (time.monotonic() - current_started)))
            if not ready:
                if time.monotonic() - current_started < deadline:
                    continue
                proc.kill()  # hung in a way the alarm could not interrupt
                proc.wait()
                if current is not None:
                    on_result(Outcome(current, "hang", "killed by the parent's watchdog", deadline))
                    start = current + 1
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:  # the worker exited
                code = proc.wait()
                if current is not None:  # it died during a case
                    status = "memory" if code in (-signal.SIGKILL, 137) else "crash"
                    on_result(Outcome(current, status, f"worker died (exit {code})", 0.0))
                    start = current + 1
                elif code == 0:
                    finished = True
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                text = line.decode()
                if text.startswith("S "):
                    current, current_started = int(text[2:]), time.monotonic()
                elif text.startswith("R "):
                    index, status, detail, seconds = json.loads(text[2:])
                    on_result(Outcome(index, status, detail, seconds))
                    current, current_started, start = None, time.monotonic(), index + 1
        selector.close()
        proc.stdout.close()
        if finished:
            break
    log.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep the generated cases (printed path)")
    parser.add_argument("--worker", nargs=2, metavar=("LIST", "START"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(Path(args.worker[0]), int(args.worker[1]))
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-policies-"))
    try:
        cases = generate(workdir / "cases", args.cases, args.seed)
        generated_s = time.monotonic() - started
        jobs = max(1, min(args.jobs, len(cases)))
        lanes = [cases[i::jobs] for i in range(jobs)]
        results: dict[int, Outcome] = {}
        lock = threading.Lock()
        threads = []
        for lane_index, lane in enumerate(lanes):
            list_file = workdir / f"lane-{lane_index}.jsonl"
            list_file.write_text(
                "".join(json.dumps([str(workdir / "cases" / f"{c.index:05d}"), c.expect_invalid]) + "\n" for c in lane)
            )

            def record(outcome: Outcome, lane: list[Case] = lane) -> None:
                outcome.index = lane[outcome.index].index  # the lane's position -> the case's number
                with lock:
                    results[outcome.index] = outcome

            thread = threading.Thread(target=_lane, args=(list_file, len(lane), record))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        counts = Counter(outcome.status for outcome in results.values())
        missing = len(cases) - len(results)
        elapsed = time.monotonic() - started
        slowest = max(results.values(), key=lambda o: o.seconds, default=None)
        print(f"policy fuzz: {len(cases)} cases (seed {args.seed}, {jobs} workers, "
              f"RLIMIT_AS {MEMORY_LIMIT >> 20} MiB, {CASE_TIMEOUT_S:g} s per case)")  # fmt: skip
        by_kind = Counter(c.kind.split(":", 1)[0] for c in cases)
        print("  kinds: " + ", ".join(f"{kind} {n}" for kind, n in sorted(by_kind.items())))
        print(f"  cases:            {len(results)}")
        print(f"  crashes:          {counts['crash'] + missing}")
        print(f"  hangs (>10 s):    {counts['hang']}")
        print(f"  over 1 GiB:       {counts['memory']}")
        print(f"  invalid accepted: {counts['invalid-accepted']}")
        print(f"  bad reports:      {counts['bad-report']}")
        if slowest is not None:
            print(f"  slowest case:     {slowest.seconds:.2f} s ({cases[slowest.index].kind})")
        print(f"  wall time:        {elapsed:.1f} s ({generated_s:.1f} s generating)")
        failures = sorted((o for o in results.values() if o.status != "ok"), key=lambda o: o.index)
        for outcome in failures[:20]:
            case = cases[outcome.index]
            print(f"\n--- case {case.index:05d} {case.kind}: {outcome.status}\n{outcome.detail.strip()[-1500:]}")
        if args.keep:
            print(f"\ncases kept in {workdir}")
        return 0 if not failures and not missing else 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
