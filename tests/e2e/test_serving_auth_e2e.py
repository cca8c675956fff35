"""Serving auth, DEEPaaS through the prefix and unservable modules on the real API server.

The operator, the real controllers and scheduler, the kubelet stand-in with a real `deepaas-run`
per pod (tests/e2e/test_inferenceservice_e2e.py explains the set-up), the activator with a site
that requires tokens, and the local OIDC issuer of tests/harness/oidc_issuer.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

import aiohttp
import pytest

from deep_platform import kube as k
from deep_platform.activator import Activator, Cluster, Scaler, Settings
from deep_platform.activator.proxy import bound_port, serve
from deep_platform.api import Module
from deep_platform.auth import SiteAuth
from tests.e2e import test_inferenceservice_e2e
from tests.e2e.conftest import example
from tests.e2e.test_inferenceservice_e2e import (
    IDENTITY,
    Models,
    eventually,
    inference_service,
    isvc_status,
    scaled_to_zero,
)
from tests.harness.oidc_issuer import OidcIssuer

AUDIENCE = "deep-platform"
#: the fixture of the InferenceService e2e tests: a real deepaas-run per Running pod
models = test_inferenceservice_e2e.models
MODULES = k.kind_of(Module)
pytestmark = pytest.mark.timeout(180)


def zero_diagnosis(api: k.Kube, name: str, namespace: str, models: Models) -> dict[str, Any]:
    """What stands between the service and zero, for the failure message."""
    deployment = api.get(k.DEPLOYMENT, name, namespace) or {}
    leases = api.list(k.LEASE, None)
    return {
        "status": isvc_status(api, name, namespace),
        "deployment replicas": (deployment.get("spec") or {}).get("replicas"),
        "pods": [p["metadata"]["name"] for p in test_inferenceservice_e2e.pods(api, name, namespace)],
        "models running": [m.pod for m in models.running()],
        "leases": {
            f"{m['metadata']['namespace']}/{m['metadata']['name']}": m.get("spec", {}).get("holderIdentity")
            for m in leases
        },
    }


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as found:
        yield found


@pytest.fixture
async def guarded_activator(
    e2e_operator: Any, namespace: str, platform_namespace: str, models: Models, issuer: OidcIssuer
) -> AsyncIterator[Callable[[], Any]]:
    """The activator of a site whose default is: a token of `issuer` for AUDIENCE."""
    started: list[tuple[Any, asyncio.Task[None]]] = []

    async def start() -> str:
        site = SiteAuth(required=True, issuer=issuer.url, audience=AUDIENCE)
        settings = Settings(
            platform_namespace=platform_namespace,
            identity=IDENTITY,
            tick=0.5,
            cold_start_timeout=60,
            auth=site,
        )
        cluster = Cluster(e2e_operator.kube, platform_namespace, IDENTITY, namespaces=[namespace])
        found = Activator(cluster, settings, models.resolve)
        runner = await serve(found, "127.0.0.1", 0)
        started.append((runner, asyncio.create_task(Scaler(found).run())))
        return f"http://127.0.0.1:{bound_port(runner)}/{namespace}"

    yield start
    for runner, scaler in started:
        scaler.cancel()
        await asyncio.gather(scaler, return_exceptions=True)
        await runner.cleanup()


async def test_tokens_guard_a_model_at_zero_and_deepaas_stays_in_its_prefix(
    e2e_operator: Any, namespace: str, models: Models, issuer: OidcIssuer, guarded_activator: Any
) -> None:
    """A service at zero: requests without a valid token are refused and wake nothing; a token of
    the allowed group wakes it and predicts, with and without the trailing slash; /ui stays in
    the prefix."""
    api = e2e_operator.kube
    body = inference_service("guarded", namespace, scaleToZeroAfter="3s", maxReplicas=1)
    body["spec"]["auth"] = {"oidc": {"allowedGroups": ["ml"]}}  # the site's issuer and audience
    api.create(body)
    url = await guarded_activator()
    await eventually(
        partial(scaled_to_zero, api, "guarded", namespace, models), "guarded at zero", timeout=60,
        diagnose=partial(zero_diagnosis, api, "guarded", namespace, models),
    )
    started_before = len(models.stopped) + len(models.running())

    async with aiohttp.ClientSession() as session:
        refused = {
            None: (401, "TokenMissing"),
            issuer.mint("ana", audience=AUDIENCE, groups=["ml"], expires_in=-120): (401, "TokenExpired"),
            issuer.mint("bob", audience=AUDIENCE, groups=["physics"]): (403, "NotAllowed"),
        }
        for token, expected in refused.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with session.get(f"{url}/guarded/v2/models/", headers=headers) as response:
                answer = await response.json()
                assert (response.status, answer["reason"]) == expected, answer
                assert response.headers["WWW-Authenticate"].startswith('Bearer realm="deep-platform"')
        await asyncio.sleep(1)
        deployment = api.get(k.DEPLOYMENT, "guarded", namespace)
        assert deployment is not None and deployment["spec"]["replicas"] == 0, "a refused request woke it"
        assert len(models.stopped) + len(models.running()) == started_before

        token = {"Authorization": f"Bearer {issuer.mint('ana', audience=AUDIENCE, groups=['ml'])}"}
        for path in ("predict/", "predict"):
            form = aiohttp.FormData()
            form.add_field("text", f"via {path}")
            async with session.post(
                f"{url}/guarded/v2/models/tinymodel/{path}", data=form, headers=token
            ) as response:
                answer = await response.json()
                assert response.status == 200, answer
                assert answer["predictions"]["text"] == f"via {path}"
        async with session.get(f"{url}/guarded/ui", headers=token, allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == f"/{namespace}/guarded/api"
    assert isvc_status(api, "guarded", namespace)["coldStarts"] == 1


async def test_a_module_that_is_not_servable_gets_no_deployment(
    e2e_operator: Any, namespace: str, models: Models, guarded_activator: Any
) -> None:
    api = e2e_operator.kube
    module = f"train-only-{namespace}"[:63]
    body = example("module.yaml")  # the catalogue's example, made train-only
    body["metadata"] = {"name": module}
    body["spec"]["capabilities"] = {"trainable": True, "servable": False}
    api.create(body)
    try:
        body = inference_service("trainonly", namespace)
        body["spec"] = {"module": module, "auth": {"public": True}}
        api.create(body)

        def refused() -> dict[str, Any] | None:
            ready = next(
                (
                    c
                    for c in isvc_status(api, "trainonly", namespace).get("conditions") or []
                    if c["type"] == "Ready"
                ),
                {},
            )
            return ready if ready.get("reason") == "ModuleNotServable" else None

        ready = await eventually(refused, "Ready=False ModuleNotServable")
        assert ready["status"] == "False" and "servable: false" in ready["message"]
        assert api.get(k.DEPLOYMENT, "trainonly", namespace) is None
        url = await guarded_activator()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/trainonly/v2/models/") as response,
        ):
            answer = await response.json()
        assert (response.status, answer["reason"]) == (503, "ModuleNotServable"), answer
        assert "Retry-After" not in response.headers
        assert api.get(k.DEPLOYMENT, "trainonly", namespace) is None
    finally:
        api.delete(MODULES, module)
