"""Structural-schema processing of custom resources: pruning, defaulting, validation, CEL rules.

Mirrors what kube-apiserver does with a CRD's ``openAPIV3Schema`` closely enough for tests,
including the wording of validation messages, so that assertions written against the emulator
hold against a real cluster too.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.harness import cel

Schema = dict[str, Any]
# The metadata fields kept in embedded resources (x-kubernetes-embedded-resource).
EMBEDDED_META = {
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "finalizers",
    "ownerReferences",
}


@dataclass(frozen=True)
class Cause:
    """One validation failure, shaped like a StatusCause of the real API."""

    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
    field: str  # e.g. spec.resources.gpu.count
    message: str  # e.g. Invalid value: -1: spec.resources.gpu.count in body should be ...

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def go_value(value: Any) -> str:
    """Render a value the way the real error messages do: strings quoted, compounds by type."""
    if isinstance(value, (dict, list)):
        return json.dumps(_type_name(value))
    return json.dumps(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- pruning and defaulting -----------------------------------------------------------------


def prune(value: Any, schema: Schema, *, root: bool = False) -> Any:
    """Drop fields unknown to the schema (and non-nullable nulls), as the real server does."""
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") or additional is True
        embedded = schema.get("x-kubernetes-embedded-resource")
        result: dict[str, Any] = {}
        for key, sub in value.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                result[key] = sub  # ObjectMeta is handled by the server, not by the CRD schema
            elif embedded and key in ("apiVersion", "kind"):
                result[key] = sub
            elif embedded and key == "metadata" and isinstance(sub, dict):
                result[key] = {k: v for k, v in sub.items() if k in EMBEDDED_META}
            elif key in props:
                if sub is None and not props[key].get("nullable"):
                    continue  # nulls of non-nullable fields are pruned, then defaulted
                result[key] = prune(sub, props[key])
            elif isinstance(additional, dict):
                result[key] = prune(sub, additional)
            elif preserve:
                result[key] = sub
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"]) for item in value]
    return value


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill in ``default`` of absent properties, recursively (defaults are pruned too)."""
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        result = dict(value)
        for key, sub in props.items():
            if key not in result and "default" in sub:
                result[key] = prune(copy.deepcopy(sub["default"]), sub)
            if key in result:
                result[key] = apply_defaults(result[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in result:
                if key not in props:
                    result[key] = apply_defaults(result[key], additional)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


# --- validation -----------------------------------------------------------------------------

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _check_type(value: Any, schema: Schema) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    wanted = schema.get("type")
    if wanted is None:
        return True
    actual = _type_name(value)
    return actual == wanted or (wanted == "number" and actual == "integer")


class Validator:
    """Validates one object against a structural schema; ``old`` enables CEL transition rules."""

    def __init__(self, unevaluated: Callable[[str], None]) -> None:
        self.causes: list[Cause] = []
        self._unevaluated = unevaluated
        # CEL rules run after the schema checks, and only when those pass (as in the real server).
        self.rules: list[tuple[Any, Schema, str, Any, bool]] = []

    def _fail(self, path: str, value: Any, message: str) -> None:
        self.causes.append(Cause("FieldValueInvalid", path, f"Invalid value: {go_value(value)}: {message}"))

    def validate(
        self, value: Any, schema: Schema, path: str = "", old: Any = None, has_old: bool = False
    ) -> None:
        where = path or "<root>"
        if value is None:
            if not schema.get("nullable") and schema.get("type"):
                self._fail(path, None, f'{where} in body must be of type {schema["type"]}: "null"')
            return
        if not _check_type(value, schema):
            wanted = "integer or string" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
            actual = _type_name(value)
            self.causes.append(
                Cause(
                    "FieldValueInvalid",
                    path,
                    f'Invalid value: "{actual}": {where} in body must be of type {wanted}: "{actual}"',
                )
            )
            return
        if "enum" in schema and value not in schema["enum"]:
            supported = ", ".join(json.dumps(v) for v in schema["enum"])
            self.causes.append(
                Cause(
                    "FieldValueNotSupported",
                    path,
                    f"Unsupported value: {json.dumps(value)}: supported values: {supported}",
                )
            )
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self._numbers(value, schema, path, where)
        if isinstance(value, str):
            self._strings(value, schema, path, where)
        if isinstance(value, dict):
            self._objects(value, schema, path, old if isinstance(old, dict) else None, has_old)
        if isinstance(value, list):
            self._arrays(value, schema, path, where, old if isinstance(old, list) else None, has_old)
        if schema.get("x-kubernetes-validations"):
            self.rules.append((value, schema, path, old, has_old))

    def run_rules(self) -> None:
        if not self.causes:
            for args in self.rules:
                self._rules(*args)

    def _numbers(self, value: float, schema: Schema, path: str, where: str) -> None:
        if "minimum" in schema:
            if schema.get("exclusiveMinimum") and value <= schema["minimum"]:
                self._fail(path, value, f"{where} in body should be greater than {schema['minimum']}")
            elif value < schema["minimum"]:
                self._fail(
                    path, value, f"{where} in body should be greater than or equal to {schema['minimum']}"
                )
        if "maximum" in schema:
            if schema.get("exclusiveMaximum") and value >= schema["maximum"]:
                self._fail(path, value, f"{where} in body should be less than {schema['maximum']}")
            elif value > schema["maximum"]:
                self._fail(
                    path, value, f"{where} in body should be less than or equal to {schema['maximum']}"
                )

    def _strings(self, value: str, schema: Schema, path: str, where: str) -> None:
        if "minLength" in schema and len(value) < schema["minLength"]:
            self._fail(path, value, f"{where} in body should be at least {schema['minLength']} chars long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            self.causes.append(
                Cause(
                    "FieldValueTooLong", path, f"Too long: may not be more than {schema['maxLength']} bytes"
                )
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            self._fail(path, value, f"{where} in body should match '{schema['pattern']}'")
        if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
            self._fail(path, value, f"{where} in body must be of type date-time: {json.dumps(value)}")

    def _objects(
        self, value: dict[str, Any], schema: Schema, path: str, old: dict[str, Any] | None, has_old: bool
    ) -> None:
        props: dict[str, Schema] = schema.get("properties") or {}
        for key in schema.get("required") or []:
            if key not in value:
                self.causes.append(Cause("FieldValueRequired", _join(path, key), "Required value"))
        for key, sub in value.items():
            if path == "" and key in ("apiVersion", "kind", "metadata"):
                continue
            old_sub, has_sub = (old.get(key), key in old) if old is not None else (None, False)
            if key in props:
                self.validate(sub, props[key], _join(path, key), old_sub, has_sub)
            elif isinstance(schema.get("additionalProperties"), dict):
                self.validate(sub, schema["additionalProperties"], f"{path}[{key}]", old_sub, has_sub)
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            self.causes.append(
                Cause(
                    "FieldValueTooMany",
                    path,
                    f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
                )
            )
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            self._fail(
                path, value, f"{path} in body should have at least {schema['minProperties']} properties"
            )

    def _arrays(
        self, value: list[Any], schema: Schema, path: str, where: str, old: list[Any] | None, has_old: bool
    ) -> None:
        if "minItems" in schema and len(value) < schema["minItems"]:
            self._fail(path, value, f"{where} in body should have at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.causes.append(
                Cause(
                    "FieldValueTooMany",
                    path,
                    f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                )
            )
        list_type = schema.get("x-kubernetes-list-type")
        keys: list[str] = schema.get("x-kubernetes-list-map-keys") or []
        seen: set[str] = set()
        for n, item in enumerate(value):
            if list_type == "map" and isinstance(item, dict):
                identity = json.dumps({k: item.get(k) for k in keys}, sort_keys=True, separators=(",", ":"))
            elif list_type == "set":
                identity = json.dumps(item, sort_keys=True)
            else:
                identity = ""
            if identity and identity in seen:
                self.causes.append(
                    Cause("FieldValueDuplicate", f"{path}[{n}]", f"Duplicate value: {identity}")
                )
            seen.add(identity)
            items = schema.get("items")
            if isinstance(items, dict):
                # Transition rules inside lists apply only to map-keyed items that can be correlated.
                old_item, has_item = None, False
                if list_type == "map" and old is not None and isinstance(item, dict):
                    match = [
                        o for o in old if isinstance(o, dict) and all(o.get(k) == item.get(k) for k in keys)
                    ]
                    old_item, has_item = (match[0], True) if match else (None, False)
                self.validate(item, items, f"{path}[{n}]", old_item, has_item)

    def _rules(self, value: Any, schema: Schema, path: str, old: Any, has_old: bool) -> None:
        for rule in schema.get("x-kubernetes-validations") or []:
            expr = rule.get("rule", "")
            try:
                program = cel.parse(expr)
            except cel.CelSyntaxError as e:
                self._unevaluated(f"{path or '<root>'}: {expr} ({e})")
                continue
            if program.uses_old_self and not has_old:
                continue  # transition rules run only on updates of an existing value
            field = path
            if rule.get("fieldPath"):
                field = path + rule["fieldPath"] if path else rule["fieldPath"].lstrip(".")
            try:
                ok = program.evaluate(value, old)
            except cel.CelEvalError as e:
                self._fail(field, value, f"{e} evaluating rule: {expr}")
                continue
            if ok is not True:
                message = rule.get("message") or f"failed rule: {expr}"
                shown = json.dumps(_type_name(value))
                self.causes.append(
                    Cause(
                        rule.get("reason") or "FieldValueInvalid", field, f"Invalid value: {shown}: {message}"
                    )
                )


def validate(
    value: Any, schema: Schema, old: Any = None, *, unevaluated: Callable[[str], None] = lambda rule: None
) -> list[Cause]:
    validator = Validator(unevaluated)
    validator.validate(value, schema, "", old, old is not None)
    validator.run_rules()
    return validator.causes


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
