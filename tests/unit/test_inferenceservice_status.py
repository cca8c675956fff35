"""Status from what the cluster runs: replicas, Ready / ScaledToZero, crash reasons."""

from __future__ import annotations

from typing import Any

from deep_platform.api import InferenceService
from deep_platform.api.inferenceservice import InferenceServiceStatus
from deep_platform.builders.inferenceservice import VERSION_ANNOTATION
from deep_platform.conditions import get_condition
from deep_platform.controllers.inferenceservice import pod_failure, serving_conditions


def isvc(prewarm: bool = False) -> InferenceService:
    return InferenceService.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": "ns", "generation": 3},
            "spec": {"image": "i", "scaling": {"prewarm": prewarm}},
        }
    )


def deployment(replicas: int | None, ready: int, version: str = "v1") -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"metadata": {"annotations": {VERSION_ANNOTATION: version}}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"spec": spec, "status": {"readyReplicas": ready}}


def crashing_pod(reason: str = "CrashLoopBackOff") -> dict[str, Any]:
    return {
        "metadata": {"name": "m-1"},
        "status": {
            "containerStatuses": [
                {
                    "name": "deepaas",
                    "state": {"waiting": {"reason": reason}},
                    "lastState": {"terminated": {"exitCode": 1, "message": "ModuleNotFoundError: Model 'x'"}},
                }
            ]
        },
    }


def conditions(
    service: InferenceService,
    dep: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    status: InferenceServiceStatus | None = None,
) -> tuple[InferenceServiceStatus, Any, Any]:
    status = status or InferenceServiceStatus()
    serving_conditions(status, service, dep, pods)
    return status, get_condition(status, "Ready"), get_condition(status, "ScaledToZero")


def test_at_zero_is_ready_and_scaled_to_zero() -> None:
    status, ready, zero = conditions(isvc(), deployment(0, 0), [])
    assert (ready.status, ready.reason) == ("True", "ScaledToZero")
    assert (zero.status, zero.reason) == ("True", "Idle")
    assert (status.replicas, status.ready_replicas, status.version) == (0, 0, "v1")


def test_absent_replicas_count_as_one_starting() -> None:
    status, ready, zero = conditions(isvc(), deployment(None, 0), [])
    assert status.replicas == 1
    assert (ready.status, ready.reason, zero.status) == ("False", "Starting", "False")


def test_ready_replica_serves() -> None:
    _, ready, _ = conditions(isvc(), deployment(2, 1), [])
    assert (ready.status, ready.reason, ready.message) == ("True", "Serving", "1/2 replicas ready")
    assert ready.observed_generation == 3


def test_crash_loop_reason_and_log_reach_ready() -> None:
    _, ready, _ = conditions(isvc(), deployment(1, 0), [crashing_pod()])
    assert (ready.status, ready.reason) == ("False", "CrashLoopBackOff")
    assert "exit code 1" in ready.message
    assert "Model 'x'" in ready.message


def test_oom_and_unschedulable_are_named() -> None:
    oom = crashing_pod()
    oom["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] = "OOMKilled"
    assert pod_failure([oom])[0] == "OOMKilled"
    pending = {
        "metadata": {},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes: gpu",
                }
            ]
        },
    }
    assert pod_failure([pending]) == ("Unschedulable", "0/3 nodes: gpu")
    assert pod_failure([{"metadata": {}, "status": {"phase": "Running"}}]) is None


def test_prewarm_holds_ready_until_the_version_is_warmed() -> None:
    status, ready, _ = conditions(isvc(prewarm=True), deployment(1, 1, "v2"), [])
    assert (ready.status, ready.reason) == ("False", "Prewarming")
    status.warmed_version = "v2"
    _, ready, _ = conditions(isvc(prewarm=True), deployment(1, 1, "v2"), [], status)
    assert (ready.status, ready.reason) == ("True", "Serving")
