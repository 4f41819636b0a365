"""Pure parts of signals, without a server.

Cases:
* ``bucket_quantile`` = Prometheus's ``bucketQuantile``: interpolation, lowest bucket from 0, negative
  lowest bound, rank in +Inf, q out of range, no +Inf bucket, no observations, equal bounds
  coalesced, non-monotonic counts forced; property: bounded by the finite bounds, monotonic in q;
* ``aggregate``: empty -> missing, NaN/Inf anywhere -> nan naming the pod, sum, average, scale, ratio;
* ``read_target``: stale pods dropped, all stale -> stale, pods without a rate yet -> missing;
* pod matching: Deployment / StatefulSet / KServe (raw and serverless) / truncated long names,
  prefix-named neighbours kept apart, ``match_labels``;
* PromQL building: string escaping; custom templates (placeholders inside and outside strings,
  ``{{selector}}``, unknown placeholders), namespace injection into every selector whatever the
  template says; label names validated; the fleet query does not grow with the number of targets.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.core.model import Unavailable
from autoscaler.core.policy import MetricSource, MetricSpec, MetricTarget, ScalingPolicy, TargetRef, TargetType
from autoscaler.presets import PRESETS
from autoscaler.signals.aggregate import Part, PodSample, aggregate, bucket_quantile, read_target, sum_buckets
from autoscaler.signals.promql import (
    PromQLTemplateError,
    fleet_query,
    inject_namespace,
    quote,
    render_custom,
)
from autoscaler.signals.targets import labels_match, pod_belongs

INF = math.inf


# --- histogram_quantile ---------------------------------------------------------------------------

@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, [(1, 10), (2, 20), (INF, 20)], 1.0),             # rank 10 hits the first bucket's top
    (0.75, [(1, 10), (2, 20), (INF, 20)], 1.5),            # interpolated inside (1, 2]
    (0.25, [(1, 10), (2, 20), (INF, 20)], 0.5),            # lowest bucket starts at 0
    (0.99, [(1, 10), (2, 20), (INF, 30)], 2.0),            # rank in +Inf: the second-highest bound
    (0.5, [(-1, 10), (2, 20), (INF, 20)], -1.0),           # lowest bound <= 0 is returned as is
    (-0.1, [(1, 1), (INF, 1)], -INF),
    (1.1, [(1, 1), (INF, 1)], INF),
    (0.5, [(1, 1), (2, 2)], math.nan),                     # no +Inf bucket
    (0.5, [(1, 0), (INF, 0)], math.nan),                   # no observations
    (0.5, [(INF, 5)], math.nan),                           # fewer than two buckets
    (0.5, [(1, 4), (1, 6), (2, 20), (INF, 20)], 1.0),      # equal bounds coalesced: (1, 10)
    (0.5, [(1, 10), (2, 8), (INF, 20)], 1.0),              # non-monotonic: forced to (2, 10)
    (0.5, [(2, 20), (INF, 20), (1, 10)], 1.0),             # order does not matter
])
def test_bucket_quantile_matches_prometheus(q: float, buckets: list[tuple[float, float]], expected: float) -> None:
    got = bucket_quantile(q, buckets)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


@given(
    counts=st.lists(st.floats(0, 1e6), min_size=1, max_size=12),
    q1=st.floats(0.001, 1), q2=st.floats(0.001, 1),  # q = 0 on an empty first bucket is 0/0 = NaN in Go too
)
def test_bucket_quantile_is_bounded_and_monotonic(counts: list[float], q1: float, q2: float) -> None:
    bounds = [0.1 * 2**i for i in range(len(counts))]
    cumulative, running = [], 0.0
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        cumulative.append((bound, running))
    buckets = [*cumulative, (INF, running)]
    lo, hi = sorted((q1, q2))
    a, b = bucket_quantile(lo, buckets), bucket_quantile(hi, buckets)
    if running == 0:
        assert math.isnan(a) and math.isnan(b)
        return
    assert 0 <= a <= b + 1e-9 * max(1.0, b) and b <= bounds[-1]


def test_sum_buckets_sums_per_le() -> None:
    assert sum_buckets([(1, 2), (INF, 3), (1, 5), (INF, 7)]) == [(1, 7), (INF, 10)]


# --- aggregate / read_target ----------------------------------------------------------------------

Q = PRESETS["vllm.queue_depth"]
KV = PRESETS["vllm.kv_cache_usage"]
E2E = PRESETS["vllm.e2e_latency_p95"]
TRITON = PRESETS["triton.queue_duration_per_request"]


def test_aggregate_sum_average_scale() -> None:
    assert aggregate(Q, [PodSample("a", 3), PodSample("b", 5)]).value == 8
    assert aggregate(KV, [PodSample("a", 0.4), PodSample("b", 0.6)]).value == pytest.approx(50)
    assert aggregate(Q, [PodSample("a", 0.0)]).value == 0  # a reported zero is zero


def test_aggregate_never_reads_nothing_as_zero() -> None:
    empty = aggregate(Q, [])
    assert empty.value is None and empty.unavailable is Unavailable.MISSING
    for bad in (math.nan, INF, -INF):
        reading = aggregate(Q, [PodSample("ok", 1), PodSample("bad-pod", bad)])
        assert reading.unavailable is Unavailable.NAN and "bad-pod" in reading.detail


def test_aggregate_histogram_and_ratio() -> None:
    samples = [PodSample("a", c, le) for le, c in ((1, 5), (2, 10), (INF, 10))]
    samples += [PodSample("b", c, le) for le, c in ((1, 0), (2, 10), (INF, 10))]
    assert aggregate(E2E, samples).value == pytest.approx(bucket_quantile(0.95, [(1, 5), (2, 20), (INF, 20)]))
    idle = aggregate(E2E, [PodSample("a", 0, le) for le in (1, 2, INF)])
    assert idle.value == 0.0  # fresh pods, no request in the window: idle, no latency pressure
    no_inf = aggregate(E2E, [PodSample("a", 3, le) for le in (1, 2)])
    assert no_inf.unavailable is Unavailable.NAN and "+Inf" in no_inf.detail
    ratio = [PodSample("a", 3000), PodSample("a", 2, part=Part.DENOMINATOR),
             PodSample("b", 1000), PodSample("b", 6, part=Part.DENOMINATOR)]
    assert aggregate(TRITON, ratio).value == pytest.approx(4000 / 8 * 1e-6)  # sums first, then divide
    assert aggregate(TRITON, [PodSample("a", 0), PodSample("a", 0, part=Part.DENOMINATOR)]).value == 0.0


def test_read_target_staleness() -> None:
    samples = [PodSample("old", 100), PodSample("new", 3)]
    fresh = read_target(Q, samples, {"old": 900.0, "new": 995.0}, now_s=1000, staleness_s=45)
    assert fresh.value == 3  # a lingering series of a gone pod does not count
    stale = read_target(Q, samples, {"old": 900.0, "new": 940.0}, now_s=1000, staleness_s=45)
    assert stale.unavailable is Unavailable.STALE and "60 s old" in stale.detail
    no_rate = read_target(PRESETS["vllm.generation_tokens_per_second"], [], {"p": 999.0}, now_s=1000, staleness_s=45)
    assert no_rate.unavailable is Unavailable.MISSING and "two samples" in no_rate.detail
    assert read_target(Q, [], {}, now_s=1000, staleness_s=45).unavailable is Unavailable.MISSING


# --- pod matching ---------------------------------------------------------------------------------

DEPLOY = TargetRef("apps/v1", "Deployment", "chat")
STS = TargetRef("apps/v1", "StatefulSet", "embedder")
ISVC = TargetRef("serving.kserve.io/v1beta1", "InferenceService", "assistant")


@pytest.mark.parametrize(("target", "pod", "belongs"), [
    (DEPLOY, "chat-7d9f8c6b5-x2x4z", True),
    (DEPLOY, "chat-llm-7d9f8c6b5-x2x4z", False),     # a neighbour whose name starts like ours
    (DEPLOY, "chat-7d9f8c6b5-x2x4", False),          # 4-character suffix
    (DEPLOY, "chat-7d9f8c6b5-aeiou", False),         # vowels are never generated
    (DEPLOY, "chat-0", False),
    (STS, "embedder-0", True), (STS, "embedder-12", True), (STS, "embedder-x", False),
    (STS, "embedder-db-0", False),
    (ISVC, "assistant-predictor-6b8f9c7d5-kx9wz", True),                     # raw deployment mode
    (ISVC, "assistant-predictor-00001-deployment-6b8f9c7d5-kx9wz", True),    # serverless
    (ISVC, "assistant-predictor-default-00003-deployment-6b8f9c7d5-kx9wz", True),  # older KServe
    (ISVC, "assistant-transformer-6b8f9c7d5-kx9wz", False),
    (ISVC, "assistant-6b8f9c7d5-kx9wz", False),
])
def test_pod_belongs(target: TargetRef, pod: str, belongs: bool) -> None:
    assert pod_belongs(target, pod) is belongs


def test_long_deployment_names_are_truncated_like_the_api_server() -> None:
    name = "a-very-long-deployment-name-for-a-large-language-model-x"  # 56 characters
    target = TargetRef("apps/v1", "Deployment", name)
    pod = (f"{name}-5c8b9d7f4-")[:58] + "bcdfz"
    assert len(pod) == 63 and pod_belongs(target, pod)
    assert not pod_belongs(TargetRef("apps/v1", "Deployment", "a-very-long"), pod)


def test_labels_match() -> None:
    assert labels_match({"model_name": "x", "pod": "p"}, {"model_name": "x"})
    assert not labels_match({"model_name": "y"}, {"model_name": "x"})
    assert labels_match({}, {})


# --- PromQL building ------------------------------------------------------------------------------

def make_policy(namespace: str = "team-b", query: str = "x", match: dict[str, str] | None = None) -> ScalingPolicy:
    spec = MetricSpec("m", MetricSource(query=query, match_labels=match or {}),
                      MetricTarget(TargetType.VALUE, 1000, "1"))
    return ScalingPolicy("p", namespace, STS, 1, 3, (spec,))


def test_quote_escapes_everything_that_could_end_a_string() -> None:
    assert quote('a"b\\c\nd') == '"a\\"b\\\\c\\x0ad"'


def test_render_custom_substitutes_and_confines() -> None:
    policy = make_policy(match={"model_name": 'evil"}) or up{'})
    out = render_custom('sum(batch_jobs_pending{namespace="{{namespace}}", {{selector}}})', policy=policy,
                        match_labels=policy.metrics[0].source.match_labels)
    assert out == ('sum(batch_jobs_pending{namespace="team-b",namespace="team-b", pod=~"embedder-[0-9]+",'
                   'model_name="evil\\"}) or up{"})')
    assert render_custom("sum(x{job={{target}}})", policy=policy) == 'sum(x{namespace="team-b",job="embedder"})'


@pytest.mark.parametrize("spelling", ["{{%s}}", "${%s}", "<<%s>>", "<< .%s >>"])
def test_placeholders_that_survive_helm_render_alike(spelling: str) -> None:
    """Issue 14: a team shipping its policy inside its own Helm chart cannot write {{namespace}}."""
    policy = make_policy()
    ns, sel, target = (spelling % name for name in ("namespace", "selector", "target"))
    template = f'sum(batch_jobs_pending{{ns="{ns}", {sel}}}) / count(up{{job={target}}})'
    expected = render_custom('sum(batch_jobs_pending{ns="{{namespace}}", {{selector}}}) / count(up{job={{target}}})',
                             policy=policy)
    assert render_custom(template, policy=policy) == expected
    assert render_custom(template.replace("namespace", "Namespace"), policy=policy) == expected


@pytest.mark.parametrize("template", [
    'sum(x{namespace!="team-b"})', "sum(x) + sum(y offset 5m)", 'sum({__name__=~".+"})',
    "sum by (namespace) (rate(x[5m:1m]))", "topk(3, x) and on(pod) y", "x or {}", "sum(x) by (pod)",
])
def test_every_selector_gets_the_policy_namespace(template: str) -> None:
    out = render_custom(template, policy=make_policy())
    assert out.count('namespace="team-b"') == out.count("{") >= 1  # one per selector, each has a block now


def test_inject_namespace_leaves_functions_keywords_and_label_lists_alone() -> None:
    out = inject_namespace('histogram_quantile(0.9, sum by (le, pod) (rate(x_bucket[5m]))) > bool 1 unless on(pod) '
                           'count_values("v", y) @ end()', "ns")
    assert out == ('histogram_quantile(0.9, sum by (le, pod) (rate(x_bucket{namespace="ns"}[5m]))) > bool 1 '
                   'unless on(pod) count_values("v", y{namespace="ns"}) @ end()')


@pytest.mark.parametrize(("template", "error"), [
    ("sum({{nope}})", "unknown placeholder"),
    ('sum(x{a="{{selector}}"})', "inside a string"),
    ('sum(x{a="unterminated})', "unterminated"),
    ("sum(x{a=1", "unclosed"),
    ("sum(x) ; drop", "unexpected character"),
])
def test_render_custom_rejects_unsafe_templates(template: str, error: str) -> None:
    with pytest.raises(PromQLTemplateError, match=error):
        render_custom(template, policy=make_policy())


def test_label_names_are_validated() -> None:
    with pytest.raises(PromQLTemplateError, match="label name"):
        render_custom("x{ {{selector}} }", policy=make_policy(), match_labels={"a=~\".*\",b": "c"})
    with pytest.raises(PromQLTemplateError, match="label name"):
        fleet_query(Q, namespaces=["a"], window="1m", group_labels=["x) or up by (y"])


def test_fleet_query_size_does_not_depend_on_targets() -> None:
    """The query names namespaces, never targets: 1 or 1000 targets in the same namespaces, same text."""
    for preset in PRESETS.values():
        text = fleet_query(preset, namespaces=["team-a", "team-b"], window="1m")
        assert 'namespace=~"team-a|team-b"' in text and 'signal_field", "ts"' in text
        if preset.exported_labels:
            assert 'exported_namespace=~"team-a|team-b"' in text
    assert fleet_query(Q, namespaces=["a.b"], window="1m").count('namespace="a.b"') == 2
    assert 'namespace=~"a\\\\.b|c"' in fleet_query(Q, namespaces=["c", "a.b"], window="1m")
