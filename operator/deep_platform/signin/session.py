"""Signed cookies: a session (who is signed in) and a pending sign-in (state, nonce, PKCE
verifier), each an HS256 JWT (PyJWT) under the site's cookie key, with its own audience so that
one kind can never stand in for the other, and an expiry. Replicas sharing the key accept each
other's cookies; nothing is kept in server memory. The audience also names the app (`app`): the
web app's cookies and the activator's (activator/signin.py) hold different things, so neither
opens the other's, even under one key."""

from __future__ import annotations

import time
from typing import Any

import jwt

SESSION = "session"
PENDING = "pending-signin"
SESSION_COOKIE = "deep_session"
PENDING_COOKIE = "deep_signin"
WEB = "deep-platform-web"


class CookieSealer:
    def __init__(self, key: bytes, app: str = WEB) -> None:
        self._key = key
        self._app = app

    def seal(self, purpose: str, data: dict[str, Any], ttl_seconds: float) -> str:
        now = int(time.time())
        payload = {**data, "aud": f"{self._app}/{purpose}", "iat": now, "exp": now + int(ttl_seconds)}
        return jwt.encode(payload, self._key, algorithm="HS256")

    def open(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        """The data sealed for `purpose`, or None when missing, forged, expired or of another kind."""
        if not value:
            return None
        try:
            return dict(jwt.decode(value, self._key, algorithms=["HS256"],
                                   audience=f"{self._app}/{purpose}", options={"require": ["exp"]}))
        except jwt.InvalidTokenError:
            return None
