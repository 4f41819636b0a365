"""Command-line flags of the metrics API (named as the Kubernetes generic API server names them) and
the wiring from parsed flags to a :class:`~autoscaler.metrics_api.server.MetricsServer`.

Shared by ``serve-metrics`` and ``run``. TokenReview and SubjectAccessReview go to the API server
of ``--authentication-kubeconfig`` / ``--authorization-kubeconfig`` (default: in-cluster), through a
client the command builds (``connect_kube``: this package imports no other edge), and the
``kube-system/extension-apiserver-authentication`` ConfigMap fills in whatever CA and header flags
were not given (unless ``--authentication-skip-lookup``).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscaler.core import Published
from autoscaler.metrics_api.auth import (
    AuthenticationConfig,
    Authenticator,
    Authorizer,
    KubeReviews,
    RequestHeaderConfig,
)
from autoscaler.metrics_api.responder import Responder
from autoscaler.metrics_api.server import AUTH_CONFIGMAP_PATH, MetricsServer
from autoscaler.metrics_api.tls import load_ca_bundle, self_signed_pair, server_context

__all__ = ["KubeConnect", "ServerParts", "add_secure_serving_arguments", "build_metrics_server"]

log = logging.getLogger("autoscaler.metrics_api")

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_secure_serving_arguments(parser: Any, *, default_port: int | None = 6443) -> None:
    group = parser.add_argument_group("external metrics API (external.metrics.k8s.io and the KEDA endpoint)")
    group.add_argument(
        "--secure-port",
        type=int,
        default=default_port,
        metavar="PORT",
        help="HTTPS port (default: "
        + (str(default_port) if default_port is not None else "6443 when a policy uses mode external, else off")
        + ")",
    )
    group.add_argument("--bind-address", default="0.0.0.0", metavar="IP", help="listen address (default 0.0.0.0)")
    group.add_argument("--tls-cert-file", metavar="PEM", help="serving certificate (with --tls-private-key-file)")
    group.add_argument("--tls-private-key-file", metavar="PEM", help="serving key")
    group.add_argument(
        "--cert-dir",
        default="/tmp/inference-autoscaler/certs",
        metavar="DIR",
        help="where a self-signed pair is generated when no certificate is given",
    )
    group.add_argument("--client-ca-file", metavar="PEM", help="CA for client-certificate authentication")
    group.add_argument("--requestheader-client-ca-file", metavar="PEM", help="the front proxy's client CA")
    group.add_argument(
        "--requestheader-allowed-names", default="", metavar="CN[,CN...]", help="front-proxy CNs (empty: any)"
    )
    group.add_argument("--requestheader-username-headers", default="X-Remote-User", metavar="H[,H...]")
    group.add_argument("--requestheader-group-headers", default="X-Remote-Group", metavar="H[,H...]")
    group.add_argument("--requestheader-extra-headers-prefix", default="X-Remote-Extra-", metavar="P[,P...]")
    group.add_argument("--requestheader-uid-headers", default="X-Remote-Uid", metavar="H[,H...]")
    group.add_argument("--authentication-kubeconfig", metavar="FILE", help="for TokenReview (default: in-cluster)")
    group.add_argument(
        "--authorization-kubeconfig", metavar="FILE", help="for SubjectAccessReview (default: in-cluster)"
    )
    group.add_argument(
        "--authentication-skip-lookup",
        action="store_true",
        help="do not read kube-system/extension-apiserver-authentication",
    )
    group.add_argument(
        "--authorization-always-allow-paths",
        default="/healthz,/readyz,/livez",
        metavar="PATH[,PATH...]",
        help="paths served without authorization (a trailing * is a prefix)",
    )
    group.add_argument(
        "--insecure-allow-anonymous",
        action="store_true",
        help="LOCAL USE ONLY: serve every request without authentication or authorization",
    )


@dataclass
class ServerParts:
    server: MetricsServer
    clients: list[Any] = field(default_factory=list)

    async def close(self) -> None:
        await self.server.stop()
        for client in self.clients:
            await client.close()


KubeConnect = Callable[[str | None], Any]
"""Builds a Kubernetes API client (with ``request`` and ``close``) from a kubeconfig path; None: in cluster."""


def _kube_client(connect: KubeConnect, path: str | None) -> Any:
    if path is None and not IN_CLUSTER_TOKEN.exists():
        return None
    return connect(path)


def build_metrics_server(
    args: argparse.Namespace,
    published: Callable[[], Mapping[str, Published]],
    *,
    connect_kube: KubeConnect,
    ready: Callable[[], bool] = lambda: True,
) -> ServerParts:
    """The server the flags describe (not started). Raises ``ValueError`` on inconsistent flags."""
    responder = Responder(published, ready=ready)
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        raise ValueError("--tls-cert-file and --tls-private-key-file go together")
    if args.tls_cert_file:
        cert, key = Path(args.tls_cert_file), Path(args.tls_private_key_file)
    else:
        cert, key = self_signed_pair(args.cert_dir, [os.environ.get("HOSTNAME", "") or "localhost"])
    paths = _csv(args.authorization_always_allow_paths)
    if args.insecure_allow_anonymous:
        log.warning(
            "!!! --insecure-allow-anonymous: the external metrics API serves EVERY request without "
            "authentication or authorization. Never use this in a cluster. !!!"
        )
        context = server_context(cert, key, request_client_certs=False)
        server = MetricsServer(
            responder,
            ssl_context=context,
            authenticator=None,
            authorizer=Authorizer(None, always_allow_paths=paths, allow_all=True),
            host=args.bind_address,
            port=args.secure_port,
        )
        return ServerParts(server)
    requestheader = None
    if args.requestheader_client_ca_file:
        requestheader = RequestHeaderConfig(
            client_ca=load_ca_bundle(Path(args.requestheader_client_ca_file).read_bytes()),
            allowed_names=_csv(args.requestheader_allowed_names),
            username_headers=_csv(args.requestheader_username_headers),
            group_headers=_csv(args.requestheader_group_headers),
            extra_prefixes=_csv(args.requestheader_extra_headers_prefix),
            uid_headers=_csv(args.requestheader_uid_headers),
        )
    client_ca = load_ca_bundle(Path(args.client_ca_file).read_bytes()) if args.client_ca_file else ()
    base = AuthenticationConfig(requestheader=requestheader, client_ca=client_ca)
    authn_client = _kube_client(connect_kube, args.authentication_kubeconfig)
    authz_client = (
        authn_client
        if args.authorization_kubeconfig in (None, args.authentication_kubeconfig)
        else _kube_client(connect_kube, args.authorization_kubeconfig)
    )
    if authz_client is None:
        raise ValueError(
            "no Kubernetes API for SubjectAccessReview: give --authorization-kubeconfig, run in a cluster, "
            "or use --insecure-allow-anonymous for local use"
        )
    reader = None
    if authn_client is not None and not args.authentication_skip_lookup:

        async def read_configmap() -> Any:
            return await authn_client.request("GET", AUTH_CONFIGMAP_PATH)

        reader = read_configmap
    authenticator = Authenticator(base, reviews=KubeReviews(authn_client) if authn_client is not None else None)
    context = server_context(cert, key, client_cas=base.all_cas)
    server = MetricsServer(
        responder,
        ssl_context=context,
        authenticator=authenticator,
        authorizer=Authorizer(KubeReviews(authz_client), always_allow_paths=paths),
        host=args.bind_address,
        port=args.secure_port,
        configmap_reader=reader,
        base_config=base,
    )
    clients = [c for c in {id(c): c for c in (authn_client, authz_client) if c is not None}.values()]
    return ServerParts(server, clients)
