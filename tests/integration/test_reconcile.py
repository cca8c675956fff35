"""All three kinds reconcile in the emulator: children applied, conditions and observedGeneration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deep_platform import kube as k
from deep_platform.api import InferenceService, Module, TrainingJob
from tests.harness.operator_fixtures import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODULES = k.kind_of(Module)
TRAININGJOBS = k.kind_of(TrainingJob)
SERVICES = k.kind_of(InferenceService)


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def reconciled(obj: dict[str, Any]) -> bool:
    return obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]


def test_all_three_kinds_reconcile(operator: Any) -> None:
    api = operator.kube
    module = api.create(example("module.yaml"))
    tj = api.create(example("trainingjob.yaml"))
    isvc = api.create(example("inferenceservice.yaml"))

    module = operator.wait_for(MODULES, module["metadata"]["name"], until=reconciled)
    assert condition(module, "Ready")["status"] == "True"

    tj = operator.wait_for(TRAININGJOBS, "plankton-retrain", "default", until=reconciled)
    job = api.get(k.JOB, "plankton-retrain", "default")
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["uid"] == tj["metadata"]["uid"]
    assert all(c["observedGeneration"] == tj["metadata"]["generation"] for c in tj["status"]["conditions"])

    isvc = operator.wait_for(SERVICES, "plankton", "default", until=reconciled)
    assert api.get(k.DEPLOYMENT, "plankton", "default") is not None
    assert api.get(k.SERVICE, "plankton", "default") is not None
    assert isvc["status"]["url"].endswith("/default/plankton/")


def test_spec_change_bumps_generation_and_is_observed(operator: Any) -> None:
    api = operator.kube
    api.create(example("module.yaml"))
    api.create(example("inferenceservice.yaml"))
    first = operator.wait_for(SERVICES, "plankton", "default", until=reconciled)
    api.patch(SERVICES, "plankton", "default", {"spec": {"scaling": {"maxReplicas": 5}}})
    second = operator.wait_for(SERVICES, "plankton", "default", until=reconciled)
    assert second["metadata"]["generation"] == first["metadata"]["generation"] + 1


def test_missing_module_is_a_condition_not_a_crash(operator: Any) -> None:
    api = operator.kube
    body = example("trainingjob.yaml")
    body["spec"]["module"] = "not-there"
    api.create(body)
    tj = operator.wait_for(
        TRAININGJOBS, "plankton-retrain", "default",
        until=lambda o: condition(o, "Ready") is not None,
    )
    ready = condition(tj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ModuleNotFound")
    assert "not-there" in ready["message"]
    assert api.get(k.JOB, "plankton-retrain", "default") is None


def test_no_kind_gets_a_finalizer_so_deletion_never_waits_for_the_operator(operator: Any) -> None:
    api = operator.kube
    api.create(example("module.yaml"))
    api.create(example("trainingjob.yaml"))
    api.create(example("inferenceservice.yaml"))
    for kind, name, namespace in ((MODULES, "phyto-plankton-classification", None),
                                  (TRAININGJOBS, "plankton-retrain", "default"),
                                  (SERVICES, "plankton", "default")):
        obj = operator.wait_for(kind, name, namespace, until=reconciled)
        assert not obj["metadata"].get("finalizers"), f"{kind.kind} got {obj['metadata']['finalizers']}"


def test_resync_repairs_a_child_deleted_behind_the_operators_back(operator: Any) -> None:
    from deep_platform.controllers import inferenceservice, runtime

    api = operator.kube
    api.create(example("module.yaml"))
    api.create(example("inferenceservice.yaml"))
    operator.wait_for(SERVICES, "plankton", "default", until=reconciled)
    api.delete(k.SERVICE, "plankton", "default")
    assert api.get(k.SERVICE, "plankton", "default") is None
    inferenceservice.resync_all(runtime.current())
    assert api.get(k.SERVICE, "plankton", "default") is not None


def test_a_deployment_refused_by_a_quota_is_reported_and_retried(
    apiserver: Any, operator: Any, monkeypatch: Any
) -> None:
    from deep_platform.controllers import retry

    monkeypatch.setattr(retry.backoff, "first", 0.2)
    apiserver.create(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "serving", "namespace": "default"},
            "spec": {"hard": {"count/deployments.apps": "0"}},
        }
    )
    api = operator.kube
    api.create(example("module.yaml"))
    api.create(example("inferenceservice.yaml"))

    def refused(obj: dict[str, Any]) -> bool:
        return (condition(obj, "Ready") or {}).get("reason") == "DeploymentRejected"

    isvc = operator.wait_for(SERVICES, "plankton", "default", until=refused)
    ready = condition(isvc, "Ready")
    assert ready["status"] == "False" and "exceeded quota: serving" in ready["message"]
    assert api.get(k.DEPLOYMENT, "plankton", "default") is None
    raised = {"spec": {"hard": {"count/deployments.apps": "1"}}}
    apiserver.patch("resourcequotas", "default", "serving", raised)
    isvc = operator.wait_for(SERVICES, "plankton", "default", until=lambda o: not refused(o))
    assert api.get(k.DEPLOYMENT, "plankton", "default") is not None


@pytest.mark.emulator_only("reads the label selectors the emulator logs per watch")
def test_the_operator_streams_only_its_own_jobs_pods_and_deployments(apiserver: Any, operator: Any) -> None:
    """On a cluster with thousands of pods, only the platform's children cross the network."""
    api = operator.kube
    api.create(example("module.yaml"))
    api.create(example("trainingjob.yaml"))
    operator.wait_for(TRAININGJOBS, "plankton-retrain", "default", until=reconciled)
    kind = "deep-hybrid-datacloud.eu/kind"
    children = {"jobs", "pods", "deployments"}
    expected = {
        ("jobs", f"{kind}=trainingjob"),
        ("pods", f"{kind}=trainingjob"),
        ("pods", f"{kind}=inferenceservice"),
        ("deployments", f"{kind}=inferenceservice"),
        ("pods", f"{kind}=devenvironment"),
        ("deployments", f"{kind}=devenvironment"),
    }

    def watched() -> set[tuple[str, str]]:
        return {(plural, selector) for _, plural, selector in apiserver.watch_selectors if plural in children}

    # kopf opens its child watches in the background: on a busy machine they may come last
    wait_until(lambda: watched() >= expected, 10, what="every child watch")
    assert watched() == expected
    # the children carry the label the selectors ask for
    job = api.get(k.JOB, "plankton-retrain", "default")
    assert job["metadata"]["labels"][kind] == "trainingjob"
    assert job["spec"]["template"]["metadata"]["labels"][kind] == "trainingjob"
