"""Histogram buckets summed per owner inside Prometheus read exactly as the per-pod path did (issue 17).

One real Prometheus (the Debian binary) scrapes an exporter of histograms, every second; each case has its
own namespace. Every case reads the same targets twice at the same instant, with the owner sums
(``histogram_owner_sums=True``, the default) and with one series per pod and bucket (False, the path before),
and requires the same readings, value, reason and detail, before and after :func:`covered` judges them against
the Ready pods. Cases:

* a fleet of Deployments (1, 2 and 3 pods), a StatefulSet, a LeaderWorkerSet, a prefix-named neighbour
  (``chat`` / ``chat-llm``), a pod on the older metric name beside one on the newer, ``matchLabels`` on a pod
  serving two models: identical quantiles, one query per preset (no per-pod re-read), a smaller answer;
* a pod missing its histogram (no series at all; ``_count`` but no bucket): unavailable as before once judged
  against the Ready pods (from the Kubernetes stand-in over HTTP);
* a pod that reports but is not Ready (a terminating or starting pod): counted as before;
* a pod whose ``_count`` is stale while its buckets still have a rate, a pod with NaN buckets, a NaN in a
  bucket below ``+Inf``: the target is re-read per pod with a ``pod=~`` selector naming only its pods, and
  reads exactly as before (stale, nan);
* names that look like another target's pods: a StatefulSet and a Deployment both named ``web``, a stray
  ``api-2`` beside Deployment ``api``: their owner group is shared, so they are re-read per pod and never mix;
* units: the owner stem, the query's shape, the split of a long re-read, :func:`owner_series` refusing a
  group with a foreign pod.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kube_standin import KubeStandIn

from autoscaler.core.model import Unavailable
from autoscaler.core.policy import MetricSource, MetricSpec, MetricTarget, ScalingPolicy, TargetRef, TargetType
from autoscaler.presets import PRESETS
from autoscaler.prometheus import PrometheusClient, PrometheusConfig
from autoscaler.prometheus.client import InstantResult, Sample
from autoscaler.service.actuator import KubeActuator
from autoscaler.service.kube import KubeClient, KubeConfig
from autoscaler.signals import FleetReader, FleetSignals, SignalSettings, bucket_quantile
from autoscaler.signals.aggregate import sum_buckets
from autoscaler.signals.coverage import covered
from autoscaler.signals.fleet import _chunks
from autoscaler.signals.owners import index_owner_answer, owner_series
from autoscaler.signals.promql import OWNER_LABEL, PromQLTemplateError, owner_query
from autoscaler.signals.targets import owner_stem

pytest_plugins = ["prometheus_server"]
pytest.register_assert_rewrite("prometheus_server")

from prometheus_server import exposition_server, start_prometheus, wait_for  # noqa: E402

E2E = "vllm:e2e_request_latency_seconds"
ITL_NEW, ITL_OLD = "vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"
BOUNDS = (0.3, 0.5, 1.0, 2.0, 5.0, 10.0, math.inf)
OWNER_SETTINGS = SignalSettings(scrape_interval_s=1.0, staleness_s=30.0, window="5s")
POD_SETTINGS = SignalSettings(scrape_interval_s=1.0, staleness_s=30.0, window="5s", histogram_owner_sums=False)


# --- an exporter of histograms --------------------------------------------------------------------


@dataclass
class HistPod:
    namespace: str
    name: str
    per_s: dict[float, float]  # non-cumulative per-second counts per bound
    metric: str = E2E
    model: str = "m"
    count_stale_by_s: float | None = None  # _count carries a timestamp this far in the past
    nan_from: float | None = None  # buckets from this bound up (and _count) are NaN
    nan_only: float | None = None  # only this bucket is NaN
    buckets: bool = True  # False: only _count (no bucket series)
    extra_models: dict[str, dict[float, float]] = field(default_factory=dict)


def _fmt(value: float) -> str:
    return "NaN" if math.isnan(value) else "+Inf" if math.isinf(value) else repr(float(value))


def render(pods: list[HistPod], elapsed_s: float, start_ms: int) -> str:
    lines = []
    for pod in pods:
        for model, per_s in {pod.model: pod.per_s, **pod.extra_models}.items():
            labels = f'namespace="{pod.namespace}",pod="{pod.name}",model_name="{model}"'
            cumulative = 0.0
            for le in BOUNDS:
                cumulative += per_s.get(le, 0.0)
                value = cumulative * elapsed_s
                if (pod.nan_from is not None and le >= pod.nan_from) or pod.nan_only == le:
                    value = math.nan
                if pod.buckets:
                    lines.append(f'{pod.metric}_bucket{{{labels},le="{_fmt(le)}"}} {_fmt(value)}')
            stamp = f" {start_ms - int(pod.count_stale_by_s * 1000)}" if pod.count_stale_by_s is not None else ""
            count = math.nan if pod.nan_from is not None else cumulative * elapsed_s
            lines.append(f"{pod.metric}_count{{{labels}}} {_fmt(count)}{stamp}")
    return "\n".join(lines) + "\n"


def hpod(ns: str, name: str, *weights: tuple[float, float], **kw: object) -> HistPod:
    return HistPod(ns, name, dict(weights), **kw)  # type: ignore[arg-type]


H = "7d9f8c6b5"
FLEET = [
    # owners: Deployment chat-llm (3 pods), its prefix-named neighbour chat (1 pod), StatefulSet embed (2),
    # LeaderWorkerSet lws (leader + workers), Deployment mixed (one pod on the older ITL name), Deployment
    # multi (a pod serving two models).
    hpod("own-fleet", f"chat-llm-{H}-bcdfg", (0.5, 3), (1.0, 4), (2.0, 2), (5.0, 1)),
    hpod("own-fleet", f"chat-llm-{H}-hjklm", (0.3, 1), (1.0, 2), (5.0, 4), (10.0, 2)),
    hpod("own-fleet", f"chat-llm-{H}-npqrs", (2.0, 5), (10.0, 1), (math.inf, 1)),
    hpod("own-fleet", f"chat-5c8b9d7f4-{'tvwxz'}", (10.0, 1)),
    hpod("own-fleet", "embed-0", (0.3, 7), (0.5, 1)),
    hpod("own-fleet", "embed-1", (0.5, 2), (2.0, 3)),
    hpod("own-fleet", "lws-0", (1.0, 2)), hpod("own-fleet", "lws-0-1", (2.0, 2)), hpod("own-fleet", "lws-1", (5.0, 1)),
    hpod("own-fleet", f"mixed-{H}-bcdfg", (0.3, 4), (0.5, 4), metric=ITL_NEW),
    hpod("own-fleet", f"mixed-{H}-hjklm", (0.5, 1), (1.0, 3), metric=ITL_OLD),
    hpod("own-fleet", f"multi-{H}-bcdfg", (0.5, 2), (1.0, 2), model="a", extra_models={"b": {5.0: 4, 10.0: 4}}),
    hpod("own-fleet", f"multi-{H}-hjklm", (1.0, 1), (2.0, 1), model="a", extra_models={"b": {0.3: 4}}),
    # a pod missing its histogram: no series at all for chat-gone's second pod; only _count for the third
    hpod("own-missing", f"gone-{H}-bcdfg", (1.0, 4), (2.0, 2)),
    hpod("own-missing", f"gone-{H}-npqrs", (1.0, 1), buckets=False),
    # a pod that reports but is not Ready (the stand-in makes the third pod not Ready)
    hpod("own-notready", f"serve-{H}-bcdfg", (0.5, 4), (1.0, 2)),
    hpod("own-notready", f"serve-{H}-hjklm", (1.0, 3), (2.0, 1)),
    hpod("own-notready", f"serve-{H}-npqrs", (10.0, 6)),
    # re-read per pod: a stale _count beside fresh buckets; NaN buckets from 1.0 up; a NaN below +Inf only
    hpod("own-again", f"stale-{H}-bcdfg", (0.5, 3), (1.0, 3)),
    hpod("own-again", f"stale-{H}-hjklm", (5.0, 4), count_stale_by_s=120.0),
    hpod("own-again", f"nan-{H}-bcdfg", (0.5, 3)),
    hpod("own-again", f"nan-{H}-hjklm", (1.0, 3), nan_from=1.0),
    hpod("own-again", f"half-{H}-bcdfg", (0.5, 3)),
    hpod("own-again", f"half-{H}-hjklm", (1.0, 3), nan_only=0.5),
    hpod("own-again", f"fine-{H}-bcdfg", (2.0, 3)),
    # look-alike names: StatefulSet web and Deployment web share the owner stem; api-2 is nobody's pod
    hpod("own-alike", "web-0", (0.3, 5)), hpod("own-alike", "web-1", (0.5, 5)),
    hpod("own-alike", f"web-{H}-bcdfg", (10.0, 5)), hpod("own-alike", f"web-{H}-hjklm", (5.0, 5)),
    hpod("own-alike", f"api-{H}-bcdfg", (1.0, 2)), hpod("own-alike", "api-2", (10.0, 50)),
]


@dataclass
class HistPrometheus:
    url: str


@pytest.fixture(scope="module")
def hist_prometheus() -> Iterator[HistPrometheus]:
    started = time.time()
    start_ms = int(started * 1000)
    server_http = exposition_server(lambda path: render(FLEET, time.time() - started, start_ms))
    thread = threading.Thread(target=server_http.serve_forever, daemon=True)
    thread.start()
    root = Path(tempfile.mkdtemp(prefix="prom-owner-"))
    (root / "data").mkdir()
    config = (f"global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: hist\n"
              f"    honor_labels: true\n    static_configs: [{{targets: ['127.0.0.1:{server_http.server_address[1]}']}}]\n")
    server = start_prometheus(config, root / "data")
    try:
        wait_for(server.url, f"count_over_time({E2E}_count{{pod=\"chat-llm-{H}-bcdfg\"}}[7s]) >= 7", timeout_s=30,
                 log=server.log)
        yield HistPrometheus(server.url)
    finally:
        server.stop()
        server_http.shutdown()
        server_http.server_close()
        shutil.rmtree(root, ignore_errors=True)


# --- policies and reads ---------------------------------------------------------------------------


def target(ns: str, kind: str, name: str, *metrics: tuple[str, str, dict[str, str]]) -> ScalingPolicy:
    api = "leaderworkerset.x-k8s.io/v1" if kind == "LeaderWorkerSet" else "apps/v1"
    specs = tuple(MetricSpec(metric, MetricSource(preset=preset, match_labels=match),
                             MetricTarget(TargetType.VALUE, 2000, "2")) for metric, preset, match in metrics)
    return ScalingPolicy(f"{kind.lower()}-{name}", ns, TargetRef(api, kind, name), 1, 10, specs)


E2E_METRIC = ("e2e", "vllm.e2e_latency_p95", {})


async def read_both(url: str, policies: list[ScalingPolicy]) -> tuple[FleetSignals, FleetSignals, int, int]:
    """The same instant read with owner sums and per pod: (owner, per_pod, owner requests, per-pod requests)."""
    now = time.time() - 1.0  # every scrape up to here has landed
    async with PrometheusClient(PrometheusConfig(url=url)) as client:
        owner = await FleetReader(client, OWNER_SETTINGS).read(policies, now_s=now)
        requests = client.requests
        per_pod = await FleetReader(client, POD_SETTINGS).read(policies, now_s=now)
        return owner, per_pod, requests, client.requests - requests


def expected(*pods: HistPod, model: str | None = None, q: float = 0.95) -> float:
    """The closed-form quantile over these pods' buckets (per-second counts; rates are their slopes)."""
    buckets = []
    for pod in pods:
        per_s = pod.per_s if model in (None, pod.model) else pod.extra_models[model]
        cumulative = 0.0
        for le in BOUNDS:
            cumulative += per_s.get(le, 0.0)
            buckets.append((le, cumulative))
    return bucket_quantile(q, sum_buckets(buckets))


def pods(ns: str, prefix: str) -> list[HistPod]:
    return [p for p in FLEET if p.namespace == ns and p.name.startswith(prefix)]


def assert_same(owner: FleetSignals, per_pod: FleetSignals, policies: list[ScalingPolicy]) -> None:
    for policy in policies:
        assert dict(owner.for_policy(policy)) == dict(per_pod.for_policy(policy)), policy.key


# --- identical quantiles --------------------------------------------------------------------------


THREE_PODS = {"chat-llm", "lws"}


async def test_owner_sums_read_the_fleet_exactly_as_per_pod(hist_prometheus: HistPrometheus) -> None:
    ns = "own-fleet"
    policies = [
        target(ns, "Deployment", "chat-llm", E2E_METRIC), target(ns, "Deployment", "chat", E2E_METRIC),
        target(ns, "StatefulSet", "embed", E2E_METRIC), target(ns, "LeaderWorkerSet", "lws", E2E_METRIC),
        target(ns, "Deployment", "mixed", ("itl", "vllm.itl_p95", {})),
        target(ns, "Deployment", "multi", ("a", "vllm.e2e_latency_p95", {"model_name": "a"}),
               ("b", "vllm.e2e_latency_p95", {"model_name": "b"})),
    ]
    owner, per_pod, owner_requests, pod_requests = await read_both(hist_prometheus.url, policies)
    assert owner_requests == pod_requests == len(owner.queries) == 2  # one per preset: nothing re-read per pod
    assert all("group_left" in q for q in owner.queries) and not any("group_left" in q for q in per_pod.queries)
    values = {p.name: {m: r.value for m, r in owner.readings[p.key].items()} for p in policies}
    for policy in policies:
        for name, reading in owner.readings[policy.key].items():
            before = per_pod.readings[policy.key][name]
            assert reading.unavailable is None and before.unavailable is None, (policy.key, name, reading)
            assert reading.value is not None and before.value is not None
            if policy.target.name in THREE_PODS:  # three terms may be added in another order
                assert reading.value == pytest.approx(before.value, rel=1e-12, abs=0)
            else:  # one or two pods: a two-term sum is the same in any order, to the last bit
                assert reading.value == before.value, (policy.key, name)
    assert_same(owner, per_pod, [p for p in policies if p.target.name not in THREE_PODS])
    approx = lambda v: pytest.approx(v, rel=0.02)  # noqa: E731 - rates carry scrape jitter
    assert values["deployment-chat-llm"]["e2e"] == approx(expected(*pods(ns, "chat-llm-")))
    assert values["deployment-chat"]["e2e"] == approx(expected(*pods(ns, "chat-5")))  # not chat-llm's
    assert values["statefulset-embed"]["e2e"] == approx(expected(*pods(ns, "embed-")))
    assert values["leaderworkerset-lws"]["e2e"] == approx(expected(*pods(ns, "lws-")))
    assert values["deployment-mixed"]["itl"] == approx(expected(*pods(ns, "mixed-")))  # both metric names
    assert values["deployment-multi"]["a"] == approx(expected(*pods(ns, "multi-"), model="a"))
    assert values["deployment-multi"]["b"] == approx(expected(*pods(ns, "multi-"), model="b"))
    assert values["deployment-multi"]["a"] != values["deployment-multi"]["b"]


async def test_owner_answer_has_a_series_per_owner_and_bucket_not_per_pod(hist_prometheus: HistPrometheus) -> None:
    policies = [target("own-fleet", "Deployment", "chat-llm", E2E_METRIC)]
    owner, per_pod, *_ = await read_both(hist_prometheus.url, policies)
    async with PrometheusClient(PrometheusConfig(url=hist_prometheus.url)) as client:
        now = time.time() - 1.0
        new = await client.query(owner.queries[0], time_s=now)
        old = await client.query(per_pod.queries[0], time_s=now)
    ns_pods = [p for p in FLEET if p.namespace == "own-fleet" and p.metric == E2E]
    owners = {owner_stem(p.name) for p in ns_pods}
    buckets = len(BOUNDS)
    # per pod and bucket (multi's two models fold into one pod's buckets: no matchLabels asked), + 1 per pod
    assert len(old.samples) == (buckets + 1) * len(ns_pods)
    # per owner and bucket, + 2 per pod (its +Inf rate and its timestamp)
    assert len(new.samples) == buckets * len(owners) + 2 * len(ns_pods)
    assert {s.labels[OWNER_LABEL] for s in new.samples if "pod" not in s.labels} == owners


# --- coverage, as before ------------------------------------------------------------------------------


async def ready_pods(kube: KubeStandIn, ns: str, name: str) -> frozenset[str] | None:
    client = KubeClient(KubeConfig(host=kube.url, retries=0))
    try:
        actuator = KubeActuator(client)
        view = await actuator.read_scale(ns, TargetRef("apps/v1", "Deployment", name))
        return (await actuator.pod_summary(ns, view.selector)).ready_pods
    finally:
        await client.close()


async def test_a_pod_missing_its_histogram_is_unavailable_as_before(hist_prometheus: HistPrometheus) -> None:
    ns = "own-missing"
    names = [f"gone-{H}-bcdfg", f"gone-{H}-hjklm", f"gone-{H}-npqrs"]  # hjklm: no series; npqrs: _count only
    policy = target(ns, "Deployment", "gone", E2E_METRIC)
    owner, per_pod, requests, _ = await read_both(hist_prometheus.url, [policy])
    assert requests == 1
    seen = owner.for_policy(policy)
    assert seen == per_pod.for_policy(policy)
    assert seen["e2e"].unavailable is Unavailable.MISSING  # the pod with a _count and no bucket, as before
    assert "1 of 2 pods report (no value yet: " + names[2] in seen["e2e"].detail
    async with KubeStandIn() as kube:
        kube.add_deployment(ns, "gone", 3, pod_names=names)
        ready = await ready_pods(kube, ns, "gone")
    assert ready == frozenset(names)
    judged = covered(policy, seen, ready_pods=ready, spec_replicas=3, status_replicas=3)
    assert judged == covered(policy, per_pod.for_policy(policy), ready_pods=ready, spec_replicas=3, status_replicas=3)
    assert judged["e2e"].value is None and judged["e2e"].unavailable is Unavailable.MISSING
    assert f"1 of 3 ready pods report (no series: {names[1]}; no value yet: {names[2]})" in judged["e2e"].detail


async def test_a_pod_that_reports_but_is_not_ready_counts_as_before(hist_prometheus: HistPrometheus) -> None:
    ns = "own-notready"
    names = [f"serve-{H}-bcdfg", f"serve-{H}-hjklm", f"serve-{H}-npqrs"]
    policy = target(ns, "Deployment", "serve", E2E_METRIC)
    owner, per_pod, requests, _ = await read_both(hist_prometheus.url, [policy])
    assert requests == 1
    async with KubeStandIn() as kube:
        kube.add_deployment(ns, "serve", 3, ready=2, pod_names=names)
        ready = await ready_pods(kube, ns, "serve")
    assert ready == frozenset(names[:2])  # the third is not Ready (starting, or terminating) and still reports
    judged = covered(policy, owner.for_policy(policy), ready_pods=ready, spec_replicas=3, status_replicas=3)
    before = covered(policy, per_pod.for_policy(policy), ready_pods=ready, spec_replicas=3, status_replicas=3)
    assert judged["e2e"].unavailable is before["e2e"].unavailable is None
    assert judged["e2e"].value == pytest.approx(before["e2e"].value, rel=1e-12, abs=0)  # three terms, any order
    # as before, its buckets count: the quantile is over all three pods' buckets, not the Ready two's
    assert judged["e2e"].value == pytest.approx(expected(*pods(ns, "serve-")), rel=0.02)
    assert judged["e2e"].value != pytest.approx(expected(*pods(ns, "serve-")[:2]), rel=0.02)


# --- re-read per pod --------------------------------------------------------------------------------------


async def test_stale_or_broken_pods_are_reread_per_pod_and_judged_as_before(hist_prometheus: HistPrometheus) -> None:
    ns = "own-again"
    policies = [target(ns, "Deployment", name, E2E_METRIC) for name in ("stale", "nan", "half", "fine")]
    owner, per_pod, requests, _ = await read_both(hist_prometheus.url, policies)
    assert_same(owner, per_pod, policies)
    assert requests == 2 == len(owner.queries)  # the owner query, then one bounded per-pod read
    reread = owner.queries[1]
    assert "group_left" not in reread
    for name in ("stale", "nan", "half"):
        assert f"{name}-{H}-bcdfg" in reread and f"{name}-{H}-hjklm" in reread
    assert "fine-" not in reread and 'pod!=""' not in reread  # only the pods of the targets re-read
    r = {p.target.name: owner.readings[p.key]["e2e"] for p in policies}
    assert r["stale"].unavailable is Unavailable.STALE and f"stale (bound 30 s): stale-{H}-hjklm" in r["stale"].detail
    assert r["nan"].unavailable is Unavailable.NAN and f"pod nan-{H}-hjklm reports nan" in r["nan"].detail
    assert r["half"].unavailable is Unavailable.NAN and f"pod half-{H}-hjklm reports nan (le=0.5)" in r["half"].detail
    assert r["fine"].value == pytest.approx(expected(*pods(ns, "fine-")), rel=0.02)
    # the stale pod is not Ready (terminating, say): judged against the Ready pod it is ignored, as before
    stale = policies[0]
    ready = frozenset({f"stale-{H}-bcdfg"})
    judged = covered(stale, owner.for_policy(stale), ready_pods=ready, spec_replicas=1)
    assert judged == covered(stale, per_pod.for_policy(stale), ready_pods=ready, spec_replicas=1)
    assert judged["e2e"].value == pytest.approx(expected(pods(ns, "stale-")[0]), rel=0.02)


async def test_look_alike_names_never_mix(hist_prometheus: HistPrometheus) -> None:
    ns = "own-alike"
    policies = [target(ns, "StatefulSet", "web", E2E_METRIC), target(ns, "Deployment", "web", E2E_METRIC),
                target(ns, "Deployment", "api", E2E_METRIC)]
    owner, per_pod, requests, _ = await read_both(hist_prometheus.url, policies)
    assert_same(owner, per_pod, policies)
    assert requests == 2  # the shared "web" and "api" groups are re-read per pod, in one bounded query
    assert "api-2" not in owner.queries[1]  # nobody's pod is not even read again
    r = {p.name: owner.readings[p.key]["e2e"].value for p in policies}
    approx = lambda v: pytest.approx(v, rel=0.02)  # noqa: E731
    assert r["statefulset-web"] == approx(expected(*[p for p in pods(ns, "web-") if p.name[-1].isdigit()]))
    assert r["deployment-web"] == approx(expected(*[p for p in pods(ns, "web-") if not p.name[-1].isdigit()]))
    assert r["deployment-api"] == approx(expected(pods(ns, "api-")[0]))  # api-2's 50/s at 10 s never count


# --- units --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pod", "stem"), [
    (f"chat-llm-{H}-x2x4z", "chat-llm"), ("embed-0", "embed"), ("lws-0-1", "lws-0"), ("lws-12", "lws"),
    ("bare", "bare"), (f"svc-predictor-00001-deployment-{H}-kx9wz", "svc-predictor-00001-deployment"),
    ("x-aeiou", "x-aeiou"),  # vowels: not a generated suffix, not an ordinal: the pod is its own group
])
def test_owner_stem(pod: str, stem: str) -> None:
    assert owner_stem(pod) == stem


def test_owner_query_shape() -> None:
    text = owner_query(PRESETS["vllm.e2e_latency_p95"], namespaces=["b", "a"], window="1m")
    assert text.count("group_left") == 1 and text.count('namespace=~"a|b"') == 4
    assert 'le=~"[+]?(?i:inf|infinity)"' in text and '"signal_field", "pods"' in text and '"signal_field", "ts"' in text
    assert f"sum by (namespace, {OWNER_LABEL}, le)" in text
    two = owner_query(PRESETS["vllm.itl_p95"], namespaces=["a"], window="1m", group_labels=["model_name"])
    assert f"sum by (namespace, {OWNER_LABEL}, model_name, le)" in two
    assert "sum by (namespace, pod, model_name, le)" in two  # per pod first: the older name fills in per pod
    with pytest.raises(ValueError, match="reads histograms"):
        owner_query(PRESETS["vllm.queue_depth"], namespaces=["a"], window="1m")
    with pytest.raises(PromQLTemplateError, match=OWNER_LABEL):
        owner_query(PRESETS["vllm.e2e_latency_p95"], namespaces=["a"], window="1m", group_labels=[OWNER_LABEL])


def test_a_long_reread_is_split_without_splitting_a_target() -> None:
    policy = target("a", "Deployment", "x", E2E_METRIC)
    spec = policy.signals[0]
    again = [(policy, spec, [f"x-{H}-{i:05d}" for i in range(3)]) for _ in range(5)]
    chunks = _chunks(again, 60)  # 3 names of 17 characters (+1) per target: 54 each, so one target a chunk
    assert [len(c) for c in chunks] == [1, 1, 1, 1, 1]
    assert [len(c) for c in _chunks(again, 120)] == [2, 2, 1]
    assert [len(c) for c in _chunks(again, 10_000)] == [5]


def _answer(*samples: tuple[dict[str, str], float]) -> InstantResult:
    return InstantResult("vector", tuple(Sample(labels, value, 0.0) for labels, value in samples))


def test_owner_series_refuses_a_group_with_a_pod_that_is_not_the_targets() -> None:
    policy = target("a", "Deployment", "web", E2E_METRIC)
    spec, preset = policy.signals[0], PRESETS["vllm.e2e_latency_p95"]
    mine, stray = f"web-{H}-bcdfg", "web-0"
    per_pod = [({"namespace": "a", "pod": p, OWNER_LABEL: "web", "signal_field": "pods"}, 1.0) for p in (mine, stray)]
    sums = [({"namespace": "a", OWNER_LABEL: "web", "le": le}, v) for le, v in (("1", 1.0), ("+Inf", 2.0))]
    answer = index_owner_answer(_answer(*per_pod, *sums))
    assert owner_series(preset, policy, spec, answer, [mine, stray], now_s=0, staleness_s=30) is None
    alone = index_owner_answer(_answer(per_pod[0], *sums))
    series = owner_series(preset, policy, spec, alone, [mine], now_s=0, staleness_s=30)
    assert series is not None and series.summed is not None and len(series.summed) == 2
    assert set(series.pods) == {mine}
    broken = index_owner_answer(_answer((per_pod[0][0], math.nan), *sums))
    assert owner_series(preset, policy, spec, broken, [mine], now_s=0, staleness_s=30) is None
    negative = index_owner_answer(_answer(per_pod[0], (sums[0][0], -1.0), sums[1]))
    assert owner_series(preset, policy, spec, negative, [mine], now_s=0, staleness_s=30) is None
