"""Replay: drive the core over a recorded observation stream (JSON lines), one decision per line.

Input line:  ``{"time": 30.0, "replicas": 4, "readyReplicas": 4, "metrics": {"queue": 40.0, "gpu": null}}``
(optional ``statusReplicas``, defaulting to ``replicas``; ``readyReplicas`` defaults to ``replicas``;
optional ``loadTimeSeconds``, the measured load time for predictive policies). For a predictive policy
the demand history is kept from the lines, exactly as the service and the simulator keep it.
Output line: ``{"time": 30.0, "desiredReplicas": 8, "reason": "...", "message": "...", "proposals": {...}}``.

Each tick's decision is taken as applied (the scale event is recorded at that tick's time); the next
line's ``replicas`` is the truth for the next tick.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from autoscaler.core import Decision, MetricReading, Unavailable
from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.step import TargetReading, TargetState, step
from autoscaler.errors import InputError

__all__ = ["ObservationError", "TimedObservation", "decision_record", "parse_observations", "replay"]


class ObservationError(InputError):
    """A malformed observation line; the message names the file and line number."""


@dataclass(frozen=True, slots=True)
class TimedObservation:
    time_s: float
    reading: TargetReading


def _count(raw: dict[str, Any], key: str, default: int | None, where: str) -> int:
    value = raw.get(key, default)
    if value is None:
        raise ObservationError(f"{where}: {key} is required")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 0:
        raise ObservationError(f"{where}: {key} = {value!r}: must be a whole number >= 0")
    return int(value)


def parse_observations(
    lines: Iterable[str], policy: ScalingPolicy, source: str = "<input>"
) -> Iterator[TimedObservation]:
    """Parse and check observation lines lazily; blank lines are skipped."""
    known = [m.name for m in policy.signals]
    previous_time = -math.inf
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ObservationError(f"{where}: not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(raw, dict):
            raise ObservationError(f"{where}: expected a JSON object")
        unknown = sorted(
            set(raw) - {"time", "replicas", "readyReplicas", "statusReplicas", "metrics", "loadTimeSeconds"}
        )
        if unknown:
            raise ObservationError(f"{where}: unknown field(s) {', '.join(unknown)}")
        time_s = raw.get("time")
        if isinstance(time_s, bool) or not isinstance(time_s, int | float) or not math.isfinite(time_s):
            raise ObservationError(f"{where}: time = {time_s!r}: must be a number of seconds")
        if time_s <= previous_time:
            raise ObservationError(f"{where}: time = {time_s}: must increase (previous {previous_time})")
        previous_time = float(time_s)
        replicas = _count(raw, "replicas", None, where)
        ready = _count(raw, "readyReplicas", replicas, where)
        status = _count(raw, "statusReplicas", replicas, where)
        metrics_raw = raw.get("metrics", {})
        if not isinstance(metrics_raw, dict):
            raise ObservationError(f"{where}: metrics must be an object of name -> number or null")
        readings: dict[str, MetricReading] = {}
        for given, value in metrics_raw.items():
            # An SLO policy's inputs may be written by their plain names (running, waiting, latency,
            # completions) when the policy has no metric of that name.
            name = given if given in known or f"slo:{given}" not in known else f"slo:{given}"
            if name not in known:
                raise ObservationError(
                    f"{where}: metrics.{given}: policy {policy.key} has no such metric (has: {', '.join(known)})"
                )
            if value is None:
                readings[name] = MetricReading.missing(Unavailable.MISSING, "null in observation")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise ObservationError(f"{where}: metrics.{given} = {value!r}: must be a number or null")
            else:
                readings[name] = MetricReading.of(float(value))
        load_time = raw.get("loadTimeSeconds")
        if load_time is not None and (
            isinstance(load_time, bool) or not isinstance(load_time, int | float) or not 0 < load_time < math.inf
        ):
            raise ObservationError(f"{where}: loadTimeSeconds = {load_time!r}: must be a number of seconds > 0")
        reading = TargetReading(
            spec_replicas=replicas,
            ready_replicas=ready,
            metrics=readings,
            status_replicas=status,
            # a measured load time, as one sample of the line's own (the step keeps the samples)
            load_times_s={} if load_time is None else {f"line-{number}": float(load_time)},
        )
        yield TimedObservation(float(time_s), reading)


def decision_record(time_s: float, decision: Decision) -> dict[str, Any]:
    return {
        "time": time_s,
        "desiredReplicas": decision.desired_replicas,
        "reason": decision.reason.value,
        "message": decision.message,
        "proposals": dict(decision.proposals),
        "unavailable": dict(decision.unavailable),
    }


def replay(
    observations: Iterable[TimedObservation], policy: ScalingPolicy, state: TargetState | None = None
) -> Iterator[tuple[TimedObservation, Decision, TargetState]]:
    """Run :func:`autoscaler.core.step.step` over the stream, carrying the per-target state (the
    demand history of a predictive policy included); every decision is taken as applied."""
    state = state or TargetState()
    for item in observations:
        decision, state = step(item.reading, state, policy, item.time_s)
        yield item, decision, state
