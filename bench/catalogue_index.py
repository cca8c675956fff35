"""Benchmark: N Modules (default 1,000) created at once; time until the catalogue index is
complete and consistent, as a ratio to the time the same ConfigMap writes take through the API
directly (same server, same thread count, same run). Target: within 3x. Then one resync of the
Module controller with nothing changed: the API writes the operator's client makes (target 0).

    python bench/catalogue_index.py [--server real|emulator] [N]

`--server real` (the default where one is available, see bench/_servers.py): kube-apiserver 1.36
of shared/k8s, shared by the three phases, each with its own platform namespace and its own
Module names (Modules are cluster-scoped; each phase deletes its own before the next starts).
`--server emulator`: a fresh emulator (tests/harness) per phase, in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import pathlib
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _servers  # noqa: E402
from deep_platform import kube as k  # noqa: E402
from deep_platform.api import Module  # noqa: E402
from deep_platform.builders.module import (  # noqa: E402
    CATALOGUE_LABEL,
    INDEX_HEAD,
    build_catalogue_entry,
    index_item,
)
from deep_platform.catalogue.index import IndexReadError, read_index, write_index  # noqa: E402
from deep_platform.config import OperatorConfig  # noqa: E402
from deep_platform.controllers import module as module_controller  # noqa: E402
from deep_platform.controllers import runtime  # noqa: E402
from deep_platform.events import event_for  # noqa: E402
from deep_platform.operator import run  # noqa: E402

MODULES = k.kind_of(Module)
WORKERS = 16
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
RUN_LABEL = "bench.deep-hybrid-datacloud.eu/run"  # the Modules of one phase of one run


def bodies(n: int, prefix: str, run_label: str) -> list[dict[str, Any]]:
    base = yaml.safe_load((ROOT / "examples" / "module.yaml").read_text())
    out = []
    for i in range(n):
        body = yaml.safe_load(yaml.safe_dump(base))
        body["metadata"] = {"name": f"{prefix}-{i:04d}", "labels": {RUN_LABEL: run_label}}
        body["spec"]["metadata"]["title"] = f"Module {i}"
        out.append(body)
    return out




class Phase:
    """One phase's server, platform namespace and Module names: a fresh emulator, or the real
    server with a namespace and a name prefix of its own (its Modules deleted at the end)."""

    def __init__(self, real: str | None, name: str) -> None:
        self.real, self.name = real, name
        self.run = f"{name}-{uuid.uuid4().hex[:6]}"
        self.prefix = self.run  # Module names: cluster-scoped, unique per phase and run
        self.spec = ""
        self.ns = ""

    @contextlib.contextmanager
    def server(self) -> Iterator[k.Kube]:
        with contextlib.ExitStack() as stack:
            self.spec = self.real or stack.enter_context(_servers.emulator())
            kube = _servers.client_for(self.spec)
            self.ns = _servers.namespace(kube, f"bench-cat-{self.name}")
            try:
                yield kube
            finally:
                if self.real:  # leave the shared server as it was (not timed)
                    kube.request("DELETE", MODULES.path(None),
                                 query={"labelSelector": f"{RUN_LABEL}={self.run}"})
                    kube.delete(k.NAMESPACE, self.ns)
                kube.close()


def direct(phase: Phase, n: int) -> float:
    """The baseline: the entry ConfigMaps and the index, written straight through the API."""
    with phase.server() as kube:
        modules = [Module.from_body(dict(b, metadata=dict(b["metadata"], uid=f"u{i}")))
                   for i, b in enumerate(bodies(n, phase.prefix, phase.run))]
        start = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda m: kube.apply(build_catalogue_entry(m, phase.ns)), modules))
        write_index(kube, phase.ns, [index_item(m) for m in modules])
        return time.perf_counter() - start


def count_entries(kube: k.Kube, namespace: str) -> int:
    """How many entry ConfigMaps exist (read only once the index head counts every Module, so
    that polling does not load the API it measures). Pages of 500; a real API server gives no
    remainingItemCount for a list with a label selector."""
    count, token = 0, None
    while True:
        page = kube.request("GET", k.CONFIGMAP.path(namespace), query={
            "labelSelector": f"{CATALOGUE_LABEL}=entry", "limit": 500, "continue": token})
        count += len(page.get("items") or [])
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return count


def api_floor(phase: Phase, n: int) -> float:
    """Not the baseline, for the record: every write the product needs per Module (its create,
    the entry, one status patch, one Event) plus the index, straight through the API. The
    operator cannot beat this; its ratio to the baseline is the lowest ratio this API allows."""
    with phase.server() as kube:
        todo = bodies(n, phase.prefix, phase.run)
        start = time.perf_counter()

        def one(body: dict[str, Any]) -> dict[str, Any]:
            created = kube.create(body)
            module = Module.from_body(created)
            kube.apply(build_catalogue_entry(module, phase.ns))
            conditions = [
                {"type": t, "status": "True", "reason": r, "message": r, "observedGeneration": 1,
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
                for t, r in (("MetadataValid", "Valid"), ("Ready", "Published"))
            ]
            kube.patch_status(MODULES, module.name, None, {"status": {
                "observedGeneration": 1, "image": module.spec.image,
                "catalogueEntry": f"module-{module.name}", "conditions": conditions,
            }})
            kube.create(event_for(created, "Published", "MetadataValid=True; Ready=True"))
            return index_item(module)

        with ThreadPoolExecutor(WORKERS) as pool:
            items = list(pool.map(one, todo))
        write_index(kube, phase.ns, items)
        return time.perf_counter() - start


def _operate(spec: str, namespace: str, conn: Connection) -> None:
    """The operator's process: runs until told "stop"; "resync" runs the Module controller's
    periodic resync once (what its index writer does every DEEP_RESYNC_SECONDS) and answers
    with the requests its client made meanwhile."""
    kube = _servers.client_for(spec, "operator")
    requests: list[tuple[str, str]] = []
    send = kube._send

    def counted(method: str, path: str, *args: Any) -> Any:
        requests.append((method, path.split("?", 1)[0]))
        return send(method, path, *args)

    kube._send = counted  # type: ignore[method-assign]
    # it watches its own namespace only: TrainingJobs and services elsewhere are not its business
    config = OperatorConfig(platform_namespace=namespace, namespaces=[namespace], metrics_port=0,
                            health_port=0, workers=WORKERS, resync_seconds=3600)
    stop, ready = threading.Event(), threading.Event()
    # kopf takes threading events as its flags
    thread = threading.Thread(
        target=lambda: asyncio.run(run(kube, config, stop_flag=stop, ready_flag=ready)), daemon=True
    )
    thread.start()
    conn.send(ready.wait(60))
    while (command := conn.recv()) != "stop":
        if command == "resync":
            start = len(requests)
            module_controller.writer_of(runtime.current()).resync_now()
            time.sleep(2.0)  # anything it marked has been rebuilt
            conn.send(requests[start:])
        elif isinstance(command, int):
            conn.send(requests[command:])
    stop.set()
    thread.join(30)


@contextlib.contextmanager
def operator_process(spec: str, namespace: str) -> Iterator[Connection]:
    """The operator in its own process, as its Deployment runs it: not sharing an interpreter
    lock with the benchmark's client that creates the Modules."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_operate, args=(spec, namespace, child),
                                                        daemon=True)
    proc.start()
    try:
        if not parent.recv():
            raise SystemExit("the operator did not start")
        yield parent
    finally:
        parent.send("stop")
        proc.join(30)


def through_operator(phase: Phase, n: int, timeout: float = 300) -> tuple[float, list[tuple[str, str]], int]:
    """(seconds until the index is complete, the requests of a resync with nothing changed,
    how many Modules the operator found already there)."""
    with phase.server() as kube:
        others = len(kube.list(MODULES))  # a shared server's own Modules are in the index too
        with operator_process(phase.spec, phase.ns) as operator:
            todo = bodies(n, phase.prefix, phase.run)  # built before the clock starts, as in the baseline
            wanted = {b["metadata"]["name"] for b in todo}
            start = time.perf_counter()
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(kube.create, todo))
            while True:
                # the head first (one small GET): shards and entries are read only once it counts
                # every Module, so that polling does not load the API it measures
                head = kube.get(k.CONFIGMAP, INDEX_HEAD, phase.ns)
                if head and json.loads(head["data"]["index.json"]).get("modules") == n + others:
                    try:
                        names = {i["name"] for i in read_index(kube, phase.ns)}
                    except IndexReadError:  # a rebuild in progress: read again
                        names = set()
                    if wanted <= names and count_entries(kube, phase.ns) == n + others:
                        break
                if time.perf_counter() - start > timeout:
                    counted = json.loads(head["data"]["index.json"]).get("modules") if head else None
                    raise SystemExit(f"the index did not complete within {timeout:.0f} s (head counts "
                                     f"{counted} of {n + others}, {count_entries(kube, phase.ns)} entries)")
                time.sleep(0.05)
            elapsed = time.perf_counter() - start

            # quiet first (the status echoes, the last Events), then a resync with nothing changed
            operator.send(0)
            quiet = len(operator.recv())
            for _ in range(60):
                time.sleep(1.0)
                operator.send(quiet)
                fresh = operator.recv()
                if not fresh:
                    break
                quiet += len(fresh)
            else:
                print(f"the operator never went quiet; its last calls: {fresh[-10:]}", flush=True)
            operator.send("resync")
            calls = operator.recv()
        return elapsed, calls, others


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="?", type=int, default=1000)
    _servers.add_option(parser)
    options = parser.parse_args()
    n = options.modules
    with contextlib.ExitStack() as stack:
        real = None
        if options.server != "emulator":
            real = stack.enter_context(_servers.real_server(required=options.server == "real"))
        if real is None:
            print("server: emulator (tests/harness/apiserver.py), a fresh one per phase", flush=True)
        else:
            api = _servers.client_for(real)
            _servers.install_crds(api)
            api.close()
        base = direct(Phase(real, "direct"), n)
        print(f"direct: {base:.2f} s", flush=True)
        operated, calls, others = through_operator(Phase(real, "operator"), n)
        print(f"through the operator: {operated:.2f} s", flush=True)
        floor = api_floor(Phase(real, "floor"), n)
    ratio = operated / base
    writes = [c for c in calls if c[0] in WRITES]
    already = f" (and {others} Modules already on the server)" if others else ""
    print(f"modules: {n}, workers: {WORKERS}{already}")
    print(f"direct ConfigMap writes (entries + index): {base:.2f} s")
    print(f"operator, create -> index complete and consistent: {operated:.2f} s")
    print(f"for the record, the API floor (create + entry + status + Event per Module, and the index, "
          f"directly): {floor:.2f} s = {floor / base:.2f}x")
    print(f"ratio: {ratio:.2f}x (target <= 3x) {_servers.verdict(ratio <= 3)}")
    kinds: dict[str, int] = {}
    for method, path in writes:
        what = f"{method} {path.rsplit('/', 2)[-2] if method != 'POST' else path.rsplit('/', 1)[-1]}"
        kinds[what] = kinds.get(what, 0) + 1
    print(f"resync of {n + others} unchanged Modules: {len(writes)} writes of {len(calls)} API calls "
          f"(target 0) {_servers.verdict(not writes)}"
          + (": " + ", ".join(f"{w} x{c}" for w, c in sorted(kinds.items())) if kinds else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
