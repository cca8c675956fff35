"""Storage through the operator in the emulator: the Job carries the storage containers, a
missing Secret or a 401 shows up as StorageReady with its reason, a site without a CSI driver
refuses mode `mount` by name. The test plays the kubelet (pod statuses)."""

from __future__ import annotations

from typing import Any

from deep_platform import kube as k
from deep_platform.api import InferenceService, TrainingJob
from tests.harness.operator_fixtures import wait_until
from tests.integration.test_trainingjob import NS, condition, example, module, play_pod, status

TJ = k.kind_of(TrainingJob)
ISVC = k.kind_of(InferenceService)


def storage_condition(
    operator: Any, reason: str, kind: Any = TJ, name: str = "plankton-retrain"
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = (operator.kube.get(kind, name, NS) or {}).get("status") or {}
        found = [c for c in st.get("conditions", []) if c["type"] == "StorageReady" and c["reason"] == reason]
        return found[0] if found else None

    return wait_until(probe, 10, what=f"StorageReady {reason}")


def init_status(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "restartCount": 0, "state": state}


def test_training_job_with_storage_reports_missing_secret_then_401_then_upload(
    apiserver: Any, operator: Any
) -> None:
    operator.kube.create(module())
    operator.kube.create(example("trainingjob.yaml"))
    job = wait_until(lambda: apiserver.get("jobs", NS, "plankton-retrain"), 10, what="job")
    names = [c["name"] for c in job["spec"]["template"]["spec"]["initContainers"]]
    assert names == ["storage-in-data", "storage-out-data"]

    # the kubelet's own words when the Secret does not exist
    waiting = {
        "waiting": {
            "reason": "CreateContainerConfigError",
            "message": 'secret "nextcloud-credentials" not found',
        }
    }
    play_pod(
        apiserver,
        job,
        "plankton-retrain-a",
        {"phase": "Pending", "initContainerStatuses": [init_status("storage-in-data", waiting)]},
    )
    cond = storage_condition(operator, "SecretNotFound")
    assert cond["status"] == "False"
    assert "nextcloud-credentials" in cond["message"] and "'password'" in cond["message"]
    assert "kubectl create secret generic nextcloud-credentials" in cond["message"]

    failed = {
        "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "message": 'Failed to create file system for "data:plankton/dataset": '
            "read metadata failed: 401 Unauthorized",
        }
    }
    play_pod(
        apiserver,
        job,
        "plankton-retrain-a",
        {"phase": "Failed", "initContainerStatuses": [init_status("storage-in-data", failed)]},
    )
    cond = storage_condition(operator, "Unauthorized")
    assert "401" in cond["message"] and "data-deep.a.incd.pt" in cond["message"]

    done = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    play_pod(
        apiserver,
        job,
        "plankton-retrain-a",
        {
            "phase": "Failed",
            "initContainerStatuses": [
                init_status("storage-in-data", done),
                init_status("storage-out-data", done),
            ],
            "containerStatuses": [
                {
                    "name": "train",
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 1, "reason": "Error"}},
                }
            ],
        },
    )
    assert storage_condition(operator, "ResultsUploaded")["status"] == "True"


def test_mount_mode_without_csi_driver_blocks_with_the_field_named(apiserver: Any, operator: Any) -> None:
    body = example("trainingjob.yaml")
    body["spec"]["storage"][0]["mode"] = "mount"
    operator.kube.create(module())
    operator.kube.create(body)

    def blocked() -> dict[str, Any] | None:
        st = status(operator, "plankton-retrain")
        ready = [c for c in st.get("conditions", []) if c["type"] == "Ready"]
        return st if ready and ready[0]["reason"] == "StorageUnavailable" else None

    st = wait_until(blocked, 10, what="StorageUnavailable")
    assert "spec.storage[0].mode" in condition(st, "Ready")["message"]
    assert apiserver.get("jobs", NS, "plankton-retrain") is None


def test_inference_service_copies_in_and_refuses_unavailable_mount(apiserver: Any, operator: Any) -> None:
    body = example("inferenceservice.yaml")
    body["spec"]["storage"] = [
        {
            "name": "models",
            "url": "https://cloud.example.org/remote.php/dav/files/alice",
            "secretRef": {"name": "nextcloud"},
            "remotePath": "/models",
            "mountPath": "/srv/models",
            "mode": "mount",
        }
    ]
    operator.kube.create(module())
    operator.kube.create(body)
    name = body["metadata"]["name"]

    def ready_reason() -> str | None:
        st = (operator.kube.get(ISVC, name, NS) or {}).get("status") or {}
        ready = [c for c in st.get("conditions", []) if c["type"] == "Ready"]
        return ready[0]["reason"] if ready else None

    wait_until(lambda: ready_reason() == "StorageUnavailable", 10, what="StorageUnavailable")
    assert apiserver.get("deployments", NS, name) is None

    patched = operator.kube.get(ISVC, name, NS)
    patched["spec"]["storage"][0]["mode"] = "copy"
    operator.kube.apply(
        {
            "apiVersion": patched["apiVersion"],
            "kind": patched["kind"],
            "metadata": {"name": name, "namespace": NS},
            "spec": patched["spec"],
        }
    )
    deployment = wait_until(lambda: apiserver.get("deployments", NS, name), 10, what="deployment")
    names = [c["name"] for c in deployment["spec"]["template"]["spec"]["initContainers"]]
    assert names == ["storage-in-models"]
