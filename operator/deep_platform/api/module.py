"""Module: one entry of the DEEP Open Catalogue (cluster-scoped)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from .base import CrdInfo, CustomObject, Status, condition_column
from .common import IMAGE_MAX_LENGTH, IMAGE_PATTERN, ApiModel, Resources


class Capabilities(ApiModel):
    """What users may do with the module."""

    trainable: bool = Field(True, description="TrainingJobs may retrain this module.")
    servable: bool = Field(True, description="InferenceServices may serve this module.")


class DefaultResources(ApiModel):
    """Resources used when a TrainingJob or InferenceService does not set its own."""

    training: Resources | None = Field(None, description="Default resources for training.")
    inference: Resources | None = Field(None, description="Default resources for serving.")


class ModuleSpec(ApiModel):
    """A Docker image that exposes the DEEPaaS API, with its AI4 metadata."""

    image: str = Field(
        ...,
        pattern=IMAGE_PATTERN,
        max_length=IMAGE_MAX_LENGTH,
        description=(
            "Container image with the DEEPaaS API (`deepaas-run` on port 5000, "
            "`deepaas-cli train`), as `registry/name:tag` or `name@sha256:...`. "
            "Changing it rolls out to every InferenceService that uses the module."
        ),
    )
    model: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        max_length=128,
        description=(
            "Name of the DEEPaaS model in the image (its entry point in the `deepaas.v2.model` "
            "group), set as DEEPAAS_V2_MODEL for training and serving. Needed when the image "
            "installs several models; deepaas picks the only one otherwise."
        ),
    )
    capabilities: Capabilities = Field(
        default_factory=Capabilities,
        description="Whether the module can be trained and served.",
        json_schema_extra={"default": {}},
    )
    resources: DefaultResources | None = Field(
        None, description="Default resources for training and serving."
    )
    metadata: dict[str, Any] = Field(
        ...,
        description=(
            "AI4 metadata v2 as published in the module's `ai4-metadata.yml` (title, summary, "
            "description, links, tasks, categories, libraries, tags, data-type, resources, "
            "license, dates). Checked against the AI4 metadata schema; problems show up in the "
            "MetadataValid condition."
        ),
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class ModuleStatus(Status):
    """What the catalogue knows about the module."""

    catalogue_entry: str | None = Field(
        None, description="Name of the catalogue ConfigMap (in the platform namespace) of this module."
    )
    image: str | None = Field(None, description="The image last published to the catalogue.")
    inference_services: list[str] = Field(
        default_factory=list,
        description="InferenceServices that serve this module, as `namespace/name`.",
    )


class Module(CustomObject[ModuleSpec, ModuleStatus]):
    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="Module",
        plural="modules",
        namespaced=False,
        short_names=("dmod",),
        description=(
            "A module of the DEEP Open Catalogue: a Docker image exposing the DEEPaaS API and "
            "its AI4 metadata. TrainingJobs and InferenceServices refer to it by name."
        ),
        printer_columns=(
            {"name": "Title", "type": "string", "jsonPath": ".spec.metadata.title"},
            {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
            condition_column("Ready", "Ready"),
            condition_column("Metadata", "MetadataValid", field="reason", priority=1),
        ),
    )
    kind: str = "Module"
