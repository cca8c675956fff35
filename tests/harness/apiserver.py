"""A Kubernetes API server emulator for integration tests, benchmarks and RBAC checks.

:class:`ApiServer` extends kmock's ``KubernetesEmulator`` with the semantics an operator relies
on: resourceVersion and conflicts, generation, status and scale subresources, all patch types
including server-side apply, CRD schemas (pruning, defaults, validation, simple CEL rules),
selectors, resumable watches, finalizers and garbage collection. It serves HTTP on 127.0.0.1 from
its own thread and event loop, so synchronous clients, async tests and benchmarks can share it.
See tests/README.md, "Emulator: differences from a real API server".
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import collections
import contextlib
import copy
import json
import logging
import pathlib
import random
import re
import threading
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import aiohttp.web
import kmock
import yaml

from tests.harness import cel_check, patching, schema, selectors, ssa

logger = logging.getLogger(__name__)
T = TypeVar("T")
Obj = dict[str, Any]
GK = tuple[str, str]  # (group, plural): the storage key of a resource type
DEFAULT_NAMESPACES = ("default", "kube-system", "deep-platform")

# Built-in types whose metadata.generation is maintained (the others have none, as in reality).
GENERATION_TYPES = {
    ("", "pods"),
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "networkpolicies"),
    ("policy", "poddisruptionbudgets"),
    ("autoscaling", "horizontalpodautoscalers"),
}
# Scale subresources of the built-ins: (spec replicas, status replicas, selector source).
BUILTIN_SCALE = {
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("", "replicationcontrollers"),
}
# Names that must be DNS-1123 labels rather than subdomains.
LABEL_NAMED = {("", "namespaces"), ("", "services")}
#: the largest request body the real API server reads (its MaxRequestBodyBytes, 3 MiB); aiohttp's
#: own default, 1 MiB, refused a 1.1 MB Module that the real server takes
MAX_REQUEST_BYTES = 3 * 1024 * 1024
#: what a ConfigMap's data and binaryData may hold in all (core validation: 1 MiB)
CONFIGMAP_MAX_BYTES = 1024 * 1024
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "unsupported",
}
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the real name generator: no vowels


class ApiCall(NamedTuple):
    """One resource request as RBAC sees it (non-resource URLs like /apis are not logged)."""

    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    group: str  # "" for the core group
    resource: str  # the plural
    subresource: str  # "" when none
    namespace: str  # "" when cluster-wide or cluster-scoped


class ApiError(Exception):
    """An error answered as a v1 Status object, shaped like the real server's."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


@dataclass
class ResourceType:
    """What the server knows about one resource: naming, scope, subresources and schemas."""

    group: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    versions: list[str]  # served versions, the preferred (storage) one first
    subresources: set[str] = field(default_factory=set)
    verbs: set[str] = field(
        default_factory=lambda: {
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        }
    )
    shortnames: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    schemas: dict[str, schema.Schema] = field(default_factory=dict)  # version -> openAPIV3Schema
    scale_paths: tuple[str, str, str] | None = None  # spec replicas, status replicas, selector
    custom: bool = False

    @property
    def gk(self) -> GK:
        return self.group, self.plural

    @property
    def qualified(self) -> str:
        """``trainingjobs.example.com`` or ``pods``: how errors name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def tracks_generation(self) -> bool:
        return self.custom or self.gk in GENERATION_TYPES

    def api_version(self, version: str | None = None) -> str:
        version = version or self.versions[0]
        return f"{self.group}/{version}" if self.group else version

    def merge_keys(self, version: str | None = None) -> patching.MergeKeys:
        if not self.custom:
            return patching.builtin_merge_keys
        root = self.schemas.get(version or self.versions[0]) or {}

        def keys(path: tuple[str, ...]) -> tuple[str, ...] | None:
            node: Any = root
            for key in path:
                if not isinstance(node, dict):
                    return None
                if node.get("type") == "array":
                    node = node.get("items") or {}
                props = node.get("properties") or {}
                node = props.get(key) if key in props else node.get("additionalProperties")
            if isinstance(node, dict) and node.get("x-kubernetes-list-type") == "map":
                return tuple(node.get("x-kubernetes-list-map-keys") or ()) or None
            return None

        return keys


@dataclass
class Watcher:
    gk: GK
    namespace: str | None
    name: str | None
    predicate: Callable[[Obj], bool]
    queue: asyncio.Queue[tuple[str, Obj] | None]

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        return self.predicate(obj)


@dataclass
class Event:
    rv: int
    gk: GK
    type: str  # ADDED, MODIFIED, DELETED
    old: Obj | None
    new: Obj


def _version_key(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA > beta > alpha, then by number (v2 > v1)."""
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not m:
        return (-1, 0, 0)
    stability = {"alpha": 0, "beta": 1, None: 2}[m.group(2)]
    return (stability, int(m.group(1)), int(m.group(3) or 0))


def _deep_get(obj: Any, dotted: str) -> Any:
    for key in dotted.strip(".").split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _deep_set(obj: Obj, dotted: str, value: Any) -> None:
    keys = dotted.strip(".").split(".")
    for key in keys[:-1]:
        obj = obj.setdefault(key, {})
    obj[keys[-1]] = value


def selector_string(selector: Any) -> str:
    """A LabelSelector object rendered as a selector string (what Scale.status.selector holds)."""
    if isinstance(selector, str) or not isinstance(selector, dict):
        return selector or ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr.get("operator"), expr.get("key"), ",".join(expr.get("values") or [])
        parts.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }.get(op, "")
        )
    return ",".join(p for p in parts if p)


class ApiServer(kmock.KubernetesEmulator):
    """An in-memory kube-apiserver on 127.0.0.1, running in a background thread.

    Use ``with ApiServer.running() as api:`` and point clients at ``api.url``. The helpers
    (:meth:`get`, :meth:`list`, :meth:`create`, :meth:`patch`, :meth:`patch_status`,
    :meth:`apply`, :meth:`delete`, :meth:`load_crds`) are thread-safe and go through the same logic
    as HTTP requests, but are not recorded in :attr:`requests_log`.
    """

    def __init__(self, *, namespaces: Iterable[str] = DEFAULT_NAMESPACES, history: int = 100_000) -> None:
        super().__init__()
        self.resources.load_bundled()  # kopf waits forever without v1/namespaces in discovery
        self.requests_log: list[ApiCall] = []
        # the same calls with the client's User-Agent (components send deep-platform-<name>):
        # the chart's RBAC test reads who made each call from here
        self.calls_by_agent: list[tuple[str, ApiCall]] = []
        self.watch_selectors: list[tuple[str, str, str]] = []  # (User-Agent, plural, labelSelector)
        self.unevaluated_rules: list[str] = []  # CEL rules the tiny evaluator could not run
        self._types: dict[GK, ResourceType] = {}
        self._store: dict[GK, dict[tuple[str, str], Obj]] = collections.defaultdict(dict)
        self._uids: dict[str, tuple[GK, str, str]] = {}
        self._gone_uids: set[str] = set()  # uids of objects deleted for good
        self._rv = 0
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._watchers: list[Watcher] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: aiohttp.web.ServerRunner | None = None
        self._port: int | None = None
        self._register_builtins()
        for name in namespaces:
            self._create(self._types["", "namespaces"], "v1", {"metadata": {"name": name}}, None)

    # --- lifecycle -----------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def running(cls, **kwargs: Any) -> Iterator[ApiServer]:
        server = cls(**kwargs)
        server.start()
        try:
            yield server
        finally:
            server.stop()

    @property
    def url(self) -> str:  # type: ignore[override]
        if self._port is None:
            raise RuntimeError("The API server is not running: call start() or use ApiServer.running().")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("The API server is already running.")
        started = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve_start())
            except BaseException as e:  # reported to the starting thread
                errors.append(e)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._serve_stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"apiserver-{id(self):x}", daemon=True)
        self._thread.start()
        started.wait(timeout=30)
        if errors:
            self._thread.join()
            self._thread = None
            raise RuntimeError("The API server failed to start.") from errors[0]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        self._loop = None
        self._port = None

    async def _serve_start(self) -> None:
        await self.__aenter__()  # kmock's request recording and its stream feeder task
        loop = asyncio.get_running_loop()

        def request(*args: Any) -> aiohttp.web.BaseRequest:  # a request body up to the real limit
            return aiohttp.web.BaseRequest(*args, loop, client_max_size=MAX_REQUEST_BYTES)

        self._runner = aiohttp.web.ServerRunner(
            aiohttp.web.Server(self, request_factory=request), shutdown_timeout=1.0)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self._port = server.sockets[0].getsockname()[1]

    async def _serve_stop(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)  # ends open watch streams, so shutdown is quick
        await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.__aexit__(None, None, None)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the server's loop thread (all state changes happen there)."""
        if self._loop is None or threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        loop = self._loop

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=30)

    # --- resource types ------------------------------------------------------------------------

    def _register_builtins(self) -> None:
        by_gk: dict[GK, list[tuple[str, Any]]] = collections.defaultdict(list)
        for res in self.resources:
            info = self.resources[res]
            if res.group is not None and res.plural and res.version:
                by_gk[res.group, res.plural].append((res.version, info))
        for (group, plural), entries in by_gk.items():
            entries.sort(key=lambda e: _version_key(e[0]), reverse=True)
            info = entries[0][1]
            rt = ResourceType(
                group=group,
                plural=plural,
                kind=info.kind or plural.capitalize(),
                singular=info.singular or (info.kind or plural).lower(),
                namespaced=bool(info.namespaced),
                versions=[v for v, _ in entries],
                subresources=set(info.subresources),
                verbs=set(info.verbs),
                shortnames=sorted(info.shortnames),
                categories=sorted(info.categories),
            )
            if (group, plural) in BUILTIN_SCALE:
                rt.scale_paths = ("spec.replicas", "status.replicas", "spec.selector")
            self._types[rt.gk] = rt

    def _register_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
        versions.sort(key=lambda v: (not v.get("storage", False), [-x for x in _version_key(v["name"])]))
        if not versions:
            return
        sub = versions[0].get("subresources") or spec.get("subresources") or {}
        scale = sub.get("scale")
        rt = ResourceType(
            group=spec["group"],
            plural=names["plural"],
            kind=names["kind"],
            singular=names.get("singular") or names["kind"].lower(),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            versions=[v["name"] for v in versions],
            subresources=set(sub),
            shortnames=list(names.get("shortNames") or []),
            categories=list(names.get("categories") or []),
            schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in versions},
            scale_paths=(
                scale["specReplicasPath"],
                scale["statusReplicasPath"],
                scale.get("labelSelectorPath", ""),
            )
            if scale
            else None,
            custom=True,
        )
        self._types[rt.gk] = rt

    def _unregister_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        gk = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        rt = self._types.pop(gk, None)
        if rt is not None:
            for obj in list(self._store[gk].values()):
                self._remove(rt, obj)

    def _find_type(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self._types.get((group, plural))
        if rt is None or version not in rt.versions:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return rt

    def resolve(self, ref: str) -> ResourceType:
        """Find a resource type by plural, kind, singular, short name, ``plural.group``,
        ``group/version/plural`` or ``version/plural``; the core group wins ties."""
        candidates = sorted(self._types.values(), key=lambda t: (t.group != "", t.group))
        if "/" in ref:
            *gv, plural = ref.split("/")
            group = gv[0] if len(gv) == 2 else ""
            for rt in candidates:
                if rt.group == group and rt.plural == plural:
                    return rt
        low = ref.lower()
        for rt in candidates:
            if low in (rt.plural, rt.kind.lower(), rt.singular, rt.qualified, *rt.shortnames):
                return rt
        raise KeyError(f"Unknown resource: {ref!r}")

    def _type_of(self, obj: Obj) -> tuple[ResourceType, str]:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        group, _, version = api_version.rpartition("/")
        for rt in self._types.values():
            if rt.group == group and rt.kind == kind and version in rt.versions:
                return rt, version
        raise KeyError(f"Unknown resource for apiVersion={api_version!r} kind={kind!r}")

    # --- state changes (always in the loop thread) ---------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, rt: ResourceType, kind: str, old: Obj | None, new: Obj) -> None:
        event = Event(self._rv, rt.gk, kind, old, new)
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.gk == rt.gk and (translated := self._for_watcher(watcher, event)) is not None:
                watcher.queue.put_nowait(translated)

    @staticmethod
    def _for_watcher(watcher: Watcher, event: Event) -> tuple[str, Obj] | None:
        # With selectors, objects entering or leaving the selection become ADDED/DELETED.
        was = event.old is not None and watcher.matches(event.old)
        now = watcher.matches(event.new)
        if event.type == "DELETED":
            return ("DELETED", event.new) if now or was else None
        if now and was:
            return ("MODIFIED", event.new)
        if now:
            return ("ADDED", event.new)
        if was:
            return ("DELETED", event.new)
        return None

    def _invalid(self, rt: ResourceType, name: str, causes: list[schema.Cause]) -> ApiError:
        text = str(causes[0]) if len(causes) == 1 else "[" + ", ".join(str(c) for c in causes) + "]"
        details: Obj = {"name": name, "kind": rt.kind, "causes": [c.as_dict() for c in causes]}
        if rt.group:
            details["group"] = rt.group
        return ApiError(422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: {text}', details)

    @staticmethod
    def _details(rt: ResourceType, name: str) -> Obj:
        details: Obj = {"name": name, "kind": rt.plural}
        if rt.group:
            details["group"] = rt.group
        return details

    def _not_found(self, rt: ResourceType, name: str) -> ApiError:
        return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', self._details(rt, name))

    def _conflict(self, rt: ResourceType, name: str) -> ApiError:
        return ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            self._details(rt, name),
        )

    def _lookup(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        return self._store[rt.gk].get(((namespace or "") if rt.namespaced else "", name))

    def _present(self, rt: ResourceType, version: str, obj: Obj) -> Obj:
        """The object as served through a given version (no conversion: same fields)."""
        api_version = rt.api_version(version)
        return obj if obj.get("apiVersion") == api_version else {**obj, "apiVersion": api_version}

    def _create(
        self,
        rt: ResourceType,
        version: str,
        body: Any,
        namespace: str | None,
        manager: str = "",
        dry_run: bool = False,
        operation: str = "Update",
    ) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            namespace = namespace or body_ns or "default"
            if self._lookup(self._types["", "namespaces"], None, namespace) is None:
                raise ApiError(
                    404,
                    "NotFound",
                    f'namespaces "{namespace}" not found',
                    {"name": namespace, "kind": "namespaces"},
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(GENERATE_ALPHABET, k=5))
        name = meta.get("name") or ""
        if not name:
            raise self._invalid(
                rt,
                "",
                [
                    schema.Cause(
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    )
                ],
            )
        self._check_name(rt, name)
        if self._lookup(rt, namespace, name) is not None:
            raise ApiError(
                409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', self._details(rt, name)
            )
        if rt.namespaced:  # dry runs too: admission runs for them
            self._check_quota(rt, namespace or "", name)
        obj["apiVersion"], obj["kind"] = rt.api_version(version), rt.kind
        for server_set in (
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "generation",
            "creationTimestamp",
        ):
            meta.pop(server_set, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = schema.now_rfc3339()
        if rt.tracks_generation:
            meta["generation"] = 1
        if "status" in rt.subresources and rt.gk != ("", "nodes"):
            obj.pop("status", None)  # status is written through /status only
        if rt.gk == ("", "pods"):
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        if rt.gk == ("apiextensions.k8s.io", "customresourcedefinitions"):
            obj["status"] = self._crd_status(obj)
        obj = self._admit(rt, version, None, obj)
        if operation == "Update":
            meta = obj["metadata"]
            meta["managedFields"] = ssa.record_update(
                None, obj, manager, obj["apiVersion"], "", rt.merge_keys(version)
            )
            if not meta["managedFields"]:
                del meta["managedFields"]
        if dry_run:
            return obj
        return self._commit(rt, None, obj)

    def _check_quota(self, rt: ResourceType, namespace: str, name: str) -> None:
        """Object-count quotas (`count/<plural>.<group>` in a ResourceQuota's spec.hard), as the
        ResourceQuota admission plugin enforces them: one more object than allowed is a 403."""
        resource = f"count/{rt.qualified}"
        quotas = self._types.get(("", "resourcequotas"))
        if quotas is None or rt.gk == quotas.gk:
            return
        for (ns, quota_name), quota in sorted(self._store[quotas.gk].items()):
            hard = ((quota.get("spec") or {}).get("hard") or {}).get(resource)
            if ns != namespace or hard is None:
                continue
            used = sum(1 for (obj_ns, _), _obj in self._store[rt.gk].items() if obj_ns == namespace)
            if used + 1 > int(hard):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{rt.qualified} "{name}" is forbidden: exceeded quota: {quota_name}, requested: '
                    f"{resource}=1, used: {resource}={used}, limited: {resource}={hard}",
                    self._details(rt, name),
                )

    @staticmethod
    def _crd_status(crd: Obj) -> Obj:
        now = schema.now_rfc3339()
        names = (crd.get("spec") or {}).get("names") or {}
        return {
            "acceptedNames": names,
            "storedVersions": [
                v["name"] for v in (crd.get("spec") or {}).get("versions") or [] if v.get("storage")
            ],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
        }

    def _check_name(self, rt: ResourceType, name: str) -> None:
        if rt.gk in LABEL_NAMED:
            if len(name) > 63 or not DNS_LABEL.match(name):
                message = (
                    f"Invalid value: {json.dumps(name)}: a lowercase RFC 1123 label must consist of "
                    "lower case alphanumeric characters or '-', and must start and end with an "
                    "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                )
                raise self._invalid(rt, name, [schema.Cause("FieldValueInvalid", "metadata.name", message)])
        elif len(name) > 253 or not DNS_SUBDOMAIN.match(name):
            message = (
                f"Invalid value: {json.dumps(name)}: a lowercase RFC 1123 subdomain must consist of "
                "lower case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character (e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            )
            raise self._invalid(rt, name, [schema.Cause("FieldValueInvalid", "metadata.name", message)])

    def _admit(self, rt: ResourceType, version: str, old: Obj | None, obj: Obj) -> Obj:
        """Prune, default and validate custom resources against their schema; compile the CEL
        rules of CRDs."""
        if rt.gk == ("apiextensions.k8s.io", "customresourcedefinitions"):
            problems = cel_check.check_crd(obj)
            if problems:
                causes = [schema.Cause("FieldValueInvalid", where, message) for where, message in problems]
                raise self._invalid(rt, obj["metadata"].get("name", ""), causes)
        if rt.gk == ("", "configmaps"):
            self._check_configmap_size(rt, obj)
        if not rt.custom:
            return obj
        root = rt.schemas.get(version) or {}
        if not root:
            return obj
        obj = schema.apply_defaults(schema.prune(obj, root, root=True), root)
        causes = schema.validate(obj, root, old, unevaluated=self._note_unevaluated)
        if causes:
            raise self._invalid(rt, obj["metadata"].get("name", ""), causes)
        return obj

    def _check_configmap_size(self, rt: ResourceType, obj: Obj) -> None:
        """A ConfigMap's keys and values hold at most 1 MiB (core validation, the real wording)."""
        size = 0
        for key, value in (obj.get("data") or {}).items():
            size += len(key) + len(str(value).encode())
        for key, value in (obj.get("binaryData") or {}).items():
            try:
                size += len(key) + len(base64.b64decode(str(value)))
            except ValueError:
                size += len(key) + len(str(value))
        if size > CONFIGMAP_MAX_BYTES:
            cause = schema.Cause("FieldValueTooLong", "[]",
                                 f"Too long: may not be more than {CONFIGMAP_MAX_BYTES} bytes")
            raise self._invalid(rt, obj["metadata"].get("name", ""), [cause])

    def _note_unevaluated(self, rule: str) -> None:
        if rule not in self.unevaluated_rules:
            self.unevaluated_rules.append(rule)
            logger.warning("CEL rule not evaluated by the emulator: %s", rule)

    def _update(
        self,
        rt: ResourceType,
        version: str,
        old: Obj,
        new: Any,
        subresource: str,
        manager: str,
        dry_run: bool = False,
        managed: list[Obj] | None = None,
        check_rv: bool = True,
    ) -> Obj:
        """The write path of PUT, PATCH and apply: subresource rules, admission, no-op detection."""
        if not isinstance(new, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
        new = copy.deepcopy(new)
        meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
        old_meta = old["metadata"]
        name = old_meta["name"]
        if (
            check_rv
            and meta.get("resourceVersion")
            and meta["resourceVersion"] != old_meta.get("resourceVersion")
        ):
            raise self._conflict(rt, name)
        if subresource == "status":
            obj = copy.deepcopy(old)
            if "status" in new:
                obj["status"] = new["status"]
            else:
                obj.pop("status", None)
        else:
            obj = new
            obj["metadata"] = meta
            if "status" in rt.subresources:
                if "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
                else:
                    obj.pop("status", None)
            for immutable in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
                "namespace",
            ):
                if immutable in old_meta:
                    meta[immutable] = old_meta[immutable]
                else:
                    meta.pop(immutable, None)
            if old_meta.get("deletionTimestamp"):
                added = [
                    f for f in meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])
                ]
                if added:
                    raise self._invalid(
                        rt,
                        name,
                        [
                            schema.Cause(
                                "FieldValueForbidden",
                                "metadata.finalizers",
                                f"Forbidden: no new finalizers can be added if the object is being deleted, "
                                f"found new finalizers {json.dumps(added)}",
                            )
                        ],
                    )
        obj["apiVersion"], obj["kind"] = old["apiVersion"], rt.kind
        obj["metadata"]["resourceVersion"] = old_meta.get("resourceVersion")
        obj = self._admit(rt, version, old, obj)
        if rt.tracks_generation:
            # Only spec-like changes count; status too when it is not a subresource of its own.
            ignored = {"metadata", "status"} if "status" in rt.subresources else {"metadata"}
            changed = {k: v for k, v in obj.items() if k not in ignored} != {
                k: v for k, v in old.items() if k not in ignored
            }
            obj["metadata"]["generation"] = old_meta.get("generation", 1) + (1 if changed else 0)
        if managed is not None:
            obj["metadata"]["managedFields"] = managed
        else:
            obj["metadata"]["managedFields"] = ssa.record_update(
                old, obj, manager, obj["apiVersion"], subresource, rt.merge_keys(version)
            )
        if not obj["metadata"]["managedFields"]:
            del obj["metadata"]["managedFields"]
        if obj == old:
            return old  # a no-op write: no new resourceVersion and no watch event, as in reality
        if dry_run:
            return obj
        return self._commit(rt, old, obj)

    def _commit(self, rt: ResourceType, old: Obj | None, obj: Obj) -> Obj:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(rt, obj)
        meta["resourceVersion"] = str(self._next_rv())
        key = (meta.get("namespace", ""), meta["name"])
        self._store[rt.gk][key] = obj
        self._uids[meta["uid"]] = (rt.gk, *key)
        self._emit(rt, "ADDED" if old is None else "MODIFIED", old, obj)
        if rt.gk == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._register_crd(obj)
        refs = meta.get("ownerReferences") or []
        if old is None and refs and all(r.get("uid") in self._gone_uids for r in refs):
            # made for owners already deleted (a controller's late write): the real garbage
            # collector removes it soon after; owners that never existed stay unjudged
            return self._delete(rt, meta.get("namespace"), meta["name"], "Background")
        return obj

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        """Remove an object for good, then collect the garbage it leaves behind."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        current = self._store[rt.gk].pop(key, None)
        self._uids.pop(meta["uid"], None)
        self._gone_uids.add(meta["uid"])
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self._emit(rt, "DELETED", current, obj)
        if rt.gk == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._unregister_crd(obj)
        if rt.gk == ("", "namespaces"):
            for other in list(self._types.values()):
                if other.namespaced:
                    for (ns, _), child in list(self._store[other.gk].items()):
                        if ns == meta["name"] and self._lookup(other, ns, child["metadata"]["name"]):
                            self._remove(other, child)
        self._collect_garbage(meta["uid"])
        self._finish_foreground()
        return obj

    def _dependents(self, uid: str) -> list[tuple[ResourceType, Obj]]:
        found = []
        for gk, objects in self._store.items():
            for obj in list(objects.values()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs):
                    found.append((self._types[gk], obj))
        return found

    def _collect_garbage(self, uid: str) -> None:
        # As the real GC: a dependent goes when all its owners are gone; otherwise it only loses
        # the reference to the deleted owner.
        for rt, child in self._dependents(uid):
            meta = child["metadata"]
            if self._lookup(rt, meta.get("namespace"), meta["name"]) is not child:
                continue  # already removed by an earlier cascade
            refs = meta.get("ownerReferences") or []
            alive = [r for r in refs if r.get("uid") != uid and r.get("uid") in self._uids]
            if alive:
                new = copy.deepcopy(child)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                self._update(rt, rt.versions[0], child, new, "", "garbage-collector", check_rv=False)
            else:
                self._delete(rt, meta.get("namespace"), meta["name"], "Background")

    def _finish_foreground(self) -> None:
        for gk, objects in list(self._store.items()):
            for obj in list(objects.values()):
                meta = obj["metadata"]
                if "foregroundDeletion" in (meta.get("finalizers") or []) and not self._dependents(
                    meta["uid"]
                ):
                    new = copy.deepcopy(obj)
                    new["metadata"]["finalizers"] = [
                        f for f in meta["finalizers"] if f != "foregroundDeletion"
                    ]
                    rt = self._types[gk]
                    self._update(rt, rt.versions[0], obj, new, "", "garbage-collector", check_rv=False)

    def _delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        propagation: str | None,
        preconditions: Obj | None = None,
        dry_run: bool = False,
    ) -> Obj:
        obj = self._lookup(rt, namespace, name)
        if obj is None:
            raise self._not_found(rt, name)
        meta = obj["metadata"]
        preconditions = preconditions or {}
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise ApiError(
                409,
                "Conflict",
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {meta['uid']}",
                self._details(rt, name),
            )
        if (
            preconditions.get("resourceVersion")
            and preconditions["resourceVersion"] != meta["resourceVersion"]
        ):
            raise self._conflict(rt, name)
        if dry_run:
            return obj
        propagation = propagation or "Background"
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise ApiError(400, "BadRequest", f"Unsupported propagationPolicy: {propagation!r}")
        if propagation == "Orphan":
            for child_rt, child in self._dependents(meta["uid"]):
                new = copy.deepcopy(child)
                new["metadata"]["ownerReferences"] = [
                    r for r in child["metadata"]["ownerReferences"] if r.get("uid") != meta["uid"]
                ]
                self._update(
                    child_rt, child_rt.versions[0], child, new, "", "garbage-collector", check_rv=False
                )
        finalizers = list(meta.get("finalizers") or [])
        if (
            propagation == "Foreground"
            and self._dependents(meta["uid"])
            and "foregroundDeletion" not in finalizers
        ):
            finalizers.append("foregroundDeletion")
        if not finalizers:
            return self._remove(rt, obj)
        if meta.get("deletionTimestamp") and finalizers == meta.get("finalizers"):
            return obj  # already being deleted
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = finalizers
        new["metadata"].setdefault("deletionTimestamp", schema.now_rfc3339())
        new["metadata"].setdefault("deletionGracePeriodSeconds", 0)
        result = self._commit(rt, obj, new)
        if propagation == "Foreground":
            for child_rt, child in self._dependents(meta["uid"]):
                cmeta = child["metadata"]
                if self._lookup(child_rt, cmeta.get("namespace"), cmeta["name"]) is child:
                    self._delete(child_rt, cmeta.get("namespace"), cmeta["name"], "Foreground")
            self._finish_foreground()
        return result

    # --- scale subresource ---------------------------------------------------------------------

    def _scale_of(self, rt: ResourceType, obj: Obj) -> Obj:
        assert rt.scale_paths is not None
        spec_path, status_path, selector_path = rt.scale_paths
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": _deep_get(obj, spec_path) or 0},
            "status": {
                "replicas": _deep_get(obj, status_path) or 0,
                **(
                    {"selector": selector_string(_deep_get(obj, selector_path))}
                    if selector_path and _deep_get(obj, selector_path)
                    else {}
                ),
            },
        }

    def _write_scale(self, rt: ResourceType, version: str, old: Obj, scale: Any, manager: str) -> Obj:
        assert rt.scale_paths is not None
        if not isinstance(scale, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a Scale object")
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise self._conflict(rt, old["metadata"]["name"])
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(
                422,
                "Invalid",
                f'Scale.autoscaling "{old["metadata"]["name"]}" is invalid: '
                f"spec.replicas: Invalid value: {json.dumps(replicas)}: must be greater than or "
                "equal to 0",
                {"name": old["metadata"]["name"], "group": "autoscaling", "kind": "Scale"},
            )
        new = copy.deepcopy(old)
        _deep_set(new, rt.scale_paths[0], replicas)
        return self._scale_of(rt, self._update(rt, version, old, new, "", manager, check_rv=False))

    # --- HTTP ----------------------------------------------------------------------------------

    @staticmethod
    def _parse_path(path: str) -> tuple[str, str, str | None, str, str | None, str] | None:
        """(group, version, namespace, plural, name, subresource) of a resource URL, else None."""
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        return group, version, namespace, plural, name, "/".join(rest[2:])

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()
        try:
            request = await kmock.Request._parse(raw_request, id=len(self._requests))
        except ValueError:
            # kmock's URL parser fails on some valid URLs (e.g. /api/v1/namespaces); we parse
            # URLs ourselves, so keep the raw facts of such requests.
            request = kmock.Request(
                id=len(self._requests),
                raw_request=raw_request,
                url=raw_request.url,
                method=raw_request.method,
                params=dict(raw_request.query),
                headers=dict(raw_request.headers),
                body=body,
                text=body.decode(errors="replace"),
            )
        self._requests.append(request)
        try:
            return await self._handle(request)
        except Exception as e:  # a bug in the emulator: answer 500 with the traceback, keep serving
            logger.exception("API server emulator failed on %s %s", raw_request.method, raw_request.path_qs)
            if self._errors:
                self._errors[-1].append(e)
            return self._json(
                ApiError(
                    500,
                    "InternalError",
                    f"emulator error: {e!r}",
                    {"causes": [{"message": traceback.format_exc()}]},
                ).status(),
                500,
            )

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        parsed = self._parse_path(request.url.path)
        try:
            if parsed is None:
                return self._json(self._discovery(request.url.path))
            if request.method == "GET" and request.params.get("watch") in ("true", "1"):
                return await self._watch(request, *parsed)
            status, body = self._dispatch(request, *parsed)
            return self._json(body, status)
        except ApiError as e:
            return self._json(e.status(), e.code)

    @staticmethod
    def _json(body: Any, status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.Response(
            body=json.dumps(body).encode(), status=status, content_type="application/json"
        )

    def _log(self, verb: str, group: str, plural: str, subresource: str, namespace: str | None,
             user_agent: str = "") -> None:
        call = ApiCall(verb, group, plural, subresource, namespace or "")
        self.requests_log.append(call)
        self.calls_by_agent.append((user_agent, call))

    @staticmethod
    def _header(request: kmock.Request, name: str) -> str:
        return next((v for k, v in request.headers.items() if k.lower() == name.lower()), "")

    def _manager(self, request: kmock.Request) -> str:
        """The field manager of a write: ?fieldManager=, else derived from the User-Agent."""
        if request.params.get("fieldManager"):
            return request.params["fieldManager"]
        return self._header(request, "User-Agent").split("/")[0] or "unknown"

    @staticmethod
    def _body(request: kmock.Request, yaml_ok: bool = False) -> Any:
        if not request.body:
            return None
        try:
            return json.loads(request.body)
        except ValueError:
            if yaml_ok:
                try:
                    return yaml.safe_load(request.body)
                except yaml.YAMLError as e:
                    raise ApiError(400, "BadRequest", f"error decoding YAML: {e}") from e
            raise ApiError(400, "BadRequest", "the body of the request is not valid JSON") from None

    def _dispatch(
        self,
        request: kmock.Request,
        group: str,
        version: str,
        namespace: str | None,
        plural: str,
        name: str | None,
        subresource: str,
    ) -> tuple[int, Any]:
        method = request.method.upper()
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }.get(method, method.lower())
        self._log(verb, group, plural, subresource, namespace, self._header(request, "User-Agent"))
        rt = self._find_type(group, version, plural)
        if (not rt.namespaced and namespace is not None) or (rt.namespaced and name and namespace is None):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if rt.namespaced and namespace is None and request.method.upper() not in ("GET",):
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if subresource and subresource not in ("status", "scale"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if subresource and (
            subresource not in rt.subresources or (subresource == "scale" and not rt.scale_paths)
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        dry_run = request.params.get("dryRun") == "All"
        manager = self._manager(request)

        if name is None:
            if method == "GET":
                return 200, self._list(rt, version, namespace, request.params)
            if method == "POST":
                return 201, self._present(
                    rt, version, self._create(rt, version, self._body(request), namespace, manager, dry_run)
                )
            if method == "DELETE":
                items = [o for o in self._select(rt, namespace, request.params)]
                for item in items:
                    meta = item["metadata"]
                    self._delete(
                        rt,
                        meta.get("namespace"),
                        meta["name"],
                        request.params.get("propagationPolicy"),
                        dry_run=dry_run,
                    )
                return 200, self._list_body(rt, version, items)
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )

        obj = self._lookup(rt, namespace, name)
        if method == "GET":
            if obj is None:
                raise self._not_found(rt, name)
            return 200, self._scale_of(rt, obj) if subresource == "scale" else self._present(rt, version, obj)
        if method == "DELETE":
            options = self._body(request) or {}
            policy = request.params.get("propagationPolicy") or options.get("propagationPolicy")
            if options.get("orphanDependents") is True:
                policy = policy or "Orphan"
            return 200, self._present(
                rt, version, self._delete(rt, namespace, name, policy, options.get("preconditions"), dry_run)
            )
        if method == "PUT":
            body = self._body(request)
            if obj is None:
                raise self._not_found(rt, name)
            if isinstance(body, dict) and (body.get("metadata") or {}).get("name") not in (None, name):
                raise ApiError(
                    400,
                    "BadRequest",
                    f"the name of the object ({body['metadata']['name']}) does "
                    f"not match the name on the URL ({name})",
                )
            if subresource == "scale":
                return 200, self._write_scale(rt, version, obj, body, manager)
            return 200, self._present(
                rt, version, self._update(rt, version, obj, body, subresource, manager, dry_run)
            )
        if method == "PATCH":
            return self._patch(request, rt, version, namespace, name, subresource, obj, manager, dry_run)
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    def _patch(
        self,
        request: kmock.Request,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str,
        subresource: str,
        obj: Obj | None,
        manager: str,
        dry_run: bool,
    ) -> tuple[int, Any]:
        content_type = self._header(request, "Content-Type").split(";")[0].strip().lower()
        kind = PATCH_TYPES.get(content_type)
        accepted = [
            t for t, k in PATCH_TYPES.items() if k != "unsupported" and (k != "strategic" or not rt.custom)
        ]
        if kind is None or kind == "unsupported" or (kind == "strategic" and rt.custom):
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - "
                f"accepted media types include: {', '.join(accepted)}",
            )
        body = self._body(request, yaml_ok=kind == "apply")
        if kind == "apply":
            if not request.params.get("fieldManager"):
                raise ApiError(
                    422,
                    "Invalid",
                    "PATCH requests with apply content type (application/apply-patch+yaml) "
                    "must specify fieldManager",
                    {
                        "causes": [
                            {
                                "reason": "FieldValueRequired",
                                "message": "Required value",
                                "field": "fieldManager",
                            }
                        ]
                    },
                )
            force = request.params.get("force") in ("true", "1")
            status = 201 if obj is None else 200
            if obj is None and not subresource:  # kube-apiserver also authorizes this apply as `create`
                agent = self._header(request, "User-Agent")
                self._log("create", rt.group, rt.plural, subresource, namespace, agent)
            result = self._apply(rt, version, namespace, name, body, manager, force, subresource, dry_run)
            return status, self._scale_of(rt, result) if subresource == "scale" else self._present(
                rt, version, result
            )
        if obj is None:
            raise self._not_found(rt, name)
        current = self._scale_of(rt, obj) if subresource == "scale" else self._present(rt, version, obj)
        try:
            if kind == "json":
                patched = patching.json_patch(current, body)
            elif kind == "merge":
                patched = patching.merge_patch(current, body)
            else:
                patched = patching.strategic_merge_patch(current, body, rt.merge_keys(version))
        except patching.PatchError as e:
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {e}",
                self._details(rt, name),
            ) from e
        if subresource == "scale":
            return 200, self._write_scale(rt, version, obj, patched, manager)
        patched_rv = (patched.get("metadata") or {}).get("resourceVersion")
        if patched_rv and patched_rv != obj["metadata"].get("resourceVersion"):
            raise self._conflict(rt, name)  # the patch carried a stale resourceVersion
        return 200, self._present(
            rt, version, self._update(rt, version, obj, patched, subresource, manager, dry_run)
        )

    def _apply(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str,
        body: Any,
        manager: str,
        force: bool,
        subresource: str,
        dry_run: bool = False,
    ) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the applied configuration must be an object")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})",
            )
        if not body.get("apiVersion") or not body.get("kind"):
            raise ApiError(400, "BadRequest", "apiVersion and kind must be set in an applied configuration")
        obj = self._lookup(rt, namespace, name)
        if subresource == "scale":
            raise ApiError(
                415, "UnsupportedMediaType", "apply is not supported on the scale subresource here"
            )
        mk = rt.merge_keys(version)
        if obj is None:
            if subresource:
                raise self._not_found(rt, name)
            fresh = copy.deepcopy(body)
            fresh.setdefault("metadata", {})["name"] = name
            created = self._create(rt, version, fresh, namespace, manager, dry_run=True, operation="Apply")
            _, managed = ssa.server_side_apply(
                {"metadata": {}}, body, manager, created["apiVersion"], "", force, mk
            )
            created["metadata"]["managedFields"] = managed
            return created if dry_run else self._commit(rt, None, created)
        if meta.get("resourceVersion") and meta["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise self._conflict(rt, name)
        current = self._present(rt, version, obj)
        try:
            merged, managed = ssa.server_side_apply(
                current, body, manager, rt.api_version(version), subresource, force, mk
            )
        except patching.ApplyConflict as e:
            causes = [
                {"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": p}
                for m, p in e.conflicts
            ]
            details = {**self._details(rt, name), "causes": causes}
            raise ApiError(409, "Conflict", str(e), details) from e
        return self._update(
            rt, version, obj, merged, subresource, manager, dry_run, managed=managed, check_rv=False
        )

    # --- reading -------------------------------------------------------------------------------

    def _select(self, rt: ResourceType, namespace: str | None, params: Any) -> list[Obj]:
        try:
            by_labels = selectors.label_selector(params.get("labelSelector"))
            by_fields = selectors.field_selector(params.get("fieldSelector"), rt.plural)
        except selectors.SelectorError as e:
            raise ApiError(400, "BadRequest", str(e)) from e
        items = [
            obj
            for (ns, _), obj in sorted(self._store[rt.gk].items())
            if (namespace is None or ns == namespace) and by_labels(obj) and by_fields(obj)
        ]
        return items

    def _list_body(
        self,
        rt: ResourceType,
        version: str,
        items: list[Obj],
        cont: str | None = None,
        remaining: int | None = None,
    ) -> Obj:
        meta: Obj = {"resourceVersion": str(self._rv)}
        if cont:
            meta["continue"] = cont
            meta["remainingItemCount"] = remaining
        return {
            "apiVersion": rt.api_version(version),
            "kind": f"{rt.kind}List",
            "metadata": meta,
            "items": [self._present(rt, version, o) for o in items],
        }

    def _list(self, rt: ResourceType, version: str, namespace: str | None, params: Any) -> Obj:
        items = self._select(rt, namespace, params)
        start = 0
        if params.get("continue"):
            try:
                last = json.loads(base64.urlsafe_b64decode(params["continue"]))
            except ValueError as e:
                raise ApiError(400, "BadRequest", "invalid continue token") from e
            start = next(
                (
                    n
                    for n, o in enumerate(items)
                    if [o["metadata"].get("namespace", ""), o["metadata"]["name"]] > last
                ),
                len(items),
            )
        limit = int(params.get("limit") or 0)
        if limit and start + limit < len(items):
            page = items[start : start + limit]
            last_meta = page[-1]["metadata"]
            token = base64.urlsafe_b64encode(
                json.dumps([last_meta.get("namespace", ""), last_meta["name"]]).encode()
            ).decode()
            return self._list_body(rt, version, page, token, len(items) - start - limit)
        return self._list_body(rt, version, items[start:])

    async def _watch(
        self,
        request: kmock.Request,
        group: str,
        version: str,
        namespace: str | None,
        plural: str,
        name: str | None,
        subresource: str,
    ) -> aiohttp.web.StreamResponse:
        agent = self._header(request, "User-Agent")
        self._log("watch", group, plural, subresource, namespace, agent)
        rt = self._find_type(group, version, plural)
        params = request.params
        self.watch_selectors.append((agent, plural, params.get("labelSelector") or ""))
        try:
            by_labels = selectors.label_selector(params.get("labelSelector"))
            by_fields = selectors.field_selector(params.get("fieldSelector"), rt.plural)
        except selectors.SelectorError as e:
            raise ApiError(400, "BadRequest", str(e)) from e
        queue: asyncio.Queue[tuple[str, Obj] | None] = asyncio.Queue()
        watcher = Watcher(rt.gk, namespace, name, lambda o: by_labels(o) and by_fields(o), queue)
        since = params.get("resourceVersion") or "0"
        replay = (
            since.isdigit()
            and since != "0"
            and ((self._history and int(since) >= self._history[0].rv - 1) or int(since) >= self._rv)
        )
        if since.isdigit() and since != "0" and not replay:
            # older than the history kept: a real server answers 410 and the client lists again
            oldest = self._history[0].rv - 1 if self._history else self._rv
            expired = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"too old resource version: {since} ({oldest})",
                "reason": "Expired",
                "code": 410,
            }
            assert request._raw_request is not None
            response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request._raw_request)
            await response.write(json.dumps({"type": "ERROR", "object": expired}).encode() + b"\n")
            await response.write_eof()
            return response
        if replay:
            for event in self._history:
                if event.rv > int(since) and event.gk == rt.gk and (ev := self._for_watcher(watcher, event)):
                    queue.put_nowait(ev)
        else:  # unknown or "any" version: the current state as ADDED events
            for _, obj in sorted(self._store[rt.gk].items()):
                if watcher.matches(obj):
                    queue.put_nowait(("ADDED", obj))
        self._watchers.append(watcher)
        try:
            assert request._raw_request is not None
            response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request._raw_request)
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
            deadline = asyncio.get_running_loop().time() + timeout if timeout else None
            while True:
                remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if item is None:
                    break
                line = {"type": item[0], "object": self._present(rt, version, item[1])}
                await response.write(json.dumps(line).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return response
        except ConnectionError:
            return aiohttp.web.Response(status=499)  # the client went away; nothing to answer
        finally:
            self._watchers.remove(watcher)

    # --- discovery -----------------------------------------------------------------------------

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, set[str]] = collections.defaultdict(set)
        for rt in self._types.values():
            groups[rt.group].update(rt.versions)
        return {g: sorted(vs, key=_version_key, reverse=True) for g, vs in groups.items()}

    def _discovery(self, path: str) -> Any:
        parts = [p for p in path.strip("/").split("/") if p]
        groups = self._groups()
        if parts == ["version"]:
            return {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0-emulated",
                "gitCommit": "emulated",
                "gitTreeState": "clean",
                "buildDate": "2024-08-13T00:00:00Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if parts == ["api"]:
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
            }
        if parts == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group_doc(g, vs) for g, vs in sorted(groups.items()) if g],
            }
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
            return self._group_doc(parts[1], groups[parts[1]])
        if parts == ["api", "v1"] or (
            len(parts) == 3 and parts[0] == "apis" and parts[2] in groups.get(parts[1], [])
        ):
            group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            return self._resource_list(group, version)
        if not parts:
            return {
                "paths": sorted(
                    {"/api", "/api/v1", "/apis", "/version"}
                    | {f"/apis/{g}/{v}" for g, vs in groups.items() if g for v in vs}
                )
            }
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    @staticmethod
    def _group_doc(group: str, versions: list[str]) -> Obj:
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": gvs,
            "preferredVersion": gvs[0],
        }

    def _resource_list(self, group: str, version: str) -> Obj:
        resources = []
        for rt in sorted(self._types.values(), key=lambda t: t.plural):
            if rt.group != group or version not in rt.versions:
                continue
            resources.append(
                {
                    "name": rt.plural,
                    "singularName": rt.singular,
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": sorted(rt.verbs),
                    "shortNames": rt.shortnames,
                    "categories": rt.categories,
                }
            )
            for sub in sorted(rt.subresources):
                entry = {
                    "name": f"{rt.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
                if sub == "scale":
                    entry.update({"kind": "Scale", "group": "autoscaling", "version": "v1"})
                resources.append(entry)
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    # --- thread-safe helpers for tests ---------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:  # type: ignore[override]
        """The stored object (a deep copy), or None."""

        def run() -> Obj | None:
            obj = self._lookup(self.resolve(resource), namespace, name)
            return copy.deepcopy(obj) if obj is not None else None

        return self._call(run)

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Obj]:
        """Stored objects, optionally in one namespace and filtered by selectors."""
        params = {"labelSelector": label_selector, "fieldSelector": field_selector}
        return self._call(lambda: copy.deepcopy(self._select(self.resolve(resource), namespace, params)))

    def create(self, obj: Obj) -> Obj:
        """Create an object from a manifest (apiVersion and kind pick the resource)."""

        def run() -> Obj:
            rt, version = self._type_of(obj)
            ns = (obj.get("metadata") or {}).get("namespace")
            return copy.deepcopy(self._create(rt, version, obj, ns, "apiserver-test"))

        return self._call(run)

    def patch(  # type: ignore[override]
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str = "",
    ) -> Obj:
        """Patch an object (``merge``, ``json`` or ``strategic``)."""

        def run() -> Obj:
            rt = self.resolve(resource)
            obj = self._lookup(rt, namespace, name)
            if obj is None:
                raise self._not_found(rt, name)
            fn = {
                "merge": patching.merge_patch,
                "json": patching.json_patch,
                "strategic": lambda c, p: patching.strategic_merge_patch(c, p, rt.merge_keys()),
            }[patch_type]
            new = fn(obj, patch)
            return copy.deepcopy(self._update(rt, rt.versions[0], obj, new, subresource, "apiserver-test"))

        return self._call(run)

    def patch_status(self, resource: str, namespace: str | None, name: str, status: Obj) -> Obj:
        """Merge-patch ``.status`` through the status subresource (as a controller or kubelet would)."""
        sub = "status" if "status" in self.resolve(resource).subresources else ""
        return self.patch(resource, namespace, name, {"status": status}, subresource=sub)

    def apply(self, obj: Obj, *, field_manager: str = "apiserver-test", force: bool = True) -> Obj:
        """Server-side apply of a manifest."""

        def run() -> Obj:
            rt, version = self._type_of(obj)
            meta = obj.get("metadata") or {}
            return copy.deepcopy(
                self._apply(
                    rt,
                    version,
                    meta.get("namespace") if rt.namespaced else None,
                    meta["name"],
                    obj,
                    field_manager,
                    force,
                    "",
                )
            )

        return self._call(run)

    def delete(  # type: ignore[override]
        self,
        resource: str,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str = "Background",
    ) -> Obj | None:
        """Delete an object; returns its last state, or None if it did not exist."""

        def run() -> Obj | None:
            rt = self.resolve(resource)
            if self._lookup(rt, namespace, name) is None:
                return None
            return copy.deepcopy(self._delete(rt, namespace, name, propagation_policy))

        return self._call(run)

    @property
    def resource_version(self) -> int:
        """The current global resourceVersion counter."""
        return self._rv

    def load_crds(
        self, sources: str | pathlib.Path | Obj | Iterable[str | pathlib.Path | Obj]
    ) -> builtins.list[Obj]:
        """Register CRDs from YAML files, directories of them, or dicts; returns the CRD objects."""
        items: builtins.list[Any] = (
            [sources] if isinstance(sources, (str, pathlib.Path, dict)) else list(sources)
        )
        crds: builtins.list[Obj] = []
        for item in items:
            if isinstance(item, dict):
                crds.append(item)
                continue
            path = pathlib.Path(item)
            files = sorted(path.rglob("*.y*ml")) if path.is_dir() else [path]
            for file in files:
                for doc in yaml.safe_load_all(file.read_text()):
                    if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                        crds.append(doc)

        def run() -> builtins.list[Obj]:
            rt = self._types["apiextensions.k8s.io", "customresourcedefinitions"]
            result = []
            for crd in crds:
                existing = self._lookup(rt, None, crd["metadata"]["name"])
                if existing is None:
                    result.append(self._create(rt, "v1", crd, None, "apiserver-test"))
                else:
                    result.append(
                        self._update(
                            rt,
                            "v1",
                            existing,
                            {**crd, "metadata": {**crd["metadata"], "resourceVersion": None}},
                            "",
                            "apiserver-test",
                            check_rv=False,
                        )
                    )
            return copy.deepcopy(result)

        return self._call(run)
