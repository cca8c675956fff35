"""Training progress in the operator process (emulator): a real `deepaas-cli train` of the tiny
model reports through each path (its own pushes; the stdout collector, `deep-platform report
--follow`, reading the wrapped training's output) into the TrainingJob's status, its history
and the dashboard's data; refusals are answered and counted. The emulator has no TokenReview,
so the accept path's token check is a stand-in here (the pod check is real); the real
TokenReview runs in tests/e2e/test_progress_e2e.py."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from deep_platform.builders.trainingjob_progress import TEE_SCRIPT
from deep_platform.config import OperatorConfig
from deep_platform.progress import receiver as progress_receiver
from deep_platform.progress.auth import Identity, Refused
from deep_platform.progress.tracker import (
    REFUSED,
    STATUS_WRITES,
    TRACKER,
    history_configmap_name,
    history_from_configmap,
)
from tests.harness.operator_fixtures import ACTIVATOR_URL, wait_until
from tests.integration.test_trainingjob import NS, TJ, play_pod, trainingjob

pytestmark = pytest.mark.emulator_only(
    "plays the Job controller and the kubelet (pod status); the real server's story with the "
    "real TokenReview is tests/e2e/test_progress_e2e.py"
)
PLATFORM_NS = "deep-platform"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


RUNNING = {
    "phase": "Running",
    "conditions": [{"type": "PodScheduled", "status": "True"}],
    "containerStatuses": [{"name": "train", "restartCount": 0, "state": {"running": {}}}],
}


@pytest.fixture
def operator_config() -> OperatorConfig:
    return OperatorConfig(
        platform_namespace=PLATFORM_NS,
        namespaces=[],
        activator_url=ACTIVATOR_URL,
        metrics_port=0,
        health_port=0,
        workers=8,
        progress_port=0,
    )


class PodTokens:
    """Stands in for TokenReview only: a token names a pod, as the API server's answer would."""

    def __init__(self) -> None:
        self.pods: dict[str, Identity] = {}

    def review(self, token: str) -> Identity:
        if token not in self.pods:
            raise Refused("unauthenticated", "the token is not valid", 401)
        return self.pods[token]


def running_training(apiserver: Any, operator: Any, name: str, **spec: Any) -> dict[str, Any]:
    """A TrainingJob whose pod runs (the test plays the Job controller and the kubelet)."""
    operator.kube.create(
        trainingjob(name, image="me/model:1", resources={"cpu": "1", "memory": "1Gi"}, **spec)
    )
    job = wait_until(lambda: apiserver.get("jobs", NS, name), 10, what=f"the Job of {name}")
    apiserver.patch_status("jobs", NS, name, {"active": 1, "startTime": now()})
    play_pod(apiserver, job, f"{name}-a", {**RUNNING, "startTime": now()})
    wait_until(
        lambda: (apiserver.get(TJ.plural, NS, name) or {}).get("status", {}).get("phase") == "Running",
        10,
        what=f"{name} Running",
    )
    return apiserver.get("pods", NS, f"{name}-a")


def pod_env(endpoint: Any, name: str, token_file: Path) -> dict[str, str]:
    """What the pod's containers get from the builder, pointing at this test's endpoint."""
    return {
        **os.environ,
        "DEEP_PROGRESS_URL": f"{endpoint.url}/v1/progress/{NS}/{name}",
        "DEEP_PROGRESS_TOKEN_FILE": str(token_file),
        "DEEPAAS_V2_MODEL": "tinymodel",
        "TINYMODEL_EPOCH_SECONDS": "0.3",
    }


def grant(tokens: PodTokens, pod: dict[str, Any], token: str, tmp_path: Path) -> Path:
    tokens.pods[token] = Identity(NS, "default", pod["metadata"]["name"], pod["metadata"]["uid"])
    path = tmp_path / f"token-{pod['metadata']['name']}"
    path.write_text(token)
    return path


def progress_of(apiserver: Any, name: str) -> dict[str, Any]:
    return ((apiserver.get(TJ.plural, NS, name) or {}).get("status") or {}).get("progress") or {}


def conditions(apiserver: Any, name: str) -> dict[str, tuple[str, str]]:
    st = (apiserver.get(TJ.plural, NS, name) or {}).get("status") or {}
    return {c["type"]: (c["status"], c["reason"]) for c in st.get("conditions") or []}


def history(apiserver: Any, name: str) -> dict[str, Any] | None:
    return history_from_configmap(apiserver.get("configmaps", PLATFORM_NS, history_configmap_name(NS, name)))


@pytest.fixture
def endpoint(operator: Any) -> Any:
    found = progress_receiver.current()
    assert found is not None, "the operator serves the progress endpoint"
    found.flusher.status_interval = found.flusher.history_interval = 1.0
    return found


def ratio_series() -> dict[str, float]:
    """deep_training_progress_ratio as /metrics shows it, by TrainingJob name."""
    return {
        sample.labels["name"]: sample.value
        for family in REGISTRY.collect()
        if family.name == "deep_training_progress_ratio"
        for sample in family.samples
    }


def post(url: str, body: Any, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_deepaas_training_pushes_its_progress_into_the_status(
    apiserver: Any, operator: Any, endpoint: Any, tmp_path: Path
) -> None:
    tokens = PodTokens()
    endpoint.authorizer.reviewer = tokens
    pod = running_training(apiserver, operator, "pushed", progress={"stallAfterSeconds": 30})
    assert conditions(apiserver, "pushed")["Progressing"] == ("True", "AwaitingReport")
    token_file = grant(tokens, pod, "token-of-pushed", tmp_path)
    writes_before = STATUS_WRITES._value.get()
    done = subprocess.run(
        [shutil.which("deepaas-cli") or "deepaas-cli", "train", "--epochs=5"],
        env=pod_env(endpoint, "pushed", token_file),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Epoch 5/5" in done.stdout

    progress = wait_until(
        lambda: (p := progress_of(apiserver, "pushed")).get("epoch") == 5 and p,
        10,
        what="epoch 5 in status.progress",
    )
    assert (progress["summary"], progress["percent"], progress["totalEpochs"]) == ("5/5", 100, 5)
    assert progress["metrics"] == {"loss": 0.03125} and progress["reports"] == 5
    assert dt.datetime.fromisoformat(progress["lastReportTime"]) > dt.datetime.now(dt.UTC) - dt.timedelta(
        minutes=1
    )
    # five reports in about 1.5 s, written at most once a second
    assert STATUS_WRITES._value.get() - writes_before <= 3
    assert conditions(apiserver, "pushed")["Progressing"] == ("True", "Reporting")
    kept = wait_until(
        lambda: (h := history(apiserver, "pushed")) and len(h["points"]) == 5 and h,
        10,
        what="the history ConfigMap",
    )
    assert [p["x"] for p in kept["points"]] == [1, 2, 3, 4, 5]
    assert [p["m"]["loss"] for p in kept["points"]] == [0.5, 0.25, 0.125, 0.0625, 0.03125]

    # the operator restarts: what it kept in memory is gone, the history is read back
    assert ratio_series().get("pushed") == 1.0  # Prometheus: 5 of 5 epochs
    TRACKER.reset()
    code, _ = post(
        f"{endpoint.url}/v1/progress/{NS}/pushed",
        {"epoch": 5, "metrics": {"val_loss": 0.2}},
        "token-of-pushed",
    )
    assert code == 202
    kept = wait_until(
        lambda: (h := history(apiserver, "pushed")) and "val_loss" in h["points"][-1]["m"] and h,
        10,
        what="the history, read back and written again",
    )
    assert [p["m"].get("loss") for p in kept["points"]] == [0.5, 0.25, 0.125, 0.0625, 0.03125]

    # no report for longer than stallAfterSeconds while the pod runs: Stalled
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    apiserver.patch_status(TJ.plural, NS, "pushed", {"progress": {"lastReportTime": long_ago}})
    wait_until(
        lambda: conditions(apiserver, "pushed")["Progressing"] == ("False", "Stalled"),
        10,
        what="Progressing=False Stalled",
    )

    stalled = wait_until(
        lambda: next(
            (
                e
                for e in apiserver.list("events", NS)
                if e["involvedObject"]["name"] == "pushed" and e["reason"] == "Stalled"
            ),
            None,
        ),
        10,
        what="a Stalled Event",
    )
    assert stalled["type"] == "Warning" and "stallAfterSeconds" in stalled["message"]

    operator.kube.delete(TJ, "pushed", NS)  # its history and its Prometheus series go with it
    wait_until(lambda: history(apiserver, "pushed") is None, 10, what="the history ConfigMap deleted")
    wait_until(lambda: "pushed" not in ratio_series(), 10, what="the series removed")


def test_the_stdout_collector_reports_what_the_training_prints(
    apiserver: Any, operator: Any, endpoint: Any, tmp_path: Path
) -> None:
    tokens = PodTokens()
    endpoint.authorizer.reviewer = tokens
    pod = running_training(apiserver, operator, "printed", progress={"collector": {"stdout": True}})
    token_file = grant(tokens, pod, "token-of-printed", tmp_path)
    env = {
        **pod_env(endpoint, "printed", token_file),
        "TINYMODEL_REPORT": "print",
    }  # a module that only prints
    output = tmp_path / "train.log"
    # the pod's two containers: the collector sidecar and the wrapped training (as the builder makes them)
    collector = subprocess.Popen(
        [sys.executable, "-m", "deep_platform", "report", "--follow", str(output), "--interval", "0.5"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started_line = collector.stderr.readline() if collector.stderr else ""  # its SIGTERM handler is set
        assert "reporting the progress" in started_line, started_line
        done = subprocess.run(
            ["sh", "-c", TEE_SCRIPT, "tee", str(output), "deepaas-cli", "train", "--epochs=4"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Epoch 4/4" in done.stdout and "epoch=4 loss=0.0625" in done.stdout  # still in `kubectl logs`
    finally:
        collector.send_signal(signal.SIGTERM)  # the training ended: the kubelet stops the sidecar
        _, errors = collector.communicate(timeout=20)
    assert collector.returncode == 0, errors
    progress = wait_until(
        lambda: (p := progress_of(apiserver, "printed")).get("epoch") == 4 and p,
        10,
        what="epoch 4 from the training's output",
    )
    assert progress["summary"] == "4/4" and progress["metrics"] == {"loss": 0.0625}
    kept = wait_until(lambda: history(apiserver, "printed"), 10, what="the history ConfigMap")
    assert kept["points"][-1] == {"x": 4, "t": kept["points"][-1]["t"], "m": {"loss": 0.0625}}


def refused(reason: str) -> float:
    return float(REFUSED.labels(reason)._value.get())


def test_bad_and_foreign_tokens_other_trainingjobs_and_floods_are_refused_and_counted(
    apiserver: Any, operator: Any, endpoint: Any, tmp_path: Path
) -> None:
    mine = running_training(apiserver, operator, "mine")
    running_training(apiserver, operator, "theirs")
    url = f"{endpoint.url}/v1/progress/{NS}"
    report = {"epoch": 1, "totalEpochs": 3, "metrics": {"loss": 0.5}}
    # the real TokenReviewer: the emulator knows no such token
    before = refused("unauthenticated")
    assert post(f"{url}/mine", report, "forged")[0] == 401
    assert post(f"{url}/mine", report, None)[0] == 401
    assert refused("unauthenticated") == before + 2

    tokens = PodTokens()
    endpoint.authorizer.reviewer = tokens
    grant(tokens, mine, "token-of-mine", tmp_path)
    before = refused("foreign")
    code, said = post(f"{url}/theirs", report, "token-of-mine")  # a pod of another TrainingJob
    assert (code, said["reason"]) == (403, "foreign") and "theirs" in said["error"]
    tokens.pods["token-of-a-stranger"] = Identity(NS, "default", "no-such-pod", "uid-0")
    assert post(f"{url}/mine", report, "token-of-a-stranger")[0] == 403
    assert refused("foreign") == before + 2

    code, said = post(f"{url}/mine", {"epoch": "three"}, "token-of-mine")
    assert code == 400 and "epoch must be" in said["error"]

    before = refused("rate_limited")
    answers = [post(f"{url}/mine", report, "token-of-mine")[0] for _ in range(30)]
    assert answers.count(429) >= 15 and set(answers) <= {202, 429}
    assert refused("rate_limited") - before == answers.count(429)
    assert progress_of(apiserver, "theirs") == {}  # nothing reached the other TrainingJob
    time.sleep(1.5)
    assert progress_of(apiserver, "mine")["epoch"] == 1


def test_histories_of_trainingjobs_deleted_while_no_operator_ran_are_swept(
    apiserver: Any, request: Any
) -> None:
    """What a TrainingJob deleted during an operator outage left behind goes when it starts."""
    live = apiserver.create(trainingjob("alive", image="me/model:1"))
    for name, uid in (("alive", live["metadata"]["uid"]), ("deleted", "uid-of-a-deleted-one")):
        apiserver.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": history_configmap_name(NS, name),
                    "namespace": PLATFORM_NS,
                    "labels": {"deep-hybrid-datacloud.eu/progress-of": "trainingjob"},
                    "annotations": {
                        "deep-hybrid-datacloud.eu/progress-of-namespace": NS,
                        "deep-hybrid-datacloud.eu/progress-of-name": name,
                    },
                },
                "data": {"history.json": json.dumps({"uid": uid, "points": []})},
            }
        )
    request.getfixturevalue("operator")  # starts now
    wait_until(lambda: history(apiserver, "deleted") is None, 10, what="the orphan history deleted")
    assert history(apiserver, "alive") is not None
