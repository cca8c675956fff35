"""The catalogue page in real headless Chromium, driven over the DevTools protocol: what a person
sees on the list, typing into the search box, and a module's page."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest
import yaml
from aiohttp import web

from deep_platform.api import Module
from deep_platform.builders.module import build_catalogue_entry, index_item
from deep_platform.catalogue.index import write_index
from deep_platform.config import OperatorConfig
from deep_platform.web import create_app
from tests.browser.chromium import Chromium
from tests.harness.operator_fixtures import kube_for
from tests.harness.ports import free_port

pytestmark = pytest.mark.browser
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "module.yaml"



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


async def test_a_person_browses_and_searches_the_catalogue(apiserver: Any) -> None:
    config = OperatorConfig(platform_namespace="deep-platform")
    kube = kube_for(apiserver.url)
    await asyncio.to_thread(publish, kube, config.platform_namespace)
    runner = web.AppRunner(create_app(kube, config))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with Chromium() as page:
            await page.goto(f"http://127.0.0.1:{port}/")  # redirected to /catalogue/
            text = await page.evaluate("document.body.innerText")
            assert "DEEP Open Catalogue" in text
            assert "Phytoplankton species classifier (VLIZ)" in text and "Bird sound finder" in text
            assert "2 of 2 modules" in text
            assert "Finds birds in <b>audio</b>" in text  # shown as written, not interpreted

            await page.evaluate("document.getElementById('search').focus()")
            await page.send("Input.insertText", text="plankton")
            await page.send("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter",
                            windowsVirtualKeyCode=13, text="\r")
            await page.wait_event("Page.loadEventFired")
            text = await page.evaluate("document.body.innerText")
            assert "1 of 2 modules" in text
            assert "Phytoplankton species classifier" in text and "Bird sound finder" not in text

            await page.click(".module h2 a")
            text = await page.evaluate("document.body.innerText")
            assert "Identify the species level of Plankton" in text
            assert "Provided by VLIZ (Flanders Marine Institute)" in text  # Markdown link as text
            assert "kind: TrainingJob" in text and "kind: InferenceService" in text
            assert "module: phyto-plankton-classification" in text
            links = await page.evaluate("[...document.querySelectorAll('#description a')].map(a => a.href)")
            assert "https://www.vliz.be/nl" in links
            assert page.console_errors == []
    finally:
        await runner.cleanup()
        kube.close()
