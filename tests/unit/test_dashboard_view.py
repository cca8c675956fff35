"""The dashboard's rows, from API objects (pure functions)."""

from __future__ import annotations

import datetime as dt

from deep_platform.dashboard.view import events_by_object, format_duration, overview, trainingjob_row
from deep_platform.events import event_for

NOW = dt.datetime(2026, 5, 1, 11, 2, 3, tzinfo=dt.UTC)


def tj(name: str, ns: str = "alice", **status: object) -> dict[str, object]:
    return {"apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
            "spec": {"module": "phyto",
                     "resources": {"gpu": {"count": 2, "product": "NVIDIA-H100-80GB-HBM3"}}},
            "status": status}


def test_running_job_duration_counts_from_its_start() -> None:
    row = trainingjob_row(tj("a", phase="Running", startTime="2026-05-01T10:00:00Z"), [], NOW)
    assert row.duration == "1h2m3s"
    assert row.gpus == "2 x NVIDIA-H100-80GB-HBM3"
    assert row.link == "trainingjobs/alice/a"


def test_finished_job_keeps_its_recorded_duration() -> None:
    row = trainingjob_row(
        tj("a", phase="Succeeded", startTime="2026-05-01T10:00:00Z",
           completionTime="2026-05-01T10:05:00Z", duration="5m0s"), [], NOW)
    assert row.duration == "5m0s"


def test_assigned_gpu_and_utilisation_are_shown() -> None:
    row = trainingjob_row(tj("a", gpuProduct="NVIDIA-A100-SXM4-80GB", gpuUtilizationPercent=93), [], NOW)
    assert row.gpu_assigned == "NVIDIA-A100-SXM4-80GB (93% busy)"
    assert ("GPU utilisation %", "93") in row.details


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 59, 61, 3600, 3723.9, -5)] == ["0s", "59s", "1m1s", "1h0m0s",
                                                                         "1h2m3s", "0s"]


def test_events_are_grouped_per_object_oldest_first_and_overview_per_namespace() -> None:
    a, b = tj("a"), tj("b", ns="bob")
    early, late = event_for(a, "JobCreated", "created"), event_for(a, "OOMKilled", "oom", warning=True)
    early["lastTimestamp"], late["lastTimestamp"] = "2026-05-01T10:00:00Z", "2026-05-01T10:30:00Z"
    other = event_for(b, "JobCreated", "created")
    grouped = events_by_object([late, other, early])
    assert [e.reason for e in grouped[("TrainingJob", "alice", "a")]] == ["JobCreated", "OOMKilled"]
    groups = overview([b, a], [], [late, other, early], NOW)
    assert list(groups) == ["alice", "bob"]
    [row] = groups["alice"]["trainingjobs"]
    assert [e.type for e in row.events] == ["Normal", "Warning"]
