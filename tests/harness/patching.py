"""Patch semantics of the Kubernetes API: merge, JSON, strategic-merge and server-side apply.

All functions are pure: they take JSON-like values and return new ones, never mutating inputs.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

JSON = Any
# Given the path of a list (keys only, list indexes skipped), return the merge keys of its items
# (e.g. ("name",) for containers), or None if the list is atomic and must be replaced as a whole.
MergeKeys = Callable[[tuple[str, ...]], tuple[str, ...] | None]


class PatchError(ValueError):
    """A patch that cannot be applied; the API server answers 422 (or 409 for conflicts)."""


class ApplyConflict(PatchError):
    """Server-side apply would take fields owned by other managers; answered 409 unless forced."""

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        self.conflicts = conflicts  # (manager, field path like ".spec.replicas")
        text = "; ".join(f'conflict with "{mgr}": {path}' for mgr, path in conflicts)
        super().__init__(f"Apply failed with {len(conflicts)} conflict(s): {text}")


# --- RFC 7386 merge patch -------------------------------------------------------------------


def merge_patch(target: JSON, patch: JSON) -> JSON:
    """RFC 7386: dicts merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 JSON patch --------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise PatchError(f"invalid list index: {token!r}")
    idx = int(token)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise PatchError(f"list index out of range: {idx}")
    return idx


def _walk(doc: JSON, tokens: list[str]) -> JSON:
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                raise PatchError(f"path not found: /{'/'.join(tokens)}")
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token, allow_end=False)]
        else:
            raise PatchError(f"path not found: /{'/'.join(tokens)}")
    return doc


def _remove(doc: JSON, tokens: list[str]) -> JSON:
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path not found: /{'/'.join(tokens)}")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, allow_end=False))
    raise PatchError(f"path not found: /{'/'.join(tokens)}")


def _add(doc: JSON, tokens: list[str], value: JSON) -> JSON:
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError(f"cannot add to a scalar at /{'/'.join(tokens)}")
    return doc


def json_patch(target: JSON, operations: JSON) -> JSON:
    """RFC 6902 with add, remove, replace, move, copy and test."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation: {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, tokens)
        elif kind == "replace":
            _walk(doc, tokens)  # must exist
            if tokens:
                _remove(doc, tokens)
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _remove(doc, source) if kind == "move" else copy.deepcopy(_walk(doc, source))
            doc = _add(doc, tokens, value)
        elif kind == "test":
            if _walk(doc, tokens) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed")
        else:
            raise PatchError(f"unknown JSON patch operation: {kind!r}")
    return doc


# --- Strategic merge patch (approximation) --------------------------------------------------

# Merge keys of the built-in types' lists, by the list's field name. The real server reads them
# from the Go struct tags per type; this table covers what operators touch in practice.
BUILTIN_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "hostAliases": ("ip",),
    "tolerations": ("key",),
    "topologySpreadConstraints": ("topologyKey",),
    "containerStatuses": ("name",),
    "initContainerStatuses": ("name",),
}
# Lists of scalars that strategic merge treats as sets (merged, not replaced).
SET_LISTS = {"finalizers"}


def builtin_merge_keys(path: tuple[str, ...]) -> tuple[str, ...] | None:
    if not path:
        return None
    name = path[-1]
    if name == "ports":
        # Containers' ports merge by containerPort, Services' ports by port.
        return ("containerPort",) if "containers" in path or "initContainers" in path else ("port",)
    return BUILTIN_MERGE_KEYS.get(name)


def _item_key(item: JSON, keys: tuple[str, ...]) -> tuple[Any, ...] | None:
    if not isinstance(item, dict):
        return None
    return tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)


def strategic_merge_patch(
    target: JSON, patch: JSON, merge_keys: MergeKeys = builtin_merge_keys, _path: tuple[str, ...] = ()
) -> JSON:
    """Strategic merge: like merge patch, but lists with merge keys merge item by item.

    Supports ``$patch: delete|replace`` in maps and list items; ``$setElementOrder`` and
    ``$retainKeys`` directives are accepted and ignored.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [x for x in result.get(field) or [] if x not in (value or [])]
            continue
        path = (*_path, key)
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, merge_keys, path)
        else:
            result[key] = strategic_merge_patch(result.get(key), value, merge_keys, path)
    return result


def _merge_list(current: JSON, patch: list[Any], merge_keys: MergeKeys, path: tuple[str, ...]) -> JSON:
    if path and path[-1] in SET_LISTS and isinstance(current, list):
        return current + [x for x in patch if x not in current]
    keys = merge_keys(path)
    replace = any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch)
    if not keys or not isinstance(current, list) or replace:
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = list(current)
    for item in patch:
        ikey = _item_key(item, keys)
        pos = next((n for n, old in enumerate(result) if _item_key(old, keys) == ikey), None)
        if isinstance(item, dict) and item.get("$patch") == "delete":
            if pos is not None:
                result.pop(pos)
        elif pos is None:
            result.append(strategic_merge_patch({}, item, merge_keys, path))
        else:
            result[pos] = strategic_merge_patch(result[pos], item, merge_keys, path)
    return result


# --- Server-side apply ----------------------------------------------------------------------
# Field sets are sets of leaf paths; a path element is "f:<key>" for a map key or
# 'k:{"name":"x"}' for a list item identified by its merge keys (the real fieldsV1 notation).

FieldPath = tuple[str, ...]


def _k(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys}, separators=(",", ":"), sort_keys=True)


def field_set(
    value: JSON, merge_keys: MergeKeys, _path: tuple[str, ...] = (), _prefix: FieldPath = ()
) -> set[FieldPath]:
    """The leaf paths that an applied configuration sets."""
    paths: set[FieldPath] = set()
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            paths |= field_set(sub, merge_keys, (*_path, key), (*_prefix, f"f:{key}"))
        return paths
    keys = merge_keys(_path) if isinstance(value, list) else None
    if isinstance(value, list) and keys and all(isinstance(i, dict) for i in value):
        for item in value:
            prefix = (*_prefix, _k(item, keys))
            paths.add(prefix)  # the item itself is owned, so it can be removed on re-apply
            for key, sub in item.items():
                paths |= field_set(sub, merge_keys, (*_path, key), (*prefix, f"f:{key}"))
        return paths
    return {_prefix} if _prefix else set()


def fields_v1(paths: set[FieldPath]) -> dict[str, Any]:
    """Nest leaf paths into the real fieldsV1 JSON shape: {"f:spec": {"f:replicas": {}}}."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        if path and path[-1].startswith("k:"):
            node.setdefault(".", {})
    return tree


def from_fields_v1(tree: JSON, _prefix: FieldPath = ()) -> set[FieldPath]:
    paths: set[FieldPath] = set()
    if not isinstance(tree, dict):
        return paths
    for key, sub in tree.items():
        if key == ".":
            paths.add(_prefix)
        elif sub:
            paths |= from_fields_v1(sub, (*_prefix, key))
        else:
            paths.add((*_prefix, key))
    return paths


def get_path(obj: JSON, path: FieldPath) -> tuple[bool, JSON]:
    """Resolve a field path in an object: (found, value)."""
    node = obj
    for element in path:
        if element.startswith("f:") and isinstance(node, dict) and element[2:] in node:
            node = node[element[2:]]
        elif element.startswith("k:") and isinstance(node, list):
            wanted = json.loads(element[2:])
            match = [i for i in node if isinstance(i, dict) and all(i.get(k) == v for k, v in wanted.items())]
            if not match:
                return False, None
            node = match[0]
        else:
            return False, None
    return True, node


def remove_path(obj: JSON, path: FieldPath) -> None:
    """Remove a field (in place) and then parents that the removal left empty."""
    if not path:
        return
    found, parent = get_path(obj, path[:-1])
    if not found:
        return
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
        empty = not parent
    elif last.startswith("k:") and isinstance(parent, list):
        wanted = json.loads(last[2:])
        parent[:] = [
            i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in wanted.items()))
        ]
        empty = not parent
    else:
        return
    if empty and len(path) > 1:
        remove_path(obj, path[:-1])


def path_str(path: FieldPath) -> str:
    """Human-readable field path, as in the real conflict messages: .spec.containers[name="x"].image"""
    out = ""
    for element in path:
        if element.startswith("f:"):
            out += "." + element[2:]
        else:
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(element[2:]).items()) + "]"
    return out


def apply_merge(current: JSON, applied: JSON, merge_keys: MergeKeys, _path: tuple[str, ...] = ()) -> JSON:
    """Merge an applied configuration: maps merge, keyed lists merge by key, other lists replace."""
    if isinstance(applied, dict) and isinstance(current, dict):
        result = dict(current)
        for key, value in applied.items():
            result[key] = apply_merge(current.get(key), value, merge_keys, (*_path, key))
        return result
    keys = merge_keys(_path) if isinstance(applied, list) else None
    if (
        keys
        and isinstance(applied, list)
        and isinstance(current, list)
        and all(isinstance(i, dict) for i in applied)
    ):
        merged = [copy.deepcopy(i) for i in current]
        for item in applied:
            pos = next(
                (n for n, old in enumerate(merged) if _item_key(old, keys) == _item_key(item, keys)), None
            )
            if pos is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[pos] = apply_merge(merged[pos], item, merge_keys, _path)
        return merged
    return copy.deepcopy(applied)
