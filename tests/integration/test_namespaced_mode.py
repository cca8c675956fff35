"""`deep-platform run -n NS`: cluster-scoped Modules are still served; other namespaces are not."""

from __future__ import annotations

import time
from typing import Any

import pytest

from deep_platform import kube as k
from deep_platform.api import Module, TrainingJob
from deep_platform.config import OperatorConfig
from tests.integration.test_reconcile import example, reconciled


@pytest.fixture
def operator_config(operator_config: OperatorConfig) -> OperatorConfig:
    operator_config.namespaces = ["default"]
    return operator_config


def test_only_the_watched_namespace_is_reconciled(operator: Any) -> None:
    api = operator.kube
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
    api.create(example("module.yaml"))
    operator.wait_for(k.kind_of(Module), "phyto-plankton-classification", until=reconciled)
    watched = example("trainingjob.yaml")
    ignored = example("trainingjob.yaml")
    ignored["metadata"]["namespace"] = "team-b"
    api.create(watched)
    api.create(ignored)
    operator.wait_for(k.kind_of(TrainingJob), "plankton-retrain", "default", until=reconciled)
    time.sleep(1)  # the watched one is done; give the other the same chance to be (wrongly) seen
    assert api.get(k.kind_of(TrainingJob), "plankton-retrain", "team-b").get("status") in (None, {})
    assert api.get(k.JOB, "plankton-retrain", "team-b") is None
