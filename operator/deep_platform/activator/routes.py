"""Where `/<namespace>/<name>/` may go: a table of targets, kept by watching the kinds served.

Only an object that exists gets a target, and a target names only the Service the operator built
for it, so a request for anything else is a 404 without any connection upstream (and without an
API call: the table is filled by a list-and-watch, not by the request). Each kind served through
the activator registers a `Source` (its Kind and how an object becomes a `Target`); InferenceService
is the first. Written by the watch threads, read by the event loop: plain dict operations.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..api import InferenceService
from ..api.auth import ServiceAuth
from ..auth import Policy, SiteAuth, policy_for
from ..builders.inferenceservice import service_name_for
from ..kube import Kind, Kube, kind_of
from .cluster import Failure, failure_of

log = logging.getLogger(__name__)
ISVC = kind_of(InferenceService)

if TYPE_CHECKING:
    from ..controllers.informer import Informer


@dataclass(frozen=True)
class Target:
    """One thing served at `/<namespace>/<name>/`."""

    kind: str
    namespace: str
    name: str
    #: the Service in `namespace` requests go to (port 80)
    service: str
    policy: Policy
    #: pass the checked Authorization header on (spec.auth.forwardAuthorization)
    forward_authorization: bool = False
    #: whether the scale-from-zero machinery (Deployment, scaler) applies
    scales: bool = True
    #: the operator's verdict that the target cannot start (its Ready condition), as last watched
    failure: Failure | None = None

    @property
    def prefix(self) -> str:
        return f"/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Source:
    kind: Kind
    #: an object of `kind` -> its target (its `spec.auth` already turned into a policy)
    target: Callable[[dict[str, Any], SiteAuth], Target]


def parsed_auth(spec: dict[str, Any], what: str) -> tuple[ServiceAuth | None, str | None]:
    raw = spec.get("auth")
    if raw is None:
        return None, None
    try:
        return ServiceAuth.model_validate(raw), None
    except ValidationError as exc:
        return None, f"{what}: spec.auth is invalid ({exc.errors()[0].get('msg')}); fix it"


def inference_service_target(obj: dict[str, Any], site: SiteAuth) -> Target:
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    what = f"InferenceService {namespace}/{name}"
    auth, problem = parsed_auth(obj.get("spec") or {}, what)
    # a spec.auth the activator cannot read denies everyone, it never falls back to public
    policy = Policy(unusable=problem) if problem else policy_for(auth, site, what)
    return Target(
        "InferenceService",
        namespace,
        name,
        service_name_for(name),
        policy,
        forward_authorization=bool(auth and auth.forward_authorization),
        failure=failure_of(obj),
    )


INFERENCE_SERVICES = Source(ISVC, inference_service_target)


class Routes:
    """Targets by (namespace, name), from one watch per kind and namespace."""

    def __init__(self, site: SiteAuth, sources: Sequence[Source] = (INFERENCE_SERVICES,)) -> None:
        self.site = site
        self.sources = list(sources)
        #: kind -> (namespace, name) -> target; a name both kinds use goes to the first source's
        self.by_kind: dict[str, dict[tuple[str, str], Target]] = {s.kind.kind: {} for s in self.sources}
        self.informers: list[Informer] = []

    def get(self, namespace: str, name: str) -> Target | None:
        key = (namespace, name)
        for table in self.by_kind.values():
            target = table.get(key)
            if target is not None:
                return target
        return None

    def handle(self, source: Source, event: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "", meta.get("name") or "")
        table = self.by_kind[source.kind.kind]
        if event == "DELETED" or meta.get("deletionTimestamp"):
            table.pop(key, None)
            return
        try:
            table[key] = source.target(obj, self.site)
        except Exception:  # one odd object must not stop the watch; it stays unreachable
            log.exception("cannot route %s %s/%s", source.kind.kind, *key)
            table.pop(key, None)

    def start(self, kube: Kube, namespaces: Sequence[str | None]) -> None:
        # imported here: the controllers package reads the operator's settings when it loads,
        # and a bad one must stop `deep-platform activator` with its own one-line message
        from ..controllers.informer import Informer

        for source in self.sources:
            for namespace in namespaces:
                informer = Informer(kube, source.kind, partial(self.handle, source), namespace)
                self.informers.append(informer)
                informer.start()

    def wait_listed(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        for informer in self.informers:
            if not informer.listed.wait(max(0.0, deadline - time.monotonic())):
                log.warning("%s: no first list within %.0f s; it keeps trying", informer.name, timeout)
                return False
        return True

    def stop(self) -> None:
        threads = [threading.Thread(target=i.stop, daemon=True) for i in self.informers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(6)
        self.informers.clear()
