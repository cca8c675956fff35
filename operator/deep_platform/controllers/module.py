"""Module controller: check the metadata, publish the module to the catalogue, roll out new
images to the InferenceServices that use it (continuous delivery)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from .. import events
from ..api import GROUP, VERSION, InferenceService, Module
from ..api.module import ModuleStatus
from ..builders.module import build_catalogue_entry, index_item, index_line_too_large
from ..catalogue import index
from ..conditions import get_condition, set_condition
from ..kube import ApiError, kind_of
from ..metrics import instrumented
from . import retry, runtime
from .reconciler import invalid_spec_status, parse, plain, write_status

log = logging.getLogger(__name__)
KIND = kind_of(Module)
SERVICES = kind_of(InferenceService)
WARNING_REASONS = {"InvalidMetadata", "InvalidSpec", "CatalogueEntryRejected", "IndexEntryTooLarge"}
ALL = "all"  # the one key of the catalogue_items index


@kopf.index(GROUP, VERSION, "inferenceservices")
def module_users(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]] | None:
    """InferenceServices by the Module they serve: read on every Module reconcile instead of
    listing all services (kopf fills the index before any handler runs)."""
    return user_entry(body)


def user_entry(body: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    spec = body.get("spec") or {}
    meta = body["metadata"]
    if not spec.get("module") or meta.get("deletionTimestamp"):
        return None
    return {spec["module"]: {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "url": (body.get("status") or {}).get("url"),
        "pinned": bool(spec.get("image")),
    }}


@kopf.index(GROUP, VERSION, "modules")
def catalogue_items(body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]] | None:
    """Every Module's line in the catalogue index, kept in memory by kopf (added, updated and
    dropped with the watch events): the index writer reads it instead of listing 1,000 Modules
    on every rebuild."""
    try:
        module = Module.from_body(plain(body))
    except ValueError:
        return None  # an unparsable Module is not published; its status says why
    return {ALL: index_item(module, writer_of(runtime.current()).cache.problems(module))}


def snapshot(items: kopf.Index[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The items, read from the index writer's thread while kopf may be updating them."""
    for _ in range(100):
        try:
            return list(items.get(ALL, []))
        except RuntimeError:  # changed size during iteration: read again
            continue
    raise RuntimeError("the Module index kept changing while being read")


@kopf.on.event(GROUP, VERSION, "modules")
def module_event(type: str | None, body: kopf.Body, **kwargs: Any) -> None:
    """Every watch event reconciles (idempotent, writes only what changed). An event handler,
    not on.create/on.update: kopf then stores no progress or diff-base annotations and adds no
    finalizer, two patches per Module saved; the entry ConfigMap goes by garbage collection,
    and the periodic resync (see catalogue.index.IndexWriter) repairs drift."""
    rt = runtime.current()
    writer = writer_of(rt)
    if writer.source is None:  # kopf calls handlers only once its indexes are complete
        items: kopf.Index[str, dict[str, Any]] = kwargs["catalogue_items"]
        writer.source = lambda: snapshot(items)
    if type == "DELETED":
        writer.applied.pop(body["metadata"]["name"], None)
        writer.mark_stale()  # a deleted Module leaves the index on the next rebuild
        return
    meta, status = body["metadata"], body.get("status") or {}
    if meta.get("deletionTimestamp"):
        return
    name = meta["name"]
    applied = writer.applied.get(name)
    unchanged = status.get("observedGeneration") == meta.get("generation") and status.get("image") == (
        body.get("spec") or {}).get("image")
    if applied is not None and applied[0] == meta.get("uid") and unchanged:
        # the echo of our own status patch (or a label change): the spec this entry and status
        # were made from is unchanged, and users' changes come through inferenceservice_event
        return
    reconcile_module(rt, plain(body), indexed_users(kwargs, name))


#: the Module each InferenceService served at its last event: a service that moves to another
#: Module leaves the old one's users at once, not at the next resync
_served: dict[tuple[str, str], str] = {}


@kopf.on.event(GROUP, VERSION, "inferenceservices")
def inferenceservice_event(type: str | None, body: kopf.Body, **kwargs: Any) -> None:
    """A service that starts or stops using a Module updates that Module's users and endpoints
    (the one it serves now, and the one it served before)."""
    meta = body["metadata"]
    key = (meta.get("namespace") or "", meta["name"])
    name = (body.get("spec") or {}).get("module")
    previous = _served.pop(key, None)
    if name and type != "DELETED":
        _served[key] = name
    rt = runtime.current()
    for module_name in sorted({n for n in (name, previous) if n}):
        module = rt.kube.get(KIND, module_name)
        if module is not None:
            reconcile_module(rt, module, indexed_users(kwargs, module_name))


@kopf.on.cleanup()
def stop_index_writers(**_: Any) -> None:
    index.stop_all()


def indexed_users(kwargs: dict[str, Any], name: str) -> list[dict[str, Any]]:
    users: kopf.Index[str, dict[str, Any]] = kwargs["module_users"]  # kopf passes indexes by name
    return list(users.get(name, []))


def writer_of(rt: runtime.Runtime) -> index.IndexWriter:
    return index.writer_for(rt.kube, rt.config.platform_namespace, resync=lambda: resync(rt),
                            resync_seconds=rt.config.resync_seconds)


def resync(rt: runtime.Runtime) -> None:
    """Reconcile every Module from the API (one list of Modules, one of services)."""
    users = users_by_module(rt)
    for body in rt.kube.list(KIND):
        if not body["metadata"].get("deletionTimestamp"):
            reconcile_module(rt, body, users.get(body["metadata"]["name"], []))


def users_by_module(rt: runtime.Runtime) -> dict[str, list[dict[str, Any]]]:
    """The same shape as the module_users index, listed from the API."""
    found: dict[str, list[dict[str, Any]]] = {}
    for body in rt.kube.list(SERVICES):
        for module, user in (user_entry(body) or {}).items():
            found.setdefault(module, []).append(user)
    return found


def roll_out(rt: runtime.Runtime, users: list[dict[str, Any]]) -> list[str]:
    """Re-apply every service that takes its image from the Module; those pinning their own
    spec.image keep it. Returns the services rolled out."""
    from .inferenceservice import reconcile_inferenceservice  # late: avoids an import cycle

    rolled = []
    for user in users:
        if user["pinned"]:
            continue
        body = rt.kube.get(SERVICES, user["name"], user["namespace"])
        if body is None or (body.get("spec") or {}).get("image"):
            continue
        reconcile_inferenceservice(rt, body)
        rolled.append(f"{user['namespace']}/{user['name']}")
    return rolled


def announce(rt: runtime.Runtime, body: dict[str, Any], before: ModuleStatus, after: ModuleStatus) -> None:
    """One Event per reconcile that changed conditions, naming every transition (a new Module
    changes two at once: one Event, not two, keeps a burst of creations cheap). Its reason is
    the most telling one: a warning first, else the last transition."""
    changed = []
    for condition in after.conditions:
        old = get_condition(before, condition.type)
        if old is None or (old.status, old.reason) != (condition.status, condition.reason):
            changed.append(condition)
    if not changed:
        return
    warnings = [c for c in changed if c.status.value == "False" and c.reason in WARNING_REASONS]
    lead = warnings[0] if warnings else changed[-1]
    message = "; ".join(f"{c.type}={c.status.value}: {c.message}".rstrip(": ") for c in changed)
    events.emit(rt.kube, body, lead.reason, message, warning=bool(warnings))


@instrumented("module")
def reconcile_module(
    rt: runtime.Runtime, body: dict[str, Any], users: list[dict[str, Any]] | None = None
) -> None:
    """`users`: the module_users index entries for this Module (listed from the API if None)."""
    before = ModuleStatus.model_validate(body.get("status") or {})
    module = parse(Module, body)
    writer = writer_of(rt)
    if isinstance(module, list):
        status = invalid_spec_status(ModuleStatus, body, module, "Ready")
    else:
        status = module.status.model_copy(deep=True)
        generation = module.metadata.generation
        problems = writer.cache.problems(module)
        # invalid metadata is published all the same, flagged: hiding it would lose the module
        set_condition(
            status,
            "MetadataValid",
            not problems,
            "Valid" if not problems else "InvalidMetadata",
            "; ".join(f"spec.metadata.{p}" for p in problems),
            generation,
        )
        if users is None:
            users = users_by_module(rt).get(module.name, [])
        users = sorted(users, key=lambda u: (u["namespace"], u["name"]))
        status.inference_services = [f"{u['namespace']}/{u['name']}" for u in users]
        endpoints = [u["url"] for u in users if u["url"]]
        entry = build_catalogue_entry(module, rt.config.platform_namespace, endpoints, problems)
        applied = (module.metadata.uid or "", entry["data"])
        refusal = None
        if writer.applied.get(module.name) != applied:
            try:
                rt.kube.apply(entry)
                writer.applied[module.name] = applied
            except ApiError as exc:
                if not retry.refused(exc):
                    raise
                # too big for a ConfigMap, a quota...: said in the status; the resync retries
                refusal = retry.refusal_message(f"the catalogue entry of {module.name}", exc)
                refusal = refusal.replace("(retried automatically)", "(retried at the next resync)")
        # a line too big for an index shard is left out by the index writer (the other Modules
        # stay listed); said here, where the author looks
        too_large = index_line_too_large(index_item(module, problems))
        if refusal is not None:
            if too_large is not None:
                refusal += f"; and {too_large}"
            set_condition(status, "Ready", False, "CatalogueEntryRejected", refusal, generation)
        else:
            if status.image is not None and status.image != module.spec.image:
                rolled = roll_out(rt, users)
                log.info("Module %s: image %s -> %s rolled out to %s", module.name, status.image,
                         module.spec.image, ", ".join(rolled) or "no service")
            status.catalogue_entry = entry["metadata"]["name"]
            status.image = module.spec.image
            published = f"{rt.config.platform_namespace}/{status.catalogue_entry}"
            if too_large is not None:
                set_condition(status, "Ready", False, "IndexEntryTooLarge",
                              f"{too_large}. Its entry {published} is published (its page works)",
                              generation)
            else:
                set_condition(status, "Ready", True, "Published", f"in the catalogue as {published}",
                              generation)
        status.observed_generation = generation
    writer.mark_stale()
    if write_status(rt.kube, KIND, body, status):
        announce(rt, body, before, status)
