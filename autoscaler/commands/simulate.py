"""``inference-autoscaler simulate``: replay a request trace through policies and compare them.

Writes ``report.json``, ``summary.md`` and PNG plots to ``--out`` and prints the summary table. An
invalid scenario, trace or policy ends it with :attr:`Exit.INVALID`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from autoscaler.commands.common import Exit


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate", help="replay a trace through policies and compare them", description=__doc__
    )
    parser.add_argument("--scenario", required=True, metavar="FILE", help="a kind: Simulation YAML file")
    parser.add_argument("--out", required=True, metavar="DIR", help="where report.json, summary.md and plots go")
    parser.add_argument("--trace", metavar="FILE", help="override the scenario's trace file")
    parser.add_argument("--format", choices=("azure", "mooncake", "servegen", "csv"), help="format of --trace")
    parser.add_argument(
        "--policy",
        action="append",
        metavar="FILE",
        help="a policy or baseline file (repeatable); replaces the scenario's list",
    )
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="simulate only the first SECONDS")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autoscaler.sim.compare import compare
    from autoscaler.sim.report import summary_table, write_report
    from autoscaler.sim.scenario import PolicyRef, load_scenario

    scenario = load_scenario(args.scenario)
    changes: dict[str, Any] = {}
    if args.trace:
        changes["trace"] = {"path": str(Path(args.trace).resolve()), "format": args.format or "csv"}
    if args.policy:
        changes["policies"] = tuple(PolicyRef(Path(p).resolve()) for p in args.policy)
    if args.duration:
        changes["duration_s"] = args.duration
    if args.seed is not None:
        changes["seed"] = args.seed
    scenario = dataclasses.replace(scenario, **changes)
    comparison = compare(scenario)
    out = Path(args.out)
    written = write_report(
        out,
        scenario=scenario.name,
        seed=scenario.seed,
        slo=scenario.slo,
        results=comparison.results,
        demand_t=comparison.demand_t,
        demand_replicas=comparison.demand_replicas,
        plots=not args.no_plots,
    )
    print(summary_table(comparison.results))
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return Exit.OK
