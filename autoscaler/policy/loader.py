"""Load team policy files: YAML -> validated, typed :class:`ScalingPolicy` values.

* Several documents per file; ``ScalingPolicy`` and ``PolicyDefaults`` kinds.
* ``PolicyDefaults`` layer under the policies of their folder and below: org-wide at a policy root,
  team defaults in a namespace's folder (or, in a flat ConfigMap, with ``metadata.namespace``), then
  the policy itself. Mappings merge key by key; lists (metrics, behavior policies) are replaced whole.
* Strict: unknown fields are errors with a "did you mean" hint; every error names the file, the line
  (where known), the field path and the value.
* One bad document never prevents loading the good ones. A policy whose defaults are broken is not
  loaded (running it without its defaults would be a different policy).
* Hostile files cannot crash, hang or exhaust it: :mod:`.reader` bounds every file (size, nesting,
  aliases, documents; no devices, FIFOs or links out of the policy root), the schema bounds every number
  (replica counts are int32, as in Kubernetes), and a load reads at most :data:`MAX_FILES` files and
  :data:`MAX_TOTAL_BYTES`. Each refusal is a ``file:line: message`` problem.
* One owner per target: of two valid policies on one target (:func:`target_identity`), the first by
  file path, then position in its file, is loaded and the other refused (both ``file:line`` named);
  the service passes the running owners so that they keep their targets across reloads.

:func:`load_policies` runs named steps that tests can import one by one: :func:`discover_files`,
:func:`read_files` (documents with the line of every field), :func:`sort_documents` and
:func:`apply_defaults` (layering), :func:`validate_policy`, then the owners of targets. Problems are
:class:`PolicyProblem` values, never exceptions; only :func:`load_policy_file` raises
(:class:`~autoscaler.errors.PolicyError`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from autoscaler.core.policy import (
    API_VERSION,
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    PAUSE_ANNOTATIONS,
    PAUSED_ANNOTATION,
    PAUSED_REPLICAS_ANNOTATION,
    SLO_INPUT_TARGET,
    Behavior,
    ColdStart,
    Fallback,
    FallbackBehavior,
    MetricSource,
    MetricSpec,
    MetricTarget,
    Mode,
    Pause,
    PauseAnnotationError,
    Placeholder,
    Predictive,
    RuleType,
    ScalingPolicy,
    ScalingRule,
    ScalingRules,
    SelectPolicy,
    Slo,
    SloObjective,
    TargetRef,
    TargetType,
    Wake,
    WarmPool,
    parse_pause,
)
from autoscaler.core.quantity import parse_quantity, parse_quantity_milli
from autoscaler.errors import PolicyError
from autoscaler.policy.documents import KINDS, POLICY_DOCUMENT
from autoscaler.policy.reader import DuplicateKey, ReadRefused, compose, read_text
from autoscaler.policy.schema import NO_VALUE, Issue, check, did_you_mean
from autoscaler.presets import PRESETS, Aggregation

__all__ = [
    "MAX_FILES",
    "MAX_TOTAL_BYTES",
    "LoadResult",
    "PolicyProblem",
    "TargetConflict",
    "apply_defaults",
    "describe_target",
    "discover_files",
    "load_policies",
    "load_policy_file",
    "load_policy_objects",
    "object_document",
    "object_source",
    "policy_to_document",
    "read_files",
    "sort_documents",
    "target_identity",
    "validate_policy",
]

FieldPath = tuple[str | int, ...]
YAML_SUFFIXES = (".yaml", ".yml")
MAX_FILES = 5000
"""Policy files read in one load (a ConfigMap holds at most 1 MiB: a few hundred policies)."""
MAX_TOTAL_BYTES = 64 << 20
"""Bytes read in one load, all files together (each file is at most 1 MiB: see :mod:`.reader`)."""


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """A problem in a policy file, printable as ``file:line: field = value: message``; for an API object
    ``file`` names the object (``ScalingPolicy team-a/chat``) and there is no line."""

    file: str
    line: int | None
    path: str
    value: Any
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if not self.path:
            return f"{where}: {self.message}"
        if self.value is NO_VALUE:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.path} = {_show(self.value)}: {self.message}"


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        text = yaml.safe_dump(_preview(value), default_flow_style=True, width=10_000).strip()
    elif isinstance(value, str):
        plain = value and value.strip() == value and not value.isdigit() and value.isprintable()
        text = value[:100] if plain else repr(value[:100])
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = str(value)
    else:
        text = _printable(str(value))
    return text if len(text) <= 80 else text[:77] + "..."


def _preview(value: Any, depth: int = 0) -> Any:
    """The first few items of a mapping or list, a few levels deep: enough for an 80-character message,
    bounded whatever the size of ``value``."""
    if isinstance(value, dict):
        if depth >= 3:
            return "..."
        return {_printable(str(k))[:40]: _preview(v, depth + 1) for k, v in list(value.items())[:8]}
    if isinstance(value, list):
        return "..." if depth >= 3 else [_preview(v, depth + 1) for v in value[:8]]
    if isinstance(value, str):
        return _printable(value[:80])
    return value if value is None or isinstance(value, bool | int | float) else _printable(str(value))


def _printable(text: str) -> str:
    """``text`` with anything that could garble a terminal or split a line escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _dotted(path: FieldPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass(slots=True)
class _Doc:
    """One YAML document as plain data, with the line of every field path."""

    file: str
    index: int
    data: Any
    lines: dict[FieldPath, int]
    directory: Path = Path(".")
    root: Path = Path(".")

    @property
    def line(self) -> int | None:
        return self.lines.get(())

    def line_of(self, path: FieldPath) -> int | None:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)

    def error(self, issue: Issue) -> PolicyProblem:
        return PolicyProblem(self.file, self.line_of(issue.path), _dotted(issue.path), issue.value, issue.message)


def _read_documents(path: Path, shown: str) -> tuple[list[_Doc], list[PolicyProblem]]:
    """Every document of one file, with the line of each field, and the file's problem (at most one:
    reading stops at the first). Never raises, whatever the file holds (:mod:`.reader` bounds it)."""
    docs: list[_Doc] = []
    try:
        for composed in compose(read_text(path)):
            docs.append(_Doc(shown, composed.index, composed.data, composed.lines))
    except DuplicateKey as dup:
        return docs, [PolicyProblem(shown, dup.line, _dotted(dup.path), NO_VALUE, "duplicate key")]
    except ReadRefused as refused:
        return docs, [PolicyProblem(shown, refused.line, "", None, refused.message)]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        message = _printable(f"invalid YAML: {problem}" + (f" ({context})" if context else ""))
        return docs, [PolicyProblem(shown, mark.line + 1 if mark else None, "", None, message)]
    except Exception as exc:  # a defect must cost this file, never the others (nor the service)
        message = _printable(f"internal error while reading this file: {type(exc).__name__}: {exc}")[:500]
        return docs, [PolicyProblem(shown, None, "", None, message)]
    return docs, []


# ----------------------------------------------------------------------------------------- merging


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


@dataclass(frozen=True, slots=True)
class _Layer:
    doc: _Doc
    namespace: str | None
    valid: bool

    def applies_to(self, doc: _Doc, namespace: str) -> bool:
        if self.doc.root != doc.root:
            return False
        if self.namespace is not None and self.namespace != namespace:
            return False
        return doc.directory == self.doc.directory or self.doc.directory in doc.directory.parents

    @property
    def order(self) -> tuple[int, int, str, int]:
        return (len(self.doc.directory.parts), self.namespace is not None, self.doc.file, self.doc.index)


# ------------------------------------------------------------------------------------------ building


class _Invalid(Exception):
    def __init__(self, issues: list[Issue]) -> None:
        super().__init__(issues)
        self.issues = issues


def _rules(raw: Mapping[str, Any] | None, default: ScalingRules) -> ScalingRules:
    """Default each unset field separately, as the API server does for ``spec.behavior``."""
    raw = raw or {}
    policies = default.policies
    if "policies" in raw:
        policies = tuple(
            ScalingRule(RuleType(p["type"]), int(p["value"]), int(p["periodSeconds"])) for p in raw["policies"]
        )
    tolerance = default.tolerance
    if "tolerance" in raw:
        tolerance = float(parse_quantity(raw["tolerance"]))
    return ScalingRules(
        stabilization_window_s=int(raw.get("stabilizationWindowSeconds", default.stabilization_window_s)),
        select_policy=SelectPolicy(raw.get("selectPolicy", default.select_policy.value)),
        policies=policies,
        tolerance=tolerance,
    )


_TARGET_FIELD = {
    "AverageValue": "averageValue",
    "Value": "value",
    "Utilization": "averageUtilization",
}


def _metric(raw: Mapping[str, Any], index: int, issues: list[Issue]) -> MetricSpec | None:
    base: FieldPath = ("spec", "metrics", index)
    source, target = raw["source"], raw["target"]
    kinds = [key for key in ("preset", "query") if key in source]
    if len(kinds) != 1:
        issues.append(Issue((*base, "source"), source, "must set exactly one of preset or query"))
        return None
    target_type = target["type"]
    wanted = _TARGET_FIELD[target_type]
    ok = True
    for other in _TARGET_FIELD.values():
        if other != wanted and other in target:
            issues.append(Issue((*base, "target", other), target[other], f"is not used with type {target_type}"))
            ok = False
    if wanted not in target:
        issues.append(Issue((*base, "target", wanted), NO_VALUE, f"is required with type {target_type}"))
        return None
    preset = PRESETS.get(source.get("preset", ""))
    if preset is not None:
        if target_type == "AverageValue" and preset.aggregation is not Aggregation.SUM:
            kind_of = "an average" if preset.aggregation is Aggregation.AVERAGE else "a quantile"
            issues.append(
                Issue(
                    (*base, "target", "type"),
                    target_type,
                    f"preset {preset.name} is {kind_of}"
                    f" ({preset.unit}), not a total over pods: use type Value"
                    f"{' or Utilization' if preset.unit == 'percent' else ''}",
                )
            )
            ok = False
        if target_type == "Utilization" and preset.unit != "percent":
            issues.append(
                Issue(
                    (*base, "target", "type"),
                    target_type,
                    f"preset {preset.name} is in {preset.unit}, not percent: use type Value or AverageValue",
                )
            )
            ok = False
    if not ok:
        return None
    text = str(target[wanted])
    milli = parse_quantity_milli(target[wanted]) if target_type != "Utilization" else int(target[wanted]) * 1000
    return MetricSpec(
        name=raw["name"],
        source=MetricSource(
            preset=source.get("preset"),
            query=source.get("query"),
            match_labels=dict(source.get("matchLabels", {})),
        ),
        target=MetricTarget(TargetType(target_type), milli, text),
    )


def _pause(annotations: Mapping[str, str], issues: list[Issue]) -> Pause | None:
    """``inference-autoscaler.io/paused: "true"`` freezes writes; ``.../paused-replicas: "N"`` sets the
    target to N once and freezes it there (KEDA's ``autoscaling.keda.sh/...`` names work too): the same
    reading as a target's own annotations (:func:`autoscaler.core.policy.parse_pause`)."""
    try:
        return parse_pause(annotations)
    except PauseAnnotationError as exc:
        issues.append(Issue(("metadata", "annotations", exc.key), exc.value, exc.message))
        return None


def _fallback_behavior(raw: Mapping[str, Any]) -> str:
    """KEDA's habits carried over: ``replicas`` alone means ``static`` (KEDA's default behavior), and
    KEDA's ``currentReplicas`` is ``hold``; with neither, ``hold``."""
    behavior = raw.get("behavior", "static" if "replicas" in raw else "hold")
    return "hold" if behavior == "currentReplicas" else str(behavior)


def _build(data: Mapping[str, Any], source: str) -> ScalingPolicy:
    """Typed policy from a merged document that passed the schema; cross-field rules here."""
    issues: list[Issue] = []
    spec, meta = data["spec"], data["metadata"]
    min_replicas = spec.get("minReplicas", 1)
    max_replicas = spec["maxReplicas"]
    if min_replicas == 0 and "wake" not in spec:
        issues.append(
            Issue(
                ("spec", "minReplicas"),
                0,
                "scale to zero needs spec.wake.metric: a signal that exists at zero replicas (e.g. a gateway's "
                "queue) to wake the target",
            )
        )
    if min_replicas == 0 and spec.get("mode", "patch") == "external":
        issues.append(
            Issue(
                ("spec", "mode"),
                "external",
                "minReplicas 0 needs mode patch (or shadow): an HPA cannot scale from zero without an alpha gate",
            )
        )
    if max_replicas < min_replicas:
        issues.append(Issue(("spec", "maxReplicas"), max_replicas, f"must be >= spec.minReplicas ({min_replicas})"))
    if "metrics" not in spec and "slo" not in spec:
        issues.append(
            Issue(("spec", "metrics"), NO_VALUE, "is required unless spec.slo states a latency objective to size for")
        )
    seen: dict[str, int] = {}
    metrics: list[MetricSpec] = []
    for index, raw in enumerate(spec.get("metrics", ())):
        if raw["name"] in seen:
            issues.append(
                Issue(
                    ("spec", "metrics", index, "name"),
                    raw["name"],
                    f"duplicate metric name (also spec.metrics[{seen[raw['name']]}])",
                )
            )
        seen.setdefault(raw["name"], index)
        built = _metric(raw, index, issues)
        if built is not None:
            metrics.append(built)
    raw_fallback = spec.get("fallback", {})
    fallback = Fallback(
        failure_threshold=int(raw_fallback.get("failureThreshold", 3)),
        behavior=FallbackBehavior(_fallback_behavior(raw_fallback)),
        replicas=raw_fallback.get("replicas"),
    )
    if fallback.behavior is FallbackBehavior.HOLD:
        if fallback.replicas is not None:
            issues.append(Issue(("spec", "fallback", "replicas"), fallback.replicas, "is not used with behavior hold"))
    elif fallback.replicas is None:
        issues.append(
            Issue(("spec", "fallback", "replicas"), NO_VALUE, f"is required with behavior {fallback.behavior.value}")
        )
    elif not min_replicas <= fallback.replicas <= max_replicas:
        issues.append(
            Issue(
                ("spec", "fallback", "replicas"),
                fallback.replicas,
                f"must be within [spec.minReplicas, spec.maxReplicas] = [{min_replicas}, {max_replicas}]",
            )
        )
    predictive, warm_pool, wake, cold_start = _predictive_parts(spec, metrics, min_replicas, issues)
    slo = _slo(spec, issues)
    raw_behavior = spec.get("behavior", {})
    behavior = Behavior(
        scale_up=_rules(raw_behavior.get("scaleUp"), DEFAULT_SCALE_UP),
        scale_down=_rules(raw_behavior.get("scaleDown"), DEFAULT_SCALE_DOWN),
    )
    pause = _pause(meta.get("annotations") or {}, issues)
    if pause is not None and spec.get("mode", "patch") != "patch":
        issues.append(Issue(("metadata", "annotations"), NO_VALUE, f"pause freezes writes: mode {spec.get('mode')} "
                            "writes nothing (pause the HPA or KEDA object that acts on the published values)"))
    if pause is not None and pause.replicas is not None and not min_replicas <= pause.replicas <= max_replicas:
        issues.append(Issue(("metadata", "annotations", PAUSED_REPLICAS_ANNOTATION), pause.replicas,
                            f"must be within minReplicas ({min_replicas}) and maxReplicas ({max_replicas}): a count "
                            "outside them would stay after the pause (0 turns HPA-style scaling off)"))
    if issues:
        raise _Invalid(issues)
    target = spec["target"]
    return ScalingPolicy(
        name=meta["name"],
        namespace=meta["namespace"],
        labels=dict(meta.get("labels", {})),
        target=TargetRef(target["apiVersion"], target["kind"], target["name"]),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        mode=Mode(spec.get("mode", "patch")),
        interval_s=int(spec.get("intervalSeconds", 15)),
        metrics=tuple(metrics),
        behavior=behavior,
        fallback=fallback,
        source=source,
        cold_start=cold_start,
        predictive=predictive,
        warm_pool=warm_pool,
        wake=wake,
        slo=slo,
        pause=pause,
    )


_SLO_PRESETS = {
    # engine -> (running, waiting, {objective: latency preset})
    "vllm": ("vllm.running", "vllm.queue_depth", "vllm.request_rate",
             {"ttft": "vllm.ttft_p95", "e2e": "vllm.e2e_latency_p95", "queue": "vllm.queue_time_p95"}),
    "sglang": ("sglang.running", "sglang.queue_depth", "sglang.request_rate",
               {"ttft": "sglang.ttft_p95", "e2e": "sglang.e2e_latency_p95", "queue": "sglang.queue_time_p95"}),
}  # fmt: skip


def _slo_input(name: str, preset: str) -> MetricSpec:
    # "slo:..." cannot clash with a metric name (those are [a-z0-9_-]).
    return MetricSpec(name=f"slo:{name}", source=MetricSource(preset=preset), target=SLO_INPUT_TARGET)


def _slo(spec: Mapping[str, Any], issues: list[Issue]) -> Slo | None:
    raw = spec.get("slo")
    if raw is None:
        return None
    base: FieldPath = ("spec", "slo")
    objective = SloObjective(raw["objective"])
    percentile = float(raw["percentile"])
    engine = str(raw.get("engine", "vllm"))
    running, waiting, completions, latency_by_objective = _SLO_PRESETS[engine]
    signal = str(raw.get("signal", latency_by_objective[objective.value]))
    quantile = PRESETS[signal].quantile
    ok = True
    if quantile is not None and abs(quantile * 100 - percentile) > 1e-9:
        issues.append(
            Issue(
                (*base, "percentile"),
                raw["percentile"],
                f"the signal {signal} is a p{quantile * 100:g}: state the objective at p{quantile * 100:g}, or set "
                "spec.slo.signal to a preset of that percentile",
            )
        )
        ok = False
    if "predictive" in spec:
        issues.append(
            Issue(
                ("spec", "predictive"),
                spec["predictive"],
                "is not used with spec.slo, which forecasts its own demand (requests in flight): "
                "remove spec.predictive",
            )
        )
        ok = False
    if not ok:
        return None
    seasons = tuple(_SEASONS[name] for name in raw.get("seasonality", ["daily", "weekly"]))
    prior = raw.get("concurrencyPerReplica")
    return Slo(
        objective=objective,
        percentile=percentile,
        bound_s=float(raw["seconds"]),
        running=_slo_input("running", running),
        waiting=_slo_input("waiting", waiting),
        latency=_slo_input("latency", signal),
        completions=_slo_input("completions", completions),
        concurrency_prior=None if prior is None else float(prior),
        forecast_quantile=float(raw.get("forecastQuantile", 0.9)),
        seasonality_s=seasons,
        history_days=float(raw.get("historyDays", 7)),
    )


_SEASONS = {"daily": 86400.0, "weekly": 604800.0}


def _predictive_parts(
    spec: Mapping[str, Any], metrics: list[MetricSpec], min_replicas: int, issues: list[Issue]
) -> tuple[Predictive | None, WarmPool | None, Wake | None, ColdStart]:
    by_name = {m.name: m for m in metrics}
    raw_cold = spec.get("coldStart", {})
    cold_start = ColdStart(
        load_time_s=float(raw_cold["loadTimeSeconds"]) if "loadTimeSeconds" in raw_cold else None,
        scheduling_delay_s=float(raw_cold.get("schedulingDelaySeconds", 0.0)),
        load_time_quantile=float(raw_cold.get("loadTimeQuantile", 0.9)),
    )
    predictive = None
    raw = spec.get("predictive")
    if raw is not None and raw.get("enabled", True):
        metric = by_name.get(raw["metric"])
        if metric is None:
            issues.append(
                Issue(
                    ("spec", "predictive", "metric"),
                    raw["metric"],
                    f"no such metric in spec.metrics (has: {', '.join(by_name) or 'none'})",
                )
            )
        elif metric.target.type is not TargetType.AVERAGE_VALUE:
            issues.append(
                Issue(
                    ("spec", "predictive", "metric"),
                    raw["metric"],
                    f"must have an AverageValue target (its per-replica capacity); it has {metric.target.type.value}",
                )
            )
        seasons = tuple(_SEASONS[name] for name in raw.get("seasonality", ["daily", "weekly"]))
        predictive = Predictive(
            metric=raw["metric"],
            quantile=float(raw.get("quantile", 0.95)),
            seasonality_s=seasons,
            history_days=float(raw.get("historyDays", 7)),
        )
    warm_pool = None
    raw_pool = spec.get("warmPool")
    if raw_pool is not None:
        min_spare, max_spare = (
            int(raw_pool.get("minSpare", 0)),
            int(raw_pool.get("maxSpare", raw_pool.get("minSpare", 0))),
        )
        if max_spare < min_spare:
            issues.append(
                Issue(("spec", "warmPool", "maxSpare"), max_spare, f"must be >= spec.warmPool.minSpare ({min_spare})")
            )
        raw_placeholder = raw_pool.get("placeholder")
        placeholder = None
        if raw_placeholder is not None:
            placeholder = Placeholder(raw_placeholder["name"], int(raw_placeholder.get("podsPerReplica", 1)))
        warm_pool = WarmPool(min_spare=min_spare, max_spare=max_spare, placeholder=placeholder)
        if predictive is None and "slo" not in spec:
            issues.append(
                Issue(
                    ("spec", "warmPool"),
                    raw_pool,
                    "needs spec.predictive or spec.slo: spares are counted on top of the forecast demand",
                )
            )
        elif predictive is None and (placeholder is not None or max_spare != min_spare):
            issues.append(
                Issue(
                    ("spec", "warmPool"),
                    raw_pool,
                    "with spec.slo only minSpare is used (the SLO sizing includes the forecast): remove maxSpare "
                    "and placeholder, or use spec.predictive",
                )
            )
    wake = None
    raw_wake = spec.get("wake")
    if raw_wake is not None:
        metric = by_name.get(raw_wake["metric"])
        if metric is None:
            issues.append(
                Issue(
                    ("spec", "wake", "metric"),
                    raw_wake["metric"],
                    f"no such metric in spec.metrics (has: {', '.join(by_name) or 'none'})",
                )
            )
        elif metric.source.preset is not None:
            issues.append(
                Issue(
                    ("spec", "wake", "metric"),
                    raw_wake["metric"],
                    f"must exist at zero replicas, but preset {metric.source.preset} is read from the "
                    "target's own pods: use a query on a gateway or queue metric",
                )
            )
        wake = Wake(raw_wake["metric"])
    return predictive, warm_pool, wake, cold_start


# ------------------------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class TargetConflict:
    """A policy refused because another one already scales its target (one target, one owner)."""

    policy: ScalingPolicy
    owner: ScalingPolicy
    problem: PolicyProblem


@dataclass(slots=True)
class LoadResult:
    """Everything found under the given paths. ``by_file`` lists, per file, the policies it defined."""

    policies: list[ScalingPolicy] = field(default_factory=list)
    errors: list[PolicyProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    failed_files: set[str] = field(default_factory=set)
    """Files with a document that did not load, even when its error points at another file (a value
    that came from broken or conflicting defaults)."""
    conflicts: list[TargetConflict] = field(default_factory=list)
    """Valid policies refused because their target already has one (each also in ``errors``)."""
    layers: list[_Layer] = field(default_factory=list)
    """The PolicyDefaults read, valid or not: :func:`load_policy_objects` layers objects over them."""

    def by_file(self) -> dict[str, list[ScalingPolicy]]:
        out: dict[str, list[ScalingPolicy]] = {name: [] for name in self.files}
        for policy in self.policies:
            out.setdefault(policy.source.rsplit(":", 1)[0], []).append(policy)
        return out

    def errors_by_file(self) -> dict[str, list[PolicyProblem]]:
        out: dict[str, list[PolicyProblem]] = {}
        for error in self.errors:
            out.setdefault(error.file, []).append(error)
        return out


@dataclass(frozen=True, slots=True)
class _Source:
    """A file to read, the root of its defaults' scope, and whether only its PolicyDefaults count; or,
    with ``refused``, why it is not read (reported as the file's error)."""

    file: Path
    scope_root: Path
    defaults_only: bool = False
    refused: str = ""


def _walk(root: Path) -> Iterable[Path]:
    """YAML files below ``root``, sorted, skipping hidden entries (a ConfigMap's ``..data`` etc.).
    Symbolic links to folders are not followed; links to files are listed (and checked when read)."""
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.endswith(YAML_SUFFIXES):
                yield Path(directory) / name


def _display(path: Path) -> str:
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return _printable(shown)  # a file name with a newline or an escape must not garble the report


def _real(path: Path) -> Path:
    """``path`` with every link resolved; never raises (a link loop stays a path, which fails to open)."""
    return Path(os.path.realpath(path))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _checked(source: _Source) -> _Source:
    """Refuse a file whose links lead out of its scope root (e.g. to ``/etc/shadow`` or ``/dev/zero``).
    A ConfigMap's ``..data`` links stay inside the mounted folder, so they are fine."""
    if source.refused or _inside(_real(source.file), source.scope_root):
        return source
    return _Source(
        source.file,
        source.scope_root,
        source.defaults_only,
        f"not read: a link out of the policy root {source.scope_root} (to {_printable(str(_real(source.file)))})",
    )


def discover_files(
    paths: Sequence[str | os.PathLike[str]], *, root: str | os.PathLike[str] | None = None
) -> tuple[list[_Source], list[PolicyProblem]]:
    """Step 1, discovery: the files to read for ``paths``, each with the root of its defaults' scope.

    A directory given is its own scope root, a single file's is its folder, unless ``root`` is given:
    then every scope root is ``root``, and the YAML files in the folders from ``root`` down to each
    path are read too, for their PolicyDefaults only.

    Files that are links out of their scope root, and files beyond the first :data:`MAX_FILES`, are
    listed with the reason they are not read (their file then has an error, like a file that does not
    parse: the service keeps its last good version).
    """
    scope = _real(Path(root)) if root is not None else None
    wanted: list[_Source] = []
    problems: list[PolicyProblem] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            problems.append(PolicyProblem(_printable(str(given)), None, "", None, "no such file or directory"))
            continue
        if scope is not None and not _inside(_real(path), scope):
            problems.append(
                PolicyProblem(_printable(str(given)), None, "", None, f"is not inside the policy root {root}")
            )
            continue
        files = list(_walk(path)) if path.is_dir() else [path]
        base = scope or _real(path if path.is_dir() else path.parent)
        wanted.extend(_checked(_Source(file, base)) for file in files)
    if len(wanted) > MAX_FILES:
        reason = f"not read: more than {MAX_FILES} policy files in one load"
        wanted[MAX_FILES:] = [_Source(s.file, s.scope_root, s.defaults_only, reason) for s in wanted[MAX_FILES:]]
    if scope is None:
        return wanted, problems
    chosen = {_real(source.file) for source in wanted}
    folders = {scope}
    for source in wanted:
        folders.update(d for d in _real(source.file).parents if scope in d.parents)
    above: list[_Source] = []
    for folder in sorted(folders):
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for file in entries:
            yaml_file = file.name.endswith(YAML_SUFFIXES) and not file.name.startswith(".") and file.is_file()
            if yaml_file and _real(file) not in chosen:
                above.append(_checked(_Source(file, scope, defaults_only=True)))
    return wanted + above, problems


def read_files(sources: Sequence[_Source], result: LoadResult) -> list[_Doc]:
    """Step 2, reading: every document of every source, with its lines, its folder and scope root.

    Files read for their defaults only contribute their PolicyDefaults and are not listed in
    ``result.files``; their read errors are reported all the same. Reading stops at
    :data:`MAX_TOTAL_BYTES` (the files not read are reported).
    """
    docs: list[_Doc] = []
    total = 0
    for source in sources:
        shown = _display(source.file)
        refused = source.refused
        if not refused:
            with contextlib.suppress(OSError):  # reported when read
                total += os.stat(source.file).st_size
            if total > MAX_TOTAL_BYTES:
                refused = f"not read: the policy files of one load exceed {MAX_TOTAL_BYTES >> 20} MiB in total"
        found: list[_Doc] = []
        if refused:
            problems = [PolicyProblem(shown, None, "", None, refused)]
        else:
            found, problems = _read_documents(source.file, shown)
        result.errors.extend(problems)
        if source.defaults_only:
            found = [d for d in found if isinstance(d.data, dict) and d.data.get("kind") == "PolicyDefaults"]
        else:
            result.files.append(shown)
        for doc in found:
            doc.root = source.scope_root
            doc.directory = _real(source.file.parent)
            docs.append(doc)
    return docs


def sort_documents(docs: Sequence[_Doc], problems: list[PolicyProblem]) -> tuple[list[_Layer], list[_Doc]]:
    """Step 3a, layering: split the documents into defaults layers and policy candidates.

    A document that is not a mapping or has an unknown kind is a problem; a PolicyDefaults document
    with a wrong ``apiVersion`` or invalid fields becomes an invalid layer, so that the policies it
    would apply to are not loaded without it.
    """
    layers: list[_Layer] = []
    candidates: list[_Doc] = []
    for doc in docs:
        if not isinstance(doc.data, dict):
            problems.append(doc.error(Issue((), doc.data, "a document must be a mapping with apiVersion and kind")))
            continue
        kind = doc.data.get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            hint = did_you_mean(kind, list(KINDS)) if isinstance(kind, str) else ""
            problems.append(doc.error(Issue(("kind",), kind, f"must be one of {', '.join(KINDS)}{hint}")))
            continue
        if doc.data.get("apiVersion") != API_VERSION:
            problems.append(doc.error(Issue(("apiVersion",), doc.data.get("apiVersion"), f"must be {API_VERSION}")))
            if kind == "PolicyDefaults":
                layers.append(_Layer(doc, None, valid=False))
            continue
        if kind == "PolicyDefaults":
            issues = check(KINDS[kind], doc.data)
            problems.extend(doc.error(issue) for issue in issues)
            metadata = doc.data.get("metadata")
            namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
            layers.append(_Layer(doc, namespace if isinstance(namespace, str) else None, valid=not issues))
        else:
            candidates.append(doc)
    return layers, candidates


@dataclass(frozen=True, slots=True)
class _Layered:
    """A policy document with its defaults merged in, and for every field path its line and file."""

    doc: _Doc
    data: dict[str, Any]
    lines: dict[FieldPath, int]
    origin: dict[FieldPath, str]


def apply_defaults(doc: _Doc, layers: Sequence[_Layer]) -> _Layered | list[PolicyProblem]:
    """Step 3b, layering: the policy with the defaults that apply to it merged underneath, outermost
    folder first; or, when one of those defaults is invalid, why the policy is not loaded."""
    namespace = doc.data.get("metadata", {}).get("namespace", "")
    applicable = sorted((layer for layer in layers if layer.applies_to(doc, namespace)), key=lambda la: la.order)
    return _layer_over(doc, applicable)


def _where(doc: _Doc) -> str:
    return doc.file if doc.line is None else f"{doc.file}:{doc.line}"


def _layer_over(doc: _Doc, applicable: Sequence[_Layer]) -> _Layered | list[PolicyProblem]:
    """``doc`` merged over ``applicable`` (outermost first), or why not: one of them is invalid."""
    broken = [layer for layer in applicable if not layer.valid]
    if broken:
        return [
            PolicyProblem(doc.file, doc.line, "", None, f"not loaded: its defaults {_where(layer.doc)} are invalid")
            for layer in broken
        ]
    merged_spec: Any = {}
    lines: dict[FieldPath, int] = {}
    origin: dict[FieldPath, str] = {}
    for layer in applicable:
        merged_spec = _merge(merged_spec, layer.doc.data.get("spec") or {})
        for field_path, line in layer.doc.lines.items():
            if field_path[:1] == ("spec",):
                lines[field_path], origin[field_path] = line, layer.doc.file
    merged_spec = _merge(merged_spec, doc.data.get("spec") or {})
    for field_path, line in doc.lines.items():
        lines[field_path], origin[field_path] = line, doc.file
    return _Layered(doc, {**doc.data, "spec": merged_spec}, lines, origin)


def validate_policy(layered: _Layered) -> ScalingPolicy | list[PolicyProblem]:
    """Step 4, validation: the merged document against the schema, then the typed policy. Each problem
    points at the file the offending value came from (the policy's or one of its defaults')."""
    doc = layered.doc
    issues = check(POLICY_DOCUMENT, layered.data)
    if not issues:
        try:
            return _build(layered.data, doc.file if doc.line is None else f"{doc.file}:{doc.line}")
        except _Invalid as invalid:
            issues = invalid.issues
    problems = []
    for issue in issues:
        where = issue.path
        while where not in layered.origin and where:
            where = where[:-1]
        located = _Doc(layered.origin.get(where, doc.file), doc.index, layered.data, layered.lines)
        problems.append(located.error(issue))
    return problems


TargetKey = tuple[str, str, str, str]


def target_identity(policy: ScalingPolicy) -> TargetKey:
    """What makes two policies' targets the same object: namespace, API group, kind and name. The
    version is not part of it (``apps/v1`` and ``apps/v1beta2`` name one Deployment), nor the case of
    the kind; this is how the service matches an HPA's ``scaleTargetRef`` too (group, kind, name)."""
    api_version = policy.target.api_version
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    return (policy.namespace, group.lower(), policy.target.kind.lower(), policy.target.name)


def describe_target(policy: ScalingPolicy) -> str:
    return f"{policy.target.kind} {policy.namespace}/{policy.target.name} ({policy.target.api_version})"


def _file_order(file: str, index: int) -> tuple[tuple[str, ...], int]:
    """The one order in which claims on a target are settled: by file path (folder by folder), then by
    position in the file. It does not depend on the order the paths were given in or listed by the OS."""
    return Path(file).parts, index


@dataclass(frozen=True, slots=True)
class _Claim:
    """A valid policy's claim on its target: its rank when claims are settled, where it names its target
    (for the message refusing another), and how to refuse it."""

    policy: ScalingPolicy
    rank: tuple[int, tuple[str, ...], int]
    at: str
    refuse: Callable[[str], PolicyProblem]


def _file_claim(doc: _Doc, policy: ScalingPolicy) -> _Claim:
    """Files rank first (platform-owned GitOps config outranks a namespaced object), by path then position."""
    return _Claim(
        policy,
        (0, *_file_order(doc.file, doc.index)),
        f"{doc.file}:{doc.line_of(('spec', 'target'))}",
        lambda message: doc.error(Issue(("spec", "target"), NO_VALUE, message)),
    )


def _object_claim(policy: ScalingPolicy) -> _Claim:
    """API objects rank after files, by namespace and name."""
    return _Claim(
        policy,
        (1, (policy.namespace, policy.name), 0),
        policy.source,
        lambda message: PolicyProblem(policy.source, None, "spec.target", NO_VALUE, message),
    )


def _loaded_claim(policy: ScalingPolicy) -> _Claim:
    """The claim of a policy loaded earlier (from a file, or an object), known only by its ``source``."""
    if policy.generation is not None:
        return _object_claim(policy)
    file, _, line = policy.source.rpartition(":")
    at_line = int(line) if line.isdigit() else None
    return _Claim(
        policy,
        (0, *_file_order(file or policy.source, at_line or 0)),
        policy.source,
        lambda message: PolicyProblem(file or policy.source, at_line, "spec.target", NO_VALUE, message),
    )


def _settle_owners(
    claims: Sequence[_Claim], owners: Mapping[TargetKey, str], result: LoadResult
) -> set[int]:
    """One owner per target, whatever the claims' sources. The policy that ``owners`` names for a
    target (the one running, in the service) keeps it; otherwise the first by rank: files before API
    objects, files by :func:`_file_order`, objects by namespace and name. Every other claimant is
    refused (an error and a :class:`TargetConflict` naming both). Returns the ``id`` of the refused."""
    by_target: dict[TargetKey, list[_Claim]] = {}
    for claim in claims:
        by_target.setdefault(target_identity(claim.policy), []).append(claim)
    refused: set[int] = set()
    for target, claimants in by_target.items():
        if len(claimants) < 2:
            continue
        incumbent = owners.get(target)
        claimants.sort(key=lambda c: (c.policy.key != incumbent, c.rank))
        owner = claimants[0]
        for claim in claimants[1:]:
            message = (
                f"{describe_target(claim.policy)} already has a policy: {owner.policy.key} at {owner.at}; a target "
                "has one owner (two would fight over its replicas), so this policy is not loaded: retarget or "
                "remove one"
            )
            problem = claim.refuse(message)
            result.errors.append(problem)
            result.conflicts.append(TargetConflict(claim.policy, owner.policy, problem))
            refused.add(id(claim.policy))
    return refused


def load_policies(
    paths: Sequence[str | os.PathLike[str]],
    *,
    root: str | os.PathLike[str] | None = None,
    owners: Mapping[TargetKey, str] | None = None,
) -> LoadResult:
    """Load every policy under ``paths`` (files or directories). Never raises for bad input.

    A directory given is the root of its defaults' scopes, and a single file's scope root is its own
    folder, unless ``root`` (a policy tree's root) is given: then every path's scope root is ``root``
    and the PolicyDefaults in the folders from ``root`` down to each path are layered in too, exactly
    as when the whole tree is loaded.

    Two valid policies on one target (:func:`target_identity`): the first by file path, then position
    in the file, is loaded, the other refused (an error and a :class:`TargetConflict`); ``owners`` (target
    -> policy key) overrides that order for a target, so that a running policy keeps its target when a
    new file claims it.
    """
    result = LoadResult()
    sources, problems = discover_files(paths, root=root)
    result.errors.extend(problems)
    layers, candidates = sort_documents(read_files(sources, result), result.errors)
    result.layers.extend(layers)
    seen: dict[str, str] = {}
    claims: list[_Claim] = []
    for doc in candidates:
        try:
            policy = _validated(doc, layers, result)
        except Exception as exc:  # a defect must cost this document, never the others (nor the service)
            message = f"internal error while validating this document: {type(exc).__name__}: {exc}"
            result.errors.append(PolicyProblem(doc.file, doc.line, "", None, _printable(message)[:500]))
            continue
        if policy is None:
            continue
        if policy.key in seen:
            message = f"duplicate policy {policy.key} (first defined at {seen[policy.key]})"
            result.errors.append(PolicyProblem(doc.file, doc.line, "metadata.name", policy.name, message))
            continue
        seen[policy.key] = policy.source
        claims.append(_file_claim(doc, policy))
    refused = _settle_owners(claims, owners or {}, result)
    result.policies.extend(claim.policy for claim in claims if id(claim.policy) not in refused)
    result.failed_files.update(error.file for error in result.errors)
    result.errors.sort(key=lambda e: (e.file, e.line or 0))
    return result


_OWN_FIELDS = POLICY_DOCUMENT.optional()


def _validated(doc: _Doc, layers: Sequence[_Layer], result: LoadResult) -> ScalingPolicy | None:
    # Check the document's own fields first (nothing required yet: defaults may supply it).
    issues = check(_OWN_FIELDS, doc.data)
    if issues:
        result.errors.extend(doc.error(issue) for issue in issues)
        return None
    layered = apply_defaults(doc, layers)
    if isinstance(layered, list):
        result.errors.extend(layered)
        return None
    policy = validate_policy(layered)
    if isinstance(policy, list):
        result.errors.extend(policy)
        result.failed_files.add(doc.file)  # the error may point at the defaults; the policy is here
        return None
    return policy


# -------------------------------------------------------------------------------------- API objects



def object_source(obj: Mapping[str, Any]) -> str:
    """How problems and :attr:`ScalingPolicy.source` name an API object: ``ScalingPolicy team-a/chat``."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    kind, namespace, name = obj.get("kind"), meta.get("namespace"), meta.get("name")
    return _printable(f"{kind if isinstance(kind, str) else 'object'} {namespace or ''}/{name or ''}")[:300]


def object_document(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The policy document an API object stands for: its apiVersion, kind and spec, and the metadata the
    file format has (name, namespace, labels, the pause annotations). ``status``, ``managedFields`` and
    the rest of the server's metadata (uid, resourceVersion, generation, other annotations such as
    kubectl's last-applied-configuration) are not part of the policy."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    metadata: dict[str, Any] = {key: meta[key] for key in ("name", "namespace") if key in meta}
    if meta.get("labels"):
        metadata["labels"] = meta["labels"]
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping):
        paused = {key: value for key, value in annotations.items() if key in PAUSE_ANNOTATIONS}
        if paused:
            metadata["annotations"] = paused
    document: dict[str, Any] = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": metadata}
    if "spec" in obj:
        document["spec"] = obj["spec"]
    return document


def _generation(obj: Mapping[str, Any]) -> int:
    meta = obj.get("metadata")
    generation = meta.get("generation") if isinstance(meta, Mapping) else None
    return generation if isinstance(generation, int) and not isinstance(generation, bool) else 0


def _applies_to_objects(layer: _Layer, namespace: str) -> bool:
    """Which file defaults an object gets: those for its namespace (``metadata.namespace``, wherever
    the file is), and the org-wide ones (no namespace, at the policy root). An object has no folder, so
    namespace-less defaults in a team folder, which apply to that folder's files, do not apply to it."""
    if layer.namespace is not None:
        return layer.namespace == namespace
    return layer.doc.directory == layer.doc.root


def _sort_objects(
    objects: Iterable[Any], problems: list[PolicyProblem]
) -> tuple[dict[str, list[_Layer]], list[tuple[_Doc, int]]]:
    """The objects as documents: PolicyDefaults layers by namespace, and policy candidates with their
    generation. As :func:`sort_documents` for files; a wrong kind or apiVersion is a problem."""
    layers: dict[str, list[_Layer]] = {}
    candidates: list[tuple[_Doc, int]] = []
    for obj in objects:
        if not isinstance(obj, Mapping):
            problems.append(PolicyProblem("object", None, "", None, "an API object must be a mapping"))
            continue
        doc = _Doc(object_source(obj), 0, object_document(obj), {})
        kind, namespace = doc.data["kind"], doc.data["metadata"].get("namespace")
        if not isinstance(kind, str) or kind not in KINDS:
            problems.append(doc.error(Issue(("kind",), kind, f"must be one of {', '.join(KINDS)}")))
            continue
        issues: list[Issue] = []
        if doc.data["apiVersion"] != API_VERSION:
            issues.append(Issue(("apiVersion",), doc.data["apiVersion"], f"must be {API_VERSION}"))
        if not isinstance(namespace, str) or not namespace:
            issues.append(Issue(("metadata", "namespace"), NO_VALUE, "is required: both kinds are namespaced"))
        if kind == "PolicyDefaults":
            issues = issues or check(KINDS[kind], doc.data)
            problems.extend(doc.error(issue) for issue in issues)
            if isinstance(namespace, str):
                layers.setdefault(namespace, []).append(_Layer(doc, namespace, valid=not issues))
        elif issues:
            problems.extend(doc.error(issue) for issue in issues)
        else:
            candidates.append((doc, _generation(obj)))
    for found in layers.values():
        found.sort(key=lambda layer: layer.doc.file)
    return layers, candidates


def _validated_object(doc: _Doc, applicable: Sequence[_Layer], result: LoadResult) -> ScalingPolicy | None:
    """As :func:`_validated` for a file's document; every problem is the object's (a value that came
    from a defaults file says so in the message)."""
    issues = check(_OWN_FIELDS, doc.data)
    if issues:
        result.errors.extend(doc.error(issue) for issue in issues)
        return None
    layered = _layer_over(doc, applicable)
    built = layered if isinstance(layered, list) else validate_policy(layered)
    if isinstance(built, ScalingPolicy):
        return built
    for problem in built:
        if problem.file != doc.file:
            origin = problem.file if problem.line is None else f"{problem.file}:{problem.line}"
            problem = PolicyProblem(doc.file, None, problem.path, problem.value, f"{problem.message} (set by {origin})")
        result.errors.append(problem)
    return None


def load_policy_objects(
    objects: Iterable[Mapping[str, Any]],
    *,
    files: LoadResult | None = None,
    owners: Mapping[TargetKey, str] | None = None,
) -> LoadResult:
    """Load ``ScalingPolicy`` and ``PolicyDefaults`` API objects (dicts as the API returns them), together
    with what :func:`load_policies` loaded from ``files``. Never raises for bad input.

    * An object is its file document: ``metadata.namespace`` is authoritative (the format has no other
      namespace: ``spec.target.namespace`` is refused), and ``status``, ``managedFields`` and
      server-set metadata are ignored (:func:`object_document`).
    * Layering, outermost first: the org-wide file defaults (no namespace, at the policy root), the
      file defaults for the object's namespace (``metadata.namespace``), the namespace's
      ``PolicyDefaults`` objects (by name), then the object. Mappings merge, lists are replaced, as for
      files. Broken defaults (a file's or an object's) keep the policies they apply to from loading.
    * A problem names the object: ``ScalingPolicy team-a/chat: spec.minReplicas = -1: must be >= 0``.
      A policy's ``source`` is ``ScalingPolicy team-a/chat`` and its ``generation`` the object's.
    * One owner per target, across files and objects (:func:`_settle_owners`): the policy that ``owners``
      names (the running one) keeps its target; with none running, a file outranks an object
      (platform-owned GitOps config over a namespaced object), then files by path, objects by
      namespace/name. The other is refused with a :class:`TargetConflict` naming both.
    * A file and an object with one ``namespace/name``: the file's is loaded and the object refused
      (``metadata.name``), whatever runs: a policy's key names it everywhere (state, metrics, Events).

    The result holds the file policies and errors too (when ``files`` is given), minus any file policy
    refused because a running object owns its target.
    """
    result = LoadResult()
    if files is not None:
        result.policies.extend(files.policies)
        result.errors.extend(files.errors)
        result.files.extend(files.files)
        result.failed_files.update(files.failed_files)
        result.conflicts.extend(files.conflicts)
        result.layers.extend(files.layers)
    file_layers = sorted(result.layers, key=lambda layer: layer.order)
    object_layers, candidates = _sort_objects(objects, result.errors)
    taken = {policy.key: policy.source for policy in result.policies}
    loaded: list[ScalingPolicy] = []
    for doc, generation in candidates:
        namespace = doc.data["metadata"]["namespace"]
        applicable = [layer for layer in file_layers if _applies_to_objects(layer, namespace)]
        try:
            policy = _validated_object(doc, [*applicable, *object_layers.get(namespace, [])], result)
        except Exception as exc:  # a defect must cost this object, never the others (nor the service)
            message = f"internal error while validating this object: {type(exc).__name__}: {exc}"
            result.errors.append(PolicyProblem(doc.file, None, "", None, _printable(message)[:500]))
            continue
        if policy is None:
            continue
        if policy.key in taken:
            message = f"{policy.key} is already defined by {taken[policy.key]}; rename this object or remove the other"
            result.errors.append(PolicyProblem(doc.file, None, "metadata.name", policy.name, message))
            continue
        taken[policy.key] = policy.source
        loaded.append(replace(policy, generation=generation))
    claims = [_loaded_claim(policy) for policy in result.policies] + [_object_claim(policy) for policy in loaded]
    refused = _settle_owners(claims, owners or {}, result)
    result.policies = [claim.policy for claim in claims if id(claim.policy) not in refused]
    result.failed_files.update(error.file for error in result.errors)
    result.errors.sort(key=lambda e: (e.file, e.line or 0))
    return result


def load_policy_file(
    path: str | os.PathLike[str], name: str | None = None, *, root: str | os.PathLike[str] | None = None
) -> ScalingPolicy:
    """Exactly one policy from a file (by ``metadata.name`` when it holds several).

    Defaults in the file's folder apply; with ``root``, also those of every folder up to the root.
    Raises :class:`~autoscaler.errors.PolicyError` (one line per problem) when the file has errors or
    does not hold exactly the one policy asked for.
    """
    result = load_policies([path], root=root)
    if result.errors:
        raise PolicyError("\n".join(str(e) for e in result.errors))
    policies = result.policies
    if name is not None:
        policies = [p for p in policies if p.name == name]
        if not policies:
            names = ", ".join(p.name for p in result.policies) or "none"
            raise PolicyError(f"{path}: no policy named {name!r} (found: {names})")
    if len(policies) != 1:
        names = ", ".join(p.name for p in policies) or "none"
        raise PolicyError(f"{path}: expected exactly one ScalingPolicy, found {len(policies)} ({names}); use --name")
    return policies[0]


def _rules_document(rules: ScalingRules) -> dict[str, Any]:
    return {
        "stabilizationWindowSeconds": rules.stabilization_window_s,
        "selectPolicy": rules.select_policy.value,
        "policies": [{"type": r.type.value, "value": r.value, "periodSeconds": r.period_s} for r in rules.policies],
        "tolerance": rules.tolerance,
    }


def policy_to_document(policy: ScalingPolicy) -> dict[str, Any]:
    """The effective policy, every default filled in, as a document (``validate --show-effective``)."""
    metrics = []
    for metric in policy.metrics:
        source: dict[str, Any] = (
            {"preset": metric.source.preset} if metric.source.preset else {"query": metric.source.query}
        )
        if metric.source.match_labels:
            source["matchLabels"] = dict(metric.source.match_labels)
        target: dict[str, Any] = {"type": metric.target.type.value}
        value: Any = metric.target.milli // 1000 if metric.target.milli % 1000 == 0 else metric.target.text
        target[_TARGET_FIELD[metric.target.type.value]] = value
        metrics.append({"name": metric.name, "source": source, "target": target})
    fallback: dict[str, Any] = {
        "failureThreshold": policy.fallback.failure_threshold,
        "behavior": policy.fallback.behavior.value,
    }
    if policy.fallback.replicas is not None:
        fallback["replicas"] = policy.fallback.replicas
    metadata: dict[str, Any] = {"name": policy.name, "namespace": policy.namespace}
    if policy.labels:
        metadata["labels"] = dict(policy.labels)
    if policy.pause is not None:  # the round trip keeps the pause (as the canonical annotation names)
        metadata["annotations"] = {PAUSED_ANNOTATION: "true"} | (
            {PAUSED_REPLICAS_ANNOTATION: str(policy.pause.replicas)} if policy.pause.replicas is not None else {}
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "ScalingPolicy",
        "metadata": metadata,
        "spec": {
            "target": {"apiVersion": policy.target.api_version, "kind": policy.target.kind, "name": policy.target.name},
            "minReplicas": policy.min_replicas,
            "maxReplicas": policy.max_replicas,
            "mode": policy.mode.value,
            "intervalSeconds": policy.interval_s,
            **({"metrics": metrics} if metrics else {}),
            **_slo_document(policy),
            "behavior": {
                "scaleUp": _rules_document(policy.behavior.scale_up),
                "scaleDown": _rules_document(policy.behavior.scale_down),
            },
            "fallback": fallback,
            **_predictive_document(policy),
        },
    }


def _slo_document(policy: ScalingPolicy) -> dict[str, Any]:
    slo = policy.slo
    if slo is None:
        return {}
    names = {v: k for k, v in _SEASONS.items()}
    engine = "sglang" if (slo.running.source.preset or "").startswith("sglang.") else "vllm"
    out: dict[str, Any] = {
        "objective": slo.objective.value,
        "percentile": slo.percentile,
        "seconds": slo.bound_s,
        "engine": engine,
        "signal": slo.latency.source.preset,
        "forecastQuantile": slo.forecast_quantile,
        "seasonality": [names[s] for s in slo.seasonality_s],
        "historyDays": slo.history_days,
    }
    if slo.concurrency_prior is not None:
        out["concurrencyPerReplica"] = slo.concurrency_prior
    return {"slo": out}


def _predictive_document(policy: ScalingPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cold: dict[str, Any] = {"loadTimeQuantile": policy.cold_start.load_time_quantile}
    if policy.cold_start.load_time_s is not None:
        cold["loadTimeSeconds"] = policy.cold_start.load_time_s
        cold["schedulingDelaySeconds"] = policy.cold_start.scheduling_delay_s
    out["coldStart"] = cold
    if policy.predictive is not None:
        names = {v: k for k, v in _SEASONS.items()}
        out["predictive"] = {
            "enabled": True,
            "metric": policy.predictive.metric,
            "quantile": policy.predictive.quantile,
            "seasonality": [names[s] for s in policy.predictive.seasonality_s],
            "historyDays": policy.predictive.history_days,
        }
    if policy.warm_pool is not None:
        pool: dict[str, Any] = {"minSpare": policy.warm_pool.min_spare, "maxSpare": policy.warm_pool.max_spare}
        if policy.warm_pool.placeholder is not None:
            pool["placeholder"] = {
                "name": policy.warm_pool.placeholder.name,
                "podsPerReplica": policy.warm_pool.placeholder.pods_per_replica,
            }
        out["warmPool"] = pool
    if policy.wake is not None:
        out["wake"] = {"metric": policy.wake.metric}
    return out
