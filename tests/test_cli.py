"""The CLI: validate (exit codes, one line per error), replay (the README's line shapes, decisions taken
as applied, malformed input named by line), schema (a JSON Schema that accepts our examples and
rejects bad documents), the installed console script, and the exit status of each kind of error
(1 an invalid input document, 2 usage, 3 a signal unavailable, 4 Kubernetes; listed by ``--help``).
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from kube_standin import write_kubeconfig

from autoscaler.backtest import BacktestError
from autoscaler.cli import main
from autoscaler.commands.common import Exit
from autoscaler.errors import AutoscalerError, PolicyError
from autoscaler.prometheus import PrometheusAuthError, PrometheusUnreachable
from autoscaler.replay import ObservationError
from autoscaler.service.kube import KubeForbidden
from autoscaler.sim.scenario import ScenarioError
from autoscaler.sim.trace import TraceError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent

POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  minReplicas: 1
  maxReplicas: 40
  metrics:
    - name: queue
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 5}
    - name: gpu
      source: {preset: dcgm.gpu_util}
      target: {type: Utilization, averageUtilization: 70}
  behavior:
    scaleUp: {policies: [{type: Pods, value: 2, periodSeconds: 60}]}
"""


def replay_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str]) -> tuple[int, list[dict], str]:
    (tmp_path / "p.yaml").write_text(POLICY)
    (tmp_path / "obs.jsonl").write_text("\n".join(lines) + "\n")
    code = main(["replay", "--policy", str(tmp_path / "p.yaml"), "--observations", str(tmp_path / "obs.jsonl")])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_replay_line_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, (record,), _ = replay_lines(
        tmp_path,
        capsys,
        [
            '{"time": 30.0, "replicas": 4, "readyReplicas": 4, "metrics": {"queue": 40.0, "gpu": null}}',
        ],
    )
    assert code == 0
    assert record["time"] == 30.0 and record["desiredReplicas"] == 6  # queue wants 8; Pods 2 per 60 s
    assert record["proposals"] == {"queue": 8} and record["unavailable"] == {"gpu": "missing"}
    assert record["reason"] == "ScaleUpLimit" and record["message"].startswith("scale up from 4 to 6")


def test_replay_takes_each_decision_as_applied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, records, _ = replay_lines(
        tmp_path,
        capsys,
        [
            '{"time": 0, "replicas": 2, "metrics": {"queue": 100, "gpu": 90}}',
            '{"time": 15, "replicas": 4, "metrics": {"queue": 100, "gpu": 90}}',
            '{"time": 60, "replicas": 4, "metrics": {"queue": 100, "gpu": 90}}',
        ],
    )
    # t=0: 2 + 2 = 4 (event recorded at 0). t=15: the event still counts: stay 4. t=60: 0 > 0 is false: 6.
    assert code == 0 and [r["desiredReplicas"] for r in records] == [4, 4, 6]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "obs.jsonl:2: not valid JSON"),
        ('{"time": 15, "metrics": {}}', "obs.jsonl:2: replicas is required"),
        ('{"time": 15, "replicas": -1}', "obs.jsonl:2: replicas = -1: must be a whole number >= 0"),
        ('{"time": 0, "replicas": 1}', "obs.jsonl:2: time = 0: must increase"),
        (
            '{"time": 15, "replicas": 1, "metrics": {"queu": 1}}',
            "obs.jsonl:2: metrics.queu: policy team-a/chat has no such metric",
        ),
        (
            '{"time": 15, "replicas": 1, "metrics": {"queue": "high"}}',
            "obs.jsonl:2: metrics.queue = 'high': must be a number or null",
        ),
        ('{"time": 15, "replicas": 1, "extra": 1}', "obs.jsonl:2: unknown field(s) extra"),
        ("[1, 2]", "obs.jsonl:2: expected a JSON object"),
    ],
)
def test_replay_malformed_line_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str, message: str
) -> None:
    code, records, err = replay_lines(tmp_path, capsys, ['{"time": 0, "replicas": 1, "metrics": {"queue": 1}}', bad])
    assert code == 1 and len(records) == 1 and message in err


def test_replay_missing_file_and_bad_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.yaml").write_text(POLICY.replace("maxReplicas: 40", "maxReplicas: 0"))
    assert main(["replay", "--policy", str(tmp_path / "p.yaml"), "--observations", str(tmp_path / "x")]) == 1
    assert "spec.maxReplicas = 0" in capsys.readouterr().err


def test_validate_exit_codes_and_error_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(REPO / "policies")]) == 0
    capsys.readouterr()
    (tmp_path / "team-a").mkdir()
    (tmp_path / "team-a" / "chat.yaml").write_text(POLICY.replace("maxReplicas: 40", "maxReplicas: 0"))
    (tmp_path / "team-a" / "ok.yaml").write_text(POLICY.replace("name: chat,", "name: ok,"))
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{tmp_path}/team-a/chat.yaml:7: spec.maxReplicas = 0: must be >= 1"]


def test_validate_show_effective_prints_merged_documents(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["validate", "--show-effective", "--root", str(REPO / "policies"), str(REPO / "policies/team-a/chat.yaml")]
        )
        == 0
    )
    (doc,) = list(yaml.safe_load_all(capsys.readouterr().out))
    assert doc["metadata"] == {"name": "chat", "namespace": "team-a", "labels": {"team": "search"}}
    assert doc["spec"]["behavior"]["scaleDown"]["policies"] == [{"type": "Percent", "value": 50, "periodSeconds": 60}]
    assert doc["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_schema_accepts_examples_and_rejects_bad_documents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    examples = [d for f in sorted((REPO / "policies").rglob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    assert len(examples) >= 5
    for doc in examples:
        assert not list(validator.iter_errors(doc)), doc["metadata"]
    bad = yaml.safe_load(POLICY)
    bad["spec"]["maxReplica"] = 3
    assert list(validator.iter_errors(bad))
    bad = yaml.safe_load(POLICY)
    bad["spec"]["metrics"][0]["source"]["preset"] = "nope"
    assert list(validator.iter_errors(bad))


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "inference-autoscaler"
    done = subprocess.run(
        [str(exe), "validate", "-q", str(REPO / "policies")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    assert done.stdout.startswith("inference-autoscaler ")


def test_replay_over_a_recorded_load_step(capsys: pytest.CaptureFixture[str]) -> None:
    """The ratio-target fixture policy over its recorded load step (tests/fixtures)."""
    code = main(
        [
            "replay",
            "--policy",
            str(FIXTURES / "policies/team-a/chat.yaml"),
            "--root",
            str(FIXTURES / "policies"),
            "--observations",
            str(FIXTURES / "observations/chat-load-step.jsonl"),
        ]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(records) == 100
    reasons = {r["reason"] for r in records}
    assert {"ScaleUpLimit", "FailedGetExternalMetric", "Fallback", "ScaleDownStabilized"} <= reasons
    assert max(r["desiredReplicas"] for r in records) > 2


def test_replay_of_the_slo_policy_over_the_bundled_demo_observations(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's replay: the README's SLO policy over its bundled load step (plain input names)."""
    code = main(
        [
            "replay",
            "--policy",
            str(REPO / "policies/team-a/chat.yaml"),
            "--root",
            str(REPO / "policies"),
            "--observations",
            str(REPO / "examples/observations/chat-load-step.jsonl"),
        ]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(records) > 150
    before = [r["desiredReplicas"] for r in records if r["time"] < 600]
    during = [r["desiredReplicas"] for r in records if 660 <= r["time"] < 1320]
    assert max(during) >= 2 * max(before)  # the step is met by scaling up
    failing = {"FailedGetExternalMetric", "Fallback"}
    assert all(r["proposals"].get("slo") is not None for r in records if r["reason"] not in failing)
    outage = [r for r in records if 1500 <= r["time"] < 1560]  # the exporter restart: hold, then fall back
    assert [r["reason"] for r in outage] == ["FailedGetExternalMetric"] * 3 + ["Fallback"]
    assert all(r["desiredReplicas"] >= prev["desiredReplicas"] for prev, r in itertools.pairwise(outage))
    assert "capacity ~" in records[-1]["message"] and "learned from" in records[-1]["message"]


def test_replay_keeps_the_demand_history_of_a_predictive_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = POLICY.replace(
        "  behavior:\n", "  predictive: {metric: queue, quantile: 0.9, seasonality: [daily], historyDays: 1}\n  behavior:\n"
    )
    (tmp_path / "p.yaml").write_text(policy)
    # 2.5 hours of a steady queue of 10 at 15 s ticks: enough for the forecaster to calibrate
    lines = [json.dumps({"time": 15.0 * i, "replicas": 2, "metrics": {"queue": 10.0, "gpu": 50.0},
                         "loadTimeSeconds": 120}) for i in range(600)]
    (tmp_path / "obs.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["replay", "--policy", str(tmp_path / "p.yaml"), "--observations", str(tmp_path / "obs.jsonl")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 600
    from autoscaler.policy import load_policy_file
    from autoscaler.replay import parse_observations, replay

    loaded = load_policy_file(tmp_path / "p.yaml")
    *_, (_item, decision, state) = replay(parse_observations(lines, loaded), loaded)
    assert state.demand is not None and len(state.demand.values) == 600
    assert decision.forecast is not None and decision.forecast.point == pytest.approx(10.0)
    assert decision.horizon_s == 120 + 15 and decision.predictive_replicas == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"time": 0, "replicas": 1, "loadTimeSeconds": -5}\n')
    assert main(["replay", "--policy", str(tmp_path / "p.yaml"), "--observations", str(bad)]) == 1
    assert "loadTimeSeconds = -5: must be a number of seconds > 0" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["replay"])  # argparse: --policy and --observations are required
    assert usage.value.code == Exit.USAGE == 2
    (tmp_path / "p.yaml").write_text(POLICY)
    args = ["backtest", "--policy", str(tmp_path / "p.yaml"), "--prometheus", "http://127.0.0.1:1"]
    assert main([*args, "--from", "200", "--to", "100"]) == 2
    assert "--to (100) must be after --from (200)" in capsys.readouterr().err
    assert main([*args, "--from", "yesterday"]) == 2
    assert "'yesterday' is not a time" in capsys.readouterr().err


def test_an_unreachable_prometheus_is_not_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "p.yaml").write_text(POLICY)
    args = ["--policy", str(tmp_path / "p.yaml"), "--prometheus", f"http://127.0.0.1:{port}", "--timeout", "1"]
    assert main(["backtest", *args, "--from", "100", "--to", "200"]) == Exit.UNAVAILABLE == 3
    assert "backtest of team-a/chat:" in capsys.readouterr().err
    (tmp_path / "p.yaml").write_text(POLICY.replace("maxReplicas: 40", "maxReplicas: 0"))
    assert main(["backtest", *args, "--from", "100", "--to", "200"]) == Exit.INVALID == 1


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (PolicyError("p.yaml:7: spec.maxReplicas = 0: must be >= 1"), Exit.INVALID),
        (ScenarioError("s.yaml: spec.trace is required"), Exit.INVALID),
        (TraceError("t.csv:1: expected the header"), Exit.INVALID),
        (ObservationError("obs.jsonl:2: not valid JSON"), Exit.INVALID),
        (BacktestError("no replica history"), Exit.INVALID),
        (PrometheusUnreachable("connection refused"), Exit.UNAVAILABLE),
        (PrometheusAuthError("forbidden", status=403), Exit.UNAVAILABLE),
        (KubeForbidden(403, "Forbidden", "cannot patch"), Exit.KUBERNETES),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(int(value)),
)
def test_each_kind_of_error_has_its_own_exit_status(
    error: AutoscalerError, status: Exit, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One hierarchy: input documents (1, still ValueErrors), signals (3), Kubernetes (4). A command that
    lets one escape exits with its kind's status and prints its message, not a traceback."""
    assert isinstance(error, AutoscalerError)
    assert isinstance(error, ValueError) == (status is Exit.INVALID)

    def fail(_args: object) -> int:
        raise error

    import autoscaler.commands.schema as schema

    monkeypatch.setattr(schema, "run", fail)
    assert main(["schema"]) == status
    assert capsys.readouterr().err == f"{error}\n"


def test_help_lists_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for status in Exit:
        assert f"\n  {int(status):<4} " in out


def test_relative_times_may_follow_from_and_to_as_separate_words() -> None:
    """`backtest --from -24h` as the README prints it (argparse alone answers "expected one argument")."""
    from autoscaler.cli import _join_dashed_values as join

    assert join(["backtest", "--from", "-24h", "--to", "-1.5h"]) == ["backtest", "--from=-24h", "--to=-1.5h"]
    assert join(["backtest", "--from", "--to", "now"]) == ["backtest", "--from", "--to", "now"]  # not a time
    assert join(["simulate", "--out", "--to"]) == ["simulate", "--out", "--to"]
    assert join(["backtest", "--from"]) == ["backtest", "--from"]


def test_configuration_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14, CLI manners: no traceback and no retry loop on a configuration error."""
    import socket

    assert main(["signals", "--policies", "policies/", "--prometheus", "localhost:9090"]) == 2
    assert "--prometheus localhost:9090: a URL such as http://prometheus:9090 is required" in capsys.readouterr().err
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")
    base = ["run", "--prometheus", "http://127.0.0.1:9", "--kubeconfig", str(kubeconfig), "--no-leader-elect",
            "--dry-run"]
    assert main([*base, "--policies", str(tmp_path / "nope")]) == 2
    assert "not a readable directory" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([*base, "--policies", "policies/", "--listen", f"127.0.0.1:{port}"]) == 2
    assert f"--listen 127.0.0.1:{port}: cannot listen" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--listen", "localhost"], "--listen localhost: HOST:PORT is required"),
    (["--listen", "127.0.0.1:99999"], "--listen 127.0.0.1:99999: HOST:PORT is required"),
    (["--ca-file", "/nonexistent.pem"], "--ca-file /nonexistent.pem: no such file"),
])
def test_more_configuration_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")
    args = ["run", "--prometheus", "http://127.0.0.1:9", "--kubeconfig", str(kubeconfig), "--no-leader-elect",
            "--dry-run", "--policies", "policies/", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_listen_accepts_ipv6_brackets() -> None:
    from autoscaler.commands.common import listen_address

    assert listen_address("[::1]:8080") == ("::1", 8080)
    assert listen_address(":9090") == ("0.0.0.0", 9090)
