"""The Prometheus reader's error hierarchy.

Every error names what was being read (``context``, e.g. ``policy team-a/chat metric queue``, or
``preset vllm.queue_depth for 12 policies``) and the server, so a log line is actionable on its own.
The library error that caused it (aiohttp, JSON) is chained as ``__cause__``.
"""

from __future__ import annotations

from autoscaler.errors import SignalError

__all__ = [
    "PrometheusAuthError",
    "PrometheusError",
    "PrometheusHTTPError",
    "PrometheusQueryError",
    "PrometheusResponseError",
    "PrometheusUnreachable",
]


class PrometheusError(SignalError):
    """Base class: reading from Prometheus failed. ``retryable`` says whether retrying could help."""

    retryable = False

    def __init__(self, message: str, *, context: str = "", url: str = "", query: str = "") -> None:
        self.message = message
        self.context = context
        self.url = url
        self.query = query
        prefix = f"{context}: " if context else ""
        where = f" (Prometheus {url})" if url else ""
        super().__init__(f"{prefix}{message}{where}")


class PrometheusUnreachable(PrometheusError):
    """Connection refused, DNS, TLS or a timeout, after the bounded retries."""

    retryable = True


class PrometheusHTTPError(PrometheusError):
    """An HTTP error status without a Prometheus error body (a proxy's 502, a 404 on a wrong path)."""

    def __init__(self, message: str, *, status: int, context: str = "", url: str = "", query: str = "") -> None:
        self.status = status
        self.retryable = status >= 500 or status == 429
        super().__init__(message, context=context, url=url, query=query)


class PrometheusAuthError(PrometheusHTTPError):
    """401 or 403: the token, password or tenant is wrong. Never retried."""


class PrometheusQueryError(PrometheusError):
    """Prometheus answered ``status: error``: ``bad_data`` (a PromQL error), ``execution``, ``timeout``..."""

    def __init__(
        self, message: str, *, error_type: str, status: int, context: str = "", url: str = "", query: str = ""
    ) -> None:
        self.error_type = error_type
        self.status = status
        self.retryable = error_type in ("timeout", "unavailable") or status >= 500
        super().__init__(f"{error_type}: {message}", context=context, url=url, query=query)


class PrometheusResponseError(PrometheusError):
    """The answer was not the Prometheus JSON we expect (not JSON, wrong result type...)."""
