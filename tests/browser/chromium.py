"""Headless Chromium driven over the DevTools protocol (a websocket, with aiohttp): a shared test helper.

No browser-downloading package: the Debian `chromium` binary, with the flags that run it here
(`TESTING-NOTES.md`). Use `async with Chromium() as browser: await browser.goto(url)`, then
`await browser.evaluate("document.title")`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    # a page navigated away from closes its WebSockets, as a closed tab does (not kept in the
    # back-forward cache with them open: the DevEnvironment idle test leaves JupyterLab this way)
    "--disable-features=BackForwardCache",
]


def chromium_binary() -> str:
    """The browser's path, or a skip naming the package that provides it."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return str(shutil.which(name))
    pytest.skip("no chromium binary; install the Debian package `chromium` (make test does)")


class Chromium:
    def __init__(self, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.console_errors: list[str] = []

    async def __aenter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        profile = Path(self._profile.name)
        self._process = subprocess.Popen(
            [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its renderer and helper processes go with it on close
        )
        port_file = profile / "DevToolsActivePort"
        deadline = asyncio.get_running_loop().time() + self.timeout
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self._process.poll() is not None or asyncio.get_running_loop().time() > deadline:
                await self._close_process()
                raise RuntimeError("chromium did not start (no DevToolsActivePort)")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self._reader.cancel()
        await self._ws.close()
        await self._session.close()
        await self._close_process()

    async def _close_process(self) -> None:
        group = self._process.pid  # the session leader's pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            await asyncio.to_thread(self._process.wait, 10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        # helpers still writing into the profile would make its removal fail half-way
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        for _ in range(20):
            try:
                self._profile.cleanup()
                return
            except OSError:
                await asyncio.sleep(0.1)
        self._profile.cleanup()

    async def _read(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console_errors.append(json.dumps(data["params"]["exceptionDetails"])[:500])
            else:
                self._events.put_nowait(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        answer = await asyncio.wait_for(future, self.timeout)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return dict(answer.get("result") or {})

    async def wait_event(self, method: str) -> dict[str, Any]:
        while True:
            event = await asyncio.wait_for(self._events.get(), self.timeout)
            if event.get("method") == method:
                return dict(event.get("params") or {})

    async def goto(self, url: str) -> None:
        """Navigate and wait until the page has loaded."""
        while not self._events.empty():
            self._events.get_nowait()
        answer = await self.send("Page.navigate", url=url)
        if answer.get("errorText"):
            raise RuntimeError(f"could not load {url}: {answer['errorText']}")
        await self.wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        answer = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def click(self, selector: str) -> None:
        """Click a link and wait for the page it leads to."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")
        await self.wait_event("Page.loadEventFired")
