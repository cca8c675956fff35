"""InferenceService on a real cluster: scaled to zero, woken by a request through the activator,
back to zero when idle. Needs KUBECONFIG (skipped otherwise) and an image serving DEEPaaS on
5000 as a non-root user (DEEP_E2E_SERVING_IMAGE, default the AI4OS demo app).

The activator runs in this process; it reaches the model's Service through `kubectl
port-forward`, started once the first endpoint is ready (the test runs outside the cluster, so
`<svc>.<ns>.svc` does not resolve here). Everything else is the cluster's own: the Deployment
controller, the kubelet, EndpointSlices, Leases.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from deep_platform import kube as k
from deep_platform.activator import Activator, Cluster, Scaler, Settings
from deep_platform.activator.proxy import bound_port, serve
from deep_platform.api import InferenceService

ISVC = k.kind_of(InferenceService)
IMAGE = os.environ.get("DEEP_E2E_SERVING_IMAGE", "ai4oshub/ai4os-demo-app:latest")
pytestmark = pytest.mark.timeout(900)


class PortForward:
    """A lazy `kubectl port-forward svc/NAME :80`, as the resolver of the activator."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __call__(self, namespace: str, name: str) -> str:
        if self.process is None:
            self.process = subprocess.Popen(
                ["kubectl", "port-forward", "-n", namespace, f"svc/{name}", ":80"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            found = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert found, f"kubectl port-forward said: {line!r}"
            self.url = f"http://127.0.0.1:{found.group(1)}"
        return self.url

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def port_forward() -> Iterator[PortForward]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is needed to reach the Service from outside the cluster")
    forward = PortForward()
    yield forward
    forward.close()


def replicas(api: k.Kube, namespace: str) -> int:
    deployment = api.get(k.DEPLOYMENT, "demo", namespace) or {}
    return int((deployment.get("spec") or {}).get("replicas", 1))


async def eventually(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := await asyncio.to_thread(probe):
            return result
        await asyncio.sleep(1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_scale_from_zero_and_back(
    e2e_operator: Any, namespace: str, platform_namespace: str, port_forward: PortForward
) -> None:
    api = e2e_operator.kube
    api.create(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "demo", "namespace": namespace},
            "spec": {"image": IMAGE, "scaling": {"scaleToZeroAfter": "20s", "maxReplicas": 1}},
        }
    )
    settings = Settings(platform_namespace=platform_namespace, identity=f"e2e-{namespace}", tick=1)
    activator = Activator(Cluster(api, platform_namespace, settings.identity), settings, port_forward)
    runner = await serve(activator, "127.0.0.1", 0)
    scaler = asyncio.create_task(Scaler(activator).run())
    try:
        await eventually(lambda: replicas(api, namespace) == 0, 300, "scale to zero after creation")
        url = f"http://127.0.0.1:{bound_port(runner)}/{namespace}/demo/v2/models/"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            body = await response.json()
            assert response.status == 200, body
        assert body["models"], body
        status = (api.get(ISVC, "demo", namespace) or {}).get("status") or {}
        assert status.get("coldStarts", 0) >= 1
        assert status.get("lastRequestTime")
        await eventually(lambda: replicas(api, namespace) == 0, 120, "idle back to zero")
        await eventually(
            lambda: any(
                c["type"] == "ScaledToZero" and c["status"] == "True"
                for c in ((api.get(ISVC, "demo", namespace) or {}).get("status") or {}).get("conditions", [])
            ),
            60,
            "ScaledToZero=True",
        )
    finally:
        scaler.cancel()
        await asyncio.gather(scaler, return_exceptions=True)
        await runner.cleanup()
