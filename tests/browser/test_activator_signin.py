"""Signing in at the activator in headless Chromium: a researcher opens a non-public
InferenceService's Swagger UI (the real `deepaas-run` of the tiny model behind the real
activator), is sent to the OIDC issuer's form, signs in and gets the page and its API calls; a
person outside the allowed group gets 403; an API client without a token still gets 401 JSON;
signing out ends the session. A recording hop between the activator and deepaas-run shows what
the model received: never the session cookie."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from deep_platform.activator.signin import BrowserSignIn
from deep_platform.auth import SiteAuth
from tests.browser.chromium import Chromium
from tests.browser.test_swagger_ui import step
from tests.harness.oidc_issuer import OidcIssuer
from tests.integration.test_activator import activator_running
from tests.integration.test_activator_auth import service
from tests.integration.test_activator_deepaas import NAME, PREFIX, deepaas

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
STATUS = "performance.getEntriesByType('navigation')[0].responseStatus"


@asynccontextmanager
async def recording(upstream: str, seen: list[dict[str, str]]) -> AsyncIterator[str]:
    """A plain forwarding hop that notes the headers of every request it passes to `upstream`."""
    client = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
        async with client.request(request.method, upstream + request.path_qs, headers=headers,
                                  data=await request.read(), allow_redirects=False) as answer:
            body = await answer.read()
            out = [(k, v) for k, v in answer.headers.items() if k.lower() not in HOP]
        response = web.Response(status=answer.status, body=body)
        for k, v in out:
            response.headers.add(k, v)
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await client.close()


async def sign_in(browser: Chromium, issuer: OidcIssuer, user: str) -> None:
    assert await browser.evaluate("location.origin") == issuer.url  # at the issuer's form
    await browser.evaluate(f"document.getElementById('username').value = {json.dumps(user)}")
    await browser.click("#signin")


async def test_sign_in_at_the_activator_open_the_swagger_ui_and_sign_out(apiserver: Any) -> None:
    seen: list[dict[str, str]] = []
    with OidcIssuer() as issuer, deepaas() as model:
        issuer.add_user("alice", groups=["ml"])
        issuer.add_user("bob", groups=["physics"])
        service(apiserver, NAME, {"oidc": {"allowedGroups": ["ml"]}})
        site = SiteAuth(required=True, issuer=issuer.url, audience="deep-platform")
        browser_signin = BrowserSignIn(client_id="deep-activator", client_secret="s3cret",
                                       cookie_key=b"k" * 32)
        async with recording(model, seen) as hop, activator_running(
            apiserver, lambda _ns, _svc: hop, "signin", auth=site, browser=browser_signin
        ) as running:
            url = running.url
            issuer.add_client("deep-activator", f"{url}/.auth/callback", "s3cret")
            async with Chromium() as browser:
                await browser.goto(f"{url}{PREFIX}/ui")
                await sign_in(browser, issuer, "alice")
                # back where she started, signed in: DEEPaaS's /ui sends her on to its Swagger page,
                # which loads its API document with her session
                assert await browser.evaluate("location.href") == f"{url}{PREFIX}/api"
                await step(browser, "document.querySelector('.opblock-post')", "the Swagger UI operations")
                assert await browser.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
                # the page's own API calls carry the session; other cookies pass on to the model
                await browser.evaluate("document.cookie = 'theme=dark; path=/'")
                answer = await browser.evaluate(
                    f"fetch('{PREFIX}/v2/models/').then(r => r.json().then(b => [r.status, b]))")
                assert answer[0] == 200 and answer[1]["models"][0]["id"] == "tinymodel"
                # what the model received: never the platform's cookies
                assert len(seen) >= 4
                assert all("deep_" not in h.get("cookie", "") and "authorization" not in h for h in seen)
                assert seen[-1]["cookie"] == "theme=dark"

                # an API client without a token: 401 JSON, as before; a browser page: to the sign-in
                async with aiohttp.ClientSession() as client:
                    async with client.get(f"{url}{PREFIX}/v2/models/",
                                          headers={"Accept": "application/json"}) as refused:
                        assert refused.status == 401
                        assert (await refused.json())["reason"] == "TokenMissing"
                    async with client.get(f"{url}{PREFIX}/ui", headers={"Accept": "text/html"},
                                          allow_redirects=False) as page:
                        assert page.status == 302
                        assert page.headers["Location"] == "/.auth/signin?next=%2Fdefault%2Ftiny%2Fui"
                    async with client.get(f"{url}/default/nothing/") as missing:
                        message = (await missing.json())["message"]
                        assert "no InferenceService or DevEnvironment 'nothing'" in message

                await browser.goto(f"{url}/.auth/signout")
                assert await browser.evaluate("document.title") == "Signed out"
                await browser.goto(f"{url}{PREFIX}/ui")
                # signed out: to the issuer again; bob is not in group ml
                await sign_in(browser, issuer, "bob")
                assert await browser.evaluate(STATUS) == 403
                assert await browser.evaluate("document.title") == "Not allowed"
                message = await browser.evaluate("document.getElementById('message').textContent")
                assert message.startswith("Signed in as bob.") and "ml" in message
                assert browser.console_errors == []
    assert not any(h.get("cookie", "").startswith("deep_") for h in seen)
