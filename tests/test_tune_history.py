"""``tune --prometheus``: tuning on recorded history in a real Prometheus (blocks made with promtool).

The recorded target, Deployment chat-llm in team-a, served 3 requests/s over two pods for two hours
(1.2 and 1.8/s), 100 generated and 200 prompt tokens per request; a pod of the Deployment ``chat``
(a name that prefixes chat-llm) served other traffic that must not be counted.

Case matrix:
  trace       read through the same per-target PromQL as backtest: the arrival rate, the mean output
              and prompt tokens per request are the recorded ones; the other Deployment is left out
  command     tune on the history end to end (fit on the first 90 minutes, held out the last 30): exit 0,
              tuned.yaml and a report whose fit part carries the recorded traffic, the KPA beside it
  no history  a target without request-rate history: exit 1, naming the target and the series read
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from autoscaler.cli import main
from autoscaler.policy import load_policy_file
from autoscaler.prometheus import PrometheusClient, PrometheusConfig
from autoscaler.prometheus.ranges import summed_range
from autoscaler.tune.history import history_trace

pytest_plugins = ["prometheus_server"]
pytest.register_assert_rewrite("prometheus_server")

from prometheus_server import RunningPrometheus, require_binary, start_prometheus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START = 1_706_000_000
STEP = 15
POINTS = 480  # two hours
PODS = {"chat-llm-5f6d7c8b9-xbcdz": 1.2, "chat-llm-5f6d7c8b9-q9z7m": 1.8, "chat-5c8b9d7f4-bcdfz": 50.0}
RATE = 3.0  # the chat-llm pods'
OUT_TOKENS, IN_TOKENS = 100.0, 200.0

POLICY = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  minReplicas: 1
  maxReplicas: 20
  metrics:
    - name: tokens
      source: {preset: vllm.generation_tokens_per_second}
      target: {type: AverageValue, averageValue: 60}
"""

SCENARIO = f"""\
apiVersion: inference-autoscaler.io/v1alpha1
kind: Simulation
metadata: {{name: recorded}}
spec:
  trace:
    path: unused.csv
    format: csv
    inputTokens: {{distribution: lognormal, median: 150, p95: 600}}
    outputTokens: {{distribution: lognormal, median: 80, p95: 300}}
  fleet:
    maxConcurrency: 8
    prefillTokensPerSecond: 20000
    decodeSecondsPerToken: 0.05
    loadTimeSeconds: {{distribution: fixed, value: 60}}
    initialReplicas: 1
  slo: {{latencySeconds: 2, metric: ttft}}
  policies: [{ROOT}/simulations/baselines/knative-kpa.yaml]
  seed: 3
"""


def write_history(path: Path) -> None:
    series = {"vllm:e2e_request_latency_seconds_count": 1.0, "vllm:generation_tokens_total": OUT_TOKENS,
              "vllm:prompt_tokens_total": IN_TOKENS}
    lines = []
    for name, per_request in series.items():
        lines += [f"# HELP {name} recorded", f"# TYPE {name} gauge"]  # counters' values; rate() reads them alike
        for step in range(POINTS):
            for pod, rate in PODS.items():
                value = rate * per_request * step * STEP
                lines.append(f'{name}{{namespace="team-a",pod="{pod}"}} {value} {START + step * STEP}')
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def recorded() -> Iterator[RunningPrometheus]:
    promtool = require_binary("promtool")
    root = Path(tempfile.mkdtemp(prefix="prom-tune-"))
    data = root / "data"
    data.mkdir()
    write_history(root / "history.om")
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h", "-q",
                    str(root / "history.om"), str(data)], check=True, capture_output=True, timeout=60)
    server = start_prometheus("global: {scrape_interval: 15s}\nscrape_configs: []\n", data)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


class Ranges:
    """The range reader ``backtest`` and ``tune`` use, over the real client."""

    def __init__(self, client: PrometheusClient) -> None:
        self.client = client

    async def series(self, expr: str, *, start_s: float, end_s: float, step_s: float) -> dict[float, float]:
        return await summed_range(self.client, expr, start_s=start_s, end_s=end_s, step_s=step_s)


def test_history_becomes_a_trace_with_the_recorded_rates(recorded: RunningPrometheus, tmp_path: Path) -> None:
    (tmp_path / "chat.yaml").write_text(POLICY)
    policy = load_policy_file(tmp_path / "chat.yaml")
    start, end = START + 120, START + (POINTS - 1) * STEP

    async def read() -> object:
        async with PrometheusClient(PrometheusConfig(url=recorded.url)) as client:
            return await history_trace(Ranges(client), policy, start_s=start, end_s=end, step_s=60.0,
                                       rng=np.random.default_rng(1))

    history = asyncio.run(read())
    trace = history.trace  # type: ignore[attr-defined]
    assert history.mean_rate_per_s == pytest.approx(RATE, rel=1e-6)  # type: ignore[attr-defined]
    assert "chat-llm" in history.queries["rate"]  # type: ignore[attr-defined]
    expected = RATE * history.steps * 60.0  # type: ignore[attr-defined]
    assert abs(len(trace) - expected) < 4 * np.sqrt(expected)  # Poisson counts at the recorded rate
    assert trace.output_tokens.mean() == pytest.approx(OUT_TOKENS, rel=0.05)
    assert trace.input_tokens.mean() == pytest.approx(IN_TOKENS, rel=0.05)
    assert trace.duration_s == pytest.approx(end - start, abs=120)


def test_tune_on_recorded_history(recorded: RunningPrometheus, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "chat.yaml").write_text(POLICY)
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    out = tmp_path / "out"
    code = main(["tune", "--policy", str(tmp_path / "chat.yaml"), "--scenario", str(tmp_path / "scenario.yaml"),
                 "--prometheus", recorded.url, "--from", str(START + 120), "--to", str(START + (POINTS - 1) * STEP),
                 "--param", "spec.metrics[tokens].target.averageValue=30:150", "--holdout", "30m", "--folds", "1",
                 "--trials", "8", "--workers", "1", "--no-plots", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "history: " in printed.err and "prometheus history of team-a/chat-llm" in printed.out
    report = json.loads((out / "report.json").read_text())
    (fold,) = report["folds"]
    fit_requests = fold["fit"]["current"]["requests"]
    assert abs(fit_requests - RATE * fold["originSeconds"]) < 5 * np.sqrt(RATE * fold["originSeconds"])
    assert len(fold["searches"][0]["trials"]) == 8 and "knative-kpa" in fold["heldOut"]
    assert load_policy_file(out / "tuned.yaml").name == "chat"


def test_a_target_without_history_is_an_input_error(recorded: RunningPrometheus, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "chat.yaml").write_text(POLICY.replace("name: chat-llm", "name: other"))
    (tmp_path / "scenario.yaml").write_text(SCENARIO)
    code = main(["tune", "--policy", str(tmp_path / "chat.yaml"), "--scenario", str(tmp_path / "scenario.yaml"),
                 "--prometheus", recorded.url, "--from", str(START), "--to", str(START + 3600),
                 "--out", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "no request-rate history for Deployment/other in namespace team-a" in err, err
