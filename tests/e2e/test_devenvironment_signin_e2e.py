"""A researcher opens her non-public JupyterLab in a browser (issue #14, "Auth as for serving"):
the real control plane, the operator, a real `jupyter lab` per pod (as in
tests/e2e/test_devenvironment_e2e.py), the activator with browser sign-in, the local OIDC issuer
and headless Chromium.

  Opening the environment sends her to the issuer's sign-in form; signed in as a member of the
  allowed group, JupyterLab loads and a kernel runs `1+1` over the proxied WebSocket with her
  session (no token in the page); an API client without a token gets 401 JSON; after signing
  out, a person outside the group gets 403. (That the session cookie never reaches the upstream
  is asserted on what a model received, tests/browser/test_activator_signin.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from deep_platform.activator import Activator, Cluster, Scaler, Settings
from deep_platform.activator.proxy import bound_port, serve
from deep_platform.activator.signin import BrowserSignIn
from deep_platform.auth import SiteAuth
from tests.browser.chromium import Chromium
from tests.e2e.test_devenvironment_e2e import (  # noqa: F401  (fixtures)
    IMAGE,
    RUN_CODE,
    Ides,
    eventually,
    home_volume,
    ides,
    status,
    wait_for_lab,
)
from tests.harness.oidc_issuer import OidcIssuer

IDENTITY = f"e2e-devenv-signin-{os.getpid()}"
AUDIENCE = "deep-platform"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def issuer() -> Any:
    with OidcIssuer() as running:
        running.add_user("alice", groups=["ml"])
        running.add_user("bob", groups=["physics"])
        yield running


@pytest.fixture
async def activator_base(e2e_operator: Any, namespace: str, platform_namespace: str,
                         ides: Ides, issuer: OidcIssuer) -> AsyncIterator[str]:  # noqa: F811
    settings = Settings(platform_namespace=platform_namespace, identity=IDENTITY, tick=0.5,
                        auth=SiteAuth(required=True, issuer=issuer.url, audience=AUDIENCE),
                        browser=BrowserSignIn(client_id="deep-activator", client_secret="s3cret",
                                              cookie_key=os.urandom(32)))
    cluster = Cluster(e2e_operator.kube, platform_namespace, IDENTITY, namespaces=[namespace])
    activator = Activator(cluster, settings, ides.resolve)
    runner = await serve(activator, "127.0.0.1", 0)
    scaler = asyncio.create_task(Scaler(activator).run())
    base = f"http://127.0.0.1:{bound_port(runner)}"
    issuer.add_client("deep-activator", f"{base}/.auth/callback", "s3cret")
    yield base
    scaler.cancel()
    await asyncio.gather(scaler, return_exceptions=True)
    await runner.cleanup()


async def sign_in(browser: Chromium, issuer: OidcIssuer, user: str) -> None:
    assert await browser.evaluate("location.origin") == issuer.url  # the issuer's sign-in form
    await browser.evaluate(f"document.getElementById('username').value = {json.dumps(user)}")
    await browser.click("#signin")


async def test_a_researcher_signs_in_and_opens_her_jupyterlab(
    e2e_operator: Any, namespace: str, ides: Ides, home_volume: str, activator_base: str,  # noqa: F811
    issuer: OidcIssuer
) -> None:
    api = e2e_operator.kube
    api.create({
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "DevEnvironment",
        "metadata": {"name": "lab", "namespace": namespace},
        "spec": {"image": IMAGE, "ide": "jupyterlab", "idleTimeout": "1h",
                 "auth": {"oidc": {"allowedGroups": ["ml"]}},
                 "resources": {"cpu": "100m", "memory": "256Mi"},
                 "home": {"size": "1Gi", "storageClassName": home_volume}},
    })
    await eventually(lambda: status(api, namespace).get("phase") == "Ready", "phase Ready",
                     diagnose=lambda: status(api, namespace))
    lab = f"{activator_base}/{namespace}/lab"

    async with Chromium(timeout=60) as browser:
        await browser.goto(f"{lab}/lab")
        await sign_in(browser, issuer, "alice")
        await wait_for_lab(browser)
        assert await browser.evaluate("location.pathname") == f"/{namespace}/lab/lab"
        # the session is HttpOnly: no script (user code in a notebook's page) reads it
        assert "deep_" not in await browser.evaluate("document.cookie")
        # REST and the kernel's WebSocket, with her session only: no token anywhere in the page
        assert await browser.evaluate(f"{RUN_CODE}({json.dumps('1+1')})") == "2"

        async with aiohttp.ClientSession() as client, client.get(
            f"{lab}/api/status", headers={"Accept": "application/json"}
        ) as refused:
            assert refused.status == 401 and (await refused.json())["reason"] == "TokenMissing"

        await browser.goto(f"{activator_base}/.auth/signout")
        assert await browser.evaluate("document.title") == "Signed out"
        await browser.goto(f"{lab}/lab")
        await sign_in(browser, issuer, "bob")  # signed out: the form again; bob is not in group ml
        assert await browser.evaluate("performance.getEntriesByType('navigation')[0].responseStatus") == 403
        assert await browser.evaluate("document.title") == "Not allowed"
    assert ides.started == 1
