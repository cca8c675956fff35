"""The PersistentVolume and claim of storage mode `mount` with a CSI driver, applied and removed.

builders/storage.py renders them; a controller calls `apply_storage_volumes(kube, owner)` before
it applies the pod's owner. The claim is owned by the object (garbage collection removes it).
The PV is cluster-scoped, so it cannot be: it carries the owner's kind, name and namespace as
labels and is deleted by them (on the owner's DELETED watch event here, no finalizer), and the periodic
sweep deletes PVs whose claim is gone (a deletion the operator missed while it was down). Not
reclaimPolicy Delete: for a statically made PV that either fails (no provisioner) or, with a
driver that implements DeleteVolume, could delete the user's remote folder (docs/storage.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import kopf

from ..api import GROUP, VERSION
from ..api.base import CustomObject
from ..builders import pod as podparts
from ..builders.storage import LABEL_NAMESPACE, build_storage
from ..config import site_settings
from ..kube import PERSISTENTVOLUME, PERSISTENTVOLUMECLAIM, ApiError, Kube
from . import runtime
from .settings import RESYNC_SECONDS

log = logging.getLogger(__name__)
COMPONENT = "app.kubernetes.io/component=storage"
#: a PV is applied just before its claim: younger ones are never taken for orphans
ORPHAN_GRACE_SECONDS = 60.0
_last_sweep = 0.0


def owner_selector(kind_singular: str, namespace: str, name: str) -> str:
    return (
        f"{COMPONENT},{podparts.LABEL_KIND}={kind_singular},{podparts.LABEL_NAME}={name[:63]},"
        f"{LABEL_NAMESPACE}={namespace}"
    )


def apply_storage_volumes(kube: Kube, owner: CustomObject[Any, Any]) -> None:
    """Apply the owner's PV + claim pairs (PV first) and delete those its spec no longer has.

    Call it where the pod's owner is applied, after the storage check passed. Without a CSI
    driver there are no such objects, and nothing is read."""
    if not site_settings().rclone_csi_driver:
        return
    objects = build_storage(owner, owner.spec.storage, site_settings(), upload_results=False).objects
    wanted = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for obj in objects:
        applied = kube.apply(obj)
        if applied.get("metadata", {}).get("deletionTimestamp"):
            # a mount removed and added again at once: the old volume still waits for its
            # finalizer (pv-protection), and the apply only touched the dying object
            raise ApiError(
                503, "StillDeleting",
                f"{obj['kind']} {obj['metadata']['name']} is still being deleted; it is made again "
                "once it is gone",
            )
    selector = owner_selector(owner.crd.singular, owner.namespace or "", owner.name)
    for kind, namespace in ((PERSISTENTVOLUMECLAIM, owner.namespace), (PERSISTENTVOLUME, None)):
        for item in kube.list(kind, namespace, label_selector=selector):
            if (kind.kind, item["metadata"]["name"]) not in wanted:
                kube.delete(kind, item["metadata"]["name"], namespace)


def delete_storage_volumes(kube: Kube, kind_singular: str, namespace: str, name: str) -> None:
    """Delete the PVs of an owner that is gone (the claims go by garbage collection; a bound PV
    waits for its claim, kept by Kubernetes' pv-protection finalizer)."""
    for pv in kube.list(PERSISTENTVOLUME, label_selector=owner_selector(kind_singular, namespace, name)):
        kube.delete(PERSISTENTVOLUME, pv["metadata"]["name"])


def sweep_orphaned_volumes(kube: Kube, now: dt.datetime | None = None) -> int:
    """Delete our PVs whose claim no longer exists (older than the grace period); the count."""
    now = now or dt.datetime.now(dt.UTC)
    deleted = 0
    for pv in kube.list(PERSISTENTVOLUME, label_selector=f"{COMPONENT},{LABEL_NAMESPACE}"):
        meta = pv["metadata"]
        stamp = (meta.get("creationTimestamp") or "").replace("Z", "+00:00")
        created = dt.datetime.fromisoformat(stamp) if stamp else now
        if (now - created).total_seconds() < ORPHAN_GRACE_SECONDS:
            continue
        claim = (pv.get("spec") or {}).get("claimRef") or {}
        if not claim.get("name") or kube.get(PERSISTENTVOLUMECLAIM, claim["name"], claim.get("namespace")):
            continue
        log.info(
            "deleting PersistentVolume %s: its claim %s/%s is gone",
            meta["name"],
            claim.get("namespace"),
            claim["name"],
        )
        kube.delete(PERSISTENTVOLUME, meta["name"])
        deleted += 1
    return deleted


def sweep_now_and_then(kube: Kube) -> None:
    """The sweep, at most once per resync period, whichever resync calls it."""
    global _last_sweep
    if time.monotonic() - _last_sweep < RESYNC_SECONDS:
        return
    _last_sweep = time.monotonic()
    try:
        sweep_orphaned_volumes(kube)
    except Exception as exc:  # never block a resync on the sweep
        log.warning("sweeping orphaned storage PersistentVolumes: %s", exc)


def _deleted(type: str, **_: Any) -> bool:  # `type` is kopf's keyword
    return type == "DELETED"


def storage_owner_gone(kube: Kube, kind: str, namespace: str, name: str) -> None:
    """A TrainingJob or InferenceService is gone: its CSI volumes (if any) go too."""
    if site_settings().rclone_csi_driver:
        delete_storage_volumes(kube, kind, namespace, name)


# the watch's DELETED event, not kopf.on.delete: that needs a finalizer (or kopf's own reasons to
# keep one) to ever fire, and the controllers deliberately leave none (TrainingJobs: on their
# own watch, trainingjob.py)
@kopf.on.event(GROUP, VERSION, "inferenceservices", when=_deleted)
def storage_owner_deleted(body: kopf.Body, **_: Any) -> None:
    meta = body.get("metadata") or {}
    storage_owner_gone(runtime.current().kube, "inferenceservice", meta["namespace"], meta["name"])
