"""The shape every reconciliation shares: parse, build, apply, write status only on change."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from .. import events
from .. import kube as k
from ..api import Module
from ..api.base import CustomObject, Status
from ..conditions import get_condition, set_condition, status_patch
from ..errors import describe_validation_error

log = logging.getLogger(__name__)

T = TypeVar("T", bound=CustomObject[Any, Any])


def plain(body: Any) -> dict[str, Any]:
    """kopf's read-only Body as a plain dict."""
    return {key: body[key] for key in body}


def parse(model: type[T], body: dict[str, Any]) -> T | list[str]:
    """The object as its model, or the list of problems (for a status condition)."""
    try:
        return model.from_body(body)
    except ValidationError as exc:
        return describe_validation_error(exc)


def write_status(
    api: k.Kube, kind: k.Kind, body: dict[str, Any], status: Status, precondition: bool = False
) -> dict[str, Any] | None:
    """Patch the status subresource only when something the model knows changed.

    With precondition, the patch carries the resourceVersion of body: it lands only if the
    status it was computed from is still the stored one (else a 409 ApiError, `conflict`), so
    a transition decided from a stale copy (another reconciliation of the same object, or an
    operator process that was killed and replaced) is never written nor announced twice.
    """
    patch = status_patch(body.get("status"), status)
    if patch is None:
        return None
    meta = body["metadata"]
    try:
        if precondition and meta.get("resourceVersion"):
            return api.patch(
                kind,
                meta["name"],
                meta.get("namespace"),
                {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch},
                sub="status",
            )
        return api.patch_status(kind, meta["name"], meta.get("namespace"), patch)
    except k.ApiError as exc:
        if not exc.not_found:
            raise
        # deleted while we reconciled (its namespace going, most often): nothing to report to
        log.debug("%s %s is gone; status not written", kind.kind, meta["name"])
        return None


def announce_transitions(
    api: k.Kube,
    body: dict[str, Any],
    before: Status,
    after: Status,
    warning_reasons: Callable[[str], bool] = lambda _reason: False,
) -> None:
    """One Event per condition whose status or reason changed."""
    for condition in after.conditions:
        old = get_condition(before, condition.type)
        if old is not None and (old.status, old.reason) == (condition.status, condition.reason):
            continue
        message = f"{condition.type}={condition.status.value}: {condition.message}".rstrip(": ")
        warning = condition.status.value == "False" and warning_reasons(condition.reason)
        events.emit(api, body, condition.reason, message, warning=warning)


S = TypeVar("S", bound=Status)


def invalid_spec_status(
    status_model: type[S], body: dict[str, Any], problems: list[str], condition: str
) -> S:
    """Status for an object the operator cannot parse: keep what was there, say what is wrong."""
    try:
        status = status_model.model_validate(body.get("status") or {})
    except ValidationError:
        status = status_model()
    generation = body["metadata"].get("generation")
    set_condition(status, condition, False, "InvalidSpec", "; ".join(problems), generation)
    status.observed_generation = generation
    return status


def module_of(kube: k.Kube, spec: Any) -> tuple[Module | None, str | None]:
    """The Module `spec.module` names, and, where it does not exist and no `spec.image` replaces
    it, the message saying so (the reason is ModuleNotFound)."""
    if not spec.module:
        return None, None
    body = kube.get(k.kind_of(Module), spec.module)
    if body is not None:
        return Module.from_body(body), None
    if spec.image:
        return None, None
    return None, f"Module {spec.module!r} does not exist; create it or fix spec.module"
