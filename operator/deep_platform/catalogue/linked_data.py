"""The catalogue as linked data: MLDCAT-AP (DCAT-AP for machine learning) JSON-LD, as AI4OS
publishes its own catalogue, made by the `ai4-metadata` package's own mapping
(`ai4-metadata map mldcat-ap`).

Each module is an MLDCAT-AP `MachineLearningModel` whose `@id` is its page in this catalogue
(the mapping takes `links.self`, which in AI4 metadata is the module's catalogue page, so that a
module and its line in the catalogue document name the same node). The whole catalogue is a
`dcat:Catalog` whose `dcat:resource`s are the modules, made from the index lines (title,
summary, tags, tasks, categories, libraries) so that serving it reads no more than the HTML list.
"""

from __future__ import annotations

import json
from typing import Any

from ai4_metadata.mapping.profiles import mldcatap
from ai4_metadata.metadata import MetadataVersions

MEDIA_TYPE = "application/ld+json"
DCAT = "http://www.w3.org/ns/dcat#"
#: the context the package's mapping writes (AI4OS's MLDCAT-AP context for metadata v2)
CONTEXT = mldcatap.get_context_for_version(MetadataVersions.V2)
#: what the catalogue document adds to it: the DCAT catalogue and its resources
CATALOGUE_CONTEXT: dict[str, Any] = {
    "dcat": DCAT,
    "Catalog": "dcat:Catalog",
    "resource": {"@id": "dcat:resource", "@container": "@set"},
}
_LISTS = ("categories", "tasks", "libraries", "tags")


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def _mappable(meta: dict[str, Any], page_url: str) -> dict[str, Any]:
    """AI4 metadata the mapping accepts whatever the Module holds: a Module with invalid metadata
    is still published, so fields of the wrong shape are left out rather than failing."""
    out: dict[str, Any] = {}
    for key in ("title", "summary", "description", "license", "id"):
        if isinstance(meta.get(key), str) and meta[key]:
            out[key] = meta[key]
    for key in _LISTS:
        if key in meta:
            out[key] = _strings(meta[key])
    dates = meta.get("dates")
    if isinstance(dates, dict):
        out["dates"] = {k: str(v) for k, v in dates.items() if k in ("created", "updated") and v}
    links: dict[str, Any] = meta["links"] if isinstance(meta.get("links"), dict) else {}
    out["links"] = {k: v for k, v in links.items() if isinstance(v, str) and v.startswith(("https://", "http://"))}
    out["links"]["self"] = page_url
    return out


def module_document(name: str, meta: dict[str, Any], page_url: str) -> dict[str, Any]:
    """One module as an MLDCAT-AP JSON-LD document (with its `@context`)."""
    meta = _mappable(meta if isinstance(meta, dict) else {}, page_url)
    meta.setdefault("title", name)
    mapped = mldcatap.generate_mapping(
        mldcatap.SupportedInputProfiles.ai4os, meta, mldcatap.SupportedOutputFormats.jsonld,
        MetadataVersions.V2,
    )
    document: dict[str, Any] = json.loads(mapped)
    return document


def catalogue_document(items: list[dict[str, Any]], catalogue_url: str, page_url: Any) -> dict[str, Any]:
    """The catalogue as a DCAT catalogue; `page_url(name)` is a module's page."""
    resources = []
    for item in items:
        meta = {"title": item.get("title"), "summary": item.get("summary"),
                **{key: item.get(key, []) for key in _LISTS}}
        document = module_document(item["name"], meta, page_url(item["name"]))
        document.pop("@context", None)
        resources.append(document)
    return {
        "@context": [CONTEXT, CATALOGUE_CONTEXT],
        "uri": catalogue_url,
        "type": "Catalog",
        "title": "DEEP Open Catalogue",
        "description": "Machine-learning modules to retrain on GPUs and serve, scaled to zero while idle.",
        "resource": resources,
    }
