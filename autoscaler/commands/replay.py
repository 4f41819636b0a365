"""``inference-autoscaler replay``: run the core over an observation file, one JSON decision per line.

An invalid policy or observation line ends it with :attr:`Exit.INVALID` (the decisions before the bad
line are printed first)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from autoscaler.commands.common import Exit
from autoscaler.policy import load_policy_file
from autoscaler.replay import decision_record, parse_observations, replay


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("replay", help="replay observations through the decision core", description=__doc__)
    parser.add_argument("--policy", required=True, metavar="FILE", help="policy file")
    parser.add_argument("--name", help="policy name, when the file holds several")
    parser.add_argument("--root", metavar="DIR", help="the policy tree's root, whose folders' defaults apply")
    parser.add_argument("--observations", required=True, metavar="FILE.jsonl", help="observations, or - for stdin")
    parser.add_argument("--explain", action="store_true", help="add the pipeline's steps to each line")
    parser.add_argument(
        "--output",
        choices=("json", "table"),
        default="json",
        help="json: one JSON object per tick (default); table: aligned columns for people",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = load_policy_file(args.policy, args.name, root=args.root)
    source = "<stdin>" if args.observations == "-" else args.observations
    try:
        stream = sys.stdin if args.observations == "-" else open(args.observations, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        print(f"{source}: {exc.strerror}", file=sys.stderr)
        return Exit.INVALID
    with stream:
        if args.output == "table":
            names = [m.name for m in policy.metrics]
            header = ["time", "current", "ready", *names, "desired", "reason"]
            print(
                f"policy {policy.key} ({policy.source}): {policy.target.kind}/{policy.target.name}, "
                f"replicas {policy.min_replicas}..{policy.max_replicas}"
            )
            print("  ".join(f"{h:>9}" for h in header[:-1]) + "  reason / message")
        for item, decision, _ in replay(parse_observations(stream, policy, source), policy):
            if args.output == "table":
                obs = item.reading
                cells = [f"{item.time_s:9.0f}", f"{obs.spec_replicas:9d}", f"{obs.ready_replicas:9d}"]
                for name in names:
                    value = obs.reading(name).value
                    cells.append(f"{'-' if value is None else format(value, '.4g'):>9}")
                cells.append(f"{decision.desired_replicas:9d}")
                sys.stdout.write("  ".join(cells) + f"  {decision.reason.value}: {decision.message}\n")
                continue
            record = decision_record(item.time_s, decision)
            if args.explain:
                record["steps"] = [
                    {"step": s.step, "before": s.before, "after": s.after, "note": s.note} for s in decision.steps
                ]
            sys.stdout.write(json.dumps(record) + "\n")
    return Exit.OK
