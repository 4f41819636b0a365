"""SLO sizing against the strongest baselines, on traffic nobody tuned for.

Every case states only its fleet (what one replica is) and its objective; the SLO policy is generated
from the objective alone (``spec.slo``: objective, percentile, bound; nothing per trace), and every
policy gets the same replica cap. Baselines with their documented defaults: Knative's KPA, Ray Serve,
the HPA on GPU utilization, KEDA's queue scaler; the no-wait schedule (hindsight: no request ever
waits) is shown for reference, not as a baseline.

Cases: the trace the repository ships, the public traces under ``../shared/traces`` when present (a
benchmark may read them; tests never do), and synthetic traffic generated here (a day with unannounced
flash crowds, a week with a quiet weekend, bursty code completion). Multi-day cases also report the
days after the first (``day 2+``: one prior day of history).

The goal per case: SLO attainment >= the better of the KPA's and Ray Serve's, at <= 0.85x its
GPU-hours (<= 0.75x on the days after a first day of history). Each case ends with the verdict, and the
run with the count of cases where the goal is met.

    python benchmarks/run.py slo                  # every case
    python benchmarks/bench_slo.py --cases day    # the cases whose name contains "day"
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from autoscaler.policy.loader import load_policy_file
from autoscaler.sim.fleet import FleetConfig, LoadTime
from autoscaler.sim.pipeline import PipelineConfig
from autoscaler.sim.run import Slo, simulate
from autoscaler.sim.scenario import Baseline, PolicyRef, build_controller, load_policy_ref
from autoscaler.sim.trace import TokenDistribution, Trace, read_trace

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "traces"
BASELINES = ROOT / "simulations" / "baselines"
CAP = 64
DAY = 86400.0


@dataclass(frozen=True)
class Case:
    name: str
    trace: Callable[[], Trace | None]  # None: its data is absent here
    slo: Slo
    fleet: FleetConfig
    days: int = 1


FLEET = FleetConfig(
    max_concurrency=16,
    prefill_tokens_per_s=10000.0,
    per_token_s=(0.035,) * 17,
    load_time=LoadTime(120.0, 200.0),
    scheduling_delay_s=5.0,
    initial_replicas=2,
)


# ------------------------------------------------------------------------------------------ traffic


def _arrivals(rate_per_s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A non-homogeneous Poisson process from a per-second rate."""
    counts = rng.poisson(np.maximum(rate_per_s, 0.0))
    second = np.repeat(np.arange(len(rate_per_s), dtype=np.float64), counts)
    return np.sort(second + rng.random(len(second)))


def _with_tokens(arrival: np.ndarray, rng: np.random.Generator, tin: TokenDistribution, tout: TokenDistribution,
                 source: str) -> Trace:
    return Trace.of(arrival, tin.sample(len(arrival), rng), tout.sample(len(arrival), rng), source)


CHAT_IN, CHAT_OUT = TokenDistribution(median=800, p95=3000), TokenDistribution(median=200, p95=700)


def diurnal_with_flash_crowds() -> Trace:
    rng = np.random.default_rng(11)
    t = np.arange(int(DAY), dtype=np.float64)
    rate = 4.0 * (1 + 0.6 * np.sin(2 * np.pi * (t - 6 * 3600) / DAY - np.pi / 2))
    for start in rng.uniform(2 * 3600, DAY - 3600, size=4):  # unannounced: x2.5-4 for 5-15 minutes
        span = int(rng.uniform(300, 900))
        rate[int(start): int(start) + span] *= rng.uniform(2.5, 4.0)
    return _with_tokens(_arrivals(rate, rng), rng, CHAT_IN, CHAT_OUT, "diurnal+flash-crowds")


def weekly_quiet_weekend() -> Trace:
    rng = np.random.default_rng(12)
    t = np.arange(int(7 * DAY), dtype=np.float64)
    daily = 1 + 0.7 * np.sin(2 * np.pi * (t - 6 * 3600) / DAY - np.pi / 2)
    weekday = np.where((t // DAY) % 7 >= 5, 0.3, 1.0)  # days 5 and 6: the weekend
    noise = np.repeat(rng.lognormal(0, 0.15, size=len(t) // 300 + 1), 300)[: len(t)]
    return _with_tokens(_arrivals(2.0 * daily * weekday * noise, rng), rng, CHAT_IN, CHAT_OUT, "weekly")


def bursty_code_completion() -> Trace:
    """Short prompts and completions in bursts (an editor fleet): rate modulated every 20 s."""
    rng = np.random.default_rng(13)
    hours = 6
    t = np.arange(hours * 3600, dtype=np.float64)
    envelope = 25.0 * (1 + 0.5 * np.sin(2 * np.pi * t / (hours * 3600) - np.pi / 2))
    bursts = np.repeat(rng.gamma(0.5, 2.0, size=len(t) // 20 + 1), 20)[: len(t)]  # mean 1, cv ~1.4
    return _with_tokens(_arrivals(envelope * bursts, rng), rng, TokenDistribution(median=1500, p95=4000),
                        TokenDistribution(median=20, p95=120), "bursty-code")


def shipped_azure_code() -> Trace:
    trace = read_trace(ROOT / "simulations" / "traces" / "azure-code-sample.csv", "azure", rng=np.random.default_rng(1))
    return trace.scaled(time_scale=1.0, rate_scale=8.0, rng=np.random.default_rng(1))


def shared(name: str, fmt: str, rate_scale: float = 1.0, **kw: object) -> Callable[[], Trace | None]:
    def load() -> Trace | None:
        path = SHARED / name
        if not path.exists():
            return None
        rng = np.random.default_rng(2)
        trace = read_trace(path, fmt, rng=rng, **kw)  # type: ignore[arg-type]
        return trace.scaled(time_scale=1.0, rate_scale=rate_scale, rng=rng) if rate_scale != 1.0 else trace
    return load


CASES = (
    Case("shipped-azure-code-x8", shipped_azure_code, Slo(latency_s=5.0, metric="e2e"), FLEET),
    Case("azure-code-1h-x8", shared("azure2023_AzureLLMInferenceTrace_code.csv", "azure", 8.0),
         Slo(latency_s=5.0, metric="e2e"), FLEET),
    Case("mooncake-conversation", shared("mooncake_fast25_conversation_trace.jsonl", "mooncake"),
         Slo(latency_s=60.0, metric="e2e"), FLEET),
    Case("servegen-language-3d", shared("servegen/language-m-large/chunk-78-trace.csv", "servegen",
                                        tokens_in=CHAT_IN, tokens_out=CHAT_OUT, span_s=(0.0, 3 * DAY)),
         Slo(latency_s=2.0, metric="ttft"), FLEET, days=3),
    Case("diurnal-flash-crowds", diurnal_with_flash_crowds, Slo(latency_s=2.0, metric="ttft"), FLEET),
    Case("weekly-quiet-weekend", weekly_quiet_weekend, Slo(latency_s=2.0, metric="ttft"), FLEET, days=7),
    Case("bursty-code-completion", bursty_code_completion, Slo(latency_s=3.0, metric="e2e"), FLEET),
)


# ------------------------------------------------------------------------------------------ policies


def slo_policy(case: Case, tmp: Path) -> Path:
    """The SLO policy as a team would write it: the objective, the target, the cap; nothing else."""
    path = tmp / f"slo-{case.name}.yaml"
    path.write_text(
        "apiVersion: inference-autoscaler.io/v1alpha1\nkind: ScalingPolicy\n"
        "metadata: {name: slo, namespace: bench}\n"
        "spec:\n  target: {apiVersion: apps/v1, kind: Deployment, name: llm}\n"
        f"  minReplicas: 1\n  maxReplicas: {CAP}\n"
        f"  slo: {{objective: {case.slo.metric}, percentile: 95, seconds: {case.slo.latency_s}}}\n"
    )
    return path


BASELINE_FILES = {
    "kpa": "knative-kpa.yaml",
    "ray-serve": "ray-serve.yaml",
    "hpa-gpu": "hpa-gpu-util.yaml",
    "keda-queue": "keda-queue-depth.yaml",
    "no-wait": "no-wait.yaml" if (BASELINES / "no-wait.yaml").exists() else "oracle.yaml",
}


def _capped(item: object) -> object:
    if isinstance(item, Baseline):
        return replace(item, max_replicas=CAP if item.algorithm not in ("oracle", "no-wait") else 10 * CAP)
    return replace(item, max_replicas=CAP)  # type: ignore[type-var]


def run_case(case: Case, tmp: Path) -> list[dict[str, object]] | None:
    trace = case.trace()
    if trace is None:
        return None
    rows = []
    items: list[tuple[str, object]] = [("slo", load_policy_file(slo_policy(case, tmp)))]
    items += [(name, _capped(load_policy_ref(PolicyRef(BASELINES / f)))) for name, f in BASELINE_FILES.items()]
    for name, item in items:
        controller = build_controller(item, trace, case.fleet, 600.0)  # type: ignore[arg-type]
        started = time.perf_counter()
        result = simulate(trace, controller, fleet_config=case.fleet, pipeline_config=PipelineConfig(),
                          slo=case.slo, rng=np.random.default_rng(7), progress=None,
                          measure_from_s=DAY if case.days > 1 else None)
        s = result.summary
        row = {"case": case.name, "policy": name, "gpuHours": s["gpuHours"], "slo": s["sloAttainment"],
               "coldStarts": s["coldStarts"], "p95": s["latencyP95"], "wall": time.perf_counter() - started}
        if "window" in s:
            w = s["window"]
            row["day2"] = {"gpuHours": w["gpuHours"], "slo": w["sloAttainment"], "coldStarts": w["coldStarts"]}
        rows.append(row)
    return rows


STRONGEST = ("kpa", "ray-serve")  # the baselines to beat; HPA-on-GPU and KEDA-queue are shown for reference


def verdict(rows: list[dict[str, object]], goal: float, key: str | None = None) -> tuple[str, bool]:
    """Against the better of the KPA and Ray Serve (by SLO attainment, then GPU-hours): ours must
    attain at least as much at <= ``goal`` x its GPU-hours. Parking at the cap (HPA on GPU utilization
    reads 100 % busy) attains everything at any cost, so the reference baselines are not the bar."""
    def pick(r: dict[str, object]) -> dict[str, object]:
        return r[key] if key else r  # type: ignore[return-value]

    by = {str(r["policy"]): pick(r) for r in rows}
    best_name = max(STRONGEST, key=lambda n: (float(by[n]["slo"]), -float(by[n]["gpuHours"])))  # type: ignore[arg-type]
    best, ours = by[best_name], by["slo"]
    ratio = float(ours["gpuHours"]) / float(best["gpuHours"])  # type: ignore[arg-type]
    delta = float(ours["slo"]) - float(best["slo"])  # type: ignore[arg-type]
    met = delta >= 0 and ratio <= goal
    text = (f"{'day 2+: ' if key else ''}best of KPA/Ray = {best_name} ({float(best['slo']):.2%}, "  # type: ignore[arg-type]
            f"{float(best['gpuHours']):.2f} GPU-h); SLO policy: GPU-h x{ratio:.3f}, attainment {delta:+.2%} "  # type: ignore[arg-type]
            f"-> {'MET' if met else 'not met'} (goal: >= attainment at <= {goal}x)")
    return text, met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="", help="only the cases whose name contains this")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'case':<24} {'policy':<11} {'GPU-h':>9} {'SLO met':>8} {'p95 s':>8} {'cold':>6} {'wall s':>7}")
        summary: list[tuple[str, bool]] = []
        for case in CASES:
            if args.cases and args.cases not in case.name:
                continue
            rows = run_case(case, Path(tmp))
            if rows is None:
                print(f"{case.name:<24} skipped: its trace is not here (put ../shared/traces beside the checkout)")
                continue
            for r in rows:
                print(f"{r['case']:<24} {r['policy']:<11} {r['gpuHours']:>9.2f} {float(r['slo']):>8.2%} "  # type: ignore[arg-type]
                      f"{r['p95'] or math.nan:>8.2f} {r['coldStarts']:>6} {float(r['wall']):>7.1f}")  # type: ignore[arg-type]
                if "day2" in r:
                    d = r["day2"]
                    print(f"{'  day 2+':<24} {r['policy']:<11} {d['gpuHours']:>9.2f} {float(d['slo']):>8.2%} "  # type: ignore[index]
                          f"{'':>8} {d['coldStarts']:>6}")  # type: ignore[index]
            text, met = verdict(rows, 0.85)
            print(f"{'':<24} {text}")
            summary.append((case.name, met))
            if any("day2" in r for r in rows):
                text, met = verdict(rows, 0.75, key="day2")
                print(f"{'':<24} {text}")
                summary.append((case.name + " (day 2+)", met))
            sys.stdout.flush()
        print(f"goal met on {sum(m for _, m in summary)} of {len(summary)}: "
              + ", ".join(f"{name} {'MET' if m else 'not met'}" for name, m in summary))

if __name__ == "__main__":
    main()
