"""Backtest against a real Prometheus holding recorded history (promtool backfill): a queue that ramps
up and down over an hour, and the Deployment's real replicas (kube-state-metrics series) lagging it.

Checks: every tick's decision equals the core's on the same values (computed here from the recorded
functions, not read back), the open-loop state counts the target's real scale changes, the summary
and the files (backtest.json, backtest.png), the relative/RFC 3339 time parsing, and the clear error
when there is no replica history.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoscaler.cli import main
from autoscaler.commands.backtest import parse_time
from autoscaler.core import MetricReading, Observation, ScalerState, decide
from autoscaler.core.behavior import record_scale_event
from autoscaler.policy import load_policy_file

pytest_plugins = ["prometheus_server"]
pytest.register_assert_rewrite("prometheus_server")

from prometheus_server import RunningPrometheus, require_binary, start_prometheus  # noqa: E402

START = 1_706_000_000  # a fixed epoch: 2024-01-23
STEP = 15
POINTS = 240  # one hour
PODS = ("chat-llm-5f6d7c8b9-xbcdz", "chat-llm-5f6d7c8b9-q9z7m")  # the generated-name alphabet has no vowels

POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  minReplicas: 1
  maxReplicas: 30
  metrics:
    - name: queue
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 5}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 120}
"""


def queue_of(pod: int, step: int) -> float:
    """Per-pod waiting requests: up for 20 minutes, a plateau, then down."""
    level = min(step, 80) if step < 160 else max(0, 80 - (step - 160))
    return float(level // 2 + pod * 3)


def actual_replicas(step: int) -> int:
    """What the Deployment really had: a lagging step function."""
    return 2 if step < 40 else 6 if step < 90 else 10 if step < 200 else 4


def write_history(path: Path) -> None:
    lines = ["# HELP vllm:num_requests_waiting waiting", "# TYPE vllm:num_requests_waiting gauge"]
    for step in range(POINTS):
        for i, pod in enumerate(PODS):
            lines.append(
                f'vllm:num_requests_waiting{{namespace="team-a",pod="{pod}"}} {queue_of(i, step)} {START + step * STEP}'
            )
    for name in ("kube_deployment_spec_replicas", "kube_deployment_status_replicas_ready"):
        lines += [f"# HELP {name} replicas", f"# TYPE {name} gauge"]
        for step in range(POINTS):
            lines.append(
                f'{name}{{namespace="team-a",deployment="chat-llm"}} {actual_replicas(step)} {START + step * STEP}'
            )
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def recorded() -> Iterator[RunningPrometheus]:
    promtool = require_binary("promtool")
    root = Path(tempfile.mkdtemp(prefix="prom-backtest-"))
    data = root / "data"
    data.mkdir()
    write_history(root / "history.om")
    subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=24h",
            "-q",
            str(root / "history.om"),
            str(data),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = start_prometheus("global: {scrape_interval: 15s}\nscrape_configs: []\n", data)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_backtest_matches_the_core_on_recorded_history(
    recorded: RunningPrometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "chat.yaml").write_text(POLICY)
    out = tmp_path / "out"
    code = main(
        [
            "backtest",
            "--policy",
            str(tmp_path / "chat.yaml"),
            "--prometheus",
            recorded.url,
            "--from",
            str(START + 60 * STEP),
            "--to",
            str(START + (POINTS - 1) * STEP),
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    report = json.loads((out / "backtest.json").read_text())
    assert (out / "backtest.png").stat().st_size > 5000
    ticks = report["ticks"]
    assert len(ticks) == POINTS - 60 and report["summary"]["ticks"] == len(ticks)

    # The same decisions, from the recorded functions straight into the core (open loop).
    policy = load_policy_file(tmp_path / "chat.yaml")
    state, previous = ScalerState(), None
    for tick, step in zip(ticks, range(60, POINTS), strict=True):
        t = float(START + step * STEP)
        actual = actual_replicas(step)
        if previous is not None and actual != previous:
            state = record_scale_event(state, previous=previous, new=actual, behavior=policy.behavior, now=t)
        previous = actual
        total = sum(queue_of(i, step) for i in range(len(PODS)))
        observation = Observation(actual, actual, {"queue": MetricReading.of(total)}, actual)
        decision, state = decide(observation, state, policy, t, assume_applied=False)
        assert (tick["time"], tick["actual"], tick["desired"], tick["reason"]) == (
            t,
            actual,
            decision.desired_replicas,
            decision.reason.value,
        ), step
        assert tick["metrics"]["queue"] == total
    summary = report["summary"]
    assert 0 < summary["agreement"] < 1 and summary["ticksAbove"] > 0 and summary["ticksBelow"] > 0
    assert "agreement" in printed.out and "replicaHoursRecommended" in printed.out


def test_backtest_without_replica_history_says_what_to_do(
    recorded: RunningPrometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(POLICY.replace("name: chat-llm", "name: other"))
    code = main(
        [
            "backtest",
            "--policy",
            str(tmp_path / "p.yaml"),
            "--prometheus",
            recorded.url,
            "--from",
            str(START),
            "--to",
            str(START + 600),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "no replica history for Deployment/other" in err and "--replicas-query" in err


def test_time_parsing() -> None:
    assert parse_time("now", now=1000.0) == 1000.0
    assert parse_time("-6h", now=100_000.0) == 100_000.0 - 6 * 3600
    assert parse_time("-30m", now=10_000.0) == 10_000.0 - 1800
    assert parse_time("1706000000", now=0) == 1_706_000_000
    assert parse_time("2024-01-23T08:53:20Z", now=0) == 1_706_000_000
    with pytest.raises(Exception, match="is not a time"):
        parse_time("yesterday", now=0)
