"""How a training ends, as the real Job controller reports it (seen on kube-apiserver 1.36)."""

from __future__ import annotations

from typing import Any

from deep_platform.builders.trainingjob_observe import finished, observe
from deep_platform.controllers.trainingjob import awaits_pods, pods_refused
from tests.unit.test_trainingjob_phases import cond, job, pod


def ended(code: int, reason: str, finished_at: str, message: str = "") -> dict[str, Any]:
    state = {"exitCode": code, "reason": reason, "finishedAt": finished_at, "message": message}
    return {"containerStatuses": [{"name": "train", "restartCount": 0, "state": {"terminated": state}}]}


BACKOFF = cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")


def test_oom_killed_every_attempt_fails_with_reason_oomkilled() -> None:
    """137 is retried (not in the FailJob rule), so the Job fails by BackoffLimitExceeded."""
    pods = [
        pod("t-aaaa", "Failed", **ended(137, "OOMKilled", "2025-01-01T10:00:05Z")),
        pod("t-bbbb", "Failed", **ended(137, "OOMKilled", "2025-01-01T10:00:09Z")),
    ]
    seen = observe(job(conditions=[BACKOFF], failed=2), pods, queued=False)
    assert (seen.phase, seen.reason, seen.exit_code, seen.restarts) == ("Failed", "OOMKilled", 137, 2)
    assert seen.message.startswith("Job has reached the specified backoff limit; last attempt: ")
    assert "ran out of memory (OOMKilled, exit code 137)" in seen.message


def test_backoff_limit_without_oom_keeps_the_job_reason() -> None:
    pods = [pod("t-a", "Failed", **ended(137, "Error", "2025-01-01T10:00:05Z"))]
    seen = observe(job(conditions=[BACKOFF], failed=1), pods, queued=False)
    assert (seen.reason, seen.exit_code) == ("BackoffLimitExceeded", 137)


def test_last_attempt_is_the_one_that_ended_last_not_the_last_name() -> None:
    """Both pods created in the same second (second precision): names sort at random."""
    pods = [
        pod("t-zzzz", "Failed", **ended(139, "Error", "2025-01-01T10:00:02Z")),
        pod("t-aaaa", "Failed", **ended(137, "OOMKilled", "2025-01-01T10:00:04Z")),
    ]
    seen = observe(job(conditions=[BACKOFF], failed=2), pods, queued=False)
    assert (seen.reason, seen.exit_code) == ("OOMKilled", 137)


def test_failure_target_before_the_count_counts_the_failed_pod() -> None:
    """1.31+: FailureTarget (and Failed) can come while status.failed is still 0."""
    failing = [pod("t-a", "Failed", **ended(3, "Error", "2025-01-01T10:00:02Z", "ValueError"))]
    seen = observe(job(conditions=[cond("FailureTarget", "PodFailurePolicy")], failed=0), failing, False)
    assert (seen.phase, seen.reason, seen.restarts) == ("Failed", "ExitCode3", 1)
    uncounted = job(failed=0, uncountedTerminatedPods={"failed": ["uid-1"]})
    assert observe(uncounted, [], queued=False).restarts == 1
    evicted = pod("t-b", "Failed", conditions=[{"type": "DisruptionTarget", "status": "True"}])
    assert observe(job(failed=0), [evicted], queued=False).restarts == 0  # not counted by the Job


def test_finished() -> None:
    assert finished(job(conditions=[cond("Complete")]))
    assert finished(job(conditions=[cond("FailureTarget", "DeadlineExceeded")]))
    assert not finished(job(conditions=[cond("Suspended")]))
    assert not finished(job())


class EventsOnly:
    """A Kube that answers the FailedCreate Events of a Job, as kube-apiserver 1.36 words them."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        self.selectors: list[str | None] = []

    def list(self, kind: Any, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        self.selectors.append(field_selector)
        return [
            {"message": m, "lastTimestamp": f"2025-01-01T10:00:0{i}Z"} for i, m in enumerate(self.messages)
        ]


def test_pods_refused_names_the_api_servers_answer() -> None:
    quota = ('Error creating: pods "t-x" is forbidden: exceeded quota: no-pods, requested: pods=1, '
             "used: pods=0, limited: pods=0")
    api = EventsOnly(["Error creating: older", quota])
    running = {"metadata": {"name": "t", "namespace": "ns", "uid": "u1"}, "spec": {}, "status": {}}
    assert awaits_pods(running, [])
    message = pods_refused(api, running)  # type: ignore[arg-type]
    assert message is not None and message.startswith('the API server refused the training pod: pods "t-x"')
    assert "exceeded quota: no-pods" in message and "raise it" in message
    assert api.selectors == ["involvedObject.uid=u1,reason=FailedCreate"]
    assert pods_refused(EventsOnly([]), running) is None  # type: ignore[arg-type]
    assert not awaits_pods({**running, "spec": {"suspend": True}}, [])
    assert not awaits_pods({**running, "status": {"active": 1}}, [])
    assert not awaits_pods(running, [pod("t-a", "Pending")])
    assert not awaits_pods(job(conditions=[cond("Complete")]), [])
