"""Serving auth, routing and limits of the real activator, with real tokens of a local OIDC issuer.

Real parts: the activator (proxy and its watch of InferenceServices) against the API server (the
emulator, or the real one with DEEP_TEST_SERVER=real), the OIDC issuer of
tests/harness/oidc_issuer.py (discovery, JWKS, RS256 tokens), and an HTTP backend standing in for
the model that records every request it gets, so a test sees what reached "the model". A service
is "up" through an EndpointSlice with a ready endpoint, as the EndpointSlice controller writes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from deep_platform.activator import metrics as am
from deep_platform.auth import SiteAuth
from tests.harness.oidc_issuer import OidcIssuer, SigningKey
from tests.integration.test_activator import activator_running

NS = "default"
AUDIENCE = "deep-platform"
pytestmark = pytest.mark.timeout(60)


class Backend:
    """The model's place: answers 200 with what it saw, and remembers every request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.url = ""
        self.runner: web.AppRunner | None = None

    async def answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append({"path": request.path_qs, "headers": dict(request.headers), "size": len(body)})
        return web.json_response({"path": request.path_qs, "size": len(body)})

    async def start(self) -> None:
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.answer)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as found:
        yield found


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    found = Backend()
    await found.start()
    yield found
    await found.stop()


def service(apiserver: Any, name: str, auth: dict[str, Any] | None = None, up: bool = True) -> None:
    """An InferenceService (as a user writes it) and, when `up`, a ready endpoint of its Service."""
    spec: dict[str, Any] = {"image": "registry.example/tiny:1"}
    if auth is not None:
        spec["auth"] = auth
    apiserver.create(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }
    )
    if up:
        apiserver.create(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-x1",
                    "namespace": NS,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": True}}],
                "ports": [{"name": "http", "port": 5000, "protocol": "TCP"}],
            }
        )


@asynccontextmanager
async def proxy(apiserver: Any, backend: Backend, **settings: Any) -> AsyncIterator[str]:
    async with activator_running(apiserver, lambda _ns, _svc: backend.url, "auth", **settings) as running:
        yield running.url


async def call(
    url: str, token: str | None = None, method: str = "GET", **kwargs: Any
) -> tuple[int, dict[str, Any], Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, allow_redirects=False, **kwargs) as response,
    ):
        return response.status, dict(response.headers), await response.json(content_type=None)


def refusals(name: str, reason: str) -> float:
    return float(am.AUTH_REFUSALS.labels(NS, name, reason)._value.get())


async def test_only_a_valid_allowed_token_reaches_the_model(
    apiserver: Any, issuer: OidcIssuer, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    oidc = {"issuer": issuer.url, "audience": AUDIENCE, "allowedGroups": ["ml"]}
    service(apiserver, "guarded", {"oidc": oidc})
    foreign = SigningKey.generate()
    same_kid_other_key = SigningKey(issuer.keys[0].kid, SigningKey.generate().private)
    bad = {
        "expired": (
            issuer.mint("ana", audience=AUDIENCE, groups=["ml"], expires_in=-120),
            401,
            "TokenExpired",
        ),
        "wrong audience": (issuer.mint("ana", audience="another-app", groups=["ml"]), 401, "TokenInvalid"),
        "wrong issuer": (
            issuer.mint("ana", audience=AUDIENCE, groups=["ml"], issuer="https://evil.example"),
            401,
            "TokenInvalid",
        ),
        "unknown key": (
            issuer.mint("ana", audience=AUDIENCE, groups=["ml"], key=foreign),
            401,
            "TokenInvalid",
        ),
        "wrong key, known kid": (
            issuer.mint("ana", audience=AUDIENCE, groups=["ml"], key=same_kid_other_key),
            401,
            "TokenInvalid",
        ),
        "alg none": (
            issuer.unsigned(
                {"iss": issuer.url, "sub": "ana", "aud": AUDIENCE, "exp": 2**31, "groups": ["ml"]}
            ),
            401,
            "TokenInvalid",
        ),
        "not a JWT": ("abc.def", 401, "TokenMalformed"),
        "missing group": (issuer.mint("bob", audience=AUDIENCE, groups=["physics"]), 403, "NotAllowed"),
    }
    caplog.set_level(logging.DEBUG)
    async with proxy(apiserver, backend) as url:
        target = f"{url}/{NS}/guarded/v2/models/"
        status, headers, body = await call(target)
        assert (status, body["reason"]) == (401, "TokenMissing"), body
        assert "Authorization: Bearer" in body["message"]
        assert headers["WWW-Authenticate"] == 'Bearer realm="deep-platform"'
        status, headers, body = await call(target, headers={"Authorization": "Basic YW5hOnB3"})
        assert (status, body["reason"]) == (401, "TokenMalformed")
        assert 'error="invalid_request"' in headers["WWW-Authenticate"]

        for case, (token, code, reason) in bad.items():
            before = refusals("guarded", reason)
            status, headers, body = await call(target, token)
            assert (status, body["reason"]) == (code, reason), (case, body)
            assert body["message"] and token not in body["message"], case
            error = "insufficient_scope" if code == 403 else "invalid_token"
            assert f'error="{error}"' in headers["WWW-Authenticate"], (case, headers)
            assert refusals("guarded", reason) == before + 1, case
        assert not backend.seen, "a refused request reached the model"
        _, _, body = await call(target, bad["missing group"][0])
        assert "ml" in body["message"], "a 403 says which group is missing"

        good = issuer.mint("ana", audience=AUDIENCE, groups=["ml"])
        status, _, body = await call(target, good)
        assert status == 200, body
        assert len(backend.seen) == 1
        assert "Authorization" not in backend.seen[0]["headers"], "the checked token stays with the activator"
        assert backend.seen[0]["headers"]["X-Forwarded-Prefix"] == f"/{NS}/guarded"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for token, _, _ in [*bad.values(), (good, 0, "")]:
        assert token not in logged


async def test_a_refused_request_never_wakes_the_model(
    apiserver: Any, issuer: OidcIssuer, backend: Backend
) -> None:
    service(apiserver, "sleeping", {"oidc": {"issuer": issuer.url, "audience": AUDIENCE}}, up=False)
    apiserver.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "sleeping", "namespace": NS},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "sleeping"}},
                "template": {
                    "metadata": {"labels": {"app": "sleeping"}},
                    "spec": {"containers": [{"name": "m", "image": "registry.example/tiny:1"}]},
                },
            },
        }
    )
    async with proxy(apiserver, backend) as url:
        for token in (None, issuer.mint("ana", audience="other")):
            status, _, body = await call(f"{url}/{NS}/sleeping/v2/models/", token)
            assert status == 401, body
        await asyncio.sleep(0.3)  # a wake-up, had one started, would have scaled by now
    deployment = apiserver.get("deployments.apps", NS, "sleeping")
    assert deployment["spec"]["replicas"] == 0
    status_ = (apiserver.get("inferenceservices.deep-hybrid-datacloud.eu", NS, "sleeping") or {}).get(
        "status"
    )
    assert not (status_ or {}).get("lastRequestTime"), "a refused request is not a request of the service"


async def test_keys_are_cached_and_a_rotated_key_is_fetched(
    apiserver: Any, issuer: OidcIssuer, backend: Backend
) -> None:
    service(apiserver, "rotating", {"oidc": {"issuer": issuer.url, "audience": AUDIENCE}})
    async with proxy(apiserver, backend) as url:
        target = f"{url}/{NS}/rotating/v2/models/"
        for _ in range(20):
            status, _, _ = await call(target, issuer.mint("ana", audience=AUDIENCE))
            assert status == 200
        assert issuer.requests["/jwks"] == 1, "the keys are fetched once, not per request"
        issuer.rotate(retire_old=True)
        status, _, body = await call(target, issuer.mint("ana", audience=AUDIENCE))
        assert status == 200, body  # the new key id made one refetch
        assert issuer.requests["/jwks"] == 2
        # made-up key ids do not turn into a fetch each: one refetch per interval at most
        for _ in range(5):
            status, _, _ = await call(
                target, issuer.mint("ana", audience=AUDIENCE, key=SigningKey.generate())
            )
            assert status == 401
        assert issuer.requests["/jwks"] <= 3


async def test_secret_tokens_and_forwarding_on_request(apiserver: Any, backend: Backend) -> None:
    apiserver.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "callers", "namespace": NS},
            "stringData": {"tokens": "# one per line\nalpha-0123456789\n\nbeta-0123456789\n"},
        }
    )
    service(apiserver, "shared", {"tokenSecret": {"name": "callers"}, "forwardAuthorization": True})
    service(apiserver, "orphan", {"tokenSecret": {"name": "nothing-here"}})
    async with proxy(apiserver, backend) as url:
        status, _, body = await call(f"{url}/{NS}/shared/v2/models/", "beta-0123456789")
        assert status == 200, body
        assert backend.seen[-1]["headers"]["Authorization"] == "Bearer beta-0123456789"  # opted in
        status, _, body = await call(f"{url}/{NS}/shared/v2/models/", "gamma-0123456789")
        assert (status, body["reason"]) == (401, "TokenInvalid")
        assert "callers" in body["message"]
        status, _, body = await call(f"{url}/{NS}/orphan/v2/models/", "alpha-0123456789")
        assert (status, body["reason"]) == (401, "TokenInvalid")
        assert "nothing-here" in body["message"] and "does not exist" in body["message"]
    assert len(backend.seen) == 1


async def test_site_default_requires_a_token_unless_public(
    apiserver: Any, issuer: OidcIssuer, backend: Backend
) -> None:
    service(apiserver, "plain")
    service(apiserver, "open", {"public": True})
    site = SiteAuth(required=True, issuer=issuer.url, audience=AUDIENCE)
    async with proxy(apiserver, backend, auth=site) as url:
        status, _, body = await call(f"{url}/{NS}/plain/v2/models/")
        assert (status, body["reason"]) == (401, "TokenMissing")
        status, _, body = await call(f"{url}/{NS}/plain/v2/models/", issuer.mint("ana", audience=AUDIENCE))
        assert status == 200, body
        status, _, body = await call(f"{url}/{NS}/open/v2/models/")
        assert status == 200, body
    async with proxy(apiserver, backend, auth=SiteAuth(required=True)) as url:
        status, headers, body = await call(
            f"{url}/{NS}/plain/v2/models/", issuer.mint("ana", audience=AUDIENCE)
        )
        assert (status, body["reason"]) == (401, "AuthNotConfigured")
        assert "spec.auth" in body["message"] and "public: true" in body["message"]
        assert headers["WWW-Authenticate"].startswith("Bearer ")


async def test_only_existing_services_are_routed(apiserver: Any, backend: Backend) -> None:
    """A Service (or anything else) without an InferenceService is not reachable; one deleted
    stops being reachable."""
    apiserver.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns-ish", "namespace": NS},
            "spec": {"ports": [{"port": 80}]},
        }
    )
    service(apiserver, "public", {"public": True})
    async with proxy(apiserver, backend) as url:
        for path in (f"/{NS}/kube-dns-ish/", "/kube-system/kube-dns/metrics", f"/{NS}/nope/v2/"):
            status, _, body = await call(url + path)
            assert (status, body["reason"]) == (404, "NotFound"), path
        assert (await call(f"{url}/{NS}/public/v2/"))[0] == 200
        served = 1
        apiserver.delete("inferenceservices.deep-hybrid-datacloud.eu", NS, "public")
        for _ in range(100):  # until the watch brings the deletion
            status = (await call(f"{url}/{NS}/public/v2/"))[0]
            if status == 404:
                break
            served += status == 200
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("a deleted InferenceService is still routed")
    assert [seen["path"] for seen in backend.seen] == ["/v2/"] * served, "only the service's path"


async def test_body_size_limit(apiserver: Any, backend: Backend) -> None:
    service(apiserver, "small", {"public": True})
    async with proxy(apiserver, backend, max_body_size=100_000) as url:
        target = f"{url}/{NS}/small/v2/models/tinymodel/predict/"
        status, _, body = await call(target, method="POST", data=b"x" * 100_000)
        assert status == 200 and body["size"] == 100_000
        status, _, body = await call(target, method="POST", data=b"x" * 100_001)
        assert (status, body["reason"]) == (413, "RequestTooLarge"), body
        assert "100000" in body["message"] and "maxBodySize" in body["message"]

        async def stream() -> AsyncIterator[bytes]:  # no Content-Length: cut while forwarding
            for _ in range(40):
                yield b"y" * 10_000

        status, _, body = await call(target, method="POST", data=stream())
        assert (status, body["reason"]) == (413, "RequestTooLarge"), body
    assert [seen["size"] for seen in backend.seen] == [100_000]


async def test_queue_is_bounded_per_service(apiserver: Any, backend: Backend) -> None:
    """Requests held for a starting service beyond queue_limit get 503 + Retry-After at once."""
    service(apiserver, "cold", {"public": True}, up=False)
    async with proxy(apiserver, backend, queue_limit=2, cold_start_timeout=3.0) as url:
        target = f"{url}/{NS}/cold/v2/models/"
        held = [asyncio.create_task(call(target)) for _ in range(2)]
        await asyncio.sleep(0.5)  # both are waiting for the wake-up now
        status, headers, body = await call(target)
        assert (status, body["reason"]) == (503, "QueueFull"), body
        assert int(headers["Retry-After"]) > 0
        assert not any(task.done() for task in held), "the held requests still wait"
        results = await asyncio.gather(*held)
        assert [(code, body["reason"]) for code, _, body in results] == [(503, "ModelStarting")] * 2


@pytest.mark.parametrize(
    ("reason", "retry"),
    [
        ("ModuleNotFound", False),
        ("ModuleNotServable", False),
        ("InvalidSpec", False),
        ("StorageUnavailable", False),
        ("SecretNotFound", False),
        ("DeploymentRejected", True),
        ("ImagePullBackOff", False),
        ("CrashLoopBackOff", False),
        ("Unschedulable", True),
    ],
)
async def test_a_reason_the_model_cannot_start_from_answers_at_once(
    apiserver: Any, backend: Backend, reason: str, retry: bool
) -> None:
    """The operator's Ready=False verdict (written here as the operator writes it) is the answer:
    503 with its reason and message, Retry-After only where waiting may help, no hold."""
    service(apiserver, "broken", {"public": True}, up=False)
    message = f"what the operator says about {reason}; how to fix it"
    apiserver.patch_status(
        "inferenceservices.deep-hybrid-datacloud.eu",
        NS,
        "broken",
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        },
    )
    async with proxy(apiserver, backend, cold_start_timeout=30.0) as url:
        started = asyncio.get_running_loop().time()
        status, headers, body = await call(f"{url}/{NS}/broken/v2/models/")
        assert asyncio.get_running_loop().time() - started < 5, "held instead of answered"
    assert (status, body["reason"], body["message"]) == (503, reason, message)
    assert ("Retry-After" in headers) is retry
    assert not backend.seen
