"""The authorization code flow with PKCE, from the relying party's side, shared by the web app
(signin/gate.py) and the activator (activator/signin.py): starting a sign-in (state, nonce and
PKCE verifier sealed in a short-lived cookie) and finishing it at the callback (the answer
matched to that cookie, the code exchanged, the ID token verified). Each caller names its own
routes and cookies, and makes its own session of the claims."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .oidc import OidcClient, SignInError, new_secret
from .session import PENDING, CookieSealer

#: how long a started sign-in may take at the issuer
PENDING_SECONDS = 600
#: browsers drop a cookie past 4096 bytes (name and attributes included): refuse rather than loop
MAX_COOKIE_BYTES = 3800


class FlowError(SignInError):
    """A sign-in that cannot finish; `title` heads the page that says so."""

    def __init__(self, title: str, message: str, status: int) -> None:
        super().__init__(message, status)
        self.title = title


@dataclass(frozen=True)
class Started:
    #: the issuer's authorization URL to send the browser to
    url: str
    #: the pending sign-in, sealed: the value of the caller's pending cookie
    pending: str


@dataclass(frozen=True)
class Finished:
    #: the verified ID token's claims
    claims: dict[str, Any]
    #: the local path the sign-in was started from
    next: str


def local_path(value: str | None, default: str) -> str:
    """Where to go after signing in: a path on this site only (no open redirect: `//host`,
    `/\\host` and absolute URLs all fall back to `default`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):  # no header splitting, no tab tricks
        return default
    return value


async def start(oidc: OidcClient, sealer: CookieSealer, redirect_uri: str, next_path: str) -> Started:
    """Raises SignInError when the issuer cannot be reached (discovery)."""
    state, nonce, verifier = new_secret(), new_secret(), new_secret()
    url = await oidc.authorization_url(redirect_uri, state, nonce, verifier)
    pending = {"state": state, "nonce": nonce, "verifier": verifier, "next": next_path}
    return Started(url, sealer.seal(PENDING, pending, PENDING_SECONDS))


async def finish(
    oidc: OidcClient, sealer: CookieSealer, pending_cookie: str | None, query: Mapping[str, str],
    redirect_uri: str, start_again: str
) -> Finished:
    """The claims of the ID token that the issuer's answer (`query`) brings, for the sign-in
    sealed in `pending_cookie`; raises FlowError (or SignInError) with a message that ends, where
    it helps, in `start_again` (e.g. "open the dashboard again to sign in")."""
    pending = sealer.open(PENDING, pending_cookie)
    if pending is None:
        raise FlowError("Sign-in expired", "This sign-in was not started here or took too long; "
                        f"{start_again}.", 400)
    if "error" in query:
        raise FlowError("Sign-in refused", f"The sign-in service answered: {query['error']}", 403)
    if query.get("state") != pending["state"] or not query.get("code"):
        raise FlowError("Sign-in refused", "The answer does not belong to this sign-in (state "
                        f"differs); {start_again}.", 400)
    tokens = await oidc.exchange(query["code"], redirect_uri, pending["verifier"])
    claims = await oidc.verify_id_token(tokens["id_token"], pending["nonce"])
    return Finished(claims, str(pending["next"]))
