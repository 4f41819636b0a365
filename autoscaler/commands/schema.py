"""``inference-autoscaler schema``: print the JSON Schema of policy files (for yaml-language-server),
or with ``--kind`` of simulation scenarios and baselines, or with ``--crd`` the ScalingPolicy and
PolicyDefaults CustomResourceDefinitions (YAML, generated from the same schema)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from autoscaler.commands.common import Exit
from autoscaler.policy.documents import document_json_schema

KINDS = ("ScalingPolicy", "Simulation", "SimulationBaseline")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("schema", help="print the policy files' JSON Schema", description=__doc__)
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="ScalingPolicy",
        help="which file format (default ScalingPolicy: policy and PolicyDefaults documents)",
    )
    parser.add_argument(
        "--crd",
        action="store_true",
        help="print the CustomResourceDefinitions of ScalingPolicy and PolicyDefaults (YAML) instead",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kind = getattr(args, "kind", "ScalingPolicy")
    if getattr(args, "crd", False):
        from autoscaler.policy.crd import crd_documents, crd_yaml

        print("---\n".join(crd_yaml(crd) for crd in crd_documents().values()), end="")
        return Exit.OK
    if kind == "ScalingPolicy":
        schema = document_json_schema()
    else:  # the simulator's formats: imported only when asked for (the sim extra)
        from autoscaler.policy.schema import json_schema
        from autoscaler.sim.documents import BASELINE, SIMULATION

        schema = json_schema(SIMULATION if kind == "Simulation" else BASELINE)
    print(json.dumps(schema, indent=2))
    return Exit.OK
