"""DevEnvironment on the real API server: JupyterLab through the activator, asleep when idle.

The story of issue #14, with real parts: the operator (in-process), the real Deployment,
ReplicaSet, scheduler, PersistentVolume binder, EndpointSlice and garbage-collector controllers,
Pod Security "restricted" on the namespace, the activator (proxy and scaler, in this process),
a real `jupyter lab` per pod, started by the kubelet stand-in (tests/harness/node_kubelet.py)
with the pod's own command line (only its address and port changed to loopback, its home folder
mapped to a directory that plays the bound PersistentVolume), and headless Chromium:

  JupyterLab loads through the activator; a notebook kernel runs `1+1` over its WebSocket and
  answers 2, and writes a file in the home folder; a busy kernel keeps the environment awake
  past idleTimeout; idle, it sleeps (replicas 0, the claim stays); the next page load shows the
  waking page, which reloads itself into JupyterLab; the file is still there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
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
from tests.browser.chromium import Chromium
from tests.harness import operator_fixtures
from tests.harness.node_kubelet import NodeKubelet, PodRun
from tests.harness.pod_processes import PodProcess, PodProcesses, container_env
from tests.harness.ports import free_port

DEV = k.kind_of(DevEnvironment)
STORAGECLASS = k.Kind("storage.k8s.io/v1", "StorageClass", "storageclasses", namespaced=False)
IMAGE = "registry.example/deep/jupyterlab:1"  # never pulled: no container runtime here
IDENTITY = f"e2e-devenv-activator-{os.getpid()}"
pytestmark = pytest.mark.timeout(300)


class Ides(PodProcesses):
    """One real `jupyter lab` per Running pod; the PersistentVolumes and kube-proxy."""

    def volume_dir(self, claim: str) -> Path:
        """What the PersistentVolume bound to `claim` holds (kept across pods)."""
        path = self.workdir / "volumes" / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(self, pod: dict[str, Any], run: PodRun) -> PodProcess:
        meta, spec = pod["metadata"], pod["spec"]
        [container] = spec["containers"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
                  for v in spec.get("volumes") or [] if "persistentVolumeClaim" in v}
        mount = next(m for m in container["volumeMounts"] if m["name"] in claims)
        home = self.volume_dir(claims[mount["name"]])
        jupyter = {"JUPYTER_RUNTIME_DIR": str(self.workdir / meta["uid"]),
                   "JUPYTER_CONFIG_DIR": str(self.workdir / "config"),
                   "JUPYTER_DATA_DIR": str(self.workdir / "data")}
        env = container_env(container, {**os.environ, **jupyter})
        for var in container.get("env") or []:
            if "secretKeyRef" in (var.get("valueFrom") or {}):  # as the kubelet resolves it
                ref = var["valueFrom"]["secretKeyRef"]
                secret = self.api.get(k.SECRET, ref["name"], meta["namespace"]) or {}
                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        env["HOME"] = str(home)
        port = free_port()
        command = []
        for part in container["command"]:  # the pod's command line; only where it listens changes
            if part == "--ip=0.0.0.0":
                part = "--ip=127.0.0.1"
            elif part == f"--port={IDE_PORT}":
                part = f"--port={port}"
            elif part.startswith("--ServerApp.root_dir="):
                part = f"--ServerApp.root_dir={home}"
            command.append(part)
        command.append("--allow-root")  # the test may run as root; the pod runs as uid 1000
        log = (self.workdir / f"{meta['name']}.log").open("wb")
        process = subprocess.Popen(command, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        return PodProcess(meta["name"], run.ip, port, process)


@pytest.fixture
def ides(kubelet: NodeKubelet, cluster: k.Kube) -> Iterator[Ides]:
    with Ides.attached(kubelet, cluster, "deep-e2e-ides-", grace=10) as found:
        yield found


@pytest.fixture
def home_volume(cluster: k.Kube, namespace: str) -> Iterator[str]:
    """A StorageClass without a provisioner and a PersistentVolume made for the claim (a site's
    admin or provisioner does this); the real PV controller binds them."""
    name = f"{namespace}-manual"
    cluster.request("POST", STORAGECLASS.path(None), {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"})
    cluster.create({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{namespace}-home"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": name,
                 "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": "/tmp/deep-e2e-home"},
                 "claimRef": {"namespace": namespace, "name": "lab-home"}},
    })
    yield name
    cluster.delete(k.PERSISTENTVOLUME, f"{namespace}-home")
    cluster.delete(STORAGECLASS, name)


@pytest.fixture
async def activator_url(e2e_operator: Any, namespace: str, platform_namespace: str,
                        ides: Ides) -> AsyncIterator[str]:
    settings = Settings(platform_namespace=platform_namespace, identity=IDENTITY, tick=0.5)
    cluster = Cluster(e2e_operator.kube, platform_namespace, IDENTITY, namespaces=[namespace])
    activator = Activator(cluster, settings, ides.resolve)
    runner = await serve(activator, "127.0.0.1", 0)
    scaler = asyncio.create_task(Scaler(activator).run())
    yield f"http://127.0.0.1:{bound_port(runner)}/{namespace}/lab"
    scaler.cancel()
    await asyncio.gather(scaler, return_exceptions=True)
    await runner.cleanup()


#: the harness's, with this file's patience
eventually = partial(operator_fixtures.eventually, timeout=120, interval=0.2)


def status(api: k.Kube, namespace: str) -> dict[str, Any]:
    return dict(((api.get(DEV, "lab", namespace) or {}).get("status")) or {})


def replicas(api: k.Kube, namespace: str) -> int | None:
    deployment = api.get(k.DEPLOYMENT, "lab", namespace)
    return None if deployment is None else int(deployment["spec"].get("replicas", 1))


#: in the page: start a kernel (REST), run code over its WebSocket, return the execute_result
RUN_CODE = """
(async (code) => {
  const base = JSON.parse(document.getElementById('jupyter-config-data').textContent).baseUrl;
  const kernel = await (await fetch(base + 'api/kernels', {method: 'POST', body: '{}'})).json();
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}${base}api/kernels/${kernel.id}/channels`);
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = fail; });
  const msgId = 'e2e-' + Math.random();
  const answer = new Promise((ok) => {
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.parent_header.msg_id !== msgId) return;
      if (msg.msg_type === 'execute_result') ok(msg.content.data['text/plain']);
      if (msg.msg_type === 'error') ok('error: ' + msg.content.ename);
    };
  });
  ws.send(JSON.stringify({
    header: {msg_id: msgId, username: 'e2e', session: 'e2e', msg_type: 'execute_request', version: '5.3'},
    parent_header: {}, metadata: {}, channel: 'shell', buffers: [],
    content: {code: code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false},
  }));
  const result = await Promise.race([answer, new Promise((ok) => setTimeout(() => ok('timeout'), 20000))]);
  window.__kernel = kernel.id; window.__ws = ws;
  return result;
})
"""


async def lab_loaded(browser: Chromium) -> bool:
    return bool(await browser.evaluate("!!document.querySelector('.jp-LabShell')"))


async def wait_for_lab(browser: Chromium, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError):  # a reload in progress
            if await lab_loaded(browser):
                return
        await asyncio.sleep(0.5)
    raise AssertionError(f"JupyterLab did not load within {timeout}s: "
                         f"{await browser.evaluate('document.title')!r}")


async def test_jupyterlab_through_the_activator_sleeps_and_wakes_with_the_home_kept(
    e2e_operator: Any, namespace: str, ides: Ides, home_volume: str, activator_url: str
) -> None:
    api = e2e_operator.kube
    api.create({
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "DevEnvironment",
        "metadata": {"name": "lab", "namespace": namespace},
        "spec": {"image": IMAGE, "ide": "jupyterlab", "idleTimeout": "3s", "auth": {"public": True},
                 "resources": {"cpu": "100m", "memory": "256Mi"},
                 "home": {"size": "1Gi", "storageClassName": home_volume}},
    })
    ready = await eventually(
        lambda: status(api, namespace).get("phase") == "Ready" and status(api, namespace),
        "phase Ready (JupyterLab answers its readiness probe)", diagnose=lambda: status(api, namespace))
    assert ready["url"].endswith(f"/{namespace}/lab/") and ready["tokenSecret"] == "lab-ide-token"
    claim = api.get(k.PERSISTENTVOLUMECLAIM, "lab-home", namespace)
    assert claim is not None and claim["status"]["phase"] == "Bound"  # the real PV controller bound it
    [pod] = api.list(k.POD, namespace, label_selector="deep-hybrid-datacloud.eu/kind=devenvironment")
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True  # admitted under "restricted"

    async with Chromium(timeout=60) as browser:
        await browser.goto(f"{activator_url}/lab")
        await wait_for_lab(browser)
        # a kernel over the proxied WebSocket: 1+1, and a file in the home folder
        code = "open('kept.txt', 'w').write('written before sleeping')\n1+1"
        result = await browser.evaluate(f"{RUN_CODE}({json.dumps(code)})")
        assert result == "2"
        # a cell that runs past idleTimeout keeps the environment awake without any traffic
        await browser.evaluate(
            "(() => { window.__ws.send(JSON.stringify({header: {msg_id: 'sleep', username: 'e2e', "
            "session: 'e2e', msg_type: 'execute_request', version: '5.3'}, parent_header: {}, metadata: {}, "
            "channel: 'shell', buffers: [], content: {code: 'import time; time.sleep(8)', silent: false, "
            "store_history: false, user_expressions: {}, allow_stdin: false}})); return true; })()"
        )
        await asyncio.sleep(0.5)
        await browser.goto("about:blank")  # the tab is closed: no request, no WebSocket
        busy_since = time.monotonic()
        await asyncio.sleep(5.5)  # idleTimeout (3 s) has passed; the cell still runs
        assert replicas(api, namespace) == 1, "a busy kernel must keep the environment awake"

        asleep = await eventually(
            lambda: replicas(api, namespace) == 0 and status(api, namespace).get("phase") == "Sleeping"
            and not ides.running() and status(api, namespace), "asleep after idleTimeout", timeout=60,
            diagnose=lambda: (replicas(api, namespace), status(api, namespace), ides.running()))
        assert time.monotonic() - busy_since >= 8  # not before the cell ended
        assert asleep["lastActivityTime"] and asleep["replicas"] == 0
        assert api.get(k.PERSISTENTVOLUMECLAIM, "lab-home", namespace) is not None  # the home stays
        assert ides.started == 1

        # the next page load: the waking page, which reloads itself into JupyterLab
        await browser.goto(f"{activator_url}/lab")
        assert await browser.evaluate("document.getElementById('waking') !== null")
        assert await browser.evaluate("document.querySelector('meta[http-equiv=refresh]') !== null")
        # an API client gets 503 + Retry-After meanwhile
        async with aiohttp.ClientSession() as session, session.get(
            f"{activator_url}/api/status", headers={"Accept": "application/json"}
        ) as answer:
            body = await answer.json()
            if answer.status != 200:  # unless JupyterLab was already back
                assert answer.status == 503 and answer.headers["Retry-After"] and body["reason"] == "Waking"
        await wait_for_lab(browser)
        assert ides.started == 2 and replicas(api, namespace) == 1
        kept = await browser.evaluate(
            "(async () => (await (await fetch(JSON.parse(document.getElementById('jupyter-config-data')"
            ".textContent).baseUrl + 'api/contents/kept.txt')).json()).content)()"
        )
        assert kept == "written before sleeping"
