"""The fleet model: replicas that load, serve with continuous batching, and drain.

:class:`FleetConfig` is the validated ``spec.fleet`` of a scenario. :class:`Fleet` holds one run's
mutable state (numpy arrays the compiled kernel in :mod:`autoscaler.sim.kernel` advances); it is the
only mutable object of the simulator besides the controllers' drivers, and it is never shared
between runs.

Scaling follows a Deployment's ReplicaSet: a scale-up creates pods that hold a GPU after the
scheduling delay and are Ready after a sampled model-load time; a scale-down deletes not-ready pods
first, then idle ready ones, then drains the least busy (a draining pod takes no new request and
releases its GPU when its last request completes). The first ``initialReplicas`` are warm at t = 0.

Caveats, on purpose: prefill does not slow the decode of the other sequences in the batch (no
chunked-prefill interference); the per-token time is fixed at admission from the batch size then;
the KV cache is reserved whole at admission (prompt + output), so there is no preemption.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from autoscaler.sim import kernel
from autoscaler.sim.trace import Trace

__all__ = [
    "E2E_BUCKETS_S",
    "ITL_BUCKETS_S",
    "TTFT_BUCKETS_S",
    "Fleet",
    "FleetConfig",
    "LoadTime",
    "decode_profile",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# vLLM's histogram buckets (vllm/v1/metrics/loggers.py); the +Inf bucket is implicit.
E2E_BUCKETS_S = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                 20.0, 40.0, 80.0)


@dataclass(frozen=True, slots=True)
class LoadTime:
    """Model-load time: fixed, or lognormal from its median and p95."""

    median_s: float
    p95_s: float

    def sample(self, rng: np.random.Generator) -> float:
        if self.p95_s <= self.median_s:
            return self.median_s
        sigma = math.log(self.p95_s / self.median_s) / 1.6448536269514722
        return float(rng.lognormal(math.log(self.median_s), sigma))

    @property
    def p99_s(self) -> float:
        if self.p95_s <= self.median_s:
            return self.median_s
        sigma = math.log(self.p95_s / self.median_s) / 1.6448536269514722
        return self.median_s * math.exp(2.3263478740408408 * sigma)


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """``spec.fleet``. ``per_token_s[b]`` is the decode time per token at batch size ``b`` (index 0 unused)."""

    max_concurrency: int = 64
    prefill_tokens_per_s: float = 20000.0
    per_token_s: tuple[float, ...] = (0.03,) * 65
    load_time: LoadTime = LoadTime(180.0, 300.0)
    scheduling_delay_s: float = 5.0
    gpus_per_replica: int = 1
    initial_replicas: int = 2
    kv_cache_tokens: float = 0.0  # 0: the KV-cache usage gauge is not exported

    @property
    def full_batch_per_token_s(self) -> float:
        return self.per_token_s[min(self.max_concurrency, len(self.per_token_s) - 1)]

    def service_s(self, trace: Trace, *, per_token_s: float | None = None) -> FloatArray:
        """Each request's service time at a given per-token time (default: at a full batch)."""
        pt = self.full_batch_per_token_s if per_token_s is None else per_token_s
        prefill = trace.input_tokens / self.prefill_tokens_per_s if math.isfinite(self.prefill_tokens_per_s) else 0.0
        return prefill + trace.output_tokens * pt


def decode_profile(path: str | Path, *, model: str, hardware: str, tensor_parallel: int,
                   max_concurrency: int) -> tuple[float, ...]:
    """Per-token decode time by batch size from SplitwiseSim's ``perf_model.csv`` (ms -> s).

    Rows are averaged over prompt sizes per batch size; batch sizes between the measured ones
    (1, 2, 4, ... 64) are interpolated linearly, and beyond the largest the last value holds.
    """
    sums: dict[int, list[float]] = {}
    with Path(path).open(encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if (row["model"], row["hardware"], int(row["tensor_parallel"])) == (model, hardware, tensor_parallel):
                sums.setdefault(int(row["batch_size"]), []).append(float(row["token_time"]) / 1000.0)
    if not sums:
        raise ValueError(f"{path}: no rows for model={model} hardware={hardware} tensorParallel={tensor_parallel}")
    batches = np.array(sorted(sums), dtype=np.float64)
    times = np.array([float(np.mean(sums[int(b)])) for b in batches])
    wanted = np.arange(0, max_concurrency + 1, dtype=np.float64)
    values = np.interp(np.maximum(wanted, 1.0), batches, times)
    return tuple(float(v) for v in values)


class Fleet:
    """One run's replicas and requests. Mutable on purpose: the kernel advances it in place."""

    # Per-replica arrays, grown together by ``_grow`` (index = replica id).
    rstate: IntArray
    created_at: FloatArray
    started_at: FloatArray
    ready_at: FloatArray
    gone_at: FloatArray
    running: IntArray
    prompt_tokens: FloatArray
    gen_tokens: FloatArray
    success: FloatArray
    kv_tokens: FloatArray
    dcgm_util: FloatArray
    e2e_hist: FloatArray
    ttft_hist: FloatArray
    itl_hist: FloatArray
    heap_keys: FloatArray
    heap_vals: IntArray
    live: IntArray  # ids of replicas not gone at the last scale change (a superset of the live ones)

    def __init__(self, config: FleetConfig, trace: Trace, rng: np.random.Generator) -> None:
        self.config = config
        self.trace = trace
        self.rng = rng
        n = len(trace)
        self.arrival = np.ascontiguousarray(trace.arrival_s)
        self.input_tokens = np.ascontiguousarray(trace.input_tokens)
        self.output_tokens = np.ascontiguousarray(trace.output_tokens)
        pf = config.prefill_tokens_per_s
        self.prefill_s = self.input_tokens / pf if math.isfinite(pf) else np.zeros(n)
        per_token = np.asarray(config.per_token_s, dtype=np.float64)
        self.per_token_s = per_token[: config.max_concurrency + 1]
        self.start = np.full(n, np.nan)
        self.end = np.full(n, np.nan)
        self.per_token = np.zeros(n)
        self.rep = np.full(n, -1, dtype=np.int64)
        self.ints = np.zeros(3, dtype=np.int64)
        self.floats = np.zeros(1)
        self.e2e_bounds = np.asarray(E2E_BUCKETS_S)
        self.ttft_bounds = np.asarray(TTFT_BUCKETS_S)
        self.itl_bounds = np.asarray(ITL_BUCKETS_S)
        self._capacity = 0
        self.live = np.zeros(0, dtype=np.int64)
        self._grow(max(8, 2 * config.initial_replicas))
        self.cold_starts = 0
        for _ in range(config.initial_replicas):
            self._add(created_s=0.0, started_s=0.0, ready_s=0.0)

    # -- replica arrays ---------------------------------------------------------------------------------
    def _grow(self, capacity: int) -> None:
        old = self._capacity

        def grown(name: str, fill: float, dtype: type = np.float64, width: int = 0) -> None:
            shape: tuple[int, ...] = (capacity, width) if width else (capacity,)
            new: npt.NDArray[Any] = np.full(shape, fill, dtype=dtype)
            if old:
                new[:old] = getattr(self, name)
            setattr(self, name, new)

        grown("rstate", -1, np.int64)
        grown("created_at", math.inf)
        grown("started_at", math.inf)
        grown("ready_at", math.inf)
        grown("gone_at", math.inf)
        grown("running", 0, np.int64)
        grown("prompt_tokens", 0.0)
        grown("gen_tokens", 0.0)
        grown("success", 0.0)
        grown("kv_tokens", 0.0)
        grown("dcgm_util", math.nan)
        grown("e2e_hist", 0.0, width=len(E2E_BUCKETS_S) + 1)
        grown("ttft_hist", 0.0, width=len(TTFT_BUCKETS_S) + 1)
        grown("itl_hist", 0.0, width=len(ITL_BUCKETS_S) + 1)
        heap_keys = np.zeros(capacity * self.config.max_concurrency)
        heap_vals = np.zeros(capacity * self.config.max_concurrency, dtype=np.int64)
        if old:
            size = int(self.ints[kernel.HEAP])
            heap_keys[:size] = self.heap_keys[:size]
            heap_vals[:size] = self.heap_vals[:size]
        self.heap_keys, self.heap_vals = heap_keys, heap_vals
        self._capacity = capacity

    def _add(self, *, created_s: float, started_s: float, ready_s: float) -> None:
        r = int(self.ints[kernel.NREP])
        if r >= self._capacity:
            self._grow(2 * self._capacity)
        self.rstate[r] = kernel.READY if ready_s <= created_s else kernel.LOADING
        self.created_at[r] = created_s
        self.started_at[r] = started_s
        self.ready_at[r] = ready_s
        self.ints[kernel.NREP] = r + 1
        self._relive()

    def _relive(self) -> None:
        n = self.replica_count
        self.live = np.flatnonzero(self.rstate[:n] != kernel.GONE).astype(np.int64)

    # -- views ------------------------------------------------------------------------------------------
    @property
    def replica_count(self) -> int:
        return int(self.ints[kernel.NREP])

    def ids_in(self, state: int) -> IntArray:
        ids: IntArray = self.live[self.rstate[self.live] == state]
        return ids

    @property
    def spec_replicas(self) -> int:
        """Pods not being deleted: what ``spec.replicas`` (and ``status.replicas``) count."""
        return int(np.count_nonzero(self.rstate[self.live] <= kernel.READY))

    @property
    def ready_replicas(self) -> int:
        return int(np.count_nonzero(self.rstate[self.live] == kernel.READY))

    def load_times(self, now: float) -> dict[str, float]:
        """Creation -> Ready of the live, Ready pods, by pod (what the service measures from the pods it
        lists each tick); the initial fleet, ready from the start, has no load time to measure."""
        ready = self.live[(self.rstate[self.live] == kernel.READY) & (self.ready_at[self.live] <= now)]
        ready = ready[self.ready_at[ready] > self.created_at[ready]]
        seconds = (self.ready_at[ready] - self.created_at[ready]).tolist()
        return {f"pod-{i}": float(s) for i, s in zip(ready.tolist(), seconds, strict=True)}

    def waiting(self, now: float) -> int:
        """Requests arrived by ``now`` and not yet dispatched: the global queue."""
        arrived = int(np.searchsorted(self.arrival, now, side="right"))
        return max(0, arrived - int(self.ints[kernel.NEXT]))

    def in_flight(self, now: float) -> int:
        return int(self.running[self.live].sum()) + self.waiting(now)

    @property
    def dispatched(self) -> int:
        return int(self.ints[kernel.NEXT])

    # -- time and scale ---------------------------------------------------------------------------------
    def advance(self, t_end: float) -> None:
        kernel.advance(
            t_end, self.ints, self.floats, self.heap_keys, self.heap_vals,
            self.arrival, self.input_tokens, self.output_tokens, self.prefill_s, self.per_token_s,
            self.config.max_concurrency, self.start, self.end, self.per_token, self.rep, self.live,
            self.rstate, self.ready_at, self.gone_at, self.running, self.prompt_tokens, self.gen_tokens, self.success,
            self.kv_tokens, self.e2e_bounds, self.e2e_hist, self.ttft_bounds, self.ttft_hist,
            self.itl_bounds, self.itl_hist,
        )

    def scale_to(self, desired: int, now: float) -> None:
        """Write ``spec.replicas = desired`` at ``now`` (after :meth:`advance` to ``now``)."""
        current = self.spec_replicas
        if desired > current:
            for _ in range(desired - current):
                started = now + self.config.scheduling_delay_s
                self._add(created_s=now, started_s=started, ready_s=started + self.config.load_time.sample(self.rng))
                self.cold_starts += 1
            return
        excess = current - desired
        if excess <= 0:
            return
        loading = self.ids_in(kernel.LOADING)
        loading = loading[np.argsort(-self.created_at[loading], kind="stable")]  # newest first
        ready = self.ids_in(kernel.READY)
        ready = ready[np.argsort(self.running[ready], kind="stable")]  # idle first, then least busy
        for r in [*loading.tolist(), *ready.tolist()][:excess]:
            if self.rstate[r] == kernel.READY and self.running[r] > 0:
                self.rstate[r] = kernel.DRAINING
            else:
                self.rstate[r] = kernel.GONE
                self.gone_at[r] = now
        self._relive()

    def gpu_seconds(self, horizon_s: float, since_s: float = 0.0) -> float:
        """GPU-seconds held between ``since_s`` and ``horizon_s``."""
        n = self.replica_count
        held = np.minimum(self.gone_at[:n], horizon_s) - np.maximum(self.started_at[:n], since_s)
        return float(np.clip(held, 0.0, None).sum()) * self.config.gpus_per_replica

    def holding_gpu(self, now: float) -> IntArray:
        """Replicas whose pod holds a GPU at ``now`` (scheduled, not yet gone)."""
        live = self.live
        ids: IntArray = live[(self.rstate[live] != kernel.GONE) & (self.started_at[live] <= now)]
        return ids
