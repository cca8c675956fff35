"""TrainingJob: retrain a module on GPUs (the DEEP training facility)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, field_validator

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


#: Katib's default metrics-collector pattern: `name=value` pairs anywhere in a line
DEFAULT_METRIC_PATTERN = (
    r"(?P<name>[A-Za-z_][\w.-]*)\s*=\s*(?P<value>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
)
#: what a metric may be called in status.progress.metrics (and as a Prometheus label value)
METRIC_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,62}$"
MAX_METRICS = 32


class ProgressCollector(ApiModel):
    """Read progress from what the training prints, with no change in the module."""

    stdout: bool = Field(
        False,
        description=(
            "Read the training container's output: Keras' `Epoch 3/15` lines and `name=value` "
            "pairs (as Katib's collector) are reported as progress. The output still reaches "
            "`kubectl logs`, and the exit code is the training's."
        ),
    )
    pattern: str | None = Field(
        None,
        max_length=1024,
        description=(
            "Regular expression (Python syntax) for one metric in a line, with the named groups "
            "`name` and `value`; default: `name=value` pairs. `epoch` and `step` set the epoch and step."
        ),
    )

    @field_validator("pattern")
    @classmethod
    def _pattern_has_groups(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(
                f"not a regular expression ({exc}); fix spec.progress.collector.pattern"
            ) from None
        missing = {"name", "value"} - set(compiled.groupindex)
        if missing:
            raise ValueError(
                f"needs the named groups {sorted(missing)}, like `(?P<name>\\w+)=(?P<value>[0-9.eE+-]+)`"
            )
        return pattern


class ProgressSpec(ApiModel):
    """How the training's progress is followed (reports come in either way; see docs/training.md)."""

    stall_after_seconds: int = Field(
        900,
        ge=30,
        le=7 * 86400,
        description=(
            "While the pod runs, the `Progressing` condition turns False (reason `Stalled`, or "
            "`NoReport` when none ever came) after this many seconds without a progress report."
        ),
    )
    collector: ProgressCollector | None = Field(
        None, description="Collect progress from the training's output (opt-in)."
    )


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
    progress: ProgressSpec | None = Field(
        None,
        description=(
            "Follow the training's progress: the stall time of the `Progressing` condition and "
            "the standard-output collector. Reports pushed by the training are taken without it."
        ),
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


class TrainingJobProgress(ApiModel):
    """The latest progress report, written by the operator's progress endpoint only."""

    model_config = ConfigDict(extra="ignore")

    epoch: int | None = Field(None, ge=0, description="Epochs done.")
    total_epochs: int | None = Field(None, ge=0, description="Epochs the training runs.")
    step: int | None = Field(None, ge=0, description="Steps done (when the training counts steps).")
    total_steps: int | None = Field(None, ge=0, description="Steps the training runs.")
    percent: int | None = Field(None, ge=0, le=100, description="Share done, in percent.")
    summary: str | None = Field(None, description="Short form for `kubectl get` (`7/15`).")
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Latest value of each reported metric (`loss`, `accuracy`).",
        json_schema_extra={"maxProperties": MAX_METRICS},
    )
    reports: int | None = Field(None, ge=0, description="Reports received so far.")
    last_report_time: dt.datetime | None = Field(None, description="When the latest report came.")
    estimated_completion_time: dt.datetime | None = Field(
        None, description="When the training should end at the pace of the reports so far."
    )


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
    progress: TrainingJobProgress | None = Field(
        None,
        description=(
            "Epochs or steps done, metrics and estimated end, from the training's own reports "
            "(history: the dashboard)."
        ),
    )
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
            {"name": "Progress", "type": "string", "jsonPath": ".status.progress.summary"},
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
