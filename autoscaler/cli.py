"""The ``inference-autoscaler`` command. Each subcommand lives in ``autoscaler/commands/<name>.py``
and exposes ``register(subparsers)``; its heavy imports happen only when it runs.

An :class:`~autoscaler.errors.AutoscalerError` that ends a command is printed as its one-line message
(no traceback) and exits with its kind's status (:class:`~autoscaler.commands.common.Exit`).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

from autoscaler import __version__
from autoscaler.commands.common import EXIT_STATUS_HELP, Exit, exit_code
from autoscaler.errors import AutoscalerError

# Subcommand modules under autoscaler.commands, in the order `--help` lists them.
COMMANDS = (
    "validate",
    "replay",
    "schema",
    "signals",
    "run",
    "serve_metrics",
    "simulate",
    "backtest",
    "tune",
    "convert",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-autoscaler",
        description="Kubernetes-native autoscaler for GPU/LLM inference.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"autoscaler.commands.{name}")
        module.register(subparsers)
    return parser


# Options whose value may start with "-" (a relative time such as -24h): argparse would take the value
# for an option and answer "expected one argument", so `--from -24h` becomes `--from=-24h` first.
DASHED_VALUES = frozenset({"--from", "--to"})


RELATIVE_TIME = re.compile(r"^-\d+(?:\.\d+)?[smhd]$")


def _join_dashed_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in DASHED_VALUES and i + 1 < len(argv) and RELATIVE_TIME.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_dashed_values(sys.argv[1:] if argv is None else argv))  # usage error: exit 2
    try:
        code: int = args.run(args)
    except BrokenPipeError:  # `... | head` closed the pipe: not an error
        sys.stderr.close()
        return Exit.OK
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except AutoscalerError as error:
        sys.stdout.flush()  # what was printed before the error comes first
        print(error, file=sys.stderr)
        return exit_code(error)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
