"""Flags shared by the commands that read Prometheus (``signals``, ``run``, ``serve-metrics``, ``backtest``)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["add_prometheus_arguments", "prometheus_config", "run_service", "signal_settings"]


def add_prometheus_arguments(parser: Any, *, required: bool = True) -> None:
    group = parser.add_argument_group("Prometheus")
    group.add_argument(
        "--prometheus",
        required=required,
        metavar="URL",
        help="Prometheus-compatible base URL (Prometheus, Thanos Query, Mimir, VictoriaMetrics)",
    )
    group.add_argument("--bearer-token-file", metavar="FILE", help="send the bearer token in this file")
    group.add_argument(
        "--basic-auth", metavar="USER:PASSWORD_FILE", help="basic auth; the password is read from a file"
    )
    group.add_argument("--ca-file", metavar="PEM", help="CA bundle to verify the server")
    group.add_argument("--tenant", metavar="ID", help="sent as X-Scope-OrgID (Mimir, Cortex, Thanos)")
    group.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="per request (default 5)")
    group.add_argument(
        "--scrape-interval",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="the exporters' scrape interval (default 15); staleness is 3x this",
    )
    group.add_argument("--staleness", type=float, metavar="SECONDS", help="staleness bound (overrides 3x scrape)")
    group.add_argument("--window", default="1m", help="rate window for counters and histograms (default 1m)")


def prometheus_config(args: argparse.Namespace) -> Any:
    from autoscaler.prometheus import PrometheusConfig

    basic: tuple[str, str] | None = None
    if args.basic_auth:
        user, _, password_file = args.basic_auth.partition(":")
        with open(password_file, encoding="utf-8") as handle:
            basic = (user, handle.read().strip())
    return PrometheusConfig(
        url=args.prometheus,
        timeout_s=args.timeout,
        bearer_token_file=args.bearer_token_file,
        basic_auth=basic,
        ca_file=args.ca_file,
        tenant=args.tenant,
    )


def signal_settings(args: argparse.Namespace) -> Any:
    from autoscaler.signals import SignalSettings

    return SignalSettings(scrape_interval_s=args.scrape_interval, staleness_s=args.staleness, window=args.window)


def run_service(serve: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace) -> int:
    """Run a long-lived async command with JSON logs; Ctrl-C exits 130 (SIGTERM is the command's own)."""
    from autoscaler.service.telemetry import configure_logging

    configure_logging(args.log_level)
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 130
