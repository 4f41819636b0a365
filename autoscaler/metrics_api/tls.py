"""TLS for the metrics API: the serving context, a self-signed pair for ``--cert-dir``, and client
certificates that are *requested but not required* and verified after the handshake.

The Go API server uses ``tls.RequestClientCert``: the handshake accepts any client certificate and
the authenticators verify it against the right CA (front-proxy or client CA), so a certificate from
an unknown CA becomes a ``401``, not a TLS alert. Python's ``ssl`` has no such mode, so
:func:`request_client_certificates` installs an accept-all OpenSSL verify callback through ctypes
(the ``SSL_CTX`` pointer is the first field of CPython's ``PySSLContext``; checked before use). If
that is not possible on some interpreter, the context falls back to ``CERT_OPTIONAL`` with the CAs
loaded: certificates are still verified, but a bad one fails the handshake instead of getting a 401.

:func:`verify_client_certificate` then checks a peer certificate the way Go's ``x509.Verify``
does for a directly-issued leaf: signature and issuer name, validity period, and the ``clientAuth``
extended key usage when the certificate restricts its usages. Intermediate chains are not supported
(front-proxy and client certificates are issued directly by their CA in kubeadm and cloud clusters).
"""

from __future__ import annotations

import _ssl
import contextlib
import ctypes
import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "load_ca_bundle",
    "request_client_certificates",
    "self_signed_pair",
    "server_context",
    "verify_client_certificate",
]

log = logging.getLogger("autoscaler.metrics_api.tls")

_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_ACCEPT_ANY = _VERIFY_CALLBACK(lambda preverify_ok, store: 1)  # kept alive for the process
_SSL_VERIFY_PEER = 1


def request_client_certificates(context: ssl.SSLContext) -> bool:
    """Ask clients for a certificate, let any through the handshake; False if this interpreter can't."""
    context.verify_mode = ssl.CERT_OPTIONAL
    try:
        library = ctypes.CDLL(_ssl.__file__)
        get_mode = library.SSL_CTX_get_verify_mode
        get_mode.restype, get_mode.argtypes = ctypes.c_int, [ctypes.c_void_p]
        set_verify = library.SSL_CTX_set_verify
        set_verify.restype, set_verify.argtypes = None, [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
        pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
        if not pointer or get_mode(pointer) != _SSL_VERIFY_PEER:
            return False
        set_verify(pointer, _SSL_VERIFY_PEER, _ACCEPT_ANY)
        return True
    except (OSError, AttributeError, ValueError):
        return False


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
    """TLS 1.2+ serving context; client certificates requested (verified later) when asked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    if request_client_certs and not request_client_certificates(context):
        log.warning("client certificates are verified during the handshake (a bad one fails TLS, not 401)")
        context.verify_mode = ssl.CERT_OPTIONAL
        if client_cas:
            pem = "".join(ca.public_bytes(serialization.Encoding.PEM).decode() for ca in client_cas)
            context.load_verify_locations(cadata=pem)
    return context


def verify_client_certificate(
    certificate: x509.Certificate, cas: Sequence[x509.Certificate], *, now: dt.datetime | None = None
) -> bool:
    """True when ``certificate`` is a currently valid client certificate issued directly by one of ``cas``."""
    moment = now or dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        return False
    with contextlib.suppress(x509.ExtensionNotFound):
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
            return False
    for ca in cas:
        if not ca.not_valid_before_utc <= moment <= ca.not_valid_after_utc:
            continue
        try:
            certificate.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):  # wrong issuer name, signature or key type
            continue
        return True
    return False


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
