"""Who may call a service through the activator: `spec.auth` of InferenceServices and
DevEnvironments.

A service is public, or takes OpenID Connect tokens (checked against the issuer's published keys)
and/or bearer tokens kept in a Secret of its namespace. With neither set, the site's default from
the chart applies (`activator.auth`: sign-in required unless a service says `public: true`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .common import DNS_SUBDOMAIN_PATTERN, ApiModel

#: an issuer is an absolute https URL (http is accepted for loopback test issuers only)
ISSUER_PATTERN = r"^(https://[^\s/?#]+(/[^\s?#]*)?|http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?(/[^\s?#]*)?)$"
#: a subject or group as a token carries it: never empty, never padded with spaces (a typo that
#: would never match)
ClaimValue = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^\S(.*\S)?$")]


class OidcAuth(ApiModel):
    """OpenID Connect bearer tokens: the issuer's keys are discovered and cached."""

    issuer: str | None = Field(
        None,
        pattern=ISSUER_PATTERN,
        max_length=2048,
        description=(
            "Issuer URL (`iss` of the tokens), whose `/.well-known/openid-configuration` names "
            "the keys; defaults to the site's issuer from the chart."
        ),
    )
    audience: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Required `aud` of the tokens; defaults to the site's audience from the chart.",
    )
    allowed_subjects: list[ClaimValue] = Field(
        default_factory=list,
        max_length=1000,
        description="Token subjects (`sub`) let in; with allowedGroups empty too, any valid token.",
    )
    allowed_groups: list[ClaimValue] = Field(
        default_factory=list,
        max_length=1000,
        description="Groups (from the site's groups claim) let in; one match is enough.",
    )


class TokenSecret(ApiModel):
    """Static bearer tokens, one per line, in a key of a Secret in the service's namespace."""

    name: str = Field(..., pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="Name of the Secret.")
    key: str = Field("tokens", min_length=1, max_length=253, description="Key holding the tokens.")


class ServiceAuth(ApiModel):
    """Who may call the service: public, or a valid token of one of the methods set."""

    public: bool | None = Field(
        None,
        description="Anyone may call the service; cannot be combined with oidc or tokenSecret.",
    )
    oidc: OidcAuth | None = Field(None, description="Accept OpenID Connect tokens.")
    token_secret: TokenSecret | None = Field(None, description="Accept the bearer tokens of a Secret.")
    forward_authorization: bool = Field(
        False,
        description=(
            "Pass the caller's Authorization header on to the service; by default the activator "
            "removes it once checked, so a model never sees (or logs) users' tokens."
        ),
    )

    @model_validator(mode="after")
    def _public_or_methods(self) -> ServiceAuth:
        if self.public and (self.oidc is not None or self.token_secret is not None):
            raise ValueError(
                "public: true lets everyone in, so oidc and tokenSecret would never be checked; "
                "remove public or remove the methods"
            )
        return self
