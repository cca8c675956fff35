"""One Module too big for the catalogue index (issue #15): the index keeps serving every other
Module, and the big one says why in its status (Ready=False, IndexEntryTooLarge), until it is
shortened. One too big for its entry ConfigMap (1 MiB) is refused by the server and says both."""

from __future__ import annotations

import json
from typing import Any

from deep_platform import kube as k
from deep_platform.builders.module import INDEX_LINE_LIMIT
from tests.harness.operator_fixtures import wait_until
from tests.integration.test_catalogue import MODULES, NS, condition, index_names, module_body

BIG_SUMMARY = "x" * 950_000  # passes the AI4 metadata schema (a string, no maximum length)
HUGE_SUMMARY = "y" * 1_100_000  # too big for a ConfigMap as well


def ready(api: k.Kube, name: str, reason: str | None = None) -> dict[str, Any] | None:
    module = api.get(MODULES, name)
    found = condition(module, "Ready") if module else None
    return found if found and reason in (None, found["reason"]) else None


def test_an_oversized_module_is_left_out_and_the_rest_stays_listed(operator: Any) -> None:
    api = operator.kube
    api.create(module_body("a-mod"))
    api.create(module_body("big-mod", summary=BIG_SUMMARY))
    api.create(module_body("c-mod"))
    wait_until(lambda: index_names(api) == ["a-mod", "c-mod"], what="the other Modules indexed")

    big = wait_until(lambda: ready(api, "big-mod", "IndexEntryTooLarge"), what="big-mod too large")
    assert big["status"] == "False"
    assert "spec.metadata.summary alone takes 950,002 bytes" in big["message"], big["message"]
    assert f"over the limit of {INDEX_LINE_LIMIT:,} bytes" in big["message"]
    module = api.get(MODULES, "big-mod")
    assert condition(module, "MetadataValid")["status"] == "True"
    # its entry is published all the same (below a ConfigMap's 1 MiB): its page works
    entry = api.get(k.CONFIGMAP, module["status"]["catalogueEntry"], NS)
    assert json.loads(entry["data"]["module.json"])["metadata"]["summary"] == BIG_SUMMARY
    head = json.loads(api.get(k.CONFIGMAP, "catalogue-index", NS)["data"]["index.json"])
    assert head["modules"] == 2 and head["leftOut"] == ["big-mod"]
    events = [e for e in api.list(k.EVENT) if e.get("reason") == "IndexEntryTooLarge"]
    assert events and events[0]["type"] == "Warning"

    # the index is not wedged: later Modules still come in
    api.create(module_body("d-mod"))
    wait_until(lambda: index_names(api) == ["a-mod", "c-mod", "d-mod"], what="a later Module indexed")

    # shortened, it is published and listed
    api.patch(MODULES, "big-mod", None, {"spec": {"metadata": {"summary": "A short summary."}}})
    wait_until(lambda: (r := ready(api, "big-mod")) and r["status"] == "True", what="big-mod Ready")
    wait_until(lambda: index_names(api) == ["a-mod", "big-mod", "c-mod", "d-mod"], what="big-mod indexed")
    head = json.loads(api.get(k.CONFIGMAP, "catalogue-index", NS)["data"]["index.json"])
    assert "leftOut" not in head


def test_an_entry_over_a_configmaps_limit_is_refused_and_says_both(operator: Any) -> None:
    api = operator.kube
    api.create(module_body("huge-mod", summary=HUGE_SUMMARY))
    api.create(module_body("e-mod"))
    rejected = wait_until(lambda: ready(api, "huge-mod", "CatalogueEntryRejected"), what="huge-mod rejected")
    assert rejected["status"] == "False"
    assert "Too long: may not be more than 1048576 bytes" in rejected["message"], rejected["message"]
    assert "spec.metadata.summary alone takes 1,100,002 bytes" in rejected["message"]
    assert api.get(k.CONFIGMAP, "module-huge-mod", NS) is None
    wait_until(lambda: index_names(api) == ["e-mod"], what="the other Module indexed")
