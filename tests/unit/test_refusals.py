"""What the controllers make of the API server's error answers (issue #12, point 7)."""

from __future__ import annotations

from typing import Any

import pytest

from deep_platform import kube as k
from deep_platform.api.module import Module, ModuleStatus
from deep_platform.conditions import set_condition
from deep_platform.controllers import retry
from deep_platform.controllers.reconciler import write_status

#: what kube-apiserver 1.36 answers to server-side apply of a Deployment whose env[].valueFrom
#: has a string where an object belongs
TYPED_PATCH = (
    "failed to create typed patch object (ns/x; apps/v1, Kind=Deployment): .spec.template.spec."
    'containers[name="model"].env[name="X"].valueFrom.secretKeyRef: expected map, got &{oops}'
)


@pytest.mark.parametrize("status", [400, 403, 404, 413, 422, 429, 500, 503])
def test_every_error_answer_but_a_conflict_is_a_refusal(status: int) -> None:
    assert retry.refused(k.ApiError(status, "Whatever", "no"))


def test_a_conflict_is_not_a_refusal() -> None:
    assert not retry.refused(k.ApiError(409, "Conflict", "the object has been modified"))


def test_a_500_from_server_side_apply_names_the_field() -> None:
    message = retry.refusal_message("Deployment x", k.ApiError(500, "InternalError", TYPED_PATCH))
    assert "valueFrom.secretKeyRef: expected map" in message
    assert "refuses the object as built" in message


def test_a_server_failure_says_so() -> None:
    message = retry.refusal_message("Deployment x", k.ApiError(503, "ServiceUnavailable", "etcd timeout"))
    assert "the API server failed" in message


class VanishingKube:
    """Every status write finds the object gone."""

    def patch_status(self, *_: Any) -> dict[str, Any]:
        raise k.ApiError(404, "NotFound", 'modules.deep-hybrid-datacloud.eu "x" not found')


class FailingKube:
    def patch_status(self, *_: Any) -> dict[str, Any]:
        raise k.ApiError(500, "InternalError", "etcd")


def test_a_status_write_to_a_vanished_object_is_no_error() -> None:
    status = ModuleStatus()
    set_condition(status, "Ready", True, "Published", "", 1)
    body = {"metadata": {"name": "x"}, "status": {}}
    assert write_status(VanishingKube(), k.kind_of(Module), body, status) is None  # type: ignore[arg-type]
    with pytest.raises(k.ApiError):
        write_status(FailingKube(), k.kind_of(Module), body, status)  # type: ignore[arg-type]
