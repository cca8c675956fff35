"""InferenceServices against what the cluster offers, through the operator in the emulator: a GPU
no node has blocks the Deployment with a message naming what exists; `mount` storage with a CSI
driver gets its PersistentVolume and claim, and the PV goes with the service."""

from __future__ import annotations

from typing import Any

from deep_platform import kube as k
from deep_platform.api import InferenceService
from tests.harness.operator_fixtures import wait_until
from tests.integration.test_trainingjob import NS, condition, example, module

ISVC = k.kind_of(InferenceService)


def ready(operator: Any, name: str, reason: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = (operator.kube.get(ISVC, name, NS) or {}).get("status") or {}
        found = [c for c in st.get("conditions", []) if c["type"] == "Ready" and c["reason"] == reason]
        return st if found else None

    return wait_until(probe, 10, what=f"Ready reason {reason}")


def test_gpu_product_no_node_has_blocks_then_spec_fixed(apiserver: Any, operator: Any) -> None:
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
    body = example("inferenceservice.yaml")
    body["spec"]["resources"]["gpu"] = {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"}
    name = body["metadata"]["name"]
    operator.kube.create(module())
    operator.kube.create(body)

    st = ready(operator, name, "Unschedulable")
    message = condition(st, "Ready")["message"]
    assert "NVIDIA-A100-SXM4-80GB" in message and "Tesla-T4" in message, message
    assert apiserver.get("deployments", NS, name) is None

    operator.kube.patch(ISVC, name, NS, {"spec": {"resources": {"gpu": {"product": "Tesla-T4"}}}})
    deployment = wait_until(lambda: apiserver.get("deployments", NS, name), 10, what="deployment")
    terms = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["Tesla-T4"]
    wait_until(
        lambda: condition(operator.kube.get(ISVC, name, NS)["status"], "Ready")["reason"] != "Unschedulable",
        10,
        what="Unschedulable cleared",
    )
