"""DevEnvironment: the model's refusals, and the IDE's Deployment, Service, home claim and Secret."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

from deep_platform.api import DevEnvironment, Module
from deep_platform.builders.devenvironment import (
    JUPYTER_TOKEN_ENV,
    build_all,
    build_deployment,
    build_home_claim,
    build_token_secret,
    home_claim_name,
    token_secret_name,
)
from deep_platform.config import OperatorConfig
from deep_platform.offline import validate
from tests.chart.podsecurity import restricted_violations

STORAGE = {
    "name": "data",
    "url": "https://nc.example/remote.php/dav/files/alice",
    "remotePath": "/datasets/plankton",
    "mountPath": "/storage/data",
    "secretRef": {"name": "nextcloud"},
}


def dev(**spec: Any) -> DevEnvironment:
    return DevEnvironment.from_body({
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": "DevEnvironment",
        "metadata": {"name": "alice-dev", "namespace": "science", "uid": "u-1", "generation": 1},
        "spec": spec,
    })


MODULE = Module.from_body({
    "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1", "kind": "Module", "metadata": {"name": "plankton"},
    "spec": {"image": "ai4oshub/plankton:1", "metadata": {"title": "P"},
             "resources": {"training": {"cpu": 4, "memory": "8Gi", "gpu": {"count": 1}}}},
})


@pytest.mark.parametrize("version", ["1.30", "1.34"])
def test_children_validate_against_upstream_schemas(version: str) -> None:
    env = dev(module="plankton", storage=[STORAGE], home={"size": "20Gi", "storageClassName": "fast"})
    for child in [*build_all(env, MODULE), build_token_secret(env, "t0ken")]:
        kubernetes_validate.validate(child, version, strict=True)


def test_jupyterlab_serves_under_the_activator_path_with_the_token_from_the_secret() -> None:
    deployment = build_deployment(dev(image="registry.example/jupyter:1"), None)
    assert "replicas" not in deployment["spec"]  # the activator wakes and sleeps it
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # one pod holds the RWO home
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:2] == ["jupyter", "lab"]
    assert "--ServerApp.base_url=/science/alice-dev/" in command
    assert "--ip=0.0.0.0" in command and "--no-browser" in command
    token = next(e for e in container["env"] if e["name"] == JUPYTER_TOKEN_ENV)
    assert token["valueFrom"]["secretKeyRef"] == {"name": "alice-dev-ide-token", "key": "token"}
    assert not any("token=" in part.lower() for part in command)  # never in argv
    assert container["readinessProbe"]["httpGet"]["path"] == "/science/alice-dev/api"
    home = {"name": "home", "mountPath": "/home/deep"}
    assert home in container["volumeMounts"]
    claim = {"name": "home", "persistentVolumeClaim": {"claimName": "alice-dev-home"}}
    assert claim in deployment["spec"]["template"]["spec"]["volumes"]


def test_vscode_runs_code_server_with_its_password_from_the_secret() -> None:
    container = build_deployment(dev(ide="vscode"), None)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][0] == "code-server"
    assert "--abs-proxy-base-path" in container["command"]
    command = container["command"]
    assert command[command.index("--abs-proxy-base-path") + 1] == "/science/alice-dev"
    assert {e["name"] for e in container["env"] if "valueFrom" in e} == {"PASSWORD"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_image_is_the_own_then_the_modules_then_the_sites() -> None:
    config = OperatorConfig(dev_image="registry.example/dev-env:2")
    image = lambda d, m: build_deployment(d, m, config)["spec"]["template"]["spec"]["containers"][0]["image"]  # noqa: E731
    assert image(dev(), None) == "registry.example/dev-env:2"
    assert image(dev(module="plankton"), MODULE) == "ai4oshub/plankton:1"
    assert image(dev(module="plankton", image="registry.example/mine:1"), MODULE) == "registry.example/mine:1"


def test_gpu_from_the_modules_training_resources_and_restricted() -> None:
    spec = build_deployment(dev(module="plankton", storage=[STORAGE]), MODULE)["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert restricted_violations(spec) == []
    assert spec["automountServiceAccountToken"] is False


def test_storage_copied_in_and_back_periodically_and_at_stop_never_deleting() -> None:
    config = OperatorConfig(dev_upload_seconds=120)
    read_only = {**STORAGE, "name": "ro", "mountPath": "/ro", "readOnly": True}
    spec = build_deployment(dev(storage=[STORAGE, read_only]), None, config)["spec"]["template"]["spec"]
    names = [c["name"] for c in spec["initContainers"]]
    assert names == ["storage-in-data", "storage-in-ro", "storage-out-data"]  # read-only: no upload
    out = spec["initContainers"][2]
    assert out["restartPolicy"] == "Always"  # a native sidecar beside the IDE
    assert out["args"] == ["/deep-storage/data", "data:datasets/plankton", "120"]
    assert "rclone --config \"\" copy" in out["command"][2]
    assert " sync " not in out["command"][2] and "delete" not in out["command"][2]
    assert spec["terminationGracePeriodSeconds"] >= 30


def test_home_claim_and_token_secret() -> None:
    env = dev(home={"size": "5Gi", "storageClassName": "longhorn"})
    claim = build_home_claim(env)
    assert claim["metadata"]["name"] == home_claim_name(env) == "alice-dev-home"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}},
                             "storageClassName": "longhorn"}
    secret = build_token_secret(env, "s3cret")
    assert secret["metadata"]["name"] == token_secret_name(env)
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "DevEnvironment"
    assert "storageClassName" not in build_home_claim(dev())["spec"]  # the cluster's default class


@pytest.mark.parametrize(
    ("spec", "field", "fix"),
    [
        ({"ide": "emacs"}, "spec.ide", "jupyterlab"),
        ({"idleTimeout": "forever"}, "spec.idleTimeout", "30s"),
        ({"home": {"size": "lots"}}, "spec.home.size", ""),
        ({"auth": {"public": True, "tokenSecret": {"name": "t"}}}, "spec.auth", "remove public"),
    ],
)
def test_bad_input_names_the_field_and_the_fix(
    spec: dict[str, Any], field: str, fix: str, tmp_path: Any
) -> None:
    with pytest.raises(ValidationError):
        dev(**spec)
    manifest = tmp_path / "dev.yaml"
    import yaml

    manifest.write_text(yaml.safe_dump({"apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
                                        "kind": "DevEnvironment",
                                        "metadata": {"name": "d", "namespace": "n"}, "spec": spec}))
    [problem] = validate([manifest])
    assert f"DevEnvironment/d: {field}" in problem and fix in problem
