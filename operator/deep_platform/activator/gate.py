"""The activator's door: a request's token checked against its target's policy before anything
else happens (no wake-up, no queue slot, no connection upstream for a refused request).

Refusals are JSON `{"reason", "message"}` with `WWW-Authenticate: Bearer ...` on 401 (RFC 6750
error and description), counted by reason; no token is ever logged or echoed. Bearer tokens of
`spec.auth.tokenSecret` are read with `get` on that one Secret (no list, no watch), kept for
`secret_ttl` seconds as SHA-256 digests only.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

from ..auth import Caller, Refusal, SiteAuth, TokenChecker, www_authenticate
from ..auth.tokens import digest
from . import metrics
from .routes import Target
from .signin import Session

log = logging.getLogger(__name__)
REALM = "deep-platform"


def token_digests(secret: dict[str, Any] | None, key: str) -> frozenset[bytes] | None:
    """Digests of the tokens of a Secret's key: one per line; blank lines and `#` comments skipped."""
    if secret is None:
        return None
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        text = (secret.get("stringData") or {}).get(key)
        if text is None:
            return None
    else:
        try:
            text = base64.b64decode(raw).decode()
        except (ValueError, UnicodeDecodeError):
            return frozenset()
    lines = (line.strip() for line in text.splitlines())
    return frozenset(digest(line) for line in lines if line and not line.startswith("#"))


class Gate:
    def __init__(
        self, cluster: Any, site: SiteAuth, checker: TokenChecker | None = None, secret_ttl: float = 10.0
    ) -> None:
        self.cluster = cluster
        self.site = site
        self.checker = checker or TokenChecker(site)
        self.secret_ttl = secret_ttl
        self._secrets: dict[tuple[str, str, str], tuple[float, frozenset[bytes] | None]] = {}
        self._fetching: dict[tuple[str, str, str], asyncio.Future[frozenset[bytes] | None]] = {}

    async def check(self, authorization: str | None, target: Target) -> Caller | None:
        """The caller (None for a public target); raises Refusal."""
        policy = target.policy
        if policy.public:
            return None
        return await self.checker.check(authorization, policy, target.namespace, self.secret_tokens)

    def check_session(self, session: Session, target: Target) -> Caller | None:
        """The caller of a browser session (signin.py), checked as a bearer token's claims are:
        the session's issuer must be the policy's, then allowedSubjects/allowedGroups; raises
        Refusal. Secret tokens are never satisfied by a session."""
        policy = target.policy
        if policy.public:
            return None
        if policy.unusable is not None:
            raise Refusal(401, "AuthNotConfigured", policy.unusable)
        if policy.oidc is None:
            name = policy.token_secret[0] if policy.token_secret else ""
            raise Refusal(
                401,
                "SessionNotAccepted",
                f"{target.kind} {target.namespace}/{target.name} takes only the bearer tokens of Secret "
                f"{name!r} (spec.auth.tokenSecret); a browser sign-in does not satisfy it: send the header "
                "'Authorization: Bearer <token>'",
            )
        if session.issuer != policy.oidc.issuer:
            raise Refusal(
                401,
                "SessionIssuerMismatch",
                f"you are signed in at {session.issuer}, but {target.kind} {target.namespace}/{target.name} "
                f"accepts only {policy.oidc.issuer} (spec.auth.oidc.issuer): send a bearer token of that "
                "issuer",
            )
        claims = {"sub": session.subject, self.site.groups_claim: list(session.groups)}
        if self.site.username_claim != "sub":
            claims[self.site.username_claim] = session.name
        return self.checker.admit(claims, policy.oidc)

    async def secret_tokens(self, namespace: str, name: str, key: str) -> frozenset[bytes] | None:
        cache_key = (namespace, name, key)
        cached = self._secrets.get(cache_key)
        if cached is not None and time.monotonic() - cached[0] < self.secret_ttl:
            return cached[1]
        pending = self._fetching.get(cache_key)
        if pending is not None:  # one read per Secret, however many requests wait for it
            return await asyncio.shield(pending)
        future: asyncio.Future[frozenset[bytes] | None] = asyncio.get_running_loop().create_future()
        self._fetching[cache_key] = future
        try:
            secret = await asyncio.to_thread(self.cluster.secret, namespace, name)
            digests = token_digests(secret, key)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            if cached is not None:
                log.warning("reading Secret %s/%s failed; using the copy read before: %s", namespace, name,
                            exc)
                return cached[1]
            raise Refusal(503, "TokenSecretUnavailable", f"Secret {name!r} could not be read; retry") from exc
        finally:
            self._fetching.pop(cache_key, None)
        self._secrets[cache_key] = (time.monotonic(), digests)
        future.set_result(digests)
        return digests


def refusal_headers(refusal: Refusal) -> dict[str, str]:
    if refusal.status in (401, 403):
        return {"WWW-Authenticate": www_authenticate(refusal, REALM)}
    if refusal.status == 503:
        return {"Retry-After": "5"}
    return {}


def count_refusal(target: Target, refusal: Refusal) -> None:
    metrics.AUTH_REFUSALS.labels(target.namespace, target.name, refusal.reason).inc()
