"""One owner per target, in the running service (issue 16, item 3), on the API stand-in over HTTP.

Two policies naming one target used to both load and both write: the Deployment flipped between their
answers. Now the later claim (by file path, then position in the file) is refused, and refused the way
a target an HPA manages is: a Warning Event (``TargetConflict``), a counter, a record and a log line,
at the refused policy's interval. Across hot reloads the running policy keeps its target, whichever
file a new claim comes from, and whether the running policy's own file is later edited or broken.

Cases:
* two files, one target: one writer (one PUT), the TargetConflict Event names both policies;
* the kind and version spelled differently (apps/v1 vs apps/v1beta2, Deployment vs deployment): one target;
* a new file that sorts first claims a running policy's target: the running one keeps it; edits to the
  running one still apply; deleting it hands the target over;
* the running policy's file is broken while a new file claims its target: its last good version keeps it;
* a refused shadow policy sends nothing either; a dry run sends no Event but counts;
* policy reloads parse on a worker thread, not on the event loop.
"""

from __future__ import annotations

import threading
from pathlib import Path

from kube_standin import KubeStandIn
from service_harness import ScriptedSignals, make_controller, policy_text

from autoscaler.service.controller import OUTCOMES, WriteOutcome
from autoscaler.service.policies import PolicyDirectory

T0 = 1_800_000_000.0


def events(kube: KubeStandIn) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e["message"]) for e in kube.list_objects("", "v1", "events", "team-a")]


def scale_puts(kube: KubeStandIn) -> list[int]:
    return [r.status for r in kube.requests if r.method == "PUT" and r.path.endswith("/chat-llm/scale")]


def conflicts_counted(controller: object, policy: str) -> float:
    exposition = controller.telemetry.exposition().decode()  # type: ignore[attr-defined]
    prefix = f'inference_autoscaler_target_conflicts_total{{namespace="team-a",policy="{policy}"}} '
    lines = [line for line in exposition.splitlines() if line.startswith(prefix)]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_the_refusal_has_a_row() -> None:
    report = OUTCOMES[WriteOutcome.TARGET_OWNED]
    assert (report.event_type, report.event_reason, report.refused) == ("Warning", "TargetConflict", True)


async def test_two_policies_on_one_target_one_writer(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_text(name="chat"))
    (tmp_path / "b.yaml").write_text(policy_text(name="chat-copy"))
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)  # 40 waiting / 5 per replica -> 8
    signals.set("team-a/chat-copy", queue=10)  # would say 2: the two would fight
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 4)
        controller, client = make_controller(kube.url, tmp_path, signals)
        records = await controller.tick(T0)
        await controller.tick(T0 + 15)
        await controller.tick(T0 + 30)
        await client.close()
    assert scale_puts(kube) == [200]  # one writer, once; nothing flips back
    assert list(controller.entries) == ["team-a/chat"]
    by_policy = {r.policy: r for r in records}
    assert by_policy["team-a/chat"].outcome is WriteOutcome.WRITTEN
    refused = by_policy["team-a/chat-copy"]
    assert refused.outcome is WriteOutcome.TARGET_OWNED and refused.decision is None and not refused.wrote
    assert "team-a/chat" in refused.error and "a.yaml" in refused.error
    conflict_events = [e for e in events(kube) if e[1] == "TargetConflict"]
    assert len(conflict_events) == 1 and conflict_events[0][0] == "Warning"  # repeats bump its count
    assert "policy chat-copy" in conflict_events[0][2] and "team-a/chat" in conflict_events[0][2]
    assert conflicts_counted(controller, "chat-copy") == 3  # reported at every interval
    assert any("b.yaml" in str(e) and "a.yaml" in str(e) for e in controller.policy_source.errors)


async def test_kind_and_version_spelled_differently_are_one_target(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_text(name="chat"))
    other = policy_text(name="chat-beta").replace("apiVersion: apps/v1, kind: Deployment", "apiVersion: apps/v1beta2, kind: deployment")
    (tmp_path / "b.yaml").write_text(other)
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=40)
    signals.set("team-a/chat-beta", queue=40)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        records = await controller.tick(T0)
        await client.close()
    assert sorted((r.policy, r.outcome) for r in records) == [
        ("team-a/chat", WriteOutcome.WRITTEN),
        ("team-a/chat-beta", WriteOutcome.TARGET_OWNED),
    ]
    assert scale_puts(kube) == [200]


async def test_running_policy_keeps_its_target_across_reloads(tmp_path: Path) -> None:
    (tmp_path / "z-chat.yaml").write_text(policy_text(name="chat"))
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=10)  # 2 replicas: steady
    signals.set("team-a/intruder", queue=200)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        await controller.tick(T0)
        # A new file that sorts first (a- < z-) claims the running policy's target.
        (tmp_path / "a-intruder.yaml").write_text(policy_text(name="intruder"))
        records = await controller.tick(T0 + 15)
        assert list(controller.entries) == ["team-a/chat"]
        assert {r.policy: r.outcome for r in records}["team-a/intruder"] is WriteOutcome.TARGET_OWNED
        # The running policy's own edits still apply while the intruder is there.
        (tmp_path / "z-chat.yaml").write_text(policy_text(name="chat").replace("maxReplicas: 20", "maxReplicas: 12"))
        await controller.tick(T0 + 30)
        assert controller.entries["team-a/chat"].policy.max_replicas == 12
        assert list(controller.entries) == ["team-a/chat"]
        # Its file broken: the last good version keeps the target; the intruder is still refused.
        (tmp_path / "z-chat.yaml").write_text(policy_text(name="chat").replace("maxReplicas: 20", "maxReplicas: x"))
        await controller.tick(T0 + 45)
        assert list(controller.entries) == ["team-a/chat"] and "team-a/intruder" in controller.refusals
        assert scale_puts(kube) == []  # the intruder (which wants 40) never wrote
        # The owner removed: the target is free, the other policy takes it over.
        (tmp_path / "z-chat.yaml").unlink()
        records = await controller.tick(T0 + 60)
        await client.close()
    assert list(controller.entries) == ["team-a/intruder"] and controller.refusals == {}
    assert {r.policy: r.outcome for r in records}["team-a/intruder"] is WriteOutcome.WRITTEN


def test_stale_owner_keeps_target_against_a_new_file(tmp_path: Path) -> None:
    """At the directory level: the owner's file breaks and, in the same reload, a new file claims the
    target; the loader sees one valid claimant, the directory keeps the running one."""
    (tmp_path / "z.yaml").write_text(policy_text(name="chat"))
    source = PolicyDirectory(tmp_path)
    assert [p.key for p in source.reload().policies] == ["team-a/chat"]
    (tmp_path / "z.yaml").write_text(policy_text(name="chat").replace("minReplicas: 1", "minReplicas: -1"))
    (tmp_path / "a.yaml").write_text(policy_text(name="intruder"))
    result = source.reload()
    assert [p.key for p in result.policies] == ["team-a/chat"]
    assert [(c.policy.key, c.owner.key) for c in result.conflicts] == [("team-a/intruder", "team-a/chat")]
    assert any(e.file.endswith("a.yaml") and "team-a/chat" in e.message for e in result.errors)


async def test_a_refused_shadow_policy_sends_nothing_but_the_conflict(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_text(name="chat"))
    (tmp_path / "b.yaml").write_text(policy_text(name="chat-shadow", mode="shadow"))
    signals = ScriptedSignals()
    signals.set("team-a/chat", queue=10)
    signals.set("team-a/chat-shadow", queue=100)
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        await controller.tick(T0)
        await client.close()
    assert [e[1] for e in events(kube)] == ["TargetConflict"]  # no ShadowDecision from the refused one
    assert "team-a/chat-shadow" not in controller.published


async def test_dry_run_counts_the_conflict_without_an_event(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_text(name="chat"))
    (tmp_path / "b.yaml").write_text(policy_text(name="chat-copy"))
    signals = ScriptedSignals()
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals, dry_run=True)
        await controller.tick(T0)
        await client.close()
    assert events(kube) == []
    assert conflicts_counted(controller, "chat-copy") == 1


async def test_reload_parses_off_the_event_loop(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_text(name="chat"))
    signals = ScriptedSignals()
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        controller, client = make_controller(kube.url, tmp_path, signals)
        loop_thread = threading.get_ident()
        seen: list[int] = []
        reload = controller.policy_source.reload

        def spy(*, force: bool = False, objects=None):  # type: ignore[no-untyped-def]
            seen.append(threading.get_ident())
            return reload(force=force, objects=objects)

        controller.policy_source.reload = spy  # type: ignore[method-assign]
        await controller.tick(T0)
        await client.close()
    assert seen and all(ident != loop_thread for ident in seen)
