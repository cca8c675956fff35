"""The Argo CD health checks (charts/deep-platform/files/argocd/*.lua) run in a real Lua
interpreter on statuses computed by the operator's own code, and say what an Argo CD user expects:
a service scaled to zero is Healthy, a spec change not yet reconciled is Progressing, a failed
training is Degraded. The docs and the chart carry the very same text.
"""

from __future__ import annotations

import re
from typing import Any, cast

import lupa
import pytest
import yaml

from deep_platform.api import InferenceService
from deep_platform.api.devenvironment import DevEnvironmentStatus
from deep_platform.api.inferenceservice import InferenceServiceStatus
from deep_platform.api.module import ModuleStatus
from deep_platform.api.trainingjob import TrainingJobStatus
from deep_platform.builders.inferenceservice import VERSION_ANNOTATION
from deep_platform.builders.trainingjob import CONTAINER_NAME
from deep_platform.builders.trainingjob_observe import observe
from deep_platform.conditions import set_condition
from deep_platform.controllers import devenvironment as dec
from deep_platform.controllers import trainingjob as tjc
from deep_platform.controllers.inferenceservice import serving_conditions
from deep_platform.controllers.reconciler import invalid_spec_status
from tests.chart import chart

KINDS = ("Module", "TrainingJob", "InferenceService", "DevEnvironment")
#: each check as the chart renders it: the shared prelude, then the kind's own part
LUA = {kind: "".join((chart.CHART / "files" / "argocd" / f"{part}.lua").read_text()
                     for part in ("_prelude", kind)) for kind in KINDS}
KEY = "resource.customizations.health.deep-hybrid-datacloud.eu_{}"
GENERATION = 4


def health(kind: str, status: Any, generation: int = GENERATION) -> tuple[str, str]:
    """Run the check as Argo CD does: the object in the global `obj`, a table returned."""
    body: dict[str, Any] = {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
    }
    if status is not None:
        body["status"] = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(body, recursive=True)
    result = lua.execute(LUA[kind])
    assert result["status"] in ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
    return str(result["status"]), str(result["message"])


# -- InferenceService: Ready as serving_conditions computes it from the Deployment and pods


def isvc(prewarm: bool = False) -> InferenceService:
    return InferenceService.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "x", "namespace": "ns", "generation": GENERATION},
            "spec": {"image": "registry/model:1", "scaling": {"prewarm": prewarm}},
        }
    )


def serving(
    replicas: int,
    ready: int,
    pods: list[dict[str, Any]] = (),
    prewarm: bool = False,  # type: ignore[assignment]
    warmed: str | None = None,
) -> InferenceServiceStatus:
    deployment = {
        "spec": {"replicas": replicas, "template": {"metadata": {"annotations": {VERSION_ANNOTATION: "v2"}}}},
        "status": {"readyReplicas": ready},
    }
    status = InferenceServiceStatus(warmedVersion=warmed)
    serving_conditions(status, isvc(prewarm), deployment, list(pods))
    status.observed_generation = GENERATION
    return status


def waiting_pod(reason: str, last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "x-1"},
        "status": {
            "containerStatuses": [
                {
                    "name": "deepaas",
                    "state": {"waiting": {"reason": reason}},
                    "lastState": {"terminated": last or {}},
                }
            ]
        },
    }


UNSCHEDULABLE_POD = {
    "metadata": {"name": "x-1"},
    "status": {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes have a GPU",
            }
        ]
    },
}


def isvc_blocked(reason: str) -> InferenceServiceStatus:
    status = InferenceServiceStatus()
    set_condition(status, "Ready", False, reason, "what is wrong", GENERATION)
    status.observed_generation = GENERATION
    return status


@pytest.mark.parametrize(
    ("status", "expected", "says"),
    [
        (serving(0, 0), "Healthy", "ScaledToZero"),
        (serving(2, 2), "Healthy", "Serving: 2/2"),
        (serving(2, 1), "Healthy", "Serving: 1/2"),
        (serving(1, 0), "Progressing", "Starting"),
        (serving(1, 0, prewarm=True, warmed="v1"), "Progressing", "Prewarming"),
        (
            serving(1, 0, [waiting_pod("CrashLoopBackOff", {"exitCode": 1, "message": "ImportError"})]),
            "Degraded",
            "CrashLoopBackOff",
        ),
        (serving(1, 0, [waiting_pod("ImagePullBackOff")]), "Degraded", "ImagePullBackOff"),
        (
            serving(1, 0, [waiting_pod("CrashLoopBackOff", {"reason": "OOMKilled", "exitCode": 137})]),
            "Degraded",
            "OOMKilled",
        ),
        (serving(1, 0, [UNSCHEDULABLE_POD]), "Degraded", "0/3 nodes have a GPU"),
        (isvc_blocked("ModuleNotFound"), "Degraded", "ModuleNotFound"),
        (isvc_blocked("StorageUnavailable"), "Degraded", "StorageUnavailable"),
        (
            invalid_spec_status(
                InferenceServiceStatus,
                {"metadata": {"generation": GENERATION}},
                ["spec.scaling.minReplicas: must be >= 0"],
                "Ready",
            ),
            "Degraded",
            "InvalidSpec",
        ),
        (None, "Progressing", "Waiting for the operator"),
    ],
)
def test_inferenceservice_health(status: InferenceServiceStatus | None, expected: str, says: str) -> None:
    got, message = health("InferenceService", status)
    assert got == expected and says in message, (got, message)


def test_a_spec_change_not_yet_reconciled_is_progressing_whatever_the_old_status_says() -> None:
    for kind, status in (
        ("InferenceService", serving(2, 2)),
        ("InferenceService", isvc_blocked("ModuleNotFound")),
        ("Module", module_status(valid=True)),
        ("TrainingJob", training(job(failed=True), [])),
    ):
        assert health(kind, status, generation=GENERATION + 1) == (
            "Progressing",
            "Spec change not yet reconciled",
        ), kind
        assert health(kind, status)[0] != "Progressing", kind  # the same status, reconciled


# -- TrainingJob: phase and conditions as observe() and apply_observation() write them


def job(
    complete: bool = False, failed: bool = False, suspend: bool = False, failures: int = 0
) -> dict[str, Any]:
    conditions = []
    if complete:
        conditions.append(
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T01:00:00Z"}
        )
    if failed:
        conditions.append(
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2026-01-01T01:00:00Z",
            }
        )
    return {
        "metadata": {"name": "x"},
        "spec": {"suspend": suspend},
        "status": {"conditions": conditions, "failed": failures, "startTime": "2026-01-01T00:00:00Z"},
    }


def pod(phase: str, waiting: str | None = None, terminated: dict[str, Any] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {}
    if terminated:
        state = {"terminated": terminated}
    return {
        "metadata": {"name": "x-abc", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": phase, "containerStatuses": [{"name": CONTAINER_NAME, "state": state}]},
    }


def training(job_body: dict[str, Any], pods: list[dict[str, Any]], queued: bool = False) -> TrainingJobStatus:
    status = TrainingJobStatus(jobName="x")
    set_condition(status, "Ready", True, "JobCreated", "Job x runs the training", GENERATION)
    seen = observe(job_body, pods, queued=queued)
    # the runtime is read only for the GPU product of a GPU job: none here
    tjc.apply_observation(cast(Any, None), status, seen, TrainingJobStatus(), GENERATION)
    status.observed_generation = GENERATION
    return status


def training_blocked(reason: str) -> TrainingJobStatus:
    status = tjc._block(TrainingJobStatus(), reason, "what is wrong", GENERATION)
    status.observed_generation = GENERATION
    return status


@pytest.mark.parametrize(
    ("status", "phase", "expected"),
    [
        (training(job(suspend=True), [], queued=True), "Queued", "Progressing"),
        (training(job(suspend=True), []), "Suspended", "Suspended"),
        (training(job(), []), "Pending", "Progressing"),  # JobCreated, no pod yet
        (training(job(), [pod("Pending", "ContainerCreating")]), "Pending", "Progressing"),
        (training(job(), [pod("Pending", "ImagePullBackOff")]), "Pending", "Degraded"),
        (training(job(), [pod("Running")]), "Running", "Progressing"),
        (
            training(
                job(failures=1),
                [
                    pod("Failed", terminated={"exitCode": 1, "reason": "Error"}),
                ],
            ),
            "Restarting",
            "Progressing",
        ),
        (
            training(job(complete=True), [pod("Succeeded", terminated={"exitCode": 0})]),
            "Succeeded",
            "Healthy",
        ),
        (
            training(job(failed=True), [pod("Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})]),
            "Failed",
            "Degraded",
        ),
        (training_blocked("ModuleNotFound"), "Pending", "Degraded"),
        (training_blocked("Unschedulable"), "Pending", "Degraded"),
        (training_blocked("JobNameTaken"), "Pending", "Degraded"),
        (training_blocked("InvalidSpec"), "Pending", "Degraded"),
    ],
)
def test_trainingjob_health(status: TrainingJobStatus, phase: str, expected: str) -> None:
    assert status.phase == phase  # the operator's own phase machine produced this status
    got, message = health("TrainingJob", status)
    assert got == expected, (got, message)
    assert (status.reason or "") in message


# -- Module: Ready=Published, MetadataValid as the Module controller sets them


def module_status(valid: bool) -> ModuleStatus:
    status = ModuleStatus()
    set_condition(
        status,
        "MetadataValid",
        valid,
        "Valid" if valid else "InvalidMetadata",
        "" if valid else "spec.metadata.license: field required",
        GENERATION,
    )
    set_condition(
        status, "Ready", True, "Published", "in the catalogue as deep-platform/module-x", GENERATION
    )
    status.observed_generation = GENERATION
    return status


def test_module_health() -> None:
    assert health("Module", module_status(valid=True)) == (
        "Healthy",
        "in the catalogue as deep-platform/module-x",
    )
    assert health("Module", module_status(valid=False)) == (
        "Degraded",
        "InvalidMetadata: spec.metadata.license: field required",
    )
    invalid = invalid_spec_status(
        ModuleStatus, {"metadata": {"generation": GENERATION}}, ["spec.image: required"], "Ready"
    )
    assert health("Module", invalid) == ("Degraded", "InvalidSpec: spec.image: required")
    assert health("Module", None)[0] == "Progressing"


# -- DevEnvironment: phase and Ready as the controller's observe() writes them


def devenv(replicas: int, ready: int, pods: list[dict[str, Any]] | None = None) -> DevEnvironmentStatus:
    status = DevEnvironmentStatus()
    deployment = {"spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}
    dec.observe(status, deployment, pods or [], GENERATION)
    status.observed_generation = GENERATION
    return status


CRASHING = {"metadata": {}, "status": {"containerStatuses": [
    {"name": "ide", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}


@pytest.mark.parametrize(
    ("status", "expected", "says"),
    [
        (devenv(1, 1), "Healthy", "Running"),
        (devenv(0, 0), "Healthy", "Sleeping"),  # asleep on purpose: the next request wakes it
        (devenv(1, 0), "Progressing", "Starting"),
        (devenv(1, 0, [CRASHING]), "Degraded", "CrashLoopBackOff"),
        (None, "Progressing", "Waiting for the operator"),
    ],
)
def test_devenvironment_health(status: DevEnvironmentStatus | None, expected: str, says: str) -> None:
    got, message = health("DevEnvironment", status)
    assert got == expected and says in message, (got, message)


def test_a_devenvironment_that_lost_its_name_is_degraded() -> None:
    status = DevEnvironmentStatus(observedGeneration=GENERATION)
    dec.failed(status, "NameTaken", "InferenceService 'x' already serves /ns/x/", GENERATION)
    assert health("DevEnvironment", status) == (
        "Degraded", "NameTaken: InferenceService 'x' already serves /ns/x/")


# -- one text: the docs and the chart's ConfigMap carry the files verbatim


def test_the_docs_carry_the_same_lua() -> None:
    text = (chart.ROOT / "docs" / "chart.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    argocd_cm = next(
        b for b in blocks if isinstance(b, dict) and b.get("metadata", {}).get("name") == "argocd-cm"
    )
    assert argocd_cm["data"] == {KEY.format(kind): LUA[kind] for kind in KINDS}


def test_the_chart_renders_the_same_lua_only_when_asked(helm_major: int) -> None:
    everything = chart.CHART / "ci" / "all-enabled-values.yaml"
    found = [
        o
        for o in chart.objects(chart.render(helm_major, everything))
        if o["metadata"]["name"].endswith("-argocd-health")
    ]
    assert [o["kind"] for o in found] == ["ConfigMap"]
    assert found[0]["data"] == {KEY.format(kind): LUA[kind] for kind in KINDS}
    assert not [
        o for o in chart.objects(chart.render(helm_major)) if o["metadata"]["name"].endswith("-argocd-health")
    ]
