"""The README's commands, run as printed (issue 15): a documented command that fails breaks CI.

Every command in the README's ``bash`` blocks is collected (continuation lines joined, comments
dropped) and must be classified in ``HOW`` below, so a new command cannot be added untested. What the
commands cannot find on a CI machine is provided, and only that is substituted:

* ``http://localhost:9090``: a real Prometheus (Debian's, started here) holding the last hour of a
  vLLM Deployment's series (the SLO policy's running, waiting, TTFT histogram and completions, and
  kube-state-metrics' replicas), backfilled with ``promtool`` so that ``--from -24h --to now`` finds it;
* ``~/.kube/config``: a kubeconfig for the in-repo API stand-in;
* ``out/``: a temporary folder (tests never write into the checkout);
* ``run`` is a service: it runs until it has made a dry-run decision for the shipped chat policy, then
  gets SIGTERM and must exit 0 having written nothing;
* ``kubectl`` commands run in order, as printed, against the stand-in (which serves the CRDs they apply).

``make demo`` and ``make test`` are what ``.ci/run`` itself runs.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["prometheus_server"]
pytest.register_assert_rewrite("prometheus_server")
from kube_standin import KubeStandIn, wait_until, write_kubeconfig  # noqa: E402
from prometheus_server import RunningPrometheus, free_port, require_binary, start_prometheus  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXE = Path(sys.executable).parent / "inference-autoscaler"
PROMETHEUS = "http://localhost:9090"

# How each README command is checked: "run" (as printed, with the substitutions above), "service"
# (run until it decides, then SIGTERM), "ci" (what .ci/run runs).
HOW = {
    "make demo": "ci",
    "make test": "ci",
    "inference-autoscaler validate": "run",
    "inference-autoscaler replay": "run",
    "inference-autoscaler schema": "run",
    "inference-autoscaler run": "service",
    "inference-autoscaler signals": "run",
    "inference-autoscaler simulate": "run",
    "inference-autoscaler backtest": "run",
    "inference-autoscaler convert": "run",
    "kubectl apply": "kubectl",
    "kubectl get": "kubectl",
}


def readme_commands() -> list[str]:
    """The commands of the README's bash blocks: continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands: list[str] = []
    for block in re.findall(r"^[ \t]*```(?:bash|sh|shell|console)[ \t]*\n(.*?)^[ \t]*```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if line:
                commands.append(line)
    return commands


def kind_of(command: str) -> str:
    words = command.split()
    return " ".join(words[:2])


def test_every_readme_command_is_classified() -> None:
    commands = readme_commands()
    assert len(commands) >= 10, commands
    unknown = [c for c in commands if kind_of(c) not in HOW]
    assert not unknown, f"README commands with no check in tests/test_readme.py HOW: {unknown}"
    ci = (ROOT / ".ci" / "run").read_text()
    assert all(f"\n{c}\n" in f"\n{ci}\n" for c in commands if HOW[kind_of(c)] == "ci")


# --- the Prometheus the README's URL stands for ---------------------------------------------------

STEP_S = 15
POINTS = 300  # 75 minutes: the last hour, and a quarter of an hour ahead, so nothing reads stale
AHEAD_S = 15 * 60
# The vLLM pods of every vLLM policy in policies/ (by the names their controllers give pods).
VLLM_PODS = (
    ("team-a", "chat-llm-5f6d7c8b9-xbcdz"),
    ("team-a", "chat-llm-5f6d7c8b9-q9z7m"),
    ("team-a", "assistant-70b-predictor-6b8f9c7d5-kx9wz"),
    ("team-a", "assistant-70b-predictor-6b8f9c7d5-m2n4p"),
    ("my-team", "my-model-7c8d9f6b5-zz2xq"),
)
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _history(path: Path, end_s: int) -> None:
    """Recorded series for every policy in policies/: vLLM pods with load rising then falling and TTFT
    well within the objectives, team-b's StatefulSet with its GPUs and its custom backlog series, and
    kube-state-metrics' replicas of team-a/chat-llm (what backtest compares with)."""
    start = end_s - POINTS * STEP_S
    rows: dict[str, list[str]] = {}

    def add(name: str, labels: str, value: float, t: int) -> None:
        rows.setdefault(name, []).append(f"{name}{{{labels}}} {round(value, 3)} {t}")

    completed = [0.0] * len(VLLM_PODS)
    for step in range(POINTS):
        t = start + step * STEP_S
        level = 4 + 8 * math.sin(math.pi * step / POINTS)
        for i, (namespace, pod) in enumerate(VLLM_PODS):
            labels = f'namespace="{namespace}",pod="{pod}"'
            add("vllm:num_requests_running", labels, level, t)
            add("vllm:num_requests_waiting", labels, 0, t)
            completed[i] += level / 4 * STEP_S  # 4 s in service each: Little's law
            add("vllm:e2e_request_latency_seconds_count", labels, completed[i], t)
            for le in (*TTFT_BUCKETS, math.inf):
                share = 0.8 if le < 0.25 else 0.97 if le < 0.5 else 1.0
                bound = "+Inf" if le == math.inf else str(le)
                add("vllm:time_to_first_token_seconds_bucket", f'{labels},le="{bound}"', completed[i] * share, t)
            add("vllm:time_to_first_token_seconds_count", labels, completed[i], t)
        for pod in ("embedder-0", "embedder-1"):
            add("DCGM_FI_DEV_GPU_UTIL", f'namespace="team-b",pod="{pod}",gpu="0"', 60 + 20 * math.sin(step / 20), t)
            add("batch_jobs_pending", f'namespace="team-b",pod="{pod}"', 50 + step % 40, t)
        for name in ("kube_deployment_spec_replicas", "kube_deployment_status_replicas_ready"):
            add(name, 'namespace="team-a",deployment="chat-llm"', 2, t)
    counters = ("vllm:e2e_request_latency_seconds_count", "vllm:time_to_first_token_seconds_bucket",
                "vllm:time_to_first_token_seconds_count")
    lines: list[str] = []
    for name, samples in rows.items():
        kind = "counter" if name in counters else "gauge"
        lines += [f"# HELP {name} {name}", f"# TYPE {name} {kind}", *samples]
    path.write_text("\n".join([*lines, "# EOF"]) + "\n")


@pytest.fixture(scope="module")
def prometheus() -> Iterator[RunningPrometheus]:
    promtool = require_binary("promtool")
    root = Path(tempfile.mkdtemp(prefix="prom-readme-"))
    (root / "data").mkdir()
    _history(root / "history.om", int(time.time()) + AHEAD_S)
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(root / "history.om"),
                    str(root / "data")], check=True, capture_output=True, timeout=120)
    server = start_prometheus("global: {scrape_interval: 15s}\nscrape_configs: []\n", root / "data")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _argv(command: str, *, prometheus: str, out: Path, kubeconfig: Path | None = None) -> list[str]:
    argv = shlex.split(command.replace(PROMETHEUS, prometheus).replace("~/.kube/config", str(kubeconfig or "")))
    argv = [str(out / a.removeprefix("out/")) if a.startswith("out/") else a for a in argv]
    assert argv[0] == "inference-autoscaler"
    return [str(EXE), *argv[1:]]


@pytest.mark.parametrize(
    "command",
    [c for c in readme_commands() if HOW.get(kind_of(c)) == "run"],
    ids=lambda c: " ".join(c.split()[:2]) + ("…" if len(c.split()) > 2 else ""),
)
def test_readme_command_runs_as_printed(command: str, prometheus: RunningPrometheus, tmp_path: Path) -> None:
    argv = _argv(command, prometheus=prometheus.url, out=tmp_path)
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if " backtest " in f" {command} ":
        report = json.loads(next(tmp_path.rglob("backtest.json")).read_text())
        summary = report["summary"]
        assert summary["ticks"] >= 200 and "MetricsUnavailable" not in summary["reasons"], summary
    if " simulate " in f" {command} ":
        assert next(tmp_path.rglob("report.json")).stat().st_size > 0


async def test_readme_run_command_decides_in_dry_run_and_stops_cleanly(
    prometheus: RunningPrometheus, tmp_path: Path
) -> None:
    import asyncio

    [command] = [c for c in readme_commands() if HOW.get(kind_of(c)) == "service"]
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 2)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        argv = [*_argv(command, prometheus=prometheus.url, out=tmp_path, kubeconfig=kubeconfig),
                "--listen", f"127.0.0.1:{free_port()}"]  # the default :8080 may be taken on a CI machine
        log = tmp_path / "run.log"
        with log.open("w") as sink:
            proc = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
            try:
                await wait_until(lambda: '"team-a/chat"' in log.read_text() and "decision" in log.read_text(),
                                 timeout_s=60)
            finally:
                proc.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(proc.wait(), timeout=30)
        text = log.read_text()
        assert code == 0, text[-3000:]
        writes = [r for r in kube.requests if r.method in ("PUT", "PATCH") and "/scale" in r.path]
        assert not writes, "--dry-run wrote a scale"
        assert kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")["spec"]["replicas"] == 2


async def test_readme_kubectl_commands_run_in_order(tmp_path: Path) -> None:
    """The README's kubectl lines, in order: the CRDs applied, a team's policy file applied as an object
    (a file document is an object), listed with the CRD's printer columns."""
    import asyncio

    commands = [c for c in readme_commands() if HOW.get(kind_of(c)) == "kubectl"]
    assert commands, "the README shows how to apply a policy as an object"
    async with KubeStandIn() as kube:
        write_kubeconfig(tmp_path / "kubeconfig", kube.url)
        env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "kubeconfig")}
        outputs = []
        for command in commands:
            argv = shlex.split(command)
            done = await asyncio.to_thread(
                subprocess.run, [argv[0], "--cache-dir", str(tmp_path / "cache"), *argv[1:]], cwd=ROOT,
                capture_output=True, text=True, timeout=60, env=env,
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
        assert kube.get_object("inference-autoscaler.io", "v1alpha1", "scalingpolicies", "team-a", "chat") is not None
    listed = outputs[-1].splitlines()
    assert listed[0].split()[:3] == ["NAME", "TARGET", "MIN"] and listed[1].split()[:2] == ["chat", "chat-llm"]
