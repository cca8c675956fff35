"""Training progress: N TrainingJobs reporting every second -> status writes stay bounded.

    python bench/training_progress.py [--server real|emulator] [--jobs 200] [--seconds 20]

Three processes, as in a cluster: the API server (`--server real`, the default where one is
available, see bench/_servers.py; or the emulator), the real operator (`deep_platform.operator.run`
with its progress endpoint on a port of its own), and this one, which plays N training pods that
each POST a report every second over real HTTP. On a real server the Job controller makes the
pods and each "pod" reports with a TokenRequest token bound to its pod (audience
deep-platform-progress): the operator checks it with the real TokenReview. The emulator has no
TokenReview: there, this process makes the pods and the operator's reviewer reads the pod from
the token (`--server emulator` only; the pod check is the real one).

Figures, over the measured window (after one warm-up round, which pays the token checks):
- reports accepted per second, and status.progress writes per second by the operator's client
  (target: at most N / 5 s, the coalescing interval: one write per TrainingJob every 5 s);
- the ratio writes / reports (baseline: one write per report, 1.0, what a writer without
  coalescing would do);
- the operator's CPU seconds in the window, against the same operator idle with the same
  TrainingJobs for as long (baseline measured in the same run), and CPU per report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench import _servers  # noqa: E402
from deep_platform import kube as k  # noqa: E402
from deep_platform.api import TrainingJob  # noqa: E402
from deep_platform.progress import AUDIENCE  # noqa: E402
from deep_platform.progress.auth import Identity, Refused  # noqa: E402

TJ_KIND = k.kind_of(TrainingJob)
STATUS_INTERVAL = 5.0


class BenchReviewer:
    """--server emulator only (it has no TokenReview): the token names its pod."""

    def review(self, token: str) -> Identity:
        parts = token.split(":")
        if len(parts) != 4 or parts[0] != "bench":
            raise Refused("unauthenticated", "not a bench token", 401)
        return Identity(parts[1], "default", parts[2], parts[3])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _operate(spec: str, namespace: str, port: int, emulated: bool, conn: Connection) -> None:
    """The operator's process. Answers "mark" with (its requests so far, CPU seconds)."""
    from deep_platform.config import OperatorConfig
    from deep_platform.operator import run
    from deep_platform.progress import receiver

    api = _servers.client_for(spec, "operator")
    requests = _servers.recorded_requests(api, lambda path: path.split("?", 1)[0])
    stop, ready = threading.Event(), threading.Event()
    config = OperatorConfig(
        platform_namespace="deep-platform",
        namespaces=[namespace],
        metrics_port=0,
        health_port=0,
        workers=16,
        progress_port=port,
    )
    thread = threading.Thread(
        target=lambda: asyncio.run(run(api, config, stop_flag=stop, ready_flag=ready)), daemon=True
    )
    thread.start()
    started = ready.wait(60)
    endpoint = receiver.current()
    if emulated and endpoint is not None:
        endpoint.authorizer.reviewer = BenchReviewer()
    conn.send(started and endpoint is not None)
    while conn.recv() != "stop":
        times = os.times()
        conn.send((list(requests), times.user + times.system))
    stop.set()
    thread.join(30)


@contextlib.contextmanager
def operator_process(spec: str, namespace: str, port: int, emulated: bool) -> Iterator[Connection]:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(
        target=_operate, args=(spec, namespace, port, emulated, child), daemon=True
    )
    proc.start()
    try:
        if not parent.recv():
            raise SystemExit("the operator (or its progress endpoint) did not start")
        yield parent
    finally:
        parent.send("stop")
        proc.join(30)


def mark(operator: Connection) -> tuple[list[tuple[str, str]], float]:
    operator.send("mark")
    requests, cpu = operator.recv()
    return requests, cpu


def tj_body(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "busybox:1.36",
            "command": ["sh", "-c", "sleep 3600"],
            "resources": {"cpu": "10m", "memory": "16Mi"},
        },
    }


def pods_by_job(
    client: k.Kube, namespace: str, count: int, timeout: float = 180
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        pods = {
            p["metadata"]["labels"].get("job-name"): p
            for p in client.list(k.POD, namespace, label_selector="deep-hybrid-datacloud.eu/kind=trainingjob")
        }
        if len(pods) >= count:
            return pods
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(pods)} of {count} training pods after {timeout} s")
        time.sleep(1.0)


def make_pods(client: k.Kube, namespace: str, names: list[str]) -> None:
    """What the Job controller does on a real server (the emulator has none)."""
    for name in names:
        job = None
        while job is None:
            job = client.get(k.JOB, name, namespace)
            time.sleep(0 if job else 0.2)
        template = job["spec"]["template"]
        client.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{name}-pod",
                    "namespace": namespace,
                    "labels": {**template["metadata"]["labels"], "job-name": name},
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": name,
                            "uid": job["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": template["spec"],
            }
        )


def bound_token(client: k.Kube, namespace: str, pod: dict[str, Any]) -> str:
    answer = client.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/default/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [AUDIENCE],
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            },
        },
    )
    return str(answer["status"]["token"])


async def report_loop(url: str, tokens: dict[str, str], seconds: float, counts: dict[int, int]) -> None:
    """Every "pod" posts one report a second (epochs rising, a loss falling)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def pod(name: str, bearer: str, offset: float) -> None:
            await asyncio.sleep(offset)
            epoch, ends = 0, time.monotonic() + seconds
            while time.monotonic() < ends:
                epoch += 1
                started = time.monotonic()
                body = {"epoch": epoch, "totalEpochs": 10_000, "metrics": {"loss": 1.0 / epoch, "acc": 0.5}}
                async with session.post(
                    f"{url}/{name}", json=body, headers={"Authorization": f"Bearer {bearer}"}
                ) as answer:
                    await answer.read()
                    counts[answer.status] = counts.get(answer.status, 0) + 1
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

        await asyncio.gather(
            *(pod(name, bearer, i / len(tokens)) for i, (name, bearer) in enumerate(tokens.items()))
        )


def status_writes(requests: list[tuple[str, str]], namespace: str) -> int:
    return sum(
        1
        for method, path in requests
        if method == "PATCH"
        and path.startswith(f"/apis/{TJ_KIND.api_version}/namespaces/{namespace}/")
        and path.endswith("/status")
    )


def measure(spec: str, real: bool, jobs: int, seconds: float) -> int:
    client = _servers.client_for(spec)
    if real:
        _servers.install_crds(client)
        _servers.ensure_namespace(client, "deep-platform")
        namespace = _servers.namespace(client, "bench-progress")
    else:
        namespace = "default"
    port = free_port()
    with operator_process(spec, namespace, port, emulated=not real) as operator:
        names = [f"train-{i}" for i in range(jobs)]
        for name in names:
            client.create(tj_body(name, namespace))
        if not real:
            make_pods(client, namespace, names)
        pods = pods_by_job(client, namespace, jobs)
        tokens = {
            name: (
                bound_token(client, namespace, pods[name])
                if real
                else f"bench:{namespace}:{pods[name]['metadata']['name']}:{pods[name]['metadata']['uid']}"
            )
            for name in names
        }
        time.sleep(3.0)  # the operator's reconciliations of the new pods settle

        # baseline: the same operator, idle with the same TrainingJobs, for as long
        requests, cpu = mark(operator)
        time.sleep(seconds)
        idle_requests, idle_cpu_end = mark(operator)
        idle_cpu = idle_cpu_end - cpu
        idle_writes = status_writes(idle_requests[len(requests) :], namespace)

        url = f"http://127.0.0.1:{port}/v1/progress/{namespace}"
        warm: dict[int, int] = {}
        started = time.monotonic()
        asyncio.run(report_loop(url, tokens, 1.0, warm))  # one round: the token checks
        warm_seconds = time.monotonic() - started
        time.sleep(STATUS_INTERVAL + 1)
        requests, cpu = mark(operator)
        counts: dict[int, int] = {}
        started = time.monotonic()
        asyncio.run(report_loop(url, tokens, seconds, counts))
        window = time.monotonic() - started
        after, cpu_end = mark(operator)
        busy_cpu = cpu_end - cpu
        made = after[len(requests) :]
    writes = status_writes(made, namespace)
    accepted = counts.get(202, 0)
    reports_per_s, writes_per_s = accepted / window, writes / window
    bound = jobs / STATUS_INTERVAL
    # a TrainingJob may write at the window's start, then once every interval
    window_bound = jobs * (int(window // STATUS_INTERVAL) + 1) / window
    ok = writes_per_s <= window_bound and accepted > 0
    others = len(made) - writes
    kinds: dict[str, int] = {}
    for method, path in made:
        what = method + " " + "/".join(p for p in path.split("/")[-3:] if not p.startswith("train-"))
        kinds[what] = kinds.get(what, 0) + 1
    print(
        f"{jobs} TrainingJobs, one report a second each, {window:.1f} s measured "
        f"(warm-up round: {sum(warm.values())} reports in {warm_seconds:.1f} s, answers {warm})"
    )
    print(f"answers: {counts}")
    print(
        f"reports accepted: {reports_per_s:.1f}/s; status.progress writes: {writes_per_s:.1f}/s "
        f"(bound {bound:.0f}/s; {window_bound:.1f}/s over this window): {verdict_line(ok)}"
    )
    print(
        f"writes per report: {writes / max(accepted, 1):.3f} (baseline without coalescing: 1.000) "
        f"-> {accepted / max(writes, 1):.1f}x fewer writes"
    )
    print(
        f"other operator API calls in the window: {others} ({others / window:.1f}/s); "
        f"status writes while idle: {idle_writes}; calls: {dict(sorted(kinds.items()))}"
    )
    print(
        f"operator CPU: {busy_cpu:.2f} s in {window:.1f} s reporting "
        f"({busy_cpu / window * 100:.0f} % of a core) "
        f"vs {idle_cpu:.2f} s idle for {seconds:.0f} s (baseline, same run): "
        f"{busy_cpu / max(idle_cpu, 0.01):.1f}x; {busy_cpu / max(accepted, 1) * 1000:.2f} ms CPU per report"
    )
    return 0 if ok else 1


def verdict_line(ok: bool) -> str:
    return _servers.verdict(ok)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    _servers.add_option(parser)
    options = parser.parse_args()
    with contextlib.ExitStack() as stack:
        spec, real = _servers.server(stack, options.server)
        return measure(spec, real, options.jobs, options.seconds)


if __name__ == "__main__":
    sys.exit(main())
