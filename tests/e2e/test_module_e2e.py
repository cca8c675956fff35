"""Module on a real cluster: the CRD takes the example, the catalogue entry appears and goes."""

from __future__ import annotations

import uuid

from deep_platform import kube as k
from deep_platform.api import Module
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
    finally:
        api.delete(MODULES, name)
    wait_until(lambda: api.get(k.CONFIGMAP, entry, platform_namespace) is None, timeout=60,
               what="catalogue entry garbage-collected")
