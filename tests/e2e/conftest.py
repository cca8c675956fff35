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

import kubernetes
import pytest
import yaml
from kubernetes.client import Configuration

from deep_platform import kube as k
from deep_platform.api.crdgen import KINDS, crd
from deep_platform.config import OperatorConfig
from deep_platform.operator import run
from tests.harness import realserver
from tests.harness.node_kubelet import NodeKubelet, NodeShape, default_outcome
from tests.harness.operator_fixtures import RunningOperator, wait_until
from tests.harness.real_apiserver import established

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def client_for(server: realserver.RealServer, component: str = "e2e") -> k.Kube:
    configuration = Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(server.kubeconfig) if server.kubeconfig else None, client_configuration=configuration)
    return k.Kube(configuration, component=component)


@pytest.fixture(scope="session")
def cluster(real_server: realserver.RealServer) -> k.Kube:
    api = client_for(real_server)
    try:
        api.request("GET", "/version", timeout=5)
    except Exception as exc:
        pytest.skip(f"cluster at {api.host} ({real_server.origin}) unreachable ({type(exc).__name__})")
    return api


@pytest.fixture(scope="session")
def crds_installed(cluster: k.Kube) -> None:
    """Server-side apply the generated CRDs, exactly what `deep-platform crds` prints."""
    for kind in KINDS:
        cluster.apply(crd(kind))
    for kind in KINDS:
        wait_until(
            lambda kind=kind: established(cluster.get(k.CRD, kind.crd.crd_name)),
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


#: the nodes every e2e test finds: one with 4 whole GPUs, one with MIG slices, one without GPUs
NODES = [
    NodeShape("e2e-gpu-a100", gpus=4),
    NodeShape("e2e-gpu-mig", product="NVIDIA-A100-SXM4-40GB", gpu_memory_mib=40960, mig={"1g.5gb": 7}),
    NodeShape("e2e-cpu", taint_gpu=False),
]


@pytest.fixture(scope="session")
def node_kubelet(cluster: k.Kube) -> Iterator[NodeKubelet]:
    """The kubelet stand-in on NODES for the whole session; a test sets `.decide` for its pods."""
    with NodeKubelet(cluster, NODES) as kubelet:
        yield kubelet


@pytest.fixture
def kubelet(node_kubelet: NodeKubelet) -> Iterator[NodeKubelet]:
    """The session's kubelet stand-in, its pod outcomes reset to the defaults after the test."""
    for shape in node_kubelet.nodes.values():  # a test of the integration suite may have removed them
        node_kubelet.register(shape)
    yield node_kubelet
    node_kubelet.decide = default_outcome
    node_kubelet.on_running = node_kubelet.on_stopped = None


def example(name: str, namespace: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    if namespace is not None:
        body["metadata"]["namespace"] = namespace
    return body
