"""The serving Deployment and Service: upstream-schema valid, restricted, no replicas, versioned."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from deep_platform.api import InferenceService, Module
from deep_platform.builders.inferenceservice import (
    VERSION_ANNOTATION,
    build_all,
    build_deployment,
    build_service,
)


def isvc(**spec: Any) -> InferenceService:
    body = {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "plankton", "namespace": "science", "uid": "u-1", "generation": 1},
        "spec": {"image": "registry.example/plankton:2", **spec},
    }
    return InferenceService.from_body(body)


@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_children_validate_against_upstream_schemas(version: str) -> None:
    service = isvc(resources={"cpu": 2, "memory": "4Gi", "gpu": {"count": 1, "product": "NVIDIA-A100"}})
    for child in build_all(service, None):
        kubernetes_validate.validate(child, version, strict=True)


def test_deployment_leaves_replicas_to_the_activator() -> None:
    deployment = build_deployment(isvc(), None)
    assert "replicas" not in deployment["spec"]
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_deepaas_on_5000_with_readiness_on_models() -> None:
    container = build_deployment(isvc(), None)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["deepaas-run"]
    assert container["args"][-1] == "5000"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/models/"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_module_model_is_served_unless_the_service_names_another() -> None:
    module = Module.from_body({
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "Module",
        "metadata": {"name": "plankton"},
        "spec": {"image": "ai4oshub/plankton:1", "model": "planktonclas", "metadata": {"title": "P"}},
    })
    service = isvc(module="plankton", image=None)
    env = build_deployment(service, module)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "DEEPAAS_V2_MODEL", "value": "planktonclas"} in env
    own = isvc(module="plankton", env=[{"name": "DEEPAAS_V2_MODEL", "value": "other"}])
    env = build_deployment(own, module)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "DEEPAAS_V2_MODEL"] == ["other"]


def test_gpu_requests_as_for_training() -> None:
    pod = build_deployment(isvc(resources={"gpu": {"count": 2, "product": "NVIDIA-A100"}}), None)
    spec = pod["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["NVIDIA-A100"]


def test_version_changes_with_the_template_only() -> None:
    first = build_deployment(isvc(), None)["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION]
    scaled = build_deployment(isvc(scaling={"maxReplicas": 5}), None)
    assert scaled["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION] == first
    new_image = build_deployment(isvc(image="registry.example/plankton:3"), None)
    assert new_image["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION] != first


def test_service_selects_the_pods_on_port_80() -> None:
    service = isvc()
    svc = build_service(service)
    labels = build_deployment(service, None)["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert svc["spec"]["ports"][0]["port"] == 80
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_builders_are_pure() -> None:
    service = isvc()
    before = copy.deepcopy(service.model_dump())
    assert build_all(service, None) == build_all(service, None)
    assert service.model_dump() == before
