"""TLS for the metrics API: the serving context, a self-signed pair for ``--cert-dir``, and client
certificates.

A client certificate is checked twice, by OpenSSL in the handshake and by ``cryptography`` after it:

1. The handshake *requests* a certificate (``CERT_OPTIONAL``: a client without one still connects,
   to use a bearer token) once :func:`trust_client_cas` has given the context some client CAs (the
   requestheader CA and the client CA; the server adds those the ConfigMap brings). OpenSSL then
   refuses, with no HTTP response, a certificate that does not chain to one of them through the
   intermediates the client sends (or the bundle holds). It does not look at validity dates
   (``X509_V_FLAG_NO_CHECK_TIME``): an expired or not-yet-valid certificate is left to step 2, so
   it gets a 401 as from Go's API server (and is also caught on a connection that outlives it).
2. :func:`verify_client_certificate` gives the verdict, per authenticator: ``cryptography``'s client
   verifier (path building, signatures, the validity of every certificate in the path, basic
   constraints, path length, name constraints, the ``clientAuth`` extended key usage) against that
   authenticator's CA only. The front-proxy CA and the client CA are separate trust domains that
   the handshake's union of both cannot tell apart. :func:`peer_chain` gives it the intermediates
   the client sent.

Python's ``ssl`` cannot let an arbitrary certificate through the handshake to judge it afterwards
(Go's ``tls.RequestClientCert``): that takes an OpenSSL verify callback, which it does not expose.
So a certificate from an unknown CA, or with a bad signature, closes the connection instead of
getting a 401. The handshake's CAs only grow while the process runs (an ``SSLContext`` cannot drop
one); a CA rotated out of the configuration still passes step 1 and is refused at step 2 (401).

``cryptography``'s default profile is the CA/Browser Forum's web PKI one, which requires a subject
alternative name and an authority key identifier in every leaf and a key usage extension in every
CA. Front-proxy and client certificates are identified by their CN and often have neither, so
:data:`_LEAF_POLICY` and :data:`_CA_POLICY` relax exactly those three to RFC 5280 (what Go's
``x509.Verify`` and OpenSSL accept): optional, and a CA's key usage, when present, must allow
certificate signing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

__all__ = [
    "CertificateRejected",
    "load_ca_bundle",
    "peer_chain",
    "self_signed_pair",
    "server_context",
    "trust_client_cas",
    "verify_client_certificate",
]

log = logging.getLogger("autoscaler.metrics_api.tls")

_X509_V_FLAG_NO_CHECK_TIME = 0x200000  # OpenSSL >= 1.1.0 (X509_VERIFY_PARAM_set_flags); not in ssl.VerifyFlags


class CertificateRejected(Exception):
    """A client certificate that does not verify against the CAs it was checked with; the reason."""


def _ca_may_sign_certificates(policy: Policy, certificate: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("the CA's key usage does not allow certificate signing")


_LEAF_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca().may_be_present(
    x509.KeyUsage, Criticality.AGNOSTIC, _ca_may_sign_certificates
)


def load_ca_bundle(pem: bytes | str) -> tuple[x509.Certificate, ...]:
    data = pem.encode() if isinstance(pem, str) else pem
    return tuple(x509.load_pem_x509_certificates(data)) if data.strip() else ()


def server_context(
    cert_file: str | Path,
    key_file: str | Path,
    *,
    client_cas: Sequence[x509.Certificate] = (),
    request_client_certs: bool = True,
) -> ssl.SSLContext:
    """TLS 1.2+ serving context; with ``request_client_certs``, client certificates are requested
    (once there are ``client_cas``, or CAs added later by :func:`trust_client_cas`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    if request_client_certs:
        trust_client_cas(context, client_cas)
    return context


def trust_client_cas(context: ssl.SSLContext, cas: Sequence[x509.Certificate]) -> None:
    """Request client certificates in ``context``'s handshakes and accept those that chain to ``cas``
    (added to the CAs already there; validity dates are left to :func:`verify_client_certificate`).

    Without any CA the context does not ask for a certificate: one could only be refused.
    """
    if not cas:
        return
    context.load_verify_locations(cadata=b"".join(ca.public_bytes(serialization.Encoding.DER) for ca in cas))
    # PARTIAL_CHAIN: any certificate in the bundle is a trust anchor, self-signed or not (as in Go and
    # in cryptography's Store); NO_CHECK_TIME: see the module docstring.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | _X509_V_FLAG_NO_CHECK_TIME
    context.verify_mode = ssl.CERT_OPTIONAL


def peer_chain(ssl_object: Any) -> tuple[bytes, ...]:
    """The client's certificate and then the intermediates it sent (DER); ``()`` without a certificate.

    The certificate is ``getpeercert(binary_form=True)``. The intermediates come from
    ``get_unverified_chain()``, public since Python 3.13 and on 3.10-3.12 the same C method reached
    through ``SSLObject._sslobj``: untrusted input to the verifier's path building, never a verdict.
    Where neither exists, intermediates must be in the CA bundle.
    """
    if ssl_object is None:
        return ()
    leaf: bytes | None = ssl_object.getpeercert(binary_form=True)
    if not leaf:
        return ()
    unverified = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None
    )
    try:
        sent = [_der(certificate) for certificate in (unverified() if unverified else None) or ()]
    except (AttributeError, TypeError, ValueError, ssl.SSLError):
        log.debug("the client's certificate chain is unavailable; only its certificate is used")
        sent = []
    return (leaf, *dict.fromkeys(der for der in sent if der != leaf))


def _der(certificate: Any) -> bytes:
    """DER from Python 3.13+ (bytes already) or from 3.10-3.12 (an ``_ssl.Certificate``, PEM by default)."""
    if isinstance(certificate, bytes):
        return certificate
    return ssl.PEM_cert_to_DER_cert(certificate.public_bytes())


def verify_client_certificate(
    certificate: x509.Certificate,
    cas: Sequence[x509.Certificate],
    *,
    intermediates: Sequence[x509.Certificate] = (),
    now: dt.datetime | None = None,
) -> list[x509.Certificate]:
    """The verified path (``certificate`` first, a member of ``cas`` last) of a client certificate
    valid at ``now``, through ``intermediates`` if needed; :class:`CertificateRejected` otherwise."""
    if not cas:
        raise CertificateRejected("no CA to verify it against")
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(cas)))
            .time(now or dt.datetime.now(dt.UTC))
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_LEAF_POLICY)
            .build_client_verifier()
        )
        return verifier.verify(certificate, list(intermediates)).chain
    except (VerificationError, x509.UnsupportedGeneralNameType, ValueError) as exc:
        raise CertificateRejected(str(exc)) from exc


def self_signed_pair(cert_dir: str | Path, hosts: Sequence[str] = ()) -> tuple[Path, Path]:
    """``apiserver.crt``/``apiserver.key`` in ``cert_dir``, generated (EC P-256, one year) when absent.

    Like the generic API server's ``--cert-dir``: the certificate is its own CA; give the aggregator
    ``insecureSkipTLSVerify`` or this certificate as ``caBundle``.
    """
    directory = Path(cert_dir)
    cert_path, key_path = directory / "apiserver.crt", directory / "apiserver.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    names = ["localhost", *hosts]
    alt: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    alt += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{names[-1]}@inference-autoscaler")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    log.info("generated a self-signed serving certificate", extra={"cert_file": str(cert_path)})
    return cert_path, key_path
