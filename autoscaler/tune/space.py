"""The tuning space: which of a policy's numbers ``tune`` may change, within what range, toward what.

A space is plain data, so it can come from the command line (``--param PATH=LOW:HIGH[:int][:log]``),
from a tuning file, or, later, from a ``spec.tuning`` block of the policy itself:
:func:`parse_space` validates such a mapping and names the field and the value of every problem::

    parameters:
      - path: spec.metrics[tokens].target.averageValue   # [index] or [name] selects a list item
        range: [100, 300]                                  # or low: / high:
        type: float                                        # int | float (default: int when both bounds are)
        log: false                                         # sample on a log scale (bounds > 0)
    objective: min-gpu-hours                               # or frontier
    targetAttainment: policy                               # a fraction, policy, or baselines

Paths name fields of the policy's *effective* document (``validate --show-effective``: every default
filled in), so a window or rate limit the team left at the HPA default can be tuned too. They must
start with ``spec.``: a tuned policy is the same policy (name, namespace, target) with other numbers.

:func:`default_space` is what ``tune`` searches when nothing is declared, derived from the policy's
kind: ratio targets within ±50%, the scale-down stabilization window and the first rate-limit rule of
each direction, the predictive quantile and the warm pool's spare cap, the SLO's forecast quantile and
its concurrency prior. :func:`resolve` checks a space against one policy document (indices and
names exist, the value there is a number); candidates are built by :func:`with_values` and then
validated by the policy loader, never trusted as they are.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.core.policy import RuleType, ScalingPolicy, TargetType
from autoscaler.core.quantity import parse_quantity
from autoscaler.errors import InputError

__all__ = [
    "OBJECTIVES",
    "Parameter",
    "PathPart",
    "TuningError",
    "TuningSpace",
    "default_space",
    "parse_parameter",
    "parse_path",
    "parse_space",
    "resolve",
    "step_into",
    "with_values",
]

OBJECTIVES = ("min-gpu-hours", "frontier")
ATTAINMENT_WORDS = ("policy", "baselines")


class TuningError(InputError):
    """A tuning space, a ``--param`` or a tuning request that cannot be used: ``where: field = value: why``."""


PathPart = str | int  # a mapping key, a list index; a [name] selector is kept as "[name]" until resolved

_SEGMENT = re.compile(r"([A-Za-z][A-Za-z0-9]*)((?:\[[^\]]*\])*)")
_SELECTOR = re.compile(r"\[([^\]]*)\]")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9_]*[a-z0-9])?")


def parse_path(text: str, where: str = "path") -> tuple[PathPart, ...]:
    """``spec.metrics[0].target.averageValue`` -> ``("spec", "metrics", 0, "target", "averageValue")``;
    a ``[name]`` selector stays the string ``"[name]"`` (resolved against a document by :func:`resolve`)."""
    if not isinstance(text, str) or not text:
        raise TuningError(f"{where} = {text!r}: must be a field path such as spec.metrics[0].target.averageValue")
    parts: list[PathPart] = []
    for segment in text.split("."):
        match = _SEGMENT.fullmatch(segment)
        if match is None:
            raise TuningError(f"{where} = {text!r}: {segment!r} is not a field name with optional [index] or [name]")
        parts.append(match.group(1))
        for selector in _SELECTOR.findall(match.group(2)):
            if selector.isdigit():
                parts.append(int(selector))
            elif _NAME.fullmatch(selector):
                parts.append(f"[{selector}]")
            else:
                raise TuningError(f"{where} = {text!r}: [{selector}] is neither an index nor a metric name")
    if parts[0] != "spec" or len(parts) < 2:
        raise TuningError(f"{where} = {text!r}: must name a field under spec. (name, namespace and target stay)")
    return tuple(parts)


@dataclass(frozen=True, slots=True)
class Parameter:
    """One tunable number: a field path of the policy document and the range the team allows."""

    path: str
    low: float
    high: float
    integer: bool = False
    log: bool = False

    @property
    def parts(self) -> tuple[PathPart, ...]:
        return parse_path(self.path)

    def snap(self, value: float) -> float | int:
        """The value a candidate carries: an integer, or a float rounded to about three significant
        digits of the range (what is evaluated is exactly what the tuned file says)."""
        if self.integer:
            return int(min(max(round(value), math.ceil(self.low)), math.floor(self.high)))
        digits = max(0, 2 - math.floor(math.log10(self.high - self.low)))
        snapped = round(min(max(value, self.low), self.high), digits)
        return int(snapped) if digits == 0 else snapped

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class TuningSpace:
    """What to search and toward what. ``target_attainment``: a fraction, ``"policy"`` (the policy's own
    percentile, or 0.95 for a policy without ``spec.slo``) or ``"baselines"`` (the best attainment of
    the KPA and Ray Serve baselines on the fit part)."""

    parameters: tuple[Parameter, ...]
    objective: str = "min-gpu-hours"
    target_attainment: float | str = "policy"

    def names(self) -> list[str]:
        return [p.path for p in self.parameters]


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TuningError(f"{where}: {key} = {value!r}: must be a finite number")
    return float(value)


def _parameter(path: str, low: float, high: float, integer: bool | None, log: bool, where: str) -> Parameter:
    parse_path(path, f"{where}.path")
    if not low < high:
        raise TuningError(f"{where}: range = [{low:g}, {high:g}]: the low bound must be below the high one")
    if log and low <= 0:
        raise TuningError(f"{where}: range = [{low:g}, {high:g}]: a log-scale range must be above 0")
    whole = low.is_integer() and high.is_integer()
    if integer is None:
        integer = whole
    elif integer and not whole:
        raise TuningError(f"{where}: range = [{low:g}, {high:g}]: type int needs integer bounds")
    return Parameter(path, low, high, integer, log)


_PARAMETER_KEYS = ("path", "range", "low", "high", "type", "log")
_SPACE_KEYS = ("parameters", "objective", "targetAttainment")


def _unknown(raw: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    from autoscaler.policy.schema import did_you_mean

    for key in raw:
        if key not in allowed:
            raise TuningError(f"{where}.{key}: unknown field{did_you_mean(str(key), list(allowed))} "
                              f"(allowed: {', '.join(allowed)})")


def _parse_one(raw: Any, where: str) -> Parameter:
    if not isinstance(raw, Mapping):
        raise TuningError(f"{where} = {raw!r}: must be a mapping with path and range")
    _unknown(raw, _PARAMETER_KEYS, where)
    if "path" not in raw:
        raise TuningError(f"{where}.path: is required")
    if "range" in raw:
        if "low" in raw or "high" in raw:
            raise TuningError(f"{where}: give range or low/high, not both")
        bounds = raw["range"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise TuningError(f"{where}.range = {bounds!r}: must be [low, high]")
        low, high = _number(bounds[0], where, "range[0]"), _number(bounds[1], where, "range[1]")
    elif "low" in raw and "high" in raw:
        low, high = _number(raw["low"], where, "low"), _number(raw["high"], where, "high")
    else:
        raise TuningError(f"{where}: range (or low and high) is required")
    kind = raw.get("type")
    if kind not in (None, "int", "float"):
        raise TuningError(f"{where}.type = {kind!r}: must be int or float")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise TuningError(f"{where}.log = {log!r}: must be true or false")
    return _parameter(str(raw["path"]), low, high, None if kind is None else kind == "int", log, where)


def _attainment(value: Any, where: str) -> float | str:
    if isinstance(value, str):
        if value not in ATTAINMENT_WORDS:
            raise TuningError(f"{where} = {value!r}: must be a fraction in (0, 1], policy or baselines")
        return value
    number = _number(value, where.rsplit(".", 1)[0], where.rsplit(".", 1)[-1])
    if not 0 < number <= 1:
        raise TuningError(f"{where} = {value!r}: must be a fraction in (0, 1] (0.99 is 99%), policy or baselines")
    return number


def parse_space(raw: Any, where: str = "tuning") -> TuningSpace:
    """Validate a plain mapping (a tuning file, or a policy's future ``spec.tuning`` block)."""
    if not isinstance(raw, Mapping):
        raise TuningError(f"{where} = {raw!r}: must be a mapping with parameters")
    _unknown(raw, _SPACE_KEYS, where)
    items = raw.get("parameters")
    if not isinstance(items, list) or not items:
        raise TuningError(f"{where}.parameters = {items!r}: must list at least one parameter")
    parameters = tuple(_parse_one(item, f"{where}.parameters[{i}]") for i, item in enumerate(items))
    _no_duplicates(parameters, f"{where}.parameters")
    objective = raw.get("objective", "min-gpu-hours")
    if objective not in OBJECTIVES:
        raise TuningError(f"{where}.objective = {objective!r}: must be one of {', '.join(OBJECTIVES)}")
    target = _attainment(raw.get("targetAttainment", "policy"), f"{where}.targetAttainment")
    return TuningSpace(parameters, str(objective), target)


def _no_duplicates(parameters: Sequence[Parameter], where: str) -> None:
    seen: set[str] = set()
    for p in parameters:
        if p.path in seen:
            raise TuningError(f"{where}: path = {p.path}: declared twice")
        seen.add(p.path)


def parse_parameter(text: str) -> Parameter:
    """The command line's ``PATH=LOW:HIGH[:int|:float][:log]``."""
    where = f"--param {text}"
    path, sep, rest = text.partition("=")
    if not sep or not rest:
        raise TuningError(f"{where}: expected PATH=LOW:HIGH[:int|:float][:log], "
                          "e.g. spec.metrics[0].target.averageValue=100:300")
    fields = rest.split(":")
    if len(fields) < 2:
        raise TuningError(f"{where}: range = {rest!r}: expected LOW:HIGH[:int|:float][:log], e.g. 100:300")
    try:
        low, high = float(fields[0]), float(fields[1])
    except ValueError:
        raise TuningError(f"{where}: range = {rest!r}: LOW and HIGH must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise TuningError(f"{where}: range = {rest!r}: LOW and HIGH must be finite")
    flags = fields[2:]
    unknown = [f for f in flags if f not in ("int", "float", "log")]
    if unknown or ("int" in flags and "float" in flags):
        raise TuningError(f"{where}: flags = {':'.join(flags)!r}: allowed are int or float, and log")
    integer = True if "int" in flags else False if "float" in flags else None
    return _parameter(path.strip(), low, high, integer, "log" in flags, where)


# ------------------------------------------------------------------------------ against a document


def _describe(parts: Sequence[PathPart]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (part if part.startswith("[") else f".{part}" if out else part)
    return out


def resolve(document: Mapping[str, Any], parameter: Parameter) -> tuple[tuple[str | int, ...], float | None]:
    """The concrete path (``[name]`` selectors as indices) and the current value (None: not set; a
    missing mapping on the way is created by :func:`with_values`, a missing list item is an error)."""
    node: Any = document
    concrete: list[str | int] = []
    parts = parameter.parts
    for depth, part in enumerate(parts):
        here = _describe(concrete) or "the document"
        if node is None:  # a mapping not set yet (e.g. spec.warmPool): created when the value is set
            rest = parts[depth:]
            if not all(isinstance(p, str) and not p.startswith("[") for p in rest):
                raise TuningError(f"{parameter.path}: {here} is not set, so {_describe(rest)} does not exist")
            return (*concrete, *(str(p) for p in rest)), None
        if isinstance(part, str) and part.startswith("["):
            name = part[1:-1]
            if not isinstance(node, list):
                raise TuningError(f"{parameter.path}: {here} is not a list, so [{name}] selects nothing")
            names = [item.get("name") for item in node if isinstance(item, Mapping)]
            if name not in names:
                raise TuningError(f"{parameter.path}: {here} has no item named {name!r} "
                                  f"(has: {', '.join(str(n) for n in names) or 'none'})")
            index = names.index(name)
            concrete.append(index)
            node = node[index]
        elif isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise TuningError(f"{parameter.path}: {here} has {size} item(s), so [{part}] does not exist")
            concrete.append(part)
            node = node[part]
        else:
            if not isinstance(node, Mapping):
                raise TuningError(f"{parameter.path}: {here} = {node!r} is not a mapping")
            concrete.append(part)
            node = node.get(part)
    if node is None:
        return tuple(concrete), None
    if isinstance(node, bool):
        raise TuningError(f"{parameter.path} = {node!r}: is not a number")
    if isinstance(node, int | float):
        return tuple(concrete), float(node)
    if isinstance(node, str):
        try:
            return tuple(concrete), float(parse_quantity(node))
        except ValueError:
            pass
    raise TuningError(f"{parameter.path} = {node!r}: is not a number, so it cannot be tuned")


def step_into(node: Any, part: str | int) -> Any:
    """``node[part]`` for a list index, ``node.get(part)`` for a mapping key; None when absent."""
    if isinstance(part, int):
        return node[part] if isinstance(node, list) and part < len(node) else None
    return node.get(part) if isinstance(node, Mapping) else None


def with_values(document: Mapping[str, Any], values: Mapping[tuple[str | int, ...], float | int]) -> dict[str, Any]:
    """A deep copy of ``document`` with each concrete path set (missing mappings created on the way)."""
    out: dict[str, Any] = copy.deepcopy(dict(document))
    for path, value in values.items():
        node: Any = out
        for part, following in itertools.pairwise(path):
            child = step_into(node, part)
            if child is None:
                child = [] if isinstance(following, int) else {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return out


# ------------------------------------------------------------------------------------ the defaults


def _around(path: str, current: float, *, integer: bool = False, floor: float = 0.0, cap: float = math.inf,
            spread: float = 0.5) -> Parameter | None:
    low, high = max(floor, current * (1 - spread)), min(cap, current * (1 + spread))
    if integer:
        low, high = float(math.floor(low)), float(math.ceil(high))
    if not low < high:
        return None
    return Parameter(path, low, high, integer)


def _rule_parameter(direction: str, policy: ScalingPolicy) -> Parameter | None:
    rules = policy.behavior.scale_up if direction == "scaleUp" else policy.behavior.scale_down
    if not rules.policies:
        return None
    rule = rules.policies[0]
    path = f"spec.behavior.{direction}.policies[0].value"
    if rule.type is RuleType.PERCENT:
        low, high = (25.0, 400.0) if direction == "scaleUp" else (5.0, 100.0)
    else:
        low, high = 1.0, float(max(8, 2 * rule.value))
    return Parameter(path, low, high, integer=True)


def default_space(policy: ScalingPolicy, *, replica_slots: int | None = None) -> TuningSpace:
    """The parameters ``tune`` searches when none are declared, from what the policy uses.

    ``replica_slots`` (one replica's batch limit, from the fleet model) bounds an SLO policy's
    concurrency prior when the policy states none.
    """
    found: list[Parameter | None] = []
    for metric in policy.metrics:
        current = metric.target.milli / 1000.0
        if metric.target.type is TargetType.UTILIZATION:
            found.append(_around(f"spec.metrics[{metric.name}].target.averageUtilization", current,
                                 integer=True, floor=1, cap=100))
        elif current > 0:
            field = "averageValue" if metric.target.type is TargetType.AVERAGE_VALUE else "value"
            found.append(_around(f"spec.metrics[{metric.name}].target.{field}", current))
    if policy.slo is not None:
        found.append(Parameter("spec.slo.forecastQuantile", 0.5, 0.99))
        prior = policy.slo.concurrency_prior
        if prior is not None:
            found.append(_around("spec.slo.concurrencyPerReplica", prior, floor=1))
        elif replica_slots is not None and replica_slots >= 2:
            found.append(Parameter("spec.slo.concurrencyPerReplica", max(1.0, math.floor(replica_slots / 4)),
                                   float(replica_slots), integer=True))
    if policy.predictive is not None:
        found.append(Parameter("spec.predictive.quantile", 0.5, 0.99))
        if policy.warm_pool is not None:
            low = float(policy.warm_pool.min_spare)
            found.append(Parameter("spec.warmPool.maxSpare", low, max(low + 4, 2.0 * policy.warm_pool.max_spare),
                                   integer=True))
    window = policy.behavior.scale_down.stabilization_window_s  # its range stops at 3600 s, the HPA's cap
    top = float(min(3600, max(600, 2 * window)))
    found.append(Parameter("spec.behavior.scaleDown.stabilizationWindowSeconds", 0.0, top, integer=True))
    found.append(_rule_parameter("scaleUp", policy))
    found.append(_rule_parameter("scaleDown", policy))
    return TuningSpace(tuple(p for p in found if p is not None))
