"""What the commands share: their exit statuses, one per kind of failure, and the flags of the commands
that read Prometheus (``signals``, ``run``, ``serve-metrics``, ``backtest``)."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Coroutine, Sequence
from enum import IntEnum
from typing import Any

from autoscaler.errors import AutoscalerError, ConfigurationError, InputError, SignalError

__all__ = [
    "Exit",
    "add_prometheus_arguments",
    "connect_kube",
    "exit_code",
    "listen_address",
    "prometheus_config",
    "require_extra",
    "run_service",
    "signal_settings",
    "start_listening",
]


class Exit(IntEnum):
    """Every command's exit status: one per kind of failure, so that a script can tell a file to fix
    from a backend to wait for (``inference-autoscaler --help`` lists them)."""

    OK = 0
    INVALID = 1
    """An input document is invalid (a policy, scenario, trace, observation line or recorded history):
    the message names the file, the line or key, and the value. ``validate`` found errors."""
    USAGE = 2
    """The command line is wrong (argparse's own status), or local configuration it names cannot be
    used (a kubeconfig, TLS files)."""
    UNAVAILABLE = 3
    """A signal is unavailable: Prometheus is unreachable or refuses, or a metric has no value."""
    KUBERNETES = 4
    """The Kubernetes API failed or refused."""
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT, as shells report it)."""


EXIT_STATUS_HELP = """exit status:
  0    success
  1    an input document is invalid (policy, scenario, trace, observations, recorded history)
  2    usage: bad command line, or unusable local configuration (kubeconfig, TLS files)
  3    a signal is unavailable (Prometheus unreachable or refusing, or a metric has no value)
  4    the Kubernetes API failed or refused
  130  interrupted"""


def exit_code(error: AutoscalerError) -> Exit:
    """The exit status for an error that ends a command."""
    from autoscaler.service.kube import KubeError  # only code that imported it can have raised one

    if isinstance(error, InputError):
        return Exit.INVALID
    if isinstance(error, ConfigurationError):
        return Exit.USAGE
    if isinstance(error, SignalError):
        return Exit.UNAVAILABLE
    if isinstance(error, KubeError):
        return Exit.KUBERNETES
    return Exit.INVALID  # no error is of another kind today; 1 is the generic failure


def listen_address(text: str, flag: str = "--listen") -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6, ``:8080`` for every address) or a ConfigurationError."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigurationError(f"{flag} {text}: HOST:PORT is required, e.g. 0.0.0.0:8080 or [::1]:8080")
    return host or "0.0.0.0", int(port)


async def start_listening(
    start: Callable[[], Coroutine[Any, Any, None]],
    flag: str,
    value: object,
    log: Any,
    closers: Sequence[Callable[[], Coroutine[Any, Any, None]]],
) -> bool:
    """Start a server; when its port is taken, one line naming ``flag``, the clients closed, False."""
    try:
        await start()
    except OSError as exc:
        log.error("%s %s: cannot listen: %s", flag, value, exc.strerror or exc)
        for close in closers:
            await close()
        return False
    return True


def require_extra(extra: str, *modules: str) -> None:
    """Raise a :class:`ConfigurationError` naming the extra to install when ``modules`` are missing (the
    runtime install carries only what the service uses; the simulator, plots and tuner are extras)."""
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigurationError(
            f"{', '.join(missing)} not installed: this command needs pip install 'inference-autoscaler[{extra}]'"
        )


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
    """The Prometheus flags as a config; a URL without a scheme or an unreadable password file is a
    :class:`ConfigurationError` (exit 2) at once, not a retry loop."""
    from urllib.parse import urlsplit

    from autoscaler.prometheus import PrometheusConfig

    url = urlsplit(args.prometheus)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise ConfigurationError(f"--prometheus {args.prometheus}: a URL such as http://prometheus:9090 is required")
    if args.ca_file and not os.path.isfile(args.ca_file):
        raise ConfigurationError(f"--ca-file {args.ca_file}: no such file")
    basic: tuple[str, str] | None = None
    if args.basic_auth:
        user, _, password_file = args.basic_auth.partition(":")
        try:
            with open(password_file, encoding="utf-8") as handle:
                basic = (user, handle.read().strip())
        except OSError as exc:
            raise ConfigurationError(f"--basic-auth: cannot read {password_file}: {exc.strerror or exc}") from None
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


def connect_kube(kubeconfig: str | None) -> Any:
    """A Kubernetes API client from a kubeconfig (None: the pod's service account)."""
    from autoscaler.service.kube import KubeClient, KubeConfig

    return KubeClient(KubeConfig.load(kubeconfig))


def run_service(serve: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace) -> int:
    """Run a long-lived async command with JSON logs; Ctrl-C exits 130 (SIGTERM is the command's own)."""
    from autoscaler.service.telemetry import configure_logging

    configure_logging(args.log_level)
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
