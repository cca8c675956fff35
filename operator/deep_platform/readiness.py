"""Ready=False reasons a served workload (InferenceService, DevEnvironment) cannot start from.

Shared by the operator, which sets them, and the activator, which answers a request for such a
workload at once (503 with the reason and message) instead of holding it for the cold start.
Kept apart from the controllers so that the activator imports no controller (and none of their
settings, read when a controller module loads).
"""

from __future__ import annotations

#: container states that mean the model will not become ready by waiting (reason -> whether a
#: later retry may work with nobody changing anything: the activator's Retry-After)
FAILURE_REASONS: dict[str, bool] = {
    "CrashLoopBackOff": False,
    "ImagePullBackOff": False,
    "ErrImagePull": False,
    "InvalidImageName": False,
    "CreateContainerConfigError": False,
    "CreateContainerError": False,
    "RunContainerError": False,
    "OOMKilled": False,
    "Unschedulable": True,  # the cluster may have room later (autoscaler, other work ending)
}
#: StorageReady / Ready reasons that need the user (storage_check.py): Events of type Warning
STORAGE_FAILURE_REASONS = frozenset(
    {
        "StorageUnavailable",
        "SecretNotFound",
        "SecretKeyNotFound",
        "ContainerConfigError",
        "EmptyPassword",
        "Unauthorized",
        "Forbidden",
        "ServerUnreachable",
        "RemotePathNotFound",
        "CopyFailed",
    }
)
#: storage reasons that can pass by themselves (a WebDAV server down for a moment)
STORAGE_TRANSIENT_REASONS = frozenset({"ServerUnreachable", "CopyFailed"})
#: other Ready=False reasons the model cannot start from
SPEC_FAILURE_REASONS = frozenset({"ModuleNotFound", "ModuleNotServable", "InvalidSpec"})


def not_starting(reason: str) -> bool | None:
    """For a Ready=False reason: None if the service is on its way (Starting, Prewarming), else
    whether a later retry may work unchanged. The activator answers such a reason at once."""
    if reason in FAILURE_REASONS:
        return FAILURE_REASONS[reason]
    if reason in STORAGE_FAILURE_REASONS:
        return reason in STORAGE_TRANSIENT_REASONS
    if reason in SPEC_FAILURE_REASONS:
        return False
    if reason.endswith("Rejected"):  # a quota or webhook: the operator retries by itself
        return True
    return None
