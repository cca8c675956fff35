"""The dashboard in a real browser: headless Chromium over the DevTools protocol."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from deep_platform.config import OperatorConfig
from deep_platform.web import create_app
from tests.browser.chromium import Chromium
from tests.harness.operator_fixtures import kube_for
from tests.unit.dashboard_data import seed

pytestmark = pytest.mark.browser

ROWS = """[...document.querySelectorAll('section.namespace')].map(s => [s.dataset.namespace,
  [...s.querySelectorAll('tbody tr')].map(r => [r.dataset.name, r.querySelector('.phase').textContent])])"""


async def test_dashboard_in_chromium(apiserver: Any, operator_config: OperatorConfig) -> None:
    kube = kube_for(apiserver.url)
    seed(kube, apiserver)
    server = TestServer(create_app(kube, operator_config), host="127.0.0.1")
    await server.start_server()
    try:
        async with Chromium() as browser:
            await browser.goto(str(server.make_url("/dashboard/")))
            assert await browser.evaluate("document.title") == "DEEP training dashboard"
            assert await browser.evaluate(ROWS) == [
                ["alice", [["big-model", "Failed"], ["retrain-phyto", "Running"],
                           ["phyto-api", "ScaledToZero"]]],
                ["bob", [["queued-run", "Queued"]]],
            ]
            # a user follows the link of the failed job: relative links resolve under /dashboard/
            await browser.click('tr[data-name="big-model"] a')
            assert await browser.evaluate("location.pathname") == "/dashboard/trainingjobs/alice/big-model"
            assert await browser.evaluate("document.getElementById('phase').textContent") == "Failed"
            history = await browser.evaluate(
                "[...document.querySelectorAll('table.history tbody tr')].map(r => r.cells[2].textContent)"
            )
            assert history == ["OOMKilled"]
            await browser.click("#back")
            where = await browser.evaluate("location.pathname + location.search")
            assert where == "/dashboard/?namespace=alice"
            assert await browser.evaluate(
                "[...document.querySelectorAll('section.namespace')].map(s => s.dataset.namespace)"
            ) == ["alice"]
            assert browser.console_errors == []
    finally:
        await server.close()
        kube.close()
