"""A local OpenID Connect issuer for tests: discovery, JWKS, authorization code flow with PKCE.

It plays DEEP-IAM (or any OIDC provider) on loopback, so the activator and the web app check real
signed tokens against keys they discover themselves. Tokens are signed with RSA test keys made at
start; `rotate()` publishes a new key (and may retire the old one), as a provider does.

    with OidcIssuer() as issuer:
        token = issuer.mint("alice", audience="deep-platform", groups=["ml"])
        bad = issuer.mint("alice", audience="deep-platform", expires_in=-60)

The authorization endpoint shows a sign-in form (a user name field and a "Sign in" button) that a
browser test fills in; with `auto_login` set, it signs that user in at once. The token endpoint
checks the client, the redirect URI and the PKCE verifier (S256 only), and answers an ID token and
an access token carrying the user's claims.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(secrets.token_hex(8), rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}


@dataclass
class Client:
    client_id: str
    client_secret: str | None
    redirect_uris: list[str]


@dataclass
class PendingCode:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    user: dict[str, Any]
    expires: float


class OidcIssuer:
    """A running issuer on 127.0.0.1; `url` is its issuer identifier (no trailing slash)."""

    def __init__(self, *, groups_claim: str = "groups") -> None:
        self.keys: list[SigningKey] = [SigningKey.generate()]
        self.groups_claim = groups_claim
        self.clients: dict[str, Client] = {}
        #: user name -> extra claims (groups, email...) used when that user signs in
        self.users: dict[str, dict[str, Any]] = {}
        #: sign this user in without showing the form
        self.auto_login: str | None = None
        #: requests per path, so tests can check that keys are cached
        self.requests: Counter[str] = Counter()
        self._codes: dict[str, PendingCode] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # life cycle

    def start(self) -> OidcIssuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OidcIssuer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # set-up by tests

    def add_client(self, client_id: str, redirect_uri: str, client_secret: str | None = None) -> Client:
        client = Client(client_id, client_secret, [redirect_uri])
        self.clients[client_id] = client
        return client

    def add_user(self, name: str, groups: list[str] | None = None, **claims: Any) -> None:
        self.users[name] = {self.groups_claim: list(groups or []), **claims}

    def rotate(self, *, retire_old: bool = False) -> SigningKey:
        """Publish a new signing key (used from now on); drop the old ones if asked."""
        key = SigningKey.generate()
        with self._lock:
            self.keys = [key] if retire_old else [key, *self.keys]
        return key

    @property
    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks",
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code"],
            "scopes_supported": ["openid", "profile", "email", "groups"],
        }

    # tokens

    def mint(
        self,
        subject: str,
        *,
        audience: str | list[str],
        groups: list[str] | None = None,
        expires_in: float = 300,
        issuer: str | None = None,
        key: SigningKey | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with the current key (or `key`, e.g. a foreign one, to test refusals)."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": issuer or self.url,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + int(expires_in),
            **claims,
        }
        if groups is not None:
            payload[self.groups_claim] = groups
        signer = key or self.keys[0]
        return jwt.encode(payload, signer.private, algorithm="RS256", headers={"kid": signer.kid})

    @staticmethod
    def unsigned(payload: dict[str, Any]) -> str:
        """A token with `alg: none` and no signature: every verifier must refuse it."""

        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."

    # the HTTP side

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                issuer.requests[path] += 1
                if path == "/.well-known/openid-configuration":
                    self._json(200, issuer.discovery)
                elif path == "/jwks":
                    with issuer._lock:
                        self._json(200, {"keys": [key.jwk() for key in issuer.keys]})
                elif path == "/authorize":
                    issuer._authorize(self, dict(urllib.parse.parse_qsl(query)))
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                path = self.path.partition("?")[0]
                issuer.requests[path] += 1
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                if path == "/authorize":
                    issuer._authorize(self, form)
                elif path == "/token":
                    status, body = issuer._token(form, self.headers.get("Authorization"))
                    self._json(status, body)
                else:
                    self._json(404, {"error": "not_found"})

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def page(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _authorize(self, handler: Any, params: dict[str, str]) -> None:
        client = self.clients.get(params.get("client_id", ""))
        redirect_uri = params.get("redirect_uri", "")
        if client is None or redirect_uri not in client.redirect_uris:
            handler.page(400, "<h1>unknown client or redirect_uri</h1>")
            return
        if params.get("response_type") != "code" or params.get("code_challenge_method") != "S256":
            handler.page(400, "<h1>response_type=code with PKCE (S256) is required</h1>")
            return
        user = params.get("username") or self.auto_login
        if not user:
            hidden = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in params.items()
            )
            handler.page(
                200,
                "<!doctype html><title>Test issuer: sign in</title><form method=post action=/authorize>"
                f'{hidden}<label>User <input id=username name=username></label>'
                "<button id=signin type=submit>Sign in</button></form>",
            )
            return
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = PendingCode(
                client.client_id,
                redirect_uri,
                params.get("code_challenge", ""),
                params.get("nonce"),
                {"sub": user, **self.users.get(user, {self.groups_claim: []})},
                time.time() + 60,
            )
        query = {"code": code, "state": params.get("state", "")}
        handler.redirect(f"{redirect_uri}?{urllib.parse.urlencode(query)}")

    def _token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        if authorization and authorization.startswith("Basic "):
            client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            unquote = urllib.parse.unquote
            form = {**form, "client_id": unquote(client_id), "client_secret": unquote(secret)}
        with self._lock:
            pending = self._codes.pop(form.get("code", ""), None)
        client = self.clients.get(form.get("client_id", ""))
        if form.get("grant_type") != "authorization_code" or pending is None or pending.expires < time.time():
            return 400, {"error": "invalid_grant"}
        if client is None or client.client_id != pending.client_id:
            return 401, {"error": "invalid_client"}
        if client.client_secret is not None and form.get("client_secret") != client.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("redirect_uri") != pending.redirect_uri:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or digest != pending.challenge:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verifier does not match"}
        claims = dict(pending.user)
        subject = claims.pop("sub")
        extra = {"nonce": pending.nonce} if pending.nonce else {}
        id_token = self.mint(subject, audience=client.client_id, **claims, **extra)
        access_token = self.mint(subject, audience=client.client_id, **claims)
        return 200, {
            "access_token": access_token,
            "id_token": id_token,
            "token_type": "Bearer",
            "expires_in": 300,
        }
