"""Label and field selectors as the real API server parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]


class SelectorError(ValueError):
    """A malformed or unsupported selector: answered 400 BadRequest."""


_SET_EXPR = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_EXPR = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS_EXPR = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")


def _split(selector: str) -> list[str]:
    # Commas separate requirements, except inside the parentheses of in/notin sets.
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _has_value(key: str, values: set[str], negate: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (labels.get(key) in values) != negate


def _exists(key: str, negate: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (key in labels) != negate


def label_selector(selector: str | None) -> Predicate:
    """Parse =, ==, !=, in, notin, exists (``key``) and !exists (``!key``)."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for part in _split(selector or ""):
        if m := _SET_EXPR.match(part):
            values = {v.strip() for v in m.group(3).split(",") if v.strip()}
            checks.append(_has_value(m.group(1), values, m.group(2) == "notin"))
        elif m := _EQ_EXPR.match(part):
            checks.append(_has_value(m.group(1), {m.group(3)}, m.group(2) == "!="))
        elif m := _EXISTS_EXPR.match(part):
            checks.append(_exists(m.group(2), m.group(1) == "!"))
        else:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")

    def predicate(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return predicate


# Field labels each resource supports beyond metadata.name/metadata.namespace (the real lists
# are per type in the API server's source; these are the ones tests and operators use).
FIELD_LABELS: dict[str, set[str]] = {
    "pods": {
        "spec.nodeName",
        "status.phase",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.podIP",
        "status.nominatedNodeName",
        "spec.hostNetwork",
    },
    "events": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
        "regarding.kind",
        "regarding.name",
        "regarding.namespace",
        "regarding.uid",
    },
    "secrets": {"type"},
    "namespaces": {"status.phase"},
    "nodes": {"spec.unschedulable"},
    "jobs": {"status.successful"},
    "replicasets": {"status.replicas"},
}


def _field_value(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for key in path.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def _field_check(field: str, value: str, negate: bool) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: (_field_value(obj, field) == value) != negate


def field_selector(selector: str | None, plural: str) -> Predicate:
    """Parse field selectors (=, ==, !=) over the field labels the resource supports."""
    allowed = {"metadata.name", "metadata.namespace"} | FIELD_LABELS.get(plural, set())
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for part in _split(selector or ""):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise SelectorError(f"invalid selector: {part.strip()!r}; can't understand it")
        field, op, value = m.groups()
        if field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
        checks.append(_field_check(field, value, op == "!="))
    return lambda obj: all(check(obj) for check in checks)
