"""TrainingJob -> batch/v1 Job running `deepaas-cli train` (or the given command) on GPUs."""

from __future__ import annotations

import json
from typing import Any

from ..api.module import Module
from ..api.trainingjob import TrainingJob
from . import pod

CONTAINER_NAME = "train"


def job_name(tj: TrainingJob) -> str:
    return tj.name


def training_image(tj: TrainingJob, module: Module | None) -> str:
    if tj.spec.image:
        return tj.spec.image
    if module is None:
        raise ValueError(f"TrainingJob {tj.name} names no image and its Module is unknown")
    return module.spec.image


def training_resources(tj: TrainingJob, module: Module | None) -> Any:
    if tj.spec.resources is not None:
        return tj.spec.resources
    if module is not None and module.spec.resources is not None:
        return module.spec.resources.training
    return None


def hyperparameter_value(value: Any) -> str:
    """How deepaas-cli reads a value: JSON for lists and maps, lowercase booleans, else text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def train_command(tj: TrainingJob) -> tuple[list[str], list[str]]:
    """Command and args of the training container."""
    if tj.spec.command is not None:
        return list(tj.spec.command), list(tj.spec.args or [])
    args = ["train"]
    for name in sorted(tj.spec.hyperparameters):
        args += [f"--{name}", hyperparameter_value(tj.spec.hyperparameters[name])]
    return ["deepaas-cli"], args + list(tj.spec.args or [])


def build_job(tj: TrainingJob, module: Module | None) -> dict[str, Any]:
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
        "env": pod.env_list(tj.spec.env),
        "resources": pod.resource_requirements(resources),
        "volumeMounts": [shm_mount],
        "securityContext": pod.container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod.pod_security_context(),
        "containers": [container],
        "volumes": [shm_volume],
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if tj.spec.node_selector:
        pod_spec["nodeSelector"] = dict(tj.spec.node_selector)
    tolerations = pod.tolerations_list(tj.spec.tolerations, resources)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    affinity = pod.gpu_affinity(resources)
    if affinity:
        pod_spec["affinity"] = affinity
    if tj.spec.priority_class_name:
        pod_spec["priorityClassName"] = tj.spec.priority_class_name
    job_labels = dict(labels)
    if tj.spec.queue_name:
        job_labels["kueue.x-k8s.io/queue-name"] = tj.spec.queue_name
    job_spec: dict[str, Any] = {
        "backoffLimit": tj.spec.backoff_limit,
        "suspend": tj.spec.suspend or bool(tj.spec.queue_name),
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if tj.spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = tj.spec.active_deadline_seconds
    if tj.spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = tj.spec.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(tj),
            "namespace": tj.namespace,
            "labels": job_labels,
            "ownerReferences": [tj.owner_reference()],
        },
        "spec": job_spec,
    }
