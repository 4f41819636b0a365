"""Authentication and authorization for the metrics API, delegated to the Kubernetes API server as an
aggregated API server does (apiserver ``pkg/server/options/authentication.go``, ``authorization.go``).

Authentication, in order (the first that yields a user wins; an error with no success is a 401):

1. front proxy: a client certificate verified against the requestheader CA (:mod:`.tls`; through
   the intermediates the client sends) whose CN is in the allowed names
   (any CN when the list is empty) makes the ``X-Remote-User`` / ``X-Remote-Group`` /
   ``X-Remote-Extra-<key>`` / ``X-Remote-Uid`` headers trusted. A front-proxy certificate with a CN
   that is not allowed is an error. Without the user header, the next step is tried.
2. client certificate: verified against the client CA -> user = CN, groups = O.
3. bearer token -> a TokenReview (results cached 10 s).
4. otherwise the caller is anonymous. Unlike the Go server (which hands ``system:anonymous`` to
   authorization), an anonymous caller gets 401 unless ``--insecure-allow-anonymous``; the health
   paths are served before authentication, so probes need no credentials.

Authorization: the always-allowed paths (health by default) and group ``system:masters`` pass;
everything else is a SubjectAccessReview, allow and deny each cached 10 s.

The TokenReview/SubjectAccessReview calls go through :class:`Reviews`, a seam that
:class:`KubeReviews` implements over :class:`autoscaler.service.kube.KubeClient`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID

from autoscaler.metrics_api.responder import Attributes
from autoscaler.metrics_api.tls import CertificateRejected, load_ca_bundle, verify_client_certificate

__all__ = [
    "ANONYMOUS",
    "AuthenticationConfig",
    "Authenticator",
    "Authorizer",
    "Headers",
    "Identity",
    "KubeReviews",
    "RequestHeaderConfig",
    "Reviews",
    "Unauthenticated",
    "config_from_configmap",
]

SYSTEM_MASTERS = "system:masters"
CACHE_TTL_S = 10.0
_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


ANONYMOUS = Identity("system:anonymous", ("system:unauthenticated",))


class Unauthenticated(Exception):
    """The request carried credentials that did not verify, or none (anonymous not allowed)."""


class Headers(Protocol):
    """The part of a (case-insensitive) multi-dict of request headers that is used."""

    def getall(self, key: str, default: list[str], /) -> list[str]: ...

    def keys(self) -> Any: ...


class Reviews(Protocol):
    async def token_review(self, token: str) -> Mapping[str, Any]: ...

    async def access_review(self, spec: Mapping[str, Any]) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class RequestHeaderConfig:
    """The front proxy (kube-aggregator): its CA, allowed CNs and identity headers."""

    client_ca: tuple[x509.Certificate, ...]
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    uid_headers: tuple[str, ...] = ("X-Remote-Uid",)


@dataclass(frozen=True, slots=True)
class AuthenticationConfig:
    requestheader: RequestHeaderConfig | None = None
    client_ca: tuple[x509.Certificate, ...] = ()
    allow_anonymous: bool = False
    """Serve unauthenticated callers as ``system:anonymous`` (and authorize everything: local use only)."""

    @property
    def all_cas(self) -> tuple[x509.Certificate, ...]:
        return (self.requestheader.client_ca if self.requestheader else ()) + self.client_ca


def config_from_configmap(
    data: Mapping[str, str], *, allow_anonymous: bool = False, base: AuthenticationConfig | None = None
) -> AuthenticationConfig:
    """``kube-system/extension-apiserver-authentication`` -> config; values in ``base`` (flags) win."""

    def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = data.get(key)
        return tuple(json.loads(raw)) if raw else default

    requestheader = base.requestheader if base else None
    if requestheader is None and data.get("requestheader-client-ca-file"):
        requestheader = RequestHeaderConfig(
            client_ca=load_ca_bundle(data["requestheader-client-ca-file"]),
            allowed_names=names("requestheader-allowed-names", ()),
            username_headers=names("requestheader-username-headers", ("X-Remote-User",)),
            group_headers=names("requestheader-group-headers", ("X-Remote-Group",)),
            extra_prefixes=names("requestheader-extra-headers-prefix", ("X-Remote-Extra-",)),
            uid_headers=names("requestheader-uid-headers", ("X-Remote-Uid",)),
        )
    client_ca = base.client_ca if base and base.client_ca else load_ca_bundle(data.get("client-ca-file", ""))
    return AuthenticationConfig(requestheader=requestheader, client_ca=client_ca, allow_anonymous=allow_anonymous)


class _TTLCache:
    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self.ttl_s, self.clock = ttl_s, clock
        self._items: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> Any | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        if hit[0] < self.clock():
            del self._items[key]
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._items) >= _CACHE_MAX:
            now = self.clock()
            self._items = {k: v for k, v in self._items.items() if v[0] >= now}
            if len(self._items) >= _CACHE_MAX:
                self._items.clear()
        self._items[key] = (self.clock() + self.ttl_s, value)


def _cn(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


class Authenticator:
    def __init__(
        self,
        config: AuthenticationConfig,
        *,
        reviews: Reviews | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.reviews = reviews
        self._tokens = _TTLCache(CACHE_TTL_S, clock)
        self._parsed: dict[bytes, x509.Certificate | None] = {}
        # Path validation costs ~0.25 ms a certificate: keep verdicts a minute (expiry is seen within 60 s).
        self._verdicts = _TTLCache(60.0, clock)

    def _rejection(
        self, chain: tuple[bytes, ...], certificates: tuple[x509.Certificate, ...], cas: tuple[x509.Certificate, ...]
    ) -> str:
        """Why ``chain`` (leaf first, DER; parsed: ``certificates``) does not verify against ``cas``; "" if it does."""
        key = (chain, cas)
        verdict = self._verdicts.get(key)
        if verdict is None:
            try:
                verify_client_certificate(certificates[0], cas, intermediates=certificates[1:])
                verdict = ""
            except CertificateRejected as exc:
                verdict = str(exc) or "rejected"
            self._verdicts.put(key, verdict)
        return str(verdict)

    def _certificate(self, der: bytes) -> x509.Certificate | None:
        if der not in self._parsed:
            if len(self._parsed) > _CACHE_MAX:
                self._parsed.clear()
            try:
                self._parsed[der] = x509.load_der_x509_certificate(der)
            except ValueError:
                self._parsed[der] = None
        return self._parsed[der]

    async def authenticate(
        self, *, peer_certificate: bytes | None, headers: Headers, peer_intermediates: Sequence[bytes] = ()
    ) -> Identity:
        """The caller's identity, or :class:`Unauthenticated`.

        ``peer_certificate`` is the TLS client certificate (DER) and ``peer_intermediates`` the
        certificates the client sent with it (untrusted: only used to build a path to a CA).
        """
        errors: list[str] = []
        chain: tuple[bytes, ...] = ()
        certificates: tuple[x509.Certificate, ...] = ()
        if peer_certificate:
            parsed = [(der, self._certificate(der)) for der in (peer_certificate, *peer_intermediates)]
            if parsed[0][1] is None:
                errors.append("unparseable client certificate")
            else:  # an unparseable intermediate is left out: a path needing it fails
                chain = tuple(der for der, c in parsed if c is not None)
                certificates = tuple(c for _, c in parsed if c is not None)
        front = self.config.requestheader
        if certificates and front is not None:
            rejection = self._rejection(chain, certificates, front.client_ca)
            if not rejection:
                cn = _cn(certificates[0])
                if front.allowed_names and cn not in front.allowed_names:
                    errors.append(f"front-proxy certificate CN {cn!r} is not allowed")
                else:
                    identity = _from_headers(front, headers)
                    if identity is not None:
                        return identity
            elif not self.config.client_ca:
                errors.append(f"client certificate not verified by the requestheader CA: {rejection}")
        if certificates and self.config.client_ca:
            rejection = self._rejection(chain, certificates, self.config.client_ca)
            if not rejection:
                organizations = certificates[0].subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
                groups = (*(str(o.value) for o in organizations), "system:authenticated")
                return Identity(_cn(certificates[0]), groups)
            errors.append(f"client certificate not verified by the client CA: {rejection}")
        authorization = next(iter(headers.getall("Authorization", [])), "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            identity = await self._token(token.strip())
            if identity is not None:
                return identity
            errors.append("invalid bearer token")
        if errors or not self.config.allow_anonymous:
            raise Unauthenticated("; ".join(errors) or "no credentials")
        return ANONYMOUS

    async def _token(self, token: str) -> Identity | None:
        key = hashlib.sha256(token.encode()).digest()
        cached = self._tokens.get(key)
        if cached is not None:
            return cached if isinstance(cached, Identity) else None
        if self.reviews is None:
            return None
        try:
            review = await self.reviews.token_review(token)
        except Exception as exc:  # the API is down: this request fails, nothing is cached
            raise Unauthenticated(f"token review failed: {exc}") from exc
        status = review.get("status") or {}
        identity: Identity | None = None
        if status.get("authenticated"):
            user = status.get("user") or {}
            extra = {str(k): tuple(str(v) for v in vs) for k, vs in (user.get("extra") or {}).items()}
            identity = Identity(
                str(user.get("username", "")), tuple(user.get("groups") or ()), str(user.get("uid", "")), extra
            )
        self._tokens.put(key, identity or False)
        return identity


def _from_headers(config: RequestHeaderConfig, headers: Headers) -> Identity | None:
    user = next((v for h in config.username_headers for v in headers.getall(h, []) if v), "")
    if not user:
        return None
    groups = tuple(v for h in config.group_headers for v in headers.getall(h, []))
    uid = next((v for h in config.uid_headers for v in headers.getall(h, []) if v), "")
    extra: dict[str, list[str]] = {}
    for name in dict.fromkeys(str(k) for k in headers.keys()):  # noqa: SIM118 (a multidict, not a dict)
        for prefix in config.extra_prefixes:
            if name.lower().startswith(prefix.lower()):
                key = urllib.parse.unquote(name[len(prefix) :].lower())
                extra.setdefault(key, []).extend(headers.getall(name, []))
    return Identity(user, groups, uid, {k: tuple(v) for k, v in extra.items()})


class Authorizer:
    def __init__(
        self,
        reviews: Reviews | None,
        *,
        always_allow_paths: Sequence[str] = ("/healthz", "/readyz", "/livez"),
        always_allow_groups: Sequence[str] = (SYSTEM_MASTERS,),
        allow_all: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reviews = reviews
        self.exact = frozenset(p for p in always_allow_paths if not p.endswith("*"))
        self.prefixes = tuple(p[:-1] for p in always_allow_paths if p.endswith("*"))
        self.groups = frozenset(always_allow_groups)
        self.allow_all = allow_all
        self._cache = _TTLCache(CACHE_TTL_S, clock)
        self.reviews_made = 0

    def always_allowed(self, path: str) -> bool:
        return path in self.exact or any(path.startswith(p) for p in self.prefixes)

    async def authorize(self, identity: Identity, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason). Raises when the SubjectAccessReview itself fails (the caller answers 500)."""
        if self.allow_all or self.always_allowed(attrs.path) or self.groups.intersection(identity.groups):
            return True, ""
        if self.reviews is None:
            return False, "no authorizer is configured"
        key = (identity.user, identity.groups, identity.uid, tuple(sorted(identity.extra.items())), attrs)
        cached = self._cache.get(key)
        if cached is not None:
            allowed, reason = cached
            return bool(allowed), str(reason)
        spec: dict[str, Any] = {"user": identity.user, "groups": list(identity.groups)}
        if identity.uid:
            spec["uid"] = identity.uid
        if identity.extra:
            spec["extra"] = {k: list(v) for k, v in identity.extra.items()}
        if attrs.resource_request:
            spec["resourceAttributes"] = {
                "namespace": attrs.namespace,
                "verb": attrs.verb,
                "group": attrs.group,
                "version": attrs.version,
                "resource": attrs.resource,
            }
        else:
            spec["nonResourceAttributes"] = {"path": attrs.path, "verb": attrs.verb}
        self.reviews_made += 1
        review = await self.reviews.access_review(spec)
        status = review.get("status") or {}
        result = (bool(status.get("allowed")) and not status.get("denied"), str(status.get("reason", "")))
        self._cache.put(key, result)
        return result


REVIEW_TIMEOUT_S = 5.0
"""The longest a request waits for a review, retries included (the HPA's own client gives up at 30 s;
a review that hangs must fail this request, not hold a connection open)."""


class KubeReviews:
    """TokenReview and SubjectAccessReview over the service's Kubernetes client, each bounded by
    ``timeout_s``: a hung review fails its request (401, or 500 for an authorization that could not be
    made) instead of holding it."""

    def __init__(self, client: Any, *, timeout_s: float = REVIEW_TIMEOUT_S) -> None:
        self.client = client
        self.timeout_s = timeout_s

    async def _post(self, path: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        try:
            result: Mapping[str, Any] = await asyncio.wait_for(
                self.client.request("POST", path, body=body), timeout=self.timeout_s
            )
        except TimeoutError:
            raise TimeoutError(f"{body['kind']} took longer than {self.timeout_s:g} s") from None
        return result

    async def token_review(self, token: str) -> Mapping[str, Any]:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        return await self._post("/apis/authentication.k8s.io/v1/tokenreviews", body)

    async def access_review(self, spec: Mapping[str, Any]) -> Mapping[str, Any]:
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": dict(spec)}
        return await self._post("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
