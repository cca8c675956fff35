"""TrainingJob: retrain a module on GPUs (the DEEP training facility)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar

from pydantic import Field, field_validator

from .base import MODULE_OR_IMAGE, CrdInfo, CustomObject, SpecRule, Status
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

#: An object of free-form values. Not a map of untyped values (`additionalProperties` with
#: preserve-unknown-fields): CEL drops such a field from its type, so a real API server refuses
#: every rule that names it ("undefined field"). Names and values are checked by the model.
HYPERPARAMETERS_EXTRA: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}
#: what `deepaas-cli train --NAME=value` accepts as NAME
HYPERPARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


class TrainingJobSpec(ApiModel):
    """What to train, with which data and resources, and how the run may fail."""

    module: str | None = Field(
        None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description=(
            "Name of the Module to retrain. Its image and default training resources are used "
            "unless image or resources are set here."
        ),
    )
    image: str | None = Field(
        None,
        pattern=IMAGE_PATTERN,
        max_length=IMAGE_MAX_LENGTH,
        description="Container image to run; overrides the Module's image.",
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Training arguments, passed to `deepaas-cli train` as `--name value` options "
            "(numbers, booleans, strings and lists)."
        ),
        json_schema_extra=HYPERPARAMETERS_EXTRA,
    )
    command: list[str] | None = Field(
        None,
        description="Command for images without DEEPaaS; replaces `deepaas-cli train`.",
    )
    args: list[str] | None = Field(None, description="Arguments to command.")
    env: list[EnvVar] = Field(
        default_factory=list,
        description="Environment variables for the training container.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    resources: Resources | None = Field(
        None, description="CPU, memory, disk and GPUs; defaults to the Module's training resources."
    )
    storage: list[StorageMount] = Field(
        default_factory=list,
        description="WebDAV/NextCloud folders with the data set, and where results go back.",
        json_schema_extra=LIST_MAP_BY_NAME,
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the training pod must run on."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Taints the training pod tolerates."
    )
    priority_class_name: str | None = Field(None, description="PriorityClass of the training pod.")
    queue_name: str | None = Field(
        None,
        description=(
            "Kueue LocalQueue to submit to. The Job is created suspended and Kueue admits it "
            "when the queue has quota."
        ),
    )
    suspend: bool = Field(False, description="Stop the training (pods deleted); false resumes.")
    backoff_limit: int = Field(
        2, ge=0, le=100, description="Retries after a retriable failure before the job fails."
    )
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Wall-clock limit for the whole run, retries included."
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, le=2**31 - 1, description="Delete the Job and its pods this long after it finished."
    )
    non_retryable_exit_codes: list[int] | None = Field(
        None,
        max_length=255,
        description=(
            "Exit codes of the training container that fail the job at once, without retries "
            "(a bug or bad hyperparameters will not go away by retrying). Default: 1 to 127; "
            "codes from 128 up (killed by a signal, such as 137 for OOMKilled) are retried up "
            "to backoffLimit. An empty list retries every failure. Evictions and preemptions "
            "never count as failures."
        ),
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 255}},
    )

    @field_validator("hyperparameters")
    @classmethod
    def _hyperparameter_names(cls, values: dict[str, Any]) -> dict[str, Any]:
        bad = [name for name in values if not HYPERPARAMETER_NAME.match(name)]
        if bad:
            raise ValueError(
                f"hyperparameter names become `deepaas-cli train --NAME=value` options: {bad} "
                "must start with a letter or `_` and hold only letters, digits, `_` and `-`"
            )
        return values

    @field_validator("non_retryable_exit_codes")
    @classmethod
    def _exit_codes_in_range(cls, codes: list[int] | None) -> list[int] | None:
        bad = [code for code in codes or [] if not 1 <= code <= 255]
        if bad:
            raise ValueError(f"exit codes run from 1 to 255; remove {bad}")
        return sorted(set(codes)) if codes is not None else None


class TrainingJobStatus(Status):
    """What the training run is doing, mirrored from its Job and pod."""

    phase: str | None = Field(
        None,
        description=(
            "Summary for people: Queued, Suspended, Pending, Running, Restarting, Succeeded or Failed."
        ),
    )
    reason: str | None = Field(None, description="Why the job is in its phase (`OOMKilled`).")
    message: str | None = Field(None, description="Details for people.")
    job_name: str | None = Field(None, description="Name of the batch/v1 Job.")
    pod_name: str | None = Field(None, description="Name of the latest training pod.")
    node_name: str | None = Field(None, description="Node the latest pod runs on.")
    gpu_product: str | None = Field(None, description="GPU product of that node.")
    gpus: int | None = Field(None, description="GPUs (or MIG instances) the training pod asks for.")
    exit_code: int | None = Field(None, description="Exit code of the training container, once it ended.")
    restarts: int | None = Field(None, description="Container restarts and pod retries so far.")
    start_time: dt.datetime | None = Field(None, description="When training started.")
    completion_time: dt.datetime | None = Field(None, description="When training ended.")
    duration: str | None = Field(None, description="How long training ran (`1h2m3s`).")
    gpu_utilization_percent: int | None = Field(
        None,
        description=(
            "While running: percent of time a kernel ran on the pod's GPU, as its node's GPU agent "
            "last reported it (refreshed on each reconciliation)."
        ),
    )


class TrainingJob(CustomObject[TrainingJobSpec, TrainingJobStatus]):
    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="TrainingJob",
        plural="trainingjobs",
        namespaced=True,
        short_names=("dtj",),
        description=("Retrain a module of the catalogue, or any DEEPaaS image, on GPUs with your data."),
        printer_columns=(
            {"name": "Module", "type": "string", "jsonPath": ".spec.module"},
            {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Duration", "type": "string", "jsonPath": ".status.duration"},
            {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
            {"name": "Node", "type": "string", "jsonPath": ".status.nodeName", "priority": 1},
        ),
        spec_rules=(
            MODULE_OR_IMAGE,
            SpecRule(
                "spec.hyperparameters are passed to deepaas-cli train; with spec.command, "
                "pass them in spec.args instead",
                "!has(self.command) || !has(self.hyperparameters)",
                lambda spec: spec.command is None or "hyperparameters" not in spec.model_fields_set,
            ),
        ),
    )
    kind: str = "TrainingJob"
