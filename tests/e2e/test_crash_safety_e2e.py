"""Crash safety on a real API server: the operator (`deep-platform run`, its own process) is
killed with SIGKILL at random moments of a burst and started again; then every object converges
and the invariants hold (tests/harness/crash_safety.py says which and how)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deep_platform import kube as k
from tests.harness import realserver
from tests.harness.crash_safety import OperatorProcess, Plan, Scenario
from tests.harness.node_kubelet import NodeKubelet

pytestmark = pytest.mark.timeout(300)


def test_burst_survives_operator_kills(
    real_server: realserver.RealServer,
    cluster: k.Kube,
    crds_installed: None,
    platform_namespace: str,
    namespace: str,
    kubelet: NodeKubelet,
    tmp_path: Path,
) -> None:
    plan = Plan(trainingjobs=60, services=15, ttl=8)
    log = tmp_path / "operator.log"
    operator = OperatorProcess(real_server.kubeconfig, namespace, platform_namespace, log)
    scenario = Scenario(cluster, namespace, plan, operator)
    try:
        out = scenario.run(kills=3, kill_window=8.0, timeout=150)
    finally:
        scenario.close()
    log_tail = log.read_text(errors="replace")[-3000:]
    assert out.kills == 3
    assert not out.problems, f"not converged: {out.problems[:20]}\n{log_tail}"
    assert not out.invariants, out.invariants
    assert out.events > 0
