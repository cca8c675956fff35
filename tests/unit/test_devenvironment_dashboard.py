"""The dashboard lists a user's DevEnvironments with their state and the link to the IDE."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from deep_platform import kube as k
from deep_platform.api import DevEnvironment
from deep_platform.config import OperatorConfig
from deep_platform.web import create_app
from tests.harness.operator_fixtures import kube_for

DEV = k.kind_of(DevEnvironment)


def devenv(name: str, phase: str, reason: str, ready: str) -> dict[str, Any]:
    return {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "DevEnvironment",
        "metadata": {"name": name, "namespace": "alice"},
        "spec": {"module": "plankton", "ide": "jupyterlab",
                 "resources": {"gpu": {"count": 1, "product": "NVIDIA-H200"}}},
        "status": {"phase": phase, "url": f"http://activator.test/alice/{name}/",
                   "lastActivityTime": "2026-05-01T10:00:00Z",
                   "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": reason,
                                   "lastTransitionTime": "2026-05-01T10:00:00Z"}]},
    }


async def test_environments_with_state_and_link(apiserver: Any, operator_config: OperatorConfig) -> None:
    kube, web = kube_for(apiserver.url), kube_for(apiserver.url, component="web")
    apiserver.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "alice"}})
    for body in (devenv("notebook", "Sleeping", "Sleeping", "True"),
                 devenv("broken", "Failed", "NameTaken", "False")):
        status = body.pop("status")
        kube.create(body)
        kube.patch_status(DEV, body["metadata"]["name"], "alice", status)
    try:
        async with TestClient(TestServer(create_app(web, operator_config))) as client:
            html = await (await client.get("/dashboard/")).text()
            assert '<table class="devenvironments">' in html
            assert 'href="http://activator.test/alice/notebook/"' in html  # the link to the IDE
            assert 'class="phase phase-Sleeping">Sleeping' in html
            assert 'class="phase phase-Failed">Failed' in html and "NameTaken" in html
            assert "1 x NVIDIA-H200" in html
            page = await client.get("/dashboard/devenvironments/alice/notebook")
            assert page.status == 200
            detail = await page.text()
            assert "Last activity" in detail and "jupyterlab" in detail
    finally:
        kube.close()
        web.close()
