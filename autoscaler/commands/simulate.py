"""``inference-autoscaler simulate``: replay a request trace through policies and compare them.

Give a scenario (``--scenario``, a ``kind: Simulation`` file), or just a trace and the policies to
compare (``--trace T --policy P ...``: the simulator's default fleet, SLO and metrics pipeline; see
``inference-autoscaler schema --kind Simulation`` for them). With both, ``--trace`` replaces the
scenario's trace *and* its scaling (``timeScale``, ``rateScale``, ``durationSeconds`` were chosen for
the scenario's own trace, not yours); ``--keep-scaling`` keeps them, ``--time-scale``/``--rate-scale``
set them. Every transformation applied to the trace is printed with the resulting request count.

Writes ``report.json``, ``summary.md`` and PNG plots to ``--out`` and prints the summary table. An
invalid scenario, trace or policy ends it with :attr:`Exit.INVALID`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from autoscaler.commands.common import Exit, require_extra
from autoscaler.core.policy import API_VERSION
from autoscaler.errors import InputError

FORMATS = ("azure", "mooncake", "servegen", "csv")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate", help="replay a trace through policies and compare them", description=__doc__
    )
    parser.add_argument("--scenario", metavar="FILE", help="a kind: Simulation YAML file")
    parser.add_argument("--out", required=True, metavar="DIR", help="where report.json, summary.md and plots go")
    parser.add_argument("--trace", metavar="FILE", help="a trace file (or ServeGen folder): replaces the scenario's")
    parser.add_argument("--format", choices=FORMATS, help="format of --trace (default: from its name, else csv)")
    parser.add_argument(
        "--policy",
        action="append",
        metavar="FILE",
        help="a policy or baseline file (repeatable); replaces the scenario's list",
    )
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="simulate only the first SECONDS")
    parser.add_argument("--time-scale", type=float, metavar="X", help="stretch the trace's arrival times by X")
    parser.add_argument("--rate-scale", type=float, metavar="X", help="thin (< 1) or replicate (> 1) arrivals")
    parser.add_argument(
        "--keep-scaling",
        action="store_true",
        help="with --trace: keep the scenario's timeScale, rateScale and durationSeconds for the new trace",
    )
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(run=run)


def _format_of(path: str, given: str | None) -> str:
    if given:
        return given
    name = Path(path).name.lower()
    if Path(path).is_dir() or name.startswith("chunk-"):
        return "servegen"
    if name.endswith(".jsonl"):
        return "mooncake"
    if "azure" in name:
        return "azure"
    return "csv"


def _scenario(args: argparse.Namespace) -> Any:
    from autoscaler.policy.schema import Obj, check
    from autoscaler.sim.documents import SIMULATION
    from autoscaler.sim.scenario import PolicyRef, load_scenario, scenario_from_document

    if args.scenario is None:
        if not args.trace or not args.policy:
            raise InputError("simulate: give --scenario FILE, or --trace FILE with at least one --policy FILE")
        if args.keep_scaling:
            raise InputError("simulate: --keep-scaling keeps a scenario's scaling: it needs --scenario")
    if args.format and not args.trace:
        raise InputError("simulate: --format is the format of --trace: it needs --trace")
    if args.scenario is None:
        here = Path.cwd() / "simulate"
        document = {
            "apiVersion": API_VERSION,
            "kind": "Simulation",
            "metadata": {"name": Path(args.trace).resolve().stem or "trace"},
            "spec": {
                "trace": {"path": str(Path(args.trace).resolve()), "format": _format_of(args.trace, args.format)},
                "policies": [str(Path(p).resolve()) for p in args.policy],
            },
        }
        scenario = scenario_from_document(document, here, shown="simulate (command line)")
    else:
        scenario = load_scenario(args.scenario)
    changes: dict[str, Any] = {}
    if args.trace and args.scenario is not None:
        changes["trace"] = {
            **{k: v for k, v in scenario.trace.items() if k in ("inputTokens", "outputTokens")},
            "path": str(Path(args.trace).resolve()),
            "format": _format_of(args.trace, args.format),
        }
        if not args.keep_scaling:
            changes.update(time_scale=1.0, rate_scale=1.0, duration_s=None)
    if args.policy:
        changes["policies"] = tuple(PolicyRef(Path(p).resolve()) for p in args.policy)
    spec = SIMULATION.fields["spec"]
    assert isinstance(spec, Obj)
    for key, value, flag, field in (
        ("duration_s", args.duration, "--duration", "durationSeconds"),
        ("time_scale", args.time_scale, "--time-scale", "timeScale"),
        ("rate_scale", args.rate_scale, "--rate-scale", "rateScale"),
        ("seed", args.seed, "--seed", "seed"),
    ):
        if value is not None:
            issues = check(spec.fields[field], value)  # the bounds a scenario file gets
            if issues:
                raise InputError(f"simulate: {flag} {value}: {issues[0].message}")
            changes[key] = value
    return dataclasses.replace(scenario, **changes)


def run(args: argparse.Namespace) -> int:
    require_extra("sim", "numba", "matplotlib")
    from autoscaler.sim.compare import compare
    from autoscaler.sim.report import summary_table, write_report

    scenario = _scenario(args)
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
