"""Who may call a service: a bearer token checked against its `spec.auth` and the site's default.

Independent of any web framework: `TokenChecker.check(authorization, policy)` takes the value of
an `Authorization` header and answers the caller or raises `Refusal` (status, reason, message and
the RFC 6750 `error` for `WWW-Authenticate`). Messages never contain a token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from ..api.auth import ServiceAuth
from .keys import ALGORITHMS, IssuerKeys, KeysUnavailable

#: accepted clock difference between the issuer and us, in seconds
LEEWAY = 30.0
#: a verified token's claims are reused this long (bounded by its expiry): checking an RS256
#: signature costs more than forwarding the request; a retired key stops working within it
VERIFIED_TTL = 60.0
VERIFIED_MAX = 10_000


@dataclass(frozen=True)
class SiteAuth:
    """The site's default (chart `activator.auth`)."""

    #: sign-in required for services that do not say `public: true`
    required: bool = True
    issuer: str | None = None
    audience: str | None = None
    groups_claim: str = "groups"
    username_claim: str = "sub"
    #: bearer tokens from Secrets (`spec.auth.tokenSecret`); off: the activator reads no Secret
    secret_tokens: bool = True


@dataclass(frozen=True)
class Oidc:
    issuer: str
    audience: str
    subjects: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Policy:
    """What one service accepts, with the site's defaults filled in."""

    public: bool = False
    oidc: Oidc | None = None
    #: (Secret name, key) in the service's namespace
    token_secret: tuple[str, str] | None = None
    #: why no method is usable (a configuration to fix), when none is
    unusable: str | None = None


@dataclass(frozen=True)
class Caller:
    subject: str
    groups: tuple[str, ...] = ()
    method: str = "oidc"


@dataclass
class Refusal(Exception):
    status: int
    reason: str
    message: str
    #: RFC 6750 error code: invalid_request, invalid_token or insufficient_scope (None: no token)
    error: str | None = None
    issuer: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


def policy_for(auth: ServiceAuth | None, site: SiteAuth, what: str) -> Policy:
    """The policy of a service (`what`: e.g. "InferenceService ns/name", for messages)."""
    if auth is not None and auth.public:
        return Policy(public=True)
    has_methods = auth is not None and (auth.oidc is not None or auth.token_secret is not None)
    if not has_methods:
        explicit = auth is not None and auth.public is False
        if not site.required and not explicit:
            return Policy(public=True)
        if site.issuer is None or site.audience is None:
            return Policy(
                unusable=(
                    f"{what} requires a token but neither its spec.auth nor the site names an issuer: "
                    "set spec.auth.oidc (issuer, audience), spec.auth.tokenSecret, or spec.auth.public: "
                    "true; or the chart's activator.auth.oidc.issuer and audience"
                )
            )
        return Policy(oidc=Oidc(site.issuer, site.audience))
    assert auth is not None
    oidc = None
    problems = []
    if auth.oidc is not None:
        issuer = auth.oidc.issuer or site.issuer
        audience = auth.oidc.audience or site.audience
        if issuer is None:
            problems.append("spec.auth.oidc.issuer is empty and the site has no issuer")
        if audience is None:
            problems.append("spec.auth.oidc.audience is empty and the site has no audience")
        if issuer is not None and audience is not None:
            oidc = Oidc(
                issuer, audience, frozenset(auth.oidc.allowed_subjects), frozenset(auth.oidc.allowed_groups)
            )
    secret = None
    if auth.token_secret is not None:
        if site.secret_tokens:
            secret = (auth.token_secret.name, auth.token_secret.key)
        else:
            problems.append("spec.auth.tokenSecret is set but this site turned Secret tokens off")
    if oidc is None and secret is None:
        return Policy(unusable=f"{what} accepts no token: " + "; ".join(problems))
    return Policy(oidc=oidc, token_secret=secret)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Refusal(
            401,
            "TokenMissing",
            "this service needs a bearer token: send the header 'Authorization: Bearer <token>'",
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Refusal(
            401,
            "TokenMalformed",
            "the Authorization header must be 'Bearer <token>'",
            error="invalid_request",
        )
    return token


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def matches_any(token: str, digests: Iterable[bytes]) -> bool:
    """Constant time per entry, and every entry compared: no early exit that timing would show."""
    presented = digest(token)
    found = False
    for known in digests:
        found |= hmac.compare_digest(presented, known)
    return found


#: (namespace, Secret name, key) -> digests of the tokens in it, None when the Secret or key is missing
SecretReader = Callable[[str, str, str], Awaitable[frozenset[bytes] | None]]


class TokenChecker:
    def __init__(self, site: SiteAuth, keys: IssuerKeys | None = None, leeway: float = LEEWAY) -> None:
        self.site = site
        self.keys = keys or IssuerKeys()
        self.leeway = leeway
        #: (token, issuer, audience) -> (monotonic deadline, claims), oldest first
        self._verified: dict[tuple[str, str, str], tuple[float, dict[str, Any]]] = {}

    async def check(
        self,
        authorization: str | None,
        policy: Policy,
        namespace: str,
        secrets: SecretReader | None = None,
    ) -> Caller | None:
        """None for a public service, else the caller; raises Refusal."""
        if policy.public:
            return None
        if policy.unusable is not None:
            raise Refusal(401, "AuthNotConfigured", policy.unusable)
        token = bearer_token(authorization)
        if policy.token_secret is not None and secrets is not None:
            name, key = policy.token_secret
            known = await secrets(namespace, name, key)
            if known and matches_any(token, known):
                return Caller(subject=f"secret:{name}", method="token")
            if policy.oidc is None:
                why = (
                    f"the token is not one of the tokens of Secret {name!r} (key {key!r})"
                    if known is not None
                    else f"Secret {name!r} with key {key!r}, named by spec.auth.tokenSecret, does not exist"
                )
                raise Refusal(401, "TokenInvalid", why, error="invalid_token")
        assert policy.oidc is not None
        claims = await self.verify(token, policy.oidc)
        return self.admit(claims, policy.oidc)

    async def verify(self, token: str, oidc: Oidc) -> dict[str, Any]:
        """The claims of a token signed by one of the issuer's keys, for the audience, unexpired."""
        cache_key = (token, oidc.issuer, oidc.audience)
        hit = self._verified.get(cache_key)
        if hit is not None:
            if time.monotonic() < hit[0]:
                return hit[1]
            del self._verified[cache_key]
        claims = await self._verify(token, oidc)
        left = float(claims.get("exp", 0)) - time.time()
        if left > 0:
            if len(self._verified) >= VERIFIED_MAX:
                del self._verified[next(iter(self._verified))]
            self._verified[cache_key] = (time.monotonic() + min(VERIFIED_TTL, left), claims)
        return claims

    async def _verify(self, token: str, oidc: Oidc) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise invalid("the bearer token is not a JWT", "TokenMalformed") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise Refusal(
                401,
                "TokenInvalid",
                f"tokens signed with {algorithm!r} are not accepted (only {', '.join(ALGORITHMS[:3])}...)",
                error="invalid_token",
            )
        kid = header.get("kid")
        try:
            key = await self.keys.key(oidc.issuer, kid if isinstance(kid, str) else None)
        except KeysUnavailable as exc:
            raise Refusal(503, "IssuerUnavailable", str(exc)) from None
        if key is None:
            raise Refusal(
                401,
                "TokenInvalid",
                f"the token is not signed by a key of the issuer {oidc.issuer}",
                error="invalid_token",
            )
        return self.decode(token, key, algorithm, oidc)

    def decode(self, token: str, key: jwt.PyJWK, algorithm: str, oidc: Oidc) -> dict[str, Any]:
        try:
            return dict(
                jwt.decode(
                    token,
                    key.key,
                    algorithms=[key.algorithm_name if key.algorithm_name in ALGORITHMS else algorithm],
                    audience=oidc.audience,
                    issuer=oidc.issuer,
                    leeway=self.leeway,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            )
        except jwt.ExpiredSignatureError:
            raise invalid("the token has expired; get a new one", "TokenExpired") from None
        except jwt.InvalidAudienceError:
            raise invalid(f"the token is not meant for audience {oidc.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise invalid(f"the token was not issued by {oidc.issuer}") from None
        except jwt.InvalidSignatureError:
            raise invalid(f"the token's signature does not verify with the keys of {oidc.issuer}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise invalid(f"the token lacks the claim {exc.claim!r}") from None
        except jwt.InvalidTokenError as exc:
            raise invalid(f"the token is not valid: {exc}") from None

    def admit(self, claims: dict[str, Any], oidc: Oidc) -> Caller:
        subject = str(claims.get("sub"))
        raw_groups = claims.get(self.site.groups_claim) or []
        groups = tuple(str(g) for g in raw_groups) if isinstance(raw_groups, list) else (str(raw_groups),)
        caller = Caller(subject=str(claims.get(self.site.username_claim) or subject), groups=groups)
        if not oidc.subjects and not oidc.groups:
            return caller
        if subject in oidc.subjects or oidc.groups.intersection(groups):
            return caller
        wanted = []
        if oidc.groups:
            wanted.append(f"membership in one of the groups {', '.join(sorted(oidc.groups))}")
        if oidc.subjects:
            wanted.append("a subject listed in spec.auth.oidc.allowedSubjects")
        raise Refusal(
            403,
            "NotAllowed",
            f"the token of {caller.subject!r} is valid, but this service needs " + " or ".join(wanted),
            error="insufficient_scope",
        )


def invalid(message: str, reason: str = "TokenInvalid") -> Refusal:
    return Refusal(401, reason, message, error="invalid_token")


def www_authenticate(refusal: Refusal, realm: str) -> str:
    """The `WWW-Authenticate` value of a 401 or 403 (RFC 6750, section 3)."""
    parts = [f'realm="{realm}"']
    if refusal.error:
        description = refusal.message.replace("\\", "").replace('"', "'")
        parts += [f'error="{refusal.error}"', f'error_description="{description}"']
    return "Bearer " + ", ".join(parts)
