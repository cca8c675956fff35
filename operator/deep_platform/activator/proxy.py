"""The activator: a reverse proxy in front of every InferenceService that wakes them from zero.

`/<namespace>/<name>/<path>` goes to `<path>` of the service's DEEPaaS API, only for a service
that exists (routes.py) and only once its token passed the service's policy (gate.py). A request
for a service with no ready endpoint is held (a bounded queue per service) while one shared wake-up
scales the Deployment to one replica and polls its EndpointSlices; then every held request is
forwarded. Bodies stream both ways in chunks. Scaling beyond the wake-up, and back down, is the
scaler's job (scaler.py), done by one activator replica at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from multidict import CIMultiDict

from ..auth import Refusal, SiteAuth
from . import metrics, prefix
from .cluster import Cluster, Failure, utcnow
from .devenv import DEV_ENVIRONMENTS, DevEnvironments
from .devenv import ide_cookies as without_platform_cookies
from .gate import Gate, count_refusal, refusal_headers
from .routes import INFERENCE_SERVICES, Routes, Target
from .signin import NOT_CONFIGURED, BrowserSignIn, Session, SignIn, is_navigation
from .upstream import CHUNK, Pool, UpstreamProtocolError, UpstreamUnreachable

log = logging.getLogger(__name__)
T = TypeVar("T")

#: (namespace, Service name) -> base URL of the service's DEEPaaS API, without a trailing slash
Resolver = Callable[[str, str], str]
#: hop-by-hop headers (RFC 9110 7.6.1) and Host, which the upstream client sets itself
HOP_HEADERS = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
    )
)
#: framing is redone on each hop; Expect: 100-continue is answered by our own server side
REQUEST_DROPPED = HOP_HEADERS | {"content-length", "expect"}
#: a checked token stays with the activator unless the service asks for it (forwardAuthorization)
CREDENTIAL_HEADERS = frozenset({"authorization"})
#: the platform's own cookies (sign-in sessions) never reach a model; other cookies pass
COOKIE = "cookie"
RESPONSE_DROPPED = HOP_HEADERS | {"content-length"}
REQUEST_DROPPED_COOKIE = REQUEST_DROPPED | {COOKIE}
CREDENTIALS_DROPPED = REQUEST_DROPPED_COOKIE | CREDENTIAL_HEADERS


def cluster_resolver(namespace: str, name: str) -> str:
    """The Service's cluster DNS name (the Service is named like the InferenceService, port 80)."""
    return f"http://{name}.{namespace}.svc:80"


def default_identity() -> str:
    """The pod name inside a cluster (POD_NAME from the downward API), else host and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}".lower()


@dataclass
class Settings:
    platform_namespace: str = "deep-platform"
    identity: str = field(default_factory=default_identity)
    #: how long a request may wait for a cold start before it gets 503 + Retry-After
    cold_start_timeout: float = 120.0
    #: requests held per service while it starts; beyond, 503 at once
    queue_limit: int = 1000
    #: the scaler's period: flush lastRequestTime, publish load, decide (as leader)
    tick: float = 1.0
    #: how often a cold start checks for a ready endpoint
    poll_interval: float = 0.02
    #: lifetime of the activator's Leases without renewal
    lease_seconds: int = 10
    #: longest stabilisation window before scaling down (capped by scaleToZeroAfter)
    stabilization: float = 30.0
    retry_after: int = 5
    #: largest request body forwarded (bytes); bigger ones get 413 before reaching the model
    max_body_size: int = 100 * 1024 * 1024
    #: the site's default for services without spec.auth. Open here, for embedding and tests;
    #: `deep-platform activator` and the chart default to required (activator/cli.py)
    auth: SiteAuth = field(default_factory=lambda: SiteAuth(required=False))
    #: the OIDC client for browsers (signin.py); no client id: browsers need a bearer token too
    browser: BrowserSignIn = field(default_factory=BrowserSignIn)


class BodyTooLarge(Exception):
    """A request body without Content-Length grew past the limit while being forwarded."""


@dataclass
class ServiceState:
    """What one activator process knows about one service."""

    namespace: str
    name: str
    ready: bool = False
    in_flight: int = 0
    waiting: int = 0
    #: wall-clock time (time.time()) of the latest request not yet in status.lastRequestTime
    pending_request: float | None = None
    wake: asyncio.Task[Failure | None] | None = None
    #: this service's metric children, looked up once (labels() costs on the hot path)
    latency: Any = None
    in_flight_gauge: Any = None
    counters: dict[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.latency = metrics.LATENCY.labels(self.namespace, self.name)
        self.in_flight_gauge = metrics.IN_FLIGHT.labels(self.namespace, self.name)

    def count(self, code: int) -> None:
        counter = self.counters.get(code)
        if counter is None:
            counter = self.counters[code] = metrics.REQUESTS.labels(self.namespace, self.name, str(code))
        counter.inc()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def load(self) -> int:
        return self.in_flight + self.waiting


class Activator:
    def __init__(self, cluster: Cluster, settings: Settings, resolver: Resolver = cluster_resolver) -> None:
        self.cluster = cluster
        self.settings = settings
        self.resolver = resolver
        self.services: dict[str, ServiceState] = {}
        self.pool: Pool | None = None
        self.is_leader = False
        # InferenceServices first: a name both kinds use stays the InferenceService's
        self.routes = Routes(settings.auth, (INFERENCE_SERVICES, DEV_ENVIRONMENTS))
        self.devenvs = DevEnvironments(cluster, resolver, self.routes)
        self.gate = Gate(cluster, settings.auth)
        self.signin = SignIn(settings.browser, settings.auth, self.gate.checker.keys)

    # --- app -----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.router.add_get("/healthz", self.healthz)
        self.signin.add_routes(app)  # /.auth/...: before /{namespace}/{name}, which would match it
        app.router.add_route("*", "/{namespace}/{name}", self.handle)
        app.router.add_route("*", "/{namespace}/{name}/{tail:.*}", self.handle)
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, _app: web.Application) -> None:
        # no read timeout: predictions on big inputs may take minutes; connects time out (10 s)
        self.pool = Pool()
        self.routes.start(self.cluster.kube, self.cluster.namespaces)
        await asyncio.to_thread(self.routes.wait_listed)

    async def _cleanup(self, _app: web.Application) -> None:
        for state in self.services.values():
            if state.wake is not None:
                state.wake.cancel()
        if self.pool is not None:
            self.pool.close()
        await asyncio.to_thread(self.routes.stop)
        await self.devenvs.close()

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "leader": self.is_leader})

    # --- requests ------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        namespace = request.match_info["namespace"]
        name = request.match_info["name"]
        target = self.routes.get(namespace, name)
        if target is None:  # nothing of that name: no state, no API call, no connection
            metrics.REQUESTS.labels("", "", "404").inc()
            return self._error(
                404, "NotFound", f"no InferenceService or DevEnvironment {name!r} in namespace {namespace!r}"
            )
        refused = await self._admit(request, target)
        if refused is not None:
            return refused
        if target.kind == "DevEnvironment":  # paths kept, WebSockets, the waking page (devenv.py)
            return await self.devenvs.handle(request, target)
        started = time.perf_counter()
        key = f"{namespace}/{name}"
        state = self.services.get(key)
        if state is None:
            state = self.services[key] = ServiceState(namespace, name)
        state.pending_request = time.time()
        code = 500
        try:
            response = await self._serve(request, state, target)
            code = response.status
            return response
        except asyncio.CancelledError:
            code = 499  # the client went away (nginx's convention)
            raise
        finally:
            if code == 404 and state.load == 0 and (state.wake is None or state.wake.done()):
                self.services.pop(key, None)  # unknown services leave no state behind
                metrics.REQUESTS.labels("", "", "404").inc()
            else:
                state.count(code)
                state.latency.observe(time.perf_counter() - started)

    async def _admit(self, request: web.Request, target: Target) -> web.Response | None:
        """None when the request may go on; else the refusal (before any wake-up or queueing).
        A bearer token is checked when sent; else a browser session (signin.py), if any."""
        authorization = request.headers.get("Authorization")
        session = None
        try:
            if authorization is None and not target.policy.public:
                session = self.signin.session(request)
            if session is not None:
                self.gate.check_session(session, target)
            else:
                await self.gate.check(authorization, target)
        except Refusal as refusal:
            count_refusal(target, refusal)
            answer = self._refused(request, refusal, session)
            metrics.REQUESTS.labels(target.namespace, target.name, str(answer.status)).inc()
            return answer
        length = request.content_length
        if length is not None and length > self.settings.max_body_size:
            return self._error(413, "RequestTooLarge", self._too_large(length))
        return None

    def _refused(self, request: web.Request, refusal: Refusal, session: Session | None) -> web.Response:
        """A browser opening a page without a session is sent to sign in; one with a session that
        the policy refuses gets a page; everyone else JSON, as an API client expects."""
        message = refusal.message
        if refusal.reason == "TokenMissing" and is_navigation(request):
            if self.signin.enabled:
                location = self.signin.signin_location(request)
                return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})
            message = f"{message}. {NOT_CONFIGURED}"
        elif session is not None and is_navigation(request):
            page = self.signin.refused_page(refusal.status, message, session)
            page.headers.update(refusal_headers(refusal))
            return page
        return web.json_response(
            {"reason": refusal.reason, "message": message, "code": refusal.status},
            status=refusal.status,
            headers=refusal_headers(refusal),
        )

    def _too_large(self, length: int | None) -> str:
        size = f"{length} bytes" if length is not None else "the request body"
        return (
            f"{size} exceeds the activator's limit of {self.settings.max_body_size} bytes "
            "(--max-body-size, chart activator.maxBodySize)"
        )

    async def _serve(self, request: web.Request, state: ServiceState, target: Target) -> web.StreamResponse:
        for attempt in range(2):
            failure = target.failure
            if not state.ready and failure is not None:  # the watched status says it: no API call
                return self._error(failure.code, failure.reason, failure.message, retry=failure.retry)
            if not state.ready:
                refusal = await self._hold(state)
                if refusal is not None:
                    return refusal
            body_started: list[bool] = []
            try:
                return await self._forward(request, state, target, body_started)
            except BodyTooLarge:
                return self._error(413, "RequestTooLarge", self._too_large(None))
            except UpstreamUnreachable as exc:
                # nothing listens (scaled to zero by another replica since): wake it, once
                state.ready = False
                if body_started or attempt:
                    return self._error(502, "UpstreamUnreachable", f"{state.key}: {exc}")
            except UpstreamProtocolError as exc:
                return self._error(502, "BadUpstreamResponse", f"{state.key}: {exc}")
        return self._error(502, "UpstreamUnreachable", state.key)

    async def _hold(self, state: ServiceState) -> web.StreamResponse | None:
        """Wait for the shared wake-up; None when a ready endpoint exists, else the answer."""
        if state.waiting >= self.settings.queue_limit:
            return self._error(
                503,
                "QueueFull",
                f"{state.waiting} requests already wait for {state.key}; retry later",
                retry=True,
            )
        if state.wake is None or state.wake.done():
            state.wake = asyncio.create_task(self._wake(state), name=f"wake {state.key}")
        state.waiting += 1
        gauge = metrics.QUEUE_DEPTH.labels(state.namespace, state.name)
        gauge.inc()
        try:
            # shield: one waiter timing out or disconnecting must not cancel everyone's wake-up
            failure = await asyncio.wait_for(asyncio.shield(state.wake), self.settings.cold_start_timeout)
        except TimeoutError:
            return self._error(
                503,
                "ModelStarting",
                f"model {state.key} is starting and was not ready within "
                f"{self.settings.cold_start_timeout:g} s; retry in {self.settings.retry_after} s",
                retry=True,
            )
        finally:
            state.waiting -= 1
            gauge.dec()
        if failure is None:
            return None
        return self._error(failure.code, failure.reason, failure.message, retry=failure.retry)

    async def _wake(self, state: ServiceState) -> Failure | None:
        """Scale from zero if needed and wait for a ready endpoint, or for the reason there is none."""
        ns, name = state.namespace, state.name
        ready, failure, exists = await asyncio.to_thread(self.cluster.readiness, ns, name)
        if not exists:
            return Failure(404, "NotFound", f"no InferenceService {name!r} in namespace {ns!r}")
        if ready:
            state.ready = True
            return None
        started = time.perf_counter()
        # the request time goes in first, so the scaler never sees a fresh replica as idle
        await asyncio.to_thread(self.cluster.record, ns, name, last_request=utcnow())
        scaled = await asyncio.to_thread(self.cluster.scale_at_least, ns, name, 1)
        counting: asyncio.Task[None] | None = None
        if scaled:
            metrics.SCALE_EVENTS.labels(ns, name, "wake").inc()
            log.info("woke %s from zero", state.key)
            counting = asyncio.create_task(asyncio.to_thread(self.cluster.record, ns, name, cold_start=True))
        while True:
            await asyncio.sleep(self.settings.poll_interval)
            ready, failure, exists = await asyncio.to_thread(self.cluster.readiness, ns, name)
            if ready:
                state.ready = True
                if scaled:
                    metrics.COLD_START.labels(ns, name).observe(time.perf_counter() - started)
                if counting is not None:
                    with contextlib.suppress(Exception):
                        await counting
                return None
            if not exists:
                return Failure(404, "NotFound", f"InferenceService {ns}/{name} was deleted")
            if failure is not None:
                return failure

    async def _forward(
        self, request: web.Request, state: ServiceState, route: Target, body_started: list[bool]
    ) -> web.StreamResponse:
        assert self.pool is not None
        tail = request.match_info.get("tail", "")
        target = upstream_target(request.raw_path, route.prefix)
        dropped = REQUEST_DROPPED_COOKIE if route.forward_authorization else CREDENTIALS_DROPPED
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in dropped]
        if COOKIE in request.headers:  # never the platform's cookies (signin.py); others pass
            cookies = without_platform_cookies(request.headers.getall(COOKIE))
            if cookies:
                headers.append(("Cookie", cookies))
        headers.append(("X-Forwarded-Host", request.host))
        headers.append(("X-Forwarded-Proto", request.scheme))
        headers.append(("X-Forwarded-Prefix", route.prefix))
        if request.remote:
            headers.append(("X-Forwarded-For", request.remote))
        length = request.content_length
        body: bytes | AsyncIterator[bytes] | None = None
        if not request.body_exists:
            pass
        elif length is not None and length <= CHUNK:
            body = await request.read()  # small: in the same send as the head (and replayable)
        else:
            limit = self.settings.max_body_size

            async def chunks() -> AsyncIterator[bytes]:
                sent = 0
                async for chunk in request.content.iter_chunked(CHUNK):
                    body_started.append(True)
                    sent += len(chunk)
                    if sent > limit:  # no Content-Length was given: cut the upload here
                        raise BodyTooLarge()
                    yield chunk

            body = chunks()

        state.in_flight += 1
        gauge = state.in_flight_gauge
        gauge.inc()
        upstream = None
        try:
            base = self.resolver(route.namespace, route.service)
            upstream = await self.pool.request(request.method, base, target, headers, body, length)
            out = CIMultiDict((k, v) for k, v in upstream.headers if k.lower() not in RESPONSE_DROPPED)
            if "Location" in out:
                origin = self.pool.origin(base)
                hosts = frozenset({f"{origin[0]}:{origin[1]}", origin[0]})
                out["Location"] = prefix.location(out["Location"], route.prefix, hosts)
            rewrite = request.method == "GET" and upstream.status == 200
            if (
                rewrite
                and prefix.wants_body(tail, out.get("Content-Type", ""), out.get("Content-Encoding"))
                and (upstream.length is None or upstream.length <= prefix.MAX_REWRITE)
            ):
                data = await upstream.read()
                if len(data) <= prefix.MAX_REWRITE:
                    data = prefix.body(data, tail, out.get("Content-Type", ""), route.prefix)
                return web.Response(status=upstream.status, reason=upstream.reason, headers=out, body=data)
            if upstream.length is not None and upstream.length <= CHUNK:
                # small answer: one send to the client, as web.Response sets Content-Length
                if upstream.status in (204, 304) or request.method == "HEAD":
                    out.extend((k, v) for k, v in upstream.headers if k.lower() == "content-length")
                    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out)
                    await response.prepare(request)
                    await upstream.read()
                    await response.write_eof()
                    return response
                data = await upstream.read()
                return web.Response(status=upstream.status, reason=upstream.reason, headers=out, body=data)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out)
            if upstream.length is not None:
                response.content_length = upstream.length
            await response.prepare(request)
            async for chunk in upstream.chunks():
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            if upstream is not None:
                upstream.release()  # to the pool if read to the end, else closed
            state.in_flight -= 1
            gauge.dec()
            state.pending_request = time.time()  # a long request keeps the service busy to its end

    def _error(self, code: int, reason: str, message: str, retry: bool = False) -> web.Response:
        headers = {"Retry-After": str(self.settings.retry_after)} if retry else None
        # "error" as before, "reason" as in the status conditions and the auth refusals
        body = {"reason": reason, "error": reason, "message": message, "code": code}
        return web.json_response(body, status=code, headers=headers)

    # --- for the scaler ------------------------------------------------------------------------

    def local_load(self) -> dict[str, int]:
        return {key: state.load for key, state in self.services.items() if state.load}


def upstream_target(raw_path: str, prefix_path: str) -> str:
    """The request target for the model: the raw path after the prefix, with its query, bytes as
    the client sent them (match_info and query_string are decoded: `?text=a b` is no request line)."""
    rest = raw_path[len(prefix_path) :] if raw_path.startswith(prefix_path) else raw_path
    if not rest.startswith("/"):
        rest = "/" + rest
    return rest


def run_loop(main: Coroutine[Any, Any, T], uvloop: bool = True) -> T:
    """asyncio.run, on uvloop when it is installed (its transports roughly halve the proxy's
    per-request cost; figures in docs/serving.md), else on asyncio's own loop."""
    factory = None
    if uvloop:
        try:
            import uvloop as module
        except ImportError:
            pass
        else:
            factory = module.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


async def serve(activator: Activator, host: str, port: int, reuse_port: bool = False) -> web.AppRunner:
    """Start the HTTP server (handlers are cancelled when their client disconnects).
    reuse_port: SO_REUSEPORT, so that several worker processes share the port (the kernel
    spreads the connections over them)."""
    runner = web.AppRunner(activator.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server: Any = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("the activator is not listening")
