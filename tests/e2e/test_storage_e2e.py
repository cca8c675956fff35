"""WebDAV storage of a TrainingJob on the real API server (docs/storage.md).

The real Job controller makes the pod with the copy-in init container and the upload native
sidecar, Pod Security "restricted" admits it, the real scheduler binds it; the kubelet stand-in
moves the storage containers (copy-in Completed, the sidecar running, then stopped once the
training ends) and, as the kubelet does, refuses to start containers whose Secret is missing
(`CreateContainerConfigError`, with the kubelet's wording). No rclone runs here: the
integration tests run the rendered commands against a WebDAV server.
"""

from __future__ import annotations

from typing import Any

from deep_platform import kube as k
from tests.e2e.test_trainingjob_e2e import TJ, condition, get_dtj, phase, trainingjob
from tests.harness.node_kubelet import NodeKubelet, Outcome
from tests.harness.operator_fixtures import wait_until

STORAGE = {
    "name": "data",
    "url": "https://cloud.example.org/remote.php/dav/files/alice",
    "secretRef": {"name": "nextcloud"},
    "remotePath": "/plankton/dataset",
    "mountPath": "/srv/plankton/data",
}


def kubelet_checks_secrets(api: k.Kube, outcome: Outcome) -> Any:
    """`decide` for pods: what the kubelet does with env from a Secret it cannot find."""

    def decide(pod: dict[str, Any]) -> Outcome:
        namespace = pod["metadata"]["namespace"]
        spec = pod["spec"]
        for container in (spec.get("initContainers") or []) + spec["containers"]:
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if not ref:
                    continue
                secret = api.get(k.SECRET, ref["name"], namespace)
                if secret is None:
                    message = f'secret "{ref["name"]}" not found'
                elif ref["key"] not in (secret.get("data") or {}):
                    message = f"couldn't find key {ref['key']} in Secret {namespace}/{ref['name']}"
                else:
                    continue
                return Outcome(waiting_reason="CreateContainerConfigError", waiting_message=message)
        return outcome

    return decide


def secret(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nextcloud", "namespace": namespace},
            "stringData": {"user": "alice", "password": "app-token"}}


def test_copy_in_and_upload_sidecar_and_storage_ready(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    api = e2e_operator.kube
    api.create(secret(namespace))
    kubelet.decide = kubelet_checks_secrets(api, Outcome(exit_code=0, after=2.0))
    api.apply(trainingjob("data", namespace, storage=[STORAGE]))
    running = phase(api, "data", namespace, "Running")
    pod = api.get(k.POD, running["podName"], namespace)
    assert pod is not None
    inits = {c["name"]: c for c in pod["spec"]["initContainers"]}
    assert list(inits) == ["storage-in-data", "storage-out-data"]  # copy-in first, then the sidecar
    assert "restartPolicy" not in inits["storage-in-data"]
    assert inits["storage-out-data"]["restartPolicy"] == "Always"  # a native sidecar, kept by the server
    assert pod["spec"]["terminationGracePeriodSeconds"] == 1800  # time for the upload
    train = next(c for c in pod["spec"]["containers"] if c["name"] == "train")
    assert {"name": "DEEP_STORAGE_DATA", "value": "/srv/plankton/data"} in train["env"]
    assert any(m["mountPath"] == "/srv/plankton/data" for m in train["volumeMounts"])
    statuses = {s["name"]: s["state"] for s in pod["status"]["initContainerStatuses"]}
    assert statuses["storage-in-data"]["terminated"]["reason"] == "Completed"
    assert "running" in statuses["storage-out-data"]

    ready = wait_until(lambda: next((c for c in (api.get(TJ, "data", namespace) or {})
                                     .get("status", {}).get("conditions") or []
                                     if c["type"] == "StorageReady" and c["reason"] == "Ready"), None),
                       timeout=20, interval=0.2, what="StorageReady Ready while training")
    assert ready["status"] == "True" and "1 storage folder(s) available" in ready["message"]

    done = phase(api, "data", namespace, "Succeeded")
    storage = condition(done, "StorageReady")
    assert (storage["status"], storage["reason"]) == ("True", "ResultsUploaded"), storage
    pod = api.get(k.POD, done["podName"], namespace)
    assert pod is not None
    stopped = {s["name"]: s["state"] for s in pod["status"]["initContainerStatuses"]}
    assert stopped["storage-out-data"]["terminated"]["exitCode"] == 0  # stopped after training


def test_missing_storage_secret_is_named_in_storage_ready(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    api = e2e_operator.kube
    kubelet.decide = kubelet_checks_secrets(api, Outcome(exit_code=0, after=0.5))
    api.apply(trainingjob("nosecret", namespace, storage=[STORAGE]))

    def storage_ready() -> dict[str, Any] | None:
        st = (api.get(TJ, "nosecret", namespace) or {}).get("status") or {}
        found = next((c for c in st.get("conditions") or [] if c["type"] == "StorageReady"), None)
        return st if found and found["reason"] == "SecretNotFound" else None

    st = wait_until(storage_ready, timeout=30, interval=0.2, what="StorageReady SecretNotFound")
    storage = condition(st, "StorageReady")
    assert storage["status"] == "False"
    assert "Secret 'nextcloud' does not exist" in storage["message"]
    assert "kubectl create secret generic nextcloud" in storage["message"]
    assert st["phase"] == "Pending" and st["reason"] == "CreateContainerConfigError", st
    assert get_dtj(api, namespace)["nosecret"]["Phase"] == "Pending"
