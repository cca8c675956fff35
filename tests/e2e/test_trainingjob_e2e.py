"""TrainingJob on a real cluster: a real Job, real pods, under Pod Security "restricted"."""

from __future__ import annotations

from typing import Any

from deep_platform import kube as k
from deep_platform.api import TrainingJob
from tests.harness.node_kubelet import NodeKubelet, Outcome
from tests.harness.operator_fixtures import wait_until

TJ = k.kind_of(TrainingJob)
IMAGE = "busybox:1.36"  # small, runs as any uid: stands in for a module image without DEEPaaS


def trainingjob(name: str, namespace: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": IMAGE, "command": ["sh", "-c", script],
                 "resources": {"cpu": "100m", "memory": "64Mi"}, "backoffLimit": 1,
                 "activeDeadlineSeconds": 300},
    }


def phase(api: k.Kube, name: str, namespace: str, wanted: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = ((api.get(TJ, name, namespace) or {}).get("status")) or {}
        return st if st.get("phase") == wanted else None

    return wait_until(probe, timeout=240, interval=1, what=f"TrainingJob {name} {wanted}")


def test_training_succeeds_and_deletion_cascades(
    e2e_operator: Any, namespace: str, kubelet: NodeKubelet
) -> None:
    api = e2e_operator.kube
    api.apply(trainingjob("ok", namespace, "echo training; sleep 2"))
    st = phase(api, "ok", namespace, "Succeeded")
    assert st["podName"] and st["nodeName"] and st["duration"].endswith("s")
    assert api.get(k.JOB, "ok", namespace) is not None
    api.delete(TJ, "ok", namespace)
    wait_until(lambda: api.get(k.JOB, "ok", namespace) is None, timeout=120, interval=1,
               what="the Job to be garbage-collected")


def test_permanent_failure_is_not_retried(e2e_operator: Any, namespace: str, kubelet: NodeKubelet) -> None:
    api = e2e_operator.kube
    kubelet.decide = lambda pod: Outcome(exit_code=3, message="ValueError: bad learning rate")
    api.apply(trainingjob("bad", namespace, "echo 'ValueError: bad learning rate' >&2; exit 3"))
    st = phase(api, "bad", namespace, "Failed")
    assert st["reason"] == "ExitCode3", st
    assert "bad learning rate" in st["message"]
    assert st["restarts"] == 1  # one pod, no retry: exit code 3 is in the FailJob rule
