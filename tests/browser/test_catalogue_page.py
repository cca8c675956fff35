"""The catalogue page in real headless Chromium, driven over the DevTools protocol: what a person
sees on the list, typing into the search box, and a module's page."""

from __future__ import annotations

import asyncio
import itertools
import json
import pathlib
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from deep_platform.api import Module
from deep_platform.builders.module import build_catalogue_entry, index_item
from deep_platform.catalogue.index import write_index
from deep_platform.config import OperatorConfig
from deep_platform.web import create_app
from tests.harness.operator_fixtures import kube_for

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "module.yaml"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Page:
    """One browser tab over a DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.ids, self.events = ws, itertools.count(1), asyncio.Queue[dict[str, Any]]()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = json.loads((await self.ws.receive(timeout=20)).data)
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return dict(msg.get("result") or {})
            self.events.put_nowait(msg)

    async def wait_event(self, method: str) -> None:
        while not self.events.empty():
            if self.events.get_nowait().get("method") == method:
                return
        while True:
            msg = json.loads((await self.ws.receive(timeout=20)).data)
            if msg.get("method") == method:
                return

    async def text(self) -> str:
        answer = await self.call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)
        return str(answer["result"]["value"])

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed; `apt-get install chromium` (make test does it)")
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            async with aiohttp.ClientSession() as http:
                targets: list[dict[str, Any]] = []
                for _ in range(100):
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                            targets = [t for t in await r.json() if t["type"] == "page"]
                        if targets:
                            break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                assert targets, "Chromium did not open its DevTools port"
                async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    tab = Page(ws)
                    await tab.call("Page.enable")
                    yield tab
        finally:
            proc.terminate()
            proc.wait(10)


def publish(kube: Any, namespace: str) -> None:
    """Two modules in the catalogue ConfigMaps, as the operator writes them."""
    body = yaml.safe_load(EXAMPLE.read_text())
    other = yaml.safe_load(EXAMPLE.read_text())
    other["metadata"] = {"name": "sound-finder"}
    other["spec"]["metadata"].update(title="Bird sound finder", summary="Finds birds in <b>audio</b>",
                                     tasks=["Classification"], libraries=["PyTorch"], tags=["audio"])
    items = []
    for raw in (body, other):
        raw["metadata"]["uid"] = raw["metadata"]["name"]
        module = Module.from_body(raw)
        kube.apply(build_catalogue_entry(module, namespace))
        items.append(index_item(module))
    write_index(kube, namespace, items)


async def test_a_person_browses_and_searches_the_catalogue(apiserver: Any, page: Page) -> None:
    config = OperatorConfig(platform_namespace="deep-platform")
    kube = kube_for(apiserver.url)
    await asyncio.to_thread(publish, kube, config.platform_namespace)
    runner = web.AppRunner(create_app(kube, config))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await page.goto(f"http://127.0.0.1:{port}/")  # redirected to /catalogue/
        text = await page.text()
        assert "DEEP Open Catalogue" in text
        assert "Phytoplankton species classifier (VLIZ)" in text and "Bird sound finder" in text
        assert "2 of 2 modules" in text
        assert "Finds birds in <b>audio</b>" in text  # shown as written, not interpreted

        await page.call("Runtime.evaluate", expression="document.getElementById('search').focus()")
        await page.call("Input.insertText", text="plankton")
        await page.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter",
                        windowsVirtualKeyCode=13, text="\r")
        await page.wait_event("Page.loadEventFired")
        text = await page.text()
        assert "1 of 2 modules" in text
        assert "Phytoplankton species classifier" in text and "Bird sound finder" not in text

        await page.call("Runtime.evaluate", expression="document.querySelector('.module h2 a').click()")
        await page.wait_event("Page.loadEventFired")
        text = await page.text()
        assert "Identify the species level of Plankton" in text
        assert "Provided by VLIZ (Flanders Marine Institute)" in text  # Markdown link rendered as text
        assert "kind: TrainingJob" in text and "kind: InferenceService" in text
        assert "module: phyto-plankton-classification" in text
        script = "[...document.querySelectorAll('#description a')].map(a => a.href)"
        links = await page.call("Runtime.evaluate", returnByValue=True, expression=script)
        assert "https://www.vliz.be/nl" in links["result"]["value"]
    finally:
        await runner.cleanup()
        kube.close()
