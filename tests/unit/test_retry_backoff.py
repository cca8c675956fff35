"""The retry schedule of refused writes: doubling for quotas and webhooks, short for transients."""

from __future__ import annotations

import threading

from deep_platform import kube as k
from deep_platform.controllers.retry import Backoff, transient


def test_refusals_double_up_to_the_cap_and_reset_starts_again() -> None:
    backoff = Backoff(first=5.0, cap=30.0)
    delays = []
    for _ in range(5):
        delays.append(backoff.schedule("job", lambda: None))
    backoff.cancel_all()
    assert delays == [5.0, 10.0, 20.0, 30.0, 30.0]


def test_an_object_still_being_deleted_is_retried_soon_without_growing_the_schedule() -> None:
    still_deleting = k.ApiError(503, "StillDeleting", "PersistentVolume x is still being deleted")
    quota = k.ApiError(403, "Forbidden", "exceeded quota: compute")
    assert transient(still_deleting) and not transient(quota)

    backoff = Backoff(first=5.0, cap=300.0, soon=0.05)
    ran = threading.Event()
    assert backoff.schedule("pv", ran.set, soon=True) == 0.05
    assert ran.wait(2), "a transient refusal is retried after the short delay"
    # many transient retries leave the doubling schedule where it was
    for _ in range(10):
        backoff.schedule("pv", lambda: None, soon=True)
    assert backoff.schedule("pv", lambda: None) == 5.0
    backoff.cancel_all()
