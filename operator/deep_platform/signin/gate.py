"""Who is looking, and what they may see: the sign-in routes (/signin, /callback, /signout) and
the middleware that puts a Viewer on each request of the pages it guards."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from ..kube import Kube
from . import flow
from .access import AccessReviewer
from .claims import ClaimError, Identity, identity_from_claims
from .flow import MAX_COOKIE_BYTES, PENDING_SECONDS
from .oidc import OidcClient, SignInError
from .session import PENDING_COOKIE, SESSION, SESSION_COOKIE, CookieSealer
from .settings import NONE_UNSAFE, SignInSettings

VIEWER = "deep_platform.viewer"
#: reviews asked side by side for one page (a cold page asks one per namespace and kind)
PARALLEL_REVIEWS = 8

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Viewer:
    """The person looking at a page; `identity` None: the open (unsafe) mode, everyone sees all."""

    identity: Identity | None
    reviewer: AccessReviewer | None = None
    _answers: dict[tuple[str, str], bool] = field(default_factory=dict)

    @property
    def username(self) -> str:
        return self.identity.username if self.identity else ""

    def may_list(self, namespace: str, resource: str) -> bool:
        """May this person list `resource` (a plural of deep-hybrid-datacloud.eu) in `namespace`?"""
        if self.identity is None:
            return True
        if self.reviewer is None:
            return False
        key = (namespace, resource)
        if key not in self._answers:
            self._answers[key] = self.reviewer.may(self.identity, "list", resource, namespace)
        return self._answers[key]

    def prefetch(self, namespaces: Iterable[str], resource: str) -> None:
        """Ask the reviews of these namespaces that no fresh answer covers, side by side (blocking:
        call it from a thread), so that a cold page waits for one round trip, not one per namespace."""
        identity, reviewer = self.identity, self.reviewer
        if identity is None or reviewer is None:
            return
        missing = [ns for ns in set(namespaces) if (ns, resource) not in self._answers
                   and reviewer.cached(identity, "list", resource, ns) is None]
        if len(missing) < 2:
            return
        with ThreadPoolExecutor(max_workers=min(PARALLEL_REVIEWS, len(missing))) as pool:
            answers = pool.map(lambda ns: reviewer.may(identity, "list", resource, ns), missing)
            self._answers.update({(ns, resource): ok for ns, ok in zip(missing, answers, strict=True)})


def viewer_of(request: web.Request) -> Viewer:
    viewer = request.get(VIEWER)
    if not isinstance(viewer, Viewer):  # a guarded app mounted without its gate: show nothing
        return Viewer(Identity("", ()), None)
    return viewer


def _local_path(value: str | None) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    return flow.local_path(value, "/dashboard/")


def _page(status: int, title: str, text: str) -> web.Response:
    from html import escape

    body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{escape(title)}</title>"
            f"<h1>{escape(title)}</h1><p id=message>{escape(text)}</p>"
            "<p><a href=/catalogue/>Catalogue</a> · <a href=/dashboard/>Dashboard</a></p>")
    return web.Response(status=status, text=body, content_type="text/html")


class Gate:
    def __init__(self, kube: Kube, settings: SignInSettings) -> None:
        self.settings = settings
        self.open = settings.mode == NONE_UNSAFE
        self.reviewer = AccessReviewer(kube, settings.access_cache_seconds)
        self.oidc = OidcClient(settings)
        self.sealer = CookieSealer(settings.cookie_key)
        if self.open:
            log.warning("web.auth.mode is none-unsafe: the dashboard shows every namespace's work to "
                        "anyone who reaches it; use this on a private network only")
        elif not settings.issuer:
            log.warning("sign-in is not configured (web.auth.oidc.issuer is empty): the dashboard "
                        "answers 503; the catalogue stays public")

    # the routes, on the root application

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/signin", self.signin)
        app.router.add_get("/callback", self.callback)
        app.router.add_get("/signout", self.signout)
        app.router.add_post("/signout", self.signout)

    def _base_url(self, request: web.Request) -> str:
        return self.settings.public_url or f"{request.scheme}://{request.host}"

    def _secure(self, request: web.Request) -> bool:
        return self._base_url(request).startswith("https://")

    def _set_cookie(self, request: web.Request, response: web.StreamResponse, name: str, value: str,
                    max_age: int) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Lax",
                            secure=self._secure(request))

    async def signin(self, request: web.Request) -> web.StreamResponse:
        next_path = _local_path(request.query.get("next"))
        if self.open or not self.settings.issuer:
            raise web.HTTPFound(next_path)
        try:
            redirect_uri = f"{self._base_url(request)}/callback"
            started = await flow.start(self.oidc, self.sealer, redirect_uri, next_path)
        except SignInError as exc:
            return _page(exc.status, "Sign-in unavailable", str(exc))
        redirect = web.HTTPFound(started.url)
        self._set_cookie(request, redirect, PENDING_COOKIE, started.pending, PENDING_SECONDS)
        raise redirect

    async def callback(self, request: web.Request) -> web.StreamResponse:
        if self.open or not self.settings.issuer:
            raise web.HTTPNotFound()
        try:
            finished = await flow.finish(self.oidc, self.sealer, request.cookies.get(PENDING_COOKIE),
                                         request.query, f"{self._base_url(request)}/callback",
                                         "open the dashboard again to sign in")
            identity = identity_from_claims(finished.claims, self.settings)
        except flow.FlowError as exc:
            return _page(exc.status, exc.title, str(exc))
        except SignInError as exc:
            log.info("sign-in failed: %s", exc)
            return _page(exc.status, "Sign-in refused", str(exc))
        except ClaimError as exc:
            log.info("sign-in refused: %s", exc)
            return _page(403, "Sign-in refused", str(exc))
        log.info("signed in: %s", identity.username)
        session = {"sub": identity.username, "groups": list(identity.groups)}
        sealed = self.sealer.seal(SESSION, session, self.settings.session_seconds)
        if len(sealed) > MAX_COOKIE_BYTES:
            return _page(403, "Sign-in refused", f"Your {len(identity.groups)} groups do not fit in a "
                         "session cookie; the site can narrow them (web.auth.oidc.groupsClaim) or ask the "
                         "issuer for fewer.")
        redirect = web.HTTPFound(finished.next)
        self._set_cookie(request, redirect, SESSION_COOKIE, sealed, self.settings.session_seconds)
        redirect.del_cookie(PENDING_COOKIE, path="/")
        raise redirect

    async def signout(self, request: web.Request) -> web.StreamResponse:
        response = _page(200, "Signed out", "You are signed out of the DEEP dashboard.")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # the guard, on the applications it protects

    def viewer(self, request: web.Request) -> Viewer | None:
        """The signed-in person of this request, or None."""
        if self.open:
            return Viewer(None)
        session = self.sealer.open(SESSION, request.cookies.get(SESSION_COOKIE))
        if session is None or not isinstance(session.get("sub"), str):
            return None
        return Viewer(Identity(session["sub"], tuple(session.get("groups") or ())), self.reviewer)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.open and not self.settings.issuer:
            return _page(503, "Sign-in not configured",
                         "The dashboard shows people's work and needs sign-in: the site sets "
                         "web.auth.oidc (issuer, clientId, cookieSecret), or web.auth.mode none-unsafe "
                         "on a private network.")
        viewer = self.viewer(request)
        if viewer is None:
            if request.method not in ("GET", "HEAD"):
                raise web.HTTPUnauthorized(text="sign in first\n")
            raise web.HTTPFound(f"{self.settings.public_url}/signin?{_next(request)}")
        request[VIEWER] = viewer
        return await handler(request)


def _next(request: web.Request) -> str:
    from urllib.parse import urlencode

    return urlencode({"next": str(request.rel_url)})


