"""Who may report progress for a TrainingJob: a pod of that TrainingJob, by its token.

A training pod holds a projected ServiceAccount token bound to the pod, with the audience
`deep-platform-progress` (so it is worth nothing against the API server). The endpoint asks
the API server about it (TokenReview with that audience): the answer names the pod (the extras
`authentication.kubernetes.io/pod-name` and `pod-uid`). The pod must exist with that uid, be
owned by the Job of the TrainingJob named in the URL, in the same namespace, and that Job must
be owned by the TrainingJob. Answers are cached for a short while: a deleted pod's token stops
working within `CACHE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .. import kube as k
from ..builders.pod import LABEL_KIND
from . import AUDIENCE

TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
CACHE_SECONDS = 30.0
#: a pod's owner never changes: its answer is kept longer (the token's check is not)
OWNER_CACHE_SECONDS = 600.0
CACHE_ENTRIES = 20_000


class Refused(Exception):
    """A report that is not taken; `reason` is the label of the refusal counter."""

    def __init__(self, reason: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.reason, self.message, self.status = reason, message, status


@dataclass(frozen=True)
class Identity:
    """The pod a token was issued to, as the API server says."""

    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str


class Reviewer(Protocol):
    def review(self, token: str) -> Identity: ...


def identity_from_review(answer: dict[str, Any], audience: str = AUDIENCE) -> Identity:
    """The TokenReview's answer -> the pod, or Refused (pure)."""
    status = answer.get("status") or {}
    if not status.get("authenticated"):
        raise Refused(
            "unauthenticated", "the token is not valid (expired, revoked, or not a Kubernetes token)", 401
        )
    if audience not in (status.get("audiences") or []):
        raise Refused("wrong_audience", f"the token is not meant for {audience}", 401)
    user = status.get("user") or {}
    parts = str(user.get("username") or "").split(":")
    extra = user.get("extra") or {}
    pod_name = (extra.get(POD_NAME_EXTRA) or [""])[0]
    pod_uid = (extra.get(POD_UID_EXTRA) or [""])[0]
    if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"] or not pod_name or not pod_uid:
        raise Refused("not_a_pod", "the token is not a pod's ServiceAccount token bound to the pod")
    return Identity(namespace=parts[2], service_account=parts[3], pod_name=pod_name, pod_uid=pod_uid)


class TokenReviewer:
    """Asks the API server (needs `create tokenreviews`)."""

    def __init__(self, kube: k.Kube, audience: str = AUDIENCE) -> None:
        self.kube, self.audience = kube, audience

    def review(self, token: str) -> Identity:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {"generateName": "progress-"},  # not stored; some servers want a name
            "spec": {"token": token, "audiences": [self.audience]},
        }
        try:
            answer = self.kube.request("POST", TOKENREVIEWS, body=body)
        except k.ApiError as exc:  # not the token's fault: not cached, the client retries
            raise Refused(
                "unavailable", f"the token cannot be checked now ({exc.status} {exc.reason})", 503
            ) from None
        return identity_from_review(answer or {}, self.audience)


def owner_trainingjob(pod: dict[str, Any] | None, job: dict[str, Any] | None) -> tuple[str, str] | None:
    """(name, uid) of the TrainingJob whose Job owns the pod, or None (pure)."""
    if pod is None or job is None:
        return None
    if (pod["metadata"].get("labels") or {}).get(LABEL_KIND) != "trainingjob":
        return None
    job_uid = job["metadata"].get("uid")
    if not any(
        o.get("kind") == "Job" and o.get("uid") == job_uid
        for o in pod["metadata"].get("ownerReferences") or []
    ):
        return None
    for owner in job["metadata"].get("ownerReferences") or []:
        if owner.get("kind") == "TrainingJob" and owner.get("name") == job["metadata"].get("name"):
            return str(owner["name"]), str(owner.get("uid"))
    return None


class _Cache:
    def __init__(self, clock: Callable[[], float], seconds: float = CACHE_SECONDS) -> None:
        self.clock, self.seconds = clock, seconds
        self.lock = threading.Lock()
        self.entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def get(self, key: str) -> Any:
        with self.lock:
            found = self.entries.get(key)
            if found is None or found[0] < self.clock():
                return None
            return found[1]

    def put(self, key: str, value: Any) -> None:
        with self.lock:
            self.entries[key] = (self.clock() + self.seconds, value)
            self.entries.move_to_end(key)
            while len(self.entries) > CACHE_ENTRIES:
                self.entries.popitem(last=False)


class Authorizer:
    """Token -> the TrainingJob its pod belongs to, checked against the one in the URL."""

    def __init__(self, kube: k.Kube, reviewer: Reviewer, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.reviewer = kube, reviewer
        self.tokens = _Cache(clock)  # sha256(token) -> Identity or Refused
        # pod uid -> (namespace, TrainingJob name, uid), or empty when it belongs to none
        self.pods = _Cache(clock, OWNER_CACHE_SECONDS)

    @staticmethod
    def token_key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def authorize(self, token: str, namespace: str, name: str) -> str:
        """The TrainingJob's uid when the token's pod belongs to namespace/name; else Refused."""
        if not token:
            raise Refused(
                "unauthenticated", "no token: send `Authorization: Bearer <the pod's progress token>`", 401
            )
        key = self.token_key(token)
        found = self.tokens.get(key)
        if found is None:
            try:
                found = self.reviewer.review(token)
            except Refused as exc:
                if exc.reason == "unavailable":
                    raise
                found = exc
            self.tokens.put(key, found)
        if isinstance(found, Refused):
            raise found
        identity: Identity = found
        owner = self.pods.get(identity.pod_uid)
        if owner is None:
            owner = self._owner(identity)
            self.pods.put(identity.pod_uid, owner)
        if owner == ("", "", "") or owner[:2] != (namespace, name):
            raise Refused("foreign", f"the token's pod does not belong to TrainingJob {namespace}/{name}")
        return str(owner[2])

    def _owner(self, identity: Identity) -> tuple[str, str, str]:
        pod = self.kube.get(k.POD, identity.pod_name, identity.namespace)
        if pod is None or pod["metadata"].get("uid") != identity.pod_uid:
            return ("", "", "")
        job_owner = next(
            (o for o in pod["metadata"].get("ownerReferences") or [] if o.get("kind") == "Job"), None
        )
        job = self.kube.get(k.JOB, job_owner["name"], identity.namespace) if job_owner else None
        found = owner_trainingjob(pod, job)
        return (identity.namespace, found[0], found[1]) if found else ("", "", "")
