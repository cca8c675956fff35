"""Bad input on a real API server (issue #12, point 7).

Each example of examples/ is mutated field by field (wrong types, empty strings, leading spaces,
negative numbers, unknown enum values, too long names, bad quantities and durations, missing
fields, unknown fields, broken env/storage/resources/tolerations entries) and every mutant is
sent to the real server, with the real operator running. A malformed manifest must be either
refused by the server with a message naming the field, or accepted and flagged at once in its
status (a False condition, or the phase's message, naming the field). Mutants that are valid
after all must be accepted. The operator logs no traceback for any of them. `deep-platform
validate` passes the valid mutants, and names the field of each malformed one it finds.

Everything is batched: all mutants are created, then their statuses polled together.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from deep_platform import kube as k
from deep_platform import offline
from deep_platform.api import DevEnvironment, InferenceService, Module, TrainingJob
from tests.e2e.conftest import example
from tests.harness.node_kubelet import NodeKubelet

pytestmark = pytest.mark.timeout(600)

MODELS: dict[str, Any] = {"Module": Module, "TrainingJob": TrainingJob, "InferenceService": InferenceService,
                          "DevEnvironment": DevEnvironment}
KINDS = {name: k.kind_of(model) for name, model in MODELS.items()}
MODULE = KINDS["Module"]
#: the namespaced kinds and the example each one's mutants start from
EXAMPLES = {"TrainingJob": "trainingjob.yaml", "InferenceService": "inferenceservice.yaml",
            "DevEnvironment": "devenvironment.yaml"}

#: subtrees of free-form values: not mutated (Module metadata has a condition of its own,
#: hyperparameter values are the model's business)
FREE_FORM = {("spec", "metadata"), ("spec", "hyperparameters")}
QUANTITY_FIELDS = {"cpu", "memory", "ephemeralStorage", "minMemory", "divisor", "size"}
DURATION_FIELDS = {"scaleToZeroAfter", "idleTimeout"}
ENUM_FIELDS = {"mode", "operator", "effect", "ide"}
#: (kind, field, mutation) that are valid after all: accepted, never flagged
VALID = {
    ("TrainingJob", "remotePath", "too-long"),  # a folder name, any length
    ("TrainingJob", "remotePath", "empty"),  # the server's root folder
    ("TrainingJob", "remotePath", "leading-space"),  # folder names may start or end with a space
    ("TrainingJob", "remotePath", "trailing-space"),
    ("TrainingJob", "activeDeadlineSeconds", "huge"),  # an int64 for the Job: 31,700 years
    *(("DevEnvironment", "remotePath", why)  # the same folder names as a training's
      for why in ("too-long", "empty", "leading-space", "trailing-space")),
}


@dataclass
class Case:
    id: str
    kind: str
    body: dict[str, Any]
    field: str  # the name the message must contain
    malformed: bool


def walk(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    if path[:2] in FREE_FORM:
        return
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


def put(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return body


def drop(body: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return body


def leaf_mutations(name: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(mutation id, bad value) for one field."""
    if isinstance(value, bool):
        yield "string-for-bool", "maybe"
        yield "int-for-bool", 3
    elif isinstance(value, (int, float)):
        yield "negative", -1
        yield "string-for-number", "many"
        yield "object-for-number", {"a": 1}
        if name not in QUANTITY_FIELDS:
            yield "huge", 10**12
    elif isinstance(value, str):
        yield "empty", ""
        yield "leading-space", " " + value
        yield "trailing-space", value + " "
        yield "too-long", "a" * 600
        if name not in QUANTITY_FIELDS:  # a plain number is a quantity too
            yield "number-for-string", 42
        yield "list-for-string", [value]
    elif isinstance(value, dict):
        yield "string-for-object", "oops"
        yield "list-for-object", [value]
    elif isinstance(value, list):
        yield "string-for-list", "oops"
        yield "object-for-list", {"a": value}
    if name in QUANTITY_FIELDS:
        yield "bad-quantity", "lots"
        yield "negative-quantity", "-2Gi"
        yield "spaced-quantity", "2 Gi"
    if name in DURATION_FIELDS:
        yield "bad-duration", "10 minutes"
        yield "unitless-duration", "10"
        yield "negative-duration", "-5m"
    if name in ENUM_FIELDS:
        yield "unknown-enum", "Sideways"


#: extra entries for lists the examples leave empty or short: (field, list path, bad item)
ENV_ITEMS: list[tuple[str, dict[str, Any]]] = [
    ("secretKeyRef", {"name": "A", "valueFrom": {"secretKeyRef": "oops"}}),
    ("key", {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}),
    ("name", {"name": "A", "valueFrom": {"secretKeyRef": {"key": "k"}}}),
    ("valueFrom", {"name": "A", "valueFrom": {}}),
    ("valueFrom", {"name": "A", "valueFrom": {"bogus": {"a": 1}}}),
    (
        "valueFrom",
        {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {
            "name": "s", "key": "k"}}},
    ),
    ("valueFrom", {"name": "A", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
    ("fieldPath", {"name": "A", "valueFrom": {"fieldRef": {}}}),
    ("resource", {"name": "A", "valueFrom": {"resourceFieldRef": {"divisor": "1Mi"}}}),
    ("divisor", {"name": "A", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                 "divisor": "lots"}}}),
    ("configMapKeyRef", {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "Bad Name", "key": "k"}}}),
    ("name", {"name": "", "value": "v"}),
    ("name", {"name": "1 bad", "value": "v"}),
    ("name", {"value": "v"}),
    ("value", {"name": "A", "value": 5}),
]
TOLERATION_ITEMS: list[tuple[str, dict[str, Any]]] = [
    ("operator", {"key": "k", "operator": "Maybe"}),
    ("effect", {"key": "k", "effect": "Sometimes"}),
    ("tolerationSeconds", {"key": "k", "effect": "NoExecute", "tolerationSeconds": "soon"}),
    ("value", {"key": "k", "operator": "Exists", "value": "v"}),
    ("key", {"key": "bad key!", "operator": "Exists"}),
    ("operator", {"operator": "Equal", "value": "v"}),
]
STORAGE_ITEM = {
    "name": "extra",
    "url": "https://example.org/remote.php/webdav",
    "secretRef": {"name": "nextcloud-credentials"},
    "mountPath": "/srv/extra",
}
STORAGE_ITEMS: list[tuple[str, dict[str, Any] | list[dict[str, Any]]]] = [
    ("url", {**STORAGE_ITEM, "url": "ftp://example.org/x"}),
    ("url", {**STORAGE_ITEM, "url": "https://alice:secret@example.org/x"}),
    ("mountPath", {**STORAGE_ITEM, "mountPath": "relative/path"}),
    ("name", {**STORAGE_ITEM, "name": "Data"}),
    ("secretRef", {**STORAGE_ITEM, "secretRef": {}}),
    ("mode", {**STORAGE_ITEM, "mode": "sync"}),
    ("url", {k_: v for k_, v in STORAGE_ITEM.items() if k_ != "url"}),
    ("name", [STORAGE_ITEM, STORAGE_ITEM]),  # twice the same name
    ("mountPath", [STORAGE_ITEM, {**STORAGE_ITEM, "name": "other"}]),  # twice the same path
]
NODE_SELECTORS: list[tuple[str, dict[str, Any]]] = [
    ("nodeSelector", {"bad key!": "v"}),
    ("nodeSelector", {"k": " bad value"}),
    ("nodeSelector", {"k": 3}),
]


def model_accepts(kind: str, body: dict[str, Any]) -> bool:
    try:
        MODELS[kind].from_body(copy.deepcopy(body))
    except ValueError:
        return False
    return True


def examples_of(module: dict[str, Any], namespace: str) -> dict[str, dict[str, Any]]:
    """The valid manifests the mutants start from, per kind, using `module`."""
    bases = {"Module": module}
    for kind, file in EXAMPLES.items():
        body = example(file, namespace)
        body["spec"]["module"] = module["metadata"]["name"]
        bases[kind] = body
    # the DevEnvironment's storage Secret the test makes, and an auth subtree to mutate too
    dev = bases["DevEnvironment"]["spec"]
    for mount in dev.get("storage", []):
        mount["secretRef"] = {"name": "nextcloud-credentials"}
    dev.setdefault("auth", {"oidc": {"allowedGroups": ["plankton-team"]}})
    return bases


def generate(bases: dict[str, dict[str, Any]]) -> list[Case]:
    cases: list[Case] = []

    def add(kind: str, what: str, body: dict[str, Any], field: str, malformed: bool | None = None) -> None:
        if malformed is None:
            malformed = not model_accepts(kind, body)
        cases.append(Case(f"{kind}:{what}", kind, body, field, malformed))

    for kind, base in bases.items():
        for path, value in walk(base["spec"], ("spec",)):
            name = str(next(p for p in reversed(path) if isinstance(p, str)))
            dotted = ".".join(str(p) for p in path)
            if path != ("spec",):
                for mutation, bad in leaf_mutations(name, value):
                    add(kind, f"{dotted}={mutation}", put(base, path, bad), name,
                        (kind, name, mutation) not in VALID)
                if isinstance(path[-1], str):
                    # a missing field: malformed exactly when the model requires it
                    add(kind, f"{dotted}=missing", drop(base, path), name)
            if isinstance(value, dict):
                unknown = put(base, (*path, "bogusField"), 1)
                add(kind, f"{dotted}.bogusField=unknown", unknown, "bogusField", True)
        for mutation, bad in [("empty", ""), ("upper-case", "Bad_Name"), ("too-long", "a" * 300)]:
            add(kind, f"metadata.name={mutation}", put(base, ("metadata", "name"), bad), "name", True)
        add(kind, "metadata.labels=bad-value", put(base, ("metadata", "labels"), {"a": " b"}), "labels", True)
        if kind == "Module":
            continue
        for index, (field, item) in enumerate(ENV_ITEMS):
            add(kind, f"spec.env[{index}]={field}", put(base, ("spec", "env"), [item]), field, True)
        twice = put(base, ("spec", "env"), [{"name": "A", "value": "1"}] * 2)
        add(kind, "spec.env=duplicate", twice, "env", True)
        for index, (field, item) in enumerate(TOLERATION_ITEMS):
            add(kind, f"spec.tolerations[{index}]={field}", put(base, ("spec", "tolerations"), [item]), field,
                True)
        for index, (field, entries) in enumerate(STORAGE_ITEMS):
            extra = entries if isinstance(entries, list) else [entries]
            storage = [*copy.deepcopy(base["spec"].get("storage", [])), *extra]
            add(kind, f"spec.storage[{index}]={field}", put(base, ("spec", "storage"), storage), field, True)
        for index, (field, item) in enumerate(NODE_SELECTORS):
            add(kind, f"spec.nodeSelector[{index}]", put(base, ("spec", "nodeSelector"), item), field, True)
        gpu: dict[str, Any] = {"count": 1}
        for field, bad in [("count", -1), ("count", "two"), ("migProfile", "big"), ("minMemory", "lots"),
                           ("product", "x" * 200)]:
            resources = {**(base["spec"].get("resources") or {}), "gpu": {**gpu, field: bad}}
            add(kind, f"spec.resources.gpu.{field}={bad!s:.10}", put(base, ("spec", "resources"), resources),
                field, True)
        upper = put(base, ("spec", "image"), "Ai4oshub/Phyto:latest")
        add(kind, "spec.image=upper-case", upper, "image", True)
        add(kind, "spec.image=digest-short", put(base, ("spec", "image"), "a/b@sha256:12"), "image", True)
    tj = bases["TrainingJob"]
    for index, hp in enumerate([{"": 1}, {"--x": 1}, {"a b": 1}, {"x=y": 1}]):
        add("TrainingJob", f"spec.hyperparameters[{index}]", put(tj, ("spec", "hyperparameters"), hp),
            "hyperparameters", True)
    with_command = put(tj, ("spec", "command"), ["python"])
    add("TrainingJob", "spec.command+hyperparameters", with_command, "command", True)
    add("TrainingJob", "spec.nonRetryableExitCodes=0", put(tj, ("spec", "nonRetryableExitCodes"), [0]),
        "nonRetryableExitCodes", True)
    isvc = bases["InferenceService"]
    scaling = isvc["spec"]["scaling"]
    add("InferenceService", "spec.scaling=min>max", put(isvc, ("spec", "scaling"), {
        **scaling, "minReplicas": 5, "maxReplicas": 2}), "minReplicas", True)
    add("InferenceService", "spec.scaling.maxReplicas=0", put(isvc, ("spec", "scaling"), {
        **scaling, "minReplicas": 0, "maxReplicas": 0}), "maxReplicas", True)
    for kind in ("TrainingJob", "InferenceService"):
        neither = drop(drop(bases[kind], ("spec", "module")), ("spec", "image")) if "image" in bases[
            kind]["spec"] else drop(bases[kind], ("spec", "module"))
        add(kind, "spec=no-module-no-image", neither, "module", True)
    dev = bases["DevEnvironment"]
    add("DevEnvironment", "spec.auth=public+oidc", put(dev, ("spec", "auth"), {
        **dev["spec"]["auth"], "public": True}), "public", True)
    add("DevEnvironment", "spec.home.storageClassName=upper-case",
        put(dev, ("spec", "home"), {**dev["spec"]["home"], "storageClassName": "Fast SSD"}),
        "storageClassName", True)
    for kind in ("InferenceService", "DevEnvironment"):  # the name is its Service's: a DNS label
        add(kind, "metadata.name=dotted", put(bases[kind], ("metadata", "name"), "a.b"), "name", True)
        add(kind, "metadata.name=64-chars", put(bases[kind], ("metadata", "name"), "a" * 64), "name", True)
    return cases


class Tracebacks(logging.Handler):
    """Every record logged with a traceback, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback (most recent call last)" in record.getMessage():
            self.records.append(record)


@pytest.fixture
def tracebacks() -> Iterator[Tracebacks]:
    handler = Tracebacks()
    loggers = [logging.getLogger(), logging.getLogger("kopf")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def send(api: k.Kube, case: Case) -> tuple[bool, str]:
    """Create with strict field validation, as kubectl does: (accepted, the server's message)."""
    kind = KINDS[case.kind]
    namespace = case.body["metadata"].get("namespace")
    try:
        api.request("POST", kind.path(namespace), body=case.body,
                    query={"fieldManager": "e2e", "fieldValidation": "Strict"})
    except k.ApiError as exc:
        return False, exc.message
    return True, ""


def flag(body: dict[str, Any] | None) -> str | None:
    """What the status says is wrong (False conditions' reasons and messages), else None."""
    status = (body or {}).get("status") or {}
    said = [f"{c.get('type')}={c.get('reason')}: {c.get('message')}" for c in status.get("conditions") or []
            if c.get("status") == "False" and c.get("type") in ("Ready", "MetadataValid")]
    return " | ".join(said) or None


def offline_problems(cases: list[Case], folder: Path) -> list[str]:
    """`deep-platform validate` on each case: a valid one passes, and where it finds a problem
    in a malformed one, it names the field. (It checks the models, not the CRDs' CEL rules and
    list keys, which only the server applies: those cases it lets through.)"""
    found: list[str] = []
    for index, case in enumerate(cases):
        path = folder / f"case-{index}.yaml"
        path.write_text(yaml.safe_dump(case.body), encoding="utf-8")
        said = offline.validate([path])
        if said and not case.malformed:
            found.append(f"{case.id}: valid, but deep-platform validate says {said}")
        elif said and not any(case.field in line for line in said):
            found.append(f"{case.id}: deep-platform validate does not name {case.field}: {said}")
    return found


def test_malformed_manifests_are_refused_or_flagged(
    e2e_operator: Any, namespace: str, node_kubelet: NodeKubelet, tracebacks: Tracebacks, tmp_path: Path
) -> None:
    api = e2e_operator.kube
    suffix = uuid.uuid4().hex[:6]
    module = example("module.yaml")
    module["metadata"]["name"] = f"phyto-{suffix}"
    module["metadata"]["labels"] = {**module["metadata"].get("labels", {}), "e2e-bad-input": suffix}
    api.create(module)
    api.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nextcloud-credentials",
                "namespace": namespace}, "stringData": {"user": "alice", "password": "token"}})
    cases = generate(examples_of(module, namespace))
    try:
        # names: one per case, the generated one kept where the case is about the name
        for index, case in enumerate(cases):
            meta = case.body["metadata"]
            if "metadata.name=" not in case.id:
                meta["name"] = f"bad-{suffix}-{index}" if case.kind == "Module" else f"bad-{index}"
            if case.kind == "Module":
                meta.setdefault("labels", {})["e2e-bad-input"] = suffix
        started = time.monotonic()
        sent = [(case, *send(api, case)) for case in cases]
        problems = offline_problems(cases, tmp_path)
        waiting: dict[tuple[str, str], Case] = {}
        for case, accepted, message in sent:
            if not accepted:
                if not case.malformed:
                    problems.append(f"{case.id}: valid, but refused: {message[:300]}")
                elif case.field not in message:
                    problems.append(f"{case.id}: refused without naming {case.field}: {message[:300]}")
            elif case.malformed:
                waiting[(case.kind, case.body["metadata"]["name"])] = case
        # accepted malformed ones: flagged in their status within a few seconds
        deadline = time.monotonic() + 20
        said: dict[tuple[str, str], str | None] = {}
        while waiting and time.monotonic() < deadline:
            time.sleep(1)
            for kind_name, kind in KINDS.items():
                for body in api.list(kind, None if kind_name == "Module" else namespace):
                    key = (kind_name, body["metadata"]["name"])
                    if key in waiting:
                        said[key] = flag(body)
                        if said[key] and waiting[key].field in (said[key] or ""):
                            del waiting[key]
        for key, case in waiting.items():
            problems.append(f"{case.id}: accepted and not flagged naming {case.field}: {said.get(key)}")
        elapsed = time.monotonic() - started
        # the namespace goes with everything in it, the operator still running: objects vanish
        # mid-reconcile (404 on status writes, 403 on creates), which is normal, not an error
        api.delete(k.NAMESPACE, namespace)
        gone = time.monotonic() + 30
        while api.get(k.NAMESPACE, namespace) is not None and time.monotonic() < gone:
            time.sleep(1)
        traces = [f"{r.name}: {r.getMessage()[:300]}" for r in tracebacks.records]
        assert not problems and not traces, (
            f"{len(problems)} of {len(cases)} cases wrong ({elapsed:.0f} s):\n" + "\n".join(problems)
            + "\ntracebacks logged:\n" + "\n".join(traces))
    finally:
        for body in api.list(MODULE, label_selector=f"e2e-bad-input={suffix}"):
            api.delete(MODULE, body["metadata"]["name"])
