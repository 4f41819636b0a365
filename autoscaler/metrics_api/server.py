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
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What a client may hold: a slow or half-open client must not pin memory and descriptors (600 such
    connections once took the process from 81 to 248 MB and were never closed)."""

    handshake_s: float = 10.0  # the TLS handshake (asyncio's default is 60 s)
    header_s: float = 10.0  # from a request's first byte to the end of its headers
    keepalive_s: float = 30.0  # an idle keep-alive connection
    max_connections: int = 512  # beyond: closed at once (the HPA needs a handful)


class _Guarded(asyncio.Protocol):
    """aiohttp's request handler behind a guard: a connection over the cap is closed at once, and one
    whose request headers do not arrive complete within ``header_s`` is aborted (a slowloris). The
    handler gets every event it would get without the guard."""

    def __init__(
        self, inner: Any, open_: set[_Guarded], limits: ConnectionLimits, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._inner, self._open, self._limits, self._loop = inner, open_, limits, loop
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._passed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if len(self._open) >= self._limits.max_connections:
            log.warning("closing a connection: %d open already", len(self._open))
            transport.close()
            return
        self._passed = True
        self._open.add(self)
        self._arm()
        self._inner.connection_made(transport)

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(self._limits.header_s, self.abort)

    def abort(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self._passed:
            return
        self._arm()  # a request (or its body) has begun: its headers have header_s to arrive
        seen = self._tail + data
        if b"\r\n\r\n" in seen:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            after = seen.rsplit(b"\r\n\r\n", 1)[1]
            if after.strip():  # bytes of the next pipelined request have begun
                self._arm()
        self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._passed else None

    def pause_writing(self) -> None:
        if self._passed:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._passed:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._passed:
            self._open.discard(self)
            self._inner.connection_lost(exc)


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
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.responder = responder
        self.ssl_context = ssl_context
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.host, self.port = host, port
        self.configmap_reader = configmap_reader
        self.base_config = base_config
        self._runner: web.AppRunner | None = None
        self.limits = limits or ConnectionLimits()
        self._server: asyncio.Server | None = None
        self._open: set[_Guarded] = set()

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
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=self.limits.keepalive_s)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        handlers = self._runner.server
        assert handlers is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Guarded(handlers(), self._open, self.limits, loop),
            sock=sock,
            ssl=self.ssl_context,
            ssl_handshake_timeout=self.limits.handshake_s if self.ssl_context is not None else None,
            backlog=128,
        )
        log.info("external metrics API serving", extra={"port": self.port, "tls": self.ssl_context is not None})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for guarded in list(self._open):
                guarded.abort()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
