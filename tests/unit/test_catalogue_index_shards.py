"""The catalogue index shrinking: shards no longer needed are deleted, and readers see the new
index. Made with the operator's own client (the chart's RBAC test counts its calls)."""

from __future__ import annotations

from typing import Any

from deep_platform.builders.module import CATALOGUE_LABEL, SHARD_BUDGET
from deep_platform.catalogue.index import read_index, write_index
from deep_platform.kube import CONFIGMAP
from tests.harness.operator_fixtures import kube_for

NS = "deep-platform"


def item(name: str, size: int) -> dict[str, Any]:
    return {"name": name, "title": name, "summary": "x" * size, "tags": []}


def shard_names(kube: Any) -> list[str]:
    shards = kube.list(CONFIGMAP, NS, label_selector=f"{CATALOGUE_LABEL}=index-shard")
    return sorted(cm["metadata"]["name"] for cm in shards)


def test_a_smaller_index_deletes_its_stale_shards(apiserver: Any) -> None:
    test, operator = kube_for(apiserver.url), kube_for(apiserver.url, component="operator")
    big = [item(f"module-{n}", SHARD_BUDGET * 6 // 10) for n in range(3)]  # one shard each
    write_index(operator, NS, big)
    assert shard_names(test) == ["catalogue-index-0", "catalogue-index-1", "catalogue-index-2"]
    assert [i["name"] for i in read_index(test, NS)] == ["module-0", "module-1", "module-2"]
    written = write_index(operator, NS, [item("module-0", 100), item("module-9", 100)])
    assert shard_names(test) == ["catalogue-index-0"]
    assert written == 4  # shard 0 and the head rewritten, shards 1 and 2 deleted
    assert [i["name"] for i in read_index(test, NS)] == ["module-0", "module-9"]
    test.close()
    operator.close()
