"""The service installs lean (issue 15): its runtime set, in a fresh virtualenv, runs the service.

``pip install inference-autoscaler`` (no extra) must carry only what ``run``, ``serve-metrics``,
``validate``, ``replay``, ``signals`` and ``backtest --no-plot`` use: no simulator kernel (numba,
llvmlite), no plotting (matplotlib), no tuner (optuna, ray), no ``kubernetes`` package (the kubeconfig
is resolved by ``autoscaler/service/kubeconfig.py``). The simulator, plots and tuning come with the
``sim`` and ``tune`` extras. Here the package and its declared runtime dependencies go into a fresh
venv (from the package index, as a user's ``pip install`` would), then the venv's own CLI runs the
service against the API stand-in and scales a Deployment. The venv's size is checked against a bound.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tomllib
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_standin import KubeStandIn, wait_until, write_kubeconfig
from service_harness import policy_text

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("numba", "llvmlite", "matplotlib", "kubernetes", "optuna", "ray")
MAX_SIZE_MB = 250  # the runtime set measures about 150 MB (numpy and cryptography are most of it)


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("lean") / "venv"
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for step in (["install", "-q", *runtime], ["install", "-q", "--no-deps", str(ROOT)]):
        done = subprocess.run([str(python), "-m", "pip", *step], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    yield where


def test_the_runtime_set_has_nothing_heavy_and_stays_small(lean: Path) -> None:
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in runtime if d.split(">")[0].split("=")[0].strip().lower() in HEAVY]
    python = str(lean / "bin" / "python")
    for name in HEAVY:
        found = subprocess.run([python, "-c", f"import {name}"], capture_output=True).returncode == 0
        assert not found, f"{name} is importable in the runtime install"
    size = _size_mb(lean)
    print(f"runtime venv: {size:.0f} MB")
    assert size < MAX_SIZE_MB, f"runtime venv is {size:.0f} MB"


def test_the_runtime_commands_start(lean: Path) -> None:
    exe = str(lean / "bin" / "inference-autoscaler")
    for command in (["run", "--help"], ["serve-metrics", "--help"], ["validate", "policies/"],
                    ["replay", "--policy", "policies/team-a/chat.yaml", "--root", "policies", "--observations",
                     "examples/observations/chat-load-step.jsonl"]):
        done = subprocess.run([exe, *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
    done = subprocess.run([exe, "simulate", "--scenario", "simulations/flash-crowd.yaml", "--out", "/dev/null"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "pip install 'inference-autoscaler[sim]'" in done.stderr, done.stderr[-2000:]


async def test_the_runtime_install_runs_the_service_end_to_end(lean: Path, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "chat.yaml").write_text(
        policy_text(extra="fallback: {failureThreshold: 0, behavior: static, replicas: 3}\n").replace(
            "intervalSeconds: 15", "intervalSeconds: 1"
        )
    )
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 1)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, token="lean-token")
        proc = await asyncio.create_subprocess_exec(
            str(lean / "bin" / "inference-autoscaler"), "run", "--policies", str(policies),
            "--prometheus", "http://127.0.0.1:9", "--timeout", "0.5", "--kubeconfig", str(kubeconfig),
            "--namespace", "ops", "--listen", "127.0.0.1:0",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await wait_until(
                lambda: kube.get_object("apps", "v1", "deployments", "team-a", "chat-llm")["spec"]["replicas"] == 3,
                timeout_s=30,
            )
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert any(r.user == "Bearer lean-token" for r in kube.requests)
    assert sys.prefix != str(lean)  # the service ran from the lean venv, not this one
