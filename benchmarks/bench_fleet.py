"""Fleet benchmark: 1000 targets x 4 presets read from a real Prometheus on this machine.

Starts Debian's ``prometheus`` (as the tests do) scraping an exporter of 1000 Deployments x 2 vLLM pods
(queue gauge, generation-token counter, the e2e latency histogram with vLLM's buckets, DCGM GPU
utilization): ~44k series at a 5 s scrape. Then measures, on the same server in the same run:

* the batched fleet reader (one query per preset per tick), over ``--ticks`` ticks;
* the baseline: one PromQL query per (target, metric), 8 in flight, over ``--baseline-ticks`` ticks.

Prints queries per tick, tick latency p50/p95/max for both, and the ratio. Not run by pytest.
Usage: ``.venv/bin/python benchmarks/bench_fleet.py [--targets 1000] [--ticks 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from prometheus_server import exposition_server, start_prometheus, wait_for

from autoscaler.core.policy import MetricSource, MetricSpec, MetricTarget, ScalingPolicy, TargetRef, TargetType
from autoscaler.presets import PRESETS
from autoscaler.prometheus import PrometheusClient, PrometheusConfig
from autoscaler.signals import FleetReader, SignalSettings, target_query

E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, math.inf)
NAMESPACES = 20
METRICS = (("queue", "vllm.queue_depth", TargetType.AVERAGE_VALUE), ("gen", "vllm.generation_tokens_per_second",
           TargetType.AVERAGE_VALUE), ("e2e", "vllm.e2e_latency_p95", TargetType.VALUE),
           ("gpu", "dcgm.gpu_util", TargetType.UTILIZATION))


def fleet(targets: int) -> list[tuple[str, str, list[str]]]:
    """(namespace, deployment, pods) for each target."""
    out = []
    for i in range(targets):
        name = f"model-{i:04d}"
        out.append((f"bench-{i % NAMESPACES:02d}", name, [f"{name}-5c8b9d7f4-{s}" for s in ("bcdfg", "hjklm")]))
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


async def run(args: argparse.Namespace, url: str, fleet_policies: list[ScalingPolicy]) -> None:
    settings = SignalSettings(scrape_interval_s=5, window="1m")
    async with PrometheusClient(PrometheusConfig(url=url, timeout_s=30)) as client:
        reader = FleetReader(client, settings)
        await reader.read(fleet_policies)  # warm-up: connection pool, caches
        latencies, queries = [], []
        for _ in range(args.ticks):
            before = client.requests
            started = time.perf_counter()
            signals = await reader.read(fleet_policies)
            latencies.append(time.perf_counter() - started)
            queries.append(client.requests - before)
        unavailable = sum(signals.unavailable.values())
        sample = signals.readings[fleet_policies[0].key]
        print(f"fleet:    {len(fleet_policies)} targets x {len(METRICS)} presets, {args.ticks} ticks")
        print(f"  queries/tick: {statistics.mean(queries):g}; unavailable readings: {unavailable}")
        print(f"  tick latency: p50 {pct(latencies, 0.5) * 1000:.0f} ms, p95 {pct(latencies, 0.95) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")
        print(f"  {fleet_policies[0].key}: " + ", ".join(f"{k}={v.value:.4g}" for k, v in sample.items() if v.value))

        semaphore = asyncio.Semaphore(8)

        async def one(policy: ScalingPolicy, spec: MetricSpec) -> float:
            expr = target_query(PRESETS[spec.source.preset or ""], policy=policy, spec=spec, window=settings.window)
            async with semaphore:
                result = await client.query(expr)
            return result.samples[0].value if result.samples else math.nan

        base_latencies, base_queries = [], []
        for _ in range(args.baseline_ticks):
            before = client.requests
            started = time.perf_counter()
            await asyncio.gather(*(one(p, s) for p in fleet_policies for s in p.metrics))
            base_latencies.append(time.perf_counter() - started)
            base_queries.append(client.requests - before)
        print(f"baseline: one query per (target, metric), 8 in flight, {args.baseline_ticks} ticks")
        print(f"  queries/tick: {statistics.mean(base_queries):g}")
        print(f"  tick latency: p50 {pct(base_latencies, 0.5) * 1000:.0f} ms, max {max(base_latencies) * 1000:.0f} ms")
        print(f"ratio: {statistics.mean(base_queries) / statistics.mean(queries):.0f}x fewer queries, "
              f"{pct(base_latencies, 0.5) / pct(latencies, 0.5):.1f}x faster tick (p50)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--baseline-ticks", type=int, default=2)
    args = parser.parse_args()
    targets = fleet(args.targets)
    # The exporter runs in its own process, as a real one would: rendering 42k lines must not hold
    # the benchmark's GIL while ticks are timed.
    exporter = BigExporter(targets)
    child = multiprocessing.get_context("fork").Process(target=exporter.server.serve_forever, daemon=True)
    child.start()
    exporter.server.socket.close()
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    (root / "data").mkdir()
    config = (f"global: {{scrape_interval: 5s, scrape_timeout: 5s}}\nscrape_configs:\n  - job_name: fleet\n"
              f"    honor_labels: true\n    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n")
    server = start_prometheus(config, root / "data")
    try:
        started = time.time()
        wait_for(server.url, f"count(rate(vllm:generation_tokens_total[1m])) == {2 * args.targets}", timeout_s=120,
                 log=server.log)
        series = len(targets) * 2 * (3 + len(E2E_BUCKETS) + 1)
        print(f"prometheus ready with {series} series after {time.time() - started:.1f} s")
        asyncio.run(run(args, server.url, policies(targets)))
    finally:
        server.stop()
        child.terminate()  # by PID: the exporter process started above
        child.join(5)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
