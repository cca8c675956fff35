"""InferenceService: a module's DEEPaaS API served, scaled to zero while idle."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from pydantic import Field

from .auth import ServiceAuth
from .base import MODULE_OR_IMAGE, CrdInfo, CustomObject, SpecRule, Status, condition_column
from .common import (
    DNS_SUBDOMAIN_PATTERN,
    IMAGE_MAX_LENGTH,
    IMAGE_PATTERN,
    LIST_MAP_BY_NAME,
    ApiModel,
    EnvVar,
    Resources,
    StorageMount,
    Toleration,
)

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


class Scaling(ApiModel):
    """How many replicas serve the model, and when they go to zero."""

    min_replicas: int = Field(
        0, ge=0, le=100, description="Replicas kept even when idle; 0 allows scale to zero."
    )
    max_replicas: int = Field(1, ge=1, le=100, description="Upper bound of replicas.")
    target_concurrency: int = Field(
        4,
        ge=1,
        le=10000,
        description="In-flight requests per replica above which another replica is added.",
    )
    scale_to_zero_after: str = Field(
        "5m",
        pattern=DURATION_PATTERN,
        description="Idle time since the last request before going to zero (`30s`, `5m`, `1h`).",
    )
    prewarm: bool = Field(
        False,
        description=(
            "Send a warm-up request when a new version becomes ready, before the service "
            "reports Ready, so the first user request does not pay the model's load time."
        ),
    )


class InferenceServiceSpec(ApiModel):
    """Which module to serve, with which resources and scaling."""

    module: str | None = Field(
        None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description=(
            "Name of the Module to serve. Its image and default inference resources are used "
            "unless set here; a new Module image rolls out unless image is pinned here."
        ),
    )
    image: str | None = Field(
        None,
        pattern=IMAGE_PATTERN,
        max_length=IMAGE_MAX_LENGTH,
        description="Container image; pins the image, overriding the Module's."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Environment variables for the model container.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    resources: Resources | None = Field(
        None, description="CPU, memory and GPUs per replica; defaults to the Module's."
    )
    storage: list[StorageMount] = Field(
        default_factory=list,
        description="WebDAV/NextCloud folders (model weights) copied into each replica.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    scaling: Scaling = Field(
        default_factory=Scaling,
        description="Replica bounds and idling.",
        json_schema_extra={"default": {}},
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the serving pods must run on."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints the serving pods tolerate."
    )
    auth: ServiceAuth | None = Field(
        None,
        description=(
            "Who may call the service through the activator; without it the site's default "
            "applies (chart activator.auth: a token from the site's issuer, unless public)."
        ),
    )


class InferenceServiceStatus(Status):
    """Where to reach the model and how it scales."""

    url: str | None = Field(None, description="URL of the model's DEEPaaS API via the activator.")
    replicas: int | None = Field(None, description="Replicas asked for right now.")
    ready_replicas: int | None = Field(None, description="Replicas ready to serve.")
    last_request_time: dt.datetime | None = Field(
        None, description="When the activator last saw a request for this service."
    )
    cold_starts: int | None = Field(None, description="Times a request woke the service from zero.")
    image: str | None = Field(None, description="Image the serving Deployment runs.")
    version: str | None = Field(
        None, description="Hash of the serving pod template: changes when a new version rolls out."
    )
    warmed_version: str | None = Field(
        None,
        description=(
            "Version the activator sent the warm-up request to (with scaling.prewarm); the "
            "service reports Ready only once it equals version."
        ),
    )


class InferenceService(CustomObject[InferenceServiceSpec, InferenceServiceStatus]):
    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="InferenceService",
        plural="inferenceservices",
        namespaced=True,
        short_names=("disvc",),
        description=(
            "Serve a module's DEEPaaS API over HTTP; idle services scale to zero and wake on the "
            "first request."
        ),
        printer_columns=(
            {"name": "Module", "type": "string", "jsonPath": ".spec.module"},
            {"name": "URL", "type": "string", "jsonPath": ".status.url"},
            condition_column("Ready", "Ready"),
            {"name": "Replicas", "type": "integer", "jsonPath": ".status.readyReplicas"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {
                "name": "Last Request",
                "type": "date",
                "jsonPath": ".status.lastRequestTime",
                "priority": 1,
            },
        ),
        spec_rules=(
            MODULE_OR_IMAGE,
            SpecRule(
                "spec.scaling.minReplicas must not exceed spec.scaling.maxReplicas",
                "!has(self.scaling) || self.scaling.minReplicas <= self.scaling.maxReplicas",
                lambda spec: spec.scaling.min_replicas <= spec.scaling.max_replicas,
            ),
        ),
    )
    kind: str = "InferenceService"
