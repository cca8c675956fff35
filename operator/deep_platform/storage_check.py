"""Storage state from the pod's own status: missing Secrets or keys, 401s, unreachable servers.

The operator never reads Secrets and never talks to the WebDAV server: the kubelet already
reports a missing Secret or key (CreateContainerConfigError, naming both) and the storage
containers end with rclone's error as their termination message (FallbackToLogsOnError). This
module turns those into one `StorageReady` condition whose message names the storage entry,
its Secret and keys, and what to fix. Pure: the controllers pass in the pod they already listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .api.base import CustomObject, Status
from .api.common import StorageMount
from .builders.storage import (
    FUSE_PREFIX,
    IN_PREFIX,
    OUT_PREFIX,
    StorageUnavailable,
    build_storage,
)
from .conditions import set_condition
from .config import site_settings

CONDITION = "StorageReady"

_SECRET_MISSING = re.compile(r'secret "([^"]+)" not found', re.IGNORECASE)
_KEY_MISSING = re.compile(r"couldn't find key (\S+) in Secret (\S+)", re.IGNORECASE)
#: (reason, what the user should do), first match wins; matched on rclone's lower-cased output
_RCLONE_ERRORS: list[tuple[tuple[str, ...], str, str]] = [
    (
        ("password key of the storage secret is empty",),
        "EmptyPassword",
        "the Secret's password key is empty; store the password or a NextCloud app token in it",
    ),
    (
        ("401", "not authorized", "unauthorized"),
        "Unauthorized",
        "the server refused the user and password (HTTP 401); check the Secret's keys, or create "
        "a NextCloud app token (Settings > Security) and store it as the password",
    ),
    (
        ("403", "forbidden"),
        "Forbidden",
        "the server refused access to the folder (HTTP 403); check the user's rights on it",
    ),
    (
        (
            "no such host",
            "connection refused",
            "i/o timeout",
            "network is unreachable",
            "dial tcp",
            "context deadline exceeded",
            "tls:",
            "x509",
            "no route to host",
            "connection reset",
        ),
        "ServerUnreachable",
        "the pod could not reach the server; check the url and that the cluster may reach it",
    ),
    (
        ("directory not found", "404"),
        "RemotePathNotFound",
        "the folder does not exist on the server; check remotePath (relative to url)",
    ),
]


@dataclass(frozen=True)
class StorageState:
    """One `StorageReady` condition: status True (all copied/uploaded), False (a failure that
    needs the user) or None (Unknown: still copying)."""

    status: bool | None
    reason: str
    message: str


def _mount_of(container_name: str, mounts: list[StorageMount]) -> tuple[int, StorageMount] | None:
    for prefix in (IN_PREFIX, OUT_PREFIX, FUSE_PREFIX):
        if container_name.startswith(prefix):
            name = container_name[len(prefix) :]
            for index, mount in enumerate(mounts):
                if mount.name == name:
                    return index, mount
    return None


def _what(index: int, mount: StorageMount) -> str:
    return f"spec.storage[{index}] {mount.name!r} ({mount.url}, remotePath {mount.remote_path!r})"


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "failed" in line.lower() or "error" in line.lower():
            return line[-300:]
    return lines[-1][-300:] if lines else ""


def classify_rclone_failure(output: str) -> tuple[str, str]:
    """(reason, advice) for rclone's output of a failed copy."""
    lower = output.lower()
    for needles, reason, advice in _RCLONE_ERRORS:
        if any(needle in lower for needle in needles):
            return reason, advice
    return "CopyFailed", "rclone failed; see the container's log"


def _config_error(index: int, mount: StorageMount, message: str) -> StorageState:
    secret = mount.secret_ref
    keys = f"keys {secret.user_key!r} and {secret.password_key!r}"
    key_match = _KEY_MISSING.search(message)
    if key_match:
        return StorageState(
            False,
            "SecretKeyNotFound",
            f"{_what(index, mount)}: Secret {secret.name!r} has no key {key_match.group(1)!r}; "
            f"it needs {keys} (or set secretRef.userKey / passwordKey)",
        )
    if _SECRET_MISSING.search(message):
        return StorageState(
            False,
            "SecretNotFound",
            f"{_what(index, mount)}: Secret {secret.name!r} does not exist; create it with {keys}: "
            f"kubectl create secret generic {secret.name} --from-literal={secret.user_key}=USER "
            f"--from-literal={secret.password_key}=APP_TOKEN",
        )
    return StorageState(False, "ContainerConfigError", f"{_what(index, mount)}: {message[-300:]}")


def _failed(index: int, mount: StorageMount, container: str, terminated: dict[str, Any]) -> StorageState:
    output = terminated.get("message") or ""
    reason, advice = classify_rclone_failure(output)
    step = "uploading results" if container.startswith(OUT_PREFIX) else "copying in"
    if container.startswith(OUT_PREFIX):
        reason = f"Upload{reason}" if reason != "CopyFailed" else "UploadFailed"
    detail = _last_error_line(output)
    exit_code = terminated.get("exitCode")
    message = f"{_what(index, mount)}: {step} failed (exit {exit_code}): {advice}"
    if detail:
        message += f". rclone: {detail}"
    return StorageState(False, reason, message)


def storage_state(mounts: list[StorageMount], pod_obj: dict[str, Any] | None) -> StorageState | None:
    """The StorageReady condition for the object's newest pod; None without storage or pod."""
    if not mounts or not pod_obj:
        return None
    statuses = (pod_obj.get("status") or {}).get("initContainerStatuses") or []
    copied = uploaded = 0
    expected_in = sum(1 for m in mounts if m.mode == "copy")
    for status in statuses:
        found = _mount_of(status.get("name", ""), mounts)
        if found is None:
            continue
        index, mount = found
        name = status["name"]
        state = status.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") == "CreateContainerConfigError":
            return _config_error(index, mount, waiting.get("message", ""))
        terminated = state.get("terminated") or (status.get("lastState") or {}).get("terminated")
        if terminated and terminated.get("exitCode", 0) != 0:
            return _failed(index, mount, name, terminated)
        if terminated and terminated.get("exitCode") == 0:
            if name.startswith(IN_PREFIX):
                copied += 1
            elif name.startswith(OUT_PREFIX):
                uploaded += 1
    if uploaded:
        return StorageState(True, "ResultsUploaded", f"results uploaded to {uploaded} storage folder(s)")
    if copied >= expected_in:
        return StorageState(True, "Ready", f"{len(mounts)} storage folder(s) available in the pod")
    return StorageState(None, "Copying", f"copying {expected_in - copied} storage folder(s) into the pod")


def storage_problem(owner: CustomObject[Any, Any]) -> tuple[str, str] | None:
    """(reason, message) when this site cannot provide the object's storage (mode `mount`
    without a CSI driver, duplicate names or paths); the controllers block on it."""
    try:
        build_storage(owner, owner.spec.storage, site_settings(), upload_results=False)
    except StorageUnavailable as exc:
        return "StorageUnavailable", str(exc)
    return None


def newest_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not pods:
        return None
    return max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")


def set_storage_condition(
    status: Status, mounts: list[StorageMount], pods: list[dict[str, Any]], generation: int | None
) -> None:
    """StorageReady from the newest pod; left as it was when no pod says anything new."""
    state = storage_state(mounts, newest_pod(pods))
    if state is not None:
        set_condition(status, CONDITION, state.status, state.reason, state.message, generation)
