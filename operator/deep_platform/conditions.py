"""Status in memory: conditions set per type, and the patch that is written only on change."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .api.base import Status
from .api.common import Condition, ConditionStatus


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def set_condition(
    status: Status,
    type_: str,
    true: bool | None,
    reason: str,
    message: str = "",
    generation: int | None = None,
) -> bool:
    """Set one condition; keep lastTransitionTime unless the status flips. True if it changed."""
    value = {True: ConditionStatus.true, False: ConditionStatus.false, None: ConditionStatus.unknown}[true]
    for index, old in enumerate(status.conditions):
        if old.type != type_:
            continue
        if (old.status, old.reason, old.message, old.observed_generation) == (
            value,
            reason,
            message,
            generation,
        ):
            return False
        transition = old.last_transition_time if old.status == value else now()
        status.conditions[index] = Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=transition,
            observed_generation=generation,
        )
        return True
    status.conditions.append(
        Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=now(),
            observed_generation=generation,
        )
    )
    return True


def get_condition(status: Status, type_: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_), None)


def is_true(status: Status, type_: str) -> bool:
    condition = get_condition(status, type_)
    return condition is not None and condition.status == ConditionStatus.true


def status_patch(current: dict[str, Any] | None, desired: Status) -> dict[str, Any] | None:
    """The merge patch that turns the stored status into the desired one; None when equal.

    Only the keys the model knows are compared, so fields written by others stay untouched.
    Keys that became unset are sent as null (removed by the merge patch).
    """
    current = current or {}
    wanted = desired.model_dump(by_alias=True, mode="json", exclude_none=True)
    patch: dict[str, Any] = {k: v for k, v in wanted.items() if current.get(k) != v}
    for key in type(desired).model_fields:
        alias = type(desired).model_fields[key].alias or key
        if alias not in wanted and current.get(alias) is not None:
            patch[alias] = None
    return patch or None
