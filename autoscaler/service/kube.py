"""One async request path to the Kubernetes API, owning retries, backoff and ``Retry-After``.

Configuration comes from a kubeconfig or the in-cluster service account, resolved as kubectl does
(:mod:`autoscaler.service.kubeconfig`: tokens, token files, client certificates, exec plugins, token
refresh), then requests go over aiohttp. Errors are our own hierarchy, carrying the API's ``Status``
reason and message.

Nothing from the wire is trusted as is:

* a successful answer must be a JSON object (every Kubernetes API answer is); anything else (HTML from
  a proxy, ``[]``, ``null``, an empty 200) raises :class:`KubeInvalidResponse`: callers treat every
  :class:`KubeError` on a read as "hold and report", so garbage can never become a write;
* ``Retry-After`` is read as delay-seconds or an HTTP-date; negative, fractional, NaN or junk values are
  ignored (our own jittered backoff applies), and every wait is capped at ``backoff_max_s``. A negative
  value would otherwise retry a 429 at once, NaN would wait forever;
* an error ``Status``'s reason and message are cut to a bounded length before they reach logs and Events;
* header values we send (the token, configured headers) are refused when they contain control
  characters (a token file with a newline), as an error, not a crash;
* a watch stream (:meth:`KubeClient.watch`) is read line by line with a bound on the line length (a
  huge line is an error, not memory growth) and a read-idle timeout instead of a total one; a line that
  is not a ``{type, object}`` event raises :class:`KubeInvalidResponse`, an ``ERROR`` event raises its
  ``Status`` (410 ``Expired``: :class:`KubeGone`, the caller relists).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, TypeVar

import aiohttp

from autoscaler.errors import AutoscalerError
from autoscaler.httputil import retry_after_s

__all__ = [
    "KubeClient",
    "KubeConfig",
    "KubeConflict",
    "KubeError",
    "KubeForbidden",
    "KubeGone",
    "KubeGuardFailed",
    "KubeInvalidResponse",
    "KubeNotFound",
    "KubeUnavailable",
    "KubeUnsafeWrite",
    "WatchEvent",
    "retry_after_s",
]


class KubeError(AutoscalerError):
    """An API error: HTTP ``status`` and the ``Status`` object's ``reason`` and ``message``."""

    def __init__(self, status: int, reason: str, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path}: {status} {reason}: {message}".strip())
        self.status, self.reason, self.message = status, reason, message


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    pass


class KubeForbidden(KubeError):
    pass


class KubeGone(KubeError):
    """410 Gone / ``Expired``: the resourceVersion (or ``continue`` token) asked for is older than the API
    keeps. A watcher relists; a paginated list restarts."""


class KubeGuardFailed(KubeError):
    """A guarded request was not sent because its guard (e.g. still being leader) turned false."""


class KubeUnavailable(KubeError):
    """The API could not be reached, or kept failing (429/5xx) past the retry budget."""


class KubeInvalidResponse(KubeError):
    """The API answered, but not with something we can trust (not a JSON object, a Scale without a
    resourceVersion, impossible replica counts...). Never acted on: the caller holds and reports."""


class KubeUnsafeWrite(KubeError):
    """A write was refused before it was sent: it lacked its precondition (resourceVersion) or its value
    is impossible. An unconditional write could overwrite someone else's decision."""


_RETRYABLE = {429, 500, 502, 503, 504}
_TEXT_MAX = 1000  # characters of an error's reason/message kept (logs, Events)
_WATCH_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
WATCH_LINE_MAX_BYTES = 16 * 1024 * 1024
"""The longest watch event line read. The API refuses objects over ~1.5 MiB (etcd) and requests over
3 MiB, so a longer line is garbage or an attack, not a Kubernetes object."""

_T = TypeVar("_T")


class WatchEvent(TypedDict):
    """One event of a watch stream: ``type`` is ADDED, MODIFIED, DELETED or BOOKMARK (``ERROR`` raises)."""

    type: str
    object: dict[str, Any]


async def _read_body(response: aiohttp.ClientResponse) -> tuple[str, Any, bool]:
    """A whole answer as (text, parsed JSON or ``{"message": text}``, whether it parsed)."""
    text = await response.text(errors="replace")
    if not text:
        return text, None, True
    try:
        return text, json.loads(text), True
    except ValueError:
        return text, {"message": text[:500]}, False


async def _lines(content: aiohttp.StreamReader, max_line_bytes: int, path: str) -> AsyncGenerator[bytes, None]:
    """The lines of a stream (the last one may lack its newline), none longer than ``max_line_bytes``.

    Our own splitter rather than ``readline``: its limit is aiohttp's buffer size, and we want the
    error to say which watch sent what. Mid-stream failures become :class:`KubeUnavailable`."""
    buffer = bytearray()
    scanned = 0  # bytes of ``buffer`` known to hold no newline: a long line is scanned once, not per chunk
    while True:
        try:
            chunk = await content.readany()
        except TimeoutError as exc:
            raise KubeUnavailable(
                0, "WatchIdle", "no byte from the watch within its idle timeout", method="WATCH", path=path
            ) from exc
        except aiohttp.ClientError as exc:
            raise KubeUnavailable(0, "WatchBroken", f"{type(exc).__name__}: {exc}", method="WATCH", path=path) from exc
        if not chunk:
            if buffer:
                yield bytes(buffer)
            return
        buffer += chunk
        while (end := buffer.find(b"\n", scanned)) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            scanned = 0
            if len(line) > max_line_bytes:
                raise _line_too_long(line, max_line_bytes, path)
            yield line
        scanned = len(buffer)
        if len(buffer) > max_line_bytes:
            raise _line_too_long(bytes(buffer[:100]), max_line_bytes, path)


def _line_too_long(start: bytes, max_line_bytes: int, path: str) -> KubeInvalidResponse:
    return KubeInvalidResponse(
        200,
        "InvalidResponse",
        f"a watch line is longer than {max_line_bytes} bytes: {start[:100]!r}...",
        method="WATCH",
        path=path,
    )


def _header_value(name: str, value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or not value.isascii():
        raise KubeError(0, "InvalidHeader", f"refusing to send header {name}: its value has control characters")
    return value


@dataclass(frozen=True, slots=True)
class KubeConfig:
    host: str
    token: str | None = None
    token_refresh: Callable[[], str | None] | None = None
    token_invalidate: Callable[[], None] | None = None
    """Forget a cached credential (after a 401: the next request fetches a fresh one)."""
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    timeout_s: float = 10.0
    retries: int = 3
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    user_agent: str = "inference-autoscaler"
    headers: Mapping[str, str] = field(default_factory=dict)

    server_name: str | None = None
    basic: tuple[str, str] | None = None

    @staticmethod
    def load(kubeconfig: str | None = None, *, context: str | None = None) -> KubeConfig:
        """From ``kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``, else the pod's service
        account (:func:`autoscaler.service.kubeconfig.resolve`)."""
        from autoscaler.service.kubeconfig import FixedToken, KubeconfigError, resolve

        endpoint = resolve(kubeconfig, context=context)
        fixed = isinstance(endpoint.tokens, FixedToken)  # a token that never changes needs no thread per request
        config = KubeConfig(
            host=endpoint.host,
            token=endpoint.tokens.token() if fixed and endpoint.tokens is not None else None,
            token_refresh=endpoint.tokens.token if endpoint.tokens is not None and not fixed else None,
            token_invalidate=endpoint.tokens.invalidate if endpoint.tokens is not None and not fixed else None,
            ca_file=endpoint.ca_file,
            cert_file=endpoint.cert_file,
            key_file=endpoint.key_file,
            verify=endpoint.verify,
            server_name=endpoint.server_name,
            basic=endpoint.basic,
        )
        try:
            KubeClient(config)._ssl()  # unusable TLS files are a configuration error now, not at the first call
        except KubeError as exc:
            raise KubeconfigError(f"{endpoint.source}: {exc.message}") from None
        return config


class KubeClient:
    """``await client.request("GET", "/api/v1/namespaces/x/pods", params=...)`` -> parsed JSON."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        observe: Callable[[str, float, str], None] | None = None,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None  # watches: one long-lived connection each
        self._observe = observe  # (verb, seconds, outcome) for metrics

    def _ssl(self) -> ssl.SSLContext | bool:
        """The TLS context: the CA (or the system's), our client certificate when there is one (also with
        ``insecure-skip-tls-verify``, as client-go presents it then). Bad files raise :class:`KubeError`."""
        if not self.config.host.startswith("https"):
            return False
        try:
            if self.config.verify:
                context = ssl.create_default_context(cafile=self.config.ca_file)
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if self.config.cert_file:
                context.load_cert_chain(self.config.cert_file, self.config.key_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise KubeError(0, "ClientConfig", f"cannot use the TLS files: {exc}") from None
        return context

    async def _client(self, *, streaming: bool = False) -> aiohttp.ClientSession:
        """The session for requests (at most 32 connections), or the one for watches (no limit: each
        informer holds one connection for as long as it runs; in the shared pool, 32 informers would leave
        no connection for a write)."""
        if streaming:
            if self._watch_session is None or self._watch_session.closed:
                connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=0)
                self._watch_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(), connector=connector)
            return self._watch_session
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=32)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self._session

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()

    async def _token(self) -> str | None:
        """The bearer token. A refreshing source (a token file, an exec plugin) runs off the event loop:
        a plugin that takes seconds must not stall the lease's renewals or the probes."""
        if self.config.token_refresh is None:
            return self.config.token
        try:
            return await asyncio.to_thread(self.config.token_refresh)
        except AutoscalerError as exc:  # a plugin that fails, a token file that vanished
            raise KubeError(0, "Credentials", str(exc)) from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise KubeError(0, "Credentials", f"{type(exc).__name__}: {exc}") from None

    def _headers(self, content_type: str | None, token: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.config.user_agent, **self.config.headers}
        if token:
            token = token.strip()
            headers["Authorization"] = token if token.startswith("Bearer ") else f"Bearer {token}"
        elif self.config.basic is not None:
            pair = f"{self.config.basic[0]}:{self.config.basic[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        if content_type:
            headers["Content-Type"] = content_type
        return {name: _header_value(name, value) for name, value in headers.items()}

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """The wait before retry ``attempt + 1``: a valid ``Retry-After``, else full jitter; always within
        ``[0, backoff_max_s]`` (a server never decides alone how long a tick stalls)."""
        cap = max(0.0, self.config.backoff_max_s)
        if retry_after:
            wait = retry_after_s(retry_after)
            if wait is not None:
                return min(wait, cap)
        ceiling = min(cap, self.config.backoff_base_s * 2**attempt)
        return self._rng.uniform(0, max(0.0, ceiling))

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
        guard: Callable[[], bool] | None = None,
    ) -> Any:
        """One API call. Retries 429/5xx/connection errors (not 409: conflicts are the caller's).

        ``guard`` is checked before every attempt, retries included: a leader's write whose lease was
        lost while it was backing off is not sent (raises :class:`KubeGuardFailed`).
        """

        async def read_object(response: aiohttp.ClientResponse) -> Any:
            return await self._read_object(response, method, path)

        return await self._send(
            method, path, read_object, body=body, params=params, content_type=content_type, guard=guard
        )

    @contextlib.asynccontextmanager
    async def watch(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        idle_timeout_s: float = 600.0,
        max_line_bytes: int = WATCH_LINE_MAX_BYTES,
    ) -> AsyncGenerator[AsyncIterator[WatchEvent], None]:
        """A watch of the collection at ``path`` (``watch=true`` is added to ``params``)::

            async with client.watch(path, params={"resourceVersion": rv}) as events:
                async for event in events:  # {"type": "ADDED", "object": {...}}
                    ...

        Entering opens the stream through :meth:`request`'s path (credentials, 401 refresh, retries of
        429/5xx with ``Retry-After``, the error hierarchy: a 410 raises :class:`KubeGone`); once entered,
        the stream is open. It has no total timeout (the server ends it after ``timeoutSeconds``) but a
        read-idle one: ``idle_timeout_s`` without a byte raises :class:`KubeUnavailable` (``WatchIdle``),
        so a half-open connection cannot hang a watcher. A line longer than ``max_line_bytes``, a line
        that is not JSON, or one that is not ``{type, object}`` with a known type raises
        :class:`KubeInvalidResponse`; an ``ERROR`` event raises its ``Status`` as an error (410
        ``Expired``: :class:`KubeGone`). A clean end of the stream ends the iteration. Leaving the block
        closes the connection.
        """
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.config.timeout_s, sock_read=max(0.001, idle_timeout_s)
        )

        async def keep_open(response: aiohttp.ClientResponse) -> aiohttp.ClientResponse:
            return response

        query = {**(params or {}), "watch": "true"}
        response = await self._send("GET", path, keep_open, params=query, timeout=timeout, keep_open=True)
        events = self._events(response, max_line_bytes, path)
        try:
            yield events
        finally:
            await events.aclose()
            response.close()  # not release(): a stream left mid-way must not go back to the pool

    async def _events(
        self, response: aiohttp.ClientResponse, max_line_bytes: int, path: str
    ) -> AsyncGenerator[WatchEvent, None]:
        async with contextlib.aclosing(_lines(response.content, max_line_bytes, path)) as lines:
            async for line in lines:
                if line.strip():  # blank lines: keep-alives some proxies add
                    yield self._event(line, path)

    def _event(self, line: bytes, path: str) -> WatchEvent:
        """One line of a watch stream as an event; garbage and ``ERROR`` events raise."""
        try:
            event = json.loads(line)
        except ValueError:
            raise KubeInvalidResponse(
                200, "InvalidResponse", f"a watch line is not JSON: {line[:200]!r}", method="WATCH", path=path
            ) from None
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if kind not in _WATCH_TYPES or not isinstance(obj, dict):
            raise KubeInvalidResponse(
                200,
                "InvalidResponse",
                f"a watch line is not an event {{type, object}} of a known type: {line[:200]!r}",
                method="WATCH",
                path=path,
            )
        if kind == "ERROR":
            code = obj.get("code")
            status = code if isinstance(code, int) and not isinstance(code, bool) else 0
            raise self._error(status, obj, "WATCH", path)
        return WatchEvent(type=kind, object=obj)

    async def _send(
        self,
        method: str,
        path: str,
        consume: Callable[[aiohttp.ClientResponse], Awaitable[_T]],
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
        guard: Callable[[], bool] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
        keep_open: bool = False,
    ) -> _T:
        """The request path every call shares: credentials, guard, retries, 401 refresh, ``Retry-After``.

        A successful answer (< 400) is handed to ``consume``; its result is returned. With ``keep_open``
        the response is not released after ``consume`` (a watch: the caller reads and releases it).
        """
        session = await self._client(streaming=keep_open)
        if body is not None and content_type is None:
            content_type = "application/json"
        url = f"{self.config.host}{path}"
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        last: KubeError | None = None
        refreshed = False
        attempt = -1
        while attempt < self.config.retries:
            attempt += 1
            token = await self._token()  # before the guard: obtaining it may take time
            if guard is not None and not guard():
                raise KubeGuardFailed(
                    0,
                    "GuardFailed",
                    "not sent: the write's precondition (leadership) no longer holds",
                    method=method,
                    path=path,
                )
            started = time.perf_counter()
            try:
                response = await session.request(
                    method,
                    url,
                    json=body,
                    params=params,
                    headers=self._headers(content_type, token),
                    server_hostname=self.config.server_name,  # a kubeconfig's tls-server-name
                    **extra,
                )
                handed_over = False
                try:
                    outcome = str(response.status)
                    if response.status < 400:
                        try:
                            value = await consume(response)
                        except KubeError:
                            self._record(method, started, outcome)
                            raise
                        self._record(method, started, outcome)
                        handed_over = keep_open
                        return value
                    _, payload, _ = await _read_body(response)
                    error = self._error(response.status, payload, method, path)
                    self._record(method, started, outcome)
                finally:
                    if not handed_over:
                        response.release()
                if response.status == 401 and not refreshed and self.config.token_invalidate is not None:
                    self.config.token_invalidate()  # client-go drops a cached credential on a 401, asks again
                    refreshed = True
                    attempt -= 1  # the retry with a fresh credential is not one of the retries
                    continue
                if response.status not in _RETRYABLE or attempt == self.config.retries:
                    raise error
                last = error
                await self._sleep(self._backoff(attempt, response.headers.get("Retry-After")))
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._record(method, started, "error")
                last = KubeUnavailable(0, "Unreachable", f"{type(exc).__name__}: {exc}", method=method, path=path)
                if attempt == self.config.retries:
                    raise last from exc
                await self._sleep(self._backoff(attempt, None))
        assert last is not None
        raise last

    @staticmethod
    async def _read_object(response: aiohttp.ClientResponse, method: str, path: str) -> Any:
        """A successful answer's body: a JSON object (``{}`` for an empty 204), else :class:`KubeInvalidResponse`."""
        text, payload, parsed = await _read_body(response)
        if response.status == 204 and not text:
            return {}
        if not parsed or not isinstance(payload, dict):
            what = "not JSON" if not parsed else f"JSON {type(payload).__name__}, not an object"
            raise KubeInvalidResponse(
                response.status,
                "InvalidResponse",
                f"the answer is {what}: {text[:200]!r}",
                method=method,
                path=path,
            )
        return payload

    def _record(self, method: str, started: float, outcome: str) -> None:
        if self._observe is not None:
            self._observe(method, time.perf_counter() - started, outcome)

    @staticmethod
    def _error(status: int, payload: Any, method: str, path: str) -> KubeError:
        reason = message = ""
        if isinstance(payload, dict):
            reason = str(payload.get("reason", ""))[:_TEXT_MAX]
            message = str(payload.get("message", ""))[:_TEXT_MAX]
        cls: type[KubeError] = KubeError
        if status == 404:
            cls = KubeNotFound
        elif status == 409:
            cls = KubeConflict
        elif status == 410:
            cls = KubeGone
        elif status in (401, 403):
            cls = KubeForbidden
        elif status in _RETRYABLE:
            cls = KubeUnavailable
        return cls(status, reason, message, method=method, path=path)
