"""Report progress from a training pod: `report(epoch=3, total_epochs=15, loss=0.3)`.

The operator gives the training container `DEEP_PROGRESS_URL` (its TrainingJob's endpoint) and
`DEEP_PROGRESS_TOKEN_FILE` (a projected token, renewed by the kubelet: read on each call). Only
the standard library is used, so a module can import this without the platform's other needs.
A report that fails never stops the training: `report` logs and returns False.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

from . import TOKEN_FILE, TOKEN_FILE_ENV, URL_ENV

log = logging.getLogger(__name__)


class ReportFailed(Exception):
    """The endpoint refused the report or could not be reached; the message says which."""


def configured() -> bool:
    """Whether this process runs where reports can go (a TrainingJob's pod)."""
    return bool(os.environ.get(URL_ENV))


def send(
    body: dict[str, Any], url: str | None = None, token_file: str | None = None, timeout: float = 5.0
) -> None:
    """POST one report; raise ReportFailed with the endpoint's reason."""
    url = url or os.environ.get(URL_ENV)
    if not url:
        raise ReportFailed(
            f"{URL_ENV} is not set: not in a TrainingJob's pod, or the site has no progress endpoint"
        )
    path = token_file or os.environ.get(TOKEN_FILE_ENV) or TOKEN_FILE
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise ReportFailed(f"cannot read the progress token {path}: {exc.strerror}") from None
    if not url.startswith(("http://", "https://")):
        raise ReportFailed(f"{URL_ENV} must be an http(s) URL, not {url[:80]!r}")
    request = urllib.request.Request(  # noqa: S310 (http(s) only, checked above)
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            answer.read()
    except urllib.error.HTTPError as exc:
        try:
            said = json.loads(exc.read() or b"{}").get("error") or exc.reason
        except ValueError:
            said = exc.reason
        raise ReportFailed(f"{exc.code}: {said}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ReportFailed(f"{url} cannot be reached: {getattr(exc, 'reason', exc)}") from None


def report_body(
    epoch: int | None = None,
    total_epochs: int | None = None,
    step: int | None = None,
    total_steps: int | None = None,
    metrics: dict[str, float] | None = None,
    **more_metrics: float,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        wire: value
        for wire, value in (
            ("epoch", epoch),
            ("totalEpochs", total_epochs),
            ("step", step),
            ("totalSteps", total_steps),
        )
        if value is not None
    }
    values = {**(metrics or {}), **more_metrics}
    if values:
        body["metrics"] = {name: float(value) for name, value in values.items()}
    return body


def report(
    epoch: int | None = None,
    total_epochs: int | None = None,
    step: int | None = None,
    total_steps: int | None = None,
    metrics: dict[str, float] | None = None,
    **more_metrics: float,
) -> bool:
    """Report progress (epochs done, metrics as keywords or a dict); False if it did not go
    through (logged), never an exception: progress is no reason to stop a training."""
    if not configured():
        return False
    try:
        send(report_body(epoch, total_epochs, step, total_steps, metrics, **more_metrics))
    except (ReportFailed, TypeError, ValueError) as exc:
        log.warning("progress report not sent: %s", exc)
        return False
    return True
