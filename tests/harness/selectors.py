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


def label_selector(selector: str | None) -> Predicate:
    """Parse =, ==, !=, in, notin, exists (``key``) and !exists (``!key``)."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for part in _split(selector or ""):
        if m := _SET_EXPR.match(part):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := _EQ_EXPR.match(part):
            key, op, value = m.groups()
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := _EXISTS_EXPR.match(part):
            negate, key = m.group(1) == "!", m.group(2)
            checks.append(lambda labels, k=key, n=negate: (k in labels) != n)
        else:
            raise SelectorError(f"unable to parse requirement: {part.strip()!r}")

    def predicate(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)
    return predicate


# Field labels each resource supports beyond metadata.name/metadata.namespace (the real lists
# are per type in the API server's source; these are the ones tests and operators use).
FIELD_LABELS: dict[str, set[str]] = {
    "pods": {"spec.nodeName", "status.phase", "spec.restartPolicy", "spec.schedulerName",
             "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName", "spec.hostNetwork"},
    "events": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
               "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
               "regarding.kind", "regarding.name", "regarding.namespace", "regarding.uid"},
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
            raise SelectorError(f'field label not supported: {field}')
        if op == "!=":
            checks.append(lambda o, f=field, v=value: _field_value(o, f) != v)
        else:
            checks.append(lambda o, f=field, v=value: _field_value(o, f) == v)
    return lambda obj: all(check(obj) for check in checks)
