"""Field ownership (``metadata.managedFields``) and server-side apply.

Simplified against the real structured-merge-diff: ownership is tracked per leaf field path
(map keys, and list items identified by their merge keys), conflicts are detected only on exact
paths whose value would change, and lists without merge keys are atomic (owned as a whole).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from tests.harness.patching import (
    ApplyConflict,
    FieldPath,
    MergeKeys,
    apply_merge,
    field_set,
    fields_v1,
    from_fields_v1,
    get_path,
    path_str,
    remove_path,
)
from tests.harness.schema import now_rfc3339

# ObjectMeta fields that appliers may own; the identity fields (name, uid...) are never owned.
OWNABLE_META = ("labels", "annotations", "finalizers", "ownerReferences")
Dict = dict[str, Any]


@dataclass
class Entry:
    manager: str
    operation: str  # Apply | Update
    api_version: str
    subresource: str
    fields: set[FieldPath] = field(default_factory=set)
    time: str = ""

    @property
    def ident(self) -> tuple[str, str, str]:
        return self.manager, self.operation, self.subresource


def load(obj: dict[str, Any]) -> list[Entry]:
    entries: list[Entry] = []
    for raw in (obj.get("metadata") or {}).get("managedFields") or []:
        entries.append(
            Entry(
                raw.get("manager", ""),
                raw.get("operation", "Update"),
                raw.get("apiVersion", ""),
                raw.get("subresource", ""),
                from_fields_v1(raw.get("fieldsV1") or {}),
                raw.get("time", ""),
            )
        )
    return entries


def dump(entries: list[Entry]) -> list[dict[str, Any]]:
    result = []
    for e in entries:
        if not e.fields:
            continue
        raw: dict[str, Any] = {
            "manager": e.manager,
            "operation": e.operation,
            "apiVersion": e.api_version,
            "time": e.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(e.fields),
        }
        if e.subresource:
            raw["subresource"] = e.subresource
        result.append(raw)
    return result


def ownable(obj: dict[str, Any], subresource: str) -> dict[str, Any]:
    """The part of an object that field managers can own (no identity, no server-set metadata)."""
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    result = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in OWNABLE_META}
    if meta:
        result["metadata"] = meta
    return result


def _entry(entries: list[Entry], manager: str, operation: str, api_version: str, subresource: str) -> Entry:
    for e in entries:
        if e.ident == (manager, operation, subresource):
            e.api_version = api_version
            return e
    e = Entry(manager, operation, api_version, subresource)
    entries.append(e)
    return e


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    api_version: str,
    subresource: str,
    merge_keys: MergeKeys,
) -> list[Dict]:
    """Ownership after a non-apply write: the writer takes the fields it changed."""
    entries = load(old) if old is not None else []
    new_view = ownable(new, subresource if subresource == "status" else "")
    present = field_set(ownable(new, ""), merge_keys) | field_set(ownable(new, "status"), merge_keys)
    changed = {
        p for p in field_set(new_view, merge_keys) if old is None or get_path(old, p) != get_path(new, p)
    }
    for e in entries:
        e.fields = {p for p in e.fields if p in present or _is_prefix(p, present)} - changed
    if changed:
        mine = _entry(entries, manager, "Update", api_version, subresource)
        before = set(mine.fields)
        mine.fields |= changed
        if mine.fields != before or not mine.time:
            mine.time = now_rfc3339()
    return dump(entries)


def _is_prefix(path: FieldPath, paths: set[FieldPath]) -> bool:
    return any(p[: len(path)] == path for p in paths)


def server_side_apply(
    current: dict[str, Any],
    applied: dict[str, Any],
    manager: str,
    api_version: str,
    subresource: str,
    force: bool,
    merge_keys: MergeKeys,
) -> tuple[dict[str, Any], list[Dict]]:
    """Merge an applied configuration into ``current``; returns (object, managedFields).

    Raises :class:`ApplyConflict` when the configuration changes a field another manager owns,
    unless ``force`` (then the ownership moves to this manager, as in the real server).
    """
    entries = load(current)
    config = ownable(applied, subresource)
    wanted = field_set(config, merge_keys)
    merged = apply_merge(copy.deepcopy(current), config, merge_keys)

    conflicts: list[tuple[str, str]] = []
    for e in entries:
        if e.manager == manager and e.subresource == subresource:
            continue
        for path in sorted(e.fields & wanted):
            if get_path(current, path) != get_path(merged, path):
                if force:
                    e.fields.discard(path)
                else:
                    conflicts.append((e.manager, path_str(path)))
    if conflicts:
        raise ApplyConflict(conflicts)

    mine = _entry(entries, manager, "Apply", api_version, subresource)
    others = set().union(*(e.fields for e in entries if e is not mine))
    for path in sorted(mine.fields - wanted, key=len):  # list items before their fields
        if path not in others and not _is_prefix(path, others):
            remove_path(merged, path)  # fields dropped from the configuration are removed
    if mine.fields != wanted or not mine.time:
        mine.time = now_rfc3339()
    mine.fields = wanted
    return merged, dump(entries)
