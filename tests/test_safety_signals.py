"""Partial, broken or poisoned data never becomes a scale-down: the signals edge on a real Prometheus.

One Prometheus (the Debian binary) scrapes an exporter whose pods each test rewrites (its own
namespace each), every second. Cases, each named after the finding it proves (all failed before):

* finding 1, partial is unavailable: 1 of 6 pods fresh (5 only stale) reads as unavailable, not as
  the fresh pod's total (6 -> 1 before); an exporter that stops exposing 2 of 3 *Ready* pods (from
  the Kubernetes stand-in over HTTP) makes the reading unavailable once judged against the Ready pods
  (:func:`covered`), and the core holds at 3 with the reason in the decision (3 -> 1 before); the
  scale-up half of the HPA's missing-pods rule: a lower bound that already asks for more replicas
  passes, one that does not holds; a deleted pod's lingering series does not count once the Ready
  pods are known;
* finding 2, isolation: a ``data: null`` answer to one team's query (through a proxy in front of the
  real Prometheus) and a pod at 1e308 (the sum overflows) make that team's metric unavailable, and
  the other team's readings are exact; nothing raises out of the reader;
* finding 4, negative load is broken data: a queue of -100 per pod is unavailable (6 -> 1 before),
  from a preset and from a custom query;
* warm-start history drops timestamps with broken samples instead of summing them.
* the whole loop (controller + reader + stand-in): the controller judges readings against its Ready
  pods (:func:`autoscaler.signals.coverage.covered`) and holds when the exporter drops some of them.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kube_standin import KubeStandIn
from service_harness import make_controller

from autoscaler.core import MetricReading, Unavailable
from autoscaler.core.policy import TargetRef
from autoscaler.core.step import TargetReading, TargetState, step
from autoscaler.policy import ScalingPolicy, load_policies
from autoscaler.presets import PRESETS
from autoscaler.prometheus import PrometheusClient, PrometheusConfig, PrometheusResponseError
from autoscaler.prometheus.client import RangeResult, RangeSeries
from autoscaler.prometheus.ranges import summed_range
from autoscaler.service.actuator import KubeActuator
from autoscaler.service.kube import KubeClient, KubeConfig
from autoscaler.signals import FleetReader, SignalSettings
from autoscaler.signals.aggregate import PodSample
from autoscaler.signals.coverage import PodReport, TargetSeries, assess, covered

pytest_plugins = ["prometheus_server"]
pytest.register_assert_rewrite("prometheus_server")

from prometheus_server import Pod, exposition_server, render, start_prometheus, wait_for  # noqa: E402

SETTINGS = SignalSettings(scrape_interval_s=1.0, staleness_s=30.0, window="5s")
HASH = "7d9f8c6b5"
SUFFIXES = ("bcdfg", "hjklm", "npqrs", "tvwxz", "24567", "89bcd")  # generated-name alphabet only


def pod_names(target: str, n: int) -> list[str]:
    return [f"{target}-{HASH}-{suffix}" for suffix in SUFFIXES[:n]]


# --- a Prometheus scraping an exporter the tests rewrite -------------------------------------------


class MutableExporter:
    """Serves ``/metrics`` for the pods of every namespace a test published."""

    def __init__(self) -> None:
        self.namespaces: dict[str, tuple[Pod, ...]] = {}
        self.started = time.time()
        self.stale_base_ms = int(self.started * 1000)
        self.server = exposition_server(self._render)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _render(self, path: str) -> str:
        pods = tuple(p for group in list(self.namespaces.values()) for p in group)
        return render(pods, elapsed_s=time.time() - self.started, start_ms=self.stale_base_ms, path=path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class SafetyPrometheus:
    url: str
    exporter: MutableExporter
    log: Path


CONFIG = """\
global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: inference
    honor_labels: true
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
"""


@pytest.fixture(scope="module")
def safety_prometheus() -> Iterator[SafetyPrometheus]:
    exporter = MutableExporter()
    root = Path(tempfile.mkdtemp(prefix="prom-safety-"))
    (root / "data").mkdir()
    server = start_prometheus(CONFIG.format(port=exporter.port), root / "data")
    try:
        wait_for(server.url, 'up{job="inference"} == 1', timeout_s=30, log=server.log)
        yield SafetyPrometheus(server.url, exporter, server.log)
    finally:
        server.stop()
        exporter.close()
        shutil.rmtree(root, ignore_errors=True)


async def query(url: str, expr: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/api/v1/query", data={"query": expr}) as r:
        return list((await r.json())["data"]["result"])


async def publish(prom: SafetyPrometheus, namespace: str, pods: list[Pod], *,
                  metric: str = "vllm:num_requests_waiting", fresh: int | None = None) -> None:
    """Serve ``pods`` for ``namespace`` and wait until Prometheus shows exactly ``fresh`` of them with
    a sample from the last 2 s (all by default), so a read at "now" sees this state."""
    if any(p.stale_by_s is not None for p in pods):  # explicit stamps 120 s before now: within the lookback
        prom.exporter.stale_base_ms = int(time.time() * 1000)
    prom.exporter.namespaces[namespace] = tuple(pods)
    want = len(pods) if fresh is None else fresh
    expr = f'count(time() - timestamp({metric}{{namespace="{namespace}"}}) < 2) or vector(0)'
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        result = await query(prom.url, expr)
        if result and float(result[0]["value"][1]) == want:
            await asyncio.sleep(1.2)  # one more scrape: removed series are marked stale by now
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"Prometheus never showed {want} fresh pods in {namespace}: {prom.log.read_text()[-800:]}")


def queue_pods(namespace: str, target: str, values: list[float]) -> list[Pod]:
    """One pod per value, reporting it as its queue depth."""
    return [Pod(namespace, name, gauges={"vllm:num_requests_waiting": value})
            for name, value in zip(pod_names(target, len(values)), values, strict=True)]


def policy(namespace: str, target: str = "chat", *, source: str = "{preset: vllm.queue_depth}",
           extra_metric: str = "", tmp: Path, goal: str = "{type: AverageValue, averageValue: 5}") -> ScalingPolicy:
    text = f"""\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: {target}, namespace: {namespace}}}
spec:
  target: {{apiVersion: apps/v1, kind: Deployment, name: {target}}}
  minReplicas: 1
  maxReplicas: 20
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 0}}
  metrics:
    - name: queue
      source: {source}
      target: {goal}
{extra_metric}"""
    path = tmp / f"{namespace}-{target}.yaml"
    path.write_text(text)
    result = load_policies([path])
    assert not result.errors, [str(e) for e in result.errors]
    (loaded,) = result.policies
    return loaded


async def read(prom: SafetyPrometheus, policies: list[ScalingPolicy], url: str | None = None):  # type: ignore[no-untyped-def]
    async with PrometheusClient(PrometheusConfig(url=url or prom.url, retries=0)) as client:
        return await FleetReader(client, SETTINGS).read(policies, now_s=time.time())


def decide_at(p: ScalingPolicy, replicas: int, metrics: Any, ready: int | None = None):  # type: ignore[no-untyped-def]
    """What the core decides for a target at ``replicas`` from these readings (a fresh target memory:
    the HPA's first tick), with the policy's scale-down window of 0: nothing else holds a scale-down."""
    reading = TargetReading(spec_replicas=replicas, ready_replicas=replicas if ready is None else ready,
                            metrics=dict(metrics), status_replicas=replicas)
    decision, _ = step(reading, TargetState(), p, time.time())
    return decision


# --- finding 1: partial is unavailable ------------------------------------------------------------


async def test_one_of_six_fresh_pods_is_unavailable_not_a_total(safety_prometheus: SafetyPrometheus,
                                                                 tmp_path: Path) -> None:
    """5 of 6 pods only have stale series (an exporter frozen 120 s ago); the sixth reports 1."""
    ns = "safety-stale"
    pods = [Pod(ns, name, gauges={"vllm:num_requests_waiting": 1.0 if i == 5 else 10.0},
                stale_by_s=None if i == 5 else 120.0) for i, name in enumerate(pod_names("chat", 6))]
    await publish(safety_prometheus, ns, pods, fresh=1)
    p = policy(ns, tmp=tmp_path)
    signals = await read(safety_prometheus, [p])
    reading = signals.for_policy(p)["queue"]
    assert reading.value is None, f"a partial total was read as the target's: {reading}"  # was 1.0
    assert reading.unavailable is Unavailable.STALE and "1 of 6 pods report" in reading.detail
    decision = decide_at(p, 6, signals.for_policy(p))
    assert decision.desired_replicas == 6  # was 6 -> 1
    assert "1 of 6 pods report" in decision.message


def seed_ready_pods(kube: KubeStandIn, namespace: str, target: str, names: list[str]) -> None:
    """A Deployment whose Ready pods carry exactly these names (as the exporter reports them)."""
    kube.add_deployment(namespace, target, len(names), pod_names=names)


async def ready_view(kube: KubeStandIn, namespace: str, target: str):  # type: ignore[no-untyped-def]
    client = KubeClient(KubeConfig(host=kube.url, retries=0))
    actuator = KubeActuator(client)
    view = await actuator.read_scale(namespace, TargetRef("apps/v1", "Deployment", target))
    pods = await actuator.pod_summary(namespace, view.selector)
    await client.close()
    return view, pods


async def test_exporter_dropping_ready_pods_holds(safety_prometheus: SafetyPrometheus, tmp_path: Path) -> None:
    """3 Ready pods at 5 each (15 for 3 replicas at 5 each); the exporter stops exposing 2 of them."""
    ns = "safety-drop"
    names = pod_names("chat", 3)
    await publish(safety_prometheus, ns, queue_pods(ns, "chat", [5.0, 5.0, 5.0]))
    await publish(safety_prometheus, ns, queue_pods(ns, "chat", [5.0]))  # the first pod only, now
    p = policy(ns, tmp=tmp_path)
    signals = await read(safety_prometheus, [p])
    seen = signals.for_policy(p)
    assert seen["queue"].value == 5.0  # Prometheus alone cannot tell: the two pods are simply gone
    async with KubeStandIn() as kube:
        seed_ready_pods(kube, ns, "chat", names)
        view, pods = await ready_view(kube, ns, "chat")
    assert pods.ready_pods == frozenset(names)
    judged = covered(p, seen, ready_pods=pods.ready_pods, spec_replicas=view.spec_replicas,
                     status_replicas=view.status_replicas)
    reading = judged["queue"]
    assert reading.unavailable is Unavailable.MISSING and reading.value is None
    assert f"1 of 3 ready pods report (no series: {names[1]}, {names[2]})" in reading.detail
    assert decide_at(p, 3, seen).desired_replicas == 1  # what the unjudged partial total did: 3 -> 1
    decision = decide_at(p, 3, judged)
    assert decision.desired_replicas == 3 and "1 of 3 ready pods report" in decision.message


async def test_lower_bound_scales_up_but_never_down(safety_prometheus: SafetyPrometheus, tmp_path: Path) -> None:
    """The scale-up half of the HPA's rule: missing pods at 0 give a lower bound of a total."""
    ns = "safety-up"
    names = pod_names("chat", 3)
    p = policy(ns, tmp=tmp_path)
    async with KubeStandIn() as kube:
        seed_ready_pods(kube, ns, "chat", names)
        view, pods = await ready_view(kube, ns, "chat")
    await publish(safety_prometheus, ns, queue_pods(ns, "chat", [40.0]))  # 1 of 3 reports 40: >= 8 replicas
    seen = (await read(safety_prometheus, [p])).for_policy(p)
    assert seen["queue"].value == 40.0
    judged = covered(p, seen, ready_pods=pods.ready_pods, spec_replicas=3, status_replicas=3)
    assert judged["queue"].value == 40.0 and "lower bound" in judged["queue"].detail
    assert decide_at(p, 3, judged).desired_replicas == 7  # 40 / 5 = 8, rate-limited to 3 + 4 this tick
    await publish(safety_prometheus, ns, queue_pods(ns, "chat", [12.0]))  # 12 / 5 -> 3: no scale-up in it
    seen = (await read(safety_prometheus, [p])).for_policy(p)
    judged = covered(p, seen, ready_pods=pods.ready_pods, spec_replicas=view.spec_replicas, status_replicas=3)
    assert judged["queue"].value is None and "1 of 3 ready pods report" in judged["queue"].detail
    assert decide_at(p, 3, judged).desired_replicas == 3


async def test_lingering_series_of_a_deleted_pod_does_not_count(safety_prometheus: SafetyPrometheus,
                                                                tmp_path: Path) -> None:
    """Known Ready pods make the rule precise: a stale pod that is not Ready (deleted) is ignored."""
    ns = "safety-gone"
    names = pod_names("chat", 3)
    pods = [Pod(ns, names[0], gauges={"vllm:num_requests_waiting": 99.0}, stale_by_s=120.0),
            Pod(ns, names[1], gauges={"vllm:num_requests_waiting": 4.0}),
            Pod(ns, names[2], gauges={"vllm:num_requests_waiting": 6.0})]
    await publish(safety_prometheus, ns, pods, fresh=2)
    p = policy(ns, tmp=tmp_path)
    seen = (await read(safety_prometheus, [p])).for_policy(p)
    assert seen["queue"].unavailable is Unavailable.STALE  # without the Ready pods: it might be a frozen one
    async with KubeStandIn() as kube:
        seed_ready_pods(kube, ns, "chat", names[1:])
        view, ready = await ready_view(kube, ns, "chat")
    judged = covered(p, seen, ready_pods=ready.ready_pods, spec_replicas=view.spec_replicas,
                     status_replicas=view.status_replicas)
    assert judged["queue"] == MetricReading.of(10.0)


# --- finding 4: negative load is broken data -------------------------------------------------------


async def test_negative_queue_is_broken_data(safety_prometheus: SafetyPrometheus, tmp_path: Path) -> None:
    ns = "safety-neg"
    await publish(safety_prometheus, ns, queue_pods(ns, "chat", [-100.0] * 6))
    p = policy(ns, tmp=tmp_path)
    custom = policy(ns, "custom", tmp=tmp_path,
                    source="{query: 'sum(vllm:num_requests_waiting{namespace=\"{{namespace}}\"})'}")
    signals = await read(safety_prometheus, [p, custom])
    reading = signals.for_policy(p)["queue"]
    assert reading.value is None and reading.unavailable is Unavailable.NAN, reading  # was -600
    assert "negative value is broken data" in reading.detail
    assert decide_at(p, 6, signals.for_policy(p)).desired_replicas == 6  # was 6 -> 1
    from_query = signals.for_policy(custom)["queue"]
    assert from_query.unavailable is Unavailable.NAN and "negative" in from_query.detail


# --- finding 2: one team's broken data never reaches another team ---------------------------------


@pytest.fixture
async def null_proxy(safety_prometheus: SafetyPrometheus) -> AsyncIterator[str]:
    """A proxy in front of the real Prometheus that answers ``data: null`` to queries naming ``broken_``."""
    session = aiohttp.ClientSession()

    async def handle(request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        if "broken_" in str(form.get("query", "")):
            return web.json_response({"status": "success", "data": None})
        async with session.post(f"{safety_prometheus.url}{request.path}", data=form) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()
    await session.close()


async def test_data_null_and_overflow_stay_with_their_team(safety_prometheus: SafetyPrometheus, null_proxy: str,
                                                           tmp_path: Path) -> None:
    """team-a: a custom query answered ``data: null`` and two pods at 1e308 (the sum overflows);
    team-b, same preset, another namespace: read exactly, in the same tick."""
    await publish(safety_prometheus, "safety-iso-a", queue_pods("safety-iso-a", "chat", [1e308, 1e308]))
    await publish(safety_prometheus, "safety-iso-b", queue_pods("safety-iso-b", "chat", [3.0, 4.0]))
    extra = """\
    - name: backlog
      source: {query: 'sum(broken_backlog{namespace="{{namespace}}"})'}
      target: {type: AverageValue, averageValue: 5}
"""
    a = policy("safety-iso-a", tmp=tmp_path, extra_metric=extra)
    b = policy("safety-iso-b", tmp=tmp_path)
    signals = await read(safety_prometheus, [a, b], url=null_proxy)  # raised for everyone before
    assert signals.for_policy(b)["queue"] == MetricReading.of(7.0)
    overflow = signals.for_policy(a)["queue"]
    assert overflow.unavailable is Unavailable.NAN and "overflow" in overflow.detail
    null = signals.for_policy(a)["backlog"]
    assert null.unavailable is Unavailable.ERROR and "'data' is null" in null.detail
    assert decide_at(b, 2, signals.for_policy(b)).desired_replicas == 2  # team-b: business as usual
    assert decide_at(a, 6, signals.for_policy(a)).desired_replicas == 6  # team-a: holds


@pytest.mark.parametrize("data", [
    None,
    {"resultType": "vector", "result": {"not": "a list"}},
    {"resultType": "vector", "result": [{"metric": {"pod": 5}, "value": [1, "1"]}]},
    {"resultType": "vector", "result": [{"metric": {}, "value": "1"}]},
    {"resultType": "vector", "result": ["x"]},
    {"resultType": "scalar", "result": None},
    {"resultType": "matrix", "result": []},
])
async def test_malformed_answers_are_response_errors(data: Any) -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"status": "success", "data": data}), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with PrometheusClient(PrometheusConfig(url=f"http://127.0.0.1:{runner.addresses[0][1]}")) as client:
            with pytest.raises(PrometheusResponseError):
                await client.query("x", context="policy p metric m")
    finally:
        await runner.cleanup()


class Ranges:
    def __init__(self, series: tuple[RangeSeries, ...]) -> None:
        self.series = series

    async def query_range(self, expr: str, *, start_s: float, end_s: float, step_s: float,
                          context: str = "") -> RangeResult:
        return RangeResult(self.series)


async def test_history_drops_timestamps_with_broken_samples() -> None:
    series = (RangeSeries({"pod": "a"}, ((0.0, 1.0), (15.0, math.nan), (30.0, -5.0), (45.0, 1e308))),
              RangeSeries({"pod": "b"}, ((0.0, 2.0), (15.0, 2.0), (30.0, 2.0), (45.0, 1e308))))
    totals = await summed_range(Ranges(series), "x", start_s=0, end_s=45, step_s=15)
    assert totals == {0.0: 3.0}  # NaN, negative and an overflowing total are gaps, never load


# --- the rule's edges, without a server ------------------------------------------------------------

NOW = 1000.0


def series(preset: str, pods: dict[str, PodReport]) -> TargetSeries:
    return TargetSeries(PRESETS[preset], pods, NOW, 30.0)


def report(*values: float, newest: float | None = NOW - 1, labels_matched: bool = True) -> PodReport:
    samples = tuple(PodSample("p", v) for v in values)
    return PodReport(samples if labels_matched else (), bool(values), newest)


def test_a_pod_serving_other_labels_reports_zero_for_these(tmp_path: Path) -> None:
    """With matchLabels, a fresh pod whose series all carry other labels reports, with nothing matching."""
    p = policy("unit", tmp=tmp_path)
    names = pod_names("chat", 2)
    s = series("vllm.queue_depth", {names[0]: report(4.0), names[1]: report(9.0, labels_matched=False)})
    assert assess(s, policy=p, spec=p.metrics[0], ready=names, spec_replicas=2) == MetricReading.of(4.0)


def test_pods_without_a_value_yet_hold_and_averages_have_no_lower_bound(tmp_path: Path) -> None:
    p = policy("unit", tmp=tmp_path)
    names = pod_names("chat", 3)
    gen = series("vllm.generation_tokens_per_second", {names[0]: report(100.0), names[1]: report()})
    unjudged = assess(gen, policy=p, spec=p.metrics[0])
    assert unjudged.unavailable is Unavailable.MISSING and "no value yet" in unjudged.detail
    kv = policy("unit", "kv", tmp=tmp_path, source="{preset: vllm.kv_cache_usage}",
                goal="{type: Utilization, averageUtilization: 50}")
    kv_names = pod_names("kv", 3)
    full = series("vllm.kv_cache_usage", {kv_names[0]: report(0.99)})  # 99 % on the one pod that reports
    reading = assess(full, policy=kv, spec=kv.metrics[0], ready=kv_names, spec_replicas=3, status_replicas=3)
    assert reading.value is None and "1 of 3 ready pods report" in reading.detail  # an average bounds nothing


def test_value_target_lower_bound_and_pass_through(tmp_path: Path) -> None:
    p = policy("unit", tmp=tmp_path, goal="{type: Value, value: 10}")
    names = pod_names("chat", 4)
    s = series("vllm.queue_depth", {names[0]: report(30.0)})  # 30 vs 10 over 4 ready: 12 > 4 at least
    up = assess(s, policy=p, spec=p.metrics[0], ready=names, spec_replicas=4, status_replicas=4)
    assert up.value == 30.0 and "lower bound" in up.detail
    small = series("vllm.queue_depth", {names[0]: report(10.5)})  # within tolerance: no scale-up in it
    assert assess(small, policy=p, spec=p.metrics[0], ready=names, spec_replicas=4).value is None
    plain = {"queue": MetricReading.of(1.0)}
    assert covered(p, plain, ready_pods=names, spec_replicas=4) == plain  # scripted sources: as they are


def test_values_beyond_int64_milli_are_broken(tmp_path: Path) -> None:
    p = policy("unit", tmp=tmp_path)
    names = pod_names("chat", 1)
    reading = assess(series("vllm.queue_depth", {names[0]: report(1e308)}), policy=p, spec=p.metrics[0])
    assert reading.unavailable is Unavailable.NAN and "beyond" in reading.detail


# --- the whole loop --------------------------------------------------------------------------------


async def test_controller_holds_when_the_exporter_drops_ready_pods(safety_prometheus: SafetyPrometheus,
                                                                   tmp_path: Path) -> None:
    ns = "safety-loop"
    names = pod_names("chat", 3)
    await publish(safety_prometheus, ns, queue_pods(ns, "chat", [5.0]))  # 1 of 3 Ready pods exposes its queue
    policy(ns, tmp=tmp_path)
    async with KubeStandIn() as kube, PrometheusClient(PrometheusConfig(url=safety_prometheus.url)) as prom:
        seed_ready_pods(kube, ns, "chat", names)
        controller, client = make_controller(kube.url, tmp_path, FleetReader(prom, SETTINGS))
        (record,) = await controller.tick(time.time())
        await client.close()
    assert record.decision is not None and record.decision.desired_replicas == 3, record.decision
    assert not record.wrote
    assert kube.get_object("apps", "v1", "deployments", ns, "chat")["spec"]["replicas"] == 3
