"""Regenerate examples/observations/chat-load-step.jsonl: the SLO chat policy over a load step.

A simulated vLLM fleet (16 sequences per replica, 2-3 minute model loads) serves Poisson traffic that
steps up 4x for twelve minutes, driven by ``policies/team-a/chat.yaml`` itself; every tick's reading
(the scale, the ready pods, the SLO's signals as Prometheus would give them) is written as one replay
line. At minute 25 the model server's metrics go missing for a minute (an exporter restart), so the
replay shows the hold on missing data too.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from autoscaler.core import MetricReading
from autoscaler.policy import load_policy_file
from autoscaler.sim.controllers import FleetView, PolicyController
from autoscaler.sim.fleet import FleetConfig, LoadTime
from autoscaler.sim.pipeline import PipelineConfig
from autoscaler.sim.run import Slo, simulate
from autoscaler.sim.trace import TokenDistribution, flash_crowd

OUTAGE_S = (1500.0, 1560.0)


class Recording(PolicyController):
    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.lines: list[dict[str, object]] = []

    def tick(self, view: FleetView) -> tuple[int, str]:
        if OUTAGE_S[0] <= view.now_s < OUTAGE_S[1]:
            view = FleetView(view.now_s, view.spec_replicas, view.ready_replicas, view.in_flight,
                             lambda preset: MetricReading.missing(), view.load_times_s, view.status_replicas)
        reading = self.reading(view)
        metrics = {name.removeprefix("slo:"): (None if r.value is None else round(r.value, 4))
                   for name, r in reading.metrics.items()}
        line: dict[str, object] = {"time": view.now_s, "replicas": view.spec_replicas,
                                   "readyReplicas": view.ready_replicas, "metrics": metrics}
        loads = sorted(view.load_times_s.values())
        if loads:
            line["loadTimeSeconds"] = round(loads[-1], 1)
        self.lines.append(line)
        return super().tick(view)


def main() -> None:
    policy = load_policy_file("policies/team-a/chat.yaml", root="policies")
    trace = flash_crowd(rate_per_s=1.5, multiplier=4, start_s=600, minutes=12, duration_s=2700,
                        tokens_in=TokenDistribution(median=800, p95=3000),
                        tokens_out=TokenDistribution(median=200, p95=700), rng=np.random.default_rng(7))
    fleet = FleetConfig(max_concurrency=16, prefill_tokens_per_s=10000, per_token_s=(0.035,) * 17,
                        load_time=LoadTime(120, 180), initial_replicas=2)
    controller = Recording(policy)
    simulate(trace, controller, fleet_config=fleet, pipeline_config=PipelineConfig(), slo=Slo(2.0, "ttft"),
             rng=np.random.default_rng(1), drain_s=0.0, progress=None)
    for line in controller.lines:
        sys.stdout.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
