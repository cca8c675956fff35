"""The activator in front of real deepaas-run processes, scaled by a kubelet stand-in.

Real parts: the operator (kopf) against the API server emulator, the activator's proxy and
scaler, `deepaas-run` with the tiny model (started and stopped by tests/harness/kubelet.py as the
Deployment's replicas change). scaleToZeroAfter is 1 s and the scaler ticks every 0.1 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from deep_platform import kube as k
from deep_platform.activator import Activator, Cluster, Scaler, Settings
from deep_platform.activator import metrics as am
from deep_platform.activator.proxy import bound_port, serve
from deep_platform.api import InferenceService
from tests.harness import operator_fixtures
from tests.harness.kubelet import Kubelet
from tests.harness.operator_fixtures import kube_for

ISVC = k.kind_of(InferenceService)
NS, NAME = "default", "tiny"
pytestmark = pytest.mark.timeout(90)


PLAYS_THE_CLUSTER = (
    "plays the Deployment controller and kubelet (tests/harness/kubelet.py); "
    "tests/e2e/test_inferenceservice_e2e.py runs this story on a real server"
)


def inference_service(**scaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "image": "registry.example/tiny:1",
            "scaling": {
                "minReplicas": 0,
                "maxReplicas": 3,
                "targetConcurrency": 2,
                "scaleToZeroAfter": "1s",
                **scaling,
            },
        },
    }


@dataclass
class Running:
    activator: Activator
    scaler_task: asyncio.Task[None]
    runner: web.AppRunner
    url: str


@asynccontextmanager
async def activator_running(
    apiserver: Any, resolver: Callable[[str, str], str], identity: str, **settings: Any
) -> AsyncIterator[Running]:
    kube = kube_for(apiserver.url, component="activator")
    options = {
        "tick": 0.1,
        "poll_interval": 0.02,
        "cold_start_timeout": 30.0,
        "stabilization": 1.0,
        "lease_seconds": 2,
        **settings,
    }
    config = Settings(platform_namespace="deep-platform", identity=identity, **options)
    activator = Activator(Cluster(kube, "deep-platform", identity), config, resolver)
    runner = await serve(activator, "127.0.0.1", 0)
    task = asyncio.create_task(Scaler(activator).run())
    try:
        yield Running(activator, task, runner, f"http://127.0.0.1:{bound_port(runner)}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await runner.cleanup()
        kube.close()


#: the harness's, with this file's patience
eventually = partial(operator_fixtures.eventually, timeout=15, interval=0.05)


def replicas(apiserver: Any) -> int:
    deployment = apiserver.get("deployments.apps", NS, NAME)
    return int(deployment["spec"].get("replicas", 1)) if deployment else -1


def condition(apiserver: Any, type_: str) -> dict[str, Any] | None:
    isvc = apiserver.get(ISVC.plural + "." + ISVC.group, NS, NAME) or {}
    return next((c for c in (isvc.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def isvc_status(apiserver: Any) -> dict[str, Any]:
    return (apiserver.get(ISVC.plural + "." + ISVC.group, NS, NAME) or {}).get("status") or {}


async def at_zero(apiserver: Any, kubelet: Kubelet) -> None:
    """Created services start with one replica (the API server's default); wait for the idle
    scaler to take them to zero, and for the status to say so."""

    def probe() -> bool:
        cond = condition(apiserver, "ScaledToZero")
        return replicas(apiserver) == 0 and kubelet.running == 0 and bool(cond and cond["status"] == "True")

    await eventually(probe, what="the service scaled to zero")


@pytest.fixture
def service(apiserver: Any, operator: Any) -> Any:
    def create(**scaling: Any) -> dict[str, Any]:
        body = inference_service(**scaling)
        return operator.kube.create(body)

    return create


async def predict(
    session: aiohttp.ClientSession, base: str, payload: bytes, text: str = "hi"
) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("data", payload, filename="input.bin", content_type="application/octet-stream")
    async with session.post(f"{base}/{NS}/{NAME}/v2/models/tinymodel/predict/?text={text}", data=form) as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())


@pytest.mark.emulator_only(PLAYS_THE_CLUSTER)
async def test_first_request_after_zero_succeeds_and_idle_returns_to_zero(
    apiserver: Any, service: Any
) -> None:
    service()
    with Kubelet(apiserver, NS, NAME) as kubelet:
        async with activator_running(apiserver, kubelet.resolve, "a") as running:
            await at_zero(apiserver, kubelet)
            payload = os.urandom(2_000_000)
            async with aiohttp.ClientSession() as session:
                answer = await predict(session, running.url, payload)
            assert answer["predictions"]["sha256"] == hashlib.sha256(payload).hexdigest()
            assert answer["predictions"]["bytes"] == len(payload)
            status = await eventually(
                lambda: (s := isvc_status(apiserver)).get("coldStarts") and s, what="coldStarts"
            )
            assert status["coldStarts"] == 1
            assert status["lastRequestTime"]
            # idle: back to zero, about scaleToZeroAfter after the last request
            await at_zero(apiserver, kubelet)
            assert isvc_status(apiserver)["coldStarts"] == 1


@pytest.mark.emulator_only(PLAYS_THE_CLUSTER)
async def test_hundred_requests_during_one_cold_start_all_succeed(apiserver: Any, service: Any) -> None:
    service(maxReplicas=1)
    with Kubelet(apiserver, NS, NAME) as kubelet:
        async with activator_running(apiserver, kubelet.resolve, "a") as running:
            await at_zero(apiserver, kubelet)
            starts_before = kubelet.starts
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                answers = await asyncio.gather(
                    *(predict(session, running.url, str(i).encode(), text=f"r{i}") for i in range(100))
                )
            assert sorted(a["predictions"]["text"] for a in answers) == sorted(f"r{i}" for i in range(100))
            assert kubelet.starts == starts_before + 1, "one cold start serves every held request"
            assert (await eventually(lambda: isvc_status(apiserver).get("coldStarts"))) == 1
            assert running.activator.services[f"{NS}/{NAME}"].waiting == 0


@pytest.mark.emulator_only(PLAYS_THE_CLUSTER)
async def test_concurrent_burst_scales_up_to_max(apiserver: Any, service: Any) -> None:
    service(maxReplicas=3, targetConcurrency=1)
    with Kubelet(apiserver, NS, NAME) as kubelet:
        async with activator_running(apiserver, kubelet.resolve, "a") as running:
            stop = asyncio.Event()

            async def slow_upload() -> int:
                async def chunks() -> AsyncIterator[bytes]:  # a slow client keeps its request in flight
                    while not stop.is_set():
                        yield b"x" * 1024
                        await asyncio.sleep(0.05)

                url = f"{running.url}/{NS}/{NAME}/v2/models/tinymodel/predict/?text=slow"
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        url, data=chunks(), headers={"Content-Type": "application/octet-stream"}
                    ) as response,
                ):
                    await response.read()
                    return response.status

            burst = [asyncio.create_task(slow_upload()) for _ in range(6)]
            try:
                await eventually(
                    lambda: replicas(apiserver) == 3 and kubelet.ready_count == 3,
                    timeout=30,
                    what="3 ready replicas",
                )
                assert replicas(apiserver) <= 3
            finally:
                stop.set()
                statuses = await asyncio.gather(*burst)
            assert all(code < 500 for code in statuses), statuses
            assert kubelet.max_running == 3
            # stabilised, then idle: down again, never above max on the way
            await at_zero(apiserver, kubelet)
            assert kubelet.max_running == 3


@pytest.mark.emulator_only(PLAYS_THE_CLUSTER)
async def test_two_activators_do_not_fight(apiserver: Any, service: Any) -> None:
    service(maxReplicas=2)
    with Kubelet(apiserver, NS, NAME) as kubelet:
        async with (
            activator_running(apiserver, kubelet.resolve, "a") as first,
            activator_running(apiserver, kubelet.resolve, "b") as second,
        ):
            await at_zero(apiserver, kubelet)
            leaders = {first.activator.is_leader, second.activator.is_leader}
            assert leaders == {True, False}, "exactly one activator decides scaling"
            follower = second if first.activator.is_leader else first
            seen: list[int] = []

            async def watch_replicas() -> None:
                while True:
                    seen.append(replicas(apiserver))
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch_replicas())
            # steady traffic through the follower for 3 x scaleToZeroAfter: the leader must see it
            async with aiohttp.ClientSession() as session:
                end = time.monotonic() + 3
                while time.monotonic() < end:
                    await predict(session, follower.url, b"x")
                    await asyncio.sleep(0.3)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            woke = seen.index(1)
            assert 0 not in seen[woke:], f"scaled to zero under steady traffic: {seen}"
            assert {first.activator.is_leader, second.activator.is_leader} == {True, False}
            assert kubelet.starts >= 1
            assert (await eventually(lambda: isvc_status(apiserver).get("coldStarts"))) == 1
            await at_zero(apiserver, kubelet)


async def test_unknown_service_is_a_json_404(apiserver: Any) -> None:
    async with (
        activator_running(apiserver, lambda ns, name: "http://127.0.0.1:9", "a") as running,
        aiohttp.ClientSession() as session,
        session.get(f"{running.url}/default/nope/v2/models/") as response,
    ):
        assert response.status == 404
        body = await response.json()
    assert body["error"] == "NotFound"
    assert "nope" in body["message"]
    assert "default/nope" not in running.activator.services


@pytest.mark.emulator_only(PLAYS_THE_CLUSTER)
async def test_crash_looping_model_gets_503_with_reason_not_a_hang(apiserver: Any, operator: Any) -> None:
    body = inference_service()
    body["spec"]["env"] = [{"name": "DEEPAAS_V2_MODEL", "value": "bogus"}]
    operator.kube.create(body)
    with Kubelet(apiserver, NS, NAME) as kubelet:
        async with (
            activator_running(apiserver, kubelet.resolve, "a") as running,
            aiohttp.ClientSession() as session,
        ):
            started = time.monotonic()
            async with session.get(f"{running.url}/{NS}/{NAME}/v2/models/") as response:
                answer = await response.json()
            assert response.status == 503, answer
            assert answer["reason"] == "CrashLoopBackOff"
            assert "Retry-After" not in response.headers  # waiting does not mend a crashing model
            assert "bogus" in answer["message"]  # deepaas's own words, from the pod's status
            assert time.monotonic() - started < 25
            ready = condition(apiserver, "Ready")
            assert ready is not None
            assert (ready["status"], ready["reason"]) == ("False", "CrashLoopBackOff")


@pytest.mark.emulator_only(PLAYS_THE_CLUSTER)
async def test_cold_start_timeout_is_503_with_retry_after(apiserver: Any, service: Any) -> None:
    service()
    with Kubelet(apiserver, NS, NAME, extra_env={"TINYMODEL_LOAD_SECONDS": "1.5"}) as kubelet:
        async with activator_running(apiserver, kubelet.resolve, "a", cold_start_timeout=0.5) as running:
            await at_zero(apiserver, kubelet)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{running.url}/{NS}/{NAME}/v2/models/") as response,
            ):
                body = await response.json()
                assert response.status == 503
                assert int(response.headers["Retry-After"]) > 0
            assert body["error"] == "ModelStarting"
            assert "starting" in body["message"]


@pytest.mark.emulator_only(PLAYS_THE_CLUSTER)
async def test_client_disconnect_while_waiting_does_not_leak(apiserver: Any, service: Any) -> None:
    service()
    with Kubelet(apiserver, NS, NAME, extra_env={"TINYMODEL_LOAD_SECONDS": "1"}) as kubelet:
        async with activator_running(apiserver, kubelet.resolve, "a") as running:
            await at_zero(apiserver, kubelet)
            depth = am.QUEUE_DEPTH.labels(NS, NAME)
            before = depth._value.get()

            async def give_up() -> None:
                async with aiohttp.ClientSession() as session:
                    await session.get(f"{running.url}/{NS}/{NAME}/v2/models/")

            clients = [asyncio.create_task(give_up()) for _ in range(5)]
            state: Any = await eventually(
                lambda: (s := running.activator.services.get(f"{NS}/{NAME}")) and s.waiting == 5 and s,
                what="5 held requests",
            )
            assert depth._value.get() == before + 5
            for client in clients:
                client.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
            await eventually(
                lambda: state.waiting == 0 and state.in_flight == 0, timeout=5, what="no held request"
            )
            assert depth._value.get() == before
            # the wake-up they started still completes: the next request is served
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{running.url}/{NS}/{NAME}/v2/models/") as r,
            ):
                assert r.status == 200


@pytest.mark.emulator_only(PLAYS_THE_CLUSTER)
async def test_prewarm_sends_warm_up_before_ready(apiserver: Any, service: Any) -> None:
    service(prewarm=True)
    with Kubelet(apiserver, NS, NAME) as kubelet:
        async with activator_running(apiserver, kubelet.resolve, "a"):
            status = await eventually(
                lambda: (s := isvc_status(apiserver)).get("warmedVersion") and s, what="warm-up"
            )
            assert status["warmedVersion"] == status["version"]
            ready = await eventually(
                lambda: (c := condition(apiserver, "Ready")) and c["status"] == "True" and c
            )
            assert ready["reason"] in {"Serving", "ScaledToZero"}
            assert not status.get("coldStarts"), "a warm-up is not a user's cold start"
            await at_zero(apiserver, kubelet)
