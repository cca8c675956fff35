"""InferenceService -> Deployment running `deepaas-run` and the Service in front of it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api.common import Resources
from ..api.inferenceservice import InferenceService
from ..api.module import Module
from ..config import site_settings
from . import pod, storage

DEEPAAS_PORT = 5000
CONTAINER_NAME = "deepaas"
READINESS_PATH = "/v2/models/"
#: pod-template annotation: a hash of the template, the "version" prewarming and status follow
VERSION_ANNOTATION = "deep-hybrid-datacloud.eu/version"
SERVICE_PORT = 80


def template_version(template: dict[str, Any]) -> str:
    """A short stable hash of a pod template (before the API server adds its defaults)."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def serving_image(isvc: InferenceService, module: Module | None) -> str:
    return pod.workload_image(isvc, module)


def serving_resources(isvc: InferenceService, module: Module | None) -> Resources | None:
    return pod.workload_resources(isvc, module, "inference")


def service_name_for(name: str) -> str:
    """The Service of the InferenceService `name` (the activator routes to it and nothing else)."""
    return name


def service_name(isvc: InferenceService) -> str:
    return service_name_for(isvc.name)


def build_deployment(
    isvc: InferenceService, module: Module | None, replicas: int | None = None
) -> dict[str, Any]:
    """The serving Deployment. replicas is left out unless given: the activator owns it."""
    resources = serving_resources(isvc, module)
    labels = pod.labels(isvc, "serving", isvc.spec.module)
    selector = {pod.LABEL_KIND: labels[pod.LABEL_KIND], pod.LABEL_NAME: labels[pod.LABEL_NAME]}
    shm_volume, shm_mount = pod.shm_volume(resources)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": serving_image(isvc, module),
        "command": ["deepaas-run"],
        "args": ["--listen-ip", "0.0.0.0", "--listen-port", str(DEEPAAS_PORT)],
        "ports": [{"name": "http", "containerPort": DEEPAAS_PORT, "protocol": "TCP"}],
        "env": pod.deepaas_env(isvc.spec.env, module.spec.model if module is not None else None),
        "resources": pod.resource_requirements(resources),
        "readinessProbe": {
            "httpGet": {"path": READINESS_PATH, "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "volumeMounts": [shm_mount],
        "securityContext": pod.container_security_context(),
        # a crash's last log lines become the termination message the status reports
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec = pod.workload_pod_spec(isvc, container, resources, [shm_volume])
    # Pod parts of other features (storage: init containers, volumes, mounts) are added here,
    # to pod_spec and container, before the template is hashed into its version.
    storage.build_storage(isvc, isvc.spec.storage, site_settings(), upload_results=False).apply_to(
        pod_spec, container
    )
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": pod_spec}
    template["metadata"]["annotations"] = {VERSION_ANNOTATION: template_version(template)}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "template": template,
        # a new version starts before the old one stops: no gap in serving
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": isvc.name,
            "namespace": isvc.namespace,
            "labels": labels,
            "ownerReferences": [isvc.owner_reference()],
        },
        "spec": spec,
    }


def build_service(isvc: InferenceService) -> dict[str, Any]:
    labels = pod.labels(isvc, "serving", isvc.spec.module)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(isvc),
            "namespace": isvc.namespace,
            "labels": labels,
            "ownerReferences": [isvc.owner_reference()],
        },
        "spec": {
            "selector": {pod.LABEL_KIND: labels[pod.LABEL_KIND], pod.LABEL_NAME: labels[pod.LABEL_NAME]},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_all(isvc: InferenceService, module: Module | None) -> list[dict[str, Any]]:
    return [build_deployment(isvc, module), build_service(isvc)]
