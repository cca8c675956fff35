"""Browser sign-in at the activator: a person opens a non-public InferenceService's Swagger UI or
a DevEnvironment's JupyterLab, is sent to the site's issuer (authorization code with PKCE, the
flow of signin/flow.py) and comes back with a session cookie of the activator's own.

The routes live under `/.auth/` (a Kubernetes namespace cannot start with a dot, so no target
can be there). The session holds the ID token's issuer, `sub` and groups (the site's groups
claim) as the issuer wrote them: the words of `spec.auth.oidc.allowedSubjects` and
`allowedGroups`, which gate.py checks exactly as it checks a bearer token's claims. It expires
with the ID token at the latest. The cookie is HttpOnly, SameSite=Lax (no cross-site POST carries
it), Secure on https, and never leaves the activator (proxy.py and devenv.py drop `deep_*`
cookies before forwarding); it is never logged.
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from ..auth import SiteAuth
from ..auth.keys import IssuerKeys
from ..signin import flow
from ..signin.flow import MAX_COOKIE_BYTES
from ..signin.oidc import OidcClient, SignInError
from ..signin.session import SESSION, CookieSealer
from ..signin.settings import MIN_KEY_BYTES, SettingsError, SignInSettings, read_key_file
from . import websocket

log = logging.getLogger(__name__)

#: the reserved path of the sign-in routes: `.auth` can never be a namespace
PREFIX = "/.auth"
SESSION_COOKIE = "deep_activator_session"
PENDING_COOKIE = "deep_activator_signin"
#: the cookies' audience prefix: the web app's cookies (deep-platform-web/...) never open here
APP = "deep-platform-activator"
#: opened sessions kept per cookie value (bounded; each entry until its cookie's expiry): opening
#: the HS256 cookie costs more than forwarding a small request (bench/activator_auth.py)
OPENED_MAX = 10_000
NOT_CONFIGURED = ("Browser sign-in is not configured at this activator (chart "
                  "activator.auth.browserSignIn): send a bearer token.")



@dataclass(frozen=True)
class BrowserSignIn:
    """The activator's OIDC client (chart `activator.auth.browserSignIn`); no client id: off."""

    client_id: str = ""
    #: empty: a public client (PKCE alone proves the code's owner)
    client_secret: str = ""
    #: HMAC key of the session cookies; every activator replica needs the same one
    cookie_key: bytes = b""
    #: the URL browsers reach the activator at (https://models.deep.example.org); the redirect URI
    #: is URL/.auth/callback. Empty: taken from each request
    public_url: str = ""
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    #: the longest session; an ID token that expires sooner ends it sooner
    session_seconds: int = 8 * 3600

    @property
    def enabled(self) -> bool:
        return bool(self.client_id)

    def check(self, site: SiteAuth) -> BrowserSignIn:
        """Itself, or a SettingsError naming what to set."""
        if not self.enabled:
            return self
        if not site.issuer:
            raise SettingsError("browser sign-in (DEEP_ACTIVATOR_OIDC_CLIENT_ID, activator.auth."
                                "browserSignIn.clientId) signs people in at the site's issuer: set "
                                "DEEP_OIDC_ISSUER (activator.auth.oidc.issuer) too")
        if len(self.cookie_key) < MIN_KEY_BYTES:
            raise SettingsError(
                f"the activator's session cookie key (DEEP_ACTIVATOR_COOKIE_KEY_FILE, from activator.auth."
                f"browserSignIn.cookieSecret) has {len(self.cookie_key)} bytes; it needs at least "
                f"{MIN_KEY_BYTES} random bytes, e.g. `kubectl create secret generic deep-activator-cookie "
                "--from-literal=key=$(openssl rand -hex 32)`")
        if "openid" not in self.scopes:
            raise SettingsError("DEEP_ACTIVATOR_OIDC_SCOPES (activator.auth.browserSignIn.scopes) must "
                                "include openid")
        if self.session_seconds < 60:
            raise SettingsError("DEEP_ACTIVATOR_SESSION_SECONDS (activator.auth.browserSignIn."
                                "sessionSeconds) must be at least 60")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> BrowserSignIn:
        def get(name: str, default: str = "") -> str:
            return environ.get(name, default).strip()

        key = read_key_file("DEEP_ACTIVATOR_COOKIE_KEY_FILE", environ)
        seconds = get("DEEP_ACTIVATOR_SESSION_SECONDS", "28800") or "28800"
        if not seconds.isdigit():
            raise SettingsError(f"DEEP_ACTIVATOR_SESSION_SECONDS {seconds!r} is not a whole number of "
                                "seconds")
        return cls(
            client_id=get("DEEP_ACTIVATOR_OIDC_CLIENT_ID"),
            client_secret=get("DEEP_ACTIVATOR_OIDC_CLIENT_SECRET"),
            cookie_key=key,
            public_url=get("DEEP_ACTIVATOR_PUBLIC_URL").rstrip("/"),
            scopes=tuple(get("DEEP_ACTIVATOR_OIDC_SCOPES", "openid profile email").replace(",", " ").split()),
            session_seconds=int(seconds),
        )


@dataclass(frozen=True)
class Session:
    """A person signed in at the activator: the ID token's claims that policies speak of."""

    issuer: str
    subject: str
    groups: tuple[str, ...] = ()
    #: the site's username claim, for messages
    name: str = ""


def is_navigation(request: web.Request) -> bool:
    """A browser opening a page (GET/HEAD asking for HTML), which a redirect to the issuer can
    help; API clients, scripts' fetches and WebSocket upgrades get JSON refusals instead."""
    if request.method not in ("GET", "HEAD") or websocket.is_upgrade(request):
        return False
    return "text/html" in request.headers.get("Accept", "")


def session_from_claims(claims: Mapping[str, object], site: SiteAuth) -> Session:
    """What a session keeps of a verified ID token; a groups claim that is not a string or a
    list of strings gives no groups (as a bearer token's would not match)."""
    raw = claims.get(site.groups_claim)
    if isinstance(raw, str):
        groups: tuple[str, ...] = (raw,)
    elif isinstance(raw, list):
        groups = tuple(g for g in raw if isinstance(g, str))
    else:
        groups = ()
    subject = str(claims["sub"])
    name = claims.get(site.username_claim)
    return Session(str(claims["iss"]), subject, groups, name if isinstance(name, str) and name else subject)


def session_seconds(claims: Mapping[str, object], longest: int, now: float) -> int:
    """The session's lifetime: `longest`, and never past the ID token's own expiry."""
    expiry = claims.get("exp")
    left = int(float(expiry) - now) if isinstance(expiry, (int, float)) else 0
    return max(0, min(longest, left))


def cookie_value(headers: list[str], name: str) -> str | None:
    """The value of cookie `name` in Cookie headers (RFC 6265 `name=value; ...`), the first one
    if several; cheaper than a full parse, which every request would pay."""
    prefix = name + "="
    for header in headers:
        for part in header.split(";"):
            part = part.strip()
            if part.startswith(prefix):
                return part[len(prefix):].strip('"') or None
    return None


def page(status: int, title: str, text: str, links: tuple[tuple[str, str], ...] = ()) -> web.Response:
    """An HTML answer for a person; `links`: (href, label) pairs under the message."""
    anchors = " · ".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>' for href, label in links)
    body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:4em auto;max-width:40em;color:#333}</style>"
            f"<h1>{html.escape(title)}</h1><p id=message>{html.escape(text)}</p>"
            + (f"<p>{anchors}</p>" if anchors else ""))
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store"})


class SignIn:
    """The `/.auth/` routes and the session of each request."""

    def __init__(self, settings: BrowserSignIn, site: SiteAuth, keys: IssuerKeys | None = None) -> None:
        self.settings = settings
        self.site = site
        self.enabled = settings.enabled and bool(site.issuer)
        self.sealer = CookieSealer(settings.cookie_key, app=APP)
        client = SignInSettings(issuer=site.issuer or "", client_id=settings.client_id,
                                client_secret=settings.client_secret, scopes=settings.scopes)
        self.oidc = OidcClient(client, keys=keys)
        #: cookie value -> (its expiry, time.time(); the session)
        self._opened: dict[str, tuple[float, Session]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(f"{PREFIX}/signin", self.signin)
        app.router.add_get(f"{PREFIX}/callback", self.callback)
        app.router.add_route("GET", f"{PREFIX}/signout", self.signout)
        app.router.add_route("POST", f"{PREFIX}/signout", self.signout)

    def session(self, request: web.Request) -> Session | None:
        """The signed-in person of this request, or None (no cookie, forged, expired, off)."""
        if not self.enabled or "Cookie" not in request.headers:
            return None
        value = cookie_value(request.headers.getall("Cookie"), SESSION_COOKIE)
        if value is None:
            return None
        known = self._opened.get(value)
        if known is not None:
            if time.time() < known[0]:
                return known[1]
            del self._opened[value]
        data = self.sealer.open(SESSION, value)
        if data is None:
            return None
        issuer, subject, groups = data.get("iss"), data.get("sub"), data.get("groups")
        if not isinstance(issuer, str) or not isinstance(subject, str) or not isinstance(groups, list):
            return None
        name = data.get("name")
        session = Session(issuer, subject, tuple(str(g) for g in groups),
                          name if isinstance(name, str) else subject)
        if len(self._opened) >= OPENED_MAX:
            self._opened.clear()
        self._opened[value] = (float(data["exp"]), session)
        return session

    def signin_location(self, request: web.Request) -> str:
        """Where a browser without a session goes: the sign-in route, coming back here after."""
        return f"{PREFIX}/signin?{urlencode({'next': request.raw_path})}"

    def _base_url(self, request: web.Request) -> str:
        return self.settings.public_url or f"{request.scheme}://{request.host}"

    def _set_cookie(self, request: web.Request, response: web.StreamResponse, name: str, value: str,
                    max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Lax",
                            secure=self._base_url(request).startswith("https://"))

    async def signin(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:
            return page(404, "Sign-in not configured", NOT_CONFIGURED)
        next_path = flow.local_path(request.query.get("next"), "/")
        try:
            started = await flow.start(self.oidc, self.sealer, f"{self._base_url(request)}{PREFIX}/callback",
                                       next_path)
        except SignInError as exc:
            return page(exc.status, "Sign-in unavailable", str(exc))
        redirect = web.HTTPFound(started.url)
        redirect.headers["Cache-Control"] = "no-store"
        self._set_cookie(request, redirect, PENDING_COOKIE, started.pending, flow.PENDING_SECONDS)
        raise redirect

    async def callback(self, request: web.Request) -> web.StreamResponse:
        if not self.enabled:
            return page(404, "Sign-in not configured", NOT_CONFIGURED)
        try:
            finished = await flow.finish(self.oidc, self.sealer, request.cookies.get(PENDING_COOKIE),
                                         request.query, f"{self._base_url(request)}{PREFIX}/callback",
                                         "open the page again to sign in")
        except flow.FlowError as exc:
            return page(exc.status, exc.title, str(exc))
        except SignInError as exc:
            log.info("browser sign-in failed: %s", exc)
            return page(exc.status, "Sign-in refused", str(exc))
        session = session_from_claims(finished.claims, self.site)
        lifetime = session_seconds(finished.claims, self.settings.session_seconds, time.time())
        if lifetime < 1:
            return page(403, "Sign-in refused", "The sign-in service's ID token has already expired; "
                        "check the clocks, then open the page again.")
        sealed = self.sealer.seal(SESSION, {"iss": session.issuer, "sub": session.subject,
                                            "groups": list(session.groups), "name": session.name}, lifetime)
        if len(sealed) > MAX_COOKIE_BYTES:
            return page(403, "Sign-in refused", f"Your {len(session.groups)} groups do not fit in a "
                        "session cookie; the site can narrow them (activator.auth.oidc.groupsClaim) or ask "
                        "the issuer for fewer.")
        log.info("signed in at the activator: %s", session.name)
        redirect = web.HTTPFound(finished.next)
        redirect.headers["Cache-Control"] = "no-store"
        self._set_cookie(request, redirect, SESSION_COOKIE, sealed, lifetime)
        redirect.del_cookie(PENDING_COOKIE, path="/")
        raise redirect

    async def signout(self, request: web.Request) -> web.StreamResponse:
        response = page(200, "Signed out", "You are signed out of the DEEP model and environment endpoints.")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    def refused_page(self, status: int, message: str, session: Session | None) -> web.Response:
        """A refusal as a page, for a browser that opened a target."""
        if status == 403:
            title = "Not allowed"
        elif session is not None:
            title = "Sign-in not accepted here"
        else:
            title = "Sign-in required"
        who = f"Signed in as {session.name}. " if session is not None else ""
        links = ((f"{PREFIX}/signout", "Sign out"),) if session is not None else ()
        return page(status, title, who + message, links)
