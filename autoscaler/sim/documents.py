"""The ``Simulation`` and ``SimulationBaseline`` file formats, declared once.

The same declarative schema as policy files (:mod:`autoscaler.policy.schema`) checks them: the
``apiVersion`` and ``kind`` are checked, an unknown key is refused with a "did you mean", every
number has a range, and every problem is reported as ``file:line: field = value: message``, all of a
file's problems at once. Each parameter's default is written here, once (:class:`Param`), or taken
from the simulator's own config dataclass (:func:`default_of`); :func:`filled` applies them, so the
code that builds scenarios reads values and never repeats a default.

A few fields take one of two shapes (a number or a mapping, a path or ``{path, root, name}``):
:class:`Either` checks them, and :class:`Tagged` checks a mapping whose shape a tag field chooses
(``synthetic.kind``, a token distribution's ``distribution``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autoscaler.core.policy import API_VERSION
from autoscaler.policy.schema import (
    Boolean,
    Enum,
    Field,
    Integer,
    Issue,
    ListOf,
    Number,
    Obj,
    StringMap,
    Text,
    did_you_mean,
)
from autoscaler.sim.controllers import KpaConfig, RayServeConfig
from autoscaler.sim.fleet import FleetConfig
from autoscaler.sim.pipeline import PipelineConfig
from autoscaler.sim.run import Slo
from autoscaler.sim.trace import FORMATS

__all__ = [
    "ALGORITHMS",
    "ALIASES",
    "BASELINE",
    "BASELINE_PARAMETERS",
    "SIMULATION",
    "Either",
    "Param",
    "Tagged",
    "default_of",
    "filled",
    "without_nulls",
]

INT32_MAX = 2**31 - 1
DAY_S = 86_400.0


def default_of(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name``: the simulator's own value, not a copy."""
    for item in dataclasses.fields(cls):
        if item.name == name:
            if item.default is dataclasses.MISSING:
                raise LookupError(f"{cls.__name__}.{name} has no default")
            return item.default
    raise LookupError(f"{cls.__name__} has no field {name}")


@dataclass
class Param(Field):
    """A field and its default (absent from the document: the default applies)."""

    field: Field = dataclasses.field(default_factory=Field)
    default: Any = None
    description: str = ""

    def check(self, value: Any, path: tuple[str | int, ...], out: list[Issue]) -> None:
        self.field.check(value, path, out)

    def schema(self) -> dict[str, Any]:
        schema = self.field.schema()
        if self.default is not None:
            schema["default"] = self.default
        return self._describe(schema)


@dataclass
class Either(Field):
    """One of two shapes, chosen by the value's type: a mapping takes the :class:`Obj`-like option,
    anything else the other, so the errors are the chosen shape's own (with its "did you mean")."""

    scalar: Field = dataclasses.field(default_factory=Field)
    mapping: Field = dataclasses.field(default_factory=Field)
    description: str = ""
    message: str = ""  # said instead of the scalar's own complaint, naming both shapes

    def check(self, value: Any, path: tuple[str | int, ...], out: list[Issue]) -> None:
        if isinstance(value, dict):
            self.mapping.check(value, path, out)
            return
        found: list[Issue] = []
        self.scalar.check(value, path, found)
        if found and self.message and not isinstance(value, list):
            found = [Issue(path, value, self.message)]
        out.extend(found)

    def schema(self) -> dict[str, Any]:
        return self._describe({"anyOf": [self.scalar.schema(), self.mapping.schema()]})


@dataclass
class Tagged(Field):
    """A mapping whose ``tag`` field (or its default) chooses which :class:`Obj` checks the rest."""

    tag: str = "kind"
    variants: Mapping[str, Obj] = field(default_factory=dict)
    default: str | None = None
    description: str = ""

    def variant(self, value: Mapping[str, Any]) -> Obj | None:
        return self.variants.get(str(value.get(self.tag, self.default)))

    def check(self, value: Any, path: tuple[str | int, ...], out: list[Issue]) -> None:
        if not isinstance(value, dict):
            out.append(Issue(path, value, "must be a mapping"))
            return
        chosen = value.get(self.tag, self.default)
        if chosen is None:
            out.append(Issue((*path, self.tag), None, f"is required (one of {', '.join(self.variants)})"))
            return
        if not isinstance(chosen, str) or chosen not in self.variants:
            hint = did_you_mean(str(chosen), list(self.variants))
            out.append(Issue((*path, self.tag), chosen, f"must be one of {', '.join(self.variants)}{hint}"))
            return
        self.variants[chosen].check(value, path, out)

    def schema(self) -> dict[str, Any]:
        return self._describe({"oneOf": [variant.schema() for variant in self.variants.values()]})


@dataclass
class NumberOr(Field):
    """A number, or one of a few words (``inf``)."""

    number: Number = dataclasses.field(default_factory=Number)
    words: tuple[str, ...] = ()
    description: str = ""

    def check(self, value: Any, path: tuple[str | int, ...], out: list[Issue]) -> None:
        if isinstance(value, str):
            if value not in self.words:
                out.append(Issue(path, value, f"must be a number or one of {', '.join(self.words)}"))
            return
        self.number.check(value, path, out)

    def schema(self) -> dict[str, Any]:
        return self._describe({"anyOf": [self.number.schema(), {"enum": list(self.words)}]})


@dataclass
class AnyMapping(Field):
    """A mapping whose keys another schema checks later (a baseline's parameters, by algorithm)."""

    description: str = ""

    def check(self, value: Any, path: tuple[str | int, ...], out: list[Issue]) -> None:
        if not isinstance(value, dict):
            out.append(Issue(path, value, "must be a mapping"))

    def schema(self) -> dict[str, Any]:
        return self._describe({"type": "object"})


def without_nulls(value: Any) -> Any:
    """``value`` with every mapping key whose value is null dropped: in a document, ``key:`` with nothing
    after it means "not set" (the default applies), as it does in Kubernetes objects."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def filled(spec: Field, value: Any) -> Any:
    """``value`` (already checked against ``spec``) with every absent :class:`Param` default applied."""
    if isinstance(spec, Param):
        return filled(spec.field, value)
    if isinstance(spec, Either):
        return filled(spec.mapping if isinstance(value, dict) else spec.scalar, value)
    if isinstance(spec, Tagged) and isinstance(value, dict):
        variant = spec.variant(value)
        out = filled(variant, value) if variant is not None else dict(value)
        if spec.default is not None:
            out.setdefault(spec.tag, spec.default)
        return out
    if isinstance(spec, ListOf) and isinstance(value, list):
        return [filled(spec.item, item) for item in value]
    if isinstance(spec, Obj) and isinstance(value, dict):
        out = {key: filled(spec.fields[key], item) if key in spec.fields else item for key, item in value.items()}
        for key, sub in spec.fields.items():
            if key not in out and isinstance(sub, Param) and sub.default is not None:
                out[key] = filled(sub.field, sub.default)
        return out
    return value


def _seconds(default: Any = None, *, zero: bool = False, maximum: float = DAY_S, text: str = "") -> Param:
    number = Number(minimum=0.0, maximum=maximum) if zero else Number(exclusive_minimum=0.0, maximum=maximum)
    return Param(number, default, text)


def _positive(default: Any = None, maximum: float = 1e9, text: str = "") -> Param:
    return Param(Number(exclusive_minimum=0.0, maximum=maximum), default, text)


def _header(kind: str) -> dict[str, Field]:
    return {
        "apiVersion": Enum([API_VERSION]),
        "kind": Enum([kind]),
        "metadata": Obj({"name": Text(), "labels": StringMap(), "annotations": StringMap()}),
    }


# ----------------------------------------------------------------------------------------- Simulation

_LOGNORMAL_TOKENS = Obj(
    {"distribution": Enum(["lognormal"]), "median": _positive(maximum=1e7), "p95": _positive(maximum=1e7)},
    required=("median", "p95"),
)
TOKENS = Tagged(
    "distribution",
    {
        "lognormal": _LOGNORMAL_TOKENS,
        "exponential": Obj({"distribution": Enum(["exponential"]), "mean": _positive(maximum=1e7)}, ("mean",)),
        "fixed": Obj({"distribution": Enum(["fixed"]), "value": _positive(maximum=1e7)}, ("value",)),
    },
    default="lognormal",
    description="token counts per request: lognormal {median, p95}, exponential {mean} or fixed {value}",
)
_DURATION = _seconds(3600.0, maximum=400 * DAY_S, text="how long the generated trace runs")
_RATE = _positive(1.0, maximum=1e6, text="requests per second")
_NOISE = Param(Number(minimum=0.0, maximum=5.0), 0.1, "lognormal noise per minute (sigma)")
SYNTHETIC = Tagged(
    "kind",
    {
        "poisson": Obj({"kind": Enum(["poisson"]), "ratePerSecond": _RATE, "durationSeconds": _DURATION}),
        "diurnal": Obj(
            {
                "kind": Enum(["diurnal"]),
                "meanRatePerSecond": _RATE,
                "amplitude": Param(Number(minimum=0.0, maximum=1.0), 0.5, "peak-to-mean swing, 0..1"),
                "periodSeconds": _seconds(DAY_S, maximum=400 * DAY_S),
                "phaseSeconds": Param(Number(minimum=-400 * DAY_S, maximum=400 * DAY_S), 0.0),
                "noise": _NOISE,
                "durationSeconds": _DURATION,
            }
        ),
        "dailyProfile": Obj(
            {
                "kind": Enum(["dailyProfile"]),
                "meanRatePerSecond": _RATE,
                "hourly": ListOf(Number(minimum=0.0, maximum=1e6), min_items=24, max_items=24),
                "noise": _NOISE,
                "durationSeconds": _DURATION,
            },
            required=("hourly",),
        ),
        "flashCrowd": Obj(
            {
                "kind": Enum(["flashCrowd"]),
                "ratePerSecond": _RATE,
                "multiplier": _positive(5.0, maximum=1e4),
                "startSeconds": _seconds(600.0, zero=True, maximum=400 * DAY_S),
                "minutes": _positive(10.0, maximum=400 * 24 * 60),
                "durationSeconds": _DURATION,
            }
        ),
    },
    description="a generated trace",
)
TRACE = Obj(
    {
        "synthetic": SYNTHETIC,
        "path": Text(description="a trace file or folder, relative to the scenario file"),
        "format": Param(Enum(FORMATS), "csv"),
        "spanSeconds": ListOf(Number(minimum=0.0, maximum=400 * DAY_S), min_items=2, max_items=2),
        "inputTokens": Param(TOKENS, {"distribution": "lognormal", "median": 1000, "p95": 4000}),
        "outputTokens": Param(TOKENS, {"distribution": "lognormal", "median": 200, "p95": 800}),
    },
    description="the requests: exactly one of synthetic or path",
)
LOAD_TIME_S = 180.0  # a model-load time when none is given (a 70B model from a node-local cache)
_LOAD_TIME = Tagged(
    "distribution",
    {
        "fixed": Obj({"distribution": Enum(["fixed"]), "value": _seconds(LOAD_TIME_S, zero=True)}),
        "lognormal": Obj(
            {
                "distribution": Enum(["lognormal"]),
                "median": _seconds(LOAD_TIME_S),
                "p95": _seconds(text="default: the median (a fixed time)"),
            }
        ),
    },
    default="lognormal",
)
FLEET = Obj(
    {
        "maxConcurrency": Param(Integer(minimum=1, maximum=100_000), default_of(FleetConfig, "max_concurrency")),
        "prefillTokensPerSecond": Param(
            NumberOr(Number(exclusive_minimum=0.0, maximum=1e12), ("inf",)),
            default_of(FleetConfig, "prefill_tokens_per_s"),
            "prompt tokens a replica prefills per second",
        ),
        "decodeSecondsPerToken": Param(
            Either(
                Number(minimum=0.0, maximum=100.0),
                Obj(
                    {
                        "profile": Text(description="a SplitwiseSim performance CSV, relative to the scenario file"),
                        "model": Param(Text(), "llama2-70b"),
                        "hardware": Param(Text(), "a100-80gb"),
                        "tensorParallel": Param(Integer(minimum=1, maximum=64), 4),
                    },
                    required=("profile",),
                ),
            ),
            default_of(FleetConfig, "per_token_s")[1],
        ),
        "loadTimeSeconds": Param(
            Either(_seconds(zero=True), _LOAD_TIME), LOAD_TIME_S, "model-load time of a new replica"
        ),
        "schedulingDelaySeconds": Param(
            Number(minimum=0.0, maximum=DAY_S), default_of(FleetConfig, "scheduling_delay_s")
        ),
        "gpusPerReplica": Param(Integer(minimum=1, maximum=1024), default_of(FleetConfig, "gpus_per_replica")),
        "initialReplicas": Param(Integer(minimum=1, maximum=INT32_MAX), default_of(FleetConfig, "initial_replicas")),
        "kvCacheTokens": Param(Number(minimum=0.0, maximum=1e12), default_of(FleetConfig, "kv_cache_tokens")),
    }
)
PIPELINE = Obj(
    {
        "scrapeIntervalSeconds": _seconds(default_of(PipelineConfig, "scrape_interval_s"), maximum=3600),
        "rateWindowSeconds": _seconds(default_of(PipelineConfig, "rate_window_s"), maximum=DAY_S),
        "dcgmCollectSeconds": _seconds(default_of(PipelineConfig, "dcgm_collect_s"), maximum=3600),
    }
)
POLICY_REF = Either(
    Text(description="a policy or baseline file, relative to the scenario file"),
    Obj({"path": Text(), "root": Text(), "name": Text()}, required=("path",)),
)
SIMULATION = Obj(
    {
        **_header("Simulation"),
        "spec": Obj(
            {
                "trace": TRACE,
                "timeScale": _positive(1.0, maximum=1e6, text="stretch arrival times by this factor"),
                "rateScale": _positive(1.0, maximum=1e4, text="thin (< 1) or replicate (> 1) arrivals"),
                "durationSeconds": _seconds(maximum=400 * DAY_S, text="cut the trace to this long"),
                "drainSeconds": _seconds(600.0, zero=True, text="run on after the last arrival"),
                "seed": Param(Integer(minimum=0, maximum=2**32 - 1), 1),
                "warmStart": Param(
                    Either(
                        Boolean(),
                        Obj({"windowSeconds": _seconds(300.0)}),
                        message="must be true, false or {windowSeconds: N}",
                    ),
                    True,
                    "start from the trace's steady state (true), cold (false), or {windowSeconds: N}",
                ),
                "fleet": Param(FLEET, {}),
                "metricsPipeline": Param(PIPELINE, {}),
                "slo": Param(
                    Obj(
                        {
                            "latencySeconds": _seconds(default_of(Slo, "latency_s"), maximum=DAY_S),
                            "metric": Param(Enum(["e2e", "ttft"]), default_of(Slo, "metric")),
                        }
                    ),
                    {},
                ),
                "policies": ListOf(POLICY_REF, min_items=1),
            },
            required=("trace", "policies"),
        ),
    },
    required=("apiVersion", "kind", "spec"),
)

# ------------------------------------------------------------------------------------ SimulationBaseline

ALGORITHMS = ("kpa", "ray-serve", "static", "no-wait")
ALIASES = {"oracle": "no-wait"}  # old names still accepted in baseline files


def _kpa(name: str, check: Number) -> Param:
    return Param(check, default_of(KpaConfig, name))


def _ray(name: str, check: Number) -> Param:
    return Param(check, default_of(RayServeConfig, name))


_BIN = _seconds(5.0, maximum=3600, text="the no-wait and static schedules' time bin")
_UTILIZATION = Param(
    Number(exclusive_minimum=0.0, maximum=1.0), 0.7, "the target per replica as a share of maxConcurrency"
)
BASELINE_PARAMETERS: Mapping[str, Obj] = {
    "kpa": Obj(
        {
            "targetConcurrency": _positive(maximum=1e6, text="per replica; default maxConcurrency x targetUtilization"),
            "targetUtilization": _UTILIZATION,
            "stableWindowSeconds": _kpa("stable_window_s", Number(exclusive_minimum=0.0, maximum=3600)),
            "panicWindowPercentage": _kpa("panic_window_percentage", Number(minimum=1.0, maximum=100.0)),
            "panicThresholdPercentage": _kpa("panic_threshold_percentage", Number(minimum=100.0, maximum=1000.0)),
            "maxScaleUpRate": _kpa("max_scale_up_rate", Number(exclusive_minimum=1.0, maximum=1e6)),
            "maxScaleDownRate": _kpa("max_scale_down_rate", Number(exclusive_minimum=1.0, maximum=1e6)),
            "tickSeconds": _kpa("tick_s", Number(exclusive_minimum=0.0, maximum=3600)),
        }
    ),
    "ray-serve": Obj(
        {
            "targetOngoingRequests": _ray("target_ongoing_requests", Number(exclusive_minimum=0.0, maximum=1e6)),
            "targetUtilization": Param(
                Number(exclusive_minimum=0.0, maximum=1.0), None, "target = maxConcurrency x this"
            ),
            "upscaleDelaySeconds": _ray("upscale_delay_s", Number(minimum=0.0, maximum=DAY_S)),
            "downscaleDelaySeconds": _ray("downscale_delay_s", Number(minimum=0.0, maximum=DAY_S)),
            "downscaleToZeroDelaySeconds": Param(Number(minimum=0.0, maximum=DAY_S)),
            "upscalingFactor": _ray("upscaling_factor", Number(exclusive_minimum=0.0, maximum=100.0)),
            "downscalingFactor": _ray("downscaling_factor", Number(exclusive_minimum=0.0, maximum=100.0)),
            "metricsIntervalSeconds": _ray("metrics_interval_s", Number(exclusive_minimum=0.0, maximum=3600)),
            "lookBackPeriodSeconds": _ray("look_back_period_s", Number(exclusive_minimum=0.0, maximum=3600)),
            "recordIntervalSeconds": _ray("record_interval_s", Number(exclusive_minimum=0.0, maximum=3600)),
            "controlLoopSeconds": _ray("control_loop_s", Number(exclusive_minimum=0.0, maximum=3600)),
            "maxOngoingRequests": Param(
                Integer(minimum=1, maximum=1_000_000), None, "per replica; default maxConcurrency"
            ),
        }
    ),
    "static": Obj(
        {
            "replicas": Param(Integer(minimum=0, maximum=INT32_MAX), None, "default: the trace's peak need"),
            "binSeconds": _BIN,
        }
    ),
    "no-wait": Obj({"binSeconds": _BIN}),
}
BASELINE = Obj(
    {
        **_header("SimulationBaseline"),
        "spec": Obj(
            {
                "algorithm": Enum([*ALGORITHMS, *ALIASES]),
                "minReplicas": Param(Integer(minimum=0, maximum=INT32_MAX), 1, "only ray-serve may scale to 0"),
                "maxReplicas": Param(Integer(minimum=1, maximum=INT32_MAX), 100),
                "parameters": Param(AnyMapping(), {}, "the algorithm's own parameters"),
            },
            required=("algorithm",),
        ),
    },
    required=("apiVersion", "kind", "spec"),
)


def baseline_parameters(algorithm: str) -> Obj:
    return BASELINE_PARAMETERS[ALIASES.get(algorithm, algorithm)]
