"""The Prometheus HTTP client against HTTP-level stand-ins (real aiohttp servers on free ports).

Cases:
* instant vector / scalar / NaN and +-Inf values parsed; range queries; POST form with time and timeout;
* retries: 503 and connection errors retried with bounded, jittered, capped backoff; 429 Retry-After
  honoured; attempts bounded, the final error says how many;
* never retried: bad_data (400, names the context and the query), 401/403 (auth error), 404 HTML;
* non-JSON answers; timeouts;
* auth: bearer token re-read from its file per request, basic auth, X-Scope-OrgID, extra headers;
* TLS with a custom CA bundle (a self-signed certificate made with openssl).
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from autoscaler.prometheus import (
    PrometheusAuthError,
    PrometheusClient,
    PrometheusConfig,
    PrometheusHTTPError,
    PrometheusQueryError,
    PrometheusResponseError,
    PrometheusUnreachable,
)
from autoscaler.prometheus.client import AiohttpTransport

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ok(result_type: str, result: object) -> web.Response:
    return web.json_response({"status": "success", "data": {"resultType": result_type, "result": result}})


class Stub:
    """An aiohttp server whose answers are a scripted list; it records every request."""

    def __init__(self) -> None:
        self.answers: list[Handler] = []
        self.seen: list[tuple[str, dict[str, str], dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        self.seen.append((request.path, {k: str(v) for k, v in form.items()}, dict(request.headers)))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return await answer(request)


async def serve(stub: Stub, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Stub, str]]:
    s = Stub()
    runner, url = await serve(s)
    yield s, url
    await runner.cleanup()


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client(url: str, sleeps: Sleeps | None = None, **config: object) -> PrometheusClient:
    return PrometheusClient(PrometheusConfig(url=url, **config), sleep=sleeps or Sleeps())  # type: ignore[arg-type]


def answer(response: Callable[[], web.Response]) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return response()
    return handler


async def test_instant_vector_scalar_and_special_values(stub: tuple[Stub, str]) -> None:
    s, url = stub
    s.answers = [answer(lambda: ok("vector", [
        {"metric": {"pod": "a"}, "value": [1700000000.5, "3"]},
        {"metric": {"pod": "b"}, "value": [1700000000.5, "NaN"]},
        {"metric": {"pod": "c"}, "value": [1700000000.5, "+Inf"]},
    ]))]
    async with client(url) as prom:
        result = await prom.query("x", time_s=1700000000.5)
    assert (result.samples[0].labels["pod"], result.samples[0].value) == ("a", 3.0)
    assert math.isnan(result.samples[1].value) and result.samples[2].value == math.inf
    path, form, _ = s.seen[0]
    assert path == "/api/v1/query" and form == {"query": "x", "timeout": "5s", "time": "1700000000.500"}

    s.answers = [answer(lambda: ok("scalar", [1700000000, "42"]))]
    async with client(url) as prom:
        assert (await prom.query("42")).samples[0].value == 42
    s.answers = [answer(lambda: ok("matrix", [{"metric": {}, "values": [[1, "1"], [2, "2"]]}]))]
    async with client(url) as prom:
        with pytest.raises(PrometheusResponseError, match="range selector"):
            await prom.query("x[5m]")
        series = (await prom.query_range("x", start_s=1, end_s=2, step_s=1)).series
    assert series[0].points == ((1.0, 1.0), (2.0, 2.0))
    assert s.seen[-1][0] == "/api/v1/query_range" and s.seen[-1][1]["step"] == "1"


async def test_retries_5xx_with_bounded_jittered_backoff(stub: tuple[Stub, str]) -> None:
    s, url = stub
    fail = answer(lambda: web.json_response({"status": "error", "errorType": "unavailable", "error": "busy"}, status=503))
    s.answers = [fail, fail, answer(lambda: ok("vector", []))]
    sleeps = Sleeps()
    async with client(url, sleeps, retries=2, backoff_base_s=0.2, backoff_max_s=0.3) as prom:
        assert (await prom.query("x")).samples == ()
        assert prom.requests == 3
    assert len(sleeps.calls) == 2 and 0 <= sleeps.calls[0] <= 0.2 and 0 <= sleeps.calls[1] <= 0.3

    s.answers = [fail]
    sleeps = Sleeps()
    async with client(url, sleeps, retries=3) as prom:
        with pytest.raises(PrometheusQueryError, match="unavailable: busy") as caught:
            await prom.query("x", context="preset vllm.queue_depth")
        assert prom.requests == 4
    assert caught.value.retryable and len(sleeps.calls) == 3


async def test_429_retry_after_is_honoured_up_to_the_cap(stub: tuple[Stub, str]) -> None:
    s, url = stub
    s.answers = [answer(lambda: web.Response(status=429, text="slow down", headers={"Retry-After": "7"})),
                 answer(lambda: ok("vector", []))]
    sleeps = Sleeps()
    async with client(url, sleeps, backoff_max_s=2.0) as prom:
        await prom.query("x")
    assert sleeps.calls == [2.0]


async def test_bad_data_is_not_retried_and_names_what_was_read(stub: tuple[Stub, str]) -> None:
    s, url = stub
    s.answers = [answer(lambda: web.json_response(
        {"status": "error", "errorType": "bad_data", "error": "parse error: unclosed left parenthesis"}, status=400))]
    sleeps = Sleeps()
    async with client(url, sleeps) as prom:
        with pytest.raises(PrometheusQueryError) as caught:
            await prom.query("sum(", context="policy team-a/chat metric queue")
        assert prom.requests == 1
    message = str(caught.value)
    assert message.startswith("policy team-a/chat metric queue: bad_data: parse error")
    assert "'sum('" in message and url in message and not sleeps.calls and not caught.value.retryable


@pytest.mark.parametrize(("status", "error"), [(401, PrometheusAuthError), (403, PrometheusAuthError),
                                               (404, PrometheusHTTPError)])
async def test_client_errors_are_not_retried(stub: tuple[Stub, str], status: int, error: type[Exception]) -> None:
    s, url = stub
    s.answers = [answer(lambda: web.Response(status=status, text="<html>nope</html>"))]
    async with client(url) as prom:
        with pytest.raises(error, match=f"HTTP {status}"):
            await prom.query("x", context="ctx")
        assert prom.requests == 1


async def test_not_json_and_unreachable_and_timeout(stub: tuple[Stub, str], tmp_path: Path) -> None:
    s, url = stub
    s.answers = [answer(lambda: web.Response(status=200, text="hello"))]
    async with client(url) as prom:
        with pytest.raises(PrometheusResponseError, match="not JSON"):
            await prom.query("x")

    sleeps = Sleeps()
    async with client("http://127.0.0.1:9", sleeps, retries=2) as prom:  # port 9 (discard): refused
        with pytest.raises(PrometheusUnreachable, match="after 3 attempts") as caught:
            await prom.query("x", context="preset dcgm.gpu_util")
    assert "preset dcgm.gpu_util" in str(caught.value) and len(sleeps.calls) == 2

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return ok("vector", [])
    s.answers = [slow]
    async with client(url, timeout_s=0.1, retries=0) as prom:
        with pytest.raises(PrometheusUnreachable, match=r"timed out after 0\.1 s"):
            await prom.query("x")


async def test_auth_headers(stub: tuple[Stub, str], tmp_path: Path) -> None:
    s, url = stub
    s.answers = [answer(lambda: ok("vector", []))]
    token = tmp_path / "token"
    token.write_text("first\n")
    async with client(url, bearer_token_file=str(token), tenant="team-a", headers={"X-Extra": "1"}) as prom:
        await prom.query("x")
        token.write_text("rotated")
        await prom.query("x")
    assert [h["Authorization"] for _, _, h in s.seen] == ["Bearer first", "Bearer rotated"]
    assert s.seen[0][2]["X-Scope-OrgID"] == "team-a" and s.seen[0][2]["X-Extra"] == "1"

    async with client(url, basic_auth=("user", "pa:ss")) as prom:
        await prom.query("x")
    assert s.seen[-1][2]["Authorization"] == "Basic dXNlcjpwYTpzcw=="

    async with client(url, bearer_token_file=str(tmp_path / "missing")) as prom:
        with pytest.raises(PrometheusAuthError, match="cannot read bearer token file"):
            await prom.query("x")


async def test_custom_ca_bundle(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    s = Stub()
    s.answers = [answer(lambda: ok("vector", [{"metric": {}, "value": [1, "1"]}]))]
    runner, url = await serve(s, context)
    try:
        async with client(url, ca_file=str(cert)) as prom:
            assert (await prom.query("x")).samples[0].value == 1
        async with client(url, retries=0) as prom:  # the system store does not know it
            with pytest.raises(PrometheusUnreachable, match=r"[Cc]ertificate"):
                await prom.query("x")
    finally:
        await runner.cleanup()


async def test_transport_is_a_seam() -> None:
    """A fake transport needs no server: what tests of higher layers use."""
    from autoscaler.prometheus import HttpResponse

    class Fake:
        async def post_form(self, url: str, form: object, *, headers: object, timeout_s: float) -> HttpResponse:
            body = {"status": "success", "data": {"resultType": "vector", "result": []}}
            return HttpResponse(200, {}, json.dumps(body).encode())

        async def close(self) -> None:
            pass

    async with PrometheusClient(PrometheusConfig(url="http://nowhere"), transport=Fake()) as prom:
        assert (await prom.query("x")).samples == ()
    assert isinstance(AiohttpTransport(), AiohttpTransport)
