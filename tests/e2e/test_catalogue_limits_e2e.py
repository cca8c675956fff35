"""Catalogue limits on a real API server (issue #15): one Module too big for an index shard does
not wedge the index (every other Module stays listed, later ones come in) and says why in its
status; one too big even for its entry ConfigMap (1 MiB, enforced by the server, not by the
emulator) is refused by the server and says both."""

from __future__ import annotations

import json
import uuid
from typing import Any

from deep_platform import kube as k
from deep_platform.api import Module
from deep_platform.builders.module import INDEX_LINE_LIMIT, entry_name
from deep_platform.catalogue.index import read_index
from tests.e2e.conftest import example
from tests.harness.operator_fixtures import wait_until

MODULES = k.kind_of(Module)
BIG = 950_000  # bytes of summary: a valid AI4 summary, too big for an index shard
HUGE = 1_100_000  # too big for a ConfigMap as well (the Module itself, below etcd's 1.5 MiB, is taken)


def module(name: str, summary: str | None = None) -> dict[str, Any]:
    body = example("module.yaml")
    body["metadata"] = {"name": name}
    if summary is not None:
        body["spec"]["metadata"]["summary"] = summary
    return body


def ready(api: k.Kube, name: str, reason: str) -> dict[str, Any] | None:
    obj = api.get(MODULES, name)
    found = next((c for c in ((obj or {}).get("status") or {}).get("conditions") or []
                  if c["type"] == "Ready"), None)
    return found if found and found["reason"] == reason else None


def indexed(api: k.Kube, namespace: str) -> set[str]:
    return {item["name"] for item in read_index(api, namespace)}


def test_an_oversized_module_leaves_the_index_serving_the_others(e2e_operator, platform_namespace) -> None:  # type: ignore[no-untyped-def]
    api, ns = e2e_operator.kube, platform_namespace
    tag = uuid.uuid4().hex[:8]
    small, big, huge, later = (f"e2e-{what}-{tag}" for what in ("small", "big", "huge", "later"))
    try:
        for name, summary in ((small, None), (big, "x" * BIG), (huge, "y" * HUGE)):
            api.apply(module(name, summary))
        wait_until(lambda: small in indexed(api, ns), timeout=60, what="the small Module indexed")

        too_large = wait_until(lambda: ready(api, big, "IndexEntryTooLarge"), timeout=60,
                               what=f"{big}: Ready=False, IndexEntryTooLarge")
        assert too_large["status"] == "False"
        assert f"spec.metadata.summary alone takes {BIG + 2:,} bytes" in too_large["message"]
        assert f"over the limit of {INDEX_LINE_LIMIT:,} bytes" in too_large["message"]
        # its entry is below a ConfigMap's 1 MiB: the server takes it, its page works
        entry = api.get(k.CONFIGMAP, entry_name(big), ns)
        assert entry is not None
        assert len(json.loads(entry["data"]["module.json"])["metadata"]["summary"]) == BIG

        rejected = wait_until(lambda: ready(api, huge, "CatalogueEntryRejected"), timeout=60,
                              what=f"{huge}: Ready=False, CatalogueEntryRejected")
        assert rejected["status"] == "False"
        assert "the API server refused the catalogue entry" in rejected["message"]
        assert "Too long: may not be more than 1048576 bytes" in rejected["message"]
        assert "spec.metadata.summary alone takes" in rejected["message"]  # and the index, too
        assert api.get(k.CONFIGMAP, entry_name(huge), ns) is None

        # not wedged: a Module created afterwards is listed, the big ones are not
        api.apply(module(later))
        wait_until(lambda: later in indexed(api, ns), timeout=60, what="a later Module indexed")
        names = indexed(api, ns)
        assert small in names and big not in names and huge not in names
        head = json.loads(api.get(k.CONFIGMAP, "catalogue-index", ns)["data"]["index.json"])
        assert {big, huge} <= set(head.get("leftOut", []))
    finally:
        for name in (small, big, huge, later):
            api.delete(MODULES, name)
    wait_until(lambda: not {small, later} & indexed(api, ns), timeout=60, what="the index without them")
