"""Realistic TrainingJobs, InferenceServices and their Events, stored in the API server emulator."""

from __future__ import annotations

from typing import Any

from deep_platform import events
from deep_platform import kube as k
from deep_platform.api import InferenceService, TrainingJob

TJ = k.kind_of(TrainingJob)
ISVC = k.kind_of(InferenceService)
API_VERSION = "deep-hybrid-datacloud.eu/v1alpha1"


def condition(type_: str, status: str, reason: str, message: str, when: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": when}


def seed(kube: k.Kube, apiserver: Any) -> None:
    """alice: a running and a failed TrainingJob, a served model; bob: one queued job."""
    for ns in ("alice", "bob"):
        if apiserver.get("namespaces", None, ns) is None:
            apiserver.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    jobs = [
        ("alice", "retrain-phyto", {"module": "phytoplankton-classifier",
                                     "hyperparameters": {"epochs": 20, "lr": 0.001},
                                     "resources": {"gpu": {"count": 1, "product": "NVIDIA-A100-SXM4-80GB"}}},
         {"phase": "Running", "jobName": "retrain-phyto", "podName": "retrain-phyto-x7k2p",
          "nodeName": "gpu-node-1", "gpuProduct": "NVIDIA-A100-SXM4-80GB",
          "startTime": "2026-05-01T10:00:00Z",
          "conditions": [condition("Ready", "True", "JobCreated", "Job retrain-phyto created",
                                   "2026-05-01T09:59:50Z")]}),
        ("alice", "big-model", {"module": "phytoplankton-classifier",
                                 "resources": {"gpu": {"count": 2, "product": "NVIDIA-H200"}}},
         {"phase": "Failed", "reason": "OOMKilled", "duration": "12m3s",
          "conditions": [condition("Ready", "False", "OOMKilled", "the training container ran out of memory",
                                   "2026-05-01T09:12:03Z")]}),
        ("bob", "queued-run", {"image": "deephdc/deep-oc-generic:latest"}, {"phase": "Queued"}),
    ]
    for ns, name, spec, status in jobs:
        body = kube.create({"apiVersion": API_VERSION, "kind": "TrainingJob",
                            "metadata": {"name": name, "namespace": ns}, "spec": spec})
        kube.patch_status(TJ, name, ns, status)
        if name == "retrain-phyto":
            events.emit(kube, body, "JobCreated", "Ready=True: Job retrain-phyto created")
            events.emit(kube, body, "Started", "training pod retrain-phyto-x7k2p runs on gpu-node-1")
        if name == "big-model":
            events.emit(kube, body, "OOMKilled", "Ready=False: the training container ran out of memory",
                        warning=True)
    kube.create({"apiVersion": API_VERSION, "kind": "InferenceService",
                 "metadata": {"name": "phyto-api", "namespace": "alice"},
                 "spec": {"module": "phytoplankton-classifier"}})
    kube.patch_status(ISVC, "phyto-api", "alice", {
        "url": "http://activator.deep-platform.test/alice/phyto-api/", "replicas": 0, "readyReplicas": 0,
        "conditions": [condition("Ready", "True", "ScaledToZero", "idle; the next request wakes it",
                                 "2026-05-01T08:00:00Z")]})
