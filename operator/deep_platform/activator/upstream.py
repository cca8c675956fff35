"""A small pooled HTTP/1.1 client for the activator's upstream hop.

aiohttp's ClientSession costs more per request than the rest of the proxy together (request
objects, tracing hooks, cookie and redirect machinery, several socket sends per request). The
activator needs none of it: one origin per service, plain HTTP on the cluster network, bytes
passed through untouched. This client writes the request head (and a small body) in one send,
reads the response head with one bounded read, and hands the body back as a chunk iterator.
Keep-alive connections are pooled per origin; a connection goes back to the pool only after its
response was read to the end and neither side asked to close it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from urllib.parse import urlsplit

CHUNK = 64 * 1024
#: the whole response head (status line and headers) must fit: a bigger one is refused
MAX_HEAD = 64 * 1024
#: idle keep-alive connections kept per origin
MAX_IDLE = 256
CONNECT_TIMEOUT = 10.0


class UpstreamUnreachable(Exception):
    """No connection could be made (nothing listens, no route, name unknown)."""


class UpstreamProtocolError(Exception):
    """The upstream answered something that is not HTTP/1.x within the limits."""


class Connection:
    __slots__ = ("reader", "reused", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    def close(self) -> None:
        self.writer.close()


class Response:
    """A response head plus its body, to be read once with `chunks()` (or `read()`)."""

    def __init__(
        self,
        pool: Pool,
        origin: tuple[str, int],
        conn: Connection,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        length: int | None,
        chunked: bool,
        keep_alive: bool,
    ) -> None:
        self._pool, self._origin, self._conn = pool, origin, conn
        self.status, self.reason, self.headers = status, reason, headers
        #: Content-Length of the body, None when chunked or delimited by close
        self.length = length
        self.chunked = chunked
        self._keep_alive = keep_alive
        self._done = False

    async def chunks(self) -> AsyncIterator[bytes]:
        reader = self._conn.reader
        if self.chunked:
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise UpstreamProtocolError(f"bad chunk size line {line[:40]!r}") from None
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers: dropped
                        pass
                    break
                while size:
                    data = await reader.read(min(size, CHUNK))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", size)
                    size -= len(data)
                    yield data
                if await reader.readexactly(2) != b"\r\n":
                    raise UpstreamProtocolError("chunk not followed by CRLF")
        elif self.length is not None:
            left = self.length
            while left:
                data = await reader.read(min(left, CHUNK))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
                yield data
        else:  # delimited by the connection's close
            self._keep_alive = False
            while data := await reader.read(CHUNK):
                yield data
        self._done = True

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    def release(self) -> None:
        """Back to the pool if the body was read to its end, else the connection is closed."""
        if self._conn is None:
            return
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if self._done and self._keep_alive:
            self._pool.put(self._origin, conn)
        else:
            conn.close()


class Pool:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._origins: dict[str, tuple[str, int]] = {}

    def origin(self, base_url: str) -> tuple[str, int]:
        origin = self._origins.get(base_url)
        if origin is None:
            parts = urlsplit(base_url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"upstream {base_url!r}: only http://host[:port] is supported")
            origin = self._origins[base_url] = (parts.hostname, parts.port or 80)
        return origin

    def put(self, origin: tuple[str, int], conn: Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if len(idle) < MAX_IDLE and not conn.reader.at_eof():
            conn.reused = True
            idle.append(conn)
        else:
            conn.close()

    async def _get(self, origin: tuple[str, int]) -> Connection:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn
            conn.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*origin, limit=MAX_HEAD), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamUnreachable(f"{origin[0]}:{origin[1]}: {exc or type(exc).__name__}") from exc
        return Connection(reader, writer)

    async def request(
        self,
        method: str,
        base_url: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        length: int | None,
    ) -> Response:
        """Send a request; `body` is bytes, a chunk iterator (sent with `length` as
        Content-Length, or chunked when None) or None. Returns once the head has arrived."""
        origin = self.origin(base_url)
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {origin[0]}:{origin[1]}\r\n"]
        lines.extend(f"{k}: {v}\r\n" for k, v in headers)
        streamed = body is not None and not isinstance(body, bytes)
        if isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}\r\n")
        elif streamed:
            lines.append(
                f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
            )
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        if isinstance(body, bytes):
            head += body
        for attempt in range(2):
            conn = await self._get(origin)
            try:
                conn.writer.write(head)
                if streamed:
                    await self._send_body(conn, body, chunked=length is None)  # type: ignore[arg-type]
                return await self._read_head(origin, conn, method)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                conn.close()
                # a kept-alive connection the upstream closed meanwhile: once more on a fresh one,
                # unless part of a streamed body is gone already
                if conn.reused and not streamed and attempt == 0:
                    continue
                raise UpstreamProtocolError(f"connection lost before the response head: {exc}") from exc
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    @staticmethod
    async def _send_body(conn: Connection, body: AsyncIterator[bytes], chunked: bool) -> None:
        writer = conn.writer
        async for chunk in body:
            if not chunk:
                continue
            if chunked:
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                writer.write(chunk)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _read_head(self, origin: tuple[str, int], conn: Connection, method: str) -> Response:
        reader = conn.reader
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise UpstreamProtocolError(f"response head larger than {MAX_HEAD} bytes") from None
            lines = raw.decode("latin-1").split("\r\n")
            status_line = lines[0].split(" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
                raise UpstreamProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
            try:
                status = int(status_line[1])
            except ValueError:
                raise UpstreamProtocolError(f"bad status {status_line[1][:10]!r}") from None
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue, 103 Early Hints: the final answer follows
            break
        headers: list[tuple[str, str]] = []
        length: int | None = None
        chunked = False
        keep_alive = status_line[0] == "HTTP/1.1"
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise UpstreamProtocolError(f"bad header line {line[:80]!r}")
            value = value.strip()
            lowered = name.lower()
            if lowered == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise UpstreamProtocolError(f"bad Content-Length {value[:20]!r}") from None
            elif lowered == "transfer-encoding":
                chunked = value.lower().endswith("chunked")
            elif lowered == "connection":
                tokens = value.lower()
                if "close" in tokens:
                    keep_alive = False
                elif "keep-alive" in tokens:
                    keep_alive = True
            headers.append((name, value))
        if status == 101:
            raise UpstreamProtocolError("protocol upgrades are not proxied")
        if method == "HEAD" or status in (204, 304):
            length, chunked = 0, False
        elif chunked:
            length = None
        return Response(
            self,
            origin,
            conn,
            status,
            status_line[2] if len(status_line) > 2 else "",
            headers,
            length,
            chunked,
            keep_alive,
        )

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                with contextlib.suppress(Exception):
                    conn.close()
        self._idle.clear()
