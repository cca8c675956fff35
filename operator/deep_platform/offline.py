"""What the operator would do, without a cluster: validate manifests, render their children."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .api import API_VERSION, DevEnvironment, InferenceService, Module, TrainingJob
from .api.base import CustomObject
from .api.common import DNS_SUBDOMAIN_PATTERN
from .builders.devenvironment import build_all as build_devenv
from .builders.inferenceservice import build_all as build_serving
from .builders.module import build_catalogue_entry
from .builders.trainingjob import build_job
from .config import OperatorConfig
from .errors import describe_validation_error

MODELS: dict[str, type[CustomObject[Any, Any]]] = {
    m.crd.kind: m for m in (Module, TrainingJob, InferenceService, DevEnvironment)
}


@dataclass
class Document:
    path: Path
    index: int
    body: Any

    @property
    def where(self) -> str:
        name = ""
        if isinstance(self.body, dict):
            kind = self.body.get("kind", "?")
            name = f" {kind}/{(self.body.get('metadata') or {}).get('name', '?')}"
        return f"{self.path}#{self.index}{name}"


def read_documents(paths: Iterable[str | Path]) -> list[Document]:
    """Every YAML document of every file (a folder: its *.yaml and *.yml files)."""
    docs: list[Document] = []
    for raw in paths:
        path = Path(raw)
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
        for file in files:
            with file.open(encoding="utf-8") as stream:
                for index, body in enumerate(yaml.safe_load_all(stream)):
                    if body is not None:
                        docs.append(Document(file, index, body))
    return docs


def problems(doc: Document) -> list[str]:
    """What a real API server (with our CRDs) would reject in this document."""
    body = doc.body
    if not isinstance(body, dict):
        return ["not a mapping; a manifest starts with apiVersion, kind and metadata"]
    kind = body.get("kind")
    if body.get("apiVersion") != API_VERSION or kind not in MODELS:
        return []  # not ours: left to the API server
    model = MODELS[kind]
    found: list[str] = []
    meta = body.get("metadata") or {}
    name = meta.get("name", "")

    if not re.match(DNS_SUBDOMAIN_PATTERN, str(name)) or len(str(name)) > 253:
        found.append(
            "metadata.name: must be lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    if model.crd.namespaced is False and meta.get("namespace"):
        found.append(f"metadata.namespace: a {kind} is cluster-scoped; remove the namespace")
    if "spec" not in body:
        found.append("spec: required field is missing")
        return found
    try:
        model.model_validate({**body, "status": {}})
    except ValidationError as exc:
        found += describe_validation_error(exc)
    return found


def validate(paths: Iterable[str | Path]) -> list[str]:
    """One line per problem, prefixed with file, document and object; empty when all is well."""
    return [f"{doc.where}: {p}" for doc in read_documents(paths) for p in problems(doc)]


def _sibling_modules(docs: list[Document]) -> dict[str, Module]:
    """Modules among the inputs and in YAML files beside them, to resolve spec.module offline."""
    folders = {doc.path.parent for doc in docs}
    candidates = list(docs)
    seen = {doc.path for doc in docs}
    for folder in folders:
        for file in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            if file not in seen:
                try:
                    candidates += read_documents([file])
                except yaml.YAMLError:
                    continue
    modules: dict[str, Module] = {}
    for doc in candidates:
        if isinstance(doc.body, dict) and doc.body.get("kind") == "Module" and not problems(doc):
            module = Module.from_body(doc.body)
            modules.setdefault(module.name, module)
    return modules


#: Helm's install order (its `InstallOrder`), the kinds a reader of `render` may meet: what
#: others refer to (namespaces, claims, config) before what refers to it (workloads)
APPLY_ORDER = [
    "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodDisruptionBudget",
    "ServiceAccount", "Secret", "ConfigMap", "StorageClass", "PersistentVolume",
    "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
    "Role", "RoleBinding", "Service", "DaemonSet", "Pod", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
]

#: kinds without a namespace among those the operator creates
CLUSTER_SCOPED = {"Namespace", "StorageClass", "PersistentVolume", "CustomResourceDefinition",
                  "ClusterRole", "ClusterRoleBinding", "IngressClass"}


def apply_rank(obj: dict[str, Any]) -> int:
    """Where an object goes in apply order; kinds Helm does not list go last, as in Helm."""
    kind = obj.get("kind")
    return APPLY_ORDER.index(kind) if kind in APPLY_ORDER else len(APPLY_ORDER)


def render(paths: Iterable[str | Path], config: OperatorConfig | None = None) -> list[dict[str, Any]]:
    """The children the operator would create for every object in the files, in apply order
    (stable: objects of one kind keep the order of their files), exactly as the builders return
    them, owner references included (their `uid` is empty offline; see `to_yaml`)."""
    config = config or OperatorConfig()
    docs = read_documents(paths)
    errors = [f"{doc.where}: {p}" for doc in docs for p in problems(doc)]
    if errors:
        raise ValueError("\n".join(errors))
    modules = _sibling_modules(docs)
    out: list[dict[str, Any]] = []
    for doc in docs:
        kind = doc.body.get("kind")
        if kind == "Module":
            out.append(build_catalogue_entry(Module.from_body(doc.body), config.platform_namespace))
        elif kind in ("TrainingJob", "InferenceService", "DevEnvironment"):
            body = dict(doc.body)
            body["metadata"] = {"namespace": "default", **(body.get("metadata") or {})}
            obj = MODELS[kind].from_body(body)
            module = modules.get(obj.spec.module) if obj.spec.module else None
            if obj.spec.module and module is None and not obj.spec.image:
                raise ValueError(
                    f"{doc.where}: spec.module: Module {obj.spec.module!r} is not among the "
                    "inputs nor beside them; pass its file with another -f"
                )
            if isinstance(obj, TrainingJob):
                out.append(build_job(obj, module))
            elif isinstance(obj, DevEnvironment):
                # not the IDE-token Secret: only the operator makes its token (a placeholder
                # applied by hand would become the token)
                out += build_devenv(obj, module, config)
            else:
                out += build_serving(obj, module)  # type: ignore[arg-type]
    for child in out:
        if child.get("kind") not in CLUSTER_SCOPED and not child["metadata"].get("namespace"):
            # a builder bug: kubectl would put the object in its own default namespace
            raise ValueError(f"{child['kind']}/{child['metadata'].get('name')}: no namespace")
    return sorted(out, key=apply_rank)


class _PlainDumper(yaml.SafeDumper):
    """YAML for any reader: an object used twice (a builder's labels) is written out twice,
    never as an anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _owners(refs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{ref.get('kind')} {ref.get('name')}" for ref in refs)


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    """What `kubectl apply -f -` takes as it is: one plain YAML document per object, in the order
    given. Owner references are left out (the API server refuses one without its owner's live
    uid, which only the operator knows); a comment above the document says which owner the
    operator sets."""
    parts: list[str] = []
    for obj in objects:
        body = copy.deepcopy(obj)
        meta = body.get("metadata") or {}
        refs = meta.pop("ownerReferences", None)
        head = "---\n"
        if refs:
            head += (
                f"# ownerReferences (owner: {_owners(refs)}) left out: they need the owner's live\n"
                "# uid, and the operator sets them when it creates this object\n"
            )
        parts.append(head + yaml.dump(body, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True))
    return "".join(parts)
