"""The Helm chart on a real API server, with the official Helm 3 and Helm 4: `helm install`
(every object accepted: CRDs, RBAC, workloads, Services, ConfigMaps, the pods their controllers
make admitted under Pod Security), every example accepted by a server-side dry run, `helm
upgrade` to changed values and a CRD that gained a field (applied first, as docs/chart.md says,
since Helm never upgrades CRDs), and `helm uninstall`. Nothing waits for readiness: there is no
kubelet, so no pod ever runs.

Each run installs its own copy of the chart with a probe CRD beside the real three (a copy of the
Module CRD in a group of its own): the real CRDs are shared by every test of the session
(`crds_installed`), so the CRD install and upgrade are watched on the probe.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from deep_platform import kube as k
from tests.chart import tools
from tests.harness import realserver
from tests.harness.operator_fixtures import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "deep-platform"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
MODULE_CRD = CHART / "crds" / "deep-hybrid-datacloud.eu_modules.yaml"
PDB = k.Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
DAEMONSET = k.Kind("apps/v1", "DaemonSet", "daemonsets")
CLUSTERROLE = k.Kind("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False)
ROLE = k.Kind("rbac.authorization.k8s.io/v1", "Role", "roles")
SERVICEACCOUNT = k.Kind("v1", "ServiceAccount", "serviceaccounts")
NETWORKPOLICY = k.Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies")
RUNTIMECLASS = k.Kind("node.k8s.io/v1", "RuntimeClass", "runtimeclasses", namespaced=False)
INGRESS = k.Kind("networking.k8s.io/v1", "Ingress", "ingresses")

#: the upgrade: a Deployment changes (web replicas, operator workers), an object goes (the
#: activator's PodDisruptionBudget) and one comes (the Grafana dashboard ConfigMap)
UPGRADE_VALUES = {
    "web": {"replicas": 2},
    "operator": {"workers": 4},
    "activator": {"podDisruptionBudget": {"enabled": False}},
    "grafanaDashboard": {"enabled": True},
}


@dataclass
class Release:
    helm_major: int
    name: str
    namespace: str
    chart: Path  # this run's copy of the chart
    kubeconfig: Path | None
    probe_group: str

    @property
    def fullname(self) -> str:
        return f"{self.name}-deep-platform"

    @property
    def probe_crd(self) -> str:
        return f"modules.{self.probe_group}"

    def helm(self, *args: str) -> str:
        command = [str(tools.helm(self.helm_major)), *args]
        if self.kubeconfig is not None:
            command += ["--kubeconfig", str(self.kubeconfig)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"helm {self.helm_major} {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        command = [str(tools.kubectl()), *args]
        if self.kubeconfig is not None:
            command += ["--kubeconfig", str(self.kubeconfig)]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"kubectl {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout


def probe_crd(group: str, extra_field: bool = False) -> dict[str, Any]:
    """The Module CRD moved to a group of its own; with extra_field, spec gained a field."""
    crd: dict[str, Any] = yaml.safe_load(MODULE_CRD.read_text(encoding="utf-8"))
    crd["metadata"]["name"] = f"modules.{group}"
    crd["spec"]["group"] = group
    crd["spec"]["names"].pop("shortNames", None)
    crd["spec"]["names"].pop("categories", None)
    if extra_field:
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["e2eAddedField"] = {"type": "string", "description": "added by the upgrade"}
    return crd


@pytest.fixture
def release_factory(
    cluster: k.Kube, crds_installed: None, real_server: realserver.RealServer, tmp_path: Path
) -> Iterator[Any]:
    made: list[Release] = []

    def make(helm_major: int, namespace: str) -> Release:
        suffix = uuid.uuid4().hex[:6]
        chart = tmp_path / f"chart-{helm_major}-{suffix}"
        shutil.copytree(CHART, chart)
        group = f"h{helm_major}-{suffix}.e2e.deep-hybrid-datacloud.eu"
        (chart / "crds" / "probe.yaml").write_text(yaml.safe_dump(probe_crd(group)), encoding="utf-8")
        release = Release(helm_major, f"e2e-h{helm_major}-{suffix}", namespace, chart,
                          real_server.kubeconfig, group)
        made.append(release)
        return release

    yield make
    for release in made:
        config = ["--kubeconfig", str(release.kubeconfig)] if release.kubeconfig else []
        subprocess.run(
            [str(tools.helm(release.helm_major)), "uninstall", release.name, "-n", release.namespace,
             *config],
            capture_output=True, timeout=60, check=False)
        try:
            cluster.delete(k.CRD, release.probe_crd)
        except k.ApiError as exc:
            if not exc.not_found:
                raise
        if cluster.get(k.NAMESPACE, release.namespace) is not None:
            cluster.delete(k.NAMESPACE, release.namespace)


@pytest.fixture
def gpu_node(cluster: k.Kube) -> Iterator[str]:
    """A Node labelled as GPU feature discovery labels a GPU node, so that the GPU agent's
    DaemonSet makes a pod (admitted or refused by Pod Security like any other)."""
    name = f"e2e-chart-gpu-{uuid.uuid4().hex[:6]}"
    cluster.create({"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "labels": {"nvidia.com/gpu.present": "true", "kubernetes.io/hostname": name}}})
    yield name
    cluster.delete(k.NODE, name)


@pytest.fixture
def nvidia_runtime_class(cluster: k.Kube) -> Iterator[None]:
    """The RuntimeClass `gpuAgent.runtimeClassName: nvidia` names: without it the RuntimeClass
    admission plugin refuses the agent's pods (`RuntimeClass "nvidia" not found`)."""
    made = cluster.get(RUNTIMECLASS, "nvidia") is None
    if made:
        cluster.request("POST", RUNTIMECLASS.path(), body={
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"},
            "handler": "nvidia"})
    yield
    if made:
        cluster.delete(RUNTIMECLASS, "nvidia")


def established(cluster: k.Kube, name: str) -> bool:
    crd = cluster.get(k.CRD, name) or {}
    return any(c["type"] == "Established" and c["status"] == "True"
               for c in crd.get("status", {}).get("conditions", []))


def env_of(deployment: dict[str, Any], name: str) -> str | None:
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for var in container.get("env") or []:
            if var["name"] == name:
                return str(var.get("value"))
    return None


def pods_of(cluster: k.Kube, namespace: str, component: str) -> list[dict[str, Any]]:
    return cluster.list(k.POD, namespace, label_selector=f"app.kubernetes.io/component={component}")


def wait_for_pods(cluster: k.Kube, namespace: str) -> None:
    """Every component's controller made a pod, and admission let it in."""
    for component in ("operator", "activator", "web", "gpu-agent"):
        def made(component: str = component) -> list[dict[str, Any]]:
            return pods_of(cluster, namespace, component)

        wait_until(made, 30, what=f"a pod of the {component}")


def node_of(pod: dict[str, Any]) -> str:
    """The node a DaemonSet pod is for (its controller pins it by a matchFields affinity)."""
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return str(terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0])


def crd_upgrade_command(notes: str, chart: Path) -> list[str]:
    """The CRD step of an upgrade as NOTES.txt tells it (the chart's path: this copy's)."""
    lines = [line.split() for line in notes.splitlines()
             if line.strip().startswith("kubectl apply --server-side")]
    assert len(lines) == 1, f"NOTES.txt should name one CRD upgrade command:\n{notes}"
    args = lines[0][1:]
    return [str(chart / "crds") if arg == "charts/deep-platform/crds/" else arg for arg in args]


def dry_run_examples(release: Release) -> None:
    """Every example, as a user would apply it (namespaced ones in the release's namespace)."""
    for example in EXAMPLES:
        body = yaml.safe_load(example.read_text(encoding="utf-8"))
        if body["kind"] != "Module":
            body["metadata"]["namespace"] = release.namespace
        out = release.kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(body))
        assert json.loads(out)["kind"] == body["kind"], out


@pytest.mark.parametrize("helm_major", [3, 4])
def test_install_upgrade_uninstall(
    helm_major: int, cluster: k.Kube, release_factory: Any, gpu_node: str
) -> None:
    started = time.monotonic()
    namespace = f"deep-chart-h{helm_major}-{uuid.uuid4().hex[:6]}"
    release: Release = release_factory(helm_major, namespace)
    notes = release.helm("install", release.name, str(release.chart), "-n", namespace, "--create-namespace")

    # every object is there, as rendered
    status = json.loads(release.helm("status", release.name, "-n", namespace, "-o", "json"))
    assert status["info"]["status"] == "deployed", status["info"]
    name = release.fullname
    for component in ("operator", "activator", "web"):
        assert cluster.get(k.DEPLOYMENT, f"{name}-{component}", namespace) is not None, component
        assert cluster.get(CLUSTERROLE, f"{name}-{component}") is not None, component
    for component in ("operator", "activator", "web", "gpu-agent"):
        assert cluster.get(SERVICEACCOUNT, f"{name}-{component}", namespace) is not None, component
    assert cluster.get(k.SERVICE, f"{name}-activator", namespace) is not None
    assert cluster.get(k.SERVICE, f"{name}-web", namespace) is not None
    assert cluster.get(DAEMONSET, f"{name}-gpu-agent", namespace) is not None
    assert cluster.get(PDB, f"{name}-activator", namespace) is not None
    wait_until(lambda: established(cluster, release.probe_crd), 30, what=f"{release.probe_crd} established")
    # the controllers made the pods and admission let them in (the DaemonSet's on the GPU node)
    wait_for_pods(cluster, namespace)
    agent_pods = pods_of(cluster, namespace, "gpu-agent")
    assert gpu_node in {node_of(p) for p in agent_pods}  # (and any other GPU node of the session)

    dry_run_examples(release)

    # upgrade: the CRDs first (Helm never upgrades them), then the release with changed values
    (release.chart / "crds" / "probe.yaml").write_text(
        yaml.safe_dump(probe_crd(release.probe_group, extra_field=True)), encoding="utf-8")
    release.kubectl(*crd_upgrade_command(notes, release.chart))
    values = release.chart / "upgrade-values.yaml"
    values.write_text(yaml.safe_dump(UPGRADE_VALUES), encoding="utf-8")
    release.helm("upgrade", release.name, str(release.chart), "-n", namespace, "--values", str(values))
    status = json.loads(release.helm("status", release.name, "-n", namespace, "-o", "json"))
    assert (status["info"]["status"], status["version"]) == ("deployed", 2), status["info"]

    crd = cluster.get(k.CRD, release.probe_crd) or {}
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "e2eAddedField" in spec["properties"]
    web = cluster.get(k.DEPLOYMENT, f"{name}-web", namespace) or {}
    assert web["spec"]["replicas"] == 2
    operator = cluster.get(k.DEPLOYMENT, f"{name}-operator", namespace) or {}
    assert env_of(operator, "DEEP_WORKERS") == "4"
    assert cluster.get(PDB, f"{name}-activator", namespace) is None
    assert cluster.get(k.CONFIGMAP, f"{name}-dashboard", namespace) is not None
    wait_until(lambda: len(pods_of(cluster, namespace, "web")) >= 2, 30, what="the second web pod")
    dry_run_examples(release)

    release.helm("uninstall", release.name, "-n", namespace)
    for component in ("operator", "activator", "web"):
        assert cluster.get(k.DEPLOYMENT, f"{name}-{component}", namespace) is None, component
        assert cluster.get(CLUSTERROLE, f"{name}-{component}") is None, component
    assert cluster.get(k.CONFIGMAP, f"{name}-dashboard", namespace) is None
    # the CRDs stay (and with them every custom object)
    assert cluster.get(k.CRD, release.probe_crd) is not None
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("helm_major", [3, 4])
def test_every_option_on(
    helm_major: int, cluster: k.Kube, release_factory: Any, gpu_node: str, nvidia_runtime_class: None
) -> None:
    """The value set with every optional part on (namespace object with Pod Security
    "restricted", NetworkPolicies, Ingress, dashboard, Argo CD health checks, CSI storage): all
    accepted, the pods admitted in the restricted namespace. The ServiceMonitor is left out: its
    CRD belongs to the prometheus-operator, which this cluster lacks."""
    namespace = f"deep-chart-all-h{helm_major}-{uuid.uuid4().hex[:6]}"
    release: Release = release_factory(helm_major, namespace)
    # `namespace.create` renders the release's own namespace: Helm keeps the release in it, so it
    # must exist first, and Helm 3 refuses to install over an object it does not own ("already
    # exists", with or without --create-namespace); it adopts one that carries its ownership marks
    cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": namespace, "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": release.name,
                        "meta.helm.sh/release-namespace": namespace}}})
    release.helm("install", release.name, str(release.chart), "-n", namespace,
                 "--values", str(CHART / "ci" / "all-enabled-values.yaml"),
                 "--set", "serviceMonitor.enabled=false", "--set", "prometheusRule.enabled=false",
                 # Gateway API CRDs are not on this server (tests/chart/test_exposure.py: pinned schema)
                 "--set", "web.httpRoute.enabled=false", "--set", "activator.httpRoute.enabled=false")
    name = release.fullname
    ns = cluster.get(k.NAMESPACE, namespace) or {}
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert cluster.get(INGRESS, f"{name}-web", namespace) is not None
    assert cluster.get(INGRESS, f"{name}-activator", namespace) is not None
    assert cluster.get(CLUSTERROLE, f"{name}-web-access-review") is not None
    assert len(cluster.list(NETWORKPOLICY, namespace)) == 4
    wait_for_pods(cluster, namespace)
    dry_run_examples(release)
    release.helm("uninstall", release.name, "-n", namespace)


@pytest.mark.parametrize("helm_major", [3, 4])
def test_watched_namespaces(helm_major: int, cluster: k.Kube, release_factory: Any) -> None:
    """`watchNamespaces`: Roles in each watched namespace (which must exist), none cluster-wide."""
    suffix = uuid.uuid4().hex[:6]
    namespace = f"deep-chart-ns-h{helm_major}-{suffix}"
    watched = [f"team-a-{suffix}", f"team-b-{suffix}"]
    for ns in watched:
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        release: Release = release_factory(helm_major, namespace)
        release.helm("install", release.name, str(release.chart), "-n", namespace, "--create-namespace",
                     "--values", str(CHART / "ci" / "restricted-namespaces-values.yaml"),
                     "--set-json", f"watchNamespaces={json.dumps(watched)}",
                     "--set", "networkPolicies.enabled=true")
        name = release.fullname
        for ns in watched:
            assert cluster.get(ROLE, f"{name}-operator-watch", ns) is not None, ns
            assert cluster.get(ROLE, f"{name}-activator", ns) is not None, ns
            assert cluster.get(ROLE, f"{name}-web", ns) is not None, ns
            assert cluster.get(NETWORKPOLICY, f"{name}-models", ns) is not None, ns  # model pods
        assert cluster.get(CLUSTERROLE, f"{name}-activator") is None
        assert cluster.get(DAEMONSET, f"{name}-gpu-agent", namespace) is None
        release.helm("uninstall", release.name, "-n", namespace)
    finally:
        for ns in watched:
            cluster.delete(k.NAMESPACE, ns)
