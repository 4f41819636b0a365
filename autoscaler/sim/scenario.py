"""Scenario files (``kind: Simulation``) and named-baseline files (``kind: SimulationBaseline``).

Parsed once into frozen values; errors name the file, the key and the value. Paths inside a
scenario are relative to the scenario file. A ``policies`` entry is a path, or ``{path, root, name}``
where ``root`` is the policy tree whose folder defaults apply (as for ``replay --root``).

``spec.warmStart`` (default ``true``) starts every run from the trace's steady state (see
:mod:`autoscaler.sim.run`); ``false`` starts ``initialReplicas`` with empty controller windows, and
``{windowSeconds: N}`` measures the opening load over the first N seconds (default 300).

Baseline algorithms: ``kpa``, ``ray-serve``, ``static`` and ``no-wait`` (``oracle`` is its old
name, still accepted: the schedule under which no request ever waits, which is no cost bound).
A trace that is empty after windowing and scaling is an error naming the scenario and the trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.core.policy import ScalingPolicy
from autoscaler.errors import InputError
from autoscaler.policy import load_policy_file
from autoscaler.policy.loader import _Doc, _read_documents
from autoscaler.policy.schema import Field, Issue, check
from autoscaler.sim.controllers import (
    Controller,
    KpaConfig,
    KpaController,
    NoWaitController,
    PolicyController,
    RayServeConfig,
    RayServeController,
    StaticController,
    no_wait_schedule,
    offered_concurrency,
)
from autoscaler.sim.documents import ALIASES, BASELINE, SIMULATION, baseline_parameters, filled, without_nulls
from autoscaler.sim.fleet import FleetConfig, LoadTime, decode_profile
from autoscaler.sim.pipeline import PipelineConfig, unsupported_presets
from autoscaler.sim.run import Slo
from autoscaler.sim.trace import (
    TokenDistribution,
    Trace,
    TraceError,
    daily_profile,
    diurnal,
    flash_crowd,
    poisson,
    read_trace,
)

__all__ = [
    "Baseline",
    "PolicyRef",
    "Scenario",
    "ScenarioError",
    "build_controller",
    "load_scenario",
    "load_trace",
    "scenario_from_document",
]


class ScenarioError(InputError):
    """A scenario or baseline file that does not validate: ``file:line: field = value: why``, one line per
    problem."""


def _legacy(document: Any) -> Any:
    """Spellings older scenario files used: ``prefillTokensPerSecond:`` left empty meant no prefill cost."""
    fleet = (
        document.get("spec", {}).get("fleet")
        if isinstance(document, dict) and isinstance(document.get("spec"), dict)
        else None
    )
    if isinstance(fleet, dict) and "prefillTokensPerSecond" in fleet and fleet["prefillTokensPerSecond"] is None:
        fleet = {**fleet, "prefillTokensPerSecond": "inf"}
        return {**document, "spec": {**document["spec"], "fleet": fleet}}
    return document


def _read(path: Path, kind: str) -> _Doc:
    """The file's one document, read with the line of every field (and the policy loader's limits)."""
    docs, problems = _read_documents(path, str(path))
    if problems:
        raise ScenarioError("\n".join(str(p) for p in problems))
    if len(docs) != 1:
        raise ScenarioError(f"{path}: expected one {kind} document, found {len(docs)}")
    return docs[0]


def _validated(doc: _Doc, schema: Field, more: Callable[[dict[str, Any]], list[Issue]] | None = None) -> dict[str, Any]:
    """The document checked against ``schema`` (then ``more``, the cross-field rules) with its defaults
    filled in; every problem at once, each with its line. A key set to null is a key not set."""
    document = without_nulls(_legacy(doc.data))
    issues = check(schema, document)
    if not issues:
        data: dict[str, Any] = filled(schema, document)
        issues = more(data) if more else []
        if not issues:
            return data
    raise ScenarioError("\n".join(str(doc.error(issue)) for issue in issues))


@dataclass(frozen=True, slots=True)
class PolicyRef:
    path: Path
    root: Path | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Baseline:
    """A named algorithm that is not the HPA's, with its parameters."""

    name: str
    algorithm: str
    min_replicas: int
    max_replicas: int
    params: Mapping[str, float] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    source: Path
    trace: Mapping[str, Any]
    time_scale: float
    rate_scale: float
    fleet: FleetConfig
    pipeline: PipelineConfig
    slo: Slo
    policies: tuple[PolicyRef, ...]
    seed: int
    duration_s: float | None = None
    drain_s: float = 600.0
    warm_start: bool = True
    warm_window_s: float = 300.0
    shown: str = ""  # how errors name the scenario (default: its file)

    @property
    def where(self) -> str:
        return self.shown or str(self.source)


def _fleet_issues(fleet: Mapping[str, Any]) -> list[Issue]:
    load = fleet["loadTimeSeconds"]
    if isinstance(load, Mapping) and load["distribution"] == "lognormal" and load.get("p95", math.inf) < load["median"]:
        return [
            Issue(("spec", "fleet", "loadTimeSeconds", "p95"), load["p95"], f"must be >= median ({load['median']})")
        ]
    return []


def _token_issues(trace: Mapping[str, Any]) -> list[Issue]:
    out = []
    for key in ("inputTokens", "outputTokens"):
        tokens = trace[key]
        if tokens["distribution"] == "lognormal" and tokens["p95"] < tokens["median"]:
            out.append(Issue(("spec", "trace", key, "p95"), tokens["p95"], f"must be >= median ({tokens['median']})"))
    return out


def _scenario_issues(data: dict[str, Any]) -> list[Issue]:
    spec = data["spec"]
    trace = spec["trace"]
    out = _fleet_issues(spec["fleet"]) + _token_issues(trace)
    if ("synthetic" in trace) == ("path" in trace):
        out.append(Issue(("spec", "trace"), trace, "needs exactly one of synthetic (a generated trace) or path"))
    span = trace.get("spanSeconds")
    if span is not None and not span[0] < span[1]:
        out.append(Issue(("spec", "trace", "spanSeconds"), span, "must be [start, end] with start < end"))
    return out


def _fleet(raw: Mapping[str, Any], where: str, base: Path) -> FleetConfig:
    max_c = int(raw["maxConcurrency"])
    decode = raw["decodeSecondsPerToken"]
    if isinstance(decode, Mapping):
        try:
            per_token = decode_profile(
                base / decode["profile"],
                model=decode["model"],
                hardware=decode["hardware"],
                tensor_parallel=decode["tensorParallel"],
                max_concurrency=max_c,
            )
        except (KeyError, OSError, ValueError) as exc:
            raise ScenarioError(f"{where}: spec.fleet.decodeSecondsPerToken = {dict(decode)}: {exc}") from None
    else:
        per_token = (float(decode),) * (max_c + 1)
    load = raw["loadTimeSeconds"]
    if not isinstance(load, Mapping):
        load_time = LoadTime(float(load), float(load))
    elif load["distribution"] == "fixed":
        load_time = LoadTime(float(load["value"]), float(load["value"]))
    else:
        load_time = LoadTime(float(load["median"]), float(load.get("p95", load["median"])))
    prefill = raw["prefillTokensPerSecond"]
    return FleetConfig(
        max_concurrency=max_c,
        prefill_tokens_per_s=math.inf if prefill == "inf" else float(prefill),
        per_token_s=per_token,
        load_time=load_time,
        scheduling_delay_s=float(raw["schedulingDelaySeconds"]),
        gpus_per_replica=int(raw["gpusPerReplica"]),
        initial_replicas=int(raw["initialReplicas"]),
        kv_cache_tokens=float(raw["kvCacheTokens"]),
    )


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    doc = _read(path, "Simulation")
    return _scenario(_validated(doc, SIMULATION, _scenario_issues), path)


def scenario_from_document(document: Mapping[str, Any], source: Path, *, shown: str | None = None) -> Scenario:
    """A scenario from a document built in code (paths relative to ``source``'s folder), checked like a
    file; the problems name ``shown`` (default ``source``), without lines."""
    data = _validated(_Doc(shown or str(source), 0, document, {}), SIMULATION, _scenario_issues)
    return replace(_scenario(data, source), shown=shown or "")


def _scenario(data: dict[str, Any], path: Path) -> Scenario:
    spec, base = data["spec"], path.parent
    refs = tuple(
        PolicyRef(base / item)
        if isinstance(item, str)
        else PolicyRef(base / item["path"], base / item["root"] if item.get("root") else None, item.get("name"))
        for item in spec["policies"]
    )
    pipe, slo, warm = spec["metricsPipeline"], spec["slo"], spec["warmStart"]
    return Scenario(
        name=str(data.get("metadata", {}).get("name", path.stem)),
        source=path,
        trace=spec["trace"],
        time_scale=float(spec["timeScale"]),
        rate_scale=float(spec["rateScale"]),
        fleet=_fleet(spec["fleet"], str(path), base),
        pipeline=PipelineConfig(
            scrape_interval_s=float(pipe["scrapeIntervalSeconds"]),
            rate_window_s=float(pipe["rateWindowSeconds"]),
            dcgm_collect_s=float(pipe["dcgmCollectSeconds"]),
        ),
        slo=Slo(float(slo["latencySeconds"]), str(slo["metric"])),
        policies=refs,
        seed=int(spec["seed"]),
        duration_s=None if spec.get("durationSeconds") is None else float(spec["durationSeconds"]),
        drain_s=float(spec["drainSeconds"]),
        warm_start=warm if isinstance(warm, bool) else True,
        warm_window_s=float(warm["windowSeconds"]) if isinstance(warm, Mapping) else 300.0,
    )


def _tokens(raw: Mapping[str, Any]) -> TokenDistribution:
    kind = raw["distribution"]
    if kind == "fixed":
        return TokenDistribution("fixed", value=float(raw["value"]))
    if kind == "exponential":
        return TokenDistribution("exponential", mean=float(raw["mean"]))
    return TokenDistribution("lognormal", median=float(raw["median"]), p95=float(raw["p95"]))


def _synthetic(
    syn: Mapping[str, Any], tokens_in: TokenDistribution, tokens_out: TokenDistribution, rng: np.random.Generator
) -> Trace:
    kind, duration = syn["kind"], float(syn["durationSeconds"])
    if kind == "poisson":
        return poisson(
            rate_per_s=syn["ratePerSecond"], duration_s=duration, tokens_in=tokens_in, tokens_out=tokens_out, rng=rng
        )
    if kind == "diurnal":
        return diurnal(
            mean_rate_per_s=syn["meanRatePerSecond"],
            amplitude=syn["amplitude"],
            period_s=syn["periodSeconds"],
            phase_s=syn["phaseSeconds"],
            noise=syn["noise"],
            duration_s=duration,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            rng=rng,
        )
    if kind == "dailyProfile":
        return daily_profile(
            mean_rate_per_s=syn["meanRatePerSecond"],
            hourly=[float(x) for x in syn["hourly"]],
            noise=syn["noise"],
            duration_s=duration,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            rng=rng,
        )
    return flash_crowd(
        rate_per_s=syn["ratePerSecond"],
        multiplier=syn["multiplier"],
        start_s=syn["startSeconds"],
        minutes=syn["minutes"],
        duration_s=duration,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        rng=rng,
    )


def load_trace(scenario: Scenario, steps: list[str] | None = None) -> Trace:
    """The scenario's trace, windowed and scaled; generated with the scenario's seed when synthetic.

    ``steps``, when given, receives one line per transformation applied (read or generated, window,
    time scale, rate scale), each with the resulting request count, so none is applied silently.
    """
    raw, where = scenario.trace, scenario.where
    rng = np.random.default_rng([scenario.seed, 0])
    tokens_in, tokens_out = _tokens(raw["inputTokens"]), _tokens(raw["outputTokens"])
    notes = steps if steps is not None else []
    try:
        if "synthetic" in raw:
            trace = _synthetic(raw["synthetic"], tokens_in, tokens_out, rng)
            notes.append(f"generated {trace.source} (seed {scenario.seed}): {_count(trace)}")
        else:
            span = raw.get("spanSeconds")
            trace = read_trace(
                scenario.source.parent / raw["path"],
                raw["format"],
                rng=rng,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                span_s=(float(span[0]), float(span[1])) if span else None,
            )
            notes.append(f"read {trace.source} ({raw['format']}): {_count(trace)}")
    except TraceError as exc:
        raise ScenarioError(f"{where}: spec.trace: {exc}") from None
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as exc:  # a folder, binary or malformed file
        what = type(exc).__name__ if isinstance(exc, OSError) else "unreadable"
        reason = getattr(exc, "strerror", None) or str(exc)[:200]
        raise ScenarioError(f"{where}: spec.trace: {raw.get('path')} ({raw.get('format')}): {what}: {reason}") from None
    if scenario.duration_s is not None:
        trace = trace.window(scenario.duration_s / scenario.time_scale)
        notes.append(f"window: the first {scenario.duration_s / scenario.time_scale:g} s: {_count(trace)}")
    if scenario.time_scale != 1.0:
        trace = trace.scaled(time_scale=scenario.time_scale, rate_scale=1.0, rng=rng)
        notes.append(f"time scale x{scenario.time_scale:g} (timeScale): {_count(trace)}")
    if scenario.rate_scale != 1.0:
        trace = trace.scaled(time_scale=1.0, rate_scale=scenario.rate_scale, rng=rng)
        notes.append(f"rate scale x{scenario.rate_scale:g} (rateScale): {_count(trace)}")
    if len(trace) == 0:
        raise ScenarioError(
            f"{where}: spec.trace: {trace.source or 'the trace'}: no requests after windowing "
            f"and scaling (durationSeconds {scenario.duration_s}, rateScale {scenario.rate_scale}); "
            "an empty trace has no SLO to meet"
        )
    return trace


def _count(trace: Trace) -> str:
    return f"{len(trace):,} requests over {trace.duration_s:,.0f} s"


# ------------------------------------------------------------------------------------------ policy files


def _baseline_issues(data: dict[str, Any]) -> list[Issue]:
    spec = data["spec"]
    algorithm = ALIASES.get(spec["algorithm"], spec["algorithm"])
    params = spec["parameters"]
    out = check(baseline_parameters(algorithm), params, ("spec", "parameters"))
    # Only Ray Serve scales to zero here (its cold-start path); the others need a replica.
    if spec["minReplicas"] < 1 and algorithm != "ray-serve":
        out.append(Issue(("spec", "minReplicas"), spec["minReplicas"], f"must be >= 1 ({algorithm} cannot scale to 0)"))
    if spec["maxReplicas"] < spec["minReplicas"]:
        out.append(
            Issue(("spec", "maxReplicas"), spec["maxReplicas"], f"must be >= minReplicas ({spec['minReplicas']})")
        )
    for one, other in (("targetConcurrency", "targetUtilization"), ("targetOngoingRequests", "targetUtilization")):
        if one in params and other in params:
            out.append(Issue(("spec", "parameters", one), params[one], f"set {one} or {other}, not both"))
    return out


def load_baseline(path: Path) -> Baseline:
    doc = _read(path, "SimulationBaseline")
    data = _validated(doc, BASELINE, _baseline_issues)
    spec = data["spec"]
    algorithm = ALIASES.get(spec["algorithm"], spec["algorithm"])
    given = spec["parameters"]
    params = filled(baseline_parameters(algorithm), given)
    name = str(data.get("metadata", {}).get("name", path.stem))
    return Baseline(
        name,
        algorithm,
        int(spec["minReplicas"]),
        int(spec["maxReplicas"]),
        {k: float(v) for k, v in params.items() if v is not None},
        str(path),
    )


def load_policy_ref(ref: PolicyRef) -> ScalingPolicy | Baseline:
    """A ``ScalingPolicy`` (through the policy loader) or a ``SimulationBaseline``."""
    docs, problems = _read_documents(ref.path, str(ref.path))
    if problems:
        raise ScenarioError("\n".join(str(p) for p in problems))
    if any(isinstance(d.data, Mapping) and d.data.get("kind") == "SimulationBaseline" for d in docs):
        return load_baseline(ref.path)
    try:
        policy = load_policy_file(ref.path, ref.name, root=ref.root)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    bad = unsupported_presets([m.source.preset or f"query:{m.name}" for m in policy.metrics])
    if bad:
        raise ScenarioError(
            f"{policy.source}: the simulator cannot produce {', '.join(bad)} "
            "(custom PromQL and unmodelled presets have no simulated exporter)"
        )
    return policy


def build_controller(item: ScalingPolicy | Baseline, trace: Trace, fleet: FleetConfig, drain_s: float) -> Controller:
    """The controller for a policy or a baseline. A baseline's parameters come filled with their
    defaults (:mod:`autoscaler.sim.documents`); the targets derived from the fleet are set here."""
    if isinstance(item, ScalingPolicy):
        return PolicyController(item)
    p = item.params
    if item.algorithm == "kpa":
        target = p.get("targetConcurrency", fleet.max_concurrency * p["targetUtilization"])
        return KpaController(
            item.name,
            KpaConfig(
                target_concurrency=target,
                min_replicas=item.min_replicas,
                max_replicas=item.max_replicas,
                stable_window_s=p["stableWindowSeconds"],
                panic_window_percentage=p["panicWindowPercentage"],
                panic_threshold_percentage=p["panicThresholdPercentage"],
                max_scale_up_rate=p["maxScaleUpRate"],
                max_scale_down_rate=p["maxScaleDownRate"],
                tick_s=p["tickSeconds"],
            ),
        )
    if item.algorithm == "ray-serve":
        if "targetUtilization" in p:
            target = fleet.max_concurrency * p["targetUtilization"]
        else:
            target = p["targetOngoingRequests"]
        return RayServeController(
            item.name,
            RayServeConfig(
                target_ongoing_requests=target,
                min_replicas=item.min_replicas,
                max_replicas=item.max_replicas,
                upscale_delay_s=p["upscaleDelaySeconds"],
                downscale_delay_s=p["downscaleDelaySeconds"],
                upscaling_factor=p["upscalingFactor"],
                downscaling_factor=p["downscalingFactor"],
                metrics_interval_s=p["metricsIntervalSeconds"],
                look_back_period_s=p["lookBackPeriodSeconds"],
                downscale_to_zero_delay_s=p.get("downscaleToZeroDelaySeconds"),
                record_interval_s=p["recordIntervalSeconds"],
                control_loop_s=p["controlLoopSeconds"],
                # A replica batches up to maxConcurrency; Ray's handle sends it no more than that.
                max_ongoing_requests=int(p.get("maxOngoingRequests", fleet.max_concurrency)),
            ),
        )
    bin_s = p["binSeconds"]
    horizon = trace.duration_s + drain_s
    peak = offered_concurrency(trace.arrival_s, fleet.service_s(trace), bin_s=bin_s, horizon_s=horizon)
    need = np.ceil(peak / fleet.max_concurrency).astype(np.int64)
    if item.algorithm == "static":
        replicas = int(p["replicas"]) if "replicas" in p else int(need.max(initial=1))
        replicas = min(max(replicas, item.min_replicas), item.max_replicas)
        return StaticController(item.name, replicas)
    lookahead = fleet.scheduling_delay_s + fleet.load_time.p99_s + bin_s
    schedule = np.minimum(no_wait_schedule(need, bin_s=bin_s, lookahead_s=lookahead), item.max_replicas)
    return NoWaitController(item.name, schedule, bin_s, min_replicas=item.min_replicas)
