"""TrainingJob -> batch/v1 Job running `deepaas-cli train` (or the given command) on GPUs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api.common import Resources
from ..api.module import Module
from ..api.trainingjob import TrainingJob
from ..config import site_settings
from . import pod, storage, trainingjob_progress

CONTAINER_NAME = "train"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: Hash of the Job the operator last applied; equal hash -> nothing to apply (no API write).
SPEC_HASH_ANNOTATION = "deep-hybrid-datacloud.eu/spec-hash"
#: Hash of what the TrainingJob and its Module ask of the pod template (template_inputs).
TEMPLATE_INPUTS_ANNOTATION = "deep-hybrid-datacloud.eu/template-inputs"
#: The parts of a Job's spec that may change after it is made; its pod template may not.
MUTABLE_JOB_FIELDS = ("suspend", "activeDeadlineSeconds", "ttlSecondsAfterFinished")
#: TrainingJob spec fields that reach only those mutable parts
_MUTABLE_SPEC_FIELDS = {"suspend", "active_deadline_seconds", "ttl_seconds_after_finished"}
#: Exit codes that fail the Job at once unless spec.nonRetryableExitCodes says otherwise.
DEFAULT_NON_RETRYABLE = list(range(1, 128))
TERMINATION_LOG = "/dev/termination-log"


def job_name(tj: TrainingJob) -> str:
    return tj.name


def training_image(tj: TrainingJob, module: Module | None) -> str:
    return pod.workload_image(tj, module)


def training_resources(tj: TrainingJob, module: Module | None) -> Resources | None:
    return pod.workload_resources(tj, module, "training")


def gpu_count(resources: Resources | None) -> int:
    return resources.gpu.count if resources is not None and resources.gpu is not None else 0


def _literal(value: Any) -> str:
    """A Python literal, as deepaas-cli parses List and Dict options with ast.literal_eval."""
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


FINISHED_PHASES = ("Succeeded", "Failed")


def hyperparameter_value(value: Any) -> str:
    """One value as deepaas-cli reads it: true/false, Python literals for lists and maps."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return _literal(value)
    return str(value)


def train_command(tj: TrainingJob) -> tuple[list[str], list[str]]:
    """Command and args of the training container.

    Hyperparameters go after `train` as `--name=value` (one argv item each, so values with
    spaces or a leading dash survive).
    """
    if tj.spec.command is not None:
        return list(tj.spec.command), list(tj.spec.args or [])
    args = ["train"]
    for name in sorted(tj.spec.hyperparameters):
        args.append(f"--{name}={hyperparameter_value(tj.spec.hyperparameters[name])}")
    return ["deepaas-cli"], args + list(tj.spec.args or [])


def training_env(tj: TrainingJob, module: Module | None) -> list[dict[str, Any]]:
    if tj.spec.command is not None:  # not a DEEPaaS run: the model variable means nothing
        return pod.env_list(tj.spec.env)
    return pod.deepaas_env(tj.spec.env, module.spec.model if module is not None else None)


def pod_failure_policy(tj: TrainingJob) -> dict[str, Any]:
    """Fail at once on permanent failures; never count evictions and preemptions."""
    rules: list[dict[str, Any]] = [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    ]
    codes = tj.spec.non_retryable_exit_codes
    codes = DEFAULT_NON_RETRYABLE if codes is None else codes
    if codes:
        rules.append(
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": CONTAINER_NAME, "operator": "In", "values": codes},
            }
        )
    return {"rules": rules}


def job_suspended(tj: TrainingJob, live_job: dict[str, Any] | None) -> bool:
    """spec.suspend, or Kueue's say: a queued Job starts suspended and Kueue resumes it.

    Once the Job exists, its live value is kept for queued jobs so the operator never takes
    an admission back from Kueue.
    """
    if tj.spec.suspend:
        return True
    if not tj.spec.queue_name:
        return False
    if live_job is None:
        return True
    return bool((live_job.get("spec") or {}).get("suspend", True))


def add_pod_parts(tj: TrainingJob, pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
    """The one place where other features add to the training pod (storage init containers,
    volumes and mounts go here), after the base pod is complete."""
    # WebDAV storage: copy in before training, results copied back however it ends
    parts = storage.build_storage(tj, tj.spec.storage, site_settings(), upload_results=True)
    parts.apply_to(pod_spec, container)
    # progress: the endpoint's URL and token; the stdout collector when asked
    trainingjob_progress.add_progress_parts(tj, pod_spec, container, site_settings())


def spec_hash(job: dict[str, Any]) -> str:
    text = json.dumps(job, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def template_inputs(tj: TrainingJob, module: Module | None) -> str:
    """A hash of what the user asks of the pod template: the TrainingJob's spec (but the fields
    a running Job may still change) and what its Module adds. A new operator release that
    renders the same request differently (a new env var, another sidecar) leaves it equal, so a
    running Job, whose template is immutable, is not flagged as refusing a change nobody made."""
    resources = training_resources(tj, module)
    asked = {
        "spec": tj.spec.model_dump(mode="json", exclude=_MUTABLE_SPEC_FIELDS, exclude_none=True),
        "image": training_image(tj, module),
        "resources": resources.model_dump(mode="json", exclude_none=True) if resources else None,
        "model": module.spec.model if module is not None else None,
    }
    text = json.dumps(asked, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mutable_part(job: dict[str, Any]) -> dict[str, Any]:
    """A merge patch bringing a live Job to `job` in all a Job lets change after it is made
    (None removes a field): its labels and annotations and MUTABLE_JOB_FIELDS."""
    meta = job["metadata"]
    return {
        "metadata": {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}},
        "spec": {name: job["spec"].get(name) for name in MUTABLE_JOB_FIELDS},
    }


def same_request(live: dict[str, Any], desired: dict[str, Any]) -> bool:
    """The live Job was made for what `desired` asks, only rendered by another release. A Job
    from a release before template inputs were recorded counts as one: it was made from the
    TrainingJob as it is unless the spec changed during the upgrade."""
    made_for = ((live.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_INPUTS_ANNOTATION)
    return made_for is None or made_for == desired["metadata"]["annotations"][TEMPLATE_INPUTS_ANNOTATION]


def outcome_recorded(tj: TrainingJob) -> bool:
    """The TrainingJob's stored status says how the training ended."""
    return tj.status.phase in FINISHED_PHASES


def build_job(
    tj: TrainingJob, module: Module | None, live_job: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The Job that runs the training; owned by the TrainingJob so deletion cascades."""
    resources = training_resources(tj, module)
    module_name = tj.spec.module
    labels = pod.labels(tj, "training", module_name)
    command, args = train_command(tj)
    shm_volume, shm_mount = pod.shm_volume(resources)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": training_image(tj, module),
        "command": command,
        "args": args,
        "env": training_env(tj, module),
        "resources": pod.resource_requirements(resources),
        "volumeMounts": [shm_mount],
        "securityContext": pod.container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        # the log tail explains a crash when the program wrote no termination message
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec = pod.workload_pod_spec(tj, container, resources, [shm_volume])
    pod_spec["restartPolicy"] = "Never"  # retries are new pods, counted by the Job (and its policy)
    if tj.spec.priority_class_name:
        pod_spec["priorityClassName"] = tj.spec.priority_class_name
    add_pod_parts(tj, pod_spec, container)
    job_labels = dict(labels)
    if tj.spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = tj.spec.queue_name
    job_spec: dict[str, Any] = {
        "backoffLimit": tj.spec.backoff_limit,
        "suspend": job_suspended(tj, live_job),
        "podFailurePolicy": pod_failure_policy(tj),
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if tj.spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = tj.spec.active_deadline_seconds
    if tj.spec.ttl_seconds_after_finished is not None and outcome_recorded(tj):
        # handed to the TTL controller only once the status holds the outcome: a Job deleted
        # while the operator was away would otherwise take the outcome with it, and the
        # training would look unfinished and run again
        job_spec["ttlSecondsAfterFinished"] = tj.spec.ttl_seconds_after_finished
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": pod.child_metadata(tj, job_labels, job_name(tj)),
        "spec": job_spec,
    }
    job["metadata"]["annotations"] = {
        SPEC_HASH_ANNOTATION: spec_hash(job),
        TEMPLATE_INPUTS_ANNOTATION: template_inputs(tj, module),
    }
    return job
