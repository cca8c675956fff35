"""aiohttp application of the dashboard; mounted under /dashboard/ by deep_platform.web.

Links are relative, so the app works under any prefix (and behind a path-rewriting ingress).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import jinja2
from aiohttp import web

from .. import kube as k
from ..api import DevEnvironment, InferenceService, TrainingJob
from ..config import OperatorConfig
from ..signin import Gate, Viewer, viewer_of
from .progress import progress_of
from .view import devenvironment_row, events_by_object, inferenceservice_row, overview, trainingjob_row

KUBE = web.AppKey("kube", k.Kube)
CONFIG = web.AppKey("config", OperatorConfig)
ENV = web.AppKey("jinja", jinja2.Environment)
TRAININGJOB = k.kind_of(TrainingJob)
INFERENCESERVICE = k.kind_of(InferenceService)
DEVENVIRONMENT = k.kind_of(DevEnvironment)
#: kinds that show someone's work: each listed, and its Events shown, only where the viewer may
#: list that kind (signin: a SubjectAccessReview); a new kind is guarded by adding it here
GUARDED_KINDS = {kind.kind: kind for kind in (TRAININGJOB, INFERENCESERVICE, DEVENVIRONMENT)}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    viewer = viewer_of(request)
    html = request.app[ENV].get_template(template).render(viewer=viewer, **context)
    return web.Response(text=html, content_type="text/html", status=status)


def _namespaces(config: OperatorConfig, wanted: str | None) -> list[str | None]:
    """Which namespaces to list: the one asked for (if watched), else every watched one."""
    if wanted:
        if config.namespaces and wanted not in config.namespaces:
            return []
        return [wanted]
    return list(config.namespaces) or [None]


def _visible(viewer: Viewer, kind: k.Kind, objects: list[Any]) -> list[Any]:
    namespaces = [o["metadata"].get("namespace", "") for o in objects]
    viewer.prefetch(namespaces, kind.plural)  # a cold page: the reviews side by side
    return [o for o, ns in zip(objects, namespaces, strict=True) if viewer.may_list(ns, kind.plural)]


def _visible_events(viewer: Viewer, events: list[Any]) -> list[Any]:
    """Events about objects of guarded kinds this viewer may list (the dashboard shows no others)."""
    def allowed(event: dict[str, Any]) -> bool:
        about = event.get("involvedObject") or event.get("regarding") or {}
        kind = GUARDED_KINDS.get(about.get("kind", ""))
        namespace = about.get("namespace") or event["metadata"].get("namespace", "")
        return kind is not None and viewer.may_list(namespace, kind.plural)

    return [e for e in events if allowed(e)]


def _list_all(
    kube: k.Kube, namespaces: list[str | None], viewer: Viewer
) -> tuple[list[Any], list[Any], list[Any]]:
    jobs, services, events = [], [], []
    for namespace in namespaces:
        jobs += kube.list(TRAININGJOB, namespace)
        services += kube.list(INFERENCESERVICE, namespace)
        events += kube.list(k.EVENT, namespace)
    return (_visible(viewer, TRAININGJOB, jobs), _visible(viewer, INFERENCESERVICE, services),
            _visible_events(viewer, events))


async def index(request: web.Request) -> web.Response:
    kube, config = request.app[KUBE], request.app[CONFIG]
    wanted = request.query.get("namespace") or None
    namespaces = _namespaces(config, wanted)
    viewer = viewer_of(request)
    jobs, services, events = await asyncio.to_thread(_list_all, kube, namespaces, viewer)
    listed = await asyncio.to_thread(lambda: [o for n in namespaces for o in kube.list(DEVENVIRONMENT, n)])
    devenvs = _visible(viewer, DEVENVIRONMENT, listed)
    groups = overview(jobs, services, events, _now(), devenvs)
    return _render(request, "index.html", groups=groups, namespace=wanted, root="")


def _detail_handler(kind: k.Kind) -> Any:
    async def detail(request: web.Request) -> web.Response:
        kube, config = request.app[KUBE], request.app[CONFIG]
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if config.namespaces and namespace not in config.namespaces:
            raise web.HTTPNotFound(text=f"namespace {namespace} is not watched by this platform")
        viewer = viewer_of(request)
        if not await asyncio.to_thread(viewer.may_list, namespace, kind.plural):
            return _render(request, "forbidden.html", status=403, kind=kind.kind, namespace=namespace,
                           root="../../")

        def read() -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
            return kube.get(kind, name, namespace), kube.list(k.EVENT, namespace)

        obj, events = await asyncio.to_thread(read)
        if obj is None:
            return _render(request, "missing.html", status=404, kind=kind.kind, namespace=namespace,
                           name=name, root="../../")
        history = events_by_object(events).get((kind.kind, namespace, name), [])
        row = (
            trainingjob_row(obj, history, _now())
            if kind == TRAININGJOB
            else devenvironment_row(obj, history) if kind == DEVENVIRONMENT
            else inferenceservice_row(obj, history)
        )
        progress = (
            await asyncio.to_thread(progress_of, kube, config.platform_namespace, obj)
            if kind == TRAININGJOB else None
        )
        return _render(request, "detail.html", row=row, progress=progress, root="../../")

    return detail


def create_app(kube: k.Kube, config: OperatorConfig, gate: Gate) -> web.Application:
    """`gate` signs people in and tells what each may see (or, in its unsafe mode, shows all)."""
    app = web.Application(middlewares=[gate.middleware])
    app[KUBE] = kube
    app[CONFIG] = config
    app[ENV] = jinja2.Environment(
        loader=jinja2.PackageLoader("deep_platform.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get("/", index)
    app.router.add_get("/trainingjobs/{namespace}/{name}", _detail_handler(TRAININGJOB))
    app.router.add_get("/inferenceservices/{namespace}/{name}", _detail_handler(INFERENCESERVICE))
    app.router.add_get("/devenvironments/{namespace}/{name}", _detail_handler(DEVENVIRONMENT))
    return app
