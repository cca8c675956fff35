"""Pure parts of the activator's DevEnvironment path: what reaches the IDE, the idle clock."""

from __future__ import annotations

import datetime as dt

from deep_platform.activator.devenv import available_since, ide_cookies


def test_the_platforms_own_cookies_never_reach_the_ide() -> None:
    """The IDE runs the user's code: a visitor's sign-in session must not be handed to it."""
    sent = ["deep_session=visitor-session; _xsrf=2|abc; username-127-0-0-1-8888=2|def",
            "deep_signin=pending"]
    assert ide_cookies(sent) == "_xsrf=2|abc; username-127-0-0-1-8888=2|def"
    assert ide_cookies([]) == ""


def test_the_idle_clock_restarts_when_the_deployment_changes_availability() -> None:
    deployment = {"status": {"conditions": [
        {"type": "Progressing", "status": "True", "lastTransitionTime": "2026-05-01T09:00:00Z"},
        {"type": "Available", "status": "True", "lastTransitionTime": "2026-05-01T10:00:00Z"}]}}
    assert available_since(deployment) == dt.datetime(2026, 5, 1, 10, tzinfo=dt.UTC)
    assert available_since({"status": {}}) is None
