"""Rendering the chart with the real helm binaries (see tools.py), shared by the chart tests."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.chart import tools

ROOT = tools.ROOT
CHART = ROOT / "charts" / "deep-platform"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "deep-platform"
RELEASE = "deep-platform"
HELM_MAJORS = (4, 3)


def run_helm(major: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(tools.helm(major)), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {major} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def template_args(values: Path | None = None, *extra: str) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["--values", str(values)]
    return args + list(extra)


@functools.cache
def render(major: int, values: Path | None = None, include_crds: bool = False) -> str:
    """The chart's manifests as helm prints them (cached: helm output is deterministic)."""
    extra = ("--include-crds",) if include_crds else ()
    return run_helm(major, *template_args(values, *extra)).stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's spec of a workload, or None for other kinds."""
    if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job", "ReplicaSet"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return None


def canonical(obj: dict[str, Any]) -> str:
    """An object as text that ignores key order (kustomize and helm order keys differently)."""
    import json

    return json.dumps(obj, sort_keys=True)
