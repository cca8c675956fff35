"""DevEnvironment: JupyterLab or VS Code on a GPU with a module's code, asleep while idle.

The DEEP platform's third workflow beside training and serving: a researcher develops and tries
a model in an IDE reached through the activator at `/<namespace>/<name>/`. With no traffic and
no busy kernel for `idleTimeout` the environment sleeps (replicas 0, the home volume stays); the
next request wakes it.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import ClassVar

from pydantic import Field, field_validator

from .auth import ServiceAuth
from .base import CrdInfo, CustomObject, Status, condition_column
from .common import (
    DNS_SUBDOMAIN_PATTERN,
    IMAGE_MAX_LENGTH,
    IMAGE_PATTERN,
    LIST_MAP_BY_NAME,
    QUANTITY_EXTRA,
    ApiModel,
    EnvVar,
    Quantity,
    Resources,
    StorageMount,
    Toleration,
)
from .inferenceservice import DURATION_PATTERN


class Ide(StrEnum):
    jupyterlab = "jupyterlab"
    vscode = "vscode"


class HomeVolume(ApiModel):
    """A PersistentVolumeClaim mounted as the IDE's home: it survives sleeping and restarts."""

    size: Quantity = Field(
        "10Gi", description="Size of the claim, a quantity (`10Gi`).", json_schema_extra=QUANTITY_EXTRA
    )
    storage_class_name: str | None = Field(
        None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="StorageClass of the claim; the cluster's default class when left out.",
    )
    mount_path: str = Field(
        "/home/deep",
        pattern=r"^/(.*\S)?$",
        max_length=1024,
        description="Where the home folder appears in the IDE (its working directory).",
    )


class DevEnvironmentSpec(ApiModel):
    """Which module to develop, in which IDE, with which resources and data."""

    module: str | None = Field(
        None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description=(
            "Name of the Module to develop: its image and default training resources are used "
            "unless set here. With neither module nor image, the site's development image."
        ),
    )
    image: str | None = Field(
        None,
        pattern=IMAGE_PATTERN,
        max_length=IMAGE_MAX_LENGTH,
        description="Container image with the IDE installed; overrides the Module's.",
    )
    ide: Ide = Field(Ide.jupyterlab, description="The IDE to run: `jupyterlab` or `vscode`.")
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Environment variables for the IDE container.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    resources: Resources | None = Field(
        None, description="CPU, memory and GPUs; defaults to the Module's training resources."
    )
    storage: list[StorageMount] = Field(
        default_factory=list,
        description=(
            "WebDAV/NextCloud folders copied in at start; writable ones are copied back "
            "periodically and when the environment stops (remote files are never deleted)."
        ),
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    home: HomeVolume = Field(
        default_factory=HomeVolume,
        description="The persistent home folder.",
        json_schema_extra={"default": {}},
    )
    idle_timeout: str = Field(
        "1h",
        json_schema_extra={"pattern": DURATION_PATTERN},
        description=(
            "Time without HTTP or WebSocket traffic and without a busy kernel before the "
            "environment sleeps (`30s`, `15m`, `1h`)."
        ),
    )

    @field_validator("idle_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not re.match(DURATION_PATTERN, value):
            raise ValueError(f"{value!r} is not a duration; write it like 30s, 15m or 1h30m")
        return value
    auth: ServiceAuth | None = Field(
        None, description="Who may open the environment through the activator (as for serving)."
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the environment's pod must run on."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints the environment's pod tolerates."
    )


class DevEnvironmentStatus(Status):
    """Where to open the IDE and whether it is awake."""

    phase: str | None = Field(
        None, description="Summary for people: Starting, Ready, Sleeping or Failed."
    )
    reason: str | None = Field(None, description="Why the environment is in its phase.")
    url: str | None = Field(None, description="URL of the IDE via the activator.")
    image: str | None = Field(None, description="Image the IDE runs.")
    replicas: int | None = Field(None, description="1 while awake, 0 while sleeping.")
    token_secret: str | None = Field(
        None, description="Secret holding the IDE's own token (the token itself is never shown)."
    )
    last_activity_time: dt.datetime | None = Field(
        None,
        description="When the activator last saw traffic, an open WebSocket or a busy kernel.",
    )


class DevEnvironment(CustomObject[DevEnvironmentSpec, DevEnvironmentStatus]):
    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="DevEnvironment",
        plural="devenvironments",
        namespaced=True,
        short_names=("ddev",),
        description=(
            "JupyterLab or VS Code with a module's code and your data, on a GPU; it sleeps when "
            "idle (the home volume stays) and wakes on the next request."
        ),
        printer_columns=(
            {"name": "Module", "type": "string", "jsonPath": ".spec.module"},
            {"name": "IDE", "type": "string", "jsonPath": ".spec.ide"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "URL", "type": "string", "jsonPath": ".status.url"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {
                "name": "Last Activity",
                "type": "date",
                "jsonPath": ".status.lastActivityTime",
                "priority": 1,
            },
            condition_column("Reason", "Ready", field="reason", priority=1),
        ),
    )
    kind: str = "DevEnvironment"
