"""Signing in to the dashboard in a real browser (headless Chromium), on the real API server:
the dashboard sends the visitor to the OIDC issuer, who fills in the sign-in form; back on the
dashboard, she sees her own namespace's work and not bob's; signing out ends the session."""

from __future__ import annotations

import os
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from deep_platform.config import OperatorConfig
from deep_platform.signin import OIDC, SignInSettings
from deep_platform.web import create_app
from tests.browser.chromium import Chromium
from tests.e2e.test_signin_e2e import allowed, grant
from tests.harness.oidc_issuer import OidcIssuer
from tests.harness.operator_fixtures import kube_for, wait_until
from tests.unit.dashboard_data import seed

pytestmark = pytest.mark.browser

ROWS = """[...document.querySelectorAll('section.namespace')].map(s => [s.dataset.namespace,
  [...s.querySelectorAll('tbody tr')].map(r => r.dataset.name)])"""


async def test_sign_in_see_only_your_namespace_sign_out(real_apiserver: Any) -> None:
    real_apiserver.reset()
    admin = kube_for(real_apiserver.url)
    web = kube_for(real_apiserver.url, component="web")
    seed(admin, real_apiserver)
    with OidcIssuer() as issuer:
        alice = f"{issuer.url}#alice"
        grant(real_apiserver, "alice", ["trainingjobs"], {"kind": "User", "name": alice})
        wait_until(lambda: allowed(admin, alice, [], "alice", "trainingjobs"), 20, 0.2, "alice's RoleBinding")
        issuer.add_user("alice")
        settings = SignInSettings(mode=OIDC, issuer=issuer.url, client_id="deep-dashboard",
                                  client_secret="s3cret", cookie_key=os.urandom(32)).check()
        server = TestServer(create_app(web, OperatorConfig(metrics_port=0, health_port=0), settings),
                            host="127.0.0.1")
        await server.start_server()
        issuer.add_client("deep-dashboard", str(server.make_url("/callback")), "s3cret")
        try:
            async with Chromium() as browser:
                await browser.goto(str(server.make_url("/dashboard/")))
                # at the issuer's sign-in form
                assert await browser.evaluate("location.origin") == issuer.url
                assert await browser.evaluate("document.title") == "Test issuer: sign in"
                await browser.evaluate("document.getElementById('username').value = 'alice'")
                await browser.click("#signin")
                # back on the dashboard, signed in: alice's TrainingJobs only (no InferenceService
                # grant, no namespace bob)
                assert await browser.evaluate("location.href") == str(server.make_url("/dashboard/"))
                assert await browser.evaluate("document.getElementById('username').textContent") == alice
                assert await browser.evaluate(ROWS) == [["alice", ["big-model", "retrain-phyto"]]]
                assert await browser.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
                await browser.click('tr[data-name="big-model"] a')
                assert await browser.evaluate("document.getElementById('phase').textContent") == "Failed"
                await browser.click("#signout")
                assert await browser.evaluate("document.title") == "Signed out"
                # signed out: the dashboard sends her to the issuer again
                await browser.goto(str(server.make_url("/dashboard/")))
                assert await browser.evaluate("location.origin") == issuer.url
                assert browser.console_errors == []
        finally:
            await server.close()
            web.close()
            admin.close()
