"""The activator's browser sign-in without a browser: the answers around the flow (the real
activator, the local OIDC issuer, sessions sealed with the activator's key as its callback
seals them). The whole flow in Chromium: tests/browser/test_activator_signin.py."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from deep_platform.activator.signin import APP, SESSION_COOKIE, BrowserSignIn
from deep_platform.auth import SiteAuth
from deep_platform.signin.session import SESSION, CookieSealer
from tests.harness.oidc_issuer import OidcIssuer
from tests.integration.test_activator import activator_running
from tests.integration.test_activator_auth import NS, service

pytestmark = pytest.mark.timeout(60)
KEY = b"k" * 32
PAGE = {"Accept": "text/html"}
API = {"Accept": "application/json"}


def nowhere(_namespace: str, _service: str) -> str:
    """No upstream: every answer tested here comes before forwarding."""
    return "http://127.0.0.1:9"


def session_cookie(issuer: str, sub: str, groups: list[str]) -> dict[str, str]:
    value = CookieSealer(KEY, app=APP).seal(SESSION, {"iss": issuer, "sub": sub, "groups": groups,
                                                     "name": sub}, 300)
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


async def test_answers_around_the_sign_in(apiserver: Any) -> None:
    with OidcIssuer() as issuer:
        site = SiteAuth(required=True, issuer=issuer.url, audience="deep-platform")
        service(apiserver, "team", {"oidc": {"allowedGroups": ["ml"]}}, up=False)
        service(apiserver, "other", {"oidc": {"issuer": "https://other.example.org", "audience": "x"}},
                up=False)
        apiserver.create({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": "callers", "namespace": NS},
                          "data": {"tokens": base64.b64encode(b"caller-token\n").decode()}})
        service(apiserver, "secret-only", {"tokenSecret": {"name": "callers"}}, up=False)
        browser = BrowserSignIn(client_id="deep-activator", cookie_key=KEY)
        jar = aiohttp.CookieJar(unsafe=True)  # cookies of an IP address host too
        async with activator_running(apiserver, nowhere, "signin-answers", auth=site,
                                     browser=browser) as running, \
                aiohttp.ClientSession(cookie_jar=jar) as client:
            url = running.url
            alice = session_cookie(issuer.url, "alice", ["ml"])

            # a browser page without a session: to the sign-in, and on to the issuer with PKCE
            async with client.get(f"{url}/{NS}/team/ui?x=1", headers=PAGE, allow_redirects=False) as r:
                assert r.status == 302
                assert r.headers["Location"] == "/.auth/signin?next=%2Fdefault%2Fteam%2Fui%3Fx%3D1"
            evil = f"{url}/.auth/signin?next=https://evil.example/"
            async with client.get(evil, allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"].startswith(f"{issuer.url}/authorize?")
                query = parse_qs(urlsplit(r.headers["Location"]).query)
                assert query["code_challenge_method"] == ["S256"] and query["client_id"] == ["deep-activator"]
                assert query["redirect_uri"] == [f"{url}/.auth/callback"]
                pending = r.cookies["deep_activator_signin"]
                assert pending["httponly"] and pending["samesite"] == "Lax" and pending["path"] == "/"
            # a callback that was not started here, or whose state differs: a page that says so
            async with client.get(f"{url}/.auth/callback?code=x&state=y") as r:
                assert r.status == 400 and "state differs" in await r.text()
            client.cookie_jar.clear()
            async with client.get(f"{url}/.auth/callback?code=x&state=y") as r:
                assert r.status == 400 and "not started here" in await r.text()

            # WebSocket upgrades and scripts keep the 401 JSON
            upgrade = {**PAGE, "Connection": "Upgrade", "Upgrade": "websocket",
                       "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            async with client.get(f"{url}/{NS}/team/api/kernels/1/channels", headers=upgrade) as r:
                assert r.status == 401 and (await r.json())["reason"] == "TokenMissing"
            # a session of another issuer, of a person outside the group, for Secret tokens only
            async with client.get(f"{url}/{NS}/other/ui", headers={**API, **alice}) as r:
                body = await r.json()
                assert r.status == 401 and body["reason"] == "SessionIssuerMismatch"
                assert issuer.url in body["message"] and "https://other.example.org" in body["message"]
            bob = session_cookie(issuer.url, "bob", [])
            async with client.get(f"{url}/{NS}/team/ui", headers={**PAGE, **bob}) as r:
                page = await r.text()
                assert r.status == 403 and "<title>Not allowed</title>" in page
                assert "Signed in as bob." in page
                assert 'href="/.auth/signout"' in page
            async with client.get(f"{url}/{NS}/secret-only/ui", headers={**API, **alice}) as r:
                body = await r.json()
                assert r.status == 401 and body["reason"] == "SessionNotAccepted"
                assert "'callers'" in body["message"]
            # a bearer token is checked when sent, session or not
            bearer = {**API, **alice, "Authorization": "Bearer nope"}
            async with client.get(f"{url}/{NS}/team/ui", headers=bearer) as r:
                assert r.status == 401 and (await r.json())["reason"] == "TokenMalformed"
            # a session that is not ours (the web app's, same key): none
            web = CookieSealer(KEY).seal(SESSION, {"iss": issuer.url, "sub": "alice", "groups": ["ml"]}, 300)
            foreign = {**API, "Cookie": f"{SESSION_COOKIE}={web}"}
            async with client.get(f"{url}/{NS}/team/ui", headers=foreign) as r:
                assert r.status == 401 and (await r.json())["reason"] == "TokenMissing"

        # without browser settings: today's 401, plus a line that says sign-in is not configured
        async with activator_running(apiserver, nowhere, "signin-off", auth=site) as running, \
                aiohttp.ClientSession() as client:
            async with client.get(f"{running.url}/{NS}/team/ui", headers=PAGE, allow_redirects=False) as r:
                body = await r.json()
                assert r.status == 401 and body["reason"] == "TokenMissing"
                assert "Browser sign-in is not configured" in body["message"]
            async with client.get(f"{running.url}/{NS}/team/ui", headers=API) as r:
                assert "Browser sign-in" not in (await r.json())["message"]
            async with client.get(f"{running.url}/.auth/signin") as r:
                assert r.status == 404 and "not configured" in await r.text()
