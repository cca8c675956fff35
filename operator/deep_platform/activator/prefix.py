"""DEEPaaS behind `/<namespace>/<name>`: the few places its answers name absolute paths.

DEEPaaS knows nothing of the prefix: `/ui` redirects to `/api`, a path without its trailing slash
is redirected (308) to the path with it, the Swagger UI page loads `/static/...` and
`/swagger.json`, and the Swagger 2.0 document has no `basePath`, so "Try it out" would call
`/v2/...` at the root. The activator rewrites exactly these: `Location` headers, the `src`/`href`
attributes and the spec URL of small HTML pages, and the `basePath` of the API document.
Everything else passes untouched (JSON bodies' links stay as DEEPaaS wrote them).
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

#: bodies rewritten only up to this size (the Swagger page is ~1.5 kB, the document ~20 kB)
MAX_REWRITE = 1024 * 1024
SPEC_PATHS = frozenset({"swagger.json", "openapi.json"})
_HTML_PATHS = re.compile(rb"""((?:src|href|action)\s*=\s*["']|\burl:\s*["'])/(?![/])""")


def location(value: str, prefix: str, upstream_hosts: frozenset[str]) -> str:
    """A redirect target inside the service's prefix: `/api` -> `/<ns>/<name>/api`; an absolute
    URL naming the upstream itself becomes a prefixed path; anything else is left alone."""
    if value.startswith("/") and not value.startswith("//"):
        return prefix + value if not value.startswith(prefix + "/") else value
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.netloc in upstream_hosts:
        path = parts.path or "/"
        return prefix + path + (f"?{parts.query}" if parts.query else "")
    return value


def wants_body(tail: str, content_type: str, encoding: str | None) -> bool:
    """Whether a response body is one to rewrite (and so read whole)."""
    if encoding not in (None, "", "identity"):
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "text/html" or (media == "application/json" and tail in SPEC_PATHS)


def body(data: bytes, tail: str, content_type: str, prefix: str) -> bytes:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "text/html":
        encoded = prefix.encode()
        return _HTML_PATHS.sub(lambda m: m.group(1) + encoded + b"/", data)
    try:
        document = json.loads(data)
    except ValueError:
        return data
    if not isinstance(document, dict):
        return data
    if "swagger" in document and not document.get("basePath"):
        document["basePath"] = prefix
    elif "openapi" in document and not document.get("servers"):
        document["servers"] = [{"url": prefix}]
    else:
        return data
    return json.dumps(document).encode()
