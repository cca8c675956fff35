"""`deep-platform run` as a user starts it: one clear line when it cannot work, metrics when it can."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.apiserver import ApiServer
from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def kubeconfig_for(url: str, path: Path) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
        "current-context": "emulator",
    }))
    return path



def run_operator(kubeconfig: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    return subprocess.run(
        [sys.executable, "-m", "deep_platform", "run", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )


def test_no_reachable_cluster_is_one_clear_line(tmp_path: Path) -> None:
    kubeconfig = kubeconfig_for(f"http://127.0.0.1:{free_port()}", tmp_path / "config")
    result = run_operator(kubeconfig)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach the Kubernetes API" in lines[0]
    assert "kubectl cluster-info" in lines[0]


def test_missing_crds_name_the_command_that_fixes_it(tmp_path: Path) -> None:
    with ApiServer.running() as bare:  # no CRDs loaded
        kubeconfig = kubeconfig_for(bare.url, tmp_path / "config")
        result = run_operator(kubeconfig)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "modules.deep-hybrid-datacloud.eu" in line
    assert "deep-platform crds | kubectl apply --server-side -f -" in line


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:  # loopback only
        return str(response.read().decode())


def test_running_operator_serves_liveness_and_reconcile_metrics(tmp_path: Path, apiserver: Any) -> None:
    kubeconfig = kubeconfig_for(apiserver.url, tmp_path / "config")
    metrics_port, health_port = free_port(), free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "DEEP_HEALTH_PORT": str(health_port)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "deep_platform", "run", "--metrics-port", str(metrics_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        module = yaml.safe_load((ROOT / "examples" / "module.yaml").read_text())
        apiserver.create(module)
        deadline = time.monotonic() + 30
        metrics = ""
        while time.monotonic() < deadline:
            try:
                metrics = fetch(f"http://127.0.0.1:{metrics_port}/metrics")
                if 'deep_operator_reconcile_total{controller="module",result="success"}' in metrics:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        successes = re.search(
            r'deep_operator_reconcile_total\{controller="module",result="success"\} ([0-9.]+)', metrics
        )
        assert successes is not None and float(successes.group(1)) >= 1, metrics
        assert 'deep_operator_reconcile_time_seconds_count{controller="module"}' in metrics
        assert fetch(f"http://127.0.0.1:{health_port}/healthz")
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert "operator watching all namespaces" in output
    assert "not-a-secret" not in output


@pytest.mark.parametrize("namespace", ["team-a"])
def test_namespace_option_restricts_the_watch(tmp_path: Path, apiserver: Any, namespace: str) -> None:
    kubeconfig = kubeconfig_for(apiserver.url, tmp_path / "config")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "DEEP_HEALTH_PORT": str(free_port())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "deep_platform", "run", "-n", namespace,
         "--metrics-port", str(free_port())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    wanted, seen = f"operator watching {namespace}", []
    killer = threading.Timer(60, proc.terminate)  # a busy machine may take long to start it
    killer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if wanted in line:
                break
    finally:
        killer.cancel()
        proc.terminate()
        proc.communicate(timeout=20)
    assert any(wanted in line for line in seen), "".join(seen)
