"""The API server (emulated, with the generated CRDs) rejects what `deep-platform validate` rejects,
naming the same field; valid examples go in, and unknown fields are pruned as a real server does."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from deep_platform import kube as k
from deep_platform.api import InferenceService, TrainingJob
from deep_platform.offline import Document, problems
from tests.harness.operator_fixtures import kube_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


CASES = [
    ("trainingjob.yaml", lambda b: b["spec"]["resources"]["gpu"].update(count=-1),
     "spec.resources.gpu.count"),
    ("trainingjob.yaml", lambda b: b["spec"]["resources"].update(memory="lots"), "spec.resources.memory"),
    # a compute-instance profile, and the resource's spelling of a profile: no device plugin advertises them
    ("trainingjob.yaml", lambda b: b["spec"]["resources"]["gpu"].update(migProfile="1c.2g.20gb"),
     "spec.resources.gpu.migProfile"),
    ("trainingjob.yaml", lambda b: b["spec"]["resources"]["gpu"].update(migProfile="1g.10gb.me"),
     "spec.resources.gpu.migProfile"),
    ("trainingjob.yaml", lambda b: b["spec"].pop("module"), "set spec.module (a Module name) or spec.image"),
    ("trainingjob.yaml", lambda b: b["spec"]["storage"][0].update(mode="fuse"), "spec.storage[0].mode"),
    ("trainingjob.yaml", lambda b: b["spec"].update(backoffLimit=1000), "spec.backoffLimit"),
    ("inferenceservice.yaml", lambda b: b["spec"]["scaling"].update(minReplicas=5, maxReplicas=2),
     "spec.scaling.minReplicas must not exceed spec.scaling.maxReplicas"),
    ("inferenceservice.yaml", lambda b: b["spec"]["scaling"].update(scaleToZeroAfter="ten minutes"),
     "spec.scaling.scaleToZeroAfter"),
]


@pytest.mark.parametrize(("file", "mutate", "field"), CASES)
def test_server_and_offline_validation_agree(apiserver: Any, file: str, mutate: Any, field: str) -> None:
    body = copy.deepcopy(example(file))
    mutate(body)
    offline = problems(Document(Path(file), 0, body))
    assert any(field in line for line in offline), offline
    with pytest.raises(k.ApiError) as rejected:
        kube_for(apiserver.url).create(body)
    assert rejected.value.status == 422
    assert field in rejected.value.message


@pytest.mark.parametrize("profile", ["1g.10gb+me", "3g.40gb", "1g.23gb-me", "1g.23gb+me.all"])
def test_mig_profiles_the_device_plugin_advertises_are_accepted(apiserver: Any, profile: str) -> None:
    body = copy.deepcopy(example("trainingjob.yaml"))
    body["metadata"]["name"] = "mig-" + profile.replace("+", "-").replace(".", "-")
    body["spec"]["resources"]["gpu"] = {"count": 1, "migProfile": profile}
    assert problems(Document(Path("trainingjob.yaml"), 0, body)) == []
    created = kube_for(apiserver.url).create(body)
    assert created["spec"]["resources"]["gpu"]["migProfile"] == profile


def test_examples_are_accepted_and_defaults_applied(apiserver: Any) -> None:
    api = kube_for(apiserver.url)
    api.create(example("module.yaml"))
    body = example("inferenceservice.yaml")
    del body["spec"]["scaling"]
    created = api.create(body)
    assert created["spec"]["scaling"] == {
        "minReplicas": 0, "maxReplicas": 1, "targetConcurrency": 4, "scaleToZeroAfter": "5m",
        "prewarm": False,
    }
    tj = api.create(example("trainingjob.yaml"))
    assert tj["spec"]["hyperparameters"]["lr"] == 0.001
    assert tj["spec"]["storage"][0]["secretRef"] == {
        "name": "nextcloud-credentials", "userKey": "user", "passwordKey": "password",
    }


def test_unknown_fields_are_pruned_but_module_metadata_is_kept(apiserver: Any) -> None:
    api = kube_for(apiserver.url)
    module = example("module.yaml")
    module["spec"]["metadata"]["x-custom"] = {"anything": [1, 2]}
    module["spec"]["typo"] = True
    created = api.create(module)
    assert created["spec"]["metadata"]["x-custom"] == {"anything": [1, 2]}
    assert "typo" not in created["spec"]


def test_status_is_not_writable_through_the_main_resource(apiserver: Any) -> None:
    api = kube_for(apiserver.url)
    api.create(example("module.yaml"))
    body = example("inferenceservice.yaml")
    body["status"] = {"url": "http://evil.example"}
    created = api.create(body)
    assert "url" not in (created.get("status") or {})
    kind = k.kind_of(InferenceService)
    api.patch_status(kind, "plankton", "default", {"url": "http://activator/default/plankton/"})
    assert api.get(kind, "plankton", "default")["status"]["url"].startswith("http://activator")
    assert api.get(k.kind_of(TrainingJob), "absent", "default") is None
