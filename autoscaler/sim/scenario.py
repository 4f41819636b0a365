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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from autoscaler.core.policy import API_VERSION, ScalingPolicy
from autoscaler.errors import InputError
from autoscaler.policy import load_policy_file
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

__all__ = ["Baseline", "PolicyRef", "Scenario", "ScenarioError", "build_controller", "load_scenario", "load_trace"]

ALGORITHMS = ("kpa", "ray-serve", "static", "no-wait")
ALIASES = {"oracle": "no-wait"}  # old names still accepted in baseline files
# Baseline parameters that are periods, rates or targets: zero or less would divide by zero or never tick.
POSITIVE = frozenset({"binSeconds", "controlLoopSeconds", "lookBackPeriodSeconds", "maxOngoingRequests",
                      "metricsIntervalSeconds", "recordIntervalSeconds", "stableWindowSeconds", "targetConcurrency",
                      "targetOngoingRequests", "targetUtilization", "tickSeconds"})


class ScenarioError(InputError):
    """A scenario or baseline file that does not validate: ``file: key = value: why``."""


def _fail(where: str, key: str, value: Any, why: str) -> ScenarioError:
    return ScenarioError(f"{where}: {key} = {value!r}: {why}")


def _num(raw: Mapping[str, Any], key: str, default: float, where: str, prefix: str, *, minimum: float = 0.0,
         strict: bool = False) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise _fail(where, f"{prefix}{key}", value, "must be a number")
    if value < minimum or (strict and value == minimum):
        raise _fail(where, f"{prefix}{key}", value, f"must be {'>' if strict else '>='} {minimum}")
    return float(value)


def _map(raw: Any, where: str, key: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _fail(where, key, raw, "must be a mapping")
    return raw


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


def _fleet(raw: Mapping[str, Any], where: str, base: Path) -> FleetConfig:
    p = "spec.fleet."
    max_c = int(_num(raw, "maxConcurrency", 64, where, p, minimum=1))
    decode = raw.get("decodeSecondsPerToken", 0.03)
    if isinstance(decode, Mapping):
        try:
            per_token = decode_profile(
                base / str(decode["profile"]), model=str(decode.get("model", "llama2-70b")),
                hardware=str(decode.get("hardware", "a100-80gb")),
                tensor_parallel=int(decode.get("tensorParallel", 4)), max_concurrency=max_c,
            )
        except (KeyError, OSError, ValueError) as exc:
            raise _fail(where, f"{p}decodeSecondsPerToken", dict(decode), str(exc)) from None
    else:
        per_token = (_num(raw, "decodeSecondsPerToken", 0.03, where, p),) * (max_c + 1)
    load = raw.get("loadTimeSeconds", 180)
    if isinstance(load, Mapping):
        kind = load.get("distribution", "lognormal")
        if kind == "fixed":
            value = _num(load, "value", 180, where, f"{p}loadTimeSeconds.")
            load_time = LoadTime(value, value)
        elif kind == "lognormal":
            median = _num(load, "median", 180, where, f"{p}loadTimeSeconds.", strict=True)
            p95 = _num(load, "p95", median, where, f"{p}loadTimeSeconds.", minimum=median)
            load_time = LoadTime(median, p95)
        else:
            raise _fail(where, f"{p}loadTimeSeconds.distribution", kind, "must be lognormal or fixed")
    else:
        value = _num(raw, "loadTimeSeconds", 180, where, p)
        load_time = LoadTime(value, value)
    prefill = raw.get("prefillTokensPerSecond", 20000)
    return FleetConfig(
        max_concurrency=max_c,
        prefill_tokens_per_s=math.inf if prefill in ("inf", None) else _num(raw, "prefillTokensPerSecond", 20000,
                                                                           where, p, strict=True),
        per_token_s=per_token,
        load_time=load_time,
        scheduling_delay_s=_num(raw, "schedulingDelaySeconds", 5, where, p),
        gpus_per_replica=int(_num(raw, "gpusPerReplica", 1, where, p, minimum=1)),
        initial_replicas=int(_num(raw, "initialReplicas", 2, where, p, minimum=1)),
        kv_cache_tokens=_num(raw, "kvCacheTokens", 0, where, p),
    )


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if not isinstance(data, Mapping) or data.get("kind") != "Simulation":
        raise ScenarioError(f"{where}: expected a document with kind: Simulation")
    if data.get("apiVersion") != API_VERSION:
        raise _fail(where, "apiVersion", data.get("apiVersion"), f"must be {API_VERSION}")
    spec = _map(data.get("spec"), where, "spec")
    base = path.parent
    trace = _map(spec.get("trace"), where, "spec.trace")
    if not trace:
        raise ScenarioError(f"{where}: spec.trace is required")
    refs: list[PolicyRef] = []
    for i, item in enumerate(spec.get("policies") or []):
        if isinstance(item, str):
            refs.append(PolicyRef(base / item))
        elif isinstance(item, Mapping) and "path" in item:
            refs.append(PolicyRef(base / str(item["path"]), base / str(item["root"]) if item.get("root") else None,
                                  item.get("name")))
        else:
            raise _fail(where, f"spec.policies[{i}]", item, "must be a path or {path, root, name}")
    if not refs:
        raise ScenarioError(f"{where}: spec.policies: at least one policy is required")
    pipe = _map(spec.get("metricsPipeline"), where, "spec.metricsPipeline")
    slo = _map(spec.get("slo"), where, "spec.slo")
    metric = slo.get("metric", "e2e")
    if metric not in ("e2e", "ttft"):
        raise _fail(where, "spec.slo.metric", metric, "must be e2e or ttft")
    meta = _map(data.get("metadata"), where, "metadata")
    duration = spec.get("durationSeconds")
    warm = spec.get("warmStart", True)
    if isinstance(warm, Mapping):
        warm_window = _num(warm, "windowSeconds", 300, where, "spec.warmStart.", strict=True)
        warm = True
    elif isinstance(warm, bool):
        warm_window = 300.0
    else:
        raise _fail(where, "spec.warmStart", warm, "must be true, false or {windowSeconds: N}")
    return Scenario(
        name=str(meta.get("name", path.stem)),
        source=path,
        trace=trace,
        time_scale=_num(spec, "timeScale", 1.0, where, "spec.", strict=True),
        rate_scale=_num(spec, "rateScale", 1.0, where, "spec.", strict=True),
        fleet=_fleet(_map(spec.get("fleet"), where, "spec.fleet"), where, base),
        pipeline=PipelineConfig(
            scrape_interval_s=_num(pipe, "scrapeIntervalSeconds", 15, where, "spec.metricsPipeline.", strict=True),
            rate_window_s=_num(pipe, "rateWindowSeconds", 60, where, "spec.metricsPipeline.", strict=True),
            dcgm_collect_s=_num(pipe, "dcgmCollectSeconds", 30, where, "spec.metricsPipeline.", strict=True),
        ),
        slo=Slo(_num(slo, "latencySeconds", 10, where, "spec.slo.", strict=True), str(metric)),
        policies=tuple(refs),
        seed=int(_num(spec, "seed", 1, where, "spec.")),
        duration_s=None if duration is None else _num(spec, "durationSeconds", 0, where, "spec.", strict=True),
        drain_s=_num(spec, "drainSeconds", 600, where, "spec."),
        warm_start=warm,
        warm_window_s=warm_window,
    )


def _tokens(raw: Any, where: str, key: str, default: TokenDistribution) -> TokenDistribution:
    if raw is None:
        return default
    try:
        return TokenDistribution.parse(_map(raw, where, key), f"{where}: {key}")
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(where, key, raw, str(exc)) from None


def load_trace(scenario: Scenario) -> Trace:
    """The scenario's trace, windowed and scaled; generated with the scenario's seed when synthetic."""
    raw, where = scenario.trace, str(scenario.source)
    rng = np.random.default_rng([scenario.seed, 0])
    tokens_in = _tokens(raw.get("inputTokens"), where, "spec.trace.inputTokens",
                        TokenDistribution(median=1000, p95=4000))
    tokens_out = _tokens(raw.get("outputTokens"), where, "spec.trace.outputTokens",
                         TokenDistribution(median=200, p95=800))
    try:
        if "synthetic" in raw:
            syn = _map(raw["synthetic"], where, "spec.trace.synthetic")
            kind, p = syn.get("kind"), "spec.trace.synthetic."
            duration = _num(syn, "durationSeconds", 3600, where, p, strict=True)
            if kind == "poisson":
                trace = poisson(rate_per_s=_num(syn, "ratePerSecond", 1, where, p, strict=True), duration_s=duration,
                                tokens_in=tokens_in, tokens_out=tokens_out, rng=rng)
            elif kind == "diurnal":
                trace = diurnal(mean_rate_per_s=_num(syn, "meanRatePerSecond", 1, where, p, strict=True),
                                amplitude=_num(syn, "amplitude", 0.5, where, p),
                                period_s=_num(syn, "periodSeconds", 86400, where, p, strict=True),
                                phase_s=_num(syn, "phaseSeconds", 0, where, p, minimum=-math.inf),
                                noise=_num(syn, "noise", 0.1, where, p), duration_s=duration,
                                tokens_in=tokens_in, tokens_out=tokens_out, rng=rng)
            elif kind == "dailyProfile":
                hourly = syn.get("hourly")
                if not isinstance(hourly, list) or len(hourly) != 24 or not all(
                        isinstance(x, int | float) and not isinstance(x, bool) and x >= 0 for x in hourly):
                    raise _fail(where, "spec.trace.synthetic.hourly", hourly, "must list 24 multipliers >= 0")
                trace = daily_profile(mean_rate_per_s=_num(syn, "meanRatePerSecond", 1, where, p, strict=True),
                                      hourly=[float(x) for x in hourly], noise=_num(syn, "noise", 0.1, where, p),
                                      duration_s=duration, tokens_in=tokens_in, tokens_out=tokens_out, rng=rng)
            elif kind == "flashCrowd":
                trace = flash_crowd(rate_per_s=_num(syn, "ratePerSecond", 1, where, p, strict=True),
                                    multiplier=_num(syn, "multiplier", 5, where, p, strict=True),
                                    start_s=_num(syn, "startSeconds", 600, where, p),
                                    minutes=_num(syn, "minutes", 10, where, p, strict=True), duration_s=duration,
                                    tokens_in=tokens_in, tokens_out=tokens_out, rng=rng)
            else:
                raise _fail(where, "spec.trace.synthetic.kind", kind,
                            "must be poisson, diurnal, dailyProfile or flashCrowd")
        else:
            fmt = str(raw.get("format", "csv"))
            span = raw.get("spanSeconds")
            trace = read_trace(scenario.source.parent / str(raw.get("path")), fmt, rng=rng, tokens_in=tokens_in,
                               tokens_out=tokens_out, span_s=(float(span[0]), float(span[1])) if span else None)
    except TraceError as exc:
        raise ScenarioError(f"{where}: spec.trace: {exc}") from None
    if scenario.duration_s is not None:
        trace = trace.window(scenario.duration_s / scenario.time_scale)
    trace = trace.scaled(time_scale=scenario.time_scale, rate_scale=scenario.rate_scale, rng=rng)
    if len(trace) == 0:
        raise ScenarioError(f"{where}: spec.trace: {trace.source or 'the trace'}: no requests after windowing "
                            f"and scaling (durationSeconds {scenario.duration_s}, rateScale {scenario.rate_scale}); "
                            "an empty trace has no SLO to meet")
    return trace


# ------------------------------------------------------------------------------------------ policy files


def load_baseline(path: Path) -> Baseline:
    where = str(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec = _map(data.get("spec"), where, "spec")
    algorithm = spec.get("algorithm")
    algorithm = ALIASES.get(algorithm, algorithm) if isinstance(algorithm, str) else algorithm
    if algorithm not in ALGORITHMS:
        raise _fail(where, "spec.algorithm", algorithm, f"must be one of {', '.join(ALGORITHMS)}")
    params = _map(spec.get("parameters"), where, "spec.parameters")
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(where, f"spec.parameters.{key}", value, "must be a number")
        if key in POSITIVE and not value > 0:
            raise _fail(where, f"spec.parameters.{key}", value, "must be > 0")
    # Only Ray Serve scales to zero here (its cold-start path); the others need a replica.
    min_r = int(_num(spec, "minReplicas", 1, where, "spec.", minimum=0 if algorithm == "ray-serve" else 1))
    max_r = int(_num(spec, "maxReplicas", 100, where, "spec.", minimum=min_r))
    name = str(_map(data.get("metadata"), where, "metadata").get("name", path.stem))
    return Baseline(name, str(algorithm), min_r, max_r, {k: float(v) for k, v in params.items()}, where)


def load_policy_ref(ref: PolicyRef) -> ScalingPolicy | Baseline:
    """A ``ScalingPolicy`` (through the policy loader) or a ``SimulationBaseline``."""
    try:
        docs = list(yaml.safe_load_all(ref.path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{ref.path}: {exc}") from None
    if any(isinstance(d, Mapping) and d.get("kind") == "SimulationBaseline" for d in docs):
        return load_baseline(ref.path)
    try:
        policy = load_policy_file(ref.path, ref.name, root=ref.root)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    bad = unsupported_presets([m.source.preset or f"query:{m.name}" for m in policy.metrics])
    if bad:
        raise ScenarioError(f"{policy.source}: the simulator cannot produce {', '.join(bad)} "
                            "(custom PromQL and unmodelled presets have no simulated exporter)")
    return policy


def build_controller(item: ScalingPolicy | Baseline, trace: Trace, fleet: FleetConfig, drain_s: float) -> Controller:
    if isinstance(item, ScalingPolicy):
        return PolicyController(item)
    p = item.params
    if item.algorithm == "kpa":
        target = p.get("targetConcurrency", fleet.max_concurrency * p.get("targetUtilization", 0.7))
        return KpaController(item.name, KpaConfig(
            target_concurrency=target, min_replicas=item.min_replicas, max_replicas=item.max_replicas,
            stable_window_s=p.get("stableWindowSeconds", 60.0),
            panic_window_percentage=p.get("panicWindowPercentage", 10.0),
            panic_threshold_percentage=p.get("panicThresholdPercentage", 200.0),
            max_scale_up_rate=p.get("maxScaleUpRate", 1000.0), max_scale_down_rate=p.get("maxScaleDownRate", 2.0),
            tick_s=p.get("tickSeconds", 2.0),
        ))
    if item.algorithm == "ray-serve":
        return RayServeController(item.name, RayServeConfig(
            target_ongoing_requests=p.get("targetOngoingRequests",
                                          fleet.max_concurrency * p["targetUtilization"] if "targetUtilization" in p
                                          else 2.0),
            min_replicas=item.min_replicas,
            max_replicas=item.max_replicas, upscale_delay_s=p.get("upscaleDelaySeconds", 30.0),
            downscale_delay_s=p.get("downscaleDelaySeconds", 600.0),
            upscaling_factor=p.get("upscalingFactor", 1.0), downscaling_factor=p.get("downscalingFactor", 1.0),
            metrics_interval_s=p.get("metricsIntervalSeconds", 10.0),
            look_back_period_s=p.get("lookBackPeriodSeconds", 30.0),
            downscale_to_zero_delay_s=p.get("downscaleToZeroDelaySeconds"),
            record_interval_s=p.get("recordIntervalSeconds", 0.5),
            control_loop_s=p.get("controlLoopSeconds", 0.1),
            # A replica batches up to maxConcurrency; Ray's handle sends it no more than that.
            max_ongoing_requests=int(p.get("maxOngoingRequests", fleet.max_concurrency)),
        ))
    bin_s = p.get("binSeconds", 5.0)
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
