"""``inference-autoscaler serve-metrics``: the external-metrics API (and the KEDA endpoint) alone.

Runs the controller in dry run (it reads Prometheus and the targets' scale, never writes anything)
and serves each policy's latest decision and metric values over HTTPS, for an HPA (or KEDA) to act
on. Stops gracefully on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from autoscaler.commands.common import (
    Exit,
    add_prometheus_arguments,
    connect_kube,
    prometheus_config,
    run_service,
    signal_settings,
    start_listening,
)

log = logging.getLogger("autoscaler.serve_metrics")


def register(subparsers: Any) -> None:
    from autoscaler.metrics_api.options import add_secure_serving_arguments

    parser = subparsers.add_parser(
        "serve-metrics", help="serve decisions through external.metrics.k8s.io (dry run)", description=__doc__
    )
    parser.add_argument("--policies", required=True, metavar="DIR", help="policy directory (a mounted ConfigMap)")
    add_prometheus_arguments(parser)
    kube = parser.add_argument_group("Kubernetes (read only: scale and pods of the targets)")
    kube.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster service account)")
    kube.add_argument("--context", help="kubeconfig context")
    kube.add_argument(
        "--namespaces", default="", metavar="NS[,NS...]", help="only serve policies in these namespaces (default: all)"
    )
    add_secure_serving_arguments(parser)
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_service(serve, args)


async def serve(args: argparse.Namespace, *, stop: asyncio.Event | None = None) -> int:
    """The command's body; tests pass their own ``stop``."""
    from autoscaler.commands.run import supervise
    from autoscaler.metrics_api.options import build_metrics_server
    from autoscaler.prometheus import PrometheusClient
    from autoscaler.service.actuator import KubeActuator
    from autoscaler.service.controller import Controller, ControllerSettings
    from autoscaler.service.history import PrometheusHistory
    from autoscaler.service.kube import KubeClient, KubeConfig
    from autoscaler.service.policies import PolicyDirectory
    from autoscaler.service.telemetry import Telemetry
    from autoscaler.signals import FleetReader

    try:
        kube = KubeClient(KubeConfig.load(args.kubeconfig, context=args.context))
    except Exception as exc:
        log.error("cannot load Kubernetes configuration: %s", exc)
        return Exit.USAGE
    prometheus = PrometheusClient(prometheus_config(args))
    controller = Controller(
        policies=PolicyDirectory(args.policies, namespaces=[n for n in args.namespaces.split(",") if n]),
        signals=FleetReader(prometheus, signal_settings(args)),
        actuator=KubeActuator(kube),
        telemetry=Telemetry(),
        history=PrometheusHistory(prometheus, window=args.window),  # predictive decisions from the start
        settings=ControllerSettings(dry_run=True),
    )
    try:
        parts = build_metrics_server(
            args, lambda: controller.published, connect_kube=connect_kube, ready=lambda: controller.started
        )
    except (ValueError, OSError) as exc:
        log.error("cannot configure the metrics API: %s", exc)
        await prometheus.close()
        await kube.close()
        return Exit.USAGE
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    closers = (parts.close, prometheus.close, kube.close)
    if not await start_listening(parts.server.start, "--secure-port", args.secure_port, log, closers):
        return Exit.USAGE
    tasks = [
        asyncio.create_task(controller.run(stop), name="control loop"),
        asyncio.create_task(parts.server.refresh_loop(stop), name="metrics API refresh"),
    ]
    code = Exit.OK
    try:
        code = await supervise(stop, tasks)  # a dead loop ends the process: it must not look healthy
    finally:
        await parts.close()
        await prometheus.close()
        await kube.close()
        log.info("stopped")
    return code
