"""Module builders: the entry ConfigMap, the sharded index, ready-to-apply snippets."""

from __future__ import annotations

import json
import pathlib

import kubernetes_validate
import pytest
import yaml

from deep_platform.api import DevEnvironment, InferenceService, Module, TrainingJob
from deep_platform.builders.module import (
    INDEX_LINE_LIMIT,
    SHARD_BUDGET,
    build_catalogue_entry,
    build_index,
    devenvironment_snippet,
    index_item,
    index_line_too_large,
    inferenceservice_snippet,
    pack_shards,
    trainingjob_snippet,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
ONE_MIB = 1024 * 1024


def example() -> Module:
    body = yaml.safe_load((REPO / "examples" / "module.yaml").read_text())
    body["metadata"]["uid"] = "u-1"
    return Module.from_body(body)


@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_entry_and_index_are_valid_configmaps(version: str) -> None:
    module = example()
    objects = [build_catalogue_entry(module, "deep-platform", ["http://a/x/"], ["title: bad"])]
    objects += build_index([index_item(module)], "deep-platform")
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_entry_carries_what_the_page_needs() -> None:
    entry = build_catalogue_entry(example(), "deep-platform", ["http://b/", "http://a/"], ["x: y"])
    data = json.loads(entry["data"]["module.json"])
    assert data["image"] == "ai4oshub/phyto-plankton-classification:latest"
    assert data["endpoints"] == ["http://a/", "http://b/"]
    assert (data["metadataValid"], data["metadataProblems"]) == (False, ["x: y"])
    assert entry["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_index_item_tolerates_sloppy_metadata() -> None:
    module = example()
    module.spec.metadata = {"title": None, "tags": "single", "tasks": None}
    item = index_item(module)
    assert (item["title"], item["tags"], item["tasks"]) == (module.name, ["single"], [])


def test_shards_stay_under_one_mib_and_keep_every_module() -> None:
    items = [{"name": f"m{i:05d}", "summary": "x" * 3000} for i in range(1000)]  # ~3 MB in all
    objects = build_index(items, "ns")
    shards, head = objects[:-1], objects[-1]
    assert len(shards) >= 3
    for obj in objects:
        assert len(json.dumps(obj).encode()) < ONE_MIB
    names = [i["name"] for s in shards for i in json.loads(s["data"]["modules.json"])]
    assert names == sorted(i["name"] for i in items)
    assert [s["name"] for s in json.loads(head["data"]["index.json"])["shards"]] == [
        s["metadata"]["name"] for s in shards
    ]


def test_an_empty_index_has_one_empty_shard() -> None:
    assert pack_shards([]) == ["[]"]


def test_an_item_larger_than_a_shard_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="module big"):
        pack_shards([{"name": "big", "x": "y" * 200}], budget=100)


def test_an_oversized_item_is_left_out_of_the_index_and_the_rest_kept() -> None:
    items = [{"name": "a", "summary": "s"}, {"name": "big", "summary": "y" * SHARD_BUDGET},
             {"name": "c", "summary": "s"}]
    left_out: list[str] = []
    objects = build_index(items, "ns", left_out=left_out)
    assert left_out == ["big"]
    names = [i["name"] for s in objects[:-1] for i in json.loads(s["data"]["modules.json"])]
    assert names == ["a", "c"]
    head = json.loads(objects[-1]["data"]["index.json"])
    assert head["modules"] == 2 and head["leftOut"] == ["big"]
    assert "leftOut" not in json.loads(build_index(items[:1], "ns")[-1]["data"]["index.json"])


def test_an_index_line_at_the_limit_fits_one_byte_more_does_not() -> None:
    base = {"name": "m", "summary": ""}
    pad = INDEX_LINE_LIMIT - len(json.dumps(base, separators=(",", ":")))
    fits = dict(base, summary="x" * pad)
    assert index_line_too_large(fits) is None
    assert len(pack_shards([fits])) == 1
    too_big = dict(base, summary="x" * (pad + 1))
    message = index_line_too_large(too_big)
    assert message is not None
    assert f"over the limit of {INDEX_LINE_LIMIT:,} bytes" in message
    assert f"spec.metadata.summary alone takes {pad + 3:,} bytes" in message
    with pytest.raises(ValueError):
        pack_shards([too_big])


def test_the_biggest_field_is_named() -> None:
    module = example()
    module.spec.metadata["tags"] = ["t" * 1000] * 1000
    message = index_line_too_large(index_item(module))
    assert message is not None and "spec.metadata.tags alone takes" in message


def test_snippets_are_objects_the_api_accepts() -> None:
    module = example()
    tj = TrainingJob.from_body(trainingjob_snippet(module))
    isvc = InferenceService.from_body(inferenceservice_snippet(module))
    assert tj.spec.module == isvc.spec.module == module.name
    assert tj.spec.resources == module.spec.resources.training  # type: ignore[union-attr]
    assert isvc.spec.scaling.min_replicas == 0
    dev = DevEnvironment.from_body(devenvironment_snippet(module))
    assert dev.spec.module == module.name and dev.name.endswith("-dev")
    assert dev.spec.resources == module.spec.resources.training  # type: ignore[union-attr]  # GPUs as training
