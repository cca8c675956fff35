"""Training progress on a real cluster: the real Job controller makes the training pod (with
its projected progress token, admitted under Pod Security "restricted"), the kubelet stand-in
runs it, and for that pod a real `deepaas-cli train` of the tiny model runs here as the pod's
process, with the token the kubelet would mount (TokenRequest: audience deep-platform-progress,
bound to the pod). Its reports reach the status through the real TokenReview, by push and by
the stdout collector; tokens that are not the pod's own are refused."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deep_platform import kube as k
from deep_platform.builders.trainingjob_progress import OUTPUT_FILE
from deep_platform.config import OperatorConfig
from deep_platform.operator import run
from deep_platform.progress import AUDIENCE
from deep_platform.progress import receiver as progress_receiver
from tests.e2e.test_trainingjob_e2e import TJ, get_dtj, trainingjob
from tests.harness.node_kubelet import NodeKubelet, Outcome, PodRun
from tests.harness.operator_fixtures import RunningOperator, wait_until


@pytest.fixture
def progress_operator(
    cluster: k.Kube, crds_installed: None, platform_namespace: str, namespace: str
) -> Iterator[RunningOperator]:
    """The real operator with its progress endpoint on a free port."""
    config = OperatorConfig(
        platform_namespace=platform_namespace,
        namespaces=[namespace],
        metrics_port=0,
        health_port=0,
        progress_port=0,
    )
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(run(cluster, config, stop_flag=stop, ready_flag=ready)), daemon=True
    )
    thread.start()
    assert ready.wait(60), "the operator did not start within 60 s"
    endpoint = progress_receiver.current()
    assert endpoint is not None
    endpoint.flusher.status_interval = endpoint.flusher.history_interval = 1.0
    yield RunningOperator(kube=cluster, config=config)
    stop.set()
    thread.join(30)


def token(cluster: k.Kube, namespace: str, pod: dict[str, Any] | None, audience: str = AUDIENCE) -> str:
    """What the kubelet mounts for the projected volume (TokenRequest, bound to the pod)."""
    spec: dict[str, Any] = {"audiences": [audience], "expirationSeconds": 600}
    if pod is not None:
        spec["boundObjectRef"] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod["metadata"]["name"],
            "uid": pod["metadata"]["uid"],
        }
    answer = cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/default/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    return str(answer["status"]["token"])


def post(url: str, body: Any, bearer: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class PodProcess:
    """Runs the training of each Running pod here, as the pod's containers would."""

    def __init__(self, cluster: k.Kube, tmp: Path) -> None:
        self.cluster, self.tmp = cluster, tmp
        self.results: dict[str, subprocess.CompletedProcess[str]] = {}
        self.threads: list[threading.Thread] = []

    def on_running(self, pod: dict[str, Any], _run: PodRun) -> None:
        thread = threading.Thread(target=self._train, args=(pod,), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _train(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        folder = self.tmp / meta["name"]
        folder.mkdir()
        (folder / "token").write_text(token(self.cluster, meta["namespace"], pod))
        train = next(c for c in pod["spec"]["containers"] if c["name"] == "train")
        env = {**os.environ, **{e["name"]: e["value"] for e in train["env"] if "value" in e}}
        endpoint = progress_receiver.current()
        assert endpoint is not None
        # the Service's address, as the pod resolves it, is this process's endpoint here
        env["DEEP_PROGRESS_URL"] = env["DEEP_PROGRESS_URL"].replace(
            env["DEEP_PROGRESS_URL"].split("/v1/")[0], endpoint.url
        )
        env.update(
            DEEP_PROGRESS_TOKEN_FILE=str(folder / "token"),
            TINYMODEL_EPOCH_SECONDS="0.3",
            TINYMODEL_OUTPUT_DIR=str(folder / "models"),
        )
        command = [*train["command"], *train["args"]]
        collector = None
        if command[0] == "sh":  # the stdout collector: its sidecar, reading the file the wrapper tees to
            output = str(folder / "train.log")
            command = [arg.replace(OUTPUT_FILE, output) for arg in command]
            sidecar = next(c for c in pod["spec"]["initContainers"] if c["name"] == "progress-collector")
            args = [a.replace(OUTPUT_FILE, output) for a in sidecar["args"]] + ["--interval", "0.5"]
            collector = subprocess.Popen(
                [sys.executable, "-m", "deep_platform", *args], env=env, text=True, stderr=subprocess.PIPE
            )
            assert collector.stderr is not None
            started = collector.stderr.readline()  # its SIGTERM handler is set: it reports to the end
            assert "reporting the progress" in started, started
        self.results[meta["name"]] = subprocess.run(
            command, env=env, cwd=folder, capture_output=True, text=True, timeout=120
        )
        if collector is not None:
            collector.send_signal(signal.SIGTERM)
            collector.communicate(timeout=30)


def progress_of(api: k.Kube, name: str, namespace: str) -> dict[str, Any]:
    return (((api.get(TJ, name, namespace) or {}).get("status") or {}).get("progress")) or {}


def deepaas_training(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body = trainingjob(name, namespace, **spec)
    body["spec"].pop("command")
    body["spec"]["hyperparameters"] = {"epochs": 3}
    body["spec"]["env"] = [{"name": "DEEPAAS_V2_MODEL", "value": "tinymodel"}]
    return body


def test_a_deepaas_training_reports_through_push_and_the_stdout_collector(
    progress_operator: Any, namespace: str, kubelet: NodeKubelet, tmp_path: Path
) -> None:
    api = progress_operator.kube
    processes = PodProcess(api, tmp_path)
    kubelet.decide = lambda pod: Outcome(exit_code=None)  # runs until deleted; the process is here
    kubelet.on_running = processes.on_running
    api.apply(deepaas_training("pushed", namespace, progress={"stallAfterSeconds": 600}))
    api.apply(
        deepaas_training(
            "printed",
            namespace,
            env=[
                {"name": "DEEPAAS_V2_MODEL", "value": "tinymodel"},
                {"name": "TINYMODEL_REPORT", "value": "print"},
            ],
            progress={"collector": {"stdout": True}},
        )
    )

    for name in ("pushed", "printed"):
        progress = wait_until(
            lambda name=name: (p := progress_of(api, name, namespace)).get("epoch") == 3 and p,
            timeout=90,
            interval=0.5,
            what=f"epoch 3 of {name} in its status",
        )
        assert progress["summary"] == "3/3" and progress["metrics"] == {"loss": 0.125}, progress
        done = processes.results[
            wait_until(
                lambda name=name: next((p for p in processes.results if p.startswith(name)), None),
                timeout=30,
                what="the process",
            )
        ]
        assert done.returncode == 0 and "Epoch 3/3" in done.stdout, done.stderr[-2000:]
    rows = get_dtj(api, namespace)
    assert (rows["pushed"]["Progress"], rows["printed"]["Progress"]) == ("3/3", "3/3")
    status = api.get(TJ, "pushed", namespace)["status"]
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "Reporting")

    pods = {p["metadata"]["labels"]["job-name"]: p for p in api.list(k.POD, namespace)}
    url = progress_receiver.current().url + f"/v1/progress/{namespace}"  # type: ignore[union-attr]
    report = {"epoch": 1, "totalEpochs": 3}
    cases = [
        ("pushed", token(api, namespace, pods["printed"]), 403, "foreign"),  # another TrainingJob's pod
        ("pushed", token(api, namespace, None), 403, "not_a_pod"),  # the audience, but no pod
        (
            "pushed",
            token(api, namespace, pods["pushed"], audience="https://kubernetes.default.svc"),
            401,
            "unauthenticated",
        ),  # the pod's, but for the API server
        ("pushed", "not-a-token", 401, "unauthenticated"),
    ]
    for name, bearer, code, reason in cases:
        answer = post(f"{url}/{name}", report, bearer)
        assert (answer[0], answer[1]["reason"]) == (code, reason), (name, reason, answer)
    assert progress_of(api, "pushed", namespace)["epoch"] == 3  # nothing refused reached the status
