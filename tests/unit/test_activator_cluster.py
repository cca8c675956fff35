"""The activator's pure parts: durations, endpoint readiness, replica arithmetic, failures."""

from __future__ import annotations

import pytest

from deep_platform.activator.cluster import desired_replicas, failure_of, parse_duration, ready_endpoints


@pytest.mark.parametrize(
    ("text", "seconds"), [("1s", 1), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("1.5s", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5", "5x", "m"])
def test_bad_durations_say_how_to_write_them(text: str) -> None:
    with pytest.raises(ValueError, match="30s"):
        parse_duration(text)


def test_ready_endpoints_count_absent_ready_as_ready() -> None:
    slices = [
        {
            "endpoints": [
                {"conditions": {"ready": True}},
                {"conditions": {"ready": False}},
                {"conditions": {}},
            ]
        },
        {"endpoints": None},
    ]
    assert ready_endpoints(slices) == 2


@pytest.mark.parametrize(
    ("load", "target", "lo", "hi", "want"),
    [
        (0, 4, 0, 3, 0),
        (1, 4, 0, 3, 1),
        (4, 4, 0, 3, 1),
        (5, 4, 0, 3, 2),
        (100, 4, 0, 3, 3),
        (0, 4, 2, 3, 2),
    ],
)
def test_desired_replicas(load: int, target: int, lo: int, hi: int, want: int) -> None:
    assert desired_replicas(load, target, lo, hi) == want


def test_failure_from_ready_condition() -> None:
    body = {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "CrashLoopBackOff",
                    "message": "container deepaas CrashLoopBackOff",
                }
            ]
        }
    }
    failure = failure_of(body)
    assert failure is not None
    assert (failure.code, failure.reason, failure.retry) == (503, "CrashLoopBackOff", False)
    assert failure.message == "container deepaas CrashLoopBackOff"
    # every reason a model cannot start from: 503 at once; Retry-After only where waiting helps
    expected = {
        "Unschedulable": True,
        "ImagePullBackOff": False,
        "ModuleNotFound": False,
        "ModuleNotServable": False,
        "InvalidSpec": False,
        "StorageUnavailable": False,
        "SecretNotFound": False,
        "ServerUnreachable": True,
        "DeploymentRejected": True,
        "ServiceRejected": True,
    }
    for reason, retry in expected.items():
        body["status"]["conditions"][0]["reason"] = reason
        found = failure_of(body)
        assert found is not None and (found.code, found.retry) == (503, retry), reason
    for on_its_way in ("Starting", "Prewarming", "ScaledToZero"):
        body["status"]["conditions"][0]["reason"] = on_its_way
        assert failure_of(body) is None
