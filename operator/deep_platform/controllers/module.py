"""Module controller: publish the module to the catalogue."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import GROUP, VERSION, Module
from ..api.module import ModuleStatus
from ..builders.module import build_catalogue_entry
from ..conditions import set_condition
from ..kube import kind_of
from ..metrics import instrumented
from . import runtime
from .reconciler import announce_transitions, invalid_spec_status, parse, plain, write_status
from .settings import RESYNC_SECONDS

KIND = kind_of(Module)


@kopf.on.resume(GROUP, VERSION, "modules")
@kopf.on.create(GROUP, VERSION, "modules")
@kopf.on.update(GROUP, VERSION, "modules")
@kopf.timer(GROUP, VERSION, "modules", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def module_changed(body: kopf.Body, **_: Any) -> None:
    reconcile_module(runtime.current(), plain(body))


@instrumented("module")
def reconcile_module(rt: runtime.Runtime, body: dict[str, Any]) -> None:
    before = ModuleStatus.model_validate(body.get("status") or {})
    module = parse(Module, body)
    if isinstance(module, list):
        status = invalid_spec_status(ModuleStatus, body, module, "Ready")
    else:
        status = module.status.model_copy(deep=True)
        generation = module.metadata.generation
        entry = build_catalogue_entry(module, rt.config.platform_namespace)
        rt.kube.apply(entry)
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
    if write_status(rt.kube, KIND, body, status):
        announce_transitions(rt.kube, body, before, status)
