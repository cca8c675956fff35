"""The chart's RBAC on a real API server: the chart is installed (`helm install`, with the
options that add grants: `storage.csiDriver`, `gpuAgent.podMapping`), and the operator, the
activator, the web app and the GPU agent each run AS the chart's ServiceAccount (a token from
TokenRequest) through their normal work, with every call they make, kopf's watches included,
passing through a recording proxy (recording_proxy.py): none may be Forbidden.

The emulator-based `tests/chart/test_rbac.py` checks that the roles are exactly the calls; this
checks that the real authorizer agrees (aggregation, subresources, verbs of server-side apply,
kopf's own calls as the real server answers them).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from deep_platform import kube as k
from deep_platform.activator import Activator, Cluster, Scaler, Settings
from deep_platform.activator.proxy import bound_port, serve
from deep_platform.api import DevEnvironment, InferenceService, Module, TrainingJob
from deep_platform.config import OperatorConfig
from deep_platform.gpu.agent import ConfigMapPublisher, GpuAgent, pods_on_node
from deep_platform.gpu.inventory import LABEL as INVENTORY_LABEL
from deep_platform.operator import run
from deep_platform.signin import OIDC, SignInSettings
from deep_platform.signin.session import SESSION, SESSION_COOKIE, CookieSealer
from deep_platform.web import create_app
from tests.chart import tools
from tests.e2e.conftest import example
from tests.e2e.recording_proxy import RecordingProxy, describe, summary
from tests.harness import realserver
from tests.harness.operator_fixtures import wait_until
from tests.unit.gpu_fakes import MIB, FakeNvml, a100

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "deep-platform"
COMPONENTS = ("operator", "activator", "web", "gpu-agent")
#: every option that adds grants (as tests/chart/test_rbac.py renders it)
EVERY_PATH_VALUES = ["--set", "storage.csiDriver=csi-rclone", "--set", "gpuAgent.podMapping=true"]
MODULES, TRAININGJOBS, ISVCS = k.kind_of(Module), k.kind_of(TrainingJob), k.kind_of(InferenceService)
DEVENVS = k.kind_of(DevEnvironment)


def helm(server: realserver.RealServer, *args: str) -> str:
    config = ["--kubeconfig", str(server.kubeconfig)] if server.kubeconfig else []
    done = subprocess.run([str(tools.helm(4)), *args, *config], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def token_for(cluster: k.Kube, namespace: str, service_account: str) -> str:
    """A token of the ServiceAccount, by TokenRequest (as the kubelet gets one for a pod)."""
    answer = cluster.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
              "spec": {"expirationSeconds": 3600}})
    return str(answer["status"]["token"])


class Platform:
    """The chart installed, and one API client per component, as its ServiceAccount."""

    def __init__(self, cluster: k.Kube, namespace: str, release: str, proxy: RecordingProxy) -> None:
        self.namespace = namespace
        self.proxy = proxy
        self.clients = {
            component: k.Kube(proxy.client_configuration(
                token_for(cluster, namespace, f"{release}-deep-platform-{component}"), component),
                component=component)
            for component in COMPONENTS
        }


@pytest.fixture
def platform(
    cluster: k.Kube, crds_installed: None, real_server: realserver.RealServer
) -> Iterator[Platform]:
    suffix = uuid.uuid4().hex[:6]
    namespace, release = f"deep-rbac-{suffix}", f"rbac-{suffix}"
    helm(real_server, "install", release, str(CHART), "-n", namespace, "--create-namespace",
         *EVERY_PATH_VALUES)
    proxy = RecordingProxy(cluster.configuration).start()
    try:
        yield Platform(cluster, namespace, release, proxy)
    finally:
        proxy.stop()
        helm(real_server, "uninstall", release, "-n", namespace)
        cluster.delete(k.NAMESPACE, namespace)


def namespace_of(path: str) -> str | None:
    parts = path.split("?")[0].split("/")
    return parts[parts.index("namespaces") + 1] if "namespaces" in parts[:-1] else None


def no_forbidden_call(platform: Platform, *components: str, namespaces: tuple[str, ...] = ()) -> None:
    """No component was refused. With `namespaces`, only calls there (or cluster-wide) count: an
    object an earlier test left in its namespace, now being deleted, is refused with a 403
    ("being terminated") that says nothing of RBAC."""
    calls = [c for c in platform.proxy.calls if c.who in components]
    made = summary(calls)
    assert all(made.get(c) for c in components), f"calls per component: {made}"
    assert not [c for c in platform.proxy.calls if c.who == "unknown"], "a call without a known token"
    forbidden = [c for c in calls if c.status == 403
                 and (not namespaces or namespace_of(c.path) in (None, *namespaces))]
    assert not forbidden, "forbidden on the real server:\n" + describe(forbidden)


def conditions(obj: dict[str, Any] | None) -> dict[str, str]:
    return {c["type"]: c.get("reason", "") for c in ((obj or {}).get("status") or {}).get("conditions", [])}


async def test_every_component_as_its_service_account(
    platform: Platform, cluster: k.Kube, namespace: str, kubelet: Any, tmp_path: Path
) -> None:
    """The operator reconciles a Module, a TrainingJob and an InferenceService; the activator
    wakes the service (scale subresource) and runs its scaler (Leases); the web app serves the
    catalogue and the dashboard; the GPU agent publishes its inventory and maps a GPU process
    to its pod. Every call as the chart's ServiceAccount, none forbidden."""
    api = platform.clients
    config = OperatorConfig(platform_namespace=platform.namespace, namespaces=[], metrics_port=0,
                            health_port=0, activator_url="http://activator.test")
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(run(api["operator"], config, stop_flag=stop, ready_flag=ready)),
        daemon=True)
    thread.start()
    module = example("module.yaml")
    module_name = module["metadata"]["name"]
    try:
        assert await asyncio.to_thread(ready.wait, 60), "the operator did not start within 60 s"
        cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "nextcloud-credentials", "namespace": namespace},
            "stringData": {"user": "u", "password": "p"}})
        cluster.apply(module)
        job = example("trainingjob.yaml", namespace)
        cluster.create(job)
        isvc = example("inferenceservice.yaml", namespace)
        isvc["spec"]["scaling"]["scaleToZeroAfter"] = "30s"
        cluster.create(isvc)
        # a DevEnvironment: its IDE-token Secret (create only), home claim, Deployment, Service
        devenv = {"apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "DevEnvironment",
                  "metadata": {"name": "lab", "namespace": namespace},
                  "spec": {"image": "registry.example/jupyter:1", "idleTimeout": "1s",
                           "auth": {"public": True}}}
        cluster.create(devenv)

        def reconciled(kind: k.Kind, name: str, ns: str | None = None) -> dict[str, Any] | None:
            obj = cluster.get(kind, name, ns)
            status = (obj or {}).get("status") or {}
            return obj if status.get("observedGeneration") == (obj or {})["metadata"]["generation"] else None

        made = ((MODULES, module_name, None), (TRAININGJOBS, job["metadata"]["name"], namespace),
                (ISVCS, isvc["metadata"]["name"], namespace), (DEVENVS, "lab", namespace))
        for kind, name, ns in made:
            def done(kind: k.Kind = kind, name: str = name, ns: str | None = ns) -> dict[str, Any] | None:
                return reconciled(kind, name, ns)

            await asyncio.to_thread(wait_until, done, 45, 0.2, f"{kind.kind} {name} reconciled")
        deployment = await asyncio.to_thread(
            wait_until, lambda: cluster.get(k.DEPLOYMENT, isvc["metadata"]["name"], namespace), 30, 0.2,
            "the InferenceService's Deployment")

        # the activator: a request wakes the service through the scale subresource
        settings = Settings(platform_namespace=platform.namespace, identity=f"rbac-{namespace}", tick=0.2,
                            cold_start_timeout=5)
        activator = Activator(Cluster(api["activator"], platform.namespace, settings.identity), settings,
                              lambda _ns, _name: "http://127.0.0.1:9")
        runner = await serve(activator, "127.0.0.1", 0)
        scaler = asyncio.create_task(Scaler(activator).run())
        try:
            url = f"http://127.0.0.1:{bound_port(runner)}/{namespace}/{isvc['metadata']['name']}/v2/models/"
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                await response.read()
            # the DevEnvironment: routed, asleep (no ready pod): the waking answer, a wake-up
            # (lastActivityTime, scale), the IDE token read only once it answers
            dev_url = f"http://127.0.0.1:{bound_port(runner)}/{namespace}/lab/api"
            async with aiohttp.ClientSession() as session, session.get(dev_url) as response:
                assert response.status == 503, await response.text()
            await asyncio.to_thread(
                wait_until,
                lambda: ((cluster.get(DEVENVS, "lab", namespace) or {}).get("status") or {})
                .get("lastActivityTime"), 20, 0.2, "the activator recorded the DevEnvironment's activity")
            await asyncio.to_thread(
                wait_until,
                lambda: (cluster.get(k.DEPLOYMENT, isvc["metadata"]["name"], namespace) or deployment)
                ["spec"].get("replicas", 1) >= 1, 20, 0.2, "the activator scaled the service up")
            await asyncio.sleep(1)  # a few scaler ticks: Leases, load, decisions
        finally:
            scaler.cancel()
            await runner.cleanup()

        # the web app: catalogue and dashboard, with sign-in on: a signed-in admin's session, so
        # that the dashboard asks SubjectAccessReviews (as the web ServiceAccount) and shows all
        key = os.urandom(32)
        signin = SignInSettings(mode=OIDC, issuer="https://iam.invalid", client_id="deep", cookie_key=key)
        session = CookieSealer(key).seal(SESSION, {"sub": "admin", "groups": ["system:masters"]}, 600)
        async with TestClient(TestServer(create_app(api["web"], config, signin)),
                              cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            client.session.cookie_jar.update_cookies({SESSION_COOKIE: session})
            for path in ("/catalogue/", "/catalogue/modules?format=json", f"/catalogue/modules/{module_name}",
                         "/dashboard/", f"/dashboard/?namespace={namespace}",
                         f"/dashboard/trainingjobs/{namespace}/{job['metadata']['name']}",
                         f"/dashboard/devenvironments/{namespace}/lab"):
                response = await client.get(path)
                assert response.status == 200, (path, response.status, await response.text())
        # the dashboard asked what the signed-in person may list, and was allowed to ask
        reviews = [c for c in platform.proxy.calls if c.who == "web" and "/subjectaccessreviews" in c.path]
        assert reviews and all(c.status == 201 for c in reviews), reviews

        # the GPU agent, with pod mapping: its node's pods, then its inventory ConfigMap
        pod = cluster.list(k.POD, namespace)[0]
        node = pod["spec"].get("nodeName") or "gpu-node-1"
        proc = tmp_path / "4242"
        proc.mkdir()
        (proc / "cgroup").write_text(f"0::/kubepods/pod{pod['metadata']['uid']}/c0ffee\n")
        gpu = a100(0, util=50)
        gpu.procs = [(4242, 1024 * MIB)]
        publisher = ConfigMapPublisher(api["gpu-agent"], platform.namespace)
        agent = GpuAgent(FakeNvml([gpu]), node, publish=publisher, pods=pods_on_node(api["gpu-agent"], node),
                         proc_root=tmp_path)
        await asyncio.to_thread(agent.step)
        assert cluster.list(k.CONFIGMAP, platform.namespace, label_selector=INVENTORY_LABEL), "no inventory"
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        for kind, name, ns in ((ISVCS, "plankton", namespace), (TRAININGJOBS, "plankton-retrain", namespace),
                               (DEVENVS, "lab", namespace), (MODULES, module_name, None)):
            try:
                cluster.delete(kind, name, ns)
            except k.ApiError as exc:
                if not exc.not_found:
                    raise
    no_forbidden_call(platform, *COMPONENTS, namespaces=(namespace, platform.namespace))
