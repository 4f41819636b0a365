"""The simulated metrics pipeline: exporters -> scrapes -> PromQL-like windows -> per-pod samples.

What the real components do, and so what this does:

* **vLLM** exports per pod: gauges ``num_requests_waiting`` / ``num_requests_running`` /
  ``kv_cache_usage_perc``, counters ``prompt_tokens_total`` / ``generation_tokens_total`` and the
  histograms ``e2e_request_latency_seconds``, ``time_to_first_token_seconds``,
  ``inter_token_latency_seconds`` (vLLM's buckets). Only Ready pods are scraped (a Service's
  endpoints). The global queue is split evenly over the scraped pods, which keeps its sum exact.
* **dcgm-exporter** samples GPU utilization every ``dcgmCollectSeconds`` (default 30 s) and serves the
  last sample; ``DCGM_FI_DEV_GPU_UTIL`` is 100 while any kernel runs, so a pod with one running
  sequence reads 100 % (the real signal's known flaw). Every pod holding a GPU has series,
  loading ones reading 0.
* **Prometheus** scrapes every ``scrapeIntervalSeconds`` at a fixed phase (half an interval by default,
  the mean age of a sample to an unsynchronised reader). An instant query at ``t`` sees the last
  scrape at or before ``t``; ``rate(x[w])`` is ``(last - first) / (t_last - t_first)`` over each pod's
  samples in ``(t - w, t]``, which is what Prometheus's extrapolated rate amounts to for evenly spaced
  samples; a pod with fewer than two samples in the window has no rate.

The last step, per-pod samples -> :class:`MetricReading`, is :func:`autoscaler.sim.aggregate.to_reading`,
which calls the live service's own aggregation.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autoscaler.core import MetricReading, Unavailable
from autoscaler.sim import kernel
from autoscaler.sim.aggregate import PodSamples, to_reading
from autoscaler.sim.fleet import E2E_BUCKETS_S, ITL_BUCKETS_S, TTFT_BUCKETS_S, Fleet

__all__ = ["SIGNALS", "MetricsPipeline", "PipelineConfig", "Scrape", "unsupported_presets"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# preset -> (kind, exporter field, factor to the exporter's unit). Other engines are modelled with
# vLLM's numbers. ``gpu_busy`` is 0/1; DCGM_FI_DEV_GPU_UTIL exports percent, GR_ENGINE_ACTIVE a ratio.
SIGNALS: dict[str, tuple[str, str, float]] = {
    "dcgm.gpu_util": ("gauge", "gpu_busy", 100.0),
    "dcgm.gr_engine_active": ("gauge", "gpu_busy", 1.0),
    "dcgm.fb_used_ratio": ("gauge", "fb_used", 1.0),
    "vllm.queue_depth": ("gauge", "waiting", 1.0),
    "sglang.queue_depth": ("gauge", "waiting", 1.0),
    "tgi.queue_depth": ("gauge", "waiting", 1.0),
    "triton.pending_requests": ("gauge", "waiting", 1.0),
    "vllm.running": ("gauge", "running", 1.0),
    "vllm.kv_cache_usage": ("gauge", "kv", 1.0),
    "sglang.token_usage": ("gauge", "kv", 1.0),
    "vllm.generation_tokens_per_second": ("rate", "gen_tokens", 1.0),
    "vllm.request_rate": ("rate", "completed", 1.0),
    "sglang.request_rate": ("rate", "completed", 1.0),
    "sglang.running": ("gauge", "running", 1.0),
    "sglang.generation_tokens_per_second": ("rate", "gen_tokens", 1.0),
    "vllm.prompt_tokens_per_second": ("rate", "prompt_tokens", 1.0),
    "vllm.e2e_latency_p95": ("histogram", "e2e", 1.0),
    "sglang.e2e_latency_p95": ("histogram", "e2e", 1.0),
    "tgi.request_duration_p95": ("histogram", "e2e", 1.0),
    "vllm.ttft_p95": ("histogram", "ttft", 1.0),
    "sglang.ttft_p95": ("histogram", "ttft", 1.0),
    "vllm.itl_p95": ("histogram", "itl", 1.0),
}
_BOUNDS = {"e2e": E2E_BUCKETS_S, "ttft": TTFT_BUCKETS_S, "itl": ITL_BUCKETS_S}
FB_USED_RATIO = 0.9  # vLLM preallocates gpu_memory_utilization = 0.9 of the framebuffer


def unsupported_presets(names: list[str]) -> list[str]:
    return [name for name in names if name not in SIGNALS]


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """``spec.metricsPipeline``."""

    scrape_interval_s: float = 15.0
    rate_window_s: float = 60.0
    dcgm_collect_s: float = 30.0
    scrape_offset_s: float | None = None  # None: half a scrape interval

    @property
    def offset_s(self) -> float:
        return self.scrape_interval_s / 2 if self.scrape_offset_s is None else self.scrape_offset_s


@dataclass(frozen=True, slots=True, eq=False)
class Scrape:
    """What one scrape stored: per-pod values, pods in ascending id order."""

    time_s: float
    pods: IntArray  # vLLM targets
    fields: dict[str, FloatArray]
    gpu_pods: IntArray  # dcgm-exporter series
    gpu_fields: dict[str, FloatArray]


class MetricsPipeline:
    """Collects from the fleet's exporters and answers the policy's queries at decision times."""

    def __init__(self, config: PipelineConfig, fleet: Fleet) -> None:
        self.config = config
        self.fleet = fleet
        keep = math.ceil(config.rate_window_s / config.scrape_interval_s) + 2
        self.scrapes: deque[Scrape] = deque(maxlen=keep)

    def collect_dcgm(self, now: float) -> None:
        """dcgm-exporter's collect tick: sample utilization of every GPU held."""
        fleet = self.fleet
        ids = fleet.holding_gpu(now)
        busy = (fleet.rstate[ids] != kernel.LOADING) & (fleet.running[ids] > 0)
        fleet.dcgm_util[ids] = np.where(busy, 1.0, 0.0)

    def scrape(self, now: float) -> None:
        fleet = self.fleet
        pods = fleet.ids_in(kernel.READY)
        waiting = fleet.waiting(now)
        k = len(pods)
        share = np.full(k, waiting // k if k else 0, dtype=np.float64)
        if k:
            share[: waiting % k] += 1
        fields: dict[str, FloatArray] = {
            "waiting": share,
            "running": fleet.running[pods].astype(np.float64),
            "prompt_tokens": fleet.prompt_tokens[pods].copy(),
            "gen_tokens": fleet.gen_tokens[pods].copy(),
            "e2e": fleet.e2e_hist[pods].copy(),
            "completed": fleet.e2e_hist[pods].sum(axis=1),  # the histogram's count
            "ttft": fleet.ttft_hist[pods].copy(),
            "itl": fleet.itl_hist[pods].copy(),
        }
        if fleet.config.kv_cache_tokens > 0:
            fields["kv"] = np.minimum(1.0, fleet.kv_tokens[pods] / fleet.config.kv_cache_tokens)
        gpu_ids = fleet.holding_gpu(now)
        gpu_ids = gpu_ids[~np.isnan(fleet.dcgm_util[gpu_ids])]
        gpu_fields = {
            "gpu_busy": fleet.dcgm_util[gpu_ids].copy(),
            "fb_used": np.where(fleet.rstate[gpu_ids] == kernel.LOADING, 0.0, FB_USED_RATIO),
        }
        self.scrapes.append(Scrape(now, pods, fields, gpu_ids, gpu_fields))

    # -- queries ----------------------------------------------------------------------------------------
    def _latest(self, now: float) -> Scrape | None:
        for scrape in reversed(self.scrapes):
            if scrape.time_s <= now:
                return scrape
        return None

    def _window(self, now: float) -> list[Scrape]:
        lo = now - self.config.rate_window_s
        return [s for s in self.scrapes if lo < s.time_s <= now]

    def samples(self, preset: str, now: float) -> PodSamples:
        """The per-pod samples a policy's query for ``preset`` sees at ``now``, in the exporter's unit."""
        kind, name, factor = SIGNALS[preset]
        latest = self._latest(now)
        empty = np.zeros(0, dtype=np.int64)
        if latest is None:
            return PodSamples(empty, detail="no scrape yet")
        if kind == "gauge":
            if name in latest.gpu_fields:
                return PodSamples(latest.gpu_pods, values=latest.gpu_fields[name] * factor, detail="no GPU series")
            values = latest.fields.get(name)
            if values is None:
                return PodSamples(empty, detail=f"{preset} is not exported (set fleet.kvCacheTokens)")
            return PodSamples(latest.pods, values=values * factor, detail="no ready pod")
        pods = latest.pods
        first_t = np.full(len(pods), math.nan)
        first_v: FloatArray | None = None
        for scrape in self._window(now):  # oldest first: each pod's first sample in the window
            data = scrape.fields[name]
            if first_v is None:
                first_v = np.zeros((len(pods), *data.shape[1:]))
            if len(scrape.pods) == 0:
                continue
            where = np.minimum(np.searchsorted(scrape.pods, pods), len(scrape.pods) - 1)
            present = (scrape.pods[where] == pods) & np.isnan(first_t)
            first_t[present] = scrape.time_s
            first_v[present] = data[where[present]]
        ok = ~np.isnan(first_t) & (first_t < latest.time_s)
        if first_v is None or not ok.any():
            return PodSamples(empty, detail="no pod has two samples in the rate window")
        last_v = latest.fields[name]
        dt = (latest.time_s - first_t[ok]).reshape((-1,) + (1,) * (last_v.ndim - 1))
        rates = (last_v[ok] - first_v[ok]) / dt
        if kind == "rate":
            return PodSamples(pods[ok], values=rates * factor)
        return PodSamples(pods[ok], bucket_rates=rates, bounds=_BOUNDS[name])

    def read(self, preset: str, now: float) -> MetricReading:
        if preset not in SIGNALS:
            return MetricReading.missing(Unavailable.ERROR, f"the simulator does not model {preset}")
        return to_reading(preset, self.samples(preset, now))
