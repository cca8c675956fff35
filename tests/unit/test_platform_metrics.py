"""Metrics added for the dashboard and alerts: TrainingJobs by phase (operator) and GPU use per
TrainingJob (GPU agent)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deep_platform.gpu.agent import GpuAgent, registry_for
from deep_platform.metrics import TRAININGJOB_PHASES, TrainingJobPhases
from tests.unit.gpu_fakes import MIB, FakeNvml, a100

PENDING = "deep_operator_trainingjob_pending_seconds"
POD_UID = "3f1c2b9e-7a4d-4e2f-9b1a-0c5d6e7f8a9b"


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def tj(name: str, phase: str | None, created: str = "2026-05-01T12:00:00Z") -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"namespace": "alice", "name": name, "creationTimestamp": created}}
    if phase:
        body["status"] = {"phase": phase}
    return body


def test_trainingjobs_by_phase_and_pending_time() -> None:
    now = [dt.datetime(2026, 5, 1, 12, 10, tzinfo=dt.UTC).timestamp()]
    phases = TrainingJobPhases(clock=lambda: now[0])
    registry = CollectorRegistry()
    registry.register(phases)

    phases.observe(tj("new", None))  # no status yet: Pending since its creation, 10 min ago
    phases.observe(tj("run", "Running"))
    phases.observe(tj("done", "Succeeded"))
    found = samples(registry)
    assert {p for (name, labels), _ in found.items() if name == "deep_operator_trainingjobs"
            for _k, p in labels} == set(TRAININGJOB_PHASES)  # every phase, zeros included
    assert found[("deep_operator_trainingjobs", (("phase", "Pending"),))] == 1
    assert found[("deep_operator_trainingjobs", (("phase", "Running"),))] == 1
    assert found[("deep_operator_trainingjobs", (("phase", "Failed"),))] == 0
    assert found[(PENDING, (("name", "new"), ("namespace", "alice")))] == 600

    # a running job that goes back to Pending counts from then, not from its creation
    now[0] += 60
    phases.observe(tj("run", "Pending"))
    phases.observe(tj("new", "Running"))
    found = samples(registry)
    assert found[(PENDING, (("name", "run"), ("namespace", "alice")))] == 0
    assert (PENDING, (("name", "new"), ("namespace", "alice"))) not in found
    now[0] += 30
    phases.observe(tj("run", "Pending"))  # the same phase again (an echo): the clock keeps running
    assert samples(registry)[
        (PENDING, (("name", "run"), ("namespace", "alice")))
    ] == 30

    phases.forget("alice", "run")
    phases.forget("alice", "done")
    found = samples(registry)
    assert found[("deep_operator_trainingjobs", (("phase", "Running"),))] == 1
    assert found[("deep_operator_trainingjobs", (("phase", "Succeeded"),))] == 0
    assert not [k for k in found if k[0] == PENDING]


def test_operator_watch_feeds_the_phase_metrics() -> None:
    from deep_platform.controllers import trainingjob as controller
    from deep_platform.metrics import TRAININGJOBS

    body = tj("watched", "Running") | {"apiVersion": "x", "kind": "TrainingJob"}
    body["metadata"]["uid"] = "u1"
    controller.on_trainingjob("ADDED", body)  # no queue running: only the bookkeeping happens
    try:
        assert TRAININGJOBS._phase[("alice", "watched")] == "Running"
        controller.on_trainingjob("DELETED", body)
        assert ("alice", "watched") not in TRAININGJOBS._phase
    finally:
        controller.memory.forget(("alice", "watched"))


def test_gpu_use_per_trainingjob(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "cgroup").write_text(f"0::/kubepods/pod{POD_UID}/c0ffee\n")
    (tmp_path / "4343").mkdir()
    (tmp_path / "4343" / "cgroup").write_text(f"0::/kubepods/pod{POD_UID}/c0ffee\n")
    gpu = a100(0, util=83)
    gpu.procs = [(4242, 1024 * MIB), (4343, 512 * MIB)]  # two processes of one pod
    agent = GpuAgent(
        FakeNvml([gpu]), "gpu-node-1", proc_root=tmp_path,
        pods=lambda: {POD_UID: ("alice", "retrain-x7k2p", "trainingjob", "retrain")},
        clock=lambda: dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
    )
    agent.step()
    found = samples(registry_for(agent))
    labels = (
        ("gpu", "0"), ("kind", "trainingjob"), ("namespace", "alice"), ("node", "gpu-node-1"),
        ("owner", "retrain"), ("pod", "retrain-x7k2p"), ("product", "NVIDIA-A100-SXM4-80GB"),
        ("uuid", "GPU-a100-0000-8c1e-7f2b-4a3d5e6f7a8b"),
    )
    assert found[("deep_gpu_workload_utilization_percent", labels)] == 83
    assert found[("deep_gpu_workload_memory_used_bytes", labels)] == 1536 * MIB


def test_pods_on_node_reads_the_owner_labels() -> None:
    from deep_platform.builders.pod import LABEL_KIND, LABEL_NAME
    from deep_platform.gpu.agent import pods_on_node

    class Api:
        def list(self, kind: Any, field_selector: str) -> list[dict[str, Any]]:
            assert field_selector == "spec.nodeName=gpu-node-1"
            return [
                {"metadata": {"uid": "a", "namespace": "alice", "name": "retrain-x",
                              "labels": {LABEL_KIND: "trainingjob", LABEL_NAME: "retrain"}}},
                {"metadata": {"uid": "b", "namespace": "bob", "name": "other"}},
            ]

    assert pods_on_node(Api(), "gpu-node-1")() == {
        "a": ("alice", "retrain-x", "trainingjob", "retrain"),
        "b": ("bob", "other", "", ""),
    }
