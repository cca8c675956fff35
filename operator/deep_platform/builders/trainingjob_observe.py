"""What a training Job and its pods say, read into a TrainingJob's phase, reason and figures.

The pure "observe" step of the TrainingJob controller (no API calls): unit-tested like the
builder beside it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from ..api import Module
from ..api.common import Resources
from ..errors import tail
from .pod import quantity_to_mebibytes
from .trainingjob import CONTAINER_NAME, gpu_count


@dataclass
class Observation:
    """The Job's state in the words of the status: phase, reason, message and facts."""

    phase: str
    reason: str
    message: str = ""
    pod_name: str | None = None
    node_name: str | None = None
    restarts: int = 0
    exit_code: int | None = None
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def true_conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = (obj.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in found if c.get("status") == "True"}


def _created(pod: dict[str, Any]) -> tuple[str, str]:
    meta = pod.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((s for s in statuses if s.get("name") == CONTAINER_NAME), statuses[0] if statuses else {})


def _terminated(pod: dict[str, Any] | None) -> dict[str, Any] | None:
    if pod is None:
        return None
    state = _container(pod)
    return (state.get("state") or {}).get("terminated") or (state.get("lastState") or {}).get("terminated")


def failure_reason(terminated: dict[str, Any] | None) -> str | None:
    """OOMKilled, ExitCode<N>, or None when the container did not end."""
    if not terminated:
        return None
    if terminated.get("reason") == "OOMKilled":
        return "OOMKilled"
    return f"ExitCode{terminated.get('exitCode', 0)}"


def _describe_end(terminated: dict[str, Any]) -> str:
    code = terminated.get("exitCode")
    what = f"the {CONTAINER_NAME} container exited with code {code}"
    if terminated.get("reason") == "OOMKilled":
        what = f"the {CONTAINER_NAME} container ran out of memory (OOMKilled, exit code {code})"
    message = tail(terminated.get("message"))
    return f"{what}: {message}" if message else what


def _disruption(pod: dict[str, Any]) -> str | None:
    condition = true_conditions(pod).get("DisruptionTarget")
    if condition is not None:
        return str(condition.get("reason") or "Evicted")
    if (pod.get("status") or {}).get("reason") == "Evicted":
        return "Evicted"
    return None


def pending_reason(pod: dict[str, Any]) -> tuple[str, str]:
    """Why a pod is not running yet: Unschedulable, ImagePullBackOff, ContainerCreating..."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("reason") or "Unschedulable"), str(condition.get("message") or "")
    for state in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (state.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "PodInitializing"):
            return str(waiting["reason"]), str(waiting.get("message") or "")
    if status.get("initContainerStatuses"):
        return "PodInitializing", ""
    return "ContainerCreating", ""


def observe(job: dict[str, Any], pods: list[dict[str, Any]], queued: bool) -> Observation:
    """The phase machine: Job and pod status -> what people read. Pure."""
    job_status = job.get("status") or {}
    conditions = true_conditions(job)
    pods = sorted(pods, key=_created)
    latest = pods[-1] if pods else None
    # the attempt that ended last: creation times have second precision, so a retry created in
    # the same second as the pod it replaces would sort by its random name
    failed_pods = sorted(
        (p for p in pods if (p.get("status") or {}).get("phase") == "Failed"),
        key=lambda p: (str((_terminated(p) or {}).get("finishedAt") or _created(p)[0]), _created(p)[1]),
    )
    last_failed = failed_pods[-1] if failed_pods else None
    # pods the Job controller has not counted yet (FailureTarget comes before the count)
    uncounted = (job_status.get("uncountedTerminatedPods") or {}).get("failed") or []
    failures = max(
        int(job_status.get("failed") or 0) + len(uncounted),
        sum(1 for p in failed_pods if not _disruption(p)),  # disruptions are not counted
    )
    restarts = failures + sum(
        int(s.get("restartCount") or 0)
        for s in (latest or {}).get("status", {}).get("containerStatuses") or []
    )
    base = {
        "pod_name": (latest or {}).get("metadata", {}).get("name"),
        "node_name": (latest or {}).get("spec", {}).get("nodeName"),
        "restarts": restarts,
        "start_time": _time(job_status.get("startTime")),
    }
    succeeded = conditions.get("Complete") or conditions.get("SuccessCriteriaMet")
    if succeeded is not None:
        end = _time(job_status.get("completionTime")) or _time(succeeded.get("lastTransitionTime"))
        return Observation(
            "Succeeded", "Completed", "training finished", exit_code=0, completion_time=end, **base
        )
    failed = conditions.get("Failed") or conditions.get("FailureTarget")
    if failed is not None:
        ended = _terminated(last_failed or latest)
        reason = str(failed.get("reason") or "Failed")
        if reason == "PodFailurePolicy" and ended:
            reason = failure_reason(ended) or reason  # the policy only repeats the exit code
        elif reason == "BackoffLimitExceeded" and ended and ended.get("reason") == "OOMKilled":
            # OOMKilled (exit code 137) is retried, so an out-of-memory training ends by the
            # backoff limit: name the cause that the user fixes (more memory), not the count
            reason = "OOMKilled"
        message = str(failed.get("message") or "")
        if ended:
            message = (
                _describe_end(ended) if not message else f"{message}; last attempt: {_describe_end(ended)}"
            )
        return Observation(
            "Failed",
            reason,
            message,
            exit_code=(ended or {}).get("exitCode"),
            completion_time=_time(failed.get("lastTransitionTime")),
            **base,
        )
    if (job.get("spec") or {}).get("suspend") or "Suspended" in conditions:
        if queued:
            return Observation("Queued", "Queued", "waiting for Kueue to admit the job", **base)
        return Observation(
            "Suspended", "Suspended", "spec.suspend is true; set it to false to resume", **base
        )
    phase = (latest or {}).get("status", {}).get("phase")
    if phase in ("Running", "Succeeded"):
        where = f" on node {base['node_name']}" if base["node_name"] else ""
        return Observation("Running", "Running", f"pod {base['pod_name']} runs{where}", **base)
    if failures or phase == "Failed":
        previous = last_failed
        disruption = _disruption(previous) if previous else None
        ended = _terminated(previous)
        reason = disruption or failure_reason(ended) or "PodFailed"
        message = f"attempt {failures + 1}: previous pod " + (
            f"was disrupted ({disruption})" if disruption else _describe_end(ended) if ended else "failed"
        )
        return Observation("Restarting", reason, message, **base)
    if latest is not None:
        reason, detail = pending_reason(latest)
        return Observation(
            "Pending", reason, tail(detail) or f"pod {base['pod_name']} is not running yet", **base
        )
    return Observation("Pending", "JobCreated", "waiting for the Job controller to create the pod", **base)


def finished(job: dict[str, Any]) -> bool:
    """Whether the Job ended (succeeded or failed) for good."""
    return bool(set(true_conditions(job)) & {"Complete", "SuccessCriteriaMet", "Failed", "FailureTarget"})


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"


# --- why a TrainingJob cannot get a Job --------------------------------------------------------


def resource_problem(resources: Resources | None, module: Module | None) -> str | None:
    """Requests below the minimum the Module's AI4 metadata says training needs."""
    if module is None or resources is None:
        return None
    needs = ((module.spec.metadata.get("resources") or {}).get("training")) or {}
    if not isinstance(needs, dict):
        return None
    problems = []
    gpus = gpu_count(resources)
    if int(needs.get("gpu") or 0) > gpus:
        problems.append(f"spec.resources.gpu.count is {gpus}; the module needs at least {needs['gpu']} GPU")
    if needs.get("memory_MB") and resources.memory is not None:
        have = quantity_to_mebibytes(resources.memory) * 2**20 / 1e6
        if have < int(needs["memory_MB"]):
            problems.append(
                f"spec.resources.memory is {resources.memory}; the module needs at least "
                f"{needs['memory_MB']} MB"
            )
    if needs.get("gpu_memory_MB") and gpus and resources.gpu and resources.gpu.min_memory is not None:
        have = quantity_to_mebibytes(resources.gpu.min_memory) * 2**20 / 1e6
        if have < int(needs["gpu_memory_MB"]):
            problems.append(
                f"spec.resources.gpu.minMemory is {resources.gpu.min_memory}; the module needs "
                f"GPUs with at least {needs['gpu_memory_MB']} MB"
            )
    if not problems:
        return None
    return "; ".join(problems) + f" (Module {module.name}, metadata.resources.training); raise the request"


# --- in-memory bookkeeping (only saves API calls; all truth is in the API) ---------------------
