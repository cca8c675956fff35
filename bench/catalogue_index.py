"""Benchmark: N Modules (default 1,000) created at once; time until the catalogue index is
complete and consistent, as a ratio to the time the same ConfigMap writes take through the API
directly (same emulator build, same thread count, same run). Target: within 3x.

    python bench/catalogue_index.py [N]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import pathlib
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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
from deep_platform.events import event_for  # noqa: E402
from deep_platform.operator import run  # noqa: E402
from tests.harness.apiserver import ApiServer  # noqa: E402
from tests.harness.operator_fixtures import kube_for  # noqa: E402

NS = "deep-platform"
MODULES = k.kind_of(Module)
WORKERS = 16


def bodies(n: int) -> list[dict[str, Any]]:
    base = yaml.safe_load((ROOT / "examples" / "module.yaml").read_text())
    out = []
    for i in range(n):
        body = yaml.safe_load(yaml.safe_dump(base))
        body["metadata"] = {"name": f"bench-{i:04d}"}
        body["spec"]["metadata"]["title"] = f"Module {i}"
        out.append(body)
    return out


def _serve(conn: Connection) -> None:
    with ApiServer.running() as server:
        server.load_crds(ROOT / "crds")
        conn.send(server.url)
        conn.recv()  # until the run is over


@contextlib.contextmanager
def api_server() -> Iterator[str]:
    """The emulator in its own process, as the API server of a real cluster is: the operator
    (or the direct client) never shares an interpreter lock with it. Both paths use this."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        proc.join(30)


def direct(n: int) -> float:
    """The baseline: the entry ConfigMaps and the index, written straight through the API."""
    with api_server() as url:
        kube = kube_for(url)
        modules = [Module.from_body(dict(b, metadata=dict(b["metadata"], uid=f"u{i}")))
                   for i, b in enumerate(bodies(n))]
        start = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda m: kube.apply(build_catalogue_entry(m, NS)), modules))
        write_index(kube, NS, [index_item(m) for m in modules])
        elapsed = time.perf_counter() - start
        kube.close()
        return elapsed


def count_entries(kube: k.Kube) -> int:
    """How many entry ConfigMaps exist, from a one-item page (remainingItemCount), as a client
    of a real API server would count them without fetching 1,000 objects on every poll."""
    page = kube.request("GET", k.CONFIGMAP.path(NS),
                        query={"labelSelector": f"{CATALOGUE_LABEL}=entry", "limit": 1})
    return len(page.get("items") or []) + int(page["metadata"].get("remainingItemCount") or 0)


def api_floor(n: int) -> float:
    """Not the baseline, for the record: every write the product needs per Module (its create,
    the entry, one status patch, one Event) plus the index, straight through the API. The
    operator cannot beat this; its ratio to the baseline is the lowest ratio this API allows."""
    with api_server() as url:
        kube = kube_for(url)
        todo = bodies(n)
        start = time.perf_counter()

        def one(body: dict[str, Any]) -> dict[str, Any]:
            created = kube.create(body)
            module = Module.from_body(created)
            kube.apply(build_catalogue_entry(module, NS))
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
        write_index(kube, NS, items)
        elapsed = time.perf_counter() - start
        kube.close()
        return elapsed


def _operate(url: str, conn: Connection) -> None:
    kube = kube_for(url, component="operator")
    config = OperatorConfig(platform_namespace=NS, namespaces=[], metrics_port=0, health_port=0,
                            workers=WORKERS, resync_seconds=3600)
    stop, ready = threading.Event(), threading.Event()
    # kopf takes threading events as its flags
    thread = threading.Thread(
        target=lambda: asyncio.run(run(kube, config, stop_flag=stop, ready_flag=ready)), daemon=True
    )
    thread.start()
    conn.send(ready.wait(30))
    conn.recv()
    stop.set()
    thread.join(30)


@contextlib.contextmanager
def operator_process(url: str) -> Iterator[None]:
    """The operator in its own process, as its Deployment runs it: not sharing an interpreter
    lock with the benchmark's client that creates the Modules."""
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_operate, args=(url, child), daemon=True)
    proc.start()
    try:
        assert parent.recv(), "operator did not start"
        yield
    finally:
        parent.send("stop")
        proc.join(30)


def through_operator(n: int) -> float:
    with api_server() as url, operator_process(url):
        kube = kube_for(url)
        todo = bodies(n)  # built before the clock starts, as in the baseline
        wanted = sorted(b["metadata"]["name"] for b in todo)
        start = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(kube.create, todo))
        while True:
            # the head first (one small GET): shards and entries are read only once it counts
            # every Module, so that polling does not load the API it measures
            head = kube.get(k.CONFIGMAP, INDEX_HEAD, NS)
            if head and json.loads(head["data"]["index.json"]).get("modules") == n:
                try:
                    names = sorted(i["name"] for i in read_index(kube, NS))
                except IndexReadError:  # a rebuild in progress: read again
                    names = []
                if names == wanted and count_entries(kube) == n:
                    break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        kube.close()
        return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    base = direct(n)
    operated = through_operator(n)
    floor = api_floor(n)
    ratio = operated / base
    print(f"modules: {n}, workers: {WORKERS}")
    print(f"direct ConfigMap writes (entries + index): {base:.2f} s")
    print(f"operator, create -> index complete and consistent: {operated:.2f} s")
    print(f"for the record, the API floor (create + entry + status + Event per Module, and the index, "
          f"directly): {floor:.2f} s = {floor / base:.2f}x")
    print(f"ratio: {ratio:.2f}x (target <= 3x) {'OK' if ratio <= 3 else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
