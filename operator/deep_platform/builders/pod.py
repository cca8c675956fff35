"""Pieces of pod specs shared by training and serving: labels, security, resources, GPUs."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from ..api.base import CustomObject
from ..api.common import EnvVar, Resources, Toleration
from ..api.module import Module
from ..config import site_settings
from ..gpu.mig import mig_profile_problem, mig_resource_name

PART_OF = "deep-platform"
LABEL_KIND = "deep-hybrid-datacloud.eu/kind"
LABEL_NAME = "deep-hybrid-datacloud.eu/name"
LABEL_MODULE = "deep-hybrid-datacloud.eu/module"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
#: the uid:gid the restricted profile runs module containers as, when the image names none
DEFAULT_UID = 1000


def workload_image(owner: Any, module: Module | None) -> str:
    """The owner's own image (pinned), else its Module's."""
    if owner.spec.image:
        return str(owner.spec.image)
    if module is None:
        raise ValueError(f"{owner.crd.kind} {owner.name} names no image and its Module is unknown")
    return module.spec.image


def workload_resources(
    owner: Any, module: Module | None, purpose: Literal["training", "inference"]
) -> Resources | None:
    """The owner's own resources, else the Module's defaults for this purpose."""
    if owner.spec.resources is not None:
        return owner.spec.resources
    if module is not None and module.spec.resources is not None:
        return getattr(module.spec.resources, purpose)
    return None


#: on a Deployment's pod template: a hash of the template as built, so a rollout is recognised
VERSION_ANNOTATION = "deep-hybrid-datacloud.eu/version"
#: the port of the Service in front of a serving or IDE pod (to its `http` port)
SERVICE_PORT = 80


def template_version(template: dict[str, Any]) -> str:
    """A short stable hash of a pod template (before the API server adds its defaults)."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def child_metadata(owner: CustomObject[Any, Any], labels: dict[str, str], name: str | None = None
                   ) -> dict[str, Any]:
    """A child's metadata: in the owner's namespace, gone with it (ownerReferences)."""
    return {
        "name": name or owner.name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner.owner_reference()],
    }


def selector(labels: dict[str, str]) -> dict[str, str]:
    """The labels that pick one owner's pods."""
    return {LABEL_KIND: labels[LABEL_KIND], LABEL_NAME: labels[LABEL_NAME]}


def http_container(name: str, image: str, port: int, readiness_path: str, env: list[dict[str, Any]],
                   resources: Resources | None, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    """A restricted container serving HTTP on `port` (named `http`), ready when the path answers."""
    return {
        "name": name,
        "image": image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": resource_requirements(resources),
        "readinessProbe": {"httpGet": {"path": readiness_path, "port": "http"}, "periodSeconds": 2,
                           "failureThreshold": 3},
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        # a crash's last log lines become the termination message the status reports
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def versioned_deployment(owner: CustomObject[Any, Any], labels: dict[str, str], pod_spec: dict[str, Any],
                         strategy: dict[str, Any], replicas: int | None = None) -> dict[str, Any]:
    """The Deployment of `pod_spec`, its template stamped with its version (VERSION_ANNOTATION).
    replicas is left out unless given: the activator owns it."""
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": pod_spec}
    template["metadata"]["annotations"] = {VERSION_ANNOTATION: template_version(template)}
    spec: dict[str, Any] = {"selector": {"matchLabels": selector(labels)}, "template": template,
                            "strategy": strategy}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": child_metadata(owner, labels),
            "spec": spec}


def http_service(owner: CustomObject[Any, Any], labels: dict[str, str], name: str | None = None
                 ) -> dict[str, Any]:
    """The Service in front of the owner's pods, port SERVICE_PORT to their `http` port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, labels, name),
        "spec": {
            "selector": selector(labels),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def labels(owner: CustomObject[Any, Any], component: str, module: str | None) -> dict[str, str]:
    """Labels on every child: who owns it, for selectors, dashboards and `kubectl get -l`."""
    result = {
        "app.kubernetes.io/name": owner.name[:63],
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "deep-platform-operator",
        LABEL_KIND: owner.crd.singular,
        LABEL_NAME: owner.name[:63],
    }
    if module:
        result[LABEL_MODULE] = module[:63]
    return result


def pod_security_context() -> dict[str, Any]:
    """Pod Security "restricted": not root, default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": DEFAULT_UID,
        "runAsGroup": DEFAULT_UID,
        "fsGroup": DEFAULT_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Pod Security "restricted" for one container."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def gpu_resource_name(resources: Resources) -> str | None:
    gpu = resources.gpu
    if gpu is None or gpu.count == 0:
        return None
    if not gpu.mig_profile:
        return GPU_RESOURCE
    resource = mig_resource_name(gpu.mig_profile)
    if resource is None:  # the model refuses such profiles; a hand-built object may not have been checked
        raise ValueError(f"spec.resources.gpu.migProfile: {mig_profile_problem(gpu.mig_profile)}")
    return resource


def resource_requirements(resources: Resources | None) -> dict[str, Any]:
    """Requests equal to limits (Guaranteed QoS); GPUs as extended resources (limits only)."""
    if resources is None:
        return {}
    amounts: dict[str, Any] = {}
    for key, value in (
        ("cpu", resources.cpu),
        ("memory", resources.memory),
        ("ephemeral-storage", resources.ephemeral_storage),
    ):
        if value is not None:
            amounts[key] = str(value)
    limits = dict(amounts)
    gpu_name = gpu_resource_name(resources)
    if gpu_name and resources.gpu:
        limits[gpu_name] = str(resources.gpu.count)
    result: dict[str, Any] = {}
    if amounts:
        result["requests"] = amounts
    if limits:
        result["limits"] = limits
    return result


def gpu_tolerations(resources: Resources | None) -> list[dict[str, Any]]:
    """GPU nodes are usually tainted `nvidia.com/gpu:NoSchedule`; GPU pods tolerate it."""
    if resources is None or gpu_resource_name(resources) is None:
        return []
    return [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]


def gpu_affinity(resources: Resources | None) -> dict[str, Any] | None:
    """Node affinity for the requested GPU product and memory (GPU feature discovery labels)."""
    if resources is None or resources.gpu is None or gpu_resource_name(resources) is None:
        return None
    expressions: list[dict[str, Any]] = []
    if resources.gpu.product:
        expressions.append({"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [resources.gpu.product]})
    if resources.gpu.min_memory is not None:
        mebibytes = quantity_to_mebibytes(resources.gpu.min_memory)
        # `Gt` is strict; the label is an integer count of MiB
        expressions.append({"key": GPU_MEMORY_LABEL, "operator": "Gt", "values": [str(mebibytes - 1)]})
    if not expressions:
        return None
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": expressions}]
            }
        }
    }


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def quantity_to_bytes(quantity: str | int) -> float:
    """A Kubernetes quantity as a plain number ("16Gi" -> 17179869184)."""
    text = str(quantity).strip()
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    if text and text[-1] in _DECIMAL:
        return float(text[:-1]) * _DECIMAL[text[-1]]
    return float(text)


def quantity_to_mebibytes(quantity: str | int) -> int:
    return int(quantity_to_bytes(quantity) // 2**20)


def env_list(env: list[EnvVar]) -> list[dict[str, Any]]:
    return [e.to_api() for e in env]


def tolerations_list(tolerations: list[Toleration], resources: Resources | None) -> list[dict[str, Any]]:
    result = [t.to_api() for t in tolerations]
    for extra in gpu_tolerations(resources):
        if extra not in result:
            result.append(extra)
    return result


def shm_volume(resources: Resources | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A memory-backed /dev/shm: PyTorch data loaders pass batches through shared memory."""
    limit = None
    if resources is not None and resources.memory is not None:
        # at most half the pod's memory, so a data loader cannot starve the model
        limit = f"{max(64, quantity_to_mebibytes(resources.memory) // 2)}Mi"
    empty_dir: dict[str, Any] = {"medium": "Memory"}
    if limit:
        empty_dir["sizeLimit"] = limit
    return {"name": "dshm", "emptyDir": empty_dir}, {"name": "dshm", "mountPath": "/dev/shm"}  # noqa: S108


def workload_pod_spec(
    owner: Any, container: dict[str, Any], resources: Resources | None, volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    """The pod spec training and serving share: restricted, no API token (a model needs none),
    placed by the owner's node selector and tolerations and by the GPU it asks for."""
    spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    node_selector = dict(owner.spec.node_selector)
    tolerations = tolerations_list(owner.spec.tolerations, resources)
    if gpu_resource_name(resources or Resources()) is not None:
        site = site_settings()  # where this site keeps its GPUs: the chart's gpu.* values
        node_selector = {**site.gpu_node_selector, **node_selector}  # the object's own wins
        tolerations += [t for t in site.gpu_tolerations if t not in tolerations]
        if site.gpu_runtime_class:
            spec["runtimeClassName"] = site.gpu_runtime_class
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    affinity = gpu_affinity(resources)
    if affinity:
        spec["affinity"] = affinity
    return spec


DEEPAAS_MODEL_ENV = "DEEPAAS_V2_MODEL"


def deepaas_env(env: list[EnvVar], model: str | None) -> list[dict[str, Any]]:
    """The container's env, with DEEPAAS_V2_MODEL from the Module unless the user set it:
    deepaas-run and deepaas-cli choose among several installed models only by that variable."""
    result = env_list(env)
    if model and not any(e["name"] == DEEPAAS_MODEL_ENV for e in result):
        result.append({"name": DEEPAAS_MODEL_ENV, "value": model})
    return result
