"""DEEPaaS's Swagger UI through the activator, in headless Chromium: a user opens
`/<namespace>/<name>/ui`, the page loads inside the prefix, and "Try it out" on predict reaches
the real `deepaas-run` (the tiny model) and shows its answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.browser.chromium import Chromium
from tests.integration.test_activator_deepaas import PREFIX, deepaas_behind_activator

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

PREDICT = "/v2/models/tinymodel/predict/"
#: poll in the page until `check` returns something truthy (Swagger UI renders asynchronously)
WAIT = """(check, what) => new Promise((resolve, reject) => {
  const end = Date.now() + 15000;
  const tick = () => {
    let found = null;
    try { found = check(); } catch (e) {}
    if (found) return resolve(found instanceof Element ? true : found);
    if (Date.now() > end) return reject(new Error('timed out waiting for ' + what));
    setTimeout(tick, 100);
  };
  tick();
})"""


async def step(browser: Chromium, check: str, what: str) -> Any:
    return await browser.evaluate(f"({WAIT})(() => {check}, {json.dumps(what)})")


async def test_try_it_out_on_predict_through_the_activator(apiserver: Any, tmp_path: Path) -> None:
    async with deepaas_behind_activator(apiserver) as url, Chromium() as browser:
        await browser.goto(f"{url}{PREFIX}/ui")
        assert await browser.evaluate("location.pathname") == f"{PREFIX}/api"
        block = (
            "[...document.querySelectorAll('.opblock-post')].find(b => "
            f"b.querySelector('.opblock-summary-path')?.dataset.path === {json.dumps(PREDICT)})"
        )
        await step(browser, block, "the predict operation in the Swagger UI")
        await browser.evaluate(f"{block}.querySelector('.opblock-summary-control').click()")
        await step(browser, f"{block}.querySelector('.try-out__btn')", "the Try it out button")
        await browser.evaluate(f"{block}.querySelector('.try-out__btn').click()")
        text_input = f"{block}.querySelector('tr[data-param-name=\"text\"] input')"
        await step(browser, text_input, "the text field")
        # React listens to input events: set the value as typing would
        await browser.evaluate(
            "(() => { const input = " + text_input + ";"
            " Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set"
            ".call(input, 'hello from chromium');"
            " input.dispatchEvent(new Event('input', {bubbles: true}));"
            " input.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )
        # and a file to predict on, chosen as through the file dialog
        await browser.evaluate(
            f"{block}.querySelector('tr[data-param-name=\"data\"] input[type=file]').id = 'predict-data'"
        )
        document = await browser.send("DOM.getDocument")
        node = await browser.send(
            "DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#predict-data"
        )
        upload = tmp_path / "input.txt"
        upload.write_bytes(b"twelve bytes")
        await browser.send("DOM.setFileInputFiles", files=[str(upload)], nodeId=node["nodeId"])
        await asyncio.sleep(0.5)  # Swagger UI debounces its fields
        await browser.evaluate(f"{block}.querySelector('button.execute').click()")
        status = await step(
            browser,
            f"{block}.querySelector('.live-responses-table tbody .response-col_status')?.textContent.trim()",
            "the live response",
        )
        assert status == "200", await browser.evaluate(
            f"{block}.querySelector('.live-responses-table').innerText"
        )
        shown = await browser.evaluate(
            f"{block}.querySelector('.live-responses-table tbody .microlight')?.textContent"
        )
        predictions = json.loads(shown)["predictions"]
        assert (predictions["text"], predictions["filename"], predictions["bytes"]) == (
            "hello from chromium",
            "input.txt",
            12,
        )
        request_url = await browser.evaluate(f"{block}.querySelector('.request-url pre')?.textContent")
        assert request_url.startswith(f"{url}{PREFIX}{PREDICT}"), request_url
        assert browser.console_errors == []
