"""``tune`` on the repository's multi-day trace: the shipped SLO policy fitted on the first days, judged
on the days after, next to the KPA and Ray Serve baselines; and the search's wall time on the local
cores and on a local Ray instance.

Traffic: the ServeGen language client that ``bench_slo`` uses (``../shared/traces/servegen/
language-m-large/chunk-78-trace.csv``, 14 days at 10-minute windows) when it is beside the checkout,
else the bundled three-client slice (``simulations/traces/servegen-language``) thinned to the same
mean rate; the fleet, token shapes and objective (p95 TTFT <= 2 s) are ``bench_slo``'s. The policy is
``simulations/policies/chat-slo.yaml`` (the objective, the target, the bounds: nothing else), the
tuning space ``tune``'s default for it, the target attainment ``baselines`` (the better of the KPA
and Ray Serve *on the fit days*).

Goal (issue 13): the tuned policy beats both baselines on the held-out days, at least their SLO
attainment at <= 0.9x their GPU-hours, with the search done within 10 minutes on this 2-core machine.
The Ray run repeats the first ``--ray-trials`` candidates with the same seed on a local Ray instance
(``ray.init(num_cpus=2)``) and checks they are the local run's, value for value.

    python benchmarks/run.py tune
    python benchmarks/bench_tune.py --fit-days 2 --held-out-days 2 --trials 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from autoscaler.policy import load_policy_file
from autoscaler.sim.pipeline import PipelineConfig
from autoscaler.sim.run import Slo
from autoscaler.sim.scenario import Baseline, PolicyRef, load_policy_ref
from autoscaler.sim.trace import Trace, read_trace
from autoscaler.tune.candidates import CandidateBuilder
from autoscaler.tune.driver import TuneRequest, TuneResult, cap_gpu_hours, tune
from autoscaler.tune.evaluate import Outcome, SimContext
from autoscaler.tune.executors import LocalExecutor, RayExecutor
from autoscaler.tune.search import search
from autoscaler.tune.space import TuningSpace, default_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_slo import CHAT_IN, CHAT_OUT, FLEET  # the same fleet and token shapes

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "traces" / "servegen" / "language-m-large" / "chunk-78-trace.csv"
SHIPPED = ROOT / "simulations" / "traces" / "servegen-language"
POLICY = ROOT / "simulations" / "policies" / "chat-slo.yaml"
BASELINES = ("knative-kpa.yaml", "ray-serve.yaml")
DAY = 86400.0
GOAL_GPU = 0.9


def load_traffic(days: float) -> Trace:
    rng = np.random.default_rng(2)
    if SHARED.exists():
        return read_trace(SHARED, "servegen", rng=rng, tokens_in=CHAT_IN, tokens_out=CHAT_OUT, span_s=(0.0, days * DAY))
    print(f"({SHARED} is not here: the bundled slice, thinned to chunk-78's mean rate)")
    trace = read_trace(SHIPPED, "servegen", rng=rng, tokens_in=CHAT_IN, tokens_out=CHAT_OUT, span_s=(0.0, days * DAY))
    return trace.scaled(time_scale=1.0, rate_scale=5.19 / (len(trace) / trace.duration_s), rng=rng)


def row(name: str, o: Outcome | None) -> str:
    if o is None:
        return f"{name:<26} {'-':>9} {'-':>9} {'-':>6}"
    return f"{name:<26} {o.gpu_hours:>9.2f} {o.slo_attainment:>9.3%} {o.cold_starts:>6}"


def verdict(tuned: Outcome, baseline: Outcome, name: str) -> tuple[str, bool]:
    ratio = tuned.gpu_hours / baseline.gpu_hours
    delta = tuned.slo_attainment - baseline.slo_attainment
    met = delta >= 0 and ratio <= GOAL_GPU
    return (f"vs {name}: GPU-h x{ratio:.3f}, SLO attainment {100 * delta:+.3f} pts -> "
            f"{'MET' if met else 'not met'} (goal: >= attainment at <= {GOAL_GPU}x)"), met


def report(result: TuneResult, local_s: float) -> None:
    fold = result.final
    print(f"\nsplit: {fold.fold.describe()}; target attainment on the fit days {fold.target_attainment:.3%} "
          "(the better of KPA and Ray Serve there)")
    print(f"\n{'fit days':<26} {'GPU-h':>9} {'SLO met':>9} {'cold':>6}")
    print(row("current (chat-slo)", fold.fit["current"]))
    print(row("tuned", fold.pick.outcome) + ("" if fold.met_target else "   (no candidate reached the target: "
                                                                         "the closest)"))
    for name, outcome in fold.fit.items():
        if name != "current":
            print(row(name, outcome))
    print(f"\n{'held-out days':<26} {'GPU-h':>9} {'SLO met':>9} {'cold':>6}")
    held = fold.held_out
    print(row("current (chat-slo)", held["current"]))
    print(row("tuned", held["tuned"]))
    for baseline in result.request.baselines:
        print(row(baseline.name, held.get(baseline.name)))
    cur, new = held["current"], held["tuned"]
    print(f"expected change (held-out): GPU-h {new.gpu_hours / cur.gpu_hours - 1:+.1%}, SLO attainment "
          f"{100 * (new.slo_attainment - cur.slo_attainment):+.3f} pts, "
          f"cold starts {new.cold_starts - cur.cold_starts:+d}")
    print("tuned values: " + (", ".join(f"{c.path} {c.before} -> {c.after}" for c in fold.changes) or "none"))
    met_all = True
    for baseline in result.request.baselines:
        text, met = verdict(new, held[baseline.name], baseline.name)
        met_all &= met
        print(f"  {text}")
    searched = sum(len(s.trials) for s in fold.searches)
    print(f"goal (the tuned policy beats both baselines on the held-out days): {'MET' if met_all else 'not met'}; "
          f"search {fold.timing['searchSeconds']:.0f} s for {searched} candidates (whole tune run {local_s:.0f} s; "
          "goal: search within 600 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-days", type=float, default=2.0)
    parser.add_argument("--held-out-days", type=float, default=2.0)
    parser.add_argument("--trials", type=int, default=32, help="candidates of the local search")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ray-trials", type=int, default=8, help="candidates repeated on Ray (0: skip Ray)")
    args = parser.parse_args()

    trace = load_traffic(args.fit_days + args.held_out_days)
    policy = load_policy_file(POLICY)
    baselines = tuple(b for b in (load_policy_ref(PolicyRef(ROOT / "simulations" / "baselines" / f))
                                  for f in BASELINES) if isinstance(b, Baseline))
    space = TuningSpace(default_space(policy, replica_slots=FLEET.max_concurrency).parameters,
                        target_attainment="baselines")
    context = SimContext(trace, FLEET, PipelineConfig(), Slo(2.0, "ttft"), seed=7)
    request = TuneRequest(policy, space, context, baselines, holdout_s=args.held_out_days * DAY, folds=1,
                          trials=args.trials, batch=args.batch, seed=args.seed, frontier_points=0)
    print(f"trace: {trace.source}, {len(trace):,} requests over {trace.duration_s / DAY:.2f} days; policy "
          f"{POLICY.relative_to(ROOT)}; parameters: {', '.join(space.names())}")
    started = time.perf_counter()
    with LocalExecutor() as executor:
        result = tune(request, executor, progress=sys.stdout)
    local_s = time.perf_counter() - started
    report(result, local_s)
    fold = result.final
    local_trials = fold.searches[0].trials
    local_rate = len(local_trials) / fold.timing["searchSeconds"]
    print(f"\nlocal ({result.executor}): {len(local_trials)} candidates in {fold.timing['searchSeconds']:.0f} s, "
          f"{local_rate:.3f} candidates/s")
    if args.ray_trials <= 0:
        return
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        fit = context.cut(fold.fold.origin_s)
        with RayExecutor(None) as executor, CandidateBuilder(policy, space) as builder, \
                executor.session(fit) as session:
            begun = time.perf_counter()
            on_ray = search(space=space, builder=builder, session=session, target_attainment=fold.target_attainment,
                            cap_gpu_hours=cap_gpu_hours(request, fit), seed=args.seed, trials=args.ray_trials,
                            batch=args.batch)
            ray_s = time.perf_counter() - begun
    finally:
        ray.shutdown()
    same = [(t.values, t.outcome) for t in on_ray.trials] == [(t.values, t.outcome)
                                                              for t in local_trials[:args.ray_trials]]
    print(f"Ray (local instance, 2 CPUs): {len(on_ray.trials)} candidates in {ray_s:.0f} s, "
          f"{len(on_ray.trials) / ray_s:.3f} candidates/s; the same candidates and outcomes as the local run's "
          f"first {args.ray_trials}: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
