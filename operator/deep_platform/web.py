"""The platform's web pages: one aiohttp application, each component mounted under its path.

The catalogue is public; the dashboard shows people's work, so it sits behind the sign-in gate
(deep_platform.signin), which also serves /signin, /callback and /signout."""

from __future__ import annotations

from aiohttp import web

from .catalogue.web import create_catalogue_app
from .config import OperatorConfig
from .dashboard import create_app as create_dashboard_app
from .kube import Kube
from .signin import Gate, SignInSettings


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def to_catalogue(_: web.Request) -> web.Response:
    raise web.HTTPFound("/catalogue/")


async def to_dashboard(_: web.Request) -> web.Response:
    raise web.HTTPFound("/dashboard/")


def create_app(kube: Kube, config: OperatorConfig, signin: SignInSettings | None = None) -> web.Application:
    """`signin`: how people sign in; default: from the environment (the chart's web.auth)."""
    gate = Gate(kube, signin if signin is not None else SignInSettings.from_env())
    app = web.Application()
    gate.add_routes(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", to_catalogue)
    app.router.add_get("/catalogue", to_catalogue)
    app.router.add_get("/dashboard", to_dashboard)
    app.add_subapp("/catalogue/", create_catalogue_app(kube, config))
    app.add_subapp("/dashboard/", create_dashboard_app(kube, config, gate))
    return app
