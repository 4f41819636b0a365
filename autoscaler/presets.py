"""The registry of named signal presets that policies refer to as ``source: {preset: NAME}``.

Each preset documents what it measures, its unit and how it aggregates over a target's pods. The
PromQL that reads it lives with the Prometheus edge; the policy loader only needs the names (unknown
names are rejected with a "did you mean" hint) and the documentation (``inference-autoscaler schema``
lists them for editors).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["PRESETS", "Aggregation", "Preset"]


class Aggregation(str, Enum):
    """How per-pod series become one value for the target."""

    SUM = "sum"  # a total across the target's pods (use with AverageValue)
    AVERAGE = "average"  # a mean across pods or GPUs (use with Value or Utilization)
    QUANTILE = "quantile"  # a histogram quantile over the summed buckets (use with Value)


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    description: str
    unit: str
    aggregation: Aggregation


def _p(name: str, description: str, unit: str, aggregation: Aggregation) -> Preset:
    return Preset(name, description, unit, aggregation)


_S, _A, _Q = Aggregation.SUM, Aggregation.AVERAGE, Aggregation.QUANTILE

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _p("dcgm.gpu_util", "GPU utilization (DCGM_FI_DEV_GPU_UTIL), averaged over the target's GPUs", "percent", _A),
        _p("dcgm.gr_engine_active", "Graphics engine active ratio (DCGM_FI_PROF_GR_ENGINE_ACTIVE) x 100, "
           "averaged over GPUs", "percent", _A),
        _p("dcgm.fb_used_ratio", "Framebuffer used / (used + free), x 100, averaged over GPUs", "percent", _A),
        _p("vllm.queue_depth", "Requests waiting (vllm:num_requests_waiting), summed over pods", "requests", _S),
        _p("vllm.running", "Requests running (vllm:num_requests_running), summed over pods", "requests", _S),
        _p("vllm.kv_cache_usage", "KV-cache usage (vllm:kv_cache_usage_perc, or the older gpu_cache_usage_perc) "
           "x 100, averaged over pods", "percent", _A),
        _p("vllm.generation_tokens_per_second", "Output tokens/s (rate of vllm:generation_tokens_total), "
           "summed over pods", "tokens/s", _S),
        _p("vllm.prompt_tokens_per_second", "Prompt tokens/s (rate of vllm:prompt_tokens_total), summed over pods",
           "tokens/s", _S),
        _p("vllm.e2e_latency_p95", "p95 end-to-end request latency (vllm:e2e_request_latency_seconds)", "seconds", _Q),
        _p("vllm.ttft_p95", "p95 time to first token (vllm:time_to_first_token_seconds)", "seconds", _Q),
        _p("vllm.itl_p95", "p95 inter-token latency (vllm:inter_token_latency_seconds, or the older "
           "time_per_output_token_seconds)", "seconds", _Q),
        _p("sglang.queue_depth", "Requests queued (sglang:num_queue_reqs), summed over pods", "requests", _S),
        _p("sglang.token_usage", "KV token usage (sglang:token_usage) x 100, averaged over pods", "percent", _A),
        _p("sglang.generation_tokens_per_second", "Generation throughput (sglang:gen_throughput), summed over pods",
           "tokens/s", _S),
        _p("sglang.ttft_p95", "p95 time to first token (sglang:time_to_first_token_seconds)", "seconds", _Q),
        _p("sglang.e2e_latency_p95", "p95 end-to-end latency (sglang:e2e_request_latency_seconds)", "seconds", _Q),
        _p("tgi.queue_depth", "Requests queued (tgi_queue_size), summed over pods", "requests", _S),
        _p("tgi.request_duration_p95", "p95 request duration (tgi_request_duration)", "seconds", _Q),
        _p("triton.pending_requests", "Pending requests (nv_inference_pending_request_count), summed over pods",
           "requests", _S),
        _p("triton.queue_duration_per_request", "Average queue time per request (rate of "
           "nv_inference_queue_duration_us / rate of nv_inference_request_success)", "seconds", _A),
    )
}
