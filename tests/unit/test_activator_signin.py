"""Browser sign-in at the activator, piece by piece: the session cookie, the browser-or-API
decision, a session checked against a target's policy, the `next` path and the expiry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from deep_platform.activator.gate import Gate
from deep_platform.activator.routes import Target
from deep_platform.activator.signin import (
    APP,
    SESSION_COOKIE,
    BrowserSignIn,
    Session,
    SettingsError,
    SignIn,
    cookie_value,
    is_navigation,
    session_from_claims,
    session_seconds,
)
from deep_platform.api.auth import ServiceAuth
from deep_platform.auth import Refusal, SiteAuth, policy_for
from deep_platform.signin.flow import local_path
from deep_platform.signin.session import SESSION, CookieSealer

KEY = b"k" * 32
ISSUER = "https://iam.example.org"
SITE = SiteAuth(required=True, issuer=ISSUER, audience="deep-platform")
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def target(auth: dict[str, object] | None, site: SiteAuth = SITE) -> Target:
    parsed = ServiceAuth.model_validate(auth) if auth is not None else None
    return Target("DevEnvironment", "team", "lab", "lab", policy_for(parsed, site, "DevEnvironment team/lab"))


def check(session: Session, auth: dict[str, object] | None, site: SiteAuth = SITE) -> object:
    return Gate(None, site).check_session(session, target(auth, site))


ALICE = Session(ISSUER, "alice-sub", ("ml", "staff"), "alice")


def test_the_cookie_opens_only_here_with_the_key_and_before_it_expires() -> None:
    sealer = CookieSealer(KEY, app=APP)
    value = sealer.seal(SESSION, {"iss": ISSUER, "sub": "alice-sub", "groups": ["ml"]}, 60)
    opened = sealer.open(SESSION, value)
    assert opened is not None and opened["sub"] == "alice-sub"
    assert CookieSealer(KEY, app=APP).open(SESSION, value) is not None  # another replica
    assert CookieSealer(b"o" * 32, app=APP).open(SESSION, value) is None  # another key
    # the web app's session, under the same key, is no session here, and the other way round
    web = CookieSealer(KEY)
    assert sealer.open(SESSION, web.seal(SESSION, {"sub": "admin", "groups": ["system:masters"]}, 60)) is None
    assert web.open(SESSION, value) is None
    assert sealer.open(SESSION, sealer.seal(SESSION, {"sub": "a"}, -1)) is None  # expired
    assert sealer.open(SESSION, value[:-2] + ("AA" if not value.endswith("AA") else "BB")) is None
    assert sealer.open(SESSION, None) is None


@pytest.mark.parametrize(
    ("method", "headers", "browser"),
    [
        ("GET", {"Accept": HTML}, True),
        ("HEAD", {"Accept": HTML}, True),
        ("GET", {"Accept": "application/json"}, False),
        ("GET", {}, False),  # curl, scripts
        ("POST", {"Accept": HTML}, False),  # a form post never starts a sign-in (its body would be lost)
        ("GET", {"Accept": HTML, "Connection": "Upgrade", "Upgrade": "websocket"}, False),
    ],
)
def test_only_a_browser_opening_a_page_is_sent_to_sign_in(
    method: str, headers: dict[str, str], browser: bool
) -> None:
    assert is_navigation(make_mocked_request(method, "/team/lab/lab", headers=headers)) is browser


def test_a_session_is_checked_as_the_tokens_claims_would_be() -> None:
    # the site's default (no spec.auth): any signed-in person of the site's issuer
    assert check(ALICE, None).subject == "alice-sub"  # type: ignore[attr-defined]
    assert check(ALICE, {"public": True}) is None
    assert check(ALICE, {"oidc": {"allowedGroups": ["staff"]}}).groups == ("ml", "staff")  # type: ignore[attr-defined]
    assert check(ALICE, {"oidc": {"allowedSubjects": ["alice-sub"]}}) is not None
    with pytest.raises(Refusal) as refused:
        check(ALICE, {"oidc": {"allowedGroups": ["admins"]}})
    assert refused.value.status == 403 and "admins" in refused.value.message
    # allowedSubjects are `sub` values, not the username claim's
    with pytest.raises(Refusal) as refused:
        check(ALICE, {"oidc": {"allowedSubjects": ["alice"]}})
    assert refused.value.status == 403


def test_a_session_of_another_issuer_or_for_secret_tokens_is_a_401_that_says_why() -> None:
    with pytest.raises(Refusal) as refused:
        check(ALICE, {"oidc": {"issuer": "https://other.example.org"}})
    assert (refused.value.status, refused.value.reason) == (401, "SessionIssuerMismatch")
    assert ISSUER in refused.value.message and "https://other.example.org" in refused.value.message
    with pytest.raises(Refusal) as refused:
        check(ALICE, {"tokenSecret": {"name": "callers"}})
    assert (refused.value.status, refused.value.reason) == (401, "SessionNotAccepted")
    assert "'callers'" in refused.value.message and "Authorization: Bearer" in refused.value.message
    # both methods: the session stands for the OIDC half
    assert check(ALICE, {"tokenSecret": {"name": "callers"}, "oidc": {"allowedGroups": ["ml"]}}) is not None
    with pytest.raises(Refusal) as refused:
        check(ALICE, None, SiteAuth(required=True))
    assert refused.value.reason == "AuthNotConfigured"


def test_next_is_a_local_path_only() -> None:
    assert local_path("/team/lab/lab?reset", "/") == "/team/lab/lab?reset"
    for bad in ("https://evil.example", "//evil.example/x", "/\\evil.example", "evil", "", None,
                "/x\r\nSet-Cookie: a=b", "/\tx"):
        assert local_path(bad, "/") == "/", bad


def test_the_session_ends_with_the_id_token_at_the_latest() -> None:
    now = time.time()
    assert session_seconds({"exp": now + 300}, 8 * 3600, now) == 300
    assert session_seconds({"exp": now + 86400}, 3600, now) == 3600
    assert session_seconds({"exp": now - 5}, 3600, now) == 0
    assert session_seconds({}, 3600, now) == 0


def test_the_session_keeps_the_raw_claims_policies_speak_of() -> None:
    site = SiteAuth(issuer=ISSUER, groups_claim="eduperson_entitlement", username_claim="email")
    claims = {"iss": ISSUER, "sub": "1234", "email": "a@example.org", "eduperson_entitlement": ["urn:x:ml"],
              "groups": ["ignored"]}
    assert session_from_claims(claims, site) == Session(ISSUER, "1234", ("urn:x:ml",), "a@example.org")
    assert session_from_claims({**claims, "eduperson_entitlement": "one"}, site).groups == ("one",)
    assert session_from_claims({**claims, "eduperson_entitlement": {"x": 1}}, site).groups == ()
    assert session_from_claims({"iss": ISSUER, "sub": "1234"}, site).name == "1234"


def test_settings_name_what_to_set(tmp_path: Path) -> None:
    assert not BrowserSignIn().check(SiteAuth()).enabled  # off: nothing to check
    with pytest.raises(SettingsError, match=r"activator\.auth\.oidc\.issuer"):
        BrowserSignIn(client_id="activator", cookie_key=KEY).check(SiteAuth())
    with pytest.raises(SettingsError, match="cookieSecret"):
        BrowserSignIn(client_id="activator", cookie_key=b"short").check(SITE)
    with pytest.raises(SettingsError, match="openid"):
        BrowserSignIn(client_id="activator", cookie_key=KEY, scopes=("email",)).check(SITE)
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    env = {"DEEP_ACTIVATOR_OIDC_CLIENT_ID": "activator", "DEEP_ACTIVATOR_OIDC_CLIENT_SECRET": "s3cret",
           "DEEP_ACTIVATOR_COOKIE_KEY_FILE": str(key_file),
           "DEEP_ACTIVATOR_PUBLIC_URL": "https://models.example.org/",
           "DEEP_ACTIVATOR_SESSION_SECONDS": "600"}
    settings = BrowserSignIn.from_env(env).check(SITE)
    assert (settings.cookie_key, settings.public_url, settings.session_seconds) == (
        KEY, "https://models.example.org", 600)
    with pytest.raises(SettingsError, match="DEEP_ACTIVATOR_COOKIE_KEY_FILE"):
        BrowserSignIn.from_env({**env, "DEEP_ACTIVATOR_COOKIE_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(SettingsError, match="DEEP_ACTIVATOR_SESSION_SECONDS"):
        BrowserSignIn.from_env({**env, "DEEP_ACTIVATOR_SESSION_SECONDS": "8h"})


def test_the_session_cookie_is_found_among_others_and_opened_sessions_expire_too() -> None:
    header = 'theme=dark; deep_activator_session="abc.def"; deep_session=web'
    assert cookie_value([header], "deep_activator_session") == "abc.def"
    assert cookie_value(["a=1", "deep_activator_session=x"], "deep_activator_session") == "x"
    assert cookie_value(["xdeep_activator_session=1"], "deep_activator_session") is None
    assert cookie_value(["deep_activator_session="], "deep_activator_session") is None

    signin = SignIn(BrowserSignIn(client_id="activator", cookie_key=KEY), SITE)
    data = {"iss": ISSUER, "sub": "alice-sub", "groups": ["ml"], "name": "alice"}
    value = CookieSealer(KEY, app=APP).seal(SESSION, data, 1)

    def request(cookie: str) -> Any:
        return make_mocked_request("GET", "/team/lab/", headers={"Cookie": cookie})

    alice = Session(ISSUER, "alice-sub", ("ml",), "alice")
    assert signin.session(request(f"{SESSION_COOKIE}={value}")) == alice
    assert signin.session(request(f"{SESSION_COOKIE}={value}")) is not None  # from the cache
    assert signin.session(request(f"{SESSION_COOKIE}={value[:-3]}xyz")) is None  # forged: not cached
    time.sleep(1.1)
    assert signin.session(request(f"{SESSION_COOKIE}={value}")) is None  # the cache keeps no expired one
    off = SignIn(BrowserSignIn(), SITE)
    fresh = CookieSealer(KEY, app=APP).seal(SESSION, data, 60)
    assert off.session(request(f"{SESSION_COOKIE}={fresh}")) is None
