"""Fleet benchmark: 1000 targets x 4 presets read from a real Prometheus on this machine.

Starts Debian's ``prometheus`` (as the tests do) scraping an exporter of 1000 Deployments x 2 vLLM pods
(``--targets``, ``--pods``; queue gauge, generation-token counter, the e2e latency histogram with vLLM's
buckets, DCGM GPU utilization): ~44k series at a 5 s scrape. Then measures, on the same server in the same
run:

* the batched fleet reader (one query per preset per tick) with histogram buckets summed per owner
  inside Prometheus (``owner``, the default) and with one series per pod and bucket (``per-pod``, the
  path before issue 17), tick for tick alternately over ``--ticks`` ticks each, and checks that both read
  the same values at the same instant;
* the baseline: one PromQL query per (target, metric), 8 in flight, over ``--baseline-ticks`` ticks.

Per tick: queries, series and bytes of the answers (the ``stats`` Prometheus adds on request is not
counted), Prometheus's own ``execTotalTime`` summed over the tick's queries and the CPU seconds its
process spent, and the tick latency p50/p95/max; then the same for the histogram query alone.
Not run by pytest. Usage: ``.venv/bin/python benchmarks/bench_fleet.py [--targets 1000] [--ticks 20]``;
the 10,000-target case: ``--targets 10000 --scrape-interval 15 --ticks 5 --baseline-ticks 0``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from prometheus_server import RunningPrometheus, exposition_server, start_prometheus, wait_for

from autoscaler.core.policy import MetricSource, MetricSpec, MetricTarget, ScalingPolicy, TargetRef, TargetType
from autoscaler.presets import PRESETS
from autoscaler.prometheus import PrometheusClient, PrometheusConfig
from autoscaler.prometheus.client import AiohttpTransport, HttpResponse
from autoscaler.signals import FleetReader, FleetSignals, SignalSettings, target_query

E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, math.inf)
NAMESPACES = 20
METRICS = (("queue", "vllm.queue_depth", TargetType.AVERAGE_VALUE), ("gen", "vllm.generation_tokens_per_second",
           TargetType.AVERAGE_VALUE), ("e2e", "vllm.e2e_latency_p95", TargetType.VALUE),
           ("gpu", "dcgm.gpu_util", TargetType.UTILIZATION))


def fleet(targets: int, pods: int = 2) -> list[tuple[str, str, list[str]]]:
    """(namespace, deployment, pods) for each target."""
    suffixes = ["".join(chars) for chars in itertools.islice(itertools.product("bcdfghjklm", repeat=5), pods)]
    out = []
    for i in range(targets):
        name = f"model-{i:04d}"
        out.append((f"bench-{i % NAMESPACES:02d}", name, [f"{name}-5c8b9d7f4-{s}" for s in suffixes]))
    return out


class BigExporter:
    def __init__(self, targets: list[tuple[str, str, list[str]]]) -> None:
        self.started = time.time()
        self.pods = [(ns, pod, i) for ns, _, pods in targets for i, pod in enumerate(pods)]
        self.labels = {pod: f'namespace="{ns}",pod="{pod}",model_name="m",engine="0"' for ns, pod, _ in self.pods}
        self.server = exposition_server(lambda path: self.render())
        self.port = self.server.server_address[1]

    def render(self) -> str:
        t = time.time() - self.started
        lines = []
        per_bucket = [1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10]  # cumulative per second
        for _ns, pod, i in self.pods:
            labels = self.labels[pod]
            lines.append(f"vllm:num_requests_waiting{{{labels}}} {i + 2}")
            lines.append(f"vllm:generation_tokens_total{{{labels}}} {100.0 * (i + 1) * t}")
            lines.append(f'DCGM_FI_DEV_GPU_UTIL{{{labels},gpu="0"}} {50 + 10 * i}')
            for le, c in zip(E2E_BUCKETS, per_bucket, strict=True):
                bound = "+Inf" if math.isinf(le) else repr(le)
                lines.append(f'vllm:e2e_request_latency_seconds_bucket{{{labels},le="{bound}"}} {c * t}')
            lines.append(f"vllm:e2e_request_latency_seconds_count{{{labels}}} {10 * t}")
        return "\n".join(lines) + "\n"


def policies(targets: list[tuple[str, str, list[str]]]) -> list[ScalingPolicy]:
    out = []
    for ns, name, _ in targets:
        specs = tuple(MetricSpec(m, MetricSource(preset=p), MetricTarget(tt, 5000, "5")) for m, p, tt in METRICS)
        out.append(ScalingPolicy(name, ns, TargetRef("apps/v1", "Deployment", name), 1, 10, specs))
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Answer:
    """One query's answer as it came over the wire (decoded after the tick, off the clock)."""

    query: str
    body: bytes


class RecordingTransport(AiohttpTransport):
    """The real HTTP transport, asking Prometheus for its ``stats`` and keeping every answer's bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[Answer] = []

    async def post_form(
        self, url: str, form: Mapping[str, str], *, headers: Mapping[str, str], timeout_s: float
    ) -> HttpResponse:
        response = await super().post_form(url, {**form, "stats": "all"}, headers=headers, timeout_s=timeout_s)
        self.answers.append(Answer(form.get("query", ""), response.body))
        return response


@dataclass
class Cost:
    """What answers cost: count, series, bytes (without the stats), Prometheus exec seconds."""

    queries: int = 0
    series: int = 0
    bytes: int = 0
    exec_s: float = 0.0

    def add(self, answer: Answer) -> None:
        data = json.loads(answer.body).get("data", {})
        stats = data.get("stats", {})
        self.queries += 1
        self.series += len(data.get("result") or ())
        self.bytes += len(answer.body) - (len(json.dumps(stats, separators=(",", ":"))) + 9 if stats else 0)
        self.exec_s += float(stats.get("timings", {}).get("execTotalTime", 0.0))


@dataclass
class PathFigures:
    """Per tick of one read path: the whole tick, and its histogram query (or queries) alone."""

    ticks: list[Cost] = field(default_factory=list)
    histogram: list[Cost] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    unavailable: int = 0


class ProcessClock:
    """CPU seconds (user + system) a process has used, from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/stat")
        self.tick = os.sysconf("SC_CLK_TCK")

    def __call__(self) -> float:
        fields = self.path.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick


HISTOGRAM_METRIC = "vllm:e2e_request_latency_seconds_bucket"


async def tick(reader: FleetReader, transport: RecordingTransport, figures: PathFigures,
               policies: list[ScalingPolicy], cpu: ProcessClock, now: float) -> FleetSignals:
    transport.answers.clear()
    cpu_before, started = cpu(), time.perf_counter()
    signals = await reader.read(policies, now_s=now)
    figures.latency_s.append(time.perf_counter() - started)
    figures.cpu_s.append(cpu() - cpu_before)
    whole, histogram = Cost(), Cost()
    for answer in transport.answers:
        whole.add(answer)
        if HISTOGRAM_METRIC in answer.query:
            histogram.add(answer)
    figures.ticks.append(whole)
    figures.histogram.append(histogram)
    figures.unavailable += sum(signals.unavailable.values())
    return signals


def report(name: str, figures: PathFigures) -> None:
    mean, median = statistics.mean, statistics.median
    ticks, hist, latency = figures.ticks, figures.histogram, figures.latency_s
    print(f"  {name:8s} {mean(t.queries for t in ticks):6.1f} {mean(t.series for t in ticks):9.0f} "
          f"{mean(t.bytes for t in ticks) / 1e6:8.2f} MB {median(t.exec_s for t in ticks) * 1000:7.0f} ms "
          f"{median(figures.cpu_s) * 1000:7.0f} ms {pct(latency, 0.5) * 1000:7.0f} {pct(latency, 0.95) * 1000:7.0f} "
          f"{max(latency) * 1000:7.0f} ms   | histogram: {mean(h.series for h in hist):7.0f} series "
          f"{mean(h.bytes for h in hist) / 1e6:6.2f} MB {median(h.exec_s for h in hist) * 1000:6.0f} ms")


def ratio(old: list[Cost], new: list[Cost]) -> float:
    return statistics.mean(c.bytes for c in old) / statistics.mean(c.bytes for c in new)


async def compare_paths(
    args: argparse.Namespace, client: PrometheusClient, transport: RecordingTransport,
    fleet_policies: list[ScalingPolicy], cpu: ProcessClock,
) -> PathFigures:
    """Owner sums against per-pod buckets, tick for tick; prints the table and returns the owner path's figures."""
    settings = {"owner": True, "per-pod": False}
    readers = {
        name: FleetReader(client, SignalSettings(args.scrape_interval, window="1m", histogram_owner_sums=on))
        for name, on in settings.items()
    }
    figures = {name: PathFigures() for name in readers}
    for reader in readers.values():
        await reader.read(fleet_policies, now_s=time.time() - 1)  # warm-up: connection pool, caches
    for i in range(args.ticks):
        for name in list(readers) if i % 2 == 0 else list(reversed(readers)):  # alternate: noise hits both alike
            await tick(readers[name], transport, figures[name], fleet_policies, cpu, time.time() - 1)
    now = time.time() - 1
    first = {name: await reader.read(fleet_policies, now_s=now) for name, reader in readers.items()}
    same = all(dict(first["owner"].for_policy(p)) == dict(first["per-pod"].for_policy(p)) for p in fleet_policies)
    ok = sum(1 for p in fleet_policies for r in first["owner"].readings[p.key].values() if r.value is not None)
    print(f"fleet:    {len(fleet_policies)} targets x {len(METRICS)} presets, {args.ticks} ticks per path, alternating")
    print(f"  same readings from both paths at one instant: {'yes' if same else 'NO'} ({ok} with a value); "
          f"unavailable readings over the ticks: owner {figures['owner'].unavailable}, "
          f"per-pod {figures['per-pod'].unavailable}")
    print("  path     queries series     bytes      prom exec prom cpu   tick p50     p95     max"
          "   (per tick; prom exec and cpu: medians)")
    for name in ("per-pod", "owner"):
        report(name, figures[name])
    old, new = figures["per-pod"], figures["owner"]
    print(f"  owner vs per-pod: {ratio(old.ticks, new.ticks):.1f}x fewer bytes per tick, "
          f"{ratio(old.histogram, new.histogram):.1f}x fewer for the histogram query, tick p50 "
          f"{pct(old.latency_s, 0.5) / pct(new.latency_s, 0.5):.2f}x faster")
    sample = first["owner"].readings[fleet_policies[0].key]
    print(f"  {fleet_policies[0].key}: " + ", ".join(f"{k}={v.value:.4g}" for k, v in sample.items() if v.value))
    print(f"  histogram query: per-pod {old.histogram[-1].series} series, owner {new.histogram[-1].series} series")
    return new


async def baseline(args: argparse.Namespace, client: PrometheusClient, fleet_policies: list[ScalingPolicy],
                   fleet: PathFigures) -> None:
    """One query per (target, metric), 8 in flight: what the batched read replaces."""
    semaphore = asyncio.Semaphore(8)

    async def one(policy: ScalingPolicy, spec: MetricSpec) -> float:
        expr = target_query(PRESETS[spec.source.preset or ""], policy=policy, spec=spec, window="1m")
        async with semaphore:
            result = await client.query(expr)
        return result.samples[0].value if result.samples else math.nan

    latencies, queries = [], []
    for _ in range(args.baseline_ticks):
        before = client.requests
        started = time.perf_counter()
        await asyncio.gather(*(one(p, s) for p in fleet_policies for s in p.metrics))
        latencies.append(time.perf_counter() - started)
        queries.append(client.requests - before)
    print(f"baseline: one query per (target, metric), 8 in flight, {args.baseline_ticks} ticks")
    print(f"  queries/tick: {statistics.mean(queries):g}")
    print(f"  tick latency: p50 {pct(latencies, 0.5) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    per_tick = statistics.mean(t.queries for t in fleet.ticks)
    print(f"ratio (owner path): {statistics.mean(queries) / per_tick:.0f}x fewer queries, "
          f"{pct(latencies, 0.5) / pct(fleet.latency_s, 0.5):.1f}x faster tick (p50)")


async def run(args: argparse.Namespace, url: str, fleet_policies: list[ScalingPolicy], pid: int) -> None:
    transport = RecordingTransport()
    async with PrometheusClient(PrometheusConfig(url=url, timeout_s=120), transport=transport) as client:
        fleet = await compare_paths(args, client, transport, fleet_policies, ProcessClock(pid))
        if args.baseline_ticks:
            await baseline(args, client, fleet_policies, fleet)


def start_fleet(
    targets: list[tuple[str, str, list[str]]], scrape_interval: float, prefix: str
) -> tuple[RunningPrometheus, Callable[[], None]]:
    """The fleet's exporter in its own process (as a real one would be: rendering ~44 lines per pod must
    not hold the benchmark's GIL while ticks are timed) and Debian's Prometheus scraping it. Returns the
    server and a function that stops both and removes the data."""
    exporter = BigExporter(targets)
    child = multiprocessing.get_context("fork").Process(target=exporter.server.serve_forever, daemon=True)
    child.start()
    exporter.server.socket.close()
    root = Path(tempfile.mkdtemp(prefix=prefix))
    (root / "data").mkdir()
    interval = f"{scrape_interval:g}s"
    config = (f"global: {{scrape_interval: {interval}, scrape_timeout: {interval}}}\nscrape_configs:\n"
              f"  - job_name: fleet\n    honor_labels: true\n"
              f"    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n")
    server = start_prometheus(config, root / "data")

    def stop() -> None:
        server.stop()
        child.terminate()  # by PID: the exporter process started above
        child.join(5)
        shutil.rmtree(root, ignore_errors=True)

    return server, stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--baseline-ticks", type=int, default=2, help="0: no per-target baseline")
    parser.add_argument("--pods", type=int, default=2, help="pods per target")
    parser.add_argument("--scrape-interval", type=float, default=5.0, help="seconds (15 is the common default)")
    args = parser.parse_args()
    run_started = time.time()
    targets = fleet(args.targets, args.pods)
    server, stop = start_fleet(targets, args.scrape_interval, "bench-fleet-")
    try:
        started = time.time()
        wait_for(server.url, f"count(rate(vllm:generation_tokens_total[1m])) == {args.pods * args.targets}",
                 timeout_s=max(120, 8 * args.scrape_interval), log=server.log)
        series = len(targets) * args.pods * (3 + len(E2E_BUCKETS) + 1)
        print(f"prometheus ready with {series} series after {time.time() - started:.1f} s")
        asyncio.run(run(args, server.url, policies(targets), server.process.pid))
        print(f"whole run: {time.time() - run_started:.0f} s")
    finally:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
