"""The ScalingPolicy status the leader writes (``autoscaler.service.status``).

Case matrix:
  outcomes     a metrics decision written (Ready, Active True with the decision's reason) | within
               tolerance, nothing to write | fallback (Active False, Fallback True) | hold on unavailable
               signals below the threshold (Active False, Fallback False MetricsUnavailable) | paused |
               an HPA on the target, the target owned by another policy (Active False) | a failed write
               (Active True, FailedRescale) | target unreadable (Ready False)
  refused      InvalidSpec and TargetConflict from a real load: Ready and Active False with the
               loader's message; the last scale time survives
  transitions  lastTransitionTime kept while a condition's status is unchanged, moved when it changes;
               observedGeneration follows the policy's generation
  writes       status_differs on meaning, wording refreshed every 5 min; status_patch nulls what disappeared
  extras       capacity and forecast when there are some; every status validates against the CRD
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from autoscaler.core.model import Decision, Reason
from autoscaler.core.slo import CapacityEstimate
from autoscaler.forecast.select import Forecast
from autoscaler.policy.crd import scaling_policy_crd
from autoscaler.policy.loader import load_policy_objects
from autoscaler.service.status import (
    INVALID_SPEC,
    TARGET_CONFLICT,
    object_refusals,
    policy_status,
    refused_status,
    rfc3339,
    status_differs,
    status_patch,
)

T0 = 1_800_000_000.0
OBJECT: dict[str, Any] = {
    "apiVersion": "inference-autoscaler.io/v1alpha1",
    "kind": "ScalingPolicy",
    "metadata": {"name": "chat", "namespace": "team-a", "generation": 4},
    "spec": {
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat-llm"},
        "maxReplicas": 10,
        "metrics": [{"name": "queue", "source": {"preset": "vllm.queue_depth"},
                     "target": {"type": "AverageValue", "averageValue": 5}}],
    },
}
(POLICY,) = load_policy_objects([OBJECT]).policies
STATUS_SCHEMA = scaling_policy_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def valid(status: dict[str, Any]) -> dict[str, Any]:
    errors = [e.message for e in jsonschema.Draft4Validator(STATUS_SCHEMA).iter_errors(status)]
    assert errors == []
    return status


@pytest.mark.parametrize(
    ("reason", "outcome", "expected"),
    [
        (Reason.SCALE_UP, "written", {"Ready": ("True", "TargetReadable"), "Active": ("True", "ScaleUp"),
                                      "Fallback": ("False", "MetricsAvailable"), "Paused": ("False", "NotPaused")}),
        (Reason.WITHIN_TOLERANCE, "none", {"Active": ("True", "DesiredWithinRange")}),
        (Reason.FALLBACK, "written", {"Active": ("False", "Fallback"), "Fallback": ("True", "Fallback")}),
        (Reason.METRICS_UNAVAILABLE, "none", {"Active": ("False", "FailedGetExternalMetric"),
                                              "Fallback": ("False", "MetricsUnavailable")}),
        (Reason.PAUSED, "paused", {"Active": ("False", "Paused"), "Paused": ("True", "PausedByAnnotation")}),
        (Reason.SCALE_UP, "hpa-present", {"Ready": ("True", "TargetReadable"), "Active": ("False", "HPAConflict")}),
        (Reason.SCALE_UP, "target-owned", {"Active": ("False", TARGET_CONFLICT)}),
        (Reason.SCALE_DOWN, "conflicts-exhausted", {"Active": ("True", "FailedRescale")}),
        (Reason.SCALING_DISABLED, "none", {"Active": ("False", "ScalingDisabled")}),
    ],
)
def test_conditions_for_each_outcome(reason: Reason, outcome: str, expected: dict[str, tuple[str, str]]) -> None:
    decision = Decision(5, 3, reason, f"{reason.value}: queue 40 over 5 per replica")
    status = valid(policy_status(policy=POLICY, decision=decision, outcome=outcome, now_s=T0, ready_replicas=3))
    got = conditions(status)
    assert set(got) == {"Ready", "Active", "Fallback", "Paused"}
    assert {k: got[k] for k in expected} == expected
    assert (status["desiredReplicas"], status["currentReplicas"], status["readyReplicas"]) == (5, 3, 3)
    assert status["observedGeneration"] == 4 and status["mode"] == "patch"
    assert status["lastDecision"] == {"time": rfc3339(T0), "reason": reason.value, "message": decision.message}
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])


def test_an_unreadable_target_is_not_ready() -> None:
    status = valid(policy_status(policy=POLICY, decision=None, outcome="none", now_s=T0,
                                 target_error="deployments.apps chat-llm not found"))
    assert conditions(status)["Ready"] == ("False", "TargetUnreadable")
    assert status["conditions"][0]["message"] == "deployments.apps chat-llm not found"
    assert "desiredReplicas" not in status


def test_transition_time_moves_only_when_the_status_changes() -> None:
    up = Decision(5, 3, Reason.SCALE_UP, "up")
    first = policy_status(policy=POLICY, decision=up, outcome="written", now_s=T0, last_scale_s=T0)
    later = policy_status(policy=POLICY, decision=Decision(5, 5, Reason.WITHIN_TOLERANCE, "steady"), outcome="none",
                          now_s=T0 + 60, previous=first)
    times = {c["type"]: c["lastTransitionTime"] for c in later["conditions"]}
    assert set(times.values()) == {rfc3339(T0)}  # Active stayed True (its reason changed, not its status)
    assert later["lastScaleTime"] == rfc3339(T0)  # kept from the previous status
    failing = policy_status(policy=POLICY, decision=Decision(5, 5, Reason.FALLBACK, "fallback hold"),
                            outcome="none", now_s=T0 + 120, previous=later)
    times = {c["type"]: c["lastTransitionTime"] for c in failing["conditions"]}
    assert times == {"Ready": rfc3339(T0), "Active": rfc3339(T0 + 120), "Fallback": rfc3339(T0 + 120),
                     "Paused": rfc3339(T0)}


def test_observed_generation_follows_the_policy() -> None:
    (bumped,) = load_policy_objects([{**OBJECT, "metadata": {**OBJECT["metadata"], "generation": 5}}]).policies
    status = policy_status(policy=bumped, decision=Decision(1, 1, Reason.WITHIN_TOLERANCE, "ok"), outcome="none",
                           now_s=T0)
    assert status["observedGeneration"] == 5


def test_status_differs_on_meaning_and_refreshes_wording_every_five_minutes() -> None:
    decision = Decision(5, 5, Reason.WITHIN_TOLERANCE, "steady at 5")
    a = policy_status(policy=POLICY, decision=decision, outcome="none", now_s=T0)
    b = policy_status(policy=POLICY, decision=decision, outcome="none", now_s=T0 + 15)
    assert a != b and not status_differs(a, b)
    # the same meaning with other per-tick figures in the messages: not written...
    reworded = policy_status(policy=POLICY, decision=Decision(5, 5, Reason.WITHIN_TOLERANCE, "steady at 5 (q=9.8)"),
                             outcome="none", now_s=T0 + 15, previous=a)
    assert not status_differs(a, reworded)
    # ...until the written wording is five minutes old
    later = policy_status(policy=POLICY, decision=Decision(5, 5, Reason.WITHIN_TOLERANCE, "steady at 5 (q=9.9)"),
                          outcome="none", now_s=T0 + 300, previous=a)
    assert status_differs(a, later)
    c = policy_status(policy=POLICY, decision=Decision(6, 5, Reason.SCALE_UP, "up"), outcome="written", now_s=T0 + 30,
                      previous=a)
    assert status_differs(a, c)
    d = copy.deepcopy(b)
    d["lastScaleTime"] = rfc3339(T0)
    assert status_differs(b, d)
    assert status_differs(None, a)


def test_status_patch_nulls_what_disappeared() -> None:
    before = policy_status(policy=POLICY, decision=Decision(5, 5, Reason.WITHIN_TOLERANCE, "ok"), outcome="none",
                           now_s=T0, capacity=CapacityEstimate(slots=8.0, origin="observed"))
    after = refused_status(generation=5, reason=INVALID_SPEC, message="spec.maxReplicas = 0: must be >= 1", now_s=T0,
                           previous=before)
    patch = status_patch(after, before)["status"]
    assert patch["capacity"] is None and patch["desiredReplicas"] is None and patch["lastDecision"] is None
    assert patch["observedGeneration"] == 5


def test_capacity_and_forecast_when_there_are_some() -> None:
    forecast = Forecast(point=12.3456, upper=15.0, quantile=0.9, horizon_s=180.0, model="seasonal-daily")
    decision = Decision(4, 3, Reason.PREDICTIVE, "forecast", forecast=forecast)
    status = valid(policy_status(policy=POLICY, decision=decision, outcome="written", now_s=T0,
                                 capacity=CapacityEstimate(slots=16.0, factor=0.75, origin="prior")))
    assert status["capacity"]["perReplica"] == 12.0 and status["capacity"]["basis"] == "prior"
    assert status["forecast"] == {"point": 12.346, "upper": 15.0, "quantile": 0.9, "horizonSeconds": 180.0,
                                  "model": "seasonal-daily"}
    plain = policy_status(policy=POLICY, decision=Decision(4, 3, Reason.SCALE_UP, "up"), outcome="none", now_s=T0)
    assert "capacity" not in plain and "forecast" not in plain


def test_refused_objects_from_a_real_load() -> None:
    bad = {**OBJECT, "metadata": {"name": "bad", "namespace": "team-a", "generation": 2},
           "spec": {**OBJECT["spec"], "minReplicas": -1}}
    rival = {**OBJECT, "metadata": {"name": "rival", "namespace": "team-a", "generation": 1}}
    result = load_policy_objects([OBJECT, bad, rival])
    refusals = object_refusals(result)
    assert refusals == {
        "ScalingPolicy team-a/bad": (INVALID_SPEC, "spec.minReplicas = -1: must be >= 0"),
        "ScalingPolicy team-a/rival": (TARGET_CONFLICT, refusals["ScalingPolicy team-a/rival"][1]),
    }
    assert "already has a policy: team-a/chat at ScalingPolicy team-a/chat" in refusals["ScalingPolicy team-a/rival"][1]
    previous = {"lastScaleTime": rfc3339(T0 - 600), "conditions": [
        {"type": "Ready", "status": "True", "reason": "TargetReadable", "message": "", "lastTransitionTime": rfc3339(T0 - 900)}]}
    reason, message = refusals["ScalingPolicy team-a/bad"]
    status = valid(refused_status(generation=2, reason=reason, message=message, now_s=T0, previous=previous))
    assert conditions(status) == {"Ready": ("False", INVALID_SPEC), "Active": ("False", INVALID_SPEC),
                                  "Fallback": ("Unknown", INVALID_SPEC), "Paused": ("Unknown", INVALID_SPEC)}
    assert status["conditions"][0]["message"] == "spec.minReplicas = -1: must be >= 0"
    assert status["conditions"][0]["lastTransitionTime"] == rfc3339(T0)  # True -> False: a transition
    assert status["lastScaleTime"] == rfc3339(T0 - 600)
