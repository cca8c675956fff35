"""The examples are valid; malformed manifests are rejected with messages that name the field."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deep_platform.offline import Document, problems, render, validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def problems_of(body: dict[str, Any]) -> list[str]:
    return problems(Document(Path("test.yaml"), 0, body))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    assert validate([path]) == []


def test_examples_cover_the_four_kinds() -> None:
    kinds = {doc["kind"] for p in EXAMPLES.glob("*.yaml") for doc in yaml.safe_load_all(p.read_text())}
    assert {"Module", "TrainingJob", "InferenceService", "DevEnvironment"} <= kinds


@pytest.mark.parametrize(
    ("file", "mutate", "expected"),
    [
        ("trainingjob.yaml", lambda b: b["spec"]["resources"]["gpu"].update(count=-1),
         "spec.resources.gpu.count: Input should be greater than or equal to 0"),
        ("trainingjob.yaml", lambda b: b["spec"]["resources"].update(memory="lots"),
         "spec.resources.memory: 'lots' is not a quantity"),
        ("trainingjob.yaml", lambda b: b["spec"].update(gpus=2),
         "spec.gpus: unknown field"),
        ("trainingjob.yaml", lambda b: (b["spec"].pop("module"), b["spec"].pop("image", None)),
         "set spec.module (a Module name) or spec.image"),
        ("trainingjob.yaml", lambda b: b["spec"].update(command=["python", "train.py"]),
         "with spec.command, pass them in spec.args"),
        ("trainingjob.yaml", lambda b: b["spec"]["storage"][0].update(mode="fuse"),
         "spec.storage[0].mode: Input should be 'copy' or 'mount'"),
        ("trainingjob.yaml",
         lambda b: b["spec"]["storage"][0].update(url="https://alice:secret@cloud.example/remote.php/webdav"),
         "spec.storage[0].url: must look like https://HOST/PATH, with no user:password@"),
        ("trainingjob.yaml", lambda b: b["spec"]["storage"][0].pop("secretRef"),
         "spec.storage[0].secretRef: required field is missing"),
        ("inferenceservice.yaml", lambda b: b["spec"]["scaling"].update(minReplicas=5, maxReplicas=2),
         "spec.scaling.minReplicas must not exceed spec.scaling.maxReplicas"),
        ("inferenceservice.yaml", lambda b: b["spec"]["scaling"].update(scaleToZeroAfter="ten minutes"),
         "spec.scaling.scaleToZeroAfter: String should match pattern"),
        ("inferenceservice.yaml", lambda b: b["metadata"].update(name="Plankton_Service"),
         "metadata.name: must be lowercase"),
        ("module.yaml", lambda b: b["spec"].pop("image"), "spec.image: required field is missing"),
        ("module.yaml", lambda b: b["metadata"].update(namespace="default"),
         "metadata.namespace: a Module is cluster-scoped"),
    ],
)
def test_malformed_manifest_is_rejected_naming_the_field(file: str, mutate: Any, expected: str) -> None:
    body = copy.deepcopy(example(file))
    mutate(body)
    found = problems_of(body)
    assert any(expected in line for line in found), found


def test_validate_command_exits_1_with_readable_errors(tmp_path: Path) -> None:
    body = example("trainingjob.yaml")
    body["spec"]["resources"]["gpu"]["count"] = "two"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(body))
    result = subprocess.run(
        [sys.executable, "-m", "deep_platform", "validate", "-f", str(bad)],
        capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert f"{bad}#0 TrainingJob/plankton-retrain: spec.resources.gpu.count:" in result.stderr
    good = subprocess.run(
        [sys.executable, "-m", "deep_platform", "validate", "-f", str(EXAMPLES)],
        capture_output=True, text=True,
    )
    assert good.returncode == 0, good.stderr


@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_render_of_examples_passes_upstream_schemas(version: str) -> None:
    objects = render([EXAMPLES])
    assert {o["kind"] for o in objects} >= {"ConfigMap", "Job", "Deployment", "Service"}
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_render_command_prints_the_job(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deep_platform", "render", "-f", str(EXAMPLES / "trainingjob.yaml")],
        capture_output=True, text=True, check=True,
    )
    (job,) = [d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == example("module.yaml")["spec"]["image"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_render_names_a_missing_module(tmp_path: Path) -> None:
    body = example("inferenceservice.yaml")
    body["spec"]["module"] = "no-such-module"
    lonely = tmp_path / "isvc.yaml"
    lonely.write_text(yaml.safe_dump(body))
    with pytest.raises(ValueError, match=r"spec\.module: Module 'no-such-module'"):
        render([lonely])
