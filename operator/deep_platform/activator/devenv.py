"""DevEnvironments behind the activator: forwarding, the waking page, and sleeping when idle.

Routing and auth are the activator's (routes.py, gate.py): a DevEnvironment is a `Source` of the
routing table, after InferenceServices, so a name both kinds use stays the InferenceService's
(the controller marks such a DevEnvironment NameTaken). After the gate let a request in:

- the IDE serves under `/<namespace>/<name>/` itself, so paths go upstream unchanged, with the
  client's Host (the IDE compares WebSocket Origins with it) and, in place of the caller's own
  credentials, the IDE's generated token (`Authorization: token ...`, which JupyterLab takes);
- WebSocket upgrades are proxied (websocket.py); an open WebSocket counts as activity;
- asleep (no ready endpoint): the request starts the wake-up (replicas 0 -> 1) and is answered
  at once with 503 + Retry-After: for a browser an HTML page that says it is waking and reloads
  itself, for an API client JSON;
- every tick each activator writes status.lastActivityTime of the environments it saw traffic
  for (forward only, at most every `ACTIVITY_WRITE_SECONDS`); the scaler's leader asks each
  awake JupyterLab for busy kernels (`GET api/kernels`, `execution_state == "busy"`: a running
  cell is activity) and scales to zero those idle for spec.idleTimeout. The home claim stays.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import html
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from ..api import DevEnvironment
from ..builders import pod as podparts
from ..builders.devenvironment import TOKEN_KEY, token_secret_name_of
from ..kube import DEPLOYMENT, ApiError, kind_of
from ..readiness import not_starting
from . import metrics, websocket
from .cluster import Cluster, Failure, parse_duration, parse_time, timestamp, utcnow
from .routes import Routes, Source, Target, parsed_auth

log = logging.getLogger(__name__)
DEV = kind_of(DevEnvironment)
KIND = "DevEnvironment"
#: hop-by-hop headers (RFC 9110 7.6.1), and the caller's credentials, which stop at the activator
DROPPED = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "content-length", "authorization"}
)
RESPONSE_DROPPED = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade",
     "content-length"}
)
#: a status write per environment at most this often (an open WebSocket is activity every tick)
ACTIVITY_WRITE_SECONDS = 2.0
#: how long the IDE's token is used before the Secret is read again
TOKEN_TTL = 60.0
#: responses up to this size are read whole and sent at once
SMALL_BODY = 64 * 1024
#: seconds the waking page waits before it reloads
REFRESH_SECONDS = 2
#: an IDE that has not answered yet is given this long before it may be put to sleep
STARTING_GRACE = 600.0
Resolver = Callable[[str, str], str]


def devenvironment_target(obj: dict[str, Any], site: Any) -> Target:
    from ..auth import Policy, policy_for

    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    what = f"DevEnvironment {namespace}/{name}"
    auth, problem = parsed_auth(obj.get("spec") or {}, what)
    policy = Policy(unusable=problem) if problem else policy_for(auth, site, what)
    return Target(KIND, namespace, name, name, policy)


DEV_ENVIRONMENTS = Source(DEV, devenvironment_target)


@dataclass
class EnvState:
    namespace: str
    name: str
    ready: bool = False
    websockets: int = 0
    in_flight: int = 0
    #: wall-clock time of activity not yet in status.lastActivityTime
    pending_activity: float | None = None
    written_at: float = 0.0
    wake: asyncio.Task[Failure | None] | None = None
    token: str | None = None
    token_read_at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


WAKING_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>Waking {name}</title>
<style>body{{font-family:sans-serif;margin:4em auto;max-width:40em;color:#333}}</style>
</head><body>
<h1 id="waking">Waking up {name}&hellip;</h1>
<p>{message}</p>
<p>This page reloads itself every {refresh} seconds; your files in the home folder are kept.</p>
</body></html>
"""


class DevEnvironments:
    """What one activator process does for DevEnvironments."""

    def __init__(self, cluster: Cluster, resolver: Resolver, routes: Routes | None = None,
                 cold_start_timeout: float = 300.0, retry_after: int = REFRESH_SECONDS) -> None:
        self.cluster = cluster
        #: the activator's routing table: no DevEnvironment in it, no idle check (no API call)
        self.routes = routes
        self.resolver = resolver
        self.cold_start_timeout = cold_start_timeout
        self.retry_after = retry_after
        self.states: dict[str, EnvState] = {}
        self.session: aiohttp.ClientSession | None = None

    def state(self, namespace: str, name: str) -> EnvState:
        key = f"{namespace}/{name}"
        found = self.states.get(key)
        if found is None:
            found = self.states[key] = EnvState(namespace, name)
        return found

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                cookie_jar=aiohttp.DummyCookieJar(),  # cookies are the browser's, passed through
            )
        return self.session

    async def close(self) -> None:
        for state in self.states.values():
            if state.wake is not None:
                state.wake.cancel()
        if self.session is not None:
            await self.session.close()

    # --- requests ------------------------------------------------------------------------------

    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        state = self.state(target.namespace, target.name)
        state.pending_activity = time.time()
        code = 500
        try:
            response = await self._serve(request, state, target)
            code = response.status
            return response
        finally:
            metrics.REQUESTS.labels(target.namespace, target.name, str(code)).inc()

    async def _serve(self, request: web.Request, state: EnvState, target: Target) -> web.StreamResponse:
        if not state.ready:
            ready = await asyncio.to_thread(self.cluster.ready_count, state.namespace, state.name)
            if not ready:
                return await self._waking(request, state)
            state.ready = True
        token = await self._token(state)
        base = self.resolver(state.namespace, target.service)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in DROPPED | {"cookie"}]
        cookies = ide_cookies(request.headers.getall("Cookie", []))
        if cookies:
            headers.append(("Cookie", cookies))
        headers += [
            ("X-Forwarded-Host", request.host),
            ("X-Forwarded-Proto", request.scheme),
            ("X-Forwarded-Prefix", target.prefix),
        ]
        if request.remote:
            headers.append(("X-Forwarded-For", request.remote))
        if token:
            headers.append(("Authorization", f"token {token}"))
        url = base + str(request.rel_url)
        state.in_flight += 1
        try:
            if websocket.is_upgrade(request):
                state.websockets += 1
                try:
                    return await websocket.proxy(request, self._session(), url, headers, self._touch(state))
                finally:
                    state.websockets -= 1
            return await self._forward(request, url, headers)
        except aiohttp.ClientConnectorError:
            state.ready = False  # put to sleep by another activator since: wake it
            return await self._waking(request, state)
        finally:
            state.in_flight -= 1
            state.pending_activity = time.time()

    @staticmethod
    def _touch(state: EnvState) -> Callable[[], None]:
        def touched() -> None:
            state.pending_activity = time.time()

        return touched

    async def _forward(
        self, request: web.Request, url: str, headers: list[tuple[str, str]]
    ) -> web.StreamResponse:
        body = request.content if request.body_exists else None
        async with self._session().request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as upstream:
            out = [(k, v) for k, v in upstream.headers.items() if k.lower() not in RESPONSE_DROPPED]
            length = upstream.content_length
            if length is not None and length <= SMALL_BODY and request.method != "HEAD":
                # small (most of the IDE's REST calls): one send to the client
                body_bytes = await upstream.read()
                small = web.Response(status=upstream.status, reason=upstream.reason, body=body_bytes)
                for k, v in out:
                    small.headers.add(k, v)
                return small
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in out:
                response.headers.add(k, v)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _token(self, state: EnvState) -> str | None:
        """The IDE's generated token, from its Secret (re-read after TOKEN_TTL)."""
        if state.token is not None and time.monotonic() - state.token_read_at < TOKEN_TTL:
            return state.token
        secret = await asyncio.to_thread(
            self.cluster.secret, state.namespace, token_secret_name_of(state.name)
        )
        raw = ((secret or {}).get("data") or {}).get(TOKEN_KEY)
        state.token = base64.b64decode(raw).decode() if raw else None
        state.token_read_at = time.monotonic()
        return state.token

    async def _waking(self, request: web.Request, state: EnvState) -> web.StreamResponse:
        """Start the wake-up (once) and answer at once: the page reloads, the client retries."""
        failure: Failure | None = None
        if state.wake is not None and state.wake.done() and not state.wake.cancelled():
            failure = state.wake.result()
        if state.wake is None or state.wake.done():
            state.wake = asyncio.create_task(self._wake(state), name=f"wake {state.key}")
        if failure is not None and failure.code != 503:
            message = failure.message
            code, reason = failure.code, failure.reason
        else:
            message = "The environment was asleep; it is starting now."
            code, reason = 503, "Waking"
        headers = {"Retry-After": str(self.retry_after)}
        if wants_html(request):
            page = WAKING_PAGE.format(
                refresh=self.retry_after, name=html.escape(state.name), message=html.escape(message)
            )
            return web.Response(status=code, text=page, content_type="text/html", headers=headers)
        return web.json_response({"reason": reason, "message": f"{state.key}: {message}", "code": code},
                                 status=code, headers=headers)

    async def _wake(self, state: EnvState) -> Failure | None:
        ns, name = state.namespace, state.name
        # activity first, so the leader never sees the fresh replica as idle
        await asyncio.to_thread(self.record, ns, name, utcnow())
        state.written_at = time.monotonic()
        if await asyncio.to_thread(self.cluster.scale_at_least, ns, name, 1):
            metrics.SCALE_EVENTS.labels(ns, name, "wake").inc()
            log.info("woke DevEnvironment %s", state.key)
        started = time.monotonic()
        checked = 0.0
        while time.monotonic() - started < self.cold_start_timeout:
            await asyncio.sleep(0.2)
            if await asyncio.to_thread(self.cluster.ready_count, ns, name):
                state.ready = True
                metrics.COLD_START.labels(ns, name).observe(time.monotonic() - started)
                return None
            if time.monotonic() - checked > 1.0:
                checked = time.monotonic()
                failure = await asyncio.to_thread(self.failure, ns, name)
                if failure is not None:
                    return failure
        return Failure(503, "Waking", f"not ready within {self.cold_start_timeout:g} s")

    # --- status and scaling ---------------------------------------------------------------------

    def failure(self, namespace: str, name: str) -> Failure | None:
        body = self.cluster.kube.get(DEV, name, namespace)
        if body is None:
            return Failure(404, "NotFound", f"DevEnvironment {namespace}/{name} was deleted")
        for cond in (body.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "False":
                reason = cond.get("reason") or ""
                if reason == "NameTaken":  # an InferenceService holds the path
                    return Failure(409, reason, cond.get("message") or reason)
                retry = not_starting(reason)
                if retry is not None:
                    return Failure(503, reason, cond.get("message") or reason, retry=retry)
        return None

    def record(self, namespace: str, name: str, when: dt.datetime) -> None:
        """Move status.lastActivityTime forward (never back), with the read resourceVersion."""
        for attempt in range(10):
            if attempt:
                time.sleep(random.uniform(0, 0.01 * attempt))  # noqa: S311  # jitter
            body = self.cluster.kube.get(DEV, name, namespace)
            if body is None:
                return
            stored = parse_time((body.get("status") or {}).get("lastActivityTime"))
            if stored is not None and stored >= when:
                return
            patch = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                     "status": {"lastActivityTime": timestamp(when)}}
            try:
                self.cluster.kube.patch(DEV, name, namespace, patch, sub="status")
                return
            except ApiError as exc:
                if exc.not_found:
                    return
                if not exc.conflict:
                    raise

    async def tick(self, leader: bool) -> None:
        """The scaler's turn: write activity; as leader, ask kernels and put idle ones to sleep."""
        now = time.time()
        writes = []
        for state in list(self.states.values()):
            if state.websockets or state.in_flight:
                state.pending_activity = now  # an open WebSocket (a notebook, a terminal) is activity
            if state.pending_activity is None or time.monotonic() - state.written_at < ACTIVITY_WRITE_SECONDS:
                continue
            when = dt.datetime.fromtimestamp(state.pending_activity, dt.UTC)
            state.pending_activity, state.written_at = None, time.monotonic()
            writes.append(asyncio.to_thread(self.record, state.namespace, state.name, when))
        for result in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(result, Exception):
                log.warning("could not write lastActivityTime: %s", result)
        if leader and (self.routes is None or self.routes.by_kind.get(KIND)):
            await self.sleep_idle()

    async def sleep_idle(self) -> None:
        envs, deployments = await asyncio.gather(
            asyncio.to_thread(self._list, DEV, None),
            asyncio.to_thread(self._list, DEPLOYMENT, "devenvironment"),
        )
        by_key = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d for d in deployments}
        for env in envs:
            key = f"{env['metadata']['namespace']}/{env['metadata']['name']}"
            deployment = by_key.get(key)
            if deployment is None or int((deployment.get("spec") or {}).get("replicas", 1)) == 0:
                continue
            try:
                await self._sleep_if_idle(env, deployment)
            except Exception as exc:  # one environment's trouble must not block the others
                log.warning("idle check of %s: %s", key, exc)

    def _list(self, kind: Any, component: str | None) -> list[dict[str, Any]]:
        selector = f"{podparts.LABEL_KIND}={component}" if component else None
        kube = self.cluster.kube
        namespaces = self.cluster.namespaces
        return [item for ns in namespaces for item in kube.list(kind, ns, label_selector=selector)]

    async def _sleep_if_idle(self, env: dict[str, Any], deployment: dict[str, Any]) -> None:
        meta, spec = env["metadata"], env.get("spec") or {}
        ns, name = meta["namespace"], meta["name"]
        state = self.states.get(f"{ns}/{name}")
        if state is not None and (state.websockets or state.in_flight):
            return
        idle_after = parse_duration(str(spec.get("idleTimeout", "1h")))
        # the idle clock starts at the latest of: activity, creation, the Deployment's last change
        # of availability (a wake-up, or the IDE answering); an IDE still starting is not idle
        marks = [parse_time((env.get("status") or {}).get("lastActivityTime")),
                 parse_time(meta.get("creationTimestamp")), available_since(deployment)]
        last = max((mark for mark in marks if mark is not None), default=None)
        if last is None:
            return
        idle_for = (utcnow() - last).total_seconds()
        starting = not int((deployment.get("status") or {}).get("readyReplicas") or 0)
        if idle_for < idle_after or (starting and idle_for < max(idle_after, STARTING_GRACE)):
            return
        if spec.get("ide", "jupyterlab") == "jupyterlab" and await self.kernel_busy(ns, name):
            await asyncio.to_thread(self.record, ns, name, utcnow())  # a running cell is activity
            return
        await asyncio.to_thread(self.cluster.set_replicas, deployment, 0)
        metrics.SCALE_EVENTS.labels(ns, name, "down").inc()
        log.info("DevEnvironment %s/%s asleep after %s idle", ns, name, spec.get("idleTimeout"))
        if state is not None:
            state.ready = False

    async def kernel_busy(self, namespace: str, name: str) -> bool:
        """Whether JupyterLab runs a cell now (its own API, as Kubeflow's culler asks it)."""
        state = self.state(namespace, name)
        token = await self._token(state)
        url = f"{self.resolver(namespace, name)}/{namespace}/{name}/api/kernels"
        headers = {"Authorization": f"token {token}"} if token else {}
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with self._session().get(url, headers=headers, timeout=timeout) as answer:
                if answer.status != 200:
                    return False
                kernels = await answer.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False  # no pod answering: nothing runs
        return any(kernel.get("execution_state") == "busy" for kernel in kernels or [])


def available_since(deployment: dict[str, Any]) -> dt.datetime | None:
    """When the Deployment's `Available` condition last changed (up at a wake-up, or ready)."""
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Available":
            return parse_time(cond.get("lastTransitionTime"))
    return None


#: the platform's own cookies (the web app's sign-in, signin/session.py), which the user code an
#: IDE runs must never see: a visitor of someone's public environment would hand over theirs
PLATFORM_COOKIE_PREFIX = "deep_"


def ide_cookies(headers: list[str]) -> str:
    """The Cookie header for the IDE: every cookie but the platform's own."""
    kept = []
    for header in headers:
        for part in header.split(";"):
            name = part.split("=", 1)[0].strip()
            if name and not name.startswith(PLATFORM_COOKIE_PREFIX):
                kept.append(part.strip())
    return "; ".join(kept)
