"""The catalogue's HTTP API and pages, read from the catalogue ConfigMaps (never from Modules,
so the web app needs only `get`/`list` on ConfigMaps of the platform namespace)."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import jinja2
import yaml
from aiohttp import web
from markdown_it import MarkdownIt
from markupsafe import Markup
from yarl import URL

from ..api import Module
from ..builders.module import (
    FACETS,
    devenvironment_snippet,
    entry_name,
    inferenceservice_snippet,
    trainingjob_snippet,
)
from ..config import OperatorConfig
from ..kube import CONFIGMAP, Kube
from . import linked_data
from .index import IndexReadError, read_index
from .pages import TEMPLATES

#: query parameter -> index facet, and its label on the page
FILTERS = {
    "task": "tasks", "category": "categories", "library": "libraries", "data_type": "data-type", "tag": "tags"
}
LABELS = {
    "tasks": "Task", "categories": "Category", "libraries": "Library", "data-type": "Data type", "tags": "Tag"
}
KUBE_KEY = web.AppKey("kube", Kube)
CONFIG_KEY = web.AppKey("config", OperatorConfig)
ENV_KEY = web.AppKey("jinja", jinja2.Environment)
# commonmark without raw HTML: a description's <script> or <img onerror> is shown as text
MARKDOWN = MarkdownIt("commonmark", {"html": False})


def matches(item: dict[str, Any], query: dict[str, str]) -> bool:
    for param, facet in FILTERS.items():
        wanted = query.get(param, "").strip().lower()
        if wanted and wanted not in (v.lower() for v in item.get(facet, [])):
            return False
    text = query.get("q", "").strip().lower()
    if text:
        haystack = " ".join([item["name"], item["title"], item["summary"], *item.get("tags", []),
                             *item.get("tasks", []), *item.get("libraries", [])]).lower()
        return all(word in haystack for word in text.split())
    return True


def _wants(request: web.Request, default: str = "json") -> str:
    fmt = request.query.get("format")
    if fmt in ("json", "text", "html", "jsonld"):
        return fmt
    accept = request.headers.get("Accept", "")
    if linked_data.MEDIA_TYPE in accept:
        return "jsonld"
    if "text/html" in accept:
        return "html"
    if "application/json" in accept:
        return "json"
    return "text" if "text/plain" in accept else default


async def _items(request: web.Request) -> list[dict[str, Any]]:
    kube, config = request.app[KUBE_KEY], request.app[CONFIG_KEY]
    try:
        return await asyncio.to_thread(read_index, kube, config.platform_namespace)
    except IndexReadError as exc:
        raise web.HTTPServiceUnavailable(text=f"{exc}; retry in a moment") from None


def _query(request: web.Request) -> dict[str, str]:
    return {key: request.query.get(key, "") for key in ("q", *FILTERS)}


async def index_page(request: web.Request) -> web.Response:
    items = await _items(request)
    query = _query(request)
    facets = [
        (param, LABELS[facet], sorted({v for item in items for v in item.get(facet, [])}, key=str.lower))
        for param, facet in FILTERS.items()
    ]
    html = request.app[ENV_KEY].get_template("index.html").render(
        root="./", modules=[i for i in items if matches(i, query)], total=len(items),
        query=query, facets=facets,
    )
    return web.Response(text=html, content_type="text/html")


def _jsonld(document: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(document), content_type=linked_data.MEDIA_TYPE)


def _page_url(request: web.Request, name: str) -> str:
    """A module's page, absolute, from any URL under /catalogue/modules."""
    return str(request.url.with_query(None).join(URL(quote(name, safe=""))))


async def modules_api(request: web.Request) -> web.Response:
    query = _query(request)
    items = [i for i in await _items(request) if matches(i, query)]
    fmt = "jsonld" if request.path.endswith(".jsonld") else _wants(request)
    if fmt == "jsonld":
        base = request.url.with_query(None).join(URL("modules/"))
        return _jsonld(linked_data.catalogue_document(
            items, str(request.url.with_query(None).join(URL("./"))),
            lambda name: str(base.join(URL(quote(name, safe="")))),
        ))
    if fmt == "html":
        raise web.HTTPFound("./" + (f"?{request.query_string}" if request.query_string else ""))
    if fmt == "text":
        lines = [f"{i['name']}\t{i['title']}\t{i['image']}" for i in items]
        return web.Response(text="\n".join(lines) + ("\n" if lines else ""), content_type="text/plain")
    return web.json_response({"modules": items})


def _module_of(entry: dict[str, Any]) -> Module:
    return Module.from_body({
        "metadata": {"name": entry["name"]},
        "spec": {k: entry[k] for k in ("image", "capabilities", "metadata")}
        | ({"resources": entry["resources"]} if entry.get("resources") else {}),
    })


def _safe_links(meta: dict[str, Any]) -> list[tuple[str, str]]:
    links = meta.get("links")
    if not isinstance(links, dict):
        return []
    return [(str(k), v) for k, v in sorted(links.items()) if isinstance(v, str) and v.startswith(("https://", "http://"))]


async def module_page(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    fmt = _wants(request, default="html")
    if name.endswith(".jsonld"):
        name, fmt = name.removesuffix(".jsonld"), "jsonld"
    kube, config = request.app[KUBE_KEY], request.app[CONFIG_KEY]
    cm = await asyncio.to_thread(kube.get, CONFIGMAP, entry_name(name), config.platform_namespace)
    if cm is None:
        raise web.HTTPNotFound(text=f"no module {name!r} in the catalogue")
    entry = json.loads((cm.get("data") or {}).get("module.json", "{}"))
    if fmt == "json":
        return web.json_response(entry)
    meta = entry.get("metadata") or {}
    if fmt == "jsonld":
        return _jsonld(linked_data.module_document(name, meta, _page_url(request, name)))
    module = _module_of(entry)
    if fmt == "text":
        lines = [f"{k}: {entry[k]}" for k in ("name", "image")] + [
            f"title: {meta.get('title', '')}", f"summary: {meta.get('summary', '')}", "",
            str(meta.get("description", "")),
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
    html = request.app[ENV_KEY].get_template("module.html").render(
        root="../", name=name, entry=entry, meta=meta, title=meta.get("title") or name,
        problems=entry.get("metadataProblems") or [],
        facet_labels=[(f, LABELS[f]) for f in FACETS],
        links=_safe_links(meta),
        # raw HTML is off in MARKDOWN, so its output holds only the tags it generated
        description=Markup(MARKDOWN.render(  # noqa: S704
           str(meta.get("description") or ""))),
        trainingjob=yaml.safe_dump(trainingjob_snippet(module), sort_keys=False),
        inferenceservice=yaml.safe_dump(inferenceservice_snippet(module), sort_keys=False),
        devenvironment=yaml.safe_dump(devenvironment_snippet(module), sort_keys=False),
    )
    return web.Response(text=html, content_type="text/html")


def create_catalogue_app(kube: Kube, config: OperatorConfig) -> web.Application:
    app = web.Application()
    app[KUBE_KEY] = kube
    app[CONFIG_KEY] = config
    app[ENV_KEY] = jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True)
    app.router.add_get("/", index_page)
    app.router.add_get("/modules", modules_api)
    app.router.add_get("/modules.jsonld", modules_api)
    app.router.add_get("/modules/{name}", module_page)
    return app
