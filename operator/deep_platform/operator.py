"""Starting the operator: pre-flight checks, kopf settings, login, the run loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import kopf
import urllib3

from . import controllers
from .api.crdgen import KINDS
from .config import OperatorConfig
from .controllers import runtime
from .kube import CRD, ApiError, Kube
from .progress import receiver as progress_receiver
from .progress.tracker import TRACKER

log = logging.getLogger(__name__)
FIX_CRDS = "deep-platform crds | kubectl apply --server-side -f -"


class PreflightError(Exception):
    """The operator cannot start; the message is one line that says how to fix it."""


def preflight(api: Kube) -> None:
    """Fail fast, in one line, on the two mistakes everybody makes first."""
    try:
        api.request("GET", "/version", timeout=10)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PreflightError(
            f"cannot reach the Kubernetes API at {api.host} ({reason}); "
            "check `kubectl cluster-info` and KUBECONFIG"
        ) from None
    except ApiError as exc:
        raise PreflightError(
            f"the Kubernetes API at {api.host} refused us ({exc.status} {exc.reason}); "
            "check `kubectl auth can-i list customresourcedefinitions`"
        ) from None
    missing = []
    for kind in KINDS:
        try:
            found = api.get(CRD, kind.crd.crd_name)
        except ApiError as exc:
            if exc.status != 403:
                raise
            found = {}  # may not read CRDs: kopf will say if the resources are missing
        if found is None:
            missing.append(kind.crd.crd_name)
    if missing:
        raise PreflightError(
            f"CRDs missing in the cluster: {', '.join(missing)}; install them with `{FIX_CRDS}`"
        )


def connection_info(api: Kube) -> kopf.ConnectionInfo:
    """kopf talks to the same API server, with the same credentials, as our client."""
    cfg = api.configuration
    token = None
    authorization = (cfg.api_key or {}).get("authorization") or (cfg.api_key or {}).get("BearerToken")
    if authorization:
        token = authorization.removeprefix("Bearer ").strip()
    return kopf.ConnectionInfo(
        server=str(cfg.host),
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        token=token,
        scheme="Bearer" if token else None,
    )


def build_registry(api: Kube) -> kopf.OperatorRegistry:
    """kopf's default registry holds our handlers (registered on import); add login/settings."""
    assert controllers.__all__  # imported for its side effect: the handlers are registered
    registry = kopf.get_default_registry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(runtime.current().kube)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        config = runtime.current().config
        settings.execution.max_workers = config.workers
        settings.posting.level = logging.WARNING  # our own Events tell the story
        prefix = "deep-hybrid-datacloud.eu"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=prefix, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{prefix}/operator"
        settings.watching.server_timeout = 300
        # only the platform's children stream to the operator, not every Job and Pod of the cluster
        for resource, selector in controllers.CHILD_SELECTORS.items():
            settings.watching.label_selectors[resource] = selector
        settings.networking.request_timeout = 60

    return registry


_registry_lock = threading.Lock()
_registry: kopf.OperatorRegistry | None = None


def registry_for(api: Kube) -> kopf.OperatorRegistry:
    """Build the registry once per process (kopf handlers register globally)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = build_registry(api)
        return _registry


async def run(
    api: Kube,
    config: OperatorConfig,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    liveness_endpoint: str | None = None,
) -> None:
    """Run kopf until stop_flag is set (or forever)."""
    runtime.configure(runtime.Runtime(kube=api, config=config))
    registry = registry_for(api)
    namespaces = config.namespaces or None
    TRACKER.reset()  # reports belong to this run (a second run in one process, as in tests)
    # the progress endpoint lives here, so one process coalesces the status.progress writes
    if config.progress_port is not None:
        endpoint = progress_receiver.start(api, config.progress_port, config.platform_namespace)
        log.info("progress endpoint on :%d", endpoint.port)
    try:
        await kopf.operator(
            registry=registry,
            standalone=True,
            clusterwide=namespaces is None,
            namespaces=namespaces or [],
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            liveness_endpoint=liveness_endpoint,
        )
    finally:
        progress_receiver.stop()
