"""The TrainingJob controller's part in training progress: the `Progressing` condition.

The progress endpoint (progress/receiver.py) alone writes status.progress; the controller alone
writes the `Progressing` condition, from that field, the phase and spec.progress, because the
conditions are one list and two writers would overwrite each other's. While reports arrive no
event says when they stop, so a timer wakes the TrainingJob at the last report plus the stall
time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from ..api import TrainingJob
from ..api.trainingjob import TrainingJobStatus
from ..builders.trainingjob_progress import next_stall_check, progressing
from ..conditions import get_condition, now, set_condition
from ..progress.tracker import TRACKER
from . import retry

STALLED = ("Stalled", "NoReport")


def progress_echo(obj: dict[str, Any]) -> bool:
    """A status.progress write of the progress endpoint that leaves the `Progressing`
    condition as it is (reports arriving while it runs; or not running): nothing of ours to
    change. The first report (the condition appears, or turns True) still reconciles."""
    if not TRACKER.is_own_write(obj):
        return False
    status = obj.get("status") or {}
    condition: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    phase = status.get("phase")
    return condition.get("reason") == ("Reporting" if phase == "Running" else phase) is not None


def progress_event(before: TrainingJobStatus, after: TrainingJobStatus) -> tuple[str, str, bool] | None:
    """(reason, message, warning) of the Event when a running training's reports stop or come
    back, else None."""
    old, new = get_condition(before, "Progressing"), get_condition(after, "Progressing")
    if new is None or (old is not None and old.reason == new.reason):
        return None
    if new.reason in STALLED:
        return new.reason, new.message, True
    if new.reason == "Reporting" and old is not None and old.reason in STALLED:
        return "Progressing", "progress reports arrive again", False
    return None


class Deadlines(retry.Backoff):
    """One pending timer per key, at a delay of the caller's choice."""

    def schedule_in(self, key: Hashable, delay: float, work: Callable[[], None]) -> None:
        with self.guard:
            if key not in self.timers:
                timer = threading.Timer(delay, self._fire, (key, work))
                timer.daemon = True
                self.timers[key] = timer
                timer.start()


#: a running training's stall check: when its reports stop, no event says so
stall_check = Deadlines()


def follow_progress(
    tj: TrainingJob,
    status: TrainingJobStatus,
    key: Hashable,
    generation: int | None,
    wake: Callable[[], None],
) -> None:
    """Set the `Progressing` condition in the status being computed; `wake` the TrainingJob
    when it could turn False with no event to say so."""
    at = now()
    state = progressing(tj.spec.progress, status.progress, status.phase, status.start_time, at)
    if state is None:
        if get_condition(status, "Progressing") is not None:
            status.conditions = [c for c in status.conditions if c.type != "Progressing"]
        return
    set_condition(status, "Progressing", state[0], state[1], state[2], generation)
    due = next_stall_check(tj.spec.progress, status.progress, status.phase, status.start_time, at)
    stall_check.reset(key)
    if due is not None:
        stall_check.schedule_in(key, due, wake)
