"""CustomResourceDefinitions generated from the pydantic models.

pydantic's JSON Schema is turned into a structural OpenAPI v3 schema as the API server wants it:
references inlined, `Optional` unwrapped (a null value is pruned by the server), int-or-string
quantities marked, free-form maps marked to keep unknown fields, titles dropped.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from .base import CustomObject
from .common import GROUP, VERSION
from .devenvironment import DevEnvironment
from .inferenceservice import InferenceService
from .module import Module
from .trainingjob import TrainingJob

KINDS: tuple[type[CustomObject[Any, Any]], ...] = (Module, TrainingJob, InferenceService, DevEnvironment)
CATEGORY = "deep"
_DROPPED_KEYS = {"title", "$defs"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve every $ref, so the schema stands alone as the API server requires."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        target.update(siblings)  # a field's own description wins over its type's
        return _inline(target, defs)
    return {k: _inline(v, defs) for k, v in node.items() if k not in _DROPPED_KEYS}


def _structural(node: Any) -> Any:
    """Rewrite the JSON Schema constructs a structural schema forbids."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "allOf" in node and len(node["allOf"]) == 1:
        node.update(node.pop("allOf")[0])
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if node.get("x-kubernetes-int-or-string"):
            # the one union a structural schema allows, written as the API server documents it
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        elif len(branches) == 1:
            merged = dict(branches[0])
            merged.update(node)
            node = merged
        else:
            raise ValueError(f"cannot express a union in a structural schema: {branches}")
    if node.get("default", 0) is None:
        del node["default"]
    if node.get("additionalProperties") is True:
        del node["additionalProperties"]
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]  # the server prunes unknown fields anyway
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    return {k: _structural(v) for k, v in node.items()}


def openapi_schema(model: type[Any]) -> dict[str, Any]:
    """The structural schema of one pydantic model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    return _structural(_inline(raw, defs))


def object_schema(kind: type[CustomObject[Any, Any]]) -> dict[str, Any]:
    fields = kind.model_fields
    spec = openapi_schema(fields["spec"].annotation)  # type: ignore[arg-type]
    status = openapi_schema(fields["status"].annotation)  # type: ignore[arg-type]
    if kind.crd.spec_rules:
        spec["x-kubernetes-validations"] = [
            {"rule": rule.cel, "message": rule.message} for rule in kind.crd.spec_rules
        ]
    return {
        "type": "object",
        "description": kind.crd.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def crd(kind: type[CustomObject[Any, Any]]) -> dict[str, Any]:
    info = kind.crd
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/part-of": "deep-platform"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced" if info.namespaced else "Cluster",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in info.printer_columns],
                    "schema": {"openAPIV3Schema": object_schema(kind)},
                }
            ],
        },
    }


def crd_filename(kind: type[CustomObject[Any, Any]]) -> str:
    return f"{GROUP}_{kind.crd.plural}.yaml"


def render_yaml(kind: type[CustomObject[Any, Any]]) -> str:
    header = "# Generated from operator/deep_platform/api by `deep-platform crds`; do not edit.\n"
    return header + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


def all_crds_yaml() -> str:
    return "---\n".join(render_yaml(kind) for kind in KINDS)
