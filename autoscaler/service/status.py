"""The ``status`` of a ScalingPolicy object, built from what the controller knows after a tick. Pure:
values in, a dict out; the leader writes it (``PATCH .../status``, a merge patch, :func:`status_patch`)
only when :func:`status_differs` says it means something new, or its wording is older than
:data:`MESSAGE_REFRESH_S`.

Conditions (metav1.Condition; ``lastTransitionTime`` moves only when a condition's status changes):

* ``Ready``: the policy loaded and its target could be read. False with ``InvalidSpec`` or
  ``TargetConflict`` (refused by the loader: :func:`refused_status`) or ``TargetUnreadable``.
* ``Active``: the last decision came from metrics. False when it came from the fallback rule
  (``Fallback``), a hold on unavailable signals (``FailedGetExternalMetric``), a pause (``Paused``),
  a target scaled to zero by someone else (``ScalingDisabled``), or when the controller refuses to act
  (``HPAConflict``, ``TargetConflict``) or cannot run at all (then it carries Ready's reason). Its
  reason is the printer column "Reason": what the policy is doing, or why it is not.
  A write that failed keeps Active True with reason ``FailedRescale``.
* ``Fallback``: the fallback rule is in force (signals failed past ``failureThreshold``).
* ``Paused``: writes frozen by the paused annotations.

It takes plain values (the outcome as its string, e.g. ``"hpa-present"``): importing the controller
here would make a cycle once the controller imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from autoscaler.core.model import Decision, Reason
from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.slo import CapacityEstimate
from autoscaler.policy.loader import LoadResult

__all__ = [
    "INVALID_SPEC",
    "TARGET_CONFLICT",
    "object_refusals",
    "policy_status",
    "refused_status",
    "rfc3339",
    "status_differs",
    "status_patch",
]

INVALID_SPEC = "InvalidSpec"
TARGET_CONFLICT = "TargetConflict"
MAX_MESSAGE_CHARS = 1024
"""Condition and decision messages are cut here: the status is read in ``kubectl get -o wide``."""

# Decisions that are not the metrics speaking: Active False, with the decision's reason.
_NOT_FROM_METRICS = frozenset({Reason.FALLBACK, Reason.METRICS_UNAVAILABLE, Reason.PAUSED, Reason.SCALING_DISABLED})
# Write outcomes (WriteOutcome values) where the controller refuses to act on the target.
_REFUSED = {
    "hpa-present": "HPAConflict",
    "hpa-check-failed": "HPACheckFailed",
    "target-owned": TARGET_CONFLICT,
    "pause-check-failed": "PauseCheckFailed",
}
_WRITE_FAILED = frozenset({"failed", "conflicts-exhausted", "reread-failed"})


def rfc3339(time_s: float) -> str:
    """A metav1.Time: UTC, whole seconds."""
    return datetime.fromtimestamp(math.floor(time_s), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 3] + "..."


def _conditions(
    wanted: list[tuple[str, str, str, str]], previous: Mapping[str, Any] | None, generation: int, now_s: float
) -> list[dict[str, Any]]:
    """Conditions from ``(type, status, reason, message)``, each keeping its previous
    ``lastTransitionTime`` while its status is unchanged."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or [] if isinstance(c, Mapping)}
    out = []
    for kind, status, reason, message in wanted:
        old = before.get(kind)
        same = old is not None and old.get("status") == status and old.get("lastTransitionTime")
        out.append(
            {
                "type": kind,
                "status": status,
                "observedGeneration": generation,
                "lastTransitionTime": old["lastTransitionTime"] if same and old else rfc3339(now_s),
                "reason": reason,
                "message": _short(message),
            }
        )
    return out


def _active(decision: Decision, outcome: str) -> tuple[str, str, str]:
    if outcome in _REFUSED:
        return "False", _REFUSED[outcome], f"not acting on the target ({outcome}): {decision.message}"
    if decision.reason in _NOT_FROM_METRICS:
        return "False", decision.reason.value, decision.message
    if outcome in _WRITE_FAILED:
        return "True", "FailedRescale", f"the write failed ({outcome}): {decision.message}"
    return "True", decision.reason.value, decision.message


def _capacity(capacity: CapacityEstimate) -> dict[str, Any]:
    return {
        "perReplica": round(capacity.per_replica, 2),
        "basis": capacity.origin,
        "message": _short(capacity.explain()),
    }


def _forecast(decision: Decision) -> dict[str, Any] | None:
    forecast = decision.forecast
    if forecast is None:
        return None
    return {
        "point": round(forecast.point, 3),
        "upper": round(forecast.upper, 3),
        "quantile": forecast.quantile,
        "horizonSeconds": round(forecast.horizon_s, 1),
        "model": forecast.model,
    }


def policy_status(
    *,
    policy: ScalingPolicy,
    decision: Decision | None,
    outcome: str,
    now_s: float,
    previous: Mapping[str, Any] | None = None,
    last_scale_s: float | None = None,
    ready_replicas: int | None = None,
    capacity: CapacityEstimate | None = None,
    target_error: str | None = None,
    invalid: str | None = None,
    observed_generation: int | None = None,
    paused_by: str | None = None,
) -> dict[str, Any]:
    """The status after one tick of ``policy``. ``invalid``: the object's newer generation
    (``observed_generation``) was refused for this reason while ``policy``, its last valid generation,
    keeps running: Ready is False with :data:`INVALID_SPEC` and says so. ``decision`` is None when the
    target could not be read (then ``target_error`` says why, and Ready is False); ``outcome`` is the controller's
    ``WriteOutcome`` value; ``last_scale_s`` the last time the autoscaler changed the target's replicas
    (None: keep the previous ``lastScaleTime``); ``capacity`` an SLO policy's learned capacity."""
    generation = observed_generation if observed_generation is not None else policy.generation or 0
    paused = policy.pause is not None or outcome == "paused" or paused_by is not None
    by = "the policy's paused annotations" if paused_by in (None, "annotation") else f"the {paused_by}"
    paused_condition = ("Paused", "True", "PausedByAnnotation", f"writes frozen by {by}")
    if not paused:
        paused_condition = ("Paused", "False", "NotPaused", "")
    if decision is None:
        why = target_error or "the target could not be read"
        wanted = [
            ("Ready", "False", "TargetUnreadable", why),
            ("Active", "False", "TargetUnreadable", why),
            ("Fallback", "Unknown", "TargetUnreadable", ""),
            paused_condition,
        ]
        status: dict[str, Any] = {"observedGeneration": generation, "mode": policy.mode.value}
    else:
        fallback = decision.reason is Reason.FALLBACK
        holding = decision.reason is Reason.METRICS_UNAVAILABLE
        wanted = [
            ("Ready", "True", "TargetReadable", f"{policy.target.kind} {policy.target.name} read"),
            ("Active", *_active(decision, outcome)),
            (
                "Fallback",
                "True" if fallback else "False",
                "Fallback" if fallback else ("MetricsUnavailable" if holding else "MetricsAvailable"),
                decision.message if fallback or holding else "",
            ),
            paused_condition,
        ]
        status = {
            "observedGeneration": generation,
            "desiredReplicas": decision.desired_replicas,
            "currentReplicas": decision.current_replicas,
            "mode": policy.mode.value,
            "lastDecision": {
                "time": rfc3339(now_s),
                "reason": decision.reason.value,
                "message": _short(decision.message),
            },
        }
        if ready_replicas is not None:
            status["readyReplicas"] = ready_replicas
        if capacity is not None:
            status["capacity"] = _capacity(capacity)
        if (forecast := _forecast(decision)) is not None:
            status["forecast"] = forecast
    if invalid is not None:
        kept = f"generation {policy.generation or 0} keeps running"
        wanted[0] = ("Ready", "False", INVALID_SPEC, f"{invalid}\n({kept})")
    status["conditions"] = _conditions(wanted, previous, generation, now_s)
    scaled = rfc3339(last_scale_s) if last_scale_s is not None else (previous or {}).get("lastScaleTime")
    if scaled:
        status["lastScaleTime"] = scaled
    return status


def refused_status(
    *, generation: int, reason: str, message: str, now_s: float, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The status of an object the loader refused: ``reason`` is :data:`INVALID_SPEC` or
    :data:`TARGET_CONFLICT`, ``message`` the problem (field and value, or the other policy). Ready and
    Active are False with that reason; nothing of a decision is kept but the last scale time."""
    wanted = [
        ("Ready", "False", reason, message),
        ("Active", "False", reason, message),
        ("Fallback", "Unknown", reason, ""),
        ("Paused", "Unknown", reason, ""),
    ]
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": _conditions(wanted, previous, generation, now_s),
    }
    if previous and previous.get("lastScaleTime"):
        status["lastScaleTime"] = previous["lastScaleTime"]
    return status


def object_refusals(result: LoadResult) -> dict[str, tuple[str, str]]:
    """For each refused API object (by its source, e.g. ``ScalingPolicy team-a/chat``): the reason
    (:data:`TARGET_CONFLICT` when another policy owns its target, else :data:`INVALID_SPEC`) and the
    message, every problem of the object on its own line (without the object's name)."""
    conflicted = {conflict.problem.file for conflict in result.conflicts}
    messages: dict[str, list[str]] = {}
    for problem in result.errors:
        if problem.line is None and problem.file.startswith("ScalingPolicy "):
            messages.setdefault(problem.file, []).append(str(problem).removeprefix(f"{problem.file}: "))
    return {
        source: (TARGET_CONFLICT if source in conflicted else INVALID_SPEC, "\n".join(lines))
        for source, lines in messages.items()
    }


MESSAGE_REFRESH_S = 300.0
"""How stale a status's messages may get: they carry per-tick figures (a metric's value, "failing for N
ticks", "learned from N ticks"); comparing them would write the status of every policy every tick."""

_FIGURES = ("observedGeneration", "desiredReplicas", "currentReplicas", "readyReplicas", "mode", "lastScaleTime")


def _meaning(status: Mapping[str, Any]) -> Any:
    """What a status says, without its per-tick wording: each condition's type, status and reason, the
    replica figures, the last decision's reason, the learned capacity's basis."""
    conditions = status.get("conditions") or []
    return (
        tuple(
            (c.get("type"), c.get("status"), c.get("reason"))
            for c in conditions if isinstance(c, Mapping)
        ),
        tuple(status.get(key) for key in _FIGURES),
        (status.get("lastDecision") or {}).get("reason"),
        (status.get("capacity") or {}).get("basis"),
    )


def _decided_at(status: Mapping[str, Any]) -> float | None:
    text = (status.get("lastDecision") or {}).get("time")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _without_timestamps(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_timestamps(v) for k, v in value.items() if k not in ("lastTransitionTime", "time")}
    if isinstance(value, list):
        return [_without_timestamps(v) for v in value]
    return value


def status_differs(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], *, refresh_s: float = MESSAGE_REFRESH_S
) -> bool:
    """True when ``new`` should be written over ``old``: it says something else (a condition's status or
    reason, a replica figure, the generation, a scale, the decision's reason), or ``old``'s wording is
    older than ``refresh_s`` (messages and figures such as the forecast are refreshed that often, not at
    every tick: at 10,000 policies a write per policy per tick is a write storm on the API server)."""
    if old is None:
        return True
    if _meaning(old) != _meaning(new):
        return True
    before, after = _decided_at(old), _decided_at(new)
    if before is None or after is None:  # no decision (a refused object): its words are not per-tick figures
        return bool(_without_timestamps(old) != _without_timestamps(new))
    return after - before >= refresh_s


def status_patch(new: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The merge patch (``application/merge-patch+json``) of ``/status`` that turns ``previous`` into
    ``new``: a field ``new`` no longer has is set to null (a merge patch keeps what it does not name)."""
    body: dict[str, Any] = dict(new)
    for key in previous or {}:
        if key not in body:
            body[key] = None
    return {"status": body}
