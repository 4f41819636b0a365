"""Write outcomes as values: each outcome of a scale write, produced by a real fault on the API stand-in,
and the Events the stand-in received for it (the one table ``OUTCOMES`` maps outcome -> Event).

Case matrix:
  written                    -> Normal ScaleUp
  HPA present                -> Warning HPAConflict, no write
  HPA check failed (403)     -> Warning FailedRescale, no write       (was silently dropped)
  conflicts exhausted (409s) -> Warning FailedRescale, writes retried 1 + 3 times
  re-read failed after a 409 -> Warning FailedRescale
  write failed (500s)        -> Warning FailedRescale
  lost leadership            -> no Event at all (a replica that is not the leader sends nothing)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kube_standin import KubeStandIn
from service_harness import Flag, ScriptedSignals, make_controller, policy_text

from autoscaler.service.controller import MAX_CONFLICT_RETRIES, OUTCOMES, WriteOutcome

T0 = 1_800_000_000.0


def events(kube: KubeStandIn) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in kube.list_objects("", "v1", "events", "team-a")]


def scale_puts(kube: KubeStandIn) -> list[int]:
    return [r.status for r in kube.requests if r.method == "PUT" and r.path.endswith("/chat-llm/scale")]


def test_every_outcome_has_a_row() -> None:
    assert set(OUTCOMES) == set(WriteOutcome)


@pytest.mark.parametrize(
    ("fault", "outcome", "expected_events", "puts"),
    [
        (None, WriteOutcome.WRITTEN, [("Normal", "ScaleUp")], [200]),
        ("hpa", WriteOutcome.HPA_PRESENT, [("Warning", "HPAConflict")], []),
        ("hpa-403", WriteOutcome.HPA_CHECK_FAILED, [("Warning", "FailedRescale")], []),
        ("409s", WriteOutcome.CONFLICTS_EXHAUSTED, [("Warning", "FailedRescale")], [409] * (MAX_CONFLICT_RETRIES + 1)),
        ("409-then-read-500", WriteOutcome.REREAD_FAILED, [("Warning", "FailedRescale")], [409]),
        ("500s", WriteOutcome.FAILED, [("Warning", "FailedRescale")], [500, 500]),
    ],
)
async def test_outcome_events(
    tmp_path: Path, fault: str | None, outcome: WriteOutcome, expected_events: list[tuple[str, str]], puts: list[int]
) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        if fault == "hpa":
            kube.put_object(
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                {
                    "metadata": {"name": "chat-cpu", "namespace": "team-a"},
                    "spec": {
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat-llm"},
                        "minReplicas": 1,
                        "maxReplicas": 5,
                    },
                },
            )
        elif fault == "hpa-403":
            kube.fail_next("GET", r"/horizontalpodautoscalers$", 403)
        elif fault == "409s":
            kube.fail_next("PUT", r"/chat-llm/scale$", 409, times=MAX_CONFLICT_RETRIES + 1)
        elif fault == "409-then-read-500":
            kube.fail_next("PUT", r"/chat-llm/scale$", 409)
            original = kube._error

            def arm(request, err, body):  # type: ignore[no-untyped-def]
                if err.code == 409:  # every re-read after the conflict fails
                    kube.fail_next("GET", r"/chat-llm/scale$", 500, times=50)
                return original(request, err, body)

            kube._error = arm  # type: ignore[method-assign]
        elif fault == "500s":
            kube.fail_next("PUT", r"/chat-llm/scale$", 500, times=2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        (record,) = await controller.tick(T0)
        await client.close()
    assert record.outcome is outcome, record.error
    assert events(kube) == expected_events
    assert scale_puts(kube) == puts
    assert record.wrote is (outcome is WriteOutcome.WRITTEN)


async def test_lost_leadership_sends_no_event(tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(policy_text())
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    flag = Flag()
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals, leadership=flag)

        def lose_on_hpa_list(method: str, path: str) -> None:
            if path.endswith("/horizontalpodautoscalers"):
                flag.leading = False  # the lease is lost after the tick started, before the write

        kube.after_request.append(lose_on_hpa_list)
        (record,) = await controller.tick(T0)
        await client.close()
    assert record.outcome is WriteOutcome.LOST_LEADERSHIP
    assert events(kube) == [] and scale_puts(kube) == []
