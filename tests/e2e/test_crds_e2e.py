"""The CRDs on a real API server: the generated ones install under fieldValidation=Strict, every
manifest of examples/ passes a strict dry run, and the rules the emulator refuses to compile
(tests/harness/test_cel_typecheck.py) are refused by kube-apiserver with the same message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deep_platform import kube as k
from deep_platform.api.crdgen import KINDS, crd
from tests.e2e.conftest import EXAMPLES
from tests.harness.test_cel_typecheck import (
    BAD_RULES,
    GOOD_RULES,
    expected_message,
    probe_crd,
    refusal,
    trainingjob_crd_with_the_hole,
)

STRICT = {"fieldValidation": "Strict"}


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(Path(EXAMPLES).glob("*.y*ml")):
        for n, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if isinstance(doc, dict):
                found.append((f"{path.name}[{n}]", doc))
    return found


def test_the_generated_crds_apply_under_strict_field_validation(cluster: k.Kube) -> None:
    for kind in KINDS:
        body = crd(kind)
        answer = cluster.request(
            "PATCH",
            k.CRD.path(None, body["metadata"]["name"]),
            body=body,
            query={"fieldManager": "deep-e2e-strict", "force": "true", **STRICT},
            content_type="application/apply-patch+yaml",
        )
        assert answer["spec"]["names"]["kind"] == kind.crd.kind


@pytest.mark.parametrize(("where", "body"), example_documents(), ids=[w for w, _ in example_documents()])
def test_every_example_passes_a_strict_dry_run(
    cluster: k.Kube, crds_installed: None, namespace: str, where: str, body: dict[str, Any]
) -> None:
    kind = cluster.kind_for(body)
    if kind.namespaced:
        body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
    created = cluster.request(
        "POST", kind.path(body["metadata"].get("namespace")), body=body, query={"dryRun": "All", **STRICT}
    )
    assert created["metadata"]["name"] == body["metadata"]["name"], where


@pytest.mark.parametrize("rule", list(BAD_RULES))
def test_the_real_server_refuses_what_the_emulator_refuses(cluster: k.Kube, rule: str) -> None:
    assert refusal(cluster, probe_crd(rule)) == (422, expected_message(rule, BAD_RULES[rule]))


@pytest.mark.parametrize("rule", GOOD_RULES)
def test_the_real_server_accepts_what_the_emulator_accepts(cluster: k.Kube, rule: str) -> None:
    answer = refusal(cluster, probe_crd(rule))
    # the real server also estimates each rule's cost, which the emulator does not
    assert answer is None or "estimated rule cost exceeds budget" in answer[1], answer


def test_the_trainingjob_crd_of_issue_12_is_refused(cluster: k.Kube) -> None:
    refused = refusal(cluster, trainingjob_crd_with_the_hole())
    assert refused is not None and refused[0] == 422
    assert "compilation failed: ERROR: <input>:1:27: undefined field 'hyperparameters'" in refused[1]
    assert "ERROR: <input>:1:62: undefined field 'hyperparameters'" in refused[1]
