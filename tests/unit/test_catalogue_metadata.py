"""AI4 metadata checks and the importer, on real module metadata shipped in tests/data/catalogue
(nine files, v1 and v2, valid and broken; its README.md gives each one's source and licence)."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from deep_platform.api import Module
from deep_platform.catalogue.importer import import_dir
from deep_platform.catalogue.metadata import check
from deep_platform.cli import main

REPO = pathlib.Path(__file__).resolve().parents[2]
CATALOGUE = REPO / "tests" / "data" / "catalogue"
EXAMPLE = yaml.safe_load((REPO / "examples" / "module.yaml").read_text())["spec"]["metadata"]


def test_example_metadata_is_valid() -> None:
    assert check(EXAMPLE) == []


def test_every_failing_field_is_named() -> None:
    broken = {k: v for k, v in EXAMPLE.items() if k != "libraries"}
    broken["summary"] = None
    broken["tasks"] = ["Computer Vision", "Astrology"]
    problems = check(broken)
    assert any(p.startswith("libraries: required") for p in problems), problems
    assert any(p.startswith("summary: must be of type string") for p in problems), problems
    assert any(p.startswith("tasks[1]:") and "Astrology" in p for p in problems), problems


def test_yaml_dates_are_checked_as_the_strings_kubernetes_stores() -> None:
    import datetime as dt

    meta = dict(EXAMPLE, dates={"created": dt.date(2024, 1, 2), "updated": dt.date(2024, 3, 4)})
    assert check(meta) == []


@pytest.mark.parametrize(
    ("meta", "field"),
    [("not a mapping", "(top level)"), ({"title": "x"}, "metadata_version"),
     (dict(EXAMPLE, metadata_version="9.9.9"), "metadata_version")],
)
def test_unusable_metadata_is_a_problem_not_a_crash(meta: object, field: str) -> None:
    problems = check(meta)
    assert problems and problems[0].startswith(field)


def test_import_of_the_real_catalogue() -> None:
    files = sorted(p for p in CATALOGUE.iterdir() if p.suffix in (".yml", ".json"))
    result = import_dir(CATALOGUE)
    failed = {pathlib.Path(e.path).name for e in result.errors}
    imported = {m["metadata"]["annotations"]["deep-hybrid-datacloud.eu/source"] for m in result.modules}
    assert imported | failed == {p.name for p in files}  # nothing lost, nothing twice
    assert not imported & failed
    assert sorted(m["metadata"]["name"] for m in result.modules) == [
        "ai4os-image-classification-tf", "deep-oc-dogs-breed-det",
        "deep-oc-phytoplankton-classification-tf", "dogs-breed-det"]
    assert failed == {"DEEP-OC-plant-classification-theano.json", "ai4os-demo-app.yml",
                      "litter-assessment.yml", "mods.yml", "obj-detection-toch.yml"}
    for error in result.errors:  # each error names its file and at least one field
        assert str(error).startswith(error.path + ": ")
        assert all(":" in problem for problem in error.problems)
    by_file = {pathlib.Path(e.path).name: str(e) for e in result.errors}
    assert 'libraries[0]: "Pytorch" is not one of' in by_file["obj-detection-toch.yml"]
    assert "summary" in by_file["ai4os-demo-app.yml"]
    assert "line 3" in by_file["litter-assessment.yml"]
    assert "sources.code" in by_file["DEEP-OC-plant-classification-theano.json"]
    for manifest in result.modules:  # every manifest is a valid Module with valid v2 metadata
        module = Module.from_body(manifest)
        assert check(module.spec.metadata) == [], module.name
        assert module.spec.image


def test_v1_files_are_migrated_with_the_package() -> None:
    result = import_dir(CATALOGUE)
    mods = next(m for m in result.modules if m["metadata"]["name"] == "deep-oc-dogs-breed-det")
    v1 = json.loads((CATALOGUE / "DEEP-OC-dogs_breed_det.json").read_text())
    meta = mods["spec"]["metadata"]
    assert meta["metadata_version"].startswith("2.")
    assert meta["title"] == v1["title"]
    assert mods["spec"]["image"] == v1["sources"]["docker_registry_repo"] + ":latest"


def test_cli_import_writes_manifests_and_reports_bad_files(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "modules.yaml"
    code = main(["catalogue", "import", str(CATALOGUE), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 1  # some files are bad
    docs = list(yaml.safe_load_all(out.read_text()))
    assert len(docs) == 4 and all(d["kind"] == "Module" for d in docs)
    assert "mods.yml: libraries: required field is missing" in err
    assert f"{len(docs)} module(s) imported" in err


def test_cli_import_of_a_missing_folder(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalogue", "import", str(tmp_path / "nope")]) == 1
    assert "not a folder" in capsys.readouterr().err
