"""TrainingJob in the emulator: the test plays the Job controller and the kubelet."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from deep_platform import kube as k
from deep_platform.api import Module, TrainingJob
from deep_platform.builders.module import INDEX_HEAD
from deep_platform.config import site_settings
from tests.harness.operator_fixtures import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TJ = k.kind_of(TrainingJob)
MODULES = k.kind_of(Module)
NS = "default"
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def trainingjob(name: str = "retrain", **spec: Any) -> dict[str, Any]:
    body = example("trainingjob.yaml")
    body["metadata"]["name"] = name
    body["spec"].pop("storage", None)  # storage has its own tests
    body["spec"].update(spec)
    return body


def module(name: str = "phyto-plankton-classification", **spec: Any) -> dict[str, Any]:
    body = example("module.yaml")
    body["metadata"]["name"] = name
    body["spec"].update(spec)
    return body


def status(operator: Any, name: str = "retrain") -> dict[str, Any]:
    return (operator.kube.get(TJ, name, NS) or {}).get("status") or {}


#: a Job made for the TrainingJob: on a real server with no node that fits, the scheduler marks
#: its pod at once and the reason moves on from JobCreated to Unschedulable
JOB_MADE = ("JobCreated", "Unschedulable")


def wait_phase(operator: Any, phase: str, reason: str | None = None, name: str = "retrain") -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = status(operator, name)
        ok = st.get("phase") == phase and (reason is None or st.get("reason") == reason)
        return st if ok else None

    try:
        return wait_until(probe, 10, what=f"phase {phase} {reason or ''}")
    except AssertionError as exc:
        raise AssertionError(f"{exc} (now {status(operator, name)})") from None


def wait_job_made(operator: Any, name: str = "retrain") -> dict[str, Any]:
    """The TrainingJob's Job exists and the status names it."""
    return wait_until(
        lambda: (st := status(operator, name)).get("jobName") == name and st.get("reason") in JOB_MADE and st,
        10, what=f"the Job of {name}",
    )


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == type_)


def play_pod(apiserver: Any, job: dict[str, Any], name: str, pod_status: dict[str, Any]) -> None:
    """What the Job controller and the kubelet would do: a pod owned by the Job, then its status."""
    template = job["spec"]["template"]
    if apiserver.get("pods", NS, name) is None:
        apiserver.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": NS,
                    "labels": {**template["metadata"]["labels"], "job-name": job["metadata"]["name"]},
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": job["metadata"]["name"],
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": copy.deepcopy(template["spec"]),
            }
        )
    apiserver.patch_status("pods", NS, name, pod_status)


def events_for(apiserver: Any, name: str) -> list[tuple[str, str]]:
    return [
        (e["reason"], e["type"])
        for e in apiserver.list("events", NS)
        if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == "TrainingJob"
    ]


@pytest.mark.emulator_only(
    "writes Job and pod status as the Job controller and kubelet would; a real server's Job "
    "controller owns them (tests/e2e/test_trainingjob_e2e.py runs this story there)"
)
def test_lifecycle_from_creation_to_success(apiserver: Any, operator: Any) -> None:
    operator.kube.create(module())
    operator.kube.create(trainingjob())
    st = wait_phase(operator, "Pending", "JobCreated")
    assert condition(st, "Ready")["status"] == "True" and st["jobName"] == "retrain" and st["gpus"] == 1
    job = apiserver.get("jobs", NS, "retrain")
    assert job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

    apiserver.patch_status("jobs", NS, "retrain", {"active": 1, "startTime": "2025-01-01T10:00:00Z"})
    play_pod(
        apiserver,
        job,
        "retrain-a",
        {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    )
    st = wait_phase(operator, "Pending", "Unschedulable")
    assert "Insufficient nvidia.com/gpu" in st["message"]

    apiserver.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}},
        }
    )
    apiserver.patch("pods", NS, "retrain-a", {"spec": {"nodeName": "gpu-1"}})
    play_pod(
        apiserver,
        job,
        "retrain-a",
        {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "train", "restartCount": 0, "state": {"running": {}}}],
        },
    )
    st = wait_phase(operator, "Running")
    assert (st["podName"], st["nodeName"], st["gpuProduct"]) == (
        "retrain-a",
        "gpu-1",
        "NVIDIA-A100-SXM4-80GB",
    )
    assert condition(st, "Running")["status"] == "True"

    apiserver.patch_status(
        "jobs",
        NS,
        "retrain",
        {
            "active": 0,
            "succeeded": 1,
            "completionTime": "2025-01-01T11:02:03Z",
            "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": "2025-01-01T11:02:03Z"}
            ],
        },
    )
    st = wait_phase(operator, "Succeeded")
    assert st["duration"] == "1h2m3s" and condition(st, "Succeeded")["status"] == "True"
    wait_until(lambda: ("Succeeded", "Normal") in events_for(apiserver, "retrain"), 5)
    reasons = [reason for reason, _ in events_for(apiserver, "retrain")]
    # one Event per transition (the pod's brief ContainerCreating may show up too), none twice
    assert {"JobCreated", "Unschedulable", "Running", "Succeeded"} <= set(reasons), reasons
    assert len(reasons) == len(set(reasons)), reasons


@pytest.mark.emulator_only(
    "writes a failed Job status without FailureTarget, which a real server refuses; "
    "tests/e2e/test_trainingjob_e2e.py runs this story there"
)
def test_failure_by_exit_code_shows_reason_and_message(apiserver: Any, operator: Any) -> None:
    operator.kube.create(module())
    operator.kube.create(trainingjob())
    wait_phase(operator, "Pending", "JobCreated")
    job = apiserver.get("jobs", NS, "retrain")
    play_pod(
        apiserver,
        job,
        "retrain-a",
        {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "train",
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 3,
                            "reason": "Error",
                            "message": "Traceback...\nValueError: lr must be > 0",
                        }
                    },
                }
            ],
        },
    )
    apiserver.patch_status(
        "jobs",
        NS,
        "retrain",
        {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "PodFailurePolicy",
                    "message": "Container train for pod default/retrain-a failed with exit code 3 "
                    "matching FailJob rule",
                    "lastTransitionTime": "2025-01-01T10:00:05Z",
                }
            ],
            "startTime": "2025-01-01T10:00:00Z",
        },
    )
    st = wait_phase(operator, "Failed", "ExitCode3")
    assert st["message"].endswith("ValueError: lr must be > 0") and st["exitCode"] == 3
    assert st["duration"] == "5s"
    assert condition(st, "Failed")["status"] == "True"
    wait_until(lambda: ("ExitCode3", "Warning") in events_for(apiserver, "retrain"), 5)


def test_missing_module_recovers_when_module_appears(apiserver: Any, operator: Any) -> None:
    operator.kube.create(trainingjob())
    st = wait_phase(operator, "Pending", "ModuleNotFound")
    assert condition(st, "Ready")["status"] == "False"
    assert apiserver.get("jobs", NS, "retrain") is None
    operator.kube.create(module())
    # the Module watch wakes the TrainingJob: no waiting for the resync
    wait_job_made(operator)
    assert apiserver.get("jobs", NS, "retrain") is not None


def test_module_not_trainable_is_refused(apiserver: Any, operator: Any) -> None:
    operator.kube.create(module(capabilities={"trainable": False, "servable": True}))
    operator.kube.create(trainingjob())
    st = wait_phase(operator, "Pending", "ModuleNotTrainable")
    assert "spec.capabilities.trainable" in st["message"]
    assert apiserver.get("jobs", NS, "retrain") is None


def test_gpu_product_no_node_has_then_spec_fixed(apiserver: Any, operator: Any) -> None:
    apiserver.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "gpu-1",
                "labels": {"nvidia.com/gpu.product": "Tesla-T4", "nvidia.com/gpu.count": "1"},
            },
            "status": {"allocatable": {"nvidia.com/gpu": "1"}},
        }
    )
    operator.kube.create(module())
    operator.kube.create(trainingjob())  # asks for an A100
    st = wait_phase(operator, "Pending", "Unschedulable")
    assert "NVIDIA-A100-SXM4-80GB" in st["message"] and "Tesla-T4" in st["message"]
    assert apiserver.get("jobs", NS, "retrain") is None
    operator.kube.patch(TJ, "retrain", NS, {"spec": {"resources": {"gpu": {"product": "Tesla-T4"}}}})
    wait_job_made(operator)
    job = apiserver.get("jobs", NS, "retrain")
    affinity = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    assert affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"
    ][0]["values"] == ["Tesla-T4"]


def test_suspend_and_resume(apiserver: Any, operator: Any) -> None:
    operator.kube.create(module())
    operator.kube.create(trainingjob())
    wait_job_made(operator)
    operator.kube.patch(TJ, "retrain", NS, {"spec": {"suspend": True}})
    wait_until(lambda: apiserver.get("jobs", NS, "retrain")["spec"]["suspend"] is True, 5)
    apiserver.patch_status(
        "jobs",
        NS,
        "retrain",
        {
            "conditions": [
                {
                    "type": "Suspended",
                    "status": "True",
                    "reason": "JobSuspended",
                    "lastTransitionTime": "2025-01-01T10:00:00Z",
                }
            ]
        },
    )
    wait_phase(operator, "Suspended")
    operator.kube.patch(TJ, "retrain", NS, {"spec": {"suspend": False}})
    wait_until(lambda: apiserver.get("jobs", NS, "retrain")["spec"]["suspend"] is False, 5)


@pytest.mark.emulator_only(
    "expects JobCreated once admitted, with no scheduler; on a real server the pod is then "
    "Unschedulable (no nodes) — tests/e2e/test_trainingjob_e2e.py runs it with nodes"
)
def test_kueue_queue_creates_suspended_job_and_keeps_admission(apiserver: Any, operator: Any) -> None:
    operator.kube.create(module())
    operator.kube.create(trainingjob(queueName="gpu"))
    wait_phase(operator, "Queued")
    job = apiserver.get("jobs", NS, "retrain")
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"
    apiserver.patch("jobs", NS, "retrain", {"spec": {"suspend": False}})  # Kueue admits it
    wait_phase(operator, "Pending", "JobCreated")
    assert apiserver.get("jobs", NS, "retrain")["spec"]["suspend"] is False


@pytest.mark.emulator_only("counts the writes in the emulator's request log")
def test_no_writes_when_nothing_changed_and_deletion_cascades(apiserver: Any, operator: Any) -> None:
    from deep_platform.controllers import runtime
    from deep_platform.controllers.trainingjob import wake

    operator.kube.create(module())
    operator.kube.create(trainingjob())
    wait_phase(operator, "Pending", "JobCreated")
    job = apiserver.get("jobs", NS, "retrain")
    play_pod(
        apiserver,
        job,
        "retrain-a",
        {
            "phase": "Running",
            "containerStatuses": [{"name": "train", "restartCount": 0, "state": {"running": {}}}],
        },
    )
    wait_phase(operator, "Running")
    wait_until(lambda: ("Running", "Normal") in events_for(apiserver, "retrain"), 5)
    # the Module's catalogue index is written in the background: let it land first
    wait_until(lambda: apiserver.get("configmaps", "deep-platform", INDEX_HEAD), 10, what="index")
    settled = len(apiserver.requests_log)
    for _ in range(3):  # what a resync does, three times over, plus a child event
        wake(runtime.current(), (NS, "retrain"))
    apiserver.patch("jobs", NS, "retrain", {"metadata": {"labels": {"touched": "yes"}}})
    wait_until(
        lambda: any(c.verb == "list" and c.resource == "pods" for c in apiserver.requests_log[settled:]), 5
    )
    writes = [c for c in apiserver.requests_log[settled:] if c.verb in WRITES]
    assert writes == [], writes
    gets = [c for c in apiserver.requests_log[settled:] if c.verb == "get" and c.resource == "trainingjobs"]
    assert len(gets) >= 3  # the resyncs did run

    operator.kube.delete(TJ, "retrain", NS)
    wait_until(lambda: apiserver.get("jobs", NS, "retrain") is None, 10, what="the Job to go with its owner")


def test_a_strangers_job_with_the_name_is_left_alone(apiserver: Any, operator: Any) -> None:
    """The Job is made with a plain create on first sight: a 409 must not become an adoption."""
    stranger = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "retrain", "namespace": NS, "labels": {"app": "someone-else"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                }
            }
        },
    }
    before = operator.kube.create(stranger)
    operator.kube.create(module())
    operator.kube.create(trainingjob())
    st = wait_phase(operator, "Pending", "JobNameTaken")
    assert "delete it or rename the TrainingJob" in st["message"] and not st.get("jobName")
    job = apiserver.get("jobs", NS, "retrain")
    # what the operator would have written (a real Job controller writes the status meanwhile)
    assert job["metadata"].get("labels") == before["metadata"].get("labels") == {"app": "someone-else"}
    assert not job["metadata"].get("ownerReferences") and not job["metadata"].get("annotations")
    assert job["spec"]["template"]["spec"]["containers"] == before["spec"]["template"]["spec"]["containers"]


def test_a_field_removed_from_the_spec_leaves_the_created_job(apiserver: Any, operator: Any) -> None:
    """Fields the first create set are removed too (apply alone would keep them: the create's
    ownership is recorded under an Update entry)."""
    operator.kube.create(module())
    operator.kube.create(trainingjob(activeDeadlineSeconds=600, backoffLimit=2))
    wait_job_made(operator)
    assert apiserver.get("jobs", NS, "retrain")["spec"]["activeDeadlineSeconds"] == 600
    operator.kube.patch(TJ, "retrain", NS, {"spec": {"activeDeadlineSeconds": None}})
    wait_until(lambda: "activeDeadlineSeconds" not in apiserver.get("jobs", NS, "retrain")["spec"], 10)
    job = apiserver.get("jobs", NS, "retrain")
    assert job["spec"]["backoffLimit"] == 2  # what the spec still says stays
    assert status(operator)["conditions"] and condition(status(operator), "Ready")["status"] == "True"


def test_a_job_refused_by_a_quota_is_reported_and_retried(
    apiserver: Any, operator: Any, monkeypatch: Any
) -> None:
    """No watch event says a quota was raised: the refusal is in the status and retried."""
    from deep_platform.controllers import retry

    monkeypatch.setattr(retry.backoff, "first", 0.2)
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "jobs", "namespace": NS},
        "spec": {"hard": {"count/jobs.batch": "0"}},
    }
    apiserver.create(quota)
    operator.kube.create(module())
    operator.kube.create(trainingjob())
    st = wait_phase(operator, "Pending", "JobRejected")
    assert "exceeded quota: jobs" in st["message"] and "ask the site admin to raise it" in st["message"]
    assert condition(st, "Ready")["status"] == "False"
    assert ("JobRejected", "Warning") in events_for(apiserver, "retrain")
    assert apiserver.get("jobs", NS, "retrain") is None
    apiserver.patch("resourcequotas", NS, "jobs", {"spec": {"hard": {"count/jobs.batch": "1"}}})
    # a real server admits by the quota's status, which its quota controller recomputes a moment
    # later; there, with no node, the new Job's pod is soon Unschedulable rather than JobCreated
    st = wait_until(lambda: (s := status(operator)).get("jobName") == "retrain" and s, 30, what="the Job")
    assert condition(st, "Ready")["status"] == "True" and st["reason"] in ("JobCreated", "Unschedulable")


def test_a_new_release_rendering_the_pod_differently_leaves_a_running_job_alone(
    apiserver: Any, operator: Any, monkeypatch: Any
) -> None:
    """An operator upgrade that changes how pods are built (here: the progress endpoint's URL in
    the pod's env) must not flag running trainings as refusing a change nobody made (a Job's pod
    template is immutable); what a Job lets change still reaches it."""
    operator.kube.create(module())
    operator.kube.create(trainingjob())
    wait_job_made(operator)
    before = apiserver.get("jobs", NS, "retrain")["spec"]["template"]
    monkeypatch.setenv("DEEP_PROGRESS_URL", "http://progress.elsewhere.svc:8090")
    site_settings.cache_clear()
    try:
        operator.kube.patch(TJ, "retrain", NS, {"spec": {"activeDeadlineSeconds": 3600}})
        spec = lambda: apiserver.get("jobs", NS, "retrain")["spec"]  # noqa: E731
        wait_until(lambda: spec().get("activeDeadlineSeconds") == 3600, 10, what="the new deadline")
        assert apiserver.get("jobs", NS, "retrain")["spec"]["template"] == before
        wait_until(lambda: status(operator).get("observedGeneration") == 2, 10, what="generation 2 observed")
        ready = condition(status(operator), "Ready")
        assert ready["reason"] != "JobUpdateRejected", ready

        # a change the user asks of the pod is still refused by the running Job, and said
        operator.kube.patch(TJ, "retrain", NS, {"spec": {"image": "deephdc/other:1.0"}})
        wait_until(lambda: status(operator).get("observedGeneration") == 3, 10, what="generation 3 observed")
        if spec()["template"] == before:  # a real server refuses the new template
            assert condition(status(operator), "Ready")["reason"] == "JobUpdateRejected"
        else:  # the emulator does not know templates are immutable: the change was applied
            assert spec()["template"]["spec"]["containers"][0]["image"] == "deephdc/other:1.0"
    finally:
        monkeypatch.delenv("DEEP_PROGRESS_URL")
        site_settings.cache_clear()
