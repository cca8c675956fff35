"""The exact command line the builder renders runs `deepaas-cli train` on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from deep_platform.api import Module, TrainingJob
from deep_platform.builders.trainingjob import build_job

HYPERPARAMETERS = {
    "epochs": 2,
    "learning_rate": 0.001,
    "batch_size": 16,
    "model_name": "my model",
    "augment": True,
    "layers": [32, 16],
}


def test_rendered_command_passes_typed_hyperparameters(tmp_path: Path) -> None:
    module = Module.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "Module",
            "metadata": {"name": "tiny"},
            "spec": {"image": "tiny:1", "model": "tinymodel", "metadata": {"title": "tiny"}},
        }
    )
    tj = TrainingJob.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "t", "namespace": "default", "uid": "u"},
            "spec": {
                "module": "tiny",
                "hyperparameters": HYPERPARAMETERS,
                "env": [{"name": "TINYMODEL_OUTPUT_DIR", "value": str(tmp_path)}],
            },
        }
    )
    container = build_job(tj, module)["spec"]["template"]["spec"]["containers"][0]
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
    # the console script of this interpreter's environment, exactly as the container runs it
    executable = str(Path(sys.executable).parent / container["command"][0])
    done = subprocess.run(
        [executable, *container["args"]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    got = json.loads((tmp_path / "train-args.json").read_text())
    assert {name: (arg["value"], arg["type"]) for name, arg in got.items()} == {
        "epochs": (2, "int"),
        "learning_rate": (0.001, "float"),
        "batch_size": (16, "int"),
        "model_name": ("my model", "str"),
        "augment": (True, "bool"),
        "layers": ([32, 16], "list"),
    }
    assert (tmp_path / "model.txt").exists()


def test_failing_training_exits_with_code_one(tmp_path: Path) -> None:
    """Exit code 1 is inside the default non-retryable range: a crash fails the Job at once."""
    tj = TrainingJob.from_body(
        {
            "apiVersion": "deep-hybrid-datacloud.eu/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "t", "namespace": "default", "uid": "u"},
            "spec": {
                "image": "tiny:1",
                "hyperparameters": {"epochs": 1},
                "env": [
                    {"name": "DEEPAAS_V2_MODEL", "value": "tinymodel"},
                    {"name": "TINYMODEL_FAIL", "value": "1"},
                    {"name": "TINYMODEL_OUTPUT_DIR", "value": str(tmp_path)},
                    {"name": "TINYMODEL_TERMINATION_LOG", "value": str(tmp_path / "term")},
                ],
            },
        }
    )
    job = build_job(tj, None)
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
    executable = str(Path(sys.executable).parent / container["command"][0])
    done = subprocess.run(
        [executable, *container["args"]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    non_retryable = job["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"]["values"]
    assert done.returncode == 1 and done.returncode in non_retryable
    assert "simulated training failure" in (tmp_path / "term").read_text()
