"""TrainingJob latency and burst, as ratios to the API floor measured in the same run.

    python bench/trainingjob_latency.py [--server real|emulator] [--samples 100] [--burst 1000]

Three processes, as in a cluster: the API server (`--server real`, the default where one is
available: kube-apiserver 1.36 of shared/k8s, see bench/_servers.py; or `--server emulator`, the
emulator of tests/harness), the real operator (`deep_platform.operator.run`, kopf and all), and
this one, the client that creates objects and watches for the answer. None shares an interpreter
lock with another. On a real server the Job controller also makes the Pods of every Job (floor
and operator alike); nothing runs them.

- latency: TrainingJob created -> its Job created and its status written (seen on a watch),
  one at a time; floor: the same Job objects created directly through the API, one at a time;
- burst: N TrainingJobs created at once (16 client threads) until every status is written;
  floor: the same N Jobs created the same way;
- path floor, for both: the three writes the path needs (create the TrainingJob, create its
  Job, write its status) made directly by this client, with no operator and no watch: what
  any controller that writes the status after the Job exists cannot beat on this API server;
- writes over a resync: API writes made by the operator's client while every TrainingJob is
  reconciled once more with nothing changed (target: 0).

Targets (issue 4): p50 within 3x the floor, burst within 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bench import _servers  # noqa: E402
from deep_platform import kube as k  # noqa: E402
from deep_platform.api import TrainingJob  # noqa: E402
from deep_platform.builders.trainingjob import build_job  # noqa: E402
from deep_platform.config import OperatorConfig  # noqa: E402
from deep_platform.controllers import runtime  # noqa: E402
from deep_platform.controllers.trainingjob import resync_all  # noqa: E402
from deep_platform.operator import run  # noqa: E402

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
NS = "default"  # set per run in main() (unique namespaces on a real server)
PATH_NS = "path-floor"
TJ_KIND = k.kind_of(TrainingJob)


def tj_body(name: str, namespace: str | None = None) -> dict[str, Any]:
    namespace = namespace or NS
    return {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "ai4oshub/phyto-plankton-classification:latest",
                 "hyperparameters": {"epochs": 3, "lr": 0.001},
                 "resources": {"cpu": 2, "memory": "8Gi"}},
    }


def job_body(name: str, namespace: str | None = None) -> dict[str, Any]:
    """The Job the operator would create for tj_body(name), with a made-up owner uid."""
    body = tj_body(name, namespace)
    body["metadata"]["uid"] = f"uid-{name}"
    return build_job(TrainingJob.from_body(body), None)


class StatusWatch:
    """Records when each TrainingJob's status first names its Job (a watch, like any client)."""

    def __init__(self, spec: str, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self.kube = _servers.client_for(spec, "bench-watch")
        self.namespace = namespace
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for event in self.kube.watch(TJ_KIND, self.namespace, timeout_seconds=3600):
            obj = event.get("object") or {}
            if (obj.get("status") or {}).get("jobName"):
                with self.cond:
                    self.seen.setdefault(obj["metadata"]["name"], time.perf_counter())
                    self.cond.notify_all()

    def wait(self, names: list[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(n in self.seen for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [n for n in names if n not in self.seen]
                    raise SystemExit(f"timed out: {len(missing)} TrainingJobs never got a status")
                self.cond.wait(left)


def _resource(path: str) -> str:
    """jobs, trainingjobs/status... from an API path."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[2:] if parts[0] == "api" else parts[3:]
    return "/".join(p for i, p in enumerate(parts) if i != 1)


def _operate(spec: str, namespace: str, conn: Connection) -> None:
    """The operator's process: runs until told "stop"; "resync" runs one resync and answers with
    the requests its client made meanwhile; "calls" answers with all of them from an index."""
    api = _servers.client_for(spec, "operator")
    requests = _servers.recorded_requests(api, _resource)
    stop, ready = threading.Event(), threading.Event()
    # it watches NS only: the path floor's objects, elsewhere, are not its business
    config = OperatorConfig(platform_namespace="deep-platform", namespaces=[namespace], metrics_port=0,
                            health_port=0, workers=16)
    thread = threading.Thread(target=lambda: asyncio.run(
        run(api, config, stop_flag=stop, ready_flag=ready)), daemon=True)
    thread.start()
    conn.send(ready.wait(60))
    while (command := conn.recv()) != "stop":
        if command == "resync":
            start = len(requests)
            resync_all(runtime.current())  # what the operator does every DEEP_RESYNC_SECONDS
            time.sleep(2.0)  # anything it queued has run
            conn.send(requests[start:])
        elif isinstance(command, int):
            conn.send(requests[command:])
    stop.set()
    thread.join(30)


@contextlib.contextmanager
def operator_process(spec: str, namespace: str) -> Iterator[Connection]:
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




def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def path_writes(client: k.Kube, name: str, status: dict[str, Any]) -> None:
    """The path's three writes, made directly: TrainingJob, its Job, its status (in a namespace
    the operator does not watch, so that nobody else writes)."""
    client.create(tj_body(name, PATH_NS))
    client.create(job_body(name, PATH_NS))
    client.patch_status(TJ_KIND, name, PATH_NS, status)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--burst", type=int, default=1000)
    _servers.add_option(parser)
    options = parser.parse_args()
    with contextlib.ExitStack() as stack:
        spec, real = _servers.server(stack, options.server)
        return measure(spec, real, options.samples, options.burst)


def measure(spec: str, real: bool, samples: int, burst_size: int) -> int:
    global NS, PATH_NS
    client = _servers.client_for(spec)
    if real:
        _servers.install_crds(client)
        _servers.ensure_namespace(client, "deep-platform")
        NS, PATH_NS = _servers.namespace(client, "bench-tj"), _servers.namespace(client, "bench-tj-path")
    else:
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PATH_NS}})
    with operator_process(spec, NS) as operator:
        watch = StatusWatch(spec, NS)
        time.sleep(0.5)

        # latency, one at a time
        floor, latency, path = [], [], []
        for i in range(samples):
            started = time.perf_counter()
            client.create(job_body(f"floor-{i}"))
            floor.append(time.perf_counter() - started)
        for i in range(samples):
            name = f"lat-{i}"
            started = time.perf_counter()
            client.create(tj_body(name))
            watch.wait([name])
            latency.append(watch.seen[name] - started)
        # the status the operator wrote, written directly
        status = (client.get(TJ_KIND, "lat-0", NS) or {}).get("status") or {}
        for i in range(samples):
            started = time.perf_counter()
            path_writes(client, f"path-{i}", status)
            path.append(time.perf_counter() - started)

        # burst
        pool = ThreadPoolExecutor(16)
        started = time.perf_counter()
        list(pool.map(lambda i: client.create(job_body(f"bfloor-{i}")), range(burst_size)))
        burst_floor = time.perf_counter() - started
        started = time.perf_counter()
        list(pool.map(lambda i: path_writes(client, f"bpath-{i}", status), range(burst_size)))
        burst_path = time.perf_counter() - started
        names = [f"burst-{i}" for i in range(burst_size)]
        operator.send(0)
        burst_from = len(operator.recv())
        started = time.perf_counter()
        list(pool.map(lambda n: client.create(tj_body(n)), names))
        watch.wait(names)
        burst = max(watch.seen[n] for n in names) - started
        operator.send(burst_from)
        burst_calls = operator.recv()

        # a resync with nothing changed: every TrainingJob reconciled once more, once all is quiet
        operator.send(0)
        quiet = len(operator.recv())
        while True:
            time.sleep(1.0)
            operator.send(quiet)
            fresh = len(operator.recv())
            if not fresh:
                break
            quiet += fresh
        reconciled = len(client.list(TJ_KIND, NS))
        # on a real server the first resync may find news no watch brought (Pods the scheduler
        # marked Unschedulable: there are no nodes); the second one must find nothing to write
        operator.send("resync")
        first_writes = [c for c in operator.recv() if c[0] in WRITES]
        operator.send("resync")
        calls = operator.recv()
        writes = [c for c in calls if c[0] in WRITES]

    p50, p99 = statistics.median(latency), pct(latency, 0.99)
    f50, f99 = statistics.median(floor), pct(floor, 0.99)
    path50 = statistics.median(path)
    print(f"latency p50: {p50 * 1000:.1f} ms, floor p50 {f50 * 1000:.1f} ms -> ratio {p50 / f50:.2f} "
          f"(target <= 3) {_servers.verdict(p50 / f50 <= 3)}")
    print(f"latency p99: {p99 * 1000:.1f} ms, floor p99 {f99 * 1000:.1f} ms -> ratio {p99 / f99:.2f}")
    print(f"  path floor p50 (the 3 writes made directly, one after the other): {path50 * 1000:.1f} ms "
          f"-> ratio {path50 / f50:.2f}; the operator adds {(p50 - path50) * 1000:.1f} ms "
          "(two watch deliveries and its own work)")
    print(f"burst of {burst_size}: {burst:.2f} s, floor {burst_floor:.2f} s -> ratio "
          f"{burst / burst_floor:.2f} (target <= 2) {_servers.verdict(burst / burst_floor <= 2)}")
    print(f"  path floor for the burst (the 3 writes per TrainingJob made directly, 16 threads): "
          f"{burst_path:.2f} s -> ratio {burst_path / burst_floor:.2f}")
    per_kind: dict[str, int] = {}
    for method, resource in burst_calls:
        what = f"{method} {resource}"
        per_kind[what] = per_kind.get(what, 0) + 1
    print("API calls of the operator's client per TrainingJob in the burst (the floor makes 1 create): "
          + ", ".join(f"{what} {n / burst_size:.2f}" for what, n in sorted(per_kind.items())))
    kinds = sorted({f"{method} {resource}" for method, resource in writes})
    print(f"first resync of {reconciled} TrainingJobs: {len(first_writes)} writes "
          "(news the watches did not bring)")
    print(f"resync of {reconciled} unchanged TrainingJobs: {len(writes)} writes of "
          f"{len(calls)} API calls (target 0) {_servers.verdict(not writes)}"
          f"{': ' + ', '.join(kinds) if kinds else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
