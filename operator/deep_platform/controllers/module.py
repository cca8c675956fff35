"""Module controller: check the metadata, publish the module to the catalogue, roll out new
images to the InferenceServices that use it (continuous delivery)."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ..api import GROUP, VERSION, InferenceService, Module
from ..api.module import ModuleStatus
from ..builders.module import build_catalogue_entry
from ..catalogue import index
from ..conditions import set_condition
from ..kube import kind_of
from ..metrics import instrumented
from . import runtime
from .reconciler import announce_transitions, invalid_spec_status, parse, plain, write_status
from .settings import RESYNC_SECONDS

log = logging.getLogger(__name__)
KIND = kind_of(Module)
SERVICES = kind_of(InferenceService)


@kopf.on.resume(GROUP, VERSION, "modules")
@kopf.on.create(GROUP, VERSION, "modules")
@kopf.on.update(GROUP, VERSION, "modules")
@kopf.timer(GROUP, VERSION, "modules", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def module_changed(body: kopf.Body, **_: Any) -> None:
    reconcile_module(runtime.current(), plain(body))


@kopf.on.event(GROUP, VERSION, "modules")
def module_event(type: str | None, **_: Any) -> None:
    """A deleted Module leaves the index on the next rebuild. An event handler, not on.delete,
    so no finalizer is needed: the entry ConfigMap goes by garbage collection."""
    if type == "DELETED":
        rt = runtime.current()
        index.writer_for(rt.kube, rt.config.platform_namespace).mark_stale()


@kopf.on.event(GROUP, VERSION, "inferenceservices")
def inferenceservice_event(body: kopf.Body, **_: Any) -> None:
    """A service that starts or stops using a Module updates that Module's users and endpoints."""
    name = (body.get("spec") or {}).get("module")
    if not name:
        return
    rt = runtime.current()
    module = rt.kube.get(KIND, name)
    if module is not None:
        reconcile_module(rt, module)


@kopf.on.cleanup()
def stop_index_writers(**_: Any) -> None:
    index.stop_all()


def users_of(rt: runtime.Runtime, name: str) -> list[dict[str, Any]]:
    """InferenceServices, in every namespace, that serve this Module."""
    found = [
        body
        for body in rt.kube.list(SERVICES)
        if (body.get("spec") or {}).get("module") == name and not body["metadata"].get("deletionTimestamp")
    ]
    return sorted(found, key=lambda b: (b["metadata"]["namespace"], b["metadata"]["name"]))


def roll_out(rt: runtime.Runtime, users: list[dict[str, Any]]) -> list[str]:
    """Re-apply every service that takes its image from the Module; those pinning their own
    spec.image keep it. Returns the services rolled out."""
    from .inferenceservice import reconcile_inferenceservice  # late: avoids an import cycle

    rolled = []
    for body in users:
        if (body.get("spec") or {}).get("image"):
            continue
        reconcile_inferenceservice(rt, body)
        rolled.append(f"{body['metadata']['namespace']}/{body['metadata']['name']}")
    return rolled


@instrumented("module")
def reconcile_module(rt: runtime.Runtime, body: dict[str, Any]) -> None:
    before = ModuleStatus.model_validate(body.get("status") or {})
    module = parse(Module, body)
    writer = index.writer_for(rt.kube, rt.config.platform_namespace)
    if isinstance(module, list):
        status = invalid_spec_status(ModuleStatus, body, module, "Ready")
    else:
        status = module.status.model_copy(deep=True)
        generation = module.metadata.generation
        problems = writer.cache.problems(module)
        # invalid metadata is published all the same, flagged: hiding it would lose the module
        set_condition(
            status,
            "MetadataValid",
            not problems,
            "Valid" if not problems else "InvalidMetadata",
            "; ".join(f"spec.metadata.{p}" for p in problems),
            generation,
        )
        users = users_of(rt, module.name)
        status.inference_services = [f"{u['metadata']['namespace']}/{u['metadata']['name']}" for u in users]
        endpoints = [u["status"]["url"] for u in users if (u.get("status") or {}).get("url")]
        entry = build_catalogue_entry(module, rt.config.platform_namespace, endpoints, problems)
        rt.kube.apply(entry)
        if status.image is not None and status.image != module.spec.image:
            rolled = roll_out(rt, users)
            log.info("Module %s: image %s -> %s rolled out to %s", module.name, status.image,
                     module.spec.image, ", ".join(rolled) or "no service")
        status.catalogue_entry = entry["metadata"]["name"]
        status.image = module.spec.image
        set_condition(
            status,
            "Ready",
            True,
            "Published",
            f"in the catalogue as {rt.config.platform_namespace}/{status.catalogue_entry}",
            generation,
        )
        status.observed_generation = generation
    writer.mark_stale()
    if write_status(rt.kube, KIND, body, status):
        announce_transitions(
            rt.kube, body, before, status, warning_reasons=lambda r: r in {"InvalidMetadata", "InvalidSpec"}
        )
