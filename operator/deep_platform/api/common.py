"""Types shared by the three kinds: resources with a GPU block, storage mounts, conditions.

Field names are camelCase in YAML (as every Kubernetes API) and snake_case in Python.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ..gpu.mig import MIG_PROFILE_PATTERN, mig_profile_problem

GROUP = "deep-hybrid-datacloud.eu"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: The API server's own syntax of a resource quantity ("500m", "2", "16Gi", "1e3"), without the
#: minus sign: no resource can be negative.
QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY_EXTRA: dict[str, Any] = {"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}


def _check_quantity(value: str | int) -> str | int:
    if isinstance(value, str) and not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a quantity; write it like 500m, 4, 16Gi or 512Mi")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{value} is negative; a resource quantity must be 0 or more")
    return value


#: A Kubernetes quantity or a plain number.
Quantity = Annotated[str | int, AfterValidator(_check_quantity)]
#: A container image reference as the kubelet parses it (distribution's reference grammar):
#: `[host[:port]/]path[:tag][@algorithm:digest]`, path components in lowercase. A name the
#: kubelet cannot parse (a space, an upper-case letter) gives pods that never start.
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_PATTERN = (
    rf"^(?:(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?/)?"
    rf"{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
IMAGE_MAX_LENGTH = 512
#: a label value (the GPU product is matched against a node label)
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
#: DNS-1123 label: names of Kubernetes objects that end up in Service/DNS names.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: DNS-1123 subdomain: names of most Kubernetes objects (Modules, Secrets...).
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


#: a list whose items are merged by name (env, storage): server-side apply and CRD validation
#: treat each entry as its own, and names must be unique
LIST_MAP_BY_NAME: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["name"],
}


class ApiModel(BaseModel):
    """Base of every API type: camelCase aliases, unknown fields rejected, docs from descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    def to_api(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class GPU(ApiModel):
    """GPUs for one pod: how many, and optionally which product, memory or MIG slice."""

    count: int = Field(
        1,
        ge=0,
        le=64,
        description="Number of GPUs (or MIG instances when migProfile is set) for the pod.",
    )
    product: str | None = Field(
        None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description=(
            "GPU product as in the `nvidia.com/gpu.product` node label set by GPU feature "
            "discovery, for example `NVIDIA-A100-SXM4-80GB`. The pod only runs on such nodes."
        ),
    )
    min_memory: Quantity | None = Field(
        None,
        description=(
            "Smallest GPU memory acceptable, as a quantity (`40Gi`). Matched against the "
            "`nvidia.com/gpu.memory` node label (MiB) of GPU feature discovery."
        ),
        json_schema_extra=QUANTITY_EXTRA,
    )
    mig_profile: str | None = Field(
        None,
        json_schema_extra={"pattern": MIG_PROFILE_PATTERN},
        description=(
            "MIG profile as nvidia-smi names it (`1g.10gb`, `1g.10gb+me`, `3g.40gb`): the pod asks "
            "for MIG instances of that profile instead of whole GPUs, the resource the NVIDIA "
            "device plugin advertises with `migStrategy: mixed` (`nvidia.com/mig-1g.10gb`, "
            "`nvidia.com/mig-1g.10gb.me`). Compute-instance profiles (`1c.2g.20gb`) are not "
            "advertised and are refused."
        ),
    )

    @field_validator("mig_profile")
    @classmethod
    def _advertised_mig_profile(cls, profile: str | None) -> str | None:
        problem = None if profile is None else mig_profile_problem(profile)
        if problem:
            raise ValueError(problem)
        return profile


class Resources(ApiModel):
    """Compute resources for one pod. Requests equal limits, so pods get the Guaranteed class."""

    cpu: Quantity | None = Field(
        None, description="CPU cores, a quantity (`4`, `500m`).", json_schema_extra=QUANTITY_EXTRA
    )
    memory: Quantity | None = Field(
        None, description="Memory, a quantity (`16Gi`).", json_schema_extra=QUANTITY_EXTRA
    )
    ephemeral_storage: Quantity | None = Field(
        None,
        description="Local scratch disk for the pod, a quantity (`20Gi`).",
        json_schema_extra=QUANTITY_EXTRA,
    )
    gpu: GPU | None = Field(None, description="GPUs for the pod; leave out for CPU only.")


class SecretKeys(ApiModel):
    """Where the WebDAV credentials live: a Secret in the same namespace and its keys."""

    name: str = Field(..., pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="Name of the Secret.")
    user_key: str = Field("user", description="Key of the Secret that holds the user name.")
    password_key: str = Field(
        "password", description="Key of the Secret that holds the password or app token."
    )


class StorageMode(StrEnum):
    copy = "copy"
    mount = "mount"


#: http(s), no user:password@ before the host: credentials belong in the Secret, and the URL
#: shows up in status messages and Events
WEBDAV_URL_PATTERN = r"^https?://[^/@\s]+(/\S*)?$"


class StorageMount(ApiModel):
    """A WebDAV or NextCloud folder made available inside the pod."""

    name: str = Field(
        ...,
        pattern=r"^[a-z]([a-z0-9]*)$",
        max_length=32,
        description="Short name of the mount (lowercase letters and digits), unique in the list.",
    )
    url: str = Field(
        ...,
        json_schema_extra={"pattern": WEBDAV_URL_PATTERN},
        description=(
            "WebDAV endpoint, for NextCloud `https://HOST/remote.php/dav/files/USER` or "
            "`https://HOST/remote.php/webdav`. No credentials in the URL: they go in secretRef."
        ),
    )
    secret_ref: SecretKeys = Field(..., description="Secret with the user and password.")

    @field_validator("url")
    @classmethod
    def _url_without_credentials(cls, url: str) -> str:
        if not re.match(WEBDAV_URL_PATTERN, url):
            # the URL is not echoed: it may hold a password
            raise ValueError(
                "must look like https://HOST/PATH, with no user:password@ before the host "
                "(credentials go in secretRef)"
            )
        return url
    remote_path: str = Field("/", description="Folder on the server, relative to url.")
    mount_path: str = Field(
        ...,
        pattern=r"^/(.*\S)?$",
        description="Absolute path where the folder appears in the container.",
    )
    mode: StorageMode = Field(
        StorageMode.copy,
        description=(
            "`copy`: an init container copies the folder in (and, for training, results back "
            "out); works under Pod Security restricted. `mount`: a live mount through the "
            "site's rclone CSI driver."
        ),
    )
    read_only: bool = Field(False, description="Never write back to this folder.")


class ConditionStatus(StrEnum):
    true = "True"
    false = "False"
    unknown = "Unknown"


class Condition(ApiModel):
    """One aspect of the object's state, as metav1.Condition."""

    type: str = Field(..., description="Kind of condition, CamelCase (`Ready`).")
    status: ConditionStatus = Field(..., description="`True`, `False` or `Unknown`.")
    reason: str = Field(..., description="CamelCase reason for the last transition, for machines.")
    message: str = Field("", description="Human-readable details of the last transition.")
    last_transition_time: dt.datetime = Field(..., description="When the status last changed.")
    observed_generation: int | None = Field(
        None, description="The metadata.generation this condition was computed for."
    )


class Toleration(ApiModel):
    """A toleration as in the pod spec."""

    key: str | None = Field(None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="`Exists` or `Equal` (default).")
    value: str | None = Field(None, description="Taint value to match for `Equal`.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class KeySelector(ApiModel):
    """One key of a Secret or ConfigMap in the object's namespace."""

    name: str = Field(
        ..., pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="Name of the Secret or ConfigMap."
    )
    key: str = Field(
        ..., pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="The key whose value is used."
    )
    optional: bool | None = Field(None, description="Start even if the object or key is missing.")


class FieldSelector(ApiModel):
    """A field of the pod, as the downward API exposes it (`metadata.name`, `status.podIP`)."""

    field_path: str = Field(..., min_length=1, description="Path of the field, such as `metadata.name`.")
    api_version: str | None = Field(None, description="Version of the schema the path is written in.")


class ResourceFieldSelector(ApiModel):
    """A resource limit or request of the container (`limits.memory`, `requests.cpu`)."""

    resource: str = Field(..., min_length=1, description="`limits.cpu`, `requests.memory`...")
    container_name: str | None = Field(None, description="Container to read; this one by default.")
    divisor: Quantity | None = Field(
        None, description="Unit the value is expressed in (`1Mi`).", json_schema_extra=QUANTITY_EXTRA
    )


#: env[].valueFrom names one source, as the pod spec wants
ONE_ENV_SOURCE = "exactly one of secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef"


class EnvVarSource(ApiModel):
    """Where a variable's value comes from: exactly one of the four sources."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.secretKeyRef) ? 1 : 0) + (has(self.configMapKeyRef) ? 1 : 0) + "
                    "(has(self.fieldRef) ? 1 : 0) + (has(self.resourceFieldRef) ? 1 : 0) == 1",
                    "message": f"set {ONE_ENV_SOURCE}",
                }
            ]
        }
    )

    secret_key_ref: KeySelector | None = Field(None, description="A key of a Secret.")
    config_map_key_ref: KeySelector | None = Field(None, description="A key of a ConfigMap.")
    field_ref: FieldSelector | None = Field(None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(
        None, description="A resource of the container."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        sources = [self.secret_key_ref, self.config_map_key_ref, self.field_ref, self.resource_field_ref]
        if sum(source is not None for source in sources) != 1:
            raise ValueError(f"set {ONE_ENV_SOURCE}")
        return self


class EnvVar(ApiModel):
    """An environment variable: a value, or a reference as in the pod spec's `valueFrom`."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.valueFrom) || !has(self.value) || self.value == ''",
                    "message": "set value or valueFrom, not both",
                }
            ]
        }
    )

    name: str = Field(
        ...,
        pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$",
        max_length=253,
        description="Variable name.",
    )
    value: str | None = Field(None, description="Literal value.")
    value_from: EnvVarSource | None = Field(
        None, description="A source for the value (secretKeyRef, configMapKeyRef, fieldRef...)."
    )

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value_from is not None and self.value:
            raise ValueError("set value or valueFrom, not both")
        return self


class ObjectMeta(BaseModel):
    """The few metadata fields the operator reads; the rest is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(None, alias="resourceVersion")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
