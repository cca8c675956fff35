"""What every kind has in common: the object envelope and its CRD facts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .common import API_VERSION, GROUP, VERSION, ApiModel, Condition, ObjectMeta


@dataclass(frozen=True)
class SpecRule:
    """A cross-field rule, enforced twice from one place: CEL in the CRD, Python offline."""

    message: str
    cel: str
    holds: Callable[[Any], bool]


#: TrainingJobs and InferenceServices run a Module's image, or one given directly
MODULE_OR_IMAGE = SpecRule(
    "set spec.module (a Module name) or spec.image",
    "has(self.module) || has(self.image)",
    lambda spec: bool(spec.module or spec.image),
)


def condition_column(name: str, condition: str, field: str = "status", priority: int = 0) -> dict[str, Any]:
    """A printer column showing one field of one condition (`kubectl get` reads the list-map)."""
    column: dict[str, Any] = {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].{field}',
    }
    if priority:
        column["priority"] = priority
    return column


@dataclass(frozen=True)
class CrdInfo:
    """What the CRD says about a kind besides its schema."""

    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...]
    printer_columns: tuple[dict[str, Any], ...]
    description: str
    spec_rules: tuple[SpecRule, ...] = field(default=())

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


class Status(ApiModel):
    """Status every kind shares: conditions and the generation they describe."""

    model_config = ConfigDict(extra="ignore")  # status written by older operators stays readable

    observed_generation: int | None = Field(
        None, description="The metadata.generation the operator last reconciled."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Current state, one entry per condition type.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )


SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=Status)


ObjT = TypeVar("ObjT", bound="CustomObject[Any, Any]")


class CustomObject(BaseModel, Generic[SpecT, StatusT]):
    """The envelope: apiVersion, kind, metadata, spec, status."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    crd: ClassVar[CrdInfo]

    api_version: str = Field(API_VERSION, alias="apiVersion")
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SpecT
    status: StatusT

    @model_validator(mode="after")
    def _spec_rules_hold(self) -> Self:
        broken = [rule.message for rule in self.crd.spec_rules if not rule.holds(self.spec)]
        if broken:
            raise ValueError("spec: " + "; ".join(broken))
        return self

    @classmethod
    def from_body(cls: type[ObjT], body: Any) -> ObjT:
        """Parse an object as the API server returns it (a dict or kopf's Body)."""
        data = dict(body)
        data.setdefault("status", {})
        return cls.model_validate(data)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    def owner_reference(self) -> dict[str, Any]:
        """An ownerReference that makes children go when this object goes."""
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": self.crd.kind,
            "name": self.metadata.name,
            "uid": self.metadata.uid or "",
            "controller": True,
            "blockOwnerDeletion": True,
        }
