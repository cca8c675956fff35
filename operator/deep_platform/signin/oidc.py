"""The relying party's side of OpenID Connect: discovery, the authorization request with PKCE
(S256), the code exchange, and the ID token checked with PyJWT against the issuer's keys, which
come from the same cache as the activator's (`deep_platform.auth.keys`: asymmetric algorithms only,
a rotated key fetched on its first use, at most one refetch per interval)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import urllib.parse
from typing import Any

import aiohttp
import jwt

from ..auth.keys import ALGORITHMS, IssuerKeys, KeysUnavailable
from .settings import SignInSettings

#: how long discovery answers are reused
METADATA_SECONDS = 3600.0
#: clock skew tolerated between the issuer and this app
LEEWAY_SECONDS = 30
#: the key set is reused this long (a retired key is refused after it at the latest)
JWKS_SECONDS = 300
#: a token with an unknown key id fetches the set again at most this often (no fetch storms)
JWKS_REFRESH_COOLDOWN = 10.0


class SignInError(Exception):
    """The sign-in failed; the message is safe to show to the person signing in. `status`: 502
    when the issuer could not be reached, 403 when its answer is refused."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcClient:
    def __init__(self, settings: SignInSettings, refresh_cooldown: float = JWKS_REFRESH_COOLDOWN,
                 keys: IssuerKeys | None = None) -> None:
        self.settings = settings
        self._metadata: dict[str, Any] | None = None
        self._metadata_until = 0.0
        # the set is cached, not single keys (those would outlive their retirement); an unknown
        # kid fetches the set again, at most once per cooldown (key rotation)
        self.keys = keys or IssuerKeys(max_age=JWKS_SECONDS, refetch_interval=refresh_cooldown)
        self._timeout = aiohttp.ClientTimeout(total=10)

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() > self._metadata_until:
            url = f"{self.settings.issuer}/.well-known/openid-configuration"
            try:
                async with aiohttp.ClientSession(timeout=self._timeout) as client, client.get(url) as answer:
                    answer.raise_for_status()
                    metadata = await answer.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise SignInError(f"the sign-in service at {self.settings.issuer} is unreachable "
                                  f"({type(exc).__name__}); try again later", 502) from None
            if metadata.get("issuer") != self.settings.issuer:
                raise SignInError(f"the issuer's discovery document names {metadata.get('issuer')!r}, not "
                                  f"{self.settings.issuer!r} (web.auth.oidc.issuer must match exactly)")
            self._metadata, self._metadata_until = metadata, time.monotonic() + METADATA_SECONDS
        return self._metadata

    async def authorization_url(self, redirect_uri: str, state: str, nonce: str, verifier: str) -> str:
        metadata = await self.metadata()
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.settings.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        return f"{metadata['authorization_endpoint']}?{urllib.parse.urlencode(query)}"

    async def exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        """The token endpoint's answer for an authorization code."""
        metadata = await self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier, "client_id": self.settings.client_id}
        headers = {"Accept": "application/json"}
        if self.settings.client_secret:  # client_secret_basic: both parts form-encoded (RFC 6749 2.3.1)
            pair = (f"{urllib.parse.quote(self.settings.client_id, safe='')}:"
                    f"{urllib.parse.quote(self.settings.client_secret, safe='')}")
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        try:
            async with aiohttp.ClientSession(timeout=self._timeout) as session, session.post(
                metadata["token_endpoint"], data=form, headers=headers
            ) as answer:
                body = await answer.json(content_type=None)
                status = answer.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SignInError(f"the sign-in service's token endpoint failed ({type(exc).__name__})",
                              502) from None
        if status != 200 or not isinstance(body, dict) or "id_token" not in body:
            error = body.get("error", status) if isinstance(body, dict) else status
            raise SignInError(f"the sign-in service refused the code ({error}); sign in again")
        return body

    async def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        metadata = await self.metadata()
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in offered if a in ALGORITHMS]
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
            key = await self.keys.key(self.settings.issuer, kid if isinstance(kid, str) else None)
        except KeysUnavailable as exc:
            raise SignInError(f"the sign-in service's keys could not be fetched ({exc}); try again later",
                              502) from None
        except jwt.InvalidTokenError as exc:
            raise SignInError(f"the ID token was refused: {exc}") from None
        if key is None:
            raise SignInError("the ID token was refused: no signing key of the issuer matches its key id")
        try:
            claims = jwt.decode(
                id_token, key.key, algorithms=algorithms, audience=self.settings.client_id,
                issuer=self.settings.issuer, leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise SignInError(f"the ID token was refused: {exc}") from None
        if not nonce or claims.get("nonce") != nonce:
            raise SignInError("the ID token's nonce does not match this sign-in; sign in again")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.settings.client_id:
            raise SignInError("the ID token was issued to another client (azp)")
        return dict(claims)
