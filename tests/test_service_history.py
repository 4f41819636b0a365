"""The demand history read for a warm start (``autoscaler.service.history``), against a stand-in range
client (the real-Prometheus warm start of a predictive policy is in ``test_service_predictive.py``).

Cases: one function picks a signal's per-target PromQL for both range readers (the warm start reads
exactly what a backtest reads); an SLO policy's history is running, waiting and completions turned into
the demand the live ticks record (compared with ``core.step`` itself, backlog share included), and
``warm_start`` takes it; a policy that forecasts nothing reads nothing; a Prometheus error starts cold.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from autoscaler.backtest import backtest
from autoscaler.core import MetricReading
from autoscaler.core.step import TargetReading, TargetState, step, warm_start
from autoscaler.policy import ScalingPolicy, load_policy_file
from autoscaler.prometheus.client import RangeResult, RangeSeries
from autoscaler.prometheus.errors import PrometheusUnreachable
from autoscaler.service.history import PrometheusHistory, demand_signals
from autoscaler.signals.promql import target_expr

HEAD = """\
apiVersion: inference-autoscaler.io/v1alpha1
kind: ScalingPolicy
metadata: {name: chat, namespace: team-a}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: chat-llm}
  minReplicas: 1
  maxReplicas: 20
"""
SLO = HEAD + "  slo: {objective: ttft, percentile: 95, seconds: 10, historyDays: 1}\n"
PREDICTIVE = HEAD + """\
  metrics:
    - name: tokens
      source: {preset: vllm.generation_tokens_per_second}
      target: {type: AverageValue, averageValue: 100}
    - name: custom
      source: {query: 'sum(rate(my_requests_total{pod=~"chat-llm-.*"}[1m]))'}
      target: {type: Value, value: 5}
  predictive: {metric: tokens, historyDays: 1}
"""
REACTIVE = HEAD + """\
  metrics:
    - name: queue
      source: {preset: vllm.queue_depth}
      target: {type: AverageValue, averageValue: 5}
"""
STEP_S = 15.0


def load(tmp_path: Path, text: str) -> ScalingPolicy:
    (tmp_path / "p.yaml").write_text(text)
    return load_policy_file(tmp_path / "p.yaml")


class StandIn:
    """Answers a range query from per-expression series (one series each), and records the queries."""

    def __init__(self, answers: Mapping[str, Mapping[float, float]], *, error: Exception | None = None) -> None:
        self.answers, self.error = answers, error
        self.asked: list[str] = []

    async def query_range(self, expr: str, *, start_s: float, end_s: float, step_s: float, context: str = "") -> Any:
        self.asked.append(expr)
        if self.error is not None:
            raise self.error
        points = tuple((t, v) for t, v in sorted(self.answers.get(expr, {}).items()) if start_s <= t <= end_s)
        return RangeResult((RangeSeries({}, points),) if points else ())

    async def series(self, expr: str, *, start_s: float, end_s: float, step_s: float) -> dict[float, float]:
        self.asked.append(expr)
        return dict(self.answers.get(expr, {}))


async def test_the_warm_start_reads_exactly_what_a_backtest_reads(tmp_path: Path) -> None:
    policy = load(tmp_path, PREDICTIVE)
    history = PrometheusHistory(StandIn({}), window="5m")
    assert history.queries(policy) == {"tokens": target_expr(policy, policy.metric("tokens"), window="5m")}
    reader = StandIn({})
    with pytest.raises(ValueError, match="no replica history"):
        await backtest(reader, policy, start_s=0, end_s=60, step_s=STEP_S, window="5m")
    assert reader.asked[:2] == [target_expr(policy, spec, window="5m") for spec in policy.signals]
    custom = target_expr(policy, policy.metric("custom"), window="5m")
    assert 'namespace="team-a"' in custom and "my_requests_total" in custom  # the template, confined


async def test_an_slo_policy_learns_from_history_what_its_ticks_would_have_recorded(tmp_path: Path) -> None:
    policy = load(tmp_path, SLO)
    slo = policy.slo
    assert slo is not None
    assert demand_signals(policy) == (slo.running, slo.waiting, slo.completions)
    times = [1000.0 + STEP_S * i for i in range(40)]
    running = {t: 20.0 + i % 7 for i, t in enumerate(times)}
    waiting = {t: float(max(0, i - 25)) * 3 for i, t in enumerate(times)}  # a backlog builds at the end
    completions = {t: 4.0 for t in times[:-5]}  # and the rate goes missing: the whole backlog counts
    by_name = {slo.running.name: running, slo.waiting.name: waiting, slo.completions.name: completions}
    queries = PrometheusHistory(StandIn({})).queries(policy)
    client = StandIn({queries[name]: series for name, series in by_name.items()})
    history = PrometheusHistory(client)
    recorded = await history.demand_history(policy, start_s=times[0], end_s=times[-1], step_s=STEP_S)
    assert sorted(client.asked) == sorted(queries.values())

    state = TargetState()
    for t in times:  # the same values, read live tick by tick
        values = {**{name: series.get(t) for name, series in by_name.items()}, slo.latency.name: 1.0}
        metrics = {name: MetricReading.of(v) if v is not None else MetricReading.missing() for name, v in values.items()}
        _, state = step(TargetReading(4, 4, metrics), state, policy, t)
    assert state.demand is not None
    live, read = state.demand.values[-len(times):], recorded.values[-len(times):]
    assert list(read) == pytest.approx(list(live))
    backlog_share = read[-6] - running[times[-6]]  # with a service time, less than the queue itself
    assert 0 < backlog_share < waiting[times[-6]] and read[-1] == running[times[-1]] + waiting[times[-1]]

    started = warm_start(TargetState(), policy, recorded)
    assert started.demand is recorded


async def test_nothing_to_read_or_a_failed_read_starts_cold(tmp_path: Path) -> None:
    reactive = load(tmp_path, REACTIVE)
    client = StandIn({})
    history = PrometheusHistory(client)
    assert history.queries(reactive) == {} and demand_signals(reactive) == ()
    assert await history.demand_history(reactive, start_s=0, end_s=600, step_s=STEP_S) is None
    assert client.asked == []
    slo = load(tmp_path, SLO)
    failing = PrometheusHistory(StandIn({}, error=PrometheusUnreachable("connection refused")))
    assert await failing.demand_history(slo, start_s=0, end_s=600, step_s=STEP_S) is None
    assert warm_start(TargetState(), slo, None).demand is None


async def test_the_warm_start_keeps_the_policys_history_days(tmp_path: Path) -> None:
    # review 2, finding 4: the read history had the default 8-day bound, and the ticks keep a history's
    # bound, so historyDays 14 silently became 8 (and 2 kept 8 days of memory)
    for days in (2, 14):
        policy = load(tmp_path, PREDICTIVE.replace("historyDays: 1", f"historyDays: {days}"))
        times = [STEP_S * i for i in range(5760)]  # the last day of it recorded
        client = StandIn({PrometheusHistory(StandIn({})).queries(policy)["tokens"]: {t: 40.0 for t in times}})
        recorded = await PrometheusHistory(client).demand_history(
            policy, start_s=times[-1] - days * 86400.0, end_s=times[-1], step_s=STEP_S
        )
        assert recorded is not None
        assert recorded.max_points == recorded.capacity == int(days * 86400 / STEP_S) + 1
        state = warm_start(TargetState(), policy, recorded)
        assert state.demand is recorded  # already under the policy's bound: kept as read
        metrics = {"tokens": MetricReading.of(40.0), "custom": MetricReading.of(1.0)}
        _, state = step(TargetReading(2, 2, metrics), state, policy, times[-1] + STEP_S)
        assert state.demand is not None and state.demand.capacity == int(days * 86400 / STEP_S) + 1
