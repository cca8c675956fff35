"""InferenceServices against what the cluster offers, through the operator in the emulator: a GPU
no node has blocks the Deployment with a message naming what exists; `mount` storage with a CSI
driver gets its PersistentVolume and claim, and the PV goes with the service."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from deep_platform import kube as k
from deep_platform.api import InferenceService, TrainingJob
from deep_platform.config import site_settings
from deep_platform.controllers import storage_volumes
from tests.harness.operator_fixtures import kube_for, wait_until
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
    def product_check_passed() -> bool:
        ready_now = condition(operator.kube.get(ISVC, name, NS)["status"], "Ready")
        # the emulator has no scheduler; on a real server the scheduler may still find this
        # bare test node unfit, but the operator's check of the GPU product no longer blocks
        return ready_now["reason"] != "Unschedulable" or "NVIDIA-A100-SXM4-80GB" not in ready_now["message"]

    wait_until(product_check_passed, 10, what="Unschedulable for the product cleared")


def mount_storage() -> list[dict[str, Any]]:
    return [
        {
            "name": "models",
            "url": "https://cloud.example.org/remote.php/dav/files/alice",
            "secretRef": {"name": "nextcloud"},
            "remotePath": "/models",
            "mountPath": "/srv/models",
            "mode": "mount",
            "readOnly": True,
        }
    ]


def deleted(obj: dict[str, Any] | None) -> bool:
    """Gone, or on its way out: a real server keeps a deleted PV until the pv-protection
    controller lifts its finalizer; the emulator removes it at once."""
    return obj is None or bool(obj["metadata"].get("deletionTimestamp"))


@pytest.fixture
def csi_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DEEP_RCLONE_CSI_DRIVER", "csi-rclone")
    site_settings.cache_clear()
    yield "csi-rclone"
    monkeypatch.delenv("DEEP_RCLONE_CSI_DRIVER")
    site_settings.cache_clear()


def test_mount_with_csi_driver_applies_volume_and_claim_and_removes_them(
    apiserver: Any, csi_driver: str, operator: Any
) -> None:
    body = example("inferenceservice.yaml")
    body["spec"]["storage"] = mount_storage()
    name = body["metadata"]["name"]
    operator.kube.create(module())
    isvc = operator.kube.create(body)

    deployment = wait_until(lambda: apiserver.get("deployments", NS, name), 10, what="deployment")
    claim_name = f"{name}-storage-models"
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    claims = [v.get("persistentVolumeClaim") for v in volumes]
    assert {"claimName": claim_name, "readOnly": True} in claims, volumes
    claim = apiserver.get("persistentvolumeclaims", NS, claim_name)
    assert claim["metadata"]["ownerReferences"][0]["uid"] == isvc["metadata"]["uid"]
    pv_name = claim["spec"]["volumeName"]
    pv = apiserver.get("persistentvolumes", None, pv_name)
    assert pv["spec"]["csi"]["driver"] == csi_driver
    # a real server's PV controller adds the claim's uid and version once it binds
    claim_ref = pv["spec"]["claimRef"]
    assert (claim_ref["namespace"], claim_ref["name"]) == (NS, claim_name)
    assert pv["metadata"]["labels"]["deep-hybrid-datacloud.eu/namespace"] == NS

    # a mount the spec no longer has goes; the service keeps running with the rest
    operator.kube.patch(ISVC, name, NS, {"spec": {"storage": []}})
    wait_until(lambda: deleted(apiserver.get("persistentvolumes", None, pv_name)), 10, what="PV pruned")
    wait_until(
        lambda: apiserver.get("persistentvolumeclaims", NS, claim_name) is None, 10, what="claim pruned"
    )

    operator.kube.delete(ISVC, name, NS)
    wait_until(lambda: deleted(apiserver.get("persistentvolumes", None, pv_name)), 10, what="PV deleted")
    wait_until(lambda: apiserver.get("persistentvolumeclaims", NS, claim_name) is None, 10, what="claim GC")


def served_with_a_mount(apiserver: Any, operator: Any) -> tuple[str, dict[str, Any]]:
    """The example InferenceService with one mount, once its claim exists: (name, claim)."""
    body = example("inferenceservice.yaml")
    body["spec"]["storage"] = mount_storage()
    name = body["metadata"]["name"]
    operator.kube.create(module())
    operator.kube.create(body)
    claim_name = f"{name}-storage-models"
    claim = wait_until(lambda: apiserver.get("persistentvolumeclaims", NS, claim_name), 10, what="claim")
    return name, claim


def test_mount_removed_and_added_again_comes_back(apiserver: Any, csi_driver: str, operator: Any) -> None:
    name, claim = served_with_a_mount(apiserver, operator)
    pv_name = claim["spec"]["volumeName"]
    operator.kube.patch(ISVC, name, NS, {"spec": {"storage": []}})
    wait_until(lambda: deleted(apiserver.get("persistentvolumes", None, pv_name)), 10, what="PV pruned")
    operator.kube.patch(ISVC, name, NS, {"spec": {"storage": mount_storage()}})
    wait_until(lambda: (pv := apiserver.get("persistentvolumes", None, pv_name))
               and not pv["metadata"].get("deletionTimestamp"), 30, what="PV again")
    operator.kube.delete(ISVC, name, NS)
    wait_until(lambda: deleted(apiserver.get("persistentvolumes", None, pv_name)), 10, what="PV deleted")


def test_sweep_deletes_only_volumes_whose_claim_is_gone(
    apiserver: Any, csi_driver: str, operator: Any
) -> None:
    _name, claim = served_with_a_mount(apiserver, operator)
    live_pv = claim["spec"]["volumeName"]
    # a PV left behind by a service deleted while the operator was down
    orphan = copy.deepcopy(apiserver.get("persistentvolumes", None, live_pv))
    # labelled for a service "gone": with the live service's labels the controller would prune it
    # as a mount its spec no longer has, racing the sweep under test
    labels = {**orphan["metadata"]["labels"], "deep-hybrid-datacloud.eu/name": "gone"}
    orphan["metadata"] = {"name": "deep-default-gone-models", "labels": labels}
    orphan["spec"]["claimRef"] = {"namespace": NS, "name": "gone-storage-models"}
    apiserver.create(orphan)

    as_operator = kube_for(apiserver.url, component="operator")  # the operator's RBAC covers it
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=storage_volumes.ORPHAN_GRACE_SECONDS + 1)
    assert storage_volumes.sweep_orphaned_volumes(as_operator) == 0  # too young to judge
    assert storage_volumes.sweep_orphaned_volumes(as_operator, later) == 1
    # deleted: gone at once on the emulator; on a real server it waits for the pv-protection
    # controller to lift its finalizer, and carries a deletionTimestamp until then
    gone = apiserver.get("persistentvolumes", None, "deep-default-gone-models")
    assert gone is None or gone["metadata"].get("deletionTimestamp"), gone
    assert not apiserver.get("persistentvolumes", None, live_pv)["metadata"].get("deletionTimestamp")


def test_training_mount_gets_volume_and_claim_before_the_job_and_pv_goes_with_it(
    apiserver: Any, csi_driver: str, operator: Any
) -> None:
    body = example("trainingjob.yaml")
    body["spec"]["storage"] = mount_storage()
    name = body["metadata"]["name"]
    operator.kube.create(module())
    operator.kube.create(body)
    job = wait_until(lambda: apiserver.get("jobs", NS, name), 10, what="training Job")
    claim_name = f"{name}-storage-models"
    claim = apiserver.get("persistentvolumeclaims", NS, claim_name)
    assert claim is not None, "the claim must exist when the Job's pod asks for it"
    claims = [v.get("persistentVolumeClaim", {}).get("claimName")
              for v in job["spec"]["template"]["spec"]["volumes"]]
    assert claim_name in claims
    pv_name = claim["spec"]["volumeName"]
    assert apiserver.get("persistentvolumes", None, pv_name)["spec"]["csi"]["driver"] == csi_driver
    operator.kube.delete(k.kind_of(TrainingJob), name, NS)
    wait_until(lambda: deleted(apiserver.get("persistentvolumes", None, pv_name)), 10, what="PV deleted")
