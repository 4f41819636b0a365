"""Regenerate examples/observations/chat-load-step.jsonl: a closed-loop load step for the chat policy.

Demand (requests waiting) steps up 6x for ten minutes, then falls back. Replicas follow the core's
previous decision and become ready 60 s (4 ticks) later, as a model server that loads its weights;
at minute 12 the GPU metric goes missing for a minute (an exporter restart).
"""

from __future__ import annotations

import json
import random
import sys

from autoscaler.core import MetricReading, Observation, ScalerState, decide
from autoscaler.policy import load_policy_file


def main() -> None:
    policy = load_policy_file("policies/team-a/chat.yaml", root="policies")
    rng = random.Random(7)
    state = ScalerState()
    replicas, started = 2, [(-1000.0, 2)]
    out = []
    for tick in range(0, 100):
        t = tick * 15.0
        arrivals = 6.0 if 120 <= t < 720 else 1.0  # requests/s
        ready = sum(n for ts, n in started if t - ts >= 60.0)
        ready = min(ready, replicas)
        capacity = max(ready, 1) * 1.2  # requests/s one replica serves
        queue = max(0.0, (arrivals - capacity) * 20.0) + rng.uniform(0, 2)
        util = min(100.0, 100.0 * arrivals / capacity) if ready else 0.0
        p95 = 2.0 + 6.0 * min(1.0, arrivals / capacity) + (queue / max(ready, 1)) * 0.3
        metrics = {"queue": round(queue, 2), "gpu": round(util, 1), "p95": round(p95, 2)}
        if 720 <= t < 780:
            metrics["gpu"] = None
        out.append({"time": t, "replicas": replicas, "readyReplicas": ready, "metrics": metrics})
        readings = {k: (MetricReading.of(v) if v is not None else MetricReading.missing()) for k, v in metrics.items()}
        decision, state = decide(Observation(replicas, ready, readings), state, policy, t)
        if decision.desired_replicas > replicas:
            started.append((t, decision.desired_replicas - replicas))
        elif decision.desired_replicas < replicas:
            drop = replicas - decision.desired_replicas
            while drop:
                ts, n = started.pop()
                take = min(n, drop)
                drop -= take
                if n > take:
                    started.append((ts, n - take))
        replicas = decision.desired_replicas
    for line in out:
        sys.stdout.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
