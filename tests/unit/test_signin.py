"""Sign-in's pure parts: settings, claims to a Kubernetes user (as kube-apiserver maps them),
the signed cookies, and the ID token checks against a local issuer's real signed tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from deep_platform.signin import (
    ClaimError,
    Identity,
    SettingsError,
    SignInSettings,
    Viewer,
    identity_from_claims,
)
from deep_platform.signin.access import AccessReviewer
from deep_platform.signin.oidc import OidcClient, SignInError, pkce_challenge
from deep_platform.signin.session import PENDING, SESSION, CookieSealer
from deep_platform.signin.settings import NONE_UNSAFE, OIDC
from tests.harness.oidc_issuer import OidcIssuer, SigningKey

ISSUER = "https://iam.example.org"
KEY = b"k" * 32


def settings(**changes: Any) -> SignInSettings:
    base: dict[str, Any] = {"mode": OIDC, "issuer": ISSUER, "client_id": "deep", "cookie_key": KEY}
    return SignInSettings(**{**base, **changes})


# claims, as the API server's OIDC authenticator maps them

def test_username_gets_the_issuer_prefix_like_the_api_server() -> None:
    who = identity_from_claims({"sub": "alice", "groups": ["ml"]}, settings())
    assert who == Identity(f"{ISSUER}#alice", ("ml", "system:authenticated"))


def test_email_claim_has_no_prefix_and_must_be_verified() -> None:
    email = settings(username_claim="email")
    assert identity_from_claims({"email": "a@x.org"}, email).username == "a@x.org"
    with pytest.raises(ClaimError, match="not verified"):
        identity_from_claims({"email": "a@x.org", "email_verified": False}, email)


def test_explicit_prefixes_and_a_string_group() -> None:
    mapped = settings(username_prefix="oidc:", groups_prefix="oidc:", groups_claim="roles")
    who = identity_from_claims({"sub": "alice", "roles": "admin"}, mapped)
    assert who == Identity("oidc:alice", ("oidc:admin", "system:authenticated"))
    assert identity_from_claims({"sub": "alice"}, settings(username_prefix="-")).username == "alice"


@pytest.mark.parametrize(("claims", "named"),
                         [({"name": "x"}, "'sub'"), ({"sub": "a", "groups": [1]}, "'groups'")])
def test_unmappable_claims_are_named(claims: dict[str, Any], named: str) -> None:
    with pytest.raises(ClaimError, match=named):
        identity_from_claims(claims, settings())


# settings

def test_settings_from_the_environment(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    env = {"DEEP_WEB_AUTH_MODE": "oidc", "DEEP_OIDC_ISSUER": ISSUER + "/", "DEEP_OIDC_CLIENT_ID": "deep",
           "DEEP_WEB_COOKIE_KEY_FILE": str(key), "DEEP_OIDC_USERNAME_CLAIM": "email",
           "DEEP_OIDC_SCOPES": "openid email groups"}
    read = SignInSettings.from_env(env)
    assert (read.issuer, read.cookie_key, read.scopes) == (ISSUER, key.read_bytes().strip(),
                                                          ("openid", "email", "groups"))
    assert read.effective_username_prefix == ""
    assert SignInSettings.from_env({}).mode == OIDC and not SignInSettings.from_env({}).configured


@pytest.mark.parametrize(("env", "named"), [
    ({"DEEP_WEB_AUTH_MODE": "off"}, "DEEP_WEB_AUTH_MODE"),
    ({"DEEP_OIDC_ISSUER": ISSUER}, "DEEP_OIDC_CLIENT_ID"),
    ({"DEEP_OIDC_ISSUER": ISSUER, "DEEP_OIDC_CLIENT_ID": "deep"}, "cookie key"),
    ({"DEEP_WEB_COOKIE_KEY_FILE": "/nonexistent/key"}, "DEEP_WEB_COOKIE_KEY_FILE"),
])
def test_bad_settings_name_what_to_set(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        SignInSettings.from_env(env)


# cookies

def test_cookies_are_signed_typed_and_expire() -> None:
    sealer = CookieSealer(KEY)
    value = sealer.seal(SESSION, {"sub": "alice"}, 60)
    assert sealer.open(SESSION, value)["sub"] == "alice"  # type: ignore[index]
    assert CookieSealer(KEY).open(SESSION, value) is not None  # another replica, same key
    assert CookieSealer(b"o" * 32).open(SESSION, value) is None  # another key
    assert sealer.open(PENDING, value) is None  # a session is no pending sign-in
    head, body, signature = value.split(".")
    assert sealer.open(SESSION, f"{head}.{body}.{signature[::-1]}") is None
    assert sealer.open(SESSION, sealer.seal(SESSION, {"sub": "alice"}, -1)) is None
    assert sealer.open(SESSION, OidcIssuer.unsigned({"sub": "admin", "aud": "deep-platform-web/session",
                                                     "exp": time.time() + 60})) is None


def test_pkce_challenge_is_rfc7636_s256() -> None:
    # RFC 7636, appendix B
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


# access answers are reused for a while, and an error is a refusal

class CountingKube:
    def __init__(self, answer: Any) -> None:
        self.answer, self.calls = answer, 0

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return {"status": {"allowed": self.answer}}


def test_access_answers_are_cached_briefly() -> None:
    now = [0.0]
    kube = CountingKube(True)
    reviewer = AccessReviewer(kube, ttl=10, clock=lambda: now[0])  # type: ignore[arg-type]
    alice = Identity("alice", ("system:authenticated",))
    assert reviewer.may(alice, "list", "trainingjobs", "a")
    assert reviewer.may(alice, "list", "trainingjobs", "a") and kube.calls == 1
    now[0] = 11
    assert reviewer.may(alice, "list", "trainingjobs", "a") and kube.calls == 2
    failing = AccessReviewer(CountingKube(OSError("unreachable")), ttl=10)  # type: ignore[arg-type]
    assert not failing.may(alice, "list", "trainingjobs", "a")


def test_a_page_asks_missing_reviews_once_each_side_by_side() -> None:
    kube = CountingKube(True)
    reviewer = AccessReviewer(kube, ttl=60)  # type: ignore[arg-type]
    alice = Identity("alice", ("system:authenticated",))
    viewer = Viewer(alice, reviewer)
    viewer.prefetch(["a", "b", "c", "a"], "trainingjobs")
    assert kube.calls == 3
    assert all(viewer.may_list(ns, "trainingjobs") for ns in "abc") and kube.calls == 3
    later = Viewer(alice, reviewer)  # the next page: only d is new
    later.prefetch(["a", "b", "c", "d"], "trainingjobs")
    assert all(later.may_list(ns, "trainingjobs") for ns in "abcd") and kube.calls == 4


# ID tokens: real tokens of a local issuer, checked as the callback checks them

@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:  # shared: tokens carry the current key, whatever rotated
    with OidcIssuer() as running:
        yield running


def client_of(issuer: OidcIssuer) -> OidcClient:
    return OidcClient(settings(issuer=issuer.url))


async def test_a_good_id_token_passes(issuer: OidcIssuer) -> None:
    token = issuer.mint("alice", audience="deep", nonce="n1", groups=["ml"])
    claims = await client_of(issuer).verify_id_token(token, "n1")
    assert claims["sub"] == "alice" and claims["groups"] == ["ml"]


async def test_a_rotated_key_is_fetched_once(issuer: OidcIssuer) -> None:
    client = OidcClient(settings(issuer=issuer.url), refresh_cooldown=0)
    before = issuer.requests["/jwks"]
    await client.verify_id_token(issuer.mint("alice", audience="deep", nonce="n"), "n")
    issuer.rotate(retire_old=True)
    await client.verify_id_token(issuer.mint("alice", audience="deep", nonce="n"), "n")
    await client.verify_id_token(issuer.mint("bob", audience="deep", nonce="n"), "n")
    assert issuer.requests["/jwks"] - before == 2
    # the activator's rule (one key cache): a rotation is fetched at once, but within the cooldown
    # a second unknown key id is refused without asking the issuer again
    cooling = client_of(issuer)
    await cooling.verify_id_token(issuer.mint("alice", audience="deep", nonce="n"), "n")
    issuer.rotate()
    await cooling.verify_id_token(issuer.mint("alice", audience="deep", nonce="n"), "n")
    assert issuer.requests["/jwks"] - before == 4
    issuer.rotate()
    with pytest.raises(SignInError, match="signing key"):
        await cooling.verify_id_token(issuer.mint("alice", audience="deep", nonce="n"), "n")
    assert issuer.requests["/jwks"] - before == 4


@pytest.mark.parametrize(("token_of", "why"), [
    (lambda i: i.mint("alice", audience="other", nonce="n"), "(?i)audience"),
    (lambda i: i.mint("alice", audience="deep", nonce="n", expires_in=-120), "expired"),
    (lambda i: i.mint("alice", audience="deep", nonce="n", issuer="https://evil.example.org"), "issuer"),
    (lambda i: i.mint("alice", audience="deep", nonce="other"), "nonce"),
    (lambda i: i.mint("alice", audience="deep", nonce="n", key=SigningKey.generate()), "refused"),
    (lambda i: i.mint("alice", audience=["deep", "other"], nonce="n"), "azp"),
    (lambda i: OidcIssuer.unsigned({"iss": i.url, "sub": "admin", "aud": "deep", "nonce": "n",
                                    "exp": int(time.time()) + 60, "iat": int(time.time())}), "refused"),
    (lambda i: jwt.encode({"iss": i.url, "sub": "admin", "aud": "deep", "nonce": "n", "iat": int(time.time()),
                           "exp": int(time.time()) + 60}, "d" * 32, algorithm="HS256"), "refused"),
], ids=["audience", "expired", "issuer", "nonce", "foreign-key", "azp", "alg-none", "hmac"])
async def test_bad_id_tokens_are_refused(issuer: OidcIssuer, token_of: Any, why: str) -> None:
    with pytest.raises(SignInError, match=why):
        await client_of(issuer).verify_id_token(token_of(issuer), "n")


async def test_an_issuer_naming_another_issuer_is_refused(issuer: OidcIssuer) -> None:
    client = OidcClient(settings(issuer=issuer.url.replace("127.0.0.1", "localhost")))
    with pytest.raises(SignInError, match="must match exactly"):
        await client.metadata()


def test_open_mode_needs_nothing_else() -> None:
    assert SignInSettings(mode=NONE_UNSAFE).check().configured
