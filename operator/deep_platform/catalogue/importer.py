"""`deep-platform catalogue import DIR`: a folder of AI4 metadata files -> Module manifests,
as the DEEP marketplace was built from its list of module repositories.

Each bad file becomes one error naming the file and its failing fields; the others still import.
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field
from typing import Any

from ..api import API_VERSION, Module
from .metadata import MetadataFileError, load_file, to_v2

SUFFIXES = (".yml", ".yaml", ".json")


@dataclass
class ImportResult:
    modules: list[dict[str, Any]] = field(default_factory=list)
    errors: list[MetadataFileError] = field(default_factory=list)


def module_name(stem: str) -> str:
    """A DNS-1123 name from a file name: `DEEP-OC-dogs_breed_det` -> `deep-oc-dogs-breed-det`."""
    name = re.sub(r"[^a-z0-9.-]+", "-", stem.lower()).strip("-.")
    return name[:253].rstrip("-.") or "module"


def image_of(meta: dict[str, Any]) -> str | None:
    """`links.docker_image` as a pullable reference (`:latest` when it names no tag)."""
    image = (meta.get("links") or {}).get("docker_image")
    if not image or not isinstance(image, str):
        return None
    image = image.strip()
    for prefix in ("https://hub.docker.com/r/", "http://hub.docker.com/r/", "docker.io/"):
        image = image.removeprefix(prefix)
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"


def _quantity_mb(value: Any) -> str | None:
    return f"{int(value)}M" if isinstance(value, int | float) and value > 0 else None


def default_resources(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata's resource hints (`cpu`, `gpu`, `memory_MB`, `storage_MB`) as spec.resources."""
    out: dict[str, Any] = {}
    for use in ("training", "inference"):
        hints = (meta.get("resources") or {}).get(use)
        if not isinstance(hints, dict):
            continue
        res: dict[str, Any] = {}
        if isinstance(hints.get("cpu"), int | float) and hints["cpu"] > 0:
            res["cpu"] = hints["cpu"]
        if memory := _quantity_mb(hints.get("memory_MB")):
            res["memory"] = memory
        if storage := _quantity_mb(hints.get("storage_MB")):
            res["ephemeralStorage"] = storage
        if isinstance(hints.get("gpu"), int) and hints["gpu"] > 0:
            res["gpu"] = {"count": hints["gpu"]}
        if res:
            out[use] = res
    return out


def capabilities(meta: dict[str, Any]) -> dict[str, bool]:
    """From the AI4 categories; a module that states neither (migrated v1) is assumed both."""
    categories = set(meta.get("categories") or [])
    trainable = "AI4 trainable" in categories
    servable = bool({"AI4 inference", "AI4 pre trained"} & categories)
    if not trainable and not servable:
        return {"trainable": True, "servable": True}
    return {"trainable": trainable, "servable": servable}


def to_module(name: str, meta: dict[str, Any], path: pathlib.Path) -> dict[str, Any]:
    image = image_of(meta)
    if image is None:
        raise MetadataFileError(path, ["links.docker_image: required to import (the Module's image)"])
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Module",
        "metadata": {"name": name, "annotations": {"deep-hybrid-datacloud.eu/source": path.name}},
        "spec": {"image": image, "capabilities": capabilities(meta), "metadata": meta},
    }
    if resources := default_resources(meta):
        manifest["spec"]["resources"] = resources
    Module.from_body(manifest)  # the manifest must be one the API server accepts
    return manifest


def import_dir(directory: pathlib.Path) -> ImportResult:
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not a folder of AI4 metadata files")
    result = ImportResult()
    taken: dict[str, str] = {}
    for path in sorted(p for p in directory.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file()):
        try:
            meta = to_v2(path, load_file(path))
            name = module_name(path.stem)
            if name in taken:  # the same module in two formats: keep both, told apart
                name = module_name(f"{path.stem}-{path.suffix[1:]}")
            result.modules.append(to_module(name, meta, path))
            taken[name] = path.name
        except MetadataFileError as exc:
            result.errors.append(exc)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            result.errors.append(MetadataFileError(path, [f"(file): {exc}"]))
    return result
