"""``inference-autoscaler run``: the in-cluster service (control loop, leader election, metrics, health).

With ``--shards N`` (N > 1) the policies are split into N shards by a stable hash of their target, each
shard with its own Lease, and each replica ticks the shards it holds (:mod:`autoscaler.service.shards`).

It also serves the external-metrics API (and the KEDA endpoint) over HTTPS when ``--secure-port`` is
given or when any policy uses ``mode: external`` at start (then on port 6443).

In a cluster it uses the pod's service account; outside, ``--kubeconfig``. It stops gracefully on
SIGTERM/SIGINT: the tick in progress finishes, the lease is released, then it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from autoscaler.commands.common import (
    Exit,
    add_prometheus_arguments,
    connect_kube,
    listen_address,
    prometheus_config,
    run_service,
    signal_settings,
    start_listening,
)
from autoscaler.errors import ConfigurationError

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
log = logging.getLogger("autoscaler.run")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("run", help="run the autoscaler service", description=__doc__)
    parser.add_argument("--policies", metavar="DIR", help="policy directory (a mounted ConfigMap)")
    parser.add_argument(
        "--policy-objects",
        action="store_true",
        help="also serve ScalingPolicy and PolicyDefaults objects (list+watch; the CRDs must be installed); "
        "with or without --policies, one of them is required",
    )
    add_prometheus_arguments(parser)
    kube = parser.add_argument_group("Kubernetes")
    kube.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster service account)")
    kube.add_argument("--context", help="kubeconfig context")
    kube.add_argument(
        "--namespace",
        help="the autoscaler's own namespace, for its Lease and state ConfigMap "
        "(default: POD_NAMESPACE, the service account's namespace, or default)",
    )
    kube.add_argument(
        "--namespaces", default="", metavar="NS[,NS...]", help="only act on policies in these namespaces (default: all)"
    )
    kube.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or socket.gethostname(),
        help="leader-election identity (default: POD_NAME or the hostname)",
    )
    kube.add_argument("--lease-name", default="inference-autoscaler", help="Lease (and state ConfigMap prefix)")
    kube.add_argument(
        "--shards",
        type=_shard_count,
        default=1,
        metavar="N",
        help="split the policies into N shards, each with its own Lease <lease-name>-shard-<i>, held by any "
        "replica (default: %(default)s: one Lease, one leader)",
    )
    # Lease timing (client-go's defaults); hidden: tests shorten them, operators rarely should.
    kube.add_argument("--lease-duration", type=_seconds, default=15.0, help=argparse.SUPPRESS)
    kube.add_argument("--renew-deadline", type=_seconds, default=10.0, help=argparse.SUPPRESS)
    kube.add_argument("--retry-period", type=_seconds, default=2.0, help=argparse.SUPPRESS)
    kube.add_argument(
        "--no-leader-elect",
        dest="leader_elect",
        action="store_false",
        help="act as leader without a Lease (one replica only)",
    )
    kube.add_argument(
        "--no-watch-cache",
        dest="watch_cache",
        action="store_false",
        help="read each target's scale, pods and HPAs from the API at every tick instead of from watched caches "
        "(more API load; for clusters where the service may not list/watch)",
    )
    parser.add_argument("--dry-run", action="store_true", help="decide and report; never write to the cluster")
    parser.add_argument("--listen", default="0.0.0.0:8080", metavar="HOST:PORT", help="/metrics, /healthz, /readyz")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    from autoscaler.metrics_api.options import add_secure_serving_arguments

    add_secure_serving_arguments(parser, default_port=None)
    parser.set_defaults(run=run)


def _shard_count(text: str) -> int:
    from autoscaler.service.shards import MAX_SHARDS

    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= count <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"{count} is not between 1 and {MAX_SHARDS}")
    return count


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0 and 3600 seconds")
    return value


def _bounded_attempts(config: Any, args: argparse.Namespace) -> Any:
    """With shards, every request attempt ends within ``0.8 x (lease duration - renew deadline)``: a
    shard's holder stops starting writes at its renew deadline, so its last write ends before anyone
    may take the shard over on expiry (and a shard given back waits only that long for its writes)."""
    from dataclasses import replace

    bound = 0.8 * (args.lease_duration - args.renew_deadline)
    if bound <= 0 or config.timeout_s <= bound:
        return config
    log.info("Kubernetes request timeout %.1f s with shards (was %.1f s)", bound, config.timeout_s)
    return replace(config, timeout_s=bound)


def _lease_settings(args: argparse.Namespace, namespace: str) -> Any:
    """The Lease settings from the flags; ``ValueError`` naming the flags when their order is wrong."""
    from autoscaler.service.leader import LeaseSettings

    if not args.retry_period < args.renew_deadline < args.lease_duration:
        raise ValueError(
            f"--retry-period ({args.retry_period:g}) < --renew-deadline ({args.renew_deadline:g}) < "
            f"--lease-duration ({args.lease_duration:g}) is required"
        )
    if args.lease_duration != int(args.lease_duration):
        raise ValueError(f"--lease-duration = {args.lease_duration:g}: whole seconds (a Lease field)")
    return LeaseSettings(
        namespace=namespace,
        name=args.lease_name,
        identity=args.identity,
        lease_duration_s=args.lease_duration,
        renew_deadline_s=args.renew_deadline,
        retry_period_s=args.retry_period,
    )


def _own_namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SA_NAMESPACE.exists():
        return SA_NAMESPACE.read_text().strip()
    return "default"


def run(args: argparse.Namespace) -> int:
    return run_service(_serve, args)


async def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from autoscaler.core.policy import Mode
    from autoscaler.prometheus import PrometheusClient
    from autoscaler.service.actuator import KubeActuator
    from autoscaler.service.cluster import WatchedCluster
    from autoscaler.service.controller import Controller, ControllerSettings
    from autoscaler.service.history import PrometheusHistory
    from autoscaler.service.kube import KubeClient, KubeConfig
    from autoscaler.service.leader import LeaseElector
    from autoscaler.service.policies import PolicyDirectory, PolicyObjects
    from autoscaler.service.shards import ShardedStateStore, ShardSet, SingleLeaseFence
    from autoscaler.service.state import ConfigMapStateStore, StateStore
    from autoscaler.service.telemetry import Telemetry, health_app
    from autoscaler.signals import FleetReader

    namespace = _own_namespace(args)
    telemetry = Telemetry()
    try:
        kube_config = KubeConfig.load(args.kubeconfig, context=args.context)
    except Exception as exc:
        log.error("cannot load Kubernetes configuration: %s", exc)
        return Exit.USAGE
    if args.shards > 1 and args.leader_elect and not args.dry_run:
        kube_config = _bounded_attempts(kube_config, args)
    kube = KubeClient(kube_config, observe=telemetry.observe_kube)
    if args.policies is None and not args.policy_objects:
        log.error("no policies: give --policies DIR, --policy-objects, or both")
        await kube.close()
        return Exit.USAGE
    if args.policies is not None and (
        not os.path.isdir(args.policies) or not os.access(args.policies, os.R_OK | os.X_OK)
    ):
        log.error("--policies %s: not a readable directory", args.policies)
        await kube.close()
        return Exit.USAGE
    allowed = [n for n in args.namespaces.split(",") if n]
    objects = PolicyObjects(kube, namespaces=allowed) if args.policy_objects else None
    policies = PolicyDirectory(args.policies, namespaces=allowed, objects=objects)
    cluster = WatchedCluster(kube, namespaces=allowed) if args.watch_cache else None
    elector: LeaseElector | ShardSet | None = None
    store: StateStore = ConfigMapStateStore(kube, namespace=namespace, name=f"{args.lease_name}-state")
    try:
        lease = _lease_settings(args, namespace)
        if args.shards > 1 and not args.leader_elect:
            raise ValueError(f"--shards {args.shards} needs leader election: drop --no-leader-elect")
        if args.leader_elect and not args.dry_run and args.shards > 1:  # a dry run never competes for leases
            elector = ShardSet(kube, lease, args.shards, telemetry=telemetry)
            store = ShardedStateStore(kube, namespace=namespace, name=args.lease_name, shards=elector)
        elif args.leader_elect and not args.dry_run:
            telemetry.shards.set(1)
            elector = LeaseElector(
                kube,
                lease,
                on_change=lambda leading: telemetry.leader.set(1 if leading else 0),
                fence=SingleLeaseFence(kube, lease, telemetry=telemetry),  # never next to replicas with shards
            )
    except ValueError as exc:
        log.error("%s", exc)
        await kube.close()
        return Exit.USAGE
    prometheus = PrometheusClient(prometheus_config(args))
    controller = Controller(
        policies=policies,
        signals=FleetReader(prometheus, signal_settings(args)),
        actuator=KubeActuator(kube, cache=cluster),
        telemetry=telemetry,
        store=store,
        leadership=elector,
        history=PrometheusHistory(prometheus, window=args.window),  # warm start of the forecasts
        settings=ControllerSettings(dry_run=args.dry_run),
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def alive() -> bool:
        import time

        last = controller.last_tick_s
        return last is None or time.time() - last < 120

    metrics_api = None
    # parsing never blocks the loop (probes, the lease); the objects' caches have not listed yet
    loaded = await asyncio.to_thread(policies.reload, objects=None)
    if args.secure_port is not None or any(p.mode is Mode.EXTERNAL for p in loaded.policies):
        from autoscaler.metrics_api.options import build_metrics_server

        if args.secure_port is None:
            args.secure_port = 6443
        try:
            metrics_api = build_metrics_server(
                args, lambda: controller.published, connect_kube=connect_kube, ready=lambda: controller.started
            )
        except (ValueError, OSError) as exc:
            log.error("cannot configure the metrics API: %s", exc)
            await prometheus.close()
            await kube.close()
            return Exit.USAGE
        closers = (metrics_api.close, prometheus.close, kube.close)
        if not await start_listening(metrics_api.server.start, "--secure-port", args.secure_port, log, closers):
            return Exit.USAGE

    app = health_app(telemetry, ready=lambda: controller.started, alive=alive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        host, port = listen_address(args.listen)
        await web.TCPSite(runner, host, port).start()
    except (OSError, ConfigurationError) as exc:  # the port is taken, the address is not this host's
        log.error("--listen %s: cannot listen: %s", args.listen, getattr(exc, "strerror", None) or exc)
        await runner.cleanup()
        if metrics_api is not None:
            await metrics_api.close()
        await prometheus.close()
        await kube.close()
        return Exit.USAGE
    log.info(
        "started",
        extra={
            "namespace": namespace,
            "identity": args.identity,
            "policies_dir": args.policies,
            "policy_objects": args.policy_objects,
            "watch_cache": args.watch_cache,
            "dry_run": args.dry_run,
            "leader_elect": args.leader_elect,
            "shards": args.shards,
        },
    )
    tasks = [asyncio.create_task(controller.run(stop), name="control loop")]
    if cluster is not None:
        tasks.append(asyncio.create_task(cluster.run(stop), name="watch caches"))
    if objects is not None:
        tasks.append(asyncio.create_task(objects.run(stop), name="policy objects"))
    if elector is not None:
        tasks.append(asyncio.create_task(elector.run(stop), name="lease loop"))
    if metrics_api is not None:
        tasks.append(asyncio.create_task(metrics_api.server.refresh_loop(stop), name="metrics API refresh"))
    code = Exit.OK
    try:
        code = await supervise(stop, tasks)
    finally:
        if elector is not None:
            await elector.release()
        await runner.cleanup()
        if metrics_api is not None:
            await metrics_api.close()
        await prometheus.close()
        await kube.close()
        log.info("stopped")
    return code


async def supervise(stop: asyncio.Event, tasks: list[asyncio.Task[Any]]) -> Exit:
    """Run until ``stop`` is set, then let the tasks finish (the tick in progress completes).

    A task that ends before ``stop`` (the control loop, the lease loop or the metrics API's refresh
    died) stops them all: an instance whose loop is dead must not keep the Lease (a standby takes over
    once it is released) nor look healthy. Returns 1 then, so that Kubernetes restarts the pod.
    """
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    died = [task for task in tasks if task.done()] if not stop.is_set() else []
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("%s died: %s: %s", task.get_name(), type(result).__name__, result, exc_info=result)
    if died:
        log.error("stopping: %s ended on its own; releasing the lease", ", ".join(t.get_name() for t in died))
        return Exit.INVALID
    return Exit.OK
