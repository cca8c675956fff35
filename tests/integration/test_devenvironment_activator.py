"""The activator in front of a DevEnvironment: a real `jupyter lab`, the operator on the emulator.

The test plays the Deployment controller and the endpoint controller (it runs one JupyterLab
with the pod's command line and publishes its EndpointSlice while the Deployment wants a replica);
tests/e2e/test_devenvironment_e2e.py runs the whole story on a real control plane in Chromium.
Here: `spec.auth` (tokenSecret) checked first, the IDE's own token sent upstream instead of the
caller's, REST and a kernel WebSocket proxied, asleep after idleTimeout, and the waking answer:
JSON 503 + Retry-After for an API client, a self-reloading page for a browser.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deep_platform import kube as k
from deep_platform.activator import Activator, Cluster, Scaler, Settings
from deep_platform.activator.proxy import bound_port, serve
from deep_platform.api import DevEnvironment
from deep_platform.builders.devenvironment import IDE_PORT
from tests.harness import operator_fixtures
from tests.harness.operator_fixtures import kube_for, wait_until
from tests.harness.pod_processes import answers
from tests.harness.ports import free_port

DEV = k.kind_of(DevEnvironment)
NS, NAME = "default", "lab"
pytestmark = [pytest.mark.timeout(120), pytest.mark.emulator_only(
    "plays the Deployment and endpoint controllers; tests/e2e/test_devenvironment_e2e.py runs "
    "this story on a real server")]


def jupyter(api: k.Kube, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """JupyterLab with the pod template's own command line and token, on a loopback port."""
    deployment = wait_until(lambda: api.get(k.DEPLOYMENT, NAME, NS), 20, what="the Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    token_ref = next(e for e in container["env"] if e["name"] == "JUPYTER_TOKEN")["valueFrom"]["secretKeyRef"]
    secret = wait_until(lambda: api.get(k.SECRET, token_ref["name"], NS), 20, what="the token Secret")
    port = free_port()
    swap = {"--ip=0.0.0.0": "--ip=127.0.0.1", f"--port={IDE_PORT}": f"--port={port}"}
    command = [swap.get(p, p) for p in container["command"] if not p.startswith("--ServerApp.root_dir=")]
    env = {**os.environ, "JUPYTER_TOKEN": base64.b64decode(secret["data"]["token"]).decode(),
           "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"), "HOME": str(workdir)}
    log = (workdir / "jupyter.log").open("wb")
    process = subprocess.Popen([*command, f"--ServerApp.root_dir={workdir}", "--allow-root"], env=env,
                               cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    return process, port


def publish(api: k.Kube, ready: bool) -> None:
    """The Deployment controller's ready count, and the endpoint controller's EndpointSlice of
    the Service (the pod's address while it is ready)."""
    api.patch_status(k.DEPLOYMENT, NAME, NS, {"replicas": int(ready), "readyReplicas": int(ready)})
    api.apply({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{NAME}-slice", "namespace": NS,
                     "labels": {"kubernetes.io/service-name": NAME}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": IDE_PORT, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": ready}}] if ready else [],
    })


def replicas(api: k.Kube) -> int:
    return int(((api.get(k.DEPLOYMENT, NAME, NS) or {}).get("spec") or {}).get("replicas", 1))


#: the harness's, with this file's patience
eventually = partial(operator_fixtures.eventually, timeout=30)


EXECUTE = {
    "header": {"msg_id": "m1", "username": "t", "session": "s", "msg_type": "execute_request",
               "version": "5.3"},
    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
    "content": {"code": "1+1", "silent": False, "store_history": False, "user_expressions": {},
                "allow_stdin": False},
}


async def test_auth_token_websocket_sleep_and_waking_answers(
    operator: Any, apiserver: Any, tmp_path: Path
) -> None:
    api = operator.kube
    api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "callers", "namespace": NS},
                "data": {"tokens": base64.b64encode(b"caller-token\n").decode()}})
    api.create({"apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "DevEnvironment",
                "metadata": {"name": NAME, "namespace": NS},
                "spec": {"image": "registry.example/jupyter:1", "idleTimeout": "2s",
                         "auth": {"tokenSecret": {"name": "callers"}}}})
    process, port = await asyncio.to_thread(jupyter, api, tmp_path)
    try:
        await eventually(lambda: answers(f"http://127.0.0.1:{port}/{NS}/{NAME}/api"), "JupyterLab up")
        await asyncio.to_thread(publish, api, True)
        activator_kube = kube_for(apiserver.url, component="activator")
        settings = Settings(platform_namespace="deep-platform", identity="devenv-test", tick=0.2)
        activator = Activator(Cluster(activator_kube, "deep-platform", "devenv-test"), settings,
                              lambda _ns, _name: f"http://127.0.0.1:{port}")
        runner = await serve(activator, "127.0.0.1", 0)
        scaler = asyncio.create_task(Scaler(activator).run())
        url = f"http://127.0.0.1:{bound_port(runner)}/{NS}/{NAME}"
        caller = {"Authorization": "Bearer caller-token"}
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{url}/api/status") as refused:
                    assert refused.status == 401  # spec.auth first: no token, no IDE
                # /api/status needs JupyterLab's own token: the activator sent it, not ours
                async with session.get(f"{url}/api/status", headers=caller) as answer:
                    assert answer.status == 200, await answer.text()
                    assert "kernels" in await answer.json()
                async with session.post(f"{url}/api/kernels", headers=caller, data="{}") as made:
                    kernel = await made.json()
                async with session.ws_connect(f"{url}/api/kernels/{kernel['id']}/channels",
                                              headers=caller) as ws:
                    await ws.send_str(json.dumps(EXECUTE))
                    result = None
                    while result is None:
                        message = json.loads((await ws.receive(timeout=30)).data)
                        if message["msg_type"] == "execute_result":
                            result = message["content"]["data"]["text/plain"]
                    assert result == "2"
                    await asyncio.sleep(3)  # an open WebSocket is activity: still awake
                    assert replicas(api) == 1
                # closed: idle for 2 s -> asleep
                await eventually(lambda: replicas(api) == 0, "replicas 0 after idleTimeout")
                status = (api.get(DEV, NAME, NS) or {}).get("status") or {}
                assert status["lastActivityTime"]
                await asyncio.to_thread(publish, api, False)  # the pod is gone: no ready endpoint
                await asyncio.sleep(0.5)  # the activator notices at its next request

                api_client = {**caller, "Accept": "application/json"}
                async with session.get(f"{url}/api/status", headers=api_client) as w:
                    assert w.status == 503 and w.headers["Retry-After"] == "2"
                    assert (await w.json())["reason"] == "Waking"
                await eventually(lambda: replicas(api) == 1, "that request waking it")
                async with session.get(f"{url}/lab", headers={**caller, "Accept": "text/html"}) as page:
                    html = await page.text()
                    assert page.status == 503 and '<meta http-equiv="refresh" content="2">' in html
                    assert "Waking up lab" in html
                await asyncio.to_thread(publish, api, True)
                async with session.get(f"{url}/api/status", headers=caller) as back:
                    assert back.status == 200
        finally:
            scaler.cancel()
            await asyncio.gather(scaler, return_exceptions=True)
            await runner.cleanup()
            activator_kube.close()
    finally:
        process.terminate()
        process.wait(10)
