"""The TrainingJob -> Job builder: valid upstream objects carrying every promise of the spec."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from deep_platform.api import Module, TrainingJob
from deep_platform.builders.trainingjob import (
    KUEUE_QUEUE_LABEL,
    SPEC_HASH_ANNOTATION,
    build_job,
    hyperparameter_value,
    train_command,
)


def trainingjob(**spec: Any) -> TrainingJob:
    body = {
        "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "retrain", "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": {"module": "plankton", **spec},
    }
    return TrainingJob.from_body(body)


def module(**spec: Any) -> Module:
    annotations = spec.pop("annotations", {})
    return Module.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "Module",
            "metadata": {"name": "plankton", "annotations": annotations},
            "spec": {"image": "ai4oshub/plankton:1.0", "metadata": {"title": "Plankton"}, **spec},
        }
    )


GPU_SPEC = {
    "cpu": 4,
    "memory": "16Gi",
    "gpu": {"count": 2, "product": "NVIDIA-A100-SXM4-80GB", "minMemory": "40Gi"},
}


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", ["1.30", "1.34"])
@pytest.mark.parametrize(
    "spec",
    [
        {},
        {
            "resources": GPU_SPEC,
            "queueName": "gpu-queue",
            "priorityClassName": "high",
            "nodeSelector": {"zone": "a"},
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": 60,
            "nonRetryableExitCodes": [2, 3],
        },
        {"resources": {"gpu": {"count": 1, "migProfile": "1g.10gb"}}, "nonRetryableExitCodes": []},
        {"image": "me/other:2", "command": ["python", "train.py"], "args": ["--fast"]},
    ],
)
def test_job_validates_against_upstream_schema(spec: dict[str, Any], version: str) -> None:
    job = build_job(trainingjob(**spec), module())
    kubernetes_validate.validate(job, version, strict=True)


def test_job_is_owned_labelled_and_restricted() -> None:
    job = build_job(trainingjob(), module())
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "TrainingJob",
        "retrain",
        "uid-1",
        True,
    )
    assert job["metadata"]["labels"]["deep-hybrid-datacloud.eu/kind"] == "trainingjob"
    assert job["spec"]["template"]["metadata"]["labels"]["deep-hybrid-datacloud.eu/module"] == "plankton"
    spec = pod_spec(job)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = spec["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["image"] == "ai4oshub/plankton:1.0"
    assert spec["restartPolicy"] == "Never"


def test_gpu_limits_toleration_affinity_and_shm() -> None:
    job = build_job(trainingjob(resources=GPU_SPEC), module())
    spec = pod_spec(job)
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expressions = terms["nodeSelectorTerms"][0]["matchExpressions"]
    assert {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-A100-SXM4-80GB"],
    } in expressions
    assert {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40959"]} in expressions
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_mig_profile_asks_for_mig_resource() -> None:
    job = build_job(trainingjob(resources={"gpu": {"count": 3, "migProfile": "1g.10gb"}}), module())
    limits = pod_spec(job)["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/mig-1g.10gb": "3"}


def test_module_default_resources_used_when_job_sets_none() -> None:
    mod = module(resources={"training": {"cpu": 2, "gpu": {"count": 1}}})
    limits = pod_spec(build_job(trainingjob(), mod))["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "2", "nvidia.com/gpu": "1"}


def test_cpu_only_job_has_no_gpu_toleration_or_affinity() -> None:
    spec = pod_spec(build_job(trainingjob(resources={"cpu": 1}), module()))
    assert "tolerations" not in spec and "affinity" not in spec


def test_pod_failure_policy_default_and_configured() -> None:
    rules = build_job(trainingjob(), module())["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    assert rules[1]["action"] == "FailJob"
    assert rules[1]["onExitCodes"]["values"] == list(range(1, 128))
    assert rules[1]["onExitCodes"]["containerName"] == "train"
    custom = build_job(trainingjob(nonRetryableExitCodes=[3, 2, 3]), module())["spec"]["podFailurePolicy"]
    assert custom["rules"][1]["onExitCodes"]["values"] == [2, 3]
    none = build_job(trainingjob(nonRetryableExitCodes=[]), module())["spec"]["podFailurePolicy"]
    assert [r["action"] for r in none["rules"]] == ["Ignore"]


def test_exit_code_out_of_range_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"nonRetryableExitCodes|non_retryable_exit_codes"):
        trainingjob(nonRetryableExitCodes=[0, 3])


def test_lifecycle_fields() -> None:
    tj = trainingjob(backoffLimit=5, activeDeadlineSeconds=600, ttlSecondsAfterFinished=30)
    job = build_job(tj, module())
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"], job["spec"]["suspend"]) == (
        5, 600, False)
    assert build_job(trainingjob(suspend=True), module())["spec"]["suspend"] is True


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_the_ttl_reaches_the_job_only_once_the_outcome_is_recorded(phase: str) -> None:
    """The TTL controller deletes a finished Job; were it to do so before the status holds
    the outcome (the operator away), the training would look unfinished and run again."""
    tj = trainingjob(ttlSecondsAfterFinished=30)
    running = build_job(tj, module())
    assert "ttlSecondsAfterFinished" not in running["spec"]
    tj.status.phase = "Running"
    assert "ttlSecondsAfterFinished" not in build_job(tj, module())["spec"]
    tj.status.phase = phase
    finished = build_job(tj, module())
    assert finished["spec"]["ttlSecondsAfterFinished"] == 30
    # a different spec hash: the controller applies the change to the live Job
    assert finished["metadata"]["annotations"] != running["metadata"]["annotations"]
    assert build_job(trainingjob(suspend=True), module())["spec"]["suspend"] is True


def test_kueue_queue_label_and_suspended_until_admitted() -> None:
    tj = trainingjob(queueName="gpu-queue")
    job = build_job(tj, module())
    assert job["metadata"]["labels"][KUEUE_QUEUE_LABEL] == "gpu-queue"
    assert job["spec"]["suspend"] is True
    admitted = {**job, "spec": {**job["spec"], "suspend": False}}
    # once Kueue resumed the Job, re-applying never suspends it again
    assert build_job(tj, module(), live_job=admitted)["spec"]["suspend"] is False
    assert build_job(tj, module(), live_job=job)["spec"]["suspend"] is True


def test_hyperparameters_rendered_for_deepaas_cli() -> None:
    tj = trainingjob(
        hyperparameters={
            "epochs": 3,
            "lr": 0.001,
            "augment": True,
            "layers": [32, 16],
            "name": "my model",
            "flags": [True, "a"],
        }
    )
    command, args = train_command(tj)
    assert command == ["deepaas-cli"]
    assert args == [
        "train",
        "--augment=true",
        "--epochs=3",
        "--flags=[True, 'a']",
        "--layers=[32, 16]",
        "--lr=0.001",
        "--name=my model",
    ]
    assert hyperparameter_value(False) == "false"


def test_explicit_command_replaces_deepaas() -> None:
    container = pod_spec(build_job(trainingjob(image="me/x:1", command=["python"], args=["t.py"]), None))
    assert (container["containers"][0]["command"], container["containers"][0]["args"]) == (
        ["python"],
        ["t.py"],
    )


def test_module_model_selects_deepaas_model_unless_env_does() -> None:
    mod = module(model="tinymodel")
    env = pod_spec(build_job(trainingjob(), mod))["containers"][0]["env"]
    assert {"name": "DEEPAAS_V2_MODEL", "value": "tinymodel"} in env
    own = pod_spec(build_job(trainingjob(env=[{"name": "DEEPAAS_V2_MODEL", "value": "x"}]), mod))
    assert [e for e in own["containers"][0]["env"] if e["name"] == "DEEPAAS_V2_MODEL"] == [
        {"name": "DEEPAAS_V2_MODEL", "value": "x"}
    ]


def test_spec_hash_changes_with_the_spec_only() -> None:
    first = build_job(trainingjob(), module())["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    again = build_job(trainingjob(), module())["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    other = build_job(trainingjob(backoffLimit=7), module())["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    assert first == again != other
