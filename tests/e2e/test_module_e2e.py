"""Module on a real cluster: the CRD takes the example, the catalogue entry and its line in the
index appear, and both go with the Module."""

from __future__ import annotations

import uuid

from deep_platform import kube as k
from deep_platform.api import Module
from deep_platform.catalogue.index import read_index
from tests.e2e.conftest import example
from tests.harness.operator_fixtures import wait_until

MODULES = k.kind_of(Module)


def test_module_is_published_and_removed(e2e_operator, platform_namespace) -> None:  # type: ignore[no-untyped-def]
    api = e2e_operator.kube
    body = example("module.yaml")
    body["metadata"]["name"] = f"e2e-{uuid.uuid4().hex[:8]}"
    name = body["metadata"]["name"]
    api.apply(body)
    try:
        module = e2e_operator.wait_for(
            MODULES, name,
            until=lambda o: o.get("status", {}).get("observedGeneration") == o["metadata"]["generation"],
            timeout=60,
        )
        ready = next(c for c in module["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", ready
        entry = module["status"]["catalogueEntry"]
        assert api.get(k.CONFIGMAP, entry, platform_namespace) is not None
        wait_until(lambda: name in indexed(api, platform_namespace), timeout=60, what="the Module indexed")
    finally:
        api.delete(MODULES, name)
    wait_until(lambda: api.get(k.CONFIGMAP, entry, platform_namespace) is None, timeout=60,
               what="catalogue entry garbage-collected")
    wait_until(lambda: name not in indexed(api, platform_namespace), timeout=60, what="the index without it")


def indexed(api: k.Kube, namespace: str) -> set[str]:
    """Module names in the catalogue index, read as the web app reads it."""
    return {item["name"] for item in read_index(api, namespace)}
