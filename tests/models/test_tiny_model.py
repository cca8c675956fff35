"""The tiny DEEPaaS test model against the real deepaas 2.6 `deepaas-run` / `deepaas-cli`.

Needs `pip install -e tests/models/tiny-model` (entry point `deepaas.v2.model:tinymodel`).
See tests/models/tiny-model/README.md for the command lines these tests pin down.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from importlib.metadata import entry_points
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
DEEPAAS_RUN = shutil.which("deepaas-run", path=str(BIN)) or shutil.which("deepaas-run")
DEEPAAS_CLI = shutil.which("deepaas-cli", path=str(BIN)) or shutil.which("deepaas-cli")
READY_TIMEOUT = 30.0


def test_tinymodel_entry_point_is_installed():
    eps = {ep.name: ep.value for ep in entry_points(group="deepaas.v2.model")}
    assert eps.get("tinymodel") == "deep_platform_tiny_model.api", (
        "run: pip install -e tests/models/tiny-model"
    )
    assert DEEPAAS_RUN and DEEPAAS_CLI


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def _post(url: str, body: bytes = b"", content_type: str | None = None, timeout: float = 30.0):
    req = urllib.request.Request(url, data=body, method="POST")
    if content_type:
        req.add_header("Content-Type", content_type)
    req.add_header("Accept", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]):
    boundary = "tinymodel-" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, (filename, data) in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYMODEL_", "DEEPAAS_"))}
    env.update(
        TINYMODEL_OUTPUT_DIR=str(tmp_path / "out"),
        TINYMODEL_STATE_DIR=str(tmp_path),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deepaas-run")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "server.log", "wb")  # noqa: SIM115
    started = time.monotonic()
    proc = subprocess.Popen(
        [DEEPAAS_RUN, "--listen-ip", "127.0.0.1", "--listen-port", str(port)],
        env=_env(tmp, DEEPAAS_V2_MODEL="tinymodel"),
        cwd=tmp,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: we also stop its pool worker
    )
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"deepaas-run exited {proc.returncode}: {(tmp / 'server.log').read_text()}"
                )
            try:
                models = _get_json(f"{base}/v2/models/", timeout=1.0)
                break
            except OSError:
                if time.monotonic() - started > READY_TIMEOUT:
                    pytest.fail(f"deepaas-run not ready: {(tmp / 'server.log').read_text()}")
                time.sleep(0.05)
        yield {"base": base, "models": models, "ready_s": time.monotonic() - started, "tmp": tmp}
    finally:
        # SIGTERM to the server process only (as Kubernetes does to PID 1): it exits in
        # about 1.5-2 s. SIGTERM to the whole process group (pool worker included) made
        # deepaas-run hang about 10 s.
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started, leftovers only
        proc.wait()
        log.close()


def test_serve_lists_tinymodel_warmed(server):
    models = {m["name"]: m for m in server["models"]["models"]}
    assert set(models) == {"tinymodel"}
    meta = models["tinymodel"]
    assert meta["version"] == "0.1.0"
    assert meta["author"] and meta["description"]
    # deepaas-run warms (in its pool worker) before it starts listening.
    assert meta["warmed"] is True
    assert server["ready_s"] < READY_TIMEOUT


def test_predict_5mb_upload_sha256(server):
    payload = os.urandom(5 * 1024 * 1024)
    body, ctype = _multipart({"text": "hello world"}, {"data": ("big.bin", payload)})
    out = _post(f"{server['base']}/v2/models/tinymodel/predict/", body, ctype)
    assert out["status"] == "OK"
    pred = out["predictions"]
    assert pred["bytes"] == len(payload)
    assert pred["sha256"] == hashlib.sha256(payload).hexdigest()
    assert pred["filename"] == "big.bin"
    assert pred["text"] == "hello world"
    assert pred["warmed"] is True  # predict runs in the same (warmed) pool worker


def test_predict_text_only_in_query(server):
    out = _post(f"{server['base']}/v2/models/tinymodel/predict/?text=only%20text")
    assert out["predictions"]["text"] == "only text"
    assert "sha256" not in out["predictions"]


def test_http_train_types(server):
    q = "epochs=2&learning_rate=0.5&augment=true&layers=3&layers=5&model_name=my%20model"
    job = _post(f"{server['base']}/v2/models/tinymodel/train/?{q}")
    url = f"{server['base']}/v2/models/tinymodel/train/{job['uuid']}"
    deadline = time.monotonic() + 10
    while (res := _get_json(url))["status"] not in ("done", "error", "failed"):
        assert time.monotonic() < deadline, res
        time.sleep(0.05)
    assert res["status"] == "done", res
    types = res["result"]["output"]["arg_types"]
    assert types == {
        "epochs": "int",
        "learning_rate": "float",
        "batch_size": "int",
        "model_name": "str",
        "augment": "bool",
        "layers": "list",
    }
    written = json.loads((server["tmp"] / "out" / "train-args.json").read_text())
    assert written["layers"]["value"] == [3, 5]
    assert written["model_name"]["value"] == "my model"


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DEEPAAS_CLI, *args],
        env=_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_train_arg_types(tmp_path):
    result_file = tmp_path / "result.json"
    # oslo options (--deepaas_method_output) go BEFORE the method; model args after it.
    p = _cli(
        tmp_path,
        "--deepaas_method_output", str(result_file),
        "train",
        "--epochs", "3",
        "--learning_rate", "1e-3",
        "--batch_size", "16",
        "--model_name", "my model",
        "--augment", "true",
        "--layers", "[32, 16]",
        DEEPAAS_V2_MODEL="tinymodel",
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    args = json.loads((tmp_path / "out" / "train-args.json").read_text())
    assert {k: (v["value"], v["type"]) for k, v in args.items()} == {
        "epochs": (3, "int"),
        "learning_rate": (0.001, "float"),
        "batch_size": (16, "int"),
        "model_name": ("my model", "str"),
        "augment": (True, "bool"),
        "layers": ([32, 16], "list"),
    }
    assert (tmp_path / "out" / "model.txt").read_text().startswith("tinymodel 0.1.0")
    result = json.loads(result_file.read_text())
    assert result["status"] == "done"
    assert result["result"]["output"]["epochs"] == 3


def test_cli_train_defaults_and_bool_parsing(tmp_path):
    # No DEEPAAS_V2_MODEL: with exactly one model installed deepaas-cli picks it.
    # Booleans are parsed with `v.lower() in ("yes", "true", "t", "1")`: anything else is False.
    p = _cli(tmp_path, "train", "--augment", "no")
    assert p.returncode == 0, p.stdout + p.stderr
    args = json.loads((tmp_path / "out" / "train-args.json").read_text())
    assert {k: (v["value"], v["type"]) for k, v in args.items()} == {
        "epochs": (1, "int"),
        "learning_rate": (0.01, "float"),
        "batch_size": (8, "int"),
        "model_name": ("tiny", "str"),
        "augment": (False, "bool"),
        "layers": ([4, 2], "list"),
    }


def test_cli_train_failure_keeps_partial_artifact(tmp_path):
    term = tmp_path / "termination-log"
    p = _cli(
        tmp_path, "train", "--epochs", "3", TINYMODEL_FAIL="1", TINYMODEL_TERMINATION_LOG=str(term)
    )
    assert p.returncode == 1
    # deepaas-cli logs (traceback included) go to STDOUT via oslo.log, not stderr.
    assert "RuntimeError: tinymodel: simulated training failure" in p.stdout
    out = tmp_path / "out"
    assert (out / "train-args.json").exists()
    assert (out / "checkpoint.txt").read_text().startswith("epoch=1")
    assert not (out / "model.txt").exists()
    assert term.read_text().startswith("tinymodel: simulated training failure")


def test_load_seconds_delays_import(tmp_path):
    code = (
        "import time; t = time.monotonic(); import deep_platform_tiny_model.api as a; "
        "print(time.monotonic() - t, a.get_metadata()['load_seconds'])"
    )
    p = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(tmp_path, TINYMODEL_LOAD_SECONDS="0.5"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    took, declared = map(float, p.stdout.split())
    assert took >= 0.5
    assert declared == 0.5


def test_warm_sets_flag_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYMODEL_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TINYMODEL_WARM_SECONDS", "0.1")
    from deep_platform_tiny_model import api

    monkeypatch.setattr(api, "WARMED", False)
    assert api.get_metadata()["warmed"] is False
    t = time.monotonic()
    api.warm()
    assert time.monotonic() - t >= 0.1
    meta = api.get_metadata()
    assert meta["warmed"] is True
    assert {"name", "version", "author", "description"} <= set(meta)
