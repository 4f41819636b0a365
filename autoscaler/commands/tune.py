"""``inference-autoscaler tune``: fit a policy's numbers to a team's own traffic, judged on held-out days.

The search minimises GPU-hours subject to the SLO (``--objective frontier``: traces GPU-hours against
SLO attainment), fits on the earlier part of the traffic and reports on the later part it never saw
(a rolling origin when the history is long enough), and is deterministic per seed on every executor.

Traffic: the scenario's trace, ``--trace`` (a file), or ``--prometheus URL --from --to`` (the target's
recorded request and token rates). The scenario gives the fleet model, the metrics pipeline and, for a
policy without ``spec.slo``, the SLO measured. Parameters: ``--param PATH=LOW:HIGH[:int|:float][:log]``
(repeatable) and/or ``--space FILE``; without either, a default set derived from the policy.

Writes tuned.yaml (the file with the tuned values, each commented), tuned.diff, summary.md (printed),
frontier.png and report.json to ``--out``.

Examples:
  inference-autoscaler tune --policy simulations/policies/chat-reactive.yaml \\
      --scenario simulations/predictive-workday.yaml --out out/tune
  inference-autoscaler tune --policy p.yaml --scenario s.yaml --trace t.csv --format csv \\
      --param 'spec.metrics[tokens].target.averageValue=100:400' --target-attainment 0.99 --ray-address auto
  inference-autoscaler tune --policy p.yaml --scenario s.yaml --prometheus http://prom:9090 \\
      --from -7d --to now --out out/tune
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from autoscaler.commands.common import Exit, add_prometheus_arguments, prometheus_config, require_extra
from autoscaler.errors import InputError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="fit a policy's numbers to recorded traffic (held-out days judge it; locally or on Ray)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--policy", required=True, metavar="FILE", help="the policy file to tune")
    parser.add_argument("--name", help="policy name, when the file holds several")
    parser.add_argument("--root", metavar="DIR", help="the policy tree's root, whose folders' defaults apply")
    parser.add_argument("--scenario", required=True, metavar="FILE",
                        help="a kind: Simulation file: the fleet model, metrics pipeline, SLO, seed, trace")
    parser.add_argument("--out", required=True, metavar="DIR", help="where tuned.yaml and the report go")
    traffic = parser.add_argument_group("traffic (default: the scenario's trace)")
    traffic.add_argument("--trace", metavar="FILE", help="a trace file instead of the scenario's")
    traffic.add_argument("--format", choices=("azure", "mooncake", "servegen", "csv"), default="csv",
                         help="format of --trace (default csv)")
    traffic.add_argument("--from", dest="start", metavar="TIME", help="with --prometheus: history from")
    traffic.add_argument("--to", dest="end", default="now", metavar="TIME", help="with --prometheus: until")
    traffic.add_argument("--step", type=float, default=60.0, metavar="SECONDS",
                         help="with --prometheus: resolution of the rates read (default 60)")
    space = parser.add_argument_group("what to search")
    space.add_argument("--param", action="append", default=[], metavar="PATH=LOW:HIGH[:int|:float][:log]",
                       help="a tunable field of the effective policy and its allowed range (repeatable), e.g. "
                            "spec.metrics[tokens].target.averageValue=100:300")
    space.add_argument("--space", metavar="FILE", help="a tuning file (parameters, objective, targetAttainment)")
    space.add_argument("--objective", choices=("min-gpu-hours", "frontier"),
                       help="minimise GPU-hours subject to the SLO (default), or trace the whole frontier")
    space.add_argument("--target-attainment", metavar="FRACTION|policy|baselines",
                       help="SLO attainment a candidate must reach on the fit part (default policy: its "
                            "percentile, 0.95 without spec.slo; baselines: the best of KPA and Ray Serve)")
    space.add_argument("--baseline", action="append", default=[], metavar="FILE",
                       help="a SimulationBaseline file to compare with (default: the scenario's)")
    split = parser.add_argument_group("fit and held-out parts")
    split.add_argument("--holdout", metavar="DURATION|FRACTION",
                       help="held-out length: 1d, 6h, 30m or 0.25 (default 1d for >= 3 days, else 0.25)")
    split.add_argument("--folds", default="auto", metavar="N|auto",
                       help="rolling-origin folds (default auto: up to 3 when the history is long enough)")
    run = parser.add_argument_group("search")
    run.add_argument("--trials", type=int, default=48, help="candidates per seed and fold (default 48)")
    run.add_argument("--batch", type=int, default=8,
                     help="candidates per batch, asked together (default 8; part of the result, unlike --workers)")
    run.add_argument("--seed", type=int, default=1, help="the sampler's seed (default 1)")
    run.add_argument("--seeds", type=int, default=1, help="run this many seeds from --seed to show the spread")
    run.add_argument("--workers", type=int, help="local processes (default: every core)")
    run.add_argument("--ray-address", metavar="ADDR|auto", help="run the candidates as Ray tasks on this cluster")
    run.add_argument("--frontier-points", type=int, default=6, help="frontier points run on the held-out part")
    run.add_argument("--no-explain", action="store_true", help="skip the one-value reverts that explain changes")
    run.add_argument("--no-plots", action="store_true", help="skip frontier.png")
    add_prometheus_arguments(parser, required=False)
    parser.set_defaults(run=run_tune)


class _PromRanges:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def series(self, expr: str, *, start_s: float, end_s: float, step_s: float) -> dict[float, float]:
        from autoscaler.prometheus.ranges import summed_range

        return await summed_range(self.client, expr, start_s=start_s, end_s=end_s, step_s=step_s, context="tune")


def _space(args: argparse.Namespace, policy: Any, slots: int) -> Any:
    from autoscaler.tune.space import TuningError, TuningSpace, default_space, parse_parameter, parse_space

    base = None
    if args.space:
        import yaml

        try:
            raw = yaml.safe_load(Path(args.space).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise TuningError(f"{args.space}: {exc}") from None
        base = parse_space(raw, args.space)
    declared = [parse_parameter(text) for text in args.param]
    paths = [p.path for p in declared]
    twice = sorted({path for path in paths if paths.count(path) > 1})
    if twice:
        raise TuningError(f"--param {twice[0]}: given twice; one range per field")
    if base is None:
        base = TuningSpace(tuple(declared)) if declared else default_space(policy, replica_slots=slots)
    elif declared:
        mine = {p.path for p in declared}
        base = dataclasses.replace(base, parameters=tuple(declared) + tuple(
            p for p in base.parameters if p.path not in mine))
    changes: dict[str, Any] = {}
    if args.objective:
        changes["objective"] = args.objective
    if args.target_attainment:
        text = args.target_attainment
        changes["target_attainment"] = text if text in ("policy", "baselines") else _fraction(text)
    return dataclasses.replace(base, **changes)


def _fraction(text: str) -> float:
    from autoscaler.tune.space import TuningError

    try:
        value = float(text)
    except ValueError:
        raise TuningError(f"--target-attainment = {text!r}: must be a fraction (0.99), policy or baselines") from None
    if not 0 < value <= 1:
        raise TuningError(f"--target-attainment = {text!r}: must be in (0, 1] (0.99 is 99%)")
    return value


def _traffic(args: argparse.Namespace, scenario: Any, policy: Any) -> Any:
    """The trace to tune on: recorded history, a file, or the scenario's."""
    import numpy as np

    from autoscaler.sim.scenario import load_trace
    from autoscaler.sim.trace import TokenDistribution
    from autoscaler.tune.space import TuningError

    if args.prometheus:
        from autoscaler.commands.backtest import parse_time
        from autoscaler.prometheus import PrometheusClient
        from autoscaler.tune.history import history_trace

        if not args.start:
            raise TuningError("--prometheus needs --from (and optionally --to): the history to tune on")
        now = time.time()
        try:
            start, end = parse_time(args.start, now=now), parse_time(args.end, now=now)
        except argparse.ArgumentTypeError as exc:
            raise TuningError(f"--from/--to: {exc}") from None
        if args.trace:
            raise TuningError("--trace and --prometheus: give one source of traffic")

        def shape(key: str, default: TokenDistribution) -> TokenDistribution:
            raw = scenario.trace.get(key)
            return TokenDistribution.parse(raw, f"{scenario.source}: spec.trace.{key}") if raw else default

        async def read() -> Any:
            async with PrometheusClient(prometheus_config(args)) as client:
                return await history_trace(
                    _PromRanges(client), policy, start_s=start, end_s=end, step_s=args.step, window=args.window,
                    rng=np.random.default_rng([scenario.seed, 0]),
                    tokens_in=shape("inputTokens", TokenDistribution(median=1000, p95=4000)),
                    tokens_out=shape("outputTokens", TokenDistribution(median=200, p95=800)))

        history = asyncio.run(read())
        print(f"history: {history.steps} steps of {args.step:g} s, {len(history.trace):,} requests "
              f"(mean {history.mean_rate_per_s:.2f}/s)", file=sys.stderr)
        return history.trace
    if args.trace:  # the file as it is (the scenario's scaling was chosen for its own trace), with the
        # scenario's token shapes (a ServeGen trace draws its lengths from them)
        shapes = {k: v for k, v in scenario.trace.items() if k in ("inputTokens", "outputTokens")}
        scenario = dataclasses.replace(scenario, trace={**shapes, "path": str(Path(args.trace).resolve()),
                                                        "format": args.format},
                                       time_scale=1.0, rate_scale=1.0, duration_s=None)
    return load_trace(scenario)


def run_tune(args: argparse.Namespace) -> int:
    require_extra("tune", "numba", "matplotlib", "optuna", *(("ray",) if args.ray_address else ()))
    if Path(args.out).exists() and not Path(args.out).is_dir():  # before a search of minutes, not after
        raise InputError(f"--out {args.out}: exists and is not a folder")
    from autoscaler.sim.run import Slo
    from autoscaler.sim.scenario import Baseline, PolicyRef, load_policy_ref, load_scenario
    from autoscaler.tune.candidates import CandidateBuilder
    from autoscaler.tune.driver import TuneRequest, tune
    from autoscaler.tune.evaluate import SimContext
    from autoscaler.tune.executors import LocalExecutor, RayExecutor
    from autoscaler.tune.output import summary, write_outputs
    from autoscaler.tune.space import TuningError
    from autoscaler.tune.split import parse_duration

    for flag, value in (("--trials", args.trials), ("--batch", args.batch), ("--seeds", args.seeds)):
        if value < 1:
            raise TuningError(f"{flag} = {value}: must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise TuningError(f"--workers = {args.workers}: must be at least 1")
    scenario = load_scenario(args.scenario)
    item = load_policy_ref(PolicyRef(Path(args.policy), Path(args.root) if args.root else None, args.name))
    if isinstance(item, Baseline):
        raise TuningError(f"{args.policy}: is a SimulationBaseline; tune takes a ScalingPolicy")
    policy = item
    baselines = []
    refs = [PolicyRef(Path(p)) for p in args.baseline] if args.baseline else list(scenario.policies)
    for ref in refs:
        loaded = load_policy_ref(ref)
        if isinstance(loaded, Baseline):
            baselines.append(loaded)
        elif args.baseline:
            raise TuningError(f"--baseline {ref.path}: is a ScalingPolicy, not a SimulationBaseline")
    space = _space(args, policy, scenario.fleet.max_concurrency)
    slo = scenario.slo
    if policy.slo is not None and policy.slo.objective.value in ("ttft", "e2e"):
        slo = Slo(policy.slo.bound_s, policy.slo.objective.value)  # the policy's own objective is what it must meet
    trace = _traffic(args, scenario, policy)
    folds = None if args.folds == "auto" else _int(args.folds, "--folds")
    holdout = parse_duration(args.holdout, total_s=trace.duration_s) if args.holdout else None
    context = SimContext(trace, scenario.fleet, scenario.pipeline, slo, scenario.seed, drain_s=scenario.drain_s,
                         warm_start=scenario.warm_start, warm_window_s=scenario.warm_window_s)
    request = TuneRequest(policy, space, context, tuple(baselines), holdout_s=holdout, folds=folds,
                          trials=args.trials, batch=args.batch, seed=args.seed, seeds=args.seeds,
                          explain=not args.no_explain, frontier_points=args.frontier_points)
    executor: Any = RayExecutor(args.ray_address) if args.ray_address else LocalExecutor(args.workers)
    with executor:
        result = tune(request, executor, progress=sys.stderr)
    original_path = Path(args.policy)
    with CandidateBuilder(policy, space) as builder:
        written = write_outputs(Path(args.out), result, original=original_path.read_text(encoding="utf-8"),
                                original_name=str(original_path), builder=builder, plots=not args.no_plots)
    print(summary(result))
    print(f"wrote {', '.join(str(p) for p in written)}")
    return Exit.OK


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{flag} = {text!r}: must be a whole number or auto") from None
