"""`deep-platform render` prints what `kubectl apply -f -` takes as it is: plain YAML (no anchors,
no aliases), one document per object, in apply order, namespaced objects with their namespace,
and no owner reference (it needs the owner's live uid), a comment saying the operator sets it.
tests/e2e/test_render_e2e.py hands the same output to a real API server."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from deep_platform.offline import APPLY_ORDER, CLUSTER_SCOPED, render, to_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def render_command(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "deep_platform", "render", *args],
        capture_output=True, text=True, check=True,
    )
    return done.stdout


def test_the_command_prints_to_yaml_of_render() -> None:
    assert render_command("-f", str(EXAMPLES)) == to_yaml(render([EXAMPLES]))


def test_no_anchors_no_aliases() -> None:
    text = render_command("-f", str(EXAMPLES))
    events = list(yaml.parse(text))
    assert not [e for e in events if isinstance(e, yaml.AliasEvent)]
    assert not [e for e in events if getattr(e, "anchor", None)]
    assert "&id" not in text and "*id" not in text


def test_no_owner_reference_and_no_empty_uid_but_a_comment_naming_the_owner() -> None:
    text = render_command("-f", str(EXAMPLES))
    assert "uid:" not in text
    assert "ownerReferences:" not in text
    docs = [d for d in text.split("---\n") if d.strip()]
    for doc, obj in zip(docs, render([EXAMPLES]), strict=True):
        (owner,) = obj["metadata"]["ownerReferences"]
        first = doc.splitlines()[0]
        assert first.startswith(f"# ownerReferences (owner: {owner['kind']} {owner['name']}) left out")
        assert "operator sets them" in doc.splitlines()[1]


def test_one_document_per_object_and_nothing_else_changed() -> None:
    objects = render([EXAMPLES])
    docs = list(yaml.safe_load_all(render_command("-f", str(EXAMPLES))))
    assert len(docs) == len(objects) >= 4
    expected = copy.deepcopy(objects)
    for obj in expected:
        obj["metadata"].pop("ownerReferences", None)
    assert docs == expected


def test_apply_order_kind_by_kind_files_in_order_within_a_kind(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(render_command("-f", str(EXAMPLES))))
    assert [d["kind"] for d in docs] == [
        "ConfigMap", "PersistentVolumeClaim", "Service", "Service", "Deployment", "Deployment", "Job"]
    # two TrainingJobs, the second file first on the command line: their Jobs keep that order
    body = yaml.safe_load((EXAMPLES / "trainingjob.yaml").read_text(encoding="utf-8"))
    for name in ("b-first", "a-second"):
        body["metadata"]["name"] = name
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    (tmp_path / "module.yaml").write_text((EXAMPLES / "module.yaml").read_text(encoding="utf-8"))
    text = render_command("-f", str(tmp_path / "b-first.yaml"), "-f", str(tmp_path / "a-second.yaml"),
                          "-f", str(tmp_path / "module.yaml"))
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Job", "Job"]
    assert [d["metadata"]["name"].split("-")[0] for d in docs[1:]] == ["b", "a"]


def test_every_namespaced_object_names_its_namespace(tmp_path: Path) -> None:
    # a TrainingJob without a namespace goes where kubectl would put it: default
    body = yaml.safe_load((EXAMPLES / "trainingjob.yaml").read_text(encoding="utf-8"))
    del body["metadata"]["namespace"]
    (tmp_path / "tj.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    (tmp_path / "module.yaml").write_text((EXAMPLES / "module.yaml").read_text(encoding="utf-8"))
    text = render_command("-f", str(EXAMPLES), "-f", str(tmp_path / "tj.yaml"),
                          "--platform-namespace", "catalogue-here")
    docs: list[dict[str, Any]] = list(yaml.safe_load_all(text))
    for doc in docs:
        assert doc["kind"] not in CLUSTER_SCOPED
        assert doc["metadata"]["namespace"], doc["kind"]
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] == "ConfigMap"} == {"catalogue-here"}
    assert [d["metadata"]["namespace"] for d in docs if d["kind"] == "Job"] == ["default", "default"]


def test_apply_order_puts_what_is_referred_to_first() -> None:
    rank = APPLY_ORDER.index
    assert rank("Namespace") < rank("ConfigMap") < rank("PersistentVolume") < rank("PersistentVolumeClaim")
    assert rank("PersistentVolumeClaim") < rank("Service") < rank("Deployment") < rank("Job")
