"""One small client for every API call the platform makes.

Objects travel as plain dicts (the builders' output), over the official `kubernetes` client's
connection and authentication. Calls are synchronous: kopf runs sync handlers in threads, and
async code calls them through `asyncio.to_thread`.

Every write goes through `apply` (server-side apply with one field manager) or a status/scale
patch, so the RBAC the chart grants can be read off this file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client import ApiClient, Configuration

from .api import GROUP, VERSION
from .api.base import CustomObject

FIELD_MANAGER = "deep-platform"


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name)}"
        if sub:
            base += f"/{sub}"
        return base

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


CONFIGMAP = Kind("v1", "ConfigMap", "configmaps")
SECRET = Kind("v1", "Secret", "secrets")
SERVICE = Kind("v1", "Service", "services")
POD = Kind("v1", "Pod", "pods")
EVENT = Kind("v1", "Event", "events")
NODE = Kind("v1", "Node", "nodes", namespaced=False)
NAMESPACE = Kind("v1", "Namespace", "namespaces", namespaced=False)
JOB = Kind("batch/v1", "Job", "jobs")
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")
ENDPOINTSLICE = Kind("discovery.k8s.io/v1", "EndpointSlice", "endpointslices")
LEASE = Kind("coordination.k8s.io/v1", "Lease", "leases")
CRD = Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False)
PERSISTENTVOLUME = Kind("v1", "PersistentVolume", "persistentvolumes", namespaced=False)
PERSISTENTVOLUMECLAIM = Kind("v1", "PersistentVolumeClaim", "persistentvolumeclaims")

BUILTIN_KINDS = {
    k.kind: k
    for k in (
        CONFIGMAP,
        SECRET,
        SERVICE,
        POD,
        EVENT,
        NODE,
        NAMESPACE,
        JOB,
        DEPLOYMENT,
        ENDPOINTSLICE,
        LEASE,
        CRD,
        PERSISTENTVOLUME,
        PERSISTENTVOLUMECLAIM,
    )
}


def kind_of(model: type[CustomObject[Any, Any]]) -> Kind:
    return Kind(f"{GROUP}/{VERSION}", model.crd.kind, model.crd.plural, model.crd.namespaced)


class ApiError(Exception):
    """An error answer of the API server, with its status code and reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def load_configuration() -> Configuration:
    """In-cluster config inside a pod, else the current kubeconfig context."""
    configuration = Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    return configuration


class Kube:
    """Synchronous, thread-safe access to the API server, objects as dicts."""

    def __init__(self, configuration: Configuration, component: str = "operator") -> None:
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 32)
        self.configuration = configuration
        self._client = ApiClient(configuration)
        # the API server (and the test emulator's request log) tells components apart by this
        self._client.user_agent = f"deep-platform-{component}"

    @property
    def host(self) -> str:
        return str(self.configuration.host)

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        response = self._send(method, path, query, headers, body, timeout)
        data = response.read()
        if response.status >= 400:
            raise _api_error(response.status, response.reason, data)
        return json.loads(data) if data else None

    def _send(
        self, method: str, path: str, query: dict[str, Any] | None, headers: dict[str, str],
        body: Any, timeout: float | tuple[float, float],
    ) -> Any:
        """The response, its body not read yet."""
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        # the generated client signs the request (token, exec plugin refresh) and builds the URL
        method, url, headers, _, _ = self._client.param_serialize(
            method, path, query_params=params, header_params=headers, auth_settings=["BearerToken"]
        )
        return self._client.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)

    # reads

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.request("GET", kind.path(namespace, name))
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def list(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        answer = self.request(
            "GET",
            kind.path(namespace),
            query={"labelSelector": label_selector, "fieldSelector": field_selector},
        )
        return list(answer.get("items") or [])

    def watch(
        self,
        kind: Kind,
        namespace: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
        on_open: Callable[[Any], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Watch events ({"type", "object"}) from resource_version on, until the server ends
        the watch (timeout_seconds) or the stream is shut down (on_open gets the response)."""
        query = {
            "watch": "true",
            "labelSelector": label_selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        accept = {"Accept": "application/json"}
        timeouts = (10, timeout_seconds + 30)  # connect; read: the server ends the watch first
        response = self._send("GET", kind.path(namespace), query, accept, None, timeouts)
        raw = response.response
        if response.status >= 400:
            raise _api_error(response.status, response.reason, response.read())
        if on_open is not None:
            on_open(raw)
        try:
            for line in raw:
                if line.strip():
                    yield json.loads(line)
        finally:
            raw.release_conn()

    # writes

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        """Server-side apply: create or converge the fields this manager owns."""
        kind = self.kind_for(obj)
        meta = obj["metadata"]
        return self.request(
            "PATCH",
            kind.path(meta.get("namespace"), meta["name"]),
            body=obj,
            query={"fieldManager": FIELD_MANAGER, "force": "true" if force else None},
            content_type="application/apply-patch+yaml",
        )

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind = self.kind_for(obj)
        namespace = obj["metadata"].get("namespace")
        return self.request(
            "POST", kind.path(namespace), body=obj, query={"fieldManager": FIELD_MANAGER}
        )

    def patch(
        self, kind: Kind, name: str, namespace: str | None, patch: dict[str, Any], sub: str = ""
    ) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386), on the object or one of its subresources."""
        return self.request(
            "PATCH",
            kind.path(namespace, name, sub),
            body=patch,
            query={"fieldManager": FIELD_MANAGER},
            content_type="application/merge-patch+json",
        )

    def patch_status(
        self, kind: Kind, name: str, namespace: str | None, status: dict[str, Any]
    ) -> dict[str, Any]:
        return self.patch(kind, name, namespace, {"status": status}, sub="status")

    def scale(self, kind: Kind, name: str, namespace: str, replicas: int) -> dict[str, Any]:
        return self.patch(kind, name, namespace, {"spec": {"replicas": replicas}}, sub="scale")

    def delete(self, kind: Kind, name: str, namespace: str | None = None) -> bool:
        """Delete in the background (children follow by garbage collection); False if gone."""
        try:
            self.request(
                "DELETE",
                kind.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
            )
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True

    def kind_for(self, obj: dict[str, Any]) -> Kind:
        api_version, kind = obj["apiVersion"], obj["kind"]
        if kind in BUILTIN_KINDS and BUILTIN_KINDS[kind].api_version == api_version:
            return BUILTIN_KINDS[kind]
        from .api.crdgen import KINDS  # late: crdgen imports every kind

        for model in KINDS:
            if model.crd.kind == kind:
                return kind_of(model)
        raise ValueError(f"unknown kind {api_version}/{kind}")


def _api_error(status: int, reason: str | None, body: bytes | None) -> ApiError:
    """The API server's Status object, as an exception with its reason and message."""
    message = (body or b"").decode("utf-8", "replace")
    try:
        answer = json.loads(message)
        reason, message = answer.get("reason", reason), answer.get("message", message)
    except ValueError:
        pass
    return ApiError(status, str(reason or ""), message)
