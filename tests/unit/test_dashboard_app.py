"""The dashboard app over HTTP, reading from the API server emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from deep_platform.config import OperatorConfig
from deep_platform.web import create_app
from tests.harness.operator_fixtures import kube_for
from tests.unit.dashboard_data import seed


@pytest.fixture
async def client(apiserver: Any, operator_config: OperatorConfig) -> AsyncIterator[TestClient[Any, Any]]:
    kube, web = kube_for(apiserver.url), kube_for(apiserver.url, component="web")  # web: as the CLI builds it
    seed(kube, apiserver)
    async with TestClient(TestServer(create_app(web, operator_config))) as client:
        yield client
    kube.close()
    web.close()


async def test_overview_lists_jobs_and_services_per_namespace(client: TestClient[Any, Any]) -> None:
    response = await client.get("/dashboard/")
    assert response.status == 200
    html = await response.text()
    assert html.index("Namespace alice") < html.index("Namespace bob")
    for text in ("retrain-phyto", "big-model", "queued-run", "phyto-api", "OOMKilled",
                 "http://activator.deep-platform.test/alice/phyto-api/", "ScaledToZero",
                 "1 x NVIDIA-A100-SXM4-80GB", "training pod retrain-phyto-x7k2p runs on gpu-node-1"):
        assert text in html, text
    assert 'href="trainingjobs/alice/retrain-phyto"' in html  # relative: works under any prefix


async def test_namespace_filter(client: TestClient[Any, Any]) -> None:
    html = await (await client.get("/dashboard/", params={"namespace": "bob"})).text()
    assert "queued-run" in html and "retrain-phyto" not in html
    html = await (await client.get("/dashboard/", params={"namespace": "nobody"})).text()
    assert "No TrainingJob or InferenceService in namespace nobody" in html


async def test_job_page_shows_its_history(client: TestClient[Any, Any]) -> None:
    response = await client.get("/dashboard/trainingjobs/alice/big-model")
    assert response.status == 200
    html = await response.text()
    assert "Failed" in html and "12m3s" in html
    assert "the training container ran out of memory" in html
    assert 'class="event-Warning"' in html


async def test_service_page(client: TestClient[Any, Any]) -> None:
    response = await client.get("/dashboard/inferenceservices/alice/phyto-api")
    assert response.status == 200
    assert "http://activator.deep-platform.test/alice/phyto-api/" in await response.text()


async def test_missing_job_is_a_404_page(client: TestClient[Any, Any]) -> None:
    response = await client.get("/dashboard/trainingjobs/alice/typo")
    assert response.status == 404
    assert "TrainingJob alice/typo does not exist" in await response.text()


async def test_unwatched_namespace_is_not_shown(apiserver: Any) -> None:
    kube, web = kube_for(apiserver.url), kube_for(apiserver.url, component="web")
    seed(kube, apiserver)
    config = OperatorConfig(namespaces=["bob"], metrics_port=0, health_port=0)
    async with TestClient(TestServer(create_app(web, config))) as client:
        html = await (await client.get("/dashboard/")).text()
        assert "queued-run" in html and "retrain-phyto" not in html
        assert (await client.get("/dashboard/trainingjobs/alice/retrain-phyto")).status == 404
    kube.close()
    web.close()
