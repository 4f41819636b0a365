"""The metrics API over real HTTPS: kubectl and the official Python client as clients, the
authentication/authorization matrix with CAs and certificates made here, and serve-metrics on a
real Prometheus.

Cases:
* kubectl (``get --raw``, bearer token -> TokenReview on the stand-in): /apis, group, version
  discovery, a value, a value with a labelSelector, 404 unknown, 404 unavailable, 400 bad selector;
  kubectl with a client certificate in group system:masters (no SubjectAccessReview made);
* the ``kubernetes`` client (CustomObjectsApi on the external metrics path) reads a value;
* front proxy: a valid front-proxy certificate + X-Remote-User/Group/Extra -> 200 and the
  SubjectAccessReview carries that identity, also for a certificate issued by an intermediate CA
  that the client sends with it; wrong CN, no certificate, an expired or not yet valid certificate,
  an invalid token -> 401; a certificate from an unknown CA, or from an intermediate the client does
  not send, is refused in the TLS handshake (no response; the server keeps serving); a certificate
  from the client CA is not a front proxy, whatever its CN (its X-Remote-* headers are ignored); a
  front-proxy CA rotated in by the ConfigMap is trusted, one rotated out gets a 401;
  SubjectAccessReview deny -> 403 with the Forbidden Status; decisions cached (one review for
  repeated calls); health needs no credentials; the reply's Content-Type is application/json;
* ``serve-metrics`` (flags, ConfigMap kube-system/extension-apiserver-authentication, dry run) on
  the live Prometheus: the served queue value equals the fleet's closed form and desired replicas
  is the core's; nothing is written to the cluster.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kube_standin import KubeStandIn
from multidict import CIMultiDict
from policy_builders import metric

from autoscaler.core import Decision, MetricReading, Reason
from autoscaler.core.policy import ScalingPolicy, TargetRef
from autoscaler.metrics_api import Responder
from autoscaler.metrics_api.auth import (
    AuthenticationConfig,
    Authenticator,
    Authorizer,
    KubeReviews,
    RequestHeaderConfig,
)
from autoscaler.metrics_api.server import ConnectionLimits, MetricsServer
from autoscaler.metrics_api.tls import server_context
from autoscaler.service.controller import Published
from autoscaler.service.kube import KubeClient, KubeConfig

pytest_plugins = ["prometheus_server"]

V = "/apis/external.metrics.k8s.io/v1beta1"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


# ------------------------------------------------------------------ certificates made in the test


@dataclass
class Pair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path


def _write(directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
           chain: tuple[x509.Certificate, ...] = ()) -> Pair:
    """``<name>.crt`` holds the certificate then ``chain`` (the intermediates a client sends with it)."""
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *chain)))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Pair(cert, key, cert_path, key_path)


def make_ca(directory: Path, name: str) -> Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, name, cert, key)


def issue(directory: Path, ca: Pair, name: str, cn: str, *, orgs: tuple[str, ...] = (), server: bool = False,
          is_ca: bool = False, valid: tuple[dt.timedelta, dt.timedelta] = (dt.timedelta(hours=-1), dt.timedelta(days=1)),
          chain: tuple[x509.Certificate, ...] = ()) -> Pair:
    """A certificate from ``ca`` valid from now + valid[0] to now + valid[1]: a client's (a server's
    with ``server``, an intermediate CA with ``is_ca``); ``chain`` is written after it."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now + valid[0]).not_valid_after(now + valid[1])
    )
    if is_ca:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    if server:
        import ipaddress

        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return _write(directory, name, builder.sign(ca.key, hashes.SHA256()), key, chain)


@dataclass
class Certs:
    serving_ca: Pair
    serving: Pair
    front_proxy_ca: Pair
    front_proxy: Pair
    wrong_cn: Pair
    client_ca: Pair
    admin: Pair
    rogue: Pair
    via_intermediate: Pair  # issued by an intermediate of the front-proxy CA; the file holds both
    intermediate_not_sent: Pair  # the same leaf without the intermediate
    expired: Pair
    not_yet_valid: Pair
    client_ca_as_front_proxy: Pair  # from the client CA, with the front proxy's CN


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("pki")
    serving_ca, front_proxy_ca, client_ca, rogue_ca = (
        make_ca(d, n) for n in ("serving-ca", "front-proxy-ca", "client-ca", "rogue-ca")
    )
    intermediate = issue(d, front_proxy_ca, "front-proxy-intermediate", "front-proxy-intermediate-ca", is_ca=True)
    via_intermediate = issue(d, intermediate, "via-intermediate", "front-proxy-client", chain=(intermediate.cert,))
    hour, day = dt.timedelta(hours=1), dt.timedelta(days=1)
    return Certs(
        serving_ca=serving_ca,
        serving=issue(d, serving_ca, "serving", "inference-autoscaler-metrics", server=True),
        front_proxy_ca=front_proxy_ca,
        front_proxy=issue(d, front_proxy_ca, "front-proxy", "front-proxy-client"),
        wrong_cn=issue(d, front_proxy_ca, "wrong-cn", "intruder"),
        client_ca=client_ca,
        admin=issue(d, client_ca, "admin", "admin", orgs=("system:masters",)),
        rogue=issue(d, rogue_ca, "rogue", "front-proxy-client"),
        via_intermediate=via_intermediate,
        intermediate_not_sent=_write(d, "intermediate-not-sent", via_intermediate.cert, via_intermediate.key),
        expired=issue(d, front_proxy_ca, "expired", "front-proxy-client", valid=(-day, -hour)),
        not_yet_valid=issue(d, front_proxy_ca, "not-yet-valid", "front-proxy-client", valid=(hour, day)),
        client_ca_as_front_proxy=issue(d, client_ca, "client-ca-as-front-proxy", "front-proxy-client"),
    )


# ------------------------------------------------------------------ a server over the stand-in

T_NOW = 1_800_000_000.0


def _published() -> dict[str, Published]:
    policy = ScalingPolicy(
        name="chat", namespace="team-a", target=TargetRef("apps/v1", "Deployment", "chat-llm"), min_replicas=1,
        max_replicas=20, metrics=(metric("queue", "AverageValue", 5), metric("kv", "Utilization", 70)),
    )
    decision = Decision(6, 2, Reason.SCALE_UP, "scale up from 2 to 6")
    return {policy.key: Published(policy, decision, {"queue": MetricReading.of(1.5), "kv": MetricReading.missing()}, T_NOW)}


@dataclass
class Running:
    url: str
    kube: KubeStandIn
    authorizer: Authorizer
    certs: Certs
    reviews: list[dict[str, Any]]


@pytest.fixture
async def running(certs: Certs) -> AsyncIterator[Running]:
    async with KubeStandIn() as kube:
        reviews: list[dict[str, Any]] = []

        def rule(spec: dict[str, Any]) -> bool:
            reviews.append(spec)
            return spec["user"] != "mallory"

        kube.access_rule = rule
        kube.tokens["hpa-token"] = {"username": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                                    "groups": ["system:serviceaccounts", "system:authenticated"]}
        kube.tokens["mallory-token"] = {"username": "mallory", "groups": ["system:authenticated"]}
        client = KubeClient(KubeConfig(host=kube.url, retries=0))
        config = AuthenticationConfig(
            requestheader=RequestHeaderConfig(client_ca=(certs.front_proxy_ca.cert,), allowed_names=("front-proxy-client",)),
            client_ca=(certs.client_ca.cert,),
        )
        items = _published()
        authorizer = Authorizer(KubeReviews(client))
        server = MetricsServer(
            Responder(lambda: items, clock=lambda: T_NOW + 1),
            ssl_context=server_context(certs.serving.cert_path, certs.serving.key_path),
            authenticator=Authenticator(config, reviews=KubeReviews(client)),
            authorizer=authorizer,
            host="127.0.0.1",
            port=0,
        )
        await server.start()
        try:
            yield Running(f"https://127.0.0.1:{server.port}", kube, authorizer, certs, reviews)
        finally:
            await server.stop()
            await client.close()


async def kubectl(url: str, ca: Path, path: str, *extra: str, home: Path | None = None) -> tuple[int, str, str]:
    env = {**os.environ, "KUBECONFIG": "/dev/null", "HOME": str(home or Path("/tmp"))}
    process = await asyncio.create_subprocess_exec(
        KUBECTL, f"--server={url}", f"--certificate-authority={ca}", *extra, "get", "--raw", path,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode or 0, out.decode(), err.decode()


def _client_ssl(certs: Certs, pair: Pair | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.serving_ca.cert_path))
    if pair is not None:
        context.load_cert_chain(str(pair.cert_path), str(pair.key_path))
    return context


async def _get(running: Running, path: str, *, pair: Pair | None = None, headers: dict[str, str] | None = None,
               multi: list[tuple[str, str]] | None = None) -> tuple[int, str, Any]:
    connector = aiohttp.TCPConnector(ssl=_client_ssl(running.certs, pair))
    async with aiohttp.ClientSession(connector=connector) as session:
        all_headers = list((headers or {}).items()) + list(multi or [])
        async with session.get(running.url + path, headers=CIMultiDict(all_headers)) as response:
            text = await response.text()
            return response.status, response.headers.get("Content-Type", ""), text


# ------------------------------------------------------------------ kubectl


async def test_kubectl_reads_discovery_values_and_errors(running: Running, tmp_path: Path) -> None:
    ca = running.certs.serving_ca.cert_path

    async def raw(path: str) -> tuple[int, str, str]:
        return await kubectl(running.url, ca, path, "--token=hpa-token", home=tmp_path)

    code, out, err = await raw("/apis")
    assert code == 0, err
    assert json.loads(out)["groups"][0]["preferredVersion"]["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    code, out, _ = await raw("/apis/external.metrics.k8s.io")
    assert json.loads(out)["kind"] == "APIGroup"
    code, out, _ = await raw(V)
    assert {r["name"] for r in json.loads(out)["resources"]} == {"chat-desired-replicas", "chat-queue", "chat-kv"}
    code, out, _ = await raw(f"{V}/namespaces/team-a/chat-queue")
    assert code == 0 and json.loads(out)["items"][0]["value"] == "1500m"
    code, out, _ = await raw(f"{V}/namespaces/team-a/chat-desired-replicas?labelSelector=policy%3Dchat%2Creason%20in%20(ScaleUp)")
    assert code == 0 and json.loads(out)["items"][0]["value"] == "6"
    code, _, err = await raw(f"{V}/namespaces/team-a/nope-queue")
    assert code != 0 and "Error from server (NotFound): the server could not find the metric nope-queue" in err
    code, _, err = await raw(f"{V}/namespaces/team-a/chat-kv")
    assert code != 0 and "(NotFound)" in err and "kv is unavailable (missing)" in err
    code, _, err = await raw(f"{V}/namespaces/team-a/chat-queue?labelSelector=policy%20chat")
    assert code != 0 and "Error from server (BadRequest): unable to parse requirement: found 'chat'" in err
    code, _, err = await raw(f"{V}/namespaces/team-a/chat-queue?labelSelector=policy%3Dother")
    assert code != 0 and "with selector policy=other" in err
    code, _, err = await kubectl(running.url, ca, f"{V}/namespaces/team-a/chat-queue", "--token=mallory-token",
                                 home=tmp_path)
    assert code != 0 and 'Error from server (Forbidden): chat-queue.external.metrics.k8s.io is forbidden: User "mallory"' in err
    code, _, err = await kubectl(running.url, ca, f"{V}/namespaces/team-a/chat-queue", "--token=bogus", home=tmp_path)
    assert code != 0 and "Unauthorized" in err


async def test_kubectl_with_a_system_masters_client_certificate_needs_no_review(running: Running, tmp_path: Path) -> None:
    admin = running.certs.admin
    code, out, err = await kubectl(
        running.url, running.certs.serving_ca.cert_path, f"{V}/namespaces/team-a/chat-queue",
        f"--client-certificate={admin.cert_path}", f"--client-key={admin.key_path}", home=tmp_path,
    )
    assert code == 0, err
    assert json.loads(out)["items"][0]["metricLabels"]["policy"] == "chat"
    assert running.reviews == []


async def test_the_official_python_client_reads_a_value(running: Running) -> None:
    from kubernetes import client as k8s

    def read() -> Any:
        configuration = k8s.Configuration()
        configuration.host = running.url
        configuration.ssl_ca_cert = str(running.certs.serving_ca.cert_path)
        configuration.api_key = {"authorization": "Bearer hpa-token"}
        with k8s.ApiClient(configuration) as api:
            return k8s.CustomObjectsApi(api).list_namespaced_custom_object(
                "external.metrics.k8s.io", "v1beta1", "team-a", "chat-desired-replicas", label_selector="policy=chat"
            )

    body = await asyncio.to_thread(read)
    assert body["kind"] == "ExternalMetricValueList"
    assert [(i["metricName"], i["value"]) for i in body["items"]] == [("chat-desired-replicas", "6")]


# ------------------------------------------------------------------ authentication and authorization


async def test_front_proxy_certificate_with_headers_is_trusted(running: Running) -> None:
    status, content_type, text = await _get(
        running, f"{V}/namespaces/team-a/chat-queue", pair=running.certs.front_proxy,
        headers={"X-Remote-User": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                 "X-Remote-Extra-Scopes%2fA": "x"},
        multi=[("X-Remote-Group", "system:serviceaccounts"), ("X-Remote-Group", "system:authenticated")],
    )
    assert (status, content_type) == (200, "application/json"), text
    (spec,) = running.reviews
    assert spec["user"] == "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    assert spec["groups"] == ["system:serviceaccounts", "system:authenticated"]
    assert spec["extra"] == {"scopes/a": ["x"]}
    assert spec["resourceAttributes"] == {"namespace": "team-a", "verb": "list", "group": "external.metrics.k8s.io",
                                          "version": "v1beta1", "resource": "chat-queue"}
    # allow is cached: a second call makes no new review
    assert (await _get(running, f"{V}/namespaces/team-a/chat-queue", pair=running.certs.front_proxy,
                       headers={"X-Remote-User": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                                "X-Remote-Extra-Scopes%2fA": "x"},
                       multi=[("X-Remote-Group", "system:serviceaccounts"),
                              ("X-Remote-Group", "system:authenticated")]))[0] == 200
    assert len(running.reviews) == 1


async def test_front_proxy_certificate_from_an_intermediate_ca_is_trusted(running: Running) -> None:
    status, _, text = await _get(running, f"{V}/namespaces/team-a/chat-queue", pair=running.certs.via_intermediate,
                                 headers={"X-Remote-User": "hpa", "X-Remote-Group": "system:serviceaccounts"})
    assert status == 200, text
    (spec,) = running.reviews
    assert (spec["user"], spec["groups"]) == ("hpa", ["system:serviceaccounts"])


@pytest.mark.parametrize("who", ["wrong_cn", "no_certificate", "expired", "not_yet_valid"])
async def test_untrusted_front_proxy_gets_401(running: Running, who: str) -> None:
    pair = {"wrong_cn": running.certs.wrong_cn, "no_certificate": None, "expired": running.certs.expired,
            "not_yet_valid": running.certs.not_yet_valid}[who]
    status, content_type, text = await _get(running, f"{V}/namespaces/team-a/chat-queue", pair=pair,
                                            headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert (status, content_type) == (401, "application/json")
    assert text == ('{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized",'
                    '"reason":"Unauthorized","code":401}\n')
    assert running.reviews == []


@pytest.mark.parametrize("who", ["unknown_ca", "intermediate_not_sent"])
async def test_certificate_that_chains_to_no_client_ca_is_refused_in_the_handshake(running: Running, who: str) -> None:
    """Python's ssl cannot take any certificate and judge it after the handshake (Go's
    RequestClientCert): OpenSSL checks the chain to the configured CAs and closes the connection."""
    pair = {"unknown_ca": running.certs.rogue, "intermediate_not_sent": running.certs.intermediate_not_sent}[who]
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(running, f"{V}/namespaces/team-a/chat-queue", pair=pair,
                   headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert running.reviews == []
    status, _, _ = await _get(running, f"{V}/namespaces/team-a/chat-queue", pair=running.certs.front_proxy,
                              headers={"X-Remote-User": "hpa"})
    assert status == 200  # the server carries on


async def test_a_client_ca_certificate_is_not_a_front_proxy(running: Running) -> None:
    """Both CAs pass the handshake; only the requestheader CA makes the X-Remote-* headers trusted."""
    status, _, _ = await _get(running, f"{V}/namespaces/team-a/chat-queue", pair=running.certs.client_ca_as_front_proxy,
                              headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
    assert status == 200
    (spec,) = running.reviews  # not system:masters: reviewed, as the certificate's own identity
    assert (spec["user"], spec["groups"]) == ("front-proxy-client", ["system:authenticated"])


async def test_front_proxy_ca_rotation_through_the_configmap(certs: Certs, tmp_path: Path) -> None:
    """A CA the ConfigMap brings is trusted from the next handshake on; one it drops still passes the
    handshake (an SSLContext cannot forget a CA) but no longer authenticates: 401."""
    new_ca = make_ca(tmp_path, "front-proxy-ca-2")
    new_front_proxy = issue(tmp_path, new_ca, "front-proxy-2", "front-proxy-client")
    data = {"requestheader-client-ca-file": certs.front_proxy_ca.cert_path.read_text(),
            "requestheader-allowed-names": '["front-proxy-client"]'}

    async def read_configmap() -> dict[str, Any]:
        return {"data": dict(data)}

    server = MetricsServer(
        Responder(lambda: {}, clock=lambda: T_NOW), ssl_context=server_context(certs.serving.cert_path, certs.serving.key_path),
        authenticator=Authenticator(AuthenticationConfig()), authorizer=Authorizer(None, allow_all=True),
        host="127.0.0.1", port=0, configmap_reader=read_configmap,
    )
    await server.start()
    try:
        async with KubeStandIn() as kube:
            running = Running(f"https://127.0.0.1:{server.port}", kube, server.authorizer, certs, [])
            hpa = {"X-Remote-User": "hpa"}
            assert (await _get(running, V, pair=certs.front_proxy, headers=hpa))[0] == 200
            with pytest.raises(aiohttp.ClientConnectionError):
                await _get(running, V, pair=new_front_proxy, headers=hpa)
            data["requestheader-client-ca-file"] = new_ca.cert_path.read_text()
            assert await server.load_configmap()
            assert (await _get(running, V, pair=new_front_proxy, headers=hpa))[0] == 200
            assert (await _get(running, V, pair=certs.front_proxy, headers=hpa))[0] == 401
    finally:
        await server.stop()


async def test_subject_access_review_deny_is_403_and_cached(running: Running) -> None:
    for _ in range(2):
        status, _, text = await _get(running, f"{V}/namespaces/team-a/chat-queue", pair=running.certs.front_proxy,
                                     headers={"X-Remote-User": "mallory"})
        assert status == 403
    body = json.loads(text)
    assert body["message"] == ('chat-queue.external.metrics.k8s.io is forbidden: User "mallory" cannot list resource '
                               '"chat-queue" in API group "external.metrics.k8s.io" in the namespace "team-a": '
                               "denied by the test's rule")
    assert body["details"] == {"group": "external.metrics.k8s.io", "kind": "chat-queue"}
    assert len(running.reviews) == 1  # the deny was cached
    # discovery is a non-resource request
    await _get(running, V, pair=running.certs.front_proxy, headers={"X-Remote-User": "mallory"})
    assert running.reviews[-1]["nonResourceAttributes"] == {"path": V, "verb": "get"}


async def test_health_needs_no_credentials(running: Running) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        assert (await _get(running, path)) == (200, "text/plain; charset=utf-8", "ok")
    status, content_type, _ = await _get(running, "/openapi/v2", pair=running.certs.admin)
    assert (status, content_type) == (404, "application/json")


# ------------------------------------------------------------------ serve-metrics on a real Prometheus


def _kubeconfig(path: Path, url: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "s", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": "service-account"}}],
        "contexts": [{"name": "c", "context": {"cluster": "s", "user": "u"}}],
    }))
    return path


async def test_serve_metrics_on_live_prometheus(
    live_prometheus: Any, certs: Certs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service_harness import policy_text

    from autoscaler import cli
    from autoscaler.commands import serve_metrics

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "chat.yaml").write_text(policy_text("chat-llm", "team-a", "chat-llm", mode="external"))
    async with KubeStandIn() as kube:
        kube.add_deployment("team-a", "chat-llm", 1)
        kube.put_object("", "v1", "configmaps", {
            "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
            "data": {
                "client-ca-file": certs.client_ca.cert_path.read_text(),
                "requestheader-client-ca-file": certs.front_proxy_ca.cert_path.read_text(),
                "requestheader-allowed-names": '["front-proxy-client"]',
                "requestheader-username-headers": '["X-Remote-User"]',
                "requestheader-group-headers": '["X-Remote-Group"]',
                "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
            },
        })
        kubeconfig = _kubeconfig(tmp_path / "kubeconfig", kube.url)
        args = cli.build_parser().parse_args([
            "serve-metrics", "--policies", str(policies), "--prometheus", live_prometheus.url,
            "--kubeconfig", str(kubeconfig), "--authentication-kubeconfig", str(kubeconfig),
            "--secure-port", "0", "--bind-address", "127.0.0.1",
            "--tls-cert-file", str(certs.serving.cert_path), "--tls-private-key-file", str(certs.serving.key_path),
        ])
        stop = asyncio.Event()
        port: list[int] = []
        original = MetricsServer.start

        async def start(self: MetricsServer) -> None:
            await original(self)
            port.append(self.port)

        monkeypatch.setattr(MetricsServer, "start", start)  # to learn the port it bound
        try:
            task = asyncio.create_task(serve_metrics.serve(args, stop=stop))
            deadline = asyncio.get_running_loop().time() + 20
            url = ""
            value: Any = None
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
                if task.done():
                    raise AssertionError(f"serve-metrics exited: {task.result()}")
                if not port:
                    continue
                url = f"https://127.0.0.1:{port[0]}"
                code, out, _ = await kubectl(
                    url, certs.serving_ca.cert_path, f"{V}/namespaces/team-a/chat-llm-queue",
                    f"--client-certificate={certs.admin.cert_path}", f"--client-key={certs.admin.key_path}",
                    home=tmp_path,
                )
                if code == 0:
                    value = json.loads(out)["items"][0]
                    break
            assert value is not None, "no value served in time"
            assert value["value"] == "8"  # the 8 requests waiting across chat-llm's pods in the fleet
            assert value["metricLabels"]["target"] == "chat-llm"
            code, out, err = await kubectl(
                url, certs.serving_ca.cert_path, f"{V}/namespaces/team-a/chat-llm-desired-replicas",
                f"--client-certificate={certs.admin.cert_path}", f"--client-key={certs.admin.key_path}",
                home=tmp_path,
            )
            assert code == 0, err
            assert json.loads(out)["items"][0]["value"] == "2"  # ceil(8 / 5) from 1 replica
            # the front-proxy CA came from the ConfigMap: a front-proxy caller is reviewed, and allowed
            status, _, _ = await _get(
                Running(url, kube, Authorizer(None), certs, []), f"{V}/namespaces/team-a/chat-llm-queue",
                pair=certs.front_proxy, headers={"X-Remote-User": "hpa"},
            )
            assert status == 200
            assert any("subjectaccessreviews" in r.path for r in kube.requests)
            assert not [r for r in kube.requests if r.method in ("PUT", "PATCH") or
                        (r.method == "POST" and "review" not in r.path)]  # dry run: nothing written
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=20)


# ------------------------------------------------------------------ slow and half-open clients (issue 16)


async def test_slow_and_half_open_clients_are_closed_and_capped(certs: Certs) -> None:
    """600 slow or half-open connections were never closed (memory 81 -> 248 MB). Now: no TLS handshake,
    or request headers that never finish, are cut after their bound; past the cap a connection is closed
    at once; a well-behaved client is served all along."""
    limits = ConnectionLimits(handshake_s=0.5, header_s=0.5, keepalive_s=1.0, max_connections=2)
    server = MetricsServer(
        Responder(lambda: [], clock=lambda: T_NOW), ssl_context=server_context(certs.serving.cert_path,
                                                                               certs.serving.key_path),
        authenticator=None, authorizer=Authorizer(None, always_allow_paths=("/healthz",)), host="127.0.0.1", port=0,
        limits=limits,
    )
    await server.start()
    loop = asyncio.get_running_loop()

    async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1), timeout=seconds) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    try:
        raw = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(5)]  # never handshake
        context = _client_ssl(certs, None)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers that never finish
        await writer.drain()
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
        # the cap counts connections past their handshake (a pending one is bounded by handshake_s)
        extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", server.port, ssl=context)
        started = loop.time()
        assert await closed_within(extra_reader, 0.4)  # over the cap: closed at once
        assert loop.time() - started < 0.4
        assert await closed_within(idle_reader, 3.0)  # no request within header_s
        assert all([await closed_within(r, 3.0) for r, _ in raw])  # no handshake within 0.5 s
        assert await closed_within(reader, 3.0)  # slowloris
        assert not server._open
        connector = aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(connector=connector) as session, session.get(
            f"https://127.0.0.1:{server.port}/healthz"
        ) as response:
            assert response.status == 200
        for _, w in [*raw, (reader, writer), (idle_reader, idle_writer), (extra_reader, extra_writer)]:
            w.close()
    finally:
        await server.stop()
