"""The registry of named signal presets that policies refer to as ``source: {preset: NAME}``.

Each preset documents what it measures, its unit, how it aggregates over a target's pods, and how it
is read: the PromQL template(s) of one *per-pod* (or per-GPU) series, in order of preference (a newer
metric name first, the older name it replaced after), the series whose sample timestamps decide
freshness, and what a zero means. The policy loader only needs ``name``, ``description``, ``unit`` and
``aggregation``; the Prometheus side (:mod:`autoscaler.signals.promql`) renders the templates into one
batched query per preset for the whole fleet, and :mod:`autoscaler.signals.aggregate` turns the
per-pod samples into one value per target.

Template placeholders (plain text replacement, never user input):

* ``{sel}``: a complete label-matcher block, braces included, e.g. ``{namespace=~"a|b",pod!=""}``;
* ``{window}``: the rate window, e.g. ``1m``.

Zero semantics. An empty result is never zero: it reads as "missing". A zero *reported* by a pod
that exists is a real zero for gauges (an empty queue) and for rates of counters the pod exports (no
tokens generated). A latency quantile over a window with no requests is undefined in PromQL (NaN);
when the target's pods are fresh and report their buckets, it reads as 0 here (idle: no latency
pressure), so that an idle latency signal never blocks a scale-down. A series that is absent or stale
is still unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["PRESETS", "Aggregation", "Preset", "SignalKind"]


class Aggregation(str, Enum):
    """How per-pod series become one value for the target."""

    SUM = "sum"  # a total across the target's pods (use with AverageValue)
    AVERAGE = "average"  # a mean across pods or GPUs (use with Value or Utilization)
    QUANTILE = "quantile"  # a histogram quantile over the summed buckets (use with Value)


class SignalKind(str, Enum):
    """The shape of the per-pod series a preset reads."""

    GAUGE = "gauge"  # a value per pod (or per GPU); sum or average across them
    RATE = "rate"  # a per-second rate of a counter per pod; summed
    HISTOGRAM = "histogram"  # per-pod bucket rates by ``le``; buckets summed, then the quantile
    RATIO = "ratio"  # per-pod numerator and denominator rates; both summed, then divided


@dataclass(frozen=True, slots=True)
class Preset:
    """A named signal. The first four fields are what policies and the schema see.

    ``templates`` are PromQL fragments yielding one series per pod (per GPU for ``per_series``), tried
    in order per pod (``or``); for HISTOGRAM they yield bucket rates that keep ``le``; for RATIO they
    are the numerators and ``denominators`` the denominators. ``freshness`` are the raw series whose
    newest sample timestamp decides staleness (one per template). ``scale`` multiplies the final value
    (0-1 ratios become percent). ``per_series`` are the labels, besides namespace and pod, that keep
    one series per GPU or MIG instance apart. ``exported_labels``: also read ``exported_namespace`` /
    ``exported_pod`` (an exporter scraped with ``honor_labels: false``, the dcgm-exporter chart's
    default).
    """

    name: str
    description: str
    unit: str
    aggregation: Aggregation
    kind: SignalKind = SignalKind.GAUGE
    templates: tuple[str, ...] = ()
    freshness: tuple[str, ...] = ()
    denominators: tuple[str, ...] = ()
    scale: float = 1.0
    quantile: float | None = None
    per_series: tuple[str, ...] = ()
    exported_labels: bool = False
    zero: str = "An empty result is missing, never zero."


_S, _A, _Q = Aggregation.SUM, Aggregation.AVERAGE, Aggregation.QUANTILE
_GPU = ("gpu", "GPU_I_ID")  # a pod's GPUs (gpu index) and MIG instances (GPU_I_ID)
_REPORTED_ZERO = "A zero reported by a pod that exists is a real zero (nothing waiting); no series is missing."
_RATE_ZERO = (
    "A counter that a pod exports and that did not move reads as 0/s; a pod with fewer than two "
    "samples in the window has no rate yet and is missing."
)
_QUANTILE_ZERO = "No requests in the window gives no quantile (NaN): unavailable, never 0 s."


def _gauge(
    name: str,
    description: str,
    unit: str,
    aggregation: Aggregation,
    metrics: tuple[str, ...],
    *,
    scale: float = 1.0,
    gpu: bool = False,
    zero: str = _REPORTED_ZERO,
) -> Preset:
    return Preset(
        name,
        description,
        unit,
        aggregation,
        SignalKind.GAUGE,
        templates=tuple(f"{m}{{sel}}" for m in metrics),
        freshness=tuple(f"{m}{{sel}}" for m in metrics),
        scale=scale,
        per_series=_GPU if gpu else (),
        exported_labels=gpu,
        zero=zero,
    )


def _rate(name: str, description: str, counter: str, unit: str = "tokens/s") -> Preset:
    return Preset(
        name,
        description,
        unit,
        _S,
        SignalKind.RATE,
        templates=(f"rate({counter}{{sel}}[{{window}}])",),
        freshness=(f"{counter}{{sel}}",),
        zero=_RATE_ZERO,
    )


def _histogram(name: str, description: str, metrics: tuple[str, ...], q: float = 0.95) -> Preset:
    return Preset(
        name,
        description,
        "seconds",
        _Q,
        SignalKind.HISTOGRAM,
        templates=tuple(f"rate({m}_bucket{{sel}}[{{window}}])" for m in metrics),
        freshness=tuple(f"{m}_count{{sel}}" for m in metrics),
        quantile=q,
        zero=_QUANTILE_ZERO,
    )


_FB = "DCGM_FI_DEV_FB_USED{sel} / (DCGM_FI_DEV_FB_USED{sel} + DCGM_FI_DEV_FB_FREE{sel})"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _gauge(
            "dcgm.gpu_util",
            "GPU utilization (DCGM_FI_DEV_GPU_UTIL), averaged over the target's GPUs",
            "percent",
            _A,
            ("DCGM_FI_DEV_GPU_UTIL",),
            gpu=True,
            zero="A reported 0 % is an idle GPU.",
        ),
        _gauge(
            "dcgm.gr_engine_active",
            "Graphics engine active ratio (DCGM_FI_PROF_GR_ENGINE_ACTIVE) x 100, averaged over GPUs",
            "percent",
            _A,
            ("DCGM_FI_PROF_GR_ENGINE_ACTIVE",),
            scale=100.0,
            gpu=True,
            zero="A reported 0 is an idle engine; without the DCGM profiling module the series is missing.",
        ),
        Preset(
            "dcgm.fb_used_ratio",
            "Framebuffer used / (used + free), x 100, averaged over GPUs",
            "percent",
            _A,
            SignalKind.GAUGE,
            templates=(_FB,),
            freshness=("DCGM_FI_DEV_FB_USED{sel}",),
            scale=100.0,
            per_series=_GPU,
            exported_labels=True,
            zero="Both FB_USED and FB_FREE must be reported.",
        ),
        _gauge(
            "vllm.queue_depth",
            "Requests waiting (vllm:num_requests_waiting), summed over pods",
            "requests",
            _S,
            ("vllm:num_requests_waiting",),
        ),
        _gauge(
            "vllm.running",
            "Requests running (vllm:num_requests_running), summed over pods",
            "requests",
            _S,
            ("vllm:num_requests_running",),
        ),
        _gauge(
            "vllm.kv_cache_usage",
            "KV-cache usage (vllm:kv_cache_usage_perc, or the older gpu_cache_usage_perc) x 100, averaged over pods",
            "percent",
            _A,
            ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
            scale=100.0,
        ),
        _rate(
            "vllm.generation_tokens_per_second",
            "Output tokens/s (rate of vllm:generation_tokens_total), summed over pods",
            "vllm:generation_tokens_total",
        ),
        _rate(
            "vllm.prompt_tokens_per_second",
            "Prompt tokens/s (rate of vllm:prompt_tokens_total), summed over pods",
            "vllm:prompt_tokens_total",
        ),
        _rate(
            "vllm.request_rate",
            "Completed requests/s (rate of vllm:e2e_request_latency_seconds_count), summed over pods",
            "vllm:e2e_request_latency_seconds_count",
            unit="requests/s",
        ),
        _histogram(
            "vllm.e2e_latency_p95",
            "p95 end-to-end request latency (vllm:e2e_request_latency_seconds)",
            ("vllm:e2e_request_latency_seconds",),
        ),
        _histogram(
            "vllm.ttft_p95",
            "p95 time to first token (vllm:time_to_first_token_seconds)",
            ("vllm:time_to_first_token_seconds",),
        ),
        _histogram(
            "vllm.queue_time_p95",
            "p95 time waiting for a batch slot (vllm:request_queue_time_seconds)",
            ("vllm:request_queue_time_seconds",),
        ),
        _histogram(
            "vllm.itl_p95",
            "p95 inter-token latency (vllm:inter_token_latency_seconds, or the older time_per_output_token_seconds)",
            ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        ),
        _gauge(
            "sglang.queue_depth",
            "Requests queued (sglang:num_queue_reqs), summed over pods",
            "requests",
            _S,
            ("sglang:num_queue_reqs",),
        ),
        _gauge(
            "sglang.token_usage",
            "KV token usage (sglang:token_usage) x 100, averaged over pods",
            "percent",
            _A,
            ("sglang:token_usage",),
            scale=100.0,
        ),
        _gauge(
            "sglang.generation_tokens_per_second",
            "Generation throughput (sglang:gen_throughput), summed over pods",
            "tokens/s",
            _S,
            ("sglang:gen_throughput",),
            zero="SGLang reports its own throughput gauge; a reported 0 is an idle server.",
        ),
        _gauge(
            "sglang.running",
            "Requests running (sglang:num_running_reqs), summed over pods",
            "requests",
            _S,
            ("sglang:num_running_reqs",),
        ),
        _rate(
            "sglang.request_rate",
            "Completed requests/s (rate of sglang:e2e_request_latency_seconds_count), summed over pods",
            "sglang:e2e_request_latency_seconds_count",
            unit="requests/s",
        ),
        _histogram(
            "sglang.queue_time_p95",
            "p95 time waiting in the queue (sglang:queue_time_seconds)",
            ("sglang:queue_time_seconds",),
        ),
        _histogram(
            "sglang.ttft_p95",
            "p95 time to first token (sglang:time_to_first_token_seconds)",
            ("sglang:time_to_first_token_seconds",),
        ),
        _histogram(
            "sglang.e2e_latency_p95",
            "p95 end-to-end latency (sglang:e2e_request_latency_seconds)",
            ("sglang:e2e_request_latency_seconds",),
        ),
        _gauge(
            "tgi.queue_depth", "Requests queued (tgi_queue_size), summed over pods", "requests", _S, ("tgi_queue_size",)
        ),
        _histogram(
            "tgi.request_duration_p95", "p95 request duration (tgi_request_duration)", ("tgi_request_duration",)
        ),
        _gauge(
            "triton.pending_requests",
            "Pending requests (nv_inference_pending_request_count), summed over pods",
            "requests",
            _S,
            ("nv_inference_pending_request_count",),
        ),
        Preset(
            "triton.queue_duration_per_request",
            "Average queue time per request (rate of "
            "nv_inference_queue_duration_us / rate of nv_inference_request_success)",
            "seconds",
            _A,
            SignalKind.RATIO,
            templates=("rate(nv_inference_queue_duration_us{sel}[{window}])",),
            denominators=("rate(nv_inference_request_success{sel}[{window}])",),
            freshness=("nv_inference_request_success{sel}",),
            scale=1e-6,
            zero="Numerator and denominator are summed over the target's pods first; no requests reads 0 (idle).",
        ),
    )
}
