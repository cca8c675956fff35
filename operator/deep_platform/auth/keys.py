"""The signing keys of OpenID Connect issuers: discovered, cached, refreshed on rotation.

An issuer's keys are found through `<issuer>/.well-known/openid-configuration` (`jwks_uri`) and
kept for `max_age` seconds. A token signed with a key id not in the cache makes one refetch (a
provider rotated its key), at most once per `refetch_interval` per issuer, so tokens with made-up
key ids cannot turn the activator into a flood of requests to the issuer. Fetches are blocking
(urllib) and meant for a worker thread; `IssuerKeys.key` is the async entry point.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import jwt

log = logging.getLogger(__name__)

#: signatures accepted: asymmetric only (an HMAC one would verify with a public key as secret)
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
#: a discovery document or key set bigger than this is refused
MAX_DOCUMENT = 1024 * 1024
FETCH_TIMEOUT = 5.0


class KeysUnavailable(Exception):
    """The issuer's keys could not be fetched (and none are cached)."""


def fetch_json(url: str, timeout: float = FETCH_TIMEOUT) -> dict[str, Any]:
    if not url.startswith(("https://", "http://")):  # never file: or a custom scheme
        raise KeysUnavailable(f"{url}: only http(s) URLs are fetched")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        data = response.read(MAX_DOCUMENT + 1)
    if len(data) > MAX_DOCUMENT:
        raise KeysUnavailable(f"{url}: larger than {MAX_DOCUMENT} bytes")
    document = json.loads(data)
    if not isinstance(document, dict):
        raise KeysUnavailable(f"{url}: not a JSON object")
    return document


@dataclass
class _Cached:
    keys: dict[str | None, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = 0.0
    attempted_at: float = -1e9
    refetched_at: float = -1e9


class IssuerKeys:
    """Signing keys per issuer URL; thread-safe, one fetch per issuer at a time."""

    def __init__(self, max_age: float = 900.0, refetch_interval: float = 10.0) -> None:
        self.max_age = max_age
        self.refetch_interval = refetch_interval
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        #: fetches made, per issuer (tests and the metrics check caching with it)
        self.fetches: dict[str, int] = {}

    def cached(self, issuer: str, kid: str | None) -> jwt.PyJWK | None:
        """The key if cached and fresh: the hot path, no thread hop."""
        entry = self._cache.get(issuer)
        if entry is None or time.monotonic() - entry.fetched_at > self.max_age:
            return None
        return _pick(entry.keys, kid)

    async def key(self, issuer: str, kid: str | None) -> jwt.PyJWK | None:
        """The key `kid` of `issuer` (None: the issuer has no such key, even after a refetch)."""
        found = self.cached(issuer, kid)
        if found is not None:
            return found
        return await asyncio.to_thread(self.key_blocking, issuer, kid)

    def key_blocking(self, issuer: str, kid: str | None) -> jwt.PyJWK | None:
        with self._guard:
            lock = self._locks.setdefault(issuer, threading.Lock())
        with lock:  # callers waiting here find the keys the first one fetched
            entry = self._cache.setdefault(issuer, _Cached())
            now = time.monotonic()
            stale = now - entry.fetched_at > self.max_age
            found = _pick(entry.keys, kid)
            if found is not None and not stale:
                return found
            if entry.keys and not stale:  # an unknown key id: perhaps rotated, one refetch per interval
                if now - entry.refetched_at < self.refetch_interval:
                    return None
                entry.refetched_at = now
            elif now - entry.attempted_at < self.refetch_interval:  # the last fetch failed moments ago
                if entry.keys:
                    return found
                raise KeysUnavailable(f"the keys of {issuer} could not be fetched; retried shortly")
            entry.attempted_at = now
            try:
                entry.keys = self._fetch(issuer)
                entry.fetched_at = time.monotonic()
            except Exception as exc:
                if not entry.keys:
                    raise KeysUnavailable(f"the keys of {issuer} could not be fetched: {exc}") from exc
                log.warning("refreshing the keys of %s failed (keeping the cached ones): %s", issuer, exc)
            return _pick(entry.keys, kid)

    def _fetch(self, issuer: str) -> dict[str | None, jwt.PyJWK]:
        self.fetches[issuer] = self.fetches.get(issuer, 0) + 1
        discovery = fetch_json(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
        if discovery.get("issuer") != issuer:
            raise KeysUnavailable(
                f"the discovery document names issuer {discovery.get('issuer')!r}, not {issuer!r}"
            )
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise KeysUnavailable(f"the discovery document of {issuer} has no jwks_uri")
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in fetch_json(jwks_uri).get("keys") or []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type or curve this build cannot use: skip it, keep the others
            if key.algorithm_name in ALGORITHMS or "alg" not in entry:
                keys[key.key_id] = key
        log.info("fetched %d signing key(s) of %s", len(keys), issuer)
        return keys


def _pick(keys: dict[str | None, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    if kid is not None:
        return keys.get(kid)
    # no key id in the token: only unambiguous with a single key
    return next(iter(keys.values())) if len(keys) == 1 else None
