"""`deep-platform activator --workers N` as a user starts it: N processes on one port, each with
its own Lease and /metrics port, all gone after SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_operator_process import free_port, kubeconfig_for

pytestmark = pytest.mark.timeout(60)


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def until(probe: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {probe.__name__}")


def test_two_workers_share_the_port_each_with_lease_and_metrics(tmp_path: Path, apiserver: Any) -> None:
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_for(apiserver.url, tmp_path / "config"))}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    env.pop("POD_NAME", None)
    command = [sys.executable, "-m", "deep_platform", "activator", "--workers", "2", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--metrics-port", str(metrics_port), "--tick", "0.1"]
    apiserver.create(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "plain", "namespace": "default"},
            "spec": {"image": "registry.example/tiny:1"},
        }
    )
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:

        def leases() -> bool:
            items = apiserver.list("leases.coordination.k8s.io", "deep-platform")
            return {lease["metadata"]["name"][-3:] for lease in items} >= {"-w0", "-w1"}

        until(leases)  # one Lease per worker: the scaler sums the load of both

        # each worker answers /metrics on its own port
        for offset in (0, 1):
            status, text = until(lambda o=offset: fetch(f"http://127.0.0.1:{metrics_port + o}/metrics"))
            assert status == 200 and "deep_activator" in text, text[:300]

        # the shared port answers; over fresh connections the kernel spreads them on both workers
        for _ in range(20):
            status, body = fetch(f"http://127.0.0.1:{port}/default/nope/v2/models/")
            assert status == 404 and json.loads(body)["error"] == "NotFound"
        status, body = fetch(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and "leader" in json.loads(body)
        # secure by default: the command requires a token where neither spec.auth nor a site
        # issuer says which (the chart passes activator.auth; tests set Settings.auth)
        status, body = fetch(f"http://127.0.0.1:{port}/default/plain/v2/models/")
        assert status == 401 and json.loads(body)["reason"] == "AuthNotConfigured", body
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    # no worker outlives the supervisor: the shared port is free again
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
