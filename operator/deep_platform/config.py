"""Operator settings, from the command line or the environment (the chart sets the latter)."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _env_json(name: str, expected: type, example: str) -> Any:
    """A JSON value from the environment; a wrong one stops the operator naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return expected()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"{name} is not JSON ({exc}); write it like {example}") from None
    if not isinstance(value, expected):
        raise ValueError(f"{name} must be a JSON {expected.__name__}, like {example}")
    return value


@dataclass
class OperatorConfig:
    #: where catalogue ConfigMaps live and the activator runs
    platform_namespace: str = field(
        default_factory=lambda: os.environ.get("DEEP_PLATFORM_NAMESPACE", "deep-platform")
    )
    #: namespaces to watch; empty means the whole cluster
    namespaces: list[str] = field(default_factory=lambda: _env_list("DEEP_WATCH_NAMESPACES"))
    metrics_port: int = field(default_factory=lambda: int(os.environ.get("DEEP_METRICS_PORT", "8000")))
    health_port: int = field(default_factory=lambda: int(os.environ.get("DEEP_HEALTH_PORT", "8080")))
    #: base URL users reach the activator at; an InferenceService's url is BASE/NAMESPACE/NAME/
    activator_url: str = field(
        default_factory=lambda: os.environ.get(
            "DEEP_ACTIVATOR_URL", "http://deep-platform-activator.deep-platform.svc"
        )
    )
    #: how often every object is reconciled even when nothing happened (level-based safety net)
    resync_seconds: float = field(default_factory=lambda: float(os.environ.get("DEEP_RESYNC_SECONDS", "300")))
    #: how many reconciliations run at once (kopf's thread pool for sync handlers)
    workers: int = field(default_factory=lambda: int(os.environ.get("DEEP_WORKERS", "16")))
    #: image of the storage init containers and sidecars (needs `rclone` and a POSIX `sh`)
    rclone_image: str = field(
        default_factory=lambda: os.environ.get("DEEP_RCLONE_IMAGE", "rclone/rclone:1.68")
    )
    #: name of the site's rclone CSI driver for storage mode `mount`; empty: none installed
    rclone_csi_driver: str = field(default_factory=lambda: os.environ.get("DEEP_RCLONE_CSI_DRIVER", ""))
    #: allow storage mode `mount` through a privileged rclone FUSE sidecar when no CSI driver exists
    rclone_fuse_sidecar: bool = field(
        default_factory=lambda: os.environ.get("DEEP_RCLONE_FUSE_SIDECAR", "").lower() in ("1", "true", "yes")
    )
    #: seconds a training pod has, once it ends, to upload its results (its termination grace period)
    storage_upload_seconds: int = field(
        default_factory=lambda: int(os.environ.get("DEEP_STORAGE_UPLOAD_SECONDS", "1800"))
    )
    #: node labels every GPU pod (training or serving) must run on, on top of its own nodeSelector
    gpu_node_selector: dict[str, str] = field(
        default_factory=lambda: _env_json("DEEP_GPU_NODE_SELECTOR", dict, '{"node-role/gpu": "true"}')
    )
    #: tolerations every GPU pod gets (the `nvidia.com/gpu` taint is always tolerated)
    gpu_tolerations: list[dict[str, Any]] = field(
        default_factory=lambda: _env_json(
            "DEEP_GPU_TOLERATIONS", list, '[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]'
        )
    )
    #: RuntimeClass that exposes GPUs to containers on this site (`nvidia`); empty: the default
    gpu_runtime_class: str = field(default_factory=lambda: os.environ.get("DEEP_GPU_RUNTIME_CLASS", ""))
    #: port of the progress endpoint in the operator process (`deep-platform run`); unset: none
    #: served by this process; 0: any free port (tests)
    progress_port: int | None = field(
        default_factory=lambda: int(os.environ["DEEP_PROGRESS_PORT"]) if os.environ.get("DEEP_PROGRESS_PORT")
        else None
    )
    #: where training pods reach that endpoint (the chart's Service of the operator)
    progress_url: str = field(
        default_factory=lambda: os.environ.get(
            "DEEP_PROGRESS_URL", "http://deep-platform-operator-progress.deep-platform.svc:8090"
        )
    )
    #: the platform's own image: the stdout progress collector sidecar runs `deep-platform report`
    platform_image: str = field(
        default_factory=lambda: os.environ.get(
            "DEEP_PLATFORM_IMAGE", "ghcr.io/deep-hybrid-datacloud/deep-platform:latest"
        )
    )
    #: image of DevEnvironments that name neither a Module nor an image (JupyterLab and VS Code)
    dev_image: str = field(
        default_factory=lambda: os.environ.get("DEEP_DEV_IMAGE", "ai4oshub/ai4os-dev-env:latest")
    )
    #: seconds between two uploads of a DevEnvironment's writable storage folders
    dev_upload_seconds: int = field(
        default_factory=lambda: int(os.environ.get("DEEP_DEV_UPLOAD_SECONDS", "600"))
    )


@functools.cache
def site_settings() -> OperatorConfig:
    """The operator's settings (from its environment, set by the chart), read once per process:
    the site-wide parts the pure builders need (storage images, GPU placement)."""
    return OperatorConfig()
