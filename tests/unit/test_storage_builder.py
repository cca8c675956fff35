"""builders/storage.py: the pod parts for WebDAV storage, valid upstream and Pod Security restricted."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from deep_platform.api import InferenceService, TrainingJob
from deep_platform.builders import storage
from deep_platform.config import OperatorConfig

NEXTCLOUD = "https://cloud.example.org/remote.php/dav/files/alice"


def entry(**extra: Any) -> dict[str, Any]:
    return {
        "name": "data",
        "url": NEXTCLOUD,
        "secretRef": {"name": "nextcloud"},
        "remotePath": "/plankton/dataset/",
        "mountPath": "/srv/data",
        **extra,
    }


def trainingjob(*entries: dict[str, Any]) -> TrainingJob:
    return TrainingJob.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "retrain", "namespace": "team-a", "uid": "uid-1", "generation": 1},
            "spec": {"image": "ai4oshub/plankton:1.0", "storage": list(entries)},
        }
    )


def inferenceservice(*entries: dict[str, Any]) -> InferenceService:
    return InferenceService.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "plankton", "namespace": "team-a", "uid": "uid-2", "generation": 1},
            "spec": {"image": "ai4oshub/plankton:1.0", "storage": list(entries)},
        }
    )


def config(**changes: Any) -> OperatorConfig:
    base = OperatorConfig()
    base.rclone_image = "rclone/rclone:1.68"
    base.rclone_csi_driver = ""
    base.rclone_fuse_sidecar = False
    base.storage_upload_seconds = 1800
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def parts_for_training(*entries: dict[str, Any], **changes: Any) -> storage.StorageParts:
    tj = trainingjob(*entries)
    return storage.build_storage(tj, tj.spec.storage, config(**changes), upload_results=True)


def pod_with(parts: storage.StorageParts) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "train", "image": "ai4oshub/plankton:1.0"}
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    parts.apply_to(pod_spec, container)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "team-a"},
        "spec": pod_spec,
    }


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def restricted(container: dict[str, Any]) -> bool:
    ctx = container["securityContext"]
    return (
        ctx["allowPrivilegeEscalation"] is False
        and ctx["capabilities"]["drop"] == ["ALL"]
        and ctx["runAsNonRoot"] is True
        and ctx["seccompProfile"]["type"] == "RuntimeDefault"
        and not ctx.get("privileged")
    )


@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_copy_mode_for_training_copies_in_and_uploads_back(version: str) -> None:
    parts = parts_for_training(entry(), entry(name="models", mountPath="/srv/models", remotePath="/runs/1"))
    manifest = pod_with(parts)
    kubernetes_validate.validate(manifest, version, strict=True)

    spec = manifest["spec"]
    names = [c["name"] for c in spec["initContainers"]]
    # copy-ins (regular init containers, in order) first, then the upload sidecars
    assert names == ["storage-in-data", "storage-in-models", "storage-out-data", "storage-out-models"]
    inits = by_name(spec["initContainers"])
    assert "restartPolicy" not in inits["storage-in-data"]
    assert inits["storage-out-data"]["restartPolicy"] == "Always"
    assert all(restricted(c) for c in spec["initContainers"])
    assert inits["storage-in-data"]["args"] == ["data:plankton/dataset", "/deep-storage/data"]
    assert inits["storage-out-models"]["args"] == ["/deep-storage/models", "models:runs/1"]
    # the training container sees each folder at its mountPath
    train = spec["containers"][0]
    assert {m["mountPath"] for m in train["volumeMounts"]} == {"/srv/data", "/srv/models"}
    assert {"name": "DEEP_STORAGE_DATA", "value": "/srv/data"} in train["env"]
    # the upload has the configured time once the training has ended
    assert spec["terminationGracePeriodSeconds"] == 1800


def test_credentials_only_by_reference_and_remote_only_from_env() -> None:
    parts = parts_for_training(entry(secretRef={"name": "nc", "userKey": "login", "passwordKey": "token"}))
    copy_in = parts.init_containers[0]
    env = by_name(copy_in["env"])
    assert env["RCLONE_CONFIG_DATA_TYPE"]["value"] == "webdav"
    assert env["RCLONE_CONFIG_DATA_VENDOR"]["value"] == "nextcloud"
    assert env["RCLONE_CONFIG_DATA_URL"]["value"] == NEXTCLOUD
    assert env["RCLONE_CONFIG_DATA_USER"]["valueFrom"] == {"secretKeyRef": {"name": "nc", "key": "login"}}
    assert env[storage.PASSWORD_ENV]["valueFrom"] == {"secretKeyRef": {"name": "nc", "key": "token"}}
    # the obscured password is computed in the container; no PASS variable is rendered
    assert "RCLONE_CONFIG_DATA_PASS" not in env
    assert "rclone obscure -" in copy_in["command"][2]
    # no config file: the remote is the env variables
    assert '--config ""' in copy_in["command"][2]


def test_webdav_url_turns_off_nextcloud_chunking() -> None:
    old_style = parts_for_training(entry(url="https://cloud.example.org/remote.php/webdav"))
    env = by_name(old_style.init_containers[0]["env"])
    assert env["RCLONE_CONFIG_DATA_NEXTCLOUD_CHUNK_SIZE"]["value"] == "0"
    files_url = by_name(parts_for_training(entry()).init_containers[0]["env"])
    assert "RCLONE_CONFIG_DATA_NEXTCLOUD_CHUNK_SIZE" not in files_url


def test_read_only_folder_is_never_uploaded_and_mounted_read_only() -> None:
    parts = parts_for_training(entry(readOnly=True))
    assert [c["name"] for c in parts.init_containers] == ["storage-in-data"]
    assert parts.volume_mounts[0]["readOnly"] is True
    assert parts.termination_grace_period_seconds is None


def test_serving_only_copies_in() -> None:
    isvc = inferenceservice(entry())
    parts = storage.build_storage(isvc, isvc.spec.storage, config(), upload_results=False)
    assert [c["name"] for c in parts.init_containers] == ["storage-in-data"]
    assert parts.termination_grace_period_seconds is None
    kubernetes_validate.validate(pod_with(parts), "1.34", strict=True)


def test_no_storage_adds_nothing() -> None:
    parts = parts_for_training()
    manifest = pod_with(parts)
    assert "initContainers" not in manifest["spec"]
    assert "volumes" not in manifest["spec"]


def test_mount_without_a_csi_driver_names_the_field_and_the_fix() -> None:
    with pytest.raises(storage.StorageUnavailable) as error:
        parts_for_training(entry(), entry(name="live", mountPath="/srv/live", mode="mount"))
    assert error.value.field_path == "spec.storage[1].mode"
    assert "DEEP_RCLONE_CSI_DRIVER" in str(error.value)
    assert "copy" in str(error.value)


@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_mount_with_the_sites_csi_driver_renders_a_bound_pv_and_claim(version: str) -> None:
    parts = parts_for_training(entry(mode="mount", readOnly=True), rclone_csi_driver="csi-rclone")
    assert parts.init_containers == []
    pv, claim = parts.objects
    for obj in (pv, claim):
        kubernetes_validate.validate(obj, version, strict=True)
    kubernetes_validate.validate(pod_with(parts), version, strict=True)
    assert pv["spec"]["csi"]["driver"] == "csi-rclone"
    assert pv["spec"]["claimRef"] == {"namespace": "team-a", "name": claim["metadata"]["name"]}
    assert pv["spec"]["csi"]["nodePublishSecretRef"] == {"name": "nextcloud", "namespace": "team-a"}
    assert pv["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert claim["spec"]["volumeName"] == pv["metadata"]["name"]
    assert claim["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert parts.volumes[0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # PV names are cluster-wide: the namespace is part of them
    assert "team-a" in pv["metadata"]["name"]


def test_fuse_sidecar_only_when_the_site_opted_in() -> None:
    parts = parts_for_training(entry(mode="mount"), rclone_fuse_sidecar=True)
    (sidecar,) = parts.init_containers
    assert sidecar["name"] == "storage-mount-data"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["securityContext"]["privileged"] is True
    assert sidecar["volumeMounts"][0]["mountPropagation"] == "Bidirectional"
    assert parts.volume_mounts[0]["mountPropagation"] == "HostToContainer"
    assert "startupProbe" in sidecar
    kubernetes_validate.validate(pod_with(parts), "1.34", strict=True)
    # the CSI driver wins when both exist: no privileged container then
    csi = parts_for_training(entry(mode="mount"), rclone_fuse_sidecar=True, rclone_csi_driver="csi-rclone")
    assert csi.init_containers == []


@pytest.mark.parametrize(
    ("second", "field"),
    [({"mountPath": "/srv/other"}, "spec.storage[1].name"), ({"name": "other"}, "spec.storage[1].mountPath")],
)
def test_duplicate_names_or_paths_are_refused(second: dict[str, Any], field: str) -> None:
    with pytest.raises(storage.StorageUnavailable) as error:
        parts_for_training(entry(), entry(**second))
    assert error.value.field_path == field


def test_image_and_grace_period_come_from_settings() -> None:
    parts = parts_for_training(
        entry(), rclone_image="registry.local/rclone:1.68.2", storage_upload_seconds=7200
    )
    assert {c["image"] for c in parts.init_containers} == {"registry.local/rclone:1.68.2"}
    manifest = pod_with(parts)
    assert manifest["spec"]["terminationGracePeriodSeconds"] == 7200


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEP_RCLONE_IMAGE", "mirror/rclone:1.68")
    monkeypatch.setenv("DEEP_RCLONE_CSI_DRIVER", "csi-rclone")
    monkeypatch.setenv("DEEP_RCLONE_FUSE_SIDECAR", "true")
    monkeypatch.setenv("DEEP_STORAGE_UPLOAD_SECONDS", "600")
    settings = OperatorConfig()
    assert settings.rclone_image == "mirror/rclone:1.68"
    assert settings.rclone_csi_driver == "csi-rclone"
    assert settings.rclone_fuse_sidecar is True
    assert settings.storage_upload_seconds == 600


def test_rendered_parts_are_json_and_carry_no_literal_secret_values() -> None:
    parts = parts_for_training(entry())
    text = json.dumps(pod_with(parts))
    for container in parts.init_containers:
        for item in container["env"]:
            if item["name"].endswith(("_USER", "_PASS")) or item["name"] == storage.PASSWORD_ENV:
                assert "value" not in item
    assert "secretKeyRef" in text
