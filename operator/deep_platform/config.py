"""Operator settings, from the command line or the environment (the chart sets the latter)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


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
