"""Module -> its catalogue entry ConfigMap, the sharded index, and ready-to-apply snippets.

Pure functions: the controller and the index writer decide when to write what these return.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api import API_VERSION
from ..api.module import Module

CATALOGUE_LABEL = "deep-hybrid-datacloud.eu/catalogue"
INDEX_HEAD = "catalogue-index"
#: a ConfigMap holds at most 1 MiB (keys, values and metadata); leave room for the envelope
SHARD_BUDGET = 900 * 1024
#: the most one Module's index line may take: what fits alone in a shard (with its brackets)
INDEX_LINE_LIMIT = SHARD_BUDGET - 3
#: what the index keeps of each module's metadata: enough to list and filter without entries
FACETS = ("tasks", "categories", "libraries", "data-type", "tags")
_LABELS = {
    "app.kubernetes.io/part-of": "deep-platform",
    "app.kubernetes.io/managed-by": "deep-platform-operator",
}


def entry_name(module_name: str) -> str:
    """ConfigMap name of a module's entry; hashed when the name would not fit."""
    name = f"module-{module_name}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(module_name.encode()).hexdigest()[:10]
    return f"{name[:242]}-{digest}"


def _strings(value: Any) -> list[str]:
    """A facet as a list of strings, whatever an author wrote (a string, null, a list)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def entry_data(
    module: Module, endpoints: list[str], problems: list[str] | None = None
) -> dict[str, Any]:
    return {
        "name": module.name,
        "image": module.spec.image,
        "capabilities": module.spec.capabilities.to_api(),
        "resources": module.spec.resources.to_api() if module.spec.resources else {},
        "metadata": module.spec.metadata,
        "metadataValid": not problems,
        "metadataProblems": list(problems or []),
        "endpoints": sorted(endpoints),
    }


def index_item(module: Module, problems: list[str] | None = None) -> dict[str, Any]:
    """One module's line in the index."""
    meta = module.spec.metadata
    item: dict[str, Any] = {
        "name": module.name,
        "title": str(meta.get("title") or module.name),
        "summary": str(meta.get("summary") or ""),
        "image": module.spec.image,
        "trainable": module.spec.capabilities.trainable,
        "servable": module.spec.capabilities.servable,
        "metadataValid": not problems,
    }
    for facet in FACETS:
        item[facet] = _strings(meta.get(facet))
    return item


def index_line(item: dict[str, Any]) -> str:
    """An index item as it is stored in a shard."""
    return json.dumps(item, sort_keys=True, separators=(",", ":"))


#: index item key -> where its value comes from in the Module
_ITEM_SOURCES = {"name": "metadata.name", "image": "spec.image", "title": "spec.metadata.title",
                 "summary": "spec.metadata.summary", **{f: f"spec.metadata.{f}" for f in FACETS}}


def index_line_too_large(item: dict[str, Any], limit: int = INDEX_LINE_LIMIT) -> str | None:
    """Why a Module's index line cannot go into the index (None: it fits). It names the limit,
    the line's size and the biggest field, the one to shorten."""
    size = len(index_line(item).encode())
    if size <= limit:
        return None
    sizes = {key: len(json.dumps(value, separators=(",", ":")).encode()) for key, value in item.items()}
    biggest = max(sizes, key=lambda key: sizes[key])
    return (
        f"its line in the catalogue index takes {size:,} bytes, over the limit of {limit:,} bytes "
        f"(one index shard; a ConfigMap holds at most 1 MiB): {_ITEM_SOURCES.get(biggest, biggest)} "
        f"alone takes {sizes[biggest]:,} bytes, shorten it. The Module is left out of the catalogue "
        "index (not listed, not found by search); every other Module is still listed"
    )


def build_catalogue_entry(
    module: Module,
    namespace: str,
    endpoints: list[str] | None = None,
    problems: list[str] | None = None,
) -> dict[str, Any]:
    """One ConfigMap per Module, owned by it (a namespaced object may have a cluster-scoped
    owner), so the garbage collector removes it with the Module."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": entry_name(module.name),
            "namespace": namespace,
            "labels": {
                CATALOGUE_LABEL: "entry",
                "deep-hybrid-datacloud.eu/module": module.name[:63],
                **_LABELS,
            },
            "ownerReferences": [module.owner_reference()],
        },
        "data": {
            "module.json": json.dumps(entry_data(module, endpoints or [], problems), sort_keys=True),
        },
    }


def shard_name(number: int) -> str:
    return f"{INDEX_HEAD}-{number}"


def pack_shards(
    items: list[dict[str, Any]], budget: int = SHARD_BUDGET, left_out: list[str] | None = None
) -> list[str]:
    """Index items (sorted by name) packed greedily into JSON arrays of at most `budget` bytes.
    An item too big for a shard on its own is refused by name, or, given `left_out`, skipped
    and its name appended there (one oversized Module must not stop the whole index)."""
    shards: list[list[str]] = [[]]
    size = 2
    for item in sorted(items, key=lambda i: i["name"]):
        line = index_line(item)
        cost = len(line.encode()) + 1
        if cost + 2 > budget:
            if left_out is None:
                raise ValueError(f"module {item['name']}: its index line alone exceeds {budget} bytes")
            left_out.append(item["name"])
            continue
        if size + cost > budget and shards[-1]:
            shards.append([])
            size = 2
        shards[-1].append(line)
        size += cost
    return ["[" + ",".join(lines) + "]" for lines in shards]


def build_index(
    items: list[dict[str, Any]], namespace: str, budget: int = SHARD_BUDGET,
    left_out: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The shard ConfigMaps, then the head that names them with their digests. Readers start
    at the head and retry when a shard's digest does not match (a rebuild is in progress).
    Items too big for a shard are left out and named in `left_out` (see pack_shards)."""
    skipped: list[str] = []
    shards = pack_shards(items, budget, skipped)
    if left_out is not None:
        left_out.extend(skipped)
    digests = [hashlib.sha256(s.encode()).hexdigest()[:16] for s in shards]
    objects = [
        _configmap(shard_name(n), namespace, "index-shard", {"modules.json": text})
        for n, text in enumerate(shards)
    ]
    head = {
        "shards": [{"name": shard_name(n), "digest": d} for n, d in enumerate(digests)],
        "modules": len(items) - len(skipped),
    }
    if skipped:  # too big for a shard: each one's status says why (IndexEntryTooLarge)
        head["leftOut"] = skipped
    objects.append(_configmap(INDEX_HEAD, namespace, "index", {"index.json": json.dumps(head)}))
    return objects


def shard_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _configmap(name: str, namespace: str, role: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {CATALOGUE_LABEL: role, **_LABELS}},
        "data": data,
    }


def _snippet(kind: str, name: str, namespace: str, spec: dict[str, Any], resources: Any) -> dict[str, Any]:
    """A manifest of `kind` for the catalogue entry, with `resources` (the module's defaults) if any."""
    if resources is not None:
        spec["resources"] = resources.to_api()
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def _defaults(module: Module, purpose: str) -> Any:
    return getattr(module.spec.resources, purpose) if module.spec.resources else None


def trainingjob_snippet(module: Module, namespace: str = "default") -> dict[str, Any]:
    """A TrainingJob that retrains the module with its default training resources."""
    return _snippet("TrainingJob", f"{module.name[:50].rstrip('-.')}-train", namespace,
                    {"module": module.name, "hyperparameters": {}}, _defaults(module, "training"))


def inferenceservice_snippet(module: Module, namespace: str = "default") -> dict[str, Any]:
    """An InferenceService that serves the module, scaled to zero while idle."""
    return _snippet("InferenceService", module.name[:53].rstrip("-."), namespace,
                    {"module": module.name, "scaling": {"minReplicas": 0, "maxReplicas": 1}},
                    _defaults(module, "inference"))


def devenvironment_snippet(module: Module, namespace: str = "default") -> dict[str, Any]:
    """A DevEnvironment: JupyterLab with the module's image and training resources, asleep when idle."""
    spec = {"module": module.name, "ide": "jupyterlab", "idleTimeout": "1h", "home": {"size": "10Gi"}}
    return _snippet("DevEnvironment", f"{module.name[:49].rstrip('-.')}-dev", namespace, spec,
                    _defaults(module, "training"))
