"""Sign-in settings of the web app, from the environment (the chart's `web.auth` values set it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

OIDC = "oidc"
#: the dashboard open to anyone who reaches it: only for a private network (docs/signin.md)
NONE_UNSAFE = "none-unsafe"
MODES = (OIDC, NONE_UNSAFE)
#: the shortest cookie key accepted (HMAC-SHA256 wants at least its output size)
MIN_KEY_BYTES = 32


def read_key_file(variable: str, environ: Mapping[str, str]) -> bytes:
    """The cookie key in the file that `variable` names (a mounted Secret); empty when unset."""
    path = environ.get(variable, "").strip()
    if not path:
        return b""
    try:
        return Path(path).read_bytes().strip()
    except OSError as exc:
        raise SettingsError(f"{variable} {path}: {exc.strerror}") from None


class SettingsError(ValueError):
    """A sign-in setting is wrong; the message names the variable (and the chart value)."""


@dataclass(frozen=True)
class SignInSettings:
    mode: str = OIDC
    #: the OIDC issuer URL (no trailing slash); empty in mode oidc: sign-in not configured
    issuer: str = ""
    client_id: str = ""
    #: empty: a public client (PKCE alone proves the code's owner)
    client_secret: str = ""
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    #: claim mapping, as kube-apiserver's --oidc-username-claim and friends
    username_claim: str = "sub"
    #: None: as the API server: "<issuer>#" unless the claim is `email`; "-": no prefix
    username_prefix: str | None = None
    groups_claim: str = "groups"
    groups_prefix: str = ""
    #: HMAC key of the session cookies; every replica must have the same one
    cookie_key: bytes = b""
    #: the URL users reach the web app at (https://deep.example.org); empty: taken from each request
    public_url: str = ""
    session_seconds: int = 8 * 3600
    #: how long a SubjectAccessReview answer is reused
    access_cache_seconds: float = 10.0

    @property
    def configured(self) -> bool:
        return self.mode == NONE_UNSAFE or bool(self.issuer)

    @property
    def effective_username_prefix(self) -> str:
        if self.username_prefix == "-":
            return ""
        if self.username_prefix is not None:
            return self.username_prefix
        return "" if self.username_claim == "email" else f"{self.issuer}#"

    def check(self) -> SignInSettings:
        """Itself, or a SettingsError naming what to set."""
        if self.mode not in MODES:
            raise SettingsError(
                f"DEEP_WEB_AUTH_MODE (web.auth.mode) is {self.mode!r}; use one of {', '.join(MODES)}")
        if self.mode != OIDC or not self.issuer:
            return self
        if not self.issuer.startswith(("https://", "http://")):
            raise SettingsError(f"DEEP_OIDC_ISSUER (web.auth.oidc.issuer) {self.issuer!r} is not a URL")
        if not self.client_id:
            raise SettingsError("DEEP_OIDC_CLIENT_ID (web.auth.oidc.clientId) is empty; set the client "
                                "registered with the issuer")
        if len(self.cookie_key) < MIN_KEY_BYTES:
            raise SettingsError(
                f"the session cookie key (DEEP_WEB_COOKIE_KEY_FILE, from web.auth.cookieSecret) has "
                f"{len(self.cookie_key)} bytes; it needs at least {MIN_KEY_BYTES} random bytes, e.g. "
                "`kubectl create secret generic deep-web-cookie --from-literal=key=$(openssl rand -hex 32)`")
        if "openid" not in self.scopes:
            raise SettingsError("DEEP_OIDC_SCOPES (web.auth.oidc.scopes) must include openid")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SignInSettings:
        def get(name: str, default: str = "") -> str:
            return environ.get(name, default).strip()

        key = read_key_file("DEEP_WEB_COOKIE_KEY_FILE", environ)
        prefix = environ.get("DEEP_OIDC_USERNAME_PREFIX")
        numbers = {}
        for name, default in (("DEEP_WEB_SESSION_SECONDS", "28800"), ("DEEP_WEB_ACCESS_CACHE_SECONDS", "10")):
            try:
                numbers[name] = float(get(name, default) or default)
            except ValueError:
                raise SettingsError(f"{name} is not a number of seconds") from None
        return cls(
            mode=get("DEEP_WEB_AUTH_MODE", OIDC) or OIDC,
            issuer=get("DEEP_OIDC_ISSUER").rstrip("/"),
            client_id=get("DEEP_OIDC_CLIENT_ID"),
            client_secret=get("DEEP_OIDC_CLIENT_SECRET"),
            scopes=tuple(get("DEEP_OIDC_SCOPES", "openid profile email").replace(",", " ").split()),
            username_claim=get("DEEP_OIDC_USERNAME_CLAIM", "sub") or "sub",
            username_prefix=prefix if prefix else None,
            groups_claim=get("DEEP_OIDC_GROUPS_CLAIM", "groups"),
            groups_prefix=get("DEEP_OIDC_GROUPS_PREFIX"),
            cookie_key=key,
            public_url=get("DEEP_WEB_PUBLIC_URL").rstrip("/"),
            session_seconds=int(numbers["DEEP_WEB_SESSION_SECONDS"]),
            access_cache_seconds=numbers["DEEP_WEB_ACCESS_CACHE_SECONDS"],
        ).check()
