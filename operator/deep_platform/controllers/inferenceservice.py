"""InferenceService controller: the serving Deployment and Service, and their status."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import GROUP, VERSION, InferenceService, Module
from ..api.inferenceservice import InferenceServiceStatus
from ..builders.inferenceservice import build_all
from ..conditions import set_condition
from ..kube import kind_of
from ..metrics import instrumented
from . import runtime
from .reconciler import announce_transitions, invalid_spec_status, parse, plain, write_status
from .settings import RESYNC_SECONDS

KIND = kind_of(InferenceService)
MODULE_KIND = kind_of(Module)


@kopf.on.resume(GROUP, VERSION, "inferenceservices")
@kopf.on.create(GROUP, VERSION, "inferenceservices")
@kopf.on.update(GROUP, VERSION, "inferenceservices")
@kopf.timer(GROUP, VERSION, "inferenceservices", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def inferenceservice_changed(body: kopf.Body, **_: Any) -> None:
    reconcile_inferenceservice(runtime.current(), plain(body))


def service_url(rt: runtime.Runtime, isvc: InferenceService) -> str:
    return f"{rt.config.activator_url.rstrip('/')}/{isvc.namespace}/{isvc.name}/"


@instrumented("inferenceservice")
def reconcile_inferenceservice(rt: runtime.Runtime, body: dict[str, Any]) -> None:
    before = InferenceServiceStatus.model_validate(body.get("status") or {})
    isvc = parse(InferenceService, body)
    if isinstance(isvc, list):
        status = invalid_spec_status(InferenceServiceStatus, body, isvc, "Ready")
    else:
        status = isvc.status.model_copy(deep=True)
        generation = isvc.metadata.generation
        module = None
        if isvc.spec.module:
            module_body = rt.kube.get(MODULE_KIND, isvc.spec.module)
            module = Module.from_body(module_body) if module_body else None
        if isvc.spec.module and module is None and not isvc.spec.image:
            set_condition(
                status,
                "Ready",
                False,
                "ModuleNotFound",
                f"Module {isvc.spec.module!r} does not exist; create it or fix spec.module",
                generation,
            )
        else:
            for child in build_all(isvc, module):
                rt.kube.apply(child)
            status.url = service_url(rt, isvc)
            scaled_to_zero = isvc.spec.scaling.min_replicas == 0
            set_condition(
                status,
                "ScaledToZero",
                scaled_to_zero,
                "Idle" if scaled_to_zero else "MinReplicas",
                "no replica runs until a request arrives" if scaled_to_zero else "",
                generation,
            )
            set_condition(
                status,
                "Ready",
                scaled_to_zero,
                "ScaledToZero" if scaled_to_zero else "Deploying",
                "the first request starts a replica" if scaled_to_zero else "waiting for a ready replica",
                generation,
            )
        status.observed_generation = generation
    if write_status(rt.kube, KIND, body, status):
        announce_transitions(
            rt.kube,
            body,
            before,
            status,
            warning_reasons=lambda reason: reason in {"ModuleNotFound", "InvalidSpec"},
        )
