"""Simulator speed: a 10-million-request day through the fleet model, on one core.

Reports requests/s for (a) the fleet kernel alone (one ``advance`` over the whole day, fixed fleet),
(b) a full run with a static fleet, (c) a full run of an HPA policy through ``decide`` and the
metrics pipeline (KEDA-style queue depth), and each as a ratio to the time numpy takes just to load
the same trace: ``np.load`` of a ``.npy`` (the fastest load there is) and ``np.loadtxt`` of the
CSV form (measured on the first million rows and scaled). Numba compiling is excluded (warm-up run).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from autoscaler.policy import load_policy_file
from autoscaler.sim.controllers import PolicyController, StaticController
from autoscaler.sim.fleet import Fleet, FleetConfig, LoadTime
from autoscaler.sim.pipeline import PipelineConfig
from autoscaler.sim.run import Slo, simulate
from autoscaler.sim.trace import TokenDistribution, Trace, diurnal

REQUESTS_PER_DAY = 10_000_000
ROOT = Path(__file__).resolve().parent.parent


def _day(rng: np.random.Generator) -> Trace:
    return diurnal(mean_rate_per_s=REQUESTS_PER_DAY / 86400, amplitude=0.5, period_s=86400, noise=0.1,
                   duration_s=86400, tokens_in=TokenDistribution(median=800, p95=3000),
                   tokens_out=TokenDistribution(median=150, p95=600), rng=rng)


def main() -> None:
    config = FleetConfig(max_concurrency=64, prefill_tokens_per_s=20000, per_token_s=(0.02,) * 65,
                         load_time=LoadTime(120, 200), initial_replicas=12)
    pipeline = PipelineConfig()
    warm = _day(np.random.default_rng(0)).window(600)
    simulate(warm, StaticController("warm", 12), fleet_config=config, pipeline_config=pipeline, slo=Slo(),
             rng=np.random.default_rng(1), progress=None)
    trace = _day(np.random.default_rng(1))
    n = len(trace)
    print(f"trace: {n:,} requests over 24 h (diurnal, mean {n / 86400:.0f}/s)")

    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "trace.npy"
        np.save(npy, np.stack([trace.arrival_s, trace.input_tokens, trace.output_tokens], axis=1))
        t0 = time.perf_counter()
        np.load(npy)
        npy_s = time.perf_counter() - t0
        csv = Path(tmp) / "trace.csv"
        head = 1_000_000
        np.savetxt(csv, np.stack([trace.arrival_s[:head], trace.input_tokens[:head], trace.output_tokens[:head]], 1),
                   fmt=["%.6f", "%d", "%d"], delimiter=",", header="arrival_s,input_tokens,output_tokens", comments="")
        t0 = time.perf_counter()
        np.loadtxt(csv, delimiter=",", skiprows=1)
        csv_s = (time.perf_counter() - t0) * n / head
    print(f"numpy load: .npy {npy_s:.3f} s; CSV (np.loadtxt) {csv_s:.1f} s (scaled from {head:,} rows)")

    def report(label: str, seconds: float) -> None:
        print(f"{label:<44} {seconds:7.2f} s  {n / seconds / 1e6:6.2f} M requests/s  "
              f"x{seconds / npy_s:6.1f} the .npy load  x{seconds / csv_s:5.2f} the CSV load")

    fleet = Fleet(config, trace, np.random.default_rng(2))
    t0 = time.perf_counter()
    fleet.advance(86400 + 600)
    report("fleet kernel alone (12 replicas, one advance)", time.perf_counter() - t0)

    result = simulate(trace, StaticController("static", 12), fleet_config=config, pipeline_config=pipeline,
                      slo=Slo(), rng=np.random.default_rng(2), progress=None)
    report("full run, static fleet", result.wall_s)
    policy = load_policy_file(ROOT / "simulations" / "baselines" / "keda-queue-depth.yaml")
    result = simulate(trace, PolicyController(policy), fleet_config=config, pipeline_config=pipeline, slo=Slo(),
                      rng=np.random.default_rng(2), progress=None)
    report("full run, HPA queue-depth policy via decide", result.wall_s)
    print(f"  (that run: {result.summary['gpuHours']} GPU-h, max {result.summary['maxReplicas']} replicas, "
          f"{result.summary['scaleEvents']} scale events)")


if __name__ == "__main__":
    main()
