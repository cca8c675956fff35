"""Module -> its catalogue ConfigMap in the platform namespace."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api.module import Module

CATALOGUE_LABEL = "deep-hybrid-datacloud.eu/catalogue"


def entry_name(module_name: str) -> str:
    """ConfigMap name of a module's entry; hashed when the name would not fit."""
    name = f"module-{module_name}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(module_name.encode()).hexdigest()[:10]
    return f"{name[:242]}-{digest}"


def entry_data(module: Module, endpoints: list[str]) -> dict[str, Any]:
    return {
        "name": module.name,
        "image": module.spec.image,
        "capabilities": module.spec.capabilities.to_api(),
        "resources": module.spec.resources.to_api() if module.spec.resources else {},
        "metadata": module.spec.metadata,
        "endpoints": sorted(endpoints),
    }


def build_catalogue_entry(
    module: Module, namespace: str, endpoints: list[str] | None = None
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
                "app.kubernetes.io/part-of": "deep-platform",
                "app.kubernetes.io/managed-by": "deep-platform-operator",
            },
            "ownerReferences": [module.owner_reference()],
        },
        "data": {
            "module.json": json.dumps(entry_data(module, endpoints or []), sort_keys=True),
        },
    }
