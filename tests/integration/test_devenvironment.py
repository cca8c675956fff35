"""DevEnvironment controller against the API server: children, token Secret, phases, NameTaken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deep_platform import kube as k
from deep_platform.api import DevEnvironment, InferenceService
from tests.harness.operator_fixtures import wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEV = k.kind_of(DevEnvironment)
ISVC = k.kind_of(InferenceService)
NS = "default"


def devenv(name: str = "alice-dev", **spec: Any) -> dict[str, Any]:
    body = yaml.safe_load((EXAMPLES / "devenvironment.yaml").read_text(encoding="utf-8"))
    body["metadata"] = {"name": name, "namespace": NS}
    body["spec"] = {"image": "registry.example/jupyter:1", "idleTimeout": "30s", **spec}
    return body


def status(api: k.Kube, name: str = "alice-dev") -> dict[str, Any]:
    return (api.get(DEV, name, NS) or {}).get("status") or {}


def ready(st: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})


def test_children_secret_and_status(operator: Any) -> None:
    api = operator.kube
    api.create(devenv())
    st = wait_until(lambda: status(api) if status(api).get("phase") else None, 20, what="a phase")
    assert st["url"].endswith(f"/{NS}/alice-dev/")
    assert st["tokenSecret"] == "alice-dev-ide-token"
    assert st["image"] == "registry.example/jupyter:1"
    # the phase gauge follows the watch (the operator runs in this process)
    from prometheus_client import REGISTRY

    counted = lambda: REGISTRY.get_sample_value("deep_operator_devenvironments", {"phase": st["phase"]})  # noqa: E731
    assert wait_until(lambda: (counted() or 0) >= 1, 10, what="deep_operator_devenvironments")
    dev = api.get(DEV, "alice-dev", NS)
    assert dev is not None
    uid = dev["metadata"]["uid"]
    for kind, name in ((k.DEPLOYMENT, "alice-dev"), (k.SERVICE, "alice-dev"),
                       (k.PERSISTENTVOLUMECLAIM, "alice-dev-home"), (k.SECRET, "alice-dev-ide-token")):
        child = wait_until(lambda kind=kind, name=name: api.get(kind, name, NS), 10,
                           what=f"{kind.kind} {name}")
        assert [o["uid"] for o in child["metadata"]["ownerReferences"]] == [uid]
    secret = api.get(k.SECRET, "alice-dev-ide-token", NS)
    assert secret is not None and len(secret["data"]["token"]) >= 40
    # the token is never in the status, the Deployment or an Event
    import base64

    token = base64.b64decode(secret["data"]["token"]).decode()
    deployment = api.get(k.DEPLOYMENT, "alice-dev", NS)
    assert token not in repr(deployment) and token not in repr(status(api))
    assert token not in repr(api.list(k.EVENT, NS))
    # a second reconciliation (an edit) keeps the token: open sessions stay signed in
    api.patch(DEV, "alice-dev", NS, {"spec": {"idleTimeout": "45s"}})
    wait_until(lambda: status(api).get("observedGeneration") == 2, 10, what="generation 2 observed")
    again = api.get(k.SECRET, "alice-dev-ide-token", NS)
    assert again is not None and again["data"]["token"] == secret["data"]["token"]


def test_sleeping_when_the_activator_sets_zero_replicas(operator: Any) -> None:
    api = operator.kube
    api.create(devenv())
    wait_until(lambda: api.get(k.DEPLOYMENT, "alice-dev", NS), 20, what="the Deployment")
    api.patch(k.DEPLOYMENT, "alice-dev", NS, {"spec": {"replicas": 0}}, sub="scale")
    st = wait_until(lambda: status(api) if status(api).get("phase") == "Sleeping" else None, 20,
                    what="phase Sleeping")
    assert st["replicas"] == 0 and ready(st)["reason"] == "Sleeping"
    assert api.get(k.PERSISTENTVOLUMECLAIM, "alice-dev-home", NS) is not None  # the home stays


def test_an_inference_service_keeps_its_path(operator: Any) -> None:
    api = operator.kube
    api.create({"apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "InferenceService",
                "metadata": {"name": "taken", "namespace": NS},
                "spec": {"image": "registry.example/model:1"}})
    api.create(devenv("taken"))
    st = wait_until(lambda: status(api, "taken") if status(api, "taken").get("phase") else None, 20,
                    what="a phase")
    assert (st["phase"], ready(st)["status"], ready(st)["reason"]) == ("Failed", "False", "NameTaken")
    assert "another name" in ready(st)["message"]
    assert api.get(k.PERSISTENTVOLUMECLAIM, "taken-home", NS) is None


def test_missing_module_is_named(operator: Any) -> None:
    api = operator.kube
    api.create(devenv("nomod", image=None, module="no-such-module"))
    body = devenv("nomod", module="no-such-module")
    del body["spec"]["image"]
    api.delete(DEV, "nomod", NS)
    wait_until(lambda: api.get(DEV, "nomod", NS) is None, 10, what="deleted")
    api.create(body)
    st = wait_until(lambda: status(api, "nomod") if status(api, "nomod").get("phase") else None, 20,
                    what="a phase")
    assert ready(st)["reason"] == "ModuleNotFound" and "no-such-module" in ready(st)["message"]
