"""TrainingJob on a real cluster: a real Job, real pods, under Pod Security "restricted".

The real Job controller makes the pods, the real scheduler binds them (to a GPU node when they
ask for GPUs), the TTL-after-finished controller deletes finished Jobs; the kubelet stand-in
(tests/harness/node_kubelet.py) plays what the containers do. Each test checks what a user
reads: `kubectl get dtj` (the server's table), status phase/reason/message/conditions, Events.
"""

from __future__ import annotations

import json
import time
from typing import Any

from deep_platform import kube as k
from deep_platform.api import TrainingJob
from tests.harness.node_kubelet import NodeKubelet, Outcome
from tests.harness.operator_fixtures import wait_until

TJ = k.kind_of(TrainingJob)
IMAGE = "busybox:1.36"  # small, runs as any uid: stands in for a module image without DEEPaaS


def trainingjob(name: str, namespace: str, script: str = "echo training", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": IMAGE, "command": ["sh", "-c", script],
                 "resources": {"cpu": "100m", "memory": "64Mi"}, "backoffLimit": 1,
                 "activeDeadlineSeconds": 300, **spec},
    }


def phase(api: k.Kube, name: str, namespace: str, wanted: str, timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = ((api.get(TJ, name, namespace) or {}).get("status")) or {}
        return st if st.get("phase") == wanted else None

    return wait_until(probe, timeout=timeout, interval=0.2, what=f"TrainingJob {name} {wanted}")


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or [] if c["type"] == type_)


def get_dtj(api: k.Kube, namespace: str) -> dict[str, dict[str, Any]]:
    """`kubectl get dtj -o wide`: the server's Table (the CRD's printer columns), by name."""
    response = api._send(
        "GET", TJ.path(namespace), {"includeObject": "None"},
        {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}, None, 10,
    )
    table = json.loads(response.read())
    names = [c["name"] for c in table["columnDefinitions"]]
    return {row["cells"][0]: dict(zip(names, row["cells"], strict=True)) for row in table["rows"]}


def events_of(api: k.Kube, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    """`kubectl describe`'s Events: (type, reason, message) of one object, oldest first."""
    found = api.list(
        k.EVENT, namespace, field_selector=f"involvedObject.kind={kind},involvedObject.name={name}"
    )
    return sorted(found, key=lambda e: (e.get("firstTimestamp") or e.get("eventTime") or ""))


def wait_event(api: k.Kube, namespace: str, kind: str, name: str, reason: str) -> dict[str, Any]:
    return wait_until(
        lambda: next((e for e in events_of(api, namespace, kind, name) if e["reason"] == reason), None),
        timeout=30, interval=0.3, what=f"Event {reason} of {kind} {name}",
    )


def test_training_succeeds_and_deletion_cascades(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    api = e2e_operator.kube
    api.apply(trainingjob("ok", namespace, "echo training; sleep 2"))
    st = phase(api, "ok", namespace, "Succeeded")
    assert st["podName"] and st["nodeName"] and st["duration"].endswith("s")
    assert api.get(k.JOB, "ok", namespace) is not None
    api.delete(TJ, "ok", namespace)
    wait_until(lambda: api.get(k.JOB, "ok", namespace) is None, timeout=120, interval=1,
               what="the Job to be garbage-collected")


def test_gpu_training_is_bound_to_a_gpu_node_runs_and_succeeds(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    api = e2e_operator.kube
    kubelet.decide = lambda pod: Outcome(exit_code=0, after=2.0)
    api.apply(trainingjob("gpu", namespace, resources={"cpu": "1", "memory": "1Gi", "gpu": {"count": 2}}))
    running = phase(api, "gpu", namespace, "Running")
    # the real scheduler chose the node: the only one with whole GPUs (the MIG one has none)
    assert running["nodeName"] == "e2e-gpu-a100", running
    assert running["gpuProduct"] == "NVIDIA-A100-SXM4-80GB" and running["gpus"] == 2
    assert condition(running, "Running")["status"] == "True"
    assert condition(running, "Ready")["status"] == "True"
    pod = api.get(k.POD, running["podName"], namespace)
    assert pod is not None and pod["spec"]["nodeName"] == "e2e-gpu-a100"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    row = get_dtj(api, namespace)["gpu"]
    assert (row["GPUs"], row["Phase"], row["Node"]) == (2, "Running", "e2e-gpu-a100")

    done = phase(api, "gpu", namespace, "Succeeded")
    assert (done["reason"], done["exitCode"], done["nodeName"]) == ("Completed", 0, "e2e-gpu-a100")
    assert done["startTime"] and done["completionTime"] and done["duration"].endswith("s")
    assert condition(done, "Succeeded")["status"] == "True"
    assert condition(done, "Running")["status"] == "False"
    row = get_dtj(api, namespace)["gpu"]
    assert (row["Phase"], row["Duration"], row["Reason"]) == ("Succeeded", done["duration"], "Completed")
    wait_event(api, namespace, "TrainingJob", "gpu", "Succeeded")
    reasons = [e["reason"] for e in events_of(api, namespace, "TrainingJob", "gpu")]
    assert reasons.index("Running") < reasons.index("Succeeded"), reasons


def test_permanent_failure_is_not_retried(e2e_operator: Any, namespace: str, kubelet: NodeKubelet) -> None:
    api = e2e_operator.kube
    kubelet.decide = lambda pod: Outcome(exit_code=3, message="ValueError: bad learning rate")
    api.apply(trainingjob("bad", namespace, "echo 'ValueError: bad learning rate' >&2; exit 3"))
    st = phase(api, "bad", namespace, "Failed")
    assert st["reason"] == "ExitCode3", st
    assert "bad learning rate" in st["message"]
    assert st["restarts"] == 1  # one pod, no retry: exit code 3 is in the FailJob rule
    failed = condition(st, "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "ExitCode3")
    event = wait_event(api, namespace, "TrainingJob", "bad", "ExitCode3")
    assert event["type"] == "Warning" and "bad learning rate" in event["message"]


def test_out_of_memory_fails_with_reason_oomkilled(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    """OOMKilled (137) is retried; when the retries run out the Job says BackoffLimitExceeded,
    and the TrainingJob names the cause the user must fix."""
    api = e2e_operator.kube
    kubelet.decide = lambda pod: Outcome(exit_code=137, reason="OOMKilled", after=0.2)
    api.apply(trainingjob("oom", namespace, backoffLimit=1))
    st = phase(api, "oom", namespace, "Failed")
    job = api.get(k.JOB, "oom", namespace)
    assert job is not None
    job_failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert job_failed["reason"] == "BackoffLimitExceeded"  # what the real Job controller says
    assert st["reason"] == "OOMKilled", st
    assert "out of memory" in st["message"] and "backoff limit" in st["message"], st["message"]
    assert st["exitCode"] == 137 and st["restarts"] == 2  # two pods: the first was retried
    assert condition(st, "Failed")["reason"] == "OOMKilled"
    assert get_dtj(api, namespace)["oom"]["Reason"] == "OOMKilled"
    assert wait_event(api, namespace, "TrainingJob", "oom", "OOMKilled")["type"] == "Warning"


def test_active_deadline_fails_with_deadline_exceeded(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    api = e2e_operator.kube
    kubelet.decide = lambda pod: Outcome(exit_code=None)  # trains until stopped
    api.apply(trainingjob("slow", namespace, activeDeadlineSeconds=2))
    phase(api, "slow", namespace, "Running")
    st = phase(api, "slow", namespace, "Failed")
    assert st["reason"] == "DeadlineExceeded", st
    assert "deadline" in st["message"].lower()
    assert st["completionTime"] and st["duration"]
    # the Job controller deleted the running pod; the stand-in ended it gracefully
    wait_until(lambda: not api.list(k.POD, namespace, label_selector="job-name=slow"), timeout=30,
               interval=0.3, what="the deadline's pod to be deleted")
    assert wait_event(api, namespace, "TrainingJob", "slow", "DeadlineExceeded")["type"] == "Warning"


def test_ttl_deletes_the_job_and_the_training_is_not_run_again(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    api = e2e_operator.kube
    runs: list[str] = []

    def decide(pod: dict[str, Any]) -> Outcome:
        runs.append(pod["metadata"]["name"])
        return Outcome(exit_code=0, after=0.5)

    kubelet.decide = decide
    api.apply(trainingjob("ttl", namespace, ttlSecondsAfterFinished=1))
    done = phase(api, "ttl", namespace, "Succeeded")
    # the real TTL-after-finished controller deletes the Job (and, by GC, its pod)
    wait_until(lambda: api.get(k.JOB, "ttl", namespace) is None, timeout=30, interval=0.2,
               what="the TTL controller to delete the Job")
    wait_until(lambda: not api.list(k.POD, namespace, label_selector="job-name=ttl"), timeout=30,
               interval=0.2, what="the pod to be garbage-collected")
    deadline = time.monotonic() + 4  # the operator must not make the Job again (a second training)
    while time.monotonic() < deadline:
        assert api.get(k.JOB, "ttl", namespace) is None, "the operator recreated the Job: training reran"
        time.sleep(0.2)
    assert len(runs) == 1, runs
    st = api.get(TJ, "ttl", namespace)["status"]
    assert st["phase"] == "Succeeded" and st["reason"] == "Completed"
    for field in ("startTime", "completionTime", "duration", "podName", "nodeName", "exitCode"):
        assert st.get(field) == done.get(field), (field, st, done)
    ready = condition(st, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "JobDeleted")
    assert "ttlSecondsAfterFinished" in ready["message"]
    assert condition(st, "Succeeded")["status"] == "True"
    assert get_dtj(api, namespace)["ttl"]["Phase"] == "Succeeded"


def test_ttl_zero_job_deleted_at_once_still_reads_succeeded(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    """ttlSecondsAfterFinished: 0 may delete the Job before the operator read it finished."""
    api = e2e_operator.kube
    kubelet.decide = lambda pod: Outcome(exit_code=0, after=0.3)
    api.apply(trainingjob("ttl0", namespace, ttlSecondsAfterFinished=0))
    st = phase(api, "ttl0", namespace, "Succeeded")
    wait_until(lambda: api.get(k.JOB, "ttl0", namespace) is None, timeout=30, interval=0.2,
               what="the TTL controller to delete the Job")
    time.sleep(3)
    assert api.get(k.JOB, "ttl0", namespace) is None, "the operator recreated the Job"
    st = api.get(TJ, "ttl0", namespace)["status"]
    assert st["phase"] == "Succeeded" and st["completionTime"], st


def test_suspend_then_resume(e2e_operator: Any, namespace: str, kubelet: NodeKubelet) -> None:
    api = e2e_operator.kube
    kubelet.decide = lambda pod: Outcome(exit_code=0, after=0.5)
    api.apply(trainingjob("susp", namespace, suspend=True))
    st = phase(api, "susp", namespace, "Suspended")
    assert "spec.suspend" in st["message"]
    job = api.get(k.JOB, "susp", namespace)
    assert job is not None and job["spec"]["suspend"] is True
    wait_until(lambda: any(c["type"] == "Suspended" and c["status"] == "True"
                           for c in (api.get(k.JOB, "susp", namespace) or {}).get("status", {})
                           .get("conditions") or []),
               timeout=30, interval=0.2, what="the Job controller to mark the Job Suspended")
    time.sleep(1)
    assert not api.list(k.POD, namespace, label_selector="job-name=susp")  # nothing runs
    assert phase(api, "susp", namespace, "Suspended")["reason"] == "Suspended"
    assert get_dtj(api, namespace)["susp"]["Phase"] == "Suspended"

    api.patch(TJ, "susp", namespace, {"spec": {"suspend": False}})
    st = phase(api, "susp", namespace, "Succeeded")
    assert api.get(k.JOB, "susp", namespace)["spec"]["suspend"] is False
    assert st["duration"]
    reasons = [e["reason"] for e in events_of(api, namespace, "TrainingJob", "susp")]
    assert "Suspended" in reasons and "Succeeded" in reasons, reasons


def test_kueue_queue_name_creates_the_job_suspended_and_keeps_kueues_admission(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    """No Kueue here: the test checks the Job the operator hands to it, then admits it as
    Kueue does (spec.suspend false on the Job)."""
    api = e2e_operator.kube
    kubelet.decide = lambda pod: Outcome(exit_code=0, after=0.5)
    api.apply(trainingjob("queued", namespace, queueName="team-a"))
    st = phase(api, "queued", namespace, "Queued")
    assert "Kueue" in st["message"], st
    job = api.get(k.JOB, "queued", namespace)
    assert job is not None
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True
    assert get_dtj(api, namespace)["queued"]["Phase"] == "Queued"
    time.sleep(1)
    assert not api.list(k.POD, namespace, label_selector="job-name=queued")

    api.patch(k.JOB, "queued", namespace, {"spec": {"suspend": False}})  # Kueue admits it
    st = phase(api, "queued", namespace, "Succeeded")
    job = api.get(k.JOB, "queued", namespace)
    assert job["spec"]["suspend"] is False  # the operator did not take the admission back
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


def test_pods_refused_by_a_quota_are_shown(e2e_operator: Any, namespace: str, kubelet: NodeKubelet) -> None:
    """The Job is accepted, its pods are not: the Job controller only says so in Events
    (FailedCreate); the TrainingJob must say it too instead of `Pending` with Ready=True."""
    api = e2e_operator.kube
    api.request("POST", f"/api/v1/namespaces/{namespace}/resourcequotas", {
        "apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "no-pods", "namespace": namespace}, "spec": {"hard": {"pods": "0"}}})
    api.apply(trainingjob("refused", namespace))
    event = wait_event(api, namespace, "Job", "refused", "FailedCreate")
    assert "exceeded quota" in event["message"]

    def shown() -> dict[str, Any] | None:
        st = (api.get(TJ, "refused", namespace) or {}).get("status") or {}
        return st if st.get("reason") == "FailedCreate" else None

    # re-read 2 s after the Job, doubling: on a busy machine the Event may miss the first reads
    st = wait_until(shown, timeout=60, interval=0.3, what="the TrainingJob to show FailedCreate")
    assert st["phase"] == "Pending"
    assert "exceeded quota: no-pods" in st["message"], st
    ready = condition(st, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "FailedCreate")
    assert "exceeded quota" in ready["message"]
    assert get_dtj(api, namespace)["refused"]["Reason"] == "FailedCreate"
    assert wait_event(api, namespace, "TrainingJob", "refused", "FailedCreate")["type"] == "Warning"

    # the quota is lifted: the Job controller's next try makes the pod, the TrainingJob recovers
    api.request("DELETE", f"/api/v1/namespaces/{namespace}/resourcequotas/no-pods")
    st = phase(api, "refused", namespace, "Succeeded", timeout=60)
    assert condition(st, "Ready")["status"] == "True"


def test_unschedulable_pod_is_shown_without_a_resync(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    """The real scheduler marks the training pod PodScheduled=False (no node has 500 CPUs, a
    request the operator does not check itself): the pod watch brings it, and the status says
    Unschedulable within seconds, long before any resync."""
    assert e2e_operator.config.resync_seconds >= 60
    api = e2e_operator.kube
    started = time.monotonic()
    api.apply(trainingjob("huge", namespace, resources={"cpu": "500", "memory": "64Mi"}))

    def unschedulable() -> dict[str, Any] | None:
        st = ((api.get(TJ, "huge", namespace) or {}).get("status")) or {}
        return st if st.get("reason") == "Unschedulable" else None

    st = wait_until(unschedulable, timeout=20, interval=0.2, what="TrainingJob huge Unschedulable")
    assert time.monotonic() - started < 20
    assert st["phase"] == "Pending" and st["jobName"] == "huge", st
    assert "cpu" in (st.get("message") or ""), st
    assert condition(st, "Running")["reason"] == "Unschedulable"
    wait_event(api, namespace, "TrainingJob", "huge", "Unschedulable")
