"""Which API server a benchmark runs against: `--server real` (default where one is available:
tests/harness/realserver.find(), i.e. $KUBECONFIG, else the shared/k8s control plane started for
the run (on free ports of its own unless DEEP_K8S_* say otherwise) and wiped at the end) or
`--server emulator`.

Benchmarks pass a *spec* to their subprocesses (a URL for the emulator, a kubeconfig path for a
real server) and build their clients with `client_for(spec)`.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kubernetes  # noqa: E402
from kubernetes.client import Configuration  # noqa: E402

from deep_platform import kube as k  # noqa: E402
from tests.harness import realserver  # noqa: E402


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", choices=("real", "emulator"), default=None,
        help="API server: a real kube-apiserver (default where one is available) or the test emulator",
    )


def client_for(spec: str, component: str = "bench") -> k.Kube:
    """A client of the server named by spec: an http URL (emulator) or a kubeconfig path."""
    configuration = Configuration()
    if spec.startswith("http"):
        configuration.host = spec
    else:
        kubernetes.config.load_kube_config(config_file=spec, client_configuration=configuration)
    return k.Kube(configuration, component=component)


@contextlib.contextmanager
def real_server(required: bool) -> Iterator[str | None]:
    """A kubeconfig path of a real API server, or None (with a line saying why) when there is none
    and `required` is false."""
    with realserver.session() as found:
        if isinstance(found, str):
            if required:
                raise SystemExit(f"--server real: no real API server ({found})")
            print(f"no real API server ({found}): running on the emulator", flush=True)
            yield None
            return
        kubeconfig = str(found.kubeconfig) if found.kubeconfig else os.path.expanduser("~/.kube/config")
        print(f"server: real kube-apiserver ({found.origin}, {kubeconfig})", flush=True)
        yield kubeconfig


def _serve_emulator(conn: Connection, namespaces: tuple[str, ...]) -> None:
    from tests.harness.apiserver import ApiServer

    with ApiServer.running() as api:
        api.load_crds(ROOT / "crds")
        for name in namespaces:
            if api.get("namespaces", None, name) is None:
                api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        conn.send(api.url)
        conn.recv()  # until the run is over


@contextlib.contextmanager
def emulator(namespaces: tuple[str, ...] = ()) -> Iterator[str]:
    """The emulator in its own process, as the API server of a real cluster is: the operator
    (or the direct client) never shares an interpreter lock with it. Yields its URL."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=_serve_emulator, args=(child, namespaces), daemon=True
    )
    proc.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        proc.join(30)


def server(
    stack: contextlib.ExitStack, choice: str | None, namespaces: tuple[str, ...] = ()
) -> tuple[str, bool]:
    """The API server `--server` chose, kept up until `stack` closes: (its spec for `client_for`,
    whether it is a real one). The emulator stands in where no real server is found."""
    real = None
    if choice != "emulator":
        real = stack.enter_context(real_server(required=choice == "real"))
    if real is None:
        print("server: emulator (tests/harness/apiserver.py)", flush=True)
    return real or stack.enter_context(emulator(namespaces)), real is not None


def recorded_requests(api: k.Kube, resource: Callable[[str], str]) -> list[tuple[str, str]]:
    """The list that from now on gets (method, resource(path)) of each request `api` makes."""
    requests: list[tuple[str, str]] = []
    send = api._send

    def counted(method: str, path: str, *args: Any) -> Any:
        requests.append((method, resource(path)))
        return send(method, path, *args)

    api._send = counted  # type: ignore[method-assign,assignment]
    return requests


def install_crds(api: k.Kube) -> None:
    from deep_platform.api.crdgen import KINDS, crd

    for kind in KINDS:
        api.apply(crd(kind))
    deadline = time.monotonic() + 60
    for kind in KINDS:
        while True:
            status = (api.get(k.CRD, kind.crd.crd_name) or {}).get("status") or {}
            conditions = status.get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"CRD {kind.crd.crd_name} not established")
            time.sleep(0.2)
    time.sleep(1.0)  # discovery and the CRD handlers settle


def namespace(api: k.Kube, prefix: str) -> str:
    """A fresh namespace (names are unique per run: two runs on one server do not meet)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def ensure_namespace(api: k.Kube, name: str) -> None:
    if api.get(k.NAMESPACE, name) is None:
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
