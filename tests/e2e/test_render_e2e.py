"""`deep-platform render` output goes to `kubectl apply` as it is: a real API server, in a
server-side dry run, accepts the render of every example (and of all of them together), with
client-side and with server-side apply. Nothing is created: the dry run only admits and
validates. kubectl comes from PATH; the CRDs are installed first and the objects' namespaces
(the examples' `default`, the catalogue's platform namespace) exist."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from deep_platform import kube as k
from tests.harness import realserver

from .conftest import EXAMPLES

SOURCES = [pytest.param([str(EXAMPLES)], id="examples"),
           *(pytest.param([str(path)], id=path.name) for path in sorted(EXAMPLES.glob("*.yaml")))]


def kubectl_command(server: realserver.RealServer) -> list[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl on PATH")
    command = [kubectl]
    if server.kubeconfig is not None:
        command += ["--kubeconfig", str(server.kubeconfig)]
    return command


def rendered(sources: list[str], platform_namespace: str) -> str:
    args = [a for source in sources for a in ("-f", source)]
    done = subprocess.run(
        [sys.executable, "-m", "deep_platform", "render", *args, "--platform-namespace", platform_namespace],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("mode", [[], ["--server-side", "--field-manager", "deep-platform"]],
                         ids=["client-side", "server-side"])
@pytest.mark.parametrize("sources", SOURCES)
def test_kubectl_accepts_the_render_in_a_server_dry_run(
    real_server: realserver.RealServer, cluster: k.Kube, crds_installed: None,
    platform_namespace: str, sources: list[str], mode: list[str],
) -> None:
    text = rendered(sources, platform_namespace)
    objects = [d for d in yaml.safe_load_all(text) if d]
    assert objects, "render printed nothing"
    for obj in objects:  # the namespaces exist (default is the examples')
        namespace = obj["metadata"].get("namespace")
        if namespace and cluster.get(k.NAMESPACE, namespace) is None:
            cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    done = subprocess.run(
        [*kubectl_command(real_server), "apply", "--dry-run=server", *mode, "-o", "name", "-f", "-"],
        input=text, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, f"kubectl apply --dry-run=server refused the render:\n{done.stderr}\n{text}"
    accepted = done.stdout.split()
    assert len(accepted) == len(objects), done.stdout
    for obj, name in zip(objects, accepted, strict=True):
        assert name.split("/", 1)[1] == obj["metadata"]["name"]
        assert name.split("/", 1)[0].split(".", 1)[0] == obj["kind"].lower()
    assert "rror" not in done.stderr, done.stderr
