"""Fixtures for tests on a real cluster (KUBECONFIG): CRDs applied, the operator running
in-process against it, one fresh namespace per test. Without a reachable cluster every test here
is skipped with one line saying why."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deep_platform import kube as k
from deep_platform.api.crdgen import KINDS, crd
from deep_platform.config import OperatorConfig
from deep_platform.operator import run
from tests.harness.operator_fixtures import RunningOperator, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _cluster() -> k.Kube | str:
    """A client for the current context, or the reason there is none."""
    if os.environ.get("DEEP_E2E") == "0":
        return "DEEP_E2E=0"
    try:
        api = k.Kube(k.load_configuration(), component="e2e")
    except Exception as exc:  # no kubeconfig, unreadable kubeconfig...
        return f"no kubeconfig ({type(exc).__name__})"
    try:
        api.request("GET", "/version", timeout=5)
    except Exception as exc:
        return f"cluster at {api.host} unreachable ({type(exc).__name__})"
    return api


@pytest.fixture(scope="session")
def cluster() -> k.Kube:
    found = _cluster()
    if isinstance(found, str):
        pytest.skip(f"no Kubernetes cluster reachable: {found}; set KUBECONFIG to run e2e tests")
    return found


@pytest.fixture(scope="session")
def crds_installed(cluster: k.Kube) -> None:
    """Server-side apply the generated CRDs, exactly what `deep-platform crds` prints."""
    for kind in KINDS:
        cluster.apply(crd(kind))
    for kind in KINDS:
        wait_until(
            lambda kind=kind: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (cluster.get(k.CRD, kind.crd.crd_name) or {}).get("status", {}).get(
                    "conditions", [])
            ),
            timeout=60,
            what=f"CRD {kind.crd.crd_name} established",
        )


@pytest.fixture
def namespace(cluster: k.Kube) -> Iterator[str]:
    name = f"deep-e2e-{uuid.uuid4().hex[:8]}"
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    yield name
    cluster.delete(k.NAMESPACE, name)


@pytest.fixture(scope="session")
def platform_namespace(cluster: k.Kube) -> str:
    name = os.environ.get("DEEP_E2E_PLATFORM_NAMESPACE", "deep-platform")
    if cluster.get(k.NAMESPACE, name) is None:
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def e2e_operator(
    cluster: k.Kube, crds_installed: None, platform_namespace: str, namespace: str
) -> Iterator[RunningOperator]:
    """The real operator in this process, watching the test's namespace (and cluster Modules)."""
    config = OperatorConfig(platform_namespace=platform_namespace, namespaces=[namespace],
                            metrics_port=0, health_port=0)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(run(cluster, config, stop_flag=stop, ready_flag=ready)),
        daemon=True,
    )
    thread.start()
    assert ready.wait(60), "the operator did not start within 60 s"
    yield RunningOperator(kube=cluster, config=config)
    stop.set()
    thread.join(30)


def example(name: str, namespace: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    if namespace is not None:
        body["metadata"]["namespace"] = namespace
    return body
