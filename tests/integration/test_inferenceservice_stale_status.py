"""A reconciliation from a stale copy of an InferenceService (kopf's body older than our last
status write, or the copy a killed operator process held) writes nothing and announces nothing
twice: the status write carries the resourceVersion it was computed from."""

from __future__ import annotations

import time
from typing import Any

from deep_platform import kube as k
from deep_platform.api import InferenceService
from deep_platform.controllers import runtime
from deep_platform.controllers.inferenceservice import reconcile_inferenceservice
from tests.harness.operator_fixtures import wait_until
from tests.integration.test_trainingjob import NS, example, module

ISVC = k.kind_of(InferenceService)


def operator_events(api: k.Kube, name: str) -> list[tuple[str, str]]:
    return sorted(
        (str(e.get("reason")), str(e.get("message")))
        for e in api.list(k.EVENT, NS)
        if (e.get("involvedObject") or {}).get("name") == name
        and (e.get("involvedObject") or {}).get("kind") == "InferenceService"
    )


def unchanged_for(api: k.Kube, name: str, seconds: float) -> bool:
    before = (api.get(ISVC, name, NS) or {}).get("metadata", {}).get("resourceVersion")
    time.sleep(seconds)
    return before == (api.get(ISVC, name, NS) or {}).get("metadata", {}).get("resourceVersion")


def test_stale_copy_announces_no_transition_twice(apiserver: Any, operator: Any) -> None:
    operator.kube.create(module())
    stale = operator.kube.create(example("inferenceservice.yaml"))  # no status yet
    name = stale["metadata"]["name"]
    wait_until(lambda: (operator.kube.get(ISVC, name, NS) or {}).get("status", {}).get("conditions"),
               10, what="a status")
    wait_until(lambda: operator_events(operator.kube, name), 10, what="its Events")
    # on a real server the scheduler then marks the pod Unschedulable (no node): a transition of
    # its own; compare only once nothing moves any more
    wait_until(lambda: unchanged_for(operator.kube, name, 2.0), 30, what="the status to settle")
    settled = operator_events(operator.kube, name)
    status = (operator.kube.get(ISVC, name, NS) or {})["status"]

    reconcile_inferenceservice(runtime.current(), stale)  # as a restarted operator's old copy

    assert operator_events(operator.kube, name) == settled
    assert (operator.kube.get(ISVC, name, NS) or {})["status"] == status
