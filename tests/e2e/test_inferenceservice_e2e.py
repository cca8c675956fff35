"""InferenceService on the real API server (shared/k8s: no kubelet, no kube-proxy).

Everything on the way from an InferenceService to a ready endpoint is the real thing: the
operator (in-process), the Deployment and ReplicaSet controllers, the scheduler binding the pods,
the EndpointSlice controller, the garbage collector, Pod Security "restricted". What a cluster
adds below the API server is played here:

- the kubelet: `NodeKubelet` (tests/harness/node_kubelet.py) moves the bound pods through their
  states and gives each a pod IP (10.244.x.y: the API server refuses loopback and link-local
  addresses in EndpointSlices, so the controller would publish no endpoint for 127.0.0.1);
- the container: a real `deepaas-run` serving the tiny model, started on a loopback port when
  its pod turns Running (`on_running`), stopped on graceful deletion (`on_stopped`); the pod
  turns Ready only once that process answers its readiness path (`readiness`);
- kube-proxy: the activator's resolver reads the Service's EndpointSlices, written by the real
  controller, and maps a ready endpoint's pod IP to the loopback port of that pod's process.

The activator and its scaler run in this process, with short scaleToZeroAfter values.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import pytest

from deep_platform import kube as k
from deep_platform.activator import Activator, Cluster, Scaler, Settings
from deep_platform.activator.cluster import SERVICE_NAME_LABEL
from deep_platform.activator.proxy import bound_port, serve
from deep_platform.api import InferenceService
from deep_platform.builders import pod as podparts
from deep_platform.builders.inferenceservice import DEEPAAS_PORT, READINESS_PATH
from tests.harness import operator_fixtures
from tests.harness.node_kubelet import NodeKubelet, Outcome, PodRun, default_outcome
from tests.harness.pod_processes import PodProcess, PodProcesses, answers, container_env, deepaas_run
from tests.harness.ports import free_port

ISVC = k.kind_of(InferenceService)
REPLICASET = k.Kind("apps/v1", "ReplicaSet", "replicasets")
IMAGE = "registry.example/deep/tiny-model:1"  # never pulled: no container runtime here
#: one activator identity for the whole session, so each test finds the scaler Lease its own
IDENTITY = f"e2e-activator-{os.getpid()}"
ENDPOINTSLICE_CONTROLLER = "endpointslice-controller.k8s.io"
pytestmark = pytest.mark.timeout(180)



class Models(PodProcesses):
    """One real `deepaas-run` per Running pod of a service; the pod network and kube-proxy."""

    def start(self, pod: dict[str, Any], run: PodRun) -> PodProcess:
        meta = pod["metadata"]
        base = {**os.environ, "DEEPAAS_V2_MODEL": "tinymodel", "TINYMODEL_STATE_DIR": str(self.workdir)}
        env = container_env(pod["spec"]["containers"][0], base)
        port = free_port()
        log = self.workdir / f"{meta['name']}.log"
        return PodProcess(meta["name"], run.ip, port, deepaas_run(port, env, log), log)

    def check_slice(self, item: dict[str, Any]) -> None:
        assert [p.get("port") for p in item.get("ports") or []] == [DEEPAAS_PORT], item


def answers_at(port: int) -> bool:
    return answers(f"http://127.0.0.1:{port}{READINESS_PATH}")


@pytest.fixture
def models(kubelet: NodeKubelet, cluster: k.Kube) -> Iterator[Models]:
    with Models.attached(kubelet, cluster, "deep-e2e-models-") as found:
        yield found


@dataclass
class RunningActivator:
    activator: Activator
    url: str


@pytest.fixture
async def activator(
    e2e_operator: Any, namespace: str, platform_namespace: str, models: Models
) -> AsyncIterator[Callable[[], Any]]:
    """Starts the activator (proxy and scaler) in this event loop when the test calls it."""
    started: list[tuple[Any, asyncio.Task[None]]] = []

    async def start() -> RunningActivator:
        settings = Settings(
            platform_namespace=platform_namespace, identity=IDENTITY, tick=0.5, cold_start_timeout=60
        )
        cluster = Cluster(e2e_operator.kube, platform_namespace, IDENTITY, namespaces=[namespace])
        found = Activator(cluster, settings, models.resolve)
        runner = await serve(found, "127.0.0.1", 0)
        started.append((runner, asyncio.create_task(Scaler(found).run())))
        return RunningActivator(found, f"http://127.0.0.1:{bound_port(runner)}/{namespace}")

    yield start
    for runner, scaler in started:
        scaler.cancel()
        await asyncio.gather(scaler, return_exceptions=True)
        await runner.cleanup()


def inference_service(name: str, namespace: str, **scaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": IMAGE, "resources": {"cpu": "100m", "memory": "128Mi"}, "scaling": scaling},
    }


#: the harness's, with this file's patience
eventually = partial(operator_fixtures.eventually, timeout=60)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def isvc_status(api: k.Kube, name: str, namespace: str) -> dict[str, Any]:
    return dict(((api.get(ISVC, name, namespace) or {}).get("status")) or {})


def selector(name: str) -> str:
    return f"{podparts.LABEL_KIND}=inferenceservice,{podparts.LABEL_NAME}={name}"


def pods(api: k.Kube, name: str, namespace: str) -> list[dict[str, Any]]:
    return list(api.list(k.POD, namespace, label_selector=selector(name)))


def slices(api: k.Kube, name: str, namespace: str) -> list[dict[str, Any]]:
    return list(api.list(k.ENDPOINTSLICE, namespace, label_selector=f"{SERVICE_NAME_LABEL}={name}"))


def ready_addresses(api: k.Kube, name: str, namespace: str) -> list[str]:
    return sorted(
        ip
        for item in slices(api, name, namespace)
        for endpoint in item.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
        for ip in endpoint["addresses"]
    )


def serving(api: k.Kube, name: str, namespace: str, replicas: int) -> dict[str, Any] | None:
    status = isvc_status(api, name, namespace)
    ready = condition(status, "Ready")
    if (ready.get("status"), ready.get("reason"), status.get("readyReplicas")) == (
        "True",
        "Serving",
        replicas,
    ):
        return status
    return None


def scaled_to_zero(api: k.Kube, name: str, namespace: str, models: Models) -> dict[str, Any] | None:
    status = isvc_status(api, name, namespace)
    if (
        status.get("replicas") == 0
        and condition(status, "ScaledToZero").get("status") == "True"
        and condition(status, "Ready").get("reason") == "ScaledToZero"
        and not pods(api, name, namespace)
        and not [m for m in models.running() if m.pod.startswith(f"{name}-")]  # its model stopped
        and not ready_addresses(api, name, namespace)
    ):
        return status
    return None


async def test_ready_through_the_real_controllers(e2e_operator: Any, namespace: str, models: Models) -> None:
    """InferenceService -> Deployment -> ReplicaSet -> pod bound by the scheduler -> Running with a
    real model behind it -> Ready in the pod, the Deployment, the EndpointSlice and the status."""
    api = e2e_operator.kube
    api.create(inference_service("tiny", namespace, minReplicas=1, maxReplicas=2))
    status = await eventually(lambda: serving(api, "tiny", namespace, 1), "Ready=True Serving, 1 ready")
    assert status["url"].endswith(f"/{namespace}/tiny/")
    assert status["image"] == IMAGE and status["version"]

    deployment = api.get(k.DEPLOYMENT, "tiny", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1  # applied without replicas: the server's default
    assert deployment["status"]["readyReplicas"] == 1
    isvc = api.get(ISVC, "tiny", namespace)
    assert isvc is not None
    assert [o["uid"] for o in deployment["metadata"]["ownerReferences"]] == [isvc["metadata"]["uid"]]
    service = api.get(k.SERVICE, "tiny", namespace)
    assert service is not None and service["spec"]["clusterIP"]  # allocated by the real server

    [pod] = pods(api, "tiny", namespace)
    [owner] = pod["metadata"]["ownerReferences"]
    assert owner["kind"] == "ReplicaSet" and owner["name"].startswith("tiny-")
    assert pod["spec"]["nodeName"] == "e2e-cpu"  # the scheduler kept it off the tainted GPU nodes
    assert condition(pod["status"], "Ready")["status"] == "True"
    # the container is the restricted profile's (the namespace enforces it at admission)
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True

    [endpoint_slice] = slices(api, "tiny", namespace)
    assert endpoint_slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
        ENDPOINTSLICE_CONTROLLER
    )
    assert endpoint_slice["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert ready_addresses(api, "tiny", namespace) == [pod["status"]["podIP"]]
    # the process of this pod (under load a pod replaced early may still be stopping)
    [model] = [m for m in models.running() if m.pod == pod["metadata"]["name"]]
    assert model.pod == pod["metadata"]["name"] and model.ip == pod["status"]["podIP"]
    assert answers_at(model.port)


async def test_scale_to_zero_and_back_through_the_activator(
    e2e_operator: Any, namespace: str, models: Models, activator: Callable[[], Any]
) -> None:
    """Idle -> zero replicas; the first request wakes it and gets the model's own answer; idle
    again -> zero."""
    api = e2e_operator.kube
    api.create(inference_service("tiny", namespace, scaleToZeroAfter="2s", maxReplicas=1))
    await eventually(lambda: serving(api, "tiny", namespace, 1), "the first replica ready")
    [first] = models.running()

    running = await activator()
    status = await eventually(lambda: scaled_to_zero(api, "tiny", namespace, models), "scale to zero")
    assert status.get("coldStarts", 0) == 0
    deployment = api.get(k.DEPLOYMENT, "tiny", namespace)
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    # replicas is not the operator's: its apply leaves the field out (the real server records no
    # managedFields entry for a merge patch through deployments/scale: nobody owns replicas)
    applied = [e for e in deployment["metadata"]["managedFields"] if e["operation"] == "Apply"]
    assert applied and all("f:replicas" not in e["fieldsV1"]["f:spec"] for e in applied)
    # so a new apply of the Deployment (a spec change) leaves it at zero
    api.patch(ISVC, "tiny", namespace, {"spec": {"scaling": {"targetConcurrency": 2}}})
    generation = (api.get(ISVC, "tiny", namespace) or {})["metadata"]["generation"]
    await eventually(
        lambda: isvc_status(api, "tiny", namespace).get("observedGeneration") == generation,
        "the operator to apply the new generation",
    )
    deployment = api.get(k.DEPLOYMENT, "tiny", namespace)
    assert deployment is not None and deployment["spec"]["replicas"] == 0

    form = aiohttp.FormData()
    form.add_field("text", "hello from the e2e test")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{running.url}/tiny/v2/models/tinymodel/predict/", data=form) as response,
    ):
        body = await response.json(content_type=None)
    assert response.status == 200, body
    predictions = body["predictions"]
    assert predictions["text"] == "hello from the e2e test"
    [model] = models.running()  # a new pod's process answered (deepaas predicts in a worker)
    assert model is not first and first.process.poll() is not None

    status = isvc_status(api, "tiny", namespace)
    assert status["coldStarts"] == 1
    assert status["lastRequestTime"]
    await eventually(lambda: scaled_to_zero(api, "tiny", namespace, models), "idle back to zero")
    assert isvc_status(api, "tiny", namespace)["coldStarts"] == 1


async def test_deletion_collects_everything(e2e_operator: Any, namespace: str, models: Models) -> None:
    """Deleting the InferenceService: the real garbage collector removes the Deployment, the
    Service, the ReplicaSets, the EndpointSlices and (after their graceful stop) the pods."""
    api = e2e_operator.kube
    api.create(inference_service("tiny", namespace, minReplicas=1))
    await eventually(lambda: serving(api, "tiny", namespace, 1), "Ready=True Serving")
    [model] = models.running()
    api.delete(ISVC, "tiny", namespace)

    def gone() -> bool:
        return (
            api.get(k.DEPLOYMENT, "tiny", namespace) is None
            and api.get(k.SERVICE, "tiny", namespace) is None
            and not api.list(REPLICASET, namespace, label_selector=selector("tiny"))
            and not pods(api, "tiny", namespace)
            and not slices(api, "tiny", namespace)
        )

    await eventually(gone, "the children to be garbage-collected")
    assert model.process.poll() is not None and model in models.stopped


async def test_rolling_update_keeps_an_endpoint_ready(
    e2e_operator: Any, namespace: str, models: Models
) -> None:
    """A new version (here: an env change) rolls out through a second ReplicaSet with maxSurge 1,
    maxUnavailable 0: the new pod is ready before the old one stops, so the Service never has
    zero ready endpoints, and the status follows the new version."""
    api = e2e_operator.kube
    api.create(inference_service("tiny", namespace, minReplicas=1))
    before = (await eventually(lambda: serving(api, "tiny", namespace, 1), "Ready=True Serving"))["version"]
    [old] = models.running()
    seen: list[list[str]] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            seen.append(ready_addresses(api, "tiny", namespace))
            stop_sampling.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        api.patch(
            ISVC, "tiny", namespace, {"spec": {"env": [{"name": "TINYMODEL_WARM_SECONDS", "value": "0"}]}}
        )

        def rolled() -> dict[str, Any] | None:
            status = serving(api, "tiny", namespace, 1)
            done = (
                status is not None and status["version"] != before and len(pods(api, "tiny", namespace)) == 1
            )
            return status if done and old.process.poll() is not None else None

        status = await eventually(rolled, "the new version serving alone")
    finally:
        stop_sampling.set()
        sampler.join(5)
    assert seen and all(seen), "a moment without a ready endpoint during the rollout"
    [new] = models.running()
    assert new is not old and ready_addresses(api, "tiny", namespace) == [new.ip]
    sets = api.list(REPLICASET, namespace, label_selector=selector("tiny"))
    assert sorted(rs["spec"]["replicas"] for rs in sets) == [0, 1]
    deployment = api.get(k.DEPLOYMENT, "tiny", namespace)
    assert deployment is not None
    template = deployment["spec"]["template"]["metadata"]["annotations"]
    assert status["version"] == template["deep-hybrid-datacloud.eu/version"]


async def test_prewarm_each_version_then_zero(
    e2e_operator: Any, namespace: str, models: Models, activator: Callable[[], Any]
) -> None:
    """prewarm: the scaler keeps one replica until its warm-up request reached the version;
    Ready=False Prewarming until then; back to zero when idle; a new version while at zero is
    started, warmed and stopped again, without a user request and without a cold start."""
    api = e2e_operator.kube
    api.create(inference_service("tiny", namespace, scaleToZeroAfter="2s", prewarm=True))
    status = await eventually(
        lambda: isvc_status(api, "tiny", namespace).get("version") and isvc_status(api, "tiny", namespace),
        "a version in status",
    )
    assert condition(status, "Ready").get("reason") in ("Prewarming", None), status
    await activator()

    def warmed() -> dict[str, Any] | None:
        status = isvc_status(api, "tiny", namespace)
        return status if status.get("version") and status.get("warmedVersion") == status["version"] else None

    first = (await eventually(warmed, "warmedVersion == version"))["version"]
    status = await eventually(lambda: scaled_to_zero(api, "tiny", namespace, models), "scale to zero")
    assert status["warmedVersion"] == first and not status.get("coldStarts")

    api.patch(ISVC, "tiny", namespace, {"spec": {"env": [{"name": "TINYMODEL_WARM_SECONDS", "value": "0"}]}})
    second = await eventually(
        lambda: (w := warmed()) is not None and w["version"] != first and w, "the new version warmed"
    )
    status = await eventually(lambda: scaled_to_zero(api, "tiny", namespace, models), "zero again")
    assert status["warmedVersion"] == second["version"] and not status.get("coldStarts")
    assert len(models.stopped) == 2  # one process per version, each stopped after its warm-up


async def test_a_service_that_cannot_start_answers_at_once(
    e2e_operator: Any, namespace: str, models: Models, kubelet: NodeKubelet, activator: Callable[[], Any]
) -> None:
    """Woken from zero, a service whose pod the real scheduler cannot place answers 503
    Unschedulable with the scheduler's message (Retry-After: the cluster may make room), one whose
    image cannot be pulled 503 ImagePullBackOff (no Retry-After); neither hangs, and both go back
    to zero when idle."""
    api = e2e_operator.kube

    def decide(pod: dict[str, Any]) -> Outcome:
        if pod["metadata"]["labels"].get(podparts.LABEL_NAME) == "nopull":
            return Outcome(
                exit_code=None, waiting_reason="ImagePullBackOff", waiting_message="Back-off pulling image"
            )
        return default_outcome(pod)

    kubelet.decide = decide
    huge = inference_service("huge", namespace, scaleToZeroAfter="2s")
    huge["spec"]["resources"] = {"cpu": "64", "memory": "128Mi"}  # the biggest node has 32 cores
    api.create(huge)
    api.create(inference_service("nopull", namespace, scaleToZeroAfter="2s"))
    running = await activator()
    for name in ("huge", "nopull"):
        await eventually(partial(scaled_to_zero, api, name, namespace, models), f"{name} at zero")

    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.get(f"{running.url}/huge/v2/models/") as response:
            body = await response.json()
        assert (response.status, body["error"]) == (503, "Unschedulable"), body
        assert "Insufficient cpu" in body["message"], body
        assert response.headers["Retry-After"]
        async with session.get(f"{running.url}/nopull/v2/models/") as response:
            body = await response.json()
        assert (response.status, body["reason"]) == (503, "ImagePullBackOff"), body
        assert "Back-off pulling image" in body["message"], body
        assert "Retry-After" not in response.headers
        assert time.monotonic() - started < 30  # far below the cold-start timeout (60 s)
    for name in ("huge", "nopull"):
        await eventually(partial(scaled_to_zero, api, name, namespace, models), f"{name} idle to zero")
    assert not models.stopped  # no process ever ran


async def test_held_requests_share_one_cold_start_and_scale_up(
    e2e_operator: Any, namespace: str, models: Models, activator: Callable[[], Any]
) -> None:
    """Three requests arrive at zero while the model loads slowly: one wake-up (one cold start)
    serves them all, and their load makes the scaler add a second replica (targetConcurrency 1,
    maxReplicas 2) through the real ReplicaSet; idle, both go."""
    api = e2e_operator.kube
    body = inference_service("slow", namespace, scaleToZeroAfter="5s", maxReplicas=2, targetConcurrency=1)
    body["spec"]["env"] = [{"name": "TINYMODEL_LOAD_SECONDS", "value": "1"}]  # ~3 s to the first answer
    api.create(body)
    running = await activator()
    await eventually(partial(scaled_to_zero, api, "slow", namespace, models), "slow at zero", timeout=90)
    stopped_before = len(models.stopped)  # the replica the Deployment started with, if it got to run

    async def ask(session: aiohttp.ClientSession) -> tuple[int, Any]:
        async with session.get(f"{running.url}/slow/v2/models/") as response:
            return response.status, await response.json()

    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(ask(session) for _ in range(3)))
    assert [code for code, _ in answers] == [200, 200, 200], answers
    assert all(answer["models"][0]["id"] == "tinymodel" for _, answer in answers)
    await eventually(lambda: serving(api, "slow", namespace, 2), "a second replica ready")
    assert len({m.ip for m in models.running()}) == 2
    assert isvc_status(api, "slow", namespace)["coldStarts"] == 1
    await eventually(partial(scaled_to_zero, api, "slow", namespace, models), "both replicas idle to zero")
    assert len(models.stopped) - stopped_before == 2
