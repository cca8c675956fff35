"""WebDAV / NextCloud storage -> the pod parts that bring a remote folder into a pod.

Pure: the object's `spec.storage` list and the operator's settings in, containers, volumes,
mounts and (for mode `mount` with a CSI driver) PersistentVolume + Claim manifests out. The
TrainingJob and InferenceService builders add these parts to their pod templates.

Mode `copy` (default, Pod Security "restricted"):
  * an init container `storage-in-NAME` copies REMOTE -> an emptyDir volume, mounted in the
    main container at mountPath;
  * for training (and unless readOnly) a native sidecar `storage-out-NAME` (an init container
    with restartPolicy Always) waits; when the training container has ended, on success or on
    failure, the kubelet sends it SIGTERM and it copies the folder back (`rclone copy` only
    sends new or changed files and never deletes remote files). The pod's
    terminationGracePeriodSeconds bounds the upload.
Mode `mount`: a PersistentVolume + Claim served by the site's rclone CSI driver, or, if the site
  opted in, a privileged rclone FUSE sidecar (see docs/storage.md for why and what it costs).

Credentials: the rclone remote exists only as RCLONE_CONFIG_<NAME>_* environment variables;
user and password come from the user's Secret through `valueFrom.secretKeyRef`. rclone wants the
password obscured; the container's shell pipes the clear one (never in argv) into
`rclone obscure -` and exports the result, so the pod spec holds references only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from ..api.base import CustomObject
from ..api.common import StorageMode, StorageMount
from ..config import OperatorConfig
from . import pod

#: where storage containers see the pod-local copy of a remote folder
LOCAL_ROOT = "/deep-storage"
IN_PREFIX = "storage-in-"
OUT_PREFIX = "storage-out-"
FUSE_PREFIX = "storage-mount-"
VOLUME_PREFIX = "storage-"
#: clear password for the container's shell only; unset once obscured
PASSWORD_ENV = "DEEP_STORAGE_PASSWORD"  # noqa: S105 - a variable name, not a password
#: requests equal limits, so adding storage containers keeps a Guaranteed pod Guaranteed
STORAGE_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "256Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}
#: NextCloud's chunked upload endpoint lives next to /remote.php/dav/files/USER only
NEXTCLOUD_FILES_URL = re.compile(r"/remote\.php/dav/files/[^/]+/?$")
#: flags shared by every copy, both directions
COPY_FLAGS = ["--create-empty-src-dirs", "--transfers", "4", "--retries", "3", "--stats-log-level", "NOTICE"]

# The clear password is only ever piped into rclone (printf is a shell builtin: no argv, no
# /proc/PID/cmdline) and never echoed. An empty password would make `rclone obscure -` obscure
# "-" itself, so refuse it with a message naming the variable's source instead.
_OBSCURE = (
    'if [ -z "${DEEP_STORAGE_PASSWORD:-}" ]; then '
    'echo "storage: the password key of the storage Secret is empty" >&2; exit 64; fi; '
    'RCLONE_CONFIG_{remote}_PASS="$(printf \'%s\\n\' "$DEEP_STORAGE_PASSWORD" | rclone obscure -)" '
    "|| exit 65; "
    "export RCLONE_CONFIG_{remote}_PASS; unset DEEP_STORAGE_PASSWORD; "
)
#: copy in: `sh -c SCRIPT sh SOURCE DEST`
COPY_IN_SCRIPT = _OBSCURE + 'exec rclone --config "" copy "$1" "$2" ' + " ".join(COPY_FLAGS)
#: copy back when the kubelet stops the sidecar: `sh -c SCRIPT sh SOURCE DEST`. The trap is set
#: first, so a training that ends at once still has its results uploaded.
COPY_OUT_SCRIPT = (
    # the trap only sets a flag: a signal that lands between two commands (before the first
    # `wait`, say) is then seen at the next round instead of racing the shell's own handling
    'src=$1; dst=$2; ended=""; trap "ended=1" TERM INT; '
    + 'echo "storage: waiting for the training to end, then uploading $src"; '
    # short sleeps in the background: `wait` returns as soon as the signal arrives
    + 'while [ -z "$ended" ]; do sleep 1 & wait $!; done; '
    # the last sleep is stopped, or it would keep the container's output open
    + "trap '' TERM INT; kill $! 2>/dev/null; "
    + 'echo "storage: uploading results"; '
    + _OBSCURE
    + 'rclone --config "" copy "$src" "$dst" '
    + " ".join(COPY_FLAGS)
    + "; rc=$?; "
    + 'if [ $rc -eq 0 ]; then echo "storage: results uploaded"; '
    + 'else echo "storage: upload failed (rclone exit $rc)" >&2; fi; exit $rc'
)
#: FUSE mount: `sh -c SCRIPT sh SOURCE MOUNTPOINT [extra flags]`
FUSE_SCRIPT = _OBSCURE + 'src=$1; dst=$2; shift 2; exec rclone --config "" mount "$src" "$dst" "$@"'


#: on the PV and claim of mode `mount`: the owner's namespace (its kind and name are in pod.labels)
LABEL_NAMESPACE = "deep-hybrid-datacloud.eu/namespace"


class StorageUnavailable(ValueError):
    """A storage mount that this site cannot provide; the message names the field and the fix."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path


@dataclass
class StorageParts:
    """What a builder adds to its pod: everything empty when the object has no storage."""

    #: init containers, in order: copy-ins, then the native sidecars
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    #: pod volumes
    volumes: list[dict[str, Any]] = field(default_factory=list)
    #: volumeMounts for the main container
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    #: env for the main container: DEEP_STORAGE_<NAME>=mountPath, so code can find its data
    env: list[dict[str, Any]] = field(default_factory=list)
    #: other objects to apply before the pod's owner (PersistentVolume, PersistentVolumeClaim)
    objects: list[dict[str, Any]] = field(default_factory=list)
    #: the pod's terminationGracePeriodSeconds, when an upload needs more than the default 30 s
    termination_grace_period_seconds: int | None = None

    def apply_to(self, pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
        """Add the parts to a pod spec and its main container (in place)."""
        if self.init_containers:
            pod_spec["initContainers"] = [*pod_spec.get("initContainers", []), *self.init_containers]
        if self.volumes:
            pod_spec["volumes"] = [*pod_spec.get("volumes", []), *self.volumes]
        if self.volume_mounts:
            container["volumeMounts"] = [*container.get("volumeMounts", []), *self.volume_mounts]
        if self.env:
            container["env"] = [*container.get("env", []), *self.env]
        if self.termination_grace_period_seconds is not None:
            current = pod_spec.get("terminationGracePeriodSeconds", 30)
            pod_spec["terminationGracePeriodSeconds"] = max(current, self.termination_grace_period_seconds)


def remote_name(mount: StorageMount) -> str:
    """The rclone remote's name; env var names use it upper-cased."""
    return mount.name


def remote_spec(mount: StorageMount) -> str:
    """`name:path` as rclone reads it, path relative to the url."""
    return f"{remote_name(mount)}:{mount.remote_path.strip('/')}"


def local_path(mount: StorageMount) -> str:
    return f"{LOCAL_ROOT}/{mount.name}"


def volume_name(mount: StorageMount) -> str:
    return f"{VOLUME_PREFIX}{mount.name}"


def rclone_env(mount: StorageMount) -> list[dict[str, Any]]:
    """The remote as RCLONE_CONFIG_<NAME>_* variables; credentials by reference only."""
    upper = remote_name(mount).upper()
    secret = mount.secret_ref
    env: list[dict[str, Any]] = [
        {"name": f"RCLONE_CONFIG_{upper}_TYPE", "value": "webdav"},
        {"name": f"RCLONE_CONFIG_{upper}_URL", "value": mount.url},
        {"name": f"RCLONE_CONFIG_{upper}_VENDOR", "value": "nextcloud"},
        {
            "name": f"RCLONE_CONFIG_{upper}_USER",
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.user_key}},
        },
        {
            "name": PASSWORD_ENV,
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.password_key}},
        },
    ]
    if not NEXTCLOUD_FILES_URL.search(mount.url):
        # rclone >= 1.63 refuses vendor nextcloud on any other URL unless chunked upload is off
        env.append({"name": f"RCLONE_CONFIG_{upper}_NEXTCLOUD_CHUNK_SIZE", "value": "0"})
    # the image's HOME may not be writable for the pod's non-root user
    env.append({"name": "HOME", "value": "/tmp"})  # noqa: S108
    return env


def _script(template: str, mount: StorageMount) -> str:
    return template.replace("{remote}", remote_name(mount).upper())


def _storage_container(
    name: str, image: str, mount: StorageMount, script: str, args: list[str]
) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "command": ["sh", "-c", _script(script, mount), "sh"],
        "args": args,
        "env": rclone_env(mount),
        "resources": STORAGE_RESOURCES,
        "volumeMounts": [{"name": volume_name(mount), "mountPath": local_path(mount)}],
        "securityContext": pod.container_security_context(),
        # rclone's last lines become the terminated state's message: the reason of a failure
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def copy_in_container(mount: StorageMount, image: str) -> dict[str, Any]:
    return _storage_container(
        f"{IN_PREFIX}{mount.name}", image, mount, COPY_IN_SCRIPT, [remote_spec(mount), local_path(mount)]
    )


def copy_out_sidecar(mount: StorageMount, image: str) -> dict[str, Any]:
    container = _storage_container(
        f"{OUT_PREFIX}{mount.name}",
        image,
        mount,
        COPY_OUT_SCRIPT,
        [local_path(mount), remote_spec(mount)],
    )
    # a native sidecar: runs beside the main container, stopped (SIGTERM) once it has ended
    container["restartPolicy"] = "Always"
    return container


def fuse_sidecar(mount: StorageMount, image: str) -> dict[str, Any]:
    """A privileged rclone FUSE mount shared with the main container through mount propagation."""
    flags = ["--allow-other", "--uid", str(pod.DEFAULT_UID), "--gid", str(pod.DEFAULT_UID)]
    flags += ["--vfs-cache-mode", "writes", "--dir-cache-time", "30s"]
    if mount.read_only:
        flags.append("--read-only")
    mountpoint = local_path(mount)
    container = _storage_container(
        f"{FUSE_PREFIX}{mount.name}", image, mount, FUSE_SCRIPT, [remote_spec(mount), mountpoint, *flags]
    )
    container["restartPolicy"] = "Always"
    container["volumeMounts"] = [
        {"name": volume_name(mount), "mountPath": mountpoint, "mountPropagation": "Bidirectional"}
    ]
    # mount(2) on /dev/fuse needs CAP_SYS_ADMIN and the device: only a privileged root container
    container["securityContext"] = {
        "privileged": True,
        "runAsUser": 0,
        "runAsNonRoot": False,
        "allowPrivilegeEscalation": True,
    }
    # the main container starts only once the mount is there
    container["startupProbe"] = {
        "exec": {"command": ["sh", "-c", f'grep -qs " {mountpoint} fuse" /proc/mounts']},
        "periodSeconds": 1,
        "failureThreshold": 120,
    }
    return container


def persistent_volume_name(owner: CustomObject[Any, Any], mount: StorageMount) -> str:
    """Cluster-wide unique PV name; hashed when namespace + owner + mount would not fit."""
    name = f"deep-{owner.namespace}-{owner.name}-{mount.name}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:242]}-{digest}"


def claim_name(owner: CustomObject[Any, Any], mount: StorageMount) -> str:
    name = f"{owner.name}-storage-{mount.name}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:242]}-{digest}"


def csi_objects(
    owner: CustomObject[Any, Any], mount: StorageMount, driver: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A statically bound PV + PVC pair for the site's rclone CSI driver.

    The PV is cluster-scoped, so it cannot be owned by the namespaced object: the controller
    deletes it by its labels when the owner goes. The driver reads the credentials itself from
    the user's Secret (nodePublishSecretRef); the operator never does.
    """
    # the namespace too: the cluster-scoped PV is found (and deleted) by these labels alone
    labels = {**pod.labels(owner, "storage", None), LABEL_NAMESPACE: owner.namespace}
    access = "ReadOnlyMany" if mount.read_only else "ReadWriteMany"
    pvc = claim_name(owner, mount)
    attributes = {
        "remote": "webdav",
        "remotePath": mount.remote_path.strip("/"),
        "webdav-url": mount.url,
        "webdav-vendor": "nextcloud",
    }
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": persistent_volume_name(owner, mount), "labels": labels},
        "spec": {
            "accessModes": [access],
            # the size is required by the API and ignored by rclone drivers
            "capacity": {"storage": "1Ti"},
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": owner.namespace, "name": pvc},
            "csi": {
                "driver": driver,
                "volumeHandle": persistent_volume_name(owner, mount),
                "readOnly": mount.read_only,
                "volumeAttributes": attributes,
                "nodePublishSecretRef": {"name": mount.secret_ref.name, "namespace": owner.namespace},
            },
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": pvc,
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": {
            "accessModes": [access],
            "storageClassName": "",
            "volumeName": persistent_volume_name(owner, mount),
            "resources": {"requests": {"storage": "1Ti"}},
        },
    }
    return pv, claim


def check_duplicates(mounts: list[StorageMount]) -> None:
    seen: dict[str, int] = {}
    paths: dict[str, int] = {}
    for index, mount in enumerate(mounts):
        if mount.name in seen:
            raise StorageUnavailable(
                f"spec.storage[{index}].name",
                f"{mount.name!r} is already the name of spec.storage[{seen[mount.name]}]; "
                "give each storage entry its own name",
            )
        if mount.mount_path in paths:
            raise StorageUnavailable(
                f"spec.storage[{index}].mountPath",
                f"{mount.mount_path!r} is already used by spec.storage[{paths[mount.mount_path]}]; "
                "give each storage entry its own mountPath",
            )
        seen[mount.name] = index
        paths[mount.mount_path] = index


def build_storage(
    owner: CustomObject[Any, Any],
    mounts: list[StorageMount],
    config: OperatorConfig,
    *,
    upload_results: bool,
) -> StorageParts:
    """The pod parts for `mounts`. upload_results: copy writable folders back when the pod ends
    (training); serving pods only read. Raises StorageUnavailable naming the field and the fix."""
    parts = StorageParts()
    check_duplicates(mounts)
    sidecars: list[dict[str, Any]] = []
    for index, mount in enumerate(mounts):
        upper = mount.name.upper()
        parts.env.append({"name": f"DEEP_STORAGE_{upper}", "value": mount.mount_path})
        main_mount: dict[str, Any] = {"name": volume_name(mount), "mountPath": mount.mount_path}
        if mount.mode == StorageMode.copy:
            parts.volumes.append({"name": volume_name(mount), "emptyDir": {}})
            parts.init_containers.append(copy_in_container(mount, config.rclone_image))
            if upload_results and not mount.read_only:
                sidecars.append(copy_out_sidecar(mount, config.rclone_image))
                parts.termination_grace_period_seconds = config.storage_upload_seconds
        elif config.rclone_csi_driver:
            pv, claim = csi_objects(owner, mount, config.rclone_csi_driver)
            parts.objects += [pv, claim]
            parts.volumes.append(
                {
                    "name": volume_name(mount),
                    "persistentVolumeClaim": {
                        "claimName": claim["metadata"]["name"],
                        "readOnly": mount.read_only,
                    },
                }
            )
        elif config.rclone_fuse_sidecar:
            parts.volumes.append({"name": volume_name(mount), "emptyDir": {}})
            sidecars.append(fuse_sidecar(mount, config.rclone_image))
            main_mount["mountPropagation"] = "HostToContainer"
        else:
            raise StorageUnavailable(
                f"spec.storage[{index}].mode",
                "`mount` needs an rclone CSI driver and this site has none configured; use "
                "mode `copy`, or ask the site admin to set the chart's storage.csiDriver "
                "(DEEP_RCLONE_CSI_DRIVER)",
            )
        if mount.read_only:
            main_mount["readOnly"] = True
        parts.volume_mounts.append(main_mount)
    parts.init_containers += sidecars
    return parts
