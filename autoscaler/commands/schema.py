"""``inference-autoscaler schema``: print the JSON Schema of policy files (for yaml-language-server)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from autoscaler.commands.common import Exit
from autoscaler.policy.documents import document_json_schema


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("schema", help="print the policy files' JSON Schema", description=__doc__)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(document_json_schema(), indent=2))
    return Exit.OK
