"""The CRDs in crds/ are the ones the models generate, and a real API server would take them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deep_platform.api.crdgen import KINDS, crd, crd_filename, render_yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
# oldest and newest Kubernetes minor versions the platform supports
K8S_VERSIONS = ("1.30", "1.34")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_committed_crd_matches_the_models(kind: Any) -> None:
    committed = (CRD_DIR / crd_filename(kind)).read_text(encoding="utf-8")
    assert committed == render_yaml(kind), (
        f"crds/{crd_filename(kind)} is stale: run `deep-platform crds -o crds/` and commit it"
    )


def test_crds_command_prints_all_four() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "deep_platform", "crds"], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert [d["spec"]["names"]["kind"] for d in docs] == [
        "Module", "TrainingJob", "InferenceService", "DevEnvironment"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_crd_passes_upstream_schema(kind: Any, version: str) -> None:
    kubernetes_validate.validate(crd(kind), version, strict=True)


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, sub in (schema.get("properties") or {}).items():
        nodes += walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


def schema_of(kind: Any) -> dict[str, Any]:
    return crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_schema_is_structural(kind: Any) -> None:
    """The rules kube-apiserver enforces on apiextensions.k8s.io/v1 schemas."""
    problems = []
    for path, node in walk(schema_of(kind)):
        free = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        if "type" not in node and not free:
            problems.append(f"{path}: no type")
        if "$ref" in node or "definitions" in node or "$defs" in node:
            problems.append(f"{path}: references are not allowed")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties are exclusive")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false is forbidden")
        for junctor in ("anyOf", "oneOf", "allOf", "not"):
            if junctor in node and not (junctor == "anyOf" and node.get("x-kubernetes-int-or-string")):
                problems.append(f"{path}: {junctor} only allowed for int-or-string")
        if node.get("x-kubernetes-int-or-string") and node.get("anyOf") not in (
            None,
            [{"type": "integer"}, {"type": "string"}],
        ):
            problems.append(f"{path}: int-or-string anyOf must be exactly integer|string")
        if node.get("x-kubernetes-list-type") == "map":
            items = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                if key not in items.get("required", []) and "default" not in items["properties"][key]:
                    problems.append(f"{path}: list-map key {key} must be required or defaulted")
        if "default" in node and path.startswith(".metadata"):
            problems.append(f"{path}: defaults are not allowed in metadata")
    assert problems == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_every_field_is_described(kind: Any) -> None:
    """`kubectl explain` teaches the API: no field without a description."""
    undescribed = [
        path
        for path, node in walk(schema_of(kind))
        if path.startswith((".spec", ".status")) and not path.endswith("[]") and "{}" not in path
        and not node.get("description")
    ]
    assert undescribed == []


def test_crd_conventions() -> None:
    for kind in KINDS:
        spec = crd(kind)["spec"]
        version = spec["versions"][0]
        assert spec["names"]["categories"] == ["deep"]
        assert version["subresources"] == {"status": {}}
        conditions = schema_of(kind)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert [c["name"] for c in version["additionalPrinterColumns"]]


def test_short_names_do_not_clash_with_kserve_or_core() -> None:
    taken = {"isvc", "tm", "sr", "csr", "ig", "po", "svc", "deploy", "job", "cm", "ev", "no", "ns"}
    for kind in KINDS:
        assert not set(kind.crd.short_names) & taken


def test_cross_field_rules_are_cel_in_the_crd() -> None:
    from deep_platform.api import TrainingJob

    rules = schema_of(TrainingJob)["properties"]["spec"]["x-kubernetes-validations"]
    assert {"rule": "has(self.module) || has(self.image)",
            "message": "set spec.module (a Module name) or spec.image"} in rules
