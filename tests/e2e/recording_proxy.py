"""A recording reverse proxy in front of a real API server, so that a test sees the answer to
every call a component makes, its kopf watches included (kopf has its own HTTP client, which no
wrapper around `deep_platform.kube.Kube` would see).

Clients talk plain HTTP on loopback with their own bearer token; the proxy forwards each request
unchanged over TLS (the cluster's CA) and streams the answer back (watches stay open), noting
`(who, method, path, status)`, where `who` is the name the test gave that token.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from kubernetes.client import Configuration

#: request headers not passed on (aiohttp sets its own)
HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}


@dataclass(frozen=True)
class Call:
    who: str
    method: str
    path: str  # with the query
    status: int


class RecordingProxy:
    def __init__(self, upstream: Configuration) -> None:
        self.upstream = str(upstream.host).rstrip("/")
        self.ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=upstream.ssl_ca_cert) if upstream.ssl_ca_cert else True)
        self.tokens: dict[str, str] = {}  # bearer token -> who
        self.calls: list[Call] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> RecordingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        async def stop() -> None:
            if self._session is not None:
                await self._session.close()  # ends the watches still streaming
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def client_configuration(self, token: str, who: str) -> Configuration:
        """A client configuration that reaches the API server through this proxy as `who`."""
        self.tokens[token] = who
        configuration = Configuration(host=self.url)
        configuration.api_key = {"BearerToken": f"Bearer {token}"}
        return configuration

    def forbidden(self) -> list[Call]:
        return [c for c in self.calls if c.status == 403]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        authorization = request.headers.get("Authorization", "")
        who = self.tokens.get(authorization.removeprefix("Bearer ").strip(), "unknown")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None, ssl=self.ssl,
        ) as upstream:
            self.calls.append(Call(who, request.method, request.path_qs, upstream.status))
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientError, asyncio.CancelledError):
                pass  # the client or the server ended a watch
            return response


def describe(calls: list[Call]) -> str:
    return "\n".join(f"{c.who}: {c.method} {c.path} -> {c.status}" for c in calls)


def summary(calls: list[Call]) -> dict[str, Any]:
    by: dict[str, int] = {}
    for call in calls:
        by[call.who] = by.get(call.who, 0) + 1
    return by
