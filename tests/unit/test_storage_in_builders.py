"""Storage in the rendered Job and Deployment: the parts are there, and the objects stay valid."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from deep_platform.api import InferenceService, TrainingJob
from deep_platform.builders import storage
from deep_platform.builders.inferenceservice import build_deployment
from deep_platform.builders.trainingjob import build_job
from deep_platform.config import site_settings

STORAGE = [
    {
        "name": "data",
        "url": "https://cloud.example.org/remote.php/dav/files/alice",
        "secretRef": {"name": "nextcloud"},
        "remotePath": "/plankton/dataset",
        "mountPath": "/srv/plankton/data",
    },
    {
        "name": "models",
        "url": "https://cloud.example.org/remote.php/dav/files/alice",
        "secretRef": {"name": "nextcloud"},
        "remotePath": "/plankton/models",
        "mountPath": "/srv/plankton/models",
        "readOnly": True,
    },
]


def body(kind: str, storage_spec: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": kind,
        "metadata": {"name": "plankton", "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": {"image": "ai4oshub/plankton:1.0", "storage": storage_spec},
    }


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_training_job_carries_copy_in_and_upload_sidecar(version: str) -> None:
    job = build_job(TrainingJob.from_body(body("TrainingJob", STORAGE)), None)
    kubernetes_validate.validate(job, version, strict=True)
    spec = job["spec"]["template"]["spec"]
    assert names(spec["initContainers"]) == ["storage-in-data", "storage-in-models", "storage-out-data"]
    assert {"storage-data", "storage-models", "dshm"} <= set(names(spec["volumes"]))
    (train,) = spec["containers"]
    mounts = {m["mountPath"]: m for m in train["volumeMounts"]}
    assert mounts["/srv/plankton/models"]["readOnly"] is True
    assert "/srv/plankton/data" in mounts and "/dev/shm" in mounts
    assert spec["terminationGracePeriodSeconds"] >= site_settings().storage_upload_seconds


@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_deployment_copies_in_only(version: str) -> None:
    deployment = build_deployment(InferenceService.from_body(body("InferenceService", STORAGE)), None)
    kubernetes_validate.validate(deployment, version, strict=True)
    spec = deployment["spec"]["template"]["spec"]
    assert names(spec["initContainers"]) == ["storage-in-data", "storage-in-models"]
    assert "terminationGracePeriodSeconds" not in spec
    mount_paths = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert {"/srv/plankton/data", "/srv/plankton/models"} <= mount_paths


def test_storage_change_changes_the_serving_template_version() -> None:
    plain = build_deployment(InferenceService.from_body(body("InferenceService", [])), None)
    with_storage = build_deployment(InferenceService.from_body(body("InferenceService", STORAGE)), None)
    annotations = [d["spec"]["template"]["metadata"]["annotations"] for d in (plain, with_storage)]
    assert annotations[0] != annotations[1]
    assert "initContainers" not in plain["spec"]["template"]["spec"]


def test_mount_mode_without_a_driver_is_a_clear_error_from_the_builder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEEP_RCLONE_CSI_DRIVER", "")
    monkeypatch.setenv("DEEP_RCLONE_FUSE_SIDECAR", "")
    site_settings.cache_clear()
    try:
        tj = TrainingJob.from_body(body("TrainingJob", [{**STORAGE[0], "mode": "mount"}]))
        with pytest.raises(storage.StorageUnavailable, match=r"spec\.storage\[0\]\.mode"):
            build_job(tj, None)
    finally:
        site_settings.cache_clear()
