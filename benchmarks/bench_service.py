"""Service benchmark at fleet scale (issue 17): the controller's whole tick against a real Prometheus and
the API stand-in, at 1,000 and 10,000 targets.

Per fleet size it starts, each in its own process: ``bench_fleet``'s exporter (2 vLLM pods per target:
queue, tokens, the e2e histogram, GPU utilization), Debian's ``prometheus`` scraping it, and the API
stand-in holding the Deployments and their pods (``standin_fleet.py``). The controller runs here, as the
service runs it: policy files (4 metrics each, predictive on tokens/s with 8 days of history), the
batched fleet reader, the actuator, and either the watched caches (``watched``) or per-tick API reads
(``polling``, the previous design, measured at 1,000 targets in the same run as the baseline).

Every target is due at every tick, ticks every 15 s at the real time (Prometheus holds the data). The
first tick after the warm start (every target fits its forecast; refits are then staggered over 5
minutes) is reported apart. Printed per row:

* ``k8s req/tick``: requests the controller sent to the API in a steady-state tick (a watch event is
  not a request; the opening of a watch is);
* ``tick p50/p95``: one whole tick, Prometheus included;
* ``RSS/target``: the controller process's resident memory after the ticks, minus the same process
  before the controller was built, over the target count; every target holds 8 days of forecast history
  (seeded, then extended by the ticks);
* ``PromQL bytes/tick``: the answers' bytes.

Usage: ``.venv/bin/python benchmarks/bench_service.py [--targets 1000 10000] [--ticks 6]``. Not run by
pytest; ``python benchmarks/run.py service`` runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from bench_fleet import E2E_BUCKETS, Cost, RecordingTransport, fleet, start_fleet  # noqa: E402
from prometheus_server import wait_for  # noqa: E402

from autoscaler.core.step import warm_start  # noqa: E402
from autoscaler.forecast import DemandHistory  # noqa: E402
from autoscaler.prometheus import PrometheusClient, PrometheusConfig  # noqa: E402
from autoscaler.service.actuator import KubeActuator  # noqa: E402
from autoscaler.service.cluster import WatchedCluster  # noqa: E402
from autoscaler.service.controller import Controller  # noqa: E402
from autoscaler.service.kube import KubeClient, KubeConfig  # noqa: E402
from autoscaler.service.policies import PolicyDirectory  # noqa: E402
from autoscaler.service.telemetry import Telemetry  # noqa: E402
from autoscaler.signals import FleetReader, SignalSettings  # noqa: E402

INTERVAL_S = 15
HISTORY_DAYS = 8
POLICY = """\
---
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  target: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: 2
  maxReplicas: 10
  intervalSeconds: 15
  metrics:
    - {{name: queue, source: {{preset: vllm.queue_depth}}, target: {{type: AverageValue, averageValue: 5}}}}
    - {{name: tokens, source: {{preset: vllm.generation_tokens_per_second}},
       target: {{type: AverageValue, averageValue: 100000}}}}
    - {{name: e2e, source: {{preset: vllm.e2e_latency_p95}}, target: {{type: Value, value: 100}}}}
    - {{name: gpu, source: {{preset: dcgm.gpu_util}}, target: {{type: Utilization, averageUtilization: 95}}}}
  predictive: {{metric: tokens, historyDays: {days}}}
"""


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Row:
    targets: int
    mode: str
    requests: list[int] = field(default_factory=list)
    ticks_s: list[float] = field(default_factory=list)
    promql_bytes: list[int] = field(default_factory=list)
    rss_per_target: float = 0.0
    sync_s: float = 0.0
    first_tick_s: float = 0.0
    decided: int = 0

    def line(self) -> str:
        return (
            f"  {self.targets:7d}  {self.mode:8s} {statistics.mean(self.requests):12.1f} "
            f"{pct(self.ticks_s, 0.5):9.2f} s {pct(self.ticks_s, 0.95):6.2f} s "
            f"{self.rss_per_target / 1024:9.1f} KB {statistics.mean(self.promql_bytes) / 1e6:10.2f} MB"
            f"   (decided {self.decided}/{self.targets}; caches synced in {self.sync_s:.1f} s; "
            f"first tick after the warm start {self.first_tick_s:.1f} s)"
        )


def write_policies(root: Path, targets: int) -> None:
    by_namespace: dict[str, list[str]] = {}
    for namespace, name, _ in fleet(targets):
        by_namespace.setdefault(namespace, []).append(POLICY.format(name=name, namespace=namespace, days=HISTORY_DAYS))
    for namespace, docs in by_namespace.items():
        (root / f"{namespace}.yaml").write_text("".join(docs))


def seeded_history(now: float) -> DemandHistory:
    """8 days of a diurnal tokens/s series at the tick step (what a warm start would read)."""
    times = np.arange(now - HISTORY_DAYS * 86400, now - INTERVAL_S, INTERVAL_S)
    values = 1000 + 400 * np.sin(2 * np.pi * times / 86400) + np.random.default_rng(1).normal(0, 20, len(times))
    return DemandHistory.from_samples(times, values, INTERVAL_S)


async def measure(args: argparse.Namespace, targets: int, mode: str, prom_url: str, kube_url: str) -> Row:
    row = Row(targets, mode)
    policy_dir = Path(tempfile.mkdtemp(prefix="bench-service-policies-"))
    write_policies(policy_dir, targets)
    requests = [0]

    def observe(verb: str, seconds: float, outcome: str) -> None:
        requests[0] += 1

    baseline_rss = rss_bytes()
    client = KubeClient(KubeConfig(host=kube_url, retries=1, timeout_s=60), observe=observe)
    transport = RecordingTransport()
    stop = asyncio.Event()
    cluster = WatchedCluster(client) if mode == "watched" else None
    cache_task = None
    async with PrometheusClient(PrometheusConfig(url=prom_url, timeout_s=120), transport=transport) as prom:
        if cluster is not None:
            cluster.watch_kind("deployments")
            cache_task = asyncio.create_task(cluster.run(stop))
            started = time.perf_counter()
            if not await cluster.wait_synced(600):
                raise SystemExit("the caches did not sync in 600 s")
            row.sync_s = time.perf_counter() - started
        controller = Controller(
            policies=PolicyDirectory(policy_dir),
            signals=FleetReader(prom, SignalSettings(args.scrape_interval, window="1m")),
            actuator=KubeActuator(client, cache=cluster),
            telemetry=Telemetry(),
        )
        history = seeded_history(time.time())
        next_tick = time.time()
        for i in range(args.ticks + 2):
            if i >= 2:  # measured ticks at the policies' interval, as the service runs them
                await asyncio.sleep(max(0.0, next_tick - time.time()))
            next_tick = time.time() + INTERVAL_S
            now = time.time()
            for entry in controller.entries.values():
                entry.next_due = now  # every target due at every measured tick
            requests[0] = 0
            transport.answers.clear()
            started = time.perf_counter()
            records = await controller.tick(now)
            elapsed = time.perf_counter() - started
            if i == 0:  # the first tick made the entries: give each its 8 days of history
                for entry in controller.entries.values():
                    entry.state = warm_start(entry.state, entry.policy, history)
                    entry.warm_started = True
                continue
            if i == 1:  # every target fits its forecast once after a (warm) start: not the steady state
                row.first_tick_s = elapsed
                continue
            row.ticks_s.append(elapsed)
            row.requests.append(requests[0])
            cost = Cost()
            for answer in transport.answers:
                cost.add(answer)
            row.promql_bytes.append(cost.bytes)
            row.decided = sum(1 for r in records if r.decision is not None)
        row.rss_per_target = (rss_bytes() - baseline_rss) / targets
        stop.set()
        if cache_task is not None:
            await asyncio.wait_for(cache_task, 30)
    await client.close()
    shutil.rmtree(policy_dir, ignore_errors=True)
    return row


def in_child(args: argparse.Namespace, targets: int, mode: str, prom_url: str, kube_url: str) -> Row:
    """One row, measured in a fresh child process: its RSS is the controller's alone (the parent holds
    the exporter's fleet, and memory freed by an earlier row is not given back to the OS)."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child() -> None:
        send.send(asyncio.run(measure(args, targets, mode, prom_url, kube_url)))

    process = context.Process(target=child)
    process.start()
    row: Row = receive.recv()
    process.join(30)
    return row


def start_standin(targets: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "standin_fleet.py"), str(targets)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise SystemExit("the API stand-in did not start")
    return process, url


def run_size(args: argparse.Namespace, targets: int, modes: list[str]) -> list[Row]:
    server, stop = start_fleet(fleet(targets), args.scrape_interval, "bench-service-")
    standin, kube_url = start_standin(targets)
    rows = []
    try:
        started = time.time()
        wait_for(server.url, f"count(rate(vllm:generation_tokens_total[1m])) == {2 * targets}",
                 timeout_s=max(300, 10 * args.scrape_interval), log=server.log)
        series = targets * 2 * (3 + len(E2E_BUCKETS) + 1)
        print(f"{targets} targets: prometheus ready with {series} series after {time.time() - started:.0f} s",
              flush=True)
        for mode in modes:
            rows.append(in_child(args, targets, mode, server.url, kube_url))
            print(rows[-1].line(), flush=True)
    finally:
        standin.kill()
        stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--ticks", type=int, default=6, help="measured ticks per row (default: 6)")
    parser.add_argument("--scrape-interval", type=float, default=15.0, help="seconds (default: 15)")
    parser.add_argument("--polling-up-to", type=int, default=1000,
                        help="also measure per-tick API reads (the baseline) up to this fleet size (default: 1000)")
    args = parser.parse_args()
    print("  targets  mode     k8s req/tick  tick p50      p95   RSS/target  PromQL/tick")
    rows: list[Row] = []
    for targets in args.targets:
        modes = ["polling", "watched"] if targets <= args.polling_up_to else ["watched"]
        rows.extend(run_size(args, targets, modes))
    by = {(r.targets, r.mode): r for r in rows}
    for targets in args.targets:
        polled, watched = by.get((targets, "polling")), by.get((targets, "watched"))
        if polled and watched:
            print(f"{targets} targets, watched vs polling: {statistics.mean(polled.requests):.0f} -> "
                  f"{statistics.mean(watched.requests):.0f} API requests per tick, tick p95 x"
                  f"{pct(watched.ticks_s, 0.95) / pct(polled.ticks_s, 0.95):.2f}")
    sizes = sorted(args.targets)
    if len(sizes) > 1 and (sizes[0], "watched") in by and (sizes[-1], "watched") in by:
        small, large = by[(sizes[0], "watched")], by[(sizes[-1], "watched")]
        p95 = pct(large.ticks_s, 0.95) / pct(small.ticks_s, 0.95)
        print(f"watched, {sizes[-1]} vs {sizes[0]} targets: tick p95 x{p95:.1f}, "
              f"RSS/target x{large.rss_per_target / small.rss_per_target:.2f}, "
              f"PromQL bytes x{statistics.mean(large.promql_bytes) / statistics.mean(small.promql_bytes):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
