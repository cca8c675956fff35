"""Token claims to a Kubernetes user and groups, the way kube-apiserver's OIDC authenticator maps
them (--oidc-username-claim, --oidc-username-prefix, --oidc-groups-claim, --oidc-groups-prefix),
so that a person's RBAC bindings mean on the dashboard what they mean for kubectl."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .settings import SignInSettings

#: every authenticated user is in this group on the API server; a review must say so too
AUTHENTICATED = "system:authenticated"


class ClaimError(ValueError):
    """The token cannot be mapped to a user; the message says which claim and why."""


@dataclass(frozen=True)
class Identity:
    username: str
    groups: tuple[str, ...]


def identity_from_claims(claims: Mapping[str, Any], settings: SignInSettings) -> Identity:
    claim = settings.username_claim
    value = claims.get(claim)
    if not isinstance(value, str) or not value:
        raise ClaimError(f"the ID token has no string claim {claim!r} (web.auth.oidc.usernameClaim)")
    if claim == "email" and claims.get("email_verified") is False:
        # the API server refuses unverified addresses: anyone could claim one
        raise ClaimError("the ID token's email is not verified (email_verified is false)")
    groups: list[str] = []
    if settings.groups_claim:
        raw = claims.get(settings.groups_claim)
        if isinstance(raw, str):
            raw = [raw]
        if raw is None:
            raw = []
        if not isinstance(raw, list) or not all(isinstance(g, str) for g in raw):
            raise ClaimError(f"the ID token's claim {settings.groups_claim!r} is neither a string nor "
                             "a list of strings (web.auth.oidc.groupsClaim)")
        groups = [settings.groups_prefix + g for g in raw]
    return Identity(settings.effective_username_prefix + value, (*groups, AUTHENTICATED))
