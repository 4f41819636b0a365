"""Serving a cached value from the external-metrics API: p50/p99 latency and requests/s over HTTPS.

The server runs in a child process pinned to one core (CPU 0) and serves
``GET /apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/chat-queue?labelSelector=policy%3Dchat``
through the whole stack: TLS with a requested client certificate, front-proxy authentication
(certificate verified, headers read), authorization (a cached allow), the pure responder. The
baseline, measured in the same run with the same client and TLS setup, is a bare aiohttp handler
returning a constant body. The load generator (this process, pinned to CPU 1 when there is one)
keeps 8 keep-alive connections busy for a few seconds per target.

Goal (issue 5): p99 <= 5 ms and >= 3000 requests/s on one core.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONNECTIONS = 8
DURATION_S = 3.0
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/chat-queue?labelSelector=policy%3Dchat"


def _pin(cpu: int) -> None:
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if len(cpus) > 1 and cpu in cpus:
        os.sched_setaffinity(0, {cpu})


def _make_pki(directory: Path) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def build(cn: str, issuer: Any, issuer_key: Any, ca: bool, san: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return builder.sign(issuer_key or key, hashes.SHA256()), key

    def write(name: str, cert: Any, key: Any) -> None:
        (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca, ca_key = build("bench-ca", None, None, True, False)
    write("ca", ca, ca_key)
    serving, serving_key = build("serving", ca.subject, ca_key, False, True)
    write("serving", serving, serving_key)
    proxy, proxy_key = build("front-proxy-client", ca.subject, ca_key, False, False)
    write("proxy", proxy, proxy_key)


class _AllowAll:
    async def token_review(self, token: str) -> dict[str, Any]:
        return {"status": {"authenticated": False}}

    async def access_review(self, spec: Any) -> dict[str, Any]:
        return {"status": {"allowed": True}}


def _serve(kind: str, directory: Path, port_file: Path) -> None:
    """Child process: serve until killed."""
    _pin(0)
    from aiohttp import web

    from autoscaler.core import Decision, MetricReading, Reason
    from autoscaler.core.policy import MetricSource, MetricSpec, MetricTarget, ScalingPolicy, TargetRef, TargetType
    from autoscaler.metrics_api import Responder
    from autoscaler.metrics_api.auth import AuthenticationConfig, Authenticator, Authorizer, RequestHeaderConfig
    from autoscaler.metrics_api.server import MetricsServer
    from autoscaler.metrics_api.tls import load_ca_bundle, server_context
    from autoscaler.service.controller import Published

    context = server_context(directory / "serving.crt", directory / "serving.key")

    async def main() -> None:
        if kind == "baseline":
            body = (
                b'{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{},'
                b'"items":[{"metricName":"chat-queue","metricLabels":{"policy":"chat"},'
                b'"timestamp":"2027-01-15T08:00:00Z","value":"1500m"}]}\n'
            )

            async def constant(_: web.Request) -> web.Response:
                return web.Response(body=body, headers={"Content-Type": "application/json"})

            app = web.Application()
            app.router.add_get("/{tail:.*}", constant)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        else:
            policy = ScalingPolicy(
                name="chat",
                namespace="team-a",
                target=TargetRef("apps/v1", "Deployment", "chat-llm"),
                min_replicas=1,
                max_replicas=20,
                metrics=(
                    MetricSpec("queue", MetricSource(query="x"), MetricTarget(TargetType.AVERAGE_VALUE, 5000, "5")),
                ),
            )
            published = {
                policy.key: Published(
                    policy, Decision(6, 2, Reason.SCALE_UP, "up"), {"queue": MetricReading.of(1.5)}, time.time()
                )
            }
            ca = load_ca_bundle((directory / "ca.crt").read_bytes())
            config = AuthenticationConfig(
                requestheader=RequestHeaderConfig(client_ca=ca, allowed_names=("front-proxy-client",))
            )
            server = MetricsServer(
                Responder(lambda: published, clock=time.time),
                ssl_context=context,
                authenticator=Authenticator(config, reviews=_AllowAll()),
                authorizer=Authorizer(_AllowAll()),
                host="127.0.0.1",
                port=0,
            )
            await server.start()
            port = server.port
        port_file.write_text(str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


async def _load(port: int, directory: Path) -> tuple[list[float], float]:
    import aiohttp

    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    context.load_cert_chain(str(directory / "proxy.crt"), str(directory / "proxy.key"))
    headers = {"X-Remote-User": "system:serviceaccount:kube-system:horizontal-pod-autoscaler"}
    latencies: list[float] = []
    url = f"https://127.0.0.1:{port}{PATH}"
    connector = aiohttp.TCPConnector(ssl=context, limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.get(url, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status

        await asyncio.gather(*(one() for _ in range(CONNECTIONS * 4)))  # warm: handshakes, caches
        deadline = time.perf_counter() + DURATION_S

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await one()
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - began
    return latencies, elapsed


def _measure(kind: str, directory: Path) -> dict[str, float]:
    port_file = directory / f"{kind}.port"
    child = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(directory), str(port_file)])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError(f"{kind} server did not start")
            time.sleep(0.05)
        latencies, elapsed = asyncio.run(_load(int(port_file.read_text()), directory))
    finally:
        child.terminate()
        child.wait(timeout=10)
    latencies.sort()
    n = len(latencies)
    return {
        "n": n,
        "rps": n / elapsed,
        "p50_ms": latencies[n // 2] * 1000,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000,
    }


def _in_process(directory: Path) -> float:
    """Microseconds per request of our own work (authenticate, authorize, respond), no sockets."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from multidict import CIMultiDict, CIMultiDictProxy

    from autoscaler.core import Decision, MetricReading, Reason
    from autoscaler.core.policy import MetricSource, MetricSpec, MetricTarget, ScalingPolicy, TargetRef, TargetType
    from autoscaler.metrics_api import Responder
    from autoscaler.metrics_api.auth import AuthenticationConfig, Authenticator, Authorizer, RequestHeaderConfig
    from autoscaler.metrics_api.tls import load_ca_bundle
    from autoscaler.service.controller import Published

    spec = MetricSpec("queue", MetricSource(query="x"), MetricTarget(TargetType.AVERAGE_VALUE, 5000, "5"))
    policy = ScalingPolicy("chat", "team-a", TargetRef("apps/v1", "Deployment", "chat-llm"), 1, 20, (spec,))
    published = {
        policy.key: Published(
            policy, Decision(6, 2, Reason.SCALE_UP, "up"), {"queue": MetricReading.of(1.5)}, time.time()
        )
    }
    responder = Responder(lambda: published)
    ca = load_ca_bundle((directory / "ca.crt").read_bytes())
    der = x509.load_pem_x509_certificate((directory / "proxy.crt").read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    config = AuthenticationConfig(
        requestheader=RequestHeaderConfig(client_ca=ca, allowed_names=("front-proxy-client",))
    )
    authenticator, authorizer = Authenticator(config, reviews=_AllowAll()), Authorizer(_AllowAll())
    headers = CIMultiDictProxy(CIMultiDict({"Host": "x", "Accept": "*/*", "X-Remote-User": "hpa"}))
    path, query = PATH.split("?")[0], {"labelSelector": "policy=chat"}

    async def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            identity = await authenticator.authenticate(peer_certificate=der, headers=headers)
            attrs = responder.attributes("GET", path)
            await authorizer.authorize(identity, attrs)
            responder.respond("GET", path, query)
        return (time.perf_counter() - started) / n * 1e6

    asyncio.run(run(200))
    return asyncio.run(run(20_000))


def main() -> None:
    _pin(1)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _make_pki(directory)
        baseline = _measure("baseline", directory)
        ours = _measure("metrics_api", directory)
        own_us = _in_process(directory)
    for name, figures in (("bare aiohttp constant (baseline)", baseline), ("metrics API cached value", ours)):
        print(
            f"   {name:34s} {figures['rps']:7.0f} req/s  p50 {figures['p50_ms']:.2f} ms  "
            f"p99 {figures['p99_ms']:.2f} ms  (n={int(figures['n'])}, {CONNECTIONS} connections, TLS, server on 1 core)"
        )
    print(f"   our own work per request (authn + authz + responder, in process, cached): {own_us:.1f} us")
    print(
        f"   ratio to baseline: {ours['rps'] / baseline['rps']:.2f}x throughput, "
        f"{ours['p99_ms'] / baseline['p99_ms']:.2f}x p99; goal p99 <= 5 ms and >= 3000 req/s: "
        f"{'met' if ours['p99_ms'] <= 5 and ours['rps'] >= 3000 else 'NOT met'}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
