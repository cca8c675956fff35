"""The operator's memory with N objects of each kind reconciled (default 1,000 Modules, 1,000
TrainingJobs, 1,000 InferenceServices), against a baseline measured in the same run.

    python bench/operator_memory.py [--server real|emulator] [--count 1000]

The operator (`deep_platform.operator.run`) runs in its own process; its resident memory is read
from /proc/PID/status (VmRSS, and VmHWM, the peak). Baselines, same run: the idle operator (started,
no objects yet) and a bare interpreter that imported `kubernetes` and `deep_platform`. The
objects are created by this process (16 threads) once the operator is idle; the figure is read
when every object's status reports its generation. Target (issue 12): <= 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _servers  # noqa: E402
from deep_platform import kube as k  # noqa: E402
from deep_platform.api import InferenceService, Module, TrainingJob  # noqa: E402
from deep_platform.config import OperatorConfig  # noqa: E402
from deep_platform.operator import run  # noqa: E402

PLATFORM_NS = "deep-platform"
TARGET_MB = 200.0
KINDS = {"modules": k.kind_of(Module), "trainingjobs": k.kind_of(TrainingJob),
         "inferenceservices": k.kind_of(InferenceService)}


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def _operate(spec: str, namespace: str, trace: bool, conn: Connection) -> None:
    if trace:
        import tracemalloc

        tracemalloc.start(int(os.environ.get("DEEP_TRACEMALLOC_FRAMES", "12")))
    api = _servers.client_for(spec, "operator")
    config = OperatorConfig(platform_namespace=PLATFORM_NS, namespaces=[namespace], metrics_port=0,
                            health_port=0, workers=16, resync_seconds=3600)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(run(api, config, stop_flag=stop, ready_flag=ready)),
                              daemon=True)
    thread.start()
    conn.send(ready.wait(60))
    while True:  # "stop", or "snapshot PATH" (--tracemalloc): where the operator's memory went
        message = conn.recv()
        if not str(message).startswith("snapshot "):
            break
        import gc
        import tracemalloc

        gc.collect()
        tracemalloc.take_snapshot().dump(str(message).split(" ", 1)[1])
        conn.send("done")
    stop.set()
    thread.join(30)


def _bare(conn: Connection) -> None:
    import kubernetes  # noqa: F401

    import deep_platform.operator  # noqa: F401

    conn.send("ready")
    conn.recv()


@contextlib.contextmanager
def process(target: Any, *args: Any) -> Iterator[tuple[int, Connection]]:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    try:
        if not parent.recv():
            raise SystemExit(f"{target.__name__} did not start")
        assert proc.pid is not None
        yield proc.pid, parent
    finally:
        parent.send("stop")
        proc.join(30)




def bodies(n: int, namespace: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    module = yaml.safe_load((ROOT / "examples" / "module.yaml").read_text())
    isvc = yaml.safe_load((ROOT / "examples" / "inferenceservice.yaml").read_text())
    out: dict[str, list[dict[str, Any]]] = {"modules": [], "trainingjobs": [], "inferenceservices": []}
    for i in range(n):
        m = yaml.safe_load(yaml.safe_dump(module))
        m["metadata"] = {"name": f"{prefix}-{i:04d}"}
        out["modules"].append(m)
        out["trainingjobs"].append({
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": f"tj-{i:04d}", "namespace": namespace},
            "spec": {"image": "ai4oshub/phyto-plankton-classification:latest",
                     "hyperparameters": {"epochs": 3}, "resources": {"cpu": 2, "memory": "8Gi"}},
        })
        s = yaml.safe_load(yaml.safe_dump(isvc))
        s["metadata"] = {"name": f"isvc-{i:04d}", "namespace": namespace}
        s["spec"]["module"] = m["metadata"]["name"]
        out["inferenceservices"].append(s)
    return out


def reconciled(api: k.Kube, kind: k.Kind, namespace: str | None) -> int:
    return sum(
        1 for o in api.list(kind, namespace if kind.namespaced else None,
                            label_selector=None)
        if (o.get("status") or {}).get("observedGeneration") == o["metadata"].get("generation")
    )


def cleanup(api: k.Kube, todo: dict[str, list[dict[str, Any]]], namespace: str) -> None:
    """Delete what the run created (the Modules are cluster-wide; the namespace takes the rest),
    so that a later run on the same server starts from the same state."""
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda m: api.delete(KINDS["modules"], m["metadata"]["name"]), todo["modules"]))
    api.delete(k.NAMESPACE, namespace)
    deadline = time.monotonic() + 180
    while api.get(k.NAMESPACE, namespace) is not None and time.monotonic() < deadline:
        time.sleep(1.0)
    left = api.get(k.NAMESPACE, namespace) is not None
    print(("cleanup: namespace still terminating after 180 s; " if left else "cleanup: ") +
          f"{len(todo['modules'])} Modules and namespace {namespace} deleted in "
          f"{time.perf_counter() - started:.1f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--tracemalloc", metavar="DIR", default=None,
                        help="trace the operator's allocations; write idle.snap and loaded.snap to DIR "
                        "(compare with python -m tracemalloc-style tools; slows the operator)")
    _servers.add_option(parser)
    options = parser.parse_args()
    with contextlib.ExitStack() as stack:
        spec, real = _servers.server(stack, options.server, (PLATFORM_NS,))
        api = _servers.client_for(spec)
        if real:
            _servers.install_crds(api)
            _servers.ensure_namespace(api, PLATFORM_NS)
        namespace = _servers.namespace(api, "bench-mem")
        prefix = namespace.replace("bench-mem", "mem")
        with process(_bare) as (bare_pid, _):
            bare, _ = rss_mb(bare_pid)
        trace = Path(options.tracemalloc) if options.tracemalloc else None
        with process(_operate, spec, namespace, trace is not None) as (pid, conn):
            time.sleep(3.0)
            idle, _ = rss_mb(pid)
            if trace is not None:
                trace.mkdir(parents=True, exist_ok=True)
                conn.send(f"snapshot {trace / 'idle.snap'}")
                conn.recv()
            todo = bodies(options.count, namespace, prefix)
            started = time.perf_counter()
            with ThreadPoolExecutor(16) as pool:
                for plural in ("modules", "trainingjobs", "inferenceservices"):
                    list(pool.map(api.create, todo[plural]))
            created = time.perf_counter() - started
            peak_seen = 0.0
            deadline = time.monotonic() + options.timeout
            while True:
                peak_seen = max(peak_seen, rss_mb(pid)[0])
                done = {p: reconciled(api, kind, namespace) for p, kind in KINDS.items()}
                if all(n >= options.count for n in done.values()):
                    break
                if time.monotonic() > deadline:
                    print(f"timed out; reconciled so far: {done}")
                    break
                time.sleep(2.0)
            settled = time.perf_counter() - started
            time.sleep(2.0)
            rss, hwm = rss_mb(pid)
            if trace is not None:
                conn.send(f"snapshot {trace / 'loaded.snap'}")
                conn.recv()
                print(f"tracemalloc snapshots: {trace / 'idle.snap'}, {trace / 'loaded.snap'}")
            cleanup(api, todo, namespace)  # while the operator runs: it removes its finalizers
    n = options.count
    print(f"objects: {n} Modules, {n} TrainingJobs, {n} InferenceServices; created in {created:.1f} s, "
          f"all reconciled after {settled:.1f} s")
    print(f"baseline: bare python + kubernetes + deep_platform imported {bare:.1f} MB; "
          f"idle operator {idle:.1f} MB")
    print(f"operator RSS with {3 * n} objects reconciled: {rss:.1f} MB (peak VmHWM {hwm:.1f} MB) = "
          f"{rss / idle:.2f}x the idle operator, +{(rss - idle) * 1024 / (3 * n):.1f} KB per object "
          f"(target <= {TARGET_MB:.0f} MB) {_servers.verdict(hwm <= TARGET_MB)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
