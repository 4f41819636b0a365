"""``inference-autoscaler validate PATH...``: check policy files; exit 1 (:attr:`Exit.INVALID`) with one
line per error."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from autoscaler.commands.common import Exit
from autoscaler.policy import load_policies, policy_to_document


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("validate", help="validate policy files", description=__doc__)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="policy files or directories")
    parser.add_argument(
        "--show-effective",
        action="store_true",
        help="print each valid policy with its defaults layered in and every default filled",
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="the policy tree's root: layer in the PolicyDefaults of every folder from DIR down to each PATH",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    result = load_policies(args.paths, root=args.root)
    if args.show_effective:
        docs = [policy_to_document(p) for p in result.policies]
        sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True))
    for error in result.errors:
        print(error, file=sys.stderr if args.show_effective else sys.stdout)
    if not args.quiet and not args.show_effective:
        state = "invalid" if result.errors else "valid"
        print(
            f"{len(result.policies)} policies loaded from {len(result.files)} files; "
            f"{len(result.errors)} errors: {state}",
            file=sys.stderr,
        )
    return Exit.INVALID if result.errors else Exit.OK
