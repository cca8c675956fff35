"""The phase machine: what Job and pod status become in the TrainingJob's status."""

from __future__ import annotations

from typing import Any

from deep_platform.api import Module
from deep_platform.api.common import Resources
from deep_platform.builders.trainingjob_observe import format_duration, observe, resource_problem

T0 = "2025-01-01T10:00:00Z"


def job(
    suspend: bool = False, conditions: list[dict[str, Any]] | None = None, **status: Any
) -> dict[str, Any]:
    return {
        "spec": {"suspend": suspend},
        "status": {"conditions": conditions or [], "startTime": T0, **status},
    }


def cond(type_: str, reason: str = "", message: str = "", at: str = "2025-01-01T11:00:00Z") -> dict[str, Any]:
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": at}


def pod(
    name: str, phase: str, created: str = T0, node: str | None = "gpu-1", **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase, **status},
    }


def terminated(code: int, reason: str = "Error", message: str = "") -> dict[str, Any]:
    return {
        "containerStatuses": [
            {
                "name": "train",
                "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": reason, "message": message}},
            }
        ]
    }


def waiting(reason: str) -> dict[str, Any]:
    return {
        "containerStatuses": [{"name": "train", "restartCount": 0, "state": {"waiting": {"reason": reason}}}]
    }


def test_new_job_without_pod_is_pending() -> None:
    seen = observe({"spec": {}, "status": {}}, [], queued=False)
    assert (seen.phase, seen.reason) == ("Pending", "JobCreated")


def test_queued_and_suspended() -> None:
    assert observe(job(suspend=True), [], queued=True).phase == "Queued"
    seen = observe(job(suspend=True, conditions=[cond("Suspended", "JobSuspended")]), [], queued=False)
    assert (seen.phase, seen.reason) == ("Suspended", "Suspended")


def test_pending_reasons() -> None:
    unschedulable = pod(
        "p",
        "Pending",
        node=None,
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ],
    )
    seen = observe(job(active=1), [unschedulable], queued=False)
    assert (seen.phase, seen.reason) == ("Pending", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in seen.message
    for reason in ("ImagePullBackOff", "ErrImagePull", "ContainerCreating"):
        seen = observe(job(active=1), [pod("p", "Pending", **waiting(reason))], queued=False)
        assert (seen.phase, seen.reason) == ("Pending", reason)


def test_running_reports_pod_and_node() -> None:
    seen = observe(job(active=1), [pod("p-1", "Running")], queued=False)
    assert (seen.phase, seen.pod_name, seen.node_name, seen.restarts) == ("Running", "p-1", "gpu-1", 0)


def test_restarting_after_a_failed_attempt() -> None:
    pods = [
        pod("p-1", "Failed", **terminated(137, "OOMKilled")),
        pod("p-2", "Pending", created="2025-01-01T10:05:00Z", **waiting("ContainerCreating")),
    ]
    seen = observe(job(failed=1, active=1), pods, queued=False)
    assert (seen.phase, seen.reason, seen.restarts, seen.pod_name) == ("Restarting", "OOMKilled", 1, "p-2")
    evicted = pod(
        "p-1",
        "Failed",
        conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}],
    )
    seen = observe(job(), [evicted], queued=False)
    assert (seen.phase, seen.reason) == ("Restarting", "PreemptionByScheduler")


def test_succeeded_with_completion_time() -> None:
    seen = observe(
        job(conditions=[cond("Complete")], completionTime="2025-01-01T11:02:03Z", succeeded=1),
        [pod("p", "Succeeded")],
        queued=False,
    )
    assert (seen.phase, seen.exit_code) == ("Succeeded", 0)
    assert seen.start_time and seen.completion_time
    assert format_duration((seen.completion_time - seen.start_time).total_seconds()) == "1h2m3s"


def test_failed_by_policy_names_exit_code_and_message_tail() -> None:
    long_message = "line\n" * 400 + "ValueError: bad learning rate"
    pods = [pod("p", "Failed", **terminated(3, message=long_message))]
    seen = observe(
        job(
            conditions=[
                cond(
                    "Failed",
                    "PodFailurePolicy",
                    "Container train for pod x failed with exit code 3 matching FailJob rule at index 1",
                )
            ],
            failed=1,
        ),
        pods,
        queued=False,
    )
    assert (seen.phase, seen.reason, seen.exit_code) == ("Failed", "ExitCode3", 3)
    assert seen.message.endswith("ValueError: bad learning rate")
    assert len(seen.message) < 1200


def test_failed_oom_and_backoff_and_deadline() -> None:
    oom = [pod("p", "Failed", **terminated(137, "OOMKilled"))]
    seen = observe(
        job(
            conditions=[
                cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
            ],
            failed=3,
        ),
        oom,
        queued=False,
    )
    # OOMKilled is retried, so it ends by the backoff limit: the reason names the cause
    assert (seen.phase, seen.reason) == ("Failed", "OOMKilled")
    assert "OOMKilled" in seen.message and "backoff limit" in seen.message and seen.restarts == 3
    seen = observe(job(conditions=[cond("Failed", "PodFailurePolicy")]), oom, queued=False)
    assert seen.reason == "OOMKilled"
    seen = observe(
        job(conditions=[cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]),
        [],
        queued=False,
    )
    assert (seen.phase, seen.reason) == ("Failed", "DeadlineExceeded")
    # Kubernetes 1.31+ says FailureTarget before Failed
    assert observe(job(conditions=[cond("FailureTarget", "DeadlineExceeded")]), [], False).phase == "Failed"


def test_resources_below_module_minimum() -> None:
    module = Module.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "Module",
            "metadata": {"name": "m"},
            "spec": {"image": "x", "metadata": {"resources": {"training": {"gpu": 1, "memory_MB": 8000}}}},
        }
    )
    problem = resource_problem(Resources(memory="1Gi"), module)
    assert problem is not None
    assert "spec.resources.gpu.count" in problem and "spec.resources.memory" in problem
    assert resource_problem(Resources.model_validate({"memory": "8Gi", "gpu": {"count": 1}}), module) is None
