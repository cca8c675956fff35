"""Readable messages for invalid input: the field path first, then what to do."""

from __future__ import annotations

from pydantic import ValidationError


def tail(text: str | None, limit: int = 800) -> str:
    """The end of a long message (a termination message, an API answer): the cause is last."""
    text = (text or "").strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif not item.startswith(("function-after", "function-plain", "str", "int", "union")):
            parts.append(("." if parts else "") + item)
    return "".join(parts)


def describe_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem: `spec.resources.gpu.count: Input should be ...`."""
    lines = []
    for error in exc.errors():
        path = field_path(tuple(error["loc"]))
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field; check the spelling against `kubectl explain`"
        elif error["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{path}: {message}" if path else message)
    return lines
