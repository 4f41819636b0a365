"""An async client for the Prometheus HTTP query API: instant and range queries.

* One request path (:meth:`PrometheusClient._call`) owns timeouts, bounded retries with exponential
  backoff and full jitter, ``Retry-After`` on 429/503, and the translation of every failure into the
  :mod:`autoscaler.prometheus.errors` hierarchy. ``bad_data`` (a PromQL error) and 4xx are never
  retried; connection errors, timeouts and 5xx are.
* Auth: a bearer token read from a file on every request (projected service-account tokens rotate),
  basic auth, a custom CA bundle, and the ``X-Scope-OrgID`` tenant header of Mimir/Cortex/Thanos.
* Queries go as POST forms, so a long fleet query never hits a URL length limit.
* The HTTP layer is a :class:`Transport` protocol; :class:`AiohttpTransport` is the real one and
  tests may pass a fake. Clock and randomness for backoff are injectable, so retry tests do not sleep.

Values: Prometheus sends sample values as strings; ``"NaN"``, ``"+Inf"`` and ``"-Inf"`` become the
float specials and are *kept* here: deciding that they are unusable is the signals layer's job.

Shape: an answer that is not the documented shape (``data: null``, a ``result`` that is not a list, a
sample without a two-element ``value``, label values that are not strings...) raises
:class:`PrometheusResponseError`, never ``AttributeError`` or ``TypeError``: a malformed answer to one
query is that query's failure, and the signals layer turns it into "unavailable" for the metrics that
used the query, never a failed tick for everyone. ``Retry-After`` is read as delay-seconds or an
HTTP-date, and anything else (negative, NaN, junk) is ignored in favour of our own jittered backoff;
either way the wait is capped at ``backoff_max_s``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict

import aiohttp

from autoscaler.httputil import retry_after_s
from autoscaler.prometheus.errors import (
    PrometheusAuthError,
    PrometheusError,
    PrometheusHTTPError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusUnreachable,
)

__all__ = [
    "AiohttpTransport",
    "HttpResponse",
    "InstantResult",
    "PrometheusClient",
    "PrometheusConfig",
    "RangeResult",
    "RangeSeries",
    "Sample",
    "Transport",
    "retry_after_s",
]


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    """Where and how to reach a Prometheus-compatible API."""

    url: str
    """Base URL, e.g. ``http://prometheus:9090`` or ``http://mimir/prometheus`` (``/api/v1`` is appended)."""
    timeout_s: float = 5.0
    """Per attempt, for the whole HTTP exchange; also sent to the server as the query ``timeout``."""
    retries: int = 2
    """Extra attempts after the first, for retryable failures only."""
    backoff_base_s: float = 0.2
    """The first retry waits up to this long (full jitter), doubling per attempt."""
    backoff_max_s: float = 2.0
    """Cap on one backoff wait, and on an honoured ``Retry-After``."""
    bearer_token_file: str | None = None
    basic_auth: tuple[str, str] | None = None
    """``(username, password)``."""
    ca_file: str | None = None
    """PEM bundle to verify the server with, instead of the system store."""
    tenant: str | None = None
    """Sent as ``X-Scope-OrgID`` (Mimir, Cortex, Thanos receive/query with tenancy)."""
    headers: Mapping[str, str] = field(default_factory=dict)

    def api(self, path: str) -> str:
        return f"{self.url.rstrip('/')}/api/v1/{path}"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """The HTTP seam: one POST of a form. Raises :class:`PrometheusUnreachable` on network failure."""

    async def post_form(
        self, url: str, form: Mapping[str, str], *, headers: Mapping[str, str], timeout_s: float
    ) -> HttpResponse: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """The real transport: one pooled :class:`aiohttp.ClientSession`, created lazily on first use."""

    def __init__(self, *, ca_file: str | None = None, limit: int = 32) -> None:
        self._ssl: ssl.SSLContext | None = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def post_form(
        self, url: str, form: Mapping[str, str], *, headers: Mapping[str, str], timeout_s: float
    ) -> HttpResponse:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(connector=connector)
        try:
            async with self._session.post(
                url, data=dict(form), headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                body = await response.read()
                return HttpResponse(response.status, dict(response.headers), body)
        except TimeoutError as error:
            raise PrometheusUnreachable(f"timed out after {timeout_s:g} s", url=url) from error
        except aiohttp.ClientError as error:
            raise PrometheusUnreachable(f"{type(error).__name__}: {error}", url=url) from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass(frozen=True, slots=True)
class Sample:
    """One instant-vector element: its labels (``__name__`` included when kept), value and timestamp."""

    labels: Mapping[str, str]
    value: float
    timestamp_s: float


@dataclass(frozen=True, slots=True)
class InstantResult:
    """An instant query's answer: a vector (``samples``) or a scalar (one sample with no labels)."""

    result_type: str
    samples: tuple[Sample, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RangeSeries:
    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]  # (timestamp_s, value)


@dataclass(frozen=True, slots=True)
class RangeResult:
    series: tuple[RangeSeries, ...]
    warnings: tuple[str, ...] = ()


class _Envelope(TypedDict, total=False):
    status: str
    data: dict[str, Any]
    errorType: str
    error: str
    warnings: list[str]


class PrometheusClient:
    """Instant and range queries with retries. Use as ``async with PrometheusClient(config) as prom``."""

    def __init__(
        self,
        config: PrometheusConfig,
        *,
        transport: Transport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._transport: Transport = transport or AiohttpTransport(ca_file=config.ca_file)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.requests = 0
        """HTTP requests made, retries included (for benchmarks and metrics)."""

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._transport.close()

    async def query(self, expr: str, *, time_s: float | None = None, context: str = "") -> InstantResult:
        """Evaluate ``expr`` at ``time_s`` (the server's now when None)."""
        form = {"query": expr, "timeout": f"{self.config.timeout_s:g}s"}
        if time_s is not None:
            form["time"] = _fmt_time(time_s)
        data, warnings = await self._call("query", form, context=context, query=expr)
        return _parse_instant(data, warnings, context=context, url=self.config.url)

    async def query_range(
        self, expr: str, *, start_s: float, end_s: float, step_s: float, context: str = ""
    ) -> RangeResult:
        """Evaluate ``expr`` at every ``step_s`` from ``start_s`` to ``end_s`` (a matrix)."""
        form = {
            "query": expr, "start": _fmt_time(start_s), "end": _fmt_time(end_s), "step": f"{step_s:g}",
            "timeout": f"{self.config.timeout_s:g}s",
        }
        data, warnings = await self._call("query_range", form, context=context, query=expr)
        if data.get("resultType") != "matrix":
            raise PrometheusResponseError(
                f"expected a matrix, got {data.get('resultType')!r}", context=context, url=self.config.url
            )
        series = tuple(
            RangeSeries(dict(item.get("metric", {})), tuple((float(t), float(v)) for t, v in item.get("values", ())))
            for item in data.get("result", ())
        )
        return RangeResult(series, warnings)

    def _headers(self) -> dict[str, str]:
        headers = dict(self.config.headers)
        if self.config.bearer_token_file:
            try:
                token = Path(self.config.bearer_token_file).read_text().strip()
            except OSError as error:
                raise PrometheusAuthError(
                    f"cannot read bearer token file {self.config.bearer_token_file}: {error.strerror}",
                    status=0, url=self.config.url,
                ) from error
            headers["Authorization"] = f"Bearer {token}"
        elif self.config.basic_auth is not None:
            user, password = self.config.basic_auth
            basic = base64.b64encode(f"{user}:{password}".encode("latin-1", "replace")).decode("ascii")
            headers["Authorization"] = f"Basic {basic}"
        if self.config.tenant:
            headers["X-Scope-OrgID"] = self.config.tenant
        return headers

    def _backoff_s(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            wait = retry_after_s(retry_after)
            if wait is not None:
                return min(self.config.backoff_max_s, wait)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return self._rng.uniform(0.0, ceiling)  # full jitter: spreads a fleet of retries apart

    async def _call(
        self, endpoint: str, form: Mapping[str, str], *, context: str, query: str
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        url = self.config.api(endpoint)
        attempt = 0
        while True:
            retry_after: str | None = None
            try:
                self.requests += 1
                response = await self._transport.post_form(
                    url, form, headers=self._headers(), timeout_s=self.config.timeout_s
                )
                retry_after = response.headers.get("Retry-After")
                return self._decode(response, context=context, query=query)
            except PrometheusError as error:
                if not error.context:
                    error = _with_context(error, context=context, url=self.config.url, query=query)
                if not error.retryable or attempt >= self.config.retries:
                    if isinstance(error, PrometheusUnreachable) and attempt:
                        raise PrometheusUnreachable(
                            f"{error.message} (after {attempt + 1} attempts)", context=context,
                            url=self.config.url, query=query,
                        ) from error.__cause__
                    raise error from error.__cause__
            await self._sleep(self._backoff_s(attempt, retry_after))
            attempt += 1

    def _decode(
        self, response: HttpResponse, *, context: str, query: str
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        url = self.config.url
        try:
            envelope: _Envelope = json.loads(response.body)
            if not isinstance(envelope, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            snippet = response.body[:200].decode("utf-8", "replace").strip()
            if response.status in (401, 403):
                raise PrometheusAuthError(
                    f"HTTP {response.status}: {snippet or 'unauthorized'}", status=response.status,
                    context=context, url=url, query=query,
                ) from None
            if response.status >= 300:
                raise PrometheusHTTPError(
                    f"HTTP {response.status}: {snippet}", status=response.status, context=context, url=url, query=query
                ) from None
            raise PrometheusResponseError(
                f"answer is not JSON ({error}): {snippet!r}", context=context, url=url, query=query
            ) from error
        if envelope.get("status") == "error":
            raise PrometheusQueryError(
                f"{envelope.get('error', '')} in query {query!r}", error_type=envelope.get("errorType", "unknown"),
                status=response.status, context=context, url=url, query=query,
            )
        if response.status in (401, 403):
            raise PrometheusAuthError(f"HTTP {response.status}", status=response.status, context=context, url=url)
        if response.status >= 300 or envelope.get("status") != "success" or "data" not in envelope:
            raise PrometheusHTTPError(
                f"HTTP {response.status}: unexpected answer {str(envelope)[:200]}", status=response.status,
                context=context, url=url, query=query,
            )
        data = envelope["data"]
        if not isinstance(data, dict):
            raise PrometheusResponseError(
                f"'data' is {json.dumps(data)[:80]}, not an object", context=context, url=url, query=query
            )
        warnings = envelope.get("warnings") or ()
        if not isinstance(warnings, list | tuple):
            warnings = (str(warnings),)
        return data, tuple(str(w) for w in warnings)


def _with_context(error: PrometheusError, *, context: str, url: str, query: str) -> PrometheusError:
    """The same error, naming what was being read (errors raised by the transport know only the URL)."""
    cls = type(error)
    if isinstance(error, PrometheusQueryError):
        new: PrometheusError = PrometheusQueryError(
            error.message.removeprefix(f"{error.error_type}: "), error_type=error.error_type, status=error.status,
            context=context, url=url, query=query,
        )
    elif isinstance(error, PrometheusHTTPError):
        new = cls(error.message, status=error.status, context=context, url=url, query=query)  # type: ignore[call-arg]
    else:
        new = cls(error.message, context=context, url=url, query=query)
    new.__cause__ = error.__cause__
    return new


def _fmt_time(time_s: float) -> str:
    return f"{time_s:.3f}"


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{what} is {type(value).__name__}, not a list")
    return value


def _items(result: Any) -> list[Any]:
    """The elements of a vector or matrix result; ``null`` is an empty result (never zero)."""
    return [] if result is None else _list(result, "result")


def _labels(item: Any) -> dict[str, str]:
    if not isinstance(item, dict):
        raise TypeError(f"a result element is {type(item).__name__}, not an object")
    metric = item.get("metric")
    if metric is None:
        return {}
    if not isinstance(metric, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metric.items()):
        raise TypeError(f"labels must map strings to strings, got {str(metric)[:80]}")
    return dict(metric)


def _pair(point: Any) -> tuple[float, float]:
    """``[timestamp, "value"]``: the value must be a string (Prometheus quotes it), NaN/Inf allowed."""
    if not isinstance(point, list) or len(point) != 2 or isinstance(point[0], bool):
        raise ValueError(f"a sample must be [timestamp, value], got {str(point)[:80]}")
    stamp, value = point
    if not isinstance(stamp, int | float) or not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"a sample must be [timestamp, value], got {str(point)[:80]}")
    parsed_stamp = float(stamp)
    if not math.isfinite(parsed_stamp):
        raise ValueError(f"sample timestamp {stamp!r} is not finite")
    return parsed_stamp, float(value)


def _parse_instant(data: Mapping[str, Any], warnings: tuple[str, ...], *, context: str, url: str) -> InstantResult:
    kind = data.get("resultType")
    result = data.get("result")
    try:
        if kind == "vector":
            samples = []
            for item in _items(result):
                labels = _labels(item)
                stamp, value = _pair(item.get("value"))
                samples.append(Sample(labels, value, stamp))
            parsed = tuple(samples)
        elif kind == "scalar":
            stamp, value = _pair(result)
            parsed = (Sample({}, value, stamp),)
        else:
            raise PrometheusResponseError(
                f"expected a vector or scalar, got {kind!r} (a range selector needs a function such as rate())",
                context=context, url=url,
            )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise PrometheusResponseError(f"malformed {kind} result: {error}", context=context, url=url) from error
    return InstantResult(str(kind), parsed, warnings)
