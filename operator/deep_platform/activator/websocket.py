"""WebSocket upgrades through the activator: Jupyter kernels and terminals, VS Code.

The upstream connection is opened first, so that the subprotocol the IDE chose (Jupyter's
`v1.kernel.websocket.jupyter.org`) and a refusal (403, 404) reach the client as the IDE gave
them. Then frames are copied both ways, text as text and binary as binary, until either side
closes; the close code goes to the other side. aiohttp answers pings on both legs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

import aiohttp
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

#: headers of the handshake that each leg makes itself
HANDSHAKE_HEADERS = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "content-length",
        "transfer-encoding",
    }
)


def is_upgrade(request: web.Request) -> bool:
    """A WebSocket handshake (`Connection: Upgrade`, `Upgrade: websocket`)."""
    connection = request.headers.get("Connection", "").lower()
    return "upgrade" in connection and request.headers.get("Upgrade", "").lower() == "websocket"


def requested_protocols(request: web.Request) -> list[str]:
    raw = request.headers.get("Sec-WebSocket-Protocol", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


async def _pump(
    source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
    sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
    on_message: Callable[[], None],
) -> None:
    async for message in source:
        on_message()
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.ERROR:
            break
    code = source.close_code or aiohttp.WSCloseCode.OK
    with contextlib.suppress(Exception):
        await sink.close(code=code)


async def proxy(
    request: web.Request,
    session: aiohttp.ClientSession,
    url: str,
    headers: Iterable[tuple[str, str]],
    on_message: Callable[[], None] = lambda: None,
) -> web.StreamResponse:
    """Connect to `url` (ws:// or http://) with `headers`, accept the client's upgrade with the
    same subprotocol, and copy frames both ways until one side closes."""
    forwarded = [(k, v) for k, v in headers if k.lower() not in HANDSHAKE_HEADERS]
    try:
        upstream = await session.ws_connect(
            url,
            headers=forwarded,
            protocols=requested_protocols(request),
            autoping=True,
            max_msg_size=0,  # notebooks send big outputs; the IDE decides what it accepts
        )
    except aiohttp.WSServerHandshakeError as exc:
        # the IDE refused the upgrade: the client sees its status, not a broken socket
        return web.json_response(
            {"reason": "UpgradeRefused", "message": f"the IDE answered {exc.status} to the upgrade"},
            status=exc.status if 400 <= exc.status < 600 else 502,
        )
    client = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (), autoping=True, max_msg_size=0
    )
    try:
        await client.prepare(request)
        tasks = [
            asyncio.create_task(_pump(client, upstream, on_message)),
            asyncio.create_task(_pump(upstream, client, on_message)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await upstream.close()
        if not client.closed:
            await client.close()
    return client
