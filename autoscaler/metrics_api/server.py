"""Thin aiohttp handlers over :class:`~autoscaler.metrics_api.responder.Responder`, and the HTTPS server.

One catch-all route: health paths are answered at once (no credentials needed, so kubelet probes
work); everything else is authenticated (the client certificate and the intermediates sent with
it, from the TLS connection; headers), authorized (SubjectAccessReview, cached), then answered by
the pure responder. Every reply's ``Content-Type`` is the responder's (``application/json`` for
the API).

:class:`MetricsServer` is what ``serve-metrics`` and ``run`` start; tests start it on port 0.
When the authentication config comes from the ``kube-system/extension-apiserver-authentication``
ConfigMap, :meth:`MetricsServer.refresh_loop` re-reads it every minute (CA rotation). At start and
whenever the config changes, the server hands the config's CAs to its TLS context
(:func:`.tls.trust_client_cas`): handshakes then request a client certificate and accept one that
chains to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from autoscaler.metrics_api.auth import (
    AuthenticationConfig,
    Authenticator,
    Authorizer,
    Unauthenticated,
    config_from_configmap,
)
from autoscaler.metrics_api.responder import HEALTH_PATHS, Reply, Responder
from autoscaler.metrics_api.tls import peer_chain, trust_client_cas

__all__ = ["AUTH_CONFIGMAP_PATH", "MetricsServer", "make_app"]

log = logging.getLogger("autoscaler.metrics_api")

AUTH_CONFIGMAP_PATH = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


def _peer_chain(request: web.Request) -> tuple[bytes, ...]:
    """The TLS client certificate and the intermediates sent with it (DER); ``()`` without one."""
    transport = request.transport
    return peer_chain(transport.get_extra_info("ssl_object")) if transport is not None else ()


def _response(reply: Reply) -> web.Response:
    return web.Response(body=reply.body, status=reply.status, headers={"Content-Type": reply.content_type})


def make_app(
    responder: Responder,
    *,
    authenticator: Authenticator | None,
    authorizer: Authorizer,
) -> web.Application:
    """The application. ``authenticator=None`` serves everyone (``--insecure-allow-anonymous``)."""

    async def handle(request: web.Request) -> web.Response:
        path, method = request.path, request.method
        if path in HEALTH_PATHS or authorizer.always_allowed(path):
            return _response(responder.respond(method, path, request.query))
        if authenticator is not None:
            chain = _peer_chain(request)
            try:
                identity = await authenticator.authenticate(
                    peer_certificate=chain[0] if chain else None, peer_intermediates=chain[1:], headers=request.headers
                )
            except Unauthenticated as exc:
                log.debug("unauthenticated", extra={"path": path, "error": str(exc)})
                return _response(responder.unauthorized())
            attrs = responder.attributes(method, path)
            try:
                allowed, reason = await authorizer.authorize(identity, attrs)
            except Exception as exc:  # the SubjectAccessReview could not be made
                log.warning("authorization failed", extra={"path": path, "error": str(exc)})
                return _response(responder.internal_error(f"authorization failed: {exc}"))
            if not allowed:
                return _response(responder.forbidden(attrs, identity.user, reason))
        return _response(responder.respond(method, path, request.query))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class MetricsServer:
    """The HTTPS server: ``await server.start()``; ``server.port``; ``await server.stop()``."""

    def __init__(
        self,
        responder: Responder,
        *,
        ssl_context: ssl.SSLContext | None,
        authenticator: Authenticator | None,
        authorizer: Authorizer,
        host: str = "0.0.0.0",
        port: int = 6443,
        configmap_reader: Callable[[], Awaitable[Any]] | None = None,
        base_config: AuthenticationConfig | None = None,
    ) -> None:
        self.responder = responder
        self.ssl_context = ssl_context
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.host, self.port = host, port
        self.configmap_reader = configmap_reader
        self.base_config = base_config
        self._runner: web.AppRunner | None = None

    async def load_configmap(self) -> bool:
        """Merge the extension-apiserver-authentication ConfigMap into the config (flags win)."""
        if self.configmap_reader is None or self.authenticator is None:
            return False
        try:
            configmap = await self.configmap_reader()
        except Exception as exc:
            log.warning("cannot read extension-apiserver-authentication: %s", exc)
            return False
        config = config_from_configmap(
            (configmap or {}).get("data") or {},
            allow_anonymous=self.authenticator.config.allow_anonymous,
            base=self.base_config,
        )
        if config != self.authenticator.config:
            self.authenticator.config = config
            self._trust_client_cas()
            log.info("authentication config loaded from kube-system/extension-apiserver-authentication")
        return True

    def _trust_client_cas(self) -> None:
        """Request client certificates chaining to the config's CAs (added to those trusted already)."""
        if self.ssl_context is not None and self.authenticator is not None:
            trust_client_cas(self.ssl_context, self.authenticator.config.all_cas)

    async def refresh_loop(self, stop: asyncio.Event, interval_s: float = 60.0) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            if not stop.is_set():
                await self.load_configmap()

    async def start(self) -> None:
        await self.load_configmap()
        self._trust_client_cas()
        app = make_app(self.responder, authenticator=self.authenticator, authorizer=self.authorizer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=self.ssl_context).start()
        log.info("external metrics API serving", extra={"port": self.port, "tls": self.ssl_context is not None})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
