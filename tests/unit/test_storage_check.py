"""storage_check: the StorageReady condition from the pod's init container statuses.

The waiting messages are the kubelet's own wording (pkg/kubelet/kubelet_pods.go); the rclone
outputs are what rclone 1.60 printed in tests/integration/test_storage_rclone.py.
"""

from __future__ import annotations

from typing import Any

from deep_platform.api.common import StorageMount
from deep_platform.storage_check import storage_state

MOUNTS = [
    StorageMount.model_validate(
        {
            "name": "data",
            "url": "https://cloud.example.org/remote.php/dav/files/alice",
            "secretRef": {"name": "nextcloud", "passwordKey": "token"},
            "remotePath": "/plankton",
            "mountPath": "/srv/data",
        }
    )
]


def pod(*statuses: dict[str, Any]) -> dict[str, Any]:
    return {"status": {"phase": "Pending", "initContainerStatuses": list(statuses)}}


def waiting(name: str, reason: str, message: str) -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}}


def terminated(name: str, code: int, message: str = "") -> dict[str, Any]:
    return {"name": name, "state": {"terminated": {"exitCode": code, "reason": "Error", "message": message}}}


def test_missing_secret_names_the_secret_keys_and_the_command() -> None:
    state = storage_state(
        MOUNTS, pod(waiting("storage-in-data", "CreateContainerConfigError", 'secret "nextcloud" not found'))
    )
    assert state is not None
    assert (state.status, state.reason) == (False, "SecretNotFound")
    assert "'nextcloud'" in state.message and "'token'" in state.message
    assert "kubectl create secret generic nextcloud" in state.message
    assert "spec.storage[0]" in state.message


def test_missing_key_names_the_key() -> None:
    message = "couldn't find key token in Secret team-a/nextcloud"
    state = storage_state(MOUNTS, pod(waiting("storage-in-data", "CreateContainerConfigError", message)))
    assert state is not None
    assert (state.status, state.reason) == (False, "SecretKeyNotFound")
    assert "no key 'token'" in state.message and "'nextcloud'" in state.message


def test_401_and_unreachable_server_have_their_own_reasons() -> None:
    unauthorized = (
        'Failed to create file system for "data:plankton": read metadata failed: 401 Not Authorized'
    )
    state = storage_state(MOUNTS, pod(terminated("storage-in-data", 1, unauthorized)))
    assert state is not None
    assert (state.status, state.reason) == (False, "Unauthorized")
    assert "app token" in state.message and "401 Not Authorized" in state.message

    refused = (
        'Failed to copy: Propfind "https://cloud.example.org/": dial tcp 10.0.0.1:443: '
        "connect: connection refused"
    )
    state = storage_state(MOUNTS, pod(terminated("storage-in-data", 1, refused)))
    assert state is not None
    assert state.reason == "ServerUnreachable"


def test_failed_upload_is_reported_as_such() -> None:
    ok_in = terminated("storage-in-data", 0)
    out = terminated("storage-out-data", 1, "storage: upload failed (rclone exit 1)\n401 Not Authorized")
    state = storage_state(MOUNTS, pod(ok_in, out))
    assert state is not None
    assert (state.status, state.reason) == (False, "UploadUnauthorized")
    assert "uploading results failed" in state.message


def test_progress_then_ready_then_uploaded() -> None:
    running = {"name": "storage-in-data", "state": {"running": {}}}
    state = storage_state(MOUNTS, pod(running))
    assert state is not None and state.status is None and state.reason == "Copying"
    state = storage_state(MOUNTS, pod(terminated("storage-in-data", 0)))
    assert state is not None and (state.status, state.reason) == (True, "Ready")
    state = storage_state(MOUNTS, pod(terminated("storage-in-data", 0), terminated("storage-out-data", 0)))
    assert state is not None and (state.status, state.reason) == (True, "ResultsUploaded")


def test_nothing_to_say_without_storage_or_pod() -> None:
    assert storage_state([], pod()) is None
    assert storage_state(MOUNTS, None) is None
