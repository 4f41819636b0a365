"""The ``inference-autoscaler`` command. Each subcommand lives in ``autoscaler/commands/<name>.py``
and exposes ``register(subparsers)``; its heavy imports happen only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from autoscaler import __version__

# Subcommand modules under autoscaler.commands, in the order `--help` lists them.
COMMANDS = ("validate", "replay", "schema", "signals", "run", "serve_metrics", "simulate", "backtest")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-autoscaler",
        description="Kubernetes-native autoscaler for GPU/LLM inference.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"autoscaler.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except BrokenPipeError:  # `... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
