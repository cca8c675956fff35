"""Dashboard sign-in on the real API server: people sign in at a local OIDC issuer (authorization
code + PKCE, real signed tokens), and the dashboard shows each of them exactly what their RBAC
bindings let them list, as the API server answers SubjectAccessReviews for the user and groups
mapped from their ID token. The web app runs in this process, as the chart's web ServiceAccount
would (its client here is an admin: what it may see is not the question, what it shows is)."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from deep_platform import kube as k
from deep_platform.config import OperatorConfig
from deep_platform.signin import OIDC, SignInSettings
from deep_platform.web import create_app
from tests.harness.oidc_issuer import OidcIssuer
from tests.harness.operator_fixtures import kube_for, wait_until
from tests.harness.real_apiserver import RealApiServer
from tests.unit.dashboard_data import seed

CLIENT_ID = "deep-dashboard"
CLIENT_SECRET = "dashboard-secret"
GROUP = "deep-hybrid-datacloud.eu"


def grant(api: RealApiServer, namespace: str, resources: list[str], subject: dict[str, str]) -> None:
    """A Role to list (and get) `resources` in `namespace`, bound to `subject`."""
    name = f"dashboard-readers-{subject['name'].rsplit('#', 1)[-1]}"
    api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": name, "namespace": namespace},
                "rules": [{"apiGroups": [GROUP], "resources": resources, "verbs": ["get", "list"]}]})
    api.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": name, "namespace": namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject}]})


def allowed(kube: k.Kube, user: str, groups: list[str], namespace: str, resource: str) -> bool:
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": user, "groups": groups, "resourceAttributes": {
                  "namespace": namespace, "verb": "list", "group": GROUP, "resource": resource}}}
    answer = kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)
    return bool(answer["status"].get("allowed"))


@dataclass
class Site:
    issuer: OidcIssuer
    url: str
    settings: SignInSettings
    kube_url: str


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as running:
        yield running


@pytest.fixture
async def site(real_apiserver: RealApiServer, issuer: OidcIssuer) -> AsyncIterator[Site]:
    """alice's and bob's work (tests/unit/dashboard_data.py); RBAC: the user alice may list
    TrainingJobs and InferenceServices in alice, the group ml-team only InferenceServices in bob."""
    real_apiserver.reset()
    admin = kube_for(real_apiserver.url)
    seed(admin, real_apiserver)
    admin.create({"apiVersion": f"{GROUP}/v1alpha1", "kind": "InferenceService",
                  "metadata": {"name": "bob-api", "namespace": "bob"}, "spec": {"module": "bob-model"}})
    alice = f"{issuer.url}#alice"  # the API server's default username prefix for a `sub` claim
    grant(real_apiserver, "alice", ["trainingjobs", "inferenceservices"], {"kind": "User", "name": alice})
    grant(real_apiserver, "bob", ["inferenceservices"], {"kind": "Group", "name": "oidc:ml-team"})
    issuer.add_user("alice")
    issuer.add_user("carol", groups=["ml-team"])
    await_rbac = [(alice, [], "alice", "trainingjobs"), ("x", ["oidc:ml-team"], "bob", "inferenceservices")]
    for user, groups, namespace, resource in await_rbac:  # RBAC reaches the authorizer by a watch
        def granted(u: str = user, g: list[str] = groups, n: str = namespace, r: str = resource) -> bool:
            return allowed(admin, u, g, n, r)

        wait_until(granted, 20, 0.2, f"{user} may list {resource} in {namespace}")
    settings = SignInSettings(mode=OIDC, issuer=issuer.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                              groups_prefix="oidc:", cookie_key=os.urandom(32)).check()
    web = kube_for(real_apiserver.url, component="web")
    server = TestServer(create_app(web, OperatorConfig(metrics_port=0, health_port=0), settings),
                        host="127.0.0.1")
    await server.start_server()
    issuer.add_client(CLIENT_ID, str(server.make_url("/callback")), CLIENT_SECRET)
    try:
        yield Site(issuer, str(server.make_url("")).rstrip("/"), settings, real_apiserver.url)
    finally:
        await server.close()
        web.close()
        admin.close()


def browser_session() -> aiohttp.ClientSession:
    # unsafe: keep cookies of an IP-address host (127.0.0.1), as a browser does
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(session: aiohttp.ClientSession, site: Site, user: str, path: str = "/dashboard/") -> Any:
    site.issuer.auto_login = user
    async with session.get(site.url + path) as response:
        return response.status, str(response.url), await response.text()


async def test_each_person_sees_what_rbac_lets_them_list(site: Site) -> None:
    async with browser_session() as session:
        status, url, html = await sign_in(session, site, "alice")
        assert (status, url) == (200, site.url + "/dashboard/"), html
        for name in ("retrain-phyto", "big-model", "phyto-api"):
            assert f'data-name="{name}"' in html, name
        assert 'data-name="queued-run"' not in html and "Namespace bob" not in html
        assert 'id="username">' + site.issuer.url + "#alice<" in html
        # bob's job page: refused before it is even read
        async with session.get(site.url + "/dashboard/trainingjobs/bob/queued-run") as page:
            assert page.status == 403
            assert "may not see TrainingJobs in namespace bob" in await page.text()
        async with session.get(site.url + "/dashboard/trainingjobs/alice/big-model") as page:
            assert page.status == 200 and "OOMKilled" in await page.text()
        # another web replica with the same cookie key knows her (cookies ignore the port)
        web = kube_for(site.kube_url, component="web")
        replica = TestServer(create_app(web, OperatorConfig(metrics_port=0, health_port=0), site.settings),
                             host="127.0.0.1")
        await replica.start_server()
        try:
            async with session.get(replica.make_url("/dashboard/"), allow_redirects=False) as page:
                assert page.status == 200 and 'data-name="retrain-phyto"' in await page.text()
        finally:
            await replica.close()
            web.close()

    async with browser_session() as session:  # carol, by her group: bob's services only
        status, _, html = await sign_in(session, site, "carol")
        assert status == 200
        assert 'data-name="bob-api"' in html
        assert 'data-name="queued-run"' not in html  # a TrainingJob: not granted to ml-team
        assert 'data-name="retrain-phyto"' not in html and 'data-name="phyto-api"' not in html
        async with session.get(site.url + "/dashboard/inferenceservices/alice/phyto-api") as page:
            assert page.status == 403


async def test_without_a_session_the_dashboard_sends_people_to_sign_in(site: Site) -> None:
    async with browser_session() as session:
        async with session.get(site.url + "/dashboard/?namespace=alice", allow_redirects=False) as first:
            assert first.status == 302
            where = urllib.parse.urlsplit(first.headers["Location"])
            assert where.path == "/signin"
            assert urllib.parse.parse_qs(where.query) == {"next": ["/dashboard/?namespace=alice"]}
        async with session.get(site.url + first.headers["Location"], allow_redirects=False) as signin:
            assert signin.status == 302
            authorize = signin.headers["Location"]
            assert authorize.startswith(site.issuer.url + "/authorize?")
            assert "code_challenge_method=S256" in authorize and "nonce=" in authorize
            cookie = signin.cookies["deep_signin"]
            assert cookie["httponly"] and cookie["samesite"] == "Lax"
        # the catalogue stays public
        async with session.get(site.url + "/catalogue/", allow_redirects=False) as catalogue:
            assert catalogue.status == 200


async def test_a_forged_or_foreign_answer_signs_nobody_in(site: Site) -> None:
    async with browser_session() as session:
        site.issuer.auto_login = "alice"
        async with session.get(site.url + "/signin", allow_redirects=False) as signin:
            authorize = signin.headers["Location"]
        async with session.get(authorize, allow_redirects=False) as answer:
            callback = answer.headers["Location"]
        # the issuer's answer with another state (an attacker's login-CSRF) is refused
        forged = callback.replace("state=", "state=x")
        async with session.get(forged, allow_redirects=False) as refused:
            assert refused.status == 400 and "state differs" in await refused.text()
        # a session cookie signed with another key is no session
        session.cookie_jar.update_cookies({"deep_session": forged_session()})
        async with session.get(site.url + "/dashboard/", allow_redirects=False) as page:
            assert page.status == 302 and page.headers["Location"].startswith("/signin")


def forged_session() -> str:
    from deep_platform.signin.session import SESSION, CookieSealer

    return CookieSealer(os.urandom(32)).seal(SESSION, {"sub": "admin", "groups": ["system:masters"]}, 600)
