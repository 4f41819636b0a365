"""``inference-autoscaler signals --policies DIR --prometheus URL``: each policy's current metric values,
or why each is unavailable, read exactly as the controller reads them (batched fleet queries).

JSON shape: ``{"<namespace>/<policy>": {"<metric>": <number or null>, "_unavailable": {"<metric>": "<reason>"}}}``
where a reason reads ``<missing|nan|stale|error>: <detail>``. Exit status: 0 when every metric has a
value, 3 (:attr:`Exit.UNAVAILABLE`) when some are unavailable, 1 (:attr:`Exit.INVALID`) when some
policies do not load (the others are still read).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from autoscaler.commands.common import Exit, add_prometheus_arguments, prometheus_config, signal_settings
from autoscaler.core.model import MetricReading


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "signals", help="print each policy's current signals from Prometheus", description=__doc__
    )
    parser.add_argument(
        "--policies", required=True, action="append", metavar="DIR", help="policy files or directories (repeatable)"
    )
    parser.add_argument("--root", metavar="DIR", help="policy tree root for PolicyDefaults layering")
    parser.add_argument("--output", choices=("json", "table"), default="table")
    add_prometheus_arguments(parser)
    parser.set_defaults(run=run)


def reason_text(reading: MetricReading) -> str:
    reason = reading.unavailable.value if reading.unavailable is not None else "missing"
    return f"{reason}: {reading.detail}" if reading.detail else reason


def run(args: argparse.Namespace) -> int:
    from autoscaler.policy import load_policies

    loaded = load_policies(args.policies, root=args.root)
    for error in loaded.errors:
        print(error, file=sys.stderr)
    if loaded.errors and not loaded.policies:
        return Exit.INVALID
    report = asyncio.run(_read(args, loaded.policies))
    if args.output == "json":
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_table(report)
    unavailable = any(entry["_unavailable"] for entry in report.values())
    return Exit.INVALID if loaded.errors else (Exit.UNAVAILABLE if unavailable else Exit.OK)


async def _read(args: argparse.Namespace, policies: Any) -> dict[str, dict[str, Any]]:
    from autoscaler.prometheus import PrometheusClient
    from autoscaler.signals import FleetReader

    config, settings = prometheus_config(args), signal_settings(args)
    async with PrometheusClient(config) as client:
        signals = await FleetReader(client, settings).read(policies)
    report: dict[str, dict[str, Any]] = {}
    for policy in policies:
        entry: dict[str, Any] = {}
        unavailable: dict[str, str] = {}
        for spec in policy.signals:
            reading = signals.for_policy(policy)[spec.name]
            entry[spec.name] = reading.value
            if reading.value is None:
                unavailable[spec.name] = reason_text(reading)
        entry["_unavailable"] = unavailable
        report[policy.key] = entry
    return report


def _print_table(report: dict[str, dict[str, Any]]) -> None:
    rows = [("POLICY", "METRIC", "VALUE", "WHY UNAVAILABLE")]
    for key, entry in report.items():
        for metric, value in entry.items():
            if metric == "_unavailable":
                continue
            shown = "-" if value is None else f"{value:.6g}"
            rows.append((key, metric, shown, entry["_unavailable"].get(metric, "")))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
