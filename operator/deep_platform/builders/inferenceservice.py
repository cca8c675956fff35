"""InferenceService -> Deployment running `deepaas-run` and the Service in front of it."""

from __future__ import annotations

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
VERSION_ANNOTATION = pod.VERSION_ANNOTATION


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
    shm_volume, shm_mount = pod.shm_volume(resources)
    env = pod.deepaas_env(isvc.spec.env, module.spec.model if module is not None else None)
    container = pod.http_container(CONTAINER_NAME, serving_image(isvc, module), DEEPAAS_PORT, READINESS_PATH,
                                   env, resources, [shm_mount])
    container["command"] = ["deepaas-run"]
    container["args"] = ["--listen-ip", "0.0.0.0", "--listen-port", str(DEEPAAS_PORT)]
    pod_spec = pod.workload_pod_spec(isvc, container, resources, [shm_volume])
    # Pod parts of other features (storage: init containers, volumes, mounts) are added here,
    # to pod_spec and container, before the template is hashed into its version.
    storage.build_storage(isvc, isvc.spec.storage, site_settings(), upload_results=False).apply_to(
        pod_spec, container
    )
    # a new version starts before the old one stops: no gap in serving
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return pod.versioned_deployment(isvc, labels, pod_spec, rolling, replicas)


def build_service(isvc: InferenceService) -> dict[str, Any]:
    return pod.http_service(isvc, pod.labels(isvc, "serving", isvc.spec.module), service_name(isvc))


def build_all(isvc: InferenceService, module: Module | None) -> list[dict[str, Any]]:
    return [build_deployment(isvc, module), build_service(isvc)]
