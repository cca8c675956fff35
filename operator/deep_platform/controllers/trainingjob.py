"""TrainingJob controller: run the training Job and mirror its state."""

from __future__ import annotations

from typing import Any

import kopf

from ..api import GROUP, VERSION, Module, TrainingJob
from ..api.trainingjob import TrainingJobStatus
from ..builders.trainingjob import build_job
from ..conditions import set_condition
from ..kube import kind_of
from ..metrics import instrumented
from . import runtime
from .reconciler import announce_transitions, invalid_spec_status, parse, plain, write_status
from .settings import RESYNC_SECONDS

KIND = kind_of(TrainingJob)
MODULE_KIND = kind_of(Module)


@kopf.on.resume(GROUP, VERSION, "trainingjobs")
@kopf.on.create(GROUP, VERSION, "trainingjobs")
@kopf.on.update(GROUP, VERSION, "trainingjobs")
@kopf.timer(GROUP, VERSION, "trainingjobs", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
def trainingjob_changed(body: kopf.Body, **_: Any) -> None:
    reconcile_trainingjob(runtime.current(), plain(body))


@instrumented("trainingjob")
def reconcile_trainingjob(rt: runtime.Runtime, body: dict[str, Any]) -> None:
    before = TrainingJobStatus.model_validate(body.get("status") or {})
    tj = parse(TrainingJob, body)
    if isinstance(tj, list):
        status = invalid_spec_status(TrainingJobStatus, body, tj, "Ready")
        status.phase = "Failed"
    else:
        status = tj.status.model_copy(deep=True)
        generation = tj.metadata.generation
        module = None
        if tj.spec.module:
            module_body = rt.kube.get(MODULE_KIND, tj.spec.module)
            module = Module.from_body(module_body) if module_body else None
        if tj.spec.module and module is None and not tj.spec.image:
            status.phase = "Pending"
            set_condition(
                status,
                "Ready",
                False,
                "ModuleNotFound",
                f"Module {tj.spec.module!r} does not exist; create it or fix spec.module",
                generation,
            )
        else:
            job = build_job(tj, module)
            rt.kube.apply(job)
            status.job_name = job["metadata"]["name"]
            status.phase = status.phase or "Pending"
            set_condition(status, "Ready", True, "JobCreated", f"Job {status.job_name} created", generation)
        status.observed_generation = generation
    if write_status(rt.kube, KIND, body, status):
        announce_transitions(
            rt.kube, body, before, status, warning_reasons=lambda reason: reason != "JobCreated"
        )
