"""AI4 metadata checked with the real `ai4-metadata` package (its schemas and validator).

Problems come back as one line per failing field (`links.docker_image: ...`), every one of them,
not only the first, so a module author can fix a file in one go.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import pathlib
import re
import tempfile
import threading
from typing import Any

import jsonschema
import yaml
from ai4_metadata import metadata as ai4
from ai4_metadata import migrate as ai4_migrate

V1 = ai4.MetadataVersions.V1
LATEST = ai4.get_latest_version()
V1_MARKERS = {"date_creation", "sources", "keywords"}
_REQUIRED = re.compile(r"^'([^']+)' is a required property")
_UNEXPECTED = re.compile(r"\(('[^']+'(?:, '[^']+')*) (?:was|were) unexpected\)")


class MetadataFileError(Exception):
    """A metadata file that cannot be turned into AI4 metadata v2; lines name file and field."""

    def __init__(self, path: pathlib.Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{self.path}: " + "; ".join(problems))


_validator_lock = threading.Lock()


@functools.cache
def _compiled(version: str) -> Any:
    return ai4.get_validator_for_schema(ai4.get_schema(ai4.MetadataVersions(version)))


def _validator(version: str) -> Any:
    """Compiled once per version: without the lock, a burst of reconciles on many threads
    compiles it once per thread (a third of a second each)."""
    with _validator_lock:
        return _compiled(version)


def plain_json(value: Any) -> Any:
    """What Kubernetes (JSON) would store: YAML dates become ISO strings, like `2024-08-22`."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_json(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: jsonschema.ValidationError) -> str:
    path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in error.absolute_path)
    path = path.replace(".[", "[")
    validator, expected = error.validator, error.validator_value
    if validator == "required" and (match := _REQUIRED.match(error.message)):
        field = f"{path}.{match.group(1)}" if path else match.group(1)
        return f"{field}: required field is missing"
    if validator == "additionalProperties" and (match := _UNEXPECTED.search(error.message)):
        names = [n.strip("'") for n in match.group(1).split(", ")]
        fields = ", ".join(f"{path}.{n}" if path else n for n in names)
        return f"{fields}: unknown field; check the spelling against the AI4 metadata schema"
    where = path or "(top level)"
    if validator == "enum":
        allowed = ", ".join(map(str, expected))
        return f"{where}: {_short(error.instance)} is not one of the allowed values ({allowed})"
    if validator == "type":
        return f"{where}: must be of type {expected}, got {_short(error.instance)}"
    if validator in ("maxLength", "minLength", "maxItems", "minItems"):
        return f"{where}: {validator} is {expected} (got {len(error.instance)})"
    return f"{where}: {error.message if len(error.message) < 160 else error.message[:157] + '...'}"


def declared_version(data: dict[str, Any]) -> str | None:
    version = data.get("metadata_version")
    return str(version) if version is not None else None


def check(data: Any) -> list[str]:
    """Every problem of AI4 metadata (v2, as a Module carries it), one line per field."""
    if not isinstance(data, dict):
        return [f"(top level): must be a mapping of AI4 metadata fields, got {type(data).__name__}"]
    data = plain_json(data)
    version = declared_version(data)
    if version is None:
        return ["metadata_version: required field is missing; set it to " + LATEST.value]
    try:
        validator = _validator(version)
    except ValueError:
        allowed = ", ".join(v.value for v in ai4.MetadataVersions if v != V1)
        return [f"metadata_version: {version!r} is not a known version (use one of {allowed})"]
    if version == V1.value:
        return ["metadata_version: 1.0.0 is the old DEEP schema; migrate it with "
                "`deep-platform catalogue import` (or `ai4-metadata migrate`)"]
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(e) for e in errors]


def load_file(path: pathlib.Path) -> Any:
    """A JSON or YAML file, parse errors named with the file."""
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except ValueError as exc:
        raise MetadataFileError(path, [f"(file): not valid JSON: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MetadataFileError(path, [f"(file): not valid YAML{where}: {problem}"]) from None


def to_v2(path: pathlib.Path, data: Any) -> dict[str, Any]:
    """The file's metadata as AI4 v2, migrating v1 (the old DEEP `metadata.json`) with the
    package's own migration; raises MetadataFileError naming every failing field."""
    if not isinstance(data, dict):
        raise MetadataFileError(path, check(data))
    data = plain_json(data)
    version = declared_version(data)
    # v1 files rarely declare their version; they are known by their v1-only fields
    if version == V1.value or (version is None and V1_MARKERS & data.keys()):
        v1_errors = sorted(
            _validator(V1.value).iter_errors(data), key=lambda e: list(map(str, e.absolute_path))
        )
        if v1_errors:
            raise MetadataFileError(path, [_describe(e) + " (AI4 metadata v1)" for e in v1_errors])
        data = _migrate_v1(data)
    problems = check(data)
    if problems:
        raise MetadataFileError(path, problems)
    return data


def _migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    # the package migrates from a JSON file; YAML v1 files go through a temporary copy
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp) / "metadata.json"
        copy.write_text(json.dumps(data), encoding="utf-8")
        migrated = dict(ai4_migrate.migrate(copy))
    # v1 names the dataset link dataset_url; drop empty links the migration leaves as None
    migrated["links"] = {k: v for k, v in (migrated.get("links") or {}).items() if v}
    return plain_json(migrated)
