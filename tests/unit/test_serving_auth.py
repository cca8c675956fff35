"""The pure parts of serving auth and the prefix: policies from spec.auth and the site default,
Secret token digests, WWW-Authenticate, Location/HTML/API-document rewriting, the upstream
request target, and Ready from a replica stuck on its storage."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from deep_platform.activator import prefix
from deep_platform.activator.gate import token_digests
from deep_platform.activator.proxy import upstream_target
from deep_platform.api.auth import ServiceAuth
from deep_platform.api.inferenceservice import InferenceServiceStatus
from deep_platform.auth import Oidc, Refusal, SiteAuth, TokenChecker, policy_for, www_authenticate
from deep_platform.auth.tokens import digest, matches_any
from deep_platform.conditions import get_condition, set_condition
from deep_platform.controllers.inferenceservice import storage_blocks_ready
from tests.harness.oidc_issuer import OidcIssuer

SITE = SiteAuth(required=True, issuer="https://iam.example", audience="deep")
WHAT = "InferenceService ns/m"


def auth(**fields: object) -> ServiceAuth:
    return ServiceAuth.model_validate(fields)


def test_policies_from_spec_auth_and_the_site() -> None:
    assert policy_for(auth(public=True), SITE, WHAT).public
    assert policy_for(None, SiteAuth(required=False), WHAT).public
    # public: false is a request for auth even where the site does not require it
    assert policy_for(
        auth(public=False), SiteAuth(required=False, issuer="https://i", audience="a"), WHAT
    ).oidc
    site_default = policy_for(None, SITE, WHAT)
    assert site_default.oidc == Oidc("https://iam.example", "deep")
    own = policy_for(auth(oidc={"allowedGroups": ["ml"], "audience": "mine"}), SITE, WHAT)
    assert own.oidc == Oidc("https://iam.example", "mine", frozenset(), frozenset({"ml"}))
    secret = policy_for(auth(tokenSecret={"name": "callers"}), SITE, WHAT)
    assert (secret.token_secret, secret.oidc) == (("callers", "tokens"), None)


def test_unusable_policies_say_how_to_fix_them() -> None:
    nothing = policy_for(None, SiteAuth(required=True), WHAT)
    assert nothing.unusable and "spec.auth" in nothing.unusable and "public: true" in nothing.unusable
    assert WHAT in nothing.unusable
    no_audience = policy_for(auth(oidc={"issuer": "https://other.example"}), SiteAuth(), WHAT)
    assert no_audience.unusable and "spec.auth.oidc.audience" in no_audience.unusable
    secrets_off = policy_for(auth(tokenSecret={"name": "x"}), SiteAuth(secret_tokens=False), WHAT)
    assert secrets_off.unusable and "turned Secret tokens off" in secrets_off.unusable


def test_public_cannot_be_combined_with_methods() -> None:
    with pytest.raises(ValueError, match="remove public or remove the methods"):
        auth(public=True, tokenSecret={"name": "x"})


def test_secret_tokens_are_kept_as_digests_and_compared_fully() -> None:
    secret = {"data": {"tokens": base64.b64encode(b"# callers\nalpha\n\n  beta  \n").decode()}}
    digests = token_digests(secret, "tokens")
    assert digests == {digest("alpha"), digest("beta")}
    assert matches_any("beta", digests or frozenset()) and not matches_any("gamma", digests or frozenset())
    assert token_digests(secret, "other") is None and token_digests(None, "tokens") is None


def test_www_authenticate_follows_rfc_6750() -> None:
    refusal = Refusal(401, "TokenInvalid", 'the token is not meant for audience "x"', error="invalid_token")
    assert www_authenticate(refusal, "deep-platform") == (
        'Bearer realm="deep-platform", error="invalid_token", '
        "error_description=\"the token is not meant for audience 'x'\""
    )
    assert www_authenticate(Refusal(401, "TokenMissing", "send one"), "r") == 'Bearer realm="r"'


async def test_a_reused_verification_never_outlives_the_token() -> None:
    with OidcIssuer() as issuer:
        checker = TokenChecker(SiteAuth(), leeway=0)
        oidc = Oidc(issuer.url, "deep")
        token = issuer.mint("ana", audience="deep", expires_in=1)
        assert (await checker.verify(token, oidc))["sub"] == "ana"
        assert (await checker.verify(token, oidc))["sub"] == "ana"  # from the reuse
        await asyncio.sleep(1.6)
        with pytest.raises(Refusal) as refused:
            await checker.verify(token, oidc)
        assert refused.value.reason == "TokenExpired"
        # a token for another audience is not answered from the first one's verification
        with pytest.raises(Refusal, match="audience"):
            await checker.verify(issuer.mint("ana", audience="deep"), Oidc(issuer.url, "other"))


def test_locations_stay_inside_the_prefix() -> None:
    hosts = frozenset({"m.ns.svc:80", "m.ns.svc"})
    assert prefix.location("/api", "/ns/m", hosts) == "/ns/m/api"
    assert prefix.location("/ns/m/api", "/ns/m", hosts) == "/ns/m/api"
    assert prefix.location("http://m.ns.svc:80/v2/?a=1", "/ns/m", hosts) == "/ns/m/v2/?a=1"
    assert prefix.location("https://elsewhere.example/x", "/ns/m", hosts) == "https://elsewhere.example/x"
    assert prefix.location("//evil.example/x", "/ns/m", hosts) == "//evil.example/x"
    assert prefix.location("relative/path", "/ns/m", hosts) == "relative/path"


def test_swagger_page_and_document_are_prefixed() -> None:
    page = (
        b'<link href="/static/a.css"><script src="/static/b.js"></script><a href="//cdn.x/y">'
        b'url: "/swagger.json",'
    )
    assert prefix.body(page, "api", "text/html; charset=utf-8", "/ns/m") == (
        b'<link href="/ns/m/static/a.css"><script src="/ns/m/static/b.js"></script><a href="//cdn.x/y">'
        b'url: "/ns/m/swagger.json",'
    )
    swagger = json.loads(
        prefix.body(b'{"swagger": "2.0", "paths": {}}', "swagger.json", "application/json", "/ns/m")
    )
    assert swagger["basePath"] == "/ns/m"
    openapi = json.loads(prefix.body(b'{"openapi": "3.0.0"}', "openapi.json", "application/json", "/ns/m"))
    assert openapi["servers"] == [{"url": "/ns/m"}]
    kept = b'{"swagger": "2.0", "basePath": "/api"}'
    assert prefix.body(kept, "swagger.json", "application/json", "/ns/m") == kept
    assert prefix.wants_body("swagger.json", "application/json", None)
    assert not prefix.wants_body("v2/models/", "application/json", None)
    assert not prefix.wants_body("api", "text/html", "gzip")


def test_the_model_gets_the_raw_path_and_query() -> None:
    assert upstream_target("/ns/m/v2/models/x/predict/?text=caf%C3%A9%20au", "/ns/m") == (
        "/v2/models/x/predict/?text=caf%C3%A9%20au"
    )
    assert upstream_target("/ns/m", "/ns/m") == "/"
    assert upstream_target("/ns/m?x=1", "/ns/m") == "/?x=1"


def test_a_replica_stuck_on_its_storage_makes_ready_false_with_that_reason() -> None:
    status = InferenceServiceStatus(ready_replicas=0)
    set_condition(status, "Ready", False, "Starting", "waiting for a ready replica (0/1)", 2)
    set_condition(status, "StorageReady", False, "SecretNotFound", "Secret 'webdav' does not exist", 2)
    storage_blocks_ready(status, 2)
    ready = get_condition(status, "Ready")
    assert ready is not None
    assert (ready.status, ready.reason, ready.message) == (
        "False",
        "SecretNotFound",
        "Secret 'webdav' does not exist",
    )
    serving = InferenceServiceStatus(ready_replicas=1)
    set_condition(serving, "Ready", True, "Serving", "1/1 replicas ready", 2)
    set_condition(serving, "StorageReady", False, "SecretNotFound", "gone since", 2)
    storage_blocks_ready(serving, 2)
    assert get_condition(serving, "Ready").reason == "Serving"  # type: ignore[union-attr]
