"""DevEnvironment proxying: WebSocket round trips and small HTTP requests through the
activator's DevEnvironment path (activator/devenv.py, activator/websocket.py) against the same
upstream reached directly, in the same run. Prints the ratios (1.0 = as fast as direct).

The upstream is an aiohttp echo server (a kernel's WebSocket answers each message; a Jupyter
REST call is a small GET). The activator part runs with its routing already decided and the
environment awake: what is measured is the cost per message and per request of the proxy.

    python bench/devenv_proxy.py [--messages 5000] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from typing import Any

import aiohttp
from aiohttp import web

from deep_platform.activator.devenv import DevEnvironments
from deep_platform.activator.routes import Target
from deep_platform.auth import Policy

NS, NAME = "bench", "lab"


class AwakeCluster:
    """The two reads the DevEnvironment path makes on a warm environment: a ready endpoint, and
    the IDE token (read once, then cached)."""

    namespaces: list[str | None] = [None]

    def ready_count(self, _namespace: str, _name: str) -> int:
        return 1

    def secret(self, _namespace: str, _name: str) -> dict[str, Any]:
        return {"data": {"token": base64.b64encode(b"bench-token").decode()}}


async def upstream_app() -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data)
        return ws

    async def status(_request: web.Request) -> web.Response:
        return web.json_response({"started": "now", "kernels": 1})

    app = web.Application()
    app.router.add_get(f"/{NS}/{NAME}/api/kernels/k/channels", echo)
    app.router.add_get(f"/{NS}/{NAME}/api/status", status)
    return app


async def start(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    return runner, int(server.sockets[0].getsockname()[1])


async def ws_round_trips(url: str, messages: int) -> float:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        payload = '{"header": {"msg_type": "execute_request"}, "content": {"code": "1+1"}}'
        started = time.perf_counter()
        for _ in range(messages):
            await ws.send_str(payload)
            await ws.receive()
        return messages / (time.perf_counter() - started)


async def http_requests(url: str, requests: int) -> float:
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        for _ in range(requests):
            async with session.get(url) as answer:
                await answer.read()
        return requests / (time.perf_counter() - started)


async def main(messages: int, requests: int) -> None:
    upstream, upstream_port = await start(await upstream_app())
    cluster: Any = AwakeCluster()
    envs = DevEnvironments(cluster, lambda _ns, _name: f"http://127.0.0.1:{upstream_port}")
    target = Target("DevEnvironment", NS, NAME, NAME, Policy(public=True))

    async def handle(request: web.Request) -> web.StreamResponse:
        return await envs.handle(request, target)

    proxy_app = web.Application()
    proxy_app.router.add_route("*", "/{tail:.*}", handle)
    proxy, proxy_port = await start(proxy_app)
    direct = f"127.0.0.1:{upstream_port}/{NS}/{NAME}"
    proxied = f"127.0.0.1:{proxy_port}/{NS}/{NAME}"
    try:
        await ws_round_trips(f"ws://{proxied}/api/kernels/k/channels", 200)  # warm-up
        ws_direct = await ws_round_trips(f"ws://{direct}/api/kernels/k/channels", messages)
        ws_proxied = await ws_round_trips(f"ws://{proxied}/api/kernels/k/channels", messages)
        http_direct = await http_requests(f"http://{direct}/api/status", requests)
        http_proxied = await http_requests(f"http://{proxied}/api/status", requests)
    finally:
        await envs.close()
        await proxy.cleanup()
        await upstream.cleanup()
    print(f"WebSocket round trips/s: direct {ws_direct:.0f}, through the activator {ws_proxied:.0f}, "
          f"ratio {ws_proxied / ws_direct:.2f}")
    print(f"HTTP GET requests/s:     direct {http_direct:.0f}, through the activator {http_proxied:.0f}, "
          f"ratio {http_proxied / http_direct:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    options = parser.parse_args()
    asyncio.run(main(options.messages, options.requests))
