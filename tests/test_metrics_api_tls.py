"""Client certificates for the metrics API, below HTTP: :func:`verify_client_certificate` (cryptography's
client verifier with the relaxed extension policies), the authenticator's use of it, and the TLS
context's handshake (in memory, both ends of a real OpenSSL handshake through ``ssl.MemoryBIO``).

Cases:
* verification: a certificate issued directly by the CA; through an intermediate the client sends;
  not without it; an intermediate in the CA bundle is a trust anchor; expired, not yet valid (the
  leaf, or an intermediate) -> rejected, and the same certificate is fine at a time it is valid; a
  certificate from another CA (the front-proxy and client CAs are separate), for servers only,
  issued by a non-CA, or deeper than the CA's path length -> rejected; a CA with no key usage
  extension is accepted (RFC 5280, Go), one whose key usage forbids certificate signing is not;
  no SAN or AKI needed in the leaf; no CA at all -> rejected;
* authenticator: an expired front-proxy certificate is a 401 naming the reason; intermediates are
  used; a garbage intermediate is ignored;
* handshake: without CAs no certificate is asked for; with them, a client without a certificate
  connects, a certificate chaining to the CAs (also through the intermediates sent) connects and
  :func:`peer_chain` gives it and the intermediates, an expired one connects (dates are judged
  after the handshake), one from an unknown CA is refused by OpenSSL; CAs added later are used for
  the next handshakes; :func:`peer_chain` on the Python 3.13 and the 3.10-3.12 shapes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDict

from autoscaler.metrics_api.auth import AuthenticationConfig, Authenticator, RequestHeaderConfig, Unauthenticated
from autoscaler.metrics_api.tls import (
    CertificateRejected,
    peer_chain,
    server_context,
    trust_client_cas,
    verify_client_certificate,
)

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)
SIGN_CERTIFICATES = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
SIGN_ONLY = x509.KeyUsage(True, False, False, False, False, False, False, False, False)


@dataclass(frozen=True)
class Made:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def make(cn: str, issuer: Made | None = None, *, ca: bool = False, path_length: int | None = None,
         key_usage: x509.KeyUsage | None = SIGN_CERTIFICATES, usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
         valid: tuple[dt.timedelta, dt.timedelta] = (-HOUR, DAY)) -> Made:
    """A CA (self-signed without ``issuer``) or a leaf with one extended key usage, no SAN and no AKI."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW + valid[0]).not_valid_after(NOW + valid[1])
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        if key_usage is not None:
            builder = builder.add_extension(key_usage, critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return Made(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def pki() -> dict[str, Made]:
    root = make("root", ca=True)
    intermediate = make("intermediate", root, ca=True)
    return {"root": root, "intermediate": intermediate, "other": make("other", ca=True),
            "leaf": make("leaf", root), "via": make("via", intermediate)}


def rejection(leaf: Made, cas: list[Made], intermediates: tuple[Made, ...] = (), now: dt.datetime = NOW) -> str:
    """"" when ``leaf`` verifies, else the reason."""
    try:
        chain = verify_client_certificate(leaf.cert, [c.cert for c in cas], intermediates=[i.cert for i in intermediates], now=now)
    except CertificateRejected as exc:
        return str(exc) or "rejected"
    assert chain[0] == leaf.cert and chain[-1] in [c.cert for c in cas]
    return ""


# ------------------------------------------------------------------ verification


def test_directly_issued_and_through_intermediates(pki: dict[str, Made]) -> None:
    root, intermediate, via = pki["root"], pki["intermediate"], pki["via"]
    assert rejection(pki["leaf"], [root]) == ""
    assert verify_client_certificate(via.cert, [root.cert], intermediates=[intermediate.cert], now=NOW) == [
        via.cert, intermediate.cert, root.cert]
    assert rejection(via, [root]) != ""  # the intermediate is needed
    assert rejection(via, [intermediate]) == ""  # a bundle's intermediate is a trust anchor (as in Go)
    assert rejection(via, [pki["other"]], (intermediate,)) != ""  # intermediates only build a path


@pytest.mark.parametrize("when", ["expired", "not_yet_valid"])
def test_validity_dates(when: str) -> None:
    root = make("root", ca=True, valid=(-2 * DAY, 2 * DAY))
    valid = (-DAY, -HOUR) if when == "expired" else (HOUR, DAY)
    leaf = make("leaf", root, valid=valid)
    assert "not valid at validation time" in rejection(leaf, [root])
    assert rejection(leaf, [root], now=NOW + (valid[0] + valid[1]) / 2) == ""
    intermediate = make("intermediate", root, ca=True, valid=valid)
    via = make("via", intermediate, valid=(-2 * DAY, 2 * DAY))
    assert "not valid at validation time" in rejection(via, [root], (intermediate,))


def test_what_is_not_a_client_certificate(pki: dict[str, Made]) -> None:
    root = pki["root"]
    assert rejection(pki["leaf"], [pki["other"]]) != ""
    assert "EKU" in rejection(make("server", root, usage=ExtendedKeyUsageOID.SERVER_AUTH), [root])
    not_a_ca = make("not-a-ca", root)
    assert rejection(make("leaf", not_a_ca), [root], (not_a_ca,)) != ""
    no_intermediates = make("root", ca=True, path_length=0)
    intermediate = make("intermediate", no_intermediates, ca=True)
    assert rejection(make("leaf", intermediate), [no_intermediates], (intermediate,)) != ""
    assert rejection(pki["leaf"], []) == "no CA to verify it against"


def test_ca_key_usage_is_optional_but_must_allow_signing_certificates() -> None:
    plain = make("plain-ca", ca=True, key_usage=None)
    assert rejection(make("leaf", plain), [plain]) == ""
    signing_only = make("signing-only-ca", ca=True, key_usage=SIGN_ONLY)
    intermediate = make("intermediate", signing_only, ca=True, key_usage=SIGN_ONLY)
    assert "certificate signing" in rejection(make("leaf", intermediate), [signing_only], (intermediate,))


# ------------------------------------------------------------------ the authenticator


def _front_proxy(ca: Made) -> Authenticator:
    return Authenticator(AuthenticationConfig(requestheader=RequestHeaderConfig(client_ca=(ca.cert,))))


async def test_authenticator_rejects_an_expired_certificate_with_the_reason(pki: dict[str, Made]) -> None:
    expired = make("front-proxy-client", pki["root"], valid=(-DAY, -HOUR))
    with pytest.raises(Unauthenticated, match=r"requestheader CA: .*not valid at validation time"):
        await _front_proxy(pki["root"]).authenticate(peer_certificate=expired.der, headers=CIMultiDict({"X-Remote-User": "a"}))


async def test_authenticator_uses_the_intermediates_and_ignores_garbage(pki: dict[str, Made]) -> None:
    authenticator, headers = _front_proxy(pki["root"]), CIMultiDict({"X-Remote-User": "hpa"})
    identity = await authenticator.authenticate(
        peer_certificate=pki["via"].der, peer_intermediates=[b"garbage", pki["intermediate"].der], headers=headers
    )
    assert identity.user == "hpa"
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(peer_certificate=pki["via"].der, headers=headers)


# ------------------------------------------------------------------ the handshake


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Made]:
    serving_ca = make("serving-ca", ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(serving_ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - HOUR).not_valid_after(NOW + DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(serving_ca.key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("serving")
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "tls.crt", directory / "tls.key", serving_ca


def _client(serving_ca: Made, tmp_path: Path, chain: tuple[Made, ...] = (),
            version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> ssl.SSLContext:
    """A TLS client trusting ``serving_ca``, presenting ``chain[0]`` and sending the rest after it."""
    context = ssl.create_default_context(cadata=serving_ca.cert.public_bytes(serialization.Encoding.PEM).decode())
    context.maximum_version = version
    if chain:
        (tmp_path / "client.crt").write_bytes(b"".join(c.cert.public_bytes(serialization.Encoding.PEM) for c in chain))
        (tmp_path / "client.key").write_bytes(chain[0].key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context.load_cert_chain(tmp_path / "client.crt", tmp_path / "client.key")
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """Both ends of a handshake in memory; the server's end once done (its errors are raised)."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_end = server.wrap_bio(to_server, to_client, server_side=True)
    client_end = client.wrap_bio(to_client, to_server, server_hostname="localhost")
    pending = [client_end, server_end]
    for _ in range(10):
        for end in list(pending):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
                pending.remove(end)
        if not pending:
            client_end.write(b"ping")  # and the connection carries data
            assert server_end.read(4) == b"ping"
            return server_end
    raise AssertionError("the handshake did not finish")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_the_handshake_requests_and_checks_client_certificates(
    serving: tuple[Path, Path, Made], pki: dict[str, Made], tmp_path: Path, version: ssl.TLSVersion
) -> None:
    cert_file, key_file, serving_ca = serving
    root, intermediate, via = pki["root"], pki["intermediate"], pki["via"]

    def client(*chain: Made) -> ssl.SSLContext:
        return _client(serving_ca, tmp_path, chain, version)

    context = server_context(cert_file, key_file)
    assert context.verify_mode == ssl.CERT_NONE  # no CA: nothing to ask for
    assert peer_chain(handshake(context, client(pki["leaf"]))) == ()

    context = server_context(cert_file, key_file, client_cas=[root.cert])
    assert context.verify_mode == ssl.CERT_OPTIONAL
    assert peer_chain(handshake(context, client())) == ()
    assert peer_chain(handshake(context, client(pki["leaf"]))) == (pki["leaf"].der,)
    assert peer_chain(handshake(context, client(via, intermediate))) == (via.der, intermediate.der)
    expired = make("expired", root, valid=(-DAY, -HOUR))
    assert peer_chain(handshake(context, client(expired))) == (expired.der,)
    other = make("other-leaf", pki["other"])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, client(other))
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(context, client(via))  # the intermediate not sent

    trust_client_cas(context, [pki["other"].cert])  # e.g. the ConfigMap brought another CA
    assert peer_chain(handshake(context, client(other))) == (other.der,)
    assert peer_chain(handshake(context, client(pki["leaf"]))) == (pki["leaf"].der,)


class _Legacy:
    """An ``_ssl.Certificate`` of Python 3.10-3.12: PEM by default."""

    def __init__(self, pem: str) -> None:
        self.pem = pem

    def public_bytes(self) -> str:
        return self.pem


class _Peer:
    """The server end of a connection as :func:`peer_chain` sees it on Python 3.13+ (``legacy=False``)
    or 3.10-3.12 (the chain from ``_sslobj``); no chain method at all with ``chain=None``."""

    def __init__(self, leaf: bytes | None, chain: list[Any] | None = None, *, legacy: bool = False) -> None:
        self.leaf = leaf
        if chain is not None and legacy:
            self._sslobj = SimpleNamespace(get_unverified_chain=lambda: [_Legacy(c) for c in chain])
        elif chain is not None:
            self.get_unverified_chain = lambda: chain

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        return self.leaf


def test_peer_chain_on_each_python(pki: dict[str, Made]) -> None:
    leaf, intermediate = pki["via"].der, pki["intermediate"].der
    pem = ssl.DER_cert_to_PEM_cert
    assert peer_chain(None) == ()
    assert peer_chain(_Peer(None, [])) == ()
    assert peer_chain(_Peer(leaf, [leaf, intermediate])) == (leaf, intermediate)
    assert peer_chain(_Peer(leaf, [pem(leaf), pem(intermediate)], legacy=True)) == (leaf, intermediate)
    assert peer_chain(_Peer(leaf, [pem(intermediate), pem(intermediate)], legacy=True)) == (leaf, intermediate)
    assert peer_chain(_Peer(leaf)) == (leaf,)  # no way to the chain: the bundle must hold intermediates
    assert peer_chain(_Peer(leaf, [pem(leaf), "not PEM"], legacy=True)) == (leaf,)
