"""Progress parts of a training pod, and the `Progressing` condition (pure).

Every training pod gets the URL of the operator's progress endpoint and a projected
ServiceAccount token for it (audience `deep-platform-progress`, bound to the pod, renewed by
the kubelet): a module may push reports (`deep_platform.progress.client.report`, the Keras and
Lightning callbacks, `deep-platform report`). With `spec.progress.collector.stdout` the
training's output is also teed into a shared emptyDir file, which a native sidecar running the
platform's image reads and reports (`deep-platform report --follow`): no change in the module.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..api.trainingjob import ProgressSpec, TrainingJob, TrainingJobProgress
from ..config import OperatorConfig
from ..progress import AUDIENCE, TOKEN_DIR, TOKEN_FILE, TOKEN_FILE_ENV, URL_ENV
from . import pod

TOKEN_VOLUME = "progress-token"  # noqa: S105 (a volume name)
#: the shortest life the API server allows; the kubelet renews it at 80 %
TOKEN_SECONDS = 600
OUTPUT_VOLUME = "progress-output"
OUTPUT_DIR = "/var/run/deep-platform/output"
OUTPUT_FILE = f"{OUTPUT_DIR}/train.log"
COLLECTOR = "progress-collector"
DEFAULT_STALL_SECONDS = 900
#: The training's output goes to the container's stdout (kubectl logs) and to OUTPUT_FILE; the
#: exit code is the training's. SIGTERM (pod deletion) reaches the training: sh as PID 1
#: would ignore it, so it is passed to the whole process group.
TEE_SCRIPT = (
    'out="$1"; shift; '
    "trap 'trap \"\" TERM; kill -TERM 0' TERM; "
    '{ "$@"; echo "$?" > "$out.exit"; } 2>&1 | tee -a "$out" & '
    "wait $!; wait $!; "
    'code=$(cat "$out.exit" 2>/dev/null) || code=143; exit "$code"'
)


def endpoint_url(tj: TrainingJob, config: OperatorConfig) -> str:
    return f"{config.progress_url.rstrip('/')}/v1/progress/{tj.namespace or 'default'}/{tj.name}"


def progress_env(tj: TrainingJob, config: OperatorConfig) -> list[dict[str, Any]]:
    return [
        {"name": URL_ENV, "value": endpoint_url(tj, config)},
        {"name": TOKEN_FILE_ENV, "value": TOKEN_FILE},
    ]


def token_volume() -> dict[str, Any]:
    return {
        "name": TOKEN_VOLUME,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": AUDIENCE,
                        "expirationSeconds": TOKEN_SECONDS,
                        "path": "token",
                    }
                }
            ]
        },
    }


def token_mount() -> dict[str, Any]:
    return {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True}


def collects_stdout(tj: TrainingJob) -> bool:
    progress = tj.spec.progress
    return bool(progress and progress.collector and progress.collector.stdout)


def add_progress_parts(
    tj: TrainingJob, pod_spec: dict[str, Any], container: dict[str, Any], config: OperatorConfig
) -> None:
    """The endpoint's URL and token for the training container; the collector when asked."""
    if not config.progress_url:
        return
    user_env = {e["name"] for e in container["env"]}
    container["env"] += [e for e in progress_env(tj, config) if e["name"] not in user_env]
    container["volumeMounts"].append(token_mount())
    pod_spec["volumes"].append(token_volume())
    if not collects_stdout(tj):
        return
    collector = tj.spec.progress.collector if tj.spec.progress else None
    output_mount = {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_DIR}
    pod_spec["volumes"].append({"name": OUTPUT_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}})
    container["volumeMounts"].append(output_mount)
    container["args"] = [
        "-c",
        TEE_SCRIPT,
        "deep-platform-tee",
        OUTPUT_FILE,
        *container["command"],
        *container["args"],
    ]
    container["command"] = ["sh"]
    args = ["report", "--follow", OUTPUT_FILE]
    if collector is not None and collector.pattern:
        args += ["--pattern", collector.pattern]
    sidecar = {
        "name": COLLECTOR,
        "image": config.platform_image,
        "command": ["deep-platform"],
        "args": args,
        "restartPolicy": "Always",  # a native sidecar: it ends when the training does
        "env": progress_env(tj, config),
        "volumeMounts": [{**output_mount, "readOnly": True}, token_mount()],
        "resources": {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
        "securityContext": pod.container_security_context(),
    }
    pod_spec.setdefault("initContainers", []).append(sidecar)


def stall_seconds(spec: ProgressSpec | None) -> int:
    return spec.stall_after_seconds if spec is not None else DEFAULT_STALL_SECONDS


def progressing(
    spec: ProgressSpec | None,
    progress: TrainingJobProgress | None,
    phase: str | None,
    started: dt.datetime | None,
    now: dt.datetime,
) -> tuple[bool, str, str] | None:
    """The `Progressing` condition (status, reason, message), or None: not followed (no
    spec.progress and no report ever). Messages hold no moving time, so a status that did not
    change is not written again."""
    last = progress.last_report_time if progress is not None else None
    if spec is None and last is None:
        return None
    stall = stall_seconds(spec)
    if phase != "Running":
        return False, phase or "Pending", "the training is not running"
    since = last or started
    if since is not None and (now - since).total_seconds() > stall:
        if last is None:
            return (
                False,
                "NoReport",
                f"no progress report in the {stall} s since the training started "
                "(spec.progress.stallAfterSeconds)",
            )
        return (
            False,
            "Stalled",
            (
                f"no progress report for more than {stall} s (spec.progress.stallAfterSeconds) while the "
                f"pod runs; the last came at {last.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            ),
        )
    if last is None:
        return True, "AwaitingReport", f"the training runs; no progress report yet (stall after {stall} s)"
    return True, "Reporting", f"progress reports arrive (stall after {stall} s without one)"


def next_stall_check(
    spec: ProgressSpec | None,
    progress: TrainingJobProgress | None,
    phase: str | None,
    started: dt.datetime | None,
    now: dt.datetime,
) -> float | None:
    """Seconds until the condition could turn False with no event to say so, or None."""
    state = progressing(spec, progress, phase, started, now)
    if state is None or not state[0]:
        return None
    last = progress.last_report_time if progress is not None else None
    since = last or started or now
    return max((since - now).total_seconds() + stall_seconds(spec) + 1.0, 1.0)
