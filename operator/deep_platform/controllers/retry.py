"""Retries, with backoff, of writes the API server refused for now.

A Job or Deployment refused by a ResourceQuota or an admission webhook is not a bug of ours:
the reconciliation says why in the status and asks to be run again later (the quota may be
raised, another Job deleted, the webhook fixed). No watch event announces such a change, so
without this the object would wait for the next resync (DEEP_RESYNC_SECONDS, 5 min).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

import kopf

from .. import kube as k
from ..errors import tail

log = logging.getLogger(__name__)

def refused(exc: k.ApiError) -> bool:
    """Every error answer but a conflict (409, handled where it happens) means "not like this,
    not now": a quota (403), a webhook (400/403), an invalid object (422), a value server-side
    apply cannot type (500 "failed to create typed patch object"), a namespace being deleted
    (403/404), the server overloaded (429/5xx). Said in the status and retried, never raised:
    a traceback every resync helps nobody."""
    return not exc.conflict


def refusal_message(what: str, exc: k.ApiError) -> str:
    """What the API server said, and what to do about it (no request body is echoed)."""
    said = tail(exc.message, 400)
    if "exceeded quota" in exc.message:
        fix = "free some of the namespace's quota or ask the site admin to raise it"
    elif exc.status == 403:
        fix = "an admission policy of the cluster refuses it; see the message"
    elif exc.status >= 500 and "typed patch" not in exc.message:
        fix = "the API server failed; see the message"
    else:
        fix = "the cluster refuses the object as built; see the message"
    return f"the API server refused {what} ({exc.status} {exc.reason}): {said}; {fix} (retried automatically)"


def transient(exc: k.ApiError) -> bool:
    """A refusal that ends by itself within seconds (an object still being deleted): retried
    every few seconds, not on the doubling schedule meant for quotas and webhooks."""
    return exc.reason == "StillDeleting"


class Backoff:
    """One pending retry per key, 5 s doubling up to 5 min; `reset` (the write went through, or
    the object is gone) drops the pending retry and starts again at 5 s."""

    def __init__(self, first: float = 5.0, cap: float = 300.0, soon: float = 2.0) -> None:
        self.first, self.cap, self.soon = first, cap, soon
        self.guard = threading.Lock()
        self.attempts: dict[Hashable, int] = {}
        self.timers: dict[Hashable, threading.Timer] = {}

    def schedule(self, key: Hashable, work: Callable[[], None], soon: bool = False) -> float:
        """Run `work` once after the key's next delay (unless one is already pending); `soon`
        (a `transient` refusal): after a short fixed delay, the schedule left as it was."""
        with self.guard:
            attempt = self.attempts.get(key, 0)
            if soon:
                delay = self.soon
            else:
                delay = min(self.cap, self.first * 2**attempt)
                self.attempts[key] = attempt + 1
            if key not in self.timers:
                timer = threading.Timer(delay, self._fire, (key, work))
                timer.daemon = True
                self.timers[key] = timer
                timer.start()
            return delay

    def _fire(self, key: Hashable, work: Callable[[], None]) -> None:
        with self.guard:
            self.timers.pop(key, None)
        try:
            work()
        except Exception:  # the next event or resync tries again
            log.exception("retry of %s failed", key)

    def reset(self, key: Hashable) -> None:
        with self.guard:
            self.attempts.pop(key, None)
            timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def cancel_all(self) -> None:
        with self.guard:
            timers = list(self.timers.values())
            self.timers.clear()
            self.attempts.clear()
        for timer in timers:
            timer.cancel()


backoff = Backoff()


@kopf.on.cleanup(id="refused-writes-retry-stop")
def stop_retries(**_: Any) -> None:
    """Pending retries belong to this run of the operator (and its API client)."""
    backoff.cancel_all()
