"""The real `deepaas-run` (the tiny model) behind the real activator, at `/<namespace>/<name>/`:
redirects, the Swagger UI page, its API document and predict all stay inside the prefix.

The service is up through an EndpointSlice with a ready endpoint (as the EndpointSlice controller
writes it), and the activator's resolver maps it to the deepaas-run process on loopback.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness.ports import free_port
from tests.integration.test_activator import activator_running
from tests.integration.test_activator_auth import service

NS, NAME = "default", "tiny"
PREFIX = f"/{NS}/{NAME}"
pytestmark = pytest.mark.timeout(90)


@contextmanager
def deepaas() -> Iterator[str]:
    """A real `deepaas-run` of the tiny model on a loopback port; its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="deepaas-") as tmp:
        env = {**os.environ, "DEEPAAS_V2_MODEL": "tinymodel", "TINYMODEL_STATE_DIR": tmp}
        with open(os.path.join(tmp, "log"), "wb") as log:
            process = subprocess.Popen(
                ["deepaas-run", "--listen-ip", "127.0.0.1", "--listen-port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/v2/models/", timeout=1):
                        break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output = Path(log.name).read_text()[-2000:]
                        raise AssertionError(f"deepaas-run did not start: {output}") from None
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@asynccontextmanager
async def deepaas_behind_activator(apiserver: Any, auth: dict[str, Any] | None = None) -> AsyncIterator[str]:
    """The activator's base URL, with the InferenceService `tiny` served by a real deepaas-run."""
    service(apiserver, NAME, auth if auth is not None else {"public": True})
    with deepaas() as model:
        async with activator_running(apiserver, lambda _ns, _svc: model, "deepaas") as running:
            yield running.url


async def test_deepaas_stays_inside_the_prefix(apiserver: Any) -> None:
    async with deepaas_behind_activator(apiserver) as url, aiohttp.ClientSession() as session:
        # /ui redirects to the Swagger page: inside the prefix, not to the root's /api
        async with session.get(f"{url}{PREFIX}/ui", allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == f"{PREFIX}/api"
        async with session.get(f"{url}{PREFIX}/ui") as response:
            page = await response.text()
            assert response.status == 200 and response.url.path == f"{PREFIX}/api"
        assert f'src="{PREFIX}/static/swagger/swagger-ui-bundle.js"' in page
        assert f'url: "{PREFIX}/swagger.json"' in page
        assert 'src="/static' not in page and 'href="/static' not in page
        async with session.get(f"{url}{PREFIX}/static/swagger/swagger-ui-bundle.js") as response:
            assert response.status == 200 and len(await response.read()) > 100_000
        async with session.get(f"{url}{PREFIX}/swagger.json") as response:
            document = await response.json()
        assert document["basePath"] == PREFIX  # "Try it out" calls PREFIX + /v2/...
        assert "/v2/models/tinymodel/predict/" in document["paths"]

        # the query reaches the model as the client encoded it
        async with session.post(
            f"{url}{PREFIX}/v2/models/tinymodel/predict/?text=caf%C3%A9%20au%20lait"
        ) as r:
            assert (r.status, (await r.json())["predictions"]["text"]) == (200, "café au lait")

        # predict with and without the trailing slash: DEEPaaS's 308 stays inside the prefix
        for path in ("/v2/models/tinymodel/predict/", "/v2/models/tinymodel/predict"):
            form = aiohttp.FormData()
            form.add_field("text", f"through {path}")
            async with session.post(f"{url}{PREFIX}{path}", data=form, allow_redirects=False) as response:
                if path.endswith("/"):
                    answer = await response.json()
                    assert response.status == 200, answer
                    assert answer["predictions"]["text"] == f"through {path}"
                else:
                    assert response.status == 308
                    assert response.headers["Location"] == f"{PREFIX}/v2/models/tinymodel/predict/"
            form = aiohttp.FormData()
            form.add_field("text", f"followed {path}")
            async with session.post(f"{url}{PREFIX}{path}", data=form) as response:
                answer = await response.json()
                assert response.status == 200, answer
                assert answer["predictions"]["text"] == f"followed {path}"
