"""The activator's own HTTP/1.1 upstream client against a real aiohttp server: body framing both
ways, keep-alive reuse, Connection: close, stale pooled connections, header limits."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from deep_platform.activator.upstream import (
    MAX_HEAD,
    Pool,
    UpstreamProtocolError,
    UpstreamUnreachable,
)

pytestmark = pytest.mark.timeout(30)
BIG = os.urandom(3 * 1024 * 1024 + 17)


class Backend:
    def __init__(self) -> None:
        self.connections: set[Any] = set()
        self.url = ""

    async def echo(self, request: web.Request) -> web.StreamResponse:
        self.connections.add(request.transport.get_extra_info("peername") if request.transport else None)
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        return web.json_response(
            {"sha": digest.hexdigest(), "size": size, "chunked": "Transfer-Encoding" in request.headers}
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.connections.add(request.transport.get_extra_info("peername") if request.transport else None)
        response = web.StreamResponse()  # no length: chunked
        await response.prepare(request)
        for start in range(0, len(BIG), 100_000):
            await response.write(BIG[start : start + 100_000])
        await response.write_eof()
        return response

    async def sized(self, request: web.Request) -> web.Response:
        self.connections.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(body=BIG, headers={"X-Kind": "sized"})

    async def close(self, request: web.Request) -> web.Response:
        self.connections.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(text="bye", headers={"Connection": "close"})

    async def huge_head(self, _request: web.Request) -> web.Response:
        return web.Response(text="x", headers={"X-Big": "a" * (MAX_HEAD + 10)})

    async def empty(self, _request: web.Request) -> web.Response:
        return web.Response(status=204)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = Backend()
    app = web.Application(client_max_size=0)
    app.router.add_post("/echo", b.echo)
    app.router.add_get("/stream", b.stream)
    app.router.add_route("*", "/sized", b.sized)
    app.router.add_get("/close", b.close)
    app.router.add_get("/huge", b.huge_head)
    app.router.add_get("/empty", b.empty)
    runner = web.AppRunner(app, access_log=None, max_field_size=2 * MAX_HEAD, keepalive_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    b.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield b
    await runner.cleanup()


async def call(
    pool: Pool, backend: Backend, method: str, path: str, **kw: Any
) -> tuple[int, dict[str, str], bytes]:
    response = await pool.request(
        method, backend.url, path, kw.pop("headers", ()), kw.get("body"), kw.get("length")
    )
    try:
        return response.status, dict(response.headers), await response.read()
    finally:
        response.release()


async def test_bodies_stream_both_ways_with_either_framing(backend: Backend) -> None:
    pool = Pool()
    expected = hashlib.sha256(BIG).hexdigest()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(BIG), 70_000):
            yield BIG[start : start + 70_000]

    for length in (len(BIG), None):  # Content-Length, then chunked
        status, _, body = await call(pool, backend, "POST", "/echo", body=pieces(), length=length)
        answer = json.loads(body)
        assert status == 200 and answer["sha"] == expected and answer["size"] == len(BIG)
        assert answer["chunked"] is (length is None)
    status, headers, body = await call(pool, backend, "GET", "/stream")
    assert status == 200 and headers["Transfer-Encoding"] == "chunked" and body == BIG
    status, headers, body = await call(pool, backend, "GET", "/sized")
    assert status == 200 and headers["X-Kind"] == "sized" and body == BIG
    # all of it over one kept-alive connection
    assert len(backend.connections) == 1
    pool.close()


async def test_head_and_204_have_no_body_and_keep_the_connection(backend: Backend) -> None:
    pool = Pool()
    status, headers, body = await call(pool, backend, "HEAD", "/sized")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(len(BIG))
    status, _, body = await call(pool, backend, "GET", "/empty")
    assert status == 204 and body == b""
    status, _, body = await call(pool, backend, "GET", "/sized")
    assert body == BIG and len(backend.connections) == 1
    pool.close()


async def test_connection_close_is_honoured_and_stale_connections_are_replaced(backend: Backend) -> None:
    pool = Pool()
    assert (await call(pool, backend, "GET", "/close"))[2] == b"bye"
    assert (await call(pool, backend, "GET", "/sized"))[2] == BIG
    assert len(backend.connections) == 2  # the closed one was not reused
    # the upstream closes its idle keep-alive connection (its keep-alive timeout is 1 s)
    await asyncio.sleep(1.5)
    assert (await call(pool, backend, "GET", "/sized"))[2] == BIG
    assert len(backend.connections) == 3
    pool.close()


async def test_oversized_head_is_refused_and_nothing_listening_is_unreachable(backend: Backend) -> None:
    pool = Pool()
    with pytest.raises(UpstreamProtocolError, match="larger than"):
        await call(pool, backend, "GET", "/huge")
    with pytest.raises(UpstreamUnreachable):
        await pool.request("GET", "http://127.0.0.1:9", "/", (), None, None)
    # a response not read to its end never goes back to the pool
    response = await pool.request("GET", backend.url, "/sized", (), None, None)
    response.release()
    assert not any(pool._idle.values())
    pool.close()
