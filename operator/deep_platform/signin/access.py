"""May this person list these objects? The API server answers (SubjectAccessReview), so the
dashboard shows exactly what `kubectl get` would for the same user, with the same RBAC."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..kube import ApiError, Kube
from .claims import Identity

GROUP = "deep-hybrid-datacloud.eu"
REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
#: answers kept at most; past that the cache starts afresh (bounded memory)
MAX_ENTRIES = 10_000

log = logging.getLogger(__name__)


class AccessReviewer:
    """Thread-safe; answers are reused for `ttl` seconds, errors are a refusal and not reused."""

    def __init__(self, kube: Kube, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self._ttl = ttl
        self._clock = clock
        self._answers: dict[tuple[str, tuple[str, ...], str, str, str], tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def cached(self, identity: Identity, verb: str, resource: str, namespace: str) -> bool | None:
        """The answer still fresh, or None when it must be asked."""
        with self._lock:
            cached = self._answers.get((identity.username, identity.groups, verb, resource, namespace))
        return cached[0] if cached is not None and cached[1] > self._clock() else None

    def may(self, identity: Identity, verb: str, resource: str, namespace: str) -> bool:
        known = self.cached(identity, verb, resource, namespace)
        if known is not None:
            return known
        key = (identity.username, identity.groups, verb, resource, namespace)
        now = self._clock()
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": identity.username,
                "groups": list(identity.groups),
                "resourceAttributes": {"namespace": namespace, "verb": verb, "group": GROUP,
                                       "resource": resource},
            },
        }
        try:
            answer = self._kube.request("POST", REVIEWS, body=review)
        except ApiError as exc:
            log.warning("SubjectAccessReview for %s failed (%s %s): refused", identity.username,
                        exc.status, exc.reason)
            return False
        except Exception as exc:  # unreachable API server: refuse, never show by default
            log.warning("SubjectAccessReview for %s failed (%s): refused", identity.username,
                        type(exc).__name__)
            return False
        allowed = bool((answer.get("status") or {}).get("allowed"))
        with self._lock:
            if len(self._answers) >= MAX_ENTRIES:
                self._answers.clear()
            self._answers[key] = (allowed, now + self._ttl)
        return allowed
