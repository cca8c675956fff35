"""The Module controller reacts to watch events only; the periodic resync repairs drift that no
event announces, such as a catalogue entry ConfigMap deleted by hand."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from deep_platform import kube as k
from deep_platform.config import OperatorConfig
from tests.harness.operator_fixtures import wait_until
from tests.integration.test_catalogue import NS, index_names, module_body


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
