"""The Module controller reacts to watch events only; the periodic resync repairs drift that no
event announces, such as a catalogue entry ConfigMap deleted by hand."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from deep_platform import kube as k
from deep_platform.api import Module
from deep_platform.config import OperatorConfig
from tests.harness.operator_fixtures import wait_until
from tests.integration.test_catalogue import NS, index_names, module_body

MODULES = k.kind_of(Module)
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


@pytest.fixture
def operator_config(operator_config: OperatorConfig) -> OperatorConfig:
    return dataclasses.replace(operator_config, resync_seconds=1.0)


def test_resync_brings_back_a_deleted_entry(operator: Any) -> None:
    api = operator.kube
    api.create(module_body("drifty"))
    wait_until(lambda: api.get(k.CONFIGMAP, "module-drifty", NS), what="the entry")
    wait_until(lambda: index_names(api) == ["drifty"], what="the index")
    api.delete(k.CONFIGMAP, "module-drifty", NS)
    assert api.get(k.CONFIGMAP, "module-drifty", NS) is None
    entry = wait_until(lambda: api.get(k.CONFIGMAP, "module-drifty", NS), timeout=10, what="entry restored")
    assert '"name": "drifty"' in entry["data"]["module.json"]


def test_resync_repairs_an_edited_entry(operator: Any) -> None:
    api = operator.kube
    api.create(module_body("edited"))
    entry = wait_until(lambda: api.get(k.CONFIGMAP, "module-edited", NS), what="the entry")
    api.patch(k.CONFIGMAP, "module-edited", NS, {"data": {"module.json": "{}"}})
    restored = wait_until(
        lambda: (api.get(k.CONFIGMAP, "module-edited", NS) or {}).get("data") == entry["data"] or None,
        timeout=10, what="entry repaired")
    assert restored


@pytest.mark.emulator_only("counts the writes in the emulator's request log")
def test_resync_with_nothing_changed_writes_nothing(operator: Any, apiserver: Any) -> None:
    api = operator.kube
    for name in ("quiet-a", "quiet-b"):
        api.create(module_body(name))
    wait_until(lambda: index_names(api) == ["quiet-a", "quiet-b"], what="the index")
    for name in ("quiet-a", "quiet-b"):
        wait_until(lambda name=name: (api.get(MODULES, name) or {})
                   .get("status", {}).get("catalogueEntry"), what="the status")
    time.sleep(0.5)  # the last status echo and Event
    settled = len(apiserver.requests_log)
    # resync_seconds is 1: each resync lists the Modules (and the entries)
    wait_until(lambda: sum(1 for c in apiserver.requests_log[settled:]
                           if c.verb == "list" and c.resource == "modules") >= 2 or None,
               timeout=10, what="two resyncs")
    writes = [c for c in apiserver.requests_log[settled:] if c.verb in WRITES]
    assert writes == [], writes
