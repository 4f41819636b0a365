"""Pytest plugin: a real Prometheus (the Debian ``prometheus`` binary) scraping an in-test exporter.

Register with ``pytest_plugins = ["prometheus_server"]`` at the top of a test module.

Fixtures:

* ``live_prometheus`` (session): starts ``prometheus`` on a free 127.0.0.1 port with a temporary TSDB
  and a 1 s scrape of :class:`Exporter`, which serves the :data:`FLEET` below as realistic DCGM, vLLM,
  SGLang, TGI and Triton series. Two jobs scrape it: ``inference`` with ``honor_labels: true`` (the
  exporter's ``pod``/``namespace`` labels are kept) and ``dcgm-exporter`` with ``honor_labels: false`` and
  target labels ``namespace=gpu-operator,pod=dcgm-exporter-...`` (so the exporter's labels arrive as
  ``exported_pod``/``exported_namespace``, like the dcgm-exporter chart's default). It polls until
  samples (and a first rate) arrive, and stops the server by PID at the end.
* ``history_prometheus`` (session): a second server on blocks made with
  ``promtool tsdb create-blocks-from openmetrics`` from a generated 2 h history (fixed 2024 epoch).

The fleet is deterministic: gauges are constants; a counter's value is ``rate * seconds since start``;
histogram buckets grow at constant per-second counts. Expected per-target values are therefore known
in closed form (the ``expect_*`` helpers) and also checkable against Prometheus's own evaluation.

If ``prometheus``/``promtool`` are missing the fixtures FAIL (never skip): run ``make test``, which
installs them (scripts/system-deps.sh), or install Prometheus >= 2.40 on PATH.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# --- the simulated fleet --------------------------------------------------------------------------

VLLM_E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
SGLANG_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0)
TGI_BUCKETS = tuple(round(1e-4 * 1.5**i, 10) for i in range(35))


def spread(bounds: tuple[float, ...], weights: dict[float, float]) -> dict[float, float]:
    """Per-second NON-cumulative counts per bucket: ``weights`` on the named bounds, 0 elsewhere."""
    return {b: weights.get(b, 0.0) for b in (*bounds, math.inf)}


@dataclass
class Pod:
    namespace: str
    name: str
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)  # name (with _total) -> per second
    histograms: dict[str, dict[float, float]] = field(default_factory=dict)  # base name -> le -> per second
    gpus: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)  # (gpu, GPU_I_ID, values)
    dcgm_exported: bool = False  # served on /dcgm, scraped with honor_labels: false
    stale_by_s: float | None = None  # gauges carry an explicit timestamp this far before start


def _gpu(util: float, engine: float, used: float, free: float) -> dict[str, float]:
    return {"DCGM_FI_DEV_GPU_UTIL": util, "DCGM_FI_PROF_GR_ENGINE_ACTIVE": engine,
            "DCGM_FI_DEV_FB_USED": used, "DCGM_FI_DEV_FB_FREE": free}


def _vllm(ns: str, name: str, *, waiting: float, running: float, kv: float, gen: float, prompt: float,
          e2e: dict[float, float], ttft: dict[float, float], itl: dict[float, float], old_names: bool = False,
          gpus: list[tuple[str, str, dict[str, float]]] | None = None) -> Pod:
    kv_name = "vllm:gpu_cache_usage_perc" if old_names else "vllm:kv_cache_usage_perc"
    itl_name = "vllm:time_per_output_token_seconds" if old_names else "vllm:inter_token_latency_seconds"
    return Pod(ns, name,
               gauges={"vllm:num_requests_waiting": waiting, "vllm:num_requests_running": running, kv_name: kv},
               counters={"vllm:generation_tokens_total": gen, "vllm:prompt_tokens_total": prompt},
               histograms={"vllm:e2e_request_latency_seconds": spread(VLLM_E2E_BUCKETS, e2e),
                           "vllm:time_to_first_token_seconds": spread(TTFT_BUCKETS, ttft),
                           "vllm:request_queue_time_seconds": spread(TTFT_BUCKETS, ttft),  # waits like ttft
                           itl_name: spread(ITL_BUCKETS, itl)},
               gpus=gpus or [])


FLEET: tuple[Pod, ...] = (
    # team-a / Deployment chat-llm: two vLLM pods, DCGM scraped with honor_labels: true (pod labels kept).
    _vllm("team-a", "chat-llm-7d9f8c6b5-x2x4z", waiting=3, running=7, kv=0.4, gen=120, prompt=300,
          e2e={1.0: 2, 2.0: 6, 5.0: 2}, ttft={0.1: 5, 0.25: 4, 0.5: 1}, itl={0.025: 8, 0.05: 2},
          gpus=[("0", "", _gpu(60, 0.55, 30000, 50000)), ("1", "", _gpu(80, 0.75, 50000, 30000))]),
    _vllm("team-a", "chat-llm-7d9f8c6b5-q9z7m", waiting=5, running=9, kv=0.6, gen=80, prompt=200,
          e2e={1.0: 1, 2.0: 2, 5.0: 4, 10.0: 1}, ttft={0.1: 2, 0.25: 2, 1.0: 2}, itl={0.025: 4, 0.1: 4},
          old_names=True, gpus=[("0", "", _gpu(70, 0.65, 40000, 40000))]),
    # team-a / Deployment chat: a name that is a prefix of chat-llm; must not mix with it.
    _vllm("team-a", "chat-5c8b9d7f4-bcdfz", waiting=100, running=1, kv=0.9, gen=10, prompt=10,
          e2e={60.0: 1}, ttft={5.0: 1}, itl={1.0: 1}),
    # team-b / StatefulSet embedder: DCGM arrives as exported_pod/exported_namespace, one pod with MIG.
    Pod("team-b", "embedder-0", gauges={"batch_jobs_pending": 42},
        gpus=[("0", "", _gpu(90, 0.9, 70000, 10000))], dcgm_exported=True),
    Pod("team-b", "embedder-1", gauges={"batch_jobs_pending": 8},
        gpus=[("0", "1", _gpu(40, 0.4, 10000, 10000)), ("0", "2", _gpu(60, 0.6, 15000, 5000))], dcgm_exported=True),
    # team-b / InferenceService assistant (KServe serverless predictor) running SGLang.
    Pod("team-b", "assistant-predictor-00001-deployment-6b8f9c7d5-kx9wz", model="qwen",
        gauges={"sglang:num_queue_reqs": 4, "sglang:num_running_reqs": 5, "sglang:token_usage": 0.5,
                "sglang:gen_throughput": 900},
        histograms={"sglang:time_to_first_token_seconds": spread(SGLANG_BUCKETS, {0.2: 3, 0.4: 5, 1.0: 2}),
                    "sglang:queue_time_seconds": spread(SGLANG_BUCKETS, {0.2: 3, 0.4: 1}),
                    "sglang:e2e_request_latency_seconds": spread(SGLANG_BUCKETS, {2.0: 4, 4.0: 4, 8.0: 2})}),
    Pod("team-b", "assistant-predictor-00001-deployment-6b8f9c7d5-m2n4p", model="qwen",
        gauges={"sglang:num_queue_reqs": 2, "sglang:num_running_reqs": 3, "sglang:token_usage": 0.3,
                "sglang:gen_throughput": 700},
        histograms={"sglang:time_to_first_token_seconds": spread(SGLANG_BUCKETS, {0.2: 6, 0.6: 4}),
                    "sglang:queue_time_seconds": spread(SGLANG_BUCKETS, {0.2: 2, 1.0: 2}),
                    "sglang:e2e_request_latency_seconds": spread(SGLANG_BUCKETS, {2.0: 5, 6.0: 5})}),
    # team-c: TGI, Triton, a stale pod and a NaN pod.
    Pod("team-c", "tgi-svc-5f6d7c8b9-tz2wk", gauges={"tgi_queue_size": 6},
        histograms={"tgi_request_duration": spread(TGI_BUCKETS, {TGI_BUCKETS[20]: 3, TGI_BUCKETS[24]: 1})}),
    Pod("team-c", "triton-svc-6c7d8f9b5-wq4xz", gauges={"nv_inference_pending_request_count": 2},
        counters={"nv_inference_queue_duration_us": 5000.0, "nv_inference_request_success": 10.0}),
    Pod("team-c", "frozen-6d5f7c8b9-wxz24", gauges={"vllm:num_requests_waiting": 4}, stale_by_s=120.0),
    Pod("team-c", "broken-7c8d9f6b5-zz2xq", gauges={"vllm:num_requests_waiting": math.nan}),
    # team-z: another team's data that team-b's custom query must never see.
    Pod("team-z", "embedder-0", gauges={"batch_jobs_pending": 999}),
)


def pods_of(namespace: str, prefix: str) -> list[Pod]:
    return [p for p in FLEET if p.namespace == namespace and p.name.startswith(prefix)]


def expect_gauge_sum(pods: list[Pod], metric: str) -> float:
    return sum(p.gauges[metric] for p in pods)


def expect_gpu_avg(pods: list[Pod], fn: str, scale: float = 1.0) -> float:
    values = [g[2][fn] for p in pods for g in p.gpus]
    return scale * sum(values) / len(values)


# --- the exporter ---------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(items: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in items.items()) + "}"


def render(pods: tuple[Pod, ...], *, elapsed_s: float, start_ms: int, path: str) -> str:
    lines: list[str] = []
    for pod in pods:
        base = {"namespace": pod.namespace, "pod": pod.name, "container": "server"}
        if path == "/dcgm" or (path == "/metrics" and not pod.dcgm_exported):
            for gpu, mig, values in pod.gpus:
                labels = {"gpu": gpu, "UUID": f"GPU-{abs(hash((pod.name, gpu))) % 10**8:08d}", "device": f"nvidia{gpu}",
                          "modelName": "NVIDIA H100 80GB HBM3", "Hostname": "node-1", **base}
                if mig:
                    labels |= {"GPU_I_PROFILE": "3g.40gb", "GPU_I_ID": mig}
                if (path == "/dcgm") != pod.dcgm_exported:
                    continue
                for name, value in values.items():
                    lines.append(f"{name}{_labels(labels)} {_fmt(value)}")
        if path != "/metrics":
            continue
        engine = {"model_name": pod.model, "engine": "0", **base}
        stamp = f" {start_ms - int(pod.stale_by_s * 1000)}" if pod.stale_by_s is not None else ""
        for name, value in pod.gauges.items():
            lines.append(f"{name}{_labels(engine)} {_fmt(value)}{stamp}")
        for name, per_s in pod.counters.items():
            lines.append(f"{name}{_labels(engine)} {_fmt(per_s * elapsed_s)}")
        for name, per_s_by_le in pod.histograms.items():
            cumulative = 0.0
            for le, per_s in sorted(per_s_by_le.items()):
                cumulative += per_s
                lines.append(f"{name}_bucket{_labels(engine | {'le': _fmt(le)})} {_fmt(cumulative * elapsed_s)}")
            lines.append(f"{name}_count{_labels(engine)} {_fmt(cumulative * elapsed_s)}")
            lines.append(f"{name}_sum{_labels(engine)} {_fmt(cumulative * elapsed_s)}")
    return "\n".join(lines) + "\n"


def exposition_server(render_path: Callable[[str], str]) -> ThreadingHTTPServer:
    """An HTTP server on a free 127.0.0.1 port answering GET <path> with ``render_path(path)`` in the
    Prometheus text format (the caller serves it from a thread or a process)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = render_path(urllib.parse.urlparse(self.path).path).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


class Exporter:
    """Serves ``/metrics`` and ``/dcgm`` for ``pods`` on a free port, from a daemon thread."""

    def __init__(self, pods: tuple[Pod, ...] = FLEET) -> None:
        self.pods = pods
        self.started = time.time()
        self.server = exposition_server(
            lambda path: render(self.pods, elapsed_s=time.time() - self.started,
                                start_ms=int(self.started * 1000), path=path)
        )
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- running prometheus ---------------------------------------------------------------------------


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make test` (scripts/system-deps.sh installs Debian's "
                    f"prometheus package) or put Prometheus >= 2.40 on PATH. These tests never skip.")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def instant(url: str, expr: str) -> list[dict[str, object]]:
    data = urllib.parse.urlencode({"query": expr}).encode()
    with urllib.request.urlopen(f"{url}/api/v1/query", data=data, timeout=5) as response:
        return list(json.load(response)["data"]["result"])


@dataclass
class RunningPrometheus:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # by PID: this process only
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_prometheus(config: str, data_dir: Path, *, extra: tuple[str, ...] = ()) -> RunningPrometheus:
    binary = require_binary("prometheus")
    config_path = data_dir.parent / "prometheus.yml"
    config_path.write_text(config)
    for _attempt in range(3):  # a free port can be taken between probe and bind by a concurrent run
        port = free_port()
        log = data_dir.parent / f"prometheus-{port}.log"
        with log.open("wb") as log_file:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [binary, f"--config.file={config_path}", f"--storage.tsdb.path={data_dir}",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y", *extra],
                stdout=subprocess.DEVNULL, stderr=log_file,
            )
        running = RunningPrometheus(f"http://127.0.0.1:{port}", process, data_dir, log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{running.url}/-/ready", timeout=1) as ready:
                if ready.status == 200:
                    return running
            time.sleep(0.05)
        running.stop()
    raise RuntimeError(f"prometheus did not start; see {log}:\n{log.read_text()[-2000:]}")


LIVE_CONFIG = """\
global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: inference
    honor_labels: true
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
  - job_name: dcgm-exporter
    honor_labels: false
    metrics_path: /dcgm
    static_configs:
      - targets: ["127.0.0.1:{port}"]
        labels: {{namespace: gpu-operator, pod: dcgm-exporter-x7k2p}}
"""


@dataclass
class LivePrometheus:
    url: str
    exporter: Exporter
    server: RunningPrometheus


def wait_for(url: str, expr: str, *, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, KeyError, ValueError):
            if instant(url, expr):
                return
        time.sleep(0.1)
    raise RuntimeError(f"no samples for {expr!r} after {timeout_s} s; log:\n{log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def live_prometheus() -> Iterator[LivePrometheus]:
    exporter = Exporter()
    root = Path(tempfile.mkdtemp(prefix="prom-live-"))
    (root / "data").mkdir()
    server = start_prometheus(LIVE_CONFIG.format(port=exporter.port), root / "data")
    try:
        for expr in ('up{job="inference"} == 1', 'up{job="dcgm-exporter"} == 1',
                     "rate(vllm:generation_tokens_total[5s]) > 0",
                     "rate(nv_inference_request_success[5s]) > 0",
                     'count(rate(vllm:e2e_request_latency_seconds_bucket[5s])) >= 34'):
            wait_for(server.url, expr, timeout_s=30, log=server.log)
        # Tests use a 5 s rate window: once it holds 5+ samples (and 1 s more for evaluating at
        # now - 1 s), Prometheus's extrapolation covers the whole window and rates are the exact slopes.
        wait_for(server.url, "count_over_time(vllm:generation_tokens_total[7s]) >= 7", timeout_s=30, log=server.log)
        yield LivePrometheus(server.url, exporter, server)
    finally:
        server.stop()
        exporter.close()
        shutil.rmtree(root, ignore_errors=True)


# --- history from promtool backfill ---------------------------------------------------------------

HISTORY_START_S = 1704067200  # 2024-01-01T00:00:00Z
HISTORY_STEP_S = 15
HISTORY_POINTS = 480  # 2 h
HISTORY_PODS = (("team-a", "chat-llm-7d9f8c6b5-x2x4z"), ("team-a", "chat-llm-7d9f8c6b5-q9z7m"))


def history_waiting(pod_index: int, t_s: float) -> float:
    """The backfilled queue gauge: a ramp per pod, in whole requests."""
    return float(pod_index * 10 + int((t_s - HISTORY_START_S) // 600))


HISTORY_TOKENS_PER_S = (50.0, 150.0)


def write_history(path: Path) -> None:
    lines = ["# HELP vllm:num_requests_waiting waiting", "# TYPE vllm:num_requests_waiting gauge"]
    for step in range(HISTORY_POINTS):
        t = HISTORY_START_S + step * HISTORY_STEP_S
        for i, (ns, pod) in enumerate(HISTORY_PODS):
            lines.append(f'vllm:num_requests_waiting{{namespace="{ns}",pod="{pod}"}} {history_waiting(i, t)} {t}')
    lines += ["# HELP vllm:generation_tokens generated", "# TYPE vllm:generation_tokens counter"]
    for step in range(HISTORY_POINTS):
        t = HISTORY_START_S + step * HISTORY_STEP_S
        for i, (ns, pod) in enumerate(HISTORY_PODS):
            value = HISTORY_TOKENS_PER_S[i] * step * HISTORY_STEP_S
            lines.append(f'vllm:generation_tokens_total{{namespace="{ns}",pod="{pod}"}} {value} {t}')
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


@dataclass
class HistoryPrometheus:
    url: str
    server: RunningPrometheus


@pytest.fixture(scope="session")
def history_prometheus() -> Iterator[HistoryPrometheus]:
    promtool = require_binary("promtool")
    root = Path(tempfile.mkdtemp(prefix="prom-history-"))
    data = root / "data"
    data.mkdir()
    source = root / "history.om"
    write_history(source)
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h", "-q",
                    str(source), str(data)], check=True, capture_output=True, timeout=60)
    server = start_prometheus("global: {scrape_interval: 15s}\nscrape_configs: []\n", data)
    try:
        yield HistoryPrometheus(server.url, server)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
