"""The platform's web entry points: health, and the short paths people type."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from deep_platform.config import OperatorConfig
from deep_platform.web import create_app
from tests.harness.operator_fixtures import kube_for


async def test_health_and_redirects() -> None:
    app = create_app(kube_for("http://127.0.0.1:9"), OperatorConfig())
    async with TestClient(TestServer(app)) as client:
        health = await client.get("/healthz")
        assert health.status == 200
        for path, target in (("/", "/catalogue/"), ("/catalogue", "/catalogue/"),
                             ("/dashboard", "/dashboard/")):
            response = await client.get(path, allow_redirects=False)
            assert (response.status, response.headers["Location"]) == (302, target)
