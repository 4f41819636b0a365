"""Signals against a real Prometheus: every preset, both DCGM label forms, staleness, NaN, missing, isolation.

Cases (one live Prometheus for the session, scraping the fleet in ``prometheus_server.FLEET``):
* every preset read for its target through one batched query per preset, checked against the closed
  form of the fleet and against Prometheus's own per-target PromQL at the same instant (quantiles equal
  to ``histogram_quantile`` over the summed buckets; histograms are read with their buckets summed per
  owner inside Prometheus, the default: ``tests/test_signals_owner_sums.py`` compares that with per pod);
* DCGM with ``pod`` (honor_labels: true) and ``exported_pod`` (honor_labels: false) labels, MIG instances;
* Deployment / StatefulSet / KServe predictor pod matching, a prefix-named neighbour kept apart;
* explicit-timestamp series older than the bound -> stale; NaN -> nan; no series -> missing; all counted;
* custom query templates: {{namespace}} and {{selector}} substituted, another namespace never visible;
* queries per tick = presets in use + custom metrics, the same for 1 or many targets;
* the `signals` CLI JSON and table output; a bad_data error names the policy and metric;
* promtool-backfilled history: range queries and a historical fleet read.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from autoscaler import cli
from autoscaler.core.model import Unavailable
from autoscaler.policy import ScalingPolicy, load_policies
from autoscaler.presets import PRESETS
from autoscaler.prometheus import PrometheusClient, PrometheusConfig, PrometheusQueryError
from autoscaler.signals import FleetReader, SignalSettings, bucket_quantile, target_query
from autoscaler.signals.aggregate import sum_buckets

pytest_plugins = ["prometheus_server"]
pytest.register_assert_rewrite("prometheus_server")  # imported below, before pytest loads it as a plugin

from prometheus_server import (  # noqa: E402
    HISTORY_PODS,
    HISTORY_START_S,
    HISTORY_STEP_S,
    HISTORY_TOKENS_PER_S,
    HistoryPrometheus,
    LivePrometheus,
    expect_gauge_sum,
    expect_gpu_avg,
    history_waiting,
    pods_of,
)

_HEAD = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  target: {{apiVersion: {api}, kind: {kind}, name: {target}}}
  minReplicas: 1
  maxReplicas: 10
  metrics:
"""
_KINDS = {"sum": ("AverageValue", "averageValue: 5"), "value": ("Value", "value: 1"),
          "util": ("Utilization", "averageUtilization: 70")}


def _policy(name: str, ns: str, kind: str, target: str, metrics: list[tuple[str, str, str]],
            api: str = "apps/v1") -> str:
    text = _HEAD.format(name=name, ns=ns, kind=kind, target=target, api=api)
    for metric, source, how in metrics:
        target_type, field = _KINDS[how]
        text += f"    - name: {metric}\n      source: {source}\n      target: {{type: {target_type}, {field}}}\n"
    return text


VLLM = [("queue", "{preset: vllm.queue_depth}", "sum"), ("running", "{preset: vllm.running}", "sum"),
        ("kv", "{preset: vllm.kv_cache_usage}", "util"),
        ("gen", "{preset: vllm.generation_tokens_per_second}", "sum"),
        ("prompt", "{preset: vllm.prompt_tokens_per_second}", "sum"),
        ("e2e", "{preset: vllm.e2e_latency_p95}", "value"), ("ttft", "{preset: vllm.ttft_p95}", "value"),
        ("itl", "{preset: vllm.itl_p95}", "value"), ("qtime", "{preset: vllm.queue_time_p95}", "value"),
        ("done", "{preset: vllm.request_rate}", "sum")]
DCGM = [("gpu", "{preset: dcgm.gpu_util}", "util"), ("engine", "{preset: dcgm.gr_engine_active}", "util"),
        ("fb", "{preset: dcgm.fb_used_ratio}", "util")]

DOCUMENTS = {
    "team-a/chat-llm.yaml": _policy("chat-llm", "team-a", "Deployment", "chat-llm", VLLM + DCGM),
    "team-a/chat.yaml": _policy("chat", "team-a", "Deployment", "chat", [VLLM[0]]),
    "team-b/embedder.yaml": _policy("embedder", "team-b", "StatefulSet", "embedder", [
        *DCGM,
        ("backlog", "{query: 'sum(batch_jobs_pending{namespace=\"{{namespace}}\", {{selector}}})'}", "sum"),
        ("sneaky", "{query: 'sum(batch_jobs_pending{namespace=\"team-z\"}) or vector(0) * 0 + on() "
                   "sum({__name__=\"batch_jobs_pending\"})'}", "sum"),
    ]),
    "team-b/assistant.yaml": _policy("assistant", "team-b", "InferenceService", "assistant", [
        ("queue", "{preset: sglang.queue_depth}", "sum"), ("tokens", "{preset: sglang.token_usage}", "util"),
        ("gen", "{preset: sglang.generation_tokens_per_second}", "sum"),
        ("ttft", "{preset: sglang.ttft_p95}", "value"), ("e2e", "{preset: sglang.e2e_latency_p95}", "value"),
        ("running", "{preset: sglang.running}", "sum"), ("qtime", "{preset: sglang.queue_time_p95}", "value"),
        ("done", "{preset: sglang.request_rate}", "sum"),
    ], api="serving.kserve.io/v1beta1"),
    "team-c/tgi.yaml": _policy("tgi", "team-c", "Deployment", "tgi-svc", [
        ("queue", "{preset: tgi.queue_depth}", "sum"), ("p95", "{preset: tgi.request_duration_p95}", "value")]),
    "team-c/triton.yaml": _policy("triton", "team-c", "Deployment", "triton-svc", [
        ("pending", "{preset: triton.pending_requests}", "sum"),
        ("queue-time", "{preset: triton.queue_duration_per_request}", "value")]),
    "team-c/frozen.yaml": _policy("frozen", "team-c", "Deployment", "frozen", [VLLM[0]]),
    "team-c/broken.yaml": _policy("broken", "team-c", "Deployment", "broken", [VLLM[0]]),
    "team-x/ghost.yaml": _policy("ghost", "team-x", "Deployment", "ghost", [VLLM[0], DCGM[0]]),
}


def write_policies(root: Path) -> Path:
    for rel, text in DOCUMENTS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def load_fleet_policies(root: Path) -> dict[str, ScalingPolicy]:
    result = load_policies([write_policies(root)])
    assert not result.errors, [str(e) for e in result.errors]
    return {p.key: p for p in result.policies}


SETTINGS = SignalSettings(scrape_interval_s=1.0, staleness_s=30.0, window="5s")


@pytest.fixture(scope="module")
def fleet_policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ScalingPolicy]:
    return load_fleet_policies(tmp_path_factory.mktemp("policies"))


async def read_fleet(live: LivePrometheus, policies: list[ScalingPolicy], **kw: object):  # type: ignore[no-untyped-def]
    async with PrometheusClient(PrometheusConfig(url=live.url)) as client:
        reader = FleetReader(client, SETTINGS)
        now = time.time() - 1.0  # an instant every scrape has surely landed for
        signals = await reader.read(policies, now_s=now)
        return signals, now, reader, client.requests


def hist_expect(pods_metrics: list[dict[float, float]], q: float = 0.95) -> float:
    """The closed-form quantile: cumulative per-second counts summed over pods."""
    buckets = []
    for per_le in pods_metrics:
        cumulative = 0.0
        for le, per_s in sorted(per_le.items()):
            cumulative += per_s
            buckets.append((le, cumulative))
    return bucket_quantile(q, sum_buckets(buckets))


async def test_every_preset_reads_its_targets_with_one_query_per_preset(
    live_prometheus: LivePrometheus, fleet_policies: dict[str, ScalingPolicy]
) -> None:
    policies = list(fleet_policies.values())
    signals, _now, _reader, requests = await read_fleet(live_prometheus, policies)
    presets_used = {s.source.preset for p in policies for s in p.metrics if s.source.preset}
    customs = sum(1 for p in policies for s in p.metrics if s.source.query)
    assert presets_used == set(PRESETS), "the live fleet must prove every preset"
    assert len(signals.queries) == len(presets_used) + customs == requests

    r = {key: {m: reading.value for m, reading in signals.readings[key].items()} for key in fleet_policies}
    chat_llm = pods_of("team-a", "chat-llm-")
    approx = lambda v: pytest.approx(v, rel=0.03)  # noqa: E731 - rates carry scrape jitter

    assert r["team-a/chat-llm"]["queue"] == 8 and r["team-a/chat-llm"]["running"] == 16
    assert r["team-a/chat-llm"]["kv"] == pytest.approx(50.0)  # new name on one pod, the old on the other
    assert r["team-a/chat-llm"]["gen"] == approx(200) and r["team-a/chat-llm"]["prompt"] == approx(500)
    assert r["team-a/chat-llm"]["e2e"] == pytest.approx(
        hist_expect([p.histograms["vllm:e2e_request_latency_seconds"] for p in chat_llm]), rel=1e-6)
    assert r["team-a/chat-llm"]["ttft"] == pytest.approx(
        hist_expect([p.histograms["vllm:time_to_first_token_seconds"] for p in chat_llm]), rel=1e-6)
    itl = [p.histograms.get("vllm:inter_token_latency_seconds") or p.histograms["vllm:time_per_output_token_seconds"]
           for p in chat_llm]
    assert r["team-a/chat-llm"]["itl"] == pytest.approx(hist_expect(itl), rel=1e-6)
    assert r["team-a/chat-llm"]["qtime"] == pytest.approx(
        hist_expect([p.histograms["vllm:request_queue_time_seconds"] for p in chat_llm]), rel=1e-6)
    assert r["team-a/chat-llm"]["done"] == approx(10 + 8)  # completions: the e2e histograms' counts
    assert r["team-a/chat-llm"]["gpu"] == pytest.approx(expect_gpu_avg(chat_llm, "DCGM_FI_DEV_GPU_UTIL")) == 70.0
    assert r["team-a/chat-llm"]["engine"] == pytest.approx(65.0)
    assert r["team-a/chat-llm"]["fb"] == pytest.approx(100 * (30 / 80 + 50 / 80 + 40 / 80) / 3)
    assert r["team-a/chat"]["queue"] == 100  # the prefix-named neighbour is kept apart both ways

    embedder = pods_of("team-b", "embedder-")
    assert r["team-b/embedder"]["gpu"] == pytest.approx(expect_gpu_avg(embedder, "DCGM_FI_DEV_GPU_UTIL"))  # exported_*
    assert r["team-b/embedder"]["gpu"] == pytest.approx((90 + 40 + 60) / 3)  # MIG instances count one by one
    assert r["team-b/embedder"]["engine"] == pytest.approx(expect_gpu_avg(embedder, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 100))
    assert r["team-b/embedder"]["fb"] == pytest.approx(100 * (70 / 80 + 10 / 20 + 15 / 20) / 3)
    assert r["team-b/embedder"]["backlog"] == expect_gauge_sum(embedder, "batch_jobs_pending") == 50
    assert r["team-b/embedder"]["sneaky"] == 50  # its own 42 + 8: team-z's 999 is never visible to team-b

    assistant = pods_of("team-b", "assistant-predictor-")
    assert r["team-b/assistant"]["queue"] == 6 and r["team-b/assistant"]["gen"] == 1600
    assert r["team-b/assistant"]["tokens"] == pytest.approx(40.0)
    assert r["team-b/assistant"]["ttft"] == pytest.approx(
        hist_expect([p.histograms["sglang:time_to_first_token_seconds"] for p in assistant]), rel=1e-6)
    assert r["team-b/assistant"]["e2e"] == pytest.approx(
        hist_expect([p.histograms["sglang:e2e_request_latency_seconds"] for p in assistant]), rel=1e-6)
    assert r["team-b/assistant"]["running"] == 8 and r["team-b/assistant"]["done"] == approx(10 + 10)
    assert r["team-b/assistant"]["qtime"] == pytest.approx(
        hist_expect([p.histograms["sglang:queue_time_seconds"] for p in assistant]), rel=1e-6)

    tgi = pods_of("team-c", "tgi-svc-")
    assert r["team-c/tgi"]["queue"] == 6
    assert r["team-c/tgi"]["p95"] == pytest.approx(hist_expect([tgi[0].histograms["tgi_request_duration"]]), rel=1e-6)
    assert r["team-c/triton"]["pending"] == 2
    assert r["team-c/triton"]["queue-time"] == pytest.approx(5000 / 10 / 1e6, rel=1e-6)  # a ratio of equal-jitter rates


async def test_unavailable_readings_carry_their_reason_and_are_counted(
    live_prometheus: LivePrometheus, fleet_policies: dict[str, ScalingPolicy]
) -> None:
    signals, _now, reader, _ = await read_fleet(live_prometheus, list(fleet_policies.values()))
    frozen = signals.readings["team-c/frozen"]["queue"]
    assert frozen.unavailable is Unavailable.STALE and frozen.value is None
    assert "old (bound 30 s)" in frozen.detail
    broken = signals.readings["team-c/broken"]["queue"]
    assert broken.unavailable is Unavailable.NAN and "broken-7c8d9f6b5-zz2xq" in broken.detail
    ghost = signals.readings["team-x/ghost"]
    assert ghost["queue"].unavailable is Unavailable.MISSING and ghost["gpu"].unavailable is Unavailable.MISSING
    assert dict(signals.unavailable) == {Unavailable.STALE: 1, Unavailable.NAN: 1, Unavailable.MISSING: 2}
    assert reader.unavailable_total[("vllm.queue_depth", Unavailable.STALE)] == 1


async def test_fleet_values_equal_prometheus_own_per_target_evaluation(
    live_prometheus: LivePrometheus, fleet_policies: dict[str, ScalingPolicy]
) -> None:
    """Same instant, same data: Python's aggregation equals PromQL's (histogram_quantile included)."""
    policies = [fleet_policies[k] for k in ("team-a/chat-llm", "team-b/embedder", "team-b/assistant", "team-c/tgi",
                                            "team-c/triton")]
    async with PrometheusClient(PrometheusConfig(url=live_prometheus.url)) as client:
        now = time.time() - 1.0
        signals = await FleetReader(client, SETTINGS).read(policies, now_s=now)
        compared = 0
        for policy in policies:
            for spec in policy.metrics:
                if not spec.source.preset:
                    continue
                preset = PRESETS[spec.source.preset]
                expr = target_query(preset, policy=policy, spec=spec, window=SETTINGS.window)
                result = await client.query(expr, time_s=now)
                assert len(result.samples) == 1, expr
                ours = signals.readings[policy.key][spec.name].value
                assert ours == pytest.approx(result.samples[0].value, rel=1e-9, abs=1e-12), (policy.key, spec.name)
                compared += 1
    assert compared == 28


async def test_queries_per_tick_do_not_grow_with_targets(
    live_prometheus: LivePrometheus, fleet_policies: dict[str, ScalingPolicy]
) -> None:
    preset_only = [p for p in fleet_policies.values() if all(s.source.preset for s in p.metrics)]
    one = await read_fleet(live_prometheus, preset_only[:1])
    many = await read_fleet(live_prometheus, preset_only)
    presets = lambda ps: {s.source.preset for p in ps for s in p.metrics}  # noqa: E731
    assert len(one[0].queries) == len(presets(preset_only[:1]))
    assert len(many[0].queries) == len(presets(preset_only)) < sum(len(p.metrics) for p in preset_only)


async def test_bad_data_names_policy_and_metric(live_prometheus: LivePrometheus, tmp_path: Path) -> None:
    doc = DOCUMENTS["team-c/broken.yaml"].replace("{preset: vllm.queue_depth}", "{query: 'sum(rate(x[5m]'}")
    (tmp_path / "p.yaml").write_text(doc)
    [policy] = load_policies([tmp_path]).policies
    signals, *_ = await read_fleet(live_prometheus, [policy])
    reading = signals.readings["team-c/broken"]["queue"]
    assert reading.unavailable is Unavailable.ERROR
    assert "policy team-c/broken metric queue" in reading.detail and "bad_data" in reading.detail
    async with PrometheusClient(PrometheusConfig(url=live_prometheus.url)) as client:
        with pytest.raises(PrometheusQueryError) as caught:
            await client.query("sum(", context="policy team-c/broken metric queue")
    assert caught.value.error_type == "bad_data" and caught.value.status == 400


def test_signals_cli_json_and_table(
    live_prometheus: LivePrometheus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_policies(tmp_path)
    args = ["signals", "--policies", str(tmp_path), "--prometheus", live_prometheus.url, "--scrape-interval", "1",
            "--staleness", "30", "--window", "5s"]
    code = cli.main([*args, "--output", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 3  # some metrics are unavailable (stale, nan, missing)
    assert report["team-a/chat"] == {"queue": 100.0, "_unavailable": {}}
    assert report["team-c/frozen"]["queue"] is None
    assert report["team-c/frozen"]["_unavailable"]["queue"].startswith("stale: ")
    assert report["team-c/broken"]["_unavailable"]["queue"].startswith("nan: ")
    assert set(report["team-x/ghost"]["_unavailable"]) == {"queue", "gpu"}
    assert report["team-b/embedder"]["backlog"] == 50.0
    assert all(math.isfinite(v) for v in report["team-a/chat-llm"].values() if not isinstance(v, dict))

    assert cli.main([*args, "--output", "table"]) == 3
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["POLICY", "METRIC", "VALUE", "WHY", "UNAVAILABLE"]
    assert any(line.startswith("team-c/frozen") and "stale:" in line for line in table.splitlines())


async def test_history_from_promtool_backfill(history_prometheus: HistoryPrometheus, tmp_path: Path) -> None:
    async with PrometheusClient(PrometheusConfig(url=history_prometheus.url)) as client:
        start, end = HISTORY_START_S + 600, HISTORY_START_S + 3600
        result = await client.query_range(
            'sum by (pod) (vllm:num_requests_waiting{namespace="team-a"})', start_s=start, end_s=end, step_s=600
        )
        by_pod = {s.labels["pod"]: s.points for s in result.series}
        for i, (_, pod) in enumerate(HISTORY_PODS):
            assert by_pod[pod] == tuple((float(t), history_waiting(i, t)) for t in range(start, end + 1, 600))

        (tmp_path / "p.yaml").write_text(DOCUMENTS["team-a/chat-llm.yaml"])
        [policy] = load_policies([tmp_path]).policies
        settings = SignalSettings(scrape_interval_s=HISTORY_STEP_S, window="5m")
        at = HISTORY_START_S + 3600
        signals = await FleetReader(client, settings).read([policy], now_s=at)
    readings = signals.readings["team-a/chat-llm"]
    assert readings["queue"].value == history_waiting(0, at) + history_waiting(1, at)
    assert readings["gen"].value == pytest.approx(sum(HISTORY_TOKENS_PER_S))
    assert readings["gpu"].unavailable is Unavailable.MISSING  # not in the history: missing, never 0
