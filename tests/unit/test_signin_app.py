"""The sign-in routes of the web app, up to the session cookie (no API server: what a person may
see is tests/e2e/test_signin_e2e.py): refusals, the issuer down, open redirects, oversize sessions."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from deep_platform.config import OperatorConfig
from deep_platform.signin import OIDC, SignInSettings
from deep_platform.signin.session import PENDING, PENDING_COOKIE, CookieSealer
from deep_platform.web import create_app
from tests.harness.oidc_issuer import OidcIssuer
from tests.harness.operator_fixtures import kube_for
from tests.harness.ports import free_port

KEY = os.urandom(32)
NOWHERE = "http://127.0.0.1:9"  # no API server: these requests never reach one


def settings(issuer: str) -> SignInSettings:
    return SignInSettings(mode=OIDC, issuer=issuer, client_id="deep", cookie_key=KEY)


async def client_for(signin: SignInSettings) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(kube_for(NOWHERE, "web"), OperatorConfig(), signin), host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as running:
        yield running


@pytest.fixture
async def client(issuer: OidcIssuer) -> AsyncIterator[TestClient[Any, Any]]:
    client = await client_for(settings(issuer.url))
    issuer.add_client("deep", str(client.make_url("/callback")))
    yield client
    await client.close()


async def test_without_an_issuer_the_dashboard_says_what_to_set() -> None:
    client = await client_for(SignInSettings(mode=OIDC))
    try:
        response = await client.get("/dashboard/")
        assert response.status == 503
        assert "web.auth.oidc" in await response.text() and "none-unsafe" in await response.text()
    finally:
        await client.close()


async def test_an_unreachable_issuer_is_a_502_page() -> None:
    client = await client_for(settings(f"http://127.0.0.1:{free_port()}"))
    try:
        response = await client.get("/signin", allow_redirects=False)
        assert response.status == 502 and "unreachable" in await response.text()
    finally:
        await client.close()


@pytest.mark.parametrize("target",
                         ["//evil.example.org/", "https://evil.example.org/", "/\\evil.example.org"])
async def test_next_is_a_path_of_this_site_only(client: TestClient[Any, Any], target: str) -> None:
    response = await client.get("/signin", params={"next": target}, allow_redirects=False)
    assert response.status == 302
    pending = CookieSealer(KEY).open(PENDING, response.cookies[PENDING_COOKIE].value)
    assert pending is not None and pending["next"] == "/dashboard/"


async def test_a_callback_nobody_started_is_refused(client: TestClient[Any, Any]) -> None:
    response = await client.get("/callback", params={"code": "stolen", "state": "s"})
    assert response.status == 400 and "not started here" in await response.text()


async def test_the_issuer_refusing_is_shown(client: TestClient[Any, Any], issuer: OidcIssuer) -> None:
    issuer.auto_login = "alice"
    first = await client.get("/signin", allow_redirects=False)
    async with aiohttp.ClientSession() as browser, browser.get(first.headers["Location"],
                                                               allow_redirects=False) as answer:
        callback = "/" + answer.headers["Location"].split("/", 3)[3]  # the path, on the test client
    # the code is spent once; a second exchange (a replayed callback) is refused by the issuer
    assert (await client.get(callback, allow_redirects=False)).status == 302
    client.session.cookie_jar.update_cookies({PENDING_COOKIE: first.cookies[PENDING_COOKIE].value})
    replay = await client.get(callback, allow_redirects=False)
    assert replay.status == 403 and "invalid_grant" in await replay.text()


async def test_too_many_groups_for_a_cookie_is_said(client: TestClient[Any, Any], issuer: OidcIssuer) -> None:
    issuer.add_user("collector", groups=[f"project-{n:04d}-members" for n in range(300)])
    issuer.auto_login = "collector"
    first = await client.get("/signin", allow_redirects=False)
    async with aiohttp.ClientSession() as browser, browser.get(first.headers["Location"],
                                                               allow_redirects=False) as answer:
        callback = "/" + answer.headers["Location"].split("/", 3)[3]  # the path, on the test client
    response = await client.get(callback, allow_redirects=False)
    assert response.status == 403 and "301 groups do not fit" in await response.text()


def test_the_web_command_stops_on_a_wrong_setting_naming_it() -> None:
    import subprocess

    env = {**os.environ, "DEEP_WEB_AUTH_MODE": "oidc", "DEEP_OIDC_ISSUER": "https://iam.example.org",
           "DEEP_OIDC_CLIENT_ID": "deep", "DEEP_WEB_COOKIE_KEY_FILE": ""}
    done = subprocess.run(["deep-platform", "web", "--port", "0"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    assert "web.auth.cookieSecret" in done.stderr and len(done.stderr.strip().splitlines()) == 1
