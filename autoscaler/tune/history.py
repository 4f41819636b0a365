"""A request trace from recorded Prometheus history, so a team can tune on last week's real series.

``backtest`` replays the policy's own signals open loop; tuning needs a *closed* loop (a candidate
must see what its own replica counts would have done to latency), so it replays the traffic instead:
the target's request rate and token rates, read exactly as ``backtest`` reads a target's signals
(:func:`autoscaler.signals.promql.target_expr` over the :class:`autoscaler.backtest.RangeReader`
protocol), become a request trace for the simulator.

Per step (``step_s``, default 60 s), with ``r`` the completed requests/s of the model server
(``<engine>.request_rate``), ``g`` the generated tokens/s and ``p`` the prompt tokens/s:

* arrivals: a Poisson number with mean ``r x step`` spread uniformly over the step (seeded);
* output tokens per request: lognormal with mean ``g / r`` and the dispersion of the scenario's
  ``outputTokens`` (its p95 / median); prompt tokens likewise from ``p / r`` (vLLM), or the scenario's
  ``inputTokens`` where the engine exports no prompt-token counter (SGLang).

Caveats: completions lag arrivals by a service time (seconds; a step is a minute), and what the
recorded fleet could not serve (requests rejected upstream) is not in the history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autoscaler.backtest import BacktestError, RangeReader, Series
from autoscaler.core.policy import SLO_INPUT_TARGET, MetricSource, MetricSpec, ScalingPolicy
from autoscaler.signals.promql import target_expr
from autoscaler.sim.trace import TokenDistribution, Trace

__all__ = ["HistoryTrace", "engine_of", "history_trace"]


@dataclass(frozen=True, slots=True, eq=False)
class HistoryTrace:
    trace: Trace
    steps: int
    mean_rate_per_s: float
    queries: dict[str, str]


def engine_of(policy: ScalingPolicy) -> str:
    """``sglang`` when the policy reads SGLang's series, else ``vllm``."""
    presets = [s.source.preset or "" for s in policy.signals]
    return "sglang" if any(p.startswith("sglang.") for p in presets) else "vllm"


def _spec(preset: str) -> MetricSpec:
    return MetricSpec(name=f"tune:{preset}", source=MetricSource(preset=preset), target=SLO_INPUT_TARGET)


def _lognormal(mean: float, shape: TokenDistribution, n: int, rng: np.random.Generator) -> np.ndarray:
    if shape.distribution != "lognormal" or shape.p95 <= shape.median:
        return np.full(n, max(1.0, round(mean)))
    sigma = math.log(shape.p95 / shape.median) / 1.6448536269514722
    median = mean / math.exp(sigma * sigma / 2)
    return np.maximum(1.0, np.round(rng.lognormal(math.log(median), sigma, n)))


async def history_trace(
    reader: RangeReader,
    policy: ScalingPolicy,
    *,
    start_s: float,
    end_s: float,
    rng: np.random.Generator,
    step_s: float = 60.0,
    window: str = "1m",
    tokens_in: TokenDistribution | None = None,
    tokens_out: TokenDistribution | None = None,
) -> HistoryTrace:
    """The target's traffic between ``start_s`` and ``end_s`` as a trace (times from ``start_s``)."""
    if end_s <= start_s:
        raise BacktestError(f"--to ({end_s:g}) must be after --from ({start_s:g})")
    tokens_in = tokens_in or TokenDistribution(median=1000, p95=4000)
    tokens_out = tokens_out or TokenDistribution(median=200, p95=800)
    engine = engine_of(policy)
    presets = {"rate": f"{engine}.request_rate", "generated": f"{engine}.generation_tokens_per_second"}
    if engine == "vllm":
        presets["prompt"] = "vllm.prompt_tokens_per_second"
    queries = {key: target_expr(policy, _spec(preset), window=window) for key, preset in presets.items()}
    series: dict[str, Series] = {}
    for key, expr in queries.items():
        series[key] = await reader.series(expr, start_s=start_s, end_s=end_s, step_s=step_s)
    rate = series["rate"]
    if not rate:
        raise BacktestError(
            f"no request-rate history for {policy.target.kind}/{policy.target.name} in namespace "
            f"{policy.namespace} between {start_s:g} and {end_s:g} (read {presets['rate']}: {queries['rate']})")
    arrivals, inputs, outputs = [], [], []
    for t in sorted(rate):
        r = rate[t]
        if not r > 0:
            continue
        n = int(rng.poisson(r * step_s))
        if n == 0:
            continue
        arrivals.append(t - step_s - start_s + rng.random(n) * step_s)
        generated = series["generated"].get(t)
        outputs.append(_lognormal(generated / r, tokens_out, n, rng) if generated else tokens_out.sample(n, rng))
        prompt = series.get("prompt", {}).get(t)
        inputs.append(_lognormal(prompt / r, tokens_in, n, rng) if prompt else tokens_in.sample(n, rng))
    if not arrivals:
        raise BacktestError(f"the request rate of {policy.target.kind}/{policy.target.name} is 0 throughout "
                            f"{start_s:g} to {end_s:g}: no traffic to tune on")
    source = f"prometheus history of {policy.namespace}/{policy.target.name} ({presets['rate']})"
    trace = Trace.of(np.concatenate(arrivals), np.concatenate(inputs), np.concatenate(outputs), source)
    return HistoryTrace(trace, len(rate), float(np.mean(list(rate.values()))), queries)
