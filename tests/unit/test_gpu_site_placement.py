"""A site's GPU placement (the chart's gpu.* values, as operator environment) reaches every GPU pod,
training or serving, and no CPU pod; a malformed value stops the operator with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from deep_platform.api import InferenceService, TrainingJob
from deep_platform.builders.inferenceservice import build_deployment
from deep_platform.builders.trainingjob import build_job
from deep_platform.config import site_settings

SITE_TOLERATION = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}


@pytest.fixture
def gpu_site(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DEEP_GPU_NODE_SELECTOR", '{"pool": "gpu", "zone": "a"}')
    monkeypatch.setenv("DEEP_GPU_TOLERATIONS", f"[{str(SITE_TOLERATION).replace(chr(39), chr(34))}]")
    monkeypatch.setenv("DEEP_GPU_RUNTIME_CLASS", "nvidia")
    site_settings.cache_clear()
    yield
    monkeypatch.undo()
    site_settings.cache_clear()


def body(kind: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "science", "uid": "u"},
        "spec": {"image": "registry.example/m:1", **spec},
    }


def pod_specs(**spec: Any) -> list[dict[str, Any]]:
    job = build_job(TrainingJob.from_body(body("TrainingJob", **spec)), None)
    deployment = build_deployment(InferenceService.from_body(body("InferenceService", **spec)), None)
    return [job["spec"]["template"]["spec"], deployment["spec"]["template"]["spec"]], [job, deployment]


def test_gpu_pods_get_the_site_placement_and_keep_their_own(gpu_site: None) -> None:
    specs, objects = pod_specs(resources={"gpu": {"count": 1}}, nodeSelector={"zone": "b"})
    for spec in specs:
        assert spec["nodeSelector"] == {"pool": "gpu", "zone": "b"}  # the object's own value wins
        assert SITE_TOLERATION in spec["tolerations"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert spec["runtimeClassName"] == "nvidia"
    for obj in objects:
        kubernetes_validate.validate(obj, "1.34", strict=True)


def test_cpu_pods_are_left_where_they_were(gpu_site: None) -> None:
    specs, _ = pod_specs(resources={"cpu": 2})
    for spec in specs:
        assert "nodeSelector" not in spec and "tolerations" not in spec and "runtimeClassName" not in spec


def test_malformed_setting_stops_the_operator_naming_it() -> None:
    env = {**os.environ, "DEEP_GPU_TOLERATIONS": "{not json"}
    result = subprocess.run([sys.executable, "-m", "deep_platform", "run"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: DEEP_GPU_TOLERATIONS is not JSON")
